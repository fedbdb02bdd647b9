//! Stored spans back into OTLP protobuf, for `--forward-otlp`.
//!
//! Attributes follow the MLflow SDK's own OTLP export: MLflow's keys
//! (`mlflow.spanType`, `mlflow.spanInputs`, `mlflow.spanOutputs`) carry
//! JSON text, structured attribute values are sent as JSON text, scalars
//! keep their OTLP kind. Any OTLP backend accepts that, and tracebox or an
//! MLflow server reading it rebuilds the same span (their ingestion undoes
//! the JSON-in-strings encoding).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span};
use serde_json::Value;

use crate::domain::semconv::keys;
use crate::domain::{Span, SpanStatusCode};

/// Resource attribute naming the tracebox experiment the spans came from.
pub const EXPERIMENT_ATTRIBUTE: &str = "tracebox.experiment_id";

fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(any_value::Value::IntValue(i)),
            None => Some(any_value::Value::DoubleValue(
                n.as_f64().unwrap_or_default(),
            )),
        },
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        other => Some(any_value::Value::StringValue(other.to_string())),
    };
    AnyValue { value }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

fn text(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

/// One stored span as an OTLP span.
pub fn span(s: &Span) -> opentelemetry_proto::tonic::trace::v1::Span {
    let mut attributes = vec![kv(
        keys::SPAN_TYPE,
        text(Value::from(s.span_type.clone()).to_string()),
    )];
    if let Some(i) = &s.inputs {
        attributes.push(kv(keys::SPAN_INPUTS, text(i.to_string())));
    }
    if let Some(o) = &s.outputs {
        attributes.push(kv(keys::SPAN_OUTPUTS, text(o.to_string())));
    }
    attributes.extend(s.attributes.iter().map(|(k, v)| kv(k, any(v))));
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: s.trace_id.0.to_vec(),
        span_id: s.span_id.0.to_vec(),
        parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
        name: s.name.clone(),
        kind: s.kind,
        start_time_unix_nano: s.start_ns.max(0) as u64,
        end_time_unix_nano: s.end_ns.unwrap_or(0).max(0) as u64,
        attributes,
        events: s
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: e.time_ns.max(0) as u64,
                name: e.name.clone(),
                attributes: e.attributes.iter().map(|(k, v)| kv(k, any(v))).collect(),
                ..Default::default()
            })
            .collect(),
        status: Some(Status {
            code: match s.status {
                SpanStatusCode::Unset => 0,
                SpanStatusCode::Ok => 1,
                SpanStatusCode::Error => 2,
            },
            message: s.status_message.clone(),
        }),
        ..Default::default()
    }
}

/// An export request with one resource per experiment, spans in the order given.
pub fn export_request<'a>(
    spans: impl IntoIterator<Item = (i64, &'a Span)>,
) -> ExportTraceServiceRequest {
    let mut by_exp: Vec<(i64, Vec<opentelemetry_proto::tonic::trace::v1::Span>)> = Vec::new();
    for (exp, s) in spans {
        match by_exp.iter_mut().find(|(e, _)| *e == exp) {
            Some((_, v)) => v.push(span(s)),
            None => by_exp.push((exp, vec![span(s)])),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: by_exp
            .into_iter()
            .map(|(exp, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(EXPERIMENT_ATTRIBUTE, text(exp.to_string()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "tracebox.forward".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}
