//! The people behind the traces (`mlflow.trace.user`): the users of an
//! experiment with their activity and feedback summary, and one user's page
//! with their sessions.
//!
//! Reads the store's maintained `users` and `sessions` aggregates with
//! keyset paging only, so the pages cost the same at a million traces.

use askama::Template;
use askama_web::WebTemplate;
use axum::Extension;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::activity::{
    CountChip, ListForm, Share, bounds, count_chips, list_form, share, tokens_title,
};
use super::error::WebResult;
use super::format;
use super::layout::Chrome;
use super::paging::{self, Pager};
use super::session::Ctx;
use super::sessions::{self, STALE_PAGE, SessionList, SessionsQuery, traces_of};
use super::traces::urlencode;
use crate::app::AppState;
use crate::domain::{metadata_keys, now_ms};
use crate::store::sessions::{ListQuery, UserSummary};

/// Users per page.
const PAGE_SIZE: usize = 50;

/// The page of one user of an experiment.
pub fn user_href(experiment_id: i64, user: &str) -> String {
    format!("/experiments/{experiment_id}/users/{}", urlencode(user))
}

pub struct UserRow {
    pub href: String,
    pub user: String,
    pub traces: String,
    pub sessions: String,
    pub errors: String,
    pub has_errors: bool,
    pub tokens: String,
    pub tokens_title: String,
    pub first_iso: String,
    pub first_label: String,
    pub last_iso: String,
    pub last_label: String,
    pub last_ago: String,
    pub share: Option<Share>,
    pub chips: Vec<CountChip>,
}

fn user_row(u: &UserSummary, now: i64) -> UserRow {
    let a = &u.assessments;
    UserRow {
        href: user_href(u.experiment_id, &u.user_id),
        user: u.user_id.clone(),
        traces: format::int(u.traces),
        sessions: format::int(u.sessions),
        errors: format::int(u.error_count),
        has_errors: u.error_count > 0,
        tokens: format::int(u.tokens.total),
        tokens_title: tokens_title(&u.tokens),
        first_iso: format::iso(u.first_time_ms),
        first_label: format::datetime(u.first_time_ms),
        last_iso: format::iso(u.last_time_ms),
        last_label: format::datetime(u.last_time_ms),
        last_ago: format::ago(u.last_time_ms, now),
        share: share(a.positive, a.negative, a.human_positive, a.human_negative),
        chips: count_chips(a, None),
    }
}

/// The users list's URL parameters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UsersQuery {
    pub range: String,
    pub from: String,
    pub to: String,
    pub tz: String,
    pub page_token: String,
    pub trail: String,
}

impl UsersQuery {
    fn params(&self) -> [(&'static str, &str); 6] {
        [
            ("range", &self.range),
            ("from", &self.from),
            ("to", &self.to),
            ("tz", &self.tz),
            ("page_token", &self.page_token),
            ("trail", &self.trail),
        ]
    }

    fn href(&self, base: &str, set: &[(&str, &str)]) -> String {
        paging::href(base, &self.params(), set)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
pub struct UsersPage {
    chrome: Chrome,
    form: ListForm,
    notice: Option<String>,
    rows: Vec<UserRow>,
    pager: Pager,
    first_index: usize,
    last_index: usize,
    filtered: bool,
    sessions_href: String,
    clear_href: String,
}

/// `/experiments/{id}/users`: most recently active first.
pub async fn list(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(experiment_id): Path<i64>,
    Query(mut query): Query<UsersQuery>,
) -> WebResult<UsersPage> {
    let chrome = Chrome::new(&app, &ctx, "Users", "users", Some(experiment_id)).await?;
    let base = format!("/experiments/{experiment_id}/users");
    let now = now_ms();
    let (form, range) = list_form(
        base.clone(),
        None,
        (&query.range, &query.from, &query.to, &query.tz),
        now,
    );
    let (start_ms, end_ms) = bounds(&range);
    let mut notice = None;
    let after = if query.page_token.is_empty() {
        None
    } else {
        let k = paging::decode_key("u", &query.page_token);
        if k.is_none() {
            notice = Some(STALE_PAGE.to_string());
            query.page_token.clear();
            query.trail.clear();
        }
        k
    };
    let page = app
        .store
        .list_users(ListQuery {
            experiment_id,
            user_id: None,
            start_ms,
            end_ms,
            after,
            limit: PAGE_SIZE,
        })
        .await?;
    let next = page.next.map(|(t, id)| paging::encode_key("u", t, &id));
    let pager = paging::pager(
        &query.trail,
        &query.page_token,
        next.as_deref(),
        |t, trail| query.href(&base, &[("page_token", t), ("trail", trail)]),
    );
    let rows: Vec<UserRow> = page.items.iter().map(|u| user_row(u, now)).collect();
    let first_index = pager.first_row(PAGE_SIZE);
    Ok(UsersPage {
        chrome,
        form,
        notice,
        last_index: first_index + rows.len().saturating_sub(1),
        first_index,
        rows,
        pager,
        filtered: range.key != "all",
        sessions_href: format!("/experiments/{experiment_id}/sessions"),
        clear_href: base,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "user.html")]
pub struct UserPage {
    chrome: Chrome,
    user: UserRow,
    list: SessionList,
    traces_href: String,
    list_href: String,
    human: String,
}

/// `/experiments/{id}/users/{user}`: who they are and their sessions.
pub async fn page(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path((experiment_id, user)): Path<(i64, String)>,
    Query(query): Query<SessionsQuery>,
) -> WebResult<UserPage> {
    let chrome = Chrome::new(
        &app,
        &ctx,
        format!("User {}", format::truncate(&user, 40)),
        "users",
        Some(experiment_id),
    )
    .await?;
    let summary = app.store.get_user(experiment_id, user.clone()).await?;
    let base = user_href(experiment_id, &user);
    let list = sessions::load_list(&app, experiment_id, Some(user.clone()), query, base).await?;
    let a = &summary.assessments;
    Ok(UserPage {
        chrome,
        traces_href: traces_of(experiment_id, metadata_keys::USER, &user),
        list_href: format!("/experiments/{experiment_id}/users"),
        human: if a.human_feedback > 0 {
            format!(
                "{} from people ({} positive, {} negative)",
                format::int(a.human_feedback),
                format::int(a.human_positive),
                format::int(a.human_negative)
            )
        } else {
            String::new()
        },
        user: user_row(&summary, now_ms()),
        list,
    })
}
