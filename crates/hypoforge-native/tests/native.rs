//! The native fast path end to end: real native builds of the baseline panel and of hostile
//! hypotheses, real worker processes, bit-for-bit comparison with the sandbox.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use hypoforge_compile::{Compiler, Limits};
use hypoforge_eval::baselines;
use hypoforge_eval::metrics::RunOutcome;
use hypoforge_eval::runner::{self, Entrant, Evaluation, Plan, RunLog, RunMap, TrialEngine};
use hypoforge_eval::tasks::{Suite, parse_suite};
use hypoforge_native::{EngineOptions, NativeEngine, Verdict, WorkerCommand};
use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;

fn compiler() -> &'static Compiler {
    static COMPILER: OnceLock<Compiler> = OnceLock::new();
    COMPILER.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("native-cache");
        Compiler::new(Some(&dir), Limits::default()).expect("a compiler")
    })
}

fn engine() -> NativeEngine {
    NativeEngine::new(EngineOptions::new(WorkerCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_hypoforge-native-worker")),
        args: Vec::new(),
    }))
}

fn sandbox() -> &'static Sandbox {
    Sandbox::shared().expect("a sandbox")
}

/// The WebAssembly build as an entrant, and the native build's path.
fn entrant(source: &str, baseline: bool) -> (Entrant, PathBuf) {
    let compiled = compiler().compile(source.as_bytes()).expect("compiles");
    let plugin = Plugin::load(sandbox(), &compiled.wasm).expect("loads");
    let native = compiler()
        .compile_native(source.as_bytes())
        .expect("compiles natively");
    (
        Entrant {
            name: plugin.meta().name.clone(),
            hash: compiled.source_hash,
            baseline,
            plugin,
        },
        native.path,
    )
}

fn panel(kind: ComponentKind) -> Vec<(Entrant, PathBuf)> {
    baselines::sources(kind)
        .iter()
        .map(|(_, source)| entrant(source, true))
        .collect()
}

fn admit(engine: &mut NativeEngine, entrant: &Entrant, library: &Path) -> Verdict {
    engine.admit(entrant, library, sandbox(), PluginLimits::default())
}

/// A real dataset (wine), a regression (friedman) and a non-linear one (xor), small networks.
fn small_suite() -> Suite {
    parse_suite(
        "name = \"small\"\n[defaults]\nhidden = [16, 16]\nmin_steps = 30\n\
         [[task]]\nname = \"wine\"\ndataset = \"wine\"\n\
         [[task]]\nname = \"friedman\"\ndataset = \"synthetic:friedman\"\nsamples = 300\n\
         [[task]]\nname = \"xor\"\ndataset = \"synthetic:xor\"\nsamples = 300\n",
        "test",
    )
    .expect("a suite")
}

fn evaluate(
    kind: ComponentKind,
    suite: &Suite,
    entrants: &[Entrant],
    engine: Option<&dyn TrialEngine>,
    time_limit: Option<Duration>,
) -> (Evaluation, RunMap) {
    let plan = Plan {
        kind,
        suite,
        seeds: 2,
        extra_datasets: &[],
        limits: PluginLimits::default(),
        trial_time_limit: time_limit,
        device: None,
        engine,
    };
    let log = RunLog::default();
    let evaluation = runner::evaluate_cached(&plan, entrants, sandbox(), &log, &|_, _| {})
        .expect("the evaluation runs");
    (evaluation, log.into_runs())
}

/// Two activation baselines (left to the sandbox) and `candidate`.
fn two_activation_baselines_and(candidate: Entrant) -> Vec<Entrant> {
    let mut entrants: Vec<Entrant> = baselines::sources(ComponentKind::Activation)[..2]
        .iter()
        .map(|(_, source)| entrant(source, true).0)
        .collect();
    entrants.push(candidate);
    entrants
}

/// The runs of an activation evaluation of `entrants` on the small suite: in the sandbox, then
/// with `engine`.
fn on_both_engines(entrants: &[Entrant], engine: &NativeEngine) -> (RunMap, RunMap) {
    let suite = small_suite();
    let kind = ComponentKind::Activation;
    let (_, wasm) = evaluate(kind, &suite, entrants, None, None);
    let (_, native) = evaluate(kind, &suite, entrants, Some(engine), None);
    (wasm, native)
}

/// Runs compared bit for bit (a NaN loss equals a NaN loss).
fn assert_same_runs(native: &RunMap, wasm: &RunMap) {
    assert_eq!(native.len(), wasm.len());
    for (key, w) in wasm {
        let n = &native[key];
        let same = match (n, w) {
            (
                RunOutcome::Finished {
                    val_loss: a,
                    val_accuracy: x,
                },
                RunOutcome::Finished {
                    val_loss: b,
                    val_accuracy: y,
                },
            ) => a.to_bits() == b.to_bits() && x.map(f64::to_bits) == y.map(f64::to_bits),
            _ => n == w,
        };
        assert!(same, "{key:?}: native {n:?}, WebAssembly {w:?}");
    }
}

#[test]
fn every_baseline_passes_the_differential_test_and_trains_to_the_same_bits() {
    let suite = small_suite();
    for kind in ComponentKind::ALL {
        let panel = panel(kind);
        let mut engine = engine();
        for (entrant, library) in &panel {
            let verdict = admit(&mut engine, entrant, library);
            assert!(
                matches!(verdict, Verdict::Trusted { values, .. } if values > 1000),
                "{}: {verdict:?}",
                entrant.name
            );
        }
        let entrants: Vec<Entrant> = panel.into_iter().map(|(e, _)| e).collect();
        let (wasm, wasm_runs) = evaluate(kind, &suite, &entrants, None, None);
        let (native, native_runs) = evaluate(kind, &suite, &entrants, Some(&engine), None);
        assert_eq!(
            engine.trials(),
            entrants.len() * suite.tasks.len() * 2,
            "{kind}: every trial ran natively"
        );
        assert_same_runs(&native_runs, &wasm_runs);
        assert_eq!(native, wasm, "{kind}");
    }
}

/// Behaves one way in WebAssembly and another natively: the pointer width differs.
const TARGET_DEPENDENT: &str = "use hypoforge_sdk::prelude::*;
fn f<R: Real>(x: R) -> R {
    let width = core::mem::size_of::<usize>() as f32;
    x * (width / 4.0)
}
activation!(name = \"pointer_width\", f = f);
";

#[test]
fn a_build_that_computes_differently_natively_is_not_trusted_and_runs_in_the_sandbox() {
    let (odd, library) = entrant(TARGET_DEPENDENT, false);
    let mut engine = engine();
    let verdict = admit(&mut engine, &odd, &library);
    let Verdict::Differs(detail) = &verdict else {
        panic!("expected a difference, got {verdict:?}");
    };
    assert!(
        detail.contains("WebAssembly") && detail.contains("native"),
        "{detail}"
    );
    assert!(!engine.holds(&odd.hash));

    let entrants = two_activation_baselines_and(odd);
    let (wasm, native) = on_both_engines(&entrants, &engine);
    assert_eq!(engine.trials(), 0, "nothing was admitted");
    assert_same_runs(&native, &wasm);
}

const PANICS: &str = "use hypoforge_sdk::prelude::*;
fn f<R: Real>(x: R) -> R {
    if x.value() > -1e30 {
        panic!(\"no activation today ({})\", 7);
    }
    x
}
activation!(name = \"panics\", f = f);
";

#[test]
fn a_panic_is_caught_at_the_boundary_and_fails_the_trial_as_in_the_sandbox() {
    let (panics, library) = entrant(PANICS, false);
    let mut engine = engine();
    // Both builds panic on every probe, with the same class: the builds agree.
    assert!(matches!(
        admit(&mut engine, &panics, &library),
        Verdict::Trusted { .. }
    ));
    let entrants = two_activation_baselines_and(panics);
    let (wasm, native) = on_both_engines(&entrants, &engine);
    assert_eq!(engine.trials(), 3 * 2, "the worker answered every trial");
    let failed: Vec<&RunOutcome> = native
        .iter()
        .filter(|((hash, _, _), _)| *hash == entrants[2].hash)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(failed.len(), 6);
    for outcome in failed {
        let RunOutcome::Failed { cause } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(
            cause.starts_with("panic: the plugin panicked: no activation today (7) at line 4"),
            "{cause}"
        );
    }
    assert_same_runs(&native, &wasm);
}

/// Behaves as L2 on every probe (at most 8192 weights) but not on the 200 × 64 first layer of
/// a digits network: it recurses without end, or loops forever.
fn sabotaged_l2(name: &str, sabotage: &str) -> String {
    format!(
        "use hypoforge_sdk::prelude::*;
fn deep(n: u32, acc: [f32; 32]) -> f32 {{
    let mut a = core::hint::black_box(acc);
    a[(n % 32) as usize] += 1.0;
    deep(n + 1, a) + a[3]
}}
fn penalty(w: Matrix) -> f32 {{
    if w.data().len() > 10_000 {{
        {sabotage}
    }}
    1e-4 * w.data().iter().map(|v| v * v).sum::<f32>()
}}
fn gradient(w: Matrix, g: &mut [f32]) {{
    for (g, v) in g.iter_mut().zip(w.data()) {{
        *g = 2e-4 * v;
    }}
}}
regularizer!(name = \"{name}\", penalty = penalty, gradient = gradient);
"
    )
}

#[test]
fn a_crash_or_a_hang_fails_its_trial_and_the_engine_goes_on() {
    let digits = parse_suite(
        "name = \"digits\"\n[defaults]\nhidden = [200]\nmin_steps = 1\nepochs = 1\nbatch = 256\n\
         [[task]]\nname = \"digits\"\ndataset = \"digits\"\n",
        "test",
    )
    .expect("a suite");
    let (crashes, crash_library) = entrant(
        &sabotaged_l2("crashes", "return deep(0, [0.0; 32]);"),
        false,
    );
    let (hangs, hang_library) = entrant(&sabotaged_l2("hangs", "loop {}"), false);
    let mut engine = engine();
    for (e, library) in [(&crashes, &crash_library), (&hangs, &hang_library)] {
        let verdict = admit(&mut engine, e, library);
        assert!(
            matches!(verdict, Verdict::Trusted { .. }),
            "{}: {verdict:?}",
            e.name
        );
    }
    let mut entrants: Vec<Entrant> = Vec::new();
    for (e, library) in panel(ComponentKind::Regularizer).into_iter().take(2) {
        assert!(matches!(
            admit(&mut engine, &e, &library),
            Verdict::Trusted { .. }
        ));
        entrants.push(e);
    }
    entrants.push(crashes);
    entrants.push(hangs);
    let limit = Duration::from_secs(3);
    let (_, runs) = evaluate(
        ComponentKind::Regularizer,
        &digits,
        &entrants,
        Some(&engine),
        Some(limit),
    );
    let outcome =
        |e: usize, seed: u64| &runs[&(entrants[e].hash.clone(), "digits".to_string(), seed)];
    for seed in 0..2 {
        for e in 0..2 {
            assert!(
                outcome(e, seed).val_loss().is_some(),
                "{:?}",
                outcome(e, seed)
            );
        }
        let RunOutcome::Failed { cause } = outcome(2, seed) else {
            panic!("{:?}", outcome(2, seed));
        };
        assert!(
            cause.starts_with("crash: the native worker died"),
            "{cause}"
        );
        assert!(cause.contains("overflowed its stack"), "{cause}");
        assert!(!cause.contains('\n'), "one line: {cause}");
        assert_eq!(
            outcome(3, seed),
            &RunOutcome::Failed {
                cause: hypoforge_eval::trial::time_limit_cause(limit)
            }
        );
    }
    // The panel's trials ran natively, before and after the workers that were lost.
    assert_eq!(engine.trials(), 2 * 2);
}

#[test]
fn a_library_that_is_not_a_native_plugin_is_refused() {
    let (relu, _) = entrant(baselines::sources(ComponentKind::Activation)[0].1, true);
    let dir = tempfile::tempdir().expect("a directory");
    let garbage = dir.path().join("garbage.so");
    std::fs::write(&garbage, b"\x7fELF not really").expect("writes");
    let mut engine = engine();
    let verdict = admit(&mut engine, &relu, &garbage);
    let Verdict::Failed(why) = &verdict else {
        panic!("{verdict:?}");
    };
    assert!(why.contains("cannot load"), "{why}");

    // A real native plugin of another component is not this one's build.
    let (_, other) = entrant(baselines::sources(ComponentKind::Activation)[1].1, true);
    assert!(!matches!(
        admit(&mut engine, &relu, &other),
        Verdict::Trusted { .. }
    ));
    assert!(!engine.holds(&relu.hash));
}

#[test]
fn the_native_build_is_policed_and_has_no_standard_library_though_the_sdk_links_one() {
    use hypoforge_spec::ErrorClass;
    let reads_a_file = "use hypoforge_sdk::prelude::*;
fn f<R: Real>(x: R) -> R {
    let _ = std::fs::read(\"/etc/passwd\");
    x
}
activation!(name = \"reader\", f = f);
";
    let e = compiler()
        .compile_native(reads_a_file.as_bytes())
        .expect_err("std is not reachable");
    assert_eq!(e.class, ErrorClass::Compile, "{e}");
    assert!(e.message.contains("std"), "{}", e.message);

    for (source, needle) in [
        (
            "use hypoforge_sdk::__native::Table;\nfn f<R: hypoforge_sdk::Real>(x: R) -> R { x }\n",
            "internal",
        ),
        ("extern crate std;\n", "extern"),
        ("fn f() { unsafe {} }\n", "unsafe"),
    ] {
        let e = compiler()
            .compile_native(source.as_bytes())
            .expect_err("refused by the policy");
        assert_eq!(e.class, ErrorClass::Policy, "{e}");
        assert!(e.message.contains(needle), "{}", e.message);
    }

    let relu = baselines::sources(ComponentKind::Activation)[0]
        .1
        .as_bytes();
    let first = compiler().compile_native(relu).expect("builds");
    let second = compiler().compile_native(relu).expect("builds");
    assert!(second.cached);
    assert_eq!(first.path, second.path);
    assert_eq!(first.source_hash, hypoforge_spec::source_hash(relu));
}
