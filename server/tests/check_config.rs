//! `mitzod check-config` finds what `serve`, or the first session, would
//! refuse, each problem once and named with where its value came from;
//! `hash-passphrase` asks twice without echo and refuses short passphrases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

fn check(s: &TestServer, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(mitzod_bin());
    cmd.arg("check-config")
        .arg("--config")
        .arg(&s.config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("MITZO_CREDSTORE_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("configuration OK"));
}

/// Refused, with `needle` said exactly once.
fn refused(o: &Output, needle: &str) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted: {err}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("configuration OK"),
        "{err}"
    );
    assert_eq!(err.matches(needle).count(), 1, "{needle:?} once in: {err}");
    err
}

fn append(s: &TestServer, toml: &str) {
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("{toml}\n{text}")).unwrap();
}

fn git_repo(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    git(path, &["init", "-q"]);
}

fn chown(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .args(["-R", &uid.to_string()])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The uid the server runs as in these tests.
fn service_uid() -> u32 {
    if is_root() {
        nobody_ids().0
    } else {
        nix::unistd::Uid::effective().as_raw()
    }
}

#[test]
fn a_good_config_passes() {
    ok(&check(&TestServer::new(Options::default()), &[]));
}

#[test]
fn root_without_user_is_refused() {
    if !require_root("root_without_user_is_refused") {
        return;
    }
    let s = TestServer::new(Options::default());
    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("user = \"nobody\"\n", "");
    std::fs::write(&s.config, text).unwrap();
    refused(&check(&s, &[]), "refuses to run without `user`");
    // serve agrees.
    assert!(!s.command().output().unwrap().status.success());
}

#[test]
fn an_unknown_user_is_refused_naming_its_variable() {
    let s = TestServer::new(Options::default());
    let err = refused(
        &check(&s, &[("MITZOD_USER", "no-such-user-here")]),
        "no such user",
    );
    assert!(err.contains("environment variable MITZOD_USER"), "{err}");
}

#[test]
fn parse_only_reads_every_key_and_nothing_of_this_machine() {
    let s = TestServer::new(Options::default());
    // A user, credentials and a repo this machine does not have: what a
    // NixOS build checks, for another machine, with no credentials at all.
    let parse_only = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(mitzod_bin());
        cmd.args(["check-config", "--parse-only", "--config"])
            .arg(&s.config)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("MITZO_CREDSTORE_PATH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let away = [
        ("MITZOD_USER", "no-such-user-here"),
        ("MITZOD_JWT_SECRET_FILE", "/nonexistent/jwt-secret"),
        ("MITZOD_REPO_PATH", "/nonexistent/repo"),
    ];
    let out = parse_only(&away);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("parsed only"),
        "says what it did not check"
    );
    // The control: the full check refuses the same configuration.
    assert!(!check(&s, &away).status.success());
    // A wrong key is still refused, naming it and the file.
    append(&s, "idle_exti = \"30m\"");
    let err = refused(&parse_only(&[]), "unknown field `idle_exti`");
    assert!(err.contains(&s.config.display().to_string()), "{err}");
}

#[test]
fn the_namespace_probe_runs_as_the_service_user() {
    let s = TestServer::new(Options::default());
    let me = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .unwrap()
        .unwrap()
        .name;
    // As root with `user = "nobody"`, the probe switches to nobody: root may
    // create namespaces where nobody may not.
    let who = if is_root() { "nobody".to_string() } else { me };
    let out = check(&s, &[]);
    ok(&out);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains(&format!(
            "agent.network = \"proxy\": user and network namespaces are available (probed as {who};"
        )),
        "{said}"
    );
    // Nothing to probe in "ports" mode.
    let out = check(&s, &[("MITZOD_AGENT__NETWORK", "ports")]);
    ok(&out);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("probed as"));
}

#[test]
fn every_credential_problem_is_reported_with_where_its_file_came_from() {
    let s = TestServer::new(Options::default());
    // Three wrong credentials from three places: the file's key, a variable,
    // and systemd's credentials directory.
    let jwt = s.dir.path().join("jwt-secret");
    std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o644)).unwrap();
    let creds = s.dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("anthropic-api-key"), "").unwrap();
    let creds = creds.to_str().unwrap().to_string();
    let env = [
        ("MITZOD_PASSPHRASE_HASH", "not-a-phc-string"),
        ("CREDENTIALS_DIRECTORY", creds.as_str()),
    ];
    let out = check(&s, &env);
    let err = refused(&out, "readable by group or others");
    let config = s.config.display().to_string();
    assert!(
        err.contains(&format!(
            "key `jwt_secret_file` in {config}: {}",
            jwt.display()
        )),
        "{err}"
    );
    refused(&out, "environment variable MITZOD_PASSPHRASE_HASH (key `passphrase_hash`): not a PHC hash string");
    refused(
        &out,
        "systemd credential `anthropic-api-key` ($CREDENTIALS_DIRECTORY, from LoadCredential=)",
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("mitzod: ")).count(),
        3,
        "three problems, one line each: {err}"
    );
    // serve refuses with all three too, not only the first.
    let mut cmd = s.command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let served = cmd.output().unwrap();
    assert!(!served.status.success());
    let said = stderr(&served);
    for needle in [
        "key `jwt_secret_file` in",
        "environment variable MITZOD_PASSPHRASE_HASH",
        "systemd credential `anthropic-api-key`",
    ] {
        assert_eq!(
            said.matches(needle).count(),
            1,
            "{needle:?} once in: {said}"
        );
    }
    // The control: each fixed, nothing is said.
    std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        s.dir.path().join("creds/anthropic-api-key"),
        "sk-test-key\n",
    )
    .unwrap();
    ok(&check(&s, &[("CREDENTIALS_DIRECTORY", creds.as_str())]));
}

#[test]
fn errors_say_file_or_variable() {
    let s = TestServer::new(Options::default());
    let err = refused(
        &check(&s, &[("MITZOD_LISTEN", "[\"nonsense\"]")]),
        "expected IP:PORT",
    );
    assert!(err.contains("environment variable MITZOD_LISTEN"), "{err}");
    append(&s, "cookie_max_age_hours = 0");
    let err = refused(&check(&s, &[]), "cookie_max_age_hours");
    assert!(err.contains(&s.config.display().to_string()), "{err}");
    assert!(!err.contains("environment variable"), "{err}");
}

#[test]
fn a_state_dir_of_another_user_is_refused_and_roots_is_adopted_with_a_log_line() {
    if !require_root("a_state_dir_of_another_user_is_refused_and_roots_is_adopted_with_a_log_line")
    {
        return;
    }
    let mut s = TestServer::new(Options::default());
    std::fs::create_dir(&s.state_dir).unwrap();
    chown(&s.state_dir, 12345);
    let err = refused(&check(&s, &[]), "is owned by uid 12345");
    assert!(err.contains("install -d -m 0700 -o nobody"), "{err}");
    assert!(
        !s.command().output().unwrap().status.success(),
        "serve agrees"
    );

    // Root's own dir: handed over, and said so, in check-config and in the log.
    chown(&s.state_dir, 0);
    let out = check(&s, &[]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("serve will hand it to nobody"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    s.start();
    assert!(
        s.log_text()
            .contains("state dir is owned by root; handing it to uid"),
        "{}",
        s.log_text()
    );
}

#[test]
fn a_listen_address_in_use_is_refused() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let s = TestServer::new(Options {
        listen: Some(addr.to_string()),
        ..Options::default()
    });
    let err = refused(&check(&s, &[]), &format!("cannot bind {addr}"));
    assert!(err.contains("listen[0]"), "{err}");
    drop(busy);
    ok(&check(&s, &[]));
}

#[test]
fn repos_must_exist_be_git_repos_and_belong_to_the_service_user() {
    let s = TestServer::new(Options::default());
    let repo = s.dir.path().join("repo");
    let agent = "/usr/bin/env";
    let env = [("MITZOD_AGENT__COMMAND", agent)];
    append(&s, &format!("repo_path = \"{}\"", repo.display()));
    refused(&check(&s, &env), "cannot be read");
    std::fs::create_dir(&repo).unwrap();
    chown(&repo, service_uid());
    refused(&check(&s, &env), "is not a git repository");
    git_repo(&repo);
    chown(&repo, service_uid());
    ok(&check(&s, &env));
    // A named repo, set by a variable.
    let other = s.dir.path().join("other");
    git_repo(&other);
    chown(&other, service_uid());
    let repos = format!("{{ other = \"{}\" }}", other.display());
    let mut env2 = env.to_vec();
    env2.push(("MITZOD_REPOS", &repos));
    ok(&check(&s, &env2));
    // A repo of another owner: only root can make one here.
    if require_root(
        "repos_must_exist_be_git_repos_and_belong_to_the_service_user: a repo of another owner",
    ) {
        chown(&other, 0);
        let err = refused(&check(&s, &env2), "git refuses a repo of another owner");
        assert!(err.contains("environment variable MITZOD_REPOS"), "{err}");
        assert!(err.contains("repos.other"), "{err}");
    }
}

#[test]
fn a_missing_agent_command_is_refused_when_there_are_sessions() {
    let s = TestServer::new(Options::default());
    let repo = s.dir.path().join("repo");
    git_repo(&repo);
    chown(&repo, service_uid());
    append(&s, &format!("repo_path = \"{}\"", repo.display()));
    let err = refused(
        &check(&s, &[("MITZOD_AGENT__COMMAND", "no-such-agent-xyz")]),
        "\"no-such-agent-xyz\" is not an executable file on PATH",
    );
    assert!(
        err.contains("environment variable MITZOD_AGENT__COMMAND"),
        "{err}"
    );
    ok(&check(&s, &[("MITZOD_AGENT__COMMAND", "/usr/bin/env")]));
}

#[test]
fn credentials_are_found_in_the_credstore_outside_systemd() {
    let s = TestServer::new(Options::default());
    // A config that names no secret file: the unit's LoadCredential= names.
    let text: String = std::fs::read_to_string(&s.config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("jwt_secret_file") && !l.starts_with("passphrase_hash"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&s.config, text).unwrap();
    let store = s.dir.path().join("credstore");
    std::fs::create_dir(&store).unwrap();
    let env = [("MITZO_CREDSTORE_PATH", store.to_str().unwrap())];
    refused(&check(&s, &env), "no JWT secret");
    let jwt = store.join("mitzod.jwt-secret");
    std::fs::write(&jwt, JWT_SECRET).unwrap();
    std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused(&check(&s, &env), "no owner passphrase");
    std::fs::write(store.join("mitzod.passphrase-hash"), passphrase_hash()).unwrap();
    ok(&check(&s, &env));
}

#[test]
fn a_jwt_secret_readable_by_others_is_refused_with_the_fix() {
    let s = TestServer::new(Options::default());
    let jwt = s.dir.path().join("jwt-secret");
    std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(&check(&s, &[]), "readable by group or others");
    assert!(
        err.contains(&format!("chmod 600 {}", jwt.display())),
        "{err}"
    );
    assert!(!err.contains(JWT_SECRET), "the secret is not echoed");
    let out = s.command().output().unwrap();
    assert!(!out.status.success(), "serve agrees");
    std::fs::set_permissions(&jwt, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(&check(&s, &[]));
}

fn hash_from_stdin(input: &str) -> Output {
    let mut child = Command::new(mitzod_bin())
        .arg("hash-passphrase")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn hash_passphrase_refuses_short_passphrases_on_stdin() {
    let out = hash_from_stdin("short\n");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("at least 12").count(), 1, "{err}");
    assert!(out.stdout.is_empty());
    let out = hash_from_stdin("twelve chars\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("$argon2id$"));
}

/// Runs `mitzod hash-passphrase` on a pseudo-terminal, types `answers`, and
/// returns (exit code, everything the terminal showed, stdout's hash line).
const PTY_DRIVER: &str = r#"
import os, pty, sys, time, json, signal
binary, answers = sys.argv[1], json.loads(sys.argv[2])
signal.alarm(60)
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "hash-passphrase"])
seen = b""
def read_until(needle, limit=30):
    global seen
    end = time.time() + limit
    while needle not in seen and time.time() < end:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
for i, a in enumerate(answers):
    read_until(b"Again: " if i else b"passphrase: ")
    os.write(fd, a.encode() + b"\n")
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(json.dumps({"code": os.waitstatus_to_exitcode(status), "seen": seen.decode(errors="replace")}))
"#;

fn on_tty(answers: &[&str]) -> (i64, String) {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", PTY_DRIVER, mitzod_bin()])
        .arg(serde_json::to_string(answers).unwrap())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (
        v["code"].as_i64().unwrap(),
        v["seen"].as_str().unwrap().to_string(),
    )
}

#[test]
fn hash_passphrase_on_a_terminal_asks_twice_without_echo() {
    let phrase = "a long enough passphrase";
    let (code, seen) = on_tty(&[phrase, phrase]);
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("New owner passphrase: "), "{seen}");
    assert!(seen.contains("Again: "), "{seen}");
    assert!(seen.contains("$argon2id$"), "{seen}");
    assert!(!seen.contains(phrase), "echoed: {seen}");

    let (code, seen) = on_tty(&[phrase, "something else entirely"]);
    assert_ne!(code, 0);
    assert!(seen.contains("differ"), "{seen}");
    assert!(!seen.contains("$argon2id$"), "{seen}");

    let (code, seen) = on_tty(&["short"]);
    assert_ne!(code, 0);
    assert_eq!(seen.matches("at least 12").count(), 1, "{seen}");
}
