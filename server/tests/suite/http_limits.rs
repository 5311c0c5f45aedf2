//! Connection limits on the real binary: idle connections cannot starve
//! `/healthz`, a connection that sends no complete request head is closed,
//! and what hyper answers by itself.

use crate::common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Start with a file-descriptor limit of `nofile` (like a unit's
/// `LimitNOFILE=`).
fn start_limited(extra_toml: &str, nofile: Option<u64>) -> TestServer {
    let mut s = TestServer::new(Options {
        extra_toml: extra_toml.into(),
        ..Options::default()
    });
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&s.log)
        .unwrap();
    let mut cmd = s.command();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(n) = nofile {
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    s.child = Some(cmd.spawn().unwrap());
    s.wait_ready();
    s
}

/// Descriptors the server holds open, and how many of them are sockets,
/// when its fd table is readable (the test runs as the same user or root).
fn open_fds(pid: u32) -> Option<(usize, usize)> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let targets: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    let sockets = targets
        .iter()
        .filter(|t| t.to_string_lossy().starts_with("socket:"))
        .count();
    Some((targets.len(), sockets))
}

/// What became of one `GET /healthz`.
#[derive(Debug, PartialEq)]
enum Probe {
    /// The server answered with this status.
    Answered(u16),
    /// The connection was refused, reset or closed without an answer.
    Closed(String),
    /// No connection or no answer within the wait.
    TimedOut(&'static str),
}

/// `GET /healthz` from 127.0.0.2 (another address than the idle
/// connections'), waiting at most `wait` for the connection and again for
/// the answer, so a starved server fails the probe instead of hanging it.
fn healthz_from_another_address(s: &TestServer, wait: Duration) -> Probe {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0)),
    )
    .unwrap();
    // Linux bounds a blocking connect() by the send timeout: a SYN the
    // full accept queue drops is not retried for minutes.
    let tv = nix::sys::time::TimeVal::new(wait.as_secs() as i64, 0);
    setsockopt(&fd, sockopt::SendTimeout, &tv).unwrap();
    let std::net::SocketAddr::V4(v4) = s.addr() else {
        panic!("v4 only")
    };
    match connect(fd.as_raw_fd(), &SockaddrIn::from(v4)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS | nix::errno::Errno::EAGAIN) => {
            return Probe::TimedOut("connect")
        }
        Err(e) => return Probe::Closed(format!("connect: {e}")),
    }
    let mut stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(wait)).unwrap();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        s.port
    );
    if let Err(e) = stream.write_all(req.as_bytes()) {
        return Probe::Closed(format!("write: {e}"));
    }
    let mut out = Vec::new();
    if let Err(e) = stream.read_to_end(&mut out) {
        return match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                Probe::TimedOut("answer")
            }
            _ => Probe::Closed(format!("read: {e}")),
        };
    }
    match String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
    {
        Some(status) => Probe::Answered(status),
        None => Probe::Closed(format!("no status line in {} bytes", out.len())),
    }
}

/// Up to `n` idle connections from 127.0.0.1. A server that stops
/// accepting leaves the rest in its accept queue until that is full, after
/// which connecting times out: stop there and keep what connected.
fn idle_connections(s: &TestServer, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&s.addr(), Duration::from_secs(3)) {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    held
}

/// The file-descriptor limit both runs share, like a unit's
/// `LimitNOFILE=256`: low enough that 500 idle connections exhaust it.
const NOFILE: u64 = 256;

/// The header-read timeout would close idle connections by itself after
/// 10 s; an hour keeps them open for the length of the test, so what is
/// shown is the per-address cap's doing alone.
const KEEP_IDLE: &str = "header_read_timeout_secs = 3600\n";

/// How long the control waits for `/healthz` before calling it failed.
/// The recovery probe afterwards shows the server was starved, not slow.
const STARVED_WAIT: Duration = Duration::from_secs(10);

/// 500 idle connections from one address, at `LimitNOFILE=256`.
///
/// Control: with the per-address cap disabled (`0`), the server takes
/// connections until its fd table is full, and `/healthz` from another
/// address gets no answer; once the idle connections go, it answers again
/// (so the failure was the starvation, not a dead server).
///
/// With the default cap (64, not set in the config), all but 64 are closed
/// as they are accepted, `/healthz` from another address is answered and
/// the server holds no more sockets than the cap.
#[test]
fn idle_connections_do_not_stop_healthz() {
    let control = start_limited(
        &format!("[http]\nmax_connections_per_address = 0\n{KEEP_IDLE}"),
        Some(NOFILE),
    );
    let idle = idle_connections(&control, 500);
    assert!(
        idle.len() as u64 > NOFILE,
        "control: only {} connections opened",
        idle.len()
    );
    let starved = healthz_from_another_address(&control, STARVED_WAIT);
    assert!(
        !matches!(starved, Probe::Answered(_)),
        "control: /healthz answered with no cap and {} idle connections: {starved:?}",
        idle.len()
    );
    eprintln!(
        "control: {} idle connections, /healthz {starved:?}",
        idle.len()
    );
    if let Some((fds, sockets)) = open_fds(control.pid()) {
        eprintln!("control: server holds {fds} fds, {sockets} sockets");
        assert!(
            fds as u64 >= NOFILE - 2,
            "control: {fds} fds open, the limit is {NOFILE}"
        );
    } else {
        eprintln!(
            "fd count not checked: /proc/{}/fd unreadable",
            control.pid()
        );
    }
    drop(idle);
    assert_eq!(
        healthz_from_another_address(&control, Duration::from_secs(60)),
        Probe::Answered(200),
        "control: the server did not recover once the idle connections closed; log:\n{}",
        control.log_text()
    );
    drop(control);

    let s = start_limited(&format!("[http]\n{KEEP_IDLE}"), Some(NOFILE));
    let idle = idle_connections(&s, 500);
    assert_eq!(idle.len(), 500, "connections were refused with the cap");
    assert_eq!(
        healthz_from_another_address(&s, Duration::from_secs(60)),
        Probe::Answered(200)
    );
    // The 500 connected before /healthz did, so the accept loop has seen
    // them all by now.
    if let Some((fds, sockets)) = open_fds(s.pid()) {
        eprintln!("capped: server holds {fds} fds, {sockets} sockets");
        assert!(sockets <= 64 + 8, "{sockets} sockets held with a cap of 64");
    } else {
        eprintln!("fd count not checked: /proc/{}/fd unreadable", s.pid());
    }
    drop(idle);
}

/// Whether the server closed `stream` (EOF or reset) rather than leaving
/// it open until our generous read timeout.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A connection that never completes its request head, and a keep-alive
/// connection idle after its response, are closed by the server.
#[test]
fn header_read_timeout_closes_silent_and_idle_connections() {
    let s = start_limited("[http]\nheader_read_timeout_secs = 1\n", None);
    let mut silent = TcpStream::connect(s.addr()).unwrap();
    silent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ")
        .unwrap();
    assert!(
        closed_by_server(&mut silent),
        "a partial head was kept open"
    );

    let mut idle = TcpStream::connect(s.addr()).unwrap();
    idle.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            s.port
        )
        .as_bytes(),
    )
    .unwrap();
    // The response arrives, then the idle keep-alive connection is closed.
    let mut got = Vec::new();
    idle.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("idle keep-alive connection left open: {e}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// What hyper answers itself, before mitzod sees a request: 400 for a
/// request it cannot parse, 431 for an oversized head. Those carry no body
/// (so nothing a browser could render or sniff) and none of mitzod's
/// headers, as SECURITY.md says.
#[test]
fn hyper_answers_unparseable_requests_with_empty_bodies() {
    let s = TestServer::start_default();
    let r = request_raw(s.addr(), b"NOT A REQUEST\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(r.body.is_empty(), "{}", r.text());
    let big = "a".repeat(512 * 1024);
    let raw = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Big: {big}\r\n\r\n",
        s.port
    );
    let mut stream = TcpStream::connect(s.addr()).unwrap();
    let _ = stream.write_all(raw.as_bytes());
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert!(head.contains("content-length: 0"), "{head}");
}
