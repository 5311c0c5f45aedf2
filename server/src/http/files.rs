//! The owner's file browser: roots, list, read, write (Mitzo's paths).
//! Confinement is the kernel's (see `crate::files`).

use std::os::fd::AsRawFd;
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::credential::Authed;
use crate::app::AppState;
use crate::auth::scope;
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
        .route("/api/files/raw", get(raw))
        .route(
            "/api/files/write",
            put(write).layer(DefaultBodyLimit::max(WRITE_BODY_LIMIT)),
        )
}

/// The current roots (see [`crate::repo_config::current_roots`]). Blocking: call from
/// the blocking pool.
pub fn current_roots(state: &AppState) -> Vec<Root> {
    crate::repo_config::current_roots(state.config.repo_path.as_deref(), &state.repo_configs)
}

pub async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("file task failed: {e}")))?
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
        Some(_) => Err(Error::Invalid(
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
    headers: HeaderMap,
    Query(q): Query<ReadQuery>,
) -> Result<Response> {
    if wants_octet_stream(&headers) {
        let mut response = raw_response(state, q).await?;
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        return Ok(response);
    }
    let mut response = blocking(move || {
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
    .await?
    .into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(response)
}

/// `Accept` names `application/octet-stream` (a `*/*` alone keeps JSON).
fn wants_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/octet-stream")
        })
}

/// The raw bytes of a file: same roots, resolution and limits as `read`.
async fn raw(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    Query(q): Query<ReadQuery>,
) -> Result<Response> {
    raw_response(state, q).await
}

/// Bytes per chunk of a raw body; a file this size or smaller is sent
/// from the one blocking task that opened it.
const RAW_CHUNK: usize = 1024 * 1024;

/// Read into `buf` until it is full or the file ends; the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

async fn raw_response(state: AppState, q: ReadQuery) -> Result<Response> {
    let (mut file, len, first, name) = blocking(move || {
        let roots = current_roots(&state);
        let (root, rel) = files::locate(&roots, q.root.as_deref(), &q.path)?;
        let fd = root.open()?;
        let (mut file, len) = files::open_for_read(fd.as_raw_fd(), &rel)?;
        let mut first = vec![0u8; len.min(RAW_CHUNK as u64) as usize];
        let n = read_full(&mut file, &mut first).map_err(|e| Error::io("reading a file", e))?;
        if n < first.len() {
            return Err(Error::Conflict(format!(
                "{rel}: the file shrank while it was read; try again"
            )));
        }
        let name = Path::new(&rel)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok((file, len, first, name))
    })
    .await?;
    let mut left = len - first.len() as u64;
    let body = if left == 0 {
        Body::from(first)
    } else {
        // The rest from one blocking task; at most two chunks wait in the
        // channel (bounded memory per download), and a client that goes
        // away stops the reads.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
        tokio::task::spawn_blocking(move || {
            while left > 0 {
                let mut buf = vec![0u8; left.min(RAW_CHUNK as u64) as usize];
                let item = match read_full(&mut file, &mut buf) {
                    Ok(n) if n == buf.len() => Ok(Bytes::from(buf)),
                    // The length is already promised: end the body with an
                    // error rather than send fewer bytes than announced.
                    Ok(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was sent",
                    )),
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                left -= item.as_ref().map_or(0, |b| b.len() as u64);
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        let rest = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let first = futures_util::stream::iter([Ok(Bytes::from(first))]);
        Body::from_stream(futures_util::StreamExt::chain(first, rest))
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CONTENT_DISPOSITION, attachment(&name));
    Ok(response)
}

/// `attachment` (never rendered in the origin), with the file's name: an
/// ASCII fallback and the exact name in RFC 8187 form.
fn attachment(name: &str) -> HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut exact = String::new();
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            exact.push(b as char);
        } else {
            exact.push_str(&format!("%{b:02X}"));
        }
    }
    let value = if name.is_empty() {
        "attachment".to_string()
    } else {
        format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

async fn write(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(format!("request body larger than {WRITE_BODY_LIMIT} bytes"))
        } else {
            Error::Invalid(e.body_text())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_raw_only_when_octet_stream_is_named() {
        let mut h = HeaderMap::new();
        assert!(!wants_octet_stream(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_octet_stream(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, Application/Octet-Stream;q=0.5"),
        );
        assert!(wants_octet_stream(&h));
    }

    #[test]
    fn attachment_names_are_quoted_safely() {
        let v = attachment("a \"b\";\r\nX: y ü.txt");
        let v = v.to_str().unwrap();
        assert!(
            v.starts_with("attachment; filename=\"a__b_;__X:_y__.txt\""),
            "{v}"
        );
        assert!(
            v.ends_with("filename*=UTF-8''a%20%22b%22%3B%0D%0AX%3A%20y%20%C3%BC.txt"),
            "{v}"
        );
        assert_eq!(attachment("").to_str().unwrap(), "attachment");
    }
}
