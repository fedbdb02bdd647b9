//! HTTP APIs: MLflow's REST API (`mlflow`), OTLP ingestion (`otlp`),
//! tracebox's own session and user views (`tracebox`), judge status and
//! backfills (`judges`), and operational endpoints (`/health`, `/metrics`).
//! Errors from every layer
//! become HTTP responses in `error`, the one place that maps them.

pub mod auth;
pub mod budget;
pub mod error;
pub mod extract;
pub mod judges;
pub mod limits;
pub mod mlflow;
pub mod observe;
pub mod ops;
pub mod otlp;
pub mod tracebox;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::AppState;

/// Every API route (the web UI adds its own).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/metrics", get(metrics))
        .merge(mlflow::router())
        .merge(judges::router())
        .merge(otlp::router())
        .merge(tracebox::router())
        .merge(ops::router())
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    app.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}
