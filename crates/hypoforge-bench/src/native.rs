//! The native fast path against the sandbox: build and admission costs, per-element and
//! per-trial speed, and whole evaluations through the worker processes.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use hypoforge_compile::{Compiler, Limits};
use hypoforge_eval::model::Activation;
use hypoforge_eval::runner::{self, EngineTrial, Entrant, Plan, TrialEngine};
use hypoforge_eval::trial::{self, PluginActivation, Slot};
use hypoforge_eval::{datasets, tasks};
use hypoforge_native::library::NativePlugin;
use hypoforge_native::{EngineOptions, NativeEngine, Verdict, WorkerCommand};
use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;

use crate::training::{TRAINING_ROUNDS, fastest, one_pass};

/// The argument on which this program serves as a native worker for its own engine.
pub(crate) const WORKER_ARG: &str = "native-worker";

pub(crate) fn run(sandbox: &Sandbox, sources: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
    println!("\n## Native fast path (`--engine native`)\n");
    println!(
        "Each source is also built as a shared library for this machine (same policy, crate root \
         and SDK, `-C opt-level=3`, thin LTO, no target-specific CPU features), loaded only in \
         worker processes, and trusted after a differential test: every call of a fixed probe set \
         must give the sandbox's bits.\n"
    );
    let cache = tempfile::tempdir()?;
    let compiler =
        Compiler::new(Some(cache.path()), Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    let mut libraries = Vec::new();
    for (_, source) in sources {
        let built = compiler
            .compile_native(source)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(!built.cached);
        cold.push(built.elapsed);
        let again = compiler
            .compile_native(source)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(again.cached);
        cached.push(again.elapsed);
        libraries.push(built.path);
    }
    let mut engine = NativeEngine::new(EngineOptions::new(WorkerCommand::this_executable(&[
        WORKER_ARG,
    ])?));
    let mut admit = Vec::new();
    let mut entrants = Vec::new();
    for ((path, source), library) in sources.iter().zip(&libraries) {
        let wasm = compiler
            .compile(source)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let plugin = Plugin::load(sandbox, &wasm.wasm)?;
        let entrant = Entrant {
            name: plugin.meta().name.clone(),
            hash: wasm.source_hash,
            baseline: true,
            plugin,
        };
        let started = Instant::now();
        let verdict = engine.admit(&entrant, library, sandbox, PluginLimits::default());
        admit.push(started.elapsed());
        anyhow::ensure!(
            matches!(verdict, Verdict::Trusted { .. }),
            "{}: the baseline failed the differential test: {verdict:?}",
            path.display()
        );
        entrants.push((entrant, library.clone()));
    }
    println!(
        "| step (all {} baseline plugins) | median | p90 | samples |",
        sources.len()
    );
    println!("|---|---:|---:|---:|");
    crate::row("native build, cold (policy + rustc + link)", &mut cold);
    crate::row("native build, cached", &mut cached);
    crate::row(
        "differential test (first worker start included in one)",
        &mut admit,
    );

    per_element(&entrants)?;
    per_trial(sandbox, &engine, &entrants)?;
    evaluations(sandbox, &engine, &entrants)
}

fn named<'a>(
    entrants: &'a [(Entrant, PathBuf)],
    name: &str,
) -> anyhow::Result<&'a (Entrant, PathBuf)> {
    entrants
        .iter()
        .find(|(e, _)| e.name == name)
        .with_context(|| format!("the baseline {name}"))
}

/// Loads a baseline's native build into this process, as a worker does.
fn load(library: &std::path::Path) -> anyhow::Result<NativePlugin> {
    // SAFETY: a baseline's native build, from compile_native, that passed the differential test.
    Ok(unsafe { NativePlugin::load(library) }?)
}

fn per_element(entrants: &[(Entrant, PathBuf)]) -> anyhow::Result<()> {
    println!("\n### Per element: `f` and `f′` in one pass, n = 4096\n");
    println!(
        "Standard normal inputs, as in the sandbox-overhead table; the native build called in \
         process (as a worker calls it).\n"
    );
    println!("| activation | sandbox ns/elem | native build ns/elem | speedup |");
    println!("|---|---:|---:|---:|");
    for name in ["gelu", "relu", "mish", "selu"] {
        let (entrant, library) = named(entrants, name)?;
        let native = load(library)?;
        let mut native = native.activation().context("an activation")?;
        let mut wasm = PluginActivation(
            entrant
                .plugin
                .activation(Sandbox::shared()?, PluginLimits::default())?,
        );
        let n = 4096;
        let mut rng = hypoforge_spec::rng::Rng::new(n as u64);
        let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let (mut y, mut dy) = (vec![0.0f32; n], vec![0.0f32; n]);
        let reps = (1 << 24) / n;
        let mut time = |act: &mut dyn Activation| {
            crate::time_per_element(reps, n, || {
                let _ = act.forward_with_derivative(black_box(&x), &mut y, &mut dy);
                black_box((&y, &dy));
            })
        };
        let (w, nt) = (time(&mut wasm), time(&mut native));
        println!("| {name} | {w:.2} | {nt:.2} | {:.2}× |", w / nt);
    }
    Ok(())
}

fn per_trial(
    sandbox: &Sandbox,
    engine: &NativeEngine,
    entrants: &[(Entrant, PathBuf)],
) -> anyhow::Result<()> {
    println!("\n### One-pass training, one thread\n");
    println!(
        "The digits network of the training table (64-128-128-10, 23 steps); the fastest of \
         {TRAINING_ROUNDS} trials each, whole: split, standardization, the plugin's instance and \
         training. \"In process\" trains with the native build loaded here; \"worker\" is what \
         `--engine native` does: the trial sent to a worker process and its result read back (the \
         dataset was sent once, before).\n"
    );
    println!(
        "| activation | sandbox ms/trial | native, in process | speedup | native, worker | speedup |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let data = datasets::embedded("digits")?;
    let config = one_pass(&[128, 128]);
    let mut suite = tasks::suite("quick")?;
    let mut task = suite.tasks.remove(0);
    task.train = config.clone();
    task.validation_fraction = 0.2;
    for name in ["gelu", "relu"] {
        let (entrant, library) = named(entrants, name)?;
        let native = load(library)?;
        let mut in_process = native.activation().context("an activation")?;
        let (mut w, mut n, mut k) = (Vec::new(), Vec::new(), Vec::new());
        for seed in 0..TRAINING_ROUNDS as u64 {
            let started = Instant::now();
            let outcome = trial::run_trial(
                &task,
                &data,
                seed,
                &entrant.plugin,
                sandbox,
                PluginLimits::default(),
                None,
            );
            w.push(started.elapsed().as_secs_f64());
            anyhow::ensure!(outcome.val_loss().is_some(), "{outcome:?}");
            let started = Instant::now();
            trial::train_in_slot(
                &task.train,
                task.validation_fraction,
                &data,
                seed,
                Slot::Activation(&mut in_process),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            n.push(started.elapsed().as_secs_f64());
            let trial = EngineTrial {
                evaluation: u64::MAX,
                task_index: 0,
                task: &task,
                dataset: &data,
                seed,
                time_limit: None,
            };
            let started = Instant::now();
            let outcome = engine
                .run_trial(entrant, &trial)
                .context("the engine holds the baseline")?;
            k.push(started.elapsed().as_secs_f64());
            anyhow::ensure!(outcome.val_loss().is_some(), "{outcome:?}");
        }
        // The first worker trial also sent the dataset; the fastest is a later one.
        let (w, n, k) = (fastest(&w), fastest(&n), fastest(&k));
        println!(
            "| {name} | {:.2} | {:.2} | {:.2}× | {:.2} | {:.2}× |",
            w * 1e3,
            n * 1e3,
            w / n,
            k * 1e3,
            w / k
        );
    }
    Ok(())
}

fn evaluations(
    sandbox: &Sandbox,
    engine: &NativeEngine,
    entrants: &[(Entrant, PathBuf)],
) -> anyhow::Result<()> {
    let threads = rayon::current_num_threads();
    let seeds = 3;
    let suite = tasks::suite("quick")?;
    println!("\n### Whole evaluations\n");
    println!(
        "`evaluate` of each kind's baseline panel on the quick suite, {seeds} seeds, {threads} \
         threads: the sandbox against native builds in worker processes (each evaluation sends the \
         workers its datasets within the timing; workers stay up between evaluations, as they do \
         within one). The results must be identical; the best of three runs each.\n"
    );
    println!("| kind | trials | sandbox s | native s | speedup | results identical |");
    println!("|---|---:|---:|---:|---:|---|");
    for kind in ComponentKind::ALL {
        let panel: Vec<Entrant> = entrants
            .iter()
            .filter(|(e, _)| e.plugin.meta().kind == kind)
            .map(|(e, _)| e.clone())
            .collect();
        let evaluate =
            |engine: Option<&dyn TrialEngine>| -> anyhow::Result<(Duration, runner::Evaluation)> {
                let plan = Plan {
                    kind,
                    suite: &suite,
                    seeds,
                    extra_datasets: &[],
                    limits: PluginLimits::default(),
                    trial_time_limit: None,
                    device: None,
                    engine,
                };
                let started = Instant::now();
                let evaluation = runner::evaluate(&plan, &panel, sandbox, &|_, _| {})?;
                Ok((started.elapsed(), evaluation))
            };
        let (mut wasm_t, mut native_t) = (Duration::MAX, Duration::MAX);
        let mut identical = true;
        for _ in 0..3 {
            let (t, wasm) = evaluate(None)?;
            wasm_t = wasm_t.min(t);
            let (t, native) = evaluate(Some(engine))?;
            native_t = native_t.min(t);
            identical &= wasm == native;
        }
        println!(
            "| {kind} | {} | {:.2} | {:.2} | {:.2}× | {} |",
            panel.len() * suite.tasks.len() * seeds as usize,
            wasm_t.as_secs_f64(),
            native_t.as_secs_f64(),
            wasm_t.as_secs_f64() / native_t.as_secs_f64(),
            if identical { "yes" } else { "**no**" }
        );
    }
    Ok(())
}
