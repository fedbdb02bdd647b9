//! What the judges are doing: per judge its state (running, stopped,
//! misconfigured, unsupported), queue, evaluated/failed/shed counts and
//! pass rate; the queue as a whole; each model endpoint's circuit. Served
//! as JSON by `GET /api/tracebox/v1/judges` and printed by
//! `tracebox judges list`.
//!
//! Counts come from the task rows in SQLite, so they survive restarts and
//! agree between the server and the CLI.

use serde::Serialize;

use super::model::{EndpointStatus, Models};
use super::registry;
use super::spec::{self, Kind};
use crate::store::{Result, Store, judge_queue, scorers};

#[derive(Debug, Clone, Serialize)]
pub struct JudgeStatus {
    pub experiment_id: String,
    pub name: String,
    pub scorer_id: String,
    pub version: i64,
    /// Builtin class name, `make_judge`, `PIIDetection` or `unsupported`.
    pub kind: String,
    /// `trace` or `session`.
    pub level: &'static str,
    pub model: Option<String>,
    pub started: bool,
    pub sample_rate: f64,
    pub filter_string: Option<String>,
    /// `running`, `stopped`, `misconfigured` (e.g. a gateway endpoint
    /// missing from tracebox.toml) or `unsupported` (e.g. `@scorer` code).
    pub state: &'static str,
    /// Why it is misconfigured or unsupported.
    pub problem: Option<String>,
    pub pending: i64,
    pub running: i64,
    /// Evaluations that finished (with a result or an error).
    pub evaluated: i64,
    pub failed: i64,
    pub passed: i64,
    /// Evaluations with a pass/fail verdict.
    pub verdicts: i64,
    /// passed / verdicts.
    pub pass_rate: Option<f64>,
    /// Sampled, but the filter did not match.
    pub filtered: i64,
    /// Dropped because the queue was full.
    pub shed: i64,
    pub cancelled: i64,
    pub last_error: Option<String>,
    pub last_evaluated_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    /// Pending plus running evaluations.
    pub depth: i64,
    pub capacity: i64,
    pub shed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub judges: Vec<JudgeStatus>,
    pub queue: QueueStatus,
    pub endpoints: Vec<EndpointStatus>,
}

/// Collects the status of every judge (of one experiment, if given).
pub async fn collect(
    store: &Store,
    models: &Models,
    capacity: i64,
    experiment_id: Option<i64>,
) -> Result<Status> {
    let (versions, configs, counts, depth) = store
        .read(move |c| {
            let ids = experiment_id.map(|e| vec![e]);
            let versions = scorers::list_latest(c, ids.as_deref())?;
            let configs = scorers::all_configs(c, experiment_id)?;
            let counts = judge_queue::scorer_counts(c)?;
            let depth = judge_queue::open_count(c)?;
            Ok((versions, configs, counts, depth))
        })
        .await?;
    let mut judges = Vec::new();
    let mut shed_total = 0;
    for sv in versions {
        let cfg = configs.iter().find(|c| c.scorer_id == sv.scorer_id);
        let counts = counts.get(&sv.scorer_id).cloned().unwrap_or_default();
        shed_total += counts.shed;
        let parsed = spec::parse(&sv.serialized_scorer).ok();
        let sample_rate = cfg.map(|c| c.sample_rate).unwrap_or(0.0);
        let started = sample_rate > 0.0;
        let (kind, level, model) = match &parsed {
            Some(s) => (
                s.kind_label(),
                if s.session_level { "session" } else { "trace" },
                s.model.clone(),
            ),
            None => ("unsupported".to_string(), "trace", None),
        };
        let problem = match &parsed {
            None => Some("the serialized scorer is not valid JSON".to_string()),
            Some(s) => match &s.kind {
                Kind::Unsupported { reason } => Some(reason.clone()),
                _ if s.needs_model() => models.resolve(s.model.as_deref()).err(),
                _ => None,
            }
            .or_else(|| registry::cannot_start(&sv.name, &sv.serialized_scorer)),
        };
        let state = match (&parsed, &problem) {
            (Some(s), Some(_)) if !matches!(s.kind, Kind::Unsupported { .. }) => "misconfigured",
            (_, Some(_)) => "unsupported",
            _ if started => "running",
            _ => "stopped",
        };
        let evaluated = counts.done + counts.failed;
        judges.push(JudgeStatus {
            experiment_id: sv.experiment_id.to_string(),
            name: sv.name.clone(),
            scorer_id: sv.scorer_id.clone(),
            version: sv.version,
            kind,
            level,
            model,
            started,
            sample_rate,
            filter_string: cfg.and_then(|c| c.filter_string.clone()),
            state,
            problem,
            pending: counts.pending,
            running: counts.running,
            evaluated,
            failed: counts.failed,
            passed: counts.passed,
            verdicts: counts.verdicts,
            pass_rate: (counts.verdicts > 0).then(|| counts.passed as f64 / counts.verdicts as f64),
            filtered: counts.filtered,
            shed: counts.shed,
            cancelled: counts.cancelled,
            last_error: counts.last_error.clone(),
            last_evaluated_ms: counts.last_finished_at,
        });
    }
    Ok(Status {
        judges,
        queue: QueueStatus {
            depth,
            capacity,
            shed: shed_total,
        },
        endpoints: models.status(),
    })
}
