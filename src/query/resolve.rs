//! What a parsed comparison means: MLflow's identifier resolution, key
//! remapping, value typing and per-key comparator rules
//! (`mlflow/utils/search_utils.py` `SearchTraceUtils`, and the dispatch in
//! `sqlalchemy_store._get_filter_clauses_for_search_traces`), turned into
//! typed predicates the planner can translate without further checks.
//!
//! Error messages keep MLflow's wording, with a fixed (sorted) order where
//! MLflow prints a Python set, and the position of the offending comparison
//! appended by `QueryError`'s display. Where MLflow answers 500 or has an
//! obvious bug, a clear 400 (or the evident intent) is used instead; each
//! such place says so.

use super::QueryError;
use super::ast::{Comparison, Expr, Literal, Op};
use super::lex::filter_error;

/// A resolved filter: the same tree shape, with predicates at the leaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Pred(Pred),
}

/// String comparators (also used for span fields, tags and metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Eq,
    Ne,
    Like,
    ILike,
    RLike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

/// A string test: `values` has one element for scalar operators, the list
/// for IN / NOT IN, none for IS [NOT] NULL.
#[derive(Debug, Clone, PartialEq)]
pub struct StrTest {
    pub op: StrOp,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl NumOp {
    pub fn sql(self) -> &'static str {
        match self {
            NumOp::Eq => "=",
            NumOp::Ne => "!=",
            NumOp::Lt => "<",
            NumOp::Le => "<=",
            NumOp::Gt => ">",
            NumOp::Ge => ">=",
        }
    }
}

/// A numeric attribute's operand. MLflow passes quoted strings through
/// (`timestamp_ms > '100'`), and SQLite's column affinity then compares
/// them as numbers; tracebox binds them the same way.
#[derive(Debug, Clone, PartialEq)]
pub enum NumVal {
    Int(i64),
    Float(f64),
    Text(String),
}

/// String-valued trace columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceCol {
    /// `request_id`: the trace id.
    TraceId,
    /// `status`: the raw TraceState string (`OK`, `ERROR`, `IN_PROGRESS`).
    State,
    ClientRequestId,
    /// The trace name (`name`, `tags.mlflow.traceName`).
    Name,
    /// `metadata.mlflow.trace.session`: the denormalised session column.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumCol {
    Timestamp,
    ExecutionTime,
    /// `timestamp_ms + coalesce(execution_time_ms, 0)`.
    EndTime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SpanField {
    Name,
    Type,
    /// `OK`, `ERROR` or `UNSET`.
    Status,
    /// `span.attributes.<name>`: the attribute's value.
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssessTest {
    /// `=`, `!=`, LIKE, ILIKE, RLIKE against the JSON-encoded value.
    Str(StrOp, String),
    /// `> >= < <=` against numeric values only.
    Num(NumOp, f64),
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Col {
        col: TraceCol,
        test: StrTest,
    },
    Num {
        col: NumCol,
        op: NumOp,
        value: NumVal,
    },
    Tag {
        key: String,
        test: StrTest,
    },
    Meta {
        key: String,
        test: StrTest,
    },
    /// `run_id = 'x'`: metadata `mlflow.sourceRun`.
    RunId(String),
    /// `prompt = "name/version"`: the `mlflow.linkedPrompts` tag lists it.
    Prompt {
        name: String,
        version: String,
    },
    /// A span-level test; span tests ANDed together must hold for one span.
    Span(SpanField, StrTest),
    /// `trace.text` / `span.content` LIKE: answered from the full-text
    /// index; a span-level test like the others.
    Text {
        pattern: String,
    },
    Assessment {
        /// `feedback` or `expectation`.
        kind: &'static str,
        name: String,
        test: AssessTest,
    },
    /// `issue.id = 'x'`.
    Issue(String),
}

impl Pred {
    pub fn is_span_level(&self) -> bool {
        matches!(self, Pred::Span(..) | Pred::Text { .. })
    }
}

/// Python's `repr` of a set of strings, sorted so messages are stable
/// (MLflow's order changes with the hash seed).
fn pyset(items: &[&str]) -> String {
    let mut v: Vec<&str> = items.to_vec();
    v.sort_unstable();
    v.dedup();
    let inner: Vec<String> = v.iter().map(|s| format!("'{s}'")).collect();
    format!("{{{}}}", inner.join(", "))
}

const ENTITIES: &[&str] = &[
    "attribute",
    "attributes",
    "expectation",
    "feedback",
    "issue",
    "metadata",
    "request_metadata",
    "span",
    "tag",
    "tags",
    "trace",
];
const ATTRIBUTE_KEYS: &[&str] = &[
    "request_id",
    "timestamp",
    "timestamp_ms",
    "execution_time",
    "execution_time_ms",
    "end_time",
    "end_time_ms",
    "status",
    "client_request_id",
    "name",
    "run_id",
    "prompt",
    "text",
];
pub(super) const NUMERIC_ATTRIBUTES: &[&str] = &[
    "timestamp_ms",
    "timestamp",
    "execution_time_ms",
    "execution_time",
    "end_time_ms",
    "end_time",
];
const IN_KEYS: &[&str] = &[
    "name",
    "status",
    "request_id",
    "run_id",
    "client_request_id",
];
const TAG_OPS: &[&str] = &[
    "!=",
    "=",
    "LIKE",
    "ILIKE",
    "RLIKE",
    "IS NULL",
    "IS NOT NULL",
];
const STRING_ATTR_OPS: &[&str] = &["!=", "=", "IN", "NOT IN", "LIKE", "ILIKE", "RLIKE"];
const NUMERIC_ATTR_OPS: &[&str] = &[">", ">=", "!=", "=", "<", "<="];
const SPAN_OPS: &[&str] = &["!=", "=", "IN", "NOT IN", "LIKE", "ILIKE", "RLIKE"];
const SPAN_CONTENT_OPS: &[&str] = &["LIKE", "ILIKE"];
const METADATA_OPS: &[&str] = &[
    "!=",
    "=",
    "LIKE",
    "ILIKE",
    "RLIKE",
    "IS NULL",
    "IS NOT NULL",
];
const ASSESSMENT_OPS: &[&str] = &[
    "!=",
    "=",
    ">",
    ">=",
    "<",
    "<=",
    "LIKE",
    "ILIKE",
    "RLIKE",
    "IS NULL",
    "IS NOT NULL",
];
const RESERVED_METADATA: &[&str] = &["mlflow.trace.tokenUsage", "mlflow.trace.cost"];

pub(super) const TRACE_NAME_TAG: &str = "mlflow.traceName";
const LINKED_PROMPTS_TAG: &str = "mlflow.linkedPrompts";
const SOURCE_RUN: &str = "mlflow.sourceRun";
const SESSION_KEY: &str = "mlflow.trace.session";

/// The canonical entity type of a prefix (`tags` -> `tag`).
pub(super) fn canonical_entity(prefix: &str) -> Option<&'static str> {
    Some(match prefix {
        "tag" | "tags" => "tag",
        "attribute" | "attributes" | "trace" => "attribute",
        "request_metadata" | "metadata" => "request_metadata",
        "span" => "span",
        "feedback" => "feedback",
        "expectation" => "expectation",
        "issue" => "issue",
        _ => return None,
    })
}

fn trim_backticks(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        s[1..s.len() - 1].replace("``", "`")
    } else {
        s.to_string()
    }
}

/// MLflow's `_strip_quotes` for keys: one pair of matching outer quotes.
fn strip_quotes(s: &str) -> String {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// An identifier split into MLflow's (type, key), validated like
/// `SearchUtils._get_identifier` with the given set of attribute keys.
pub(super) fn split_identifier(
    ident: &str,
    valid_attribute_keys: &[&str],
) -> Result<(&'static str, String), String> {
    let (entity, key) = match ident.split_once('.') {
        None => ("attribute", trim_backticks(ident)),
        Some((prefix, rest)) => {
            let prefix = trim_backticks(prefix);
            let entity = canonical_entity(&prefix).ok_or_else(|| {
                format!(
                    "Invalid entity type '{prefix}'. Valid values are {}",
                    pyset(ENTITIES)
                )
            })?;
            let key = if entity == "span" && rest.starts_with("attributes.") {
                // The attribute name keeps its quotes here; trimmed below.
                rest.to_string()
            } else {
                trim_backticks(&strip_quotes(rest))
            };
            (entity, key)
        }
    };
    if entity == "attribute" && !valid_attribute_keys.contains(&key.as_str()) {
        return Err(format!(
            "Invalid attribute key '{key}' specified. Valid keys are '{}'",
            pyset(valid_attribute_keys)
        ));
    }
    Ok((entity, key))
}

/// Resolves a parsed filter, checking every comparison.
pub fn resolve(expr: &Expr) -> Result<Cond, QueryError> {
    Ok(match expr {
        Expr::And(parts) => Cond::And(parts.iter().map(resolve).collect::<Result<_, _>>()?),
        Expr::Or(parts) => Cond::Or(parts.iter().map(resolve).collect::<Result<_, _>>()?),
        Expr::Cmp(c) => Cond::Pred(resolve_comparison(c)?),
    })
}

/// The typed value of a comparison per the pre-remap entity type
/// (`SearchTraceUtils._get_value` and `_validate_assessment_comparison_value`).
enum Val {
    Str(String),
    Num(NumVal),
    List(Vec<String>),
    None,
}

fn resolve_comparison(c: &Comparison) -> Result<Pred, QueryError> {
    let at_ident = |m: String| filter_error(m, c.pos, &c.ident);
    let at_value = |m: String| filter_error(m, c.value_pos, &c.value_text);
    let (entity, key) = split_identifier(&c.ident, ATTRIBUTE_KEYS).map_err(at_ident)?;
    let op = c.op.as_str().to_string();
    if key.is_empty() && !matches!(entity, "feedback" | "expectation" | "span") {
        return Err(at_ident(format!(
            "Invalid filter: empty key in '{}'",
            c.ident
        )));
    }

    // 1. Value typing by the entity as written.
    let val = match (&c.value, entity) {
        (Literal::None, _) => Val::None,
        (Literal::Str(s), "feedback" | "expectation")
            if matches!(c.op, Op::Gt | Op::Ge | Op::Lt | Op::Le) =>
        {
            return Err(at_value(format!(
                "Expected a numeric value for {entity} when using comparator '{op}'. Got value {}",
                c.value_text
            )));
        }
        (Literal::Str(s), _) => Val::Str(s.clone()),
        (Literal::Int(_) | Literal::Float(_), "feedback" | "expectation") => {
            if !matches!(c.op, Op::Gt | Op::Ge | Op::Lt | Op::Le) {
                return Err(at_value(format!(
                    "Expected a quoted string value for {entity} (e.g. 'my-value'). Got value {}",
                    c.value_text
                )));
            }
            Val::Num(num_val(&c.value))
        }
        (Literal::Int(_) | Literal::Float(_), "attribute") => {
            if !NUMERIC_ATTRIBUTES.contains(&key.as_str()) {
                return Err(at_value(format!(
                    "Only the '{}' attributes support comparison with numeric values.",
                    pyset(NUMERIC_ATTRIBUTES)
                )));
            }
            Val::Num(num_val(&c.value))
        }
        (Literal::Int(_) | Literal::Float(_), _) => {
            return Err(at_value(format!(
                "Expected a quoted string value for {entity} (e.g. 'my-value'). Got value {}",
                c.value_text
            )));
        }
        (Literal::List(items), "attribute") => {
            if !IN_KEYS.contains(&key.as_str()) {
                return Err(at_value(format!(
                    "Only attributes in {} supports comparison with a list of quoted string values.",
                    pyset(IN_KEYS)
                )));
            }
            Val::List(items.clone())
        }
        (Literal::List(items), "tag" | "span") => Val::List(items.clone()),
        (Literal::List(_), _) => {
            return Err(at_value(format!(
                "Expected a quoted string value for {entity} (e.g. 'my-value'). Got value {}",
                c.value_text
            )));
        }
    };
    // IN / NOT IN need a list and nothing else takes one (MLflow would
    // hand a tuple to SQLAlchemy and fail with a 500).
    match (&c.op, &val) {
        (Op::In | Op::NotIn, Val::List(_)) | (Op::IsNull | Op::IsNotNull, Val::None) => {}
        (Op::In | Op::NotIn, _) => {
            return Err(at_value(format!(
                "Comparator '{op}' takes a parenthesised list of quoted strings, e.g. ('a', 'b'). Got value {}",
                c.value_text
            )));
        }
        (_, Val::List(_)) => {
            return Err(at_value(format!(
                "Comparator '{op}' takes a single value; only IN and NOT IN take a list. Got value {}",
                c.value_text
            )));
        }
        _ => {}
    }

    // 2. Key remapping (`_replace_key_to_tag_or_metadata`): every type but
    // span, by the lower-cased key.
    let (entity, key) = if entity == "span" {
        (entity, key)
    } else {
        match key.to_lowercase().as_str() {
            "name" => ("tag", TRACE_NAME_TAG.to_string()),
            "prompt" => ("tag", LINKED_PROMPTS_TAG.to_string()),
            "run_id" => ("request_metadata", SOURCE_RUN.to_string()),
            "text" => ("span", "content".to_string()),
            "timestamp" => (entity, "timestamp_ms".to_string()),
            "execution_time" => (entity, "execution_time_ms".to_string()),
            "end_time" => (entity, "end_time_ms".to_string()),
            _ => (entity, key),
        }
    };

    let str_test =
        |allowed: &[&str], msg: &dyn Fn(&str) -> String| -> Result<StrTest, QueryError> {
            if !allowed.contains(&op.as_str()) {
                return Err(filter_error(msg(&op), c.pos, &c.op_text));
            }
            let (sop, values) = match (&c.op, &val) {
                (Op::Eq, Val::Str(s)) => (StrOp::Eq, vec![s.clone()]),
                (Op::Ne, Val::Str(s)) => (StrOp::Ne, vec![s.clone()]),
                (Op::Like, Val::Str(s)) => (StrOp::Like, vec![s.clone()]),
                (Op::ILike, Val::Str(s)) => (StrOp::ILike, vec![s.clone()]),
                (Op::RLike, Val::Str(s)) => {
                    check_regex(s).map_err(|e| filter_error(e, c.value_pos, &c.value_text))?;
                    (StrOp::RLike, vec![s.clone()])
                }
                (Op::In, Val::List(v)) => (StrOp::In, v.clone()),
                (Op::NotIn, Val::List(v)) => (StrOp::NotIn, v.clone()),
                (Op::IsNull, Val::None) => (StrOp::IsNull, vec![]),
                (Op::IsNotNull, Val::None) => (StrOp::IsNotNull, vec![]),
                _ => {
                    return Err(filter_error(
                        format!(
                            "Expected a quoted string value for comparator '{op}'. Got value {}",
                            c.value_text
                        ),
                        c.value_pos,
                        &c.value_text,
                    ));
                }
            };
            Ok(StrTest { op: sop, values })
        };

    // 3. Dispatch in MLflow's order.
    match entity {
        "issue" => {
            if key != "id" {
                return Err(at_ident(format!(
                    "Invalid issue attribute '{key}'. Supported attributes: id"
                )));
            }
            let t = str_test(&["="], &|o| {
                format!("issue.id comparator '{o}' not one of '{}'", pyset(&["="]))
            })?;
            Ok(Pred::Issue(t.values.into_iter().next().unwrap_or_default()))
        }
        "attribute" => {
            if NUMERIC_ATTRIBUTES.contains(&key.as_str()) {
                // MLflow prints the *string* comparator set here and drops
                // the closing quote (search_utils.py:662-671); tracebox
                // prints the numeric set.
                let Some(nop) = (match c.op {
                    Op::Eq => Some(NumOp::Eq),
                    Op::Ne => Some(NumOp::Ne),
                    Op::Lt => Some(NumOp::Lt),
                    Op::Le => Some(NumOp::Le),
                    Op::Gt => Some(NumOp::Gt),
                    Op::Ge => Some(NumOp::Ge),
                    _ => None,
                }) else {
                    return Err(filter_error(
                        format!(
                            "Invalid comparator '{op}' not one of '{}'",
                            pyset(NUMERIC_ATTR_OPS)
                        ),
                        c.pos,
                        &c.op_text,
                    ));
                };
                let value = match val {
                    Val::Num(n) => n,
                    Val::Str(s) => NumVal::Text(s),
                    _ => unreachable_value(c)?,
                };
                let col = match key.as_str() {
                    "timestamp_ms" => NumCol::Timestamp,
                    "execution_time_ms" => NumCol::ExecutionTime,
                    _ => NumCol::EndTime,
                };
                return Ok(Pred::Num {
                    col,
                    op: nop,
                    value,
                });
            }
            let test = str_test(STRING_ATTR_OPS, &|o| {
                format!(
                    "Invalid comparator '{o}' not one of '{}'",
                    pyset(STRING_ATTR_OPS)
                )
            })?;
            let col = match key.as_str() {
                "request_id" => TraceCol::TraceId,
                "status" => TraceCol::State,
                "client_request_id" => TraceCol::ClientRequestId,
                other => {
                    return Err(at_ident(format!(
                        "Invalid attribute key '{other}' specified. Valid keys are '{}'",
                        pyset(ATTRIBUTE_KEYS)
                    )));
                }
            };
            Ok(Pred::Col { col, test })
        }
        "tag" => {
            // MLflow drops the closing quote of this message (search_utils.py:637).
            let tag_msg =
                |o: &str| format!("Invalid comparator '{o}' not one of '{}'", pyset(TAG_OPS));
            if key == TRACE_NAME_TAG {
                let test = str_test(TAG_OPS, &tag_msg)?;
                return Ok(Pred::Col {
                    col: TraceCol::Name,
                    test,
                });
            }
            if key == LINKED_PROMPTS_TAG {
                if !matches!(c.op, Op::Eq) {
                    return Err(filter_error(
                        format!(
                            "Invalid comparator '{op}' for prompts filter. Only '=' is supported \
                             with format: prompt = \"name/version\""
                        ),
                        c.pos,
                        &c.op_text,
                    ));
                }
                let v = match &val {
                    Val::Str(s) => s.clone(),
                    _ => unreachable_value(c)?,
                };
                let parts: Vec<&str> = v.split('/').collect();
                if parts.len() != 2 {
                    return Err(at_value(format!(
                        "Invalid prompts filter value '{v}'. Expected format: prompt = \"name/version\""
                    )));
                }
                return Ok(Pred::Prompt {
                    name: parts[0].to_string(),
                    version: parts[1].to_string(),
                });
            }
            let test = str_test(TAG_OPS, &tag_msg)?;
            Ok(Pred::Tag { key, test })
        }
        "request_metadata" => {
            let meta_msg = |o: &str| {
                format!(
                    "Invalid comparator '{o}' not one of '{}'",
                    pyset(METADATA_OPS)
                )
            };
            if RESERVED_METADATA.contains(&key.as_str())
                && !matches!(c.op, Op::Eq | Op::Ne | Op::IsNull | Op::IsNotNull)
            {
                return Err(filter_error(
                    format!(
                        "Comparator '{op}' is not supported for reserved metadata '{key}'. Only \
                         '=', '!=', 'IS NULL', and 'IS NOT NULL' are supported."
                    ),
                    c.pos,
                    &c.op_text,
                ));
            }
            let test = str_test(METADATA_OPS, &meta_msg)?;
            if key == SESSION_KEY {
                return Ok(Pred::Col {
                    col: TraceCol::Session,
                    test,
                });
            }
            if key == SOURCE_RUN && test.op == StrOp::Eq {
                return Ok(Pred::RunId(test.values[0].clone()));
            }
            Ok(Pred::Meta { key, test })
        }
        "span" => {
            // MLflow checks the comparator as typed here (so `like` fails for
            // span keys only); tracebox accepts any case, as for other keys.
            let span_msg = |k: &str, allowed: &[&str]| {
                let k = k.to_string();
                let set = pyset(allowed);
                move |o: &str| format!("span.{k} comparator '{o}' not one of '{set}'")
            };
            if let Some(attr) = key.strip_prefix("attributes.") {
                if attr.is_empty() {
                    return Err(at_ident(
                        "Span attribute name cannot be empty after 'attributes.'".into(),
                    ));
                }
                let name = trim_backticks(attr);
                let test = str_test(SPAN_OPS, &span_msg(&key, SPAN_OPS))?;
                return Ok(Pred::Span(SpanField::Attribute(name), test));
            }
            let field = match key.as_str() {
                "name" => SpanField::Name,
                "type" => SpanField::Type,
                "status" => SpanField::Status,
                "content" => {
                    let test = str_test(SPAN_CONTENT_OPS, &span_msg(&key, SPAN_CONTENT_OPS))?;
                    return Ok(Pred::Text {
                        pattern: test.values.into_iter().next().unwrap_or_default(),
                    });
                }
                other => {
                    return Err(at_ident(format!(
                        "Invalid span attribute '{other}'. Supported attributes: name, status, \
                         type, attributes.<attribute_name>."
                    )));
                }
            };
            let test = str_test(SPAN_OPS, &span_msg(&key, SPAN_OPS))?;
            Ok(Pred::Span(field, test))
        }
        "feedback" | "expectation" => {
            let kind: &'static str = if entity == "feedback" {
                "feedback"
            } else {
                "expectation"
            };
            if key.is_empty() {
                return Err(at_ident("Assessment field name cannot be empty".into()));
            }
            if !ASSESSMENT_OPS.contains(&op.as_str()) {
                return Err(filter_error(
                    format!(
                        "assessment.{key} comparator '{op}' not one of '{}'",
                        pyset(ASSESSMENT_OPS)
                    ),
                    c.pos,
                    &c.op_text,
                ));
            }
            let test = match (&c.op, val) {
                (Op::IsNull, _) => AssessTest::IsNull,
                (Op::IsNotNull, _) => AssessTest::IsNotNull,
                (Op::Gt | Op::Ge | Op::Lt | Op::Le, Val::Num(n)) => {
                    let x = match n {
                        NumVal::Int(i) => i as f64,
                        NumVal::Float(f) => f,
                        NumVal::Text(_) => unreachable_value(c)?,
                    };
                    let nop = match c.op {
                        Op::Gt => NumOp::Gt,
                        Op::Ge => NumOp::Ge,
                        Op::Lt => NumOp::Lt,
                        _ => NumOp::Le,
                    };
                    AssessTest::Num(nop, x)
                }
                (o, Val::Str(s)) => {
                    let sop = match o {
                        Op::Eq => StrOp::Eq,
                        Op::Ne => StrOp::Ne,
                        Op::Like => StrOp::Like,
                        Op::ILike => StrOp::ILike,
                        _ => {
                            check_regex(&s)
                                .map_err(|e| filter_error(e, c.value_pos, &c.value_text))?;
                            StrOp::RLike
                        }
                    };
                    AssessTest::Str(sop, s)
                }
                _ => unreachable_value(c)?,
            };
            Ok(Pred::Assessment {
                kind,
                name: key,
                test,
            })
        }
        other => Err(at_ident(format!(
            "Invalid search expression type '{other}'"
        ))),
    }
}

fn num_val(l: &Literal) -> NumVal {
    match l {
        Literal::Int(i) => NumVal::Int(*i),
        Literal::Float(f) => NumVal::Float(*f),
        _ => NumVal::Float(f64::NAN),
    }
}

/// A value kind that earlier checks should have excluded; reported as a
/// plain 400 rather than trusted.
fn unreachable_value<T>(c: &Comparison) -> Result<T, QueryError> {
    Err(filter_error(
        format!(
            "Unsupported value {} for comparator '{}'",
            c.value_text, c.op_text
        ),
        c.value_pos,
        &c.value_text,
    ))
}

/// RLIKE patterns are Python regexes in MLflow, where an invalid one
/// silently matches nothing; tracebox uses the `regex` crate (no
/// look-around or back-references) and reports a pattern it cannot compile.
fn check_regex(p: &str) -> Result<(), String> {
    regex::Regex::new(p).map(|_| ()).map_err(|e| {
        format!(
            "Invalid regular expression '{p}' for RLIKE: {}",
            e.to_string().lines().last().unwrap_or("invalid pattern")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse::parse_filter;

    fn pred(s: &str) -> Pred {
        match resolve(&parse_filter(s).unwrap().unwrap()).unwrap() {
            Cond::Pred(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn err(s: &str) -> String {
        let e = parse_filter(s).and_then(|e| resolve(&e.unwrap()));
        match e {
            Err(QueryError::Filter { message, .. }) => message,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn st(op: StrOp, v: &[&str]) -> StrTest {
        StrTest {
            op,
            values: v.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The example table of /work/notes/filter-spec.md §8.
    #[test]
    fn spec_examples() {
        assert_eq!(
            pred("trace.status = 'OK'"),
            Pred::Col {
                col: TraceCol::State,
                test: st(StrOp::Eq, &["OK"])
            }
        );
        let Cond::And(v) = resolve(
            &parse_filter("status = \"OK\" AND timestamp > 1700000000000")
                .unwrap()
                .unwrap(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            v[1],
            Cond::Pred(Pred::Num {
                col: NumCol::Timestamp,
                op: NumOp::Gt,
                value: NumVal::Int(1_700_000_000_000)
            })
        );
        assert_eq!(
            pred("trace.end_time < 20"),
            Pred::Num {
                col: NumCol::EndTime,
                op: NumOp::Lt,
                value: NumVal::Int(20)
            }
        );
        assert_eq!(
            pred("trace.text ILIKE '%Hello%'"),
            Pred::Text {
                pattern: "%Hello%".into()
            }
        );
        assert_eq!(
            err("trace.text = 'hello'"),
            "span.content comparator '=' not one of '{'ILIKE', 'LIKE'}'"
        );
        assert_eq!(
            pred("tags.`model name` != 'gpt'"),
            Pred::Tag {
                key: "model name".into(),
                test: st(StrOp::Ne, &["gpt"])
            }
        );
        assert_eq!(
            pred("metadata.user IS NOT NULL"),
            Pred::Meta {
                key: "user".into(),
                test: st(StrOp::IsNotNull, &[])
            }
        );
        assert_eq!(
            err("tags.env > 'a'"),
            "Invalid comparator '>' not one of '{'!=', '=', 'ILIKE', 'IS NOT NULL', 'IS NULL', 'LIKE', 'RLIKE'}'"
        );
        assert!(err("tags.env IN ('a','b')").starts_with("Invalid comparator 'IN' not one of"));
        assert_eq!(
            pred("status IN ('OK', 'ERROR')"),
            Pred::Col {
                col: TraceCol::State,
                test: st(StrOp::In, &["OK", "ERROR"])
            }
        );
        assert_eq!(
            err("status = 5"),
            "Only the '{'end_time', 'end_time_ms', 'execution_time', 'execution_time_ms', 'timestamp', 'timestamp_ms'}' attributes support comparison with numeric values."
        );
        assert!(
            err("trace.state = 'OK'")
                .starts_with("Invalid attribute key 'state' specified. Valid keys are '{")
        );
        assert!(
            err("assessment.x = 'y'")
                .starts_with("Invalid entity type 'assessment'. Valid values are {")
        );
        assert_eq!(
            pred("name = 'chat'"),
            Pred::Col {
                col: TraceCol::Name,
                test: st(StrOp::Eq, &["chat"])
            }
        );
        assert_eq!(pred("run_id = 'abc123'"), Pred::RunId("abc123".into()));
        assert_eq!(
            err("prompt = 'qa'"),
            "Invalid prompts filter value 'qa'. Expected format: prompt = \"name/version\""
        );
        assert_eq!(
            err("prompt LIKE 'qa/%'"),
            "Invalid comparator 'LIKE' for prompts filter. Only '=' is supported with format: prompt = \"name/version\""
        );
        assert_eq!(
            pred("prompt = 'qa/2'"),
            Pred::Prompt {
                name: "qa".into(),
                version: "2".into()
            }
        );
        assert_eq!(
            err("span.foo = 'x'"),
            "Invalid span attribute 'foo'. Supported attributes: name, status, type, attributes.<attribute_name>."
        );
        assert_eq!(
            pred("feedback.correct = 'true'"),
            Pred::Assessment {
                kind: "feedback",
                name: "correct".into(),
                test: AssessTest::Str(StrOp::Eq, "true".into())
            }
        );
        assert_eq!(
            err("feedback.score > '0.5'"),
            "Expected a numeric value for feedback when using comparator '>'. Got value '0.5'"
        );
        assert_eq!(
            err("feedback.score = 5"),
            "Expected a quoted string value for feedback (e.g. 'my-value'). Got value 5"
        );
        assert_eq!(
            pred("feedback.score >= 3"),
            Pred::Assessment {
                kind: "feedback",
                name: "score".into(),
                test: AssessTest::Num(NumOp::Ge, 3.0)
            }
        );
        assert_eq!(
            err("issue.id != 'iss-1'"),
            "issue.id comparator '!=' not one of '{'='}'"
        );
        assert_eq!(
            pred("tags.Name = 'x'"),
            Pred::Col {
                col: TraceCol::Name,
                test: st(StrOp::Eq, &["x"])
            }
        );
        assert_eq!(
            err("tags.env = 5"),
            "Expected a quoted string value for tag (e.g. 'my-value'). Got value 5"
        );
    }

    #[test]
    fn remaps_spans_and_specials() {
        assert_eq!(
            pred("span.attributes.`mlflow.spanType` = 'LLM'"),
            Pred::Span(
                SpanField::Attribute("mlflow.spanType".into()),
                st(StrOp::Eq, &["LLM"])
            )
        );
        assert_eq!(
            err("span.attributes. = 'x'"),
            "Span attribute name cannot be empty after 'attributes.'"
        );
        assert_eq!(
            pred("span.name like '%chat%'"),
            Pred::Span(SpanField::Name, st(StrOp::Like, &["%chat%"]))
        );
        assert!(err("span.name IS NULL").starts_with("span.name comparator 'IS NULL' not one of"));
        assert_eq!(
            pred("metadata.`mlflow.trace.session` = 's1'"),
            Pred::Col {
                col: TraceCol::Session,
                test: st(StrOp::Eq, &["s1"])
            }
        );
        assert_eq!(
            pred("tags.text LIKE '%x%'"),
            Pred::Text {
                pattern: "%x%".into()
            }
        );
        assert_eq!(
            pred("tags.timestamp = 'x'"),
            Pred::Tag {
                key: "timestamp_ms".into(),
                test: st(StrOp::Eq, &["x"])
            }
        );
        assert_eq!(
            pred("trace.timestamp_ms > '100'"),
            Pred::Num {
                col: NumCol::Timestamp,
                op: NumOp::Gt,
                value: NumVal::Text("100".into())
            }
        );
        assert!(
            err("metadata.`mlflow.trace.cost` LIKE '%1%'")
                .starts_with("Comparator 'LIKE' is not supported for reserved metadata")
        );
        assert!(err("status RLIKE '(unclosed'").starts_with("Invalid regular expression"));
        assert!(err("status <> 'OK'").starts_with("Invalid comparator '<>' not one of"));
        assert!(err("TAGS.x = 'y'").starts_with("Invalid entity type 'TAGS'"));
        assert!(err("Status = 'OK'").starts_with("Invalid attribute key 'Status'"));
        assert_eq!(
            err("feedback. = 'x'"),
            "Assessment field name cannot be empty"
        );
    }
}
