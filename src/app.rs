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
use crate::config::Config;
use crate::metrics::Metrics;
use crate::query::QueryEngine;
use crate::store::{Store, StoreOptions};

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
    /// Keeps the full-text indexer thread running (it stops when dropped).
    _indexer: crate::index::Indexer,
}

impl App {
    pub fn start(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let store = Store::open(
            &config.data_dir,
            StoreOptions {
                synchronous_full: config.sync_full,
                ..StoreOptions::default()
            },
        )?;
        // The full-text index is derived from SQLite: a missing or unreadable
        // one is recreated empty here and filled by the indexer thread in
        // the background (with a progress bar), so start-up stays fast.
        let (index, _opened) = crate::index::SearchIndex::open(&config.data_dir.join("index"))?;
        index.open_writer()?;
        let indexer = crate::index::Indexer::start(index.clone(), store.clone())?;
        let state = AppState {
            query: QueryEngine::with_index(store.clone(), index),
            store,
            metrics: Arc::new(Metrics::new()),
            auth: Arc::new(Auth::new(config.auth_token.clone())),
            config: Arc::new(config),
        };
        Ok(App {
            state,
            _indexer: indexer,
        })
    }

    /// The full HTTP application: API, UI, auth and security headers.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        Router::new()
            .merge(crate::api::router())
            .merge(crate::web::router())
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::api::auth::require_auth,
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
        Ok(())
    }
}
