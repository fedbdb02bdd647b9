//! Housekeeping over the database: sizes and counts (status page, metrics,
//! retention), deleting the oldest traces in batches (through
//! `traces::delete_trace_rows`, the one delete path, so derived stores
//! follow), handing freed pages back to the file system, the small
//! `ops_state` key-value table, reading spans in commit order for the
//! forwarding outbox, and the online backup.
//!
//! Knows SQL and SQLite's pragmas; does not know HTTP, OTLP or schedules
//! (the `ops` module decides when to run these).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{SPAN_COLUMNS, span_from_row};
use super::traces::{delete_trace_rows, otel_id_for};
use super::{Result, Store, StoreError};
use crate::domain::Span;

/// Sizes and counts of the database, cheap to compute (pragmas and two
/// `count(*)`s over primary keys).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DbStats {
    pub page_size: i64,
    pub page_count: i64,
    pub freelist_count: i64,
    /// 0 none, 1 full, 2 incremental.
    pub auto_vacuum: i64,
    pub traces: i64,
    pub spans: i64,
    /// `request_time` of the oldest and newest trace, ms.
    pub oldest_trace_ms: Option<i64>,
    pub newest_trace_ms: Option<i64>,
}

impl DbStats {
    /// Bytes of the main database file.
    pub fn file_bytes(&self) -> u64 {
        (self.page_size * self.page_count).max(0) as u64
    }
    /// Bytes on free pages: reused by new writes, or returned to the file
    /// system by an incremental vacuum.
    pub fn free_bytes(&self) -> u64 {
        (self.page_size * self.freelist_count).max(0) as u64
    }
    /// Bytes holding data.
    pub fn used_bytes(&self) -> u64 {
        self.file_bytes().saturating_sub(self.free_bytes())
    }
}

pub fn stats(conn: &Connection) -> Result<DbStats> {
    let pragma = |name: &str| -> Result<i64> {
        Ok(conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
    };
    let (oldest, newest): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT min(request_time), max(request_time) FROM traces",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(DbStats {
        page_size: pragma("page_size")?,
        page_count: pragma("page_count")?,
        freelist_count: pragma("freelist_count")?,
        auto_vacuum: pragma("auto_vacuum")?,
        traces: conn.query_row("SELECT count(*) FROM traces", [], |r| r.get(0))?,
        spans: conn.query_row("SELECT count(*) FROM spans", [], |r| r.get(0))?,
        oldest_trace_ms: oldest,
        newest_trace_ms: newest,
    })
}

/// Deletes up to `limit` of the oldest traces (all experiments), only those
/// with `request_time < older_than_ms` when given. Returns how many went.
pub fn delete_oldest(conn: &Connection, older_than_ms: Option<i64>, limit: usize) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM traces WHERE (?1 IS NULL OR request_time < ?1)
         ORDER BY request_time, id LIMIT ?2",
    )?;
    let ids: Vec<i64> = stmt
        .query_map(params![older_than_ms, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    delete_trace_rows(conn, &ids)?;
    Ok(ids.len())
}

/// Returns up to `pages` free pages to the file system. Only shrinks files
/// created with `auto_vacuum = INCREMENTAL` (every database tracebox
/// creates); elsewhere free pages are simply reused by later writes.
pub fn incremental_vacuum(conn: &Connection, pages: i64) -> Result<()> {
    // execute_batch steps the pragma to completion (each step frees a page).
    conn.execute_batch(&format!("PRAGMA incremental_vacuum({})", pages.max(0)))?;
    Ok(())
}

pub fn get_state(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM ops_state WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub fn set_state(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO ops_state (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// The highest span row id ever committed (0 when none). Row ids are
/// AUTOINCREMENT, so this only grows, even when spans are deleted.
pub fn max_span_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'spans'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// A stored span with what a forwarder needs to address it.
#[derive(Debug, Clone)]
pub struct StoredSpan {
    /// `spans.id`: increases in commit order, the outbox cursor.
    pub row_id: i64,
    pub experiment_id: i64,
    pub trace_id: String,
    pub span: Span,
}

/// Spans committed after row id `after`, in commit order.
pub fn spans_after(conn: &Connection, after: i64, limit: usize) -> Result<Vec<StoredSpan>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SPAN_COLUMNS}, s.id, t.experiment_id, t.trace_id
         FROM spans s JOIN traces t ON t.id = s.trace
         WHERE s.id > ?1 ORDER BY s.id LIMIT ?2"
    ))?;
    let n = SPAN_COLUMNS.split(',').count();
    let mut q = stmt.query(params![after, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let trace_id: String = r.get(n + 2)?;
        out.push(StoredSpan {
            row_id: r.get(n)?,
            experiment_id: r.get(n + 1)?,
            span: span_from_row(r, otel_id_for(&trace_id))?,
            trace_id,
        });
    }
    Ok(out)
}

/// Copies the WAL into the database and truncates it to zero bytes, so the
/// space a burst of writes (or a retention pass) used in the WAL goes back
/// to the file system. Runs on its own connection; gives up quietly (the
/// WAL stays as it is, bounded by `journal_size_limit`) if readers keep it
/// busy. Returns whether the WAL was fully checkpointed.
pub fn checkpoint_truncate(db: &Path) -> Result<bool> {
    checkpoint_truncate_within(db, Duration::from_secs(2))
}

/// [`checkpoint_truncate`], waiting at most `wait` for readers and the
/// writer (the writer waits for it in turn, so callers on an idle store
/// keep this short).
pub(super) fn checkpoint_truncate_within(db: &Path, wait: Duration) -> Result<bool> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(wait)?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    Ok(busy == 0)
}

/// `PRAGMA integrity_check`: `["ok"]` when the database is sound.
pub fn integrity_check(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// What a backup produced.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub bytes: u64,
    pub traces: i64,
    pub spans: i64,
    pub schema_version: i64,
}

/// Copies the database at `src` into a new file `dest` with SQLite's online
/// backup API, in one step: the copy is one read transaction, hence one
/// consistent snapshot, and in WAL mode it never blocks the server's writer
/// (a stepwise backup would restart every time the server commits). The
/// copy is switched to a rollback journal so it is one self-contained file,
/// then checked with `integrity_check`.
pub fn backup_database(src: &Path, dest: &Path) -> Result<BackupReport> {
    let source = Connection::open_with_flags(
        src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(30))?;
    source.execute_batch("PRAGMA query_only = ON")?;
    let mut target = Connection::open(dest)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => break,
                // Another connection holds a lock we need for a moment.
                _ if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                other => {
                    return Err(StoreError::Invalid(format!(
                        "backup could not finish: {other:?}"
                    )));
                }
            }
        }
    }
    let _: String = target.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    let check = integrity_check(&target)?;
    if check != ["ok"] {
        return Err(StoreError::Corrupt(format!(
            "the backup failed its integrity check: {}",
            check.join("; ")
        )));
    }
    let s = stats(&target)?;
    let schema_version = target.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    drop(target);
    Ok(BackupReport {
        bytes: std::fs::metadata(dest)?.len(),
        traces: s.traces,
        spans: s.spans,
        schema_version,
    })
}

impl Store {
    pub async fn stats(&self) -> Result<DbStats> {
        self.read(stats).await
    }

    /// One retention batch (see [`delete_oldest`]), in its own transaction
    /// so ingestion interleaves with a long clean-up.
    pub async fn delete_oldest(&self, older_than_ms: Option<i64>, limit: usize) -> Result<usize> {
        self.write(move |c| delete_oldest(c, older_than_ms, limit))
            .await
    }

    /// See [`checkpoint_truncate`].
    pub async fn checkpoint_truncate(&self) -> Result<bool> {
        let path = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || checkpoint_truncate(&path))
            .await
            .map_err(|e| StoreError::Invalid(format!("checkpoint task failed: {e}")))?
    }

    pub async fn incremental_vacuum(&self, pages: i64) -> Result<()> {
        self.write(move |c| incremental_vacuum(c, pages)).await
    }

    pub async fn get_state(&self, key: String) -> Result<Option<String>> {
        self.read(move |c| get_state(c, &key)).await
    }

    pub async fn set_state(&self, key: String, value: String) -> Result<()> {
        self.write(move |c| set_state(c, &key, &value)).await
    }

    pub async fn spans_after(&self, after: i64, limit: usize) -> Result<Vec<StoredSpan>> {
        self.read(move |c| spans_after(c, after, limit)).await
    }

    pub async fn max_span_id(&self) -> Result<i64> {
        self.read(max_span_id).await
    }
}
