//! Shared fixtures for the sandbox and worktree integration tests.
#![allow(dead_code, unused_imports)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

pub use mitzo_testkit::{git, init_repo, landlock_or_skip, mitzod_bin};

/// Tests that spawn, kill or reap processes run one at a time: a subreaper
/// test process reaps and kills by parent pid.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A command whose child has no capabilities, like a sandboxed one, but no
/// Landlock: the control run that shows a denial is Landlock's doing.
pub fn control_sh(script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    unsafe {
        c.pre_exec(|| {
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            Ok(())
        });
    }
    c
}

/// Whether `pid` is still a live (non-zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Wait (without a deadline that decides the outcome) for a file the child
/// writes; panics after a generous bound so a broken test does not hang.
pub fn wait_for_file(p: &Path) -> String {
    for _ in 0..1000 {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.ends_with('\n') {
                return s;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{} never appeared", p.display());
}
