//! The permission broker: every tool call the agent asks about
//! (`can_use_tool`) is decided by policy or by the owner, with a timeout,
//! an ntfy notification, and an audit row. `AskUserQuestion` calls become
//! questions for the owner. Decisions are bound to their session and used
//! once; the ntfy one-tap capability (opt-in) is verified here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::approval;
use super::events::now_ms;
use super::store;
use super::translate::clip;
use super::{Pending, PendingKind, Session, SessionManager};
use crate::agent::protocol;
use crate::error::{Error, Result};
use crate::permissions::{self, Tier, Verdict};
use crate::protocol::{DecidedBy, Decision, Outcome, Question, ServerEvent, SessionState};
use crate::repo_config::ToolTier;

/// Pending permissions one session may have at once; more are denied.
const MAX_PENDING: usize = 32;
/// The tool through which the agent asks the owner questions.
pub const ASK_TOOL: &str = "AskUserQuestion";
const MAX_ANSWER: usize = 4000;

/// Our `initialize` control request.
pub fn initialize_request() -> Value {
    protocol::initialize()
}

fn gone() -> Error {
    Error::Gone("this permission was already decided or has expired".into())
}

impl SessionManager {
    pub(crate) async fn on_control_request(
        self: &Arc<Self>,
        session: &Arc<Session>,
        request_id: &str,
        request: &Value,
    ) {
        let agent = session.lock().agent.clone();
        let Some(agent) = agent else { return };
        let subtype = request.get("subtype").and_then(Value::as_str).unwrap_or("");
        if subtype != "can_use_tool" {
            agent.send(&protocol::control_error(
                request_id,
                &format!("mitzod does not support control request `{subtype}`"),
            ));
            return;
        }
        let tool = request
            .get("tool_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let input = request.get("input").cloned().unwrap_or(Value::Null);
        if tool == ASK_TOOL {
            self.ask_questions(session, request_id, &input).await;
            return;
        }
        let overrides = {
            let configs = self.deps.repo_configs.clone();
            let repo = session.repo.clone();
            tokio::task::spawn_blocking(move || configs.get(&repo).tool_tier_overrides.clone())
                .await
                .unwrap_or_default()
        };
        let overrides = overrides
            .into_iter()
            .map(|(k, v)| {
                let t = match v {
                    ToolTier::Safe => Tier::Safe,
                    ToolTier::Standard => Tier::Standard,
                    ToolTier::Elevated => Tier::Elevated,
                };
                (k, t)
            })
            .collect();
        let (mode, always) = {
            let inner = session.lock();
            (inner.row.mode, inner.always.clone())
        };
        let (verdict, tier) =
            permissions::decide(&tool, &input, mode, &overrides, &always, &session.cwd);
        let described = {
            let (t, i, cwd) = (tool.clone(), input.clone(), session.cwd.clone());
            tokio::task::spawn_blocking(move || approval::describe(&t, &i, &cwd))
                .await
                .unwrap_or_else(|e| approval::Approval {
                    title: format!("Use {tool}"),
                    summary: format!("no summary: {e}"),
                    diff: None,
                })
        };
        let audit_line = described.audit_line();
        match verdict {
            Verdict::Allow => {
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::allow(&input),
                ));
                self.audit(&session.id, &tool, &audit_line, "allow", DecidedBy::Policy)
                    .await;
            }
            Verdict::Deny(message) => {
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::deny(&message),
                ));
                session.log.publish(ServerEvent::PermissionResolved {
                    perm_id: None,
                    tool_name: tool.clone(),
                    decision: Outcome::Deny,
                    by: DecidedBy::Policy,
                    message: Some(message),
                    answers: None,
                });
                self.audit(&session.id, &tool, &audit_line, "deny", DecidedBy::Policy)
                    .await;
            }
            Verdict::Ask if session.pending_count() >= MAX_PENDING => {
                let message = "too many permission requests are waiting for the owner";
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::deny(message),
                ));
                self.audit(&session.id, &tool, &audit_line, "deny", DecidedBy::Policy)
                    .await;
            }
            Verdict::Ask => {
                let (perm_id, expires_at, timeout) = self.add_pending(
                    session,
                    Pending {
                        request_id: request_id.to_string(),
                        tool: tool.clone(),
                        input: input.clone(),
                        kind: PendingKind::Permission,
                        audit_summary: audit_line,
                    },
                );
                session.log.publish(ServerEvent::PermissionRequest {
                    perm_id: perm_id.clone(),
                    tool_name: tool,
                    title: described.title,
                    summary: described.summary,
                    diff: described.diff,
                    tool_input: clip(&input),
                    tier,
                    expires_at,
                });
                self.waiting(session, perm_id, timeout);
            }
        }
    }

    fn add_pending(&self, session: &Session, pending: Pending) -> (String, i64, Duration) {
        let perm_id = hex::encode(rand::random::<[u8; 16]>());
        let timeout = Duration::from_secs(self.deps.config.permissions.timeout_secs);
        let expires_at = now_ms() + timeout.as_millis() as i64;
        session.lock().pending.insert(perm_id.clone(), pending);
        (perm_id, expires_at, timeout)
    }

    /// The session now waits for the owner: state, watchers, timers.
    fn waiting(self: &Arc<Self>, session: &Arc<Session>, perm_id: String, timeout: Duration) {
        session.set_state(SessionState::RequiresAction);
        self.changed(session);
        let me = self.clone();
        let s = session.clone();
        tokio::spawn(async move { me.pending_timers(s, perm_id, timeout).await });
    }

    /// An `AskUserQuestion` call: the owner answers (or it times out).
    async fn ask_questions(
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
                summary: q
                    .iter()
                    .map(|q| q.question.as_str())
                    .collect::<Vec<_>>()
                    .join(" / "),
                diff: None,
            }
            .audit_line(),
            None => "Ask the owner: malformed questions".into(),
        };
        let Some(questions) = questions.filter(|_| session.pending_count() < MAX_PENDING) else {
            agent.send(&protocol::control_success(
                request_id,
                protocol::deny("mitzod could not put these questions to the owner"),
            ));
            self.audit(
                &session.id,
                ASK_TOOL,
                &audit_line,
                "deny",
                DecidedBy::Policy,
            )
            .await;
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

    pub(crate) async fn on_control_cancel(&self, session: &Arc<Session>, request_id: &str) {
        let perm = {
            let mut inner = session.lock();
            let perm = inner
                .pending
                .iter()
                .find(|(_, p)| p.request_id == request_id)
                .map(|(k, _)| k.clone());
            perm.and_then(|k| inner.pending.remove(&k).map(|p| (k, p)))
        };
        let Some((p, pending)) = perm else { return };
        self.remember_resolved(&p);
        session.log.publish(ServerEvent::PermissionResolved {
            perm_id: Some(p),
            tool_name: pending.tool.clone(),
            decision: Outcome::Cancelled,
            by: DecidedBy::Agent,
            message: None,
            answers: None,
        });
        self.audit(
            &session.id,
            &pending.tool,
            &pending.audit_summary,
            "cancelled",
            DecidedBy::Agent,
        )
        .await;
        if session.pending_count() == 0 {
            session.set_state(SessionState::Running);
        }
        self.changed(session);
    }

    /// Pending permissions of an agent that is gone: decided by nobody,
    /// and audited as such.
    pub(crate) async fn withdraw_pending(
        &self,
        session: &Session,
        pending: Vec<(String, Pending)>,
        by: DecidedBy,
    ) {
        for (perm, p) in pending {
            self.remember_resolved(&perm);
            session.log.publish(ServerEvent::PermissionResolved {
                perm_id: Some(perm),
                tool_name: p.tool.clone(),
                decision: Outcome::Deny,
                by,
                message: None,
                answers: None,
            });
            self.audit(&session.id, &p.tool, &p.audit_summary, "withdrawn", by)
                .await;
        }
    }

    /// ntfy after the delay, deny at the timeout: for one pending request.
    async fn pending_timers(
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
                    p.audit_summary.clone(),
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

    fn remember_resolved(&self, perm_id: &str) {
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
            return Err(Error::BadRequest(
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
            return Err(Error::BadRequest(
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
            PendingKind::Question if !question_ok => Err(Error::BadRequest(
                "this is a question: answer it with question_response (or deny it)".into(),
            )),
            PendingKind::Permission if !permission_ok => Err(Error::BadRequest(
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
            super::validate_text("message", m, 0, 2000)?;
        }
        // A question may be denied (by the owner or the timeout), not allowed.
        let pending = self.take_pending(session, perm_id, true, decision == Decision::Deny)?;
        if decision == Decision::AllowSession {
            session.lock().always.insert(pending.tool.clone());
        }
        let reason = match (by, message) {
            (_, Some(m)) if !m.trim().is_empty() => m.to_string(),
            (DecidedBy::Timeout, _) => "no decision before the permission timed out".into(),
            _ => "denied by the owner".into(),
        };
        let response = match decision {
            Decision::Allow | Decision::AllowSession => protocol::allow(&pending.input),
            Decision::Deny => protocol::deny(&reason),
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
                return Err(Error::BadRequest(format!(
                    "{q:?} is not one of the questions asked"
                )));
            }
            if a.trim().is_empty() || a.len() > MAX_ANSWER || a.contains('\0') {
                return Err(Error::BadRequest(format!(
                    "the answer to {q:?} must be 1..={MAX_ANSWER} bytes"
                )));
            }
        }
        if let Some(missing) = asked.iter().find(|q| !answers.contains_key(*q)) {
            return Err(Error::BadRequest(format!("no answer to {missing:?}")));
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
            protocol::allow(&updated),
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
        response: Value,
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
        if remaining == 0 && agent.is_some() {
            session.set_state(SessionState::Running);
        }
        self.changed(session);
        if let Some(agent) = agent {
            agent.send(&protocol::control_success(&pending.request_id, response));
        }
        self.audit(
            &session.id,
            &pending.tool,
            &pending.audit_summary,
            outcome.as_str(),
            by,
        )
        .await;
    }

    async fn audit(
        &self,
        session_id: &str,
        tool: &str,
        summary: &str,
        decision: &str,
        by: DecidedBy,
    ) {
        let (sid, tool, summary, decision) = (
            session_id.to_string(),
            tool.to_string(),
            summary.to_string(),
            decision.to_string(),
        );
        let result = self
            .deps
            .db
            .call(move |c| {
                store::audit_insert(c, now_ms(), &sid, &tool, &summary, &decision, by.as_str())
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "writing the audit log failed");
        }
    }

    pub fn has_pending(&self) -> bool {
        self.live().iter().any(|s| s.pending_count() > 0)
    }
}
