//! Unauthenticated routes: version and health. Nothing else is open.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::Error;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/version", get(version))
        .route("/healthz", get(healthz))
}

async fn version() -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("MITZO_BUILD_COMMIT"),
    }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

pub async fn not_found() -> Error {
    Error::NotFound("no such route".into())
}
