//! Egress through mitzod's proxy against direct, over loopback: an HTTP
//! upstream on the host; a client under the sandbox either connects to it
//! directly (the floor) or runs in its own network namespace and goes the
//! way an agent's HTTPS does (`CONNECT` to the reaper's forwarder on the
//! namespace's loopback → the session's proxy Unix socket → mitzod's proxy
//! → the upstream). Measured by the client itself, interleaved rounds:
//! time to first byte and throughput of a 10 MiB download, and the latency
//! of a small request on a new connection and on a kept-alive one.
//!
//!   cargo build --release -p mitzod --bins --examples
//!   nice -n 10 target/release/examples/bench_proxy
//!
//! Uses `MITZO_BIN` (the reaper, which runs the forwarder) or the
//! `mitzod` next to this example. Needs unprivileged user namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

mod bench_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mitzo_sandbox::{build_env, ContainmentConfig, Policy, SandboxedCommand};
use mitzod::egress::proxy::{serve, AllowedHost, ProxyPolicy};

const BIG: usize = 10 * 1024 * 1024;
const FWD: u16 = 3128;
const ROUNDS: usize = 4;
const BIG_REPS: usize = 5;
const SMALL_REPS: usize = 200;

/// Read one response (Content-Length framing); the time its first body
/// byte arrived, measured from `start`.
fn response(r: &mut BufReader<TcpStream>, start: Instant) -> std::io::Result<(usize, Duration)> {
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut first = Duration::ZERO;
    let mut got = 0;
    let mut buf = vec![0u8; 256 * 1024];
    while got < len {
        let want = (len - got).min(buf.len());
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if got == 0 {
            first = start.elapsed();
        }
        got += n;
    }
    Ok((got, first))
}

/// A connection to the upstream, directly or through a `CONNECT` tunnel.
fn open(via_proxy: bool, port: u16) -> BufReader<TcpStream> {
    if !via_proxy {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("direct connect");
        s.set_nodelay(true).ok();
        return BufReader::new(s);
    }
    let mut s = TcpStream::connect(("127.0.0.1", FWD)).expect("forwarder connect");
    s.set_nodelay(true).ok();
    write!(
        s,
        "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "CONNECT refused: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    r
}

fn get(r: &mut BufReader<TcpStream>, path: &str) -> (usize, Duration) {
    let start = Instant::now();
    write!(r.get_mut(), "GET {path} HTTP/1.1\r\nHost: up\r\n\r\n").unwrap();
    response(r, start).expect("response")
}

fn median(v: Vec<f64>) -> f64 {
    bench_support::median(v)
}

/// The client: `client direct|proxy PORT`; prints `key value` lines.
fn client(mode: &str, port: u16) {
    let via = mode == "proxy";
    let mut ttfb = Vec::new();
    let mut mibps = Vec::new();
    for _ in 0..BIG_REPS {
        let start = Instant::now();
        let mut r = open(via, port);
        write!(r.get_mut(), "GET /big HTTP/1.1\r\nHost: up\r\n\r\n").unwrap();
        let (n, first) = response(&mut r, start).expect("big response");
        assert_eq!(n, BIG);
        let all = start.elapsed().as_secs_f64();
        ttfb.push(first.as_secs_f64() * 1e6);
        mibps.push(n as f64 / (1024.0 * 1024.0) / all);
    }
    let mut fresh = Vec::new();
    for _ in 0..SMALL_REPS {
        let start = Instant::now();
        let mut r = open(via, port);
        get(&mut r, "/small");
        fresh.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let mut kept = Vec::new();
    let mut r = open(via, port);
    for _ in 0..SMALL_REPS {
        let start = Instant::now();
        get(&mut r, "/small");
        kept.push(start.elapsed().as_secs_f64() * 1e6);
    }
    println!("ttfb_us {}", median(ttfb));
    println!("mibps {}", median(mibps));
    println!("fresh_us {}", median(fresh));
    println!("kept_us {}", median(kept));
}

/// The upstream: keep-alive HTTP/1.1, `/big` is 10 MiB, anything else 2 bytes.
fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let big: Arc<Vec<u8>> = Arc::new(vec![b'x'; BIG]);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(c) = conn else { continue };
            c.set_nodelay(true).ok();
            let big = big.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut w = c;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body: &[u8] = if path == "/big" { &big } else { b"ok" };
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    if w.write_all(head.as_bytes()).is_err() || w.write_all(body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        client(&args[2], args[3].parse().expect("port"));
        return;
    }
    if let Err(why) = mitzo_sandbox::netns::probe() {
        eprintln!("bench_proxy needs user and network namespaces: {why}");
        std::process::exit(1);
    }
    println!("{}", bench_support::machine());
    let dir = bench_support::open_tempdir("bench-proxy");
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let port = upstream();

    // The proxy, as a session's: its own runtime, one Unix socket.
    let sock = d.join("proxy.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let p = sock.clone();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let l = tokio::net::UnixListener::bind(&p).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let _ = ready_tx.send(());
            let policy = ProxyPolicy {
                allowed: vec![AllowedHost {
                    host: "127.0.0.1".into(),
                    port: Some(port),
                    private_ok: true,
                    address: None,
                }],
                ..Default::default()
            };
            serve(l, Arc::new(policy), tx).await;
        })
    });
    ready_rx.recv().unwrap();

    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let mut read_exec = mitzo_sandbox::system_read_exec_paths();
    read_exec.push(exe.parent().unwrap().to_path_buf());
    let policy = Policy {
        read_write: vec![d.clone(), "/dev/null".into()],
        read_exec,
        read_only: vec!["/proc".into(), "/etc".into()],
        connect_tcp: vec![FWD, port],
        ..Policy::default()
    };
    let containment = ContainmentConfig {
        reaper: bench_support::mitzod_bin(),
        grace: Duration::from_millis(200),
        ..Default::default()
    };
    let run = |mode: &str| -> Vec<(String, f64)> {
        let mut cmd =
            SandboxedCommand::new(&exe, &policy, build_env(std::env::vars_os(), &[], &[]))
                .unwrap()
                .args(["client", mode, &port.to_string()])
                .current_dir(&d)
                .contained_with("2026-01-01-000000000001", &containment)
                .unwrap();
        if mode == "proxy" {
            cmd = cmd
                .isolate_network()
                .unwrap()
                .forward_to_proxy(FWD, &sock)
                .unwrap();
        }
        let (mut c, guard) = cmd.into_std_with_guard();
        let out = c.output().unwrap();
        guard.end();
        assert!(
            out.status.success(),
            "{mode} client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    };
    let mut direct: Vec<Vec<(String, f64)>> = Vec::new();
    let mut proxied: Vec<Vec<(String, f64)>> = Vec::new();
    for round in 0..ROUNDS {
        // Interleaved, alternating which goes first.
        if round % 2 == 0 {
            direct.push(run("direct"));
            proxied.push(run("proxy"));
        } else {
            proxied.push(run("proxy"));
            direct.push(run("direct"));
        }
    }
    let pick = |runs: &[Vec<(String, f64)>], key: &str| {
        median(
            runs.iter()
                .filter_map(|r| r.iter().find(|(k, _)| k == key).map(|(_, v)| *v))
                .collect(),
        )
    };
    let (d_ttfb, p_ttfb) = (pick(&direct, "ttfb_us"), pick(&proxied, "ttfb_us"));
    let (d_mibps, p_mibps) = (pick(&direct, "mibps"), pick(&proxied, "mibps"));
    let (d_fresh, p_fresh) = (pick(&direct, "fresh_us"), pick(&proxied, "fresh_us"));
    let (d_kept, p_kept) = (pick(&direct, "kept_us"), pick(&proxied, "kept_us"));
    println!(
        "medians of {ROUNDS} interleaved rounds ({BIG_REPS} downloads of 10 MiB, {SMALL_REPS} small requests each):"
    );
    println!("  10 MiB download, time to first byte: direct {d_ttfb:.0} µs, proxy {p_ttfb:.0} µs");
    println!(
        "  10 MiB download, throughput: direct {d_mibps:.0} MiB/s, proxy {p_mibps:.0} MiB/s, ratio {:.2}",
        p_mibps / d_mibps
    );
    println!(
        "  small request on a new connection: direct {d_fresh:.0} µs, proxy {p_fresh:.0} µs, added {:.0} µs",
        p_fresh - d_fresh
    );
    println!(
        "  small request on a kept-alive connection (a tunnel): direct {d_kept:.0} µs, proxy {p_kept:.0} µs, added {:.0} µs",
        p_kept - d_kept
    );
    bench_support::result(
        "10 MiB download over loopback through the proxy (forwarder, Unix socket, CONNECT) (proxy)",
        &format!("{p_mibps:.0} MiB/s, first byte {p_ttfb:.0} µs"),
        &format!("direct {d_mibps:.0} MiB/s, first byte {d_ttfb:.0} µs"),
        &format!("{:.2}", p_mibps / d_mibps),
        "≥ 0.8× throughput",
    );
    bench_support::result(
        "small request, new connection / kept-alive tunnel (proxy)",
        &format!("{p_fresh:.0} / {p_kept:.0} µs"),
        &format!("direct {d_fresh:.0} / {d_kept:.0} µs"),
        &format!("+{:.0} / +{:.0} µs", p_fresh - d_fresh, p_kept - d_kept),
        "≤ 1 ms added per request",
    );
}
