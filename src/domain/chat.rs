//! Chat messages found in span inputs and outputs, whatever provider or
//! convention shaped them: OpenAI chat completions and Responses, Anthropic
//! messages, OpenTelemetry GenAI message parts, and the `{"messages": [...]}`
//! form that `semconv` builds from OpenInference and Traceloop attributes.
//! The UI renders these as a chat; judges read conversations from them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    /// Arguments as JSON text (as providers send them).
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// For tool results: the call they answer.
    pub tool_call_id: Option<String>,
}

/// Part types that are not the message's text: the model's private
/// reasoning and tool calls (read separately by `tool_calls`).
const NON_TEXT_PARTS: &[&str] = &[
    "reasoning",
    "thinking",
    "redacted_thinking",
    "tool_call",
    "tool_use",
    "function_call",
];

/// Text of a message `content`: a string, or a list of parts/blocks whose
/// text pieces are joined (OpenAI parts, Anthropic blocks, GenAI parts,
/// including a GenAI `tool_call_response`'s response).
pub fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => {
                    let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
                    if NON_TEXT_PARTS.contains(&kind) {
                        return None;
                    }
                    o.get("text")
                        .or_else(|| o.get("content"))
                        .or_else(|| o.get("response"))
                        .map(content_text)
                        .or_else(|| {
                            // Anthropic tool results nest their content.
                            o.get("output").map(content_text)
                        })
                }
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        Value::Object(o) => o
            .get("text")
            .or_else(|| o.get("content"))
            .map(content_text)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn tool_calls(m: &serde_json::Map<String, Value>) -> Vec<ToolCall> {
    let mut out = Vec::new();
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        for c in calls {
            let f = c.get("function").unwrap_or(c);
            out.push(ToolCall {
                id: c.get("id").and_then(Value::as_str).map(str::to_string),
                name: f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: arguments_text(f.get("arguments")),
            });
        }
    }
    // Anthropic `tool_use` blocks and GenAI `tool_call` parts.
    for key in ["content", "parts"] {
        if let Some(Value::Array(blocks)) = m.get(key) {
            for b in blocks {
                let kind = b.get("type").and_then(Value::as_str).unwrap_or_default();
                if kind == "tool_use" || kind == "tool_call" {
                    out.push(ToolCall {
                        id: b.get("id").and_then(Value::as_str).map(str::to_string),
                        name: b
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        arguments: arguments_text(b.get("input").or_else(|| b.get("arguments"))),
                    });
                }
            }
        }
    }
    out
}

/// One message object, if it looks like one (has a role).
fn message(v: &Value) -> Option<ChatMessage> {
    let m = v.as_object()?;
    let role = m.get("role").and_then(Value::as_str)?.to_string();
    let content = m
        .get("content")
        .or_else(|| m.get("parts"))
        .map(content_text)
        .unwrap_or_default();
    let tool_call_id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .or_else(|| {
            // GenAI: the id of the call a `tool_call_response` part answers.
            m.get("parts")?
                .as_array()?
                .iter()
                .find(|p| p.get("type").and_then(Value::as_str) == Some("tool_call_response"))?
                .get("id")?
                .as_str()
        })
        .map(str::to_string);
    Some(ChatMessage {
        role,
        content,
        tool_calls: tool_calls(m),
        tool_call_id,
    })
}

fn message_list(v: &Value) -> Option<Vec<ChatMessage>> {
    let arr = v.as_array()?;
    let msgs: Vec<ChatMessage> = arr.iter().filter_map(message).collect();
    (!msgs.is_empty() && msgs.len() == arr.len()).then_some(msgs)
}

/// The conversation sent to a model, from a span's inputs.
pub fn input_messages(inputs: &Value) -> Option<Vec<ChatMessage>> {
    if let Some(list) = message_list(inputs) {
        return Some(list);
    }
    let obj = inputs.as_object()?;
    let mut msgs = obj.get("messages").and_then(message_list)?;
    // Anthropic keeps the system prompt beside the messages.
    if let Some(system) = obj.get("system") {
        let text = content_text(system);
        if !text.is_empty() {
            msgs.insert(
                0,
                ChatMessage {
                    role: "system".into(),
                    content: text,
                    tool_calls: vec![],
                    tool_call_id: None,
                },
            );
        }
    }
    Some(msgs)
}

/// The model's reply, from a span's outputs.
pub fn output_messages(outputs: &Value) -> Option<Vec<ChatMessage>> {
    if let Some(list) = message_list(outputs) {
        return Some(list);
    }
    if let Some(m) = message(outputs) {
        return Some(vec![m]);
    }
    let obj = outputs.as_object()?;
    // OpenAI chat completions (and GenAI `gen_ai.choice` events).
    if let Some(Value::Array(choices)) = obj.get("choices") {
        let msgs: Vec<ChatMessage> = choices
            .iter()
            .filter_map(|c| c.get("message").and_then(message))
            .collect();
        if !msgs.is_empty() {
            return Some(msgs);
        }
    }
    // OpenAI Responses API.
    if let Some(Value::Array(items)) = obj.get("output") {
        let msgs: Vec<ChatMessage> = items
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("message"))
            .filter_map(|i| {
                let mut m = message(i)?;
                if m.role.is_empty() {
                    m.role = "assistant".into();
                }
                Some(m)
            })
            .collect();
        if !msgs.is_empty() {
            return Some(msgs);
        }
    }
    obj.get("messages").and_then(message_list)
}

/// The last user message's text: what a turn asked.
pub fn last_user_text(inputs: &Value) -> Option<String> {
    input_messages(inputs)?
        .into_iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content)
}

/// The assistant's answer text: what a turn replied.
pub fn assistant_text(outputs: &Value) -> Option<String> {
    output_messages(outputs)?
        .into_iter()
        .rev()
        .find(|m| m.role == "assistant")
        .map(|m| m.content)
}

/// A bare string, or an object whose only field is a string (`{"question":
/// "..."}`): the text of a non-chat call.
fn plain_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) if m.len() == 1 => m
            .values()
            .next()
            .and_then(|x| x.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// What the user said in one turn of a conversation: from the root span's
/// inputs when they are chat-shaped or plain text, else from the first LLM
/// call's messages. The session API and the UI's transcript both use it, so
/// a turn reads the same in both.
pub fn turn_user_text(root_inputs: Option<&Value>, llm_inputs: Option<&Value>) -> Option<String> {
    root_inputs
        .and_then(last_user_text)
        .or_else(|| root_inputs.and_then(plain_text))
        .or_else(|| llm_inputs.and_then(last_user_text))
}

/// What the assistant replied in one turn: the root span's outputs when
/// chat-shaped or plain text, else the last LLM call's reply.
pub fn turn_assistant_text(
    root_outputs: Option<&Value>,
    llm_outputs: Option<&Value>,
) -> Option<String> {
    root_outputs
        .and_then(assistant_text)
        .or_else(|| root_outputs.and_then(plain_text))
        .or_else(|| llm_outputs.and_then(assistant_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_request_and_response() {
        let i = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}]});
        let m = input_messages(&i).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].content, "hi");
        assert_eq!(m[2].tool_calls[0].name, "lookup");
        assert_eq!(m[3].tool_call_id.as_deref(), Some("c1"));
        let o = json!({"choices": [{"message": {"role": "assistant", "content": "hello"}}]});
        assert_eq!(assistant_text(&o).as_deref(), Some("hello"));
        assert_eq!(last_user_text(&i).as_deref(), Some("hi"));
    }

    #[test]
    fn anthropic_and_genai_shapes() {
        let i = json!({"system": "sys", "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]});
        let m = input_messages(&i).unwrap();
        assert_eq!(
            (m[0].role.as_str(), m[0].content.as_str()),
            ("system", "sys")
        );
        let o = json!({"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "tool_use", "id": "t", "name": "search", "input": {"q": 1}}]});
        let r = output_messages(&o).unwrap();
        assert_eq!(r[0].content, "a");
        assert_eq!(r[0].tool_calls[0].arguments, "{\"q\":1}");
        let g =
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "from genai"}]}]);
        assert_eq!(assistant_text(&g).as_deref(), Some("from genai"));
    }

    #[test]
    fn genai_parts_tool_calls_responses_and_reasoning() {
        let i = json!([
            {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": {"x": 1}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"temp": 20}}]}]);
        let m = input_messages(&i).unwrap();
        assert_eq!(m[1].content, "");
        assert_eq!(m[1].tool_calls[0].name, "f");
        assert_eq!(m[1].tool_calls[0].arguments, "{\"x\":1}");
        assert_eq!(m[2].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(m[2].content, "{\"temp\":20}");
        let o = json!([{"role": "assistant", "finish_reason": "stop", "parts": [
            {"type": "reasoning", "content": "private"}, {"type": "text", "content": "answer"}]}]);
        assert_eq!(assistant_text(&o).as_deref(), Some("answer"));
    }

    #[test]
    fn non_chat_values_are_not_messages() {
        assert!(input_messages(&json!({"question": "q"})).is_none());
        assert!(output_messages(&json!("plain")).is_none());
        assert!(input_messages(&json!([1, 2])).is_none());
    }

    #[test]
    fn turn_text_from_root_or_llm_span() {
        let both = |ri: Value, ro: Value, li: Option<Value>, lo: Option<Value>| {
            (
                turn_user_text(Some(&ri), li.as_ref()),
                turn_assistant_text(Some(&ro), lo.as_ref()),
            )
        };
        let s = |x: &str| Some(x.to_string());
        // Chat-shaped root.
        assert_eq!(
            both(
                json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}),
                json!({"choices": [{"message": {"role": "assistant", "content": "d"}}]}),
                None,
                None,
            ),
            (s("c"), s("d"))
        );
        // Plain root: a string, or one string field.
        assert_eq!(
            both(json!({"question": "q?"}), json!("ans"), None, None),
            (s("q?"), s("ans"))
        );
        // An app's own shapes: fall back to the LLM call inside.
        assert_eq!(
            both(
                json!({"req": {"message": "m", "session": "s"}}),
                json!({"answer": "x", "sources": 2}),
                Some(
                    json!({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "m"}]})
                ),
                Some(json!({"choices": [{"message": {"role": "assistant", "content": "x"}}]})),
            ),
            (s("m"), s("x"))
        );
        // Nothing recognisable: none, the previews remain.
        assert_eq!(
            both(json!({"a": 1, "b": 2}), json!([1, 2]), None, None),
            (None, None)
        );
    }
}
