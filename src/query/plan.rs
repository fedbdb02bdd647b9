//! Turns a parsed filter, an order and a page position into SQL, and runs it.

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::Value;

use super::QueryError;
use super::ast::{Comparison, Expr, Field, Literal, Op};
use super::token::PageToken;
use crate::store::StoreError;

/// A sortable trace column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Timestamp,
    ExecutionTime,
    Name,
    Status,
    TraceId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderKey {
    pub column: SortColumn,
    pub desc: bool,
}

impl SortColumn {
    fn parse(key: &str) -> Option<Self> {
        let k = key
            .trim()
            .trim_start_matches("attributes.")
            .trim_start_matches("attribute.")
            .trim_start_matches("trace.");
        Some(match k.to_ascii_lowercase().as_str() {
            "timestamp" | "timestamp_ms" => SortColumn::Timestamp,
            "execution_time" | "execution_time_ms" => SortColumn::ExecutionTime,
            "name" => SortColumn::Name,
            "status" => SortColumn::Status,
            "request_id" | "trace_id" => SortColumn::TraceId,
            _ => return None,
        })
    }
    /// Non-null SQL expressions whose lexicographic order is this column's
    /// order with NULLs last (MLflow's behaviour in both directions).
    fn primitives(self, desc: bool) -> Vec<(&'static str, bool)> {
        match self {
            SortColumn::Timestamp => vec![("t.request_time", desc)],
            SortColumn::ExecutionTime => vec![
                ("(t.execution_time IS NULL)", false),
                ("coalesce(t.execution_time, 0)", desc),
            ],
            SortColumn::Name => vec![("(t.name IS NULL)", false), ("coalesce(t.name, '')", desc)],
            SortColumn::Status => vec![("t.state", desc)],
            SortColumn::TraceId => vec![("t.trace_id", desc)],
        }
    }
}

/// Parses MLflow `order_by` clauses (`"timestamp_ms DESC"`) and appends
/// MLflow's tie-breakers (`timestamp_ms DESC, request_id ASC`).
pub fn parse_order_by(clauses: &[String]) -> Result<Vec<OrderKey>, QueryError> {
    let mut keys: Vec<OrderKey> = Vec::new();
    for c in clauses {
        let mut parts = c.split_whitespace();
        let key = parts.next().unwrap_or_default();
        let desc = match parts.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => {
                return Err(QueryError::Invalid(format!(
                    "Invalid order_by clause '{c}'. Could not be parsed: unexpected '{other}'."
                )));
            }
        };
        if parts.next().is_some() {
            return Err(QueryError::Invalid(format!(
                "Invalid order_by clause '{c}'. Could not be parsed."
            )));
        }
        let column = SortColumn::parse(key).ok_or_else(|| {
            QueryError::Invalid(format!(
                "Invalid order by key '{key}' specified. Valid keys are 'timestamp_ms', \
                 'execution_time_ms', 'name', 'status', 'request_id'."
            ))
        })?;
        if keys.iter().any(|k| k.column == column) {
            return Err(QueryError::Invalid(format!(
                "`order_by` contains duplicate fields: '{key}'"
            )));
        }
        keys.push(OrderKey { column, desc });
    }
    for tie in [
        OrderKey {
            column: SortColumn::Timestamp,
            desc: true,
        },
        OrderKey {
            column: SortColumn::TraceId,
            desc: false,
        },
    ] {
        if !keys.iter().any(|k| k.column == tie.column) {
            keys.push(tie);
        }
    }
    Ok(keys)
}

/// A statement ready to run.
#[derive(Debug, Clone)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
    /// Number of sort-key columns selected after `id, trace_id`.
    pub n_keys: usize,
    pub high_water: Option<i64>,
}

/// One matching row: enough to page and to load the trace.
#[derive(Debug, Clone)]
pub struct RowKey {
    pub id: i64,
    pub trace_id: String,
    pub sort_keys: Vec<Value>,
}

struct Builder {
    params: Vec<SqlValue>,
}

impl Builder {
    fn bind(&mut self, v: impl Into<SqlValue>) -> String {
        self.params.push(v.into());
        format!("?{}", self.params.len())
    }

    fn expr(&mut self, e: &Expr) -> Result<String, QueryError> {
        Ok(match e {
            Expr::And(parts) => {
                let s: Vec<String> = parts
                    .iter()
                    .map(|p| self.expr(p))
                    .collect::<Result<_, _>>()?;
                format!("({})", s.join(" AND "))
            }
            Expr::Or(parts) => {
                let s: Vec<String> = parts
                    .iter()
                    .map(|p| self.expr(p))
                    .collect::<Result<_, _>>()?;
                format!("({})", s.join(" OR "))
            }
            Expr::Cmp(c) => self.comparison(c)?,
        })
    }

    fn string(&mut self, c: &Comparison) -> Result<String, QueryError> {
        match &c.value {
            Literal::Str(s) => Ok(self.bind(s.clone())),
            other => Err(QueryError::Invalid(format!(
                "Expected a quoted string value, got {other:?}"
            ))),
        }
    }

    fn kv(&mut self, table: &str, key: &str, c: &Comparison) -> Result<String, QueryError> {
        let k = self.bind(key.to_string());
        let exists = |cond: &str| {
            format!(
                "EXISTS (SELECT 1 FROM {table} kv WHERE kv.trace = t.id AND kv.key = {k}{cond})"
            )
        };
        Ok(match c.op {
            Op::IsNull => format!("NOT {}", exists("")),
            Op::IsNotNull => exists(""),
            Op::Eq => {
                let v = self.string(c)?;
                exists(&format!(" AND kv.value = {v}"))
            }
            Op::Ne => {
                let v = self.string(c)?;
                exists(&format!(" AND kv.value != {v}"))
            }
            Op::Like => {
                let v = self.string(c)?;
                exists(&format!(" AND kv.value LIKE {v}"))
            }
            Op::ILike => {
                let v = self.string(c)?;
                exists(&format!(" AND lower(kv.value) LIKE lower({v})"))
            }
            other => {
                return Err(QueryError::Invalid(format!(
                    "Invalid comparator '{other:?}' for {table}"
                )));
            }
        })
    }

    fn numeric(&mut self, col: &str, c: &Comparison) -> Result<String, QueryError> {
        let v = match &c.value {
            Literal::Int(i) => self.bind(*i),
            Literal::Float(f) => self.bind(*f),
            other => {
                return Err(QueryError::Invalid(format!(
                    "Expected a numeric value for attribute, got {other:?}"
                )));
            }
        };
        let op = match c.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            other => {
                return Err(QueryError::Invalid(format!(
                    "Invalid comparator '{other:?}' for a numeric attribute"
                )));
            }
        };
        Ok(format!("{col} {op} {v}"))
    }

    fn text_col(&mut self, col: &str, c: &Comparison) -> Result<String, QueryError> {
        let v = self.string(c)?;
        Ok(match c.op {
            Op::Eq => format!("{col} = {v}"),
            Op::Ne => format!("{col} != {v}"),
            Op::Like => format!("{col} LIKE {v}"),
            Op::ILike => format!("lower({col}) LIKE lower({v})"),
            other => {
                return Err(QueryError::Invalid(format!(
                    "Invalid comparator '{other:?}' for a string attribute"
                )));
            }
        })
    }

    fn comparison(&mut self, c: &Comparison) -> Result<String, QueryError> {
        match &c.field {
            Field::Tag(k) => self.kv("trace_tags", k, c),
            Field::Metadata(k) => self.kv("trace_metadata", k, c),
            Field::Attribute(a) => match a.as_str() {
                "timestamp_ms" => self.numeric("t.request_time", c),
                "execution_time_ms" => self.numeric("t.execution_time", c),
                "end_time_ms" => self.numeric("(t.request_time + t.execution_time)", c),
                "status" => self.text_col("t.state", c),
                "name" => self.text_col("t.name", c),
                "request_id" => self.text_col("t.trace_id", c),
                "client_request_id" => self.text_col("t.client_request_id", c),
                "run_id" => self.kv("trace_metadata", "mlflow.sourceRun", c),
                other => Err(QueryError::Invalid(format!(
                    "Invalid attribute key '{other}' specified."
                ))),
            },
        }
    }
}

impl Builder {
    /// The experiment, filter and free-text conditions of a search.
    fn conditions(
        &mut self,
        experiment_ids: &[i64],
        filter: Option<&Expr>,
        text: Option<&str>,
    ) -> Result<Vec<String>, QueryError> {
        let exps = Value::from(experiment_ids.to_vec()).to_string();
        let mut conds = vec![if let [one] = experiment_ids {
            // A single experiment as a plain equality lets SQLite walk the
            // (experiment_id, request_time) index in order.
            format!("t.experiment_id = {}", self.bind(*one))
        } else {
            format!(
                "t.experiment_id IN (SELECT value FROM json_each({}))",
                self.bind(exps)
            )
        }];
        if let Some(f) = filter {
            conds.push(self.expr(f)?);
        }
        if let Some(t) = text.map(str::trim).filter(|t| !t.is_empty()) {
            conds.push(self.text_match(t));
        }
        Ok(conds)
    }

    /// Interim free text: a case-insensitive substring of the trace name or
    /// its request/response previews. The tantivy index replaces this with
    /// real full-text search over every span; the UI's `q` box stays.
    fn text_match(&mut self, text: &str) -> String {
        let escaped: String = text
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let v = self.bind(format!("%{escaped}%"));
        format!(
            "(t.name LIKE {v} ESCAPE '\\' OR t.request_preview LIKE {v} ESCAPE '\\' \
             OR t.response_preview LIKE {v} ESCAPE '\\')"
        )
    }
}

/// A boolean SQL expression over `traces t` selecting what a search would
/// (without order or paging), with its parameters numbered from ?1; the
/// dashboard aggregates over it.
pub fn build_where(
    experiment_ids: &[i64],
    filter: Option<&Expr>,
    text: Option<&str>,
) -> Result<(String, Vec<SqlValue>), QueryError> {
    let mut b = Builder { params: Vec::new() };
    let conds = b.conditions(experiment_ids, filter, text)?;
    Ok((format!("({})", conds.join(" AND ")), b.params))
}

/// Builds the search statement: matching rows in order, one more than a
/// page so the caller knows whether another page follows.
pub fn build(
    experiment_ids: &[i64],
    filter: Option<&Expr>,
    text: Option<&str>,
    order: &[OrderKey],
    after: Option<&PageToken>,
    limit: usize,
) -> Result<Sql, QueryError> {
    let mut b = Builder { params: Vec::new() };
    let mut conds = b.conditions(experiment_ids, filter, text)?;
    let prims: Vec<(&str, bool)> = order
        .iter()
        .flat_map(|k| k.column.primitives(k.desc))
        .collect();
    if let Some(tok) = after {
        if tok.keys.len() != prims.len() {
            return Err(QueryError::PageToken(
                "the token belongs to a search with another order_by".into(),
            ));
        }
        conds.push(format!("t.id <= {}", b.bind(tok.high_water)));
        // (k1, k2, ...) strictly after (v1, v2, ...) in the sort order.
        let mut ors = Vec::new();
        for i in 0..prims.len() {
            let mut ands = Vec::new();
            for (j, (expr, _)) in prims.iter().enumerate().take(i) {
                let v = b.bind(json_to_sql(&tok.keys[j]));
                ands.push(format!("{expr} = {v}"));
            }
            let (expr, desc) = prims[i];
            let v = b.bind(json_to_sql(&tok.keys[i]));
            ands.push(format!("{expr} {} {v}", if desc { "<" } else { ">" }));
            ors.push(format!("({})", ands.join(" AND ")));
        }
        conds.push(format!("({})", ors.join(" OR ")));
    }
    let select_keys: Vec<&str> = prims.iter().map(|(e, _)| *e).collect();
    let order_sql: Vec<String> = prims
        .iter()
        .map(|(e, desc)| format!("{e} {}", if *desc { "DESC" } else { "ASC" }))
        .collect();
    let text = format!(
        "SELECT t.id, t.trace_id, {} FROM traces t WHERE {} ORDER BY {} LIMIT {}",
        select_keys.join(", "),
        conds.join(" AND "),
        order_sql.join(", "),
        limit + 1
    );
    Ok(Sql {
        text,
        params: b.params,
        n_keys: prims.len(),
        high_water: after.map(|a| a.high_water),
    })
}

/// A statement selecting one trace row if it matches `filter`.
pub fn build_match(filter: &Expr, trace_row: i64) -> Result<Sql, QueryError> {
    let mut b = Builder { params: Vec::new() };
    let id = b.bind(trace_row);
    let cond = b.expr(filter)?;
    Ok(Sql {
        text: format!("SELECT 1 FROM traces t WHERE t.id = {id} AND {cond}"),
        params: b.params,
        n_keys: 0,
        high_water: None,
    })
}

pub fn execute_match(conn: &Connection, sql: &Sql) -> Result<bool, StoreError> {
    let mut stmt = conn.prepare_cached(&sql.text)?;
    Ok(stmt.exists(rusqlite::params_from_iter(sql.params.iter()))?)
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

/// Runs the statement; returns matching rows and the high-water row id the
/// search saw (for the first page's token).
pub fn execute(conn: &Connection, sql: &Sql) -> Result<(Vec<RowKey>, i64), StoreError> {
    let high_water = match sql.high_water {
        Some(h) => h,
        None => conn.query_row("SELECT coalesce(max(id), 0) FROM traces", [], |r| r.get(0))?,
    };
    let mut stmt = conn.prepare_cached(&sql.text)?;
    let mut q = stmt.query(rusqlite::params_from_iter(sql.params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = q.next()? {
        let id: i64 = r.get(0)?;
        if sql.high_water.is_none() && id > high_water {
            continue; // created after this search's snapshot point
        }
        let mut keys = Vec::with_capacity(sql.n_keys);
        for i in 0..sql.n_keys {
            keys.push(sql_to_json(r.get_ref(2 + i)?));
        }
        out.push(RowKey {
            id,
            trace_id: r.get(1)?,
            sort_keys: keys,
        });
    }
    Ok((out, high_water))
}
