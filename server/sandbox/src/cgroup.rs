//! A cgroup (v2) per session, where one may be made: `cgroup.kill` ends
//! everything in it at once, whatever it did to its parentage, and
//! `pids.max` / `memory.max` bound it.
//!
//! mitzod creates session cgroups only under a subtree systemd delegated to
//! it (`Delegate=yes`, which marks the unit's cgroup with the
//! `trusted.delegate` / `user.delegate` extended attribute), or under a base
//! a caller names explicitly (tests). Elsewhere there is no cgroup and the
//! per-session reaper alone contains the tree.
#![allow(unsafe_code)] // getxattr and the cgroup join between fork and exec

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Per-session limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub pids_max: Option<u64>,
    pub memory_max: Option<u64>,
}

/// Parse a memory size: bytes, or a number with a K, M, G or T suffix
/// (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(Error::Invalid(format!("size {s:?}: unknown suffix {c:?}"))),
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::Invalid(format!("size {s:?}: expected e.g. 2G, 512M or bytes")))
}

/// Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in info.lines() {
        // ... mount_point ... - fstype source options
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next() == Some("cgroup2") {
            return left.split_whitespace().nth(4).map(PathBuf::from);
        }
    }
    None
}

/// This process's own cgroup v2 directory.
pub fn own_cgroup() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = cgroup2_mount()?;
    Some(mount.join(rel.trim_start_matches('/')))
}

fn has_delegate_xattr(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    for name in [c"trusted.delegate", c"user.delegate"] {
        let mut buf = [0u8; 8];
        // SAFETY: valid NUL-terminated strings and a buffer of the given size.
        let n = unsafe {
            libc::getxattr(
                c.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n > 0 && buf.first() == Some(&b'1') {
            return true;
        }
    }
    false
}

fn writable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid path string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The delegated subtree mitzod may create session cgroups in, prepared for
/// use: mitzod moves itself into a `daemon` leaf (a cgroup with processes
/// cannot also have controllers for its children) and enables the pids and
/// memory controllers for its children. None when nothing was delegated.
/// `owner`: the service user mitzod is about to drop to (root start); the
/// base and its `cgroup.procs` are handed to it so it can create session
/// cgroups and move reapers into them afterwards.
pub fn prepare_delegated_base(owner: Option<(u32, u32)>) -> Option<PathBuf> {
    let own = own_cgroup()?;
    if own.parent().is_none() || !has_delegate_xattr(&own) {
        return None;
    }
    if !writable(&own) || !writable(&own.join("cgroup.subtree_control")) {
        return None;
    }
    // Already prepared (a restart inside the same unit keeps the tree).
    let base = if own.file_name().is_some_and(|n| n == "daemon")
        && own.parent().is_some_and(has_delegate_xattr)
    {
        own.parent()?.to_path_buf()
    } else {
        let leaf = own.join("daemon");
        if let Err(e) = std::fs::create_dir(&leaf) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                tracing::warn!(error = %e, dir = %leaf.display(), "cannot create mitzod's own leaf cgroup");
                return None;
            }
        }
        if let Err(e) = std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()) {
            tracing::warn!(error = %e, "cannot move mitzod into its leaf cgroup");
            return None;
        }
        own
    };
    enable_controllers(&base);
    if let Some((uid, gid)) = owner {
        for p in [base.clone(), base.join("cgroup.procs")] {
            if let Err(e) = std::os::unix::fs::chown(&p, Some(uid), Some(gid)) {
                tracing::warn!(error = %e, path = %p.display(), "cannot hand the session cgroup base to the service user");
                return None;
            }
        }
    }
    Some(base)
}

/// Turn on the pids and memory controllers for `base`'s children, where
/// `base` has them.
pub fn enable_controllers(base: &Path) {
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    for c in ["pids", "memory"] {
        if available.split_whitespace().any(|x| x == c) {
            if let Err(e) = std::fs::write(base.join("cgroup.subtree_control"), format!("+{c}")) {
                tracing::warn!(error = %e, controller = c, base = %base.display(), "cannot enable a cgroup controller for sessions");
            }
        }
    }
}

/// The limits `base` can apply: a limit whose controller is not enabled for
/// its children is dropped with a warning (agents still start, contained
/// by the reaper and `cgroup.kill`).
pub fn effective_limits(base: &Path, limits: Limits) -> Limits {
    let enabled = std::fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |c: &str| enabled.split_whitespace().any(|x| x == c);
    let mut out = limits;
    if out.pids_max.is_some() && !has("pids") {
        tracing::warn!(base = %base.display(), "session.pids_max is not applied: the delegated cgroup has no pids controller");
        out.pids_max = None;
    }
    if out.memory_max.is_some() && !has("memory") {
        tracing::warn!(base = %base.display(), "session.memory_max is not applied: the delegated cgroup has no memory controller");
        out.memory_max = None;
    }
    out
}

/// One session's cgroup. The spawned child joins it before exec by writing
/// `0` to the `cgroup.procs` file opened here.
#[derive(Debug)]
pub struct SessionCgroup {
    dir: PathBuf,
    procs: File,
}

fn safe_name(session: &str) -> String {
    let s: String = session
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    if s.is_empty() {
        "anon".into()
    } else {
        s
    }
}

impl SessionCgroup {
    /// Create `<base>/session-<id>` (with a counter when an old one of the
    /// same session is still there) and set the limits. A configured limit
    /// the base cannot apply (controller missing) is an error: the caller
    /// asked for a bound.
    pub fn create(base: &Path, session: &str, limits: Limits) -> Result<SessionCgroup> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!("session-{}", safe_name(session));
        let mut dir = base.join(&name);
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(Error::io(format!("creating cgroup {}", dir.display()), e));
            }
            // A leftover from this session's previous agent: gone if empty.
            if std::fs::remove_dir(&dir)
                .and_then(|()| std::fs::create_dir(&dir))
                .is_err()
            {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                dir = base.join(format!("{name}.{}.{n}", std::process::id()));
                std::fs::create_dir(&dir)
                    .map_err(|e| Error::io(format!("creating cgroup {}", dir.display()), e))?;
            }
        }
        let cg = SessionCgroup {
            procs: OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map_err(|e| Error::io(format!("opening {}/cgroup.procs", dir.display()), e))?,
            dir,
        };
        let set = |file: &str, value: u64| -> Result<()> {
            std::fs::write(cg.dir.join(file), value.to_string()).map_err(|e| {
                Error::Sandbox(format!(
                    "cannot set {file} of cgroup {} ({e}); is the controller enabled for mitzod's cgroup?",
                    cg.dir.display()
                ))
            })
        };
        let applied = (|| {
            if let Some(n) = limits.pids_max {
                set("pids.max", n)?;
            }
            if let Some(n) = limits.memory_max {
                set("memory.max", n)?;
                // Swap would only slow the bound down.
                let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
            }
            Ok(())
        })();
        if let Err(e) = applied {
            let _ = std::fs::remove_dir(&cg.dir);
            return Err(e);
        }
        Ok(cg)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Kill everything in the cgroup (`cgroup.kill`, Linux >= 5.14; before
    /// that, SIGKILL to each listed process until it is empty), wait until
    /// it is empty, remove it. Blocking; bounded.
    pub fn end(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if !self.populated() {
                break;
            }
            if std::fs::write(self.dir.join("cgroup.kill"), "1").is_err() {
                for pid in self.pids() {
                    // SAFETY: kill with integers; every listed process is in
                    // the session's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(cgroup = %self.dir.display(), "session cgroup still populated after kill");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(error = %e, cgroup = %self.dir.display(), "cannot remove session cgroup");
        }
    }

    fn populated(&self) -> bool {
        match std::fs::read_to_string(self.dir.join("cgroup.events")) {
            Ok(s) => s.lines().any(|l| l == "populated 1"),
            Err(_) => !self.pids().is_empty(),
        }
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// The child half: join the cgroup (`0` names the writer). No allocation.
pub(crate) fn join_in_child(procs_fd: RawFd) -> io::Result<()> {
    let mut f = std::mem::ManuallyDrop::new(
        // SAFETY: the fd is open in this (child) process and not closed here:
        // ManuallyDrop keeps the File from closing it.
        unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(procs_fd) },
    );
    f.write_all(b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert!(parse_size("0").is_err());
        assert!(parse_size("2Q").is_err());
        assert!(parse_size("x").is_err());
    }
}
