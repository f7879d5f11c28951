//! Hypotheses that run without trapping but compute the wrong thing: each must fail the named
//! property check with InvalidBehaviour (or BadAbi where it breaks the buffer protocol).

use hypoforge_tests::*;

use crate::case;

#[test]
fn nan_output_fails_forward_finite() {
    let report = expect_class_report(case!("nan_zero_over_zero"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "forward_finite");
    assert!(detail.contains("NaN"), "{detail}");
    assert!(
        detail.starts_with("f("),
        "the detail should name the input: {detail}"
    );
}

#[test]
fn log_of_a_negative_number_fails_forward_finite() {
    let report = expect_class_report(case!("log_of_negative"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "forward_finite");
    assert!(detail.contains("NaN"), "{detail}");
}

#[test]
fn infinite_output_fails_forward_finite() {
    let report = expect_class_report(case!("exp_overflow"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "forward_finite");
    assert_eq!(detail, "f(1e4) = inf");
    // exp is its own derivative: the derivative check fails too, and is recorded, although only
    // the first failure becomes the report's error.
    assert!(!check(&report, "derivative_finite").passed);
}

#[test]
fn wrong_author_derivative_fails_finite_differences() {
    let report = expect_class_report(case!("wrong_derivative"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(
        &report,
        ErrorClass::InvalidBehaviour,
        "derivative_matches_finite_differences",
    );
    assert!(
        detail.contains("disagrees with finite differences"),
        "{detail}"
    );
    for earlier in [
        "forward_finite",
        "derivative_finite",
        "output_shape",
        "deterministic",
        "elementwise",
    ] {
        assert!(
            check(&report, earlier).passed,
            "{earlier} should pass: {:#?}",
            report.checks
        );
    }
    let meta = report.meta.as_ref().expect("a loaded plugin has metadata");
    assert_eq!(meta.derivative, hypoforge_spec::DerivativeSource::Author);
}

#[test]
fn hidden_global_state_fails_determinism() {
    let report = expect_class_report(case!("stateful_activation"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "deterministic");
    assert!(detail.contains("different bits"), "{detail}");
}

#[test]
fn preprocessor_that_learns_while_transforming_fails_transform_is_pure() {
    let report = expect_class_report(case!("stateful_preprocessor"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "transform_is_pure");
    assert!(detail.contains("fitted state"), "{detail}");
}

#[test]
fn preprocessor_that_depends_on_earlier_rows_fails_row_independent() {
    let report = expect_class_report(
        case!("batch_position_preprocessor"),
        ErrorClass::InvalidBehaviour,
    );
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "row_independent");
    assert!(detail.contains("alone than in a batch"), "{detail}");
    // The case is built to slip past the purity check; only row independence catches it.
    assert!(
        check(&report, "transform_is_pure").passed,
        "{:#?}",
        report.checks
    );
}

#[test]
fn unguarded_division_by_std_fails_on_constant_columns() {
    let report = expect_class_report(case!("unguarded_standardize"), ErrorClass::InvalidBehaviour);
    // The validator's own training matrix has a constant column, so `transform_finite` is the
    // first to fail; the dedicated constant-columns check must fail as well.
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "transform_finite");
    assert!(
        detail.contains("column 1") && detail.contains("NaN"),
        "{detail}"
    );
    let constant = check(&report, "constant_columns_finite");
    assert!(!constant.passed, "{constant:?}");
    assert!(
        constant.detail.contains("constant columns maps to NaN"),
        "{constant:?}"
    );
}

#[test]
fn preprocessor_that_leaves_outputs_unwritten_breaks_the_abi() {
    let report = expect_class_report(case!("short_writer_preprocessor"), ErrorClass::BadAbi);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "transform_finite");
    assert!(
        detail.contains("hf_pre_transform left 1200 of 2400 outputs unwritten"),
        "{detail}"
    );
}

#[test]
fn preprocessor_with_zero_output_width_breaks_the_abi() {
    let report = expect_class_report(case!("zero_width_preprocessor"), ErrorClass::BadAbi);
    let detail = expect_failed_check(&report, ErrorClass::BadAbi, "fit");
    assert!(detail.contains("declared output width 0"), "{detail}");
}

#[test]
fn regularizer_with_wrong_gradient_fails_finite_differences() {
    let report = expect_class_report(case!("wrong_gradient"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(
        &report,
        ErrorClass::InvalidBehaviour,
        "gradient_matches_finite_differences",
    );
    assert!(
        detail.contains("gradient disagrees with finite differences"),
        "{detail}"
    );
    assert!(check(&report, "penalty_finite").passed && check(&report, "gradient_finite").passed);
}

#[test]
fn regularizer_with_nan_penalty_fails_penalty_finite() {
    let report = expect_class_report(case!("nan_penalty"), ErrorClass::InvalidBehaviour);
    let detail = expect_failed_check(&report, ErrorClass::InvalidBehaviour, "penalty_finite");
    assert!(detail.contains("NaN"), "{detail}");
}

#[test]
fn activation_validated_as_a_regularizer_is_a_kind_mismatch() {
    let wasm = compile(include_str!("../../../plugins/activation/silu.rs"));
    let report = validate_wasm(&wasm, Some(ComponentKind::Regularizer));
    let message = expect_report_class(&report, ErrorClass::KindMismatch);
    assert!(
        message.contains("regularizer") && message.contains("activation"),
        "{message}"
    );
    assert_eq!(report.meta, None);
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.checks[0].name, "loads");
    assert!(!report.checks[0].passed);
    // The same module is fine when the kind agrees.
    assert_valid(
        &validate_wasm(&wasm, Some(ComponentKind::Activation)),
        "silu as an activation",
    );
}

/// An activation writing NaN outputs should fail `forward_finite` like any other NaN, whatever
/// bits the NaN has. A NaN whose bits equal the host's "unwritten" canary is reported as a
/// calling-convention breach instead ("left 1024 of 1024 outputs unwritten"), although the
/// plugin wrote every output.
#[test]
fn nan_with_the_canary_bit_pattern_fails_forward_finite() {
    let report = pipeline(case!("canary_payload"), PluginLimits::default());
    expect_failed_check(&report, ErrorClass::InvalidBehaviour, "forward_finite");
}

#[test]
fn nan_with_the_canary_bit_pattern_is_still_rejected() {
    // Whatever the class, such a plugin must never pass.
    let report = pipeline(case!("canary_payload"), PluginLimits::default());
    assert!(
        !report.valid(),
        "a plugin that outputs only NaN passed: {report:#?}"
    );
    assert!(!check(&report, "forward_finite").passed);
}
