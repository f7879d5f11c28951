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
