//! Keeps the index caught up with SQLite, on its own thread.
//!
//! After every store commit (the `Store::commits()` watch channel) it reads
//! spans with `id > watermark` in batches, adds them, applies tombstones of
//! deleted traces, commits with the new watermark in the payload, reloads
//! the readers, and only then clears the applied tombstones in SQLite. A
//! crash at any point loses nothing: the next start resumes from the last
//! committed watermark and re-applies tombstones that were not cleared.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{Result, SearchIndex};
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

/// Indexes every span past the watermark and applies pending tombstones.
/// Shows a progress bar when there is a lot to do. Returns early (after
/// committing what it has) once `stop` is set.
pub fn catch_up(index: &SearchIndex, store: &Store, stop: Option<&AtomicBool>) -> Result<Pass> {
    pass(index, store, stop, true)
}

/// [`catch_up`]; `announce` says whether a large one is logged and shown
/// with a progress bar. The background indexer announces only its first
/// pass (the catch-up at start-up): under sustained ingestion every
/// routine pass has tens of thousands of spans to add, and a log line
/// about "building the index" every second would be noise.
fn pass(
    index: &SearchIndex,
    store: &Store,
    stop: Option<&AtomicBool>,
    announce: bool,
) -> Result<Pass> {
    let mut watermark = index.watermark();
    let pending = store.read_blocking(|c| index_feed::count_spans_after(c, watermark))?;
    let bar = (announce && pending >= PROGRESS_MIN).then(|| {
        tracing::info!(
            spans = pending,
            "building the full-text index from the database"
        );
        progress_bar(pending as u64, "indexing")
    });
    let started = Instant::now();
    let mut pass = Pass::default();
    let mut since_commit = 0;
    loop {
        if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
            break;
        }
        let after = watermark;
        let batch = store.read_blocking(move |c| index_feed::spans_after(c, after, BATCH))?;
        let Some(last) = batch.last() else { break };
        watermark = last.id;
        index.add_spans(&batch)?;
        pass.spans += batch.len();
        since_commit += batch.len();
        if let Some(b) = &bar {
            b.inc(batch.len() as u64);
        }
        if since_commit >= COMMIT_EVERY {
            index.commit(watermark)?;
            since_commit = 0;
        }
    }
    loop {
        let tombs = store.read_blocking(|c| index_feed::tombstones(c, TOMBSTONES))?;
        if tombs.is_empty() {
            break;
        }
        index.delete_traces(&tombs)?;
        index.commit(watermark)?;
        since_commit = 0;
        pass.deleted_traces += tombs.len();
        let n = tombs.len();
        store.write_blocking(move |c| index_feed::clear_tombstones(c, &tombs))?;
        if n < TOMBSTONES {
            break;
        }
    }
    if since_commit > 0 {
        index.commit(watermark)?;
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
    /// Starts the indexer thread (the index must have its writer open).
    pub fn start(index: SearchIndex, store: Store) -> std::io::Result<Indexer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tracebox-indexer".into())
            .spawn(move || run(index, store, flag))?;
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

fn run(index: SearchIndex, store: Store, stop: Arc<AtomicBool>) {
    // A private single-threaded runtime only to await the commit channel:
    // this thread does blocking work and must not sit on the server's.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "indexer cannot start");
            return;
        }
    };
    let mut commits = store.commits();
    let mut first = true;
    while !stop.load(Ordering::Acquire) {
        // Mark the current commit as seen *before* reading, so a commit that
        // lands during the pass triggers another one.
        let _ = commits.borrow_and_update();
        match pass(&index, &store, Some(&stop), first) {
            Ok(p) => {
                first = false;
                tracing::trace!(spans = p.spans, deleted = p.deleted_traces, "indexed");
            }
            Err(e) => {
                tracing::error!(error = %e, "full-text indexing failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        std::thread::sleep(MIN_PASS_INTERVAL);
        // Wait for the next commit, waking up now and then to notice `stop`.
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let changed = rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(250), commits.changed()).await
            });
            match changed {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return, // the store is gone
                Err(_) => continue,   // timeout: check `stop` again
            }
        }
    }
}
