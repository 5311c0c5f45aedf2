//! The agent's lifecycle: start (or resume) it for a prompt, send,
//! interrupt, change mode, stop it, notice its exit, and stop every agent
//! at shutdown. Its output is driven through [`super::translate`] and
//! [`super::broker`].

use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::translate::{Out, Translator};
use super::{is_agent_session_id, title_from_prompt, Pending, Session, SessionManager};
use crate::agent::process::AgentEvent;
use crate::agent::{launch, protocol, AgentExit, AgentNetwork, AgentProcess, Incoming, SpawnSpec};
use crate::config::NetworkMode;
use crate::error::{Error, Result};
use mitzo_protocol::{DecidedBy, Mode, ServerEvent, SessionState};
use mitzo_sandbox::AgentPolicyInputs;

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

    async fn start_agent(self: &Arc<Self>, session: &Arc<Session>) -> Result<Arc<AgentProcess>> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(Error::Conflict(
                "mitzod is shutting down; try again in a moment".into(),
            ));
        }
        let (mode, model, resume) = {
            let inner = session.lock();
            (
                inner.row.mode,
                inner.row.model.clone(),
                inner.row.agent_session_id.clone(),
            )
        };
        let config = &self.deps.config;
        let network = config.agent.network;
        // Fail closed: no namespaces, no agent (never the host's network
        // instead).
        if network.isolated() {
            mitzo_sandbox::netns::probe().map_err(|why| network_unavailable(network, &why))?;
        }
        let program = launch::program(&config.agent.command)?;
        let state_dir = std::fs::canonicalize(&self.deps.state_dir)
            .unwrap_or_else(|_| self.deps.state_dir.clone());
        let home = launch::prepare_home(&state_dir, &session.id, config.agent.home.as_deref())?;
        let tmp = state_dir.join("tmp").join(&session.id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let mut policy = mitzo_sandbox::agent_policy(&AgentPolicyInputs {
            repo: &session.repo,
            worktrees: std::slice::from_ref(&session.cwd),
            // Isolated: the worktree only; in the repo itself: the repo.
            repo_writable: session.cwd == session.repo,
            agent_home: &home,
            session_tmp: &tmp,
            state_dir: &state_dir,
            hidden: &self.deps.hidden,
            agent_binary: &program,
            own_port: self.deps.own_port,
            agent: config.agent.grants(),
            landlock: super::registry::landlock_mode(config),
        })?;
        // In a namespace of its own the only TCP peer is the forwarder.
        match network {
            NetworkMode::Proxy => policy.connect_tcp = vec![crate::egress::FORWARD_PORT],
            NetworkMode::None => policy.connect_tcp.clear(),
            NetworkMode::Ports => {}
        }
        let token = self.deps.session_tokens.issue(&session.id);
        let mut session_env = launch::session_env(
            &home,
            &tmp,
            &self.deps.own_url,
            &session.id,
            token.expose_str(),
        );
        // agent.api_key_file / the anthropic-api-key credential, read before the drop.
        if let Some(key) = &config.agent.api_key {
            session_env.push(("ANTHROPIC_API_KEY".into(), key.expose_str().to_string()));
        }
        session_env.extend(crate::egress::proxy_env(network));
        let env = mitzo_sandbox::build_env(
            std::env::vars_os(),
            &config.agent.env_passthrough,
            &session_env,
        );
        let egress = match network {
            NetworkMode::Proxy => match self.start_egress(session, &env) {
                Ok(e) => Some(e),
                Err(e) => {
                    self.deps.session_tokens.revoke(&session.id);
                    return Err(e);
                }
            },
            _ => None,
        };
        let agent_network = match (&egress, network) {
            (Some(e), _) => AgentNetwork::Proxy(e.socket.clone()),
            (None, NetworkMode::Ports) => AgentNetwork::Host,
            (None, _) => AgentNetwork::Isolated,
        };
        let args = launch::args(&launch::Launch {
            mode,
            model: model.as_deref(),
            resume: resume.as_deref().filter(|r| is_agent_session_id(r)),
            setting_sources: &config.agent.setting_sources,
        });
        let (tx, rx) = mpsc::channel(256);
        let spec = SpawnSpec {
            program,
            args,
            cwd: session.cwd.clone(),
            policy,
            env,
            network: agent_network,
        };
        let agent = match AgentProcess::spawn(spec, tx) {
            Ok(a) => {
                if let Some(e) = &egress {
                    e.set_peer_root(a.pid);
                }
                session.lock().net.egress = egress;
                Arc::new(a)
            }
            Err(e) => {
                self.deps.session_tokens.revoke(&session.id);
                return Err(e);
            }
        };
        let generation = {
            let mut inner = session.lock();
            inner.generation += 1;
            inner.agent = Some(agent.clone());
            inner.generation
        };
        agent.send(&protocol::control_request(
            "init",
            super::broker::initialize_request(),
        ));
        tracing::info!(session = %session.id, pid = agent.pid, "agent started");
        let me = self.clone();
        let s = session.clone();
        tokio::spawn(async move { me.drive(s, rx, generation).await });
        Ok(agent)
    }

    /// Everything the agent says, turned into events and decisions. While
    /// the event writer is behind, the next line waits: back-pressure
    /// reaches the agent's stdout instead of memory.
    async fn drive(
        self: Arc<Self>,
        session: Arc<Session>,
        mut rx: mpsc::Receiver<AgentEvent>,
        generation: u64,
    ) {
        let mut translator = Translator::new();
        while let Some(event) = rx.recv().await {
            self.writer.room().await;
            // After a stop, what the dead agent still had queued is dropped.
            let current = session.lock().generation == generation;
            match event {
                AgentEvent::Message(msg) if current => {
                    self.on_message(&session, &mut translator, msg).await
                }
                AgentEvent::Malformed(why) if current => {
                    session.log.publish(ServerEvent::error(why));
                }
                AgentEvent::Exit(exit) => {
                    // Blocks the agent never finished are closed, so no
                    // watcher waits on them.
                    apply(&session, translator.finish());
                    self.on_exit(&session, generation, exit).await;
                    break;
                }
                _ => {}
            }
        }
    }

    /// The agent ended by itself (a stop is handled by `end_agent`).
    async fn on_exit(&self, session: &Arc<Session>, generation: u64, exit: AgentExit) {
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

    async fn on_message(
        self: &Arc<Self>,
        session: &Arc<Session>,
        translator: &mut Translator,
        msg: Incoming,
    ) {
        match msg {
            Incoming::Init {
                agent_session_id, ..
            } => {
                // It goes back on the agent's command line: only a plain id.
                if !is_agent_session_id(&agent_session_id) {
                    session.log.publish(ServerEvent::error(
                        "agent reported a malformed session id; it will not be resumed",
                    ));
                    return;
                }
                let row = {
                    let mut inner = session.lock();
                    inner.row.agent_session_id = Some(agent_session_id);
                    inner.row.clone()
                };
                session.log.save_row(row);
            }
            Incoming::StreamEvent(v) => apply(session, translator.stream_event(&v)),
            Incoming::Assistant(v) => apply(session, translator.assistant(&v)),
            Incoming::User(v) => apply(session, translator.user(&v)),
            Incoming::Result(v) => {
                apply(session, translator.finish());
                let row = {
                    let mut inner = session.lock();
                    inner.row.num_turns += 1;
                    inner.row.clone()
                };
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                session.log.publish(ServerEvent::Result {
                    subtype: text("subtype").unwrap_or_default(),
                    is_error: v.get("is_error").and_then(|x| x.as_bool()) == Some(true),
                    result: text("result").map(|r| super::translate::clip_str(&r)),
                    num_turns: row.num_turns,
                    cost_usd: v.get("total_cost_usd").and_then(|x| x.as_f64()),
                });
                session.log.save_row(row);
                session.set_state(SessionState::Idle);
                self.changed(session);
            }
            Incoming::ControlRequest {
                request_id,
                request,
            } => {
                self.on_control_request(session, &request_id, &request)
                    .await;
            }
            Incoming::ControlResponse {
                request_id,
                result: Err(e),
            } => {
                session.log.publish(ServerEvent::error(format!(
                    "agent refused control request {request_id}: {e}"
                )));
            }
            Incoming::ControlCancel { request_id } => {
                self.on_control_cancel(session, &request_id).await;
            }
            Incoming::System(_) | Incoming::ControlResponse { .. } => {}
            Incoming::Unknown(v) => {
                tracing::debug!(session = %session.id, kind = ?v.get("type"), "unknown agent message ignored");
            }
        }
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

/// Why an agent with an isolated network cannot start here.
fn network_unavailable(mode: NetworkMode, why: &str) -> Error {
    Error::Unavailable(format!(
        "agent.network = \"{}\" needs a network namespace of the agent's own, and {why}. \
         Allow unprivileged user and network namespaces (kernel: user.max_user_namespaces > 0; \
         systemd: RestrictNamespaces=user net), or set agent.network = \"ports\" to give agents \
         the host's network limited to agent.allowed_connect_ports",
        mode.as_str()
    ))
}

/// Carry out what the translation produced.
fn apply(session: &Session, outs: Vec<Out>) {
    for o in outs {
        match o {
            Out::Publish(e) => {
                session.log.publish(e);
            }
            Out::Delta {
                message_id,
                index,
                delta_type,
                text,
            } => session.log.delta(&message_id, index, delta_type, &text),
        }
    }
}
