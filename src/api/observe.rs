//! Per-request observability, as one middleware around every route: a
//! request id (the client's `x-request-id` when it sends a sane one, else a
//! new one, echoed in the response), a `tracing` span carrying it so every
//! log line of the request names it, a log line for each failed request
//! (status, reason, message, latency), response counters, refusals of
//! ingestion requests by reason, and latency histograms of the read routes.
//!
//! Knows routes and statuses; not what handlers do.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::error::{ErrorInfo, reason_for_status};
use crate::app::AppState;

pub const REQUEST_ID: &str = "x-request-id";

fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
}

/// Routes that store client data: their refusals are counted by reason.
pub fn is_ingest(method: &Method, route: &str) -> bool {
    match *method {
        Method::POST => {
            route == "/v1/traces"
                || route == "/api/3.0/mlflow/traces"
                || route.ends_with("/assessments")
        }
        Method::PUT => route.starts_with("/api/2.0/mlflow-artifacts/artifacts/"),
        _ => false,
    }
}

/// Read routes whose latency is recorded, labelled by route template.
pub fn query_route(method: &Method, route: &str) -> bool {
    let reads = [
        "/traces/search",
        "/traces/get",
        "/traces/batchGet",
        "/traces/batchGetInfos",
        "/experiments/search",
    ];
    reads.iter().any(|r| route.ends_with(r))
        || (*method == Method::GET && route.ends_with("/traces/{trace_id}"))
        || (*method == Method::GET && route.starts_with("/api/tracebox/"))
}

pub async fn observe(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let secs = started.elapsed().as_secs_f64();
    let status = resp.status();
    app.metrics.record_status(status.as_u16());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    if status.is_success() && query_route(&method, &route) {
        app.metrics.observe_query(&route, secs);
    }
    if status.as_u16() >= 400 {
        let (reason, message) = match resp.extensions().get::<ErrorInfo>() {
            Some(i) => (i.reason, i.message.as_str()),
            None => (reason_for_status(status), ""),
        };
        if is_ingest(&method, &route) {
            app.metrics.record_reject_reason(reason);
        }
        let ms = (secs * 1000.0) as u64;
        let _g = span.enter();
        let code = status.as_u16();
        match code {
            500..=502 | 504.. => {
                tracing::error!(
                    status = code,
                    reason,
                    error = message,
                    elapsed_ms = ms,
                    "request failed"
                )
            }
            503 => tracing::warn!(
                status = code,
                reason,
                error = message,
                elapsed_ms = ms,
                "request refused"
            ),
            _ => tracing::info!(
                status = code,
                reason,
                error = message,
                elapsed_ms = ms,
                "request rejected"
            ),
        }
    } else {
        let _g = span.enter();
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = (secs * 1000.0) as u64,
            "request"
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_routes() {
        assert!(is_ingest(&Method::POST, "/v1/traces"));
        assert!(is_ingest(&Method::POST, "/api/3.0/mlflow/traces"));
        assert!(!is_ingest(&Method::POST, "/api/3.0/mlflow/traces/search"));
        assert!(query_route(&Method::POST, "/api/3.0/mlflow/traces/search"));
        assert!(query_route(
            &Method::GET,
            "/api/3.0/mlflow/traces/{trace_id}"
        ));
        assert!(!query_route(&Method::POST, "/v1/traces"));
    }
}
