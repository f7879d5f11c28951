//! Project automation, kept thin: each task builds and runs the real programs.
//!
//! - `cargo xtask evaluate`: the main job (release build, then a `hypoforge run` with its report)
//! - `cargo xtask reward`: the reward model's analyses on the whole corpus (RESULTS.md)
//! - `cargo xtask bench [--save]`: benchmarks; `--save` rewrites BENCHMARKS.md
//! - `cargo xtask bench gpu [--seeds N]`: the GPU comparison, on a machine with one
//! - `cargo xtask ci`: what CI runs: formatting, clippy, the whole test suite

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?
        .to_path_buf();
    match args.first().map(String::as_str) {
        Some("evaluate") => evaluate(&root, &args[1..]),
        Some("reward") => reward(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        Some("ci") => ci(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 evaluate        build the release CLI; run examples/run.toml and write its report\n  \
                 reward          evaluate the whole corpus (examples/reward.toml); the reward model's analyses\n  \
                 bench [--save]  run the benchmarks (--save: write BENCHMARKS.md)\n  \
                 bench gpu       the GPU against the CPU path and PyTorch (needs a GPU)\n  \
                 ci              format check, clippy (-D warnings) and the full test suite"
            );
            std::process::exit(2);
        }
    }
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn release_binary(root: &Path, package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    run(cargo(root).args(["build", "--release", "--package", package, "--bin", bin]))?;
    Ok(root.join("target/release").join(bin))
}

/// The main job: a `hypoforge run` of `examples/run.toml` (the replay corpus, every kind, the
/// quick suite, then the full evaluation), offline, with its leaderboards on the terminal and its
/// export and HTML report under `target/evaluate/`. The store persists there, so a second
/// invocation trains nothing it already trained.
fn evaluate(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let out = root.join("target/evaluate");
    let (hypoforge, store, id, export) = run_and_export(root, "examples/run.toml", &out, extra)?;
    let report = out.join("report");
    run(Command::new(&hypoforge).args([
        "report",
        &id,
        "--store",
        &store,
        "-o",
        report.to_str().context("a UTF-8 path")?,
    ]))?;
    println!(
        "\nresults: {} and {}",
        export.display(),
        report.join("index.html").display()
    );
    Ok(())
}

/// The reward model's analyses (RESULTS.md): `examples/reward.toml` evaluates the whole shipped
/// corpus one pass, then `hypoforge reward efficiency` and `reward train` on its export, under
/// `target/reward/`.
fn reward(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    let out = root.join("target/reward");
    let (hypoforge, _, _, export) = run_and_export(root, "examples/reward.toml", &out, extra)?;
    let export = export.to_str().context("a UTF-8 path")?;
    let analysis = out.join("analysis");
    run(Command::new(&hypoforge).args([
        "reward",
        "efficiency",
        export,
        "--out",
        analysis.to_str().context("a UTF-8 path")?,
    ]))?;
    let model = out.join("reward-model.json");
    run(Command::new(&hypoforge).args([
        "reward",
        "train",
        export,
        "-o",
        model.to_str().context("a UTF-8 path")?,
    ]))?;
    println!(
        "\nresults: {} (figures beside it) and {}",
        analysis.join("summary.md").display(),
        model.display()
    );
    Ok(())
}

/// Build the release CLI, run `config` into the store in `out` and export the run: returns the
/// CLI, the store, the run's id and the export's path.
fn run_and_export(
    root: &Path,
    config: &str,
    out: &Path,
    extra: &[String],
) -> anyhow::Result<(PathBuf, String, String, PathBuf)> {
    let hypoforge = release_binary(root, "hypoforge-cli", "hypoforge")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let store = out.join("hypoforge.db");
    let store = store.to_str().context("a UTF-8 path")?.to_owned();
    run(Command::new(&hypoforge)
        .current_dir(root)
        .args(["run", "--config", config, "--store", &store])
        .args(extra))?;
    // The run just made is the store's last.
    let status = Command::new(&hypoforge)
        .args(["status", "--json", "--store", &store])
        .output()
        .context("cannot run hypoforge status")?;
    let status = String::from_utf8_lossy(&status.stdout);
    let id = status
        .rsplit("\"id\": ")
        .next()
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|id| !id.is_empty())
        .context("hypoforge status listed no run")?
        .to_owned();
    let export = out.join(format!("run-{id}.json"));
    run(Command::new(&hypoforge).args([
        "export",
        &id,
        "--store",
        &store,
        "-o",
        export.to_str().context("a UTF-8 path")?,
    ]))?;
    Ok((hypoforge, store, id, export))
}

/// BENCHMARKS.md keeps everything from this line on when `bench --save` rewrites the rest.
const KEPT_MARKER: &str = "<!-- Sections below are kept by `cargo xtask bench --save`. -->";

fn bench(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    if extra.first().map(String::as_str) == Some("gpu") {
        return bench_gpu(root, &extra[1..]);
    }
    let save = extra.iter().any(|a| a == "--save");
    let bench = release_binary(root, "hypoforge-bench", "hypoforge-bench")?;
    let output = Command::new(bench)
        .current_dir(root)
        .output()
        .context("cannot run the benchmarks")?;
    if !output.status.success() {
        bail!(
            "benchmarks failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let results = String::from_utf8_lossy(&output.stdout);
    print!("{results}");
    if save {
        // Sections below the marker come from other runs (each names its command) and are kept.
        let path = root.join("BENCHMARKS.md");
        let kept = std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| old.find(KEPT_MARKER).map(|at| old[at..].to_owned()))
            .unwrap_or_else(|| format!("{KEPT_MARKER}\n"));
        let doc = format!(
            "# Benchmarks\n\nProduced by `cargo xtask bench --save`; numbers are from one run on the machine below.\n\n\
             ## Machine\n\n{}\n{results}\n{kept}",
            machine(root)
        );
        std::fs::write(&path, doc).context("cannot write BENCHMARKS.md")?;
        eprintln!("wrote BENCHMARKS.md");
    }
    Ok(())
}

fn machine(root: &Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(|| "unknown".into(), |kb| format!("{} GiB", kb >> 20));
    let rustc = Command::new("rustc")
        .current_dir(root)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "- CPU: {cpu}, {cores} cores available\n- Memory: {memory}\n- Toolchain: {rustc}\n- OS: {}\n",
        std::env::consts::OS
    )
}

/// The GPU comparison (`hypoforge-bench`'s `gpu`, built with CUDA support): prints its section
/// of BENCHMARKS.md, which a machine with a GPU produces; without one it says so.
fn bench_gpu(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    run(cargo(root).args([
        "build",
        "--release",
        "--package",
        "hypoforge-bench",
        "--features",
        "cuda",
        "--bin",
        "gpu",
    ]))?;
    run(Command::new(root.join("target/release/gpu"))
        .current_dir(root)
        .args(extra))
}

fn ci(root: &Path) -> anyhow::Result<()> {
    run(cargo(root).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The GPU benchmark builds only with its feature; keep it compiling where no GPU is.
    run(cargo(root).args([
        "clippy",
        "--package",
        "hypoforge-bench",
        "--features",
        "cuda",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo(root).args(["test", "--workspace"]))
}
