//! A WebSocket client of `/ws/chat` for tests.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub struct Ws {
    pub socket: WebSocket<TcpStream>,
    /// Frames read but not yet consumed by a `wait_for`.
    pub seen: Vec<Value>,
}

/// What [`Ws::new_session`] answers: the `session_created` frame's parts.
pub struct NewSession {
    pub id: String,
    /// The session's primary worktree.
    pub worktree: std::path::PathBuf,
    pub created: Value,
}

impl Ws {
    /// Connect with an owner JWT and read the `welcome` frame.
    pub fn connect(port: u16, jwt: &str) -> Ws {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut req = format!("ws://127.0.0.1:{port}/ws/chat")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {jwt}").parse().unwrap());
        let (socket, _) = tungstenite::client(req, stream).expect("websocket handshake");
        let mut ws = Ws {
            socket,
            seen: Vec::new(),
        };
        let welcome = ws.next();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert!(welcome["connectionId"].is_string());
        ws
    }

    pub fn send(&mut self, frame: Value) {
        self.socket.send(Message::text(frame.to_string())).unwrap();
    }

    /// Start a session with its first prompt (a `send` without a session)
    /// and wait for `session_created`.
    pub fn new_session(&mut self, prompt: &str) -> NewSession {
        self.send(json!({"type": "send", "sessionId": null, "prompt": prompt}));
        let created = self.wait_type("session_created");
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("session_created without a sessionId: {created}"))
            .to_string();
        let worktree = created["worktrees"]["primary"]["path"]
            .as_str()
            .unwrap_or_default()
            .into();
        NewSession {
            id,
            worktree,
            created,
        }
    }

    /// The next frame from the socket.
    #[allow(clippy::should_implement_trait)] // a blocking read, not an iterator
    pub fn next(&mut self) -> Value {
        loop {
            match self.socket.read().expect("websocket read") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(c) => panic!("websocket closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Read until a frame matches; every frame read is kept in `seen`.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.seen.iter().position(&pred) {
            return self.seen.remove(pos);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no {what}; saw {:#?}", self.seen);
            let f = self.next();
            if pred(&f) {
                return f;
            }
            self.seen.push(f);
        }
    }

    pub fn wait_type(&mut self, kind: &str) -> Value {
        self.wait_for(kind, |f| f["type"] == kind)
    }
}
