//! The searchable text of a span: its name, the text of its inputs and
//! outputs (chat messages when they are chat-shaped, else every string in
//! the JSON), and its exception messages. Used both to index and to
//! highlight, so a highlighted snippet shows exactly what matched.

use serde_json::Value;

use crate::domain::chat;
use crate::domain::searchable::{self, exception_text, truncate, value_text};
use crate::store::index_feed::SpanText;

pub use crate::domain::searchable::FieldText;

fn json_text(raw: &str, messages: fn(&Value) -> Option<Vec<chat::ChatMessage>>) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => value_text(&v, messages),
        // Stored inputs are JSON this server wrote; rows from before that
        // was checked are searched as the text they are.
        Err(_) => truncate(raw.to_string()),
    }
}

/// The non-empty searchable fields of a span read from SQLite, in display
/// order: the same text the store handed the indexer when it committed the
/// span (see `domain::searchable`).
pub fn span_fields(s: &SpanText) -> Vec<FieldText> {
    let events = s
        .events
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok());
    let exception = exception_text(
        events.iter().flat_map(|ev| {
            ev.as_array().into_iter().flatten().map(|e| {
                (
                    e.get("name").and_then(Value::as_str).unwrap_or_default(),
                    e.get("attributes").and_then(Value::as_object),
                )
            })
        }),
        s.status_message.as_deref(),
    );
    searchable::fields(
        &s.name,
        s.inputs
            .as_deref()
            .map(|i| json_text(i, chat::input_messages)),
        s.outputs
            .as_deref()
            .map(|o| json_text(o, chat::output_messages)),
        exception,
    )
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
