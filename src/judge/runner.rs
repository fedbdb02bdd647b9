//! The judge runner: a tokio task that claims ready evaluations from the
//! SQLite queue, runs them (bounded by `max_in_flight` overall and by each
//! endpoint's own limit), and records results and task outcomes in one
//! transaction.
//!
//! Claims are leases renewed while the work runs; a process that dies
//! leaves leases that expire, and any runner then takes the tasks again, so
//! a crash or restart loses no evaluation (at worst one is computed twice
//! and recorded once). On shutdown the runner hands its claims back.
//! Several runners (the server and a `tracebox judges backfill` process)
//! can share a database.
//!
//! Knows scheduling; judging is `evaluate`'s, SQL is `store::judge_queue`'s.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::evaluate::{self, Evaluation, Paused};
use super::hook::QueueGate;
use super::model::Models;
use super::spec;
use crate::domain::{ScorerVersion, now_ms};
use crate::metrics::{JudgeLabel, Metrics};
use crate::query::QueryEngine;
use crate::store::judge_queue::{self, Outcome, Readiness, SessionTask, TraceTask};
use crate::store::{Store, StoreError, scorers};

/// Timing and limits of a runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub settle_ms: i64,
    /// Judge traces that never complete after this long without writes.
    pub grace_ms: i64,
    pub session_idle_ms: i64,
    pub lease_ms: i64,
    pub max_in_flight: usize,
    /// Only tasks of this backfill batch (the CLI's own runner).
    pub batch: Option<String>,
    /// How often to look for ready work when nothing wakes the runner.
    pub poll: Duration,
}

impl RunnerConfig {
    pub fn from_settings(s: &crate::config::JudgeSettings) -> RunnerConfig {
        let settle_ms = (s.trace_settle_secs.max(0.0) * 1000.0) as i64;
        RunnerConfig {
            settle_ms,
            // Spans announced but missing (a client that dropped them):
            // judge what arrived after this much silence.
            grace_ms: settle_ms.max((s.incomplete_trace_secs.max(0.0) * 1000.0) as i64),
            session_idle_ms: (s.session_idle_secs.max(0.0) * 1000.0) as i64,
            lease_ms: (s.lease_secs.max(1.0) * 1000.0) as i64,
            max_in_flight: s.max_in_flight.max(1),
            batch: None,
            poll: Duration::from_millis(250),
        }
    }
}

/// Everything an evaluation task needs; cheap to clone.
#[derive(Clone)]
pub struct Runner {
    pub store: Store,
    pub query: QueryEngine,
    pub models: Arc<Models>,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<QueueGate>,
    pub cfg: RunnerConfig,
}

enum Finished {
    Trace(i64),
    Session(i64),
}

fn label(sv: &ScorerVersion) -> JudgeLabel {
    JudgeLabel {
        judge: format!("{}/{}", sv.experiment_id, sv.name),
    }
}

impl Runner {
    /// Re-reads the true queue depth (the gate's count can drift when an
    /// ingestion job that queued tasks was rolled back).
    pub async fn sync_depth(&self) {
        if let Ok(d) = self.store.poll_read(judge_queue::open_count).await {
            self.gate.set_depth(d);
            self.metrics.judge_queue_depth.set(d);
        }
    }

    /// Runs until `shutdown` turns true (or, for a batch runner, until its
    /// batch has no open task left).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut inflight: JoinSet<Finished> = JoinSet::new();
        let mut running_traces: HashSet<i64> = HashSet::new();
        let mut running_sessions: HashSet<i64> = HashSet::new();
        let mut commits = self.store.commits();
        let housekeeping_every = Duration::from_millis((self.cfg.lease_ms / 3).max(200) as u64);
        let mut last_housekeeping = Instant::now() - housekeeping_every;
        self.sync_depth().await;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if last_housekeeping.elapsed() >= housekeeping_every {
                last_housekeeping = Instant::now();
                self.housekeeping(&running_traces, &running_sessions).await;
            }
            let free = self.cfg.max_in_flight.saturating_sub(inflight.len());
            if free > 0 {
                for t in self.claim_traces(free).await {
                    running_traces.insert(t.id);
                    let me = self.clone();
                    inflight.spawn(async move {
                        let id = t.id;
                        me.run_trace_task(t).await;
                        Finished::Trace(id)
                    });
                }
            }
            let free = self.cfg.max_in_flight.saturating_sub(inflight.len());
            if free > 0 {
                for t in self.claim_sessions(free).await {
                    running_sessions.insert(t.id);
                    let me = self.clone();
                    inflight.spawn(async move {
                        let id = t.id;
                        me.run_session_task(t).await;
                        Finished::Session(id)
                    });
                }
            }
            if let Some(batch) = &self.cfg.batch
                && inflight.is_empty()
            {
                let b = batch.clone();
                let open = self
                    .store
                    .read(move |c| judge_queue::batch_progress(c, &b))
                    .await
                    .map(|p| {
                        p.get("pending").copied().unwrap_or(0)
                            + p.get("running").copied().unwrap_or(0)
                    })
                    .unwrap_or(1);
                if open == 0 {
                    break;
                }
            }
            let started = Instant::now();
            tokio::select! {
                _ = shutdown.changed() => {}
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Ok(f) = done {
                        match f {
                            Finished::Trace(id) => running_traces.remove(&id),
                            Finished::Session(id) => running_sessions.remove(&id),
                        };
                    }
                }
                _ = commits.changed() => {}
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
            // Commits arrive constantly under load; look for work at most
            // every few hundred milliseconds.
            let min_gap = Duration::from_millis(100);
            if started.elapsed() < min_gap {
                tokio::time::sleep(min_gap - started.elapsed()).await;
            }
        }
        // Hand unfinished work back so another runner (or the next start)
        // takes it without waiting for the leases to expire.
        inflight.abort_all();
        while let Some(done) = inflight.join_next().await {
            if let Ok(f) = done {
                match f {
                    Finished::Trace(id) => running_traces.remove(&id),
                    Finished::Session(id) => running_sessions.remove(&id),
                };
            }
        }
        let (t, s): (Vec<i64>, Vec<i64>) = (
            running_traces.into_iter().collect(),
            running_sessions.into_iter().collect(),
        );
        if !t.is_empty() || !s.is_empty() {
            let _ = self
                .store
                .write(move |c| {
                    for &id in &t {
                        judge_queue::release_trace_task(c, id, 0)?;
                    }
                    for &id in &s {
                        judge_queue::release_session_task(c, id, 0)?;
                    }
                    Ok(())
                })
                .await;
        }
        tracing::debug!("judge runner stopped");
    }

    async fn housekeeping(&self, traces: &HashSet<i64>, sessions: &HashSet<i64>) {
        let now = now_ms();
        let until = now + self.cfg.lease_ms;
        let t: Vec<i64> = traces.iter().copied().collect();
        let s: Vec<i64> = sessions.iter().copied().collect();
        let res = self
            .store
            .write(move |c| {
                judge_queue::renew_leases(c, &t, &s, until)?;
                judge_queue::reclaim_expired(c, now)
            })
            .await;
        match res {
            Ok(n) if n > 0 => {
                tracing::info!(tasks = n, "took back judge tasks whose runner stopped")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "judge queue housekeeping failed"),
        }
        self.sync_depth().await;
    }

    async fn claim_traces(&self, n: usize) -> Vec<TraceTask> {
        let r = Readiness {
            now_ms: now_ms(),
            settle_ms: self.cfg.settle_ms,
            grace_ms: self.cfg.grace_ms,
        };
        let batch = self.cfg.batch.clone();
        let ids = match self
            .store
            .poll_read(move |c| judge_queue::ready_trace_tasks(c, r, batch.as_deref(), n))
            .await
        {
            Ok(ids) if !ids.is_empty() => ids,
            Ok(_) => return vec![],
            Err(e) => {
                tracing::warn!(error = %e, "reading the judge queue failed");
                return vec![];
            }
        };
        let until = now_ms() + self.cfg.lease_ms;
        self.store
            .write(move |c| judge_queue::claim_trace_tasks(c, &ids, until))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "claiming judge tasks failed");
                vec![]
            })
    }

    async fn claim_sessions(&self, n: usize) -> Vec<SessionTask> {
        let now = now_ms();
        let idle = self.cfg.session_idle_ms;
        let batch = self.cfg.batch.clone();
        let ids = match self
            .store
            .poll_read(move |c| judge_queue::ready_session_tasks(c, now, idle, batch.as_deref(), n))
            .await
        {
            Ok(ids) if !ids.is_empty() => ids,
            _ => return vec![],
        };
        let until = now_ms() + self.cfg.lease_ms;
        self.store
            .write(move |c| judge_queue::claim_session_tasks(c, &ids, until))
            .await
            .unwrap_or_default()
    }

    /// The latest version of a scorer and whether it is still started.
    async fn scorer(
        &self,
        scorer_id: &str,
    ) -> Result<Option<(ScorerVersion, Option<crate::domain::OnlineConfig>)>, StoreError> {
        let id = scorer_id.to_string();
        self.store
            .read(move |c| {
                let Some(sv) = scorers::latest_by_id(c, &id)? else {
                    return Ok(None);
                };
                let cfg = scorers::configs_for(c, std::slice::from_ref(&id))?
                    .into_iter()
                    .next();
                Ok(Some((sv, cfg)))
            })
            .await
    }

    fn record(&self, sv: &ScorerVersion, outcome: &Outcome) {
        let l = label(sv);
        match outcome {
            Outcome::Done { verdict } => {
                self.metrics.judge_evaluated.get_or_create(&l).inc();
                if *verdict == Some(true) {
                    self.metrics.judge_passed.get_or_create(&l).inc();
                }
            }
            Outcome::Failed { .. } => {
                self.metrics.judge_evaluated.get_or_create(&l).inc();
                self.metrics.judge_failed.get_or_create(&l).inc();
            }
            Outcome::Filtered | Outcome::Cancelled => {}
        }
        self.gate.add(-1);
        self.metrics.judge_queue_depth.set(self.gate.depth());
    }

    fn outcome_of(ev: &Evaluation) -> Outcome {
        match &ev.error {
            Some(e) => Outcome::Failed { error: e.clone() },
            None => Outcome::Done {
                verdict: ev.verdict,
            },
        }
    }

    /// Finishes a trace task without results (filtered, cancelled, ...).
    async fn close_trace(&self, id: i64, outcome: Outcome) {
        let o = outcome.clone();
        if let Err(e) = self
            .store
            .write(move |c| judge_queue::finish_trace_task(c, id, &o))
            .await
        {
            tracing::warn!(error = %e, task = id, "could not finish judge task");
        }
    }

    async fn run_trace_task(&self, t: TraceTask) {
        let (sv, cfg) = match self.scorer(&t.scorer_id).await {
            Ok(Some(x)) => x,
            Ok(None) => return, // scorer deleted: its tasks went with it
            Err(e) => {
                tracing::warn!(error = %e, "loading scorer failed");
                return self.release_trace(t.id, now_ms() + 5000).await;
            }
        };
        if !t.backfill {
            let started = cfg.as_ref().is_some_and(|c| c.sample_rate > 0.0);
            if !started {
                self.record(&sv, &Outcome::Cancelled);
                return self.close_trace(t.id, Outcome::Cancelled).await;
            }
            if let Some(f) = cfg
                .as_ref()
                .and_then(|c| c.filter_string.clone())
                .filter(|f| !f.trim().is_empty())
            {
                match self.query.matches(t.trace, &f).await {
                    Ok(true) => {}
                    Ok(false) if let Some(quiet_ms) = self.info_may_come(t.trace).await => {
                        // Tags and metadata arrive with the trace info, which
                        // the MLflow SDK may send after the spans: look again
                        // (backing off as the trace stays quiet) rather than
                        // dropping the trace.
                        let again = now_ms() + self.cfg.settle_ms.max(500).max(quiet_ms);
                        return self.release_trace(t.id, again).await;
                    }
                    Ok(false) => {
                        self.record(&sv, &Outcome::Filtered);
                        return self.close_trace(t.id, Outcome::Filtered).await;
                    }
                    Err(e) => {
                        let o = Outcome::Failed {
                            error: format!("the filter '{f}' could not be evaluated: {e}"),
                        };
                        self.record(&sv, &o);
                        return self.close_trace(t.id, o).await;
                    }
                }
            }
        }
        let row = t.trace;
        let detail = match self
            .store
            .read(move |c| judge_queue::load_trace(c, row))
            .await
        {
            Ok(Some(d)) => d,
            Ok(None) => return, // trace deleted: its tasks went with it
            Err(e) => {
                tracing::warn!(error = %e, "loading trace failed");
                return self.release_trace(t.id, now_ms() + 5000).await;
            }
        };
        // Evaluation runs (mlflow.genai.evaluate) are not production
        // traffic; MLflow's online scoring skips them too.
        if !t.backfill && detail.info.metadata.contains_key("mlflow.sourceRun") {
            self.record(&sv, &Outcome::Filtered);
            return self.close_trace(t.id, Outcome::Filtered).await;
        }
        let spec = match spec::parse(&sv.serialized_scorer) {
            Ok(s) => s,
            Err(e) => {
                let o = Outcome::Failed {
                    error: e.to_string(),
                };
                self.record(&sv, &o);
                return self.close_trace(t.id, o).await;
            }
        };
        // Expectations logged with the trace arrive with its info: wait for
        // it (up to the grace time) before judging against expectations.
        if spec.needs_expectations()
            && !detail
                .info
                .metadata
                .contains_key(crate::domain::metadata_keys::INFO_FINALIZED)
            && let Some(quiet_ms) = self.info_may_come(row).await
        {
            let again = now_ms() + self.cfg.settle_ms.max(500).max(quiet_ms);
            return self.release_trace(t.id, again).await;
        }
        match evaluate::evaluate_trace(&self.models, &sv, &spec, &detail).await {
            Err(Paused { until_ms, reason }) => {
                tracing::debug!(%reason, "judge endpoint paused; evaluation re-queued");
                self.release_trace(t.id, until_ms).await
            }
            Ok(ev) => {
                let outcome = Self::outcome_of(&ev);
                let id = t.id;
                let scorer_id = sv.scorer_id.clone();
                let o = outcome.clone();
                let res = self
                    .store
                    .write(move |c| {
                        if !judge_queue::finish_trace_task(c, id, &o)? {
                            return Ok(false);
                        }
                        judge_queue::delete_judge_results(c, row, &scorer_id, None)?;
                        for a in ev.assessments.iter().cloned() {
                            crate::store::assessments::insert(c, row, a)?;
                        }
                        Ok(true)
                    })
                    .await;
                match res {
                    Ok(true) => self.record(&sv, &outcome),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "storing judge results failed; will retry");
                        self.release_trace(id, now_ms() + 5000).await
                    }
                }
            }
        }
    }

    /// While a trace without client-sent info is recent enough that its
    /// info (with the tags a filter may need) could still arrive: how long
    /// it has been quiet (ms).
    async fn info_may_come(&self, row: i64) -> Option<i64> {
        let grace = self.cfg.grace_ms;
        match self
            .store
            .read(move |c| judge_queue::trace_write_state(c, row))
            .await
        {
            Ok(Some((false, last_update))) if last_update > now_ms() - grace => {
                Some(now_ms() - last_update)
            }
            _ => None,
        }
    }

    async fn release_trace(&self, id: i64, not_before: i64) {
        let _ = self
            .store
            .write(move |c| judge_queue::release_trace_task(c, id, not_before))
            .await;
    }

    async fn release_session(&self, id: i64, not_before: i64) {
        let _ = self
            .store
            .write(move |c| judge_queue::release_session_task(c, id, not_before))
            .await;
    }

    async fn close_session(&self, id: i64, outcome: Outcome) {
        let o = outcome.clone();
        let _ = self
            .store
            .write(move |c| judge_queue::finish_session_task(c, id, &o))
            .await;
    }

    async fn run_session_task(&self, t: SessionTask) {
        let (sv, cfg) = match self.scorer(&t.scorer_id).await {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(_) => return self.release_session(t.id, now_ms() + 5000).await,
        };
        if !t.backfill && !cfg.as_ref().is_some_and(|c| c.sample_rate > 0.0) {
            self.record(&sv, &Outcome::Cancelled);
            return self.close_session(t.id, Outcome::Cancelled).await;
        }
        let (exp, sid) = (t.experiment_id, t.session_id.clone());
        let rows = match self
            .store
            .read(move |c| judge_queue::session_trace_rows(c, exp, &sid))
            .await
        {
            Ok(r) => r,
            Err(_) => return self.release_session(t.id, now_ms() + 5000).await,
        };
        let Some(&first) = rows.first() else {
            self.record(&sv, &Outcome::Filtered);
            return self.close_session(t.id, Outcome::Filtered).await;
        };
        // MLflow evaluates a session scorer's filter on the session's first trace.
        if !t.backfill
            && let Some(f) = cfg
                .as_ref()
                .and_then(|c| c.filter_string.clone())
                .filter(|f| !f.trim().is_empty())
            && !self.query.matches(first, &f).await.unwrap_or(false)
        {
            self.record(&sv, &Outcome::Filtered);
            return self.close_session(t.id, Outcome::Filtered).await;
        }
        // A conversation longer than this is judged on its latest turns.
        const MAX_TURNS: usize = 500;
        let mut load: Vec<i64> = rows.iter().rev().take(MAX_TURNS).copied().collect();
        load.reverse();
        if load.first() != Some(&first) {
            load.insert(0, first);
        }
        let traces = match self
            .store
            .read(move |c| {
                let mut out = Vec::new();
                for r in load {
                    if let Some(d) = judge_queue::load_trace(c, r)? {
                        out.push(d);
                    }
                }
                Ok(out)
            })
            .await
        {
            Ok(t) => t,
            Err(_) => return self.release_session(t.id, now_ms() + 5000).await,
        };
        let spec = match spec::parse(&sv.serialized_scorer) {
            Ok(s) => s,
            Err(e) => {
                let o = Outcome::Failed {
                    error: e.to_string(),
                };
                self.record(&sv, &o);
                return self.close_session(t.id, o).await;
            }
        };
        match evaluate::evaluate_session(&self.models, &sv, &spec, &t.session_id, &traces).await {
            Err(Paused { until_ms, .. }) => self.release_session(t.id, until_ms).await,
            Ok(ev) => {
                let outcome = Self::outcome_of(&ev);
                let (id, scorer_id, session) = (t.id, sv.scorer_id.clone(), t.session_id.clone());
                let exp = t.experiment_id;
                let o = outcome.clone();
                let res = self
                    .store
                    .write(move |c| {
                        if !judge_queue::finish_session_task(c, id, &o)? {
                            return Ok(false);
                        }
                        judge_queue::delete_session_judge_results(c, exp, &session, &scorer_id)?;
                        for a in ev.assessments.iter().cloned() {
                            // On the session's first trace, with metadata
                            // mlflow.trace.session: MLflow's representation,
                            // which the session views read.
                            crate::store::sessions::insert_session_assessment(
                                c, exp, &session, a, false,
                            )?;
                        }
                        Ok(true)
                    })
                    .await;
                match res {
                    Ok(true) => self.record(&sv, &outcome),
                    Ok(false) => {}
                    Err(_) => self.release_session(id, now_ms() + 5000).await,
                }
            }
        }
    }
}

/// A running runner; stop it with [`RunnerHandle::stop`].
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunnerHandle {
    pub fn spawn(runner: Runner) -> RunnerHandle {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(runner.run(rx));
        RunnerHandle { stop, task }
    }

    /// Asks the runner to stop and waits (bounded) for it to hand back its work.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("judge runner did not stop within 10 s");
        }
    }

    /// Waits for a batch runner to finish its batch.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}
