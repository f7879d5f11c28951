//! The research loop in one call: per round and kind, generate → compile → validate → dedup →
//! one-pass evaluation; then the one-pass leaderboards and the full evaluation of the best, with
//! the rank correlation between the two. Everything goes through the store, which is what makes
//! a stopped run resumable and a resumed one exact.
//!
//! Until a reward model exists every valid, new hypothesis is evaluated (the paper's first,
//! exhaustive round).

mod config;
mod pipeline;
mod views;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hypoforge_compile::Compiler;
use hypoforge_eval::device::{self, DeviceChoice};
use hypoforge_sandbox::Sandbox;
use hypoforge_store::{RunState, Store, StoreError};

pub use config::{BudgetConfig, ConfigError, FullConfig, GeneratorConfig, RunConfig};
pub use pipeline::{GeneratorSource, protocol_id};
pub use views::{Candidate, RunStatus, export, report_data, status, top_candidates};

/// Where a run's progress is shown. Called from worker threads too.
pub trait Observer: Sync {
    /// A stage of `total` steps begins.
    fn stage(&self, label: &str, total: u64);
    /// `done` steps of the current stage are complete.
    fn advance(&self, done: u64);
    fn finish_stage(&self);
    /// A line worth reading (the best so far, why generation stopped).
    fn note(&self, line: &str);
}

/// Shows nothing.
#[derive(Clone, Copy, Debug)]
pub struct Silent;

impl Observer for Silent {
    fn stage(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish_stage(&self) {}
    fn note(&self, _: &str) {}
}

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    Done,
    /// Stopped for the reason given; `hypoforge resume` continues.
    Stopped(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Suite(#[from] hypoforge_eval::tasks::SuiteError),
    #[error(transparent)]
    Runner(#[from] hypoforge_eval::runner::RunnerError),
    #[error(transparent)]
    Generate(#[from] hypoforge_generate::GenerateError),
    #[error(transparent)]
    Replay(#[from] hypoforge_generate::ReplayError),
    #[error("{0}")]
    Baseline(String),
    #[error("{0}")]
    Device(String),
    #[error("run {run} is finished; `hypoforge report {run}` shows it")]
    AlreadyDone { run: i64 },
    #[error("{0}")]
    Internal(String),
}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> Self {
        RunError::Config(e.to_string())
    }
}

/// What the stages run with.
#[derive(Clone, Copy)]
pub struct Tools<'a> {
    pub store: &'a Store,
    pub compiler: &'a Compiler,
    pub sandbox: &'a Sandbox,
    pub observer: &'a dyn Observer,
}

impl std::fmt::Debug for Tools<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

/// Checks that need no paid request: for an LLM generator, that its endpoint answers and
/// accepts the key; for `device = "cuda"`, that there is a usable GPU.
pub fn preflight(config: &RunConfig) -> Result<(), RunError> {
    if let GeneratorSource::OpenAi(model) = GeneratorSource::parse(&config.generator.source)
        .map_err(|m| RunError::Config(format!("generator.source {m}")))?
    {
        let client = hypoforge_generate::LlmClient::new(
            pipeline::llm_config(config, &model),
            hypoforge_generate::Budget::default(),
        );
        client
            .preflight()
            .map_err(|e| RunError::Generate(e.into()))?;
    }
    if device_choice(config)? == DeviceChoice::Cuda {
        device::open(DeviceChoice::Cuda).map_err(no_gpu)?;
    }
    reward_model_text(config)?;
    Ok(())
}

/// The text of `reward.model`, checked to be a model file hypoforge can use.
fn reward_model_text(config: &RunConfig) -> Result<Option<String>, RunError> {
    let Some(path) = &config.reward.model else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        RunError::Config(format!(
            "reward.model: cannot read {path}: {e}; train one with `hypoforge reward train`"
        ))
    })?;
    hypoforge_reward::model::Models::from_json(&text)
        .map_err(|e| RunError::Config(format!("reward.model: {path}: {e}")))?;
    Ok(Some(text))
}

fn no_gpu(e: device::DeviceError) -> RunError {
    RunError::Device(format!(
        "device = \"cuda\": {}; set device = \"cpu\" or \"auto\" to train on the CPU",
        e.reason
    ))
}

fn device_choice(config: &RunConfig) -> Result<DeviceChoice, RunError> {
    config
        .device
        .parse()
        .map_err(|m| RunError::Config(format!("device: {m}")))
}

/// Start a run from a configuration's text (checked first); returns its id and how it ended.
pub fn start(tools: Tools<'_>, config_text: &str, origin: &str) -> Result<(i64, Finish), RunError> {
    let config = RunConfig::parse(config_text, origin)?;
    let _lock = tools.store.lock_for_writing()?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let model = reward_model_text(&config)?;
    let run = tools.store.create_run(config_text, created)?;
    if let Some(model) = model {
        // Kept with the run, so that a resume ranks with the very model the run started with.
        tools
            .store
            .put_result(run, pipeline::KEY_REWARD_MODEL, &model)?;
    }
    let finish = drive(tools, run, config)?;
    Ok((run, finish))
}

/// Continue a stopped run exactly where the store says it was.
pub fn resume(tools: Tools<'_>, run: i64) -> Result<Finish, RunError> {
    let _lock = tools.store.lock_for_writing()?;
    let record = tools.store.run(run)?;
    if record.state == RunState::Done {
        return Err(RunError::AlreadyDone { run });
    }
    let config = RunConfig::parse(&record.config, &format!("run {run}'s configuration"))?;
    drive(tools, run, config)
}

fn drive(tools: Tools<'_>, run: i64, config: RunConfig) -> Result<Finish, RunError> {
    let deadline = config
        .budget
        .max_wall_seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let opened =
        device::open(device_choice(&config)?).map_err(|e| RunError::Device(e.to_string()))?;
    if let Some(note) = &opened.note {
        tools.observer.note(note);
    }
    let ctx = pipeline::Context {
        store: tools.store,
        compiler: tools.compiler,
        sandbox: tools.sandbox,
        observer: tools.observer,
        run,
        config,
        deadline,
        checked: Default::default(),
        device: opened.device.as_deref(),
    };
    pipeline::drive(&ctx)
}
