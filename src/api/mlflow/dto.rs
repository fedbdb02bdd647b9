//! MLflow's JSON shapes (protobuf JSON with snake_case field names) and their
//! conversions to and from domain types. The only place that knows them.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::domain::semconv::{RawSpan, keys};
use crate::domain::{
    Assessment, AssessmentError, AssessmentKind, AssessmentSource, Experiment, OtelSpanId,
    OtelTraceId, SourceType, Span, SpanEvent, SpanStatusCode, TraceInfo, TraceState, metadata_keys,
};

// ---------------------------------------------------------------- time

/// Protobuf JSON `Timestamp`: RFC 3339 in UTC with millisecond precision.
pub fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_timestamp(s: &str, field: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| ApiError::invalid(format!("Invalid timestamp '{s}' for '{field}': {e}")))
}

/// Protobuf JSON `Duration`: seconds with a fraction, e.g. `"0.022s"`.
pub fn duration(ms: i64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

pub fn parse_duration(s: &str, field: &str) -> Result<i64, ApiError> {
    let secs = s
        .strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| ApiError::invalid(format!("Invalid duration '{s}' for '{field}'")))?;
    Ok((secs * 1000.0).round() as i64)
}

// ---------------------------------------------------------------- experiments

pub fn experiment(e: &Experiment) -> Value {
    let tags: Vec<Value> = e
        .tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let mut v = json!({
        "experiment_id": e.experiment_id.to_string(),
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage,
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
    });
    if !tags.is_empty() {
        v["tags"] = Value::Array(tags);
    }
    v
}

/// Experiment ids are decimal strings on the wire; anything else cannot
/// name an experiment here.
pub fn parse_experiment_id(s: &str) -> Result<i64, ApiError> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| ApiError::not_found(format!("No Experiment with id={s} exists")))
}

// ---------------------------------------------------------------- trace info

#[derive(Debug, Deserialize)]
pub struct TraceLocationIn {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub mlflow_experiment: Option<ExperimentLocationIn>,
}

#[derive(Debug, Deserialize)]
pub struct ExperimentLocationIn {
    pub experiment_id: String,
}

#[derive(Debug, Deserialize)]
pub struct TraceInfoIn {
    pub trace_id: String,
    #[serde(default)]
    pub client_request_id: Option<String>,
    #[serde(default)]
    pub trace_location: Option<TraceLocationIn>,
    #[serde(default)]
    pub request_time: Option<String>,
    #[serde(default)]
    pub execution_duration: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub request_preview: Option<String>,
    #[serde(default)]
    pub response_preview: Option<String>,
    #[serde(default)]
    pub trace_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub assessments: Vec<AssessmentIn>,
}

impl TraceInfoIn {
    /// Validates and converts; assessments are returned separately because
    /// they are stored after the trace exists.
    pub fn into_domain(self) -> Result<(TraceInfo, Vec<AssessmentIn>), ApiError> {
        if self.trace_id.trim().is_empty() {
            return Err(ApiError::invalid(
                "Missing value for required parameter 'trace_id'.",
            ));
        }
        let experiment_id = match self
            .trace_location
            .as_ref()
            .and_then(|l| l.mlflow_experiment.as_ref())
        {
            Some(l) => parse_experiment_id(&l.experiment_id)?,
            None => {
                return Err(ApiError::invalid(
                    "trace_location.mlflow_experiment.experiment_id is required",
                ));
            }
        };
        let request_time_ms = match &self.request_time {
            Some(t) => parse_timestamp(t, "request_time")?,
            None => crate::domain::now_ms(),
        };
        let execution_time_ms = self
            .execution_duration
            .as_deref()
            .map(|d| parse_duration(d, "execution_duration"))
            .transpose()?;
        let state = match self.state.as_deref() {
            None => TraceState::Unspecified,
            Some(s) => TraceState::parse(s)
                .ok_or_else(|| ApiError::invalid(format!("Invalid trace state '{s}'")))?,
        };
        Ok((
            TraceInfo {
                trace_id: self.trace_id,
                experiment_id,
                client_request_id: self.client_request_id.filter(|c| !c.is_empty()),
                request_time_ms,
                execution_time_ms,
                state,
                request_preview: self.request_preview,
                response_preview: self.response_preview,
                metadata: self.trace_metadata,
                tags: self.tags,
                assessments: Vec::new(),
                tokens: Default::default(),
            },
            self.assessments,
        ))
    }
}

pub fn trace_location(experiment_id: i64) -> Value {
    json!({"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id.to_string()}})
}

pub fn trace_info(t: &TraceInfo) -> Value {
    let mut metadata = t.metadata.clone();
    // MLflow re-emits trace-level token usage as metadata; traces that came
    // over OTLP only have it summed from their spans.
    if !t.tokens.is_empty() && !metadata.contains_key(metadata_keys::TOKEN_USAGE) {
        let mut u = Map::new();
        for (k, v) in [
            ("input_tokens", t.tokens.input),
            ("output_tokens", t.tokens.output),
            ("total_tokens", t.tokens.total),
        ] {
            if let Some(v) = v {
                u.insert(k.into(), Value::from(v));
            }
        }
        metadata.insert(
            metadata_keys::TOKEN_USAGE.into(),
            Value::Object(u).to_string(),
        );
    }
    let mut v = json!({
        "trace_id": t.trace_id,
        "trace_location": trace_location(t.experiment_id),
        "request_time": timestamp(t.request_time_ms),
        "state": t.state.as_str(),
        "trace_metadata": metadata,
        "tags": t.tags,
    });
    if let Some(c) = &t.client_request_id {
        v["client_request_id"] = Value::from(c.clone());
    }
    if let Some(ms) = t.execution_time_ms {
        v["execution_duration"] = Value::from(duration(ms));
    }
    if let Some(p) = &t.request_preview {
        v["request_preview"] = Value::from(p.clone());
    }
    if let Some(p) = &t.response_preview {
        v["response_preview"] = Value::from(p.clone());
    }
    if !t.assessments.is_empty() {
        v["assessments"] = Value::Array(t.assessments.iter().map(assessment).collect());
    }
    v
}

// ---------------------------------------------------------------- spans out

/// A JSON value as an OTLP `AnyValue` in protobuf JSON (snake_case). A
/// oneof member is always written, even when it holds a default, because
/// the client reads a member-less AnyValue as None.
pub fn any_value(v: &Value) -> Value {
    match v {
        Value::Null => json!({}),
        Value::Bool(b) => json!({"bool_value": b}),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!({"int_value": i})
            } else {
                json!({"double_value": n.as_f64()})
            }
        }
        Value::String(s) => json!({"string_value": s}),
        Value::Array(a) => {
            json!({"array_value": {"values": a.iter().map(any_value).collect::<Vec<_>>()}})
        }
        Value::Object(o) => json!({"kvlist_value": {"values": key_values(o)}}),
    }
}

fn key_values(m: &Map<String, Value>) -> Vec<Value> {
    m.iter()
        .map(|(k, v)| json!({"key": k, "value": any_value(v)}))
        .collect()
}

/// The attributes MLflow's client expects on a span, rebuilt from tracebox's
/// span model.
fn span_attributes(trace_id: &str, s: &Span) -> Vec<Value> {
    let mut out = vec![
        json!({"key": keys::TRACE_REQUEST_ID, "value": {"string_value": trace_id}}),
        json!({"key": keys::SPAN_TYPE, "value": {"string_value": s.span_type}}),
    ];
    if let Some(i) = &s.inputs {
        out.push(json!({"key": keys::SPAN_INPUTS, "value": any_value(i)}));
    }
    if let Some(o) = &s.outputs {
        out.push(json!({"key": keys::SPAN_OUTPUTS, "value": any_value(o)}));
    }
    out.extend(key_values(&s.attributes));
    out
}

/// A span as OTLP protobuf JSON (GetTrace / batchGet).
pub fn span(trace_id: &str, s: &Span) -> Value {
    let mut v = json!({
        "trace_id": B64.encode(s.trace_id.0),
        "span_id": B64.encode(s.span_id.0),
        "name": s.name,
        "start_time_unix_nano": s.start_ns,
        "attributes": span_attributes(trace_id, s),
        "status": {},
    });
    if let Some(end) = s.end_ns {
        v["end_time_unix_nano"] = Value::from(end);
    }
    if let Some(p) = &s.parent_span_id {
        v["parent_span_id"] = Value::from(B64.encode(p.0));
    }
    if s.status != SpanStatusCode::Unset {
        v["status"]["code"] = Value::from(s.status.otlp_name());
        if !s.status_message.is_empty() {
            v["status"]["message"] = Value::from(s.status_message.clone());
        }
    }
    if !s.events.is_empty() {
        v["events"] = Value::Array(
            s.events
                .iter()
                .map(|e| {
                    json!({"time_unix_nano": e.time_ns, "name": e.name,
                           "attributes": key_values(&e.attributes)})
                })
                .collect(),
        );
    }
    v
}

/// A span in MLflow's `traces.json` shape (attribute values JSON-encoded).
pub fn span_dict(trace_id: &str, s: &Span) -> Value {
    let mut attrs = Map::new();
    attrs.insert(
        keys::TRACE_REQUEST_ID.into(),
        Value::from(Value::from(trace_id).to_string()),
    );
    attrs.insert(
        keys::SPAN_TYPE.into(),
        Value::from(Value::from(s.span_type.clone()).to_string()),
    );
    if let Some(i) = &s.inputs {
        attrs.insert(keys::SPAN_INPUTS.into(), Value::from(i.to_string()));
    }
    if let Some(o) = &s.outputs {
        attrs.insert(keys::SPAN_OUTPUTS.into(), Value::from(o.to_string()));
    }
    for (k, v) in &s.attributes {
        attrs.insert(k.clone(), Value::from(v.to_string()));
    }
    json!({
        "trace_id": B64.encode(s.trace_id.0),
        "span_id": B64.encode(s.span_id.0),
        "parent_span_id": s.parent_span_id.map(|p| B64.encode(p.0)),
        "name": s.name,
        "start_time_unix_nano": s.start_ns,
        "end_time_unix_nano": s.end_ns,
        "events": s.events.iter().map(|e| json!({"name": e.name, "time_unix_nano": e.time_ns, "attributes": e.attributes})).collect::<Vec<_>>(),
        "status": {"code": s.status.otlp_name(), "message": s.status_message},
        "attributes": attrs,
        "links": [],
    })
}

// ---------------------------------------------------------------- spans in (traces.json)

fn b64_bytes(v: &Value, field: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => B64
            .decode(s)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
            .or_else(|_| hex::decode(s))
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("'{field}' is not base64: '{s}'"))),
        _ => Err(ApiError::invalid(format!("'{field}' must be a string"))),
    }
}

/// Parses MLflow's `traces.json` artifact (spans with JSON-encoded
/// attribute values) into raw spans.
pub fn parse_traces_json(body: &[u8]) -> Result<Vec<RawSpan>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("traces.json is not valid JSON: {e}")))?;
    let spans = v["spans"]
        .as_array()
        .ok_or_else(|| ApiError::invalid("traces.json has no 'spans' list"))?;
    spans
        .iter()
        .map(|s| {
            let trace_id = b64_bytes(&s["trace_id"], "trace_id")?
                .ok_or_else(|| ApiError::invalid("span without trace_id"))?;
            let span_id = b64_bytes(&s["span_id"], "span_id")?
                .ok_or_else(|| ApiError::invalid("span without span_id"))?;
            let parent = b64_bytes(&s["parent_span_id"], "parent_span_id")?;
            let attributes: Map<String, Value> = s["attributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let decoded = match v {
                                Value::String(text) => serde_json::from_str(text)
                                    .unwrap_or_else(|_| Value::String(text.clone())),
                                other => other.clone(),
                            };
                            (k.clone(), decoded)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let events = s["events"]
                .as_array()
                .map(|evs| {
                    evs.iter()
                        .map(|e| SpanEvent {
                            name: e["name"].as_str().unwrap_or_default().to_string(),
                            time_ns: e["time_unix_nano"]
                                .as_i64()
                                .or_else(|| e["timestamp"].as_i64())
                                .unwrap_or_default(),
                            attributes: e["attributes"].as_object().cloned().unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let bad = |e: crate::domain::IdError| ApiError::invalid(e.to_string());
            Ok(RawSpan {
                trace_id: OtelTraceId::from_slice(&trace_id).map_err(bad)?,
                span_id: OtelSpanId::from_slice(&span_id).map_err(bad)?,
                parent_span_id: parent
                    .map(|p| OtelSpanId::from_slice(&p))
                    .transpose()
                    .map_err(bad)?,
                name: s["name"].as_str().unwrap_or_default().to_string(),
                kind: 0,
                status: s["status"]["code"]
                    .as_str()
                    .and_then(SpanStatusCode::parse)
                    .unwrap_or_default(),
                status_message: s["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                start_ns: s["start_time_unix_nano"].as_i64().unwrap_or_default(),
                end_ns: s["end_time_unix_nano"].as_i64(),
                attributes,
                events,
            })
        })
        .collect()
}

// ---------------------------------------------------------------- assessments

#[derive(Debug, Deserialize, Default)]
pub struct SourceIn {
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ErrorIn {
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub stack_trace: Option<String>,
}

impl ErrorIn {
    fn into_domain(self) -> AssessmentError {
        AssessmentError {
            error_code: self.error_code.unwrap_or_default(),
            error_message: self.error_message,
            stack_trace: self.stack_trace,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct FeedbackIn {
    /// Absent and JSON null both mean "no value" (feedback with an error).
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub error: Option<ErrorIn>,
}

#[derive(Debug, Deserialize)]
pub struct SerializedValueIn {
    #[serde(default)]
    pub serialization_format: Option<String>,
    pub value: String,
}

#[derive(Debug, Deserialize, Default)]
pub struct ExpectationIn {
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub serialized_value: Option<SerializedValueIn>,
}

impl ExpectationIn {
    pub fn into_value(self) -> Result<Value, ApiError> {
        if let Some(sv) = self.serialized_value {
            match sv.serialization_format.as_deref() {
                None | Some("JSON_FORMAT") => serde_json::from_str(&sv.value).map_err(|e| {
                    ApiError::invalid(format!("expectation serialized_value is not JSON: {e}"))
                }),
                Some(other) => Err(ApiError::invalid(format!(
                    "Unsupported expectation serialization_format '{other}'"
                ))),
            }
        } else {
            Ok(self.value.unwrap_or(Value::Null))
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AssessmentIn {
    #[serde(default)]
    pub assessment_id: Option<String>,
    #[serde(default)]
    pub assessment_name: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub span_id: Option<String>,
    #[serde(default)]
    pub source: Option<SourceIn>,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub last_update_time: Option<String>,
    #[serde(default)]
    pub feedback: Option<FeedbackIn>,
    #[serde(default)]
    pub expectation: Option<ExpectationIn>,
    #[serde(default)]
    pub rationale: Option<String>,
    #[serde(default)]
    pub error: Option<ErrorIn>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub overrides: Option<String>,
    #[serde(default)]
    pub valid: Option<bool>,
}

impl AssessmentIn {
    /// A new assessment for `trace_id`; the server picks the id.
    pub fn into_new(self, trace_id: &str) -> Result<Assessment, ApiError> {
        let name = self
            .assessment_name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                ApiError::invalid("Missing value for required parameter 'assessment_name'.")
            })?;
        let now = crate::domain::now_ms();
        let (kind, value, error) = match (self.feedback, self.expectation) {
            (Some(f), None) => (
                AssessmentKind::Feedback,
                f.value.filter(|v| !v.is_null()),
                f.error.or(self.error).map(ErrorIn::into_domain),
            ),
            (None, Some(e)) => (AssessmentKind::Expectation, Some(e.into_value()?), None),
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "An assessment must have either a feedback or an expectation, not both.",
                ));
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    "An assessment must have either a feedback or an expectation value.",
                ));
            }
        };
        if kind == AssessmentKind::Feedback && value.is_none() && error.is_none() {
            return Err(ApiError::invalid(
                "A feedback must have either a value or an error.",
            ));
        }
        let source = self.source.unwrap_or_default();
        let source_type = match source.source_type.as_deref() {
            None => SourceType::Unspecified,
            Some(s) => SourceType::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("Invalid assessment source type '{s}'"))
            })?,
        };
        let create = self
            .create_time
            .as_deref()
            .map(|t| parse_timestamp(t, "create_time"))
            .transpose()?
            .unwrap_or(now);
        let update = self
            .last_update_time
            .as_deref()
            .map(|t| parse_timestamp(t, "last_update_time"))
            .transpose()?
            .unwrap_or(create);
        Ok(Assessment {
            assessment_id: String::new(),
            trace_id: trace_id.to_string(),
            name,
            kind,
            value,
            error,
            source: AssessmentSource {
                source_type,
                source_id: source.source_id.unwrap_or_default(),
            },
            rationale: self.rationale.filter(|r| !r.is_empty()),
            metadata: self.metadata,
            span_id: self.span_id.filter(|s| !s.is_empty()),
            overrides: self.overrides.filter(|s| !s.is_empty()),
            valid: true,
            create_time_ms: create,
            last_update_time_ms: update,
        })
    }
}

fn error_json(e: &AssessmentError) -> Value {
    let mut v = json!({"error_code": e.error_code});
    if let Some(m) = &e.error_message {
        v["error_message"] = Value::from(m.clone());
    }
    if let Some(st) = &e.stack_trace {
        v["stack_trace"] = Value::from(st.clone());
    }
    v
}

/// An expectation value the way MLflow's client sends and expects it:
/// scalars inline, anything else JSON-serialised.
fn expectation_json(v: &Value) -> Value {
    match v {
        Value::Bool(_) | Value::Number(_) | Value::String(_) => json!({"value": v}),
        other => {
            json!({"serialized_value": {"serialization_format": "JSON_FORMAT", "value": other.to_string()}})
        }
    }
}

pub fn assessment(a: &Assessment) -> Value {
    let mut v = json!({
        "assessment_id": a.assessment_id,
        "assessment_name": a.name,
        "trace_id": a.trace_id,
        "source": {"source_type": a.source.source_type.as_str(), "source_id": a.source.source_id},
        "create_time": timestamp(a.create_time_ms),
        "last_update_time": timestamp(a.last_update_time_ms),
        "valid": a.valid,
    });
    match a.kind {
        AssessmentKind::Feedback => {
            let mut f = json!({"value": a.value.clone().unwrap_or(Value::Null)});
            if let Some(e) = &a.error {
                f["error"] = error_json(e);
            }
            v["feedback"] = f;
        }
        AssessmentKind::Expectation => {
            v["expectation"] = expectation_json(a.value.as_ref().unwrap_or(&Value::Null));
        }
    }
    if let Some(r) = &a.rationale {
        v["rationale"] = Value::from(r.clone());
    }
    if !a.metadata.is_empty() {
        v["metadata"] = json!(a.metadata);
    }
    if let Some(s) = &a.span_id {
        v["span_id"] = Value::from(s.clone());
    }
    if let Some(o) = &a.overrides {
        v["overrides"] = Value::from(o.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats_match_protobuf_json() {
        assert_eq!(timestamp(1_795_625_977_382), "2026-11-25T16:59:37.382Z");
        assert_eq!(
            parse_timestamp("2026-11-25T16:59:37.382Z", "t").unwrap(),
            1_795_625_977_382
        );
        assert_eq!(duration(22), "0.022s");
        assert_eq!(duration(61_005), "61.005s");
        assert_eq!(parse_duration("0.022s", "d").unwrap(), 22);
        assert!(parse_duration("22ms", "d").is_err());
    }

    #[test]
    fn any_value_keeps_types_and_defaults() {
        assert_eq!(any_value(&json!(0)), json!({"int_value": 0}));
        assert_eq!(any_value(&json!(2.0)), json!({"double_value": 2.0}));
        assert_eq!(any_value(&json!("")), json!({"string_value": ""}));
        assert_eq!(any_value(&json!(null)), json!({}));
        assert_eq!(
            any_value(&json!({"a": [true]})),
            json!({"kvlist_value": {"values": [{"key": "a", "value": {"array_value": {"values": [{"bool_value": true}]}}}]}})
        );
    }
}
