//! The searchable text of a span: its name, the text of its inputs and
//! outputs (chat messages when they are chat-shaped, else every string in
//! the JSON), and its exception messages.
//!
//! Here, in the domain, because two layers need the very same text: the
//! store hands it, computed off the writer thread from the values it has
//! just encoded, to whoever follows its commits (the full-text indexer);
//! the index computes it from rows read back from SQLite when it catches up
//! or rebuilds, and to highlight matches. A span must read the same both
//! ways, or a rebuilt index would answer differently from the live one.

use serde_json::{Map, Value};

use super::SpanEvent;
use super::chat;

/// Most bytes of text taken from one field (the rest is not searchable).
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

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

/// `s` cut to [`MAX_FIELD_BYTES`] at a character boundary.
pub fn truncate(mut s: String) -> String {
    if s.len() > MAX_FIELD_BYTES {
        let mut cut = MAX_FIELD_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The text of an inputs or outputs value: its chat messages when
/// `messages` finds some, else every string in it.
pub fn value_text(v: &Value, messages: fn(&Value) -> Option<Vec<chat::ChatMessage>>) -> String {
    let text = match messages(v) {
        Some(m) if !m.is_empty() => messages_text(&m),
        _ => {
            let mut out = String::new();
            push_leaves(v, &mut out);
            out
        }
    };
    truncate(text)
}

/// Exception types and messages of `exception` events (given as name and
/// attributes), then the status message unless an exception already said it.
pub fn exception_text<'a>(
    events: impl Iterator<Item = (&'a str, Option<&'a Map<String, Value>>)>,
    status_message: Option<&str>,
) -> String {
    let mut out = String::new();
    for (name, attrs) in events {
        if name != "exception" {
            continue;
        }
        for key in ["exception.type", "exception.message"] {
            if let Some(t) = attrs.and_then(|a| a.get(key)).and_then(Value::as_str) {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(t);
            }
        }
    }
    if let Some(m) = status_message.filter(|m| !m.is_empty())
        && !out.contains(m)
    {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(m);
    }
    truncate(out)
}

/// The non-empty searchable fields of a span, in display order, from its
/// name and the texts of its inputs, outputs ([`value_text`]) and
/// exceptions ([`exception_text`]).
pub fn fields(
    name: &str,
    inputs: Option<String>,
    outputs: Option<String>,
    exception: String,
) -> Vec<FieldText> {
    let mut out = Vec::with_capacity(4);
    out.push(FieldText {
        field: "name",
        text: name.to_string(),
    });
    out.extend(inputs.map(|text| FieldText {
        field: "inputs",
        text,
    }));
    out.extend(outputs.map(|text| FieldText {
        field: "outputs",
        text,
    }));
    out.push(FieldText {
        field: "exception",
        text: exception,
    });
    out.retain(|f| !f.text.trim().is_empty());
    out
}

/// [`fields`] of a span as the domain holds it.
pub fn span_fields(
    name: &str,
    inputs: Option<&Value>,
    outputs: Option<&Value>,
    events: &[SpanEvent],
    status_message: &str,
) -> Vec<FieldText> {
    let exception = exception_text(
        events
            .iter()
            .map(|e| (e.name.as_str(), Some(&e.attributes))),
        Some(status_message),
    );
    fields(
        name,
        inputs.map(|v| value_text(v, chat::input_messages)),
        outputs.map(|v| value_text(v, chat::output_messages)),
        exception,
    )
}
