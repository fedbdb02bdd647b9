//! SQLite persistence: the source of truth for everything tracebox knows.
//!
//! One writer thread owns the only write connection and commits jobs in
//! groups (many uploads share one transaction and one WAL sync; a job that
//! fails is undone by rolling back and re-running its neighbours, so one bad
//! job does not sink them: see `writer::run_batch`). A job's future
//! resolves only after its transaction committed: an HTTP 200 built on it means
//! the data is durable. Reads run on a small pool of connections on blocking
//! threads, so the async executor never waits on SQLite.
//!
//! This module knows SQL and the domain types. It does not know HTTP, MLflow's
//! JSON, OTLP or tantivy.

pub mod assessments;
pub mod experiments;
mod functions;
pub mod index_feed;
pub mod judge_queue;
pub mod judge_stats;
pub mod maintenance;
mod migrate;
pub mod payload;
mod pool;
mod rows;
pub mod scorers;
pub mod sessions;
pub mod stats;
pub mod traces;
pub mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

pub use assessments::AssessmentUpdate;
pub use migrate::SCHEMA_VERSION;
pub use traces::{DeleteTraces, IngestOutcome, PreparedBatch, TraceDetail, TraceUpsert};

use pool::ReadPool;
use writer::Writer;

/// Errors of the storage layer. The API layer maps them to HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    /// The write queue stayed full: the caller should retry later (HTTP 503).
    #[error("the store is overloaded; retry later")]
    Overloaded,
    #[error("the store is shutting down")]
    Closed,
    #[error(
        "database {path} has schema version {found}, newer than this tracebox supports ({supported}); \
         upgrade tracebox or point it at another data directory"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// True when the disk (or its quota) is full; the caller answers 507/503
    /// rather than blaming the request.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DiskFull)
    }
    /// True when the operating system failed a read or write of the
    /// database files (a file system turned read-only or immutable under
    /// the server, a failing disk): the request was fine, storage is not.
    pub fn is_io_error(&self) -> bool {
        matches!(self, StoreError::Io(_))
            || matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::SystemIoFailure)
    }
    /// True when the database cannot be written (read-only file or directory).
    pub fn is_read_only(&self) -> bool {
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ReadOnly || e.code == rusqlite::ErrorCode::CannotOpen)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long a connection waits for a lock before SQLITE_BUSY.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page size of new databases.
pub(crate) const PAGE_SIZE: i64 = 8192;

/// The WAL size SQLite keeps when it restarts the WAL (`journal_size_limit`):
/// twice the size at which the writer restarts it (`writer`'s
/// `WAL_RESTART_FRAMES` of 8 KiB pages, ~128 MiB). Under sustained
/// ingestion the WAL is then rewritten in place, cycle after cycle; with 64
/// MiB every restart cut the file and the next 64 MiB of frames had to be
/// allocated again by the file system (ext4's block reservation on every
/// page write: `bench ingest` over 1M spans spent 4.7 s less system time
/// and made 11% more spans/s at 256 MiB). A quiet store truncates the WAL
/// to zero anyway (`idle_trimmer`), so this is only what a busy one holds.
const WAL_KEEP_BYTES: i64 = 256 * 1024 * 1024;

/// Tuning knobs for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Jobs that may wait for the writer before callers get `Overloaded`.
    pub write_queue: usize,
    /// How long a caller waits for room in the write queue.
    pub enqueue_timeout: Duration,
    /// `PRAGMA synchronous`: NORMAL survives process crashes (kill -9) in WAL
    /// mode; FULL also survives power loss, at a cost per commit.
    pub synchronous_full: bool,
    /// `PRAGMA max_page_count` on the writer: a hard cap on the database
    /// size (used by tests to simulate a full disk).
    pub max_page_count: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            write_queue: 1024,
            enqueue_timeout: Duration::from_secs(2),
            synchronous_full: false,
            max_page_count: None,
        }
    }
}

/// Traces written by one ingestion job, by internal row id.
#[derive(Debug, Clone, Default)]
pub struct TracesWritten {
    /// Every trace the job created or changed.
    pub touched: Vec<i64>,
    /// Traces whose root span or client-sent info arrived in this job.
    pub completed: Vec<i64>,
    /// Touched traces that had no row before this job: nothing refers to
    /// them yet (no assessments, no derived rows), which hooks may rely on.
    pub created: Vec<i64>,
}

/// Runs inside the ingestion transaction after traces are written, so that
/// derived rows (judge queue entries, session aggregates, forwarding outbox)
/// commit atomically with the data. A hook's error fails the whole job.
pub type TraceHook = Arc<dyn Fn(&Connection, &TracesWritten) -> Result<()> + Send + Sync>;

/// Told, on the writer thread and in commit order, of the spans each
/// ingestion job committed, with their searchable text (see
/// [`index_feed::CommittedSpans`]). It must only hand them on (a bounded
/// channel's `try_send`): the writer waits for it.
pub type SpanFollower = Arc<dyn Fn(index_feed::CommittedSpans) + Send + Sync>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: ReadPool,
    /// Compresses span payloads; the SQL function `tb_text` of every
    /// connection decompresses with it.
    codec: Arc<payload::Codec>,
    /// Registered once at start-up, read on every ingestion job; an RwLock
    /// because writes are rare and reads must not contend.
    hooks: parking_lot::RwLock<Vec<TraceHook>>,
    /// The full-text indexer's inbox, once it starts.
    follower: parking_lot::RwLock<Option<SpanFollower>>,
}

impl Store {
    /// Opens (creating if needed) `dir/tracebox.db`, applies migrations and
    /// starts the writer thread.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("tracebox.db");
        let mut conn = open_connection(&path, &opts)?;
        // Both settings below can only be chosen while the database is new
        // and empty: before the first table exists and before WAL is on.
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables == 0 {
            // Span rows are a few KB: 8 KiB pages hold them with less
            // per-page overhead (measured ~6% less writer CPU than 4 KiB in
            // `bench ingest`).
            conn.pragma_update(None, "page_size", PAGE_SIZE)?;
            // Incremental auto-vacuum lets retention hand freed pages back
            // to the file system in small steps.
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        migrate::apply(&mut conn, &path)?;
        let codec = Arc::new(payload::Codec::load(&conn)?);
        functions::register(&conn, &codec)?;
        if let Some(pages) = opts.max_page_count {
            let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
        }
        let writer = Writer::start(conn, &path, &opts)?;
        let readers = ReadPool::new(path.clone(), opts, codec.clone());
        let inner = Arc::new(Inner {
            path,
            writer,
            readers,
            codec,
            hooks: parking_lot::RwLock::new(Vec::new()),
            follower: parking_lot::RwLock::new(None),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("tracebox-idle".into())
            .spawn(move || idle_trimmer(weak))?;
        Ok(Store { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The span payload codec, for preparing uploads ([`PreparedBatch::new`]).
    pub fn codec(&self) -> &payload::Codec {
        &self.inner.codec
    }

    /// Registers a hook run after every ingestion job (see [`TraceHook`]).
    pub fn on_traces_written(&self, hook: TraceHook) {
        self.inner.hooks.write().push(hook);
    }

    /// The hooks, for running inside a write job.
    pub(crate) fn hooks(&self) -> Vec<TraceHook> {
        self.inner.hooks.read().clone()
    }

    /// Hands every ingestion job's committed spans to `f` from now on
    /// (replacing an earlier follower): the indexer then need not read
    /// them back from SQLite.
    pub fn follow_spans(&self, f: SpanFollower) {
        *self.inner.follower.write() = Some(f);
    }

    fn follower(&self) -> Option<SpanFollower> {
        self.inner.follower.read().clone()
    }

    /// Runs `f` inside the group-commit transaction; resolves after commit.
    /// `f` may run more than once (when another job of its transaction
    /// fails, the ones that succeeded run again): it must only write
    /// through `conn`, hence `Fn`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.submit(f, None).await
    }

    /// [`Store::write`], then `after` on the writer thread once the result
    /// is committed, before the caller hears of it and before any later
    /// transaction (see `writer::AfterCommit`).
    async fn write_then<T, F>(&self, f: F, after: writer::AfterCommit<T>) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.submit(f, Some(after)).await
    }

    /// [`Store::write`] for threads outside the async runtime.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.submit_blocking(f)
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read_on_blocking_thread(true, f).await
    }

    /// [`Store::read`] for background pollers that look for due work on a
    /// timer (the judge runner, every 250 ms): their reads do not count as
    /// activity, or the store would never look idle and never give memory
    /// and its WAL back (see `idle_trimmer`).
    pub async fn poll_read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read_on_blocking_thread(false, f).await
    }

    /// Runs a read on a blocking thread; `counted` says whether the idle
    /// trimmer sees it as activity.
    async fn read_on_blocking_thread<T, F>(&self, counted: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let readers = &store.inner.readers;
            if counted {
                readers.with(f)
            } else {
                readers.with_unseen(f)
            }
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("read task failed: {e}")))?
    }

    /// [`Store::read`] for threads outside the async runtime.
    pub fn read_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        self.inner.readers.with(f)
    }

    /// A receiver that changes after every commit; background workers (the
    /// indexer, the judge runner) wait on it instead of polling blindly.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.writer.commits()
    }

    /// Folds the WAL back into the database file and truncates it (bulk
    /// loads, benchmarks); see [`maintenance::checkpoint_truncate`].
    pub fn checkpoint(&self) -> Result<bool> {
        maintenance::checkpoint_truncate(&self.inner.path)
    }

    /// Number of jobs waiting for the writer (a gauge for /metrics).
    pub fn write_queue_depth(&self) -> usize {
        self.inner.writer.queue_depth()
    }
}

/// How long without reads or commits before idle memory is given back.
const IDLE_AFTER: Duration = Duration::from_secs(2);

/// Gives memory and disk back once the store has been idle for
/// `IDLE_AFTER`: the idle read connections' page caches (up to 8 MB each,
/// refilled cheaply from the OS page cache), what glibc's malloc, which
/// SQLite uses, and mimalloc keep of freed memory, and the WAL file (up to ~130 MB
/// after a burst of uploads; copied into the database and truncated). An
/// appliance that sat through a burst should not hold its peak for good.
/// Stops when the store is dropped.
fn idle_trimmer(inner: std::sync::Weak<Inner>) {
    let mut seen = (u64::MAX, u64::MAX);
    let mut quiet_since = std::time::Instant::now();
    let mut trimmed = true;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let Some(inner) = inner.upgrade() else { return };
        let now = (inner.readers.uses(), *inner.writer.commits().borrow());
        if now != seen {
            seen = now;
            quiet_since = std::time::Instant::now();
            trimmed = false;
        } else if !trimmed && quiet_since.elapsed() >= IDLE_AFTER {
            inner.readers.release_idle_memory();
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only returns free memory to the system.
            unsafe {
                libc::malloc_trim(0);
            }
            let wal = inner.path.with_extension("db-wal");
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                // Short wait: an upload arriving now waits for this.
                let wait = Duration::from_millis(100);
                if let Err(e) = maintenance::checkpoint_truncate_within(&inner.path, wait) {
                    tracing::debug!(error = %e, "idle WAL truncation skipped");
                }
            }
            // Then mimalloc, the binary's allocator for Rust code: a forced
            // collect purges the freed memory its arenas hold (program-wide)
            // without waiting for the purge delay, which only runs when
            // something allocates again. After the `PathBuf` above, because
            // mimalloc skips a thread that has never allocated.
            // SAFETY: only returns free memory; harmless when mimalloc is
            // not the global allocator (its heaps are then empty).
            unsafe { libmimalloc_sys::mi_collect(true) };
            trimmed = true;
        }
    }
}

/// Opens a connection with the pragmas every connection needs (the caller
/// registers the SQL functions, see `functions::register`).
///
/// `journal_size_limit` makes SQLite cut the WAL back whenever a checkpoint
/// lets it restart, so a burst of writes (or a retention pass) does not
/// leave a huge WAL on disk for good (see `WAL_KEEP_BYTES`).
pub(crate) fn open_connection(path: &Path, opts: &StoreOptions) -> Result<Connection> {
    let conn = Connection::open(path)?;
    // Ingestion, aggregate upkeep and reads each run a dozen or more cached
    // statements per job; rusqlite's default cache of 16 made them evict
    // each other and re-prepare on every trace.
    conn.set_prepared_statement_cache_capacity(256);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         PRAGMA synchronous = {};
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;
         PRAGMA journal_size_limit = {WAL_KEEP_BYTES};",
        if opts.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        }
    ))?;
    Ok(conn)
}
