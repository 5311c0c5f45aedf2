//! `mitzod serve --dev`, the README's first command: no config, fixed port
//! 3100, generated secrets, and never uid 0.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

struct Dev {
    child: std::process::Child,
    stderr_lines: Vec<String>,
}

/// Every --dev server binds 127.0.0.1:3100: one at a time.
static PORT_3100: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start_dev(dir: &std::path::Path) -> Dev {
    let mut child = Command::new(mitzod_bin())
        .args(["serve", "--dev"])
        .current_dir(dir)
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("mitzod --dev exited: {lines:#?}");
        }
        let done = line.contains("serving on");
        lines.push(line);
        if done {
            break;
        }
    }
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    Dev {
        child,
        stderr_lines: lines,
    }
}

fn stop(mut dev: Dev) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_timeout(&mut dev.child, Duration::from_secs(15)).expect("stops");
    assert!(status.success(), "{status}: {:#?}", dev.stderr_lines);
}

#[test]
fn dev_mode_runs_with_generated_secrets() {
    let _port = PORT_3100.lock().unwrap_or_else(|p| p.into_inner());
    let dir = open_tempdir();
    assert!(Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir.path())
        .status()
        .unwrap()
        .success());
    let addr: std::net::SocketAddr = "127.0.0.1:3100".parse().unwrap();

    let dev = start_dev(dir.path());
    let text = dev.stderr_lines.join("");
    let phrase = text
        .lines()
        .find_map(|l| {
            l.split("(shown once, kept in .mitzo-dev/passphrase): ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("passphrase printed once: {text}"))
        .trim()
        .to_string();
    let state = dir.path().join(".mitzo-dev");
    for f in ["passphrase", "jwt-secret", "internal-token"] {
        let m = std::fs::metadata(state.join(f)).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "{f}");
    }
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    if is_root() {
        let (uid, _) = nobody_ids();
        assert!(text.contains("now running as user nobody"), "{text}");
        let status = proc_status(dev.child.id());
        assert!(
            status["Uid"]
                .split_whitespace()
                .all(|u| u == uid.to_string()),
            "{:?}",
            status["Uid"]
        );
        assert_eq!(
            std::fs::metadata(&state).unwrap().uid(),
            uid,
            "state handed to nobody"
        );
    }
    let login = |p: &str| {
        request(
            addr,
            "POST",
            "/api/auth/login",
            &[("Content-Type", "application/json")],
            format!("{{\"passphrase\":\"{p}\"}}").as_bytes(),
        )
    };
    assert_eq!(login(&phrase).status, 200);
    stop(dev);

    // Second run: same secrets, passphrase not printed again.
    let dev = start_dev(dir.path());
    assert!(!dev.stderr_lines.join("").contains("shown once"));
    assert_eq!(login(&phrase).status, 200);
    assert_eq!(login("not it").status, 401);
    stop(dev);
}

#[test]
fn dev_mode_refuses_a_config_file() {
    let out = Command::new(mitzod_bin())
        .args(["serve", "--dev", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[test]
fn dev_state_dir_under_an_unreachable_path_still_works_as_root() {
    // A checkout under /root (0700) is unreachable for `nobody`: the server
    // works from inside its state dir through an fd opened as root.
    if !require_root("dev_state_dir_under_an_unreachable_path_still_works_as_root") {
        return;
    }
    let _port = PORT_3100.lock().unwrap_or_else(|p| p.into_inner());
    let outer = open_tempdir();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let inner = outer.path().join("checkout");
    std::fs::create_dir(&inner).unwrap();
    let dev = start_dev(&inner);
    let r = request(
        "127.0.0.1:3100".parse().unwrap(),
        "GET",
        "/healthz",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    stop(dev);
}
