//! The permission broker: every tool call reaches it, through the
//! `PreToolUse` hook registered at `initialize` and through `can_use_tool`,
//! and is decided by policy or put to the owner (with its title, summary
//! and diff); `AskUserQuestion` calls become questions for the owner
//! ([`super::questions`]). How pending requests are then decided is in
//! [`super::decisions`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::approval;
use super::events::now_ms;
use super::store;
use super::translate::clip;
use super::{Pending, PendingKind, Session, SessionManager};
use crate::agent::protocol;
use crate::permissions::{self, Tier, Verdict};
use mitzo_protocol::{DecidedBy, Outcome, ServerEvent, SessionState};

/// Pending permissions one session may have at once; more are denied.
pub(crate) const MAX_PENDING: usize = 32;
/// The tool through which the agent asks the owner questions.
pub const ASK_TOOL: &str = "AskUserQuestion";

/// The id of the `PreToolUse` hook mitzod registers.
pub const PRE_TOOL_USE_HOOK: &str = "mitzo_pre_tool_use";

/// Our `initialize` control request: a `PreToolUse` hook for every tool
/// (as the Agent SDK registers its hooks), so that every call — Claude
/// Code's own auto-allowed read-only commands included — reaches mitzod's
/// policy and audit log before it runs.
pub fn initialize_request() -> Value {
    serde_json::json!({
        "subtype": "initialize",
        "hooks": {"PreToolUse": [{"matcher": null, "hookCallbackIds": [PRE_TOOL_USE_HOOK]}]},
    })
}

/// Title, summary and diff of a call (reads the target file: blocking pool).
async fn describe(tool: &str, input: &Value, session: &Session) -> approval::Approval {
    let (t, i, cwd) = (tool.to_string(), input.clone(), session.cwd.clone());
    tokio::task::spawn_blocking(move || approval::describe(&t, &i, &cwd))
        .await
        .unwrap_or_else(|e| approval::Approval {
            title: format!("Use {tool}"),
            summary: format!("no summary: {e}"),
            diff: None,
        })
}

/// The hook's answer: `allow` and `deny` decide; `ask` sends the call on
/// to `can_use_tool`, where the owner is asked.
fn hook_decision(decision: &str, reason: Option<&str>) -> Value {
    let mut out = serde_json::json!({
        "hookEventName": "PreToolUse",
        "permissionDecision": decision,
    });
    if let Some(r) = reason {
        out["permissionDecisionReason"] = Value::from(r);
    }
    serde_json::json!({ "hookSpecificOutput": out })
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
        match subtype {
            "can_use_tool" => {}
            "hook_callback" => {
                self.pre_tool_use(session, request_id, request).await;
                return;
            }
            _ => {
                agent.send(&protocol::control_error(
                    request_id,
                    &format!("mitzod does not support control request `{subtype}`"),
                ));
                return;
            }
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
        let (verdict, tier) = self.policy(session, &tool, &input).await;
        let described = describe(&tool, &input, session).await;
        let audit_line = described.audit_line();
        match verdict {
            // Each decision is recorded before it takes effect.
            Verdict::Allow => {
                self.audit(&session.id, &tool, &audit_line, "allow", DecidedBy::Policy)
                    .await;
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::allow(&input),
                ));
            }
            Verdict::Deny(message) => {
                self.audit(&session.id, &tool, &audit_line, "deny", DecidedBy::Policy)
                    .await;
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
            }
            Verdict::Ask if session.pending_count() >= MAX_PENDING => {
                let message = "too many permission requests are waiting for the owner";
                self.audit(&session.id, &tool, &audit_line, "deny", DecidedBy::Policy)
                    .await;
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::deny(message),
                ));
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

    /// What mitzod's policy says about one call in this session.
    async fn policy(&self, session: &Session, tool: &str, input: &Value) -> (Verdict, Tier) {
        let overrides = {
            let configs = self.deps.repo_configs.clone();
            let repo = session.repo.clone();
            tokio::task::spawn_blocking(move || configs.get(&repo).tool_tier_overrides.clone())
                .await
                .unwrap_or_default()
        };
        let (mode, always) = {
            let inner = session.lock();
            (inner.row.mode, inner.always.clone())
        };
        permissions::decide(tool, input, mode, &overrides, &always, &session.cwd)
    }

    /// The `PreToolUse` hook: policy allow and deny are final here (and
    /// audited); anything the owner must decide goes on to `can_use_tool`.
    async fn pre_tool_use(&self, session: &Arc<Session>, request_id: &str, request: &Value) {
        let Some(agent) = session.lock().agent.clone() else {
            return;
        };
        let callback = request.get("callback_id").and_then(Value::as_str);
        let input = request.get("input").unwrap_or(&Value::Null);
        let event = input.get("hook_event_name").and_then(Value::as_str);
        let tool = input.get("tool_name").and_then(Value::as_str);
        let (Some(PRE_TOOL_USE_HOOK), Some("PreToolUse"), Some(tool)) = (callback, event, tool)
        else {
            agent.send(&protocol::control_error(
                request_id,
                "mitzod registered no such hook",
            ));
            return;
        };
        let tool_input = input.get("tool_input").cloned().unwrap_or(Value::Null);
        if tool == ASK_TOOL {
            agent.send(&protocol::control_success(
                request_id,
                hook_decision("ask", None),
            ));
            return;
        }
        let (verdict, _) = self.policy(session, tool, &tool_input).await;
        let answer = match &verdict {
            Verdict::Allow => hook_decision("allow", Some("allowed by mitzod's policy")),
            Verdict::Deny(why) => hook_decision("deny", Some(why)),
            Verdict::Ask => hook_decision("ask", None),
        };
        // A decision mitzod takes itself is recorded before it takes effect.
        if verdict != Verdict::Ask {
            let audit_line = describe(tool, &tool_input, session).await.audit_line();
            let decision = if matches!(verdict, Verdict::Deny(_)) {
                "deny"
            } else {
                "allow"
            };
            self.audit(&session.id, tool, &audit_line, decision, DecidedBy::Policy)
                .await;
        }
        agent.send(&protocol::control_success(request_id, answer));
        if let Verdict::Deny(message) = verdict {
            session.log.publish(ServerEvent::PermissionResolved {
                perm_id: None,
                tool_name: tool.to_string(),
                decision: Outcome::Deny,
                by: DecidedBy::Policy,
                message: Some(message),
                answers: None,
            });
        }
    }

    pub(crate) fn add_pending(
        &self,
        session: &Session,
        pending: Pending,
    ) -> (String, i64, Duration) {
        let perm_id = hex::encode(rand::random::<[u8; 16]>());
        let timeout = Duration::from_secs(self.deps.config.permissions.timeout_secs);
        let expires_at = now_ms() + timeout.as_millis() as i64;
        session.lock().pending.insert(perm_id.clone(), pending);
        (perm_id, expires_at, timeout)
    }

    /// The session now waits for the owner: state, watchers, timers.
    pub(crate) fn waiting(
        self: &Arc<Self>,
        session: &Arc<Session>,
        perm_id: String,
        timeout: Duration,
    ) {
        session.set_state(SessionState::RequiresAction);
        self.changed(session);
        let me = self.clone();
        let s = session.clone();
        tokio::spawn(async move { me.pending_timers(s, perm_id, timeout).await });
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

    pub(crate) async fn audit(
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
