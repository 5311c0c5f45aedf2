//! The agent subprocess: Claude Code's stream-json control protocol on its
//! stdin/stdout, spawned only through the sandbox. Knows nothing of
//! sessions; it turns lines into [`protocol::Incoming`] and back.

pub mod launch;
pub mod process;
pub mod protocol;

pub use process::{AgentExit, AgentNetwork, AgentProcess, SpawnSpec};
pub use protocol::Incoming;
