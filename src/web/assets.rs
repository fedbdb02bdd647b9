//! Static assets (CSS, JS, icons) compiled into the binary from `web/`.
//!
//! Pages link assets with a content-hash query (`/static/app.css?v=…`), so
//! a link is cached for good and a new build changes the link; requests
//! without the current hash are revalidated with the ETag.

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

fn version(path: &str) -> Option<String> {
    Assets::get(path).map(|f| hex::encode(&f.metadata.sha256_hash()[..6]))
}

/// The URL of an embedded asset, with its content hash.
pub fn asset(path: &str) -> String {
    match version(path) {
        Some(v) => format!("/static/{path}?v={v}"),
        None => format!("/static/{path}"),
    }
}

#[derive(Deserialize)]
pub struct AssetQuery {
    v: Option<String>,
}

pub async fn serve(
    Path(path): Path<String>,
    Query(q): Query<AssetQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let hash = hex::encode(&file.metadata.sha256_hash()[..6]);
    let etag = format!("\"{hash}\"");
    let cache = if q.v.as_deref() == Some(hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, file.metadata.mimetype().to_string())],
            file.data.into_owned(),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
