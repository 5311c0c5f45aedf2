//! The state directory's disk fills up (a 2 MiB tmpfs, as root): writes are
//! answered 507 with the reason, `/healthz` and the sd_notify `STATUS=`
//! line say degraded, the log says it once; when the tmpfs grows, writes
//! succeed again and every write that was acknowledged survives a `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const DISK_FULL: &str = "the state directory's disk is full";

/// A tmpfs mounted for the test, unmounted (lazily) however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let (uid, gid) = nobody_ids();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700,uid={uid},gid={gid}"))
            .arg("mitzod-test-state")
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem of `dir` with one file until ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xa5u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    path
}

/// The `STATUS=` values the server sent so far.
fn statuses(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        out.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("STATUS="))
                .map(str::to_string),
        );
    }
    out
}

fn create_task(s: &TestServer, token: &str, n: usize) -> Response {
    let body = json!({
        "title": format!("task {n}"),
        "description": format!("{n} ").repeat(1500),
    })
    .to_string();
    request(
        s.addr(),
        "POST",
        "/api/tasks",
        &[
            ("X-Internal-Token", token),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

#[test]
fn a_full_state_disk_is_507_and_degraded_then_recovers_without_losing_writes() {
    if !require_root("a_full_state_disk_is_507_and_degraded_then_recovers_without_losing_writes") {
        return;
    }
    let base = open_tempdir();
    let notify_path = base.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut s = TestServer::new(Options {
        env: vec![("NOTIFY_SOCKET".into(), notify_path.display().to_string())],
        ..Options::default()
    });
    let tmpfs = Tmpfs::mount(&s.state_dir, "2m");
    s.start();
    let token = s.internal_token();
    let started = statuses(&notify);
    assert!(
        started.iter().any(|l| l.starts_with("serving on")),
        "{started:?}"
    );

    // Control: with room, a write is acknowledged and /healthz is ok.
    let mut acknowledged: Vec<String> = Vec::new();
    let r = create_task(&s, &token, 0);
    assert_eq!(r.status, 201, "{}", r.text());
    acknowledged.push(r.json()["id"].as_str().unwrap().to_string());
    let h = s.get("/healthz", &[]);
    assert_eq!(h.status, 200, "{}", h.text());
    assert_eq!(h.json()["status"], "ok");

    // Fill the disk; write until the database has no room left.
    let filler = fill(&s.state_dir);
    let mut refused = 0;
    for n in 1..2000 {
        let r = create_task(&s, &token, n);
        match r.status {
            201 => acknowledged.push(r.json()["id"].as_str().unwrap().to_string()),
            507 => {
                assert_eq!(r.error(), DISK_FULL, "{}", r.text());
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            other => panic!("write {n}: unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(refused, 5, "the disk never filled");
    let h = s.get("/healthz", &[]);
    assert_eq!(h.status, 503, "{}", h.text());
    assert_eq!(h.json()["status"], "degraded");
    assert_eq!(h.json()["reason"], DISK_FULL);
    // Reads still work while writes cannot.
    let r = request(
        s.addr(),
        "GET",
        &format!("/api/tasks/{}", acknowledged[0]),
        &[("X-Internal-Token", &token)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let degraded = statuses(&notify);
    assert!(
        degraded
            .iter()
            .any(|l| l.starts_with(&format!("degraded: {DISK_FULL}"))),
        "{degraded:?}"
    );
    let log = s.log_text();
    assert_eq!(
        log.matches("writes are refused with 507").count(),
        1,
        "logged once, not per request:\n{log}"
    );

    // Room again: the next write lands, /healthz and STATUS= clear.
    tmpfs.resize("16m");
    let r = create_task(&s, &token, 5000);
    assert_eq!(r.status, 201, "{}", r.text());
    acknowledged.push(r.json()["id"].as_str().unwrap().to_string());
    let h = s.get("/healthz", &[]);
    assert_eq!(h.status, 200, "{}", h.text());
    let cleared = statuses(&notify);
    assert!(
        cleared.iter().any(|l| l.starts_with("serving on")),
        "{cleared:?}"
    );
    for n in 5001..5010 {
        let r = create_task(&s, &token, n);
        assert_eq!(r.status, 201, "{}", r.text());
        acknowledged.push(r.json()["id"].as_str().unwrap().to_string());
    }
    assert!(s.log_text().contains("has room again"));

    // Every acknowledged write is there after a crash and a restart.
    s.kill9();
    std::fs::remove_file(&filler).unwrap();
    s.start();
    for id in &acknowledged {
        let r = request(
            s.addr(),
            "GET",
            &format!("/api/tasks/{id}"),
            &[("X-Internal-Token", &token)],
            b"",
        );
        assert_eq!(r.status, 200, "acknowledged task {id} lost: {}", r.text());
        let v: Value = r.json();
        assert_eq!(v["id"], id.as_str());
    }
    s.stop();
}
