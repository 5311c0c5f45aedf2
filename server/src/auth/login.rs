//! The owner's login: the per-address rate limit, the argon2 check (on the
//! blocking pool, a bounded number at a time) and the record of the
//! attempt, then a fresh login token.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::owner::OwnerAuth;
use super::passphrase::Passphrase;
use super::rate_limit::LoginLimiter;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// What a login needs, borrowed from the daemon's state.
pub struct LoginDeps<'a> {
    pub limiter: &'a Arc<LoginLimiter>,
    /// argon2 is memory-hard: how many may run at once.
    pub argon_permits: &'a Arc<Semaphore>,
    pub passphrase: &'a Arc<Passphrase>,
    pub owner: &'a OwnerAuth,
}

pub const MAX_PASSPHRASE: usize = 1024;

/// Check `passphrase` for a caller at `remote` (the rate-limit key) and
/// answer a new owner token. Every attempt counts against `remote`, also
/// one whose caller goes away while argon2 runs.
pub async fn log_in(state: LoginDeps<'_>, remote: &str, passphrase: String) -> Result<String> {
    // The slot is taken now, before argon2: see `LoginLimiter`.
    let attempt = state
        .limiter
        .begin(remote)
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
    if passphrase.is_empty() || passphrase.len() > MAX_PASSPHRASE {
        attempt.failed();
        return Err(Error::Invalid(format!(
            "passphrase must be 1..={MAX_PASSPHRASE} bytes"
        )));
    }
    let candidate = Secret::new(passphrase);
    let permit = state
        .argon_permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::internal("login unavailable"))?;
    // The lock may have engaged while this attempt queued for a permit.
    attempt
        .recheck()
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
    let verifier = state.passphrase.clone();
    tracing::info!(peer = %remote, "checking a passphrase");
    // The outcome is recorded in the blocking task itself, so a client that
    // goes away mid-verification still has its failure counted.
    let ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let ok = verifier.verify(candidate.expose());
        if ok {
            attempt.succeeded();
        } else {
            attempt.failed();
        }
        ok
    })
    .await
    .map_err(|e| Error::internal_from("passphrase check failed", e))?;
    if !ok {
        tracing::warn!(peer = %remote, "login failed");
        return Err(Error::Unauthorized("wrong passphrase"));
    }
    let (token, _claims) = state.owner.issue()?;
    tracing::info!(peer = %remote, "owner logged in");
    Ok(token)
}
