//! The in-flight byte budget: request bodies (and room to inflate compressed
//! ones) hold permits of one semaphore from before the body is read until
//! the response is ready, so decoded uploads waiting for the store can never
//! add up to more memory than the budget, however many clients send 64 MiB
//! at once. A request that cannot get room within a short wait is answered
//! 503 with `Retry-After` (the MLflow SDK and OTLP exporters retry it)
//! instead of being buffered.
//!
//! Knows HTTP headers only; not what the bodies contain.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::app::AppState;

/// Permits are KiB so the whole budget fits the semaphore's `u32` counts.
const UNIT: usize = 1024;

pub struct ByteBudget {
    sem: Arc<Semaphore>,
    total_units: u32,
    wait: Duration,
}

impl ByteBudget {
    pub fn new(total_bytes: usize, wait: Duration) -> Self {
        let units = total_bytes.div_ceil(UNIT).clamp(1, u32::MAX as usize / 2) as u32;
        Self {
            sem: Arc::new(Semaphore::new(units as usize)),
            total_units: units,
            wait,
        }
    }

    pub fn total_bytes(&self) -> usize {
        self.total_units as usize * UNIT
    }

    /// Bytes currently reserved by requests in flight.
    pub fn in_use_bytes(&self) -> usize {
        (self.total_units as usize).saturating_sub(self.sem.available_permits()) * UNIT
    }

    /// Reserves room for `bytes` (at most the whole budget, so any single
    /// request can run alone), waiting up to the configured time.
    pub async fn acquire(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let units = bytes.div_ceil(UNIT).clamp(1, self.total_units as usize) as u32;
        match tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(units)).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(ApiError::unavailable("tracebox is shutting down", 5)
                .with_reason("shutting_down")),
            Err(_) => Err(ApiError::unavailable(
                format!(
                    "tracebox has {} MiB of uploads in flight (its --max-inflight-bytes budget); retry shortly",
                    self.total_bytes() >> 20
                ),
                1,
            )
            .with_reason("memory_budget")),
        }
    }
}

/// What a request may cost in memory before it is decoded: its declared
/// length (or the largest allowed body when it does not declare one), plus
/// the largest allowed body again when it is compressed, since it will be
/// inflated up to that size.
pub fn request_charge(method: &Method, headers: &HeaderMap, max_body: usize) -> usize {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = match declared {
        Some(n) => n.min(max_body),
        None if headers.contains_key(header::TRANSFER_ENCODING) => max_body,
        None if matches!(*method, Method::POST | Method::PUT | Method::PATCH) => max_body,
        None => 0,
    };
    if body == 0 {
        return 0;
    }
    let compressed = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("identity"));
    if compressed { body + max_body } else { body }
}

/// Middleware: holds the request's share of the budget until its response
/// is built.
pub async fn limit_inflight(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let charge = request_charge(req.method(), req.headers(), app.config.max_body_bytes);
    if charge == 0 {
        return next.run(req).await;
    }
    let permit = match app.budget.acquire(charge).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let resp = next.run(req).await;
    drop(permit);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_then_refuses_with_503_and_frees_on_drop() {
        let b = ByteBudget::new(10 * UNIT, Duration::from_millis(50));
        let p = b.acquire(8 * UNIT).await.unwrap();
        assert_eq!(b.in_use_bytes(), 8 * UNIT);
        let e = b.acquire(4 * UNIT).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.retry_after, Some(1));
        drop(p);
        // Larger than the whole budget: clamped, so it still runs alone.
        let _big = b.acquire(100 * UNIT).await.unwrap();
    }

    #[test]
    fn charges_declared_length_and_room_to_inflate() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "1000".parse().unwrap());
        assert_eq!(request_charge(&Method::POST, &h, 64), 64);
        assert_eq!(request_charge(&Method::POST, &h, 5000), 1000);
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(request_charge(&Method::POST, &h, 5000), 6000);
        assert_eq!(request_charge(&Method::GET, &HeaderMap::new(), 5000), 0);
        assert_eq!(request_charge(&Method::POST, &HeaderMap::new(), 5000), 5000);
    }
}
