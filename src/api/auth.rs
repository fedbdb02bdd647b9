//! Authentication: one shared token, accepted as `Authorization: Bearer`
//! (what the MLflow SDK sends from `MLFLOW_TRACKING_TOKEN`) or as the
//! password of HTTP basic auth (`MLFLOW_TRACKING_USERNAME`/`PASSWORD`; the
//! user name is not checked). Off when no token is configured.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::error::{ApiError, ErrorCode};
use crate::app::AppState;

#[derive(Debug, Clone, Default)]
pub struct Auth {
    token: Option<String>,
}

/// Compares without an early exit, so timing does not leak the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(token: Option<String>) -> Self {
        Self { token }
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a presented secret is the token.
    pub fn token_matches(&self, presented: &str) -> bool {
        match &self.token {
            None => true,
            Some(t) => constant_time_eq(t.as_bytes(), presented.as_bytes()),
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check_authorization(&self, value: Option<&str>) -> bool {
        if self.token.is_none() {
            return true;
        }
        let Some(v) = value else { return false };
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return self.token_matches(t.trim());
        }
        if let Some(b) = v
            .strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
        {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
                return false;
            };
            let Ok(text) = String::from_utf8(decoded) else {
                return false;
            };
            return text
                .split_once(':')
                .is_some_and(|(_, password)| self.token_matches(password));
        }
        false
    }

    pub fn check_headers(&self, h: &HeaderMap) -> bool {
        self.check_authorization(h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
    }

    pub fn check_grpc(&self, md: &tonic::metadata::MetadataMap) -> bool {
        self.check_authorization(md.get("authorization").and_then(|v| v.to_str().ok()))
    }
}

/// Paths served without credentials: liveness for load balancers, the login
/// page and the assets it needs.
fn is_public(path: &str) -> bool {
    path == "/health" || path == "/login" || path.starts_with("/static/")
}

/// Rejects unauthenticated API calls with 401; browsers without a session
/// are sent to the login page instead.
pub async fn require_auth(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if !app.auth.enabled() || is_public(req.uri().path()) {
        return next.run(req).await;
    }
    if app.auth.check_headers(req.headers()) || crate::web::session_ok(&app, req.headers()) {
        return next.run(req).await;
    }
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html && req.method() == axum::http::Method::GET {
        let next_url = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let loc = format!(
            "/login?next={}",
            form_urlencoded::byte_serialize(next_url.as_bytes()).collect::<String>()
        );
        return (StatusCode::SEE_OTHER, [(header::LOCATION, loc)]).into_response();
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        "missing or wrong credentials: send Authorization: Bearer <token> (MLFLOW_TRACKING_TOKEN)",
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tracebox\", Basic realm=\"tracebox\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        let a = Auth::new(Some("s3cret-token".into()));
        assert!(a.check_authorization(Some("Bearer s3cret-token")));
        assert!(!a.check_authorization(Some("Bearer nope")));
        assert!(!a.check_authorization(None));
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-token");
        assert!(a.check_authorization(Some(&format!("Basic {basic}"))));
        let wrong = base64::engine::general_purpose::STANDARD.encode("alice:x");
        assert!(!a.check_authorization(Some(&format!("Basic {wrong}"))));
        assert!(Auth::new(None).check_authorization(None));
    }
}
