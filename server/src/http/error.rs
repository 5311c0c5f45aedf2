//! The one mapping from the daemon's [`Error`] to an HTTP answer: a status
//! and `{"error": "..."}`. Internal faults are logged in full (with their
//! source chain) and answered with a generic message, so no path of the
//! state dir or other detail leaks to a caller.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            // Logged once when the disk fills (see `crate::health`), not here.
            Error::NoSpace {
                state_dir: true, ..
            } => self.to_string(),
            Error::NoSpace { .. } => {
                tracing::error!(error = %self.full_chain(), "request failed");
                self.to_string()
            }
            Error::Internal { .. } => {
                tracing::error!(error = %self.full_chain(), "request failed");
                "internal error".to_string()
            }
            _ => self.to_string(),
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
        Error::from(rusqlite::Error::SqliteFailure(
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

    #[test]
    fn a_missing_git_binary_is_unavailable_with_its_reason() {
        let missing = std::path::Path::new("/nonexistent/bin/git");
        let Err(e) = crate::git::Git::with_binary(missing, mitzo_sandbox::Enforcement::Required)
        else {
            panic!("a git binary that does not exist was accepted");
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{e}");
        assert!(e.to_string().contains("/nonexistent/bin/git"), "{e}");
    }

    #[tokio::test]
    async fn an_internal_error_is_never_shown() {
        let e = Error::internal_from(
            "reading /var/lib/mitzod/secret",
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_of(r).await["error"], "internal error");
    }
}
