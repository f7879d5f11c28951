//! The efficiency curve (the paper's Figure 4): evaluate hypotheses in some order and count how
//! much of the true top share has been found after each one.
//!
//! For `n` hypotheses and a true top set of `m` (the `top_share` of `n`, at least one), the curve
//! has the `n + 1` points `(k / n, found(k) / m)`, `found(k)` being how many of the top set are
//! among the first `k` evaluated. Its area (trapezoids) is the AUC: `0.5` in expectation for a
//! random order (each prefix holds `k m / n` of the top set on average, so the expected curve is
//! the diagonal), and the oracle's `1 - m / (2n)` is the most any order can reach.

use hypoforge_spec::rng::Rng;
use serde::{Deserialize, Serialize};

/// An order's curve and its area.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Share evaluated, `0, 1/n, ..., 1`.
    pub evaluated: Vec<f64>,
    /// Share of the true top set found after each share evaluated.
    pub found: Vec<f64>,
    pub auc: f64,
}

/// How an order by predicted reward compares with random order and the oracle, with a bootstrap
/// interval over hypotheses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Efficiency {
    pub hypotheses: usize,
    /// Size of the true top set.
    pub top: usize,
    pub model: Curve,
    pub oracle: Curve,
    /// Expected AUC of a random order: 0.5.
    pub random_auc: f64,
    /// 95% percentile bootstrap interval of the model's AUC (hypotheses resampled).
    pub auc_ci: [f64; 2],
    /// The model beats random order by more than its interval's width: the interval's lower end
    /// is above 0.5.
    pub beats_random: bool,
}

/// Indices of `scores` from highest to lowest; ties keep index order, so the order is
/// deterministic. A NaN score sorts last.
pub fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| {
            if scores[i].is_nan() {
                f64::NEG_INFINITY
            } else {
                scores[i]
            }
        };
        key(b).total_cmp(&key(a)).then(a.cmp(&b))
    });
    order
}

/// The number of hypotheses in the top `share` of `n`: `ceil(share n)`, at least 1, at most `n`.
pub fn top_count(n: usize, share: f64) -> usize {
    ((share * n as f64).ceil() as usize).clamp(1, n.max(1))
}

/// The curve of evaluating in `order` when the true scores are `truth`.
///
/// # Panics
/// If `order` is not a permutation of `0..truth.len()` or `truth` is empty (callers build both).
pub fn curve(truth: &[f64], order: &[usize], top_share: f64) -> Curve {
    let n = truth.len();
    assert!(n > 0 && order.len() == n, "an order of every hypothesis");
    let m = top_count(n, top_share);
    let mut in_top = vec![false; n];
    for &i in descending(truth).iter().take(m) {
        in_top[i] = true;
    }
    let mut evaluated = vec![0.0];
    let mut found = vec![0.0];
    let mut hits = 0usize;
    for (k, &i) in order.iter().enumerate() {
        hits += usize::from(in_top[i]);
        evaluated.push((k + 1) as f64 / n as f64);
        found.push(hits as f64 / m as f64);
    }
    let auc = evaluated
        .windows(2)
        .zip(found.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum();
    Curve {
        evaluated,
        found,
        auc,
    }
}

/// The efficiency of ordering by `predicted` (higher first) against the true scores `truth`,
/// with `resamples` bootstrap resamples drawn from `seed`.
///
/// # Panics
/// If the two lengths differ or are zero.
pub fn efficiency(
    truth: &[f64],
    predicted: &[f64],
    top_share: f64,
    resamples: usize,
    seed: u64,
) -> Efficiency {
    assert_eq!(truth.len(), predicted.len(), "a prediction per hypothesis");
    let model = curve(truth, &descending(predicted), top_share);
    let oracle = curve(truth, &descending(truth), top_share);
    let mut rng = Rng::new(seed);
    let n = truth.len();
    let mut aucs: Vec<f64> = (0..resamples)
        .map(|_| {
            let picks: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            let t: Vec<f64> = picks.iter().map(|&i| truth[i]).collect();
            let p: Vec<f64> = picks.iter().map(|&i| predicted[i]).collect();
            curve(&t, &descending(&p), top_share).auc
        })
        .collect();
    aucs.sort_by(f64::total_cmp);
    let auc_ci = if aucs.is_empty() {
        [model.auc, model.auc]
    } else {
        [percentile(&aucs, 0.025), percentile(&aucs, 0.975)]
    };
    Efficiency {
        hypotheses: n,
        top: top_count(n, top_share),
        random_auc: 0.5,
        beats_random: auc_ci[0] > 0.5,
        auc_ci,
        model,
        oracle,
    }
}

/// The `q` quantile of sorted values, by linear interpolation between order statistics.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}
