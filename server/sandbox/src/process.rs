//! Ending a session: find every process that belongs to it, stop it, kill it,
//! reap it.
//!
//! Membership: the root (an agent's reaper), every process whose parent
//! chain leads to it, and every process in its session or process group.
//! The reaper is a child subreaper, so a grandchild that double-forks and
//! calls `setsid` is reparented to it and stays in the tree. Signals go
//! through pidfds opened while the start time still matched, so a reused pid
//! is never signalled.
#![allow(unsafe_code)] // pidfd, kill and waitid on the process tree

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Make this process a child subreaper: orphaned descendants are reparented
/// to it instead of init, so they can be found, killed and reaped. Call once
/// at start-up; it is per process and survives nothing but exec.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcInfo {
    ppid: i32,
    pgrp: i32,
    sid: i32,
    state: u8,
    start: u64,
}

/// `/proc/<pid>/stat`, parsed after the last `)` (the name may contain any
/// byte, including `)` and spaces).
fn read_stat(pid: i32) -> Option<ProcInfo> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(s.get(close + 2..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Fields after the name: state(3) ppid(4) pgrp(5) session(6) ... starttime(22).
    Some(ProcInfo {
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn all_processes() -> BTreeMap<i32, ProcInfo> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                if let Some(info) = read_stat(pid) {
                    out.insert(pid, info);
                }
            }
        }
    }
    out
}

fn is_dead(info: &ProcInfo) -> bool {
    matches!(info.state, b'Z' | b'X' | b'x')
}

/// A process found to belong, with a pidfd opened while its start time
/// still matched: signals go through the pidfd, so a pid the kernel reused
/// for someone else is never signalled.
struct Member {
    start: u64,
    fd: Option<OwnedFd>,
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments; a non-negative result is a
    // new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: just returned by the kernel, owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Send `sig` through a pidfd (ESRCH for a process that is gone is fine).
fn pidfd_signal(fd: &OwnedFd, sig: libc::c_int) {
    // SAFETY: a valid pidfd, no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// The tracked members of one session, each with its start time so a reused
/// pid is never mistaken for a member.
struct Members {
    root: i32,
    /// Whether the root itself is a member (mitzod ending an agent) or only
    /// its descendants (the reaper ending its own tree).
    include_root: bool,
    known: BTreeMap<i32, Member>,
}

impl Members {
    fn new(root: i32, include_root: bool) -> Members {
        Members {
            root,
            include_root,
            known: BTreeMap::new(),
        }
    }

    /// Add every live process that belongs; returns how many were new.
    fn scan(&mut self) -> usize {
        let procs = all_processes();
        self.known
            .retain(|pid, m| procs.get(pid).is_some_and(|i| i.start == m.start));
        let mut added = 0;
        loop {
            let mut grew = false;
            for (&pid, info) in &procs {
                if self.known.contains_key(&pid) || is_dead(info) {
                    continue;
                }
                let belongs = if pid == self.root {
                    self.include_root
                } else {
                    info.sid == self.root
                        || info.pgrp == self.root
                        || info.ppid == self.root
                        || self.known.contains_key(&info.ppid)
                };
                if belongs {
                    // Open the pidfd, then check it is still the process we
                    // scanned: from here on the fd names it and nothing else.
                    let fd = pidfd_open(pid)
                        .filter(|_| read_stat(pid).is_some_and(|i| i.start == info.start));
                    self.known.insert(
                        pid,
                        Member {
                            start: info.start,
                            fd,
                        },
                    );
                    grew = true;
                    added += 1;
                }
            }
            if !grew {
                break;
            }
        }
        added
    }

    fn live(&self) -> Vec<i32> {
        let procs = all_processes();
        self.known
            .iter()
            .filter(|(pid, m)| {
                procs
                    .get(pid)
                    .is_some_and(|i| i.start == m.start && !is_dead(i))
            })
            .map(|(pid, _)| *pid)
            .collect()
    }

    fn signal_all(&self, sig: libc::c_int) {
        for m in self.known.values() {
            if let Some(fd) = &m.fd {
                pidfd_signal(fd, sig);
            }
        }
    }

    /// Stop every member, rescanning until no new one appears: a stopped
    /// process cannot fork, so the set reaches a fixpoint.
    fn freeze(&mut self) {
        for _ in 0..100 {
            self.signal_all(libc::SIGSTOP);
            if self.scan() == 0 {
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminateReport {
    /// Every process found to belong to the session.
    pub members: Vec<i32>,
    /// Members that had to be SIGKILLed after the grace period.
    pub killed: Vec<i32>,
    /// Members still alive at the end (should be empty).
    pub survivors: Vec<i32>,
}

/// End a session: SIGTERM every member, wait up to `grace`, then stop the
/// rest (to a fixpoint) and SIGKILL them; reap every member that is our
/// child, except `root` itself when `root_is_owned` (a `Child` handle owns
/// it and must reap it). Blocking: call from `spawn_blocking`.
///
/// For a contained agent `root` is its reaper: every process of the
/// session is a descendant of it, whatever it did with `setsid`.
pub fn terminate_session(root: u32, grace: Duration, root_is_owned: bool) -> TerminateReport {
    let Ok(root) = i32::try_from(root) else {
        return TerminateReport::default();
    };
    let keep = root_is_owned.then_some(root);
    end_tree(Members::new(root, true), grace, &mut |pid| {
        if Some(pid) == keep {
            return false;
        }
        let mut status = 0;
        // SAFETY: waitpid on a specific zombie child of ours.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        true
    })
}

/// End every descendant of this process (the reaper's tree): the same
/// freeze, SIGTERM, grace, SIGKILL as [`terminate_session`]. `reap` is
/// called for each zombie child of ours (it waits for it).
pub(crate) fn end_descendants(
    grace: Duration,
    reap: &mut dyn FnMut(i32) -> bool,
) -> TerminateReport {
    let me = std::process::id() as i32;
    end_tree(Members::new(me, false), grace, reap)
}

fn end_tree(
    mut m: Members,
    grace: Duration,
    reap_one: &mut dyn FnMut(i32) -> bool,
) -> TerminateReport {
    let me = std::process::id() as i32;
    let mut reap = |pids: &BTreeSet<i32>| {
        for &pid in pids {
            if read_stat(pid).is_some_and(|i| i.ppid == me && is_dead(&i)) {
                reap_one(pid);
            }
        }
    };
    // Freeze first so the tree (and its parent links) is complete before
    // anything starts dying and being reparented.
    m.scan();
    m.freeze();
    let mut all: BTreeSet<i32> = m.known.keys().copied().collect();
    m.signal_all(libc::SIGTERM);
    m.signal_all(libc::SIGCONT);

    let deadline = Instant::now() + grace;
    loop {
        m.scan();
        all.extend(m.known.keys().copied());
        let live = m.live();
        reap(&all);
        if live.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut killed = BTreeSet::new();
    for _ in 0..50 {
        m.scan();
        let live = m.live();
        if live.is_empty() {
            break;
        }
        m.freeze();
        killed.extend(m.live());
        m.signal_all(libc::SIGKILL);
        all.extend(m.known.keys().copied());
        std::thread::sleep(Duration::from_millis(10));
        reap(&all);
    }
    // Zombies reparented to us a moment after the last pass.
    std::thread::sleep(Duration::from_millis(10));
    reap(&all);
    TerminateReport {
        members: all.into_iter().collect(),
        killed: killed.into_iter().collect(),
        survivors: m.live(),
    }
}

/// Kill (SIGKILL) and reap the children of this process whose environment
/// carries `marker` (e.g. `MITZO_SESSION_ID=<id>`), with their descendants.
/// A fallback only: a contained agent's descendants are reparented to its
/// reaper, not to mitzod, and die with it; this finds what could reach
/// mitzod if a reaper itself were killed and its tree kept its marker (a
/// process that cleared its environment is not found: the session cgroup,
/// where there is one, is what catches those). Returns the pids killed.
pub fn kill_marked_orphans(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let orphans: Vec<i32> = all_processes()
        .into_iter()
        .filter(|(pid, i)| i.ppid == me && !is_dead(i) && has_env_entry(*pid, marker))
        .map(|(pid, _)| pid)
        .collect();
    let mut killed = Vec::new();
    for pid in orphans {
        let report = terminate_session(pid as u32, Duration::ZERO, false);
        killed.extend(report.members);
    }
    killed
}

fn has_env_entry(pid: i32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_of_self_parses() {
        let me = std::process::id() as i32;
        let i = read_stat(me).unwrap();
        assert!(i.ppid > 0 && i.start > 0);
    }
}
