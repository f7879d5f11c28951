//! Modules built by hand rather than by the compiler: whatever bytes reach the sandbox, the
//! verdict is a classified error, never a crash of the host.

use std::time::{Duration, Instant};

use hypoforge_sandbox::Limits as SandboxLimits;
use hypoforge_tests::*;

/// `sandbox.load` must refuse `wasm` with `class`; returns the message.
fn expect_load_class(wasm: &[u8], class: ErrorClass) -> String {
    let outcome = within_bound("loading", || sandbox().load(wasm));
    match outcome {
        Ok(_) => panic!("expected {class}, but the module loaded"),
        Err(e) => {
            assert_eq!(e.class(), class, "wrong class: {e}");
            e.to_string()
        }
    }
}

/// `validate` must refuse `wasm` with `class` at the `loads` step; returns the message.
fn expect_validate_load_class(wasm: &[u8], class: ErrorClass) -> String {
    let report = validate_wasm(wasm, None);
    let message = expect_report_class(&report, class);
    assert_eq!(report.meta, None);
    let loads = check(&report, "loads");
    assert!(!loads.passed);
    assert_eq!(loads.detail, message);
    message
}

fn activation(f: impl FnOnce(&mut WatActivation)) -> Vec<u8> {
    let mut module = WatActivation::default();
    f(&mut module);
    module.wasm()
}

#[test]
fn handmade_identity_activation_is_valid() {
    // The control: every hostile module below is this one with one thing changed.
    let report = validate_wasm(
        &WatActivation::default().wasm(),
        Some(ComponentKind::Activation),
    );
    assert_valid(&report, "the hand-made identity");
    let meta = report.meta.expect("valid plugins have metadata");
    assert_eq!(meta.name, "handmade");
    assert_eq!(meta.sdk_version, "handmade");
}

fn with_import() -> Vec<u8> {
    activation(|m| {
        m.extra = r#"(import "env" "read_file" (func $read_file (param i32) (result i32)))"#.into();
    })
}

#[test]
fn import_is_refused_by_the_sandbox() {
    let message = expect_load_class(&with_import(), ErrorClass::BadModule);
    assert!(message.contains("env.read_file"), "{message}");
    assert!(message.contains("import nothing"), "{message}");
}

#[test]
fn import_is_refused_by_validate() {
    let message = expect_validate_load_class(&with_import(), ErrorClass::BadModule);
    assert!(message.contains("env.read_file"), "{message}");
}

#[test]
fn imported_memory_is_refused() {
    let wasm = activation(|m| {
        m.memory_pages = 1;
        m.extra = r#"(import "env" "shared" (memory 1))"#.into();
    });
    // Two memories (one imported) may fail validation or the import rule; either way BadModule.
    let message = expect_load_class(&wasm, ErrorClass::BadModule);
    assert!(
        message.contains("env.shared") || message.contains("memor"),
        "{message}"
    );
}

fn wrong_abi_version() -> Vec<u8> {
    activation(|m| m.sections = plugin_sections(ABI_VERSION + 1, WAT_ACTIVATION_META))
}

#[test]
fn wrong_abi_version_is_refused_by_the_sandbox() {
    let message = expect_load_class(&wrong_abi_version(), ErrorClass::AbiVersion);
    assert!(
        message.contains(&format!("version {}", ABI_VERSION + 1))
            && message.contains(&format!("version {ABI_VERSION}")),
        "{message}"
    );
}

#[test]
fn wrong_abi_version_is_refused_by_validate() {
    let message = expect_validate_load_class(&wrong_abi_version(), ErrorClass::AbiVersion);
    assert!(
        message.contains(&format!("version {}", ABI_VERSION + 1)),
        "{message}"
    );
}

#[test]
fn wrong_abi_version_appended_to_a_compiled_plugin_is_refused() {
    // Built byte by byte rather than with `@custom`: a real plugin plus a second, later ABI
    // section claiming another version.
    let wasm = compile(include_str!("../../../plugins/activation/relu.rs"));
    let forged = with_custom_section(&wasm, ABI_SECTION, &7u32.to_le_bytes());
    let message = expect_load_class(&forged, ErrorClass::AbiVersion);
    assert!(message.contains("version 7"), "{message}");
    // The untouched module is fine.
    assert!(sandbox().load(&wasm).is_ok());
}

#[test]
fn missing_abi_section_is_refused() {
    let wasm = activation(|m| m.sections = meta_section_wat(WAT_ACTIVATION_META));
    let message = expect_load_class(&wasm, ErrorClass::AbiVersion);
    assert!(message.contains(ABI_SECTION), "{message}");
    let message = expect_validate_load_class(&wasm, ErrorClass::AbiVersion);
    assert!(
        message.contains("not built with the hypoforge SDK"),
        "{message}"
    );
}

#[test]
fn malformed_abi_section_is_refused() {
    let wasm = activation(|m| {
        m.sections = format!(
            "{}\n{}",
            custom_section_wat(ABI_SECTION, &[1, 0, 0]),
            meta_section_wat(WAT_ACTIVATION_META)
        );
    });
    expect_load_class(&wasm, ErrorClass::AbiVersion);
    expect_validate_load_class(&wasm, ErrorClass::AbiVersion);
}

#[test]
fn missing_required_exports_are_refused() {
    // Correct ABI section and metadata, but it only exports memory and the allocator.
    let wasm = wat(&format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "hf_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "hf_free") (param i32 i32))
  {}
)"#,
        plugin_sections(ABI_VERSION, WAT_ACTIVATION_META)
    ));
    // The sandbox only knows the generic rules, so it loads...
    assert!(sandbox().load(&wasm).is_ok());
    // ...and the plugin layer refuses it, naming the first missing export.
    let message = expect_validate_load_class(&wasm, ErrorClass::BadModule);
    assert!(message.contains("hf_act_forward"), "{message}");
    assert!(message.contains("activation"), "{message}");

    // An activation from before the one-pass export (ABI 1) names the export it lacks.
    let old = WatActivation::default()
        .text()
        .replace(r#"(export "hf_act_forward_derivative")"#, "");
    let message = expect_validate_load_class(&wat(&old), ErrorClass::BadModule);
    assert!(message.contains("hf_act_forward_derivative"), "{message}");
}

#[test]
fn missing_metadata_is_refused() {
    let wasm = activation(|m| m.sections = abi_section_wat(ABI_VERSION));
    let message = expect_validate_load_class(&wasm, ErrorClass::BadModule);
    assert!(message.contains(META_SECTION), "{message}");
}

#[test]
fn unreadable_metadata_is_refused() {
    let wasm = activation(|m| {
        m.sections = plugin_sections(ABI_VERSION, "kind=loss\nname=x\nderivative=dual\nsdk=1\n");
    });
    let message = expect_validate_load_class(&wasm, ErrorClass::BadModule);
    assert!(
        message.contains("kind") && message.contains("loss"),
        "{message}"
    );
}

#[test]
fn export_with_the_wrong_signature_is_refused() {
    let wasm = wat(&format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "hf_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "hf_free") (param i32 i32))
  (func (export "hf_act_forward") (param f64) (result f64) (local.get 0))
  (func (export "hf_act_derivative") (param i32 i32 i32) (result i32) (i32.const 0))
  {}
)"#,
        plugin_sections(ABI_VERSION, WAT_ACTIVATION_META)
    ));
    let report = validate_wasm(&wasm, None);
    let message = expect_report_class(&report, ErrorClass::BadModule);
    assert!(message.contains("hf_act_forward"), "{message}");
}

#[test]
fn garbage_bytes_are_refused() {
    let garbage: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let message = expect_load_class(&garbage, ErrorClass::BadModule);
    assert!(
        message.contains("not a valid WebAssembly module"),
        "{message}"
    );
    expect_validate_load_class(&garbage, ErrorClass::BadModule);
}

#[test]
fn empty_module_bytes_are_refused() {
    expect_load_class(b"", ErrorClass::BadModule);
    expect_validate_load_class(b"", ErrorClass::BadModule);
}

#[test]
fn truncated_module_is_refused() {
    let wasm = WatActivation::default().wasm();
    // (The 8-byte header alone is a valid, empty module; every cut below lands inside a section.)
    for cut in [9, wasm.len() / 2, wasm.len() - 1] {
        let message = expect_load_class(&wasm[..cut], ErrorClass::BadModule);
        assert!(
            message.contains("not a valid WebAssembly module"),
            "cut at {cut}: {message}"
        );
    }
}

#[test]
fn wasm_magic_with_a_garbage_body_is_refused() {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend_from_slice(&[0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x60]);
    expect_load_class(&bytes, ErrorClass::BadModule);
}

#[test]
fn component_instead_of_a_core_module_is_refused() {
    let component = wat("(component)");
    let message = expect_load_class(&component, ErrorClass::BadModule);
    assert!(message.contains("core"), "{message}");
}

#[test]
fn bad_status_code_breaks_the_abi() {
    let wasm = activation(|m| m.forward = "(i32.const -1)".into());
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "forward_finite");
    assert!(
        detail.contains("hf_act_forward returned status -1 (bad arguments)"),
        "{detail}"
    );
}

#[test]
fn one_pass_export_must_agree_with_f_and_f_prime_alone() {
    // Training reads f and f' from the one-pass export; a plugin whose one-pass slope differs
    // would train on a derivative no other check has seen.
    let wasm = activation(|m| m.one_pass = ONE_PASS.replace("f32.const 1", "f32.const 2"));
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "one_pass_matches");
    assert!(
        detail.contains("f' from the one-pass export differs"),
        "{detail}"
    );

    let wasm = activation(|m| {
        m.one_pass = "(call $forward (local.get $in) (local.get $out) (local.get $n))".into();
    });
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "output_shape");
    assert!(
        detail.contains("hf_act_forward_derivative left"),
        "{detail}"
    );
    assert!(detail.contains("outputs unwritten"), "{detail}");
}

#[test]
fn one_pass_export_writing_past_its_slopes_breaks_the_abi() {
    let wasm = activation(|m| {
        m.one_pass =
            "(call $fill (local.get $slope) (i32.add (local.get $n) (i32.const 1)) (f32.const 1))
    (call $forward (local.get $in) (local.get $out) (local.get $n))"
                .into();
    });
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "output_shape");
    assert!(
        detail.contains("hf_act_forward_derivative wrote past the end"),
        "{detail}"
    );
}

#[test]
fn allocator_returning_null_breaks_the_abi() {
    let wasm = activation(|m| m.alloc = "(i32.const 0)".into());
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "forward_finite");
    assert!(detail.contains("returned null"), "{detail}");
}

#[test]
fn allocator_returning_a_pointer_outside_memory_breaks_the_abi() {
    let wasm = activation(|m| m.alloc = "(i32.const -64)".into());
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "forward_finite");
    assert!(detail.contains("outside"), "{detail}");
}

#[test]
fn writing_past_the_output_buffer_breaks_the_abi() {
    let wasm = activation(|m| {
        m.forward =
            "(call $fill (local.get $out) (i32.add (local.get $n) (i32.const 3)) (f32.const 0.5))
    (i32.const 0)"
                .into();
    });
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "forward_finite");
    assert!(detail.contains("wrote past the end"), "{detail}");
}

#[test]
fn leaving_outputs_unwritten_breaks_the_abi() {
    let wasm = activation(|m| {
        m.forward =
            "(call $fill (local.get $out) (i32.sub (local.get $n) (i32.const 1)) (f32.const 0.5))
    (i32.const 0)"
                .into();
    });
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "forward_finite");
    assert!(
        detail.contains("left 1 of 1024 outputs unwritten"),
        "{detail}"
    );
}

/// Calls `forward` on `n`-element inputs of a loaded `wasm` activation, one result per length.
fn forward_calls(wasm: &[u8], lengths: &[usize]) -> Vec<Result<(), String>> {
    let plugin = hypoforge_plugin::Plugin::load(sandbox(), wasm).expect("loads");
    let mut act = plugin
        .activation(sandbox(), PluginLimits::default())
        .expect("instantiates");
    lengths
        .iter()
        .map(|&n| {
            let x = vec![0.25f32; n];
            let mut y = vec![0.0f32; n];
            act.forward(&x, &mut y).map_err(|e| e.to_string())
        })
        .collect()
}

#[test]
fn outputs_written_only_on_the_first_call_are_caught_on_the_second() {
    // The host refills each output buffer with the canary as it reads it back, instead of
    // before the next call; a plugin that stops writing must still be caught.
    let wasm = activation(|m| {
        m.extra = "(global $calls (mut i32) (i32.const 0))".into();
        m.forward = "(if (i32.eqz (global.get $calls))
      (then (call $fill (local.get $out) (local.get $n) (f32.const 0.5))))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.const 0)"
            .into();
    });
    let results = forward_calls(&wasm, &[100, 100, 100]);
    assert_eq!(results[0], Ok(()));
    for r in &results[1..] {
        let e = r.as_ref().expect_err("unwritten outputs pass");
        assert!(e.contains("left 100 of 100 outputs unwritten"), "{e}");
    }
}

#[test]
fn writing_beyond_the_guard_zone_cannot_hide_unwritten_outputs_of_a_longer_call() {
    // Call 1 (8 elements) also writes far past its guard zone, where call 2 (40 elements,
    // same guest buffer) has outputs it leaves unwritten. Only the guarded range of call 1
    // is known to hold the canary afterwards; the rest must be refilled.
    let wasm = activation(|m| {
        m.extra = "(global $calls (mut i32) (i32.const 0))".into();
        m.forward = "(call $fill (local.get $out) (i32.const 8) (f32.const 0.5))
    (if (i32.eqz (global.get $calls))
      (then (call $fill (i32.add (local.get $out) (i32.const 128)) (i32.const 32) (f32.const 0.5))))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.const 0)"
            .into();
    });
    let results = forward_calls(&wasm, &[8, 40]);
    assert_eq!(
        results[0],
        Ok(()),
        "32 floats past an 8-element output lie beyond the guard"
    );
    let e = results[1]
        .as_ref()
        .expect_err("stale values passed as outputs");
    assert!(e.contains("left 32 of 40 outputs unwritten"), "{e}");
}

#[test]
fn forward_with_derivative_matches_the_two_calls() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/activation/gelu.rs"),
    )
    .unwrap();
    let wasm = compile(&source);
    let plugin = hypoforge_plugin::Plugin::load(sandbox(), &wasm).unwrap();
    let limits = PluginLimits::default();
    let mut act = plugin.activation(sandbox(), limits).unwrap();
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 97.0).collect();
    let (mut y1, mut d1, mut y2, mut d2) = (
        vec![0.0; 1000],
        vec![0.0; 1000],
        vec![0.0; 1000],
        vec![0.0; 1000],
    );
    act.forward_with_derivative(&x, &mut y1, &mut d1).unwrap();
    act.forward(&x, &mut y2).unwrap();
    act.derivative(&x, &mut d2).unwrap();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&y1), bits(&y2));
    assert_eq!(bits(&d1), bits(&d2));
    assert!(
        d1.iter().any(|&d| d != 1.0) && y1 != x,
        "GELU is not the identity"
    );
}

#[test]
fn integer_division_by_zero_is_a_trap() {
    let wasm = activation(|m| {
        m.forward = "(i32.div_s (i32.const 1) (i32.sub (local.get $n) (local.get $n)))".into();
    });
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::Trap, "forward_finite");
    assert!(detail.contains("divide by zero"), "{detail}");
}

#[test]
fn out_of_bounds_access_is_a_trap() {
    let wasm = activation(|m| m.forward = "(i32.load (i32.const -4))".into());
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::Trap, "forward_finite");
    assert!(detail.contains("out of bounds"), "{detail}");
}

#[test]
fn unreachable_without_a_panic_report_is_a_panic() {
    let wasm = activation(|m| m.forward = "(unreachable)".into());
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::Panic, "forward_finite");
    assert_eq!(detail, "the plugin panicked");
}

#[test]
fn wasm_recursion_overflows_the_stack() {
    let wasm = activation(|m| {
        m.extra = "(func $down (param i32) (result i32) (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))".into();
        m.forward = "(drop (call $down (i32.const 0)))\n    (i32.const 0)".into();
    });
    let report = validate_wasm(&wasm, None);
    expect_failed_check(&report, ErrorClass::StackOverflow, "forward_finite");
}

#[test]
fn hostile_start_function_runs_out_of_fuel_at_instantiation() {
    let wasm = activation(|m| {
        m.extra = "(func $spin (loop $forever (br $forever)))\n  (start $spin)".into();
    });
    // Loading compiles but runs nothing...
    assert!(sandbox().load(&wasm).is_ok());
    // ...instantiating runs the start function, under the same budget as a call.
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::OutOfFuel, "forward_finite");
    assert!(detail.contains("budget"), "{detail}");
}

#[test]
fn initial_memory_above_the_cap_is_a_memory_limit() {
    // 8192 pages = 512 MiB, twice the default cap.
    let wasm = activation(|m| m.memory_pages = 8192);
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::MemoryLimit, "forward_finite");
    assert!(detail.contains("256 MiB"), "{detail}");
}

#[test]
fn growing_memory_until_refused_is_a_memory_limit() {
    // Grow by 16 MiB at a time until the limiter says no, then give up with a trap: the trap
    // is classified by its cause.
    let wasm = activation(|m| {
        m.forward = "(block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 256)) (i32.const -1)))
        (br $more)))
    (unreachable)"
            .into();
    });
    let report = validate_wasm(&wasm, None);
    let detail = expect_failed_check(&report, ErrorClass::MemoryLimit, "forward_finite");
    assert!(detail.contains("memory cap"), "{detail}");
}

/// A table larger than the sandbox allows (100 000 elements) is refused when instantiating.
/// The refusal is the module's fault, yet it is classified Internal ("a fault in hypoforge
/// itself") because the limiter's refusal of a table is not a trap and is not recorded the
/// way a refused memory is.
#[test]
fn oversized_table_is_blamed_on_the_module() {
    let wasm = activation(|m| m.extra = "(table 1000000 funcref)".into());
    let report = validate_wasm(&wasm, None);
    let error = report.error.expect("an oversized table must be refused");
    assert!(
        matches!(error.class, ErrorClass::BadModule | ErrorClass::MemoryLimit),
        "classified {}: {}",
        error.class,
        error.message
    );
}

#[test]
fn oversized_table_is_refused() {
    let wasm = activation(|m| m.extra = "(table 1000000 funcref)".into());
    let report = validate_wasm(&wasm, None);
    assert!(!report.valid(), "a 1M-element table was accepted");
    let message = report.error.map(|e| e.message).unwrap_or_default();
    assert!(message.contains("table"), "{message}");
}

/// The sandbox alone: unlimited fuel, a 300 ms deadline, and an export that never returns.
#[test]
fn sandbox_deadline_stops_a_call_with_unlimited_fuel() {
    let wasm =
        activation(|m| m.extra = r#"(func (export "spin") (loop $forever (br $forever)))"#.into());
    let loaded = sandbox().load(&wasm).expect("the module loads");
    let deadline = Duration::from_millis(300);
    let limits = SandboxLimits {
        fuel_per_call: 1 << 62,
        deadline,
        ..SandboxLimits::default()
    };
    let mut instance = sandbox()
        .instantiate(&loaded, limits)
        .expect("the module instantiates");
    let spin = instance.func::<(), ()>("spin").expect("spin is exported");
    let started = Instant::now();
    let error = instance.call(&spin, ()).expect_err("spin never returns");
    let elapsed = started.elapsed();
    assert_eq!(error.class(), ErrorClass::Deadline, "{error}");
    assert!(error.to_string().contains("300ms deadline"), "{error}");
    assert!(
        elapsed >= deadline,
        "stopped after {elapsed:?}, before the deadline"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "the deadline fired late: {elapsed:?}"
    );

    // Each call is re-armed: the same instance still answers a well-behaved call.
    let forward = instance
        .func::<(i32, i32, i32), i32>("hf_act_forward")
        .expect("forward is exported");
    let status = instance
        .call(&forward, (1024, 2048, 4))
        .expect("a short call succeeds");
    assert_eq!(status, 0);
}

#[test]
fn sandbox_fuel_is_rearmed_for_every_call() {
    let wasm =
        activation(|m| m.extra = r#"(func (export "spin") (loop $forever (br $forever)))"#.into());
    let loaded = sandbox().load(&wasm).expect("the module loads");
    let mut instance = sandbox()
        .instantiate(&loaded, SandboxLimits::default())
        .expect("the module instantiates");
    let spin = instance.func::<(), ()>("spin").expect("spin is exported");
    let forward = instance
        .func::<(i32, i32, i32), i32>("hf_act_forward")
        .expect("forward is exported");
    for _ in 0..3 {
        let error = within_bound("spinning", || instance.call_with_fuel(&spin, (), 5_000_000))
            .expect_err("spin never returns");
        assert_eq!(error.class(), ErrorClass::OutOfFuel, "{error}");
        assert!(error.to_string().contains("5000000"), "{error}");
        assert_eq!(
            instance
                .call(&forward, (1024, 2048, 4))
                .expect("forward succeeds"),
            0
        );
        assert!(instance.fuel_left() > 0);
    }
}

/// A module whose `hf_act_forward` traps with `unreachable` and whose `hf_panic_message` is
/// `panic_message_body` (returns the report's address).
fn panicking_with_report(panic_message_body: &str, data: &str) -> Vec<u8> {
    activation(|m| {
        m.forward = "(unreachable)".into();
        m.extra = format!(
            "(func (export \"hf_panic_message\") (result i32) {panic_message_body})\n  {data}"
        );
    })
}

#[test]
fn panic_report_is_read_from_the_guest() {
    let wasm = panicking_with_report(
        "(i32.const 100)",
        r#"(data (i32.const 100) "\0d\00\00\00guest says no")"#,
    );
    let detail = expect_failed_check(
        &validate_wasm(&wasm, None),
        ErrorClass::Panic,
        "forward_finite",
    );
    assert_eq!(detail, "the plugin panicked: guest says no");
}

#[test]
fn oversized_panic_report_is_clamped() {
    // The guest claims a 2 GiB report; the host reads at most 4 KiB of it.
    let wasm = panicking_with_report(
        "(i32.const 100)",
        r#"(data (i32.const 100) "\ff\ff\ff\7fhostile report")"#,
    );
    let detail = expect_failed_check(
        &validate_wasm(&wasm, None),
        ErrorClass::Panic,
        "forward_finite",
    );
    assert!(detail.contains("hostile report"), "{detail}");
    // At most 4096 bytes are read (invalid UTF-8 among them may widen in the lossy decoding).
    let chars = detail.chars().count();
    assert!(
        chars < 4096 + 100,
        "the report was not clamped: {chars} characters"
    );
}

#[test]
fn panic_report_outside_memory_is_ignored() {
    let wasm = panicking_with_report("(i32.const -2)", "");
    let detail = expect_failed_check(
        &validate_wasm(&wasm, None),
        ErrorClass::Panic,
        "forward_finite",
    );
    assert_eq!(detail, "the plugin panicked");
}

#[test]
fn panic_report_that_never_returns_is_cut_short() {
    let wasm = panicking_with_report("(loop $forever (br $forever)) (i32.const 0)", "");
    let detail = expect_failed_check(
        &validate_wasm(&wasm, None),
        ErrorClass::Panic,
        "forward_finite",
    );
    assert_eq!(detail, "the plugin panicked");
}

#[test]
fn panic_report_that_grows_memory_does_not_change_the_verdict() {
    // Fetching the report re-arms the store; a refused allocation while building the report
    // must not turn a panic into a memory-limit failure.
    let wasm = panicking_with_report("(drop (memory.grow (i32.const 60000))) (i32.const 0)", "");
    expect_failed_check(
        &validate_wasm(&wasm, None),
        ErrorClass::Panic,
        "forward_finite",
    );
}

#[test]
fn panic_report_does_not_hide_a_memory_limit() {
    // The reverse: memory refused during the call, then a trap; fetching the report must not
    // clear the record of the refusal.
    let wasm = activation(|m| {
        m.forward = "(drop (memory.grow (i32.const 60000)))\n    (unreachable)".into();
        m.extra = r#"(func (export "hf_panic_message") (result i32) (i32.const 0))"#.into();
    });
    expect_failed_check(
        &validate_wasm(&wasm, None),
        ErrorClass::MemoryLimit,
        "forward_finite",
    );
}

/// A function body of 200 000 instructions (a 1.8 MB module) makes `Sandbox::load` spend about
/// 30 s in Cranelift; nothing bounds the size of a module, of a function, or the time spent
/// compiling it (a 16 MB module of 2 000 such functions took over two minutes).
#[test]
fn huge_function_is_refused_or_loaded_within_the_bound() {
    let mut body = String::with_capacity(200_000 * 64);
    for i in 0..200_000 {
        body.push_str(&format!(
            "(local.set 0 (i32.add (local.get 0) (i32.const {i})))\n"
        ));
    }
    let wasm = activation(|m| {
        m.extra = format!("(func $huge (param i32) (result i32) {body} (local.get 0))");
    });
    let started = Instant::now();
    let loaded = sandbox().load(&wasm);
    let elapsed = started.elapsed();
    assert!(
        elapsed < TIME_BOUND,
        "loading a {}-byte module took {elapsed:?} (loaded: {})",
        wasm.len(),
        loaded.is_ok()
    );
}

#[test]
fn float_copies_work_at_any_address_and_stay_in_bounds() {
    // A hostile allocator may hand out odd addresses: the host's copies must still move the
    // same bits (they take a slower path there) and never reach outside the memory.
    let wasm = activation(|_| {});
    let loaded = sandbox().load(&wasm).expect("the module loads");
    let mut instance = sandbox()
        .instantiate(&loaded, SandboxLimits::default())
        .expect("the module instantiates");
    let values: Vec<f32> = (0..37).map(|i| i as f32 * -1.5 + 0.25).collect();
    let canary = f32::from_bits(0x7fc0_beef);
    for ptr in [4096u32, 4097, 4098, 4099] {
        instance.fill_f32(ptr, canary, 40).expect("fill");
        instance.write_f32(ptr, &values[..30]).expect("write");
        let mut back = vec![0.0f32; 37];
        instance.read_f32(ptr, &mut back).expect("read");
        assert_eq!(&back[..30], &values[..30], "at {ptr}");
        assert!(back[30..].iter().all(|v| v.to_bits() == canary.to_bits()));
        let mut drained = vec![0.0f32; 37];
        let hits = instance
            .drain_f32(ptr, &mut drained, canary, 2.0)
            .expect("drain");
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!((hits, bits(&drained)), (7, bits(&back)), "at {ptr}");
        instance.read_f32(ptr, &mut back).expect("read");
        assert!(
            back.iter().all(|&v| v == 2.0),
            "drain leaves the refill behind"
        );
    }
    let pages = 16 * 65536u32;
    let mut four = [0.0f32; 4];
    for ptr in [pages - 15, pages - 4, u32::MAX - 2] {
        let e = instance
            .read_f32(ptr, &mut four)
            .expect_err("out of bounds");
        assert_eq!(e.class(), ErrorClass::BadAbi, "{e}");
        assert!(instance.write_f32(ptr, &four).is_err());
        assert!(instance.fill_f32(ptr, 1.0, 4).is_err());
        assert!(instance.drain_f32(ptr, &mut four, 0.0, 0.0).is_err());
    }
    assert!(instance.fill_f32(0, 1.0, usize::MAX / 2).is_err());
}

#[test]
fn branch_free_selects_give_the_same_bits() {
    // Selects between values whose bits matter: signed zeros, NaNs with payloads, infinities.
    let wasm = activation(|m| {
        m.forward = "(local $i i32) (local $x f32) (local $p i32)
    (block $done (loop $again
      (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
      (local.set $p (i32.shl (local.get $i) (i32.const 2)))
      (local.set $x (f32.load (i32.add (local.get $in) (local.get $p))))
      (f32.store (i32.add (local.get $out) (local.get $p))
        (select
          (f32.neg (local.get $x))
          (select (f32.const nan:0x200001) (f32.const -0) (f32.gt (local.get $x) (f32.const 0.5)))
          (f32.lt (local.get $x) (f32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    (i32.const 0)"
            .into();
    });
    let rewritten = hypoforge_compile::branch_free_selects(&wasm).expect("rewrites");
    assert_ne!(rewritten, wasm, "there were float selects to rewrite");
    let x: Vec<f32> = [
        -0.0,
        0.0,
        0.25,
        0.75,
        -3.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(0xffc0_0123),
        f32::MIN_POSITIVE / 2.0,
    ]
    .into_iter()
    .cycle()
    .take(1000)
    .collect();
    let run = |wasm: &[u8]| {
        let plugin = hypoforge_plugin::Plugin::load(sandbox(), wasm).expect("loads");
        let mut act = plugin
            .activation(sandbox(), PluginLimits::default())
            .expect("instantiates");
        let mut y = vec![0.0f32; x.len()];
        act.forward(&x, &mut y).expect("runs");
        y.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
    };
    assert_eq!(run(&wasm), run(&rewritten));
}
