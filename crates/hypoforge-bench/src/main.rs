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
}
#[allow(dead_code)]
mod native_relu {
    include!("../../../plugins/activation/relu.rs");
    pub fn native(x: f32) -> f32 {
        relu(x)
    }
}

const COLD_ROUNDS: usize = 3;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sources = baseline_sources(&root.join("plugins"))?;
    let sandbox = Sandbox::shared().context("sandbox")?;
    // `hypoforge-bench training` runs that section alone (for profiling).
    if std::env::args().nth(1).as_deref() == Some("training") {
        let compiler =
            Compiler::new(None, Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        return training(&compiler, sandbox, &sources);
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
    row("compile, cold (policy + rustc, opt-level=3)", &mut cold);
    row("compile, cached (content-addressed hit)", &mut cached);
    row("validate (sandbox compile + all checks)", &mut validate);

    println!(
        "\n## Sandbox overhead per element: activation in WebAssembly vs the same source native\n"
    );
    println!(
        "Buffer in, `f` over it, buffer out, through the plugin ABI (copies included), against a native loop.\n"
    );
    println!(
        "Default engine, and one built with `SandboxOptions {{ canonicalize_nans: true }}`.\n"
    );
    println!(
        "| activation | n | native ns/elem | sandbox ns/elem | ratio | NaN-canonicalizing ns/elem | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let compiler = Compiler::new(None, Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let canonical = Sandbox::with_options(SandboxOptions {
        canonicalize_nans: true,
    })?;
    for (name, native) in [
        ("gelu", native_gelu::native as fn(f32) -> f32),
        ("relu", native_relu::native),
    ] {
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
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 2000) as f32 / 250.0 - 4.0)
                .collect();
            let mut y = vec![0.0f32; n];
            let reps = (1 << 24) / n;
            let native_t = time_per_element(reps, n, || {
                for (y, &x) in y.iter_mut().zip(black_box(&x)) {
                    *y = native(x);
                }
                black_box(&y);
            });
            let wasm_t = time_plugin(&mut default_engine, &x, &mut y, reps)?;
            let canonical_t = time_plugin(&mut canonical_engine, &x, &mut y, reps)?;
            println!(
                "| {name} | {n} | {native_t:.2} | {wasm_t:.2} | {:.1}× | {canonical_t:.2} | {:.1}× |",
                wasm_t / native_t,
                canonical_t / native_t
            );
        }
    }
    training(&compiler, sandbox, &sources)?;
    Ok(())
}

/// One-pass training on the reference networks, one thread: per-trial time, the GEMM work's
/// GFLOP/s, and the cost of the activation running in the sandbox rather than natively.
fn training(
    compiler: &Compiler,
    sandbox: &Sandbox,
    sources: &[(PathBuf, Vec<u8>)],
) -> anyhow::Result<()> {
    use hypoforge_eval::model::{self, NativeActivation, Objective, Optimizer, TrainConfig};
    use hypoforge_eval::{AdamConfig, datasets, prepare, trial::PluginActivation};

    println!("\n## One-pass training, one thread\n");
    println!(
        "One epoch, batch 64, Adam(1e-3), 80/20 split, standardized inputs, ReLU; median of 3 trials."
    );
    println!(
        "GFLOP/s counts the matrix products (forward, weight gradient, input gradient past the first layer).\n"
    );
    println!(
        "| dataset | network | steps | native ReLU ms/trial | GFLOP/s | WASM ReLU ms/trial | GFLOP/s | sandbox overhead |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let relu_source = &sources
        .iter()
        .find(|(p, _)| p.ends_with("activation/relu.rs"))
        .context("relu source")?
        .1;
    let relu_wasm = compiler
        .compile(relu_source)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .wasm;
    let relu_plugin = Plugin::load(sandbox, &relu_wasm)?;
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
        let time = |act: &mut dyn model::Activation| -> anyhow::Result<(f64, u64)> {
            let mut samples = Vec::new();
            let mut steps = 0;
            for seed in 0..3 {
                let started = Instant::now();
                let r = model::train(&config, objective, &train, &valid, seed, act, None)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                samples.push(started.elapsed().as_secs_f64());
                steps = r.steps;
            }
            samples.sort_by(f64::total_cmp);
            Ok((samples[1], steps))
        };
        let (native_s, steps) = time(&mut NativeActivation::relu())?;
        let mut wasm_relu =
            PluginActivation(relu_plugin.activation(sandbox, PluginLimits::default())?);
        let (wasm_s, _) = time(&mut wasm_relu)?;
        let arch = widths
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-");
        println!(
            "| {name} | {arch} | {steps} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1}% |",
            native_s * 1e3,
            flops / native_s / 1e9,
            wasm_s * 1e3,
            flops / wasm_s / 1e9,
            (wasm_s / native_s - 1.0) * 100.0
        );
    }
    Ok(())
}

/// Nanoseconds per element of `act.forward` over `x`.
fn time_plugin(act: &mut Activation, x: &[f32], y: &mut [f32], reps: usize) -> anyhow::Result<f64> {
    let mut failure = None;
    let t = time_per_element(reps, x.len(), || {
        if let Err(e) = act.forward(black_box(x), y) {
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
