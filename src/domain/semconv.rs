//! Semantic conventions: turns a span's raw attribute map (whatever SDK sent
//! it) into tracebox's span model — type, inputs, outputs, model, tokens —
//! and the trace-level hints some conventions carry (session, user, tags).
//!
//! Understood: MLflow's own attributes, OpenTelemetry GenAI (`gen_ai.*`,
//! message attributes and events), OpenInference (`openinference.*`,
//! `input.value`, `llm.*`) and Traceloop/OpenLLMetry (`traceloop.*`,
//! `gen_ai.prompt.N.*`). MLflow keys win when present; conventions only fill
//! what is missing, as MLflow's own server does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{OtelSpanId, OtelTraceId, Span, SpanEvent, SpanStatusCode, TokenUsage};

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
    pub fn merge(&mut self, other: TraceHints) {
        for (k, v) in other.tags {
            self.tags.entry(k).or_insert(v);
        }
        for (k, v) in other.metadata {
            self.metadata.entry(k).or_insert(v);
        }
    }
}

pub mod keys {
    pub const SPAN_TYPE: &str = "mlflow.spanType";
    pub const SPAN_INPUTS: &str = "mlflow.spanInputs";
    pub const SPAN_OUTPUTS: &str = "mlflow.spanOutputs";
    pub const TRACE_REQUEST_ID: &str = "mlflow.traceRequestId";
    pub const CHAT_TOKEN_USAGE: &str = "mlflow.chat.tokenUsage";
    pub const LLM_MODEL: &str = "mlflow.llm.model";
    pub const TRACE_TAG_PREFIX: &str = "mlflow.traceTag.";
}

/// Undoes double JSON encoding: OTLP senders (MLflow's SDK in OTLP-exporter
/// mode among them) often send structured values as JSON text. A string
/// whose text parses to a JSON string, object or array is replaced by that
/// value, exactly as MLflow's server does on storage.
pub fn sanitize(v: Value) -> Value {
    if let Value::String(s) = &v {
        let t = s.trim_start();
        if (t.starts_with('"') || t.starts_with('{') || t.starts_with('['))
            && let Ok(parsed @ (Value::String(_) | Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(s)
        {
            return parsed;
        }
    }
    v
}

fn take_str(attrs: &mut Map<String, Value>, key: &str) -> Option<String> {
    match attrs.remove(key)? {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn get_str<'a>(attrs: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    attrs
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn get_i64(attrs: &Map<String, Value>, key: &str) -> Option<i64> {
    match attrs.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

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
        .find_map(|k| attrs.get(*k).filter(|v| non_empty(v)).cloned())
}

/// Maps a convention's span kind onto MLflow's span types.
fn convention_span_type(attrs: &Map<String, Value>) -> Option<String> {
    if let Some(k) = get_str(attrs, "openinference.span.kind") {
        return Some(k.to_ascii_uppercase());
    }
    if let Some(op) = get_str(attrs, "gen_ai.operation.name") {
        let t = match op {
            "chat" => "CHAT_MODEL",
            "create_agent" | "invoke_agent" => "AGENT",
            "embeddings" => "EMBEDDING",
            "execute_tool" => "TOOL",
            "generate_content" | "text_completion" | "response" => "LLM",
            _ => "UNKNOWN",
        };
        return Some(t.to_string());
    }
    if let Some(k) = get_str(attrs, "traceloop.span.kind") {
        let t = match k {
            "workflow" => "WORKFLOW",
            "task" => "TASK",
            "agent" => "AGENT",
            "tool" => "TOOL",
            _ => "UNKNOWN",
        };
        return Some(t.to_string());
    }
    if let Some(k) = get_str(attrs, "langfuse.observation.type") {
        let t = match k {
            "generation" => "LLM".to_string(),
            "span" => "UNKNOWN".to_string(),
            other => other.to_ascii_uppercase(),
        };
        return Some(t);
    }
    // Traceloop LLM spans carry only `llm.request.type`.
    if let Some(t) = get_str(attrs, "llm.request.type") {
        return Some(if t == "chat" { "CHAT_MODEL" } else { "LLM" }.to_string());
    }
    None
}

/// Collects indexed attributes `prefix.N.suffix...` into a list of objects:
/// `gen_ai.prompt.0.role = user` becomes `[{"role": "user"}]`. Nested
/// indexed groups (tool calls) become nested lists.
fn indexed_list(attrs: &Map<String, Value>, prefix: &str) -> Option<Vec<Value>> {
    let mut items: BTreeMap<usize, Map<String, Value>> = BTreeMap::new();
    let p = format!("{prefix}.");
    for (k, v) in attrs {
        let Some(rest) = k.strip_prefix(&p) else {
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

/// OpenInference `llm.input_messages.N.message.{role,content,...}` as chat messages.
fn openinference_messages(attrs: &Map<String, Value>, prefix: &str) -> Option<Value> {
    let list = indexed_list(attrs, prefix)?;
    let msgs: Vec<Value> = list
        .into_iter()
        .map(|m| match m {
            Value::Object(mut o) => o.remove("message").unwrap_or(Value::Object(o)),
            other => other,
        })
        .map(flatten_oi_tool_calls)
        .collect();
    Some(Value::Array(msgs))
}

/// OpenInference nests tool calls as `tool_calls.N.tool_call.function.*`;
/// OpenAI's shape is `tool_calls[N].function.*`.
fn flatten_oi_tool_calls(m: Value) -> Value {
    let Value::Object(mut o) = m else { return m };
    if let Some(Value::Array(calls)) = o.remove("tool_calls") {
        let calls = calls
            .into_iter()
            .map(|c| match c {
                Value::Object(mut co) => co.remove("tool_call").unwrap_or(Value::Object(co)),
                other => other,
            })
            .collect();
        o.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(o)
}

fn derive_inputs(attrs: &Map<String, Value>, events: &[SpanEvent]) -> Option<Value> {
    if let Some(v) = first_present(
        attrs,
        &[
            "input.value",
            "gen_ai.input.messages",
            "traceloop.entity.input",
            "gen_ai.tool.call.arguments",
            "langfuse.observation.input",
            "lmnr.span.input",
        ],
    ) {
        return Some(v);
    }
    if let Some(msgs) = openinference_messages(attrs, "llm.input_messages") {
        return Some(serde_json::json!({ "messages": msgs }));
    }
    if let Some(prompts) = indexed_list(attrs, "gen_ai.prompt") {
        return Some(serde_json::json!({ "messages": prompts }));
    }
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
            m.insert("role".into(), Value::from(role));
            for (k, v) in &e.attributes {
                if k == "content" || k == "tool_calls" || k == "id" || k == "name" {
                    m.insert(k.clone(), sanitize(v.clone()));
                }
            }
            Some(Value::Object(m))
        })
        .collect();
    (!msgs.is_empty()).then(|| serde_json::json!({ "messages": msgs }))
}

fn derive_outputs(attrs: &Map<String, Value>, events: &[SpanEvent]) -> Option<Value> {
    if let Some(v) = first_present(
        attrs,
        &[
            "output.value",
            "gen_ai.output.messages",
            "traceloop.entity.output",
            "gen_ai.tool.call.result",
            "langfuse.observation.output",
            "lmnr.span.output",
        ],
    ) {
        return Some(v);
    }
    if let Some(msgs) = openinference_messages(attrs, "llm.output_messages") {
        return Some(serde_json::json!({ "messages": msgs }));
    }
    if let Some(c) = indexed_list(attrs, "gen_ai.completion") {
        return Some(serde_json::json!({ "messages": c }));
    }
    let choices: Vec<Value> = events
        .iter()
        .filter(|e| e.name == "gen_ai.choice")
        .map(|e| {
            let mut m = Map::new();
            for (k, v) in &e.attributes {
                m.insert(k.clone(), sanitize(v.clone()));
            }
            Value::Object(m)
        })
        .collect();
    (!choices.is_empty()).then(|| serde_json::json!({ "choices": choices }))
}

fn derive_tokens(attrs: &Map<String, Value>) -> TokenUsage {
    if let Some(Value::Object(u)) = attrs.get(keys::CHAT_TOKEN_USAGE) {
        let t = TokenUsage {
            input: u.get("input_tokens").and_then(Value::as_i64),
            output: u.get("output_tokens").and_then(Value::as_i64),
            total: u.get("total_tokens").and_then(Value::as_i64),
        };
        if !t.is_empty() {
            return t;
        }
    }
    let pick = |ks: &[&str]| ks.iter().find_map(|k| get_i64(attrs, k));
    let t = TokenUsage {
        input: pick(&[
            "llm.token_count.prompt",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
        ]),
        output: pick(&[
            "llm.token_count.completion",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        ]),
        total: pick(&[
            "llm.token_count.total",
            "llm.usage.total_tokens",
            "gen_ai.usage.total_tokens",
        ]),
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
}

/// Applies the conventions; the returned span keeps every attribute except
/// the MLflow keys that have their own fields (type, inputs, outputs and the
/// trace id, which is implied by the span's trace).
pub fn normalize(raw: RawSpan) -> (Span, TraceHints) {
    let mut attrs: Map<String, Value> = raw
        .attributes
        .into_iter()
        .map(|(k, v)| (k, sanitize(v)))
        .collect();
    attrs.remove(keys::TRACE_REQUEST_ID);
    let mlflow_type = take_str(&mut attrs, keys::SPAN_TYPE).filter(|t| !t.is_empty());
    let span_type = match mlflow_type {
        Some(t) if t != "UNKNOWN" => t,
        other => convention_span_type(&attrs)
            .or(other)
            .unwrap_or_else(|| "UNKNOWN".to_string()),
    };
    let inputs = attrs
        .remove(keys::SPAN_INPUTS)
        .or_else(|| derive_inputs(&attrs, &raw.events));
    let outputs = attrs
        .remove(keys::SPAN_OUTPUTS)
        .or_else(|| derive_outputs(&attrs, &raw.events));
    let tokens = derive_tokens(&attrs);
    if !tokens.is_empty() && !attrs.contains_key(keys::CHAT_TOKEN_USAGE) {
        let mut u = Map::new();
        for (k, v) in [
            ("input_tokens", tokens.input),
            ("output_tokens", tokens.output),
            ("total_tokens", tokens.total),
        ] {
            if let Some(v) = v {
                u.insert(k.into(), Value::from(v));
            }
        }
        attrs.insert(keys::CHAT_TOKEN_USAGE.into(), Value::Object(u));
    }
    let model = derive_model(&attrs, inputs.as_ref(), outputs.as_ref());

    let mut hints = TraceHints::default();
    if let Some(s) =
        get_str(&attrs, "session.id").or_else(|| get_str(&attrs, "gen_ai.conversation.id"))
    {
        hints
            .metadata
            .insert("mlflow.trace.session".into(), s.to_string());
    }
    if let Some(u) = get_str(&attrs, "user.id") {
        hints
            .metadata
            .insert("mlflow.trace.user".into(), u.to_string());
    }
    if raw.parent_span_id.is_none() {
        for (k, v) in &attrs {
            if let Some(tag) = k.strip_prefix(keys::TRACE_TAG_PREFIX) {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                hints.tags.insert(tag.to_string(), v);
            }
        }
    }

    let span = Span {
        trace_id: raw.trace_id,
        span_id: raw.span_id,
        parent_span_id: raw.parent_span_id,
        name: raw.name,
        span_type,
        kind: raw.kind,
        status: raw.status,
        status_message: raw.status_message,
        start_ns: raw.start_ns,
        end_ns: raw.end_ns,
        inputs,
        outputs,
        attributes: attrs,
        events: raw.events,
        model,
        tokens,
    };
    (span, hints)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn sanitize_unwraps_json_text_but_not_scalars() {
        assert_eq!(sanitize(json!("\"LLM\"")), json!("LLM"));
        assert_eq!(sanitize(json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(sanitize(json!("123")), json!("123"));
        assert_eq!(sanitize(json!("plain")), json!("plain"));
    }

    #[test]
    fn openinference_llm_span() {
        let (s, _) = normalize(raw(json!({
            "openinference.span.kind": "LLM",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "hi",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "hello",
            "llm.token_count.prompt": 10,
            "llm.token_count.completion": 5,
            "llm.model_name": "gpt-4o-mini",
        })));
        assert_eq!(s.span_type, "LLM");
        assert_eq!(
            s.inputs,
            Some(json!({"messages": [{"role": "user", "content": "hi"}]}))
        );
        assert_eq!(
            s.outputs,
            Some(json!({"messages": [{"role": "assistant", "content": "hello"}]}))
        );
        assert_eq!(
            s.tokens,
            TokenUsage {
                input: Some(10),
                output: Some(5),
                total: Some(15)
            }
        );
        assert_eq!(s.model.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn traceloop_prompts_and_genai_usage() {
        let (s, _) = normalize(raw(json!({
            "llm.request.type": "chat",
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "be brief",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": "hi",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "yo",
            "gen_ai.usage.prompt_tokens": 7,
            "gen_ai.usage.completion_tokens": 3,
            "gen_ai.request.model": "m",
        })));
        assert_eq!(s.span_type, "CHAT_MODEL");
        assert_eq!(s.inputs.unwrap()["messages"][1]["content"], json!("hi"));
        assert_eq!(s.outputs.unwrap()["messages"][0]["content"], json!("yo"));
        assert_eq!(s.tokens.total, Some(10));
    }

    #[test]
    fn genai_events_and_session_hints() {
        let mut r = raw(json!({
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": "4",
            "session.id": "s1",
            "user.id": "u1",
            "mlflow.traceTag.env": "prod",
        }));
        r.events.push(SpanEvent {
            name: "gen_ai.user.message".into(),
            time_ns: 1,
            attributes: json!({"content": "hello"}).as_object().cloned().unwrap(),
        });
        let (s, h) = normalize(r);
        assert_eq!(s.span_type, "CHAT_MODEL");
        assert_eq!(s.inputs.unwrap()["messages"][0]["role"], json!("user"));
        assert_eq!(s.tokens.input, Some(4));
        assert_eq!(h.metadata["mlflow.trace.session"], "s1");
        assert_eq!(h.metadata["mlflow.trace.user"], "u1");
        assert_eq!(h.tags["env"], "prod");
    }
}
