//! Starting an agent: its home and private tmp, its sandbox policy, its
//! environment and network (the egress proxy when `network = "proxy"`),
//! the process itself, and the task that drives its output.

use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{is_agent_session_id, Session, SessionManager};
use crate::agent::{launch, protocol, AgentNetwork, AgentProcess, SpawnSpec};
use crate::config::NetworkMode;
use crate::error::{Error, Result};
use mitzo_sandbox::AgentPolicyInputs;

impl SessionManager {
    pub(crate) async fn start_agent(
        self: &Arc<Self>,
        session: &Arc<Session>,
    ) -> Result<Arc<AgentProcess>> {
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
        // A session in the repo itself gets the whole repo read-write, and
        // Landlock cannot leave a directory out of a grant: mitzod's own
        // state there (`serve --dev`'s .mitzo-dev) rules such a session out.
        if session.cwd == session.repo {
            let repo =
                std::fs::canonicalize(&session.repo).unwrap_or_else(|_| session.repo.clone());
            if state_dir.starts_with(&repo) {
                return Err(Error::Conflict(format!(
                    "a session without isolation works in {} itself, which holds mitzod's state and secrets ({}); \
                     start it with isolation (its own checkout), or keep mitzod's state outside the repo (state_dir, MITZOD_STATE_DIR)",
                    repo.display(),
                    state_dir.display()
                )));
            }
        }
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
