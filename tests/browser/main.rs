//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` + `chromium-driver`) against the real binary, with
//! test data sent through the real OTLP/HTTP endpoint. Screenshots of every
//! page land in `target/screenshots/` for a human to look at.
//!
//! Skips (passing, with a message) when `chromedriver` or `chromium` is not
//! installed, so `cargo nextest run` works on machines without a browser.

#[path = "../it/fake_llm.rs"]
mod fake_llm;
#[path = "../it/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};

use harness::Server;

const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(15);

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver(bin: &Path) -> Driver {
    let port = harness::free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, profile: &Path, dark: bool) -> Client {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--hide-scrollbars".into(),
        "--window-size=1440,900".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if dark {
        args.push("--force-dark-mode".into());
        args.push("--blink-settings=preferredColorScheme=0".into());
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": CHROMIUM, "args": args}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClientBuilder::rustls()
            .expect("rustls client")
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a browser session: {e}"),
        }
    }
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

/// A full-page screenshot: the window grows to the document's height first.
async fn full_shot(c: &Client, name: &str) {
    js(c, "window.scrollTo(0, 0); return 1").await;
    // The window includes browser chrome the viewport does not.
    let chrome = js(c, "return window.outerHeight - window.innerHeight")
        .await
        .as_u64()
        .unwrap_or(0);
    let h = c
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(900)
        .clamp(900, 4000)
        + chrome;
    c.set_window_size(1440, h as u32).await.expect("resize");
    shot(c, name).await;
    c.set_window_size(1440, 900).await.expect("resize back");
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn url_of(c: &Client) -> String {
    c.current_url().await.expect("url").to_string()
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script")
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css))
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
}

/// Clicks a form's submit button and waits for the page the post leads to
/// (an element found before the new page replaced the old one goes stale,
/// and the old page may show the same notice).
async fn submit(c: &Client, button: &str, what: &str) {
    js(
        c,
        "document.documentElement.dataset.before = '1'; return null;",
    )
    .await;
    find(c, button).await.click().await.expect(what);
    wait_until(&format!("the page after {what}"), || async move {
        c.execute(
            "return document.readyState === 'complete' && !document.documentElement.dataset.before;",
            vec![],
        )
        .await
        .is_ok_and(|v| v == json!(true))
    })
    .await;
}

/// Fails if a JavaScript dialog is open (what an XSS payload would open).
async fn assert_no_alert(c: &Client, context: &str) {
    if let Ok(text) = c.get_alert_text().await {
        panic!("{context}: a dialog opened with {text:?}: injected script ran");
    }
}

// ---------------------------------------------------------------- test data

fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) if n.is_i64() => any_value::Value::IntValue(n.as_i64().unwrap_or(0)),
        Value::Number(n) => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        other => any_value::Value::StringValue(other.to_string()),
    };
    AnyValue { value: Some(value) }
}

struct S {
    id: u8,
    parent: Option<u8>,
    name: &'static str,
    start_ms: i64,
    dur_ms: i64,
    attrs: Vec<(&'static str, Value)>,
    error: Option<&'static str>,
    exception: Option<(&'static str, &'static str, &'static str)>,
}

fn span(id: u8, parent: Option<u8>, name: &'static str, start_ms: i64, dur_ms: i64) -> S {
    S {
        id,
        parent,
        name,
        start_ms,
        dur_ms,
        attrs: vec![],
        error: None,
        exception: None,
    }
}

impl S {
    fn attr(mut self, k: &'static str, v: Value) -> Self {
        self.attrs.push((k, v));
        self
    }
    fn kind(self, t: &str) -> Self {
        self.attr("mlflow.spanType", json!(t))
    }
    fn io(self, i: Value, o: Value) -> Self {
        self.attr("mlflow.spanInputs", json!(i.to_string()))
            .attr("mlflow.spanOutputs", json!(o.to_string()))
    }
    fn fail(mut self, msg: &'static str, ty: &'static str, stack: &'static str) -> Self {
        self.error = Some(msg);
        self.exception = Some((ty, msg, stack));
        self
    }
    fn proto(&self, trace: &[u8]) -> Span {
        let start = self.start_ms as u64 * 1_000_000;
        let kv = |k: &str, v: Value| KeyValue {
            key: k.to_string(),
            value: Some(any(&v)),
            ..Default::default()
        };
        Span {
            trace_id: trace.to_vec(),
            span_id: vec![self.id; 8],
            parent_span_id: self.parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: self.name.to_string(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + self.dur_ms as u64 * 1_000_000,
            attributes: self.attrs.iter().map(|(k, v)| kv(k, v.clone())).collect(),
            events: self
                .exception
                .iter()
                .map(|(ty, msg, st)| Event {
                    name: "exception".into(),
                    time_unix_nano: start + self.dur_ms as u64 * 1_000_000,
                    attributes: vec![
                        kv("exception.type", json!(ty)),
                        kv("exception.message", json!(msg)),
                        kv("exception.stacktrace", json!(st)),
                    ],
                    ..Default::default()
                })
                .collect(),
            status: Some(Status {
                code: if self.error.is_some() { 2 } else { 1 },
                message: self.error.unwrap_or_default().to_string(),
            }),
            ..Default::default()
        }
    }
}

fn trace_bytes(seed: u32) -> Vec<u8> {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&seed.to_be_bytes());
    b[4..].copy_from_slice(&[0xab; 12]);
    b.to_vec()
}

async fn send(s: &Server, exp: &str, token: Option<&str>, traces: Vec<(u32, Vec<S>)>) {
    let req = ExportTraceServiceRequest {
        resource_spans: traces
            .iter()
            .map(|(seed, spans)| ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: spans
                        .iter()
                        .map(|sp| sp.proto(&trace_bytes(*seed)))
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/traces", s.url))
        .header("content-type", "application/x-protobuf")
        .header("x-mlflow-experiment-id", exp);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    let resp = r.body(req.encode_to_vec()).send().await.expect("export");
    assert_eq!(resp.status().as_u16(), 200);
}

fn tid(seed: u32) -> String {
    format!("tr-{}", hex::encode(trace_bytes(seed)))
}

const QUESTIONS: &[&str] = &[
    "How do I reset my password?",
    "Can I get a refund for order 4521?",
    "Do you ship to Norway?",
    "What are your opening hours on Sunday?",
    "Is the blue jacket available in size M?",
];

/// A support agent's traces: retrieval, a chat model with a tool call, a
/// tool that sometimes fails with a stack trace.
fn agent_trace(i: u32, t0: i64) -> Vec<S> {
    let q = QUESTIONS[i as usize % QUESTIONS.len()];
    let user = ["alice", "bob", "carol"][i as usize % 3];
    let fails = i % 7 == 3;
    let dur = 400 + (i as i64 * 37) % 900;
    let mut spans = vec![
        span(1, None, "support_agent", t0, dur)
            .kind("AGENT")
            .io(json!({"question": q}), json!(format!("Here is what I found about: {q}")))
            .attr("user.id", json!(user))
            .attr("session.id", json!(format!("s-{user}-{}", i / 4)))
            .attr("mlflow.traceTag.env", json!(if i.is_multiple_of(2) { "prod" } else { "staging" })),
        span(2, Some(1), "retrieve_docs", t0 + 5, 40)
            .kind("RETRIEVER")
            .io(json!({"query": q}), json!([{"page_content": "Refunds take 14 days.", "metadata": {"source": "kb/refunds.md"}}])),
        span(3, Some(1), "ChatOpenAI", t0 + 50, dur - 120)
            .kind("CHAT_MODEL")
            .io(
                json!({"model": "gpt-4o-mini", "messages": [
                    {"role": "system", "content": "You are a helpful support agent."},
                    {"role": "user", "content": q}]}),
                json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order_id\": \"4521\"}"}}]}}]}),
            )
            .attr("mlflow.chat.tokenUsage", json!({"input_tokens": 320 + i, "output_tokens": 40 + i, "total_tokens": 360 + 2 * i}))
            .attr("mlflow.llm.model", json!("gpt-4o-mini")),
    ];
    let tool = span(4, Some(1), "lookup_order", t0 + dur - 60, 50)
        .kind("TOOL")
        .io(json!({"order_id": "4521"}), json!({"status": "delivered"}));
    spans.push(if fails {
        tool.fail(
            "orders-service timed out after 2s",
            "TimeoutError",
            "Traceback (most recent call last):\n  File \"agent.py\", line 42, in lookup_order\n    resp = client.get(url, timeout=2)\nTimeoutError: orders-service timed out after 2s",
        )
    } else {
        tool
    });
    if fails {
        spans[0].error = Some("TimeoutError: orders-service timed out after 2s");
    }
    spans
}

/// Dana's support conversation: five chat turns, the third of which fails.
const CONVERSATION: &[(&str, Option<&str>)] = &[
    (
        "Hi! My order 4521 hasn't arrived yet.",
        Some(
            "Sorry to hear that. Order 4521 shipped on Monday with DHL and should arrive by Thursday.",
        ),
    ),
    (
        "It's Friday and there is still nothing.",
        Some(
            "I've checked with the carrier: the parcel is stuck at the Oslo depot. I can send a replacement or refund you.",
        ),
    ),
    ("A refund, please.", None),
    (
        "Hello? Did the refund go through?",
        Some(
            "Apologies for the hiccup. I've issued a full refund of 89.00 EUR for order 4521; you'll see it within 3-5 business days.",
        ),
    ),
    (
        "Great, thanks for sorting it out.",
        Some("You're welcome, Dana! Anything else I can help with?"),
    ),
];

fn conversation_turn(k: usize, t0: i64) -> Vec<S> {
    let (q, a) = CONVERSATION[k];
    let mut history =
        vec![json!({"role": "system", "content": "You are the support agent of a web shop."})];
    for (pq, pa) in &CONVERSATION[..k] {
        history.push(json!({"role": "user", "content": pq}));
        if let Some(pa) = pa {
            history.push(json!({"role": "assistant", "content": pa}));
        }
    }
    history.push(json!({"role": "user", "content": q}));
    let dur = 900 + 130 * k as i64;
    let input = json!({"messages": history});
    let mut root = span(1, None, "support_chat", t0, dur)
        .kind("AGENT")
        .attr("mlflow.spanInputs", json!(input.to_string()))
        .attr("user.id", json!("dana"))
        .attr("session.id", json!("conv-4521"))
        .attr(
            "mlflow.chat.tokenUsage",
            json!({"input_tokens": 180 + 60 * k, "output_tokens": 40 + 5 * k, "total_tokens": 220 + 65 * k}),
        );
    let mut llm = span(2, Some(1), "ChatOpenAI", t0 + 20, dur - 60)
        .kind("CHAT_MODEL")
        .attr("mlflow.spanInputs", json!(input.to_string()));
    match a {
        Some(a) => {
            let out =
                json!({"choices": [{"message": {"role": "assistant", "content": a}}]}).to_string();
            root = root.attr("mlflow.spanOutputs", json!(out.clone()));
            llm = llm.attr("mlflow.spanOutputs", json!(out));
        }
        None => {
            root.error = Some("RateLimitError: model overloaded");
            llm = llm.fail(
                "RateLimitError: model overloaded",
                "RateLimitError",
                "Traceback (most recent call last):\n  File \"agent.py\", line 88, in reply\nopenai.RateLimitError: model overloaded",
            );
        }
    }
    vec![root, llm]
}

/// Logs an assessment through MLflow's REST API, as the SDK would.
async fn log_assessment(s: &Server, trace_id: &str, a: Value) {
    let mut a = a;
    a["trace_id"] = json!(trace_id);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/3.0/mlflow/traces/{trace_id}/assessments",
            s.url
        ))
        .json(&json!({"assessment": a}))
        .send()
        .await
        .expect("log assessment");
    assert_eq!(r.status().as_u16(), 200);
}

/// Sends the conversation and what judges and the user thought of it.
async fn send_conversation(s: &Server, exp: &str) {
    let t0 = now_ms() - 10 * 60_000;
    let traces: Vec<(u32, Vec<S>)> = (0..CONVERSATION.len())
        .map(|k| (500 + k as u32, conversation_turn(k, t0 + k as i64 * 95_000)))
        .collect();
    send(s, exp, None, traces).await;
    for (k, (_, reply)) in CONVERSATION.iter().enumerate() {
        if reply.is_none() {
            continue;
        }
        let relevant = k != 1;
        log_assessment(
            s,
            &tid(500 + k as u32),
            json!({"assessment_name": "relevance", "source": {"source_type": "LLM_JUDGE", "source_id": "gpt-4o-mini"},
                   "feedback": {"value": if relevant { "yes" } else { "no" }},
                   "rationale": if relevant { "The reply addresses the question." } else { "The reply offers options instead of answering." }}),
        )
        .await;
    }
    log_assessment(
        s,
        &tid(504),
        json!({"assessment_name": "user_satisfaction", "source": {"source_type": "HUMAN", "source_id": "dana"},
               "feedback": {"value": true}}),
    )
    .await;
    // Session-level, MLflow's way: on the first turn, marked with the session.
    log_assessment(
        s,
        &tid(500),
        json!({"assessment_name": "conversation_completeness", "source": {"source_type": "LLM_JUDGE", "source_id": "gpt-4o-mini"},
               "feedback": {"value": "yes"}, "metadata": {"mlflow.trace.session": "conv-4521"},
               "rationale": "Every request of the user was eventually handled: the refund was issued after one failed turn."}),
    )
    .await;
}

fn xss_trace(t0: i64) -> Vec<S> {
    vec![
        span(1, None, "<script>alert('span-name')</script>", t0, 20)
            .io(
                json!({"question": "\"><img src=x onerror=alert('inputs')>", "link": "javascript:alert('url')"}),
                json!("<iframe src=\"javascript:alert('outputs')\"></iframe>"),
            )
            .attr("mlflow.traceTag.note", json!("<b onmouseover=alert('tag')>tag</b>"))
            .attr("user.id", json!("\"><svg onload=alert('user')>"))
            .attr("session.id", json!("javascript:alert('session')"))
            .attr("homepage", json!("javascript:alert('attr')")),
        span(2, Some(1), "\"><img src=x onerror=alert('child')>", t0 + 1, 10)
            .kind("CHAT_MODEL")
            .io(
                json!({"messages": [{"role": "user", "content": "<script>alert('chat')</script>"}]}),
                json!({"choices": [{"message": {"role": "assistant", "content": "<img src=x onerror=alert('reply')>"}}]}),
            ),
    ]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_in_a_real_browser() {
    let Some(driver_bin) = find_in_path("chromedriver") else {
        eprintln!(
            "SKIP ui_in_a_real_browser: chromedriver not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIP ui_in_a_real_browser: {CHROMIUM} not installed");
        return;
    }

    // Judges call a scripted OpenAI-compatible server on loopback.
    let fake = fake_llm::FakeLlm::start().await;
    let data = tempfile::tempdir().expect("data dir");
    std::fs::write(
        data.path().join("tracebox.toml"),
        format!(
            "[gateway.judge]\nbase_url = \"{}\"\nmodel = \"fake-judge\"\n\n[judges]\ntrace_settle_secs = 0.3\n",
            fake.base_url
        ),
    )
    .expect("config");
    let s = Server::start_in(data.path(), &[]);
    let created = reqwest::Client::new()
        .post(format!("{}/api/2.0/mlflow/experiments/create", s.url))
        .json(&json!({"name": "support-bot"}))
        .send()
        .await
        .expect("create experiment")
        .json::<Value>()
        .await
        .expect("json");
    let exp = created["experiment_id"].as_str().expect("id").to_string();
    let t0 = now_ms() - 6 * 3_600_000;
    let traces: Vec<(u32, Vec<S>)> = (0..24)
        .map(|i| (i, agent_trace(i, t0 + i as i64 * 900_000)))
        .collect();
    send(&s, &exp, None, traces).await;
    send(&s, &exp, None, vec![(999, xss_trace(t0 - 60_000))]).await;

    let driver = start_driver(&driver_bin);
    let profile = tempfile::tempdir().expect("profile dir");
    let c = browser(&driver, profile.path(), false).await;
    scenario(&c, &s, &exp).await;
    send_conversation(&s, &exp).await;
    sessions_scenario(&c, &s, &exp).await;
    judges_scenario(&c, &s, &exp, &fake).await;
    let _ = c.close().await;

    // Dark mode, for the screenshots (same pages, other colour scheme).
    let profile = tempfile::tempdir().expect("profile dir");
    let d = browser(&driver, profile.path(), true).await;
    d.goto(&format!(
        "{}/traces/{}?span=0303030303030303",
        s.url,
        tid(3)
    ))
    .await
    .expect("goto");
    find(&d, ".span-detail").await;
    let dark = js(
        &d,
        "return matchMedia('(prefers-color-scheme: dark)').matches",
    )
    .await;
    if dark == json!(true) {
        shot(&d, "dark-trace").await;
        // (page, what shows it has rendered, screenshot, whole page?)
        let pages = [
            ("dashboard?range=24h", ".chart", "dark-dashboard", false),
            ("traces", "table.traces", "dark-traces", false),
            (
                "sessions/conv-4521",
                ".transcript .turn",
                "dark-session",
                true,
            ),
            ("users", "table.users", "dark-users", false),
            ("judges", "article.judge", "dark-judges", true),
        ];
        for (page, ready, name, full) in pages {
            d.goto(&format!("{}/experiments/{exp}/{page}", s.url))
                .await
                .expect("goto");
            find(&d, ready).await;
            if full {
                full_shot(&d, name).await;
            } else {
                shot(&d, name).await;
            }
        }
    } else {
        eprintln!("note: this Chromium ignored --force-dark-mode; no dark screenshots");
    }
    let _ = d.close().await;

    login_scenario(&driver).await;
}

async fn scenario(c: &Client, s: &Server, exp: &str) {
    let base = &s.url;
    // `/` lands on the most recently active experiment's trace list.
    c.goto(&format!("{base}/")).await.expect("goto");
    find(c, "table.traces").await;
    assert!(
        url_of(c)
            .await
            .ends_with(&format!("/experiments/{exp}/traces"))
    );
    assert_eq!(count(c, "table.traces tbody tr").await, 25);
    assert_eq!(
        js(
            c,
            "return document.documentElement.classList.contains('has-js')"
        )
        .await,
        json!(true),
        "app.js ran under the CSP"
    );
    shot(c, "traces").await;

    // Filter with the MLflow grammar; Enter submits; the URL carries it.
    let filter = find(c, "#filter").await;
    filter
        .send_keys(&format!("status = 'ERROR'{}", Key::Enter))
        .await
        .expect("type");
    wait_until("the filtered list", || async {
        url_of(c).await.contains("filter=status")
    })
    .await;
    find(c, "table.traces").await;
    let n = count(c, "table.traces tbody tr").await;
    assert!(n >= 3, "errors listed: {n}");
    assert_eq!(count(c, "table.traces tbody .badge.ok").await, 0);
    shot(c, "traces-filtered").await;

    // A filter that does not parse: the error is shown at its place and the
    // caret is put there.
    let filter = find(c, "#filter").await;
    filter.clear().await.expect("clear");
    filter
        .send_keys(&format!(
            "status = 'ERROR' AND colour = 'red'{}",
            Key::Enter
        ))
        .await
        .expect("type");
    let err = find(c, "#filter-error").await;
    let marked = c
        .find(Locator::Css("#filter-error mark"))
        .await
        .expect("mark")
        .text()
        .await
        .expect("text");
    assert_eq!(marked, "colour");
    assert!(err.text().await.expect("text").contains("at character 21"));
    let caret = js(c, "const f = document.getElementById('filter'); return [document.activeElement === f, f.selectionStart]").await;
    assert_eq!(caret, json!([true, 21]));
    shot(c, "traces-filter-error").await;

    // Full text: the text box, on its own (once the index has caught up
    // with what was sent).
    s.client().wait_for_index().await;
    c.goto(&format!("{base}/experiments/{exp}/traces"))
        .await
        .expect("goto");
    let q = find(c, "#q").await;
    q.send_keys(&format!("refund{}", Key::Enter))
        .await
        .expect("type");
    wait_until("the text search", || async {
        url_of(c).await.contains("q=refund")
    })
    .await;
    find(c, "table.traces").await;
    let rows = count(c, "table.traces tbody tr").await;
    assert!((1..25).contains(&rows), "refund traces: {rows}");
    let body = find(c, "table.traces tbody")
        .await
        .text()
        .await
        .expect("text");
    assert!(body.to_lowercase().contains("refund"));
    assert!(
        !url_of(c).await.contains("filter="),
        "empty fields stay out of the URL"
    );
    shot(c, "traces-search").await;

    // Keyboard: `/` focuses the filter, j highlights the first row, Enter opens it.
    c.goto(&format!(
        "{base}/experiments/{exp}/traces?filter=status+%3D+%27ERROR%27"
    ))
    .await
    .expect("goto");
    find(c, "table.traces").await;
    let body = find(c, "body").await;
    body.send_keys("/").await.expect("key");
    assert_eq!(
        js(c, "return document.activeElement.id").await,
        json!("filter")
    );
    let filter = find(c, "#filter").await;
    filter
        .send_keys(&Key::Escape.to_string())
        .await
        .expect("esc");
    body.send_keys("j").await.expect("j");
    assert_eq!(count(c, "table.traces tbody tr.cursor").await, 1);
    let href = js(c, "return document.querySelector('tr.cursor').dataset.href").await;
    body.send_keys(&Key::Enter.to_string())
        .await
        .expect("enter");
    wait_until("the trace page", || async {
        url_of(c).await.contains("/traces/tr-")
    })
    .await;
    assert!(url_of(c).await.ends_with(href.as_str().unwrap_or("?")));

    // The trace page of a failed trace: tree, waterfall, root span details.
    find(c, "[data-tree] .node").await;
    assert_eq!(count(c, "[data-tree] .node").await, 4);
    assert_eq!(count(c, "[data-tree] svg.wf rect.bar").await, 4);
    shot(c, "trace").await;

    // Expanding a span: click the chat model in the tree; its details load
    // in place (no reload) and the URL names it.
    let trace_url = url_of(c).await;
    js(c, "window.__stay = 1; return 1").await;
    find(c, ".node[data-span='0303030303030303']")
        .await
        .click()
        .await
        .expect("click");
    find(c, ".span-detail[data-span-id='0303030303030303']").await;
    assert_eq!(
        js(c, "return window.__stay").await,
        json!(1),
        "no full reload"
    );
    assert!(url_of(c).await.contains("span=0303030303030303"));
    assert!(
        url_of(c)
            .await
            .starts_with(trace_url.split('?').next().unwrap_or_default())
    );
    // Chat view: roles and the tool call.
    assert!(count(c, "#tab-chat .msg.user").await >= 1);
    let chat = find(c, "#tab-chat").await.text().await.expect("text");
    assert!(
        chat.contains("lookup_order") && chat.contains("order_id"),
        "{chat}"
    );
    full_shot(c, "trace-chat").await;
    // Inputs/outputs as collapsible JSON.
    find(c, "a[data-tab='tab-io']")
        .await
        .click()
        .await
        .expect("tab");
    let node = find(c, "#tab-io details.jnode").await;
    assert!(node.attr("open").await.expect("attr").is_some());
    find(c, "#tab-io details.jnode > summary")
        .await
        .click()
        .await
        .expect("collapse");
    assert!(
        find(c, "#tab-io details.jnode")
            .await
            .attr("open")
            .await
            .expect("attr")
            .is_none()
    );
    find(c, "#tab-io [data-json-toggle='open']")
        .await
        .click()
        .await
        .expect("expand all");
    let closed = js(
        c,
        "return document.querySelectorAll('#tab-io details.jnode:not([open])').length",
    )
    .await;
    assert_eq!(closed, json!(0));
    shot(c, "trace-json").await;
    // j moves to the next span (the tool, which failed): exception and stack.
    find(c, "body").await.send_keys("j").await.expect("j");
    find(
        c,
        ".span-detail[data-span-id='0404040404040404'] .exception",
    )
    .await;
    let exc = find(c, ".exception").await.text().await.expect("text");
    assert!(
        exc.contains("TimeoutError") && exc.contains("line 42"),
        "{exc}"
    );
    shot(c, "trace-exception").await;

    // Human feedback: thumbs down and a comment, attached to the trace.
    let trace_id = url_of(c)
        .await
        .split("/traces/")
        .nth(1)
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    find(c, "label.thumb.down")
        .await
        .click()
        .await
        .expect("thumb");
    find(c, "#feedback-comment")
        .await
        .send_keys("The tool timed out; the answer was a guess.")
        .await
        .expect("type");
    find(c, "#save-feedback").await.click().await.expect("save");
    find(c, ".flash.ok").await;
    assert!(
        find(c, "#assessments")
            .await
            .text()
            .await
            .expect("text")
            .contains("The tool timed out")
    );
    c.refresh().await.expect("reload");
    find(c, "[data-assessment='feedback']").await;
    assert!(
        find(c, "#assessments")
            .await
            .text()
            .await
            .expect("text")
            .contains("The tool timed out")
    );
    // ... and an expectation (its form folds open).
    find(c, "#expectation-box > summary")
        .await
        .click()
        .await
        .expect("open");
    find(c, "#expectation-value")
        .await
        .send_keys("{\"order_status\": \"delivered\"}")
        .await
        .expect("type");
    find(c, "#save-expectation")
        .await
        .click()
        .await
        .expect("save");
    find(c, "[data-assessment='expected_response']").await;
    full_shot(c, "trace-feedback").await;
    // What the SDK would read.
    let info: Value = reqwest::get(format!("{base}/api/3.0/mlflow/traces/{trace_id}"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let list = info["trace"]["trace_info"]["assessments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fb = list
        .iter()
        .find(|a| a["assessment_name"] == "feedback")
        .expect("feedback saved");
    assert_eq!(fb["feedback"]["value"], json!(false));
    assert_eq!(fb["source"]["source_type"], "HUMAN");
    assert_eq!(
        fb["rationale"],
        "The tool timed out; the answer was a guess."
    );
    let ex = list
        .iter()
        .find(|a| a["assessment_name"] == "expected_response")
        .expect("expectation saved");
    assert!(
        ex["expectation"]["serialized_value"]["value"]
            .as_str()
            .unwrap_or_default()
            .contains("delivered")
    );

    // The list shows the new chips.
    c.goto(&format!(
        "{base}/experiments/{exp}/traces?filter=status+%3D+%27ERROR%27"
    ))
    .await
    .expect("goto");
    find(c, ".chip.neg").await;

    // Dashboard, reached with `g d`.
    find(c, "body").await.send_keys("g").await.expect("g");
    find(c, "body").await.send_keys("d").await.expect("d");
    wait_until("the dashboard", || async {
        url_of(c).await.contains("/dashboard")
    })
    .await;
    find(c, ".chart").await;
    // Volume, error rate, latency, tokens, and judge pass rates.
    assert_eq!(count(c, "figure.chart").await, 5);
    find(c, "#judge-pass-rate .empty-note").await;
    let traces_kpi = find(c, ".kpi .kpi-value").await.text().await.expect("text");
    assert_eq!(traces_kpi, "25");
    c.goto(&format!("{base}/experiments/{exp}/dashboard?range=24h"))
        .await
        .expect("goto");
    find(c, ".chart").await;
    assert!(count(c, "svg.plot rect.bar").await > 4);
    full_shot(c, "dashboard").await;
    // A filtered dashboard.
    c.goto(&format!(
        "{base}/experiments/{exp}/dashboard?range=24h&filter=tags.env+%3D+%27prod%27"
    ))
    .await
    .expect("goto");
    find(c, ".chart").await;
    assert_eq!(
        find(c, ".kpi .kpi-value").await.text().await.expect("text"),
        "12"
    );
    shot(c, "dashboard-filtered").await;

    // Experiments.
    c.goto(&format!("{base}/experiments")).await.expect("goto");
    find(c, "table.experiments").await;
    assert!(
        find(c, "table.experiments")
            .await
            .text()
            .await
            .expect("text")
            .contains("support-bot")
    );
    shot(c, "experiments").await;

    // Hostile content: rendered as text, nothing runs, no links made of it.
    let xss = tid(999);
    for (name, url) in [
        (
            "xss-list",
            format!("{base}/experiments/{exp}/traces?filter=name+LIKE+%27%25script%25%27"),
        ),
        ("xss-trace", format!("{base}/traces/{xss}")),
        (
            "xss-chat",
            format!("{base}/traces/{xss}?span=0202020202020202"),
        ),
    ] {
        c.goto(&url).await.expect("goto");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_no_alert(c, name).await;
        let injected = js(c, "return document.querySelectorAll('img, iframe, script:not([src]), [onerror], [onload], [onmouseover], a[href^=\"javascript:\" i], [src^=\"javascript:\" i]').length").await;
        assert_eq!(injected, json!(0), "{name}: injected elements");
        let scripts = js(
            c,
            "return Array.from(document.scripts).map(s => new URL(s.src).pathname)",
        )
        .await;
        assert_eq!(
            scripts,
            json!(["/static/app.js"]),
            "{name}: only our script"
        );
        let text = js(c, "return document.body.innerText").await;
        let text = text.as_str().unwrap_or_default();
        match name {
            "xss-list" => assert!(
                text.contains("<script>alert('span-name')</script>"),
                "{text}"
            ),
            "xss-trace" => {
                assert!(text.contains("<b onmouseover=alert('tag')>tag</b>"));
                assert!(text.contains("\"><svg onload=alert('user')>"));
            }
            _ => {}
        }
        if name == "xss-trace" {
            // Open the JSON and attributes too, so every payload is on screen.
            if let Ok(t) = c.find(Locator::Css("a[data-tab='tab-io']")).await {
                t.click().await.expect("tab");
            }
            let io = js(c, "return document.getElementById('tab-io').innerText").await;
            assert!(
                io.as_str()
                    .unwrap_or_default()
                    .contains("javascript:alert('url')")
            );
            assert_no_alert(c, "xss-trace io").await;
        }
        if name == "xss-chat" {
            let chat = js(c, "return document.getElementById('tab-chat').innerText").await;
            assert!(
                chat.as_str()
                    .unwrap_or_default()
                    .contains("<script>alert('chat')</script>")
            );
        }
        full_shot(c, name).await;
    }
}

/// Sessions and users: the lists, a transcript, feedback on a session and
/// the links between sessions, users and traces.
/// Creates a Guidelines judge through the page, backfills it over the
/// stored traces (judged by the fake model), starts it, sees the pass rate
/// on the page and the dashboard, and deletes a judge after confirming.
async fn judges_scenario(c: &Client, s: &Server, exp: &str, fake: &fake_llm::FakeLlm) {
    let base = &s.url;
    let status = |name: &'static str| async move {
        let v = reqwest::get(format!("{base}/api/tracebox/v1/judges?experiment_id={exp}"))
            .await
            .expect("get")
            .json::<Value>()
            .await
            .expect("json");
        v["judges"]
            .as_array()
            .and_then(|a| a.iter().find(|j| j["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    // `g j` opens the judges page.
    c.goto(&format!("{base}/experiments/{exp}/traces"))
        .await
        .expect("goto");
    find(c, "table.traces").await;
    find(c, "body").await.send_keys("g").await.expect("g");
    find(c, "body").await.send_keys("j").await.expect("j");
    wait_until("the judges page", || async {
        url_of(c)
            .await
            .ends_with(&format!("/experiments/{exp}/judges"))
    })
    .await;
    find(c, ".empty-state").await;
    assert_eq!(
        js(
            c,
            "return document.querySelector('.nav a.active span').textContent"
        )
        .await,
        json!("Judges")
    );

    // A Guidelines judge on the configured gateway (offered in the list).
    assert_eq!(
        js(
            c,
            "return document.querySelector('#judge-models option').value"
        )
        .await,
        json!("gateway:/judge")
    );
    find(c, "#guidelines-form input[name=name]")
        .await
        .send_keys("tone")
        .await
        .expect("type");
    find(c, "#guidelines-form textarea[name=guidelines]")
        .await
        .send_keys("The response must be polite.")
        .await
        .expect("type");
    find(c, "#guidelines-form input[name=model]")
        .await
        .send_keys("gateway:/judge")
        .await
        .expect("type");
    submit(c, "#guidelines-form button[type=submit]", "create").await;
    find(c, "#judge-saved").await;
    let card = "article[data-judge='tone']";
    assert_eq!(
        find(c, &format!("{card} [data-col=state]"))
            .await
            .text()
            .await
            .expect("text"),
        "Stopped"
    );
    assert_eq!(status("tone").await["kind"], "Guidelines");

    // The model finds answers about refunds impolite.
    fake.set_default(|body| {
        let verdict = if body.to_string().contains("refund") {
            "no"
        } else {
            "yes"
        };
        fake_llm::Reply::Verdict(json!(verdict), "Judged.".into())
    });
    // Backfill the last 7 days (the default range).
    let calls_before = fake.count();
    find(c, &format!("{card} .backfill-box > summary"))
        .await
        .click()
        .await
        .expect("open");
    submit(c, &format!("{card} .backfill-form button"), "backfill").await;
    let saved = find(c, "#judge-saved").await.text().await.expect("text");
    let matched: i64 = saved
        .split(" traces matched")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no count in {saved:?}"));
    assert!(matched > 20, "{saved}");
    wait_until("the backfill to finish", || async {
        status("tone").await["evaluated"] == json!(matched)
    })
    .await;
    assert!(fake.count() >= calls_before + matched as usize);
    c.refresh().await.expect("reload");
    let evaluated = find(c, &format!("{card} [data-col=evaluated]"))
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(evaluated, matched.to_string());
    let st = status("tone").await;
    let (passed, verdicts) = (
        st["passed"].as_i64().unwrap_or(0),
        st["verdicts"].as_i64().unwrap_or(0),
    );
    assert!(verdicts > 0 && passed < verdicts, "{st}");
    let shown = find(c, &format!("{card} [data-col=pass] .share-n"))
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(
        shown,
        format!("{:.0}%", passed as f64 * 100.0 / verdicts as f64),
        "{st}"
    );

    // Start it on new traces.
    find(c, &format!("{card} .start-box > summary"))
        .await
        .click()
        .await
        .expect("open");
    submit(c, &format!("{card} .start-form button"), "start").await;
    find(c, "#judge-saved").await;
    assert_eq!(
        find(c, &format!("{card} [data-col=state]"))
            .await
            .text()
            .await
            .expect("text"),
        "Running"
    );
    assert_eq!(status("tone").await["sample_rate"], json!(1.0));
    full_shot(c, "judges").await;

    // The dashboard charts its pass rate.
    c.goto(&format!("{base}/experiments/{exp}/dashboard?range=24h"))
        .await
        .expect("goto");
    let legend = find(c, "#judge-pass-rate .legend")
        .await
        .text()
        .await
        .expect("text");
    assert!(legend.contains("tone"), "{legend}");
    full_shot(c, "dashboard-judges").await;

    // Deleting asks first; dismissing keeps the judge.
    c.goto(&format!("{base}/experiments/{exp}/judges"))
        .await
        .expect("goto");
    find(c, "#builtin-form select[name=kind]").await;
    js(
        c,
        "document.querySelector('#builtin-form select[name=kind]').value = 'pii'; return null",
    )
    .await;
    find(c, "#builtin-form button[type=submit]")
        .await
        .click()
        .await
        .expect("create");
    find(c, "article[data-judge='pii']").await;
    let delete = "article[data-judge='pii'] form[action$='/delete'] button";
    find(c, delete).await.click().await.expect("delete");
    wait_until("the confirmation", || async {
        c.get_alert_text().await.is_ok()
    })
    .await;
    c.dismiss_alert().await.expect("dismiss");
    assert_eq!(count(c, "article[data-judge='pii']").await, 1);
    find(c, delete).await.click().await.expect("delete");
    wait_until("the confirmation", || async {
        c.get_alert_text().await.is_ok()
    })
    .await;
    c.accept_alert().await.expect("accept");
    wait_until("the judge to go", || async {
        count(c, "article[data-judge='pii']").await == 0
    })
    .await;
    assert_eq!(status("pii").await, Value::Null);
    assert_eq!(count(c, "article[data-judge='tone']").await, 1);
}

async fn sessions_scenario(c: &Client, s: &Server, exp: &str) {
    let base = &s.url;
    let api = |path: String| async move {
        reqwest::get(format!("{base}{path}"))
            .await
            .expect("get")
            .json::<Value>()
            .await
            .expect("json")
    };
    // `g s` from the trace list opens the sessions.
    c.goto(&format!("{base}/experiments/{exp}/traces"))
        .await
        .expect("goto");
    find(c, "table.traces").await;
    find(c, "body").await.send_keys("g").await.expect("g");
    find(c, "body").await.send_keys("s").await.expect("s");
    wait_until("the sessions list", || async {
        url_of(c)
            .await
            .ends_with(&format!("/experiments/{exp}/sessions"))
    })
    .await;
    find(c, "table.sessions").await;
    let listed = api(format!("/api/tracebox/v1/sessions?experiment_id={exp}")).await;
    let listed = listed["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        count(c, "table.sessions tbody tr").await,
        listed.len(),
        "every session on one page"
    );
    assert_eq!(
        js(
            c,
            "return document.querySelector('table.sessions tbody tr').dataset.session"
        )
        .await,
        json!("conv-4521"),
        "most recently active first"
    );
    assert_eq!(count(c, "nav.nav a.active[href$='/sessions']").await, 1);
    shot(c, "sessions").await;

    // `/` focuses the user box; Enter filters; the URL carries it.
    find(c, "body").await.send_keys("/").await.expect("/");
    assert_eq!(
        js(c, "return document.activeElement.id").await,
        json!("user-filter")
    );
    find(c, "#user-filter")
        .await
        .send_keys(&format!("alice{}", Key::Enter))
        .await
        .expect("type");
    wait_until("the filtered sessions", || async {
        url_of(c).await.contains("user=alice")
    })
    .await;
    find(c, "table.sessions").await;
    let users = js(
        c,
        "return Array.from(document.querySelectorAll('table.sessions td.who')).map(td => td.innerText)",
    )
    .await;
    let users = users.as_array().cloned().unwrap_or_default();
    let alices = listed.iter().filter(|s| s["user"] == "alice").count();
    assert!(alices > 1);
    assert_eq!(users.len(), alices);
    assert!(users.iter().all(|u| u == "alice"), "{users:?}");
    assert!(
        !url_of(c).await.contains("from="),
        "unused fields stay out of the URL"
    );
    shot(c, "sessions-filtered").await;

    // The conversation as a transcript.
    c.goto(&format!("{base}/experiments/{exp}/sessions"))
        .await
        .expect("goto");
    find(c, "tr[data-session='conv-4521'] td.name a")
        .await
        .click()
        .await
        .expect("open session");
    find(c, ".transcript .turn").await;
    assert!(url_of(c).await.ends_with("/sessions/conv-4521"));
    assert_eq!(count(c, ".transcript .turn").await, CONVERSATION.len());
    assert_eq!(count(c, ".transcript .turn.failed").await, 1);
    let said = js(
        c,
        "return Array.from(document.querySelectorAll('.turn .msg.user .msg-body')).map(m => m.innerText)",
    )
    .await;
    let want: Vec<&str> = CONVERSATION.iter().map(|(q, _)| *q).collect();
    assert_eq!(said, json!(want));
    let failed = find(c, ".turn.failed .msg.assistant")
        .await
        .text()
        .await
        .expect("text");
    assert!(failed.contains("this turn failed"), "{failed}");
    let session_level = find(c, "#session-assessments")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        session_level.contains("conversation_completeness")
            && session_level.contains("refund was issued"),
        "{session_level}"
    );
    // Per-turn chips: the judge's verdicts and the user's thumbs up, not
    // the session-level verdict.
    assert_eq!(count(c, ".turn .turn-chips .chip").await, 5);
    assert_eq!(count(c, ".turn .turn-chips .chip.neg").await, 1);
    full_shot(c, "session").await;

    // j/k walk the turns; Enter opens the highlighted turn's trace, whose
    // page links back to the session.
    let body = find(c, "body").await;
    body.send_keys("j").await.expect("j");
    body.send_keys("j").await.expect("j");
    assert_eq!(
        js(
            c,
            "return document.querySelector('.turn.cursor').dataset.turn"
        )
        .await,
        json!("2")
    );
    body.send_keys(&Key::Enter.to_string())
        .await
        .expect("enter");
    wait_until("the second turn's trace", || async {
        url_of(c).await.ends_with(&format!("/traces/{}", tid(501)))
    })
    .await;
    find(c, "a[data-link='session']")
        .await
        .click()
        .await
        .expect("session link");
    wait_until("back on the session", || async {
        url_of(c).await.ends_with("/sessions/conv-4521")
    })
    .await;

    // Human feedback on the whole session, persisted across a reload.
    find(c, "#feedback-form label.thumb.up")
        .await
        .click()
        .await
        .expect("thumb");
    find(c, "#feedback-comment")
        .await
        .send_keys("Resolved in the end, after one failed turn.")
        .await
        .expect("type");
    find(c, "#save-feedback").await.click().await.expect("save");
    find(c, "#session-assessments .flash.ok").await;
    c.refresh().await.expect("reload");
    find(
        c,
        "#session-assessments [data-assessment='session_feedback']",
    )
    .await;
    assert!(
        find(c, "#session-assessments")
            .await
            .text()
            .await
            .expect("text")
            .contains("Resolved in the end")
    );
    full_shot(c, "session-feedback").await;
    // The JSON API lists it as session-level; MLflow's API has it on the
    // first turn's trace with the session marker.
    let one = api(format!(
        "/api/tracebox/v1/sessions/conv-4521?experiment_id={exp}"
    ))
    .await;
    let fb = one["session_assessments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|a| a["name"] == "session_feedback")
        .expect("session feedback listed");
    assert_eq!(fb["value"], json!(true));
    assert_eq!(fb["source"]["type"], "HUMAN");
    assert_eq!(fb["trace_id"], json!(tid(500)));
    assert_eq!(
        fb["rationale"],
        "Resolved in the end, after one failed turn."
    );
    let info = api(format!("/api/3.0/mlflow/traces/{}", tid(500))).await;
    let on_first = info["trace"]["trace_info"]["assessments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|a| a["assessment_name"] == "session_feedback")
        .expect("stored on the first trace");
    assert_eq!(on_first["metadata"]["mlflow.trace.session"], "conv-4521");

    // Users: `g u`, dana's page, her session.
    find(c, "body").await.send_keys("g").await.expect("g");
    find(c, "body").await.send_keys("u").await.expect("u");
    wait_until("the users list", || async {
        url_of(c)
            .await
            .ends_with(&format!("/experiments/{exp}/users"))
    })
    .await;
    find(c, "table.users").await;
    let all_users = api(format!("/api/tracebox/v1/users?experiment_id={exp}")).await;
    let all_users = all_users["users"].as_array().cloned().unwrap_or_default();
    assert_eq!(count(c, "table.users tbody tr").await, all_users.len());
    let dana = all_users
        .iter()
        .find(|u| u["user"] == "dana")
        .expect("dana");
    let share = find(c, "tr[data-user='dana'] .share-n")
        .await
        .text()
        .await
        .expect("text");
    let want_share = dana["assessments"]["positive_share"]
        .as_f64()
        .unwrap_or_default();
    assert_eq!(share, format!("{:.0}%", want_share * 100.0));
    shot(c, "users").await;
    find(c, "tr[data-user='dana'] td.name a")
        .await
        .click()
        .await
        .expect("open user");
    find(c, "table.sessions").await;
    assert!(url_of(c).await.ends_with("/users/dana"));
    assert_eq!(count(c, "table.sessions tbody tr").await, 1);
    assert_eq!(
        find(c, "[data-fact='traces']")
            .await
            .text()
            .await
            .expect("text"),
        CONVERSATION.len().to_string()
    );
    full_shot(c, "user").await;
    find(c, "table.sessions td.name a")
        .await
        .click()
        .await
        .expect("open");
    wait_until("dana's session", || async {
        url_of(c).await.ends_with("/sessions/conv-4521")
    })
    .await;
    // Alice's page lists her sessions; each opens as a transcript.
    c.goto(&format!("{base}/experiments/{exp}/users/alice"))
        .await
        .expect("goto");
    find(c, "table.sessions").await;
    assert_eq!(count(c, "table.sessions tbody tr").await, alices);
    find(c, "table.sessions tbody tr:last-child td.name a")
        .await
        .click()
        .await
        .expect("open");
    find(c, ".transcript .turn").await;
    assert!(url_of(c).await.contains("/sessions/s-alice-"));

    // Hostile ids and text: shown as text, nothing runs, links stay ours.
    let xss_user = "%22%3E%3Csvg%20onload%3Dalert%28%27user%27%29%3E";
    let xss_session = "javascript%3Aalert%28%27session%27%29";
    for (name, url) in [
        ("xss-sessions", format!("{base}/experiments/{exp}/sessions")),
        (
            "xss-session",
            format!("{base}/experiments/{exp}/sessions/{xss_session}"),
        ),
        ("xss-users", format!("{base}/experiments/{exp}/users")),
        (
            "xss-user",
            format!("{base}/experiments/{exp}/users/{xss_user}"),
        ),
    ] {
        c.goto(&url).await.expect("goto");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_no_alert(c, name).await;
        let injected = js(c, "return document.querySelectorAll('img, iframe, script:not([src]), [onerror], [onload], [onmouseover], a[href^=\"javascript:\" i], [src^=\"javascript:\" i]').length").await;
        assert_eq!(injected, json!(0), "{name}: injected elements");
        let text = js(c, "return document.body.innerText").await;
        let text = text.as_str().unwrap_or_default();
        assert!(
            text.contains("\"><svg onload=alert('user')>") || name == "xss-session",
            "{name}: {text}"
        );
        if name == "xss-session" {
            assert!(text.contains("<script>alert('chat')</script>"), "{text}");
            assert!(text.contains("javascript:alert('session')"));
            full_shot(c, name).await;
        }
    }
}

async fn login_scenario(driver: &Driver) {
    let token = "browser-s3cret";
    let s = Server::start_with(&["--auth-token", token]);
    send(
        &s,
        "0",
        Some(token),
        vec![(5, agent_trace(5, now_ms() - 60_000))],
    )
    .await;
    let profile = tempfile::tempdir().expect("profile dir");
    let c = browser(driver, profile.path(), false).await;
    let base = &s.url;

    c.goto(&format!("{base}/experiments")).await.expect("goto");
    find(&c, "#token").await;
    assert!(url_of(&c).await.contains("/login?next=%2Fexperiments"));
    shot(&c, "login").await;

    find(&c, "#token")
        .await
        .send_keys(&format!("wrong-token{}", Key::Enter))
        .await
        .expect("type");
    find(&c, "#login-error").await;
    shot(&c, "login-error").await;

    find(&c, "#token")
        .await
        .send_keys(&format!("{token}{}", Key::Enter))
        .await
        .expect("type");
    wait_until("the experiments page", || async {
        url_of(&c).await.ends_with("/experiments")
    })
    .await;
    find(&c, "table.experiments").await;
    let cookies = c.get_all_cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|k| k.name() == "tracebox_session")
        .expect("session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert_eq!(
        js(&c, "return document.cookie.includes('tracebox_session')").await,
        json!(false),
        "HttpOnly: invisible to scripts"
    );

    // Browsing works; feedback posts carry the session's CSRF token.
    c.goto(&format!("{base}/traces/{}", tid(5)))
        .await
        .expect("goto");
    find(&c, "label.thumb.up")
        .await
        .click()
        .await
        .expect("thumb");
    find(&c, "#save-feedback")
        .await
        .click()
        .await
        .expect("save");
    find(&c, ".flash.ok").await;

    // Logging out ends the session.
    find(&c, "form[action='/logout'] button")
        .await
        .click()
        .await
        .expect("logout");
    find(&c, "#token").await;
    c.goto(&format!("{base}/experiments")).await.expect("goto");
    find(&c, "#token").await;
    assert!(url_of(&c).await.contains("/login"));
    let _ = c.close().await;
}
