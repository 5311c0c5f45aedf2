//! The configuration file and its `MITZOD_*` environment overlay.
//!
//! One TOML file; every key may also come from `MITZOD_<KEY>` (tables joined
//! with `__`). Unknown keys and bad values stop start-up with the key's name.
//! Secrets are never values here, only paths to files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::StartupError;

// Everything here runs while mitzod starts.
type Result<T, E = StartupError> = std::result::Result<T, E>;
use crate::secret::Secret;

/// Env vars with this prefix are config keys; `MITZOD_CONFIG` names the file.
pub const ENV_PREFIX: &str = "MITZOD_";
pub const ENV_CONFIG_FILE: &str = "MITZOD_CONFIG";

/// Values shipped in `examples/mitzod.toml` and the docs; refused as secrets.
pub const EXAMPLE_JWT_SECRETS: &[&str] = &[
    "change-me-to-a-long-random-string-of-at-least-32-bytes",
    "0000000000000000000000000000000000000000000000000000000000000000",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Drop to this user when started as root.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    #[serde(default = "default_listen")]
    pub listen: Vec<ListenAddr>,
    #[serde(default)]
    pub public_url: Option<PublicUrl>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub repo_path: Option<PathBuf>,
    #[serde(default)]
    pub repos: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub jwt_secret_file: Option<PathBuf>,
    /// An argon2id PHC string inline (a hash is not a secret worth a file).
    #[serde(default)]
    pub passphrase_hash: Option<String>,
    #[serde(default)]
    pub passphrase_hash_file: Option<PathBuf>,
    /// Plaintext passphrase file: accepted, hashed in memory, warned about.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    #[serde(default = "default_cookie_hours")]
    pub cookie_max_age_hours: u32,
    #[serde(default)]
    pub cookie_secure: CookieSecure,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub idle_exit: Option<Duration>,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub permissions: PermissionsConfig,
    #[serde(default)]
    pub ntfy: Option<NtfyConfig>,
    /// Where each value came from, for error messages (not a config key).
    #[serde(skip)]
    pub sources: Sources,
    #[serde(default)]
    pub http: HttpConfig,
}

/// The config file and the `MITZOD_*` variables a configuration was built
/// from, so that an error can say which one to fix.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Dotted key (`agent.command`) → the variable that set it.
    pub env: BTreeMap<String, String>,
}

impl Sources {
    /// "environment variable MITZOD_X", "FILE" or "the defaults", for `key`
    /// or the nearest table above it that a variable set.
    pub fn origin_of(&self, key: &str) -> String {
        let mut k = key.to_string();
        loop {
            if let Some(var) = self.env.get(&k) {
                return format!("environment variable {var}");
            }
            match k.rfind(['.', '[']) {
                Some(i) => k.truncate(i),
                None => break,
            }
        }
        match &self.file {
            Some(f) => f.display().to_string(),
            None => "the defaults".to_string(),
        }
    }
}

/// Connection limits of the HTTP listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A connection that has not sent a complete request head this long
    /// after it opened, or after its previous response, is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Open TCP connections per client address; more are closed at once.
    /// 0: no limit.
    #[serde(default = "default_connections_per_address")]
    pub max_connections_per_address: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_secs: default_header_read_timeout(),
            max_connections_per_address: default_connections_per_address(),
        }
    }
}

fn default_header_read_timeout() -> u64 {
    10
}

fn default_connections_per_address() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default = "default_agent_command")]
    pub command: String,
    #[serde(default)]
    pub home: Option<PathBuf>,
    #[serde(default)]
    pub env_passthrough: Vec<String>,
    #[serde(default = "default_connect_ports")]
    pub allowed_connect_ports: Vec<u16>,
    #[serde(default)]
    pub extra_read_paths: Vec<PathBuf>,
    #[serde(default)]
    pub extra_write_paths: Vec<PathBuf>,
    /// The model API key file, given to each agent as `ANTHROPIC_API_KEY`.
    /// Default: the systemd credential `anthropic-api-key`, when present.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// The key itself, read before the privilege drop (never from TOML).
    #[serde(skip)]
    pub api_key: Option<Secret>,
    /// Claude Code settings files the agent loads (`user`, `project`,
    /// `local`): none by default, so settings an agent writes never take
    /// effect.
    #[serde(default)]
    pub setting_sources: Vec<String>,
    /// How the agent reaches the network: through mitzod's allow-listing
    /// proxy from a network namespace of its own (the default), not at all,
    /// or directly to `allowed_connect_ports` (Landlock's TCP port rules).
    #[serde(default)]
    pub network: NetworkMode,
    /// With `network = "proxy"`: the hosts the agent may reach by name.
    /// The host of `ANTHROPIC_BASE_URL` (when the agent gets one) and
    /// mitzod itself are always added.
    #[serde(default = "default_allowed_hosts")]
    pub allowed_hosts: Vec<HostEntry>,
}

/// `agent.network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// New user and network namespaces with loopback only; a forwarder
    /// inside relays `HTTPS_PROXY` to mitzod's per-session proxy.
    #[default]
    Proxy,
    /// New user and network namespaces with loopback only, nothing else.
    None,
    /// The host's network, limited by Landlock to `allowed_connect_ports`.
    Ports,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Proxy => "proxy",
            NetworkMode::None => "none",
            NetworkMode::Ports => "ports",
        }
    }

    /// Whether the agent gets a network namespace of its own.
    pub fn isolated(self) -> bool {
        self != NetworkMode::Ports
    }
}

/// One entry of `agent.allowed_hosts`: `"host"` (port 443), `"host:port"`,
/// or a table `{ host, port = 443, address = "IP", private = false }`.
/// `address` pins the name to that address (mitzod does not resolve it);
/// a pinned or `private = true` entry may reach a private, loopback or
/// link-local address, any other is refused there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub port: u16,
    pub address: Option<std::net::IpAddr>,
    pub private: bool,
}

impl HostEntry {
    /// Parse the string form: `host` or `host:port` (`[v6]:port`).
    pub fn parse(s: &str) -> std::result::Result<HostEntry, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("unclosed `[` in {s:?}"))?;
            match after.strip_prefix(':') {
                Some(p) => (h.to_string(), parse_port(p, s)?),
                None if after.is_empty() => (h.to_string(), 443),
                None => return Err(format!("expected [IPv6]:port, got {s:?}")),
            }
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), parse_port(p, s)?),
                Some(_) => return Err(format!("write an IPv6 address in brackets: {s:?}")),
                None => (s.to_string(), 443),
            }
        };
        let e = HostEntry {
            host: host.to_ascii_lowercase(),
            port,
            address: None,
            private: false,
        };
        e.validate()?;
        Ok(e)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let h = &self.host;
        if h.parse::<std::net::IpAddr>().is_ok() {
            return Ok(());
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
            return Err(format!(
                "{h:?} is not a host name (letters, digits, `-`, dots; no wildcards, no scheme)"
            ));
        }
        if self.port == 0 {
            return Err(format!("{h}: port 0"));
        }
        Ok(())
    }
}

fn parse_port(p: &str, whole: &str) -> std::result::Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("bad port in {whole:?}")),
    }
}

impl<'de> Deserialize<'de> for HostEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            host: String,
            #[serde(default = "default_https_port")]
            port: u16,
            #[serde(default)]
            address: Option<std::net::IpAddr>,
            #[serde(default)]
            private: bool,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Table(Table),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected \"host\", \"host:port\" or { host = \"…\", port = 443, address = \"IP\", private = false }",
            )
        })?;
        match raw {
            Raw::Str(s) => HostEntry::parse(&s).map_err(serde::de::Error::custom),
            Raw::Table(t) => {
                let e = HostEntry {
                    host: t.host.to_ascii_lowercase(),
                    port: t.port,
                    address: t.address,
                    private: t.private || t.address.is_some(),
                };
                e.validate().map_err(serde::de::Error::custom)?;
                Ok(e)
            }
        }
    }
}

fn default_https_port() -> u16 {
    443
}

/// The model API Claude Code talks to when no `ANTHROPIC_BASE_URL` is set.
pub const DEFAULT_MODEL_HOST: &str = "api.anthropic.com";

fn default_allowed_hosts() -> Vec<HostEntry> {
    vec![HostEntry {
        host: DEFAULT_MODEL_HOST.into(),
        port: 443,
        address: None,
        private: false,
    }]
}

impl AgentConfig {
    /// What these settings add to each agent's sandbox policy.
    pub fn grants(&self) -> mitzo_sandbox::AgentGrants<'_> {
        mitzo_sandbox::AgentGrants {
            extra_read_paths: &self.extra_read_paths,
            extra_write_paths: &self.extra_write_paths,
            allowed_connect_ports: &self.allowed_connect_ports,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            command: default_agent_command(),
            home: None,
            env_passthrough: Vec::new(),
            allowed_connect_ports: default_connect_ports(),
            extra_read_paths: Vec::new(),
            extra_write_paths: Vec::new(),
            api_key_file: None,
            api_key: None,
            setting_sources: Vec::new(),
            network: NetworkMode::default(),
            allowed_hosts: default_allowed_hosts(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    #[serde(default)]
    /// `required` or `best-effort`: the sandbox's own policy setting.
    pub landlock: mitzo_sandbox::Enforcement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorktreeCleanup {
    #[default]
    Report,
    Execute,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "default_buffer_events")]
    pub buffer_events: usize,
    #[serde(default = "default_detach_ttl", deserialize_with = "de_duration")]
    pub detach_ttl: Duration,
    #[serde(default = "default_stale_hours")]
    pub worktree_stale_hours: u64,
    #[serde(default)]
    pub worktree_cleanup: WorktreeCleanup,
    #[serde(default = "default_true")]
    pub isolation: bool,
    /// `pids.max` of each session's cgroup (where mitzod has a delegated
    /// cgroup): bounds fork bombs. 0: no limit.
    #[serde(default = "default_pids_max")]
    pub pids_max: u64,
    /// `memory.max` of each session's cgroup, e.g. "4G" (none by default).
    #[serde(default, deserialize_with = "de_memory_max")]
    pub memory_max: Option<u64>,
    /// Events older than this many days are dropped (the newest event of
    /// each session stays so its seq carries on).
    #[serde(default = "default_retain_days")]
    pub retain_days: u64,
    /// Stored events of one session above this many MiB: the oldest go.
    #[serde(default = "default_retain_mb")]
    pub retain_mb: u64,
}

fn default_retain_days() -> u64 {
    30
}

fn default_retain_mb() -> u64 {
    64
}

fn default_pids_max() -> u64 {
    4096
}

fn de_memory_max<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    mitzo_sandbox::cgroup::parse_size(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            buffer_events: default_buffer_events(),
            detach_ttl: default_detach_ttl(),
            worktree_stale_hours: default_stale_hours(),
            worktree_cleanup: WorktreeCleanup::default(),
            isolation: true,
            pids_max: default_pids_max(),
            memory_max: None,
            retain_days: default_retain_days(),
            retain_mb: default_retain_mb(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsConfig {
    #[serde(default = "default_permission_timeout")]
    pub timeout_secs: u64,
}

impl Default for PermissionsConfig {
    fn default() -> Self {
        PermissionsConfig {
            timeout_secs: default_permission_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfyConfig {
    pub url: String,
    pub topic: String,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_ntfy_delay")]
    pub delay_secs: u64,
    /// Allow/deny actions in the notification itself (needs `token_file`:
    /// whoever can read the topic could otherwise approve). Off: the
    /// notification only links to the approval in the web app.
    #[serde(default)]
    pub one_tap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieSecure {
    /// Secure when `public_url` is https.
    #[default]
    Auto,
    Always,
    Never,
}

impl<'de> Deserialize<'de> for CookieSecure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(CookieSecure::Always),
            Raw::Bool(false) => Ok(CookieSecure::Never),
            Raw::Str(s) if s == "auto" => Ok(CookieSecure::Auto),
            Raw::Str(s) if s == "true" => Ok(CookieSecure::Always),
            Raw::Str(s) if s == "false" => Ok(CookieSecure::Never),
            Raw::Str(s) => Err(serde::de::Error::custom(format!(
                "expected true, false or \"auto\", got {s:?}"
            ))),
        }
    }
}

/// A listen address: `IP:PORT` or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("unix socket path must be absolute: {s:?}"));
            }
            return Ok(ListenAddr::Unix(path));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("expected IP:PORT or unix:/path, got {s:?}"))
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `public_url`: scheme, host and port of the address the owner uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    pub https: bool,
    pub host: String,
    /// `scheme://host[:port]` with no trailing slash: the browser's Origin.
    pub origin: String,
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl PublicUrl {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let u = url::Url::parse(s).map_err(|e| format!("not a URL ({e}): {s:?}"))?;
        let https = match u.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(format!("must start with http:// or https://, got {s:?}")),
        };
        let host = match u.host_str() {
            Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
            _ => return Err(format!("needs a host and no user info, got {s:?}")),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!("needs a host and no user info, got {s:?}"));
        }
        Ok(PublicUrl {
            https,
            host,
            // What a browser sends as `Origin` (a default port left out).
            origin: u.origin().ascii_serialization(),
        })
    }
}

/// `host[:port]` or `[v6]:port` → host part, brackets kept for IPv6.
/// Hand-written, not `url`: a `Host` header is an authority, and parsing it
/// as `http://{host}/` would read `user@host` as a host with user info.
pub fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn default_listen() -> Vec<ListenAddr> {
    vec![ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 3100)))]
}
fn default_cookie_hours() -> u32 {
    24
}
fn default_agent_command() -> String {
    "claude".to_string()
}
fn default_connect_ports() -> Vec<u16> {
    vec![443]
}
fn default_buffer_events() -> usize {
    500
}
fn default_detach_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_stale_hours() -> u64 {
    168
}
fn default_true() -> bool {
    true
}
fn default_permission_timeout() -> u64 {
    120
}
fn default_ntfy_delay() -> u64 {
    10
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?} ({e}); use e.g. \"30m\""))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s == "never" {
        return Ok(None);
    }
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl Config {
    /// Load from a file (or none) plus the `MITZOD_*` variables of `env`.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config> {
        Config::load_over(toml::Table::new(), file, env)
    }

    /// Load over `base` (the `--dev` defaults): the file's keys replace
    /// base's, the variables replace both.
    fn load_over(
        mut table: toml::Table,
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StartupError::Config(format!("cannot read config file {}: {e}", path.display()))
            })?;
            let from_file = toml::from_str::<toml::Table>(&text).map_err(|e| {
                StartupError::Config(format!("{}: {}", path.display(), e.to_string().trim_end()))
            })?;
            merge(&mut table, from_file);
        }
        let sources = Sources {
            file: file.map(Path::to_path_buf),
            env: apply_env(&mut table, env)?,
        };
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.inner().to_string();
                let first = inner.lines().next().unwrap_or_default().trim().to_string();
                // serde names a missing or unknown field, not the path to it.
                let key = if path == "." { String::new() } else { path };
                let origin = match unknown_env_key(&first, &key, &sources) {
                    Some(var) => format!("environment variable {var}"),
                    None => sources.origin_of(&key),
                };
                if key.is_empty() {
                    StartupError::Config(format!("{origin}: {first}"))
                } else {
                    StartupError::Config(format!("{origin}: key `{key}`: {first}"))
                }
            })?;
        config.sources = sources;
        config.validate()?;
        Ok(config)
    }

    /// The configuration of `mitzod serve --dev`: the dev defaults, then
    /// the file (if any) and the `MITZOD_*` variables over them.
    pub fn dev(
        defaults: toml::Table,
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config> {
        Config::load_over(defaults, file, env)
    }

    /// `StartupError::Config` for `key`, naming where its value came from.
    pub fn key_error(&self, key: &str, why: impl std::fmt::Display) -> StartupError {
        StartupError::Config(format!(
            "{}: key `{key}`: {why}",
            self.sources.origin_of(key)
        ))
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(self.key_error(key, why));
        if !(1..=3600).contains(&self.http.header_read_timeout_secs) {
            return bad(
                "http.header_read_timeout_secs",
                format!(
                    "must be 1..=3600, got {}",
                    self.http.header_read_timeout_secs
                ),
            );
        }
        if self.cookie_max_age_hours == 0 || self.cookie_max_age_hours > 8760 {
            return bad(
                "cookie_max_age_hours",
                format!("must be 1..=8760, got {}", self.cookie_max_age_hours),
            );
        }
        if self.listen.is_empty() {
            return bad("listen", "needs at least one address".into());
        }
        if self.user.is_none() && self.group.is_some() {
            return bad("group", "set `user` too".into());
        }
        if let Some(dir) = &self.state_dir {
            if !dir.is_absolute() {
                return bad("state_dir", format!("must be absolute: {}", dir.display()));
            }
        }
        for (name, path) in &self.repos {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return bad(
                    "repos",
                    format!("repo name {name:?} must be [A-Za-z0-9._-]+"),
                );
            }
            if !path.is_absolute() {
                return bad(
                    &format!("repos.{name}"),
                    format!("must be absolute: {}", path.display()),
                );
            }
        }
        if let Some(p) = &self.repo_path {
            if !p.is_absolute() {
                return bad("repo_path", format!("must be absolute: {}", p.display()));
            }
        }
        for (i, p) in self.agent.extra_write_paths.iter().enumerate() {
            if !p.is_absolute() {
                return bad(
                    &format!("agent.extra_write_paths[{i}]"),
                    format!("must be absolute: {}", p.display()),
                );
            }
            if p == Path::new("/") {
                return bad(
                    &format!("agent.extra_write_paths[{i}]"),
                    "`/` would defeat the sandbox".into(),
                );
            }
        }
        for (i, p) in self.agent.extra_read_paths.iter().enumerate() {
            if !p.is_absolute() {
                return bad(
                    &format!("agent.extra_read_paths[{i}]"),
                    format!("must be absolute: {}", p.display()),
                );
            }
        }
        if self.session.buffer_events == 0 || self.session.buffer_events > 100_000 {
            return bad(
                "session.buffer_events",
                format!("must be 1..=100000, got {}", self.session.buffer_events),
            );
        }
        if self.session.retain_days == 0 || self.session.retain_days > 36_500 {
            return bad(
                "session.retain_days",
                format!("must be 1..=36500, got {}", self.session.retain_days),
            );
        }
        if self.session.retain_mb == 0 || self.session.retain_mb > 1_048_576 {
            return bad(
                "session.retain_mb",
                format!("must be 1..=1048576, got {}", self.session.retain_mb),
            );
        }
        if self.permissions.timeout_secs == 0 {
            return bad("permissions.timeout_secs", "must be at least 1".into());
        }
        if self.ntfy.is_some() && self.public_url.is_none() {
            return bad(
                "public_url",
                "required when [ntfy] is set: notification actions call back to it".into(),
            );
        }
        for o in &self.allowed_origins {
            PublicUrl::parse(o).map_err(|e| self.key_error("allowed_origins", e))?;
        }
        if let Some(level) = &self.log_level {
            if level
                .parse::<tracing_subscriber::filter::EnvFilter>()
                .is_err()
            {
                return bad("log_level", format!("not a tracing filter: {level:?}"));
            }
        }
        Ok(())
    }

    /// The state dir: configured, else `$STATE_DIRECTORY`, else `~/.mitzo`.
    pub fn resolved_state_dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.state_dir {
            return Ok(d.clone());
        }
        if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several, colon-separated; the first is ours.
            let first = d
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            if !first.is_empty() {
                return Ok(PathBuf::from(first));
            }
        }
        match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => Ok(PathBuf::from(h).join(".mitzo")),
            _ => Err(StartupError::Config(
                "no state_dir configured, no $STATE_DIRECTORY and no $HOME".into(),
            )),
        }
    }
}

/// Merge `over` into `base`, tables recursively, other values replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// serde's "unknown field `x`" names no path: find the variable that set it.
fn unknown_env_key(message: &str, parent: &str, sources: &Sources) -> Option<String> {
    let field = message.strip_prefix("unknown field `")?.split('`').next()?;
    let key = if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    };
    sources.env.get(&key).cloned()
}

/// Merge `MITZOD_FOO__BAR=value` into `table` as `foo.bar = value`.
/// Returns which variable set which dotted key.
fn apply_env(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<BTreeMap<String, String>> {
    let mut set = BTreeMap::new();
    for (name, raw) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_CONFIG_FILE {
            continue;
        }
        let parts: Vec<String> = key.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(StartupError::Config(format!(
                "environment variable {name}: empty key segment"
            )));
        }
        let value = parse_env_value(raw);
        set.insert(parts.join("."), name.clone());
        let mut cursor = &mut *table;
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                cursor.insert(part.clone(), value.clone());
                break;
            }
            let entry = cursor
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(StartupError::Config(format!(
                        "environment variable {name}: `{part}` is not a table"
                    )))
                }
            };
        }
    }
    Ok(set)
}

/// An env value is a TOML value when it parses as one (`true`, `3100`,
/// `["a", "b"]`), else a plain string.
fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// The process environment as owned pairs (non-UTF-8 entries skipped).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::load(Some(&path), &env)
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.agent.allowed_connect_ports, vec![443]);
        assert_eq!(c.session.detach_ttl, Duration::from_secs(600));
        assert!(c.idle_exit.is_none());
        assert_eq!((c.session.retain_days, c.session.retain_mb), (30, 64));
    }

    #[test]
    fn retention_limits_are_validated() {
        let err = load_str("[session]\nretain_mb = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("session.retain_mb"), "{err}");
        let err = load_str("[session]\nretain_days = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("session.retain_days"), "{err}");
        // Control: in-range values load.
        let c = load_str("[session]\nretain_days = 7\nretain_mb = 1\n", &[]).unwrap();
        assert_eq!((c.session.retain_days, c.session.retain_mb), (7, 1));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str("usr = \"alice\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("usr"), "{err}");
        let err = load_str("[agent]\ncomand = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("comand"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = load_str("cookie_max_age_hours = 9000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cookie_max_age_hours"), "{err}");
        let err = load_str("listen = [\"nonsense\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = load_str("[session]\ndetach_ttl = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("session.detach_ttl"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_reaches_tables() {
        let c = load_str(
            "user = \"alice\"\n[agent]\ncommand = \"claude\"\n",
            &[
                ("MITZOD_USER", "bob"),
                ("MITZOD_AGENT__COMMAND", "/opt/claude"),
                ("MITZOD_AGENT__ALLOWED_CONNECT_PORTS", "[443, 8443]"),
                ("MITZOD_IDLE_EXIT", "30m"),
                ("MITZO_URL", "ignored: not ours"),
            ],
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert_eq!(c.agent.command, "/opt/claude");
        assert_eq!(c.agent.allowed_connect_ports, vec![443, 8443]);
        assert_eq!(c.idle_exit, Some(Duration::from_secs(1800)));
    }

    #[test]
    fn unknown_env_key_is_refused() {
        let err = load_str("", &[("MITZOD_LISTN", "x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn network_defaults_to_the_proxy_and_the_model_api() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.agent.network, NetworkMode::Proxy);
        assert_eq!(c.agent.allowed_hosts.len(), 1);
        assert_eq!(c.agent.allowed_hosts[0].host, "api.anthropic.com");
        assert_eq!(c.agent.allowed_hosts[0].port, 443);
        assert!(!c.agent.allowed_hosts[0].private);
    }

    #[test]
    fn allowed_hosts_take_strings_and_tables() {
        let c = load_str(
            "[agent]\nnetwork = \"proxy\"\nallowed_hosts = [\"API.example.com\", \"git.example:8443\", \"[2001:db8::1]:80\", \
             { host = \"model.test\", port = 8080, address = \"127.0.0.1\" }, { host = \"intra.example\", private = true }]\n",
            &[],
        )
        .unwrap();
        let h = &c.agent.allowed_hosts;
        assert_eq!((h[0].host.as_str(), h[0].port), ("api.example.com", 443));
        assert_eq!((h[1].host.as_str(), h[1].port), ("git.example", 8443));
        assert_eq!((h[2].host.as_str(), h[2].port), ("2001:db8::1", 80));
        assert_eq!(h[3].address, Some("127.0.0.1".parse().unwrap()));
        assert!(h[3].private, "a pinned address is private on purpose");
        assert!(h[4].private && h[4].address.is_none() && h[4].port == 443);
        for (bad, what) in [
            ("\"*.example.com\"", "wildcard"),
            ("\"https://x.example\"", "scheme"),
            ("\"x.example:0\"", "port 0"),
            ("\"x.example:99999\"", "port range"),
            (
                "{ host = \"x.example\", address = \"not-an-ip\" }",
                "address",
            ),
            ("{ host = \"x.example\", colour = 1 }", "unknown key"),
        ] {
            let err = load_str(&format!("[agent]\nallowed_hosts = [{bad}]\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("agent.allowed_hosts"), "{what}: {err}");
        }
        let err = load_str("[agent]\nnetwork = \"open\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.network"), "{err}");
        let c = load_str("", &[("MITZOD_AGENT__NETWORK", "ports")]).unwrap();
        assert_eq!(c.agent.network, NetworkMode::Ports);
    }

    #[test]
    fn extra_write_root_is_refused() {
        let err = load_str("[agent]\nextra_write_paths = [\"/\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.extra_write_paths[0]"), "{err}");
    }

    #[test]
    fn host_parsing() {
        assert_eq!(host_without_port("box:3100"), "box");
        assert_eq!(host_without_port("[::1]:3100"), "[::1]");
        assert_eq!(host_without_port("box"), "box");
        let u = PublicUrl::parse("https://Box.tailnet.ts.net:3100/x").unwrap();
        assert!(u.https);
        assert_eq!(u.host, "box.tailnet.ts.net");
        assert_eq!(u.origin, "https://box.tailnet.ts.net:3100");
    }
}
