//! mitzod: a hardened, self-hosted server for supervising coding-agent sessions.

pub(crate) mod agent;
pub(crate) mod app;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod db;
pub mod dev;
pub mod egress;
pub mod error;
pub mod files;
pub mod git;
pub mod git_exclude;
pub(crate) mod health;
pub(crate) mod http;
pub mod logging;
pub mod memory;
pub(crate) mod ntfy;
pub(crate) mod permissions;
pub mod privileges;
pub(crate) mod program;
pub mod repo_config;
pub mod review;
pub mod secret;
pub mod sessions;
pub mod state;
pub mod systemd;
pub mod tasks;
pub(crate) mod text;
pub mod worktree;

pub use error::{Error, Result};

/// Crash points for tests (debug builds only): with
/// `MITZO_TEST_FAILPOINT=<name>` the process aborts at that point, as a
/// `kill -9` would stop it.
#[inline]
pub fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("MITZO_TEST_FAILPOINT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
