//! The guest target, shared by `build.rs` (which prebuilds the SDK) and the hypothesis build, so
//! both sides of the link agree.

/// The WebAssembly target hypotheses and the SDK are built for.
pub(crate) const TARGET: &str = "wasm32-unknown-unknown";

/// Codegen flag for both builds. SIMD lets LLVM vectorize the elementwise loops and, as much,
/// turns `if`-selects into branch-free lane masks: Cranelift lowers a scalar float `select` to a
/// conditional jump, which on random-sign activations mispredicts half the time. Every SIMD128
/// instruction is deterministic (relaxed SIMD stays off in the sandbox).
pub(crate) const TARGET_FEATURES: &str = "target-feature=+simd128";
