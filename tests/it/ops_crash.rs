//! Durability under fire: four clients ingest as fast as they can (two over
//! OTLP protobuf, two the way the MLflow SDK does: spans over OTLP, then
//! StartTraceV3) while the test `kill -9`s the server at random moments.
//! After every crash the database must pass `PRAGMA integrity_check`, and
//! after every restart each trace that got a 200 must be there with all its
//! spans and be found by a tag filter and, once the index has caught up
//! from SQLite, by full text (`trace.text LIKE`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::otlp_http::{SpanSpec, request};

const ROUNDS: usize = 6;
const CLIENTS: usize = 4;

#[derive(Clone, Debug)]
struct Acked {
    trace_id: String,
    client: usize,
    spans: usize,
    /// A word only this trace's spans contain (full-text probe).
    word: String,
}

fn new_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(2)
        .build()
        .unwrap()
}

/// One trace's spans: a root and `n - 1` children, all carrying `word`.
fn spans_for(n: usize, client: usize, word: &str) -> Vec<SpanSpec> {
    let mut v = vec![
        SpanSpec::root(1, "crash-root")
            .span_type("CHAIN")
            .inputs(json!({"question": format!("about {word}")}))
            .outputs(json!("fine"))
            .attr("mlflow.traceTag.crash_client", json!(format!("c{client}")))
            .start_ms(chrono_now_ms()),
    ];
    for i in 1..n {
        v.push(
            SpanSpec::child(1 + i as u8, 1, &format!("step-{i}"))
                .inputs(json!({"step": i, "w": word}))
                .start_ms(chrono_now_ms()),
        );
    }
    v
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends one trace; `Ok(true)` when every request got a 200, `Ok(false)`
/// on a refusal (503), `Err` when the server is gone.
async fn send_trace(
    http: &reqwest::Client,
    base: &str,
    client: usize,
    hex: &str,
    spans: &[SpanSpec],
) -> Result<bool, reqwest::Error> {
    let body = request(hex, spans).encode_to_vec();
    let r = http
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await?;
    if r.status() != 200 {
        return Ok(false);
    }
    if client % 2 == 1 {
        // MLflow SDK style: the trace info follows the spans.
        let info = json!({"trace": {"trace_info": {
            "trace_id": format!("tr-{hex}"),
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}},
            "request_time": "2026-11-25T16:59:37.382Z",
            "execution_duration": "0.005s",
            "state": "OK",
            "trace_metadata": {"mlflow.trace_schema.version": "3"},
            "tags": {"crash_client": format!("c{client}"), "mlflow.traceName": "crash-root"},
        }}});
        let r = http
            .post(format!("{base}/api/3.0/mlflow/traces"))
            .json(&info)
            .send()
            .await?;
        if r.status() != 200 {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn search_all(c: &reqwest::Client, base: &str, filter: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}],
            "filter": filter, "max_results": 500,
        });
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let r = c
            .post(format!("{base}/api/3.0/mlflow/traces/search"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(format!("{status}: {v}"));
        }
        for t in v["traces"].as_array().into_iter().flatten() {
            out.push(t["trace_id"].as_str().unwrap_or_default().to_string());
        }
        match v["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_traces_survive_kill9_under_load() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--retention-days", "0", "--max-disk", "off"];
    let mut server = Server::start_in(tmp.path(), &args);
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
    let seq = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let http = new_http();
    for round in 0..ROUNDS {
        let base = server.url.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let (base, acked, seq, stop, refused) = (
                base.clone(),
                acked.clone(),
                seq.clone(),
                stop.clone(),
                refused.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let http = new_http();
                while !stop.load(Ordering::Relaxed) {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let hex = format!("{:08x}{:024x}", 0xc0a5_0000u32 + round as u32, n + 1);
                    let word = format!("w{round}z{client}z{n}");
                    let nspans = 1 + (n % 6) as usize;
                    let spans = spans_for(nspans, client, &word);
                    match send_trace(&http, &base, client, &hex, &spans).await {
                        Ok(true) => acked.lock().push(Acked {
                            trace_id: format!("tr-{hex}"),
                            client,
                            spans: nspans,
                            word,
                        }),
                        Ok(false) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break, // the server is gone
                    }
                }
            }));
        }
        // Let the clients run for a random moment, then pull the plug.
        tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(0..900))).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }

        // The files as the crash left them: SQLite must find them sound.
        {
            let conn = rusqlite::Connection::open(tmp.path().join("tracebox.db")).unwrap();
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok", "round {round}: integrity_check after kill -9");
        }

        server = Server::start_in(tmp.path(), &args);
        let base = server.url.clone();
        let all = acked.lock().clone();
        assert!(!all.is_empty(), "round {round}: no trace was acknowledged");

        // Present and complete: every span of every acknowledged trace.
        for chunk in all.chunks(50) {
            let q: Vec<String> = chunk
                .iter()
                .map(|a| format!("trace_ids={}", a.trace_id))
                .collect();
            let r: Value = http
                .get(format!(
                    "{base}/api/3.0/mlflow/traces/batchGet?{}",
                    q.join("&")
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let got: HashMap<String, usize> = r["traces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["trace_info"]["trace_id"].as_str().unwrap().to_string(),
                        t["spans"].as_array().map(Vec::len).unwrap_or(0),
                    )
                })
                .collect();
            for a in chunk {
                assert_eq!(
                    got.get(&a.trace_id),
                    Some(&a.spans),
                    "round {round}: acknowledged trace {} (client {}) lost or incomplete",
                    a.trace_id,
                    a.client
                );
            }
        }

        // Findable by filter: the tag every client put on its traces.
        for client in 0..CLIENTS {
            let found: BTreeSet<String> =
                search_all(&http, &base, &format!("tags.crash_client = 'c{client}'"))
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
            let missing: Vec<&str> = all
                .iter()
                .filter(|a| a.client == client && !found.contains(&a.trace_id))
                .map(|a| a.trace_id.as_str())
                .collect();
            assert!(
                missing.is_empty(),
                "round {round}: {} acknowledged traces of client {client} not found by tag, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(3)]
            );
        }

        // Findable by full text: the index catches up from SQLite after a
        // crash (in the background), so wait until it reports it has.
        server.client().wait_for_index().await;
        let sample: Vec<&Acked> = all.iter().rev().take(3).collect();
        for a in sample {
            let filter = format!("trace.text LIKE '%{}%'", a.word);
            let ids = search_all(&http, &base, &filter)
                .await
                .unwrap_or_else(|e| panic!("round {round}: full-text search failed: {e}"));
            assert!(
                ids.contains(&a.trace_id),
                "round {round}: {} not found by full text '{}' (got {ids:?})",
                a.trace_id,
                a.word
            );
        }
    }
    let total = acked.lock().len();
    eprintln!(
        "crash test: {ROUNDS} kill -9 rounds, {total} acknowledged traces all intact, {} refused (503), \
         found by tag and full text, {:.1} s",
        refused.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
