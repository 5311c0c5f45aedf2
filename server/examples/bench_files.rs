//! File read benchmark: `GET /api/files/read` of a 1 MiB file through the
//! running server (owner JWT, keep-alive clients) against a bare in-process
//! `openat2(RESOLVE_BENEATH) + read` loop of the same file, as a ratio.
//!
//!   cargo build --release -p mitzod && cargo run --release -p mitzod --example bench_files
//!
//! Uses `MITZO_BIN` or the `mitzod` next to this example's target dir.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FILE_BYTES: usize = 1024 * 1024;
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(3);
const CLIENTS: usize = 2;

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
        .prefix("mitzod-bench-files-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let line = "the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghij\n";
    let content: String = line.repeat(FILE_BYTES / line.len() + 1)[..FILE_BYTES].to_string();
    std::fs::write(repo.join("big.txt"), &content).unwrap();
    std::fs::set_permissions(repo.join("big.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = write_config(dir.path(), &repo, addr);

    let mut child = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mitzod");
    wait_ready(addr, &mut child);
    let jwt = login(addr);
    let headers = format!("Authorization: Bearer {jwt}\r\n");

    // Sanity: the served body is the file.
    let (status, body) = once(addr, "/api/files/read?path=big.txt", &headers);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["content"].as_str().map(str::len), Some(FILE_BYTES));

    let mut served = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        served.push(throughput(addr, "/api/files/read?path=big.txt", &headers));
        bare.push(bare_reads(&repo));
    }
    let _ = child.kill();
    let _ = child.wait();

    served.sort_by(f64::total_cmp);
    bare.sort_by(f64::total_cmp);
    let s = served[ROUNDS / 2];
    let b = bare[ROUNDS / 2];
    println!("machine: {} cores, Linux {}", cores(), kernel());
    println!("file: {FILE_BYTES} bytes of text; {CLIENTS} threads each side; {ROUNDS} rounds of {ROUND:?}; medians");
    println!(
        "GET /api/files/read (HTTP, owner JWT, JSON body): median {s:.0} req/s ({:.0} MiB/s); rounds {:?}",
        s * FILE_BYTES as f64 / 1048576.0,
        served.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
    println!(
        "bare openat2(RESOLVE_BENEATH) + read in-process: median {b:.0} reads/s ({:.0} MiB/s); rounds {:?}",
        b * FILE_BYTES as f64 / 1048576.0,
        bare.iter().map(|x| x.round()).collect::<Vec<_>>()
    );
    println!("ratio served / bare: {:.3}", s / b);
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

fn write_config(
    dir: &std::path::Path,
    repo: &std::path::Path,
    addr: SocketAddr,
) -> std::path::PathBuf {
    let jwt = dir.join("jwt-secret");
    std::fs::write(&jwt, "bench-jwt-secret-0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hash =
        mitzod::auth::passphrase::hash(&mitzod::secret::Secret::new("bench passphrase")).unwrap();
    let root = nix::unistd::Uid::effective().is_root();
    if root {
        // The server drops to nobody: hand it the repo.
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody");
        for p in [repo.to_path_buf(), repo.join("big.txt")] {
            nix::unistd::chown(&p, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
    }
    let user = if root { "user = \"nobody\"\n" } else { "" };
    let config = dir.join("mitzod.toml");
    std::fs::write(
        &config,
        format!(
            "{user}state_dir = \"{}\"\nlisten = [\"{addr}\"]\njwt_secret_file = \"{}\"\npassphrase_hash = \"{hash}\"\nlog_level = \"warn\"\nrepo_path = \"{}\"\n",
            dir.join("state").display(),
            jwt.display(),
            repo.display()
        ),
    )
    .unwrap();
    config
}

fn wait_ready(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("mitzod exited: {status}");
        }
        if TcpStream::connect(addr).is_ok() && once(addr, "/healthz", "").0 == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "mitzod not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn login(addr: SocketAddr) -> String {
    let body = r#"{"passphrase":"bench passphrase"}"#;
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let (status, body) = read_response(&mut r).unwrap();
    assert_eq!(status, 200, "login: {}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn once(addr: SocketAddr, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, Vec::new());
    };
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .is_err()
    {
        return (0, Vec::new());
    }
    read_response(&mut BufReader::new(s)).unwrap_or((0, Vec::new()))
}

/// One response on a keep-alive connection (Content-Length bodies only).
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>)> {
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

/// Requests/s of `path` from CLIENTS keep-alive connections for ROUND.
fn throughput(addr: SocketAddr, path: &str, headers: &str) -> f64 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::with_capacity(256 * 1024, s);
                let mut n = 0u64;
                while started.elapsed() < ROUND {
                    w.write_all(request.as_bytes()).unwrap();
                    let (status, body) = read_response(&mut r).unwrap();
                    assert_eq!(status, 200);
                    assert!(body.len() > FILE_BYTES);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

/// Reads/s of the same file with the resolver's own `openat2` + `read`,
/// CLIENTS threads, for ROUND.
fn bare_reads(repo: &std::path::Path) -> f64 {
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let repo = repo.to_path_buf();
            std::thread::spawn(move || {
                let root = mitzod::files::open_root_dir(&repo).unwrap();
                let mut buf = Vec::with_capacity(FILE_BYTES + 1);
                let mut n = 0u64;
                while started.elapsed() < ROUND {
                    let fd = mitzod::files::open_beneath(
                        root.as_raw_fd(),
                        "big.txt",
                        nix::fcntl::OFlag::O_RDONLY,
                    )
                    .unwrap();
                    buf.clear();
                    std::fs::File::from(fd).read_to_end(&mut buf).unwrap();
                    assert_eq!(buf.len(), FILE_BYTES);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / started.elapsed().as_secs_f64()
}
