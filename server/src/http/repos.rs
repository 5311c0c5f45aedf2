//! Repos: the configured list, opening a session's worktree in one, and
//! the owner's view of the repo config.

use std::path::PathBuf;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::credential::Authed;
use super::files::{blocking, current_roots};
use super::json::JsonBody;
use crate::app::AppState;
use crate::auth::scope;
use crate::error::{Error, Result};
use crate::worktree::SessionRepo;

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

impl OpenBody {
    /// The session checkout this body names.
    fn target(&self, state: &AppState) -> Result<SessionRepo> {
        SessionRepo::resolve(
            &state.config,
            self.repo_name.as_deref(),
            self.repo_path.as_deref(),
            &self.session_id,
        )
    }
}

/// Every repo a session may run in (`repo_path` included), and which one
/// a new session gets when it names none.
async fn repos(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
) -> Json<Vec<mitzo_protocol::RepoInfo>> {
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

async fn open(
    State(state): State<AppState>,
    _a: Authed<scope::Internal>,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Json<Value>> {
    let target = body.target(&state)?;
    blocking(move || {
        let (path, created) = target.open()?;
        let (repo_name, id) = (target.name, target.session_id);
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
    let target = body.target(&state)?;
    blocking(move || {
        let (branch, commit) = target.fetch()?;
        tracing::info!(repo = %target.name, session = %target.session_id, "session branch fetched");
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
    let both = || {
        Error::Invalid(
            "name the checkout by path, or by sessionId with repoName or repoPath".into(),
        )
    };
    let (target, force) = match (&body.path, &body.session_id) {
        (Some(path), None) => {
            if body.repo_name.is_some() || body.repo_path.is_some() {
                return Err(both());
            }
            let target = SessionRepo::of_checkout(&state.config, path)?;
            (target, body.force.unwrap_or(true))
        }
        (None, Some(id)) => {
            let target = SessionRepo::resolve(
                &state.config,
                body.repo_name.as_deref(),
                body.repo_path.as_deref(),
                id,
            )?;
            (target, body.force.unwrap_or(false))
        }
        _ => return Err(both()),
    };
    blocking(move || {
        let removed = target.close(force)?;
        tracing::info!(repo = %target.name, session = %target.session_id, removed, "session checkout closed");
        Ok(Json(json!({ "ok": true, "removed": removed })))
    })
    .await
}

async fn config(State(state): State<AppState>, _a: Authed<scope::Owner>) -> Result<Json<Value>> {
    blocking(move || {
        let roots = current_roots(&state);
        let repo_config = state
            .config
            .repo_path
            .as_deref()
            .map(|repo| state.repo_configs.get(repo));
        let quick_actions = repo_config
            .as_ref()
            .map(|c| c.quick_actions.clone())
            .unwrap_or_default();
        // What a new session gets when the page does not say: the repo's
        // `.mitzo.json`, else `session.isolation`.
        let isolation = repo_config
            .as_ref()
            .and_then(|c| c.isolation)
            .unwrap_or(state.config.session.isolation);
        Ok(Json(json!({
            "repoPath": state.config.repo_path,
            "quickActions": quick_actions,
            "isolation": isolation,
            "fileViewerRoots": roots,
            "repos": repo_list(&state),
        })))
    })
    .await
}
