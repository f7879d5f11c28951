//! The loop itself. Every step reads what the store already holds before doing anything, so
//! running it again on a stopped run (killed, interrupted, out of wall clock) continues where the
//! store says it was, and an offline run ends with the same rows and numbers as if it had never
//! stopped: generators are fast-forwarded past what they produced, and trials come back from the
//! store instead of being trained again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hypoforge_compile::Compiler;
use hypoforge_eval::baselines;
use hypoforge_eval::metrics::{RunOutcome, kendall_tau_b};
use hypoforge_eval::runner::{
    self, ComponentResult, Entrant, Evaluation, Plan, RunnerError, TrialCache,
};
use hypoforge_eval::tasks::{self, Suite, Task};
use hypoforge_generate::{
    Baseline, Budget, Checker, Generator, GrammarGenerator, Hypothesis, LlmClient, LlmConfig,
    LlmGenerator, ReplayGenerator, Strategy, Verdict,
};
use hypoforge_plugin::{Plugin, PluginLimits};
use hypoforge_reward::features::{Behaviour, Features};
use hypoforge_reward::model::Models;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::{CheckRecord, ComponentKind};
use hypoforge_store::{Entry, HypothesisRecord, RunState, Store, TrialKey, TrialRecord};
use hypoforge_validate::SourceVerdict;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::RunConfig;
use crate::{Finish, Observer, RunError};

/// Everything that decides a trial's numbers besides the component, the task and the seed;
/// bumped when training changes, so that old trials are not reused for new ones.
const TRIAL_PROTOCOL: &str = "hypoforge-trial/1";

/// Where a run's hypotheses come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GeneratorSource {
    Replay(Option<PathBuf>),
    Grammar,
    OpenAi(String),
}

impl GeneratorSource {
    pub fn parse(text: &str) -> Result<GeneratorSource, String> {
        match text.split_once(':') {
            None if text == "replay" => Ok(GeneratorSource::Replay(None)),
            None if text == "grammar" => Ok(GeneratorSource::Grammar),
            Some(("replay", path)) if !path.is_empty() => {
                Ok(GeneratorSource::Replay(Some(PathBuf::from(path))))
            }
            Some(("openai", model)) if !model.trim().is_empty() => {
                Ok(GeneratorSource::OpenAi(model.to_owned()))
            }
            _ => Err(format!(
                "is `{text}`; use replay, replay:FILE, grammar or openai:MODEL"
            )),
        }
    }

    fn is_offline(&self) -> bool {
        !matches!(self, GeneratorSource::OpenAi(_))
    }
}

/// What the stages share.
pub(crate) struct Context<'a> {
    pub store: &'a Store,
    pub compiler: &'a Compiler,
    pub sandbox: &'a Sandbox,
    pub observer: &'a dyn Observer,
    pub run: i64,
    pub config: RunConfig,
    pub deadline: Option<Instant>,
    pub checked: CheckMemo,
    /// The batch device trials train on; `None` for the CPU path.
    pub device: Option<&'a dyn hypoforge_eval::batched::BatchDevice>,
}

/// An activation's shape for the report: f and f′ on a grid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Shape {
    pub x: Vec<f32>,
    pub f: Vec<f32>,
    pub df: Vec<f32>,
}

/// The Kendall τ between one-pass and full B-WR over the fully evaluated components.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TauRecord {
    pub tau: Option<f64>,
    pub components: usize,
}

pub(crate) fn key_checks(hash: &str) -> String {
    format!("checks/{hash}")
}
pub(crate) fn key_shape(hash: &str) -> String {
    format!("shape/{hash}")
}
/// The digest of a hypothesis's behaviour on the reward crate's probes (every kind).
pub(crate) fn key_behaviour(hash: &str) -> String {
    format!("behaviour/{hash}")
}
/// A hypothesis's N-score against the panel and the library of published components.
pub(crate) fn key_novelty(hash: &str) -> String {
    format!("novelty/{hash}")
}
/// The reward model's prediction for a hypothesis, and whether it made the round's cut.
pub(crate) fn key_reward(hash: &str) -> String {
    format!("reward/{hash}")
}
/// The reward model file the run started with (`reward.model`), verbatim.
pub(crate) const KEY_REWARD_MODEL: &str = "reward_model";

/// What the reward model said of a hypothesis in its round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RewardRecord {
    pub predicted_b_wr: f64,
    pub p_bsota: f64,
    /// 1 for the highest prediction of its kind and round.
    pub rank: usize,
    pub of: usize,
    pub evaluated: bool,
}
pub(crate) fn key_one_pass(kind: ComponentKind) -> String {
    format!("one_pass/{kind}")
}
pub(crate) fn key_full(kind: ComponentKind) -> String {
    format!("full/{kind}")
}
pub(crate) fn key_tau(kind: ComponentKind) -> String {
    format!("tau/{kind}")
}

/// A stop that leaves the run resumable.
struct Stop(String);

impl<'a> Context<'a> {
    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn time_stop(&self) -> Stop {
        Stop(format!(
            "the wall-clock budget ({} s) is spent",
            self.config.budget.max_wall_seconds.unwrap_or(0.0)
        ))
    }

    fn limits(&self) -> PluginLimits {
        PluginLimits::default()
    }

    fn trial_time_limit(&self) -> Option<Duration> {
        Some(Duration::from_secs_f64(self.config.trial_timeout)).filter(|d| !d.is_zero())
    }
}

pub(crate) fn drive(ctx: &Context<'_>) -> Result<Finish, RunError> {
    match stages(ctx) {
        Ok(()) => {
            ctx.store.set_run_state(ctx.run, RunState::Done)?;
            Ok(Finish::Done)
        }
        Err(Stopping::Stop(Stop(why))) => Ok(Finish::Stopped(why)),
        Err(Stopping::Error(e)) => Err(*e),
    }
}

fn stages(ctx: &Context<'_>) -> Result<(), Stopping> {
    let config = &ctx.config;
    let suite = tasks::suite(&config.suite)?;
    let full_suite = full_suite(config, &suite)?;
    let source = GeneratorSource::parse(&config.generator.source)
        .map_err(|m| RunError::Config(format!("generator.source {m}")))?;
    let mut panels = HashMap::new();
    for &kind in &config.kinds {
        panels.insert(kind, baseline_panel(ctx, kind)?);
    }
    let mut state = GenerationState::new(ctx, &source)?;
    for round in 0..config.rounds {
        for &kind in &config.kinds {
            generate_round(ctx, &mut state, &panels[&kind], kind, round)?;
            evaluate_round(ctx, &suite, &panels[&kind], kind, round)?;
        }
    }
    for &kind in &config.kinds {
        let panel = &panels[&kind];
        let one_pass = one_pass_leaderboard(ctx, &suite, panel, kind)?;
        if config.full.top_k > 0 {
            full_evaluation(ctx, &full_suite, panel, kind, &one_pass)?;
        }
    }
    Ok(())
}

enum Stopping {
    Stop(Stop),
    Error(Box<RunError>),
}

impl<E: Into<RunError>> From<E> for Stopping {
    fn from(e: E) -> Self {
        Stopping::Error(Box::new(e.into()))
    }
}

/// The full evaluation's tasks: the full suite's own (unseen) tasks, then the one-pass tasks
/// trained `epochs` times longer.
fn full_suite(config: &RunConfig, one_pass: &Suite) -> Result<Suite, RunError> {
    let mut suite = tasks::suite(&config.full.suite)?;
    let known: Vec<String> = suite.tasks.iter().map(|t| t.name.clone()).collect();
    if config.full.epochs > 1 {
        for task in &one_pass.tasks {
            let mut longer = task.clone();
            longer.name = format!("{}×{}", task.name, config.full.epochs);
            longer.train.epochs *= config.full.epochs as usize;
            longer.train.min_steps *= config.full.epochs as usize;
            if !known.contains(&longer.name) {
                suite.tasks.push(longer);
            }
        }
    }
    suite.name = format!(
        "{} + {}×{} epochs",
        suite.name, one_pass.name, config.full.epochs
    );
    Ok(suite)
}

/// The embedded baselines of `kind`, compiled, validated and loaded.
fn baseline_panel(ctx: &Context<'_>, kind: ComponentKind) -> Result<Vec<Entrant>, RunError> {
    baselines::sources(kind)
        .par_iter()
        .map(|(name, source)| match check(ctx, kind, source) {
            Checked {
                plugin: Some(plugin),
                hash,
                ..
            } => Ok(Entrant {
                name: plugin.meta().name.clone(),
                hash,
                baseline: true,
                plugin,
            }),
            Checked { detail, .. } => Err(RunError::Baseline(format!(
                "the {kind} baseline `{name}` is broken: {detail}"
            ))),
        })
        .collect()
}

/// A hypothesis after compiling, validating and fingerprinting.
#[derive(Clone)]
pub(crate) struct Checked {
    hash: String,
    verdict: &'static str,
    detail: String,
    plugin: Option<Plugin>,
    checks: Vec<CheckRecord>,
    shape: Option<Shape>,
    /// What it does on the reward crate's fixed probes (valid plugins only).
    behaviour: Option<Behaviour>,
}

/// Compile, validate and fingerprint `source` as a `kind`, once per process: the repair loop,
/// the generation step and every evaluation that loads the candidate share the result.
fn check(ctx: &Context<'_>, kind: ComponentKind, source: &str) -> Checked {
    let key = (kind, hypoforge_spec::source_hash(source.as_bytes()));
    let memo = |m: &CheckMemo| {
        m.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    };
    if let Some(known) = memo(&ctx.checked) {
        return known;
    }
    let checked = hypoforge_validate::check_source(
        ctx.compiler,
        ctx.sandbox,
        source.as_bytes(),
        Some(kind),
        ctx.limits(),
    );
    let (verdict, detail, plugin) = match checked.verdict {
        SourceVerdict::Valid(plugin) => ("valid", String::new(), Some(plugin)),
        SourceVerdict::DidNotCompile { message, .. } => ("did_not_compile", message, None),
        SourceVerdict::Invalid { class, message } => {
            ("invalid", format!("{class}: {message}"), None)
        }
    };
    let shape = match (kind, &plugin) {
        (ComponentKind::Activation, Some(plugin)) => activation_shape(ctx, plugin),
        _ => None,
    };
    let behaviour = plugin
        .as_ref()
        .and_then(|p| Behaviour::probe(ctx.sandbox, p, ctx.limits()).ok());
    let checked = Checked {
        hash: checked.hash,
        verdict,
        detail,
        plugin,
        checks: checked.checks,
        shape,
        behaviour,
    };
    ctx.checked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, checked.clone());
    checked
}

/// What [`check`] has found so far, by kind and source hash.
pub(crate) type CheckMemo = Mutex<HashMap<(ComponentKind, String), Checked>>;

/// f and f′ on [-5, 5]: the report's plot and, bit for bit, the behavioural fingerprint that
/// finds a hypothesis computing what another already does.
fn activation_shape(ctx: &Context<'_>, plugin: &Plugin) -> Option<Shape> {
    let x: Vec<f32> = (0..=200).map(|i| -5.0 + i as f32 * 0.05).collect();
    let mut act = plugin.activation(ctx.sandbox, ctx.limits()).ok()?;
    let (mut f, mut df) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    act.forward_with_derivative(&x, &mut f, &mut df).ok()?;
    Some(Shape { x, f, df })
}

fn fingerprint(shape: &Shape) -> Vec<u32> {
    shape
        .f
        .iter()
        .chain(&shape.df)
        .map(|v| v.to_bits())
        .collect()
}

/// The SHA-256 of a behaviour's bits: two hypotheses with the same digest compute the same on
/// every probe. (Preprocessor outputs are too large to keep whole for every hypothesis.)
fn behaviour_digest(behaviour: &Behaviour) -> String {
    let mut hasher = Sha256::new();
    let mut add = |values: &[f32]| {
        hasher.update((values.len() as u64).to_le_bytes());
        for v in values {
            hasher.update(v.to_bits().to_le_bytes());
        }
    };
    match behaviour {
        Behaviour::Activation { f, df } => {
            add(f);
            add(df);
        }
        Behaviour::Preprocessor { width, output } => {
            add(&[*width as f32]);
            add(output);
        }
        Behaviour::Regularizer {
            penalties,
            gradients,
        } => {
            add(penalties);
            for g in gradients {
                add(g);
            }
        }
    }
    hex::encode(hasher.finalize())
}

/// `(name, behaviour)` of each of `sources` that is valid, through [`check`] (so once per
/// process): the baseline panel's and the reward crate's library of published components are
/// what novelty is measured against.
fn behaviours<'s>(
    ctx: &Context<'_>,
    kind: ComponentKind,
    sources: impl IntoIterator<Item = (&'s str, &'s str)>,
) -> Vec<(String, Behaviour)> {
    sources
        .into_iter()
        .filter_map(|(name, source)| {
            check(ctx, kind, source)
                .behaviour
                .map(|b| (name.to_owned(), b))
        })
        .collect()
}

/// The generators of a run and what the run has produced so far.
struct GenerationState {
    source: GeneratorSource,
    streams: HashMap<(ComponentKind, Option<Strategy>), Box<dyn Generator>>,
    /// LLM requests and tokens spent by the whole run.
    used_requests: u64,
    used_tokens: u64,
    produced: u64,
    exhausted: Vec<ComponentKind>,
}

impl GenerationState {
    fn new(ctx: &Context<'_>, source: &GeneratorSource) -> Result<GenerationState, RunError> {
        let entries = ctx.store.entries(ctx.run, None)?;
        let (mut used_requests, mut used_tokens) = (0, 0);
        for e in &entries {
            if let Some(h) = ctx.store.hypothesis(&e.hash)?
                && let Ok(p) = serde_json::from_str::<Provenance>(&h.provenance)
            {
                used_requests += p.usage.requests;
                used_tokens += p.usage.total_tokens;
            }
        }
        Ok(GenerationState {
            source: source.clone(),
            streams: HashMap::new(),
            used_requests,
            used_tokens,
            produced: entries.len() as u64,
            exhausted: Vec::new(),
        })
    }

    /// The generator for `kind` and `strategy`, created on first use and, for an offline
    /// source, moved past the `position` hypotheses it gave before (in this or an earlier
    /// process).
    fn stream(
        &mut self,
        ctx: &Context<'_>,
        kind: ComponentKind,
        strategy: Strategy,
        position: u64,
    ) -> Result<&mut Box<dyn Generator>, RunError> {
        let key = match self.source {
            GeneratorSource::Grammar => (kind, None),
            _ => (kind, Some(strategy)),
        };
        if !self.streams.contains_key(&key) {
            let seed = ctx.config.seed ^ (kind as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut generator: Box<dyn Generator> = match &self.source {
                GeneratorSource::Grammar => Box::new(GrammarGenerator::new(kind, seed)),
                GeneratorSource::Replay(None) => {
                    Box::new(ReplayGenerator::builtin(kind, Some(strategy), seed)?)
                }
                GeneratorSource::Replay(Some(path)) => Box::new(ReplayGenerator::from_file(
                    path,
                    kind,
                    Some(strategy),
                    seed,
                )?),
                GeneratorSource::OpenAi(model) => {
                    Box::new(self.llm_generator(ctx, model, kind, strategy))
                }
            };
            if self.source.is_offline() {
                let mut skip = NoChecks;
                for _ in 0..position {
                    if generator.next(&mut skip)?.is_none() {
                        break;
                    }
                }
            }
            self.streams.insert(key, generator);
        }
        Ok(self.streams.get_mut(&key).expect("inserted above"))
    }

    fn llm_generator(
        &self,
        ctx: &Context<'_>,
        model: &str,
        kind: ComponentKind,
        strategy: Strategy,
    ) -> LlmGenerator {
        let g = &ctx.config.generator;
        let config = llm_config(&ctx.config, model);
        let b = &ctx.config.budget;
        let budget = Budget {
            max_requests: b
                .max_llm_requests
                .map(|m| m.saturating_sub(self.used_requests)),
            max_tokens: b.max_llm_tokens.map(|m| m.saturating_sub(self.used_tokens)),
        };
        let panel: Vec<Baseline> = baselines::sources(kind)
            .iter()
            .map(|(name, source)| Baseline::from_source(name, source))
            .collect();
        LlmGenerator::new(
            LlmClient::new(config, budget),
            kind,
            strategy,
            &panel,
            g.repairs,
        )
    }

    /// Why no more hypotheses may be generated, if a budget says so.
    fn budget_spent(&self, config: &RunConfig) -> Option<String> {
        let b = &config.budget;
        if b.max_hypotheses.is_some_and(|m| self.produced >= m) {
            return Some(format!(
                "budget.max_hypotheses ({}) reached",
                b.max_hypotheses.unwrap_or(0)
            ));
        }
        if b.max_llm_requests.is_some_and(|m| self.used_requests >= m) {
            return Some("budget.max_llm_requests reached".into());
        }
        if b.max_llm_tokens.is_some_and(|m| self.used_tokens >= m) {
            return Some("budget.max_llm_tokens reached".into());
        }
        None
    }
}

/// The LLM client's settings for `model`: the environment's endpoint and key, then the run's.
pub(crate) fn llm_config(run: &RunConfig, model: &str) -> LlmConfig {
    let g = &run.generator;
    let mut config = LlmConfig::from_env(model);
    if let Some(url) = &g.base_url {
        config.base_url = url.clone();
    }
    config.temperature = g.temperature;
    config.max_reply_tokens = g.max_reply_tokens.max(1);
    config
}

/// Skipping past offline hypotheses checks nothing.
struct NoChecks;

impl Checker for NoChecks {
    fn check(&mut self, _: ComponentKind, _: &str) -> Verdict {
        Verdict::Valid
    }
}

/// Compiles and validates for an LLM's repair loop.
struct SandboxChecker<'a, 'b>(&'a Context<'b>);

impl Checker for SandboxChecker<'_, '_> {
    fn check(&mut self, kind: ComponentKind, source: &str) -> Verdict {
        let checked = check(self.0, kind, source);
        match checked.verdict {
            "valid" => Verdict::Valid,
            "did_not_compile" => Verdict::CompileError(checked.detail),
            _ => Verdict::Invalid(checked.detail),
        }
    }
}

/// The provenance stored with a hypothesis: the generator's record without the source.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Provenance {
    #[serde(default)]
    pub generator: String,
    #[serde(default)]
    pub strategy: Option<Strategy>,
    #[serde(default)]
    pub prompt_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub idea: Option<String>,
    #[serde(default)]
    pub attempts: usize,
    #[serde(default)]
    pub usage: UsageRecord,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct UsageRecord {
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

fn provenance(h: &Hypothesis) -> String {
    let p = Provenance {
        generator: h.generator.clone(),
        strategy: h.strategy,
        prompt_id: h.prompt_id.clone(),
        model: h.model.clone(),
        idea: h.idea.clone(),
        attempts: h.attempts.len(),
        usage: UsageRecord {
            requests: h.usage.requests,
            total_tokens: h.usage.tokens(),
        },
    };
    serde_json::to_string(&p).unwrap_or_else(|_| "{}".into())
}

fn generate_round(
    ctx: &Context<'_>,
    state: &mut GenerationState,
    panel: &[Entrant],
    kind: ComponentKind,
    round: u32,
) -> Result<(), Stopping> {
    let config = &ctx.config;
    let entries = ctx.store.entries(ctx.run, Some(&kind.to_string()))?;
    let done = entries.iter().filter(|e| e.round == round).count() as u32;
    if done >= config.per_round || state.exhausted.contains(&kind) {
        return Ok(());
    }
    // What a new hypothesis may duplicate: the panel and everything the run has seen.
    let mut by_hash: HashMap<String, String> = panel
        .iter()
        .map(|e| (e.hash.clone(), e.name.clone()))
        .collect();
    let mut by_behaviour: HashMap<Vec<u32>, String> = HashMap::new();
    // Activations are compared by their plotted shape (as stores before the reward crate were);
    // other kinds by the digest of their behaviour on the reward crate's probes.
    let mut by_digest: HashMap<String, String> = HashMap::new();
    let panel_behaviours = behaviours(ctx, kind, baselines::sources(kind).iter().copied());
    for e in panel {
        if let Some(shape) = (kind == ComponentKind::Activation)
            .then(|| activation_shape(ctx, &e.plugin))
            .flatten()
        {
            by_behaviour.insert(fingerprint(&shape), e.name.clone());
        }
    }
    if kind != ComponentKind::Activation {
        for (name, behaviour) in &panel_behaviours {
            by_digest.insert(behaviour_digest(behaviour), name.clone());
        }
    }
    let known: Vec<(String, Behaviour)> = panel_behaviours
        .into_iter()
        .chain(behaviours(
            ctx,
            kind,
            hypoforge_reward::novelty::library(kind),
        ))
        .collect();
    for e in &entries {
        let name = ctx
            .store
            .hypothesis(&e.hash)
            .ok()
            .flatten()
            .map_or_else(|| e.hash[..8].to_owned(), |h| h.name);
        by_hash.entry(e.hash.clone()).or_insert(name.clone());
        if e.verdict == "valid"
            && let Ok(Some(json)) = ctx.store.result(ctx.run, &key_shape(&e.hash))
            && let Ok(shape) = serde_json::from_str::<Shape>(&json)
        {
            by_behaviour
                .entry(fingerprint(&shape))
                .or_insert(name.clone());
        }
        if e.verdict == "valid"
            && kind != ComponentKind::Activation
            && let Ok(Some(digest)) = ctx.store.result(ctx.run, &key_behaviour(&e.hash))
        {
            by_digest.entry(digest).or_insert(name);
        }
    }

    ctx.observer.stage(
        &format!("{kind}s, round {}: generate and check", round + 1),
        u64::from(config.per_round),
    );
    ctx.observer.advance(u64::from(done));
    let strategies = &config.generator.strategies;
    let result = (|| {
        for ordinal in done..config.per_round {
            if ctx.out_of_time() {
                return Err(Stopping::Stop(ctx.time_stop()));
            }
            if let Some(why) = state.budget_spent(config) {
                ctx.observer.note(&format!("{why}: no more hypotheses"));
                state.exhausted.push(kind);
                return Ok(());
            }
            let slot = u64::from(round) * u64::from(config.per_round) + u64::from(ordinal);
            let strategy = strategies[(slot % strategies.len() as u64) as usize];
            let position = match state.source {
                GeneratorSource::Grammar => slot,
                _ => slot / strategies.len() as u64,
            };
            let mut checker = SandboxChecker(ctx);
            let next = state
                .stream(ctx, kind, strategy, position)
                .and_then(|g| g.next(&mut checker).map_err(RunError::from))?;
            let Some(hypothesis) = next else {
                ctx.observer
                    .note(&format!("the {kind} generator has nothing more to give"));
                state.exhausted.push(kind);
                return Ok(());
            };
            state.used_requests += hypothesis.usage.requests;
            state.used_tokens += hypothesis.usage.tokens();
            let checked = check(ctx, kind, &hypothesis.source);
            let name = match &checked.plugin {
                Some(p) => p.meta().name.clone(),
                None => hypothesis
                    .name
                    .clone()
                    .or_else(|| Hypothesis::declared_name(&hypothesis.source))
                    .unwrap_or_else(|| format!("unnamed-{}", &checked.hash[..8])),
            };
            let (verdict, detail) = if let Some(original) = by_hash.get(&checked.hash) {
                ("duplicate", format!("the same source as {original}"))
            } else if let Some(original) = checked
                .shape
                .as_ref()
                .and_then(|s| by_behaviour.get(&fingerprint(s)))
            {
                (
                    "duplicate",
                    format!("computes what {original} does, bit for bit"),
                )
            } else if let Some(original) = checked
                .behaviour
                .as_ref()
                .filter(|_| kind != ComponentKind::Activation)
                .and_then(|b| by_digest.get(&behaviour_digest(b)))
            {
                (
                    "duplicate",
                    format!("computes what {original} does on every probe, bit for bit"),
                )
            } else {
                (checked.verdict, checked.detail.clone())
            };
            store_extras(ctx, &checked)?;
            if verdict == "valid"
                && let Some(novelty) = checked
                    .behaviour
                    .as_ref()
                    .and_then(|b| hypoforge_reward::novelty::novelty(b, &known))
            {
                if novelty.rediscovery {
                    ctx.observer.note(&format!(
                        "{name} ≈ {} (N-score {:.3}): a rediscovery",
                        novelty.nearest, novelty.n_score
                    ));
                }
                let json = serde_json::to_string(&novelty).map_err(json_error)?;
                ctx.store
                    .put_result(ctx.run, &key_novelty(&checked.hash), &json)?;
            }
            let record = HypothesisRecord {
                hash: checked.hash.clone(),
                kind: kind.to_string(),
                name: name.clone(),
                source: hypothesis.source.clone(),
                provenance: provenance(&hypothesis),
            };
            let entry = Entry {
                kind: kind.to_string(),
                round,
                ordinal,
                hash: checked.hash.clone(),
                verdict: verdict.to_owned(),
                detail,
            };
            ctx.store.add_entry(ctx.run, &record, &entry)?;
            state.produced += 1;
            by_hash.insert(checked.hash.clone(), name.clone());
            if verdict == "valid"
                && let Some(shape) = &checked.shape
            {
                by_behaviour.insert(fingerprint(shape), name.clone());
            }
            if verdict == "valid"
                && kind != ComponentKind::Activation
                && let Some(b) = &checked.behaviour
            {
                by_digest.insert(behaviour_digest(b), name);
            }
            ctx.observer.advance(u64::from(ordinal + 1));
        }
        Ok(())
    })();
    ctx.observer.finish_stage();
    if result.is_ok()
        && let Ok(entries) = ctx.store.entries(ctx.run, Some(&kind.to_string()))
    {
        let round_entries: Vec<&Entry> = entries.iter().filter(|e| e.round == round).collect();
        let count = |v: &str| round_entries.iter().filter(|e| e.verdict == v).count();
        if !round_entries.is_empty() {
            ctx.observer.note(&format!(
            "{kind}s, round {}: {} generated: {} valid and new, {} invalid, {} did not compile, {} duplicates",
            round + 1,
            round_entries.len(),
            count("valid"),
            count("invalid"),
            count("did_not_compile"),
            count("duplicate"),
            ));
        }
    }
    result
}

fn store_extras(ctx: &Context<'_>, checked: &Checked) -> Result<(), RunError> {
    if !checked.checks.is_empty() {
        let json = serde_json::to_string(&checked.checks).map_err(json_error)?;
        ctx.store
            .put_result(ctx.run, &key_checks(&checked.hash), &json)?;
    }
    if let Some(shape) = &checked.shape {
        let json = serde_json::to_string(shape).map_err(json_error)?;
        ctx.store
            .put_result(ctx.run, &key_shape(&checked.hash), &json)?;
    }
    if let Some(behaviour) = &checked.behaviour {
        ctx.store.put_result(
            ctx.run,
            &key_behaviour(&checked.hash),
            &behaviour_digest(behaviour),
        )?;
    }
    Ok(())
}

fn json_error(e: serde_json::Error) -> RunError {
    RunError::Internal(format!("cannot encode a result: {e}"))
}

/// The run's valid candidates of `kind` (optionally of one round), loaded.
fn candidates(
    ctx: &Context<'_>,
    kind: ComponentKind,
    round: Option<u32>,
    panel: &[Entrant],
) -> Result<Vec<Entrant>, RunError> {
    let entries: Vec<Entry> = ctx
        .store
        .entries(ctx.run, Some(&kind.to_string()))?
        .into_iter()
        .filter(|e| e.verdict == "valid" && round.is_none_or(|r| e.round == r))
        .collect();
    let mut loaded: Vec<Entrant> = entries
        .par_iter()
        .map(|e| -> Result<Entrant, RunError> {
            let record = ctx.store.hypothesis(&e.hash)?.ok_or_else(|| {
                RunError::Internal(format!("the store lost hypothesis {}", e.hash))
            })?;
            let checked = check(ctx, kind, &record.source);
            let plugin = checked.plugin.ok_or_else(|| {
                RunError::Internal(format!(
                    "{} was valid and no longer is: {}",
                    record.name, checked.detail
                ))
            })?;
            Ok(Entrant {
                name: record.name,
                hash: e.hash.clone(),
                baseline: false,
                plugin,
            })
        })
        .collect::<Result<_, _>>()?;
    // Names identify rows in tables; a candidate named like another gets its hash appended.
    let mut seen: Vec<String> = panel.iter().map(|e| e.name.clone()).collect();
    for e in &mut loaded {
        if seen.contains(&e.name) {
            e.name = format!("{}@{}", e.name, &e.hash[..8]);
        }
        seen.push(e.name.clone());
    }
    Ok(loaded)
}

/// The store as the evaluator's trial cache; it also enforces the wall clock.
struct StoreCache<'a> {
    store: &'a Store,
    deadline: Option<Instant>,
    on_gpu: bool,
}

/// The training protocol and the build that decide every trial's numbers, in words. The SDK's
/// sources are named by digest: a change to its math (say, a faster `erf`) changes what every
/// plugin computes, so trials from before must not be mixed with trials after.
pub fn protocol_id() -> String {
    format!(
        "{TRIAL_PROTOCOL}, hypoforge {}, ABI {}, SDK {}",
        env!("CARGO_PKG_VERSION"),
        hypoforge_spec::abi::ABI_VERSION,
        &hypoforge_compile::SDK_SOURCE_DIGEST[..12]
    )
}

/// A task's protocol digest; a GPU's trials get their own (the CPU's keeps its old form, so
/// stores from before the GPU path stay valid).
fn protocol(task: &Task, on_gpu: bool) -> String {
    let device = if on_gpu { "|device gpu" } else { "" };
    let digest = Sha256::digest(format!("{}|{task:?}{device}", protocol_id()));
    hex::encode(&digest[..16])
}

fn trial_key(hash: &str, task: &Task, seed: u64, on_gpu: bool) -> TrialKey {
    TrialKey {
        hash: hash.to_owned(),
        protocol: protocol(task, on_gpu),
        seed,
        task: task.name.clone(),
    }
}

/// Said by the cache when the wall clock runs out, to tell it from a store failure.
const OUT_OF_TIME: &str = "out of wall-clock time";

impl TrialCache for StoreCache<'_> {
    fn get(&self, hash: &str, task: &Task, seed: u64) -> Result<Option<RunOutcome>, String> {
        let record = self
            .store
            .trial(&trial_key(hash, task, seed, self.on_gpu))
            .map_err(|e| e.to_string())?;
        if record.is_none() && self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(OUT_OF_TIME.into());
        }
        Ok(record.map(|r| match r {
            TrialRecord::Finished {
                val_loss,
                val_accuracy,
            } => RunOutcome::Finished {
                val_loss,
                val_accuracy,
            },
            TrialRecord::Failed { cause } => RunOutcome::Failed { cause },
        }))
    }

    fn put(&self, hash: &str, task: &Task, seed: u64, outcome: &RunOutcome) -> Result<(), String> {
        let record = match outcome {
            RunOutcome::Finished {
                val_loss,
                val_accuracy,
            } => TrialRecord::Finished {
                val_loss: *val_loss,
                val_accuracy: *val_accuracy,
            },
            RunOutcome::Failed { cause } => TrialRecord::Failed {
                cause: cause.clone(),
            },
        };
        self.store
            .put_trial(&trial_key(hash, task, seed, self.on_gpu), &record)
            .map_err(|e| e.to_string())
    }
}

fn evaluate(
    ctx: &Context<'_>,
    label: &str,
    suite: &Suite,
    seeds: u64,
    kind: ComponentKind,
    entrants: &[Entrant],
) -> Result<Evaluation, Stopping> {
    let plan = Plan {
        kind,
        suite,
        seeds,
        extra_datasets: &[],
        limits: ctx.limits(),
        trial_time_limit: ctx.trial_time_limit(),
        device: ctx.device,
        engine: None,
    };
    let total = suite.tasks.len() as u64 * seeds * entrants.len() as u64;
    ctx.observer.stage(label, total);
    let cache = StoreCache {
        store: ctx.store,
        deadline: ctx.deadline,
        on_gpu: ctx.device.is_some(),
    };
    let progress = |done: usize, _: usize| ctx.observer.advance(done as u64);
    let result = runner::evaluate_cached(&plan, entrants, ctx.sandbox, &cache, &progress);
    ctx.observer.finish_stage();
    match result {
        Ok(e) => Ok(e),
        Err(RunnerError::Cache(m)) if m == OUT_OF_TIME => Err(Stopping::Stop(ctx.time_stop())),
        Err(e) => Err(e.into()),
    }
}

fn evaluate_round(
    ctx: &Context<'_>,
    suite: &Suite,
    panel: &[Entrant],
    kind: ComponentKind,
    round: u32,
) -> Result<(), Stopping> {
    let fresh = candidates(ctx, kind, Some(round), panel)?;
    if fresh.is_empty() {
        return Ok(());
    }
    let fresh = reward_cut(ctx, kind, round, fresh)?;
    let mut entrants = panel.to_vec();
    entrants.extend(fresh);
    let label = format!("{kind}s, round {}: one-pass evaluation", round + 1);
    let evaluation = evaluate(ctx, &label, suite, ctx.config.seeds, kind, &entrants)?;
    if let Some(best) = evaluation.results.iter().find(|r| !r.baseline) {
        ctx.observer.note(&format!(
            "{kind}s, round {}: best new is {} (B-WR {:.3}, BSOTA-WR {:.3})",
            round + 1,
            best.name,
            best.b_wr,
            best.bsota_wr
        ));
    }
    Ok(())
}

/// With `reward.model`, the round's candidates ordered by predicted B-WR, cut to the best
/// `reward.evaluate_share`; every prediction is stored. Without one, `fresh` unchanged.
fn reward_cut(
    ctx: &Context<'_>,
    kind: ComponentKind,
    round: u32,
    fresh: Vec<Entrant>,
) -> Result<Vec<Entrant>, RunError> {
    let Some(text) = ctx.store.result(ctx.run, KEY_REWARD_MODEL)? else {
        return Ok(fresh);
    };
    let models = Models::from_json(&text)
        .map_err(|e| RunError::Config(format!("the run's reward model: {e}")))?;
    let Some(model) = models.for_kind(kind) else {
        ctx.observer.note(&format!(
            "{kind}s, round {}: the reward model has no {kind} part; every hypothesis is evaluated",
            round + 1
        ));
        return Ok(fresh);
    };
    // A hypothesis whose behaviour the probes cannot measure is evaluated: the model cannot
    // judge it, and leaving it out would be a verdict without evidence.
    let mut scored = Vec::with_capacity(fresh.len());
    let mut kept = Vec::new();
    for entrant in fresh {
        let record = ctx.store.hypothesis(&entrant.hash)?.ok_or_else(|| {
            RunError::Internal(format!("the store lost hypothesis {}", entrant.hash))
        })?;
        match check(ctx, kind, &record.source).behaviour {
            Some(behaviour) => {
                let prediction = model
                    .predict(&Features::new(&record.source, &behaviour))
                    .map_err(|e| RunError::Config(format!("the run's reward model: {e}")))?;
                scored.push((prediction, entrant));
            }
            None => kept.push(entrant),
        }
    }
    scored.sort_by(|(a, x), (b, y)| b.b_wr.total_cmp(&a.b_wr).then(x.hash.cmp(&y.hash)));
    let of = scored.len();
    let keep = ((ctx.config.reward.evaluate_share * of as f64).ceil() as usize).min(of);
    for (i, (prediction, entrant)) in scored.into_iter().enumerate() {
        let record = RewardRecord {
            predicted_b_wr: prediction.b_wr,
            p_bsota: prediction.p_bsota,
            rank: i + 1,
            of,
            evaluated: i < keep,
        };
        let json = serde_json::to_string(&record).map_err(json_error)?;
        ctx.store
            .put_result(ctx.run, &key_reward(&entrant.hash), &json)?;
        if record.evaluated {
            kept.push(entrant);
        }
    }
    ctx.observer.note(&format!(
        "{kind}s, round {}: the reward model picks {keep} of {of} valid hypotheses to evaluate",
        round + 1
    ));
    Ok(kept)
}

/// A hypothesis's stored [`RewardRecord`], if the run has a reward model and ranked it.
pub(crate) fn reward_record(
    store: &Store,
    run: i64,
    hash: &str,
) -> Result<Option<RewardRecord>, RunError> {
    Ok(store
        .result(run, &key_reward(hash))?
        .and_then(|json| serde_json::from_str(&json).ok()))
}

fn one_pass_leaderboard(
    ctx: &Context<'_>,
    suite: &Suite,
    panel: &[Entrant],
    kind: ComponentKind,
) -> Result<Evaluation, Stopping> {
    let mut entrants = panel.to_vec();
    // Those the reward model left out of their round stay out of the leaderboard.
    let skipped = |hash: &str| {
        reward_record(ctx.store, ctx.run, hash)
            .ok()
            .flatten()
            .is_some_and(|r| !r.evaluated)
    };
    entrants.extend(
        candidates(ctx, kind, None, panel)?
            .into_iter()
            .filter(|e| !skipped(&e.hash)),
    );
    let label = format!("{kind}s: one-pass leaderboard");
    let evaluation = evaluate(ctx, &label, suite, ctx.config.seeds, kind, &entrants)?;
    let json = serde_json::to_string(&evaluation).map_err(json_error)?;
    ctx.store.put_result(ctx.run, &key_one_pass(kind), &json)?;
    Ok(evaluation)
}

/// An evaluation's new candidates, best first: by BSOTA-WR, then B-WR, then hash (so that ties
/// break the same way every time). What goes on to the full evaluation and into bundles.
pub(crate) fn best_candidates(evaluation: &Evaluation) -> Vec<&ComponentResult> {
    let mut ranked: Vec<_> = evaluation.results.iter().filter(|r| !r.baseline).collect();
    ranked.sort_by(|a, b| {
        b.bsota_wr
            .total_cmp(&a.bsota_wr)
            .then(b.b_wr.total_cmp(&a.b_wr))
            .then(a.hash.cmp(&b.hash))
    });
    ranked
}

fn full_evaluation(
    ctx: &Context<'_>,
    suite: &Suite,
    panel: &[Entrant],
    kind: ComponentKind,
    one_pass: &Evaluation,
) -> Result<(), Stopping> {
    let top: Vec<&str> = best_candidates(one_pass)
        .into_iter()
        .take(ctx.config.full.top_k)
        .map(|r| r.hash.as_str())
        .collect();
    let mut entrants = panel.to_vec();
    entrants.extend(
        candidates(ctx, kind, None, panel)?
            .into_iter()
            .filter(|e| top.contains(&e.hash.as_str())),
    );
    let label = format!("{kind}s: full evaluation of the top {}", top.len());
    let full = evaluate(ctx, &label, suite, ctx.config.full.seeds, kind, &entrants)?;
    let one_pass_b_wr: HashMap<&str, f64> = one_pass
        .results
        .iter()
        .map(|r| (r.hash.as_str(), r.b_wr))
        .collect();
    let (x, y): (Vec<f64>, Vec<f64>) = full
        .results
        .iter()
        .filter_map(|r| Some((*one_pass_b_wr.get(r.hash.as_str())?, r.b_wr)))
        .unzip();
    let tau = TauRecord {
        tau: kendall_tau_b(&x, &y),
        components: x.len(),
    };
    let json = serde_json::to_string(&full).map_err(json_error)?;
    ctx.store.put_result(ctx.run, &key_full(kind), &json)?;
    let json = serde_json::to_string(&tau).map_err(json_error)?;
    ctx.store.put_result(ctx.run, &key_tau(kind), &json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_names_the_sdk_sources_that_built_every_plugin() {
        let sdk = hypoforge_compile::SDK_SOURCE_DIGEST;
        assert_eq!(sdk.len(), 64, "a SHA-256 in hex: {sdk}");
        assert!(protocol_id().ends_with(&format!("SDK {}", &sdk[..12])));
    }
}
