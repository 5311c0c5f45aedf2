//! Landlock and seccomp confinement of agent subprocesses and of mitzod's
//! own git commands, and the containment of each agent's process tree.
//!
//! The flow: build a [`Policy`] (usually with [`agent_policy`]), turn it into a
//! [`SandboxedCommand`] (the ruleset is created in the parent, every path opened
//! there), then spawn it through `std` or `tokio`. In the child, between fork
//! and exec, only async-signal-safe calls run: `setsid`, `RLIMIT_CORE=0`,
//! subreaper, close-on-exec of inherited fds, `landlock_restrict_self`, and
//! the seccomp filter compiled in the parent ([`seccomp`]). An agent is
//! also `contained`: it runs under a per-session reaper ([`reaper`]) and,
//! where one can be made, in a cgroup of its own ([`cgroup`]). A command may
//! also get a network of its own ([`netns`]) whose only way out is mitzod's
//! allow-listing proxy (in the daemon), reached through the reaper's forwarder.
//!
//! Nothing here depends on the daemon: policy inputs are plain values and
//! errors are this crate's own [`Error`].

pub mod cgroup;
pub mod cli;
pub mod env;
pub mod error;
pub mod landlock;
pub mod netns;
pub mod policy;
pub mod process;
pub mod reaper;
pub mod seccomp;
pub mod spawn;

pub use env::{build_env, is_forbidden_env};
pub use error::{Error, Result};
pub use landlock::{landlock_abi, AbiProbe, Enforcement, EnforcementReport, Status};
pub use policy::{
    agent_policy, system_read_exec_paths, AgentGrants, AgentPolicyInputs, Policy, Scopes,
};
pub use process::{kill_marked_orphans, set_child_subreaper, terminate_session, TerminateReport};
pub use spawn::{configure_containment, ContainmentConfig, SandboxedCommand, SessionGuard};
