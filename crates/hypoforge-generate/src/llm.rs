//! A client for the chat-completions protocol that OpenAI, Ollama, vLLM, llama.cpp's server and
//! most hosted providers speak: retries with backoff, token accounting and a hard budget.
//!
//! The API key lives in [`ApiKey`], which never prints, and every message built from a server's
//! reply has the key scrubbed out, so no error, log line or record can carry it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default endpoint when `OPENAI_BASE_URL` is unset.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A secret. `Debug` and `Display` print a placeholder; only the request header sees the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// `None` for an empty key (treated as no key: local servers need none).
    pub fn new(key: impl Into<String>) -> Option<ApiKey> {
        let key = key.into();
        (!key.trim().is_empty()).then_some(ApiKey(key))
    }

    /// The key in the environment variable `name`, if set and non-empty.
    pub fn from_env(name: &str) -> Option<ApiKey> {
        std::env::var(name).ok().and_then(ApiKey::new)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where and how to ask.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    /// Up to and including the API version, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<ApiKey>,
    pub temperature: f32,
    /// The most tokens one reply may have.
    pub max_reply_tokens: u32,
    /// The limit on one request, connection to last byte.
    pub timeout: Duration,
    /// Retries after the first attempt, on HTTP 429 and 5xx, timeouts and connection failures.
    pub retries: u32,
    /// The first retry's delay; each later one doubles, up to [`LlmConfig::max_backoff`]. A
    /// server's `Retry-After` is honoured within the same cap.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl LlmConfig {
    /// `model` at `OPENAI_BASE_URL` (or OpenAI's) with the key in `OPENAI_API_KEY`, and defaults
    /// that suit code generation.
    pub fn from_env(model: &str) -> LlmConfig {
        LlmConfig {
            base_url: std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            model: model.to_owned(),
            api_key: ApiKey::from_env("OPENAI_API_KEY"),
            temperature: 1.0,
            max_reply_tokens: 4096,
            timeout: Duration::from_secs(120),
            retries: 5,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
        }
    }

    fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }
}

/// The base URL without any `user:password@` part, for messages and records.
pub fn display_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Hard caps for one run; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub max_requests: Option<u64>,
    /// Prompt plus completion tokens, as the server reports them.
    pub max_tokens: Option<u64>,
}

/// Requests sent (retries included) and tokens used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn add(&mut self, other: Usage) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// One answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub content: String,
    /// `length` when the reply hit the token limit.
    pub finish_reason: Option<String>,
    /// What this answer cost, retries included.
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error(
        "the LLM budget for this run is spent: {0} (raise --max-requests or --max-tokens to allow more)"
    )]
    BudgetExhausted(String),
    #[error("{url} refused the request with HTTP {status}: {body}{hint}")]
    Refused {
        url: String,
        status: u16,
        body: String,
        hint: &'static str,
    },
    #[error("{url} failed {attempts} times in a row; giving up. Last failure: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("{url} sent a reply that is not a chat completion: {detail}")]
    Malformed { url: String, detail: String },
    #[error(
        "cannot reach the LLM endpoint {url}: {detail} (check --base-url / OPENAI_BASE_URL and that the server is up)"
    )]
    Unreachable { url: String, detail: String },
}

/// A chat-completions client with its own running usage.
#[derive(Debug)]
pub struct LlmClient {
    agent: ureq::Agent,
    config: LlmConfig,
    budget: Budget,
    used: Usage,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f32,
    max_tokens: u32,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct TokenUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// What one HTTP exchange came to.
enum Exchange {
    Done(Reply),
    /// Worth another try, after at least this long.
    Retry {
        failure: String,
        after: Option<Duration>,
    },
}

impl LlmClient {
    pub fn new(config: LlmConfig, budget: Budget) -> LlmClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("hypoforge/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        LlmClient {
            agent,
            config,
            budget,
            used: Usage::default(),
        }
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Everything this client has used so far.
    pub fn usage(&self) -> Usage {
        self.used
    }

    /// Checks, before any paid request, that the endpoint answers and takes the key: one GET of
    /// `{base_url}/models`, which costs no tokens. Any HTTP answer but 401 and 403 passes (many
    /// compatible servers have no such route); no answer at all fails.
    pub fn preflight(&self) -> Result<(), LlmError> {
        let url = format!("{}/models", self.config.base_url.trim_end_matches('/'));
        let shown = display_url(&url);
        let mut request = self.agent.get(&url);
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", &format!("Bearer {}", key.0));
        }
        match request.call() {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if status == 401 || status == 403 {
                    let body = response.body_mut().read_to_string().unwrap_or_default();
                    return Err(LlmError::Refused {
                        url: shown,
                        status,
                        body: self.scrub(&snippet(&body)),
                        hint: " (check the key in OPENAI_API_KEY)",
                    });
                }
                Ok(())
            }
            Err(e) => Err(LlmError::Unreachable {
                url: shown,
                detail: self.scrub(&e.to_string()),
            }),
        }
    }

    /// Sends `messages` and returns the first choice, retrying what is worth retrying.
    pub fn chat(&mut self, messages: &[Message]) -> Result<Reply, LlmError> {
        let url = display_url(&self.config.endpoint());
        let mut spent = Usage::default();
        let mut delay = self.config.backoff;
        let attempts = self.config.retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            self.check_budget()?;
            self.used.requests += 1;
            spent.requests += 1;
            match self.exchange(messages, &url)? {
                Exchange::Done(mut reply) => {
                    self.used.prompt_tokens += reply.usage.prompt_tokens;
                    self.used.completion_tokens += reply.usage.completion_tokens;
                    spent.prompt_tokens += reply.usage.prompt_tokens;
                    spent.completion_tokens += reply.usage.completion_tokens;
                    reply.usage = spent;
                    return Ok(reply);
                }
                Exchange::Retry { failure, after } => {
                    last = failure;
                    if attempt + 1 < attempts {
                        let wait = after.unwrap_or(delay).min(self.config.max_backoff);
                        std::thread::sleep(wait);
                        delay = (delay * 2).min(self.config.max_backoff);
                    }
                }
            }
        }
        Err(LlmError::GaveUp {
            url,
            attempts,
            last,
        })
    }

    fn check_budget(&self) -> Result<(), LlmError> {
        if let Some(max) = self.budget.max_requests
            && self.used.requests >= max
        {
            return Err(LlmError::BudgetExhausted(format!(
                "{} of {max} requests sent",
                self.used.requests
            )));
        }
        if let Some(max) = self.budget.max_tokens
            && self.used.tokens() >= max
        {
            return Err(LlmError::BudgetExhausted(format!(
                "{} of {max} tokens used",
                self.used.tokens()
            )));
        }
        Ok(())
    }

    /// The reply's budget: never more tokens than the run has left.
    fn reply_tokens(&self) -> u32 {
        let left = self
            .budget
            .max_tokens
            .map_or(u64::MAX, |max| max.saturating_sub(self.used.tokens()));
        u64::from(self.config.max_reply_tokens).min(left).max(1) as u32
    }

    fn exchange(&self, messages: &[Message], url: &str) -> Result<Exchange, LlmError> {
        let body = ChatRequest {
            model: &self.config.model,
            messages,
            temperature: self.config.temperature,
            max_tokens: self.reply_tokens(),
        };
        let body = serde_json::to_string(&body).map_err(|e| LlmError::Malformed {
            url: url.to_owned(),
            detail: format!("cannot encode the request: {e}"),
        })?;
        let mut request = self
            .agent
            .post(&self.config.endpoint())
            .header("Content-Type", "application/json");
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", &format!("Bearer {}", key.0));
        }
        let mut response = match request.send(body.as_str()) {
            Ok(response) => response,
            Err(e) => return Ok(self.transport_failure(&e, "")),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match response.body_mut().read_to_string() {
            Ok(text) => text,
            Err(e) => {
                let context = format!("HTTP {status}, reading the body: ");
                return Ok(self.transport_failure(&e, &context));
            }
        };
        let snippet = self.scrub(&snippet(&text));
        if status == 429 || (500..600).contains(&status) {
            return Ok(Exchange::Retry {
                failure: format!("HTTP {status}: {snippet}"),
                after: retry_after,
            });
        }
        if !(200..300).contains(&status) {
            let hint = match status {
                401 | 403 => " (check the key in OPENAI_API_KEY)",
                404 => {
                    " (check the base URL, which should end in the API version such as /v1, and the model name)"
                }
                _ => "",
            };
            return Err(LlmError::Refused {
                url: url.to_owned(),
                status,
                body: snippet,
                hint,
            });
        }
        let parsed: ChatResponse =
            serde_json::from_str(&text).map_err(|e| LlmError::Malformed {
                url: url.to_owned(),
                detail: format!("{e}; the body begins: {snippet}"),
            })?;
        let choice = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Malformed {
                url: url.to_owned(),
                detail: "`choices` is empty".into(),
            })?;
        let usage = parsed.usage.map_or(Usage::default(), |u| Usage {
            requests: 0,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        });
        Ok(Exchange::Done(Reply {
            content: choice.message.content.unwrap_or_default(),
            finish_reason: choice.finish_reason,
            usage,
        }))
    }

    /// A request that failed in transport (a timeout, a refused or dropped connection): worth
    /// another try.
    fn transport_failure(&self, error: &ureq::Error, context: &str) -> Exchange {
        let failure = match error {
            ureq::Error::Timeout(_) => {
                format!("no complete reply within {:?}", self.config.timeout)
            }
            other => format!("{context}{}", self.scrub(&other.to_string())),
        };
        Exchange::Retry {
            failure,
            after: None,
        }
    }

    /// `text` with the API key cut out, should a server or library ever echo it.
    fn scrub(&self, text: &str) -> String {
        match &self.config.api_key {
            Some(key) => text.replace(&key.0, "<redacted>"),
            None => text.to_owned(),
        }
    }
}

/// The start of a body, for error messages.
fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_print() {
        let key = ApiKey::new("sk-secret-123").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        let config = LlmConfig {
            api_key: Some(key),
            ..LlmConfig::from_env("m")
        };
        assert!(!format!("{config:?}").contains("sk-secret-123"));
        assert!(ApiKey::new("  ").is_none());
    }

    #[test]
    fn urls_lose_their_credentials_for_display() {
        assert_eq!(
            display_url("https://user:pw@example.com:8443/v1/chat"),
            "https://example.com:8443/v1/chat"
        );
        assert_eq!(
            display_url("http://127.0.0.1:1/v1"),
            "http://127.0.0.1:1/v1"
        );
        assert_eq!(display_url("not a url"), "not a url");
    }

    #[test]
    fn the_reply_budget_never_exceeds_what_the_run_has_left() {
        let mut client = LlmClient::new(
            LlmConfig::from_env("m"),
            Budget {
                max_requests: None,
                max_tokens: Some(1000),
            },
        );
        assert_eq!(client.reply_tokens(), 1000);
        client.used.prompt_tokens = 900;
        assert_eq!(client.reply_tokens(), 100);
        client.used.completion_tokens = 200;
        assert_eq!(client.reply_tokens(), 1);
        assert!(matches!(
            client.check_budget(),
            Err(LlmError::BudgetExhausted(_))
        ));
    }
}
