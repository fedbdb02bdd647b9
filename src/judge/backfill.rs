//! Backfills: run a registered judge over stored traces matching a filter
//! (or re-run it). The traces are selected with the same filter engine as
//! `search_traces`, queued as one batch, and drained by whichever runners
//! share the database; progress is the batch's task counts.
//!
//! Traces the judge already judged are skipped unless `rerun`; evaluations
//! that were shed, cancelled, filtered out online, or failed are queued
//! again (a new result replaces the old error).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{JudgeError, QueueGate};
use crate::query::{QueryEngine, SearchRequest};
use crate::store::{Store, StoreError, judge_queue, scorers};

#[derive(Debug, Clone, Serialize)]
pub struct Started {
    /// Batch id, for progress.
    pub batch: String,
    /// Traces the filter matched (for session judges: their sessions).
    pub matched: i64,
    /// Evaluations queued (the rest were already judged).
    pub queued: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub batch: String,
    pub total: i64,
    /// Pending or running.
    pub open: i64,
    pub by_state: BTreeMap<String, i64>,
}

/// What a backfill covers.
#[derive(Debug, Clone)]
pub struct Request {
    pub experiment_id: i64,
    pub name: String,
    pub filter: Option<String>,
    pub rerun: bool,
    /// At most this many traces (newest first); `None` for all.
    pub limit: Option<usize>,
}

/// Selects the traces and queues the batch.
pub async fn start(
    store: &Store,
    query: &QueryEngine,
    gate: &QueueGate,
    req: Request,
) -> Result<Started, JudgeError> {
    let (exp, name) = (req.experiment_id, req.name.clone());
    let sv = store
        .read(move |c| scorers::get(c, exp, &name, None))
        .await?;
    let session_level = super::spec::parse(&sv.serialized_scorer)
        .map(|s| s.session_level)
        .unwrap_or(false);
    let mut trace_ids: Vec<String> = Vec::new();
    let mut page_token = None;
    loop {
        let page = query
            .search(SearchRequest {
                experiment_ids: vec![req.experiment_id],
                filter: req.filter.clone(),
                order_by: vec!["timestamp_ms DESC".into()],
                max_results: crate::query::MAX_RESULTS_LIMIT,
                page_token: page_token.take(),
                text: None,
            })
            .await?;
        trace_ids.extend(page.traces.into_iter().map(|t| t.trace_id));
        if req.limit.is_some_and(|l| trace_ids.len() >= l) {
            trace_ids.truncate(req.limit.unwrap_or(usize::MAX));
            break;
        }
        match page.next_page_token {
            Some(t) => page_token = Some(t),
            None => break,
        }
    }
    let batch = uuid::Uuid::new_v4().simple().to_string();
    let (scorer_id, b, rerun) = (sv.scorer_id.clone(), batch.clone(), req.rerun);
    let (matched, queued) = store
        .write(move |c| {
            let mut rows = Vec::with_capacity(trace_ids.len());
            for t in &trace_ids {
                match crate::store::traces::trace_rowid(c, t) {
                    Ok(r) => rows.push(r),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let queued = if session_level {
                judge_queue::enqueue_session_backfill(c, &scorer_id, &rows, &b, rerun)?
            } else {
                judge_queue::enqueue_backfill(c, &scorer_id, &rows, &b, rerun)?
            };
            let matched = judge_queue::batch_progress(c, &b)?.values().sum::<i64>();
            Ok((matched, queued))
        })
        .await?;
    gate.add(queued);
    Ok(Started {
        batch,
        matched,
        queued,
    })
}

pub async fn progress(store: &Store, batch: &str) -> Result<Progress, JudgeError> {
    let b = batch.to_string();
    let by_state = store
        .read(move |c| judge_queue::batch_progress(c, &b))
        .await?;
    let open = by_state.get("pending").copied().unwrap_or(0)
        + by_state.get("running").copied().unwrap_or(0);
    Ok(Progress {
        batch: batch.to_string(),
        total: by_state.values().sum(),
        open,
        by_state,
    })
}
