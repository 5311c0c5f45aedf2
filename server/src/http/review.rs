//! The owner's review and merge of a session's work (see [`crate::review`]):
//! `GET /api/sessions/{id}/review`, `POST /api/sessions/{id}/merge`.
//! Owner only: a merge changes the owner's branch, and neither the
//! internal token nor a session's own token may do that.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::credential::Authed;
use super::files::blocking;
use crate::app::AppState;
use crate::auth::scope;
use crate::error::Result;
use crate::git::Git;
use crate::review::{Merged, Review, ReviewTarget};
use mitzo_protocol::DecidedBy;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/review", get(review))
        .route("/api/sessions/{id}/merge", post(merge))
}

/// The session's repo and whether it ran in a checkout of its own.
async fn target(state: &AppState, id: &str) -> Result<ReviewTarget> {
    let session = state.sessions.get(id).await?;
    Ok(ReviewTarget {
        repo: session.repo.clone(),
        session_id: session.id.clone(),
        isolated: session.cwd != session.repo,
    })
}

async fn review(
    State(state): State<AppState>,
    _a: Authed<scope::Owner>,
    Path(id): Path<String>,
) -> Result<Json<Review>> {
    let t = target(&state, &id).await?;
    let landlock = state.config.sandbox.landlock;
    blocking(move || {
        let git = Git::new(landlock)?;
        crate::review::review(&git, &t).map(Json)
    })
    .await
}

async fn merge(
    State(state): State<AppState>,
    _a: Authed<scope::Owner>,
    Path(id): Path<String>,
) -> Result<Json<Merged>> {
    let t = target(&state, &id).await?;
    let landlock = state.config.sandbox.landlock;
    let session_id = t.session_id.clone();
    let result = blocking(move || {
        let git = Git::new(landlock)?;
        crate::review::merge(&git, &t)
    })
    .await;
    // Every merge of an existing session, done or refused, is an audit row
    // (the owner decided it), written before the answer goes out.
    let (decision, summary) = crate::review::audit_entry(&session_id, &result);
    state
        .sessions
        .audit(
            &session_id,
            crate::review::MERGE_TOOL,
            &summary,
            decision,
            DecidedBy::Owner,
        )
        .await;
    let merged = result?;
    tracing::info!(session = %merged.session_id, target = %merged.target, commit = %merged.commit, "session merged");
    Ok(Json(merged))
}
