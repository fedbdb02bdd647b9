//! The MLflow REST API against the real binary.

use serde_json::{Value, json};

use crate::harness::Server;
use crate::otlp_http::{SpanSpec, export_protobuf, trace_hex};

fn start_trace_body(trace_id: &str, exp: &str, tags: Value) -> Value {
    json!({"trace": {"trace_info": {
        "trace_id": trace_id,
        "client_request_id": "req-1",
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}},
        "request_time": "2026-11-25T16:59:37.382Z",
        "execution_duration": "0.022s",
        "state": "OK",
        "trace_metadata": {"mlflow.trace_schema.version": "3", "my.meta": "m1"},
        "tags": tags,
        "request_preview": "{\"q\": 1}",
        "response_preview": "ok"
    }}})
}

async fn count_traces(c: &crate::harness::Client, exp: &str) -> usize {
    let r = c
        .post(
            "/api/3.0/mlflow/traces/search",
            json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}}], "max_results": 500}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["traces"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn health_version_and_default_experiment() {
    let s = Server::start();
    let c = s.client();
    let h = c.get("/health").await;
    assert_eq!((h.status, h.text.as_str()), (200, "OK"));
    let v = c.get("/version").await;
    assert_eq!(v.status, 200);
    assert!(v.text.starts_with("3."), "{}", v.text);
    let e = c
        .get("/api/2.0/mlflow/experiments/get?experiment_id=0")
        .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.body["experiment"]["name"], "Default");
    assert_eq!(e.body["experiment"]["experiment_id"], "0");
}

#[tokio::test]
async fn experiments_create_get_search_and_errors() {
    let s = Server::start();
    let c = s.client();
    let missing = c
        .get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=prod-app")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .contains("prod-app")
    );

    let created = c
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "prod-app"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.body["experiment_id"].as_str().unwrap().to_string();
    assert_ne!(id, "0");
    let dup = c
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "prod-app"}),
        )
        .await;
    assert_eq!(dup.status, 400);
    assert_eq!(dup.body["error_code"], "RESOURCE_ALREADY_EXISTS");

    let by_name = c
        .get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=prod-app")
        .await;
    assert_eq!(by_name.body["experiment"]["experiment_id"], id.as_str());
    assert_eq!(
        by_name.body["experiment"]["artifact_location"],
        format!("mlflow-artifacts:/{id}")
    );

    let search = c
        .post(
            "/api/2.0/mlflow/experiments/search",
            json!({"max_results": 10, "filter": "name LIKE 'prod%'"}),
        )
        .await;
    assert_eq!(search.status, 200, "{}", search.text);
    let names: Vec<&str> = search.body["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["prod-app"]);

    let unknown = c
        .get("/api/2.0/mlflow/experiments/get?experiment_id=999")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn trace_info_and_spans_merge_in_either_order() {
    let s = Server::start();
    let c = s.client();
    let exp = "0";
    // Order 1: spans first, then info.
    let (hex1, id1) = trace_hex(1);
    let spans = vec![
        SpanSpec::root(1, "pipeline")
            .inputs(json!({"question": "q?"}))
            .outputs(json!("answer")),
        SpanSpec::child(2, 1, "retrieve")
            .span_type("RETRIEVER")
            .inputs(json!({"query": "q?"}))
            .attr("retriever.k", json!(2)),
    ];
    let r = export_protobuf(&c, &hex1, &spans, Some(exp)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let provisional = c.get(&format!("/api/3.0/mlflow/traces/{id1}")).await;
    assert_eq!(provisional.status, 200);
    assert_eq!(
        provisional.body["trace"]["trace_info"]["tags"]["mlflow.traceName"],
        "pipeline"
    );
    let r = c
        .post(
            "/api/3.0/mlflow/traces",
            start_trace_body(
                &id1,
                exp,
                json!({"mlflow.traceName": "pipeline", "environment": "production"}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["trace"]["trace_info"]["tags"]["mlflow.trace.spansLocation"],
        "TRACKING_STORE"
    );
    assert_eq!(
        r.body["trace"]["trace_info"]["trace_metadata"]["mlflow.trace.infoFinalized"],
        "true"
    );

    // Order 2: info first, then spans in two requests.
    let (hex2, id2) = trace_hex(2);
    let r = c
        .post(
            "/api/3.0/mlflow/traces",
            start_trace_body(&id2, exp, json!({"environment": "dev"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = export_protobuf(
        &c,
        &hex2,
        &[SpanSpec::child(4, 3, "llm").span_type("LLM")],
        Some(exp),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = export_protobuf(&c, &hex2, &[SpanSpec::root(3, "chat")], Some(exp)).await;
    assert_eq!(r.status, 200);

    for id in [&id1, &id2] {
        let t = c
            .get(&format!(
                "/api/3.0/mlflow/traces/get?trace_id={id}&allow_partial=False"
            ))
            .await;
        assert_eq!(t.status, 200, "{}", t.text);
        let spans = t.body["trace"]["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        assert!(spans[0].get("parent_span_id").is_none(), "root first");
        assert_eq!(t.body["trace"]["trace_info"]["state"], "OK");
        assert_eq!(t.body["trace"]["trace_info"]["client_request_id"], "req-1");
    }
    let t = c
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id1}"))
        .await;
    let child = &t.body["trace"]["spans"][1];
    let attrs: Vec<(String, Value)> = child["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
        .collect();
    let get = |k: &str| {
        attrs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("mlflow.spanType"),
        Some(json!({"string_value": "RETRIEVER"}))
    );
    assert_eq!(get("retriever.k"), Some(json!({"int_value": 2})));
    assert_eq!(
        get("mlflow.spanInputs"),
        Some(
            json!({"kvlist_value": {"values": [{"key": "query", "value": {"string_value": "q?"}}]}})
        )
    );

    // batchGet returns both, search by tag finds one.
    let b = c.get(&format!("/api/3.0/mlflow/traces/batchGet?trace_ids={id1}&trace_ids={id2}&trace_ids=tr-00000000000000000000000000000000")).await;
    assert_eq!(b.body["traces"].as_array().unwrap().len(), 2);
    let r = c
        .post(
            "/api/3.0/mlflow/traces/search",
            json!({
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}}],
        "filter": "tags.environment = 'production'"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found: Vec<&str> = r.body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec![id1.as_str()]);
}

#[tokio::test]
async fn tags_delete_and_not_found() {
    let s = Server::start();
    let c = s.client();
    let (hex, id) = trace_hex(7);
    export_protobuf(&c, &hex, &[SpanSpec::root(1, "t")], None).await;
    let r = c
        .send(
            "PATCH",
            &format!("/api/2.0/mlflow/traces/{id}/tags"),
            Some(json!({"key": "reviewed", "value": "yes"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let info = c.get(&format!("/api/3.0/mlflow/traces/{id}")).await;
    assert_eq!(info.body["trace"]["trace_info"]["tags"]["reviewed"], "yes");
    let r = c
        .send(
            "DELETE",
            &format!("/api/2.0/mlflow/traces/{id}/tags"),
            Some(json!({"key": "reviewed"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .send(
            "DELETE",
            &format!("/api/2.0/mlflow/traces/{id}/tags"),
            Some(json!({"key": "reviewed"})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let r = c
        .send(
            "PATCH",
            "/api/2.0/mlflow/traces/tr-0123456789abcdef0123456789abcdef/tags",
            Some(json!({"key": "a", "value": "b"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .get("/api/3.0/mlflow/traces/tr-0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error_code"], "RESOURCE_DOES_NOT_EXIST");

    let r = c
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            json!({"experiment_id": "0", "request_ids": [id]}),
        )
        .await;
    assert_eq!(r.body["traces_deleted"], 1);
    assert_eq!(count_traces(&c, "0").await, 0);
    let r = c
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            json!({"experiment_id": "0"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn delete_by_max_timestamp() {
    let s = Server::start();
    let c = s.client();
    for i in 0..5u8 {
        let (hex, _) = trace_hex(10 + i);
        export_protobuf(
            &c,
            &hex,
            &[SpanSpec::root(1, "t").start_ms(1_000 + i as i64 * 1000)],
            None,
        )
        .await;
    }
    let r = c
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            json!({"experiment_id": "0", "max_timestamp_millis": 3_000, "max_traces": 2}),
        )
        .await;
    assert_eq!(r.body["traces_deleted"], 2, "{}", r.text);
    assert_eq!(count_traces(&c, "0").await, 3);
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let s = Server::start_with(&["--max-body-bytes", "4096"]);
    let c = s.client();
    let r = c
        .post_raw(
            "/api/3.0/mlflow/traces",
            "application/json",
            b"{\"trace\": ".to_vec(),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("Malformed JSON"),
        "{}",
        r.text
    );

    // Unknown experiment in the trace location: 404, nothing stored.
    let r = c
        .post(
            "/api/3.0/mlflow/traces",
            start_trace_body("tr-0123456789abcdef0123456789abcdef", "42", json!({})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["error_code"], "RESOURCE_DOES_NOT_EXIST");

    // Over the body limit: 413 in MLflow's shape.
    let big = json!({"name": "x".repeat(10_000)});
    let r = c.post("/api/2.0/mlflow/experiments/create", big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.body["error_code"], "REQUEST_LIMIT_EXCEEDED");
    let (hex, _) = trace_hex(3);
    let spans: Vec<SpanSpec> = (0..100)
        .map(|i| SpanSpec::root(i + 1, &"n".repeat(100)))
        .collect();
    let r = export_protobuf(&c, &hex, &spans, None).await;
    assert_eq!(r.status, 413);

    // A span upload naming a missing experiment stores nothing.
    let r = export_protobuf(&c, &hex, &[SpanSpec::root(1, "t")], Some("77")).await;
    assert_eq!(r.status, 404);
    assert_eq!(count_traces(&c, "0").await, 0);
    let exps = c
        .post("/api/2.0/mlflow/experiments/search", json!({}))
        .await;
    assert_eq!(exps.body["experiments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn data_survives_restart_and_kill9() {
    let mut s = Server::start();
    let (hex, id) = trace_hex(9);
    {
        let c = s.client();
        c.post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "keep"}),
        )
        .await;
        let r = export_protobuf(&c, &hex, &[SpanSpec::root(1, "survivor")], None).await;
        assert_eq!(r.status, 200);
    }
    s.restart(); // SIGKILL, then start on the same directory
    let c = s.client();
    let t = c
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["trace"]["spans"][0]["name"], "survivor");
    let e = c
        .get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=keep")
        .await;
    assert_eq!(e.status, 200);
}

#[tokio::test]
async fn search_pages_without_duplicates_or_gaps() {
    let s = Server::start();
    let c = s.client();
    for i in 0..25u8 {
        let (hex, _) = trace_hex(100 + i);
        // Several traces share a timestamp, so the tie-breaker matters.
        export_protobuf(
            &c,
            &hex,
            &[SpanSpec::root(1, "t").start_ms(10_000 + (i / 3) as i64)],
            None,
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}], "max_results": 4});
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let r = c.post("/api/3.0/mlflow/traces/search", body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for t in r.body["traces"].as_array().unwrap() {
            seen.push(t["trace_id"].as_str().unwrap().to_string());
        }
        // New traces arriving mid-pagination must not shift pages.
        if seen.len() == 8 {
            let (hex, _) = trace_hex(250);
            export_protobuf(
                &c,
                &hex,
                &[SpanSpec::root(1, "late").start_ms(10_004)],
                None,
            )
            .await;
        }
        match r.body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "no duplicates");
    assert_eq!(seen.len(), 25, "no gaps and no late arrivals");
}
