//! Wiring: opens the store, starts background workers, builds the router,
//! and serves until shutdown. The binary and the integration tests both go
//! through [`App::start`] and [`App::serve`], so tests run the real thing.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::auth::Auth;
use crate::api::budget::ByteBudget;
use crate::config::Config;
use crate::judge::Judges;
use crate::judge::runner::RunnerHandle;
use crate::metrics::Metrics;
use crate::ops::OpsStatus;
use crate::ops::lock::DataLock;
use crate::query::QueryEngine;
use crate::store::{Store, StoreError, StoreOptions};

/// Shared by every handler; each field is cheap to clone (handles around
/// `Arc`s), and none is mutable except through its own synchronisation.
#[derive(Clone)]
pub struct AppState {
    /// Source of truth; owns the writer thread and the read pool.
    pub store: Store,
    /// Filter parsing and search over the store.
    pub query: QueryEngine,
    /// Read-only after start-up.
    pub config: Arc<Config>,
    /// Atomic counters; recording never blocks.
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    /// Bounds the request bytes in flight (a semaphore; never held across
    /// anything but the request it was taken for).
    pub budget: Arc<ByteBudget>,
    /// What retention and forwarding last did; short-held locks inside.
    pub ops: Arc<OpsStatus>,
    /// Web UI login sessions; a mutex-guarded map inside (see `web::session`).
    pub login_sessions: Arc<crate::web::Sessions>,
    /// Judge models, queue gate; read-only handles (see `judge::Judges`).
    pub judges: Judges,
}

impl AppState {
    /// Updates gauges that are sampled rather than counted.
    pub fn refresh_gauges(&self) {
        self.metrics
            .write_queue_depth
            .set(self.store.write_queue_depth() as i64);
        self.metrics
            .store_bytes
            .set(dir_size(&self.config.data_dir) as i64);
        self.metrics
            .inflight_bytes
            .set(self.budget.in_use_bytes() as i64);
        if let Some(free) = disk_available(&self.config.data_dir) {
            self.metrics.disk_available_bytes.set(free as i64);
        }
    }
}

/// Bytes available to tracebox on the file system holding `dir`.
pub fn disk_available(dir: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// Start-up failures of the store, said in an operator's words.
fn explain_open_error(dir: &std::path::Path, e: StoreError) -> anyhow::Error {
    if e.is_disk_full() {
        let free = disk_available(dir).unwrap_or(0);
        anyhow::anyhow!(
            "cannot open the database in {}: the disk is full ({free} bytes available); \
             free some space (or lower --retention-days / --max-disk) and start again",
            dir.display()
        )
    } else if e.is_read_only() {
        anyhow::anyhow!(
            "cannot write to the data directory {}: it is read-only or not writable by this user ({e}); \
             fix its permissions or mount, or point --data at a writable directory",
            dir.display()
        )
    } else {
        anyhow::anyhow!("cannot open the database in {}: {e}", dir.display())
    }
}

/// Total size of the files under `dir` (the database, WAL and index).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A started application: store open, workers running, not yet serving.
pub struct App {
    pub state: AppState,
    /// Keeps the full-text indexer thread running; it stops when dropped,
    /// before the data directory lock below is let go.
    _indexer: crate::index::Indexer,
    /// The data directory is ours while this lives (see `ops::lock`).
    _lock: DataLock,
    /// The judge runner, stopped after the HTTP server on shutdown.
    judge_runner: Option<RunnerHandle>,
}

impl App {
    pub fn start(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let dir = &config.data_dir;
        let lock = DataLock::acquire(dir).map_err(|e| match e {
            crate::ops::lock::LockError::Io(_, io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                anyhow::anyhow!(
                    "cannot write to the data directory {}: {io}; fix its permissions or mount, \
                     or point --data at a writable directory",
                    dir.display()
                )
            }
            other => other.into(),
        })?;
        let store = Store::open(
            dir,
            StoreOptions {
                synchronous_full: config.sync_full,
                max_page_count: config.ops.db_max_pages,
                ..StoreOptions::default()
            },
        )
        .map_err(|e| explain_open_error(dir, e))?;
        if let Some(free) = disk_available(dir)
            && free < 256 << 20
        {
            tracing::warn!(
                available_bytes = free,
                "little disk space left for {}; writes will be refused with 503 when it runs out",
                dir.display()
            );
        }
        // Session and user aggregates commit with the traces they summarise.
        store.on_traces_written(crate::store::sessions::hook());
        let ops = Arc::new(OpsStatus::default());
        if let Some(url) = &config.forward_otlp {
            *ops.forward.lock() = Some(crate::ops::forward::Forwarder::prepare(&store, url)?);
        }
        let metrics = Arc::new(Metrics::new());
        let judges = Judges::from_config(&config);
        // Judge evaluations are queued in the ingestion transaction itself.
        judges.install_hook(&store, metrics.clone());
        // The full-text index is derived from SQLite: a missing or unreadable
        // one is recreated empty here and filled by the indexer thread in
        // the background (with a progress bar), so start-up stays fast.
        let (index, _opened) = crate::index::SearchIndex::open(&dir.join(crate::index::DIR))?;
        index.open_writer()?;
        let indexer = crate::index::Indexer::start(index.clone(), store.clone())?;
        let query = QueryEngine::with_index(store.clone(), index);
        let judge_runner = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| judges.spawn_runner(store.clone(), query.clone(), metrics.clone()));
        let state = AppState {
            query,
            store,
            metrics,
            auth: Arc::new(Auth::new(config.auth_token.clone())),
            budget: Arc::new(ByteBudget::new(
                config.ops.max_inflight_bytes,
                config.ops.inflight_wait,
            )),
            ops,
            login_sessions: Arc::new(crate::web::Sessions::default()),
            judges,
            config: Arc::new(config),
        };
        Ok(App {
            state,
            _indexer: indexer,
            _lock: lock,
            judge_runner,
        })
    }

    /// The full HTTP application: API, UI, auth and security headers.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        Router::new()
            .merge(crate::api::router())
            .merge(crate::web::router(state.clone()))
            // Innermost first: the byte budget is only spent on
            // authenticated requests, and the request log sees everything.
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::api::budget::limit_inflight,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::api::auth::require_auth,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::api::observe::observe,
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .with_state(state)
    }

    /// Serves HTTP on `listener` (and OTLP/gRPC on `grpc`, if given) until
    /// `shutdown` resolves; in-flight requests finish first.
    pub async fn serve(
        self,
        listener: TcpListener,
        grpc: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let router = self.router();
        let background = crate::ops::spawn_background(&self.state, stop_rx.clone());
        let grpc_task = grpc.map(|l| {
            let state = self.state.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::api::otlp::grpc::serve(state, l, stop).await {
                    tracing::error!(error = %e, "OTLP/gRPC server failed");
                }
            })
        });
        let mut rx = stop_rx.clone();
        let http = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        http.await?;
        if let Some(t) = grpc_task {
            let _ = t.await;
        }
        for t in background {
            // Background work stops at its next await; do not hang on it.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        if let Some(r) = self.judge_runner {
            r.stop().await;
        }
        Ok(())
    }
}
