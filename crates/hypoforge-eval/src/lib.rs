//! The core evaluation crate: datasets, tasks, models, one-pass training and the win-rate metrics.
//!
//! Work in progress towards the evaluator: the dataset loaders and the paired win-rate metrics
//! land first; the training loop builds on them.

pub mod datasets;
pub mod metrics;
