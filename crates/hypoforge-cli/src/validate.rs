//! `hypoforge validate`: compile and check hypotheses, one verdict per file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use hypoforge_compile::Compiler;
use hypoforge_plugin::PluginLimits;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::{CheckRecord, ComponentKind, ErrorClass, ErrorRecord};
use rayon::prelude::*;
use serde::Serialize;

use crate::inputs::{CompileArgs, collect_files};

/// Compile hypotheses and check that each is a well-behaved plugin.
///
/// Each FILE is compiled to WebAssembly under the source policy (no unsafe, no file or
/// environment access, ...) and then run in the sandbox through the checks for its kind:
/// finite outputs on awkward inputs, exact output shapes, determinism, derivatives against
/// finite differences, and so on. Directories are searched for .rs files.
///
/// Exit status: 0 when every file is valid, 1 when any is invalid, 2 on a usage error.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    hypoforge validate plugins/\n  \
    hypoforge validate --kind activation my_act.rs --json")]
pub struct Args {
    /// Hypothesis files (.rs) or directories to search for them.
    #[arg(required = true, value_name = "FILE")]
    paths: Vec<PathBuf>,
    /// Require every file to be of this kind (activation, preprocessor, regularizer);
    /// by default the kind the file declares is used.
    #[arg(long, value_name = "K")]
    kind: Option<ComponentKind>,
    /// Print one JSON object per file (JSON Lines) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compile: CompileArgs,
}

/// One line of `--json` output.
#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    kind: Option<ComponentKind>,
    name: String,
    hash: String,
    valid: bool,
    checks: Vec<CheckRecord>,
    error: Option<ErrorRecord>,
    compile_ms: f64,
    validate_ms: f64,
    #[serde(skip)]
    cached: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let files = collect_files(&args.paths)?;
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;

    let bar = crate::inputs::progress_bar(files.len(), "files");
    if args.json || files.len() < 2 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let reports: Vec<FileReport> = files
        .par_iter()
        .map(|file| {
            let report = validate_file(&compiler, sandbox, file, args.kind);
            bar.inc(1);
            report
        })
        .collect();
    bar.finish_and_clear();

    let mut out = std::io::stdout().lock();
    if args.json {
        for r in &reports {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        }
    } else {
        print_table(&mut out, &reports)?;
    }
    out.flush()?;
    Ok(if reports.iter().all(|r| r.valid) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn validate_file(
    compiler: &Compiler,
    sandbox: &Sandbox,
    file: &Path,
    kind: Option<ComponentKind>,
) -> FileReport {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut report = FileReport {
        file: file.display().to_string(),
        kind,
        name: stem,
        hash: String::new(),
        valid: false,
        checks: Vec::new(),
        error: None,
        compile_ms: 0.0,
        validate_ms: 0.0,
        cached: false,
    };
    let source = match std::fs::read(file) {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(ErrorRecord {
                class: ErrorClass::Io,
                message: format!("cannot read {}: {e}", file.display()),
            });
            return report;
        }
    };
    report.hash = hypoforge_spec::source_hash(&source);
    let started = Instant::now();
    let compiled = compiler.compile(&source);
    report.compile_ms = millis(started.elapsed());
    let compiled = match compiled {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e.into());
            return report;
        }
    };
    report.cached = compiled.cached;
    let started = Instant::now();
    let verdict =
        hypoforge_validate::validate(sandbox, &compiled.wasm, kind, PluginLimits::default());
    report.validate_ms = millis(started.elapsed());
    if let Some(meta) = &verdict.meta {
        report.kind = Some(meta.kind);
        report.name = meta.name.clone();
    }
    report.valid = verdict.valid();
    report.checks = verdict.checks;
    report.error = verdict.error;
    report
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn print_table(out: &mut impl Write, reports: &[FileReport]) -> std::io::Result<()> {
    for r in reports {
        let kind = r.kind.map_or("?", ComponentKind::as_str);
        let timing = format!(
            "compile {:>6.0} ms{}  validate {:>5.0} ms",
            r.compile_ms,
            if r.cached { " (cached)" } else { "         " },
            r.validate_ms
        );
        match &r.error {
            None => writeln!(
                out,
                "valid    {kind:<12} {:<20} {timing}  {}",
                r.name, r.file
            )?,
            Some(e) => {
                writeln!(
                    out,
                    "INVALID  {kind:<12} {:<20} {timing}  {}",
                    r.name, r.file
                )?;
                writeln!(out, "         [{}] {}", e.class, indent(&e.message))?;
                for c in r.checks.iter().filter(|c| !c.passed) {
                    writeln!(out, "         check {} failed: {}", c.name, c.detail)?;
                }
            }
        }
    }
    let valid = reports.iter().filter(|r| r.valid).count();
    writeln!(
        out,
        "\n{valid} valid, {} invalid, {} files",
        reports.len() - valid,
        reports.len()
    )
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n         ")
}
