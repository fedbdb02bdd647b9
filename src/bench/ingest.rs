//! `tracebox bench ingest`: sustained OTLP/HTTP protobuf ingestion.
//!
//! Starts the server in-process on loopback with a fresh data directory (or
//! targets `--url`), then N concurrent senders post batches of realistic
//! 4-span traces (an MLflow-attributed agent root, an OpenInference
//! retriever, an OpenTelemetry GenAI chat span with token usage and
//! messages, a Traceloop tool) and wait for each 200 — which the server only
//! sends after the spans are committed — before sending the next. Reports
//! spans/s, CPU (user+sys seconds over wall time, split between the
//! senders' thread and the rest of the process) and peak RSS, then checks
//! that every span is in the database.
//!
//! Knows the OTLP wire types (it is a client) and the public server entry
//! points; it does not reach into the store except to count spans.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::json;

use super::{CpuTime, cpu_by_thread, peak_rss_bytes, process_cpu, thread_cpu};
use crate::cli::BenchIngestArgs;

/// Spans per generated trace.
const SPANS_PER_TRACE: usize = 4;

const WORDS: &[&str] = &[
    "order",
    "shipping",
    "refund",
    "customer",
    "invoice",
    "delivery",
    "package",
    "warehouse",
    "tracking",
    "address",
    "payment",
    "return",
    "policy",
    "account",
    "support",
    "agent",
    "question",
    "answer",
    "product",
    "status",
    "delayed",
    "express",
    "standard",
    "label",
    "carrier",
    "weekend",
    "monday",
    "europe",
    "discount",
    "voucher",
    "receipt",
    "balance",
];

/// Pseudo-random prose of about `n` bytes (JSON-safe).
fn text(rng: &mut fastrand::Rng, n: usize) -> String {
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
        if rng.u8(..12) == 0 {
            s.push_str(&rng.u32(..100_000).to_string());
        }
    }
    s
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

/// A reusable pool of realistic attribute sets; traces pick from it so the
/// senders spend their time sending, not generating text.
pub(super) struct Templates {
    roots: Vec<Vec<KeyValue>>,
    retrievers: Vec<Vec<KeyValue>>,
    chats: Vec<Vec<KeyValue>>,
    tools: Vec<Vec<KeyValue>>,
}

impl Templates {
    pub(super) fn new(payload: usize, seed: u64) -> Templates {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = 64;
        // Payload split: the chat span carries the most (messages), as in
        // real agents; the average over the 4 spans is `payload`.
        let (root, retr, chat, tool) = (payload, payload, payload * 3 / 2, payload / 2);
        let mut t = Templates {
            roots: Vec::new(),
            retrievers: Vec::new(),
            chats: Vec::new(),
            tools: Vec::new(),
        };
        for k in 0..n {
            let q = text(&mut rng, root / 2);
            // MLflow's SDK in OTLP-exporter mode pre-encodes values as JSON text.
            t.roots.push(vec![
                s("mlflow.spanType", "\"AGENT\""),
                s(
                    "mlflow.spanInputs",
                    json!({"messages": [{"role": "user", "content": q}]}).to_string(),
                ),
                s(
                    "mlflow.spanOutputs",
                    json!({"answer": text(&mut rng, root / 2)}).to_string(),
                ),
                s("session.id", format!("session-{}", k % 16)),
                s("user.id", format!("user-{}", k % 7)),
                s("mlflow.traceTag.environment", "production"),
            ]);
            let docs: Vec<_> = (0..3)
                .map(|d| {
                    json!({"id": format!("kb://{k}/{d}"), "score": 0.9 - d as f64 * 0.1,
                           "content": text(&mut rng, retr * 3 / 10)})
                })
                .collect();
            t.retrievers.push(vec![
                s("openinference.span.kind", "RETRIEVER"),
                s("input.value", text(&mut rng, retr / 10)),
                s("input.mime_type", "text/plain"),
                s("output.value", json!({"documents": docs}).to_string()),
                s("output.mime_type", "application/json"),
            ]);
            let msgs = json!([
                {"role": "system", "parts": [{"type": "text", "content": text(&mut rng, chat / 6)}]},
                {"role": "user", "parts": [{"type": "text", "content": text(&mut rng, chat / 3)}]},
            ]);
            let out = json!([{"role": "assistant", "finish_reason": "stop",
                               "parts": [{"type": "text", "content": text(&mut rng, chat / 3)}]}]);
            t.chats.push(vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.provider.name", "openai"),
                s("gen_ai.request.model", "gpt-4o-mini"),
                s("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                kv(
                    "gen_ai.request.temperature",
                    any_value::Value::DoubleValue(0.2),
                ),
                i("gen_ai.usage.input_tokens", 200 + k as i64),
                i("gen_ai.usage.output_tokens", 40 + k as i64),
                s("gen_ai.input.messages", msgs.to_string()),
                s("gen_ai.output.messages", out.to_string()),
                s("gen_ai.response.id", format!("chatcmpl-{k:08x}")),
            ]);
            t.tools.push(vec![
                s("traceloop.span.kind", "tool"),
                s("traceloop.entity.name", "lookup_order"),
                s(
                    "traceloop.entity.input",
                    json!({"order_id": format!("A-{k}"), "note": text(&mut rng, tool / 3)})
                        .to_string(),
                ),
                s(
                    "traceloop.entity.output",
                    json!({"status": "shipped", "detail": text(&mut rng, tool * 2 / 3)})
                        .to_string(),
                ),
            ]);
        }
        t
    }
}

/// Builds one export request of `batch` spans (whole traces, root last, as
/// batch exporters emit spans in end order) with fresh ids. Each trace lasts
/// 1 s and ended up to `spread_ns` before `now_ns`, the moment the batch is
/// built: a batch exporter sends the spans that ended since its last export
/// (every 5 s at most by default), so stored start times trail the clock by
/// seconds.
pub(super) fn build_request(
    t: &Templates,
    rng: &mut fastrand::Rng,
    batch: usize,
    now_ns: u64,
    spread_ns: u64,
) -> ExportTraceServiceRequest {
    let mut spans = Vec::with_capacity(batch);
    while spans.len() < batch {
        let trace_id = rng.u128(..).to_be_bytes().to_vec();
        let k = rng.usize(..t.roots.len());
        let root_id = rng.u64(1..).to_be_bytes().to_vec();
        let start = now_ns - 1_000_000_000 - rng.u64(0..spread_ns.max(1));
        let mut child =
            |name: &str, off_ms: u64, dur_ms: u64, attrs: &Vec<KeyValue>, kind: i32| Span {
                trace_id: trace_id.clone(),
                span_id: rng.u64(1..).to_be_bytes().to_vec(),
                parent_span_id: root_id.clone(),
                name: name.to_string(),
                kind,
                start_time_unix_nano: start + off_ms * 1_000_000,
                end_time_unix_nano: start + (off_ms + dur_ms) * 1_000_000,
                attributes: attrs.clone(),
                status: Some(Status {
                    code: 1,
                    message: String::new(),
                }),
                ..Default::default()
            };
        let remaining = batch - spans.len();
        let mut trace = vec![
            child("retrieve_docs", 2, 30, &t.retrievers[k], 1),
            child("chat gpt-4o-mini", 35, 900, &t.chats[k], 3),
            child("lookup_order", 940, 20, &t.tools[k], 1),
        ];
        trace.push(Span {
            trace_id: trace_id.clone(),
            span_id: root_id.clone(),
            name: "support_agent".to_string(),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1_000_000_000,
            attributes: t.roots[k].clone(),
            status: Some(Status {
                code: 1,
                message: String::new(),
            }),
            ..Default::default()
        });
        // A short last batch sends a partial trace (root missing): the
        // server shows it in progress, as with a real exporter split.
        trace.truncate(remaining.min(SPANS_PER_TRACE));
        spans.extend(trace);
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "support-bot"),
                    s("telemetry.sdk.language", "python"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[derive(Debug, Default)]
struct SenderStats {
    latencies: Vec<Duration>,
    bytes: usize,
    retries: usize,
}

async fn sender(
    client: reqwest::Client,
    url: String,
    templates: Arc<Templates>,
    batches: Arc<AtomicUsize>,
    batch: usize,
    spread_ns: u64,
    seed: u64,
) -> anyhow::Result<SenderStats> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stats = SenderStats::default();
    loop {
        // Claim a batch; stop when all are claimed.
        if batches
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            return Ok(stats);
        }
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        let body = build_request(&templates, &mut rng, batch, now_ns, spread_ns).encode_to_vec();
        stats.bytes += body.len();
        let started = Instant::now();
        loop {
            let r = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .await?;
            let status = r.status();
            let text = r.bytes().await?;
            if status.is_success() {
                break;
            }
            // Exporters retry 503 (overload) after a pause; so do we.
            if status.as_u16() == 503 || status.as_u16() == 429 {
                stats.retries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            anyhow::bail!(
                "server answered {status}: {}",
                String::from_utf8_lossy(&text)
            );
        }
        stats.latencies.push(started.elapsed());
    }
}

struct Outcome {
    spans: usize,
    batches: usize,
    wall: Duration,
    senders_cpu: CpuTime,
    stats: SenderStats,
}

/// Runs the senders on their own thread (one single-threaded runtime), so
/// their CPU can be told apart from the server's.
fn drive(url: String, args: &BenchIngestArgs) -> anyhow::Result<Outcome> {
    let batches = args.spans.div_ceil(args.batch);
    let templates = Arc::new(Templates::new(args.payload_bytes, 7));
    let senders = args.senders.max(1);
    let batch = args.batch;
    let spread_ns = args.time_spread_ms.saturating_mul(1_000_000);
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> anyhow::Result<Outcome> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(senders)
                        .build()?;
                    let counter = Arc::new(AtomicUsize::new(batches));
                    let cpu0 = thread_cpu();
                    let t0 = Instant::now();
                    let tasks: Vec<_> = (0..senders)
                        .map(|n| {
                            tokio::spawn(sender(
                                client.clone(),
                                url.clone(),
                                templates.clone(),
                                counter.clone(),
                                batch,
                                spread_ns,
                                1000 + n as u64,
                            ))
                        })
                        .collect();
                    let mut stats = SenderStats::default();
                    for t in tasks {
                        let s = t.await??;
                        stats.latencies.extend(s.latencies);
                        stats.bytes += s.bytes;
                        stats.retries += s.retries;
                    }
                    let wall = t0.elapsed();
                    Ok(Outcome {
                        spans: batches * batch,
                        batches,
                        wall,
                        senders_cpu: thread_cpu().since(cpu0),
                        stats,
                    })
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))?
    })
}

fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn run(args: BenchIngestArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.spans == 0 {
        anyhow::bail!("--spans and --batch must be positive");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; build with --release for meaningful figures");
    }
    match args.url.clone() {
        Some(base) => {
            let url = format!("{}/v1/traces", base.trim_end_matches('/'));
            let cpu0 = process_cpu();
            let o = drive(url, &args)?;
            report(
                &args,
                &o,
                process_cpu().since(cpu0),
                None,
                &[],
                "external server",
            )
        }
        None => run_in_process(&args),
    }
}

/// How long after now the full-text index holds every stored span (its
/// passes run at most once a second, so up to about a second is normal).
async fn index_catch_up(
    query: &crate::query::QueryEngine,
    store: &crate::store::Store,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let Some(index) = query.index() else {
        return Ok(Duration::ZERO);
    };
    let last = store.read(crate::store::index_feed::max_span_id).await?;
    while index.watermark() < last {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the full-text index did not catch up within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

fn run_in_process(args: &BenchIngestArgs) -> anyhow::Result<()> {
    let (dir, temp) = match &args.data {
        Some(d) => (d.clone(), false),
        None => (super::scratch_dir("ingest")?, true),
    };
    let result = (|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let config = crate::config::Config::for_dir(&dir);
        let (app, listener) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let app = crate::app::App::start(config)?;
            anyhow::Ok((app, listener))
        })?;
        let store = app.state.store.clone();
        let query = app.state.query.clone();
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(app.serve(listener, None, async {
            let _ = stop_rx.await;
        }));
        let before = rt.block_on(store.span_count())?;
        let cpu0 = process_cpu();
        let threads0 = cpu_by_thread();
        let o = drive(format!("http://{addr}/v1/traces"), args)?;
        let cpu = process_cpu().since(cpu0);
        let mut threads: Vec<(String, f64)> = cpu_by_thread()
            .into_iter()
            .map(|(k, v)| {
                let d = v - threads0.get(&k).copied().unwrap_or(0.0);
                (k, d)
            })
            .filter(|(_, d)| *d > 0.0)
            .collect();
        // /proc lists live threads only: tantivy starts its indexing worker
        // anew after every commit, so most of the indexing CPU was spent by
        // threads gone by now. What the process used beyond the live
        // threads is theirs.
        let ended = cpu.total() - threads.iter().map(|(_, s)| s).sum::<f64>();
        if ended > 0.0 {
            threads.push((
                "threads since ended (mostly tantivy indexers)".to_string(),
                ended,
            ));
        }
        let stored = rt.block_on(store.span_count())? - before;
        // The index follows the store asynchronously: a rate the indexer
        // could not sustain would show as a long wait here.
        let index_wait = rt.block_on(index_catch_up(&query, &store))?;
        let _ = stop_tx.send(());
        let _ = rt.block_on(server);
        let db_bytes = crate::app::dir_size(&dir);
        report(
            args,
            &o,
            cpu,
            Some((stored, db_bytes, index_wait)),
            &threads,
            "in-process server, fresh data directory",
        )
    })();
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn report(
    args: &BenchIngestArgs,
    o: &Outcome,
    cpu: CpuTime,
    stored: Option<(i64, u64, Duration)>,
    threads: &[(String, f64)],
    target: &str,
) -> anyhow::Result<()> {
    let wall = o.wall.as_secs_f64();
    let rate = o.spans as f64 / wall;
    let mut lat = o.stats.latencies.clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let server_cpu = cpu.total() - o.senders_cpu.total();
    let rss = peak_rss_bytes();
    println!(
        "tracebox bench ingest ({target}): {} spans = {} batches x {} spans, {} senders, {} traces of {SPANS_PER_TRACE} spans",
        fmt_int(o.spans as u64),
        fmt_int(o.batches as u64),
        args.batch,
        args.senders,
        fmt_int(o.spans.div_ceil(SPANS_PER_TRACE) as u64),
    );
    println!(
        "  throughput  {} spans/s  ({:.1} s wall, {:.0} MB/s of OTLP protobuf, {} B/span)",
        fmt_int(rate as u64),
        wall,
        o.stats.bytes as f64 / wall / 1e6,
        o.stats.bytes / o.spans.max(1),
    );
    println!(
        "  latency     p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms per batch; {} retries after 503",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        o.stats.retries
    );
    println!(
        "  CPU         {:.2} cores: user {:.1} s + sys {:.1} s over {:.1} s wall (senders {:.2} cores, the rest {:.2})",
        cpu.total() / wall,
        cpu.user,
        cpu.sys,
        wall,
        o.senders_cpu.total() / wall,
        server_cpu / wall,
    );
    // Steadier than the rate from run to run on a shared machine: the
    // figure to compare builds by (50,000 spans/s on 2 cores is 40 µs).
    // Only in-process: against --url this process runs the senders alone.
    let per_span = stored.is_some().then(|| server_cpu / o.spans as f64 * 1e6);
    if let Some(us) = per_span {
        println!(
            "  per span    {us:.1} µs of server CPU ({:.1} µs with the senders')",
            cpu.total() / o.spans as f64 * 1e6,
        );
    }
    if !threads.is_empty() {
        // Which thread bounds throughput: the writer near 1.00 means SQLite
        // is the limit; all threads together near the core count, the CPU.
        let mut t: Vec<_> = threads.to_vec();
        t.sort_by(|a, b| b.1.total_cmp(&a.1));
        let parts: Vec<String> = t
            .iter()
            .map(|(n, s)| format!("{n} {:.2}", s / wall))
            .collect();
        println!("  by thread   {} (cores)", parts.join(", "));
    }
    println!(
        "  peak RSS    {:.0} MB (this process{})",
        rss as f64 / 1e6,
        if stored.is_some() {
            ", server and senders"
        } else {
            ", senders only"
        }
    );
    if let Some((n, db, index_wait)) = stored {
        println!(
            "  stored      {} spans in SQLite ({:.0} MB on disk); full-text index caught up {:.1} s after the last upload",
            fmt_int(n as u64),
            db as f64 / 1e6,
            index_wait.as_secs_f64()
        );
        if n as usize != o.spans {
            anyhow::bail!("expected {} stored spans, found {n}", o.spans);
        }
    }
    if args.json {
        println!(
            "{}",
            json!({
                "spans": o.spans, "batch": args.batch, "senders": args.senders,
                "wall_s": wall, "spans_per_s": rate,
                "cpu_user_s": cpu.user, "cpu_sys_s": cpu.sys,
                "cpu_cores": cpu.total() / wall,
                "server_cpu_us_per_span": per_span,
                "sender_cpu_cores": o.senders_cpu.total() / wall,
                "peak_rss_bytes": rss,
                "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                "bytes_sent": o.stats.bytes,
                "stored_spans": stored.map(|s| s.0),
                "index_catch_up_s": stored.map(|s| s.2.as_secs_f64()),
                "thread_cpu_cores": threads
                    .iter()
                    .map(|(n, s)| (n.clone(), json!(s / wall)))
                    .collect::<serde_json::Map<_, _>>(),
            })
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_whole_traces_that_ended_within_the_spread() {
        let t = Templates::new(256, 1);
        let mut rng = fastrand::Rng::with_seed(2);
        let now = 1_800_000_000_000_000_000u64;
        let spread = 5_000_000_000u64;
        let req = build_request(&t, &mut rng, 512, now, spread);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 512);
        for trace in spans.chunks(SPANS_PER_TRACE) {
            let root = &trace[SPANS_PER_TRACE - 1];
            assert!(root.parent_span_id.is_empty(), "the root comes last");
            assert!(trace.iter().all(|s| s.trace_id == root.trace_id));
            assert!(root.end_time_unix_nano <= now);
            assert!(root.start_time_unix_nano >= now - 1_000_000_000 - spread);
        }
        // A one-span batch is a trace whose root has not arrived yet.
        let partial = build_request(&t, &mut rng, 1, now, spread);
        let span = &partial.resource_spans[0].scope_spans[0].spans[0];
        assert!(!span.parent_span_id.is_empty());
    }
}
