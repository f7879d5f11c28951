//! Top-down generation: one prompt per hypothesis, then the repair loop, which sends a failed
//! hypothesis back with the exact compiler or validator message.

use hypoforge_spec::ComponentKind;

use crate::llm::{LlmClient, LlmError, Message, Usage};
use crate::prompts::{self, Baseline, Feedback, Prompt, RepairCause, Strategy};
use crate::{
    Attempt, Checker, GenerateError, Generator, Hypothesis, Outcome, Verdict, extract_code,
    extract_idea,
};

/// Asks an LLM for hypotheses of one kind under one strategy.
#[derive(Debug)]
pub struct LlmGenerator {
    client: LlmClient,
    kind: ComponentKind,
    strategy: Strategy,
    prompt: Prompt,
    repairs: u32,
}

impl LlmGenerator {
    /// `repairs` is how many times a failed hypothesis goes back (0: first replies only).
    pub fn new(
        client: LlmClient,
        kind: ComponentKind,
        strategy: Strategy,
        baselines: &[Baseline],
        repairs: u32,
    ) -> LlmGenerator {
        LlmGenerator {
            prompt: prompts::render(kind, strategy, baselines, &Feedback::default()),
            client,
            kind,
            strategy,
            repairs,
        }
    }

    /// Evolutionary feedback for the hypotheses still to come.
    pub fn set_feedback(&mut self, baselines: &[Baseline], feedback: &Feedback) {
        self.prompt = prompts::render(self.kind, self.strategy, baselines, feedback);
    }

    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    pub fn client(&self) -> &LlmClient {
        &self.client
    }
}

impl Generator for LlmGenerator {
    fn next(&mut self, checker: &mut dyn Checker) -> Result<Option<Hypothesis>, GenerateError> {
        let mut messages = vec![
            Message::system(self.prompt.system.clone()),
            Message::user(self.prompt.user.clone()),
        ];
        let mut attempts = Vec::new();
        let mut usage = Usage::default();
        let mut idea = None;
        let mut source = String::new();
        for round in 0..=self.repairs {
            let reply = match self.client.chat(&messages) {
                Ok(reply) => reply,
                // A repair the budget cannot pay for leaves the hypothesis as it stands; the
                // next hypothesis reports the exhausted budget.
                Err(LlmError::BudgetExhausted(_)) if round > 0 => break,
                Err(e) => return Err(e.into()),
            };
            usage.add(reply.usage);
            if idea.is_none() {
                idea = extract_idea(&reply.content);
            }
            let (cause, message) = match extract_code(&reply.content) {
                None => {
                    let message = if reply.finish_reason.as_deref() == Some("length") {
                        "the reply hit the token limit before any code"
                    } else {
                        "the reply has no code"
                    };
                    attempts.push(Attempt {
                        outcome: Outcome::NoCode,
                        source: None,
                        message: Some(message.to_owned()),
                    });
                    (RepairCause::NoCode, message.to_owned())
                }
                Some(code) => {
                    source = code;
                    let (outcome, cause, message) = match checker.check(self.kind, &source) {
                        Verdict::Valid => (Outcome::Valid, None, None),
                        Verdict::CompileError(m) => {
                            (Outcome::CompileError, Some(RepairCause::Compile), Some(m))
                        }
                        Verdict::Invalid(m) => {
                            (Outcome::Invalid, Some(RepairCause::Validate), Some(m))
                        }
                    };
                    attempts.push(Attempt {
                        outcome,
                        source: Some(source.clone()),
                        message: message.clone(),
                    });
                    match (cause, message) {
                        (Some(cause), Some(message)) => (cause, message),
                        _ => break,
                    }
                }
            };
            messages.push(Message::assistant(reply.content));
            messages.push(Message::user(prompts::repair_message(cause, &message)));
        }
        Ok(Some(Hypothesis {
            kind: self.kind,
            name: Hypothesis::declared_name(&source),
            generator: format!("openai:{}", self.client.config().model),
            strategy: Some(self.strategy),
            prompt_id: Some(self.prompt.id.clone()),
            model: Some(self.client.config().model.clone()),
            idea,
            source,
            attempts,
            usage,
        }))
    }
}
