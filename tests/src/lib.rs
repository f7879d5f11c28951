//! Shared helpers for the workspace's end-to-end tests: one real compiler and sandbox per test
//! process, pipeline shortcuts that assert the exact error class and a time bound, and tools for
//! building WebAssembly modules by hand.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use hypoforge_compile::{CompileError, Compiled, Compiler, Limits};
pub use hypoforge_plugin::{Budget, PluginLimits};
pub use hypoforge_sandbox::{Sandbox, SandboxError};
pub use hypoforge_spec::abi::{ABI_SECTION, ABI_VERSION, META_SECTION};
pub use hypoforge_spec::{CheckRecord, ComponentKind, ErrorClass, ErrorRecord};
pub use hypoforge_validate::Report;

/// Every hostile case must be dealt with well inside this much wall-clock time.
pub const TIME_BOUND: Duration = Duration::from_secs(10);

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The process-wide compiler with default limits and no cache, so every compile is real.
pub fn compiler() -> &'static Compiler {
    static COMPILER: OnceLock<Compiler> = OnceLock::new();
    COMPILER.get_or_init(|| {
        Compiler::new(None, Limits::default())
            .unwrap_or_else(|e| panic!("cannot set up the hypothesis compiler: {e}"))
    })
}

/// A compiler with its own limits (still uncached).
pub fn compiler_with(limits: Limits) -> Compiler {
    Compiler::new(None, limits)
        .unwrap_or_else(|e| panic!("cannot set up the hypothesis compiler: {e}"))
}

/// The process-wide sandbox.
pub fn sandbox() -> &'static Sandbox {
    Sandbox::shared().unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

/// Run `f`, failing the test if it took [`TIME_BOUND`] or longer.
pub fn within_bound<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    let elapsed = started.elapsed();
    assert!(
        elapsed < TIME_BOUND,
        "{what} took {elapsed:?}; the bound is {TIME_BOUND:?}"
    );
    out
}

/// Compile `source` with the shared compiler; it must compile.
pub fn compile(source: &str) -> Vec<u8> {
    match compiler().compile(source.as_bytes()) {
        Ok(c) => c.wasm,
        Err(e) => panic!("expected the source to compile, got {e}\n--- source ---\n{source}"),
    }
}

/// Compile `source` with `compiler`; it must be refused with `class`. Returns the message.
pub fn expect_compile_class_with(compiler: &Compiler, source: &[u8], class: ErrorClass) -> String {
    let outcome = within_bound("compiling", || compiler.compile(source));
    match outcome {
        Ok(c) => panic!(
            "expected {class}, but the source compiled ({} bytes)\n--- source ---\n{}",
            c.wasm.len(),
            String::from_utf8_lossy(source)
        ),
        Err(e) => {
            assert_eq!(e.class, class, "wrong class; message: {}", e.message);
            assert!(
                !e.message.trim().is_empty(),
                "a {class} rejection without a message"
            );
            e.message
        }
    }
}

/// Compile `source` with the shared compiler; it must be refused with `class`.
pub fn expect_compile_class(source: &[u8], class: ErrorClass) -> String {
    expect_compile_class_with(compiler(), source, class)
}

/// Validate a module with default limits, within the time bound.
pub fn validate_wasm(wasm: &[u8], expected: Option<ComponentKind>) -> Report {
    validate_with(wasm, expected, PluginLimits::default())
}

/// Validate a module under `limits`, within the time bound.
pub fn validate_with(wasm: &[u8], expected: Option<ComponentKind>, limits: PluginLimits) -> Report {
    within_bound("validating", || {
        hypoforge_validate::validate(sandbox(), wasm, expected, limits)
    })
}

/// Compile and validate `source` (it must compile); the whole pipeline must finish in time.
pub fn pipeline(source: &str, limits: PluginLimits) -> Report {
    within_bound("compiling and validating", || {
        let wasm = compile(source);
        validate_with(&wasm, None, limits)
    })
}

/// The report must be a rejection of `class`; returns the error message.
pub fn expect_report_class(report: &Report, class: ErrorClass) -> String {
    let Some(error) = &report.error else {
        panic!(
            "expected {class}, but the plugin is valid: {:#?}",
            report.checks
        );
    };
    assert!(!report.valid());
    assert_eq!(
        error.class, class,
        "wrong class; message: {}\nchecks: {:#?}",
        error.message, report.checks
    );
    assert!(
        !error.message.trim().is_empty(),
        "a {class} rejection without a message"
    );
    error.message.clone()
}

/// Compile `source` (it must compile), validate it with default limits, and expect a rejection
/// of `class`. Returns the error message.
pub fn expect_class(source: &str, class: ErrorClass) -> String {
    expect_report_class(&pipeline(source, PluginLimits::default()), class)
}

/// Like [`expect_class`], returning the whole report for closer inspection.
pub fn expect_class_report(source: &str, class: ErrorClass) -> Report {
    let report = pipeline(source, PluginLimits::default());
    expect_report_class(&report, class);
    report
}

/// The record of the check named `name`; it must exist.
pub fn check<'r>(report: &'r Report, name: &str) -> &'r CheckRecord {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check named {name}: {:#?}", report.checks))
}

/// The report must fail with `class`, the message must lead with `name`, and that check's record
/// must say it failed. Returns that record's detail.
pub fn expect_failed_check(report: &Report, class: ErrorClass, name: &str) -> String {
    let message = expect_report_class(report, class);
    assert!(
        message.starts_with(&format!("{name}: ")),
        "the error should name the check `{name}`: {message}"
    );
    let record = check(report, name);
    assert!(
        !record.passed,
        "check {name} should have failed: {record:?}"
    );
    record.detail.clone()
}

/// Every check passed and there is no error.
pub fn assert_valid(report: &Report, what: &str) {
    assert!(
        report.valid(),
        "{what} should be valid: {:?}\nchecks: {:#?}",
        report.error,
        report.checks
    );
    assert!(
        report.checks.len() > 1,
        "{what}: suspiciously few checks: {:?}",
        report.checks
    );
    for c in &report.checks {
        assert!(c.passed, "{what}: check {} failed: {}", c.name, c.detail);
    }
}

/// Plugin limits with effectively unlimited fuel, so only the wall-clock deadline can stop a
/// call.
pub fn deadline_only_limits(deadline: Duration) -> PluginLimits {
    const PLENTY: u64 = 1 << 62;
    let unlimited = Budget {
        base: PLENTY,
        per_element: 0,
    };
    let defaults = PluginLimits::default();
    PluginLimits {
        sandbox: hypoforge_sandbox::Limits {
            fuel_per_call: PLENTY,
            deadline,
            ..defaults.sandbox
        },
        activation: unlimited,
        fit: unlimited,
        transform: unlimited,
        regularizer: unlimited,
    }
}

/// Unsigned LEB128, as WebAssembly encodes sizes.
pub fn leb128(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `wasm` with a custom section (id 0, size, name, payload) appended at the end.
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend(body);
    out
}

/// Assemble WebAssembly text; the test's own WAT must be well-formed.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("bad test WAT: {e}\n{text}"))
}

/// A WAT annotation for a custom section holding `payload`.
pub fn custom_section_wat(name: &str, payload: &[u8]) -> String {
    let escaped: String = payload.iter().map(|b| format!("\\{b:02x}")).collect();
    format!("(@custom \"{name}\" \"{escaped}\")")
}

/// A `hypoforge.abi` custom section (WAT) declaring `version`.
pub fn abi_section_wat(version: u32) -> String {
    custom_section_wat(ABI_SECTION, &version.to_le_bytes())
}

/// A `hypoforge.meta` custom section (WAT) holding `meta`.
pub fn meta_section_wat(meta: &str) -> String {
    custom_section_wat(META_SECTION, meta.as_bytes())
}

/// Both sections a plugin carries.
pub fn plugin_sections(abi_version: u32, meta: &str) -> String {
    format!(
        "{}\n  {}",
        abi_section_wat(abi_version),
        meta_section_wat(meta)
    )
}

/// Metadata of a hand-made activation with exact (dual-number) derivatives.
pub const WAT_ACTIVATION_META: &str =
    "kind=activation\nname=handmade\nderivative=dual\nsdk=handmade\n";

/// `hf_act_forward` body of the identity: copy the input to the output, status 0.
pub const IDENTITY_FORWARD: &str = "(memory.copy (local.get $out) (local.get $in) (i32.shl (local.get $n) (i32.const 2)))\n    (i32.const 0)";

/// `hf_act_forward_derivative` body that agrees with the others: `f' = 1`, then `hf_act_forward`.
pub const ONE_PASS: &str = "(call $fill (local.get $slope) (local.get $n) (f32.const 1))
    (call $forward (local.get $in) (local.get $out) (local.get $n))";

/// `hf_alloc` body of a bump allocator (param `$bytes`, local `$p`).
pub const BUMP_ALLOC: &str =
    "(local.set $p (i32.and (i32.add (global.get $next) (i32.const 15)) (i32.const -16)))
    (global.set $next (i32.add (local.get $p) (local.get $bytes)))
    (local.get $p)";

/// A hand-written activation plugin in WebAssembly text: a bump allocator, `f' = 1`,
/// `hf_act_forward` (params `$in $out $n`, returns a status) and the one-pass export calling
/// it. The default is a valid identity
/// activation: the control that every hand-made hostile module is one change away from.
#[derive(Clone, Debug)]
pub struct WatActivation {
    /// Initial (and only) linear memory, in 64 KiB pages.
    pub memory_pages: u32,
    /// Body of `hf_act_forward`.
    pub forward: String,
    /// Body of `hf_act_forward_derivative` (params `$in $out $slope $n`).
    pub one_pass: String,
    /// Body of `hf_alloc`.
    pub alloc: String,
    /// Further module fields (functions, a start function, tables, imports...).
    pub extra: String,
    /// The custom-section annotations; see [`plugin_sections`].
    pub sections: String,
}

impl Default for WatActivation {
    fn default() -> Self {
        WatActivation {
            memory_pages: 16,
            forward: IDENTITY_FORWARD.into(),
            one_pass: ONE_PASS.into(),
            alloc: BUMP_ALLOC.into(),
            extra: String::new(),
            sections: plugin_sections(ABI_VERSION, WAT_ACTIVATION_META),
        }
    }
}

impl WatActivation {
    /// The module's text.
    pub fn text(&self) -> String {
        let WatActivation {
            memory_pages,
            forward,
            one_pass,
            alloc,
            extra,
            sections,
        } = self;
        format!(
            r#"(module
  {extra}
  (memory (export "memory") {memory_pages})
  (global $next (mut i32) (i32.const 1024))
  (func (export "hf_alloc") (param $bytes i32) (result i32)
    (local $p i32)
    {alloc})
  (func (export "hf_free") (param i32 i32))
  (func $fill (param $out i32) (param $n i32) (param $value f32)
    (local $i i32)
    (block $done
      (loop $again
        (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))) (local.get $value))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again))))
  (func $forward (export "hf_act_forward") (param $in i32) (param $out i32) (param $n i32) (result i32)
    {forward})
  (func (export "hf_act_derivative") (param $in i32) (param $out i32) (param $n i32) (result i32)
    (call $fill (local.get $out) (local.get $n) (f32.const 1))
    (i32.const 0))
  (func (export "hf_act_forward_derivative") (param $in i32) (param $out i32) (param $slope i32) (param $n i32) (result i32)
    {one_pass})
  {sections}
)"#
        )
    }

    /// The assembled module.
    pub fn wasm(&self) -> Vec<u8> {
        wat(&self.text())
    }
}
