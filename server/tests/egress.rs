//! Egress by name: mitzod's allow-listing proxy on a Unix socket, and an
//! agent in a network namespace of its own that reaches the world only
//! through it (the reaper's forwarder). Real sockets, a real upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a test fails by panicking; raw fds and pre_exec set-ups

mod sandbox_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mitzo_sandbox::{build_env, ContainmentConfig, Policy, SandboxedCommand};
use mitzod::egress::proxy::{serve, AllowedHost, ProxyEvent, ProxyPolicy};
use sandbox_common::serial;
use tokio::sync::mpsc;

use mitzo_testkit::hello_upstream as upstream;

fn host(h: &str, private_ok: bool) -> AllowedHost {
    AllowedHost {
        host: h.into(),
        port: None,
        private_ok,
        address: None,
    }
}

/// Start the proxy on a runtime of its own; returns the socket path.
fn proxy(
    dir: &Path,
    allowed: Vec<AllowedHost>,
) -> (mpsc::UnboundedReceiver<ProxyEvent>, std::path::PathBuf) {
    let path = dir.join("proxy.sock");
    let (tx, rx) = mpsc::unbounded_channel();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let p = path.clone();
    // Ready once `bind` returned: the socket file appears before `listen`,
    // so its existence alone is not a sign that connections are accepted.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let l = tokio::net::UnixListener::bind(&p).unwrap();
            let _ = ready_tx.send(());
            serve(
                l,
                Arc::new(ProxyPolicy {
                    allowed,
                    ..Default::default()
                }),
                tx,
            )
            .await;
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the proxy listens");
    (rx, path)
}

/// One request through the proxy socket; the whole answer.
fn through(sock: &Path, request: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn connect_then_get(sock: &Path, target: &str) -> String {
    through(
        sock,
        &format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
    )
}

fn next_event(rx: &mut mpsc::UnboundedReceiver<ProxyEvent>) -> ProxyEvent {
    for _ in 0..2000 {
        if let Ok(e) = rx.try_recv() {
            return e;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no proxy event");
}

#[test]
fn proxy_allows_listed_names_only() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = upstream();
    let (mut rx, sock) = proxy(
        dir.path(),
        vec![
            // A listed host that lives on loopback on purpose.
            host("localhost", true),
        ],
    );

    let out = connect_then_get(&sock, &format!("localhost:{port}"));
    assert!(
        out.contains("200 Connection established") && out.contains("upstream says hi"),
        "{out}"
    );
    let e = next_event(&mut rx);
    assert!(
        e.allowed && e.host == "localhost" && e.port == port && e.down > 0,
        "{e:?}"
    );

    let out = through(
        &sock,
        &format!("GET http://localhost:{port}/x HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    );
    assert!(out.contains("upstream says hi"), "plain HTTP: {out}");
    assert!(next_event(&mut rx).allowed);

    // Not listed: refused, although it resolves and the upstream is there.
    let out = connect_then_get(&sock, &format!("localhost.localdomain:{port}"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let e = next_event(&mut rx);
    assert!(
        !e.allowed && e.detail.contains("not on the allow-list"),
        "{e:?}"
    );

    // Listed, but it resolves to loopback without being listed as private
    // (the control is the first request above, same name, marked private).
    let dir2 = tempfile::tempdir().unwrap();
    let (mut rx2, sock2) = proxy(dir2.path(), vec![host("localhost", false)]);
    let out = connect_then_get(&sock2, &format!("localhost:{port}"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let e = next_event(&mut rx2);
    assert!(!e.allowed && e.detail.contains("non-public"), "{e:?}");

    // An IP literal not listed is refused; the control (the same literal,
    // listed) goes through.
    let out = connect_then_get(&sock, &format!("127.0.0.1:{port}"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(!next_event(&mut rx).allowed);
    let dir3 = tempfile::tempdir().unwrap();
    let (mut rx3, sock3) = proxy(dir3.path(), vec![host("127.0.0.1", true)]);
    let out = connect_then_get(&sock3, &format!("127.0.0.1:{port}"));
    assert!(out.contains("upstream says hi"), "control: {out}");
    assert!(next_event(&mut rx3).allowed);
}

/// The agent's whole network is the forwarder on its own loopback: a listed
/// host is reached through the proxy, nothing else is reached at all.
#[test]
fn isolated_agent_reaches_only_listed_hosts_through_the_proxy() {
    let _g = serial();
    if !sandbox_common::landlock_or_skip(
        "isolated_agent_reaches_only_listed_hosts_through_the_proxy",
    ) {
        return;
    }
    if let Err(why) = mitzo_sandbox::netns::probe() {
        if std::env::var("MITZO_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED isolated_agent_reaches_only_listed_hosts_through_the_proxy: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let port = upstream();
    let (mut rx, sock) = proxy(&d, vec![host("localhost", true)]);
    const FWD: u16 = 3128;
    let policy = Policy {
        read_write: vec![d.clone(), "/dev/null".into()],
        read_exec: mitzo_sandbox::system_read_exec_paths(),
        read_only: vec!["/proc".into(), "/etc".into()],
        connect_tcp: vec![FWD, port],
        ..Policy::default()
    };
    let c = ContainmentConfig {
        reaper: sandbox_common::mitzod_bin().into(),
        grace: Duration::from_millis(200),
        ..Default::default()
    };
    let run = |script: &str, isolated: bool| {
        let mut cmd =
            SandboxedCommand::new("/bin/sh", &policy, build_env(std::env::vars_os(), &[], &[]))
                .unwrap()
                .args(["-c", script])
                .current_dir(&d)
                .contained_with("2026-01-01-333333333333", &c)
                .unwrap();
        if isolated {
            cmd = cmd
                .isolate_network()
                .unwrap()
                .forward_to_proxy(FWD, &sock)
                .unwrap();
        }
        let (mut std_cmd, guard) = cmd.into_std_with_guard();
        let out = std_cmd.stdin(Stdio::null()).output().unwrap();
        guard.end();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let direct = format!(
        "curl -s --max-time 10 --noproxy '*' http://127.0.0.1:{port}/ || echo direct-failed"
    );
    let via = |h: &str| {
        format!("curl -s --max-time 10 --proxy http://127.0.0.1:{FWD} http://{h}:{port}/ || echo via-failed")
    };

    // Control: outside the namespace the upstream is reached directly.
    let (out, err) = run(&direct, false);
    assert!(out.contains("upstream says hi"), "control: {out} {err}");

    let (out, err) = run(&direct, true);
    assert!(
        out.contains("direct-failed"),
        "direct from the namespace: {out} {err}"
    );
    let (out, err) = run(&via("localhost"), true);
    assert!(
        out.contains("upstream says hi"),
        "listed host via the proxy: {out} {err}"
    );
    let e = next_event(&mut rx);
    assert!(e.allowed && e.host == "localhost", "{e:?}");
    // The same through a CONNECT tunnel (what HTTPS uses).
    let (out, err) = run(
        &via("localhost").replace("curl -s", "curl -s --proxytunnel"),
        true,
    );
    assert!(
        out.contains("upstream says hi"),
        "CONNECT via the proxy: {out} {err}"
    );
    assert!(next_event(&mut rx).allowed);
    let (out, err) = run(&via("localhost.localdomain"), true);
    assert!(
        out.contains("not on the allow-list"),
        "unlisted host: {out} {err}"
    );
    assert!(!next_event(&mut rx).allowed);
}

/// A session's proxy answers only processes that descend from the
/// session's reaper: a connection from anywhere else is closed unanswered
/// and reported. Control: the same request from a process of the tree is
/// answered.
#[test]
fn a_session_proxy_answers_only_its_own_processes() {
    let port = upstream();
    let request = format!("GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let ask = |root: i32| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let (_root_tx, root_rx) = tokio::sync::watch::channel(root);
        std::thread::spawn(move || {
            rt.block_on(async move {
                let l = tokio::net::UnixListener::bind(&p).unwrap();
                let _ = ready_tx.send(());
                let policy = ProxyPolicy {
                    allowed: vec![host("localhost", true)],
                    peer_root: Some(root_rx),
                    ..Default::default()
                };
                serve(l, Arc::new(policy), tx).await;
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(request.as_bytes());
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        (answer, next_event(&mut rx))
    };
    // Control: this test process is the root of its own tree.
    let (answer, ev) = ask(std::process::id() as i32);
    assert!(answer.contains("upstream says hi"), "{answer}");
    assert!(ev.allowed, "{ev:?}");
    // Rooted at another process (a child of ours): we are not below it.
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let (answer, ev) = ask(other.id() as i32);
    let _ = other.kill();
    let _ = other.wait();
    assert!(answer.is_empty(), "answered a stranger: {answer}");
    assert!(
        !ev.allowed && ev.detail.contains("outside the session"),
        "{ev:?}"
    );
}
