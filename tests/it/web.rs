//! The web UI over HTTP, as a browser without JavaScript sees it: pages,
//! security headers, escaping of hostile trace content, login sessions,
//! CSRF checks on forms, feedback saved where the MLflow API reads it,
//! filters, paging, text search and dashboard numbers. (The same flows in a
//! real browser are in `tests/browser`.)

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use serde_json::{Value, json};

use crate::harness::Server;
use crate::otlp_http::SpanSpec;

/// A cookie-keeping client that does not follow redirects.
pub(crate) struct Web {
    base: String,
    http: reqwest::Client,
    pub(crate) cookies: BTreeMap<String, String>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
    pub(crate) fn location(&self) -> String {
        self.header("location")
    }
    /// The CSRF token the page's forms carry.
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("page has a form with a CSRF token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
    pub(crate) fn rows(&self) -> usize {
        self.body.matches("<tr data-href=").count()
    }
}

impl Web {
    pub(crate) fn new(s: &Server) -> Web {
        Web {
            base: s.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let body = r.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/html");
        self.send(req).await
    }

    pub(crate) async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }
}

/// Text as a browser shows it (the five entities askama writes).
pub(crate) fn unescape(html: &str) -> String {
    html.replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One OTLP request carrying many traces: (trace hex, spans, duration ms).
pub(crate) async fn export_many(s: &Server, exp: &str, traces: &[(String, Vec<SpanSpec>, i64)]) {
    let mut req = ExportTraceServiceRequest::default();
    for (hex, spans, dur) in traces {
        let protos = spans
            .iter()
            .map(|sp| {
                let mut p = sp.to_proto(hex);
                p.end_time_unix_nano = p.start_time_unix_nano + (*dur as u64) * 1_000_000;
                p
            })
            .collect();
        req.resource_spans.push(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: protos,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let r = s
        .client()
        .post_raw(
            "/v1/traces",
            "application/x-protobuf",
            req.encode_to_vec(),
            &[("x-mlflow-experiment-id", exp)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

pub(crate) fn hex_of(i: usize) -> String {
    format!(
        "{:032x}",
        0xabc0_0000_0000_0000u64 as u128 * 1000 + i as u128
    )
}

pub(crate) async fn new_experiment(s: &Server, name: &str) -> String {
    let r = s
        .client()
        .post("/api/2.0/mlflow/experiments/create", json!({"name": name}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["experiment_id"].as_str().unwrap().to_string()
}

fn kpi(body: &str, label: &str) -> String {
    let at = body
        .find(&format!("<span class=\"kpi-label\">{label}</span>"))
        .unwrap_or_else(|| panic!("no KPI {label}"));
    let rest = &body[at..];
    let v = rest.find("kpi-value\">").unwrap() + "kpi-value\">".len();
    rest[v..v + rest[v..].find('<').unwrap()].to_string()
}

#[tokio::test]
async fn pages_render_with_strict_security_headers() {
    let s = Server::start();
    let exp = new_experiment(&s, "shop").await;
    let t0 = now_ms() - 60_000;
    let traces: Vec<(String, Vec<SpanSpec>, i64)> = (0..3)
        .map(|i| {
            (
                hex_of(i),
                vec![
                    SpanSpec::root(1, &format!("checkout-{i}"))
                        .start_ms(t0 + i as i64)
                        .span_type("AGENT")
                        .inputs(json!({"question": format!("where is order {i}?")}))
                        .outputs(json!("on its way"))
                        .attr("user.id", json!("alice")),
                    SpanSpec::child(2, 1, "ChatOpenAI")
                        .start_ms(t0 + i as i64)
                        .span_type("CHAT_MODEL")
                        .inputs(json!({"messages": [{"role": "user", "content": "where?"}]}))
                        .outputs(json!({"choices": [{"message": {"role": "assistant", "content": "there"}}]})),
                ],
                40,
            )
        })
        .collect();
    export_many(&s, &exp, &traces).await;
    let mut w = Web::new(&s);

    let home = w.get("/").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.location(), format!("/experiments/{exp}/traces"));

    let list = w.get(&format!("/experiments/{exp}/traces")).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.header("content-type").starts_with("text/html"));
    let csp = list.header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(list.header("x-frame-options"), "DENY");
    assert_eq!(list.rows(), 3);
    for i in 0..3 {
        assert!(list.body.contains(&format!("checkout-{i}")));
    }
    assert!(
        list.body.contains("where is order 1?"),
        "request preview shown"
    );

    let id = format!("tr-{}", hex_of(1));
    let page = w.get(&format!("/traces/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("checkout-1") && page.body.contains("ChatOpenAI"));
    assert!(page.body.contains("where is order 1?"));
    // The chat span's panel renders its messages as a chat.
    let chat_span = "0202020202020202";
    let panel = w.get(&format!("/traces/{id}/spans/{chat_span}")).await;
    assert_eq!(panel.status, 200);
    assert!(
        panel.body.contains("class=\"msg user\"") && panel.body.contains("class=\"msg assistant\"")
    );
    let raw = w.get(&format!("/traces/{id}/spans/{chat_span}/json")).await;
    assert_eq!(raw.status, 200);
    let v: Value = serde_json::from_str(&raw.body).unwrap();
    assert_eq!(v["name"], "ChatOpenAI");

    let missing = w.get("/traces/tr-00000000000000000000000000000000").await;
    assert_eq!(missing.status, 404);
    assert!(missing.header("content-type").starts_with("text/html"));

    let dash = w
        .get(&format!("/experiments/{exp}/dashboard?range=24h"))
        .await;
    assert_eq!(dash.status, 200);
    assert_eq!(kpi(&dash.body, "Traces"), "3");
    assert!(dash.body.contains("<svg class=\"plot\""));

    let exps = w.get("/experiments").await;
    assert_eq!(exps.status, 200);
    assert!(exps.body.contains("shop"));

    // Assets are embedded, typed and cached by content hash.
    let at = list.body.find("/static/app.js?v=").unwrap();
    let src = &list.body[at..at + list.body[at..].find('"').unwrap()];
    let js = w.get(src).await;
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type").contains("javascript"),
        "{}",
        js.header("content-type")
    );
    assert!(js.header("cache-control").contains("immutable"));
    assert_eq!(w.get("/static/nope.js").await.status, 404);
}

#[tokio::test]
async fn hostile_trace_content_renders_as_text() {
    let s = Server::start();
    let t0 = now_ms() - 60_000;
    let evil_name = "<script>alert('name')</script>";
    let spans = vec![
        SpanSpec::root(1, evil_name)
            .start_ms(t0)
            .inputs(json!({
                "question": "\"><img src=x onerror=alert('in')>",
                "link": "javascript:alert('url')"
            }))
            .outputs(json!("<iframe src=javascript:alert('out')></iframe>"))
            .attr("mlflow.traceTag.note", json!("<b onmouseover=alert('tag')>hi</b>"))
            .attr("session.id", json!("javascript:alert('session')"))
            .attr("user.id", json!("<svg onload=alert('user')>")),
        SpanSpec::child(2, 1, "\"><img src=x onerror=alert('span')>")
            .start_ms(t0)
            .span_type("CHAT_MODEL")
            .inputs(json!({"messages": [{"role": "user", "content": "<script>alert('chat')</script>"}]}))
            .error("<img src=x onerror=alert('status')>"),
    ];
    export_many(&s, "0", &[(hex_of(7), spans, 10)]).await;
    let id = format!("tr-{}", hex_of(7));
    let mut w = Web::new(&s);
    let pages = [
        w.get("/experiments/0/traces").await,
        w.get(&format!("/traces/{id}")).await,
        w.get(&format!("/traces/{id}?span=0202020202020202")).await,
        w.get(&format!("/traces/{id}/spans/0202020202020202")).await,
    ];
    for p in &pages {
        assert_eq!(p.status, 200);
        let b = &p.body;
        for bad in [
            "<script>alert",
            "<img src",
            "<iframe",
            "<svg onload",
            "<b onmouseover",
            "href=\"javascript:",
            "src=\"javascript:",
        ] {
            assert!(!b.contains(bad), "unescaped {bad:?} in page");
        }
        // The only script tag is ours.
        assert!(b.matches("<script").count() <= 1);
    }
    // ...and every hostile string is there as text.
    assert!(
        unescape(&pages[0].body).contains(evil_name),
        "the name is shown as text"
    );
    assert!(unescape(&pages[0].body).contains("\"><img src=x onerror=alert('in')>"));
    let trace_text = unescape(&pages[1].body);
    assert!(
        trace_text.contains("<b onmouseover=alert('tag')>hi</b>"),
        "tags shown as text"
    );
    assert!(trace_text.contains("javascript:alert('url')"));
    assert!(trace_text.contains("<svg onload=alert('user')>"));
    assert!(
        unescape(&pages[3].body).contains("<script>alert('chat')</script>"),
        "chat shown as text"
    );
    // User and session cells link to our own pages (ids percent-encoded),
    // never to the value itself.
    assert!(pages[0].body.contains(
        "class=\"session\" href=\"/experiments/0/sessions/javascript%3Aalert%28%27session%27%29\""
    ));
    assert!(
        pages[0]
            .body
            .contains("class=\"user\" href=\"/experiments/0/users/%3Csvg")
    );
}

#[tokio::test]
async fn login_sessions_and_logout() {
    let token = "s3cret-token-1";
    let s = Server::start_with(&["--auth-token", token]);
    let mut w = Web::new(&s);

    let r = w.get("/experiments").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login?next=%2Fexperiments");
    // API clients get 401 JSON, not a redirect.
    let api = reqwest::get(format!(
        "{}/api/2.0/mlflow/experiments/get?experiment_id=0",
        s.url
    ))
    .await
    .unwrap();
    assert_eq!(api.status().as_u16(), 401);
    // Liveness stays open.
    assert_eq!(
        reqwest::get(format!("{}/health", s.url))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    let login = w.get("/login?next=%2Fexperiments").await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("type=\"password\""));
    let csrf = login.csrf();
    assert_eq!(w.cookies.get("tracebox_csrf"), Some(&csrf));

    let wrong = w
        .post(
            "/login",
            &[
                ("token", "nope-nope"),
                ("csrf", &csrf),
                ("next", "/experiments"),
            ],
            &[],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not right"));
    assert!(!w.cookies.contains_key("tracebox_session"));
    let empty = w
        .post("/login", &[("token", ""), ("csrf", &csrf)], &[])
        .await;
    assert_eq!(empty.status, 401);

    let no_csrf = w
        .post("/login", &[("token", token), ("next", "/experiments")], &[])
        .await;
    assert_eq!(no_csrf.status, 403);
    assert!(!w.cookies.contains_key("tracebox_session"));

    let ok = w
        .post(
            "/login",
            &[("token", token), ("csrf", &csrf), ("next", "/experiments")],
            &[],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location(), "/experiments");
    let set = ok.header("set-cookie");
    assert!(set.contains("tracebox_session="), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "plain http: no Secure flag ({set})"
    );
    let session = w.cookies["tracebox_session"].clone();
    assert_eq!(session.len(), 64);

    let page = w.get("/experiments").await;
    assert_eq!(page.status, 200);
    let session_csrf = page.csrf();
    assert_ne!(session_csrf, csrf, "a session has its own CSRF token");
    // The session also authenticates same-origin API reads (the UI's own).
    let api = w
        .get("/api/2.0/mlflow/experiments/get?experiment_id=0")
        .await;
    assert_eq!(api.status, 200);
    // ...but not requests another origin makes with it.
    let cross = w
        .post(
            "/api/2.0/mlflow/experiments/create",
            &[("name", "x")],
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(cross.status, 401);

    // A forged or missing cookie is no session.
    let mut stranger = Web::new(&s);
    stranger
        .cookies
        .insert("tracebox_session".into(), "0".repeat(64));
    assert_eq!(stranger.get("/experiments").await.status, 303);

    // Logout needs the session's CSRF token, then ends the session.
    let bad_logout = w.post("/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!(bad_logout.status, 403);
    let out = w.post("/logout", &[("csrf", &session_csrf)], &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/login");
    assert!(!w.cookies.contains_key("tracebox_session"));
    let mut replay = Web::new(&s);
    replay.cookies.insert("tracebox_session".into(), session);
    assert_eq!(
        replay.get("/experiments").await.status,
        303,
        "revoked server-side"
    );

    // Behind a TLS proxy the cookie is Secure; `next` never leaves the site.
    let mut tls = Web::new(&s);
    let l = tls.get("/login").await;
    let c = l.csrf();
    let ok = tls
        .post(
            "/login",
            &[("token", token), ("csrf", &c), ("next", "//evil.example/x")],
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.location(), "/");
    assert!(ok.header("set-cookie").contains("; Secure"));
}

#[tokio::test]
async fn feedback_forms_need_csrf_and_save_what_the_sdk_reads() {
    let s = Server::start();
    let t0 = now_ms() - 10_000;
    export_many(
        &s,
        "0",
        &[(
            hex_of(1),
            vec![
                SpanSpec::root(1, "answer").start_ms(t0),
                SpanSpec::child(2, 1, "llm").start_ms(t0),
            ],
            30,
        )],
    )
    .await;
    let id = format!("tr-{}", hex_of(1));
    let mut w = Web::new(&s);
    let page = w.get(&format!("/traces/{id}")).await;
    let csrf = page.csrf();
    let action = format!("/traces/{id}/feedback");
    let form = |token: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("csrf", token),
            ("verdict", "up"),
            ("name", "helpful"),
            ("comment", "Clear and correct."),
            ("source_id", "reviewer-1"),
        ]
    };
    let csrf_static: &'static str = Box::leak(csrf.clone().into_boxed_str());

    assert_eq!(
        w.post(&action, &form("")[1..], &[]).await.status,
        403,
        "no token"
    );
    assert_eq!(
        w.post(&action, &form("forged"), &[]).await.status,
        403,
        "wrong token"
    );
    let cross = w
        .post(
            &action,
            &form(csrf_static),
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(cross.status, 403, "other origin");
    let site = w
        .post(
            &action,
            &form(csrf_static),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(site.status, 403, "cross-site fetch metadata");
    // Another browser (no cookie) cannot reuse this page's token.
    let mut other = Web::new(&s);
    assert_eq!(
        other.post(&action, &form(csrf_static), &[]).await.status,
        403
    );

    let saved = w
        .post(&action, &form(csrf_static), &[("origin", &s.url)])
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert!(saved.location().contains("saved=feedback"));
    let exp = w
        .post(
            &format!("/traces/{id}/expectations"),
            &[
                ("csrf", &csrf),
                ("name", "expected_facts"),
                ("value", "{\"facts\": [\"a\", \"b\"]}"),
                ("span_id", "0202020202020202"),
            ],
            &[],
        )
        .await;
    assert_eq!(exp.status, 303);
    let bad = w
        .post(
            &action,
            &[("csrf", &csrf), ("verdict", "up"), ("score", "0.5")],
            &[],
        )
        .await;
    assert!(bad.location().contains("error=both-values"));
    let bad = w
        .post(&action, &[("csrf", &csrf), ("score", "high")], &[])
        .await;
    assert!(bad.location().contains("error=bad-score"));

    // The MLflow API (what the SDK calls) sees both, in MLflow's shape.
    let info = s
        .client()
        .get(&format!("/api/3.0/mlflow/traces/{id}"))
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    let assessments = info.body["trace"]["trace_info"]["assessments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(assessments.len(), 2, "{}", info.text);
    let fb = assessments
        .iter()
        .find(|a| a["assessment_name"] == "helpful")
        .unwrap();
    assert_eq!(fb["feedback"]["value"], json!(true));
    assert_eq!(fb["source"]["source_type"], "HUMAN");
    assert_eq!(fb["source"]["source_id"], "reviewer-1");
    assert_eq!(fb["rationale"], "Clear and correct.");
    let ex = assessments
        .iter()
        .find(|a| a["assessment_name"] == "expected_facts")
        .unwrap();
    assert_eq!(ex["span_id"], "0202020202020202");
    let sv = ex["expectation"]["serialized_value"]["value"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(sv).unwrap(),
        json!({"facts": ["a", "b"]})
    );

    // The page shows them after a reload, and deleting works the same way.
    let page = w.get(&format!("/traces/{id}")).await;
    assert!(page.body.contains("data-assessment=\"helpful\""));
    let aid = fb["assessment_id"].as_str().unwrap();
    let del = w
        .post(
            &format!("/traces/{id}/assessments/{aid}/delete"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(del.status, 303);
    let info = s
        .client()
        .get(&format!("/api/3.0/mlflow/traces/{id}"))
        .await;
    assert_eq!(
        info.body["trace"]["trace_info"]["assessments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn header_authenticated_clients_post_forms_without_csrf() {
    let token = "s3cret-token-2";
    let s = Server::start_with(&["--auth-token", token]);
    let t0 = now_ms();
    let r = s
        .client()
        .http
        .post(format!("{}/v1/traces", s.url))
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {token}"))
        .body({
            let mut req = ExportTraceServiceRequest::default();
            req.resource_spans.push(ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![SpanSpec::root(1, "t").start_ms(t0).to_proto(&hex_of(3))],
                    ..Default::default()
                }],
                ..Default::default()
            });
            req.encode_to_vec()
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut w = Web::new(&s);
    let id = format!("tr-{}", hex_of(3));
    let action = format!("/traces/{id}/feedback");
    let anon = w.post(&action, &[("verdict", "down")], &[]).await;
    assert_eq!(anon.status, 401, "no credentials at all");
    let auth = format!("Bearer {token}");
    let ok = w
        .post(&action, &[("verdict", "down")], &[("authorization", &auth)])
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
}

#[tokio::test]
async fn trace_list_filters_pages_sorts_and_searches() {
    let s = Server::start();
    let exp = new_experiment(&s, "paging").await;
    let t0 = now_ms() - 3_600_000;
    let traces: Vec<(String, Vec<SpanSpec>, i64)> = (0..120)
        .map(|i| {
            let name = if i % 2 == 0 { "alpha" } else { "beta" };
            let q = if i == 77 {
                "a question about the rare needle word".to_string()
            } else {
                format!("question {i}")
            };
            let mut spans = vec![
                SpanSpec::root(1, name)
                    .start_ms(t0 + i as i64 * 1000)
                    .inputs(json!({"question": q})),
            ];
            if i == 88 {
                // Only a child span says it: not in the list's previews.
                spans.push(
                    SpanSpec::child(2, 1, "lookup")
                        .start_ms(t0 + i as i64 * 1000)
                        .outputs(json!({"found": "a needles-and-pins shop"})),
                );
            }
            (hex_of(1000 + i), spans, 10 + i as i64)
        })
        .collect();
    export_many(&s, &exp, &traces).await;
    let mut w = Web::new(&s);
    let base = format!("/experiments/{exp}/traces");

    let p1 = w.get(&base).await;
    assert_eq!(p1.rows(), 50);
    // Newest first by default.
    assert!(p1.body.find(&hex_of(1119)).unwrap() < p1.body.find(&hex_of(1118)).unwrap());
    let next = |p: &Page| -> Option<String> {
        let at = p.body.find("rel=\"next\"")?;
        let start = p.body[..at].rfind("href=\"")? + 6;
        Some(unescape(&p.body[start..start + p.body[start..].find('"')?]))
    };
    let prev = |p: &Page| -> Option<String> {
        let at = p.body.find("rel=\"prev\"")?;
        let start = p.body[..at].rfind("href=\"")? + 6;
        Some(unescape(&p.body[start..start + p.body[start..].find('"')?]))
    };
    assert!(prev(&p1).is_none());
    let p2 = w.get(&next(&p1).unwrap()).await;
    assert_eq!(p2.rows(), 50);
    assert!(p2.body.contains("Showing 51–100"));
    let p3 = w.get(&next(&p2).unwrap()).await;
    assert_eq!(p3.rows(), 20);
    assert!(next(&p3).is_none());
    let back = w.get(&prev(&p3).unwrap()).await;
    assert_eq!(back.rows(), 50);
    assert!(back.body.contains("Showing 51–100"));
    let first = w.get(&prev(&back).unwrap()).await;
    assert!(first.body.contains("Showing 1–50"));
    // No trace appears twice across the pages.
    let mut seen = std::collections::HashSet::new();
    for p in [&p1, &p2, &p3] {
        for part in p.body.split("<tr data-href=\"/traces/").skip(1) {
            assert!(seen.insert(part[..35].to_string()));
        }
    }
    assert_eq!(seen.len(), 120);

    let alpha = w.get(&format!("{base}?filter=name+%3D+%27alpha%27")).await;
    assert_eq!(alpha.rows(), 50);
    assert!(!alpha.body.contains(">beta<"));
    let alpha2 = w.get(&next(&alpha).unwrap()).await;
    assert_eq!(alpha2.rows(), 10);

    // Parse errors point at their place.
    let bad = w
        .get(&format!("{base}?filter=name+%3D+%27alpha%27+AND+foo+%3D+1"))
        .await;
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("id=\"filter-error\""));
    assert!(
        bad.body.contains("<mark class=\"\">foo</mark>"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("data-error-pos=\"19\""));
    assert_eq!(bad.rows(), 0);
    let open = w.get(&format!("{base}?filter=status+%3D")).await;
    assert!(open.body.contains("<mark class=\"at-end\">"));

    // Full text: the index catches up in the background.
    s.client().wait_for_index().await;
    let found = w.get(&format!("{base}?q=needle")).await;
    assert_eq!(found.rows(), 1, "whole words: 'needles' is another word");
    assert!(found.body.contains(&hex_of(1077)));
    assert!(
        found.body.contains("<mark>needle</mark>"),
        "the match is highlighted"
    );
    // A prefix finds both; the child span's match is shown as a snippet
    // linking to that span.
    let both = w.get(&format!("{base}?q=needle*")).await;
    assert_eq!(both.rows(), 2, "{}", both.body);
    assert!(both.body.contains("<mark>needles</mark>"), "{}", both.body);
    let span2 = "?span=0202020202020202";
    assert!(
        both.body
            .contains(&format!("/traces/tr-{}{span2}", hex_of(1088))),
        "{}",
        both.body
    );

    // Slowest first: durations grow with i.
    let slow = w.get(&format!("{base}?sort=latency&dir=desc")).await;
    assert!(slow.body.find(&hex_of(1119)).unwrap() < slow.body.find(&hex_of(1100)).unwrap());
    assert!(slow.body.contains("aria-sort=\"descending\""));
    let fast = w.get(&format!("{base}?sort=latency&dir=asc")).await;
    assert!(fast.body.find(&hex_of(1000)).unwrap() < fast.body.find(&hex_of(1001)).unwrap());

    // Time range: the last 15 minutes hold none of these traces.
    let recent = w.get(&format!("{base}?range=15m")).await;
    assert_eq!(recent.rows(), 0);
    assert!(recent.body.contains("No traces match"));
    // A stale page token falls back to the first page with a note.
    let stale = w.get(&format!("{base}?page_token=garbage")).await;
    assert_eq!(stale.rows(), 50);
    assert!(stale.body.contains("showing the first page"));
}

#[tokio::test]
async fn dashboard_numbers_follow_ingest_filters_and_deletes() {
    let s = Server::start();
    let exp = new_experiment(&s, "dash").await;
    let t0 = now_ms() - 3_600_000;
    let traces: Vec<(String, Vec<SpanSpec>, i64)> = (0..10)
        .map(|i| {
            let mut root = SpanSpec::root(1, "job")
                .start_ms(t0 + i as i64 * 60_000)
                .attr(
                    "mlflow.chat.tokenUsage",
                    json!({"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}),
                );
            let mut spans = vec![];
            if i < 3 {
                root = root.error("boom");
                // Said only inside a child span: full text, not previews.
                spans.push(
                    SpanSpec::child(2, 1, "parse")
                        .start_ms(t0 + i as i64 * 60_000)
                        .inputs(json!({"detail": "kaboom in the parser"})),
                );
            }
            spans.insert(0, root);
            (hex_of(2000 + i), spans, 100 * (i as i64 + 1))
        })
        .collect();
    export_many(&s, &exp, &traces).await;
    let mut w = Web::new(&s);
    let url = format!("/experiments/{exp}/dashboard?range=24h");
    let d = w.get(&url).await;
    assert_eq!(d.status, 200);
    assert_eq!(kpi(&d.body, "Traces"), "10");
    assert_eq!(kpi(&d.body, "Error rate"), "30%");
    // Rollups are written back after the first read; a second read agrees.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let d = w.get(&url).await;
    assert_eq!(kpi(&d.body, "Traces"), "10");

    let errs = w.get(&format!("{url}&filter=status+%3D+%27ERROR%27")).await;
    assert_eq!(kpi(&errs.body, "Traces"), "3");
    assert_eq!(kpi(&errs.body, "Error rate"), "100%");
    let bad = w.get(&format!("{url}&filter=status+%3D%3D%3D")).await;
    assert!(bad.body.contains("id=\"filter-error\""));
    // The text box is full-text search over every span, as in the list.
    s.client().wait_for_index().await;
    let text = w.get(&format!("{url}&q=kaboom")).await;
    assert_eq!(kpi(&text.body, "Traces"), "3", "{}", text.body);
    assert_eq!(kpi(&text.body, "Error rate"), "100%");
    let both = w
        .get(&format!("{url}&q=kaboom&filter=status+%3D+%27OK%27"))
        .await;
    assert_eq!(kpi(&both.body, "Traces"), "0");

    // Deleting traces (any path) updates the rollups.
    let ids: Vec<String> = (0..4).map(|i| format!("tr-{}", hex_of(2000 + i))).collect();
    let del = s
        .client()
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            json!({"experiment_id": exp, "request_ids": ids}),
        )
        .await;
    assert_eq!(del.status, 200, "{}", del.text);
    let d = w.get(&url).await;
    assert_eq!(kpi(&d.body, "Traces"), "6");
    assert_eq!(kpi(&d.body, "Error rate"), "0%");
    assert_eq!(kpi(&d.body, "Tokens"), "720");

    let exps = w.get("/experiments").await;
    let row = exps
        .body
        .split("<tr data-href")
        .find(|r| r.contains(">dash<"))
        .unwrap();
    assert!(row.contains(">6<"), "{row}");
}

#[tokio::test]
async fn rollups_follow_traces_that_move_between_hours() {
    let s = Server::start();
    let exp = new_experiment(&s, "moves").await;
    let t0 = now_ms() - 3_600_000;
    let traces: Vec<(String, Vec<SpanSpec>, i64)> = (0..4)
        .map(|i| {
            (
                hex_of(3000 + i),
                vec![SpanSpec::root(1, "t").start_ms(t0)],
                50,
            )
        })
        .collect();
    export_many(&s, &exp, &traces).await;
    let mut w = Web::new(&s);
    let day = format!("/experiments/{exp}/dashboard?range=24h");
    let week = format!("/experiments/{exp}/dashboard?range=7d");
    assert_eq!(kpi(&w.get(&day).await.body, "Traces"), "4");
    // Let the recomputed rollups be written, so the next change must dirty
    // them again rather than being computed fresh by chance.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(kpi(&w.get(&day).await.body, "Traces"), "4");

    // The client's trace info arrives later and says the trace started 30 h
    // ago: it leaves today's hour and lands in an older one.
    let when = chrono::DateTime::from_timestamp_millis(now_ms() - 30 * 3_600_000)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = format!("tr-{}", hex_of(3000));
    let r = s
        .client()
        .post(
            "/api/3.0/mlflow/traces",
            json!({"trace": {"trace_info": {
                "trace_id": id,
                "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}},
                "request_time": when,
                "execution_duration": "2.5s",
                "state": "ERROR",
                "trace_metadata": {}, "tags": {}
            }}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = w.get(&day).await;
    assert_eq!(kpi(&d.body, "Traces"), "3");
    assert_eq!(kpi(&d.body, "Error rate"), "0%");
    let wk = w.get(&week).await;
    assert_eq!(kpi(&wk.body, "Traces"), "4");
    assert_eq!(kpi(&wk.body, "Error rate"), "25%");
}
