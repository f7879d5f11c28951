//! A real HTTP server on 127.0.0.1 that speaks the chat-completions protocol, scripted per
//! test. Shared by this crate's tests and the CLI's (`#[path]`).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// What the server answers to one request.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub retry_after: Option<&'static str>,
}

pub fn ok(content: &str) -> Answer {
    Answer {
        status: 200,
        body: json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 120, "completion_tokens": 80, "total_tokens": 200}
        })
        .to_string(),
        delay: Duration::ZERO,
        retry_after: None,
    }
}

pub fn status(code: u16, body: &str) -> Answer {
    Answer {
        status: code,
        body: body.to_owned(),
        delay: Duration::ZERO,
        retry_after: None,
    }
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

pub struct Server {
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Serves on an ephemeral port; `script(n, request)` answers the n-th request (from 0).
    pub fn start(script: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static) -> Server {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let script = Arc::new(script);
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = String::new();
                std::io::Read::read_to_string(request.as_reader(), &mut body)
                    .expect("a UTF-8 request body");
                let authorization = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.as_str().to_owned());
                let entry = Seen {
                    path: request.url().to_owned(),
                    authorization,
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                };
                let n = {
                    let mut log = log.lock().expect("the log lock");
                    log.push(entry.clone());
                    log.len() - 1
                };
                let script = Arc::clone(&script);
                // One thread per request, so that a slow answer does not hold up the next.
                std::thread::spawn(move || {
                    let answer = script(n, &entry);
                    std::thread::sleep(answer.delay);
                    let mut response = tiny_http::Response::from_string(answer.body)
                        .with_status_code(answer.status)
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", "application/json")
                                .expect("a valid header"),
                        );
                    if let Some(after) = answer.retry_after {
                        response = response.with_header(
                            tiny_http::Header::from_bytes("Retry-After", after)
                                .expect("a valid header"),
                        );
                    }
                    // The client may have given up already; that is the point of some tests.
                    let _ = request.respond(response);
                });
            }
        });
        Server {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("the log lock").clone()
    }
}
