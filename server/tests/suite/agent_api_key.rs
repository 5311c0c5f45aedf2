//! The model credential in production: `agent.api_key_file`, or the systemd
//! credential `anthropic-api-key`, read before the privilege drop and given
//! to each agent as `ANTHROPIC_API_KEY` in its environment only, never logged.

use crate::common;
use crate::sessions_support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;
use serde_json::json;
use sessions_support::*;

const KEY: &str = "sk-ant-test-0123456789-never-in-a-log";

/// Runs one Bash tool call that writes what the agent sees as
/// ANTHROPIC_API_KEY into its worktree; returns that file's content.
fn key_seen_by_agent(s: &SessionServer) -> String {
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null,
        "prompt": "tool:Bash:printf '%s' \"${ANTHROPIC_API_KEY-unset}\" > seen-key", "clientMsgId": "k"}));
    let created = ws.wait_type("session_created");
    let id = created["sessionId"].as_str().unwrap().to_string();
    let wt = PathBuf::from(created["worktrees"]["primary"]["path"].as_str().unwrap());
    let req = ws.wait_type("permission_request");
    // The tool call the owner sees does not carry the key either.
    assert!(!req.to_string().contains(KEY));
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "once"}));
    ws.wait_type("result");
    std::fs::read_to_string(wt.join("seen-key")).unwrap()
}

fn key_file(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn api_key_file_reaches_the_agent_environment_only() {
    if !landlock_or_skip("api_key_file_reaches_the_agent_environment_only") {
        return;
    }
    // Control: no key configured, none in mitzod's environment → none seen.
    let s = start("");
    assert_eq!(key_seen_by_agent(&s), "unset");
    drop(s);

    let dir = open_tempdir();
    let path = key_file(dir.path(), "anthropic-key");
    let s = start_with(
        "",
        vec![(
            "MITZOD_AGENT__API_KEY_FILE".into(),
            path.display().to_string(),
        )],
    );
    assert_eq!(key_seen_by_agent(&s), KEY);
    assert!(!s.server.log_text().contains(KEY), "never logged");
}

#[test]
fn the_anthropic_api_key_credential_is_the_default() {
    if !landlock_or_skip("the_anthropic_api_key_credential_is_the_default") {
        return;
    }
    let creds = open_tempdir();
    key_file(creds.path(), "anthropic-api-key");
    let s = start_with(
        "",
        vec![(
            "CREDENTIALS_DIRECTORY".into(),
            creds.path().display().to_string(),
        )],
    );
    assert_eq!(key_seen_by_agent(&s), KEY);
    assert!(!s.server.log_text().contains(KEY), "never logged");
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = open_tempdir();
    let path = key_file(dir.path(), "anthropic-key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = TestServer::new(Options {
        env: vec![(
            "MITZOD_AGENT__API_KEY_FILE".into(),
            path.display().to_string(),
        )],
        ..Options::default()
    });
    let out = s.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.api_key_file") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(KEY));
}
