//! Semantic conventions: turns a span's raw attribute map (whatever SDK sent
//! it) into tracebox's span model — type, inputs, outputs, model, tokens —
//! and the trace-level hints some conventions carry (session, user, tags).
//!
//! Understood, in MLflow's order of precedence:
//! - MLflow's own attributes (`mlflow.spanType`, `mlflow.spanInputs`, ...),
//!   also as JSON text, as MLflow's SDK sends them in OTLP-exporter mode;
//! - OpenInference (`openinference.span.kind`, `input.value`/`output.value`
//!   with their mime types, `llm.input_messages.*`, `llm.output_messages.*`,
//!   `llm.token_count.*`, `llm.model_name`, `llm.tools.*`,
//!   `retrieval.documents.*`);
//! - OpenTelemetry GenAI (`gen_ai.operation.name`, `gen_ai.input.messages` /
//!   `gen_ai.output.messages` in the parts format, `gen_ai.system_instructions`,
//!   `gen_ai.tool.call.*`, the older message events, `gen_ai.usage.*`);
//! - Traceloop/OpenLLMetry (`traceloop.span.kind`, `traceloop.entity.*`,
//!   `gen_ai.prompt.N.*`, `gen_ai.completion.N.*`, `llm.request.type`,
//!   `llm.usage.total_tokens`, association properties).
//!
//! MLflow keys win when present; conventions only fill what is missing, as
//! MLflow's own server does (`/work/notes/sdk-wire-spec.md` §9). Derived
//! chat values use OpenAI's shapes (`{"messages": [...]}` in,
//! `{"choices": [{"message": ...}]}` out), which `domain::chat` reads.
//! Knows nothing of wire formats or storage.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{OtelSpanId, OtelTraceId, SentJson, Span, SpanEvent, SpanStatusCode, TokenUsage};

/// A span as decoded from the wire, before conventions are applied.
#[derive(Debug, Clone)]
pub struct RawSpan {
    pub trace_id: OtelTraceId,
    pub span_id: OtelSpanId,
    pub parent_span_id: Option<OtelSpanId>,
    pub name: String,
    pub kind: i32,
    pub status: SpanStatusCode,
    pub status_message: String,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub attributes: Map<String, Value>,
    pub events: Vec<SpanEvent>,
}

#[cfg(test)]
impl RawSpan {
    /// For tests: a finished OK span `s{id}` (id `[id; 8]`) of trace
    /// `[trace; 16]`, child of `[parent; 8]` if given, with `attrs`.
    pub fn sample(trace: u8, id: u8, parent: Option<u8>, attrs: Value) -> RawSpan {
        RawSpan {
            trace_id: OtelTraceId([trace; 16]),
            span_id: OtelSpanId([id; 8]),
            parent_span_id: parent.map(|p| OtelSpanId([p; 8])),
            name: format!("s{id}"),
            kind: 0,
            status: SpanStatusCode::Ok,
            status_message: String::new(),
            start_ns: 1_000_000_000 + id as i64,
            end_ns: Some(2_000_000_000),
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            events: vec![],
        }
    }
}

/// Trace-level facts found on spans (OTLP senders have no other channel).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceHints {
    pub tags: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
}

impl TraceHints {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.metadata.is_empty()
    }
    /// Adds `other`'s entries; entries already present win.
    pub fn merge(&mut self, other: TraceHints) {
        for (k, v) in other.tags {
            self.tags.entry(k).or_insert(v);
        }
        for (k, v) in other.metadata {
            self.metadata.entry(k).or_insert(v);
        }
    }
    /// True when the hints name a session or a user.
    pub fn has_session_or_user(&self) -> bool {
        [keys::TRACE_SESSION, keys::TRACE_USER]
            .iter()
            .any(|k| self.tags.contains_key(*k) || self.metadata.contains_key(*k))
    }
}

pub mod keys {
    pub const SPAN_TYPE: &str = "mlflow.spanType";
    pub const SPAN_INPUTS: &str = "mlflow.spanInputs";
    pub const SPAN_OUTPUTS: &str = "mlflow.spanOutputs";
    pub const TRACE_REQUEST_ID: &str = "mlflow.traceRequestId";
    pub const CHAT_TOKEN_USAGE: &str = "mlflow.chat.tokenUsage";
    pub const CHAT_TOOLS: &str = "mlflow.chat.tools";
    pub const LLM_MODEL: &str = "mlflow.llm.model";
    pub const LLM_PROVIDER: &str = "mlflow.llm.provider";
    pub const TRACE_TAG_PREFIX: &str = "mlflow.traceTag.";
    pub const TRACE_NAME_TAG: &str = "mlflow.traceName";
    pub const TRACE_SESSION: &str = "mlflow.trace.session";
    pub const TRACE_USER: &str = "mlflow.trace.user";
}

/// Undoes double JSON encoding: OTLP senders (MLflow's SDK in OTLP-exporter
/// mode among them) often send structured values as JSON text. A string
/// whose text parses to a JSON string, object or array is replaced by that
/// value, exactly as MLflow's server does on storage.
pub fn sanitize(mut v: Value) -> Value {
    sanitize_keeping_text(&mut v);
    v
}

/// [`sanitize`] in place, returning the JSON text the value was parsed
/// from (trimmed), if it was.
fn sanitize_keeping_text(v: &mut Value) -> Option<String> {
    let Value::String(s) = v else { return None };
    let t = s.trim_start();
    if !(t.starts_with('"') || t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    match serde_json::from_str::<Value>(s) {
        Ok(parsed @ (Value::String(_) | Value::Object(_) | Value::Array(_))) => {
            let Value::String(mut text) = std::mem::replace(v, parsed) else {
                return None;
            };
            if text.len() != text.trim().len() {
                text = text.trim().to_string();
            }
            Some(text)
        }
        _ => None,
    }
}

/// Keys up to which [`lookup`] scans rather than hashes.
const SCAN_MAX: usize = 16;

/// `attrs.get(key)`. The conventions probe some 30 keys per span, most of
/// them absent, while a span carries a handful of attributes: comparing
/// the probe with each key (lengths first) costs a fraction of hashing it
/// with the map's SipHash, which was 2% of ingestion's instructions.
fn lookup<'a>(attrs: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if attrs.len() <= SCAN_MAX {
        attrs
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    } else {
        attrs.get(key)
    }
}

fn get_str<'a>(attrs: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    lookup(attrs, key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A string-ish attribute as text (ids are sometimes sent as numbers).
fn get_text(attrs: &Map<String, Value>, key: &str) -> Option<String> {
    match lookup(attrs, key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn get_i64(attrs: &Map<String, Value>, key: &str) -> Option<i64> {
    as_i64(lookup(attrs, key)?)
}

/// What MLflow's translators call a usable value: not null, not empty.
fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn first_present(attrs: &Map<String, Value>, keys: &[&str]) -> Option<Value> {
    keys.iter()
        .find_map(|k| lookup(attrs, k).filter(|v| non_empty(v)).cloned())
}

// ------------------------------------------------------------------ span type

/// MLflow span types (`mlflow.entities.SpanType`); a GenAI operation name
/// that is one of these came from MLflow's SDK in GenAI-export mode.
const MLFLOW_SPAN_TYPES: &[&str] = &[
    "LLM",
    "CHAIN",
    "AGENT",
    "TOOL",
    "CHAT_MODEL",
    "RETRIEVER",
    "PARSER",
    "EMBEDDING",
    "RERANKER",
    "MEMORY",
    "UNKNOWN",
    "WORKFLOW",
    "TASK",
    "GUARDRAIL",
    "EVALUATOR",
];

/// Maps a convention's span kind onto MLflow's span types.
fn convention_span_type(attrs: &Map<String, Value>) -> Option<&'static str> {
    if let Some(k) = get_str(attrs, "openinference.span.kind") {
        let k = k.to_ascii_uppercase();
        return Some(match k.as_str() {
            "TOOL" => "TOOL",
            "CHAIN" => "CHAIN",
            "LLM" => "LLM",
            "RETRIEVER" => "RETRIEVER",
            "EMBEDDING" => "EMBEDDING",
            "AGENT" => "AGENT",
            "RERANKER" => "RERANKER",
            "GUARDRAIL" => "GUARDRAIL",
            "EVALUATOR" => "EVALUATOR",
            _ => "UNKNOWN",
        });
    }
    if let Some(op) = get_str(attrs, "gen_ai.operation.name") {
        return Some(match op {
            "chat" => "CHAT_MODEL",
            "create_agent" | "invoke_agent" => "AGENT",
            "embeddings" => "EMBEDDING",
            "execute_tool" => "TOOL",
            "generate_content" | "text_completion" | "response" => "LLM",
            other => MLFLOW_SPAN_TYPES
                .iter()
                .find(|t| **t == other)
                .copied()
                .unwrap_or("UNKNOWN"),
        });
    }
    if let Some(k) = get_str(attrs, "traceloop.span.kind") {
        return Some(match k {
            "workflow" => "WORKFLOW",
            "task" => "TASK",
            "agent" => "AGENT",
            "tool" => "TOOL",
            _ => "UNKNOWN",
        });
    }
    if let Some(k) = get_str(attrs, "langfuse.observation.type") {
        return Some(match k {
            "generation" => "LLM",
            "embedding" => "EMBEDDING",
            "tool" => "TOOL",
            "retriever" => "RETRIEVER",
            "agent" => "AGENT",
            "chain" => "CHAIN",
            "evaluator" => "EVALUATOR",
            "guardrail" => "GUARDRAIL",
            _ => "UNKNOWN",
        });
    }
    // Traceloop LLM spans carry only `llm.request.type`.
    if let Some(t) = get_str(attrs, "llm.request.type") {
        return Some(match t {
            "chat" => "CHAT_MODEL",
            "embedding" => "EMBEDDING",
            "rerank" => "RERANKER",
            _ => "LLM",
        });
    }
    None
}

// ------------------------------------------------------- indexed attributes

/// Collects indexed attributes `prefix.N.suffix...` into a list of objects:
/// `gen_ai.prompt.0.role = user` becomes `[{"role": "user"}]`. Nested
/// indexed groups (tool calls, content parts) become nested lists.
fn indexed_list(attrs: &Map<String, Value>, prefix: &str) -> Option<Vec<Value>> {
    let mut items: BTreeMap<usize, Map<String, Value>> = BTreeMap::new();
    for (k, v) in attrs {
        let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let Some((idx, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(i) = idx.parse::<usize>() else {
            continue;
        };
        insert_path(items.entry(i).or_default(), field, v.clone());
    }
    if items.is_empty() {
        return None;
    }
    Some(items.into_values().map(normalize_indexed).collect())
}

fn insert_path(obj: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_string(), v);
        }
        Some((head, tail)) => {
            let child = obj
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(m) = child {
                insert_path(m, tail, v);
            }
        }
    }
}

/// Objects whose keys are all indices become arrays, recursively.
fn normalize_indexed(obj: Map<String, Value>) -> Value {
    let all_idx = !obj.is_empty() && obj.keys().all(|k| k.parse::<usize>().is_ok());
    if all_idx {
        let mut v: Vec<(usize, Value)> = obj
            .into_iter()
            .map(|(k, v)| (k.parse().unwrap_or(0), into_normal(v)))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        Value::Array(v.into_iter().map(|(_, v)| v).collect())
    } else {
        Value::Object(obj.into_iter().map(|(k, v)| (k, into_normal(v))).collect())
    }
}

fn into_normal(v: Value) -> Value {
    match v {
        Value::Object(m) => normalize_indexed(m),
        other => other,
    }
}

/// A tool call in OpenAI's shape, from OpenInference's
/// `{tool_call: {id, function: {name, arguments}}}` or Traceloop's flat
/// `{id, name, arguments}`.
fn openai_tool_call(c: Value) -> Value {
    let Value::Object(mut o) = c else { return c };
    if let Some(Value::Object(inner)) = o.remove("tool_call") {
        o = inner;
    }
    let mut function = match o.remove("function") {
        Some(Value::Object(f)) => f,
        _ => Map::new(),
    };
    for k in ["name", "arguments"] {
        if let Some(v) = o.remove(k) {
            function.entry(k).or_insert(v);
        }
    }
    // Arguments travel as JSON text in OpenAI's shape.
    if let Some(a) = function.get_mut("arguments")
        && !a.is_string()
    {
        *a = Value::from(a.to_string());
    }
    let mut out = Map::new();
    if let Some(id) = o.remove("id") {
        out.insert("id".into(), id);
    }
    out.insert("type".into(), Value::from("function"));
    out.insert("function".into(), Value::Object(function));
    Value::Object(out)
}

/// OpenInference `message_content` parts as OpenAI content parts.
fn openinference_contents(parts: Vec<Value>) -> Value {
    Value::Array(
        parts
            .into_iter()
            .map(|p| {
                let p = match p {
                    Value::Object(mut o) => o.remove("message_content").unwrap_or(Value::Object(o)),
                    other => other,
                };
                match p.get("type").and_then(Value::as_str) {
                    Some("image") => {
                        let url = p
                            .pointer("/image/image/url")
                            .or_else(|| p.pointer("/image/url"))
                            .cloned()
                            .unwrap_or(Value::Null);
                        json!({"type": "image_url", "image_url": {"url": url}})
                    }
                    _ => json!({"type": "text", "text": p.get("text").cloned().unwrap_or(Value::from(""))}),
                }
            })
            .collect(),
    )
}

/// One message from OpenInference's `message.*` or Traceloop's flat fields,
/// in OpenAI's shape.
fn openai_message(m: Value) -> Value {
    let Value::Object(mut o) = m else { return m };
    if let Some(Value::Object(inner)) = o.remove("message") {
        o = inner;
    }
    if !o.contains_key("content")
        && let Some(Value::Array(parts)) = o.remove("contents")
    {
        o.insert("content".into(), openinference_contents(parts));
    }
    if let Some(Value::Array(calls)) = o.remove("tool_calls") {
        o.insert(
            "tool_calls".into(),
            Value::Array(calls.into_iter().map(openai_tool_call).collect()),
        );
    }
    // Traceloop's legacy single function call.
    if let Some(Value::Object(f)) = o.remove("function_call") {
        let call = openai_tool_call(Value::Object(f));
        o.insert("tool_calls".into(), Value::Array(vec![call]));
    }
    Value::Object(o)
}

fn indexed_messages(attrs: &Map<String, Value>, prefix: &str) -> Option<Vec<Value>> {
    Some(
        indexed_list(attrs, prefix)?
            .into_iter()
            .map(openai_message)
            .collect(),
    )
}

/// Model replies as an OpenAI chat completion's `choices`.
fn choices(messages: Vec<Value>) -> Value {
    let choices: Vec<Value> = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut m = match m {
                Value::Object(o) => o,
                other => {
                    let mut o = Map::new();
                    o.insert("content".into(), other);
                    o
                }
            };
            let finish = m.remove("finish_reason");
            m.entry("role").or_insert_with(|| Value::from("assistant"));
            let mut c = Map::new();
            c.insert("index".into(), Value::from(i));
            c.insert("message".into(), Value::Object(m));
            if let Some(f) = finish {
                c.insert("finish_reason".into(), f);
            }
            Value::Object(c)
        })
        .collect();
    json!({ "choices": choices })
}

/// OpenInference retrieval documents in MLflow's Document shape.
fn retrieval_documents(attrs: &Map<String, Value>) -> Option<Value> {
    let docs = indexed_list(attrs, "retrieval.documents")?;
    Some(Value::Array(
        docs.into_iter()
            .map(|d| {
                let d = match d {
                    Value::Object(mut o) => o.remove("document").unwrap_or(Value::Object(o)),
                    other => other,
                };
                let mut metadata = match d.get("metadata") {
                    Some(Value::Object(m)) => m.clone(),
                    Some(Value::String(s)) => match sanitize(Value::from(s.clone())) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    },
                    _ => Map::new(),
                };
                if let Some(score) = d.get("score") {
                    metadata.insert("score".into(), score.clone());
                }
                let mut out = Map::new();
                out.insert(
                    "page_content".into(),
                    d.get("content").cloned().unwrap_or(Value::from("")),
                );
                out.insert("metadata".into(), Value::Object(metadata));
                if let Some(id) = d.get("id") {
                    out.insert("id".into(), id.clone());
                }
                Value::Object(out)
            })
            .collect(),
    ))
}

// ------------------------------------------------------------ events (GenAI)

/// The GenAI message events (`gen_ai.user.message`, ...) as chat messages.
fn genai_event_messages(events: &[SpanEvent]) -> Option<Vec<Value>> {
    let msgs: Vec<Value> = events
        .iter()
        .filter_map(|e| {
            let role = match e.name.as_str() {
                "gen_ai.system.message" => "system",
                "gen_ai.user.message" => "user",
                "gen_ai.assistant.message" => "assistant",
                "gen_ai.tool.message" => "tool",
                _ => return None,
            };
            let mut m = Map::new();
            let role = e
                .attributes
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or(role);
            m.insert("role".into(), Value::from(role));
            for (k, v) in &e.attributes {
                match k.as_str() {
                    "content" | "name" => {
                        m.insert(k.clone(), sanitize(v.clone()));
                    }
                    "tool_calls" => {
                        let calls = match sanitize(v.clone()) {
                            Value::Array(a) => a.into_iter().map(openai_tool_call).collect(),
                            other => vec![openai_tool_call(other)],
                        };
                        m.insert(k.clone(), Value::Array(calls));
                    }
                    // The tool message's `id` is the call it answers.
                    "id" if role == "tool" => {
                        m.insert("tool_call_id".into(), v.clone());
                    }
                    _ => {}
                }
            }
            Some(Value::Object(m))
        })
        .collect();
    (!msgs.is_empty()).then_some(msgs)
}

/// `gen_ai.choice` events as chat-completion choices.
fn genai_event_choices(events: &[SpanEvent]) -> Option<Value> {
    let msgs: Vec<Value> = events
        .iter()
        .filter(|e| e.name == "gen_ai.choice")
        .map(|e| {
            let a = &e.attributes;
            let mut m = match a.get("message").map(|v| sanitize(v.clone())) {
                Some(Value::Object(m)) => m,
                _ => {
                    let mut m = Map::new();
                    if let Some(c) = a.get("content") {
                        m.insert("content".into(), sanitize(c.clone()));
                    }
                    if let Some(r) = a.get("role") {
                        m.insert("role".into(), r.clone());
                    }
                    m
                }
            };
            if let Some(Value::Array(calls)) = m.remove("tool_calls") {
                m.insert(
                    "tool_calls".into(),
                    Value::Array(calls.into_iter().map(openai_tool_call).collect()),
                );
            }
            if let Some(f) = a.get("finish_reason") {
                m.insert("finish_reason".into(), f.clone());
            }
            Value::Object(m)
        })
        .collect();
    (!msgs.is_empty()).then(|| choices(msgs))
}

/// An attribute carried by an event rather than the span (GenAI content
/// capture to events, Spring AI's prompt/completion events).
fn event_attribute(events: &[SpanEvent], event: &str, key: &str) -> Option<Value> {
    events
        .iter()
        .filter(|e| e.name == event)
        .find_map(|e| lookup(&e.attributes, key).map(|v| sanitize(v.clone())))
        .filter(non_empty)
}

// ------------------------------------------------------ inputs and outputs

/// A verbatim value: `input.value` / `output.value` keep text as text when
/// the sender says it is text (`*.mime_type = text/plain`).
fn openinference_value(
    attrs: &Map<String, Value>,
    raw: &Map<String, Value>,
    key: &str,
    mime_key: &str,
) -> Option<Value> {
    if get_str(attrs, mime_key) == Some("text/plain") {
        return lookup(raw, key).filter(|v| non_empty(v)).cloned();
    }
    lookup(attrs, key).filter(|v| non_empty(v)).cloned()
}

/// GenAI `gen_ai.input.messages`, with `gen_ai.system_instructions` as a
/// leading system message so the conversation reads whole.
fn genai_input_messages(attrs: &Map<String, Value>, events: &[SpanEvent]) -> Option<Value> {
    const DETAILS: &str = "gen_ai.client.inference.operation.details";
    let msgs = lookup(attrs, "gen_ai.input.messages")
        .filter(|v| non_empty(v))
        .cloned()
        .or_else(|| event_attribute(events, DETAILS, "gen_ai.input.messages"))?;
    let system = lookup(attrs, "gen_ai.system_instructions")
        .filter(|v| non_empty(v))
        .cloned()
        .or_else(|| event_attribute(events, DETAILS, "gen_ai.system_instructions"));
    match (msgs, system) {
        (Value::Array(mut list), Some(sys)) => {
            let parts = match sys {
                Value::Array(p) => Value::Array(p),
                Value::String(s) => json!([{"type": "text", "content": s}]),
                other => json!([other]),
            };
            list.insert(0, json!({"role": "system", "parts": parts}));
            Some(Value::Array(list))
        }
        (msgs, _) => Some(msgs),
    }
}

fn derive_inputs(
    attrs: &Map<String, Value>,
    raw: &Map<String, Value>,
    events: &[SpanEvent],
) -> Option<Value> {
    if let Some(v) = openinference_value(attrs, raw, "input.value", "input.mime_type") {
        // Some OpenInference instrumentations (LangChain) put their own
        // serialisation in input.value; the message attributes then carry
        // the conversation in a form every reader understands.
        if super::chat::input_messages(&v).is_none()
            && let Some(msgs) = indexed_messages(attrs, "llm.input_messages")
        {
            return Some(json!({ "messages": msgs }));
        }
        return Some(v);
    }
    if let Some(v) = genai_input_messages(attrs, events) {
        return Some(v);
    }
    if let Some(v) = first_present(
        attrs,
        &[
            "gen_ai.tool.call.arguments",
            "traceloop.entity.input",
            "langfuse.observation.input",
            "lmnr.span.input",
        ],
    ) {
        return Some(v);
    }
    if let Some(msgs) = indexed_messages(attrs, "llm.input_messages") {
        return Some(json!({ "messages": msgs }));
    }
    if let Some(msgs) = indexed_messages(attrs, "gen_ai.prompt") {
        return Some(json!({ "messages": msgs }));
    }
    if let Some(msgs) = genai_event_messages(events) {
        return Some(json!({ "messages": msgs }));
    }
    event_attribute(events, "gen_ai.content.prompt", "gen_ai.prompt")
}

fn derive_outputs(
    attrs: &Map<String, Value>,
    raw: &Map<String, Value>,
    events: &[SpanEvent],
    span_type: &str,
) -> Option<Value> {
    if span_type == "RETRIEVER"
        && let Some(docs) = retrieval_documents(attrs)
    {
        return Some(docs);
    }
    if let Some(v) = openinference_value(attrs, raw, "output.value", "output.mime_type") {
        if super::chat::output_messages(&v).is_none()
            && let Some(msgs) = indexed_messages(attrs, "llm.output_messages")
        {
            return Some(choices(msgs));
        }
        return Some(v);
    }
    if let Some(v) = first_present(attrs, &["gen_ai.output.messages"]).or_else(|| {
        event_attribute(
            events,
            "gen_ai.client.inference.operation.details",
            "gen_ai.output.messages",
        )
    }) {
        return Some(v);
    }
    if let Some(v) = first_present(
        attrs,
        &[
            "gen_ai.tool.call.result",
            "traceloop.entity.output",
            "langfuse.observation.output",
            "lmnr.span.output",
        ],
    ) {
        return Some(v);
    }
    if let Some(msgs) = indexed_messages(attrs, "llm.output_messages") {
        return Some(choices(msgs));
    }
    if let Some(msgs) = indexed_messages(attrs, "gen_ai.completion") {
        return Some(choices(msgs));
    }
    if let Some(c) = genai_event_choices(events) {
        return Some(c);
    }
    if let Some(docs) = retrieval_documents(attrs) {
        return Some(docs);
    }
    event_attribute(events, "gen_ai.content.completion", "gen_ai.completion")
}

// ----------------------------------------------------- tokens, model, tools

/// Token usage as MLflow's `mlflow.chat.tokenUsage` object, with the cache
/// counters when the convention reports them.
fn derive_token_usage(attrs: &Map<String, Value>) -> Option<Map<String, Value>> {
    let pick = |ks: &[&str]| ks.iter().find_map(|k| get_i64(attrs, k));
    let input = pick(&[
        "llm.token_count.prompt",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
    ]);
    let output = pick(&[
        "llm.token_count.completion",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
    ]);
    let total = pick(&[
        "llm.token_count.total",
        "llm.usage.total_tokens",
        "gen_ai.usage.total_tokens",
    ]);
    let cache_read = pick(&[
        "llm.token_count.prompt_details.cache_read",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
    ]);
    let cache_write = pick(&[
        "llm.token_count.prompt_details.cache_write",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    ]);
    if input.is_none() && output.is_none() && total.is_none() {
        return None;
    }
    let t = TokenUsage {
        input,
        output,
        total,
    };
    let mut u = Map::new();
    for (k, v) in [
        ("input_tokens", input),
        ("output_tokens", output),
        ("total_tokens", t.total_or_sum()),
        ("cache_read_input_tokens", cache_read),
        ("cache_creation_input_tokens", cache_write),
    ] {
        if let Some(v) = v {
            u.insert(k.into(), Value::from(v));
        }
    }
    Some(u)
}

fn tokens_from_usage(u: &Map<String, Value>) -> TokenUsage {
    let t = TokenUsage {
        input: u.get("input_tokens").and_then(as_i64),
        output: u.get("output_tokens").and_then(as_i64),
        total: u.get("total_tokens").and_then(as_i64),
    };
    TokenUsage {
        total: t.total_or_sum(),
        ..t
    }
}

fn derive_model(
    attrs: &Map<String, Value>,
    inputs: Option<&Value>,
    outputs: Option<&Value>,
) -> Option<String> {
    for k in [
        keys::LLM_MODEL,
        "llm.response.model_name",
        "llm.model_name",
        "llm.request.model_name",
        "embedding.model_name",
        "gen_ai.response.model",
        "gen_ai.request.model",
    ] {
        if let Some(s) = get_str(attrs, k) {
            return Some(s.to_string());
        }
    }
    [inputs, outputs]
        .into_iter()
        .flatten()
        .find_map(|v| v.get("model").and_then(Value::as_str).map(str::to_string))
        .filter(|s| !s.is_empty())
}

fn derive_provider(attrs: &Map<String, Value>) -> Option<String> {
    ["llm.provider", "gen_ai.provider.name", "gen_ai.system"]
        .iter()
        .find_map(|k| get_str(attrs, k))
        .map(str::to_string)
}

/// Tool definitions offered to the model: GenAI's `gen_ai.tool.definitions`
/// or OpenInference's `llm.tools.N.tool.json_schema`.
fn derive_tools(attrs: &Map<String, Value>) -> Option<Value> {
    if let Some(v) = first_present(attrs, &["gen_ai.tool.definitions"]) {
        return Some(v);
    }
    let tools: Vec<Value> = indexed_list(attrs, "llm.tools")?
        .into_iter()
        .filter_map(|t| {
            let schema = t.pointer("/tool/json_schema")?.clone();
            Some(sanitize(schema))
        })
        .collect();
    (!tools.is_empty()).then_some(Value::Array(tools))
}

// ------------------------------------------------------------------ hints

fn span_hints(attrs: &Map<String, Value>, is_root: bool) -> TraceHints {
    let mut hints = TraceHints::default();
    let session = [
        "session.id",
        "gen_ai.conversation.id",
        "traceloop.association.properties.session_id",
        "langfuse.session.id",
    ]
    .iter()
    .find_map(|k| get_text(attrs, k));
    if let Some(s) = session {
        hints.metadata.insert(keys::TRACE_SESSION.into(), s);
    }
    let user = [
        "user.id",
        "traceloop.association.properties.user_id",
        "langfuse.user.id",
        "enduser.id",
    ]
    .iter()
    .find_map(|k| get_text(attrs, k));
    if let Some(u) = user {
        hints.metadata.insert(keys::TRACE_USER.into(), u);
    }
    if is_root {
        for (k, v) in attrs {
            if let Some(tag) = k.strip_prefix(keys::TRACE_TAG_PREFIX)
                && !tag.is_empty()
                && tag != keys::TRACE_NAME_TAG
            {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                hints.tags.insert(tag.to_string(), v);
            }
        }
    }
    hints
}

/// Trace tags from an OTLP resource (`service.name`, ...), as MLflow keeps
/// them; the SDK's own `telemetry.sdk.*` and the reserved `mlflow.*`
/// namespace are skipped. Tags found on spans take precedence.
pub fn resource_hints(resource: &Map<String, Value>) -> TraceHints {
    let mut hints = TraceHints::default();
    for (k, v) in resource {
        if k.starts_with("telemetry.sdk.") || k.starts_with("mlflow.") || k.is_empty() {
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        hints.tags.insert(k.clone(), v);
    }
    hints
}

// ------------------------------------------------------------- normalize

/// Applies the conventions; the returned span keeps every attribute except
/// the MLflow keys that have their own fields (type, inputs, outputs and the
/// trace id, which is implied by the span's trace). Like MLflow's server, it
/// adds `mlflow.chat.tokenUsage`, `mlflow.llm.model`, `mlflow.llm.provider`
/// and `mlflow.chat.tools` when a convention carries them and the span does
/// not already have them.
pub fn normalize(raw: RawSpan) -> (Span, TraceHints) {
    let RawSpan {
        trace_id,
        span_id,
        parent_span_id,
        name,
        kind,
        status,
        status_message,
        start_ns,
        end_ns,
        attributes: raw_attrs,
        events,
    } = raw;
    // Text-typed OpenInference values are kept as sent (see
    // `openinference_value`); everything else is sanitized.
    let keep_raw = ["input.mime_type", "output.mime_type"]
        .iter()
        .any(|k| get_str(&raw_attrs, k) == Some("text/plain"));
    let raw_copy: Map<String, Value> = if keep_raw {
        ["input.value", "output.value"]
            .iter()
            .filter_map(|k| raw_attrs.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect()
    } else {
        Map::new()
    };
    let mut attrs = raw_attrs;
    let mut sent = SentJson::default();
    for (k, v) in attrs.iter_mut() {
        if let Some(text) = sanitize_keeping_text(v) {
            sent.attributes.push((k.clone(), text));
        }
    }
    attrs.remove(keys::TRACE_REQUEST_ID);

    let mlflow_type = match attrs.remove(keys::SPAN_TYPE) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Null) | None => None,
        Some(Value::String(_)) => None,
        Some(other) => Some(other.to_string()),
    };
    let span_type = match mlflow_type {
        Some(t) if t != "UNKNOWN" => t,
        other => convention_span_type(&attrs)
            .map(str::to_string)
            .or(other)
            .unwrap_or_else(|| "UNKNOWN".to_string()),
    };
    let inputs = match attrs.remove(keys::SPAN_INPUTS) {
        Some(v) => {
            sent.inputs = sent.take_attribute(keys::SPAN_INPUTS);
            Some(v)
        }
        None => derive_inputs(&attrs, &raw_copy, &events),
    };
    let outputs = match attrs.remove(keys::SPAN_OUTPUTS) {
        Some(v) => {
            sent.outputs = sent.take_attribute(keys::SPAN_OUTPUTS);
            Some(v)
        }
        None => derive_outputs(&attrs, &raw_copy, &events, &span_type),
    };

    let tokens = match lookup(&attrs, keys::CHAT_TOKEN_USAGE) {
        Some(Value::Object(u)) => tokens_from_usage(u),
        _ => match derive_token_usage(&attrs) {
            Some(u) => {
                let t = tokens_from_usage(&u);
                // Replaces whatever unusable value was there, text and all.
                sent.take_attribute(keys::CHAT_TOKEN_USAGE);
                attrs.insert(keys::CHAT_TOKEN_USAGE.into(), Value::Object(u));
                t
            }
            None => TokenUsage::default(),
        },
    };
    let model = derive_model(&attrs, inputs.as_ref(), outputs.as_ref());
    if let Some(m) = &model
        && lookup(&attrs, keys::LLM_MODEL).is_none()
    {
        attrs.insert(keys::LLM_MODEL.into(), Value::from(m.clone()));
    }
    if lookup(&attrs, keys::LLM_PROVIDER).is_none()
        && let Some(p) = derive_provider(&attrs)
    {
        attrs.insert(keys::LLM_PROVIDER.into(), Value::from(p));
    }
    if lookup(&attrs, keys::CHAT_TOOLS).is_none()
        && let Some(t) = derive_tools(&attrs)
    {
        attrs.insert(keys::CHAT_TOOLS.into(), t);
    }

    let hints = span_hints(&attrs, parent_span_id.is_none());
    let span = Span {
        trace_id,
        span_id,
        parent_span_id,
        name,
        span_type,
        kind,
        status,
        status_message,
        start_ns,
        end_ns,
        inputs,
        outputs,
        attributes: attrs,
        events,
        model,
        tokens,
        sent,
    };
    (span, hints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat;
    use serde_json::json;

    fn raw(attrs: Value) -> RawSpan {
        RawSpan {
            trace_id: OtelTraceId([1; 16]),
            span_id: OtelSpanId([2; 8]),
            parent_span_id: None,
            name: "s".into(),
            kind: 0,
            status: SpanStatusCode::Ok,
            status_message: String::new(),
            start_ns: 1,
            end_ns: Some(2),
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            events: vec![],
        }
    }

    fn event(name: &str, attrs: Value) -> SpanEvent {
        SpanEvent {
            name: name.into(),
            time_ns: 1,
            attributes: attrs.as_object().cloned().unwrap_or_default(),
        }
    }

    /// Tool-call arguments parsed (their JSON text may be re-encoded).
    fn args(c: &chat::ToolCall) -> Value {
        serde_json::from_str(&c.arguments).unwrap()
    }

    fn usage(i: i64, o: i64, t: i64) -> TokenUsage {
        TokenUsage {
            input: Some(i),
            output: Some(o),
            total: Some(t),
        }
    }

    /// The conversation a reader (UI, judges) gets from a span, whatever
    /// convention carried it: (role, content) pairs in and out.
    /// (role, content) pairs in, and out.
    type Conversation = (Vec<(String, String)>, Vec<(String, String)>);

    fn conversation(s: &Span) -> Conversation {
        let pairs = |m: Option<Vec<chat::ChatMessage>>| {
            m.unwrap_or_default()
                .into_iter()
                .map(|m| (m.role, m.content))
                .collect::<Vec<_>>()
        };
        (
            pairs(s.inputs.as_ref().and_then(chat::input_messages)),
            pairs(s.outputs.as_ref().and_then(chat::output_messages)),
        )
    }

    fn expected_conversation() -> Conversation {
        (
            vec![
                ("system".into(), "be brief".into()),
                ("user".into(), "hi".into()),
            ],
            vec![("assistant".into(), "hello".into())],
        )
    }

    #[test]
    fn sanitize_unwraps_json_text_but_not_scalars() {
        assert_eq!(sanitize(json!("\"LLM\"")), json!("LLM"));
        assert_eq!(sanitize(json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(sanitize(json!("[1, 2]")), json!([1, 2]));
        assert_eq!(sanitize(json!("123")), json!("123"));
        assert_eq!(sanitize(json!("true")), json!("true"));
        assert_eq!(sanitize(json!("plain")), json!("plain"));
        assert_eq!(sanitize(json!("{not json")), json!("{not json"));
    }

    #[test]
    fn the_json_text_values_arrived_as_is_kept_unless_the_value_changes() {
        let inputs = r#"{"query": "q",  "k": [1, 2]}"#;
        let usage = r#"["not", "usage"]"#;
        let (s, _) = normalize(raw(json!({
            "mlflow.spanInputs": format!("  {inputs}\n"),
            "mlflow.spanOutputs": "plain text",
            "tool.args": "{\"city\": \"Paris\"}",
            "mlflow.chat.tokenUsage": usage,
            "gen_ai.usage.input_tokens": 3,
        })));
        // Trimmed, otherwise as sent.
        assert_eq!(s.sent.inputs.as_deref(), Some(inputs));
        assert_eq!(s.inputs, Some(json!({"query": "q", "k": [1, 2]})));
        // Not JSON text: nothing to keep.
        assert_eq!(s.sent.outputs, None);
        assert_eq!(s.sent.attribute("tool.args"), Some(r#"{"city": "Paris"}"#));
        assert_eq!(s.attributes["tool.args"], json!({"city": "Paris"}));
        // Replaced by the usage the conventions derived: its text is gone.
        assert_eq!(s.attributes["mlflow.chat.tokenUsage"]["input_tokens"], 3);
        assert_eq!(s.sent.attribute("mlflow.chat.tokenUsage"), None);
    }

    #[test]
    fn mlflow_keys_become_fields() {
        let (s, _) = normalize(raw(json!({
            "mlflow.spanType": "RETRIEVER",
            "mlflow.spanInputs": {"query": "q"},
            "mlflow.spanOutputs": "\"answer\"",
            "mlflow.traceRequestId": "tr-x",
            "retriever.k": 2,
        })));
        assert_eq!(s.span_type, "RETRIEVER");
        assert_eq!(s.inputs, Some(json!({"query": "q"})));
        assert_eq!(s.outputs, Some(json!("answer")));
        assert_eq!(s.attributes.len(), 1);
    }

    #[test]
    fn mlflow_sdk_in_otlp_mode_pre_encodes_every_value() {
        // What MLflow's SDK sends with an OTLP exporter: every attribute a
        // JSON string, even strings.
        let (s, h) = normalize(raw(json!({
            "mlflow.spanType": "\"CHAT_MODEL\"",
            "mlflow.traceRequestId": "\"tr-0101\"",
            "mlflow.spanInputs": "{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"hi\"}]}",
            "mlflow.spanOutputs": "{\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": \"hello\"}}]}",
            "mlflow.chat.tokenUsage": "{\"input_tokens\": 12, \"output_tokens\": 3, \"total_tokens\": 15}",
            "mlflow.message.format": "\"openai\"",
            "mlflow.traceTag.team": "search",
            "session.id": "\"s-9\"",
        })));
        assert_eq!(s.span_type, "CHAT_MODEL");
        assert_eq!(s.tokens, usage(12, 3, 15));
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(s.attributes[keys::LLM_MODEL], json!("gpt-4o-mini"));
        assert_eq!(s.attributes["mlflow.message.format"], json!("openai"));
        assert!(!s.attributes.contains_key(keys::TRACE_REQUEST_ID));
        assert_eq!(conversation(&s), expected_conversation());
        assert_eq!(h.tags["team"], "search");
        assert_eq!(h.metadata[keys::TRACE_SESSION], "s-9");
    }

    #[test]
    fn mlflow_type_wins_unless_unknown() {
        let (s, _) = normalize(raw(json!({
            "mlflow.spanType": "AGENT", "openinference.span.kind": "LLM"
        })));
        assert_eq!(s.span_type, "AGENT");
        let (s, _) = normalize(raw(json!({
            "mlflow.spanType": "UNKNOWN", "openinference.span.kind": "LLM"
        })));
        assert_eq!(s.span_type, "LLM");
        let (s, _) = normalize(raw(json!({"foo": 1})));
        assert_eq!(s.span_type, "UNKNOWN");
    }

    #[test]
    fn openinference_llm_span_from_input_value() {
        // What openinference-instrumentation-openai records for a chat call.
        let req = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]});
        let resp = json!({"id": "c1", "model": "gpt-4o-mini-2024-07-18", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}});
        let (s, _) = normalize(raw(json!({
            "openinference.span.kind": "LLM",
            "input.value": req.to_string(),
            "input.mime_type": "application/json",
            "output.value": resp.to_string(),
            "output.mime_type": "application/json",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "be brief",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "hi",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "hello",
            "llm.token_count.prompt": 10,
            "llm.token_count.completion": 5,
            "llm.token_count.total": 15,
            "llm.model_name": "gpt-4o-mini-2024-07-18",
            "llm.provider": "openai",
            "llm.tools.0.tool.json_schema": "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}",
        })));
        assert_eq!(s.span_type, "LLM");
        assert_eq!(s.inputs, Some(req));
        assert_eq!(s.outputs, Some(resp));
        assert_eq!(s.tokens, usage(10, 5, 15));
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(s.attributes[keys::LLM_PROVIDER], json!("openai"));
        assert_eq!(
            s.attributes[keys::CHAT_TOOLS][0]["function"]["name"],
            json!("get_weather")
        );
        assert_eq!(
            s.attributes[keys::CHAT_TOKEN_USAGE],
            json!({"input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
        );
        assert_eq!(conversation(&s), expected_conversation());
    }

    #[test]
    fn openinference_messages_with_tool_calls_and_contents() {
        let (s, _) = normalize(raw(json!({
            "openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.contents.0.message_content.type": "text",
            "llm.input_messages.0.message.contents.0.message_content.text": "be brief",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "hi",
            "llm.input_messages.2.message.role": "assistant",
            "llm.input_messages.2.message.tool_calls.0.tool_call.id": "call_1",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "get_weather",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": "{\"city\": \"Paris\"}",
            "llm.input_messages.3.message.role": "tool",
            "llm.input_messages.3.message.tool_call_id": "call_1",
            "llm.input_messages.3.message.content": "rainy",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "hello",
            "llm.token_count.prompt": "7",
            "llm.token_count.completion": "2",
        })));
        let msgs = chat::input_messages(s.inputs.as_ref().unwrap()).unwrap();
        assert_eq!(msgs[0].content, "be brief");
        assert_eq!(msgs[2].tool_calls[0].name, "get_weather");
        assert_eq!(msgs[2].tool_calls[0].id.as_deref(), Some("call_1"));
        assert_eq!(args(&msgs[2].tool_calls[0]), json!({"city": "Paris"}));
        assert_eq!(msgs[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(msgs[3].content, "rainy");
        let out = chat::output_messages(s.outputs.as_ref().unwrap()).unwrap();
        assert_eq!(out[0].content, "hello");
        // Numeric strings count; total is the sum when not reported.
        assert_eq!(s.tokens, usage(7, 2, 9));
    }

    #[test]
    fn openinference_text_values_and_non_chat_input_value() {
        // A text/plain value that happens to look like JSON stays text.
        let (s, _) = normalize(raw(json!({
            "openinference.span.kind": "CHAIN",
            "input.value": "[draft] {not a list}",
            "input.mime_type": "text/plain",
            "output.value": "[1, 2]",
            "output.mime_type": "text/plain",
        })));
        assert_eq!(s.inputs, Some(json!("[draft] {not a list}")));
        assert_eq!(s.outputs, Some(json!("[1, 2]")));
        // LangChain-style input.value is not a conversation: the message
        // attributes are used instead so the chat reads the same.
        let (s, _) = normalize(raw(json!({
            "openinference.span.kind": "LLM",
            "input.value": "{\"messages\": [[{\"lc\": 1, \"type\": \"constructor\"}]]}",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "be brief",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "hi",
            "output.value": "{\"generations\": [[{\"text\": \"hello\"}]]}",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "hello",
        })));
        assert_eq!(conversation(&s), expected_conversation());
    }

    #[test]
    fn openinference_retriever_documents() {
        let (s, _) = normalize(raw(json!({
            "openinference.span.kind": "RETRIEVER",
            "input.value": "where is my order?",
            "retrieval.documents.0.document.id": "d1",
            "retrieval.documents.0.document.content": "orders ship in 2 days",
            "retrieval.documents.0.document.score": 0.9,
            "retrieval.documents.0.document.metadata": "{\"source\": \"kb\"}",
            "retrieval.documents.1.document.content": "refunds take a week",
        })));
        assert_eq!(s.span_type, "RETRIEVER");
        assert_eq!(s.inputs, Some(json!("where is my order?")));
        assert_eq!(
            s.outputs,
            Some(json!([
                {"page_content": "orders ship in 2 days", "metadata": {"source": "kb", "score": 0.9}, "id": "d1"},
                {"page_content": "refunds take a week", "metadata": {}}
            ]))
        );
    }

    #[test]
    fn openinference_kinds_and_embedding_model() {
        for (kind, want) in [
            ("TOOL", "TOOL"),
            ("CHAIN", "CHAIN"),
            ("AGENT", "AGENT"),
            ("EMBEDDING", "EMBEDDING"),
            ("RERANKER", "RERANKER"),
            ("GUARDRAIL", "GUARDRAIL"),
            ("EVALUATOR", "EVALUATOR"),
            ("SOMETHING", "UNKNOWN"),
        ] {
            let (s, _) = normalize(raw(json!({"openinference.span.kind": kind})));
            assert_eq!(s.span_type, want, "{kind}");
        }
        let (s, _) = normalize(raw(json!({
            "openinference.span.kind": "EMBEDDING",
            "embedding.model_name": "text-embedding-3-small",
        })));
        assert_eq!(s.model.as_deref(), Some("text-embedding-3-small"));
    }

    #[test]
    fn genai_parts_messages_with_system_instructions() {
        let (s, _) = normalize(raw(json!({
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.system_instructions": "[{\"type\": \"text\", \"content\": \"be brief\"}]",
            "gen_ai.input.messages": "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"hi\"}]}]",
            "gen_ai.output.messages": "[{\"role\": \"assistant\", \"parts\": [{\"type\": \"text\", \"content\": \"hello\"}], \"finish_reason\": \"stop\"}]",
            "gen_ai.usage.input_tokens": 20,
            "gen_ai.usage.output_tokens": 4,
            "gen_ai.usage.cache_read.input_tokens": 8,
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.tool.definitions": "[{\"type\": \"function\", \"name\": \"get_weather\"}]",
        })));
        assert_eq!(s.span_type, "CHAT_MODEL");
        assert_eq!(s.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(s.tokens, usage(20, 4, 24));
        assert_eq!(
            s.attributes[keys::CHAT_TOKEN_USAGE],
            json!({"input_tokens": 20, "output_tokens": 4, "total_tokens": 24, "cache_read_input_tokens": 8})
        );
        assert_eq!(s.attributes[keys::LLM_PROVIDER], json!("openai"));
        assert_eq!(
            s.attributes[keys::CHAT_TOOLS][0]["name"],
            json!("get_weather")
        );
        assert_eq!(conversation(&s), expected_conversation());
    }

    #[test]
    fn genai_tool_calls_and_tool_results_in_parts() {
        let (s, _) = normalize(raw(json!({
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": [
                {"role": "user", "parts": [{"type": "text", "content": "weather in Paris?"}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}]},
            ],
            "gen_ai.output.messages": [{"role": "assistant", "parts": [
                {"type": "reasoning", "content": "the tool said rainy"},
                {"type": "text", "content": "It is rainy."}], "finish_reason": "stop"}],
        })));
        let msgs = chat::input_messages(s.inputs.as_ref().unwrap()).unwrap();
        assert_eq!(msgs[1].tool_calls[0].name, "get_weather");
        assert_eq!(msgs[1].tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(msgs[2].role, "tool");
        assert_eq!(msgs[2].content, "rainy");
        assert_eq!(msgs[2].tool_call_id.as_deref(), Some("call_1"));
        let out = chat::output_messages(s.outputs.as_ref().unwrap()).unwrap();
        assert_eq!(out[0].content, "It is rainy.");
    }

    #[test]
    fn genai_operations_map_to_span_types() {
        for (op, want) in [
            ("chat", "CHAT_MODEL"),
            ("text_completion", "LLM"),
            ("generate_content", "LLM"),
            ("embeddings", "EMBEDDING"),
            ("execute_tool", "TOOL"),
            ("invoke_agent", "AGENT"),
            ("create_agent", "AGENT"),
            // MLflow's SDK in GenAI-export mode passes its own types through.
            ("RETRIEVER", "RETRIEVER"),
            ("something_else", "UNKNOWN"),
        ] {
            let (s, _) = normalize(raw(json!({"gen_ai.operation.name": op})));
            assert_eq!(s.span_type, want, "{op}");
        }
        let (s, _) = normalize(raw(json!({
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "get_weather",
            "gen_ai.tool.call.arguments": "{\"city\": \"Paris\"}",
            "gen_ai.tool.call.result": "\"rainy\"",
        })));
        assert_eq!(s.inputs, Some(json!({"city": "Paris"})));
        assert_eq!(s.outputs, Some(json!("rainy")));
    }

    #[test]
    fn genai_message_events() {
        let mut r = raw(json!({
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": "4",
            "gen_ai.usage.output_tokens": 1,
        }));
        r.events = vec![
            event("gen_ai.system.message", json!({"content": "be brief"})),
            event("gen_ai.user.message", json!({"content": "hi"})),
            event(
                "gen_ai.assistant.message",
                json!({"tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
            ),
            event("gen_ai.tool.message", json!({"id": "c1", "content": "ok"})),
            event(
                "gen_ai.choice",
                json!({"index": 0, "finish_reason": "stop", "message": {"content": "hello"}}),
            ),
        ];
        let (s, _) = normalize(r);
        assert_eq!(s.span_type, "CHAT_MODEL");
        assert_eq!(s.tokens, usage(4, 1, 5));
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(s.attributes[keys::LLM_PROVIDER], json!("openai"));
        let msgs = chat::input_messages(s.inputs.as_ref().unwrap()).unwrap();
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[2].tool_calls[0].name, "f");
        assert_eq!(msgs[3].tool_call_id.as_deref(), Some("c1"));
        let out = chat::output_messages(s.outputs.as_ref().unwrap()).unwrap();
        assert_eq!(
            (out[0].role.as_str(), out[0].content.as_str()),
            ("assistant", "hello")
        );
        // A choice event with flat content and role (MLflow's reading).
        let mut r = raw(json!({"gen_ai.operation.name": "chat"}));
        r.events = vec![
            event("gen_ai.system.message", json!({"content": "be brief"})),
            event("gen_ai.user.message", json!({"content": "hi"})),
            event(
                "gen_ai.choice",
                json!({"role": "assistant", "content": "hello"}),
            ),
        ];
        assert_eq!(conversation(&normalize(r).0), expected_conversation());
    }

    #[test]
    fn genai_content_in_operation_details_event() {
        let mut r = raw(json!({"gen_ai.operation.name": "chat"}));
        r.events = vec![event(
            "gen_ai.client.inference.operation.details",
            json!({
                "gen_ai.system_instructions": [{"type": "text", "content": "be brief"}],
                "gen_ai.input.messages": "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"hi\"}]}]",
                "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}],
            }),
        )];
        assert_eq!(conversation(&normalize(r).0), expected_conversation());
    }

    #[test]
    fn traceloop_llm_span_with_indexed_prompts() {
        let (s, _) = normalize(raw(json!({
            "llm.request.type": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "be brief",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": "hi",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "hello",
            "gen_ai.completion.0.finish_reason": "stop",
            "gen_ai.usage.prompt_tokens": 7,
            "gen_ai.usage.completion_tokens": 3,
            "llm.usage.total_tokens": 10,
        })));
        assert_eq!(s.span_type, "CHAT_MODEL");
        assert_eq!(s.tokens, usage(7, 3, 10));
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(s.attributes[keys::LLM_PROVIDER], json!("openai"));
        assert_eq!(
            s.outputs.as_ref().unwrap()["choices"][0]["finish_reason"],
            json!("stop")
        );
        assert_eq!(conversation(&s), expected_conversation());
    }

    #[test]
    fn traceloop_tool_calls_and_content_parts() {
        let (s, _) = normalize(raw(json!({
            "llm.request.type": "chat",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "[{\"type\": \"text\", \"text\": \"weather?\"}]",
            "gen_ai.prompt.1.role": "tool",
            "gen_ai.prompt.1.tool_call_id": "call_0",
            "gen_ai.prompt.1.content": "sunny",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.tool_calls.0.id": "call_1",
            "gen_ai.completion.0.tool_calls.0.name": "get_weather",
            "gen_ai.completion.0.tool_calls.0.arguments": "{\"city\": \"Paris\"}",
        })));
        let msgs = chat::input_messages(s.inputs.as_ref().unwrap()).unwrap();
        assert_eq!(msgs[0].content, "weather?");
        assert_eq!(msgs[1].tool_call_id.as_deref(), Some("call_0"));
        let out = chat::output_messages(s.outputs.as_ref().unwrap()).unwrap();
        assert_eq!(out[0].tool_calls[0].name, "get_weather");
        assert_eq!(out[0].tool_calls[0].id.as_deref(), Some("call_1"));
        assert_eq!(args(&out[0].tool_calls[0]), json!({"city": "Paris"}));
    }

    #[test]
    fn traceloop_entities_and_association_properties() {
        for (kind, want) in [
            ("workflow", "WORKFLOW"),
            ("task", "TASK"),
            ("agent", "AGENT"),
            ("tool", "TOOL"),
            ("unknown", "UNKNOWN"),
        ] {
            let (s, _) = normalize(raw(json!({"traceloop.span.kind": kind})));
            assert_eq!(s.span_type, want);
        }
        let (s, h) = normalize(raw(json!({
            "traceloop.span.kind": "workflow",
            "traceloop.entity.name": "support",
            "traceloop.entity.input": "{\"args\": [\"where is my order?\"], \"kwargs\": {}}",
            "traceloop.entity.output": "\"shipped\"",
            "traceloop.association.properties.session_id": "sess-1",
            "traceloop.association.properties.user_id": "u-1",
        })));
        assert_eq!(
            s.inputs,
            Some(json!({"args": ["where is my order?"], "kwargs": {}}))
        );
        assert_eq!(s.outputs, Some(json!("shipped")));
        assert_eq!(h.metadata[keys::TRACE_SESSION], "sess-1");
        assert_eq!(h.metadata[keys::TRACE_USER], "u-1");
        let (s, _) = normalize(raw(json!({"llm.request.type": "embedding"})));
        assert_eq!(s.span_type, "EMBEDDING");
    }

    #[test]
    fn the_same_call_reads_the_same_from_every_convention() {
        // One chat call as each SDK records it: type family, model, tokens
        // and conversation agree.
        let mlflow = raw(json!({
            "mlflow.spanType": "CHAT_MODEL",
            "mlflow.spanInputs": {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
            "mlflow.spanOutputs": {"choices": [{"message": {"role": "assistant", "content": "hello"}}]},
            "mlflow.chat.tokenUsage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        }));
        let oi = raw(json!({
            "openinference.span.kind": "LLM", "llm.model_name": "m",
            "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "be brief",
            "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "hi",
            "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "hello",
            "llm.token_count.prompt": 3, "llm.token_count.completion": 2,
        }));
        let genai = raw(json!({
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
            "gen_ai.system_instructions": [{"type": "text", "content": "be brief"}],
            "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}],
            "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}],
            "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 2,
        }));
        let traceloop = raw(json!({
            "llm.request.type": "chat", "gen_ai.request.model": "m",
            "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "be brief",
            "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "hi",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "hello",
            "gen_ai.usage.prompt_tokens": 3, "gen_ai.usage.completion_tokens": 2,
        }));
        for r in [mlflow, oi, genai, traceloop] {
            let (s, _) = normalize(r);
            assert!(["LLM", "CHAT_MODEL"].contains(&s.span_type.as_str()));
            assert_eq!(s.model.as_deref(), Some("m"));
            assert_eq!(s.tokens, usage(3, 2, 5));
            assert_eq!(
                s.attributes[keys::CHAT_TOKEN_USAGE]["total_tokens"],
                json!(5)
            );
            assert_eq!(conversation(&s), expected_conversation());
        }
    }

    #[test]
    fn hints_session_user_tags_and_resource() {
        let (_, h) = normalize(raw(json!({
            "session.id": "s1",
            "user.id": "u1",
            "mlflow.traceTag.env": "prod",
            "mlflow.traceTag.mlflow.traceName": "ignored",
        })));
        assert_eq!(h.metadata[keys::TRACE_SESSION], "s1");
        assert_eq!(h.metadata[keys::TRACE_USER], "u1");
        assert_eq!(h.tags.len(), 1);
        assert_eq!(h.tags["env"], "prod");
        assert!(h.has_session_or_user());
        // Trace tags only come from the root span.
        let mut child = raw(json!({"mlflow.traceTag.env": "dev"}));
        child.parent_span_id = Some(OtelSpanId([3; 8]));
        assert!(normalize(child).1.tags.is_empty());
        let r = resource_hints(
            json!({"service.name": "bot", "telemetry.sdk.language": "python",
                   "mlflow.trace.spansLocation": "x", "process.pid": 42})
            .as_object()
            .unwrap(),
        );
        assert_eq!(r.tags.len(), 2);
        assert_eq!(r.tags["service.name"], "bot");
        assert_eq!(r.tags["process.pid"], "42");
    }
}
