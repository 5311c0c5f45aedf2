//! The owner's web app: static files built from `server/web` and embedded
//! at compile time (see build.rs), served precompressed, hashed assets
//! cached for a year, and the app shell for the page's own routes. Only
//! the routes listed here serve the shell, so an unknown path under /api,
//! /ws or anywhere else keeps its JSON 404.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;
use crate::error::Error;

/// The page's policy: nothing from another origin, no inline script or
/// style, and every DOM sink behind Trusted Types.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; require-trusted-types-for 'script'";

pub struct Asset {
    pub path: &'static str,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
    pub br: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for route in [
        "/",
        "/sessions",
        "/files",
        "/tasks",
        "/audit",
        "/s/{id}",
        "/s/{id}/review",
    ] {
        router = router.route(route, get(shell));
    }
    router
        .route("/assets/{file}", get(file))
        .route("/icons/{file}", get(file))
        .route("/sw.js", get(file))
        .route("/manifest.webmanifest", get(file))
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

async fn shell(req: Request) -> Response {
    serve(find("/index.html"), req.headers())
}

async fn file(req: Request) -> Response {
    serve(find(req.uri().path()), req.headers())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("webmanifest") => "application/manifest+json",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Whether the client takes `coding` (a q=0 entry refuses it).
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !refused
        })
}

fn serve(asset: Option<&'static Asset>, headers: &HeaderMap) -> Response {
    let Some(asset) = asset else {
        return Error::NotFound("no such file".into()).into_response();
    };
    let (body, encoding) = match (asset.br, asset.gzip) {
        (Some(br), _) if accepts(headers, "br") => (br, Some("br")),
        (_, Some(gz)) if accepts(headers, "gzip") => (gz, Some("gzip")),
        _ => (asset.body, None),
    };
    // Hashed names never change content: cache them for good. Everything
    // else (the shell, the service worker, the manifest) is revalidated.
    let cache = if asset.path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset.path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    if let Some(coding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(ae: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(ae).unwrap());
        h
    }

    #[test]
    fn encoding_negotiation() {
        assert!(accepts(&with("gzip, deflate, br"), "br"));
        assert!(accepts(&with("gzip;q=0.5"), "gzip"));
        assert!(!accepts(&with("gzip, br;q=0"), "br"));
        assert!(!accepts(&with("identity"), "gzip"));
        assert!(!accepts(&HeaderMap::new(), "gzip"));
    }

    #[test]
    fn the_bundle_is_embedded() {
        let index = find("/index.html").expect("index.html embedded");
        let html = std::str::from_utf8(index.body).unwrap();
        assert!(html.contains("<script type=\"module\" src=\"/assets/"));
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("style="), "no inline style");
        assert!(find("/sw.js").is_some());
        assert!(find("/manifest.webmanifest").is_some());
        let js = ASSETS
            .iter()
            .find(|a| a.path.starts_with("/assets/") && a.path.ends_with(".js"))
            .expect("a hashed JS bundle");
        assert!(js.br.is_some() && js.gzip.is_some(), "precompressed");
    }
}
