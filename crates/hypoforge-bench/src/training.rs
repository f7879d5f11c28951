//! One-pass training on the reference networks: time per trial natively and in the sandbox,
//! trials in parallel, and the same protocol in PyTorch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use hypoforge_compile::Compiler;
use hypoforge_eval::model::{self, Activation, Objective, Optimizer, TrainConfig};
use hypoforge_eval::{AdamConfig, datasets, prepare, trial::PluginActivation};
use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_sandbox::Sandbox;

use crate::{NativeSource, native_gelu, native_relu};

/// The reference networks: dataset and hidden widths.
const NETWORKS: [(&str, [usize; 2]); 2] = [("digits", [128, 128]), ("mnist10k", [256, 256])];

/// One epoch, batch 64, Adam(1e-3) on `hidden` layers.
pub(crate) fn one_pass(hidden: &[usize]) -> TrainConfig {
    TrainConfig {
        hidden: hidden.to_vec(),
        batch: 64,
        epochs: 1,
        min_steps: 0,
        optimizer: Optimizer::Adam(AdamConfig::default()),
    }
}

/// The training sections, with the ReLU and GELU baselines compiled and loaded once for both.
pub(crate) fn run(
    compiler: &Compiler,
    sandbox: &Sandbox,
    sources: &[(PathBuf, Vec<u8>)],
    root: &Path,
) -> anyhow::Result<()> {
    let load = |name| -> anyhow::Result<Plugin> {
        Ok(Plugin::load(
            sandbox,
            &crate::activation_wasm(compiler, sources, name)?,
        )?)
    };
    let plugins = Plugins {
        relu: load("relu")?,
        gelu: load("gelu")?,
    };
    let timings = training(sandbox, &plugins)?;
    against_pytorch(sandbox, root, &plugins, &timings)
}

/// The baseline plugins the sections time, by the label they print.
struct Plugins {
    relu: Plugin,
    gelu: Plugin,
}

/// One-pass training on the reference networks, one thread: per-trial time, the GEMM work's
/// GFLOP/s, and the cost of the activation running in the sandbox rather than natively; then
/// trials in parallel against one thread.
fn training(sandbox: &Sandbox, plugins: &Plugins) -> anyhow::Result<Vec<Timing>> {
    println!("\n## One-pass training, one thread\n");
    println!(
        "One epoch, batch 64, Adam(1e-3), 80/20 split, standardized inputs; the fastest of \
         {TRAINING_ROUNDS} trials (seeds 0–{}), native and WebAssembly runs interleaved. The fastest \
         rather than the median: on a shared host the median moves by a third between runs.",
        TRAINING_ROUNDS - 1
    );
    println!(
        "Native is the plugin's own source compiled into the host (derivative from dual numbers, as \
         the SDK exports it). GFLOP/s counts the matrix products (forward, weight gradient, input \
         gradient past the first layer).\n"
    );
    println!(
        "| dataset | network | steps | activation | native ms/trial | GFLOP/s | WASM ms/trial | GFLOP/s | sandbox overhead |"
    );
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|");
    let mut single_thread = None;
    let mut timings = Vec::new();
    for (name, hidden) in NETWORKS {
        let data = datasets::embedded(name)?;
        let classes = data.classes().context("classification")?;
        let (mut train, mut valid) = prepare::split(&data, 0.2, 0);
        prepare::standardize(&mut train, &mut valid);
        let config = one_pass(&hidden);
        let objective = Objective::Classification { classes };
        let widths: Vec<usize> = std::iter::once(train.cols)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(classes))
            .collect();
        let per_row: f64 = widths
            .windows(2)
            .enumerate()
            .map(|(l, w)| 2.0 * (w[0] * w[1]) as f64 * if l == 0 { 2.0 } else { 3.0 })
            .sum();
        let eval_per_row: f64 = widths.windows(2).map(|w| 2.0 * (w[0] * w[1]) as f64).sum();
        let flops = per_row * train.rows as f64 + eval_per_row * valid.rows as f64;
        let arch = widths
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-");
        let run = |act: &mut dyn Activation, seed: u64| -> anyhow::Result<(f64, u64)> {
            let started = Instant::now();
            let r = model::train(&config, objective, &train, &valid, seed, act, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((started.elapsed().as_secs_f64(), r.steps))
        };
        let pairs: [(&str, &mut dyn Activation, &Plugin); 2] = [
            (
                "ReLU",
                &mut NativeSource(native_relu::native, native_relu::slope, native_relu::both),
                &plugins.relu,
            ),
            (
                "GELU",
                &mut NativeSource(native_gelu::native, native_gelu::slope, native_gelu::both),
                &plugins.gelu,
            ),
        ];
        for (label, native, plugin) in pairs {
            let mut wasm = PluginActivation(plugin.activation(sandbox, PluginLimits::default())?);
            let (mut native_s, mut wasm_s, mut steps) = (Vec::new(), Vec::new(), 0);
            for seed in 0..TRAINING_ROUNDS as u64 {
                let (t, s) = run(native, seed)?;
                native_s.push(t);
                steps = s;
                wasm_s.push(run(&mut wasm, seed)?.0);
            }
            let (native_s, wasm_s) = (fastest(&native_s), fastest(&wasm_s));
            if name == "digits" && label == "ReLU" {
                single_thread = Some(native_s);
            }
            timings.push(Timing {
                dataset: name,
                activation: label,
                native_ms: native_s * 1e3,
                wasm_ms: wasm_s * 1e3,
            });
            println!(
                "| {name} | {arch} | {steps} | {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1}% |",
                native_s * 1e3,
                flops / native_s / 1e9,
                wasm_s * 1e3,
                flops / wasm_s / 1e9,
                (wasm_s / native_s - 1.0) * 100.0
            );
        }
    }

    // Trials in parallel: the evaluator's unit of parallelism, one trial per rayon task.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = datasets::embedded("digits")?;
    let (mut train, mut valid) = prepare::split(&data, 0.2, 0);
    prepare::standardize(&mut train, &mut valid);
    let config = one_pass(&NETWORKS[0].1);
    let objective = Objective::Classification {
        classes: data.classes().context("classification")?,
    };
    let trials = 32 * threads;
    let throughput = |threads: usize| -> anyhow::Result<f64> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let started = Instant::now();
        pool.install(|| {
            use rayon::prelude::*;
            (0..trials as u64).into_par_iter().try_for_each(|seed| {
                let mut act =
                    NativeSource(native_relu::native, native_relu::slope, native_relu::both);
                model::train(&config, objective, &train, &valid, seed, &mut act, None)
                    .map(drop)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
        })?;
        Ok(trials as f64 / started.elapsed().as_secs_f64())
    };
    // Best of three alternating rounds each, as above.
    let (mut one, mut all) = (0.0f64, 0.0f64);
    for _ in 0..3 {
        one = one.max(throughput(1)?);
        all = all.max(throughput(threads)?);
    }
    println!("\n## Trials in parallel\n");
    println!(
        "{trials} digits trials (ReLU, as above; {:.1} ms each alone), one per rayon task; the best \
         of three rounds.\n",
        single_thread.unwrap_or(f64::NAN) * 1e3
    );
    println!("| threads | trials/s | speedup |");
    println!("|---:|---:|---:|");
    println!("| 1 | {one:.0} | 1.00× |");
    println!("| {threads} | {all:.0} | {:.2}× |", all / one);
    Ok(timings)
}

/// Fastest one-thread trial times from [`training`].
struct Timing {
    dataset: &'static str,
    activation: &'static str,
    native_ms: f64,
    wasm_ms: f64,
}

const PYTORCH_SEEDS: u64 = 5;

/// The same protocol in PyTorch eager mode (`pytorch/one_pass.py`, one thread): validation
/// losses over seeds, which must agree within two standard errors, and time per trial.
fn against_pytorch(
    sandbox: &Sandbox,
    root: &Path,
    plugins: &Plugins,
    timings: &[Timing],
) -> anyhow::Result<()> {
    println!("\n## Against PyTorch, same protocol\n");
    let python = std::env::var("HYPOFORGE_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = root.join("crates/hypoforge-bench/pytorch/one_pass.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg("--data")
        .arg(root.join("datasets"))
        .args(["--seeds", &PYTORCH_SEEDS.to_string()])
        .args(["--rounds", &TRAINING_ROUNDS.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output();
    let torch: serde_json::Value = match output {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout)
            .context("pytorch/one_pass.py printed something other than its JSON report")?,
        _ => {
            println!(
                "Skipped: `{python}` could not run `pytorch/one_pass.py` (it needs torch and numpy). \
                 Point HYPOFORGE_TORCH_PYTHON at a Python that has them."
            );
            return Ok(());
        }
    };
    println!(
        "`crates/hypoforge-bench/pytorch/one_pass.py` with torch {} on {} thread: PyTorch's \
         default Linear initialization, its own split and batch order per seed. hypoforge runs \
         the baseline plugins in the sandbox, as the evaluator does. Validation loss: mean ± \
         standard error over seeds 0–{}; the two agree when they differ by at most two \
         standard errors of the difference.\n",
        torch["torch"].as_str().unwrap_or("?"),
        torch["threads"],
        PYTORCH_SEEDS - 1
    );
    println!(
        "| dataset | activation | hypoforge val loss | PyTorch val loss | difference | within 2 SE | PyTorch ms/trial | hypoforge WASM ms/trial | speedup | native ms/trial | speedup |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for timing in timings {
        let entry = torch["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                r["dataset"] == timing.dataset
                    && r["activation"] == timing.activation.to_lowercase().as_str()
            })
            .context("the PyTorch report lacks a configuration")?;
        let torch_losses: Vec<f64> = entry["val_loss"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        let torch_ms = entry["ms_per_trial"].as_f64().context("ms_per_trial")?;
        let plugin = if timing.activation == "ReLU" {
            &plugins.relu
        } else {
            &plugins.gelu
        };
        let data = datasets::embedded(timing.dataset)?;
        let classes = data.classes().context("classification")?;
        let (_, hidden) = NETWORKS
            .iter()
            .find(|(name, _)| *name == timing.dataset)
            .context("a reference network")?;
        let config = one_pass(hidden);
        let mut ours = Vec::new();
        for seed in 0..PYTORCH_SEEDS {
            let (mut train, mut valid) = prepare::split(&data, 0.2, seed);
            prepare::standardize(&mut train, &mut valid);
            let mut act = PluginActivation(plugin.activation(sandbox, PluginLimits::default())?);
            let objective = Objective::Classification { classes };
            let r = model::train(&config, objective, &train, &valid, seed, &mut act, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ours.push(r.val_loss);
        }
        let (m1, se1) = mean_se(&ours);
        let (m2, se2) = mean_se(&torch_losses);
        let diff = m1 - m2;
        let bound = 2.0 * (se1 * se1 + se2 * se2).sqrt();
        println!(
            "| {} | {} | {m1:.4} ± {se1:.4} | {m2:.4} ± {se2:.4} | {diff:+.4} | {} (2 SE = {bound:.4}) | {torch_ms:.1} | {:.1} | {:.1}× | {:.1} | {:.1}× |",
            timing.dataset,
            timing.activation,
            if diff.abs() <= bound { "yes" } else { "**no**" },
            timing.wasm_ms,
            torch_ms / timing.wasm_ms,
            timing.native_ms,
            torch_ms / timing.native_ms,
        );
    }
    Ok(())
}

/// Mean and standard error of the mean.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

pub(crate) const TRAINING_ROUNDS: usize = 11;

pub(crate) fn fastest(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}
