#![allow(dead_code)] // shared helpers; not every test uses every one
//! A fake OpenAI-compatible chat-completions server on loopback, scripted
//! by the tests: verdicts, malformed output, 429 with Retry-After, 500s and
//! slow answers. It records every request it receives.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `{"result": .., "rationale": ..}` as the message content.
    Verdict(Value, String),
    /// Any message content (malformed output, fenced JSON, prose).
    Content(String),
    /// An HTTP error with an optional Retry-After header.
    Status(u16, Option<String>),
    /// Wait, then answer.
    Slow(Duration, Box<Reply>),
}

/// A received request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub body: Value,
    pub auth: Option<String>,
}

impl Seen {
    /// All message contents joined (what the judge was shown).
    pub fn prompt(&self) -> String {
        self.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

type Decide = Box<dyn Fn(&Value) -> Reply + Send + Sync>;

struct Inner {
    script: parking_lot::Mutex<VecDeque<Reply>>,
    default: parking_lot::Mutex<Decide>,
    seen: parking_lot::Mutex<Vec<Seen>>,
}

#[derive(Clone)]
pub struct FakeLlm {
    pub base_url: String,
    inner: Arc<Inner>,
}

/// The default judge: "no" when the prompt mentions RUDE, else "yes".
pub fn rude_is_no(body: &Value) -> Reply {
    let text = body.to_string();
    if text.contains("RUDE") {
        Reply::Verdict(
            json!("no"),
            "Let's think step by step. The answer is rude.".into(),
        )
    } else {
        Reply::Verdict(
            json!("yes"),
            "Let's think step by step. The answer is polite.".into(),
        )
    }
}

impl FakeLlm {
    pub async fn start() -> FakeLlm {
        let inner = Arc::new(Inner {
            script: parking_lot::Mutex::new(VecDeque::new()),
            default: parking_lot::Mutex::new(Box::new(rude_is_no)),
            seen: parking_lot::Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLlm {
            base_url: format!("http://{addr}/v1"),
            inner,
        }
    }

    /// Answers to give, in order, before the default decides.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.script.lock().extend(replies);
    }

    pub fn set_default(&self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        *self.inner.default.lock() = Box::new(f);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().clone()
    }

    pub fn count(&self) -> usize {
        self.inner.seen.lock().len()
    }
}

fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "model": "fake-judge",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
}

fn respond(reply: Reply) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
    Box::pin(async move {
        match reply {
            Reply::Verdict(result, rationale) => {
                let content = json!({"rationale": rationale, "result": result}).to_string();
                Json(completion(&content)).into_response()
            }
            Reply::Content(c) => Json(completion(&c)).into_response(),
            Reply::Status(code, retry_after) => {
                let mut r = (
                    StatusCode::from_u16(code).unwrap(),
                    Json(json!({"error": {"message": format!("scripted {code}")}})),
                )
                    .into_response();
                if let Some(ra) = retry_after {
                    r.headers_mut().insert("retry-after", ra.parse().unwrap());
                }
                r
            }
            Reply::Slow(d, inner) => {
                tokio::time::sleep(d).await;
                respond(*inner).await
            }
        }
    })
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    inner.seen.lock().push(Seen {
        at: Instant::now(),
        body: body.clone(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let scripted = inner.script.lock().pop_front();
    let reply = match scripted {
        Some(r) => r,
        None => (inner.default.lock())(&body),
    };
    respond(reply).await
}
