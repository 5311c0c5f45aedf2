//! File read benchmark: `GET /api/files/read` of a 1 MiB file through the
//! running server (owner JWT, keep-alive clients) against a bare in-process
//! `openat2(RESOLVE_BENEATH) + read` loop of the same file, as a ratio.
//!
//!   cargo build --release -p mitzod && cargo run --release -p mitzod --example bench_files
//!
//! Uses `MITZO_BIN` or the `mitzod` next to this example's target dir.

mod bench_support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::*;

const FILE_BYTES: usize = 1024 * 1024;
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(3);
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

    // Sanity: the served body is the file.
    let (status, body) = once(addr, "GET", "/api/files/read?path=big.txt", &headers, "");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["content"].as_str().map(str::len), Some(FILE_BYTES));

    let mut served = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        served.push(throughput(
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
    let _ = child.kill();
    let _ = child.wait();

    served.sort_by(f64::total_cmp);
    bare.sort_by(f64::total_cmp);
    let s = served[ROUNDS / 2];
    let b = bare[ROUNDS / 2];
    println!("{}", machine());
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
