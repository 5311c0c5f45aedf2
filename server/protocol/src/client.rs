//! What a client may send, and the REST bodies the web app uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{Decision, Mode, SessionSummary};

/// A session and the seq the client saw last, for `reconnect`.
#[derive(Debug, Clone, PartialEq, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconnectEntry {
    pub session_id: String,
    #[ts(type = "number")]
    pub last_seq: u64,
}

/// Everything a client may send. Unknown types and fields are refused
/// with an `error` frame; the connection stays.
#[derive(Debug, Clone, PartialEq, Deserialize, TS)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
#[serde(deny_unknown_fields)]
pub enum ClientFrame {
    Hello {
        protocol_version: u32,
    },
    /// A prompt. Without `sessionId` a new session is created (in `repo`,
    /// by name, when the server knows several).
    Send {
        #[ts(optional)]
        session_id: Option<String>,
        prompt: String,
        #[ts(optional)]
        client_msg_id: Option<String>,
        #[ts(optional)]
        mode: Option<Mode>,
        #[ts(optional)]
        repo: Option<String>,
    },
    Interrupt {
        session_id: String,
        #[ts(optional)]
        prompt: Option<String>,
    },
    Stop {
        session_id: String,
    },
    PermissionResponse {
        session_id: String,
        perm_id: String,
        decision: Decision,
        /// For a deny: the reason the agent is told.
        #[ts(optional)]
        message: Option<String>,
    },
    /// Answers to a `question_request`: question text → chosen label(s)
    /// (several labels of a multi-select question joined by ", ").
    QuestionResponse {
        session_id: String,
        perm_id: String,
        answers: BTreeMap<String, String>,
    },
    SetMode {
        session_id: String,
        mode: Mode,
    },
    Rename {
        session_id: String,
        title: String,
    },
    Watch {
        session_id: String,
    },
    Unwatch {
        session_id: String,
    },
    Reconnect {
        sessions: Vec<ReconnectEntry>,
    },
}

impl ClientFrame {
    /// The session a frame is about, for error frames.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            ClientFrame::Send { session_id, .. } => session_id.as_deref(),
            ClientFrame::Interrupt { session_id, .. }
            | ClientFrame::Stop { session_id }
            | ClientFrame::PermissionResponse { session_id, .. }
            | ClientFrame::QuestionResponse { session_id, .. }
            | ClientFrame::SetMode { session_id, .. }
            | ClientFrame::Rename { session_id, .. }
            | ClientFrame::Watch { session_id }
            | ClientFrame::Unwatch { session_id } => Some(session_id),
            ClientFrame::Hello { .. } | ClientFrame::Reconnect { .. } => None,
        }
    }
}

// ---- REST bodies the web app uses (documented in PROTOCOL.md) ----

/// `GET /api/sessions`.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
    pub has_more: bool,
}

/// `PATCH /api/sessions/:id`.
#[derive(Debug, Clone, Deserialize, TS)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPatch {
    pub title: String,
}

/// One repository `GET /api/repos` lists.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct RepoInfo {
    pub name: String,
    pub path: String,
    /// Used when a new session names no repo.
    pub default: bool,
}

/// `GET /api/sessions/:id/events`: frames oldest first.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    #[ts(type = "Array<ServerFrame>")]
    pub events: Vec<StoredFrame>,
    #[ts(type = "number")]
    pub last_seq: u64,
    /// With `before`: older events exist; with `after`: newer ones do
    /// (beyond `limit`).
    pub has_more: bool,
}

/// A persisted [`crate::ServerFrame`] as it was stored: the server's own JSON,
/// sent on unparsed (a page of history is not decoded and encoded again).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct StoredFrame(Box<serde_json::value::RawValue>);

impl StoredFrame {
    /// A stored frame's text; `None` when it is not JSON.
    pub fn new(json: String) -> Option<StoredFrame> {
        serde_json::value::RawValue::from_string(json)
            .ok()
            .map(StoredFrame)
    }

    pub fn json(&self) -> &str {
        self.0.get()
    }
}
