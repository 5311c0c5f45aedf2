//! The HTTP surface: one router, the browser-safety layers around it, and
//! the peer information each connection carries.

mod auth;
pub(crate) mod credential;
pub(crate) mod error;
mod files;
mod guard;
mod json;
mod meta;
mod repos;
mod review;
mod sessions;
mod tasks;
mod web;
mod ws;

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::Connected;
use axum::extract::DefaultBodyLimit;
use axum::serve::IncomingStream;
use axum::Router;

use crate::app::AppState;

pub const BODY_LIMIT: usize = 1024 * 1024;

/// Who is on the other end of a connection, and where it arrived.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's IP, or `unix` for the local socket: the rate-limit key.
    pub remote: String,
    /// Our address the connection arrived on (a valid `Host` for it).
    pub local_ip: Option<IpAddr>,
    pub unix: bool,
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        let remote: SocketAddr = *stream.remote_addr();
        Peer {
            remote: remote.ip().to_string(),
            local_ip: stream.io().local_addr().ok().map(|a| a.ip()),
            unix: false,
        }
    }
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(_stream: IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        Peer {
            remote: "unix".into(),
            local_ip: None,
            unix: true,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(meta::routes())
        .merge(auth::routes())
        .merge(files::routes())
        .merge(tasks::routes())
        .merge(repos::routes())
        .merge(review::routes())
        .merge(sessions::routes())
        .merge(ws::routes())
        .merge(web::routes())
        .fallback(meta::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::browser_safety,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::reject_query_credentials,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::response_hygiene,
        ))
        .with_state(state)
}
