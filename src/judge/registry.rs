//! The scorer registry's rules, shared by the MLflow routes and the CLI:
//! what may be registered, started and deleted, with MLflow's error
//! messages (the MLflow client shows them verbatim). Runs inside store
//! transactions; validation comes before any write, so a refused request
//! changes nothing.
//!
//! Differences from MLflow, on purpose (see docs/api.md):
//! * a `gateway:/NAME` missing from `tracebox.toml` does not fail
//!   registration (MLflow answers 404): the judge is listed as
//!   misconfigured, because the file can be fixed after registering;
//! * starting (`sample_rate` > 0) accepts `openai:/MODEL`, builtins without
//!   a model (tracebox's default model) and the model-free PII detector,
//!   not only gateway models, because tracebox calls providers itself;
//! * make_judges using `{{ expectations }}` may run online (the trace's
//!   logged expectations are used).
//!
//! Knows no HTTP; SQL stays in `store::scorers`.

use rusqlite::Connection;
use serde_json::Value;

use super::pyfmt;
use super::spec::{self, Kind};
use crate::domain::{OnlineConfig, ScorerVersion};
use crate::store::{Result, StoreError, scorers};

/// MLflow's refusal of `@scorer` functions, verbatim.
pub const CUSTOM_SCORER_REFUSED: &str = "Custom scorer registration (using @scorer decorator) is disabled by default outside of Databricks tracking environments due to security concerns. Custom scorers require arbitrary code execution during deserialization.\n\nTo use custom scorers:\n1. Configure MLflow to use a Databricks tracking URI, or\n2. Manage your custom scorer code in a source code repository (e.g., GitHub) and import it directly, or\n3. On a self-managed MLflow server (or local environment) that you trust to run the scorer's code, set the MLFLOW_SERVER_ENABLE_CUSTOM_SCORERS environment variable to true, or\n4. Use built-in scorers or make_judge() scorers instead.";

fn invalid(m: impl Into<String>) -> StoreError {
    StoreError::Invalid(m.into())
}

/// MLflow's experiment-id check for scorer routes.
pub fn parse_experiment_id(s: &str) -> Result<i64> {
    s.trim().parse::<i64>().map_err(|_| {
        invalid(format!(
            "Invalid experiment ID '{s}'. Experiment ID must be a valid integer."
        ))
    })
}

/// Validates a registration; returns whether the scorer is session-level.
pub fn validate_registration(name: &str, serialized: &str, allow_custom: bool) -> Result<bool> {
    let v: Value = serde_json::from_str(serialized)
        .map_err(|_| invalid("serialized_scorer must be valid JSON"))?;
    if spec::has_call_source(&v) && !allow_custom {
        return Err(invalid(CUSTOM_SCORER_REFUSED));
    }
    if let Some(kwargs) = v
        .get("third_party_scorer_data")
        .and_then(|d| d.get("kwargs"))
        .and_then(Value::as_object)
        && let Some(k) = kwargs.keys().find(|k| {
            matches!(
                k.as_str(),
                "api_base" | "base_url" | "api_url" | "endpoint" | "openai_api_base"
            )
        })
    {
        return Err(invalid(format!(
            "third_party_scorer_data.kwargs must not set the LLM destination ('{k}')"
        )));
    }
    if name.trim().is_empty() {
        return Err(invalid(
            "Scorer name cannot be empty or contain only whitespace.",
        ));
    }
    if let Some(m) = spec::extract_model(&v) {
        match m {
            Value::String(s) if !s.trim().is_empty() => {}
            _ => {
                return Err(invalid(
                    "Scorer model cannot be empty or contain only whitespace.",
                ));
            }
        }
    }
    let parsed = spec::from_value(&v).map_err(|e| invalid(e.to_string()))?;
    if let Kind::Pii { types: Some(t) } = &parsed.kind {
        let unknown = super::pii::unknown_types(t);
        if !unknown.is_empty() {
            return Err(invalid(format!(
                "Unknown PII types {unknown:?}; known types are {:?}",
                super::pii::ALL_TYPES
            )));
        }
    }
    Ok(parsed.session_level)
}

/// Registers a new version (see [`validate_registration`]).
pub fn register(
    conn: &Connection,
    experiment_id: i64,
    name: &str,
    serialized: &str,
    allow_custom: bool,
) -> Result<ScorerVersion> {
    let session = validate_registration(name, serialized, allow_custom)?;
    scorers::register(conn, experiment_id, name, serialized, session)
}

/// Why a scorer cannot run automatically in tracebox, if it cannot
/// (checked when it is started, like MLflow's gateway-model check).
pub fn cannot_start(name: &str, serialized: &str) -> Option<String> {
    let s = match spec::parse(serialized) {
        Ok(s) => s,
        Err(e) => return Some(e.to_string()),
    };
    if let Kind::Unsupported { reason } = &s.kind {
        return Some(format!(
            "Scorer '{name}' cannot run automatically in tracebox: {reason}."
        ));
    }
    if !s.needs_model() {
        return None;
    }
    match s.model.as_deref() {
        None => None,
        Some(m) if m.starts_with("gateway:/") || m.starts_with("openai:/") => None,
        Some(_) => Some(format!(
            "Scorer '{name}' does not use a gateway model. Automatic evaluation is only supported \
             for scorers that use gateway models (tracebox also accepts openai:/MODEL)."
        )),
    }
}

/// MLflow's online-config upsert (start, update, stop).
pub fn upsert_online_config(
    conn: &Connection,
    experiment_id: i64,
    name: &str,
    sample_rate: f64,
    filter_string: Option<&str>,
) -> Result<OnlineConfig> {
    if !(0.0..=1.0).contains(&sample_rate) {
        return Err(invalid(format!(
            "sample_rate must be between 0.0 and 1.0, got {}",
            pyfmt::float_repr(sample_rate)
        )));
    }
    let filter = filter_string.filter(|f| !f.trim().is_empty());
    if let Some(f) = filter {
        crate::query::check_filter(f).map_err(|e| invalid(e.to_string()))?;
    }
    let latest = scorers::get(conn, experiment_id, name, None)?;
    if sample_rate > 0.0
        && let Some(why) = cannot_start(name, &latest.serialized_scorer)
    {
        return Err(invalid(why));
    }
    scorers::upsert_config(conn, &latest.scorer_id, sample_rate, filter)
}
