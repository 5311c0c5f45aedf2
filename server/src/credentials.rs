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

/// Where a credential's file came from, said in every error about it.
#[derive(Debug, Clone)]
enum Source {
    /// A config key: from the file, a `MITZOD_*` variable or the defaults.
    Key { key: &'static str, origin: String },
    /// systemd's `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`).
    Systemd(&'static str),
    /// The credential-store file `LoadCredential=<name>:mitzod.<name>`
    /// would load, found outside systemd.
    Credstore(&'static str),
}

impl Source {
    fn key(config: &Config, key: &'static str) -> Source {
        Source::Key {
            key,
            origin: config.sources.origin_of(key),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Key { key, origin } if origin.starts_with("environment variable") => {
                write!(f, "{origin} (key `{key}`)")
            }
            Source::Key { key, origin } => write!(f, "key `{key}` in {origin}"),
            Source::Systemd(name) => write!(
                f,
                "systemd credential `{name}` ($CREDENTIALS_DIRECTORY, from LoadCredential=)"
            ),
            Source::Credstore(name) => write!(
                f,
                "credential-store file (what LoadCredential={name}:mitzod.{name} loads)"
            ),
        }
    }
}

/// A credential's file when no `*_file` key names one: systemd's
/// `$CREDENTIALS_DIRECTORY/<name>`, else the credstore file the unit's
/// `LoadCredential=<name>:mitzod.<name>` reads, when it exists.
fn credential_path(name: &'static str) -> Option<(PathBuf, Source)> {
    if let Some(d) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        return Some((PathBuf::from(d).join(name), Source::Systemd(name)));
    }
    credstore_file(name).map(|p| (p, Source::Credstore(name)))
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

fn problem(from: &Source, path: &Path, what: impl std::fmt::Display) -> StartupError {
    StartupError::Credential(format!("{from}: {}: {what}", path.display()))
}

/// systemd's own credential files live on a private mount it controls;
/// any other secret file must not be readable by group or others.
fn check_private(path: &Path, from: &Source, meta: &std::fs::Metadata) -> Result<()> {
    let in_systemd_dir = std::env::var_os("CREDENTIALS_DIRECTORY")
        .is_some_and(|d| path.starts_with(PathBuf::from(d)));
    let mode = meta.permissions().mode() & 0o777;
    if !in_systemd_dir && mode & 0o077 != 0 {
        return Err(problem(
            from,
            path,
            format_args!(
                "readable by group or others (mode {mode:04o}); run `chmod 600 {}` \
                 (and keep it owned by the user that starts mitzod)",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn read_secret_file(path: &Path, from: &Source) -> Result<Secret> {
    read_file(path, from, false)
}

fn read_private_file(path: &Path, from: &Source) -> Result<Secret> {
    read_file(path, from, true)
}

fn read_file(path: &Path, from: &Source, private: bool) -> Result<Secret> {
    let meta = std::fs::metadata(path)
        .map_err(|e| problem(from, path, format_args!("cannot be read: {e}")))?;
    if private {
        check_private(path, from, &meta)?;
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(problem(from, path, "too large for a secret"));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| problem(from, path, format_args!("cannot be read: {e}")))?;
    // Files written with `echo` end in a newline that is not part of the secret.
    let trimmed = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(&bytes);
    Ok(Secret::new(trimmed.to_vec()))
}

/// Load every credential the config names. When any is wrong, the error
/// names every problem (one a line), not only the first, each with where
/// its file came from.
pub fn load(config: &Config) -> Result<Credentials> {
    load_all(config).map_err(|problems| {
        StartupError::Credential(
            problems
                .iter()
                .map(|p| match p {
                    StartupError::Credential(m) => m.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n  and: "),
        )
    })
}

/// [`load`], with each problem on its own (check-config lists them).
pub fn load_all(config: &Config) -> std::result::Result<Credentials, Vec<StartupError>> {
    let jwt = load_jwt_secret(config);
    let passphrase = load_passphrase(config);
    let ntfy = load_ntfy_token(config);
    let api_key = load_agent_api_key(config);
    match (jwt, passphrase, ntfy, api_key) {
        (Ok(jwt_secret), Ok(passphrase), Ok(ntfy_token), Ok(agent_api_key)) => Ok(Credentials {
            jwt_secret,
            passphrase,
            ntfy_token,
            agent_api_key,
        }),
        (a, b, c, d) => Err([a.err(), b.err(), c.err(), d.err()]
            .into_iter()
            .flatten()
            .collect()),
    }
}

/// `agent.api_key_file`, else the credential `anthropic-api-key` when present.
fn load_agent_api_key(config: &Config) -> Result<Option<Secret>> {
    let (path, from) = match &config.agent.api_key_file {
        Some(p) => (p.clone(), Source::key(config, "agent.api_key_file")),
        None => match credential_path(ANTHROPIC_API_KEY) {
            Some((p, from)) if p.exists() => (p, from),
            _ => return Ok(None),
        },
    };
    let key = read_private_file(&path, &from)?;
    if key.is_empty() || key.expose().iter().any(|b| b.is_ascii_control()) {
        return Err(problem(&from, &path, "must hold one line, the key"));
    }
    Ok(Some(key))
}

fn load_jwt_secret(config: &Config) -> Result<Secret> {
    let (path, from) = match &config.jwt_secret_file {
        Some(p) => (p.clone(), Source::key(config, "jwt_secret_file")),
        None => credential_path(JWT_SECRET).ok_or_else(|| {
            StartupError::Credential(
                "no JWT secret: set `jwt_secret_file`, or pass the systemd credential `jwt-secret` (LoadCredential=), or create /etc/credstore/mitzod.jwt-secret".into(),
            )
        })?,
    };
    let secret = read_private_file(&path, &from)?;
    check_secret(&secret, &path, &from)?;
    Ok(secret)
}

fn check_secret(secret: &Secret, path: &Path, from: &Source) -> Result<()> {
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(problem(
            from,
            path,
            format_args!(
                "holds {} bytes; at least {MIN_JWT_SECRET_BYTES} are required (try `head -c 48 /dev/urandom | base64`)",
                secret.len()
            ),
        ));
    }
    if EXAMPLE_JWT_SECRETS
        .iter()
        .any(|ex| secret.matches(ex.as_bytes()))
    {
        return Err(problem(
            from,
            path,
            "holds the example value from the documentation; generate a real secret",
        ));
    }
    Ok(())
}

fn load_passphrase(config: &Config) -> Result<Passphrase> {
    if let Some(phc) = &config.passphrase_hash {
        return Passphrase::from_hash(phc, &Source::key(config, "passphrase_hash").to_string());
    }
    if let Some(path) = &config.passphrase_hash_file {
        let from = Source::key(config, "passphrase_hash_file");
        let s = read_secret_file(path, &from)?;
        return Passphrase::from_hash(s.expose_str(), &format!("{from}: {}", path.display()));
    }
    if let Some(path) = &config.passphrase_file {
        let from = Source::key(config, "passphrase_file");
        let plain = read_secret_file(path, &from)?;
        if plain.is_empty() {
            return Err(problem(&from, path, "is empty"));
        }
        tracing::warn!(
            file = %path.display(),
            "passphrase_file holds a plaintext passphrase; it was hashed in memory. Store an argon2id hash instead (`mitzod hash-passphrase`)"
        );
        return Passphrase::from_plaintext(&plain);
    }
    if let Some((path, from)) = credential_path(PASSPHRASE_HASH) {
        if path.exists() {
            let s = read_secret_file(&path, &from)?;
            return Passphrase::from_hash(s.expose_str(), &format!("{from}: {}", path.display()));
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
        Some(p) => read_secret_file(p, &Source::key(config, "ntfy.token_file")).map(Some),
        None => match credential_path(NTFY_TOKEN) {
            Some((p, from)) if p.exists() => read_secret_file(&p, &from).map(Some),
            _ => Ok(None),
        },
    }
}
