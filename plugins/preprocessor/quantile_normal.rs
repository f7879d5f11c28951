// Quantile normal transform (cf. sklearn QuantileTransformer): Phi^-1(empirical CDF(x)) per column.
use hypoforge_sdk::prelude::*;

/// At most this many training quantiles are kept per column.
const MAX_QUANTILES: usize = 1000;
/// The CDF is clamped into `[P_MIN, 1 - P_MIN]` so the tails stay finite (about ±3.09).
const P_MIN: f64 = 1e-3;

struct QuantileNormal {
    /// Ascending training quantiles of each column, evenly spaced in probability.
    quantiles: Vec<Vec<f32>>,
}

/// Empirical CDF of `x` against ascending quantiles `q`: linear between neighbours, the middle of
/// a run of equal quantiles on a tie, 0.5 for a constant column.
fn cdf(q: &[f32], x: f32) -> f64 {
    let m = q.len();
    if m < 2 || q[0] == q[m - 1] {
        return 0.5;
    }
    let below = q.partition_point(|&v| v < x);
    let upto = q.partition_point(|&v| v <= x);
    let last = (m - 1) as f64;
    if below < upto {
        (below + upto - 1) as f64 / 2.0 / last
    } else if upto == 0 {
        0.0
    } else if upto == m {
        1.0
    } else {
        let (lo, hi) = (f64::from(q[upto - 1]), f64::from(q[upto]));
        ((upto - 1) as f64 + (f64::from(x) - lo) / (hi - lo)) / last
    }
}

impl Preprocessor for QuantileNormal {
    fn fit(train: Matrix<'_>) -> Self {
        let quantiles = (0..train.cols())
            .map(|j| {
                let s = stats::sorted(train.column(j));
                if s.len() <= MAX_QUANTILES {
                    return s;
                }
                let last = (MAX_QUANTILES - 1) as f32;
                (0..MAX_QUANTILES)
                    .map(|k| stats::quantile_sorted(&s, k as f32 / last))
                    .collect()
            })
            .collect();
        QuantileNormal { quantiles }
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        for ((o, &x), q) in out.iter_mut().zip(row).zip(&self.quantiles) {
            // A constant column has CDF 0.5 everywhere, so it maps to Phi^-1(0.5) = 0.
            *o = stats::inverse_normal_cdf(cdf(q, x).clamp(P_MIN, 1.0 - P_MIN)) as f32;
        }
    }
}

preprocessor!(name = "quantile_normal", state = QuantileNormal);
