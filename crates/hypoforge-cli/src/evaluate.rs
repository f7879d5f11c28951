//! `hypoforge evaluate`: hypotheses against the baseline panel of their kind, on a suite.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use hypoforge_compile::Compiler;
use hypoforge_eval::device::{self, DeviceChoice};
use hypoforge_eval::runner::{self, ComponentResult, Entrant, Evaluation, Plan};
use hypoforge_eval::{baselines, datasets, tasks};
use hypoforge_plugin::PluginLimits;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use hypoforge_validate::{SourceVerdict, check_source};
use rayon::prelude::*;

use crate::inputs::{CompileArgs, collect_files};

/// Evaluate hypotheses against the baseline panel of their kind.
///
/// Every hypothesis and every baseline of the kind trains the same small MLP on every trial
/// (task × seed) of the suite, with the same split, initialization and batch order. B-WR is how
/// often a hypothesis beats a baseline (ties count half); BSOTA-WR how often it beats all of
/// them. A trial that traps, times out or diverges is lost. Baselines are scored against the
/// rest of the panel.
///
/// Exit status: 0 when every hypothesis was evaluated, 1 when any was rejected (it is reported
/// and skipped), 2 on a usage error.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    hypoforge evaluate --kind activation                 # the baseline panel alone\n  \
    hypoforge evaluate --kind activation my_acts/ --seeds 5 --json results.json\n  \
    hypoforge evaluate --kind preprocessor p.rs --suite standard\n  \
    hypoforge evaluate --kind activation my_acts/ --seeds 20 --device auto   # on a GPU if there is one\n  \
    hypoforge evaluate --kind activation my_acts/ --engine native            # native builds, same results")]
pub struct Args {
    /// The kind under test: activation, preprocessor or regularizer.
    #[arg(long, value_name = "K")]
    kind: ComponentKind,
    /// Hypothesis files (.rs) or directories of them; with none, the baselines alone.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// A built-in suite (quick, standard) or a suite .toml file.
    #[arg(long, value_name = "SUITE", default_value = "quick")]
    suite: String,
    /// Seeds per task: each gives a new split, initialization and batch order.
    #[arg(long, value_name = "N", default_value_t = 3)]
    seeds: u64,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// A folder of extra datasets (CSV with a header and the label last, or IDX pairs) that
    /// suites can name; they take precedence over embedded datasets of the same name.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Wall-clock limit on one component's trial, in seconds; a trial past it is lost (a
    /// deadline). A backstop against plugins that are slow on every element, not a race: quick
    /// suite trials take well under a second. 0 turns it off (with --engine native, where no
    /// instruction budget stops a plugin that loops forever, 0 means 10 minutes).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    trial_timeout: f64,
    /// Where trials train: cpu (the reference), cuda (a GPU, or an error) or auto (a GPU when
    /// one is usable, else the CPU with a line saying why). On a GPU every (component, seed) of
    /// a task trains at once; activations run from tables sampled from the plugin, and one the
    /// table cannot follow within tolerance trains on the CPU (the report's notes say which).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    device: DeviceChoice,
    /// How plugins run on the CPU: wasm (the sandbox, the reference) or native. With native,
    /// each component is also built as a shared library for this machine (cached; needs a C
    /// linker, `cc`), and runs in worker processes once a differential test shows it gives
    /// the sandbox's outputs bit for bit on a fixed probe set; one that does not, or whose
    /// build fails, stays in the sandbox (a note says so). Results are the same either way.
    #[arg(long, value_name = "ENGINE", default_value = "wasm")]
    engine: Engine,
    #[command(flatten)]
    compile: CompileArgs,
}

/// Where the CPU path runs plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Wasm,
    Native,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let suite = tasks::suite(&args.suite)?;
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let trial_time_limit = match Duration::try_from_secs_f64(args.trial_timeout) {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d),
        Err(_) => bail!(
            "--trial-timeout must be a number of seconds, 0 or more (0 turns the limit off), not {}",
            args.trial_timeout
        ),
    };
    let files = if args.paths.is_empty() {
        Vec::new()
    } else {
        collect_files(&args.paths)?
    };
    let extra = match &args.data_dir {
        Some(dir) => datasets::load_dir(dir)?,
        None => Vec::new(),
    };
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let opened = device::open(args.device)?;
    if let Some(note) = &opened.note {
        eprintln!("{note}");
    }

    let mut entrants = baseline_panel(&compiler, sandbox, args.kind)?;
    let mut sources: Vec<Vec<u8>> = baselines::sources(args.kind)
        .iter()
        .map(|(_, source)| source.as_bytes().to_vec())
        .collect();
    let hypotheses: Vec<Result<(Entrant, Vec<u8>), String>> = files
        .par_iter()
        .map(|f| load_hypothesis(&compiler, sandbox, f, args.kind))
        .collect();
    let mut rejected = 0;
    for h in hypotheses {
        match h {
            Ok((mut e, source)) => {
                if entrants.iter().any(|b| b.name == e.name) {
                    e.name = format!("{}@{}", e.name, &e.hash[..8]);
                }
                entrants.push(e);
                sources.push(source);
            }
            Err(message) => {
                rejected += 1;
                eprintln!("skipped {message}");
            }
        }
    }

    let mut engine_notes = Vec::new();
    let engine = match args.engine {
        Engine::Wasm => None,
        Engine::Native => Some(native_engine(
            &compiler,
            sandbox,
            &entrants,
            &sources,
            &mut engine_notes,
        )?),
    };
    let plan = Plan {
        kind: args.kind,
        suite: &suite,
        seeds: args.seeds,
        extra_datasets: &extra,
        limits: PluginLimits::default(),
        trial_time_limit,
        device: opened.device.as_deref(),
        engine: engine.as_ref().map(|e| e as &dyn runner::TrialEngine),
    };
    let trials = suite.tasks.len() as u64 * args.seeds;
    eprintln!(
        "evaluating {} {}s ({} baselines) on suite `{}`: {} tasks × {} seeds = {trials} trials, on {}",
        entrants.len(),
        args.kind,
        entrants.iter().filter(|e| e.baseline).count(),
        suite.name,
        suite.tasks.len(),
        args.seeds,
        opened
            .device
            .as_ref()
            .map_or("the CPU".into(), |d| d.name()),
    );
    // Drawn only when stderr is a terminal; rayon workers report as their runs finish.
    let bar = crate::inputs::progress_bar(trials as usize * entrants.len(), "runs");
    let progress = |done: usize, _total: usize| bar.set_position(done as u64);
    let evaluation = runner::evaluate(&plan, &entrants, sandbox, &progress);
    bar.finish_and_clear();
    let mut evaluation = evaluation?;
    evaluation.notes.splice(0..0, engine_notes);

    let mut out = std::io::stdout().lock();
    print_leaderboard(&mut out, &evaluation)?;
    for note in &evaluation.notes {
        writeln!(out, "note: {note}")?;
    }
    if let Some(path) = &args.json {
        write_json(path, &evaluation)?;
        writeln!(out, "\nresults written to {}", path.display())?;
    }
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Compile and validate the embedded baselines of `kind`; a broken baseline is hypoforge's bug.
pub(crate) fn baseline_panel(
    compiler: &Compiler,
    sandbox: &Sandbox,
    kind: ComponentKind,
) -> anyhow::Result<Vec<Entrant>> {
    baselines::sources(kind)
        .par_iter()
        .map(|(name, source)| {
            let entrant = entrant(compiler, sandbox, source.as_bytes(), kind, true)
                .map_err(|e| anyhow::anyhow!("the {kind} baseline `{name}` is broken: {e}"))?;
            Ok(entrant)
        })
        .collect()
}

fn load_hypothesis(
    compiler: &Compiler,
    sandbox: &Sandbox,
    file: &Path,
    kind: ComponentKind,
) -> Result<(Entrant, Vec<u8>), String> {
    let source =
        std::fs::read(file).map_err(|e| format!("{}: cannot read it: {e}", file.display()))?;
    let entrant = entrant(compiler, sandbox, &source, kind, false)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((entrant, source))
}

/// Build every entrant natively and admit those whose build passes the differential test;
/// what stays in the sandbox, and why, goes to `notes`.
fn native_engine(
    compiler: &Compiler,
    sandbox: &Sandbox,
    entrants: &[Entrant],
    sources: &[Vec<u8>],
    notes: &mut Vec<String>,
) -> anyhow::Result<hypoforge_native::NativeEngine> {
    use hypoforge_native::{EngineOptions, NativeEngine, Verdict, WorkerCommand};
    let worker = WorkerCommand::this_executable(&["native-worker"])
        .context("cannot find this program to start native workers from")?;
    let mut engine = NativeEngine::new(EngineOptions::new(worker));
    eprintln!(
        "native engine: building {} components for this machine (cached after the first time)",
        entrants.len()
    );
    let bar = crate::inputs::progress_bar(entrants.len(), "builds");
    let builds: Vec<_> = sources
        .par_iter()
        .map(|source| {
            let build = compiler.compile_native(source);
            bar.inc(1);
            build
        })
        .collect();
    bar.finish_and_clear();
    let mut trusted = 0;
    for (entrant, build) in entrants.iter().zip(builds) {
        let library = match build {
            Ok(library) => library,
            Err(e) => {
                notes.push(format!(
                    "native engine: {} runs in the sandbox: its native build failed ({e})",
                    entrant.name
                ));
                continue;
            }
        };
        match engine.admit(entrant, &library.path, sandbox, PluginLimits::default()) {
            Verdict::Trusted { .. } => trusted += 1,
            Verdict::Differs(detail) => notes.push(format!(
                "native engine: {} runs in the sandbox: its native build computes differently ({detail})",
                entrant.name
            )),
            Verdict::Failed(detail) => notes.push(format!(
                "native engine: {} runs in the sandbox: its native build could not be tested ({detail})",
                entrant.name
            )),
        }
    }
    eprintln!(
        "native engine: {trusted} of {} components passed the differential test and run natively",
        entrants.len()
    );
    Ok(engine)
}

/// Compile, validate and load one component.
fn entrant(
    compiler: &Compiler,
    sandbox: &Sandbox,
    source: &[u8],
    kind: ComponentKind,
    baseline: bool,
) -> Result<Entrant, String> {
    let checked = check_source(
        compiler,
        sandbox,
        source,
        Some(kind),
        PluginLimits::default(),
    );
    match checked.verdict {
        SourceVerdict::Valid(plugin) => Ok(Entrant {
            name: plugin.meta().name.clone(),
            hash: checked.hash,
            baseline,
            plugin,
        }),
        SourceVerdict::DidNotCompile { class, message }
        | SourceVerdict::Invalid { class, message } => Err(format!("[{class}] {message}")),
    }
}

fn print_leaderboard(out: &mut impl Write, evaluation: &Evaluation) -> std::io::Result<()> {
    writeln!(
        out,
        "{} leaderboard, suite `{}`, {} trials\n",
        evaluation.kind, evaluation.suite, evaluation.trials
    )?;
    let name_width = evaluation
        .results
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        " #  {:<name_width$}  {:<8}  {:<20}  {:<20}  {:>8}  {:>7}  {:>6}",
        "name", "role", "B-WR [95% CI]", "BSOTA-WR [95% CI]", "val loss", "val acc", "failed"
    )?;
    for (i, r) in evaluation.results.iter().enumerate() {
        writeln!(
            out,
            "{:>2}  {:<name_width$}  {:<8}  {:<20}  {:<20}  {:>8}  {:>7}  {:>6}",
            i + 1,
            r.name,
            if r.baseline { "baseline" } else { "new" },
            rate(r.b_wr, r.b_wr_ci),
            rate(r.bsota_wr, r.bsota_wr_ci),
            r.mean_val_loss.map_or("-".into(), |v| format!("{v:.4}")),
            r.mean_val_acc
                .map_or("-".into(), |v| format!("{:.1}%", v * 100.0)),
            r.failed_trials,
        )?;
    }
    for r in evaluation.results.iter().filter(|r| r.failed_trials > 0) {
        print_failures(out, r)?;
    }
    Ok(())
}

fn print_failures(out: &mut impl Write, r: &ComponentResult) -> std::io::Result<()> {
    writeln!(out, "\n{} lost {} trials:", r.name, r.failed_trials)?;
    for f in r.failures.iter().take(5) {
        writeln!(out, "  {f}")?;
    }
    if r.failures.len() > 5 {
        writeln!(out, "  ... and {} more", r.failures.len() - 5)?;
    }
    Ok(())
}

fn rate(value: f64, ci: [f64; 2]) -> String {
    format!("{value:.3} [{:.3}, {:.3}]", ci[0], ci[1])
}

fn write_json(path: &Path, evaluation: &Evaluation) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(evaluation)?;
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
}
