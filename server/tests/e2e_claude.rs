//! End to end with the real Claude Code CLI (npm `@anthropic-ai/claude-code`,
//! installed into tests/e2e by `tests/run`), offline against a scripted fake
//! Anthropic Messages API on loopback, driven through mitzod's WebSocket.
//!
//! Skips when the CLI is not installed, unless `MITZO_REQUIRE_E2E=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
mod e2e_support;
mod sessions_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use e2e_support::*;
use serde_json::json;
use sessions_support::*;

/// mitzod with the real CLI as its agent, reaching the fake API only.
fn start_real(
    claude: &Path,
    api: &FakeApi,
    extra: &str,
    env: impl Fn(u16) -> Vec<(String, String)>,
) -> SessionServer {
    let modules = e2e_dir().join("node_modules").canonicalize().unwrap();
    let api_port = api.port;
    let extra = format!("{extra}\n");
    let s = start_env(&extra, |port| {
        let mut v = vec![
            ("ANTHROPIC_BASE_URL".to_string(), format!("http://127.0.0.1:{api_port}")),
            ("ANTHROPIC_API_KEY".to_string(), "sk-test-offline".to_string()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_string(), "1".to_string()),
            ("MITZOD_AGENT__COMMAND".to_string(), claude.display().to_string()),
            (
                "MITZOD_AGENT__ENV_PASSTHROUGH".to_string(),
                r#"["ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]"#.to_string(),
            ),
            ("MITZOD_AGENT__ALLOWED_CONNECT_PORTS".to_string(), format!("[{api_port}]")),
            ("MITZOD_AGENT__EXTRA_READ_PATHS".to_string(), format!("[\"{}\"]", modules.display())),
        ];
        v.extend(env(port));
        v
    });
    s
}

#[test]
fn real_claude_allow_deny_and_sandbox() {
    let Some(claude) = claude_or_skip("real_claude_allow_deny_and_sandbox") else {
        return;
    };
    let api = fake_api();
    let s = start_real(&claude, &api, "", |_| Vec::new());
    let mut ws = s.ws();

    // Allow: the command runs in the sandbox, inside the worktree.
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "RUN: echo inside > inside.txt", "clientMsgId": "a"}));
    let created = ws.wait_type("session_created");
    let id = created["sessionId"].as_str().unwrap().to_string();
    let wt = PathBuf::from(created["worktrees"]["primary"]["path"].as_str().unwrap());
    let req = ws.wait_type("permission_request");
    assert_eq!(req["toolName"], "Bash", "{req}");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "once"}));
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], false, "{result}");
    ws.wait_type("result");
    assert_eq!(
        std::fs::read_to_string(wt.join("inside.txt")).unwrap(),
        "inside\n"
    );

    // Allowed by the owner, stopped by the sandbox: a write outside the repo,
    // into a directory the agent's uid owns (control: that uid writes there
    // outside the sandbox; above, the same echo wrote the worktree).
    let outside_dir = open_tempdir();
    mitzo_testkit::git::chown_to_service_user(outside_dir.path());
    let control = outside_dir.path().join("control.txt");
    let mut c = Command::new("/bin/sh");
    c.args(["-c", &format!("echo out > '{}'", control.display())]);
    if is_root() {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = nobody_ids();
        c.uid(uid).gid(gid);
    }
    assert!(c.status().unwrap().success() && control.exists(), "control");
    let outside = outside_dir.path().join("outside.txt");
    ws.send(json!({"type": "send", "sessionId": id, "prompt": format!("RUN: echo out > {}", outside.display())}));
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "once"}));
    let result = ws.wait_type("tool_result");
    ws.wait_type("result");
    assert!(!outside.exists(), "Landlock stopped it: {result}");
    assert_eq!(result["isError"], true, "{result}");

    // Nor may it plant a git hook the owner's own git would run later.
    let hook = s.repo.join(".git/hooks/post-checkout");
    ws.send(json!({"type": "send", "sessionId": id, "prompt": format!("RUN: echo touch /tmp/pwned > {}", hook.display())}));
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "once"}));
    let result = ws.wait_type("tool_result");
    ws.wait_type("result");
    assert!(
        !hook.exists(),
        "the repo's .git is read-only to an isolated session: {result}"
    );

    // Deny.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "RUN: echo no > denied.txt"}));
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "deny"}));
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], true);
    ws.wait_type("result");
    assert!(!wt.join("denied.txt").exists());

    // The agent's session id was captured: a restart resumes it.
    let meta = s
        .server
        .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
        .json();
    assert!(
        meta["agentSessionId"]
            .as_str()
            .is_some_and(|x| !x.is_empty()),
        "{meta}"
    );
}

#[test]
fn real_claude_permission_timeout() {
    let Some(claude) = claude_or_skip("real_claude_permission_timeout") else {
        return;
    };
    let api = fake_api();
    let s = start_real(&claude, &api, "[permissions]\ntimeout_secs = 2", |_| {
        Vec::new()
    });
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "RUN: echo late > late.txt"}));
    let wt = PathBuf::from(
        ws.wait_type("session_created")["worktrees"]["primary"]["path"]
            .as_str()
            .unwrap(),
    );
    let req = ws.wait_type("permission_request");
    let timeout = ws.wait_type("permission_timeout");
    assert_eq!(timeout["permId"], req["permId"]);
    ws.wait_type("result");
    assert!(!wt.join("late.txt").exists());
}

#[test]
fn real_claude_ntfy_approval() {
    let Some(claude) = claude_or_skip("real_claude_ntfy_approval") else {
        return;
    };
    let api = fake_api();
    let (ntfy_port, published) = fake_ntfy();
    // One-tap actions: opted in, with a token protecting the topic.
    let secrets = open_tempdir();
    let token_file = secrets.path().join("ntfy-token");
    std::fs::write(&token_file, "tk_e2e\n").unwrap();
    let s = start_real(&claude, &api, "", |port| {
        vec![
            ("MITZOD_NTFY__ONE_TAP".into(), "true".into()),
            (
                "MITZOD_NTFY__TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            (
                "MITZOD_PUBLIC_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "MITZOD_NTFY__URL".into(),
                format!("http://127.0.0.1:{ntfy_port}"),
            ),
            ("MITZOD_NTFY__TOPIC".into(), "e2e".into()),
            ("MITZOD_NTFY__DELAY_SECS".into(), "0".into()),
        ]
    });
    let r = s.create(json!({"source": "e2e", "initialPrompt": "RUN: echo phone > phone.txt"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let wt = PathBuf::from(r.json()["worktrees"]["primary"]["path"].as_str().unwrap());
    let (_, body) = published
        .recv_timeout(Duration::from_secs(60))
        .expect("ntfy notified");
    let allow = ntfy_action(&body, "Allow once");
    let r = s.server.post(
        &allow.path,
        &[("X-Approval-Token", &allow.capability)],
        &allow.body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    s.wait_event(&id, |e| e["type"] == "result");
    assert_eq!(
        std::fs::read_to_string(wt.join("phone.txt")).unwrap(),
        "phone\n"
    );
}

#[test]
fn real_claude_streams_text_in_deltas() {
    let Some(claude) = claude_or_skip("real_claude_streams_text_in_deltas") else {
        return;
    };
    let api = fake_api();
    let s = start_real(&claude, &api, "", |_| Vec::new());
    let mut ws = s.ws();
    let said = "the quick brown fox jumps over the lazy dog";
    let id = ws.new_session(&format!("TEXT: {said}")).id;
    let mut streamed = String::new();
    let mut deltas = 0;
    let end = loop {
        let f = ws.next();
        match f["type"].as_str().unwrap_or("") {
            "block_delta" if f["deltaType"] == "text" => {
                assert_eq!(f["seq"], 0, "deltas are live only");
                streamed.push_str(f["text"].as_str().unwrap());
                deltas += 1;
            }
            "block_end" if f["blockType"] == "text" => break f,
            _ => {}
        }
    };
    assert!(deltas >= 3, "the text came in several deltas: {deltas}");
    assert_eq!(streamed, said);
    assert_eq!(end["text"], said);
    ws.wait_type("result");

    // A watcher that arrives mid-block gets the block so far, then the rest.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "SLOW: hello"}));
    let mut seen = 0;
    while seen < 3 {
        if ws.next()["type"] == "block_delta" {
            seen += 1;
        }
    }
    let mut late = s.ws();
    late.send(json!({"type": "watch", "sessionId": id}));
    let snap = late.wait_type("block_snapshot");
    let mut text = snap["text"].as_str().unwrap().to_string();
    assert!(!text.is_empty(), "{snap}");
    let end = loop {
        let f = late.next();
        match f["type"].as_str().unwrap_or("") {
            "block_delta" => text.push_str(f["text"].as_str().unwrap()),
            "block_end" => break f,
            _ => {}
        }
    };
    assert_eq!(end["text"].as_str().unwrap(), text);
    assert!(
        text.starts_with("hello and then a long, slow answer"),
        "{text}"
    );
    // Stored: the whole block, no deltas.
    let events = s.wait_event(&id, |e| {
        e["type"] == "result" && e["seq"].as_u64() > end["seq"].as_u64()
    });
    assert!(events.iter().all(|e| e["type"] != "block_delta"));
}

#[test]
fn real_claude_question_round_trip() {
    let Some(claude) = claude_or_skip("real_claude_question_round_trip") else {
        return;
    };
    let api = fake_api();
    let s = start_real(&claude, &api, "", |_| Vec::new());
    let mut ws = s.ws();
    let question = "Which colour should the button be?";
    let id = ws.new_session(&format!("ASK: {question}")).id;
    let q = ws.wait_type("question_request");
    assert_eq!(q["questions"][0]["question"], question, "{q}");
    assert_eq!(q["questions"][0]["options"][1]["label"], "Blue");
    assert_eq!(q["questions"][0]["multiSelect"], false);
    // A permission answer does not decide a question.
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": q["permId"], "decision": "allow"}));
    let err = ws.wait_type("error");
    assert!(err["error"].as_str().unwrap().contains("question"), "{err}");
    // Answers must name the questions asked.
    ws.send(json!({"type": "question_response", "sessionId": id, "permId": q["permId"], "answers": {"Something else?": "Red"}}));
    ws.wait_type("error");
    ws.send(json!({"type": "question_response", "sessionId": id, "permId": q["permId"], "answers": {question: "Blue"}}));
    let resolved = ws.wait_type("permission_resolved");
    assert_eq!(resolved["decision"], "answered");
    assert_eq!(resolved["answers"][question], "Blue");
    let result = ws.wait_type("tool_result");
    assert!(
        result["result"].as_str().unwrap_or("").contains("Blue"),
        "the agent got the answer: {result}"
    );
    assert_ne!(result["isError"], true, "{result}");
    ws.wait_type("result");
    // Answered twice: gone.
    ws.send(json!({"type": "question_response", "sessionId": id, "permId": q["permId"], "answers": {question: "Red"}}));
    let err = ws.wait_type("error");
    assert!(
        err["error"].as_str().unwrap().contains("already decided"),
        "{err}"
    );
    let audit = s.audit(&id);
    assert!(
        audit
            .iter()
            .any(|a| a["tool"] == "AskUserQuestion" && a["decision"] == "answered"),
        "{audit:?}"
    );
}

#[test]
fn real_claude_write_shows_a_diff_and_deny_says_why() {
    let Some(claude) = claude_or_skip("real_claude_write_shows_a_diff_and_deny_says_why") else {
        return;
    };
    let api = fake_api();
    let s = start_real(&claude, &api, "", |_| Vec::new());
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "WRITE: README.md"}));
    let created = ws.wait_type("session_created");
    let id = created["sessionId"].as_str().unwrap().to_string();
    let wt = PathBuf::from(created["worktrees"]["primary"]["path"].as_str().unwrap());
    let before = std::fs::read_to_string(wt.join("README.md")).unwrap();
    let req = ws.wait_type("permission_request");
    assert_eq!(req["title"], "Write README.md", "{req}");
    assert!(
        req["summary"]
            .as_str()
            .unwrap()
            .starts_with("overwrite README.md"),
        "{req}"
    );
    let diff = req["diff"].as_str().unwrap();
    assert!(
        diff.contains("+++ b/README.md") && diff.contains("+written by agent"),
        "{diff}"
    );
    let first = before.lines().next().unwrap();
    assert!(diff.contains(&format!("-{first}")), "{diff}");
    ws.send(
        json!({"type": "permission_response", "sessionId": id, "permId": req["permId"],
        "decision": "deny", "message": "keep the README as it is"}),
    );
    let resolved = ws.wait_type("permission_resolved");
    assert_eq!(resolved["message"], "keep the README as it is");
    let result = ws.wait_type("tool_result");
    assert!(
        result["result"]
            .as_str()
            .unwrap_or("")
            .contains("keep the README as it is"),
        "the agent was told why: {result}"
    );
    ws.wait_type("result");
    assert_eq!(
        std::fs::read_to_string(wt.join("README.md")).unwrap(),
        before
    );
    let audit = s.audit(&id);
    assert!(
        audit.iter().any(|a| a["inputSummary"]
            .as_str()
            .unwrap_or("")
            .starts_with("Write README.md: overwrite")),
        "{audit:?}"
    );
}

/// Control run: the CLI on its own (no mitzod, no hook) with a prompt; did
/// it ask (`can_use_tool`), and did the tool run? Asks are denied.
fn cli_alone(claude: &Path, api: &FakeApi, prompt: &str) -> (bool, bool) {
    let home = open_tempdir();
    let work = open_tempdir();
    cli_alone_in(claude, api, prompt, home.path(), work.path(), &[])
}

/// The same with a given `HOME`, working directory and extra arguments.
fn cli_alone_in(
    claude: &Path,
    api: &FakeApi,
    prompt: &str,
    home: &Path,
    work: &Path,
    extra: &[&str],
) -> (bool, bool) {
    use std::io::Write;
    let mut child = Command::new(claude)
        .args(extra)
        .args([
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--verbose",
            "--permission-prompt-tool",
            "stdio",
            "--permission-mode",
            "default",
        ])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env(
            "ANTHROPIC_BASE_URL",
            format!("http://127.0.0.1:{}", api.port),
        )
        .env("ANTHROPIC_API_KEY", "sk-test-offline")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .current_dir(work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let send = |stdin: &mut std::process::ChildStdin, v: serde_json::Value| {
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    };
    send(
        &mut stdin,
        json!({"type": "control_request", "request_id": "init", "request": {"subtype": "initialize", "hooks": null}}),
    );
    send(
        &mut stdin,
        json!({"type": "user", "session_id": "", "message": {"role": "user", "content": prompt}, "parent_tool_use_id": null}),
    );
    let (mut asked, mut ran) = (false, false);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line.unwrap()) else {
            continue;
        };
        match v["type"].as_str() {
            Some("control_request") if v["request"]["subtype"] == "can_use_tool" => {
                asked = true;
                send(
                    &mut stdin,
                    json!({"type": "control_response", "response": {"subtype": "success",
                    "request_id": v["request_id"], "response": {"behavior": "deny", "message": "control"}}}),
                );
            }
            Some("user") => {
                for b in v["message"]["content"].as_array().into_iter().flatten() {
                    if b["type"] == "tool_result" && b["is_error"] != true {
                        ran = true;
                    }
                }
            }
            Some("result") => break,
            _ => {}
        }
    }
    drop(stdin);
    let _ = child.wait();
    (asked, ran)
}

/// Claude Code's own settings and its built-in auto-allowed commands are
/// not a way around mitzod's broker: every call passes the `PreToolUse`
/// hook mitzod registers, and settings files the agent can write are not
/// loaded.
#[test]
fn real_claude_every_tool_call_reaches_the_broker() {
    let Some(claude) = claude_or_skip("real_claude_every_tool_call_reaches_the_broker") else {
        return;
    };
    let api = fake_api();
    // Control: on its own the CLI runs this read-only command unasked.
    assert_eq!(
        cli_alone(&claude, &api, "RUN: echo hello"),
        (false, true),
        "the CLI alone neither asks nor is stopped"
    );
    // Control: the planted settings below are real. Each copy on its own
    // (the project's in the working directory, the user's in HOME) makes
    // the CLI run a command it otherwise asks about; started the way
    // mitzod starts it (`--setting-sources=`), it asks again.
    let allow_bash =
        r#"{"permissions":{"allow":["Bash","Bash(*)"],"defaultMode":"bypassPermissions"}}"#;
    let plant = |dir: &Path, files: &[&str]| {
        std::fs::create_dir_all(dir.join(".claude")).unwrap();
        for f in files {
            std::fs::write(dir.join(".claude").join(f), allow_bash).unwrap();
        }
    };
    let run = "RUN: echo planted > planted.txt";
    let (home, work) = (open_tempdir(), open_tempdir());
    assert_eq!(
        cli_alone_in(&claude, &api, run, home.path(), work.path(), &[]),
        (true, false),
        "control: without settings the CLI asks"
    );
    let (home, work) = (open_tempdir(), open_tempdir());
    plant(work.path(), &["settings.json", "settings.local.json"]);
    assert_eq!(
        cli_alone_in(&claude, &api, run, home.path(), work.path(), &[]),
        (false, true),
        "control: the project settings auto-allow Bash"
    );
    let (home, work) = (open_tempdir(), open_tempdir());
    plant(home.path(), &["settings.json"]);
    assert_eq!(
        cli_alone_in(&claude, &api, run, home.path(), work.path(), &[]),
        (false, true),
        "control: the user settings auto-allow Bash"
    );
    let (home, work) = (open_tempdir(), open_tempdir());
    plant(work.path(), &["settings.json", "settings.local.json"]);
    plant(home.path(), &["settings.json"]);
    assert_eq!(
        cli_alone_in(
            &claude,
            &api,
            run,
            home.path(),
            work.path(),
            &["--setting-sources="]
        ),
        (true, false),
        "with --setting-sources= the planted settings are not loaded"
    );

    let s = start_real(&claude, &api, "", |_| Vec::new());
    let mut ws = s.ws();
    // Through mitzod the same command reaches the broker: in ask mode the
    // owner is asked (Bash is elevated).
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "RUN: echo hello", "mode": "ask"}));
    let created = ws.wait_type("session_created");
    let id = created["sessionId"].as_str().unwrap().to_string();
    let wt = PathBuf::from(created["worktrees"]["primary"]["path"].as_str().unwrap());
    let req = ws.wait_type("permission_request");
    assert_eq!(req["toolName"], "Bash");
    assert!(
        req["summary"].as_str().unwrap().contains("$ echo hello"),
        "{req}"
    );
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "deny"}));
    ws.wait_type("tool_result");
    ws.wait_type("result");

    // The same settings, planted where an agent could write them (the
    // worktree, the session's agent home): no effect.
    plant(&wt, &["settings.json", "settings.local.json"]);
    let home = s.server.state_dir.join("agent-homes").join(&id);
    assert!(home.is_dir(), "the session has its own agent home");
    plant(&home, &["settings.json"]);
    ws.send(json!({"type": "stop", "sessionId": id}));
    ws.wait_type("session_end");
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "RUN: echo planted > planted.txt"}));
    let req = ws.wait_type("permission_request");
    assert_eq!(req["toolName"], "Bash", "still asked: {req}");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "deny"}));
    ws.wait_type("tool_result");
    ws.wait_type("result");
    assert!(!wt.join("planted.txt").exists());

    // In auto mode the policy allows it, and the audit log says so.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "RUN: ls", "mode": "auto"}));
    let result = ws.wait_type("tool_result");
    assert_ne!(result["isError"], true, "{result}");
    ws.wait_type("result");
    let audit = s.audit(&id);
    let rows: Vec<(String, String, String)> = audit
        .iter()
        .map(|a| {
            (
                a["inputSummary"].as_str().unwrap_or("").to_string(),
                a["decision"].as_str().unwrap_or("").to_string(),
                a["decidedBy"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        rows.iter()
            .any(|(s, d, b)| s.contains("$ ls") && d == "allow" && b == "policy"),
        "the built-in read-only command is audited: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|(s, d, b)| s.contains("$ echo hello") && d == "deny" && b == "owner"),
        "{rows:?}"
    );
}

/// The real CLI in its own network namespace (`agent.network = "proxy"`):
/// it reaches the model through the forwarder and mitzod's proxy, by a
/// name the operator pinned to loopback on purpose, and its Bash `curl`
/// to a host not listed waits for the owner and is refused; both are in
/// the audit log.
#[test]
fn real_claude_reaches_the_model_through_the_proxy_and_nothing_unlisted() {
    let Some(claude) =
        claude_or_skip("real_claude_reaches_the_model_through_the_proxy_and_nothing_unlisted")
    else {
        return;
    };
    if let Err(why) = mitzo_sandbox::netns::probe() {
        if std::env::var("MITZO_REQUIRE_E2E").is_ok_and(|v| v == "1") {
            panic!("user and network namespaces are needed: {why}");
        }
        eprintln!("SKIP: {why}");
        return;
    }
    let api = fake_api();
    let api_port = api.port;
    let s = start_real(&claude, &api, "", move |_| {
        vec![
            ("MITZOD_AGENT__NETWORK".into(), "proxy".into()),
            (
                "ANTHROPIC_BASE_URL".into(),
                format!("http://model.test:{api_port}"),
            ),
            (
                "MITZOD_AGENT__ALLOWED_HOSTS".into(),
                format!(
                    "[{{ host = \"model.test\", port = {api_port}, address = \"127.0.0.1\" }}]"
                ),
            ),
        ]
    });
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "RUN: curl -s --max-time 30 http://unlisted.test:9/; echo curl-done"}));
    let id = ws.wait_type("session_created")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let req = ws.wait_type("permission_request");
    assert_eq!(req["toolName"], "Bash", "{req}");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "once"}));
    let net = ws.wait_type("network_request");
    assert_eq!(net["host"], "unlisted.test", "{net}");
    assert_eq!(net["port"], 9, "{net}");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": net["permId"], "decision": "deny"}));
    let result = ws.wait_type("tool_result");
    let text = result["result"].to_string();
    assert!(text.contains("curl-done"), "{result}");
    assert!(text.contains("not on the allow-list"), "{result}");
    ws.wait_type("result");

    let audit = s.audit(&id);
    let network: Vec<(String, String)> = audit
        .iter()
        .filter(|a| a["tool"] == "Network")
        .map(|a| {
            (
                a["inputSummary"].as_str().unwrap_or("").to_string(),
                a["decision"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        network.iter().any(|(s, d)| s
            .starts_with(&format!("model.test:{api_port} via 127.0.0.1:{api_port}"))
            && d == "allow"),
        "the model was reached through the proxy: {network:?}"
    );
    assert!(
        network
            .iter()
            .any(|(s, d)| s.starts_with("unlisted.test:9 refused") && d == "deny"),
        "{network:?}"
    );
}
