//! The judges page and the dashboard's pass-rate chart over HTTP, against
//! the real binary and the scripted fake OpenAI-compatible server: judges
//! created, started, stopped, backfilled and deleted through the page's
//! forms are what the MLflow scorer API and the judge status API then
//! report; forms need the page's CSRF token; refused forms change nothing;
//! hostile judge names and guidelines render as text; the pass rates the
//! page and the dashboard show are the verdicts the judges gave, and follow
//! deletions.

use std::time::Duration;

use serde_json::Value;

use crate::fake_llm::FakeLlm;
use crate::harness::Client;
use crate::judges::{T, boot, judge, send, send_info, status, toml, wait_until};
use crate::web::{Page, Web, now_ms, unescape};

const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_GUIDELINE: &str = "<script>alert('g')</script> Be polite.";

/// The `<article>` of one judge on the page (its HTML).
fn card<'a>(p: &'a Page, name_attr: &str) -> &'a str {
    let pat = format!("data-judge=\"{name_attr}\"");
    let at = p
        .body
        .find(&pat)
        .unwrap_or_else(|| panic!("no judge {name_attr} on the page"));
    let rest = &p.body[at..];
    &rest[..rest.find("</article>").unwrap()]
}

/// The text of the fact marked `data-col="{col}"` in a piece of HTML.
fn col(html: &str, c: &str) -> String {
    let pat = format!("data-col=\"{c}\"");
    let at = html
        .find(&pat)
        .unwrap_or_else(|| panic!("no {pat} in {html}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    unescape(&rest[start..start + rest[start..].find('<').unwrap()])
}

async fn scorer_names(c: &Client) -> Vec<String> {
    let r = c.get("/api/3.0/mlflow/scorers/list?experiment_id=0").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["scorers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["scorer_name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn scorer(c: &Client, name: &str) -> Value {
    let q: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let r = c
        .get(&format!(
            "/api/3.0/mlflow/scorers/get?experiment_id=0&name={q}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["scorer"].clone()
}

/// The pass-rate tooltip line of a judge in a dashboard bucket, e.g.
/// `politeness: 67% (2 of 3)`, from every bucket that has one.
fn judge_tooltips(body: &str, name: &str) -> Vec<String> {
    let start = body
        .find("id=\"judge-pass-rate\"")
        .expect("the dashboard has the judge chart");
    let chart = &body[start..start + body[start..].find("</figure>").unwrap()];
    unescape(chart)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix(&format!("{name}: "))
                .map(|rest| rest[..rest.find('<').unwrap_or(rest.len())].to_string())
        })
        .collect()
}

#[tokio::test]
async fn judges_page_drives_the_scorer_registry() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    let mut w = Web::new(&s);
    let page = w.get("/experiments/0/judges").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No judges yet"));
    assert!(
        page.body.contains("href=\"/experiments/0/judges\""),
        "linked in the navigation"
    );
    assert!(
        page.body.contains("gateway:/judge"),
        "the configured gateway is offered"
    );
    let csrf = page.csrf();

    // Forms need the page's token, from this site.
    let form = [
        ("kind", "guidelines"),
        ("name", HOSTILE_NAME),
        ("guidelines", HOSTILE_GUIDELINE),
        ("model", "gateway:/judge"),
        ("sample_rate", "1"),
    ];
    let no_token = w.post("/experiments/0/judges", &form, &[]).await;
    assert_eq!(no_token.status, 403);
    let mut with_token = vec![("csrf", csrf.as_str())];
    with_token.extend_from_slice(&form);
    let cross = w
        .post(
            "/experiments/0/judges",
            &with_token,
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(cross.status, 403);
    let mut other = Web::new(&s);
    assert_eq!(
        other
            .post("/experiments/0/judges", &with_token, &[])
            .await
            .status,
        403,
        "another browser cannot reuse the token"
    );
    assert!(
        scorer_names(&c).await.is_empty(),
        "refused posts wrote nothing"
    );

    // A Guidelines judge with a hostile name, started at once.
    let created = w.post("/experiments/0/judges", &with_token, &[]).await;
    assert_eq!(created.status, 303, "{}", created.body);
    assert!(created.location().ends_with("saved=created-started"));
    let sv = scorer(&c, HOSTILE_NAME).await;
    let payload: Value = serde_json::from_str(sv["serialized_scorer"].as_str().unwrap()).unwrap();
    assert_eq!(payload["builtin_scorer_class"], "Guidelines");
    assert_eq!(
        payload["builtin_scorer_pydantic_data"]["guidelines"],
        serde_json::json!([HOSTILE_GUIDELINE])
    );
    assert_eq!(
        payload["builtin_scorer_pydantic_data"]["model"],
        "gateway:/judge"
    );
    let st = status(&c, "0").await;
    assert_eq!(judge(&st, HOSTILE_NAME)["state"], "running");
    assert_eq!(judge(&st, HOSTILE_NAME)["sample_rate"], 1.0);

    // Refusals: nothing registered, the problem shown, the form kept.
    let before = scorer_names(&c).await.len();
    let empty = w
        .post(
            "/experiments/0/judges",
            &[
                ("csrf", &csrf),
                ("kind", "guidelines"),
                ("name", "no-guidelines"),
                ("guidelines", "  \n "),
            ],
            &[],
        )
        .await;
    assert_eq!(empty.status, 400);
    assert!(
        unescape(&empty.body).contains("Guidelines needs at least one guideline"),
        "{}",
        empty.body
    );
    assert!(empty.body.contains("value=\"no-guidelines\""), "form kept");
    let bad_filter = w
        .post(
            "/experiments/0/judges",
            &[
                ("csrf", &csrf),
                ("kind", "safety"),
                ("name", "safe"),
                ("sample_rate", "1"),
                ("filter", "tags.env ="),
            ],
            &[],
        )
        .await;
    assert_eq!(bad_filter.status, 400);
    let pii_model = w
        .post(
            "/experiments/0/judges",
            &[
                ("csrf", &csrf),
                ("kind", "pii"),
                ("model", "gateway:/judge"),
            ],
            &[],
        )
        .await;
    assert_eq!(pii_model.status, 400);
    assert!(unescape(&pii_model.body).contains("PIIDetection does not use a model"));
    assert_eq!(
        scorer_names(&c).await.len(),
        before,
        "refusals wrote nothing"
    );

    // Built-ins: PII (no model, keeps its kind's name) and a judge on a
    // gateway that is not configured (registered, shown misconfigured).
    for form in [
        vec![("csrf", csrf.as_str()), ("kind", "pii")],
        vec![
            ("csrf", csrf.as_str()),
            ("kind", "safety"),
            ("name", "ghost"),
            ("model", "gateway:/missing"),
        ],
    ] {
        let r = w.post("/experiments/0/judges", &form, &[]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(r.location().ends_with("saved=created"));
    }
    let mut names = scorer_names(&c).await;
    names.sort();
    let mut want = vec![HOSTILE_NAME.to_string(), "ghost".into(), "pii".into()];
    want.sort();
    assert_eq!(names, want);

    let page = w.get("/experiments/0/judges?saved=created").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Judge created."));
    // Hostile text is text.
    assert!(!page.body.contains(HOSTILE_NAME));
    assert!(!page.body.contains("<script>alert"));
    assert!(page.body.contains("&#60;img src=x onerror=alert(1)&#62;"));
    let ghost = card(&page, "ghost");
    assert_eq!(col(ghost, "state"), "Misconfigured");
    assert!(col(ghost, "problem").contains("[gateway.missing]"));
    assert_eq!(col(card(&page, "pii"), "state"), "Stopped");
    let hostile_attr = "&#60;img src=x onerror=alert(1)&#62;";
    assert_eq!(col(card(&page, hostile_attr), "state"), "Running");
    assert_eq!(col(card(&page, hostile_attr), "sample-rate"), "100%");
    // Its guideline is listed, as text.
    let hostile = card(&page, hostile_attr);
    let crit = &hostile[hostile.find("data-col=\"criteria\"").expect("criteria")..];
    assert!(
        unescape(&crit[..crit.find("</ul>").unwrap()])
            .contains(&format!("<li>{HOSTILE_GUIDELINE}</li>")),
        "{crit}"
    );
    assert!(crit.contains("&#60;script&#62;alert("), "{crit}");

    // Traces arrive; the started judge evaluates them (RUDE fails).
    let t0 = now_ms() - 2 * 3_600_000;
    let traces: Vec<T> = (0..3)
        .map(|i| {
            let answer = if i == 2 {
                "RUDE: go away"
            } else {
                "Happy to help! Mail me at a@example.com"
            };
            let mut t = T::new(700 + i, "Can you help?", answer);
            t.start_ms = t0 + i as i64 * 1000;
            t
        })
        .collect();
    for t in &traces {
        send(&c, "0", t).await;
    }
    wait_until("three verdicts", Duration::from_secs(30), || async {
        judge(&status(&c, "0").await, HOSTILE_NAME)["evaluated"] == 3
    })
    .await;
    let st = status(&c, "0").await;
    let j = judge(&st, HOSTILE_NAME);
    assert_eq!(
        (j["passed"].as_i64(), j["verdicts"].as_i64()),
        (Some(2), Some(3))
    );
    let page = w.get("/experiments/0/judges").await;
    let hostile = card(&page, hostile_attr);
    assert_eq!(col(hostile, "evaluated"), "3");
    assert!(hostile.contains("2 of 3 verdicts passed"), "{hostile}");
    assert!(hostile.contains("67% in the last 7 days"), "{hostile}");

    // The judged-traces link filters on the judge's assessments.
    let href = hostile
        .split("href=\"")
        .nth(1)
        .map(|h| unescape(&h[..h.find('"').unwrap()]))
        .unwrap();
    assert!(href.starts_with("/experiments/0/traces?filter="), "{href}");
    let judged = w.get(&href).await;
    assert_eq!(judged.status, 200);
    assert_eq!(judged.rows(), 3, "{href}");

    // Stop keeps the filter; start/update sets rate and filter.
    let r = w
        .post(
            "/experiments/0/judges/start",
            &[
                ("csrf", &csrf),
                ("name", "pii"),
                ("sample_rate", "0.5"),
                ("filter", "status = 'OK'"),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let st = status(&c, "0").await;
    assert_eq!(judge(&st, "pii")["state"], "running");
    assert_eq!(judge(&st, "pii")["sample_rate"], 0.5);
    assert_eq!(judge(&st, "pii")["filter_string"], "status = 'OK'");
    let r = w
        .post(
            "/experiments/0/judges/stop",
            &[("csrf", &csrf), ("name", "pii")],
            &[],
        )
        .await;
    assert!(r.location().ends_with("saved=stopped"));
    let st = status(&c, "0").await;
    assert_eq!(judge(&st, "pii")["state"], "stopped");
    assert_eq!(judge(&st, "pii")["filter_string"], "status = 'OK'");
    let too_high = w
        .post(
            "/experiments/0/judges/start",
            &[("csrf", &csrf), ("name", "pii"), ("sample_rate", "2")],
            &[],
        )
        .await;
    assert_eq!(too_high.status, 400);
    assert!(unescape(&too_high.body).contains("sample_rate must be between 0.0 and 1.0"));
    assert_eq!(judge(&status(&c, "0").await, "pii")["state"], "stopped");
    let no_token = w
        .post("/experiments/0/judges/stop", &[("name", HOSTILE_NAME)], &[])
        .await;
    assert_eq!(no_token.status, 403);
    assert_eq!(
        judge(&status(&c, "0").await, HOSTILE_NAME)["state"],
        "running"
    );

    // Backfill the stopped PII judge over stored traces: every trace is
    // queued once, and the judge (no model) works through them.
    let r = w
        .post(
            "/experiments/0/judges/backfill",
            &[("csrf", &csrf), ("name", "pii"), ("range", "24h")],
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location().ends_with("saved=backfill&matched=3&queued=3"),
        "{}",
        r.location()
    );
    wait_until("the backfill", Duration::from_secs(30), || async {
        judge(&status(&c, "0").await, "pii")["evaluated"] == 3
    })
    .await;
    let page = w.get(&r.location().replace(&s.url, "")).await;
    assert!(
        page.body
            .contains("3 traces matched, 3 evaluations queued.")
    );
    // Limited to the newest N, and again (already judged: nothing queued).
    let r = w
        .post(
            "/experiments/0/judges/backfill",
            &[
                ("csrf", &csrf),
                ("name", "pii"),
                ("range", "all"),
                ("limit", "2"),
            ],
            &[],
        )
        .await;
    assert!(
        r.location().ends_with("matched=2&queued=0"),
        "{}",
        r.location()
    );
    let r = w
        .post(
            "/experiments/0/judges/backfill",
            &[("csrf", &csrf), ("name", "pii"), ("range", "1h")],
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "1h is not a backfill range");

    // Delete.
    let r = w
        .post(
            "/experiments/0/judges/delete",
            &[("csrf", &csrf), ("name", "ghost")],
            &[],
        )
        .await;
    assert!(r.location().ends_with("saved=deleted"));
    assert!(!scorer_names(&c).await.contains(&"ghost".to_string()));
    let gone = w
        .post(
            "/experiments/0/judges/delete",
            &[("csrf", &csrf), ("name", "ghost")],
            &[],
        )
        .await;
    assert_eq!(gone.status, 400);
    assert!(unescape(&gone.body).contains("Scorer with name 'ghost' not found"));
}

#[tokio::test]
async fn dashboard_charts_judge_pass_rates_from_rollups_and_filters() {
    let fake = FakeLlm::start().await;
    let (_d, s) = boot(&toml(&fake, ""));
    let c = s.client();
    let mut w = Web::new(&s);
    let csrf = w.get("/experiments/0/judges").await.csrf();
    let r = w
        .post(
            "/experiments/0/judges",
            &[
                ("csrf", &csrf),
                ("kind", "guidelines"),
                ("name", "polite"),
                ("guidelines", "Be polite."),
                ("model", "gateway:/judge"),
                ("sample_rate", "1"),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);

    let dash = w.get("/experiments/0/dashboard?range=24h").await;
    assert!(dash.body.contains("No judge verdicts in this range"));
    assert!(judge_tooltips(&dash.body, "polite").is_empty());

    // Two hours: 3 of 4 pass in the first, 1 of 2 in the second.
    let h0 = (now_ms() / 3_600_000 - 3) * 3_600_000;
    let mut traces = Vec::new();
    for (i, (hour, rude)) in [
        (0, false),
        (0, false),
        (0, true),
        (0, false),
        (1, true),
        (1, false),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = if rude { "RUDE" } else { "Sure." };
        let mut t = T::new(800 + i as u64, "Help?", answer);
        if i == 2 {
            t = t.tag("pick", "me");
        }
        t.start_ms = h0 + hour * 3_600_000 + 60_000 + i as i64 * 1000;
        traces.push(t);
    }
    for t in &traces {
        send(&c, "0", t).await;
    }
    wait_until("six verdicts", Duration::from_secs(30), || async {
        judge(&status(&c, "0").await, "polite")["evaluated"] == 6
    })
    .await;

    // Hourly buckets from rollups; the same numbers from the row-by-row
    // path (a filter that keeps every trace) and with sub-hour buckets.
    let want = vec!["75% (3 of 4)".to_string(), "50% (1 of 2)".to_string()];
    for view in [
        "range=24h",
        "range=24h&filter=status+%3D+%27OK%27",
        "range=6h",
    ] {
        let dash = w.get(&format!("/experiments/0/dashboard?{view}")).await;
        assert_eq!(dash.status, 200);
        assert_eq!(judge_tooltips(&dash.body, "polite"), want, "{view}");
        assert!(dash.body.contains("4 of 6 verdicts passed"), "{view}");
    }
    // A filter that keeps some traces counts only their verdicts.
    let dash = w
        .get("/experiments/0/dashboard?range=24h&filter=tags.pick+%3D+%27me%27")
        .await;
    assert_eq!(judge_tooltips(&dash.body, "polite"), vec!["0% (0 of 1)"]);

    // Let the recomputed rollups be written, so later changes must dirty
    // them again rather than being computed fresh by chance.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dash = w.get("/experiments/0/dashboard?range=24h").await;
    assert_eq!(judge_tooltips(&dash.body, "polite"), want);

    // A judged trace whose info later says it started 30 h ago leaves the
    // last day's buckets (and stays in the week's).
    let mut moved = traces[0].clone();
    moved.start_ms = now_ms() - 30 * 3_600_000;
    send_info(&c, "0", &moved).await;
    let dash = w.get("/experiments/0/dashboard?range=24h").await;
    assert_eq!(
        judge_tooltips(&dash.body, "polite"),
        vec!["67% (2 of 3)", "50% (1 of 2)"]
    );
    let week = w.get("/experiments/0/dashboard?range=7d").await;
    assert_eq!(
        tooltip_totals(&judge_tooltips(&week.body, "polite")),
        (4, 6)
    );

    // Deleting traces updates the rollups.
    let r = c
        .post(
            "/api/2.0/mlflow/traces/delete-traces",
            serde_json::json!({"experiment_id": "0", "request_ids": [traces[2].id(), traces[4].id()]}),
        )
        .await;
    assert_eq!(r.body["traces_deleted"], 2, "{}", r.text);
    let dash = w.get("/experiments/0/dashboard?range=24h").await;
    assert_eq!(
        judge_tooltips(&dash.body, "polite"),
        vec!["100% (2 of 2)", "100% (1 of 1)"]
    );
    // Deleting the judge drops its line.
    let r = w
        .post(
            "/experiments/0/judges/delete",
            &[("csrf", &csrf), ("name", "polite")],
            &[],
        )
        .await;
    assert_eq!(r.status, 303);
    let dash = w.get("/experiments/0/dashboard?range=24h").await;
    assert!(judge_tooltips(&dash.body, "polite").is_empty());
    assert!(dash.body.contains("No judge verdicts in this range"));
}

#[tokio::test]
async fn experiments_page_states_the_retention_the_status_endpoint_reports() {
    use crate::harness::Server;
    for (args, want) in [
        (
            vec!["--retention-days", "30", "--max-disk", "2G"],
            "Retention: traces older than 30 days are deleted; the oldest traces are deleted while the data directory is over 2.0 GiB",
        ),
        (
            vec!["--retention-days", "0", "--max-disk", "off"],
            "Retention is off: traces are kept until they are deleted.",
        ),
    ] {
        let s = Server::start_with(&args);
        let st = s.client().get("/api/tracebox/v1/status").await;
        assert_eq!(st.status, 200, "{}", st.text);
        let r = &st.body["retention"];
        let mut w = Web::new(&s);
        let page = w.get("/experiments").await;
        assert_eq!(page.status, 200);
        let at = page
            .body
            .find("id=\"retention\"")
            .expect("the retention note");
        let note = unescape(&page.body[at..at + page.body[at..].find("</p>").unwrap()]);
        assert!(note.contains(want), "{note}");
        assert_eq!(
            note.contains("data-retention=\"on\""),
            r["enabled"] == true,
            "{note} vs {r}"
        );
        if r["enabled"] == true {
            assert!(note.contains(&format!(
                "older than {} days",
                r["retention_days"].as_u64().unwrap()
            )));
        }
    }
}

/// (passed, verdicts) summed over a judge's tooltip lines.
fn tooltip_totals(lines: &[String]) -> (i64, i64) {
    lines.iter().fold((0, 0), |(p, v), l| {
        let inner = &l[l.find('(').unwrap() + 1..l.find(')').unwrap()];
        let (a, b) = inner.split_once(" of ").unwrap();
        (p + a.parse::<i64>().unwrap(), v + b.parse::<i64>().unwrap())
    })
}

#[tokio::test]
async fn session_judges_count_in_the_chart_at_their_last_activity() {
    let fake = FakeLlm::start().await;
    fake.set_default(|body| {
        let text = body.to_string();
        let v = if text.contains("useless") {
            "unresolved"
        } else {
            "none"
        };
        crate::fake_llm::Reply::Verdict(serde_json::json!(v), "judged".into())
    });
    let (_d, s) = boot(&toml(&fake, "session_idle_secs = 1"));
    let c = s.client();
    let mut w = Web::new(&s);
    let csrf = w.get("/experiments/0/judges").await.csrf();
    let r = w
        .post(
            "/experiments/0/judges",
            &[
                ("csrf", &csrf),
                ("kind", "user-frustration"),
                ("model", "gateway:/judge"),
                ("sample_rate", "1"),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let st = status(&c, "0").await;
    assert_eq!(judge(&st, "user_frustration")["level"], "session");
    let t0 = now_ms() - 3_600_000;
    let turns = [
        T::new(900, "where is my order?", "It ships tomorrow.").session("calm"),
        T::new(901, "this is useless", "Sorry!").session("angry"),
    ];
    for (i, t) in turns.iter().enumerate() {
        let mut t = t.clone();
        t.start_ms = t0 + i as i64 * 1000;
        send(&c, "0", &t).await;
    }
    wait_until("two session verdicts", Duration::from_secs(30), || async {
        judge(&status(&c, "0").await, "user_frustration")["evaluated"] == 2
    })
    .await;
    let st = status(&c, "0").await;
    let j = judge(&st, "user_frustration");
    let want = (
        j["passed"].as_i64().unwrap(),
        j["verdicts"].as_i64().unwrap(),
    );
    assert_eq!(want.1, 2, "{j}");
    assert!(want.0 < 2, "the angry session fails: {j}");
    for view in ["range=24h", "range=6h"] {
        let dash = w.get(&format!("/experiments/0/dashboard?{view}")).await;
        let lines = judge_tooltips(&dash.body, "user_frustration");
        assert_eq!(tooltip_totals(&lines), want, "{view}: {lines:?}");
    }
    // Filters select traces: session judges are left out there.
    let dash = w
        .get("/experiments/0/dashboard?range=24h&filter=status+%3D+%27OK%27")
        .await;
    assert!(judge_tooltips(&dash.body, "user_frustration").is_empty());
}
