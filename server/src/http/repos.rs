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
    /// A name from `[repos]`; or `repoPath`, any configured repo's path.
    #[serde(default)]
    pub repo_name: Option<String>,
    #[serde(default)]
    pub repo_path: Option<PathBuf>,
    pub session_id: String,
}

/// Every repo the config names: `repo_path` (named by its directory) and `[repos]`.
fn known_repos(state: &AppState) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = state
        .config
        .repos
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    if let Some(p) = &state.config.repo_path {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        out.push((name, p.clone()));
    }
    out
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn resolve_repo(state: &AppState, body: &OpenBody) -> Result<(String, PathBuf)> {
    match (&body.repo_name, &body.repo_path) {
        (Some(name), None) => {
            if name.len() > 128 {
                return Err(Error::BadRequest("repoName: longer than 128 bytes".into()));
            }
            state
                .config
                .repos
                .get(name)
                .map(|p| (name.clone(), p.clone()))
                .ok_or_else(|| Error::NotFound(format!("no repo named {name:?} in the config")))
        }
        (None, Some(path)) => known_repos(state)
            .into_iter()
            .find(|(_, p)| same_dir(p, path))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{} is not a repo mitzod is configured with (repo_path or [repos])",
                    path.display()
                ))
            }),
        _ => Err(Error::BadRequest(
            "name the repo with repoName or repoPath (one of them)".into(),
        )),
    }
}

async fn open(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Json<Value>> {
    crate::worktree::validate_session_id(&body.session_id)?;
    let (repo_name, repo) = resolve_repo(&state, &body)?;
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
        tracing::info!(repo = %repo_name, session = %id, created, "session worktree ready");
        Ok(Json(json!({
            "path": path,
            "repoName": repo_name,
            "created": created,
            // Mitzo's shape: {repo: path}.
            "worktrees": { repo_name.clone(): path },
        })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// A path `/api/repos/open` answered.
    pub path: PathBuf,
}

/// Remove a worktree `/api/repos/open` made (changes in it are discarded;
/// its branch stays). Anything else is refused.
async fn close(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<CloseBody>,
) -> Result<Json<Value>> {
    let not_ours = || {
        Error::NotFound(format!(
            "{} is not a worktree mitzod made",
            body.path.display()
        ))
    };
    let id = body
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(not_ours)?;
    crate::worktree::validate_session_id(&id).map_err(|_| not_ours())?;
    let (repo_name, repo) = known_repos(&state)
        .into_iter()
        .find(|(_, r)| same_dir(&crate::worktree::worktree_path(r, &id), &body.path))
        .ok_or_else(not_ours)?;
    let landlock = state.config.sandbox.landlock;
    blocking(move || {
        let git = crate::git::Git::new(landlock.into())?;
        crate::worktree::remove_session_checkout(&git, &repo, &id, true)?;
        tracing::info!(repo = %repo_name, session = %id, "session worktree removed");
        Ok(Json(json!({ "ok": true, "removed": body.path })))
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
