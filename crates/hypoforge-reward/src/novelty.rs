//! Novelty: how far a hypothesis's behaviour is from the nearest known component.
//!
//! The distance between two behaviours of one kind is a normalized difference in `[0, 1]`:
//! `0` when they compute the same on the probes, `1` when they have nothing in common. Per kind:
//! - activation: `(|f_a - f_b| + |f_a' - f_b'|) / (|f_a| + |f_b| + |f_a'| + |f_b'|)`, the norms
//!   weighted by a standard normal density over `[-8, 8]` plus a floor, so the range a hidden unit
//!   sees counts most but the tails count too;
//! - preprocessor: `|K_a - K_b| / (|K_a| + |K_b|)` (Frobenius) over the Gram matrices `K = O O^T`
//!   of the transformed probe rows: what the first layer sees up to a rotation of the features,
//!   so outputs of different widths compare, and permuted or rotated columns count as the same.
//!   Half of the distance is on the outputs as they are (scale matters), half on the outputs
//!   with each column scaled to a root mean square of `1/sqrt(width)` (every column weighs the
//!   same, the whole output has unit energy per row), so that one large column does not drown
//!   the rest;
//! - regularizer: per probe scale, `(|p_a - p_b| + |G_a - G_b|) / (|p_a| + |p_b| + |G_a| + |G_b|)`
//!   (penalties and gradients), averaged over the scales.
//!
//! The **N-score** of a hypothesis is its distance to the nearest of the known components (the
//! baseline panel and the library of published ones): 0 means a copy. Below
//! [`REDISCOVERY`] it is flagged as a rediscovery of that component ("≈ GELU").

use hypoforge_spec::ComponentKind;
use serde::{Deserialize, Serialize};

use crate::features::{Behaviour, activation_grid};

include!(concat!(env!("OUT_DIR"), "/library.rs"));

/// `(name, source)` of the published components of `kind` in the library (`library/`, with
/// their references in `library/README.md`); with the baseline panel, what novelty is
/// measured against.
pub fn library(kind: ComponentKind) -> Vec<(&'static str, &'static str)> {
    LIBRARY
        .iter()
        .filter(|(k, _, _)| *k == kind.as_str())
        .map(|&(_, name, source)| (name, source))
        .collect()
}

/// Below this N-score a hypothesis is reported as a rediscovery of its nearest known component.
pub const REDISCOVERY: f64 = 0.02;

/// Density floor of the activation distance's weights, relative to the peak.
const TAIL_WEIGHT: f64 = 0.01;

/// The distance between two behaviours, in `[0, 1]`; behaviours of different kinds are `1` apart.
pub fn distance(a: &Behaviour, b: &Behaviour) -> f64 {
    match (a, b) {
        (Behaviour::Activation { f: fa, df: da }, Behaviour::Activation { f: fb, df: db }) => {
            let w: Vec<f64> = activation_grid()
                .iter()
                .map(|&x| (-0.5 * f64::from(x) * f64::from(x)).exp() + TAIL_WEIGHT)
                .collect();
            let diff = weighted_norm(&w, fa, fb) + weighted_norm(&w, da, db);
            let zero = vec![0.0; fa.len()];
            let size = weighted_norm(&w, fa, &zero)
                + weighted_norm(&w, fb, &zero)
                + weighted_norm(&w, da, &zero)
                + weighted_norm(&w, db, &zero);
            ratio(diff, size)
        }
        (
            Behaviour::Preprocessor {
                width: wa,
                output: oa,
            },
            Behaviour::Preprocessor {
                width: wb,
                output: ob,
            },
        ) => {
            let gram_distance = |ka: Vec<f64>, kb: Vec<f64>| {
                if ka.len() != kb.len() {
                    return 1.0;
                }
                let zero = vec![0.0; ka.len()];
                ratio(norm64(&ka, &kb), norm64(&ka, &zero) + norm64(&kb, &zero))
            };
            let raw = gram_distance(gram(*wa, oa), gram(*wb, ob));
            let balanced = gram_distance(
                gram(*wa, &rms_normalized(*wa, oa)),
                gram(*wb, &rms_normalized(*wb, ob)),
            );
            (raw + balanced) / 2.0
        }
        (
            Behaviour::Regularizer {
                penalties: pa,
                gradients: ga,
            },
            Behaviour::Regularizer {
                penalties: pb,
                gradients: gb,
            },
        ) => {
            let scales = pa.len().min(pb.len());
            if scales == 0 {
                return 1.0;
            }
            let total: f64 = (0..scales)
                .map(|s| {
                    let ones = vec![1.0; ga[s].len()];
                    let zero = vec![0.0; ga[s].len()];
                    let (p, q) = (f64::from(pa[s]), f64::from(pb[s]));
                    let diff = (p - q).abs() + weighted_norm(&ones, &ga[s], &gb[s]);
                    let size = p.abs()
                        + q.abs()
                        + weighted_norm(&ones, &ga[s], &zero)
                        + weighted_norm(&ones, &gb[s], &zero);
                    ratio(diff, size)
                })
                .sum();
            total / scales as f64
        }
        _ => 1.0,
    }
}

/// `sqrt(sum w (a - b)^2)`, in `f64`; a non-finite difference counts as infinitely far.
fn weighted_norm(w: &[f64], a: &[f32], b: &[f32]) -> f64 {
    w.iter()
        .zip(a.iter().zip(b))
        .map(|(w, (x, y))| {
            let d = f64::from(*x) - f64::from(*y);
            w * d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// The Gram matrix `O O^T` of a row-major output of `width` columns (its lower triangle).
fn gram(width: usize, output: &[f32]) -> Vec<f64> {
    let rows = output.len().checked_div(width).unwrap_or(0);
    let row = |r: usize| &output[r * width..(r + 1) * width];
    let mut k = Vec::with_capacity(rows * (rows + 1) / 2);
    for i in 0..rows {
        for j in 0..=i {
            k.push(
                row(i)
                    .iter()
                    .zip(row(j))
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum(),
            );
        }
    }
    k
}

/// Each column scaled to a root mean square of `1/sqrt(width)` (an all-zero column stays zero).
fn rms_normalized(width: usize, output: &[f32]) -> Vec<f32> {
    let rows = output.len().checked_div(width).unwrap_or(0);
    let mut out = output.to_vec();
    let target = 1.0 / (width.max(1) as f64).sqrt();
    for j in 0..width {
        let rms = ((0..rows)
            .map(|r| f64::from(output[r * width + j]).powi(2))
            .sum::<f64>()
            / rows.max(1) as f64)
            .sqrt();
        if rms > 0.0 && rms.is_finite() {
            for r in 0..rows {
                out[r * width + j] = (f64::from(output[r * width + j]) * target / rms) as f32;
            }
        }
    }
    out
}

/// `|a - b|` (Euclidean) in `f64`; a non-finite difference counts as infinitely far.
fn norm64(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// `diff / size` within `[0, 1]`: two zero behaviours are identical, a NaN is as far as can be.
fn ratio(diff: f64, size: f64) -> f64 {
    if diff == 0.0 {
        0.0
    } else if !(diff.is_finite() && size.is_finite()) || size == 0.0 {
        1.0
    } else {
        (diff / size).clamp(0.0, 1.0)
    }
}

/// A hypothesis's novelty against the known components.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Novelty {
    /// Distance to the nearest known component.
    pub n_score: f64,
    /// That component's name.
    pub nearest: String,
    /// `n_score` is below [`REDISCOVERY`].
    pub rediscovery: bool,
}

/// The N-score of `behaviour` against `known` (name, behaviour); `None` when nothing is known.
pub fn novelty(behaviour: &Behaviour, known: &[(String, Behaviour)]) -> Option<Novelty> {
    known
        .iter()
        .map(|(name, k)| (distance(behaviour, k), name))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(n_score, name)| Novelty {
            n_score,
            nearest: name.clone(),
            rediscovery: n_score < REDISCOVERY,
        })
}

/// Pairwise similarity `1 - distance` of the given behaviours (symmetric, 1 on the diagonal).
pub fn similarity_matrix(behaviours: &[&Behaviour]) -> Vec<Vec<f64>> {
    let n = behaviours.len();
    let mut m = vec![vec![1.0; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let s = 1.0 - distance(behaviours[i], behaviours[j]);
            m[i][j] = s;
            m[j][i] = s;
        }
    }
    m
}
