//! `tracebox bench floor`: the least CPU per span that OTLP ingestion with
//! SQLite and tantivy can cost on this machine, stage by stage.
//!
//! `bench ingest` measures the whole server; this measures a lower bound
//! for it. On `bench ingest`'s own requests (same generator, 512-span
//! batches), one stage at a time and with nothing else running, it times
//! only what no design that stores spans durably in SQLite and indexes
//! their text in tantivy can skip:
//! - `decode`: protobuf decoding of each request (the server's decoder);
//! - `sqlite`: one row per span (ids, name, times and its attributes as
//!   protobuf bytes, uncompressed) plus the trace-id index `get_trace`
//!   needs, one transaction per request, with the store's pragmas (WAL,
//!   `synchronous = NORMAL`, 8 KiB pages) and SQLite's own checkpoints;
//! - `index`: the server's tantivy index and analyzer fed each span's
//!   searchable text (computed beforehand, not timed), committed every
//!   50,000 documents, merges waited for.
//!
//! Not counted: HTTP, semantic conventions, payload compression, the
//! `traces` rows and indexes behind MLflow's filters, sessions, previews.
//! The sum of the three is therefore what the server could cost per span
//! if everything else were free; a throughput goal needing less than that
//! cannot be met with this storage on this machine.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::ingest::{Templates, build_request};
use super::{CpuTime, process_cpu};
use crate::api::otlp::{self, Encoding};
use crate::cli::BenchFloorArgs;
use crate::domain::{searchable, semconv};
use crate::index::{FieldText, SearchIndex};
use crate::store::{self, StoreOptions};

/// Documents per tantivy commit: about one second of the server's
/// indexer at 50,000 spans/s (it commits at most once a second).
const INDEX_COMMIT_DOCS: usize = 50_000;

/// One stage's cost.
struct Stage {
    name: &'static str,
    cpu: CpuTime,
    wall: f64,
}

/// Runs `f` and measures the process's CPU and the wall time it took.
fn timed(name: &'static str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Stage> {
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    f()?;
    Ok(Stage {
        name,
        cpu: process_cpu().since(cpu0),
        wall: t0.elapsed().as_secs_f64(),
    })
}

/// What [`measure`] found.
struct Report {
    spans: usize,
    requests: usize,
    /// OTLP protobuf bytes of all requests.
    bytes: usize,
    stages: [Stage; 3],
    /// Rows the `sqlite` stage stored and documents the `index` stage
    /// made searchable: proof that each stage did its whole job.
    rows: u64,
    docs: u64,
}

impl Report {
    fn per_span(&self, c: CpuTime) -> f64 {
        c.total() * 1e6 / self.spans.max(1) as f64
    }
    fn floor_us(&self) -> f64 {
        self.stages.iter().map(|s| self.per_span(s.cpu)).sum()
    }
}

pub fn run(args: BenchFloorArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.spans == 0 || args.goal == 0 {
        anyhow::bail!("--spans, --batch and --goal must be positive");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; build with --release for meaningful figures");
    }
    let dir = data_dir(args.data.as_deref())?;
    let result = measure(&args, &dir);
    if args.data.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    print(&args, &result?);
    Ok(())
}

fn print(args: &BenchFloorArgs, r: &Report) {
    let floor = r.floor_us();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // What the goal leaves per span when every core works on nothing else.
    let budget = cores * 1e6 / args.goal as f64;
    println!(
        "tracebox bench floor: {} spans = {} requests x {} spans ({} B/span of OTLP protobuf), one stage at a time",
        r.spans,
        r.requests,
        args.batch,
        r.bytes / r.spans.max(1)
    );
    for s in &r.stages {
        println!(
            "  {:<7} {:>6.1} µs/span of CPU  (user {:.2} s + sys {:.2} s, {:.2} s wall)",
            s.name,
            r.per_span(s.cpu),
            s.cpu.user,
            s.cpu.sys,
            s.wall
        );
    }
    println!(
        "  stored  {} rows in SQLite, {} documents in the index",
        r.rows, r.docs
    );
    println!(
        "  floor   {floor:>6.1} µs/span: at most {:.0} spans/s on {cores} cores if everything else were free",
        cores * 1e6 / floor
    );
    println!(
        "  goal    {} spans/s leaves {budget:.1} µs/span on {cores} cores, the senders' share included",
        args.goal
    );
    if args.json {
        let mut v = serde_json::json!({
            "spans": r.spans,
            "floor_us_per_span": floor,
            "goal_budget_us_per_span": budget,
            "cores": cores,
        });
        for s in &r.stages {
            v[format!("{}_us_per_span", s.name)] = serde_json::json!(r.per_span(s.cpu));
        }
        println!("{v}");
    }
}

/// The data directory: the one given (must not exist yet, so nothing is
/// overwritten), or a fresh one under the system's temporary directory.
fn data_dir(given: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    let dir = match given {
        Some(d) => {
            anyhow::ensure!(!d.exists(), "{} already exists", d.display());
            d.to_path_buf()
        }
        None => super::scratch_dir("floor")?,
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn measure(args: &BenchFloorArgs, dir: &Path) -> anyhow::Result<Report> {
    // The workload, built and encoded before any clock starts.
    let templates = Templates::new(args.payload_bytes, 7);
    let mut rng = fastrand::Rng::with_seed(1000);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let requests = args.spans.div_ceil(args.batch);
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|_| build_request(&templates, &mut rng, args.batch, now_ns, 5_000_000_000))
        .map(|r| r.encode_to_vec())
        .collect();

    let decode_one = |b: &[u8]| {
        otlp::decode_request(Encoding::Protobuf, b)
            .map_err(|_| anyhow::anyhow!("the generated request did not decode"))
    };
    // Each request is dropped once decoded, as the server does, so the
    // allocator reuses memory instead of faulting in fresh pages.
    let decode = timed("decode", || {
        for b in &bodies {
            std::hint::black_box(decode_one(b)?);
        }
        Ok(())
    })?;
    let decoded = bodies
        .iter()
        .map(|b| decode_one(b))
        .collect::<anyhow::Result<Vec<_>>>()?;

    // Searchable text per span, as the server computes it on its request
    // threads (not timed: conventions are outside the floor).
    let fields: Vec<Vec<FieldText>> = decoded.iter().flat_map(searchable_fields).collect();

    let db = dir.join("floor.db");
    let sqlite = timed("sqlite", || store_rows(&db, &decoded))?;
    let (index, _) = SearchIndex::open(&dir.join("index")).context("opening the index")?;
    index.open_writer()?;
    // Merges are part of sustained indexing; waiting for the last ones
    // (usually done by then) keeps them in the stage.
    let indexing = timed("index", || {
        index_text(&index, &fields)?;
        Ok(index.wait_merging()?)
    })?;

    let rows =
        rusqlite::Connection::open(&db)?
            .query_row("SELECT count(*) FROM spans", [], |r| r.get::<_, i64>(0))? as u64;
    Ok(Report {
        spans: fields.len(),
        requests,
        bytes: bodies.iter().map(Vec::len).sum(),
        stages: [decode, sqlite, indexing],
        rows,
        docs: index.num_docs(),
    })
}

/// The searchable fields of every span of a request, in order.
fn searchable_fields(req: &ExportTraceServiceRequest) -> Vec<Vec<FieldText>> {
    let (raw, _, _) = otlp::convert(req.clone());
    raw.into_iter()
        .map(|r| {
            let (s, _) = semconv::normalize(r);
            searchable::span_fields(
                &s.name,
                s.inputs.as_ref(),
                s.outputs.as_ref(),
                &s.events,
                &s.status_message,
            )
        })
        .collect()
}

/// The least a durable span store does: a row per span, the trace-id
/// index, a transaction per request.
fn store_rows(path: &Path, requests: &[ExportTraceServiceRequest]) -> anyhow::Result<()> {
    // The store's own connection settings and page size; not its
    // auto-vacuum, which is a choice, not a necessity.
    let mut conn = store::open_connection(path, &StoreOptions::default())?;
    conn.pragma_update(None, "page_size", store::PAGE_SIZE)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE spans (
             id        INTEGER PRIMARY KEY,
             trace_id  BLOB NOT NULL,
             span_id   BLOB NOT NULL,
             parent_id BLOB,
             name      TEXT NOT NULL,
             start_ns  INTEGER NOT NULL,
             end_ns    INTEGER NOT NULL,
             data      BLOB NOT NULL
         );
         CREATE INDEX spans_trace ON spans (trace_id);",
    )?;
    let mut data = Vec::new();
    for req in requests {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO spans (trace_id, span_id, parent_id, name, start_ns, end_ns, data)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?;
            let spans = req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans);
            for s in spans {
                // Length-delimited, so the attributes can be read back.
                data.clear();
                for kv in &s.attributes {
                    kv.encode_length_delimited(&mut data)?;
                }
                insert.execute(rusqlite::params![
                    s.trace_id,
                    s.span_id,
                    (!s.parent_span_id.is_empty()).then_some(&s.parent_span_id),
                    s.name,
                    s.start_time_unix_nano as i64,
                    s.end_time_unix_nano as i64,
                    data,
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// The server's full-text index fed precomputed text.
fn index_text(index: &SearchIndex, fields: &[Vec<FieldText>]) -> anyhow::Result<()> {
    for (n, chunk) in fields.chunks(INDEX_COMMIT_DOCS).enumerate() {
        let first = (n * INDEX_COMMIT_DOCS) as i64 + 1;
        // Span ids from 1 in order; the generator's traces have 4 spans.
        index.add_fields(
            chunk
                .iter()
                .enumerate()
                .map(|(i, f)| (first + i as i64, (first + i as i64) / 4, f.as_slice())),
        )?;
        index.commit(first + chunk.len() as i64 - 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_does_its_whole_job() {
        let dir = tempfile::tempdir().unwrap();
        let args = BenchFloorArgs {
            data: None,
            spans: 1000,
            batch: 128,
            payload_bytes: 256,
            goal: 50_000,
            json: false,
        };
        let r = measure(&args, dir.path()).unwrap();
        // Rounded up to whole requests; a short last trace still counts.
        assert_eq!((r.requests, r.spans), (8, 1024));
        assert_eq!(r.rows, 1024, "one row per span");
        assert_eq!(r.docs, 1024, "one document per span");
        assert!(r.floor_us() > 0.0);
        // The stored rows are the decoded spans, searchable by trace id.
        let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
        let per_trace: i64 = conn
            .query_row(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM spans GROUP BY trace_id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(per_trace, 4);
        // Each row's data is its span's attributes, readable back.
        let data: Vec<u8> = conn
            .query_row("SELECT data FROM spans WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        let mut buf = data.as_slice();
        let mut keys = Vec::new();
        while !buf.is_empty() {
            let kv =
                opentelemetry_proto::tonic::common::v1::KeyValue::decode_length_delimited(&mut buf)
                    .unwrap();
            keys.push(kv.key);
        }
        assert!(
            keys.contains(&"openinference.span.kind".to_string()),
            "{keys:?}"
        );
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT * FROM spans WHERE trace_id = x'00'",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("spans_trace"), "{plan}");
    }
}
