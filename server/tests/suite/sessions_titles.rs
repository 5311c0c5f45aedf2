//! Titles, repos and the session list: what the web app's list shows.

use crate::common;
use crate::sessions_support;

use common::*;
use serde_json::{json, Value};
use sessions_support::*;

fn patch(s: &SessionServer, id: &str, body: &str) -> Response {
    let auth = format!("Bearer {}", s.jwt);
    request(
        s.server.addr(),
        "PATCH",
        &format!("/api/sessions/{id}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

fn list(s: &SessionServer) -> Vec<Value> {
    let r = s.server.get("/api/sessions", &s.internal_headers());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sessions"].as_array().cloned().unwrap_or_default()
}

fn item(s: &SessionServer, id: &str) -> Value {
    list(s)
        .into_iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed"))
}

#[test]
fn titles_come_from_the_first_prompt_and_the_owner_renames() {
    if !landlock_or_skip("titles_come_from_the_first_prompt_and_the_owner_renames") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    // Someone else's connection, watching nothing: it hears of changes too.
    let mut other = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "\n  Fix the flaky test  \nwith details", "mode": "ask"}));
    let created = ws.wait_type("session_created");
    assert_eq!(created["title"], "Fix the flaky test");
    assert_eq!(created["repo"], "repo");
    let id = created["sessionId"].as_str().unwrap().to_string();
    ws.wait_type("result");
    let it = item(&s, &id);
    assert_eq!(it["title"], "Fix the flaky test");
    assert_eq!(it["repo"], "repo");
    assert_eq!(it["state"], "idle");
    assert_eq!(it["mode"], "ask");
    assert_eq!(it["pendingApprovals"], 0);
    assert!(it["lastActivity"].as_i64().unwrap() > 0);

    // A second prompt keeps the title.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "text:second"}));
    ws.wait_for("second result", |f| {
        f["type"] == "result" && f["seq"].as_u64() > Some(0) && f["numTurns"] == 2
    });
    assert_eq!(item(&s, &id)["title"], "Fix the flaky test");

    // PATCH renames: the row, a persisted title_changed, session_updated for all.
    let r = patch(&s, &id, r#"{"title": "  Flaky test, fixed  "}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "Flaky test, fixed");
    let changed = ws.wait_type("title_changed");
    assert_eq!(changed["title"], "Flaky test, fixed");
    assert!(changed["seq"].as_u64().unwrap() > 0);
    other.wait_for("update on another connection", |f| {
        f["type"] == "session_updated" && f["session"]["title"] == "Flaky test, fixed"
    });
    assert_eq!(item(&s, &id)["title"], "Flaky test, fixed");
    let meta = s
        .server
        .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
        .json();
    assert_eq!(meta["title"], "Flaky test, fixed");

    // The rename frame does the same.
    ws.send(json!({"type": "rename", "sessionId": id, "title": "By frame"}));
    other.wait_for("renamed by frame", |f| {
        f["type"] == "session_updated" && f["session"]["title"] == "By frame"
    });

    // Bad titles change nothing.
    for body in [
        r#"{"title": "   "}"#,
        r#"{"title": "a\u0007b"}"#,
        r#"{"title": "x", "extra": 1}"#,
    ] {
        assert_eq!(patch(&s, &id, body).status, 400, "{body}");
    }
    let long = "x".repeat(121);
    assert_eq!(
        patch(&s, &id, &json!({"title": long}).to_string()).status,
        400
    );
    ws.send(json!({"type": "rename", "sessionId": id, "title": ""}));
    let err = ws.wait_for("rename error", |f| f["type"] == "error");
    assert!(err["error"].as_str().unwrap().contains("title"), "{err}");
    assert_eq!(item(&s, &id)["title"], "By frame");
    // Renaming needs the owner, not the internal token.
    let r = request(
        s.server.addr(),
        "PATCH",
        &format!("/api/sessions/{id}"),
        &[
            ("X-Internal-Token", &s.internal),
            ("Content-Type", "application/json"),
        ],
        br#"{"title": "internal"}"#,
    );
    assert!(r.status == 401 || r.status == 403, "{}", r.status);
}

#[test]
fn the_list_shows_which_sessions_wait_for_the_owner() {
    if !landlock_or_skip("the_list_shows_which_sessions_wait_for_the_owner") {
        return;
    }
    let s = start("");
    let r = s.create(json!({"source": "test", "initialPrompt": "tool:Bash:echo x > x.txt"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    assert_eq!(r.json()["title"], "tool:Bash:echo x > x.txt");
    s.wait_event(&id, |e| e["type"] == "permission_request");
    let it = item(&s, &id);
    assert_eq!(it["pendingApprovals"], 1, "{it}");
    assert_eq!(it["state"], "requires_action");
    assert_eq!(it["isActive"], true);
}

/// A server whose config names two repos and no `repo_path`.
fn start_two_repos() -> (SessionServer, std::path::PathBuf, std::path::PathBuf) {
    let server = TestServer::new(Options::default());
    let alpha_dir = server.dir.path().join("a");
    let beta_dir = server.dir.path().join("b");
    std::fs::create_dir_all(&alpha_dir).unwrap();
    std::fs::create_dir_all(&beta_dir).unwrap();
    let alpha = make_repo(&alpha_dir);
    let beta = make_repo(&beta_dir);
    let agent = install_fake_agent(server.dir.path());
    let text = std::fs::read_to_string(&server.config).unwrap();
    let text = format!(
        "{text}\n[repos]\nalpha = \"{}\"\nbeta = \"{}\"\n[agent]\ncommand = \"{}\"\n",
        alpha.display(),
        beta.display(),
        agent.display()
    );
    (serve(server, alpha.clone(), &text), alpha, beta)
}

#[test]
fn sessions_choose_among_repos() {
    if !landlock_or_skip("sessions_choose_among_repos") {
        return;
    }
    let (s, alpha, beta) = start_two_repos();
    let repos = s.server.get("/api/repos", &s.internal_headers()).json();
    let names: Vec<(&str, bool)> = repos
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["default"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, vec![("alpha", false), ("beta", false)]);

    // Several repos and no choice: 400 naming the choices.
    let r = s.create(json!({"source": "test"}));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("alpha, beta"), "{}", r.text());
    let r = s.create(json!({"source": "test", "repo": "gamma"}));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("alpha, beta"), "{}", r.text());
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "pwd"}));
    let err = ws.wait_type("error");
    assert!(
        err["error"].as_str().unwrap().contains("alpha, beta"),
        "{err}"
    );

    // Chosen by name, over REST and over the socket.
    let r = s.create(json!({"source": "test", "repo": "beta", "initialPrompt": "pwd"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["repo"], "beta");
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let meta = s
        .server
        .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
        .json();
    assert_eq!(meta["repo"], beta.display().to_string(), "{meta}");
    assert_eq!(meta["repoName"], "beta");
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "pwd", "repo": "alpha"}));
    let created = ws.wait_type("session_created");
    assert_eq!(created["repo"], "alpha");
    let alpha_id = created["sessionId"].as_str().unwrap();
    let meta = s
        .server
        .get(
            &format!("/api/sessions/{alpha_id}/meta"),
            &s.internal_headers(),
        )
        .json();
    assert_eq!(meta["repo"], alpha.display().to_string(), "{meta}");
    let listed: Vec<Value> = list(&s);
    assert!(listed.iter().any(|x| x["repo"] == "beta"));
    assert!(listed.iter().any(|x| x["repo"] == "alpha"));
    // A running session cannot move.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "pwd", "repo": "alpha"}));
    let err = ws.wait_for("repo on an existing session", |f| f["type"] == "error");
    assert!(err["error"].as_str().unwrap().contains("repo"), "{err}");
}

#[test]
fn a_question_times_out_and_ntfy_only_says_it_waits() {
    if !landlock_or_skip("a_question_times_out_and_ntfy_only_says_it_waits") {
        return;
    }
    let (ntfy_port, published) = fake_ntfy();
    let s = start_env("[permissions]\ntimeout_secs = 2\n", |port| {
        vec![
            (
                "MITZOD_PUBLIC_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "MITZOD_NTFY__URL".into(),
                format!("http://127.0.0.1:{ntfy_port}"),
            ),
            ("MITZOD_NTFY__TOPIC".into(), "q".into()),
            ("MITZOD_NTFY__DELAY_SECS".into(), "0".into()),
        ]
    });
    let questions = json!({"questions": [{"question": "Which one?", "header": "Pick",
        "options": [{"label": "A", "description": "first"}, {"label": "B", "description": "second"}],
        "multiSelect": false}]});
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": format!("tool:AskUserQuestion:{questions}")}));
    let id = ws.wait_type("session_created")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let q = ws.wait_type("question_request");
    assert_eq!(q["questions"][0]["options"][1]["label"], "B", "{q}");
    let (_, body) = published
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("ntfy notified");
    assert_eq!(body["title"], "A question is waiting");
    assert!(body["message"].as_str().unwrap().contains("Which one?"));
    assert_eq!(body["actions"].as_array().unwrap().len(), 1, "{body}");
    let timeout = ws.wait_type("permission_timeout");
    assert_eq!(timeout["permId"], q["permId"]);
    let resolved = ws.wait_type("permission_resolved");
    assert_eq!(
        (resolved["decision"].as_str(), resolved["by"].as_str()),
        (Some("deny"), Some("timeout"))
    );
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], true, "{result}");
    ws.wait_type("result");
    // Late answers change nothing.
    ws.send(json!({"type": "question_response", "sessionId": id, "permId": q["permId"], "answers": {"Which one?": "A"}}));
    let err = ws.wait_for("late answer", |f| f["type"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("already decided"),
        "{err}"
    );
    assert!(s
        .audit(&id)
        .iter()
        .any(|a| a["tool"] == "AskUserQuestion" && a["decidedBy"] == "timeout"));
}

/// Every persisted event of a session, once the writer has stored them.
fn history(s: &SessionServer, id: &str) -> Vec<Value> {
    let r = s.server.get(
        &format!("/api/sessions/{id}/events?before=999999999&limit=5000"),
        &s.internal_headers(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"].as_array().cloned().unwrap_or_default()
}

fn resolutions(s: &SessionServer, id: &str, perm: &Value) -> Vec<Value> {
    history(s, id)
        .into_iter()
        .filter(|e| e["type"] == "permission_resolved" && e["permId"] == *perm)
        .collect()
}

#[test]
fn answers_to_a_withdrawn_permission_change_nothing() {
    if !landlock_or_skip("answers_to_a_withdrawn_permission_change_nothing") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    let created = ws.new_session("tool:Bash:echo late > interrupted.txt");
    let (id, wt) = (created.id, created.worktree);

    // Withdrawn by an interrupt: the agent cancels its request.
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "interrupt", "sessionId": id}));
    let cancelled = ws.wait_type("permission_resolved");
    assert_eq!(cancelled["permId"], req["permId"]);
    assert_eq!(
        (cancelled["decision"].as_str(), cancelled["by"].as_str()),
        (Some("cancelled"), Some("agent"))
    );
    ws.wait_type("result");
    for decision in ["allow", "allow_session", "deny"] {
        ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": decision}));
        let err = ws.wait_for("answer to a withdrawn permission", |f| f["type"] == "error");
        assert!(
            err["error"].as_str().unwrap().contains("already decided"),
            "{err}"
        );
        assert_eq!(err["sessionId"], id, "{err}");
    }
    assert!(!wt.join("interrupted.txt").exists(), "the tool never ran");
    assert_eq!(resolutions(&s, &id, &req["permId"]).len(), 1);
    let audit: Vec<String> = s
        .audit(&id)
        .iter()
        .map(|a| format!("{} by {}", a["decision"], a["decidedBy"]))
        .collect();
    assert_eq!(audit, vec![r#""cancelled" by "agent""#], "{audit:?}");
    assert_eq!(item(&s, &id)["state"], "idle");

    // Withdrawn by a stop: the session ends with the request pending.
    ws.send(
        json!({"type": "send", "sessionId": id, "prompt": "tool:Bash:echo late > stopped.txt"}),
    );
    let req = ws.wait_type("permission_request");
    ws.send(json!({"type": "stop", "sessionId": id}));
    let withdrawn = ws.wait_for("withdrawn", |f| {
        f["type"] == "permission_resolved" && f["permId"] == req["permId"]
    });
    assert_eq!(
        (withdrawn["decision"].as_str(), withdrawn["by"].as_str()),
        (Some("deny"), Some("session_end"))
    );
    ws.wait_type("session_end");
    ws.send(json!({"type": "permission_response", "sessionId": id, "permId": req["permId"], "decision": "allow"}));
    let err = ws.wait_for("answer after the stop", |f| f["type"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("already decided"),
        "{err}"
    );
    // Nothing moved: still stopped, nothing pending, no agent, no file, and
    // the audit log says withdrawn only.
    let it = item(&s, &id);
    assert_eq!(
        (&it["state"], &it["pendingApprovals"], &it["isActive"]),
        (&json!("stopped"), &json!(0), &json!(false)),
        "{it}"
    );
    assert!(!wt.join("stopped.txt").exists());
    assert_eq!(resolutions(&s, &id, &req["permId"]).len(), 1);
    let last = s.audit(&id);
    assert!(
        last.iter().filter(|a| a["decidedBy"] == "owner").count() == 0,
        "{last:?}"
    );
    assert!(last
        .iter()
        .any(|a| a["decision"] == "withdrawn" && a["decidedBy"] == "session_end"));
}

#[test]
fn a_question_is_answered_only_by_its_own_session() {
    if !landlock_or_skip("a_question_is_answered_only_by_its_own_session") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    let other = ws.new_session("text:another session").id;
    ws.wait_for("the other session's result", |f| {
        f["type"] == "result" && f["sessionId"] == other
    });
    let questions = json!({"questions": [{"question": "Which one?", "header": "Pick",
        "options": [{"label": "A", "description": "first"}, {"label": "B", "description": "second"}],
        "multiSelect": false}]});
    let asking = ws
        .new_session(&format!("tool:AskUserQuestion:{questions}"))
        .id;
    let q = ws.wait_type("question_request");
    assert_eq!(q["sessionId"], asking);
    // Answered in the name of the other session: refused, nothing decided.
    ws.send(json!({"type": "question_response", "sessionId": other, "permId": q["permId"], "answers": {"Which one?": "A"}}));
    let err = ws.wait_for("foreign answer", |f| f["type"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("another session"),
        "{err}"
    );
    ws.send(json!({"type": "permission_response", "sessionId": other, "permId": q["permId"], "decision": "deny"}));
    let err = ws.wait_for("foreign deny", |f| f["type"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("another session"),
        "{err}"
    );
    assert_eq!(item(&s, &asking)["pendingApprovals"], 1);
    assert!(resolutions(&s, &asking, &q["permId"]).is_empty());
    assert!(ws
        .seen
        .iter()
        .all(|f| f["type"] != "permission_resolved" && f["type"] != "tool_result"));
    // Its own session still answers it.
    ws.send(json!({"type": "question_response", "sessionId": asking, "permId": q["permId"], "answers": {"Which one?": "B"}}));
    let resolved = ws.wait_type("permission_resolved");
    assert_eq!(resolved["permId"], q["permId"]);
    assert_eq!(
        (resolved["decision"].as_str(), resolved["by"].as_str()),
        (Some("answered"), Some("owner"))
    );
    assert_eq!(resolved["answers"]["Which one?"], "B");
    let result = ws.wait_type("tool_result");
    assert_eq!(result["isError"], false, "{result}");
}

#[test]
fn the_audit_log_stores_the_summary_the_owner_read() {
    if !landlock_or_skip("the_audit_log_stores_the_summary_the_owner_read") {
        return;
    }
    let s = start("");
    let mut ws = s.ws();
    // A summary far over 500 characters (the audit line's old cut).
    let command = format!("echo {} > long.txt", "word ".repeat(250));
    let id = ws.new_session(&format!("tool:Bash:{command}")).id;
    let req = ws.wait_type("permission_request");
    let (title, summary) = (
        req["title"].as_str().unwrap().to_string(),
        req["summary"].as_str().unwrap().to_string(),
    );
    assert!(summary.contains(&command), "{summary}");
    assert!(summary.chars().count() > 1200, "{}", summary.len());

    // An allow with a message is refused and decides nothing.
    ws.send(
        json!({"type": "permission_response", "sessionId": id, "permId": req["permId"],
        "decision": "allow", "message": "go ahead"}),
    );
    let err = ws.wait_for("allow with a message", |f| f["type"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("deny only"),
        "{err}"
    );
    assert_eq!(item(&s, &id)["pendingApprovals"], 1);
    assert!(resolutions(&s, &id, &req["permId"]).is_empty());

    ws.send(
        json!({"type": "permission_response", "sessionId": id, "permId": req["permId"],
        "decision": "deny", "message": "too long"}),
    );
    let resolved = ws.wait_type("permission_resolved");
    assert_eq!(resolved["message"], "too long");
    let result = ws.wait_type("tool_result");
    assert!(
        result["result"].to_string().contains("too long"),
        "{result}"
    );
    ws.wait_type("result");
    let audit = s.audit(&id);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["decision"], "deny");
    assert_eq!(
        audit[0]["inputSummary"],
        format!("{title}: {}", summary.replace('\n', " · ")),
        "the whole summary, on one line"
    );
}
