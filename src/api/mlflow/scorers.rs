//! MLflow's scorer registry routes (`mlflow.genai.scorers` in the full
//! `mlflow` client): register, list, versions, get, delete, and the online
//! scoring config upsert/read that `start()`, `update()` and `stop()` use.
//!
//! JSON types follow MLflow 3.17.2 exactly, because the client parses them
//! with protobuf: `experiment_id` is a number in `Scorer` objects (list,
//! get, versions) but a string in the register response and in online
//! configs; empty lists are omitted (`{}`) on the proto routes, while
//! `online-configs` always has its `configs` key.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post, put};
use serde_json::{Map, Value, json};

use super::super::error::{ApiError, ApiResult};
use super::super::extract::{JsonBody, Params};
use crate::app::AppState;
use crate::domain::{OnlineConfig, ScorerVersion};
use crate::judge::registry;
use crate::store::scorers;

pub fn router() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["/api/3.0/mlflow/scorers", "/ajax-api/3.0/mlflow/scorers"] {
        r = r
            .route(&format!("{prefix}/register"), post(register))
            .route(&format!("{prefix}/list"), get(list))
            .route(&format!("{prefix}/versions"), get(versions))
            .route(&format!("{prefix}/get"), get(get_scorer))
            .route(&format!("{prefix}/delete"), delete(delete_scorer))
            .route(&format!("{prefix}/online-configs"), get(online_configs))
            .route(
                &format!("{prefix}/online-config"),
                put(upsert_online_config),
            );
    }
    r
}

fn missing(key: &str) -> ApiError {
    ApiError::invalid(format!(
        "Missing value for required parameter '{key}'. See the API docs for more information about request parameters."
    ))
}

/// A required string field of a JSON body (numbers are accepted as text,
/// as protobuf's JSON parser does); empty counts as missing.
fn body_str(body: &Map<String, Value>, key: &str) -> ApiResult<String> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(missing(key)),
    }
}

fn query_str<'a>(p: &'a Params, key: &str) -> ApiResult<&'a str> {
    p.get(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing(key))
}

fn experiment_id(s: &str) -> ApiResult<i64> {
    Ok(registry::parse_experiment_id(s)?)
}

fn version_param(v: Option<&Value>) -> ApiResult<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!(
                "Parameter 'version' must be an integer, got '{n}'."
            ))
        }),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            ApiError::invalid(format!(
                "Parameter 'version' must be an integer, got '{s}'."
            ))
        }),
        Some(other) => Err(ApiError::invalid(format!(
            "Parameter 'version' must be an integer, got '{other}'."
        ))),
    }
}

/// MLflow's `Scorer` message: experiment_id as a JSON number.
fn scorer_json(s: &ScorerVersion) -> Value {
    json!({
        "experiment_id": s.experiment_id,
        "scorer_name": s.name,
        "scorer_version": s.version,
        "serialized_scorer": s.serialized_scorer,
        "creation_time": s.creation_time,
        "scorer_id": s.scorer_id,
    })
}

/// `OnlineScoringConfig.to_dict()`: experiment_id as a string, filter only
/// when set.
fn config_json(c: &OnlineConfig) -> Value {
    let mut v = json!({
        "online_scoring_config_id": c.config_id,
        "scorer_id": c.scorer_id,
        "sample_rate": c.sample_rate,
        "experiment_id": c.experiment_id.to_string(),
    });
    if let Some(f) = &c.filter_string {
        v["filter_string"] = json!(f);
    }
    v
}

fn scorers_response(list: &[ScorerVersion]) -> Json<Value> {
    if list.is_empty() {
        return Json(json!({}));
    }
    Json(json!({"scorers": list.iter().map(scorer_json).collect::<Vec<_>>()}))
}

async fn register(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let exp = body_str(&body, "experiment_id")?;
    let name = body_str(&body, "name")?;
    let serialized = body_str(&body, "serialized_scorer")?;
    let allow = app.judges.allow_custom_scorers;
    registry::validate_registration(&name, &serialized, allow)?;
    let exp = experiment_id(&exp)?;
    let sv = app
        .store
        .write(move |c| registry::register(c, exp, &name, &serialized, allow))
        .await?;
    if let Ok(spec) = crate::judge::spec::parse(&sv.serialized_scorer)
        && spec.needs_model()
        && let Err(why) = app.judges.models.resolve(spec.model.as_deref())
    {
        tracing::warn!(scorer = %sv.name, %why, "registered a judge that cannot run yet");
    }
    Ok(Json(json!({
        "version": sv.version,
        "scorer_id": sv.scorer_id,
        "experiment_id": sv.experiment_id.to_string(),
        "name": sv.name,
        "serialized_scorer": sv.serialized_scorer,
        "creation_time": sv.creation_time,
    })))
}

async fn list(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let one = params.get("experiment_id").filter(|v| !v.is_empty());
    let many = params.all("experiment_ids");
    if one.is_some() && !many.is_empty() {
        return Err(ApiError::invalid(
            "Cannot specify both 'experiment_id' and 'experiment_ids'. Use 'experiment_ids' to scope the query to multiple experiments, or 'experiment_id' to scope it to a single experiment.",
        ));
    }
    let ids: Option<Vec<i64>> = match (one, many.is_empty()) {
        (Some(e), _) => Some(vec![experiment_id(e)?]),
        (None, false) => Some(
            many.iter()
                .map(|e| experiment_id(e))
                .collect::<ApiResult<Vec<_>>>()?,
        ),
        (None, true) => None,
    };
    let list = app
        .store
        .read(move |c| {
            if let Some(ids) = &ids {
                for id in ids {
                    scorers::require_active_experiment(c, *id)?;
                }
            }
            scorers::list_latest(c, ids.as_deref())
        })
        .await?;
    Ok(scorers_response(&list))
}

async fn versions(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let exp = experiment_id(query_str(&params, "experiment_id")?)?;
    let name = query_str(&params, "name")?.to_string();
    let list = app
        .store
        .read(move |c| scorers::versions(c, exp, &name))
        .await?;
    Ok(scorers_response(&list))
}

async fn get_scorer(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let exp = query_str(&params, "experiment_id")?.to_string();
    let name = query_str(&params, "name")?.to_string();
    let version = version_param(
        params
            .get("version")
            .map(|v| Value::from(v.to_string()))
            .as_ref(),
    )?;
    let exp = experiment_id(&exp)?;
    let sv = app
        .store
        .read(move |c| scorers::get(c, exp, &name, version))
        .await?;
    Ok(Json(json!({"scorer": scorer_json(&sv)})))
}

async fn delete_scorer(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let exp = body_str(&body, "experiment_id")?;
    let name = body_str(&body, "name")?;
    let version = version_param(body.get("version"))?;
    let exp = experiment_id(&exp)?;
    app.store
        .write(move |c| scorers::delete(c, exp, &name, version))
        .await?;
    Ok(Json(json!({})))
}

async fn online_configs(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let ids: Vec<String> = params
        .all("scorer_ids")
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() {
        return Err(missing("scorer_ids"));
    }
    let configs = app
        .store
        .read(move |c| scorers::configs_for(c, &ids))
        .await?;
    Ok(Json(
        json!({"configs": configs.iter().map(config_json).collect::<Vec<_>>()}),
    ))
}

async fn upsert_online_config(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let exp = body_str(&body, "experiment_id")?;
    let name = body_str(&body, "name")?;
    let sample_rate = match body.get("sample_rate") {
        None | Some(Value::Null) => return Err(missing("sample_rate")),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| {
            ApiError::invalid(format!(
                "Invalid value '{s}' for parameter 'sample_rate' supplied: it must be a number."
            ))
        })?,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid value {other} for parameter 'sample_rate' supplied: it must be a number."
            )));
        }
    };
    let filter = match body.get("filter_string") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            let kind = match other {
                Value::Bool(_) => "bool",
                Value::Number(n) if n.is_f64() => "float",
                Value::Number(_) => "int",
                Value::Array(_) => "list",
                _ => "dict",
            };
            return Err(ApiError::invalid(format!(
                "Invalid value {} for parameter 'filter_string' supplied: Value was of type '{kind}'. Expected type 'str' or None.",
                crate::judge::pyfmt::py_repr(other)
            )));
        }
    };
    let exp = experiment_id(&exp)?;
    let cfg = app
        .store
        .write(move |c| {
            registry::upsert_online_config(c, exp, &name, sample_rate, filter.as_deref())
        })
        .await?;
    Ok(Json(json!({"config": config_json(&cfg)})))
}
