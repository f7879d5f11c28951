//! The content-addressed module cache.

use std::path::Path;
use std::time::Duration;

use hypoforge_tests::*;

const SILU: &str = include_str!("../../../plugins/activation/silu.rs");

fn cached_compiler(dir: &Path) -> Compiler {
    Compiler::new(Some(dir), Limits::default())
        .unwrap_or_else(|e| panic!("cannot create a cached compiler: {e}"))
}

fn compile_with(compiler: &Compiler, source: &str) -> Compiled {
    within_bound("compiling", || compiler.compile(source.as_bytes()))
        .unwrap_or_else(|e| panic!("expected the source to compile: {e}"))
}

/// Files in the cache's module store with the given extension.
fn stored(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir.join("modules"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn same_source_twice_is_served_from_the_cache() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let compiler = cached_compiler(dir.path());
    let first = compile_with(&compiler, SILU);
    let second = compile_with(&compiler, SILU);
    assert!(!first.cached, "the first compile cannot be a cache hit");
    assert!(second.cached, "the second compile should be a cache hit");
    assert_eq!(
        first.wasm, second.wasm,
        "a cache hit must return identical bytes"
    );
    assert_eq!(first.source_hash, second.source_hash);
    assert_eq!(
        first.source_hash,
        hypoforge_spec::source_hash(SILU.as_bytes())
    );
    assert_eq!(stored(dir.path(), ".wasm"), 1);
}

#[test]
fn a_changed_source_is_not_served_from_the_cache() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let compiler = cached_compiler(dir.path());
    let original = compile_with(&compiler, SILU);
    let changed_source = SILU.replace("name = \"silu\"", "name = \"silu2\"");
    let changed = compile_with(&compiler, &changed_source);
    assert!(!original.cached && !changed.cached);
    assert_ne!(original.source_hash, changed.source_hash);
    assert_ne!(original.wasm, changed.wasm);
    // Even a change that does not alter the module is a different hypothesis.
    let commented = compile_with(&compiler, &format!("{SILU}\n// a comment\n"));
    assert!(!commented.cached);
    assert_eq!(stored(dir.path(), ".wasm"), 3);
}

#[test]
fn the_cache_outlives_the_compiler() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let first = compile_with(&cached_compiler(dir.path()), SILU);
    let second = compile_with(&cached_compiler(dir.path()), SILU);
    assert!(!first.cached && second.cached);
    assert_eq!(first.wasm, second.wasm);
}

#[test]
fn compile_errors_are_cached_with_their_message() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let compiler = cached_compiler(dir.path());
    let source = b"fn broken( {}\n";
    let first = expect_compile_class_with(&compiler, source, ErrorClass::Compile);
    assert_eq!(stored(dir.path(), ".error.json"), 1);
    let second = expect_compile_class_with(&compiler, source, ErrorClass::Compile);
    assert_eq!(first, second);
}

#[test]
fn policy_refusals_never_touch_the_cache() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let compiler = cached_compiler(dir.path());
    expect_compile_class_with(
        &compiler,
        b"const K: &str = env!(\"HOME\");",
        ErrorClass::Policy,
    );
    assert_eq!(stored(dir.path(), ""), 0);
}

#[test]
fn timeouts_are_not_cached() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let limits = Limits {
        rustc_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let compiler = Compiler::new(Some(dir.path()), limits).unwrap_or_else(|e| panic!("{e}"));
    let source = b"#[allow(long_running_const_eval)]\nconst SPIN: u64 = { let mut i = 0u64; while i < u64::MAX { i += 1; } i };\npub fn f() -> u64 { SPIN }\n";
    for _ in 0..2 {
        expect_compile_class_with(&compiler, source, ErrorClass::CompileTimeout);
    }
    assert_eq!(
        stored(dir.path(), ""),
        0,
        "a timeout depends on the machine; it must be retried"
    );
}

#[test]
fn a_corrupted_cache_entry_is_caught_by_validation() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let compiler = cached_compiler(dir.path());
    compile_with(&compiler, SILU);
    let entry = std::fs::read_dir(dir.path().join("modules"))
        .expect("the module store exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "wasm"))
        .expect("the module was stored");
    std::fs::write(&entry, b"\0asm\x01\0\0\0 definitely not a module")
        .expect("overwrite the entry");
    let served = compile_with(&compiler, SILU);
    assert!(served.cached);
    let report = validate_wasm(&served.wasm, None);
    expect_report_class(&report, ErrorClass::BadModule);
}

/// The cache key is the source (and toolchain), not the limits, and every failure classified
/// Compile is stored. A failure caused by the limits but classified Compile (rustc unable to
/// start under a 128 MiB address-space limit) is therefore served to every later compiler
/// sharing the cache, whatever its limits: a valid plugin stays "broken" until the cache is
/// cleared.
#[test]
fn failures_caused_by_the_limits_do_not_poison_the_cache() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let starved = Limits {
        rustc_memory_bytes: 128 << 20,
        ..Limits::default()
    };
    let starved = Compiler::new(Some(dir.path()), starved).unwrap_or_else(|e| panic!("{e}"));
    assert!(within_bound("compiling", || starved.compile(SILU.as_bytes())).is_err());
    let healthy = cached_compiler(dir.path());
    let outcome = within_bound("compiling", || healthy.compile(SILU.as_bytes()));
    assert!(
        outcome.is_ok(),
        "silu compiles under default limits: {:?}",
        outcome.err()
    );
}
