//! `--log-format json`: every line the server writes to stderr, from
//! start-up to shutdown and including a fatal start-up error, is one JSON
//! object; failed requests are logged with the request id that the
//! response carries in `x-request-id` (the client's own id is kept).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn spawn(dir: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tracebox"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--port",
            "0",
            "--otlp-grpc-port",
            "0",
            "--data",
        ])
        .arg(dir)
        .env(
            "RUST_LOG",
            "debug,hyper=warn,h2=warn,tower=warn,reqwest=warn",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn all_json(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn json_logs_cover_every_line_and_name_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(dir.path());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("tracebox listening on ")
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();

    let ok = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let bad = http
        .post(format!("{url}/v1/traces"))
        .header("content-type", "application/json")
        .body("{\"resourceSpans\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad_id = bad.headers()["x-request-id"].to_str().unwrap().to_string();
    let mine = http
        .get(format!("{url}/api/3.0/mlflow/traces/tr-0123"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 404);
    assert_eq!(mine.headers()["x-request-id"], "client-chosen-42");
    let search = http
        .post(format!("{url}/api/3.0/mlflow/traces/search"))
        .json(&json!({"filter": "nonsense ==="}))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 400);

    // A second server on the same directory fails at start-up: its fatal
    // error is a JSON line too.
    let second = spawn(dir.path()).wait_with_output().unwrap();
    assert!(!second.status.success());
    let fatal = all_json(&String::from_utf8_lossy(&second.stderr));
    let last = fatal.last().expect("a fatal log line");
    assert_eq!(last["level"], "ERROR");
    assert!(last["error"].as_str().unwrap().contains("in use"), "{last}");

    // Graceful shutdown, then read everything the first server wrote.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let lines = all_json(&err);
    assert!(lines.len() >= 5, "{err}");
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
    let find = |pred: &dyn Fn(&Value) -> bool| lines.iter().find(|l| pred(l)).cloned();
    let rejected = find(&|l| l["span"]["request_id"] == bad_id.as_str() && l["status"] == 400)
        .unwrap_or_else(|| panic!("no log line for request {bad_id}: {err}"));
    assert_eq!(rejected["reason"], "bad_request");
    assert!(
        rejected["error"].as_str().unwrap().contains("OTLP/JSON"),
        "{rejected}"
    );
    assert_eq!(rejected["span"]["path"], "/v1/traces");
    assert!(
        find(&|l| l["span"]["request_id"] == "client-chosen-42" && l["status"] == 404).is_some(),
        "{err}"
    );
    assert!(find(&|l| l["message"] == "ready").is_some(), "{err}");
    assert!(
        find(&|l| l["message"] == "shutting down").is_some(),
        "{err}"
    );
}
