//! systemd integration: inherited listening sockets and sd_notify.
//!
//! Everything here is silent without systemd: no `LISTEN_FDS` means we bind
//! ourselves, no `NOTIFY_SOCKET` means notifications go nowhere.
#![allow(unsafe_code)] // fds inherited from systemd (socket activation)

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

use crate::error::{Error, StartupError};

// Everything here runs while mitzod starts.
type Result<T, E = StartupError> = std::result::Result<T, E>;

/// A listening socket handed over by systemd (or bound by us).
#[derive(Debug)]
pub enum Listener {
    Tcp {
        name: String,
        listener: std::net::TcpListener,
    },
    Unix {
        name: String,
        listener: std::os::unix::net::UnixListener,
    },
}

impl Listener {
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp { name, listener } => match listener.local_addr() {
                Ok(a) => format!("{name}={a}"),
                Err(_) => format!("{name}=tcp"),
            },
            Listener::Unix { name, listener } => match listener.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("{name}=unix:{}", p.display()),
                    None => format!("{name}=unix"),
                },
                Err(_) => format!("{name}=unix"),
            },
        }
    }
}

/// Take the sockets systemd passed (`LISTEN_FDS`, `LISTEN_PID`,
/// `LISTEN_FDNAMES`). Must run before any thread exists: it unsets the
/// variables so no child inherits them.
pub fn take_listen_fds() -> Result<Vec<Listener>> {
    let fds = sd_notify::listen_fds_with_names(true)
        .map_err(|e| StartupError::Systemd(format!("LISTEN_FDS: {e}")))?;
    let mut out = Vec::new();
    for (fd, name) in fds {
        out.push(adopt(fd, name)?);
    }
    Ok(out)
}

fn adopt(fd: RawFd, name: String) -> Result<Listener> {
    // SAFETY: systemd hands these fds to this process alone, each exactly once
    // (sd_listen_fds semantics), and nothing else in the process owns them.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let bad = |what: &str| StartupError::Systemd(format!("inherited fd {fd} ({name}): {what}"));
    let listening =
        getsockopt(&owned, sockopt::AcceptConn).map_err(|e| bad(&format!("not a socket: {e}")))?;
    if !listening {
        return Err(bad("not a listening socket"));
    }
    let ty = getsockopt(&owned, sockopt::SockType).map_err(|e| bad(&e.to_string()))?;
    if ty != SockType::Stream {
        return Err(bad(
            "not a stream socket (only TCP and Unix stream are served)",
        ));
    }
    let addr: SockaddrStorage =
        getsockname(std::os::fd::AsRawFd::as_raw_fd(&owned)).map_err(|e| bad(&e.to_string()))?;
    let name = if name.is_empty() || name == "unknown" {
        "http".to_string()
    } else {
        name.clone()
    };
    // systemd passes blocking sockets; tokio needs non-blocking ones.
    match addr.family() {
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
            let listener = std::net::TcpListener::from(owned);
            listener
                .set_nonblocking(true)
                .map_err(|e| bad(&e.to_string()))?;
            set_nodelay(&listener).map_err(|e| bad(&e))?;
            Ok(Listener::Tcp { name, listener })
        }
        Some(AddressFamily::Unix) => {
            let listener = std::os::unix::net::UnixListener::from(owned);
            listener
                .set_nonblocking(true)
                .map_err(|e| bad(&e.to_string()))?;
            Ok(Listener::Unix { name, listener })
        }
        other => Err(bad(&format!("unsupported address family {other:?}"))),
    }
}

/// TCP_NODELAY on a listening socket; Linux copies it to every accepted
/// one. Small WebSocket frames must not wait for Nagle and delayed ACKs.
fn set_nodelay(listener: &std::net::TcpListener) -> std::result::Result<(), String> {
    nix::sys::socket::setsockopt(listener, sockopt::TcpNoDelay, &true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))
}

/// Bind the configured addresses (only when systemd passed none).
pub fn bind(addrs: &[crate::config::ListenAddr]) -> Result<Vec<Listener>> {
    use crate::config::ListenAddr;
    let mut out = Vec::new();
    for addr in addrs {
        match addr {
            ListenAddr::Tcp(a) => {
                let listener = std::net::TcpListener::bind(a)
                    .map_err(|e| Error::io(format!("listen: cannot bind {a}"), e))?;
                listener
                    .set_nonblocking(true)
                    .map_err(|e| Error::io("listen: set_nonblocking", e))?;
                set_nodelay(&listener).map_err(StartupError::Systemd)?;
                out.push(Listener::Tcp {
                    name: "http".into(),
                    listener,
                });
            }
            ListenAddr::Unix(path) => {
                // A stale socket file from an earlier run would make bind fail.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
                    Error::io(format!("listen: cannot bind unix:{}", path.display()), e)
                })?;
                listener
                    .set_nonblocking(true)
                    .map_err(|e| Error::io("listen: set_nonblocking", e))?;
                out.push(Listener::Unix {
                    name: "unix".into(),
                    listener,
                });
            }
        }
    }
    Ok(out)
}

/// Send a state to the service manager; silent without `NOTIFY_SOCKET`.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

pub fn notify_ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

pub fn notify_status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

pub fn notify_watchdog() {
    notify(&[sd_notify::NotifyState::Watchdog]);
}

pub fn notify_stopping(status: &str) {
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Half of `WATCHDOG_USEC`, when the watchdog is on for this process
/// (`WATCHDOG_PID` names it, as systemd sets it).
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    // `false`: leave the environment alone (other threads may read it).
    let on = sd_notify::watchdog_enabled(false, &mut usec);
    (on && usec > 0).then(|| Duration::from_micros(usec / 2))
}
