//! Secrets from files: explicit `*_file` paths, else systemd credentials
//! (`$CREDENTIALS_DIRECTORY/<name>`). Read before the privilege drop.

use std::path::{Path, PathBuf};

use crate::auth::passphrase::Passphrase;
use crate::config::{Config, EXAMPLE_JWT_SECRETS};
use crate::error::{Error, Result};
use crate::secret::Secret;

pub const JWT_SECRET: &str = "jwt-secret";
pub const PASSPHRASE_HASH: &str = "passphrase-hash";
pub const NTFY_TOKEN: &str = "ntfy-token";
const MIN_JWT_SECRET_BYTES: usize = 32;
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The secrets the server needs to run.
pub struct Credentials {
    pub jwt_secret: Secret,
    pub passphrase: Passphrase,
    pub ntfy_token: Option<Secret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

fn credential_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(|d| PathBuf::from(d).join(name))
}

fn read_secret_file(path: &Path, key: &str) -> Result<Secret> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::Credential(format!("key `{key}`: cannot read {}: {e}", path.display()))
    })?;
    if meta.len() > MAX_SECRET_FILE {
        return Err(Error::Credential(format!(
            "key `{key}`: {} is too large for a secret",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Credential(format!("key `{key}`: cannot read {}: {e}", path.display()))
    })?;
    // Files written with `echo` end in a newline that is not part of the secret.
    let trimmed = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(&bytes);
    Ok(Secret::new(trimmed.to_vec()))
}

/// Load every credential the config names; one clear error for the first problem.
pub fn load(config: &Config) -> Result<Credentials> {
    Ok(Credentials {
        jwt_secret: load_jwt_secret(config)?,
        passphrase: load_passphrase(config)?,
        ntfy_token: load_ntfy_token(config)?,
    })
}

fn load_jwt_secret(config: &Config) -> Result<Secret> {
    let path = match &config.jwt_secret_file {
        Some(p) => p.clone(),
        None => credential_path(JWT_SECRET).ok_or_else(|| {
            Error::Credential(
                "no JWT secret: set `jwt_secret_file`, or pass the systemd credential `jwt-secret` (LoadCredential=)".into(),
            )
        })?,
    };
    let secret = read_secret_file(&path, "jwt_secret_file")?;
    check_jwt_secret(&secret, &path)?;
    Ok(secret)
}

pub fn check_jwt_secret(secret: &Secret, origin: &Path) -> Result<()> {
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(Error::Credential(format!(
            "key `jwt_secret_file`: {} holds {} bytes; at least {MIN_JWT_SECRET_BYTES} are required (try `head -c 48 /dev/urandom | base64`)",
            origin.display(),
            secret.len()
        )));
    }
    if EXAMPLE_JWT_SECRETS
        .iter()
        .any(|ex| secret.matches(ex.as_bytes()))
    {
        return Err(Error::Credential(format!(
            "key `jwt_secret_file`: {} holds the example value from the documentation; generate a real secret",
            origin.display()
        )));
    }
    Ok(())
}

fn load_passphrase(config: &Config) -> Result<Passphrase> {
    if let Some(phc) = &config.passphrase_hash {
        return Passphrase::from_hash(phc, "key `passphrase_hash`");
    }
    if let Some(path) = &config.passphrase_hash_file {
        let s = read_secret_file(path, "passphrase_hash_file")?;
        return Passphrase::from_hash(
            s.expose_str(),
            &format!("key `passphrase_hash_file` ({})", path.display()),
        );
    }
    if let Some(path) = &config.passphrase_file {
        let plain = read_secret_file(path, "passphrase_file")?;
        if plain.is_empty() {
            return Err(Error::Credential(format!(
                "key `passphrase_file`: {} is empty",
                path.display()
            )));
        }
        tracing::warn!(
            file = %path.display(),
            "passphrase_file holds a plaintext passphrase; it was hashed in memory. Store an argon2id hash instead (`mitzod hash-passphrase`)"
        );
        return Passphrase::from_plaintext(&plain);
    }
    if let Some(path) = credential_path(PASSPHRASE_HASH) {
        if path.exists() {
            let s = read_secret_file(&path, "passphrase_hash_file")?;
            return Passphrase::from_hash(
                s.expose_str(),
                &format!("credential `{PASSPHRASE_HASH}`"),
            );
        }
    }
    Err(Error::Credential(
        "no owner passphrase: set `passphrase_hash_file` (or `passphrase_hash`), or pass the systemd credential `passphrase-hash`".into(),
    ))
}

fn load_ntfy_token(config: &Config) -> Result<Option<Secret>> {
    let Some(ntfy) = &config.ntfy else {
        return Ok(None);
    };
    match &ntfy.token_file {
        Some(p) => read_secret_file(p, "ntfy.token_file").map(Some),
        None => match credential_path(NTFY_TOKEN) {
            Some(p) if p.exists() => read_secret_file(&p, "ntfy.token_file").map(Some),
            _ => Ok(None),
        },
    }
}
