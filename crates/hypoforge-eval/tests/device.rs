//! Batch devices against the CPU path, through the runner: the batched CPU reference must give
//! the CPU path's very numbers wherever the activation is native, and the GPU (when there is
//! one) must agree with the CPU on every baseline's losses within a stated tolerance.
//!
//! The baselines are compiled here; a machine without the toolchain (a GPU host) can be handed
//! their modules instead: `HYPOFORGE_TEST_MODULES=DIR` reads `DIR/<kind>/<name>.wasm`, and
//! `HYPOFORGE_EXPORT_MODULES=DIR` makes a run here write them.

// The helpers are test code too: a failure in one is the test's failure.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use hypoforge_eval::baselines;
use hypoforge_eval::batched::{BatchDevice, CpuDevice};
use hypoforge_eval::metrics::RunOutcome;
use hypoforge_eval::runner::{self, Entrant, Evaluation, Plan};
use hypoforge_eval::tasks::{self, Suite};
use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;

fn modules(kind: ComponentKind) -> Vec<(String, Vec<u8>)> {
    if let Some(dir) = std::env::var_os("HYPOFORGE_TEST_MODULES") {
        let dir = PathBuf::from(dir).join(kind.as_str());
        return baselines::sources(kind)
            .iter()
            .map(|(name, _)| {
                let path = dir.join(format!("{name}.wasm"));
                let wasm = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                ((*name).to_owned(), wasm)
            })
            .collect();
    }
    let compiler = hypoforge_compile::Compiler::new(None, hypoforge_compile::Limits::default())
        .expect("the toolchain (or HYPOFORGE_TEST_MODULES)");
    let export =
        std::env::var_os("HYPOFORGE_EXPORT_MODULES").map(|d| PathBuf::from(d).join(kind.as_str()));
    baselines::sources(kind)
        .iter()
        .map(|(name, source)| {
            let wasm = compiler
                .compile(source.as_bytes())
                .expect("a baseline compiles")
                .wasm;
            if let Some(dir) = &export {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(dir.join(format!("{name}.wasm")), &wasm).unwrap();
            }
            ((*name).to_owned(), wasm)
        })
        .collect()
}

fn panel(kind: ComponentKind) -> Vec<Entrant> {
    let sandbox = Sandbox::shared().unwrap();
    modules(kind)
        .into_iter()
        .map(|(name, wasm)| Entrant {
            hash: format!("{kind}/{name}"),
            name,
            baseline: true,
            plugin: Plugin::load(sandbox, &wasm).unwrap(),
        })
        .collect()
}

type Runs = runner::RunMap;

fn evaluate(
    kind: ComponentKind,
    suite: &Suite,
    seeds: u64,
    entrants: &[Entrant],
    device: Option<&dyn BatchDevice>,
) -> (Evaluation, Runs) {
    let plan = Plan {
        kind,
        suite,
        seeds,
        extra_datasets: &[],
        limits: PluginLimits::default(),
        trial_time_limit: None,
        device,
        engine: None,
    };
    let recorder = runner::RunLog::default();
    let evaluation = runner::evaluate_cached(
        &plan,
        entrants,
        Sandbox::shared().unwrap(),
        &recorder,
        &|_, _| {},
    )
    .expect("the evaluation runs");
    (evaluation, recorder.into_runs())
}

/// The quick suite's tasks that cover every shape of problem: tiny tabular with repeated
/// passes, wildly scaled features, a synthetic non-linear one and the regression.
fn small_suite() -> Suite {
    let mut suite = tasks::suite("quick").unwrap();
    suite
        .tasks
        .retain(|t| ["iris", "wine", "two_moons", "friedman"].contains(&t.name.as_str()));
    suite
}

/// The largest and the mean `|a − b| / (1 + |b|)` over runs both finished, and the runs whose
/// outcome kind differs.
fn compare(a: &Runs, b: &Runs) -> (f64, f64, Vec<String>) {
    assert_eq!(a.len(), b.len());
    let (mut worst, mut sum, mut n) = (0.0f64, 0.0f64, 0usize);
    let mut differ = Vec::new();
    for (key, x) in a {
        match (x, &b[key]) {
            (
                RunOutcome::Finished { val_loss: l, .. },
                RunOutcome::Finished { val_loss: r, .. },
            ) => {
                let d = (l - r).abs() / (1.0 + r.abs());
                worst = worst.max(d);
                sum += d;
                n += 1;
            }
            (RunOutcome::Failed { .. }, RunOutcome::Failed { .. }) => {}
            (x, y) => differ.push(format!("{key:?}: {x:?} vs {y:?}")),
        }
    }
    (worst, sum / n.max(1) as f64, differ)
}

#[test]
fn the_batched_cpu_reference_reproduces_the_cpu_path() {
    let suite = small_suite();
    for kind in ComponentKind::ALL {
        let entrants = panel(kind);
        let (cpu, cpu_runs) = evaluate(kind, &suite, 2, &entrants, None);
        let (batched, batched_runs) = evaluate(kind, &suite, 2, &entrants, Some(&CpuDevice));
        assert!(batched.notes.is_empty(), "{kind}: {:?}", batched.notes);
        if kind == ComponentKind::Activation {
            // The tables' interpolation is the only difference.
            let (worst, _, differ) = compare(&batched_runs, &cpu_runs);
            assert!(differ.is_empty(), "{differ:?}");
            assert!(
                worst < 1e-4,
                "{kind}: largest relative loss difference {worst:e}"
            );
        } else {
            // Native ReLU in the slot: the same bits, so the same leaderboard.
            assert_eq!(batched_runs, cpu_runs, "{kind}");
            assert_eq!(batched, cpu, "{kind}");
        }
    }
}

#[test]
fn an_activation_the_table_cannot_follow_trains_on_the_cpu_with_a_note() {
    let compiler = hypoforge_compile::Compiler::new(None, hypoforge_compile::Limits::default());
    let Ok(compiler) = compiler else {
        eprintln!("skipped: no toolchain to compile the hypothesis");
        return;
    };
    let source = "use hypoforge_sdk::prelude::*;\n\
                  fn f<R: Real>(x: R) -> R { x.sin() + x * R::c(0.5) }\n\
                  activation!(name = \"wavy\", f = f);\n";
    let wasm = compiler.compile(source.as_bytes()).unwrap().wasm;
    let mut entrants = panel(ComponentKind::Activation);
    entrants.retain(|e| e.name == "relu" || e.name == "gelu");
    entrants.push(Entrant {
        name: "wavy".into(),
        hash: "wavy".into(),
        baseline: false,
        plugin: Plugin::load(Sandbox::shared().unwrap(), &wasm).unwrap(),
    });
    let mut suite = small_suite();
    suite.tasks.truncate(1);
    let (evaluation, runs) = evaluate(
        ComponentKind::Activation,
        &suite,
        2,
        &entrants,
        Some(&CpuDevice),
    );
    assert_eq!(evaluation.notes.len(), 1, "{:?}", evaluation.notes);
    assert!(
        evaluation.notes[0].starts_with("wavy: its table deviates")
            && evaluation.notes[0].ends_with("ran on the CPU"),
        "{}",
        evaluation.notes[0]
    );
    // Its runs are the CPU path's, bit for bit.
    let (_, cpu_runs) = evaluate(ComponentKind::Activation, &suite, 2, &entrants, None);
    for (key, outcome) in runs.iter().filter(|(k, _)| k.0 == "wavy") {
        assert_eq!(outcome, &cpu_runs[key]);
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use hypoforge_eval::cuda::{self, CudaDevice};

    /// The agreement the GPU path promises with the CPU path, on each run's validation loss,
    /// as `|gpu − cpu| / (1 + |cpu|)`: the two sum in different orders and the activation
    /// reads a table, so bits differ, but one pass of training must not drift. The worst run
    /// sets the bound (L1 and max-norm have kinks in their gradients, where a rounding
    /// difference moves a weight to the other side); the mean over runs is held far tighter.
    const TOLERANCE: f64 = 5e-3;
    const MEAN_TOLERANCE: f64 = 2e-4;

    fn gpu() -> Option<CudaDevice> {
        match CudaDevice::open(0) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("skipped: no usable GPU ({e})");
                None
            }
        }
    }

    #[test]
    fn nvrtc_compiles_the_kernels() {
        if !cuda::nvrtc_available() {
            eprintln!("skipped: NVRTC not found (HYPOFORGE_NVRTC or LD_LIBRARY_PATH)");
            return;
        }
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("cuda");
        let ptx = cuda::compile_cached("compute_90", &dir).expect("the kernels compile");
        for entry in cuda::ENTRY_POINTS {
            assert!(
                ptx.contains(&format!(".entry {entry}(")),
                "{entry} missing from the PTX"
            );
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(cuda::compile_cached("compute_90", &dir).unwrap(), ptx);
        // The cache is what is read: a planted entry comes back as it is.
        let entry = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&entry, "planted").unwrap();
        assert_eq!(cuda::compile_cached("compute_90", &dir).unwrap(), "planted");
        // Another architecture is another entry.
        cuda::compile_cached("compute_80", &dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }

    #[test]
    fn without_a_gpu_opening_one_is_a_clear_error() {
        match CudaDevice::open(0) {
            Ok(d) => {
                // With one, an index past the last is the error.
                let err = CudaDevice::open(4096).unwrap_err().to_string();
                assert!(err.contains("index 4096"), "{err}");
                eprintln!("opened {}", d.name());
            }
            Err(e) => {
                let message = e.to_string();
                assert!(!message.is_empty());
                let opened =
                    hypoforge_eval::device::open(hypoforge_eval::device::DeviceChoice::Cuda);
                let full = opened.unwrap_err().to_string();
                assert!(
                    full.starts_with("--device cuda: ") && full.contains(&message),
                    "{full}"
                );
                assert!(
                    full.ends_with("use --device cpu (or auto) to evaluate on the CPU"),
                    "{full}"
                );
            }
        }
    }

    #[test]
    fn the_gpu_agrees_with_the_cpu_on_every_baseline() {
        let Some(device) = gpu() else { return };
        let suite = tasks::suite("quick").unwrap();
        for kind in ComponentKind::ALL {
            let entrants = panel(kind);
            let (_, cpu_runs) = evaluate(kind, &suite, 3, &entrants, None);
            let (gpu, gpu_runs) = evaluate(kind, &suite, 3, &entrants, Some(&device));
            assert!(gpu.notes.is_empty(), "{kind}: {:?}", gpu.notes);
            let (worst, mean, differ) = compare(&gpu_runs, &cpu_runs);
            eprintln!(
                "{kind}: {} runs, relative loss difference: largest {worst:.3e}, mean {mean:.3e}",
                gpu_runs.len()
            );
            assert!(differ.is_empty(), "{kind}: {differ:?}");
            assert!(worst <= TOLERANCE, "{kind}: {worst:e} > {TOLERANCE:e}");
            assert!(
                mean <= MEAN_TOLERANCE,
                "{kind}: mean {mean:e} > {MEAN_TOLERANCE:e}"
            );
            // Bit for bit from run to run on the GPU too.
            let (_, again) = evaluate(kind, &suite, 3, &entrants, Some(&device));
            assert_eq!(again, gpu_runs, "{kind}");
        }
    }
}
