//! Layers every request passes: response hygiene (JSON errors, security
//! headers, a log line without secrets), no credentials in query strings,
//! and the browser checks (Host allow-list, Origin on state changes).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::credential::{cookie_value, COOKIE_NAME};
use super::Peer;
use crate::app::AppState;
use crate::error::Error;
use crate::http::error::json_error;

const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Outermost: every response is JSON on error and carries the security
/// headers; one log line per request with method, the matched route (the
/// template, e.g. `/api/sessions/{id}/meta`, never the raw path: a
/// credential pasted into a URL must not reach the log), the ids in it that
/// have an id's shape, and status.
pub async fn response_hygiene(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let (mut parts, body) = req.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "<no route>".to_string());
    let ids = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|params| {
            params
                .iter()
                .map(|(k, v)| format!("{k}={}", loggable_id(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let req = Request::from_parts(parts, body);
    let response = next.run(req).await;
    let mut response = normalise_error(response).await;
    set_security_headers(response.headers_mut());
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if route == "/healthz" {
        tracing::trace!(%method, %route, status, ms, "request");
    } else {
        tracing::info!(%method, %route, ids, status, ms = format!("{ms:.1}"), "request");
    }
    response
}

/// The headers every response mitzod builds carries (hyper's own early
/// answers to unparseable requests are out of its reach: SECURITY.md).
pub fn set_security_headers(h: &mut HeaderMap) {
    // The web app's pages set their own (stricter for scripts, see
    // `web::PAGE_CSP`); everything else gets the API's.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// A path parameter as logged: a session id, or a short plain id (tasks,
/// permissions); anything longer or token-shaped is withheld.
fn loggable_id(v: &str) -> &str {
    let session_id = crate::worktree::validate_session_id(v).is_ok();
    let short_plain = !v.is_empty()
        && v.len() <= 40
        && !v.starts_with(crate::auth::session_tokens::PREFIX)
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if session_id || short_plain {
        v
    } else {
        "<withheld>"
    }
}

/// Errors from axum's own extractors and fallbacks are plain text; turn
/// them into the `{"error": ...}` every caller expects.
async fn normalise_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body larger than {} bytes", super::BODY_LIMIT)
    } else {
        text
    };
    let mut fresh = json_error(status, &message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// Parameter names that mean "a credential": refused in any query string.
const CREDENTIAL_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "auth",
    "authorization",
    "jwt",
    "cc_auth",
    "internal_token",
    "x-internal-token",
    "session_token",
    "api_key",
    "apikey",
    "approval_token",
    "x-approval-token",
];

/// Routes that take more than the default body limit (they set their own
/// `DefaultBodyLimit` too); everything else is refused above `BODY_LIMIT`
/// before a handler runs, whether or not it reads its body.
const LARGE_BODY_ROUTES: &[(&str, usize)] = &[("/api/files/write", super::files::WRITE_BODY_LIMIT)];

/// Oversized bodies up to this size are drained before the 413.
const DRAIN_LIMIT: usize = 32 * 1024 * 1024;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn reject_query_credentials(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let limit = LARGE_BODY_ROUTES
        .iter()
        .find(|(path, _)| *path == req.uri().path())
        .map(|(_, limit)| *limit)
        .unwrap_or(super::BODY_LIMIT);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > limit) {
        // Read and drop a moderately oversized body (bounded in size and
        // time) so the client gets its 413 rather than a broken pipe; a
        // huge one is refused at once.
        if n <= DRAIN_LIMIT {
            let drain = async {
                let mut stream = req.into_body().into_data_stream();
                while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {}
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        }
        let mut response =
            Error::TooLarge(format!("request body larger than {limit} bytes")).into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if let Some(query) = req.uri().query() {
        if let Some(problem) = query_credential(query, &state) {
            return Error::Invalid(format!(
                "credentials are accepted in headers only, never in the URL ({problem}); use Authorization: Bearer or X-Internal-Token"
            ))
            .into_response();
        }
    }
    next.run(req).await
}

fn query_credential(query: &str, state: &AppState) -> Option<String> {
    // Decoded by the crate axum's `Query` decodes with (`%XX`, `+`), so a
    // name a handler would read as `token` is read so here too.
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let name = name.to_ascii_lowercase();
        if CREDENTIAL_PARAMS.contains(&name.as_str()) {
            return Some(format!("query parameter `{name}`"));
        }
        let v = value.trim();
        let jwt_shaped = v.starts_with("eyJ") && v.matches('.').count() == 2;
        let session_shaped = v.starts_with(crate::auth::session_tokens::PREFIX);
        let is_internal = v.len() == 64
            && state
                .internal_token
                .verify(v.to_ascii_lowercase().as_bytes());
        if jwt_shaped || session_shaped || is_internal {
            return Some(format!("query parameter `{name}` carries a token"));
        }
    }
    None
}

pub async fn browser_safety(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request<Body>,
    next: Next,
) -> Response {
    if let Err(e) = check_host(&state, &peer, req.headers()) {
        return e.into_response();
    }
    if let Err(e) = check_origin(&state, req.method(), req.headers()) {
        return e.into_response();
    }
    let mut response = next.run(req).await;
    if state.web.tls {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

fn request_host(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase())
}

/// DNS rebinding defence: a browser tricked into talking to us sends the
/// attacker's name in `Host`. The local socket is out of a browser's reach.
fn check_host(state: &AppState, peer: &Peer, headers: &HeaderMap) -> Result<(), Error> {
    if peer.unix {
        return Ok(());
    }
    let host = request_host(headers).ok_or_else(|| Error::Invalid("missing Host header".into()))?;
    let name = crate::config::host_without_port(&host);
    if state.web.allowed_hosts.contains(name) {
        return Ok(());
    }
    let arrived_on = peer.local_ip.map(|ip| match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    });
    if arrived_on.as_deref() == Some(name) {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "Host {name:?} is not allowed; add it to `allowed_hosts` if it is really this server"
    )))
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// CSRF defence: state changes and WebSocket upgrades from a browser must
/// come from our own origin.
fn check_origin(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<(), Error> {
    let websocket = is_websocket_upgrade(headers);
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && !websocket {
        return Ok(());
    }
    match headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""))
    {
        Some(origin) => {
            let origin = origin.trim().to_ascii_lowercase();
            if origin_allowed(state, &origin, headers) {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "cross-origin request refused: Origin {origin:?} is not allowed"
                )))
            }
        }
        None => {
            let has_cookie = cookie_value(headers, COOKIE_NAME).is_some();
            let same_origin_fetch = headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == "same-origin");
            if has_cookie && (websocket || !same_origin_fetch) {
                Err(Error::Forbidden(
                    "a cookie-authenticated state change needs an Origin header".into(),
                ))
            } else {
                Ok(())
            }
        }
    }
}

fn origin_allowed(state: &AppState, origin: &str, headers: &HeaderMap) -> bool {
    if state.web.allowed_origins.contains(origin) {
        return true;
    }
    // Same origin: the Origin's authority is the Host we were addressed by.
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (authority, request_host(headers)) {
        (Some(a), Some(host)) => a == host,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_id;

    #[test]
    fn ids_that_look_like_tokens_are_withheld() {
        assert_eq!(
            loggable_id("2026-01-02-0123456789ab"),
            "2026-01-02-0123456789ab"
        );
        assert_eq!(
            loggable_id("0123456789abcdef0123456789abcdef"),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(loggable_id(&"a".repeat(64)), "<withheld>");
        assert_eq!(loggable_id("mzs_0123"), "<withheld>");
        assert_eq!(loggable_id("eyJ.a.b"), "<withheld>");
        assert_eq!(loggable_id(""), "<withheld>");
    }
}
