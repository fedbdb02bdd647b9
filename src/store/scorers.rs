//! The scorer registry: scorers keyed by (experiment, name) with a stable
//! `scorer_id`, their numbered versions (the client's serialized payload,
//! verbatim) and their online-scoring configurations.
//!
//! Messages of `NotFound`/`Invalid` errors are MLflow's own words, because
//! the MLflow client shows them to users as they are.
//! Does not know: what a serialized scorer means (see `judge::spec`), HTTP.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Result, StoreError};
use crate::domain::{OnlineConfig, ScorerVersion, now_ms};

const VERSION_COLUMNS: &str =
    "s.scorer_id, s.experiment_id, s.name, v.version, v.serialized_scorer, v.creation_time";

fn version_from_row(r: &Row<'_>) -> rusqlite::Result<ScorerVersion> {
    Ok(ScorerVersion {
        scorer_id: r.get(0)?,
        experiment_id: r.get(1)?,
        name: r.get(2)?,
        version: r.get(3)?,
        serialized_scorer: r.get(4)?,
        creation_time: r.get(5)?,
    })
}

fn not_found(name: &str, experiment_id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "Scorer with name '{name}' not found for experiment {experiment_id}."
    ))
}

/// The experiment must exist and be active (MLflow's checks, in its words).
pub fn require_active_experiment(conn: &Connection, experiment_id: i64) -> Result<()> {
    let stage: Option<String> = conn
        .query_row(
            "SELECT lifecycle_stage FROM experiments WHERE experiment_id = ?1",
            [experiment_id],
            |r| r.get(0),
        )
        .optional()?;
    match stage.as_deref() {
        None => Err(StoreError::NotFound(format!(
            "No Experiment with id={experiment_id} exists"
        ))),
        Some("active") => Ok(()),
        Some(other) => Err(StoreError::Invalid(format!(
            "The experiment {experiment_id} must be in the 'active' state. Current state is {other}."
        ))),
    }
}

fn scorer_id_of(conn: &Connection, experiment_id: i64, name: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT scorer_id FROM scorers WHERE experiment_id = ?1 AND name = ?2")?
        .query_row(params![experiment_id, name], |r| r.get(0))
        .optional()?)
}

/// Registers a new version of `name` (max + 1, or 1); creates the scorer
/// row with a fresh id on first registration.
pub fn register(
    conn: &Connection,
    experiment_id: i64,
    name: &str,
    serialized_scorer: &str,
    session_level: bool,
) -> Result<ScorerVersion> {
    require_active_experiment(conn, experiment_id)?;
    let now = now_ms();
    let scorer_id = match scorer_id_of(conn, experiment_id, name)? {
        Some(id) => id,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            conn.execute(
                "INSERT INTO scorers (scorer_id, experiment_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, experiment_id, name, now],
            )?;
            id
        }
    };
    let version: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM scorer_versions WHERE scorer_id = ?1",
        [&scorer_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO scorer_versions (scorer_id, version, serialized_scorer, creation_time, session_level)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![scorer_id, version, serialized_scorer, now, session_level],
    )?;
    Ok(ScorerVersion {
        scorer_id,
        experiment_id,
        name: name.to_string(),
        version,
        serialized_scorer: serialized_scorer.to_string(),
        creation_time: now,
    })
}

/// The latest version of every scorer in the given experiments (all
/// experiments when `None`), ordered by experiment and name. Scorers whose
/// versions were all deleted one by one are left out.
pub fn list_latest(
    conn: &Connection,
    experiment_ids: Option<&[i64]>,
) -> Result<Vec<ScorerVersion>> {
    let ids_json = experiment_ids.map(|ids| serde_json::Value::from(ids.to_vec()).to_string());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM scorers s
         JOIN scorer_versions v ON v.scorer_id = s.scorer_id
          AND v.version = (SELECT max(version) FROM scorer_versions WHERE scorer_id = s.scorer_id)
         JOIN experiments e ON e.experiment_id = s.experiment_id AND e.lifecycle_stage = 'active'
         WHERE ?1 IS NULL OR s.experiment_id IN (SELECT value FROM json_each(?1))
         ORDER BY s.experiment_id, s.name"
    ))?;
    Ok(stmt
        .query_map([ids_json], version_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// Every version of one scorer, ascending.
pub fn versions(conn: &Connection, experiment_id: i64, name: &str) -> Result<Vec<ScorerVersion>> {
    require_active_experiment(conn, experiment_id)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM scorers s JOIN scorer_versions v ON v.scorer_id = s.scorer_id
         WHERE s.experiment_id = ?1 AND s.name = ?2 ORDER BY v.version"
    ))?;
    let out: Vec<ScorerVersion> = stmt
        .query_map(params![experiment_id, name], version_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    if out.is_empty() {
        return Err(not_found(name, experiment_id));
    }
    Ok(out)
}

/// One version (the latest when `version` is `None`).
pub fn get(
    conn: &Connection,
    experiment_id: i64,
    name: &str,
    version: Option<i64>,
) -> Result<ScorerVersion> {
    require_active_experiment(conn, experiment_id)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM scorers s JOIN scorer_versions v ON v.scorer_id = s.scorer_id
         WHERE s.experiment_id = ?1 AND s.name = ?2 AND (?3 IS NULL OR v.version = ?3)
         ORDER BY v.version DESC LIMIT 1"
    ))?;
    let found = stmt
        .query_row(params![experiment_id, name, version], version_from_row)
        .optional()?;
    match (found, version) {
        (Some(v), _) => Ok(v),
        (None, Some(n)) if scorer_id_of(conn, experiment_id, name)?.is_some() => {
            Err(StoreError::NotFound(format!(
                "Scorer with name '{name}' and version {n} not found for experiment {experiment_id}."
            )))
        }
        (None, _) => Err(not_found(name, experiment_id)),
    }
}

/// The latest version of a scorer by id, if it still has one.
pub fn latest_by_id(conn: &Connection, scorer_id: &str) -> Result<Option<ScorerVersion>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM scorers s JOIN scorer_versions v ON v.scorer_id = s.scorer_id
             WHERE s.scorer_id = ?1 ORDER BY v.version DESC LIMIT 1"
        ))?
        .query_row([scorer_id], version_from_row)
        .optional()?)
}

/// Deletes one version, or (with `None`) the scorer with all its versions,
/// online configs and evaluation tasks. Deleting one version keeps the
/// scorer row, its id and its online config, as MLflow does.
pub fn delete(
    conn: &Connection,
    experiment_id: i64,
    name: &str,
    version: Option<i64>,
) -> Result<()> {
    require_active_experiment(conn, experiment_id)?;
    let scorer_id =
        scorer_id_of(conn, experiment_id, name)?.ok_or_else(|| not_found(name, experiment_id))?;
    match version {
        None => {
            conn.execute("DELETE FROM scorers WHERE scorer_id = ?1", [&scorer_id])?;
        }
        Some(v) => {
            let n = conn.execute(
                "DELETE FROM scorer_versions WHERE scorer_id = ?1 AND version = ?2",
                params![scorer_id, v],
            )?;
            if n == 0 {
                let any: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM scorer_versions WHERE scorer_id = ?1)",
                    [&scorer_id],
                    |r| r.get(0),
                )?;
                return Err(if any {
                    StoreError::NotFound(format!(
                        "Scorer with name '{name}' and version {v} not found for experiment {experiment_id}."
                    ))
                } else {
                    not_found(name, experiment_id)
                });
            }
        }
    }
    Ok(())
}

fn config_from_row(r: &Row<'_>) -> rusqlite::Result<OnlineConfig> {
    Ok(OnlineConfig {
        config_id: r.get(0)?,
        scorer_id: r.get(1)?,
        experiment_id: r.get(2)?,
        sample_rate: r.get(3)?,
        filter_string: r.get(4)?,
    })
}

const CONFIG_COLUMNS: &str =
    "c.config_id, c.scorer_id, s.experiment_id, c.sample_rate, c.filter_string";

/// Replaces the scorer's online configuration (MLflow deletes every config
/// and inserts one, so an omitted filter clears the old one). Stopping
/// (`sample_rate` 0) cancels the scorer's pending online evaluations.
pub fn upsert_config(
    conn: &Connection,
    scorer_id: &str,
    sample_rate: f64,
    filter_string: Option<&str>,
) -> Result<OnlineConfig> {
    let now = now_ms();
    conn.execute(
        "DELETE FROM scorer_online_configs WHERE scorer_id = ?1",
        [scorer_id],
    )?;
    let config_id = uuid::Uuid::new_v4().simple().to_string();
    conn.execute(
        "INSERT INTO scorer_online_configs (config_id, scorer_id, sample_rate, filter_string, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![config_id, scorer_id, sample_rate, filter_string, now],
    )?;
    if sample_rate <= 0.0 {
        for table in ["judge_tasks", "judge_session_tasks"] {
            conn.execute(
                &format!(
                    "UPDATE {table} SET state = 'cancelled', finished_at = ?2
                     WHERE scorer_id = ?1 AND state = 'pending' AND origin = 'online'"
                ),
                params![scorer_id, now],
            )?;
        }
    }
    let experiment_id: i64 = conn.query_row(
        "SELECT experiment_id FROM scorers WHERE scorer_id = ?1",
        [scorer_id],
        |r| r.get(0),
    )?;
    Ok(OnlineConfig {
        config_id,
        scorer_id: scorer_id.to_string(),
        experiment_id,
        sample_rate,
        filter_string: filter_string.map(str::to_string),
    })
}

/// Online configs of the given scorers; unknown ids are ignored.
pub fn configs_for(conn: &Connection, scorer_ids: &[String]) -> Result<Vec<OnlineConfig>> {
    let ids = serde_json::Value::from(scorer_ids.to_vec()).to_string();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CONFIG_COLUMNS} FROM scorer_online_configs c JOIN scorers s ON s.scorer_id = c.scorer_id
         WHERE c.scorer_id IN (SELECT value FROM json_each(?1)) ORDER BY c.updated_at, c.config_id"
    ))?;
    Ok(stmt
        .query_map([ids], config_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// Every online config (for status pages), optionally of one experiment.
pub fn all_configs(conn: &Connection, experiment_id: Option<i64>) -> Result<Vec<OnlineConfig>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CONFIG_COLUMNS} FROM scorer_online_configs c JOIN scorers s ON s.scorer_id = c.scorer_id
         WHERE ?1 IS NULL OR s.experiment_id = ?1"
    ))?;
    Ok(stmt
        .query_map([experiment_id], config_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// A scorer that runs on new traces: its latest version's facts and its
/// config. Read by the ingestion hook, so it must stay cheap.
#[derive(Debug, Clone)]
pub struct ActiveScorer {
    pub scorer_id: String,
    pub experiment_id: i64,
    pub name: String,
    pub sample_rate: f64,
    pub filter_string: Option<String>,
    pub session_level: bool,
}

/// True when any scorer is started anywhere: the ingestion hook's early
/// exit, so ingestion pays nothing when no judge runs.
pub fn any_active(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM scorer_online_configs WHERE sample_rate > 0)",
        )?
        .query_row([], |r| r.get(0))?)
}

/// Started scorers of one experiment, by name (a deterministic order for
/// the sampler's ties).
pub fn active_in(conn: &Connection, experiment_id: i64) -> Result<Vec<ActiveScorer>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.scorer_id, s.experiment_id, s.name, c.sample_rate, c.filter_string, v.session_level
         FROM scorer_online_configs c
         JOIN scorers s ON s.scorer_id = c.scorer_id
         JOIN scorer_versions v ON v.scorer_id = s.scorer_id
          AND v.version = (SELECT max(version) FROM scorer_versions WHERE scorer_id = s.scorer_id)
         WHERE s.experiment_id = ?1 AND c.sample_rate > 0
         ORDER BY s.name",
    )?;
    Ok(stmt
        .query_map([experiment_id], |r| {
            Ok(ActiveScorer {
                scorer_id: r.get(0)?,
                experiment_id: r.get(1)?,
                name: r.get(2)?,
                sample_rate: r.get(3)?,
                filter_string: r.get(4)?,
                session_level: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}
