//! Ending a session: find every process that belongs to it, stop it, kill it,
//! reap it.
//!
//! Membership: the agent (root), every process whose parent chain leads to
//! it, and every process in its session or process group. The agent is a
//! child subreaper (set before exec), so a grandchild that double-forks and
//! calls `setsid` is reparented to the agent and stays in the tree. mitzod is
//! a subreaper too ([`set_child_subreaper`]), so what outlives the agent is
//! reparented to mitzod, where [`kill_orphans`] finds it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
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

/// The tracked members of one session, each with its start time so a reused
/// pid is never mistaken for a member.
struct Members {
    root: i32,
    known: BTreeMap<i32, u64>,
}

impl Members {
    /// Add every live process that belongs; returns how many were new.
    fn scan(&mut self, extra_roots: &[i32]) -> usize {
        let procs = all_processes();
        self.known
            .retain(|pid, start| procs.get(pid).is_some_and(|i| i.start == *start));
        let mut added = 0;
        loop {
            let mut grew = false;
            for (&pid, info) in &procs {
                if self.known.contains_key(&pid) || is_dead(info) {
                    continue;
                }
                let belongs = pid == self.root
                    || info.sid == self.root
                    || info.pgrp == self.root
                    || self.known.contains_key(&info.ppid)
                    || extra_roots.contains(&pid);
                if belongs {
                    self.known.insert(pid, info.start);
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
            .filter(|(pid, start)| {
                procs
                    .get(pid)
                    .is_some_and(|i| i.start == **start && !is_dead(i))
            })
            .map(|(pid, _)| *pid)
            .collect()
    }

    fn signal_all(&self, sig: libc::c_int) {
        for pid in self.known.keys() {
            // SAFETY: kill with integer arguments; ESRCH is fine.
            unsafe { libc::kill(*pid, sig) };
        }
    }

    /// Stop every member, rescanning until no new one appears: a stopped
    /// process cannot fork, so the set reaches a fixpoint.
    fn freeze(&mut self, extra_roots: &[i32]) {
        for _ in 0..100 {
            self.signal_all(libc::SIGSTOP);
            if self.scan(extra_roots) == 0 {
                return;
            }
        }
    }
}

/// Reap members that are our children, except `keep` (the caller's own
/// child handle, e.g. tokio's, reaps that one).
fn reap(pids: &[i32], keep: Option<i32>) {
    let me = std::process::id() as i32;
    for &pid in pids {
        if Some(pid) == keep {
            continue;
        }
        if read_stat(pid).is_some_and(|i| i.ppid == me && is_dead(&i)) {
            let mut status = 0;
            // SAFETY: waitpid on a specific zombie child of ours.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
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
pub fn terminate_session(root: u32, grace: Duration, root_is_owned: bool) -> TerminateReport {
    let Ok(root) = i32::try_from(root) else {
        return TerminateReport::default();
    };
    let keep = root_is_owned.then_some(root);
    let mut m = Members {
        root,
        known: BTreeMap::new(),
    };
    // Freeze first so the tree (and its parent links) is complete before
    // anything starts dying and being reparented.
    m.scan(&[]);
    m.freeze(&[]);
    let mut all: BTreeSet<i32> = m.known.keys().copied().collect();
    m.signal_all(libc::SIGTERM);
    m.signal_all(libc::SIGCONT);

    let deadline = Instant::now() + grace;
    loop {
        m.scan(&[]);
        all.extend(m.known.keys().copied());
        let live = m.live();
        reap(&all.iter().copied().collect::<Vec<_>>(), keep);
        if live.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut killed = BTreeSet::new();
    for _ in 0..50 {
        m.scan(&[]);
        let live = m.live();
        if live.is_empty() {
            break;
        }
        m.freeze(&[]);
        killed.extend(m.live());
        m.signal_all(libc::SIGKILL);
        all.extend(m.known.keys().copied());
        std::thread::sleep(Duration::from_millis(10));
        reap(&all.iter().copied().collect::<Vec<_>>(), keep);
    }
    // Zombies reparented to us a moment after the last pass.
    std::thread::sleep(Duration::from_millis(10));
    reap(&all.iter().copied().collect::<Vec<_>>(), keep);
    TerminateReport {
        members: all.into_iter().collect(),
        killed: killed.into_iter().collect(),
        survivors: m.live(),
    }
}

/// Kill (SIGKILL) and reap every child of this process that is not in
/// `keep`, with all its descendants. mitzod's only legitimate children are
/// its agents and its own git commands; anything else was reparented to it
/// as subreaper after its session's agent died. Pass every live child pid
/// (agents, git) in `keep`. Returns the pids killed.
pub fn kill_orphans(keep: &[u32]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let keep: BTreeSet<i32> = keep.iter().filter_map(|p| i32::try_from(*p).ok()).collect();
    let orphans: Vec<i32> = all_processes()
        .into_iter()
        .filter(|(pid, i)| i.ppid == me && !keep.contains(pid) && !is_dead(i))
        .map(|(pid, _)| pid)
        .collect();
    let mut killed = Vec::new();
    for pid in orphans {
        // Each orphan is the root of its own tree now.
        let report = terminate_session(pid as u32, Duration::ZERO, false);
        killed.extend(report.members);
    }
    killed
}

/// Kill (SIGKILL) and reap the children of this process whose environment
/// carries `marker` (e.g. `MITZO_SESSION_ID=<id>`), with their descendants:
/// the orphans one ended session left behind, reparented to us as
/// subreaper. Other sessions' processes and mitzod's own children (git)
/// carry no such entry and are left alone. Returns the pids killed.
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
