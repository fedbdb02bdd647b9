//! tracebox's session and user API (`/api/tracebox/v1/`) over a generated
//! multi-turn data set whose every aggregate is known from how it was
//! generated: lists, pagination, time filters, one session's turns, and the
//! aggregates following tag changes, assessment changes and deletions.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{Client, Server};
use crate::otlp_http::{SpanSpec, export_protobuf, trace_hex};

pub(crate) const T0: i64 = 1_795_000_000_000;
const USERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
pub(crate) struct Fb {
    pub(crate) name: &'static str,
    pub(crate) source: &'static str,
    pub(crate) value: Value,
    pub(crate) session_level: bool,
    pub(crate) expectation: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub(crate) seed: u8,
    pub(crate) trace_id: String,
    pub(crate) session: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) time: i64,
    pub(crate) error: bool,
    pub(crate) tokens_in: i64,
    pub(crate) tokens_out: i64,
    /// Session and user as tags (`update_current_trace(tags=)`) rather than
    /// metadata (`update_current_trace(session_id=, user=)`).
    pub(crate) in_tags: bool,
    pub(crate) question: String,
    pub(crate) answer: String,
    pub(crate) feedback: Vec<Fb>,
}

/// Ten sessions of 1-5 turns (one without a user), two session-less traces
/// of bob's, and one trace with neither.
pub(crate) fn dataset() -> Vec<Turn> {
    let mut out = Vec::new();
    let mut seed = 0u8;
    for i in 0..10usize {
        let turns = 1 + (i * 7) % 5;
        // Sessions start ten minutes apart, in a shuffled order.
        let base = T0 + ((i * 7) % 10) as i64 * 600_000;
        for k in 0..turns {
            seed += 1;
            let mut feedback = Vec::new();
            if k % 2 == 0 {
                feedback.push(Fb {
                    name: "user_satisfaction",
                    source: "HUMAN",
                    value: json!((i + k) % 3 != 0),
                    session_level: false,
                    expectation: false,
                });
            }
            if i % 2 == 1 {
                feedback.push(Fb {
                    name: "relevance",
                    source: "LLM_JUDGE",
                    value: json!(if k % 3 != 1 { "yes" } else { "no" }),
                    session_level: false,
                    expectation: false,
                });
            }
            if i == 0 {
                feedback.push(Fb {
                    name: "expected_answer",
                    source: "HUMAN",
                    value: json!({"facts": ["a", "b"]}),
                    session_level: false,
                    expectation: true,
                });
            }
            if k == 0 && i % 3 == 0 {
                feedback.push(Fb {
                    name: "user_frustration",
                    source: "LLM_JUDGE",
                    value: json!("none"),
                    session_level: true,
                    expectation: false,
                });
            }
            out.push(Turn {
                seed,
                trace_id: trace_hex(seed).1,
                session: Some(format!("sess-{i:02}")),
                user: (i != 9).then(|| USERS[i % 3].to_string()),
                time: base + k as i64 * 30_000,
                error: (i + k) % 4 == 3,
                tokens_in: 10 * (k as i64 + 1),
                tokens_out: 3 + i as i64,
                in_tags: (i + k) % 2 == 0,
                question: format!("question {k} of session {i}"),
                answer: format!("answer {k} of session {i}"),
                feedback,
            });
        }
    }
    for (j, error) in [(0, false), (1, true)] {
        seed += 1;
        out.push(Turn {
            seed,
            trace_id: trace_hex(seed).1,
            session: None,
            user: Some("bob".into()),
            time: T0 + 7_000_000 + j * 100_000,
            error,
            tokens_in: 1,
            tokens_out: 1,
            in_tags: j == 0,
            question: "standalone".into(),
            answer: "ok".into(),
            feedback: vec![Fb {
                name: "user_satisfaction",
                source: "HUMAN",
                value: json!(j == 0),
                session_level: false,
                expectation: false,
            }],
        });
    }
    seed += 1;
    out.push(Turn {
        seed,
        trace_id: trace_hex(seed).1,
        session: None,
        user: None,
        time: T0 + 8_000_000,
        error: false,
        tokens_in: 1,
        tokens_out: 1,
        in_tags: false,
        question: "anonymous".into(),
        answer: "ok".into(),
        feedback: vec![],
    });
    out
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn start_trace(c: &Client, exp: &str, t: &Turn) {
    let mut tags = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "mlflow.trace.tokenUsage".into(),
        json!(json!({"input_tokens": t.tokens_in, "output_tokens": t.tokens_out, "total_tokens": t.tokens_in + t.tokens_out}).to_string()),
    );
    let target = if t.in_tags { &mut tags } else { &mut metadata };
    if let Some(s) = &t.session {
        target.insert("mlflow.trace.session".into(), json!(s));
    }
    if let Some(u) = &t.user {
        target.insert("mlflow.trace.user".into(), json!(u));
    }
    let body = json!({"trace": {"trace_info": {
        "trace_id": t.trace_id,
        "client_request_id": format!("req-{}", t.seed),
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}},
        "request_time": rfc3339(t.time),
        "execution_duration": "0.005s",
        "state": if t.error { "ERROR" } else { "OK" },
        "trace_metadata": metadata,
        "tags": tags,
        "request_preview": t.question,
        "response_preview": t.answer,
    }}});
    let r = c.post("/api/3.0/mlflow/traces", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn send_spans(c: &Client, exp: &str, t: &Turn) {
    let mut root = SpanSpec::root(1, "chat")
        .start_ms(t.time)
        .span_type("CHAT_MODEL")
        .inputs(json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": t.question}]}))
        .outputs(json!({"choices": [{"message": {"role": "assistant", "content": t.answer}}]}));
    if t.error {
        root = root.error("model failed");
    }
    let (hex, _) = trace_hex(t.seed);
    let r = export_protobuf(c, &hex, &[root], Some(exp)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn log_assessment(c: &Client, t: &Turn, f: &Fb) -> String {
    let mut a = json!({
        "assessment_name": f.name,
        "trace_id": t.trace_id,
        "source": {"source_type": f.source, "source_id": "src-1"},
    });
    if f.expectation {
        a["expectation"] = json!({"serialized_value": {"serialization_format": "JSON_FORMAT", "value": f.value.to_string()}});
    } else {
        a["feedback"] = json!({"value": f.value});
    }
    if f.session_level {
        a["metadata"] = json!({"mlflow.trace.session": t.session});
    }
    let r = c
        .post(
            &format!("/api/3.0/mlflow/traces/{}/assessments", t.trace_id),
            json!({"assessment": a}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["assessment"]["assessment_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Starts a server and loads the data set; spans and info arrive in either
/// order. Returns the experiment id.
pub(crate) async fn load(c: &Client, data: &[Turn]) -> String {
    let r = c
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "chat-app"}),
        )
        .await;
    let exp = r.body["experiment_id"].as_str().unwrap().to_string();
    for t in data {
        if t.seed % 2 == 0 {
            send_spans(c, &exp, t).await;
            start_trace(c, &exp, t).await;
        } else {
            start_trace(c, &exp, t).await;
            send_spans(c, &exp, t).await;
        }
        for f in &t.feedback {
            log_assessment(c, t, f).await;
        }
    }
    exp
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    feedback: i64,
    positive: i64,
    negative: i64,
    human: i64,
    human_pos: i64,
    human_neg: i64,
    expectations: i64,
    session_level: i64,
}

fn polarity(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "yes" => Some(true),
        Value::String(s) if s == "no" => Some(false),
        _ => None,
    }
}

fn counts(turns: &[&Turn]) -> Counts {
    let mut c = Counts::default();
    for t in turns {
        for f in &t.feedback {
            if f.expectation {
                c.expectations += 1;
                continue;
            }
            let p = polarity(&f.value);
            c.feedback += 1;
            c.positive += i64::from(p == Some(true));
            c.negative += i64::from(p == Some(false));
            if f.source == "HUMAN" {
                c.human += 1;
                c.human_pos += i64::from(p == Some(true));
                c.human_neg += i64::from(p == Some(false));
            }
            c.session_level += i64::from(f.session_level);
        }
    }
    c
}

fn share(p: i64, n: i64) -> Value {
    if p + n == 0 {
        Value::Null
    } else {
        json!(p as f64 / (p + n) as f64)
    }
}

fn counts_json(c: &Counts, with_session_level: bool) -> Value {
    let mut v = json!({
        "feedback": c.feedback, "positive": c.positive, "negative": c.negative,
        "positive_share": share(c.positive, c.negative),
        "human_feedback": c.human, "human_positive": c.human_pos, "human_negative": c.human_neg,
        "human_positive_share": share(c.human_pos, c.human_neg),
        "expectations": c.expectations,
    });
    if with_session_level {
        v["session_level"] = json!(c.session_level);
    }
    v
}

/// Every session as the API should list it: newest last turn first.
fn expected_sessions(data: &[Turn], exp: &str) -> Vec<Value> {
    let mut by: BTreeMap<&str, Vec<&Turn>> = BTreeMap::new();
    for t in data {
        if let Some(s) = &t.session {
            by.entry(s).or_default().push(t);
        }
    }
    let mut out: Vec<Value> = by
        .into_iter()
        .map(|(sid, mut turns)| {
            turns.sort_by_key(|t| t.time);
            json!({
                "session_id": sid,
                "experiment_id": exp,
                "user": turns.iter().find_map(|t| t.user.clone()),
                "first_trace_id": turns[0].trace_id,
                "first_time_ms": turns[0].time,
                "last_time_ms": turns.last().unwrap().time,
                "turns": turns.len(),
                "error_count": turns.iter().filter(|t| t.error).count(),
                "tokens": {
                    "input": turns.iter().map(|t| t.tokens_in).sum::<i64>(),
                    "output": turns.iter().map(|t| t.tokens_out).sum::<i64>(),
                    "total": turns.iter().map(|t| t.tokens_in + t.tokens_out).sum::<i64>(),
                },
                "assessments": counts_json(&counts(&turns), true),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (b["last_time_ms"].as_i64(), b["session_id"].as_str())
            .cmp(&(a["last_time_ms"].as_i64(), a["session_id"].as_str()))
    });
    out
}

fn expected_users(data: &[Turn], exp: &str) -> Vec<Value> {
    let sessions = expected_sessions(data, exp);
    let mut by: BTreeMap<&str, Vec<&Turn>> = BTreeMap::new();
    for t in data {
        if let Some(u) = &t.user {
            by.entry(u).or_default().push(t);
        }
    }
    let mut out: Vec<Value> = by
        .into_iter()
        .map(|(uid, turns)| {
            let mut c = counts(&turns);
            c.session_level = 0;
            json!({
                "user": uid,
                "experiment_id": exp,
                "traces": turns.len(),
                "sessions": sessions.iter().filter(|s| s["user"] == uid).count(),
                "first_seen_ms": turns.iter().map(|t| t.time).min(),
                "last_seen_ms": turns.iter().map(|t| t.time).max(),
                "error_count": turns.iter().filter(|t| t.error).count(),
                "tokens": {
                    "input": turns.iter().map(|t| t.tokens_in).sum::<i64>(),
                    "output": turns.iter().map(|t| t.tokens_out).sum::<i64>(),
                    "total": turns.iter().map(|t| t.tokens_in + t.tokens_out).sum::<i64>(),
                },
                "assessments": counts_json(&c, false),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (b["last_seen_ms"].as_i64(), b["user"].as_str())
            .cmp(&(a["last_seen_ms"].as_i64(), a["user"].as_str()))
    });
    out
}

/// Follows next_page_token to the end; returns every item and the page sizes.
async fn all_pages(c: &Client, path: &str, key: &str) -> (Vec<Value>, Vec<usize>) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &token {
            Some(t) => format!("{path}{sep}page_token={t}"),
            None => path.to_string(),
        };
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text);
        let page = r.body[key].as_array().cloned().unwrap_or_default();
        sizes.push(page.len());
        items.extend(page);
        match r.body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return (items, sizes),
        }
        assert!(sizes.len() < 100, "runaway pagination");
    }
}

async fn sessions(c: &Client, exp: &str, extra: &str) -> Vec<Value> {
    all_pages(
        c,
        &format!("/api/tracebox/v1/sessions?experiment_id={exp}{extra}"),
        "sessions",
    )
    .await
    .0
}

async fn users(c: &Client, exp: &str, extra: &str) -> Vec<Value> {
    all_pages(
        c,
        &format!("/api/tracebox/v1/users?experiment_id={exp}{extra}"),
        "users",
    )
    .await
    .0
}

#[tokio::test]
async fn sessions_and_users_over_a_known_data_set() {
    let s = Server::start();
    let c = s.client();
    let data = dataset();
    let exp = load(&c, &data).await;
    let want_sessions = expected_sessions(&data, &exp);
    let want_users = expected_users(&data, &exp);
    assert_eq!(want_sessions.len(), 10);
    assert_eq!(want_users.len(), 3);

    // Every aggregate, exactly, in order.
    assert_eq!(sessions(&c, &exp, "").await, want_sessions);
    assert_eq!(users(&c, &exp, "").await, want_users);
    // A few literal answers, in case the model above and the server shared
    // a mistake: session 2 has five turns of carol's, one of them an error;
    // bob has 3 + 4 + 5 turns in sessions 1, 4, 7 and two without a session.
    let s2 = want_sessions
        .iter()
        .find(|s| s["session_id"] == "sess-02")
        .unwrap();
    assert_eq!(
        (&s2["turns"], &s2["user"], &s2["error_count"]),
        (&json!(5), &json!("carol"), &json!(1))
    );
    let bob = want_users.iter().find(|u| u["user"] == "bob").unwrap();
    assert_eq!((&bob["traces"], &bob["sessions"]), (&json!(14), &json!(3)));
    // The session without a user is listed, and belongs to nobody.
    let s9 = want_sessions
        .iter()
        .find(|s| s["session_id"] == "sess-09")
        .unwrap();
    assert_eq!(s9["user"], Value::Null);

    // Pagination: pages of 3, no duplicates or gaps, same order.
    let (paged, sizes) = all_pages(
        &c,
        &format!("/api/tracebox/v1/sessions?experiment_id={exp}&max_results=3"),
        "sessions",
    )
    .await;
    assert_eq!(paged, want_sessions);
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    let (paged, sizes) = all_pages(
        &c,
        &format!("/api/tracebox/v1/users?experiment_id={exp}&max_results=2"),
        "users",
    )
    .await;
    assert_eq!((paged, sizes), (want_users.clone(), vec![2, 1]));

    // Time filters: last activity within [start, end].
    for (start, end) in [
        (T0 + 1_200_000, T0 + 3_700_000),
        (T0, T0),
        (T0 + 5_400_000, i64::MAX),
        (0, T0 - 1),
    ] {
        let want: Vec<Value> = want_sessions
            .iter()
            .filter(|s| {
                let l = s["last_time_ms"].as_i64().unwrap();
                l >= start && l <= end
            })
            .cloned()
            .collect();
        let got = sessions(
            &c,
            &exp,
            &format!("&start_ms={start}&end_ms={end}&max_results=2"),
        )
        .await;
        assert_eq!(got, want, "window {start}..{end}");
        let want_u: Vec<Value> = want_users
            .iter()
            .filter(|u| {
                let l = u["last_seen_ms"].as_i64().unwrap();
                l >= start && l <= end
            })
            .cloned()
            .collect();
        assert_eq!(
            users(&c, &exp, &format!("&start_ms={start}&end_ms={end}")).await,
            want_u
        );
    }
    let only_start = sessions(&c, &exp, &format!("&start_ms={}", T0 + 3_000_000)).await;
    assert_eq!(
        only_start.len(),
        want_sessions
            .iter()
            .filter(|s| s["last_time_ms"].as_i64().unwrap() >= T0 + 3_000_000)
            .count()
    );

    // By user: as a filter and as the user's own route, paged.
    for u in USERS {
        let want: Vec<Value> = want_sessions
            .iter()
            .filter(|s| s["user"] == u)
            .cloned()
            .collect();
        assert_eq!(sessions(&c, &exp, &format!("&user={u}")).await, want);
        let (own, _) = all_pages(
            &c,
            &format!("/api/tracebox/v1/users/{u}/sessions?experiment_id={exp}&max_results=1"),
            "sessions",
        )
        .await;
        assert_eq!(own, want);
        let one = c
            .get(&format!("/api/tracebox/v1/users/{u}?experiment_id={exp}"))
            .await;
        assert_eq!(one.status, 200);
        assert_eq!(
            &one.body["user"],
            want_users.iter().find(|x| x["user"] == u).unwrap()
        );
    }

    // Another experiment sees none of it.
    let other = c
        .post(
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "other"}),
        )
        .await;
    let other = other.body["experiment_id"].as_str().unwrap();
    assert_eq!(sessions(&c, other, "").await, Vec::<Value>::new());
    assert_eq!(users(&c, other, "").await, Vec::<Value>::new());
}

#[tokio::test]
async fn one_session_as_ordered_turns() {
    let s = Server::start();
    let c = s.client();
    let data = dataset();
    let exp = load(&c, &data).await;
    // Session 0 of alice: one turn, an expectation, a session-level verdict.
    // Session 2 of carol: five turns.
    let turns: Vec<&Turn> = data
        .iter()
        .filter(|t| t.session.as_deref() == Some("sess-02"))
        .collect();
    let r = c
        .get(&format!(
            "/api/tracebox/v1/sessions/sess-02?experiment_id={exp}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["session"],
        expected_sessions(&data, &exp)
            .into_iter()
            .find(|s| s["session_id"] == "sess-02")
            .unwrap()
    );
    let got = r.body["turns"].as_array().unwrap();
    assert_eq!(got.len(), 5);
    for (i, (g, t)) in got.iter().zip(&turns).enumerate() {
        assert_eq!(g["turn"], i + 1);
        assert_eq!(g["trace_id"], t.trace_id);
        assert_eq!(g["client_request_id"], format!("req-{}", t.seed));
        assert_eq!(g["request_time_ms"], t.time);
        assert_eq!(g["state"], if t.error { "ERROR" } else { "OK" });
        assert_eq!(g["user"], "carol");
        assert_eq!(g["user_message"], t.question);
        assert_eq!(g["assistant_message"], t.answer);
        assert_eq!(g["request_preview"], t.question);
        assert_eq!(g["response_preview"], t.answer);
        assert_eq!(
            g["tokens"],
            json!({"input": t.tokens_in, "output": t.tokens_out, "total": t.tokens_in + t.tokens_out})
        );
        let names: Vec<&str> = g["assessments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = t
            .feedback
            .iter()
            .filter(|f| !f.session_level)
            .map(|f| f.name)
            .collect();
        assert_eq!(names, want, "turn {i}");
        for (a, f) in g["assessments"].as_array().unwrap().iter().zip(&t.feedback) {
            assert_eq!(a["value"], f.value);
            assert_eq!(a["source"], json!({"type": f.source, "id": "src-1"}));
            assert_eq!(a["valid"], true);
            assert_eq!(a["kind"], "feedback");
        }
    }
    // Session-level assessments come apart from the turns'.
    assert_eq!(r.body["session_assessments"], json!([]));
    let r0 = c
        .get(&format!(
            "/api/tracebox/v1/sessions/sess-00?experiment_id={exp}"
        ))
        .await;
    let sl = r0.body["session_assessments"].as_array().unwrap();
    assert_eq!(sl.len(), 1);
    assert_eq!(sl[0]["name"], "user_frustration");
    assert_eq!(sl[0]["metadata"]["mlflow.trace.session"], "sess-00");
    let t0 = &r0.body["turns"][0];
    let kinds: Vec<(&str, &str)> = t0["assessments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("user_satisfaction", "feedback"),
            ("expected_answer", "expectation")
        ]
    );
    assert_eq!(t0["assessments"][1]["value"], json!({"facts": ["a", "b"]}));

    // Turns page: 2 + 2 + 1, numbered on.
    let (paged, sizes) = all_pages(
        &c,
        &format!("/api/tracebox/v1/sessions/sess-02?experiment_id={exp}&max_results=2"),
        "turns",
    )
    .await;
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(&paged, got);
}

#[tokio::test]
async fn aggregates_follow_tags_assessments_and_deletions() {
    let s = Server::start();
    let c = s.client();
    let mut data = dataset();
    let exp = load(&c, &data).await;
    let check = |data: Vec<Turn>| {
        let exp = exp.clone();
        let c = &c;
        async move {
            assert_eq!(
                sessions(c, &exp, "").await,
                expected_sessions(&data, &exp),
                "sessions"
            );
            assert_eq!(
                users(c, &exp, "").await,
                expected_users(&data, &exp),
                "users"
            );
        }
    };

    // Move a turn to another session and user with tags (tags win over
    // metadata, as the SDK reads them).
    let idx = data
        .iter()
        .position(|t| t.session.as_deref() == Some("sess-02") && !t.in_tags)
        .unwrap();
    let tid = data[idx].trace_id.clone();
    for (k, v) in [
        ("mlflow.trace.session", "sess-04"),
        ("mlflow.trace.user", "dave"),
    ] {
        let r = c
            .send(
                "PATCH",
                &format!("/api/2.0/mlflow/traces/{tid}/tags"),
                Some(json!({"key": k, "value": v})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    data[idx].session = Some("sess-04".into());
    data[idx].user = Some("dave".into());
    check(data.clone()).await;

    // Deleting the tag falls back to the metadata the trace was logged with.
    let r = c
        .send(
            "DELETE",
            &format!("/api/2.0/mlflow/traces/{tid}/tags"),
            Some(json!({"key": "mlflow.trace.user"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    data[idx].user = Some("carol".into());
    check(data.clone()).await;

    // A new user on a session's first turn makes them its owner: the
    // session moves from bob's count to erin's.
    let first = data
        .iter()
        .position(|t| t.session.as_deref() == Some("sess-01"))
        .unwrap();
    let ftid = data[first].trace_id.clone();
    let r = c
        .send(
            "PATCH",
            &format!("/api/2.0/mlflow/traces/{ftid}/tags"),
            Some(json!({"key": "mlflow.trace.user", "value": "erin"})),
        )
        .await;
    assert_eq!(r.status, 200);
    data[first].user = Some("erin".into());
    check(data.clone()).await;

    // Assessments: a new rating, an update that flips one, an override (the
    // old one stops counting), deleting the override (it counts again).
    let t = data
        .iter()
        .position(|t| t.session.as_deref() == Some("sess-03"))
        .unwrap();
    let fb = Fb {
        name: "user_satisfaction",
        source: "HUMAN",
        value: json!(false),
        session_level: false,
        expectation: false,
    };
    let aid = log_assessment(&c, &data[t], &fb).await;
    data[t].feedback.push(fb);
    check(data.clone()).await;
    let trace = data[t].trace_id.clone();
    let r = c
        .send(
            "PATCH",
            &format!("/api/3.0/mlflow/traces/{trace}/assessments/{aid}"),
            Some(json!({"assessment": {"feedback": {"value": true}}, "update_mask": "feedback"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    data[t].feedback.last_mut().unwrap().value = json!(true);
    check(data.clone()).await;
    let r = c
        .post(
            &format!("/api/3.0/mlflow/traces/{trace}/assessments"),
            json!({"assessment": {"assessment_name": "user_satisfaction", "trace_id": trace,
                   "source": {"source_type": "LLM_JUDGE", "source_id": "j"},
                   "feedback": {"value": "no"}, "overrides": aid}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let override_id = r.body["assessment"]["assessment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let overridden = data[t].feedback.pop().unwrap();
    data[t].feedback.push(Fb {
        name: "user_satisfaction",
        source: "LLM_JUDGE",
        value: json!("no"),
        session_level: false,
        expectation: false,
    });
    check(data.clone()).await;
    let r = c
        .send(
            "DELETE",
            &format!("/api/3.0/mlflow/traces/{trace}/assessments/{override_id}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 200);
    data[t].feedback.pop();
    data[t].feedback.push(overridden);
    check(data.clone()).await;

    // Deleting traces: a turn, then a whole session, then all of bob's
    // session-less traces.
    let delete = |ids: Vec<String>, data: &mut Vec<Turn>| {
        data.retain(|t| !ids.contains(&t.trace_id));
        json!({"experiment_id": exp, "request_ids": ids})
    };
    let victims: Vec<String> = vec![data[t].trace_id.clone()];
    let body = delete(victims, &mut data);
    assert_eq!(
        c.post("/api/2.0/mlflow/traces/delete-traces", body)
            .await
            .status,
        200
    );
    check(data.clone()).await;
    let victims: Vec<String> = data
        .iter()
        .filter(|t| t.session.as_deref() == Some("sess-05"))
        .map(|t| t.trace_id.clone())
        .collect();
    let body = delete(victims, &mut data);
    assert_eq!(
        c.post("/api/2.0/mlflow/traces/delete-traces", body)
            .await
            .status,
        200
    );
    check(data.clone()).await;
    let gone = c
        .get(&format!(
            "/api/tracebox/v1/sessions/sess-05?experiment_id={exp}"
        ))
        .await;
    assert_eq!(gone.status, 404);
    // Everything of erin's goes: the user goes.
    let victims: Vec<String> = data
        .iter()
        .filter(|t| t.user.as_deref() == Some("erin"))
        .map(|t| t.trace_id.clone())
        .collect();
    let body = delete(victims, &mut data);
    assert_eq!(
        c.post("/api/2.0/mlflow/traces/delete-traces", body)
            .await
            .status,
        200
    );
    check(data.clone()).await;
    let gone = c
        .get(&format!("/api/tracebox/v1/users/erin?experiment_id={exp}"))
        .await;
    assert_eq!(gone.status, 404);
    // Deleting by age.
    let cutoff = T0 + 2_000_000;
    let r = c
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            json!({"experiment_id": exp, "max_timestamp_millis": cutoff}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    data.retain(|t| t.time > cutoff);
    check(data.clone()).await;

    // And after a restart nothing has drifted.
    let mut s = s;
    s.restart();
    let c = s.client();
    assert_eq!(sessions(&c, &exp, "").await, expected_sessions(&data, &exp));
    assert_eq!(users(&c, &exp, "").await, expected_users(&data, &exp));
}

#[tokio::test]
async fn bad_input_is_refused() {
    let s = Server::start();
    let c = s.client();
    let data: Vec<Turn> = dataset().into_iter().take(3).collect();
    let exp = load(&c, &data).await;
    let cases = [
        ("/api/tracebox/v1/sessions", 400, "experiment_id"),
        (
            "/api/tracebox/v1/sessions?experiment_id=abc",
            400,
            "experiment_id",
        ),
        ("/api/tracebox/v1/sessions?experiment_id=999", 404, "999"),
        ("/api/tracebox/v1/users?experiment_id=999", 404, "999"),
        (
            "/api/tracebox/v1/sessions?experiment_id=EXP&max_results=0",
            400,
            "max_results",
        ),
        (
            "/api/tracebox/v1/sessions?experiment_id=EXP&max_results=5000",
            400,
            "max_results",
        ),
        (
            "/api/tracebox/v1/sessions?experiment_id=EXP&start_ms=yesterday",
            400,
            "start_ms",
        ),
        (
            "/api/tracebox/v1/sessions?experiment_id=EXP&start_ms=10&end_ms=5",
            400,
            "start_ms",
        ),
        (
            "/api/tracebox/v1/users?experiment_id=EXP&page_token=not-a-token",
            400,
            "page_token",
        ),
        (
            "/api/tracebox/v1/sessions/nope?experiment_id=EXP",
            404,
            "nope",
        ),
        ("/api/tracebox/v1/sessions/sess-00", 400, "experiment_id"),
        (
            "/api/tracebox/v1/users/nobody?experiment_id=EXP",
            404,
            "nobody",
        ),
        (
            "/api/tracebox/v1/users/nobody/sessions?experiment_id=EXP",
            404,
            "nobody",
        ),
    ];
    for (path, status, mentions) in cases {
        let path = path.replace("EXP", &exp);
        let r = c.get(&path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        let code = if status == 404 {
            "RESOURCE_DOES_NOT_EXIST"
        } else {
            "INVALID_PARAMETER_VALUE"
        };
        assert_eq!(r.body["error_code"], code, "{path}");
        assert!(
            r.body["message"].as_str().unwrap().contains(mentions),
            "{path}: {}",
            r.body["message"]
        );
    }
    // A token of one list is refused by another.
    let r = c
        .get(&format!(
            "/api/tracebox/v1/sessions?experiment_id={exp}&max_results=1"
        ))
        .await;
    let tok = r.body["next_page_token"].as_str().unwrap().to_string();
    let r = c
        .get(&format!(
            "/api/tracebox/v1/users?experiment_id={exp}&page_token={tok}"
        ))
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .get(&format!(
            "/api/tracebox/v1/sessions/sess-00?experiment_id={exp}&page_token={tok}"
        ))
        .await;
    assert_eq!(r.status, 400);
    // Ids with characters that need escaping in a path still work.
    let t = Turn {
        seed: 200,
        trace_id: trace_hex(200).1,
        session: Some("a/b c?d".into()),
        user: Some("x@y/z".into()),
        ..data[0].clone()
    };
    start_trace(&c, &exp, &t).await;
    let r = c
        .get(&format!(
            "/api/tracebox/v1/sessions/a%2Fb%20c%3Fd?experiment_id={exp}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["session"]["user"], "x@y/z");
    let r = c
        .get(&format!(
            "/api/tracebox/v1/users/x%40y%2Fz/sessions?experiment_id={exp}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["sessions"][0]["session_id"], "a/b c?d");
}
