//! The state every request handler shares.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{broadcast, Semaphore};

use crate::auth::owner::OwnerAuth;
use crate::auth::passphrase::Passphrase;
use crate::auth::rate_limit::LoginLimiter;
use crate::auth::session_tokens::SessionTokens;
use crate::config::{Config, CookieSecure, ListenAddr};
use crate::db::Db;
use crate::repo_config::RepoConfigs;
use crate::state::InternalTokenStore;
use crate::tasks::TaskEvent;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub state_dir: PathBuf,
    pub db: Db,
    pub owner: Arc<OwnerAuth>,
    pub passphrase: Arc<Passphrase>,
    pub internal_token: Arc<InternalTokenStore>,
    pub session_tokens: Arc<SessionTokens>,
    pub login_limiter: Arc<LoginLimiter>,
    /// argon2 is memory-hard: bound how many run at once.
    pub argon_permits: Arc<Semaphore>,
    pub web: Arc<WebPolicy>,
    /// Task board changes, for watching WebSocket clients.
    pub task_events: broadcast::Sender<TaskEvent>,
    /// `.mitzo.json` of each repo, re-read when it changes.
    pub repo_configs: Arc<RepoConfigs>,
    /// Agent sessions and their permission broker.
    pub sessions: Arc<crate::sessions::SessionManager>,
}

impl AppState {
    /// What `auth::authenticate` checks a credential against.
    pub fn verifiers(&self) -> crate::auth::Verifiers<'_> {
        crate::auth::Verifiers {
            owner: &self.owner,
            internal_token: &self.internal_token,
            session_tokens: &self.session_tokens,
        }
    }

    /// What `auth::login::log_in` needs.
    pub fn login_deps(&self) -> crate::auth::login::LoginDeps<'_> {
        crate::auth::login::LoginDeps {
            limiter: &self.login_limiter,
            argon_permits: &self.argon_permits,
            passphrase: &self.passphrase,
            owner: &self.owner,
        }
    }
}

/// What the browser-safety checks compare against.
#[derive(Debug, Clone)]
pub struct WebPolicy {
    /// Host names (no port), lowercase; IPv6 in brackets.
    pub allowed_hosts: HashSet<String>,
    /// Full origins (`scheme://host[:port]`), lowercase.
    pub allowed_origins: HashSet<String>,
    /// The owner reaches us over TLS (terminated in front of us): Secure
    /// cookies and HSTS.
    pub tls: bool,
}

impl WebPolicy {
    pub fn from_config(config: &Config, extra_listen: &[std::net::SocketAddr]) -> WebPolicy {
        let mut hosts: HashSet<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Ok(name) = nix::unistd::gethostname() {
            let name = name.to_string_lossy().to_ascii_lowercase();
            if !name.is_empty() {
                hosts.insert(name);
            }
        }
        let mut add_ip = |ip: std::net::IpAddr| {
            if !ip.is_unspecified() {
                hosts.insert(match ip {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                });
            }
        };
        for l in &config.listen {
            if let ListenAddr::Tcp(a) = l {
                add_ip(a.ip());
            }
        }
        for a in extra_listen {
            add_ip(a.ip());
        }
        for h in &config.allowed_hosts {
            hosts.insert(crate::config::host_without_port(h).to_ascii_lowercase());
        }
        let mut origins: HashSet<String> = config
            .allowed_origins
            .iter()
            .filter_map(|o| crate::config::PublicUrl::parse(o).ok())
            .map(|u| u.origin)
            .collect();
        if let Some(url) = &config.public_url {
            hosts.insert(url.host.clone());
            origins.insert(url.origin.clone());
        }
        let tls = match config.cookie_secure {
            CookieSecure::Always => true,
            CookieSecure::Never => false,
            CookieSecure::Auto => config.public_url.as_ref().is_some_and(|u| u.https),
        };
        WebPolicy {
            allowed_hosts: hosts,
            allowed_origins: origins,
            tls,
        }
    }
}
