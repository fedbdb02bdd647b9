//! Limits on untrusted input beyond the body size: how big one attribute,
//! tag or metadata value may be (413) and how deeply a JSON value may nest
//! (400). Checked on decoded values, after MLflow's JSON-in-strings
//! encoding has been undone, so the limit means the same for OTLP protobuf,
//! OTLP/JSON and MLflow JSON. (Whole bodies are additionally bounded by
//! serde_json's and prost's own recursion limits, which keep parsing from
//! exhausting the stack.)
//!
//! Knows the domain types and `Limits`; not the wire formats.

use axum::http::StatusCode;
use serde_json::Value;

use super::error::{ApiError, ErrorCode};
use crate::config::Limits;
use crate::domain::{Assessment, Span, TraceInfo};

/// Approximate serialized size in bytes and nesting depth of a JSON value
/// (scalars are depth 0), computed without recursion or allocation per node.
pub fn measure(v: &Value) -> (usize, usize) {
    // Most attribute values are scalars: no stack for them (this runs on
    // every attribute of every span uploaded).
    match v {
        Value::Null | Value::Bool(_) => return (5, 0),
        Value::Number(_) => return (8, 0),
        Value::String(s) => return (s.len() + 2, 0),
        Value::Array(_) | Value::Object(_) => {}
    }
    let mut size = 0usize;
    let mut deepest = 0usize;
    let mut stack: Vec<(&Value, usize)> = Vec::with_capacity(16);
    stack.push((v, 0));
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match v {
            Value::Null | Value::Bool(_) => size += 5,
            Value::Number(_) => size += 8,
            Value::String(s) => size += s.len() + 2,
            Value::Array(a) => {
                size += 2 + a.len();
                stack.extend(a.iter().map(|x| (x, depth + 1)));
            }
            Value::Object(o) => {
                size += 2;
                for (k, x) in o {
                    size += k.len() + 4;
                    stack.push((x, depth + 1));
                }
            }
        }
    }
    (size, deepest)
}

fn too_big(what: &str, size: usize, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestLimitExceeded,
        format!("{what} is {size} bytes; the limit is {limit} bytes (--max-attribute-bytes)"),
    )
    .with_reason("attribute_too_large")
}

fn too_deep(what: &str, depth: usize, limit: usize) -> ApiError {
    ApiError::invalid(format!(
        "{what} is nested {depth} levels deep; the limit is {limit} (--max-nesting-depth)"
    ))
    .with_reason("too_deep")
}

/// Checks one value against both limits; `what` names it in the error.
pub fn check_value(
    what: impl FnOnce() -> String,
    v: &Value,
    limits: &Limits,
) -> Result<(), ApiError> {
    let (size, depth) = measure(v);
    if size > limits.max_attribute_bytes {
        return Err(too_big(&what(), size, limits.max_attribute_bytes));
    }
    if depth > limits.max_nesting_depth {
        return Err(too_deep(&what(), depth, limits.max_nesting_depth));
    }
    Ok(())
}

fn check_text(what: impl FnOnce() -> String, s: &str, limits: &Limits) -> Result<(), ApiError> {
    if s.len() > limits.max_attribute_bytes {
        return Err(too_big(&what(), s.len(), limits.max_attribute_bytes));
    }
    Ok(())
}

/// Attributes, inputs, outputs and event attributes of decoded spans.
pub fn check_spans(spans: &[Span], limits: &Limits) -> Result<(), ApiError> {
    for s in spans {
        check_text(
            || format!("the name of span '{}'", s.span_id.to_hex()),
            &s.name,
            limits,
        )?;
        if let Some(v) = &s.inputs {
            check_value(|| format!("the inputs of span '{}'", s.name), v, limits)?;
        }
        if let Some(v) = &s.outputs {
            check_value(|| format!("the outputs of span '{}'", s.name), v, limits)?;
        }
        for (k, v) in &s.attributes {
            check_value(
                || format!("attribute '{k}' of span '{}'", s.name),
                v,
                limits,
            )?;
        }
        for e in &s.events {
            for (k, v) in &e.attributes {
                check_value(
                    || format!("attribute '{k}' of event '{}' of span '{}'", e.name, s.name),
                    v,
                    limits,
                )?;
            }
        }
    }
    Ok(())
}

/// Tags, metadata and previews of client-sent trace info.
pub fn check_trace_info(info: &TraceInfo, limits: &Limits) -> Result<(), ApiError> {
    for (k, v) in &info.tags {
        check_text(|| format!("tag '{k}'"), v, limits)?;
    }
    for (k, v) in &info.metadata {
        check_text(|| format!("metadata '{k}'"), v, limits)?;
    }
    for (name, v) in [
        ("request_preview", &info.request_preview),
        ("response_preview", &info.response_preview),
    ] {
        if let Some(v) = v {
            check_text(|| name.to_string(), v, limits)?;
        }
    }
    Ok(())
}

/// An assessment's value, rationale and metadata.
pub fn check_assessment(a: &Assessment, limits: &Limits) -> Result<(), ApiError> {
    if let Some(v) = &a.value {
        check_value(
            || format!("the value of assessment '{}'", a.name),
            v,
            limits,
        )?;
    }
    if let Some(r) = &a.rationale {
        check_text(
            || format!("the rationale of assessment '{}'", a.name),
            r,
            limits,
        )?;
    }
    for (k, v) in &a.metadata {
        check_text(
            || format!("metadata '{k}' of assessment '{}'", a.name),
            v,
            limits,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn measures_size_and_depth() {
        assert_eq!(measure(&json!("abc")), (5, 0));
        assert_eq!(measure(&json!({"a": [1, {"b": null}]})).1, 3);
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert_eq!(measure(&deep).1, 100);
        let limits = Limits {
            max_nesting_depth: 64,
            ..Limits::default()
        };
        let e = check_value(|| "x".into(), &deep, &limits).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.contains("nested 100 levels"), "{}", e.message);
        let small = Limits {
            max_attribute_bytes: 10,
            ..Limits::default()
        };
        let e = check_value(|| "y".into(), &json!("0123456789abc"), &small).unwrap_err();
        assert_eq!(e.status.as_u16(), 413);
    }
}
