//! One trace: header, span tree with a waterfall, the selected span's
//! details (chat, inputs/outputs as collapsible JSON, attributes, events and
//! exceptions, tokens), and its assessments with forms that add human
//! feedback and expectations through the store call the MLflow API uses, so
//! the SDK sees exactly what the form saved.

use std::collections::{BTreeMap, HashMap, HashSet};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::Value;

use super::error::{WebError, WebResult};
use super::feedback::{self, FeedbackForm};
use super::format;
use super::json_view::{self, JsonNode};
use super::layout::Chrome;
use super::session::Ctx;
use super::sessions::session_href;
use super::traces::{Chip, FacetLink, chip, facet, status, urlencode};
use super::users::user_href;
use crate::app::AppState;
use crate::domain::chat::{self, ChatMessage};
use crate::domain::{
    AssessmentKind, OtelSpanId, Span, SpanStatusCode, TokenUsage, TraceInfo, metadata_keys,
};
use crate::store::sessions::is_session_level;
use crate::store::views::{SpanSummary, TraceView};

/// Depth classes the stylesheet defines (`d0` … `d24`); deeper spans share the last.
const MAX_DEPTH_CLASS: usize = 24;
/// The waterfall's coordinate width (SVG viewBox units).
const WF_WIDTH: f64 = 1000.0;

pub struct TreeRow {
    pub span_id: String,
    pub href: String,
    pub panel_href: String,
    pub name: String,
    pub type_label: String,
    pub type_class: &'static str,
    /// `aria-level` (1 for roots).
    pub level: usize,
    pub depth_class: String,
    pub status_class: &'static str,
    pub duration: String,
    pub bar_x: String,
    pub bar_w: String,
    pub selected: bool,
    pub exception: bool,
    pub tokens: String,
    pub tooltip: String,
}

/// (css class, short label) of an MLflow span type.
fn span_type(t: &str) -> (&'static str, String) {
    match t.to_ascii_uppercase().as_str() {
        "LLM" => ("llm", "LLM".into()),
        "CHAT_MODEL" => ("llm", "Chat".into()),
        "EMBEDDING" => ("emb", "Embed".into()),
        "RETRIEVER" => ("ret", "Retrieve".into()),
        "RERANKER" => ("ret", "Rerank".into()),
        "TOOL" => ("tool", "Tool".into()),
        "AGENT" => ("agent", "Agent".into()),
        "CHAIN" => ("chain", "Chain".into()),
        "PARSER" => ("chain", "Parser".into()),
        "" | "UNKNOWN" => ("other", "Span".into()),
        other => ("other", format::truncate(&other.to_lowercase(), 10)),
    }
}

fn token_text(t: &TokenUsage) -> String {
    match (t.input, t.output, t.total_or_sum()) {
        (Some(i), Some(o), Some(total)) => format!(
            "{} tokens ({} in · {} out)",
            format::int(total),
            format::int(i),
            format::int(o)
        ),
        (_, _, Some(total)) => format!("{} tokens", format::int(total)),
        _ => String::new(),
    }
}

fn trace_href(trace_id: &str) -> String {
    format!("/traces/{}", urlencode(trace_id))
}

/// Depth-first order with depths; spans whose parent is missing are roots.
fn tree(spans: &[SpanSummary], selected: Option<OtelSpanId>, trace_id: &str) -> Vec<TreeRow> {
    if spans.is_empty() {
        return Vec::new();
    }
    let t0 = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let t1 = spans
        .iter()
        .map(|s| s.end_ns.unwrap_or(s.start_ns))
        .max()
        .unwrap_or(t0);
    let total = (t1 - t0).max(1) as f64;
    let ids: HashSet<OtelSpanId> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<OtelSpanId, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_span_id {
            Some(p) if ids.contains(&p) && p != s.span_id => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    let base = trace_href(trace_id);
    let mut out = Vec::with_capacity(spans.len());
    let mut seen = HashSet::new();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    // Roots first; then anything a parent cycle (hostile input) hid.
    let starts: Vec<usize> = roots.into_iter().chain(0..spans.len()).collect();
    let mut next_start = starts.into_iter();
    while let Some((i, depth)) = stack.pop().or_else(|| {
        next_start
            .by_ref()
            .find(|i| !seen.contains(&spans[*i].span_id))
            .map(|i| (i, 0))
    }) {
        let s = &spans[i];
        if !seen.insert(s.span_id) {
            continue;
        }
        if let Some(kids) = children.get(&s.span_id) {
            for k in kids.iter().rev() {
                stack.push((*k, depth + 1));
            }
        }
        let (type_class, type_label) = span_type(&s.span_type);
        let end = s.end_ns.unwrap_or(t1);
        let x = (s.start_ns - t0) as f64 / total * WF_WIDTH;
        let w = ((end - s.start_ns).max(0) as f64 / total * WF_WIDTH).max(2.0);
        let duration = s
            .end_ns
            .map(|e| format::duration_ns(e - s.start_ns))
            .unwrap_or_else(|| "running".into());
        let hex = s.span_id.to_hex();
        let tokens = s
            .tokens
            .total_or_sum()
            .map(|t| format!("{} tok", format::compact(t as f64)))
            .unwrap_or_default();
        out.push(TreeRow {
            href: format!("{base}?span={hex}"),
            panel_href: format!("{base}/spans/{hex}"),
            tooltip: format!(
                "{}{} · starts at +{} · {}",
                s.name,
                s.model
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default(),
                format::duration_ns(s.start_ns - t0),
                duration
            ),
            span_id: hex,
            name: s.name.clone(),
            type_label,
            type_class,
            level: depth + 1,
            depth_class: format!("d{}", depth.min(MAX_DEPTH_CLASS)),
            status_class: match s.status {
                SpanStatusCode::Error => "error",
                _ if s.end_ns.is_none() => "running",
                _ => "ok",
            },
            duration,
            bar_x: format!("{:.1}", x.min(WF_WIDTH - 2.0)),
            bar_w: format!("{:.1}", w.min(WF_WIDTH - x).max(2.0)),
            selected: Some(s.span_id) == selected,
            exception: s.has_exception,
            tokens,
        });
    }
    out
}

pub struct ToolCallView {
    pub name: String,
    pub id: String,
    pub arguments: String,
}

pub struct MsgView {
    pub role: String,
    pub role_class: &'static str,
    pub content: String,
    pub tool_calls: Vec<ToolCallView>,
    pub tool_call_id: String,
}

fn pretty_json_text(s: &str) -> String {
    serde_json::from_str::<Value>(s)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| s.to_string())
}

fn messages(ms: Vec<ChatMessage>) -> Vec<MsgView> {
    ms.into_iter()
        .map(|m| MsgView {
            role_class: match m.role.as_str() {
                "system" | "developer" => "system",
                "user" | "human" => "user",
                "assistant" | "ai" | "model" => "assistant",
                "tool" | "function" | "ipython" => "tool",
                _ => "other",
            },
            role: m.role,
            content: m.content,
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|t| ToolCallView {
                    name: t.name,
                    id: t.id.unwrap_or_default(),
                    arguments: pretty_json_text(&t.arguments),
                })
                .collect(),
            tool_call_id: m.tool_call_id.unwrap_or_default(),
        })
        .collect()
}

pub struct KeyValue {
    pub key: String,
    pub value: String,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kv_rows(m: &serde_json::Map<String, Value>) -> Vec<KeyValue> {
    let mut rows: Vec<KeyValue> = m
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: format::truncate(&value_text(v), 5000),
        })
        .collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}

pub struct EventView {
    pub name: String,
    pub offset: String,
    pub attributes: Vec<KeyValue>,
}

pub struct ExceptionView {
    pub kind: String,
    pub message: String,
    pub stacktrace: String,
    pub offset: String,
}

pub struct SpanDetail {
    pub span_id: String,
    pub name: String,
    pub type_label: String,
    pub type_class: &'static str,
    pub status_class: &'static str,
    pub status_label: &'static str,
    pub status_message: String,
    pub start_iso: String,
    pub start_label: String,
    pub duration: String,
    pub model: String,
    pub tokens: String,
    pub chat_in: Vec<MsgView>,
    pub chat_out: Vec<MsgView>,
    pub inputs: Option<Vec<JsonNode>>,
    pub outputs: Option<Vec<JsonNode>>,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<EventView>,
    pub exceptions: Vec<ExceptionView>,
    pub json_href: String,
}

impl SpanDetail {
    pub fn has_chat(&self) -> bool {
        !self.chat_in.is_empty() || !self.chat_out.is_empty()
    }
}

fn detail(s: &Span, trace_id: &str) -> SpanDetail {
    let (type_class, type_label) = span_type(&s.span_type);
    let str_attr = |attrs: &serde_json::Map<String, Value>, k: &str| {
        attrs.get(k).map(value_text).unwrap_or_default()
    };
    let mut exceptions = Vec::new();
    let mut events = Vec::new();
    for e in &s.events {
        let offset = format!("+{}", format::duration_ns(e.time_ns - s.start_ns));
        if e.name == "exception" {
            exceptions.push(ExceptionView {
                kind: str_attr(&e.attributes, "exception.type"),
                message: str_attr(&e.attributes, "exception.message"),
                stacktrace: str_attr(&e.attributes, "exception.stacktrace"),
                offset,
            });
        } else {
            events.push(EventView {
                name: e.name.clone(),
                offset,
                attributes: kv_rows(&e.attributes),
            });
        }
    }
    let (status_class, status_label) = match s.status {
        SpanStatusCode::Error => ("error", "Error"),
        SpanStatusCode::Ok => ("ok", "OK"),
        SpanStatusCode::Unset if s.end_ns.is_none() => ("running", "Running"),
        SpanStatusCode::Unset => ("unknown", "Unset"),
    };
    let start_ms = s.start_ns / 1_000_000;
    SpanDetail {
        span_id: s.span_id.to_hex(),
        name: s.name.clone(),
        type_label,
        type_class,
        status_class,
        status_label,
        // An exception event usually repeats the status message; show it once.
        status_message: if exceptions
            .iter()
            .any(|x| !x.message.is_empty() && s.status_message.contains(&x.message))
        {
            String::new()
        } else {
            s.status_message.clone()
        },
        start_iso: format::iso(start_ms),
        start_label: format::datetime(start_ms),
        duration: s
            .end_ns
            .map(|e| format::duration_ns(e - s.start_ns))
            .unwrap_or_else(|| "running".into()),
        model: s.model.clone().unwrap_or_default(),
        tokens: token_text(&s.tokens),
        chat_in: s
            .inputs
            .as_ref()
            .and_then(chat::input_messages)
            .map(messages)
            .unwrap_or_default(),
        chat_out: s
            .outputs
            .as_ref()
            .and_then(chat::output_messages)
            .map(messages)
            .unwrap_or_default(),
        inputs: s.inputs.as_ref().map(json_view::nodes),
        outputs: s.outputs.as_ref().map(json_view::nodes),
        attributes: kv_rows(&s.attributes),
        events,
        exceptions,
        json_href: format!("{}/spans/{}/json", trace_href(trace_id), s.span_id.to_hex()),
    }
}

pub struct AssessmentRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub chip: Chip,
    pub value: String,
    pub source: String,
    pub rationale: String,
    pub time_iso: String,
    pub time_label: String,
    pub valid: bool,
    pub span_href: String,
    pub span_label: String,
    pub error: String,
    pub delete_action: String,
    /// About the whole session (MLflow's session-level assessment).
    pub session_level: bool,
}

fn assessment_rows(view: &TraceView) -> Vec<AssessmentRow> {
    let names: HashMap<String, &str> = view
        .spans
        .iter()
        .map(|s| (s.span_id.to_hex(), s.name.as_str()))
        .collect();
    let base = trace_href(&view.info.trace_id);
    let session = view.info.session_id();
    let mut rows: Vec<AssessmentRow> = view
        .info
        .assessments
        .iter()
        .map(|a| {
            let value = match &a.value {
                None => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            };
            let (span_href, span_label) = match &a.span_id {
                Some(s) if !s.is_empty() => (
                    format!("{base}?span={}", urlencode(s)),
                    names
                        .get(s)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| s.clone()),
                ),
                _ => (String::new(), String::new()),
            };
            AssessmentRow {
                id: a.assessment_id.clone(),
                name: a.name.clone(),
                kind: a.kind.as_str(),
                chip: chip(a),
                value,
                source: match a.source.source_id.as_str() {
                    "" => a.source.source_type.as_str().to_string(),
                    id => format!("{} · {id}", a.source.source_type.as_str()),
                },
                rationale: a.rationale.clone().unwrap_or_default(),
                time_iso: format::iso(a.create_time_ms),
                time_label: format::datetime(a.create_time_ms),
                valid: a.valid,
                span_href,
                span_label,
                error: a
                    .error
                    .as_ref()
                    .map(|e| {
                        let mut s = e.error_code.clone();
                        if let Some(m) = &e.error_message {
                            s.push_str(": ");
                            s.push_str(m);
                        }
                        s
                    })
                    .unwrap_or_default(),
                delete_action: format!("{base}/assessments/{}/delete", urlencode(&a.assessment_id)),
                session_level: session.is_some_and(|s| is_session_level(a, s)),
            }
        })
        .collect();
    rows.sort_by_key(|r| (!r.valid, std::cmp::Reverse(r.time_iso.clone())));
    rows
}

/// A trace's user or session: its own page, and the trace list filtered to
/// it.
pub struct Facet {
    pub label: String,
    pub href: String,
    pub traces_href: String,
}

fn facet_of(info: &TraceInfo, key: &str, value: &str, href: String) -> Facet {
    let FacetLink {
        label,
        href: traces_href,
    } = facet(info, key, value);
    Facet {
        label,
        href,
        traces_href,
    }
}

pub struct Header {
    pub trace_id: String,
    pub name: String,
    pub status_class: &'static str,
    pub status_label: &'static str,
    pub started_iso: String,
    pub started_label: String,
    pub duration: String,
    pub tokens: String,
    pub user: Option<Facet>,
    pub session: Option<Facet>,
    pub tags: Vec<KeyValue>,
    pub all_tags: Vec<KeyValue>,
    pub metadata: Vec<KeyValue>,
    pub span_count: usize,
    pub list_href: String,
}

fn header_view(v: &TraceView) -> Header {
    let info = &v.info;
    let (status_class, status_label) = status(info.state);
    let kv = |m: &BTreeMap<String, String>| -> Vec<KeyValue> {
        m.iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: format::truncate(v, 600),
            })
            .collect()
    };
    Header {
        trace_id: info.trace_id.clone(),
        name: info.name().unwrap_or("(unnamed)").to_string(),
        status_class,
        status_label,
        started_iso: format::iso(info.request_time_ms),
        started_label: format::datetime(info.request_time_ms),
        duration: info
            .execution_time_ms
            .map(|ms| format::duration_ms(ms as f64))
            .unwrap_or_else(|| "—".into()),
        tokens: token_text(&info.tokens),
        user: info.user_id().map(|u| {
            facet_of(
                info,
                metadata_keys::USER,
                u,
                user_href(info.experiment_id, u),
            )
        }),
        session: info.session_id().map(|s| {
            facet_of(
                info,
                metadata_keys::SESSION,
                s,
                session_href(info.experiment_id, s),
            )
        }),
        tags: info
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("mlflow."))
            .map(|(k, v)| KeyValue {
                key: format::truncate(k, 40),
                value: format::truncate(v, 60),
            })
            .collect(),
        all_tags: kv(&info.tags),
        metadata: kv(&info.metadata),
        span_count: v.spans.len(),
        list_href: format!("/experiments/{}/traces", info.experiment_id),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    span: String,
    saved: String,
    error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "trace.html")]
pub struct TracePage {
    chrome: Chrome,
    header: Header,
    rows: Vec<TreeRow>,
    truncated: bool,
    detail: Option<SpanDetail>,
    assessments: Vec<AssessmentRow>,
    feedback_action: String,
    expectation_action: String,
    selected_span: String,
    selected_span_name: String,
    saved: Option<&'static str>,
    form_error: Option<&'static str>,
    axis: Vec<String>,
}

/// Waterfall time-axis labels at 0, ½ and the whole trace.
fn axis(spans: &[SpanSummary]) -> Vec<String> {
    let t0 = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let t1 = spans
        .iter()
        .map(|s| s.end_ns.unwrap_or(s.start_ns))
        .max()
        .unwrap_or(t0);
    (0..=2)
        .map(|i| format::duration_ns((t1 - t0) * i / 2))
        .collect()
}

pub async fn page(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(trace_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> WebResult<TracePage> {
    let span = OtelSpanId::from_hex(q.span.trim()).ok();
    let view = app.store.trace_view(trace_id.clone(), span).await?;
    let chrome = Chrome::new(
        &app,
        &ctx,
        view.info.name().unwrap_or(&view.info.trace_id).to_string(),
        "traces",
        Some(view.info.experiment_id),
    )
    .await?;
    let selected = view.selected.as_ref().map(|s| s.span_id);
    let base = trace_href(&trace_id);
    let (saved, form_error) = feedback::outcome(&q.saved, &q.error);
    Ok(TracePage {
        header: header_view(&view),
        rows: tree(&view.spans, selected, &trace_id),
        truncated: view.truncated,
        detail: view.selected.as_ref().map(|s| detail(s, &trace_id)),
        assessments: assessment_rows(&view),
        feedback_action: format!("{base}/feedback"),
        expectation_action: format!("{base}/expectations"),
        selected_span: selected.map(|s| s.to_hex()).unwrap_or_default(),
        selected_span_name: view
            .selected
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        saved,
        form_error,
        axis: axis(&view.spans),
        chrome,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "span_panel.html")]
pub struct SpanPanel {
    detail: Option<SpanDetail>,
}

/// The span detail fragment, for switching spans without reloading the page.
pub async fn span_panel(
    State(app): State<AppState>,
    Path((trace_id, span_id)): Path<(String, String)>,
) -> WebResult<SpanPanel> {
    let id = OtelSpanId::from_hex(&span_id).map_err(|e| WebError::bad_request(e.to_string()))?;
    let span = app.store.span(trace_id.clone(), id).await?;
    Ok(SpanPanel {
        detail: Some(detail(&span, &trace_id)),
    })
}

/// One span's payloads as JSON (everything, unlike the bounded view).
pub async fn span_json(
    State(app): State<AppState>,
    Path((trace_id, span_id)): Path<(String, String)>,
) -> WebResult<Response> {
    let id = OtelSpanId::from_hex(&span_id).map_err(|e| WebError::bad_request(e.to_string()))?;
    let s = app.store.span(trace_id, id).await?;
    let events: Vec<Value> = s
        .events
        .iter()
        .map(|e| serde_json::json!({"name": e.name, "time_unix_nano": e.time_ns, "attributes": e.attributes}))
        .collect();
    let body = serde_json::json!({
        "span_id": s.span_id.to_hex(),
        "parent_span_id": s.parent_span_id.map(|p| p.to_hex()),
        "name": s.name,
        "span_type": s.span_type,
        "start_time_unix_nano": s.start_ns,
        "end_time_unix_nano": s.end_ns,
        "status": {"code": s.status.otlp_name(), "message": s.status_message},
        "inputs": s.inputs,
        "outputs": s.outputs,
        "attributes": s.attributes,
        "events": events,
    });
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn back(trace_id: &str, span: &str, key: &str, code: &str) -> Response {
    let mut url = format!("{}?", trace_href(trace_id));
    if OtelSpanId::from_hex(span).is_ok() {
        url.push_str(&format!("span={span}&"));
    }
    url.push_str(&format!("{key}={code}#assessments"));
    Redirect::to(&url).into_response()
}

pub async fn add_feedback(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<FeedbackForm>,
) -> WebResult<Response> {
    ctx.verify(&headers, &f.csrf)?;
    let a = match feedback::from_form(&f, &trace_id, "feedback") {
        Ok(a) => a,
        Err(code) => return Ok(back(&trace_id, &f.back_span, "error", code)),
    };
    app.store.create_assessment(a).await?;
    Ok(back(&trace_id, &f.back_span, "saved", "feedback"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ExpectationForm {
    csrf: String,
    name: String,
    value: String,
    source_id: String,
    span_id: String,
    back_span: String,
}

/// JSON when the text is JSON (`{"a": 1}`, `[1]`, `42`, `true`), the text
/// itself otherwise: what `mlflow.log_expectation(value=...)` would store
/// for the same Python value.
fn expectation_value(text: &str) -> Value {
    let t = text.trim();
    match serde_json::from_str::<Value>(t) {
        Ok(v @ (Value::Object(_) | Value::Array(_) | Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(t.to_string()),
    }
}

pub async fn add_expectation(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ExpectationForm>,
) -> WebResult<Response> {
    ctx.verify(&headers, &f.csrf)?;
    let fail = |code| Ok(back(&trace_id, &f.back_span, "error", code));
    let name = if f.name.trim().is_empty() {
        "expected_response"
    } else {
        f.name.trim()
    };
    if name.chars().count() > feedback::MAX_NAME || f.value.len() > feedback::MAX_TEXT {
        return fail("too-long");
    }
    if f.value.trim().is_empty() {
        return fail("need-expectation");
    }
    let mut a = feedback::human(&trace_id, name, &f.source_id, &f.span_id);
    a.kind = AssessmentKind::Expectation;
    a.value = Some(expectation_value(&f.value));
    app.store.create_assessment(a).await?;
    Ok(back(&trace_id, &f.back_span, "saved", "expectation"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeleteForm {
    csrf: String,
    back_span: String,
}

pub async fn delete_assessment(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<DeleteForm>,
) -> WebResult<Response> {
    ctx.verify(&headers, &f.csrf)?;
    app.store
        .delete_assessment(trace_id.clone(), assessment_id)
        .await?;
    Ok(back(&trace_id, &f.back_span, "saved", "deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OtelSpanId;

    fn s(id: u8, parent: Option<u8>, start: i64, end: i64) -> SpanSummary {
        SpanSummary {
            span_id: OtelSpanId([id; 8]),
            parent_span_id: parent.map(|p| OtelSpanId([p; 8])),
            name: format!("s{id}"),
            span_type: "LLM".into(),
            status: SpanStatusCode::Ok,
            start_ns: start,
            end_ns: Some(end),
            model: None,
            tokens: TokenUsage::default(),
            has_exception: false,
        }
    }

    #[test]
    fn tree_orders_depth_first_and_survives_orphans_and_cycles() {
        let spans = vec![
            s(1, None, 0, 100),
            s(2, Some(1), 10, 50),
            s(4, Some(9), 15, 20), // orphan: parent never arrived
            s(3, Some(2), 20, 30),
            s(5, Some(6), 60, 70), // 5 and 6 point at each other
            s(6, Some(5), 61, 69),
        ];
        let rows = tree(&spans, Some(OtelSpanId([3; 8])), "tr-x");
        let order: Vec<(&str, usize)> = rows.iter().map(|r| (r.name.as_str(), r.level)).collect();
        assert_eq!(&order[..4], &[("s1", 1), ("s2", 2), ("s3", 3), ("s4", 1)]);
        assert_eq!(rows.len(), 6, "cycle members are still listed");
        assert!(rows.iter().find(|r| r.name == "s3").unwrap().selected);
        assert_eq!(rows[0].bar_x, "0.0");
        assert_eq!(rows[0].bar_w, "1000.0");
    }

    #[test]
    fn expectation_values_follow_json_when_they_are_json() {
        assert_eq!(expectation_value("42"), Value::from(42));
        assert_eq!(expectation_value("{\"a\": 1}"), serde_json::json!({"a": 1}));
        assert_eq!(expectation_value(" Paris "), Value::from("Paris"));
        assert_eq!(expectation_value("\"quoted\""), Value::from("\"quoted\""));
    }
}
