//! Trace search: MLflow's filter grammar, `order_by`, keyset pagination,
//! and tracebox's full-text search.
//!
//! `lex` and `parse` turn a filter string into an [`ast::Expr`];
//! `resolve` attaches MLflow's meaning (entity prefixes, key remapping,
//! value typing, comparator rules, MLflow's error messages); `order` reads
//! `order_by`; `plan` turns all of it, with full-text hits from the index,
//! into one SQL statement over the store's schema. Shared by the MLflow
//! API, the web UI and the judge runner (sampling filters), so all three
//! agree on what a filter means.
//!
//! This module knows the store's schema (it writes SQL) and the index's
//! Rust API, but not HTTP.

pub mod ast;
mod lex;
mod order;
mod parse;
mod plan;
mod resolve;
pub mod stats;
mod token;

use std::collections::HashMap;

use crate::domain::TraceInfo;
use crate::index::highlight::fragment;
use crate::index::{SearchIndex, TextQuery, span_fields};
use crate::store::{Store, StoreError};

pub use crate::index::highlight::Snippet;
pub use ast::Expr;
pub use order::{OrderKey, SortKey, parse_order_by};
pub use parse::parse_filter;
pub use plan::{RowKey, Sql};
pub use resolve::{Cond, Pred, resolve};

/// MLflow's default and maximum page sizes for trace search.
pub const DEFAULT_MAX_RESULTS: usize = 100;
pub const MAX_RESULTS_LIMIT: usize = 500;
/// Most snippets returned per trace.
pub const SNIPPETS_PER_TRACE: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The filter string is wrong: `message` in MLflow's words, with the
    /// offending token and its 0-based character position.
    #[error("{message} (at character {position}, near '{token}')")]
    Filter {
        message: String,
        position: usize,
        token: String,
    },
    /// Another parameter is wrong (order_by, max_results, text).
    #[error("{0}")]
    Invalid(String),
    #[error("Invalid page token, {0}")]
    PageToken(String),
    /// The full-text index failed or is missing (a server-side problem).
    #[error("full-text index: {0}")]
    Index(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::index::IndexError> for QueryError {
    fn from(e: crate::index::IndexError) -> Self {
        match e {
            crate::index::IndexError::Store(s) => QueryError::Store(s),
            other => QueryError::Index(other.to_string()),
        }
    }
}

/// One search, as the MLflow API and the UI ask for it.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub experiment_ids: Vec<i64>,
    pub filter: Option<String>,
    pub order_by: Vec<String>,
    /// Page size; 0 means the default (100).
    pub max_results: usize,
    pub page_token: Option<String>,
    /// tracebox's full-text query: words, `"phrases"`, `prefix*`, all of
    /// which must occur somewhere in the trace.
    pub text: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub traces: Vec<TraceInfo>,
    /// Internal row ids of `traces`, in the same order (for snippets).
    pub rows: Vec<i64>,
    /// Set only when another page may follow.
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

/// Checks a filter string the way a search would (grammar, then MLflow's
/// rules for keys, comparators and values) without running anything: for
/// forms that store a filter for later (judge sampling filters) and for
/// pointing at the error in the UI. A blank filter is valid.
pub fn check_filter(filter: &str) -> Result<(), QueryError> {
    if let Some(e) = parse_filter(filter)? {
        resolve(&e)?;
    }
    Ok(())
}

/// Where a full-text query (the `text` parameter's syntax) matches in a
/// piece of text, by the index's own analyzer: a fragment around the first
/// match and the byte ranges of `fragment` to mark. `None` when it does not
/// match (or the query does not parse). For highlighting text the caller
/// already has, such as a trace's request and response previews.
pub fn text_fragment(text: &str, query: &str) -> Option<(String, Vec<(usize, usize)>)> {
    let q = TextQuery::parse_user(query).ok()?;
    fragment(text, &q)
}

/// A search fully parsed and validated, before touching any data; errors
/// come in MLflow's order (order_by, then filter, then page token).
struct Parsed {
    order: Vec<OrderKey>,
    filter: Option<Cond>,
    text: Option<TextQuery>,
    after: Option<token::PageToken>,
    limit: usize,
}

fn order_signature(order: &[OrderKey]) -> String {
    order
        .iter()
        .map(|k| format!("{:?}{}", k.key, if k.desc { "-" } else { "+" }))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_request(req: &SearchRequest) -> Result<Parsed, QueryError> {
    if req.max_results > MAX_RESULTS_LIMIT {
        return Err(QueryError::Invalid(format!(
            "Invalid value {} for parameter 'max_results' supplied. It must be at most {MAX_RESULTS_LIMIT}.",
            req.max_results
        )));
    }
    let order = parse_order_by(&req.order_by)?;
    let filter = match req.filter.as_deref() {
        Some(f) => parse_filter(f)?.map(|e| resolve(&e)).transpose()?,
        None => None,
    };
    let text = match req.text.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => Some(TextQuery::parse_user(t).map_err(QueryError::Invalid)?),
        _ => None,
    };
    let after = req
        .page_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(token::decode)
        .transpose()?;
    if let Some(a) = &after
        && a.order != order_signature(&order)
    {
        return Err(QueryError::PageToken(
            "it belongs to a search with another order_by".into(),
        ));
    }
    let limit = if req.max_results == 0 {
        DEFAULT_MAX_RESULTS
    } else {
        req.max_results
    };
    Ok(Parsed {
        order,
        filter,
        text,
        after,
        limit,
    })
}

fn uses_index(c: &Cond) -> bool {
    match c {
        Cond::And(p) | Cond::Or(p) => p.iter().any(uses_index),
        Cond::Pred(p) => matches!(p, Pred::Text { .. }),
    }
}

/// Runs searches against the store and the full-text index.
#[derive(Clone)]
pub struct QueryEngine {
    store: Store,
    index: Option<SearchIndex>,
}

impl QueryEngine {
    /// An engine without full-text search (filters on `trace.text` and the
    /// `text` parameter then fail with a clear error).
    pub fn new(store: Store) -> Self {
        Self { store, index: None }
    }

    pub fn with_index(store: Store, index: SearchIndex) -> Self {
        Self {
            store,
            index: Some(index),
        }
    }

    pub fn index(&self) -> Option<&SearchIndex> {
        self.index.as_ref()
    }

    /// Whether one trace (by internal row id) matches a filter string; the
    /// judge runner's sampling filters use this, so they mean exactly what
    /// the same string means in `search_traces`. A blank filter matches.
    pub async fn matches(&self, trace_row: i64, filter: &str) -> Result<bool, QueryError> {
        if filter.trim().is_empty() {
            return Ok(true);
        }
        let Some(expr) = parse_filter(filter)? else {
            return Ok(true);
        };
        let cond = resolve(&expr)?;
        let index = self.index.clone();
        self.store
            .read(move |c| {
                let env = plan::Env {
                    conn: c,
                    index: index.as_ref(),
                    scope: plan::Scope::Trace(trace_row),
                    high_water: i64::MAX,
                    fetch: 1,
                };
                let order = parse_order_by(&[]).unwrap_or_default();
                Ok(plan::build(&env, Some(&cond), None, &order, None)
                    .and_then(|sql| plan::execute(c, &sql)))
            })
            .await?
            .map(|rows| !rows.is_empty())
    }

    /// Refuses up front a query that needs the full-text index in a process
    /// that has none (a CLI command on the data directory), before any SQL.
    fn check_index(
        &self,
        filter: Option<&Cond>,
        text: Option<&TextQuery>,
    ) -> Result<(), QueryError> {
        let needs_index = text.is_some() || filter.is_some_and(uses_index);
        if needs_index && self.index.is_none() {
            return Err(QueryError::Index(
                "full-text search is not available in this process".into(),
            ));
        }
        Ok(())
    }

    pub async fn search(&self, req: SearchRequest) -> Result<SearchPage, QueryError> {
        let p = parse_request(&req)?;
        self.check_index(p.filter.as_ref(), p.text.as_ref())?;
        let index = self.index.clone();
        let experiments = req.experiment_ids.clone();
        self.store
            .read(move |c| Ok(run_search(c, index.as_ref(), experiments, &p)))
            .await?
    }

    /// The SQL a search would run and SQLite's plan for it (for tests and
    /// the benchmark).
    pub async fn explain(&self, req: SearchRequest) -> Result<(Sql, Vec<String>), QueryError> {
        let p = parse_request(&req)?;
        let index = self.index.clone();
        let experiments = req.experiment_ids.clone();
        self.store
            .read(move |c| {
                Ok(first_sql(c, index.as_ref(), &experiments, &p)
                    .and_then(|(_, _, sql)| plan::explain(c, &sql).map(|plan| (sql, plan))))
            })
            .await?
    }

    /// Highlighted snippets for a page of traces (internal row ids): for
    /// each trace, up to [`SNIPPETS_PER_TRACE`] span fields where `text`
    /// (the `text` parameter's syntax) matches. Text is re-read from SQLite,
    /// so snippets never show deleted data.
    pub async fn snippets(
        &self,
        trace_rows: Vec<i64>,
        text: String,
    ) -> Result<HashMap<i64, Vec<Snippet>>, QueryError> {
        let q = TextQuery::parse_user(&text).map_err(QueryError::Invalid)?;
        let spans = self
            .store
            .read(move |c| crate::store::index_feed::spans_of_traces(c, &trace_rows))
            .await?;
        let mut out: HashMap<i64, Vec<Snippet>> = HashMap::new();
        for s in &spans {
            let list = out.entry(s.trace).or_default();
            if list.len() >= SNIPPETS_PER_TRACE {
                continue;
            }
            for f in span_fields(s) {
                if list.len() >= SNIPPETS_PER_TRACE {
                    break;
                }
                if let Some((fragment, highlights)) = fragment(&f.text, &q) {
                    list.push(Snippet {
                        span_id: s.span_id.clone(),
                        field: f.field.to_string(),
                        fragment,
                        highlights,
                    });
                }
            }
        }
        out.retain(|_, v| !v.is_empty());
        Ok(out)
    }
}

/// The highest trace row a search sees: fixed by its first page, so that
/// later pages do not shift when traces arrive.
fn high_water(c: &rusqlite::Connection, p: &Parsed) -> Result<i64, QueryError> {
    Ok(match &p.after {
        Some(a) => a.high_water,
        None => c
            .prepare_cached("SELECT coalesce(max(id), 0) FROM traces")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(StoreError::from)?,
    })
}

fn build_sql(
    c: &rusqlite::Connection,
    index: Option<&SearchIndex>,
    experiments: &[i64],
    p: &Parsed,
    high_water: i64,
    part: plan::Part,
    after: Option<&token::PageToken>,
) -> Result<Sql, QueryError> {
    let env = plan::Env {
        conn: c,
        index,
        scope: plan::Scope::Experiments(experiments.to_vec()),
        high_water,
        fetch: p.limit + 1,
    };
    plan::build_part(
        &env,
        p.filter.as_ref(),
        p.text.as_ref(),
        &p.order,
        after,
        part,
    )
}

/// A search's first statement, with the high-water mark it fixed and the
/// part of a nullable leading sort key it covers (see [`plan::Part`]).
fn first_sql(
    c: &rusqlite::Connection,
    index: Option<&SearchIndex>,
    experiments: &[i64],
    p: &Parsed,
) -> Result<(i64, plan::Part, Sql), QueryError> {
    let high_water = high_water(c, p)?;
    let part = plan::first_part(&p.order, p.after.as_ref());
    let sql = build_sql(c, index, experiments, p, high_water, part, p.after.as_ref())?;
    Ok((high_water, part, sql))
}

fn run_search(
    c: &rusqlite::Connection,
    index: Option<&SearchIndex>,
    experiments: Vec<i64>,
    p: &Parsed,
) -> Result<SearchPage, QueryError> {
    let started = std::time::Instant::now();
    let (high_water, part, sql) = first_sql(c, index, &experiments, p)?;
    let planned = started.elapsed();
    let mut rows = plan::execute(c, &sql)?;
    if part == plan::Part::NonNull && rows.len() <= p.limit {
        // The values ran out before the page did: the NULLs come next.
        let nulls = build_sql(
            c,
            index,
            &experiments,
            p,
            high_water,
            plan::Part::Null,
            None,
        )?;
        rows.extend(plan::execute(c, &nulls)?);
    }
    let executed = started.elapsed();
    // A token only when there is certainly more: the SDK keeps asking
    // while a token comes back, so a short page must not carry one.
    let next_page_token = if rows.len() > p.limit {
        rows.truncate(p.limit);
        rows.last().map(|last| {
            token::encode(&token::PageToken {
                keys: last.sort_keys.clone(),
                order: order_signature(&p.order),
                high_water,
            })
        })
    } else {
        None
    };
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let traces = crate::store::traces::load_trace_infos(c, &ids)?;
    // Where a search spends its time: planning includes full-text lookups
    // and selectivity probes.
    tracing::debug!(
        plan_ms = planned.as_secs_f64() * 1e3,
        sql_ms = (executed - planned).as_secs_f64() * 1e3,
        load_ms = (started.elapsed() - executed).as_secs_f64() * 1e3,
        rows = ids.len(),
        "search"
    );
    Ok(SearchPage {
        traces,
        rows: ids,
        next_page_token,
    })
}

#[cfg(test)]
mod fuzz {
    //! Any input gives a result or a `QueryError`, never a panic; and any
    //! filter that resolves becomes SQL that SQLite accepts.

    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;
    use crate::index::highlight;

    const PIECES: &[&str] = &[
        "tags.a",
        "tag.`x y`",
        "metadata.m",
        "trace.status",
        "status",
        "timestamp",
        "text",
        "trace.text",
        "span.name",
        "span.type",
        "span.attributes.k",
        "span.attributes.`a.b`",
        "feedback.f",
        "expectation.e",
        "issue.id",
        "run_id",
        "prompt",
        "name",
        "request_id",
        "execution_time_ms",
        "trace.end_time",
        "client_request_id",
        "=",
        "!=",
        "<",
        ">=",
        "<>",
        "LIKE",
        "ilike",
        "RLIKE",
        "IN",
        "NOT",
        "IS",
        "NULL",
        "AND",
        "OR",
        "(",
        ")",
        ",",
        ";",
        "'x'",
        "\"y\"",
        "'%a_'",
        "'a/1'",
        "'[a-'",
        "'(x|y)'",
        "5",
        "-1.5e3",
        "('a', 'b')",
        "()",
        "true",
        "`",
        "'",
        "\\",
        "é",
        "退款",
        ".",
        "'%'",
    ];

    fn store() -> &'static (tempfile::TempDir, Store, SearchIndex) {
        static S: OnceLock<(tempfile::TempDir, Store, SearchIndex)> = OnceLock::new();
        S.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), Default::default()).unwrap();
            let (index, _) = SearchIndex::open(&dir.path().join("index")).unwrap();
            (dir, store, index)
        })
    }

    fn check(s: &str) {
        let n = s.chars().count();
        match parse_filter(s).and_then(|e| e.map(|e| resolve(&e)).transpose()) {
            Err(QueryError::Filter { position, .. }) => assert!(position <= n, "{s:?}"),
            Err(other) => panic!("unexpected error kind for {s:?}: {other:?}"),
            Ok(cond) => {
                let (_, store, index) = store();
                let order = parse_order_by(&[]).unwrap();
                let res = store.read_blocking(|c| {
                    let env = plan::Env {
                        conn: c,
                        index: Some(index),
                        scope: plan::Scope::Experiments(vec![0]),
                        high_water: 10,
                        fetch: 3,
                    };
                    Ok(plan::build(&env, cond.as_ref(), None, &order, None)
                        .and_then(|sql| plan::execute(c, &sql)))
                });
                match res {
                    Ok(Ok(_)) => {}
                    other => panic!("{s:?} resolved but did not run: {other:?}"),
                }
            }
        }
        let _ = parse_order_by(&[s.to_string()]);
        let _ = TextQuery::parse_user(s);
        let like = TextQuery::from_like(s);
        let _ = highlight::fragment(s, &like);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn any_string_parses_or_errors(s in "\\PC{0,60}") {
            check(&s);
        }
        #[test]
        fn token_soup_parses_or_errors(
            parts in proptest::collection::vec(proptest::sample::select(PIECES), 0..10)
        ) {
            check(&parts.join(" "));
            check(&parts.concat());
        }
        #[test]
        fn valid_comparisons_always_run(
            key in proptest::sample::select(&PIECES[..22]),
            op in proptest::sample::select(&["=", "!=", "<", ">=", "LIKE", "ILIKE", "RLIKE", "IS NULL", "IN", "NOT IN"][..]),
            value in proptest::sample::select(&["'x'", "'%a_'", "5", "('a', 'b')", "'a/1'", "'(x|y)'"][..]),
        ) {
            let v = if op.starts_with("IS") { "" } else { value };
            check(&format!("{key} {op} {v}"));
            check(&format!("({key} {op} {v} OR tags.z = 'q') AND span.name = 'n'"));
        }
    }
}
