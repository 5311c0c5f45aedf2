//! Decisions on pending permissions and questions: by the owner (bound to
//! the session that asked), by an ntfy one-tap capability (opt-in), or by
//! the timeout; each used once, and told to the agent, the watchers and
//! the audit log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{Pending, PendingKind, Session, SessionManager};
use crate::agent::protocol;
use crate::error::{Error, Result};
use mitzo_protocol::{DecidedBy, Decision, Outcome, ServerEvent, SessionState};

const MAX_ANSWER: usize = 4000;

fn gone() -> Error {
    Error::Gone("this permission was already decided or has expired".into())
}

impl SessionManager {
    /// ntfy after the delay, deny at the timeout: for one pending request.
    pub(crate) async fn pending_timers(
        self: Arc<Self>,
        session: Arc<Session>,
        perm_id: String,
        timeout: Duration,
    ) {
        if let Some(ntfy) = self.deps.ntfy.clone() {
            let delay = ntfy.delay.min(timeout);
            tokio::time::sleep(delay).await;
            let pending = session.lock().pending.get(&perm_id).map(|p| {
                (
                    p.tool.clone(),
                    super::approval::notice_line(&p.audit_summary),
                    matches!(p.kind, PendingKind::Question),
                )
            });
            if let Some((tool, summary, question)) = pending {
                let cap = (!question && ntfy.one_tap_enabled())
                    .then(|| self.approval_capability(&perm_id));
                let sid = session.id.clone();
                let p = perm_id.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let note = crate::ntfy::Notice {
                        session_id: &sid,
                        perm_id: &p,
                        tool: &tool,
                        summary: &summary,
                        question,
                    };
                    ntfy.notify(&note, cap.as_deref())
                })
                .await;
                match result {
                    Ok(Ok(())) => tracing::info!(session = %session.id, "approval sent to ntfy"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "ntfy notification failed"),
                    Err(e) => tracing::warn!(error = %e, "ntfy task failed"),
                }
            }
            tokio::time::sleep(timeout.saturating_sub(delay)).await;
        } else {
            tokio::time::sleep(timeout).await;
        }
        let expired = session.lock().pending.contains_key(&perm_id);
        if expired {
            session.log.publish(ServerEvent::PermissionTimeout {
                perm_id: perm_id.clone(),
            });
            let _ = self
                .resolve(&session, &perm_id, Decision::Deny, DecidedBy::Timeout, None)
                .await;
        }
    }

    /// The capability an ntfy one-tap action carries for one permission.
    pub fn approval_capability(&self, perm_id: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(self.deps.approval_key.expose()) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(b"mitzo-approval-v1:");
        mac.update(perm_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    pub(crate) fn remember_resolved(&self, perm_id: &str) {
        let mut r = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        r.push_back(perm_id.to_string());
        while r.len() > 4096 {
            r.pop_front();
        }
    }

    fn was_resolved(&self, perm_id: &str) -> bool {
        self.resolved
            .lock()
            .map(|r| r.iter().any(|p| p == perm_id))
            .unwrap_or(false)
    }

    /// The session holding a pending permission: 404 unknown, 410 decided.
    pub fn find_pending(&self, perm_id: &str) -> Result<Arc<Session>> {
        if let Some(s) = self
            .live()
            .into_iter()
            .find(|s| s.lock().pending.contains_key(perm_id))
        {
            return Ok(s);
        }
        if self.was_resolved(perm_id) {
            return Err(gone());
        }
        Err(Error::NotFound("no such permission".into()))
    }

    /// The holder of `perm_id`, which must be `session_id`: a decision
    /// for another session's permission is refused.
    fn holder_for(&self, session_id: &str, perm_id: &str) -> Result<Arc<Session>> {
        let holder = self.find_pending(perm_id)?;
        if holder.id != session_id {
            return Err(Error::Forbidden(
                "that permission belongs to another session".into(),
            ));
        }
        Ok(holder)
    }

    /// The owner's decision on a permission of `session_id`.
    pub async fn decide_as_owner(
        &self,
        session_id: &str,
        perm_id: &str,
        decision: Decision,
        message: Option<&str>,
    ) -> Result<()> {
        let holder = self.holder_for(session_id, perm_id)?;
        self.resolve(&holder, perm_id, decision, DecidedBy::Owner, message)
            .await
    }

    /// The owner's answers to a question of `session_id`.
    pub async fn answer_as_owner(
        &self,
        session_id: &str,
        perm_id: &str,
        answers: BTreeMap<String, String>,
    ) -> Result<()> {
        let holder = self.holder_for(session_id, perm_id)?;
        self.answer(&holder, perm_id, answers).await
    }

    /// An ntfy one-tap action: the capability is the only credential, good
    /// for one decision on one permission, and only when one-tap is on.
    pub async fn decide_with_capability(
        &self,
        perm_id: &str,
        presented: &str,
        decision: Decision,
    ) -> Result<()> {
        if !self.deps.ntfy.as_ref().is_some_and(|n| n.one_tap_enabled()) {
            return Err(Error::Forbidden(
                "one-tap approvals are off; decide in the web app".into(),
            ));
        }
        if decision == Decision::AllowSession {
            return Err(Error::Invalid(
                "a notification may allow once or deny, not for the whole session".into(),
            ));
        }
        let session = self.find_pending(perm_id)?;
        let expected = crate::secret::Secret::new(self.approval_capability(perm_id));
        if presented.is_empty() || !expected.matches(presented.as_bytes()) {
            return Err(Error::Forbidden("bad approval capability".into()));
        }
        if matches!(
            session.lock().pending.get(perm_id).map(|p| &p.kind),
            Some(PendingKind::Question)
        ) {
            return Err(Error::Invalid(
                "a question is answered in the web app".into(),
            ));
        }
        self.resolve(&session, perm_id, decision, DecidedBy::Ntfy, None)
            .await
    }

    /// Take a pending request out of `session` (single use), if it is of
    /// a kind this answer may decide.
    fn take_pending(
        &self,
        session: &Session,
        perm_id: &str,
        permission_ok: bool,
        question_ok: bool,
    ) -> Result<Pending> {
        let mut inner = session.lock();
        let kind = match inner.pending.get(perm_id) {
            Some(p) => p.kind.clone(),
            None => {
                drop(inner);
                return Err(if self.was_resolved(perm_id) {
                    gone()
                } else {
                    Error::NotFound("no such permission in this session".into())
                });
            }
        };
        match kind {
            PendingKind::Question if !question_ok => Err(Error::Invalid(
                "this is a question: answer it with question_response (or deny it)".into(),
            )),
            PendingKind::Permission if !permission_ok => Err(Error::Invalid(
                "this is a permission: decide it with permission_response".into(),
            )),
            _ => inner.pending.remove(perm_id).ok_or_else(gone),
        }
    }

    /// Decide a pending permission (single use). A question may only be
    /// denied this way.
    pub async fn resolve(
        &self,
        session: &Arc<Session>,
        perm_id: &str,
        decision: Decision,
        by: DecidedBy,
        message: Option<&str>,
    ) -> Result<()> {
        if let Some(m) = message {
            // It would reach nobody: the agent hears a reason only for a deny.
            if decision != Decision::Deny {
                return Err(Error::Invalid(
                    "a message goes with a deny only; an allow carries none".into(),
                ));
            }
            super::validate_text("message", m, 0, 2000)?;
        }
        // A question may be denied (by the owner or the timeout), not allowed.
        let pending = self.take_pending(session, perm_id, true, decision == Decision::Deny)?;
        let network = matches!(pending.kind, PendingKind::Network);
        if network {
            self.decide_network(session, perm_id, &pending, decision, by);
        } else if decision == Decision::AllowSession {
            session.lock().always.insert(pending.tool.clone());
        }
        let reason = match (by, message) {
            (_, Some(m)) if !m.trim().is_empty() => m.to_string(),
            (DecidedBy::Timeout, _) => "no decision before the permission timed out".into(),
            _ => "denied by the owner".into(),
        };
        // A network request's answer went to its connection, not the agent.
        let response = match decision {
            _ if network => None,
            Decision::Allow | Decision::AllowSession => Some(protocol::allow(&pending.input)),
            Decision::Deny => Some(protocol::deny(&reason)),
        };
        self.finish(
            session,
            perm_id,
            &pending,
            response,
            decision.into(),
            by,
            (decision == Decision::Deny && message.is_some()).then_some(reason),
            None,
        )
        .await;
        Ok(())
    }

    /// Answer a pending question (single use): the allow answer carries
    /// the answers in `updatedInput`, as the Agent SDK does.
    pub async fn answer(
        &self,
        session: &Arc<Session>,
        perm_id: &str,
        answers: BTreeMap<String, String>,
    ) -> Result<()> {
        let asked: Vec<String> = {
            let inner = session.lock();
            let Some(p) = inner.pending.get(perm_id) else {
                drop(inner);
                return Err(if self.was_resolved(perm_id) {
                    gone()
                } else {
                    Error::NotFound("no such question in this session".into())
                });
            };
            p.input
                .get("questions")
                .and_then(Value::as_array)
                .map(|qs| {
                    qs.iter()
                        .filter_map(|q| q.get("question").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        for (q, a) in &answers {
            if !asked.contains(q) {
                return Err(Error::Invalid(format!(
                    "{q:?} is not one of the questions asked"
                )));
            }
            if a.trim().is_empty() || a.len() > MAX_ANSWER || a.contains('\0') {
                return Err(Error::Invalid(format!(
                    "the answer to {q:?} must be 1..={MAX_ANSWER} bytes"
                )));
            }
        }
        if let Some(missing) = asked.iter().find(|q| !answers.contains_key(*q)) {
            return Err(Error::Invalid(format!("no answer to {missing:?}")));
        }
        let pending = self.take_pending(session, perm_id, false, true)?;
        let mut updated = pending.input.clone();
        if let Value::Object(m) = &mut updated {
            m.insert(
                "answers".into(),
                serde_json::to_value(&answers).unwrap_or(Value::Null),
            );
        }
        self.finish(
            session,
            perm_id,
            &pending,
            Some(protocol::allow(&updated)),
            Outcome::Answered,
            DecidedBy::Owner,
            None,
            Some(answers),
        )
        .await;
        Ok(())
    }

    /// Tell the agent, the watchers and the audit log how a request ended.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        session: &Arc<Session>,
        perm_id: &str,
        pending: &Pending,
        response: Option<Value>,
        outcome: Outcome,
        by: DecidedBy,
        message: Option<String>,
        answers: Option<BTreeMap<String, String>>,
    ) {
        self.remember_resolved(perm_id);
        let (agent, remaining) = {
            let inner = session.lock();
            (inner.agent.clone(), inner.pending.len())
        };
        session.log.publish(ServerEvent::PermissionResolved {
            perm_id: Some(perm_id.to_string()),
            tool_name: pending.tool.clone(),
            decision: outcome,
            by,
            message,
            answers,
        });
        // Running again before the agent hears the answer: its next events
        // (and its `result`, which means idle) must come after this.
        if remaining == 0 && agent.is_some() && session.row().state == SessionState::RequiresAction
        {
            session.set_state(SessionState::Running);
        }
        self.changed(session);
        // Recorded before it takes effect: whoever sees the tool's result
        // (or its refusal) finds the decision in the audit log.
        self.audit(
            &session.id,
            &pending.tool,
            &pending.audit_summary,
            outcome.as_str(),
            by,
        )
        .await;
        if let (Some(agent), Some(response)) = (agent, response) {
            agent.send(&protocol::control_success(&pending.request_id, response));
        }
    }
}
