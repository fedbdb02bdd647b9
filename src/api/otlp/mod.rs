//! OTLP trace ingestion: `POST /v1/traces` over HTTP (protobuf or JSON,
//! optionally gzip-compressed) and, in `grpc`, the gRPC `TraceService`.
//!
//! Decoding uses the generated OTLP types from `opentelemetry-proto`; the
//! spans are mapped to tracebox's model by `domain::semconv`.

pub mod encode;
pub mod grpc;

use std::io::Read;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
use crate::domain::semconv::RawSpan;
use crate::domain::{OtelSpanId, OtelTraceId, SpanBatch, SpanEvent, SpanStatusCode};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/traces", post(export))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

fn content_encoding(headers: &HeaderMap) -> ApiResult<Encoding> {
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
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            super::error::ErrorCode::BadRequest,
            format!(
                "unsupported Content-Type '{other}': use application/x-protobuf or application/json"
            ),
        )),
    }
}

/// Undoes `Content-Encoding: gzip|deflate`, never inflating past `limit`.
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
        "deflate" => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported Content-Encoding '{other}': use gzip, deflate or none"
            )));
        }
    };
    read.map_err(|e| ApiError::bad_request(format!("could not decompress the {enc} body: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(Bytes::from(out))
}

/// The experiment an OTLP upload goes to: `x-mlflow-experiment-id`, as
/// MLflow does, else the default experiment.
pub fn experiment_from(headers: &HeaderMap) -> ApiResult<i64> {
    match headers.get("x-mlflow-experiment-id").map(|v| v.to_str()) {
        None => Ok(0),
        Some(Ok(s)) if s.trim().is_empty() => Ok(0),
        Some(Ok(s)) => s
            .trim()
            .parse()
            .map_err(|_| ApiError::not_found(format!("No Experiment with id={s} exists"))),
        Some(Err(_)) => Err(ApiError::bad_request(
            "x-mlflow-experiment-id is not valid text",
        )),
    }
}

pub fn decode_request(enc_is_json: bool, body: &[u8]) -> ApiResult<ExportTraceServiceRequest> {
    if enc_is_json {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("invalid OTLP/JSON ExportTraceServiceRequest: {e}"))
        })
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid OTLP protobuf ExportTraceServiceRequest: {e}"
            ))
        })
    }
}

async fn export(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    let encoding = match content_encoding(&headers) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    match ingest(&app, &headers, body, encoding).await {
        Ok(resp) => respond(encoding, &resp),
        // Refusals are counted by `api::observe`, with every other route's.
        Err(e) => e.into_response(),
    }
}

async fn ingest(
    app: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    encoding: Encoding,
) -> ApiResult<ExportTraceServiceResponse> {
    let experiment_id = experiment_from(headers)?;
    let body = decompress(headers, body, app.config.max_body_bytes)?;
    app.metrics.record_bytes(body.len());
    let req = decode_request(encoding == Encoding::Json, &body)?;
    store_request(app, experiment_id, req).await
}

/// Converts and stores one export request; shared with the gRPC service.
pub async fn store_request(
    app: &AppState,
    experiment_id: i64,
    req: ExportTraceServiceRequest,
) -> ApiResult<ExportTraceServiceResponse> {
    let (raw, rejected) = convert(req);
    if raw.is_empty() && rejected.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid OpenTelemetry format - no spans found",
        ));
    }
    let limits = &app.config.limits;
    if raw.len() > limits.max_spans_per_request {
        return Err(ApiError::too_large_count(
            "spans in one request",
            limits.max_spans_per_request,
        ));
    }
    if !raw.is_empty() {
        let batch = SpanBatch::from_raw(raw);
        crate::api::limits::check_spans(&batch.spans, limits)?;
        let outcome = app.store.ingest_spans(experiment_id, batch).await?;
        app.metrics.record_ingest(&outcome);
    }
    let mut resp = ExportTraceServiceResponse::default();
    if !rejected.is_empty() {
        resp.partial_success = Some(ExportTracePartialSuccess {
            rejected_spans: rejected.len() as i64,
            error_message: rejected.join("; "),
        });
    }
    Ok(resp)
}

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
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(d.to_string())),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(kv_to_map(&kv.values)),
        // Indexes into a profiles string table; meaningless for traces.
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(*i),
        Some(any_value::Value::BytesValue(b)) => {
            Value::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
}

pub fn kv_to_map(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(any_to_json).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// Flattens an export request into raw spans; spans with unusable ids are
/// rejected individually (reported as partial success), not the request.
pub fn convert(req: ExportTraceServiceRequest) -> (Vec<RawSpan>, Vec<String>) {
    let mut out = Vec::new();
    let mut rejected = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| kv_to_map(&r.attributes))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let trace_id = match OtelTraceId::from_slice(&s.trace_id) {
                    Ok(t) if !t.is_zero() => t,
                    _ => {
                        rejected.push(format!("span '{}': invalid trace_id", s.name));
                        continue;
                    }
                };
                let span_id = match OtelSpanId::from_slice(&s.span_id) {
                    Ok(id) if !id.is_zero() => id,
                    _ => {
                        rejected.push(format!("span '{}': invalid span_id", s.name));
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
                            rejected.push(format!("span '{}': invalid parent_span_id", s.name));
                            continue;
                        }
                    }
                };
                let (status, status_message) = match &s.status {
                    Some(st) => (
                        match OtlpStatus::try_from(st.code) {
                            Ok(OtlpStatus::Ok) => SpanStatusCode::Ok,
                            Ok(OtlpStatus::Error) => SpanStatusCode::Error,
                            _ => SpanStatusCode::Unset,
                        },
                        st.message.clone(),
                    ),
                    None => (SpanStatusCode::Unset, String::new()),
                };
                let mut attributes = kv_to_map(&s.attributes);
                // Resource attributes describe the sender; keep the service
                // name on root spans so the UI can show where a trace came from.
                if parent_span_id.is_none()
                    && let Some(svc) = resource.get("service.name")
                {
                    attributes
                        .entry("service.name".to_string())
                        .or_insert_with(|| svc.clone());
                }
                let events = s
                    .events
                    .iter()
                    .map(|e| SpanEvent {
                        name: e.name.clone(),
                        time_ns: e.time_unix_nano as i64,
                        attributes: kv_to_map(&e.attributes),
                    })
                    .collect();
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
                    attributes,
                    events,
                });
            }
        }
    }
    (out, rejected)
}
