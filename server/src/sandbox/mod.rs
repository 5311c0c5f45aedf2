//! Landlock confinement of agent subprocesses and of mitzod's own git commands.
//!
//! The flow: build a [`Policy`] (usually with [`agent_policy`]), turn it into a
//! [`SandboxedCommand`] (the ruleset is created in the parent, every path opened
//! there), then spawn it through `std` or `tokio`. In the child, between fork
//! and exec, only async-signal-safe calls run: `setsid`, `RLIMIT_CORE=0`,
//! subreaper, close-on-exec of inherited fds, `landlock_restrict_self`.

pub mod cli;
pub mod env;
pub mod landlock;
pub mod policy;
pub mod process;
pub mod spawn;

pub use env::{build_env, is_forbidden_env};
pub use landlock::{landlock_abi, AbiProbe, Enforcement, EnforcementReport, Status};
pub use policy::{agent_policy, system_read_exec_paths, AgentPolicyInputs, Policy, Scopes};
pub use process::{
    kill_marked_orphans, kill_orphans, set_child_subreaper, terminate_session, TerminateReport,
};
pub use spawn::SandboxedCommand;
