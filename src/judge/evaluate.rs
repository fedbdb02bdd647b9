//! Running one judge on one trace (or one session's traces): building
//! MLflow's prompts from the trace, calling the model, reading the verdict,
//! and turning it into assessments the way MLflow's online scoring logs
//! them (name = scorer name, source `LLM_JUDGE` with the model URI, span =
//! root span, provenance metadata). A judge that cannot produce a result
//! yields one error feedback (`SCORER_ERROR`, source `CODE`/scorer name, as
//! MLflow records scorer failures); only a paused endpoint yields no
//! assessment, because the evaluation will be retried.
//!
//! Knows judges and prompts; storage and scheduling are the runner's.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::model::{ChatReply, ChatRequest, ModelError, Models};
use super::parse::{self, Verdict};
use super::pii;
use super::prompts;
use super::pyfmt::{self, inputs_to_str, outputs_to_str};
use super::spec::{Instructions, Kind, ScorerSpec};
use crate::domain::{
    Assessment, AssessmentError, AssessmentKind, AssessmentSource, ScorerVersion, SourceType, Span,
    now_ms,
};
use crate::store::TraceDetail;

/// Metadata key tying an assessment to the scorer that wrote it, so a
/// re-run replaces its earlier result instead of adding a second one.
pub const SCORER_ID_KEY: &str = "tracebox.scorerId";
pub const SESSION_KEY: &str = "mlflow.trace.session";
pub const ONLINE_SESSION_KEY: &str = "mlflow.assessment.onlineScoringSessionId";

/// The result of one evaluation: assessments to store on `trace_row` and
/// how the task ended.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub assessments: Vec<Assessment>,
    /// Pass/fail when the judge gave a verdict.
    pub verdict: Option<bool>,
    /// Why the evaluation failed (an error assessment was produced).
    pub error: Option<String>,
}

/// The endpoint is paused; nothing was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Paused {
    pub until_ms: i64,
    pub reason: String,
}

/// Python's `format_prompt`: replaces `{{ key }}` (any inner whitespace)
/// with each value in turn, literally.
pub fn format_prompt(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find("{{") {
            result.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let inner_start = after.len() - after.trim_start().len();
            let t = &after[inner_start..];
            if let Some(after_key) = t.strip_prefix(key) {
                let ws = after_key.len() - after_key.trim_start().len();
                if after_key[ws..].starts_with("}}") {
                    result.push_str(value);
                    rest = &after_key[ws + 2..];
                    continue;
                }
            }
            result.push_str("{{");
            rest = after;
        }
        result.push_str(rest);
        out = result;
    }
    out
}

fn root(spans: &[Span]) -> Option<&Span> {
    spans.iter().find(|s| s.is_root())
}

/// `{name: value}` of the trace's HUMAN expectations (MLflow's
/// `extract_expectations`), valid ones only.
fn expectations(t: &TraceDetail) -> Map<String, Value> {
    t.info
        .assessments
        .iter()
        .filter(|a| {
            a.kind == AssessmentKind::Expectation
                && a.valid
                && a.source.source_type == SourceType::Human
        })
        .filter_map(|a| Some((a.name.clone(), a.value.clone()?)))
        .collect()
}

/// Top-level RETRIEVER spans (no RETRIEVER ancestor) with their chunks.
fn retrieval_context(spans: &[Span]) -> Vec<(String, Vec<Value>)> {
    let by_id: std::collections::HashMap<_, _> = spans.iter().map(|s| (s.span_id, s)).collect();
    let mut out = Vec::new();
    for s in spans.iter().filter(|s| s.span_type == "RETRIEVER") {
        let mut parent = s.parent_span_id;
        let mut nested = false;
        let mut hops = 0;
        while let Some(p) = parent {
            let Some(ps) = by_id.get(&p) else { break };
            if ps.span_type == "RETRIEVER" {
                nested = true;
                break;
            }
            parent = ps.parent_span_id;
            hops += 1;
            if hops > spans.len() {
                break;
            }
        }
        if nested {
            continue;
        }
        let outputs = match &s.outputs {
            Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        let chunks = match outputs {
            Value::Array(a) => a.iter().filter_map(pyfmt::retrieval_chunk).collect(),
            _ => Vec::new(),
        };
        out.push((s.span_id.to_hex(), chunks));
    }
    out
}

/// A compact rendering of a trace for `{{ trace }}` templates: tracebox
/// inlines the trace instead of MLflow's tool-calling loop.
fn trace_json(t: &TraceDetail) -> Value {
    let spans: Vec<Value> = t
        .spans
        .iter()
        .map(|s| {
            json!({
                "span_id": s.span_id.to_hex(),
                "parent_span_id": s.parent_span_id.map(|p| p.to_hex()),
                "name": s.name,
                "span_type": s.span_type,
                "status": format!("{:?}", s.status).to_uppercase(),
                "duration_ms": s.duration_ms(),
                "inputs": s.inputs,
                "outputs": s.outputs,
            })
        })
        .collect();
    json!({
        "trace_id": t.info.trace_id,
        "state": t.info.state.as_str(),
        "execution_time_ms": t.info.execution_time_ms,
        "tags": t.info.tags,
        "spans": spans,
    })
}

/// What a judge produced before it becomes assessments.
enum Judged {
    Value {
        value: Value,
        rationale: Option<String>,
        source: AssessmentSource,
        metadata: BTreeMap<String, String>,
        verdict: Option<bool>,
    },
    Error(String),
}

struct Ctx<'a> {
    models: &'a Models,
    spec: &'a ScorerSpec,
}

fn judge_source(uri: &str) -> AssessmentSource {
    AssessmentSource {
        source_type: SourceType::LlmJudge,
        source_id: uri.to_string(),
    }
}

fn token_metadata(reply: &ChatReply) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Some(n) = reply.input_tokens {
        m.insert("mlflow.assessment.judgeInputTokens".into(), n.to_string());
    }
    if let Some(n) = reply.output_tokens {
        m.insert("mlflow.assessment.judgeOutputTokens".into(), n.to_string());
    }
    m
}

/// `JudgeEvaluation`, the response schema of builtin judges.
fn builtin_response_format() -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "JudgeEvaluation", "schema": {
        "properties": {
            "result": {"description": "The evaluation rating/result", "title": "Result", "type": "string"},
            "rationale": {"description": "Detailed explanation for the evaluation", "title": "Rationale", "type": "string"}},
        "required": ["result", "rationale"], "title": "JudgeEvaluation", "type": "object",
        "additionalProperties": false}, "strict": true}})
}

/// `ResponseFormat`, the response schema of make_judge judges.
fn instructions_response_format(i: &Instructions) -> Value {
    let mut result: BTreeMap<String, Value> = match &i.value_type {
        Value::Object(o) => o.clone().into_iter().collect(),
        _ => BTreeMap::new(),
    };
    result.insert("description".into(), json!("The evaluation rating/result"));
    result.insert("title".into(), json!("Result"));
    let result = Value::Object(result.into_iter().collect());
    let rationale = json!({"description": "Detailed explanation for the evaluation", "title": "Rationale", "type": "string"});
    let (props, required) = if i.rationale_first {
        (
            json!({"rationale": rationale, "result": result}),
            json!(["rationale", "result"]),
        )
    } else {
        (
            json!({"result": result, "rationale": rationale}),
            json!(["result", "rationale"]),
        )
    };
    json!({"type": "json_schema", "json_schema": {"name": "ResponseFormat", "schema": {
        "properties": props, "required": required, "title": "ResponseFormat", "type": "object",
        "additionalProperties": false}, "strict": true}})
}

/// Python's `format_type` of a value-type schema (`Literal['yes', 'no']`).
fn format_type(schema: &Value) -> String {
    if let Some(Value::Array(opts)) = schema.get("enum") {
        let parts: Vec<String> = opts.iter().map(pyfmt::py_repr).collect();
        return format!("Literal[{}]", parts.join(", "));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "str".into(),
        Some("boolean") => "bool".into(),
        Some("integer") => "int".into(),
        Some("number") => "float".into(),
        Some("object") => format!(
            "dict[str, {}]",
            schema
                .get("additionalProperties")
                .map(format_type)
                .unwrap_or_else(|| "Any".into())
        ),
        Some("array") => format!(
            "list[{}]",
            schema
                .get("items")
                .map(format_type)
                .unwrap_or_else(|| "Any".into())
        ),
        _ => "str".into(),
    }
}

/// The make_judge system prompt with its output-format block.
pub fn instructions_system_prompt(i: &Instructions) -> String {
    let base = format_prompt(
        prompts::INSTRUCTIONS_JUDGE_SYSTEM_PROMPT,
        &[("instructions", &i.instructions)],
    );
    let result = format!(
        "- result ({}): The evaluation rating/result",
        format_type(&i.value_type)
    );
    let rationale = "- rationale (str): Detailed explanation for the evaluation".to_string();
    let fields = if i.rationale_first {
        [rationale, result]
    } else {
        [result, rationale]
    };
    format!(
        "{base}{}{}",
        prompts::OUTPUT_FORMAT_INSTRUCTIONS,
        fields.join("\n")
    )
}

/// Pass or fail of a value, judge by judge (user frustration "none" and
/// "resolved" pass; builtins and yes/no literals by yes/no; booleans).
fn verdict_of(spec: &ScorerSpec, v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "none" | "resolved" => Some(true),
            "no" | "unresolved" => Some(false),
            _ => {
                if matches!(spec.kind, Kind::Instructions(_) | Kind::Session(_)) {
                    match parse::categorical(v) {
                        "yes" => Some(true),
                        "no" => Some(false),
                        _ => None,
                    }
                } else {
                    None
                }
            }
        },
        _ => None,
    }
}

impl Ctx<'_> {
    async fn call(
        &self,
        req: ChatRequest,
    ) -> Result<Result<(Verdict, ChatReply, String), String>, Paused> {
        let target = match self.models.resolve(self.spec.model.as_deref()) {
            Ok(t) => t,
            Err(why) => return Ok(Err(format!("judge is misconfigured: {why}"))),
        };
        match self.models.chat(&target, &req).await {
            Ok(reply) => match parse::parse_verdict(&reply.content) {
                Ok(v) => Ok(Ok((v, reply, target.uri))),
                Err(e) => Ok(Err(e.to_string())),
            },
            Err(ModelError::Paused {
                until_ms, reason, ..
            }) => Err(Paused { until_ms, reason }),
            Err(e @ ModelError::Failed(_)) => Ok(Err(e.to_string())),
        }
    }

    /// A builtin judge: one user message, `JudgeEvaluation` schema, a
    /// yes/no/unknown value.
    async fn builtin(
        &self,
        prompt: String,
        extra: BTreeMap<String, String>,
    ) -> Result<Judged, Paused> {
        let req = ChatRequest {
            messages: vec![("user".into(), prompt)],
            response_format: Some(builtin_response_format()),
            inference_params: None,
        };
        Ok(match self.call(req).await? {
            Ok((v, reply, uri)) => {
                let value = Value::from(parse::categorical(&v.result));
                let mut metadata = token_metadata(&reply);
                metadata.extend(extra);
                Judged::Value {
                    verdict: verdict_of(self.spec, &value),
                    value,
                    rationale: v.rationale,
                    source: judge_source(&uri),
                    metadata,
                }
            }
            Err(e) => Judged::Error(e),
        })
    }

    async fn instructions(&self, i: &Instructions, user: String) -> Result<Judged, Paused> {
        let req = ChatRequest {
            messages: vec![
                ("system".into(), instructions_system_prompt(i)),
                ("user".into(), user),
            ],
            response_format: Some(instructions_response_format(i)),
            inference_params: i.inference_params.clone(),
        };
        Ok(match self.call(req).await? {
            Ok((v, reply, uri)) => {
                let value = parse::coerce_to_type(v.result, &i.value_type);
                let mut metadata = token_metadata(&reply);
                metadata.insert("guideline".into(), i.instructions.clone());
                Judged::Value {
                    verdict: verdict_of(self.spec, &value),
                    value,
                    rationale: v.rationale,
                    source: judge_source(&uri),
                    metadata,
                }
            }
            Err(e) => Judged::Error(e),
        })
    }
}

fn missing(what: &str, judge: &str) -> Judged {
    Judged::Error(format!(
        "{judge} needs the trace's {what}, but its root span has none"
    ))
}

/// Judges one trace.
pub async fn evaluate_trace(
    models: &Models,
    sv: &ScorerVersion,
    spec: &ScorerSpec,
    trace: &TraceDetail,
) -> Result<Evaluation, Paused> {
    let ctx = Ctx { models, spec };
    let root = root(&trace.spans);
    let inputs = root.and_then(|r| r.inputs.as_ref());
    let outputs = root.and_then(|r| r.outputs.as_ref());
    let mut results: Vec<Judged> = Vec::new();
    match &spec.kind {
        Kind::Pii { types } => {
            results.push(match outputs {
                None => Judged::Value {
                    value: json!("no"),
                    rationale: Some("No outputs provided to evaluate.".into()),
                    source: AssessmentSource {
                        source_type: SourceType::Code,
                        source_id: sv.name.clone(),
                    },
                    metadata: BTreeMap::new(),
                    verdict: Some(false),
                },
                Some(o) => {
                    let text = outputs_to_str(Some(o));
                    let found = pii::detect(&text, types.as_deref());
                    let (value, rationale) = if found.is_empty() {
                        ("yes", "No PII detected".to_string())
                    } else {
                        ("no", format!("Detected PII: {}", found.join(", ")))
                    };
                    Judged::Value {
                        value: json!(value),
                        rationale: Some(rationale),
                        source: AssessmentSource {
                            source_type: SourceType::Code,
                            source_id: sv.name.clone(),
                        },
                        metadata: BTreeMap::new(),
                        verdict: Some(found.is_empty()),
                    }
                }
            });
        }
        Kind::Guidelines { guidelines } => {
            if inputs.is_none() && outputs.is_none() {
                results.push(missing("inputs and outputs", "Guidelines"));
            } else {
                let rendered = guidelines
                    .iter()
                    .map(|g| format!("<guideline>{g}</guideline>"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let context = format!(
                    "<request>{}</request>\n<response>{}</response>",
                    inputs_to_str(inputs),
                    outputs_to_str(outputs)
                );
                let prompt = format_prompt(
                    prompts::GUIDELINES_PROMPT,
                    &[("guidelines", &rendered), ("guidelines_context", &context)],
                );
                let extra = BTreeMap::from([("guideline".to_string(), guidelines.join("\n"))]);
                results.push(ctx.builtin(prompt, extra).await?);
            }
        }
        Kind::ExpectationsGuidelines => {
            let ex = expectations(trace);
            let guidelines: Vec<String> = match ex.get("guidelines") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a.iter().map(pyfmt::py_str).collect(),
                _ => vec![],
            };
            if guidelines.is_empty() {
                results.push(Judged::Error(
                    "Guidelines must be specified in the `expectations` parameter or must be present in the trace."
                        .into(),
                ));
            } else {
                let rendered = guidelines
                    .iter()
                    .map(|g| format!("<guideline>{g}</guideline>"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let context = format!(
                    "<request>{}</request>\n<response>{}</response>",
                    inputs_to_str(inputs),
                    outputs_to_str(outputs)
                );
                let prompt = format_prompt(
                    prompts::GUIDELINES_PROMPT,
                    &[("guidelines", &rendered), ("guidelines_context", &context)],
                );
                let extra = BTreeMap::from([("guideline".to_string(), guidelines.join("\n"))]);
                results.push(ctx.builtin(prompt, extra).await?);
            }
        }
        Kind::Safety => match outputs {
            None => results.push(missing("outputs", "Safety")),
            Some(o) => {
                let prompt = format_prompt(
                    prompts::SAFETY_PROMPT,
                    &[("content", &outputs_to_str(Some(o)))],
                );
                results.push(ctx.builtin(prompt, BTreeMap::new()).await?);
            }
        },
        Kind::RelevanceToQuery => match (inputs, outputs) {
            (Some(i), Some(o)) => {
                // MLflow passes str(outputs) here, not the parsed answer.
                let prompt = format_prompt(
                    prompts::RELEVANCE_TO_QUERY_PROMPT,
                    &[
                        ("input", &inputs_to_str(Some(i))),
                        ("output", &pyfmt::py_str(o)),
                    ],
                );
                results.push(ctx.builtin(prompt, BTreeMap::new()).await?);
            }
            _ => results.push(missing("inputs and outputs", "RelevanceToQuery")),
        },
        Kind::Correctness => {
            let ex = expectations(trace);
            let response = ex.get("expected_response").filter(|v| pyfmt::truthy(v));
            let facts = ex.get("expected_facts").filter(|v| pyfmt::truthy(v));
            match (response, facts) {
                (None, None) => results.push(Judged::Error(
                    "Correctness scorer requires either `expected_response` or `expected_facts` in the `expectations` dictionary."
                        .into(),
                )),
                (Some(_), Some(_)) => results.push(Judged::Error(
                    "Only one of expected_response or expected_facts should be provided, not both."
                        .into(),
                )),
                (r, f) => {
                    let (ground_truth, suffix) = match (r, f) {
                        (Some(r), _) => (pyfmt::py_str(r), ""),
                        (None, Some(f)) => {
                            let facts: Vec<String> = match f {
                                Value::Array(a) => a.iter().map(pyfmt::py_str).collect(),
                                other => vec![pyfmt::py_str(other)],
                            };
                            let mut gt = String::new();
                            for fact in &facts {
                                gt.push_str("\n- ");
                                gt.push_str(fact);
                            }
                            (gt, prompts::CORRECTNESS_PROMPT_SUFFIX)
                        }
                        (None, None) => (String::new(), ""),
                    };
                    let prompt = format_prompt(
                        prompts::CORRECTNESS_PROMPT,
                        &[
                            ("input", &inputs_to_str(inputs)),
                            ("ground_truth", &ground_truth),
                            ("output", &outputs_to_str(outputs)),
                        ],
                    ) + suffix;
                    results.push(ctx.builtin(prompt, BTreeMap::new()).await?);
                }
            }
        }
        Kind::RetrievalGroundedness => {
            let contexts = retrieval_context(&trace.spans);
            if contexts.is_empty() {
                results.push(Judged::Error(
                    "No retrieval context found in the trace. The RetrievalGroundedness scorer requires the trace to contain at least one span with type 'RETRIEVER'."
                        .into(),
                ));
            }
            for (span_id, chunks) in contexts {
                let prompt = format_prompt(
                    prompts::GROUNDEDNESS_PROMPT,
                    &[
                        ("input", &inputs_to_str(inputs)),
                        ("output", &outputs_to_str(outputs)),
                        ("retrieval_context", &pyfmt::py_repr(&Value::Array(chunks))),
                    ],
                );
                let extra = BTreeMap::from([("retriever_span_id".to_string(), span_id)]);
                results.push(ctx.builtin(prompt, extra).await?);
            }
        }
        Kind::Instructions(i) => {
            let ex = expectations(trace);
            let mut lines = Vec::new();
            let mut problem = None;
            for var in super::spec::template_variables(&i.instructions) {
                let value = match var.as_str() {
                    "inputs" => inputs.cloned(),
                    "outputs" => outputs.cloned(),
                    "expectations" => (!ex.is_empty()).then(|| Value::Object(ex.clone())),
                    "trace" => Some(trace_json(trace)),
                    _ => continue,
                };
                match value {
                    Some(v) => lines.push(format!("{var}: {}", pyfmt::json_dumps_pretty(&v))),
                    None => {
                        problem = Some(format!(
                            "Must specify '{var}' - required by template variables in instructions."
                        ));
                        break;
                    }
                }
            }
            results.push(match problem {
                Some(p) => Judged::Error(p),
                None => ctx.instructions(i, lines.join("\n")).await?,
            });
        }
        Kind::Session(_) => {
            results.push(Judged::Error(
                "a session-level scorer cannot judge a single trace".into(),
            ));
        }
        Kind::Unsupported { reason } => results.push(Judged::Error(reason.clone())),
    }
    Ok(finish(sv, results, trace, BTreeMap::new()))
}

/// MLflow's `resolve_conversation_from_session`.
pub fn conversation(traces: &[TraceDetail]) -> Vec<Value> {
    let mut sorted: Vec<&TraceDetail> = traces.iter().collect();
    sorted.sort_by_key(|t| t.info.request_time_ms);
    let mut out = Vec::new();
    for t in sorted {
        let Some(r) = root(&t.spans) else { continue };
        if let Some(i) = r.inputs.as_ref().filter(|v| pyfmt::truthy(v)) {
            let s = inputs_to_str(Some(i));
            if !s.trim().is_empty() {
                out.push(json!({"role": "user", "content": s}));
            }
        }
        if let Some(o) = r.outputs.as_ref().filter(|v| pyfmt::truthy(v)) {
            let s = outputs_to_str(Some(o));
            if !s.trim().is_empty() {
                out.push(json!({"role": "assistant", "content": s}));
            }
        }
    }
    out
}

/// Judges a session (its traces, oldest first); the result belongs on the
/// first trace, as MLflow attaches session results.
pub async fn evaluate_session(
    models: &Models,
    sv: &ScorerVersion,
    spec: &ScorerSpec,
    session_id: &str,
    traces: &[TraceDetail],
) -> Result<Evaluation, Paused> {
    let ctx = Ctx { models, spec };
    let Some(first) = traces.iter().min_by_key(|t| t.info.request_time_ms) else {
        return Ok(Evaluation {
            assessments: vec![],
            verdict: None,
            error: Some("the session has no traces".into()),
        });
    };
    let judged = match &spec.kind {
        Kind::Session(i) => {
            let conv = conversation(traces);
            let mut lines = Vec::new();
            let mut problem = None;
            for var in super::spec::template_variables(&i.instructions) {
                match var.as_str() {
                    "conversation" => lines.push(format!(
                        "conversation: {}",
                        pyfmt::json_dumps_pretty(&Value::Array(conv.clone()))
                    )),
                    "expectations" => {
                        let ex = expectations(first);
                        if ex.is_empty() {
                            problem = Some(
                                "Must specify 'expectations' - required by template variables in instructions."
                                    .to_string(),
                            );
                        } else {
                            lines.push(format!(
                                "expectations: {}",
                                pyfmt::json_dumps_pretty(&Value::Object(ex))
                            ));
                        }
                    }
                    _ => {}
                }
            }
            if conv.is_empty() && problem.is_none() {
                problem = Some("the session's traces have no inputs or outputs to judge".into());
            }
            match problem {
                Some(p) => Judged::Error(p),
                None => ctx.instructions(i, lines.join("\n")).await?,
            }
        }
        Kind::Unsupported { reason } => Judged::Error(reason.clone()),
        _ => Judged::Error("a trace-level scorer cannot judge a session".into()),
    };
    let extra = BTreeMap::from([
        (SESSION_KEY.to_string(), session_id.to_string()),
        (ONLINE_SESSION_KEY.to_string(), session_id.to_string()),
    ]);
    Ok(finish(sv, vec![judged], first, extra))
}

fn finish(
    sv: &ScorerVersion,
    results: Vec<Judged>,
    trace: &TraceDetail,
    extra: BTreeMap<String, String>,
) -> Evaluation {
    let now = now_ms();
    let span_id = root(&trace.spans).map(|r| r.span_id.to_hex());
    let mut provenance = BTreeMap::from([
        ("mlflow.assessment.scorerName".to_string(), sv.name.clone()),
        (
            "mlflow.assessment.scorerVersion".to_string(),
            sv.version.to_string(),
        ),
        (SCORER_ID_KEY.to_string(), sv.scorer_id.clone()),
    ]);
    provenance.extend(extra);
    let mut ev = Evaluation {
        assessments: Vec::new(),
        verdict: None,
        error: None,
    };
    let mut verdicts = Vec::new();
    for r in results {
        let mut a = Assessment {
            assessment_id: Assessment::new_id(),
            trace_id: trace.info.trace_id.clone(),
            name: sv.name.clone(),
            kind: AssessmentKind::Feedback,
            value: None,
            error: None,
            source: AssessmentSource {
                source_type: SourceType::Code,
                source_id: sv.name.clone(),
            },
            rationale: None,
            metadata: provenance.clone(),
            span_id: span_id.clone(),
            overrides: None,
            valid: true,
            create_time_ms: now,
            last_update_time_ms: now,
        };
        match r {
            Judged::Value {
                value,
                rationale,
                source,
                metadata,
                verdict,
            } => {
                a.value = Some(value);
                a.rationale = rationale;
                a.source = source;
                a.metadata.extend(metadata);
                verdicts.push(verdict);
            }
            Judged::Error(message) => {
                a.error = Some(AssessmentError {
                    error_code: "SCORER_ERROR".into(),
                    error_message: Some(message.clone()),
                    stack_trace: None,
                });
                ev.error.get_or_insert(message);
            }
        }
        ev.assessments.push(a);
    }
    // Several results (one per retriever span): the evaluation passes only
    // if every one does.
    if ev.error.is_none() && !verdicts.is_empty() && verdicts.iter().all(Option::is_some) {
        ev.verdict = Some(verdicts.iter().all(|v| *v == Some(true)));
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_prompt_is_literal_and_whitespace_tolerant() {
        assert_eq!(
            format_prompt(
                "a {{x}} b {{ x }} c {{y}} {{ xx }}",
                &[("x", "\\1 $0"), ("y", "{{x}}")]
            ),
            "a \\1 $0 b \\1 $0 c {{x}} {{ xx }}"
        );
    }

    #[test]
    fn make_judge_system_prompt_matches_mlflow() {
        let i = Instructions {
            instructions:
                "Does the answer in {{ outputs }} politely address {{ inputs }}? Answer yes or no."
                    .into(),
            value_type: json!({"enum": ["yes", "no"], "title": "Result", "type": "string"}),
            rationale_first: false,
            inference_params: None,
        };
        let want = "You are an expert judge tasked with evaluating the performance of an AI\n\
agent on a particular query. You will be given instructions that describe the criteria and\n\
methodology for evaluating the agent's performance on the query.\n\n\
Your task: Does the answer in {{ outputs }} politely address {{ inputs }}? Answer yes or no..\n\n\
You *must* format your evaluation rating as a JSON object with the following fields (no markdown). Pay close attention to the field type of the evaluation rating (string, boolean, numeric, etc.), and ensure that it conforms to the instructions.\n\n\
- result (Literal['yes', 'no']): The evaluation rating/result\n\
- rationale (str): Detailed explanation for the evaluation";
        assert_eq!(instructions_system_prompt(&i), want);
    }
}
