//! Spans in MLflow's GetTrace / batchGet JSON (OTLP protobuf JSON, typed
//! `AnyValue` attributes), written straight to the response by `Serialize`
//! impls instead of through a `serde_json::Value` tree.
//!
//! Why: every nested input/output value becomes three or four JSON objects
//! (`{"key", "value": {"kvlist_value": {"values": [...]}}}`); building them as
//! `Value`s spent most of a batchGet in allocation and map hashing. The shape
//! is exactly `dto::span`'s (a unit test holds the two together), which stays
//! the reference. Knows MLflow's wire shape only; no SQL, no HTTP.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};

use crate::domain::semconv::keys;
use crate::domain::{Span, SpanStatusCode};

/// One span, as `dto::span` renders it.
pub struct SpanJson<'a> {
    pub trace_id: &'a str,
    pub span: &'a Span,
}

/// A JSON value as an OTLP `AnyValue` (`dto::any_value`).
struct AnyValue<'a>(&'a Value);

/// `{"key": k, "value": AnyValue(v)}` pairs of an object.
struct KeyValues<'a>(&'a Map<String, Value>);

struct KeyValue<'a> {
    key: &'a str,
    value: KeyValueValue<'a>,
}

enum KeyValueValue<'a> {
    Any(&'a Value),
    Str(&'a str),
}

struct Attributes<'a>(&'a str, &'a Span);
struct Status<'a>(&'a Span);
struct Events<'a>(&'a Span);

/// `{"values": [...]}` around a sequence.
struct Values<T>(T);

impl Serialize for AnyValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self.0 {
            Value::Null => {}
            Value::Bool(b) => m.serialize_entry("bool_value", b)?,
            Value::Number(n) => match n.as_i64() {
                Some(i) => m.serialize_entry("int_value", &i)?,
                None => m.serialize_entry("double_value", &n.as_f64())?,
            },
            Value::String(v) => m.serialize_entry("string_value", v)?,
            Value::Array(a) => m.serialize_entry("array_value", &Values(a.iter().map(AnyValue)))?,
            Value::Object(o) => m.serialize_entry("kvlist_value", &Values(KeyValues(o)))?,
        }
        m.end()
    }
}

impl<I, T> Serialize for Values<I>
where
    I: IntoIterator<Item = T> + Clone,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("values", &Seq(self.0.clone()))?;
        m.end()
    }
}

/// Serialises an iterator as a JSON array.
struct Seq<I>(I);

impl<I, T> Serialize for Seq<I>
where
    I: IntoIterator<Item = T> + Clone,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for item in self.0.clone() {
            seq.serialize_element(&item)?;
        }
        seq.end()
    }
}

impl<'a> IntoIterator for KeyValues<'a> {
    type Item = KeyValue<'a>;
    type IntoIter =
        std::iter::Map<serde_json::map::Iter<'a>, fn((&'a String, &'a Value)) -> KeyValue<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| KeyValue {
            key: k,
            value: KeyValueValue::Any(v),
        })
    }
}

impl Clone for KeyValues<'_> {
    fn clone(&self) -> Self {
        KeyValues(self.0)
    }
}

impl Serialize for KeyValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", self.key)?;
        match &self.value {
            KeyValueValue::Any(v) => m.serialize_entry("value", &AnyValue(v))?,
            KeyValueValue::Str(v) => {
                m.serialize_entry("value", &StringValue(v))?;
            }
        }
        m.end()
    }
}

struct StringValue<'a>(&'a str);

impl Serialize for StringValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("string_value", self.0)?;
        m.end()
    }
}

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Attributes(trace_id, span) = self;
        let mut seq = s.serialize_seq(None)?;
        seq.serialize_element(&KeyValue {
            key: keys::TRACE_REQUEST_ID,
            value: KeyValueValue::Str(trace_id),
        })?;
        seq.serialize_element(&KeyValue {
            key: keys::SPAN_TYPE,
            value: KeyValueValue::Str(&span.span_type),
        })?;
        if let Some(i) = &span.inputs {
            seq.serialize_element(&KeyValue {
                key: keys::SPAN_INPUTS,
                value: KeyValueValue::Any(i),
            })?;
        }
        if let Some(o) = &span.outputs {
            seq.serialize_element(&KeyValue {
                key: keys::SPAN_OUTPUTS,
                value: KeyValueValue::Any(o),
            })?;
        }
        for kv in KeyValues(&span.attributes) {
            seq.serialize_element(&kv)?;
        }
        seq.end()
    }
}

impl Serialize for Status<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let span = self.0;
        let mut m = s.serialize_map(None)?;
        if span.status != SpanStatusCode::Unset {
            m.serialize_entry("code", span.status.otlp_name())?;
            if !span.status_message.is_empty() {
                m.serialize_entry("message", &span.status_message)?;
            }
        }
        m.end()
    }
}

impl Serialize for Events<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.events.len()))?;
        for e in &self.0.events {
            seq.serialize_element(&Event(e))?;
        }
        seq.end()
    }
}

struct Event<'a>(&'a crate::domain::SpanEvent);

impl Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("time_unix_nano", &self.0.time_ns)?;
        m.serialize_entry("name", &self.0.name)?;
        m.serialize_entry("attributes", &Seq(KeyValues(&self.0.attributes)))?;
        m.end()
    }
}

impl Serialize for SpanJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let span = self.span;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("trace_id", &B64.encode(span.trace_id.0))?;
        m.serialize_entry("span_id", &B64.encode(span.span_id.0))?;
        m.serialize_entry("name", &span.name)?;
        m.serialize_entry("start_time_unix_nano", &span.start_ns)?;
        m.serialize_entry("attributes", &Attributes(self.trace_id, span))?;
        m.serialize_entry("status", &Status(span))?;
        if let Some(end) = span.end_ns {
            m.serialize_entry("end_time_unix_nano", &end)?;
        }
        if let Some(p) = &span.parent_span_id {
            m.serialize_entry("parent_span_id", &B64.encode(p.0))?;
        }
        if !span.events.is_empty() {
            m.serialize_entry("events", &Events(span))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::mlflow::dto;
    use crate::domain::{OtelSpanId, OtelTraceId, SpanEvent};
    use serde_json::json;

    fn sample(status: SpanStatusCode, parent: bool, events: bool) -> Span {
        let attrs = json!({"model": "gpt", "t": 0.2, "n": 3, "flag": true, "none": null,
                           "nested": {"a": [1, "x", {"b": []}], "c": {}}});
        Span {
            trace_id: OtelTraceId([7; 16]),
            span_id: OtelSpanId([1; 8]),
            parent_span_id: parent.then_some(OtelSpanId([2; 8])),
            name: "chat \"q\"".into(),
            span_type: "LLM".into(),
            kind: 0,
            status,
            status_message: if status == SpanStatusCode::Error {
                "boom".into()
            } else {
                String::new()
            },
            start_ns: 1_795_625_977_383_449_341,
            end_ns: Some(1_795_625_977_386_602_594),
            inputs: Some(json!({"messages": [{"role": "user", "content": "héllo\n"}], "k": 2})),
            outputs: Some(json!("plain")),
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            events: if events {
                vec![SpanEvent {
                    name: "exception".into(),
                    time_ns: 5,
                    attributes: json!({"exception.message": "x"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                }]
            } else {
                vec![]
            },
            model: None,
            tokens: Default::default(),
            sent: Default::default(),
        }
    }

    #[test]
    fn same_json_as_the_value_based_rendering() {
        for status in [
            SpanStatusCode::Unset,
            SpanStatusCode::Ok,
            SpanStatusCode::Error,
        ] {
            for parent in [false, true] {
                for events in [false, true] {
                    let s = sample(status, parent, events);
                    let streamed: Value = serde_json::from_slice(
                        &serde_json::to_vec(&SpanJson {
                            trace_id: "tr-1",
                            span: &s,
                        })
                        .unwrap(),
                    )
                    .unwrap();
                    assert_eq!(streamed, dto::span("tr-1", &s));
                }
            }
        }
    }
}
