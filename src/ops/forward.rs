//! `--forward-otlp URL`: tees every span tracebox accepts to an upstream
//! OTLP/HTTP endpoint (an OpenTelemetry Collector, another tracebox, an
//! MLflow server, ...).
//!
//! The outbox is the spans table itself: span row ids are AUTOINCREMENT and
//! grow in commit order, so a cursor (the last row id the upstream
//! accepted, kept in the store's `ops_state`, one per URL) marks exactly
//! what is left to send. Nothing extra is written on the ingestion path,
//! nothing is lost when the upstream is down (spans wait in SQLite) or when
//! tracebox restarts (the cursor is committed only after the upstream said
//! yes). Delivery is at least once: a crash between the upstream's answer
//! and the cursor's commit re-sends one batch, which OTLP backends
//! (tracebox included) de-duplicate by span id.
//!
//! Spans only: trace info that MLflow clients send separately (tags,
//! metadata, assessments) has no place in OTLP. Spans deleted before they
//! were sent (retention, delete-traces) are skipped. When forwarding is
//! switched on (or pointed at a new URL) it starts with the spans accepted
//! from then on.

use std::time::Duration;

use axum::http::StatusCode;
use prost::Message;
use tokio::sync::watch;

use crate::api::otlp::encode;
use crate::app::AppState;
use crate::domain::now_ms;
use crate::store::Store;

/// Spans per request at most.
const MAX_BATCH_SPANS: usize = 512;
/// Encoded bytes per request at most (collectors default to 4 MiB gRPC
/// messages and similar HTTP limits).
const MAX_BATCH_BYTES: usize = 4 << 20;
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Idle re-check period, in case a commit notification was missed.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// What the forwarder reports on the status endpoint.
#[derive(Debug, Clone, Default)]
pub struct ForwardStatus {
    pub url: String,
    /// Last span row id the upstream accepted.
    pub cursor: i64,
    /// Spans committed after the cursor.
    pub backlog: i64,
    pub forwarded_spans: u64,
    pub dropped_spans: u64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// The cursor's key in `ops_state`.
pub fn cursor_key(url: &str) -> String {
    format!("forward.cursor {url}")
}

/// A base URL (no path) gets the standard OTLP/HTTP traces path.
pub fn traces_url(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match rest.find('/') {
        None => format!("{url}/v1/traces"),
        Some(i) if rest[i..] == *"/" => format!("{}v1/traces", url),
        Some(_) => url.to_string(),
    }
}

enum Outcome {
    Accepted {
        rejected: u64,
        message: String,
    },
    /// Worth retrying later (upstream down, overloaded, misconfigured).
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// The batch is too big for the upstream.
    TooLarge,
    /// The upstream says the data itself is invalid; retrying cannot help.
    Invalid {
        message: String,
    },
}

pub struct Forwarder {
    state: AppState,
    url: String,
    headers: Vec<(String, String)>,
    http: reqwest::Client,
    /// Row id to start from when no cursor is stored for this URL: the
    /// newest span at start-up, read before the server accepted anything.
    start_cursor: i64,
}

impl Forwarder {
    /// The forwarder `App::start` prepared, if `--forward-otlp` is set.
    pub fn from_state(state: &AppState) -> Option<Forwarder> {
        let url = state.config.forward_otlp.as_ref()?;
        let start_cursor = state.ops.forward.lock().as_ref().map_or(0, |s| s.cursor);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .ok()?;
        Some(Forwarder {
            state: state.clone(),
            url: traces_url(url),
            headers: state.config.ops.forward_headers.clone(),
            http,
            start_cursor,
        })
    }

    /// Records where forwarding starts; called at start-up before serving,
    /// so no span accepted from now on can fall before the cursor.
    pub fn prepare(store: &Store, url: &str) -> crate::store::Result<ForwardStatus> {
        let url = traces_url(url);
        let key = cursor_key(&url);
        let (stored, max) = store.read_blocking(|c| {
            Ok((
                crate::store::maintenance::get_state(c, &key)?,
                crate::store::maintenance::max_span_id(c)?,
            ))
        })?;
        let cursor = stored.and_then(|s| s.parse().ok()).unwrap_or(max);
        Ok(ForwardStatus {
            url,
            cursor,
            backlog: max - cursor,
            ..ForwardStatus::default()
        })
    }

    fn update(&self, f: impl FnOnce(&mut ForwardStatus)) {
        let mut g = self.state.ops.forward.lock();
        let s = g.get_or_insert_with(|| ForwardStatus {
            url: self.url.clone(),
            ..ForwardStatus::default()
        });
        f(s);
        self.state.metrics.forward_backlog_spans.set(s.backlog);
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let store = self.state.store.clone();
        let key = cursor_key(&self.url);
        let mut cursor = match store.get_state(key.clone()).await {
            Ok(Some(v)) => v.parse().unwrap_or(self.start_cursor),
            _ => self.start_cursor,
        };
        if let Err(e) = store.set_state(key.clone(), cursor.to_string()).await {
            tracing::warn!(error = %e, "could not record the forwarding cursor yet");
        }
        tracing::info!(url = %self.url, cursor, "forwarding spans over OTLP/HTTP");
        let mut commits = store.commits();
        let mut limit = MAX_BATCH_SPANS;
        let mut backoff = Duration::from_secs(1);
        loop {
            if *stop.borrow() {
                return;
            }
            let spans = match store.spans_after(cursor, limit).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "forwarding: reading spans failed");
                    if super::sleep_or_stop(backoff, &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            let max = store.max_span_id().await.unwrap_or(cursor);
            self.update(|s| {
                s.cursor = cursor;
                s.backlog = (max - cursor).max(0);
            });
            let Some(last) = spans.last().map(|s| s.row_id) else {
                commits.borrow_and_update();
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let body = encode::export_request(spans.iter().map(|s| (s.experiment_id, &s.span)))
                .encode_to_vec();
            if body.len() > MAX_BATCH_BYTES && spans.len() > 1 {
                limit = (spans.len() / 2).max(1);
                continue;
            }
            let n = spans.len() as u64;
            let advance = match self.send(body).await {
                Outcome::Accepted { rejected, message } => {
                    if rejected > 0 {
                        tracing::warn!(rejected, %message, "upstream rejected some forwarded spans");
                    }
                    let ok = n.saturating_sub(rejected);
                    self.state.metrics.forward_spans.inc_by(ok);
                    self.state.metrics.forward_dropped_spans.inc_by(rejected);
                    self.update(|s| {
                        s.forwarded_spans += ok;
                        s.dropped_spans += rejected;
                        s.last_success_ms = Some(now_ms());
                    });
                    backoff = Duration::from_secs(1);
                    limit = MAX_BATCH_SPANS;
                    true
                }
                Outcome::TooLarge if spans.len() > 1 => {
                    limit = (spans.len() / 2).max(1);
                    false
                }
                refused @ (Outcome::TooLarge | Outcome::Invalid { .. }) => {
                    let message = match refused {
                        Outcome::Invalid { message } => message,
                        _ => "HTTP 413: one span is larger than the upstream accepts".into(),
                    };
                    tracing::error!(spans = n, url = %self.url, %message, "upstream refused spans permanently; skipping them");
                    self.state.metrics.forward_dropped_spans.inc_by(n);
                    self.update(|s| {
                        s.dropped_spans += n;
                        s.last_error = Some(message);
                        s.last_error_ms = Some(now_ms());
                    });
                    true
                }
                Outcome::Retry { message, after } => {
                    self.state.metrics.forward_failures.inc();
                    tracing::warn!(url = %self.url, error = %message, retry_in_s = after.unwrap_or(backoff).as_secs_f64(), "forwarding failed; will retry");
                    self.update(|s| {
                        s.last_error = Some(message);
                        s.last_error_ms = Some(now_ms());
                    });
                    let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if super::sleep_or_stop(wait, &mut stop).await {
                        return;
                    }
                    false
                }
            };
            if advance {
                // Commit the cursor before moving on: after a crash at most
                // this one batch is sent again.
                loop {
                    match store.set_state(key.clone(), last.to_string()).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not record the forwarding cursor; retrying");
                            if super::sleep_or_stop(backoff, &mut stop).await {
                                return;
                            }
                        }
                    }
                }
                cursor = last;
            }
        }
    }

    async fn send(&self, body: Vec<u8>) -> Outcome {
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            match e.write_all(&body).and_then(|_| e.finish()) {
                Ok(v) => v,
                Err(e) => {
                    return Outcome::Retry {
                        message: format!("compressing: {e}"),
                        after: None,
                    };
                }
            }
        };
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(gz);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    message: format!("cannot reach {}: {e}", self.url),
                    after: None,
                };
            }
        };
        let status = resp.status();
        let after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.unwrap_or_default();
        let text = || String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
        if status.is_success() {
            let (rejected, message) = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(&bytes[..])
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_spans.max(0) as u64, p.error_message))
                .unwrap_or_default();
            return Outcome::Accepted { rejected, message };
        }
        match StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY) {
            StatusCode::PAYLOAD_TOO_LARGE => Outcome::TooLarge,
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Outcome::Invalid {
                message: format!("HTTP {status}: {}", text()),
            },
            // Everything else (5xx, 429, and 401/403/404 from a
            // misconfigured URL or token) is retried: an operator can fix
            // it, and dropping the data would be worse than waiting.
            _ => Outcome::Retry {
                message: format!("HTTP {status} from {}: {}", self.url, text()),
                after,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_the_traces_path() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://x/otlp/v1/traces"),
            "https://x/otlp/v1/traces"
        );
    }
}
