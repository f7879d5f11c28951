//! Replay: hypotheses from a recorded JSON Lines corpus, such as the one shipped in `corpus/`
//! or a `hypotheses.jsonl` that `hypoforge generate` wrote.

use std::path::{Path, PathBuf};

use hypoforge_spec::ComponentKind;
use hypoforge_spec::rng::Rng;

use crate::{Checker, GenerateError, Generator, Hypothesis, Strategy};

/// The corpus shipped with hypoforge for `kind`: 200 hypotheses per kind, half IEP and half NEP,
/// written by an LLM from this crate's prompts (see `corpus/README.md`).
pub fn builtin_corpus(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Activation => include_str!("../corpus/activation.jsonl"),
        ComponentKind::Preprocessor => include_str!("../corpus/preprocessor.jsonl"),
        ComponentKind::Regularizer => include_str!("../corpus/regularizer.jsonl"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the replay corpus {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}, line {line}: not a hypothesis record ({detail})")]
    BadLine {
        origin: String,
        line: usize,
        detail: String,
    },
}

/// Recorded hypotheses of one kind (and strategy, if given), in an order fixed by the seed.
#[derive(Debug)]
pub struct ReplayGenerator {
    records: std::vec::IntoIter<Hypothesis>,
}

impl ReplayGenerator {
    /// From the JSON Lines in `text`; `origin` names it in errors. Blank lines are skipped; any
    /// other line that is not a record is an error naming its line.
    pub fn from_text(
        text: &str,
        origin: &str,
        kind: ComponentKind,
        strategy: Option<Strategy>,
        seed: u64,
    ) -> Result<ReplayGenerator, ReplayError> {
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Hypothesis =
                serde_json::from_str(line).map_err(|e| ReplayError::BadLine {
                    origin: origin.to_owned(),
                    line: i + 1,
                    detail: e.to_string(),
                })?;
            if record.kind == kind && strategy.is_none_or(|s| record.strategy == Some(s)) {
                records.push(record);
            }
        }
        Rng::new(seed).shuffle(&mut records);
        Ok(ReplayGenerator {
            records: records.into_iter(),
        })
    }

    pub fn from_file(
        path: &Path,
        kind: ComponentKind,
        strategy: Option<Strategy>,
        seed: u64,
    ) -> Result<ReplayGenerator, ReplayError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text, &path.display().to_string(), kind, strategy, seed)
    }

    pub fn builtin(
        kind: ComponentKind,
        strategy: Option<Strategy>,
        seed: u64,
    ) -> Result<ReplayGenerator, ReplayError> {
        Self::from_text(
            builtin_corpus(kind),
            "the built-in corpus",
            kind,
            strategy,
            seed,
        )
    }

    /// How many matching records are still to come (all of them before the first `next`).
    pub fn available(&self) -> usize {
        self.records.len()
    }
}

impl Generator for ReplayGenerator {
    fn next(&mut self, _: &mut dyn Checker) -> Result<Option<Hypothesis>, GenerateError> {
        Ok(self.records.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, Verdict};

    struct NoChecks;
    impl Checker for NoChecks {
        fn check(&mut self, _: ComponentKind, _: &str) -> Verdict {
            Verdict::Valid
        }
    }

    fn names(mut g: ReplayGenerator) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(h) = g.next(&mut NoChecks).unwrap() {
            out.push(h.name.unwrap_or_default());
        }
        out
    }

    #[test]
    fn the_builtin_corpus_has_two_hundred_per_kind_half_iep_half_nep_with_provenance() {
        for kind in ComponentKind::ALL {
            for strategy in Strategy::ALL {
                let g = ReplayGenerator::builtin(kind, Some(strategy), 0).unwrap();
                assert_eq!(g.available(), 100, "{kind} {strategy}");
            }
            let mut g = ReplayGenerator::builtin(kind, None, 0).unwrap();
            assert_eq!(g.available(), 200);
            let mut valid = 0;
            while let Some(h) = g.next(&mut NoChecks).unwrap() {
                let strategy = h.strategy.expect("strategy");
                assert_eq!(h.prompt_id, Some(crate::prompts::prompt_id(kind, strategy)));
                assert!(h.model.is_some() && h.idea.is_some() && h.name.is_some());
                let last = h.attempts.last().expect("attempts");
                assert_eq!(last.source.as_deref(), Some(h.source.as_str()));
                valid += usize::from(last.outcome == Outcome::Valid);
            }
            assert!(valid >= 160, "{kind}: {valid} of 200 recorded valid");
        }
    }

    #[test]
    fn the_seed_fixes_the_order() {
        let a = names(ReplayGenerator::builtin(ComponentKind::Activation, None, 7).unwrap());
        let b = names(ReplayGenerator::builtin(ComponentKind::Activation, None, 7).unwrap());
        let c = names(ReplayGenerator::builtin(ComponentKind::Activation, None, 8).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted_a = a.clone();
        let mut sorted_c = c;
        sorted_a.sort();
        sorted_c.sort();
        assert_eq!(sorted_a, sorted_c, "the same records, reordered");
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let text = "\n{\"kind\":\"activation\",\"source\":\"x\"}\nnot json\n";
        let err = ReplayGenerator::from_text(text, "c.jsonl", ComponentKind::Activation, None, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.jsonl, line 3: not a hypothesis record"),
            "{err}"
        );
        let err = ReplayGenerator::from_file(
            Path::new("/nonexistent/c.jsonl"),
            ComponentKind::Activation,
            None,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot read the replay corpus /nonexistent/c.jsonl"));
    }

    #[test]
    fn records_of_other_kinds_and_strategies_are_skipped() {
        let text = concat!(
            "{\"kind\":\"activation\",\"strategy\":\"iep\",\"name\":\"a\",\"source\":\"x\"}\n",
            "{\"kind\":\"activation\",\"strategy\":\"nep\",\"name\":\"b\",\"source\":\"x\"}\n",
            "{\"kind\":\"regularizer\",\"name\":\"c\",\"source\":\"x\"}\n",
        );
        let g = |s| ReplayGenerator::from_text(text, "t", ComponentKind::Activation, s, 0);
        assert_eq!(names(g(Some(Strategy::Nep)).unwrap()), ["b"]);
        assert_eq!(g(None).unwrap().available(), 2);
    }
}
