//! Agent sessions: each one a worktree, an agent process (when running),
//! an event stream that outlives its clients, and a permission broker that
//! decides every tool call by policy or by the owner.
//!
//! Modules, one job each:
//!
//! - [`registry`]: the sessions in memory: create, get (loading from the
//!   database), rename, attach, detach, delete.
//! - [`repos`]: the repos sessions run in, and the choice of one.
//! - [`listing`]: a session as a list shows it, and `session_updated`.
//! - [`lifecycle`]: send, interrupt, change mode, stop, clean up after an
//!   agent's exit, stop every agent at shutdown.
//! - [`spawn`]: starting an agent (home, tmp, sandbox policy, environment,
//!   network, process).
//! - [`drive`]: a running agent's output, line by line, into events and
//!   decisions, until it exits.
//! - [`translate`]: agent messages → events, pure (no I/O).
//! - [`broker`]: control requests, the `PreToolUse` hook, policy, the
//!   audit log.
//! - [`questions`]: the agent's questions (`AskUserQuestion`) for the owner.
//! - [`decisions`]: owner, one-tap and timeout decisions, timers, ntfy,
//!   approval capabilities.
//! - [`approval`]: what a person reads to decide (title, summary, diff).
//! - [`network`]: the agent's egress proxy and its network requests.
//! - [`replay`]: subscribe with no gap.
//! - [`supervisor`]: detach TTL, idle exit, heartbeat.
//! - [`events`]: the ring, the broadcast, open blocks.
//! - [`writer`]: the ordered, back-pressured SQLite writer.
//! - [`store`]: SQL; [`retention`]: compaction and age/size limits.
//!
//! No file here grows past 400 lines (`tests/check-module-size`); tests
//! longer than their module live beside it (`*_tests.rs`).
//!
//! # State machine ([`SessionState`])
//!
//! Every change goes through [`Session::set_state`] (a persisted
//! `session_state_changed`); nothing else writes the state.
//!
//! ```text
//!  from                      on                                  to               in
//!  idle, stopped,            send (an agent is started, or       running          lifecycle
//!   interrupted               resumed with --resume, if none)
//!  running                   the agent's send fails (it ended)   idle             lifecycle
//!  running                   a call, question or host waits      requires_action  broker, questions,
//!                             for the owner                                        network
//!  requires_action           the last pending one is decided,    running          decisions, broker
//!                             timed out or cancelled by the agent
//!  running, requires_action  the turn's result                   idle             drive
//!  any with an agent         the agent exits by itself           idle             lifecycle
//!                             (pending ones are withdrawn)
//!  any                       stop, detach TTL, delete            stopped          lifecycle
//!                             (pending ones are withdrawn)
//!  idle, running,            mitzod shuts down (its agent is     interrupted      lifecycle,
//!   requires_action           stopped), or died: the row is                        store
//!                             marked at the next start
//! ```
//!
//! # Locks, in the order they may be taken
//!
//! 1. `Session::lifecycle` (async): held while an agent is started
//!    ([`lifecycle`]'s send, with [`spawn`]), stopped, or cleaned up after
//!    its exit: one agent per session, and no prompt lands in a dying one.
//!    Never taken while holding 2–4.
//! 2. `SessionManager::sessions` (the map, [`registry`]): held only to
//!    look up, insert or remove; may take 3 briefly (eviction reads a
//!    session's state).
//! 3. `Session::inner`: the row, the agent handle, pending permissions,
//!    watcher count. Never held across an `.await`.
//! 4. `EventLog`'s ring (inside [`events`]): a leaf; publishing never
//!    takes another lock. `resolved` (recently decided ids) is also a leaf.

pub(crate) mod approval;
pub(crate) mod broker;
pub(crate) mod decisions;
pub(crate) mod drive;
pub(crate) mod events;
pub(crate) mod lifecycle;
pub(crate) mod listing;
pub(crate) mod network;
pub(crate) mod questions;
pub(crate) mod registry;
pub(crate) mod replay;
pub(crate) mod repos;
pub mod retention;
pub(crate) mod spawn;
pub mod store;
pub(crate) mod supervisor;
pub(crate) mod translate;
pub(crate) mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::agent::AgentProcess;
use crate::auth::session_tokens::SessionTokens;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo_config::RepoConfigs;
use crate::secret::Secret;
use events::{now_ms, EventLog};
pub use mitzo_protocol::{DecidedBy, Decision, Mode, SessionState};
pub use registry::SessionManager;
use store::SessionRow;

pub const MAX_PROMPT: usize = 256 * 1024;
/// Longest title, in characters.
pub const MAX_TITLE: usize = 120;

/// What a pending request waits for.
#[derive(Debug, Clone)]
pub(crate) enum PendingKind {
    Permission,
    Question,
    /// A connection to a host not on the allow-list (`network = "proxy"`).
    Network,
}

pub(crate) struct Pending {
    pub request_id: String,
    pub tool: String,
    pub input: serde_json::Value,
    pub kind: PendingKind,
    /// What the audit log says about this call.
    pub audit_summary: String,
}

pub(crate) struct Inner {
    pub row: SessionRow,
    pub agent: Option<Arc<AgentProcess>>,
    pub generation: u64,
    pub always: HashSet<String>,
    pub pending: HashMap<String, Pending>,
    pub watchers: usize,
    pub detached_since: Option<Instant>,
    /// The network side of the running agent (see [`crate::egress`]).
    pub net: network::SessionNet,
}

pub struct Session {
    pub id: String,
    pub repo: PathBuf,
    pub cwd: PathBuf,
    pub log: EventLog,
    pub(crate) inner: Mutex<Inner>,
    /// See the lock order above.
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
}

impl Session {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn row(&self) -> SessionRow {
        self.lock().row.clone()
    }

    pub fn is_active(&self) -> bool {
        self.lock().agent.is_some()
    }

    pub fn is_attached(&self) -> bool {
        self.lock().watchers > 0
    }

    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// Change the state: a persisted `session_state_changed`, the row
    /// saved behind it. False when it already was `state`.
    pub(crate) fn set_state(&self, state: SessionState) -> bool {
        let row = {
            let mut inner = self.lock();
            if inner.row.state == state {
                return false;
            }
            inner.row.state = state;
            inner.row.last_modified = now_ms();
            inner.row.clone()
        };
        self.log
            .publish(mitzo_protocol::ServerEvent::SessionStateChanged { state });
        self.log.save_row(row);
        true
    }
}

/// What a new session asks for.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub source: String,
    pub summary: Option<String>,
    pub mode: Mode,
    pub model: Option<String>,
    pub isolation: Option<bool>,
    /// Started with a prompt and no client (REST `initialPrompt`).
    pub headless: bool,
    /// A name from `repos`; `None`: the default repo.
    pub repo: Option<String>,
    /// The first prompt, when known at creation: the title comes from it.
    pub first_prompt: Option<String>,
}

/// Everything the manager needs from the rest of the server.
pub struct Deps {
    pub config: Arc<Config>,
    pub state_dir: PathBuf,
    pub db: Db,
    pub session_tokens: Arc<SessionTokens>,
    pub repo_configs: Arc<RepoConfigs>,
    /// Files agents must never read (secrets, the config file).
    pub hidden: Vec<PathBuf>,
    /// Where an agent reaches mitzod (`MITZO_URL`) and its port.
    pub own_url: String,
    pub own_port: Option<u16>,
    /// Key for approval capabilities (derived from the JWT secret).
    pub approval_key: Secret,
    pub ntfy: Option<crate::ntfy::Ntfy>,
}

/// A title from a prompt: its first non-empty line, trimmed, capped.
pub fn title_from_prompt(prompt: &str) -> String {
    let line = prompt
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    cap_title(line)
}

fn cap_title(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.chars().count() <= MAX_TITLE {
        return clean.to_string();
    }
    let mut t: String = clean.chars().take(MAX_TITLE - 1).collect();
    t.push('…');
    t
}

/// An owner-given title: 1..=MAX_TITLE characters after trimming.
pub fn validate_title(title: &str) -> Result<String> {
    let t = title.trim();
    let bad = || {
        Error::Invalid(format!(
            "title must be 1..={MAX_TITLE} characters without control characters"
        ))
    };
    if t.is_empty() {
        return Err(bad());
    }
    crate::text::check("title", t, MAX_TITLE, crate::text::Controls::None).map_err(|_| bad())?;
    Ok(t.to_string())
}

/// Claude Code's session ids are UUIDs: hex digits and dashes.
pub(crate) fn is_agent_session_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && !id.starts_with('-')
}

pub(crate) fn validate_text(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    if value.len() < min || value.len() > max {
        return Err(Error::Invalid(format!(
            "{field} must be {min}..={max} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(Error::Invalid(format!("{field} contains a NUL byte")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_line_and_are_capped() {
        assert_eq!(
            title_from_prompt("\n  Fix the build  \nand more"),
            "Fix the build"
        );
        let long = "x".repeat(500);
        let t = title_from_prompt(&long);
        assert_eq!(t.chars().count(), MAX_TITLE);
        assert!(t.ends_with('…'));
        assert!(validate_title("  ").is_err());
        assert!(validate_title("a\u{7}b").is_err());
        assert_eq!(validate_title(" ok ").unwrap(), "ok");
    }
}
