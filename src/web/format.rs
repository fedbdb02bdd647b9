//! Human-readable numbers, durations and times for the pages, and short
//! text previews of trace inputs and outputs.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::chat;

/// `850 ms`, `1.24 s`, `2m 03s`, `1h 02m`.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1.0 {
        if ms <= 0.0 {
            return "0 ms".into();
        }
        return format!("{:.2} ms", ms);
    }
    if ms < 1000.0 {
        return format!("{} ms", ms.round() as i64);
    }
    let s = ms / 1000.0;
    if s < 60.0 {
        return if s < 10.0 {
            format!("{s:.2} s")
        } else {
            format!("{s:.1} s")
        };
    }
    let total = s.round() as i64;
    if total < 3600 {
        return format!("{}m {:02}s", total / 60, total % 60);
    }
    format!("{}h {:02}m", total / 3600, (total % 3600) / 60)
}

pub fn duration_ns(ns: i64) -> String {
    duration_ms(ns as f64 / 1e6)
}

/// `12,345`.
pub fn int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `950`, `12.3k`, `4.5M`.
pub fn compact(n: f64) -> String {
    let a = n.abs();
    if a >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else if a.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

pub fn percent(f: f64) -> String {
    let p = f * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p < 0.1 {
        "<0.1%".into()
    } else if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Machine-readable instant for `<time datetime>` (the page's script shows
/// it in the reader's time zone).
pub fn iso(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2026-11-25 10:31:02 UTC`, shown until the script localises it.
pub fn datetime(ms: i64) -> String {
    utc(ms).format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `5 min ago`, `3 days ago`.
pub fn ago(ms: i64, now_ms: i64) -> String {
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => {
            let d = s / 86_400;
            if d == 1 {
                "yesterday".into()
            } else {
                format!("{d} days ago")
            }
        }
    }
}

/// At most `n` characters, with an ellipsis when cut.
pub fn truncate(s: &str, n: usize) -> String {
    let mut it = s.char_indices();
    match it.nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Whitespace runs collapsed to one space (for one-line previews).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keys whose text is usually what a call was about.
const TEXT_KEYS: &[&str] = &[
    "question", "query", "input", "prompt", "message", "text", "content", "answer", "output",
    "response", "result",
];

/// The telling text of an object: a well-known text field, the only
/// field, or `key: value` pairs of scalars.
fn object_preview(o: &serde_json::Map<String, Value>) -> Option<String> {
    for k in TEXT_KEYS {
        if let Some(Value::String(s)) = o.get(*k) {
            return Some(s.clone());
        }
    }
    if o.len() == 1
        && let Some(Value::String(s)) = o.values().next()
    {
        return Some(s.clone());
    }
    if o.values().all(|v| !v.is_object() && !v.is_array()) {
        return Some(
            o.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    None
}

/// What a request or response preview says, readably, on one line: the
/// last user message or the assistant's answer when it is a chat, a telling
/// text field, the value itself when it is a single string, compact JSON
/// otherwise. Previews are cut at 1000 characters and may not parse; then
/// the raw text is shown.
pub fn preview_text(raw: &str, is_request: bool) -> String {
    let text = match serde_json::from_str::<Value>(raw) {
        Ok(v) => {
            let chat = if is_request {
                chat::last_user_text(&v)
            } else {
                chat::assistant_text(&v)
            };
            chat.unwrap_or_else(|| match &v {
                Value::String(s) => s.clone(),
                Value::Object(o) => object_preview(o).unwrap_or_else(|| v.to_string()),
                other => other.to_string(),
            })
        }
        Err(_) => raw.to_string(),
    };
    one_line(&text)
}

/// A piece of a snippet; `hit` pieces match the searched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub text: String,
    pub hit: bool,
}

/// `text` cut into parts, the byte ranges `marks` (sorted, not
/// overlapping, on character boundaries, as the full-text highlighter
/// returns them) marked as hits.
pub fn marked(text: &str, marks: &[(usize, usize)]) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut at = 0;
    for &(a, b) in marks {
        let (Some(before), Some(hit)) = (text.get(at..a), text.get(a..b)) else {
            continue;
        };
        if !before.is_empty() {
            parts.push(Part {
                text: before.to_string(),
                hit: false,
            });
        }
        parts.push(Part {
            text: hit.to_string(),
            hit: true,
        });
        at = b;
    }
    if let Some(rest) = text.get(at..).filter(|r| !r.is_empty()) {
        parts.push(Part {
            text: rest.to_string(),
            hit: false,
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview(raw: &str, is_request: bool, n: usize) -> String {
        truncate(&preview_text(raw, is_request), n)
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(int(-12), "-12");
        assert_eq!(int(999), "999");
        assert_eq!(compact(12345.0), "12k");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(7.0), "7");
        assert_eq!(duration_ms(850.0), "850 ms");
        assert_eq!(duration_ms(1240.0), "1.24 s");
        assert_eq!(duration_ms(123_000.0), "2m 03s");
        assert_eq!(duration_ms(3_720_000.0), "1h 02m");
        assert_eq!(percent(0.1234), "12%");
        assert_eq!(percent(0.0123), "1.2%");
    }

    #[test]
    fn marked_parts_follow_the_ranges() {
        let text = "the Refund policy: refunds";
        let parts = marked(text, &[(4, 10), (19, 26)]);
        let hits: Vec<&str> = parts
            .iter()
            .filter(|p| p.hit)
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(hits, vec!["Refund", "refunds"]);
        assert_eq!(
            parts.iter().map(|p| p.text.as_str()).collect::<String>(),
            text
        );
        assert_eq!(
            marked("short", &[]),
            vec![Part {
                text: "short".into(),
                hit: false
            }]
        );
        // Ranges that do not fit the text are skipped, not a panic.
        assert_eq!(marked("ab", &[(1, 9)]).len(), 1);
    }

    #[test]
    fn previews_read_like_text() {
        let req = r#"{"messages": [{"role": "user", "content": "What is  MLflow?"}]}"#;
        assert_eq!(preview(req, true, 100), "What is MLflow?");
        let resp = r#"{"choices": [{"message": {"role": "assistant", "content": "A platform"}}]}"#;
        assert_eq!(preview(resp, false, 100), "A platform");
        assert_eq!(preview(r#"{"question": "q1"}"#, true, 100), "q1");
        assert_eq!(
            preview(r#"{"user": "u", "question": "q2", "n": 1}"#, true, 100),
            "q2"
        );
        assert_eq!(preview(r#"{"a": 1, "b": "x"}"#, true, 100), "a: 1, b: x");
        assert_eq!(preview("{\"a\": [1, 2", true, 100), "{\"a\": [1, 2");
        assert_eq!(preview("\"abcdef\"", true, 3), "abc…");
    }
}
