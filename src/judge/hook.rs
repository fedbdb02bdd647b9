//! The ingestion hook that feeds the judge queue. It runs inside the
//! ingestion transaction, so every committed trace has its pending
//! evaluations committed with it.
//!
//! It must stay cheap and must never block or fail ingestion because of
//! judges: one indexed query when no judge is started; otherwise a sampling
//! decision (a hash) per started scorer and one small insert per sampled
//! evaluation. When the queue holds `queue_capacity` open tasks, further
//! evaluations are recorded as `shed` (counted, visible, re-queueable by a
//! backfill) — the trace itself is always stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::Connection;

use super::sampling::{self, Candidate};
use crate::metrics::Metrics;
use crate::store::scorers::ActiveScorer;
use crate::store::{Result, TraceHook, TracesWritten, judge_queue, scorers};

/// The queue's capacity and an estimate of its depth, shared by the hook
/// (which adds) and the runner (which removes and periodically re-reads the
/// true count from SQLite, correcting drift from rolled-back jobs).
#[derive(Debug)]
pub struct QueueGate {
    pub capacity: i64,
    depth: AtomicI64,
}

impl QueueGate {
    pub fn new(capacity: usize) -> QueueGate {
        QueueGate {
            capacity: capacity.min(i64::MAX as usize) as i64,
            depth: AtomicI64::new(0),
        }
    }
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }
    pub fn set_depth(&self, d: i64) {
        self.depth.store(d, Ordering::Relaxed);
    }
    pub fn add(&self, n: i64) {
        self.depth.fetch_add(n, Ordering::Relaxed);
    }
    pub fn room(&self) -> i64 {
        (self.capacity - self.depth()).max(0)
    }
}

/// Groups started scorers by filter (MLflow samples within a filter group).
fn groups(scorers: &[ActiveScorer], session: bool) -> BTreeMap<Option<String>, Vec<&ActiveScorer>> {
    let mut out: BTreeMap<Option<String>, Vec<&ActiveScorer>> = BTreeMap::new();
    for s in scorers.iter().filter(|s| s.session_level == session) {
        let key = s.filter_string.clone().filter(|f| !f.trim().is_empty());
        out.entry(key).or_default().push(s);
    }
    out
}

fn sampled<'a>(entity: &str, group: &[&'a ActiveScorer]) -> Vec<&'a ActiveScorer> {
    let candidates: Vec<Candidate<'_>> = group
        .iter()
        .map(|s| Candidate {
            name: &s.name,
            sample_rate: s.sample_rate,
        })
        .collect();
    sampling::sample(entity, &candidates)
        .into_iter()
        .map(|i| group[i])
        .collect()
}

/// Enqueues the evaluations that `w` calls for.
pub fn on_written(
    conn: &Connection,
    w: &TracesWritten,
    gate: &QueueGate,
    metrics: &Metrics,
) -> Result<()> {
    if w.touched.is_empty() || !scorers::any_active(conn)? {
        return Ok(());
    }
    let traces = judge_queue::touched_traces(conn, &w.touched)?;
    let mut active: HashMap<i64, Vec<ActiveScorer>> = HashMap::new();
    let mut trace_tasks = Vec::new();
    let mut session_tasks = Vec::new();
    for t in &traces {
        let scorers = match active.entry(t.experiment_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(scorers::active_in(conn, t.experiment_id)?)
            }
        };
        if scorers.is_empty() {
            continue;
        }
        for group in groups(scorers, false).values() {
            for s in sampled(&t.trace_id, group) {
                trace_tasks.push((t.row, s.scorer_id.clone()));
            }
        }
        if let Some(session) = &t.session_id {
            for group in groups(scorers, true).values() {
                for s in sampled(session, group) {
                    session_tasks.push((t.experiment_id, session.clone(), s.scorer_id.clone()));
                }
            }
        }
    }
    if trace_tasks.is_empty() && session_tasks.is_empty() {
        return Ok(());
    }
    let mut room = gate.room();
    let a = judge_queue::enqueue_trace_tasks(conn, &trace_tasks, &mut room)?;
    let b = judge_queue::touch_session_tasks(conn, &session_tasks, &mut room)?;
    gate.add(a.queued + b.queued);
    let shed = a.shed + b.shed;
    if shed > 0 {
        metrics.judge_shed.inc_by(shed as u64);
        tracing::warn!(
            shed,
            capacity = gate.capacity,
            "judge queue full: evaluations shed"
        );
    }
    metrics.judge_queue_depth.set(gate.depth());
    Ok(())
}

/// The hook to register with `Store::on_traces_written`. A failure here
/// is logged, not returned: judges must never make ingestion fail.
pub fn hook(gate: Arc<QueueGate>, metrics: Arc<Metrics>) -> TraceHook {
    Arc::new(move |conn, w| {
        if let Err(e) = on_written(conn, w, &gate, &metrics) {
            tracing::error!(error = %e, "could not queue judge evaluations; the traces are stored");
        }
        Ok(())
    })
}
