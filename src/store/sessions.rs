//! Sessions and users: aggregates over the traces of one experiment grouped by
//! `mlflow.trace.session` and by `mlflow.trace.user` (the denormalised
//! `traces.session_id` / `traces.user_id` columns), kept exact on every write
//! so that listing them at a million traces reads a few index pages and never
//! groups traces per request.
//!
//! How exactness is kept: `trace_rollup` holds what each trace currently
//! contributes (experiment, session, user, time, error, tokens, assessment
//! counts). [`sync`] recomputes the contribution of the traces it is given;
//! where it differs from the stored one it subtracts the old from the
//! session's and user's rows and adds the new (summed per row over the
//! traces of one call), then re-reads what is not additive (first/last
//! time, a session's first trace and user) with LIMIT-1 probes of the
//! traces' own session and user indexes: once `sync` has stored the new
//! contributions, the rollup rows and the traces agree on experiment,
//! session, user and time, so the rollup needs no indexes of its own (two
//! fewer random B-tree inserts per ingested trace). Every path that changes
//! a trace calls `sync` inside its own transaction: ingestion through the
//! hook `App::start` registers ([`hook`]), tag changes, assessment writes
//! and trace deletion.
//!
//! A session belongs to one user: the user of its earliest trace that names
//! one. A user's `sessions` counts the sessions that belong to them; their
//! `traces` counts every trace that names them.
//!
//! Session-level assessments follow MLflow 3.x: a judgement about a whole
//! conversation is an ordinary assessment on the session's first trace whose
//! metadata `mlflow.trace.session` names the session ([`is_session_level`],
//! [`insert_session_assessment`], [`session_assessments`]).
//!
//! Does not know HTTP, JSON wire shapes, or what a chat message looks like.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use super::rows::parse_json;
use super::{Result, Store, StoreError, TraceHook};
use crate::domain::{Assessment, SourceType, TraceInfo, metadata_keys, polarity};

/// Counts of valid (not overridden) assessments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssessmentCounts {
    pub feedback: i64,
    /// Feedback whose value reads as positive / negative ([`polarity`]).
    pub positive: i64,
    pub negative: i64,
    /// The same three over feedback from `HUMAN` sources (end users, reviewers).
    pub human_feedback: i64,
    pub human_positive: i64,
    pub human_negative: i64,
    pub expectations: i64,
}

impl AssessmentCounts {
    fn count(&mut self, a: &Assessment) {
        if a.kind == crate::domain::AssessmentKind::Expectation {
            self.expectations += 1;
            return;
        }
        let human = a.source.source_type == SourceType::Human;
        let p = a.value.as_ref().and_then(polarity);
        self.feedback += 1;
        self.positive += i64::from(p == Some(true));
        self.negative += i64::from(p == Some(false));
        if human {
            self.human_feedback += 1;
            self.human_positive += i64::from(p == Some(true));
            self.human_negative += i64::from(p == Some(false));
        }
    }
}

/// Token usage summed over traces (traces without usage count as zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub experiment_id: i64,
    pub session_id: String,
    pub user_id: Option<String>,
    /// The earliest turn; session-level assessments are attached to it.
    pub first_trace_id: String,
    pub first_time_ms: i64,
    pub last_time_ms: i64,
    pub turns: i64,
    /// Turns whose trace state is ERROR.
    pub error_count: i64,
    pub tokens: Tokens,
    /// Over every assessment of every turn, session-level ones included.
    pub assessments: AssessmentCounts,
    /// Valid session-level assessments.
    pub session_assessments: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserSummary {
    pub experiment_id: i64,
    pub user_id: String,
    pub traces: i64,
    pub sessions: i64,
    pub first_time_ms: i64,
    pub last_time_ms: i64,
    pub error_count: i64,
    pub tokens: Tokens,
    pub assessments: AssessmentCounts,
}

/// Which sessions or users to list: newest activity first, keyset-paged.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub experiment_id: i64,
    /// Sessions only: those that belong to this user.
    pub user_id: Option<String>,
    /// Last activity (latest trace's request time) at or after, in ms.
    pub start_ms: Option<i64>,
    /// Last activity at or before, in ms.
    pub end_ms: Option<i64>,
    /// Continue strictly after this (last_time, id) of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor for the next page, if there is one.
    pub next: Option<(i64, String)>,
}

/// One turn of a session: a trace with its assessments, and the values a
/// reader shows as the exchange (the caller decides which look like chat).
#[derive(Debug, Clone)]
pub struct Turn {
    /// 1-based position in the session.
    pub number: i64,
    pub info: TraceInfo,
    pub root_inputs: Option<Value>,
    pub root_outputs: Option<Value>,
    /// Inputs of the first LLM / CHAT_MODEL span, outputs of the last one.
    pub llm_inputs: Option<Value>,
    pub llm_outputs: Option<Value>,
}

/// A page of a session's turns, oldest first.
#[derive(Debug, Clone)]
pub struct TurnPage {
    pub turns: Vec<Turn>,
    /// (request_time, trace row id) of the last turn served, if more follow.
    pub next: Option<(i64, i64)>,
}

// ---------------------------------------------------------------- maintenance

/// What one trace adds to its session's and user's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contribution {
    experiment_id: i64,
    session_id: Option<String>,
    user_id: Option<String>,
    request_time: i64,
    is_error: i64,
    tokens: Tokens,
    counts: AssessmentCounts,
    session_level: i64,
}

/// Contributions added (and subtracted) to one session's or user's row:
/// what its counters move by. Times are not summed: the refresh after the
/// counters recomputes first and last times from the traces.
#[derive(Debug, Clone, Copy, Default)]
struct Delta {
    /// Traces (a user's `traces`, a session's `turns`).
    traces: i64,
    is_error: i64,
    tokens: Tokens,
    counts: AssessmentCounts,
    session_level: i64,
    /// A request time of one of the traces, for a row inserted here.
    request_time: i64,
}

impl Delta {
    fn add(&mut self, c: &Contribution, sign: i64) {
        let k = &c.counts;
        let d = &mut self.counts;
        self.traces += sign;
        self.is_error += sign * c.is_error;
        self.tokens.input += sign * c.tokens.input;
        self.tokens.output += sign * c.tokens.output;
        self.tokens.total += sign * c.tokens.total;
        d.feedback += sign * k.feedback;
        d.positive += sign * k.positive;
        d.negative += sign * k.negative;
        d.human_feedback += sign * k.human_feedback;
        d.human_positive += sign * k.human_positive;
        d.human_negative += sign * k.human_negative;
        d.expectations += sign * k.expectations;
        self.session_level += sign * c.session_level;
        self.request_time = c.request_time;
    }

    /// The parameters of the session and user upserts: `?1` experiment,
    /// `?2` session or user id, `?3` a request time, `?4` traces, `?5`..`?15`
    /// the counters, then `more`.
    fn params(&self, exp: i64, key: &str, more: &[i64]) -> rusqlite::ParamsFromIter<Vec<SqlValue>> {
        let k = &self.counts;
        let numbers = [
            self.request_time,
            self.traces,
            self.is_error,
            self.tokens.input,
            self.tokens.output,
            self.tokens.total,
            k.feedback,
            k.positive,
            k.negative,
            k.human_feedback,
            k.human_positive,
            k.human_negative,
            k.expectations,
        ];
        let mut out = vec![SqlValue::from(exp), SqlValue::from(key.to_string())];
        out.extend(numbers.iter().chain(more).map(|&n| SqlValue::from(n)));
        rusqlite::params_from_iter(out)
    }
}

/// Whether an assessment is about a whole session rather than one turn:
/// MLflow marks session-level judge results with metadata
/// `mlflow.trace.session` (set to the session id).
pub fn is_session_level(a: &Assessment, session_id: &str) -> bool {
    a.metadata
        .get(metadata_keys::SESSION)
        .is_some_and(|s| s == session_id)
}

/// The contribution a trace should have now; `None` when it names neither a
/// session nor a user, or no longer exists. `new`: the trace was created in
/// this transaction, so no assessment can refer to it yet.
fn contribution(conn: &Connection, trace: i64, new: bool) -> Result<Option<Contribution>> {
    let row = conn
        .prepare_cached(
            "SELECT experiment_id, session_id, user_id, request_time, state = 'ERROR',
                    coalesce(input_tokens, 0), coalesce(output_tokens, 0), coalesce(total_tokens, 0)
             FROM traces WHERE id = ?1",
        )?
        .query_row([trace], |r| {
            Ok(Contribution {
                experiment_id: r.get(0)?,
                session_id: r.get(1)?,
                user_id: r.get(2)?,
                request_time: r.get(3)?,
                is_error: r.get(4)?,
                tokens: Tokens {
                    input: r.get(5)?,
                    output: r.get(6)?,
                    total: r.get(7)?,
                },
                counts: AssessmentCounts::default(),
                session_level: 0,
            })
        })
        .optional()?;
    let Some(mut c) = row else { return Ok(None) };
    if c.session_id.is_none() && c.user_id.is_none() {
        return Ok(None);
    }
    if new {
        return Ok(Some(c));
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM assessments a WHERE a.trace = ?1 AND a.valid = 1",
        super::rows::ASSESSMENT_COLUMNS
    ))?;
    let mut q = stmt.query([trace])?;
    while let Some(r) = q.next()? {
        let a = super::rows::assessment_from_row(r, 0, String::new())?;
        c.counts.count(&a);
        if let Some(s) = &c.session_id
            && is_session_level(&a, s)
        {
            c.session_level += 1;
        }
    }
    Ok(Some(c))
}

const ROLLUP_COLUMNS: &str = "experiment_id, session_id, user_id, request_time, is_error, \
     input_tokens, output_tokens, total_tokens, feedback, positive, negative, human_feedback, \
     human_positive, human_negative, expectations, session_level";

fn counts_at(r: &Row<'_>, at: usize) -> rusqlite::Result<AssessmentCounts> {
    Ok(AssessmentCounts {
        feedback: r.get(at)?,
        positive: r.get(at + 1)?,
        negative: r.get(at + 2)?,
        human_feedback: r.get(at + 3)?,
        human_positive: r.get(at + 4)?,
        human_negative: r.get(at + 5)?,
        expectations: r.get(at + 6)?,
    })
}

fn tokens_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Tokens> {
    Ok(Tokens {
        input: r.get(at)?,
        output: r.get(at + 1)?,
        total: r.get(at + 2)?,
    })
}

fn stored(conn: &Connection, trace: i64) -> Result<Option<Contribution>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ROLLUP_COLUMNS} FROM trace_rollup WHERE trace = ?1"
        ))?
        .query_row([trace], |r| {
            Ok(Contribution {
                experiment_id: r.get(0)?,
                session_id: r.get(1)?,
                user_id: r.get(2)?,
                request_time: r.get(3)?,
                is_error: r.get(4)?,
                tokens: tokens_at(r, 5)?,
                counts: counts_at(r, 8)?,
                session_level: r.get(15)?,
            })
        })
        .optional()?)
}

fn store_contribution(conn: &Connection, trace: i64, c: Option<&Contribution>) -> Result<()> {
    let Some(c) = c else {
        conn.prepare_cached("DELETE FROM trace_rollup WHERE trace = ?1")?
            .execute([trace])?;
        return Ok(());
    };
    // An upsert, not INSERT OR REPLACE: REPLACE on a table with indexes
    // makes SQLite open a statement journal and copy every page it touches.
    conn.prepare_cached(&format!(
        "INSERT INTO trace_rollup (trace, {ROLLUP_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (trace) DO UPDATE SET experiment_id = ?2, session_id = ?3, user_id = ?4,
             request_time = ?5, is_error = ?6, input_tokens = ?7, output_tokens = ?8,
             total_tokens = ?9, feedback = ?10, positive = ?11, negative = ?12,
             human_feedback = ?13, human_positive = ?14, human_negative = ?15,
             expectations = ?16, session_level = ?17"
    ))?
    .execute(params![
        trace,
        c.experiment_id,
        c.session_id,
        c.user_id,
        c.request_time,
        c.is_error,
        c.tokens.input,
        c.tokens.output,
        c.tokens.total,
        c.counts.feedback,
        c.counts.positive,
        c.counts.negative,
        c.counts.human_feedback,
        c.counts.human_positive,
        c.counts.human_negative,
        c.counts.expectations,
        c.session_level,
    ])?;
    Ok(())
}

/// Moves a user's counters by `d`.
fn apply_to_user(conn: &Connection, exp: i64, user: &str, d: &Delta) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO users (experiment_id, user_id, traces, sessions, first_time, last_time,
             error_count, input_tokens, output_tokens, total_tokens, feedback, positive, negative,
             human_feedback, human_positive, human_negative, expectations)
         VALUES (?1, ?2, ?4, 0, ?3, ?3, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (experiment_id, user_id) DO UPDATE SET
             traces = traces + excluded.traces,
             error_count = error_count + excluded.error_count,
             input_tokens = input_tokens + excluded.input_tokens,
             output_tokens = output_tokens + excluded.output_tokens,
             total_tokens = total_tokens + excluded.total_tokens,
             feedback = feedback + excluded.feedback,
             positive = positive + excluded.positive,
             negative = negative + excluded.negative,
             human_feedback = human_feedback + excluded.human_feedback,
             human_positive = human_positive + excluded.human_positive,
             human_negative = human_negative + excluded.human_negative,
             expectations = expectations + excluded.expectations",
    )?
    .execute(d.params(exp, user, &[]))?;
    Ok(())
}

fn adjust_user_sessions(conn: &Connection, exp: i64, user: &str, delta: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET sessions = sessions + ?3 WHERE experiment_id = ?1 AND user_id = ?2",
    )?
    .execute(params![exp, user, delta])?;
    Ok(())
}

/// Moves a session's counters by `d` (the traces' contributions added and
/// subtracted). Who the session belongs to and its first and last turn are
/// not additive: `refresh_session` reads them afterwards.
///
/// Why deltas: re-summing the session's rollup rows on every write made
/// each turn cost as much as the whole conversation so far (quadratic for
/// long sessions, e.g. an agent loop or a support chat kept open for days).
fn apply_to_session(conn: &Connection, exp: i64, session: &str, d: &Delta) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (experiment_id, session_id, user_id, first_trace, first_time,
             last_time, turns, error_count, input_tokens, output_tokens, total_tokens, feedback,
             positive, negative, human_feedback, human_positive, human_negative, expectations,
             session_level)
         VALUES (?1, ?2, NULL, 0, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (experiment_id, session_id) DO UPDATE SET
             turns = turns + excluded.turns,
             error_count = error_count + excluded.error_count,
             input_tokens = input_tokens + excluded.input_tokens,
             output_tokens = output_tokens + excluded.output_tokens,
             total_tokens = total_tokens + excluded.total_tokens,
             feedback = feedback + excluded.feedback,
             positive = positive + excluded.positive,
             negative = negative + excluded.negative,
             human_feedback = human_feedback + excluded.human_feedback,
             human_positive = human_positive + excluded.human_positive,
             human_negative = human_negative + excluded.human_negative,
             expectations = expectations + excluded.expectations,
             session_level = session_level + excluded.session_level",
    )?
    .execute(d.params(exp, session, &[d.session_level]))?;
    Ok(())
}

/// Re-reads a session's first turn, last turn and user from the traces'
/// session index (a few index descents, whatever the session's length), drops the
/// row once no trace names the session, and moves the session between
/// users when its user changed.
fn refresh_session(conn: &Connection, exp: i64, session: &str) -> Result<()> {
    let row: Option<(i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT turns, user_id FROM sessions WHERE experiment_id = ?1 AND session_id = ?2",
        )?
        .query_row(params![exp, session], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((turns, old_user)) = row else {
        return Ok(());
    };
    if turns <= 0 {
        conn.prepare_cached("DELETE FROM sessions WHERE experiment_id = ?1 AND session_id = ?2")?
            .execute(params![exp, session])?;
        if let Some(u) = old_user {
            adjust_user_sessions(conn, exp, &u, -1)?;
        }
        return Ok(());
    }
    let (first_trace, first_time): (i64, i64) = conn
        .prepare_cached(
            "SELECT id, request_time FROM traces WHERE experiment_id = ?1 AND session_id = ?2
             ORDER BY request_time, id LIMIT 1",
        )?
        .query_row(params![exp, session], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let last_time: i64 = conn
        .prepare_cached(
            "SELECT request_time FROM traces WHERE experiment_id = ?1 AND session_id = ?2
             ORDER BY request_time DESC LIMIT 1",
        )?
        .query_row(params![exp, session], |r| r.get(0))?;
    let user: Option<String> = conn
        .prepare_cached(
            "SELECT user_id FROM traces WHERE experiment_id = ?1 AND session_id = ?2
                 AND user_id IS NOT NULL
             ORDER BY request_time, id LIMIT 1",
        )?
        .query_row(params![exp, session], |r| r.get(0))
        .optional()?;
    conn.prepare_cached(
        "UPDATE sessions SET user_id = ?3, first_trace = ?4, first_time = ?5, last_time = ?6
         WHERE experiment_id = ?1 AND session_id = ?2",
    )?
    .execute(params![
        exp,
        session,
        user,
        first_trace,
        first_time,
        last_time
    ])?;
    if old_user != user {
        if let Some(u) = &old_user {
            adjust_user_sessions(conn, exp, u, -1)?;
        }
        if let Some(u) = &user {
            adjust_user_sessions(conn, exp, u, 1)?;
        }
    }
    Ok(())
}

/// Re-reads a user's first/last seen from the traces' user index, and drops the
/// row once no trace names the user.
fn refresh_user(conn: &Connection, exp: i64, user: &str) -> Result<()> {
    let traces: Option<i64> = conn
        .prepare_cached("SELECT traces FROM users WHERE experiment_id = ?1 AND user_id = ?2")?
        .query_row(params![exp, user], |r| r.get(0))
        .optional()?;
    match traces {
        None => Ok(()),
        Some(n) if n <= 0 => {
            conn.prepare_cached("DELETE FROM users WHERE experiment_id = ?1 AND user_id = ?2")?
                .execute(params![exp, user])?;
            Ok(())
        }
        Some(_) => {
            // Two LIMIT 1 probes: each is one index descent, where a single
            // min()/max() pair would walk the user's whole index range.
            let first: i64 = conn
                .prepare_cached(
                    "SELECT request_time FROM traces WHERE experiment_id = ?1 AND user_id = ?2
                     ORDER BY request_time LIMIT 1",
                )?
                .query_row(params![exp, user], |r| r.get(0))?;
            let last: i64 = conn
                .prepare_cached(
                    "SELECT request_time FROM traces WHERE experiment_id = ?1 AND user_id = ?2
                     ORDER BY request_time DESC LIMIT 1",
                )?
                .query_row(params![exp, user], |r| r.get(0))?;
            conn.prepare_cached(
                "UPDATE users SET first_time = ?3, last_time = ?4
                 WHERE experiment_id = ?1 AND user_id = ?2",
            )?
            .execute(params![exp, user, first, last])?;
            Ok(())
        }
    }
}

/// Brings the session and user aggregates up to date with the given traces
/// (internal row ids; deleted ones included). Call it inside the transaction
/// that changed them, after the change.
pub fn sync(conn: &Connection, traces: &[i64]) -> Result<()> {
    sync_written(conn, traces, &[])
}

/// [`sync`], told which of the traces this transaction created: those have
/// no stored contribution and no assessments to read (two of the three
/// lookups per trace, skipped for every trace an upload creates).
fn sync_written(conn: &Connection, traces: &[i64], created: &[i64]) -> Result<()> {
    // Per session / user, the sum of what changed: one upsert per row
    // touched instead of two per trace (a 512-span upload of 128 traces in
    // a few sessions made 256 upserts of the same handful of rows).
    let mut sessions: BTreeMap<(i64, String), Delta> = BTreeMap::new();
    let mut users: BTreeMap<(i64, String), Delta> = BTreeMap::new();
    let ids: BTreeSet<i64> = traces.iter().copied().collect();
    let created: BTreeSet<i64> = created.iter().copied().collect();
    for id in ids {
        let is_new = created.contains(&id);
        let new = contribution(conn, id, is_new)?;
        let old = if is_new { None } else { stored(conn, id)? };
        if new == old {
            continue;
        }
        for (c, sign) in [(&old, -1), (&new, 1)] {
            let Some(c) = c else { continue };
            if let Some(u) = &c.user_id {
                users
                    .entry((c.experiment_id, u.clone()))
                    .or_default()
                    .add(c, sign);
            }
            if let Some(s) = &c.session_id {
                sessions
                    .entry((c.experiment_id, s.clone()))
                    .or_default()
                    .add(c, sign);
            }
        }
        store_contribution(conn, id, new.as_ref())?;
    }
    for ((exp, u), d) in &users {
        apply_to_user(conn, *exp, u, d)?;
    }
    for ((exp, s), d) in &sessions {
        apply_to_session(conn, *exp, s, d)?;
    }
    for (exp, s) in sessions.keys() {
        refresh_session(conn, *exp, s)?;
    }
    for (exp, u) in users.keys() {
        refresh_user(conn, *exp, u)?;
    }
    Ok(())
}

/// The ingestion hook that keeps the aggregates exact (register it with
/// `Store::on_traces_written`).
pub fn hook() -> TraceHook {
    Arc::new(|conn, written| sync_written(conn, &written.touched, &written.created))
}

/// Recomputes every aggregate from the traces (for databases written before
/// the aggregates existed, or by a tool that bypassed the hook).
pub fn rebuild(conn: &Connection) -> Result<()> {
    conn.execute_batch("DELETE FROM trace_rollup; DELETE FROM sessions; DELETE FROM users;")?;
    let ids: Vec<i64> = conn
        .prepare(
            "SELECT id FROM traces WHERE session_id IS NOT NULL
             UNION SELECT id FROM traces WHERE user_id IS NOT NULL",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for chunk in ids.chunks(2000) {
        sync(conn, chunk)?;
    }
    Ok(())
}

/// Runs the rebuild the sessions migration asked for, once, in its own
/// transaction (a crash midway leaves the request in place for next start).
pub(super) fn rebuild_if_pending(conn: &mut Connection) -> Result<()> {
    let pending: Option<String> = conn
        .query_row(
            "SELECT value FROM rollup_meta WHERE key = 'rebuild_pending'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if pending.is_none() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    rebuild(&tx)?;
    tx.execute("DELETE FROM rollup_meta WHERE key = 'rebuild_pending'", [])?;
    tx.commit()?;
    tracing::info!("computed session and user aggregates");
    Ok(())
}

// ---------------------------------------------------------------- session-level assessments

/// The session's earliest trace (internal id, trace id).
pub fn first_trace(conn: &Connection, exp: i64, session: &str) -> Result<(i64, String)> {
    conn.prepare_cached(
        "SELECT id, trace_id FROM traces WHERE experiment_id = ?1 AND session_id = ?2
         ORDER BY request_time, id LIMIT 1",
    )?
    .query_row(params![exp, session], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?
    .ok_or_else(|| session_not_found(exp, session))
}

fn session_not_found(exp: i64, session: &str) -> StoreError {
    StoreError::NotFound(format!("Session '{session}' not found in experiment {exp}"))
}

/// Every assessment about the whole session (valid or not), oldest first.
pub fn session_assessments(conn: &Connection, exp: i64, session: &str) -> Result<Vec<Assessment>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT t.trace_id, {} FROM traces t JOIN assessments a ON a.trace = t.id
         WHERE t.experiment_id = ?1 AND t.session_id = ?2
           AND json_extract(a.metadata, '$.\"{}\"') = ?2
         ORDER BY a.id",
        super::rows::ASSESSMENT_COLUMNS,
        metadata_keys::SESSION
    ))?;
    let mut q = stmt.query(params![exp, session])?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let trace_id: String = r.get(0)?;
        out.push(super::rows::assessment_from_row(r, 1, trace_id)?);
    }
    Ok(out)
}

/// Logs an assessment about a whole session the way MLflow does: on the
/// session's first trace, with metadata `mlflow.trace.session` = session id.
/// With `replace`, earlier session-level assessments of the same name from
/// the same source are deleted first (re-judging a session that got new
/// turns replaces the old verdict, as MLflow's online scoring does).
pub fn insert_session_assessment(
    conn: &Connection,
    exp: i64,
    session: &str,
    mut a: Assessment,
    replace: bool,
) -> Result<Assessment> {
    let (row, trace_id) = first_trace(conn, exp, session)?;
    if replace {
        for old in session_assessments(conn, exp, session)? {
            if old.name == a.name && old.source == a.source {
                super::assessments::delete(conn, &old.trace_id, &old.assessment_id)?;
            }
        }
    }
    a.trace_id = trace_id;
    a.metadata
        .insert(metadata_keys::SESSION.to_string(), session.to_string());
    super::assessments::insert(conn, row, a)
}

// ---------------------------------------------------------------- reads

const SESSION_COLUMNS: &str = "s.experiment_id, s.session_id, s.user_id, \
     (SELECT trace_id FROM traces WHERE id = s.first_trace), s.first_time, s.last_time, s.turns, \
     s.error_count, s.input_tokens, s.output_tokens, s.total_tokens, s.feedback, s.positive, \
     s.negative, s.human_feedback, s.human_positive, s.human_negative, s.expectations, \
     s.session_level";

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionSummary> {
    Ok(SessionSummary {
        experiment_id: r.get(0)?,
        session_id: r.get(1)?,
        user_id: r.get(2)?,
        first_trace_id: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        first_time_ms: r.get(4)?,
        last_time_ms: r.get(5)?,
        turns: r.get(6)?,
        error_count: r.get(7)?,
        tokens: tokens_at(r, 8)?,
        assessments: counts_at(r, 11)?,
        session_assessments: r.get(18)?,
    })
}

const USER_COLUMNS: &str = "u.experiment_id, u.user_id, u.traces, u.sessions, u.first_time, \
     u.last_time, u.error_count, u.input_tokens, u.output_tokens, u.total_tokens, u.feedback, \
     u.positive, u.negative, u.human_feedback, u.human_positive, u.human_negative, u.expectations";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<UserSummary> {
    Ok(UserSummary {
        experiment_id: r.get(0)?,
        user_id: r.get(1)?,
        traces: r.get(2)?,
        sessions: r.get(3)?,
        first_time_ms: r.get(4)?,
        last_time_ms: r.get(5)?,
        error_count: r.get(6)?,
        tokens: tokens_at(r, 7)?,
        assessments: counts_at(r, 10)?,
    })
}

/// The SQL of a list: newest activity first over the `*_recent` (or
/// `sessions_user`) index, time window and keyset cursor as index ranges.
/// Fetches one row more than asked to know whether a next page exists.
pub(crate) fn list_sql(table: &str, q: &ListQuery) -> (String, Vec<SqlValue>) {
    let (alias, id_col, cols) = if table == "sessions" {
        ("s", "session_id", SESSION_COLUMNS)
    } else {
        ("u", "user_id", USER_COLUMNS)
    };
    let mut sql = format!("SELECT {cols} FROM {table} {alias} WHERE {alias}.experiment_id = ?");
    let mut args = vec![SqlValue::Integer(q.experiment_id)];
    if let Some(u) = q.user_id.as_ref().filter(|_| table == "sessions") {
        sql.push_str(" AND s.user_id = ?");
        args.push(SqlValue::Text(u.clone()));
    }
    if let Some(s) = q.start_ms {
        sql.push_str(&format!(" AND {alias}.last_time >= ?"));
        args.push(SqlValue::Integer(s));
    }
    if let Some(e) = q.end_ms {
        sql.push_str(&format!(" AND {alias}.last_time <= ?"));
        args.push(SqlValue::Integer(e));
    }
    if let Some((t, id)) = &q.after {
        sql.push_str(&format!(
            " AND ({alias}.last_time, {alias}.{id_col}) < (?, ?)"
        ));
        args.push(SqlValue::Integer(*t));
        args.push(SqlValue::Text(id.clone()));
    }
    sql.push_str(&format!(
        " ORDER BY {alias}.last_time DESC, {alias}.{id_col} DESC LIMIT ?"
    ));
    args.push(SqlValue::Integer(q.limit as i64 + 1));
    (sql, args)
}

fn list<T>(
    conn: &Connection,
    table: &str,
    q: &ListQuery,
    from_row: fn(&Row<'_>) -> rusqlite::Result<T>,
    key: fn(&T) -> (i64, String),
) -> Result<Page<T>> {
    super::experiments::get(conn, q.experiment_id)?;
    let (sql, args) = list_sql(table, q);
    let mut items: Vec<T> = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args), from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let next = if items.len() > q.limit {
        items.truncate(q.limit);
        items.last().map(key)
    } else {
        None
    };
    Ok(Page { items, next })
}

pub fn list_sessions(conn: &Connection, q: &ListQuery) -> Result<Page<SessionSummary>> {
    list(conn, "sessions", q, session_from_row, |s| {
        (s.last_time_ms, s.session_id.clone())
    })
}

pub fn list_users(conn: &Connection, q: &ListQuery) -> Result<Page<UserSummary>> {
    list(conn, "users", q, user_from_row, |u| {
        (u.last_time_ms, u.user_id.clone())
    })
}

pub fn get_session(conn: &Connection, exp: i64, session: &str) -> Result<SessionSummary> {
    super::experiments::get(conn, exp)?;
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.experiment_id = ?1 AND s.session_id = ?2"
    ))?
    .query_row(params![exp, session], session_from_row)
    .optional()?
    .ok_or_else(|| session_not_found(exp, session))
}

pub fn get_user(conn: &Connection, exp: i64, user: &str) -> Result<UserSummary> {
    super::experiments::get(conn, exp)?;
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users u WHERE u.experiment_id = ?1 AND u.user_id = ?2"
    ))?
    .query_row(params![exp, user], user_from_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("User '{user}' not found in experiment {exp}")))
}

/// SQL for a page of a session's turns (over the `traces_session` index).
pub(crate) const TURNS_SQL: &str = "SELECT id, request_time FROM traces
     WHERE experiment_id = ?1 AND session_id = ?2 AND (request_time, id) > (?3, ?4)
     ORDER BY request_time, id LIMIT ?5";

fn json_col(v: Option<String>) -> Result<Option<Value>> {
    v.map(|s| parse_json(&s)).transpose()
}

/// A page of a session's turns, oldest first, each with its assessments and
/// the inputs/outputs of its root span and of its first/last LLM span.
pub fn session_turns(
    conn: &Connection,
    exp: i64,
    session: &str,
    after: Option<(i64, i64)>,
    limit: usize,
) -> Result<TurnPage> {
    let (after_time, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
    let mut rows: Vec<(i64, i64)> = conn
        .prepare_cached(TURNS_SQL)?
        .query_map(
            params![exp, session, after_time, after_id, limit as i64 + 1],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(id, t)| (*t, *id))
    } else {
        None
    };
    // Turn numbers continue from the previous page.
    let before: i64 = match after {
        None => 0,
        Some(_) => conn
            .prepare_cached(
                "SELECT count(*) FROM traces WHERE experiment_id = ?1 AND session_id = ?2
                 AND (request_time, id) <= (?3, ?4)",
            )?
            .query_row(params![exp, session, after_time, after_id], |r| r.get(0))?,
    };
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    let infos = super::traces::load_trace_infos(conn, &ids)?;
    let mut root = conn.prepare_cached(
        "SELECT tb_text(inputs), tb_text(outputs) FROM spans WHERE trace = ?1 AND parent_span_id IS NULL
         ORDER BY start_ns LIMIT 1",
    )?;
    let mut llm_first = conn.prepare_cached(
        "SELECT tb_text(inputs) FROM spans WHERE trace = ?1 AND span_type IN ('LLM', 'CHAT_MODEL')
         ORDER BY start_ns, id LIMIT 1",
    )?;
    let mut llm_last = conn.prepare_cached(
        "SELECT tb_text(outputs) FROM spans WHERE trace = ?1 AND span_type IN ('LLM', 'CHAT_MODEL')
         ORDER BY start_ns DESC, id DESC LIMIT 1",
    )?;
    let mut turns = Vec::with_capacity(infos.len());
    for (i, (id, info)) in ids.iter().zip(infos).enumerate() {
        let (ri, ro): (Option<String>, Option<String>) = root
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or_default();
        let li: Option<String> = llm_first
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten();
        let lo: Option<String> = llm_last.query_row([id], |r| r.get(0)).optional()?.flatten();
        turns.push(Turn {
            number: before + i as i64 + 1,
            info,
            root_inputs: json_col(ri)?,
            root_outputs: json_col(ro)?,
            llm_inputs: json_col(li)?,
            llm_outputs: json_col(lo)?,
        });
    }
    Ok(TurnPage { turns, next })
}

impl Store {
    pub async fn list_sessions(&self, q: ListQuery) -> Result<Page<SessionSummary>> {
        self.read(move |c| list_sessions(c, &q)).await
    }
    pub async fn list_users(&self, q: ListQuery) -> Result<Page<UserSummary>> {
        self.read(move |c| list_users(c, &q)).await
    }
    pub async fn get_user(&self, exp: i64, user: String) -> Result<UserSummary> {
        self.read(move |c| get_user(c, exp, &user)).await
    }
    /// A session's summary, a page of its turns and its session-level
    /// assessments, read in one snapshot.
    pub async fn get_session(
        &self,
        exp: i64,
        session: String,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<(SessionSummary, TurnPage, Vec<Assessment>)> {
        self.read(move |c| {
            // One read transaction: the summary, turns and assessments come
            // from the same snapshot even while writes commit.
            let _snapshot = c.unchecked_transaction()?;
            let summary = get_session(c, exp, &session)?;
            let turns = session_turns(c, exp, &session, after, limit)?;
            let session_level = session_assessments(c, exp, &session)?;
            Ok((summary, turns, session_level))
        })
        .await
    }
    pub async fn session_assessments(&self, exp: i64, session: String) -> Result<Vec<Assessment>> {
        self.read(move |c| session_assessments(c, exp, &session))
            .await
    }
    /// See [`insert_session_assessment`].
    pub async fn log_session_assessment(
        &self,
        exp: i64,
        session: String,
        a: Assessment,
        replace: bool,
    ) -> Result<Assessment> {
        self.write(move |c| insert_session_assessment(c, exp, &session, a.clone(), replace))
            .await
    }
    /// Recomputes every session and user aggregate (see [`rebuild`]).
    pub async fn rebuild_sessions(&self) -> Result<()> {
        self.write(rebuild).await
    }
}

#[cfg(test)]
mod tests {
    //! The aggregates against a from-scratch recomputation after random
    //! sequences of every kind of write, and the query plans of the reads.

    use std::collections::{BTreeMap, HashMap};

    use serde_json::json;

    use super::*;
    use crate::domain::semconv::TraceHints;
    use crate::domain::{
        AssessmentKind, AssessmentSource, OtelSpanId, OtelTraceId, Span, SpanBatch, SpanStatusCode,
        TokenUsage, TraceState, tag_keys,
    };
    use crate::store::{AssessmentUpdate, DeleteTraces, StoreOptions, TraceUpsert};

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.on_traces_written(hook());
        (dir, store)
    }

    /// Sessions and users as a brute-force GROUP BY over every trace would
    /// compute them, in list order.
    fn expected(conn: &Connection) -> (Vec<SessionSummary>, Vec<UserSummary>) {
        let ids: Vec<(i64, String)> = conn
            .prepare("SELECT id, trace_id FROM traces ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let row_ids: Vec<i64> = ids.iter().map(|(i, _)| *i).collect();
        let infos = crate::store::traces::load_trace_infos(conn, &row_ids).unwrap();
        let mut sessions: BTreeMap<(i64, String), Vec<(i64, &TraceInfo)>> = BTreeMap::new();
        let mut users: BTreeMap<(i64, String), Vec<&TraceInfo>> = BTreeMap::new();
        for (id, info) in row_ids.iter().zip(&infos) {
            if let Some(s) = info.session_id() {
                sessions
                    .entry((info.experiment_id, s.to_string()))
                    .or_default()
                    .push((*id, info));
            }
            if let Some(u) = info.user_id() {
                users
                    .entry((info.experiment_id, u.to_string()))
                    .or_default()
                    .push(info);
            }
        }
        let counts = |infos: &[&TraceInfo]| {
            let mut c = AssessmentCounts::default();
            for i in infos {
                for a in i.assessments.iter().filter(|a| a.valid) {
                    c.count(a);
                }
            }
            c
        };
        let tokens = |infos: &[&TraceInfo]| Tokens {
            input: infos.iter().map(|i| i.tokens.input.unwrap_or(0)).sum(),
            output: infos.iter().map(|i| i.tokens.output.unwrap_or(0)).sum(),
            total: infos.iter().map(|i| i.tokens.total.unwrap_or(0)).sum(),
        };
        let errors = |infos: &[&TraceInfo]| {
            infos
                .iter()
                .filter(|i| i.state == TraceState::Error)
                .count() as i64
        };
        let mut s_out: Vec<SessionSummary> = sessions
            .iter()
            .map(|((exp, sid), turns)| {
                let mut turns = turns.clone();
                turns.sort_by_key(|(id, i)| (i.request_time_ms, *id));
                let infos: Vec<&TraceInfo> = turns.iter().map(|(_, i)| *i).collect();
                SessionSummary {
                    experiment_id: *exp,
                    session_id: sid.clone(),
                    user_id: infos.iter().find_map(|i| i.user_id()).map(str::to_string),
                    first_trace_id: infos[0].trace_id.clone(),
                    first_time_ms: infos[0].request_time_ms,
                    last_time_ms: infos.iter().map(|i| i.request_time_ms).max().unwrap(),
                    turns: infos.len() as i64,
                    error_count: errors(&infos),
                    tokens: tokens(&infos),
                    assessments: counts(&infos),
                    session_assessments: infos
                        .iter()
                        .flat_map(|i| &i.assessments)
                        .filter(|a| a.valid && is_session_level(a, sid))
                        .count() as i64,
                }
            })
            .collect();
        s_out.sort_by(|a, b| {
            (b.experiment_id, b.last_time_ms, &b.session_id).cmp(&(
                a.experiment_id,
                a.last_time_ms,
                &a.session_id,
            ))
        });
        let mut u_out: Vec<UserSummary> = users
            .iter()
            .map(|((exp, uid), infos)| UserSummary {
                experiment_id: *exp,
                user_id: uid.clone(),
                traces: infos.len() as i64,
                sessions: s_out
                    .iter()
                    .filter(|s| s.experiment_id == *exp && s.user_id.as_deref() == Some(uid))
                    .count() as i64,
                first_time_ms: infos.iter().map(|i| i.request_time_ms).min().unwrap(),
                last_time_ms: infos.iter().map(|i| i.request_time_ms).max().unwrap(),
                error_count: errors(infos),
                tokens: tokens(infos),
                assessments: counts(infos),
            })
            .collect();
        u_out.sort_by(|a, b| {
            (b.experiment_id, b.last_time_ms, &b.user_id).cmp(&(
                a.experiment_id,
                a.last_time_ms,
                &a.user_id,
            ))
        });
        (s_out, u_out)
    }

    fn actual(conn: &Connection) -> (Vec<SessionSummary>, Vec<UserSummary>) {
        let mut s = Vec::new();
        let mut u = Vec::new();
        let exps: Vec<i64> = conn
            .prepare("SELECT experiment_id FROM experiments ORDER BY experiment_id DESC")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for exp in exps {
            let q = ListQuery {
                experiment_id: exp,
                limit: 100_000,
                ..Default::default()
            };
            s.extend(list_sessions(conn, &q).unwrap().items);
            u.extend(list_users(conn, &q).unwrap().items);
        }
        (s, u)
    }

    fn assessment(rng: &mut fastrand::Rng, trace_id: &str, session: Option<&str>) -> Assessment {
        let kind = if rng.u8(0..5) == 0 {
            AssessmentKind::Expectation
        } else {
            AssessmentKind::Feedback
        };
        let value = match rng.u8(0..6) {
            0 => json!(true),
            1 => json!(false),
            2 => json!("yes"),
            3 => json!(rng.f64()),
            4 => json!(rng.u8(1..6)),
            _ => json!({"k": "v"}),
        };
        let mut metadata = BTreeMap::new();
        if let Some(s) = session
            && rng.bool()
        {
            metadata.insert(metadata_keys::SESSION.to_string(), s.to_string());
        }
        Assessment {
            assessment_id: String::new(),
            trace_id: trace_id.to_string(),
            name: ["satisfaction", "relevance", "frustration"][rng.usize(0..3)].into(),
            kind,
            value: Some(value),
            error: None,
            source: AssessmentSource {
                source_type: [SourceType::Human, SourceType::LlmJudge, SourceType::Code]
                    [rng.usize(0..3)],
                source_id: "src".into(),
            },
            rationale: None,
            metadata,
            span_id: None,
            overrides: None,
            valid: true,
            create_time_ms: 1,
            last_update_time_ms: 1,
        }
    }

    fn info(rng: &mut fastrand::Rng, trace_id: String, exp: i64) -> TraceInfo {
        let mut tags = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        // Session and user, absent or in tags or metadata (or both, differing).
        for (key, pool) in [
            (tag_keys::SESSION, &["s1", "s2", "s3", "s4"][..]),
            (tag_keys::USER, &["alice", "bob", "carol"][..]),
        ] {
            match rng.u8(0..4) {
                0 => {}
                1 => {
                    tags.insert(key.to_string(), pool[rng.usize(0..pool.len())].to_string());
                }
                2 => {
                    metadata.insert(key.to_string(), pool[rng.usize(0..pool.len())].to_string());
                }
                _ => {
                    tags.insert(key.to_string(), pool[rng.usize(0..pool.len())].to_string());
                    metadata.insert(key.to_string(), pool[rng.usize(0..pool.len())].to_string());
                }
            }
        }
        if rng.bool() {
            metadata.insert(
                metadata_keys::TOKEN_USAGE.into(),
                json!({"input_tokens": rng.u8(0..50), "output_tokens": rng.u8(0..50), "total_tokens": 100})
                    .to_string(),
            );
        }
        TraceInfo {
            trace_id,
            experiment_id: exp,
            request_time_ms: 1_000 + rng.i64(0..50) * 10,
            execution_time_ms: Some(5),
            state: if rng.u8(0..4) == 0 {
                TraceState::Error
            } else {
                TraceState::Ok
            },
            tags,
            metadata,
            ..Default::default()
        }
    }

    /// Spans for a trace: a root and an LLM child, with a session hint on the
    /// root (as OpenInference's `session.id` gives one) and usage.
    fn spans(rng: &mut fastrand::Rng, n: u8) -> SpanBatch {
        let trace = OtelTraceId([n; 16]);
        let start = 1_000_000_000 + rng.i64(0..50) * 10_000_000;
        let root = Span {
            trace_id: trace,
            span_id: OtelSpanId([1; 8]),
            parent_span_id: None,
            name: "chat".into(),
            span_type: "CHAIN".into(),
            kind: 0,
            status: if rng.bool() {
                SpanStatusCode::Ok
            } else {
                SpanStatusCode::Error
            },
            status_message: String::new(),
            start_ns: start,
            end_ns: Some(start + 1_000_000),
            inputs: Some(json!({"messages": [{"role": "user", "content": "hi"}]})),
            outputs: Some(json!("hello")),
            attributes: Default::default(),
            events: vec![],
            model: None,
            tokens: TokenUsage::default(),
            sent: Default::default(),
        };
        let llm = Span {
            span_id: OtelSpanId([2; 8]),
            parent_span_id: Some(OtelSpanId([1; 8])),
            span_type: "LLM".into(),
            tokens: TokenUsage {
                input: Some(rng.i64(1..20)),
                output: Some(rng.i64(1..20)),
                total: None,
            },
            ..root.clone()
        };
        let mut hints = HashMap::new();
        if rng.bool() {
            let mut h = TraceHints::default();
            h.metadata.insert(
                metadata_keys::SESSION.into(),
                ["s1", "s5"][rng.usize(0..2)].into(),
            );
            h.metadata.insert(metadata_keys::USER.into(), "dave".into());
            hints.insert(trace, h);
        }
        let mut spans = vec![root, llm];
        // Spans may arrive before or after the trace's info, root or not.
        if rng.bool() {
            spans.reverse();
            spans.truncate(rng.usize(1..=2));
        }
        SpanBatch { spans, hints }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aggregates_stay_exact_through_every_kind_of_write() {
        let (mut seen_session_level, mut seen_feedback) = (false, false);
        for seed in 0..12 {
            let (_dir, store) = open();
            let exp2 = store
                .create_experiment("other".into(), None, Default::default())
                .await
                .unwrap();
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut traces: Vec<String> = Vec::new();
            let mut assessments: Vec<(String, String)> = Vec::new();
            for step in 0..120 {
                let exp = if rng.u8(0..5) == 0 { exp2 } else { 0 };
                match rng.u8(0..12) {
                    0..=2 => {
                        let n = rng.u8(1..40);
                        let tid =
                            crate::domain::TraceId::from_otel(OtelTraceId([n; 16])).into_string();
                        let i = info(&mut rng, tid.clone(), exp);
                        let inline = if rng.u8(0..3) == 0 {
                            vec![assessment(&mut rng, &tid, i.session_id())]
                        } else {
                            vec![]
                        };
                        store
                            .upsert_trace_info(TraceUpsert::new(i, store.codec()), inline)
                            .await
                            .unwrap();
                        traces.push(tid);
                    }
                    3 => {
                        let n = rng.u8(1..40);
                        let batch = spans(&mut rng, n);
                        let _ = store.ingest_spans(exp, batch).await.unwrap();
                        traces.push(
                            crate::domain::TraceId::from_otel(OtelTraceId([n; 16])).into_string(),
                        );
                    }
                    4 if !traces.is_empty() => {
                        let t = traces[rng.usize(0..traces.len())].clone();
                        let (key, v) = if rng.bool() {
                            (tag_keys::SESSION, ["s1", "s2", "s9"][rng.usize(0..3)])
                        } else {
                            (tag_keys::USER, ["alice", "erin"][rng.usize(0..2)])
                        };
                        let _ = store.set_trace_tag(t, key.into(), v.into()).await;
                    }
                    5 if !traces.is_empty() => {
                        let t = traces[rng.usize(0..traces.len())].clone();
                        let key = [tag_keys::SESSION, tag_keys::USER][rng.usize(0..2)];
                        let _ = store.delete_trace_tag(t, key.into()).await;
                    }
                    6 | 7 if !traces.is_empty() => {
                        let t = traces[rng.usize(0..traces.len())].clone();
                        let session = store
                            .get_trace_info(t.clone())
                            .await
                            .ok()
                            .and_then(|i| i.session_id().map(str::to_string));
                        let mut a = assessment(&mut rng, &t, session.as_deref());
                        if rng.u8(0..3) == 0
                            && let Some((at, aid)) =
                                assessments.iter().find(|(at, _)| *at == t).cloned()
                        {
                            a.overrides = Some(aid);
                            a.trace_id = at;
                        }
                        if let Ok(a) = store.create_assessment(a).await {
                            assessments.push((t, a.assessment_id));
                        }
                    }
                    8 if !assessments.is_empty() => {
                        let (t, a) = assessments[rng.usize(0..assessments.len())].clone();
                        let up = AssessmentUpdate {
                            feedback: Some((Some(json!(rng.bool())), None)),
                            ..Default::default()
                        };
                        let _ = store.update_assessment(t, a, up).await;
                    }
                    9 if !assessments.is_empty() => {
                        let (t, a) = assessments.remove(rng.usize(0..assessments.len()));
                        store.delete_assessment(t, a).await.unwrap();
                    }
                    10 if !traces.is_empty() => {
                        let t = traces[rng.usize(0..traces.len())].clone();
                        let _ = store.delete_traces(exp, DeleteTraces::Ids(vec![t])).await;
                    }
                    11 => {
                        let session = ["s1", "s2", "s3"][rng.usize(0..3)];
                        let a = assessment(&mut rng, "", None);
                        match store
                            .log_session_assessment(exp, session.into(), a, rng.bool())
                            .await
                        {
                            Ok(a) => assessments.push((a.trace_id.clone(), a.assessment_id)),
                            Err(StoreError::NotFound(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    _ => {}
                }
                let (want, got) = store.read(|c| Ok((expected(c), actual(c)))).await.unwrap();
                assert_eq!(got.0, want.0, "sessions, seed {seed} step {step}");
                assert_eq!(got.1, want.1, "users, seed {seed} step {step}");
            }
            // A rebuild from scratch lands on the same rows.
            store.rebuild_sessions().await.unwrap();
            let (want, got) = store.read(|c| Ok((expected(c), actual(c)))).await.unwrap();
            assert_eq!(got, want, "after rebuild, seed {seed}");
            // The sequence exercised what it should.
            let (sessions, users) = got;
            assert!(sessions.len() >= 2 && users.len() >= 2, "seed {seed}");
            assert!(sessions.iter().any(|s| s.turns > 1), "seed {seed}");
            seen_session_level |= sessions.iter().any(|s| s.session_assessments > 0);
            seen_feedback |= users.iter().any(|u| u.assessments.human_positive > 0);
        }
        assert!(seen_session_level && seen_feedback);
    }

    #[tokio::test]
    async fn session_level_assessments_go_on_the_first_turn() {
        let (_dir, store) = open();
        let mut rng = fastrand::Rng::with_seed(7);
        for (n, t) in [(1u8, 3_000), (2, 1_000), (3, 2_000)] {
            let tid = crate::domain::TraceId::from_otel(OtelTraceId([n; 16])).into_string();
            let mut i = info(&mut rng, tid, 0);
            i.request_time_ms = t;
            i.tags.insert(tag_keys::SESSION.into(), "conv".into());
            store
                .upsert_trace_info(TraceUpsert::new(i, store.codec()), vec![])
                .await
                .unwrap();
        }
        let first = crate::domain::TraceId::from_otel(OtelTraceId([2; 16])).into_string();
        let a = assessment(&mut rng, "", None);
        let logged = store
            .log_session_assessment(0, "conv".into(), a.clone(), true)
            .await
            .unwrap();
        assert_eq!(logged.trace_id, first);
        assert_eq!(logged.metadata[metadata_keys::SESSION], "conv");
        // Replacing: same name and source, the old one goes.
        let again = store
            .log_session_assessment(0, "conv".into(), a.clone(), true)
            .await
            .unwrap();
        let all = store.session_assessments(0, "conv".into()).await.unwrap();
        assert_eq!(
            all.iter().map(|a| &a.assessment_id).collect::<Vec<_>>(),
            vec![&again.assessment_id]
        );
        // Not replacing keeps both.
        store
            .log_session_assessment(0, "conv".into(), a, false)
            .await
            .unwrap();
        assert_eq!(
            store
                .session_assessments(0, "conv".into())
                .await
                .unwrap()
                .len(),
            2
        );
        let s = store.read(|c| get_session(c, 0, "conv")).await.unwrap();
        assert_eq!((s.turns, s.session_assessments), (3, 2));
        let missing = store
            .log_session_assessment(0, "nope".into(), logged, false)
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))));
    }

    /// A database written before the aggregates existed gets them computed
    /// when it is migrated.
    #[test]
    fn migrating_an_existing_database_computes_the_aggregates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracebox.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(include_str!("../../migrations/0001_core.sql"))
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            for (i, (s, u, state)) in [
                (Some("s1"), Some("ann"), "OK"),
                (Some("s1"), Some("ann"), "ERROR"),
                (Some("s2"), None, "OK"),
                (None, Some("ann"), "OK"),
                (None, None, "OK"),
            ]
            .into_iter()
            .enumerate()
            {
                conn.execute(
                    "INSERT INTO traces (trace_id, experiment_id, request_time, state, session_id,
                         user_id, last_update) VALUES (?1, 0, ?2, ?3, ?4, ?5, 0)",
                    params![format!("tr-{i}"), 100 + i as i64, state, s, u],
                )
                .unwrap();
                // The columns are denormalised from these.
                for (k, v) in [(metadata_keys::SESSION, s), (metadata_keys::USER, u)] {
                    if let Some(v) = v {
                        conn.execute(
                            "INSERT INTO trace_metadata (trace, key, value) VALUES (?1, ?2, ?3)",
                            params![i as i64 + 1, k, v],
                        )
                        .unwrap();
                    }
                }
            }
            conn.execute(
                "INSERT INTO assessments (assessment_id, trace, name, kind, value, source_type,
                     create_time, last_update_time) VALUES ('a-1', 1, 'x', 'feedback', 'true', 'HUMAN', 0, 0)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (want, got) = store
            .read_blocking(|c| Ok((expected(c), actual(c))))
            .unwrap();
        assert_eq!(got, want);
        assert_eq!(got.0.len(), 2);
        assert_eq!(
            (got.1[0].traces, got.1[0].sessions, got.1[0].error_count),
            (3, 1, 1)
        );
        assert_eq!(got.1[0].assessments.human_positive, 1);
        // Done once: the request is gone.
        let pending: i64 = store
            .read_blocking(|c| {
                Ok(c.query_row("SELECT count(*) FROM rollup_meta", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(pending, 0);
    }

    /// Every read and maintenance statement walks an index: none scans a
    /// table or sorts in a temporary B-tree.
    #[test]
    fn queries_use_indexes() {
        let (_dir, store) = open();
        let plan = |sql: &str, n: usize| -> String {
            store
                .read_blocking(|c| {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let args: Vec<SqlValue> = (0..n).map(|_| SqlValue::Integer(1)).collect();
                    let rows: Vec<String> = stmt
                        .query_map(params_from_iter(args), |r| r.get::<_, String>(3))?
                        .collect::<rusqlite::Result<_>>()?;
                    Ok(rows.join("\n"))
                })
                .unwrap()
        };
        let check = |sql: &str, n: usize, index: &str| {
            let p = plan(sql, n);
            assert!(!p.contains("SCAN"), "{sql}\n{p}");
            assert!(!p.contains("TEMP B-TREE"), "{sql}\n{p}");
            assert!(p.contains(index), "{sql}\n{p}");
        };
        for user in [None, Some("u".to_string())] {
            for window in [(None, None), (Some(1), Some(2))] {
                for after in [None, Some((5, "x".to_string()))] {
                    let q = ListQuery {
                        experiment_id: 1,
                        user_id: user.clone(),
                        start_ms: window.0,
                        end_ms: window.1,
                        after: after.clone(),
                        limit: 10,
                    };
                    let (sql, args) = list_sql("sessions", &q);
                    let want = if user.is_some() {
                        "sessions_user"
                    } else {
                        "sessions_recent"
                    };
                    check(&sql, args.len(), want);
                    let (sql, args) = list_sql("users", &q);
                    check(&sql, args.len(), "users_recent");
                }
            }
        }
        check(TURNS_SQL, 5, "traces_session");
        // The refresh probes after an aggregate changes.
        check(
            "SELECT request_time FROM traces WHERE experiment_id = ?1 AND user_id = ?2
             ORDER BY request_time DESC LIMIT 1",
            2,
            "traces_user",
        );
        check(
            "SELECT user_id FROM traces WHERE experiment_id = ?1 AND session_id = ?2
                 AND user_id IS NOT NULL
             ORDER BY request_time, id LIMIT 1",
            2,
            "traces_session",
        );
        check(
            "SELECT id, trace_id FROM traces WHERE experiment_id = ?1 AND session_id = ?2
             ORDER BY request_time, id LIMIT 1",
            2,
            "traces_session",
        );
    }

    /// Not a test: `cargo nextest run --run-ignored only million --no-capture`
    /// prints how the aggregates behave at a million traces (100k sessions,
    /// 20k users, one user with 100k traces).
    #[test]
    #[ignore]
    fn million_traces_bench() {
        use std::time::Instant;
        let (_dir, store) = open();
        let n: i64 = std::env::var("TRACES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let t = Instant::now();
        store
            .write_blocking(move |c| {
                let mut ins = c.prepare(
                    "INSERT INTO traces (trace_id, experiment_id, request_time, state, session_id,
                         user_id, input_tokens, output_tokens, total_tokens, last_update)
                     VALUES (?1, 0, ?2, ?3, ?4, ?5, 10, 5, 15, 0)",
                )?;
                let mut fb = c.prepare(
                    "INSERT INTO assessments (assessment_id, trace, name, kind, value, source_type,
                         create_time, last_update_time)
                     VALUES (?1, ?2, 'user_satisfaction', 'feedback', ?3, 'HUMAN', 0, 0)",
                )?;
                for i in 0..n {
                    let session = i / 10;
                    let user = if i % 10 == 0 { 0 } else { 1 + session % 20_000 };
                    ins.execute(params![
                        format!("tr-{i:032x}"),
                        1_700_000_000_000 + i * 1000,
                        if i % 17 == 0 { "ERROR" } else { "OK" },
                        format!("s-{session}"),
                        format!("u-{user}"),
                    ])?;
                    if i % 3 == 0 {
                        fb.execute(params![
                            format!("a-{i:032x}"),
                            c.last_insert_rowid(),
                            if i % 2 == 0 { "true" } else { "false" }
                        ])?;
                    }
                }
                Ok(())
            })
            .unwrap();
        println!("insert {n} traces: {:?}", t.elapsed());
        let t = Instant::now();
        store.write_blocking(rebuild).unwrap();
        println!("rebuild aggregates: {:?}", t.elapsed());
        let timed = |what: &str, f: &dyn Fn(&Connection) -> Result<usize>| {
            let t = Instant::now();
            let mut items = 0;
            for _ in 0..20 {
                items = store.read_blocking(f).unwrap();
            }
            println!("{what}: {:?} per call ({items} items)", t.elapsed() / 20);
        };
        let q = ListQuery {
            experiment_id: 0,
            limit: 100,
            ..Default::default()
        };
        timed("list sessions, first page", &|c| {
            Ok(list_sessions(c, &q)?.items.len())
        });
        let deep = ListQuery {
            after: Some((1_700_000_000_000 + n * 500, "s-5".into())),
            ..q.clone()
        };
        timed("list sessions, page deep in the middle", &|c| {
            Ok(list_sessions(c, &deep)?.items.len())
        });
        let window = ListQuery {
            start_ms: Some(1_700_000_000_000 + n * 250),
            end_ms: Some(1_700_000_000_000 + n * 260),
            ..q.clone()
        };
        timed("list sessions, time window", &|c| {
            Ok(list_sessions(c, &window)?.items.len())
        });
        let by_user = ListQuery {
            user_id: Some("u-0".into()),
            ..q.clone()
        };
        timed("list sessions of the 100k-trace user", &|c| {
            Ok(list_sessions(c, &by_user)?.items.len())
        });
        timed("list users, first page", &|c| {
            Ok(list_users(c, &q)?.items.len())
        });
        timed("one session with its 10 turns", &|c| {
            Ok(session_turns(c, 0, "s-4242", None, 100)?.turns.len())
        });
        timed("get user u-0", &|c| {
            Ok(get_user(c, 0, "u-0")?.traces as usize)
        });
        // Incremental upkeep: one more turn of a session of the heavy user,
        // then an assessment on it, then deleting it.
        let t = Instant::now();
        let id = store
            .write_blocking(move |c| {
                c.execute(
                    "INSERT INTO traces (trace_id, experiment_id, request_time, state, session_id,
                         user_id, last_update) VALUES ('tr-new', 0, 1, 'OK', 's-4242', 'u-0', 0)",
                    [],
                )?;
                let id = c.last_insert_rowid();
                sync(c, &[id])?;
                Ok(id)
            })
            .unwrap();
        println!("sync one new trace of the heavy user: {:?}", t.elapsed());
        let t = Instant::now();
        store
            .write_blocking(move |c| {
                c.execute(
                    "INSERT INTO assessments (assessment_id, trace, name, kind, value, source_type,
                         create_time, last_update_time)
                     VALUES ('a-new', ?1, 'x', 'feedback', 'true', 'HUMAN', 0, 0)",
                    [id],
                )?;
                sync(c, &[id])
            })
            .unwrap();
        println!("sync after an assessment: {:?}", t.elapsed());
        let t = Instant::now();
        store
            .write_blocking(move |c| crate::store::traces::delete_trace_rows(c, &[id]))
            .unwrap();
        println!("delete it again: {:?}", t.elapsed());
        // Ingestion's share: 1000 new traces (100 new sessions of 10 turns,
        // spread over existing users) synced in one job, as the hook does.
        let t = Instant::now();
        store
            .write_blocking(move |c| {
                let mut ids = Vec::new();
                for i in 0..1000i64 {
                    c.execute(
                        "INSERT INTO traces (trace_id, experiment_id, request_time, state,
                             session_id, user_id, total_tokens, last_update)
                         VALUES (?1, 0, ?2, 'OK', ?3, ?4, 7, 0)",
                        params![
                            format!("tr-batch-{i}"),
                            1_800_000_000_000 + i,
                            format!("new-{}", i / 10),
                            format!("u-{}", i % 500)
                        ],
                    )?;
                    ids.push(c.last_insert_rowid());
                }
                let t = Instant::now();
                sync(c, &ids)?;
                println!("  of which sync: {:?}", t.elapsed());
                Ok(())
            })
            .unwrap();
        println!(
            "insert + sync 1000 new traces in one job: {:?} ({:?} per trace)",
            t.elapsed(),
            t.elapsed() / 1000
        );
        let u = store.read_blocking(|c| get_user(c, 0, "u-0")).unwrap();
        assert_eq!(u.first_time_ms, 1_700_000_000_000);
    }
}
