//! Daemon benchmark: socket-activated cold start and idle RSS of mitzod as
//! deployed (root start, drop to `nobody`, systemd credential files) and of
//! `serve --dev`, next to two floors started the same way in the same run:
//! a bare Rust std server (this program, re-executed) and a minimal Node
//! http server. Then requests/s of an authenticated route against
//! `/healthz`.
//!
//!   cargo build --release -p mitzod --bins --examples
//!   nice -n 10 target/release/examples/bench_daemon
//!
//! Uses `MITZO_BIN` or the `mitzod` next to this example's target dir;
//! `BENCH_COLD_STARTS` sets n (default 30 per server).
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a benchmark fails by panicking; raw fds and pre_exec set-ups

mod bench_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::*;

const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(3);
const CLIENTS: usize = 4;
const FLOOR_ARG: &str = "--floor-std-server";

/// The minimal Node server: the same answer as the std floor.
const NODE_SERVER: &str = r#"require('http').createServer((q, s) => { s.setHeader('content-type', 'application/json'); s.end('{"ok":true}'); }).listen({ fd: 3 });"#;

fn main() {
    if std::env::args().nth(1).as_deref() == Some(FLOOR_ARG) {
        floor_std_server();
        return;
    }
    let n: usize = std::env::var("BENCH_COLD_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let bin = mitzod_bin();
    let dir = open_tempdir("mitzod-bench-");
    let mut servers = servers(&bin, dir.path());
    // One cold start of mitzod as deployed under a profiler, e.g.
    // BENCH_PROFILE='strace -f -c -o /tmp/start.strace'.
    if let Ok(wrap) = std::env::var("BENCH_PROFILE") {
        let mut deployed = servers.remove(servers.len() - 2);
        let mut words = wrap.split_whitespace().map(str::to_string);
        let tool = words.next().expect("BENCH_PROFILE: a command");
        let mut args: Vec<String> = words.collect();
        // A tool that forks: the inner shell sets LISTEN_PID to the pid
        // that becomes mitzod.
        let mut inner = format!("LISTEN_PID=$$ exec '{}'", deployed.program.display());
        for a in &deployed.args {
            inner.push_str(&format!(" '{a}'"));
        }
        args.extend(["/bin/sh".to_string(), "-c".into(), inner]);
        deployed.program = find_on_path(&tool).unwrap_or_else(|| PathBuf::from(&tool));
        deployed.args = args;
        let took = cold_start(&deployed);
        println!("cold start under `{wrap}`: {:.2} ms", ms(took));
        return;
    }

    // Cold start, round-robin so each server sees the same noise.
    let mut cold: Vec<Vec<Duration>> = vec![Vec::new(); servers.len()];
    for _ in 0..n {
        for (i, s) in servers.iter().enumerate() {
            cold[i].push(cold_start(s));
        }
    }
    // Idle RSS: one request served, then a second of quiet.
    let rss: Vec<u64> = servers.iter().map(idle_rss).collect();

    println!("{}", machine());
    println!(
        "cold start: connection made and request sent before the process exists → first byte of the answer; n={n} each, interleaved"
    );
    let floor = median_d(&cold[0]);
    let node = servers
        .iter()
        .position(|s| s.name.starts_with("node"))
        .map(|i| median_d(&cold[i]));
    println!(
        "{:<44} {:>9} {:>8} {:>8} {:>10} {:>10} {:>11}",
        "server", "median ms", "min", "max", "× std", "Node ÷", "idle RSS"
    );
    for (i, s) in servers.iter().enumerate() {
        let mut c = cold[i].clone();
        c.sort();
        let m = median_d(&c);
        println!(
            "{:<44} {:>9.2} {:>8.2} {:>8.2} {:>10.2} {:>10} {:>8} KiB",
            s.name,
            ms(m),
            ms(c[0]),
            ms(c[c.len() - 1]),
            m.as_secs_f64() / floor.as_secs_f64(),
            node.map(|nd| format!("{:.1}", nd.as_secs_f64() / m.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            rss[i]
        );
    }
    if servers.iter().all(|s| !s.name.starts_with("node")) {
        println!("(no `node` on PATH: the Node floor was skipped)");
    }
    let mid = |i: usize| median_d(&cold[i]);
    let (deployed_i, dev_i) = (servers.len() - 2, servers.len() - 1);
    let node_i = servers.iter().position(|s| s.name.starts_with("node"));
    let node_note = |m: Duration| {
        node.map(|nd| {
            format!(
                "; Node {:.2} ms, {:.1}× faster than Node",
                ms(nd),
                nd.as_secs_f64() / m.as_secs_f64()
            )
        })
        .unwrap_or_default()
    };
    result(
        "cold start as deployed, connect → first byte",
        &format!("{:.2} ms", ms(mid(deployed_i))),
        &format!("std {:.2} ms{}", ms(floor), node_note(mid(deployed_i))),
        &format!(
            "{:.2}× std",
            mid(deployed_i).as_secs_f64() / floor.as_secs_f64()
        ),
        "≤ 2.5× std, ≥ 10× faster than Node",
    );
    result(
        "cold start, serve --dev",
        &format!("{:.2} ms", ms(mid(dev_i))),
        &format!("deployed {:.2} ms", ms(mid(deployed_i))),
        &format!(
            "{:.2}× deployed, {:.2}× std",
            mid(dev_i).as_secs_f64() / mid(deployed_i).as_secs_f64(),
            mid(dev_i).as_secs_f64() / floor.as_secs_f64()
        ),
        "within 10% of deployed",
    );
    result(
        "idle RSS after start, as deployed",
        &format!("{} KiB", rss[deployed_i]),
        &format!(
            "std {} KiB{}",
            rss[0],
            node_i
                .map(|i| format!("; Node {} KiB", rss[i]))
                .unwrap_or_default()
        ),
        &format!("{:.1}× std", rss[deployed_i] as f64 / rss[0].max(1) as f64),
        "≤ 8 MB",
    );

    // Throughput and RSS after load, as deployed.
    let deployed = &servers[servers.len() - 2];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = spawn_activated(deployed, listener.as_raw_fd());
    drop(listener);
    wait_ready(addr);
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
    std::thread::sleep(Duration::from_secs(2));
    let rss_settled = rss_kib(child.id());
    stop(&mut child);
    let (h, a) = (median(health), median(authed));
    println!(
        "deployed mitzod RSS right after the load: {rss_after} KiB; 2 s later: {rss_settled} KiB"
    );
    println!("GET /healthz: median {h:.0} req/s ({CLIENTS} keep-alive clients, {ROUNDS} rounds of {ROUND:?})");
    println!("GET /api/auth/check (owner JWT): median {a:.0} req/s");
    println!("ratio authenticated / healthz: {:.2}", a / h);
    result(
        "RSS after 18 s of request load, as deployed",
        &format!("{rss_after} KiB (2 s later {rss_settled} KiB)"),
        &format!("idle {} KiB", rss[deployed_i]),
        "",
        "",
    );
    result(
        "GET /api/auth/check vs /healthz req/s",
        &format!("{a:.0}/s"),
        &format!("{h:.0}/s"),
        &format!("{:.2}", a / h),
        "",
    );
}

/// A program started on an inherited listening socket (fd 3).
struct Server {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

/// The std floor first, mitzod as deployed second to last, dev mode last.
fn servers(bin: &Path, dir: &Path) -> Vec<Server> {
    let me = std::env::current_exe().unwrap();
    let mut out = vec![Server {
        name: "floor: bare Rust std server".into(),
        program: me,
        args: vec![FLOOR_ARG.into()],
        cwd: dir.to_path_buf(),
        env: Vec::new(),
    }];
    if let Some(node) = find_on_path("node") {
        out.push(Server {
            name: "node: minimal http server".into(),
            program: node,
            args: vec!["-e".into(), NODE_SERVER.into()],
            cwd: dir.to_path_buf(),
            env: Vec::new(),
        });
    }
    // As deployed: the unit's credentials in $CREDENTIALS_DIRECTORY, an
    // address nobody can bind (only the inherited socket can serve).
    let creds = dir.join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        creds.join("jwt-secret"),
        "bench-jwt-secret-0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let hash = mitzod::auth::passphrase::hash(&mitzod::secret::Secret::new(PASSPHRASE)).unwrap();
    std::fs::write(creds.join("passphrase-hash"), hash).unwrap();
    let user = if is_root() { "user = \"nobody\"\n" } else { "" };
    let config = dir.join("mitzod.toml");
    std::fs::write(
        &config,
        format!(
            "{user}state_dir = \"{}\"\nlisten = [\"192.0.2.1:9\"]\nlog_level = \"warn\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let who = if is_root() {
        "root start, drop to nobody"
    } else {
        "unprivileged"
    };
    out.push(Server {
        name: format!("mitzod as deployed ({who})"),
        program: bin.to_path_buf(),
        args: vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        cwd: dir.to_path_buf(),
        env: vec![("CREDENTIALS_DIRECTORY".into(), creds.display().to_string())],
    });
    // `serve --dev` in a directory of its own (owned by nobody when root:
    // dev mode serves as the directory's owner).
    let devdir = dir.join("dev");
    std::fs::create_dir(&devdir).unwrap();
    if is_root() {
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody");
        nix::unistd::chown(&devdir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let dev = Server {
        name: "mitzod serve --dev".into(),
        program: bin.to_path_buf(),
        args: vec!["serve".into(), "--dev".into()],
        cwd: devdir,
        env: vec![("MITZOD_LOG_LEVEL".into(), "warn".into())],
    };
    // Its first start generates the passphrase and secrets: not measured.
    cold_start(&dev);
    out.push(dev);
    out
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_d(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// Connect and send the request, then start the server; time to the first
/// byte of its answer.
fn cold_start(s: &Server) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut child = spawn_activated(s, listener.as_raw_fd());
    let mut first = [0u8; 1];
    client
        .read_exact(&mut first)
        .unwrap_or_else(|e| panic!("{}: no answer: {e}", s.name));
    let took = started.elapsed();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(
        String::from_utf8_lossy(&rest).starts_with("TTP/1.1 200"),
        "{}: {}",
        s.name,
        String::from_utf8_lossy(&rest)
    );
    drop(listener);
    stop(&mut child);
    took
}

fn idle_rss(s: &Server) -> u64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = spawn_activated(s, listener.as_raw_fd());
    drop(listener);
    wait_ready(addr);
    std::thread::sleep(Duration::from_secs(1));
    let rss = rss_kib(child.id());
    stop(&mut child);
    rss
}

/// Start `s` with `fd` as its inherited socket (fd 3), as systemd does.
/// Every server goes through the same `sh -c exec` (for `LISTEN_PID`).
fn spawn_activated(s: &Server, fd: RawFd) -> Child {
    let mut line = String::from("LISTEN_PID=$$ exec");
    for a in std::iter::once(s.program.display().to_string()).chain(s.args.iter().cloned()) {
        line.push_str(" '");
        line.push_str(&a.replace('\'', r"'\''"));
        line.push('\'');
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(line)
        .current_dir(&s.cwd)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "http")
        .env_remove("NOTIFY_SOCKET")
        .envs(s.env.iter().map(|(k, v)| (k, v)))
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

/// The floor: accept on fd 3, read a request head, answer `{"ok":true}`
/// and close (every request here says `Connection: close`).
fn floor_std_server() {
    // SAFETY: fd 3 is the listening socket handed over by the parent.
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}";
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut r = BufReader::new(&mut stream);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let _ = stream.write_all(ANSWER);
    }
}
