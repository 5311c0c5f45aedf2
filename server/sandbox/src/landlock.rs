//! Landlock: probing the kernel, building the ruleset in the parent, and the
//! one call the child makes before exec.
#![allow(unsafe_code)] // the landlock syscalls the child makes before exec

use std::fmt;
use std::io;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    RestrictSelfError, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError,
    RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

use super::policy::Policy;
use crate::error::{Error, Result};

/// The newest ABI whose features the policy uses (V6 adds scopes); a kernel
/// with at least this ABI enforces the policy fully.
const TARGET_ABI: ABI = ABI::V6;
const TARGET_ABI_NUM: i32 = 6;

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
const CREATE_RULESET_VERSION: libc::c_uint = 1;

/// What to do when the kernel cannot enforce the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// No Landlock, or a ruleset that would not be enforced: refuse to run.
    #[default]
    Required,
    /// Run anyway, with a loud warning.
    BestEffort,
}

/// The Landlock ABI the running kernel reports, or why it reports none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiProbe {
    /// `Some(n)` when the kernel answered with ABI version `n` (>= 1).
    pub version: Option<i32>,
    /// The errno of the probe when it failed.
    pub errno: Option<i32>,
}

impl AbiProbe {
    pub fn supported(&self) -> bool {
        self.version.is_some()
    }

    /// The ABI the crate will use (capped at the newest it knows).
    fn abi(&self) -> ABI {
        ABI::from(self.version.unwrap_or(0))
    }

    /// Features of the policy this kernel cannot enforce.
    pub fn missing_features(&self) -> Vec<&'static str> {
        let v = self.version.unwrap_or(0);
        let mut missing = Vec::new();
        if v < 1 {
            missing.push("all filesystem restrictions");
        }
        if v < 2 {
            missing.push("linking/renaming across directories (refer)");
        }
        if v < 3 {
            missing.push("truncate");
        }
        if v < 4 {
            missing.push("TCP bind/connect restrictions");
        }
        if v < 5 {
            missing.push("device ioctl restrictions");
        }
        if v < 6 {
            missing.push("signal and abstract-unix-socket scoping");
        }
        missing
    }

    /// Why Landlock is unavailable, in words an operator can act on.
    pub fn unavailable_reason(&self) -> String {
        match self.errno {
            Some(libc::ENOSYS) => "the kernel does not implement Landlock (ENOSYS): it needs Linux >= 5.13 built with CONFIG_SECURITY_LANDLOCK".into(),
            Some(libc::EOPNOTSUPP) => "Landlock is built into the kernel but not enabled (EOPNOTSUPP): add `landlock` to the `lsm=` kernel command line".into(),
            Some(libc::EPERM) => "the landlock syscalls were refused with EPERM, which usually means a seccomp filter blocks them: systemd's SystemCallFilter=@system-service does so on systemd <= 252; add `SystemCallFilter=landlock_create_ruleset landlock_add_rule landlock_restrict_self` to the unit or upgrade systemd".into(),
            Some(e) => format!(
                "the Landlock probe failed with {} (a seccomp filter such as systemd's SystemCallFilter=@system-service on systemd <= 252 can cause this)",
                io::Error::from_raw_os_error(e)
            ),
            None => "Landlock is available".into(),
        }
    }
}

impl fmt::Display for AbiProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) if v >= TARGET_ABI_NUM => write!(f, "Landlock ABI {v}: policy fully enforced"),
            Some(v) => write!(
                f,
                "Landlock ABI {v}: policy partially enforced (missing: {})",
                self.missing_features().join(", ")
            ),
            None => write!(f, "Landlock unavailable: {}", self.unavailable_reason()),
        }
    }
}

/// Ask the kernel for its Landlock ABI. mitzod logs this at start-up.
pub fn landlock_abi() -> AbiProbe {
    // SAFETY: the version query takes no pointer the kernel dereferences.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v >= 1 {
        AbiProbe {
            version: i32::try_from(v).ok(),
            errno: None,
        }
    } else {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOSYS);
        AbiProbe {
            version: None,
            errno: Some(errno),
        }
    }
}

/// How a policy will be enforced on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcementReport {
    pub probe: AbiProbe,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Full,
    Partial(Vec<&'static str>),
    /// Only possible with [`Enforcement::BestEffort`].
    NotEnforced,
}

/// A created ruleset, ready for `restrict_self()` in a child.
pub(crate) struct Prepared {
    pub ruleset: Option<RulesetCreated>,
    pub report: EnforcementReport,
    pub mode: Enforcement,
}

fn rs_err(what: &str, e: RulesetError) -> Error {
    Error::Sandbox(format!("{what}: {e}"))
}

/// Build the ruleset for `policy` in the calling (parent) process: every path
/// is opened here, so the child only has to call `landlock_restrict_self`.
pub(crate) fn prepare(policy: &Policy) -> Result<Prepared> {
    let probe = landlock_abi();
    let mode = policy.landlock;
    if !probe.supported() {
        let why = probe.unavailable_reason();
        return match mode {
            Enforcement::Required => Err(Error::Sandbox(format!(
                "refusing to start a sandboxed process: Landlock is required (sandbox.landlock = \"required\") but {why}. \
                 Set sandbox.landlock = \"best-effort\" only if you accept running agents unconfined."
            ))),
            Enforcement::BestEffort => {
                tracing::warn!(
                    "SANDBOX NOT ENFORCED: running a process WITHOUT Landlock confinement because sandbox.landlock = \"best-effort\" and {why}"
                );
                Ok(Prepared {
                    ruleset: None,
                    report: EnforcementReport {
                        probe,
                        status: Status::NotEnforced,
                    },
                    mode,
                })
            }
        };
    }
    let abi = probe.abi();
    let missing = probe.missing_features();
    let status = if missing.is_empty() {
        Status::Full
    } else {
        tracing::warn!(
            abi = probe.version,
            "Landlock partially enforced; not enforced on this kernel: {}",
            missing.join(", ")
        );
        Status::Partial(missing)
    };

    let fs_all = AccessFs::from_all(TARGET_ABI);
    let fs_read = AccessFs::ReadFile | AccessFs::ReadDir;
    let fs_read_exec = fs_read | AccessFs::Execute;
    let mut scopes = BitFlags::<Scope>::EMPTY;
    if policy.scopes.signals {
        scopes |= Scope::Signal;
    }
    if policy.scopes.abstract_unix_sockets {
        scopes |= Scope::AbstractUnixSocket;
    }

    // Best effort in the crate: features the kernel lacks are dropped (and
    // reported above); whether that is acceptable is decided by `mode`.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(fs_all)
        .map_err(|e| rs_err("handling filesystem access", e))?;
    if abi >= ABI::V4 {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(TARGET_ABI))
            .map_err(|e| rs_err("handling network access", e))?;
    }
    if abi >= ABI::V6 && !scopes.is_empty() {
        ruleset = ruleset
            .scope(scopes)
            .map_err(|e| rs_err("setting scopes", e))?;
    }
    let mut created = ruleset
        .create()
        .map_err(|e| rs_err("creating the Landlock ruleset", e))?;

    for (paths, access) in [
        (&policy.read_write, fs_all),
        (&policy.read_exec, fs_read_exec),
        (&policy.read_only, fs_read),
    ] {
        for path in paths {
            let fd = PathFd::new(path).map_err(|e| {
                Error::Sandbox(format!(
                    "cannot open {} for the ruleset: {e}",
                    path.display()
                ))
            })?;
            let is_dir = std::fs::metadata(path)
                .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
                .is_dir();
            // Directory-only rights on a file are an error for the kernel.
            let access = if is_dir {
                access
            } else {
                access & AccessFs::from_file(TARGET_ABI)
            };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| rs_err(&format!("adding a rule for {}", path.display()), e))?;
        }
    }
    if abi >= ABI::V4 {
        for port in &policy.connect_tcp {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(|e| rs_err(&format!("allowing connect to port {port}"), e))?;
        }
        for port in &policy.bind_tcp {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::BindTcp))
                .map_err(|e| rs_err(&format!("allowing bind to port {port}"), e))?;
        }
    }
    Ok(Prepared {
        ruleset: Some(created),
        report: EnforcementReport { probe, status },
        mode,
    })
}

/// The child half: runs between fork and exec, so no allocation, no locks.
/// Consumes the ruleset (the child's copy) and enforces it on this thread,
/// which is the only thread of the child.
pub(crate) fn restrict_in_child(
    ruleset: &mut Option<RulesetCreated>,
    mode: Enforcement,
) -> io::Result<()> {
    let Some(rs) = ruleset.take() else {
        // The parent already decided (best-effort without Landlock); still
        // forbid gaining privileges through exec.
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    };
    match rs.restrict_self() {
        Ok(status) => {
            if status.ruleset == RulesetStatus::NotEnforced && mode == Enforcement::Required {
                return Err(io::Error::from_raw_os_error(libc::ENOSYS));
            }
            Ok(())
        }
        Err(RulesetError::RestrictSelf(
            RestrictSelfError::SetNoNewPrivsCall { source, .. }
            | RestrictSelfError::RestrictSelfCall { source, .. },
        )) => Err(source),
        Err(_) => Err(io::Error::from_raw_os_error(libc::EPERM)),
    }
}
