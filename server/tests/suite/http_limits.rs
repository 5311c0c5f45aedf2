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

/// Sockets the server holds open, when its fd table is readable (as root).
fn open_sockets(pid: u32) -> Option<usize> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        rd.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|t| t.to_string_lossy().starts_with("socket:"))
            .count(),
    )
}

/// `GET /healthz` from 127.0.0.2 with a generous read timeout (so a server
/// that never answers fails the test instead of hanging it): the status.
fn healthz_from_another_address(s: &TestServer) -> Option<u16> {
    let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 2), s.addr());
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        s.port
    );
    stream.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).ok()?;
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn idle_connections(s: &TestServer, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect_timeout(&s.addr(), Duration::from_secs(5)).unwrap())
        .collect()
}

/// 500 idle connections from one address, at `LimitNOFILE=256`: the
/// per-address cap closes all but 16, so `/healthz` from another address is
/// answered and the server holds no more than the cap. Control: with no
/// cap, the same 500 connections are all held open.
#[test]
fn idle_connections_do_not_stop_healthz() {
    let s = start_limited(
        "[http]\nmax_connections_per_address = 16\nheader_read_timeout_secs = 3600\n",
        Some(256),
    );
    let idle = idle_connections(&s, 500);
    assert_eq!(healthz_from_another_address(&s), Some(200));
    // The 500 connected before /healthz did, so the accept loop has seen
    // them all by now.
    if let Some(n) = open_sockets(s.pid()) {
        assert!(n <= 16 + 8, "{n} sockets held with a cap of 16");
    } else {
        eprintln!("fd count not checked: /proc/{}/fd unreadable", s.pid());
    }
    drop(idle);

    let control = start_limited(
        "[http]\nmax_connections_per_address = 0\nheader_read_timeout_secs = 3600\n",
        None,
    );
    let idle = idle_connections(&control, 500);
    assert_eq!(healthz_from_another_address(&control), Some(200));
    if let Some(n) = open_sockets(control.pid()) {
        assert!(n >= 500, "control: only {n} sockets held without a cap");
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
