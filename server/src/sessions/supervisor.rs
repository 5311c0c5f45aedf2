//! The supervisor: once a second it stops agents nobody watched for the
//! detach TTL, drops quiet sessions from memory, exits when idle (socket
//! activation starts mitzod again), and beats for the watchdog. At
//! start-up and hourly it applies the event-log retention.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::events::now_ms;
use super::{SessionManager, SessionState};

impl SessionManager {
    /// The supervisor beat within `max`: proof for the watchdog.
    pub fn supervisor_alive(&self, max: Duration) -> bool {
        now_ms() - self.heartbeat.load(Ordering::Relaxed) <= max.as_millis() as i64
    }

    fn any_agent_running(&self) -> bool {
        self.live().iter().any(|s| s.is_active())
    }

    /// One retention pass over the event log with the configured limits.
    pub async fn apply_retention(&self) -> crate::error::Result<super::retention::RetentionReport> {
        let days = self.deps.config.session.retain_days;
        let bytes = self
            .deps
            .config
            .session
            .retain_mb
            .saturating_mul(1024 * 1024);
        let report = self
            .deps
            .db
            .call(move |c| super::retention::run(c, days, bytes, now_ms()))
            .await?;
        // Loaded sessions keep their row in memory: tell them too.
        for session in self.live() {
            if report.sessions.contains(&session.id) {
                session.lock().row.history_compacted = true;
            }
        }
        Ok(report)
    }

    pub async fn supervise(self: Arc<Self>) {
        // Its own task: a long pass must not delay the watchdog beat.
        let me = self.clone();
        tokio::spawn(async move {
            // The first tick is immediate: a pass at start-up.
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                match me.apply_retention().await {
                    Ok(r) if r.changed() => tracing::info!(
                        compacted = r.compacted,
                        aged_out = r.aged_out,
                        over_size = r.over_size,
                        sessions = r.sessions.len(),
                        pages_freed = r.pages_freed,
                        vacuumed = r.vacuumed,
                        "event-log retention compacted session history"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("event-log retention failed: {e}"),
                }
            }
        });
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
                        && inner.row.state == SessionState::Idle
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
}
