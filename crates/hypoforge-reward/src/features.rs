//! What a hypothesis has before it is evaluated: static features of its source and a behavioural
//! fingerprint measured in the sandbox on fixed probes.
//!
//! Code features: hashed token 1- and 2-grams (comments stripped, numbers as one token), sizes,
//! and counts of the operations that shape a component (exp, tanh, sorting, loops...).
//!
//! Behaviour, per kind, on probes fixed by a seed so that every run measures the same thing:
//! - activation: `f` and `f'` on a grid over `[-8, 8]`, and their moments under a standard normal
//!   input (what a hidden layer sees at initialization);
//! - preprocessor: fitted and applied to a probe matrix whose columns differ in scale, skew,
//!   tails and support; statistics of the output, how much of each input column's order
//!   survives, and how well a linear model on the output predicts held-out targets, linear and
//!   not (what the network's first layer can make of it);
//! - regularizer: penalty and gradient on probe weight matrices at three scales; how the penalty
//!   grows with scale and which direction the gradient points (weights, their signs, their cubes).

use hypoforge_plugin::{Plugin, PluginError, PluginLimits};
use hypoforge_sandbox::{Sandbox, SandboxError};
use hypoforge_spec::ComponentKind;
use hypoforge_spec::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::model::{cholesky_factor, cholesky_substitute, pearson, ranks};

/// Bumped whenever a feature's definition changes; models record it, and a model is only used
/// on features of its own version.
pub const FEATURES_VERSION: u32 = 2;

/// Buckets of the hashed token n-grams.
const NGRAM_BUCKETS: usize = 64;

/// Names whose counts are features: the operations that decide what a component does.
const OPERATIONS: [&str; 30] = [
    "exp",
    "ln",
    "log",
    "sqrt",
    "tanh",
    "sigmoid",
    "softplus",
    "erf",
    "normal_cdf",
    "sin",
    "cos",
    "abs",
    "max",
    "min",
    "clamp",
    "powf",
    "powi",
    "signum",
    "for",
    "while",
    "if",
    "match",
    "sorted",
    "quantile_sorted",
    "median",
    "mean",
    "variance",
    "column",
    "f64",
    "Vec",
];

/// Which features a model reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSet {
    Code,
    Behaviour,
    Both,
}

impl FeatureSet {
    pub const ALL: [FeatureSet; 3] = [FeatureSet::Code, FeatureSet::Behaviour, FeatureSet::Both];
}

/// A hypothesis's features.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub version: u32,
    pub code: Vec<f64>,
    pub behaviour: Vec<f64>,
}

impl Features {
    pub fn new(source: &str, behaviour: &Behaviour) -> Features {
        Features {
            version: FEATURES_VERSION,
            code: code_features(source),
            behaviour: behaviour.features(),
        }
    }

    /// The vector a model of feature set `set` reads.
    pub fn select(&self, set: FeatureSet) -> Vec<f64> {
        match set {
            FeatureSet::Code => self.code.clone(),
            FeatureSet::Behaviour => self.behaviour.clone(),
            FeatureSet::Both => self.code.iter().chain(&self.behaviour).copied().collect(),
        }
    }
}

/// The static features of a source file.
pub fn code_features(source: &str) -> Vec<f64> {
    let tokens = tokens(source);
    let mut grams = vec![0.0; NGRAM_BUCKETS];
    for (i, t) in tokens.iter().enumerate() {
        grams[bucket(&[t])] += 1.0;
        if let Some(next) = tokens.get(i + 1) {
            grams[bucket(&[t, next])] += 1.0;
        }
    }
    let mut features: Vec<f64> = grams.into_iter().map(f64::ln_1p).collect();
    for op in OPERATIONS {
        let count = tokens.iter().filter(|t| t.as_str() == op).count();
        features.push((count as f64).ln_1p());
    }
    let code_lines = strip_comments(source)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let numbers = tokens.iter().filter(|t| t.as_str() == NUMBER).count();
    let mut identifiers: Vec<&String> = tokens
        .iter()
        .filter(|t| t.starts_with(|c: char| c.is_alphabetic() || c == '_'))
        .collect();
    identifiers.sort();
    identifiers.dedup();
    let functions = tokens.iter().filter(|t| t.as_str() == "fn").count();
    for size in [
        source.len(),
        code_lines,
        tokens.len(),
        numbers,
        identifiers.len(),
        functions,
    ] {
        features.push((size as f64).ln_1p());
    }
    features
}

/// Every numeric literal becomes this token: the constants' values are behaviour's business.
const NUMBER: &str = "0";

/// Rust tokens of `source`, comments dropped, string literals as `"`, numbers as [`NUMBER`].
fn tokens(source: &str) -> Vec<String> {
    let text = strip_comments(source);
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '_'
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            out.push(NUMBER.into());
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push("\"".into());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// `source` without `//` and `/* */` comments (string literals are left alone).
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next());
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    if c == '\n' {
                        out.push('\n');
                    }
                    last = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// FNV-1a over the tokens (with a separator), into a bucket: stable across builds and machines.
fn bucket(tokens: &[&String]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in tokens {
        for b in t.bytes().chain([0x1f]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (h % NGRAM_BUCKETS as u64) as usize
}

/// The activation grid: `[-8, 8]` in steps of 1/8.
pub fn activation_grid() -> Vec<f32> {
    (0..=128).map(|i| -8.0 + i as f32 / 8.0).collect()
}

/// The points of [`activation_grid`] on `[-4, 4]`: the range a standardized pre-activation
/// mostly falls in.
pub const ACTIVATION_CORE: std::ops::RangeInclusive<usize> = 32..=96;

/// Probe matrix of the preprocessor fingerprint: rows × columns.
pub const PROBE_ROWS: usize = 256;
pub const PROBE_COLS: usize = 6;
/// Probe weight matrices of the regularizer fingerprint: shape and scales.
pub const WEIGHT_SHAPE: (usize, usize) = (32, 16);
pub const WEIGHT_SCALES: [f32; 3] = [0.01, 0.1, 1.0];
const PROBE_SEED: u64 = 0x5EED_F1A9;

/// A hypothesis's behaviour on the fixed probes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Behaviour {
    /// `f` and `f'` on [`activation_grid`].
    Activation { f: Vec<f32>, df: Vec<f32> },
    /// The probe matrix transformed, row-major, `width` columns.
    Preprocessor { width: usize, output: Vec<f32> },
    /// Per scale of [`WEIGHT_SCALES`]: the penalty and the gradient on the probe weights.
    Regularizer {
        penalties: Vec<f32>,
        gradients: Vec<Vec<f32>>,
    },
}

/// Why a behaviour could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{0}")]
    Output(String),
}

impl Behaviour {
    /// Measure `plugin` (already validated) on its kind's probes.
    pub fn probe(
        sandbox: &Sandbox,
        plugin: &Plugin,
        limits: PluginLimits,
    ) -> Result<Behaviour, ProbeError> {
        match plugin.meta().kind {
            ComponentKind::Activation => {
                let x = activation_grid();
                let mut act = plugin.activation(sandbox, limits)?;
                let (mut f, mut df) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                act.forward_with_derivative(&x, &mut f, &mut df)?;
                Ok(Behaviour::Activation { f, df })
            }
            ComponentKind::Preprocessor => {
                let data = probe_matrix();
                let mut pre = plugin.preprocessor(sandbox, limits)?;
                let width = pre.fit(&data, PROBE_ROWS, PROBE_COLS)?;
                let mut output = Vec::new();
                pre.transform(&data, PROBE_ROWS, PROBE_COLS, &mut output)?;
                if output.len() != PROBE_ROWS * width {
                    return Err(ProbeError::Output(format!(
                        "transform gave {} values for {PROBE_ROWS} rows of width {width}",
                        output.len()
                    )));
                }
                Ok(Behaviour::Preprocessor { width, output })
            }
            ComponentKind::Regularizer => {
                let (rows, cols) = WEIGHT_SHAPE;
                let mut reg = plugin.regularizer(sandbox, limits)?;
                let (mut penalties, mut gradients) = (Vec::new(), Vec::new());
                for w in probe_weights() {
                    penalties.push(reg.penalty(&w, rows, cols)?);
                    let mut g = vec![0.0; w.len()];
                    reg.gradient(&w, rows, cols, &mut g)?;
                    gradients.push(g);
                }
                Ok(Behaviour::Regularizer {
                    penalties,
                    gradients,
                })
            }
        }
    }

    pub fn kind(&self) -> ComponentKind {
        match self {
            Behaviour::Activation { .. } => ComponentKind::Activation,
            Behaviour::Preprocessor { .. } => ComponentKind::Preprocessor,
            Behaviour::Regularizer { .. } => ComponentKind::Regularizer,
        }
    }

    /// The behaviour as model features (a fixed length per kind).
    pub fn features(&self) -> Vec<f64> {
        match self {
            Behaviour::Activation { f, df } => activation_features(f, df),
            Behaviour::Preprocessor { width, output } => preprocessor_features(*width, output),
            Behaviour::Regularizer {
                penalties,
                gradients,
            } => regularizer_features(penalties, gradients),
        }
    }
}

/// The preprocessor probe: columns of different scale, skew, tails and support.
pub fn probe_matrix() -> Vec<f32> {
    let mut rng = Rng::new(PROBE_SEED);
    let mut data = Vec::with_capacity(PROBE_ROWS * PROBE_COLS);
    for _ in 0..PROBE_ROWS {
        let z = rng.normal();
        let huge = 5.0 + 100.0 * rng.normal();
        // libm rather than the platform's, so the probe is the same on every machine.
        let skewed = libm::exp(rng.normal());
        let heavy = libm::tan(std::f64::consts::PI * (rng.uniform() - 0.5)).clamp(-1e3, 1e3);
        let binary = if rng.uniform() < 0.3 { 1.0 } else { 0.0 };
        let discrete = rng.below(10) as f64;
        data.extend([z, huge, skewed, heavy, binary, discrete].map(|v| v as f32));
    }
    data
}

/// The regularizer probes: one standard normal draw, scaled by each of [`WEIGHT_SCALES`].
pub fn probe_weights() -> Vec<Vec<f32>> {
    let mut rng = Rng::new(PROBE_SEED ^ 1);
    let (rows, cols) = WEIGHT_SHAPE;
    let base: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
    WEIGHT_SCALES
        .iter()
        .map(|s| base.iter().map(|w| w * s).collect())
        .collect()
}

/// `asinh`: a signed logarithm that is linear near zero, so huge and tiny values both fit.
fn squash(v: f64) -> f64 {
    if v.is_finite() {
        v.asinh()
    } else if v.is_nan() {
        0.0
    } else {
        v.signum() * 50.0
    }
}

/// Standard normal weights over the activation grid, summing to 1.
fn normal_weights(grid: &[f32]) -> Vec<f64> {
    let w: Vec<f64> = grid
        .iter()
        .map(|&x| (-0.5 * f64::from(x) * f64::from(x)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|v| v / total).collect()
}

fn activation_features(f: &[f32], df: &[f32]) -> Vec<f64> {
    let grid = activation_grid();
    let mut out = Vec::new();
    // Values and slopes on [-4, 4] every 1/2 (every fourth grid point from -4).
    for i in ACTIVATION_CORE.step_by(4) {
        out.push(squash(f64::from(f[i])));
        out.push(squash(f64::from(df[i])));
    }
    let w = normal_weights(&grid);
    let moment = |g: &dyn Fn(usize) -> f64| -> f64 { (0..grid.len()).map(|i| w[i] * g(i)).sum() };
    let fv = |i: usize| f64::from(f[i]);
    let dv = |i: usize| f64::from(df[i]);
    out.push(squash(moment(&fv)));
    out.push(squash(moment(&|i| fv(i) * fv(i))));
    out.push(squash(moment(&dv)));
    out.push(squash(moment(&|i| dv(i) * dv(i))));
    out.push(squash(moment(&|i| fv(i) * f64::from(grid[i]))));
    let falling = df.iter().filter(|&&d| d < 0.0).count() as f64 / df.len() as f64;
    out.push(falling);
    let largest = f.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
    out.push(squash(largest));
    out
}

fn preprocessor_features(width: usize, output: &[f32]) -> Vec<f64> {
    let rows = PROBE_ROWS;
    let columns: Vec<Vec<f64>> = (0..width)
        .map(|j| {
            (0..rows)
                .map(|r| f64::from(output[r * width + j]))
                .collect()
        })
        .collect();
    // Per output column: mean, std, skewness, min, max, share of zeros; then the mean and the
    // largest magnitude over columns, so the features do not depend on column order.
    let mut per_column: Vec<[f64; 6]> = Vec::new();
    for c in &columns {
        let n = c.len() as f64;
        let mean = c.iter().sum::<f64>() / n;
        let var = c.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let std = var.sqrt();
        let skew = if std > 1e-12 {
            c.iter().map(|v| ((v - mean) / std).powi(3)).sum::<f64>() / n
        } else {
            0.0
        };
        let min = c.iter().copied().fold(f64::INFINITY, f64::min);
        let max = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let zeros = c.iter().filter(|v| **v == 0.0).count() as f64 / n;
        per_column.push([mean, std, skew, min, max, zeros]);
    }
    let mut out = vec![squash((width as f64 / PROBE_COLS as f64).ln())];
    for s in 0..6 {
        let values: Vec<f64> = per_column.iter().map(|c| c[s]).collect();
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let largest = values.iter().map(|v| v.abs()).fold(0.0, f64::max);
        out.push(squash(mean));
        out.push(squash(largest));
    }
    // How much of each input column's order survives in the output that keeps it best
    // (Spearman: each column ranked once).
    let input = probe_matrix();
    let output_ranks: Vec<Vec<f64>> = columns.iter().map(|c| ranks(c)).collect();
    for i in 0..PROBE_COLS {
        let x: Vec<f64> = (0..rows)
            .map(|r| f64::from(input[r * PROBE_COLS + i]))
            .collect();
        let x = ranks(&x);
        let best = output_ranks
            .iter()
            .map(|y| pearson(&x, y).abs())
            .fold(0.0, f64::max);
        out.push(best);
    }
    out.extend(linear_probe_scores(&input, &columns));
    out
}

/// Rows of the probe the linear-probe scores fit on; the rest are held out.
const PROBE_FIT_ROWS: usize = 192;

/// Held-out R² (clamped to `[-1, 1]`) of ridge regression from the transformed probe to targets
/// built from the probe's latent normals: a linear mix, a square, a product, a sine, and an
/// exclusive-or of the binary and discrete columns. A preprocessor that makes nonlinear structure
/// linearly readable scores high on the last four. Kernel form, so a wide output costs no more.
fn linear_probe_scores(input: &[f32], columns: &[Vec<f64>]) -> Vec<f64> {
    let width = columns.len();
    let cell = |r: usize, c: usize| f64::from(input[r * PROBE_COLS + c]);
    let targets: Vec<Vec<f64>> = {
        let latent = |r: usize| (cell(r, 0), (cell(r, 1) - 5.0) / 100.0, cell(r, 2).ln());
        let rows = 0..PROBE_ROWS;
        vec![
            rows.clone()
                .map(|r| {
                    let (a, b, c) = latent(r);
                    a + b - c
                })
                .collect(),
            rows.clone().map(|r| latent(r).0.powi(2)).collect(),
            rows.clone()
                .map(|r| {
                    let (a, b, _) = latent(r);
                    a * b
                })
                .collect(),
            rows.clone().map(|r| (2.0 * latent(r).1).sin()).collect(),
            rows.map(|r| {
                let high = cell(r, 5) >= 5.0;
                let on = cell(r, 4) == 1.0;
                if high != on { 1.0 } else { -1.0 }
            })
            .collect(),
        ]
    };
    // Output columns standardized by the fitting rows' statistics (a constant column drops out).
    let fit = PROBE_FIT_ROWS;
    let mut x = vec![0.0; PROBE_ROWS * width];
    for (j, column) in columns.iter().enumerate() {
        let mean = column[..fit].iter().sum::<f64>() / fit as f64;
        let var = column[..fit]
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f64>()
            / fit as f64;
        if !(var.is_finite() && var > 1e-24) {
            continue;
        }
        for r in 0..PROBE_ROWS {
            x[r * width + j] = (column[r] - mean) / var.sqrt();
        }
    }
    let row = |r: usize| &x[r * width..(r + 1) * width];
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let mut kernel = vec![0.0; fit * fit];
    for i in 0..fit {
        for j in 0..=i {
            kernel[i * fit + j] = dot(row(i), row(j));
        }
    }
    let trace: f64 = (0..fit).map(|i| kernel[i * fit + i]).sum();
    let lambda = 1e-2 * (trace / fit as f64).max(1e-12);
    for i in 0..fit {
        kernel[i * fit + i] += lambda;
    }
    cholesky_factor(&mut kernel, fit);
    targets
        .iter()
        .map(|t| {
            let mean = t[..fit].iter().sum::<f64>() / fit as f64;
            let mut alpha: Vec<f64> = t[..fit].iter().map(|v| v - mean).collect();
            cholesky_substitute(&kernel, &mut alpha, fit);
            let (mut sse, mut sst) = (0.0, 0.0);
            for (r, target) in t.iter().enumerate().skip(fit) {
                let predicted = mean
                    + (0..fit)
                        .map(|i| alpha[i] * dot(row(r), row(i)))
                        .sum::<f64>();
                sse += (target - predicted).powi(2);
                sst += (target - mean).powi(2);
            }
            if sst > 0.0 && sse.is_finite() {
                (1.0 - sse / sst).clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

fn regularizer_features(penalties: &[f32], gradients: &[Vec<f32>]) -> Vec<f64> {
    let weights = probe_weights();
    let mut out = Vec::new();
    for ((p, g), w) in penalties.iter().zip(gradients).zip(&weights) {
        let g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
        let w: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        let signs: Vec<f64> = w.iter().map(|v| v.signum()).collect();
        let cubes: Vec<f64> = w.iter().map(|v| v * v * v).collect();
        out.push(squash(f64::from(*p) * 1e4));
        out.push(squash(norm(&g) * 1e4));
        out.push(cosine(&g, &w));
        out.push(cosine(&g, &signs));
        out.push(cosine(&g, &cubes));
    }
    // How the penalty grows from one scale to the next (2 for L2, 1 for L1: log10 ratios).
    for pair in penalties.windows(2) {
        let (a, b) = (f64::from(pair[0]).abs(), f64::from(pair[1]).abs());
        out.push(if a > 0.0 && b > 0.0 {
            (b / a).log10()
        } else {
            0.0
        });
    }
    out
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 || !na.is_finite() || !nb.is_finite() {
        0.0
    } else {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (na * nb)
    }
}
