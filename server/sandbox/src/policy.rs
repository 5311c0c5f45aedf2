//! What a sandboxed process may touch, and the default policy for an agent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::landlock::Enforcement;
use crate::error::{Error, Result};

/// A Landlock policy. Paths not listed (and not beneath a listed path) are
/// inaccessible; TCP ports not listed can be neither connected to nor bound.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Full access, including execute, create, delete, rename and truncate.
    #[serde(default)]
    pub read_write: Vec<PathBuf>,
    /// Read files and list directories.
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    /// Read, list and execute.
    #[serde(default)]
    pub read_exec: Vec<PathBuf>,
    /// TCP ports the process may connect to (any address).
    #[serde(default)]
    pub connect_tcp: Vec<u16>,
    /// TCP ports the process may bind; none by default.
    #[serde(default)]
    pub bind_tcp: Vec<u16>,
    #[serde(default)]
    pub scopes: Scopes,
    #[serde(default)]
    pub landlock: Enforcement,
}

/// Landlock scopes (ABI >= 6): isolate the sandbox from everything outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scopes {
    /// No signals to processes outside the sandbox.
    pub signals: bool,
    /// No connecting to abstract Unix sockets created outside the sandbox.
    pub abstract_unix_sockets: bool,
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes {
            signals: true,
            abstract_unix_sockets: true,
        }
    }
}

/// DNS over TCP (the only DNS the seccomp layer leaves).
pub const DNS_PORT: u16 = 53;

/// System trees an agent (or git) needs to read and execute, where present.
const SYSTEM_READ_EXEC: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/nix/store",
    "/run/current-system",
    "/opt",
    "/etc/alternatives",
];

/// Read-only system paths: configuration, and the kernel views node and git
/// read (CPU count, cgroup limits, /proc/self). /proc is readable, but
/// Landlock's ptrace restriction denies /proc/<pid>/{environ,mem,...} of
/// processes outside the sandbox's domain, dumpable same-uid ones included
/// (`sandbox_escape::escape_table`, rows "read /proc/<outside dumpable
/// process>/environ" and ".../mem", each with a control without Landlock).
const SYSTEM_READ_ONLY: &[&str] = &[
    "/etc",
    "/proc",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/urandom",
    "/dev/random",
];

/// Device files a process may also write (writes to them go nowhere).
const DEVICES_READ_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"];

/// Credential directories that are never granted, whatever the config says.
fn credential_dirs() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/run/credentials")];
    if let Some(d) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        if !d.is_empty() {
            v.push(PathBuf::from(d));
        }
    }
    v
}

/// The system read/exec paths present on this machine.
pub fn system_read_exec_paths() -> Vec<PathBuf> {
    existing(SYSTEM_READ_EXEC)
}

fn existing(list: &[&str]) -> Vec<PathBuf> {
    list.iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// Everything the default agent policy is built from.
#[derive(Debug, Clone)]
pub struct AgentPolicyInputs<'a> {
    /// The session's repo (read-write).
    pub repo: &'a Path,
    /// The session's worktrees (read-write; usually inside the repo).
    pub worktrees: &'a [PathBuf],
    /// Whether the whole repo is writable. False for an isolated session:
    /// the repo (its `.git` included) is read-only, other sessions'
    /// checkouts are unreadable, and only its own checkout (a clone with its
    /// own git dir) is writable.
    pub repo_writable: bool,
    /// `agent.home` (read-write): where `~/.claude` lives.
    pub agent_home: &'a Path,
    /// The private per-session tmp dir (read-write; `TMPDIR`).
    pub session_tmp: &'a Path,
    /// mitzod's state dir: never granted; no granted path may contain it.
    pub state_dir: &'a Path,
    /// Other files the agent must never read (secret files, the config
    /// file). Read-only grants that contain one are carved around it.
    pub hidden: &'a [PathBuf],
    /// The agent executable (its install dir becomes read+exec).
    pub agent_binary: &'a Path,
    /// mitzod's own TCP port, which the agent may connect to.
    pub own_port: Option<u16>,
    pub agent: AgentGrants<'a>,
    pub landlock: Enforcement,
}

/// What the owner's configuration (`agent.*`) adds to an agent's policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentGrants<'a> {
    pub extra_read_paths: &'a [PathBuf],
    pub extra_write_paths: &'a [PathBuf],
    pub allowed_connect_ports: &'a [u16],
}

/// The default policy for an agent of a session.
pub fn agent_policy(inp: &AgentPolicyInputs<'_>) -> Result<Policy> {
    let state_dir = canonical(inp.state_dir, "state dir")?;
    let mut hidden: Vec<PathBuf> = vec![state_dir.clone()];
    for p in credential_dirs() {
        hidden.push(std::fs::canonicalize(&p).unwrap_or(p));
    }
    for p in inp.hidden {
        hidden.push(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    }

    // Paths inside the state dir that may be granted (the agent home and
    // session tmp live there by default).
    let home = canonical(inp.agent_home, "agent home")?;
    let tmp = canonical(inp.session_tmp, "session tmp dir")?;
    let exceptions = [home.clone(), tmp.clone()];

    let mut rw = Vec::new();
    let repo = canonical(inp.repo, "repo")?;
    let mut repo_read = Vec::new();
    if inp.repo_writable {
        rw.push(("repo", repo.clone()));
    } else {
        // An isolated session's checkout is a clone with its own git dir:
        // it writes nothing of the main repo, `.git` included, and reads the
        // main repo (its object store through the clone's alternates) but
        // not the other sessions' checkouts.
        repo_read = git_read_dirs(&repo)?;
        // A state dir inside the repo (`serve --dev`) stays out of the grant.
        repo_read.retain(|p| !hidden.iter().any(|h| p.starts_with(h)));
    }
    for w in inp.worktrees {
        rw.push(("worktree", canonical(w, "worktree")?));
    }
    rw.push(("agent home", home));
    rw.push(("session tmp dir", tmp));
    for (i, p) in inp.agent.extra_write_paths.iter().enumerate() {
        if p == Path::new("/") {
            return Err(Error::Sandbox(format!(
                "agent.extra_write_paths[{i}]: `/` would defeat the sandbox"
            )));
        }
        rw.push((
            "agent.extra_write_paths entry",
            canonical(p, "agent.extra_write_paths entry")?,
        ));
    }
    for (what, p) in &rw {
        check_write_grant(what, p, &hidden, &exceptions)?;
    }

    let mut read_exec = system_read_exec_paths();
    read_exec.extend(repo_read);
    let bin = canonical(inp.agent_binary, "agent binary")?;
    if let Some(dir) = bin.parent() {
        read_exec.push(dir.to_path_buf());
    }
    let mut read_only = existing(SYSTEM_READ_ONLY);
    for (i, p) in inp.agent.extra_read_paths.iter().enumerate() {
        let p = canonical(p, "agent.extra_read_paths entry")?;
        if p == Path::new("/") {
            return Err(Error::Sandbox(format!(
                "agent.extra_read_paths[{i}]: `/` would expose the state dir and credentials"
            )));
        }
        read_only.push(p);
    }
    let read_exec = carve(read_exec, &hidden, &exceptions)?;
    let read_only = carve(read_only, &hidden, &exceptions)?;

    let mut read_write: Vec<PathBuf> = rw.into_iter().map(|(_, p)| p).collect();
    read_write.extend(existing(DEVICES_READ_WRITE));

    let mut connect: BTreeSet<u16> = inp.agent.allowed_connect_ports.iter().copied().collect();
    // Name resolution: the seccomp layer refuses UDP, so resolvers are told
    // to use TCP (RES_OPTIONS=use-vc, see env.rs), to port 53.
    connect.insert(DNS_PORT);
    if let Some(p) = inp.own_port {
        connect.insert(p);
    }
    Ok(Policy {
        read_write: dedup(read_write),
        read_only: dedup(read_only),
        read_exec: dedup(read_exec),
        connect_tcp: connect.into_iter().collect(),
        bind_tcp: Vec::new(),
        scopes: Scopes::default(),
        landlock: inp.landlock,
    })
}

/// What an isolated session reads of its repo: all of it except the
/// directory of session checkouts (each session gets its own checkout
/// read-write on top of this).
fn git_read_dirs(repo: &Path) -> Result<Vec<PathBuf>> {
    let checkouts = repo.join(".mitzo/checkouts");
    if std::fs::symlink_metadata(&checkouts).is_err() {
        return Ok(vec![repo.to_path_buf()]);
    }
    carve(vec![repo.to_path_buf()], &[checkouts], &[])
}

fn canonical(p: &Path, what: &str) -> Result<PathBuf> {
    if !p.is_absolute() {
        return Err(Error::Sandbox(format!(
            "{what} must be an absolute path: {}",
            p.display()
        )));
    }
    std::fs::canonicalize(p).map_err(|e| Error::Sandbox(format!("{what} {}: {e}", p.display())))
}

/// A read-write grant may neither contain a hidden path (Landlock cannot
/// subtract) nor lie inside one, except for the allowed sub-dirs.
fn check_write_grant(
    what: &str,
    p: &Path,
    hidden: &[PathBuf],
    exceptions: &[PathBuf],
) -> Result<()> {
    for h in hidden {
        if h.starts_with(p) {
            return Err(Error::Sandbox(format!(
                "{what} {} contains {}, which the agent must never access; grant a narrower path",
                p.display(),
                h.display()
            )));
        }
        if p.starts_with(h) && !exceptions.iter().any(|e| p.starts_with(e)) {
            return Err(Error::Sandbox(format!(
                "{what} {} is inside {}, which the agent must never access",
                p.display(),
                h.display()
            )));
        }
    }
    Ok(())
}

/// Read grants that contain a hidden path are replaced by grants on their
/// children, recursively, skipping the hidden path itself (Landlock rules
/// only add access, so this is the only way to leave a hole). Grants inside a
/// hidden path are refused, except the allowed sub-dirs.
fn carve(paths: Vec<PathBuf>, hidden: &[PathBuf], exceptions: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let p = std::fs::canonicalize(&p).unwrap_or(p);
        carve_one(&p, hidden, exceptions, &mut out, 0)?;
    }
    Ok(out)
}

fn carve_one(
    p: &Path,
    hidden: &[PathBuf],
    exceptions: &[PathBuf],
    out: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<()> {
    if let Some(h) = hidden
        .iter()
        .find(|h| p.starts_with(h) && !exceptions.iter().any(|e| p.starts_with(e)))
    {
        return Err(Error::Sandbox(format!(
            "read grant {} is inside {}, which the agent must never access",
            p.display(),
            h.display()
        )));
    }
    if !hidden.iter().any(|h| h.starts_with(p)) {
        out.push(p.to_path_buf());
        return Ok(());
    }
    if depth > 16 {
        return Err(Error::Sandbox(format!(
            "cannot carve hidden paths out of {}: too deep",
            p.display()
        )));
    }
    let entries =
        std::fs::read_dir(p).map_err(|e| Error::io(format!("listing {}", p.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", p.display()), e))?;
        let child = entry.path();
        if hidden.iter().any(|h| h == &child) {
            continue;
        }
        // Symlinks are not followed here: the link target is granted (or
        // not) on its own, and a rule on a link would grant its target.
        let ft = entry
            .file_type()
            .map_err(|e| Error::io(format!("stat {}", child.display()), e))?;
        if ft.is_symlink() {
            continue;
        }
        carve_one(&child, hidden, exceptions, out, depth + 1)?;
    }
    Ok(())
}

fn dedup(v: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    v.into_iter().filter(|p| seen.insert(p.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's `[agent]` settings the policy reads, with its defaults.
    struct AgentConfig {
        extra_read_paths: Vec<PathBuf>,
        extra_write_paths: Vec<PathBuf>,
        allowed_connect_ports: Vec<u16>,
    }

    impl Default for AgentConfig {
        fn default() -> Self {
            AgentConfig {
                extra_read_paths: Vec::new(),
                extra_write_paths: Vec::new(),
                allowed_connect_ports: vec![443],
            }
        }
    }

    fn inputs<'a>(
        root: &'a Path,
        agent: &'a AgentConfig,
        hidden: &'a [PathBuf],
    ) -> AgentPolicyInputs<'a> {
        AgentPolicyInputs {
            repo: Box::leak(root.join("repo").into_boxed_path()),
            worktrees: &[],
            repo_writable: true,
            agent_home: Box::leak(root.join("state/agent-home").into_boxed_path()),
            session_tmp: Box::leak(root.join("state/tmp/s1").into_boxed_path()),
            state_dir: Box::leak(root.join("state").into_boxed_path()),
            hidden,
            agent_binary: Path::new("/bin/sh"),
            own_port: Some(3100),
            agent: AgentGrants {
                extra_read_paths: &agent.extra_read_paths,
                extra_write_paths: &agent.extra_write_paths,
                allowed_connect_ports: &agent.allowed_connect_ports,
            },
            landlock: Enforcement::Required,
        }
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for p in [
            "repo",
            "state/agent-home",
            "state/tmp/s1",
            "etc/mitzod",
            "etc/other",
        ] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        std::fs::write(d.path().join("etc/mitzod/jwt"), "x").unwrap();
        std::fs::write(d.path().join("etc/passwd"), "x").unwrap();
        d
    }

    #[test]
    fn default_policy_grants_and_ports() {
        let d = setup();
        let agent = AgentConfig::default();
        let p = agent_policy(&inputs(d.path(), &agent, &[])).unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        assert!(p.read_write.contains(&root.join("repo")));
        assert!(p.read_write.contains(&root.join("state/agent-home")));
        assert!(!p
            .read_write
            .iter()
            .chain(&p.read_only)
            .chain(&p.read_exec)
            .any(|x| x == &root.join("state")));
        assert_eq!(p.connect_tcp, vec![DNS_PORT, 443, 3100]);
        assert!(p.bind_tcp.is_empty());
    }

    #[test]
    fn isolated_session_writes_only_its_checkout_and_reads_no_other() {
        let d = setup();
        let root = std::fs::canonicalize(d.path()).unwrap();
        for p in [
            ".git/objects",
            ".mitzo/checkouts/a/.git",
            ".mitzo/checkouts/b",
            "src",
        ] {
            std::fs::create_dir_all(root.join("repo").join(p)).unwrap();
        }
        let agent = AgentConfig::default();
        let own = [root.join("repo/.mitzo/checkouts/a")];
        let mut inp = inputs(d.path(), &agent, &[]);
        inp.repo_writable = false;
        inp.worktrees = &own;
        let p = agent_policy(&inp).unwrap();
        let repo = root.join("repo");
        assert!(p.read_write.contains(&own[0]));
        let under = |x: &Path, list: &[PathBuf]| list.iter().any(|g| x.starts_with(g));
        for grants in [&p.read_write, &p.read_only, &p.read_exec] {
            assert!(!under(&repo.join(".mitzo/checkouts/b/x"), grants));
        }
        assert!(!under(&repo.join(".git/objects/x"), &p.read_write));
        assert!(!under(&repo.join("src/x"), &p.read_write));
        assert!(under(&repo.join(".git/objects/x"), &p.read_exec));
        assert!(under(&repo.join("src/x"), &p.read_exec));
    }

    #[test]
    fn write_grant_containing_state_dir_is_refused() {
        let d = setup();
        let mut agent = AgentConfig {
            extra_write_paths: vec![d.path().to_path_buf()],
            ..AgentConfig::default()
        };
        let err = agent_policy(&inputs(d.path(), &agent, &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("contains") && err.contains("state"), "{err}");
        agent.extra_write_paths = vec![PathBuf::from("/")];
        let err = agent_policy(&inputs(d.path(), &agent, &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`/`"), "{err}");
        agent.extra_write_paths = vec![d.path().join("state")];
        assert!(agent_policy(&inputs(d.path(), &agent, &[])).is_err());
    }

    #[test]
    fn read_grant_is_carved_around_hidden_files() {
        let d = setup();
        let agent = AgentConfig {
            extra_read_paths: vec![d.path().join("etc")],
            ..AgentConfig::default()
        };
        let hidden = vec![d.path().join("etc/mitzod/jwt")];
        let p = agent_policy(&inputs(d.path(), &agent, &hidden)).unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        assert!(p.read_only.contains(&root.join("etc/passwd")));
        assert!(p.read_only.contains(&root.join("etc/other")));
        assert!(!p.read_only.contains(&root.join("etc")));
        assert!(!p.read_only.contains(&root.join("etc/mitzod")));
        assert!(!p.read_only.contains(&root.join("etc/mitzod/jwt")));
    }

    #[test]
    fn policy_round_trips_as_json() {
        let p = Policy {
            read_write: vec!["/a".into()],
            connect_tcp: vec![443],
            ..Policy::default()
        };
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&s).unwrap(), p);
        assert!(serde_json::from_str::<Policy>(r#"{"read_writ": []}"#).is_err());
    }
}
