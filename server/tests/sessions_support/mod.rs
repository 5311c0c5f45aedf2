//! Session test harness: a git repo the service user owns, the fake agent
//! (or the real Claude Code CLI) as `agent.command`, and a WebSocket client.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::common::*;

pub use mitzo_testkit::agent::install_fake_agent;

pub struct SessionServer {
    pub server: TestServer,
    pub repo: PathBuf,
    pub jwt: String,
    pub internal: String,
}

/// A server with a repo and the fake agent; `extra` is more TOML.
pub fn start(extra: &str) -> SessionServer {
    start_with(extra, Vec::new())
}

pub fn start_with(extra: &str, env: Vec<(String, String)>) -> SessionServer {
    start_env(extra, move |_| env.clone())
}

/// As `start_with`, with environment that depends on the server's port.
pub fn start_env(extra: &str, env: impl Fn(u16) -> Vec<(String, String)>) -> SessionServer {
    let mut server = TestServer::new(Options::default());
    let port = server.port;
    server.opts_env.extend(env(port));
    let repo = make_repo(server.dir.path());
    let agent = install_fake_agent(server.dir.path());
    let text = std::fs::read_to_string(&server.config).unwrap();
    // Top-level keys must come before any table header.
    let text = format!(
        "repo_path = \"{}\"\n{text}\n{extra}\n[agent]\ncommand = \"{}\"\n",
        repo.display(),
        agent.display()
    );
    serve(server, repo, &text)
}

/// Write `config` over the server's, start it and log in; `repo` is the
/// session repo the tests use.
pub fn serve(mut server: TestServer, repo: PathBuf, config: &str) -> SessionServer {
    std::fs::write(&server.config, config).unwrap();
    server.start();
    let jwt = server.login();
    let internal = server.internal_token();
    SessionServer {
        server,
        repo,
        jwt,
        internal,
    }
}

impl SessionServer {
    pub fn internal_headers(&self) -> Vec<(&str, &str)> {
        vec![("X-Internal-Token", self.internal.as_str())]
    }

    pub fn create(&self, body: Value) -> Response {
        self.server
            .post("/api/sessions", &self.internal_headers(), &body.to_string())
    }

    pub fn ws(&self) -> Ws {
        Ws::connect(self.server.port, &self.jwt)
    }

    /// Poll the events REST route until `pred` holds for some event.
    pub fn wait_event(&self, session: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.server.get(
                &format!("/api/sessions/{session}/events"),
                &self.internal_headers(),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let events = r.json()["events"].as_array().cloned().unwrap_or_default();
            if events.iter().any(&pred) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "event never came: {events:#?}\nlog:\n{}",
                self.server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new session and its agent's session token, read from the agent's
    /// environment (the fake agent's `env` prompt).
    pub fn session_with_token(&self) -> (String, String) {
        let r = self.create(json!({"source": "test", "initialPrompt": "env"}));
        let id = r.json()["sessionId"].as_str().unwrap().to_string();
        let env = text_of(&self.wait_event(&id, |e| e["type"] == "result"));
        let token = env
            .lines()
            .find_map(|l| l.strip_prefix("MITZO_SESSION_TOKEN="))
            .unwrap_or_else(|| panic!("no token in {env}"))
            .to_string();
        (id, token)
    }

    pub fn audit(&self, session: &str) -> Vec<Value> {
        let r = self.server.get(
            &format!("/api/audit?sessionId={session}"),
            &[("Authorization", &format!("Bearer {}", self.jwt))],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["entries"].as_array().cloned().unwrap_or_default()
    }
}

/// Session frames grouped by session id, as (seq, type).
pub fn by_session(frames: &[Value]) -> BTreeMap<String, Vec<(u64, String)>> {
    let mut out: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for f in frames {
        if let (Some(s), Some(seq)) = (f["sessionId"].as_str(), f["seq"].as_u64()) {
            if seq > 0 {
                out.entry(s.to_string())
                    .or_default()
                    .push((seq, f["type"].as_str().unwrap_or("").to_string()));
            }
        }
    }
    out
}

/// The text the agent said in persisted events: its text blocks, whole.
pub fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "block_end" && e["blockType"] == "text")
        .filter_map(|e| e["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

/// The text streamed live to a watcher, per session: its `block_delta`s.
pub fn streamed_text(frames: &[Value]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for f in frames {
        if f["type"] == "block_delta" && f["deltaType"] == "text" {
            out.entry(f["sessionId"].as_str().unwrap_or("").to_string())
                .or_default()
                .push_str(f["text"].as_str().unwrap_or(""));
        }
    }
    out
}

pub fn json_of(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or(json!(null))
}

/// A stand-in ntfy server: records each publish.
pub fn fake_ntfy() -> (u16, std::sync::mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send((head, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let mut w = stream;
            let _ =
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    (port, rx)
}

/// One action of a published ntfy notification, as a client would follow
/// it: (path on mitzod, the `X-Approval-Token` capability, the body).
pub struct NtfyAction {
    pub url: String,
    pub path: String,
    pub capability: String,
    pub body: String,
}

pub fn ntfy_action(published: &Value, label: &str) -> NtfyAction {
    let action = published["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["label"] == label)
        .unwrap_or_else(|| panic!("no {label:?} action in {published}"));
    let url = action["url"].as_str().unwrap().to_string();
    let path = format!(
        "/{}",
        url.split_once("://").unwrap().1.split_once('/').unwrap().1
    );
    NtfyAction {
        url,
        path,
        capability: action["headers"]["X-Approval-Token"]
            .as_str()
            .unwrap()
            .to_string(),
        body: action["body"].as_str().unwrap().to_string(),
    }
}
