//! A JSON body extractor whose every rejection is a 400 (413 when too
//! large) naming the problem, e.g. the unknown field or the bad value with
//! its path, instead of axum's 415/422.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge("request body too large".into())
            } else {
                Error::Invalid(e.body_text())
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Parse a JSON body; the error names the field path.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.is_empty() {
        return Err(Error::Invalid("a JSON body is required".into()));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Error::Invalid(format!("invalid JSON body: {}", e.inner()))
        } else {
            Error::Invalid(format!("invalid JSON body at {path}: {}", e.inner()))
        }
    })?;
    Ok(value)
}
