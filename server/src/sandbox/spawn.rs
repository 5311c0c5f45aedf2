//! Spawning a process under a policy, through `std` or `tokio`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::landlock::{prepare, restrict_in_child, Enforcement, EnforcementReport};
use super::policy::Policy;
use crate::error::Result;

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
        Ok(SandboxedCommand {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            cwd: None,
            env,
            ruleset: prepared.ruleset,
            mode: prepared.mode,
            report: prepared.report,
        })
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
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args);
        cmd.env_clear();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut ruleset = self.ruleset;
        let mode = self.mode;
        // SAFETY: the closure runs between fork and exec; it only makes
        // async-signal-safe system calls and moves values that are already
        // allocated (the ruleset's fd and bit sets). No allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                child_hygiene()?;
                restrict_in_child(&mut ruleset, mode)
            });
        }
        cmd
    }

    pub fn into_tokio(self) -> tokio::process::Command {
        tokio::process::Command::from(self.into_std())
    }
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
