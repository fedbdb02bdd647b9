//! What the full-text indexer reads from the store: span text in id order
//! past a watermark, and tombstones of deleted traces; and what the store
//! hands it as ingestion jobs commit ([`CommittedSpans`]), so that under
//! load it need not read spans back, decompress and parse them again.
//!
//! Span ids are AUTOINCREMENT and assigned by the single writer, so every
//! span committed after a watermark has a larger id: reading `id > w` in
//! order never misses a committed span. Committed spans are handed on in
//! commit order, so they arrive in id order too; and when a job's spans
//! arrive, every span with a smaller id is already committed (ids below
//! them that no job handed on — another write path, a full inbox — can
//! be read from SQLite then).

use std::sync::Arc;

use rusqlite::{Connection, params};
use serde_json::Value;

use super::{Result, Store};
use crate::domain::searchable::FieldText;

/// The spans one ingestion job committed, in id order, with the
/// searchable text computed while the upload was prepared
/// (`domain::searchable`, the same text [`SpanText`] yields).
#[derive(Debug, Clone)]
pub struct CommittedSpans {
    /// Per prepared span (in the upload's order), its searchable fields.
    pub(super) text: Arc<Vec<Vec<FieldText>>>,
    /// `(spans.id, traces.id, index into text)`, ids increasing.
    pub(super) spans: Vec<(i64, i64, u32)>,
}

impl CommittedSpans {
    /// Smallest span id, or `None` when the job stored no new span.
    pub fn first_id(&self) -> Option<i64> {
        self.spans.first().map(|s| s.0)
    }

    /// Largest span id, or `None` when the job stored no new span.
    pub fn last_id(&self) -> Option<i64> {
        self.spans.last().map(|s| s.0)
    }

    /// `(spans.id, traces.id, searchable fields)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64, &[FieldText])> + '_ {
        self.spans.iter().map(|&(id, trace, i)| {
            let text = self.text.get(i as usize).map(Vec::as_slice).unwrap_or(&[]);
            (id, trace, text)
        })
    }
}

/// The indexable parts of one span, as stored.
#[derive(Debug, Clone)]
pub struct SpanText {
    /// `spans.id`.
    pub id: i64,
    /// `traces.id` of its trace.
    pub trace: i64,
    /// The span id (16 hex digits).
    pub span_id: String,
    pub name: String,
    /// JSON text.
    pub inputs: Option<String>,
    /// JSON text.
    pub outputs: Option<String>,
    /// JSON array of events (exceptions are events), or NULL.
    pub events: Option<String>,
    pub status_message: Option<String>,
}

const COLUMNS: &str = "s.id, s.trace, s.span_id, s.name, tb_text(s.inputs), tb_text(s.outputs), tb_text(s.events), \
     s.status_message";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SpanText> {
    let span_id: Vec<u8> = r.get(2)?;
    Ok(SpanText {
        id: r.get(0)?,
        trace: r.get(1)?,
        span_id: hex::encode(span_id),
        name: r.get(3)?,
        inputs: r.get(4)?,
        outputs: r.get(5)?,
        events: r.get(6)?,
        status_message: r.get(7)?,
    })
}

/// Up to `limit` spans with `after < id < before`, in id order.
pub fn spans_between(
    conn: &Connection,
    after: i64,
    before: i64,
    limit: usize,
) -> Result<Vec<SpanText>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM spans s WHERE s.id > ?1 AND s.id < ?2 ORDER BY s.id LIMIT ?3"
    ))?;
    Ok(stmt
        .query_map(params![after, before, limit as i64], row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// Spans of the given traces, for highlighting.
pub fn spans_of_traces(conn: &Connection, traces: &[i64]) -> Result<Vec<SpanText>> {
    let ids = Value::from(traces.to_vec()).to_string();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM spans s WHERE s.trace IN (SELECT value FROM json_each(?1))
         ORDER BY s.trace, s.parent_span_id IS NOT NULL, s.start_ns, s.id"
    ))?;
    Ok(stmt
        .query_map([ids], row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// The highest span id (0 when there are none).
pub fn max_span_id(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM spans", [], |r| r.get(0))?)
}

/// How many spans have `id > after` (for progress bars).
pub fn count_spans_after(conn: &Connection, after: i64) -> Result<i64> {
    Ok(
        conn.query_row("SELECT count(*) FROM spans WHERE id > ?1", [after], |r| {
            r.get(0)
        })?,
    )
}

/// Deleted traces whose index documents may still exist.
pub fn tombstones(conn: &Connection, limit: usize) -> Result<Vec<i64>> {
    let mut stmt =
        conn.prepare_cached("SELECT trace FROM index_tombstones ORDER BY trace LIMIT ?1")?;
    Ok(stmt
        .query_map([limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Forgets tombstones once the index has committed their deletion.
pub fn clear_tombstones(conn: &Connection, traces: &[i64]) -> Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM index_tombstones WHERE trace = ?1")?;
    for t in traces {
        stmt.execute([t])?;
    }
    Ok(())
}

/// Forgets every tombstone: a rebuilt index has no documents for them.
pub fn clear_all_tombstones(conn: &Connection) -> Result<()> {
    conn.execute("DELETE FROM index_tombstones", [])?;
    Ok(())
}

/// Deleted traces the index has not dropped yet.
pub fn count_tombstones(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM index_tombstones", [], |r| r.get(0))?)
}

impl Store {
    /// How far the full-text index is behind, given its watermark: spans
    /// not indexed yet and deleted traces not dropped from it yet.
    pub async fn index_backlog(&self, watermark: i64) -> Result<(i64, i64)> {
        self.read(move |c| Ok((count_spans_after(c, watermark)?, count_tombstones(c)?)))
            .await
    }
}
