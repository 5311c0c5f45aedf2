//! Shared fixtures for the sandbox and worktree integration tests.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// Tests that spawn, kill or reap processes run one at a time: a subreaper
/// test process reaps and kills by parent pid.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when Landlock is usable. Otherwise: skip with a message, or panic
/// when `MITZO_REQUIRE_LANDLOCK=1` (CI).
pub fn landlock_or_skip(test: &str) -> bool {
    let probe = mitzo_sandbox::landlock_abi();
    if probe.supported() {
        return true;
    }
    if std::env::var("MITZO_REQUIRE_LANDLOCK").as_deref() == Ok("1") {
        panic!("{test}: Landlock is required (MITZO_REQUIRE_LANDLOCK=1) but {probe}");
    }
    eprintln!("SKIPPED {test}: {probe}");
    false
}

pub fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?} in {}", dir.display());
}

/// A repo with one commit.
pub fn init_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("README"), "hello\n").unwrap();
    git(dir, &["add", "README"]);
    git(dir, &["commit", "-qm", "init"]);
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

pub fn mitzod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mitzod"))
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
