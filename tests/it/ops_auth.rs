//! Authentication on every path: the token as `Authorization: Bearer`
//! (MLFLOW_TRACKING_TOKEN) and as the basic-auth password
//! (MLFLOW_TRACKING_USERNAME/PASSWORD), wrong and missing credentials (401
//! in MLflow's JSON shape), `/health` open, OTLP/HTTP and gRPC metadata,
//! `TRACEBOX_AUTH_TOKEN`, and the refusal to serve a public address
//! without a token unless `--insecure-public` says so.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::{Value, json};

use crate::harness::{Server, free_port};
use crate::otlp_http::{SpanSpec, request, trace_hex};

const TOKEN: &str = "s3cret-token-for-tests";

fn search_body() -> Value {
    json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]})
}

async fn call(url: &str, auth: Option<String>) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/api/3.0/mlflow/traces/search"))
        .json(&search_body());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), challenge)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn bearer_and_basic_are_accepted_everything_else_gets_401_json() {
    let s = Server::start_with(&["--auth-token", TOKEN]);
    let url = &s.url;
    for (auth, want) in [
        (None, 401),
        (Some(format!("Bearer {TOKEN}")), 200),
        (Some(format!("bearer {TOKEN}")), 200),
        (Some("Bearer wrong-token-xyz".to_string()), 401),
        (Some(format!("Bearer {TOKEN}x")), 401),
        (Some(basic("alice", TOKEN)), 200),
        (Some(basic("", TOKEN)), 200),
        (Some(basic("alice", "wrong")), 401),
        (Some(basic(TOKEN, "wrong")), 401),
        (Some("Basic !!!not-base64".to_string()), 401),
        (Some(TOKEN.to_string()), 401),
    ] {
        let (status, body, challenge) = call(url, auth.clone()).await;
        assert_eq!(status, want, "{auth:?}: {body}");
        if want == 401 {
            assert_eq!(body["error_code"], "UNAUTHENTICATED", "{auth:?}: {body}");
            assert!(body["message"].as_str().unwrap().contains("Bearer"));
            assert!(challenge.unwrap().contains("Basic"));
        }
    }

    // /health stays open for load balancers; everything else is closed.
    let http = reqwest::Client::new();
    let h = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    for path in [
        "/metrics",
        "/api/tracebox/v1/status",
        "/version",
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
    ] {
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without credentials");
        let r = http
            .get(format!("{url}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }

    // OTLP/HTTP: refused without the token (and counted), stored with it.
    let (h, id) = trace_hex(0x41);
    let body = request(&h, &[SpanSpec::root(1, "secured")]).encode_to_vec();
    let post = |auth: Option<&str>| {
        let mut r = http
            .post(format!("{url}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        if let Some(a) = auth {
            r = r.header("authorization", a.to_string());
        }
        r.send()
    };
    let r = post(None).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post(Some(&format!("Bearer {TOKEN}"))).await.unwrap();
    assert_eq!(r.status(), 200);
    let got = http
        .get(format!("{url}/api/3.0/mlflow/traces/get?trace_id={id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let metrics = http
        .get(format!("{url}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tracebox_rejected_requests_total{reason=\"unauthenticated\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn grpc_needs_the_token_in_metadata() {
    let port = free_port();
    let s = Server::start_with(&["--auth-token", TOKEN, "--otlp-grpc-port", &port.to_string()]);
    let grpc = s.grpc.clone().expect("gRPC address");
    let mut client = TraceServiceClient::connect(grpc).await.unwrap();
    let (h, id) = trace_hex(0x42);
    let make = |auth: Option<String>| {
        let mut r = tonic::Request::new(request(&h, &[SpanSpec::root(1, "grpc-secured")]));
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    };
    let e = client.export(make(None)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = client
        .export(make(Some("Bearer nope-nope-nope".into())))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    client
        .export(make(Some(format!("Bearer {TOKEN}"))))
        .await
        .unwrap();
    client
        .export(make(Some(basic("svc", TOKEN))))
        .await
        .unwrap();
    let got = reqwest::Client::new()
        .get(format!("{}/api/3.0/mlflow/traces/get?trace_id={id}", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
}

/// Starts the binary on a fresh directory (kept until the child is done).
fn serve(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, tempfile::TempDir) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracebox"));
    let dir = tempfile::tempdir().unwrap();
    cmd.arg("serve")
        .arg("--data")
        .arg(dir.path())
        .args(["--port", "0", "--otlp-grpc-port", "0"])
        .args(args)
        .env_remove("TRACEBOX_AUTH_TOKEN")
        .env_remove("TRACEBOX_INSECURE_PUBLIC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.spawn().unwrap(), dir)
}

/// Waits for the "listening" line; returns the port.
fn listening_port(child: &mut std::process::Child) -> u16 {
    let out = child.stdout.take().unwrap();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("tracebox listening on ") {
            return u.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
    }
    panic!("server did not start");
}

#[tokio::test]
async fn a_public_address_needs_a_token_or_an_explicit_opt_out() {
    let out = serve(&["--host", "0.0.0.0"], &[])
        .0
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve 0.0.0.0 without authentication")
            && err.contains("--auth-token"),
        "{err}"
    );

    let out = serve(&["--host", "0.0.0.0", "--auth-token", "short"], &[])
        .0
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));

    // --insecure-public: serves without authentication, on every interface.
    let (mut child, _dir) = serve(&["--host", "0.0.0.0", "--insecure-public"], &[]);
    let port = listening_port(&mut child);
    let (status, _, _) = call(&format!("http://127.0.0.1:{port}"), None).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);

    // The token from the environment (what container deployments use).
    let (mut child, _dir2) = serve(&["--host", "0.0.0.0"], &[("TRACEBOX_AUTH_TOKEN", TOKEN)]);
    let port = listening_port(&mut child);
    let url = format!("http://127.0.0.1:{port}");
    let (anon, _, _) = call(&url, None).await;
    let (authed, _, _) = call(&url, Some(format!("Bearer {TOKEN}"))).await;
    let health = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .status();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!((anon, authed, health.as_u16()), (401, 200, 200));
}
