//! LLM judges against the real binary and a scripted fake OpenAI-compatible
//! server: the MLflow scorer routes, online evaluation (filters, sampling,
//! completeness), retries, Retry-After, the circuit breaker, malformed
//! output, shedding, stop, restart mid-backlog, session judges, backfill
//! and the CLI.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracebox::judge::spec::{NewJudge, build, value_type_schema};

use crate::fake_llm::{FakeLlm, Reply};
use crate::harness::{Client, Resp, Server};
use crate::otlp_http::SpanSpec;

// ---------------------------------------------------------------- helpers

fn toml(fake: &FakeLlm, judges: &str) -> String {
    format!(
        "[gateway.judge]\nbase_url = \"{}\"\nmodel = \"fake-judge\"\n\n[judges]\n\
         trace_settle_secs = 0.3\nretry_base_secs = 0.05\n{judges}\n",
        fake.base_url
    )
}

fn boot(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tracebox.toml"), config).unwrap();
    let s = Server::start_in(dir.path(), &[]);
    (dir, s)
}

fn guidelines(name: &str, model: &str) -> String {
    build(
        name,
        &NewJudge::Builtin {
            class: "Guidelines".into(),
            guidelines: vec!["The response must be polite.".into()],
        },
        Some(model),
    )
    .unwrap()
}

fn builtin(name: &str, class: &str, model: Option<&str>) -> String {
    build(
        name,
        &NewJudge::Builtin {
            class: class.into(),
            guidelines: vec![],
        },
        model,
    )
    .unwrap()
}

async fn register(c: &Client, exp: &str, name: &str, payload: &str) -> Resp {
    c.post(
        "/api/3.0/mlflow/scorers/register",
        json!({"experiment_id": exp, "name": name, "serialized_scorer": payload}),
    )
    .await
}

async fn set_rate(c: &Client, exp: &str, name: &str, rate: f64, filter: Option<&str>) -> Resp {
    let mut body = json!({"experiment_id": exp, "name": name, "sample_rate": rate});
    if let Some(f) = filter {
        body["filter_string"] = json!(f);
    }
    c.send("PUT", "/api/3.0/mlflow/scorers/online-config", Some(body))
        .await
}

async fn create_experiment(c: &Client, name: &str) -> String {
    let r = c
        .post("/api/2.0/mlflow/experiments/create", json!({"name": name}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["experiment_id"].as_str().unwrap().to_string()
}

/// A trace to send: a root span with inputs/outputs, optionally a child
/// retriever, and (optionally) client trace info with tags and session.
#[derive(Clone)]
struct T {
    hex: String,
    inputs: Value,
    outputs: Value,
    tags: Value,
    session: Option<String>,
    start_ms: i64,
}

impl T {
    fn new(n: u64, question: &str, answer: &str) -> T {
        T {
            hex: format!("{:032x}", 0xabc0_0000_0000u64 + n),
            inputs: json!({"question": question}),
            outputs: json!(answer),
            tags: json!({}),
            session: None,
            start_ms: 1_795_625_977_000 + n as i64 * 1000,
        }
    }
    fn id(&self) -> String {
        format!("tr-{}", self.hex)
    }
    fn tag(mut self, k: &str, v: &str) -> T {
        self.tags[k] = json!(v);
        self
    }
    fn session(mut self, s: &str) -> T {
        self.session = Some(s.into());
        self
    }
    fn spans(&self) -> Vec<SpanSpec> {
        vec![
            SpanSpec::root(1, "chat")
                .span_type("CHAIN")
                .inputs(json!(self.inputs.to_string()))
                .outputs(json!(self.outputs.to_string()))
                .start_ms(self.start_ms),
        ]
    }
    fn info(&self, exp: &str) -> Value {
        let mut md = json!({"mlflow.trace_schema.version": "3",
                            "mlflow.trace.sizeStats": "{\"num_spans\": 1}"});
        if let Some(s) = &self.session {
            md["mlflow.trace.session"] = json!(s);
        }
        let secs = self.start_ms / 1000;
        let ms = self.start_ms % 1000;
        let time = chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        json!({"trace": {"trace_info": {
            "trace_id": self.id(),
            "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}},
            "request_time": format!("{time}.{ms:03}Z"),
            "execution_duration": "0.005s",
            "state": "OK",
            "trace_metadata": md,
            "tags": self.tags,
        }}})
    }
}

/// Sends the spans of many traces in one OTLP request.
async fn send_spans(c: &Client, exp: &str, traces: &[T]) {
    let spans = traces
        .iter()
        .flat_map(|t| t.spans().into_iter().map(|s| s.to_proto(&t.hex)))
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = c
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            req.encode_to_vec(),
            &[("x-mlflow-experiment-id", exp)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn send_info(c: &Client, exp: &str, t: &T) {
    let r = c.post("/api/3.0/mlflow/traces", t.info(exp)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn send(c: &Client, exp: &str, t: &T) {
    send_spans(c, exp, std::slice::from_ref(t)).await;
    send_info(c, exp, t).await;
}

async fn assessments(c: &Client, trace_id: &str) -> Vec<Value> {
    let r = c.get(&format!("/api/3.0/mlflow/traces/{trace_id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["trace"]["trace_info"]["assessments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn judged_by(c: &Client, trace_id: &str, name: &str) -> Vec<Value> {
    assessments(c, trace_id)
        .await
        .into_iter()
        .filter(|a| a["assessment_name"] == name)
        .collect()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn status(c: &Client, exp: &str) -> Value {
    let r = c
        .get(&format!("/api/tracebox/v1/judges?experiment_id={exp}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

fn judge<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("judge {name} in {status}"))
}

/// MLflow's sampling rule, written out independently of tracebox's code.
fn mlflow_samples(entity: &str, name: &str, rate: f64) -> bool {
    let digest = Sha256::digest(format!("{entity}:{name}").as_bytes());
    // The top 64 bits decide unless the rate sits within 2^-64 of the hash.
    let top = u64::from_be_bytes(digest[..8].try_into().unwrap());
    (top as f64) / 2f64.powi(64) <= rate
}

// ---------------------------------------------------------------- registry

#[tokio::test]
async fn scorer_registry_speaks_mlflow() {
    let s = Server::start();
    let c = s.client();
    let p1 = guidelines("politeness", "gateway:/judge");
    let r = register(&c, "0", "politeness", &p1).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["experiment_id"], "0", "a string in RegisterScorer");
    assert_eq!(r.body["serialized_scorer"], p1.as_str());
    let id = r.body["scorer_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert!(r.body["creation_time"].as_i64().unwrap() > 0);

    let p2 = guidelines("politeness", "openai:/gpt-4o-mini");
    let r = register(&c, "0", "politeness", &p2).await;
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["scorer_id"], id.as_str(), "stable across versions");

    let r = c.get("/api/3.0/mlflow/scorers/list?experiment_id=0").await;
    let list = r.body["scorers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "latest version only");
    assert_eq!(list[0]["experiment_id"], 0, "a number in Scorer");
    assert_eq!(list[0]["scorer_version"], 2);
    assert_eq!(list[0]["serialized_scorer"], p2.as_str());

    let r = c
        .get("/api/3.0/mlflow/scorers/get?experiment_id=0&name=politeness&version=1")
        .await;
    assert_eq!(r.body["scorer"]["serialized_scorer"], p1.as_str());
    let r = c
        .get("/api/3.0/mlflow/scorers/versions?experiment_id=0&name=politeness")
        .await;
    let v: Vec<i64> = r.body["scorers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scorer_version"].as_i64().unwrap())
        .collect();
    assert_eq!(v, vec![1, 2]);

    // Online config: echoed with a string experiment id; read back by id.
    let r = set_rate(&c, "0", "politeness", 0.5, Some("tags.env = 'prod'")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cfg = &r.body["config"];
    assert_eq!(cfg["experiment_id"], "0");
    assert_eq!(cfg["sample_rate"], 0.5);
    assert_eq!(cfg["filter_string"], "tags.env = 'prod'");
    assert_eq!(cfg["online_scoring_config_id"].as_str().unwrap().len(), 32);
    let r = c
        .get(&format!(
            "/api/3.0/mlflow/scorers/online-configs?scorer_ids={id}&scorer_ids=nope"
        ))
        .await;
    assert_eq!(r.body["configs"].as_array().unwrap().len(), 1);
    // stop() sends no filter: the config is replaced, the filter cleared.
    let r = set_rate(&c, "0", "politeness", 0.0, None).await;
    assert!(
        r.body["config"].get("filter_string").is_none(),
        "{}",
        r.text
    );
    let r = c
        .get("/api/3.0/mlflow/scorers/online-configs?scorer_ids=nope")
        .await;
    assert_eq!(r.text.replace(' ', ""), "{\"configs\":[]}");

    // Errors in MLflow's words.
    let r = c
        .get("/api/3.0/mlflow/scorers/get?experiment_id=0&name=nope")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(
        r.body["message"],
        "Scorer with name 'nope' not found for experiment 0."
    );
    let r = c
        .get("/api/3.0/mlflow/scorers/get?experiment_id=0&name=politeness&version=9")
        .await;
    assert_eq!(
        r.body["message"],
        "Scorer with name 'politeness' and version 9 not found for experiment 0."
    );
    let r = register(&c, "0", "x", "not json").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["message"], "serialized_scorer must be valid JSON");
    let custom = r#"{"name": "has_text", "aggregations": null, "description": null, "is_session_level_scorer": false, "timeout": null, "mlflow_version": "3.17.2", "serialization_version": 1, "builtin_scorer_class": null, "builtin_scorer_pydantic_data": null, "call_source": "return \"text\" in str(outputs)", "call_signature": "(outputs) -> bool", "original_func_name": "has_text", "instructions_judge_pydantic_data": null, "memory_augmented_judge_data": null, "third_party_scorer_data": null, "ensemble_scorer_data": null}"#;
    let r = register(&c, "0", "has_text", custom).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Custom scorer registration (using @scorer decorator) is disabled")
    );
    let r = register(&c, "abc", "x", &p1).await;
    assert_eq!(
        r.body["message"],
        "Invalid experiment ID 'abc'. Experiment ID must be a valid integer."
    );
    let r = register(&c, "42", "x", &p1).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["message"], "No Experiment with id=42 exists");
    let r = c
        .post(
            "/api/3.0/mlflow/scorers/register",
            json!({"experiment_id": "0", "name": "x"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Missing value for required parameter 'serialized_scorer'.")
    );
    let r = set_rate(&c, "0", "politeness", 1.5, None).await;
    assert_eq!(
        r.body["message"],
        "sample_rate must be between 0.0 and 1.0, got 1.5"
    );
    let r = set_rate(&c, "0", "politeness", 1.0, Some("tags.env = prod")).await;
    assert_eq!(r.status, 400, "bad filter: {}", r.text);
    let r = c
        .send(
            "PUT",
            "/api/3.0/mlflow/scorers/online-config",
            Some(json!({"experiment_id": "0", "name": "politeness", "sample_rate": null})),
        )
        .await;
    assert_eq!(r.status, 400);
    // A model tracebox cannot call may not be started.
    let anth = guidelines("anth", "anthropic:/claude-3");
    assert_eq!(register(&c, "0", "anth", &anth).await.status, 200);
    let r = set_rate(&c, "0", "anth", 1.0, None).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("does not use a gateway model")
    );
    assert_eq!(set_rate(&c, "0", "anth", 0.0, None).await.status, 200);

    // Deleting one version keeps the scorer (and its id); deleting all
    // removes it, and a new registration starts over with a new id.
    let r = c
        .send(
            "DELETE",
            "/api/3.0/mlflow/scorers/delete",
            Some(json!({"experiment_id": "0", "name": "politeness", "version": 2})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text.replace(' ', ""), "{}");
    let r = c
        .get("/api/3.0/mlflow/scorers/get?experiment_id=0&name=politeness")
        .await;
    assert_eq!(r.body["scorer"]["scorer_version"], 1);
    let r = register(&c, "0", "politeness", &p2).await;
    assert_eq!(r.body["version"], 2, "max + 1 after deleting the highest");
    let r = c
        .send(
            "DELETE",
            "/api/3.0/mlflow/scorers/delete",
            Some(json!({"experiment_id": "0", "name": "politeness"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .send(
            "DELETE",
            "/api/3.0/mlflow/scorers/delete",
            Some(json!({"experiment_id": "0", "name": "politeness"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = register(&c, "0", "politeness", &p1).await;
    assert_eq!(r.body["version"], 1);
    assert_ne!(r.body["scorer_id"], id.as_str());
    // The ajax prefix the UI uses works too; an empty experiment lists `{}`.
    let e = create_experiment(&c, "empty").await;
    let r = c
        .get(&format!(
            "/ajax-api/3.0/mlflow/scorers/list?experiment_id={e}"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text.replace(' ', ""), "{}");
}

// ---------------------------------------------------------------- online

#[tokio::test]
async fn guidelines_judge_scores_matching_traces_once_complete() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    let exp = create_experiment(&c, "app").await;
    assert_eq!(
        register(
            &c,
            &exp,
            "politeness",
            &guidelines("politeness", "gateway:/judge")
        )
        .await
        .status,
        200
    );
    let r = set_rate(&c, &exp, "politeness", 1.0, Some("tags.env = 'prod'")).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let polite = T::new(
        1,
        "What is the capital of France?",
        "The capital of France is Paris.",
    )
    .tag("env", "prod");
    let rude = T::new(2, "What is 2+2?", "RUDE: figure it out yourself").tag("env", "prod");
    let dev = T::new(3, "hello?", "hi there").tag("env", "dev");
    // Spans first; the trace info (with the tags the filter needs) comes
    // later, as the async MLflow SDK may send it.
    send_spans(&c, &exp, &[polite.clone(), rude.clone(), dev.clone()]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for t in [&polite, &rude, &dev] {
        send_info(&c, &exp, t).await;
    }
    wait_until(
        "verdicts on the prod traces",
        Duration::from_secs(20),
        || async {
            judged_by(&c, &polite.id(), "politeness").await.len() == 1
                && judged_by(&c, &rude.id(), "politeness").await.len() == 1
        },
    )
    .await;
    let a = &judged_by(&c, &polite.id(), "politeness").await[0];
    assert_eq!(a["feedback"]["value"], "yes");
    assert_eq!(a["source"]["source_type"], "LLM_JUDGE");
    assert_eq!(a["source"]["source_id"], "gateway:/judge");
    assert_eq!(a["rationale"], "The answer is polite.");
    assert_eq!(a["span_id"], "0101010101010101");
    assert_eq!(a["metadata"]["mlflow.assessment.scorerName"], "politeness");
    assert_eq!(a["metadata"]["mlflow.assessment.scorerVersion"], "1");
    assert_eq!(a["metadata"]["guideline"], "The response must be polite.");
    assert_eq!(a["metadata"]["mlflow.assessment.judgeInputTokens"], "100");
    let b = &judged_by(&c, &rude.id(), "politeness").await[0];
    assert_eq!(b["feedback"]["value"], "no");

    // MLflow's prompt, filled in: request as Python str(dict), the answer.
    let seen = fake.seen();
    let prompt = seen
        .iter()
        .map(|s| s.prompt())
        .find(|p| p.contains("Paris"))
        .unwrap();
    assert!(prompt.starts_with("Given the following set of guidelines and some inputs"));
    assert!(prompt.contains(
        "<guidelines>\n<guideline>The response must be polite.</guideline>\n</guidelines>\n\
         <request>{'question': 'What is the capital of France?'}</request>\n\
         <response>The capital of France is Paris.</response>"
    ));
    assert_eq!(seen[0].body["model"], "fake-judge");
    assert_eq!(
        seen[0].body["response_format"]["json_schema"]["name"],
        "JudgeEvaluation"
    );

    // The dev trace is not judged, now or later.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(judged_by(&c, &dev.id(), "politeness").await.is_empty());
    assert_eq!(fake.count(), 2);

    let st = status(&c, &exp).await;
    let j = judge(&st, "politeness");
    assert_eq!(j["state"], "running");
    assert_eq!(j["evaluated"], 2);
    assert_eq!(j["passed"], 1);
    assert_eq!(j["pass_rate"], 0.5);
    assert_eq!(j["filtered"], 1);
    assert_eq!(j["failed"], 0);
    assert_eq!(st["queue"]["depth"], 0);
    let m = c.get("/metrics").await.text;
    assert!(
        m.contains(&format!(
            "tracebox_judge_evaluations_total{{judge=\"{exp}/politeness\"}} 2"
        )),
        "{m}"
    );
    assert!(m.contains(&format!(
        "tracebox_judge_passes_total{{judge=\"{exp}/politeness\"}} 1"
    )));
}

#[tokio::test]
async fn sampling_follows_mlflows_rule_and_stop_stops() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    let exp = create_experiment(&c, "sampled").await;
    // The PII detector needs no model, so 1000 traces judge quickly.
    register(&c, &exp, "pii", &builtin("pii", "PIIDetection", None)).await;
    assert_eq!(set_rate(&c, &exp, "pii", 0.1, None).await.status, 200);
    let traces: Vec<T> = (0..1000)
        .map(|i| {
            let answer = if i % 7 == 0 {
                format!("mail me at user{i}@example.com")
            } else {
                format!("answer {i}")
            };
            T::new(i, "q", &answer)
        })
        .collect();
    for chunk in traces.chunks(100) {
        send_spans(&c, &exp, chunk).await;
    }
    let expected: BTreeSet<String> = traces
        .iter()
        .filter(|t| mlflow_samples(&t.id(), "pii", 0.1))
        .map(T::id)
        .collect();
    wait_until(
        "all sampled traces judged",
        Duration::from_secs(60),
        || async {
            let st = status(&c, &exp).await;
            judge(&st, "pii")["evaluated"].as_i64() == Some(expected.len() as i64)
                && st["queue"]["depth"] == 0
        },
    )
    .await;
    // 10% ± 4 standard deviations of a binomial(1000, 0.1).
    assert!((62..=138).contains(&expected.len()), "{}", expected.len());
    let mut judged = BTreeSet::new();
    for t in &traces {
        let a = judged_by(&c, &t.id(), "pii").await;
        if let Some(a) = a.first() {
            assert_eq!(a["source"]["source_type"], "CODE");
            let has_email = t.outputs.as_str().unwrap().contains('@');
            assert_eq!(a["feedback"]["value"], if has_email { "no" } else { "yes" });
            if has_email {
                assert_eq!(a["rationale"], "Detected PII: email");
            }
            judged.insert(t.id());
        }
    }
    assert_eq!(judged, expected, "exactly MLflow's sample");

    // stop(): new traces are no longer queued.
    assert_eq!(set_rate(&c, &exp, "pii", 0.0, None).await.status, 200);
    let later: Vec<T> = (1000..1200).map(|i| T::new(i, "q", "a@b.co")).collect();
    send_spans(&c, &exp, &later).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for t in &later {
        assert!(judged_by(&c, &t.id(), "pii").await.is_empty());
    }
    let st = status(&c, &exp).await;
    assert_eq!(judge(&st, "pii")["state"], "stopped");
    assert_eq!(judge(&st, "pii")["evaluated"], expected.len() as i64);
}

#[tokio::test]
async fn retries_honour_retry_after_and_recover_from_500s_and_timeouts() {
    let fake = FakeLlm::start().await;
    fake.script([
        Reply::Status(429, Some("1".into())),
        Reply::Status(500, None),
        Reply::Slow(
            Duration::from_secs(3),
            Box::new(Reply::Verdict(json!("no"), "late".into())),
        ),
    ]);
    let (_d, s) = boot(&toml(&fake, "request_timeout_secs = 0.5\nmax_retries = 4"));
    let c = s.client();
    register(
        &c,
        "0",
        "politeness",
        &guidelines("politeness", "gateway:/judge"),
    )
    .await;
    set_rate(&c, "0", "politeness", 1.0, None).await;
    let t = T::new(10, "q", "fine answer");
    send(&c, "0", &t).await;
    wait_until(
        "a verdict after retries",
        Duration::from_secs(30),
        || async { !judged_by(&c, &t.id(), "politeness").await.is_empty() },
    )
    .await;
    let a = &judged_by(&c, &t.id(), "politeness").await[0];
    assert_eq!(a["feedback"]["value"], "yes", "{a}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 4, "429, 500, timeout, success");
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured ({gap:?})"
    );
}

#[tokio::test]
async fn circuit_pauses_a_failing_endpoint_then_recovers() {
    let fake = FakeLlm::start().await;
    fake.set_default(|_| Reply::Status(503, None));
    let (_d, s) = boot(&toml(
        &fake,
        // More retries than failures to open the circuit: no evaluation gives
        // up before the endpoint is paused.
        "max_retries = 10\ncircuit_failures = 3\ncircuit_open_secs = 3\nmax_concurrency = 1",
    ));
    let c = s.client();
    register(
        &c,
        "0",
        "politeness",
        &guidelines("politeness", "gateway:/judge"),
    )
    .await;
    set_rate(&c, "0", "politeness", 1.0, None).await;
    let traces: Vec<T> = (20..25).map(|i| T::new(i, "q", "ok")).collect();
    for t in &traces {
        send(&c, "0", t).await;
    }
    wait_until("the circuit to open", Duration::from_secs(20), || async {
        let st = status(&c, "0").await;
        st["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["endpoint"] == "gateway:/judge" && e["circuit"] == "open")
    })
    .await;
    // While open, the endpoint gets no calls and nothing is marked failed.
    let calls = fake.count();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(fake.count(), calls, "no calls while the circuit is open");
    let st = status(&c, "0").await;
    assert_eq!(judge(&st, "politeness")["failed"], 0);
    assert_eq!(judge(&st, "politeness")["pending"], 5);
    for t in &traces {
        assert!(judged_by(&c, &t.id(), "politeness").await.is_empty());
    }
    // The endpoint heals: the probe closes the circuit and the backlog drains.
    fake.set_default(crate::fake_llm::rude_is_no);
    wait_until("the backlog to drain", Duration::from_secs(30), || async {
        let st = status(&c, "0").await;
        judge(&st, "politeness")["evaluated"] == 5
    })
    .await;
    for t in &traces {
        let a = judged_by(&c, &t.id(), "politeness").await;
        assert_eq!(a.len(), 1);
        assert_eq!(a[0]["feedback"]["value"], "yes");
    }
    let st = status(&c, "0").await;
    assert_eq!(st["endpoints"][0]["circuit"], "closed");
}

#[tokio::test]
async fn malformed_output_is_an_error_assessment_and_fences_are_read() {
    let fake = FakeLlm::start().await;
    fake.set_default(|body| {
        if body.to_string().contains("fenced") {
            Reply::Content(
                "Sure, here you go:\n```json\n{\"result\": \"Yes\", \"rationale\": \"ok\"}\n```"
                    .into(),
            )
        } else {
            Reply::Content("I am not able to judge this.".into())
        }
    });
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    register(
        &c,
        "0",
        "safety",
        &builtin("safety", "Safety", Some("gateway:/judge")),
    )
    .await;
    set_rate(&c, "0", "safety", 1.0, None).await;
    let bad = T::new(30, "q", "plain answer");
    let fenced = T::new(31, "q", "fenced answer");
    send(&c, "0", &bad).await;
    send(&c, "0", &fenced).await;
    wait_until("both judged", Duration::from_secs(20), || async {
        !judged_by(&c, &bad.id(), "safety").await.is_empty()
            && !judged_by(&c, &fenced.id(), "safety").await.is_empty()
    })
    .await;
    let a = &judged_by(&c, &bad.id(), "safety").await[0];
    assert_eq!(a["feedback"]["error"]["error_code"], "SCORER_ERROR");
    assert_eq!(
        a["feedback"]["error"]["error_message"],
        "Failed to parse response from judge model. Response: I am not able to judge this."
    );
    assert_eq!(a["source"]["source_type"], "CODE");
    assert_eq!(a["source"]["source_id"], "safety");
    let b = &judged_by(&c, &fenced.id(), "safety").await[0];
    assert_eq!(b["feedback"]["value"], "yes");
    let st = status(&c, "0").await;
    let j = judge(&st, "safety");
    assert_eq!(j["failed"], 1);
    assert!(
        j["last_error"]
            .as_str()
            .unwrap()
            .contains("I am not able to judge this.")
    );
}

#[tokio::test]
async fn misconfigured_gateway_is_reported_not_skipped() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    let r = register(&c, "0", "ghost", &guidelines("ghost", "gateway:/missing")).await;
    assert_eq!(r.status, 200, "registration succeeds: {}", r.text);
    assert_eq!(set_rate(&c, "0", "ghost", 1.0, None).await.status, 200);
    let st = status(&c, "0").await;
    let j = judge(&st, "ghost");
    assert_eq!(j["state"], "misconfigured");
    assert!(j["problem"].as_str().unwrap().contains("[gateway.missing]"));
    let t = T::new(40, "q", "a");
    send(&c, "0", &t).await;
    wait_until("an error assessment", Duration::from_secs(20), || async {
        !judged_by(&c, &t.id(), "ghost").await.is_empty()
    })
    .await;
    let a = &judged_by(&c, &t.id(), "ghost").await[0];
    assert!(
        a["feedback"]["error"]["error_message"]
            .as_str()
            .unwrap()
            .contains("judge is misconfigured")
    );
    assert_eq!(fake.count(), 0);
}

#[tokio::test]
async fn a_full_queue_sheds_evaluations_but_keeps_traces() {
    let fake = FakeLlm::start().await;
    // A long settle time keeps evaluations pending while the queue fills.
    let (_d, s) = boot(&format!(
        "[gateway.judge]\nbase_url = \"{}\"\nmodel = \"m\"\n[judges]\nqueue_capacity = 5\ntrace_settle_secs = 3\n",
        fake.base_url
    ));
    let c = s.client();
    register(&c, "0", "pii", &builtin("pii", "PIIDetection", None)).await;
    set_rate(&c, "0", "pii", 1.0, None).await;
    let traces: Vec<T> = (50..70).map(|i| T::new(i, "q", "a")).collect();
    send_spans(&c, "0", &traces).await;
    let st = status(&c, "0").await;
    let j = judge(&st, "pii");
    assert_eq!(j["pending"], 5);
    assert_eq!(j["shed"], 15);
    assert!(
        c.get("/metrics")
            .await
            .text
            .contains("tracebox_judge_shed_total 15")
    );
    let r = c
        .post(
            "/api/3.0/mlflow/traces/search",
            json!({"experiment_ids": ["0"], "max_results": 100}),
        )
        .await;
    assert_eq!(
        r.body["traces"].as_array().unwrap().len(),
        20,
        "no trace dropped"
    );
    wait_until(
        "the 5 queued ones judged",
        Duration::from_secs(20),
        || async { judge(&status(&c, "0").await, "pii")["evaluated"] == 5 },
    )
    .await;
    // A backfill queues the shed evaluations again.
    let r = c
        .post(
            "/api/tracebox/v1/judges/backfill",
            json!({"experiment_id": "0", "name": "pii"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["matched"], 20);
    assert_eq!(r.body["queued"], 15);
    let batch = r.body["batch"].as_str().unwrap().to_string();
    wait_until("the backfill", Duration::from_secs(30), || async {
        let p = c
            .get(&format!("/api/tracebox/v1/judges/backfill/{batch}"))
            .await;
        p.body["open"] == 0
    })
    .await;
    for t in &traces {
        assert_eq!(judged_by(&c, &t.id(), "pii").await.len(), 1);
    }
}

#[tokio::test]
async fn restart_mid_backlog_loses_nothing() {
    let fake = FakeLlm::start().await;
    fake.set_default(|_| {
        Reply::Slow(
            Duration::from_millis(300),
            Box::new(Reply::Verdict(json!("yes"), "ok".into())),
        )
    });
    let config = toml(&fake, "max_concurrency = 1\nlease_secs = 2");
    let (dir, mut s) = boot(&config);
    let c = s.client();
    register(
        &c,
        "0",
        "politeness",
        &guidelines("politeness", "gateway:/judge"),
    )
    .await;
    set_rate(&c, "0", "politeness", 1.0, None).await;
    let traces: Vec<T> = (60..75).map(|i| T::new(i, "q", "fine")).collect();
    for t in &traces {
        send(&c, "0", t).await;
    }
    wait_until("a few verdicts", Duration::from_secs(20), || async {
        judge(&status(&c, "0").await, "politeness")["evaluated"]
            .as_i64()
            .unwrap()
            >= 3
    })
    .await;
    // Crash mid-backlog: some evaluations pending, one claimed and in flight.
    s.kill9();
    let s2 = Server::start_in(dir.path(), &[]);
    let c2 = s2.client();
    wait_until("the whole backlog", Duration::from_secs(60), || async {
        judge(&status(&c2, "0").await, "politeness")["evaluated"] == 15
    })
    .await;
    for t in &traces {
        assert_eq!(
            judged_by(&c2, &t.id(), "politeness").await.len(),
            1,
            "exactly one verdict for {}",
            t.id()
        );
    }
    drop(s);
}

#[tokio::test]
async fn session_judge_fires_after_idle_and_replaces_its_verdict() {
    let fake = FakeLlm::start().await;
    fake.set_default(|body| {
        let text = body.to_string();
        if text.contains("USER_FRUSTRATION_MARK") || text.contains("emotional trajectory") {
            if text.contains("useless") {
                Reply::Verdict(json!("unresolved"), "the user is annoyed".into())
            } else {
                Reply::Verdict(json!("none"), "calm".into())
            }
        } else {
            Reply::Verdict(json!("yes"), "ok".into())
        }
    });
    let (_d, s) = boot(&toml(&fake, "session_idle_secs = 3"));
    let c = s.client();
    register(
        &c,
        "0",
        "user_frustration",
        &builtin(
            "user_frustration",
            "UserFrustration",
            Some("gateway:/judge"),
        ),
    )
    .await;
    set_rate(&c, "0", "user_frustration", 1.0, None).await;
    let turns = [
        T::new(80, "hi, where is my order?", "It ships tomorrow.").session("s-1"),
        T::new(81, "can I change the address?", "Yes, done.").session("s-1"),
        T::new(82, "thanks", "You're welcome!").session("s-1"),
    ];
    for t in &turns {
        send(&c, "0", t).await;
    }
    let first = turns[0].id();
    wait_until("the session verdict", Duration::from_secs(20), || async {
        !judged_by(&c, &first, "user_frustration").await.is_empty()
    })
    .await;
    let a = &judged_by(&c, &first, "user_frustration").await[0];
    assert_eq!(a["feedback"]["value"], "none");
    assert_eq!(a["metadata"]["mlflow.trace.session"], "s-1");
    assert_eq!(
        a["metadata"]["mlflow.assessment.onlineScoringSessionId"],
        "s-1"
    );
    for t in &turns[1..] {
        assert!(judged_by(&c, &t.id(), "user_frustration").await.is_empty());
    }
    // The session view shows it as a session-level assessment.
    let r = c.get("/api/tracebox/v1/sessions/s-1?experiment_id=0").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sa = r.body["session_assessments"].as_array().unwrap();
    assert_eq!(sa.len(), 1, "{}", r.text);
    assert_eq!(sa[0]["name"], "user_frustration");
    assert_eq!(r.body["session"]["assessments"]["session_level"], 1);
    // The judge saw the whole conversation, in order, as MLflow shows it.
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let user = seen[0].body["messages"][1]["content"].as_str().unwrap();
    assert!(user.starts_with("conversation: [\n  {\n    \"role\": \"user\",\n    \"content\": \"{'question': 'hi, where is my order?'}\""), "{user}");
    assert!(user.find("ships tomorrow").unwrap() < user.find("change the address").unwrap());
    let system = seen[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("<conversation>{{ conversation }}</conversation>"));
    assert!(system.ends_with("- result (Literal['none', 'resolved', 'unresolved']): The evaluation rating/result\n- rationale (str): Detailed explanation for the evaluation"));

    // A new turn re-opens the session; after idle the verdict is replaced.
    let late = T::new(83, "this is useless", "Sorry!").session("s-1");
    send(&c, "0", &late).await;
    wait_until("the new verdict", Duration::from_secs(20), || async {
        let a = judged_by(&c, &first, "user_frustration").await;
        a.len() == 1 && a[0]["feedback"]["value"] == "unresolved"
    })
    .await;
    let r = c.get("/api/tracebox/v1/sessions/s-1?experiment_id=0").await;
    assert_eq!(
        r.body["session_assessments"].as_array().unwrap().len(),
        1,
        "replaced, not added"
    );
    let st = status(&c, "0").await;
    let j = judge(&st, "user_frustration");
    assert_eq!(j["level"], "session");
    assert_eq!(j["passed"], 0);
    assert_eq!(j["verdicts"], 1);
}

#[tokio::test]
async fn groundedness_correctness_and_custom_judges() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    register(
        &c,
        "0",
        "groundedness",
        &builtin(
            "groundedness",
            "RetrievalGroundedness",
            Some("gateway:/judge"),
        ),
    )
    .await;
    register(
        &c,
        "0",
        "correctness",
        &builtin("correctness", "Correctness", Some("gateway:/judge")),
    )
    .await;
    let custom = build(
        "concise",
        &NewJudge::Custom {
            instructions: "Is {{ outputs }} a concise answer to {{ inputs }}?".into(),
            value_type: value_type_schema("bool").unwrap(),
        },
        Some("gateway:/judge"),
    )
    .unwrap();
    register(&c, "0", "concise", &custom).await;
    for n in ["groundedness", "correctness", "concise"] {
        assert_eq!(set_rate(&c, "0", n, 1.0, None).await.status, 200);
    }
    fake.set_default(|body| {
        let text = body.to_string();
        if text.contains("concise answer") {
            Reply::Content("{\"result\": true, \"rationale\": \"short\"}".into())
        } else {
            crate::fake_llm::rude_is_no(body)
        }
    });
    // A trace with a retriever span and a logged expectation.
    let t = T::new(90, "Capital of France?", "Paris.");
    let mut spans = t.spans();
    spans.push(
        SpanSpec::child(2, 1, "retrieve")
            .span_type("RETRIEVER")
            .inputs(json!("{\"query\": \"capital\"}"))
            .outputs(json!(
                "[{\"page_content\": \"Paris is the capital of France.\", \"metadata\": {\"doc_uri\": \"kb://1\"}}]"
            )),
    );
    let body = crate::otlp_http::request(&t.hex, &spans).encode_to_vec();
    c.post_raw("/v1/traces", "application/x-protobuf", body, &[])
        .await;
    // The expectation is logged before the trace is complete (info comes last).
    let r = c
        .post(
            &format!("/api/3.0/mlflow/traces/{}/assessments", t.id()),
            json!({"assessment": {"assessment_name": "expected_response", "trace_id": t.id(),
                   "source": {"source_type": "HUMAN", "source_id": "me"},
                   "expectation": {"value": "Paris"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut info = t.info("0");
    info["trace"]["trace_info"]["trace_metadata"]["mlflow.trace.sizeStats"] =
        json!("{\"num_spans\": 2}");
    c.post("/api/3.0/mlflow/traces", info).await;
    wait_until("three judges", Duration::from_secs(20), || async {
        let a = assessments(&c, &t.id()).await;
        ["groundedness", "correctness", "concise"]
            .iter()
            .all(|n| a.iter().any(|x| x["assessment_name"] == *n))
    })
    .await;
    let a = assessments(&c, &t.id()).await;
    let by = |n: &str| {
        a.iter()
            .find(|x| x["assessment_name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("groundedness")["feedback"]["value"], "yes");
    assert_eq!(by("correctness")["feedback"]["value"], "yes");
    assert_eq!(by("concise")["feedback"]["value"], true);
    let prompts: Vec<String> = fake.seen().iter().map(|s| s.prompt()).collect();
    let g = prompts.iter().find(|p| p.contains("<document>[{")).unwrap();
    assert!(g.contains(
        "<document>[{'content': 'Paris is the capital of France.', 'doc_uri': 'kb://1'}]</document>"
    ));
    let k = prompts
        .iter()
        .find(|p| p.contains("<claim>Paris</claim>"))
        .unwrap();
    assert!(k.contains("<document>{'question': 'Capital of France?'} - Paris.</document>"));
    let m = fake
        .seen()
        .into_iter()
        .find(|s| s.prompt().contains("concise answer"))
        .unwrap();
    assert_eq!(
        m.body["messages"][1]["content"],
        "outputs: \"Paris.\"\ninputs: {\n  \"question\": \"Capital of France?\"\n}"
    );
    assert_eq!(
        m.body["response_format"]["json_schema"]["schema"]["properties"]["result"]["type"],
        "boolean"
    );
}

// ---------------------------------------------------------------- CLI

fn tracebox(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tracebox")
}

fn ok(out: std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "stdout: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn cli_manages_judges_on_the_data_dir_and_over_http() {
    let fake = FakeLlm::start().await;
    let (dir, s) = boot(&toml(&fake, ""));
    let c = s.client();
    let data = dir.path().to_str().unwrap().to_string();
    let exp = create_experiment(&c, "cli-app").await;
    // Traces first: the backfill judges history.
    let traces: Vec<T> = (100..110)
        .map(|i| {
            T::new(
                i,
                "q",
                if i % 2 == 0 {
                    "call 555-123-4567"
                } else {
                    "nothing here"
                },
            )
            .tag("env", if i < 105 { "prod" } else { "dev" })
        })
        .collect();
    for t in &traces {
        send(&c, &exp, t).await;
    }

    // Data-directory mode, beside the running server.
    let d = ["--data", data.as_str(), "-e", "cli-app"];
    let out = ok(tracebox(
        &[&["judges", "add", "pii", "--kind", "pii"], &d[..]].concat(),
    ));
    assert!(out.contains("registered judge 'pii' version 1"), "{out}");
    let out = ok(tracebox(
        &[
            &[
                "judges",
                "add",
                "tone",
                "--kind",
                "guidelines",
                "--guidelines",
                "Be polite.",
                "--model",
                "gateway:/judge",
            ],
            &d[..],
        ]
        .concat(),
    ));
    assert!(out.contains("version 1"));
    // The server lists what the CLI registered, in MLflow's shape.
    let r = c
        .get(&format!("/api/3.0/mlflow/scorers/list?experiment_id={exp}"))
        .await;
    assert_eq!(r.body["scorers"].as_array().unwrap().len(), 2);

    let out = ok(tracebox(
        &[
            &[
                "judges",
                "backfill",
                "pii",
                "--filter",
                "tags.env = 'prod'",
                "--no-progress",
            ],
            &d[..],
        ]
        .concat(),
    ));
    assert!(out.contains("5 matched, 5 queued"), "{out}");
    assert!(out.contains("backfill done: done 5"), "{out}");
    for t in &traces {
        let a = judged_by(&c, &t.id(), "pii").await;
        if t.tags["env"] == "prod" {
            assert_eq!(a.len(), 1);
            let phone = t.outputs.as_str().unwrap().contains("555");
            assert_eq!(a[0]["feedback"]["value"], if phone { "no" } else { "yes" });
        } else {
            assert!(a.is_empty());
        }
    }

    // Start from the CLI: the running server's ingestion picks it up.
    ok(tracebox(
        &[&["judges", "start", "tone", "--sample-rate", "1"], &d[..]].concat(),
    ));
    let t = T::new(120, "q", "thank you kindly");
    send(&c, &exp, &t).await;
    wait_until("the CLI-started judge", Duration::from_secs(20), || async {
        !judged_by(&c, &t.id(), "tone").await.is_empty()
    })
    .await;
    let out = ok(tracebox(&[&["judges", "list"], &d[..]].concat()));
    assert!(out.contains("tone") && out.contains("running"), "{out}");
    let out = ok(tracebox(&[&["judges", "list", "--json"], &d[..]].concat()));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(judge(&v, "pii")["evaluated"], 5);

    // The same over HTTP.
    let u = ["--url", s.url.as_str(), "-e", exp.as_str()];
    ok(tracebox(&[&["judges", "stop", "tone"], &u[..]].concat()));
    let st = status(&c, &exp).await;
    assert_eq!(judge(&st, "tone")["state"], "stopped");
    let out = ok(tracebox(
        &[
            &[
                "judges",
                "backfill",
                "pii",
                "--filter",
                "tags.env = 'dev'",
                "--no-progress",
            ],
            &u[..],
        ]
        .concat(),
    ));
    assert!(out.contains("5 matched, 5 queued"), "{out}");
    assert!(out.contains("backfill done"), "{out}");
    for t in &traces {
        assert_eq!(judged_by(&c, &t.id(), "pii").await.len(), 1);
    }
    let out = ok(tracebox(&[&["judges", "list"], &u[..]].concat()));
    assert!(out.contains("pii") && out.contains("PIIDetection"), "{out}");
    ok(tracebox(&[&["judges", "rm", "tone"], &u[..]].concat()));
    let r = c
        .get(&format!(
            "/api/3.0/mlflow/scorers/get?experiment_id={exp}&name=tone"
        ))
        .await;
    assert_eq!(r.status, 404);
    let bad = tracebox(&[&["judges", "rm", "nope"], &u[..]].concat());
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Scorer with name 'nope' not found"));
}

#[tokio::test]
async fn incomplete_traces_wait_then_are_judged_with_what_arrived() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, "incomplete_trace_secs = 2.5"));
    let c = s.client();
    register(
        &c,
        "0",
        "politeness",
        &guidelines("politeness", "gateway:/judge"),
    )
    .await;
    set_rate(&c, "0", "politeness", 1.0, None).await;
    // Announced two spans, sent one (the root): not complete yet.
    let partial = T::new(130, "q", "fine");
    let mut info = partial.info("0");
    info["trace"]["trace_info"]["trace_metadata"]["mlflow.trace.sizeStats"] =
        json!("{\"num_spans\": 2}");
    send_spans(&c, "0", std::slice::from_ref(&partial)).await;
    c.post("/api/3.0/mlflow/traces", info).await;
    // Trace info only: its spans never come.
    let spanless = T::new(131, "q", "fine");
    send_info(&c, "0", &spanless).await;
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(judged_by(&c, &partial.id(), "politeness").await.is_empty());
    assert_eq!(fake.count(), 0, "waiting for the missing span");
    wait_until(
        "both judged after the grace time",
        Duration::from_secs(20),
        || async {
            !judged_by(&c, &partial.id(), "politeness").await.is_empty()
                && !judged_by(&c, &spanless.id(), "politeness").await.is_empty()
        },
    )
    .await;
    assert!(sent.elapsed() >= Duration::from_millis(2400));
    assert_eq!(
        judged_by(&c, &partial.id(), "politeness").await[0]["feedback"]["value"],
        "yes"
    );
    let e = &judged_by(&c, &spanless.id(), "politeness").await[0];
    assert_eq!(e["feedback"]["error"]["error_code"], "SCORER_ERROR");
    assert!(
        e["feedback"]["error"]["error_message"]
            .as_str()
            .unwrap()
            .contains("root span has none")
    );
}

#[tokio::test]
async fn sigterm_hands_back_in_flight_evaluations() {
    use std::io::{BufRead, BufReader};
    let fake = FakeLlm::start().await;
    fake.script([Reply::Slow(
        Duration::from_secs(30),
        Box::new(Reply::Verdict(json!("no"), "never delivered".into())),
    )]);
    let dir = tempfile::tempdir().unwrap();
    // A long lease: only the hand-back on shutdown can free the task quickly.
    std::fs::write(
        dir.path().join("tracebox.toml"),
        toml(&fake, "lease_secs = 300"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--otlp-grpc-port",
            "0",
            "--data",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(u) = line.strip_prefix("tracebox listening on ") {
            break u.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let c = Client {
        base: url,
        http: reqwest::Client::new(),
    };
    register(
        &c,
        "0",
        "politeness",
        &guidelines("politeness", "gateway:/judge"),
    )
    .await;
    set_rate(&c, "0", "politeness", 1.0, None).await;
    let t = T::new(140, "q", "fine");
    send(&c, "0", &t).await;
    wait_until("the call in flight", Duration::from_secs(20), || async {
        fake.count() == 1
    })
    .await;
    let st = status(&c, "0").await;
    assert_eq!(judge(&st, "politeness")["running"], 1);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let stopped = Instant::now();
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "tracebox did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(code.success(), "{code:?}");
    // Restarted, the evaluation is pending again and runs at once.
    let s = Server::start_in(dir.path(), &[]);
    let c = s.client();
    wait_until(
        "the handed-back evaluation",
        Duration::from_secs(20),
        || async { judged_by(&c, &t.id(), "politeness").await.len() == 1 },
    )
    .await;
    assert_eq!(
        judged_by(&c, &t.id(), "politeness").await[0]["feedback"]["value"],
        "yes"
    );
}

#[tokio::test]
async fn correctness_waits_for_expectations_sent_with_the_trace_info() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    register(
        &c,
        "0",
        "correctness",
        &builtin("correctness", "Correctness", Some("gateway:/judge")),
    )
    .await;
    set_rate(&c, "0", "correctness", 1.0, None).await;
    let t = T::new(150, "Capital of France?", "Paris.");
    send_spans(&c, "0", std::slice::from_ref(&t)).await;
    // Well past the settle time, the SDK's trace info arrives carrying the
    // expectation logged during the request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut info = t.info("0");
    info["trace"]["trace_info"]["assessments"] = json!([{
        "assessment_name": "expected_response", "trace_id": t.id(),
        "source": {"source_type": "HUMAN", "source_id": "me"},
        "expectation": {"value": "Paris"}}]);
    let r = c.post("/api/3.0/mlflow/traces", info).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_until(
        "the correctness verdict",
        Duration::from_secs(20),
        || async { !judged_by(&c, &t.id(), "correctness").await.is_empty() },
    )
    .await;
    let a = &judged_by(&c, &t.id(), "correctness").await[0];
    assert_eq!(
        a["feedback"]["value"], "yes",
        "judged with the expectation: {a}"
    );
    assert!(fake.seen()[0].prompt().contains("<claim>Paris</claim>"));
}
