//! The crate's one error type, and its one mapping to HTTP.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Start-up: printed as one line, then exit non-zero.
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
    #[error("worktree: {0}")]
    Worktree(String),
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    // Request errors: each maps to one status.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many requests; retry in {}s", .retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Internal(String),
    /// A dependency of the request is missing (no agent binary, no
    /// Landlock): the caller is told why, it is not a server fault.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// SQLITE_FULL: the state directory's disk (or quota) is full. Not the
    /// caller's fault, and not a bug; see [`crate::health`].
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            Error::Database(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DiskFull
        )
    }

    /// ENOSPC/EDQUOT from a file write (a repo's disk, not the database).
    fn is_no_space(&self) -> bool {
        matches!(
            self,
            Error::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        )
    }

    pub fn status(&self) -> StatusCode {
        if self.is_disk_full() || self.is_no_space() {
            return StatusCode::INSUFFICIENT_STORAGE;
        }
        match self {
            Error::BadRequest(_) | Error::Config(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Worktree(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Credential(_)
            | Error::StateDir(_)
            | Error::Privileges(_)
            | Error::Systemd(_)
            | Error::Sandbox(_)
            | Error::Database(_)
            | Error::Io { .. }
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<mitzo_sandbox::Error> for Error {
    fn from(e: mitzo_sandbox::Error) -> Error {
        match e {
            mitzo_sandbox::Error::Sandbox(m) => Error::Sandbox(m),
            // A malformed size in the config (`session.memory_max`, ...).
            mitzo_sandbox::Error::Invalid(m) => Error::Config(m),
            mitzo_sandbox::Error::Io { context, source } => Error::Io { context, source },
            mitzo_sandbox::Error::Internal(m) => Error::Internal(m),
        }
    }
}

/// Server-side failures are logged in full and answered with a generic
/// message, so no path of the state dir or other detail leaks to a caller.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if self.is_disk_full() {
            // Logged once when the disk fills (see `crate::health`), not here.
            crate::health::DISK_FULL.to_string()
        } else if self.is_no_space() {
            tracing::error!(error = %self, "request failed");
            "no space left on the device".to_string()
        } else if status.is_server_error() && !matches!(self, Error::Unavailable(_)) {
            tracing::error!(error = %self, "request failed");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        let mut response = json_error(status, &message);
        if let Error::RateLimited { retry_after } = self {
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> Error {
        Error::Database(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    async fn body_of(r: Response) -> serde_json::Value {
        let b = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn a_full_disk_is_507_with_its_reason_other_database_errors_stay_500() {
        let full = sqlite(rusqlite::ffi::SQLITE_FULL);
        assert!(full.is_disk_full());
        let r = full.into_response();
        assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(
            body_of(r).await["error"],
            "the state directory's disk is full"
        );

        let busy = sqlite(rusqlite::ffi::SQLITE_BUSY);
        assert!(!busy.is_disk_full());
        let r = busy.into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_of(r).await["error"], "internal error");

        let enospc = Error::io(
            "writing a file",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(!enospc.is_disk_full(), "a repo write is not the state dir");
        let r = enospc.into_response();
        assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(body_of(r).await["error"], "no space left on the device");
    }
}
