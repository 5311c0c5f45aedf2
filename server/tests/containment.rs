//! Containment of an agent's process tree: the per-session reaper and the
//! session cgroup, with real processes. Each test first shows the escape
//! working without the containment (the control), then the same escape
//! under it.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a test fails by panicking; raw fds and pre_exec set-ups

mod common;
mod sandbox_common;
mod sessions_support;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use mitzo_sandbox::cgroup::Limits;
use mitzo_sandbox::{
    build_env, kill_marked_orphans, set_child_subreaper, terminate_session, ContainmentConfig,
    Policy, SandboxedCommand, SessionGuard,
};
use sandbox_common::{alive, serial};
use serde_json::json;

fn landlock(test: &str) -> bool {
    sandbox_common::landlock_or_skip(test)
}

fn policy(dir: &Path) -> Policy {
    Policy {
        read_write: vec![dir.to_path_buf(), "/dev/null".into()],
        read_exec: mitzo_sandbox::system_read_exec_paths(),
        read_only: vec!["/proc".into()],
        ..Policy::default()
    }
}

fn containment(cgroup_base: Option<PathBuf>, limits: Limits) -> ContainmentConfig {
    ContainmentConfig {
        reaper: sandbox_common::mitzod_bin().into(),
        cgroup_base,
        limits,
        grace: Duration::from_millis(300),
    }
}

/// `sh -c script` in the sandbox, as an agent of session `id`; contained
/// when `c` is given.
fn agent(
    script: &str,
    dir: &Path,
    id: &str,
    c: Option<&ContainmentConfig>,
) -> (Child, SessionGuard) {
    let env = build_env(
        std::env::vars_os(),
        &[],
        &[("MITZO_SESSION_ID".into(), id.into())],
    );
    let mut cmd = SandboxedCommand::new("/bin/sh", &policy(dir), env)
        .unwrap()
        .args(["-c", script])
        .current_dir(dir);
    if let Some(c) = c {
        cmd = cmd.contained_with(id, c).unwrap();
    }
    let (mut std_cmd, guard) = cmd.into_std_with_guard();
    let child = std_cmd.stdin(Stdio::null()).spawn().unwrap();
    (child, guard)
}

fn wait_pid(p: &Path) -> i32 {
    sandbox_common::wait_for_file(p).trim().parse().unwrap()
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait (bounded, so a broken test fails instead of hanging) until the
/// process behind `fd` has exited.
fn exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe { libc::poll(&mut p, 1, 20_000) == 1 }
}

/// Kills the process on drop, so a failing test leaves nothing running.
struct Reap(Option<OwnedFd>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(fd) = &self.0 {
            kill_by_pidfd(fd);
        }
    }
}

fn kill_by_pidfd(fd: &OwnedFd) {
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// A process that clears its environment and leaves the agent's session,
/// then the agent that started it is killed (by the process's own tool).
const ENV_I_SETSID: &str = "env -i setsid sh -c 'echo $$ > o.tmp && mv o.tmp orphan.pid; \
     while :; do echo x >> orphan.log; sleep 0.1; done' >/dev/null 2>&1 & \
     while [ ! -s orphan.pid ]; do sleep 0.05; done; kill -9 $$";

#[test]
fn env_i_setsid_orphan_of_a_killed_agent_dies_with_its_reaper() {
    let _g = serial();
    if !landlock("env_i_setsid_orphan_of_a_killed_agent_dies_with_its_reaper") {
        return;
    }
    set_child_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();

    // Control: the agent alone (mitzod before the reaper). The orphan
    // survives its agent, and the environment marker cannot find it.
    let (mut child, _) = agent(ENV_I_SETSID, &d, "2026-01-01-aaaaaaaaaaaa", None);
    let orphan = wait_pid(&d.join("orphan.pid"));
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let fd = pidfd(orphan).expect("control: the orphan is running");
    let found = kill_marked_orphans("MITZO_SESSION_ID=2026-01-01-aaaaaaaaaaaa");
    assert!(!found.contains(&orphan), "{found:?}");
    assert!(alive(orphan), "control: the orphan outlives its agent");
    kill_by_pidfd(&fd);
    assert!(exited(&fd));
    terminate_session(orphan as u32, Duration::ZERO, false);
    std::fs::remove_file(d.join("orphan.pid")).unwrap();

    // Under the reaper: the agent's death ends the session's whole tree.
    let c = containment(None, Limits::default());
    let (mut reaper, _guard) = agent(ENV_I_SETSID, &d, "2026-01-01-bbbbbbbbbbbb", Some(&c));
    let orphan = wait_pid(&d.join("orphan.pid"));
    let guard = Reap(pidfd(orphan));
    let status = reaper.wait().unwrap();
    // The reaper ends the way its agent did.
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    if let Some(fd) = &guard.0 {
        assert!(exited(fd), "the orphan outlived its reaper");
    }
    assert!(!alive(orphan), "orphan {orphan} survived the session");
    assert!(d.join("orphan.log").exists(), "the orphan never ran");
}

/// A TERM-ignoring double fork: ends only when the session ends.
const DOUBLE_FORK: &str = "(setsid sh -c 'trap \"\" TERM; echo $$ > d.tmp && mv d.tmp daemon.pid; \
     exec sleep 1000' &); exec sleep 1000";

#[test]
fn double_forked_daemon_dies_when_the_session_ends() {
    let _g = serial();
    if !landlock("double_forked_daemon_dies_when_the_session_ends") {
        return;
    }
    set_child_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();

    // Control: ending the agent alone leaves the daemon running.
    let (mut child, _) = agent(DOUBLE_FORK, &d, "2026-01-01-cccccccccccc", None);
    let daemon = wait_pid(&d.join("daemon.pid"));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let fd = pidfd(daemon).expect("control: the daemon is running");
    assert!(alive(daemon), "control: the daemon outlives its agent");
    kill_by_pidfd(&fd);
    assert!(exited(&fd));
    terminate_session(daemon as u32, Duration::ZERO, false);
    std::fs::remove_file(d.join("daemon.pid")).unwrap();

    // Under the reaper: one SIGTERM to the reaper (what mitzod sends when
    // the session is stopped) ends everything, the TERM-ignoring daemon by
    // SIGKILL after the grace period.
    let c = containment(None, Limits::default());
    let (mut reaper, _guard) = agent(DOUBLE_FORK, &d, "2026-01-01-dddddddddddd", Some(&c));
    let daemon = wait_pid(&d.join("daemon.pid"));
    let guard = Reap(pidfd(daemon));
    let fd = guard.0.as_ref().expect("the daemon is running");
    assert_ne!(unsafe { libc::getsid(daemon) }, reaper.id() as i32);
    unsafe { libc::kill(reaper.id() as i32, libc::SIGTERM) };
    let status = reaper.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(exited(fd), "the daemon outlived the session");
    assert!(!alive(daemon));
}

#[test]
fn the_reaper_ends_its_tree_when_mitzod_dies() {
    let _g = serial();
    set_child_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    // A stand-in for mitzod: a shell that starts the reaper and waits.
    let script = format!(
        "{bin} reaper --parent $$ --grace-ms 200 -- /bin/sh -c {inner} & wait",
        bin = sandbox_common::mitzod_bin(),
        inner = sh_single(DOUBLE_FORK),
    );
    let mut parent = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .current_dir(&d)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = wait_pid(&d.join("daemon.pid"));
    let guard = Reap(pidfd(daemon));
    let fd = guard.0.as_ref().expect("the daemon is running");
    // Control: with its parent alive the reaper keeps the session running.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(daemon),
        "control: the session runs while mitzod lives"
    );
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert!(exited(fd), "the daemon outlived mitzod's death");
    // The reaper was reparented to us and exited; reap it.
    terminate_session(daemon as u32, Duration::ZERO, false);
}

fn sh_single(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn an_agent_cannot_signal_or_read_its_reaper() {
    let _g = serial();
    if !landlock("an_agent_cannot_signal_or_read_its_reaper") {
        return;
    }
    if mitzo_sandbox::landlock_abi().version.unwrap_or(0) < 6 {
        eprintln!(
            "SKIPPED an_agent_cannot_signal_or_read_its_reaper: Landlock ABI < 6 has no signal scoping"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let probe = "if kill -0 $PPID 2>/dev/null; then echo reachable; else echo unreachable; fi; \
                 if cat /proc/$PPID/environ >/dev/null 2>&1; then echo environ-readable; else echo environ-closed; fi";
    // Control: a process in the same Landlock domain as its parent can
    // signal it.
    let env = build_env(std::env::vars_os(), &[], &[]);
    let out = SandboxedCommand::new("/bin/sh", &policy(&d), env)
        .unwrap()
        .args(["-c", &format!("/bin/sh -c '{probe}'; true")])
        .into_std()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "reachable\nenviron-readable"
    );
    // The agent's parent is its reaper, in the domain above the agent's.
    let c = containment(None, Limits::default());
    let (cmd, _guard) = {
        let env = build_env(std::env::vars_os(), &[], &[]);
        SandboxedCommand::new("/bin/sh", &policy(&d), env)
            .unwrap()
            .args(["-c", &format!("{probe}; kill -9 $PPID")])
            .contained_with("2026-01-01-eeeeeeeeeeee", &c)
            .unwrap()
            .into_std_with_guard()
    };
    let mut cmd = cmd;
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "unreachable\nenviron-closed"
    );
    // kill -9 failed too: the agent exited with sh's error status, and the
    // reaper, alive, reported it.
    assert_eq!(out.status.signal(), None, "{:?}", out.status);
    assert_ne!(out.status.code(), Some(0));
}

/// A cgroup v2 directory for this test, under the unified hierarchy
/// (as root); removed on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn create(test: &str, controllers: &[&str]) -> Option<TestCgroup> {
        if !common::require_root(test) {
            return None;
        }
        let mount = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (right.split_whitespace().next() == Some("cgroup2"))
                    .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
            });
        let Some(mount) = mount else {
            return skip_cgroup(test, "no cgroup2 hierarchy is mounted");
        };
        let available = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap();
        for c in controllers {
            if !available.split_whitespace().any(|x| x == *c) {
                return skip_cgroup(
                    test,
                    &format!(
                        "the cgroup2 hierarchy at {} has no {c} controller (a hybrid setup keeps it on cgroup v1)",
                        mount.display()
                    ),
                );
            }
            std::fs::write(mount.join("cgroup.subtree_control"), format!("+{c}")).unwrap();
        }
        let base = mount.join(format!("mitzod-test-{}", std::process::id()));
        std::fs::create_dir(&base).unwrap();
        mitzo_sandbox::cgroup::enable_controllers(&base);
        Some(TestCgroup(base))
    }
}

fn skip_cgroup(test: &str, why: &str) -> Option<TestCgroup> {
    if std::env::var("MITZO_REQUIRE_CGROUP_TESTS").as_deref() == Ok("1") {
        panic!("{test}: MITZO_REQUIRE_CGROUP_TESTS=1 but {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::write(e.path().join("cgroup.kill"), "1");
                    std::thread::sleep(Duration::from_millis(50));
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn session_cgroup_kills_what_outlived_a_killed_reaper() {
    let _g = serial();
    if !landlock("session_cgroup_kills_what_outlived_a_killed_reaper") {
        return;
    }
    let Some(cg) = TestCgroup::create("session_cgroup_kills_what_outlived_a_killed_reaper", &[])
    else {
        return;
    };
    set_child_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let c = containment(Some(cg.0.clone()), Limits::default());
    let (mut reaper, guard) = agent(DOUBLE_FORK, &d, "2026-01-01-ffffffffffff", Some(&c));
    let session_cg = guard.cgroup().unwrap().to_path_buf();
    let daemon = wait_pid(&d.join("daemon.pid"));
    let guard_daemon = Reap(pidfd(daemon));
    let fd = guard_daemon.0.as_ref().expect("the daemon is running");
    let procs = std::fs::read_to_string(session_cg.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == daemon.to_string()),
        "the daemon is in the session cgroup: {procs}"
    );
    // The reaper itself is killed (as the OOM killer might): its tree is
    // reparented to us and keeps running; that is what the reaper alone
    // cannot cover (control).
    reaper.kill().unwrap();
    reaper.wait().unwrap();
    assert!(
        alive(daemon),
        "control: the daemon outlives a killed reaper"
    );
    // Ending the session's cgroup ends it.
    guard.end();
    assert!(exited(fd), "cgroup.kill left the daemon running");
    terminate_session(daemon as u32, Duration::ZERO, false);
    assert!(!session_cg.exists(), "the session cgroup is removed");
}

#[test]
fn fork_bomb_is_bounded_by_pids_max() {
    let _g = serial();
    if !landlock("fork_bomb_is_bounded_by_pids_max") {
        return;
    }
    let Some(cg) = TestCgroup::create("fork_bomb_is_bounded_by_pids_max", &["pids"]) else {
        return;
    };
    set_child_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    // 200 processes at once: counted by the script itself.
    let spawner = "n=0; for i in $(seq 200); do sleep 1000 & n=$((n+1)); done; \
                   echo $n > started; ps -o pid= --ppid $$ | wc -l > running; echo done > marker; wait";
    // Control: in a session cgroup without pids.max, all 200 start.
    let c = containment(Some(cg.0.clone()), Limits::default());
    let (mut reaper, guard) = agent(spawner, &d, "2026-01-01-111111111111", Some(&c));
    sandbox_common::wait_for_file(&d.join("marker"));
    let running: usize = std::fs::read_to_string(d.join("running"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(running >= 200, "control: only {running} of 200 started");
    terminate_session(reaper.id(), Duration::from_millis(200), true);
    reaper.wait().unwrap();
    guard.end();
    std::fs::remove_file(d.join("marker")).unwrap();

    // With pids.max = 50: a real fork bomb stays under it.
    let c = containment(
        Some(cg.0.clone()),
        Limits {
            pids_max: Some(50),
            memory_max: None,
        },
    );
    let bomb = "echo started > marker; b() { b | b & }; b";
    let (mut reaper, guard) = agent(bomb, &d, "2026-01-01-222222222222", Some(&c));
    let session_cg = guard.cgroup().unwrap().to_path_buf();
    sandbox_common::wait_for_file(&d.join("marker"));
    // Wait until the bomb has hit the limit at least once.
    let events = session_cg.join("pids.events");
    for _ in 0..1000 {
        let e = std::fs::read_to_string(&events).unwrap();
        if e.lines().any(|l| l.starts_with("max ") && l != "max 0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = std::fs::read_to_string(&events).unwrap();
    assert!(
        e.lines().any(|l| l.starts_with("max ") && l != "max 0"),
        "{e}"
    );
    let current: u64 = std::fs::read_to_string(session_cg.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 50, "pids.current {current} > pids.max");
    if let Ok(peak) = std::fs::read_to_string(session_cg.join("pids.peak")) {
        assert!(peak.trim().parse::<u64>().unwrap() <= 50, "peak {peak}");
    }
    // And the session still ends.
    unsafe { libc::kill(reaper.id() as i32, libc::SIGTERM) };
    reaper.wait().unwrap();
    guard.end();
    assert!(!session_cg.exists());
}

/// The real server: a tool starts an `env -i setsid` loop that writes the
/// worktree. Stopping the session ends it; a tool that also kills its agent
/// ends it as soon as the agent dies. mitzod is left with no zombie.
#[test]
fn real_session_orphans_die_with_the_session() {
    let _g = serial();
    if !sessions_support::landlock_or_skip("real_session_orphans_die_with_the_session") {
        return;
    }
    let s = sessions_support::start("");
    let loop_cmd = "env -i setsid sh -c 'echo $$ > o.tmp && mv o.tmp orphan-NAME.pid; \
                    while :; do echo x >> orphan-NAME.log; sleep 0.1; done' >/dev/null 2>&1 &";
    let find = |name: &str| -> PathBuf {
        let file = format!("orphan-{name}.pid");
        for _ in 0..600 {
            for base in [s.repo.join(".mitzo/checkouts"), s.repo.clone()] {
                if let Ok(entries) = std::fs::read_dir(&base) {
                    for e in entries.flatten() {
                        let p = e.path().join(&file);
                        if p.exists() {
                            return p;
                        }
                    }
                }
                if base.join(&file).exists() {
                    return base.join(&file);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{file} never appeared; log:\n{}", s.server.log_text());
    };

    // 1. The tool leaves the loop behind and returns; the session is stopped.
    let r = s.create(json!({
        "source": "test",
        "mode": "auto",
        "initialPrompt": format!("tool:Bash:{}", loop_cmd.replace("NAME", "stop")),
    }));
    assert!(r.status < 300, "{} {}", r.status, r.text());
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    s.wait_event(&id, |e| e["type"] == "result");
    let pidfile = find("stop");
    let orphan: i32 = sandbox_common::wait_for_file(&pidfile)
        .trim()
        .parse()
        .unwrap();
    let guard = Reap(pidfd(orphan));
    let fd = guard.0.as_ref().expect("the loop is running");
    // Control: the turn is over, the loop is still running.
    assert!(alive(orphan), "control: the loop outlives its tool call");
    let r = s
        .server
        .request_delete(&format!("/api/sessions/{id}"), &s.internal_headers());
    assert!(r.status < 300, "{} {}", r.status, r.text());
    assert!(exited(fd), "the loop outlived its stopped session");

    // 2. The tool kills its agent as well (the break the review reported).
    let r = s.create(json!({
        "source": "test",
        "mode": "auto",
        "initialPrompt": format!(
            "tool:Bash:{} while [ ! -s orphan-kill.pid ]; do sleep 0.05; done; kill -9 $PPID",
            loop_cmd.replace("NAME", "kill")
        ),
    }));
    assert!(r.status < 300, "{} {}", r.status, r.text());
    let id2 = r.json()["sessionId"].as_str().unwrap().to_string();
    let pidfile = find("kill");
    let orphan: i32 = sandbox_common::wait_for_file(&pidfile)
        .trim()
        .parse()
        .unwrap();
    let guard = Reap(pidfd(orphan));
    s.wait_event(&id2, |e| e["type"] == "error");
    if let Some(fd) = &guard.0 {
        assert!(exited(fd), "the loop outlived its killed agent");
    }
    assert!(!alive(orphan));
    let r = s
        .server
        .request_delete(&format!("/api/sessions/{id2}"), &s.internal_headers());
    assert!(r.status < 300, "{} {}", r.status, r.text());

    // No zombie is left under mitzod.
    let server = s.server.pid();
    let mut zombies = Vec::new();
    for _ in 0..200 {
        zombies = children(server)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|st| st.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
                    .unwrap_or(false)
            })
            .collect();
        if zombies.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(zombies.is_empty(), "zombies under mitzod: {zombies:?}");
}

fn children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    out
}

/// The real server started inside a cgroup marked as delegated (as
/// systemd's `Delegate=yes` marks it): mitzod moves itself into a `daemon`
/// leaf, each agent runs in `session-<id>`, and deleting the session removes
/// that cgroup. Control: the same server in an unmarked cgroup makes none.
#[test]
fn real_session_runs_in_its_delegated_cgroup() {
    let _g = serial();
    if !sessions_support::landlock_or_skip("real_session_runs_in_its_delegated_cgroup") {
        return;
    }
    let Some(cg) = TestCgroup::create("real_session_runs_in_its_delegated_cgroup", &[]) else {
        return;
    };
    let sessions_in = |base: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(base)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("session-"))
            })
            .collect()
    };
    let start_in = |base: &Path| -> sessions_support::SessionServer {
        let mut server = common::TestServer::new(common::Options::default());
        let repo = sessions_support::make_repo(server.dir.path());
        let agent = sessions_support::install_fake_agent(server.dir.path());
        let text = std::fs::read_to_string(&server.config).unwrap();
        let text = format!(
            "repo_path = \"{}\"\n{text}\n[agent]\ncommand = \"{}\"\n",
            repo.display(),
            agent.display()
        );
        std::fs::write(&server.config, text).unwrap();
        let log = std::fs::File::create(&server.log).unwrap();
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(base.join("cgroup.procs"))
            .unwrap();
        let procs_fd = procs.as_raw_fd();
        let mut cmd = server.command();
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let f = std::mem::ManuallyDrop::new(std::fs::File::from_raw_fd(procs_fd));
                (&*f).write_all(b"0")
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        drop(procs);
        server.child = Some(child);
        server.wait_ready();
        let jwt = server.login();
        let internal = server.internal_token();
        sessions_support::SessionServer {
            server,
            repo,
            jwt,
            internal,
        }
    };
    let hang = |s: &sessions_support::SessionServer| -> String {
        let r = s.create(json!({"source": "test", "initialPrompt": "hang"}));
        assert!(r.status < 300, "{} {}", r.status, r.text());
        let id = r.json()["sessionId"].as_str().unwrap().to_string();
        s.wait_event(&id, |e| e["type"] == "user_message");
        id
    };

    // Control: not marked as delegated, so mitzod leaves it alone.
    let mut s = start_in(&cg.0);
    let id = hang(&s);
    std::thread::sleep(Duration::from_millis(300));
    assert!(sessions_in(&cg.0).is_empty(), "control: no session cgroup");
    assert!(s.server.log_text().contains("no delegated cgroup"));
    s.server
        .request_delete(&format!("/api/sessions/{id}"), &s.internal_headers());
    s.server.stop();

    // Marked: the delegated subtree is used.
    let name = c"trusted.delegate";
    let path = std::ffi::CString::new(cg.0.as_os_str().as_encoded_bytes()).unwrap();
    let r = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
    let mut s = start_in(&cg.0);
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", s.server.pid())).unwrap();
    assert!(
        own.trim_end().ends_with("/daemon"),
        "mitzod's own cgroup: {own}"
    );
    let id = hang(&s);
    let mut dirs = Vec::new();
    for _ in 0..500 {
        dirs = sessions_in(&cg.0);
        if !dirs.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dirs.len(), 1, "{dirs:?}; log:\n{}", s.server.log_text());
    assert!(dirs[0].ends_with(format!("session-{id}")), "{dirs:?}");
    let mut procs = String::new();
    for _ in 0..500 {
        procs = std::fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap();
        if procs.lines().count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        procs.lines().count() >= 2,
        "the reaper and its agent: {procs}"
    );
    // The pids controller is not enabled here: the limit is dropped with a
    // warning rather than stopping every agent.
    let log = s.server.log_text();
    if !std::fs::read_to_string(cg.0.join("cgroup.subtree_control"))
        .unwrap()
        .contains("pids")
    {
        assert!(log.contains("session.pids_max is not applied"), "{log}");
    }
    let r = s
        .server
        .request_delete(&format!("/api/sessions/{id}"), &s.internal_headers());
    assert!(r.status < 300, "{} {}", r.status, r.text());
    for _ in 0..500 {
        if !dirs[0].exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !dirs[0].exists(),
        "the session cgroup is removed with the session"
    );
    s.server.stop();
}
