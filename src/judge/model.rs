//! Calling judge models: `gateway:/NAME` endpoints from `tracebox.toml` and
//! `openai:/MODEL` through `OPENAI_BASE_URL`/`OPENAI_API_KEY`, both as
//! OpenAI-compatible chat completions (`POST {base_url}/chat/completions`)
//! over reqwest with rustls.
//!
//! Each endpoint has its own concurrency limit (a semaphore), per-call
//! timeout, retries with exponential backoff and jitter on 429/5xx/timeouts
//! (honouring `Retry-After`), and a circuit breaker: after
//! `circuit_failures` consecutive failures the endpoint is paused for
//! `circuit_open_secs` (doubling while it keeps failing), then one probe
//! call decides whether it reopens. Paused calls are not failures: the
//! runner puts their evaluations back in the queue until the pause ends.
//!
//! Knows HTTP to model providers and OpenAI's chat JSON; does not know
//! judges, prompts or storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::config::{GatewayEndpoint, JudgeSettings};

/// A resolved model: where to send chat requests and as what model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTarget {
    /// The model URI as the scorer names it (the assessment's `source_id`).
    pub uri: String,
    /// Endpoint identity for limits and circuit state.
    pub endpoint: String,
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub max_concurrency: usize,
}

/// One chat-completions request.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// (role, content) pairs.
    pub messages: Vec<(String, String)>,
    /// OpenAI `response_format`; dropped for endpoints that refuse it.
    pub response_format: Option<Value>,
    /// Merged into the request body (temperature, max_tokens, ...).
    pub inference_params: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub content: String,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The endpoint is paused (open circuit, long Retry-After): try again
    /// at `until_ms` (ms since the epoch). Not the evaluation's fault.
    #[error("endpoint {endpoint} is paused: {reason}")]
    Paused {
        endpoint: String,
        until_ms: i64,
        reason: String,
    },
    /// The call failed for good (after retries, or a permanent error).
    #[error("Failed to invoke judge model: {0}")]
    Failed(String),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Circuit-breaker state of one endpoint.
#[derive(Debug, Default)]
struct Circuit {
    consecutive_failures: u32,
    /// Paused until then.
    open_until: Option<Instant>,
    /// How many times in a row it opened (the pause doubles each time).
    openings: u32,
    /// A half-open probe is in flight (since then); other calls wait. A
    /// probe older than a few timeouts is presumed lost (its task was
    /// cancelled) and another call may probe.
    probing: Option<Instant>,
    last_error: Option<String>,
}

struct Endpoint {
    key: String,
    sem: Arc<Semaphore>,
    limit: usize,
    circuit: parking_lot::Mutex<Circuit>,
    /// Learned from a 400: this endpoint rejects `response_format`.
    no_response_format: AtomicBool,
}

/// Where an endpoint's circuit stands, for the status API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    pub paused_until_ms: Option<i64>,
    pub consecutive_failures: u32,
    pub in_flight: usize,
    pub max_concurrency: usize,
    pub last_error: Option<String>,
}

/// How a single HTTP attempt went.
enum Attempt {
    Ok(ChatReply),
    /// Worth retrying; `retry_after` from the server if it said.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The endpoint refused `response_format` (400): retry without it.
    NoResponseFormat,
    /// Will not get better by retrying; `counts` when it says the endpoint
    /// itself is broken (bad key, wrong URL) and should trip the circuit.
    Permanent {
        message: String,
        counts: bool,
    },
}

/// Calls that wait longer than this for a retry are handed back to the
/// queue instead of holding an evaluation slot.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const MAX_PAUSE: Duration = Duration::from_secs(600);

/// All judge model endpoints; cheap to share behind an `Arc`.
pub struct Models {
    http: reqwest::Client,
    settings: JudgeSettings,
    gateways: BTreeMap<String, GatewayEndpoint>,
    /// Environment read once at start-up (`OPENAI_*`, `api_key_env` vars).
    env: HashMap<String, String>,
    endpoints: parking_lot::Mutex<HashMap<String, Arc<Endpoint>>>,
}

impl Models {
    /// `env` is consulted for `OPENAI_BASE_URL`, `OPENAI_API_KEY` and each
    /// gateway's `api_key_env` (the process environment in production).
    pub fn new(
        settings: JudgeSettings,
        gateways: BTreeMap<String, GatewayEndpoint>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Models {
        let mut wanted = vec!["OPENAI_BASE_URL".to_string(), "OPENAI_API_KEY".to_string()];
        wanted.extend(gateways.values().filter_map(|g| g.api_key_env.clone()));
        let env = wanted
            .into_iter()
            .filter_map(|k| env(&k).filter(|v| !v.is_empty()).map(|v| (k, v)))
            .collect();
        let http = reqwest::Client::builder()
            .user_agent(concat!("tracebox/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Models {
            http,
            settings,
            gateways,
            env,
            endpoints: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &JudgeSettings {
        &self.settings
    }

    /// The model used when a scorer names none.
    pub fn default_model(&self) -> String {
        self.settings
            .default_model
            .clone()
            .unwrap_or_else(|| super::spec::MLFLOW_DEFAULT_MODEL.to_string())
    }

    /// Resolves a model URI; `Err` says why the judge is misconfigured.
    pub fn resolve(&self, uri: Option<&str>) -> Result<ModelTarget, String> {
        let uri = uri
            .map(str::to_string)
            .unwrap_or_else(|| self.default_model());
        let (provider, name) = match uri.split_once(":/") {
            Some((p, n)) if !p.is_empty() && !n.trim_start_matches('/').is_empty() => {
                (p.to_string(), n.trim_start_matches('/').to_string())
            }
            _ => {
                return Err(format!(
                    "model '{uri}' is not supported by tracebox: use gateway:/NAME (an endpoint in \
                     tracebox.toml) or openai:/MODEL"
                ));
            }
        };
        let timeout = |t: Option<f64>| {
            Duration::from_secs_f64(t.unwrap_or(self.settings.request_timeout_secs).max(0.001))
        };
        match provider.as_str() {
            "gateway" => {
                let g = self.gateways.get(&name).ok_or_else(|| {
                    format!(
                        "gateway endpoint '{name}' is not configured: add [gateway.{name}] with \
                         base_url and model to tracebox.toml"
                    )
                })?;
                let api_key = match &g.api_key_env {
                    Some(var) => Some(self.env.get(var).cloned().ok_or_else(|| {
                        format!(
                            "environment variable {var} (api_key_env of [gateway.{name}]) is not set"
                        )
                    })?),
                    None => None,
                };
                Ok(ModelTarget {
                    uri: uri.clone(),
                    endpoint: format!("gateway:/{name}"),
                    url: format!("{}/chat/completions", g.base_url.trim_end_matches('/')),
                    model: g.model.clone(),
                    api_key,
                    timeout: timeout(g.timeout_secs),
                    max_concurrency: g
                        .max_concurrency
                        .unwrap_or(self.settings.max_concurrency)
                        .max(1),
                })
            }
            "openai" => {
                let api_key = self.env.get("OPENAI_API_KEY").cloned().ok_or_else(|| {
                    "OPENAI_API_KEY is not set in tracebox's environment".to_string()
                })?;
                let base = self
                    .env
                    .get("OPENAI_BASE_URL")
                    .cloned()
                    .unwrap_or_else(|| "https://api.openai.com/v1".to_string());
                Ok(ModelTarget {
                    uri: uri.clone(),
                    endpoint: format!("openai:{}", base.trim_end_matches('/')),
                    url: format!("{}/chat/completions", base.trim_end_matches('/')),
                    model: name,
                    api_key: Some(api_key),
                    timeout: timeout(None),
                    max_concurrency: self.settings.max_concurrency.max(1),
                })
            }
            other => Err(format!(
                "model provider '{other}' is not supported by tracebox: use gateway:/NAME (an \
                 OpenAI-compatible endpoint in tracebox.toml) or openai:/MODEL"
            )),
        }
    }

    fn endpoint(&self, t: &ModelTarget) -> Arc<Endpoint> {
        self.endpoints
            .lock()
            .entry(t.endpoint.clone())
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    key: t.endpoint.clone(),
                    sem: Arc::new(Semaphore::new(t.max_concurrency)),
                    limit: t.max_concurrency,
                    circuit: parking_lot::Mutex::new(Circuit::default()),
                    no_response_format: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Circuit state of every endpoint used so far.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let now = Instant::now();
        let mut out: Vec<EndpointStatus> = self
            .endpoints
            .lock()
            .values()
            .map(|e| {
                let c = e.circuit.lock();
                let (state, until) = match c.open_until {
                    Some(u) if u > now => ("open", Some(now_ms() + (u - now).as_millis() as i64)),
                    Some(_) => ("half_open", None),
                    None => ("closed", None),
                };
                EndpointStatus {
                    endpoint: e.key.clone(),
                    circuit: state,
                    paused_until_ms: until,
                    consecutive_failures: c.consecutive_failures,
                    in_flight: e.limit - e.sem.available_permits(),
                    max_concurrency: e.limit,
                    last_error: c.last_error.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }

    /// Sends one chat request with the endpoint's limits, retries and
    /// circuit breaker.
    pub async fn chat(&self, t: &ModelTarget, req: &ChatRequest) -> Result<ChatReply, ModelError> {
        let ep = self.endpoint(t);
        let mut retries = 0u32;
        loop {
            // The circuit is checked after waiting for a slot, so calls
            // queued behind the limit do not go out once it has opened.
            let permit = ep.sem.clone().acquire_owned().await;
            let probe = self.enter(&ep, t.timeout)?;
            let with_rf =
                req.response_format.is_some() && !ep.no_response_format.load(Ordering::Relaxed);
            let attempt = self.attempt(t, req, with_rf).await;
            drop(permit);
            match attempt {
                Attempt::Ok(reply) => {
                    let mut c = ep.circuit.lock();
                    *c = Circuit::default();
                    return Ok(reply);
                }
                Attempt::NoResponseFormat if with_rf => {
                    tracing::info!(endpoint = %ep.key, "endpoint rejects response_format; retrying without it");
                    ep.no_response_format.store(true, Ordering::Relaxed);
                    if probe {
                        ep.circuit.lock().probing = None;
                    }
                }
                Attempt::NoResponseFormat => {
                    self.failure(&ep, probe, "400 Bad Request".into(), false);
                    return Err(ModelError::Failed(
                        "the endpoint answered 400 Bad Request".into(),
                    ));
                }
                Attempt::Permanent { message, counts } => {
                    self.failure(&ep, probe, message.clone(), counts);
                    return Err(ModelError::Failed(message));
                }
                Attempt::Transient {
                    message,
                    retry_after,
                } => {
                    if let Some(paused) = self.failure(&ep, probe, message.clone(), true) {
                        return Err(paused);
                    }
                    retries += 1;
                    if retries > self.settings.max_retries {
                        return Err(ModelError::Failed(format!(
                            "{message} (gave up after {} attempts)",
                            retries
                        )));
                    }
                    let delay = retry_after.unwrap_or_else(|| self.backoff(retries));
                    if delay > MAX_INLINE_WAIT {
                        return Err(ModelError::Paused {
                            endpoint: ep.key.clone(),
                            until_ms: now_ms() + delay.as_millis() as i64,
                            reason: format!("{message}; Retry-After {}s", delay.as_secs()),
                        });
                    }
                    tracing::debug!(endpoint = %ep.key, retries, ?delay, %message, "retrying judge call");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Admits a call through the circuit. `Ok(true)` when this call is the
    /// half-open probe.
    fn enter(&self, ep: &Endpoint, timeout: Duration) -> Result<bool, ModelError> {
        let mut c = ep.circuit.lock();
        let now = Instant::now();
        match c.open_until {
            None => Ok(false),
            Some(until) if until > now => Err(ModelError::Paused {
                endpoint: ep.key.clone(),
                until_ms: now_ms() + (until - now).as_millis() as i64,
                reason: format!(
                    "circuit open after {} consecutive failures (last: {})",
                    c.consecutive_failures,
                    c.last_error.as_deref().unwrap_or("?")
                ),
            }),
            Some(_)
                if c.probing
                    .is_some_and(|p| p.elapsed() < timeout.saturating_mul(3)) =>
            {
                Err(ModelError::Paused {
                    endpoint: ep.key.clone(),
                    until_ms: now_ms() + 1000,
                    reason: "waiting for the probe call to a recovering endpoint".into(),
                })
            }
            Some(_) => {
                c.probing = Some(Instant::now());
                Ok(true)
            }
        }
    }

    /// Records a failed attempt; returns `Paused` if it opened the circuit.
    fn failure(
        &self,
        ep: &Endpoint,
        probe: bool,
        message: String,
        counts: bool,
    ) -> Option<ModelError> {
        let mut c = ep.circuit.lock();
        c.last_error = Some(message.clone());
        if probe {
            c.probing = None;
        }
        if !counts {
            return None;
        }
        c.consecutive_failures += 1;
        let threshold = self.settings.circuit_failures.max(1);
        if probe || c.consecutive_failures >= threshold {
            let base = Duration::from_secs_f64(self.settings.circuit_open_secs.max(0.0));
            let pause = base
                .saturating_mul(2u32.saturating_pow(c.openings.min(16)))
                .min(MAX_PAUSE);
            c.openings += 1;
            c.open_until = Some(Instant::now() + pause);
            tracing::warn!(endpoint = %ep.key, failures = c.consecutive_failures, ?pause, %message,
                "judge endpoint keeps failing; pausing it");
            return Some(ModelError::Paused {
                endpoint: ep.key.clone(),
                until_ms: now_ms() + pause.as_millis() as i64,
                reason: format!("circuit opened: {message}"),
            });
        }
        None
    }

    /// Exponential backoff with jitter: half the delay fixed, half random.
    fn backoff(&self, retry: u32) -> Duration {
        let base = Duration::from_secs_f64(self.settings.retry_base_secs.max(0.0));
        let d = base
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1).min(16)))
            .min(MAX_BACKOFF);
        d / 2 + d.mul_f64(fastrand::f64() / 2.0)
    }

    async fn attempt(&self, t: &ModelTarget, req: &ChatRequest, with_rf: bool) -> Attempt {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        let mut body = json!({"model": t.model, "messages": messages});
        if with_rf && let Some(rf) = &req.response_format {
            body["response_format"] = rf.clone();
        }
        if let Some(p) = &req.inference_params
            && let Value::Object(b) = &mut body
        {
            for (k, v) in p {
                b.insert(k.clone(), v.clone());
            }
        }
        let mut rb = self.http.post(&t.url).timeout(t.timeout).json(&body);
        if let Some(k) = &t.api_key {
            rb = rb.bearer_auth(k);
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("no answer from {} within {:?}", t.url, t.timeout)
                } else {
                    format!("cannot reach {}: {e}", t.url)
                };
                return Attempt::Transient {
                    message: what,
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Transient {
                    message: format!("reading the answer failed: {e}"),
                    retry_after: None,
                };
            }
        };
        classify(status, retry_after, &text)
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

fn error_message(status: StatusCode, text: &str) -> String {
    let detail = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
        })
        .unwrap_or_else(|| text.chars().take(500).collect());
    format!("{status}: {detail}")
}

fn classify(status: StatusCode, retry_after: Option<Duration>, text: &str) -> Attempt {
    if status.is_success() {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                return Attempt::Permanent {
                    message: format!(
                        "the endpoint answered {status} with a body that is not JSON: {}",
                        text.chars().take(500).collect::<String>()
                    ),
                    counts: false,
                };
            }
        };
        let content = v
            .pointer("/choices/0/message/content")
            .and_then(|c| match c {
                Value::String(s) => Some(s.clone()),
                Value::Array(parts) => Some(crate::domain::chat::content_text(&Value::Array(
                    parts.clone(),
                ))),
                _ => None,
            });
        return match content {
            Some(content) => Attempt::Ok(ChatReply {
                content,
                input_tokens: v.pointer("/usage/prompt_tokens").and_then(Value::as_i64),
                output_tokens: v
                    .pointer("/usage/completion_tokens")
                    .and_then(Value::as_i64),
            }),
            None => Attempt::Permanent {
                message: format!(
                    "the answer has no choices[0].message.content: {}",
                    text.chars().take(500).collect::<String>()
                ),
                counts: false,
            },
        };
    }
    let message = error_message(status, text);
    match status.as_u16() {
        408 | 409 | 425 | 429 | 500..=599 => Attempt::Transient {
            message,
            retry_after,
        },
        400 if {
            let t = text.to_ascii_lowercase();
            t.contains("response_format") || t.contains("json_schema")
        } =>
        {
            Attempt::NoResponseFormat
        }
        401 | 403 | 404 => Attempt::Permanent {
            message,
            counts: true,
        },
        _ => Attempt::Permanent {
            message,
            counts: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(gw: &[(&str, &str)], env: &[(&str, &str)]) -> Models {
        let gateways = gw
            .iter()
            .map(|(n, url)| {
                (
                    n.to_string(),
                    GatewayEndpoint {
                        base_url: url.to_string(),
                        model: "m".into(),
                        api_key_env: None,
                        max_concurrency: None,
                        timeout_secs: None,
                    },
                )
            })
            .collect();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Models::new(JudgeSettings::default(), gateways, move |k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn resolves_gateways_and_openai() {
        let m = models(
            &[("judge", "http://127.0.0.1:9/v1/")],
            &[("OPENAI_API_KEY", "k")],
        );
        let t = m.resolve(Some("gateway:/judge")).unwrap();
        assert_eq!(t.url, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(t.model, "m");
        let e = m.resolve(Some("gateway:/nope")).unwrap_err();
        assert!(e.contains("[gateway.nope]"), "{e}");
        let t = m.resolve(Some("openai:/gpt-4o-mini")).unwrap();
        assert_eq!(t.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(t.model, "gpt-4o-mini");
        assert_eq!(t.api_key.as_deref(), Some("k"));
        // The default model is MLflow's.
        assert_eq!(m.resolve(None).unwrap().model, "gpt-4.1-mini");
        assert!(
            m.resolve(Some("anthropic:/claude"))
                .unwrap_err()
                .contains("anthropic")
        );
        assert!(m.resolve(Some("databricks")).is_err());
        let no_key = models(&[], &[]);
        assert!(
            no_key
                .resolve(Some("openai:/x"))
                .unwrap_err()
                .contains("OPENAI_API_KEY")
        );
    }

    #[test]
    fn classifies_answers() {
        let ok = classify(
            StatusCode::OK,
            None,
            r#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        );
        assert!(
            matches!(ok, Attempt::Ok(ChatReply { ref content, input_tokens: Some(3), .. }) if content == "hi")
        );
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(2)),
                "{}"
            ),
            Attempt::Transient {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, None, "oops"),
            Attempt::Transient { .. }
        ));
        assert!(matches!(
            classify(
                StatusCode::BAD_REQUEST,
                None,
                r#"{"error":{"message":"response_format is not supported"}}"#
            ),
            Attempt::NoResponseFormat
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, None, r#"{"error":{"message":"bad key"}}"#),
            Attempt::Permanent { counts: true, ref message } if message.contains("bad key")
        ));
    }
}
