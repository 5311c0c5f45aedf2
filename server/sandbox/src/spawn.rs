//! Spawning a process under a policy, through `std` or `tokio`.
#![allow(unsafe_code)] // pre_exec: only async-signal-safe calls between fork and exec

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path as StdPath;
use std::sync::OnceLock;
use std::time::Duration;

use super::cgroup::{join_in_child, Limits, SessionCgroup};
use super::landlock::{prepare, restrict_in_child, Enforcement, EnforcementReport};
use super::netns::{self, NetnsSpec};
use super::policy::Policy;
use super::seccomp;
use crate::error::{Error, Result};

/// How agents are contained: the reaper binary, the cgroup base, limits.
#[derive(Debug, Clone)]
pub struct ContainmentConfig {
    /// The binary with the `reaper` subcommand; mitzod uses
    /// `/proc/self/exe` (its own image, even if the file was replaced).
    pub reaper: PathBuf,
    /// Where session cgroups are created; None: no cgroup, the reaper alone.
    pub cgroup_base: Option<PathBuf>,
    pub limits: Limits,
    /// SIGTERM to SIGKILL, for the reaper ending its tree.
    pub grace: Duration,
}

impl Default for ContainmentConfig {
    fn default() -> Self {
        ContainmentConfig {
            reaper: PathBuf::from("/proc/self/exe"),
            cgroup_base: None,
            limits: Limits::default(),
            grace: Duration::from_secs(3),
        }
    }
}

static CONTAINMENT: OnceLock<ContainmentConfig> = OnceLock::new();

/// Set the process-wide containment (once, at start-up).
pub fn configure_containment(c: ContainmentConfig) {
    if CONTAINMENT.set(c).is_err() {
        tracing::warn!("agent containment configured twice; keeping the first");
    }
}

fn containment() -> ContainmentConfig {
    CONTAINMENT.get().cloned().unwrap_or_default()
}

/// What a contained spawn leaves to the caller: the session cgroup (if
/// any), to be killed and removed once the reaper has exited.
#[derive(Debug, Default)]
pub struct SessionGuard {
    cgroup: Option<SessionCgroup>,
}

impl SessionGuard {
    pub fn cgroup(&self) -> Option<&StdPath> {
        self.cgroup.as_ref().map(|c| c.path())
    }

    /// Kill whatever is left in the session cgroup and remove it. Blocking.
    pub fn end(self) {
        if let Some(cg) = self.cgroup {
            cg.end();
        }
    }
}

#[derive(Debug)]
struct Contained {
    reaper: PathBuf,
    grace: Duration,
    cgroup: Option<SessionCgroup>,
    forward: Option<(u16, PathBuf)>,
}

/// A command whose ruleset is already built. Configure it, then turn it into
/// a `std::process::Command` or `tokio::process::Command` and spawn (stdio,
/// `kill_on_drop` and the like are the caller's to set on that).
#[derive(Debug)]
pub struct SandboxedCommand {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    ruleset: Option<landlock::RulesetCreated>,
    mode: Enforcement,
    report: EnforcementReport,
    seccomp: Option<seccompiler::BpfProgram>,
    contained: Option<Contained>,
    netns: Option<NetnsSpec>,
}

impl SandboxedCommand {
    /// Build the ruleset for `policy` now (in the parent). Fails when
    /// Landlock is required and unavailable, or a path cannot be opened.
    /// `env` is the child's whole environment (see [`super::build_env`]).
    pub fn new(
        program: impl AsRef<OsStr>,
        policy: &Policy,
        env: Vec<(OsString, OsString)>,
    ) -> Result<Self> {
        let prepared = prepare(policy)?;
        let seccomp = prepare_seccomp(prepared.mode)?;
        Ok(SandboxedCommand {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            cwd: None,
            env,
            ruleset: prepared.ruleset,
            mode: prepared.mode,
            report: prepared.report,
            seccomp,
            contained: None,
            netns: None,
        })
    }

    /// Run the command in new user and network namespaces where only
    /// loopback exists (see [`netns`]). Fails when this kernel or unit
    /// does not allow them: the caller asked for no network, so it does
    /// not get one silently.
    pub fn isolate_network(mut self) -> Result<Self> {
        netns::probe().map_err(|why| {
            Error::Sandbox(format!(
                "refusing to start a process without a network of its own: {why}"
            ))
        })?;
        self.netns = Some(NetnsSpec::new());
        Ok(self)
    }

    /// Run the command under a per-session reaper (`mitzod reaper`), in a
    /// cgroup of its own where one can be made, with the process-wide
    /// [`ContainmentConfig`]. Spawn it from a long-lived thread: the
    /// reaper's parent-death signal follows the thread that forked it.
    pub fn contained(self, session: &str) -> Result<Self> {
        self.contained_with(session, &containment())
    }

    pub fn contained_with(mut self, session: &str, c: &ContainmentConfig) -> Result<Self> {
        let cgroup = match &c.cgroup_base {
            Some(base) => Some(SessionCgroup::create(base, session, c.limits)?),
            None => None,
        };
        self.contained = Some(Contained {
            reaper: c.reaper.clone(),
            grace: c.grace,
            cgroup,
            forward: None,
        });
        Ok(self)
    }

    /// With [`Self::isolate_network`] and a contained command: the reaper
    /// listens on `port` of the namespace's loopback and relays every
    /// connection to the proxy's Unix socket `proxy` (the daemon's egress proxy).
    pub fn forward_to_proxy(mut self, port: u16, proxy: &StdPath) -> Result<Self> {
        match (&mut self.contained, &self.netns) {
            (Some(c), Some(_)) => {
                c.forward = Some((port, proxy.to_path_buf()));
                Ok(self)
            }
            _ => Err(Error::Internal(
                "a proxy forwarder needs a contained command in its own network namespace".into(),
            )),
        }
    }

    /// Leave out the seccomp layer. Only for tests that show what the layer
    /// adds (the same call under Landlock alone); mitzod never calls it.
    #[doc(hidden)]
    pub fn without_seccomp(mut self) -> Self {
        self.seccomp = None;
        self
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// How the policy will be enforced (for logging).
    pub fn report(&self) -> &EnforcementReport {
        &self.report
    }

    /// A `std` command: cleared environment, the allow-listed one set, and a
    /// `pre_exec` that confines the child.
    pub fn into_std(self) -> std::process::Command {
        self.into_std_with_guard().0
    }

    /// The command, and what the caller must end once the child has exited
    /// (a contained command's cgroup).
    pub fn into_std_with_guard(mut self) -> (std::process::Command, SessionGuard) {
        let Some(contained) = self.contained.take() else {
            return (self.plain_command(), SessionGuard::default());
        };
        let mut cmd = std::process::Command::new(&contained.reaper);
        // The ruleset crosses exec as an fd; the reaper enters it itself.
        let ruleset_fd: Option<OwnedFd> = self.ruleset.take().and_then(Option::<OwnedFd>::from);
        cmd.arg("reaper")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--grace-ms")
            .arg(contained.grace.as_millis().to_string());
        if let Some(fd) = &ruleset_fd {
            cmd.arg("--ruleset-fd").arg(fd.as_raw_fd().to_string());
        }
        if self.netns.is_some() {
            cmd.arg("--no-unix-sockets");
        }
        if let Some((port, path)) = &contained.forward {
            let mut f = std::ffi::OsString::from(format!("{port}="));
            f.push(path);
            cmd.arg("--forward").arg(f);
        }
        cmd.arg("--").arg(&self.program).args(&self.args);
        self.set_env_and_cwd(&mut cmd);
        let procs_fd = contained.cgroup.as_ref().map(|c| c.procs_fd());
        let seccomp = self.seccomp;
        let netns = self.netns;
        // SAFETY: between fork and exec: system calls with integer or
        // pre-built arguments only (the BPF program and the fds exist).
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = procs_fd {
                    join_in_child(fd)?;
                }
                if let Some(n) = &netns {
                    netns::enter_in_child(n)?;
                }
                child_hygiene()?;
                if let Some(fd) = &ruleset_fd {
                    keep_across_exec(fd.as_raw_fd())?;
                }
                no_new_privs()?;
                if let Some(p) = &seccomp {
                    seccomp::apply_in_child(p)?;
                }
                Ok(())
            });
        }
        (
            cmd,
            SessionGuard {
                cgroup: contained.cgroup,
            },
        )
    }

    fn set_env_and_cwd(&self, cmd: &mut std::process::Command) {
        cmd.env_clear();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
    }

    fn plain_command(self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args);
        self.set_env_and_cwd(&mut cmd);
        let mut ruleset = self.ruleset;
        let mode = self.mode;
        let seccomp = self.seccomp;
        let netns = self.netns;
        // SAFETY: the closure runs between fork and exec; it only makes
        // async-signal-safe system calls and moves values that are already
        // allocated (the ruleset's fd and bit sets, the BPF program). No
        // allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(n) = &netns {
                    netns::enter_in_child(n)?;
                }
                child_hygiene()?;
                restrict_in_child(&mut ruleset, mode)?;
                if let Some(p) = &seccomp {
                    seccomp::apply_in_child(p)?;
                }
                Ok(())
            });
        }
        cmd
    }

    pub fn into_tokio(self) -> tokio::process::Command {
        tokio::process::Command::from(self.into_std())
    }

    pub fn into_tokio_with_guard(self) -> (tokio::process::Command, SessionGuard) {
        let (cmd, guard) = self.into_std_with_guard();
        (tokio::process::Command::from(cmd), guard)
    }
}

/// Build the seccomp program in the parent. Fails closed like Landlock:
/// under `required` a kernel without seccomp filters means no child.
fn prepare_seccomp(mode: Enforcement) -> Result<Option<seccompiler::BpfProgram>> {
    // The program is the same for every process: compiled once.
    static FILTER: OnceLock<std::result::Result<seccompiler::BpfProgram, String>> = OnceLock::new();
    let built = FILTER
        .get_or_init(|| {
            seccomp::probe().and_then(|()| {
                seccomp::build_filter().map_err(|e| match e {
                    Error::Sandbox(m) => m,
                    other => other.to_string(),
                })
            })
        })
        .clone()
        .map_err(Error::Sandbox);
    match (built, mode) {
        (Ok(p), _) => Ok(Some(p)),
        (Err(e), Enforcement::Required) => Err(Error::Sandbox(format!(
            "refusing to start a sandboxed process: the seccomp layer is required (sandbox.landlock = \"required\") but cannot be applied: {e}"
        ))),
        (Err(e), Enforcement::BestEffort) => {
            tracing::warn!("SECCOMP NOT ENFORCED: running a process without the seccomp layer because sandbox.landlock = \"best-effort\" and {e}");
            Ok(None)
        }
    }
}

fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn keep_across_exec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on an fd of this process.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Empty the bounding, ambient, inheritable, permitted and effective sets,
/// so the child cannot use or regain a capability even when mitzod has one
/// (as root in tests): with no CAP_SYS_PTRACE, a non-dumpable mitzod's
/// /proc/<pid>/environ stays closed to it. Errors (EPERM without
/// CAP_SETPCAP) are ignored: then there is nothing to drop.
unsafe fn drop_capabilities() {
    for cap in 0..64 {
        libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
    libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        0,
        0,
    );
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        // _LINUX_CAPABILITY_VERSION_3: two 32-bit data words.
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr());
}

/// New session (so no controlling terminal and its own process group), no
/// core dumps, subreaper for its own descendants, no capabilities (so a double-forked,
/// `setsid` grandchild stays in the tree mitzod kills), and every inherited
/// fd above stderr closed at exec (systemd's LISTEN_FDS sockets are not
/// close-on-exec).
fn child_hygiene() -> io::Result<()> {
    // SAFETY: plain system calls with integer or stack arguments.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::setrlimit(libc::RLIMIT_CORE, &zero) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        drop_capabilities();
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
            // Kernels before 5.11: mark them one by one.
            for fd in 3..4096 {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
    Ok(())
}
