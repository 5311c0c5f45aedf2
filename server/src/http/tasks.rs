//! The task board (owner or internal token), the agent task tools and
//! signals (session token, or internal token plus `X-Client-ID`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::credential::Authed;
use super::json::JsonBody;
use crate::app::AppState;
use crate::auth::{scope, Caller};
use crate::error::{Error, Result};
use crate::tasks::{self, Task, TaskEvent};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tasks", get(list).post(create))
        .route("/api/tasks/{id}", get(one).patch(patch).delete(delete))
        .route("/api/tasks/{id}/approve", post(approve))
        .route("/api/tasks/{id}/reject", post(reject))
        .route("/api/internal/task-tools/set", post(tool_set))
        .route("/api/internal/task-tools/complete", post(tool_complete))
        .route("/api/internal/task-tools/status", get(tool_status))
        .route("/api/internal/task-tools/block", post(tool_block))
        .route("/api/internal/task-tools/artifact", post(tool_artifact))
        .route("/api/signals/resolve", post(signal))
}

fn publish(state: &AppState, events: Vec<TaskEvent>) {
    for e in events {
        // No receiver (nobody watching) is fine.
        let _ = state.task_events.send(e);
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    #[serde(default, rename = "clientId")]
    client_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    Query(q): Query<tasks::ListQuery>,
) -> Result<Json<Value>> {
    let tasks = state.db.call(move |c| tasks::list(c, &q)).await?;
    Ok(Json(json!({ "tasks": tasks })))
}

async fn create(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<tasks::CreateTask>,
) -> Result<(StatusCode, Json<Task>)> {
    body.validate()?;
    let (task, events) = state.db.call(move |c| tasks::create(c, &body)).await?;
    publish(&state, events);
    Ok((StatusCode::CREATED, Json(task)))
}

async fn one(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    Path(id): Path<String>,
) -> Result<Json<Task>> {
    tasks::check_id(&id)?;
    let task = state.db.call(move |c| tasks::get(c, &id)).await?;
    task.map(Json)
        .ok_or_else(|| Error::NotFound("no such task".into()))
}

async fn patch(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<tasks::PatchTask>,
) -> Result<Json<Task>> {
    tasks::check_id(&id)?;
    body.validate()?;
    let (task, events) = state.db.call(move |c| tasks::patch(c, &id, &body)).await?;
    publish(&state, events);
    Ok(Json(task))
}

async fn delete(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    tasks::check_id(&id)?;
    let events = state.db.call(move |c| tasks::delete(c, &id)).await?;
    publish(&state, events);
    Ok(Json(json!({ "ok": true })))
}

async fn approve(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    Path(id): Path<String>,
) -> Result<Json<Task>> {
    tasks::check_id(&id)?;
    let (task, events) = state.db.call(move |c| tasks::decide(c, &id, None)).await?;
    publish(&state, events);
    Ok(Json(task))
}

async fn reject(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<tasks::RejectBody>,
) -> Result<Json<Task>> {
    tasks::check_id(&id)?;
    let (task, events) = state
        .db
        .call(move |c| tasks::decide(c, &id, Some(&body.feedback)))
        .await?;
    publish(&state, events);
    Ok(Json(task))
}

async fn tool_set(
    State(state): State<AppState>,
    a: Authed<scope::Agent>,
    JsonBody(body): JsonBody<tasks::SetBody>,
) -> Result<Json<Value>> {
    let session = tasks::session_of(a.caller(), body.client_id.as_deref())?;
    body.validate()?;
    let (result, events) = state
        .db
        .call(move |c| tasks::tool_set(c, &session, &body))
        .await?;
    publish(&state, events);
    Ok(Json(json!({ "result": result })))
}

async fn tool_complete(
    State(state): State<AppState>,
    a: Authed<scope::Agent>,
    JsonBody(body): JsonBody<tasks::CompleteBody>,
) -> Result<Json<Value>> {
    let session = tasks::session_of(a.caller(), body.client_id.as_deref())?;
    let (result, events) = state
        .db
        .call(move |c| tasks::tool_complete(c, &session, &body))
        .await?;
    publish(&state, events);
    Ok(Json(json!({ "result": result })))
}

async fn tool_block(
    State(state): State<AppState>,
    a: Authed<scope::Agent>,
    JsonBody(body): JsonBody<tasks::BlockBody>,
) -> Result<Json<Value>> {
    let session = tasks::session_of(a.caller(), body.client_id.as_deref())?;
    let (result, events) = state
        .db
        .call(move |c| tasks::tool_block(c, &session, &body))
        .await?;
    publish(&state, events);
    Ok(Json(json!({ "result": result })))
}

async fn tool_artifact(
    State(state): State<AppState>,
    a: Authed<scope::Agent>,
    JsonBody(body): JsonBody<tasks::ArtifactBody>,
) -> Result<Json<Value>> {
    let session = tasks::session_of(a.caller(), body.client_id.as_deref())?;
    let (result, events) = state
        .db
        .call(move |c| tasks::tool_artifact(c, &session, &body))
        .await?;
    publish(&state, events);
    Ok(Json(json!({ "result": result })))
}

async fn tool_status(
    State(state): State<AppState>,
    a: Authed<scope::Agent>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Value>> {
    let session = tasks::session_of(a.caller(), q.client_id.as_deref())?;
    let (result, tasks) = state
        .db
        .call(move |c| tasks::tool_status(c, &session))
        .await?;
    Ok(Json(json!({ "result": result, "tasks": tasks })))
}

/// Signals come from hooks (CI, review bots) with the internal token or
/// the owner, who see every task; a session token only reaches its own.
async fn signal(
    State(state): State<AppState>,
    a: Authed<scope::Agent>,
    JsonBody(body): JsonBody<tasks::SignalBody>,
) -> Result<Json<Value>> {
    body.validate()?;
    let scope = match a.caller() {
        Caller::Session { session_id } => Some(session_id.clone()),
        _ => None,
    };
    // An agent may report its own CI; it may not approve its own work.
    if scope.is_some() && !matches!(body.kind, tasks::SignalType::GhCi) {
        return Err(Error::Forbidden(
            "a session token may only send gh_ci signals; reviews and approvals come from hooks or the owner".into(),
        ));
    }
    let (matched, events) = state
        .db
        .call(move |c| tasks::resolve_signal(c, &body, scope.as_deref()))
        .await?;
    publish(&state, events);
    Ok(Json(json!({ "ok": true, "matched": matched })))
}
