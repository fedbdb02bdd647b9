//! Activity series for the dashboard: hourly rollups when the view is
//! unfiltered (fast at any size), direct aggregation over the traces a
//! filter selects otherwise — the same filter string the trace list takes,
//! planned by the same code, so the numbers describe the same traces.

use super::{QueryEngine, QueryError, parse_filter, plan};
use crate::store::stats::{HOUR_MS, Series};

/// One series request.
#[derive(Debug, Clone)]
pub struct StatsRequest {
    pub experiment_id: i64,
    pub filter: Option<String>,
    pub text: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
}

impl StatsRequest {
    fn filtered(&self) -> bool {
        let set = |s: &Option<String>| s.as_deref().is_some_and(|f| !f.trim().is_empty());
        set(&self.filter) || set(&self.text)
    }
}

impl QueryEngine {
    /// Volume, errors, latency and tokens per bucket over a time range.
    pub async fn series(&self, req: StatsRequest) -> Result<Series, QueryError> {
        if req.to_ms <= req.from_ms || req.bucket_ms <= 0 {
            return Err(QueryError::Invalid(
                "the time range is empty or the bucket size is not positive".into(),
            ));
        }
        if !req.filtered() && req.bucket_ms % HOUR_MS == 0 {
            return Ok(self
                .store
                .rollup_series(req.experiment_id, req.from_ms, req.to_ms, req.bucket_ms)
                .await?);
        }
        let expr = match req.filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => Some(parse_filter(f)?),
            _ => None,
        };
        let (cond, params) =
            plan::build_where(&[req.experiment_id], expr.as_ref(), req.text.as_deref())?;
        Ok(self
            .store
            .filtered_series(cond, params, req.from_ms, req.to_ms, req.bucket_ms)
            .await?)
    }
}
