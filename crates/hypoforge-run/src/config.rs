//! The run configuration (`hypoforge run --config FILE`): TOML, every key optional, unknown keys
//! refused by name.

use hypoforge_generate::Strategy;
use hypoforge_spec::ComponentKind;
use serde::{Deserialize, Serialize};

/// What a run does. The defaults are a small offline run: the built-in replay corpus, every
/// kind, two rounds of six, the quick suite, then the top three on the holdout suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Fixes the generators' order and nothing else: trials are seeded by their own seed.
    pub seed: u64,
    pub kinds: Vec<ComponentKind>,
    pub rounds: u32,
    /// Hypotheses generated per kind per round.
    pub per_round: u32,
    /// The one-pass suite: a built-in name or a suite file.
    pub suite: String,
    /// Seeds per task in the one-pass stage.
    pub seeds: u64,
    /// Wall-clock limit on one component's trial, in seconds (0: none).
    pub trial_timeout: f64,
    /// Where trials train: `cpu` (the reference), `cuda` or `auto`. Trials trained on a GPU
    /// are stored apart from the CPU's, so a store never mixes the two in one comparison.
    pub device: String,
    pub generator: GeneratorConfig,
    pub full: FullConfig,
    pub budget: BudgetConfig,
    pub reward: RewardConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 0,
            kinds: vec![
                ComponentKind::Activation,
                ComponentKind::Preprocessor,
                ComponentKind::Regularizer,
            ],
            rounds: 2,
            per_round: 6,
            suite: "quick".into(),
            seeds: 2,
            trial_timeout: 60.0,
            device: "cpu".into(),
            generator: GeneratorConfig::default(),
            full: FullConfig::default(),
            budget: BudgetConfig::default(),
            reward: RewardConfig::default(),
        }
    }
}

/// Where hypotheses come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// `replay` (the built-in corpus), `replay:FILE` (a `hypoforge generate` output or any
    /// JSON Lines corpus), `grammar`, or `openai:MODEL` (an OpenAI-compatible endpoint from
    /// `base_url` or `OPENAI_BASE_URL`, key from `OPENAI_API_KEY`).
    pub source: String,
    /// Prompting strategies, taken in turn (replay keeps to the recorded strategy).
    pub strategies: Vec<Strategy>,
    pub base_url: Option<String>,
    /// Repair rounds after a failed LLM hypothesis.
    pub repairs: u32,
    pub temperature: f32,
    pub max_reply_tokens: u32,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            source: "replay".into(),
            strategies: vec![Strategy::Iep, Strategy::Nep],
            base_url: None,
            repairs: 2,
            temperature: 1.0,
            max_reply_tokens: 4096,
        }
    }
}

/// The full evaluation of the best one-pass candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FullConfig {
    /// Candidates per kind that go on (by BSOTA-WR, then B-WR); 0 skips the stage.
    pub top_k: usize,
    /// Tasks the one-pass stage never saw.
    pub suite: String,
    /// The one-pass suite's tasks also run again, with this many times the epochs.
    pub epochs: u32,
    pub seeds: u64,
}

impl Default for FullConfig {
    fn default() -> Self {
        FullConfig {
            top_k: 3,
            suite: "holdout".into(),
            epochs: 3,
            seeds: 3,
        }
    }
}

/// Spend the one-pass evaluation on the hypotheses a reward model predicts to do best.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// A `hypoforge reward train` file. Its contents are kept in the store when the run starts,
    /// so a resume does not need it. None: every valid hypothesis is evaluated.
    pub model: Option<String>,
    /// Of each round's valid new hypotheses of a kind, the share with the highest predicted
    /// B-WR that is evaluated (rounded up); the rest are kept, with their prediction, unevaluated.
    pub evaluate_share: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            model: None,
            evaluate_share: 0.5,
        }
    }
}

/// Hard limits; a run that reaches one stops cleanly and `hypoforge resume` continues it
/// (with a fresh wall-clock allowance; the counts are for the whole run).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    pub max_hypotheses: Option<u64>,
    pub max_llm_requests: Option<u64>,
    pub max_llm_tokens: Option<u64>,
    /// Seconds of wall clock per invocation.
    pub max_wall_seconds: Option<f64>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

impl RunConfig {
    /// Parse and check a configuration; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<RunConfig, ConfigError> {
        let config: RunConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.check(origin)?;
        Ok(config)
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                key,
                message: message.to_owned(),
            })
        };
        if self.kinds.is_empty() {
            return invalid("kinds", "is empty; name at least one kind");
        }
        let mut kinds = self.kinds.clone();
        kinds.sort();
        kinds.dedup();
        if kinds.len() != self.kinds.len() {
            return invalid("kinds", "names a kind twice");
        }
        if self.seeds == 0 {
            return invalid("seeds", "must be at least 1");
        }
        if self.full.top_k > 0 && self.full.seeds == 0 {
            return invalid("full.seeds", "must be at least 1 when full.top_k is not 0");
        }
        if self.full.epochs == 0 {
            return invalid("full.epochs", "must be at least 1");
        }
        if self.generator.strategies.is_empty() {
            return invalid("generator.strategies", "is empty; use [\"iep\", \"nep\"]");
        }
        if !(self.trial_timeout.is_finite() && self.trial_timeout >= 0.0) {
            return invalid("trial_timeout", "must be a number of seconds, 0 or more");
        }
        if let Some(s) = self.budget.max_wall_seconds
            && !(s.is_finite() && s > 0.0)
        {
            return invalid("budget.max_wall_seconds", "must be a positive number");
        }
        if !(self.reward.evaluate_share > 0.0 && self.reward.evaluate_share <= 1.0) {
            return invalid("reward.evaluate_share", "must be in (0, 1]");
        }
        if let Err(message) = self.device.parse::<hypoforge_eval::device::DeviceChoice>() {
            return invalid("device", &message);
        }
        if let Err(message) = crate::pipeline::GeneratorSource::parse(&self.generator.source) {
            return invalid("generator.source", &message);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_run() {
        assert_eq!(
            RunConfig::parse("", "x").expect("succeeds"),
            RunConfig::default()
        );
    }

    #[test]
    fn every_key_parses() {
        let text = r#"
seed = 7
kinds = ["activation"]
rounds = 3
per_round = 4
suite = "standard"
seeds = 5
trial_timeout = 10
device = "auto"
[generator]
source = "openai:gpt-4o-mini"
strategies = ["nep"]
base_url = "http://127.0.0.1:9/v1"
repairs = 1
temperature = 0.5
max_reply_tokens = 1000
[full]
top_k = 2
suite = "holdout"
epochs = 2
seeds = 4
[budget]
max_hypotheses = 10
max_llm_requests = 20
max_llm_tokens = 30000
max_wall_seconds = 60
[reward]
model = "reward.json"
evaluate_share = 0.25
"#;
        let c = RunConfig::parse(text, "run.toml").expect("succeeds");
        assert_eq!(c.seed, 7);
        assert_eq!(c.generator.strategies, vec![Strategy::Nep]);
        assert_eq!(c.full.top_k, 2);
        assert_eq!(c.budget.max_llm_tokens, Some(30000));
        assert_eq!(c.device, "auto");
        assert_eq!(c.reward.model.as_deref(), Some("reward.json"));
        assert_eq!(c.reward.evaluate_share, 0.25);
    }

    #[test]
    fn an_unknown_key_is_named_with_where_it_is() {
        for (text, key) in [
            ("rounds = 2\nround = 3", "round"),
            ("[full]\ntopk = 3", "topk"),
            ("[generator]\nmodel = \"x\"", "model"),
            ("[budgets]\nmax_hypotheses = 1", "budgets"),
        ] {
            let err = RunConfig::parse(text, "run.toml")
                .expect_err("fails")
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
            assert!(err.starts_with("run.toml:"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("kinds = []", "kinds"),
            ("kinds = [\"activation\", \"activation\"]", "kinds"),
            ("seeds = 0", "seeds"),
            ("[generator]\nsource = \"gpt\"", "generator.source"),
            ("[generator]\nsource = \"openai:\"", "generator.source"),
            ("[budget]\nmax_wall_seconds = -1", "budget.max_wall_seconds"),
            ("device = \"gpu\"", "device"),
            ("[reward]\nevaluate_share = 0", "reward.evaluate_share"),
            ("[reward]\nevaluate_share = 1.5", "reward.evaluate_share"),
        ] {
            let err = RunConfig::parse(text, "run.toml")
                .expect_err("fails")
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{text}: {err}");
        }
        let err = RunConfig::parse("kinds = [\"optimizer\"]", "run.toml")
            .expect_err("fails")
            .to_string();
        assert!(err.contains("optimizer"), "{err}");
    }
}
