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
use crate::error::{Error, Result, StartupError};
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
) -> Result<(crate::secret::Secret, Db), StartupError> {
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
                    .map_err(|e| StartupError::StateDir(format!("chown {}: {e}", p.display())))?;
            }
        }
    }
    Ok((token, db))
}

/// Build the shared state from what `main` opened.
pub fn build_state(p: Prepared) -> Result<(AppState, Vec<Listener>), StartupError> {
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

/// Per-connection limits (`[http]` in the config).
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    header_read_timeout: Duration,
    per_address: usize,
}

impl From<&crate::config::HttpConfig> for ConnLimits {
    fn from(c: &crate::config::HttpConfig) -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
            per_address: c.max_connections_per_address,
        }
    }
}

/// Open connections per client address, and the slot one connection holds.
#[derive(Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

struct AddressSlot {
    table: Arc<PerAddress>,
    ip: std::net::IpAddr,
}

impl PerAddress {
    fn enter(table: &Arc<PerAddress>, ip: std::net::IpAddr, cap: usize) -> Option<AddressSlot> {
        let mut map = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if cap != 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accept errors that concern one connection (keep accepting at once), as
/// opposed to ones like EMFILE that call for a pause.
fn per_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One HTTP/1.1 connection: hyper with a header-read timeout (which also
/// closes a keep-alive connection idle between requests), upgrades for the
/// WebSocket, and the peer handed to the router as `ConnectInfo`.
async fn serve_connection<I>(
    io: I,
    peer: Peer,
    app: axum::Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::Layer;
    let svc = axum::Extension(axum::extract::ConnectInfo(peer)).layer(app);
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let table = Arc::new(PerAddress::default());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if per_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        // Reap finished connection tasks as we go.
        while conns.try_join_next().is_some() {}
        let Some(slot) = PerAddress::enter(&table, remote.ip(), limits.per_address) else {
            tracing::debug!(remote = %remote.ip(), "too many connections from this address; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            remote: remote.ip().to_string(),
            local_ip: stream.local_addr().ok().map(|a| a.ip()),
            unix: false,
        };
        let (app, stop) = (app.clone(), stop.clone());
        conns.spawn(async move {
            let _slot = slot;
            serve_connection(stream, peer, app, limits, stop).await;
        });
    }
    while conns.join_next().await.is_some() {}
}

async fn serve_unix(
    listener: tokio::net::UnixListener,
    app: axum::Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) if per_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        while conns.try_join_next().is_some() {}
        let peer = Peer {
            remote: "unix".into(),
            local_ip: None,
            unix: true,
        };
        let (app, stop) = (app.clone(), stop.clone());
        conns.spawn(serve_connection(stream, peer, app, limits, stop));
    }
    while conns.join_next().await.is_some() {}
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

pub fn run(p: Prepared) -> Result<(), StartupError> {
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

async fn serve(p: Prepared) -> Result<(), StartupError> {
    let stop_requested = stop_signal()?;
    let (state, listeners) = build_state(p)?;
    let app = crate::http::router(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let mut described = Vec::new();
    for listener in listeners {
        described.push(listener.describe());
        let shutdown = stop_rx.clone();
        let limits = ConnLimits::from(&state.config.http);
        match listener {
            Listener::Tcp { listener, .. } => {
                let l = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| Error::io("adopting listener", e))?;
                servers.spawn(serve_tcp(l, app.clone(), limits, shutdown));
            }
            Listener::Unix { listener, .. } => {
                let l = tokio::net::UnixListener::from_std(listener)
                    .map_err(|e| Error::io("adopting listener", e))?;
                servers.spawn(serve_unix(l, app.clone(), limits, shutdown));
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
    let git = match crate::git::Git::new(config.sandbox.landlock) {
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
