//! How sessions look to a list: the summary of one session, and the
//! `session_updated` frames that tell every connection when it changed.

use tokio::sync::broadcast;

use super::events::Frame;
use super::store::SessionRow;
use super::{Session, SessionManager};
use mitzo_protocol::{ServerEvent, ServerFrame, SessionSummary};

impl SessionManager {
    /// A session as lists show it. `live`: the in-memory session, fresher
    /// than its database row.
    pub fn summary_of(row: &SessionRow, live: Option<&Session>) -> SessionSummary {
        // Retention sets it in the database only; a loaded row may predate it.
        let compacted = row.history_compacted;
        let (row, active, attached, pending) = match live {
            Some(s) => {
                let inner = s.lock();
                (
                    inner.row.clone(),
                    inner.agent.is_some(),
                    inner.watchers > 0,
                    inner.pending.len(),
                )
            }
            None => (row.clone(), false, false, 0),
        };
        let repo = if row.repo_name.is_empty() {
            std::path::Path::new(&row.repo)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            row.repo_name.clone()
        };
        SessionSummary {
            id: row.id.clone(),
            title: row.title.clone(),
            summary: row.summary.clone(),
            repo,
            state: row.state,
            mode: row.mode,
            pending_approvals: pending as u32,
            last_activity: row.last_modified,
            last_modified: row.last_modified,
            branch: row.branch.clone(),
            is_active: active,
            is_attached: attached,
            num_turns: row.num_turns,
            history_compacted: compacted || row.history_compacted,
        }
    }

    pub fn summary(&self, session: &Session) -> SessionSummary {
        Self::summary_of(&session.row(), Some(session))
    }

    /// Tell every connection how the session looks now.
    pub fn changed(&self, session: &Session) {
        let event = ServerEvent::SessionUpdated {
            session: self.summary(session),
        };
        let json = ServerFrame::new(Some(&session.id), 0, event).to_json();
        let _ = self.updates.send(Frame {
            seq: 0,
            json: json.into(),
        });
    }

    /// `session_updated` frames for one connection.
    pub fn updates(&self) -> broadcast::Receiver<Frame> {
        self.updates.subscribe()
    }
}
