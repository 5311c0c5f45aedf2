//! Socket activation and sd_notify, the way systemd does them: the listening
//! socket arrives as fd 3 (and 4), `LISTEN_PID` names the process, and
//! notifications go to a datagram socket the test owns.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a test fails by panicking; raw fds and pre_exec set-ups

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Collects sd_notify datagrams sent to a socket in `dir`.
struct Notify {
    sock: UnixDatagram,
    path: std::path::PathBuf,
    seen: Vec<String>,
}

impl Notify {
    fn new(dir: &std::path::Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // The server sends after dropping to `nobody`.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notify {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// Wait until a datagram contains `needle`; returns that datagram.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(m) = self.seen.iter().find(|m| m.contains(needle)) {
            return m.clone();
        }
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.contains(needle) {
                    return msg;
                }
            }
        }
        panic!("no {needle:?} within {limit:?}; got {:?}", self.seen);
    }
}

/// Spawn mitzod with `fds` placed at 3, 4, ... and LISTEN_* set as systemd
/// would. `sh` sets LISTEN_PID and WATCHDOG_PID to its own pid, which `exec`
/// hands to mitzod.
fn spawn_activated(
    server: &TestServer,
    fds: &[RawFd],
    names: &str,
    notify: &Notify,
) -> std::process::Child {
    let fds: Vec<RawFd> = fds.to_vec();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ WATCHDOG_PID=$$ exec {} serve --config {}",
            mitzod_bin(),
            server.config.display()
        ))
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&server.log).unwrap());
    // SAFETY: only dup2/fcntl between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                let target = 3 + i as RawFd;
                if *fd == target {
                    let flags = libc::fcntl(target, libc::F_GETFD);
                    libc::fcntl(target, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// `listen` is an address nobody can bind here (TEST-NET-1), so the server
/// only works if it really uses the inherited socket.
fn unbindable() -> Options {
    Options {
        listen: Some("192.0.2.1:9".into()),
        ..Options::default()
    }
}

#[test]
fn serves_on_inherited_sockets_and_notifies() {
    let server = TestServer::new(unbindable());
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let unix_path = server.dir.path().join("api.sock");
    let unix = UnixListener::bind(&unix_path).unwrap();
    std::fs::set_permissions(&unix_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut notify = Notify::new(server.dir.path());

    let mut child = spawn_activated(
        &server,
        &[tcp.as_raw_fd(), unix.as_raw_fd()],
        "http:unix",
        &notify,
    );
    let ready = notify.wait_for("READY=1", Duration::from_secs(20));
    assert!(
        ready.contains("STATUS="),
        "READY=1 comes with a STATUS= line: {ready:?}"
    );
    assert!(
        ready.contains("http=127.0.0.1:"),
        "status names the inherited TCP socket: {ready:?}"
    );
    assert!(
        ready.contains("unix=unix:"),
        "status names the inherited Unix socket: {ready:?}"
    );
    notify.wait_for("WATCHDOG=1", Duration::from_secs(5));

    // TCP, on the socket the test bound.
    let r = request(addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    // The Unix socket; no Host check applies to it.
    let stream = UnixStream::connect(&unix_path).unwrap();
    let r = exchange(stream, "anything.example", "GET", "/api/version", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["version"].is_string());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    notify.wait_for("STOPPING=1", Duration::from_secs(10));
    let status = wait_timeout(&mut child, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(
        status.success(),
        "graceful exit: {status}; log:\n{}",
        server.log_text()
    );
}

#[test]
fn without_inherited_sockets_the_configured_address_is_bound() {
    // The same unbindable config fails when no socket is passed: proof that
    // the test above did not pass by binding.
    let server = TestServer::new(unbindable());
    let out = server.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot bind 192.0.2.1:9"), "{err}");
}

#[test]
fn silent_without_notify_socket() {
    // No NOTIFY_SOCKET, no WATCHDOG_USEC: it serves and logs no sd_notify error.
    let mut server = TestServer::start_default();
    assert_eq!(server.get("/healthz", &[]).status, 200);
    assert!(server.stop().success());
    assert!(
        !server.log_text().contains("sd_notify failed"),
        "{}",
        server.log_text()
    );
}

#[test]
fn through_systemd_socket_activate() {
    let tool = "/usr/bin/systemd-socket-activate";
    if !std::path::Path::new(tool).exists() {
        if std::env::var("MITZO_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1") {
            panic!("{tool} missing: install Debian's systemd package");
        }
        eprintln!("SKIP: {tool} missing");
        return;
    }
    let server = TestServer::new(unbindable());
    let port = free_port();
    let mut child = Command::new(tool)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--fdname=http")
        .arg(mitzod_bin())
        .arg("serve")
        .arg("--config")
        .arg(&server.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&server.log).unwrap())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // The first connection is what starts mitzod: it waits in the backlog.
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        match try_request(addr, "GET", "/healthz", &[], b"") {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!(
                "no answer through systemd-socket-activate: {e}; log:\n{}",
                server.log_text()
            ),
        }
    };
    assert_eq!(r.status, 200);
    assert_eq!(request(addr, "GET", "/api/version", &[], b"").status, 200);
    let log = server.log_text();
    assert!(log.contains("using sockets passed by systemd"), "{log}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = wait_timeout(&mut child, Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status}; log:\n{}", server.log_text());
}
