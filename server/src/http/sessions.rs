//! Session REST routes (Mitzo's paths and shapes, plus what the web app
//! needs: titles, repos, history pages), permission decisions, and the
//! audit log. `server/PROTOCOL.md` documents them.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::credential::Authed;
use super::json::JsonBody;
use crate::app::AppState;
use crate::auth::scope;
use crate::error::{Error, Result};
use crate::sessions::{store, NewSession, Session, SessionManager};
use mitzo_protocol::{Decision, EventPage, Mode, SessionList, SessionPatch};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", post(create).get(list))
        .route("/api/sessions/active", get(active))
        .route("/api/sessions/{id}/meta", get(meta))
        .route("/api/sessions/{id}/events", get(events))
        .route(
            "/api/sessions/{id}",
            axum::routing::delete(delete).patch(rename),
        )
        .route(
            "/api/permission/{perm_id}/respond",
            post(respond_with_capability),
        )
        .route("/api/chat/permission", post(owner_decision))
        .route("/api/audit", get(audit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    source: String,
    initial_prompt: Option<String>,
    summary: Option<String>,
    mode: Option<String>,
    model: Option<String>,
    isolation: Option<bool>,
    repo: Option<String>,
}

pub fn parse_mode(mode: Option<&str>) -> Result<Mode> {
    match mode {
        None => Ok(Mode::Ask),
        Some(m) => Mode::parse(m)
            .ok_or_else(|| Error::Invalid(format!("mode must be ask, agent or auto, not {m:?}"))),
    }
}

async fn create(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response> {
    let mode = parse_mode(body.mode.as_deref())?;
    let prompt = body.initial_prompt.filter(|p| !p.trim().is_empty());
    let headless = prompt.is_some();
    let session = state
        .sessions
        .create(NewSession {
            source: body.source,
            summary: body.summary,
            mode,
            model: body.model,
            isolation: body.isolation,
            headless,
            repo: body.repo,
            first_prompt: prompt.clone(),
        })
        .await?;
    if let Some(prompt) = prompt {
        state.sessions.send(&session, &prompt, None).await?;
    }
    let row = session.row();
    let status = if headless {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "sessionId": row.id,
            "worktrees": {"primary": {"path": row.cwd, "branch": row.branch}},
            "isolation": row.isolation,
            "headless": headless,
            "title": row.title,
            "repo": row.repo_name,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    offset: Option<u32>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SessionList>> {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 100 {
        return Err(Error::Invalid("limit must be 1..=100".into()));
    }
    let offset = q.offset.unwrap_or(0);
    let (rows, more) = state
        .db
        .call(move |c| store::list(c, offset, limit))
        .await?;
    // The live view, taken once: fresher than the database for live sessions.
    let live: std::collections::HashMap<String, std::sync::Arc<Session>> = state
        .sessions
        .live()
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let sessions = rows
        .iter()
        .map(|r| SessionManager::summary_of(r, live.get(&r.id).map(|s| &**s)))
        .collect();
    Ok(Json(SessionList {
        sessions,
        has_more: more,
    }))
}

async fn active(State(state): State<AppState>, _auth: Authed<scope::Internal>) -> Json<Value> {
    let sessions: Vec<_> = state
        .sessions
        .live()
        .iter()
        .filter(|s| s.is_active())
        .map(|s| state.sessions.summary(s))
        .collect();
    // `loaded`: sessions held in memory (the rest live in the database).
    Json(json!({ "sessions": sessions, "loaded": state.sessions.loaded() }))
}

async fn meta(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let session = state.sessions.get(&id).await?;
    Ok(Json(meta_json(&state.sessions, &session)))
}

fn meta_json(sessions: &SessionManager, session: &Session) -> Value {
    let mut v = serde_json::to_value(session.row()).unwrap_or(Value::Null);
    let summary = sessions.summary(session);
    if let Value::Object(m) = &mut v {
        m.insert("isActive".into(), Value::from(summary.is_active));
        m.insert("isAttached".into(), Value::from(summary.is_attached));
        m.insert(
            "pendingApprovals".into(),
            Value::from(summary.pending_approvals),
        );
        m.insert("lastActivity".into(), Value::from(summary.last_activity));
        // `repo` stays the path (Mitzo's meaning); the name is `repoName`.
        m.insert("repoName".into(), Value::from(summary.repo));
        m.insert("lastSeq".into(), Value::from(session.log.last_seq()));
        m.insert(
            "worktrees".into(),
            json!({"primary": {"path": m.get("cwd"), "branch": m.get("branch")}}),
        );
    }
    v
}

async fn rename(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SessionPatch>,
) -> Result<Json<Value>> {
    let session = state.sessions.get(&id).await?;
    state.sessions.rename(&session, &body.title).await?;
    Ok(Json(json!(state.sessions.summary(&session))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<u32>,
}

async fn events(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventPage>> {
    let session = state.sessions.get(&id).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 5000);
    let (events, has_more) = match (q.after, q.before) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid("give `after` or `before`, not both".into()))
        }
        (_, Some(before)) => {
            state
                .sessions
                .events_before(&session, before, limit)
                .await?
        }
        (after, None) => {
            state
                .sessions
                .events_after(&session.id, after.unwrap_or(0), limit)
                .await?
        }
    };
    Ok(Json(EventPage {
        events,
        last_seq: session.log.last_seq(),
        has_more,
    }))
}

async fn delete(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.sessions.delete(&id).await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    message: Option<String>,
}

pub fn parse_decision(s: &str) -> Result<Decision> {
    Decision::parse(s).ok_or_else(|| {
        Error::Invalid(format!(
            "decision must be allow, allow_session or deny (or once, always), not {s:?}"
        ))
    })
}

/// The ntfy one-tap action endpoint (only with `ntfy.one_tap`): the
/// capability in `X-Approval-Token` is the only credential.
async fn respond_with_capability(
    State(state): State<AppState>,
    Path(perm_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<Value>> {
    let decision = parse_decision(&body.decision)?;
    if body.message.is_some() {
        return Err(Error::Invalid("a notification carries no message".into()));
    }
    let presented = headers
        .get("x-approval-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    state
        .sessions
        .decide_with_capability(&perm_id, presented, decision)
        .await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OwnerDecisionBody {
    session_id: String,
    perm_id: String,
    decision: String,
    message: Option<String>,
}

async fn owner_decision(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    JsonBody(body): JsonBody<OwnerDecisionBody>,
) -> Result<Json<Value>> {
    let decision = parse_decision(&body.decision)?;
    state
        .sessions
        .decide_as_owner(
            &body.session_id,
            &body.perm_id,
            decision,
            body.message.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuditQuery {
    session_id: Option<String>,
    limit: Option<u32>,
}

async fn audit(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state
        .db
        .call(move |c| store::audit_list(c, q.session_id.as_deref(), limit))
        .await?;
    Ok(Json(json!({ "entries": rows })))
}
