//! Experiments and trace summaries (MLflow's TraceInfo).

use std::collections::BTreeMap;

use super::{Assessment, TokenUsage};

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub experiment_id: i64,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceState {
    #[default]
    Unspecified,
    Ok,
    Error,
    InProgress,
}

impl TraceState {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceState::Unspecified => "STATE_UNSPECIFIED",
            TraceState::Ok => "OK",
            TraceState::Error => "ERROR",
            TraceState::InProgress => "IN_PROGRESS",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "STATE_UNSPECIFIED" | "TRACE_STATUS_UNSPECIFIED" => Some(TraceState::Unspecified),
            "OK" => Some(TraceState::Ok),
            "ERROR" => Some(TraceState::Error),
            "IN_PROGRESS" => Some(TraceState::InProgress),
            _ => None,
        }
    }
}

/// Tag keys with a meaning to MLflow clients or to tracebox.
pub mod tag_keys {
    pub const TRACE_NAME: &str = "mlflow.traceName";
    pub const SPANS_LOCATION: &str = "mlflow.trace.spansLocation";
    pub const ARTIFACT_LOCATION: &str = "mlflow.artifactLocation";
    pub const SESSION: &str = "mlflow.trace.session";
    pub const USER: &str = "mlflow.trace.user";
    pub const TRACKING_STORE: &str = "TRACKING_STORE";
}

/// Metadata keys with a meaning to MLflow clients or to tracebox.
pub mod metadata_keys {
    pub const SESSION: &str = "mlflow.trace.session";
    pub const USER: &str = "mlflow.trace.user";
    pub const TOKEN_USAGE: &str = "mlflow.trace.tokenUsage";
    pub const INFO_FINALIZED: &str = "mlflow.trace.infoFinalized";
    pub const SCHEMA_VERSION: &str = "mlflow.trace_schema.version";
    pub const TRACE_INPUTS: &str = "mlflow.traceInputs";
    pub const TRACE_OUTPUTS: &str = "mlflow.traceOutputs";
}

/// The summary row of a trace, MLflow's TraceInfoV3 in plain data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceInfo {
    pub trace_id: String,
    pub experiment_id: i64,
    pub client_request_id: Option<String>,
    pub request_time_ms: i64,
    pub execution_time_ms: Option<i64>,
    pub state: TraceState,
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub assessments: Vec<Assessment>,
    /// Summed over spans unless the client reported a trace-level figure.
    pub tokens: TokenUsage,
}

impl TraceInfo {
    /// The trace's name: MLflow's `mlflow.traceName` tag.
    pub fn name(&self) -> Option<&str> {
        self.tags.get(tag_keys::TRACE_NAME).map(String::as_str)
    }
    /// Session id, from tags (where `update_current_trace(tags=...)` puts it)
    /// or metadata (where `update_current_trace(session_id=...)` puts it).
    pub fn session_id(&self) -> Option<&str> {
        self.tags
            .get(tag_keys::SESSION)
            .or_else(|| self.metadata.get(metadata_keys::SESSION))
            .map(String::as_str)
    }
    /// User id, from tags or metadata like [`TraceInfo::session_id`].
    pub fn user_id(&self) -> Option<&str> {
        self.tags
            .get(tag_keys::USER)
            .or_else(|| self.metadata.get(metadata_keys::USER))
            .map(String::as_str)
    }
}
