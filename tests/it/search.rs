//! Trace search against the real binary: MLflow's filter forms, ordering,
//! pagination, errors, and tracebox's full-text search (words, phrases,
//! prefixes, non-English text, deletion, index rebuild, crash catch-up).

use serde_json::{Value, json};

use crate::harness::{Client, Server};
use crate::otlp_http::{SpanSpec, export_protobuf, trace_hex};

const T0: i64 = 1_795_625_977_000;

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

struct Seed<'a> {
    n: u8,
    offset_ms: i64,
    exec: Option<&'a str>,
    state: &'a str,
    tags: Value,
    metadata: Value,
    spans: Vec<SpanSpec>,
}

/// Logs one trace as the SDK does: trace info (StartTraceV3), then spans.
async fn log(c: &Client, exp: &str, s: Seed<'_>) -> String {
    let (hex, id) = trace_hex(s.n);
    let mut info = json!({
        "trace_id": id,
        "client_request_id": format!("req-{}", s.n),
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}},
        "request_time": iso(T0 + s.offset_ms),
        "state": s.state,
        "trace_metadata": s.metadata,
        "tags": s.tags,
    });
    if let Some(e) = s.exec {
        info["execution_duration"] = json!(e);
    }
    let r = c
        .post(
            "/api/3.0/mlflow/traces",
            json!({"trace": {"trace_info": info}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let spans: Vec<SpanSpec> = s
        .spans
        .into_iter()
        .map(|sp| sp.start_ms(T0 + s.offset_ms))
        .collect();
    let r = export_protobuf(c, &hex, &spans, Some(exp)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    id
}

async fn feedback(c: &Client, trace: &str, kind: &str, name: &str, value: Value) {
    let mut a = json!({
        "assessment_name": name,
        "trace_id": trace,
        "source": {"source_type": "HUMAN", "source_id": "me"},
    });
    a[kind] = json!({ "value": value });
    let r = c
        .post(
            &format!("/api/3.0/mlflow/traces/{trace}/assessments"),
            json!({ "assessment": a }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn body(exp: &str, filter: Option<&str>) -> Value {
    let mut b = json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}}], "max_results": 500});
    if let Some(f) = filter {
        b["filter"] = json!(f);
    }
    b
}

async fn search(c: &Client, b: Value) -> crate::harness::Resp {
    c.post("/api/3.0/mlflow/traces/search", b).await
}

fn ids(r: &crate::harness::Resp) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect()
}

async fn create_experiment(c: &Client, name: &str) -> String {
    let r = c
        .post("/api/2.0/mlflow/experiments/create", json!({"name": name}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["experiment_id"].as_str().unwrap().to_string()
}

/// Five traces covering every kind of filter; returns their ids. The last
/// one has only trace info (no spans, no execution time, no name).
async fn seed(c: &Client, exp: &str) -> [String; 5] {
    let t1 = log(
        c,
        exp,
        Seed {
            n: 0x11,
            offset_ms: 1000,
            exec: Some("0.100s"),
            state: "OK",
            tags: json!({"env": "prod", "model name": "gpt-4"}),
            metadata: json!({"mlflow.trace.user": "alice", "mlflow.trace.session": "s1", "mlflow.sourceRun": "run1"}),
            spans: vec![
                SpanSpec::root(1, "chat")
                    .span_type("CHAIN")
                    .inputs(json!({"q": "Where is my refund?"})),
                SpanSpec::child(2, 1, "llm")
                    .span_type("LLM")
                    .attr("model", json!("gpt-4"))
                    .inputs(json!({"messages": [{"role": "user", "content": "Where is my refund?"}]}))
                    .outputs(json!({"choices": [{"message": {"role": "assistant", "content": "Our Refund Policy allows 30 days."}}]})),
            ],
        },
    )
    .await;
    let t2 = log(
        c,
        exp,
        Seed {
            n: 0x22,
            offset_ms: 2000,
            exec: Some("0.300s"),
            state: "ERROR",
            tags: json!({"env": "dev"}),
            metadata: json!({"mlflow.trace.user": "bob", "mlflow.trace.session": "s1"}),
            spans: vec![
                SpanSpec::root(1, "chat").inputs(json!({"q": "Wie lange dauert der Versand?"})),
                SpanSpec::child(2, 1, "tool")
                    .span_type("TOOL")
                    .error("LookupError: warehouse unreachable"),
            ],
        },
    )
    .await;
    let t3 = log(
        c,
        exp,
        Seed {
            n: 0x33,
            offset_ms: 3000,
            exec: Some("0.200s"),
            state: "OK",
            tags: json!({"env": "prod", "mlflow.linkedPrompts": "[{\"name\": \"qa\", \"version\": \"2\"}]"}),
            metadata: json!({"mlflow.trace.user": "alice", "mlflow.trace.session": "s2"}),
            spans: vec![
                SpanSpec::root(1, "search").inputs(json!({"q": "我要退款"})),
                SpanSpec::child(2, 1, "retrieve").span_type("RETRIEVER"),
            ],
        },
    )
    .await;
    let t4 = log(
        c,
        exp,
        Seed {
            n: 0x44,
            offset_ms: 4000,
            exec: None,
            state: "IN_PROGRESS",
            tags: json!({}),
            metadata: json!({}),
            spans: vec![SpanSpec::root(1, "chat").inputs(json!({"q": "shipping status please"}))],
        },
    )
    .await;
    let (_, t5) = trace_hex(0x55);
    let info = json!({
        "trace_id": t5,
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}},
        "request_time": iso(T0 + 5000),
        "state": "IN_PROGRESS",
    });
    let r = c
        .post(
            "/api/3.0/mlflow/traces",
            json!({"trace": {"trace_info": info}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    feedback(c, &t1, "feedback", "correct", json!(true)).await;
    feedback(c, &t3, "feedback", "score", json!(0.9)).await;
    feedback(c, &t2, "expectation", "answer", json!("Paris")).await;
    [t1, t2, t3, t4, t5]
}

/// Waits until the full-text index has caught up, then searches `text`.
async fn wait_for_text(c: &Client, exp: &str, text: &str) -> Vec<String> {
    c.wait_for_index().await;
    let mut b = body(exp, None);
    b["text"] = json!(text);
    ids(&search(c, b).await)
}

fn v(xs: &[&String]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn every_filter_form_answers_like_mlflow() {
    let s = Server::start();
    let c = s.client();
    let exp = create_experiment(&c, "filters").await;
    let [t1, t2, t3, t4, t5] = seed(&c, &exp).await;
    wait_for_text(&c, &exp, "shipping").await;
    let cases: Vec<(String, Vec<&String>)> = vec![
        ("tags.env = 'prod'".into(), vec![&t1, &t3]),
        ("tag.env != 'prod'".into(), vec![&t2]),
        ("tags.env IS NULL".into(), vec![&t4, &t5]),
        (
            "tags.env IS NOT NULL AND tags.env LIKE 'pr%'".into(),
            vec![&t1, &t3],
        ),
        ("tags.env LIKE 'PR%'".into(), vec![]),
        ("tags.env ILIKE 'PR%'".into(), vec![&t1, &t3]),
        ("tags.env RLIKE '^d'".into(), vec![&t2]),
        ("tags.`model name` = 'gpt-4'".into(), vec![&t1]),
        ("name = 'chat'".into(), vec![&t1, &t2, &t4]),
        ("trace.name != 'chat'".into(), vec![&t3]),
        ("tags.`mlflow.traceName` LIKE 'se%'".into(), vec![&t3]),
        ("status = 'OK'".into(), vec![&t1, &t3]),
        (
            "attributes.status IN ('ERROR', 'IN_PROGRESS')".into(),
            vec![&t2, &t4, &t5],
        ),
        ("status NOT IN ('OK')".into(), vec![&t2, &t4, &t5]),
        ("status = 'ok'".into(), vec![]),
        (
            format!("timestamp_ms > {}", T0 + 1500),
            vec![&t2, &t3, &t4, &t5],
        ),
        (
            format!(
                "timestamp > {} AND trace.timestamp_ms <= {}",
                T0 + 1500,
                T0 + 3000
            ),
            vec![&t2, &t3],
        ),
        ("execution_time_ms >= 200".into(), vec![&t2, &t3]),
        (format!("trace.end_time_ms < {}", T0 + 3100), vec![&t1, &t2]),
        (format!("request_id = '{t1}'"), vec![&t1]),
        (format!("request_id IN ('{t1}', '{t2}')"), vec![&t1, &t2]),
        ("client_request_id = 'req-51'".into(), vec![&t3]),
        (
            "metadata.`mlflow.trace.user` = 'alice'".into(),
            vec![&t1, &t3],
        ),
        (
            "request_metadata.`mlflow.trace.user` != 'alice'".into(),
            vec![&t2],
        ),
        (
            "metadata.`mlflow.trace.session` = 's1'".into(),
            vec![&t1, &t2],
        ),
        ("run_id = 'run1'".into(), vec![&t1]),
        ("prompt = 'qa/2'".into(), vec![&t3]),
        ("span.name = 'llm'".into(), vec![&t1]),
        (
            "span.type = 'TOOL' AND span.status = 'ERROR'".into(),
            vec![&t2],
        ),
        ("span.type = 'LLM' AND span.name = 'chat'".into(), vec![]),
        ("span.type IN ('LLM', 'RETRIEVER')".into(), vec![&t1, &t3]),
        ("span.attributes.model = 'gpt-4'".into(), vec![&t1]),
        ("trace.text LIKE '%refund%'".into(), vec![&t1]),
        ("trace.text ILIKE '%REFUND%'".into(), vec![&t1]),
        (
            "trace.text LIKE '%policy%' AND span.name = 'llm'".into(),
            vec![&t1],
        ),
        (
            "trace.text LIKE '%policy%' AND span.name = 'chat'".into(),
            vec![],
        ),
        ("trace.text LIKE '%退款%'".into(), vec![&t3]),
        ("trace.text LIKE '%warehouse%'".into(), vec![&t2]),
        ("feedback.correct = 'true'".into(), vec![&t1]),
        ("feedback.score > 0.5".into(), vec![&t3]),
        ("feedback.score < 0.5".into(), vec![]),
        ("feedback.correct IS NULL".into(), vec![&t2, &t3, &t4, &t5]),
        ("expectation.answer LIKE '%Paris%'".into(), vec![&t2]),
        ("expectation.answer = 'Paris'".into(), vec![&t2]),
        ("issue.id = 'iss-1'".into(), vec![]),
        // tracebox extensions: OR and parentheses.
        (
            "tags.env = 'dev' OR (status = 'OK' AND metadata.`mlflow.trace.user` = 'alice')".into(),
            vec![&t1, &t2, &t3],
        ),
        (
            "(span.name = 'llm' OR span.name = 'retrieve') AND tags.env = 'prod'".into(),
            vec![&t1, &t3],
        ),
        // MLflow quirks kept: AND is optional.
        ("tags.env = 'prod' status = 'OK'".into(), vec![&t1, &t3]),
    ];
    for (filter, want) in cases {
        let got = sorted(ids(&search(&c, body(&exp, Some(&filter))).await));
        let want = sorted(want.into_iter().cloned().collect());
        assert_eq!(got, want, "filter: {filter}");
    }
}

#[tokio::test]
async fn ordering_pagination_and_errors() {
    let s = Server::start();
    let c = s.client();
    let exp = create_experiment(&c, "order").await;
    let [t1, t2, t3, t4, t5] = seed(&c, &exp).await;
    let order = |o: Vec<&str>| {
        let mut b = body(&exp, None);
        b["order_by"] = json!(o);
        b
    };
    assert_eq!(
        ids(&search(&c, body(&exp, None)).await),
        v(&[&t5, &t4, &t3, &t2, &t1])
    );
    // t4's root span lasted 5 ms; t5 has no execution time.
    assert_eq!(
        ids(&search(&c, order(vec!["execution_time_ms DESC"])).await),
        v(&[&t2, &t3, &t1, &t4, &t5]),
        "NULL execution time last"
    );
    assert_eq!(
        ids(&search(&c, order(vec!["execution_time ASC"])).await),
        v(&[&t4, &t1, &t3, &t2, &t5]),
        "NULL execution time last in ASC too"
    );
    assert_eq!(
        ids(&search(&c, order(vec!["name", "timestamp_ms ASC"])).await),
        v(&[&t1, &t2, &t4, &t3, &t5])
    );
    assert_eq!(
        ids(&search(&c, order(vec!["tags.env DESC"])).await),
        v(&[&t3, &t1, &t2, &t5, &t4])
    );
    assert_eq!(
        ids(&search(&c, order(vec!["status", "trace.end_time DESC"])).await),
        v(&[&t2, &t5, &t4, &t3, &t1])
    );
    // Paging one by one through an order with NULLs gives the same list,
    // and the last page carries no token.
    for o in [
        vec!["execution_time_ms DESC"],
        vec!["execution_time_ms ASC"],
        vec!["name", "timestamp_ms ASC"],
        vec!["status"],
        vec!["tags.env"],
        vec![],
    ] {
        let full = ids(&search(&c, order(o.clone())).await);
        let mut paged = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10 {
            let mut b = order(o.clone());
            b["max_results"] = json!(1);
            if let Some(t) = &token {
                b["page_token"] = json!(t);
            }
            let r = search(&c, b).await;
            paged.extend(ids(&r));
            token = r.body["next_page_token"].as_str().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        assert_eq!(paged, full, "order {o:?}");
    }
    // A full last page has no token either (no extra empty round trip).
    let mut b = body(&exp, None);
    b["max_results"] = json!(5);
    let r = search(&c, b).await;
    assert_eq!(ids(&r).len(), 5);
    assert!(r.body.get("next_page_token").is_none(), "{}", r.text);

    let err = |r: crate::harness::Resp| {
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.body["error_code"], "INVALID_PARAMETER_VALUE",
            "{}",
            r.text
        );
        r.body["message"].as_str().unwrap().to_string()
    };
    let m = err(search(&c, body(&exp, Some("tags.env = prod"))).await);
    assert!(
        m.starts_with("Parameter value is either not quoted or unidentified quote types used for string value prod.")
            && m.contains("at character 11")
            && m.contains("'prod'"),
        "{m}"
    );
    let m = err(search(&c, body(&exp, Some("tags.env = 'x' AND (status = 'OK'"))).await);
    assert!(m.contains("at character 19"), "{m}");
    let m = err(search(&c, body(&exp, Some("trace.state = 'OK'"))).await);
    assert!(
        m.starts_with("Invalid attribute key 'state' specified."),
        "{m}"
    );
    let m = err(search(&c, body(&exp, Some("foo.bar = 'x'"))).await);
    assert!(m.starts_with("Invalid entity type 'foo'."), "{m}");
    let m = err(search(&c, body(&exp, Some("status IN (OK)"))).await);
    assert!(m.contains("ill-formed list"), "{m}");
    let m = err(search(&c, order(vec!["timestamp", "timestamp_ms DESC"])).await);
    assert!(m.starts_with("`order_by` contains duplicate fields"), "{m}");
    let mut b = body(&exp, None);
    b["max_results"] = json!(501);
    let m = err(search(&c, b).await);
    assert!(m.contains("max_results"), "{m}");
    let mut b = body(&exp, None);
    b["page_token"] = json!("not-a-token");
    let m = err(search(&c, b).await);
    assert!(m.starts_with("Invalid page token"), "{m}");
    let mut b = body(&exp, None);
    b["text"] = json!("!!!");
    let m = err(search(&c, b).await);
    assert!(m.contains("no searchable words"), "{m}");
}

#[tokio::test]
async fn full_text_words_phrases_prefixes_languages_and_deletion() {
    let s = Server::start();
    let c = s.client();
    let exp = create_experiment(&c, "fulltext").await;
    let [t1, t2, t3, t4, _] = seed(&c, &exp).await;
    assert_eq!(wait_for_text(&c, &exp, "shipping").await, vec![t4.clone()]);
    let text = |t: &str, filter: Option<&str>| {
        let mut b = body(&exp, filter);
        b["text"] = json!(t);
        b
    };
    let cases: Vec<(&str, Option<&str>, Vec<&String>)> = vec![
        ("refund", None, vec![&t1]),
        ("REFUND", None, vec![&t1]),
        ("\"refund policy\"", None, vec![&t1]),
        ("\"policy refund\"", None, vec![]),
        ("refu*", None, vec![&t1]),
        ("ship*", None, vec![&t4]),
        ("退款", None, vec![&t3]),
        ("退", None, vec![&t3]),
        ("versand", None, vec![&t2]),
        ("unreachable", None, vec![&t2]),
        ("refund shipping", None, vec![]),
        // Words may be in different spans of the trace.
        ("where 30 days", None, vec![&t1]),
        ("refund", Some("tags.env = 'dev'"), vec![]),
        ("chat", Some("status != 'OK'"), vec![&t2, &t4]),
    ];
    for (q, f, want) in cases {
        let got = sorted(ids(&search(&c, text(q, f)).await));
        assert_eq!(
            got,
            sorted(want.into_iter().cloned().collect()),
            "text {q} filter {f:?}"
        );
    }
    // Deleting a trace removes it from full-text results at once.
    let r = c
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            json!({"experiment_id": exp, "request_ids": [t1.clone()]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(ids(&search(&c, text("refund", None)).await).is_empty());
    assert!(ids(&search(&c, body(&exp, Some("trace.text LIKE '%refund%'"))).await).is_empty());
}

/// Documents in the index directory of a stopped server.
fn index_docs(dir: &std::path::Path) -> u64 {
    let (idx, _) = tracebox::index::SearchIndex::open(&dir.join("index")).unwrap();
    idx.num_docs()
}

#[tokio::test]
async fn index_is_rebuilt_after_deletion_corruption_and_reindex() {
    let mut s = Server::start();
    let c = s.client();
    let exp = create_experiment(&c, "rebuild").await;
    let [_, _, t3, t4, _] = seed(&c, &exp).await;
    assert_eq!(wait_for_text(&c, &exp, "shipping").await, vec![t4.clone()]);
    // Deleted traces leave tombstones that the indexer applies.
    let r = c
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            json!({"experiment_id": exp, "request_ids": [t4.clone()]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let dir = s.dir().to_path_buf();
    // Once the indexer has applied the tombstone, 6 of the 7 seeded spans
    // remain in the index: t4's span is gone.
    c.wait_for_index().await;
    s.kill9();
    assert_eq!(
        index_docs(&dir),
        6,
        "documents of the deleted trace are gone"
    );

    // A deleted index directory is rebuilt from SQLite at start-up.
    std::fs::remove_dir_all(dir.join("index")).unwrap();
    s.restart();
    let c = s.client();
    assert_eq!(wait_for_text(&c, &exp, "退款").await, vec![t3.clone()]);

    // So is a corrupt one.
    s.kill9();
    std::fs::write(dir.join("index").join("meta.json"), b"{ not json").unwrap();
    s.restart();
    let c = s.client();
    assert_eq!(wait_for_text(&c, &exp, "退款").await, vec![t3.clone()]);

    // `tracebox reindex` rebuilds on demand, with the server stopped.
    s.kill9();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .args(["reindex", "--data"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reindexed 6 spans"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(index_docs(&dir), 6);
    s.restart();
    let c = s.client();
    let mut b = body(&exp, None);
    b["text"] = json!("退款");
    assert_eq!(ids(&search(&c, b).await), vec![t3]);
}

#[tokio::test]
async fn crash_right_after_ingest_then_catch_up() {
    let mut s = Server::start();
    let c = s.client();
    let exp = create_experiment(&c, "crash").await;
    let mut want = Vec::new();
    for i in 0..40u8 {
        let (hex, id) = trace_hex(0x80 + i);
        let r = export_protobuf(
            &c,
            &hex,
            &[SpanSpec::root(1, "chat").inputs(json!({"q": format!("kiwi number {i}")}))],
            Some(&exp),
        )
        .await;
        assert_eq!(r.status, 200);
        want.push(id);
    }
    // SIGKILL immediately after the last 200: the index may not have seen
    // everything, SQLite has.
    s.kill9();
    s.restart();
    let c = s.client();
    let found = wait_for_text(&c, &exp, "kiwi").await;
    assert_eq!(sorted(found), sorted(want));
}

/// OTLP spans whose inputs/outputs came verbatim from an attribute
/// (OpenInference `input.value` / `output.value`) store the value once, in
/// `spans.inputs` / `outputs`, naming the attribute in `inputs_attr` /
/// `outputs_attr`. Filters on those attributes, and full-text search, must
/// still see the values.
#[tokio::test]
async fn attributes_stored_as_inputs_or_outputs_are_still_filterable() {
    let s = Server::start();
    let c = s.client();
    let exp = create_experiment(&c, "attrs-once").await;
    let question =
        json!({"messages": [{"role": "user", "content": "where is my parcel? it is late"}]});
    let answer = "Your parcel ships tomorrow from the warehouse in Lyon, sorry for the wait.";
    let (h1, t1) = trace_hex(0x61);
    let r = export_protobuf(
        &c,
        &h1,
        &[SpanSpec::root(1, "llm")
            .attr("openinference.span.kind", json!("LLM"))
            .attr("input.value", json!(question.to_string()))
            .attr("input.mime_type", json!("application/json"))
            .attr("output.value", json!(answer))
            .attr("llm.model_name", json!("gpt-x"))],
        Some(&exp),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A short output is not worth storing once: it stays an attribute.
    let (h2, t2) = trace_hex(0x62);
    let r = export_protobuf(
        &c,
        &h2,
        &[SpanSpec::root(1, "llm")
            .attr("openinference.span.kind", json!("LLM"))
            .attr("output.value", json!("short answer"))],
        Some(&exp),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The precondition this test is about: t1's values are stored once.
    {
        let db = rusqlite::Connection::open_with_flags(
            s.dir().join("tracebox.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let (attrs, ia, oa): (String, Option<String>, Option<String>) = db
            .query_row(
                "SELECT s.attributes, s.inputs_attr, s.outputs_attr FROM spans s
                 JOIN traces t ON t.id = s.trace WHERE t.trace_id = ?1",
                [&t1],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(ia.as_deref(), Some("input.value"));
        assert_eq!(oa.as_deref(), Some("output.value"));
        assert!(
            !attrs.contains("Lyon") && !attrs.contains("parcel"),
            "{attrs}"
        );
    }

    let cases: Vec<(String, Vec<&String>)> = vec![
        (
            format!("span.attributes.`output.value` = '{answer}'"),
            vec![&t1],
        ),
        (
            "span.attributes.`output.value` LIKE '%warehouse%'".into(),
            vec![&t1],
        ),
        (
            "span.attributes.`output.value` ILIKE '%LYON%'".into(),
            vec![&t1],
        ),
        (
            "span.attributes.`output.value` RLIKE 'ships? tomorrow'".into(),
            vec![&t1],
        ),
        (
            "span.attributes.`input.value` LIKE '%parcel%'".into(),
            vec![&t1],
        ),
        (
            "span.attributes.`output.value` = 'short answer'".into(),
            vec![&t2],
        ),
        (
            "span.attributes.`output.value` != 'short answer'".into(),
            vec![&t1],
        ),
        (
            "span.attributes.`output.value` IN ('short answer', 'other')".into(),
            vec![&t2],
        ),
        (
            "span.attributes.`llm.model_name` = 'gpt-x'".into(),
            vec![&t1],
        ),
        (
            "span.attributes.`output.value` LIKE '%Lyon%' AND span.name = 'llm'".into(),
            vec![&t1],
        ),
        // The same attribute name on a span that stored it normally.
        (
            "span.attributes.`input.value` LIKE '%short%'".into(),
            vec![],
        ),
    ];
    for (filter, want) in cases {
        let got = sorted(ids(&search(&c, body(&exp, Some(&filter))).await));
        assert_eq!(got, sorted(v(&want)), "{filter}");
    }

    // Full text sees the values too (the index reads inputs and outputs).
    assert_eq!(wait_for_text(&c, &exp, "Lyon").await, vec![t1.clone()]);
    assert_eq!(
        ids(&search(&c, body(&exp, Some("trace.text LIKE '%parcel%'"))).await),
        vec![t1.clone()]
    );

    // And the attributes read back as sent.
    let r = c
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={t1}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let attr = |k: &str| {
        r.body["trace"]["spans"][0]["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["key"] == k))
            .map(|a| a["value"].clone())
    };
    assert_eq!(attr("output.value"), Some(json!({"string_value": answer})));
    assert_eq!(
        attr("llm.model_name"),
        Some(json!({"string_value": "gpt-x"}))
    );
    assert!(attr("input.value").is_some(), "{}", r.text);
}
