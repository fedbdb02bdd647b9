//! OTLP over gRPC with tonic's generated client: the same ingestion as HTTP,
//! gzip, the experiment header in metadata, and the status codes exporters
//! act on.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use tonic::codec::CompressionEncoding;

use crate::harness::{Server, free_port};
use crate::otlp_http::{SpanSpec, request, trace_hex};

fn server(extra: &[&str]) -> Server {
    let port = free_port().to_string();
    let mut args = vec!["--otlp-grpc-port", port.as_str()];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

async fn client(s: &Server) -> TraceServiceClient<tonic::transport::Channel> {
    let url = s.grpc.clone().expect("gRPC address");
    TraceServiceClient::connect(url)
        .await
        .expect("connect")
        .send_compressed(CompressionEncoding::Gzip)
}

#[tokio::test]
async fn grpc_export_with_gzip_and_experiment_metadata() {
    let s = server(&[]);
    let c = s.client();
    let created = c
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "grpc-app"}),
        )
        .await;
    let exp = created.body["experiment_id"].as_str().unwrap().to_string();
    let mut grpc = client(&s).await;
    let (h, id) = trace_hex(21);
    let spans = [
        SpanSpec::root(1, "agent").attr("openinference.span.kind", json!("AGENT")),
        SpanSpec::child(2, 1, "llm")
            .attr("openinference.span.kind", json!("LLM"))
            .attr("llm.token_count.prompt", json!(11))
            .attr("llm.token_count.completion", json!(4)),
    ];
    let mut req = tonic::Request::new(request(&h, &spans));
    req.metadata_mut()
        .insert("x-mlflow-experiment-id", exp.parse().unwrap());
    let resp = grpc.export(req).await.expect("export").into_inner();
    assert!(resp.partial_success.is_none());
    let t = c
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let info = &t.body["trace"]["trace_info"];
    assert_eq!(
        info["trace_location"]["mlflow_experiment"]["experiment_id"],
        exp.as_str()
    );
    assert_eq!(info["state"], "OK");
    assert!(
        info["trace_metadata"]["mlflow.trace.tokenUsage"]
            .as_str()
            .unwrap()
            .contains("\"total_tokens\":15")
    );

    // Partial success for spans with unusable ids.
    let (h2, _) = trace_hex(22);
    let mut r = request(&h2, &[SpanSpec::root(1, "ok")]);
    let mut bad = SpanSpec::root(2, "bad").to_proto(&h2);
    bad.trace_id = vec![0; 16];
    r.resource_spans[0].scope_spans[0].spans.push(bad);
    let resp = grpc.export(r).await.expect("export").into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);
}

#[tokio::test]
async fn grpc_errors_use_the_codes_exporters_act_on() {
    let s = server(&["--max-spans-per-request", "2"]);
    let mut grpc = client(&s).await;
    let (h, id) = trace_hex(23);
    // Unknown experiment: NOT_FOUND, nothing stored.
    let mut req = tonic::Request::new(request(&h, &[SpanSpec::root(1, "x")]));
    req.metadata_mut()
        .insert("x-mlflow-experiment-id", "9999".parse().unwrap());
    let err = grpc.export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    // Too many spans: INVALID_ARGUMENT (a retry cannot help).
    let spans: Vec<SpanSpec> = (1..=3).map(|i| SpanSpec::root(i, "s")).collect();
    let err = grpc.export(request(&h, &spans)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("spans"), "{}", err.message());
    let t = s
        .client()
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
        .await;
    assert_eq!(t.status, 404);
}

#[tokio::test]
async fn grpc_requires_the_token_when_auth_is_on() {
    let s = server(&["--auth-token", "s3cret-token"]);
    let mut grpc = client(&s).await;
    let (h, _) = trace_hex(24);
    let err = grpc
        .export(request(&h, &[SpanSpec::root(1, "x")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(request(&h, &[SpanSpec::root(1, "x")]));
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret-token".parse().unwrap());
    grpc.export(req).await.expect("authorised export");
}
