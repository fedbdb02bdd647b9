//! Conversations: an experiment's sessions (traces sharing
//! `mlflow.trace.session`) as a list, and one session as a chat transcript
//! across its turns, with per-turn assessments, the session-level
//! assessments up front and a form for human feedback on the whole session.
//! (Not the login session: that is `web::session`.)
//!
//! Pages read the store's maintained aggregates (`sessions`, `users`) with
//! keyset paging, plus one page of turns: never a GROUP BY over traces, so
//! they cost the same at a million traces. Session feedback is stored the
//! way MLflow stores it (an assessment on the session's first trace with
//! metadata `mlflow.trace.session`) through `Store::log_session_assessment`,
//! so MLflow's clients see it. A turn's text is picked with `domain::chat`,
//! as the JSON API picks it. Turn text is untrusted and only ever printed
//! escaped.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::Value;

use super::activity::{
    CountChip, ListForm, Share, bounds, count_chips, list_form, share, tokens_title,
};
use super::error::{WebError, WebResult};
use super::feedback::{self, FeedbackForm};
use super::format;
use super::layout::Chrome;
use super::paging::{self, Pager};
use super::session::Ctx;
use super::traces::{self, Chip, ListQuery as TraceQuery, chip, status, urlencode};
use super::users::user_href;
use crate::app::AppState;
use crate::domain::{Assessment, chat, metadata_keys, now_ms};
use crate::store::sessions::{ListQuery, SessionSummary, Turn, is_session_level};

/// Said when a page link's token does not fit the list.
pub const STALE_PAGE: &str =
    "That page link belongs to another view of the list; showing the first page.";
/// Sessions per page of a list.
const PAGE_SIZE: usize = 50;
/// Turns per page of a transcript.
const TURNS_PER_PAGE: usize = 50;
/// Characters of a message shown in the transcript (the trace has the rest).
const MAX_MESSAGE: usize = 4000;
/// Name given to session feedback whose form leaves the name empty.
const DEFAULT_NAME: &str = "session_feedback";

/// The page of one session of an experiment.
pub fn session_href(experiment_id: i64, session: &str) -> String {
    format!(
        "/experiments/{experiment_id}/sessions/{}",
        urlencode(session)
    )
}

/// The trace list filtered to a session's or user's traces, wherever the
/// SDK put the id (tags or metadata).
pub fn traces_of(experiment_id: i64, key: &str, value: &str) -> String {
    let v = traces::quote(value);
    TraceQuery {
        filter: format!("tags.`{key}` = {v} OR metadata.`{key}` = {v}"),
        ..Default::default()
    }
    .href(&format!("/experiments/{experiment_id}/traces"), &[])
}

// ---------------------------------------------------------------- the list

/// A sessions list's URL parameters (the list page and a user's page).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SessionsQuery {
    /// Only the sessions of this user (exact id).
    pub user: String,
    pub range: String,
    pub from: String,
    pub to: String,
    pub tz: String,
    pub page_token: String,
    pub trail: String,
}

impl SessionsQuery {
    fn params(&self) -> [(&'static str, &str); 7] {
        [
            ("user", &self.user),
            ("range", &self.range),
            ("from", &self.from),
            ("to", &self.to),
            ("tz", &self.tz),
            ("page_token", &self.page_token),
            ("trail", &self.trail),
        ]
    }

    pub fn href(&self, base: &str, set: &[(&str, &str)]) -> String {
        paging::href(base, &self.params(), set)
    }
}

pub struct SessionRow {
    pub href: String,
    pub session_id: String,
    pub user: Option<(String, String)>,
    pub first_iso: String,
    pub first_label: String,
    pub last_iso: String,
    pub last_label: String,
    pub last_ago: String,
    pub turns: String,
    pub errors: String,
    pub has_errors: bool,
    pub tokens: String,
    pub tokens_title: String,
    pub chips: Vec<CountChip>,
}

fn session_row(s: &SessionSummary, now: i64) -> SessionRow {
    SessionRow {
        href: session_href(s.experiment_id, &s.session_id),
        session_id: s.session_id.clone(),
        user: s
            .user_id
            .as_ref()
            .map(|u| (u.clone(), user_href(s.experiment_id, u))),
        first_iso: format::iso(s.first_time_ms),
        first_label: format::datetime(s.first_time_ms),
        last_iso: format::iso(s.last_time_ms),
        last_label: format::datetime(s.last_time_ms),
        last_ago: format::ago(s.last_time_ms, now),
        turns: format::int(s.turns),
        errors: format::int(s.error_count),
        has_errors: s.error_count > 0,
        tokens: format::int(s.tokens.total),
        tokens_title: tokens_title(&s.tokens),
        chips: count_chips(&s.assessments, Some(s.session_assessments)),
    }
}

/// A page of a sessions list with its form and paging state, shared by
/// the sessions page and a user's page (`templates/sessions_table.html`).
pub struct SessionList {
    pub form: ListForm,
    pub notice: Option<String>,
    pub rows: Vec<SessionRow>,
    pub pager: Pager,
    pub first_index: usize,
    pub last_index: usize,
    /// Anything narrows the list (an empty list then says "no match").
    pub filtered: bool,
    /// Show the user column (not on a user's own page).
    pub by_user: bool,
    /// The list without its filters.
    pub clear_href: String,
}

/// Loads one page of sessions of `experiment_id`: those of `user` on a
/// user's page, else of the query's user box, if filled.
pub async fn load_list(
    app: &AppState,
    experiment_id: i64,
    user: Option<String>,
    mut query: SessionsQuery,
    base: String,
) -> WebResult<SessionList> {
    let now = now_ms();
    let by_user = user.is_none();
    let user_box = by_user.then(|| query.user.clone());
    let user = user.or_else(|| Some(query.user.trim().to_string()).filter(|u| !u.is_empty()));
    let (form, range) = list_form(
        base.clone(),
        user_box,
        (&query.range, &query.from, &query.to, &query.tz),
        now,
    );
    let (start_ms, end_ms) = bounds(&range);
    let mut notice = None;
    let after = if query.page_token.is_empty() {
        None
    } else {
        let k = paging::decode_key("s", &query.page_token);
        if k.is_none() {
            notice = Some(STALE_PAGE.to_string());
            query.page_token.clear();
            query.trail.clear();
        }
        k
    };
    let page = app
        .store
        .list_sessions(ListQuery {
            experiment_id,
            user_id: user,
            start_ms,
            end_ms,
            after,
            limit: PAGE_SIZE,
        })
        .await?;
    let next = page.next.map(|(t, id)| paging::encode_key("s", t, &id));
    let pager = paging::pager(
        &query.trail,
        &query.page_token,
        next.as_deref(),
        |t, trail| query.href(&base, &[("page_token", t), ("trail", trail)]),
    );
    let rows: Vec<SessionRow> = page.items.iter().map(|s| session_row(s, now)).collect();
    let first_index = pager.first_row(PAGE_SIZE);
    Ok(SessionList {
        form,
        notice,
        last_index: first_index + rows.len().saturating_sub(1),
        first_index,
        rows,
        pager,
        filtered: range.key != "all" || (by_user && !query.user.trim().is_empty()),
        by_user,
        clear_href: base,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "sessions.html")]
pub struct SessionsPage {
    chrome: Chrome,
    list: SessionList,
    users_href: String,
    /// The filtered user's own page: (user, link).
    user_page: Option<(String, String)>,
}

/// `/experiments/{id}/sessions`: newest activity first.
pub async fn list(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(experiment_id): Path<i64>,
    Query(query): Query<SessionsQuery>,
) -> WebResult<SessionsPage> {
    let chrome = Chrome::new(&app, &ctx, "Sessions", "sessions", Some(experiment_id)).await?;
    let base = format!("/experiments/{experiment_id}/sessions");
    let user_page = Some(query.user.trim())
        .filter(|u| !u.is_empty())
        .map(|u| (u.to_string(), user_href(experiment_id, u)));
    let list = load_list(&app, experiment_id, None, query, base).await?;
    Ok(SessionsPage {
        chrome,
        list,
        user_page,
        users_href: format!("/experiments/{experiment_id}/users"),
    })
}

// ---------------------------------------------------------------- one session

/// A message of the transcript; `preview` when it is the trace's stored
/// preview because no chat text was recognised.
pub struct Message {
    pub text: String,
    pub preview: bool,
    pub cut: bool,
}

fn message(text: Option<String>, preview: Option<&str>, is_request: bool) -> Option<Message> {
    let (text, preview) = match text.filter(|t| !t.trim().is_empty()) {
        Some(t) => (t, false),
        None => (
            format::preview_text(preview.filter(|p| !p.trim().is_empty())?, is_request),
            true,
        ),
    };
    let cut = text.chars().count() > MAX_MESSAGE;
    Some(Message {
        text: if cut {
            format::truncate(&text, MAX_MESSAGE)
        } else {
            text
        },
        preview,
        cut,
    })
}

pub struct TurnView {
    pub number: i64,
    pub anchor: String,
    pub trace_href: String,
    pub name: String,
    pub time_iso: String,
    pub time_label: String,
    /// Since the session's first turn (`+2m 03s`), empty for the first.
    pub offset: String,
    pub status_class: &'static str,
    pub status_label: &'static str,
    pub latency: String,
    pub tokens: String,
    pub user: Option<Message>,
    pub assistant: Option<Message>,
    pub chips: Vec<Chip>,
}

fn turn_view(t: &Turn, session: &SessionSummary) -> TurnView {
    let i = &t.info;
    let (status_class, status_label) = status(i.state);
    let user = chat::turn_user_text(t.root_inputs.as_ref(), t.llm_inputs.as_ref());
    let reply = chat::turn_assistant_text(t.root_outputs.as_ref(), t.llm_outputs.as_ref());
    let offset = i.request_time_ms - session.first_time_ms;
    TurnView {
        number: t.number,
        anchor: format!("turn-{}", t.number),
        trace_href: format!("/traces/{}", urlencode(&i.trace_id)),
        name: i.name().unwrap_or("(unnamed)").to_string(),
        time_iso: format::iso(i.request_time_ms),
        time_label: format::datetime(i.request_time_ms),
        offset: if t.number > 1 {
            format!("+{}", format::duration_ms(offset.max(0) as f64))
        } else {
            String::new()
        },
        status_class,
        status_label,
        latency: i
            .execution_time_ms
            .map(|ms| format::duration_ms(ms as f64))
            .unwrap_or_default(),
        tokens: i
            .tokens
            .total_or_sum()
            .map(|n| format!("{} tokens", format::int(n)))
            .unwrap_or_default(),
        user: message(user, i.request_preview.as_deref(), true),
        assistant: message(reply, i.response_preview.as_deref(), false),
        chips: i
            .assessments
            .iter()
            .filter(|a| a.valid && !is_session_level(a, &session.session_id))
            .map(chip)
            .collect(),
    }
}

/// A session-level assessment as the page lists it.
pub struct SessionAssessment {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub chip: Chip,
    /// The whole value when it does not fit the chip.
    pub long_value: String,
    pub source: String,
    pub rationale: String,
    pub time_iso: String,
    pub time_label: String,
    pub valid: bool,
    pub error: String,
    pub delete_action: String,
}

fn session_assessment(a: &Assessment, base: &str) -> SessionAssessment {
    let value = match &a.value {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    };
    SessionAssessment {
        id: a.assessment_id.clone(),
        name: a.name.clone(),
        kind: a.kind.as_str(),
        // Room for the whole name here (the chip is the card's headline).
        chip: Chip {
            name: a.name.clone(),
            ..chip(a)
        },
        long_value: if value.chars().count() > 24 || value.contains('\n') {
            value
        } else {
            String::new()
        },
        source: match a.source.source_id.as_str() {
            "" => a.source.source_type.as_str().to_string(),
            id => format!("{} · {id}", a.source.source_type.as_str()),
        },
        rationale: a.rationale.clone().unwrap_or_default(),
        time_iso: format::iso(a.create_time_ms),
        time_label: format::datetime(a.create_time_ms),
        valid: a.valid,
        error: a
            .error
            .as_ref()
            .map(|e| match &e.error_message {
                Some(m) => format!("{}: {m}", e.error_code),
                None => e.error_code.clone(),
            })
            .unwrap_or_default(),
        delete_action: format!("{base}/assessments/{}/delete", urlencode(&a.assessment_id)),
    }
}

pub struct SessionHeader {
    pub session_id: String,
    pub user: Option<(String, String)>,
    pub started_iso: String,
    pub started_label: String,
    pub last_iso: String,
    pub last_label: String,
    /// From the first turn's start to the last one's.
    pub active_for: String,
    pub turns: String,
    pub errors: i64,
    pub tokens: String,
    pub tokens_title: String,
    pub traces_href: String,
    pub list_href: String,
    /// Assessments over every turn (session-level ones included).
    pub chips: Vec<CountChip>,
    pub share: Option<Share>,
}

fn header(s: &SessionSummary) -> SessionHeader {
    let a = &s.assessments;
    SessionHeader {
        session_id: s.session_id.clone(),
        user: s
            .user_id
            .as_ref()
            .map(|u| (u.clone(), user_href(s.experiment_id, u))),
        started_iso: format::iso(s.first_time_ms),
        started_label: format::datetime(s.first_time_ms),
        last_iso: format::iso(s.last_time_ms),
        last_label: format::datetime(s.last_time_ms),
        active_for: format::duration_ms((s.last_time_ms - s.first_time_ms) as f64),
        turns: format::int(s.turns),
        errors: s.error_count,
        tokens: format::int(s.tokens.total),
        tokens_title: tokens_title(&s.tokens),
        traces_href: traces_of(s.experiment_id, metadata_keys::SESSION, &s.session_id),
        list_href: format!("/experiments/{}/sessions", s.experiment_id),
        chips: count_chips(a, None),
        share: share(a.positive, a.negative, a.human_positive, a.human_negative),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SessionQuery {
    page_token: String,
    trail: String,
    saved: String,
    error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "session.html")]
pub struct SessionPage {
    chrome: Chrome,
    header: SessionHeader,
    turns: Vec<TurnView>,
    assessments: Vec<SessionAssessment>,
    /// The valid session-level verdicts, for the header.
    verdicts: Vec<Chip>,
    pager: Pager,
    first_turn: i64,
    last_turn: i64,
    feedback_action: String,
    saved: Option<&'static str>,
    form_error: Option<&'static str>,
    notice: Option<String>,
}

/// `/experiments/{id}/sessions/{session_id}`: the transcript.
pub async fn page(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((experiment_id, session_id)): Path<(i64, String)>,
    Query(mut q): Query<SessionQuery>,
) -> WebResult<SessionPage> {
    let chrome = Chrome::new(
        &app,
        &ctx,
        format!("Session {}", format::truncate(&session_id, 40)),
        "sessions",
        Some(experiment_id),
    )
    .await?;
    let mut notice = None;
    let after = if q.page_token.is_empty() {
        None
    } else {
        match paging::decode_key("t", &q.page_token)
            .and_then(|(t, id)| id.parse::<i64>().ok().map(|id| (t, id)))
        {
            Some(k) => Some(k),
            None => {
                notice = Some("That link's page of turns is unknown; showing the first.".into());
                q.page_token.clear();
                q.trail.clear();
                None
            }
        }
    };
    let (summary, page, session_level) = app
        .store
        .get_session(experiment_id, session_id.clone(), after, TURNS_PER_PAGE)
        .await?;
    let base = session_href(experiment_id, &session_id);
    let next = page
        .next
        .map(|(t, id)| paging::encode_key("t", t, &id.to_string()));
    let pager = paging::pager(&q.trail, &q.page_token, next.as_deref(), |t, trail| {
        let at = [("page_token", t), ("trail", trail)];
        paging::href(&base, &at, &at)
    });
    let turns: Vec<TurnView> = page.turns.iter().map(|t| turn_view(t, &summary)).collect();
    let (saved, form_error) = feedback::outcome(&q.saved, &q.error);
    // Newest verdicts first; overridden ones after the valid.
    let mut assessments: Vec<SessionAssessment> = session_level
        .iter()
        .rev()
        .map(|a| session_assessment(a, &base))
        .collect();
    assessments.sort_by_key(|a| !a.valid);
    let verdicts = session_level
        .iter()
        .rev()
        .filter(|a| a.valid)
        .map(|a| Chip {
            name: a.name.clone(),
            ..chip(a)
        })
        .collect();
    Ok(SessionPage {
        verdicts,
        chrome,
        header: header(&summary),
        first_turn: turns.first().map(|t| t.number).unwrap_or(0),
        last_turn: turns.last().map(|t| t.number).unwrap_or(0),
        turns,
        assessments,
        pager,
        feedback_action: format!("{base}/feedback"),
        saved,
        form_error,
        notice,
    })
}

fn back(experiment_id: i64, session_id: &str, key: &str, code: &str) -> Response {
    Redirect::to(&format!(
        "{}?{key}={code}#session-assessments",
        session_href(experiment_id, session_id)
    ))
    .into_response()
}

/// Human feedback on the whole session, saved as MLflow saves a
/// session-level assessment.
pub async fn add_feedback(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((experiment_id, session_id)): Path<(i64, String)>,
    headers: HeaderMap,
    Form(f): Form<FeedbackForm>,
) -> WebResult<Response> {
    ctx.verify(&headers, &f.csrf)?;
    let mut a = match feedback::from_form(&f, "", DEFAULT_NAME) {
        Ok(a) => a,
        Err(code) => return Ok(back(experiment_id, &session_id, "error", code)),
    };
    // About the conversation, not one of its spans.
    a.span_id = None;
    app.store
        .log_session_assessment(experiment_id, session_id.clone(), a, false)
        .await?;
    Ok(back(experiment_id, &session_id, "saved", "feedback"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeleteForm {
    csrf: String,
}

/// Deletes one of the session's own assessments (not any assessment: the
/// id must be among the session-level ones).
pub async fn delete_assessment(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((experiment_id, session_id, assessment_id)): Path<(i64, String, String)>,
    headers: HeaderMap,
    Form(f): Form<DeleteForm>,
) -> WebResult<Response> {
    ctx.verify(&headers, &f.csrf)?;
    let all = app
        .store
        .session_assessments(experiment_id, session_id.clone())
        .await?;
    let Some(a) = all.into_iter().find(|a| a.assessment_id == assessment_id) else {
        return Err(WebError::not_found(format!(
            "Session '{session_id}' has no assessment '{assessment_id}'"
        )));
    };
    app.store
        .delete_assessment(a.trace_id, assessment_id)
        .await?;
    Ok(back(experiment_id, &session_id, "saved", "deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_fall_back_to_previews_and_are_cut() {
        let m = message(Some("hi".into()), Some("{\"q\": \"x\"}"), true).unwrap();
        assert_eq!((m.text.as_str(), m.preview), ("hi", false));
        let m = message(None, Some(&json!({"question": "why?"}).to_string()), true).unwrap();
        assert_eq!((m.text.as_str(), m.preview), ("why?", true));
        assert!(message(Some("  ".into()), None, false).is_none());
        let long = message(Some("x".repeat(MAX_MESSAGE + 5)), None, false).unwrap();
        assert!(long.cut && long.text.ends_with('…'));
    }

    #[test]
    fn hrefs_encode_ids_and_filter_both_places() {
        assert_eq!(
            session_href(3, "a/b c"),
            "/experiments/3/sessions/a%2Fb%20c"
        );
        let t = traces_of(3, metadata_keys::SESSION, "o'k");
        assert!(t.starts_with("/experiments/3/traces?filter=tags."), "{t}");
        assert!(t.contains("OR+metadata."), "{t}");
        assert!(t.contains("%27o%27%27k%27"), "{t}");
    }
}
