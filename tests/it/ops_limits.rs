//! Limits on untrusted input, against the real binary: body size, spans
//! per request, attribute size and nesting depth, each a clear 4xx that
//! stores nothing, for OTLP (protobuf, JSON, gzip, gRPC) and MLflow JSON
//! (StartTraceV3, assessments, the traces.json artifact), and each counted
//! in `tracebox_rejected_requests_total{reason}`.

use std::io::Write;

use prost::Message;
use serde_json::{Value, json};

use crate::harness::{Client, Resp, Server, free_port};
use crate::otlp_http::{SpanSpec, export_protobuf, request, trace_hex};

fn nested(depth: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..depth {
        v = json!({"n": v});
    }
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

async fn count(c: &Client) -> usize {
    let r = c
        .post(
            "/api/3.0/mlflow/traces/search",
            json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]}),
        )
        .await;
    r.body["traces"].as_array().map(Vec::len).unwrap_or(0)
}

fn refused(r: &Resp, status: u16, code: &str, says: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error_code"], code, "{}", r.text);
    let m = r.body["message"].as_str().unwrap_or_default();
    assert!(m.contains(says), "message should mention '{says}': {m}");
}

#[tokio::test]
async fn every_limit_is_a_clear_4xx_that_stores_nothing() {
    let port = free_port();
    let s = Server::start_with(&[
        "--max-body-bytes",
        "204800",
        "--max-spans-per-request",
        "10",
        "--max-attribute-bytes",
        "2K",
        "--max-nesting-depth",
        "8",
        "--otlp-grpc-port",
        &port.to_string(),
    ]);
    let c = s.client();

    // Attribute size, OTLP protobuf.
    let (h, _) = trace_hex(1);
    let big = SpanSpec::root(1, "big").attr("blob", json!("x".repeat(3000)));
    let r = export_protobuf(&c, &h, &[big], None).await;
    refused(&r, 413, "REQUEST_LIMIT_EXCEEDED", "attribute 'blob'");

    // Nesting depth, OTLP/JSON (a kvlist 10 deep).
    let mut v = json!({"stringValue": "leaf"});
    for _ in 0..10 {
        v = json!({"kvlistValue": {"values": [{"key": "n", "value": v}]}});
    }
    let (h2, _) = trace_hex(2);
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": h2, "spanId": "0202020202020202", "name": "deep",
        "startTimeUnixNano": "1795625977000000000",
        "attributes": [{"key": "deep", "value": v}]}]}]}]});
    let r = c
        .post_raw(
            "/v1/traces",
            "application/json",
            body.to_string().into_bytes(),
            &[],
        )
        .await;
    refused(&r, 400, "INVALID_PARAMETER_VALUE", "nested 10 levels deep");

    // Nesting inside MLflow's JSON-in-a-string inputs counts too.
    let (h3, _) = trace_hex(3);
    let sneaky = SpanSpec::root(1, "sneaky").inputs(json!(nested(9).to_string()));
    let r = export_protobuf(&c, &h3, &[sneaky], None).await;
    refused(
        &r,
        400,
        "INVALID_PARAMETER_VALUE",
        "the inputs of span 'sneaky'",
    );

    // Spans per request.
    let (h4, _) = trace_hex(4);
    let many: Vec<SpanSpec> = (1..=11).map(|i| SpanSpec::child(i, 100, "s")).collect();
    let r = export_protobuf(&c, &h4, &many, None).await;
    refused(&r, 413, "REQUEST_LIMIT_EXCEEDED", "too many spans");

    // Body size, and a gzip bomb that would inflate past it.
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            vec![0u8; 300 << 10],
            &[],
        )
        .await;
    refused(&r, 413, "REQUEST_LIMIT_EXCEEDED", "exceeds the limit");
    let bomb = gzip(&vec![b' '; 50 << 20]);
    assert!(bomb.len() < 200 << 10);
    let r = c
        .post_raw(
            "/v1/traces",
            "application/json",
            bomb,
            &[("content-encoding", "gzip")],
        )
        .await;
    refused(&r, 413, "REQUEST_LIMIT_EXCEEDED", "exceeds the limit");

    // A JSON body nested beyond any parser's comfort: a 400, not a crash.
    let evil = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = c
        .post_raw(
            "/api/3.0/mlflow/traces",
            "application/json",
            evil.into_bytes(),
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);

    // MLflow StartTraceV3: tag and metadata values.
    let (_, id5) = trace_hex(5);
    let info = |tags: Value, md: Value| {
        json!({"trace": {"trace_info": {
            "trace_id": id5, "request_time": "2026-11-25T16:59:37.382Z", "state": "OK",
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}},
            "tags": tags, "trace_metadata": md}}})
    };
    let r = c
        .post(
            "/api/3.0/mlflow/traces",
            info(json!({"t": "y".repeat(3000)}), json!({})),
        )
        .await;
    refused(&r, 413, "REQUEST_LIMIT_EXCEEDED", "tag 't'");
    let r = c
        .post(
            "/api/3.0/mlflow/traces",
            info(json!({}), json!({"m": "y".repeat(3000)})),
        )
        .await;
    refused(&r, 413, "REQUEST_LIMIT_EXCEEDED", "metadata 'm'");

    // The traces.json artifact: attribute values are JSON text.
    let (h6, id6) = trace_hex(6);
    let span = json!({
        "trace_id": base64_of(&hex::decode(&h6).unwrap()), "span_id": base64_of(&[6; 8]),
        "name": "art", "start_time_unix_nano": 1, "status": {"code": "STATUS_CODE_OK"},
        "attributes": {"deep": nested(12).to_string()}});
    let r = c
        .send(
            "PUT",
            &format!("/api/2.0/mlflow-artifacts/artifacts/0/traces/{id6}/artifacts/traces.json"),
            Some(json!({"spans": [span]})),
        )
        .await;
    refused(&r, 400, "INVALID_PARAMETER_VALUE", "attribute 'deep'");

    assert_eq!(count(&c).await, 0, "refused uploads stored something");

    // Assessments: the value's depth, on a trace that exists.
    let (h7, id7) = trace_hex(7);
    assert_eq!(
        export_protobuf(&c, &h7, &[SpanSpec::root(1, "ok")], None)
            .await
            .status,
        200
    );
    let r = c
        .post(
            &format!("/api/3.0/mlflow/traces/{id7}/assessments"),
            json!({"assessment": {"assessment_name": "a", "feedback": {"value": nested(9)},
                   "source": {"source_type": "HUMAN", "source_id": "me"}}}),
        )
        .await;
    refused(
        &r,
        400,
        "INVALID_PARAMETER_VALUE",
        "the value of assessment 'a'",
    );
    let r = c.get(&format!("/api/3.0/mlflow/traces/{id7}")).await;
    assert!(
        r.body["trace"]["trace_info"]["assessments"].is_null(),
        "{}",
        r.text
    );

    // gRPC: the same limits, as gRPC status codes.
    let mut grpc = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
        s.grpc.clone().unwrap(),
    )
    .await
    .unwrap();
    let (h8, _) = trace_hex(8);
    let e = grpc
        .export(request(
            &h8,
            &[SpanSpec::root(1, "g").attr("blob", json!("x".repeat(3000)))],
        ))
        .await
        .unwrap_err();
    // INVALID_ARGUMENT, as every 413 over gRPC: exporters must not retry
    // what a retry cannot fix.
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("attribute 'blob'"), "{e:?}");
    let huge = request(
        &h8,
        &[SpanSpec::root(1, "g").attr("blob", json!("x".repeat(300 << 10)))],
    );
    assert!(huge.encoded_len() > 200 << 10);
    let e = grpc.export(huge).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");

    // Every refusal is counted by reason.
    let metrics = c.get("/metrics").await.text;
    for reason in [
        "attribute_too_large",
        "too_deep",
        "too_many_items",
        "too_large",
        "bad_request",
    ] {
        assert!(
            metrics.contains(&format!(
                "tracebox_rejected_requests_total{{reason=\"{reason}\"}}"
            )),
            "no {reason} in {metrics}"
        );
    }
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
