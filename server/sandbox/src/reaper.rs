//! `mitzod reaper`: the per-session process every agent runs under.
//!
//! mitzod starts it (through [`super::SandboxedCommand::contained`]) with
//! the agent's stdio, environment, working directory, capabilities (none)
//! and seccomp filter. The reaper then
//!
//! 1. asks for SIGTERM if mitzod dies (`PR_SET_PDEATHSIG`), makes itself
//!    non-dumpable and a child subreaper: every descendant of the session
//!    is reparented to it, whatever it does with `setsid`, `env -i` or
//!    double forks;
//! 2. enters the agent's Landlock domain (the ruleset mitzod built and
//!    passed as an fd), so it can reach nothing the agent cannot;
//! 3. starts the agent in a nested Landlock domain that only adds signal
//!    and abstract-socket scoping: the agent and its tools can no longer
//!    signal, ptrace or open the reaper, while the reaper can signal them;
//! 4. waits. When the agent exits, or SIGTERM/SIGINT/SIGHUP arrives, or its
//!    parent is gone, it ends its whole tree (freeze, SIGTERM, grace,
//!    SIGKILL, through pidfds), reaps every zombie and exits the way the
//!    agent did (same code, or the same signal).
//!
//! It holds no secret of mitzod's and no fd but the agent's stdio.
#![allow(unsafe_code)] // prctl, fork/exec and signals of the per-session reaper

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use landlock::{CompatLevel, Compatible, Ruleset, RulesetAttr, Scope};

use super::landlock::landlock_abi;

/// Exit code when the reaper could not set itself up or start the agent.
pub const EXIT_REAPER_FAILED: i32 = 125;
const EXIT_NOT_STARTED: i32 = 127;

#[derive(Debug, Clone)]
pub struct ReaperArgs {
    /// The pid of mitzod, which started us: if our parent is another
    /// process by the time we run, mitzod died in between.
    pub parent: i32,
    /// The agent's Landlock ruleset, inherited from mitzod (none when
    /// Landlock is not enforced under `best-effort`).
    pub ruleset_fd: Option<RawFd>,
    /// How long descendants get between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// In a network namespace of its own: a loopback TCP port to listen on
    /// and the Unix socket of mitzod's proxy to relay each connection to.
    pub forward: Option<(u16, PathBuf)>,
    /// The agent may not create Unix sockets (`socketpair` excepted): set
    /// for an agent in a network namespace of its own, whose only way out
    /// must be the forwarder (which keeps them).
    pub no_unix_sockets: bool,
    pub command: Vec<OsString>,
}

fn fail(what: &str, e: impl std::fmt::Display) -> i32 {
    eprintln!("mitzod reaper: {what}: {e}");
    EXIT_REAPER_FAILED
}

/// Run the reaper; returns the exit code (or does not return: when the
/// agent died of a signal the reaper dies of the same one).
pub fn run(args: ReaperArgs) -> i32 {
    // SAFETY (all prctl calls below): integer arguments only.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
            return fail("PR_SET_PDEATHSIG", std::io::Error::last_os_error());
        }
        if libc::getppid() != args.parent {
            return fail("mitzod", "exited before the session started");
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return fail("PR_SET_DUMPABLE", std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return fail("PR_SET_CHILD_SUBREAPER", std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return fail("PR_SET_NO_NEW_PRIVS", std::io::Error::last_os_error());
        }
    }
    // Bound before Landlock (which allows the agent no bind at all).
    let listener = match &args.forward {
        Some((port, _)) => match TcpListener::bind((Ipv4Addr::LOCALHOST, *port)) {
            Ok(l) => Some(l),
            Err(e) => return fail("listening for the proxy forwarder", e),
        },
        None => None,
    };
    if let Some(fd) = args.ruleset_fd {
        // SAFETY: landlock_restrict_self on the inherited ruleset fd, then
        // close it: the agent must not inherit it.
        let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
        let err = std::io::Error::last_os_error();
        unsafe { libc::close(fd) };
        if r != 0 {
            return fail("entering the agent's Landlock domain", err);
        }
    }
    // The agent's own, nested domain: scoping only (the filesystem and
    // network rules are those of the domain above, which it inherits).
    let mut nested = None;
    if args.ruleset_fd.is_some() && landlock_abi().version.is_some_and(|v| v >= 6) {
        let created = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .and_then(|r| r.create());
        match created {
            Ok(rs) => nested = Some(rs),
            Err(e) => return fail("building the agent's nested Landlock domain", e),
        }
    }

    if let (Some(l), Some((_, to))) = (listener, &args.forward) {
        // SAFETY: this process is single-threaded; the child runs the
        // forwarder and never returns.
        match unsafe { libc::fork() } {
            0 => forwarder(l, to),
            pid if pid < 0 => {
                return fail(
                    "starting the proxy forwarder",
                    std::io::Error::last_os_error(),
                )
            }
            _ => {}
        }
    }

    // Built here, installed in the agent only (the forwarder, forked above,
    // needs a Unix socket per connection). Where the kernel has no seccomp
    // (mitzod then runs agents only under sandbox.landlock = "best-effort")
    // there is nothing to stack them on.
    let agent_filters = if super::seccomp::probe().is_ok() {
        match super::seccomp::build_agent_filters(args.no_unix_sockets) {
            Ok(p) => p,
            Err(e) => return fail("building the agent's own seccomp filters", e),
        }
    } else {
        Vec::new()
    };

    let Some((program, rest)) = args.command.split_first() else {
        return fail("usage", "no command after `--`");
    };
    let signals = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD];
    // SAFETY: a zeroed sigset filled through libc; blocking them here makes
    // them wait for sigtimedwait (the child unblocks them again).
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };

    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    // SAFETY: between fork and exec: prctl and landlock_restrict_self only,
    // on a ruleset built above.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The mask is inherited across exec: the agent must not start
            // with SIGTERM blocked.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if let Some(rs) = nested.take() {
                rs.restrict_self()
                    .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))?;
            }
            for p in &agent_filters {
                super::seccomp::apply_in_child(p)?;
            }
            Ok(())
        });
    }
    let agent = match cmd.spawn() {
        Ok(c) => c.id() as i32,
        Err(e) => {
            eprintln!(
                "mitzod reaper: cannot start {}: {e}",
                program.to_string_lossy()
            );
            return EXIT_NOT_STARTED;
        }
    };
    drop(cmd);

    let mut agent_status: Option<libc::c_int> = None;
    let reap_any = |agent_status: &mut Option<libc::c_int>| loop {
        let mut st = 0;
        // SAFETY: waitpid for any child, non-blocking.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
        if pid == agent {
            *agent_status = Some(st);
        }
    };
    loop {
        reap_any(&mut agent_status);
        // SAFETY: getppid has no arguments.
        if agent_status.is_some() || unsafe { libc::getppid() } != args.parent {
            break;
        }
        let timeout = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: a valid set and timeout; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        if matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGHUP) {
            break;
        }
    }

    // Every descendant is reparented to us, so no child means no tree.
    reap_any(&mut agent_status);
    if has_children() {
        super::process::end_descendants(args.grace, &mut |pid| {
            let mut st = 0;
            // SAFETY: waitpid on a specific zombie child.
            if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == pid && pid == agent {
                agent_status = Some(st);
            }
            true
        });
    }
    reap_any(&mut agent_status);

    match agent_status {
        Some(st) if libc::WIFEXITED(st) => libc::WEXITSTATUS(st),
        Some(st) if libc::WIFSIGNALED(st) => {
            let sig = libc::WTERMSIG(st);
            // SAFETY: reset the disposition, unblock, and send ourselves the
            // signal that ended the agent, so mitzod sees the same end.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                let mut one: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut one);
                libc::sigaddset(&mut one, sig);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &one, std::ptr::null_mut());
                libc::kill(libc::getpid(), sig);
            }
            128 + sig
        }
        _ => 128 + libc::SIGKILL,
    }
}

/// Relay every connection on `listener` (loopback, inside the session's
/// network namespace) to mitzod's proxy socket. Never returns.
fn forwarder(listener: TcpListener, to: &std::path::Path) -> ! {
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let _ = tcp.set_nodelay(true);
        let to = to.to_path_buf();
        std::thread::spawn(move || {
            let Ok(unix) = std::os::unix::net::UnixStream::connect(&to) else {
                return;
            };
            let (Ok(mut tcp_r), Ok(mut unix_w)) = (tcp.try_clone(), unix.try_clone()) else {
                return;
            };
            let up = std::thread::spawn(move || {
                relay(&mut tcp_r, &mut unix_w);
                let _ = unix_w.shutdown(std::net::Shutdown::Write);
            });
            let (mut unix_r, mut tcp_w) = (unix, tcp);
            relay(&mut unix_r, &mut tcp_w);
            let _ = tcp_w.shutdown(std::net::Shutdown::Write);
            let _ = up.join();
        });
    }
    std::process::exit(0)
}

/// Copy until end of input or an error, with a buffer large enough that a
/// download costs few system calls per MiB (`io::copy` uses 8 KiB).
fn relay(from: &mut impl std::io::Read, to: &mut impl std::io::Write) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Whether this process has any child, live or zombie.
fn has_children() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return true;
    };
    for t in tasks.flatten() {
        match std::fs::read_to_string(t.path().join("children")) {
            Ok(c) if c.trim().is_empty() => {}
            _ => return true,
        }
    }
    false
}
