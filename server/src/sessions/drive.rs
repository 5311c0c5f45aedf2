//! Driving a running agent: each line it writes, in order, turned into
//! events (through [`super::translate`]) and decisions (through
//! [`super::broker`]), until it exits.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::translate::{Out, Translator};
use super::{is_agent_session_id, Session, SessionManager};
use crate::agent::process::AgentEvent;
use crate::agent::Incoming;
use mitzo_protocol::{ServerEvent, SessionState};

impl SessionManager {
    /// Everything the agent says, turned into events and decisions. While
    /// the event writer is behind, the next line waits: back-pressure
    /// reaches the agent's stdout instead of memory.
    pub(crate) async fn drive(
        self: Arc<Self>,
        session: Arc<Session>,
        mut rx: mpsc::Receiver<AgentEvent>,
        generation: u64,
    ) {
        let mut translator = Translator::new();
        while let Some(event) = rx.recv().await {
            self.writer.room().await;
            // After a stop, what the dead agent still had queued is dropped.
            let current = session.lock().generation == generation;
            match event {
                AgentEvent::Message(msg) if current => {
                    self.on_message(&session, &mut translator, msg).await
                }
                AgentEvent::Malformed(why) if current => {
                    session.log.publish(ServerEvent::error(why));
                }
                AgentEvent::Exit(exit) => {
                    // Blocks the agent never finished are closed, so no
                    // watcher waits on them.
                    apply(&session, translator.finish());
                    self.on_exit(&session, generation, exit).await;
                    break;
                }
                _ => {}
            }
        }
    }

    async fn on_message(
        self: &Arc<Self>,
        session: &Arc<Session>,
        translator: &mut Translator,
        msg: Incoming,
    ) {
        match msg {
            Incoming::Init {
                agent_session_id, ..
            } => {
                // It goes back on the agent's command line: only a plain id.
                if !is_agent_session_id(&agent_session_id) {
                    session.log.publish(ServerEvent::error(
                        "agent reported a malformed session id; it will not be resumed",
                    ));
                    return;
                }
                let row = {
                    let mut inner = session.lock();
                    inner.row.agent_session_id = Some(agent_session_id);
                    inner.row.clone()
                };
                session.log.save_row(row);
            }
            Incoming::StreamEvent(v) => apply(session, translator.stream_event(&v)),
            Incoming::Assistant(v) => apply(session, translator.assistant(&v)),
            Incoming::User(v) => apply(session, translator.user(&v)),
            Incoming::Result(v) => {
                apply(session, translator.finish());
                let row = {
                    let mut inner = session.lock();
                    inner.row.num_turns += 1;
                    inner.row.clone()
                };
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                session.log.publish(ServerEvent::Result {
                    subtype: text("subtype").unwrap_or_default(),
                    is_error: v.get("is_error").and_then(|x| x.as_bool()) == Some(true),
                    result: text("result").map(|r| super::translate::clip_str(&r)),
                    num_turns: row.num_turns,
                    cost_usd: v.get("total_cost_usd").and_then(|x| x.as_f64()),
                });
                session.log.save_row(row);
                session.set_state(SessionState::Idle);
                self.changed(session);
            }
            Incoming::ControlRequest {
                request_id,
                request,
            } => {
                self.on_control_request(session, &request_id, &request)
                    .await;
            }
            Incoming::ControlResponse {
                request_id,
                result: Err(e),
            } => {
                session.log.publish(ServerEvent::error(format!(
                    "agent refused control request {request_id}: {e}"
                )));
            }
            Incoming::ControlCancel { request_id } => {
                self.on_control_cancel(session, &request_id).await;
            }
            Incoming::System(_) | Incoming::ControlResponse { .. } => {}
            Incoming::Unknown(v) => {
                tracing::debug!(session = %session.id, kind = ?v.get("type"), "unknown agent message ignored");
            }
        }
    }
}

/// Carry out what the translation produced.
fn apply(session: &Session, outs: Vec<Out>) {
    for o in outs {
        match o {
            Out::Publish(e) => {
                session.log.publish(e);
            }
            Out::Delta {
                message_id,
                index,
                delta_type,
                text,
            } => session.log.delta(&message_id, index, delta_type, &text),
        }
    }
}
