//! OTLP over HTTP: building export requests for tests, and the endpoint's
//! behaviour with protobuf, JSON, gzip and bad input.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};

use crate::harness::{Client, Resp, Server};

/// A trace id made from a seed: (hex, MLflow id).
#[allow(dead_code)]
pub fn trace_hex(seed: u8) -> (String, String) {
    let hex = format!("{:02x}", seed).repeat(16);
    (hex.clone(), format!("tr-{hex}"))
}

pub fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) if n.is_i64() => Some(any_value::Value::IntValue(n.as_i64().unwrap())),
        Value::Number(n) => Some(any_value::Value::DoubleValue(n.as_f64().unwrap())),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(a) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: a.iter().map(any).collect(),
        })),
        Value::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: o
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// A span to send, with MLflow's attribute conventions.
#[derive(Clone)]
pub struct SpanSpec {
    pub id: u8,
    pub parent: Option<u8>,
    pub name: String,
    pub start_ms: i64,
    pub attrs: Vec<(String, Value)>,
    pub error: Option<String>,
}

impl SpanSpec {
    pub fn root(id: u8, name: &str) -> Self {
        SpanSpec {
            id,
            parent: None,
            name: name.into(),
            start_ms: 1_795_625_977_000,
            attrs: vec![],
            error: None,
        }
    }
    pub fn child(id: u8, parent: u8, name: &str) -> Self {
        SpanSpec {
            parent: Some(parent),
            ..Self::root(id, name)
        }
    }
    pub fn attr(mut self, k: &str, v: Value) -> Self {
        self.attrs.push((k.into(), v));
        self
    }
    pub fn span_type(self, t: &str) -> Self {
        self.attr("mlflow.spanType", json!(t))
    }
    pub fn inputs(self, v: Value) -> Self {
        self.attr("mlflow.spanInputs", v)
    }
    pub fn outputs(self, v: Value) -> Self {
        self.attr("mlflow.spanOutputs", v)
    }
    pub fn start_ms(mut self, ms: i64) -> Self {
        self.start_ms = ms;
        self
    }
    #[allow(dead_code)]
    pub fn error(mut self, msg: &str) -> Self {
        self.error = Some(msg.into());
        self
    }

    pub fn to_proto(&self, trace_hex: &str) -> Span {
        let start = self.start_ms as u64 * 1_000_000;
        Span {
            trace_id: hex::decode(trace_hex).unwrap(),
            span_id: vec![self.id; 8],
            parent_span_id: self.parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: self.name.clone(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 5_000_000,
            attributes: self
                .attrs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(any(v)),
                    ..Default::default()
                })
                .collect(),
            status: Some(match &self.error {
                Some(m) => Status {
                    code: 2,
                    message: m.clone(),
                },
                None => Status {
                    code: 1,
                    message: String::new(),
                },
            }),
            ..Default::default()
        }
    }
}

pub fn request(trace_hex: &str, spans: &[SpanSpec]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: spans.iter().map(|s| s.to_proto(trace_hex)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub async fn export_protobuf(
    c: &Client,
    trace_hex: &str,
    spans: &[SpanSpec],
    exp: Option<&str>,
) -> Resp {
    let body = request(trace_hex, spans).encode_to_vec();
    let headers: Vec<(&str, &str)> = exp
        .map(|e| vec![("x-mlflow-experiment-id", e)])
        .unwrap_or_default();
    c.post_raw("/v1/traces", "application/x-protobuf", body, &headers)
        .await
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn protobuf_json_and_gzip_are_accepted() {
    let s = Server::start();
    let c = s.client();
    let (h1, id1) = trace_hex(1);
    let r = export_protobuf(&c, &h1, &[SpanSpec::root(1, "pb")], None).await;
    assert_eq!(r.status, 200);

    // OTLP/JSON: hex ids, camelCase, nanos as strings.
    let (h2, id2) = trace_hex(2);
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": h2, "spanId": "0202020202020202", "name": "json-span",
        "startTimeUnixNano": "1795625977000000000", "endTimeUnixNano": "1795625977005000000",
        "attributes": [{"key": "input.value", "value": {"stringValue": "{\"q\": \"hello\"}"}},
                       {"key": "openinference.span.kind", "value": {"stringValue": "CHAIN"}}],
        "status": {"code": 1}}]}]}]});
    let r = c
        .post_raw(
            "/v1/traces",
            "application/json",
            body.to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.starts_with('{'),
        "JSON answer for a JSON request: {}",
        r.text
    );

    let (h3, id3) = trace_hex(3);
    let pb = request(&h3, &[SpanSpec::root(1, "gz")]).encode_to_vec();
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            gzip(&pb),
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    for (id, name) in [(&id1, "pb"), (&id2, "json-span"), (&id3, "gz")] {
        let t = c
            .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
            .await;
        assert_eq!(t.status, 200, "{}", t.text);
        assert_eq!(t.body["trace"]["spans"][0]["name"], name);
    }
    let t = c
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id2}"))
        .await;
    let attrs = t.body["trace"]["spans"][0]["attributes"]
        .as_array()
        .unwrap()
        .clone();
    let find = |k: &str| {
        attrs
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
    };
    assert_eq!(
        find("mlflow.spanType"),
        Some(json!({"string_value": "CHAIN"}))
    );
    assert_eq!(
        find("mlflow.spanInputs"),
        Some(
            json!({"kvlist_value": {"values": [{"key": "q", "value": {"string_value": "hello"}}]}})
        )
    );
}

#[tokio::test]
async fn malformed_uploads_get_400_and_store_nothing() {
    let s = Server::start();
    let c = s.client();
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            vec![0xff, 0xff, 0xff, 0x01, 0x02],
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["message"].as_str().unwrap().contains("protobuf"),
        "{}",
        r.text
    );
    let r = c
        .post_raw("/v1/traces", "text/plain", b"hello".to_vec(), &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let (h, _) = trace_hex(4);
    let gz = gzip(&request(&h, &[SpanSpec::root(1, "x")]).encode_to_vec());
    let truncated = gz[..gz.len() / 2].to_vec();
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            truncated,
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["message"].as_str().unwrap().contains("decompress"),
        "{}",
        r.text
    );
    let r = c
        .post_raw(
            "/v1/traces",
            "application/json",
            b"{\"resourceSpans\": 5}".to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    let search = c.post("/api/3.0/mlflow/traces/search", json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]})).await;
    assert_eq!(
        search.body["traces"].as_array().map(Vec::len).unwrap_or(0),
        0
    );
}
