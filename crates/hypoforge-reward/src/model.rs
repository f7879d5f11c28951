//! The reward model: ridge regression from a hypothesis's features to its B-WR, and an
//! L2-penalized logistic regression for the chance that its BSOTA-WR is above a threshold. Both
//! are cheap, hard to overfit on a few hundred hypotheses, and chosen (feature set and penalty)
//! by cross-validated rank correlation, because the model's job is to order hypotheses.

use hypoforge_spec::ComponentKind;
use hypoforge_spec::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::RewardError;
use crate::features::{FEATURES_VERSION, FeatureSet, Features};

/// Written into every model file; a file of another format is refused with what to do.
pub const MODEL_FORMAT: u32 = 1;

/// Penalties tried, on standardized features.
const LAMBDAS: [f64; 7] = [0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0];
/// Folds of the cross-validation that chooses the model.
pub const FOLDS: usize = 5;

/// One evaluated hypothesis, as the model learns from it.
#[derive(Clone, Debug)]
pub struct Sample {
    pub features: Features,
    pub b_wr: f64,
    pub bsota_wr: f64,
}

/// A trained model for one kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardModel {
    pub format: u32,
    pub features_version: u32,
    pub kind: ComponentKind,
    pub feature_set: FeatureSet,
    pub lambda: f64,
    /// Per-feature mean and scale of the training data (a constant feature has scale 1).
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// `P(BSOTA-WR > threshold)`.
    pub classifier: Classifier,
    /// Spearman correlation of the cross-validated predictions with the truth, which chose it.
    pub cv_spearman: f64,
    pub trained_on: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    pub threshold: f64,
    pub weights: Vec<f64>,
    pub intercept: f64,
}

/// What the model says about one hypothesis.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted B-WR (not clamped: the order is what matters).
    pub b_wr: f64,
    /// Predicted probability that BSOTA-WR exceeds the classifier's threshold.
    pub p_bsota: f64,
}

impl RewardModel {
    /// Train on `samples` of `kind`: every feature set and penalty is scored by `FOLDS`-fold
    /// cross-validation (folds drawn from `seed`), and the best is refitted on all samples.
    pub fn train(
        kind: ComponentKind,
        samples: &[Sample],
        bsota_threshold: f64,
        seed: u64,
    ) -> Result<RewardModel, RewardError> {
        if samples.len() < 2 * FOLDS {
            return Err(RewardError::TooFewSamples {
                kind,
                have: samples.len(),
                need: 2 * FOLDS,
            });
        }
        let truth: Vec<f64> = samples.iter().map(|s| s.b_wr).collect();
        let mut best: Option<(f64, FeatureSet, f64)> = None;
        for set in FeatureSet::ALL {
            for lambda in LAMBDAS {
                let predicted = cross_validated(samples, set, lambda, seed);
                let rho = spearman(&predicted, &truth);
                if best.is_none_or(|(b, _, _)| rho > b) {
                    best = Some((rho, set, lambda));
                }
            }
        }
        let (cv_spearman, feature_set, lambda) = best.expect("at least one candidate");
        let mut model = fit(kind, samples, feature_set, lambda, bsota_threshold);
        model.cv_spearman = cv_spearman;
        Ok(model)
    }

    /// The model's prediction for one hypothesis's features.
    ///
    /// # Errors
    /// When the features were computed by another version of the feature code.
    pub fn predict(&self, features: &Features) -> Result<Prediction, RewardError> {
        if features.version != self.features_version {
            return Err(RewardError::FeaturesVersion {
                model: self.features_version,
                features: features.version,
            });
        }
        let x = self.standardized(&features.select(self.feature_set));
        let b_wr = self.intercept + dot(&self.weights, &x);
        let z = self.classifier.intercept + dot(&self.classifier.weights, &x);
        Ok(Prediction {
            b_wr,
            p_bsota: sigmoid(z),
        })
    }

    fn standardized(&self, raw: &[f64]) -> Vec<f64> {
        raw.iter()
            .zip(self.means.iter().zip(&self.scales))
            .map(|(v, (m, s))| (v - m) / s)
            .collect()
    }

    /// Check that the model is of this hypoforge's format and feature version, with consistent vectors.
    pub fn check(&self) -> Result<(), RewardError> {
        if self.format != MODEL_FORMAT {
            return Err(RewardError::Format(format!(
                "model format {} (this hypoforge reads {MODEL_FORMAT}); retrain it with `hypoforge reward train`",
                self.format
            )));
        }
        if self.features_version != FEATURES_VERSION {
            return Err(RewardError::FeaturesVersion {
                model: self.features_version,
                features: FEATURES_VERSION,
            });
        }
        let d = self.means.len();
        if self.scales.len() != d || self.weights.len() != d || self.classifier.weights.len() != d {
            return Err(RewardError::Format(
                "the model's vectors differ in length".into(),
            ));
        }
        Ok(())
    }
}

/// The models of a file, one per kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Models {
    pub models: Vec<RewardModel>,
}

impl Models {
    pub fn for_kind(&self, kind: ComponentKind) -> Option<&RewardModel> {
        self.models.iter().find(|m| m.kind == kind)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model serializes")
    }

    /// Parse and check a model file's contents.
    pub fn from_json(text: &str) -> Result<Models, RewardError> {
        let models: Models = serde_json::from_str(text).map_err(|e| {
            RewardError::Format(format!(
                "not a reward model file ({e}); write one with `hypoforge reward train`"
            ))
        })?;
        if models.models.is_empty() {
            return Err(RewardError::Format("the file holds no model".into()));
        }
        for m in &models.models {
            m.check()?;
        }
        Ok(models)
    }
}

/// Out-of-fold predictions of B-WR: each sample predicted by a model fitted without its fold.
pub fn cross_validated(samples: &[Sample], set: FeatureSet, lambda: f64, seed: u64) -> Vec<f64> {
    let folds = fold_assignment(samples.len(), seed);
    let mut predicted = vec![0.0; samples.len()];
    for fold in 0..FOLDS {
        let train: Vec<Sample> = samples
            .iter()
            .zip(&folds)
            .filter(|(_, f)| **f != fold)
            .map(|(s, _)| s.clone())
            .collect();
        let model = fit(
            ComponentKind::Activation,
            &train,
            set,
            lambda,
            f64::INFINITY,
        );
        for (i, s) in samples.iter().enumerate() {
            if folds[i] == fold {
                let x = model.standardized(&s.features.select(set));
                predicted[i] = model.intercept + dot(&model.weights, &x);
            }
        }
    }
    predicted
}

/// Fold of each sample: a seeded shuffle dealt round-robin, so folds differ in size by at most 1.
pub(crate) fn fold_assignment(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let mut folds = vec![0; n];
    for (k, i) in order.into_iter().enumerate() {
        folds[i] = k % FOLDS;
    }
    folds
}

/// Ridge regression and the logistic classifier on all of `samples`.
pub fn fit(
    kind: ComponentKind,
    samples: &[Sample],
    set: FeatureSet,
    lambda: f64,
    bsota_threshold: f64,
) -> RewardModel {
    let raw: Vec<Vec<f64>> = samples.iter().map(|s| s.features.select(set)).collect();
    let d = raw.first().map_or(0, Vec::len);
    let n = raw.len() as f64;
    let mut means = vec![0.0; d];
    for row in &raw {
        for (m, v) in means.iter_mut().zip(row) {
            *m += v / n;
        }
    }
    let mut scales = vec![0.0; d];
    for row in &raw {
        for ((s, v), m) in scales.iter_mut().zip(row).zip(&means) {
            *s += (v - m) * (v - m) / n;
        }
    }
    for s in &mut scales {
        *s = if *s > 1e-24 { s.sqrt() } else { 1.0 };
    }
    let x: Vec<Vec<f64>> = raw
        .iter()
        .map(|row| {
            row.iter()
                .zip(means.iter().zip(&scales))
                .map(|(v, (m, s))| (v - m) / s)
                .collect()
        })
        .collect();
    let y: Vec<f64> = samples.iter().map(|s| s.b_wr).collect();
    let intercept = y.iter().sum::<f64>() / n;
    let centered: Vec<f64> = y.iter().map(|v| v - intercept).collect();
    let weights = ridge(&x, &centered, lambda);
    let labels: Vec<f64> = samples
        .iter()
        .map(|s| f64::from(u8::from(s.bsota_wr > bsota_threshold)))
        .collect();
    let (cw, ci) = logistic(&x, &labels, lambda);
    RewardModel {
        format: MODEL_FORMAT,
        features_version: FEATURES_VERSION,
        kind,
        feature_set: set,
        lambda,
        means,
        scales,
        weights,
        intercept,
        classifier: Classifier {
            threshold: bsota_threshold,
            weights: cw,
            intercept: ci,
        },
        cv_spearman: f64::NAN,
        trained_on: samples.len(),
    }
}

/// `argmin_w |X w - y|^2 + lambda |w|^2` by the normal equations (Cholesky; `lambda > 0` keeps
/// them positive definite).
pub fn ridge(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Vec<f64> {
    let d = x.first().map_or(0, Vec::len);
    let mut a = vec![0.0; d * d];
    let mut b = vec![0.0; d];
    for (row, &target) in x.iter().zip(y) {
        for i in 0..d {
            b[i] += row[i] * target;
            for j in 0..=i {
                a[i * d + j] += row[i] * row[j];
            }
        }
    }
    for i in 0..d {
        a[i * d + i] += lambda;
    }
    cholesky_solve(&mut a, &mut b, d);
    b
}

/// L2-penalized logistic regression by Newton's method (the penalty is not applied to the
/// intercept). With one class only, the weights stay zero and the intercept gives its rate.
fn logistic(x: &[Vec<f64>], labels: &[f64], lambda: f64) -> (Vec<f64>, f64) {
    let d = x.first().map_or(0, Vec::len);
    let n = labels.len() as f64;
    let rate = labels.iter().sum::<f64>() / n;
    // Clamped so that one class alone gives a finite intercept.
    let clamped = rate.clamp(0.5 / n, 1.0 - 0.5 / n);
    let mut w = vec![0.0; d];
    let mut c = (clamped / (1.0 - clamped)).ln();
    if rate == 0.0 || rate == 1.0 {
        return (w, c);
    }
    for _ in 0..25 {
        // Gradient and Hessian over (w, c), c last.
        let dim = d + 1;
        let mut h = vec![0.0; dim * dim];
        let mut g = vec![0.0; dim];
        for (row, &label) in x.iter().zip(labels) {
            let p = sigmoid(c + dot(&w, row));
            let r = p - label;
            let s = (p * (1.0 - p)).max(1e-12);
            for i in 0..dim {
                let xi = if i < d { row[i] } else { 1.0 };
                g[i] += r * xi;
                for j in 0..=i {
                    let xj = if j < d { row[j] } else { 1.0 };
                    h[i * dim + j] += s * xi * xj;
                }
            }
        }
        for i in 0..d {
            g[i] += lambda * w[i];
            h[i * dim + i] += lambda;
        }
        h[d * dim + d] += 1e-9;
        cholesky_solve(&mut h, &mut g, dim);
        let step = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        for i in 0..d {
            w[i] -= g[i];
        }
        c -= g[d];
        if step < 1e-10 {
            break;
        }
    }
    (w, c)
}

/// Solve `A x = b` in place for symmetric positive definite `A`, of which only the lower
/// triangle (row-major, `d × d`) is read; `b` becomes `x`.
pub(crate) fn cholesky_solve(a: &mut [f64], b: &mut [f64], d: usize) {
    cholesky_factor(a, d);
    cholesky_substitute(a, b, d);
}

/// Overwrite the lower triangle of symmetric positive definite `A` (row-major, `d × d`) with
/// its Cholesky factor `L` (`A = L L^T`), so that several right-hand sides share one factoring.
pub(crate) fn cholesky_factor(a: &mut [f64], d: usize) {
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        let diag = diag.max(1e-300).sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / diag;
        }
    }
}

/// Solve `L L^T x = b` in place, `factor` from [`cholesky_factor`]; `b` becomes `x`.
pub(crate) fn cholesky_substitute(factor: &[f64], b: &mut [f64], d: usize) {
    for i in 0..d {
        let mut v = b[i];
        for k in 0..i {
            v -= factor[i * d + k] * b[k];
        }
        b[i] = v / factor[i * d + i];
    }
    for i in (0..d).rev() {
        let mut v = b[i];
        for k in i + 1..d {
            v -= factor[k * d + i] * b[k];
        }
        b[i] = v / factor[i * d + i];
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Spearman's rank correlation (average ranks for ties); 0 when either side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Ranks from 0, ties sharing their average rank.
pub(crate) fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0;
        for &i in &order[start..=end] {
            ranks[i] = rank;
        }
        start = end + 1;
    }
    ranks
}

/// Pearson's correlation; 0 when either side is constant.
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}
