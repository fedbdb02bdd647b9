//! `order_by` clauses: MLflow's parsing rules
//! (`SearchUtils._parse_order_by_string`, `_get_orderby_clauses_for_search_traces`)
//! and tracebox's sort keys, with MLflow's tie-breakers appended.

use super::QueryError;
use super::lex::{Tok, lex};
use super::resolve::{TRACE_NAME_TAG, split_identifier};

const ORDER_BY_KEYS: &[&str] = &[
    "experiment_id",
    "timestamp",
    "timestamp_ms",
    "execution_time",
    "execution_time_ms",
    "end_time",
    "end_time_ms",
    "status",
    "request_id",
    "name",
    "run_id",
];

/// Something traces can be sorted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Timestamp,
    ExecutionTime,
    /// `timestamp_ms + coalesce(execution_time_ms, 0)`. MLflow answers 500
    /// for it (`getattr(SqlTraceInfo, 'end_time_ms')`); tracebox sorts.
    EndTime,
    Status,
    TraceId,
    ExperimentId,
    Name,
    Session,
    /// By the tag's value, lexicographically; traces without it last.
    Tag(String),
    /// By the metadata value, lexicographically; traces without it last.
    Meta(String),
}

impl SortKey {
    /// Whether the key can be NULL (those sort last in both directions).
    pub fn nullable(&self) -> bool {
        matches!(
            self,
            SortKey::ExecutionTime
                | SortKey::Name
                | SortKey::Session
                | SortKey::Tag(_)
                | SortKey::Meta(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub key: SortKey,
    pub desc: bool,
}

fn unparsable(c: &str) -> QueryError {
    QueryError::Invalid(format!(
        "Invalid order_by clause '{c}'. Could not be parsed."
    ))
}

fn parse_clause(c: &str) -> Result<(SortKey, bool, (String, String)), QueryError> {
    if c.is_empty() || c.trim() != c {
        return Err(unparsable(c));
    }
    let toks = lex(c).map_err(|_| unparsable(c))?;
    let (ident, dir) = match toks.as_slice() {
        [id] => (id, None),
        [id, d] => (id, Some(d)),
        _ => return Err(unparsable(c)),
    };
    let ident = match &ident.tok {
        Tok::Ident(s) => s.clone(),
        Tok::Backtick(s) => format!("`{s}`"),
        _ => return Err(unparsable(c)),
    };
    let desc = match dir {
        None => false,
        Some(d) => match (&d.tok, d.text.to_lowercase().as_str()) {
            (Tok::Ident(_), "asc") => false,
            (Tok::Ident(_), "desc") => true,
            (Tok::Ident(_), _) => {
                return Err(QueryError::Invalid(format!(
                    "Invalid ordering key in order_by clause '{c}'."
                )));
            }
            _ => return Err(unparsable(c)),
        },
    };
    let (entity, key) = split_identifier(&ident, ORDER_BY_KEYS).map_err(QueryError::Invalid)?;
    let remap = if entity == "span" {
        String::new()
    } else {
        key.to_lowercase()
    };
    let (entity, key) = match remap.as_str() {
        "name" => ("tag", TRACE_NAME_TAG.to_string()),
        "prompt" => ("tag", "mlflow.linkedPrompts".to_string()),
        "run_id" => ("request_metadata", "mlflow.sourceRun".to_string()),
        "text" => ("span", "content".to_string()),
        "timestamp" => (entity, "timestamp_ms".to_string()),
        "execution_time" => (entity, "execution_time_ms".to_string()),
        "end_time" => (entity, "end_time_ms".to_string()),
        _ => (entity, key),
    };
    let sort = match entity {
        "attribute" => match key.as_str() {
            "timestamp_ms" => SortKey::Timestamp,
            "execution_time_ms" => SortKey::ExecutionTime,
            "end_time_ms" => SortKey::EndTime,
            "status" => SortKey::Status,
            "request_id" => SortKey::TraceId,
            "experiment_id" => SortKey::ExperimentId,
            other => {
                return Err(QueryError::Invalid(format!(
                    "Invalid order_by attribute key '{other}'"
                )));
            }
        },
        "tag" if key == TRACE_NAME_TAG => SortKey::Name,
        "tag" => SortKey::Tag(key.clone()),
        "request_metadata" => match key.as_str() {
            "mlflow.trace.session" => SortKey::Session,
            "mlflow.trace.tokenUsage" | "mlflow.trace.cost" => {
                return Err(QueryError::Invalid(format!(
                    "Ordering by reserved metadata '{key}' is not supported because it is \
                     represented by multiple columns."
                )));
            }
            _ => SortKey::Meta(key.clone()),
        },
        other => {
            return Err(QueryError::Invalid(format!(
                "Invalid identifier type '{other}'"
            )));
        }
    };
    Ok((sort, desc, (entity.to_string(), key)))
}

/// Parses `order_by` and appends MLflow's tie-breakers
/// (`timestamp_ms DESC, request_id ASC`) unless already present.
pub fn parse_order_by(clauses: &[String]) -> Result<Vec<OrderKey>, QueryError> {
    let mut keys: Vec<OrderKey> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for c in clauses {
        let (key, desc, id) = parse_clause(c)?;
        if seen.contains(&id) || keys.iter().any(|k| k.key == key) {
            // MLflow raises this without an error code (HTTP 500).
            let list: Vec<String> = clauses.iter().map(|c| format!("'{c}'")).collect();
            return Err(QueryError::Invalid(format!(
                "`order_by` contains duplicate fields: [{}]",
                list.join(", ")
            )));
        }
        seen.push(id);
        keys.push(OrderKey { key, desc });
    }
    for (key, desc) in [(SortKey::Timestamp, true), (SortKey::TraceId, false)] {
        if !keys.iter().any(|k| k.key == key) {
            keys.push(OrderKey { key, desc });
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &[&str]) -> Vec<OrderKey> {
        parse_order_by(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn err(v: &[&str]) -> String {
        parse_order_by(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn mlflow_order_rules() {
        assert_eq!(
            keys(&[]),
            vec![
                OrderKey {
                    key: SortKey::Timestamp,
                    desc: true
                },
                OrderKey {
                    key: SortKey::TraceId,
                    desc: false
                }
            ]
        );
        assert_eq!(
            keys(&["execution_time DESC"])[0],
            OrderKey {
                key: SortKey::ExecutionTime,
                desc: true
            }
        );
        assert_eq!(
            keys(&["timestamp ASC"]),
            vec![
                OrderKey {
                    key: SortKey::Timestamp,
                    desc: false
                },
                OrderKey {
                    key: SortKey::TraceId,
                    desc: false
                }
            ]
        );
        assert_eq!(keys(&["name"])[0].key, SortKey::Name);
        assert_eq!(
            keys(&["tags.`a b` desc"])[0].key,
            SortKey::Tag("a b".into())
        );
        assert_eq!(
            keys(&["run_id"])[0].key,
            SortKey::Meta("mlflow.sourceRun".into())
        );
        assert_eq!(
            keys(&["metadata.`mlflow.trace.session`"])[0].key,
            SortKey::Session
        );
        assert_eq!(
            err(&["tags.foo DESCENDING"]),
            "Invalid ordering key in order_by clause 'tags.foo DESCENDING'."
        );
        assert_eq!(
            err(&["status, name"]),
            "Invalid order_by clause 'status, name'. Could not be parsed."
        );
        assert_eq!(
            err(&["  status  "]),
            "Invalid order_by clause '  status  '. Could not be parsed."
        );
        assert_eq!(
            err(&["status DESC ASC"]),
            "Invalid order_by clause 'status DESC ASC'. Could not be parsed."
        );
        assert!(
            err(&["client_request_id"])
                .starts_with("Invalid attribute key 'client_request_id' specified.")
        );
        assert_eq!(err(&["span.name"]), "Invalid identifier type 'span'");
        assert_eq!(
            err(&["timestamp", "timestamp_ms DESC"]),
            "`order_by` contains duplicate fields: ['timestamp', 'timestamp_ms DESC']"
        );
    }
}
