//! Hypotheses that attack the sandbox at run time: runaway loops, memory, recursion, panics, and
//! a deadline that holds when fuel does not.

use std::time::{Duration, Instant};

use hypoforge_tests::*;

use crate::case;

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let message = expect_class(case!("infinite_loop"), ErrorClass::OutOfFuel);
    assert!(message.starts_with("forward_finite: "), "{message}");
    assert!(message.contains("budget of"), "{message}");
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let message = expect_class(case!("memory_hog"), ErrorClass::MemoryLimit);
    assert!(message.contains("memory cap"), "{message}");
    assert!(
        message.contains("256 MiB"),
        "the message should name the cap: {message}"
    );
}

#[test]
fn runaway_recursion_overflows_the_stack() {
    let message = expect_class(case!("deep_recursion"), ErrorClass::StackOverflow);
    assert!(message.contains("call stack"), "{message}");
}

#[test]
fn panic_is_reported_with_its_message() {
    let report = expect_class_report(case!("panics"), ErrorClass::Panic);
    let detail = expect_failed_check(&report, ErrorClass::Panic, "forward_finite");
    let message = report
        .error
        .as_ref()
        .map(|e| e.message.as_str())
        .unwrap_or_default();
    for text in [message, detail.as_str()] {
        assert!(text.contains("panicked"), "{text}");
        assert!(
            text.contains("hypothesis assumed |x| <= 5, got 10"),
            "{text}"
        );
        // The guest's panic handler adds the location in the hypothesis.
        assert!(text.contains("at line 6"), "{text}");
    }
}

#[test]
fn a_check_that_traps_stops_validation() {
    let report = expect_class_report(case!("infinite_loop"), ErrorClass::OutOfFuel);
    let first = check(&report, "forward_finite");
    assert!(!first.passed);
    let later: Vec<_> = report
        .checks
        .iter()
        .skip_while(|c| c.name != "forward_finite")
        .skip(1)
        .collect();
    assert!(
        !later.is_empty(),
        "later checks should still be listed: {:#?}",
        report.checks
    );
    for c in later {
        assert!(!c.passed && c.detail.contains("skipped"), "{c:?}");
    }
}

#[test]
fn deadline_stops_a_loop_when_fuel_is_unlimited() {
    let deadline = Duration::from_millis(300);
    let wasm = compile(case!("infinite_loop"));
    let started = Instant::now();
    let report = validate_with(&wasm, None, deadline_only_limits(deadline));
    let elapsed = started.elapsed();
    let message = expect_failed_check(&report, ErrorClass::Deadline, "forward_finite");
    assert!(message.contains("300ms deadline"), "{message}");
    assert!(
        elapsed >= deadline,
        "stopped after {elapsed:?}, before the deadline"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the deadline fired late: {elapsed:?}"
    );
}

#[test]
fn the_host_survives_one_hostile_plugin_after_another() {
    // Reuse the shared sandbox for several hostile plugins in a row, then a healthy one.
    for (source, class) in [
        (case!("memory_hog"), ErrorClass::MemoryLimit),
        (case!("deep_recursion"), ErrorClass::StackOverflow),
        (case!("panics"), ErrorClass::Panic),
    ] {
        expect_class(source, class);
    }
    let silu = include_str!("../../../plugins/activation/silu.rs");
    assert_valid(
        &pipeline(silu, PluginLimits::default()),
        "silu after hostile plugins",
    );
}

/// A preprocessor that declares the widest output allowed (1 024 columns for 6) and burns time in
/// every row; `SPINS` is tuned at run time so a 200-row transform spins for about 3 s.
const SLOW_WIDE: &str = "use hypoforge_sdk::prelude::*;
struct Wide;
impl Preprocessor for Wide {
    fn fit(_train: Matrix<'_>) -> Self {
        Wide
    }
    fn output_width(&self, _input_width: usize) -> usize {
        1 << 10
    }
    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        let mut acc = row[0];
        for _ in 0..core::hint::black_box(SPINS) {
            acc = core::hint::black_box(acc * 0.5 + 1.0);
        }
        out.fill(acc);
    }
}
preprocessor!(name = \"slow_wide\", state = Wide);
";

/// A transform's instruction budget grows with the output width the plugin itself declares, so
/// per-call limits alone would let a plugin that keeps every one of validation's ~15 transform
/// calls just under the 5 s deadline hold validation for over a minute. The validation's overall
/// time budget must end it within the bound.
#[test]
fn slow_wide_preprocessor_cannot_hold_validation_past_the_bound() {
    use hypoforge_plugin::Plugin;

    // Calibrate on this machine: time a 200-row transform with no spinning and with a known
    // spin count, then pick the count that makes the guest spin for about 3 s of its 5 s
    // deadline (the host's copying of 13M outputs per call comes on top, outside the deadline).
    // Timing-sensitive: run this test on its own.
    let time_200_rows = |spins: u64| {
        let wasm = compile(&SLOW_WIDE.replace("SPINS", &spins.to_string()));
        let plugin = Plugin::load(sandbox(), &wasm).expect("the probe loads");
        let mut pre = plugin
            .preprocessor(sandbox(), PluginLimits::default())
            .expect("an instance");
        let data: Vec<f32> = (0..200 * 6).map(|i| i as f32).collect();
        pre.fit(&data, 200, 6).expect("fit");
        let mut out = Vec::new();
        pre.transform(&data, 200, 6, &mut out)
            .expect("a warm-up transform");
        let started = Instant::now();
        pre.transform(&data, 200, 6, &mut out).expect("transform");
        started.elapsed().as_secs_f64()
    };
    let probe_spins = 500_000u64;
    let fixed = time_200_rows(0);
    let per_spin = (time_200_rows(probe_spins) - fixed) / probe_spins as f64;
    let spins = (3.0 / per_spin) as u64;
    eprintln!("calibration: fixed {fixed:.3}s, {per_spin:e}s per spin, {spins} spins");

    let wasm = compile(&SLOW_WIDE.replace("SPINS", &spins.to_string()));
    let started = Instant::now();
    let report = hypoforge_validate::validate(sandbox(), &wasm, None, PluginLimits::default());
    let elapsed = started.elapsed();
    eprintln!("validation: {elapsed:?}, verdict {:?}", report.error);
    assert!(
        elapsed < TIME_BOUND,
        "validation took {elapsed:?} (verdict: {:?})",
        report.error
    );
}
