//! A session's network with `agent.network = "proxy"`: its proxy (started
//! with the agent, ended with it), the audit row of every connection, the
//! `network_refused` events, and `network_request`: a host not on the list
//! waits for the owner, who answers like a tool call.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Pending, PendingKind, Session, SessionManager};
use crate::egress::proxy::{AllowedHost, Asker, ProxyEvent};
use crate::egress::{self, SessionEgress};
use crate::error::Result;
use mitzo_protocol::{DecidedBy, Decision, ServerEvent, SessionState};

/// The tool name network requests carry in `permission_resolved`, the
/// audit log and notifications.
pub const NETWORK_TOOL: &str = "Network";

/// At most one `network_refused` event per host and port in this window
/// (every connection still gets its audit row).
const REFUSED_EVENT_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct SessionNet {
    /// The running agent's proxy; dropped (stopped) with the agent.
    pub egress: Option<Arc<SessionEgress>>,
    /// Hosts the owner allowed for the rest of this session.
    pub granted: Arc<RwLock<Vec<AllowedHost>>>,
    /// Hosts the owner denied: not asked about again in this session.
    pub denied: HashSet<(String, u16)>,
    /// The connection waiting on each pending network request.
    pub waiters: HashMap<String, oneshot::Sender<Decision>>,
    /// When a refusal of each host was last published.
    pub refused_at: HashMap<(String, u16), Instant>,
}

impl SessionManager {
    /// Start the session's proxy for an agent about to start.
    pub(crate) fn start_egress(
        self: &Arc<Self>,
        session: &Arc<Session>,
        agent_env: &[(OsString, OsString)],
    ) -> Result<Arc<SessionEgress>> {
        let config = &self.deps.config;
        let repo_hosts = {
            let configs = self.deps.repo_configs.clone();
            configs.get(&session.repo).allowed_hosts.clone()
        };
        let allowed = egress::allow_list(
            &config.agent,
            agent_env,
            &self.deps.own_url,
            repo_hosts.as_deref(),
        );
        let granted = session.lock().net.granted.clone();
        let ask: Asker = {
            let me = Arc::downgrade(self);
            let s = Arc::downgrade(session);
            Arc::new(move |host: String, port: u16| {
                let (me, s): (Weak<SessionManager>, Weak<Session>) = (me.clone(), s.clone());
                Box::pin(async move {
                    let (me, s) = (me.upgrade()?, s.upgrade()?);
                    me.ask_network(&s, host, port).await
                })
            })
        };
        let on_event = {
            let me = Arc::downgrade(self);
            let s = Arc::downgrade(session);
            move |ev: ProxyEvent| {
                if let (Some(me), Some(s)) = (me.upgrade(), s.upgrade()) {
                    tokio::spawn(async move { me.on_proxy_event(&s, ev).await });
                }
            }
        };
        let dir = self.deps.state_dir.join("egress");
        let e = SessionEgress::start(&dir, &session.id, allowed, granted, Some(ask), on_event)?;
        Ok(Arc::new(e))
    }

    /// Every connection in the audit log; refusals also in the session.
    async fn on_proxy_event(&self, session: &Arc<Session>, ev: ProxyEvent) {
        let decision = if ev.allowed { "allow" } else { "deny" };
        if ev.host.is_empty() {
            tracing::warn!(session = %session.id, "{}", ev.detail);
        }
        self.audit(
            &session.id,
            NETWORK_TOOL,
            &egress::audit_summary(&ev),
            decision,
            DecidedBy::Policy,
        )
        .await;
        if ev.allowed || ev.host.is_empty() {
            return;
        }
        let publish = {
            let mut inner = session.lock();
            let now = Instant::now();
            let key = (ev.host.clone(), ev.port);
            let recent = inner
                .net
                .refused_at
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < REFUSED_EVENT_EVERY);
            if !recent {
                if inner.net.refused_at.len() > 1024 {
                    inner.net.refused_at.clear();
                }
                inner.net.refused_at.insert(key, now);
            }
            !recent
        };
        if publish {
            session.log.publish(ServerEvent::NetworkRefused {
                host: ev.host,
                port: ev.port,
                reason: ev.detail,
            });
        }
    }

    /// A host not on the list: ask the owner while the connection waits.
    /// `None`: refused (denied, timed out, the agent ended, or too many
    /// requests wait already).
    pub(crate) async fn ask_network(
        self: &Arc<Self>,
        session: &Arc<Session>,
        host: String,
        port: u16,
    ) -> Option<AllowedHost> {
        let input = serde_json::json!({ "host": host, "port": port });
        {
            let inner = session.lock();
            if inner.agent.is_none()
                || inner.net.denied.contains(&(host.clone(), port))
                || inner.pending.len() >= super::broker::MAX_PENDING
                // One question per host and port at a time.
                || inner
                    .pending
                    .values()
                    .any(|p| matches!(p.kind, PendingKind::Network) && p.input == input)
            {
                return None;
            }
        }
        let (tx, rx) = oneshot::channel();
        let (perm_id, expires_at, timeout) = self.add_pending(
            session,
            Pending {
                request_id: String::new(),
                tool: NETWORK_TOOL.into(),
                input,
                kind: PendingKind::Network,
                audit_summary: format!("reach {host}:{port}"),
            },
        );
        session.lock().net.waiters.insert(perm_id.clone(), tx);
        session.log.publish(ServerEvent::NetworkRequest {
            perm_id: perm_id.clone(),
            host: host.clone(),
            port,
            expires_at,
        });
        // Between turns nothing runs that the state could describe: the
        // request waits (and shows) without changing it.
        if matches!(
            session.row().state,
            SessionState::Running | SessionState::RequiresAction
        ) {
            self.waiting(session, perm_id, timeout);
        } else {
            self.changed(session);
            let me = self.clone();
            let s = session.clone();
            tokio::spawn(async move { me.pending_timers(s, perm_id, timeout).await });
        }
        // An address the owner approved as written is reached as approved;
        // a name must still resolve to a public address (it could be
        // re-pointed at the owner's network after the approval).
        let literal = host.parse::<std::net::IpAddr>().is_ok();
        let entry = AllowedHost {
            host,
            port: Some(port),
            private_ok: literal,
            address: None,
        };
        match rx.await.ok()? {
            Decision::Allow => Some(entry),
            Decision::AllowSession => {
                session
                    .lock()
                    .net
                    .granted
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(entry.clone());
                Some(entry)
            }
            Decision::Deny => None,
        }
    }

    /// The decision on a network request reaches its connection.
    pub(crate) fn decide_network(
        &self,
        session: &Session,
        perm_id: &str,
        pending: &Pending,
        decision: Decision,
        by: DecidedBy,
    ) {
        let mut inner = session.lock();
        if decision == Decision::Deny && by == DecidedBy::Owner {
            let host = pending.input.get("host").and_then(|h| h.as_str());
            let port = pending.input.get("port").and_then(|p| p.as_u64());
            if let (Some(h), Some(p)) = (host, port) {
                inner.net.denied.insert((h.to_string(), p as u16));
            }
        }
        if let Some(w) = inner.net.waiters.remove(perm_id) {
            let _ = w.send(decision);
        }
    }

    /// The agent ended: its proxy stops, waiting connections are refused.
    pub(crate) fn end_egress(&self, session: &Session) {
        let mut inner = session.lock();
        inner.net.egress = None;
        inner.net.waiters.clear();
    }
}
