//! The core evaluation crate: datasets, tasks, models, one-pass training and the win-rate metrics.
//!
//! Work in progress towards the evaluator: the dataset loaders, the paired win-rate metrics and
//! the training core (an MLP with a component slot, one-pass training) land first; tasks,
//! suites and the paired runner build on them.

pub mod baselines;
pub mod batched;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod datasets;
pub mod device;
mod kernels;
pub mod metrics;
pub mod model;
mod offload;
pub mod prepare;
pub mod runner;
pub mod tasks;
pub mod trial;

pub use kernels::AdamConfig;
