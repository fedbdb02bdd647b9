//! Operations against the real binary: retention by age and by disk size
//! (oldest first, space reclaimed, shown in the status endpoint), backup of
//! a live server from a second process and restore, export (jsonl, csv,
//! filtered) and idempotent import.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Client, Server};
use crate::otlp_http::{SpanSpec, export_protobuf};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn tracebox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hexn(n: u64) -> (String, String) {
    let h = format!("{:032x}", 0x0b5_0000_0000_0000_0000u128 + n as u128);
    (h.clone(), format!("tr-{h}"))
}

async fn status(c: &Client) -> Value {
    let r = c.get("/api/tracebox/v1/status").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Waits for a retention pass that satisfies `done`.
async fn wait_for_run(c: &Client, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(c).await;
        let run = &s["retention"]["last_run"];
        if !run.is_null() && done(run) {
            return s;
        }
        assert!(Instant::now() < deadline, "no retention pass did it: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn exists(c: &Client, id: &str) -> bool {
    c.get(&format!("/api/3.0/mlflow/traces/{id}")).await.status == 200
}

#[tokio::test]
async fn retention_deletes_by_age_and_shows_it_in_the_status() {
    let s = Server::start_with(&["--retention-days", "30", "--retention-interval-secs", "1"]);
    let c = s.client();
    let day = 86_400_000;
    let mut old = Vec::new();
    let mut recent = Vec::new();
    for n in 0..6u64 {
        let (h, id) = hexn(n);
        let age = if n % 2 == 0 { 40 * day } else { day };
        let root = SpanSpec::root(1, "r").start_ms(now_ms() - age);
        let child = SpanSpec::child(2, 1, "c").start_ms(now_ms() - age);
        assert_eq!(
            export_protobuf(&c, &h, &[root, child], None).await.status,
            200
        );
        if n % 2 == 0 {
            old.push(id)
        } else {
            recent.push(id)
        }
    }
    // Dependent rows go with their trace.
    let r = c
        .post(
            &format!("/api/3.0/mlflow/traces/{}/assessments", old[0]),
            json!({"assessment": {"assessment_name": "q", "feedback": {"value": 1},
                   "source": {"source_type": "HUMAN", "source_id": "me"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let st = wait_for_run(&c, |r| r["deleted_by_age"].as_u64() >= Some(3)).await;
    assert_eq!(st["retention"]["retention_days"], 30);
    assert_eq!(st["retention"]["enabled"], true);
    assert!(st["retention"]["last_run"]["error"].is_null(), "{st}");
    for id in &old {
        assert!(!exists(&c, id).await, "{id} is older than 30 days");
    }
    for id in &recent {
        assert!(exists(&c, id).await, "{id} is recent");
    }
    assert_eq!(st["store"]["traces"], 3);
    let conn = rusqlite::Connection::open(s.dir().join("tracebox.db")).unwrap();
    let orphans: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM spans WHERE trace NOT IN (SELECT id FROM traces))
                  + (SELECT count(*) FROM assessments WHERE trace NOT IN (SELECT id FROM traces))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    let metrics = c.get("/metrics").await.text;
    assert!(
        metrics.contains("tracebox_retention_deleted_traces_total{reason=\"age\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn retention_keeps_the_directory_under_max_disk_oldest_first() {
    let s = Server::start_with(&[
        "--retention-days",
        "0",
        "--max-disk",
        "3M",
        "--retention-interval-secs",
        "1",
    ]);
    let c = s.client();
    let pad = "p".repeat(100 << 10);
    let n = 60u64;
    for i in 0..n {
        let (h, _) = hexn(1000 + i);
        let root = SpanSpec::root(1, "big")
            .attr("pad", json!(pad))
            .start_ms(now_ms() - (n - i) as i64 * 1000);
        let r = export_protobuf(&c, &h, &[root], None).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let st = wait_for_run(&c, |r| r["deleted_by_size"].as_u64() > Some(0)).await;
    let run = &st["retention"]["last_run"];
    assert!(run["error"].is_null(), "{st}");
    assert!(run["reclaimed_bytes"].as_u64().unwrap() > 1 << 20, "{st}");
    assert!(
        run["dir_bytes_after"].as_u64().unwrap() <= 3 << 20,
        "directory still over the limit: {st}"
    );
    // Oldest first: what is left is the newest, without gaps.
    let mut kept = Vec::new();
    for i in 0..n {
        kept.push(exists(&c, &hexn(1000 + i).1).await);
    }
    let first = kept.iter().position(|k| *k).expect("something is kept");
    assert!(first > 0, "nothing was deleted: {kept:?}");
    assert!(
        kept[first..].iter().all(|k| *k),
        "not oldest-first: {kept:?}"
    );
    assert_eq!(st["store"]["incremental_vacuum"], true);
}

#[tokio::test]
async fn backup_of_a_live_server_and_restore() {
    let mut s = Server::start_with(&["--retention-days", "0"]);
    let c = s.client();
    let mut before = Vec::new();
    for n in 0..50u64 {
        let (h, id) = hexn(2000 + n);
        let spans = [SpanSpec::root(1, "b"), SpanSpec::child(2, 1, "c")];
        assert_eq!(export_protobuf(&c, &h, &spans, None).await.status, 200);
        before.push(id);
    }
    // Keep writing while the backup runs in another process.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, base) = (stop.clone(), written.clone(), s.url.clone());
        tokio::spawn(async move {
            let c = Client {
                base,
                http: reqwest::Client::new(),
            };
            let mut n = 10_000u64;
            while !stop.load(Ordering::Relaxed) {
                let (h, _) = hexn(n);
                if export_protobuf(&c, &h, &[SpanSpec::root(1, "live")], None)
                    .await
                    .status
                    == 200
                {
                    written.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let backup_dir = tempfile::tempdir().unwrap();
    let file = backup_dir.path().join("tb.backup");
    let data = s.dir().to_str().unwrap().to_string();
    let out = tracebox(&["backup", file.to_str().unwrap(), "--data", &data]);
    let said = ok(&out);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(said.contains("backed up"), "{said}");
    assert!(
        written.load(Ordering::Relaxed) > 0,
        "no write happened during the backup"
    );
    assert!(!file.with_extension("backup-wal").exists());
    // A second backup to the same file needs --force.
    let again = tracebox(&["backup", file.to_str().unwrap(), "--data", &data]);
    assert!(!again.status.success());

    // The backup is a sound, self-contained database.
    let conn = rusqlite::Connection::open(&file).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let in_backup: i64 = conn
        .query_row("SELECT count(*) FROM traces", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    assert!(in_backup >= 50);

    // Restore refuses while the server runs…
    let out = tracebox(&["restore", file.to_str().unwrap(), "--data", &data]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );
    // …and a file that is not a tracebox database.
    let junk = backup_dir.path().join("junk");
    std::fs::write(&junk, b"not a database at all").unwrap();
    s.kill9();
    let out = tracebox(&["restore", junk.to_str().unwrap(), "--data", &data]);
    assert!(!out.status.success());

    // After the server stops: restore, with the derived index dropped.
    std::fs::create_dir_all(Path::new(&data).join("index")).unwrap();
    let said = ok(&tracebox(&[
        "restore",
        file.to_str().unwrap(),
        "--data",
        &data,
    ]));
    assert!(said.contains("restored"), "{said}");
    assert!(!Path::new(&data).join("index").exists());
    let kept = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("before-restore"));
    assert!(kept, "the previous database should be kept");
    let s2 = Server::start_in(Path::new(&data), &["--retention-days", "0"]);
    let c2 = s2.client();
    assert_eq!(
        status(&c2).await["store"]["traces"].as_i64(),
        Some(in_backup)
    );
    for id in &before {
        let r = c2
            .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["trace"]["spans"].as_array().unwrap().len(), 2);
    }
}

/// A trace's info and spans, without what legitimately differs between
/// two stores (internal ordering of JSON maps is already stable).
async fn trace_json(c: &Client, id: &str) -> Value {
    let r = c
        .get(&format!("/api/3.0/mlflow/traces/get?trace_id={id}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut t = r.body["trace"].clone();
    // Import always goes through StartTraceV3, which marks the info as
    // client-sent.
    if let Some(md) = t["trace_info"]["trace_metadata"].as_object_mut() {
        md.remove("mlflow.trace.infoFinalized");
    }
    // Attributes are a map; their order carries no meaning.
    for span in t["spans"].as_array_mut().into_iter().flatten() {
        if let Some(attrs) = span["attributes"].as_array_mut() {
            attrs.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
        }
    }
    t
}

#[tokio::test]
async fn export_and_import_round_trip_idempotently() {
    let a = Server::start_with(&["--retention-days", "0"]);
    let c = a.client();
    let exp = c
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "shop"}),
        )
        .await
        .body["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ids = Vec::new();
    for n in 0..12u64 {
        let (h, id) = hexn(3000 + n);
        let env = if n % 3 == 0 { "prod" } else { "dev" };
        let spans = [
            SpanSpec::root(1, "agent")
                .span_type("AGENT")
                .inputs(json!({"q": format!("question {n}")}))
                .outputs(json!("answer"))
                .attr("mlflow.traceTag.env", json!(env))
                .start_ms(now_ms() - 1000 * (12 - n as i64)),
            SpanSpec::child(2, 1, "llm")
                .span_type("LLM")
                .attr("gen_ai.usage.input_tokens", json!(10 + n))
                .attr("gen_ai.usage.output_tokens", json!(5))
                .attr("nested", json!({"a": [1, 2, {"b": null}]})),
            SpanSpec::child(3, 2, "tool").error("boom"),
        ];
        let r = export_protobuf(&c, &h, &spans, Some(&exp)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if n % 2 == 0 {
            let r = c
                .post(
                    "/api/3.0/mlflow/traces",
                    json!({"trace": {"trace_info": {
                        "trace_id": id, "client_request_id": format!("req-{n}"),
                        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}},
                        "request_time": "2026-11-25T16:59:37.382Z", "execution_duration": "1.5s",
                        "state": "OK", "trace_metadata": {"mlflow.trace.session": "s1", "mlflow.trace.user": "u1"},
                        "tags": {"env": env, "mlflow.traceName": "agent"},
                        "request_preview": "{\"q\": 1}", "response_preview": "answer"}}}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            let fb = c
                .post(
                    &format!("/api/3.0/mlflow/traces/{id}/assessments"),
                    json!({"assessment": {"assessment_name": "correct", "feedback": {"value": true},
                           "rationale": "ok", "source": {"source_type": "LLM_JUDGE", "source_id": "judge"}}}),
                )
                .await;
            assert_eq!(fb.status, 200, "{}", fb.text);
            let ex = c
                .post(
                    &format!("/api/3.0/mlflow/traces/{id}/assessments"),
                    json!({"assessment": {"assessment_name": "expected", "expectation": {"value": {"k": [1]}},
                           "source": {"source_type": "HUMAN", "source_id": "me"}}}),
                )
                .await;
            assert_eq!(ex.status, 200, "{}", ex.text);
            let aid = fb.body["assessment"]["assessment_id"].as_str().unwrap();
            let over = c
                .post(
                    &format!("/api/3.0/mlflow/traces/{id}/assessments"),
                    json!({"assessment": {"assessment_name": "correct", "feedback": {"value": false},
                           "overrides": aid, "source": {"source_type": "HUMAN", "source_id": "me"}}}),
                )
                .await;
            assert_eq!(over.status, 200, "{}", over.text);
        }
        ids.push(id);
    }
    let work = tempfile::tempdir().unwrap();
    let jsonl = work.path().join("all.jsonl");
    let data_a = a.dir().to_str().unwrap().to_string();

    // Export from the live server's directory.
    ok(&tracebox(&[
        "export",
        "--data",
        &data_a,
        "--format",
        "jsonl",
        "-o",
        jsonl.to_str().unwrap(),
    ]));
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(lines.lines().count(), 12);
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(
        first["info"]["trace_id"].is_string() && first["data"]["spans"].is_array(),
        "{first}"
    );

    let csv = ok(&tracebox(&["export", "--data", &data_a, "--format", "csv"]));
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .unwrap()
            .starts_with("trace_id,experiment_id,request_time,state")
    );
    assert_eq!(rows.count(), 12);

    let prod = ok(&tracebox(&[
        "export",
        "--data",
        &data_a,
        "--experiment",
        &exp,
        "--filter",
        "tags.env = 'prod'",
    ]));
    assert_eq!(prod.lines().count(), 4);
    let bad = tracebox(&["export", "--data", &data_a, "--filter", "tags.env = "]);
    assert!(!bad.status.success());

    // Import into a fresh directory (no server running there), twice.
    let b_dir = tempfile::tempdir().unwrap();
    let data_b = b_dir.path().to_str().unwrap().to_string();
    let missing = tracebox(&["import", jsonl.to_str().unwrap(), "--data", &data_b]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("--experiment"),
        "{missing:?}"
    );
    let import = || {
        ok(&tracebox(&[
            "import",
            jsonl.to_str().unwrap(),
            "--data",
            &data_b,
            "--experiment",
            "0",
        ]))
    };
    import();
    import();
    let b = Server::start_in(b_dir.path(), &["--retention-days", "0"]);
    let cb = b.client();
    // A running server owns its directory.
    let busy = tracebox(&[
        "import",
        jsonl.to_str().unwrap(),
        "--data",
        &data_b,
        "--experiment",
        "0",
    ]);
    assert!(!busy.status.success());
    assert_eq!(status(&cb).await["store"]["traces"], 12);
    for id in &ids {
        let mut want = trace_json(&c, id).await;
        let got = trace_json(&cb, id).await;
        // Imported into experiment 0.
        want["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] = json!("0");
        if let Some(t) = want["trace_info"]["tags"].as_object_mut()
            && let Some(loc) = t.get_mut("mlflow.artifactLocation")
        {
            *loc = json!(loc.as_str().unwrap().replace(&format!("/{exp}/"), "/0/"));
        }
        assert_eq!(got["spans"], want["spans"], "spans of {id}");
        assert_eq!(got["trace_info"], want["trace_info"], "info of {id}");
    }
}
