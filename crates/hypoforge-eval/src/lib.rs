//! The core evaluation crate: datasets, tasks, models, one-pass training and the win-rate metrics.
//!
//! A component is trained in its slot of a small MLP on every trial (task × seed) of a suite,
//! paired with every baseline of its kind (`runner`, `trial`, `model`), and scored by B-WR and
//! BSOTA-WR (`metrics`). The CPU path trains one run per rayon job and is the reference;
//! `batched` trains many runs of a task at once on a batch device (with feature `cuda`, a GPU).

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
