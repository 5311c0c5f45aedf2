//! `mitzod serve --dev`: a working server with no config, for a first look.
//! State in `./.mitzo-dev/`; a passphrase and JWT secret generated once.
//! A config file (`--config`) and the `MITZOD_*` variables apply over the
//! dev defaults, so a first agent session needs no file at all.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

use crate::config::Config;
use crate::error::{Error, StartupError};

// Everything here runs while mitzod starts.
type Result<T, E = StartupError> = std::result::Result<T, E>;
use crate::privileges::Target;
use crate::secret::{random_hex_token, Secret};

pub const DEV_DIR: &str = ".mitzo-dev";
const PASSPHRASE_FILE: &str = "passphrase";
const PASSPHRASE_HASH_FILE: &str = "passphrase-hash";
const JWT_FILE: &str = "jwt-secret";

/// The model API variables `--dev` hands to agents when they are set.
pub const MODEL_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
];

pub struct DevSetup {
    pub config: Config,
    pub target: Option<Target>,
    /// Printed once, on the run that created it.
    pub new_passphrase: Option<String>,
    /// Lines to print before serving: the agent, the model, who we run as.
    pub notes: Vec<String>,
}

fn defaults(cwd: &Path, state_dir: &Path) -> toml::Table {
    let mut t = toml::Table::new();
    let s = |p: &Path| toml::Value::String(p.display().to_string());
    t.insert("state_dir".into(), s(state_dir));
    t.insert("jwt_secret_file".into(), s(&state_dir.join(JWT_FILE)));
    t.insert(
        "passphrase_hash_file".into(),
        s(&state_dir.join(PASSPHRASE_HASH_FILE)),
    );
    if is_git_repo(cwd) {
        t.insert("repo_path".into(), s(cwd));
    }
    t
}

pub fn prepare(file: Option<&Path>, env: &[(String, String)]) -> Result<DevSetup> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("current directory", e))?;
    let default_state = cwd.join(DEV_DIR);
    let mut config = Config::dev(defaults(&cwd, &default_state), file, env)?;
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut notes = Vec::new();
    add_model_access(&mut config, &var, &mut notes)?;
    let target = if crate::privileges::running_as_root() {
        Some(match &config.user {
            Some(user) => crate::privileges::resolve_target(user, config.group.as_deref())?,
            None => dev_target(&cwd)?,
        })
    } else {
        None
    };
    let owner = target.as_ref().map(|t| (t.uid, t.gid));
    let mut new_passphrase = None;
    let state_dir = config.resolved_state_dir()?;
    if state_dir == default_state {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&state_dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                StartupError::StateDir(format!("cannot create {}: {e}", state_dir.display()))
            })?;
        // Secrets in plain files inside the user's repo: never in `git add -A`.
        if is_git_repo(&cwd) {
            match crate::git_exclude::add(&cwd, &format!("/{DEV_DIR}/")) {
                Ok(Some(file)) => notes.push(format!(
                    "{DEV_DIR}/ (secrets) added to {}: git status and `git add -A` leave it out",
                    file.display()
                )),
                Ok(None) => {}
                Err(e) => notes.push(format!(
                    "WARNING: could not add {DEV_DIR}/ to .git/info/exclude ({e}); it holds                      secrets: keep it out of commits"
                )),
            }
        }
        let jwt_path = state_dir.join(JWT_FILE);
        if config.jwt_secret_file.as_deref() == Some(&jwt_path) && !jwt_path.exists() {
            crate::state::write_atomic(&jwt_path, random_hex_token().expose(), 0o600, owner)?;
        }
        let hash_path = state_dir.join(PASSPHRASE_HASH_FILE);
        if config.passphrase_hash_file.as_deref() == Some(&hash_path)
            && config.passphrase_hash.is_none()
            && config.passphrase_file.is_none()
        {
            new_passphrase = ensure_passphrase(&state_dir, owner)?;
        }
    }
    if let Some(t) = &target {
        notes.push(format!(
            "started as root; serving as user {} (uid {}), never as root",
            t.user, t.uid
        ));
        let repos = config
            .repo_path
            .iter()
            .chain(config.repos.values())
            .cloned()
            .collect::<Vec<_>>();
        for repo in repos {
            if let Ok(m) = std::fs::metadata(&repo) {
                if m.uid() != t.uid.as_raw() {
                    let owner_name = User::from_uid(Uid::from_raw(m.uid()))
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                        .unwrap_or_else(|| format!("uid {}", m.uid()));
                    notes.push(format!(
                        "sessions need a git repo that {user} owns, and {repo} is owned by {owner_name}: \
                         every session would be refused. Either run `mitzod serve --dev` as an unprivileged \
                         user in a clone that user owns, or set MITZOD_USER to the user who owns the repo \
                         (not root), or give the repo to {user} (`chown -R {user}: {repo}`, for a throwaway \
                         checkout only)",
                        user = t.user,
                        repo = repo.display(),
                    ));
                }
            }
        }
    }
    Ok(DevSetup {
        config,
        target,
        new_passphrase,
        notes,
    })
}

/// The owner's passphrase: generated once; the server reads only its argon2
/// hash (no hashing at start-up). The plaintext copy stays, 0600, for the
/// owner's `curl` and scripts on this machine.
fn ensure_passphrase(state_dir: &Path, owner: Option<(Uid, Gid)>) -> Result<Option<String>> {
    let pass_path = state_dir.join(PASSPHRASE_FILE);
    let hash_path = state_dir.join(PASSPHRASE_HASH_FILE);
    if hash_path.exists() {
        return Ok(None);
    }
    let (phrase, new) = match std::fs::read_to_string(&pass_path) {
        // A state dir from before the hash file: hash what is there, once.
        Ok(existing) if !existing.trim().is_empty() => (existing.trim().to_string(), false),
        _ => {
            // Six groups of four hex digits: easy to type on a phone once.
            let raw = random_hex_token();
            let phrase = raw.expose_str().as_bytes()[..24]
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-");
            crate::state::write_atomic(&pass_path, phrase.as_bytes(), 0o600, owner)?;
            (phrase, true)
        }
    };
    let phc = crate::auth::passphrase::hash(&Secret::new(phrase.clone()))?;
    crate::state::write_atomic(&hash_path, phc.as_bytes(), 0o600, owner)?;
    Ok(new.then_some(phrase))
}

/// Pass the model API variables to agents and allow the base URL's port.
fn add_model_access(
    config: &mut Config,
    var: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<String>,
) -> Result<()> {
    for name in MODEL_ENV {
        if var(name).is_some_and(|v| !v.is_empty())
            && !config.agent.env_passthrough.iter().any(|p| p == name)
        {
            config.agent.env_passthrough.push(name.to_string());
        }
    }
    match var("ANTHROPIC_BASE_URL").filter(|v| !v.is_empty()) {
        Some(url) => {
            let port = url_port(&url).ok_or_else(|| {
                StartupError::Config(format!(
                    "environment variable ANTHROPIC_BASE_URL: expected http(s)://host[:port], got {url:?}"
                ))
            })?;
            if !config.agent.allowed_connect_ports.contains(&port) {
                config.agent.allowed_connect_ports.push(port);
            }
            notes.push(format!(
                "model API: ANTHROPIC_BASE_URL={url} (agents may connect to port {port})"
            ));
        }
        None => notes.push("model API: api.anthropic.com (port 443)".into()),
    }
    if var("ANTHROPIC_API_KEY").is_some_and(|v| !v.is_empty()) {
        notes.push("model credential: ANTHROPIC_API_KEY is set and passed to agents".into());
    } else if config.agent.api_key_file.is_none() {
        notes.push(
            "model credential: none (set ANTHROPIC_API_KEY, or the agent must find its own login in its home)"
                .into(),
        );
    }
    Ok(())
}

/// The TCP port of an http(s) URL (its scheme's default when it names none).
pub fn url_port(url: &str) -> Option<u16> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") || !u.host_str().is_some_and(|h| !h.is_empty()) {
        return None;
    }
    u.port_or_known_default().filter(|p| *p != 0)
}

/// `agent.command` resolved the way sessions resolve it (PATH, or absolute).
pub fn find_agent(command: &str) -> Option<PathBuf> {
    let path = Path::new(command);
    if path.is_absolute() || command.contains('/') {
        return crate::program::is_executable(path).then(|| path.to_path_buf());
    }
    crate::program::on_path(command)
}

/// One line about the agent: which program, and whether it was found.
pub fn describe_agent(config: &Config) -> String {
    let cmd = &config.agent.command;
    match find_agent(cmd) {
        Some(p) => format!("agent: `{cmd}` found at {}", p.display()),
        None => format!(
            "agent: `{cmd}` NOT FOUND on PATH; sessions will answer 503 until it is installed \
             (npm install -g @anthropic-ai/claude-code) or MITZOD_AGENT__COMMAND names it"
        ),
    }
}

/// One line about the agents' network, from a namespace probe made as the
/// user agents run as (`probed_as`): what sessions will get, or why they
/// will be refused and what to do instead.
pub fn describe_network(
    config: &Config,
    probe: std::result::Result<(), String>,
    probed_as: &str,
) -> String {
    let network = config.agent.network;
    if !network.isolated() {
        return format!(
            "agent.network = \"ports\": agents use the host's network, limited to TCP ports {:?}",
            config.agent.allowed_connect_ports
        );
    }
    match probe {
        Ok(()) => format!(
            "agent.network = {:?}: user and network namespaces are available to {probed_as}; \
             each agent gets its own{}",
            network.as_str(),
            if network == crate::config::NetworkMode::Proxy {
                ", reaching only agent.allowed_hosts through mitzod's proxy"
            } else {
                ", with no network"
            }
        ),
        Err(why) => format!(
            "agent.network = {:?} but (probed as {probed_as}) {why}; every session would be refused. \
             Restart with MITZOD_AGENT__NETWORK=ports (agents then use the host's network, \
             limited to TCP ports {:?})",
            network.as_str(),
            config.agent.allowed_connect_ports
        ),
    }
}

fn is_git_repo(dir: &Path) -> bool {
    dir.join(".git").exists()
}

/// Root never serves: become the owner of the current directory, else `nobody`.
fn dev_target(cwd: &Path) -> Result<Target> {
    let meta = std::fs::metadata(cwd).map_err(|e| Error::io("current directory", e))?;
    let owner = Uid::from_raw(meta.uid());
    let user = if !owner.is_root() {
        User::from_uid(owner).ok().flatten()
    } else {
        None
    };
    let user = match user {
        Some(u) => u,
        None => User::from_name("nobody").ok().flatten().ok_or_else(|| {
            StartupError::Privileges("--dev as root: no user `nobody` to drop to".into())
        })?,
    };
    let gid: Gid = user.gid;
    crate::privileges::resolve_target(&user.name, None).map(|t| Target { gid, ..t })
}

/// The state dir after the drop. When the dropped user cannot walk the
/// path (a checkout under /root, say), work from inside it through the fd
/// opened while still root: relative paths need no search rights above.
pub fn reach_state_dir(dir: &Path, opened_as_root: &std::fs::File) -> Result<PathBuf> {
    if std::fs::read_dir(dir).is_ok() {
        return Ok(dir.to_path_buf());
    }
    nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(opened_as_root)).map_err(|e| {
        StartupError::StateDir(format!(
            "{} is not reachable after the privilege drop: {e}",
            dir.display()
        ))
    })?;
    tracing::info!(dir = %dir.display(), "state dir is not reachable by path for the dropped user; working from inside it");
    Ok(PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_base_urls() {
        assert_eq!(url_port("http://127.0.0.1:8080"), Some(8080));
        assert_eq!(url_port("http://127.0.0.1:8080/v1"), Some(8080));
        assert_eq!(url_port("https://api.example.com"), Some(443));
        assert_eq!(url_port("http://[::1]:9000/"), Some(9000));
        assert_eq!(url_port("http://box"), Some(80));
        assert_eq!(url_port("ftp://box"), None);
        assert_eq!(url_port("http://box:x"), None);
    }
}
