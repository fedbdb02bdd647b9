//! Activity series for the dashboard: hourly rollups when the view is
//! unfiltered (fast at any size), direct aggregation over the traces a
//! filter or full-text query selects otherwise — the same filter string
//! and `text` the trace list takes, planned by the same code
//! (`plan::build_where`), so the numbers describe the same traces. Judge
//! pass rates follow the same split (`store::judge_stats`).

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use super::resolve::Cond;
use super::{QueryEngine, QueryError, parse_filter, plan, resolve};
use crate::index::TextQuery;
use crate::store::judge_stats::JudgeSeries;
use crate::store::stats::{HOUR_MS, Series};

/// One series request.
#[derive(Debug, Clone)]
pub struct StatsRequest {
    pub experiment_id: i64,
    pub filter: Option<String>,
    /// Full-text query, as `SearchRequest::text`.
    pub text: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
}

/// Buckets one series may have.
const MAX_BUCKETS: i64 = 10_000;

fn non_blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|f| !f.is_empty())
}

/// The traces a series request selects: its filter and full-text query,
/// parsed and checked, or neither for the whole experiment.
struct Selection {
    filter: Option<Cond>,
    text: Option<TextQuery>,
}

impl Selection {
    fn of(req: &StatsRequest) -> Result<Selection, QueryError> {
        if req.to_ms <= req.from_ms || req.bucket_ms <= 0 {
            return Err(QueryError::Invalid(
                "the time range is empty or the bucket size is not positive".into(),
            ));
        }
        if (req.to_ms - req.from_ms) / req.bucket_ms > MAX_BUCKETS {
            return Err(QueryError::Invalid(format!(
                "a series needs at most {MAX_BUCKETS} buckets"
            )));
        }
        let filter = match non_blank(&req.filter) {
            Some(f) => parse_filter(f)?.map(|e| resolve(&e)).transpose()?,
            None => None,
        };
        let text = match non_blank(&req.text) {
            Some(t) => Some(TextQuery::parse_user(t).map_err(QueryError::Invalid)?),
            None => None,
        };
        Ok(Selection { filter, text })
    }

    fn is_all(&self) -> bool {
        self.filter.is_none() && self.text.is_none()
    }

    /// Whether hourly rollups can answer `req` over this selection.
    fn rollups_answer(&self, req: &StatsRequest) -> bool {
        self.is_all() && req.bucket_ms % HOUR_MS == 0
    }
}

impl QueryEngine {
    /// Volume, errors, latency and tokens per bucket over a time range.
    pub async fn series(&self, req: StatsRequest) -> Result<Series, QueryError> {
        let sel = Selection::of(&req)?;
        if sel.rollups_answer(&req) {
            return Ok(self
                .store
                .rollup_series(req.experiment_id, req.from_ms, req.to_ms, req.bucket_ms)
                .await?);
        }
        self.aggregate(req, sel, |c, cond, params, req| {
            crate::store::stats::filtered_series(
                c,
                cond,
                params,
                req.from_ms,
                req.to_ms,
                req.bucket_ms,
            )
        })
        .await
    }

    /// Judge pass rates per bucket over a time range: rollups when the view
    /// is unfiltered, the evaluations of the selected traces otherwise.
    pub async fn judge_series(&self, req: StatsRequest) -> Result<JudgeSeries, QueryError> {
        let sel = Selection::of(&req)?;
        if sel.rollups_answer(&req) {
            return Ok(self
                .store
                .judge_rollup_series(req.experiment_id, req.from_ms, req.to_ms, req.bucket_ms)
                .await?);
        }
        let unfiltered = sel.is_all();
        self.aggregate(req, sel, move |c, cond, params, req| {
            crate::store::judge_stats::filtered_series(
                c,
                req.experiment_id,
                cond,
                params,
                req.from_ms,
                req.to_ms,
                req.bucket_ms,
                unfiltered,
            )
        })
        .await
    }

    /// Runs `f` over the traces `sel` selects, given as a SQL condition on
    /// `traces t` planned like the trace list's.
    async fn aggregate<T, F>(
        &self,
        req: StatsRequest,
        sel: Selection,
        f: F,
    ) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str, &[SqlValue], &StatsRequest) -> crate::store::Result<T>
            + Send
            + 'static,
    {
        self.check_index(sel.filter.as_ref(), sel.text.as_ref())?;
        let index = self.index.clone();
        self.store
            .read(move |c| {
                let env = plan::Env {
                    conn: c,
                    index: index.as_ref(),
                    scope: plan::Scope::Experiments(vec![req.experiment_id]),
                    high_water: i64::MAX,
                    fetch: 0,
                };
                Ok(
                    plan::build_where(&env, sel.filter.as_ref(), sel.text.as_ref()).and_then(
                        |(cond, params)| f(c, &cond, &params, &req).map_err(QueryError::from),
                    ),
                )
            })
            .await?
    }
}
