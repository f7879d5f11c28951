//! `hypoforge rank` and `hypoforge reward train|efficiency`: the reward model and its analyses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hypoforge_compile::Compiler;
use hypoforge_plugin::PluginLimits;
use hypoforge_reward::RewardError;
use hypoforge_reward::analysis::{self, BaselineRates, Evaluated, KindAnalysis, Options};
use hypoforge_reward::features::{Behaviour, Features};
use hypoforge_reward::model::{Models, RewardModel, Sample};
use hypoforge_reward::novelty;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use hypoforge_validate::SourceVerdict;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::inputs::{CompileArgs, collect_files};

/// Order hypotheses by the reward model's prediction, before spending evaluation on them.
///
/// Each FILE is compiled and validated, its behaviour measured on the fixed probes, and the
/// model of its kind predicts its B-WR and the chance that its BSOTA-WR clears the model's
/// threshold. The N-score says how far its behaviour is from the nearest baseline or published
/// component (0: a copy; "≈ NAME" marks a rediscovery).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every file was ranked, 1 when any could not be (each is\n\
    named on stderr), 2 on a usage error.\n\n\
    Examples:\n  \
    hypoforge reward train run.json -o reward.json\n  \
    hypoforge rank --model reward.json gen/llm/\n  \
    hypoforge rank --model reward.json a.rs b.rs --json"
)]
pub struct RankArgs {
    /// A model file from `hypoforge reward train`.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Hypothesis files (.rs) or directories to search for them.
    #[arg(required = true, value_name = "HYPOTHESES")]
    paths: Vec<PathBuf>,
    /// Print the order as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    compile: CompileArgs,
}

/// Train the reward model, and measure how well it orders hypotheses.
#[derive(Debug, clap::Subcommand)]
pub enum RewardCommand {
    Train(TrainArgs),
    Efficiency(EfficiencyArgs),
}

/// Train a reward model per kind on evaluated hypotheses and save it.
///
/// RESULTS are run exports (`hypoforge export N --json -o run.json`): they hold each
/// hypothesis's source and its one-pass win rates. Every valid, evaluated hypothesis is compiled
/// again (the compile cache makes this quick) and its behaviour measured; the feature set and
/// ridge penalty are chosen by 5-fold cross-validated rank correlation.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    hypoforge export 1 --json -o run.json && hypoforge reward train run.json -o reward.json")]
pub struct TrainArgs {
    /// Run exports to learn from.
    #[arg(required = true, value_name = "RESULTS")]
    results: Vec<PathBuf>,
    /// Where to write the model (JSON).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

/// How many evaluations ordering by predicted reward saves: efficiency curves (in-source by
/// nested cross-validation, cross-source by training on one generator × strategy and ordering
/// another), the win-rate scatter, the top hypotheses with their N-scores and, for activations,
/// their shapes and similarity heatmap. Writes `analysis.json`, `summary.md` and the figures
/// (SVG and PNG) and `index.html`, a page of it all, into --out.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    hypoforge reward efficiency run.json --out analysis/")]
pub struct EfficiencyArgs {
    /// Run exports to analyse.
    #[arg(required = true, value_name = "RESULTS")]
    results: Vec<PathBuf>,
    /// The folder to write into (created when missing).
    #[arg(long, value_name = "DIR", default_value = "reward-analysis")]
    out: PathBuf,
    /// The true top share the efficiency curve counts.
    #[arg(long, value_name = "SHARE", default_value_t = 0.1)]
    top_share: f64,
    /// Bootstrap resamples of the AUC's interval.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    resamples: usize,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// The classifier predicts P(BSOTA-WR > this).
    #[arg(long, value_name = "T", default_value_t = 0.1)]
    bsota_threshold: f64,
    /// Seeds the cross-validation folds and the bootstrap.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    compile: CompileArgs,
}

pub fn run(command: RewardCommand) -> anyhow::Result<ExitCode> {
    match command {
        RewardCommand::Train(args) => train(args),
        RewardCommand::Efficiency(args) => efficiency(args),
    }
}

/// One hypothesis of a run export.
struct Exported {
    kind: ComponentKind,
    name: String,
    hash: String,
    source_text: String,
    origin: String,
    b_wr: f64,
    bsota_wr: f64,
}

/// What the run exports hold: the evaluated hypotheses, and each kind's baselines' rates.
type Results = (Vec<Exported>, Vec<(ComponentKind, BaselineRates)>);

/// The evaluated hypotheses and the baselines' rates of `paths`, each hypothesis once.
fn read_exports(paths: &[PathBuf]) -> anyhow::Result<Results> {
    let mut hypotheses: Vec<Exported> = Vec::new();
    let mut baselines: Vec<(ComponentKind, BaselineRates)> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let not_export = || {
            anyhow::anyhow!(
                "{} is not a run export (no `hypotheses` and `kinds`); write one with \
                 `hypoforge export N --json -o FILE`",
                path.display()
            )
        };
        let listed = doc["hypotheses"].as_array().ok_or_else(not_export)?;
        let kinds = doc["kinds"].as_object().ok_or_else(not_export)?;
        for (kind_name, stages) in kinds {
            let kind: ComponentKind = serde_json::from_value(Value::String(kind_name.clone()))
                .with_context(|| format!("{}: unknown kind `{kind_name}`", path.display()))?;
            let Some(results) = stages["one_pass"]["results"].as_array() else {
                continue;
            };
            for r in results {
                let (Some(hash), Some(b_wr), Some(bsota_wr)) = (
                    r["hash"].as_str(),
                    r["b_wr"].as_f64(),
                    r["bsota_wr"].as_f64(),
                ) else {
                    bail!(
                        "{}: a {kind} result lacks hash, b_wr or bsota_wr",
                        path.display()
                    );
                };
                let name = r["name"].as_str().unwrap_or(hash).to_owned();
                if r["baseline"].as_bool() == Some(true) {
                    if !baselines.iter().any(|(k, b)| *k == kind && b.name == name) {
                        baselines.push((
                            kind,
                            BaselineRates {
                                name,
                                b_wr,
                                bsota_wr,
                            },
                        ));
                    }
                    continue;
                }
                if hypotheses.iter().any(|h| h.kind == kind && h.hash == hash) {
                    continue;
                }
                let Some(entry) = listed.iter().find(|h| h["hash"].as_str() == Some(hash)) else {
                    bail!(
                        "{}: result {hash} is not among the run's hypotheses",
                        path.display()
                    );
                };
                let Some(source_text) = entry["source"].as_str() else {
                    bail!(
                        "{}: hypothesis {name} has no source; export the run again with this \
                         version of hypoforge",
                        path.display()
                    );
                };
                let provenance = &entry["provenance"];
                let generator = provenance["generator"].as_str().unwrap_or("unknown");
                let origin = match provenance["strategy"].as_str() {
                    Some(strategy) => format!("{generator}/{strategy}"),
                    None => generator.to_owned(),
                };
                hypotheses.push(Exported {
                    kind,
                    name,
                    hash: hash.to_owned(),
                    source_text: source_text.to_owned(),
                    origin,
                    b_wr,
                    bsota_wr,
                });
            }
        }
    }
    if hypotheses.is_empty() {
        bail!("the results hold no evaluated hypotheses");
    }
    Ok((hypotheses, baselines))
}

/// Compile and validate `source` as `kind`, then measure its behaviour.
fn measure(
    compiler: &Compiler,
    sandbox: &Sandbox,
    kind: Option<ComponentKind>,
    source: &str,
) -> Result<(ComponentKind, String, Behaviour), String> {
    let checked = hypoforge_validate::check_source(
        compiler,
        sandbox,
        source.as_bytes(),
        kind,
        PluginLimits::default(),
    );
    let plugin = match checked.verdict {
        SourceVerdict::Valid(plugin) => plugin,
        SourceVerdict::DidNotCompile { message, .. } => {
            return Err(format!("does not compile: {message}"));
        }
        SourceVerdict::Invalid { class, message } => {
            return Err(format!("invalid ({class}): {message}"));
        }
    };
    let behaviour = Behaviour::probe(sandbox, &plugin, PluginLimits::default())
        .map_err(|e| format!("its behaviour cannot be measured: {e}"))?;
    Ok((plugin.meta().kind, plugin.meta().name.clone(), behaviour))
}

/// The evaluated hypotheses with their features, in the exports' order; those that no longer
/// compile or validate are reported and left out.
fn featurize(
    compiler: &Compiler,
    sandbox: &Sandbox,
    exported: Vec<Exported>,
) -> Vec<(ComponentKind, Evaluated)> {
    let bar = crate::inputs::progress_bar(exported.len(), "hypotheses measured");
    let measured: Vec<_> = exported
        .into_par_iter()
        .map(|h| {
            let result = measure(compiler, sandbox, Some(h.kind), &h.source_text);
            bar.inc(1);
            (h, result)
        })
        .collect();
    bar.finish_and_clear();
    measured
        .into_iter()
        .filter_map(|(h, result)| match result {
            Ok((_, _, behaviour)) => Some((
                h.kind,
                Evaluated {
                    features: Features::new(&h.source_text, &behaviour),
                    name: h.name,
                    hash: h.hash,
                    source: h.origin,
                    behaviour,
                    b_wr: h.b_wr,
                    bsota_wr: h.bsota_wr,
                },
            )),
            Err(why) => {
                eprintln!("skipping {} ({}): {why}", h.name, h.kind);
                None
            }
        })
        .collect()
}

fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let (exported, _) = read_exports(&args.results)?;
    let compiler = args.common.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let evaluated = featurize(&compiler, sandbox, exported);
    let mut models = Vec::new();
    println!("| kind | hypotheses | features | ridge λ | CV Spearman |\n|---|---:|---|---:|---:|");
    for kind in ComponentKind::ALL {
        let samples: Vec<Sample> = evaluated
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, e)| Sample {
                features: e.features.clone(),
                b_wr: e.b_wr,
                bsota_wr: e.bsota_wr,
            })
            .collect();
        if samples.is_empty() {
            continue;
        }
        let model = match RewardModel::train(
            kind,
            &samples,
            args.common.bsota_threshold,
            args.common.seed,
        ) {
            Ok(model) => model,
            Err(e @ RewardError::TooFewSamples { .. }) => {
                eprintln!("no {kind} model: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        println!(
            "| {kind} | {} | {:?} | {} | {:.3} |",
            model.trained_on, model.feature_set, model.lambda, model.cv_spearman
        );
        models.push(model);
    }
    if models.is_empty() {
        bail!("no kind has enough evaluated hypotheses to train a model on");
    }
    let json = Models { models }.to_json();
    std::fs::write(&args.output, json + "\n")
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("model written: {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// The baselines and the published components of `kind`, measured.
fn known_components(
    compiler: &Compiler,
    sandbox: &Sandbox,
    kind: ComponentKind,
) -> anyhow::Result<Vec<(String, Behaviour)>> {
    let sources: Vec<(&str, &str)> = hypoforge_eval::baselines::sources(kind)
        .iter()
        .copied()
        .chain(novelty::library(kind))
        .collect();
    sources
        .par_iter()
        .map(|(name, source)| {
            measure(compiler, sandbox, Some(kind), source)
                .map(|(_, _, b)| ((*name).to_owned(), b))
                .map_err(|why| anyhow::anyhow!("the known {kind} `{name}` is broken: {why}"))
        })
        .collect()
}

fn efficiency(args: EfficiencyArgs) -> anyhow::Result<ExitCode> {
    if !(args.top_share > 0.0 && args.top_share <= 1.0) {
        bail!("--top-share must be in (0, 1]");
    }
    let (exported, baselines) = read_exports(&args.results)?;
    let compiler = args.common.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let evaluated = featurize(&compiler, sandbox, exported);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let options = Options {
        top_share: args.top_share,
        resamples: args.resamples,
        seed: args.common.seed,
        bsota_threshold: args.common.bsota_threshold,
    };
    let mut analyses: Vec<KindAnalysis> = Vec::new();
    let mut figures = Vec::new();
    for kind in ComponentKind::ALL {
        let of_kind: Vec<Evaluated> = evaluated
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, e)| e.clone())
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let known = known_components(&compiler, sandbox, kind)?;
        let analysis = match analysis::analyse(kind, &of_kind, &known, options) {
            Ok(analysis) => analysis,
            Err(e @ RewardError::TooFewSamples { .. }) => {
                eprintln!("no {kind} analysis: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let rates: Vec<BaselineRates> = baselines
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, b)| b.clone())
            .collect();
        figures.extend(
            analysis::write_figures(&analysis, &of_kind, &rates, &args.out)
                .with_context(|| format!("cannot draw the {kind} figures"))?,
        );
        analyses.push(analysis);
    }
    if analyses.is_empty() {
        bail!("no kind has enough evaluated hypotheses to analyse");
    }
    let summary = analysis::summary_markdown(&analyses, options);
    write(&args.out.join("summary.md"), &summary)?;
    write(
        &args.out.join("index.html"),
        &analysis::summary_html(&analyses, options, &figures),
    )?;
    #[derive(Serialize)]
    struct Document<'a> {
        options: Options,
        kinds: &'a [KindAnalysis],
    }
    let json = serde_json::to_string_pretty(&Document {
        options,
        kinds: &analyses,
    })?;
    write(&args.out.join("analysis.json"), &json)?;
    print!("{summary}");
    println!(
        "\nwritten: {}, analysis.json and {} figures beside it; open {} in a browser",
        args.out.join("summary.md").display(),
        figures.len(),
        args.out.join("index.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// One line of `rank`'s order.
#[derive(Debug, Serialize)]
struct Ranked {
    file: String,
    kind: ComponentKind,
    name: String,
    predicted_b_wr: f64,
    p_bsota: f64,
    bsota_threshold: f64,
    n_score: Option<f64>,
    nearest: Option<String>,
    rediscovery: bool,
}

pub fn rank(args: RankArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.model)
        .with_context(|| format!("cannot read the model {}", args.model.display()))?;
    let models = Models::from_json(&text)
        .with_context(|| format!("{} is not a usable model", args.model.display()))?;
    let files = collect_files(&args.paths)?;
    let compiler = args.compile.compiler()?;
    let sandbox = Sandbox::shared().context("cannot start the WebAssembly sandbox")?;
    let measured: Vec<_> = files
        .par_iter()
        .map(|file| {
            let source =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read it: {e}"))?;
            let (kind, name, behaviour) = measure(&compiler, sandbox, None, &source)?;
            Ok::<_, String>((file, source, kind, name, behaviour))
        })
        .collect();
    let mut known: Vec<(ComponentKind, Vec<(String, Behaviour)>)> = Vec::new();
    let mut ranked = Vec::new();
    let mut skipped = 0;
    for (file, result) in files.iter().zip(measured) {
        let (file, source, kind, name, behaviour) = match result {
            Ok(m) => m,
            Err(why) => {
                eprintln!("skipping {}: {why}", file.display());
                skipped += 1;
                continue;
            }
        };
        let Some(model) = models.for_kind(kind) else {
            eprintln!(
                "skipping {}: the model has no {kind} part (it was trained on {})",
                file.display(),
                models
                    .models
                    .iter()
                    .map(|m| m.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            skipped += 1;
            continue;
        };
        if !known.iter().any(|(k, _)| *k == kind) {
            known.push((kind, known_components(&compiler, sandbox, kind)?));
        }
        let components = &known
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("just added")
            .1;
        let prediction = model.predict(&Features::new(&source, &behaviour))?;
        let novelty = novelty::novelty(&behaviour, components);
        ranked.push(Ranked {
            file: file.display().to_string(),
            kind,
            name,
            predicted_b_wr: prediction.b_wr,
            p_bsota: prediction.p_bsota,
            bsota_threshold: model.classifier.threshold,
            n_score: novelty.as_ref().map(|n| n.n_score),
            rediscovery: novelty.as_ref().is_some_and(|n| n.rediscovery),
            nearest: novelty.map(|n| n.nearest),
        });
    }
    ranked.sort_by(|a, b| {
        b.predicted_b_wr
            .total_cmp(&a.predicted_b_wr)
            .then(a.file.cmp(&b.file))
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ranked)?);
    } else {
        println!(
            "{:>4}  {:<12}  {:<28}  {:>9}  {:>9}  {:>7}  nearest known",
            "rank", "kind", "name", "pred B-WR", "P(BSOTA)", "N-score"
        );
        for (i, r) in ranked.iter().enumerate() {
            let nearest = match (&r.nearest, r.rediscovery) {
                (Some(n), true) => format!("≈ {n} (rediscovery)"),
                (Some(n), false) => n.clone(),
                (None, _) => "–".into(),
            };
            println!(
                "{:>4}  {:<12}  {:<28}  {:>9.3}  {:>9.3}  {:>7}  {nearest}",
                i + 1,
                r.kind.as_str(),
                r.name,
                r.predicted_b_wr,
                r.p_bsota,
                r.n_score.map_or("–".into(), |n| format!("{n:.3}"))
            );
        }
    }
    Ok(if ranked.is_empty() || skipped > 0 {
        if ranked.is_empty() {
            eprintln!("no hypothesis could be ranked");
        }
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
