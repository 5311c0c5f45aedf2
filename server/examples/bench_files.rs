//! File read benchmark, 1 MiB of text, keep-alive clients over loopback:
//! `GET /api/files/raw` (owner JWT) against a minimal hyper server serving
//! the same file's bytes (read per request) in the same run; also the JSON
//! route `GET /api/files/read` and a bare in-process `openat2` + `read`.
//!
//!   cargo build --release -p mitzod --bins --examples
//!   nice -n 10 target/release/examples/bench_files
//!
//! Uses `MITZO_BIN` or the `mitzod` next to this example's target dir.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

mod bench_support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::*;

const FILE_BYTES: usize = 1024 * 1024;
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(2);
const CLIENTS: usize = 2;

fn main() {
    let bin = mitzod_bin();
    let dir = open_tempdir("mitzod-bench-files-");
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
    if is_root() {
        // The server drops to nobody: hand it the repo.
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody");
        for p in [repo.clone(), repo.join("big.txt")] {
            nix::unistd::chown(&p, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
    }
    let config = write_config(
        dir.path(),
        &format!("listen = [\"{addr}\"]\nrepo_path = \"{}\"", repo.display()),
    );

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
    wait_ready(addr);
    let jwt = login(addr);
    let headers = format!("Authorization: Bearer {jwt}\r\n");
    let floor = start_hyper_floor(repo.join("big.txt"));

    // Sanity: every side serves the file.
    let (status, body) = once(addr, "GET", "/api/files/read?path=big.txt", &headers, "");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["content"].as_str().map(str::len), Some(FILE_BYTES));
    let (status, body) = once(addr, "GET", "/api/files/raw?path=big.txt", &headers, "");
    assert_eq!(status, 200);
    assert!(body == content.as_bytes(), "raw body differs");
    let (status, body) = once(floor, "GET", "/big.txt", "", "");
    assert_eq!(status, 200);
    assert!(body == content.as_bytes(), "floor body differs");

    let exact = |status: u16, body: &[u8]| {
        assert_eq!(status, 200);
        assert_eq!(body.len(), FILE_BYTES);
    };
    let mut raw = Vec::new();
    let mut hyper = Vec::new();
    let mut json = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        raw.push(throughput(
            addr,
            "/api/files/raw?path=big.txt",
            &headers,
            CLIENTS,
            ROUND,
            exact,
        ));
        hyper.push(throughput(floor, "/big.txt", "", CLIENTS, ROUND, exact));
        json.push(throughput(
            addr,
            "/api/files/read?path=big.txt",
            &headers,
            CLIENTS,
            ROUND,
            |status, body| {
                assert_eq!(status, 200);
                assert!(body.len() > FILE_BYTES);
            },
        ));
        bare.push(bare_reads(&repo));
    }
    let rss = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();

    let show = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
    let mib = |x: f64| x * FILE_BYTES as f64 / 1048576.0;
    let (r, h, j, b) = (
        median(raw.clone()),
        median(hyper.clone()),
        median(json.clone()),
        median(bare.clone()),
    );
    println!("{}", machine());
    println!("file: {FILE_BYTES} bytes of text; {CLIENTS} keep-alive clients each side; {ROUNDS} rounds of {ROUND:?}, interleaved; medians");
    println!(
        "GET /api/files/raw (owner JWT):              {r:>8.0} req/s ({:.0} MiB/s); rounds {:?}",
        mib(r),
        show(&raw)
    );
    println!(
        "floor: minimal hyper server, same bytes:     {h:>8.0} req/s ({:.0} MiB/s); rounds {:?}",
        mib(h),
        show(&hyper)
    );
    println!(
        "GET /api/files/read (JSON body):             {j:>8.0} req/s ({:.0} MiB/s); rounds {:?}",
        mib(j),
        show(&json)
    );
    println!(
        "bare openat2 + read in-process (no HTTP):    {b:>8.0} reads/s ({:.0} MiB/s); rounds {:?}",
        mib(b),
        show(&bare)
    );
    println!("ratio raw / hyper floor: {:.2}", r / h);
    println!(
        "ratio JSON / hyper floor: {:.3}; JSON / bare: {:.3}",
        j / h,
        j / b
    );
    println!("mitzod RSS after the rounds: {rss} KiB");
    result(
        "GET /api/files/raw, 1 MiB",
        &format!("{r:.0}/s"),
        &format!("minimal hyper {h:.0}/s"),
        &format!("{:.2}", r / h),
        "≥ 0.8",
    );
    result(
        "GET /api/files/read (JSON), 1 MiB",
        &format!("{j:.0}/s"),
        &format!("minimal hyper {h:.0}/s; bare read {b:.0}/s"),
        &format!("{:.3} hyper, {:.3} bare", j / h, j / b),
        "JSON stays for small text files",
    );
}

/// A minimal hyper server on a loopback port, in this process, on a
/// runtime like mitzod's (2 workers): every request reads `file` and
/// answers its bytes.
fn start_hyper_floor(file: PathBuf) -> SocketAddr {
    use http_body_util::Full;
    use hyper::body::Bytes;

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let file = file.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let file = file.clone();
                        async move {
                            let bytes = std::fs::read(&file)?;
                            Ok::<_, std::io::Error>(
                                hyper::Response::builder()
                                    .header("content-type", "application/octet-stream")
                                    .body(Full::new(Bytes::from(bytes)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// Reads/s of the same file with the resolver's own `openat2` + `read`,
/// CLIENTS threads, for ROUND.
fn bare_reads(repo: &Path) -> f64 {
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
