//! Who is calling, and may they: credentials from headers only, checked in
//! constant time, and a scope every route names in one word.
//!
//! ```ignore
//! async fn handler(Authed(caller, ..): Authed<scope::Internal>) { .. }
//! ```

pub mod owner;
pub mod passphrase;
pub mod rate_limit;
pub mod session_tokens;

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::app::AppState;
use crate::error::Error;

pub const COOKIE_NAME: &str = "cc_auth";
pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";
pub const CLIENT_ID_HEADER: &str = "x-client-id";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The owner, through a login JWT (cookie or bearer).
    Owner {
        jti: String,
        exp: i64,
        epoch: u64,
        via_cookie: bool,
    },
    /// Hooks and scripts holding the persisted internal token; `client_id`
    /// is the `X-Client-ID` header, naming a session when the caller acts for one.
    Internal { client_id: Option<String> },
    /// One agent session, through its own session token.
    Session { session_id: String },
}

/// What a route requires. Each scope is one marker type.
pub trait Scope: Send + Sync + 'static {
    const NAME: &'static str;
    fn allows(caller: &Caller) -> bool;
}

pub mod scope {
    use super::{Caller, Scope};

    /// Owner-only: auth management, files, audit, chat.
    pub struct Owner;
    impl Scope for Owner {
        const NAME: &'static str = "owner";
        fn allows(c: &Caller) -> bool {
            matches!(c, Caller::Owner { .. })
        }
    }

    /// The internal API (sessions, tasks, repos): the owner or the internal token.
    pub struct Internal;
    impl Scope for Internal {
        const NAME: &'static str = "internal";
        fn allows(c: &Caller) -> bool {
            matches!(c, Caller::Owner { .. } | Caller::Internal { .. })
        }
    }

    /// Task tools and signals: any caller; a session token only for its session.
    pub struct Agent;
    impl Scope for Agent {
        const NAME: &'static str = "agent";
        fn allows(_: &Caller) -> bool {
            true
        }
    }
}

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
        let caller = authenticate(&parts.headers, state)?;
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

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Bearer,
    InternalHeader,
    Cookie,
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

fn looks_like_internal_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Caller, Error> {
    let (source, token) =
        presented(headers)?.ok_or(Error::Unauthorized("authentication required"))?;
    let client_id = headers
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    match source {
        Source::InternalHeader => {
            if state
                .internal_token
                .verify(token.to_ascii_lowercase().as_bytes())
            {
                Ok(Caller::Internal { client_id })
            } else {
                Err(Error::Unauthorized("invalid internal token"))
            }
        }
        Source::Cookie => state.owner.verify(&token).map(|c| Caller::Owner {
            jti: c.jti,
            exp: c.exp,
            epoch: c.epoch,
            via_cookie: true,
        }),
        Source::Bearer if looks_like_internal_token(&token) => {
            if state
                .internal_token
                .verify(token.to_ascii_lowercase().as_bytes())
            {
                Ok(Caller::Internal { client_id })
            } else {
                Err(Error::Unauthorized("invalid token"))
            }
        }
        Source::Bearer if token.starts_with(session_tokens::PREFIX) => state
            .session_tokens
            .lookup(&token)
            .map(|session_id| Caller::Session { session_id })
            .ok_or(Error::Unauthorized("invalid or expired session token")),
        Source::Bearer => state.owner.verify(&token).map(|c| Caller::Owner {
            jti: c.jti,
            exp: c.exp,
            epoch: c.epoch,
            via_cookie: false,
        }),
    }
}
