//! End-to-end adversarial tests: hostile hypotheses and hand-made modules go in, and each must
//! come out as a classified rejection with a useful message, well within the time bound, while
//! this (host) process carries on.
//!
//! Hostile hypothesis sources live under `cases/`; short ones are inline.

mod baseline;
mod bombs;
mod cache;
mod modules;
mod policy;
mod properties;
mod runtime;

/// A hostile hypothesis source from `cases/`.
macro_rules! case {
    ($name:literal) => {
        include_str!(concat!("cases/", $name, ".rs"))
    };
}
pub(crate) use case;
