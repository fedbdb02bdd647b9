//! The durable judge queue: evaluation tasks per (trace, scorer) and per
//! (session, scorer), their claims (leases), outcomes and counts.
//!
//! Tasks are inserted by the ingestion hook inside the ingestion
//! transaction, so a committed trace never lacks its pending evaluation and
//! a restart loses none. A runner claims ready tasks with a lease it renews
//! while it works; a task whose lease ran out (a crashed process) becomes
//! pending again. Finishing a task and writing its assessments happen in
//! one transaction, so each evaluation is recorded exactly once.
//!
//! Does not know: sampling, judges, models, HTTP. Callers decide which
//! tasks to create and what their outcome is.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::Result;
use crate::domain::now_ms;

/// Facts about a trace that the ingestion hook needs to enqueue tasks.
#[derive(Debug, Clone)]
pub struct TouchedTrace {
    pub row: i64,
    pub trace_id: String,
    pub experiment_id: i64,
    pub session_id: Option<String>,
}

pub fn touched_traces(conn: &Connection, rows: &[i64]) -> Result<Vec<TouchedTrace>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, trace_id, experiment_id, session_id FROM traces WHERE id = ?1",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(t) = stmt
            .query_row([row], |r| {
                Ok(TouchedTrace {
                    row: r.get(0)?,
                    trace_id: r.get(1)?,
                    experiment_id: r.get(2)?,
                    session_id: r.get(3)?,
                })
            })
            .optional()?
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// What an enqueue did: tasks now pending, and tasks shed because the queue
/// was full (recorded as `shed`, never silently dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    pub queued: i64,
    pub shed: i64,
}

/// Creates online trace tasks that do not exist yet. `room` is how many more
/// pending tasks the queue accepts; beyond it, tasks are recorded as shed.
pub fn enqueue_trace_tasks(
    conn: &Connection,
    tasks: &[(i64, String)],
    room: &mut i64,
) -> Result<Enqueued> {
    let now = now_ms();
    let mut out = Enqueued::default();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO judge_tasks (trace, scorer_id, origin, state, enqueued_at, finished_at)
         VALUES (?1, ?2, 'online', ?3, ?4, ?5) ON CONFLICT (trace, scorer_id) DO NOTHING",
    )?;
    for (trace, scorer_id) in tasks {
        let full = *room <= 0;
        let state = if full { "shed" } else { "pending" };
        let n = stmt.execute(params![trace, scorer_id, state, now, full.then_some(now)])?;
        if n == 1 {
            if full {
                out.shed += 1;
            } else {
                out.queued += 1;
                *room -= 1;
            }
        }
    }
    Ok(out)
}

/// Records activity on sessions for session-level scorers: a session task
/// becomes (or stays) pending with its idle clock restarted.
pub fn touch_session_tasks(
    conn: &Connection,
    tasks: &[(i64, String, String)],
    room: &mut i64,
) -> Result<Enqueued> {
    let now = now_ms();
    let mut out = Enqueued::default();
    let mut find = conn.prepare_cached(
        "SELECT state FROM judge_session_tasks
         WHERE experiment_id = ?1 AND session_id = ?2 AND scorer_id = ?3",
    )?;
    for (experiment_id, session_id, scorer_id) in tasks {
        let state: Option<String> = find
            .query_row(params![experiment_id, session_id, scorer_id], |r| r.get(0))
            .optional()?;
        match state.as_deref() {
            Some("pending") | Some("running") => {
                conn.prepare_cached(
                    "UPDATE judge_session_tasks SET last_activity = ?4
                     WHERE experiment_id = ?1 AND session_id = ?2 AND scorer_id = ?3",
                )?
                .execute(params![experiment_id, session_id, scorer_id, now])?;
            }
            _ => {
                let full = *room <= 0;
                let new_state = if full { "shed" } else { "pending" };
                conn.prepare_cached(
                    "INSERT INTO judge_session_tasks (experiment_id, session_id, scorer_id, origin,
                         state, last_activity, enqueued_at)
                     VALUES (?1, ?2, ?3, 'online', ?4, ?5, ?5)
                     ON CONFLICT (experiment_id, session_id, scorer_id) DO UPDATE SET
                         state = excluded.state, origin = 'online', last_activity = excluded.last_activity,
                         not_before = 0, finished_at = NULL",
                )?
                .execute(params![experiment_id, session_id, scorer_id, new_state, now])?;
                if full {
                    out.shed += 1;
                } else {
                    out.queued += 1;
                    *room -= 1;
                }
            }
        }
    }
    Ok(out)
}

/// Pending plus running tasks: the queue depth the capacity bounds.
pub fn open_count(conn: &Connection) -> Result<i64> {
    let t: i64 = conn.query_row(
        "SELECT count(*) FROM judge_tasks WHERE state IN ('pending', 'running')",
        [],
        |r| r.get(0),
    )?;
    let s: i64 = conn.query_row(
        "SELECT count(*) FROM judge_session_tasks WHERE state IN ('pending', 'running')",
        [],
        |r| r.get(0),
    )?;
    Ok(t + s)
}

/// When a trace counts as complete enough to judge.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub now_ms: i64,
    /// No write for this long.
    pub settle_ms: i64,
    /// After this long without writes, judge whatever arrived.
    pub grace_ms: i64,
}

/// Ids of pending trace tasks whose trace is complete: root span present,
/// as many spans as `mlflow.trace.sizeStats` announced (when the client
/// sent trace info), and no write for the settle time — or no write at all
/// for the grace time. Read-only; claim them next.
pub fn ready_trace_tasks(
    conn: &Connection,
    r: Readiness,
    batch: Option<&str>,
    limit: usize,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT jt.id FROM judge_tasks jt JOIN traces t ON t.id = jt.trace
         WHERE jt.state = 'pending' AND jt.not_before <= ?1
           AND (?5 IS NULL OR jt.batch = ?5)
           AND t.last_update <= ?1 - ?2
           AND (t.last_update <= ?1 - ?3 OR (
                t.has_root = 1
                AND t.span_count >= coalesce((
                     SELECT CASE WHEN json_valid(m.value) THEN json_extract(m.value, '$.num_spans') END
                     FROM trace_metadata m WHERE m.trace = t.id AND m.key = 'mlflow.trace.sizeStats'), 0)))
         ORDER BY jt.id LIMIT ?4",
    )?;
    Ok(stmt
        .query_map(
            params![r.now_ms, r.settle_ms, r.grace_ms, limit as i64, batch],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?)
}

/// Whether the client's trace info has arrived, and the trace's last write
/// (ms); `None` if the trace is gone.
pub fn trace_write_state(conn: &Connection, row: i64) -> Result<Option<(bool, i64)>> {
    Ok(conn
        .prepare_cached("SELECT info_finalized, last_update FROM traces WHERE id = ?1")?
        .query_row([row], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// A claimed trace task.
#[derive(Debug, Clone)]
pub struct TraceTask {
    pub id: i64,
    pub trace: i64,
    pub scorer_id: String,
    /// `online` tasks apply the scorer's filter; `backfill` tasks were
    /// selected by the backfill's own filter.
    pub backfill: bool,
    pub attempts: i64,
}

/// Claims tasks that are still pending; returns those this caller got.
pub fn claim_trace_tasks(
    conn: &Connection,
    ids: &[i64],
    lease_until: i64,
) -> Result<Vec<TraceTask>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE judge_tasks SET state = 'running', lease_until = ?2, attempts = attempts + 1
         WHERE id = ?1 AND state = 'pending'
         RETURNING id, trace, scorer_id, origin, attempts",
    )?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(t) = stmt
            .query_row(params![id, lease_until], |r| {
                Ok(TraceTask {
                    id: r.get(0)?,
                    trace: r.get(1)?,
                    scorer_id: r.get(2)?,
                    backfill: r.get::<_, String>(3)? == "backfill",
                    attempts: r.get(4)?,
                })
            })
            .optional()?
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Judged; `verdict` is pass (true), fail (false) or none.
    Done { verdict: Option<bool> },
    /// The judge could not produce a result (an error assessment was written).
    Failed { error: String },
    /// The scorer's filter did not match (or the trace is an evaluation run).
    Filtered,
    /// The scorer was stopped before its evaluation ran.
    Cancelled,
}

impl Outcome {
    fn state(&self) -> &'static str {
        match self {
            Outcome::Done { .. } => "done",
            Outcome::Failed { .. } => "failed",
            Outcome::Filtered => "filtered",
            Outcome::Cancelled => "cancelled",
        }
    }
    fn verdict(&self) -> Option<bool> {
        match self {
            Outcome::Done { verdict } => *verdict,
            _ => None,
        }
    }
    fn error(&self) -> Option<&str> {
        match self {
            Outcome::Failed { error } => Some(error),
            _ => None,
        }
    }
}

/// Finishes a running task; false when this caller no longer holds it (its
/// lease ran out and another runner took it), in which case the caller must
/// not write its results.
pub fn finish_trace_task(conn: &Connection, id: i64, outcome: &Outcome) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE judge_tasks SET state = ?2, verdict = ?3, error = ?4, finished_at = ?5,
                 lease_until = NULL
             WHERE id = ?1 AND state = 'running'",
        )?
        .execute(params![
            id,
            outcome.state(),
            outcome.verdict(),
            outcome.error(),
            now_ms()
        ])?;
    Ok(n == 1)
}

/// Puts a running task back (endpoint paused, shutting down); the attempt
/// does not count.
pub fn release_trace_task(conn: &Connection, id: i64, not_before: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE judge_tasks SET state = 'pending', not_before = ?2, lease_until = NULL,
             attempts = max(attempts - 1, 0)
         WHERE id = ?1 AND state = 'running'",
    )?
    .execute(params![id, not_before])?;
    Ok(())
}

/// Extends the leases of tasks this runner is still working on.
pub fn renew_leases(
    conn: &Connection,
    trace_tasks: &[i64],
    session_tasks: &[i64],
    until: i64,
) -> Result<()> {
    for (table, ids) in [
        ("judge_tasks", trace_tasks),
        ("judge_session_tasks", session_tasks),
    ] {
        if ids.is_empty() {
            continue;
        }
        conn.execute(
            &format!(
                "UPDATE {table} SET lease_until = ?2
                 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'running'"
            ),
            params![Value::from(ids.to_vec()).to_string(), until],
        )?;
    }
    Ok(())
}

/// Returns tasks whose lease expired (their runner died) to the queue.
pub fn reclaim_expired(conn: &Connection, now: i64) -> Result<usize> {
    let mut n = 0;
    for table in ["judge_tasks", "judge_session_tasks"] {
        n += conn.execute(
            &format!(
                "UPDATE {table} SET state = 'pending', lease_until = NULL
                 WHERE state = 'running' AND lease_until < ?1"
            ),
            [now],
        )?;
    }
    Ok(n)
}

// ---------------------------------------------------------------- sessions

/// Ids of pending session tasks whose session has been idle long enough.
pub fn ready_session_tasks(
    conn: &Connection,
    now: i64,
    idle_ms: i64,
    batch: Option<&str>,
    limit: usize,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM judge_session_tasks
         WHERE state = 'pending' AND not_before <= ?1 AND last_activity <= ?1 - ?2
           AND (?4 IS NULL OR batch = ?4)
         ORDER BY last_activity, id LIMIT ?3",
    )?;
    Ok(stmt
        .query_map(params![now, idle_ms, limit as i64, batch], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, Clone)]
pub struct SessionTask {
    pub id: i64,
    pub experiment_id: i64,
    pub session_id: String,
    pub scorer_id: String,
    pub backfill: bool,
    pub attempts: i64,
}

pub fn claim_session_tasks(
    conn: &Connection,
    ids: &[i64],
    lease_until: i64,
) -> Result<Vec<SessionTask>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE judge_session_tasks SET state = 'running', lease_until = ?2,
             attempts = attempts + 1, claimed_activity = last_activity
         WHERE id = ?1 AND state = 'pending'
         RETURNING id, experiment_id, session_id, scorer_id, origin, attempts",
    )?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(t) = stmt
            .query_row(params![id, lease_until], |r| {
                Ok(SessionTask {
                    id: r.get(0)?,
                    experiment_id: r.get(1)?,
                    session_id: r.get(2)?,
                    scorer_id: r.get(3)?,
                    backfill: r.get::<_, String>(4)? == "backfill",
                    attempts: r.get(5)?,
                })
            })
            .optional()?
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Finishes a session task. If the session got new traces while it was
/// being judged, the task goes back to pending (judged again once idle).
pub fn finish_session_task(conn: &Connection, id: i64, outcome: &Outcome) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE judge_session_tasks SET
                 state = CASE WHEN last_activity = claimed_activity THEN ?2 ELSE 'pending' END,
                 verdict = ?3, error = ?4, finished_at = ?5, lease_until = NULL
             WHERE id = ?1 AND state = 'running'",
        )?
        .execute(params![
            id,
            outcome.state(),
            outcome.verdict(),
            outcome.error(),
            now_ms()
        ])?;
    Ok(n == 1)
}

pub fn release_session_task(conn: &Connection, id: i64, not_before: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE judge_session_tasks SET state = 'pending', not_before = ?2, lease_until = NULL,
             attempts = max(attempts - 1, 0)
         WHERE id = ?1 AND state = 'running'",
    )?
    .execute(params![id, not_before])?;
    Ok(())
}

/// Internal ids of a session's traces, oldest first.
pub fn session_trace_rows(
    conn: &Connection,
    experiment_id: i64,
    session_id: &str,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM traces WHERE experiment_id = ?1 AND session_id = ?2
         ORDER BY request_time, id",
    )?;
    Ok(stmt
        .query_map(params![experiment_id, session_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Deletes a judge's earlier results on `trace` (identified by the
/// `tracebox.scorerId` metadata the runner writes; for session judges, of
/// the same session), so a re-run replaces its verdict instead of adding a
/// second one — as MLflow's online scoring replaces session results.
pub fn delete_judge_results(
    conn: &Connection,
    trace: i64,
    scorer_id: &str,
    session_id: Option<&str>,
) -> Result<usize> {
    let n = conn
        .prepare_cached(
            "DELETE FROM assessments WHERE trace = ?1
               AND metadata IS NOT NULL AND json_valid(metadata)
               AND json_extract(metadata, '$.\"tracebox.scorerId\"') = ?2
               AND (?3 IS NULL
                    OR json_extract(metadata, '$.\"mlflow.assessment.onlineScoringSessionId\"') = ?3)",
        )?
        .execute(params![trace, scorer_id, session_id])?;
    if n > 0 {
        // Session aggregates count assessments; keep them exact.
        super::sessions::sync(conn, &[trace])?;
    }
    Ok(n)
}

/// Deletes a session judge's earlier results on any trace of the session
/// (the first trace can change when an earlier turn arrives late).
pub fn delete_session_judge_results(
    conn: &Connection,
    experiment_id: i64,
    session_id: &str,
    scorer_id: &str,
) -> Result<usize> {
    let rows = session_trace_rows(conn, experiment_id, session_id)?;
    let mut n = 0;
    for row in rows {
        n += delete_judge_results(conn, row, scorer_id, Some(session_id))?;
    }
    Ok(n)
}

/// A trace with its spans, by internal id (`None` if it was deleted).
pub fn load_trace(conn: &Connection, row: i64) -> Result<Option<super::TraceDetail>> {
    let trace_id: Option<String> = conn
        .prepare_cached("SELECT trace_id FROM traces WHERE id = ?1")?
        .query_row([row], |r| r.get(0))
        .optional()?;
    let Some(trace_id) = trace_id else {
        return Ok(None);
    };
    let info = super::traces::load_trace_info(conn, row)?;
    let spans = super::traces::load_spans(conn, row, super::traces::otel_id_for(&trace_id))?;
    Ok(Some(super::TraceDetail { info, spans }))
}

// ---------------------------------------------------------------- backfill

/// Queues `scorer_id` over the given traces as one backfill batch. Traces
/// the scorer already judged are left alone unless `rerun`; failed, shed, cancelled
/// and filtered ones are queued again. Returns how many tasks became pending.
pub fn enqueue_backfill(
    conn: &Connection,
    scorer_id: &str,
    trace_rows: &[i64],
    batch: &str,
    rerun: bool,
) -> Result<i64> {
    let now = now_ms();
    let mut before =
        conn.prepare_cached("SELECT state FROM judge_tasks WHERE trace = ?1 AND scorer_id = ?2")?;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO judge_tasks (trace, scorer_id, origin, batch, state, enqueued_at)
         VALUES (?1, ?2, 'backfill', ?3, 'pending', ?4)
         ON CONFLICT (trace, scorer_id) DO UPDATE SET
             batch = excluded.batch,
             origin = CASE WHEN state IN ('pending', 'running') THEN origin ELSE 'backfill' END,
             state = CASE WHEN state IN ('pending', 'running') THEN state
                          WHEN ?5 OR state IN ('shed', 'cancelled', 'filtered', 'failed') THEN 'pending'
                          ELSE state END,
             not_before = CASE WHEN state IN ('pending', 'running') THEN not_before ELSE 0 END",
    )?;
    let mut queued = 0;
    for row in trace_rows {
        let prev: Option<String> = before
            .query_row(params![row, scorer_id], |r| r.get(0))
            .optional()?;
        upsert.execute(params![row, scorer_id, batch, now, rerun])?;
        let became_pending = match prev.as_deref() {
            None => true,
            Some("pending") | Some("running") => false,
            Some("shed") | Some("cancelled") | Some("filtered") | Some("failed") => true,
            Some(_) => rerun,
        };
        queued += became_pending as i64;
    }
    Ok(queued)
}

/// The session-level counterpart of [`enqueue_backfill`]: one task per
/// distinct session of the given traces, ready at once.
pub fn enqueue_session_backfill(
    conn: &Connection,
    scorer_id: &str,
    trace_rows: &[i64],
    batch: &str,
    rerun: bool,
) -> Result<i64> {
    let now = now_ms();
    let mut sessions = std::collections::BTreeSet::new();
    let mut stmt = conn.prepare_cached(
        "SELECT experiment_id, session_id FROM traces WHERE id = ?1 AND session_id IS NOT NULL",
    )?;
    for row in trace_rows {
        if let Some(s) = stmt
            .query_row([row], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .optional()?
        {
            sessions.insert(s);
        }
    }
    let mut queued = 0;
    for (experiment_id, session_id) in sessions {
        let prev: Option<String> = conn
            .query_row(
                "SELECT state FROM judge_session_tasks
                 WHERE experiment_id = ?1 AND session_id = ?2 AND scorer_id = ?3",
                params![experiment_id, session_id, scorer_id],
                |r| r.get(0),
            )
            .optional()?;
        let reopen = match prev.as_deref() {
            None => true,
            Some("pending") | Some("running") => false,
            Some("shed") | Some("cancelled") | Some("filtered") | Some("failed") => true,
            Some(_) => rerun,
        };
        conn.execute(
            "INSERT INTO judge_session_tasks (experiment_id, session_id, scorer_id, origin, batch,
                 state, last_activity, enqueued_at)
             VALUES (?1, ?2, ?3, 'backfill', ?4, 'pending', 0, ?5)
             ON CONFLICT (experiment_id, session_id, scorer_id) DO UPDATE SET
                 batch = excluded.batch,
                 origin = CASE WHEN ?6 THEN 'backfill' ELSE origin END,
                 state = CASE WHEN ?6 THEN 'pending' ELSE state END,
                 not_before = CASE WHEN ?6 THEN 0 ELSE not_before END",
            params![experiment_id, session_id, scorer_id, batch, now, reopen],
        )?;
        queued += reopen as i64;
    }
    Ok(queued)
}

/// Task counts of a backfill batch by state.
pub fn batch_progress(conn: &Connection, batch: &str) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for table in ["judge_tasks", "judge_session_tasks"] {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT state, count(*) FROM {table} WHERE batch = ?1 GROUP BY state"
        ))?;
        let rows = stmt.query_map([batch], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            *out.entry(state).or_insert(0) += n;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- counts

/// Task counts of one scorer (trace and session tasks together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScorerCounts {
    pub pending: i64,
    pub running: i64,
    /// Judged with a result (pass, fail or no verdict).
    pub done: i64,
    pub passed: i64,
    pub verdicts: i64,
    pub failed: i64,
    pub filtered: i64,
    pub shed: i64,
    pub cancelled: i64,
    pub last_error: Option<String>,
    pub last_finished_at: Option<i64>,
}

/// Counts by scorer id.
pub fn scorer_counts(conn: &Connection) -> Result<BTreeMap<String, ScorerCounts>> {
    let mut out: BTreeMap<String, ScorerCounts> = BTreeMap::new();
    for table in ["judge_tasks", "judge_session_tasks"] {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT scorer_id, state, verdict, count(*), max(finished_at) FROM {table}
             GROUP BY scorer_id, state, verdict"
        ))?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let c = out.entry(r.get(0)?).or_default();
            let state: String = r.get(1)?;
            let verdict: Option<bool> = r.get(2)?;
            let n: i64 = r.get(3)?;
            let finished: Option<i64> = r.get(4)?;
            match state.as_str() {
                "pending" => c.pending += n,
                "running" => c.running += n,
                "done" => {
                    c.done += n;
                    if let Some(v) = verdict {
                        c.verdicts += n;
                        c.passed += if v { n } else { 0 };
                    }
                }
                "failed" => c.failed += n,
                "filtered" => c.filtered += n,
                "shed" => c.shed += n,
                "cancelled" => c.cancelled += n,
                _ => {}
            }
            if state == "done" || state == "failed" {
                c.last_finished_at = c.last_finished_at.max(finished);
            }
        }
        let mut err = conn.prepare_cached(&format!(
            "SELECT scorer_id, error, max(finished_at) FROM {table}
             WHERE state = 'failed' AND error IS NOT NULL GROUP BY scorer_id"
        ))?;
        let mut q = err.query([])?;
        while let Some(r) = q.next()? {
            let c = out.entry(r.get(0)?).or_default();
            c.last_error = r.get(1)?;
        }
    }
    Ok(out)
}
