//! Egress by name: mitzod's allow-listing proxy, the only way out of an
//! agent's network namespace (see [`mitzo_sandbox::netns`]).
//!
//! With `agent.network = "proxy"` each session's agent gets a proxy of its
//! own ([`SessionEgress`]): a Unix socket in the state dir, served by
//! mitzod, answering only the session's own processes, so every connection
//! is attributed to one session, and what the owner allows for one session
//! is never allowed for another. The allow-list is built by [`allow_list`]:
//! the operator's `agent.allowed_hosts` (narrowed, never widened, by the
//! repo's `.mitzo.json`), plus the model API and mitzod itself.

pub mod proxy;

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, watch};

use crate::config::{AgentConfig, HostEntry, NetworkMode, DEFAULT_MODEL_HOST};
use crate::error::{Error, Result};
use proxy::{AllowedHost, Asker, ProxyEvent, ProxyPolicy};

/// The loopback port of the forwarder inside an agent's network
/// namespace (the namespace is the agent's own, so any port is free).
pub const FORWARD_PORT: u16 = 3128;

/// The proxy URL an agent's environment carries.
pub fn proxy_url() -> String {
    format!("http://127.0.0.1:{FORWARD_PORT}")
}

/// The variables that send an agent's HTTP clients through the forwarder.
/// `NO_PROXY` is set empty so that a value passed through from mitzod's
/// environment cannot send mitzod's own address around the proxy (where,
/// in the namespace, nothing answers).
pub fn proxy_env(mode: NetworkMode) -> Vec<(String, String)> {
    if mode != NetworkMode::Proxy {
        return Vec::new();
    }
    let url = proxy_url();
    let mut env = Vec::new();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"] {
        env.push((k.to_string(), url.clone()));
        env.push((k.to_ascii_lowercase(), url.clone()));
    }
    env.push(("NO_PROXY".into(), String::new()));
    env.push(("no_proxy".into(), String::new()));
    env
}

/// `scheme://host[:port]/...` → (host, port); `None` when it is not an
/// http(s) URL with a host.
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (default_port, rest) = if let Some(r) = url.strip_prefix("https://") {
        (443, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (80, r)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let e = HostEntry::parse(authority).ok()?;
    let port = if has_port(authority) {
        e.port
    } else {
        default_port
    };
    Some((e.host, port))
}

fn entry(e: &HostEntry) -> AllowedHost {
    AllowedHost {
        host: e.host.clone(),
        port: Some(e.port),
        private_ok: e.private,
        address: e.address,
    }
}

/// What a repo's `.mitzo.json` says about hosts: `None` when it says
/// nothing (the operator's list applies whole).
pub type RepoHosts<'a> = Option<&'a [String]>;

/// The session's allow-list: the operator's entries kept by the repo's
/// `allowedHosts` (a repo entry `host` keeps that host on any listed port,
/// `host:port` that port only; a repo entry the operator did not list adds
/// nothing), then the model API (the host of `ANTHROPIC_BASE_URL` when the
/// agent gets one, else `api.anthropic.com` when the operator listed it)
/// and mitzod itself, which the repo cannot remove: without them the agent
/// cannot work. The base URL and mitzod's own address are the operator's
/// choice, so they may be private.
pub fn allow_list(
    agent: &AgentConfig,
    agent_env: &[(OsString, OsString)],
    own_url: &str,
    repo: RepoHosts<'_>,
) -> Vec<AllowedHost> {
    // (host, port or any) for each repo entry that parses.
    let repo: Option<Vec<(String, Option<u16>)>> = repo.map(|list| {
        list.iter()
            .filter_map(|r| {
                let e = HostEntry::parse(r).ok()?;
                Some((e.host, has_port(r).then_some(e.port)))
            })
            .collect()
    });
    let keep = |e: &HostEntry| match &repo {
        None => true,
        Some(list) => list
            .iter()
            .any(|(h, p)| *h == e.host && p.map_or(true, |p| p == e.port)),
    };
    let mut out: Vec<AllowedHost> = Vec::new();
    // The operator's entries first: a pinned address wins over the same
    // name found below.
    let base = agent_env
        .iter()
        .find(|(k, _)| k == "ANTHROPIC_BASE_URL")
        .and_then(|(_, v)| v.to_str())
        .and_then(url_host_port);
    for e in &agent.allowed_hosts {
        let essential = match &base {
            Some((h, p)) => *h == e.host && *p == e.port,
            None => e.host == DEFAULT_MODEL_HOST,
        };
        if essential || keep(e) {
            out.push(entry(e));
        }
    }
    let mut add = |host: String, port: u16| {
        if !out
            .iter()
            .any(|a| a.host == host && a.port == Some(port) && a.private_ok)
        {
            out.push(AllowedHost {
                host,
                port: Some(port),
                private_ok: true,
                address: None,
            });
        }
    };
    if let Some((h, p)) = base {
        add(h, p);
    }
    if let Some((h, p)) = url_host_port(own_url) {
        add(h, p);
    }
    out
}

/// Whether a `host[:port]` string names a port.
fn has_port(s: &str) -> bool {
    match s.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => s.contains(':'),
    }
}

/// One session's proxy: its socket, the hosts the owner allowed for it,
/// and the tasks serving it. Dropping it stops the proxy and removes the
/// socket.
pub struct SessionEgress {
    pub socket: PathBuf,
    pub granted: Arc<RwLock<Vec<AllowedHost>>>,
    peer_root: watch::Sender<i32>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for SessionEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEgress")
            .field("socket", &self.socket)
            .finish()
    }
}

impl SessionEgress {
    /// Listen on `<dir>/<session>.sock` (the dir created 0700) with
    /// `allowed`, `granted` and `ask`; `on_event` sees every connection.
    pub fn start(
        dir: &Path,
        session: &str,
        allowed: Vec<AllowedHost>,
        granted: Arc<RwLock<Vec<AllowedHost>>>,
        ask: Option<Asker>,
        on_event: impl Fn(ProxyEvent) + Send + 'static,
    ) -> Result<SessionEgress> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let socket = dir.join(format!("{session}.sock"));
        // A socket left by a mitzod that died is stale: nobody serves it.
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket)
            .map_err(|e| Error::io(format!("listening on {}", socket.display()), e))?;
        let (peer_tx, peer_rx) = watch::channel(0);
        let policy = Arc::new(ProxyPolicy {
            allowed,
            granted: granted.clone(),
            ask,
            peer_root: Some(peer_rx),
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let serve = tokio::spawn(proxy::serve(listener, policy, tx));
        let events = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                on_event(ev);
            }
        });
        Ok(SessionEgress {
            socket,
            granted,
            peer_root: peer_tx,
            tasks: vec![serve.abort_handle(), events.abort_handle()],
        })
    }

    /// The session's reaper: only it and its descendants may connect.
    pub fn set_peer_root(&self, pid: u32) {
        let _ = self.peer_root.send(pid as i32);
    }
}

impl Drop for SessionEgress {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One audit line for a proxied connection.
pub fn audit_summary(ev: &ProxyEvent) -> String {
    if ev.host.is_empty() {
        return ev.detail.clone();
    }
    if ev.allowed {
        format!(
            "{}:{} via {} · {} B up, {} B down",
            ev.host, ev.port, ev.detail, ev.up, ev.down
        )
    } else {
        format!("{}:{} refused: {}", ev.host, ev.port, ev.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(hosts: &[&str]) -> AgentConfig {
        AgentConfig {
            allowed_hosts: hosts.iter().map(|h| HostEntry::parse(h).unwrap()).collect(),
            ..AgentConfig::default()
        }
    }

    fn names(l: &[AllowedHost]) -> Vec<String> {
        l.iter()
            .map(|a| format!("{}:{}", a.host, a.port.unwrap_or(0)))
            .collect()
    }

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            url_host_port("https://api.example.com/v1"),
            Some(("api.example.com".into(), 443))
        );
        assert_eq!(
            url_host_port("http://127.0.0.1:3100"),
            Some(("127.0.0.1".into(), 3100))
        );
        assert_eq!(
            url_host_port("http://[::1]:8080/x"),
            Some(("::1".into(), 8080))
        );
        assert_eq!(
            url_host_port("http://model.test"),
            Some(("model.test".into(), 80))
        );
        assert_eq!(url_host_port("ftp://x"), None);
        assert_eq!(url_host_port("http://u@x/"), None);
    }

    #[test]
    fn the_list_has_the_operators_hosts_the_model_and_mitzod() {
        let a = agent(&["api.anthropic.com", "github.com", "pypi.org"]);
        let l = allow_list(&a, &[], "http://127.0.0.1:3100", None);
        assert_eq!(
            names(&l),
            [
                "api.anthropic.com:443",
                "github.com:443",
                "pypi.org:443",
                "127.0.0.1:3100"
            ]
        );
        assert!(!l[1].private_ok && l[3].private_ok);
        let env = vec![("ANTHROPIC_BASE_URL".into(), "http://model.test:8080".into())];
        let l = allow_list(&a, &env, "http://127.0.0.1:3100", None);
        assert!(names(&l).contains(&"model.test:8080".to_string()));
    }

    #[test]
    fn a_repo_narrows_and_never_widens() {
        let a = agent(&[
            "api.anthropic.com",
            "github.com",
            "github.com:22",
            "pypi.org",
        ]);
        let repo = vec!["github.com:443".to_string(), "evil.example".to_string()];
        let l = allow_list(&a, &[], "http://127.0.0.1:3100", Some(&repo));
        // pypi.org and github.com:22 go, evil.example is not added, the
        // model API and mitzod stay.
        assert_eq!(
            names(&l),
            ["api.anthropic.com:443", "github.com:443", "127.0.0.1:3100"]
        );
        let repo = vec!["github.com".to_string()];
        let l = allow_list(&a, &[], "http://127.0.0.1:3100", Some(&repo));
        assert_eq!(
            names(&l),
            [
                "api.anthropic.com:443",
                "github.com:443",
                "github.com:22",
                "127.0.0.1:3100"
            ]
        );
        // Control: without the repo's list, everything the operator listed.
        assert_eq!(allow_list(&a, &[], "http://127.0.0.1:3100", None).len(), 5);
    }
}
