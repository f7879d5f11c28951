//! The generation prompts: one template per kind × strategy (`prompts/`), rendered with the
//! baseline panel and, optionally, feedback from hypotheses already evaluated.

use std::fmt;
use std::str::FromStr;

use hypoforge_spec::ComponentKind;
use serde::{Deserialize, Serialize};

/// The paper's two prompting strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Incrementality Encouraging Prompting: a reasoned variation on a known component.
    Iep,
    /// Novelty Encouraging Prompting: a component unlike the known ones.
    Nep,
}

impl Strategy {
    pub const ALL: [Strategy; 2] = [Strategy::Iep, Strategy::Nep];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Iep => "iep",
            Strategy::Nep => "nep",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no strategy.
#[derive(Debug, thiserror::Error)]
#[error("unknown strategy `{0}` (expected iep or nep)")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "iep" => Ok(Strategy::Iep),
            "nep" => Ok(Strategy::Nep),
            _ => Err(UnknownStrategy(s.to_owned())),
        }
    }
}

/// Bumped whenever a template's text changes, so that a recorded `prompt_id` names the exact
/// text a hypothesis answered.
pub const TEMPLATE_VERSION: u32 = 1;

const SYSTEM: &str = include_str!("../prompts/system.md");
const REPAIR: &str = include_str!("../prompts/repair.md");

fn component_template(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Activation => include_str!("../prompts/activation.md"),
        ComponentKind::Preprocessor => include_str!("../prompts/preprocessor.md"),
        ComponentKind::Regularizer => include_str!("../prompts/regularizer.md"),
    }
}

fn task_template(kind: ComponentKind, strategy: Strategy) -> &'static str {
    match (kind, strategy) {
        (ComponentKind::Activation, Strategy::Iep) => include_str!("../prompts/activation-iep.md"),
        (ComponentKind::Activation, Strategy::Nep) => include_str!("../prompts/activation-nep.md"),
        (ComponentKind::Preprocessor, Strategy::Iep) => {
            include_str!("../prompts/preprocessor-iep.md")
        }
        (ComponentKind::Preprocessor, Strategy::Nep) => {
            include_str!("../prompts/preprocessor-nep.md")
        }
        (ComponentKind::Regularizer, Strategy::Iep) => {
            include_str!("../prompts/regularizer-iep.md")
        }
        (ComponentKind::Regularizer, Strategy::Nep) => {
            include_str!("../prompts/regularizer-nep.md")
        }
    }
}

/// A baseline as the prompt lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub name: String,
    /// One line: what it computes, with its reference.
    pub description: String,
}

impl Baseline {
    /// The baseline `name` described by its source's first `//` comment line.
    pub fn from_source(name: &str, source: &str) -> Baseline {
        let description = source
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix("//"))
            .map(|comment| comment.trim_start_matches('/').trim().to_owned())
            .unwrap_or_default();
        Baseline {
            name: name.to_owned(),
            description,
        }
    }
}

/// A hypothesis already evaluated, shown to the model as evolutionary feedback.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub name: String,
    /// Its idea in one line (the source's first comment).
    pub idea: String,
    pub b_wr: f64,
    pub bsota_wr: f64,
}

/// The best and worst hypotheses so far; empty lists leave the prompt as the paper's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Feedback {
    pub best: Vec<Scored>,
    pub worst: Vec<Scored>,
}

impl Feedback {
    fn render(&self) -> String {
        if self.best.is_empty() && self.worst.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\n## Evaluated so far\n\nWin rates against the baselines (B-WR: share of baseline \
             comparisons won; BSOTA-WR: share of trials where it beat every baseline).\n",
        );
        for (title, list) in [
            ("Best", &self.best),
            ("Worst (avoid what made these lose)", &self.worst),
        ] {
            if list.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{title}:\n\n"));
            for s in list {
                out.push_str(&format!(
                    "- `{}` (B-WR {:.2}, BSOTA-WR {:.2}): {}\n",
                    s.name, s.b_wr, s.bsota_wr, s.idea
                ));
            }
        }
        out
    }
}

/// A rendered prompt: what goes to the model, and the id that names its template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// `{kind}-{strategy}/{TEMPLATE_VERSION}`, e.g. `activation-iep/1`.
    pub id: String,
    pub system: String,
    pub user: String,
}

/// The prompt for one hypothesis of `kind` under `strategy`.
pub fn render(
    kind: ComponentKind,
    strategy: Strategy,
    baselines: &[Baseline],
    feedback: &Feedback,
) -> Prompt {
    let listed: Vec<String> = baselines
        .iter()
        .map(|b| format!("- `{}`: {}", b.name, b.description))
        .collect();
    let component = component_template(kind).replace("{{baselines}}", &listed.join("\n"));
    let user = task_template(kind, strategy)
        .replace("{{component}}", component.trim_end())
        .replace("{{feedback}}", &feedback.render());
    Prompt {
        id: prompt_id(kind, strategy),
        system: SYSTEM.to_owned(),
        user,
    }
}

/// The id of the current template for `kind` × `strategy`.
pub fn prompt_id(kind: ComponentKind, strategy: Strategy) -> String {
    format!("{kind}-{strategy}/{TEMPLATE_VERSION}")
}

/// Which check a hypothesis failed, for the repair message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairCause {
    NoCode,
    Compile,
    Validate,
}

/// The follow-up message that sends a failed hypothesis back with the exact message.
pub fn repair_message(cause: RepairCause, message: &str) -> String {
    let what = match cause {
        RepairCause::NoCode => "contained no Rust code block",
        RepairCause::Compile => "failed to compile",
        RepairCause::Validate => "compiled but failed validation",
    };
    REPAIR
        .replace("{{what}}", what)
        .replace("{{message}}", &truncate_middle(message, 4000))
}

/// Keeps the start and the end of a long message (a compiler's first error and its summary).
fn truncate_middle(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_owned();
    }
    let head = floor_char_boundary(message, max / 2);
    let tail = ceil_char_boundary(message, message.len() - max / 2);
    format!(
        "{}\n[... {} bytes cut ...]\n{}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baselines() -> Vec<Baseline> {
        vec![
            Baseline::from_source("relu", "// ReLU: max(x, 0).\nuse x;"),
            Baseline::from_source("gelu", "/// GELU (Hendrycks & Gimpel, 2016): x * Phi(x).\n"),
        ]
    }

    #[test]
    fn every_kind_and_strategy_renders_without_placeholders() {
        for kind in ComponentKind::ALL {
            for strategy in Strategy::ALL {
                let p = render(kind, strategy, &baselines(), &Feedback::default());
                assert_eq!(p.id, format!("{kind}-{strategy}/1"));
                assert!(!p.user.contains("{{"), "{}", p.user);
                assert!(p.user.contains("- `relu`: ReLU: max(x, 0)."));
                assert!(
                    p.user.contains(&format!("{kind}!(name = ")),
                    "{kind} export macro"
                );
                assert!(p.user.contains("```rust"));
                assert!(!p.user.contains("Evaluated so far"));
            }
        }
        let iep = render(
            ComponentKind::Activation,
            Strategy::Iep,
            &[],
            &Feedback::default(),
        );
        let nep = render(
            ComponentKind::Activation,
            Strategy::Nep,
            &[],
            &Feedback::default(),
        );
        assert!(iep.user.contains("incremental change"));
        assert!(nep.user.contains("unlike every known one"));
    }

    /// A recorded `prompt_id` must name the exact text that was sent: editing a template without
    /// bumping [`TEMPLATE_VERSION`] would silently misattribute the corpus.
    #[test]
    fn the_templates_are_the_ones_their_version_names() {
        let mut all = String::from(SYSTEM);
        for kind in ComponentKind::ALL {
            all.push_str(component_template(kind));
            for strategy in Strategy::ALL {
                all.push_str(task_template(kind, strategy));
            }
        }
        assert_eq!(
            (
                TEMPLATE_VERSION,
                hypoforge_spec::source_hash(all.as_bytes()).as_str()
            ),
            (
                1,
                "fe2ae0691969ab32e0e80913bee896adcc788c584a75056bf2d1080d778b5d59"
            ),
            "a prompt template changed: bump TEMPLATE_VERSION and update this digest"
        );
    }

    #[test]
    fn feedback_lists_best_and_worst_with_win_rates() {
        let feedback = Feedback {
            best: vec![Scored {
                name: "swish_beta".into(),
                idea: "x * sigmoid(1.5 x)".into(),
                b_wr: 0.712,
                bsota_wr: 0.25,
            }],
            worst: vec![Scored {
                name: "flat".into(),
                idea: "a constant".into(),
                b_wr: 0.0,
                bsota_wr: 0.0,
            }],
        };
        let p = render(
            ComponentKind::Activation,
            Strategy::Nep,
            &baselines(),
            &feedback,
        );
        assert!(
            p.user
                .contains("- `swish_beta` (B-WR 0.71, BSOTA-WR 0.25): x * sigmoid(1.5 x)")
        );
        assert!(
            p.user
                .contains("- `flat` (B-WR 0.00, BSOTA-WR 0.00): a constant")
        );
        assert!(p.user.find("Best").unwrap() < p.user.find("Worst").unwrap());
    }

    #[test]
    fn repair_messages_carry_the_exact_message_and_cut_long_ones_in_the_middle() {
        let m = repair_message(RepairCause::Compile, "error[E0599]: no method `floor`");
        assert!(m.contains("failed to compile"));
        assert!(m.contains("error[E0599]: no method `floor`"));
        let long = format!("FIRST{}LAST", "é".repeat(5000));
        let m = repair_message(RepairCause::Validate, &long);
        assert!(m.contains("FIRST") && m.contains("LAST") && m.contains("bytes cut"));
        assert!(m.len() < 5000);
    }

    #[test]
    fn strategies_parse_case_insensitively_and_reject_others() {
        assert_eq!("IEP".parse::<Strategy>().unwrap(), Strategy::Iep);
        assert_eq!("nep".parse::<Strategy>().unwrap(), Strategy::Nep);
        let err = "novel".parse::<Strategy>().unwrap_err().to_string();
        assert!(err.contains("`novel`") && err.contains("iep or nep"));
    }
}
