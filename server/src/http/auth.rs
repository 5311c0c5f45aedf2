//! Owner auth routes (Mitzo's paths): login, logout, logout-all, check.

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::credential::{Authed, COOKIE_NAME};
use super::Peer;
use crate::app::AppState;
use crate::auth::{scope, Caller};
use crate::error::Result;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/logout-all", post(logout_all))
        .route("/api/auth/check", get(check))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    passphrase: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(body): Json<LoginBody>,
) -> Result<Response> {
    let token =
        crate::auth::login::log_in(state.login_deps(), &peer.remote, body.passphrase).await?;
    let cookie = set_cookie(&token, state.owner.max_age_secs(), state.web.tls);
    let mut response = Json(json!({ "ok": true, "token": token })).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

fn set_cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("cc_auth=; Max-Age=0"))
}

fn cleared(state: &AppState) -> Response {
    let mut response = Json(json!({ "ok": true })).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, state.web.tls));
    response
}

async fn logout(State(state): State<AppState>, auth: Authed<scope::Owner>) -> Result<Response> {
    if let Caller::Owner { jti, exp, .. } = auth.caller() {
        state.owner.revoke(jti, *exp).await?;
        tracing::info!("owner logged out one session");
    }
    Ok(cleared(&state))
}

async fn logout_all(
    State(state): State<AppState>,
    _auth: Authed<scope::Owner>,
) -> Result<Response> {
    let epoch = state.owner.bump_epoch().await?;
    tracing::info!(epoch, "owner logged out everywhere");
    Ok(cleared(&state))
}

async fn check(_auth: Authed<scope::Owner>) -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}
