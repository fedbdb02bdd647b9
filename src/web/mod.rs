//! The web UI: server-rendered pages (askama) and embedded static assets.
//! Reads through the store and the query engine; never writes SQL itself.

use axum::Router;
use axum::http::HeaderMap;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}

/// Whether the request carries a valid UI session cookie.
pub fn session_ok(_app: &AppState, _headers: &HeaderMap) -> bool {
    false
}
