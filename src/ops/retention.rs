//! Retention: a background task that deletes traces older than
//! `--retention-days`, then, while the data directory is larger than
//! `--max-disk`, the oldest traces whatever their age, and hands the freed
//! pages back to the file system.
//!
//! Deletion goes through the store's one delete path in batches of
//! [`BATCH`] traces, each its own transaction, so ingestion interleaves
//! with a long clean-up and derived stores (the full-text index) hear of
//! every deleted trace. Space comes back with `PRAGMA incremental_vacuum`
//! in small steps (databases tracebox creates use incremental auto-vacuum;
//! in an older file freed pages are reused by new data instead).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::app::{AppState, dir_size};
use crate::domain::now_ms;
use crate::metrics::ReasonLabel;
use crate::store::Store;

/// Traces deleted per transaction.
pub const BATCH: usize = 500;
/// Pages returned to the file system per transaction (8 MiB of 4 KiB pages).
const VACUUM_STEP: i64 = 2048;
/// When the first pass runs after start-up, at most: long enough that a
/// restart loop or a short-lived test server never deletes anything.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(300);
/// Deleting by size aims this far below `--max-disk`, so that one pass
/// buys room for a while instead of trimming one batch every run.
const SIZE_TARGET: f64 = 0.9;
/// Key of the last run in the store's `ops_state`.
pub const STATE_KEY: &str = "retention.last_run";

/// What one pass did (also persisted, so the status survives restarts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RetentionRun {
    pub started_ms: i64,
    pub finished_ms: i64,
    pub deleted_by_age: u64,
    pub deleted_by_size: u64,
    /// Bytes the database file shrank by.
    pub reclaimed_bytes: u64,
    pub dir_bytes_before: u64,
    pub dir_bytes_after: u64,
    /// Set when the pass stopped early; it is retried next interval.
    pub error: Option<String>,
    /// Something the operator should know (e.g. the index alone is over
    /// the size limit).
    pub warning: Option<String>,
}

/// Retention settings as the status endpoint shows them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub retention_days: u32,
    pub max_disk_bytes: Option<u64>,
    pub interval: Duration,
}

impl Settings {
    pub fn from_state(state: &AppState) -> Settings {
        Settings {
            retention_days: state.config.retention_days,
            max_disk_bytes: state.config.max_disk_bytes,
            interval: state.config.ops.retention_interval,
        }
    }
    pub fn enabled(&self) -> bool {
        self.retention_days > 0 || self.max_disk_bytes.is_some()
    }
}

/// The task: one pass shortly after start, then one per interval.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let settings = Settings::from_state(&state);
    if !settings.enabled() {
        tracing::info!("retention is off (--retention-days 0, --max-disk off)");
        return;
    }
    let mut wait = settings.interval.min(FIRST_RUN_AFTER);
    loop {
        if super::sleep_or_stop(wait, &mut stop).await {
            return;
        }
        wait = settings.interval;
        let r = run_once(&state, &settings, &stop).await;
        if let Some(e) = &r.error {
            tracing::error!(error = %e, "retention pass failed; retrying next interval");
        } else if r.deleted_by_age + r.deleted_by_size > 0 {
            tracing::info!(
                deleted_by_age = r.deleted_by_age,
                deleted_by_size = r.deleted_by_size,
                reclaimed_bytes = r.reclaimed_bytes,
                dir_bytes = r.dir_bytes_after,
                "retention pass"
            );
        }
        if let Some(w) = &r.warning {
            tracing::warn!("{w}");
        }
        if let Ok(json) = serde_json::to_string(&r) {
            let _ = state.store.set_state(STATE_KEY.into(), json).await;
        }
        *state.ops.retention.lock() = Some(r);
        state.metrics.retention_runs.inc();
    }
}

/// One retention pass.
pub async fn run_once(
    state: &AppState,
    settings: &Settings,
    stop: &watch::Receiver<bool>,
) -> RetentionRun {
    let dir = state.config.data_dir.clone();
    let mut run = RetentionRun {
        started_ms: now_ms(),
        dir_bytes_before: measure_dir(&dir).await,
        ..RetentionRun::default()
    };
    if let Err(e) = pass(state, settings, stop, &mut run).await {
        run.error = Some(e.to_string());
    }
    run.dir_bytes_after = measure_dir(&dir).await;
    run.finished_ms = now_ms();
    run
}

async fn measure_dir(dir: &std::path::Path) -> u64 {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || dir_size(&dir))
        .await
        .unwrap_or(0)
}

fn count(state: &AppState, reason: &str, n: usize) {
    state
        .metrics
        .retention_deleted
        .get_or_create(&ReasonLabel {
            reason: reason.into(),
        })
        .inc_by(n as u64);
}

async fn pass(
    state: &AppState,
    settings: &Settings,
    stop: &watch::Receiver<bool>,
    run: &mut RetentionRun,
) -> crate::store::Result<()> {
    let store = &state.store;
    let file_before = store.stats().await?.file_bytes();
    if settings.retention_days > 0 {
        let cutoff = now_ms() - settings.retention_days as i64 * 86_400_000;
        loop {
            let n = store.delete_oldest(Some(cutoff), BATCH).await?;
            run.deleted_by_age += n as u64;
            count(state, "age", n);
            if n < BATCH || *stop.borrow() {
                break;
            }
        }
    }
    if let Some(max) = settings.max_disk_bytes {
        // Measure the directory without the WAL's leftovers.
        store.checkpoint_truncate().await?;
        trim_to_size(state, max, stop, run).await?;
    }
    reclaim(store, stop).await?;
    // Deleting and vacuuming went through the WAL; hand that space back too.
    store.checkpoint_truncate().await?;
    let file_after = store.stats().await?.file_bytes();
    run.reclaimed_bytes = file_before.saturating_sub(file_after);
    Ok(())
}

/// Deletes the oldest traces while the directory is over `max` bytes.
///
/// Only the database shrinks when traces go (the full-text index catches
/// up later, the WAL is bounded), so the other files are measured once and
/// subtracted from the limit; if they alone exceed it, deleting traces
/// cannot help and the pass says so instead of emptying the database.
async fn trim_to_size(
    state: &AppState,
    max: u64,
    stop: &watch::Receiver<bool>,
    run: &mut RetentionRun,
) -> crate::store::Result<()> {
    let store = &state.store;
    let s = store.stats().await?;
    let dir_bytes = measure_dir(&state.config.data_dir).await;
    let others = dir_bytes.saturating_sub(s.file_bytes());
    if others >= max {
        run.warning = Some(format!(
            "files other than the database ({others} bytes: full-text index, WAL) exceed --max-disk \
             ({max} bytes); not deleting traces by size"
        ));
        return Ok(());
    }
    let db_budget = max - others;
    // Free pages count as room: new writes reuse them before the file grows.
    if s.used_bytes() <= db_budget {
        return Ok(());
    }
    let target = (db_budget as f64 * SIZE_TARGET) as u64;
    let started = Instant::now();
    loop {
        let s = store.stats().await?;
        if s.used_bytes() <= target || s.traces == 0 || *stop.borrow() {
            break;
        }
        let per_trace = (s.used_bytes() / s.traces.max(1) as u64).max(1);
        let want = ((s.used_bytes() - target) / per_trace).clamp(1, BATCH as u64) as usize;
        let n = store.delete_oldest(None, want).await?;
        run.deleted_by_size += n as u64;
        count(state, "disk", n);
        if n == 0 || started.elapsed() > Duration::from_secs(600) {
            break;
        }
    }
    Ok(())
}

/// Returns free pages to the file system in small transactions.
async fn reclaim(store: &Store, stop: &watch::Receiver<bool>) -> crate::store::Result<()> {
    let mut last = i64::MAX;
    loop {
        let s = store.stats().await?;
        if s.auto_vacuum != 2 || s.freelist_count == 0 || s.freelist_count >= last || *stop.borrow()
        {
            return Ok(());
        }
        last = s.freelist_count;
        store.incremental_vacuum(VACUUM_STEP).await?;
    }
}
