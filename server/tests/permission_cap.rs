//! The broker's bound on waiting permission requests: an agent that floods
//! `can_use_tool` gets at most 32 of them in front of the owner; the rest
//! are denied at once, and each denial is an audit row.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
mod sessions_support;

use common::*;
use serde_json::{json, Value};
use sessions_support::*;

#[test]
fn at_most_32_permission_requests_wait_at_once() {
    if !landlock_or_skip("at_most_32_permission_requests_wait_at_once") {
        return;
    }
    // The fake agent's script: 40 permission requests sent without waiting
    // for any answer, then a pause that keeps the turn open.
    let dir = open_tempdir();
    let mut steps: Vec<Value> = (1..=40)
        .map(|i| {
            json!({"emit": {"type": "control_request", "request_id": format!("flood-{i}"),
                "request": {"subtype": "can_use_tool", "tool_name": "Bash",
                    "input": {"command": format!("echo flood-{i}")},
                    "tool_use_id": format!("toolu_flood_{i}")}}})
        })
        .collect();
    steps.push(json!({"sleep": 30}));
    let script = dir.path().join("flood.json");
    std::fs::write(&script, json!({"turns": [steps]}).to_string()).unwrap();
    let s = start_with(
        "",
        vec![
            ("FAKE_AGENT_SCRIPT".into(), script.display().to_string()),
            (
                "MITZOD_AGENT__ENV_PASSTHROUGH".into(),
                r#"["FAKE_AGENT_SCRIPT"]"#.into(),
            ),
            (
                "MITZOD_AGENT__EXTRA_READ_PATHS".into(),
                format!("[\"{}\"]", dir.path().display()),
            ),
        ],
    );
    let r = s.create(json!({"source": "test", "initialPrompt": "flood", "mode": "ask"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    // Wait for the 40th request's fate: the audit rows are written before
    // the agent hears a decision.
    let mut rows = Vec::new();
    for _ in 0..1500 {
        rows = s.audit(&id);
        if rows
            .iter()
            .filter(|a| a["decision"] == "deny" && a["decidedBy"] == "policy")
            .count()
            >= 8
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let denied: Vec<&str> = rows
        .iter()
        .filter(|a| a["decision"] == "deny" && a["decidedBy"] == "policy")
        .map(|a| a["inputSummary"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        denied.len(),
        8,
        "the 8 over the bound are denied: {rows:#?}"
    );
    for i in 33..=40 {
        assert!(
            denied
                .iter()
                .any(|d| d.contains(&format!("echo flood-{i}"))),
            "flood-{i} denied: {denied:?}"
        );
    }
    let events = s.wait_event(&id, |e| e["type"] == "permission_request");
    let asked: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "permission_request")
        .map(|e| e["summary"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(asked.len(), 32, "32 wait for the owner: {asked:?}");
    assert!(asked.iter().all(|a| !a.contains("flood-33")), "{asked:?}");
    let r = s
        .server
        .request_delete(&format!("/api/sessions/{id}"), &s.internal_headers());
    assert!(r.status < 300, "{}", r.text());
}
