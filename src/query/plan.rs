//! Turns a resolved filter, full-text hits, an order and a page position
//! into one SQL statement over the store's schema, and runs it.
//!
//! Plan shape: traces are either walked in the requested order through a
//! `traces` index (each filter checked per row, stopping at the page size),
//! or, when one equality filter or full-text hit set is small, read from
//! that set (`FROM <ids> CROSS JOIN traces`) and sorted. The choice is made
//! per query from the size of the candidate sets (a capped count for tag
//! and metadata equality, the exact hit count for full-text): walking costs
//! about `page * total / matches` rows, driving costs `matches` lookups, so
//! the break-even is `sqrt(page * total)`.
//!
//! Full-text hits are passed to SQLite either as a JSON list (small sets)
//! or as a bitmap blob tested with the `tb_bit` SQL function (large sets).
//! Everything ends in SQL over the live tables, so index hits are always
//! verified against SQLite.

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::Value;

use super::QueryError;
use super::order::{OrderKey, SortKey};
use super::resolve::{AssessTest, Cond, NumCol, NumVal, Pred, SpanField, StrOp, StrTest, TraceCol};
use super::token::PageToken;
use crate::index::{HitSet, Key, SearchIndex, TextClause, TextQuery};

/// Hit sets up to this size go to SQLite as a list, larger ones as a bitmap.
const LIST_MAX: usize = 4096;
/// Longest metadata value in the partial (key, value) index (migration
/// 0010): an equality test on a literal this short adds the index's
/// condition so that SQLite may use it.
const KV_INDEXED: usize = 128;
/// Bounds of the drive-or-walk threshold.
const DRIVE_MIN: i64 = 1_000;
const DRIVE_MAX: i64 = 50_000;
/// How much cheaper a walked row is when the test is a bitmap lookup (a
/// step along an index) than a driven row (a random row lookup plus sort):
/// measured at roughly 30x at a million traces.
const BITMAP_WALK_ADVANTAGE: f64 = 30.0;

/// Which experiments a statement covers.
#[derive(Debug, Clone)]
pub(super) enum Scope {
    /// The search's experiments.
    Experiments(Vec<i64>),
    /// One trace (`QueryEngine::matches`): no experiment restriction, and
    /// session-scoped assessments are looked up in the trace's experiment.
    Trace(i64),
}

/// What a statement needs besides the filter.
pub(super) struct Env<'a> {
    pub conn: &'a Connection,
    pub index: Option<&'a SearchIndex>,
    pub scope: Scope,
    /// Highest trace row id visible to the search.
    pub high_water: i64,
    /// Rows the statement fetches (page size + 1).
    pub fetch: usize,
}

/// A statement ready to run.
#[derive(Debug, Clone)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
    /// Sort-key columns selected after `id, trace_id`.
    pub n_keys: usize,
}

/// One matching row: enough to page and to load the trace.
#[derive(Debug, Clone)]
pub struct RowKey {
    pub id: i64,
    pub trace_id: String,
    pub sort_keys: Vec<Value>,
}

/// MLflow LIKE (case-sensitive, `%` and `_`, no escape) as a SQLite GLOB
/// pattern, which is case-sensitive without touching connection pragmas.
pub(super) fn like_to_glob(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 4);
    for c in p.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            other => out.push(other),
        }
    }
    out
}

/// The source rows come from, when one filter is selective enough.
enum Driver {
    /// `SELECT trace AS id FROM <table> WHERE key = ? AND value = ?`
    Kv {
        table: &'static str,
        key: String,
        value: String,
    },
    /// A list of trace row ids.
    Ids(Vec<i64>),
}

struct Builder<'a, 'e> {
    env: &'a Env<'e>,
    params: Vec<SqlValue>,
}

impl Builder<'_, '_> {
    fn bind(&mut self, v: impl Into<SqlValue>) -> String {
        self.params.push(v.into());
        format!("?{}", self.params.len())
    }

    fn bind_json_list<T: Into<Value> + Clone>(&mut self, v: &[T]) -> String {
        let j = Value::Array(v.iter().cloned().map(Into::into).collect()).to_string();
        self.bind(j)
    }

    fn index(&self) -> Result<&SearchIndex, QueryError> {
        self.env.index.ok_or_else(|| {
            QueryError::Index("the full-text index is not available in this process".into())
        })
    }

    fn scope_trace(&self) -> Option<i64> {
        match self.env.scope {
            Scope::Trace(t) => Some(t),
            Scope::Experiments(_) => None,
        }
    }

    /// `col` is in `hits`: a JSON list when small, else the bitmap.
    fn membership(&mut self, col: &str, hits: &HitSet) -> String {
        if hits.is_empty() {
            return "0".into();
        }
        if hits.len() <= LIST_MAX {
            let p = self.bind_json_list(&hits.ids());
            format!("{col} IN (SELECT value FROM json_each({p}))")
        } else {
            let p = self.bind(hits.bitmap().to_vec());
            format!("tb_bit({p}, {col})")
        }
    }

    fn str_test(&mut self, expr: &str, t: &StrTest) -> String {
        let v0 = t.values.first().cloned().unwrap_or_default();
        match t.op {
            StrOp::Eq => format!("{expr} = {}", self.bind(v0)),
            StrOp::Ne => format!("{expr} != {}", self.bind(v0)),
            StrOp::Like => format!("{expr} GLOB {}", self.bind(like_to_glob(&v0))),
            StrOp::ILike => format!("lower({expr}) LIKE lower({})", self.bind(v0)),
            StrOp::RLike => format!("regexp({}, {expr})", self.bind(v0)),
            StrOp::In => {
                let p = self.bind_json_list(&t.values);
                format!("{expr} IN (SELECT value FROM json_each({p}))")
            }
            StrOp::NotIn => {
                let p = self.bind_json_list(&t.values);
                format!("NOT ({expr} IN (SELECT value FROM json_each({p})))")
            }
            StrOp::IsNull => format!("{expr} IS NULL"),
            StrOp::IsNotNull => format!("{expr} IS NOT NULL"),
        }
    }

    /// Tag / metadata semantics: IS NULL is "no such key"; every other
    /// test needs the key to exist (so `!=` skips traces without it).
    fn kv(&mut self, table: &str, key: &str, t: &StrTest) -> String {
        let k = self.bind(key.to_string());
        let exists = |cond: String| {
            format!(
                "EXISTS (SELECT 1 FROM {table} kv WHERE kv.trace = t.id AND kv.key = {k}{cond})"
            )
        };
        match t.op {
            StrOp::IsNull => format!("NOT {}", exists(String::new())),
            StrOp::IsNotNull => exists(String::new()),
            _ => {
                let mut cond = format!(" AND {}", self.str_test("kv.value", t));
                // The metadata (key, value) index only covers short values.
                if table == "trace_metadata" && t.op == StrOp::Eq && t.values[0].len() <= KV_INDEXED
                {
                    cond.push_str(&format!(" AND length(kv.value) <= {KV_INDEXED}"));
                }
                exists(cond)
            }
        }
    }

    fn trace_col(col: TraceCol) -> &'static str {
        match col {
            TraceCol::TraceId => "t.trace_id",
            TraceCol::State => "t.state",
            TraceCol::ClientRequestId => "t.client_request_id",
            TraceCol::Name => "t.name",
            TraceCol::Session => "t.session_id",
        }
    }

    fn pred(&mut self, p: &Pred) -> Result<String, QueryError> {
        Ok(match p {
            Pred::Col { col, test } => {
                let e = Self::trace_col(*col);
                self.str_test(e, test)
            }
            Pred::Num { col, op, value } => {
                let e = match col {
                    NumCol::Timestamp => "t.request_time",
                    NumCol::ExecutionTime => "t.execution_time",
                    NumCol::EndTime => "(t.request_time + coalesce(t.execution_time, 0))",
                };
                let v = match value {
                    NumVal::Int(i) => self.bind(*i),
                    NumVal::Float(f) => self.bind(*f),
                    NumVal::Text(s) => self.bind(s.clone()),
                };
                format!("{e} {} {v}", op.sql())
            }
            Pred::Tag { key, test } => {
                let s = self.kv("trace_tags", key, test);
                // The user and session columns hold the tag's value when the
                // tag exists (tags win over metadata), so equality on the tag
                // implies equality on the indexed column.
                let implied = match (key.as_str(), test.op) {
                    ("mlflow.trace.user", StrOp::Eq) => Some("t.user_id"),
                    ("mlflow.trace.session", StrOp::Eq) => Some("t.session_id"),
                    _ => None,
                };
                match implied {
                    Some(col) => {
                        let v = self.bind(test.values[0].clone());
                        format!("{col} = {v} AND {s}")
                    }
                    None => s,
                }
            }
            Pred::Meta { key, test } => self.kv("trace_metadata", key, test),
            Pred::RunId(v) => self.kv(
                "trace_metadata",
                "mlflow.sourceRun",
                &StrTest {
                    op: StrOp::Eq,
                    values: vec![v.clone()],
                },
            ),
            Pred::Prompt { name, version } => {
                let n = self.bind(name.clone());
                let v = self.bind(version.clone());
                format!(
                    "EXISTS (SELECT 1 FROM trace_tags kv, json_each(CASE WHEN json_valid(kv.value) \
                     THEN kv.value ELSE '[]' END) p WHERE kv.trace = t.id AND kv.key = \
                     'mlflow.linkedPrompts' AND json_extract(p.value, '$.name') = {n} AND \
                     CAST(json_extract(p.value, '$.version') AS TEXT) = {v})"
                )
            }
            Pred::Span(..) | Pred::Text { .. } => self.span_group(&[p])?,
            Pred::Assessment { kind, name, test } => self.assessment(kind, name, test),
            Pred::Issue(id) => {
                let v = self.bind(id.clone());
                format!(
                    "EXISTS (SELECT 1 FROM assessments a WHERE a.trace = t.id AND a.kind = 'issue' \
                     AND a.name = {v})"
                )
            }
        })
    }

    fn assessment(&mut self, kind: &str, name: &str, test: &AssessTest) -> String {
        let k = self.bind(kind.to_string());
        let n = self.bind(name.to_string());
        let base = format!("a.kind = {k} AND a.name = {n} AND a.valid = 1");
        let cond = match test {
            AssessTest::IsNull | AssessTest::IsNotNull => String::new(),
            AssessTest::Str(op, v) => {
                let quoted = Value::String(v.clone()).to_string();
                match op {
                    StrOp::Eq | StrOp::Ne => {
                        let a = self.bind(v.clone());
                        let b = self.bind(quoted);
                        let eq = format!("(a.value = {a} OR a.value = {b})");
                        if *op == StrOp::Eq {
                            format!(" AND {eq}")
                        } else {
                            format!(" AND NOT {eq}")
                        }
                    }
                    _ => {
                        let t = StrTest {
                            op: *op,
                            values: vec![v.clone()],
                        };
                        format!(" AND {}", self.str_test("a.value", &t))
                    }
                }
            }
            AssessTest::Num(op, x) => {
                let v = self.bind(*x);
                format!(
                    " AND (CASE WHEN json_valid(a.value) THEN json_type(a.value) END) IN \
                     ('integer', 'real') AND CAST(a.value AS REAL) {} {v}",
                    op.sql()
                )
            }
        };
        let direct =
            format!("EXISTS (SELECT 1 FROM assessments a WHERE a.trace = t.id AND {base}{cond})");
        // Session-level assessments (metadata mlflow.trace.session) count
        // for every trace of their session within the searched experiments.
        let scope = match &self.env.scope {
            Scope::Experiments(e) if e.len() == 1 => format!("t2.experiment_id = {}", e[0]),
            Scope::Experiments(e) => {
                let p = self.bind_json_list(e);
                format!("t2.experiment_id IN (SELECT value FROM json_each({p}))")
            }
            Scope::Trace(_) => "t2.experiment_id = t.experiment_id".into(),
        };
        let session = format!(
            "t.session_id IN (SELECT t2.session_id FROM assessments a JOIN traces t2 ON t2.id = \
             a.trace WHERE t2.session_id IS NOT NULL AND {scope} AND {base}{cond} AND \
             instr(a.metadata, '\"mlflow.trace.session\":') > 0)"
        );
        let any = format!("({direct} OR {session})");
        match test {
            AssessTest::IsNull => format!("NOT {any}"),
            _ => any,
        }
    }

    /// One text query out of the LIKE patterns of a span group (they must
    /// all hold in the same span).
    fn group_text(preds: &[&Pred]) -> Option<TextQuery> {
        let mut clauses: Vec<TextClause> = Vec::new();
        let mut any = false;
        for p in preds {
            if let Pred::Text { pattern } = p {
                any = true;
                match TextQuery::from_like(pattern) {
                    TextQuery::All => {}
                    TextQuery::Nothing => return Some(TextQuery::Nothing),
                    TextQuery::Clauses(c) => clauses.extend(c),
                }
            }
        }
        any.then_some(if clauses.is_empty() {
            TextQuery::All
        } else {
            TextQuery::Clauses(clauses)
        })
    }

    /// Span-level tests that must hold for one span of the trace.
    fn span_group(&mut self, preds: &[&Pred]) -> Result<String, QueryError> {
        let text = Self::group_text(preds);
        let others: Vec<&Pred> = preds
            .iter()
            .copied()
            .filter(|p| matches!(p, Pred::Span(..)))
            .collect();
        let mut conds = Vec::new();
        if let Some(q) = &text {
            let scope = self.scope_trace();
            if others.is_empty() {
                let hits = self.index()?.same_span_hits(q, Key::Trace, scope)?;
                return Ok(self.membership("t.id", &hits));
            }
            let hits = self.index()?.same_span_hits(q, Key::Span, scope)?;
            conds.push(self.membership("s.id", &hits));
        }
        for p in others {
            let Pred::Span(field, test) = p else { continue };
            let expr = match field {
                SpanField::Name => "s.name".to_string(),
                SpanField::Type => "s.span_type".to_string(),
                SpanField::Status => {
                    "(CASE s.status_code WHEN 1 THEN 'OK' WHEN 2 THEN 'ERROR' ELSE 'UNSET' END)"
                        .to_string()
                }
                SpanField::Attribute(name) => match name.as_str() {
                    "mlflow.spanType" => "s.span_type".to_string(),
                    // Payloads may be stored compressed (store::payload).
                    "mlflow.spanInputs" => "tb_text(s.inputs)".to_string(),
                    "mlflow.spanOutputs" => "tb_text(s.outputs)".to_string(),
                    other => {
                        let path = self.bind(format!("$.\"{}\"", other.replace('"', "\\\"")));
                        let name = self.bind(other.to_string());
                        // An attribute whose value is exactly the span's
                        // inputs or outputs is stored once, in that column,
                        // and named in `inputs_attr` / `outputs_attr`
                        // (migration 0006): read it from there.
                        let value = |col: &str, path: &str| {
                            format!(
                                "(CASE json_type({col}, {path}) WHEN 'text' THEN {col} ->> {path} \
                                 WHEN 'null' THEN NULL ELSE {col} -> {path} END)"
                            )
                        };
                        format!(
                            "(CASE WHEN s.inputs_attr = {name} THEN {} \
                             WHEN s.outputs_attr = {name} THEN {} ELSE {} END)",
                            value("tb_text(s.inputs)", "'$'"),
                            value("tb_text(s.outputs)", "'$'"),
                            value("s.attributes", &path)
                        )
                    }
                },
            };
            conds.push(self.str_test(&expr, test));
        }
        Ok(format!(
            "EXISTS (SELECT 1 FROM spans s WHERE s.trace = t.id AND {})",
            conds.join(" AND ")
        ))
    }

    /// A condition tree; span-level tests ANDed at one level form one group.
    fn cond(&mut self, c: &Cond) -> Result<String, QueryError> {
        Ok(match c {
            Cond::Pred(p) => self.pred(p)?,
            Cond::Or(parts) => {
                let s: Vec<String> = parts
                    .iter()
                    .map(|p| self.cond(p))
                    .collect::<Result<_, _>>()?;
                format!("({})", s.join(" OR "))
            }
            Cond::And(parts) => {
                let refs: Vec<&Cond> = parts.iter().collect();
                let s = self.conjunction(&refs)?;
                format!("({})", s.join(" AND "))
            }
        })
    }

    fn conjunction(&mut self, parts: &[&Cond]) -> Result<Vec<String>, QueryError> {
        let mut out = Vec::new();
        let spans: Vec<&Pred> = parts
            .iter()
            .filter_map(|c| match c {
                Cond::Pred(p) if p.is_span_level() => Some(p),
                _ => None,
            })
            .collect();
        if !spans.is_empty() {
            out.push(self.span_group(&spans)?);
        }
        for c in parts {
            if matches!(c, Cond::Pred(p) if p.is_span_level()) {
                continue;
            }
            out.push(self.cond(c)?);
        }
        Ok(out)
    }

    /// The experiments (or the one trace) a statement covers, and the
    /// high-water mark that keeps paging stable.
    fn scope_conds(&mut self) -> Vec<String> {
        let mut conds: Vec<String> = Vec::new();
        match &self.env.scope {
            Scope::Experiments(e) if e.is_empty() => conds.push("0".into()),
            Scope::Experiments(e) if e.len() == 1 => {
                let p = self.bind(e[0]);
                conds.push(format!("t.experiment_id = {p}"));
            }
            Scope::Experiments(e) => {
                let p = self.bind_json_list(e);
                conds.push(format!(
                    "t.experiment_id IN (SELECT value FROM json_each({p}))"
                ));
            }
            Scope::Trace(id) => {
                let p = self.bind(*id);
                conds.push(format!("t.id = {p}"));
            }
        }
        let p = self.bind(self.env.high_water);
        conds.push(format!("t.id <= {p}"));
        conds
    }

    /// Counts up to `cap` rows of a (key, value) pair through its index.
    fn probe_kv(&self, table: &str, key: &str, value: &str, cap: i64) -> Result<i64, QueryError> {
        let extra = if table == "trace_metadata" {
            format!(" AND length(value) <= {KV_INDEXED}")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE key = ?1 AND value = ?2{extra} LIMIT ?3)"
        );
        Ok(self
            .env
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(rusqlite::params![key, value, cap], |r| r.get(0)))
            .map_err(crate::store::StoreError::from)?)
    }
}

/// Per-query order expressions, with their bound parameters.
fn order_expr(b: &mut Builder<'_, '_>, k: &SortKey) -> String {
    match k {
        SortKey::Timestamp => "t.request_time".into(),
        SortKey::ExecutionTime => "t.execution_time".into(),
        SortKey::EndTime => "(t.request_time + coalesce(t.execution_time, 0))".into(),
        SortKey::Status => "t.state".into(),
        SortKey::TraceId => "t.trace_id".into(),
        SortKey::ExperimentId => "t.experiment_id".into(),
        SortKey::Name => "t.name".into(),
        SortKey::Session => "t.session_id".into(),
        SortKey::Tag(key) => {
            let p = b.bind(key.clone());
            format!("(SELECT value FROM trace_tags WHERE trace = t.id AND key = {p})")
        }
        SortKey::Meta(key) => {
            let p = b.bind(key.clone());
            format!("(SELECT value FROM trace_metadata WHERE trace = t.id AND key = {p})")
        }
    }
}

fn json_to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Number(n) => n
            .as_i64()
            .map(SqlValue::Integer)
            .unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn sql_to_json(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::from(hex::encode(b)),
    }
}

/// Splits a filter into its top-level conjuncts.
fn conjuncts(c: &Cond) -> Vec<&Cond> {
    match c {
        Cond::And(parts) => parts.iter().collect(),
        other => vec![other],
    }
}

/// A boolean SQL expression over `traces t` selecting exactly what a search
/// with this filter and text would (no order, paging or driver choice),
/// with its parameters numbered from ?1: the dashboard aggregates over it,
/// so its numbers describe the same traces as the list.
pub(super) fn build_where(
    env: &Env<'_>,
    filter: Option<&Cond>,
    text: Option<&TextQuery>,
) -> Result<(String, Vec<SqlValue>), QueryError> {
    let mut b = Builder {
        env,
        params: Vec::new(),
    };
    let mut conds = b.scope_conds();
    if let Some(q) = text {
        let hits = b.index()?.trace_hits(q, b.scope_trace())?;
        conds.push(b.membership("t.id", &hits));
    }
    if let Some(f) = filter {
        conds.extend(b.conjunction(&conjuncts(f))?);
    }
    Ok((format!("({})", conds.join(" AND ")), b.params))
}

/// Which rows of the leading sort key a statement covers.
///
/// NULLs sort last in both directions. Descending, that is SQLite's own
/// order and an index can be walked; ascending, it takes an `(e IS NULL)`
/// term that no index delivers, so SQLite sorted every trace of the
/// experiment (~0.3 s at 100,000 traces for a click on the UI's name or
/// duration column). An ascending nullable leading key is therefore
/// searched in two parts: the non-NULL rows in index order, then, if the
/// page is not full, the NULL ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// Every row, in one statement.
    All,
    /// Rows whose leading key is not NULL (the first part).
    NonNull,
    /// Rows whose leading key is NULL (the second part).
    Null,
}

/// Where a search with this order starts: [`Part::All`] unless the leading
/// key is nullable and ascending; then the first part, or directly the
/// second when the page token is already among the NULLs.
pub(super) fn first_part(order: &[OrderKey], after: Option<&PageToken>) -> Part {
    match order.first() {
        Some(k) if k.key.nullable() && !k.desc => {
            if after.is_some_and(|t| t.keys.first().is_some_and(Value::is_null)) {
                Part::Null
            } else {
                Part::NonNull
            }
        }
        _ => Part::All,
    }
}

/// Builds the search statement: matching rows in order, `env.fetch` at most.
pub(super) fn build(
    env: &Env<'_>,
    filter: Option<&Cond>,
    text: Option<&TextQuery>,
    order: &[OrderKey],
    after: Option<&PageToken>,
) -> Result<Sql, QueryError> {
    build_part(env, filter, text, order, after, Part::All)
}

/// [`build`] for one [`Part`] of the rows. The NULL part after the
/// non-NULL one is built with no page token: every NULL comes after every
/// value.
pub(super) fn build_part(
    env: &Env<'_>,
    filter: Option<&Cond>,
    text: Option<&TextQuery>,
    order: &[OrderKey],
    after: Option<&PageToken>,
    part: Part,
) -> Result<Sql, QueryError> {
    let mut b = Builder {
        env,
        params: Vec::new(),
    };
    let mut conds = b.scope_conds();

    // Candidate drivers: the trace-level hit sets and equality filters of
    // the top-level conjunction.
    let top: Vec<&Cond> = filter.map(conjuncts).unwrap_or_default();
    let span_preds: Vec<&Pred> = top
        .iter()
        .filter_map(|c| match c {
            Cond::Pred(p) if p.is_span_level() => Some(p),
            _ => None,
        })
        .collect();
    let mut rest: Vec<&Cond> = top
        .iter()
        .copied()
        .filter(|c| !matches!(c, Cond::Pred(p) if p.is_span_level()))
        .collect();
    let scope_trace = b.scope_trace();
    // Trace-level hit sets (index answers), each a potential driver.
    let mut hit_sets: Vec<HitSet> = Vec::new();
    if let Some(q) = text {
        hit_sets.push(b.index()?.trace_hits(q, scope_trace)?);
    }
    let span_only_text =
        !span_preds.is_empty() && span_preds.iter().all(|p| matches!(p, Pred::Text { .. }));
    if span_only_text && let Some(q) = Builder::group_text(&span_preds) {
        hit_sets.push(b.index()?.same_span_hits(&q, Key::Trace, scope_trace)?);
    } else if !span_preds.is_empty() {
        conds.push(b.span_group(&span_preds)?);
    }

    let mut driver: Option<Driver> = None;
    if scope_trace.is_none() {
        // Walking costs about fetch * total / matches row checks, driving
        // costs `matches` random lookups: drive below the break-even.
        let walk_rows = env.fetch as f64 * env.high_water.max(1) as f64;
        let threshold = (walk_rows.sqrt() as i64).clamp(DRIVE_MIN, DRIVE_MAX);
        let hit_threshold =
            ((walk_rows / BITMAP_WALK_ADVANTAGE).sqrt() as i64).clamp(DRIVE_MIN / 4, DRIVE_MAX);
        let mut best: Option<(i64, usize, bool)> = None; // (count, index, is_hitset)
        for (i, h) in hit_sets.iter().enumerate() {
            let n = h.len() as i64;
            if n < hit_threshold && best.is_none_or(|(c, _, _)| n < c) {
                best = Some((n, i, true));
            }
        }
        for (i, c) in rest.iter().enumerate() {
            let (table, key, value) = match c {
                Cond::Pred(Pred::Tag { key, test }) if test.op == StrOp::Eq => {
                    ("trace_tags", key.as_str(), test.values[0].as_str())
                }
                Cond::Pred(Pred::Meta { key, test })
                    if test.op == StrOp::Eq && test.values[0].len() <= KV_INDEXED =>
                {
                    ("trace_metadata", key.as_str(), test.values[0].as_str())
                }
                Cond::Pred(Pred::RunId(v)) if v.len() <= KV_INDEXED => {
                    ("trace_metadata", "mlflow.sourceRun", v.as_str())
                }
                _ => continue,
            };
            // Users and sessions have their own ordered index on traces.
            if table == "trace_tags" && matches!(key, "mlflow.trace.user" | "mlflow.trace.session")
            {
                continue;
            }
            let cap = best.map_or(threshold, |(c, _, _)| c.min(threshold));
            let n = b.probe_kv(table, key, value, cap)?;
            if n < cap {
                best = Some((n, i, false));
            }
        }
        match best {
            Some((_, i, true)) => {
                let h = hit_sets.remove(i);
                driver = Some(Driver::Ids(h.ids()));
            }
            Some((_, i, false)) => {
                let c = rest.remove(i);
                let (table, key, value) = match c {
                    Cond::Pred(Pred::Tag { key, test }) => {
                        ("trace_tags", key.clone(), test.values[0].clone())
                    }
                    Cond::Pred(Pred::Meta { key, test }) => {
                        ("trace_metadata", key.clone(), test.values[0].clone())
                    }
                    Cond::Pred(Pred::RunId(v)) => {
                        ("trace_metadata", "mlflow.sourceRun".to_string(), v.clone())
                    }
                    _ => unreachable_driver()?,
                };
                driver = Some(Driver::Kv { table, key, value });
            }
            None => {}
        }
    }
    // Remaining hit sets are membership tests, cheapest first.
    for h in &hit_sets {
        let m = b.membership("t.id", h);
        conds.push(m);
    }
    conds.extend(b.conjunction(&rest)?);

    // Order and keyset position.
    let mut select = Vec::new();
    let mut order_sql = Vec::new();
    let mut exprs = Vec::new();
    for (i, k) in order.iter().enumerate() {
        let e = order_expr(&mut b, &k.key);
        let dir = if k.desc { "DESC" } else { "ASC" };
        match (i, part) {
            (0, Part::NonNull) => {
                conds.push(format!("{e} IS NOT NULL"));
                order_sql.push(format!("{e} {dir}"));
            }
            // All NULL: the key orders nothing.
            (0, Part::Null) => conds.push(format!("{e} IS NULL")),
            _ => {
                if k.key.nullable() && !k.desc {
                    order_sql.push(format!("({e} IS NULL)"));
                }
                order_sql.push(format!("{e} {dir}"));
            }
        }
        select.push(e.clone());
        exprs.push(e);
    }
    if let Some(tok) = after {
        if tok.keys.len() != order.len() {
            return Err(QueryError::PageToken(
                "the token belongs to a search with another order_by".into(),
            ));
        }
        let mut ors = Vec::new();
        for i in 0..order.len() {
            let mut ands = Vec::new();
            for (j, e) in exprs.iter().enumerate().take(i) {
                match &tok.keys[j] {
                    Value::Null => ands.push(format!("{e} IS NULL")),
                    v => {
                        let p = b.bind(json_to_sql(v));
                        ands.push(format!("{e} = {p}"));
                    }
                }
            }
            let e = &exprs[i];
            let k = &order[i];
            match &tok.keys[i] {
                // NULLs sort last: nothing comes after a NULL in this key.
                Value::Null => continue,
                v => {
                    let p = b.bind(json_to_sql(v));
                    let cmp = if k.desc { "<" } else { ">" };
                    if k.key.nullable() {
                        ands.push(format!("({e} {cmp} {p} OR {e} IS NULL)"));
                    } else {
                        ands.push(format!("{e} {cmp} {p}"));
                    }
                }
            }
            ors.push(format!("({})", ands.join(" AND ")));
        }
        // A range on the leading key lets SQLite seek instead of scanning.
        if let (Some(k), Some(v)) = (order.first(), tok.keys.first())
            && (!k.key.nullable() || part == Part::NonNull)
            && !v.is_null()
        {
            let p = b.bind(json_to_sql(v));
            conds.push(format!(
                "{} {} {p}",
                exprs[0],
                if k.desc { "<=" } else { ">=" }
            ));
        }
        conds.push(if ors.is_empty() {
            "0".into()
        } else {
            format!("({})", ors.join(" OR "))
        });
    } else if matches!(order.first(), Some(k) if k.key == SortKey::Status && !k.desc) {
        // The first page of `status ASC` (ties newest first): without a
        // range on the state SQLite sorted every trace of the experiment
        // (~0.3 s at 100,000) instead of walking `traces_exp_state`; an
        // always-true lower bound makes it walk the index, as later pages
        // do with the token's bound.
        conds.push("t.state >= ''".into());
    }
    let driven = driver.is_some();
    let from = match driver {
        None => "traces t".to_string(),
        Some(Driver::Kv { table, key, value }) => {
            let k = b.bind(key);
            let extra = if table == "trace_metadata" {
                format!(" AND length(value) <= {KV_INDEXED}")
            } else {
                String::new()
            };
            let v = b.bind(value);
            format!(
                "(SELECT trace AS id FROM {table} WHERE key = {k} AND value = {v}{extra}) d \
                 CROSS JOIN traces t"
            )
        }
        Some(Driver::Ids(ids)) => {
            let p = b.bind_json_list(&ids);
            format!("(SELECT value AS id FROM json_each({p})) d CROSS JOIN traces t")
        }
    };
    if driven {
        conds.insert(0, "t.id = d.id".into());
    }
    let text = format!(
        "SELECT t.id, t.trace_id, {} FROM {from} WHERE {} ORDER BY {} LIMIT {}",
        select.join(", "),
        conds.join(" AND "),
        order_sql.join(", "),
        env.fetch
    );
    Ok(Sql {
        text,
        params: b.params,
        n_keys: exprs.len(),
    })
}

fn unreachable_driver<T>() -> Result<T, QueryError> {
    Err(QueryError::Invalid("internal: bad driver choice".into()))
}

/// Runs a statement built by [`build`].
pub(super) fn execute(conn: &Connection, sql: &Sql) -> Result<Vec<RowKey>, QueryError> {
    let run = || -> rusqlite::Result<Vec<RowKey>> {
        // The text depends only on the filter's shape (values are bound,
        // lists go through json_each), so repeated searches reuse the
        // connection's prepared statement instead of planning it again.
        let mut stmt = conn.prepare_cached(&sql.text)?;
        let mut q = stmt.query(rusqlite::params_from_iter(sql.params.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = q.next()? {
            let mut keys = Vec::with_capacity(sql.n_keys);
            for i in 0..sql.n_keys {
                keys.push(sql_to_json(r.get_ref(2 + i)?));
            }
            out.push(RowKey {
                id: r.get(0)?,
                trace_id: r.get(1)?,
                sort_keys: keys,
            });
        }
        Ok(out)
    };
    run().map_err(|e| QueryError::Store(e.into()))
}

/// SQLite's plan for a statement, one line per step (for tests and the
/// benchmark).
pub fn explain(conn: &Connection, sql: &Sql) -> Result<Vec<String>, QueryError> {
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(sql.params.iter()), |r| {
            r.get::<_, String>(3)
        })?;
        rows.collect()
    };
    run().map_err(|e| QueryError::Store(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{parse_filter, parse_order_by, resolve};
    use crate::store::Store;

    #[test]
    fn like_becomes_case_sensitive_glob() {
        assert_eq!(like_to_glob("a%b_c*?[x]"), "a*b?c[*][?][[]x]");
    }

    /// The SQL a filter and order translate to (on an empty database, so
    /// no selectivity probe picks a driver).
    fn sql(filter: &str, order: &[&str]) -> Sql {
        sql_part(filter, order, Part::All)
    }

    fn sql_part(filter: &str, order: &[&str], part: Part) -> Sql {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let cond = parse_filter(filter).unwrap().map(|e| resolve(&e).unwrap());
        let order =
            parse_order_by(&order.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        store
            .read_blocking(|c| {
                let env = Env {
                    conn: c,
                    index: None,
                    scope: Scope::Experiments(vec![3]),
                    high_water: 1_000_000,
                    fetch: 101,
                };
                Ok(build_part(&env, cond.as_ref(), None, &order, None, part).unwrap())
            })
            .unwrap()
    }

    fn squash(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn filters_translate_to_mlflow_semantics() {
        let s = sql("tags.env != 'prod'", &[]);
        assert!(
            squash(&s.text).contains(
                "EXISTS (SELECT 1 FROM trace_tags kv WHERE kv.trace = t.id AND kv.key = ?3 AND kv.value != ?4)"
            ),
            "{}",
            s.text
        );
        let s = sql("tags.env IS NULL", &[]);
        assert!(
            squash(&s.text).contains("NOT EXISTS (SELECT 1 FROM trace_tags kv"),
            "{}",
            s.text
        );
        let s = sql("tags.env LIKE 'pr%'", &[]);
        assert!(s.text.contains("kv.value GLOB ?4"), "{}", s.text);
        assert_eq!(s.params[3], SqlValue::Text("pr*".into()));
        let s = sql("tags.env ILIKE 'PR%'", &[]);
        assert!(
            s.text.contains("lower(kv.value) LIKE lower(?4)"),
            "{}",
            s.text
        );
        let s = sql("status IN ('OK', 'ERROR')", &[]);
        assert!(
            s.text
                .contains("t.state IN (SELECT value FROM json_each(?3))"),
            "{}",
            s.text
        );
        assert_eq!(s.params[2], SqlValue::Text("[\"OK\",\"ERROR\"]".into()));
        let s = sql("status NOT IN ('OK')", &[]);
        assert!(s.text.contains("NOT (t.state IN"), "{}", s.text);
        let s = sql("trace.end_time_ms > 5", &[]);
        assert!(
            s.text
                .contains("(t.request_time + coalesce(t.execution_time, 0)) > ?3"),
            "{}",
            s.text
        );
        // An equality that matches few traces (none, here) drives the query.
        let s = sql("metadata.m = 'v'", &[]);
        assert!(
            s.text.contains(
                "FROM (SELECT trace AS id FROM trace_metadata WHERE key = ?3 AND value = ?4 \
                 AND length(value) <= 128) d CROSS JOIN traces t WHERE t.id = d.id"
            ),
            "{}",
            s.text
        );
        let s = sql("metadata.m = 'v' OR metadata.m = 'w'", &[]);
        assert!(s.text.contains("AND length(kv.value) <= 128"), "{}", s.text);
        let s = sql("tags.`mlflow.trace.user` = 'u1'", &[]);
        assert!(s.text.contains("t.user_id = ?5 AND EXISTS"), "{}", s.text);
        // Span tests ANDed at one level share one EXISTS (the same span) ...
        let s = sql(
            "span.type = 'LLM' AND span.name = 'chat' AND tags.a = 'b'",
            &[],
        );
        assert_eq!(s.text.matches("FROM spans s").count(), 1, "{}", s.text);
        assert!(
            s.text.contains("s.span_type = ?3 AND s.name = ?4"),
            "{}",
            s.text
        );
        // ... while OR branches are separate spans.
        let s = sql("span.type = 'LLM' OR span.name = 'chat'", &[]);
        assert_eq!(s.text.matches("FROM spans s").count(), 2, "{}", s.text);
        let s = sql("span.status = 'ERROR'", &[]);
        assert!(s.text.contains("WHEN 2 THEN 'ERROR'"), "{}", s.text);
        let s = sql("span.attributes.model = 'gpt'", &[]);
        assert!(s.text.contains("json_type(s.attributes, ?3)"), "{}", s.text);
        assert_eq!(s.params[2], SqlValue::Text("$.\"model\"".into()));
        // Assessments: valid only, value or its JSON string, session siblings.
        let s = sql("feedback.ok = 'yes'", &[]);
        let t = squash(&s.text);
        assert!(
            t.contains(
                "a.kind = ?3 AND a.name = ?4 AND a.valid = 1 AND (a.value = ?5 OR a.value = ?6)"
            ),
            "{t}"
        );
        assert!(
            t.contains("t.session_id IN (SELECT t2.session_id FROM assessments a JOIN traces t2"),
            "{t}"
        );
        assert!(t.contains("t2.experiment_id = 3"), "{t}");
        assert_eq!(s.params[5], SqlValue::Text("\"yes\"".into()));
        let s = sql("feedback.score >= 0.5", &[]);
        assert!(
            s.text
                .contains("IN ('integer', 'real') AND CAST(a.value AS REAL) >= ?5"),
            "{}",
            s.text
        );
        let s = sql("feedback.ok IS NULL", &[]);
        assert!(
            squash(&s.text).contains("NOT (EXISTS (SELECT 1 FROM assessments a"),
            "{}",
            s.text
        );
        let s = sql("prompt = 'qa/2'", &[]);
        assert!(s.text.contains("'mlflow.linkedPrompts'"), "{}", s.text);
        let s = sql("tags.a = 'x' OR (status = 'OK' AND name = 'n')", &[]);
        assert!(
            s.text.contains("(EXISTS (SELECT 1 FROM trace_tags kv WHERE kv.trace = t.id AND kv.key = ?3 AND kv.value = ?4) OR (t.state = ?5 AND t.name = ?6))"),
            "{}",
            s.text
        );
    }

    #[test]
    fn orders_put_nulls_last_and_keep_tie_breakers() {
        let s = sql("", &[]);
        assert!(
            s.text
                .ends_with("ORDER BY t.request_time DESC, t.trace_id ASC LIMIT 101"),
            "{}",
            s.text
        );
        // DESC: SQLite already sorts NULLs last, so the index can be walked.
        let s = sql("", &["execution_time_ms DESC"]);
        assert!(
            s.text.ends_with(
                "ORDER BY t.execution_time DESC, t.request_time DESC, t.trace_id ASC LIMIT 101"
            ),
            "{}",
            s.text
        );
        let s = sql("", &["execution_time ASC"]);
        assert!(
            s.text
                .contains("ORDER BY (t.execution_time IS NULL), t.execution_time ASC"),
            "{}",
            s.text
        );
        // Ascending on a nullable key runs in two parts, each of which an
        // index can deliver in order.
        let s = sql_part("", &["execution_time ASC"], Part::NonNull);
        assert!(
            s.text.contains("t.execution_time IS NOT NULL")
                && s.text
                    .contains("ORDER BY t.execution_time ASC, t.request_time DESC, t.trace_id ASC"),
            "{}",
            s.text
        );
        let s = sql_part("", &["execution_time ASC"], Part::Null);
        assert!(
            s.text.contains("t.execution_time IS NULL")
                && s.text
                    .ends_with("ORDER BY t.request_time DESC, t.trace_id ASC LIMIT 101"),
            "{}",
            s.text
        );
        assert_eq!(s.n_keys, 3, "the NULL key still goes into page tokens");
        let s = sql("", &["status ASC"]);
        assert!(s.text.contains("t.state >= ''"), "{}", s.text);
        let s = sql("", &["tags.env DESC", "timestamp_ms ASC"]);
        assert!(
            s.text.contains(
                "ORDER BY (SELECT value FROM trace_tags WHERE trace = t.id AND key = ?3) DESC, \
                 t.request_time ASC, t.trace_id ASC"
            ),
            "{}",
            s.text
        );
        assert_eq!(s.n_keys, 3);
    }
}
