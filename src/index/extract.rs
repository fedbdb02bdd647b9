//! The searchable text of a span: its name, the text of its inputs and
//! outputs (chat messages when they are chat-shaped, else every string in
//! the JSON), and its exception messages. Used both to index and to
//! highlight, so a highlighted snippet shows exactly what matched.

use serde_json::Value;

use crate::domain::chat;
use crate::store::index_feed::SpanText;

/// Most bytes of text taken from one field (the rest is not searchable).
const MAX_FIELD_BYTES: usize = 64 * 1024;

/// One searchable field of a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldText {
    /// `name`, `inputs`, `outputs` or `exception`.
    pub field: &'static str,
    pub text: String,
}

fn push_leaves(v: &Value, out: &mut String) {
    if out.len() >= MAX_FIELD_BYTES {
        return;
    }
    match v {
        Value::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        Value::Array(a) => a.iter().for_each(|x| push_leaves(x, out)),
        Value::Object(o) => o.values().for_each(|x| push_leaves(x, out)),
        _ => {}
    }
}

fn messages_text(msgs: &[chat::ChatMessage]) -> String {
    let mut out = String::new();
    for m in msgs {
        for piece in std::iter::once(m.content.as_str()).chain(
            m.tool_calls
                .iter()
                .flat_map(|t| [t.name.as_str(), t.arguments.as_str()]),
        ) {
            if piece.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(piece);
        }
    }
    out
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_FIELD_BYTES {
        let mut cut = MAX_FIELD_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn json_text(raw: &str, messages: fn(&Value) -> Option<Vec<chat::ChatMessage>>) -> String {
    let Ok(v) = serde_json::from_str::<Value>(raw) else {
        return truncate(raw.to_string());
    };
    let text = match messages(&v) {
        Some(m) if !m.is_empty() => messages_text(&m),
        _ => {
            let mut out = String::new();
            push_leaves(&v, &mut out);
            out
        }
    };
    truncate(text)
}

fn exception_text(s: &SpanText) -> String {
    let mut out = String::new();
    if let Some(ev) = s
        .events
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
    {
        for e in ev.as_array().into_iter().flatten() {
            if e["name"] != "exception" {
                continue;
            }
            for key in ["exception.type", "exception.message"] {
                if let Some(t) = e["attributes"][key].as_str() {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(t);
                }
            }
        }
    }
    if let Some(m) = s.status_message.as_deref().filter(|m| !m.is_empty())
        && !out.contains(m)
    {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(m);
    }
    truncate(out)
}

/// The non-empty searchable fields of a span, in display order.
pub fn span_fields(s: &SpanText) -> Vec<FieldText> {
    let mut out = vec![FieldText {
        field: "name",
        text: s.name.clone(),
    }];
    if let Some(i) = &s.inputs {
        out.push(FieldText {
            field: "inputs",
            text: json_text(i, chat::input_messages),
        });
    }
    if let Some(o) = &s.outputs {
        out.push(FieldText {
            field: "outputs",
            text: json_text(o, chat::output_messages),
        });
    }
    out.push(FieldText {
        field: "exception",
        text: exception_text(s),
    });
    out.retain(|f| !f.text.trim().is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_plain_json_and_exceptions() {
        let s = SpanText {
            id: 1,
            trace: 1,
            span_id: "00".into(),
            name: "llm".into(),
            inputs: Some(
                r#"{"model":"gpt","messages":[{"role":"system","content":"be kind"},{"role":"user","content":"where is my refund?"}]}"#
                    .into(),
            ),
            outputs: Some(r#"{"answer": "soon", "n": 3, "docs": ["a doc"]}"#.into()),
            events: Some(
                r#"[{"name":"exception","time_unix_nano":1,"attributes":{"exception.type":"ValueError","exception.message":"order 7 not found"}}]"#
                    .into(),
            ),
            status_message: Some("ValueError: order 7 not found".into()),
        };
        let f = span_fields(&s);
        assert_eq!(f[0].text, "llm");
        assert_eq!(f[1].text, "be kind\nwhere is my refund?");
        assert_eq!(f[2].text, "soon\na doc");
        assert_eq!(
            f[3].text,
            "ValueError\norder 7 not found\nValueError: order 7 not found"
        );
    }
}
