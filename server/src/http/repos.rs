//! Repos: the configured list, opening a session's checkout in one,
//! bringing its branch back and removing it, and the owner's view of the
//! repo config.

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
        .route("/api/repos/fetch", post(fetch))
        .route("/api/repos/close", post(close))
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

async fn repos(State(state): State<AppState>, _a: Authed<scope::Internal>) -> Json<Vec<RepoEntry>> {
    Json(repo_list(&state))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenBody {
    pub repo_name: String,
    pub session_id: String,
}

/// The configured repo a body names, after checking the session id.
fn named_repo(state: &AppState, repo_name: &str, session_id: &str) -> Result<PathBuf> {
    crate::worktree::validate_session_id(session_id)?;
    if repo_name.len() > 128 {
        return Err(Error::BadRequest("repoName: longer than 128 bytes".into()));
    }
    state
        .config
        .repos
        .get(repo_name)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("no repo named {repo_name:?} in the config")))
}

async fn open(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Json<Value>> {
    let repo = named_repo(&state, &body.repo_name, &body.session_id)?;
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
        tracing::info!(repo = %body.repo_name, session = %id, created, "session checkout ready");
        Ok(Json(
            json!({ "path": path, "repoName": body.repo_name, "created": created }),
        ))
    })
    .await
}

/// Bring a session's commits into the main repo's `session/<id>` branch,
/// through mitzod's confined git: what the owner reviews and merges.
async fn fetch(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Json<Value>> {
    let repo = named_repo(&state, &body.repo_name, &body.session_id)?;
    let landlock = state.config.sandbox.landlock;
    blocking(move || {
        let git = crate::git::Git::new(landlock.into())?;
        let id = body.session_id;
        crate::worktree::fetch_session_branch(&git, &repo, &id)?;
        let branch = crate::worktree::branch_name(&id);
        let repo = crate::worktree::check_repo(&git, &repo)?;
        let commit = git
            .run(
                &repo,
                &repo,
                &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
            )?
            .trim()
            .to_string();
        tracing::info!(repo = %body.repo_name, session = %id, "session branch fetched");
        Ok(Json(json!({ "branch": branch, "commit": commit })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloseBody {
    pub repo_name: String,
    pub session_id: String,
    #[serde(default)]
    pub force: bool,
}

/// Remove a session's checkout (its branch is kept, with its commits
/// fetched first); a dirty one only with `force` (409 otherwise).
async fn close(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<CloseBody>,
) -> Result<Json<Value>> {
    let repo = named_repo(&state, &body.repo_name, &body.session_id)?;
    let landlock = state.config.sandbox.landlock;
    blocking(move || {
        let git = crate::git::Git::new(landlock.into())?;
        let removed =
            crate::worktree::remove_session_checkout(&git, &repo, &body.session_id, body.force)?;
        tracing::info!(repo = %body.repo_name, session = %body.session_id, removed, "session checkout closed");
        Ok(Json(json!({ "removed": removed })))
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
