//! The daemon's two error types: [`StartupError`], for what stops mitzod
//! from starting (printed as one line, then a non-zero exit), and [`Error`],
//! for what a request or a session's work can run into, by what went wrong.
//! Neither knows HTTP: `http::error` maps [`Error`] to a status and a body.

use std::fmt;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error, as the source of an internal one.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a request (or a session's background work) can run into.
/// What a write refused for want of space in the state directory says.
pub const DISK_FULL: &str = "the state directory's disk is full";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something unusable (400).
    #[error("{0}")]
    Invalid(String),
    /// No valid credential.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid credential that may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the current state (an edit of a stale
    /// version, a name in use, a session busy).
    #[error("{0}")]
    Conflict(String),
    /// It existed but is over (a decided permission, a stopped session).
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("too many requests; retry in {}s", .retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    /// Something the request needs is missing (no agent binary, no
    /// Landlock): the caller is told why; it is not a server fault.
    #[error("{0}")]
    Unavailable(String),
    /// A disk is full: the state directory's (`state_dir`) or the one a
    /// file write went to. `detail` is logged, never shown.
    #[error("{}", if *.state_dir { DISK_FULL } else { "no space left on the device" })]
    NoSpace { state_dir: bool, detail: String },
    /// A fault of the server or its host. Logged in full with its source
    /// chain; a caller only ever sees "internal error".
    #[error("{}", Chain(.what, .source.as_deref()))]
    Internal {
        what: String,
        source: Option<BoxError>,
    },
}

impl Error {
    /// An internal error without a further source.
    pub fn internal(what: impl Into<String>) -> Error {
        Error::Internal {
            what: what.into(),
            source: None,
        }
    }

    /// An internal error caused by `source`.
    pub fn internal_from(what: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Internal {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// An I/O failure while doing `context`: a full disk (ENOSPC, EDQUOT)
    /// is [`Error::NoSpace`], anything else internal.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        let context = context.into();
        if matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        ) {
            return Error::NoSpace {
                state_dir: false,
                detail: format!("{context}: {source}"),
            };
        }
        Error::internal_from(context, source)
    }

    /// SQLITE_FULL: the state directory's disk (or quota) is full. Not the
    /// caller's fault, and not a bug; see the `health` module.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            Error::NoSpace {
                state_dir: true,
                ..
            }
        )
    }

    /// The error with every source in its chain, for the log.
    pub fn full_chain(&self) -> String {
        let mut out = self.to_string();
        if let Error::NoSpace { detail, .. } = self {
            out = format!("{out} ({detail})");
        }
        out
    }
}

/// `what: source: source's source: ...`.
struct Chain<'a>(
    &'a str,
    Option<&'a (dyn std::error::Error + Send + Sync + 'static)>,
);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        let mut next: Option<&(dyn std::error::Error + 'static)> = match self.1 {
            Some(e) => Some(e),
            None => None,
        };
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        if matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
        {
            return Error::NoSpace {
                state_dir: true,
                detail: format!("database: {e}"),
            };
        }
        Error::internal_from("database", e)
    }
}

impl From<mitzo_sandbox::Error> for Error {
    fn from(e: mitzo_sandbox::Error) -> Error {
        match e {
            mitzo_sandbox::Error::Sandbox(m) => Error::internal(format!("sandbox: {m}")),
            mitzo_sandbox::Error::Invalid(m) => Error::Invalid(m),
            mitzo_sandbox::Error::Io { context, source } => Error::io(context, source),
            mitzo_sandbox::Error::Internal(m) => Error::internal(m),
        }
    }
}

/// Why mitzod cannot start: printed as one line, then exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("config: {0}")]
    Config(String),
    #[error("credential: {0}")]
    Credential(String),
    #[error("state dir: {0}")]
    StateDir(String),
    #[error("privileges: {0}")]
    Privileges(String),
    #[error("systemd: {0}")]
    Systemd(String),
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A routine shared with request handling failed while starting (the
    /// database, git, a file).
    #[error(transparent)]
    Other(#[from] Error),
}

impl From<rusqlite::Error> for StartupError {
    fn from(e: rusqlite::Error) -> StartupError {
        StartupError::Other(e.into())
    }
}

impl From<mitzo_sandbox::Error> for StartupError {
    fn from(e: mitzo_sandbox::Error) -> StartupError {
        match e {
            mitzo_sandbox::Error::Sandbox(m) => StartupError::Sandbox(m),
            mitzo_sandbox::Error::Invalid(m) => StartupError::Config(m),
            other => StartupError::Other(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_shows_its_whole_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Error::internal_from(
            "opening the thing",
            Outer(std::io::Error::from_raw_os_error(libc::EACCES)),
        );
        let s = e.to_string();
        assert!(s.starts_with("opening the thing: outer: "), "{s}");
        assert!(s.contains("Permission denied"), "{s}");
    }

    #[test]
    fn a_full_disk_is_no_space_not_internal() {
        let e = Error::io("writing", std::io::Error::from_raw_os_error(libc::EDQUOT));
        assert!(
            matches!(
                e,
                Error::NoSpace {
                    state_dir: false,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = Error::io("writing", std::io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(e, Error::Internal { .. }), "{e:?}");
    }
}
