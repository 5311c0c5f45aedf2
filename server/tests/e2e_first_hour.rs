//! The README's first hour with the real Claude Code CLI (npm), offline
//! against the scripted fake Anthropic API:
//! - `serve --dev` in a fresh clone with the fake model as
//!   `ANTHROPIC_BASE_URL`, log in with the passphrase file, a session over
//!   `/ws/chat`, and an approved tool call, as the "First session" section says;
//! - `claude -p --worktree` with the README's `WorktreeCreate`/`WorktreeRemove`
//!   hooks: the Bash call's file lands in the worktree mitzod made, and the
//!   real CLI's removal path (`claude worktree-hook --event remove`) removes it
//!   through mitzod.
//!
//! Skips when the CLI (or, for the hooks, the `mitzo` command) is missing,
//! unless `MITZO_REQUIRE_E2E=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
mod e2e_support;
mod sessions_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::dev::{serve_dev, DevServer};
use common::*;
use e2e_support::*;
use serde_json::{json, Value};

/// A project to work on, with one commit.
fn project(dir: &Path) -> PathBuf {
    let repo = dir.join("project");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    git(&repo, &["add", "README.md"]);
    git(&repo, &["commit", "-qm", "init"]);
    repo
}

/// `mitzod serve --dev` in `dir` with `env`, once it serves; the rest of
/// its log goes to `.mitzo-dev/serve.log`, for a failure's message.
fn start_dev(dir: &Path, env: &[(String, String)]) -> DevServer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    serve_dev(dir, &[], &env, Some(dir.join(".mitzo-dev/serve.log")))
}

#[test]
fn real_claude_readme_first_session() {
    let Some(claude) = claude_or_skip("real_claude_readme_first_session") else {
        return;
    };
    let api = fake_api();
    let dir = open_tempdir();
    let repo = project(dir.path());
    // As root the README says: the repo must belong to the user --dev serves as.
    git::chown_to_service_user(&repo);
    let port = free_port();
    let modules = e2e_dir().join("node_modules").canonicalize().unwrap();
    let env: Vec<(String, String)> = vec![
        (
            "ANTHROPIC_BASE_URL".into(),
            format!("http://127.0.0.1:{}", api.port),
        ),
        ("ANTHROPIC_API_KEY".into(), "sk-test-offline".into()),
        (
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
            "1".into(),
        ),
        ("MITZOD_AGENT__COMMAND".into(), claude.display().to_string()),
        (
            "MITZOD_AGENT__EXTRA_READ_PATHS".into(),
            format!("[\"{}\"]", modules.display()),
        ),
        ("MITZOD_LISTEN".into(), format!("[\"127.0.0.1:{port}\"]")),
    ];
    let dev = start_dev(&repo, &env);
    let said = dev.lines.join("");
    assert!(
        said.contains(&format!("agent: `{}` found", claude.display())),
        "{said}"
    );
    assert!(
        said.contains(&format!("agents may connect to port {}", api.port)),
        "{said}"
    );
    assert!(!said.contains("sessions need a git repo"), "{said}");

    // curl -X POST .../api/auth/login -d "{\"passphrase\": \"$(cat .mitzo-dev/passphrase)\"}"
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let phrase = std::fs::read_to_string(repo.join(".mitzo-dev/passphrase")).unwrap();
    let login = request(
        addr,
        "POST",
        "/api/auth/login",
        &[("Content-Type", "application/json")],
        json!({ "passphrase": phrase.trim() })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let jwt = login.json()["token"].as_str().unwrap().to_string();

    // websocat -H "Authorization: Bearer $TOKEN" ws://127.0.0.1:3100/ws/chat
    let mut ws = Ws::connect(port, &jwt);
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "RUN: echo hello > hello.txt"}));
    let created = ws.wait_type("session_created");
    let id = created["sessionId"].as_str().unwrap().to_string();
    let wt = PathBuf::from(created["worktrees"]["primary"]["path"].as_str().unwrap());
    let req = ws.wait_for("permission_request", |f| {
        if f["type"] == "session_error" || f["type"] == "error" {
            let log = dev
                .log
                .as_ref()
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default();
            panic!("{f}\nlog:\n{log}");
        }
        f["type"] == "permission_request"
    });
    assert_eq!(req["toolName"], "Bash", "{req}");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "allow"}));
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], false, "{result}");
    ws.wait_type("result");
    assert_eq!(
        std::fs::read_to_string(wt.join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert!(
        !repo.join("hello.txt").exists(),
        "in the session's worktree"
    );
}

/// The `mitzo` command of the installed client (the python stage's venv).
fn mitzo_cli(test: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("MITZO_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/py-venv/bin/mitzo"));
    required_or_skip(
        test,
        &bin,
        "install the client: MITZO_PY_INSTALL_ONLY=1 client-py/tests/run.sh",
    )
    .then_some(bin)
}

/// The README's hook configuration, byte for byte.
const README_HOOKS: &str = r#"{
  "hooks": {
    "WorktreeCreate": [
      { "hooks": [ { "type": "command", "command": "mitzo hook worktree-create" } ] }
    ],
    "WorktreeRemove": [
      { "hooks": [ { "type": "command", "command": "mitzo hook worktree-remove" } ] }
    ]
  }
}"#;

#[test]
fn readme_hook_example_is_the_tested_one() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(README_HOOKS),
        "the README's hook example differs from the one tested here"
    );
}

/// The last JSON line a command printed.
fn last_json(out: &[u8]) -> Value {
    let text = String::from_utf8_lossy(out);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON line in {text}"))
}

#[test]
fn real_claude_worktree_hooks() {
    let Some(claude) = claude_or_skip("real_claude_worktree_hooks") else {
        return;
    };
    let Some(mitzo) = mitzo_cli("real_claude_worktree_hooks") else {
        return;
    };
    let api = fake_api();
    let mut server = TestServer::new(Options::default());
    let repo = project(server.dir.path());
    std::fs::create_dir(repo.join(".claude")).unwrap();
    std::fs::write(repo.join(".claude/settings.json"), README_HOOKS).unwrap();
    git::chown_to_service_user(&repo);
    let text = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(
        &server.config,
        format!("repo_path = \"{}\"\n{text}", repo.display()),
    )
    .unwrap();
    server.start();

    let home = server.dir.path().join("claude-home");
    std::fs::create_dir(&home).unwrap();
    if is_root() {
        // As root, Claude runs as another user than mitzod (nobody), and git
        // calls the worktree mitzod made dubious. Where Claude and mitzod are
        // one user, as deployed, this is not needed.
        std::fs::write(home.join(".gitconfig"), "[safe]\n\tdirectory = *\n").unwrap();
    }
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        mitzo.parent().unwrap().display()
    );
    let claude_env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("LANG", "C.UTF-8")
            .env(
                "ANTHROPIC_BASE_URL",
                format!("http://127.0.0.1:{}", api.port),
            )
            .env("ANTHROPIC_API_KEY", "sk-test-offline")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            // What the hooks need to reach mitzod; a dev server needs neither.
            .env("MITZO_URL", format!("http://127.0.0.1:{}", server.port))
            .env("MITZO_TOKEN_FILE", server.token_path())
            .current_dir(&repo);
    };

    let mut run = Command::new(&claude);
    claude_env(&mut run);
    run.args([
        "-p",
        "RUN: pwd > where.txt",
        "--worktree",
        "feature-x",
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        "Bash",
    ]);
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "claude -p --worktree: {}\n{}\nmitzod log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    // The Bash call ran in the worktree, and that worktree is mitzod's: the
    // server answers for it as one of its own (same path, not newly made).
    let found: Vec<PathBuf> = walk(&repo)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "where.txt"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let wt = found[0].parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::read_to_string(&found[0]).unwrap().trim(),
        wt.display().to_string()
    );
    assert_ne!(wt, repo);
    let id = wt.file_name().unwrap().to_str().unwrap().to_string();
    let token = server.internal_token();
    let r = server.post(
        "/api/repos/open",
        &[("X-Internal-Token", &token)],
        &json!({"repoPath": repo, "sessionId": id}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["created"], false, "mitzod made it: {}", r.text());
    assert_eq!(PathBuf::from(r.json()["path"].as_str().unwrap()), wt);

    // Claude Code's removal path runs the WorktreeRemove hook.
    let mut remove = Command::new(&claude);
    claude_env(&mut remove);
    remove.args(["worktree-hook", "--json", "--event", "remove", "--path"]);
    remove.arg(&wt).arg("--trusted-folder").arg(&repo);
    let out = remove.output().unwrap();
    let report = last_json(&out.stdout);
    assert_eq!(
        report["outcome"],
        "removed",
        "{report}\n{}\nmitzod log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    assert!(!wt.exists(), "the worktree is gone");
    assert!(repo.join("README.md").exists(), "the repo is not");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if p.file_name().is_some_and(|n| n == ".git") {
                    continue;
                }
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}
