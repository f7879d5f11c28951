//! The guest target, shared by `build.rs` (which prebuilds the SDK) and the hypothesis build, so
//! both sides of the link agree.

/// The WebAssembly target hypotheses and the SDK are built for.
pub(crate) const TARGET: &str = "wasm32-unknown-unknown";

/// Codegen flag for the hypothesis build; the guest libraries get the same through
/// [`LIBRARY_RUSTFLAGS`]. SIMD lets LLVM vectorize the elementwise loops, which also turns
/// `if`-selects into branch-free lane masks: Cranelift lowers a scalar float `select` to a
/// conditional jump, which on random-sign activations mispredicts half the time. Every SIMD128
/// instruction is deterministic (relaxed SIMD stays off in the sandbox).
pub(crate) const TARGET_FEATURES: &str = "target-feature=+simd128";

/// Further codegen flags for the hypothesis build (the final link), each after a `-C`. The
/// sandbox meters fuel and checks its deadline at every function entry and loop iteration, so
/// the guest should make few calls and long loop bodies:
///
/// - interleaving four vectors per iteration pays those checks once per 16 floats, not 4;
/// - LTO with a high inline threshold pulls libm's `expf`, `erff`, ... into the elementwise
///   loop instead of calling them per element (GELU's sandbox overhead in training fell from
///   about 70% to about 20%, BENCHMARKS.md). It costs about 0.4 s per cold compile, once per
///   source thanks to the cache. The prebuilt guest libraries carry bitcode for it.
///
/// None of these changes results: WebAssembly has no fused multiply-add and LLVM does not
/// reassociate floating point without fast-math flags.
pub(crate) const HYPOTHESIS_CODEGEN: &[&str] = &[
    "llvm-args=-force-vector-interleave=4",
    "lto=thin",
    "llvm-args=-inline-threshold=2000",
];

/// `RUSTFLAGS` for the guest library build (`build.rs`), `\x1f`-separated as in
/// `CARGO_ENCODED_RUSTFLAGS`: bitcode is kept so that the hypothesis build can inline across it.
pub(crate) const LIBRARY_RUSTFLAGS: &str = "-Ctarget-feature=+simd128\x1f-Cembed-bitcode=yes";

/// `RUSTFLAGS` for the native SDK build (`build.rs`): bitcode for the same cross-crate inlining.
pub(crate) const NATIVE_LIBRARY_RUSTFLAGS: &str = "-Cembed-bitcode=yes";

/// Codegen flags of the native build of a hypothesis, each after a `-C`. Thin LTO lets libm's
/// `logf`, `tanhf`, ... inline into the elementwise loops as in the WebAssembly build (softplus
/// ran 17 ns per element without it, 10 with). The inline threshold makes GELU's loop vectorize
/// (9.4 ns per element at LLVM's default, 2.3 at 400); higher costs compile time, since LTO
/// takes in the standard library too, without gaining speed (5.2 s a build at 2000, 2.6 s at
/// 400). Neither changes a result: LLVM contracts no multiply-add into an FMA and reassociates
/// nothing without fast-math flags.
pub(crate) const NATIVE_CODEGEN: &[&str] = &["lto=thin", "llvm-args=-inline-threshold=400"];
