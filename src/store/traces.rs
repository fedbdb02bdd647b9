//! Traces and spans: ingestion (spans and trace info may arrive in either
//! order and are merged by trace id), reads, tags and deletion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rusqlite::{CachedStatement, Connection, OptionalExtension, Statement, params};
use serde_json::{Map, Value};

use super::payload::{Codec, Payload};
use super::rows::{
    self, SPAN_COLUMNS, TRACE_COLUMNS, events_to_json, span_from_row, trace_info_from_row,
};
use super::{Result, Store, StoreError};
use crate::domain::searchable::{self, FieldText};
use crate::domain::semconv::TraceHints;
use crate::domain::{
    OtelTraceId, SentJson, Span, SpanBatch, SpanStatusCode, TokenUsage, TraceId, TraceInfo,
    TraceState, metadata_keys, now_ms, tag_keys,
};

/// MLflow truncates request/response previews to this many characters.
pub const PREVIEW_MAX_CHARS: usize = 1000;

/// What an ingestion job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub traces: usize,
    pub spans_inserted: usize,
    /// Spans already stored (a retried upload); ignored, not an error.
    pub spans_duplicate: usize,
    /// Internal ids of traces whose root span arrived in this job.
    pub completed_traces: Vec<i64>,
    /// Internal ids of every trace that got at least one new span.
    pub touched_traces: Vec<i64>,
    /// The touched traces this job created (no row before it).
    pub created_traces: Vec<i64>,
    /// Every new span: `(spans.id, traces.id, index into the prepared
    /// batch's searchable text)`, for the span follower.
    pub new_spans: Vec<(i64, i64, u32)>,
}

fn run_hooks(
    conn: &Connection,
    hooks: &[super::TraceHook],
    w: &super::TracesWritten,
) -> Result<()> {
    if w.touched.is_empty() {
        return Ok(());
    }
    for h in hooks {
        h(conn, w)?;
    }
    Ok(())
}

/// Trace info sent by a client (MLflow StartTraceV3), with its previews
/// already packed for storage (see `payload`): built by the caller, off the
/// writer thread. Read-only once built, so the packed previews always match
/// the info's.
#[derive(Debug, Clone)]
pub struct TraceUpsert {
    info: TraceInfo,
    request_preview: Option<Payload>,
    response_preview: Option<Payload>,
}

impl TraceUpsert {
    pub fn new(info: TraceInfo, codec: &Codec) -> TraceUpsert {
        let pack = |p: &Option<String>| p.clone().map(|t| codec.pack(t));
        TraceUpsert {
            request_preview: pack(&info.request_preview),
            response_preview: pack(&info.response_preview),
            info,
        }
    }
}

/// A trace with its spans, root first then by start time.
#[derive(Debug, Clone)]
pub struct TraceDetail {
    pub info: TraceInfo,
    pub spans: Vec<Span>,
}

/// Which traces `delete_traces` removes.
#[derive(Debug, Clone)]
pub enum DeleteTraces {
    Ids(Vec<String>),
    OlderThan {
        max_timestamp_ms: i64,
        max_traces: Option<i64>,
    },
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Preview text for a JSON value: strings as they are, anything else as JSON.
pub fn preview(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    truncate_chars(&s, PREVIEW_MAX_CHARS)
}

fn experiment_exists(conn: &Connection, id: i64) -> Result<()> {
    // Cached: every upload checks its experiment, and preparing this
    // statement anew was a tenth of the writer's time under a synchronous
    // SDK client (one small transaction per request).
    let found: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM experiments WHERE experiment_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!(
            "Could not find experiment with ID {id}"
        ))),
    }
}

struct TraceRow {
    id: i64,
    info_finalized: bool,
    tokens_from_info: bool,
}

const FIND_TRACE_ROW: &str =
    "SELECT id, info_finalized, tokens_from_info FROM traces WHERE trace_id = ?1";

fn find_trace_row(conn: &Connection, trace_id: &str) -> Result<Option<TraceRow>> {
    let mut stmt = conn.prepare_cached(FIND_TRACE_ROW)?;
    find_trace_row_with(&mut stmt, trace_id)
}

fn find_trace_row_with(stmt: &mut Statement<'_>, trace_id: &str) -> Result<Option<TraceRow>> {
    Ok(stmt
        .query_row([trace_id], |r| {
            Ok(TraceRow {
                id: r.get(0)?,
                info_finalized: r.get(1)?,
                tokens_from_info: r.get(2)?,
            })
        })
        .optional()?)
}

/// Internal row id of a trace, or NotFound in MLflow's words.
pub fn trace_rowid(conn: &Connection, trace_id: &str) -> Result<i64> {
    find_trace_row(conn, trace_id)?
        .map(|t| t.id)
        .ok_or_else(|| not_found(trace_id))
}

pub(super) fn not_found(trace_id: &str) -> StoreError {
    StoreError::NotFound(format!("Trace with ID '{trace_id}' not found."))
}

fn set_tag_row(conn: &Connection, trace: i64, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO trace_tags (trace, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (trace, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![trace, key, value])?;
    Ok(())
}

/// One span encoded for its row. The JSON text is built before the job
/// reaches the writer thread, which then only binds and inserts: the
/// writer is the one thread every upload shares.
#[derive(Debug, Clone)]
struct SpanRow {
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    name: String,
    span_type: String,
    kind: i32,
    status: SpanStatusCode,
    status_message: Option<String>,
    start_ns: i64,
    end_ns: Option<i64>,
    inputs: Option<Payload>,
    outputs: Option<Payload>,
    attributes: String,
    /// The attribute `inputs` / `outputs` came from, left out of
    /// `attributes` (see migration 0006).
    inputs_attr: Option<String>,
    outputs_attr: Option<String>,
    events: Option<Payload>,
    model: Option<String>,
    tokens: TokenUsage,
    /// Index of its searchable text in [`PreparedBatch`]'s.
    text: u32,
}

/// The attribute holding exactly `value`, if any: that attribute is then
/// stored once. Only values big enough to matter are looked for.
fn attr_holding<'a>(attrs: &'a Map<String, Value>, value: Option<&Value>) -> Option<&'a str> {
    let v = value?;
    let worth = match v {
        Value::Object(o) => !o.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::String(s) => s.len() >= 64,
        _ => false,
    };
    if !worth {
        return None;
    }
    attrs
        .iter()
        .find(|(_, a)| same_value(a, v))
        .map(|(k, _)| k.as_str())
}

/// `a == b` for values where one is a clone of the other (the case worth
/// finding), without hashing: objects compare entry by entry in order, so
/// equal objects with their keys in another order count as different —
/// the attribute is then merely stored twice.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Object(_) | Value::Array(_) | Value::String(_), _) => false,
        _ => a == b,
    }
}

/// Compact JSON text of a value.
fn json_text(v: &Value) -> String {
    // Serialising a Value cannot fail (keys are strings).
    serde_json::to_string(v).unwrap_or_default()
}

/// The JSON text to store for a span's inputs or outputs `v`: the text it
/// arrived as — its own (`own`), or that of the attribute `attr` holding
/// it, which is not stored so its text can move — else `v` encoded.
fn stored_json(
    v: Option<&Value>,
    own: Option<String>,
    attr: Option<&str>,
    sent: &mut SentJson,
) -> Option<String> {
    let v = v?;
    Some(
        own.or_else(|| attr.and_then(|k| sent.take_attribute(k)))
            .unwrap_or_else(|| json_text(v)),
    )
}

/// The attributes object as JSON text, without `skip` keys; values that
/// arrived as JSON text are written as that text.
fn attributes_text(attrs: &Map<String, Value>, skip: [Option<&str>; 2], sent: &SentJson) -> String {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    let kept = attrs
        .iter()
        .filter(|(k, _)| !skip.contains(&Some(k.as_str())));
    for (i, (k, v)) in kept.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, k);
        out.push(b':');
        match sent.attribute(k) {
            Some(text) => out.extend_from_slice(text.as_bytes()),
            None => {
                let _ = serde_json::to_writer(&mut out, v);
            }
        }
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// Preview text for a value already encoded as `json`.
fn preview_of(v: &Value, json: Option<&String>) -> String {
    match (v, json) {
        (Value::String(s), _) => truncate_chars(s, PREVIEW_MAX_CHARS),
        (_, Some(j)) => truncate_chars(j, PREVIEW_MAX_CHARS),
        (other, None) => preview(other),
    }
}

/// A value's payload packed for storage and, for a root span, its preview
/// packed too — as the payload's own bytes when the preview is the whole
/// JSON text (values up to [`PREVIEW_MAX_CHARS`]), compressed once.
fn preview_and_payload(
    codec: &Codec,
    v: Option<&Value>,
    json: Option<String>,
    root: bool,
) -> (Option<Payload>, Option<Payload>) {
    let preview = v.filter(|_| root).map(|v| preview_of(v, json.as_ref()));
    let whole = preview.is_some() && preview.as_ref() == json.as_ref();
    let payload = json.map(|t| codec.pack(t));
    let preview = match (preview, &payload) {
        (Some(_), Some(p)) if whole => Some(p.clone()),
        (p, _) => p.map(|p| codec.pack(p)),
    };
    (preview, payload)
}

/// What a root span says about its trace.
#[derive(Debug, Clone)]
struct RootFacts {
    name: String,
    start_ms: i64,
    execution_ms: Option<i64>,
    state: TraceState,
    /// Compressed like span payloads: two previews of up to 1,000
    /// characters were a third of the database's bytes under OTLP load.
    request_preview: Option<Payload>,
    response_preview: Option<Payload>,
}

/// The spans of one trace in an upload, encoded.
#[derive(Debug, Clone)]
struct TraceRows {
    trace_id: String,
    spans: Vec<SpanRow>,
    hints: TraceHints,
    min_start_ms: i64,
    root: Option<RootFacts>,
}

/// Spans grouped by trace and encoded for storage, ready for
/// [`Store::ingest_prepared`]. Building one is CPU work (JSON encoding,
/// previews, compression) that callers should do off the async executor
/// and off the writer thread.
#[derive(Debug, Clone, Default)]
pub struct PreparedBatch {
    traces: Vec<TraceRows>,
    /// Searchable text of each span, in the order spans were prepared: the
    /// span follower (the indexer) gets it with the ids the spans got.
    text: Arc<Vec<Vec<FieldText>>>,
}

impl PreparedBatch {
    pub fn new(batch: SpanBatch, codec: &Codec) -> PreparedBatch {
        let SpanBatch { spans, mut hints } = batch;
        let mut index: HashMap<OtelTraceId, usize> = HashMap::new();
        let mut traces: Vec<TraceRows> = Vec::new();
        let mut seen: HashSet<(usize, [u8; 8])> = HashSet::with_capacity(spans.len());
        let mut text = Vec::with_capacity(spans.len());
        for mut s in spans {
            let i = *index.entry(s.trace_id).or_insert_with(|| {
                traces.push(TraceRows {
                    trace_id: TraceId::from_otel(s.trace_id).into_string(),
                    spans: Vec::new(),
                    hints: hints.remove(&s.trace_id).unwrap_or_default(),
                    min_start_ms: i64::MAX,
                    root: None,
                });
                traces.len() - 1
            });
            // A span sent twice in one upload is stored once.
            if !seen.insert((i, s.span_id.0)) {
                continue;
            }
            let t = &mut traces[i];
            t.min_start_ms = t.min_start_ms.min(s.start_ns / 1_000_000);
            let inputs_attr = attr_holding(&s.attributes, s.inputs.as_ref());
            let outputs_attr =
                attr_holding(&s.attributes, s.outputs.as_ref()).filter(|k| Some(*k) != inputs_attr);
            let inputs = stored_json(
                s.inputs.as_ref(),
                s.sent.inputs.take(),
                inputs_attr,
                &mut s.sent,
            );
            let outputs = stored_json(
                s.outputs.as_ref(),
                s.sent.outputs.take(),
                outputs_attr,
                &mut s.sent,
            );
            let attributes = attributes_text(&s.attributes, [inputs_attr, outputs_attr], &s.sent);
            let inputs_attr = inputs_attr.map(str::to_string);
            let outputs_attr = outputs_attr.map(str::to_string);
            let (request_preview, inputs) =
                preview_and_payload(codec, s.inputs.as_ref(), inputs, s.is_root());
            let (response_preview, outputs) =
                preview_and_payload(codec, s.outputs.as_ref(), outputs, s.is_root());
            if s.is_root() {
                t.root = Some(RootFacts {
                    name: s.name.clone(),
                    start_ms: s.start_ns / 1_000_000,
                    execution_ms: s.duration_ms(),
                    state: match s.status {
                        SpanStatusCode::Error => TraceState::Error,
                        _ if s.end_ns.is_some() => TraceState::Ok,
                        _ => TraceState::InProgress,
                    },
                    request_preview,
                    response_preview,
                });
            }
            text.push(searchable::span_fields(
                &s.name,
                s.inputs.as_ref(),
                s.outputs.as_ref(),
                &s.events,
                &s.status_message,
            ));
            t.spans.push(SpanRow {
                text: (text.len() - 1) as u32,
                span_id: s.span_id.0,
                parent_span_id: s.parent_span_id.map(|p| p.0),
                status_message: (!s.status_message.is_empty()).then_some(s.status_message),
                inputs,
                outputs,
                attributes,
                inputs_attr,
                outputs_attr,
                events: events_to_json(&s.events).map(|t| codec.pack(t)),
                name: s.name,
                span_type: s.span_type,
                kind: s.kind,
                status: s.status,
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                model: s.model,
                tokens: s.tokens,
            });
        }
        for t in &mut traces {
            if t.min_start_ms == i64::MAX {
                t.min_start_ms = 0;
            }
        }
        PreparedBatch {
            traces,
            text: Arc::new(text),
        }
    }

    pub fn span_count(&self) -> usize {
        self.traces.iter().map(|t| t.spans.len()).sum()
    }
}

/// Stores spans, creating provisional traces for ids not seen before.
pub fn ingest_spans(
    conn: &Connection,
    codec: &Codec,
    experiment_id: i64,
    batch: SpanBatch,
) -> Result<IngestOutcome> {
    ingest_prepared(conn, experiment_id, &PreparedBatch::new(batch, codec))
}

/// Stores prepared spans, creating traces for ids not seen before.
pub fn ingest_prepared(
    conn: &Connection,
    experiment_id: i64,
    batch: &PreparedBatch,
) -> Result<IngestOutcome> {
    experiment_exists(conn, experiment_id)?;
    let now = now_ms();
    let mut out = IngestOutcome::default();
    let mut inserted = Vec::new();
    let mut st = IngestStatements::new(conn)?;
    for t in &batch.traces {
        match find_trace_row_with(&mut st.find_trace, &t.trace_id)? {
            None => {
                let request_time =
                    insert_new_trace(conn, &mut st, experiment_id, t, now, &mut out)?;
                inserted.push((experiment_id, request_time));
            }
            Some(row) => merge_into_trace(conn, &mut st, &row, t, now, &mut out)?,
        }
        out.traces += 1;
    }
    super::stats::mark_inserted(conn, &inserted)?;
    Ok(out)
}

/// The statements an ingestion job runs per trace and per span, taken from
/// the connection's statement cache once per job: each lookup hashes the
/// statement's text and each return resets it, a few percent of the
/// writer's time when done for every one of an upload's hundreds of spans.
struct IngestStatements<'c> {
    find_trace: CachedStatement<'c>,
    insert_trace: CachedStatement<'c>,
    insert_span: CachedStatement<'c>,
    insert_tag: CachedStatement<'c>,
    insert_metadata: CachedStatement<'c>,
}

impl<'c> IngestStatements<'c> {
    fn new(conn: &'c Connection) -> Result<Self> {
        Ok(IngestStatements {
            find_trace: conn.prepare_cached(FIND_TRACE_ROW)?,
            insert_trace: conn.prepare_cached(
                "INSERT INTO traces (trace_id, experiment_id, request_time, execution_time, state,
                     name, request_preview, response_preview, session_id, user_id, input_tokens,
                     output_tokens, total_tokens, span_count, has_root, last_update)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?,
            insert_span: conn.prepare_cached(
                "INSERT INTO spans (trace, span_id, parent_span_id, name, span_type, kind,
                     status_code, status_message, start_ns, end_ns, inputs, outputs, attributes,
                     events, model, input_tokens, output_tokens, total_tokens, inputs_attr,
                     outputs_attr)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17, ?18, ?19, ?20)
                 ON CONFLICT (trace, span_id) DO NOTHING",
            )?,
            insert_tag: conn.prepare_cached(
                "INSERT INTO trace_tags (trace, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?,
            insert_metadata: conn.prepare_cached(
                "INSERT INTO trace_metadata (trace, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?,
        })
    }
}

/// Inserts a span unless its trace has it already; the new row's id.
fn insert_span(
    conn: &Connection,
    st: &mut IngestStatements<'_>,
    trace: i64,
    s: &SpanRow,
) -> Result<Option<i64>> {
    let n = st.insert_span.execute(params![
        trace,
        &s.span_id[..],
        s.parent_span_id.as_ref().map(|p| &p[..]),
        s.name,
        s.span_type,
        s.kind,
        s.status.as_i64(),
        s.status_message,
        s.start_ns,
        s.end_ns,
        s.inputs,
        s.outputs,
        s.attributes,
        s.events,
        s.model,
        s.tokens.input,
        s.tokens.output,
        s.tokens.total,
        s.inputs_attr,
        s.outputs_attr,
    ])?;
    Ok((n > 0).then(|| conn.last_insert_rowid()))
}

/// A trace seen for the first time: every span is new, so the trace row is
/// written once with its final values (name, times, state, tokens, session)
/// computed here instead of being inserted and then updated.
fn insert_new_trace(
    conn: &Connection,
    st: &mut IngestStatements<'_>,
    experiment_id: i64,
    t: &TraceRows,
    now: i64,
    out: &mut IngestOutcome,
) -> Result<i64> {
    let tokens = aggregate_tokens(t.spans.iter().map(|s| {
        (
            &s.span_id[..],
            s.parent_span_id.as_ref().map(|p| &p[..]),
            s.tokens,
        )
    }));
    let pick = |key: &str| {
        t.hints
            .tags
            .get(key)
            .or_else(|| t.hints.metadata.get(key))
            .cloned()
    };
    let (session, user) = (pick(tag_keys::SESSION), pick(tag_keys::USER));
    let root = t.root.as_ref();
    let request_time = root.map(|r| r.start_ms).unwrap_or(t.min_start_ms);
    st.insert_trace.execute(params![
        t.trace_id,
        experiment_id,
        request_time,
        root.and_then(|r| r.execution_ms),
        root.map(|r| r.state)
            .unwrap_or(TraceState::InProgress)
            .as_str(),
        root.map(|r| &r.name),
        root.and_then(|r| r.request_preview.as_ref()),
        root.and_then(|r| r.response_preview.as_ref()),
        session,
        user,
        tokens.input,
        tokens.output,
        tokens.total,
        t.spans.len() as i64,
        root.is_some(),
        now,
    ])?;
    let id = conn.last_insert_rowid();
    for s in &t.spans {
        if let Some(span) = insert_span(conn, st, id, s)? {
            out.new_spans.push((span, id, s.text));
            out.spans_inserted += 1;
        }
    }
    out.touched_traces.push(id);
    out.created_traces.push(id);
    st.insert_tag.execute(params![
        id,
        tag_keys::SPANS_LOCATION,
        tag_keys::TRACKING_STORE
    ])?;
    if let Some(r) = root {
        st.insert_tag
            .execute(params![id, tag_keys::TRACE_NAME, r.name])?;
    }
    insert_hints(st, id, &t.hints)?;
    if root.is_some() {
        out.completed_traces.push(id);
    }
    Ok(request_time)
}

/// More spans for a trace that already has a row (an earlier upload, or
/// client-sent trace info).
fn merge_into_trace(
    conn: &Connection,
    st: &mut IngestStatements<'_>,
    row: &TraceRow,
    t: &TraceRows,
    now: i64,
    out: &mut IngestOutcome,
) -> Result<()> {
    let mut inserted = 0i64;
    let mut any_tokens = false;
    let mut root_inserted = false;
    for s in &t.spans {
        let Some(span) = insert_span(conn, st, row.id, s)? else {
            out.spans_duplicate += 1;
            continue;
        };
        out.new_spans.push((span, row.id, s.text));
        inserted += 1;
        any_tokens |= !s.tokens.is_empty();
        root_inserted |= s.parent_span_id.is_none();
    }
    out.spans_inserted += inserted as usize;
    if inserted == 0 {
        return Ok(());
    }
    out.touched_traces.push(row.id);
    // Two statements, not one with `request_time = CASE ...`: SQLite
    // rewrites the entries of every index on a column named in SET even when
    // its value does not change, and six indexes of `traces` end in
    // request_time. A span that does not move the start (most of them)
    // then dirties only the table's page.
    conn.prepare_cached(
        "UPDATE traces SET span_count = span_count + ?2, last_update = ?3 WHERE id = ?1",
    )?
    .execute(params![row.id, inserted, now])?;
    conn.prepare_cached(
        "UPDATE traces SET request_time = ?2
         WHERE id = ?1 AND has_root = 0 AND info_finalized = 0 AND ?2 < request_time",
    )?
    .execute(params![row.id, t.min_start_ms])?;
    if any_tokens && !row.tokens_from_info {
        recompute_tokens(conn, row.id)?;
    }
    if !t.hints.is_empty() {
        apply_hints(conn, st, row.id, &t.hints)?;
    }
    st.insert_tag.execute(params![
        row.id,
        tag_keys::SPANS_LOCATION,
        tag_keys::TRACKING_STORE
    ])?;
    if let (true, Some(root)) = (root_inserted, &t.root) {
        apply_root(conn, row, root)?;
        out.completed_traces.push(row.id);
    }
    Ok(())
}

/// Token usage summed over spans, skipping a span when one of its
/// ancestors reports usage too (a wrapper's figure already includes its
/// children's), as MLflow aggregates it.
fn aggregate_tokens<'a>(
    spans: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>, TokenUsage)>,
) -> TokenUsage {
    let rows: Vec<_> = spans.collect();
    if rows.iter().all(|(_, _, t)| t.is_empty()) {
        return TokenUsage::default();
    }
    let by_id: HashMap<&'a [u8], (Option<&'a [u8]>, bool)> = rows
        .iter()
        .map(|(id, parent, t)| (*id, (*parent, !t.is_empty())))
        .collect();
    let has_reporting_ancestor = |mut parent: Option<&'a [u8]>| {
        let mut hops = 0;
        while let Some(p) = parent {
            let Some((pp, reports)) = by_id.get(p) else {
                break;
            };
            if *reports {
                return true;
            }
            parent = *pp;
            hops += 1;
            if hops > by_id.len() {
                break; // a cycle in bad data
            }
        }
        false
    };
    let mut sum = TokenUsage::default();
    for (_, parent, t) in &rows {
        if t.is_empty() || has_reporting_ancestor(*parent) {
            continue;
        }
        for (acc, v) in [
            (&mut sum.input, t.input),
            (&mut sum.output, t.output),
            (&mut sum.total, t.total_or_sum()),
        ] {
            if let Some(v) = v {
                *acc = Some(acc.unwrap_or(0) + v);
            }
        }
    }
    sum
}

/// Re-derives a trace's token usage from all its stored spans.
fn recompute_tokens(conn: &Connection, trace: i64) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT span_id, parent_span_id, input_tokens, output_tokens, total_tokens
         FROM spans WHERE trace = ?1",
    )?;
    type Row = (Vec<u8>, Option<Vec<u8>>, TokenUsage);
    let rows: Vec<Row> = stmt
        .query_map([trace], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                TokenUsage {
                    input: r.get(2)?,
                    output: r.get(3)?,
                    total: r.get(4)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let sum = aggregate_tokens(
        rows.iter()
            .map(|(id, parent, t)| (id.as_slice(), parent.as_deref(), *t)),
    );
    conn.prepare_cached(
        "UPDATE traces SET input_tokens = ?2, output_tokens = ?3, total_tokens = ?4 WHERE id = ?1",
    )?
    .execute(params![trace, sum.input, sum.output, sum.total])?;
    Ok(())
}

/// Tags and metadata the spans' conventions carried; keys the trace has
/// already keep their values.
fn insert_hints(st: &mut IngestStatements<'_>, trace: i64, hints: &TraceHints) -> Result<()> {
    for (k, v) in &hints.tags {
        st.insert_tag.execute(params![trace, k, v])?;
    }
    for (k, v) in &hints.metadata {
        st.insert_metadata.execute(params![trace, k, v])?;
    }
    Ok(())
}

/// Tags and metadata found on spans fill in what the trace does not have,
/// and the trace's session and user follow them.
fn apply_hints(
    conn: &Connection,
    st: &mut IngestStatements<'_>,
    trace: i64,
    hints: &TraceHints,
) -> Result<()> {
    insert_hints(st, trace, hints)?;
    if hints.has_session_or_user() {
        refresh_session_user(conn, trace)?;
    }
    Ok(())
}

/// The root span fixes the trace's name, start, duration and (unless the
/// client already sent trace info) its state and previews.
fn apply_root(conn: &Connection, row: &TraceRow, root: &RootFacts) -> Result<()> {
    conn.prepare_cached(
        "UPDATE traces SET has_root = 1,
             name = coalesce(name, ?2),
             request_time = CASE WHEN info_finalized = 1 THEN request_time ELSE ?3 END,
             execution_time = CASE WHEN info_finalized = 1 AND execution_time IS NOT NULL
                                   THEN execution_time ELSE ?4 END,
             state = CASE WHEN info_finalized = 1 THEN state ELSE ?5 END,
             request_preview = coalesce(request_preview, ?6),
             response_preview = coalesce(response_preview, ?7)
         WHERE id = ?1",
    )?
    .execute(params![
        row.id,
        root.name,
        root.start_ms,
        root.execution_ms,
        root.state.as_str(),
        root.request_preview,
        root.response_preview
    ])?;
    if !row.info_finalized {
        conn.prepare_cached(
            "INSERT INTO trace_tags (trace, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![row.id, tag_keys::TRACE_NAME, root.name])?;
    }
    Ok(())
}

/// Parses MLflow's `mlflow.trace.tokenUsage` metadata value.
pub fn token_usage_from_metadata(md: &BTreeMap<String, String>) -> Option<TokenUsage> {
    let v: Value = serde_json::from_str(md.get(metadata_keys::TOKEN_USAGE)?).ok()?;
    let t = TokenUsage {
        input: v["input_tokens"].as_i64(),
        output: v["output_tokens"].as_i64(),
        total: v["total_tokens"].as_i64(),
    };
    (!t.is_empty()).then_some(t)
}

/// Creates or completes a trace from client-sent info (StartTraceV3); spans
/// that arrived first keep their row, which this fills in. Returns the
/// trace's internal row id.
pub fn upsert_trace_info_row(conn: &Connection, up: &TraceUpsert) -> Result<i64> {
    let info = &up.info;
    experiment_exists(conn, info.experiment_id)?;
    let now = now_ms();
    let tokens = token_usage_from_metadata(&info.metadata);
    let name = info.name().map(str::to_string);
    let id = match find_trace_row(conn, &info.trace_id)? {
        Some(r) => {
            // Indexed columns are set only where they change (SQLite
            // rewrites an index entry whenever its column is named in SET):
            // the spans usually arrived first and already set the start,
            // duration, state and name the client now repeats.
            conn.prepare_cached(
                "UPDATE traces SET experiment_id = ?2, request_time = ?3,
                     execution_time = coalesce(?4, execution_time), state = ?5,
                     name = coalesce(?6, name)
                 WHERE id = ?1 AND (experiment_id IS NOT ?2 OR request_time IS NOT ?3
                     OR execution_time IS NOT coalesce(?4, execution_time) OR state IS NOT ?5
                     OR name IS NOT coalesce(?6, name))",
            )?
            .execute(params![
                r.id,
                info.experiment_id,
                info.request_time_ms,
                info.execution_time_ms,
                info.state.as_str(),
                name,
            ])?;
            conn.prepare_cached(
                "UPDATE traces SET client_request_id = ?2
                 WHERE id = ?1 AND client_request_id IS NOT ?2",
            )?
            .execute(params![r.id, info.client_request_id])?;
            conn.prepare_cached(
                "UPDATE traces SET request_preview = coalesce(?2, request_preview),
                     response_preview = coalesce(?3, response_preview),
                     info_finalized = 1, last_update = ?4
                 WHERE id = ?1",
            )?
            .execute(params![r.id, up.request_preview, up.response_preview, now])?;
            r.id
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO traces (trace_id, experiment_id, client_request_id, request_time,
                     execution_time, state, request_preview, response_preview, name,
                     info_finalized, last_update)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10)",
            )?
            .execute(params![
                info.trace_id,
                info.experiment_id,
                info.client_request_id,
                info.request_time_ms,
                info.execution_time_ms,
                info.state.as_str(),
                up.request_preview,
                up.response_preview,
                name,
                now
            ])?;
            let id = conn.last_insert_rowid();
            super::stats::mark_inserted(conn, &[(info.experiment_id, info.request_time_ms)])?;
            id
        }
    };
    if let Some(t) = tokens {
        conn.prepare_cached(
            "UPDATE traces SET input_tokens = ?2, output_tokens = ?3, total_tokens = ?4,
                 tokens_from_info = 1 WHERE id = ?1",
        )?
        .execute(params![id, t.input, t.output, t.total_or_sum()])?;
    }
    {
        let mut md = conn.prepare_cached(
            "INSERT INTO trace_metadata (trace, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (trace, key) DO UPDATE SET value = excluded.value",
        )?;
        for (k, v) in &info.metadata {
            md.execute(params![id, k, v])?;
        }
        md.execute(params![id, metadata_keys::INFO_FINALIZED, "true"])?;
    }
    for (k, v) in &info.tags {
        set_tag_row(conn, id, k, v)?;
    }
    let artifact = format!(
        "mlflow-artifacts:/{}/traces/{}/artifacts",
        info.experiment_id, info.trace_id
    );
    set_tag_row(conn, id, tag_keys::ARTIFACT_LOCATION, &artifact)?;
    // tracebox stores every span itself, whichever route it arrives by
    // (OTLP or the traces.json artifact): telling the client so stops it
    // from uploading the artifact copy.
    set_tag_row(conn, id, tag_keys::SPANS_LOCATION, tag_keys::TRACKING_STORE)?;
    refresh_session_user(conn, id)?;
    Ok(id)
}

/// Re-derives the denormalised session and user columns from tags/metadata.
pub(super) fn refresh_session_user(conn: &Connection, id: i64) -> Result<()> {
    // Only when one changes: both columns are indexed (see merge_into_trace).
    conn.prepare_cached(
        "UPDATE traces SET session_id = v.s, user_id = v.u
         FROM (SELECT
                 coalesce((SELECT value FROM trace_tags WHERE trace = ?1 AND key = ?2),
                          (SELECT value FROM trace_metadata WHERE trace = ?1 AND key = ?2)) AS s,
                 coalesce((SELECT value FROM trace_tags WHERE trace = ?1 AND key = ?3),
                          (SELECT value FROM trace_metadata WHERE trace = ?1 AND key = ?3)) AS u) AS v
         WHERE traces.id = ?1 AND (traces.session_id IS NOT v.s OR traces.user_id IS NOT v.u)",
    )?
    .execute(params![id, tag_keys::SESSION, tag_keys::USER])?;
    Ok(())
}

/// One trace's info with tags, metadata and assessments, by internal id.
pub fn load_trace_info(conn: &Connection, id: i64) -> Result<TraceInfo> {
    let mut v = load_trace_infos(conn, &[id])?;
    v.pop()
        .ok_or_else(|| StoreError::NotFound(format!("trace row {id} vanished")))
}

/// Trace infos for internal ids, in the order given; missing ids are skipped.
pub fn load_trace_infos(conn: &Connection, ids: &[i64]) -> Result<Vec<TraceInfo>> {
    let ids_json = Value::from(ids.to_vec()).to_string();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TRACE_COLUMNS} FROM traces t WHERE t.id IN (SELECT value FROM json_each(?1))"
    ))?;
    let mut found: HashMap<i64, TraceInfo> = HashMap::new();
    let mut q = stmt.query([ids_json])?;
    while let Some(r) = q.next()? {
        let (id, info) = trace_info_from_row(r)?;
        found.insert(id, info);
    }
    let mut rows: Vec<(i64, TraceInfo)> = ids
        .iter()
        .filter_map(|id| found.remove(id).map(|i| (*id, i)))
        .collect();
    rows::hydrate(conn, &mut rows)?;
    Ok(rows.into_iter().map(|(_, i)| i).collect())
}

pub fn get_trace_info(conn: &Connection, trace_id: &str) -> Result<TraceInfo> {
    let id = trace_rowid(conn, trace_id)?;
    load_trace_info(conn, id)
}

/// Spans of a trace: the root first, then in start order.
pub fn load_spans(conn: &Connection, id: i64, otel_id: OtelTraceId) -> Result<Vec<Span>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SPAN_COLUMNS} FROM spans s WHERE s.trace = ?1
         ORDER BY s.parent_span_id IS NOT NULL, s.start_ns, s.id"
    ))?;
    let mut q = stmt.query([id])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        out.push(span_from_row(r, otel_id)?);
    }
    Ok(out)
}

/// The OpenTelemetry id under which a trace's spans are kept. Client-chosen
/// ids that are not `tr-<hex>` get a stable id hashed from the string.
pub fn otel_id_for(trace_id: &str) -> OtelTraceId {
    TraceId::new(trace_id).otel().unwrap_or_else(|| {
        let h = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, trace_id.as_bytes());
        OtelTraceId(*h.as_bytes())
    })
}

pub fn get_trace(conn: &Connection, trace_id: &str) -> Result<TraceDetail> {
    let id = trace_rowid(conn, trace_id)?;
    let info = load_trace_info(conn, id)?;
    let spans = load_spans(conn, id, otel_id_for(trace_id))?;
    Ok(TraceDetail { info, spans })
}

pub fn set_tag(conn: &Connection, trace_id: &str, key: &str, value: &str) -> Result<()> {
    let id = trace_rowid(conn, trace_id)?;
    set_tag_row(conn, id, key, value)?;
    if key == tag_keys::TRACE_NAME {
        conn.execute(
            "UPDATE traces SET name = ?2 WHERE id = ?1",
            params![id, value],
        )?;
    }
    if key == tag_keys::SESSION || key == tag_keys::USER {
        refresh_session_user(conn, id)?;
        super::sessions::sync(conn, &[id])?;
    }
    Ok(())
}

pub fn delete_tag(conn: &Connection, trace_id: &str, key: &str) -> Result<()> {
    let id = trace_rowid(conn, trace_id)?;
    let n = conn.execute(
        "DELETE FROM trace_tags WHERE trace = ?1 AND key = ?2",
        params![id, key],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "No trace tag with key '{key}' for trace with ID '{trace_id}'"
        )));
    }
    if key == tag_keys::SESSION || key == tag_keys::USER {
        refresh_session_user(conn, id)?;
        super::sessions::sync(conn, &[id])?;
    }
    Ok(())
}

/// Deletes traces of one experiment; returns the internal ids removed so
/// derived stores (the full-text index) can follow.
pub fn delete_traces(
    conn: &Connection,
    experiment_id: i64,
    what: &DeleteTraces,
) -> Result<Vec<i64>> {
    let ids: Vec<i64> = match what {
        DeleteTraces::Ids(trace_ids) => {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM traces WHERE experiment_id = ?1
                 AND trace_id IN (SELECT value FROM json_each(?2))",
            )?;
            let list = Value::from(trace_ids.clone()).to_string();
            stmt.query_map(params![experiment_id, list], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        }
        DeleteTraces::OlderThan {
            max_timestamp_ms,
            max_traces,
        } => {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM traces WHERE experiment_id = ?1 AND request_time <= ?2
                 ORDER BY request_time LIMIT ?3",
            )?;
            stmt.query_map(
                params![experiment_id, max_timestamp_ms, max_traces.unwrap_or(-1)],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?
        }
    };
    delete_trace_rows(conn, &ids)?;
    Ok(ids)
}

/// Deletes trace rows by internal id; spans, tags, metadata and assessments
/// go with them (ON DELETE CASCADE), and they leave the session and user
/// aggregates. Each deletion leaves a tombstone in the same transaction, so
/// the full-text index drops the trace's documents even if tracebox crashes
/// before the indexer sees it.
pub fn delete_trace_rows(conn: &Connection, ids: &[i64]) -> Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM traces WHERE id = ?1")?;
    let mut tomb =
        conn.prepare_cached("INSERT OR IGNORE INTO index_tombstones (trace) VALUES (?1)")?;
    for id in ids {
        if stmt.execute([id])? > 0 {
            tomb.execute([id])?;
        }
    }
    super::sessions::sync(conn, ids)
}

impl Store {
    /// Stores spans and runs the ingestion hooks, in one transaction.
    pub async fn ingest_spans(
        &self,
        experiment_id: i64,
        batch: SpanBatch,
    ) -> Result<IngestOutcome> {
        self.ingest_prepared(experiment_id, PreparedBatch::new(batch, self.codec()))
            .await
    }

    /// [`Store::ingest_spans`] for spans already encoded (off the executor).
    pub async fn ingest_prepared(
        &self,
        experiment_id: i64,
        batch: PreparedBatch,
    ) -> Result<IngestOutcome> {
        let hooks = self.hooks();
        let text = batch.text.clone();
        // The caller keeps a reference so that the batch (thousands of
        // strings) is freed here, not on the writer thread.
        let batch = Arc::new(batch);
        let keep = batch.clone();
        let job = move |c: &Connection| {
            let out = ingest_prepared(c, experiment_id, &batch)?;
            let written = super::TracesWritten {
                touched: out.touched_traces.clone(),
                completed: out.completed_traces.clone(),
                created: out.created_traces.clone(),
            };
            run_hooks(c, &hooks, &written)?;
            Ok(out)
        };
        let out = match self.follower() {
            Some(follow) => {
                let tell = move |out: &IngestOutcome| {
                    if !out.new_spans.is_empty() {
                        follow(super::index_feed::CommittedSpans {
                            text,
                            spans: out.new_spans.clone(),
                        });
                    }
                };
                self.write_then(job, Box::new(tell)).await
            }
            None => self.write(job).await,
        };
        drop(keep);
        self.train_payload_dictionary_if_due();
        out
    }

    /// Stores client-sent trace info (and any assessments sent with it) and
    /// runs the ingestion hooks, in one transaction.
    pub async fn upsert_trace_info(
        &self,
        up: TraceUpsert,
        assessments: Vec<crate::domain::Assessment>,
    ) -> Result<TraceInfo> {
        let hooks = self.hooks();
        self.write(move |c| {
            let id = upsert_trace_info_row(c, &up)?;
            for a in &assessments {
                super::assessments::insert(c, id, a.clone())?;
            }
            let written = super::TracesWritten {
                touched: vec![id],
                completed: vec![id],
                created: Vec::new(),
            };
            run_hooks(c, &hooks, &written)?;
            load_trace_info(c, id)
        })
        .await
    }

    pub async fn get_trace_info(&self, trace_id: String) -> Result<TraceInfo> {
        self.read(move |c| get_trace_info(c, &trace_id)).await
    }

    pub async fn get_trace(&self, trace_id: String) -> Result<TraceDetail> {
        self.read(move |c| get_trace(c, &trace_id)).await
    }

    /// Several traces with spans; unknown ids are skipped (MLflow's batchGet).
    pub async fn get_traces(&self, trace_ids: Vec<String>) -> Result<Vec<TraceDetail>> {
        self.read(move |c| {
            let mut out = Vec::with_capacity(trace_ids.len());
            for t in &trace_ids {
                match get_trace(c, t) {
                    Ok(d) => out.push(d),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn set_trace_tag(&self, trace_id: String, key: String, value: String) -> Result<()> {
        self.write(move |c| set_tag(c, &trace_id, &key, &value))
            .await
    }

    pub async fn delete_trace_tag(&self, trace_id: String, key: String) -> Result<()> {
        self.write(move |c| delete_tag(c, &trace_id, &key)).await
    }

    pub async fn delete_traces(&self, experiment_id: i64, what: DeleteTraces) -> Result<Vec<i64>> {
        self.write(move |c| {
            experiment_exists(c, experiment_id)?;
            delete_traces(c, experiment_id, &what)
        })
        .await
    }

    /// Spans stored, over all traces (benchmarks check nothing was lost).
    pub async fn span_count(&self) -> Result<i64> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM spans", [], |r| r.get(0))?))
            .await
    }

    /// Internal id of a trace by MLflow id.
    pub async fn trace_rowid(&self, trace_id: String) -> Result<i64> {
        self.read(move |c| trace_rowid(c, &trace_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::semconv::{RawSpan, keys};
    use serde_json::json;

    fn raw(id: u8, parent: Option<u8>, attrs: Value) -> RawSpan {
        RawSpan::sample(9, id, parent, attrs)
    }

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        super::super::migrate::apply(&mut conn, &path).unwrap();
        super::super::functions::register(&conn, &Arc::new(Codec::default())).unwrap();
        (dir, conn)
    }

    #[test]
    fn same_value_is_equality_for_clones_and_never_a_false_match() {
        let v = json!({"messages": [{"role": "user", "content": "hi", "n": 1.5}], "k": null});
        assert!(same_value(&v.clone(), &v));
        assert!(same_value(&json!("text"), &json!("text")));
        assert!(same_value(&json!(3), &json!(3)));
        for other in [
            json!({"k": null, "messages": [{"role": "user", "content": "hi", "n": 1.5}]}),
            json!({"messages": [{"role": "user", "content": "hi", "n": 1.6}], "k": null}),
            json!({"messages": [{"role": "user", "content": "hi"}], "k": null}),
            json!({"messages": [], "k": null}),
            json!([v.clone()]),
            json!(v.to_string()),
        ] {
            assert!(!same_value(&other, &v), "{other}");
            assert!(!same_value(&v, &other), "{other}");
        }
    }

    #[test]
    fn long_previews_are_stored_compressed_and_read_back_cut() {
        let (_dir, conn) = open();
        let question: String = "où est ma commande ? ".repeat(80); // 1,680 chars
        let answer = json!({"answer": "shipped on monday ".repeat(10)});
        let root = raw(
            1,
            None,
            json!({"mlflow.spanInputs": question, "mlflow.spanOutputs": answer}),
        );
        ingest_spans(&conn, &Codec::default(), 0, SpanBatch::from_raw([root])).unwrap();
        let stored: (String, String) = conn
            .query_row(
                "SELECT typeof(request_preview), typeof(response_preview) FROM traces",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(stored, ("blob".to_string(), "blob".to_string()));
        // The whole outputs are the response preview, stored as the same
        // bytes; the question's preview is a cut, packed on its own.
        let same: (bool, bool) = conn
            .query_row(
                "SELECT t.request_preview = s.inputs, t.response_preview = s.outputs
                 FROM traces t JOIN spans s ON s.trace = t.id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(same, (false, true));
        let id = TraceId::from_otel(OtelTraceId([9; 16])).into_string();
        let info = get_trace_info(&conn, &id).unwrap();
        let want: String = question.chars().take(PREVIEW_MAX_CHARS).collect();
        assert_eq!(info.request_preview.as_deref(), Some(want.as_str()));
        assert_eq!(info.response_preview, Some(answer.to_string()));

        // Previews a client sends (StartTraceV3) are packed too, short ones
        // left as text.
        let sent = TraceInfo {
            trace_id: "tr-client".into(),
            request_time_ms: 1,
            state: TraceState::Ok,
            request_preview: Some(want.clone()),
            response_preview: Some("ok".into()),
            ..TraceInfo::default()
        };
        let id = upsert_trace_info_row(&conn, &TraceUpsert::new(sent, &Codec::default())).unwrap();
        let stored: (String, String) = conn
            .query_row(
                "SELECT typeof(request_preview), typeof(response_preview) FROM traces WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(stored, ("blob".to_string(), "text".to_string()));
        let info = get_trace_info(&conn, "tr-client").unwrap();
        assert_eq!(info.request_preview.as_deref(), Some(want.as_str()));
        assert_eq!(info.response_preview.as_deref(), Some("ok"));
    }

    #[test]
    fn values_stored_once_come_back_as_attributes() {
        let (_dir, conn) = open();
        let input = json!({"messages": [{"role": "user", "content": "a question long enough"}]});
        let batch = SpanBatch::from_raw([raw(
            1,
            None,
            json!({
                "openinference.span.kind": "LLM",
                "input.value": input.to_string(),
                "output.value": "an answer that is longer than sixty-four characters, so stored once",
                "other": "x",
            }),
        )]);
        ingest_spans(&conn, &Codec::default(), 0, batch).unwrap();
        let (attrs, inputs_attr, outputs_attr): (String, Option<String>, Option<String>) = conn
            .query_row(
                "SELECT attributes, inputs_attr, outputs_attr FROM spans",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert!(!attrs.contains("input.value"), "{attrs}");
        assert_eq!(inputs_attr.as_deref(), Some("input.value"));
        assert_eq!(outputs_attr.as_deref(), Some("output.value"));
        let t = get_trace(
            &conn,
            &TraceId::from_otel(OtelTraceId([9; 16])).into_string(),
        )
        .unwrap();
        let s = &t.spans[0];
        assert_eq!(s.inputs.as_ref(), Some(&input));
        assert_eq!(s.attributes["input.value"], input);
        assert_eq!(s.attributes["output.value"], s.outputs.clone().unwrap());
        assert_eq!(s.attributes["other"], json!("x"));
    }

    #[test]
    fn json_text_is_stored_as_sent_and_reads_back_as_the_same_values() {
        let (_dir, conn) = open();
        // Python's json.dumps puts spaces after separators; the store keeps
        // the text as sent instead of re-encoding it compactly.
        let inputs = r#"{"messages": [{"role": "user", "content": "caf\u00e9 ?"}]}"#;
        let outputs = r#"{"answer": "soon",  "n": 1.50}"#;
        let args = r#"{"city": "Paris", "days": [1, 2]}"#;
        let batch = SpanBatch::from_raw([raw(
            1,
            None,
            json!({
                "mlflow.spanInputs": inputs,
                "openinference.span.kind": "LLM",
                "output.value": outputs,
                "output.mime_type": "application/json",
                "tool.args": args,
                "n": 2,
            }),
        )]);
        ingest_spans(&conn, &Codec::default(), 0, batch).unwrap();
        let (i, o, a): (String, String, String) = conn
            .query_row(
                "SELECT tb_text(inputs), tb_text(outputs), attributes FROM spans",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(i, inputs);
        assert_eq!(o, outputs);
        assert!(a.contains(&format!(r#""tool.args":{args}"#)), "{a}");
        let t = get_trace(
            &conn,
            &TraceId::from_otel(OtelTraceId([9; 16])).into_string(),
        )
        .unwrap();
        let s = &t.spans[0];
        assert_eq!(
            s.inputs.as_ref(),
            Some(&serde_json::from_str::<Value>(inputs).unwrap())
        );
        assert_eq!(s.outputs, Some(json!({"answer": "soon", "n": 1.5})));
        assert_eq!(
            s.attributes["output.value"],
            json!({"answer": "soon", "n": 1.5})
        );
        assert_eq!(
            s.attributes["tool.args"],
            json!({"city": "Paris", "days": [1, 2]})
        );
        assert_eq!(s.attributes["n"], json!(2));
        assert_eq!(t.info.request_preview.as_deref(), Some(inputs));
    }

    #[test]
    fn a_span_that_started_earlier_moves_an_unfinished_traces_start_and_later_ones_do_not() {
        let (_dir, conn) = open();
        let codec = Codec::default();
        let id = TraceId::from_otel(OtelTraceId([9; 16])).into_string();
        let at = |span: u8, start_ms: i64| {
            let mut s = raw(span, Some(1), json!({}));
            s.start_ns = start_ms * 1_000_000;
            SpanBatch::from_raw([s])
        };
        let start = |conn: &Connection| get_trace_info(conn, &id).unwrap().request_time_ms;
        ingest_spans(&conn, &codec, 0, at(2, 5_000)).unwrap();
        assert_eq!(start(&conn), 5_000);
        ingest_spans(&conn, &codec, 0, at(3, 7_000)).unwrap();
        assert_eq!(start(&conn), 5_000);
        ingest_spans(&conn, &codec, 0, at(4, 4_000)).unwrap();
        assert_eq!(start(&conn), 4_000);
        // The root decides once it is there.
        let mut root = raw(1, None, json!({}));
        root.start_ns = 4_500 * 1_000_000;
        ingest_spans(&conn, &codec, 0, SpanBatch::from_raw([root])).unwrap();
        assert_eq!(start(&conn), 4_500);
        ingest_spans(&conn, &codec, 0, at(5, 1_000)).unwrap();
        assert_eq!(start(&conn), 4_500);
        let spans: i64 = conn
            .query_row("SELECT span_count FROM traces", [], |r| r.get(0))
            .unwrap();
        assert_eq!(spans, 5);
    }

    #[test]
    fn new_trace_rows_match_the_merge_path() {
        // The same spans written in one upload (the single-insert path) or
        // one per upload (the merge path) give the same trace.
        let spans = || {
            vec![
                raw(
                    2,
                    Some(1),
                    json!({"llm.token_count.prompt": 5, "llm.token_count.completion": 1}),
                ),
                // A wrapper reporting usage: its children are not counted again.
                raw(
                    3,
                    Some(1),
                    json!({"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}),
                ),
                raw(
                    4,
                    Some(3),
                    json!({"gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 1}),
                ),
                raw(
                    1,
                    None,
                    json!({"mlflow.spanInputs": {"q": 1}, "session.id": "s", "mlflow.traceTag.t": "v"}),
                ),
            ]
        };
        let id = TraceId::from_otel(OtelTraceId([9; 16])).into_string();
        let (_d1, one) = open();
        let mut batch_spans = spans();
        // A span repeated within one upload is stored once.
        batch_spans.push(raw(2, Some(1), json!({})));
        let out =
            ingest_spans(&one, &Codec::default(), 0, SpanBatch::from_raw(batch_spans)).unwrap();
        assert_eq!(out.spans_inserted, 4);
        let (_d2, many) = open();
        for s in spans() {
            ingest_spans(&many, &Codec::default(), 0, SpanBatch::from_raw([s])).unwrap();
        }
        let a = get_trace_info(&one, &id).unwrap();
        let b = get_trace_info(&many, &id).unwrap();
        assert_eq!(
            a.tokens,
            TokenUsage {
                input: Some(15),
                output: Some(3),
                total: Some(18)
            }
        );
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(a.state, TraceState::Ok);
        assert_eq!((a.state, a.request_time_ms), (b.state, b.request_time_ms));
        assert_eq!(a.execution_time_ms, b.execution_time_ms);
        assert_eq!(a.tags, b.tags);
        assert_eq!(a.tags["t"], "v");
        assert_eq!(a.tags[tag_keys::TRACE_NAME], "s1");
        assert_eq!(a.metadata, b.metadata);
        assert_eq!(a.session_id(), Some("s"));
        assert_eq!(a.request_preview, b.request_preview);
        assert_eq!(a.request_preview.as_deref(), Some("{\"q\":1}"));
        // Too short to be worth compressing.
        let kind: String = one
            .query_row("SELECT typeof(request_preview) FROM traces", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kind, "text");
        let session: Option<String> = one
            .query_row("SELECT session_id FROM traces", [], |r| r.get(0))
            .unwrap();
        assert_eq!(session.as_deref(), Some("s"));
        assert!(a.metadata.contains_key(keys::TRACE_SESSION));
    }
}
