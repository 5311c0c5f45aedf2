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
        let git = crate::git::Git::new(landlock)?;
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

/// Bring a session's commits into the main repo's `session/<id>` branch,
/// through mitzod's confined git: what the owner reviews and merges.
async fn fetch(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Json<Value>> {
    crate::worktree::validate_session_id(&body.session_id)?;
    let (repo_name, repo) = resolve_repo(&state, &body)?;
    let landlock = state.config.sandbox.landlock;
    blocking(move || {
        let git = crate::git::Git::new(landlock)?;
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
        tracing::info!(repo = %repo_name, session = %id, "session branch fetched");
        Ok(Json(json!({ "branch": branch, "commit": commit })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloseBody {
    /// A path `/api/repos/open` answered (what Claude Code's WorktreeRemove
    /// hook knows); or the repo and session id.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub repo_name: Option<String>,
    #[serde(default)]
    pub repo_path: Option<PathBuf>,
    #[serde(default)]
    pub session_id: Option<String>,
    /// Discard uncommitted changes. Default: yes when closing by `path`
    /// (the hook's worktree is done with), no when closing by session id.
    #[serde(default)]
    pub force: Option<bool>,
}

/// Remove a checkout `/api/repos/open` made (its commits are fetched into
/// the main repo's `session/<id>` branch first); anything else is refused,
/// a dirty one without `force` is a 409.
async fn close(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<CloseBody>,
) -> Result<Json<Value>> {
    let (repo_name, repo, id, force) = match (&body.path, &body.session_id) {
        (Some(path), None) => {
            if body.repo_name.is_some() || body.repo_path.is_some() {
                return Err(Error::BadRequest(
                    "name the checkout by path, or by sessionId with repoName or repoPath".into(),
                ));
            }
            let not_ours =
                || Error::NotFound(format!("{} is not a checkout mitzod made", path.display()));
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(not_ours)?;
            crate::worktree::validate_session_id(&id).map_err(|_| not_ours())?;
            let (name, repo) = known_repos(&state)
                .into_iter()
                .find(|(_, r)| same_dir(&crate::worktree::worktree_path(r, &id), path))
                .ok_or_else(not_ours)?;
            (name, repo, id, body.force.unwrap_or(true))
        }
        (None, Some(id)) => {
            crate::worktree::validate_session_id(id)?;
            let open = OpenBody {
                repo_name: body.repo_name.clone(),
                repo_path: body.repo_path.clone(),
                session_id: id.clone(),
            };
            let (name, repo) = resolve_repo(&state, &open)?;
            (name, repo, id.clone(), body.force.unwrap_or(false))
        }
        _ => {
            return Err(Error::BadRequest(
                "name the checkout by path, or by sessionId with repoName or repoPath".into(),
            ))
        }
    };
    let landlock = state.config.sandbox.landlock;
    blocking(move || {
        let git = crate::git::Git::new(landlock)?;
        let removed = crate::worktree::remove_session_checkout(&git, &repo, &id, force)?;
        tracing::info!(repo = %repo_name, session = %id, removed, "session checkout closed");
        Ok(Json(json!({ "ok": true, "removed": removed })))
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
