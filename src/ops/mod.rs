//! Operations: the background tasks that keep a long-running box healthy
//! (retention, OTLP forwarding) and the offline/online tools around the
//! data directory (backup, restore, export, import, the directory lock).
//!
//! Runs on top of the store and the API's encoders; SQL stays in
//! `store::maintenance`, wire shapes in `api`. Background tasks publish
//! what they did in [`OpsStatus`], which `GET /api/tracebox/v1/status` and
//! `/metrics` read.

pub mod backup;
pub mod export;
pub mod forward;
pub mod lock;
pub mod retention;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppState;

/// What the background tasks last did. Each field has its own short-held
/// lock (never across an await): writers are the tasks, readers the status
/// endpoint.
#[derive(Debug, Default)]
pub struct OpsStatus {
    pub retention: Mutex<Option<retention::RetentionRun>>,
    pub forward: Mutex<Option<forward::ForwardStatus>>,
}

/// Starts the background tasks; they stop when `stop` turns true.
pub fn spawn_background(state: &AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(retention::run(state.clone(), stop.clone()))];
    if let Some(f) = forward::Forwarder::from_state(state) {
        tasks.push(tokio::spawn(f.run(stop)));
    }
    tasks
}

/// Sleeps for `d` unless `stop` turns true first; returns whether to stop.
pub async fn sleep_or_stop(d: std::time::Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}
