//! mitzod: a hardened, self-hosted server for supervising coding-agent sessions.

pub mod config;
pub mod error;
pub mod git;
pub mod sandbox;
pub mod worktree;

pub use error::{Error, Result};
