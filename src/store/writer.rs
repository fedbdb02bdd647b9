//! The single writer thread and its group commit.
//!
//! Why one thread: SQLite allows one writer at a time anyway, and a dedicated
//! thread lets many small uploads share one transaction (one WAL sync for
//! dozens of requests), which is where ingestion throughput comes from.
//! Why a bounded queue: under overload callers get `Overloaded` (HTTP 503 +
//! Retry-After, which the MLflow SDK retries) instead of memory growing.
//! Why a checkpointer thread: copying WAL pages into the database (and the
//! fsyncs that go with it) is as much I/O as the commits themselves; done on
//! the writer thread, SQLite's automatic checkpoint stalls every upload
//! behind it. A second connection checkpoints in the background instead
//! (SQLite lets a checkpoint run beside a writer), and the writer only steps
//! in, between transactions, if the WAL grows past a bound.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Result, StoreError, StoreOptions};

/// Most jobs merged into one transaction; bounds commit latency.
const MAX_BATCH: usize = 256;

/// How often the background checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL frames (pages) beyond which the writer itself restarts the WAL: a
/// background checkpoint cannot reset a WAL that is written to all the
/// time, so without this the file would only grow. 16384 frames of 8 KiB
/// pages is about 128 MiB.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// A unit of work for the writer thread. It may run more than once: when
/// another job of its batch fails, the transaction is rolled back and the
/// jobs that had succeeded run again (see `run_batch`). It is told its
/// outcome once, after the commit.
trait Job: Send {
    /// Runs against the open transaction and keeps the result; true on
    /// success.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the last run succeeded.
    fn ok(&self) -> bool;
    /// The SQLite error the last run failed with, if any: when SQLite rolls
    /// the whole transaction back (disk full, I/O error), the jobs that ran
    /// before it in the batch are told this error.
    fn failure(&self) -> Option<(rusqlite::ffi::Error, Option<String>)>;
    /// Sends the caller the last run's result, or `Err` if its transaction
    /// did not commit (or it could not run).
    fn deliver(self: Box<Self>, commit: Result<()>);
}

/// Runs on the writer thread once a job's result is committed, before the
/// caller is told and before the next transaction begins: whoever it tells
/// hears of commits in commit order.
pub(super) type AfterCommit<T> = Box<dyn FnOnce(&T) + Send>;

/// A caller's closure, its last result and where to send it.
struct Pending<T, F> {
    f: F,
    res: Option<Result<T>>,
    after: Option<AfterCommit<T>>,
    done: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let res = (self.f)(conn);
        let ok = res.is_ok();
        self.res = Some(res);
        ok
    }
    fn ok(&self) -> bool {
        matches!(self.res, Some(Ok(_)))
    }
    fn failure(&self) -> Option<(rusqlite::ffi::Error, Option<String>)> {
        match &self.res {
            Some(Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, msg)))) => {
                Some((*code, msg.clone()))
            }
            _ => None,
        }
    }
    fn deliver(self: Box<Self>, commit: Result<()>) {
        let Pending {
            f,
            res,
            after,
            done,
        } = *self;
        // The closure goes before the caller is told, so that what it holds
        // (an upload's prepared batch: thousands of strings) is freed by the
        // caller's last reference, off the writer thread.
        drop(f);
        let out = match (commit, res) {
            (Ok(()), Some(res)) => res,
            (Ok(()), None) => Err(StoreError::Invalid("the write was not run".into())),
            (Err(e), _) => Err(e),
        };
        if let (Ok(t), Some(after)) = (&out, after) {
            after(t);
        }
        // The caller may have gone away (client disconnected); the data is
        // committed regardless.
        let _ = done.send(out);
    }
}

pub(super) struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
    enqueue_timeout: Duration,
    /// Jobs sent but not yet picked up by the writer thread.
    depth: Arc<AtomicUsize>,
    /// Bumped after each commit; see `Store::commits`.
    commits: watch::Receiver<u64>,
}

impl Writer {
    pub(super) fn start(conn: Connection, path: &Path, opts: &StoreOptions) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>(opts.write_queue.max(1));
        let (commit_tx, commit_rx) = watch::channel(0u64);
        let depth = Arc::new(AtomicUsize::new(0));
        let thread_depth = depth.clone();
        // Checkpoints are the checkpointer's job (see the module doc).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // (`journal_size_limit`, set on every connection, bounds what a
        // restart leaves on disk; the idle trimmer truncates the rest.)
        let wal = Arc::new(WalState::default());
        let ckpt_conn = super::open_connection(path, opts)?;
        let ckpt_wal = wal.clone();
        let ckpt_commits = commit_rx.clone();
        std::thread::Builder::new()
            .name("tracebox-checkpoint".into())
            .spawn(move || checkpointer(ckpt_conn, ckpt_commits, ckpt_wal))?;
        std::thread::Builder::new()
            .name("tracebox-writer".into())
            .spawn(move || run(conn, rx, commit_tx, thread_depth, wal))?;
        Ok(Writer {
            tx,
            enqueue_timeout: opts.enqueue_timeout,
            depth,
            commits: commit_rx,
        })
    }

    fn job<T, F>(
        f: F,
        after: Option<AfterCommit<T>>,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>)
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        let (done, done_rx) = oneshot::channel();
        let job = Pending {
            f,
            res: None,
            after,
            done,
        };
        (Box::new(job), done_rx)
    }

    /// Queues `f` and resolves after its transaction commits; `after` (if
    /// any) runs on the writer thread first (see [`AfterCommit`]).
    pub(super) async fn submit<T, F>(&self, f: F, after: Option<AfterCommit<T>>) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        let (job, done) = Self::job(f, after);
        self.depth.fetch_add(1, Ordering::Relaxed);
        let sent = match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(job)) => {
                match tokio::time::timeout(self.enqueue_timeout, self.tx.send(job)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(StoreError::Closed),
                    Err(_) => Err(StoreError::Overloaded),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::Closed),
        };
        if let Err(e) = sent {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(e);
        }
        done.await.unwrap_or(Err(StoreError::Closed))
    }

    pub(super) fn submit_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T> + Send + 'static,
    {
        let (job, done) = Self::job(f, None);
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.blocking_send(job).is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Closed);
        }
        done.blocking_recv().unwrap_or(Err(StoreError::Closed))
    }

    pub(super) fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    pub(super) fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// Shared between the writer and the checkpointer threads.
#[derive(Default)]
struct WalState {
    /// Set by the checkpointer when the WAL is past `WAL_RESTART_FRAMES`.
    too_big: AtomicBool,
    /// Set by the writer when it stops.
    stopped: AtomicBool,
}

/// Copies committed WAL frames into the database every `CHECKPOINT_EVERY`
/// while commits happen (PASSIVE: never waits for, nor blocks, the writer
/// or readers).
fn checkpointer(conn: Connection, commits: watch::Receiver<u64>, wal: Arc<WalState>) {
    let mut done_seq = *commits.borrow();
    while !wal.stopped.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let seq = *commits.borrow();
        if seq == done_seq {
            continue;
        }
        done_seq = seq;
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, _copied)) => {
                if log > WAL_RESTART_FRAMES {
                    wal.too_big.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
        }
    }
}

fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    commits: watch::Sender<u64>,
    depth: Arc<AtomicUsize>,
    wal: Arc<WalState>,
) {
    let mut seq = 0u64;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        depth.fetch_sub(batch.len(), Ordering::Relaxed);
        let delivered = run_batch(&conn, batch);
        let committed = delivered.iter().any(|(ok, _)| *ok);
        for (_, deliver) in delivered {
            deliver();
        }
        if committed {
            seq += 1;
            let _ = commits.send(seq);
        }
        if wal.too_big.swap(false, Ordering::Relaxed) {
            restart_wal(&conn);
        }
    }
    wal.stopped.store(true, Ordering::Relaxed);
    tracing::debug!("writer thread stopped");
}

/// Between transactions: waits briefly for readers to move to the latest
/// snapshot, copies what is left and starts the WAL from the top. The wait
/// is short so a long read never stalls ingestion; if readers are still on
/// an old snapshot the checkpointer asks again after its next pass.
fn restart_wal(conn: &Connection) {
    let _ = conn.busy_timeout(Duration::from_millis(200));
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
        Ok(0) => {}
        Ok(_) => tracing::debug!("WAL restart deferred: readers still on an old snapshot"),
        Err(e) => tracing::warn!(error = %e, "WAL restart checkpoint failed"),
    }
    let _ = conn.busy_timeout(super::BUSY_TIMEOUT);
}

type Thunk = Box<dyn FnOnce() + Send>;

fn tell(job: Box<dyn Job>, outcome: Result<()>) -> Thunk {
    Box::new(move || job.deliver(outcome))
}

/// Runs one group of jobs in one transaction. Returns, per job, whether its
/// data is now committed and a thunk that reports the outcome to its caller.
///
/// Jobs run one after the other without savepoints: a savepoint around
/// each job would copy every page the job touches into SQLite's statement
/// sub-journal, which SQLite walks from the start whenever a statement
/// ends (quadratic in the job's size; it was a third of the writer's time
/// on 512-span OTLP batches). When a job fails, its partial writes are
/// undone by rolling the whole transaction back; it is told its own
/// error, and the jobs that had succeeded run again, with each job of the
/// rest of the batch in its own savepoint so one failure costs one re-run.
///
/// On some errors (SQLITE_FULL, SQLITE_IOERR, ...) SQLite rolls back the
/// whole transaction, not just the failing statement. Every job that ran in
/// it is then reported failed, and the jobs still waiting start a new
/// transaction: running them in autocommit mode would commit them
/// statement by statement, half-applied, and then report a failed COMMIT.
fn run_batch(conn: &Connection, batch: Vec<Box<dyn Job>>) -> Vec<(bool, Thunk)> {
    let mut out: Vec<(bool, Thunk)> = Vec::with_capacity(batch.len());
    let mut queue: VecDeque<Box<dyn Job>> = batch.into();
    // Jobs run in the open transaction (in savepoint mode, failed ones too).
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(queue.len());
    let mut savepoints = false;
    let mut in_tx = false;
    while let Some(mut job) = queue.pop_front() {
        if !in_tx {
            if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
                out.push((false, tell(job, Err(commit_error(&e)))));
                continue;
            }
            in_tx = true;
        }
        if savepoints && let Err(e) = conn.execute_batch("SAVEPOINT job") {
            out.push((false, tell(job, Err(StoreError::from(e)))));
            continue;
        }
        let ok = job.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the transaction back: nothing in it survives.
            tracing::warn!(
                jobs = ran.len() + 1,
                "write transaction rolled back by SQLite"
            );
            let cause = job.failure();
            let lost = move || match &cause {
                Some((code, msg)) => {
                    StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, msg.clone()))
                }
                None => StoreError::Invalid("the write transaction was rolled back".into()),
            };
            for p in ran.drain(..) {
                out.push((false, tell(p, Err(lost()))));
            }
            let own = if ok { Err(lost()) } else { Ok(()) };
            out.push((false, tell(job, own)));
            in_tx = false;
            continue;
        }
        if savepoints {
            let cleanup = if ok {
                conn.execute_batch("RELEASE job")
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if let Err(e) = cleanup {
                tracing::error!(error = %e, "savepoint cleanup failed");
            }
            ran.push(job);
        } else if ok {
            ran.push(job);
        } else {
            // The job may have written before it failed: undo the whole
            // transaction, and run the jobs that had succeeded again.
            in_tx = false;
            out.push((false, tell(job, Ok(()))));
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                // Should not happen; never re-run work that may still be
                // in an open transaction.
                tracing::error!(error = %e, "rollback after a failed job failed");
                let _ = conn.execute_batch("ROLLBACK");
                for p in ran.drain(..) {
                    out.push((false, tell(p, Err(commit_error(&e)))));
                }
                continue;
            }
            for p in ran.drain(..).rev() {
                queue.push_front(p);
            }
            savepoints = true;
        }
    }
    if !in_tx {
        return out;
    }
    let commit = control(conn, "COMMIT");
    if commit.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for job in ran {
        let ok = job.ok() && commit.is_ok();
        let outcome = match &commit {
            Ok(()) => Ok(()),
            Err(e) => Err(commit_error(e)),
        };
        out.push((ok, tell(job, outcome)));
    }
    out
}

/// Runs `BEGIN IMMEDIATE` or `COMMIT` from the connection's statement
/// cache: `execute_batch` parses its text again on every transaction, a
/// few percent of the writer's time when each synchronous SDK request is a
/// transaction of its own.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Keeps the SQLite error code (disk full, read-only) visible to callers.
fn commit_error(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, msg.clone()))
        }
        other => StoreError::Invalid(format!("commit failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(conn: &Connection, x: &str) -> i64 {
        conn.query_row("SELECT count(*) FROM t WHERE x = ?1", [x], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_failing_job_is_undone_alone_and_the_jobs_before_it_run_again() {
        use std::sync::atomic::AtomicUsize;
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x TEXT UNIQUE, pad BLOB);")
            .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        // After-commit hooks note what they were told, in the order told.
        let told = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
        let hook = |name: &'static str| -> Option<AfterCommit<()>> {
            let told = told.clone();
            Some(Box::new(move |_| told.lock().push(name.to_string())))
        };
        let a_told = told.clone();
        // Returns the rows it sees: a re-run must report its own run.
        let (a, a_rx) = Writer::job(
            move |c: &Connection| {
                counted.fetch_add(1, Ordering::Relaxed);
                c.execute("INSERT INTO t (x) VALUES ('a')", [])?;
                Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?)
            },
            Some(Box::new(move |n: &i64| {
                a_told.lock().push(format!("a:{n}"))
            })),
        );
        // Writes, then fails: its write must not survive.
        let failing = |name: &'static str| {
            Writer::job(
                move |c: &Connection| {
                    c.execute("INSERT INTO t (x) VALUES (?1)", [name])?;
                    c.execute("INSERT INTO t (x) VALUES ('a')", [])?;
                    Ok(())
                },
                hook(name),
            )
        };
        let (b, b_rx) = failing("b");
        let (c, c_rx) = Writer::job(
            |c: &Connection| {
                c.execute("INSERT INTO t (x) VALUES ('c')", [])?;
                Ok(())
            },
            hook("c"),
        );
        let (d, d_rx) = failing("d");
        let (e, e_rx) = Writer::job(
            |c: &Connection| {
                c.execute("INSERT INTO t (x) VALUES ('e')", [])?;
                Ok(())
            },
            hook("e"),
        );
        let delivered = run_batch(&conn, vec![a, b, c, d, e]);
        let committed: Vec<bool> = delivered.iter().map(|(ok, _)| *ok).collect();
        for (_, deliver) in delivered {
            deliver();
        }
        assert_eq!(a_rx.blocking_recv().unwrap().unwrap(), 1);
        assert_eq!(
            runs.load(Ordering::Relaxed),
            2,
            "a ran again after b's rollback"
        );
        assert!(b_rx.blocking_recv().unwrap().is_err());
        assert!(c_rx.blocking_recv().unwrap().is_ok());
        assert!(d_rx.blocking_recv().unwrap().is_err());
        assert!(e_rx.blocking_recv().unwrap().is_ok());
        assert_eq!(committed.iter().filter(|ok| **ok).count(), 3);
        // Only committed jobs' hooks ran, in commit order, with the result
        // of the run that committed.
        assert_eq!(*told.lock(), ["a:1", "c", "e"]);
        let rows: Vec<String> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, ["a", "c", "e"]);
        assert!(conn.is_autocommit(), "no transaction left open");
    }

    #[test]
    fn a_transaction_sqlite_rolls_back_fails_every_job_in_it_and_the_rest_start_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x TEXT, pad BLOB);")
            .unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let _: i64 = conn
            .query_row(
                &format!("PRAGMA max_page_count = {}", pages + 20),
                [],
                |r| r.get(0),
            )
            .unwrap();
        let insert = |x: &'static str, bytes: usize| {
            Writer::job(
                move |c: &Connection| {
                    c.execute(
                        "INSERT INTO t (x, pad) VALUES (?1, zeroblob(?2))",
                        rusqlite::params![x, bytes as i64],
                    )?;
                    Ok(())
                },
                None,
            )
        };
        let (before, before_rx) = insert("before", 10);
        let (full, full_rx) = insert("full", 1 << 20);
        let (after, after_rx) = insert("after", 10);
        for (_, deliver) in run_batch(&conn, vec![before, full, after]) {
            deliver();
        }
        let before = before_rx.blocking_recv().unwrap();
        let full = full_rx.blocking_recv().unwrap();
        assert!(
            full.as_ref().is_err_and(StoreError::is_disk_full),
            "{full:?}"
        );
        // SQLite rolled the whole transaction back (SQLITE_FULL does): the
        // earlier job must not be reported as stored.
        assert_eq!(count(&conn, "before"), 0);
        assert!(
            before.as_ref().is_err_and(StoreError::is_disk_full),
            "{before:?}"
        );
        assert!(after_rx.blocking_recv().unwrap().is_ok());
        assert_eq!(count(&conn, "after"), 1);
        assert_eq!(count(&conn, "full"), 0);
        assert!(conn.is_autocommit(), "no transaction left open");
    }
}
