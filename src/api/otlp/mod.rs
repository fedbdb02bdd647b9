//! OTLP trace ingestion: `POST /v1/traces` over HTTP (protobuf or JSON,
//! optionally gzip/deflate-compressed) and, in `grpc`, the gRPC
//! `TraceService`, both per the OTLP specification.
//!
//! Decoding uses the generated OTLP types from `opentelemetry-proto`; the
//! spans are mapped to tracebox's model by `domain::semconv`. Decoding,
//! conventions and row encoding are CPU work done on a blocking thread; the
//! answer is sent only after the store committed (a 200 means durable).
//! Errors are MLflow-shaped JSON (`{"error_code", "message"}`) with the
//! status codes OTLP clients act on: 400 for bad data (not retried), 413 for
//! oversize, 404 for an unknown experiment, 503 + Retry-After under overload
//! (retried).

pub mod encode;
pub mod grpc;

use std::collections::HashMap;
use std::io::Read;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtlpStatus;
use prost::Message;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::RawBody;
use crate::app::AppState;
use crate::config::Limits;
use crate::domain::semconv::{self, RawSpan, TraceHints};
use crate::domain::{OtelSpanId, OtelTraceId, SpanBatch, SpanEvent, SpanStatusCode};
use crate::store::PreparedBatch;
use crate::store::payload::Codec;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/traces", post(export))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// The request's encoding from its `Content-Type` (parameters ignored).
pub fn content_encoding(headers: &HeaderMap) -> ApiResult<Encoding> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        "" => Err(ApiError::bad_request(
            "missing Content-Type: OTLP/HTTP needs application/x-protobuf or application/json",
        )),
        other => Err(ApiError::bad_request(format!(
            "unsupported Content-Type '{other}': OTLP/HTTP needs application/x-protobuf or application/json"
        ))),
    }
}

/// Undoes `Content-Encoding: gzip|deflate`, never inflating past `limit`
/// (a gzip bomb is a 413, not an out-of-memory).
pub fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> ApiResult<Bytes> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let read = match enc.as_str() {
        "identity" | "" => return Ok(body),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        // HTTP's "deflate" is zlib-wrapped; some clients send it raw.
        "deflate" => {
            let zlib = flate2::read::ZlibDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(&body[..])
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported Content-Encoding '{other}': use gzip, deflate or none"
            )));
        }
    };
    read.map_err(|e| {
        ApiError::bad_request(format!(
            "could not decompress the {enc} body (truncated or corrupt): {e}"
        ))
    })?;
    if out.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(Bytes::from(out))
}

/// The experiment an OTLP upload goes to: `x-mlflow-experiment-id`, as
/// MLflow does, else the default experiment (0). Shared with gRPC, whose
/// metadata converts to a header map.
pub fn experiment_from(headers: &HeaderMap) -> ApiResult<i64> {
    match headers.get("x-mlflow-experiment-id").map(|v| v.to_str()) {
        None => Ok(0),
        Some(Ok(s)) if s.trim().is_empty() => Ok(0),
        Some(Ok(s)) => s.trim().parse().map_err(|_| {
            ApiError::not_found(format!(
                "No Experiment with id={} exists (x-mlflow-experiment-id)",
                s.trim()
            ))
        }),
        Some(Err(_)) => Err(ApiError::bad_request(
            "x-mlflow-experiment-id is not valid text",
        )),
    }
}

pub fn decode_request(encoding: Encoding, body: &[u8]) -> ApiResult<ExportTraceServiceRequest> {
    match encoding {
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("invalid OTLP/JSON ExportTraceServiceRequest: {e}"))
        }),
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid OTLP protobuf ExportTraceServiceRequest: {e}"
            ))
        }),
    }
}

async fn export(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let result = match content_encoding(&headers) {
        Ok(encoding) => ingest(&app, &headers, body, encoding)
            .await
            .map(|r| respond(encoding, &r)),
        Err(e) => Err(e),
    };
    // Refusals are counted by `api::observe`, with every other route's.
    result.unwrap_or_else(|e| e.into_response())
}

async fn ingest(
    app: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    encoding: Encoding,
) -> ApiResult<ExportTraceServiceResponse> {
    let experiment_id = experiment_from(headers)?;
    let limit = app.config.max_body_bytes;
    let limits = app.config.limits.clone();
    let headers = headers.clone();
    let metrics = app.metrics.clone();
    let store = app.store.clone();
    let prepared = blocking(move || {
        let body = decompress(&headers, body, limit)?;
        metrics.record_bytes(body.len());
        let req = decode_request(encoding, &body)?;
        prepare(req, &limits, store.codec())
    })
    .await?;
    store_prepared(app, experiment_id, prepared).await
}

/// Runs CPU-bound decoding off the async executor.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("ingest task failed: {e}")))?
}

/// An export request converted and encoded for the store, with the spans it
/// refused.
pub struct Prepared {
    batch: Option<PreparedBatch>,
    rejected: Rejected,
}

/// Spans refused individually (bad ids): reported in `partial_success`.
#[derive(Default)]
pub struct Rejected {
    count: usize,
    messages: Vec<String>,
}

impl Rejected {
    /// Keeps the answer short when many spans are bad.
    const MAX_MESSAGES: usize = 10;
    fn push(&mut self, msg: String) {
        self.count += 1;
        if self.messages.len() < Self::MAX_MESSAGES {
            self.messages.push(msg);
        }
    }
    fn message(&self) -> String {
        let mut m = self.messages.join("; ");
        if self.count > self.messages.len() {
            m.push_str(&format!("; and {} more", self.count - self.messages.len()));
        }
        m
    }
}

/// Converts a decoded request: limits, conventions, row encoding.
pub fn prepare(
    req: ExportTraceServiceRequest,
    limits: &Limits,
    codec: &Codec,
) -> ApiResult<Prepared> {
    let (raw, resources, rejected) = convert(req);
    if raw.len() > limits.max_spans_per_request {
        return Err(ApiError::too_large_count(
            "spans in one request",
            limits.max_spans_per_request,
        ));
    }
    let batch = if raw.is_empty() {
        None
    } else {
        let mut batch = SpanBatch::from_raw(raw);
        for (trace, hints) in resources {
            batch.hints.entry(trace).or_default().merge(hints);
        }
        // Limits are checked on decoded values (JSON-in-strings undone), as
        // for MLflow uploads, before anything is encoded for the store.
        crate::api::limits::check_spans(&batch.spans, limits)?;
        Some(PreparedBatch::new(batch, codec))
    };
    Ok(Prepared { batch, rejected })
}

/// Stores a prepared request; shared with the gRPC service. An empty
/// request (no spans at all) is accepted and changes nothing.
pub async fn store_prepared(
    app: &AppState,
    experiment_id: i64,
    p: Prepared,
) -> ApiResult<ExportTraceServiceResponse> {
    if let Some(batch) = p.batch {
        let outcome = app.store.ingest_prepared(experiment_id, batch).await?;
        app.metrics.record_ingest(&outcome);
    } else if p.rejected.count == 0 {
        // Nothing to store, but an unknown experiment is still an error.
        app.store.get_experiment(experiment_id).await?;
    }
    let mut resp = ExportTraceServiceResponse::default();
    if p.rejected.count > 0 {
        resp.partial_success = Some(ExportTracePartialSuccess {
            rejected_spans: p.rejected.count as i64,
            error_message: p.rejected.message(),
        });
    }
    Ok(resp)
}

/// The answer in the request's encoding. OTLP/JSON writes int64 as a
/// string (the protobuf JSON mapping) and omits an absent partial success.
fn respond(encoding: Encoding, resp: &ExportTraceServiceResponse) -> Response {
    match encoding {
        Encoding::Protobuf => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            resp.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => {
            let mut v = serde_json::json!({});
            if let Some(p) = &resp.partial_success {
                v["partialSuccess"] = serde_json::json!({
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                });
            }
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                v.to_string(),
            )
                .into_response()
        }
    }
}

/// OTLP `AnyValue` to JSON, keeping its kind (see `domain::Span::attributes`).
pub fn any_to_json(v: &AnyValue) -> Value {
    any_into_json(v.clone())
}

/// [`any_to_json`] taking ownership, so strings move instead of copying.
pub fn any_into_json(v: AnyValue) -> Value {
    match v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s),
        Some(any_value::Value::BoolValue(b)) => Value::from(b),
        Some(any_value::Value::IntValue(i)) => Value::from(i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(d.to_string())),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(any_into_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(kvs_into_map(kv.values)),
        // Indexes into a profiles string table; meaningless for traces.
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(i),
        Some(any_value::Value::BytesValue(b)) => {
            Value::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
}

pub fn kv_to_map(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs_into_map(kvs.to_vec())
}

pub fn kvs_into_map(kvs: Vec<KeyValue>) -> Map<String, Value> {
    kvs.into_iter()
        .map(|kv| (kv.key, kv.value.map(any_into_json).unwrap_or(Value::Null)))
        .collect()
}

/// Spans of an export request as raw spans, the resource hints of each
/// trace, and the spans refused. Spans with unusable ids are refused
/// individually (reported as partial success), not the request. Size and
/// depth limits are checked afterwards, on decoded values (`prepare`).
pub fn convert(
    req: ExportTraceServiceRequest,
) -> (Vec<RawSpan>, HashMap<OtelTraceId, TraceHints>, Rejected) {
    let mut out = Vec::new();
    let mut resources: HashMap<OtelTraceId, TraceHints> = HashMap::new();
    let mut rejected = Rejected::default();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| kvs_into_map(r.attributes))
            .unwrap_or_default();
        let resource_hints = semconv::resource_hints(&resource);
        for ss in rs.scope_spans {
            for s in ss.spans {
                let trace_id = match OtelTraceId::from_slice(&s.trace_id) {
                    Ok(t) if !t.is_zero() => t,
                    _ => {
                        rejected.push(format!(
                            "span '{}': invalid trace_id (want 16 non-zero bytes)",
                            s.name
                        ));
                        continue;
                    }
                };
                let span_id = match OtelSpanId::from_slice(&s.span_id) {
                    Ok(id) if !id.is_zero() => id,
                    _ => {
                        rejected.push(format!(
                            "span '{}': invalid span_id (want 8 non-zero bytes)",
                            s.name
                        ));
                        continue;
                    }
                };
                let parent_span_id = if s.parent_span_id.is_empty() {
                    None
                } else {
                    match OtelSpanId::from_slice(&s.parent_span_id) {
                        Ok(p) if !p.is_zero() => Some(p),
                        Ok(_) => None,
                        Err(_) => {
                            rejected.push(format!(
                                "span '{}': invalid parent_span_id (want 8 bytes)",
                                s.name
                            ));
                            continue;
                        }
                    }
                };
                let (status, status_message) = match s.status {
                    Some(st) => (
                        match OtlpStatus::try_from(st.code) {
                            Ok(OtlpStatus::Ok) => SpanStatusCode::Ok,
                            Ok(OtlpStatus::Error) => SpanStatusCode::Error,
                            _ => SpanStatusCode::Unset,
                        },
                        st.message,
                    ),
                    None => (SpanStatusCode::Unset, String::new()),
                };
                let mut events = Vec::with_capacity(s.events.len());
                for e in s.events {
                    events.push(SpanEvent {
                        name: e.name,
                        time_ns: e.time_unix_nano as i64,
                        attributes: kvs_into_map(e.attributes),
                    });
                }
                if !resource_hints.is_empty() {
                    resources
                        .entry(trace_id)
                        .or_insert_with(|| resource_hints.clone());
                }
                out.push(RawSpan {
                    trace_id,
                    span_id,
                    parent_span_id,
                    name: s.name,
                    kind: s.kind,
                    status,
                    status_message,
                    start_ns: s.start_time_unix_nano as i64,
                    end_ns: (s.end_time_unix_nano > 0).then_some(s.end_time_unix_nano as i64),
                    attributes: kvs_into_map(s.attributes),
                    events,
                });
            }
        }
    }
    (out, resources, rejected)
}
