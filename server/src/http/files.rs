//! The owner's file browser: roots, list, read, write (Mitzo's paths).
//! Confinement is the kernel's (see `crate::files`).

use std::os::fd::AsRawFd;
use std::path::Path;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::{scope, Authed};
use crate::error::{Error, Result};
use crate::files::{self, Root, WriteBody, WriteError};

/// The write route's body limit: 5 MiB of content plus 5 MiB expected,
/// both possibly base64 (4/3 each: 13.3 MiB), with room for JSON. The
/// decoded sizes are then checked against 5 MiB each.
pub const WRITE_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/files/roots", get(roots))
        .route("/api/files/list", get(list))
        .route("/api/files/read", get(read))
        .route(
            "/api/files/write",
            put(write).layer(DefaultBodyLimit::max(WRITE_BODY_LIMIT)),
        )
}

/// The current roots: the repo, its session worktrees, `.mitzo.json` roots.
/// Blocking: call from the blocking pool.
pub fn current_roots(state: &AppState) -> Vec<Root> {
    let Some(repo) = state.config.repo_path.as_deref() else {
        return Vec::new();
    };
    let config = state.repo_configs.get(repo);
    let extra: Vec<(String, String)> = config
        .roots
        .iter()
        .map(|r| (r.label.clone(), r.path.clone()))
        .collect();
    files::roots_of(repo, &extra)
}

pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("file task failed: {e}")))?
}

async fn roots(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
) -> Result<Json<Vec<Root>>> {
    blocking(move || Ok(current_roots(&state))).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    hidden: Option<String>,
}

fn flag(v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("") | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(_) => Err(Error::BadRequest(
            "hidden: expected 1, 0, true or false".into(),
        )),
    }
}

async fn list(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>> {
    let hidden = flag(q.hidden.as_deref())?;
    blocking(move || {
        let roots = current_roots(&state);
        let dir = q.dir.unwrap_or_default();
        let (root, rel) = files::locate(&roots, q.root.as_deref(), &dir)?;
        let fd = root.open()?;
        let listing = files::list(fd.as_raw_fd(), &rel, hidden)?;
        Ok(Json(json!({
            "root": root.path,
            "currentDir": files::display_join(&root.path, &rel),
            "entries": listing.entries,
            "truncated": listing.truncated,
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    path: String,
    #[serde(default)]
    root: Option<String>,
}

async fn read(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    Query(q): Query<ReadQuery>,
) -> Result<Json<Value>> {
    blocking(move || {
        let roots = current_roots(&state);
        let (root, rel) = files::locate(&roots, q.root.as_deref(), &q.path)?;
        let fd = root.open()?;
        let bytes = files::read(fd.as_raw_fd(), &rel)?;
        let shown = files::display_join(&root.path, &rel);
        let ext = Path::new(&rel)
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Json(match String::from_utf8(bytes) {
            Ok(text) => json!({ "path": shown, "content": text, "ext": ext }),
            Err(e) => {
                use base64::Engine;
                let content = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
                json!({ "path": shown, "encoding": "base64", "content": content, "ext": ext })
            }
        }))
    })
    .await
}

async fn write(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge(format!("request body larger than {WRITE_BODY_LIMIT} bytes"))
        } else {
            Error::BadRequest(e.body_text())
        }
    })?;
    let body: WriteBody = super::json::parse(&bytes)?;
    let (content, expected) = body.decode()?;
    blocking(move || {
        let roots = current_roots(&state);
        let (root, rel) = files::locate(&roots, body.root.as_deref(), &body.path)?;
        let fd = root.open()?;
        let shown = files::display_join(&root.path, &rel);
        match files::write(fd.as_raw_fd(), &rel, &content, expected.as_deref()) {
            Ok(()) => {
                tracing::info!(root = %root.label, bytes = content.len(), "owner wrote a file");
                Ok(Json(json!({ "ok": true, "path": shown })).into_response())
            }
            Err(WriteError::Conflict { current_sha256 }) => Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "error": "the file changed since it was read (expectedContent differs)",
                    "currentHash": current_sha256,
                    "hashAlgorithm": "sha256",
                })),
            )
                .into_response()),
            Err(WriteError::Other(e)) => Err(e),
        }
    })
    .await
}
