//! `hypoforge generate`: write hypotheses with an LLM, the grammar or a replay corpus, then
//! compile and validate each.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use hypoforge_compile::Compiler;
use hypoforge_generate::llm::{ApiKey, display_url};
use hypoforge_generate::{
    Baseline, Budget, Checker, Generator, GrammarGenerator, Hypothesis, LlmClient, LlmConfig,
    LlmGenerator, ReplayGenerator, Strategy, Usage, Verdict,
};
use hypoforge_plugin::PluginLimits;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use hypoforge_validate::SourceVerdict;
use rayon::prelude::*;
use serde::Serialize;

use crate::inputs::CompileArgs;

/// Write hypotheses, then compile and validate each.
///
/// Generators:
///   openai:MODEL   an LLM behind any OpenAI-compatible chat-completions endpoint (OpenAI,
///                  Ollama, vLLM, llama.cpp's server, ...). The endpoint is OPENAI_BASE_URL
///                  (default https://api.openai.com/v1) or --base-url; the key is read from
///                  OPENAI_API_KEY and never written anywhere. A hypothesis that fails to
///                  compile or validate goes back with the exact message (--repairs times).
///   grammar        the bottom-up baseline: programs sampled from a grammar of unary and
///                  binary operations. Deterministic for a seed.
///   replay[:FILE]  recorded hypotheses from a JSON Lines corpus; without FILE, the corpus
///                  shipped with hypoforge (200 per kind, half IEP, half NEP). The seed fixes
///                  the order. A hypotheses.jsonl written by this command is a corpus too.
///
/// Each hypothesis becomes DIR/NNN_NAME.rs, and one JSON line in DIR/hypotheses.jsonl with its
/// provenance (generator, strategy, prompt id, model), every attempt with its outcome, its
/// token use, and whether it compiled and validated. Lines are written as hypotheses finish,
/// so an interrupted run keeps what it made.
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:\n  \
    hypoforge generate --kind activation --generator grammar -n 50 --out gen/grammar\n  \
    hypoforge generate --kind regularizer --strategy nep --generator replay -n 20 --out gen/replay\n  \
    OPENAI_BASE_URL=http://localhost:11434/v1 hypoforge generate --kind activation \\\n    \
      --strategy iep --generator openai:qwen2.5-coder:14b -n 10 --out gen/qwen"
)]
pub struct Args {
    /// The component kind: activation, preprocessor or regularizer.
    #[arg(long, value_name = "K")]
    kind: ComponentKind,
    /// Prompting strategy: iep (incremental variations on known components) or nep (novel
    /// components). Required for openai; filters a replay corpus; not used by grammar.
    #[arg(long, value_name = "S")]
    strategy: Option<Strategy>,
    /// openai:MODEL, grammar, replay or replay:FILE.
    #[arg(long, value_name = "G")]
    generator: GeneratorSpec,
    /// How many hypotheses to write.
    #[arg(short = 'n', value_name = "N", default_value_t = 10)]
    count: usize,
    /// Output folder (created; it must not already hold a hypotheses.jsonl).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed for the grammar and for the replay order.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

/// Options of the openai generator.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "LLM options (openai:MODEL)")]
struct LlmArgs {
    /// The endpoint, up to the API version [default: $OPENAI_BASE_URL or https://api.openai.com/v1].
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Times a failed hypothesis goes back to the model with the compiler or validator message.
    #[arg(long, value_name = "N", default_value_t = 2)]
    repairs: u32,
    /// Sampling temperature.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    temperature: f32,
    /// The most tokens one reply may have.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_reply_tokens: u32,
    /// Limit on one request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    request_timeout: f64,
    /// Retries of a request after HTTP 429/5xx, a timeout or a dropped connection.
    #[arg(long, value_name = "N", default_value_t = 5)]
    retries: u32,
    /// Hard cap on requests for this run, retries and repairs included.
    #[arg(long, value_name = "N")]
    max_requests: Option<u64>,
    /// Hard cap on tokens (prompt + completion) for this run.
    #[arg(long, value_name = "N")]
    max_tokens: Option<u64>,
}

#[derive(Clone, Debug)]
enum GeneratorSpec {
    OpenAi(String),
    Grammar,
    Replay(Option<PathBuf>),
}

impl FromStr for GeneratorSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "grammar" => Ok(GeneratorSpec::Grammar),
            None if s == "replay" => Ok(GeneratorSpec::Replay(None)),
            Some(("openai", model)) if !model.trim().is_empty() => {
                Ok(GeneratorSpec::OpenAi(model.to_owned()))
            }
            Some(("replay", file)) if !file.is_empty() => {
                Ok(GeneratorSpec::Replay(Some(PathBuf::from(file))))
            }
            _ => Err(format!(
                "`{s}` is not a generator; use openai:MODEL, grammar, replay or replay:FILE"
            )),
        }
    }
}

/// Compiles with the real compiler and validates in the sandbox.
struct SandboxChecker<'a> {
    compiler: &'a Compiler,
    sandbox: &'a Sandbox,
}

impl Checker for SandboxChecker<'_> {
    fn check(&mut self, kind: ComponentKind, source: &str) -> Verdict {
        let checked = hypoforge_validate::check_source(
            self.compiler,
            self.sandbox,
            source.as_bytes(),
            Some(kind),
            PluginLimits::default(),
        );
        match checked.verdict {
            SourceVerdict::Valid(_) => Verdict::Valid,
            SourceVerdict::DidNotCompile { message, .. } => Verdict::CompileError(message),
            SourceVerdict::Invalid { class, message } => {
                Verdict::Invalid(format!("{class}: {message}"))
            }
        }
    }
}

/// One line of hypotheses.jsonl: the record plus where it went and what checking it said.
#[derive(Debug, Serialize)]
struct Written<'a> {
    file: String,
    hash: String,
    compiled: bool,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(flatten)]
    hypothesis: &'a Hypothesis,
}

#[derive(Debug, Default)]
struct Tally {
    produced: usize,
    compiled: usize,
    valid: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if matches!(args.generator, GeneratorSpec::OpenAi(_)) && args.strategy.is_none() {
        bail!("the openai generator needs --strategy iep or --strategy nep");
    }
    if matches!(args.generator, GeneratorSpec::Grammar) && args.strategy.is_some() {
        bail!("--strategy is for the openai and replay generators; grammar has none");
    }
    if args.count == 0 {
        bail!("-n must be at least 1");
    }
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let jsonl_path = args.out.join("hypotheses.jsonl");
    if jsonl_path.exists() {
        bail!(
            "{} already holds a generation ({}); choose another --out or remove it",
            args.out.display(),
            jsonl_path.display()
        );
    }

    let mut endpoint = None;
    let mut generator: Box<dyn Generator> = match &args.generator {
        GeneratorSpec::OpenAi(model) => {
            let config = llm_config(&args.llm, model)?;
            endpoint = Some(display_url(&config.base_url));
            let budget = Budget {
                max_requests: args.llm.max_requests,
                max_tokens: args.llm.max_tokens,
            };
            let baselines: Vec<Baseline> = hypoforge_eval::baselines::sources(args.kind)
                .iter()
                .map(|(name, source)| Baseline::from_source(name, source))
                .collect();
            Box::new(LlmGenerator::new(
                LlmClient::new(config, budget),
                args.kind,
                args.strategy.unwrap_or(Strategy::Iep),
                &baselines,
                args.llm.repairs,
            ))
        }
        GeneratorSpec::Grammar => Box::new(GrammarGenerator::new(args.kind, args.seed)),
        GeneratorSpec::Replay(file) => {
            let replay = match file {
                Some(path) => {
                    ReplayGenerator::from_file(path, args.kind, args.strategy, args.seed)?
                }
                None => ReplayGenerator::builtin(args.kind, args.strategy, args.seed)?,
            };
            if replay.available() == 0 {
                bail!(
                    "the corpus holds no {} hypotheses{}",
                    args.kind,
                    args.strategy
                        .map(|s| format!(" under {s}"))
                        .unwrap_or_default()
                );
            }
            Box::new(replay)
        }
    };

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut jsonl = BufWriter::new(
        File::create_new(&jsonl_path)
            .with_context(|| format!("cannot create {}", jsonl_path.display()))?,
    );
    let mut checker = SandboxChecker {
        compiler: &compiler,
        sandbox,
    };
    let bar = crate::inputs::progress_bar(args.count, "hypotheses");
    let mut tally = Tally::default();
    let mut usage = Usage::default();
    let width = args.count.to_string().len().max(3);
    let mut stopped = None;

    // An LLM's hypotheses are written one by one (each costs money and minutes); offline ones
    // are drawn first and checked in parallel.
    let online = matches!(args.generator, GeneratorSpec::OpenAi(_));
    let mut pending = Vec::new();
    for _ in 0..args.count {
        match generator.next(&mut checker) {
            Ok(Some(h)) if online => {
                usage.add(h.usage);
                // The repair loop has just checked the final code; check only what it did not.
                let verdict = h
                    .recorded_verdict()
                    .unwrap_or_else(|| checker.check(args.kind, &h.source));
                write_one(
                    &args.out, &mut jsonl, width, &mut tally, &h, &verdict, &endpoint,
                )?;
                bar.inc(1);
            }
            Ok(Some(h)) => pending.push(h),
            Ok(None) => {
                stopped = Some(format!(
                    "the corpus ran out after {} hypotheses",
                    tally.produced + pending.len()
                ));
                break;
            }
            Err(e) => {
                stopped = Some(e.to_string());
                break;
            }
        }
    }
    let verdicts: Vec<Verdict> = pending
        .par_iter()
        .map(|h| {
            let verdict = SandboxChecker {
                compiler: &compiler,
                sandbox,
            }
            .check(args.kind, &h.source);
            bar.inc(1);
            verdict
        })
        .collect();
    for (h, verdict) in pending.iter().zip(&verdicts) {
        write_one(
            &args.out, &mut jsonl, width, &mut tally, h, verdict, &endpoint,
        )?;
    }
    jsonl.flush()?;
    bar.finish_and_clear();

    println!(
        "{} {} hypotheses produced, {} compiled, {} valid; written to {} (metadata in hypotheses.jsonl)",
        tally.produced,
        args.kind,
        tally.compiled,
        tally.valid,
        args.out.display()
    );
    if online {
        println!(
            "LLM use: {} requests, {} prompt + {} completion tokens",
            usage.requests, usage.prompt_tokens, usage.completion_tokens
        );
    }
    match stopped {
        Some(reason) if tally.produced < args.count => {
            if tally.produced == 0 {
                // Nothing was made: leave no empty generation behind to block a retry.
                drop(jsonl);
                let _ = std::fs::remove_file(&jsonl_path);
                bail!("{reason}");
            }
            eprintln!(
                "warning: stopped after {} of {}: {reason}",
                tally.produced, args.count
            );
            Ok(ExitCode::from(1))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn llm_config(args: &LlmArgs, model: &str) -> anyhow::Result<LlmConfig> {
    if !(args.request_timeout.is_finite() && args.request_timeout > 0.0) {
        bail!("--request-timeout must be a positive number of seconds");
    }
    if !(args.temperature.is_finite() && (0.0..=2.0).contains(&args.temperature)) {
        bail!("--temperature must be between 0 and 2");
    }
    let mut config = LlmConfig::from_env(model);
    if let Some(url) = &args.base_url {
        config.base_url = url.clone();
    }
    if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
        bail!(
            "the endpoint `{}` is not an http(s) URL (set --base-url or OPENAI_BASE_URL, e.g. http://localhost:11434/v1)",
            display_url(&config.base_url)
        );
    }
    config.api_key = ApiKey::from_env("OPENAI_API_KEY");
    config.temperature = args.temperature;
    config.max_reply_tokens = args.max_reply_tokens.max(1);
    config.timeout = Duration::from_secs_f64(args.request_timeout);
    config.retries = args.retries;
    Ok(config)
}

fn write_one(
    out: &Path,
    jsonl: &mut impl Write,
    width: usize,
    tally: &mut Tally,
    hypothesis: &Hypothesis,
    verdict: &Verdict,
    endpoint: &Option<String>,
) -> anyhow::Result<()> {
    tally.produced += 1;
    let stem = hypothesis.name.as_deref().unwrap_or("unnamed");
    let file = format!("{:0width$}_{stem}.rs", tally.produced);
    let path = out.join(&file);
    std::fs::write(&path, &hypothesis.source)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let (compiled, valid, error) = match verdict {
        Verdict::Valid => (true, true, None),
        Verdict::Invalid(m) => (true, false, Some(m.clone())),
        Verdict::CompileError(m) => (false, false, Some(m.clone())),
    };
    tally.compiled += usize::from(compiled);
    tally.valid += usize::from(valid);
    let line = Written {
        file,
        hash: hypoforge_spec::source_hash(hypothesis.source.as_bytes()),
        compiled,
        valid,
        error,
        endpoint: endpoint.clone(),
        hypothesis,
    };
    serde_json::to_writer(&mut *jsonl, &line)?;
    writeln!(jsonl)?;
    // Each line reaches the disk as it is made: an interrupted run keeps what it paid for.
    jsonl.flush()?;
    Ok(())
}
