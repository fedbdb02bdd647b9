//! OTLP over HTTP: building export requests for tests, and the endpoint's
//! behaviour with protobuf, JSON, gzip and bad input.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
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

fn deflate(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

async fn search(c: &Client, exp: &str) -> Vec<Value> {
    let r = c
        .post(
            "/api/3.0/mlflow/traces/search",
            json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}}], "max_results": 500}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["traces"].as_array().cloned().unwrap_or_default()
}

async fn get_trace(c: &Client, id: &str) -> Resp {
    c.get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
        .await
}

fn attr(span: &Value, key: &str) -> Option<Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| a["value"].clone())
}

#[tokio::test]
async fn a_trace_split_over_requests_is_in_progress_until_its_root_arrives() {
    let s = Server::start();
    let c = s.client();
    let (h, id) = trace_hex(7);
    // A batch exporter sends children first, in two requests.
    let llm = SpanSpec::child(2, 1, "chat gpt-4o")
        .attr("gen_ai.operation.name", json!("chat"))
        .attr("gen_ai.request.model", json!("gpt-4o"))
        .attr("gen_ai.usage.input_tokens", json!(100))
        .attr("gen_ai.usage.output_tokens", json!(20))
        .start_ms(1_795_625_977_010);
    let r = export_protobuf(&c, &h, &[llm], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tool = SpanSpec::child(3, 1, "lookup")
        .attr("openinference.span.kind", json!("LLM"))
        .attr("llm.token_count.prompt", json!(7))
        .attr("llm.token_count.completion", json!(3))
        .start_ms(1_795_625_977_020);
    assert_eq!(export_protobuf(&c, &h, &[tool], None).await.status, 200);

    let found = search(&c, "0").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["trace_id"], id.as_str());
    assert_eq!(found[0]["state"], "IN_PROGRESS");
    let t = get_trace(&c, &id).await;
    assert_eq!(t.body["trace"]["trace_info"]["state"], "IN_PROGRESS");
    assert_eq!(t.body["trace"]["spans"].as_array().unwrap().len(), 2);

    // The root arrives last: name, start, duration and state come from it,
    // and token usage is summed over the spans of every request.
    let root = SpanSpec::root(1, "agent")
        .span_type("AGENT")
        .inputs(json!({"question": "where is my order?"}))
        .outputs(json!("shipped"));
    assert_eq!(export_protobuf(&c, &h, &[root], None).await.status, 200);
    let t = get_trace(&c, &id).await;
    let info = &t.body["trace"]["trace_info"];
    assert_eq!(info["state"], "OK", "{}", t.text);
    assert_eq!(info["tags"]["mlflow.traceName"], "agent");
    assert_eq!(info["request_time"], "2026-11-25T16:59:37.000Z");
    assert_eq!(info["execution_duration"], "0.005s");
    assert_eq!(info["tags"]["mlflow.trace.spansLocation"], "TRACKING_STORE");
    let usage: Value = serde_json::from_str(
        info["trace_metadata"]["mlflow.trace.tokenUsage"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        usage,
        json!({"input_tokens": 107, "output_tokens": 23, "total_tokens": 130})
    );
    let spans = t.body["trace"]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);
    assert_eq!(spans[0]["name"], "agent", "root first");
    let chat = spans.iter().find(|s| s["name"] == "chat gpt-4o").unwrap();
    assert_eq!(
        attr(chat, "mlflow.spanType"),
        Some(json!({"string_value": "CHAT_MODEL"}))
    );
    assert_eq!(
        attr(chat, "mlflow.llm.model"),
        Some(json!({"string_value": "gpt-4o"}))
    );
    // A retried request (same spans again) is accepted and changes nothing.
    let again = SpanSpec::child(3, 1, "lookup").start_ms(1_795_625_977_020);
    assert_eq!(export_protobuf(&c, &h, &[again], None).await.status, 200);
    assert_eq!(
        get_trace(&c, &id).await.body["trace"]["spans"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn root_first_then_children_and_experiment_header() {
    let s = Server::start();
    let c = s.client();
    let created = c
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "otel-app"}),
        )
        .await;
    let exp = created.body["experiment_id"].as_str().unwrap().to_string();
    let (h, id) = trace_hex(8);
    let root = SpanSpec::root(1, "workflow").attr("traceloop.span.kind", json!("workflow"));
    let r = export_protobuf(&c, &h, &[root], Some(&exp)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found = search(&c, &exp).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["state"], "OK");
    assert!(
        search(&c, "0").await.is_empty(),
        "not in the default experiment"
    );
    let child = SpanSpec::child(2, 1, "task").attr("traceloop.span.kind", json!("task"));
    assert_eq!(
        export_protobuf(&c, &h, &[child], Some(&exp)).await.status,
        200
    );
    let t = get_trace(&c, &id).await;
    assert_eq!(t.body["trace"]["trace_info"]["state"], "OK");
    assert_eq!(t.body["trace"]["spans"].as_array().unwrap().len(), 2);
    assert_eq!(
        t.body["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"],
        exp.as_str()
    );

    // An unknown experiment is a 404 and stores nothing.
    let (h2, id2) = trace_hex(9);
    let r = export_protobuf(&c, &h2, &[SpanSpec::root(1, "x")], Some("424242")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(get_trace(&c, &id2).await.status, 404);
    let r = export_protobuf(&c, &h2, &[SpanSpec::root(1, "x")], Some("abc")).await;
    assert_eq!(r.status, 404, "{}", r.text);
}

#[tokio::test]
async fn partial_success_in_protobuf_and_json() {
    let s = Server::start();
    let c = s.client();
    let (h, id) = trace_hex(10);
    let mut req = request(&h, &[SpanSpec::root(1, "good")]);
    let mut bad = SpanSpec::child(2, 1, "bad-id").to_proto(&h);
    bad.span_id = vec![1, 2, 3];
    req.resource_spans[0].scope_spans[0].spans.push(bad);
    let r = c
        .http
        .post(format!("{}/v1/traces", c.base))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-protobuf"
    );
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let p = resp.partial_success.expect("partial success");
    assert_eq!(p.rejected_spans, 1);
    assert!(p.error_message.contains("bad-id"), "{}", p.error_message);
    assert_eq!(
        get_trace(&c, &id).await.body["trace"]["spans"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // JSON in, JSON out: camelCase, int64 as a string.
    let (h2, _) = trace_hex(11);
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": h2, "spanId": "0101010101010101", "name": "ok",
         "startTimeUnixNano": "1795625977000000000", "endTimeUnixNano": "1795625977005000000"},
        {"traceId": "", "spanId": "0202020202020202", "name": "no-trace-id"}]}]}]});
    let r = c
        .post_raw(
            "/v1/traces",
            "application/json; charset=utf-8",
            body.to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["partialSuccess"]["rejectedSpans"], "1", "{}", r.text);
    assert!(
        r.body["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("no-trace-id")
    );
    // Nothing rejected: an empty JSON object.
    let (h3, _) = trace_hex(12);
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": h3, "spanId": "0101010101010101", "name": "ok",
         "startTimeUnixNano": "1795625977000000000"}]}]}]});
    let r = c
        .post_raw(
            "/v1/traces",
            "application/json",
            body.to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})), "{}", r.text);
    // An empty request is fine and changes nothing.
    let r = c
        .post_raw("/v1/traces", "application/x-protobuf", vec![], &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn deflate_and_resource_attributes_become_tags() {
    let s = Server::start();
    let c = s.client();
    let (h, id) = trace_hex(13);
    let mut req = request(&h, &[SpanSpec::root(1, "svc")]);
    req.resource_spans[0].resource = Some(opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: vec![
            KeyValue {
                key: "service.name".into(),
                value: Some(any(&json!("checkout"))),
                ..Default::default()
            },
            KeyValue {
                key: "telemetry.sdk.language".into(),
                value: Some(any(&json!("python"))),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            deflate(&req.encode_to_vec()),
            &[("content-encoding", "deflate")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tags = get_trace(&c, &id).await.body["trace"]["trace_info"]["tags"].clone();
    assert_eq!(tags["service.name"], "checkout");
    assert!(tags.get("telemetry.sdk.language").is_none());
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            req.encode_to_vec(),
            &[("content-encoding", "br")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test]
async fn oversize_bodies_and_gzip_bombs_get_413_and_store_nothing() {
    let s = Server::start_with(&["--max-body-bytes", "200000"]);
    let c = s.client();
    let (h, id) = trace_hex(14);
    let big = "x".repeat(300_000);
    let spans = [SpanSpec::root(1, "big").attr("input.value", json!(big))];
    let body = request(&h, &spans).encode_to_vec();
    let r = c
        .post_raw("/v1/traces", "application/x-protobuf", body.clone(), &[])
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.body["error_code"], "REQUEST_LIMIT_EXCEEDED");
    // Compressed it is small, but it inflates past the limit: a gzip bomb.
    let gz = gzip(&body);
    assert!(gz.len() < 200_000);
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            gz,
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(get_trace(&c, &id).await.status, 404);
    assert!(search(&c, "0").await.is_empty());
}

#[tokio::test]
async fn too_many_spans_or_a_huge_attribute_get_413() {
    let s = Server::start_with(&["--max-spans-per-request", "3"]);
    let c = s.client();
    let (h, _) = trace_hex(15);
    let spans: Vec<SpanSpec> = (1..=4).map(|i| SpanSpec::root(i, "s")).collect();
    let r = export_protobuf(&c, &h, &spans, None).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("spans"));
    assert!(search(&c, "0").await.is_empty());
}
