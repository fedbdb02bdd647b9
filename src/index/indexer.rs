//! Keeps the index caught up with SQLite, on its own thread.
//!
//! The store hands it the spans of every ingestion job as the job commits,
//! with their searchable text (`index_feed::CommittedSpans`, through a
//! bounded inbox); it adds them as they come. After store commits, at
//! most once a second, a pass reads from SQLite whatever was not handed on
//! (other write paths, a full inbox, everything at start-up: spans with
//! `id >` what it has added), applies tombstones of deleted traces,
//! commits with the new watermark in the payload, reloads the readers, and
//! only then clears the applied tombstones in SQLite. A crash at any point
//! loses nothing: the next start resumes from the last committed watermark
//! and re-applies tombstones that were not cleared.
//!
//! Order is what keeps deleted traces out: the store hands a job's spans on
//! before any later transaction (a deletion) begins, and a pass drains the
//! inbox after reading tombstones and before applying them, so a deleted
//! trace's documents are always added before its tombstone deletes them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{Result, SearchIndex};
use crate::store::index_feed::CommittedSpans;
use crate::store::{Store, index_feed};

/// Spans read from SQLite per batch.
const BATCH: usize = 2_000;
/// Documents between intermediate commits during a long catch-up, so a
/// crash mid-rebuild keeps most of the work.
const COMMIT_EVERY: usize = 200_000;
/// Tombstones applied per commit.
const TOMBSTONES: usize = 10_000;
/// Shortest pause between two catch-up passes: each pass ends in a tantivy
/// commit, a new segment to write and later merge, whose fixed cost is what
/// indexing a few SDK traces at a time spends most on (at 150 ms the
/// indexing and merge threads took a quarter of the server's CPU under a
/// synchronous SDK client). One second, Elasticsearch's default refresh
/// interval: text searches see new spans within about a second.
const MIN_PASS_INTERVAL: Duration = Duration::from_secs(1);
/// Catch-ups larger than this show a progress bar.
const PROGRESS_MIN: i64 = 20_000;
/// Ingestion jobs waiting in the inbox at most (an OTLP upload is one job
/// of up to a few thousand spans; 512 spans' text is about 0.6 MB). When
/// it is full the store's hand-off is dropped and the next pass reads those
/// spans from SQLite instead. 32 covers a pass's tantivy commit under
/// sustained OTLP load (about 55 uploads/s) with room to spare, and bounds
/// what a stalled indexer holds to some 20 MB.
const INBOX_JOBS: usize = 32;
/// Longest wait for the inbox before checking `stop` and the pass timer.
const POLL: Duration = Duration::from_millis(250);

/// What a catch-up pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub spans: usize,
    pub deleted_traces: usize,
}

fn progress_bar(total: u64, what: &str) -> ProgressBar {
    // indicatif draws on stderr and stays silent when it is not a terminal.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} spans ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// How far the index has got: the highest span id added (committed to
/// tantivy or not) and how many documents await a commit.
#[derive(Debug, Clone, Copy)]
struct Position {
    added: i64,
    uncommitted: usize,
}

impl Position {
    fn at(index: &SearchIndex) -> Position {
        Position {
            added: index.watermark(),
            uncommitted: 0,
        }
    }

    fn commit(&mut self, index: &SearchIndex) -> Result<()> {
        index.commit(self.added)?;
        self.uncommitted = 0;
        Ok(())
    }

    /// Reads from SQLite and adds up to [`BATCH`] spans with ids past what
    /// it has added and below `before`; how many.
    fn read_batch(&mut self, index: &SearchIndex, store: &Store, before: i64) -> Result<usize> {
        let after = self.added;
        let batch =
            store.read_blocking(move |c| index_feed::spans_between(c, after, before, BATCH))?;
        if let Some(last) = batch.last() {
            index.add_spans(&batch)?;
            self.added = last.id;
            self.uncommitted += batch.len();
        }
        Ok(batch.len())
    }

    /// Adds one job's committed spans, first reading from SQLite the spans
    /// committed before them that were not handed on (every span with a
    /// smaller id is committed by then: ids follow commit order). Returns
    /// how many documents it added.
    fn add_job(
        &mut self,
        index: &SearchIndex,
        store: &Store,
        job: &CommittedSpans,
    ) -> Result<usize> {
        let (Some(first), Some(last)) = (job.first_id(), job.last_id()) else {
            return Ok(0);
        };
        if last <= self.added {
            return Ok(0);
        }
        let mut added = 0;
        if first > self.added + 1 {
            loop {
                let n = self.read_batch(index, store, first)?;
                added += n;
                if n < BATCH {
                    break;
                }
            }
        }
        let handed = index.add_committed(job, self.added)?;
        self.added = last;
        self.uncommitted += handed;
        Ok(added + handed)
    }

    /// [`Position::add_job`] for every job waiting in the inbox.
    fn drain(
        &mut self,
        index: &SearchIndex,
        store: &Store,
        inbox: Option<&mpsc::Receiver<CommittedSpans>>,
    ) -> Result<usize> {
        let mut added = 0;
        if let Some(rx) = inbox {
            while let Ok(job) = rx.try_recv() {
                added += self.add_job(index, store, &job)?;
            }
        }
        Ok(added)
    }
}

/// Indexes every span past the watermark and applies pending tombstones.
/// Shows a progress bar when there is a lot to do. Returns early (after
/// committing what it has) once `stop` is set.
pub fn catch_up(index: &SearchIndex, store: &Store, stop: Option<&AtomicBool>) -> Result<Pass> {
    pass(index, store, stop, true, &mut Position::at(index), None)
}

/// [`catch_up`] from `pos`, draining `inbox` first and before applying each
/// round of tombstones (see the module doc); `announce` says whether a
/// large one is logged and shown with a progress bar. The background
/// indexer announces only its first pass (the catch-up at start-up): under
/// sustained ingestion every routine pass has thousands of spans to add,
/// and a log line about "building the index" every second would be noise.
fn pass(
    index: &SearchIndex,
    store: &Store,
    stop: Option<&AtomicBool>,
    announce: bool,
    pos: &mut Position,
    inbox: Option<&mpsc::Receiver<CommittedSpans>>,
) -> Result<Pass> {
    let mut pass = Pass {
        spans: pos.drain(index, store, inbox)?,
        ..Pass::default()
    };
    let after = pos.added;
    let pending = store.read_blocking(|c| index_feed::count_spans_after(c, after))?;
    let bar = (announce && pending >= PROGRESS_MIN).then(|| {
        tracing::info!(
            spans = pending,
            "building the full-text index from the database"
        );
        progress_bar(pending as u64, "indexing")
    });
    let started = Instant::now();
    loop {
        if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
            break;
        }
        let n = pos.read_batch(index, store, i64::MAX)?;
        if n == 0 {
            break;
        }
        pass.spans += n;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
        if pos.uncommitted >= COMMIT_EVERY {
            pos.commit(index)?;
        }
    }
    loop {
        let tombs = store.read_blocking(|c| index_feed::tombstones(c, TOMBSTONES))?;
        if tombs.is_empty() {
            break;
        }
        // Spans of these traces handed on before they were deleted are in
        // the inbox now: add them before the deletions, which only remove
        // documents added before them.
        pass.spans += pos.drain(index, store, inbox)?;
        index.delete_traces(&tombs)?;
        pos.commit(index)?;
        pass.deleted_traces += tombs.len();
        let n = tombs.len();
        store.write_blocking(move |c| index_feed::clear_tombstones(c, &tombs))?;
        if n < TOMBSTONES {
            break;
        }
    }
    if pos.uncommitted > 0 {
        pos.commit(index)?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
        tracing::info!(
            spans = pass.spans,
            secs = started.elapsed().as_secs_f64(),
            "full-text index is up to date"
        );
    }
    Ok(pass)
}

/// Drops every document and indexes the whole database again
/// (`tracebox reindex`).
pub fn rebuild(index: &SearchIndex, store: &Store) -> Result<Pass> {
    index.delete_all()?;
    index.commit(0)?;
    store.write_blocking(index_feed::clear_all_tombstones)?;
    let pass = catch_up(index, store, None)?;
    index.wait_merging()?;
    Ok(pass)
}

/// The background indexer; stops when dropped.
pub struct Indexer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Indexer {
    /// Starts the indexer thread (the index must have its writer open) and
    /// has the store hand it committed spans.
    pub fn start(index: SearchIndex, store: Store) -> std::io::Result<Indexer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, inbox) = mpsc::sync_channel::<CommittedSpans>(INBOX_JOBS);
        // Registered before the first pass reads SQLite, so no committed
        // span falls between the two.
        store.follow_spans(Arc::new(move |job| {
            // Full (or the indexer is gone): a pass reads them back.
            let _ = tx.try_send(job);
        }));
        let handle = std::thread::Builder::new()
            .name("tracebox-indexer".into())
            .spawn(move || run(index, store, flag, inbox))?;
        Ok(Indexer {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    index: SearchIndex,
    store: Store,
    stop: Arc<AtomicBool>,
    inbox: mpsc::Receiver<CommittedSpans>,
) {
    let mut commits = store.commits();
    let mut pos = Position::at(&index);
    let mut first = true;
    let mut last_pass: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        let since = last_pass.map(|t| t.elapsed());
        let changed = match commits.has_changed() {
            Ok(c) => c,
            Err(_) => return, // the store is gone
        };
        if first || (changed && since.is_none_or(|s| s >= MIN_PASS_INTERVAL)) {
            // Mark the current commit as seen *before* reading, so a commit
            // that lands during the pass triggers another one.
            commits.borrow_and_update();
            match pass(&index, &store, Some(&stop), first, &mut pos, Some(&inbox)) {
                Ok(p) => {
                    first = false;
                    tracing::trace!(spans = p.spans, deleted = p.deleted_traces, "indexed");
                }
                Err(e) => {
                    tracing::error!(error = %e, "full-text indexing failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            last_pass = Some(Instant::now());
            continue;
        }
        // Between passes, add what the store hands on as it comes, so the
        // inbox stays short and the next pass has little left to do.
        let wait = match (changed, since) {
            (true, Some(s)) => MIN_PASS_INTERVAL.saturating_sub(s).min(POLL),
            _ => POLL,
        };
        match inbox.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(job) => {
                if let Err(e) = pos.add_job(&index, &store, &job) {
                    // The next pass reads what is missing from SQLite.
                    tracing::error!(error = %e, "full-text indexing failed; retrying");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::semconv::RawSpan;
    use crate::domain::{OtelTraceId, SpanBatch, SpanEvent, SpanStatusCode, TraceId};
    use crate::index::TextQuery;
    use crate::store::StoreOptions;
    use crate::store::traces::DeleteTraces;
    use serde_json::{Value, json};

    fn raw(trace: u8, id: u8, parent: Option<u8>, attrs: Value) -> RawSpan {
        RawSpan::sample(trace, id, parent, attrs)
    }

    /// One trace whose spans take every route to searchable text: MLflow
    /// JSON values, chat messages (OpenInference, GenAI), text kept as
    /// text, a retriever's documents, an exception, nothing at all.
    fn varied(trace: u8, word: &str) -> SpanBatch {
        let mut failed = raw(trace, 6, Some(1), json!({}));
        failed.status = SpanStatusCode::Error;
        failed.status_message = format!("ValueError: {word} not found");
        failed.events = vec![SpanEvent {
            name: "exception".into(),
            time_ns: 1,
            attributes: json!({"exception.type": "ValueError",
                               "exception.message": format!("{word} not found")})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        }];
        SpanBatch::from_raw([
            raw(
                trace,
                1,
                None,
                json!({"mlflow.spanType": "\"AGENT\"",
                       "mlflow.spanInputs": json!({"question": format!("where is {word}?"), "n": 3}).to_string(),
                       "mlflow.spanOutputs": json!(format!("{word} shipped")).to_string()}),
            ),
            raw(
                trace,
                2,
                Some(1),
                json!({"openinference.span.kind": "LLM",
                       "llm.input_messages.0.message.role": "system",
                       "llm.input_messages.0.message.content": "be kind",
                       "llm.input_messages.1.message.role": "user",
                       "llm.input_messages.1.message.content": format!("track {word}"),
                       "llm.output_messages.0.message.role": "assistant",
                       "llm.output_messages.0.message.content": "on its way"}),
            ),
            raw(
                trace,
                3,
                Some(1),
                json!({"openinference.span.kind": "RETRIEVER",
                       "input.value": format!("{{not json}} {word}"),
                       "input.mime_type": "text/plain",
                       "retrieval.documents.0.document.content": format!("{word} policy"),
                       "retrieval.documents.0.document.id": "kb-1"}),
            ),
            raw(
                trace,
                4,
                Some(1),
                json!({"gen_ai.operation.name": "chat",
                       "gen_ai.input.messages": json!([{"role": "user", "parts": [{"type": "text", "content": format!("{word} again")}]}]).to_string(),
                       "gen_ai.output.messages": json!([{"role": "assistant", "parts": [{"type": "text", "content": "sure"}]}]).to_string()}),
            ),
            raw(
                trace,
                5,
                Some(1),
                json!({"plain": "nothing searchable but the name"}),
            ),
            failed,
        ])
    }

    fn open(dir: &std::path::Path) -> (Store, SearchIndex) {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let (index, _) = SearchIndex::open(&dir.join("index")).unwrap();
        index.open_writer().unwrap();
        (store, index)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_text_handed_on_at_commit_is_the_text_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _index) = open(dir.path());
        let got = Arc::new(parking_lot::Mutex::new(Vec::<CommittedSpans>::new()));
        let sink = got.clone();
        store.follow_spans(Arc::new(move |job| sink.lock().push(job)));
        store.ingest_spans(0, varied(1, "parcel")).await.unwrap();
        // A retried upload: nothing new, nothing handed on.
        store.ingest_spans(0, varied(1, "parcel")).await.unwrap();
        let stored = store
            .read_blocking(|c| index_feed::spans_between(c, 0, i64::MAX, 100))
            .unwrap();
        let jobs = got.lock().clone();
        assert_eq!(jobs.len(), 1);
        let handed: Vec<_> = jobs[0].iter().collect();
        assert_eq!(handed.len(), 6);
        assert_eq!(stored.len(), 6);
        for ((id, trace, fields), s) in handed.into_iter().zip(&stored) {
            assert_eq!((id, trace), (s.id, s.trace));
            assert_eq!(
                fields,
                super::super::span_fields(s).as_slice(),
                "span {}",
                s.name
            );
        }
        // Every route produced text (the test would pass vacuously otherwise).
        let all: Vec<String> = jobs[0]
            .iter()
            .flat_map(|(_, _, f)| f.iter().map(|f| f.text.clone()))
            .collect();
        for want in [
            "where is parcel?",
            "track parcel",
            "{not json} parcel",
            "parcel policy",
            "parcel again",
            "ValueError\nparcel not found\nValueError: parcel not found",
        ] {
            assert!(all.iter().any(|t| t.contains(want)), "{want:?} in {all:?}");
        }
    }

    fn hits(index: &SearchIndex, q: &str) -> Vec<i64> {
        index
            .trace_hits(&TextQuery::parse_user(q).unwrap(), None)
            .unwrap()
            .ids()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handed_on_spans_gaps_and_deletions_end_up_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, index) = open(dir.path());
        let indexer = Indexer::start(index.clone(), store.clone()).unwrap();
        // Handed on at commit.
        let a = store.ingest_spans(0, varied(1, "alpha")).await.unwrap();
        // Written without the hand-off (as another write path would): the
        // indexer finds it in SQLite, between handed-on jobs.
        let codec_store = store.clone();
        store
            .write(move |c| {
                crate::store::traces::ingest_spans(c, codec_store.codec(), 0, varied(2, "bravo"))
            })
            .await
            .unwrap();
        let c = store.ingest_spans(0, varied(3, "charlie")).await.unwrap();
        // Deleted right after it was handed on.
        let gone = TraceId::from_otel(OtelTraceId([1; 16])).into_string();
        store
            .delete_traces(0, DeleteTraces::Ids(vec![gone]))
            .await
            .unwrap();
        let last = c.new_spans.last().unwrap().0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while index.watermark() < last
            || !store
                .read_blocking(|c| index_feed::tombstones(c, 10))
                .unwrap()
                .is_empty()
        {
            assert!(Instant::now() < deadline, "the indexer did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(indexer);
        let trace_of = |o: &crate::store::traces::IngestOutcome| o.new_spans[0].1;
        assert!(
            hits(&index, "alpha").is_empty(),
            "a deleted trace left documents"
        );
        assert_eq!(hits(&index, "bravo").len(), 1);
        assert_eq!(hits(&index, "charlie"), vec![trace_of(&c)]);
        assert_ne!(trace_of(&a), trace_of(&c));
        // Six spans each for bravo and charlie, none twice.
        assert_eq!(index.num_docs(), 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_handed_on_before_their_trace_was_deleted_leave_no_document() {
        let dir = tempfile::tempdir().unwrap();
        let (store, index) = open(dir.path());
        let (tx, inbox) = mpsc::sync_channel(INBOX_JOBS);
        store.follow_spans(Arc::new(move |job| {
            let _ = tx.try_send(job);
        }));
        store.ingest_spans(0, varied(1, "alpha")).await.unwrap();
        store.ingest_spans(0, varied(2, "bravo")).await.unwrap();
        let gone = TraceId::from_otel(OtelTraceId([1; 16])).into_string();
        store
            .delete_traces(0, DeleteTraces::Ids(vec![gone]))
            .await
            .unwrap();
        // Both jobs wait in the inbox; their spans are read from it, not
        // from SQLite (where alpha's are gone), and the tombstone follows.
        let ix = index.clone();
        let (p, again, pos) = tokio::task::spawn_blocking(move || {
            let mut pos = Position::at(&ix);
            let p = pass(&ix, &store, None, false, &mut pos, Some(&inbox)).unwrap();
            let again = pass(&ix, &store, None, false, &mut pos, Some(&inbox)).unwrap();
            (p, again, pos)
        })
        .await
        .unwrap();
        assert_eq!(
            p,
            Pass {
                spans: 12,
                deleted_traces: 1
            }
        );
        assert_eq!(again, Pass::default());
        assert!(hits(&index, "alpha").is_empty());
        assert_eq!(hits(&index, "bravo").len(), 1);
        assert_eq!(index.num_docs(), 6);
        assert_eq!(index.watermark(), pos.added);
    }
}
