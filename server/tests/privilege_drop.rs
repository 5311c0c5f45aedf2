//! The privilege drop, checked from outside through /proc, on the real
//! kernel. Root-only tests fail instead of skipping under
//! `MITZO_REQUIRE_ROOT_TESTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::*;

#[test]
fn root_start_drops_to_configured_user() {
    if !require_root("root_start_drops_to_configured_user") {
        return;
    }
    let server = TestServer::start_default();
    let (uid, gid) = nobody_ids();
    let status = proc_status(server.pid());
    let ids = |key: &str| -> Vec<u32> {
        status[key]
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect()
    };
    assert_eq!(ids("Uid"), vec![uid; 4], "real, effective, saved, fs uid");
    assert_eq!(ids("Gid"), vec![gid; 4], "real, effective, saved, fs gid");
    assert_eq!(
        status["Groups"]
            .split_whitespace()
            .map(|g| g.parse::<u32>().unwrap())
            .collect::<Vec<_>>(),
        vec![gid]
    );
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status[key], "0000000000000000", "{key} must be empty");
    }
    assert_eq!(status["NoNewPrivs"], "1");

    // DUMPABLE=0: another process of the same user cannot read its environ.
    let out = Command::new("cat")
        .arg(format!("/proc/{}/environ", server.pid()))
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "environ must be unreadable to uid {uid}"
    );

    // And it still serves.
    assert_eq!(server.get("/healthz", &[]).status, 200);
}

#[test]
fn state_dir_is_handed_to_the_service_user() {
    if !require_root("state_dir_is_handed_to_the_service_user") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let server = TestServer::start_default();
    let (uid, _) = nobody_ids();
    let dir = std::fs::metadata(&server.state_dir).unwrap();
    assert_eq!(dir.uid(), uid);
    assert_eq!(dir.mode() & 0o777, 0o700);
    let token = std::fs::metadata(server.token_path()).unwrap();
    assert_eq!(token.uid(), uid);
    assert_eq!(token.mode() & 0o777, 0o600);
    let db = std::fs::metadata(server.state_dir.join("mitzod.db")).unwrap();
    assert_eq!(db.uid(), uid);
    assert_eq!(db.mode() & 0o077, 0, "database is private");
}

#[test]
fn root_without_user_refuses() {
    if !require_root("root_without_user_refuses") {
        return;
    }
    let server = TestServer::new(Options::default());
    let text = std::fs::read_to_string(&server.config)
        .unwrap()
        .replace("user = \"nobody\"\n", "");
    std::fs::write(&server.config, text).unwrap();
    let out = server.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("started as root but no `user` is configured"),
        "{err}"
    );
    assert!(
        !server.state_dir.exists(),
        "refused before touching anything"
    );
}

#[test]
fn root_user_is_refused() {
    if !require_root("root_user_is_refused") {
        return;
    }
    let server = TestServer::new(Options::default());
    let text = std::fs::read_to_string(&server.config)
        .unwrap()
        .replace("user = \"nobody\"", "user = \"root\"");
    std::fs::write(&server.config, text).unwrap();
    let out = server.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve as root"), "{err}");
}

#[test]
fn unprivileged_start_clears_caps_and_sets_no_new_privs() {
    // Start as nobody directly (as with `User=` in the unit).
    if !require_root("unprivileged_start_clears_caps_and_sets_no_new_privs") {
        return;
    }
    let (uid, gid) = nobody_ids();
    let mut server = TestServer::new(Options::default());
    let text = std::fs::read_to_string(&server.config)
        .unwrap()
        .replace("user = \"nobody\"\n", "");
    std::fs::write(&server.config, text).unwrap();
    // The service user owns its state dir and can read its secrets.
    std::fs::create_dir(&server.state_dir).unwrap();
    for p in [
        server.state_dir.clone(),
        server.dir.path().join("jwt-secret"),
    ] {
        nix::unistd::chown(
            &p,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
    }
    let log = std::fs::File::create(&server.log).unwrap();
    let mut cmd = server.command();
    cmd.uid(uid).gid(gid).stdout(Stdio::null()).stderr(log);
    server.child = Some(cmd.spawn().unwrap());
    server.wait_ready();
    let status = proc_status(server.pid());
    for key in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status[key], "0000000000000000", "{key}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    let out = Command::new("cat")
        .arg(format!("/proc/{}/environ", server.pid()))
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "not dumpable: environ unreadable to the same user"
    );
}

#[test]
fn state_dir_owned_by_someone_else_is_refused() {
    if !require_root("state_dir_owned_by_someone_else_is_refused") {
        return;
    }
    let server = TestServer::new(Options::default());
    std::fs::create_dir(&server.state_dir).unwrap();
    nix::unistd::chown(
        &server.state_dir,
        Some(nix::unistd::Uid::from_raw(4242)),
        None,
    )
    .unwrap();
    let out = server.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is owned by uid 4242"), "{err}");
    assert!(
        !server.state_dir.join("internal-token").exists(),
        "nothing created"
    );
}

#[test]
fn drop_needs_only_the_units_capabilities() {
    // As mitzod.service starts it: root, but with the bounding set cut to
    // CAP_SETUID CAP_SETGID CAP_SETPCAP (no CHOWN, FOWNER or DAC_*), and a
    // state dir created at install time, owned by the service user.
    if !require_root("drop_needs_only_the_units_capabilities") {
        return;
    }
    let (uid, gid) = nobody_ids();
    let mut server = TestServer::new(Options::default());
    std::fs::create_dir(&server.state_dir).unwrap();
    std::fs::set_permissions(
        &server.state_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    nix::unistd::chown(
        &server.state_dir,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap();
    let log = std::fs::File::create(&server.log).unwrap();
    let child = Command::new("setpriv")
        .args([
            "--bounding-set=-all,+setuid,+setgid,+setpcap",
            "--inh-caps=-all",
            "--",
        ])
        .arg(mitzod_bin())
        .args(["serve", "--config"])
        .arg(&server.config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    server.child = Some(child);
    server.wait_ready();
    let status = proc_status(server.pid());
    assert!(status["Uid"]
        .split_whitespace()
        .all(|u| u == uid.to_string()));
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status[key], "0000000000000000", "{key}");
    }
    let token = server.internal_token();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(server.token_path()).unwrap().uid(),
        uid,
        "created by the service user"
    );
}
