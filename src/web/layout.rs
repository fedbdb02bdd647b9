//! What every page's frame needs: title, navigation state, the experiment
//! switcher, the logout form's CSRF token and asset links.

use super::assets::asset;
use super::error::WebResult;
use super::session::Ctx;
use crate::app::AppState;
use crate::store::experiments::ViewType;

#[derive(Debug, Clone)]
pub struct ExpLink {
    pub id: i64,
    pub name: String,
    pub current: bool,
}

/// The page frame (`templates/base.html`).
pub struct Chrome {
    pub title: String,
    /// Which navigation entry is active: `traces`, `sessions`, `users`,
    /// `dashboard`, `experiments`.
    pub section: &'static str,
    pub experiment: Option<ExpLink>,
    pub experiments: Vec<ExpLink>,
    pub csrf: String,
    pub logged_in: bool,
    pub css: String,
    pub js: String,
    pub icon: String,
}

impl Chrome {
    pub async fn new(
        app: &AppState,
        ctx: &Ctx,
        title: impl Into<String>,
        section: &'static str,
        experiment_id: Option<i64>,
    ) -> WebResult<Chrome> {
        let all = app.store.list_experiments(ViewType::ActiveOnly).await?;
        let mut experiments: Vec<ExpLink> = all
            .into_iter()
            .map(|e| ExpLink {
                current: Some(e.experiment_id) == experiment_id,
                id: e.experiment_id,
                name: e.name,
            })
            .collect();
        experiments.sort_by_key(|e| e.name.to_lowercase());
        let experiment = match experiment_id {
            None => None,
            Some(id) => match experiments.iter().find(|e| e.id == id) {
                Some(e) => Some(e.clone()),
                // A deleted experiment's traces can still be opened.
                None => Some(ExpLink {
                    id,
                    name: app.store.get_experiment(id).await?.name,
                    current: true,
                }),
            },
        };
        Ok(Chrome {
            title: title.into(),
            section,
            experiment,
            experiments,
            csrf: ctx.csrf.clone(),
            logged_in: ctx.logged_in,
            css: asset("app.css"),
            js: asset("app.js"),
            icon: asset("favicon.svg"),
        })
    }

    pub fn is(&self, section: &str) -> bool {
        self.section == section
    }

    /// Where the experiment switcher leads: the same kind of page of the
    /// other experiment (its list, for a trace or a session).
    pub fn switch_to(&self) -> &'static str {
        match self.section {
            "dashboard" => "dashboard",
            "sessions" => "sessions",
            "users" => "users",
            _ => "traces",
        }
    }
}
