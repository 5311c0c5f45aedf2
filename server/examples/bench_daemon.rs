//! Daemon benchmark: socket-activated cold start, idle RSS, and requests/s
//! of an authenticated route against `/healthz`, measured side by side.
//!
//!   cargo build --release -p mitzod && cargo run --release -p mitzod --example bench_daemon
//!
//! Uses `MITZO_BIN` or the `mitzod` next to this example's target dir.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const COLD_STARTS: usize = 20;
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(3);
const CLIENTS: usize = 4;

fn main() {
    let bin = std::env::var("MITZO_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            let exe = std::env::current_exe().expect("current exe");
            exe.parent()
                .and_then(|p| p.parent())
                .expect("target dir")
                .join("mitzod")
        });
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p mitzod",
        bin.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("mitzod-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_config(dir.path());

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
    let rss_kib = rss(child.id());
    let jwt = login(addr);
    let auth_header = format!("Authorization: Bearer {jwt}\r\n");

    let mut health = Vec::new();
    let mut authed = Vec::new();
    for _ in 0..ROUNDS {
        health.push(throughput(addr, "/healthz", ""));
        authed.push(throughput(addr, "/api/auth/check", &auth_header));
    }
    let rss_after = rss(child.id());
    stop(&mut child);

    cold.sort();
    health.sort_by(f64::total_cmp);
    authed.sort_by(f64::total_cmp);
    let h = health[ROUNDS / 2];
    let a = authed[ROUNDS / 2];
    println!("machine: {} cores, {}", cores(), kernel());
    println!(
        "cold start (connect → first byte of /healthz, process not running): median {:.1} ms, min {:.1} ms, max {:.1} ms (n={COLD_STARTS})",
        ms(cold[COLD_STARTS / 2]),
        ms(cold[0]),
        ms(cold[COLD_STARTS - 1])
    );
    println!("idle RSS after start: {rss_kib} KiB; after the load: {rss_after} KiB");
    println!("GET /healthz: median {h:.0} req/s ({CLIENTS} keep-alive clients, {ROUNDS} rounds of {ROUND:?})");
    println!("GET /api/auth/check (owner JWT): median {a:.0} req/s");
    println!("ratio authenticated / healthz: {:.2}", a / h);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let jwt = dir.join("jwt-secret");
    std::fs::write(&jwt, "bench-jwt-secret-0123456789abcdef0123456789abcdef").unwrap();
    let hash =
        mitzod::auth::passphrase::hash(&mitzod::secret::Secret::new("bench passphrase")).unwrap();
    let user = if nix::unistd::Uid::effective().is_root() {
        "user = \"nobody\"\n"
    } else {
        ""
    };
    let config = dir.join("mitzod.toml");
    std::fs::write(
        &config,
        format!(
            "{user}state_dir = \"{}\"\nlisten = [\"192.0.2.1:9\"]\njwt_secret_file = \"{}\"\npassphrase_hash = \"{hash}\"\nlog_level = \"warn\"\n",
            dir.join("state").display(),
            jwt.display()
        ),
    )
    .unwrap();
    config
}

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
    // SAFETY: dup2 only between fork and exec.
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

fn wait_ready(addr: std::net::SocketAddr) {
    for _ in 0..500 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("server did not come up");
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn login(addr: std::net::SocketAddr) -> String {
    let body = r#"{"passphrase":"bench passphrase"}"#;
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let json = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["token"].as_str().expect("login token").to_string()
}

/// Requests/s over `ROUND` from `CLIENTS` keep-alive connections.
fn throughput(addr: std::net::SocketAddr, path: &str, extra_headers: &str) -> f64 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n");
    let deadline = Instant::now() + ROUND;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut count = 0u64;
                while Instant::now() < deadline {
                    writer.write_all(request.as_bytes()).unwrap();
                    let status = read_response(&mut reader);
                    assert_eq!(status, 200, "{request}");
                    count += 1;
                }
                count
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / ROUND.as_secs_f64()
}

fn read_response(reader: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    status
}
