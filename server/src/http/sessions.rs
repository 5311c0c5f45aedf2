//! Session REST routes (Mitzo's paths and shapes), permission decisions,
//! and the audit log.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json::JsonBody;
use crate::app::AppState;
use crate::auth::{scope, Authed};
use crate::error::{Error, Result};
use crate::permissions::Mode;
use crate::sessions::{store, DecidedBy, Decision, NewSession, Session};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", post(create).get(list))
        .route("/api/sessions/active", get(active))
        .route("/api/sessions/{id}/meta", get(meta))
        .route("/api/sessions/{id}/events", get(events))
        .route("/api/sessions/{id}", axum::routing::delete(delete))
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
}

pub fn parse_mode(mode: Option<&str>) -> Result<Mode> {
    match mode {
        None => Ok(Mode::Ask),
        Some(m) => Mode::parse(m).ok_or_else(|| {
            Error::BadRequest(format!("mode must be ask, agent or auto, not {m:?}"))
        }),
    }
}

async fn create(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response> {
    let mode = parse_mode(body.mode.as_deref())?;
    let headless = body
        .initial_prompt
        .as_deref()
        .is_some_and(|p| !p.trim().is_empty());
    let session = state
        .sessions
        .create(NewSession {
            source: body.source,
            summary: body.summary,
            mode,
            model: body.model,
            isolation: body.isolation,
            headless,
        })
        .await?;
    if let Some(prompt) = body.initial_prompt.filter(|p| !p.trim().is_empty()) {
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

/// What the live sessions are, taken once per request.
struct LiveView {
    rows: std::collections::HashMap<String, store::SessionRow>,
    active: std::collections::HashSet<String>,
    attached: std::collections::HashSet<String>,
}

impl LiveView {
    fn now(state: &AppState) -> LiveView {
        let mut view = LiveView {
            rows: Default::default(),
            active: Default::default(),
            attached: Default::default(),
        };
        for s in state.sessions.live() {
            if s.is_active() {
                view.active.insert(s.id.clone());
            }
            if s.is_attached() {
                view.attached.insert(s.id.clone());
            }
            view.rows.insert(s.id.clone(), s.row());
        }
        view
    }

    /// The in-memory row is fresher than the database for a live session.
    fn summary(&self, row: &store::SessionRow) -> Value {
        let row = self.rows.get(&row.id).unwrap_or(row);
        json!({
            "id": row.id,
            "summary": row.summary,
            "lastModified": row.last_modified,
            "branch": row.branch,
            "isActive": self.active.contains(&row.id),
            "isAttached": self.attached.contains(&row.id),
            "numTurns": row.num_turns,
            "state": row.state,
        })
    }
}

async fn list(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>> {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 100 {
        return Err(Error::BadRequest("limit must be 1..=100".into()));
    }
    let offset = q.offset.unwrap_or(0);
    let (rows, more) = state
        .db
        .call(move |c| store::list(c, offset, limit))
        .await?;
    let view = LiveView::now(&state);
    let sessions: Vec<Value> = rows.iter().map(|r| view.summary(r)).collect();
    Ok(Json(json!({ "sessions": sessions, "hasMore": more })))
}

async fn active(State(state): State<AppState>, _auth: Authed<scope::Internal>) -> Json<Value> {
    let view = LiveView::now(&state);
    let sessions: Vec<Value> = view
        .rows
        .values()
        .filter(|r| view.active.contains(&r.id))
        .map(|r| view.summary(r))
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
    Ok(Json(meta_json(&session)))
}

fn meta_json(session: &Session) -> Value {
    let mut v = serde_json::to_value(session.row()).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("isActive".into(), Value::from(session.is_active()));
        m.insert("isAttached".into(), Value::from(session.is_attached()));
        m.insert("lastSeq".into(), Value::from(session.log.last_seq()));
        m.insert(
            "worktrees".into(),
            json!({"primary": {"path": m.get("cwd"), "branch": m.get("branch")}}),
        );
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

async fn events(
    State(state): State<AppState>,
    _auth: Authed<scope::Internal>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>> {
    let session = state.sessions.get(&id).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 5000);
    let events = state
        .sessions
        .events_after(&session.id, q.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(
        json!({ "events": events, "lastSeq": session.log.last_seq() }),
    ))
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
}

pub fn parse_decision(s: &str) -> Result<Decision> {
    Decision::parse(s).ok_or_else(|| {
        Error::BadRequest(format!("decision must be once, always or deny, not {s:?}"))
    })
}

/// The ntfy action endpoint: the capability in `X-Approval-Token` is the
/// only credential, good for one decision on one permission.
async fn respond_with_capability(
    State(state): State<AppState>,
    Path(perm_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<Value>> {
    let decision = parse_decision(&body.decision)?;
    if decision == Decision::Always {
        return Err(Error::BadRequest(
            "a notification may allow once or deny, not always".into(),
        ));
    }
    let session = state.sessions.find_pending(&perm_id)?;
    let presented = headers
        .get("x-approval-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = crate::secret::Secret::new(state.sessions.approval_capability(&perm_id));
    if presented.is_empty() || !expected.matches(presented.as_bytes()) {
        return Err(Error::Forbidden("bad approval capability".into()));
    }
    state
        .sessions
        .resolve(&session, &perm_id, decision, DecidedBy::Ntfy)
        .await?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OwnerDecisionBody {
    session_id: String,
    perm_id: String,
    decision: String,
}

async fn owner_decision(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    JsonBody(body): JsonBody<OwnerDecisionBody>,
) -> Result<Json<Value>> {
    let decision = parse_decision(&body.decision)?;
    decide_as_owner(&state, &body.session_id, &body.perm_id, decision).await?;
    Ok(Json(json!({ "ok": true })))
}

/// A decision bound to its session: a permission of another session is refused.
pub async fn decide_as_owner(
    state: &AppState,
    session_id: &str,
    perm_id: &str,
    decision: Decision,
) -> Result<()> {
    let holder = state.sessions.find_pending(perm_id)?;
    if holder.id != session_id {
        return Err(Error::Forbidden(
            "that permission belongs to another session".into(),
        ));
    }
    state
        .sessions
        .resolve(&holder, perm_id, decision, DecidedBy::Owner)
        .await
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
