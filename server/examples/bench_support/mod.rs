//! What the benchmark programs share: finding the binary, a temp dir the
//! dropped user can walk, a config, logging in, and a keep-alive HTTP loop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const PASSPHRASE: &str = "bench passphrase";

pub use mitzo_testkit::is_root;

/// `MITZO_BIN`, else the `mitzod` next to this example (the test kit's
/// lookup; `cargo build --release -p mitzod` first).
pub fn mitzod_bin() -> PathBuf {
    PathBuf::from(mitzo_testkit::mitzod_bin())
}

/// A temp dir under `BENCH_TMPDIR` (default /tmp; e.g. /dev/shm to take
/// the disk's fsyncs out), 0755: run as root, the server drops to `nobody`.
pub fn open_tempdir(prefix: &str) -> tempfile::TempDir {
    let base = std::env::var("BENCH_TMPDIR").unwrap_or_else(|_| "/tmp".into());
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("machine: {cores} cores, Linux {}", kernel.trim())
}

/// A config in `dir` (JWT secret, passphrase hash, `user = "nobody"` when
/// root) with `extra` TOML lines; returns its path.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let jwt = dir.join("jwt-secret");
    std::fs::write(&jwt, "bench-jwt-secret-0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hash = mitzod::auth::passphrase::hash(&mitzod::secret::Secret::new(PASSPHRASE)).unwrap();
    let user = if is_root() { "user = \"nobody\"\n" } else { "" };
    let config = dir.join("mitzod.toml");
    std::fs::write(
        &config,
        format!(
            "{user}state_dir = \"{}\"\njwt_secret_file = \"{}\"\npassphrase_hash = \"{hash}\"\nlog_level = \"warn\"\n{extra}\n",
            dir.join("state").display(),
            jwt.display(),
        ),
    )
    .unwrap();
    config
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One response on a keep-alive connection (Content-Length bodies only).
pub fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((status, body))
}

/// One request on its own connection; status 0 when nothing answered.
pub fn once(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, Vec::new());
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, Vec::new());
    }
    read_response(&mut BufReader::new(s)).unwrap_or((0, Vec::new()))
}

/// Wait until `/healthz` answers 200.
pub fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while once(addr, "GET", "/healthz", "", "").0 != 200 {
        assert!(Instant::now() < deadline, "mitzod not ready at {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Log in with `PASSPHRASE`; the owner JWT.
pub fn login(addr: SocketAddr) -> String {
    let body = format!("{{\"passphrase\":\"{PASSPHRASE}\"}}");
    let (status, answer) = once(
        addr,
        "POST",
        "/api/auth/login",
        "Content-Type: application/json\r\n",
        &body,
    );
    assert_eq!(status, 200, "login: {}", String::from_utf8_lossy(&answer));
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    v["token"].as_str().expect("login token").to_string()
}

/// Requests/s of `GET path` from `clients` keep-alive connections for
/// `round`; `check` vets every answer.
pub fn throughput(
    addr: SocketAddr,
    path: &str,
    headers: &str,
    clients: usize,
    round: Duration,
    check: fn(u16, &[u8]),
) -> f64 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::with_capacity(256 * 1024, s);
                let mut n = 0u64;
                while started.elapsed() < round {
                    w.write_all(request.as_bytes()).unwrap();
                    let (status, body) = read_response(&mut r).unwrap();
                    check(status, &body);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One summary row for `bench_all`: what was measured, its value, the
/// floor from the same run, the ratio, and the goal it is read against.
pub fn result(measure: &str, value: &str, floor: &str, ratio: &str, goal: &str) {
    println!("RESULT\t{measure}\t{value}\t{floor}\t{ratio}\t{goal}");
}

/// A mitzod child with its log; stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: Option<std::process::Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
    bin: PathBuf,
    config: PathBuf,
}

impl Server {
    /// Start `bin serve` with `config`, logging to `dir/mitzod.log`.
    pub fn start(bin: &Path, dir: &Path, config: &Path, addr: SocketAddr) -> Server {
        let mut s = Server {
            child: None,
            addr,
            log: dir.join("mitzod.log"),
            bin: bin.to_path_buf(),
            config: config.to_path_buf(),
        };
        s.run();
        s
    }

    fn run(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = std::process::Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("MITZO_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start mitzod");
        self.child = Some(child);
        wait_ready(self.addr);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(30));
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `p`th percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// SIGTERM, up to `grace` for a clean exit, then SIGKILL.
pub fn stop_child(child: &mut Option<std::process::Child>, grace: Duration) {
    if let Some(mut child) = child.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
