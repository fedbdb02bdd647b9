//! `--forward-otlp`: every accepted span reaches the upstream (here a
//! second tracebox, behind a token), across an upstream that is down when
//! the spans arrive, a `kill -9` of the forwarding server, and an outage
//! while it runs. Spans wait in SQLite; none is lost.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Client, Server, free_port};
use crate::otlp_http::{SpanSpec, export_protobuf};

const TOKEN: &str = "upstream-token-123";

fn hexn(n: u64) -> (String, String) {
    let h = format!("{:032x}", 0xf0d_0000_0000_0000_0000u128 + n as u128);
    (h.clone(), format!("tr-{h}"))
}

/// Sends trace `n` (three spans) to `c`.
async fn send(c: &Client, n: u64) -> String {
    let (h, id) = hexn(n);
    let spans = [
        SpanSpec::root(1, "fwd-root")
            .span_type("AGENT")
            .inputs(json!({"q": format!("question {n}")}))
            .outputs(json!("answer"))
            .attr("mlflow.traceTag.origin", json!("edge")),
        SpanSpec::child(2, 1, "llm")
            .span_type("LLM")
            .attr("gen_ai.usage.input_tokens", json!(7))
            .attr("listy", json!([1, "two", {"three": 3.5}])),
        SpanSpec::child(3, 2, "tool").error("tool failed"),
    ];
    let r = export_protobuf(c, &h, &spans, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    id
}

fn authed(s: &Server) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    Client {
        base: s.url.clone(),
        http: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
    }
}

/// Spans of a trace, comparable across servers (attribute order aside).
async fn spans(c: &Client, id: &str) -> Option<Vec<Value>> {
    let r = c
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
        .await;
    if r.status != 200 {
        return None;
    }
    let mut spans = r.body["trace"]["spans"].as_array()?.clone();
    for s in &mut spans {
        if let Some(a) = s["attributes"].as_array_mut() {
            a.sort_by(|x, y| x["key"].as_str().cmp(&y["key"].as_str()));
        }
    }
    Some(spans)
}

async fn wait_delivered(src: &Client, up: &Client, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(45);
    for id in ids {
        loop {
            let want = spans(src, id).await.expect("source trace");
            match spans(up, id).await {
                Some(got) if got.len() == want.len() => {
                    assert_eq!(got, want, "forwarded spans of {id} differ");
                    break;
                }
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => panic!("{id} never reached the upstream: {other:?}"),
            }
        }
    }
}

async fn status(c: &Client) -> Value {
    c.get("/api/tracebox/v1/status").await.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_reaches_the_upstream_across_outages_and_crashes() {
    let port = free_port();
    let upstream_url = format!("http://127.0.0.1:{port}");
    let header = format!("authorization=Bearer {TOKEN}");
    let args = [
        "--forward-otlp",
        upstream_url.as_str(),
        "--forward-otlp-header",
        header.as_str(),
        "--retention-days",
        "0",
    ];
    let mut edge = Server::start_with(&args);
    let c = edge.client();
    let mut ids = Vec::new();

    // 1. The upstream is down: spans are accepted and wait.
    for n in 0..10 {
        ids.push(send(&c, n).await);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&c).await;
        let f = &s["forwarding"];
        if f["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach"))
        {
            assert_eq!(f["url"], format!("{upstream_url}/v1/traces"));
            assert_eq!(f["backlog_spans"], 30, "{s}");
            assert_eq!(f["forwarded_spans"], 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no forwarding error reported: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. The forwarding server crashes; its outbox survives.
    edge.restart();
    let c = edge.client();
    for n in 10..15 {
        ids.push(send(&c, n).await);
    }

    // 3. The upstream comes up (requiring a token): everything arrives.
    let port_s = port.to_string();
    let mut upstream = Server::start_with(&["--port", &port_s, "--auth-token", TOKEN]);
    let up = authed(&upstream);
    wait_delivered(&c, &up, &ids).await;
    let s = status(&c).await;
    assert_eq!(s["forwarding"]["backlog_spans"], 0, "{s}");

    // 4. An outage while both run, then recovery.
    upstream.kill9();
    for n in 15..20 {
        ids.push(send(&c, n).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let upstream = Server::start_in(upstream.dir(), &["--port", &port_s, "--auth-token", TOKEN]);
    let up = authed(&upstream);
    wait_delivered(&c, &up, &ids).await;

    // Tags carried on spans travel with them; counts add up.
    let r = up
        .post(
            "/api/3.0/mlflow/traces/search",
            json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}],
                   "filter": "tags.origin = 'edge'", "max_results": 100}),
        )
        .await;
    assert_eq!(
        r.body["traces"].as_array().map(Vec::len),
        Some(ids.len()),
        "{}",
        r.text
    );
    let metrics = c.get("/metrics").await.text;
    let forwarded: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tracebox_forwarded_spans_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // The restart lost this process's counter for the first batches only if
    // they had been sent before it; here none had, so it counts them all.
    assert_eq!(forwarded, 3 * ids.len() as u64, "{metrics}");
    assert!(
        metrics.contains("tracebox_forward_failures_total"),
        "{metrics}"
    );
}
