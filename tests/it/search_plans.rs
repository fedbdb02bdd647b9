//! The query engine in-process over generated production-like data:
//! SQLite's plans for the common filters use indexes (no full scans), the
//! drive-or-walk choice follows selectivity, and `QueryEngine::matches`
//! agrees with `search` on every filter form.

use std::collections::BTreeSet;

use tracebox::index::SearchIndex;
use tracebox::query::{QueryEngine, SearchRequest};
use tracebox::store::{Store, StoreOptions};

struct Data {
    _dir: tempfile::TempDir,
    engine: QueryEngine,
    exp: i64,
}

fn data(n: usize) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let exp = tracebox::bench::search::experiment_id(&store).unwrap();
    tracebox::bench::search::generate(&store, exp, 0, n, 7).unwrap();
    let (index, _) = SearchIndex::open(&dir.path().join("index")).unwrap();
    index.open_writer().unwrap();
    tracebox::index::indexer::catch_up(&index, &store, None).unwrap();
    Data {
        engine: QueryEngine::with_index(store, index),
        exp,
        _dir: dir,
    }
}

fn req(d: &Data, filter: &str) -> SearchRequest {
    SearchRequest {
        experiment_ids: vec![d.exp],
        filter: (!filter.is_empty()).then(|| filter.to_string()),
        max_results: 100,
        ..SearchRequest::default()
    }
}

/// A plan step that reads a whole table rather than an index range.
fn full_scans(plan: &[String]) -> Vec<&String> {
    plan.iter()
        .filter(|l| l.starts_with("SCAN ") && !l.contains(" USING ") && !l.contains("json_each"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_filters_use_indexes_and_matches_agrees_with_search() {
    // Generation uses the store's blocking API: keep it off the runtime.
    let d = tokio::task::spawn_blocking(|| data(2_000)).await.unwrap();
    let e = &d.engine;
    for (filter, must_use) in [
        ("tags.`mlflow.trace.user` = 'user-0001'", None),
        (
            "metadata.`mlflow.trace.user` = 'user-0001'",
            Some("trace_metadata_kv"),
        ),
        (
            "metadata.`mlflow.trace.session` = 'session-00001'",
            Some("traces_session"),
        ),
        ("tags.environment = 'production'", Some("traces_exp_time")),
        (
            "tags.environment = 'staging' AND tags.region = 'eu-west-1'",
            None,
        ),
        (
            "trace.timestamp_ms > 0 AND trace.timestamp_ms < 99999999999999",
            Some("traces_exp_time"),
        ),
        ("trace.status = 'ERROR'", Some("traces_exp_state")),
        ("name = 'chat_handler'", Some("traces_exp_name")),
        ("", Some("traces_exp_time")),
    ] {
        let (sql, plan) = e.explain(req(&d, filter)).await.unwrap();
        assert!(
            full_scans(&plan).is_empty(),
            "full scan for {filter:?}:\n{}\n{plan:#?}",
            sql.text
        );
        if let Some(idx) = must_use {
            assert!(
                plan.iter().any(|l| l.contains(idx)),
                "{filter:?} should use {idx}:\n{plan:#?}"
            );
        }
    }
    // Ordering by execution time walks its index instead of sorting all
    // rows; so do the UI's column sorts in the direction of a first click
    // (ascending: NULLs last, searched as the non-NULL rows first).
    for (order, idx) in [
        ("execution_time_ms DESC", "traces_exp_exec"),
        ("execution_time_ms ASC", "traces_exp_exec"),
        ("name ASC", "traces_exp_name"),
        ("status ASC", "traces_exp_state"),
        ("status DESC", "traces_exp_state"),
        ("name DESC", "traces_exp_name"),
    ] {
        let (sql, plan) = e
            .explain(SearchRequest {
                order_by: vec![order.into()],
                ..req(&d, "")
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains(idx))
                && !plan.iter().any(|l| l.contains("TEMP B-TREE FOR ORDER BY")),
            "{order} should walk {idx}:\n{}\n{plan:#?}",
            sql.text
        );
    }
    // A selective equality drives the query from its (key, value) index; a
    // common one walks traces in time order.
    let (_, rare) = e
        .explain(req(
            &d,
            "tags.deployment_id = 'dep-3' AND tags.region = 'ap-south-1'",
        ))
        .await
        .unwrap();
    assert!(rare[0].contains("trace_tags"), "{rare:#?}");
    let (_, common) = e
        .explain(req(&d, "tags.environment = 'production'"))
        .await
        .unwrap();
    assert!(common[0].contains("traces_exp_time"), "{common:#?}");

    // Snippets for a page of full-text results highlight what matched.
    let page = e
        .search(SearchRequest {
            text: Some("\"refund policy\"".into()),
            ..req(&d, "")
        })
        .await
        .unwrap();
    assert!(!page.rows.is_empty());
    let snips = e
        .snippets(page.rows.clone(), "\"refund policy\"".into())
        .await
        .unwrap();
    for row in &page.rows {
        let list = snips.get(row).expect("every hit has a snippet");
        assert!(list.len() <= tracebox::query::SNIPPETS_PER_TRACE);
        for s in list {
            assert!(!s.highlights.is_empty(), "{s:?}");
            for (a, b) in &s.highlights {
                assert_eq!(s.fragment[*a..*b].to_lowercase(), "refund policy", "{s:?}");
            }
        }
    }

    // `matches` (judge sampling) means what `search` means.
    let all: Vec<i64> = e.search(req(&d, "")).await.unwrap().rows;
    let all = {
        // Every trace, through pages.
        let mut rows = all;
        let mut token = None;
        loop {
            let p = e
                .search(SearchRequest {
                    max_results: 500,
                    page_token: token,
                    ..req(&d, "")
                })
                .await
                .unwrap();
            rows.extend(p.rows);
            token = p.next_page_token;
            if token.is_none() {
                break;
            }
        }
        rows.into_iter().collect::<BTreeSet<i64>>()
    };
    assert_eq!(all.len(), 2_000);
    let sample: Vec<i64> = all.iter().copied().step_by(97).collect();
    for filter in [
        "tags.environment = 'production'",
        "tags.environment != 'production' AND trace.status = 'OK'",
        "metadata.`mlflow.trace.user` LIKE 'user-00%'",
        "trace.execution_time_ms > 1500",
        "span.type = 'TOOL' AND span.status = 'ERROR'",
        "span.name = 'ChatOpenAI' AND trace.text LIKE '%refund%'",
        "trace.text LIKE '%refund policy%'",
        "tags.region = 'eu-west-1' OR (tags.region = 'us-east-1' AND trace.text ILIKE '%shipping%')",
        "span.attributes.`llm.temperature` = '0.2' AND trace.status = 'ERROR'",
        // Stored once, as the tool span's inputs/outputs (inputs_attr).
        "span.attributes.`output.value` LIKE '%\"shipped\"%' AND tags.region = 'eu-west-1'",
        "span.attributes.`input.value` LIKE '%ord-0%' AND span.type = 'TOOL'",
    ] {
        let mut found = BTreeSet::new();
        let mut token = None;
        loop {
            let p = e
                .search(SearchRequest {
                    max_results: 500,
                    page_token: token,
                    ..req(&d, filter)
                })
                .await
                .unwrap();
            found.extend(p.rows);
            token = p.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert!(
            !found.is_empty() && found.len() < 2_000,
            "{filter}: {}",
            found.len()
        );
        for row in &sample {
            let m = e.matches(*row, filter).await.unwrap();
            assert_eq!(m, found.contains(row), "trace row {row}, filter {filter}");
        }
    }
}
