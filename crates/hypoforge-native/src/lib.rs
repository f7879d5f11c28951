//! The native fast path: a hypothesis built as a shared library for this machine, run in
//! worker processes, trusted only after a differential test against its WebAssembly build.
//!
//! - [`library`] loads a native build (`hypoforge_compile::Compiler::compile_native`) and puts
//!   it in the model's slots. The build comes from the same policed source and crate root as
//!   the WebAssembly one (`no_std`, `forbid(unsafe_code)`); the SDK's table functions catch
//!   the author's panics.
//! - [`worker`] is the process that does so: `hypoforge native-worker`, or the
//!   `hypoforge-native-worker` binary. A hang or a crash takes down a worker, never the
//!   evaluator; the worker inherits no environment.
//! - [`NativeEngine`] admits a plugin only after every call of the probe set gave the same bits
//!   natively as in the sandbox, then runs its trials in a pool of workers as a
//!   `hypoforge_eval::runner::TrialEngine`: the same trial code, the same results.

mod engine;
pub mod library;
mod probe;
mod wire;
pub mod worker;

pub use engine::{EngineOptions, NativeEngine, Verdict, WorkerCommand};
