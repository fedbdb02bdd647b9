//! Registered scorers (MLflow's `mlflow.genai.scorers` registry) and their
//! online-scoring configurations, as plain data.
//!
//! The serialized scorer is kept as the client's exact text: the MLflow
//! client deserializes every payload it lists, so tracebox must return it
//! byte for byte. Its meaning is interpreted by `judge::spec`, not here.

/// One version of a registered scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerVersion {
    /// uuid4 with dashes; stable across the versions of one name.
    pub scorer_id: String,
    pub experiment_id: i64,
    pub name: String,
    pub version: i64,
    pub serialized_scorer: String,
    /// ms since the epoch.
    pub creation_time: i64,
}

/// How a scorer runs automatically on new traces (MLflow's
/// `OnlineScoringConfig`). `sample_rate` 0 means stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineConfig {
    /// 32 hex digits, fresh on every change.
    pub config_id: String,
    pub scorer_id: String,
    pub experiment_id: i64,
    pub sample_rate: f64,
    pub filter_string: Option<String>,
}
