//! Compile-time attacks and plain compile errors: rustc is stopped by its wall-clock and memory
//! limits, and its diagnostics come back as the message.

use std::time::Duration;

use hypoforge_tests::*;

fn limits(timeout: Duration, memory: u64) -> Limits {
    Limits {
        rustc_timeout: timeout,
        rustc_memory_bytes: memory,
        ..Limits::default()
    }
}

/// Compile with `limits`; the outcome must be a refusal of one of `classes`, within the bound.
fn expect_one_of(limits: Limits, source: &str, classes: &[ErrorClass]) -> CompileError {
    let compiler = compiler_with(limits);
    let outcome = within_bound("compiling a bomb", || compiler.compile(source.as_bytes()));
    let error = match outcome {
        Ok(c) => panic!("the bomb compiled ({} bytes)", c.wasm.len()),
        Err(e) => e,
    };
    assert!(
        classes.contains(&error.class),
        "unexpected class {}: {}",
        error.class,
        error.message
    );
    assert!(!error.message.trim().is_empty());
    error
}

/// Each level doubles the work: 2^32 expansions.
const EXPONENTIAL_MACRO: &str = "macro_rules! boom {
    () => {};
    (x $($rest:tt)*) => { boom!($($rest)*); boom!($($rest)*); };
}
pub fn f() {
    boom!(x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x);
}
";

#[test]
fn exponential_macro_expansion_is_stopped() {
    let error = expect_one_of(
        limits(Duration::from_secs(4), 2 << 30),
        EXPONENTIAL_MACRO,
        &[ErrorClass::CompileTimeout, ErrorClass::CompileResourceLimit],
    );
    assert!(
        error.message.contains("compile-time bomb"),
        "{}",
        error.message
    );
    if error.class == ErrorClass::CompileTimeout {
        assert!(error.message.contains("4.0s"), "{}", error.message);
    }
}

#[test]
fn endless_const_evaluation_times_out() {
    // rustc's own guard against long const evaluation is a lint, and an outer attribute can
    // allow it; the wall-clock limit must still hold.
    let source = "#[allow(long_running_const_eval)]
const SPIN: u64 = {
    let mut i = 0u64;
    while i < u64::MAX {
        i += 1;
    }
    i
};
pub fn f() -> u64 {
    SPIN
}
";
    let error = expect_one_of(
        limits(Duration::from_secs(4), 2 << 30),
        source,
        &[ErrorClass::CompileTimeout],
    );
    assert!(
        error.message.contains("did not finish within 4.0s"),
        "{}",
        error.message
    );
}

#[test]
fn huge_const_array_under_a_low_memory_limit_is_refused() {
    let low = limits(Duration::from_secs(4), 512 << 20);
    let source = "const BIG: [u64; 1 << 26] = [7; 1 << 26];
pub static S: [u64; 1 << 26] = BIG;
";
    expect_one_of(
        low.clone(),
        source,
        &[
            ErrorClass::CompileResourceLimit,
            ErrorClass::CompileTimeout,
            ErrorClass::Compile,
        ],
    );
    // The control: an ordinary plugin compiles under the same limits, so the refusal is the
    // bomb's doing.
    let relu = include_str!("../../../plugins/activation/relu.rs");
    let compiled = within_bound("compiling", || compiler_with(low).compile(relu.as_bytes()));
    assert!(
        compiled.is_ok(),
        "relu should compile in 512 MiB: {:?}",
        compiled.err()
    );
}

#[test]
fn module_larger_than_the_output_limit_is_refused() {
    // 20 MiB of data the activation really reads, so it cannot be optimised away.
    let source = "use hypoforge_sdk::prelude::*;
static TABLE: [u8; 20 << 20] = [1; 20 << 20];
fn lookup<R: Real>(x: R) -> R {
    let i = core::hint::black_box(x.value().to_bits() as usize) % TABLE.len();
    x * f32::from(TABLE[i])
}
activation!(name = \"lookup\", f = lookup);
";
    let error = expect_one_of(
        limits(Duration::from_secs(8), 2 << 30),
        source,
        &[ErrorClass::CompileResourceLimit],
    );
    let limit = format!("the limit is {}", hypoforge_spec::abi::MAX_MODULE_BYTES);
    assert!(error.message.contains(&limit), "{}", error.message);
}

/// With an address-space limit too small for rustc to load its own libraries, rustc dies at
/// start-up ("error while loading shared libraries: ... failed to map segment") with an
/// ordinary exit status, and the failure is classified Compile: the hypothesis is blamed for the
/// host's configuration (and the verdict is cached; see
/// `cache::failures_caused_by_the_limits_do_not_poison_the_cache`).
#[test]
fn rustc_that_cannot_start_under_the_memory_limit_is_not_a_compile_error() {
    let relu = include_str!("../../../plugins/activation/relu.rs");
    expect_one_of(
        limits(Duration::from_secs(4), 128 << 20),
        relu,
        &[ErrorClass::CompileResourceLimit, ErrorClass::Toolchain],
    );
}

#[test]
fn syntax_error_is_a_compile_error_with_its_location() {
    let source = "use hypoforge_sdk::prelude::*;\n\nfn f<R: Real>(x: R) -> R {\n    x * sigmoid(x\n}\nactivation!(name = \"broken\", f = f);\n";
    let message = expect_compile_class(source.as_bytes(), ErrorClass::Compile);
    assert!(message.contains("error"), "{message}");
    assert!(message.contains("hypothesis.rs:"), "{message}");
    // rustc points at the unclosed parenthesis on line 4 or the mismatched brace on line 5.
    assert!(
        message.contains("hypothesis.rs:4:") || message.contains("hypothesis.rs:5:"),
        "{message}"
    );
}

#[test]
fn type_error_is_a_compile_error_with_its_location() {
    let source = "use hypoforge_sdk::prelude::*;\nfn f<R: Real>(x: R) -> R {\n    x + 1\n}\nactivation!(name = \"typo\", f = f);\n";
    let message = expect_compile_class(source.as_bytes(), ErrorClass::Compile);
    assert!(message.contains("error[E"), "{message}");
    assert!(message.contains("hypothesis.rs:3:"), "{message}");
}

#[test]
fn implementing_an_unsafe_trait_without_the_keyword_is_a_compile_error() {
    // Past the policy (no `unsafe` token), rustc still refuses what only unsafe code may do.
    let source = "struct S;\nimpl core::alloc::GlobalAlloc for S {}\n";
    let message = expect_compile_class(source.as_bytes(), ErrorClass::Compile);
    assert!(message.contains("unsafe"), "{message}");
}

#[test]
fn undefined_names_are_a_compile_error() {
    let source = "use hypoforge_sdk::prelude::*;\nfn f<R: Real>(x: R) -> R { x * not_a_function(x) }\nactivation!(name = \"undefined\", f = f);\n";
    let message = expect_compile_class(source.as_bytes(), ErrorClass::Compile);
    assert!(message.contains("not_a_function"), "{message}");
}

#[test]
fn std_is_not_available() {
    let source = "use hypoforge_sdk::prelude::*;\nfn f<R: Real>(x: R) -> R { let _ = std::fs::read(\"/etc/passwd\"); x }\nactivation!(name = \"std\", f = f);\n";
    let message = expect_compile_class(source.as_bytes(), ErrorClass::Compile);
    assert!(message.contains("std"), "{message}");
}
