//! Read models for the web UI: exactly what a page shows, so that a trace
//! with thousands of large spans renders its tree without loading every
//! span's inputs and outputs. Knows SQL; does not know HTML or HTTP.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{SPAN_COLUMNS, span_from_row};
use super::traces::{load_trace_info, otel_id_for, trace_rowid};
use super::{Result, Store, StoreError};
use crate::domain::{OtelSpanId, Span, SpanStatusCode, TokenUsage, TraceInfo};

/// The most spans a trace page lists; deeper traces are cut with a note.
pub const MAX_TREE_SPANS: usize = 5000;

/// A span without its payloads: enough for the tree and the waterfall.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanSummary {
    pub span_id: OtelSpanId,
    pub parent_span_id: Option<OtelSpanId>,
    pub name: String,
    pub span_type: String,
    pub status: SpanStatusCode,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub model: Option<String>,
    pub tokens: TokenUsage,
    /// An `exception` event was recorded on the span.
    pub has_exception: bool,
}

/// One trace page: info, span summaries (start order) and one full span.
#[derive(Debug, Clone)]
pub struct TraceView {
    pub info: TraceInfo,
    pub spans: Vec<SpanSummary>,
    /// More spans exist than [`MAX_TREE_SPANS`].
    pub truncated: bool,
    /// The requested span, else the root (else the first span).
    pub selected: Option<Span>,
}

fn span_summaries(conn: &Connection, trace: i64) -> Result<(Vec<SpanSummary>, bool)> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.span_id, s.parent_span_id, s.name, s.span_type, s.status_code, s.start_ns,
             s.end_ns, s.model, s.input_tokens, s.output_tokens, s.total_tokens,
             s.events IS NOT NULL AND instr(tb_text(s.events), '\"exception\"') > 0
         FROM spans s WHERE s.trace = ?1 ORDER BY s.start_ns, s.id LIMIT ?2",
    )?;
    let mut q = stmt.query(params![trace, MAX_TREE_SPANS as i64 + 1])?;
    let corrupt = |e: crate::domain::IdError| StoreError::Corrupt(e.to_string());
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let id: Vec<u8> = r.get(0)?;
        let parent: Option<Vec<u8>> = r.get(1)?;
        out.push(SpanSummary {
            span_id: OtelSpanId::from_slice(&id).map_err(corrupt)?,
            parent_span_id: parent
                .map(|p| OtelSpanId::from_slice(&p))
                .transpose()
                .map_err(corrupt)?,
            name: r.get(2)?,
            span_type: r.get(3)?,
            status: SpanStatusCode::from_i64(r.get(4)?),
            start_ns: r.get(5)?,
            end_ns: r.get(6)?,
            model: r.get(7)?,
            tokens: TokenUsage {
                input: r.get(8)?,
                output: r.get(9)?,
                total: r.get(10)?,
            },
            has_exception: r.get(11)?,
        });
    }
    let truncated = out.len() > MAX_TREE_SPANS;
    out.truncate(MAX_TREE_SPANS);
    Ok((out, truncated))
}

fn load_span(
    conn: &Connection,
    trace: i64,
    trace_id: &str,
    span: OtelSpanId,
) -> Result<Option<Span>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SPAN_COLUMNS} FROM spans s WHERE s.trace = ?1 AND s.span_id = ?2"
    ))?;
    let otel = otel_id_for(trace_id);
    stmt.query_row(params![trace, span.0.to_vec()], |r| {
        Ok(span_from_row(r, otel))
    })
    .optional()?
    .transpose()
}

/// Everything the trace page shows; `span` picks the span whose details
/// are loaded (unknown ids fall back to the root).
pub fn trace_view(
    conn: &Connection,
    trace_id: &str,
    span: Option<OtelSpanId>,
) -> Result<TraceView> {
    let row = trace_rowid(conn, trace_id)?;
    let info = load_trace_info(conn, row)?;
    let (spans, truncated) = span_summaries(conn, row)?;
    let mut selected = match span {
        Some(s) => load_span(conn, row, trace_id, s)?,
        None => None,
    };
    if selected.is_none() {
        let fallback = spans
            .iter()
            .find(|s| s.parent_span_id.is_none())
            .or(spans.first())
            .map(|s| s.span_id);
        if let Some(s) = fallback {
            selected = load_span(conn, row, trace_id, s)?;
        }
    }
    Ok(TraceView {
        info,
        spans,
        truncated,
        selected,
    })
}

/// One span with its payloads.
pub fn span(conn: &Connection, trace_id: &str, span: OtelSpanId) -> Result<Span> {
    let row = trace_rowid(conn, trace_id)?;
    load_span(conn, row, trace_id, span)?.ok_or_else(|| {
        StoreError::NotFound(format!(
            "Span '{}' not found in trace '{trace_id}'.",
            span.to_hex()
        ))
    })
}

/// The active experiment whose newest trace is the newest of all, else the
/// most recently created one. One index seek per experiment.
pub fn most_recent_experiment(conn: &Connection) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.experiment_id,
             (SELECT max(t.request_time) FROM traces t WHERE t.experiment_id = e.experiment_id)
         FROM experiments e WHERE e.lifecycle_stage = 'active'
         ORDER BY e.creation_time DESC, e.experiment_id",
    )?;
    let rows: Vec<(i64, Option<i64>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let newest = rows
        .iter()
        .filter_map(|(e, t)| t.map(|t| (t, *e)))
        .max_by_key(|(t, e)| (*t, std::cmp::Reverse(*e)))
        .map(|(_, e)| e);
    Ok(newest.or_else(|| rows.first().map(|(e, _)| *e)))
}

impl Store {
    pub async fn trace_view(
        &self,
        trace_id: String,
        span: Option<OtelSpanId>,
    ) -> Result<TraceView> {
        self.read(move |c| trace_view(c, &trace_id, span)).await
    }

    pub async fn span(&self, trace_id: String, span_id: OtelSpanId) -> Result<Span> {
        self.read(move |c| span(c, &trace_id, span_id)).await
    }

    pub async fn most_recent_experiment(&self) -> Result<Option<i64>> {
        self.read(most_recent_experiment).await
    }
}
