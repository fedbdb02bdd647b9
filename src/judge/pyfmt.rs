//! Python's text renderings of JSON values, reproduced so judge prompts are
//! byte-identical to the ones MLflow builds: `str(value)` (repr: single
//! quotes, `True`, `None`), `json.dumps(value)` (`", "`/`": "` separators,
//! ASCII-escaped), `json.dumps(value, indent=2, ensure_ascii=False)`, and
//! MLflow's `parse_inputs_to_str` / `parse_outputs_to_str`.
//!
//! Owns formatting only; knows nothing of traces, models or storage.

use serde_json::{Map, Value};

/// Python's `repr(float)` for finite values: shortest round-trip digits,
/// fixed notation for decimal exponents in (-4, 16], else `1e-05`/`1e+16`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "1.5e16", "-1e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Value = 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-decpt) as usize));
            out.push_str(&digits);
        } else if decpt as usize >= digits.len() {
            out.push_str(&digits);
            out.push_str(&"0".repeat(decpt as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    }
    out
}

fn number_repr(n: &serde_json::Number) -> String {
    if n.is_f64() {
        float_repr(n.as_f64().unwrap_or_default())
    } else {
        n.to_string()
    }
}

/// Whether Python's `str.isprintable` holds for `c` (an approximation of the
/// Unicode tables: control, format, separator and private-use characters are
/// not printable; the ASCII space is).
fn py_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() {
        return false;
    }
    !matches!(c as u32,
        0xA0 | 0xAD | 0x1680 | 0x180E | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F
        | 0x3000 | 0xD800..=0xDFFF | 0xE000..=0xF8FF | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xF0000..=0x10FFFF)
}

/// Python's `repr(str)`.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_printable(c) => out.push(c),
            c => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `str(value)` of the value `json.loads` would give.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr(value)` of the value `json.loads` would give.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => number_repr(n),
        Value::String(s) => str_repr(s),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(py_repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", str_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn json_str(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn dumps_into(v: &Value, ascii: bool, indent: Option<usize>, level: usize, out: &mut String) {
    let nl = |out: &mut String, level: usize| {
        if let Some(w) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(w * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_repr(n)),
        Value::String(s) => json_str(s, ascii, out),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                nl(out, level + 1);
                dumps_into(x, ascii, indent, level + 1, out);
            }
            nl(out, level);
            out.push(']');
        }
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                nl(out, level + 1);
                json_str(k, ascii, out);
                out.push_str(": ");
                dumps_into(x, ascii, indent, level + 1, out);
            }
            nl(out, level);
            out.push('}');
        }
    }
}

/// Python's `json.dumps(value)`.
pub fn json_dumps(v: &Value) -> String {
    let mut out = String::new();
    dumps_into(v, true, None, 0, &mut out);
    out
}

/// Python's `json.dumps(value, indent=2, ensure_ascii=False)`.
pub fn json_dumps_pretty(v: &Value) -> String {
    let mut out = String::new();
    dumps_into(v, false, Some(2), 0, &mut out);
    out
}

/// MLflow's `parse_inputs_to_str`: what builtin judges show as the request.
pub fn inputs_to_str(v: Option<&Value>) -> String {
    let v = match v {
        None | Some(Value::Null) => return " ".into(),
        Some(Value::String(s)) => return s.clone(),
        Some(v) => v,
    };
    let Value::Object(o) = v else {
        return json_dumps(v);
    };
    if let Some(Value::Array(messages)) = o.get("messages")
        && !messages.is_empty()
    {
        let contents: Vec<Option<&Value>> = messages.iter().map(|m| m.get("content")).collect();
        let all_str = contents.iter().all(|c| matches!(c, Some(Value::String(_))));
        if contents.len() > 1 && all_str {
            return json_dumps(&Value::Array(messages.clone()));
        }
        if let Some(Some(Value::String(last))) = contents.last() {
            return last.clone();
        }
    }
    py_str(v)
}

fn last_content_str(messages: &[Value]) -> Option<&str> {
    messages.last()?.get("content")?.as_str()
}

/// MLflow's `parse_outputs_to_str`: what builtin judges show as the answer.
pub fn outputs_to_str(v: Option<&Value>) -> String {
    let v = match v {
        None | Some(Value::Null) => return " ".into(),
        Some(Value::String(s)) => return s.clone(),
        Some(Value::Array(a)) if !a.is_empty() => return outputs_to_str(a.first()),
        Some(v) => v,
    };
    let Value::Object(o) = v else {
        return json_dumps(v);
    };
    if let Some(Value::Array(choices)) = o.get("choices")
        && let Some(Value::Object(first)) = choices.first()
        && let Some(content) = first
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
    {
        return content.to_string();
    }
    if let Some(Value::Array(messages)) = o.get("messages")
        && let Some(content) = last_content_str(messages)
    {
        return content.to_string();
    }
    if let Some(Value::Array(output)) = o.get("output")
        && let Some(Value::Object(last)) = output.last()
        && last.get("type").and_then(Value::as_str) == Some("message")
        && last.contains_key("content")
    {
        return responses_content(output);
    }
    json_dumps(v)
}

fn responses_content(output: &[Value]) -> String {
    for item in output.iter().rev() {
        if item.get("role").and_then(Value::as_str) == Some("assistant")
            && let Some(content) = item.get("content")
        {
            match content {
                Value::String(s) => return s.clone(),
                Value::Array(parts) => {
                    for p in parts {
                        if let Value::Object(p) = p
                            && matches!(
                                p.get("type").and_then(Value::as_str),
                                Some("text") | Some("output_text")
                            )
                        {
                            return match p.get("text") {
                                Some(Value::String(t)) => t.clone(),
                                Some(other) => py_str(other),
                                None => json_dumps(&Value::Array(output.to_vec())),
                            };
                        }
                    }
                }
                _ => {}
            }
        }
    }
    json_dumps(&Value::Array(output.to_vec()))
}

/// A retrieved document as MLflow's judges see it: `{"content": ...,
/// "doc_uri": ...}` (doc_uri only when the chunk's metadata has one).
pub fn retrieval_chunk(chunk: &Value) -> Option<Value> {
    let o = chunk.as_object()?;
    let content = ["page_content", "content", "text"]
        .iter()
        .find_map(|k| o.get(*k))
        .cloned()
        .unwrap_or(Value::Null);
    let mut doc = Map::new();
    doc.insert("content".into(), content);
    if let Some(uri) = o
        .get("metadata")
        .and_then(Value::as_object)
        .and_then(|m| m.get("doc_uri"))
        .filter(|u| truthy(u))
    {
        doc.insert("doc_uri".into(), uri.clone());
    }
    Some(Value::Object(doc))
}

/// Python truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_like_python() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (-2.5e-7, "-2.5e-07"),
            (1.5e300, "1.5e+300"),
        ] {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn repr_like_python() {
        let v = json!({"question": "What's up?", "n": 1, "x": 1.5, "ok": true, "none": null,
                       "list": ["a", "b\nc"], "q": "say \"hi\" and 'bye'"});
        assert_eq!(
            py_repr(&v),
            r#"{'question': "What's up?", 'n': 1, 'x': 1.5, 'ok': True, 'none': None, 'list': ['a', 'b\nc'], 'q': 'say "hi" and \'bye\''}"#
        );
        assert_eq!(py_repr(&json!("é\u{1}")), "'é\\x01'");
    }

    #[test]
    fn dumps_like_python() {
        let v = json!({"a": [1, 2.0, "é"], "b": {}, "c": []});
        assert_eq!(
            json_dumps(&v),
            r#"{"a": [1, 2.0, "\u00e9"], "b": {}, "c": []}"#
        );
        assert_eq!(
            json_dumps_pretty(&v),
            "{\n  \"a\": [\n    1,\n    2.0,\n    \"é\"\n  ],\n  \"b\": {},\n  \"c\": []\n}"
        );
        assert_eq!(json_dumps(&json!("😀")), r#""\ud83d\ude00""#);
    }

    #[test]
    fn tricky_values_like_cpython() {
        // Expected strings printed by CPython 3.11 for the same JSON.
        let v: Value = serde_json::from_str(
            r#"{"a": [1e22, 0.30000000000000004, -0.0, 1.5e-7, 100.0], "s": "tab\there \u00e9\u2028 \\ back", "q": "it's \"quoted\"", "e": "\u007f\u0000"}"#,
        )
        .unwrap();
        assert_eq!(
            py_repr(&v),
            "{'a': [1e+22, 0.30000000000000004, -0.0, 1.5e-07, 100.0], 's': 'tab\\there \u{e9}\\u2028 \\\\ back', 'q': 'it\\'s \"quoted\"', 'e': '\\x7f\\x00'}"
        );
        assert_eq!(
            json_dumps(&v),
            "{\"a\": [1e+22, 0.30000000000000004, -0.0, 1.5e-07, 100.0], \"s\": \"tab\\there \\u00e9\\u2028 \\\\ back\", \"q\": \"it's \\\"quoted\\\"\", \"e\": \"\\u007f\\u0000\"}"
        );
        assert_eq!(
            json_dumps_pretty(&v),
            "{\n  \"a\": [\n    1e+22,\n    0.30000000000000004,\n    -0.0,\n    1.5e-07,\n    100.0\n  ],\n  \"s\": \"tab\\there \u{e9}\u{2028} \\\\ back\",\n  \"q\": \"it's \\\"quoted\\\"\",\n  \"e\": \"\u{7f}\\u0000\"\n}"
        );
    }

    #[test]
    fn inputs_and_outputs_like_mlflow() {
        assert_eq!(inputs_to_str(None), " ");
        assert_eq!(
            inputs_to_str(Some(&json!({"question": "q?"}))),
            "{'question': 'q?'}"
        );
        assert_eq!(
            inputs_to_str(Some(
                &json!({"messages": [{"role": "user", "content": "hi"}]})
            )),
            "hi"
        );
        assert_eq!(
            inputs_to_str(Some(
                &json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]})
            )),
            r#"[{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]"#
        );
        assert_eq!(
            outputs_to_str(Some(
                &json!({"choices": [{"message": {"role": "assistant", "content": "A"}}]})
            )),
            "A"
        );
        assert_eq!(outputs_to_str(Some(&json!(["first", "second"]))), "first");
        assert_eq!(
            outputs_to_str(Some(&json!({"answer": "x", "n": 2}))),
            r#"{"answer": "x", "n": 2}"#
        );
    }
}
