//! Finding the server's token without Python: the order is part of the
//! package's contract (see the README and `Client`'s docstring).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where the system-wide state dir keeps the token (the NixOS module's and
/// the systemd units' default `state_dir`).
pub const SYSTEM_TOKEN_FILE: &str = "/var/lib/mitzo/internal-token";

/// How the token is presented to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// `X-Internal-Token: <hex>`
    Internal,
    /// `Authorization: Bearer <token>`
    Bearer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Argument,
    Env(&'static str),
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Argument => write!(f, "argument"),
            Source::Env(name) => write!(f, "env:{name}"),
            Source::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Found {
    pub token: String,
    pub source: Source,
    pub header: Header,
    /// Human-readable warnings (a token file readable by group or others).
    pub warnings: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DiscoveryError {
    /// No source had a token; each entry says where and what was found.
    NotFound(Vec<String>),
    /// A token file exists but does not hold a token.
    Malformed { path: PathBuf, reason: String },
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NotFound(looked) => {
                write!(f, "no mitzod token found; looked in:")?;
                for l in looked {
                    write!(f, "\n  - {l}")?;
                }
                write!(
                    f,
                    "\npass token=..., or set MITZO_TOKEN_FILE to the file that \
                     `mitzod token path --config FILE` prints on the server \
                     (`mitzod token path --dev` in the directory of a `serve --dev`)"
                )
            }
            DiscoveryError::Malformed { path, reason } => {
                write!(f, "token file {} is malformed: {reason}", path.display())
            }
        }
    }
}

/// What reading one token file gave.
#[derive(Debug)]
pub enum FileRead {
    Token {
        token: String,
        warning: Option<String>,
    },
    Missing,
    Unreadable(io::Error),
    Malformed(String),
}

/// Check the content of a token file: trimmed, exactly 64 hex characters.
/// Returns the token in lowercase (the server normalises the same way).
pub fn check_token_text(raw: &[u8]) -> Result<String, String> {
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t,
        Err(_) => return Err("not text (expected 64 hex characters)".to_string()),
    };
    let t = text.trim();
    if t.is_empty() {
        return Err("empty (expected 64 hex characters)".to_string());
    }
    if t.len() != 64 {
        return Err(format!(
            "expected 64 hex characters, found {} characters",
            t.chars().count()
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 64 hex characters, found non-hex characters".to_string());
    }
    Ok(t.to_ascii_lowercase())
}

pub fn read_token_file(path: &Path) -> FileRead {
    let raw = match std::fs::read(path) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) => return FileRead::Unreadable(e),
    };
    let token = match check_token_text(&raw) {
        Ok(t) => t,
        Err(reason) => return FileRead::Malformed(reason),
    };
    FileRead::Token {
        token,
        warning: permission_warning(path),
    }
}

#[cfg(unix)]
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        Some(format!(
            "token file {} is readable by group or others (mode {:04o}); run `chmod 600 {}`",
            path.display(),
            mode,
            path.display()
        ))
    } else {
        None
    }
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path) -> Option<String> {
    None
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `.mitzo-dev/internal-token` in `cwd` or the nearest directory above it
/// that has one (a `serve --dev` started there).
pub fn dev_token_file(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .map(|d| d.join(".mitzo-dev").join("internal-token"))
        .find(|p| p.exists())
}

/// The discovery order:
/// argument, `MITZO_SESSION_TOKEN`, `MITZO_INTERNAL_TOKEN`, the file named by
/// `MITZO_TOKEN_FILE`, `.mitzo-dev/internal-token` in the working directory
/// or the nearest one above it, `~/.mitzo/internal-token`,
/// `/var/lib/mitzo/internal-token`.
pub fn discover(
    arg: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: Option<&Path>,
    system_file: &Path,
) -> Result<Found, DiscoveryError> {
    let mut looked = Vec::new();
    if let Some(t) = non_empty(arg) {
        return Ok(Found {
            token: t,
            source: Source::Argument,
            header: Header::Bearer,
            warnings: vec![],
        });
    }
    looked.push("the token= argument: not given".to_string());
    for (name, header) in [
        ("MITZO_SESSION_TOKEN", Header::Bearer),
        ("MITZO_INTERNAL_TOKEN", Header::Internal),
    ] {
        if let Some(t) = non_empty(env(name)) {
            return Ok(Found {
                token: t,
                source: Source::Env(name),
                header,
                warnings: vec![],
            });
        }
        looked.push(format!("environment variable {name}: not set"));
    }

    let mut files: Vec<(PathBuf, String)> = Vec::new();
    match non_empty(env("MITZO_TOKEN_FILE")) {
        Some(p) => files.push((PathBuf::from(p), "MITZO_TOKEN_FILE".to_string())),
        None => looked.push("environment variable MITZO_TOKEN_FILE: not set".to_string()),
    }
    match cwd {
        Some(dir) => match dev_token_file(dir) {
            Some(p) => files.push((p, "a `serve --dev` above the working directory".to_string())),
            None => looked.push(format!(
                ".mitzo-dev/internal-token in {} and above: none (no `serve --dev` there)",
                dir.display()
            )),
        },
        None => looked.push(".mitzo-dev/internal-token: no working directory".to_string()),
    }
    match non_empty(env("HOME")) {
        Some(h) => files.push((
            Path::new(&h).join(".mitzo").join("internal-token"),
            "~/.mitzo/internal-token".to_string(),
        )),
        None => looked.push("~/.mitzo/internal-token: HOME is not set".to_string()),
    }
    files.push((system_file.to_path_buf(), "system state dir".to_string()));

    for (path, label) in files {
        match read_token_file(&path) {
            FileRead::Token { token, warning } => {
                return Ok(Found {
                    token,
                    source: Source::File(path),
                    header: Header::Internal,
                    warnings: warning.into_iter().collect(),
                })
            }
            FileRead::Missing => looked.push(format!("{} ({label}): no such file", path.display())),
            FileRead::Unreadable(e) => {
                looked.push(format!("{} ({label}): cannot read: {e}", path.display()))
            }
            FileRead::Malformed(reason) => {
                return Err(DiscoveryError::Malformed { path, reason });
            }
        }
    }
    Err(DiscoveryError::NotFound(looked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn token_text_is_trimmed_and_lowercased() {
        let up = format!("  {}\n", HEX.to_ascii_uppercase());
        assert_eq!(check_token_text(up.as_bytes()).unwrap(), HEX);
        assert!(check_token_text(b"abc").is_err());
        assert!(check_token_text(b"").is_err());
        assert!(check_token_text(&[0xff; 64]).is_err());
        let bad = format!("{}g", &HEX[..63]);
        assert!(check_token_text(bad.as_bytes()).is_err());
    }

    #[test]
    fn argument_wins_and_uses_bearer() {
        let env = env_of(&[("MITZO_SESSION_TOKEN", "s")]);
        let f = discover(Some("a".into()), &env, None, Path::new("/nonexistent")).unwrap();
        assert_eq!(f.token, "a");
        assert_eq!(f.source, Source::Argument);
        assert_eq!(f.header, Header::Bearer);
    }

    #[test]
    fn nothing_found_lists_every_place() {
        let env = env_of(&[("HOME", "/nonexistent-home")]);
        let e = discover(
            None,
            &env,
            Some(Path::new("/nonexistent-cwd")),
            Path::new("/nonexistent/sys"),
        )
        .unwrap_err();
        let text = e.to_string();
        for needle in [
            "token= argument",
            "MITZO_SESSION_TOKEN",
            "MITZO_INTERNAL_TOKEN",
            "MITZO_TOKEN_FILE",
            "/nonexistent-home/.mitzo/internal-token",
            "/nonexistent/sys",
            ".mitzo-dev/internal-token in /nonexistent-cwd",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
