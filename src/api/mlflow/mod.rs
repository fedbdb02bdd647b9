//! MLflow's tracking REST API, as the `mlflow-tracing` SDK (and the full
//! `mlflow` client) call it: experiments, traces, assessments, tags,
//! deletion, search, and the artifact fallback for `traces.json`.
//!
//! Handlers validate and convert wire shapes (in `dto`) into domain types,
//! call the store or the query engine, and render MLflow's JSON back.

pub mod dto;
pub mod scorers;
mod span_json;
pub mod trace_file;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, RawBody};
use crate::app::AppState;
use crate::domain::{SpanBatch, TraceId, metadata_keys};
use crate::query::{DEFAULT_MAX_RESULTS, SearchRequest};
use crate::store::experiments::ViewType;
use crate::store::{AssessmentUpdate, DeleteTraces, StoreError, TraceDetail, TraceUpsert};

/// The MLflow version tracebox answers `/version` with. The SDK only uploads
/// spans over OTLP to servers that report 3.4 or newer.
pub const MLFLOW_COMPAT_VERSION: &str = "3.17.2";

pub fn router() -> Router<AppState> {
    let mut r = Router::new()
        .route("/version", get(|| async { MLFLOW_COMPAT_VERSION }))
        // Traces (v3).
        .route("/api/3.0/mlflow/traces", post(start_trace))
        .route("/api/3.0/mlflow/traces/get", get(get_trace))
        .route("/api/3.0/mlflow/traces/batchGet", get(batch_get))
        .route(
            "/api/3.0/mlflow/traces/batchGetInfos",
            post(batch_get_infos),
        )
        .route("/api/3.0/mlflow/traces/search", post(search_traces))
        .route("/api/3.0/mlflow/traces/{trace_id}", get(get_trace_info))
        .route(
            "/api/3.0/mlflow/traces/{trace_id}/assessments",
            post(create_assessment),
        )
        .route(
            "/api/3.0/mlflow/traces/{trace_id}/assessments/{assessment_id}",
            get(get_assessment)
                .patch(update_assessment)
                .delete(delete_assessment),
        )
        // Artifact fallback for spans (`traces.json`).
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            put(put_artifact).get(get_artifact),
        )
        .merge(scorers::router());
    for v in ["2.0", "3.0"] {
        r = r
            .route(
                &format!("/api/{v}/mlflow/traces/{{trace_id}}/tags"),
                patch(set_trace_tag).delete(delete_trace_tag),
            )
            .route(
                &format!("/api/{v}/mlflow/traces/delete-traces"),
                post(delete_traces),
            );
    }
    for prefix in [
        "/api/2.0/mlflow/experiments",
        "/ajax-api/2.0/mlflow/experiments",
    ] {
        r = r
            .route(
                &format!("{prefix}/get-by-name"),
                get(get_experiment_by_name),
            )
            .route(&format!("{prefix}/get"), get(get_experiment))
            .route(&format!("{prefix}/create"), post(create_experiment))
            .route(
                &format!("{prefix}/search"),
                post(search_experiments).get(search_experiments_get),
            )
            .route(&format!("{prefix}/delete"), post(delete_experiment))
            .route(&format!("{prefix}/restore"), post(restore_experiment))
            .route(&format!("{prefix}/update"), post(update_experiment))
            .route(
                &format!("{prefix}/set-experiment-tag"),
                post(set_experiment_tag),
            );
    }
    r
}

fn ok() -> Json<Value> {
    Json(json!({}))
}

// ---------------------------------------------------------------- experiments

async fn get_experiment_by_name(
    State(app): State<AppState>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let name = params.required("experiment_name")?.to_string();
    let e = app.store.get_experiment_by_name(name).await?;
    Ok(Json(json!({"experiment": dto::experiment(&e)})))
}

async fn get_experiment(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let id = dto::parse_experiment_id(params.required("experiment_id")?)?;
    let e = app.store.get_experiment(id).await?;
    Ok(Json(json!({"experiment": dto::experiment(&e)})))
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct CreateExperiment {
    #[serde(default)]
    name: String,
    #[serde(default)]
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create_experiment(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<CreateExperiment>,
) -> ApiResult<Json<Value>> {
    let tags: BTreeMap<String, String> = req.tags.into_iter().map(|t| (t.key, t.value)).collect();
    let id = app
        .store
        .create_experiment(
            req.name,
            req.artifact_location.filter(|a| !a.is_empty()),
            tags,
        )
        .await?;
    Ok(Json(json!({"experiment_id": id.to_string()})))
}

#[derive(Deserialize, Default)]
struct SearchExperiments {
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    view_type: Option<String>,
}

async fn search_experiments_get(
    State(app): State<AppState>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let req = SearchExperiments {
        max_results: params.get("max_results").and_then(|m| m.parse().ok()),
        page_token: params.get("page_token").map(str::to_string),
        filter: params.get("filter").map(str::to_string),
        view_type: params.get("view_type").map(str::to_string),
    };
    run_search_experiments(app, req).await
}

async fn search_experiments(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<SearchExperiments>,
) -> ApiResult<Json<Value>> {
    run_search_experiments(app, req).await
}

/// Experiments are few, so search filters in memory. Supported filters:
/// `name = / != / LIKE / ILIKE '...'` joined by AND (what the UI and SDKs send).
async fn run_search_experiments(app: AppState, req: SearchExperiments) -> ApiResult<Json<Value>> {
    let view = match req.view_type.as_deref() {
        None | Some("ACTIVE_ONLY") | Some("1") => ViewType::ActiveOnly,
        Some("DELETED_ONLY") | Some("2") => ViewType::DeletedOnly,
        Some("ALL") | Some("3") => ViewType::All,
        Some(other) => return Err(ApiError::invalid(format!("Invalid view_type '{other}'"))),
    };
    let max = req.max_results.unwrap_or(1000).clamp(1, 50_000) as usize;
    let offset: usize = match req.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::invalid(format!("Invalid page token '{t}'")))?,
        None => 0,
    };
    let mut exps = app.store.list_experiments(view).await?;
    if let Some(f) = req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        let preds = parse_experiment_filter(f)?;
        exps.retain(|e| preds.iter().all(|p| p(e)));
    }
    let page: Vec<Value> = exps
        .iter()
        .skip(offset)
        .take(max)
        .map(dto::experiment)
        .collect();
    let mut out = json!({"experiments": page});
    if offset + max < exps.len() {
        out["next_page_token"] = Value::from((offset + max).to_string());
    }
    Ok(Json(out))
}

type ExperimentPredicate = Box<dyn Fn(&crate::domain::Experiment) -> bool + Send>;

fn parse_experiment_filter(f: &str) -> Result<Vec<ExperimentPredicate>, ApiError> {
    use crate::query::ast::{Expr, Literal, Op};
    let Some(expr) = crate::query::parse_filter(f).map_err(ApiError::from)? else {
        return Ok(Vec::new());
    };
    let clauses = match expr {
        Expr::And(parts) => parts,
        other => vec![other],
    };
    clauses
        .into_iter()
        .map(|c| {
            let Expr::Cmp(c) = c else {
                return Err(ApiError::invalid("experiment filters support AND only"));
            };
            let Literal::Str(v) = &c.value else {
                return Err(ApiError::invalid(format!(
                    "Unsupported experiment filter clause at character {}",
                    c.pos
                )));
            };
            let attr = c
                .ident
                .strip_prefix("attributes.")
                .or_else(|| c.ident.strip_prefix("attribute."))
                .unwrap_or(&c.ident);
            if attr != "name" {
                return Err(ApiError::invalid(format!(
                    "Invalid attribute key '{attr}' for experiment search"
                )));
            }
            let v = v.clone();
            let p: ExperimentPredicate = match c.op {
                Op::Eq => Box::new(move |e| e.name == v),
                Op::Ne => Box::new(move |e| e.name != v),
                Op::Like => Box::new(move |e| crate::query::like_match(&e.name, &v, false)),
                Op::ILike => Box::new(move |e| crate::query::like_match(&e.name, &v, true)),
                _ => {
                    return Err(ApiError::invalid(
                        "Unsupported comparator for experiment name",
                    ));
                }
            };
            Ok(p)
        })
        .collect()
}

#[derive(Deserialize)]
struct ExperimentIdBody {
    experiment_id: String,
    #[serde(default)]
    new_name: Option<String>,
}

async fn delete_experiment(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<ExperimentIdBody>,
) -> ApiResult<Json<Value>> {
    let id = dto::parse_experiment_id(&req.experiment_id)?;
    if id == 0 {
        return Err(ApiError::invalid(
            "The default experiment cannot be deleted.",
        ));
    }
    app.store.set_experiment_lifecycle(id, "deleted").await?;
    Ok(ok())
}

async fn restore_experiment(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<ExperimentIdBody>,
) -> ApiResult<Json<Value>> {
    let id = dto::parse_experiment_id(&req.experiment_id)?;
    app.store.set_experiment_lifecycle(id, "active").await?;
    Ok(ok())
}

async fn update_experiment(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<ExperimentIdBody>,
) -> ApiResult<Json<Value>> {
    let id = dto::parse_experiment_id(&req.experiment_id)?;
    let name = req
        .new_name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'new_name'."))?;
    app.store.rename_experiment(id, name).await?;
    Ok(ok())
}

#[derive(Deserialize)]
struct SetExperimentTag {
    experiment_id: String,
    key: String,
    #[serde(default)]
    value: String,
}

async fn set_experiment_tag(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<SetExperimentTag>,
) -> ApiResult<Json<Value>> {
    let id = dto::parse_experiment_id(&req.experiment_id)?;
    app.store.set_experiment_tag(id, req.key, req.value).await?;
    Ok(ok())
}

// ---------------------------------------------------------------- traces

#[derive(Deserialize)]
struct StartTraceReq {
    trace: Option<StartTraceInner>,
}

#[derive(Deserialize)]
struct StartTraceInner {
    trace_info: dto::TraceInfoIn,
}

async fn start_trace(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<StartTraceReq>,
) -> ApiResult<Json<Value>> {
    let inner = req
        .trace
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'trace'."))?;
    let (info, assessments) = inner.trace_info.into_domain()?;
    let trace_id = info.trace_id.clone();
    let assessments = assessments
        .into_iter()
        .map(|a| a.into_new(&trace_id))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = &app.config.limits;
    crate::api::limits::check_trace_info(&info, limits)?;
    for a in &assessments {
        crate::api::limits::check_assessment(a, limits)?;
    }
    let stored = app
        .store
        .upsert_trace_info(TraceUpsert::new(info, app.store.codec()), assessments)
        .await?;
    Ok(Json(
        json!({"trace": {"trace_info": dto::trace_info(&stored)}}),
    ))
}

async fn get_trace_info(
    State(app): State<AppState>,
    Path(trace_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let info = app.store.get_trace_info(trace_id).await?;
    Ok(Json(
        json!({"trace": {"trace_info": dto::trace_info(&info)}}),
    ))
}

/// `{"trace_info", "spans"}`; spans are streamed (see `span_json`).
#[derive(serde::Serialize)]
struct TraceJson<'a> {
    trace_info: Value,
    spans: Vec<span_json::SpanJson<'a>>,
}

fn trace_json(d: &TraceDetail) -> TraceJson<'_> {
    TraceJson {
        trace_info: dto::trace_info(&d.info),
        spans: d
            .spans
            .iter()
            .map(|span| span_json::SpanJson {
                trace_id: &d.info.trace_id,
                span,
            })
            .collect(),
    }
}

#[derive(serde::Serialize)]
struct OneTrace<'a> {
    trace: TraceJson<'a>,
}

#[derive(serde::Serialize)]
struct ManyTraces<'a> {
    traces: Vec<TraceJson<'a>>,
}

/// Spans the client announced (`sizeStats.num_spans`) but that have not all
/// arrived yet: the async SDK can send trace info before its spans.
fn missing_spans(d: &TraceDetail) -> bool {
    d.info
        .metadata
        .get("mlflow.trace.sizeStats")
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v["num_spans"].as_u64())
        .is_some_and(|n| (d.spans.len() as u64) < n)
}

async fn get_trace(State(app): State<AppState>, params: Params) -> ApiResult<Response> {
    let trace_id = params.required("trace_id")?.to_string();
    let allow_partial = params
        .get("allow_partial")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // Like MLflow, give spans still in flight a moment before answering.
    let mut waited = Duration::ZERO;
    loop {
        let d = app.store.get_trace(trace_id.clone()).await?;
        if allow_partial || !missing_spans(&d) {
            return Ok(Json(OneTrace {
                trace: trace_json(&d),
            })
            .into_response());
        }
        if waited >= Duration::from_secs(3) {
            return Err(ApiError::not_found(format!(
                "Trace with ID {trace_id} is not fully exported yet, please try again later."
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
}

async fn batch_get(State(app): State<AppState>, params: Params) -> ApiResult<Response> {
    let ids = params.all("trace_ids");
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "Missing value for required parameter 'trace_ids'.",
        ));
    }
    let traces = app.store.get_traces(ids).await?;
    let out = ManyTraces {
        traces: traces
            .iter()
            .filter(|d| !missing_spans(d))
            .map(trace_json)
            .collect(),
    };
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
struct BatchGetInfos {
    #[serde(default)]
    trace_ids: Vec<String>,
}

async fn batch_get_infos(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<BatchGetInfos>,
) -> ApiResult<Json<Value>> {
    let infos = app
        .store
        .read(move |c| {
            let mut out = Vec::new();
            for t in &req.trace_ids {
                match crate::store::traces::get_trace_info(c, t) {
                    Ok(i) => out.push(i),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await?;
    let out: Vec<Value> = infos.iter().map(dto::trace_info).collect();
    Ok(Json(json!({"trace_infos": out})))
}

#[derive(Deserialize)]
struct SearchTracesReq {
    #[serde(default)]
    locations: Vec<dto::TraceLocationIn>,
    #[serde(default)]
    experiment_ids: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<String>,
    #[serde(default)]
    page_token: Option<String>,
    /// tracebox extension: full-text query (words, "phrases", prefix*);
    /// `q` is accepted as an alias.
    #[serde(default, alias = "q")]
    text: Option<String>,
}

async fn search_traces(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<SearchTracesReq>,
) -> ApiResult<Json<Value>> {
    let mut experiment_ids = Vec::new();
    for l in &req.locations {
        if let Some(e) = &l.mlflow_experiment {
            experiment_ids.push(dto::parse_experiment_id(&e.experiment_id)?);
        }
    }
    for e in &req.experiment_ids {
        experiment_ids.push(dto::parse_experiment_id(e)?);
    }
    let max_results = match req.max_results {
        None => DEFAULT_MAX_RESULTS,
        Some(m) if m < 1 => {
            return Err(ApiError::invalid(format!(
                "Invalid value {m} for parameter 'max_results' supplied. It must be a positive integer."
            )));
        }
        Some(m) => m as usize,
    };
    let page = app
        .query
        .search(SearchRequest {
            experiment_ids,
            filter: req.filter,
            order_by: req.order_by,
            max_results,
            page_token: req.page_token,
            text: req.text,
        })
        .await?;
    let traces: Vec<Value> = page.traces.iter().map(dto::trace_info).collect();
    let mut out = json!({"traces": traces});
    if let Some(t) = page.next_page_token {
        out["next_page_token"] = Value::from(t);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct TagReq {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// Tags that describe where tracebox keeps data; clients may not change them.
const IMMUTABLE_TAGS: &[&str] = &["mlflow.trace.spansLocation", "mlflow.trace.archiveLocation"];

fn tag_key(req: &TagReq) -> ApiResult<String> {
    let key = req
        .key
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'key'."))?;
    if key.len() > 250 {
        return Err(ApiError::invalid(format!(
            "Tag key '{}...' exceeds the maximum length of 250 characters",
            &key[..32]
        )));
    }
    if IMMUTABLE_TAGS.contains(&key.as_str()) {
        return Err(ApiError::invalid(format!(
            "Tag '{key}' is immutable and cannot be set on a trace."
        )));
    }
    Ok(key)
}

async fn set_trace_tag(
    State(app): State<AppState>,
    Path(trace_id): Path<String>,
    JsonBody(req): JsonBody<TagReq>,
) -> ApiResult<Json<Value>> {
    let key = tag_key(&req)?;
    let mut value = req.value.unwrap_or_default();
    if value.chars().count() > 8000 {
        value = value.chars().take(8000).collect();
    }
    app.store.set_trace_tag(trace_id, key, value).await?;
    Ok(ok())
}

async fn delete_trace_tag(
    State(app): State<AppState>,
    Path(trace_id): Path<String>,
    JsonBody(req): JsonBody<TagReq>,
) -> ApiResult<Json<Value>> {
    let key = tag_key(&req)?;
    app.store.delete_trace_tag(trace_id, key).await?;
    Ok(ok())
}

#[derive(Deserialize)]
struct DeleteTracesReq {
    #[serde(default)]
    experiment_id: Option<String>,
    #[serde(default)]
    max_timestamp_millis: Option<i64>,
    #[serde(default)]
    max_traces: Option<i64>,
    #[serde(default)]
    request_ids: Option<Vec<String>>,
    #[serde(default)]
    trace_ids: Option<Vec<String>>,
}

async fn delete_traces(
    State(app): State<AppState>,
    JsonBody(req): JsonBody<DeleteTracesReq>,
) -> ApiResult<Json<Value>> {
    let exp = req.experiment_id.as_deref().ok_or_else(|| {
        ApiError::invalid("Missing value for required parameter 'experiment_id'.")
    })?;
    let exp = dto::parse_experiment_id(exp)?;
    let ids = req.request_ids.or(req.trace_ids);
    let what = match (req.max_timestamp_millis, ids) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Only one of `max_timestamp_millis` and `trace_ids` can be specified.",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "Either `max_timestamp_millis` or `trace_ids` must be specified.",
            ));
        }
        (None, Some(ids)) => {
            if req.max_traces.is_some() {
                return Err(ApiError::invalid(
                    "`max_traces` can't be specified if `trace_ids` is specified.",
                ));
            }
            DeleteTraces::Ids(ids)
        }
        (Some(ts), None) => {
            if let Some(m) = req.max_traces
                && m <= 0
            {
                return Err(ApiError::invalid(format!(
                    "`max_traces` must be a positive integer, received {m}."
                )));
            }
            DeleteTraces::OlderThan {
                max_timestamp_ms: ts,
                max_traces: req.max_traces,
            }
        }
    };
    let deleted = app.store.delete_traces(exp, what).await?;
    Ok(Json(json!({"traces_deleted": deleted.len()})))
}

// ---------------------------------------------------------------- assessments

#[derive(Deserialize)]
struct AssessmentReq {
    assessment: Option<dto::AssessmentIn>,
    #[serde(default)]
    update_mask: Option<String>,
}

async fn create_assessment(
    State(app): State<AppState>,
    Path(trace_id): Path<String>,
    JsonBody(req): JsonBody<AssessmentReq>,
) -> ApiResult<Json<Value>> {
    let a = req
        .assessment
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'assessment'."))?
        .into_new(&trace_id)?;
    crate::api::limits::check_assessment(&a, &app.config.limits)?;
    let stored = app.store.create_assessment(a).await?;
    Ok(Json(json!({"assessment": dto::assessment(&stored)})))
}

async fn get_assessment(
    State(app): State<AppState>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let a = app.store.get_assessment(trace_id, assessment_id).await?;
    Ok(Json(json!({"assessment": dto::assessment(&a)})))
}

/// Applies an update mask: MLflow sends camelCase field paths,
/// comma-separated (`assessmentName,feedback,rationale`).
fn assessment_update(a: dto::AssessmentIn, mask: &str) -> ApiResult<AssessmentUpdate> {
    let mut up = AssessmentUpdate::default();
    let mut a = a;
    for path in mask.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match path {
            "assessmentName" | "assessment_name" => {
                up.name = Some(
                    a.assessment_name
                        .take()
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| ApiError::invalid("assessment_name must not be empty"))?,
                );
            }
            "feedback" => {
                let f = a.feedback.take().unwrap_or_default();
                up.feedback = Some((
                    f.value.filter(|v| !v.is_null()),
                    f.error.map(|e| crate::domain::AssessmentError {
                        error_code: e.error_code.unwrap_or_default(),
                        error_message: e.error_message,
                        stack_trace: e.stack_trace,
                    }),
                ));
            }
            "expectation" => {
                up.expectation = Some(a.expectation.take().unwrap_or_default().into_value()?);
            }
            "rationale" => up.rationale = Some(a.rationale.take().filter(|r| !r.is_empty())),
            "metadata" => up.metadata = Some(std::mem::take(&mut a.metadata)),
            // Accepted and ignored, as MLflow's store does.
            "valid" => {}
            other => {
                return Err(ApiError::invalid(format!(
                    "Invalid update_mask path '{other}'"
                )));
            }
        }
    }
    if up.feedback.is_some() && up.expectation.is_some() {
        return Err(ApiError::invalid(
            "Cannot update both feedback and expectation in one request.",
        ));
    }
    Ok(up)
}

async fn update_assessment(
    State(app): State<AppState>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<AssessmentReq>,
) -> ApiResult<Json<Value>> {
    let a = req
        .assessment
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'assessment'."))?;
    let up = assessment_update(a, req.update_mask.as_deref().unwrap_or_default())?;
    let limits = &app.config.limits;
    for v in [
        up.feedback.as_ref().and_then(|f| f.0.as_ref()),
        up.expectation.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        crate::api::limits::check_value(|| "the assessment value".into(), v, limits)?;
    }
    let stored = app
        .store
        .update_assessment(trace_id.clone(), assessment_id, up)
        .await?;
    Ok(Json(json!({"assessment": dto::assessment(&stored)})))
}

async fn delete_assessment(
    State(app): State<AppState>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    app.store
        .delete_assessment(trace_id.clone(), assessment_id)
        .await?;
    Ok(ok())
}

// ---------------------------------------------------------------- artifacts

/// `<exp>/traces/<trace_id>/artifacts/traces.json`
fn artifact_trace_id(path: &str) -> Option<(i64, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [exp, "traces", trace_id, "artifacts", "traces.json"] => {
            Some((exp.parse().ok()?, (*trace_id).to_string()))
        }
        _ => None,
    }
}

/// The SDK uploads spans as `traces.json` when it believes the server did not
/// store them; tracebox stores them as spans like any other upload.
async fn put_artifact(
    State(app): State<AppState>,
    Path(path): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let Some((exp, trace_id)) = artifact_trace_id(&path) else {
        // Other artifacts (attachments) are accepted and discarded: tracebox
        // is a tracing store, not an artifact store.
        tracing::debug!(%path, "ignoring artifact upload");
        return Ok(StatusCode::OK.into_response());
    };
    let raw = dto::parse_traces_json(&body)?;
    let expected = TraceId::new(trace_id.clone()).otel();
    if let Some(bad) = raw
        .iter()
        .find(|s| expected.is_some_and(|e| e != s.trace_id))
    {
        return Err(ApiError::invalid(format!(
            "span {} belongs to another trace than {trace_id}",
            bad.span_id.to_hex()
        )));
    }
    let batch = SpanBatch::from_raw(raw);
    crate::api::limits::check_spans(&batch.spans, &app.config.limits)?;
    app.metrics.record_bytes(body.len());
    let outcome = app.store.ingest_spans(exp, batch).await?;
    app.metrics.record_ingest(&outcome);
    Ok(StatusCode::OK.into_response())
}

async fn get_artifact(
    State(app): State<AppState>,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    let (_, trace_id) = artifact_trace_id(&path)
        .ok_or_else(|| ApiError::not_found(format!("Artifact '{path}' not found")))?;
    let d = app.store.get_trace(trace_id).await?;
    let spans: Vec<Value> = d
        .spans
        .iter()
        .map(|s| dto::span_dict(&d.info.trace_id, s))
        .collect();
    let body = json!({"spans": spans}).to_string();
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `mlflow.trace.infoFinalized` marks traces whose info came from a client.
pub fn is_finalized(info: &crate::domain::TraceInfo) -> bool {
    info.metadata
        .get(metadata_keys::INFO_FINALIZED)
        .is_some_and(|v| v == "true")
}
