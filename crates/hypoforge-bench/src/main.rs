//! `cargo xtask bench`: measures the foundation's costs and prints a Markdown report.
//!
//! - compile time per hypothesis (every baseline plugin), cold (empty cache) and cached;
//! - validation time per plugin (module compilation in the sandbox plus all checks);
//! - the sandbox's per-element cost for an activation against the same source compiled natively;
//! - one-pass training, trials in parallel, and the same protocol in PyTorch;
//! - the native fast path: build and admission costs, speed per element, per trial and per
//!   evaluation against the sandbox.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use hypoforge_compile::{Compiler, Limits};
use hypoforge_plugin::{Activation, Plugin, PluginLimits};
use hypoforge_sandbox::{Sandbox, SandboxOptions};

// The baseline sources compiled natively, for the overhead comparison. On non-wasm targets the
// SDK's export macros expand to nothing, so only the functions remain. `build.rs` marks them
// `#[inline(always)]`, as the guest build inlines them, so that both sides vectorize alike.
#[allow(dead_code)]
mod native_gelu {
    include!(concat!(env!("OUT_DIR"), "/gelu.rs"));
    #[inline(always)]
    pub fn native(x: f32) -> f32 {
        gelu(x)
    }
    #[inline(always)]
    pub fn slope(x: f32) -> f32 {
        gelu(Dual::var(x)).d
    }
    #[inline(always)]
    pub fn both(x: f32) -> (f32, f32) {
        let y = gelu(Dual::var(x));
        (y.v, y.d)
    }
}
#[allow(dead_code)]
mod native_relu {
    include!(concat!(env!("OUT_DIR"), "/relu.rs"));
    #[inline(always)]
    pub fn native(x: f32) -> f32 {
        relu(x)
    }
    #[inline(always)]
    pub fn slope(x: f32) -> f32 {
        relu(Dual::var(x)).d
    }
    #[inline(always)]
    pub fn both(x: f32) -> (f32, f32) {
        let y = relu(Dual::var(x));
        (y.v, y.d)
    }
}

/// An activation source built natively: `f`, its dual-number derivative and both in one pass,
/// as the SDK's `activation!` exports them in WebAssembly, inlined into the training loop's calls.
pub(crate) struct NativeSource<F, D, B>(pub F, pub D, pub B);

impl<F: Fn(f32) -> f32, D: Fn(f32) -> f32, B: Fn(f32) -> (f32, f32)>
    hypoforge_eval::model::Activation for NativeSource<F, D, B>
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
    fn forward_with_derivative(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), hypoforge_eval::model::RunFailure> {
        for ((y, d), &x) in y.iter_mut().zip(dy.iter_mut()).zip(x) {
            (*y, *d) = (self.2)(x);
        }
        Ok(())
    }
}

mod native;
mod training;

const COLD_ROUNDS: usize = 3;

fn main() -> std::process::ExitCode {
    // The native section's engine starts this program as its workers.
    if std::env::args().nth(1).as_deref() == Some(native::WORKER_ARG) {
        return hypoforge_native::worker::main();
    }
    match benchmarks() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn benchmarks() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sources = baseline_sources(&root.join("plugins"))?;
    let sandbox = Sandbox::shared().context("sandbox")?;
    // `hypoforge-bench training`, `overhead` and `native` run one section alone (for
    // profiling).
    let section = std::env::args().nth(1);
    if section.as_deref() == Some("native") {
        return native::run(sandbox, &sources);
    }
    if section.as_deref() == Some("overhead") {
        let compiler =
            Compiler::new(None, Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        return overhead(&compiler, sandbox, &sources);
    }
    if section.as_deref() == Some("training") {
        let compiler =
            Compiler::new(None, Limits::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        return training::run(&compiler, sandbox, &sources, &root);
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
    training::run(&compiler, sandbox, &sources, &root)?;
    native::run(sandbox, &sources)
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
    overhead_rows(
        compiler,
        sandbox,
        &canonical,
        sources,
        "gelu",
        &mut NativeSource(native_gelu::native, native_gelu::slope, native_gelu::both),
    )?;
    overhead_rows(
        compiler,
        sandbox,
        &canonical,
        sources,
        "relu",
        &mut NativeSource(native_relu::native, native_relu::slope, native_relu::both),
    )
}

/// The overhead table's rows for one activation: `native` is its source built into the host.
fn overhead_rows(
    compiler: &Compiler,
    sandbox: &Sandbox,
    canonical: &Sandbox,
    sources: &[(PathBuf, Vec<u8>)],
    name: &str,
    native: &mut impl hypoforge_eval::model::Activation,
) -> anyhow::Result<()> {
    let wasm = activation_wasm(compiler, sources, name)?;
    let mut default_engine =
        Plugin::load(sandbox, &wasm)?.activation(sandbox, PluginLimits::default())?;
    let mut canonical_engine =
        Plugin::load(canonical, &wasm)?.activation(canonical, PluginLimits::default())?;
    for n in [64usize, 4096, 1 << 20] {
        // Standard normal inputs, as pre-activations are: random signs, so a branchy
        // activation pays its mispredictions here as it does in training.
        let mut rng = hypoforge_spec::rng::Rng::new(n as u64);
        let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let (mut y, mut dy) = (vec![0.0f32; n], vec![0.0f32; n]);
        let reps = (1 << 24) / n;
        for pass in [Pass::Forward, Pass::Derivative, Pass::Both] {
            let mut failure = None;
            let native_t = time_per_element(reps, n, || {
                if let Err(e) = pass.run_native(native, black_box(&x), &mut y, &mut dy) {
                    failure = Some(e);
                }
                black_box((&y, &dy));
            });
            if let Some(e) = failure {
                anyhow::bail!("native {name}: {e:?}");
            }
            let wasm_t = time_plugin(&mut default_engine, pass, &x, &mut y, &mut dy, reps)?;
            let canonical_t = time_plugin(&mut canonical_engine, pass, &x, &mut y, &mut dy, reps)?;
            println!(
                "| {name} | {n} | {} | {native_t:.2} | {wasm_t:.2} | {:.1}× | {canonical_t:.2} | {:.1}× |",
                pass.label(),
                wasm_t / native_t,
                canonical_t / native_t
            );
        }
    }
    Ok(())
}

/// The baseline activation `name`, compiled.
fn activation_wasm(
    compiler: &Compiler,
    sources: &[(PathBuf, Vec<u8>)],
    name: &str,
) -> anyhow::Result<Vec<u8>> {
    let source = &sources
        .iter()
        .find(|(p, _)| p.ends_with(format!("activation/{name}.rs")))
        .context("baseline source")?
        .1;
    Ok(compiler
        .compile(source)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .wasm)
}

/// One of the activation calls training makes.
#[derive(Clone, Copy)]
enum Pass {
    Forward,
    Derivative,
    /// `f` and `f′` in one call, as training's forward pass takes them.
    Both,
}

impl Pass {
    fn label(self) -> &'static str {
        match self {
            Pass::Forward => "f",
            Pass::Derivative => "f′",
            Pass::Both => "f and f′, one pass",
        }
    }

    fn run_native(
        self,
        act: &mut impl hypoforge_eval::model::Activation,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), hypoforge_eval::model::RunFailure> {
        match self {
            Pass::Forward => act.forward(x, y),
            Pass::Derivative => act.derivative(x, dy),
            Pass::Both => act.forward_with_derivative(x, y, dy),
        }
    }

    fn run_plugin(
        self,
        act: &mut Activation,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), hypoforge_sandbox::SandboxError> {
        match self {
            Pass::Forward => act.forward(x, y),
            Pass::Derivative => act.derivative(x, dy),
            Pass::Both => act.forward_with_derivative(x, y, dy),
        }
    }
}

/// Nanoseconds per element of one `pass` of `act` over `x`.
fn time_plugin(
    act: &mut Activation,
    pass: Pass,
    x: &[f32],
    y: &mut [f32],
    dy: &mut [f32],
    reps: usize,
) -> anyhow::Result<f64> {
    let mut failure = None;
    let t = time_per_element(reps, x.len(), || {
        if let Err(e) = pass.run_plugin(act, black_box(x), y, dy) {
            failure = Some(e);
        }
        black_box((&y, &dy));
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
