//! Ranks hypotheses before they are evaluated, and the paper's analyses of what was found.
//!
//! - [`features`]: what a hypothesis has before evaluation: static features of its source and a
//!   behavioural fingerprint from the sandbox.
//! - [`model`]: the reward model (ridge for B-WR, logistic for BSOTA-WR above a threshold),
//!   chosen by cross-validation and saved as JSON.
//! - [`efficiency`]: the efficiency curve of an order and its area, with a bootstrap interval.
//! - [`novelty`]: behavioural distances, the N-score against the known components (the panel and
//!   the library of published ones) and similarity matrices.
//! - [`analysis`]: the in-source (nested) and cross-source analyses, the top hypotheses, their
//!   tables; [`figures`]: the paper's figures as SVG and PNG.

pub mod analysis;
pub mod efficiency;
pub mod features;
pub mod figures;
pub mod model;
pub mod novelty;

use hypoforge_spec::ComponentKind;

/// Why the reward model cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    #[error("{have} evaluated {kind} hypotheses are too few to train on (at least {need})")]
    TooFewSamples {
        kind: ComponentKind,
        have: usize,
        need: usize,
    },
    #[error(
        "the model was trained on features version {model}, these are version {features}; retrain it with `hypoforge reward train`"
    )]
    FeaturesVersion { model: u32, features: u32 },
    #[error("{0}")]
    Format(String),
}
