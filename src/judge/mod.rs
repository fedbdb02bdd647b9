//! LLM judges: MLflow's scorer registry semantics (`registry`, `spec`),
//! judge model calls (`model`), MLflow's prompts and output parsing
//! (`prompts`, `evaluate`, `parse`, `pyfmt`), the deterministic PII
//! detector (`pii`), sampling (`sampling`), the ingestion hook that feeds
//! the durable queue (`hook`), the runner that drains it (`runner`),
//! backfills (`backfill`), status (`status`) and the `tracebox judges`
//! command (`cli`).
//!
//! Data flow: ingestion → hook (queue rows, same transaction) → runner →
//! model → assessments (one transaction with the task's outcome).
//! Does not know MLflow's JSON wire shapes (`api::mlflow::scorers` does);
//! SQL lives in `store::scorers` and `store::judge_queue`.

pub mod backfill;
pub mod cli;
pub mod evaluate;
pub mod hook;
pub mod model;
pub mod parse;
mod payloads;
pub mod pii;
pub mod prompts;
pub mod pyfmt;
pub mod registry;
pub mod runner;
pub mod sampling;
pub mod spec;
pub mod status;

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::query::{QueryEngine, QueryError};
use crate::store::{Store, StoreError};

pub use hook::QueueGate;
pub use model::Models;

/// Errors of the judge layer; `api::error` maps them to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// Handles shared by the API, the runner and the hook; cheap to clone.
#[derive(Clone)]
pub struct Judges {
    pub models: Arc<Models>,
    pub gate: Arc<QueueGate>,
    /// `MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS=true`: accept `@scorer`
    /// registrations (stored, listed as unsupported; tracebox cannot run them).
    pub allow_custom_scorers: bool,
}

impl Judges {
    /// Builds the judge handles from configuration and the process environment.
    pub fn from_config(config: &Config) -> Judges {
        let models = Models::new(
            config.file.judges.clone(),
            config.file.gateway.clone(),
            |k| std::env::var(k).ok(),
        );
        Judges {
            models: Arc::new(models),
            gate: Arc::new(QueueGate::new(config.file.judges.queue_capacity)),
            allow_custom_scorers: std::env::var("MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// Registers the ingestion hook that queues evaluations.
    pub fn install_hook(&self, store: &Store, metrics: Arc<Metrics>) {
        store.on_traces_written(hook::hook(self.gate.clone(), metrics));
    }

    /// Starts the runner on the current tokio runtime.
    pub fn spawn_runner(
        &self,
        store: Store,
        query: QueryEngine,
        metrics: Arc<Metrics>,
    ) -> runner::RunnerHandle {
        let cfg = runner::RunnerConfig::from_settings(self.models.settings());
        runner::RunnerHandle::spawn(runner::Runner {
            store,
            query,
            models: self.models.clone(),
            metrics,
            gate: self.gate.clone(),
            cfg,
        })
    }
}
