//! Request extractors whose failures are MLflow-shaped errors: bodies read
//! under the configured size limit (413 beyond it), JSON that fails to parse
//! (400 naming the problem), and query strings with repeated keys.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;

/// How much of an oversize body is read and thrown away before answering
/// 413. Answering while the client is still sending makes the kernel reset
/// the connection, and most clients then report a broken pipe instead of the
/// 413; draining a bounded amount lets the answer arrive.
const DRAIN_CAP: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards what is left of a body, within [`DRAIN_CAP`] and
/// [`DRAIN_TIME`]; memory use stays at one frame.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                seen += d.len();
                if seen > DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_limited(
    mut body: Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        drain(body).await;
        return Err(ApiError::too_large(limit));
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > limit {
                drain(body).await;
                return Err(ApiError::too_large(limit));
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Bytes::from(buf))
}

/// The raw request body, size-limited.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        read_limited(body, &parts.headers, state.config.max_body_bytes)
            .await
            .map(RawBody)
    }
}

/// A JSON body parsed into `T`; an empty body parses as `{}` (MLflow clients
/// send DELETEs with and without bodies).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| {
        ApiError::invalid(format!(
            "Malformed JSON request body: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Query-string parameters in order, repeated keys kept (`trace_ids=a&trace_ids=b`).
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::invalid(format!("Missing value for required parameter '{key}'."))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or_default();
        Ok(Params(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}
