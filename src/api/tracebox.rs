//! tracebox's own JSON API (`/api/tracebox/v1/`): the session and user views
//! that MLflow's REST API has no routes for. Documented in `docs/api.md`.
//!
//! Lists are newest activity first, keyset-paginated with opaque tokens, and
//! filterable by time; they read the store's maintained aggregates, never
//! the traces themselves. Times are integer milliseconds since the epoch.
//! Errors use MLflow's `{"error_code", "message"}` shape like every route.
//!
//! Knows this API's JSON; borrows nothing from MLflow's wire shapes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::Params;
use crate::app::AppState;
use crate::domain::{Assessment, AssessmentKind, chat};
use crate::store::sessions::{
    AssessmentCounts, ListQuery, SessionSummary, Tokens, Turn, UserSummary, is_session_level,
};

const PREFIX: &str = "/api/tracebox/v1";
const DEFAULT_MAX_RESULTS: usize = 100;
const MAX_RESULTS_LIMIT: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(&format!("{PREFIX}/sessions"), get(list_sessions))
        .route(
            &format!("{PREFIX}/sessions/{{session_id}}"),
            get(get_session),
        )
        .route(&format!("{PREFIX}/users"), get(list_users))
        .route(&format!("{PREFIX}/users/{{user_id}}"), get(get_user))
        .route(
            &format!("{PREFIX}/users/{{user_id}}/sessions"),
            get(list_user_sessions),
        )
}

// ---------------------------------------------------------------- parameters

fn int_param(params: &Params, key: &str) -> ApiResult<Option<i64>> {
    match params.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            ApiError::invalid(format!(
                "Invalid value '{v}' for parameter '{key}': expected an integer"
            ))
        }),
    }
}

fn experiment_param(params: &Params) -> ApiResult<i64> {
    int_param(params, "experiment_id")?
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'experiment_id'."))
}

fn max_results(params: &Params) -> ApiResult<usize> {
    match int_param(params, "max_results")? {
        None => Ok(DEFAULT_MAX_RESULTS),
        Some(m) if m < 1 || m as usize > MAX_RESULTS_LIMIT => Err(ApiError::invalid(format!(
            "Invalid value {m} for parameter 'max_results': it must be between 1 and {MAX_RESULTS_LIMIT}."
        ))),
        Some(m) => Ok(m as usize),
    }
}

/// Page tokens: base64url of `{"k": kind, "t": time, "id": key}`. The kind
/// keeps a token from one list from being replayed against another.
fn encode_token(kind: &str, time: i64, id: Value) -> String {
    URL_SAFE_NO_PAD.encode(json!({"k": kind, "t": time, "id": id}).to_string())
}

fn decode_token(params: &Params, kind: &str) -> ApiResult<Option<(i64, Value)>> {
    let Some(tok) = params.get("page_token").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = || ApiError::invalid(format!("Invalid page_token '{tok}'"));
    let bytes = URL_SAFE_NO_PAD
        .decode(tok.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v["k"] != kind {
        return Err(bad());
    }
    let t = v["t"].as_i64().ok_or_else(bad)?;
    Ok(Some((t, v["id"].clone())))
}

fn list_query(params: &Params, kind: &str, user: Option<String>) -> ApiResult<ListQuery> {
    let start_ms = int_param(params, "start_ms")?;
    let end_ms = int_param(params, "end_ms")?;
    if let (Some(s), Some(e)) = (start_ms, end_ms)
        && s > e
    {
        return Err(ApiError::invalid(format!(
            "start_ms ({s}) must not be after end_ms ({e})"
        )));
    }
    let after = match decode_token(params, kind)? {
        None => None,
        Some((t, Value::String(id))) => Some((t, id)),
        Some(_) => {
            return Err(ApiError::invalid("Invalid page_token"));
        }
    };
    Ok(ListQuery {
        experiment_id: experiment_param(params)?,
        user_id: user.filter(|u| !u.is_empty()),
        start_ms,
        end_ms,
        after,
        limit: max_results(params)?,
    })
}

// ---------------------------------------------------------------- JSON

fn tokens_json(t: &Tokens) -> Value {
    json!({"input": t.input, "output": t.output, "total": t.total})
}

fn share(pos: i64, neg: i64) -> Value {
    if pos + neg == 0 {
        Value::Null
    } else {
        json!(pos as f64 / (pos + neg) as f64)
    }
}

fn counts_json(c: &AssessmentCounts) -> Map<String, Value> {
    let v = json!({
        "feedback": c.feedback,
        "positive": c.positive,
        "negative": c.negative,
        "positive_share": share(c.positive, c.negative),
        "human_feedback": c.human_feedback,
        "human_positive": c.human_positive,
        "human_negative": c.human_negative,
        "human_positive_share": share(c.human_positive, c.human_negative),
        "expectations": c.expectations,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn session_json(s: &SessionSummary) -> Value {
    let mut counts = counts_json(&s.assessments);
    counts.insert("session_level".into(), json!(s.session_assessments));
    json!({
        "session_id": s.session_id,
        "experiment_id": s.experiment_id.to_string(),
        "user": s.user_id,
        "first_trace_id": s.first_trace_id,
        "first_time_ms": s.first_time_ms,
        "last_time_ms": s.last_time_ms,
        "turns": s.turns,
        "error_count": s.error_count,
        "tokens": tokens_json(&s.tokens),
        "assessments": counts,
    })
}

fn user_json(u: &UserSummary) -> Value {
    json!({
        "user": u.user_id,
        "experiment_id": u.experiment_id.to_string(),
        "traces": u.traces,
        "sessions": u.sessions,
        "first_seen_ms": u.first_time_ms,
        "last_seen_ms": u.last_time_ms,
        "error_count": u.error_count,
        "tokens": tokens_json(&u.tokens),
        "assessments": counts_json(&u.assessments),
    })
}

fn assessment_json(a: &Assessment) -> Value {
    let mut v = json!({
        "assessment_id": a.assessment_id,
        "trace_id": a.trace_id,
        "name": a.name,
        "kind": a.kind.as_str(),
        "value": a.value,
        "source": {"type": a.source.source_type.as_str(), "id": a.source.source_id},
        "valid": a.valid,
        "create_time_ms": a.create_time_ms,
        "last_update_time_ms": a.last_update_time_ms,
    });
    if a.kind == AssessmentKind::Feedback {
        v["positive"] = json!(a.is_positive());
    }
    if let Some(e) = &a.error {
        v["error"] = json!({"code": e.error_code, "message": e.error_message});
    }
    for (k, val) in [
        ("rationale", &a.rationale),
        ("span_id", &a.span_id),
        ("overrides", &a.overrides),
    ] {
        if let Some(s) = val {
            v[k] = json!(s);
        }
    }
    if !a.metadata.is_empty() {
        v["metadata"] = json!(a.metadata);
    }
    v
}

/// What the user said in a turn (see [`chat::turn_user_text`]).
fn user_message(t: &Turn) -> Option<String> {
    chat::turn_user_text(t.root_inputs.as_ref(), t.llm_inputs.as_ref())
}

/// What the assistant replied (see [`chat::turn_assistant_text`]).
fn assistant_message(t: &Turn) -> Option<String> {
    chat::turn_assistant_text(t.root_outputs.as_ref(), t.llm_outputs.as_ref())
}

fn turn_json(t: &Turn, session_id: &str) -> Value {
    let i = &t.info;
    let assessments: Vec<Value> = i
        .assessments
        .iter()
        .filter(|a| !is_session_level(a, session_id))
        .map(assessment_json)
        .collect();
    json!({
        "turn": t.number,
        "trace_id": i.trace_id,
        "client_request_id": i.client_request_id,
        "name": i.name(),
        "user": i.user_id(),
        "state": i.state.as_str(),
        "request_time_ms": i.request_time_ms,
        "execution_time_ms": i.execution_time_ms,
        "user_message": user_message(t),
        "assistant_message": assistant_message(t),
        "request_preview": i.request_preview,
        "response_preview": i.response_preview,
        "tokens": (!i.tokens.is_empty()).then(|| json!({
            "input": i.tokens.input, "output": i.tokens.output, "total": i.tokens.total,
        })),
        "assessments": assessments,
    })
}

// ---------------------------------------------------------------- handlers

async fn sessions_page(app: AppState, q: ListQuery) -> ApiResult<Json<Value>> {
    let page = app.store.list_sessions(q).await?;
    let mut out = json!({"sessions": page.items.iter().map(session_json).collect::<Vec<_>>()});
    if let Some((t, id)) = page.next {
        out["next_page_token"] = json!(encode_token("sessions", t, json!(id)));
    }
    Ok(Json(out))
}

async fn list_sessions(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let user = params.get("user").map(str::to_string);
    let q = list_query(&params, "sessions", user)?;
    sessions_page(app, q).await
}

async fn list_user_sessions(
    State(app): State<AppState>,
    Path(user): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let q = list_query(&params, "sessions", Some(user.clone()))?;
    // An unknown user is a 404 rather than an empty list, like a session.
    app.store.get_user(q.experiment_id, user).await?;
    sessions_page(app, q).await
}

async fn get_session(
    State(app): State<AppState>,
    Path(session_id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let exp = experiment_param(&params)?;
    let limit = max_results(&params)?;
    let after = match decode_token(&params, "turns")? {
        None => None,
        Some((t, id)) => Some((
            t,
            id.as_i64()
                .ok_or_else(|| ApiError::invalid("Invalid page_token"))?,
        )),
    };
    let (summary, page, session_level) = app
        .store
        .get_session(exp, session_id.clone(), after, limit)
        .await?;
    let mut out = json!({
        "session": session_json(&summary),
        "turns": page.turns.iter().map(|t| turn_json(t, &session_id)).collect::<Vec<_>>(),
        "session_assessments": session_level.iter().map(assessment_json).collect::<Vec<_>>(),
    });
    if let Some((t, id)) = page.next {
        out["next_page_token"] = json!(encode_token("turns", t, json!(id)));
    }
    Ok(Json(out))
}

async fn list_users(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let q = list_query(&params, "users", None)?;
    let page = app.store.list_users(q).await?;
    let mut out = json!({"users": page.items.iter().map(user_json).collect::<Vec<_>>()});
    if let Some((t, id)) = page.next {
        out["next_page_token"] = json!(encode_token("users", t, json!(id)));
    }
    Ok(Json(out))
}

async fn get_user(
    State(app): State<AppState>,
    Path(user): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let exp = experiment_param(&params)?;
    let u = app.store.get_user(exp, user).await?;
    Ok(Json(json!({"user": user_json(&u)})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_kinds() {
        let tok = encode_token("sessions", 5, json!("s-1"));
        let p = Params(vec![("page_token".into(), tok.clone())]);
        assert_eq!(
            decode_token(&p, "sessions").unwrap(),
            Some((5, json!("s-1")))
        );
        assert!(decode_token(&p, "users").is_err());
        let p = Params(vec![("page_token".into(), "garbage!".into())]);
        assert!(decode_token(&p, "sessions").is_err());
    }
}
