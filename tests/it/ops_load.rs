//! Backpressure: 32 concurrent clients on loopback, half of them sending
//! 16 MiB uploads, for a bounded time (`TRACEBOX_LOAD_SECS`, default 15 s;
//! 60 s for the figures in the README). Every answer must be a 200 or the
//! documented 503 with `Retry-After`, and the server's peak resident memory
//! must stay under a bound derived from its in-flight byte budget instead
//! of growing with the offered load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message;
use serde_json::json;

use crate::harness::Server;
use crate::otlp_http::{SpanSpec, request};

const CLIENTS: usize = 32;
const BIG_CLIENTS: usize = 16;
/// The budget the server runs with in this test.
const BUDGET_MIB: u64 = 64;
/// Peak RSS allowed: a fixed allowance for the runtime, SQLite page caches
/// and the read pool, plus a multiple of the byte budget for decoded copies
/// of the uploads holding it (bytes → protobuf structs → JSON attribute
/// maps → SQL parameters).
const RSS_BOUND_MIB: u64 = 200 + 5 * BUDGET_MIB;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A request of `spans` spans with `pad` bytes of attribute each.
fn body(hex: &str, spans: usize, pad: usize) -> Vec<u8> {
    let filler = "x".repeat(pad);
    let mut v = vec![SpanSpec::root(1, "load-root")];
    for i in 1..spans {
        v.push(
            SpanSpec::child((i % 250) as u8 + 2, 1, "load-child")
                .attr("pad", json!(filler))
                .attr("i", json!(i)),
        );
    }
    // Child ids repeat past 250: make them unique per request.
    let mut req = request(hex, &v);
    for (i, s) in req.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        s.span_id = ((i as u64) + 1).to_be_bytes().to_vec();
        if i > 0 {
            s.parent_span_id = 1u64.to_be_bytes().to_vec();
        }
    }
    req.encode_to_vec()
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    busy: AtomicU64,
    other: Mutex<Vec<String>>,
    bytes: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_get_200_or_503_and_memory_stays_bounded() {
    let secs: u64 = std::env::var("TRACEBOX_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let budget = format!("{BUDGET_MIB}M");
    let server = Server::start_with(&[
        "--max-inflight-bytes",
        &budget,
        "--retention-days",
        "0",
        "--max-disk",
        "off",
    ]);
    let pid = server.pid().unwrap();
    let base = server.url.clone();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));

    let sampler = {
        let (stop, peak) = (stop.clone(), peak_rss.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (base, tally, stop, seq) = (base.clone(), tally.clone(), stop.clone(), seq.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap();
            let big = client < BIG_CLIENTS;
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
                let hex = format!("{:032x}", 0x10ad_0000_0000_0000_0000u128 + n as u128);
                // Big: 16 MiB in 2,000 spans; small: 20 spans of 1 KiB.
                let payload = if big {
                    body(&hex, 2000, 8 << 10)
                } else {
                    body(&hex, 20, 1 << 10)
                };
                let len = payload.len() as u64;
                let r = http
                    .post(format!("{base}/v1/traces"))
                    .header("content-type", "application/x-protobuf")
                    .body(payload)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        tally.bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    Ok(r) if r.status() == 503 && r.headers().contains_key("retry-after") => {
                        tally.busy.fetch_add(1, Ordering::Relaxed);
                        // Retry-After is 1 s; clients honour it.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Ok(r) => {
                        let s = r.status();
                        let t = r.text().await.unwrap_or_default();
                        tally.other.lock().push(format!("{s}: {t}"));
                    }
                    Err(e) => tally.other.lock().push(format!("transport: {e}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let _ = sampler.await;
    let hwm_mib = status_kib(pid, "VmHWM:") / 1024;
    let peak_mib = peak_rss.load(Ordering::Relaxed) / 1024;
    let ok = tally.ok.load(Ordering::Relaxed);
    let busy = tally.busy.load(Ordering::Relaxed);
    let other = tally.other.lock().clone();
    let metrics = server.client().get("/metrics").await.text;
    let rejects: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tracebox_rejected_requests_total"))
        .collect();
    eprintln!(
        "load test: {CLIENTS} clients ({BIG_CLIENTS} sending 16 MiB bodies) for {secs} s: {ok} × 200 \
         ({:.0} MiB stored), {busy} × 503 with Retry-After, {} other; peak RSS {peak_mib} MiB \
         (VmHWM {hwm_mib} MiB), bound {RSS_BOUND_MIB} MiB with a {BUDGET_MIB} MiB budget; {rejects:?}",
        tally.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        other.len(),
    );
    assert!(
        other.is_empty(),
        "answers other than 200/503: {:?}",
        &other[..other.len().min(5)]
    );
    assert!(ok > 0, "nothing was accepted");
    assert!(
        hwm_mib < RSS_BOUND_MIB,
        "peak RSS {hwm_mib} MiB is over the bound of {RSS_BOUND_MIB} MiB"
    );
}
