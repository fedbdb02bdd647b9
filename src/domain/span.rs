//! One span as tracebox keeps it, whatever SDK sent it.
//!
//! Attributes are kept as a JSON object whose values preserve the OpenTelemetry
//! `AnyValue` kind (string, integer, double, bool, array, key/value list as a
//! JSON object), so spans can be handed back over OTLP-shaped JSON without
//! losing their types. Inputs and outputs are pulled out of whatever
//! convention carried them (MLflow, OpenInference, GenAI, Traceloop) into
//! their own fields so that search, previews and the UI need not know the
//! conventions.

use serde_json::{Map, Value};

use super::{OtelSpanId, OtelTraceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanStatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl SpanStatusCode {
    pub fn as_i64(self) -> i64 {
        match self {
            SpanStatusCode::Unset => 0,
            SpanStatusCode::Ok => 1,
            SpanStatusCode::Error => 2,
        }
    }
    pub fn from_i64(v: i64) -> Self {
        match v {
            1 => SpanStatusCode::Ok,
            2 => SpanStatusCode::Error,
            _ => SpanStatusCode::Unset,
        }
    }
    /// The OTLP enum name, which is also what MLflow's span JSON carries.
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanStatusCode::Unset => "STATUS_CODE_UNSET",
            SpanStatusCode::Ok => "STATUS_CODE_OK",
            SpanStatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
    /// Accepts OTLP names (`STATUS_CODE_OK`) and MLflow's short ones (`OK`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim_start_matches("STATUS_CODE_") {
            "UNSET" => Some(SpanStatusCode::Unset),
            "OK" => Some(SpanStatusCode::Ok),
            "ERROR" => Some(SpanStatusCode::Error),
            _ => None,
        }
    }
}

/// LLM token counts; any of them may be unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    pub input: Option<i64>,
    pub output: Option<i64>,
    pub total: Option<i64>,
}

impl TokenUsage {
    pub fn is_empty(&self) -> bool {
        self.input.is_none() && self.output.is_none() && self.total.is_none()
    }
    /// Total as reported, else input + output.
    pub fn total_or_sum(&self) -> Option<i64> {
        self.total.or(match (self.input, self.output) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0) + o.unwrap_or(0)),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub name: String,
    pub time_ns: i64,
    pub attributes: Map<String, Value>,
}

/// The JSON text structured values of a span arrived as. OTLP senders,
/// MLflow's SDK among them, send objects as JSON-encoded strings; the
/// conventions parse them (see `semconv::sanitize`), and the store keeps
/// this text instead of encoding the parsed value again. Only an encoding
/// shortcut, never meaning: empty for spans read back from the store, and
/// whoever changes a value after parsing it must drop its text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentJson {
    /// Text `inputs` were parsed from, when they are that value unchanged.
    pub inputs: Option<String>,
    /// Text `outputs` were parsed from, when they are that value unchanged.
    pub outputs: Option<String>,
    /// `(key, text)` of each attribute parsed from JSON text.
    pub attributes: Vec<(String, String)>,
}

impl SentJson {
    /// The text attribute `key` was parsed from.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| t.as_str())
    }
    /// Takes the text of attribute `key` out (its value moved elsewhere or
    /// changed).
    pub fn take_attribute(&mut self, key: &str) -> Option<String> {
        let i = self.attributes.iter().position(|(k, _)| k == key)?;
        Some(self.attributes.swap_remove(i).1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: OtelTraceId,
    pub span_id: OtelSpanId,
    pub parent_span_id: Option<OtelSpanId>,
    pub name: String,
    /// MLflow span type (`LLM`, `CHAT_MODEL`, `RETRIEVER`, `TOOL`, `AGENT`,
    /// `CHAIN`, `UNKNOWN`, ...), derived from the sender's convention.
    pub span_type: String,
    /// OpenTelemetry span kind (0 unspecified .. 5 consumer).
    pub kind: i32,
    pub status: SpanStatusCode,
    pub status_message: String,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub inputs: Option<Value>,
    pub outputs: Option<Value>,
    /// Every attribute except MLflow's own inputs/outputs keys, which live in
    /// `inputs`/`outputs` and are put back when the span is served.
    pub attributes: Map<String, Value>,
    pub events: Vec<SpanEvent>,
    /// LLM model name if the convention carried one.
    pub model: Option<String>,
    pub tokens: TokenUsage,
    /// JSON text some of the values above arrived as (ingestion only).
    pub sent: SentJson,
}

impl Span {
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }
    pub fn duration_ms(&self) -> Option<i64> {
        self.end_ns.map(|e| (e - self.start_ns).max(0) / 1_000_000)
    }
    /// The first exception message recorded on the span, if any.
    pub fn exception_message(&self) -> Option<&str> {
        self.events
            .iter()
            .filter(|e| e.name == "exception")
            .find_map(|e| {
                e.attributes
                    .get("exception.message")
                    .and_then(Value::as_str)
            })
    }
}
