//! The judges page of one experiment: every registered judge with its
//! state, sample rate, filter, backlog, pass rate and last error, and the
//! forms that create (Guidelines or a built-in), start, update, stop,
//! delete and backfill judges.
//!
//! Every action goes through the code the MLflow scorer routes and
//! `tracebox judges` use: payloads from `judge::spec` (MLflow's templates),
//! `judge::registry` for validation and writes, `judge::backfill` for
//! backfills, `judge::status` for what the page shows. Outcomes travel back
//! through the redirect as codes and counts, never as text; a refused form
//! is shown again, with the problem, in the response to the post.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::activity::{Share, share};
use super::error::{WebError, WebResult};
use super::format;
use super::layout::Chrome;
use super::range;
use super::session::Ctx;
use crate::app::AppState;
use crate::domain::now_ms;
use crate::judge::spec::Kind;
use crate::judge::status::{self, JudgeStatus};
use crate::judge::{JudgeError, backfill, registry, spec};
use crate::query::stats::StatsRequest;
use crate::store::scorers;
use crate::store::stats::HOUR_MS;

/// Days of the recent pass rate shown beside the all-time one.
const RECENT_DAYS: i64 = 7;

/// Ranges a backfill may cover (keys of `range::PRESETS`, or all).
const BACKFILL_RANGES: &[(&str, &str)] = &[
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("all", "All time"),
];

/// What the list of built-in judges calls each class.
fn kind_label(class: &str) -> &'static str {
    match class {
        "Guidelines" => "Guidelines",
        "ExpectationsGuidelines" => "Expectations guidelines (per-trace expectations)",
        "Safety" => "Safety",
        "RelevanceToQuery" => "Relevance to the query",
        "RetrievalGroundedness" => "Groundedness (hallucination, needs a retriever span)",
        "Correctness" => "Correctness (needs expectations)",
        "UserFrustration" => "User frustration (sessions)",
        "ConversationCompleteness" => "Conversation completeness (sessions)",
        "ConversationalSafety" => "Conversational safety (sessions)",
        "ConversationalGuidelines" => "Conversational guidelines (sessions)",
        "PIIDetection" => "PII detection (no model)",
        _ => "Other",
    }
}

/// The message for an outcome code.
fn message(code: &str) -> Option<&'static str> {
    Some(match code {
        "created" => "Judge created.",
        "created-started" => "Judge created and started.",
        "started" => "Judge started: new traces are judged as they arrive.",
        "stopped" => "Judge stopped; its pending evaluations were cancelled.",
        "deleted" => "Judge deleted.",
        "backfill" => "Backfill queued.",
        _ => return None,
    })
}

pub struct KindOption {
    pub key: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

pub struct RangeChoice {
    pub key: &'static str,
    pub label: &'static str,
}

pub struct JudgeRow {
    pub name: String,
    pub kind: String,
    pub level: &'static str,
    pub model: String,
    /// `running`, `stopped`, `misconfigured`, `unsupported`.
    pub state: &'static str,
    pub state_label: &'static str,
    pub problem: Option<String>,
    pub started: bool,
    /// As a percentage, and as the form's value (a fraction).
    pub sample_rate: String,
    pub rate_value: String,
    pub filter: String,
    pub pending: String,
    pub running: String,
    pub failed: String,
    pub has_failed: bool,
    pub evaluated: String,
    pub shed: String,
    pub pass: Option<Share>,
    pub recent: String,
    pub last_error: Option<String>,
    pub last_iso: Option<String>,
    pub last_label: String,
    pub last_ago: String,
    /// The traces this judge assessed, when the filter grammar can name it.
    pub traces_href: Option<String>,
    /// What the judge checks: its guidelines, or a make_judge's instructions.
    pub criteria: Vec<String>,
    pub criteria_label: &'static str,
}

/// Longest instructions text shown on the page (characters).
const MAX_INSTRUCTIONS: usize = 600;

/// What a judge checks, as the page lists it.
fn criteria(serialized: &str) -> (&'static str, Vec<String>) {
    match spec::parse(serialized).map(|s| s.kind) {
        Ok(Kind::Guidelines { guidelines }) => ("Guidelines", guidelines),
        Ok(Kind::Instructions(i)) => (
            "Instructions",
            vec![format::truncate(&i.instructions, MAX_INSTRUCTIONS)],
        ),
        Ok(Kind::Session(_)) => match serde_json::from_str::<serde_json::Value>(serialized) {
            // Conversational guidelines keep theirs beside the prompt.
            Ok(v) => match v["builtin_scorer_pydantic_data"]["guidelines"].as_array() {
                Some(g) => (
                    "Guidelines",
                    g.iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect(),
                ),
                None => ("", Vec::new()),
            },
            Err(_) => ("", Vec::new()),
        },
        _ => ("", Vec::new()),
    }
}

/// The create forms' values, kept when a post is refused.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct CreateForm {
    pub csrf: String,
    pub kind: String,
    pub name: String,
    /// One guideline per line.
    pub guidelines: String,
    pub model: String,
    /// Start right away at this rate (empty: registered, not started).
    pub sample_rate: String,
    pub filter: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "judges.html")]
pub struct JudgesPage {
    chrome: Chrome,
    rows: Vec<JudgeRow>,
    saved: Option<&'static str>,
    /// Counts of a backfill just queued: (matched, queued).
    backfilled: Option<(String, String)>,
    error: Option<String>,
    /// Which form the error is about (`guidelines`, `builtin` or a judge name).
    error_for: String,
    guidelines_form: CreateForm,
    builtin_form: CreateForm,
    kinds: Vec<KindOption>,
    gateways: Vec<String>,
    default_model: String,
    ranges: Vec<RangeChoice>,
    queue_depth: String,
    queue_capacity: String,
    queue_shed: String,
    open_circuits: Vec<(String, String)>,
    create_action: String,
    action_base: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct JudgesQuery {
    saved: String,
    matched: Option<i64>,
    queued: Option<i64>,
}

/// A judge name as a key of the filter grammar (`feedback.`…``), when it
/// can be written as one.
fn feedback_filter(name: &str) -> Option<String> {
    (!name.contains('`') && !name.trim().is_empty())
        .then(|| format!("feedback.`{name}` IS NOT NULL"))
}

fn state_label(state: &str) -> &'static str {
    match state {
        "running" => "Running",
        "stopped" => "Stopped",
        "misconfigured" => "Misconfigured",
        _ => "Unsupported",
    }
}

fn row(
    experiment_id: i64,
    j: &JudgeStatus,
    serialized: Option<&str>,
    recent: Option<f64>,
    now: i64,
    default_model: &str,
) -> JudgeRow {
    let (criteria_label, criteria) = serialized.map(criteria).unwrap_or(("", Vec::new()));
    let pass = share(j.passed, j.verdicts - j.passed, 0, 0).map(|mut s| {
        s.title = format!(
            "{} of {} verdicts passed",
            format::int(j.passed),
            format::int(j.verdicts)
        );
        s
    });
    let model = match (&j.model, j.kind.as_str()) {
        (_, "PIIDetection") => "no model".to_string(),
        (Some(m), _) => m.clone(),
        (None, _) => format!("default ({default_model})"),
    };
    JudgeRow {
        name: j.name.clone(),
        kind: j.kind.clone(),
        level: j.level,
        model,
        state: j.state,
        state_label: state_label(j.state),
        problem: j.problem.clone(),
        started: j.started,
        sample_rate: format::percent(j.sample_rate),
        rate_value: if j.started {
            format!("{}", j.sample_rate)
        } else {
            "1".into()
        },
        filter: j.filter_string.clone().unwrap_or_default(),
        pending: format::int(j.pending),
        running: format::int(j.running),
        failed: format::int(j.failed),
        has_failed: j.failed > 0,
        evaluated: format::int(j.evaluated),
        shed: format::int(j.shed),
        pass,
        recent: recent
            .map(|r| format!("{} in the last {RECENT_DAYS} days", format::percent(r)))
            .unwrap_or_default(),
        last_error: j.last_error.clone(),
        last_iso: j.last_evaluated_ms.map(format::iso),
        last_label: j
            .last_evaluated_ms
            .map(format::datetime)
            .unwrap_or_default(),
        last_ago: j
            .last_evaluated_ms
            .map(|t| format::ago(t, now))
            .unwrap_or_else(|| "never".into()),
        traces_href: feedback_filter(&j.name).map(|f| {
            super::paging::href(
                &format!("/experiments/{experiment_id}/traces"),
                &[("filter", &f)],
                &[],
            )
        }),
        criteria,
        criteria_label,
    }
}

/// What a refused post shows: the message and which form it concerns.
struct Refusal {
    message: String,
    form: String,
}

async fn render(
    app: &AppState,
    ctx: &Ctx,
    experiment_id: i64,
    query: JudgesQuery,
    refusal: Option<Refusal>,
    create: Option<CreateForm>,
) -> WebResult<JudgesPage> {
    let chrome = Chrome::new(app, ctx, "Judges", "judges", Some(experiment_id)).await?;
    let st = status::collect(
        &app.store,
        &app.judges.models,
        app.judges.gate.capacity,
        Some(experiment_id),
    )
    .await?;
    let now = now_ms();
    // The recent pass rate comes from the dashboard's rollups (cheap).
    let recent = app
        .query
        .judge_series(StatsRequest {
            experiment_id,
            filter: None,
            text: None,
            from_ms: now - RECENT_DAYS * 24 * HOUR_MS,
            to_ms: now,
            bucket_ms: 24 * HOUR_MS,
        })
        .await?;
    let default_model = app.judges.models.default_model();
    let versions = app
        .store
        .read(move |c| scorers::list_latest(c, Some(&[experiment_id])))
        .await?;
    let rows = st
        .judges
        .iter()
        .map(|j| {
            let r = recent
                .judges
                .iter()
                .find(|l| l.scorer_id == j.scorer_id)
                .and_then(|l| l.total().rate());
            let serialized = versions
                .iter()
                .find(|v| v.scorer_id == j.scorer_id)
                .map(|v| v.serialized_scorer.as_str());
            row(experiment_id, j, serialized, r, now, &default_model)
        })
        .collect();
    let saved = message(&query.saved);
    let backfilled = match (query.saved.as_str(), query.matched, query.queued) {
        ("backfill", Some(m), Some(q)) => Some((format::int(m), format::int(q))),
        _ => None,
    };
    let (mut guidelines_form, mut builtin_form) = (
        CreateForm {
            kind: "guidelines".into(),
            ..Default::default()
        },
        CreateForm {
            kind: "safety".into(),
            ..Default::default()
        },
    );
    if let Some(f) = create {
        if f.kind == "guidelines" {
            guidelines_form = f;
        } else {
            builtin_form = f;
        }
    }
    let kinds = spec::BUILTIN_KINDS
        .iter()
        .filter(|(k, _)| *k != "guidelines")
        .map(|(k, class)| KindOption {
            key: k,
            label: kind_label(class),
            selected: *k == builtin_form.kind,
        })
        .collect();
    let (error, error_for) = match refusal {
        Some(r) => (Some(r.message), r.form),
        None => (None, String::new()),
    };
    Ok(JudgesPage {
        chrome,
        rows,
        saved,
        backfilled,
        error,
        error_for,
        guidelines_form,
        builtin_form,
        kinds,
        gateways: app.judges.models.gateway_uris(),
        default_model,
        ranges: BACKFILL_RANGES
            .iter()
            .map(|(key, label)| RangeChoice { key, label })
            .collect(),
        queue_depth: format::int(st.queue.depth),
        queue_capacity: format::int(st.queue.capacity),
        queue_shed: format::int(st.queue.shed),
        open_circuits: st
            .endpoints
            .iter()
            .filter(|e| e.circuit != "closed")
            .map(|e| (e.endpoint.clone(), e.last_error.clone().unwrap_or_default()))
            .collect(),
        create_action: format!("/experiments/{experiment_id}/judges"),
        action_base: format!("/experiments/{experiment_id}/judges"),
    })
}

/// `GET /experiments/{id}/judges`.
pub async fn page(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(experiment_id): Path<i64>,
    Query(query): Query<JudgesQuery>,
) -> WebResult<JudgesPage> {
    render(&app, &ctx, experiment_id, query, None, None).await
}

fn done(experiment_id: i64, code: &str) -> Response {
    Redirect::to(&format!("/experiments/{experiment_id}/judges?saved={code}")).into_response()
}

/// A refusal the user can fix (4xx) becomes the page again with the
/// message; anything else is an error page.
fn refusal(e: WebError, form: &str) -> Result<Refusal, WebError> {
    if e.status.is_client_error() {
        Ok(Refusal {
            message: e.message,
            form: form.to_string(),
        })
    } else {
        Err(e)
    }
}

async fn refused(
    app: &AppState,
    ctx: &Ctx,
    experiment_id: i64,
    r: Refusal,
    create: Option<CreateForm>,
) -> WebResult<Response> {
    let page = render(
        app,
        ctx,
        experiment_id,
        JudgesQuery::default(),
        Some(r),
        create,
    )
    .await?;
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

fn judge_error(e: JudgeError) -> WebError {
    match e {
        JudgeError::Store(e) => e.into(),
        JudgeError::Query(e) => e.into(),
    }
}

/// The sample rate typed in a form (a fraction from 0 to 1).
fn parse_rate(s: &str, default: f64) -> Result<f64, WebError> {
    match s.trim() {
        "" => Ok(default),
        t => t
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite())
            .ok_or_else(|| WebError::bad_request("The sample rate must be a number from 0 to 1.")),
    }
}

/// `POST /experiments/{id}/judges`: registers a Guidelines or built-in
/// judge, optionally starting it.
pub async fn create(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(experiment_id): Path<i64>,
    headers: HeaderMap,
    Form(f): Form<CreateForm>,
) -> WebResult<Response> {
    ctx.verify(&headers, &f.csrf)?;
    let which = if f.kind == "guidelines" {
        "guidelines"
    } else {
        "builtin"
    };
    match create_judge(&app, experiment_id, &f).await {
        Ok(started) => Ok(done(
            experiment_id,
            if started {
                "created-started"
            } else {
                "created"
            },
        )),
        Err(e) => {
            let r = refusal(e, which)?;
            refused(&app, &ctx, experiment_id, r, Some(f)).await
        }
    }
}

/// Registers the judge a form describes; true when it was also started.
async fn create_judge(app: &AppState, experiment_id: i64, f: &CreateForm) -> WebResult<bool> {
    let guidelines: Vec<String> = f
        .guidelines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let judge = spec::builtin(f.kind.trim(), guidelines).map_err(WebError::bad_request)?;
    // A built-in judge may keep the name its kind suggests.
    let name = match f.name.trim() {
        "" if f.kind != "guidelines" => f.kind.trim().replace('-', "_"),
        n => n.to_string(),
    };
    let model = Some(f.model.trim()).filter(|m| !m.is_empty());
    let rate = parse_rate(&f.sample_rate, 0.0)?;
    let payload = spec::build(&name, &judge, model).map_err(WebError::bad_request)?;
    let allow = app.judges.allow_custom_scorers;
    registry::validate_registration(&name, &payload, allow)?;
    let filter = Some(f.filter.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(fl) = &filter {
        // Checked before anything is written, so a bad filter registers nothing.
        crate::query::check_filter(fl)?;
    }
    let n = name.clone();
    app.store
        .write(move |c| registry::register(c, experiment_id, &n, &payload, allow))
        .await?;
    if rate > 0.0 {
        app.store
            .write(move |c| {
                registry::upsert_online_config(c, experiment_id, &name, rate, filter.as_deref())
            })
            .await?;
        return Ok(true);
    }
    Ok(false)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActionForm {
    csrf: String,
    name: String,
    sample_rate: String,
    filter: String,
    /// Backfill: a key of `BACKFILL_RANGES`.
    range: String,
    /// Backfill: at most this many of the newest traces.
    limit: String,
    /// Backfill: judge again traces already judged.
    rerun: String,
}

/// `POST /experiments/{id}/judges/{action}`: start (or update), stop,
/// delete or backfill the judge named in the form.
pub async fn act(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((experiment_id, action)): Path<(i64, String)>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> WebResult<Response> {
    ctx.verify(&headers, &f.csrf)?;
    let outcome = match action.as_str() {
        "start" => start(&app, experiment_id, &f)
            .await
            .map(|_| "started".to_string()),
        "stop" => stop(&app, experiment_id, &f.name)
            .await
            .map(|_| "stopped".to_string()),
        "delete" => {
            let name = f.name.clone();
            app.store
                .write(move |c| scorers::delete(c, experiment_id, &name, None))
                .await
                .map(|_| "deleted".to_string())
                .map_err(WebError::from)
        }
        "backfill" => run_backfill(&app, experiment_id, &f)
            .await
            .map(|s| format!("backfill&matched={}&queued={}", s.matched, s.queued)),
        _ => return Err(WebError::not_found("No such judge action")),
    };
    match outcome {
        Ok(code) => Ok(done(experiment_id, &code)),
        Err(e) => {
            let r = refusal(e, &f.name)?;
            refused(&app, &ctx, experiment_id, r, None).await
        }
    }
}

async fn start(app: &AppState, experiment_id: i64, f: &ActionForm) -> WebResult<()> {
    let rate = parse_rate(&f.sample_rate, 1.0)?;
    if rate <= 0.0 {
        return Err(WebError::bad_request(
            "A judge starts with a sample rate above 0; use Stop to stop it.",
        ));
    }
    let (name, filter) = (f.name.clone(), f.filter.trim().to_string());
    app.store
        .write(move |c| {
            registry::upsert_online_config(
                c,
                experiment_id,
                &name,
                rate,
                Some(filter.as_str()).filter(|s| !s.is_empty()),
            )
        })
        .await?;
    Ok(())
}

/// Stops a judge, keeping its filter for the next start.
async fn stop(app: &AppState, experiment_id: i64, name: &str) -> WebResult<()> {
    let name = name.to_string();
    app.store
        .write(move |c| {
            let latest = scorers::get(c, experiment_id, &name, None)?;
            let filter = scorers::configs_for(c, &[latest.scorer_id])?
                .into_iter()
                .next()
                .and_then(|cfg| cfg.filter_string);
            registry::upsert_online_config(c, experiment_id, &name, 0.0, filter.as_deref())
        })
        .await?;
    Ok(())
}

async fn run_backfill(
    app: &AppState,
    experiment_id: i64,
    f: &ActionForm,
) -> WebResult<backfill::Started> {
    let limit = match f.limit.trim() {
        "" => None,
        t => Some(t.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            WebError::bad_request("The number of traces must be a whole number above 0.")
        })?),
    };
    let key = if f.range.trim().is_empty() {
        "all"
    } else {
        f.range.trim()
    };
    if !BACKFILL_RANGES.iter().any(|(k, _)| *k == key) {
        return Err(WebError::bad_request("Choose a time range from the list."));
    }
    let range = range::resolve(key, "", "", "", now_ms(), "all").map_err(WebError::bad_request)?;
    let filter = [
        Some(f.filter.trim().to_string()).filter(|s| !s.is_empty()),
        range.filter_clause(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" AND ");
    backfill::start(
        &app.store,
        &app.query,
        &app.judges.gate,
        backfill::Request {
            experiment_id,
            name: f.name.clone(),
            filter: Some(filter).filter(|s| !s.is_empty()),
            rerun: !f.rerun.is_empty(),
            limit,
        },
    )
    .await
    .map_err(judge_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_names_become_filter_keys_when_they_can() {
        assert_eq!(
            feedback_filter("tone check").as_deref(),
            Some("feedback.`tone check` IS NOT NULL")
        );
        assert_eq!(feedback_filter("a`b"), None);
        for name in ["tone check", "it's", "a.b", "<img src=x>", "naïve \"q\""] {
            let f = feedback_filter(name).unwrap();
            assert!(crate::query::check_filter(&f).is_ok(), "{f}");
        }
        assert!(message("created").is_some() && message("<script>").is_none());
        assert!(parse_rate("0.25", 0.0).is_ok_and(|r| r == 0.25));
        assert!(parse_rate("", 1.0).is_ok_and(|r| r == 1.0));
        assert!(parse_rate("lots", 1.0).is_err());
        assert!(parse_rate("NaN", 1.0).is_err());
    }
}
