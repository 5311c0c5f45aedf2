//! Reading a request's credential (headers only, never the query) and the
//! extractor every route names its scope with:
//!
//! ```text
//! async fn handler(Authed(caller, ..): Authed<scope::Internal>) { .. }
//! ```
//!
//! Checking the credential is `crate::auth`'s.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::app::AppState;
use crate::auth::{authenticate, Caller, Presented, Scope, Source};
use crate::error::Error;

pub const COOKIE_NAME: &str = "cc_auth";
pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";
pub const CLIENT_ID_HEADER: &str = "x-client-id";

/// Extractor: the caller, admitted by scope `S` (401 without a valid
/// credential, 403 with one that lacks the scope).
pub struct Authed<S: Scope>(pub Caller, pub PhantomData<S>);

impl<S: Scope> Authed<S> {
    pub fn caller(&self) -> &Caller {
        &self.0
    }
}

impl<S: Scope> FromRequestParts<AppState> for Authed<S> {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented =
            credential(&parts.headers)?.ok_or(Error::Unauthorized("authentication required"))?;
        let caller = authenticate(presented, state.verifiers())?;
        // Authenticated traffic keeps an `idle_exit` server up.
        state.sessions.touch();
        if !S::allows(&caller) {
            return Err(Error::Forbidden(format!(
                "this route needs the {} scope",
                S::NAME
            )));
        }
        Ok(Authed(caller, PhantomData))
    }
}

/// The credential the headers present, with the `X-Client-ID` header.
pub fn credential(headers: &HeaderMap) -> Result<Option<Presented>, Error> {
    let Some((source, token)) = presented(headers)? else {
        return Ok(None);
    };
    let client_id = headers
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(Some(Presented {
        source,
        token,
        client_id,
    }))
}

/// The credential a request presents, in order of precedence.
pub fn presented(headers: &HeaderMap) -> Result<Option<(Source, String)>, Error> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| Error::Unauthorized("malformed Authorization header"))?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or(Error::Unauthorized(
                "Authorization must be `Bearer <token>`",
            ))?;
        return Ok(Some((Source::Bearer, token.trim().to_string())));
    }
    if let Some(value) = headers.get(INTERNAL_TOKEN_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| Error::Unauthorized("malformed X-Internal-Token header"))?;
        return Ok(Some((Source::InternalHeader, text.trim().to_string())));
    }
    if let Some(token) = cookie_value(headers, COOKIE_NAME) {
        return Ok(Some((Source::Cookie, token)));
    }
    Ok(None)
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}
