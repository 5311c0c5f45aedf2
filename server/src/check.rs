//! `mitzod check-config`: everything `serve`, and then the first session,
//! would refuse, found at once, each problem named with where its value
//! came from (the file, or which `MITZOD_*` variable).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Uid, User};

use mitzod::config::{Config, ListenAddr};
use mitzod::{credentials, dev, privileges};

#[derive(Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

pub fn run(config: &Config, file_only: bool) -> Report {
    let mut r = Report::default();
    let origin = |key: &str| config.sources.origin_of(key);
    let root = privileges::running_as_root();

    // Who serve runs as.
    let mut service_uid = Uid::effective();
    let mut service_gid = nix::unistd::Gid::effective();
    let mut service_user = User::from_uid(service_uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| service_uid.to_string());
    match &config.user {
        None if root => r.problems.push(
            "started as root, `serve` refuses to run without `user`: set `user` (and `group`) \
             in the config or MITZOD_USER, or start mitzod as an unprivileged user"
                .into(),
        ),
        None => {}
        Some(user) => match privileges::resolve_target(user, config.group.as_deref()) {
            Ok(t) => {
                if root {
                    service_uid = t.uid;
                    service_gid = t.gid;
                    service_user = t.user.clone();
                } else if t.uid != Uid::effective() {
                    r.notes.push(format!(
                        "`user` = {user:?} ({}) applies only when started as root; \
                         started as {service_user} it serves as {service_user}",
                        origin("user")
                    ));
                }
            }
            Err(e) => r.problems.push(format!("{} (from {})", e, origin("user"))),
        },
    }

    if let Err(problems) = credentials::load_all(config) {
        r.problems
            .extend(problems.into_iter().map(|e| e.to_string()));
    }
    if file_only {
        return r;
    }

    // The state dir.
    match config.resolved_state_dir() {
        Err(e) => r.problems.push(e.to_string()),
        Ok(dir) => match std::fs::symlink_metadata(&dir) {
            Err(_) => r.notes.push(format!(
                "state dir {} does not exist; serve creates it (0700)",
                dir.display()
            )),
            Ok(m) if !m.is_dir() => r.problems.push(format!(
                "state dir {} (from {}) is not a directory",
                dir.display(),
                origin("state_dir")
            )),
            Ok(m) if m.uid() == service_uid.as_raw() => {}
            Ok(m) if m.uid() == 0 && root => r.notes.push(format!(
                "state dir {} is root's; serve will hand it to {service_user} at start (and log that)",
                dir.display()
            )),
            Ok(m) => r.problems.push(format!(
                "state dir {} (from {}) is owned by uid {}, not by {service_user} (uid {service_uid}) \
                 that mitzod serves as; serve refuses it. Fix: `install -d -m 0700 -o {service_user} {}`",
                dir.display(),
                origin("state_dir"),
                m.uid(),
                dir.display()
            )),
        },
    }

    // Listen addresses (a socket-activated unit is given its sockets; bind is what serve does otherwise).
    for (i, addr) in config.listen.iter().enumerate() {
        let key = format!("listen[{i}]");
        match addr {
            ListenAddr::Tcp(a) => {
                if let Err(e) = std::net::TcpListener::bind(a) {
                    let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                        " (another program listens there; if it is mitzod.socket, systemd hands \
                         that socket to mitzod and this is expected)"
                    } else {
                        ""
                    };
                    r.problems.push(format!(
                        "{}: key `{key}`: cannot bind {a}: {e}{hint}",
                        origin(&key)
                    ));
                }
            }
            ListenAddr::Unix(p) => {
                if !p.parent().is_some_and(Path::is_dir) {
                    r.problems.push(format!(
                        "{}: key `{key}`: the directory of {} does not exist",
                        origin(&key),
                        p.display()
                    ));
                }
            }
        }
    }

    // Repos: present, git repos, owned by the service user.
    let mut repos: Vec<(String, &Path)> = Vec::new();
    if let Some(p) = &config.repo_path {
        repos.push(("repo_path".into(), p));
    }
    for (name, p) in &config.repos {
        repos.push((format!("repos.{name}"), p));
    }
    for (key, path) in &repos {
        let from = origin(key);
        match std::fs::metadata(path) {
            Err(e) => r.problems.push(format!(
                "{from}: key `{key}`: {} cannot be read: {e}",
                path.display()
            )),
            Ok(m) if !m.is_dir() => r.problems.push(format!(
                "{from}: key `{key}`: {} is not a directory",
                path.display()
            )),
            Ok(m) => {
                if !path.join(".git").exists() {
                    r.problems.push(format!(
                        "{from}: key `{key}`: {} is not a git repository (no .git); sessions need one",
                        path.display()
                    ));
                } else if m.uid() != service_uid.as_raw() {
                    r.problems.push(format!(
                        "{from}: key `{key}`: {} is owned by uid {}, not by {service_user} (uid {service_uid}); \
                         git refuses a repo of another owner, so every session would be refused. \
                         Serve as the repo's owner (`user`), or `chown -R {service_user}: {}`",
                        path.display(),
                        m.uid(),
                        path.display()
                    ));
                }
            }
        }
    }

    // The agent's network: namespaces for proxy/none, probed as the service
    // user (root may create them where that user may not).
    if config.agent.network.isolated() {
        let as_root = service_uid.is_root();
        let ids = (root && !as_root).then_some((service_uid.as_raw(), service_gid.as_raw()));
        let probed_as = if as_root {
            "root (no service user to probe as; root may be allowed what that user is not)"
                .to_string()
        } else {
            service_user.clone()
        };
        match mitzo_sandbox::netns::probe_as(ids) {
            Err(why) => r.problems.push(format!(
                "{}: key `agent.network`: {:?} needs unprivileged user and network namespaces, and \
                 (probed as {probed_as}) {why}; every session would be refused. Allow them (systemd: \
                 RestrictNamespaces=user net), or set agent.network = \"ports\" \
                 (MITZOD_AGENT__NETWORK=ports)",
                origin("agent.network"),
                config.agent.network.as_str()
            )),
            Ok(()) => r.notes.push(format!(
                "agent.network = {:?}: user and network namespaces are available (probed as {probed_as}; \
                 under systemd the unit's RestrictNamespaces= applies too)",
                config.agent.network.as_str()
            )),
        }
    } else if config.agent.allowed_hosts != mitzod::config::AgentConfig::default().allowed_hosts {
        r.notes.push(format!(
            "agent.allowed_hosts is set but agent.network = \"ports\" ({}): the list is not used",
            origin("agent.network")
        ));
    }

    // The agent: only sessions need it, and sessions need a repo.
    if repos.is_empty() {
        r.notes
            .push("no repo_path or repos: sessions cannot start".into());
    } else if dev::find_agent(&config.agent.command).is_none() {
        r.problems.push(format!(
            "{}: key `agent.command`: {:?} is not an executable file{}; every session would answer 503",
            origin("agent.command"),
            config.agent.command,
            if config.agent.command.contains('/') {
                ""
            } else {
                " on PATH"
            }
        ));
    }
    r
}
