//! The registry: the sessions held in memory, created, loaded from the
//! database on demand, renamed, attached to, detached from and deleted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{broadcast, Notify};

use super::events::{now_ms, EventLog, Frame};
use super::store::{self, SessionRow};
use super::writer::Writer;
use super::{
    title_from_prompt, validate_text, validate_title, Deps, Inner, NewSession, Session,
    SessionState,
};
use crate::error::{Error, Result};
use crate::git::Git;
use mitzo_protocol::ServerEvent;
use mitzo_sandbox::Enforcement;

pub struct SessionManager {
    pub(crate) deps: Deps,
    pub(crate) git: Git,
    pub(crate) writer: Writer,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Permission ids decided or expired recently: 410 rather than 404.
    pub(crate) resolved: Mutex<VecDeque<String>>,
    pub clients: AtomicUsize,
    /// Set at shutdown: no new agent starts.
    pub(crate) shutting_down: AtomicBool,
    pub(crate) last_activity: AtomicI64,
    pub(crate) heartbeat: AtomicI64,
    pub idle: Notify,
    /// `session_updated` frames, for every connection.
    pub(crate) updates: broadcast::Sender<Frame>,
}

pub(crate) fn landlock_mode(config: &crate::config::Config) -> Enforcement {
    config.sandbox.landlock
}

impl SessionManager {
    pub fn new(deps: Deps) -> Result<Arc<SessionManager>> {
        let git = Git::new(landlock_mode(&deps.config))?;
        let writer = Writer::spawn(deps.db.clone());
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
            writer,
            sessions: Mutex::new(HashMap::new()),
            resolved: Mutex::new(VecDeque::new()),
            clients: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            last_activity: AtomicI64::new(now_ms()),
            heartbeat: AtomicI64::new(now_ms()),
            idle: Notify::new(),
            updates: broadcast::channel(1024).0,
        }))
    }

    pub fn touch(&self) {
        self.last_activity.store(now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
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
                return Err(Error::Invalid(
                    "model: only letters, digits and -._:[] are allowed".into(),
                ));
            }
        }
        let (repo_name, repo) = self.choose_repo(req.repo.as_deref())?;
        let repo_cfg = {
            let configs = self.deps.repo_configs.clone();
            let r = repo.clone();
            tokio::task::spawn_blocking(move || configs.get(&r))
                .await
                .map_err(|e| Error::internal(e.to_string()))?
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
        .map_err(|e| Error::internal(e.to_string()))??;
        let now = now_ms();
        let title = req
            .first_prompt
            .as_deref()
            .map(title_from_prompt)
            .filter(|t| !t.is_empty())
            .or_else(|| req.summary.as_deref().map(title_from_prompt))
            .unwrap_or_default();
        let row = SessionRow {
            id: id.clone(),
            source: req.source,
            summary: req.summary.unwrap_or_default(),
            title,
            mode: req.mode,
            model: req.model,
            repo: repo.display().to_string(),
            repo_name,
            cwd: cwd.display().to_string(),
            branch: isolation.then(|| crate::worktree::branch_name(&id)),
            isolation,
            headless: req.headless,
            agent_session_id: None,
            state: SessionState::Idle,
            num_turns: 0,
            created_at: now,
            last_modified: now,
            history_compacted: false,
        };
        let saved = row.clone();
        self.deps.db.call(move |c| store::insert(c, &saved)).await?;
        let session = Arc::new(self.session_from_row(row, 0));
        self.map().insert(id, session.clone());
        self.changed(&session);
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
                self.writer.clone(),
            ),
            inner: Mutex::new(Inner {
                row,
                agent: None,
                generation: 0,
                always: HashSet::new(),
                pending: HashMap::new(),
                watchers: 0,
                detached_since: Some(Instant::now()),
                net: Default::default(),
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

    /// Rename: the row, a persisted `title_changed`, `session_updated`.
    pub async fn rename(&self, session: &Arc<Session>, title: &str) -> Result<()> {
        let title = validate_title(title)?;
        let row = {
            let mut inner = session.lock();
            inner.row.title = title.clone();
            inner.row.clone()
        };
        session.log.publish(ServerEvent::TitleChanged { title });
        session.log.save_row(row);
        self.changed(session);
        Ok(())
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
        // Its agent home (Claude Code's transcript and settings) goes too.
        let home = self.deps.state_dir.join("agent-homes").join(id);
        let _ = tokio::fs::remove_dir_all(home).await;
        // And its checkout: the commits are fetched into the main repo's
        // `session/<id>` branch first, uncommitted changes are discarded.
        let row = session.row();
        if row.isolation {
            let landlock = landlock_mode(&self.deps.config);
            let repo = session.repo.clone();
            let owned = id.to_string();
            let removed = tokio::task::spawn_blocking(move || {
                let git = Git::new(landlock)?;
                crate::worktree::remove_session_checkout(&git, &repo, &owned, true)
            })
            .await;
            match removed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(session = %id, error = %e, "session deleted; its checkout was not removed")
                }
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "session deleted; removing its checkout failed")
                }
            }
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
}
