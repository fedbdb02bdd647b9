//! The landing redirect and the experiments list (volume from the hourly
//! rollups, so the page costs the same at a million traces as at ten).

use askama::Template;
use askama_web::WebTemplate;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};

use super::chart::{self, Spark};
use super::error::WebResult;
use super::format;
use super::layout::Chrome;
use super::session::Ctx;
use crate::app::AppState;
use crate::domain::now_ms;
use crate::store::experiments::ViewType;

/// Days of volume in each row's sparkline.
const SPARK_DAYS: i64 = 14;

/// `/`: the trace list of the most recently active experiment.
pub async fn home(State(app): State<AppState>) -> WebResult<Response> {
    Ok(match app.store.most_recent_experiment().await? {
        Some(id) => Redirect::to(&format!("/experiments/{id}/traces")).into_response(),
        None => Redirect::to("/experiments").into_response(),
    })
}

pub struct ExpRow {
    pub name: String,
    pub id: i64,
    pub traces_href: String,
    pub dashboard_href: String,
    pub traces: String,
    pub last_iso: Option<String>,
    pub last_label: String,
    pub last_ago: String,
    pub created: String,
    pub created_iso: String,
    pub spark: Spark,
    pub week: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "experiments.html")]
pub struct ExperimentsPage {
    chrome: Chrome,
    rows: Vec<ExpRow>,
}

pub async fn list(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> WebResult<ExperimentsPage> {
    let chrome = Chrome::new(&app, &ctx, "Experiments", "experiments", None).await?;
    let now = now_ms();
    let exps = app.store.list_experiments(ViewType::ActiveOnly).await?;
    let activity = app
        .store
        .experiment_activity_summary(now, SPARK_DAYS)
        .await?;
    let mut rows: Vec<(Option<i64>, ExpRow)> = exps
        .into_iter()
        .map(|e| {
            let a = activity
                .iter()
                .find(|a| a.experiment_id == e.experiment_id)
                .cloned()
                .unwrap_or_default();
            let week: u64 = a.daily.iter().rev().take(7).sum();
            (
                a.last_request_ms,
                ExpRow {
                    traces_href: format!("/experiments/{}/traces", e.experiment_id),
                    dashboard_href: format!("/experiments/{}/dashboard", e.experiment_id),
                    name: e.name,
                    id: e.experiment_id,
                    traces: format::int(a.traces as i64),
                    last_iso: a.last_request_ms.map(format::iso),
                    last_label: a.last_request_ms.map(format::datetime).unwrap_or_default(),
                    last_ago: a
                        .last_request_ms
                        .map(|t| format::ago(t, now))
                        .unwrap_or_else(|| "never".into()),
                    created: format::datetime(e.creation_time),
                    created_iso: format::iso(e.creation_time),
                    spark: chart::spark(&a.daily),
                    week: format::int(week as i64),
                },
            )
        })
        .collect();
    rows.sort_by_key(|(last, r)| (std::cmp::Reverse(*last), r.name.to_lowercase()));
    Ok(ExperimentsPage {
        chrome,
        rows: rows.into_iter().map(|(_, r)| r).collect(),
    })
}
