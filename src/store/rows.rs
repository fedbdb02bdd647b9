//! Row <-> domain conversions shared by the store's queries.

use std::collections::BTreeMap;

use rusqlite::{Connection, Row, params};
use serde_json::{Map, Value};

use super::{Result, StoreError};
use crate::domain::{
    Assessment, AssessmentError, AssessmentKind, AssessmentSource, OtelSpanId, OtelTraceId,
    SourceType, Span, SpanEvent, SpanStatusCode, TokenUsage, TraceInfo, TraceState,
};

/// Columns of `traces` read by [`trace_info_from_row`], in order.
pub(super) const TRACE_COLUMNS: &str = "t.id, t.trace_id, t.experiment_id, t.client_request_id, \
     t.request_time, t.execution_time, t.state, tb_text(t.request_preview), \
     tb_text(t.response_preview), \
     t.input_tokens, t.output_tokens, t.total_tokens";

/// A trace row without its tags, metadata and assessments; `id` is the
/// internal row id used to fetch those.
pub(super) fn trace_info_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, TraceInfo)> {
    let state: String = row.get(6)?;
    Ok((
        row.get(0)?,
        TraceInfo {
            trace_id: row.get(1)?,
            experiment_id: row.get(2)?,
            client_request_id: row.get(3)?,
            request_time_ms: row.get(4)?,
            execution_time_ms: row.get(5)?,
            state: TraceState::parse(&state).unwrap_or_default(),
            request_preview: row.get(7)?,
            response_preview: row.get(8)?,
            metadata: BTreeMap::new(),
            tags: BTreeMap::new(),
            assessments: Vec::new(),
            tokens: TokenUsage {
                input: row.get(9)?,
                output: row.get(10)?,
                total: row.get(11)?,
            },
        },
    ))
}

/// Fills tags, metadata and assessments of already-loaded trace rows, with
/// one query per table for the whole batch.
pub(super) fn hydrate(conn: &Connection, rows: &mut [(i64, TraceInfo)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let index: std::collections::HashMap<i64, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let ids: Vec<Value> = rows.iter().map(|(id, _)| Value::from(*id)).collect();
    let ids_json = Value::Array(ids).to_string();
    for (table, is_tags) in [("trace_tags", true), ("trace_metadata", false)] {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT trace, key, value FROM {table} WHERE trace IN (SELECT value FROM json_each(?1))"
        ))?;
        let mut q = stmt.query(params![ids_json])?;
        while let Some(r) = q.next()? {
            let id: i64 = r.get(0)?;
            if let Some(&i) = index.get(&id) {
                let map = if is_tags {
                    &mut rows[i].1.tags
                } else {
                    &mut rows[i].1.metadata
                };
                map.insert(r.get(1)?, r.get(2)?);
            }
        }
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT a.trace, {ASSESSMENT_COLUMNS} FROM assessments a \
         WHERE a.trace IN (SELECT value FROM json_each(?1)) ORDER BY a.id"
    ))?;
    let mut q = stmt.query(params![ids_json])?;
    while let Some(r) = q.next()? {
        let id: i64 = r.get(0)?;
        if let Some(&i) = index.get(&id) {
            let trace_id = rows[i].1.trace_id.clone();
            rows[i]
                .1
                .assessments
                .push(assessment_from_row(r, 1, trace_id)?);
        }
    }
    Ok(())
}

pub(super) const ASSESSMENT_COLUMNS: &str = "a.assessment_id, a.name, a.kind, a.value, a.error, \
     a.source_type, a.source_id, a.rationale, a.metadata, a.span_id, a.overrides, a.valid, \
     a.create_time, a.last_update_time";

/// Reads [`ASSESSMENT_COLUMNS`] starting at column `at`.
pub(super) fn assessment_from_row(r: &Row<'_>, at: usize, trace_id: String) -> Result<Assessment> {
    let kind: String = r.get(at + 2)?;
    let value: Option<String> = r.get(at + 3)?;
    let error: Option<String> = r.get(at + 4)?;
    let source_type: String = r.get(at + 5)?;
    let metadata: Option<String> = r.get(at + 8)?;
    Ok(Assessment {
        assessment_id: r.get(at)?,
        trace_id,
        name: r.get(at + 1)?,
        kind: if kind == "expectation" {
            AssessmentKind::Expectation
        } else {
            AssessmentKind::Feedback
        },
        value: value.map(|v| parse_json(&v)).transpose()?,
        error: error
            .map(|e| {
                let v = parse_json(&e)?;
                Ok::<_, StoreError>(AssessmentError {
                    error_code: v["error_code"].as_str().unwrap_or_default().to_string(),
                    error_message: v["error_message"].as_str().map(str::to_string),
                    stack_trace: v["stack_trace"].as_str().map(str::to_string),
                })
            })
            .transpose()?,
        source: AssessmentSource {
            source_type: SourceType::parse(&source_type).unwrap_or(SourceType::Unspecified),
            source_id: r.get(at + 6)?,
        },
        rationale: r.get(at + 7)?,
        metadata: metadata
            .map(|m| serde_json::from_str(&m).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?
            .unwrap_or_default(),
        span_id: r.get(at + 9)?,
        overrides: r.get(at + 10)?,
        valid: r.get(at + 11)?,
        create_time_ms: r.get(at + 12)?,
        last_update_time_ms: r.get(at + 13)?,
    })
}

pub(super) fn assessment_error_json(e: &AssessmentError) -> String {
    let mut m = Map::new();
    m.insert("error_code".into(), Value::from(e.error_code.clone()));
    if let Some(msg) = &e.error_message {
        m.insert("error_message".into(), Value::from(msg.clone()));
    }
    if let Some(st) = &e.stack_trace {
        m.insert("stack_trace".into(), Value::from(st.clone()));
    }
    Value::Object(m).to_string()
}

/// Columns of `spans` read by [`span_from_row`], in order (payloads through
/// `tb_text`, which decompresses them: see `payload`).
pub(super) const SPAN_COLUMNS: &str = "s.span_id, s.parent_span_id, s.name, s.span_type, s.kind, \
     s.status_code, s.status_message, s.start_ns, s.end_ns, tb_text(s.inputs), \
     tb_text(s.outputs), s.attributes, tb_text(s.events), s.model, s.input_tokens, s.output_tokens, s.total_tokens, s.inputs_attr, \
     s.outputs_attr";

pub(super) fn span_from_row(r: &Row<'_>, trace_id: OtelTraceId) -> Result<Span> {
    let span_id: Vec<u8> = r.get(0)?;
    let parent: Option<Vec<u8>> = r.get(1)?;
    let inputs: Option<String> = r.get(9)?;
    let outputs: Option<String> = r.get(10)?;
    let attributes: String = r.get(11)?;
    let events: Option<String> = r.get(12)?;
    let inputs_attr: Option<String> = r.get(17)?;
    let outputs_attr: Option<String> = r.get(18)?;
    let corrupt = |e: crate::domain::IdError| StoreError::Corrupt(e.to_string());
    let inputs = inputs.map(|s| parse_json(&s)).transpose()?;
    let outputs = outputs.map(|s| parse_json(&s)).transpose()?;
    let mut attributes = match parse_json(&attributes)? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    // Attributes stored once, as the span's inputs/outputs (see migration 0006).
    for (key, value) in [(inputs_attr, &inputs), (outputs_attr, &outputs)] {
        if let (Some(k), Some(v)) = (key, value) {
            attributes.insert(k, v.clone());
        }
    }
    Ok(Span {
        trace_id,
        span_id: OtelSpanId::from_slice(&span_id).map_err(corrupt)?,
        parent_span_id: parent
            .map(|p| OtelSpanId::from_slice(&p))
            .transpose()
            .map_err(corrupt)?,
        name: r.get(2)?,
        span_type: r.get(3)?,
        kind: r.get(4)?,
        status: SpanStatusCode::from_i64(r.get(5)?),
        status_message: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        start_ns: r.get(7)?,
        end_ns: r.get(8)?,
        inputs,
        outputs,
        attributes,
        events: events
            .map(|e| events_from_json(&e))
            .transpose()?
            .unwrap_or_default(),
        model: r.get(13)?,
        tokens: TokenUsage {
            input: r.get(14)?,
            output: r.get(15)?,
            total: r.get(16)?,
        },
        sent: Default::default(),
    })
}

pub(super) fn events_to_json(events: &[SpanEvent]) -> Option<String> {
    if events.is_empty() {
        return None;
    }
    #[derive(serde::Serialize)]
    struct Event<'a> {
        name: &'a str,
        time_unix_nano: i64,
        attributes: &'a Map<String, Value>,
    }
    let arr: Vec<Event<'_>> = events
        .iter()
        .map(|e| Event {
            name: &e.name,
            time_unix_nano: e.time_ns,
            attributes: &e.attributes,
        })
        .collect();
    serde_json::to_string(&arr).ok()
}

fn events_from_json(s: &str) -> Result<Vec<SpanEvent>> {
    let v = parse_json(s)?;
    let arr = v.as_array().cloned().unwrap_or_default();
    Ok(arr
        .into_iter()
        .map(|e| SpanEvent {
            name: e["name"].as_str().unwrap_or_default().to_string(),
            time_ns: e["time_unix_nano"].as_i64().unwrap_or_default(),
            attributes: match &e["attributes"] {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            },
        })
        .collect())
}

pub(super) fn parse_json(s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON in row: {e}")))
}
