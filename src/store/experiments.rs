//! Experiments: MLflow's containers of traces.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Result, Store, StoreError};
use crate::domain::{Experiment, now_ms};

const COLUMNS: &str =
    "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Experiment> {
    Ok(Experiment {
        experiment_id: r.get(0)?,
        name: r.get(1)?,
        artifact_location: r.get(2)?,
        lifecycle_stage: r.get(3)?,
        creation_time: r.get(4)?,
        last_update_time: r.get(5)?,
        tags: BTreeMap::new(),
    })
}

fn with_tags(conn: &Connection, mut e: Experiment) -> Result<Experiment> {
    let mut stmt =
        conn.prepare_cached("SELECT key, value FROM experiment_tags WHERE experiment_id = ?1")?;
    e.tags = stmt
        .query_map([e.experiment_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(e)
}

pub fn get(conn: &Connection, id: i64) -> Result<Experiment> {
    let e = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM experiments WHERE experiment_id = ?1"),
            [id],
            from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("No Experiment with id={id} exists")))?;
    with_tags(conn, e)
}

pub fn get_by_name(conn: &Connection, name: &str) -> Result<Experiment> {
    let e = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM experiments WHERE name = ?1"),
            [name],
            from_row,
        )
        .optional()?
        .ok_or_else(|| {
            StoreError::NotFound(format!("Could not find experiment with name '{name}'"))
        })?;
    with_tags(conn, e)
}

pub fn create(
    conn: &Connection,
    name: &str,
    artifact_location: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Result<i64> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid(
            "Invalid experiment name: ''. Experiment name must be a non-empty string.".into(),
        ));
    }
    let exists: Option<i64> = conn
        .query_row(
            "SELECT experiment_id FROM experiments WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(StoreError::AlreadyExists(format!(
            "Experiment(name={name}) already exists. Error: experiment names must be unique"
        )));
    }
    let id: i64 = conn.query_row(
        "SELECT coalesce(max(experiment_id), 0) + 1 FROM experiments",
        [],
        |r| r.get(0),
    )?;
    let now = now_ms();
    let location = artifact_location
        .map(str::to_string)
        .unwrap_or_else(|| format!("mlflow-artifacts:/{id}"));
    conn.execute(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,
             creation_time, last_update_time) VALUES (?1, ?2, ?3, 'active', ?4, ?4)",
        params![id, name, location, now],
    )?;
    for (k, v) in tags {
        set_tag(conn, id, k, v)?;
    }
    Ok(id)
}

pub fn set_tag(conn: &Connection, id: i64, key: &str, value: &str) -> Result<()> {
    get(conn, id)?;
    conn.execute(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
        params![id, key, value],
    )?;
    Ok(())
}

/// Marks an experiment deleted (MLflow keeps the row and its traces).
pub fn set_lifecycle(conn: &Connection, id: i64, stage: &str) -> Result<()> {
    let n = conn.execute(
        "UPDATE experiments SET lifecycle_stage = ?2, last_update_time = ?3
         WHERE experiment_id = ?1",
        params![id, stage, now_ms()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "No Experiment with id={id} exists"
        )));
    }
    Ok(())
}

pub fn rename(conn: &Connection, id: i64, new_name: &str) -> Result<()> {
    get(conn, id)?;
    if get_by_name(conn, new_name).is_ok() {
        return Err(StoreError::AlreadyExists(format!(
            "Experiment(name={new_name}) already exists."
        )));
    }
    conn.execute(
        "UPDATE experiments SET name = ?2, last_update_time = ?3 WHERE experiment_id = ?1",
        params![id, new_name, now_ms()],
    )?;
    Ok(())
}

/// Which lifecycle stages a listing includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

/// All experiments of a view, newest first, with their tags. Experiments are
/// few (tens to thousands), so filtering happens in the API layer.
pub fn list(conn: &Connection, view: ViewType) -> Result<Vec<Experiment>> {
    let cond = match view {
        ViewType::ActiveOnly => "WHERE lifecycle_stage = 'active'",
        ViewType::DeletedOnly => "WHERE lifecycle_stage = 'deleted'",
        ViewType::All => "",
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM experiments {cond} ORDER BY creation_time DESC, experiment_id ASC"
    ))?;
    let exps = stmt
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    exps.into_iter().map(|e| with_tags(conn, e)).collect()
}

/// Experiments with their trace count and last activity, most recently
/// active first (the UI's landing choice).
pub fn activity(conn: &Connection) -> Result<Vec<(Experiment, i64, Option<i64>)>> {
    let exps = list(conn, ViewType::ActiveOnly)?;
    let mut out = Vec::with_capacity(exps.len());
    let mut last =
        conn.prepare_cached("SELECT max(request_time) FROM traces WHERE experiment_id = ?1")?;
    let mut count = conn.prepare_cached("SELECT count(*) FROM traces WHERE experiment_id = ?1")?;
    for e in exps {
        let l: Option<i64> = last.query_row([e.experiment_id], |r| r.get(0))?;
        let c: i64 = count.query_row([e.experiment_id], |r| r.get(0))?;
        out.push((e, c, l));
    }
    out.sort_by_key(|(e, _, l)| std::cmp::Reverse(l.unwrap_or(e.creation_time)));
    Ok(out)
}

impl Store {
    pub async fn get_experiment(&self, id: i64) -> Result<Experiment> {
        self.read(move |c| get(c, id)).await
    }
    pub async fn get_experiment_by_name(&self, name: String) -> Result<Experiment> {
        self.read(move |c| get_by_name(c, &name)).await
    }
    pub async fn create_experiment(
        &self,
        name: String,
        artifact_location: Option<String>,
        tags: BTreeMap<String, String>,
    ) -> Result<i64> {
        self.write(move |c| create(c, &name, artifact_location.as_deref(), &tags))
            .await
    }
    pub async fn list_experiments(&self, view: ViewType) -> Result<Vec<Experiment>> {
        self.read(move |c| list(c, view)).await
    }
    pub async fn set_experiment_tag(&self, id: i64, key: String, value: String) -> Result<()> {
        self.write(move |c| set_tag(c, id, &key, &value)).await
    }
    pub async fn set_experiment_lifecycle(&self, id: i64, stage: &'static str) -> Result<()> {
        self.write(move |c| set_lifecycle(c, id, stage)).await
    }
    pub async fn rename_experiment(&self, id: i64, name: String) -> Result<()> {
        self.write(move |c| rename(c, id, &name)).await
    }
    pub async fn experiment_activity(&self) -> Result<Vec<(Experiment, i64, Option<i64>)>> {
        self.read(activity).await
    }
}
