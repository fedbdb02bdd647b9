//! The one place where errors become HTTP responses.
//!
//! Every error leaves as MLflow's shape, `{"error_code": ..., "message": ...}`,
//! because the MLflow SDK only understands that shape (a non-JSON 404 even
//! sends it down legacy code paths). Internal causes are logged with an id and
//! never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::judge::JudgeError;
use crate::query::QueryError;
use crate::store::StoreError;

/// MLflow error codes tracebox uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidParameterValue,
    ResourceDoesNotExist,
    ResourceAlreadyExists,
    BadRequest,
    Unauthenticated,
    PermissionDenied,
    RequestLimitExceeded,
    TemporarilyUnavailable,
    InternalError,
    EndpointNotFound,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::EndpointNotFound => "ENDPOINT_NOT_FOUND",
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (503 under overload).
    pub retry_after: Option<u32>,
    /// Short label for `tracebox_rejected_requests{reason}` and the request
    /// log; `None` derives one from the status.
    pub reason: Option<&'static str>,
}

/// Attached to error responses so the request-logging middleware can log
/// and count them without parsing bodies.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub reason: &'static str,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            reason: None,
        }
    }
    /// Sets the metrics/log label (see [`ApiError::reason`]).
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }
    /// The label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        self.reason
            .unwrap_or_else(|| reason_for_status(self.status))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidParameterValue,
            message,
        )
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ResourceDoesNotExist,
            message,
        )
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestLimitExceeded,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }
    /// A count limit (spans per request, ...) exceeded: 413 like a size limit.
    pub fn too_large_count(what: &str, limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestLimitExceeded,
            format!("too many {what}: the limit is {limit}"),
        )
        .with_reason("too_many_items")
    }
    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TemporarilyUnavailable,
                message,
            )
        }
    }
    /// An unexpected failure: logged in full, reported by reference only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        tracing::error!(error_id = %id, error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            format!("internal error (id {id}); see the server log"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::AlreadyExists(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ResourceAlreadyExists, m)
            }
            StoreError::Invalid(m) => ApiError::invalid(m),
            StoreError::Overloaded => {
                ApiError::unavailable("tracebox is busy writing; retry shortly", 1)
                    .with_reason("write_queue_full")
            }
            e if e.is_disk_full() => ApiError::unavailable(
                "tracebox cannot write: the disk is full; nothing was stored",
                30,
            )
            .with_reason("disk_full"),
            e if e.is_read_only() => ApiError::unavailable(
                "tracebox cannot write: its data directory is read-only; nothing was stored",
                30,
            )
            .with_reason("read_only"),
            e if e.is_io_error() => {
                tracing::error!(error = %e, "storage I/O error");
                ApiError::unavailable(
                    "tracebox cannot write to its data directory (storage I/O error, see the server log); \
                     nothing was stored",
                    30,
                )
                .with_reason("io_error")
            }
            StoreError::Closed => {
                ApiError::unavailable("tracebox is shutting down", 5).with_reason("shutting_down")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Store(s) => s.into(),
            QueryError::Index(m) => ApiError::internal(m),
            other => ApiError::invalid(other.to_string()),
        }
    }
}

/// The default metrics/log label of an error status.
pub fn reason_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "unavailable",
        507 => "disk_full",
        _ => "internal",
    }
}

impl From<JudgeError> for ApiError {
    fn from(e: JudgeError) -> Self {
        match e {
            JudgeError::Store(s) => s.into(),
            JudgeError::Query(q) => q.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.code.as_str(), "message": self.message });
        let info = ErrorInfo {
            reason: self.reason(),
            message: self.message.clone(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        resp.extensions_mut().insert(info);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
