//! The agent's lifecycle: send a prompt (starting or resuming the agent,
//! see [`super::spawn`]), interrupt, change mode, stop it, clean up after
//! its exit, and stop every agent at shutdown. Its output is read by
//! [`super::drive`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{title_from_prompt, Pending, Session, SessionManager};
use crate::agent::{protocol, AgentExit};
use crate::error::{Error, Result};
use mitzo_protocol::{DecidedBy, Mode, ServerEvent, SessionState};

impl SessionManager {
    /// Send a prompt: start (or resume) the agent when it is not running.
    pub async fn send(
        self: &Arc<Self>,
        session: &Arc<Session>,
        prompt: &str,
        client_msg_id: Option<&str>,
    ) -> Result<()> {
        if prompt.trim().is_empty() || prompt.len() > super::MAX_PROMPT {
            return Err(Error::Invalid(format!(
                "prompt must be 1..={} bytes",
                super::MAX_PROMPT
            )));
        }
        self.touch();
        let agent = {
            let _lifecycle = session.lifecycle.lock().await;
            let running = session.lock().agent.clone();
            match running {
                Some(a) => a,
                None => self.start_agent(session).await.map_err(|e| {
                    let why = format!("cannot start the agent: {e}");
                    session.log.publish(ServerEvent::error(why.clone()));
                    Error::Unavailable(why)
                })?,
            }
        };
        // The first prompt names an untitled session.
        let titled = {
            let mut inner = session.lock();
            let empty = inner.row.title.is_empty();
            if empty {
                inner.row.title = title_from_prompt(prompt);
            }
            empty
        };
        session.log.publish(ServerEvent::UserMessage {
            prompt: prompt.to_string(),
            client_msg_id: client_msg_id.map(str::to_string),
        });
        let changed = session.set_state(SessionState::Running);
        if titled && !changed {
            session.log.save_row(session.row());
        }
        self.changed(session);
        if !agent.send(&protocol::user_message(prompt)) {
            session.set_state(SessionState::Idle);
            self.changed(session);
            return Err(Error::Conflict(
                "the agent just ended; send the prompt again".into(),
            ));
        }
        Ok(())
    }

    pub async fn set_mode(&self, session: &Arc<Session>, mode: Mode) {
        let (row, agent) = {
            let mut inner = session.lock();
            inner.row.mode = mode;
            (inner.row.clone(), inner.agent.clone())
        };
        session.log.save_row(row);
        if let Some(agent) = agent {
            let id = format!("mode_{}", hex::encode(rand::random::<[u8; 4]>()));
            agent.send(&protocol::control_request(
                &id,
                protocol::set_permission_mode(mode.claude_permission_mode()),
            ));
        }
        session.log.publish(ServerEvent::ModeChanged { mode });
        self.changed(session);
    }

    /// Interrupt the current turn; optionally follow with a new prompt.
    pub async fn interrupt(
        self: &Arc<Self>,
        session: &Arc<Session>,
        prompt: Option<&str>,
    ) -> Result<()> {
        let agent = session.lock().agent.clone();
        if let Some(agent) = agent {
            let id = format!("int_{}", hex::encode(rand::random::<[u8; 4]>()));
            agent.send(&protocol::control_request(&id, protocol::interrupt()));
            session.log.publish(ServerEvent::Interrupted {});
        }
        if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
            self.send(session, p, None).await?;
        }
        Ok(())
    }

    /// Stop the agent (the session stays, and can be resumed).
    pub async fn stop(&self, session: &Arc<Session>, reason: &str) {
        let _lifecycle = session.lifecycle.lock().await;
        let ended = self.end_agent(session).await;
        if ended || session.row().state != SessionState::Stopped {
            session.log.publish(ServerEvent::SessionEnd {
                reason: reason.to_string(),
            });
            session.set_state(SessionState::Stopped);
        }
        self.changed(session);
    }

    /// Terminate the agent and its tree, and revoke its token; false when
    /// there was no agent.
    pub(crate) async fn end_agent(&self, session: &Arc<Session>) -> bool {
        let agent = session.lock().agent.clone();
        let Some(agent) = agent else { return false };
        agent.terminate().await;
        self.deps.session_tokens.revoke(&session.id);
        let pending: Vec<(String, Pending)> = {
            let mut inner = session.lock();
            // The drive task sees a new generation and drops what the dead
            // agent still had queued.
            inner.generation += 1;
            inner.agent = None;
            inner.pending.drain().collect()
        };
        self.withdraw_pending(session, pending, DecidedBy::SessionEnd)
            .await;
        self.end_egress(session);
        self.clean_up_after_agent(session).await;
        true
    }

    /// The agent ended by itself (a stop is handled by `end_agent`).
    pub(crate) async fn on_exit(&self, session: &Arc<Session>, generation: u64, exit: AgentExit) {
        let _lifecycle = session.lifecycle.lock().await;
        let (pending, state) = {
            let mut inner = session.lock();
            if inner.generation != generation {
                return;
            }
            inner.agent = None;
            inner.generation += 1;
            let pending: Vec<(String, Pending)> = inner.pending.drain().collect();
            (pending, inner.row.state)
        };
        self.deps.session_tokens.revoke(&session.id);
        self.withdraw_pending(session, pending, DecidedBy::AgentExit)
            .await;
        self.end_egress(session);
        let clean = exit.code == Some(0) && state == SessionState::Idle;
        if !clean {
            let tail = exit.stderr_tail.trim();
            let error = if tail.is_empty() {
                exit.describe()
            } else {
                format!("{}; stderr: {tail}", exit.describe())
            };
            tracing::warn!(session = %session.id, %error, "agent ended unexpectedly");
            session.log.publish(ServerEvent::Error {
                error,
                exit_code: exit.code,
                signal: exit.signal,
            });
        }
        session.set_state(SessionState::Idle);
        self.clean_up_after_agent(session).await;
        self.changed(session);
    }

    /// Kill what the session's agent left behind (processes reparented to
    /// us, found by their `MITZO_SESSION_ID`) and remove its private tmp.
    async fn clean_up_after_agent(&self, session: &Session) {
        let marker = format!("MITZO_SESSION_ID={}", session.id);
        let _ =
            tokio::task::spawn_blocking(move || mitzo_sandbox::kill_marked_orphans(&marker)).await;
        let tmp = self.deps.state_dir.join("tmp").join(&session.id);
        let _ = tokio::fs::remove_dir_all(tmp).await;
    }

    /// Shutdown: end every agent; their sessions show as interrupted and
    /// resume (`--resume`) on the next prompt after a restart.
    pub async fn stop_all(self: &Arc<Self>) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let mut stopping = tokio::task::JoinSet::new();
        for s in self.live() {
            let me = self.clone();
            stopping.spawn(async move {
                let _lifecycle = s.lifecycle.lock().await;
                if me.end_agent(&s).await {
                    s.set_state(SessionState::Interrupted);
                }
            });
        }
        while stopping.join_next().await.is_some() {}
        self.writer.flush().await;
    }
}
