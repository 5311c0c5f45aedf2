//! What mitzod's integration tests, benchmarks and fuzz targets share, so
//! nothing is written twice: the real `mitzod` binary in a temp state dir
//! ([`TestServer`]), a raw HTTP/1.1 client (so tests control every header),
//! the skips for root and Landlock, git repos ([`git`]), a WebSocket client
//! ([`ws`]) and `serve --dev` ([`dev`]).

pub mod agent;
pub mod dev;
pub mod git;
pub mod ws;

pub use git::{git, init_repo, make_repo};
pub use ws::Ws;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSPHRASE: &str = "correct horse battery staple";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789abcdef";

/// The `mitzod` binary: `MITZO_BIN`, else the one cargo built next to the
/// running test (`target/<profile>/deps/..`) or example
/// (`target/<profile>/examples/..`).
pub fn mitzod_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let bin = std::env::var("MITZO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                let exe = std::env::current_exe().expect("the running test's path");
                exe.parent()
                    .and_then(Path::parent)
                    .expect("a test binary lives two levels below the target dir")
                    .join("mitzod")
            });
        assert!(
            bin.exists(),
            "{} is missing: cargo build -p mitzod (or set MITZO_BIN)",
            bin.display()
        );
        bin.to_string_lossy().into_owned()
    })
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Tests that need root run when root; otherwise they skip with a message,
/// unless `MITZO_REQUIRE_ROOT_TESTS=1` (set by CI) makes that a failure.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("MITZO_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1") {
        panic!("{test} needs root and MITZO_REQUIRE_ROOT_TESTS=1 is set");
    }
    eprintln!("SKIP {test}: needs root");
    false
}

/// True when Landlock is usable. Otherwise: skip with a message, or panic
/// when `MITZO_REQUIRE_LANDLOCK=1` (CI).
pub fn landlock_or_skip(test: &str) -> bool {
    let probe = mitzo_sandbox::landlock_abi();
    if probe.supported() {
        return true;
    }
    if std::env::var("MITZO_REQUIRE_LANDLOCK").is_ok_and(|v| v == "1") {
        panic!("{test}: Landlock is required (MITZO_REQUIRE_LANDLOCK=1) but {probe}");
    }
    eprintln!("SKIP {test}: {probe}");
    false
}

/// A free loopback port (bound then released: racy only in theory).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An in-memory database with mitzod's whole schema (the task board, the
/// sessions, ...), for code that takes a connection.
pub fn memory_db() -> rusqlite::Connection {
    let mut c = rusqlite::Connection::open_in_memory().expect("an in-memory database");
    mitzod::db::migrate(&mut c).expect("mitzod's migrations");
    c
}

/// A temp dir that the dropped user (`nobody`) can traverse.
pub fn open_tempdir() -> tempfile::TempDir {
    open_tempdir_prefixed("mitzod-test-")
}

/// The same, named `<prefix>...`.
pub fn open_tempdir_prefixed(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[derive(Default)]
pub struct Options {
    /// Extra TOML appended to the generated config.
    pub extra_toml: String,
    pub env: Vec<(String, String)>,
    /// Bind this address from the config (else a free loopback port).
    pub listen: Option<String>,
}

/// A config, secrets and a state dir in a temp dir; start/stop the server.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    pub opts_env: Vec<(String, String)>,
}

pub fn passphrase_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        mitzod::auth::passphrase::hash(&mitzod::secret::Secret::new(PASSPHRASE)).unwrap()
    })
    .clone()
}

impl TestServer {
    /// Write the config and secrets; do not start.
    pub fn new(opts: Options) -> TestServer {
        let dir = open_tempdir();
        let state_dir = dir.path().join("state");
        let port = free_port();
        let listen = opts
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{port}"));
        let jwt = dir.path().join("jwt-secret");
        std::fs::write(&jwt, JWT_SECRET).unwrap();
        std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o600)).unwrap();
        let user = if is_root() { "user = \"nobody\"\n" } else { "" };
        let config = dir.path().join("mitzod.toml");
        let text = format!(
            "{user}state_dir = \"{}\"\nlisten = [\"{listen}\"]\njwt_secret_file = \"{}\"\npassphrase_hash = \"{}\"\n{}\n",
            state_dir.display(),
            jwt.display(),
            passphrase_hash(),
            opts.extra_toml
        );
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("mitzod.log");
        TestServer {
            dir,
            config,
            state_dir,
            log,
            port,
            child: None,
            opts_env: opts.env,
        }
    }

    pub fn start_with(opts: Options) -> TestServer {
        let mut s = TestServer::new(opts);
        s.start();
        s
    }

    pub fn start_default() -> TestServer {
        Self::start_with(Options::default())
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(mitzod_bin());
        cmd.arg("serve").arg("--config").arg(&self.config);
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID");
        cmd.env("MITZO_LOG", "info");
        for (k, v) in &self.opts_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start the server and wait until `/healthz` answers.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("mitzod exited early ({status}); log:\n{}", self.log_text());
                }
            }
            if let Ok(r) = try_request(self.addr(), "GET", "/healthz", &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "mitzod not ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_timeout(&mut child, Duration::from_secs(15))
            .expect("mitzod did not stop after SIGTERM")
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn token_path(&self) -> PathBuf {
        self.state_dir.join("internal-token")
    }

    pub fn internal_token(&self) -> String {
        std::fs::read_to_string(self.token_path())
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr(), "GET", path, headers, b"")
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        h.push(("Content-Type", "application/json"));
        request(self.addr(), "POST", path, &h, body.as_bytes())
    }

    pub fn request_delete(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr(), "DELETE", path, headers, b"")
    }

    /// Log in; returns the JWT.
    pub fn login(&self) -> String {
        let r = self.post(
            "/api/auth/login",
            &[],
            &format!("{{\"passphrase\":\"{PASSPHRASE}\"}}"),
        );
        assert_eq!(r.status, 200, "login failed: {}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// Run a `mitzod` subcommand against this config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(mitzod_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(|s| s.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One request on a fresh connection. A `Host` header is added unless given.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    exchange(stream, &addr.to_string(), method, path, headers, body)
}

/// The same, from a chosen loopback source address (e.g. 127.0.0.7).
pub fn request_from(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let stream = connect_from(source, addr);
    exchange(stream, &addr.to_string(), method, path, headers, body).unwrap()
}

/// A TCP connection to `addr` from the loopback address `source`.
pub fn connect_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
    )
    .unwrap();
    let SocketAddr::V4(v4) = addr else {
        panic!("v4 only")
    };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).unwrap();
    TcpStream::from(fd)
}

/// Send raw bytes, read the whole answer.
pub fn request_raw(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    parse_response(&out).unwrap()
}

pub fn exchange<S: Read + Write>(
    mut stream: S,
    default_host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {default_host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("header not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.iter().any(|x| x.contains("chunked")))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..pos]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Read `/proc/<pid>/status` into a map.
pub fn proc_status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

pub fn nobody_ids() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    (u.uid.as_raw(), u.gid.as_raw())
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An HTTP server on the host's loopback that answers every request with
/// `upstream says hi` (what the egress tests reach, or fail to reach);
/// returns its port.
pub fn hello_upstream() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let body = "upstream says hi\n";
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}
