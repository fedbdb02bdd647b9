//! tracebox's own judge endpoints (not MLflow's):
//! `GET /api/tracebox/v1/judges[?experiment_id=N]` (status of every judge,
//! the queue and model endpoints), `POST /api/tracebox/v1/judges/backfill`
//! (run a judge over stored traces) and
//! `GET /api/tracebox/v1/judges/backfill/{batch}` (its progress).
//! Documented in docs/api.md.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params};
use crate::app::AppState;
use crate::judge::{backfill, registry, status};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tracebox/v1/judges", get(judges_status))
        .route("/api/tracebox/v1/judges/backfill", post(start_backfill))
        .route(
            "/api/tracebox/v1/judges/backfill/{batch}",
            get(backfill_progress),
        )
}

async fn judges_status(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let exp = params
        .get("experiment_id")
        .filter(|e| !e.is_empty())
        .map(registry::parse_experiment_id)
        .transpose()?;
    let s = status::collect(
        &app.store,
        &app.judges.models,
        app.judges.gate.capacity,
        exp,
    )
    .await?;
    serde_json::to_value(&s)
        .map(Json)
        .map_err(ApiError::internal)
}

#[derive(Deserialize)]
struct BackfillReq {
    #[serde(default)]
    experiment_id: Option<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    filter_string: Option<String>,
    #[serde(default)]
    rerun: bool,
    #[serde(default)]
    max_traces: Option<usize>,
}

async fn start_backfill(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<BackfillReq>,
) -> ApiResult<Json<Value>> {
    let exp = match &req.experiment_id {
        Some(Value::String(s)) if !s.is_empty() => registry::parse_experiment_id(s)?,
        Some(Value::Number(n)) => registry::parse_experiment_id(&n.to_string())?,
        _ => {
            return Err(ApiError::invalid(
                "Missing value for required parameter 'experiment_id'.",
            ));
        }
    };
    let name = req
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'name'."))?;
    let started = backfill::start(
        &app.store,
        &app.query,
        &app.judges.gate,
        backfill::Request {
            experiment_id: exp,
            name,
            filter: req.filter_string.filter(|f| !f.trim().is_empty()),
            rerun: req.rerun,
            limit: req.max_traces,
        },
    )
    .await?;
    serde_json::to_value(&started)
        .map(Json)
        .map_err(ApiError::internal)
}

async fn backfill_progress(
    State(app): State<AppState>,
    Path(batch): Path<String>,
) -> ApiResult<Json<Value>> {
    let p = backfill::progress(&app.store, &batch).await?;
    if p.total == 0 {
        return Err(ApiError::not_found(format!(
            "No backfill with id '{batch}'"
        )));
    }
    serde_json::to_value(&p)
        .map(Json)
        .map_err(ApiError::internal)
}
