//! `mitzod serve --dev`, the README's first command: no config, fixed port
//! 3100, generated secrets, and never uid 0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::dev::{serve_dev, DevServer};
use common::*;

/// Every --dev server binds 127.0.0.1:3100: one at a time.
static PORT_3100: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start_dev(dir: &std::path::Path) -> DevServer {
    serve_dev(dir, &[], &[], None)
}

/// `serve --dev` with more arguments and environment; returns once it
/// serves, with every stderr line up to then.
fn start_dev_with(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> DevServer {
    serve_dev(dir, args, env, None)
}

fn git_init(dir: &std::path::Path) {
    git(dir, &["init", "-q"]);
}

#[test]
fn dev_mode_runs_with_generated_secrets() {
    let _port = PORT_3100.lock().unwrap_or_else(|p| p.into_inner());
    let dir = open_tempdir();
    git_init(dir.path());
    let addr: std::net::SocketAddr = "127.0.0.1:3100".parse().unwrap();

    let dev = start_dev(dir.path());
    let text = dev.lines.join("");
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
    // The server reads an argon2 hash it stored, so it never hashes at
    // start-up and has no plaintext passphrase to warn about.
    let phc = std::fs::read_to_string(state.join("passphrase-hash")).unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(!text.contains("plaintext"), "{text}");
    if is_root() {
        let (uid, _) = nobody_ids();
        assert!(
            text.contains("started as root; serving as user nobody"),
            "{text}"
        );
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
    dev.stop();

    // Second run: same secrets, passphrase not printed again.
    let dev = start_dev(dir.path());
    assert!(!dev.lines.join("").contains("shown once"));
    assert_eq!(login(&phrase).status, 200);
    assert_eq!(login("not it").status, 401);
    dev.stop();
}

#[test]
fn dev_mode_takes_a_config_file_and_the_environment_over_its_defaults() {
    let dir = open_tempdir();
    git_init(dir.path());
    let port = free_port();
    let config = dir.path().join("dev.toml");
    std::fs::write(
        &config,
        format!("listen = [\"127.0.0.1:{port}\"]\n[agent]\ncommand = \"/usr/bin/env\"\n"),
    )
    .unwrap();
    // The variable wins over the file.
    let dev = start_dev_with(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[("MITZOD_AGENT__COMMAND", "/nonexistent/agent")],
    );
    let text = dev.lines.join("");
    assert!(
        text.contains(&format!("listening on http://127.0.0.1:{port}/")),
        "{text}"
    );
    assert!(
        text.contains("agent: `/nonexistent/agent` NOT FOUND"),
        "{text}"
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").status, 200);
    // Still the dev state and secrets.
    assert!(dir.path().join(".mitzo-dev/passphrase-hash").exists());
    dev.stop();

    let dev = start_dev_with(
        dir.path(),
        &[],
        &[
            ("MITZOD_LISTEN", &format!("[\"127.0.0.1:{port}\"]")),
            ("MITZOD_AGENT__COMMAND", "/usr/bin/env"),
        ],
    );
    let text = dev.lines.join("");
    assert!(
        text.contains("agent: `/usr/bin/env` found at /usr/bin/env"),
        "{text}"
    );
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").status, 200);
    dev.stop();
}

#[test]
fn dev_mode_names_the_variable_that_is_wrong() {
    let dir = open_tempdir();
    let out = Command::new(mitzod_bin())
        .args(["serve", "--dev"])
        .current_dir(dir.path())
        .env("MITZOD_COOKIE_MAX_AGE_HOURS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable MITZOD_COOKIE_MAX_AGE_HOURS")
            && err.contains("cookie_max_age_hours"),
        "{err}"
    );
    assert_eq!(
        err.matches("cookie_max_age_hours").count(),
        1,
        "printed once: {err}"
    );
}

#[test]
fn dev_mode_passes_the_model_api_and_allows_its_port() {
    let dir = open_tempdir();
    git_init(dir.path());
    let port = free_port();
    let dev = start_dev_with(
        dir.path(),
        &[],
        &[
            ("MITZOD_LISTEN", &format!("[\"127.0.0.1:{port}\"]")),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:45678"),
            ("ANTHROPIC_API_KEY", "sk-dev-test-key-not-logged"),
        ],
    );
    let text = dev.lines.join("");
    assert!(
        text.contains(
            "ANTHROPIC_BASE_URL=http://127.0.0.1:45678 (agents may connect to port 45678)"
        ),
        "{text}"
    );
    assert!(
        text.contains("ANTHROPIC_API_KEY is set and passed to agents"),
        "{text}"
    );
    assert!(!text.contains("sk-dev-test-key-not-logged"), "{text}");
    dev.stop();
}

#[test]
fn dev_mode_as_root_in_a_root_owned_repo_says_so_before_serving() {
    if !require_root("dev_mode_as_root_in_a_root_owned_repo_says_so_before_serving") {
        return;
    }
    let dir = open_tempdir();
    git_init(dir.path());
    let port = free_port();
    let dev = start_dev_with(
        dir.path(),
        &[],
        &[("MITZOD_LISTEN", &format!("[\"127.0.0.1:{port}\"]"))],
    );
    let text = dev.lines.join("");
    let warned = text
        .find("sessions need a git repo that nobody owns")
        .unwrap_or_else(|| panic!("{text}"));
    let serving = text.find("listening on").unwrap();
    assert!(warned < serving, "said before serving: {text}");
    assert!(text.contains("is owned by root"), "{text}");
    assert!(text.contains("MITZOD_USER"), "{text}");
    dev.stop();

    // Control: the same repo owned by the user it drops to: no warning.
    let status = Command::new("chown")
        .args(["-R", "nobody:"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let dev = start_dev_with(
        dir.path(),
        &[],
        &[("MITZOD_LISTEN", &format!("[\"127.0.0.1:{port}\"]"))],
    );
    let text = dev.lines.join("");
    assert!(text.contains("serving as user nobody"), "{text}");
    assert!(!text.contains("sessions need a git repo"), "{text}");
    dev.stop();
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
    dev.stop();
}

fn porcelain(dir: &std::path::Path) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["status", "--porcelain", "--untracked-files=all"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dev_state_with_its_secrets_stays_out_of_git_status() {
    let dir = open_tempdir();
    git_init(dir.path());
    std::fs::write(dir.path().join("README"), "demo\n").unwrap();
    git(dir.path(), &["add", "README"]);
    git(
        dir.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@localhost",
            "commit",
            "-qm",
            "init",
        ],
    );
    assert_eq!(porcelain(dir.path()), "");
    let port = free_port();
    let listen = format!("[\"127.0.0.1:{port}\"]");
    let dev = start_dev_with(dir.path(), &[], &[("MITZOD_LISTEN", &listen)]);
    let text = dev.lines.join("");
    assert!(dir.path().join(".mitzo-dev/jwt-secret").exists());
    assert_eq!(
        porcelain(dir.path()),
        "",
        "`git add -A` would commit the dev secrets"
    );
    assert!(text.contains(".mitzo-dev/ (secrets) added to"), "{text}");
    dev.stop();
    // A second start adds nothing more.
    let exclude = std::fs::read_to_string(dir.path().join(".git/info/exclude")).unwrap();
    assert_eq!(exclude.matches("/.mitzo-dev/").count(), 1, "{exclude}");
    let dev = start_dev_with(dir.path(), &[], &[("MITZOD_LISTEN", &listen)]);
    assert!(!dev.lines.join("").contains("(secrets) added to"));
    dev.stop();
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".git/info/exclude")).unwrap(),
        exclude
    );
    // The control: without that line git lists the secrets' directory.
    std::fs::write(dir.path().join(".git/info/exclude"), "").unwrap();
    let listed = porcelain(dir.path());
    assert!(listed.contains("?? .mitzo-dev/"), "{listed}");
}

/// `serve --dev` in a user namespace of its own (as `nobody` when the tests
/// run as root), where `user.max_user_namespaces` is 0 when `block` is set:
/// no process there, whatever its privileges, can create another user
/// namespace, as under a unit or kernel that forbids them. Returns the
/// start-up output up to "listening on".
fn dev_in_own_userns(dir: &std::path::Path, block: bool) -> String {
    use std::io::BufRead;
    let limit = if block {
        "echo 0 > /proc/sys/user/max_user_namespaces && "
    } else {
        ""
    };
    let script =
        format!("{limit}exec setpriv --inh-caps=-all --ambient-caps=-all -- \"$0\" serve --dev");
    let mut cmd = if is_root() {
        let (uid, gid) = nobody_ids();
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "--",
            "unshare",
        ]);
        c
    } else {
        Command::new("unshare")
    };
    let port = free_port();
    cmd.args(["--user", "--map-current-user", "--keep-caps", "sh", "-c"])
        .arg(&script)
        .arg(mitzod_bin())
        .current_dir(dir)
        .env("MITZOD_LISTEN", format!("[\"127.0.0.1:{port}\"]"))
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
        if line.contains("mitzod --dev: listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn dev_mode_says_before_serving_whether_agents_get_their_namespaces() {
    let dir = open_tempdir();
    if is_root() {
        let status = Command::new("chown")
            .args(["nobody:"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    // The control: namespaces available, and said so before serving.
    let text = dev_in_own_userns(dir.path(), false);
    let said = text
        .find(
            "mitzod --dev: agent.network = \"proxy\": user and network namespaces are available to",
        )
        .unwrap_or_else(|| panic!("{text}"));
    let serving = text
        .find("mitzod --dev: listening on")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(said < serving, "{text}");
    assert!(!text.contains("MITZOD_AGENT__NETWORK=ports"), "{text}");
    // Namespaces forbidden: said before serving, with the way out.
    let text = dev_in_own_userns(dir.path(), true);
    let said = text
        .find("mitzod --dev: agent.network = \"proxy\" but (probed as ")
        .unwrap_or_else(|| panic!("{text}"));
    let serving = text
        .find("mitzod --dev: listening on")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(said < serving, "{text}");
    assert!(
        text.contains("every session would be refused. Restart with MITZOD_AGENT__NETWORK=ports"),
        "{text}"
    );
    if is_root() {
        assert!(text.contains("(probed as nobody)"), "{text}");
    }
}
