//! Assessments (feedback and expectations) attached to traces.
//!
//! Overrides form a chain: creating an assessment with `overrides = X` marks
//! X invalid; deleting the overriding assessment makes X valid again. Every
//! write brings the session and user aggregates of its trace up to date.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::rows::{ASSESSMENT_COLUMNS, assessment_error_json, assessment_from_row};
use super::traces::{not_found, trace_rowid};
use super::{Result, Store, StoreError};
use crate::domain::{Assessment, AssessmentError, AssessmentKind, now_ms};

/// Fields an update may change (MLflow's `update_mask` paths).
#[derive(Debug, Clone, Default)]
pub struct AssessmentUpdate {
    pub name: Option<String>,
    /// New feedback value and error (both replaced together, as MLflow does).
    pub feedback: Option<(Option<Value>, Option<AssessmentError>)>,
    pub expectation: Option<Value>,
    pub rationale: Option<Option<String>>,
    /// Merged into the existing metadata.
    pub metadata: Option<BTreeMap<String, String>>,
}

fn json_opt(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

fn metadata_json(m: &BTreeMap<String, String>) -> Option<String> {
    (!m.is_empty()).then(|| serde_json::to_string(m).unwrap_or_default())
}

/// Inserts an assessment for an existing trace (by internal id); returns it
/// as stored. Used by the API, StartTraceV3 and the judge runner.
pub fn insert(conn: &Connection, trace: i64, mut a: Assessment) -> Result<Assessment> {
    if a.assessment_id.is_empty() {
        a.assessment_id = Assessment::new_id();
    }
    if let Some(old) = &a.overrides {
        let n = conn.execute(
            "UPDATE assessments SET valid = 0 WHERE assessment_id = ?1 AND trace = ?2",
            params![old, trace],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "Assessment with ID '{old}' not found for trace '{}'",
                a.trace_id
            )));
        }
    }
    conn.prepare_cached(
        "INSERT INTO assessments (assessment_id, trace, name, kind, value, error, source_type,
             source_id, rationale, metadata, span_id, overrides, valid, create_time, last_update_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (assessment_id) DO NOTHING",
    )?
    .execute(params![
        a.assessment_id,
        trace,
        a.name,
        a.kind.as_str(),
        json_opt(&a.value),
        a.error.as_ref().map(assessment_error_json),
        a.source.source_type.as_str(),
        a.source.source_id,
        a.rationale,
        metadata_json(&a.metadata),
        a.span_id,
        a.overrides,
        a.valid,
        a.create_time_ms,
        a.last_update_time_ms,
    ])?;
    super::sessions::sync(conn, &[trace])?;
    Ok(a)
}

fn load(conn: &Connection, trace: i64, trace_id: &str, assessment_id: &str) -> Result<Assessment> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ASSESSMENT_COLUMNS} FROM assessments a WHERE a.assessment_id = ?1 AND a.trace = ?2"
    ))?;
    let mut q = stmt.query(params![assessment_id, trace])?;
    match q.next()? {
        Some(r) => assessment_from_row(r, 0, trace_id.to_string()),
        None => Err(StoreError::NotFound(format!(
            "Assessment with ID '{assessment_id}' not found for trace '{trace_id}'"
        ))),
    }
}

pub fn get(conn: &Connection, trace_id: &str, assessment_id: &str) -> Result<Assessment> {
    let trace = trace_rowid(conn, trace_id)?;
    load(conn, trace, trace_id, assessment_id)
}

pub fn update(
    conn: &Connection,
    trace_id: &str,
    assessment_id: &str,
    up: AssessmentUpdate,
) -> Result<Assessment> {
    let trace = trace_rowid(conn, trace_id)?;
    let mut a = load(conn, trace, trace_id, assessment_id)?;
    if let Some(name) = up.name {
        a.name = name;
    }
    if let Some((value, error)) = up.feedback {
        if a.kind != AssessmentKind::Feedback {
            return Err(StoreError::Invalid(
                "Cannot update feedback value on an Expectation assessment.".into(),
            ));
        }
        a.value = value;
        a.error = error;
    }
    if let Some(value) = up.expectation {
        if a.kind != AssessmentKind::Expectation {
            return Err(StoreError::Invalid(
                "Cannot update expectation value on a Feedback assessment.".into(),
            ));
        }
        a.value = Some(value);
    }
    if let Some(r) = up.rationale {
        a.rationale = r;
    }
    if let Some(md) = up.metadata {
        a.metadata.extend(md);
    }
    a.last_update_time_ms = now_ms();
    conn.execute(
        "UPDATE assessments SET name = ?2, value = ?3, error = ?4, rationale = ?5, metadata = ?6,
             last_update_time = ?7 WHERE assessment_id = ?1",
        params![
            a.assessment_id,
            a.name,
            json_opt(&a.value),
            a.error.as_ref().map(assessment_error_json),
            a.rationale,
            metadata_json(&a.metadata),
            a.last_update_time_ms
        ],
    )?;
    super::sessions::sync(conn, &[trace])?;
    Ok(a)
}

/// Deletes an assessment; deleting a missing one succeeds, as in MLflow.
pub fn delete(conn: &Connection, trace_id: &str, assessment_id: &str) -> Result<()> {
    let Some(trace) = conn
        .query_row(
            "SELECT id FROM traces WHERE trace_id = ?1",
            [trace_id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    else {
        return Ok(());
    };
    let overrides: Option<Option<String>> = conn
        .query_row(
            "SELECT overrides FROM assessments WHERE assessment_id = ?1 AND trace = ?2",
            params![assessment_id, trace],
            |r| r.get(0),
        )
        .optional()?;
    let Some(overrides) = overrides else {
        return Ok(());
    };
    conn.execute(
        "DELETE FROM assessments WHERE assessment_id = ?1",
        [assessment_id],
    )?;
    if let Some(old) = overrides {
        conn.execute(
            "UPDATE assessments SET valid = 1 WHERE assessment_id = ?1 AND trace = ?2",
            params![old, trace],
        )?;
    }
    super::sessions::sync(conn, &[trace])
}

impl Store {
    pub async fn create_assessment(&self, a: Assessment) -> Result<Assessment> {
        self.write(move |c| {
            let trace = trace_rowid(c, &a.trace_id).map_err(|_| not_found(&a.trace_id))?;
            insert(c, trace, a.clone())
        })
        .await
    }
    pub async fn get_assessment(&self, trace_id: String, id: String) -> Result<Assessment> {
        self.read(move |c| get(c, &trace_id, &id)).await
    }
    pub async fn update_assessment(
        &self,
        trace_id: String,
        id: String,
        up: AssessmentUpdate,
    ) -> Result<Assessment> {
        self.write(move |c| update(c, &trace_id, &id, up.clone()))
            .await
    }
    pub async fn delete_assessment(&self, trace_id: String, id: String) -> Result<()> {
        self.write(move |c| delete(c, &trace_id, &id)).await
    }
}
