//! The persisted internal token: survives restarts, repairs what can be
//! repaired, never leaves a truncated file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

fn assert_valid_token(t: &str) {
    assert_eq!(t.len(), 64, "{t:?}");
    assert!(
        t.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{t:?}"
    );
}

/// A server that is stopped and has run once, so the state dir exists.
fn initialised() -> TestServer {
    let mut s = TestServer::start_default();
    assert!(s.stop().success());
    s
}

#[test]
fn created_private_and_persists_across_20_restarts() {
    let mut s = TestServer::start_default();
    let token = s.internal_token();
    assert_valid_token(&token);
    assert_eq!(mode(&s.token_path()), 0o600);
    assert_eq!(mode(&s.state_dir), 0o700);
    let auth = [("X-Internal-Token", token.as_str())];
    for i in 0..20 {
        s.restart();
        assert_eq!(s.internal_token(), token, "changed on restart {i}");
        // A caller holding the old token keeps working.
        let r = s.get("/api/auth/check", &auth);
        assert_eq!(
            r.status,
            403,
            "token accepted (but not owner) after restart {i}: {}",
            r.text()
        );
    }
    assert!(!s.log_text().contains("generated a new token"));
}

#[test]
fn corrupt_files_are_regenerated_with_a_warning() {
    let cases: &[(&str, &[u8])] = &[
        ("short", b"abc123"),
        ("non-hex", &[b'z'; 64]),
        ("empty", b""),
        ("binary", &[0xff, 0x00, 0x13, 0x37]),
        ("too long", &[b'a'; 65]),
    ];
    let mut s = initialised();
    for (name, content) in cases {
        std::fs::write(s.token_path(), content).unwrap();
        let before_log = s.log_text().len();
        s.start();
        let token = s.internal_token();
        assert_valid_token(&token);
        let log = s.log_text()[before_log..].to_string();
        assert!(
            log.contains("internal token file was corrupt"),
            "{name}: {log}"
        );
        assert_eq!(mode(&s.token_path()), 0o600, "{name}");
        assert!(s.stop().success());
    }
}

#[test]
fn uppercase_is_normalised_not_replaced() {
    let mut s = initialised();
    let token = s.internal_token();
    std::fs::write(s.token_path(), format!("{}\n", token.to_uppercase())).unwrap();
    s.start();
    assert_eq!(s.internal_token(), token, "same token, lowercased");
    assert_eq!(
        std::fs::read_to_string(s.token_path()).unwrap(),
        token,
        "rewritten without newline"
    );
    assert!(s.log_text().contains("normalised and rewritten"));
}

#[test]
fn loose_permissions_are_tightened() {
    let mut s = initialised();
    let token = s.internal_token();
    std::fs::set_permissions(s.token_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&s.state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.start();
    assert_eq!(s.internal_token(), token);
    assert_eq!(mode(&s.token_path()), 0o600);
    assert_eq!(mode(&s.state_dir), 0o700);
    assert!(s.log_text().contains("tightened to 0600"));
}

#[test]
fn file_owned_by_another_user_is_refused() {
    if !require_root("file_owned_by_another_user_is_refused") {
        return;
    }
    let mut s = initialised();
    nix::unistd::chown(
        &s.token_path(),
        Some(nix::unistd::Uid::from_raw(4242)),
        None,
    )
    .unwrap();
    let out = s.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owned by uid 4242"), "{err}");
    assert_eq!(
        std::fs::metadata(s.token_path()).unwrap().uid(),
        4242,
        "left alone"
    );
    s.child = None;
}

#[test]
fn interrupted_rotation_leaves_the_old_token() {
    let mut s = initialised();
    let token = s.internal_token();
    // Abort between the fsync of the temp file and the rename, as a crash would.
    let out = std::process::Command::new(mitzod_bin())
        .args(["token", "rotate", "--config"])
        .arg(&s.config)
        .env("MITZO_TEST_FAILPOINT", "write-atomic-before-rename")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the failpoint must abort the process"
    );
    assert_eq!(s.internal_token(), token, "old token intact");
    let leftovers: Vec<_> = std::fs::read_dir(&s.state_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert_eq!(leftovers.len(), 1, "the crash left its temp file");
    s.start();
    assert_eq!(s.internal_token(), token);
    let leftovers = std::fs::read_dir(&s.state_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0, "start-up removes stale temp files");
}

#[test]
fn rotation_takes_effect_at_once_on_a_running_server() {
    let s = TestServer::start_default();
    let old = s.internal_token();
    let out = s.cli(&["token", "path"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        s.token_path().to_str().unwrap()
    );
    let out = s.cli(&["token", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = s.internal_token();
    assert_valid_token(&new);
    assert_ne!(new, old);
    assert_eq!(
        s.get("/api/auth/check", &[("X-Internal-Token", &old)])
            .status,
        401,
        "old token dead"
    );
    assert_eq!(
        s.get("/api/auth/check", &[("X-Internal-Token", &new)])
            .status,
        403,
        "new token known (not owner)"
    );
    if is_root() {
        let (uid, _) = nobody_ids();
        assert_eq!(
            std::fs::metadata(s.token_path()).unwrap().uid(),
            uid,
            "rotated as root, still the service user's"
        );
    }
}
