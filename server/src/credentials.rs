//! Secrets from files: explicit `*_file` paths, else systemd credentials
//! (`$CREDENTIALS_DIRECTORY/<name>`), else, outside systemd, the file
//! `LoadCredential=<name>:mitzod.<name>` would load (`/etc/credstore/mitzod.<name>`).
//! Read before the privilege drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::auth::passphrase::Passphrase;
use crate::config::{Config, EXAMPLE_JWT_SECRETS};
use crate::error::StartupError;

// Everything here runs while mitzod starts.
type Result<T, E = StartupError> = std::result::Result<T, E>;
use crate::secret::Secret;

pub const JWT_SECRET: &str = "jwt-secret";
pub const PASSPHRASE_HASH: &str = "passphrase-hash";
pub const NTFY_TOKEN: &str = "ntfy-token";
pub const ANTHROPIC_API_KEY: &str = "anthropic-api-key";
/// Where systemd looks for `LoadCredential=` files named without a path.
const CREDSTORE_DIRS: &[&str] = &["/etc/credstore", "/run/credstore", "/usr/lib/credstore"];
/// Replaces [`CREDSTORE_DIRS`] (colon-separated), for tests and unusual layouts.
pub const CREDSTORE_PATH_ENV: &str = "MITZO_CREDSTORE_PATH";
const MIN_JWT_SECRET_BYTES: usize = 32;
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The secrets the server needs to run.
pub struct Credentials {
    pub jwt_secret: Secret,
    pub passphrase: Passphrase,
    pub ntfy_token: Option<Secret>,
    /// Given to each agent as `ANTHROPIC_API_KEY`, never logged.
    pub agent_api_key: Option<Secret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

/// A credential's file when no `*_file` key names one: systemd's
/// `$CREDENTIALS_DIRECTORY/<name>`, else the credstore file the unit's
/// `LoadCredential=<name>:mitzod.<name>` reads, when it exists.
fn credential_path(name: &str) -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        return Some(PathBuf::from(d).join(name));
    }
    credstore_file(name)
}

fn credstore_file(name: &str) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os(CREDSTORE_PATH_ENV) {
        Some(p) => std::env::split_paths(&p).collect(),
        None => CREDSTORE_DIRS.iter().map(PathBuf::from).collect(),
    };
    dirs.into_iter()
        .map(|d| d.join(format!("mitzod.{name}")))
        .find(|p| p.exists())
}

/// systemd's own credential files live on a private mount it controls;
/// any other secret file must not be readable by group or others.
fn check_private(path: &Path, key: &str, meta: &std::fs::Metadata) -> Result<()> {
    let in_systemd_dir = std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|d| path.starts_with(PathBuf::from(d)));
    let mode = meta.permissions().mode() & 0o777;
    if !in_systemd_dir && mode & 0o077 != 0 {
        return Err(StartupError::Credential(format!(
            "key `{key}`: {} is readable by group or others (mode {mode:04o}); \
             run `chmod 600 {}` (and keep it owned by the user that starts mitzod)",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

fn read_secret_file(path: &Path, key: &str) -> Result<Secret> {
    read_file(path, key, false)
}

fn read_private_file(path: &Path, key: &str) -> Result<Secret> {
    read_file(path, key, true)
}

fn read_file(path: &Path, key: &str, private: bool) -> Result<Secret> {
    let meta = std::fs::metadata(path).map_err(|e| {
        StartupError::Credential(format!("key `{key}`: cannot read {}: {e}", path.display()))
    })?;
    if private {
        check_private(path, key, &meta)?;
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(StartupError::Credential(format!(
            "key `{key}`: {} is too large for a secret",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        StartupError::Credential(format!("key `{key}`: cannot read {}: {e}", path.display()))
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
        agent_api_key: load_agent_api_key(config)?,
    })
}

/// `agent.api_key_file`, else the credential `anthropic-api-key` when present.
fn load_agent_api_key(config: &Config) -> Result<Option<Secret>> {
    let path = match &config.agent.api_key_file {
        Some(p) => p.clone(),
        None => match credential_path(ANTHROPIC_API_KEY) {
            Some(p) if p.exists() => p,
            _ => return Ok(None),
        },
    };
    let key = read_private_file(&path, "agent.api_key_file")?;
    if key.is_empty() || key.expose().iter().any(|b| b.is_ascii_control()) {
        return Err(StartupError::Credential(format!(
            "key `agent.api_key_file`: {} must hold one line, the key",
            path.display()
        )));
    }
    Ok(Some(key))
}

fn load_jwt_secret(config: &Config) -> Result<Secret> {
    let path = match &config.jwt_secret_file {
        Some(p) => p.clone(),
        None => credential_path(JWT_SECRET).ok_or_else(|| {
            StartupError::Credential(
                "no JWT secret: set `jwt_secret_file`, or pass the systemd credential `jwt-secret` (LoadCredential=), or create /etc/credstore/mitzod.jwt-secret".into(),
            )
        })?,
    };
    let secret = read_private_file(&path, "jwt_secret_file")?;
    check_jwt_secret(&secret, &path)?;
    Ok(secret)
}

pub fn check_jwt_secret(secret: &Secret, origin: &Path) -> Result<()> {
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(StartupError::Credential(format!(
            "key `jwt_secret_file`: {} holds {} bytes; at least {MIN_JWT_SECRET_BYTES} are required (try `head -c 48 /dev/urandom | base64`)",
            origin.display(),
            secret.len()
        )));
    }
    if EXAMPLE_JWT_SECRETS
        .iter()
        .any(|ex| secret.matches(ex.as_bytes()))
    {
        return Err(StartupError::Credential(format!(
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
            return Err(StartupError::Credential(format!(
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
                &format!("credential `{PASSPHRASE_HASH}` ({})", path.display()),
            );
        }
    }
    Err(StartupError::Credential(
        "no owner passphrase: set `passphrase_hash_file` (or `passphrase_hash`), or pass the systemd credential `passphrase-hash`, or create /etc/credstore/mitzod.passphrase-hash".into(),
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
