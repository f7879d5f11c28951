//! Read-only views of a run: status lines, the JSON export and the report's data.

use hypoforge_eval::runner::Evaluation;
use hypoforge_report as report;
use hypoforge_reward::novelty::Novelty;
use hypoforge_spec::{CheckRecord, ComponentKind};
use hypoforge_store::{RunState, Store};
use serde::Serialize;
use serde_json::json;

use crate::RunError;
use crate::config::RunConfig;
use crate::pipeline::{
    Provenance, Shape, TauRecord, best_candidates, key_checks, key_full, key_novelty, key_one_pass,
    key_shape, key_tau, reward_record,
};

/// One run, in a line of `hypoforge status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunStatus {
    pub id: i64,
    pub created: i64,
    pub state: String,
    pub kinds: Vec<String>,
    /// Hypotheses generated so far, and of those valid and new.
    pub hypotheses: usize,
    pub valid: usize,
    /// Hypotheses the configuration asks for.
    pub planned: u64,
    /// Kinds whose one-pass leaderboard is written.
    pub leaderboards: usize,
}

pub fn status(store: &Store) -> Result<Vec<RunStatus>, RunError> {
    store
        .runs()?
        .into_iter()
        .map(|r| {
            let entries = store.entries(r.id, None)?;
            let config = RunConfig::parse(&r.config, "").unwrap_or_default();
            let kinds: Vec<String> = config.kinds.iter().map(|k| k.to_string()).collect();
            let leaderboards = config
                .kinds
                .iter()
                .map(|&k| store.result(r.id, &key_one_pass(k)))
                .filter(|r| matches!(r, Ok(Some(_))))
                .count();
            Ok(RunStatus {
                id: r.id,
                created: r.created,
                state: state_name(r.state).into(),
                planned: u64::from(config.rounds)
                    * u64::from(config.per_round)
                    * config.kinds.len() as u64,
                kinds,
                hypotheses: entries.len(),
                valid: entries.iter().filter(|e| e.verdict == "valid").count(),
                leaderboards,
            })
        })
        .collect()
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running => "stopped or running",
        RunState::Done => "done",
    }
}

fn stored<T: serde::de::DeserializeOwned>(
    store: &Store,
    run: i64,
    key: &str,
) -> Result<Option<T>, RunError> {
    match store.result(run, key)? {
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| RunError::Internal(format!("run {run}: {key} cannot be read: {e}"))),
        None => Ok(None),
    }
}

/// Everything a run produced, as JSON; deterministic for a given store content (no clocks), so
/// two runs with the same seed export the same document.
pub fn export(store: &Store, run: i64) -> Result<serde_json::Value, RunError> {
    let record = store.run(run)?;
    let config = RunConfig::parse(&record.config, &format!("run {run}'s configuration"))?;
    let mut hypotheses = Vec::new();
    for e in store.entries(run, None)? {
        let h = store.hypothesis(&e.hash)?;
        hypotheses.push(json!({
            "kind": e.kind,
            "round": e.round,
            "ordinal": e.ordinal,
            "hash": e.hash,
            "name": h.as_ref().map(|h| h.name.clone()),
            "source": h.as_ref().map(|h| h.source.clone()),
            "novelty": novelty(store, run, &e.hash)?,
            "reward": reward_record(store, run, &e.hash)?,
            "verdict": e.verdict,
            "detail": e.detail,
            "provenance": h.and_then(|h| serde_json::from_str::<serde_json::Value>(&h.provenance).ok()),
        }));
    }
    let mut kinds = serde_json::Map::new();
    for &kind in &config.kinds {
        let one_pass: Option<Evaluation> = stored(store, run, &key_one_pass(kind))?;
        let full: Option<Evaluation> = stored(store, run, &key_full(kind))?;
        let tau: Option<TauRecord> = stored(store, run, &key_tau(kind))?;
        kinds.insert(
            kind.to_string(),
            json!({ "one_pass": one_pass, "full": full, "kendall_tau": tau.as_ref().and_then(|t| t.tau), "tau_components": tau.map(|t| t.components) }),
        );
    }
    Ok(json!({
        "run": run,
        "state": state_name(record.state),
        "config": record.config,
        "hypotheses": hypotheses,
        "kinds": kinds,
    }))
}

/// The report of a run, from the store alone.
pub fn report_data(store: &Store, run: i64) -> Result<report::ReportData, RunError> {
    let record = store.run(run)?;
    let config = RunConfig::parse(&record.config, &format!("run {run}'s configuration"))?;
    let entries = store.entries(run, None)?;
    let count = |label: &str, value: usize| report::Count {
        label: label.into(),
        value: value as u64,
    };
    let verdicts = |v: &str| entries.iter().filter(|e| e.verdict == v).count();
    let mut kinds = Vec::new();
    let mut pages = Vec::new();
    for &kind in &config.kinds {
        let one_pass: Option<Evaluation> = stored(store, run, &key_one_pass(kind))?;
        let full: Option<Evaluation> = stored(store, run, &key_full(kind))?;
        let tau: Option<TauRecord> = stored(store, run, &key_tau(kind))?;
        if let Some(one_pass) = &one_pass {
            kinds.push(report::KindSection {
                kind: kind.to_string(),
                one_pass: board(one_pass),
                full: full.as_ref().map(|f| report::FullEvaluation {
                    board: board(f),
                    kendall_tau: tau.as_ref().and_then(|t| t.tau),
                    tau_components: tau.as_ref().map_or(0, |t| t.components),
                }),
            });
            for r in one_pass.results.iter().filter(|r| r.baseline) {
                pages.push(page(store, run, kind, r, None, true)?);
            }
        }
        for e in entries.iter().filter(|e| e.kind == kind.to_string()) {
            let result = one_pass
                .as_ref()
                .and_then(|o| o.results.iter().find(|r| r.hash == e.hash && !r.baseline));
            let page = match result {
                Some(r) => page(store, run, kind, r, Some(e), false)?,
                None => entry_page(store, run, kind, e)?,
            };
            if !pages
                .iter()
                .any(|p: &report::HypothesisPage| p.hash == page.hash)
            {
                pages.push(page);
            }
        }
    }
    Ok(report::ReportData {
        title: format!("hypoforge run {run}"),
        generated_by: format!("hypoforge {}", env!("CARGO_PKG_VERSION")),
        run: report::RunSummary {
            id: run,
            state: state_name(record.state).into(),
            seed: config.seed,
            config_toml: record.config.clone(),
            counts: vec![
                count("generated", entries.len()),
                count("valid and new", verdicts("valid")),
                count("invalid", verdicts("invalid")),
                count("did not compile", verdicts("did_not_compile")),
                count("duplicates", verdicts("duplicate")),
            ],
        },
        kinds,
        hypotheses: pages,
        figures: Vec::new(),
    })
}

fn board(e: &Evaluation) -> report::Leaderboard {
    report::Leaderboard {
        suite: e.suite.clone(),
        trials: e.trials,
        rows: e
            .results
            .iter()
            .map(|r| report::LeaderRow {
                hash: r.hash.clone(),
                name: r.name.clone(),
                baseline: r.baseline,
                b_wr: r.b_wr,
                b_wr_ci: r.b_wr_ci,
                bsota_wr: r.bsota_wr,
                bsota_wr_ci: r.bsota_wr_ci,
                mean_val_loss: r.mean_val_loss,
                mean_val_acc: r.mean_val_acc,
                failed_trials: r.failed_trials,
            })
            .collect(),
    }
}

/// A hypothesis's stored novelty (none for baselines and hypotheses from before it was kept).
fn novelty(store: &Store, run: i64, hash: &str) -> Result<Option<Novelty>, RunError> {
    Ok(store
        .result(run, &key_novelty(hash))?
        .and_then(|json| serde_json::from_str(&json).ok()))
}

fn novelty_text(store: &Store, run: i64, hash: &str) -> Result<Option<String>, RunError> {
    Ok(novelty(store, run, hash)?.map(|n| {
        format!(
            "N-score {:.3} (0 is a copy), nearest known component {}{}",
            n.n_score,
            n.nearest,
            if n.rediscovery { ": a rediscovery" } else { "" }
        )
    }))
}

fn prediction_text(store: &Store, run: i64, hash: &str) -> Result<Option<String>, RunError> {
    Ok(reward_record(store, run, hash)?.map(|r| {
        format!(
            "predicted B-WR {:.3}, P(BSOTA-WR above threshold) {:.2}: {} of {} in its round, {}",
            r.predicted_b_wr,
            r.p_bsota,
            r.rank,
            r.of,
            if r.evaluated {
                "evaluated"
            } else {
                "not evaluated (below the round's cut)"
            }
        )
    }))
}

fn verdict_text(verdict: &str, detail: &str) -> String {
    match verdict {
        "valid" => "valid".into(),
        "did_not_compile" => "did not compile".into(),
        "duplicate" => format!("duplicate: {detail}"),
        other => other.into(),
    }
}

fn extras(
    store: &Store,
    run: i64,
    hash: &str,
) -> Result<(Vec<report::CheckRow>, Option<report::Shape>), RunError> {
    let checks: Vec<CheckRecord> = stored(store, run, &key_checks(hash))?.unwrap_or_default();
    let shape: Option<Shape> = stored(store, run, &key_shape(hash))?;
    Ok((
        checks
            .into_iter()
            .map(|c| report::CheckRow {
                name: c.name,
                passed: c.passed,
                detail: c.detail,
            })
            .collect(),
        shape.map(|s| report::Shape {
            x: s.x,
            f: s.f,
            df: s.df,
        }),
    ))
}

fn provenance_rows(json: &str) -> Vec<(String, String)> {
    let Ok(p) = serde_json::from_str::<Provenance>(json) else {
        return Vec::new();
    };
    let mut rows = vec![("generator".to_owned(), p.generator)];
    if let Some(s) = p.strategy {
        rows.push(("strategy".into(), s.to_string()));
    }
    if let Some(v) = p.prompt_id {
        rows.push(("prompt".into(), v));
    }
    if let Some(v) = p.model {
        rows.push(("model".into(), v));
    }
    rows.push(("attempts".into(), p.attempts.to_string()));
    if p.usage.requests > 0 {
        rows.push((
            "LLM use".into(),
            format!(
                "{} requests, {} tokens",
                p.usage.requests, p.usage.total_tokens
            ),
        ));
    }
    if let Some(v) = p.idea {
        rows.push(("idea".into(), v));
    }
    rows
}

fn page(
    store: &Store,
    run: i64,
    kind: ComponentKind,
    r: &hypoforge_eval::runner::ComponentResult,
    entry: Option<&hypoforge_store::Entry>,
    baseline: bool,
) -> Result<report::HypothesisPage, RunError> {
    let (checks, shape) = extras(store, run, &r.hash)?;
    let source = if baseline {
        hypoforge_eval::baselines::sources(kind)
            .iter()
            .find(|(_, s)| hypoforge_spec::source_hash(s.as_bytes()) == r.hash)
            .map(|(_, s)| s.to_string())
            .unwrap_or_default()
    } else {
        store
            .hypothesis(&r.hash)?
            .map(|h| h.source)
            .unwrap_or_default()
    };
    let provenance = match store.hypothesis(&r.hash)? {
        Some(h) if !baseline => provenance_rows(&h.provenance),
        _ => vec![("origin".into(), "baseline panel (plugins/)".into())],
    };
    Ok(report::HypothesisPage {
        hash: r.hash.clone(),
        kind: kind.to_string(),
        name: r.name.clone(),
        baseline,
        source,
        provenance,
        verdict: entry.map_or("valid".into(), |e| verdict_text(&e.verdict, &e.detail)),
        error: None,
        novelty: novelty_text(store, run, &r.hash)?,
        prediction: prediction_text(store, run, &r.hash)?,
        checks,
        shape,
        per_task: r
            .per_task
            .iter()
            .map(|t| report::TaskRow {
                task: t.task.clone(),
                trials: t.trials,
                b_wr: t.b_wr,
                bsota_wr: t.bsota_wr,
                mean_val_loss: t.mean_val_loss,
            })
            .collect(),
        failures: r.failures.clone(),
    })
}

/// The page of a hypothesis that has no results: rejected, a duplicate, or not yet evaluated.
fn entry_page(
    store: &Store,
    run: i64,
    kind: ComponentKind,
    e: &hypoforge_store::Entry,
) -> Result<report::HypothesisPage, RunError> {
    let h = store.hypothesis(&e.hash)?;
    let (checks, shape) = extras(store, run, &e.hash)?;
    let rejected = matches!(e.verdict.as_str(), "invalid" | "did_not_compile");
    Ok(report::HypothesisPage {
        hash: e.hash.clone(),
        kind: kind.to_string(),
        name: h
            .as_ref()
            .map_or_else(|| e.hash[..8].to_owned(), |h| h.name.clone()),
        baseline: false,
        source: h.as_ref().map(|h| h.source.clone()).unwrap_or_default(),
        provenance: h
            .map(|h| provenance_rows(&h.provenance))
            .unwrap_or_default(),
        verdict: verdict_text(&e.verdict, &e.detail),
        error: (rejected && !e.detail.is_empty()).then(|| e.detail.clone()),
        novelty: novelty_text(store, run, &e.hash)?,
        prediction: prediction_text(store, run, &e.hash)?,
        checks,
        shape,
        per_task: Vec::new(),
        failures: Vec::new(),
    })
}

/// A run's candidate as it goes into a bundle: its source, where it came from, and its one-pass
/// results with the protocol they were measured under.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub kind: ComponentKind,
    pub name: String,
    pub hash: String,
    pub source: String,
    pub provenance: Vec<(String, String)>,
    pub result: hypoforge_eval::runner::ComponentResult,
    /// The one-pass suite (as the configuration names it) and seeds.
    pub suite: String,
    pub seeds: u64,
}

/// The best `k` new candidates of each kind of a run, by one-pass BSOTA-WR then B-WR.
pub fn top_candidates(store: &Store, run: i64, k: usize) -> Result<Vec<Candidate>, RunError> {
    let record = store.run(run)?;
    let config = RunConfig::parse(&record.config, &format!("run {run}'s configuration"))?;
    let mut out = Vec::new();
    for &kind in &config.kinds {
        let Some(one_pass) = stored::<Evaluation>(store, run, &key_one_pass(kind))? else {
            continue;
        };
        for r in best_candidates(&one_pass).into_iter().take(k) {
            let Some(h) = store.hypothesis(&r.hash)? else {
                continue;
            };
            out.push(Candidate {
                kind,
                name: h.name.clone(),
                hash: r.hash.clone(),
                source: h.source,
                provenance: provenance_rows(&h.provenance),
                result: r.clone(),
                suite: config.suite.clone(),
                seeds: config.seeds,
            });
        }
    }
    Ok(out)
}
