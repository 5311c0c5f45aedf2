//! The agent's questions (`AskUserQuestion`): put to the owner as a
//! `question_request`, with the same timeout and ntfy notice as a
//! permission; the answers are given in [`super::decisions`].

use std::sync::Arc;

use serde_json::Value;

use super::approval;
use super::broker::{ASK_TOOL, MAX_PENDING};
use super::{Pending, PendingKind, Session, SessionManager};
use crate::agent::protocol;
use mitzo_protocol::{DecidedBy, Question, ServerEvent};

impl SessionManager {
    /// An `AskUserQuestion` call: the owner answers (or it times out).
    pub(crate) async fn ask_questions(
        self: &Arc<Self>,
        session: &Arc<Session>,
        request_id: &str,
        input: &Value,
    ) {
        let Some(agent) = session.lock().agent.clone() else {
            return;
        };
        let questions: Option<Vec<Question>> = input
            .get("questions")
            .cloned()
            .and_then(|q| serde_json::from_value(q).ok())
            .filter(|q: &Vec<Question>| !q.is_empty() && q.len() <= 16);
        let audit_line = match &questions {
            Some(q) => approval::Approval {
                title: "Ask the owner".into(),
                summary: approval::bounded_summary(
                    &q.iter()
                        .map(|q| q.question.as_str())
                        .collect::<Vec<_>>()
                        .join(" / "),
                ),
                diff: None,
            }
            .audit_line(),
            None => "Ask the owner: malformed questions".into(),
        };
        let Some(questions) = questions.filter(|_| session.pending_count() < MAX_PENDING) else {
            self.audit(
                &session.id,
                ASK_TOOL,
                &audit_line,
                "deny",
                DecidedBy::Policy,
            )
            .await;
            agent.send(&protocol::control_success(
                request_id,
                protocol::deny("mitzod could not put these questions to the owner"),
            ));
            return;
        };
        let (perm_id, expires_at, timeout) = self.add_pending(
            session,
            Pending {
                request_id: request_id.to_string(),
                tool: ASK_TOOL.to_string(),
                input: input.clone(),
                kind: PendingKind::Question,
                audit_summary: audit_line,
            },
        );
        session.log.publish(ServerEvent::QuestionRequest {
            perm_id: perm_id.clone(),
            questions,
            expires_at,
        });
        self.waiting(session, perm_id, timeout);
    }
}
