//! `cargo xtask bench`: measures the foundation's costs and prints a Markdown report.
//!
//! - compile time per hypothesis (every baseline plugin), cold (empty cache) and cached;
//! - validation time per plugin (module compilation in the sandbox plus all checks);
//! - the sandbox's per-element cost for an activation against the same source compiled natively.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use hypoforge_compile::{Compiler, Limits};
use hypoforge_plugin::{Activation, Plugin, PluginLimits};
use hypoforge_sandbox::{Sandbox, SandboxOptions};

// The baseline sources compiled natively, for the overhead comparison. On non-wasm targets the
// SDK's export macros expand to nothing, so only the functions remain.
#[allow(dead_code)]
mod native_gelu {
    include!("../../../plugins/activation/gelu.rs");
    pub fn native(x: f32) -> f32 {
        gelu(x)
    }
    pub fn slope(x: f32) -> f32 {
        gelu(Dual::var(x)).d
    }
}
#[allow(dead_code)]
mod native_relu {
    include!("../../../plugins/activation/relu.rs");
    pub fn native(x: f32) -> f32 {
        relu(x)
    }
    pub fn slope(x: f32) -> f32 {
        relu(Dual::var(x)).d
    }
}

/// An activation source built natively: `f` and its dual-number derivative, as the SDK's
/// `activation!` exports them in WebAssembly, inlined into the training loop's calls.
struct NativeSource<F, D>(F, D);

impl<F: Fn(f32) -> f32, D: Fn(f32) -> f32> hypoforge_eval::model::Activation
    for NativeSource<F, D>
{
    fn forward(
        &mut self,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), hypoforge_eval::model::RunFailure> {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (self.0)(x);
        }
        Ok(())
    }
    fn derivative(
        &mut self,
        x: &[f32],
        dy: &mut [f32],
    ) -> Result<(), hypoforge_eval::model::RunFailure> {
        for (d, &x) in dy.iter_mut().zip(x) {
            *d = (self.1)(x);
        }
        Ok(())
    }
}

const COLD_ROUNDS: usize = 3;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sources = baseline_sources(&root.join("plugins"))?;
    let sandbox = Sandbox::shared().context("sandbox")?;
    // `hypoforge-bench training` and `hypoforge-bench overhead` run one section alone (for
    // profiling).
    let section = std::env::args().nth(1);
    if section.as_deref() == Some("overhead") {
        let compiler =
            Compiler::new(None, Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        return overhead(&compiler, sandbox, &sources);
    }
    if section.as_deref() == Some("training") {
        let compiler =
            Compiler::new(None, Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let timings = training(&compiler, sandbox, &sources)?;
        return against_pytorch(&compiler, sandbox, &sources, &root, &timings);
    }

    println!(
        "## Compile and validate (all {} baseline plugins)\n",
        sources.len()
    );
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    let mut setup = Vec::new();
    let mut validate = Vec::new();
    for _ in 0..COLD_ROUNDS {
        let cache = tempfile::tempdir()?;
        let started = Instant::now();
        let compiler = Compiler::new(Some(cache.path()), Limits::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        setup.push(started.elapsed());
        for (_, source) in &sources {
            let c = compiler
                .compile(source)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            assert!(!c.cached);
            cold.push(c.elapsed);
        }
        for (_, source) in &sources {
            let c = compiler
                .compile(source)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            assert!(c.cached);
            cached.push(c.elapsed);
            let started = Instant::now();
            let report =
                hypoforge_validate::validate(sandbox, &c.wasm, None, PluginLimits::default());
            validate.push(started.elapsed());
            anyhow::ensure!(
                report.valid(),
                "a baseline failed validation: {:?}",
                report.error
            );
        }
    }
    println!("| step | median | p90 | samples |");
    println!("|---|---:|---:|---:|");
    row("compiler start-up (unpack the guest SDK)", &mut setup);
    row(
        "compile, cold (policy + rustc: opt-level=3, thin LTO)",
        &mut cold,
    );
    row("compile, cached (content-addressed hit)", &mut cached);
    row("validate (sandbox compile + all checks)", &mut validate);

    let compiler = Compiler::new(None, Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    overhead(&compiler, sandbox, &sources)?;
    let timings = training(&compiler, sandbox, &sources)?;
    against_pytorch(&compiler, sandbox, &sources, &root, &timings)
}

/// The sandbox's cost per element, `f` and `f′`, against the same source compiled natively.
fn overhead(
    compiler: &Compiler,
    sandbox: &Sandbox,
    sources: &[(PathBuf, Vec<u8>)],
) -> anyhow::Result<()> {
    println!(
        "\n## Sandbox overhead per element: activation in WebAssembly vs the same source native\n"
    );
    println!(
        "Buffer of standard normal inputs in, `f` over it, buffer out, through the plugin ABI (copies included), against a native loop.\n"
    );
    println!(
        "Default engine, and one built with `SandboxOptions {{ canonicalize_nans: true }}`.\n"
    );
    println!(
        "| activation | n | function | native ns/elem | sandbox ns/elem | ratio | NaN-canonicalizing ns/elem | ratio |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    let canonical = Sandbox::with_options(SandboxOptions {
        canonicalize_nans: true,
    })?;
    type Pair = (fn(f32) -> f32, fn(f32) -> f32);
    let natives: [(&str, Pair); 2] = [
        ("gelu", (native_gelu::native, native_gelu::slope)),
        ("relu", (native_relu::native, native_relu::slope)),
    ];
    for (name, (native_f, native_df)) in natives {
        let source = &sources
            .iter()
            .find(|(p, _)| p.ends_with(format!("activation/{name}.rs")))
            .context("baseline source")?
            .1;
        let wasm = compiler
            .compile(source)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .wasm;
        let mut default_engine =
            Plugin::load(sandbox, &wasm)?.activation(sandbox, PluginLimits::default())?;
        let mut canonical_engine =
            Plugin::load(&canonical, &wasm)?.activation(&canonical, PluginLimits::default())?;
        for n in [64usize, 4096, 1 << 20] {
            // Standard normal inputs, as pre-activations are: random signs, so a branchy
            // activation pays its mispredictions here as it does in training.
            let mut rng = hypoforge_spec::rng::Rng::new(n as u64);
            let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let mut y = vec![0.0f32; n];
            let reps = (1 << 24) / n;
            for (function, derivative, native) in [("f", false, native_f), ("f′", true, native_df)]
            {
                let native_t = time_per_element(reps, n, || {
                    for (y, &x) in y.iter_mut().zip(black_box(&x)) {
                        *y = native(x);
                    }
                    black_box(&y);
                });
                let wasm_t = time_plugin(&mut default_engine, derivative, &x, &mut y, reps)?;
                let canonical_t = time_plugin(&mut canonical_engine, derivative, &x, &mut y, reps)?;
                println!(
                    "| {name} | {n} | {function} | {native_t:.2} | {wasm_t:.2} | {:.1}× | {canonical_t:.2} | {:.1}× |",
                    wasm_t / native_t,
                    canonical_t / native_t
                );
            }
        }
    }
    Ok(())
}

/// One-pass training on the reference networks, one thread: per-trial time, the GEMM work's
/// GFLOP/s, and the cost of the activation running in the sandbox rather than natively; then
/// trials in parallel against one thread.
fn training(
    compiler: &Compiler,
    sandbox: &Sandbox,
    sources: &[(PathBuf, Vec<u8>)],
) -> anyhow::Result<Vec<Timing>> {
    use hypoforge_eval::model::{self, Activation, Objective, Optimizer, TrainConfig};
    use hypoforge_eval::{AdamConfig, datasets, prepare, trial::PluginActivation};

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
    let relu = activation_plugin(compiler, sandbox, sources, "relu")?;
    let gelu = activation_plugin(compiler, sandbox, sources, "gelu")?;
    let mut single_thread = None;
    let mut timings = Vec::new();
    for (name, hidden) in [
        ("digits", vec![128usize, 128]),
        ("mnist10k", vec![256, 256]),
    ] {
        let data = datasets::embedded(name)?;
        let classes = data.classes().context("classification")?;
        let (mut train, mut valid) = prepare::split(&data, 0.2, 0);
        prepare::standardize(&mut train, &mut valid);
        let config = TrainConfig {
            hidden: hidden.clone(),
            batch: 64,
            epochs: 1,
            min_steps: 0,
            optimizer: Optimizer::Adam(AdamConfig::default()),
        };
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
                &mut NativeSource(native_relu::native, native_relu::slope),
                &relu,
            ),
            (
                "GELU",
                &mut NativeSource(native_gelu::native, native_gelu::slope),
                &gelu,
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
    let config = TrainConfig {
        hidden: vec![128, 128],
        batch: 64,
        epochs: 1,
        min_steps: 0,
        optimizer: Optimizer::Adam(AdamConfig::default()),
    };
    let objective = Objective::Classification {
        classes: data.classes().context("classification")?,
    };
    let trials = 8 * threads;
    let throughput = |threads: usize| -> anyhow::Result<f64> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let started = Instant::now();
        pool.install(|| {
            use rayon::prelude::*;
            (0..trials as u64).into_par_iter().try_for_each(|seed| {
                let mut act = NativeSource(native_relu::native, native_relu::slope);
                model::train(&config, objective, &train, &valid, seed, &mut act, None)
                    .map(drop)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
        })?;
        Ok(trials as f64 / started.elapsed().as_secs_f64())
    };
    let one = throughput(1)?;
    let all = throughput(threads)?;
    println!("\n## Trials in parallel\n");
    println!(
        "{trials} digits trials (ReLU, as above; {:.1} ms each alone), one per rayon task.\n",
        single_thread.unwrap_or(f64::NAN) * 1e3
    );
    println!("| threads | trials/s | speedup |");
    println!("|---:|---:|---:|");
    println!("| 1 | {one:.0} | 1.00× |");
    println!("| {threads} | {all:.0} | {:.2}× |", all / one);
    Ok(timings)
}

/// Median one-thread trial times from [`training`].
struct Timing {
    dataset: &'static str,
    activation: &'static str,
    native_ms: f64,
    wasm_ms: f64,
}

fn activation_plugin(
    compiler: &Compiler,
    sandbox: &Sandbox,
    sources: &[(PathBuf, Vec<u8>)],
    name: &str,
) -> anyhow::Result<Plugin> {
    let source = &sources
        .iter()
        .find(|(p, _)| p.ends_with(format!("activation/{name}.rs")))
        .context("baseline source")?
        .1;
    let wasm = compiler
        .compile(source)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .wasm;
    Ok(Plugin::load(sandbox, &wasm)?)
}

const PYTORCH_SEEDS: u64 = 5;

/// The same protocol in PyTorch eager mode (`pytorch/one_pass.py`, one thread): validation
/// losses over seeds, which must agree within two standard errors, and time per trial.
fn against_pytorch(
    compiler: &Compiler,
    sandbox: &Sandbox,
    sources: &[(PathBuf, Vec<u8>)],
    root: &Path,
    timings: &[Timing],
) -> anyhow::Result<()> {
    use hypoforge_eval::model::{self, Objective, Optimizer, TrainConfig};
    use hypoforge_eval::{AdamConfig, datasets, prepare, trial::PluginActivation};

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
    let relu = activation_plugin(compiler, sandbox, sources, "relu")?;
    let gelu = activation_plugin(compiler, sandbox, sources, "gelu")?;
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
            &relu
        } else {
            &gelu
        };
        let data = datasets::embedded(timing.dataset)?;
        let classes = data.classes().context("classification")?;
        let config = TrainConfig {
            hidden: if timing.dataset == "digits" {
                vec![128, 128]
            } else {
                vec![256, 256]
            },
            batch: 64,
            epochs: 1,
            min_steps: 0,
            optimizer: Optimizer::Adam(AdamConfig::default()),
        };
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

const TRAINING_ROUNDS: usize = 11;

fn fastest(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Nanoseconds per element of `act.forward` (or `act.derivative`) over `x`.
fn time_plugin(
    act: &mut Activation,
    derivative: bool,
    x: &[f32],
    y: &mut [f32],
    reps: usize,
) -> anyhow::Result<f64> {
    let mut failure = None;
    let t = time_per_element(reps, x.len(), || {
        let result = if derivative {
            act.derivative(black_box(x), y)
        } else {
            act.forward(black_box(x), y)
        };
        if let Err(e) = result {
            failure = Some(e);
        }
        black_box(&y);
    });
    match failure {
        Some(e) => Err(anyhow::anyhow!("sandbox call failed: {e}")),
        None => Ok(t),
    }
}

fn baseline_sources(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for kind in ["activation", "preprocessor", "regularizer"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(kind))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        for f in files {
            let source = std::fs::read(&f)?;
            out.push((f, source));
        }
    }
    Ok(out)
}

/// Median nanoseconds per element over 7 timed runs of `reps` calls each (after a warm-up).
fn time_per_element(reps: usize, n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..reps {
                f();
            }
            started.elapsed().as_secs_f64() * 1e9 / (reps * n) as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn row(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "| {label} | {:.1} ms | {:.1} ms | {} |",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.9).as_secs_f64() * 1e3,
        samples.len()
    );
}
