//! Agent sessions: each one a worktree, an agent process (when running),
//! an event stream that outlives its clients, and a permission broker that
//! decides every tool call by policy or by the owner.

pub mod events;
pub mod store;

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::agent::process::AgentEvent;
use crate::agent::{protocol, AgentExit, AgentProcess, Incoming, SpawnSpec};
use crate::auth::session_tokens::SessionTokens;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::git::Git;
use crate::permissions::{self, Mode, Tier, Verdict};
use crate::repo_config::{RepoConfigs, ToolTier};
use crate::sandbox::{AgentPolicyInputs, Enforcement};
use crate::secret::Secret;
use events::{now_ms, EventLog, Frame, Persist, Subscription};
use store::SessionRow;

pub const MAX_PROMPT: usize = 256 * 1024;
/// Pending permissions one session may have at once; more are denied.
const MAX_PENDING: usize = 32;

/// Who decided a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    Policy,
    Owner,
    Ntfy,
    Timeout,
}

impl DecidedBy {
    fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Policy => "policy",
            DecidedBy::Owner => "owner",
            DecidedBy::Ntfy => "ntfy",
            DecidedBy::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Once,
    Always,
    Deny,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "once" | "allow" => Some(Decision::Once),
            "always" => Some(Decision::Always),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Decision::Once => "once",
            Decision::Always => "always",
            Decision::Deny => "deny",
        }
    }
}

struct Pending {
    request_id: String,
    tool: String,
    input: Value,
}

struct Inner {
    row: SessionRow,
    agent: Option<Arc<AgentProcess>>,
    generation: u64,
    always: HashSet<String>,
    pending: HashMap<String, Pending>,
    watchers: usize,
    detached_since: Option<Instant>,
}

pub struct Session {
    pub id: String,
    pub repo: PathBuf,
    pub cwd: PathBuf,
    pub log: EventLog,
    inner: Mutex<Inner>,
    /// Held while an agent is started, stopped or cleaned up after: one
    /// agent per session, and no prompt lands in a dying one.
    lifecycle: tokio::sync::Mutex<()>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn row(&self) -> SessionRow {
        self.lock().row.clone()
    }

    pub fn is_active(&self) -> bool {
        self.lock().agent.is_some()
    }

    pub fn is_attached(&self) -> bool {
        self.lock().watchers > 0
    }

    fn set_state(&self, state: &str) {
        let row = {
            let mut inner = self.lock();
            if inner.row.state == state {
                return;
            }
            inner.row.state = state.to_string();
            inner.row.last_modified = now_ms();
            inner.row.clone()
        };
        self.log
            .publish("session_state_changed", json!({ "state": state }));
        self.log.save_row(row);
    }
}

/// What a new session asks for.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub source: String,
    pub summary: Option<String>,
    pub mode: Mode,
    pub model: Option<String>,
    pub isolation: Option<bool>,
    /// Started with a prompt and no client (REST `initialPrompt`).
    pub headless: bool,
}

/// Everything the manager needs from the rest of the server.
pub struct Deps {
    pub config: Arc<Config>,
    pub state_dir: PathBuf,
    pub db: Db,
    pub session_tokens: Arc<SessionTokens>,
    pub repo_configs: Arc<RepoConfigs>,
    /// Files agents must never read (secrets, the config file).
    pub hidden: Vec<PathBuf>,
    /// Where an agent reaches mitzod (`MITZO_URL`) and its port.
    pub own_url: String,
    pub own_port: Option<u16>,
    /// Key for approval capabilities (derived from the JWT secret).
    pub approval_key: Secret,
    pub ntfy: Option<crate::ntfy::Ntfy>,
}

pub struct SessionManager {
    deps: Deps,
    git: Git,
    persist: mpsc::UnboundedSender<Persist>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Permission ids decided or expired recently: 410 rather than 404.
    resolved: Mutex<VecDeque<String>>,
    pub clients: AtomicUsize,
    /// Set at shutdown: no new agent starts.
    shutting_down: std::sync::atomic::AtomicBool,
    last_activity: AtomicI64,
    heartbeat: AtomicI64,
    pub idle: Notify,
}

fn landlock_mode(config: &Config) -> Enforcement {
    Enforcement::from(config.sandbox.landlock)
}

impl SessionManager {
    pub fn new(deps: Deps) -> Result<Arc<SessionManager>> {
        let git = Git::new(landlock_mode(&deps.config))?;
        let persist = store::spawn_writer(deps.db.clone());
        let interrupted = deps.db.with(|c| store::mark_interrupted(c))?;
        if interrupted > 0 {
            tracing::info!(
                count = interrupted,
                "sessions live at the last stop are marked interrupted"
            );
        }
        // No agent runs yet: private tmp dirs left by a crash go.
        if let Ok(entries) = std::fs::read_dir(deps.state_dir.join("tmp")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Arc::new(SessionManager {
            deps,
            git,
            persist,
            sessions: Mutex::new(HashMap::new()),
            resolved: Mutex::new(VecDeque::new()),
            clients: AtomicUsize::new(0),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            last_activity: AtomicI64::new(now_ms()),
            heartbeat: AtomicI64::new(now_ms()),
            idle: Notify::new(),
        }))
    }

    pub fn touch(&self) {
        self.last_activity.store(now_ms(), Ordering::Relaxed);
    }

    /// The supervisor beat within `max`: proof for the watchdog.
    pub fn supervisor_alive(&self, max: Duration) -> bool {
        now_ms() - self.heartbeat.load(Ordering::Relaxed) <= max.as_millis() as i64
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn repo(&self) -> Result<PathBuf> {
        self.deps.config.repo_path.clone().ok_or_else(|| {
            Error::BadRequest("no repo_path is configured; sessions need a repository".into())
        })
    }

    /// Create a session: its worktree, its row, its event log.
    pub async fn create(&self, req: NewSession) -> Result<Arc<Session>> {
        validate_text("source", &req.source, 1, 100)?;
        if let Some(s) = &req.summary {
            validate_text("summary", s, 0, 500)?;
        }
        if let Some(m) = &req.model {
            validate_text("model", m, 1, 100)?;
            if !m
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c))
            {
                return Err(Error::BadRequest(
                    "model: only letters, digits and -._:[] are allowed".into(),
                ));
            }
        }
        let repo = self.repo()?;
        let repo_cfg = {
            let configs = self.deps.repo_configs.clone();
            let r = repo.clone();
            tokio::task::spawn_blocking(move || configs.get(&r))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
        };
        let isolation = req
            .isolation
            .or(repo_cfg.isolation)
            .unwrap_or(self.deps.config.session.isolation);
        let id = crate::worktree::new_session_id();
        let git = self.git.clone();
        let (r, i) = (repo.clone(), id.clone());
        let cwd = tokio::task::spawn_blocking(move || {
            crate::worktree::prepare_session_dir(&git, &r, &i, isolation)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let now = now_ms();
        let row = SessionRow {
            id: id.clone(),
            source: req.source,
            summary: req.summary.unwrap_or_default(),
            mode: req.mode.as_str().into(),
            model: req.model,
            repo: repo.display().to_string(),
            cwd: cwd.display().to_string(),
            branch: isolation.then(|| crate::worktree::branch_name(&id)),
            isolation,
            headless: req.headless,
            agent_session_id: None,
            state: "idle".into(),
            num_turns: 0,
            created_at: now,
            last_modified: now,
        };
        let saved = row.clone();
        self.deps.db.call(move |c| store::insert(c, &saved)).await?;
        let session = Arc::new(self.session_from_row(row, 0));
        self.map().insert(id, session.clone());
        Ok(session)
    }

    fn session_from_row(&self, row: SessionRow, last_seq: u64) -> Session {
        Session {
            id: row.id.clone(),
            repo: PathBuf::from(&row.repo),
            cwd: PathBuf::from(&row.cwd),
            log: EventLog::new(
                &row.id,
                last_seq,
                self.deps.config.session.buffer_events,
                self.persist.clone(),
            ),
            inner: Mutex::new(Inner {
                row,
                agent: None,
                generation: 0,
                always: HashSet::new(),
                pending: HashMap::new(),
                watchers: 0,
                detached_since: Some(Instant::now()),
            }),
            lifecycle: tokio::sync::Mutex::new(()),
        }
    }

    /// A session by id: live, or loaded from the database (after a restart).
    pub async fn get(&self, id: &str) -> Result<Arc<Session>> {
        crate::worktree::validate_session_id(id)?;
        if let Some(s) = self.map().get(id) {
            return Ok(s.clone());
        }
        let owned = id.to_string();
        let (row, last_seq) = self
            .deps
            .db
            .call(move |c| Ok((store::get(c, &owned)?, store::last_seq(c, &owned)?)))
            .await?;
        let row = row.ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
        let mut map = self.map();
        let session = map
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(self.session_from_row(row, last_seq)))
            .clone();
        Ok(session)
    }

    /// How many sessions are held in memory.
    pub fn loaded(&self) -> usize {
        self.map().len()
    }

    pub fn live(&self) -> Vec<Arc<Session>> {
        self.map().values().cloned().collect()
    }

    fn any_agent_running(&self) -> bool {
        self.live().iter().any(|s| s.is_active())
    }

    /// Send a prompt: start (or resume) the agent when it is not running.
    pub async fn send(
        self: &Arc<Self>,
        session: &Arc<Session>,
        prompt: &str,
        client_msg_id: Option<&str>,
    ) -> Result<()> {
        if prompt.trim().is_empty() || prompt.len() > MAX_PROMPT {
            return Err(Error::BadRequest(format!(
                "prompt must be 1..={MAX_PROMPT} bytes"
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
                    session.log.publish("error", json!({ "error": why }));
                    Error::Unavailable(why)
                })?,
            }
        };
        session.log.publish(
            "user_message",
            json!({ "prompt": prompt, "clientMsgId": client_msg_id }),
        );
        session.set_state("running");
        if !agent.send(&protocol::user_message(prompt)) {
            session.set_state("idle");
            return Err(Error::Conflict(
                "the agent just ended; send the prompt again".into(),
            ));
        }
        Ok(())
    }

    pub async fn set_mode(&self, session: &Arc<Session>, mode: Mode) {
        let (row, agent) = {
            let mut inner = session.lock();
            inner.row.mode = mode.as_str().into();
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
        session
            .log
            .publish("mode_changed", json!({ "mode": mode.as_str() }));
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
            session.log.publish("interrupted", json!({}));
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
        if ended || session.row().state != "stopped" {
            session
                .log
                .publish("session_end", json!({ "reason": reason }));
            session.set_state("stopped");
        }
    }

    /// Terminate the agent and its tree, and revoke its token; false when
    /// there was no agent.
    async fn end_agent(&self, session: &Arc<Session>) -> bool {
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
        self.withdraw_pending(session, pending, "session_end").await;
        self.clean_up_after_agent(session).await;
        true
    }

    /// Stop and hide.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let session = self.get(id).await?;
        self.stop(&session, "deleted").await;
        let owned = id.to_string();
        let found = self.deps.db.call(move |c| store::hide(c, &owned)).await?;
        self.map().remove(id);
        if !found {
            return Err(Error::NotFound(format!("no session {id}")));
        }
        Ok(())
    }

    pub fn attach(&self, session: &Session) {
        let mut inner = session.lock();
        inner.watchers += 1;
        inner.detached_since = None;
        self.touch();
    }

    pub fn detach(&self, session: &Session) {
        let mut inner = session.lock();
        inner.watchers = inner.watchers.saturating_sub(1);
        if inner.watchers == 0 {
            inner.detached_since = Some(Instant::now());
        }
        self.touch();
    }

    /// Events after `after` from the database (for REST and deep replays).
    pub async fn events_after(&self, id: &str, after: u64, limit: u32) -> Result<Vec<Value>> {
        let owned = id.to_string();
        let frames = self
            .deps
            .db
            .call(move |c| store::events(c, &owned, after.saturating_add(1), u64::MAX, limit))
            .await?;
        Ok(frames
            .iter()
            .filter_map(|(_, f)| serde_json::from_str(f).ok())
            .collect())
    }

    /// Subscribe with no gap: the ring, plus the database for older events.
    pub async fn subscribe(
        &self,
        session: &Session,
        after: u64,
    ) -> Result<(Vec<Frame>, Subscription)> {
        let sub = session.log.subscribe(after);
        let mut frames: Vec<Frame> = Vec::new();
        if let Some((from, to)) = sub.missing {
            let id = session.id.clone();
            // The writer may lag the ring by a few rows: wait for them.
            let mut rows = Vec::new();
            for _ in 0..50 {
                let (i, f, t) = (id.clone(), from, to);
                rows = self
                    .deps
                    .db
                    .call(move |c| store::events(c, &i, f, t, 100_000))
                    .await?;
                if rows.len() as u64 > to - from {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if (rows.len() as u64) <= to - from {
                tracing::warn!(session = %id, from, to, found = rows.len(), "replay from the database is incomplete");
            }
            frames.extend(rows.into_iter().map(|(seq, json)| Frame {
                seq,
                json: Arc::from(json),
            }));
        }
        frames.extend(sub.replay.iter().cloned());
        Ok((frames, sub))
    }

    // ---- the agent ----------------------------------------------------

    fn agent_program(&self) -> Result<PathBuf> {
        let cmd = &self.deps.config.agent.command;
        let path = Path::new(cmd);
        if path.is_absolute() {
            return Ok(path.to_path_buf());
        }
        let search = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        std::env::split_paths(&search)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Sandbox(format!("agent.command {cmd:?} not found on PATH")))
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
                Mode::parse(&inner.row.mode).unwrap_or_default(),
                inner.row.model.clone(),
                inner.row.agent_session_id.clone(),
            )
        };
        let program = self.agent_program()?;
        let state_dir = std::fs::canonicalize(&self.deps.state_dir)
            .unwrap_or_else(|_| self.deps.state_dir.clone());
        let home = self
            .deps
            .config
            .agent
            .home
            .clone()
            .unwrap_or_else(|| state_dir.join("agent-home"));
        let tmp = state_dir.join("tmp").join(&session.id);
        for dir in [&home, &tmp] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let policy = crate::sandbox::agent_policy(&AgentPolicyInputs {
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
            agent: &self.deps.config.agent,
            landlock: landlock_mode(&self.deps.config),
        })?;
        let token = self.deps.session_tokens.issue(&session.id);
        let mut session_env = vec![
            ("HOME".to_string(), home.display().to_string()),
            ("TMPDIR".to_string(), tmp.display().to_string()),
            ("MITZO_URL".to_string(), self.deps.own_url.clone()),
            ("MITZO_SESSION_ID".to_string(), session.id.clone()),
            (
                "MITZO_SESSION_TOKEN".to_string(),
                token.expose_str().to_string(),
            ),
            ("DISABLE_AUTOUPDATER".to_string(), "1".to_string()),
        ];
        // agent.api_key_file / the anthropic-api-key credential, read before the drop.
        if let Some(key) = &self.deps.config.agent.api_key {
            session_env.push(("ANTHROPIC_API_KEY".into(), key.expose_str().to_string()));
        }
        let env = crate::sandbox::build_env(
            std::env::vars_os(),
            &self.deps.config.agent.env_passthrough,
            &session_env,
        );
        let mut args: Vec<String> = [
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--verbose",
            "--permission-prompt-tool",
            "stdio",
            "--permission-mode",
            mode.claude_permission_mode(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(m) = model {
            args.extend(["--model".to_string(), m]);
        }
        if let Some(r) = resume.filter(|r| is_agent_session_id(r)) {
            args.push(format!("--resume={r}"));
        }
        let (tx, rx) = mpsc::channel(256);
        let spec = SpawnSpec {
            program,
            args,
            cwd: session.cwd.clone(),
            policy,
            env,
        };
        let agent = match AgentProcess::spawn(spec, tx) {
            Ok(a) => Arc::new(a),
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
        agent.send(&protocol::control_request("init", protocol::initialize()));
        tracing::info!(session = %session.id, pid = agent.pid, "agent started");
        let me = self.clone();
        let s = session.clone();
        tokio::spawn(async move { me.drive(s, rx, generation).await });
        Ok(agent)
    }

    /// Everything the agent says, turned into events and decisions.
    async fn drive(
        self: Arc<Self>,
        session: Arc<Session>,
        mut rx: mpsc::Receiver<AgentEvent>,
        generation: u64,
    ) {
        while let Some(event) = rx.recv().await {
            // After a stop, what the dead agent still had queued is dropped.
            let current = session.lock().generation == generation;
            match event {
                AgentEvent::Message(msg) if current => self.on_message(&session, msg).await,
                AgentEvent::Malformed(why) if current => {
                    session.log.publish("error", json!({ "error": why }));
                }
                AgentEvent::Exit(exit) => {
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
            (pending, inner.row.state.clone())
        };
        self.deps.session_tokens.revoke(&session.id);
        self.withdraw_pending(session, pending, "agent_exit").await;
        let clean = exit.code == Some(0) && state == "idle";
        if !clean {
            let tail = exit.stderr_tail.trim();
            let error = if tail.is_empty() {
                exit.describe()
            } else {
                format!("{}; stderr: {tail}", exit.describe())
            };
            tracing::warn!(session = %session.id, %error, "agent ended unexpectedly");
            session.log.publish(
                "error",
                json!({ "error": error, "exitCode": exit.code, "signal": exit.signal }),
            );
        }
        session.set_state("idle");
        self.clean_up_after_agent(session).await;
    }

    /// Pending permissions of an agent that is gone: decided by nobody,
    /// and audited as such.
    async fn withdraw_pending(&self, session: &Session, pending: Vec<(String, Pending)>, by: &str) {
        for (perm, p) in pending {
            self.remember_resolved(&perm);
            session.log.publish(
                "permission_resolved",
                json!({ "permId": perm, "toolName": p.tool, "decision": "deny", "by": by }),
            );
            self.audit_as(&session.id, &p.tool, &p.input, "withdrawn", by)
                .await;
        }
    }

    /// Kill what the session's agent left behind (processes reparented to
    /// us, found by their `MITZO_SESSION_ID`) and remove its private tmp.
    async fn clean_up_after_agent(&self, session: &Session) {
        let marker = format!("MITZO_SESSION_ID={}", session.id);
        let _ =
            tokio::task::spawn_blocking(move || crate::sandbox::kill_marked_orphans(&marker)).await;
        let tmp = self.deps.state_dir.join("tmp").join(&session.id);
        let _ = tokio::fs::remove_dir_all(tmp).await;
    }

    async fn on_message(self: &Arc<Self>, session: &Arc<Session>, msg: Incoming) {
        match msg {
            Incoming::Init {
                agent_session_id, ..
            } => {
                // It goes back on the agent's command line: only a plain id.
                if !is_agent_session_id(&agent_session_id) {
                    session.log.publish(
                        "error",
                        json!({ "error": "agent reported a malformed session id; it will not be resumed" }),
                    );
                    return;
                }
                let row = {
                    let mut inner = session.lock();
                    inner.row.agent_session_id = Some(agent_session_id);
                    inner.row.clone()
                };
                session.log.save_row(row);
            }
            Incoming::Assistant(v) => publish_assistant(session, &v),
            Incoming::User(v) => publish_tool_results(session, &v),
            Incoming::Result(v) => {
                let row = {
                    let mut inner = session.lock();
                    inner.row.num_turns += 1;
                    inner.row.clone()
                };
                session.log.publish(
                    "result",
                    json!({
                        "subtype": v.get("subtype"),
                        "isError": v.get("is_error"),
                        "result": v.get("result").map(clip),
                        "numTurns": row.num_turns,
                        "costUsd": v.get("total_cost_usd"),
                    }),
                );
                session.log.save_row(row);
                session.set_state("idle");
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
                session.log.publish(
                    "error",
                    json!({ "error": format!("agent refused control request {request_id}: {e}") }),
                );
            }
            Incoming::ControlCancel { request_id } => {
                let perm = {
                    let mut inner = session.lock();
                    let perm = inner
                        .pending
                        .iter()
                        .find(|(_, p)| p.request_id == request_id)
                        .map(|(k, _)| k.clone());
                    perm.and_then(|k| inner.pending.remove(&k).map(|p| (k, p)))
                };
                if let Some((p, pending)) = perm {
                    self.remember_resolved(&p);
                    session.log.publish(
                        "permission_resolved",
                        json!({ "permId": p, "toolName": pending.tool, "decision": "cancelled", "by": "agent" }),
                    );
                    self.audit_as(
                        &session.id,
                        &pending.tool,
                        &pending.input,
                        "cancelled",
                        "agent",
                    )
                    .await;
                    if session.lock().pending.is_empty() {
                        session.set_state("running");
                    }
                }
            }
            Incoming::StreamEvent(_) | Incoming::System(_) | Incoming::ControlResponse { .. } => {}
            Incoming::Unknown(v) => {
                tracing::debug!(session = %session.id, kind = ?v.get("type"), "unknown agent message ignored");
            }
        }
    }

    async fn on_control_request(
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
            (
                Mode::parse(&inner.row.mode).unwrap_or_default(),
                inner.always.clone(),
            )
        };
        let (verdict, tier) =
            permissions::decide(&tool, &input, mode, &overrides, &always, &session.cwd);
        match verdict {
            Verdict::Allow => {
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::allow(&input),
                ));
                self.audit(&session.id, &tool, &input, "allow", DecidedBy::Policy)
                    .await;
            }
            Verdict::Deny(message) => {
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::deny(&message),
                ));
                session.log.publish(
                    "permission_resolved",
                    json!({ "permId": null, "toolName": tool, "decision": "deny", "by": "policy", "message": message }),
                );
                self.audit(&session.id, &tool, &input, "deny", DecidedBy::Policy)
                    .await;
            }
            Verdict::Ask if session.lock().pending.len() >= MAX_PENDING => {
                let message = "too many permission requests are waiting for the owner";
                agent.send(&protocol::control_success(
                    request_id,
                    protocol::deny(message),
                ));
                self.audit(&session.id, &tool, &input, "deny", DecidedBy::Policy)
                    .await;
            }
            Verdict::Ask => {
                let perm_id = hex::encode(rand::random::<[u8; 16]>());
                let timeout = Duration::from_secs(self.deps.config.permissions.timeout_secs);
                let expires_at = now_ms() + timeout.as_millis() as i64;
                session.lock().pending.insert(
                    perm_id.clone(),
                    Pending {
                        request_id: request_id.to_string(),
                        tool: tool.clone(),
                        input: input.clone(),
                    },
                );
                session.log.publish(
                    "permission_request",
                    json!({ "permId": perm_id, "toolName": tool, "toolInput": clip(&input), "tier": tier, "expiresAt": expires_at }),
                );
                session.set_state("requires_action");
                let me = self.clone();
                let s = session.clone();
                tokio::spawn(async move { me.pending_timers(s, perm_id, timeout).await });
            }
        }
    }

    /// ntfy after the delay, deny at the timeout: for one pending permission.
    async fn pending_timers(
        self: Arc<Self>,
        session: Arc<Session>,
        perm_id: String,
        timeout: Duration,
    ) {
        if let Some(ntfy) = self.deps.ntfy.clone() {
            let delay = ntfy.delay.min(timeout);
            tokio::time::sleep(delay).await;
            let pending = session
                .lock()
                .pending
                .get(&perm_id)
                .map(|p| (p.tool.clone(), permissions::summarise(&p.tool, &p.input)));
            if let Some((tool, summary)) = pending {
                let cap = self.approval_capability(&perm_id);
                let sid = session.id.clone();
                let p = perm_id.clone();
                let result = tokio::task::spawn_blocking(move || {
                    ntfy.notify_permission(&sid, &p, &tool, &summary, &cap)
                })
                .await;
                match result {
                    Ok(Ok(())) => tracing::info!(session = %session.id, "permission sent to ntfy"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "ntfy notification failed"),
                    Err(e) => tracing::warn!(error = %e, "ntfy task failed"),
                }
            }
            tokio::time::sleep(timeout.saturating_sub(delay)).await;
        } else {
            tokio::time::sleep(timeout).await;
        }
        let expired = session.lock().pending.contains_key(&perm_id);
        if expired
            && self
                .resolve(&session, &perm_id, Decision::Deny, DecidedBy::Timeout)
                .await
                .is_ok()
        {
            session
                .log
                .publish("permission_timeout", json!({ "permId": perm_id }));
        }
    }

    /// The capability an ntfy action carries for one permission.
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
            return Err(Error::Gone(
                "this permission was already decided or has expired".into(),
            ));
        }
        Err(Error::NotFound("no such permission".into()))
    }

    /// Decide a pending permission (single use).
    pub async fn resolve(
        &self,
        session: &Arc<Session>,
        perm_id: &str,
        decision: Decision,
        by: DecidedBy,
    ) -> Result<()> {
        let (pending, agent, remaining) = {
            let mut inner = session.lock();
            let Some(p) = inner.pending.remove(perm_id) else {
                drop(inner);
                return Err(if self.was_resolved(perm_id) {
                    Error::Gone("this permission was already decided or has expired".into())
                } else {
                    Error::NotFound("no such permission in this session".into())
                });
            };
            if decision == Decision::Always {
                inner.always.insert(p.tool.clone());
            }
            (p, inner.agent.clone(), inner.pending.len())
        };
        self.remember_resolved(perm_id);
        let response = match decision {
            Decision::Once | Decision::Always => protocol::allow(&pending.input),
            Decision::Deny => protocol::deny(match by {
                DecidedBy::Timeout => "no decision before the permission timed out",
                _ => "denied by the owner",
            }),
        };
        session.log.publish(
            "permission_resolved",
            json!({ "permId": perm_id, "toolName": pending.tool, "decision": decision.as_str(), "by": by.as_str() }),
        );
        // Running again before the agent hears the answer: its next events
        // (and its `result`, which means idle) must come after this.
        if remaining == 0 && agent.is_some() {
            session.set_state("running");
        }
        if let Some(agent) = agent {
            agent.send(&protocol::control_success(&pending.request_id, response));
        }
        let verdict = if decision == Decision::Deny {
            "deny"
        } else {
            decision.as_str()
        };
        self.audit(&session.id, &pending.tool, &pending.input, verdict, by)
            .await;
        Ok(())
    }

    async fn audit(
        &self,
        session_id: &str,
        tool: &str,
        input: &Value,
        decision: &str,
        by: DecidedBy,
    ) {
        self.audit_as(session_id, tool, input, decision, by.as_str())
            .await;
    }

    async fn audit_as(
        &self,
        session_id: &str,
        tool: &str,
        input: &Value,
        decision: &str,
        by: &str,
    ) {
        let (sid, tool, summary, decision, by) = (
            session_id.to_string(),
            tool.to_string(),
            permissions::summarise(tool, input),
            decision.to_string(),
            by.to_string(),
        );
        let result = self
            .deps
            .db
            .call(move |c| store::audit_insert(c, now_ms(), &sid, &tool, &summary, &decision, &by))
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "writing the audit log failed");
        }
    }

    pub fn has_pending(&self) -> bool {
        self.live().iter().any(|s| !s.lock().pending.is_empty())
    }

    /// Detach TTL and idle exit, once a second; its beat feeds the watchdog.
    pub async fn supervise(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.heartbeat.store(now_ms(), Ordering::Relaxed);
            let ttl = self.deps.config.session.detach_ttl;
            for session in self.live() {
                let expired = {
                    let inner = session.lock();
                    inner.agent.is_some()
                        && inner.watchers == 0
                        && inner.row.state == "idle"
                        && inner.detached_since.is_some_and(|t| t.elapsed() >= ttl)
                };
                if expired {
                    tracing::info!(session = %session.id, "no client for the detach TTL; stopping the agent");
                    // Not inline: the supervisor's beat must not wait on it.
                    let me = self.clone();
                    tokio::spawn(async move { me.stop(&session, "detached").await });
                }
            }
            // Twice the TTL (at least 5 s): long after the event writer flushed.
            self.evict_quiet_sessions((ttl * 2).max(Duration::from_secs(5)));
            if let Some(idle) = self.deps.config.idle_exit {
                let busy = self.any_agent_running()
                    || self.clients.load(Ordering::Relaxed) > 0
                    || self.has_pending();
                if busy {
                    self.touch();
                } else if now_ms() - self.last_activity.load(Ordering::Relaxed)
                    >= idle.as_millis() as i64
                {
                    tracing::info!(
                        "idle for {}; exiting (the socket starts mitzod again)",
                        humantime::format_duration(idle)
                    );
                    self.idle.notify_one();
                }
            }
        }
    }

    /// Drop sessions nobody uses from memory (their history stays in the
    /// database and they load again on demand), so a long-running server
    /// does not hold every ring it ever had. Only a session that nothing
    /// else holds a handle to is dropped.
    fn evict_quiet_sessions(&self, quiet_for: Duration) {
        self.map().retain(|_, s| {
            if Arc::strong_count(s) > 1 {
                return true;
            }
            let inner = s.lock();
            let quiet = inner.agent.is_none()
                && inner.watchers == 0
                && inner.pending.is_empty()
                && inner
                    .detached_since
                    .is_some_and(|t| t.elapsed() >= quiet_for);
            drop(inner);
            // Long after its last event: the writer has flushed it, so a
            // reload reads the right last seq.
            !(quiet && s.log.quiet_for() >= quiet_for)
        });
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
                    s.set_state("interrupted");
                }
            });
        }
        while stopping.join_next().await.is_some() {}
        store::flush(&self.persist).await;
    }
}

/// Longest string of agent output kept in one event: events are held in
/// memory (ring, broadcast, outboxes), so their size is bounded in bytes,
/// not only in number. The agent's own transcript keeps the whole text.
const MAX_EVENT_TEXT: usize = 256 * 1024;

/// `v` with every string longer than `MAX_EVENT_TEXT` cut (on a char
/// boundary) and marked.
fn clip(v: &Value) -> Value {
    match v {
        Value::String(text) if text.len() > MAX_EVENT_TEXT => {
            let mut end = MAX_EVENT_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Value::String(format!(
                "{}… [{} more bytes not shown]",
                &text[..end],
                text.len() - end
            ))
        }
        Value::Array(items) => Value::Array(items.iter().map(clip).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), clip(v))).collect())
        }
        other => other.clone(),
    }
}

/// Claude Code's session ids are UUIDs: hex digits and dashes.
fn is_agent_session_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && !id.starts_with('-')
}

fn validate_text(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    if value.len() < min || value.len() > max {
        return Err(Error::BadRequest(format!(
            "{field} must be {min}..={max} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(Error::BadRequest(format!("{field} contains a NUL byte")));
    }
    Ok(())
}

/// One assistant message → message_start, block_start/delta/end per
/// content block, message_end.
fn publish_assistant(session: &Session, v: &Value) {
    let message = v.get("message").cloned().unwrap_or(Value::Null);
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    session.log.publish(
        "message_start",
        json!({ "messageId": id, "model": message.get("model") }),
    );
    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, block) in blocks.iter().enumerate() {
        let kind = block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        session
            .log
            .publish("block_start", json!({ "index": index, "blockType": kind }));
        match kind {
            "text" => {
                session.log.publish(
                    "block_delta",
                    json!({ "index": index, "text": block.get("text").map(clip) }),
                );
                session.log.publish("block_end", json!({ "index": index }));
            }
            "thinking" => {
                session.log.publish(
                    "block_delta",
                    json!({ "index": index, "thinking": block.get("thinking").map(clip) }),
                );
                session.log.publish("block_end", json!({ "index": index }));
            }
            "tool_use" => {
                session.log.publish(
                    "block_end",
                    json!({ "index": index, "toolName": block.get("name"), "toolId": block.get("id"), "input": block.get("input").map(clip) }),
                );
            }
            _ => {
                session.log.publish("block_end", json!({ "index": index }));
            }
        }
    }
    session.log.publish(
        "message_end",
        json!({ "messageId": id, "stopReason": message.get("stop_reason") }),
    );
}

fn publish_tool_results(session: &Session, v: &Value) {
    let blocks = v
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for block in blocks {
        if block.get("type").and_then(Value::as_str) != Some("tool_result") {
            continue;
        }
        let result = match block.get("content") {
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Array(parts)) => Value::String(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            other => other.cloned().unwrap_or(Value::Null),
        };
        session.log.publish(
            "tool_result",
            json!({ "toolId": block.get("tool_use_id"), "result": clip(&result), "isError": block.get("is_error") }),
        );
    }
}
