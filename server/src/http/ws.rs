//! `/ws/chat`: the owner's live view of sessions. Owner credential only
//! (cookie or `Authorization`), Origin checked by the guard, no token in the
//! URL. Sessions outlive connections: a client that reconnects with its
//! last seq gets exactly the events it missed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::credential::Authed;
use crate::app::AppState;
use crate::auth::scope;
use crate::error::{Error, Result};
use crate::sessions::{Session, MAX_PROMPT};
use mitzo_protocol::{
    ClientFrame, ReconnectReport, ServerEvent, ServerFrame, Worktree, Worktrees, PROTOCOL_VERSION,
};

const MAX_FRAME: usize = MAX_PROMPT + 64 * 1024;
const OUTBOX: usize = 4096;
const MAX_WATCHES: usize = 200;
const CREDENTIAL_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Most frames written before one flush.
const WRITE_BATCH: usize = 64;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ws/chat", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    auth: Authed<scope::Owner>,
    ws: WebSocketUpgrade,
) -> Response {
    let credential = match auth.caller() {
        crate::auth::Caller::Owner {
            jti, exp, epoch, ..
        } => (jti.clone(), *exp, *epoch),
        _ => return Error::Forbidden("the chat needs the owner".into()).into_response(),
    };
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| connection(state, socket, credential))
}

/// A frame that belongs to no session (seq 0).
fn connection_frame(event: ServerEvent) -> Arc<str> {
    ServerFrame::new(None, 0, event).to_json().into()
}

/// A frame about a session that is not part of its event stream (seq 0).
fn session_frame(session_id: &str, event: ServerEvent) -> Arc<str> {
    ServerFrame::new(Some(session_id), 0, event)
        .to_json()
        .into()
}

fn error_frame(session_id: Option<&str>, error: &str) -> Arc<str> {
    ServerFrame::new(session_id, 0, ServerEvent::error(error))
        .to_json()
        .into()
}

struct Watch {
    session: Arc<Session>,
    forwarder: JoinHandle<()>,
}

struct Connection {
    state: AppState,
    out: mpsc::Sender<Arc<str>>,
    watching: HashMap<String, Watch>,
}

/// The owner credential a connection was opened with: (jti, exp, epoch).
type Credential = (String, i64, u64);

async fn connection(state: AppState, socket: WebSocket, credential: Credential) {
    state.sessions.clients.fetch_add(1, Ordering::Relaxed);
    state.sessions.touch();
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::channel::<Arc<str>>(OUTBOX);
    // The writer drains the outbox on its own, so handling a client frame
    // may wait for room in it without ever waiting on itself.
    let writer = tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            // Frames already waiting go out with one flush (a replay, a
            // burst); a lone frame is flushed at once. A client that stops
            // reading (a suspended phone) is dropped rather than kept
            // attached forever.
            let sent = tokio::time::timeout(SEND_TIMEOUT, async {
                sink.feed(Message::Text(frame.to_string().into())).await?;
                for _ in 1..WRITE_BATCH {
                    let Ok(next) = outbox.try_recv() else {
                        break;
                    };
                    sink.feed(Message::Text(next.to_string().into())).await?;
                }
                sink.flush().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let tasks_out = out.clone();
    let mut tasks = state.task_events.subscribe();
    let task_forwarder = tokio::spawn(async move {
        loop {
            match tasks.recv().await {
                Ok(event) => {
                    if tasks_out
                        .send(connection_frame(task_frame(&event)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    // Every session's `session_updated`, watched or not: lists stay current.
    let updates_out = out.clone();
    let mut updates = state.sessions.updates();
    let update_forwarder = tokio::spawn(async move {
        loop {
            match updates.recv().await {
                Ok(frame) => {
                    if updates_out.send(frame.json).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut conn = Connection {
        state: state.clone(),
        out,
        watching: HashMap::new(),
    };
    let connection_id = hex::encode(rand::random::<[u8; 8]>());
    let _ = conn
        .out
        .send(connection_frame(ServerEvent::Welcome {
            connection_id,
            protocol_version: PROTOCOL_VERSION,
        }))
        .await;
    let still_valid = |state: &AppState| {
        state
            .owner
            .still_valid(&credential.0, credential.1, credential.2)
    };
    let mut recheck = tokio::time::interval(CREDENTIAL_RECHECK);
    loop {
        // Logout, logout-all and expiry end an open chat too: checked
        // before every frame and on a timer.
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = recheck.tick() => {
                if still_valid(&state) { continue }
                None
            }
        };
        let msg = match msg {
            Some(Ok(msg)) if still_valid(&state) => msg,
            Some(Ok(_)) | None if !still_valid(&state) => {
                let _ = conn
                    .out
                    .send(error_frame(
                        None,
                        "logged out: this owner session has ended; log in again",
                    ))
                    .await;
                break;
            }
            _ => break,
        };
        match msg {
            Message::Text(text) => conn.handle(text.as_str()).await,
            Message::Binary(_) => {
                let _ = conn
                    .out
                    .send(error_frame(
                        None,
                        "binary frames are not supported; send JSON text",
                    ))
                    .await;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
        if writer.is_finished() {
            break;
        }
    }
    task_forwarder.abort();
    update_forwarder.abort();
    for (_, w) in conn.watching.drain() {
        w.forwarder.abort();
        state.sessions.detach(&w.session);
    }
    drop(conn);
    // Every sender is gone: the writer sends what is queued and ends.
    if tokio::time::timeout(std::time::Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        tracing::debug!("websocket writer did not finish in time");
    }
    state.sessions.clients.fetch_sub(1, Ordering::Relaxed);
    state.sessions.touch();
}

impl Connection {
    async fn handle(&mut self, text: &str) {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let _ = self
                    .out
                    .send(error_frame(None, &format!("malformed frame: {e}")))
                    .await;
                return;
            }
        };
        let session_hint = frame.session_id().map(str::to_string);
        if let Err(e) = self.dispatch(frame).await {
            let _ = self
                .out
                .send(error_frame(session_hint.as_deref(), &e.to_string()))
                .await;
        }
    }

    async fn dispatch(&mut self, frame: ClientFrame) -> Result<()> {
        let sessions = self.state.sessions.clone();
        match frame {
            ClientFrame::Hello { protocol_version } => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(Error::Invalid(format!(
                        "protocol version {protocol_version} is not supported; use {PROTOCOL_VERSION}"
                    )));
                }
            }
            ClientFrame::Send {
                session_id,
                prompt,
                client_msg_id,
                mode,
                repo,
            } => {
                let session = match session_id {
                    Some(id) => {
                        if repo.is_some() {
                            return Err(Error::Invalid(
                                "repo: only a new session chooses its repo".into(),
                            ));
                        }
                        let s = sessions.get(&id).await?;
                        // No `mode`: the session keeps its own.
                        if let Some(m) = mode.filter(|m| s.row().mode != *m) {
                            sessions.set_mode(&s, m).await;
                        }
                        s
                    }
                    None => {
                        let s = sessions
                            .create(crate::sessions::NewSession {
                                source: "web".into(),
                                mode: mode.unwrap_or_default(),
                                repo,
                                first_prompt: Some(prompt.clone()),
                                ..Default::default()
                            })
                            .await?;
                        let row = s.row();
                        let _ = self
                            .out
                            .send(session_frame(
                                &row.id,
                                ServerEvent::SessionCreated {
                                    client_msg_id: client_msg_id.clone(),
                                    worktrees: Worktrees {
                                        primary: Worktree {
                                            path: row.cwd.clone(),
                                            branch: row.branch.clone(),
                                        },
                                    },
                                    title: row.title.clone(),
                                    repo: row.repo_name.clone(),
                                },
                            ))
                            .await;
                        s
                    }
                };
                if !self.watching.contains_key(&session.id) {
                    let from = session.log.last_seq();
                    self.watch(session.clone(), from).await?;
                }
                sessions
                    .send(&session, &prompt, client_msg_id.as_deref())
                    .await?;
            }
            ClientFrame::Interrupt { session_id, prompt } => {
                let s = sessions.get(&session_id).await?;
                sessions.interrupt(&s, prompt.as_deref()).await?;
            }
            ClientFrame::Stop { session_id } => {
                let s = sessions.get(&session_id).await?;
                sessions.stop(&s, "stopped by the owner").await;
            }
            ClientFrame::PermissionResponse {
                session_id,
                perm_id,
                decision,
                message,
            } => {
                sessions
                    .decide_as_owner(&session_id, &perm_id, decision, message.as_deref())
                    .await?;
            }
            ClientFrame::QuestionResponse {
                session_id,
                perm_id,
                answers,
            } => {
                sessions
                    .answer_as_owner(&session_id, &perm_id, answers)
                    .await?;
            }
            ClientFrame::SetMode { session_id, mode } => {
                let s = sessions.get(&session_id).await?;
                sessions.set_mode(&s, mode).await;
            }
            ClientFrame::Rename { session_id, title } => {
                let s = sessions.get(&session_id).await?;
                sessions.rename(&s, &title).await?;
            }
            ClientFrame::Watch { session_id } => {
                let s = sessions.get(&session_id).await?;
                let from = s.log.last_seq();
                self.watch(s, from).await?;
            }
            ClientFrame::Unwatch { session_id } => {
                if let Some(w) = self.watching.remove(&session_id) {
                    w.forwarder.abort();
                    sessions.detach(&w.session);
                }
            }
            ClientFrame::Reconnect { sessions: wanted } => {
                if wanted.len() > 100 {
                    return Err(Error::Invalid(
                        "reconnect to at most 100 sessions at once".into(),
                    ));
                }
                let mut report = Vec::new();
                for entry in wanted {
                    match sessions.get(&entry.session_id).await {
                        Ok(s) => {
                            let replayed = self.watch(s, entry.last_seq).await?;
                            report.push(ReconnectReport {
                                session_id: entry.session_id,
                                replayed: Some(replayed as u32),
                                error: None,
                            });
                        }
                        Err(e) => report.push(ReconnectReport {
                            session_id: entry.session_id,
                            replayed: None,
                            error: Some(e.to_string()),
                        }),
                    }
                }
                let _ = self
                    .out
                    .send(connection_frame(ServerEvent::Reconnected {
                        sessions: report,
                    }))
                    .await;
            }
        }
        Ok(())
    }

    /// Watch `session` from `after`: the missed frames now, in order, then
    /// live ones, never a duplicate. Returns how many were replayed.
    async fn watch(&mut self, session: Arc<Session>, after: u64) -> Result<usize> {
        if self.watching.len() >= MAX_WATCHES && !self.watching.contains_key(&session.id) {
            return Err(Error::Invalid(format!(
                "a connection watches at most {MAX_WATCHES} sessions; unwatch some first"
            )));
        }
        if let Some(old) = self.watching.remove(&session.id) {
            old.forwarder.abort();
            self.state.sessions.detach(&old.session);
        }
        // A client that saw more than the server has (events lost in a
        // crash) must not filter out what comes next.
        let after = after.min(session.log.last_seq());
        let (backlog, sub) = self.state.sessions.subscribe(&session, after).await?;
        let mut last = after;
        self.state.sessions.attach(&session);
        // How the session is now, before its history.
        let _ = self
            .out
            .send(session_frame(
                &session.id,
                ServerEvent::SessionUpdated {
                    session: self.state.sessions.summary(&session),
                },
            ))
            .await;
        let replayed = send_after(&self.out, backlog, &mut last).await.unwrap_or(0);
        let out = self.out.clone();
        let sessions = self.state.sessions.clone();
        let s = session.clone();
        let forwarder = tokio::spawn(async move {
            let mut live = sub.live;
            loop {
                match live.recv().await {
                    // Live-only frames (deltas) always; persisted ones once.
                    Ok(frame) if frame.seq == 0 || frame.seq > last => {
                        last = last.max(frame.seq);
                        if out.send(frame.json).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow for the broadcast: catch up from the
                        // ring and the database, then listen again.
                        let Ok((backlog, sub)) = sessions.subscribe(&s, last).await else {
                            return;
                        };
                        if send_after(&out, backlog, &mut last).await.is_none() {
                            return;
                        }
                        live = sub.live;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        self.watching
            .insert(session.id.clone(), Watch { session, forwarder });
        Ok(replayed)
    }
}

fn task_frame(event: &crate::tasks::TaskEvent) -> ServerEvent {
    match event {
        crate::tasks::TaskEvent::TaskUpdated { task } => ServerEvent::TaskUpdated {
            task: serde_json::to_value(task).unwrap_or_default(),
        },
        crate::tasks::TaskEvent::TaskDeleted { id } => ServerEvent::TaskDeleted { id: id.clone() },
    }
}

/// Send the persisted frames after `last`, in order, moving `last` along,
/// and every live-only frame (the snapshots at the end); how many
/// persisted ones were sent, or `None` once the connection is gone.
async fn send_after(
    out: &mpsc::Sender<Arc<str>>,
    frames: Vec<crate::sessions::events::Frame>,
    last: &mut u64,
) -> Option<usize> {
    let mut sent = 0;
    for frame in frames {
        if frame.seq == 0 {
            out.send(frame.json).await.ok()?;
        } else if frame.seq > *last {
            *last = frame.seq;
            out.send(frame.json).await.ok()?;
            sent += 1;
        }
    }
    Some(sent)
}
