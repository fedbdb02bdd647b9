//! tracebox's own operational endpoint, `GET /api/tracebox/v1/status`: the
//! store's size and counts, disk space, retention settings and last run,
//! how far the full-text index is behind, forwarding progress, limits and
//! load. The UI's settings page reads it;
//! so can monitoring that prefers JSON to `/metrics`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::error::ApiResult;
use crate::app::{AppState, dir_size, disk_available};
use crate::ops::retention::{RetentionRun, STATE_KEY, Settings};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/tracebox/v1/status", get(status))
}

fn run_json(r: &RetentionRun) -> Value {
    json!({
        "started_ms": r.started_ms,
        "finished_ms": r.finished_ms,
        "deleted_by_age": r.deleted_by_age,
        "deleted_by_size": r.deleted_by_size,
        "reclaimed_bytes": r.reclaimed_bytes,
        "dir_bytes_before": r.dir_bytes_before,
        "dir_bytes_after": r.dir_bytes_after,
        "error": r.error,
        "warning": r.warning,
    })
}

async fn status(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let stats = app.store.stats().await?;
    let dir = app.config.data_dir.clone();
    let (dir_bytes, available) =
        tokio::task::spawn_blocking(move || (dir_size(&dir), disk_available(&dir)))
            .await
            .unwrap_or((0, None));
    let settings = Settings::from_state(&app);
    let last = app.ops.retention.lock().clone();
    let last = match last {
        Some(r) => Some(r),
        // Before this process's first pass: the last one persisted.
        None => app
            .store
            .get_state(STATE_KEY.into())
            .await?
            .and_then(|s| serde_json::from_str::<RetentionRun>(&s).ok()),
    };
    let mut forward = app.ops.forward.lock().clone();
    if let Some(f) = &mut forward {
        // Fresh, rather than as of the forwarder's last attempt (which may
        // be a minute old while it backs off from a down upstream).
        f.backlog = (app.store.max_span_id().await? - f.cursor).max(0);
    }
    let index = match app.query.index() {
        Some(ix) => {
            let watermark = ix.watermark();
            let (pending_spans, pending_deletes) = app.store.index_backlog(watermark).await?;
            Some(json!({
                "documents": ix.num_docs(),
                "indexed_through_span": watermark,
                "pending_spans": pending_spans,
                "pending_deletes": pending_deletes,
                "caught_up": pending_spans == 0 && pending_deletes == 0,
            }))
        }
        None => None,
    };
    let limits = &app.config.limits;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "schema_version": crate::store::SCHEMA_VERSION,
        "store": {
            "dir_bytes": dir_bytes,
            "db_file_bytes": stats.file_bytes(),
            "db_free_bytes": stats.free_bytes(),
            "disk_available_bytes": available,
            "traces": stats.traces,
            "spans": stats.spans,
            "oldest_trace_ms": stats.oldest_trace_ms,
            "newest_trace_ms": stats.newest_trace_ms,
            "incremental_vacuum": stats.auto_vacuum == 2,
            "sync_full": app.config.sync_full,
        },
        "retention": {
            "enabled": settings.enabled(),
            "retention_days": settings.retention_days,
            "max_disk_bytes": settings.max_disk_bytes,
            "interval_secs": settings.interval.as_secs(),
            "last_run": last.as_ref().map(run_json),
        },
        "index": index,
        "forwarding": forward.map(|f| json!({
            "url": f.url,
            "cursor": f.cursor,
            "backlog_spans": f.backlog,
            "forwarded_spans": f.forwarded_spans,
            "dropped_spans": f.dropped_spans,
            "last_success_ms": f.last_success_ms,
            "last_error": f.last_error,
            "last_error_ms": f.last_error_ms,
        })),
        "load": {
            "write_queue_depth": app.store.write_queue_depth(),
            "inflight_bytes": app.budget.in_use_bytes(),
            "max_inflight_bytes": app.budget.total_bytes(),
        },
        "limits": {
            "max_body_bytes": app.config.max_body_bytes,
            "max_spans_per_request": limits.max_spans_per_request,
            "max_attribute_bytes": limits.max_attribute_bytes,
            "max_nesting_depth": limits.max_nesting_depth,
        },
        "auth": { "enabled": app.auth.enabled() },
    })))
}
