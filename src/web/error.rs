//! Errors of UI handlers, shown as HTML pages.
//!
//! Status codes and messages come from the API's one mapping
//! (`api::error::ApiError`), so a store or query error means the same thing
//! in the UI as over the API, and internal causes are logged with an id
//! there and never shown.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::assets::asset;
use crate::api::error::ApiError;
use crate::query::QueryError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            message: e.message,
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<QueryError> for WebError {
    fn from(e: QueryError) -> Self {
        ApiError::from(e).into()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: String,
    message: String,
    css: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            reason: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            message: self.message,
            css: asset("app.css"),
        };
        let mut resp = page.into_response();
        *resp.status_mut() = self.status;
        resp
    }
}

pub type WebResult<T> = Result<T, WebError>;
