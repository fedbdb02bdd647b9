//! Trace search: MLflow's filter grammar, `order_by`, keyset pagination.
//!
//! The parser turns a filter string into an [`ast::Expr`]; the planner turns
//! that into one SQL statement over the store's schema. Shared by the MLflow
//! API, the web UI and the judge runner (sampling filters), so all three
//! agree on what a filter means.
//!
//! This module knows the store's schema (it writes SQL) but not HTTP.

pub mod ast;
mod parse;
mod plan;
pub mod stats;
mod token;

use crate::domain::TraceInfo;
use crate::store::{Store, StoreError};

pub use ast::Expr;
pub use parse::parse_filter;
pub use plan::OrderKey;

/// MLflow's default and maximum page sizes for trace search.
pub const DEFAULT_MAX_RESULTS: usize = 100;
pub const MAX_RESULTS_LIMIT: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The filter string does not parse; `position` is a character offset.
    #[error("Invalid filter '{filter}': {message} (at character {position}, near '{token}')")]
    Parse {
        filter: String,
        message: String,
        position: usize,
        token: String,
    },
    /// It parses but asks for something MLflow does not allow.
    #[error("{0}")]
    Invalid(String),
    #[error("Invalid page_token: {0}")]
    PageToken(String),
    #[error("full-text index: {0}")]
    Index(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One search, as the MLflow API and the UI ask for it.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub experiment_ids: Vec<i64>,
    pub filter: Option<String>,
    pub order_by: Vec<String>,
    pub max_results: usize,
    pub page_token: Option<String>,
    /// Free text to find in traces (the UI's search box).
    pub text: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub traces: Vec<TraceInfo>,
    pub next_page_token: Option<String>,
}

/// SQL LIKE semantics as MLflow applies them: `%` any run, `_` one
/// character, no escape character; case-sensitive unless `ci`.
pub fn like_match(text: &str, pattern: &str, ci: bool) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = if ci {
        (
            text.to_lowercase().chars().collect(),
            pattern.to_lowercase().chars().collect(),
        )
    } else {
        (text.chars().collect(), pattern.chars().collect())
    };
    // Iterative wildcard match with backtracking on the last '%'.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] == t[ti])) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

/// Runs searches against the store.
#[derive(Clone)]
pub struct QueryEngine {
    store: Store,
}

impl QueryEngine {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Whether one trace (by internal row id) matches a filter string; the
    /// judge runner's sampling filters use this, so they mean exactly what
    /// the same string means in `search_traces`.
    pub async fn matches(&self, trace_row: i64, filter: &str) -> Result<bool, QueryError> {
        if filter.trim().is_empty() {
            return Ok(true);
        }
        let expr = parse_filter(filter)?;
        let sql = plan::build_match(&expr, trace_row)?;
        Ok(self
            .store
            .read(move |c| plan::execute_match(c, &sql))
            .await?)
    }

    pub async fn search(&self, req: SearchRequest) -> Result<SearchPage, QueryError> {
        if req.max_results > MAX_RESULTS_LIMIT {
            return Err(QueryError::Invalid(format!(
                "Invalid value {} for parameter 'max_results' supplied. It must be at most {MAX_RESULTS_LIMIT}.",
                req.max_results
            )));
        }
        let expr = match req.filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => Some(parse_filter(f)?),
            _ => None,
        };
        let order = plan::parse_order_by(&req.order_by)?;
        let after = req
            .page_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(token::decode)
            .transpose()?;
        let limit = if req.max_results == 0 {
            DEFAULT_MAX_RESULTS
        } else {
            req.max_results
        };
        let sql = plan::build(
            &req.experiment_ids,
            expr.as_ref(),
            req.text.as_deref(),
            &order,
            after.as_ref(),
            limit,
        )?;
        let store = self.store.clone();
        let (rows, high_water) = store.read(move |c| plan::execute(c, &sql)).await?;
        let next_page_token = if rows.len() > limit {
            rows.get(limit - 1).map(|last| {
                token::encode(&token::PageToken {
                    keys: last.sort_keys.clone(),
                    trace_id: last.trace_id.clone(),
                    high_water: after.as_ref().map(|a| a.high_water).unwrap_or(high_water),
                })
            })
        } else {
            None
        };
        let ids: Vec<i64> = rows.iter().take(limit).map(|r| r.id).collect();
        let traces = self
            .store
            .read(move |c| crate::store::traces::load_trace_infos(c, &ids))
            .await?;
        Ok(SearchPage {
            traces,
            next_page_token,
        })
    }
}
