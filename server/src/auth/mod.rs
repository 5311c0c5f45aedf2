//! Who is calling, and may they: credentials checked in constant time, and
//! a scope every route names in one word. Reading the credential from a
//! request's headers is HTTP's part (`http::credential`); the login flow
//! (rate limit, argon2, the record of attempts) is [`login`].

pub(crate) mod login;
pub(crate) mod owner;
pub mod passphrase;
pub(crate) mod rate_limit;
pub(crate) mod session_tokens;

use crate::error::Error;
use crate::state::InternalTokenStore;

/// What a presented credential is checked against. Borrowed from the
/// daemon's state, so this module does not depend on it.
#[derive(Clone, Copy)]
pub struct Verifiers<'a> {
    pub owner: &'a owner::OwnerAuth,
    pub internal_token: &'a InternalTokenStore,
    pub session_tokens: &'a session_tokens::SessionTokens,
}

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

/// A credential as a request presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub source: Source,
    pub token: String,
    /// The `X-Client-ID` header, when present and not blank.
    pub client_id: Option<String>,
}

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Bearer,
    InternalHeader,
    Cookie,
}

fn looks_like_internal_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The caller a credential names, or why it names none.
pub fn authenticate(presented: Presented, state: Verifiers<'_>) -> Result<Caller, Error> {
    let Presented {
        source,
        token,
        client_id,
    } = presented;
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
