//! Fuzzing the decoders of untrusted input with proptest, for a bounded
//! number of cases inside the normal test run (`TRACEBOX_FUZZ_CASES`
//! raises it for a longer session). Each property feeds arbitrary or
//! mutated input through the same steps a request takes — decode, convert,
//! apply semantic conventions, check limits — and only asks that nothing
//! panics: every outcome must be a value or an `ApiError` (a 4xx).
//!
//! Inputs: raw bytes and mutated valid messages for OTLP protobuf and
//! OTLP/JSON; structurally generated OTLP requests whose attributes use the
//! conventions' own keys (so the semantic-convention code is exercised,
//! not just the parser); generated and mutated MLflow JSON for
//! StartTraceV3, assessments, the `traces.json` artifact and export lines.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use proptest::prelude::*;
use prost::Message;
use serde_json::{Value, json};

use tracebox::api::error::ApiError;
use tracebox::api::limits;
use tracebox::api::mlflow::{dto, trace_file};
use tracebox::api::otlp;
use tracebox::config::Limits;
use tracebox::domain::SpanBatch;

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("TRACEBOX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    }
}

fn limits() -> Limits {
    Limits {
        max_attribute_bytes: 4096,
        max_nesting_depth: 8,
        ..Limits::default()
    }
}

/// The OTLP ingestion path after the body is read.
fn otlp_pipeline(json: bool, body: &[u8]) {
    let encoding = if json {
        otlp::Encoding::Json
    } else {
        otlp::Encoding::Protobuf
    };
    let Ok(req) = otlp::decode_request(encoding, body) else {
        return;
    };
    let (raw, _hints, _rejected) = otlp::convert(req);
    let batch = SpanBatch::from_raw(raw);
    let _ = limits::check_spans(&batch.spans, &limits());
}

fn start_trace_pipeline(body: &[u8]) {
    let Ok(v) = tracebox::api::extract::parse_json::<Value>(body) else {
        return;
    };
    let Some(info) = v.get("trace").and_then(|t| t.get("trace_info")) else {
        return;
    };
    let Ok(info) = serde_json::from_value::<dto::TraceInfoIn>(info.clone()) else {
        return;
    };
    let Ok((info, assessments)) = info.into_domain() else {
        return;
    };
    let _ = limits::check_trace_info(&info, &limits());
    for a in assessments {
        if let Ok(a) = a.into_new(&info.trace_id) {
            let _ = limits::check_assessment(&a, &limits());
        }
    }
    let _ = dto::trace_info(&info);
}

fn assessment_pipeline(v: &Value) {
    if let Ok(a) = serde_json::from_value::<dto::AssessmentIn>(v.clone())
        && let Ok(a) = a.into_new("tr-00000000000000000000000000000001")
    {
        let _ = limits::check_assessment(&a, &limits());
        let _ = dto::assessment(&a);
    }
}

fn traces_json_pipeline(body: &[u8]) {
    if let Ok(raw) = dto::parse_traces_json(body) {
        let batch = SpanBatch::from_raw(raw);
        let _ = limits::check_spans(&batch.spans, &limits());
        for s in &batch.spans {
            let _ = dto::span("tr-1", s);
            let _ = dto::span_dict("tr-1", s);
            let _ = otlp::encode::span(s);
        }
    }
}

fn import_pipeline(line: &[u8]) {
    let r: Result<trace_file::ParsedTrace, ApiError> = trace_file::parse_trace_dict(line);
    if let Ok(t) = r {
        let _ = SpanBatch::from_raw(t.spans);
    }
}

// ------------------------------------------------------------ generators

const KEYS: &[&str] = &[
    "mlflow.spanType",
    "mlflow.spanInputs",
    "mlflow.spanOutputs",
    "mlflow.traceRequestId",
    "mlflow.chat.tokenUsage",
    "mlflow.traceTag.env",
    "mlflow.llm.model",
    "input.value",
    "output.value",
    "openinference.span.kind",
    "llm.input_messages.0.message.role",
    "llm.input_messages.0.message.content",
    "llm.input_messages.1.message.tool_calls.0.tool_call.function.name",
    "llm.output_messages.0.message.content",
    "llm.token_count.prompt",
    "llm.token_count.total",
    "llm.model_name",
    "gen_ai.operation.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.total_tokens",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.prompt.0.role",
    "gen_ai.prompt.0.content",
    "gen_ai.prompt.7.content",
    "gen_ai.completion.0.content",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.conversation.id",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "traceloop.span.kind",
    "langfuse.observation.input",
    "lmnr.span.input",
    "session.id",
    "user.id",
    "service.name",
    "retriever.k",
    "0",
    "1",
    "12",
    "role",
    "content",
    "",
];

const EVENT_NAMES: &[&str] = &[
    "exception",
    "gen_ai.user.message",
    "gen_ai.system.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
    "x",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z._0-9]{0,12}",
    ]
}

/// Strings that look like JSON (complete, broken, deeply nested) as well
/// as plain text: semantic conventions parse JSON found in strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ".{0,24}",
        1 => (0usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => (0usize..200).prop_map(|n| "{\"a\":".repeat(n)),
        1 => proptest::sample::select(&[
            "{\"role\":\"user\",\"content\":\"hi\"}", "[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]",
            "\"quoted\"", "[1,2", "{\"input_tokens\": 3, \"output_tokens\": -1}", "LLM", "CHAT_MODEL",
            "UNKNOWN", "18446744073709551616", "-9223372036854775808", "NaN", "1e400",
        ][..]).prop_map(str::to_string),
    ]
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        Just(AnyValue { value: None }),
        text().prop_map(|s| AnyValue {
            value: Some(any_value::Value::StringValue(s))
        }),
        any::<bool>().prop_map(|b| AnyValue {
            value: Some(any_value::Value::BoolValue(b))
        }),
        any::<i64>().prop_map(|i| AnyValue {
            value: Some(any_value::Value::IntValue(i))
        }),
        any::<f64>().prop_map(|d| AnyValue {
            value: Some(any_value::Value::DoubleValue(d))
        }),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| AnyValue {
            value: Some(any_value::Value::BytesValue(b))
        }),
    ];
    leaf.prop_recursive(12, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
            }),
            proptest::collection::vec((key(), inner), 0..6).prop_map(|kvs| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, v)| KeyValue {
                            key,
                            value: Some(v),
                            ..Default::default()
                        })
                        .collect(),
                })),
            }),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec((key(), any_value()), 0..10).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, v)| KeyValue {
                key,
                value: Some(v),
                ..Default::default()
            })
            .collect()
    })
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), len..=len),
        1 => proptest::collection::vec(any::<u8>(), 0..20),
        1 => Just(vec![0u8; len]),
    ]
}

fn otlp_span() -> impl Strategy<Value = Span> {
    (
        id(16),
        id(8),
        prop_oneof![Just(Vec::new()), id(8)],
        ".{0,16}",
        any::<u64>(),
        any::<u64>(),
        attributes(),
        proptest::collection::vec((proptest::sample::select(EVENT_NAMES), attributes()), 0..3),
        (any::<i32>(), ".{0,8}"),
        any::<i32>(),
    )
        .prop_map(
            |(
                trace_id,
                span_id,
                parent_span_id,
                name,
                start,
                end,
                attributes,
                events,
                (code, message),
                kind,
            )| Span {
                trace_id,
                span_id,
                parent_span_id,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                events: events
                    .into_iter()
                    .map(|(n, attributes)| span::Event {
                        name: n.to_string(),
                        attributes,
                        ..Default::default()
                    })
                    .collect(),
                status: Some(Status { code, message }),
                ..Default::default()
            },
        )
}

fn otlp_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    proptest::collection::vec(
        (attributes(), proptest::collection::vec(otlp_span(), 0..5)),
        0..3,
    )
    .prop_map(|rs| ExportTraceServiceRequest {
        resource_spans: rs
            .into_iter()
            .map(|(attrs, spans)| ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    })
}

/// JSON values whose object keys come from `keys`, so generated documents
/// reach deep into the decoders instead of failing at the first field.
fn json_value(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(8, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![4 => proptest::sample::select(keys).prop_map(str::to_string), 1 => "[a-z_]{0,8}"],
                    inner
                ),
                0..8
            )
            .prop_map(|kvs| Value::Object(kvs.into_iter().collect())),
        ]
    })
}

const MLFLOW_KEYS: &[&str] = &[
    "trace",
    "trace_info",
    "trace_id",
    "client_request_id",
    "trace_location",
    "type",
    "mlflow_experiment",
    "experiment_id",
    "request_time",
    "execution_duration",
    "state",
    "request_preview",
    "response_preview",
    "trace_metadata",
    "tags",
    "assessments",
    "assessment_id",
    "assessment_name",
    "source",
    "source_type",
    "source_id",
    "create_time",
    "last_update_time",
    "feedback",
    "expectation",
    "value",
    "serialized_value",
    "serialization_format",
    "error",
    "error_code",
    "error_message",
    "stack_trace",
    "rationale",
    "metadata",
    "span_id",
    "overrides",
    "valid",
    "spans",
    "parent_span_id",
    "name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status",
    "code",
    "message",
    "attributes",
    "events",
    "time_unix_nano",
    "timestamp",
    "info",
    "data",
    "links",
];

/// Applies byte-level mutations: flips, inserts, deletions, truncation.
fn mutate(mut b: Vec<u8>, ops: Vec<(u8, usize, u8)>) -> Vec<u8> {
    for (op, at, byte) in ops {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let i = at % b.len();
        match op % 5 {
            0 => b[i] ^= byte | 1,
            1 => b.insert(i, byte),
            2 => {
                b.remove(i);
            }
            3 => b.truncate(i),
            _ => {
                let (x, y) = (i, (i + byte as usize) % b.len());
                b.swap(x, y);
            }
        }
    }
    b
}

fn mutations() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8)
}

fn valid_otlp() -> ExportTraceServiceRequest {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        trace_id: vec![7; 16],
                        span_id: vec![1; 8],
                        name: "root".into(),
                        start_time_unix_nano: 1_795_625_977_000_000_000,
                        end_time_unix_nano: 1_795_625_977_500_000_000,
                        attributes: vec![
                            kv(
                                "mlflow.spanType",
                                any_value::Value::StringValue("\"CHAIN\"".into()),
                            ),
                            kv(
                                "mlflow.spanInputs",
                                any_value::Value::StringValue("{\"q\": [1, {\"x\": null}]}".into()),
                            ),
                            kv(
                                "mlflow.traceTag.env",
                                any_value::Value::StringValue("prod".into()),
                            ),
                            kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(12)),
                        ],
                        events: vec![span::Event {
                            name: "gen_ai.user.message".into(),
                            attributes: vec![kv(
                                "content",
                                any_value::Value::StringValue("hi".into()),
                            )],
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                    Span {
                        trace_id: vec![7; 16],
                        span_id: vec![2; 8],
                        parent_span_id: vec![1; 8],
                        name: "llm".into(),
                        attributes: vec![
                            kv(
                                "llm.input_messages.0.message.role",
                                any_value::Value::StringValue("user".into()),
                            ),
                            kv(
                                "llm.input_messages.0.message.content",
                                any_value::Value::StringValue("hello".into()),
                            ),
                            kv("llm.token_count.prompt", any_value::Value::IntValue(3)),
                        ],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn valid_traces_json() -> Value {
    json!({"spans": [{
        "trace_id": "BwcHBwcHBwcHBwcHBwcHBw==", "span_id": "AQEBAQEBAQE=", "parent_span_id": null,
        "name": "root", "start_time_unix_nano": 1795625977000000000i64, "end_time_unix_nano": 1795625977500000000i64,
        "status": {"code": "STATUS_CODE_OK", "message": ""},
        "attributes": {"mlflow.spanType": "\"CHAIN\"", "mlflow.spanInputs": "{\"q\": 1}", "mlflow.traceRequestId": "\"tr-07070707070707070707070707070707\""},
        "events": [{"name": "exception", "timestamp": 5, "attributes": {"exception.message": "boom"}}],
    }]})
}

fn valid_start_trace() -> Value {
    json!({"trace": {"trace_info": {
        "trace_id": "tr-07070707070707070707070707070707",
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}},
        "request_time": "2026-11-25T16:59:37.382Z", "execution_duration": "0.022s", "state": "OK",
        "trace_metadata": {"mlflow.trace.tokenUsage": "{\"input_tokens\": 1}"}, "tags": {"k": "v"},
        "assessments": [{"assessment_name": "a", "feedback": {"value": {"x": [1, 2]}},
                         "source": {"source_type": "HUMAN", "source_id": "me"}}],
    }}})
}

// ------------------------------------------------------------ properties

proptest! {
    // Structurally generated inputs: slower per case.
    #![proptest_config(cases(300))]

    #[test]
    fn otlp_generated_requests_convert(req in otlp_request()) {
        otlp_pipeline(false, &req.encode_to_vec());
        // The same request as OTLP/JSON.
        if let Ok(j) = serde_json::to_vec(&req) {
            otlp_pipeline(true, &j);
        }
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn otlp_protobuf_from_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        otlp_pipeline(false, &bytes);
    }

    #[test]
    fn otlp_protobuf_mutated(ops in mutations()) {
        otlp_pipeline(false, &mutate(valid_otlp().encode_to_vec(), ops));
    }

    #[test]
    fn otlp_json_mutated(ops in mutations()) {
        let j = serde_json::to_vec(&valid_otlp()).unwrap();
        otlp_pipeline(true, &mutate(j, ops));
    }

    #[test]
    fn otlp_json_from_arbitrary_text(s in ".{0,512}") {
        otlp_pipeline(true, s.as_bytes());
    }

    #[test]
    fn start_trace_generated(v in json_value(MLFLOW_KEYS)) {
        start_trace_pipeline(v.to_string().as_bytes());
        start_trace_pipeline(json!({"trace": {"trace_info": v}}).to_string().as_bytes());
    }

    #[test]
    fn start_trace_mutated(ops in mutations()) {
        start_trace_pipeline(&mutate(valid_start_trace().to_string().into_bytes(), ops));
    }

    #[test]
    fn assessments_generated(v in json_value(MLFLOW_KEYS)) {
        assessment_pipeline(&v);
        assessment_pipeline(&json!({"assessment_name": "n", "feedback": {"value": v.clone()}}));
        assessment_pipeline(&json!({"assessment_name": "n", "expectation": v}));
    }

    #[test]
    fn traces_json_generated(v in json_value(MLFLOW_KEYS)) {
        traces_json_pipeline(v.to_string().as_bytes());
        traces_json_pipeline(json!({"spans": [v]}).to_string().as_bytes());
    }

    #[test]
    fn traces_json_mutated(ops in mutations()) {
        traces_json_pipeline(&mutate(valid_traces_json().to_string().into_bytes(), ops));
    }

    #[test]
    fn export_lines_generated(v in json_value(MLFLOW_KEYS), ops in mutations()) {
        let line = json!({"info": valid_start_trace()["trace"]["trace_info"], "data": valid_traces_json()});
        import_pipeline(&mutate(line.to_string().into_bytes(), ops));
        import_pipeline(json!({"info": v.clone(), "data": v}).to_string().as_bytes());
    }
}

/// Regression guard for the limits themselves: deeply nested values are
/// refused by depth, huge ones by size, through the real pipeline.
#[test]
fn limits_apply_to_decoded_otlp() {
    let mut deep = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for _ in 0..20 {
        deep = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![deep],
            })),
        };
    }
    let mut req = valid_otlp();
    req.resource_spans[0].scope_spans[0].spans[1]
        .attributes
        .push(KeyValue {
            key: "deep".into(),
            value: Some(deep),
            ..Default::default()
        });
    let (raw, _, _) = otlp::convert(req);
    let batch = SpanBatch::from_raw(raw);
    let e = limits::check_spans(&batch.spans, &limits()).unwrap_err();
    assert_eq!(e.status.as_u16(), 400, "{}", e.message);
    assert!(e.message.contains("'deep'"), "{}", e.message);
}
