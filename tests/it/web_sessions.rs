//! The sessions and users pages over HTTP: every number they show against
//! what the JSON API (`/api/tracebox/v1/`) says for the same data, paging
//! and filters carried in the URL, the transcript of a session, human
//! feedback on a session stored the MLflow way (read back through both
//! APIs), and hostile ids and turn text rendered as text.

use serde_json::{Value, json};

use crate::harness::{Client, Server};
use crate::otlp_http::SpanSpec;
use crate::sessions_api::{T0, Turn, dataset, load};
use crate::web::{Page, Web, export_many, hex_of, new_experiment, now_ms, unescape};

/// The `<tr>` rows of a list page, as (the row's `data-{key}` id, its HTML).
fn rows(p: &Page, key: &str) -> Vec<(String, String)> {
    p.body
        .split("<tr data-href=\"")
        .skip(1)
        .map(|chunk| {
            let row = &chunk[..chunk.find("</tr>").unwrap_or(chunk.len())];
            (attr(row, &format!("data-{key}")), row.to_string())
        })
        .collect()
}

/// An attribute's value (unescaped) in a piece of HTML.
fn attr(html: &str, name: &str) -> String {
    let pat = format!("{name}=\"");
    let at = html
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + pat.len();
    unescape(&html[at..at + html[at..].find('"').unwrap()])
}

/// The text of the element marked `data-{kind}="{name}"` (a cell or fact).
fn cell(html: &str, kind: &str, name: &str) -> String {
    let pat = format!("data-{kind}=\"{name}\"");
    let at = html
        .find(&pat)
        .unwrap_or_else(|| panic!("no {pat} in {html}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    unescape(&rest[start..start + rest[start..].find('<').unwrap()])
}

/// A number as the pages print it (`1,234`).
fn num(s: &str) -> i64 {
    s.replace(',', "")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

async fn api(c: &Client, path: &str) -> Value {
    let r = c.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r.body
}

/// Checks a page's session rows against the API's sessions, in order.
fn same_sessions(page: &Page, want: &[Value], with_user: bool) {
    let got = rows(page, "session");
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    let want_ids: Vec<&str> = want
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want_ids);
    for ((id, row), s) in got.iter().zip(want) {
        assert_eq!(num(&cell(row, "col", "turns")), s["turns"], "{id} turns");
        assert_eq!(
            num(&cell(row, "col", "errors")),
            s["error_count"],
            "{id} errors"
        );
        assert_eq!(
            num(&cell(row, "col", "tokens")),
            s["tokens"]["total"],
            "{id} tokens"
        );
        let a = &s["assessments"];
        let up = a["positive"].as_i64().unwrap();
        if up > 0 {
            assert!(
                row.contains(&format!("<span class=\"sr\">positive:</span>{up}</span>")),
                "{id}: {up} positive in {row}"
            );
        } else {
            assert!(!row.contains("positive:"), "{id}");
        }
        let down = a["negative"].as_i64().unwrap();
        if down > 0 {
            assert!(row.contains(&format!("<span class=\"sr\">negative:</span>{down}</span>")));
        }
        let sl = a["session_level"].as_i64().unwrap();
        assert_eq!(
            sl > 0,
            row.contains(&format!(">{sl} on session<")),
            "{id}: {sl} session-level"
        );
        match s["user"].as_str() {
            Some(u) if with_user => assert!(
                row.contains(&format!("/users/{u}\"")),
                "{id} links its user"
            ),
            _ => {}
        }
    }
}

#[tokio::test]
async fn sessions_and_users_pages_show_what_the_api_says() {
    let s = Server::start();
    let c = s.client();
    let data = dataset();
    let exp = load(&c, &data).await;
    let mut w = Web::new(&s);

    // The sessions list: every session, newest activity first, same numbers.
    let want = api(
        &c,
        &format!("/api/tracebox/v1/sessions?experiment_id={exp}"),
    )
    .await;
    let want = want["sessions"].as_array().unwrap().clone();
    assert_eq!(want.len(), 10);
    let list = w.get(&format!("/experiments/{exp}/sessions")).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.header("content-security-policy")
            .contains("script-src 'self'")
    );
    same_sessions(&list, &want, true);
    // The navigation marks Sessions; switching experiments keeps to them.
    assert!(list.body.contains(&format!(
        "href=\"/experiments/{exp}/sessions\" data-key=\"s\" class=\"active\""
    )));
    assert!(
        list.body
            .contains("role=\"menuitem\" href=\"/experiments/0/sessions\"")
    );
    // The user-less session says so.
    let (_, nine) = rows(&list, "session")
        .into_iter()
        .find(|(id, _)| id == "sess-09")
        .unwrap();
    assert!(nine.contains("<span class=\"muted\">—</span>"));

    // Filtered by user, as the API filters.
    for u in ["alice", "bob", "carol"] {
        let want = api(
            &c,
            &format!("/api/tracebox/v1/sessions?experiment_id={exp}&user={u}"),
        )
        .await;
        let page = w
            .get(&format!("/experiments/{exp}/sessions?user={u}"))
            .await;
        same_sessions(&page, want["sessions"].as_array().unwrap(), true);
        assert!(page.body.contains(&format!("name=\"user\" value=\"{u}\"")));
        assert!(page.body.contains(&format!(
            "href=\"/experiments/{exp}/users/{u}\" data-link=\"user\""
        )));
    }
    let nobody = w
        .get(&format!("/experiments/{exp}/sessions?user=zed"))
        .await;
    assert_eq!(rows(&nobody, "session").len(), 0);
    assert!(nobody.body.contains("No sessions match"));

    // A custom time range (minutes, UTC) is a window on last activity.
    let minute = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let from = (T0 + 1_200_000) / 60_000 * 60_000;
    let to = (T0 + 3_700_000) / 60_000 * 60_000;
    let want_w = api(
        &c,
        &format!(
            "/api/tracebox/v1/sessions?experiment_id={exp}&start_ms={from}&end_ms={}",
            to - 1
        ),
    )
    .await;
    let want_w = want_w["sessions"].as_array().unwrap().clone();
    assert!(!want_w.is_empty() && want_w.len() < 10);
    let page = w
        .get(&format!(
            "/experiments/{exp}/sessions?range=custom&from={}&to={}&tz=0",
            minute(from),
            minute(to)
        ))
        .await;
    same_sessions(&page, &want_w, true);
    // These sessions are months old: none in the last day.
    let recent = w
        .get(&format!("/experiments/{exp}/sessions?range=24h"))
        .await;
    assert_eq!(rows(&recent, "session").len(), 0);
    let bad = w
        .get(&format!(
            "/experiments/{exp}/sessions?range=custom&from=soon"
        ))
        .await;
    assert!(bad.body.contains("is not a date and time"));
    assert_eq!(
        rows(&bad, "session").len(),
        10,
        "a bad range lists all time"
    );

    // The users list: same users, numbers and positive share.
    let want_u = api(&c, &format!("/api/tracebox/v1/users?experiment_id={exp}")).await;
    let want_u = want_u["users"].as_array().unwrap().clone();
    let users = w.get(&format!("/experiments/{exp}/users")).await;
    assert_eq!(users.status, 200);
    let got = rows(&users, "user");
    assert_eq!(
        got.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
        want_u
            .iter()
            .map(|u| u["user"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
    for ((name, row), u) in got.iter().zip(&want_u) {
        for (col, key) in [
            ("sessions", "sessions"),
            ("traces", "traces"),
            ("errors", "error_count"),
        ] {
            assert_eq!(num(&cell(row, "col", col)), u[key], "{name} {col}");
        }
        assert_eq!(num(&cell(row, "col", "tokens")), u["tokens"]["total"]);
        let share = u["assessments"]["positive_share"].as_f64().unwrap();
        let label = format!("{:.0}%", share * 100.0);
        assert!(
            row.contains(&format!("<span class=\"share-n\">{label}</span>")),
            "{name}: {label} in {row}"
        );
    }

    // One user's page: facts, and their sessions as the API lists them.
    for u in &want_u {
        let name = u["user"].as_str().unwrap();
        let page = w.get(&format!("/experiments/{exp}/users/{name}")).await;
        assert_eq!(page.status, 200);
        for (fact, key) in [
            ("sessions", "sessions"),
            ("traces", "traces"),
            ("errors", "error_count"),
        ] {
            assert_eq!(
                num(&cell(&page.body, "fact", fact)),
                u[key],
                "{name} {fact}"
            );
        }
        let own = api(
            &c,
            &format!("/api/tracebox/v1/users/{name}/sessions?experiment_id={exp}"),
        )
        .await;
        same_sessions(&page, own["sessions"].as_array().unwrap(), false);
        // Its traces link filters on the user wherever the SDK put it.
        assert!(page.body.contains("filter=tags.%60mlflow.trace.user%60"));
    }

    // Unknown things are 404 pages.
    for path in [
        format!("/experiments/{exp}/sessions/no-such"),
        format!("/experiments/{exp}/users/nobody"),
        "/experiments/999/sessions".to_string(),
        "/experiments/999/users".to_string(),
    ] {
        let p = w.get(&path).await;
        assert_eq!(p.status, 404, "{path}");
        assert!(p.header("content-type").starts_with("text/html"));
    }
}

/// The `<li class="turn">` items of a session page.
fn turns(p: &Page) -> Vec<String> {
    p.body
        .split("<li class=\"turn")
        .skip(1)
        .map(|c| c[..c.find("</li>").unwrap()].to_string())
        .collect()
}

/// The text of each chat bubble of a turn: (user, assistant).
fn bubbles(turn: &str) -> (String, String) {
    let body = |cls: &str| {
        let at = turn
            .find(&format!("class=\"msg {cls}"))
            .unwrap_or_else(|| panic!("no {cls} bubble in {turn}"));
        let rest = &turn[at..];
        let b = rest.find("class=\"msg-body").unwrap();
        let start = b + rest[b..].find('>').unwrap() + 1;
        unescape(&rest[start..start + rest[start..].find("</div>").unwrap()])
    };
    (body("user"), body("assistant"))
}

#[tokio::test]
async fn a_session_reads_as_a_transcript() {
    let s = Server::start();
    let c = s.client();
    let data = dataset();
    let exp = load(&c, &data).await;
    let mut w = Web::new(&s);

    for sid in ["sess-02", "sess-00", "sess-09"] {
        let want = api(
            &c,
            &format!("/api/tracebox/v1/sessions/{sid}?experiment_id={exp}"),
        )
        .await;
        let page = w.get(&format!("/experiments/{exp}/sessions/{sid}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let summary = &want["session"];
        assert_eq!(num(&cell(&page.body, "fact", "turns")), summary["turns"]);
        assert_eq!(
            num(&cell(&page.body, "fact", "tokens")),
            summary["tokens"]["total"]
        );
        match summary["user"].as_str() {
            Some(u) => assert_eq!(cell(&page.body, "fact", "user"), u),
            None => assert!(!page.body.contains("data-fact=\"user\"")),
        }
        let api_turns = want["turns"].as_array().unwrap();
        let got = turns(&page);
        assert_eq!(got.len(), api_turns.len(), "{sid}");
        let mine: Vec<&Turn> = data
            .iter()
            .filter(|t| t.session.as_deref() == Some(sid))
            .collect();
        for (i, ((html, t), d)) in got.iter().zip(api_turns).zip(&mine).enumerate() {
            assert!(html.contains(&format!("data-turn=\"{}\"", i + 1)));
            // The same text the API picks, which is what was sent.
            let (user, assistant) = bubbles(html);
            assert_eq!(user, t["user_message"].as_str().unwrap());
            assert_eq!(user, d.question);
            assert_eq!(assistant, d.answer);
            assert!(html.contains(&format!("href=\"/traces/{}\"", d.trace_id)));
            let failed = d.error;
            assert_eq!(html.starts_with(" failed"), failed, "turn {i}");
            // Per-turn chips: the turn's own assessments, not the session's.
            for a in t["assessments"].as_array().unwrap() {
                let name = a["name"].as_str().unwrap();
                assert!(html.contains(&format!("<b>{name}</b>")), "{sid} turn {i}");
            }
            assert!(!html.contains("<b>user_frustration</b>"));
        }
        // Session-level assessments, up front.
        let sl = want["session_assessments"].as_array().unwrap();
        assert_eq!(
            page.body.matches("<article class=\"assess").count(),
            sl.len(),
            "{sid}"
        );
        for a in sl {
            assert!(page.body.contains(&format!(
                "data-assessment-id=\"{}\"",
                a["assessment_id"].as_str().unwrap()
            )));
        }
    }

    // "Traces of this session" lists its traces, whether the SDK put the
    // session id in tags or in metadata (this data set does both).
    let page = w.get(&format!("/experiments/{exp}/sessions/sess-02")).await;
    let at = page.body.find(">Traces of this session<").unwrap();
    let start = page.body[..at].rfind("href=\"").unwrap() + 6;
    let href = unescape(&page.body[start..start + page.body[start..].find('"').unwrap()]);
    let filtered = w.get(&href).await;
    assert!(!filtered.body.contains("id=\"filter-error\""), "{href}");
    assert_eq!(filtered.rows(), 5, "{href}");
    let mixed: Vec<bool> = data
        .iter()
        .filter(|t| t.session.as_deref() == Some("sess-02"))
        .map(|t| t.in_tags)
        .collect();
    assert!(mixed.contains(&true) && mixed.contains(&false));

    // The first turn's trace page marks the session-level one as such, and
    // links to its session and user pages.
    let first = data
        .iter()
        .find(|t| t.session.as_deref() == Some("sess-00"))
        .unwrap();
    let trace = w.get(&format!("/traces/{}", first.trace_id)).await;
    assert!(trace.body.contains("<span class=\"a-kind ses\""));
    assert!(trace.body.contains(&format!(
        "href=\"/experiments/{exp}/sessions/sess-00\" data-link=\"session\""
    )));
    assert!(trace.body.contains(&format!(
        "href=\"/experiments/{exp}/users/alice\" data-link=\"user\""
    )));
    // ...and so do the trace list's cells.
    let list = w.get(&format!("/experiments/{exp}/traces")).await;
    assert!(list.body.contains(&format!(
        "class=\"session\" href=\"/experiments/{exp}/sessions/sess-00\""
    )));
    assert!(list.body.contains(&format!(
        "class=\"user\" href=\"/experiments/{exp}/users/alice\""
    )));
}

#[tokio::test]
async fn long_lists_and_transcripts_page_without_gaps() {
    let s = Server::start();
    let exp = new_experiment(&s, "many").await;
    let t0 = now_ms() - 3_600_000;
    // 130 sessions of one turn, and one of 120 turns, across 3 users.
    let mut traces: Vec<(String, Vec<SpanSpec>, i64)> = (0..130)
        .map(|i| {
            (
                hex_of(5000 + i),
                vec![
                    SpanSpec::root(1, "turn")
                        .start_ms(t0 + i as i64 * 1000)
                        .inputs(json!(format!("q{i}")))
                        .outputs(json!(format!("a{i}")))
                        .attr("session.id", json!(format!("s-{i:03}")))
                        .attr("user.id", json!(format!("u{}", i % 3))),
                ],
                10,
            )
        })
        .collect();
    traces.extend((0..120).map(|k| {
        (
            hex_of(6000 + k),
            vec![
                SpanSpec::root(1, "turn")
                    .start_ms(t0 - 3_600_000 + k as i64 * 1000)
                    .inputs(json!(format!("long question {k}")))
                    .outputs(json!(format!("long answer {k}")))
                    .attr("session.id", json!("long"))
                    .attr("user.id", json!("u0")),
            ],
            10,
        )
    }));
    for chunk in traces.chunks(50) {
        export_many(&s, &exp, chunk).await;
    }
    let mut w = Web::new(&s);
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

    // Sessions: 50 + 50 + 31, no duplicates, back and forth.
    let mut seen = Vec::new();
    let mut page = w.get(&format!("/experiments/{exp}/sessions")).await;
    let mut sizes = Vec::new();
    loop {
        let r = rows(&page, "session");
        assert!(sizes.len() < 10, "runaway paging");
        sizes.push(r.len());
        seen.extend(r.into_iter().map(|(id, _)| id));
        match next(&page) {
            Some(h) => page = w.get(&h).await,
            None => break,
        }
    }
    assert_eq!(sizes, vec![50, 50, 31]);
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 131);
    assert_eq!(seen[0], "s-129", "newest first");
    assert_eq!(seen[130], "long");
    assert!(page.body.contains("Showing 101–131"));
    let back = w.get(&prev(&page).unwrap()).await;
    assert!(back.body.contains("Showing 51–100"));
    assert_eq!(rows(&back, "session")[0].0, seen[50]);
    // Paging keeps the view: u1's sessions only, on every page.
    let mut page = w.get(&format!("/experiments/{exp}/sessions?user=u1")).await;
    let mut n = 0;
    loop {
        for (_, row) in rows(&page, "session") {
            assert!(row.contains("/users/u1\""));
            n += 1;
        }
        match next(&page) {
            Some(h) => {
                assert!(n < 200, "runaway paging");
                assert!(h.contains("user=u1"));
                page = w.get(&h).await;
            }
            None => break,
        }
    }
    assert_eq!(n, 43);
    // A page token from elsewhere: the first page, with a note.
    let stale = w
        .get(&format!("/experiments/{exp}/sessions?page_token=bogus"))
        .await;
    assert_eq!(rows(&stale, "session").len(), 50);
    assert!(stale.body.contains("showing the first page"));

    // Users page too (3 users: one page).
    let users = w.get(&format!("/experiments/{exp}/users")).await;
    assert_eq!(rows(&users, "user").len(), 3);
    assert_eq!(
        num(&cell(
            &rows(&users, "user")
                .into_iter()
                .find(|(u, _)| u == "u0")
                .unwrap()
                .1,
            "col",
            "sessions"
        )),
        45
    );

    // A 120-turn transcript: 50 + 50 + 20 turns, numbered on.
    let mut page = w.get(&format!("/experiments/{exp}/sessions/long")).await;
    let mut numbers = Vec::new();
    loop {
        for t in turns(&page) {
            let n: usize = attr(&t, "data-turn").parse().unwrap();
            let (q, a) = bubbles(&t);
            assert_eq!(
                (q, a),
                (
                    format!("long question {}", n - 1),
                    format!("long answer {}", n - 1)
                )
            );
            numbers.push(n);
        }
        assert!(numbers.len() < 500, "runaway paging");
        match next(&page) {
            Some(h) => page = w.get(&h).await,
            None => break,
        }
    }
    assert_eq!(numbers, (1..=120).collect::<Vec<_>>());
    assert!(page.body.contains("turns 101–120 of 120"));
    let back = w.get(&prev(&page).unwrap()).await;
    assert!(back.body.contains("turns 51–100 of 120"));
}

#[tokio::test]
async fn session_feedback_is_stored_the_mlflow_way() {
    let s = Server::start();
    let c = s.client();
    let data = dataset();
    let exp = load(&c, &data).await;
    let mut w = Web::new(&s);
    let url = format!("/experiments/{exp}/sessions/sess-02");
    let page = w.get(&url).await;
    let csrf = page.csrf();
    let action = format!("{url}/feedback");
    let first = data
        .iter()
        .filter(|t| t.session.as_deref() == Some("sess-02"))
        .min_by_key(|t| t.time)
        .unwrap();

    // Refused without the page's token, or from another site.
    let form = |t: &'static str| {
        [
            ("csrf", t),
            ("verdict", "down"),
            ("comment", "Went in circles."),
            ("source_id", "reviewer-7"),
        ]
    };
    let token: &'static str = Box::leak(csrf.clone().into_boxed_str());
    assert_eq!(w.post(&action, &form(""), &[]).await.status, 403);
    let cross = w
        .post(&action, &form(token), &[("origin", "http://evil.example")])
        .await;
    assert_eq!(cross.status, 403);
    let bad = w
        .post(
            &action,
            &[("csrf", token), ("verdict", "up"), ("score", "1")],
            &[],
        )
        .await;
    assert_eq!(bad.status, 303);
    assert!(
        bad.location()
            .ends_with("?error=both-values#session-assessments")
    );
    let shown = w.get(&bad.location()).await;
    assert!(shown.body.contains("either thumbs up/down or a score"));

    // Saved: on the first turn, marked with the session, from a person.
    let ok = w.post(&action, &form(token), &[("origin", &s.url)]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(
        ok.location(),
        format!("{url}?saved=feedback#session-assessments")
    );
    let one = api(
        &c,
        &format!("/api/tracebox/v1/sessions/sess-02?experiment_id={exp}"),
    )
    .await;
    let sl = one["session_assessments"].as_array().unwrap();
    assert_eq!(sl.len(), 1, "{one}");
    assert_eq!(sl[0]["name"], "session_feedback");
    assert_eq!(sl[0]["value"], json!(false));
    assert_eq!(sl[0]["trace_id"], first.trace_id);
    assert_eq!(
        sl[0]["source"],
        json!({"type": "HUMAN", "id": "reviewer-7"})
    );
    assert_eq!(sl[0]["rationale"], "Went in circles.");
    assert_eq!(sl[0]["metadata"]["mlflow.trace.session"], "sess-02");
    assert_eq!(one["session"]["assessments"]["session_level"], 1);
    // MLflow's API shows it on the first trace, as MLflow would store it.
    let info = api(&c, &format!("/api/3.0/mlflow/traces/{}", first.trace_id)).await;
    let mine = info["trace"]["trace_info"]["assessments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["assessment_name"] == "session_feedback")
        .cloned()
        .expect("on the first trace");
    assert_eq!(mine["metadata"]["mlflow.trace.session"], "sess-02");
    assert_eq!(mine["feedback"]["value"], json!(false));
    assert_eq!(mine["source"]["source_type"], "HUMAN");
    // The page shows it after the redirect, and the list counts it.
    let page = w.get(&ok.location()).await;
    assert!(page.body.contains("Feedback saved."));
    let aid = sl[0]["assessment_id"].as_str().unwrap();
    assert!(page.body.contains(&format!("data-assessment-id=\"{aid}\"")));
    assert!(unescape(&page.body).contains("Went in circles."));
    let list = w.get(&format!("/experiments/{exp}/sessions")).await;
    let (_, row) = rows(&list, "session")
        .into_iter()
        .find(|(id, _)| id == "sess-02")
        .unwrap();
    assert!(row.contains(">1 on session<"));

    // A score instead of a thumb, with a name of one's own.
    let scored = w
        .post(
            &action,
            &[("csrf", token), ("score", "0.9"), ("name", "resolution")],
            &[],
        )
        .await;
    assert_eq!(scored.status, 303);
    let one = api(
        &c,
        &format!("/api/tracebox/v1/sessions/sess-02?experiment_id={exp}"),
    )
    .await;
    let r = one["session_assessments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "resolution")
        .cloned()
        .unwrap();
    assert_eq!(r["value"], json!(0.9));
    assert_eq!(r["source"]["id"], "tracebox-ui");

    // Deleting goes through the session: only its own assessments.
    let turn_assessment = data
        .iter()
        .find(|t| t.session.as_deref() == Some("sess-02") && !t.feedback.is_empty())
        .unwrap();
    let turn_a = api(
        &c,
        &format!("/api/3.0/mlflow/traces/{}", turn_assessment.trace_id),
    )
    .await;
    let other_id = turn_a["trace"]["trace_info"]["assessments"][0]["assessment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = w
        .post(
            &format!("{url}/assessments/{other_id}/delete"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(
        refused.status, 404,
        "a turn's assessment is not the session's"
    );
    let del = w
        .post(
            &format!("{url}/assessments/{aid}/delete"),
            &[("csrf", "")],
            &[],
        )
        .await;
    assert_eq!(del.status, 403);
    let del = w
        .post(
            &format!("{url}/assessments/{aid}/delete"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(del.status, 303);
    let one = api(
        &c,
        &format!("/api/tracebox/v1/sessions/sess-02?experiment_id={exp}"),
    )
    .await;
    assert_eq!(one["session_assessments"].as_array().unwrap().len(), 1);
    assert_eq!(one["session"]["assessments"]["session_level"], 1);
    // Feedback on a session that does not exist is a 404 and stores nothing.
    let missing = w
        .post(
            &format!("/experiments/{exp}/sessions/nope/feedback"),
            &[("csrf", &csrf), ("verdict", "up")],
            &[],
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn hostile_ids_and_turn_text_render_as_text() {
    let s = Server::start();
    let t0 = now_ms() - 60_000;
    let evil_session = "\"><img src=x onerror=alert('s')>/../x?y#z";
    let evil_user = "<script>alert('u')</script>";
    let spans = vec![
        SpanSpec::root(1, "<svg onload=alert('name')>")
            .start_ms(t0)
            .inputs(json!({"messages": [{"role": "user", "content": "<script>alert('said')</script>"}]}))
            .outputs(json!({"choices": [{"message": {"role": "assistant", "content": "<iframe src=javascript:alert('reply')></iframe>"}}]}))
            .attr("session.id", json!(evil_session))
            .attr("user.id", json!(evil_user)),
        SpanSpec::child(2, 1, "second turn")
            .start_ms(t0 + 1),
    ];
    export_many(&s, "0", &[(hex_of(9), spans, 20)]).await;
    let second = vec![
        SpanSpec::root(1, "turn 2")
            .start_ms(t0 + 1000)
            .inputs(json!("javascript:alert('q')"))
            .outputs(json!("\"><b onmouseover=alert('a')>x</b>"))
            .attr("session.id", json!(evil_session))
            .attr("user.id", json!(evil_user)),
    ];
    export_many(&s, "0", &[(hex_of(10), second, 20)]).await;
    let c = s.client();
    let enc = |v: &str| {
        form_urlencoded::byte_serialize(v.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    // Feedback with a hostile comment, as a reviewer might paste it.
    let mut w = Web::new(&s);
    let session_url = format!("/experiments/0/sessions/{}", enc(evil_session));
    let page = w.get(&session_url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();
    let ok = w
        .post(
            &format!("{session_url}/feedback"),
            &[
                ("csrf", &csrf),
                ("verdict", "up"),
                ("name", "<img src=x onerror=alert('n')>"),
                ("comment", "<script>alert('c')</script>"),
            ],
            &[],
        )
        .await;
    assert_eq!(ok.status, 303);
    let pages = [
        w.get("/experiments/0/sessions").await,
        w.get(&session_url).await,
        w.get("/experiments/0/users").await,
        w.get(&format!("/experiments/0/users/{}", enc(evil_user)))
            .await,
        w.get("/experiments/0/traces").await,
        w.get(&format!("/traces/tr-{}", hex_of(9))).await,
    ];
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.status, 200, "page {i}");
        for bad in [
            "<script>alert",
            "<img src",
            "<iframe",
            "<svg onload",
            "<b onmouseover",
            "href=\"javascript:",
            "src=\"javascript:",
        ] {
            assert!(!p.body.contains(bad), "page {i}: unescaped {bad:?}");
        }
        assert!(p.body.matches("<script").count() <= 1, "page {i}");
    }
    // Everything is there as text...
    let transcript = unescape(&pages[1].body);
    for said in [
        "<script>alert('said')</script>",
        "<iframe src=javascript:alert('reply')></iframe>",
        "javascript:alert('q')",
        "\"><b onmouseover=alert('a')>x</b>",
        "<script>alert('c')</script>",
        evil_session,
        evil_user,
    ] {
        assert!(transcript.contains(said), "{said} shown as text");
    }
    assert!(unescape(&pages[2].body).contains(evil_user));
    // ...and links are our own paths with the ids percent-encoded.
    let user_link = format!("href=\"/experiments/0/users/{}\"", enc(evil_user));
    assert!(pages[0].body.contains(&user_link), "list links the user");
    assert!(pages[5].body.contains(&user_link), "trace links the user");
    let session_link = format!("href=\"{session_url}\"");
    assert!(unescape(&pages[0].body).contains(&session_link));
    assert!(unescape(&pages[4].body).contains(&session_link));
    // The round trip through the encoded URL found the right session.
    let one = api(
        &c,
        &format!(
            "/api/tracebox/v1/sessions/{}?experiment_id=0",
            enc(evil_session)
        ),
    )
    .await;
    assert_eq!(one["session"]["turns"], 2);
    assert_eq!(
        one["session_assessments"][0]["rationale"],
        "<script>alert('c')</script>"
    );
}
