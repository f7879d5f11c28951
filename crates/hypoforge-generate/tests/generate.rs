//! The LLM client and the repair loop against a real HTTP server on 127.0.0.1 that speaks the
//! chat-completions protocol, with hypotheses compiled and validated for real.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hypoforge_compile::{Compiler, Limits};
use hypoforge_generate::llm::{ApiKey, Budget, LlmClient, LlmConfig, LlmError, Usage};
use hypoforge_generate::{
    Baseline, Checker, GenerateError, Generator, Hypothesis, LlmGenerator, Outcome, Strategy,
    Verdict,
};
use hypoforge_plugin::PluginLimits;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use hypoforge_validate::{SourceVerdict, check_source};

#[path = "support/chat_server.rs"]
mod chat_server;
use chat_server::{Answer, Server, ok, status};

const KEY: &str = "sk-test-9f8e7d6c5b4a";

const FILE: &str = "// A smooth gate: x * sigmoid(2 x).\nuse hypoforge_sdk::prelude::*;\n\nfn sharp_swish<R: Real>(x: R) -> R {\n    x * sigmoid(x * 2.0)\n}\n\nactivation!(name = \"sharp_swish\", f = sharp_swish);\n";

/// The same idea with the constant on the left, which `Real` does not allow.
const BROKEN: &str = "// A smooth gate: x * sigmoid(2 x).\nuse hypoforge_sdk::prelude::*;\n\nfn sharp_swish<R: Real>(x: R) -> R {\n    x * sigmoid(2.0 * x)\n}\n\nactivation!(name = \"sharp_swish\", f = sharp_swish);\n";

/// Compiles with the real compiler and validates in the real sandbox.
struct SandboxChecker;

impl Checker for SandboxChecker {
    fn check(&mut self, kind: ComponentKind, source: &str) -> Verdict {
        static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
        let cache = CACHE.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
        let compiler =
            Compiler::new(Some(cache.path()), Limits::default()).expect("the compiler starts");
        let sandbox = Sandbox::shared().expect("the sandbox starts");
        let checked = check_source(
            &compiler,
            sandbox,
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

fn config(server: &Server) -> LlmConfig {
    LlmConfig {
        base_url: server.base_url.clone(),
        model: "test-model".into(),
        api_key: ApiKey::new(KEY),
        temperature: 0.7,
        max_reply_tokens: 2048,
        timeout: Duration::from_secs(10),
        retries: 2,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn generator(config: LlmConfig, repairs: u32) -> LlmGenerator {
    let baselines = [Baseline::from_source("relu", "// ReLU: max(x, 0).")];
    LlmGenerator::new(
        LlmClient::new(config, Budget::default()),
        ComponentKind::Activation,
        Strategy::Iep,
        &baselines,
        repairs,
    )
}

fn generate(config: LlmConfig, repairs: u32) -> Result<Hypothesis, GenerateError> {
    Ok(generator(config, repairs)
        .next(&mut SandboxChecker)?
        .expect("an LLM generator always yields"))
}

#[test]
fn a_normal_reply_becomes_a_valid_hypothesis_with_its_provenance_and_usage() {
    let server = Server::start(|_, _| ok(&format!("```rust\n{FILE}```")));
    let h = generate(config(&server), 2).unwrap();
    assert_eq!(h.source, FILE);
    assert_eq!(h.name.as_deref(), Some("sharp_swish"));
    assert_eq!(h.generator, "openai:test-model");
    assert_eq!(h.strategy, Some(Strategy::Iep));
    assert_eq!(h.prompt_id.as_deref(), Some("activation-iep/1"));
    assert_eq!(h.attempts.len(), 1);
    assert_eq!(h.attempts[0].outcome, Outcome::Valid);
    assert_eq!(
        (
            h.usage.requests,
            h.usage.prompt_tokens,
            h.usage.completion_tokens
        ),
        (1, 120, 80)
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    let body = &seen[0].body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["max_tokens"], 2048);
    assert!((body["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["role"], "user");
    assert!(
        messages[1]["content"]
            .as_str()
            .unwrap()
            .contains("- `relu`: ReLU: max(x, 0).")
    );
}

#[test]
fn prose_around_the_code_is_the_idea_and_not_the_source() {
    let reply = format!(
        "Starting from SiLU, I sharpen the gate.\n\n```rust\n{FILE}```\n\nThis should help on spirals."
    );
    let server = Server::start(move |_, _| ok(&reply));
    let h = generate(config(&server), 0).unwrap();
    assert_eq!(h.source, FILE);
    assert_eq!(
        h.idea.as_deref(),
        Some("Starting from SiLU, I sharpen the gate.")
    );
    assert_eq!(h.attempts[0].outcome, Outcome::Valid);
}

#[test]
fn a_reply_without_code_is_recorded_and_sent_back() {
    let server = Server::start(|n, _| match n {
        0 => ok("I would use x * tanh(softplus(x)); it is smooth and non-monotonic."),
        _ => ok(&format!("Here it is.\n```rust\n{FILE}```")),
    });
    let without_repair = {
        let lone = Server::start(|_, _| ok("Just an idea, no code."));
        generate(config(&lone), 0).unwrap()
    };
    assert_eq!(without_repair.source, "");
    assert_eq!(without_repair.attempts.len(), 1);
    assert_eq!(without_repair.attempts[0].outcome, Outcome::NoCode);

    let h = generate(config(&server), 1).unwrap();
    let outcomes: Vec<Outcome> = h.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::NoCode, Outcome::Valid]);
    assert_eq!(h.source, FILE);
    let second = &server.seen()[1].body["messages"];
    assert_eq!(second.as_array().unwrap().len(), 4);
    assert!(
        second[3]["content"]
            .as_str()
            .unwrap()
            .contains("contained no Rust code block")
    );
}

#[test]
fn malformed_json_is_a_clear_error_that_quotes_the_body() {
    let server = Server::start(|_, _| status(200, "{\"choices\": [ {not json"));
    let err = generate(config(&server), 0).unwrap_err();
    assert!(
        matches!(err, GenerateError::Llm(LlmError::Malformed { .. })),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("is not a chat completion"), "{message}");
    assert!(message.contains("{not json"), "{message}");
    assert_eq!(server.seen().len(), 1, "a malformed reply is not retried");
}

#[test]
fn a_429_is_retried_and_then_succeeds() {
    let server = Server::start(|n, _| match n {
        0 => Answer {
            retry_after: Some("0"),
            ..status(429, "{\"error\": {\"message\": \"Rate limit reached\"}}")
        },
        _ => ok(&format!("```rust\n{FILE}```")),
    });
    let h = generate(config(&server), 0).unwrap();
    assert_eq!(h.attempts[0].outcome, Outcome::Valid);
    assert_eq!(h.usage.requests, 2);
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn a_500_forever_gives_up_after_the_retries_with_a_clear_error() {
    let server = Server::start(|_, _| status(500, "{\"error\": \"overloaded\"}"));
    let err = generate(config(&server), 0).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            GenerateError::Llm(LlmError::GaveUp { attempts: 3, .. })
        ),
        "{err:?}"
    );
    assert!(
        message.contains("failed 3 times in a row; giving up"),
        "{message}"
    );
    assert!(
        message.contains("HTTP 500: {\"error\": \"overloaded\"}"),
        "{message}"
    );
    assert!(message.contains("http://127.0.0.1:"), "{message}");
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn a_reply_slower_than_the_timeout_is_abandoned() {
    let server = Server::start(|_, _| Answer {
        delay: Duration::from_secs(3),
        ..ok(&format!("```rust\n{FILE}```"))
    });
    let started = Instant::now();
    let err = generate(
        LlmConfig {
            timeout: Duration::from_millis(300),
            retries: 1,
            ..config(&server)
        },
        0,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no complete reply within 300ms"),
        "{message}"
    );
    assert!(message.contains("failed 2 times"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait for the slow reply"
    );
}

#[test]
fn a_compile_error_goes_back_with_the_exact_message_and_the_repair_is_kept() {
    let server = Server::start(|n, _| match n {
        0 => ok(&format!("A sharper SiLU.\n```rust\n{BROKEN}```")),
        _ => ok(&format!(
            "Fixed: constants go on the right.\n```rust\n{FILE}```"
        )),
    });
    let h = generate(config(&server), 2).unwrap();
    let outcomes: Vec<Outcome> = h.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::CompileError, Outcome::Valid]);
    assert_eq!(h.attempts[0].source.as_deref(), Some(BROKEN));
    let compiler_message = h.attempts[0].message.clone().unwrap();
    assert!(
        compiler_message.contains("cannot multiply `{float}` by `R`"),
        "{compiler_message}"
    );
    assert_eq!(h.source, FILE);
    assert_eq!(h.idea.as_deref(), Some("A sharper SiLU."));
    assert_eq!(h.usage.requests, 2);

    let repair = &server.seen()[1].body["messages"];
    let repair = repair.as_array().unwrap();
    assert_eq!(repair.len(), 4);
    assert_eq!(repair[2]["role"], "assistant");
    assert!(
        repair[2]["content"]
            .as_str()
            .unwrap()
            .contains("sigmoid(2.0 * x)")
    );
    assert_eq!(repair[3]["role"], "user");
    let sent = repair[3]["content"].as_str().unwrap();
    assert!(sent.contains("failed to compile"), "{sent}");
    assert!(
        sent.contains(&compiler_message),
        "the exact message goes back"
    );
}

#[test]
fn a_validation_failure_goes_back_and_the_attempts_stop_at_the_limit() {
    // exp overflows to infinity at 1e4: compiles, fails `forward_finite`, every time.
    let overflowing = FILE.replace("x * sigmoid(x * 2.0)", "x.exp() * x");
    let reply = format!("```rust\n{overflowing}```");
    let server = Server::start(move |_, _| ok(&reply));
    let h = generate(config(&server), 2).unwrap();
    let outcomes: Vec<Outcome> = h.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::Invalid; 3]);
    assert!(
        h.attempts[0]
            .message
            .as_deref()
            .unwrap()
            .contains("forward_finite")
    );
    let last = server.seen()[2].body["messages"].clone();
    assert!(
        last[5]["content"]
            .as_str()
            .unwrap()
            .contains("compiled but failed validation")
    );
}

#[test]
fn the_key_never_appears_in_an_error_even_when_the_server_echoes_it() {
    let server = Server::start(|_, seen| {
        status(
            401,
            &format!(
                "{{\"error\": \"bad key {}\"}}",
                seen.authorization.clone().unwrap_or_default()
            ),
        )
    });
    let err = generate(config(&server), 0).unwrap_err();
    let message = format!("{err} {err:?}");
    assert!(!message.contains(KEY), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
    assert!(
        message.contains("HTTP 401") && message.contains("OPENAI_API_KEY"),
        "{message}"
    );
    assert_eq!(server.seen().len(), 1, "a refused key is not retried");
}

#[test]
fn the_request_budget_is_a_hard_cap() {
    let server = Server::start(|_, _| status(503, "busy"));
    let mut g = LlmGenerator::new(
        LlmClient::new(
            config(&server),
            Budget {
                max_requests: Some(2),
                max_tokens: None,
            },
        ),
        ComponentKind::Activation,
        Strategy::Nep,
        &[],
        0,
    );
    let err = g.next(&mut SandboxChecker).unwrap_err();
    assert!(
        matches!(err, GenerateError::Llm(LlmError::BudgetExhausted(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("2 of 2 requests sent"), "{err}");
    assert_eq!(server.seen().len(), 2);
    assert_eq!(g.client().usage().requests, 2);
}

/// The corpus records what checking each attempt said; a seeded sample of 10 per kind is
/// checked again, for real, and must say the same (so the recorded valid share is true).
#[test]
fn recorded_verdicts_in_the_builtin_corpus_reproduce() {
    use hypoforge_generate::replay::builtin_corpus;
    use hypoforge_spec::rng::Rng;
    for kind in ComponentKind::ALL {
        let records: Vec<Hypothesis> = builtin_corpus(kind)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let valid = records
            .iter()
            .filter(|h| h.attempts.last().map(|a| a.outcome) == Some(Outcome::Valid))
            .count();
        assert!(
            valid * 10 >= records.len() * 8,
            "{kind}: {valid} of {} valid",
            records.len()
        );

        let mut attempts: Vec<(&Hypothesis, &hypoforge_generate::Attempt)> = records
            .iter()
            .flat_map(|h| h.attempts.iter().map(move |a| (h, a)))
            .collect();
        Rng::new(kind as u64).shuffle(&mut attempts);
        // Failed attempts first (the rarer verdicts), then valid ones.
        attempts.sort_by_key(|(_, a)| a.outcome == Outcome::Valid);
        for (h, attempt) in attempts.iter().take(10) {
            let source = attempt.source.as_deref().unwrap();
            let verdict = SandboxChecker.check(kind, source);
            let outcome = match verdict {
                Verdict::Valid => Outcome::Valid,
                Verdict::CompileError(_) => Outcome::CompileError,
                Verdict::Invalid(_) => Outcome::Invalid,
            };
            assert_eq!(
                outcome, attempt.outcome,
                "{kind} `{:?}`: {verdict:?}",
                h.name
            );
        }
    }
}

#[test]
fn preflight_checks_the_endpoint_and_key_without_a_paid_request() {
    // Any answer passes but a refused key: many compatible servers have no /models route.
    let server = Server::start(|_, seen| {
        if seen.path.ends_with("/models") {
            status(404, "no such route")
        } else {
            ok("never asked")
        }
    });
    let client = LlmClient::new(config(&server), Budget::default());
    client.preflight().expect("a server that answers passes");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/models");
    assert_eq!(
        client.usage(),
        Usage::default(),
        "a preflight is not a request"
    );

    let refusing = Server::start(|_, _| status(401, &format!("bad key {KEY}")));
    let err = LlmClient::new(config(&refusing), Budget::default())
        .preflight()
        .expect_err("a refused key fails")
        .to_string();
    assert!(
        err.contains("401") && err.contains("OPENAI_API_KEY"),
        "{err}"
    );
    assert!(!err.contains(KEY), "the key never appears: {err}");

    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut closed = config(&server);
    closed.base_url = format!("http://127.0.0.1:{port}/v1");
    let err = LlmClient::new(closed, Budget::default())
        .preflight()
        .expect_err("nothing listens")
        .to_string();
    assert!(err.contains("cannot reach the LLM endpoint"), "{err}");
}
