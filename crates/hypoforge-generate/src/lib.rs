//! Writes hypotheses: the paper's two prompting strategies (IEP, NEP) per kind, an
//! OpenAI-compatible LLM client with a repair loop, the bottom-up grammar generator that
//! top-down generation must beat, and replay of recorded corpora.
//!
//! Every generator yields [`Hypothesis`] records with their provenance. A record serializes to
//! one JSON line, and a file of such lines is itself a replay corpus: what `hypoforge generate`
//! writes can be replayed, and the corpus shipped in `corpus/` has the same shape.
//!
//! This crate does not compile or validate; the caller passes a [`Checker`] that does, so the
//! repair loop sees the exact compiler and validator messages without this crate depending on
//! the sandbox.

use hypoforge_spec::ComponentKind;
use serde::{Deserialize, Serialize};

mod extract;
pub mod grammar;
pub mod llm;
mod llm_generator;
pub mod prompts;
pub mod replay;

pub use extract::{extract_code, extract_idea};
pub use llm::{Budget, LlmClient, LlmConfig, LlmError, Usage};
pub use llm_generator::LlmGenerator;
pub use prompts::{Baseline, Feedback, Prompt, Strategy};
pub use replay::{ReplayError, ReplayGenerator};

/// One generated hypothesis with where it came from and how it got there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub kind: ComponentKind,
    /// The component name its source declares, when it declares one.
    #[serde(default)]
    pub name: Option<String>,
    /// What produced it: `openai:MODEL`, `grammar`, or for a recorded corpus the original source.
    #[serde(default)]
    pub generator: String,
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// The template the prompt came from (`activation-iep/1`).
    #[serde(default)]
    pub prompt_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// The reply's prose, or the grammar expression.
    #[serde(default)]
    pub idea: Option<String>,
    /// The final source (the last attempt's code; empty if no attempt had code).
    pub source: String,
    /// Every attempt in order: the first reply, then each repair.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// LLM requests and tokens spent on it.
    #[serde(default)]
    pub usage: Usage,
}

impl Hypothesis {
    /// The name in `name = "…"` of the source's export macro.
    pub fn declared_name(source: &str) -> Option<String> {
        source.match_indices("name").find_map(|(at, _)| {
            let rest = source[at + 4..]
                .trim_start()
                .strip_prefix('=')?
                .trim_start();
            let rest = rest.strip_prefix('"')?;
            let name = &rest[..rest.find('"')?];
            hypoforge_spec::abi::valid_component_name(name).then(|| name.to_owned())
        })
    }
}

impl Hypothesis {
    /// What checking [`Hypothesis::source`] said when this record was made: the verdict of the
    /// last attempt that had this code, or `None` when no attempt checked it (grammar samples).
    pub fn recorded_verdict(&self) -> Option<Verdict> {
        let attempt = self
            .attempts
            .iter()
            .rev()
            .find(|a| a.source.as_deref() == Some(self.source.as_str()))?;
        let message = attempt.message.clone().unwrap_or_default();
        match attempt.outcome {
            Outcome::Valid => Some(Verdict::Valid),
            Outcome::CompileError => Some(Verdict::CompileError(message)),
            Outcome::Invalid => Some(Verdict::Invalid(message)),
            Outcome::NoCode => None,
        }
    }
}

/// One try at a hypothesis and what the checker said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The code of this try (absent when the reply had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The compiler or validator message for a failed try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Valid,
    /// The reply held no code.
    NoCode,
    /// Refused by the source policy or by rustc.
    CompileError,
    /// Compiled, but failed a validation check (or is not the kind asked for).
    Invalid,
}

/// What compiling and validating a source came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    CompileError(String),
    Invalid(String),
}

/// Compiles and validates a source as a hypothesis of `kind`.
pub trait Checker {
    fn check(&mut self, kind: ComponentKind, source: &str) -> Verdict;
}

/// Why a generator stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// A source of hypotheses of one kind.
pub trait Generator {
    /// The next hypothesis, or `None` when the source is exhausted (a replay corpus at its end).
    fn next(&mut self, checker: &mut dyn Checker) -> Result<Option<Hypothesis>, GenerateError>;
}

/// The bottom-up generator as a [`Generator`]: `seed` fixes the whole sequence.
#[derive(Debug)]
pub struct GrammarGenerator {
    kind: ComponentKind,
    rng: hypoforge_spec::rng::Rng,
}

impl GrammarGenerator {
    pub fn new(kind: ComponentKind, seed: u64) -> GrammarGenerator {
        GrammarGenerator {
            kind,
            rng: hypoforge_spec::rng::Rng::new(seed),
        }
    }
}

impl Generator for GrammarGenerator {
    fn next(&mut self, _: &mut dyn Checker) -> Result<Option<Hypothesis>, GenerateError> {
        let sampled = grammar::sample(self.kind, &mut self.rng);
        Ok(Some(Hypothesis {
            kind: self.kind,
            name: Some(sampled.name),
            generator: "grammar".into(),
            strategy: None,
            prompt_id: None,
            model: None,
            idea: Some(sampled.expression),
            source: sampled.source,
            attempts: Vec::new(),
            usage: Usage::default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_name_is_read_from_the_export_macro() {
        assert_eq!(
            Hypothesis::declared_name("activation!(name = \"soft_gate\", f = f);").as_deref(),
            Some("soft_gate")
        );
        assert_eq!(
            Hypothesis::declared_name("regularizer!(\n    name=\"l3\",\n penalty = p)").as_deref(),
            Some("l3")
        );
        assert_eq!(
            Hypothesis::declared_name("// a name for it\nactivation!(name = \"g\", f = g);")
                .as_deref(),
            Some("g")
        );
        assert_eq!(Hypothesis::declared_name("fn f() {}"), None);
        assert_eq!(
            Hypothesis::declared_name("activation!(name = \"Bad Name\")"),
            None
        );
    }

    #[test]
    fn the_recorded_verdict_is_that_of_the_last_attempt_with_the_final_code() {
        let attempt = |outcome, source: Option<&str>, message: Option<&str>| Attempt {
            outcome,
            source: source.map(str::to_owned),
            message: message.map(str::to_owned),
        };
        let mut h = Hypothesis {
            kind: ComponentKind::Activation,
            name: None,
            generator: String::new(),
            strategy: None,
            prompt_id: None,
            model: None,
            idea: None,
            source: "a".into(),
            attempts: vec![
                attempt(Outcome::CompileError, Some("a"), Some("E0599")),
                attempt(Outcome::NoCode, None, Some("no code")),
            ],
            usage: Usage::default(),
        };
        assert_eq!(
            h.recorded_verdict(),
            Some(Verdict::CompileError("E0599".into()))
        );
        h.attempts.push(attempt(Outcome::Valid, Some("b"), None));
        h.source = "b".into();
        assert_eq!(h.recorded_verdict(), Some(Verdict::Valid));
        h.attempts.clear();
        assert_eq!(h.recorded_verdict(), None);
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let h = Hypothesis {
            kind: ComponentKind::Regularizer,
            name: Some("l3".into()),
            generator: "openai:m".into(),
            strategy: Some(Strategy::Nep),
            prompt_id: Some("regularizer-nep/1".into()),
            model: Some("m".into()),
            idea: Some("cubic".into()),
            source: "src".into(),
            attempts: vec![Attempt {
                outcome: Outcome::CompileError,
                source: Some("src0".into()),
                message: Some("error".into()),
            }],
            usage: Usage {
                requests: 2,
                prompt_tokens: 10,
                completion_tokens: 5,
            },
        };
        let line = serde_json::to_string(&h).unwrap();
        assert!(line.contains("\"outcome\":\"compile_error\""));
        assert_eq!(serde_json::from_str::<Hypothesis>(&line).unwrap(), h);
    }
}
