//! The WebSocket protocol (`/ws/chat`), both directions, as Rust types.
//!
//! Every frame the server sends is a [`ServerFrame`]: the common envelope
//! (`v`, `ts`, `sessionId`, `seq`) and one [`ServerEvent`] variant, tagged
//! by `type`. Nothing else in the server builds a frame. Every frame a
//! client may send is a [`ClientFrame`]. `server/PROTOCOL.md` says what each
//! one means; the TypeScript declarations in `server/web/src/protocol.gen.ts`
//! are generated from these types ([`typescript`]) and a test fails when the
//! checked-in file is stale.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

/// The protocol version in every envelope and in `hello`.
pub const PROTOCOL_VERSION: u32 = 2;

/// How much harm a tool call can do (see the daemon's `permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Safe,
    Standard,
    Elevated,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, TS)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Auto-allow read-only tools; ask for everything else.
    #[default]
    Ask,
    /// Also auto-allow file edits.
    Agent,
    /// Also auto-allow shell commands.
    Auto,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "ask" => Some(Mode::Ask),
            "agent" => Some(Mode::Agent),
            "auto" => Some(Mode::Auto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ask => "ask",
            Mode::Agent => "agent",
            Mode::Auto => "auto",
        }
    }

    /// The `--permission-mode` Claude Code itself runs with: always
    /// `default`, whatever mitzod's mode, so that every call Claude would not
    /// make unasked reaches mitzod's broker (audit, worktree check) instead
    /// of being accepted inside the agent (`acceptEdits` would bypass both).
    pub fn claude_permission_mode(self) -> &'static str {
        "default"
    }
}

/// A session's lifecycle state (see `sessions` for the state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// No turn runs (the agent may be alive and waiting, or not started).
    #[default]
    Idle,
    /// A turn runs.
    Running,
    /// A turn waits for the owner (a permission or a question).
    RequiresAction,
    /// Stopped by the owner, a detach timeout or a delete.
    Stopped,
    /// mitzod stopped while the session was live; the next prompt resumes it.
    Interrupted,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Idle => "idle",
            SessionState::Running => "running",
            SessionState::RequiresAction => "requires_action",
            SessionState::Stopped => "stopped",
            SessionState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<SessionState> {
        Some(match s {
            "idle" => SessionState::Idle,
            "running" => SessionState::Running,
            "requires_action" => SessionState::RequiresAction,
            "stopped" => SessionState::Stopped,
            "interrupted" => SessionState::Interrupted,
            _ => return None,
        })
    }
}

/// The owner's answer to a permission request. `once` and `always` are the
/// older names of `allow` and `allow_session` and are still accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// This call only.
    #[serde(alias = "once")]
    Allow,
    /// This call and every later call of the same tool in this session.
    #[serde(alias = "always")]
    AllowSession,
    Deny,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "allow" | "once" => Some(Decision::Allow),
            "allow_session" | "always" => Some(Decision::AllowSession),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::AllowSession => "allow_session",
            Decision::Deny => "deny",
        }
    }
}

/// How a permission or question ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    AllowSession,
    Deny,
    /// A question the owner answered.
    Answered,
    /// The agent withdrew the request (an interrupt).
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::AllowSession => "allow_session",
            Outcome::Deny => "deny",
            Outcome::Answered => "answered",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl From<Decision> for Outcome {
    fn from(d: Decision) -> Outcome {
        match d {
            Decision::Allow => Outcome::Allow,
            Decision::AllowSession => Outcome::AllowSession,
            Decision::Deny => Outcome::Deny,
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// mitzod's policy, without asking.
    Policy,
    Owner,
    /// A one-tap action of an ntfy notification (opt-in).
    Ntfy,
    /// Nobody answered in time: denied.
    Timeout,
    /// The agent withdrew it.
    Agent,
    /// The session was stopped while it waited.
    SessionEnd,
    /// The agent exited while it waited.
    AgentExit,
}

impl DecidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Policy => "policy",
            DecidedBy::Owner => "owner",
            DecidedBy::Ntfy => "ntfy",
            DecidedBy::Timeout => "timeout",
            DecidedBy::Agent => "agent",
            DecidedBy::SessionEnd => "session_end",
            DecidedBy::AgentExit => "agent_exit",
        }
    }
}

/// The kind of a content block of an assistant message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum BlockType {
    Text,
    Thinking,
    ToolUse,
    /// Anything else (redacted thinking, server tools, ...).
    Other,
}

impl BlockType {
    pub fn parse(s: &str) -> BlockType {
        match s {
            "text" => BlockType::Text,
            "thinking" => BlockType::Thinking,
            "tool_use" => BlockType::ToolUse,
            _ => BlockType::Other,
        }
    }
}

/// What a `block_delta` adds to its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum DeltaType {
    Text,
    Thinking,
    /// A piece of a tool call's input JSON (not valid JSON on its own).
    InputJson,
}

/// A session's primary worktree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Worktree {
    pub path: String,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Worktrees {
    pub primary: Worktree,
}

/// A session as lists and `session_updated` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: String,
    /// The first line of the first prompt, until the owner renames it.
    pub title: String,
    /// The summary given at creation (REST), often empty.
    pub summary: String,
    /// The repo's name in `repos` (or `repo_path`'s directory name).
    pub repo: String,
    pub state: SessionState,
    pub mode: Mode,
    /// Permissions and questions waiting for the owner.
    pub pending_approvals: u32,
    /// Milliseconds since the epoch.
    #[ts(type = "number")]
    pub last_activity: i64,
    /// Same as `lastActivity` (Mitzo's name).
    #[ts(type = "number")]
    pub last_modified: i64,
    pub branch: Option<String>,
    /// An agent process is running.
    pub is_active: bool,
    /// At least one client watches it.
    pub is_attached: bool,
    #[ts(type = "number")]
    pub num_turns: i64,
    /// Retention dropped its oldest events: the transcript starts later.
    pub history_compacted: bool,
}

/// One option of a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct QuestionOption {
    pub label: String,
    #[serde(default)]
    pub description: String,
}

/// One question of an `AskUserQuestion` call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    pub question: String,
    #[serde(default)]
    pub header: String,
    #[serde(default)]
    pub options: Vec<QuestionOption>,
    #[serde(default)]
    pub multi_select: bool,
}

/// One line of the `reconnected` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectReport {
    pub session_id: String,
    /// How many persisted frames were replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub replayed: Option<u32>,
    /// Why this session could not be watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub error: Option<String>,
}

/// Everything the server says, without the envelope. Frames with a
/// non-zero `seq` are a session's persisted events (replayed on
/// reconnect); the others (`seq` 0) are live only.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerEvent {
    // ---- connection (live, seq 0) ----
    /// First frame of every connection.
    Welcome {
        connection_id: String,
        protocol_version: u32,
    },
    /// Something went wrong; `sessionId` says which session when known.
    /// The connection stays open.
    Error {
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        signal: Option<i32>,
    },
    /// The answer to `reconnect`, after every replayed frame.
    Reconnected {
        sessions: Vec<ReconnectReport>,
    },
    /// A task on the board changed (every connection).
    TaskUpdated {
        #[ts(type = "unknown")]
        task: Value,
    },
    TaskDeleted {
        id: String,
    },
    /// A `send` without a session created one (to the sender only).
    SessionCreated {
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        client_msg_id: Option<String>,
        worktrees: Worktrees,
        title: String,
        repo: String,
    },
    /// A session's title, state, mode or pending count changed (every
    /// connection, watching or not); also sent when a watch starts.
    SessionUpdated {
        session: SessionSummary,
    },
    /// Live text of a content block (not persisted, never replayed one by
    /// one): append `text` to block `index` of message `messageId`.
    BlockDelta {
        message_id: String,
        index: u32,
        delta_type: DeltaType,
        text: String,
    },
    /// The content of a block still being streamed, so far: replaces what
    /// the client holds for that block. Sent when a watch starts in the
    /// middle of a block, before the live deltas that follow it.
    BlockSnapshot {
        message_id: String,
        index: u32,
        block_type: BlockType,
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        tool_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        tool_id: Option<String>,
    },

    // ---- session events (persisted, seq > 0) ----
    /// A prompt the owner (or a REST caller) sent.
    UserMessage {
        prompt: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        client_msg_id: Option<String>,
    },
    SessionStateChanged {
        state: SessionState,
    },
    ModeChanged {
        mode: Mode,
    },
    /// The owner renamed the session.
    TitleChanged {
        title: String,
    },
    Interrupted {},
    SessionEnd {
        reason: String,
    },
    MessageStart {
        message_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        model: Option<String>,
    },
    BlockStart {
        message_id: String,
        index: u32,
        block_type: BlockType,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        tool_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        tool_id: Option<String>,
    },
    /// A block is complete: its whole text (text, thinking) or its tool
    /// call (`toolName`, `toolId`, `input`).
    BlockEnd {
        message_id: String,
        index: u32,
        block_type: BlockType,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        text: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        tool_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        tool_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional, type = "unknown")]
        input: Option<Value>,
        /// The block was cut short (an interrupt).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        aborted: Option<bool>,
    },
    MessageEnd {
        message_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        stop_reason: Option<String>,
    },
    ToolResult {
        tool_id: String,
        /// Usually text; other JSON when the tool returned something else.
        #[ts(type = "unknown")]
        result: Value,
        is_error: bool,
    },
    /// The end of a turn.
    Result {
        subtype: String,
        is_error: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        result: Option<String>,
        #[ts(type = "number")]
        num_turns: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        cost_usd: Option<f64>,
    },
    /// A tool call waits for the owner's decision.
    PermissionRequest {
        perm_id: String,
        tool_name: String,
        /// One line for a human: "Run a command", "Edit src/main.rs", ...
        title: String,
        /// A few lines: the command and where it runs, the URL, ...
        summary: String,
        /// For file edits: a unified diff against the current file (capped).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        diff: Option<String>,
        /// The tool's raw input, as the agent sent it.
        #[ts(type = "unknown")]
        tool_input: Value,
        tier: Tier,
        /// Milliseconds since the epoch; denied after that.
        #[ts(type = "number")]
        expires_at: i64,
    },
    /// The agent asks the owner questions (answer with `question_response`).
    QuestionRequest {
        perm_id: String,
        questions: Vec<Question>,
        #[ts(type = "number")]
        expires_at: i64,
    },
    /// A permission or question is decided. `permId` is null for a call
    /// the policy denied without asking.
    PermissionResolved {
        perm_id: Option<String>,
        tool_name: String,
        decision: Outcome,
        by: DecidedBy,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        message: Option<String>,
        /// A question's answers (question text → chosen label(s)).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        answers: Option<BTreeMap<String, String>>,
    },
    /// A permission or question expired (followed by its resolution).
    PermissionTimeout {
        perm_id: String,
    },
    /// The agent (with `agent.network = "proxy"`) tries to reach a host
    /// that is not on its allow-list; the connection waits for the owner,
    /// who answers with `permission_response` (`allow`: this connection,
    /// `allow_session`: this host and port for the rest of the session,
    /// `deny`). Followed by `permission_resolved` with tool name `Network`.
    NetworkRequest {
        perm_id: String,
        host: String,
        port: u16,
        #[ts(type = "number")]
        expires_at: i64,
    },
    /// mitzod's proxy refused one of the agent's connections.
    NetworkRefused {
        host: String,
        port: u16,
        reason: String,
    },
}

impl ServerEvent {
    /// The `type` tag, for the database's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerEvent::Welcome { .. } => "welcome",
            ServerEvent::Error { .. } => "error",
            ServerEvent::Reconnected { .. } => "reconnected",
            ServerEvent::TaskUpdated { .. } => "task_updated",
            ServerEvent::TaskDeleted { .. } => "task_deleted",
            ServerEvent::SessionCreated { .. } => "session_created",
            ServerEvent::SessionUpdated { .. } => "session_updated",
            ServerEvent::BlockDelta { .. } => "block_delta",
            ServerEvent::BlockSnapshot { .. } => "block_snapshot",
            ServerEvent::UserMessage { .. } => "user_message",
            ServerEvent::SessionStateChanged { .. } => "session_state_changed",
            ServerEvent::ModeChanged { .. } => "mode_changed",
            ServerEvent::TitleChanged { .. } => "title_changed",
            ServerEvent::Interrupted {} => "interrupted",
            ServerEvent::SessionEnd { .. } => "session_end",
            ServerEvent::MessageStart { .. } => "message_start",
            ServerEvent::BlockStart { .. } => "block_start",
            ServerEvent::BlockEnd { .. } => "block_end",
            ServerEvent::MessageEnd { .. } => "message_end",
            ServerEvent::ToolResult { .. } => "tool_result",
            ServerEvent::Result { .. } => "result",
            ServerEvent::PermissionRequest { .. } => "permission_request",
            ServerEvent::QuestionRequest { .. } => "question_request",
            ServerEvent::PermissionResolved { .. } => "permission_resolved",
            ServerEvent::PermissionTimeout { .. } => "permission_timeout",
            ServerEvent::NetworkRequest { .. } => "network_request",
            ServerEvent::NetworkRefused { .. } => "network_refused",
        }
    }

    /// An error frame.
    pub fn error(error: impl Into<String>) -> ServerEvent {
        ServerEvent::Error {
            error: error.into(),
            exit_code: None,
            signal: None,
        }
    }
}

/// The envelope every server frame carries.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ServerFrame {
    /// Always [`PROTOCOL_VERSION`].
    pub v: u32,
    /// Milliseconds since the epoch, when the frame was made.
    #[ts(type = "number")]
    pub ts: i64,
    /// The session the frame belongs to; null for connection frames.
    pub session_id: Option<String>,
    /// The session event's number (1, 2, ...); 0 for live-only frames.
    #[ts(type = "number")]
    pub seq: u64,
    #[serde(flatten)]
    pub event: ServerEvent,
}

impl ServerFrame {
    pub fn new(session_id: Option<&str>, seq: u64, event: ServerEvent) -> ServerFrame {
        ServerFrame {
            v: PROTOCOL_VERSION,
            ts: now_ms(),
            session_id: session_id.map(str::to_string),
            seq,
            event,
        }
    }

    /// The frame as JSON text (a frame always serialises).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"v":2,"ts":0,"sessionId":null,"seq":0,"type":"error","error":"frame not serialisable: {e}"}}"#)
        })
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

mod client;
pub mod session_id;
mod typescript;

pub use client::*;
pub use typescript::typescript;

#[cfg(test)]
mod tests;
