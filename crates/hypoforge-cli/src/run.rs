//! `hypoforge run`, `resume`, `status`, `export` and `report`: the research loop over a store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use hypoforge_run::{Finish, Observer, RunConfig, Tools};
use hypoforge_sandbox::Sandbox;
use hypoforge_store::Store;

use crate::inputs::CompileArgs;

const DEFAULT_STORE: &str = "hypoforge.db";

/// Where runs are kept.
#[derive(Debug, clap::Args)]
pub struct StoreArg {
    /// The SQLite store holding runs, hypotheses and every trial; created by `run` when missing.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STORE)]
    pub store: PathBuf,
}

/// How much to print.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Print nothing but errors (and the JSON summary with --json).
    #[arg(long, short)]
    quiet: bool,
    /// Print a JSON summary on stdout at the end (run id, how it ended, per-kind leaders).
    #[arg(long)]
    json: bool,
}

/// Start a research run: generate, check and evaluate hypotheses round by round, then give the
/// best a full evaluation.
///
/// Per round and kind: generate → compile → validate → drop duplicates (same source, or the
/// same behaviour bit for bit) and note rediscoveries of known components → with a reward model,
/// keep the best predicted share → one-pass evaluation against the baseline panel. At the end, each
/// kind's top candidates train longer, on more seeds and on tasks the one-pass stage never saw,
/// and the report gives the rank correlation (Kendall τ) between the two stages.
///
/// Every trial is committed to the store as it finishes. A run that is interrupted (Ctrl-C,
/// kill, a budget) loses at most the trials in flight: `hypoforge resume RUN` continues it and,
/// with an offline generator, ends with exactly the results of an uninterrupted run.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The configuration (TOML; every key optional, unknown keys are errors):\n\n  \
    seed = 0                      # the generators' order\n  \
    kinds = [\"activation\", \"preprocessor\", \"regularizer\"]\n  \
    rounds = 2\n  \
    per_round = 6                 # hypotheses per kind per round\n  \
    suite = \"quick\"               # one-pass suite: quick, standard, holdout or a file\n  \
    seeds = 2\n  \
    trial_timeout = 60            # seconds per trial, 0 for none\n  \
    device = \"cpu\"                # cpu, cuda (a GPU or an error) or auto (a GPU if usable)\n  \
    [generator]\n  \
    source = \"replay\"             # replay, replay:FILE, grammar, openai:MODEL\n  \
    strategies = [\"iep\", \"nep\"]\n  \
    # base_url, repairs = 2, temperature = 1.0, max_reply_tokens = 4096\n  \
    [full]\n  \
    top_k = 3                     # 0 skips the full evaluation\n  \
    suite = \"holdout\"\n  \
    epochs = 3\n  \
    seeds = 3\n  \
    [budget]                      # all optional\n  \
    # max_hypotheses, max_llm_requests, max_llm_tokens, max_wall_seconds\n  \
    [reward]                      # optional: evaluate what a reward model ranks best\n  \
    model = \"reward.json\"        # from `hypoforge reward train`; kept in the store\n  \
    evaluate_share = 0.5          # of each round's valid hypotheses, the best predicted share\n\n\
    Examples:\n  \
    hypoforge run --config run.toml\n  \
    hypoforge status\n  \
    hypoforge resume 1\n  \
    hypoforge report 1 -o report/"
)]
pub struct RunArgs {
    /// The run's configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

/// Continue a stopped run where it stopped.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run's id (`hypoforge status` lists them).
    #[arg(value_name = "RUN")]
    run: i64,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

/// List the store's runs and how far each got.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    store: StoreArg,
    /// As JSON.
    #[arg(long)]
    json: bool,
}

/// Dump a run's hypotheses, verdicts, leaderboards and full evaluation.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(value_name = "RUN")]
    run: i64,
    #[command(flatten)]
    store: StoreArg,
    /// JSON (the only format, and the default).
    #[arg(long)]
    json: bool,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Write a run's static HTML report (opens from disk; no server, no internet).
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(value_name = "RUN")]
    run: i64,
    #[command(flatten)]
    store: StoreArg,
    /// The folder to write into (created when missing).
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let origin = args.config.display().to_string();
    // Checked before the store is touched: a bad file leaves nothing behind.
    let config = RunConfig::parse(&text, &origin)?;
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    preflight(&config, &args.output)?;
    let store = Store::open(&args.store.store)?;
    let observer = Terminal::new(args.output.quiet);
    let tools = Tools {
        store: &store,
        compiler: &compiler,
        sandbox,
        observer: &observer,
    };
    let (run, finish) = hypoforge_run::start(tools, &text, &origin)?;
    observer.clear();
    conclude(&store, run, &finish, &args.output)
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_existing(&args.store.store)?;
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let observer = Terminal::new(args.output.quiet);
    let tools = Tools {
        store: &store,
        compiler: &compiler,
        sandbox,
        observer: &observer,
    };
    if !args.output.quiet {
        eprintln!("resuming run {}", args.run);
    }
    let finish = hypoforge_run::resume(tools, args.run)?;
    observer.clear();
    conclude(&store, args.run, &finish, &args.output)
}

/// What the run will cost at most, and the checks that need no LLM request.
fn preflight(config: &RunConfig, output: &OutputArgs) -> anyhow::Result<()> {
    let suite = hypoforge_eval::tasks::suite(&config.suite)?;
    for task in &suite.tasks {
        task.dataset(&[])?;
    }
    let full = hypoforge_eval::tasks::suite(&config.full.suite)?;
    for task in &full.tasks {
        task.dataset(&[])?;
    }
    let source = hypoforge_run::GeneratorSource::parse(&config.generator.source)
        .map_err(|m| anyhow::anyhow!("generator.source {m}"))?;
    hypoforge_run::preflight(config)?;
    if let hypoforge_run::GeneratorSource::OpenAi(_) = &source
        && std::env::var_os("OPENAI_API_KEY").is_none()
        && !output.quiet
    {
        eprintln!(
            "note: OPENAI_API_KEY is not set; requests go out without a key (fine for a local server)"
        );
    }
    if output.quiet {
        return Ok(());
    }
    let hypotheses =
        u64::from(config.rounds) * u64::from(config.per_round) * config.kinds.len() as u64;
    let hypotheses = config
        .budget
        .max_hypotheses
        .map_or(hypotheses, |m| m.min(hypotheses));
    eprintln!(
        "run plan: {} kinds, up to {hypotheses} hypotheses from {}; one-pass on `{}` ({} tasks × {} seeds per component), then the top {} per kind on `{}` ({} seeds)",
        config.kinds.len(),
        config.generator.source,
        suite.name,
        suite.tasks.len(),
        config.seeds,
        config.full.top_k,
        full.name,
        config.full.seeds,
    );
    if let hypoforge_run::GeneratorSource::OpenAi(_) = source {
        let requests = hypotheses * (1 + u64::from(config.generator.repairs));
        let requests = config
            .budget
            .max_llm_requests
            .map_or(requests, |m| m.min(requests));
        eprintln!(
            "LLM cost at most: {requests} requests, {} tokens",
            config.budget.max_llm_tokens.map_or_else(
                || format!(
                    "{} reply",
                    requests * u64::from(config.generator.max_reply_tokens)
                ),
                |t| t.to_string()
            )
        );
    }
    Ok(())
}

fn conclude(
    store: &Store,
    run: i64,
    finish: &Finish,
    output: &OutputArgs,
) -> anyhow::Result<ExitCode> {
    let export = hypoforge_run::export(store, run)?;
    if output.json {
        let summary = serde_json::json!({
            "run": run,
            "store": store.path(),
            "finished": matches!(finish, Finish::Done),
            "stopped": match finish { Finish::Stopped(why) => Some(why.as_str()), Finish::Done => None },
            "kinds": export["kinds"],
        });
        print_stdout(&serde_json::to_string_pretty(&summary)?)?;
    } else if !output.quiet {
        let mut out = std::io::stdout().lock();
        print_leaders(&mut out, &export)?;
        match finish {
            Finish::Done => writeln!(
                out,
                "\nrun {run} is done. Next: hypoforge report {run} -o report/ --store {}",
                store.path().display()
            )?,
            Finish::Stopped(why) => writeln!(
                out,
                "\nrun {run} stopped: {why}. `hypoforge resume {run} --store {}` continues it.",
                store.path().display()
            )?,
        }
    }
    Ok(match finish {
        Finish::Done => ExitCode::SUCCESS,
        Finish::Stopped(_) => ExitCode::from(3),
    })
}

fn print_leaders(out: &mut impl Write, export: &serde_json::Value) -> std::io::Result<()> {
    let Some(kinds) = export["kinds"].as_object() else {
        return Ok(());
    };
    for (kind, k) in kinds {
        let Some(results) = k["one_pass"]["results"].as_array() else {
            continue;
        };
        writeln!(
            out,
            "\n{kind}s, one pass on `{}`:",
            k["one_pass"]["suite"].as_str().unwrap_or("?")
        )?;
        for (i, r) in results.iter().enumerate().take(8) {
            writeln!(
                out,
                "{:>3}  {:<28} {:<8}  B-WR {:.3}  BSOTA-WR {:.3}",
                i + 1,
                r["name"].as_str().unwrap_or("?"),
                if r["baseline"].as_bool() == Some(true) {
                    "baseline"
                } else {
                    "new"
                },
                r["b_wr"].as_f64().unwrap_or(f64::NAN),
                r["bsota_wr"].as_f64().unwrap_or(f64::NAN),
            )?;
        }
        if let Some(tau) = k["kendall_tau"].as_f64() {
            writeln!(
                out,
                "     full evaluation vs one pass: Kendall τ = {tau:.2} over {} components",
                k["tau_components"]
            )?;
        }
    }
    Ok(())
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_existing(&args.store.store)?;
    let runs = hypoforge_run::status(&store)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        writeln!(out, "no runs in {}", store.path().display())?;
    }
    for r in runs {
        writeln!(
            out,
            "run {:<4} {:<20} {:>4}/{:<4} hypotheses ({} valid and new), leaderboards {}/{}  [{}]",
            r.id,
            r.state,
            r.hypotheses,
            r.planned,
            r.valid,
            r.leaderboards,
            r.kinds.len(),
            r.kinds.join(", "),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_existing(&args.store.store)?;
    let json = serde_json::to_string_pretty(&hypoforge_run::export(&store, args.run)?)?;
    match &args.output {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print_stdout(&json)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open_existing(&args.store.store)?;
    let data = hypoforge_run::report_data(&store, args.run)?;
    let files = hypoforge_report::write_report(&data, &args.output)?;
    println!(
        "report written: {} ({} hypothesis pages); open it in a browser",
        files.index.display(),
        files.pages
    );
    Ok(ExitCode::SUCCESS)
}

/// Print `text` and a newline; a reader that closed the pipe early (`| head`) is not an error.
fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Progress bars on stderr (drawn only on a terminal) and notes above them.
struct Terminal {
    quiet: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Terminal {
    fn new(quiet: bool) -> Terminal {
        Terminal {
            quiet,
            bar: Mutex::new(None),
        }
    }

    fn clear(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Terminal {
    fn stage(&self, label: &str, total: u64) {
        if self.quiet {
            return;
        }
        self.clear();
        let bar = crate::inputs::progress_bar(total as usize, "");
        bar.set_prefix(label.to_owned());
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len}, {elapsed} elapsed",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>.");
        bar.set_style(style);
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn advance(&self, done: u64) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.set_position(done);
        }
    }

    fn finish_stage(&self) {
        self.clear();
    }

    fn note(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            // A hidden bar (stderr is not a terminal) would swallow the line.
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }
}
