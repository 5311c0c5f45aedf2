//! Repos: the configured list, opening a session's worktree in one, and
//! the owner's view of the repo config.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::files::{blocking, current_roots};
use super::json::JsonBody;
use crate::app::AppState;
use crate::auth::{scope, Authed};
use crate::error::{Error, Result};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/repos", get(repos))
        .route("/api/repos/open", post(open))
        .route("/api/config", get(config))
}

#[derive(Serialize)]
struct RepoEntry {
    name: String,
    path: PathBuf,
}

fn repo_list(state: &AppState) -> Vec<RepoEntry> {
    state
        .config
        .repos
        .iter()
        .map(|(name, path)| RepoEntry {
            name: name.clone(),
            path: path.clone(),
        })
        .collect()
}

/// Every repo a session may run in (`repo_path` included), and which one
/// a new session gets when it names none.
async fn repos(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
) -> Json<Vec<crate::protocol::RepoInfo>> {
    Json(state.sessions.repos())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenBody {
    pub repo_name: String,
    pub session_id: String,
}

async fn open(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Json<Value>> {
    crate::worktree::validate_session_id(&body.session_id)?;
    if body.repo_name.len() > 128 {
        return Err(Error::BadRequest("repoName: longer than 128 bytes".into()));
    }
    let repo = state
        .config
        .repos
        .get(&body.repo_name)
        .cloned()
        .ok_or_else(|| {
            Error::NotFound(format!("no repo named {:?} in the config", body.repo_name))
        })?;
    let landlock = state.config.sandbox.landlock;
    blocking(move || {
        let git = crate::git::Git::new(landlock.into())?;
        let id = body.session_id;
        // Created, or reused: the same directory (inode) before and after.
        let inode = |p: &std::path::Path| {
            std::fs::symlink_metadata(p)
                .ok()
                .filter(|m| m.is_dir())
                .map(|m| m.ino())
        };
        let before = inode(&crate::worktree::worktree_path(&repo, &id)).or_else(|| {
            std::fs::canonicalize(&repo)
                .ok()
                .and_then(|r| inode(&crate::worktree::worktree_path(&r, &id)))
        });
        let path = crate::worktree::prepare_session_dir(&git, &repo, &id, true)?;
        let created = before.is_none() || before != inode(&path);
        tracing::info!(repo = %body.repo_name, session = %id, created, "session worktree ready");
        Ok(Json(
            json!({ "path": path, "repoName": body.repo_name, "created": created }),
        ))
    })
    .await
}

async fn config(State(state): State<AppState>, _a: Authed<scope::Owner>) -> Result<Json<Value>> {
    blocking(move || {
        let roots = current_roots(&state);
        let quick_actions = match state.config.repo_path.as_deref() {
            Some(repo) => state.repo_configs.get(repo).quick_actions.clone(),
            None => Vec::new(),
        };
        Ok(Json(json!({
            "repoPath": state.config.repo_path,
            "quickActions": quick_actions,
            "fileViewerRoots": roots,
            "repos": repo_list(&state),
        })))
    })
    .await
}
