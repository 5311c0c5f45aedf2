//! Agent sessions with the fake agent (tests/fixtures/fake_agent.py), which
//! speaks Claude Code's stream-json protocol: REST, WebSocket, the
//! permission broker, crashes, reconnects, ntfy, restarts and idle exit.

use crate::common;
use crate::sessions_support;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sessions_support::*;

#[test]
fn rest_create_runs_headless_and_lists() {
    if !landlock_or_skip("rest_create_runs_headless_and_lists") {
        return;
    }
    let s = start("");
    let r = s
        .create(json!({"source": "test", "initialPrompt": "text:hello there", "summary": "greet"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let body = r.json();
    let id = body["sessionId"].as_str().unwrap().to_string();
    assert!(mitzod::worktree::validate_session_id(&id).is_ok(), "{id}");
    assert_eq!(body["headless"], true);
    assert_eq!(body["isolation"], true);
    let wt = body["worktrees"]["primary"]["path"].as_str().unwrap();
    assert_eq!(
        body["worktrees"]["primary"]["branch"],
        format!("session/{id}")
    );
    assert!(
        std::path::Path::new(wt).join("README.md").exists(),
        "worktree checked out"
    );
    let events = s.wait_event(&id, |e| e["type"] == "result");
    assert_eq!(text_of(&events), "hello there");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(events
        .iter()
        .all(|e| e["v"] == 2 && e["sessionId"] == id.as_str() && e["ts"].is_i64()));

    // Without a prompt: 200, not headless.
    let r = s.create(json!({"source": "test"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headless"], false);

    let list = s
        .server
        .get("/api/sessions?limit=1", &s.internal_headers())
        .json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(list["hasMore"], true);
    let list = s.server.get("/api/sessions", &s.internal_headers()).json();
    let first = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(first["numTurns"], 1);
    assert_eq!(first["summary"], "greet");
    for key in ["lastModified", "branch", "isActive", "isAttached"] {
        assert!(first.get(key).is_some(), "{key}");
    }
    let meta = s
        .server
        .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
        .json();
    assert_eq!(meta["id"], id.as_str());
    let after = s
        .server
        .get(
            &format!("/api/sessions/{id}/events?after=3"),
            &s.internal_headers(),
        )
        .json();
    assert_eq!(after["events"][0]["seq"], 4);

    // Bad input.
    assert_eq!(
        s.server
            .get("/api/sessions?limit=101", &s.internal_headers())
            .status,
        400
    );
    let r = s.create(json!({"source": "test", "mode": "yolo"}));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("ask, agent or auto"));
    assert_eq!(
        s.create(json!({"source": "test", "surprise": 1})).status,
        400
    );
    assert_eq!(
        s.server
            .get("/api/sessions/../etc/meta", &s.internal_headers())
            .status,
        404
    );
    assert_eq!(
        s.server
            .get(
                "/api/sessions/2026-01-01-zzzzzzzzzzzz/meta",
                &s.internal_headers()
            )
            .status,
        400
    );
    assert_eq!(
        s.server
            .get(
                "/api/sessions/2026-01-01-000000000000/meta",
                &s.internal_headers()
            )
            .status,
        404
    );
    // DELETE stops and hides, and removes the session's checkout.
    assert!(std::path::Path::new(wt).exists(), "checkout before DELETE");
    assert_eq!(
        s.server
            .request_delete(&format!("/api/sessions/{id}"), &s.internal_headers())
            .status,
        200
    );
    assert_eq!(
        s.server
            .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
            .status,
        404
    );
    assert!(
        !std::path::Path::new(wt).exists(),
        "DELETE removed the checkout {wt}"
    );
}

#[test]
fn ws_permission_allow_deny_and_always() {
    if !landlock_or_skip("ws_permission_allow_deny_and_always") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    ws.send(json!({"type": "hello", "protocolVersion": 2}));
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "tool:Bash:echo hi > inside.txt", "clientMsgId": "c1"}));
    let created = ws.wait_type("session_created");
    assert_eq!(created["clientMsgId"], "c1");
    let id = created["sessionId"].as_str().unwrap().to_string();
    let wt = std::path::PathBuf::from(created["worktrees"]["primary"]["path"].as_str().unwrap());
    let user = ws.wait_type("user_message");
    assert_eq!(user["clientMsgId"], "c1");
    let req = ws.wait_type("permission_request");
    assert_eq!(req["toolName"], "Bash");
    assert_eq!(req["tier"], "elevated");
    assert_eq!(req["toolInput"]["command"], "echo hi > inside.txt");
    assert!(req["expiresAt"].as_i64().unwrap() > 0);
    ws.wait_for("requires_action", |f| {
        f["type"] == "session_state_changed" && f["state"] == "requires_action"
    });
    // A decision naming the wrong session is refused; the permission stays.
    let perm = req["permId"].as_str().unwrap().to_string();
    ws.send(json!({"type": "permission_response", "sessionId": "2026-01-01-000000000000", "permId": perm, "decision": "once"}));
    let err = ws.wait_type("error");
    assert!(
        err["error"].as_str().unwrap().contains("another session"),
        "{err}"
    );
    ws.send(
        json!({"type": "permission_response", "sessionId": id, "permId": perm, "decision": "once"}),
    );
    let resolved = ws.wait_type("permission_resolved");
    assert_eq!(resolved["decision"], "allow");
    assert_eq!(resolved["by"], "owner");
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], false, "{result}");
    ws.wait_type("result");
    assert_eq!(
        std::fs::read_to_string(wt.join("inside.txt")).unwrap(),
        "hi\n",
        "ran in the worktree"
    );

    // Deny.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "tool:Bash:echo no > denied.txt", "clientMsgId": "c2"}));
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "deny"}));
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], true);
    ws.wait_type("result");
    assert!(!wt.join("denied.txt").exists());
    // The same permission again: already decided.
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "once"}));
    assert!(ws.wait_type("error")["error"]
        .as_str()
        .unwrap()
        .contains("already decided"));

    // Always: that exact tool is allowed for the rest of this session.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "tool:Bash:echo 1 > a.txt"}));
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "always"}));
    ws.wait_type("result");
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "tool:Bash:echo 2 > b.txt"}));
    ws.wait_type("result");
    assert!(
        !ws.seen.iter().any(|f| f["type"] == "permission_request"),
        "no second question"
    );
    assert!(wt.join("b.txt").exists());

    let audit = s.audit(&id);
    let decisions: Vec<(String, String)> = audit
        .iter()
        .map(|a| {
            (
                a["decision"].as_str().unwrap().to_string(),
                a["decidedBy"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        decisions.contains(&("allow".into(), "owner".into())),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("deny".into(), "owner".into())),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("allow_session".into(), "owner".into())),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("allow".into(), "policy".into())),
        "{decisions:?}"
    );
    assert!(audit.iter().all(|a| a["tool"] == "Bash"
        && a["inputSummary"]
            .as_str()
            .unwrap()
            .starts_with("Run a command: $ echo")));
    // Audit is owner-only.
    let r = s
        .server
        .get(&format!("/api/audit?sessionId={id}"), &s.internal_headers());
    assert_eq!(r.status, 403);
}

#[test]
fn modes_and_worktree_check() {
    if !landlock_or_skip("modes_and_worktree_check") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    // Auto mode: Bash runs without a question.
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "tool:Bash:echo auto > auto.txt", "mode": "auto"}));
    let id = ws.wait_type("session_created")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    ws.wait_type("result");
    assert!(!ws.seen.iter().any(|f| f["type"] == "permission_request"));
    // A write aimed outside the worktree is denied by the broker, naming it.
    let outside = s.server.dir.path().join("outside.txt");
    ws.send(json!({"type": "send", "sessionId": id, "prompt": format!("tool:Write:{}", outside.display()), "mode": "auto"}));
    let denied = ws.wait_for("policy deny", |f| {
        f["type"] == "permission_resolved" && f["by"] == "policy"
    });
    assert_eq!(denied["decision"], "deny");
    assert!(
        denied["message"].as_str().unwrap().contains("worktree"),
        "{denied}"
    );
    ws.wait_type("result");
    assert!(!outside.exists());
    // Ask mode: Write must be asked.
    ws.send(json!({"type": "set_mode", "sessionId": id, "mode": "ask"}));
    ws.wait_type("mode_changed");
    ws.send(
        json!({"type": "send", "sessionId": id, "prompt": "tool:Write:new.txt", "mode": "ask"}),
    );
    let req = ws.wait_type("permission_request");
    assert_eq!(req["tier"], "standard");
}

#[test]
fn repo_overrides_cannot_auto_allow_mutations_in_ask_mode() {
    if !landlock_or_skip("repo_overrides_cannot_auto_allow_mutations_in_ask_mode") {
        return;
    }
    let s = start("");
    std::fs::write(
        s.repo.join(".mitzo.json"),
        r#"{"toolTierOverrides": {"Bash": "safe"}}"#,
    )
    .unwrap();
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "tool:Bash:echo x > x.txt", "mode": "ask"}));
    let req = ws.wait_type("permission_request");
    assert_eq!(req["toolName"], "Bash", "still asked despite the override");
}

#[test]
fn permission_times_out_to_deny() {
    if !landlock_or_skip("permission_times_out_to_deny") {
        return;
    }
    let s = start("[permissions]\ntimeout_secs = 1\n");
    let mut ws = s.ws();
    let id = ws.new_session("tool:Bash:echo late > late.txt").id;
    let req = ws.wait_type("permission_request");
    let timeout = ws.wait_type("permission_timeout");
    assert_eq!(timeout["permId"], req["permId"]);
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], true);
    let audit = s.audit(&id);
    assert!(
        audit
            .iter()
            .any(|a| a["decidedBy"] == "timeout" && a["decision"] == "deny"),
        "{audit:?}"
    );
}

#[test]
fn crash_garbage_huge_and_unsupported_are_events_not_failures() {
    if !landlock_or_skip("crash_garbage_huge_and_unsupported_are_events_not_failures") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    let id = ws.new_session("garbage").id;
    let err = ws.wait_type("error");
    assert!(err["error"].as_str().unwrap().contains("not JSON"), "{err}");
    let events = s.wait_event(&id, |e| e["type"] == "result");
    assert!(
        text_of(&events).contains("after garbage"),
        "the stream goes on"
    );

    ws.send(json!({"type": "send", "sessionId": id, "prompt": "huge"}));
    let err = ws.wait_for("huge line error", |f| {
        f["type"] == "error" && f["error"].as_str().unwrap_or("").contains("16 MiB")
    });
    assert_eq!(err["sessionId"], id.as_str());
    ws.wait_type("result");

    ws.send(json!({"type": "send", "sessionId": id, "prompt": "unsupported:hook_callback"}));
    let events = s.wait_event(&id, |e| {
        e["type"] == "block_end" && e["text"].as_str().unwrap_or("").contains("no such hook")
    });
    let said = text_of(&events);
    assert!(
        said.contains("error"),
        "the agent got an error response, not silence: {said}"
    );

    ws.send(json!({"type": "send", "sessionId": id, "prompt": "crash"}));
    let err = ws.wait_for("crash error", |f| {
        f["type"] == "error" && f["error"].as_str().unwrap_or("").contains("status 3")
    });
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("fake agent crashing"),
        "stderr tail: {err}"
    );
    ws.wait_for("idle", |f| {
        f["type"] == "session_state_changed" && f["state"] == "idle"
    });
    // mitzod is fine, and the session resumes on the next prompt.
    assert_eq!(s.server.get("/healthz", &[]).status, 200);
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "text:back"}));
    ws.wait_for("back", |f| f["type"] == "block_end" && f["text"] == "back");

    // Malformed and unknown client frames: an error frame, the connection stays.
    let malformed =
        |f: &Value| f["type"] == "error" && f["error"].as_str().unwrap_or("").contains("malformed");
    ws.socket
        .send(tungstenite::Message::text("{not json"))
        .unwrap();
    ws.wait_for("malformed", malformed);
    ws.send(json!({"type": "teleport", "sessionId": id}));
    let err = ws.wait_for("unknown type", malformed);
    assert!(err["error"].as_str().unwrap().contains("teleport"), "{err}");
    ws.send(json!({"type": "watch", "sessionId": "../../etc"}));
    ws.wait_type("error");
    ws.send(json!({"type": "hello", "protocolVersion": 2}));
    ws.send(json!({"type": "watch", "sessionId": id}));
}

#[test]
fn session_token_is_scoped_and_dies_with_the_session() {
    if !landlock_or_skip("session_token_is_scoped_and_dies_with_the_session") {
        return;
    }
    let s = start("");
    let r = s.create(json!({"source": "test", "initialPrompt": "env"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let events = s.wait_event(&id, |e| e["type"] == "result");
    let env = text_of(&events);
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing from {env}"))
            .to_string()
    };
    assert_eq!(get("MITZO_SESSION_ID"), id);
    assert_eq!(
        get("MITZO_URL"),
        format!("http://127.0.0.1:{}", s.server.port)
    );
    let token = get("MITZO_SESSION_TOKEN");
    assert!(token.starts_with("mzs_"));
    assert!(
        !env.contains(&s.internal),
        "the internal token never reaches an agent"
    );
    let bearer = format!("Bearer {token}");
    // Owner and internal routes are out of reach for it.
    assert_eq!(
        s.server
            .get("/api/sessions", &[("Authorization", &bearer)])
            .status,
        403
    );
    assert_eq!(
        s.server
            .get("/api/auth/check", &[("Authorization", &bearer)])
            .status,
        403
    );
    // Its session ends: the token dies.
    assert_eq!(
        s.server
            .request_delete(&format!("/api/sessions/{id}"), &s.internal_headers())
            .status,
        200
    );
    assert_eq!(
        s.server
            .get("/api/sessions", &[("Authorization", &bearer)])
            .status,
        401
    );
}

#[test]
fn agent_runs_confined() {
    if !landlock_or_skip("agent_runs_confined") {
        return;
    }
    let s = start("");
    // A directory the agent's uid owns: only Landlock stands between the
    // agent and it (control: that uid writes it outside the sandbox).
    let outside_dir = s.server.dir.path().join("outside");
    std::fs::create_dir_all(&outside_dir).unwrap();
    mitzo_testkit::git::chown_to_service_user(&outside_dir);
    let control = outside_dir.join("control.txt");
    let out = as_agent_uid(&format!("echo x > '{}'", control.display()));
    assert!(out.status.success() && control.exists(), "control: {out:?}");
    let first_tool_result = |prompt: String| {
        let r = s.create(json!({"source": "test", "initialPrompt": prompt}));
        let id = r.json()["sessionId"].as_str().unwrap().to_string();
        let events = s.wait_event(&id, |e| e["type"] == "result");
        let result = events.iter().find(|e| e["type"] == "tool_result").cloned();
        (r.json(), result.unwrap())
    };
    // Control: the same write to a path the sandbox grants (its checkout).
    let (body, result) = first_tool_result("write:granted.txt".into());
    assert_eq!(result["isError"], false, "{result}");
    let wt = body["worktrees"]["primary"]["path"].as_str().unwrap();
    assert!(std::path::Path::new(wt).join("granted.txt").exists());
    let outside = outside_dir.join("escape.txt");
    let (_, result) = first_tool_result(format!("write:{}", outside.display()));
    assert_eq!(result["isError"], true, "{result}");
    assert!(
        !outside.exists(),
        "the sandbox stopped a write outside the repo"
    );
    let token = s.server.state_dir.join("internal-token");
    // Control: the agent's uid reads the token outside the sandbox.
    let out = as_agent_uid(&format!("cat '{}'", token.display()));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&s.internal),
        "control: {out:?}"
    );
    let r = s.create(json!({"source": "test", "initialPrompt": format!("tool:Read:{}", token.display()), "mode": "auto"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let events = s.wait_event(&id, |e| e["type"] == "result");
    let read: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .collect();
    assert!(
        !read[0]["result"]
            .as_str()
            .unwrap_or("")
            .contains(&s.internal),
        "state dir unreadable"
    );
}

/// `sh -c script` as the uid the agents run as (`nobody` when the tests
/// run as root), outside any sandbox.
fn as_agent_uid(script: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new("/bin/sh");
    c.args(["-c", script]);
    if is_root() {
        let (uid, gid) = nobody_ids();
        c.uid(uid).gid(gid);
    }
    c.output().unwrap()
}

#[test]
fn reconnect_replays_exactly_the_missed_events() {
    if !landlock_or_skip("reconnect_replays_exactly_the_missed_events") {
        return;
    }
    let s = start("[session]\nbuffer_events = 50\n");
    let mut ws = s.ws();
    let id = ws.new_session("blocks:100").id;
    // Read a little, then drop the connection mid-stream.
    let mut last = 0;
    while last < 20 {
        let f = ws.next();
        if f["sessionId"] == id.as_str() {
            last = f["seq"].as_u64().unwrap_or(last);
        }
    }
    drop(ws);
    let all = s.wait_event(&id, |e| e["type"] == "result");
    let final_seq = all.last().unwrap()["seq"].as_u64().unwrap();
    assert!(
        final_seq > last + 50,
        "more was missed than the ring holds: the database fills the gap"
    );

    let mut ws = s.ws();
    ws.send(json!({"type": "reconnect", "sessions": [{"sessionId": id, "lastSeq": last}]}));
    let mut got = Vec::new();
    let report = loop {
        let f = ws.next();
        if f["type"] == "reconnected" {
            break f;
        }
        // Live-only frames (session_updated) carry seq 0.
        let seq = f["seq"].as_u64().unwrap();
        if seq > 0 {
            got.push(seq);
        }
    };
    let want: Vec<u64> = (last + 1..=final_seq).collect();
    assert_eq!(got, want, "no gap, no duplicate");
    assert_eq!(report["sessions"][0]["replayed"], want.len());
    // Live events continue from there.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "text:more"}));
    let next = ws.wait_for("next", |f| {
        f["sessionId"] == id.as_str() && f["seq"].as_u64() > Some(0)
    });
    assert_eq!(next["seq"], final_seq + 1);
}

#[test]
fn twenty_sessions_three_watchers_lose_nothing() {
    if !landlock_or_skip("twenty_sessions_three_watchers_lose_nothing") {
        return;
    }
    let s = start("");
    let ids: Vec<String> = (0..20)
        .map(|_| {
            s.create(json!({"source": "test"})).json()["sessionId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut watchers: Vec<Ws> = (0..3).map(|_| s.ws()).collect();
    // Watch from seq 0: whatever the timing, each watcher gets everything.
    let wanted: Vec<_> = ids
        .iter()
        .map(|id| json!({"sessionId": id, "lastSeq": 0}))
        .collect();
    for w in watchers.iter_mut() {
        w.send(json!({"type": "reconnect", "sessions": wanted}));
        w.wait_type("reconnected");
    }
    let mut driver = s.ws();
    for id in &ids {
        driver.send(json!({"type": "send", "sessionId": id, "prompt": "stream:40"}));
    }
    let mut per_watcher = Vec::new();
    let mut streamed = Vec::new();
    for w in watchers.iter_mut() {
        let mut frames = Vec::new();
        let mut done = std::collections::BTreeSet::new();
        while done.len() < ids.len() {
            let f = w.next();
            if f["type"] == "result" {
                done.insert(f["sessionId"].as_str().unwrap().to_string());
            }
            frames.push(f);
        }
        streamed.push(streamed_text(&frames));
        // Up to each session's `result`: what follows it may still be in flight.
        let mut sessions = by_session(&frames);
        for events in sessions.values_mut() {
            if let Some(end) = events.iter().position(|e| e.1 == "result") {
                events.truncate(end + 1);
            }
        }
        per_watcher.push(sessions);
    }
    for id in &ids {
        let first = &per_watcher[0][id];
        let seqs: Vec<u64> = first.iter().map(|x| x.0).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{id}: {seqs:?}");
        let want: String = (0..40).map(|i| format!("{i} ")).collect();
        for text in &streamed {
            assert_eq!(text.get(id), Some(&want), "{id}: every delta, in order");
        }
        for other in &per_watcher[1..] {
            assert_eq!(
                &other[id], first,
                "every watcher saw the same events in the same order"
            );
        }
    }
}

/// A server with ntfy configured (delay 0); `extra`: more variables.
fn start_with_ntfy(ntfy_port: u16, extra: Vec<(String, String)>) -> SessionServer {
    start_env("", move |port| {
        let mut env = vec![
            (
                "MITZOD_PUBLIC_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "MITZOD_NTFY__URL".into(),
                format!("http://127.0.0.1:{ntfy_port}"),
            ),
            ("MITZOD_NTFY__TOPIC".into(), "mitzo-test".into()),
            ("MITZOD_NTFY__DELAY_SECS".into(), "0".into()),
        ];
        env.extend(extra.clone());
        env
    })
}

#[test]
fn ntfy_by_default_links_to_the_approval_and_carries_no_capability() {
    if !landlock_or_skip("ntfy_by_default_links_to_the_approval_and_carries_no_capability") {
        return;
    }
    let (ntfy_port, published) = fake_ntfy();
    let s = start_with_ntfy(ntfy_port, Vec::new());
    let r =
        s.create(json!({"source": "test", "initialPrompt": "tool:Bash:echo phone > phone.txt"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let (head, body) = published
        .recv_timeout(Duration::from_secs(20))
        .expect("ntfy got the notification");
    assert!(
        !head.contains(&s.internal),
        "no internal token goes to ntfy"
    );
    let text = body.to_string();
    assert!(
        !text.contains("X-Approval-Token") && !text.contains("/respond"),
        "{text}"
    );
    let actions = body["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{body}");
    assert_eq!(actions[0]["action"], "view");
    assert_eq!(
        actions[0]["url"],
        format!("http://127.0.0.1:{}/#/sessions/{id}", s.server.port)
    );
    // The capability that one-tap would carry decides nothing here.
    let events = s.wait_event(&id, |e| e["type"] == "permission_request");
    let perm = events
        .iter()
        .find(|e| e["type"] == "permission_request")
        .unwrap()["permId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.server.post(
        &format!("/api/permission/{perm}/respond"),
        &[("X-Approval-Token", &"0".repeat(64))],
        r#"{"decision":"allow"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("one-tap approvals are off"),
        "{}",
        r.text()
    );
}

#[test]
fn ntfy_one_tap_decides_once_with_its_capability() {
    if !landlock_or_skip("ntfy_one_tap_decides_once_with_its_capability") {
        return;
    }
    let (ntfy_port, published) = fake_ntfy();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("ntfy-token");
    std::fs::write(&token_file, "tk_test_token\n").unwrap();
    let s = start_with_ntfy(
        ntfy_port,
        vec![
            ("MITZOD_NTFY__ONE_TAP".into(), "true".into()),
            (
                "MITZOD_NTFY__TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
        ],
    );
    let r =
        s.create(json!({"source": "test", "initialPrompt": "tool:Bash:echo phone > phone.txt"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let wt = std::path::PathBuf::from(r.json()["worktrees"]["primary"]["path"].as_str().unwrap());
    let (head, body) = published
        .recv_timeout(Duration::from_secs(20))
        .expect("ntfy got the notification");
    assert!(
        !head.contains(&s.internal),
        "no internal token goes to ntfy"
    );
    assert!(
        head.contains("Bearer tk_test_token"),
        "the topic's token is used"
    );
    assert_eq!(body["topic"], "mitzo-test");
    let actions = body["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "view, allow, deny: {body}");
    let allow = ntfy_action(&body, "Allow once");
    assert!(
        !allow.url.contains('?'),
        "no token in the URL: {}",
        allow.url
    );
    let (path, cap) = (allow.path.clone(), allow.capability.as_str());
    let follow =
        |token: &str, body: &str| s.server.post(&path, &[("X-Approval-Token", token)], body);
    // A wrong capability: 403, and the permission is still open.
    assert_eq!(follow(&"0".repeat(64), &allow.body).status, 403);
    // Never for the whole session from a notification.
    assert_eq!(follow(cap, r#"{"decision":"allow_session"}"#).status, 400);
    assert_eq!(
        follow(cap, &allow.body).status,
        200,
        "follow the Allow action"
    );
    let events = s.wait_event(&id, |e| e["type"] == "result");
    assert!(events
        .iter()
        .any(|e| e["type"] == "permission_resolved" && e["by"] == "ntfy"));
    assert!(wt.join("phone.txt").exists());
    // Single use: 410. Unknown: 404.
    assert_eq!(follow(cap, &allow.body).status, 410);
    assert_eq!(
        s.server
            .post(
                "/api/permission/ffff/respond",
                &[("X-Approval-Token", cap)],
                r#"{"decision":"once"}"#
            )
            .status,
        404
    );
    assert!(s.audit(&id).iter().any(|a| a["decidedBy"] == "ntfy"));
}

#[test]
fn restart_marks_sessions_interrupted_and_resumes() {
    if !landlock_or_skip("restart_marks_sessions_interrupted_and_resumes") {
        return;
    }
    let mut s = start("");
    let r = s.create(json!({"source": "test", "initialPrompt": "text:first"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    s.wait_event(&id, |e| e["type"] == "result");
    let events = |s: &SessionServer| {
        s.server
            .get(&format!("/api/sessions/{id}/events"), &s.internal_headers())
            .json()["events"]
            .as_array()
            .unwrap()
            .clone()
    };
    let before = events(&s);
    s.server.restart();
    let meta = s
        .server
        .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
        .json();
    assert_eq!(meta["state"], "interrupted");
    let after = events(&s);
    assert_eq!(after[..before.len()], before[..], "history intact");
    let before = after.len();
    s.jwt = s.server.login();
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "history"}));
    let events = s.wait_event(&id, |e| {
        e["type"] == "block_end" && e["text"].as_str().unwrap_or("").contains("history")
    });
    let said = text_of(&events);
    assert!(said.contains("text:first"), "resumed with --resume: {said}");
    let first_new = ws.wait_for("continues", |f| {
        f["sessionId"] == id.as_str() && f["seq"].as_u64() > Some(0)
    });
    assert!(
        first_new["seq"].as_u64().unwrap() as usize > before,
        "seq continues after a restart"
    );
}

#[test]
fn idle_exit_stops_cleanly_when_nothing_happens() {
    let mut s = TestServer::start_with(Options {
        extra_toml: "idle_exit = \"2s\"\n".into(),
        ..Options::default()
    });
    let mut child = s.child.take().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("exits by itself");
    assert!(status.success(), "{status}");
    assert!(s.log_text().contains("idle"), "{}", s.log_text());
}

#[test]
fn ws_needs_the_owner() {
    let s = TestServer::start_default();
    let internal = s.internal_token();
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let r = s.get("/ws/chat", &upgrade);
    assert_eq!(r.status, 401);
    let mut h = upgrade.to_vec();
    h.push(("X-Internal-Token", &internal));
    assert_eq!(s.get("/ws/chat", &h).status, 403);
    let jwt = s.login();
    let cookie = format!("cc_auth={jwt}");
    let mut h = upgrade.to_vec();
    h.push(("Cookie", &cookie));
    assert_eq!(s.get("/ws/chat", &h).status, 403, "cookie without Origin");
    h.push(("Origin", "https://evil.example"));
    assert_eq!(s.get("/ws/chat", &h).status, 403);
}

#[test]
fn session_tokens_reach_only_their_own_tasks() {
    if !landlock_or_skip("session_tokens_reach_only_their_own_tasks") {
        return;
    }
    let s = start("");
    let (a_id, a) = s.session_with_token();
    let (b_id, b) = s.session_with_token();
    let a_auth = format!("Bearer {a}");
    let b_auth = format!("Bearer {b}");
    let r = s.server.post(
        "/api/internal/task-tools/set",
        &[("Authorization", &a_auth)],
        r#"{"tasks": [{"title": "a's task"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // B cannot see or move A's tasks, even naming A's session.
    let status = s.server.get(
        "/api/internal/task-tools/status",
        &[("Authorization", &b_auth), ("X-Client-ID", &a_id)],
    );
    assert_eq!(status.status, 200, "{}", status.text());
    assert!(!status.text().contains("a's task"), "{}", status.text());
    let r = s.server.post(
        "/api/internal/task-tools/complete",
        &[("Authorization", &b_auth), ("X-Client-ID", &a_id)],
        r#"{"summary": "not mine"}"#,
    );
    assert_eq!(
        r.status,
        409,
        "nothing open in B's own session: {}",
        r.text()
    );
    // The task board itself is the internal API: no session token.
    assert_eq!(
        s.server
            .get("/api/tasks", &[("Authorization", &b_auth)])
            .status,
        403
    );
    // A sees its own.
    let status = s.server.get(
        "/api/internal/task-tools/status",
        &[("Authorization", &a_auth)],
    );
    assert!(status.text().contains("a's task"), "{}", status.text());
    let tasks = s.server.get("/api/tasks", &s.internal_headers()).json();
    let task = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["title"] == "a's task")
        .unwrap()
        .clone();
    assert_eq!(task["sessionId"], a_id.as_str());
    assert_ne!(task["sessionId"], b_id.as_str());
}

#[test]
fn task_changes_reach_websocket_clients() {
    let s = start("");
    let mut ws = s.ws();
    let r = s.server.post(
        "/api/tasks",
        &s.internal_headers(),
        r#"{"title": "watch me"}"#,
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    let id = r.json()["id"]
        .as_str()
        .or(r.json()["task"]["id"].as_str())
        .unwrap()
        .to_string();
    let updated = ws.wait_type("task_updated");
    assert_eq!(updated["task"]["title"], "watch me");
    assert_eq!(
        s.server
            .request_delete(&format!("/api/tasks/{id}"), &s.internal_headers())
            .status,
        200
    );
    let deleted = ws.wait_type("task_deleted");
    assert_eq!(deleted["id"], id.as_str());
}

#[test]
fn one_connection_drives_many_busy_sessions() {
    // Handling a client frame may wait for room in the connection's outbox;
    // that must never wait on the loop that handles it.
    if !landlock_or_skip("one_connection_drives_many_busy_sessions") {
        return;
    }
    let s = start("[session]\nisolation = false\n");
    let mut ws = s.ws();
    let n = 30;
    for _ in 0..n {
        ws.send(json!({"type": "send", "sessionId": null, "prompt": "stream:300", "mode": "auto"}));
    }
    let mut done = std::collections::BTreeSet::new();
    let mut frames = Vec::new();
    while done.len() < n {
        let f = ws.next();
        if f["type"] == "result" {
            done.insert(f["sessionId"].as_str().unwrap().to_string());
        }
        frames.push(f);
    }
    for (id, seqs) in by_session(&frames) {
        let seqs: Vec<u64> = seqs.iter().map(|x| x.0).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{id}: {seqs:?}");
    }
}

#[test]
fn quiet_sessions_leave_memory_and_come_back_intact() {
    if !landlock_or_skip("quiet_sessions_leave_memory_and_come_back_intact") {
        return;
    }
    let s = start("[session]\ndetach_ttl = \"1s\"\n");
    let r = s.create(json!({"source": "test", "initialPrompt": "text:before"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let events = s.wait_event(&id, |e| e["type"] == "result");
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    // No client: the agent is stopped after the TTL, the session dropped
    // from memory a few seconds later.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let active = s
            .server
            .get("/api/sessions/active", &s.internal_headers())
            .json();
        if active["loaded"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never evicted: {active}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "history"}));
    let first = ws.wait_for("first new event", |f| {
        f["sessionId"] == id.as_str() && f["seq"].as_u64().unwrap_or(0) > 0
    });
    assert!(
        first["seq"].as_u64().unwrap() > last,
        "seq continues after a reload"
    );
    let events = s.wait_event(&id, |e| {
        e["type"] == "block_end" && e["text"].as_str().unwrap_or("").contains("text:before")
    });
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn logout_ends_an_open_chat() {
    let s = start("");
    let mut ws = s.ws();
    let origin = format!("http://127.0.0.1:{}", s.server.port);
    let r = s.server.post(
        "/api/auth/logout",
        &[
            ("Authorization", &format!("Bearer {}", s.jwt)),
            ("Origin", &origin),
        ],
        "{}",
    );
    assert_eq!(r.status, 200);
    ws.send(json!({"type": "hello", "protocolVersion": 2}));
    let err = ws.wait_type("error");
    assert!(
        err["error"].as_str().unwrap().contains("logged out"),
        "{err}"
    );
    // And the connection is closed.
    loop {
        match ws.socket.read() {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        }
    }
}

#[test]
fn agents_cannot_approve_their_own_work() {
    if !landlock_or_skip("agents_cannot_approve_their_own_work") {
        return;
    }
    let s = start("");
    let (_, token) = s.session_with_token();
    let bearer = format!("Bearer {token}");
    for kind in ["human_approval", "gh_review"] {
        let body = json!({"type": kind, "status": "approved", "repo": "o/r", "pr": 1}).to_string();
        let r = s
            .server
            .post("/api/signals/resolve", &[("Authorization", &bearer)], &body);
        assert_eq!(r.status, 403, "{kind}: {}", r.text());
    }
    let body = json!({"type": "gh_ci", "status": "success", "repo": "o/r", "pr": 1}).to_string();
    assert_eq!(
        s.server
            .post("/api/signals/resolve", &[("Authorization", &bearer)], &body)
            .status,
        200
    );
}

/// The positive control of the override tests above and below: a
/// `.mitzo.json` override is really read, and narrows a tier (Write,
/// auto-allowed in agent mode, then needs the owner). Without this, those
/// tests would pass with the file never loaded.
#[test]
fn a_repo_override_narrows_a_tier_and_without_it_the_call_runs_unasked() {
    if !landlock_or_skip("a_repo_override_narrows_a_tier_and_without_it_the_call_runs_unasked") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    let asked_or_ran = |id: String| {
        move |f: &Value| {
            f["sessionId"] == id.as_str()
                && (f["type"] == "permission_request" || f["type"] == "tool_result")
        }
    };

    // Control: no override; agent mode runs Write without asking.
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "tool:Write:control.txt", "mode": "agent"}));
    let control = ws.wait_type("session_created")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let first = ws.wait_for("Write's outcome", asked_or_ran(control));
    assert_eq!(
        first["type"], "tool_result",
        "Write is auto-allowed in agent mode: {first}"
    );

    // The override makes Write elevated: now the owner is asked.
    std::fs::write(
        s.repo.join(".mitzo.json"),
        r#"{"toolTierOverrides": {"Write": "elevated"}}"#,
    )
    .unwrap();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "tool:Write:narrowed.txt", "mode": "agent"}));
    let narrowed = ws.wait_type("session_created")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let second = ws.wait_for("Write's outcome", asked_or_ran(narrowed));
    assert_eq!(
        second["type"], "permission_request",
        "the override was not applied: {second}"
    );
    assert_eq!(second["toolName"], "Write");
    assert_eq!(second["tier"], "elevated");
}

#[test]
fn repo_overrides_never_widen_agent_mode() {
    if !landlock_or_skip("repo_overrides_never_widen_agent_mode") {
        return;
    }
    let s = start("");
    // An agent could write this file; it must not buy itself Bash.
    std::fs::write(
        s.repo.join(".mitzo.json"),
        r#"{"toolTierOverrides": {"Bash": "standard"}}"#,
    )
    .unwrap();
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "tool:Bash:echo x > x.txt", "mode": "agent"}));
    let req = ws.wait_type("permission_request");
    assert_eq!(req["tier"], "elevated");
}

#[test]
fn a_tool_cannot_write_into_the_agents_protocol_stream() {
    // The agent's stdin/stdout are sockets: /proc/<agent>/fd/N cannot open
    // them; and pidfd_getfd, which could take them, is refused by seccomp.
    if !landlock_or_skip("a_tool_cannot_write_into_the_agents_protocol_stream") {
        return;
    }
    let inject = r#"python3 -c '
import ctypes, json, os, sys
pid = int(sys.argv[1])
line = json.dumps({"type": "result", "injected": True}, separators=(",", ":")).encode() + b"\n"
ok = []
try:
    fd = os.open("/proc/%d/fd/1" % pid, os.O_WRONLY)
    os.write(fd, line)
    ok.append("proc")
except OSError as e:
    print("proc:", e, file=sys.stderr)
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(438, os.pidfd_open(pid), 1, 0)
if fd >= 0:
    os.write(fd, line)
    ok.append("pidfd_getfd")
else:
    print("pidfd_getfd:", os.strerror(ctypes.get_errno()), file=sys.stderr)
print("wrote via", ok)
sys.exit(0 if ok else 1)
' $PPID"#;
    // Control, outside any sandbox (so without seccomp): an agent whose
    // stdout is a socket, as the real one's is, runs the same command as a
    // tool; the line arrives on that socket through pidfd_getfd.
    {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        // The fake agent's way of running a Bash tool.
        let agent = "import os, subprocess; subprocess.run(['bash', '-c', os.environ['TOOL']], \
                     capture_output=True, stdin=subprocess.DEVNULL)";
        let mut c = std::process::Command::new("python3");
        c.args(["-c", agent])
            .env("TOOL", inject)
            .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                theirs,
            )));
        if is_root() {
            let (uid, gid) = nobody_ids();
            c.uid(uid).gid(gid);
        }
        let status = c.status().unwrap();
        drop(c);
        assert!(status.success());
        let mut got = String::new();
        ours.read_to_string(&mut got).unwrap();
        assert!(
            got.contains(r#"{"type":"result","injected":true}"#),
            "control: the injected line did not arrive: {got:?}"
        );
    }
    let s = start("");
    let r = s.create(json!({
        "source": "test",
        "mode": "auto",
        "initialPrompt": format!("tool:Bash:{inject}"),
    }));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let events = s.wait_event(&id, |e| e["type"] == "tool_result");
    let result = events.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert_eq!(result["isError"], true, "{result}");
    assert!(
        result["result"]
            .as_str()
            .unwrap_or("")
            .contains("pidfd_getfd: Operation not permitted"),
        "{result}"
    );
    let events = s.wait_event(&id, |e| e["type"] == "result");
    assert_eq!(
        events.iter().filter(|e| e["type"] == "result").count(),
        1,
        "nothing injected: {events:#?}"
    );
    assert!(!serde_json::to_string(&events)
        .unwrap()
        .contains("injected\":true"));
}

#[test]
fn big_agent_output_is_clipped_in_events() {
    if !landlock_or_skip("big_agent_output_is_clipped_in_events") {
        return;
    }
    let s = start("");
    let r = s.create(json!({"source": "test", "initialPrompt": "huge:2"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let events = s.wait_event(&id, |e| e["type"] == "result");
    let text = text_of(&events);
    assert!(text.len() < 300 * 1024, "{} bytes kept", text.len());
    assert!(text.contains("more bytes not shown"), "marked as clipped");
}

#[test]
fn leftover_session_tmp_dirs_are_removed_at_start() {
    let mut s = start("");
    let leftover = s.server.state_dir.join("tmp/2026-01-01-000000000000");
    s.server.stop();
    std::fs::create_dir_all(leftover.join("sub")).unwrap();
    std::fs::write(leftover.join("sub/file"), "x").unwrap();
    if is_root() {
        // As mitzod itself would have made them.
        let tmp = s.server.state_dir.join("tmp");
        assert!(std::process::Command::new("chown")
            .args(["-R", "nobody:"])
            .arg(&tmp)
            .status()
            .unwrap()
            .success());
    }
    s.server.start();
    assert!(
        !leftover.exists(),
        "a crash's private tmp is cleaned at start-up"
    );
}

#[test]
fn an_agent_that_cannot_start_says_why() {
    let s = start_with(
        "",
        vec![("MITZOD_AGENT__COMMAND".into(), "/nonexistent/claude".into())],
    );
    let r = s.create(json!({"source": "test", "initialPrompt": "hi"}));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.error().contains("/nonexistent/claude"), "{}", r.error());
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "hi"}));
    let err = ws.wait_type("error");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("cannot start the agent"),
        "{err}"
    );
}
