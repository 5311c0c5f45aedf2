//! The task board through the running server: CRUD, scopes, task tools,
//! signals, concurrency without lost updates, and a `kill -9` in the
//! middle of a burst of writes.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{request, Response, TestServer};
use serde_json::{json, Value};

struct Board {
    s: TestServer,
    token: String,
    jwt: String,
}

impl Board {
    fn start() -> Board {
        let s = TestServer::start_default();
        let token = s.internal_token();
        let jwt = s.login();
        Board { s, token, jwt }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Response {
        let mut h = headers.to_vec();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            h.push(("Content-Type", "application/json"));
        }
        request(self.s.addr(), method, path, &h, body.as_bytes())
    }

    /// As the internal token.
    fn int(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        self.call(method, path, &[("X-Internal-Token", &self.token)], body)
    }

    /// As the internal token acting for session `sid`.
    fn tool(&self, sid: &str, method: &str, tool: &str, body: Option<Value>) -> Response {
        self.call(
            method,
            &format!("/api/internal/task-tools/{tool}"),
            &[("X-Internal-Token", &self.token), ("X-Client-ID", sid)],
            body,
        )
    }

    fn owner(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let a = format!("Bearer {}", self.jwt);
        self.call(method, path, &[("Authorization", &a)], body)
    }
}

#[test]
fn crud_and_validation() {
    let b = Board::start();
    let r = b.int(
        "POST",
        "/api/tasks",
        Some(json!({ "title": "write tests", "priority": 3, "artifacts": { "repo": "o/r" } })),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let t = r.json();
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["status"], "todo");
    assert_eq!(t["priority"], 3);
    assert_eq!(t["description"], "");
    assert_eq!(t["sessionId"], Value::Null);
    assert_eq!(t["artifacts"], json!({ "repo": "o/r" }));
    assert!(t["createdAt"].as_str().unwrap().ends_with('Z'));

    let r = b.owner("GET", &format!("/api/tasks/{id}"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), t);

    let r = b.owner(
        "PATCH",
        &format!("/api/tasks/{id}"),
        Some(json!({ "status": "in_progress", "sessionId": "s1", "artifacts": { "pr": "7", "repo": null } })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t2 = r.json();
    assert_eq!(t2["status"], "in_progress");
    assert_eq!(t2["sessionId"], "s1");
    assert_eq!(t2["artifacts"], json!({ "pr": "7" }));
    let r = b.int(
        "PATCH",
        &format!("/api/tasks/{id}"),
        Some(json!({ "sessionId": null })),
    );
    assert_eq!(r.json()["sessionId"], Value::Null);

    b.int(
        "POST",
        "/api/tasks",
        Some(json!({ "title": "other", "status": "blocked" })),
    );
    let r = b.int("GET", "/api/tasks", None);
    assert_eq!(r.json()["tasks"].as_array().unwrap().len(), 2);
    let r = b.int("GET", "/api/tasks?status=blocked", None);
    let only = r.json()["tasks"].as_array().unwrap().clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["title"], "other");

    // Bad input: 400 naming the problem.
    let r = b.int(
        "PATCH",
        &format!("/api/tasks/{id}"),
        Some(json!({ "status": "doing" })),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.error()
            .contains("todo, in_progress, blocked, review, done"),
        "{}",
        r.error()
    );
    let r = b.int("GET", "/api/tasks?status=doing", None);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("in_progress"), "{}", r.error());
    let r = b.int(
        "POST",
        "/api/tasks",
        Some(json!({ "title": "x", "owner": "me" })),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("owner"), "{}", r.error());
    let r = b.int(
        "POST",
        "/api/tasks",
        Some(json!({ "title": "x".repeat(201) })),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = b.int("POST", "/api/tasks", Some(json!({ "title": "  " })));
    assert_eq!(r.status, 400);
    let r = b.int(
        "POST",
        "/api/tasks",
        Some(json!({ "title": "x", "priority": 1000 })),
    );
    assert_eq!(r.status, 400);
    let r = b.int(
        "POST",
        "/api/tasks",
        Some(json!({ "title": "x", "artifacts": { "k": "v".repeat(5000) } })),
    );
    assert_eq!(r.status, 400);
    let r = b.int(
        "POST",
        "/api/tasks",
        Some(json!({ "title": "x", "sessionId": "a/b" })),
    );
    assert_eq!(r.status, 400);
    let r = b.int("POST", "/api/tasks", None);
    assert_eq!(r.status, 400);

    // Approve / reject only from review.
    let r = b.int("POST", &format!("/api/tasks/{id}/approve"), None);
    assert_eq!(r.status, 409, "{}", r.text());
    b.int(
        "PATCH",
        &format!("/api/tasks/{id}"),
        Some(json!({ "status": "review" })),
    );
    let r = b.int(
        "POST",
        &format!("/api/tasks/{id}/reject"),
        Some(json!({ "feedback": "add a test" })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "in_progress");
    assert_eq!(r.json()["artifacts"]["feedback"], "add a test");
    b.int(
        "PATCH",
        &format!("/api/tasks/{id}"),
        Some(json!({ "status": "review" })),
    );
    let r = b.owner("POST", &format!("/api/tasks/{id}/approve"), None);
    assert_eq!(r.json()["status"], "done");

    let r = b.int("DELETE", &format!("/api/tasks/{id}"), None);
    assert_eq!(r.status, 200);
    let r = b.int("GET", &format!("/api/tasks/{id}"), None);
    assert_eq!(r.status, 404);
    let r = b.int("DELETE", &format!("/api/tasks/{id}"), None);
    assert_eq!(r.status, 404);
    let r = b.int("GET", "/api/tasks/..%2f..%2fetc", None);
    assert_eq!(r.status, 404);
}

#[test]
fn scopes() {
    let b = Board::start();
    // No credential, a wrong one.
    for (m, p) in [
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", "/api/internal/task-tools/status"),
        ("POST", "/api/signals/resolve"),
    ] {
        let r = b.call(m, p, &[], Some(json!({})));
        assert_eq!(r.status, 401, "{m} {p}");
        let r = b.call(
            m,
            p,
            &[("X-Internal-Token", &"0".repeat(64))],
            Some(json!({})),
        );
        assert_eq!(r.status, 401, "{m} {p}");
    }
    // Task tools need a session: a session token, or X-Client-ID.
    let r = b.int("GET", "/api/internal/task-tools/status", None);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("X-Client-ID"), "{}", r.error());
    let r = b.owner(
        "POST",
        "/api/internal/task-tools/set",
        Some(json!({ "tasks": [] })),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("X-Client-ID"), "{}", r.error());
    let r = b.tool("../evil", "GET", "status", None);
    assert_eq!(r.status, 400);

    // Each session sees and changes only its own tasks.
    let r = b.tool(
        "s1",
        "POST",
        "set",
        Some(json!({ "tasks": [{ "title": "s1 first" }, { "title": "s1 second" }] })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["result"].as_str().unwrap().contains("s1 first"));
    let r = b.tool("s2", "GET", "status", None);
    assert_eq!(r.json()["tasks"], json!([]));
    let r = b.tool(
        "s2",
        "POST",
        "complete",
        Some(json!({ "summary": "not mine" })),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let r = b.tool(
        "s2",
        "POST",
        "artifact",
        Some(json!({ "key": "pr", "value": "1" })),
    );
    assert_eq!(r.status, 409);
    let r = b.tool("s2", "POST", "block", Some(json!({ "reason": "x" })));
    assert_eq!(r.status, 409);
    b.tool(
        "s2",
        "POST",
        "set",
        Some(json!({ "tasks": [{ "title": "s2 only" }] })),
    );
    let s1 = b.tool("s1", "GET", "status", None).json();
    let titles: Vec<&str> = s1["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["s1 first", "s1 second"]);
    assert_eq!(s1["tasks"][0]["status"], "in_progress");
    assert!(s1["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["artifacts"] == json!({})));
    // The board shows both sessions to the owner.
    let r = b.owner("GET", "/api/tasks", None);
    assert_eq!(r.json()["tasks"].as_array().unwrap().len(), 3);
    let r = b.owner("GET", "/api/tasks?sessionId=s2", None);
    assert_eq!(r.json()["tasks"].as_array().unwrap().len(), 1);
}

#[test]
fn tools_and_signals_move_tasks_on() {
    let b = Board::start();
    let sid = "sess-7";
    b.tool(
        sid,
        "POST",
        "set",
        Some(
            json!({ "tasks": [{ "title": "fix bug", "priority": 5 }, { "title": "write docs" }] }),
        ),
    );
    let r = b.tool(
        sid,
        "POST",
        "artifact",
        Some(json!({ "key": "pr_url", "value": "https://github.com/o/r/pull/9" })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    b.tool(
        sid,
        "POST",
        "artifact",
        Some(json!({ "key": "repo", "value": "o/r" })),
    );
    b.tool(
        sid,
        "POST",
        "artifact",
        Some(json!({ "key": "pr", "value": "9" })),
    );
    let r = b.tool(
        sid,
        "POST",
        "block",
        Some(json!({ "reason": "waiting for CI" })),
    );
    assert_eq!(r.status, 200);
    let st = b.tool(sid, "GET", "status", None).json();
    assert_eq!(st["tasks"][0]["status"], "blocked");
    assert_eq!(
        st["tasks"][0]["artifacts"]["blockedReason"],
        "waiting for CI"
    );

    // CI green: the blocked task resumes.
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({ "type": "gh_ci", "repo": "o/r", "pr": 9, "status": "success" })),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "ok": true, "matched": 1 }));
    let st = b.tool(sid, "GET", "status", None).json();
    assert_eq!(st["tasks"][0]["status"], "in_progress");
    assert_eq!(st["tasks"][0]["artifacts"]["ci"], "success");

    // Complete: to review, the next task starts.
    let r = b.tool(
        sid,
        "POST",
        "complete",
        Some(json!({ "summary": "fixed it" })),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["result"].as_str().unwrap().contains("write docs"));
    let st = b.tool(sid, "GET", "status", None).json();
    assert_eq!(
        (
            st["tasks"][0]["status"].as_str(),
            st["tasks"][1]["status"].as_str()
        ),
        (Some("review"), Some("in_progress"))
    );

    // Review approved: done.
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({ "type": "gh_review", "pr_url": "https://github.com/o/r/pull/9", "status": "approved", "artifacts": { "reviewer": "bob" } })),
    );
    assert_eq!(r.json()["matched"], 1);
    let st = b.tool(sid, "GET", "status", None).json();
    assert_eq!(st["tasks"][0]["status"], "done");
    assert_eq!(st["tasks"][0]["artifacts"]["reviewer"], "bob");

    // No match, unknown status, unknown type, missing PR, unknown field.
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({ "type": "gh_ci", "pr_url": "https://x/1", "status": "failure" })),
    );
    assert_eq!(r.json()["matched"], 0);
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({ "type": "gh_ci", "pr_url": "u", "status": "green" })),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("success, failure"), "{}", r.error());
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({ "type": "jenkins", "pr_url": "u", "status": "success" })),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("gh_ci"), "{}", r.error());
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({ "type": "gh_ci", "status": "success" })),
    );
    assert_eq!(r.status, 400);
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({ "type": "gh_ci", "pr_url": "u", "status": "success", "x": 1 })),
    );
    assert_eq!(r.status, 400);
    let r = b.tool(
        sid,
        "POST",
        "set",
        Some(json!({ "tasks": [{ "title": "t", "assignee": "me" }] })),
    );
    assert_eq!(r.status, 400);
    let r = b.tool(
        sid,
        "POST",
        "artifact",
        Some(json!({ "key": "", "value": "v" })),
    );
    assert_eq!(r.status, 400);
}

/// 50 task-tool calls at once on one task: every artifact lands (no
/// read-modify-write lost), and 50 concurrent creates give 50 tasks.
#[test]
fn fifty_concurrent_task_tool_calls_lose_nothing() {
    let b = Arc::new(Board::start());
    let r = b.tool(
        "c1",
        "POST",
        "set",
        Some(json!({ "tasks": [{ "title": "hot" }] })),
    );
    assert_eq!(r.status, 200);
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let b = b.clone();
            std::thread::spawn(move || {
                let r = b.tool(
                    "c1",
                    "POST",
                    "artifact",
                    Some(json!({ "key": format!("k{i}"), "value": format!("v{i}") })),
                );
                assert_eq!(r.status, 200, "{}", r.text());
                let r = b.int(
                    "POST",
                    "/api/tasks",
                    Some(json!({ "title": format!("parallel {i}"), "sessionId": "c2" })),
                );
                assert_eq!(r.status, 201, "{}", r.text());
                r.json()["id"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let ids: BTreeSet<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(ids.len(), 50);
    let st = b.tool("c1", "GET", "status", None).json();
    let artifacts = st["tasks"][0]["artifacts"].as_object().unwrap().clone();
    assert_eq!(artifacts.len(), 50, "lost updates: {artifacts:?}");
    for i in 0..50 {
        assert_eq!(artifacts[&format!("k{i}")], format!("v{i}"));
    }
    let r = b.int("GET", "/api/tasks?sessionId=c2", None);
    assert_eq!(r.json()["tasks"].as_array().unwrap().len(), 50);
}

/// Writers hammer the board; mitzod is killed with SIGKILL mid-burst.
/// After a restart the database passes `PRAGMA integrity_check` and every
/// write that was acknowledged is there.
#[test]
fn kill9_mid_burst_loses_no_acknowledged_write() {
    let mut b = Board::start();
    let addr = b.s.addr();
    let token = b.token.clone();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop, token) = (acked.clone(), stop.clone(), token.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 5000 {
                    n += 1;
                    let body =
                        json!({ "title": format!("w{w} #{n}"), "sessionId": format!("w{w}") })
                            .to_string();
                    let r = common::try_request(
                        addr,
                        "POST",
                        "/api/tasks",
                        &[
                            ("X-Internal-Token", &token),
                            ("Content-Type", "application/json"),
                        ],
                        body.as_bytes(),
                    );
                    match r {
                        Ok(r) if r.status == 201 => {
                            let id = r.json()["id"].as_str().unwrap().to_string();
                            acked.lock().unwrap().push(id);
                        }
                        // Killed: refused, reset, or cut off mid-answer.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Let the burst build up, then kill in the middle of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 300 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    b.s.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} writes before the kill",
        acked.len()
    );

    b.s.start();
    let db_path = b.s.state_dir.join("mitzod.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let stored: BTreeSet<String> = conn
        .prepare("SELECT id FROM tasks")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    drop(conn);
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {missing:?}",
        missing.len()
    );
    // And the restarted server serves them.
    let r = b.int("GET", "/api/tasks", None);
    let served: BTreeSet<String> = r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert!(acked.iter().all(|id| served.contains(id)));
    eprintln!(
        "kill -9: {} acknowledged, {} stored",
        acked.len(),
        stored.len()
    );
}

/// Mitzo's request shapes on the internal API: `clientId` in the body (or
/// query) naming the session, and `pass`/`fail` signal statuses.
#[test]
fn mitzo_request_shapes_are_accepted() {
    let b = Board::start();
    let sid = "mitzo-hook-1";
    // clientId in the body instead of X-Client-ID.
    let r = b.int(
        "POST",
        "/api/internal/task-tools/set",
        Some(json!({"clientId": sid, "tasks": [{"title": "ship"}]})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = b.int(
        "POST",
        "/api/internal/task-tools/artifact",
        Some(json!({"clientId": sid, "key": "pr_url", "value": "https://x/pr/9"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = b.int(
        "GET",
        &format!("/api/internal/task-tools/status?clientId={sid}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let tasks = r.json()["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["sessionId"], sid);
    // Control: without any session name the call is refused.
    let r = b.int(
        "POST",
        "/api/internal/task-tools/block",
        Some(json!({"reason": "x"})),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = b.int(
        "POST",
        "/api/internal/task-tools/complete",
        Some(json!({"clientId": sid, "summary": "done"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // pass / fail: the positive / negative status of any signal type.
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({"type": "gh_review", "pr_url": "https://x/pr/9", "status": "fail"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["matched"], 1);
    let id = tasks[0]["id"].as_str().unwrap();
    let t = b.int("GET", &format!("/api/tasks/{id}"), None).json();
    assert_eq!(
        t["status"], "in_progress",
        "a failed review sends it back: {t}"
    );
    assert_eq!(t["artifacts"]["review"], "fail", "{t}");
    let r = b.int(
        "POST",
        "/api/internal/task-tools/complete",
        Some(json!({"clientId": sid, "summary": "fixed"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({"type": "human_approval", "pr_url": "https://x/pr/9", "status": "pass"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = b.int("GET", &format!("/api/tasks/{id}"), None).json();
    assert_eq!(t["status"], "done", "{t}");
    let r = b.int(
        "POST",
        "/api/signals/resolve",
        Some(json!({"type": "gh_ci", "pr_url": "https://x/pr/9", "status": "green"})),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("pass, fail"), "{}", r.error());
}
