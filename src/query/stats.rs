//! Activity series for the dashboard: hourly rollups when the view is
//! unfiltered (fast at any size), direct aggregation over the traces a
//! filter or full-text query selects otherwise — the same filter string
//! and `text` the trace list takes, planned by the same code
//! (`plan::build_where`), so the numbers describe the same traces.

use super::{QueryEngine, QueryError, parse_filter, plan, resolve};
use crate::index::TextQuery;
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

fn non_blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|f| !f.is_empty())
}

impl QueryEngine {
    /// Volume, errors, latency and tokens per bucket over a time range.
    pub async fn series(&self, req: StatsRequest) -> Result<Series, QueryError> {
        if req.to_ms <= req.from_ms || req.bucket_ms <= 0 {
            return Err(QueryError::Invalid(
                "the time range is empty or the bucket size is not positive".into(),
            ));
        }
        let filter = match non_blank(&req.filter) {
            Some(f) => parse_filter(f)?.map(|e| resolve(&e)).transpose()?,
            None => None,
        };
        let text = match non_blank(&req.text) {
            Some(t) => Some(TextQuery::parse_user(t).map_err(QueryError::Invalid)?),
            None => None,
        };
        if filter.is_none() && text.is_none() && req.bucket_ms % HOUR_MS == 0 {
            return Ok(self
                .store
                .rollup_series(req.experiment_id, req.from_ms, req.to_ms, req.bucket_ms)
                .await?);
        }
        let needs_index = text.is_some() || filter.as_ref().is_some_and(super::uses_index);
        if needs_index && self.index.is_none() {
            return Err(QueryError::Index(
                "full-text search is not available in this process".into(),
            ));
        }
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
                    plan::build_where(&env, filter.as_ref(), text.as_ref()).and_then(
                        |(cond, params)| {
                            crate::store::stats::filtered_series(
                                c,
                                &cond,
                                &params,
                                req.from_ms,
                                req.to_ms,
                                req.bucket_ms,
                            )
                            .map_err(QueryError::from)
                        },
                    ),
                )
            })
            .await?
    }
}
