//! Reading a judge model's answer: a JSON object with `result` and
//! `rationale`, however the model wrapped it — markdown code fences (as
//! MLflow strips them), prose before or after the object, raw newlines in
//! strings (Python's `json.loads(strict=False)`), or no JSON at all but
//! `result: yes` style fields. Anything else is an error that keeps the raw
//! text, so an unparseable answer is recorded, never a crash.
//!
//! Pure functions; no I/O.

use serde_json::{Map, Value};

/// The model's verdict before judge-specific normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub result: Value,
    pub rationale: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("Failed to parse response from judge model. Response: {raw}")]
    Unparseable { raw: String },
    #[error("The judge model's response has no 'result' field. Response: {raw}")]
    NoResult { raw: String },
}

/// MLflow's `_strip_markdown_code_blocks`.
pub fn strip_code_fences(text: &str) -> String {
    let cleaned = text.trim();
    if cleaned.starts_with("```") {
        let lines: Vec<&str> = cleaned.split('\n').collect();
        if lines.len() == 1 {
            let s = cleaned.trim_start_matches("```");
            let s = s.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_' || c == '-');
            return s.trim_end_matches("```").trim().to_string();
        }
        let mut end = lines.len();
        let mut closed = false;
        for (i, line) in lines.iter().enumerate().skip(1) {
            if line.trim() == "```" {
                end = i;
                closed = true;
                break;
            }
        }
        let mut body: Vec<String> = lines[1..end].iter().map(|s| s.to_string()).collect();
        if !closed
            && let Some(last) = body.last_mut()
            && last.trim_end().ends_with("```")
        {
            let t = last.trim_end();
            *last = t[..t.len() - 3].to_string();
        }
        return body.join("\n").trim().to_string();
    }
    // A ```json block after some preamble.
    if let Some(start) = cleaned.find("```json") {
        let after = &cleaned[start + 7..];
        if let Some(end) = after.find("```") {
            return after[..end].trim().to_string();
        }
    }
    cleaned.to_string()
}

/// Escapes raw control characters inside JSON strings (what Python's
/// `strict=False` tolerates and serde_json does not).
fn escape_controls_in_strings(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut escaped = false;
    for c in s.chars() {
        if in_str {
            if escaped {
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_str = false;
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        } else {
            if c == '"' {
                in_str = true;
            }
            out.push(c);
        }
    }
    out
}

fn parse_object(s: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(o)) => Some(o),
        Ok(_) => None,
        Err(_) => match serde_json::from_str::<Value>(&escape_controls_in_strings(s)) {
            Ok(Value::Object(o)) => Some(o),
            _ => None,
        },
    }
}

/// Balanced `{...}` spans of the text (string-aware), in order.
fn object_candidates(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(off) = text[start..].find('{') {
        let s = start + off;
        let mut depth = 0i32;
        let mut in_str = false;
        let mut escaped = false;
        let mut end = None;
        for (i, &b) in bytes.iter().enumerate().skip(s) {
            if in_str {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_str = false;
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(e) => {
                out.push(&text[s..=e]);
                start = e + 1;
            }
            None => start = s + 1,
        }
    }
    out
}

fn get_ci<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn rationale_text(v: Option<&Value>) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    // MLflow drops the chain-of-thought opener its prompts ask for.
    Some(s.replace("Let's think step by step. ", ""))
}

fn verdict_from(o: &Map<String, Value>) -> Option<Verdict> {
    let result = get_ci(o, "result")?.clone();
    Some(Verdict {
        result,
        rationale: rationale_text(get_ci(o, "rationale")),
    })
}

/// `result: yes` / `Result = "no"` lines, for models that ignore the JSON
/// instruction entirely.
fn field_lines(text: &str) -> Option<Verdict> {
    let mut result = None;
    let mut rationale = None;
    for line in text.lines() {
        let l = line.trim().trim_start_matches(['*', '-', '#', ' ']);
        let Some((k, v)) = l.split_once([':', '=']) else {
            continue;
        };
        let k = k.trim().trim_matches(['*', '"', '\'']).to_ascii_lowercase();
        let v = v.trim().trim_matches(['*', '"', '\'', ',', '.']).trim();
        if k == "result" && result.is_none() && !v.is_empty() {
            result = Some(Value::String(v.to_string()));
        } else if k == "rationale" && rationale.is_none() {
            rationale = Some(v.to_string());
        }
    }
    Some(Verdict {
        result: result?,
        rationale,
    })
}

/// Parses a judge model's answer.
pub fn parse_verdict(text: &str) -> Result<Verdict, ParseError> {
    let stripped = strip_code_fences(text);
    let mut first_object = false;
    if let Some(o) = parse_object(&stripped) {
        if let Some(v) = verdict_from(&o) {
            return Ok(v);
        }
        first_object = true;
    }
    for c in object_candidates(&stripped) {
        if let Some(o) = parse_object(c) {
            if let Some(v) = verdict_from(&o) {
                return Ok(v);
            }
            first_object = true;
        }
    }
    if let Some(v) = field_lines(&stripped) {
        return Ok(v);
    }
    let raw = text.to_string();
    Err(if first_object {
        ParseError::NoResult { raw }
    } else {
        ParseError::Unparseable { raw }
    })
}

/// MLflow's affirmative and negative words (`judges/constants.py`).
const AFFIRMATIVE: &[&str] = &[
    "true",
    "pass",
    "passed",
    "correct",
    "success",
    "1",
    "1.0",
    "yes",
    "y",
    "yea",
    "yeah",
    "affirmative",
    "absolutely",
    "certainly",
    "indeed",
    "sure",
    "ok",
    "okay",
    "agree",
    "accepted",
    "right",
    "positive",
    "accurate",
    "valid",
    "validity",
    "confirmed",
    "approved",
    "complete",
    "completed",
    "good",
    "great",
    "excellent",
    "active",
    "enabled",
    "on",
    "present",
    "found",
    "match",
    "matched",
    "validated",
    "approve",
    "accept",
    "pos",
];
const NEGATIVE: &[&str] = &[
    "false",
    "fail",
    "failed",
    "incorrect",
    "failure",
    "0",
    "0.0",
    "no",
    "n",
    "nah",
    "nope",
    "negative",
    "reject",
    "rejected",
    "disagree",
    "not approved",
    "invalid",
    "inaccurate",
    "wrong",
    "declined",
    "denied",
    "incomplete",
    "bad",
    "poor",
    "inactive",
    "disabled",
    "off",
    "missing",
    "absent",
    "notfound",
    "mismatch",
    "mismatched",
    "none",
    "null",
    "nil",
    "deny",
    "disapprove",
    "disapproved",
    "neg",
];

/// A builtin judge's value: `"yes"`, `"no"` or `"unknown"` (MLflow's
/// CategoricalRating), also accepting booleans and MLflow's yes/no synonyms.
pub fn categorical(v: &Value) -> &'static str {
    let s = match v {
        Value::Bool(true) => return "yes",
        Value::Bool(false) => return "no",
        Value::String(s) => s.trim().to_ascii_lowercase(),
        Value::Number(n) => n.to_string(),
        _ => return "unknown",
    };
    let s = s.trim_matches(['.', '!', '"', '\'']);
    if s == "yes" || s == "no" || s == "unknown" {
        return match s {
            "yes" => "yes",
            "no" => "no",
            _ => "unknown",
        };
    }
    if AFFIRMATIVE.contains(&s) {
        "yes"
    } else if NEGATIVE.contains(&s) {
        "no"
    } else {
        "unknown"
    }
}

/// Coerces a make_judge result toward its declared type where the intent is
/// unambiguous (`"Yes"` for an enum `["yes","no"]`, `"true"` for a boolean);
/// otherwise the value is kept as the model gave it, as MLflow does.
pub fn coerce_to_type(v: Value, schema: &Value) -> Value {
    if let Some(Value::Array(options)) = schema.get("enum")
        && let Value::String(s) = &v
    {
        let t = s.trim();
        if let Some(hit) = options
            .iter()
            .find(|o| o.as_str().is_some_and(|o| o.eq_ignore_ascii_case(t)))
        {
            return hit.clone();
        }
        return v;
    }
    match (schema.get("type").and_then(Value::as_str), &v) {
        (Some("boolean"), Value::String(s)) => match categorical(&Value::String(s.clone())) {
            "yes" => Value::Bool(true),
            "no" => Value::Bool(false),
            _ => v,
        },
        (Some("integer"), Value::String(s)) => {
            s.trim().parse::<i64>().map(Value::from).unwrap_or(v)
        }
        (Some("number"), Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(v),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_json() {
        let v =
            parse_verdict(r#"{"rationale": "Let's think step by step. Fine.", "result": "yes"}"#)
                .unwrap();
        assert_eq!(v.result, json!("yes"));
        assert_eq!(v.rationale.as_deref(), Some("Fine."));
    }

    #[test]
    fn fenced_and_prose() {
        let v =
            parse_verdict("```json\n{\"result\": \"no\", \"rationale\": \"rude\"}\n```").unwrap();
        assert_eq!(v.result, json!("no"));
        let v =
            parse_verdict("Sure! Here is my verdict:\n```json\n{\"result\": \"yes\"}\n```\nBye")
                .unwrap();
        assert_eq!(v.result, json!("yes"));
        let v = parse_verdict("I think {\"a\": {\"b\": 1}} and then {\"result\": true, \"rationale\": \"x {y}\"} done")
            .unwrap();
        assert_eq!(v.result, json!(true));
        assert_eq!(v.rationale.as_deref(), Some("x {y}"));
        let v = parse_verdict("```{\"result\": \"yes\"}```").unwrap();
        assert_eq!(v.result, json!("yes"));
    }

    #[test]
    fn raw_newlines_and_field_lines() {
        let v = parse_verdict("{\"result\": \"yes\", \"rationale\": \"line1\nline2\"}").unwrap();
        assert_eq!(v.rationale.as_deref(), Some("line1\nline2"));
        let v = parse_verdict("**Result:** No\n**Rationale:** it was rude").unwrap();
        assert_eq!(v.result, json!("No"));
        assert_eq!(v.rationale.as_deref(), Some("it was rude"));
    }

    #[test]
    fn garbage_is_an_error_with_the_raw_text() {
        let e = parse_verdict("I cannot decide.").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Failed to parse response from judge model. Response: I cannot decide."
        );
        assert!(matches!(
            parse_verdict("{\"verdict\": \"yes\"}"),
            Err(ParseError::NoResult { .. })
        ));
        assert!(parse_verdict("").is_err());
        assert!(parse_verdict("{{{{").is_err());
    }

    #[test]
    fn categorical_values() {
        assert_eq!(categorical(&json!("Yes")), "yes");
        assert_eq!(categorical(&json!("PASS")), "yes");
        assert_eq!(categorical(&json!(false)), "no");
        assert_eq!(categorical(&json!("maybe")), "unknown");
        assert_eq!(
            coerce_to_type(json!("YES"), &json!({"enum": ["yes", "no"]})),
            json!("yes")
        );
        assert_eq!(
            coerce_to_type(json!("true"), &json!({"type": "boolean"})),
            json!(true)
        );
    }
}
