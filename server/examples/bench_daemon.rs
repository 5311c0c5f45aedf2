//! Daemon benchmark: socket-activated cold start, idle RSS, and requests/s
//! of an authenticated route against `/healthz`, measured side by side.
//!
//!   cargo build --release -p mitzod && cargo run --release -p mitzod --example bench_daemon
//!
//! Uses `MITZO_BIN` or the `mitzod` next to this example's target dir.

mod bench_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::*;

const COLD_STARTS: usize = 20;
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(3);
const CLIENTS: usize = 4;

fn main() {
    let bin = mitzod_bin();
    let dir = open_tempdir("mitzod-bench-");
    // An address nobody can bind: only the inherited socket can serve.
    let config = write_config(dir.path(), "listen = [\"192.0.2.1:9\"]");

    // Cold start: the connection is made and the request sent before the
    // process exists, as when systemd holds the socket.
    let mut cold = Vec::new();
    for _ in 0..COLD_STARTS {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut child = spawn_activated(&bin, &config, listener.as_raw_fd());
        let mut first = [0u8; 1];
        client.read_exact(&mut first).unwrap();
        cold.push(started.elapsed());
        drop(listener);
        stop(&mut child);
    }

    // One long-running server for RSS and throughput.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = spawn_activated(&bin, &config, listener.as_raw_fd());
    drop(listener);
    wait_ready(addr);
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_kib(child.id());
    let auth_header = format!("Authorization: Bearer {}\r\n", login(addr));

    let ok = |status: u16, _: &[u8]| assert_eq!(status, 200);
    let mut health = Vec::new();
    let mut authed = Vec::new();
    for _ in 0..ROUNDS {
        health.push(throughput(addr, "/healthz", "", CLIENTS, ROUND, ok));
        authed.push(throughput(
            addr,
            "/api/auth/check",
            &auth_header,
            CLIENTS,
            ROUND,
            ok,
        ));
    }
    let rss_after = rss_kib(child.id());
    stop(&mut child);

    cold.sort();
    let (h, a) = (median(health), median(authed));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{}", machine());
    println!(
        "cold start (connect → first byte of /healthz, process not running): median {:.1} ms, min {:.1} ms, max {:.1} ms (n={COLD_STARTS})",
        ms(cold[COLD_STARTS / 2]),
        ms(cold[0]),
        ms(cold[COLD_STARTS - 1])
    );
    println!("idle RSS after start: {rss_idle} KiB; after the load: {rss_after} KiB");
    println!("GET /healthz: median {h:.0} req/s ({CLIENTS} keep-alive clients, {ROUNDS} rounds of {ROUND:?})");
    println!("GET /api/auth/check (owner JWT): median {a:.0} req/s");
    println!("ratio authenticated / healthz: {:.2}", a / h);
}

/// Start mitzod with `fd` as its inherited socket (fd 3), as systemd does.
fn spawn_activated(bin: &std::path::Path, config: &std::path::Path, fd: RawFd) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ exec {} serve --config {}",
            bin.display(),
            config.display()
        ))
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "http")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only fcntl/dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}
