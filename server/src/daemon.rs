//! Serving: the runtime starts only here, after the privilege drop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::app::{AppState, WebPolicy};
use crate::auth::owner::OwnerAuth;
use crate::auth::rate_limit::LoginLimiter;
use crate::auth::session_tokens::SessionTokens;
use crate::config::Config;
use crate::credentials::Credentials;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::http::Peer;
use crate::state::{InternalTokenStore, TokenRepair, DATABASE_FILE, INTERNAL_TOKEN_FILE};
use crate::systemd::{self, Listener};

/// Everything opened before the runtime exists.
pub struct Prepared {
    pub config: Config,
    pub state_dir: std::path::PathBuf,
    pub credentials: Credentials,
    pub listeners: Vec<Listener>,
    pub token: crate::secret::Secret,
    pub db: Db,
    /// The config file, which agents must not read.
    pub config_file: Option<std::path::PathBuf>,
}

/// Open the internal token and the database. Runs before the privilege
/// drop (so a state dir the service user cannot reach by path still works);
/// as root, whatever it creates is handed to `owner`.
pub fn open_state_files(
    state_dir: &std::path::Path,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> Result<(crate::secret::Secret, Db)> {
    let (token, repairs) = crate::state::load_or_create_internal_token(state_dir, owner)?;
    for repair in repairs {
        match repair {
            TokenRepair::Created => tracing::info!("created a new internal token"),
            TokenRepair::Regenerated(reason) => {
                tracing::warn!(%reason, "internal token file was corrupt; generated a new token")
            }
            TokenRepair::Normalised => {
                tracing::warn!("internal token was not lowercase hex; normalised and rewritten")
            }
            TokenRepair::Tightened(mode) => {
                tracing::warn!(
                    mode = format!("{mode:o}"),
                    "internal token file was readable by others; tightened to 0600"
                )
            }
        }
    }
    let db_path = state_dir.join(DATABASE_FILE);
    let db = Db::open(&db_path)?;
    if let Some((uid, gid)) = owner {
        for suffix in ["", "-wal", "-shm"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", db_path.display()));
            if p.exists() {
                nix::unistd::chown(&p, Some(uid), Some(gid))
                    .map_err(|e| Error::StateDir(format!("chown {}: {e}", p.display())))?;
            }
        }
    }
    Ok((token, db))
}

/// Build the shared state from what `main` opened.
pub fn build_state(p: Prepared) -> Result<(AppState, Vec<Listener>)> {
    let Prepared {
        config,
        state_dir,
        credentials,
        listeners,
        token,
        db,
        config_file,
    } = p;
    let owner = OwnerAuth::new(
        &credentials.jwt_secret,
        config.cookie_max_age_hours,
        db.clone(),
    )?;
    let tcp_addrs: Vec<std::net::SocketAddr> = listeners
        .iter()
        .filter_map(|l| match l {
            Listener::Tcp { listener, .. } => listener.local_addr().ok(),
            Listener::Unix { .. } => None,
        })
        .collect();
    let config = Arc::new(config);
    let session_tokens = Arc::new(SessionTokens::default());
    let repo_configs = Arc::new(crate::repo_config::RepoConfigs::default());
    let hidden: Vec<std::path::PathBuf> = [
        config.jwt_secret_file.clone(),
        config.passphrase_hash_file.clone(),
        config.passphrase_file.clone(),
        config.ntfy.as_ref().and_then(|n| n.token_file.clone()),
        config_file,
    ]
    .into_iter()
    .flatten()
    .collect();
    let (own_url, own_port) = own_address(&listeners, &config);
    let ntfy = match (&config.ntfy, &config.public_url) {
        (Some(n), Some(url)) => Some(crate::ntfy::Ntfy::new(
            n,
            credentials.ntfy_token.clone(),
            url.origin.clone(),
        )),
        _ => None,
    };
    let sessions = crate::sessions::SessionManager::new(crate::sessions::Deps {
        config: config.clone(),
        state_dir: state_dir.clone(),
        db: db.clone(),
        session_tokens: session_tokens.clone(),
        repo_configs: repo_configs.clone(),
        hidden,
        own_url,
        own_port,
        approval_key: credentials.jwt_secret.clone(),
        ntfy,
    })?;
    let state = AppState {
        sessions,
        web: Arc::new(WebPolicy::from_config(&config, &tcp_addrs)),
        internal_token: Arc::new(InternalTokenStore::new(
            state_dir.join(INTERNAL_TOKEN_FILE),
            token,
        )),
        config,
        state_dir,
        db,
        owner: Arc::new(owner),
        passphrase: Arc::new(credentials.passphrase),
        session_tokens,
        login_limiter: Arc::new(LoginLimiter::default()),
        argon_permits: Arc::new(Semaphore::new(2)),
        task_events: tokio::sync::broadcast::channel(256).0,
        repo_configs,
    };
    Ok((state, listeners))
}

/// Where agents reach mitzod: the first TCP listener (loopback when it
/// listens on every address), else `public_url`.
fn own_address(listeners: &[Listener], config: &Config) -> (String, Option<u16>) {
    for l in listeners {
        if let Listener::Tcp { listener, .. } = l {
            if let Ok(addr) = listener.local_addr() {
                let ip = if addr.ip().is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    addr.ip()
                };
                return (
                    format!("http://{}", std::net::SocketAddr::new(ip, addr.port())),
                    Some(addr.port()),
                );
            }
        }
    }
    match &config.public_url {
        Some(u) => (u.origin.clone(), None),
        None => ("http://127.0.0.1:3100".into(), None),
    }
}

/// Worker threads of the runtime; 0 is a current-thread runtime.
/// `MITZO_RUNTIME_THREADS` overrides it (for measuring, see the README's
/// benchmarks).
const RUNTIME_THREADS: usize = 2;

pub fn run(p: Prepared) -> Result<()> {
    let threads = std::env::var("MITZO_RUNTIME_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(RUNTIME_THREADS);
    let mut builder = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    runtime.block_on(serve(p))
}

async fn serve(p: Prepared) -> Result<()> {
    let stop_requested = stop_signal()?;
    let (state, listeners) = build_state(p)?;
    let app = crate::http::router(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let mut described = Vec::new();
    for listener in listeners {
        described.push(listener.describe());
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        match listener {
            Listener::Tcp { listener, .. } => {
                let l = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| Error::io("adopting listener", e))?;
                let svc = app.clone().into_make_service_with_connect_info::<Peer>();
                servers.spawn(
                    async move { axum::serve(l, svc).with_graceful_shutdown(shutdown).await },
                );
            }
            Listener::Unix { listener, .. } => {
                let l = tokio::net::UnixListener::from_std(listener)
                    .map_err(|e| Error::io("adopting listener", e))?;
                let svc = app.clone().into_make_service_with_connect_info::<Peer>();
                servers.spawn(
                    async move { axum::serve(l, svc).with_graceful_shutdown(shutdown).await },
                );
            }
        }
    }
    let status = format!("serving on {}", described.join(", "));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "{status}");
    let health = state.db.health();
    health.set_serving_status(&status);
    systemd::notify_ready(&health.status_line());
    if let Some(interval) = systemd::watchdog_interval() {
        tokio::spawn(watchdog(interval, state.clone()));
    }
    tokio::spawn(state.sessions.clone().supervise());
    tokio::spawn(clean_up_checkouts_periodically(state.config.clone()));
    tokio::spawn(crate::memory::trim_after_bursts());
    let reason = tokio::select! {
        _ = stop_requested => "shutting down",
        _ = state.sessions.idle.notified() => "idle; exiting until the next connection",
    };
    systemd::notify_stopping(reason);
    tracing::info!("{reason}");
    let _ = stop_tx.send(true);
    state.sessions.stop_all().await;
    // In-flight requests get a bounded grace period.
    let drain = async { while servers.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10s; exiting anyway");
    }
    Ok(())
}

/// `session.worktree_cleanup` over every configured repo: at start-up, then
/// hourly. Checkouts are found by mitzod's own records (see
/// [`crate::worktree`]), never by what a checkout or git's listing says.
async fn clean_up_checkouts_periodically(config: Arc<Config>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let config = config.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || clean_up_checkouts(&config)).await {
            tracing::warn!(error = %e, "checkout cleanup task failed");
        }
    }
}

fn clean_up_checkouts(config: &Config) {
    let mut repos: Vec<&std::path::Path> = config.repo_path.iter().map(|p| p.as_path()).collect();
    repos.extend(config.repos.values().map(|p| p.as_path()));
    repos.sort();
    repos.dedup();
    if repos.is_empty() {
        return;
    }
    let git = match crate::git::Git::new(config.sandbox.landlock.into()) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "checkout cleanup: no git");
            return;
        }
    };
    for repo in repos {
        match crate::worktree::cleanup_stale(
            &git,
            repo,
            &config.session,
            std::time::SystemTime::now(),
        ) {
            Ok(r) => {
                if !r.stale.is_empty() {
                    tracing::info!(
                        repo = %repo.display(),
                        stale = r.stale.len(),
                        removed = r.removed.len(),
                        kept_dirty = r.kept_dirty.len(),
                        failed = r.failed.len(),
                        "stale session checkouts"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(repo = %repo.display(), error = %e, "checkout cleanup failed")
            }
        }
    }
}

/// WATCHDOG=1 only while the runtime schedules tasks, the database answers
/// through the blocking pool, and the session supervisor keeps beating.
async fn watchdog(interval: Duration, state: AppState) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let alive = tokio::time::timeout(
            interval,
            state
                .db
                .call(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)),
        )
        .await;
        let supervisor = state
            .sessions
            .supervisor_alive(interval.max(Duration::from_secs(3)));
        match alive {
            Ok(Ok(1)) if supervisor => systemd::notify_watchdog(),
            other => tracing::error!(?other, "health check failed; withholding WATCHDOG=1"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT. Installed before READY=1, so a stop
/// request that comes right after start-up is never lost.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::io("installing the SIGTERM handler", e))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::io("installing the SIGINT handler", e))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
