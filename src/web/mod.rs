//! The web UI: server-rendered pages (askama templates in `templates/`),
//! static assets embedded from `web/`, the login session and CSRF checks.
//!
//! Reads through the store and the query engine and writes assessments
//! through the same store call the MLflow API uses; never writes SQL. Trace
//! content is untrusted: templates autoescape everything, pages carry a
//! strict Content-Security-Policy (scripts only from `/static`, no inline
//! scripts, styles or handlers), and data never becomes a link target (user
//! and session ids appear only percent-encoded in links to their own pages).

mod activity;
mod assets;
mod chart;
mod dashboard;
mod error;
mod experiments;
mod feedback;
mod format;
mod json_view;
mod layout;
mod paging;
mod range;
pub mod session;
mod sessions;
mod trace;
mod traces;
mod users;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::app::AppState;

pub use session::Sessions;

/// Content-Security-Policy of every UI response: nothing inline, nothing
/// from elsewhere. SVG charts use presentation attributes, which CSP's
/// `style-src` does not govern.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(experiments::home))
        .route("/experiments", get(experiments::list))
        .route("/experiments/{experiment_id}/traces", get(traces::list))
        .route(
            "/experiments/{experiment_id}/dashboard",
            get(dashboard::page),
        )
        .route("/experiments/{experiment_id}/sessions", get(sessions::list))
        .route(
            "/experiments/{experiment_id}/sessions/{session_id}",
            get(sessions::page),
        )
        .route(
            "/experiments/{experiment_id}/sessions/{session_id}/feedback",
            post(sessions::add_feedback),
        )
        .route(
            "/experiments/{experiment_id}/sessions/{session_id}/assessments/{assessment_id}/delete",
            post(sessions::delete_assessment),
        )
        .route("/experiments/{experiment_id}/users", get(users::list))
        .route(
            "/experiments/{experiment_id}/users/{user}",
            get(users::page),
        )
        .route("/traces/{trace_id}", get(trace::page))
        .route("/traces/{trace_id}/spans/{span_id}", get(trace::span_panel))
        .route(
            "/traces/{trace_id}/spans/{span_id}/json",
            get(trace::span_json),
        )
        .route("/traces/{trace_id}/feedback", post(trace::add_feedback))
        .route(
            "/traces/{trace_id}/expectations",
            post(trace::add_expectation),
        )
        .route(
            "/traces/{trace_id}/assessments/{assessment_id}/delete",
            post(trace::delete_assessment),
        )
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/static/{*path}", get(assets::serve))
        .layer(middleware::from_fn_with_state(state, session::context))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages show live data and may be private: revalidate every time.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
    }
    resp
}

/// Whether the request carries a valid UI session cookie and does not come
/// from another origin (a session cookie is ambient authority; another
/// site's page must not be able to use it, even same-site on another port).
pub fn session_ok(app: &AppState, headers: &HeaderMap) -> bool {
    session::same_origin(headers) && app.login_sessions.lookup(headers).is_some()
}
