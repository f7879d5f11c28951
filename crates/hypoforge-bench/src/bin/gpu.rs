//! `cargo xtask bench gpu`: runs (one component, one trial) per second on the GPU against the
//! CPU path (every core) and against PyTorch on the same GPU with the same protocol, and the
//! mean validation losses of both, so that speed is never bought with a different answer.
//!
//! Run from the workspace root. Without a usable GPU it says why and exits 0. The activation
//! baselines are compiled here unless `--modules DIR` hands over their modules
//! (`DIR/activation/<name>.wasm`), for a GPU host without the toolchain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use hypoforge_eval::batched::table::ActivationTable;
use hypoforge_eval::batched::{self, Batch, BatchDevice, Lane, LaneActivation, Slot, Timings};
use hypoforge_eval::cuda::CudaDevice;
use hypoforge_eval::prepare;
use hypoforge_eval::runner::{self, Entrant, Plan};
use hypoforge_eval::tasks::{self, Suite};
use hypoforge_eval::trial::PluginActivation;
use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;

/// The one-pass protocol of the PyTorch peer (`pytorch/batched.py`): one epoch, batch 64, Adam.
const PROTOCOL: &str = "name = \"gpu-bench\"\n\
    [defaults]\nepochs = 1\nmin_steps = 0\nbatch = 64\noptimizer = \"adam\"\nlr = 1e-3\n\
    validation_fraction = 0.2\n\
    [[task]]\nname = \"digits\"\ndataset = \"digits\"\nhidden = [128, 128]\n\
    [[task]]\nname = \"mnist10k\"\ndataset = \"mnist10k\"\nhidden = [256, 256]\n";

struct Args {
    seeds: u64,
    modules: Option<PathBuf>,
    python: String,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        seeds: 32,
        modules: None,
        python: std::env::var("HYPOFORGE_TORCH_PYTHON").unwrap_or_else(|_| "python3".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seeds" => args.seeds = it.next().context("--seeds N")?.parse()?,
            "--modules" => args.modules = Some(it.next().context("--modules DIR")?.into()),
            "--python" => args.python = it.next().context("--python PATH")?,
            other => bail!(
                "unknown argument {other}; usage: gpu [--seeds N] [--modules DIR] [--python PATH]"
            ),
        }
    }
    Ok(args)
}

fn panel(kind: ComponentKind, modules: Option<&Path>) -> anyhow::Result<Vec<Entrant>> {
    let sandbox = Sandbox::shared()?;
    let compiler = match modules {
        Some(_) => None,
        None => Some(hypoforge_compile::Compiler::new(
            None,
            hypoforge_compile::Limits::default(),
        )?),
    };
    hypoforge_eval::baselines::sources(kind)
        .iter()
        .map(|(name, source)| {
            let wasm = match (modules, &compiler) {
                (Some(dir), _) => {
                    let path = dir.join(kind.as_str()).join(format!("{name}.wasm"));
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                }
                (None, Some(c)) => c.compile(source.as_bytes())?.wasm,
                (None, None) => unreachable!("a compiler exists without modules"),
            };
            Ok(Entrant {
                name: (*name).to_owned(),
                hash: (*name).to_owned(),
                baseline: true,
                plugin: Plugin::load(sandbox, &wasm)?,
            })
        })
        .collect()
}

type Runs = runner::RunMap;

/// Wall seconds and runs of one evaluation.
fn time(
    kind: ComponentKind,
    suite: &Suite,
    seeds: u64,
    entrants: &[Entrant],
    device: Option<&dyn BatchDevice>,
) -> anyhow::Result<(f64, Runs)> {
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
    let start = Instant::now();
    let evaluation =
        runner::evaluate_cached(&plan, entrants, Sandbox::shared()?, &recorder, &|_, _| {})?;
    let seconds = start.elapsed().as_secs_f64();
    if !evaluation.notes.is_empty() {
        eprintln!("notes: {:?}", evaluation.notes);
    }
    Ok((seconds, recorder.into_runs()))
}

fn losses(runs: &Runs, entrant: &str, task: &str) -> Vec<f64> {
    let mut v: Vec<(u64, f64)> = runs
        .iter()
        .filter(|(k, _)| k.0 == entrant && k.1 == task)
        .filter_map(|(k, o)| o.val_loss().map(|l| (k.2, l)))
        .collect();
    v.sort_by_key(|p| p.0);
    v.into_iter().map(|p| p.1).collect()
}

fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

fn largest_difference(a: &Runs, b: &Runs) -> f64 {
    a.iter()
        .filter_map(|(k, x)| Some((x.val_loss()?, b.get(k)?.val_loss()?)))
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max)
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let device = match CudaDevice::open(0) {
        Ok(d) => d,
        Err(e) => {
            println!("Skipped: no usable GPU ({e}).");
            return Ok(());
        }
    };
    let all = panel(ComponentKind::Activation, args.modules.as_deref())?;
    let preprocessors = panel(ComponentKind::Preprocessor, args.modules.as_deref())?;
    let regularizers = panel(ComponentKind::Regularizer, args.modules.as_deref())?;
    let pair: Vec<Entrant> = all
        .iter()
        .filter(|e| e.name == "relu" || e.name == "gelu")
        .cloned()
        .collect();
    let protocol = tasks::parse_suite(PROTOCOL, "the GPU benchmark")?;
    let quick = tasks::suite("quick")?;
    let threads = rayon::current_num_threads();
    println!(
        "## GPU\n\n{} against the CPU path on {threads} threads of the same machine.",
        device.name()
    );
    println!(
        "Wall time of a whole evaluation (data preparation, tables, training, validation), best of 2.\n"
    );
    println!(
        "| workload | runs | CPU path runs/s | GPU runs/s | speedup | largest loss difference |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut gpu_runs_by_task: Runs = HashMap::new();
    let activation = ComponentKind::Activation;
    let workloads: [(&str, ComponentKind, &Suite, &[Entrant]); 5] = [
        (
            "digits 64-128-128-10, ReLU and GELU",
            activation,
            &filtered(&protocol, "digits"),
            &pair,
        ),
        (
            "mnist10k 784-256-256-10, ReLU and GELU",
            activation,
            &filtered(&protocol, "mnist10k"),
            &pair,
        ),
        (
            "quick suite, all 11 activation baselines",
            activation,
            &quick,
            &all,
        ),
        (
            "quick suite, all 6 preprocessor baselines",
            ComponentKind::Preprocessor,
            &quick,
            &preprocessors,
        ),
        (
            "quick suite, all 5 regularizer baselines (host calls every step)",
            ComponentKind::Regularizer,
            &quick,
            &regularizers,
        ),
    ];
    // A first GPU evaluation compiles (or reads) the kernels and warms the context.
    time(activation, workloads[0].2, 1, &pair, Some(&device))?;
    for (label, kind, suite, entrants) in workloads {
        let best = |device: Option<&dyn BatchDevice>| -> anyhow::Result<(f64, Runs)> {
            let a = time(kind, suite, args.seeds, entrants, device)?;
            let b = time(kind, suite, args.seeds, entrants, device)?;
            Ok(if a.0 <= b.0 { a } else { b })
        };
        let (cpu_s, cpu_runs) = best(None)?;
        let (gpu_s, gpu_runs) = best(Some(&device))?;
        let runs = gpu_runs.len() as f64;
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.1}x | {:.1e} |",
            gpu_runs.len(),
            runs / cpu_s,
            runs / gpu_s,
            cpu_s / gpu_s,
            largest_difference(&gpu_runs, &cpu_runs)
        );
        if suite.name == "gpu-bench" {
            gpu_runs_by_task.extend(gpu_runs);
        }
    }
    let training = training_only(&device, &protocol, &pair, args.seeds)?;
    against_pytorch(&args, &gpu_runs_by_task, &training)
}

/// Runs per second of the training alone (data prepared and tables built beforehand, as the
/// PyTorch peer times its own), with where the time went.
fn training_only(
    device: &CudaDevice,
    protocol: &Suite,
    pair: &[Entrant],
    seeds: u64,
) -> anyhow::Result<HashMap<String, f64>> {
    let sandbox = Sandbox::shared()?;
    let mut tables = Vec::new();
    for e in pair {
        let mut act = PluginActivation(e.plugin.activation(sandbox, PluginLimits::default())?);
        tables.push(Arc::new(ActivationTable::sample(&mut act)?));
    }
    println!("\nThe training alone (data prepared and tables sampled beforehand), best of 3:\n");
    println!("| task | runs | lay-out ms | upload ms | training ms | validation ms | runs/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut rates = HashMap::new();
    for task in &protocol.tasks {
        let data = task.dataset(&[])?;
        let objective = prepare::objective(&data);
        let slots: Vec<Slot> = (0..seeds)
            .map(|seed| {
                let (mut train, mut valid) = prepare::split(&data, task.validation_fraction, seed);
                prepare::standardize(&mut train, &mut valid);
                Slot { train, valid }
            })
            .collect();
        let mut best: Option<Timings> = None;
        for _ in 0..3 {
            let mut batch = Batch {
                config: &task.train,
                objective,
                slots: slots.clone(),
                tables: tables.clone(),
                lanes: (0..tables.len())
                    .flat_map(|t| {
                        (0..seeds).map(move |seed| Lane {
                            slot: seed as usize,
                            seed,
                            activation: LaneActivation::Table(t),
                            regularizer: None,
                        })
                    })
                    .collect(),
            };
            let mut backend = device.backend().map_err(anyhow::Error::msg)?;
            let (results, t) = batched::train_timed(&mut batch, &mut *backend, &device.name())?;
            if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
                bail!("a lane failed: {e}");
            }
            let total = |t: &Timings| t.host + t.upload + t.train + t.validate;
            if best.as_ref().is_none_or(|b| total(&t) < total(b)) {
                best = Some(t);
            }
        }
        let t = best.context("three rounds ran")?;
        let runs = tables.len() as f64 * seeds as f64;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        // The PyTorch peer's clock covers training and validation with the data on the device.
        let rate = runs / (t.train + t.validate).as_secs_f64();
        println!(
            "| {} | {runs} | {:.1} | {:.1} | {:.1} | {:.1} | {rate:.0} |",
            task.name,
            ms(t.host),
            ms(t.upload),
            ms(t.train),
            ms(t.validate)
        );
        rates.insert(task.name.clone(), rate);
    }
    Ok(rates)
}

fn filtered(suite: &Suite, task: &str) -> Suite {
    let mut s = suite.clone();
    s.tasks.retain(|t| t.name == task);
    s
}

/// `pytorch/batched.py` on the same GPU: its rates, and its losses beside ours.
fn against_pytorch(
    args: &Args,
    ours: &Runs,
    training: &HashMap<String, f64>,
) -> anyhow::Result<()> {
    let output = std::process::Command::new(&args.python)
        .args([
            "crates/hypoforge-bench/pytorch/batched.py",
            "--data",
            "datasets",
        ])
        .args(["--seeds", &args.seeds.to_string(), "--device", "cuda"])
        .output();
    let report: serde_json::Value = match output {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout)
            .context("pytorch/batched.py printed something other than its JSON report")?,
        Ok(o) => {
            println!(
                "\nPyTorch skipped: pytorch/batched.py failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return Ok(());
        }
        Err(e) => {
            println!("\nPyTorch skipped: cannot run {}: {e}", args.python);
            return Ok(());
        }
    };
    println!(
        "\nPyTorch {} on {}, the same protocol (`pytorch/batched.py`, {} seeds):\n",
        report["torch"].as_str().unwrap_or("?"),
        report["device"].as_str().unwrap_or("?"),
        args.seeds
    );
    println!(
        "| task | runs | hypoforge training runs/s | PyTorch batched runs/s | PyTorch eager runs/s | activation | hypoforge GPU val loss | PyTorch val loss | within 2 SE |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---|");
    for task in ["digits", "mnist10k"] {
        let t = &report["tasks"][task];
        for act in ["relu", "gelu"] {
            let theirs: Vec<f64> = t["val_loss"][act]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default();
            let (pm, pse) = mean_se(&theirs);
            let (hm, hse) = mean_se(&losses(ours, act, task));
            let agree = (pm - hm).abs() <= 2.0 * (pse * pse + hse * hse).sqrt();
            println!(
                "| {task} | {} | {:.0} | {:.0} | {:.1} | {act} | {hm:.4} ± {hse:.4} | {pm:.4} ± {pse:.4} | {} |",
                t["runs"].as_u64().unwrap_or(0),
                training.get(task).copied().unwrap_or(f64::NAN),
                t["batched_runs_per_s"].as_f64().unwrap_or(f64::NAN),
                t["eager_runs_per_s"].as_f64().unwrap_or(f64::NAN),
                if agree { "yes" } else { "no" }
            );
        }
    }
    Ok(())
}
