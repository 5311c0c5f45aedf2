//! Unauthenticated routes: version and health. Nothing else is open.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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

/// 200 `{"ok":true}` while healthy; 503 with the reason while degraded
/// (the state directory's disk is full: reads work, writes are refused).
async fn healthz(State(state): State<AppState>) -> Response {
    match state.db.health().reason() {
        None => Json(json!({ "ok": true, "status": "ok" })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ok": false, "status": "degraded", "reason": reason })),
        )
            .into_response(),
    }
}

pub async fn not_found() -> Error {
    Error::NotFound("no such route".into())
}
