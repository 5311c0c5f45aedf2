//! A session's event stream: strictly increasing `seq` for persisted
//! events, a bounded ring in memory for reconnects, SQLite behind it, a
//! broadcast to watchers, and the blocks still being streamed.
//!
//! Publishing, streaming a delta and subscribing take the same lock, so a
//! subscriber gets every persisted event after its `lastSeq` exactly once,
//! and for every open block its text so far (one `block_snapshot`) followed
//! by exactly the deltas published after that snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use super::writer::{EventRow, Writer};
use mitzo_protocol::{BlockType, DeltaType, ServerEvent, ServerFrame};

pub use mitzo_protocol::now_ms;

/// One server frame, serialised once and shared by every watcher. `seq`
/// 0: a live-only frame (a delta, a snapshot, a notice).
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub json: Arc<str>,
}

/// Longest text of one block kept while it streams (the same bound as
/// any string in an event): deltas past it are not sent, and the block's
/// `block_end` carries the clipped text.
pub const MAX_BLOCK_TEXT: usize = super::translate::MAX_EVENT_TEXT;

/// A block still being streamed: what a late watcher needs to catch up.
#[derive(Debug, Clone)]
struct OpenBlock {
    block_type: BlockType,
    tool_name: Option<String>,
    tool_id: Option<String>,
    text: String,
    full: bool,
}

pub struct EventLog {
    session_id: String,
    inner: Mutex<Ring>,
    tx: broadcast::Sender<Frame>,
    writer: Writer,
    /// The highest seq the writer has committed (for deep replays).
    persisted: Arc<watch::Sender<u64>>,
}

struct Ring {
    next_seq: u64,
    capacity: usize,
    frames: VecDeque<Frame>,
    last_publish: std::time::Instant,
    open: BTreeMap<(String, u32), OpenBlock>,
}

impl EventLog {
    pub fn new(session_id: &str, last_seq: u64, capacity: usize, writer: Writer) -> EventLog {
        let (tx, _) = broadcast::channel(capacity.max(16));
        EventLog {
            session_id: session_id.to_string(),
            inner: Mutex::new(Ring {
                next_seq: last_seq + 1,
                capacity,
                frames: VecDeque::new(),
                last_publish: std::time::Instant::now(),
                open: BTreeMap::new(),
            }),
            tx,
            writer,
            persisted: Arc::new(watch::Sender::new(last_seq)),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn last_seq(&self) -> u64 {
        self.ring().next_seq - 1
    }

    /// Persist and broadcast one session event.
    pub fn publish(&self, event: ServerEvent) -> Frame {
        let mut ring = self.ring();
        let seq = ring.next_seq;
        ring.next_seq += 1;
        match &event {
            ServerEvent::BlockStart {
                message_id,
                index,
                block_type,
                tool_name,
                tool_id,
            } => {
                ring.open.insert(
                    (message_id.clone(), *index),
                    OpenBlock {
                        block_type: *block_type,
                        tool_name: tool_name.clone(),
                        tool_id: tool_id.clone(),
                        text: String::new(),
                        full: false,
                    },
                );
            }
            ServerEvent::BlockEnd {
                message_id, index, ..
            } => {
                ring.open.remove(&(message_id.clone(), *index));
            }
            _ => {}
        }
        let kind = event.kind();
        let json: Arc<str> = ServerFrame::new(Some(&self.session_id), seq, event)
            .to_json()
            .into();
        let frame = Frame {
            seq,
            json: json.clone(),
        };
        ring.last_publish = std::time::Instant::now();
        ring.frames.push_back(frame.clone());
        while ring.frames.len() > ring.capacity {
            ring.frames.pop_front();
        }
        self.writer.event(EventRow {
            session_id: self.session_id.clone(),
            seq,
            ts: now_ms(),
            kind,
            json,
            persisted: self.persisted.clone(),
        });
        let _ = self.tx.send(frame.clone());
        frame
    }

    /// A live frame for the session's watchers only (not persisted).
    pub fn notify(&self, event: ServerEvent) {
        let json = ServerFrame::new(Some(&self.session_id), 0, event).to_json();
        let _ = self.tx.send(Frame {
            seq: 0,
            json: json.into(),
        });
    }

    /// Append streamed text to an open block and send it live. A delta
    /// for a block that is not open, or past the block's size bound, is
    /// dropped (for every watcher alike).
    pub fn delta(&self, message_id: &str, index: u32, delta_type: DeltaType, text: &str) {
        let mut ring = self.ring();
        let Some(block) = ring.open.get_mut(&(message_id.to_string(), index)) else {
            return;
        };
        if block.full || block.text.len() + text.len() > MAX_BLOCK_TEXT {
            block.full = true;
            return;
        }
        block.text.push_str(text);
        let json = ServerFrame::new(
            Some(&self.session_id),
            0,
            ServerEvent::BlockDelta {
                message_id: message_id.to_string(),
                index,
                delta_type,
                text: text.to_string(),
            },
        )
        .to_json();
        ring.last_publish = std::time::Instant::now();
        let _ = self.tx.send(Frame {
            seq: 0,
            json: json.into(),
        });
    }

    /// Queue the session's row behind the events already published, so the
    /// database never sees an older row after a newer one.
    pub fn save_row(&self, row: super::store::SessionRow) {
        self.writer.row(row);
    }

    /// How long since the last event.
    pub fn quiet_for(&self) -> std::time::Duration {
        self.ring().last_publish.elapsed()
    }

    /// Wait until the writer has committed every event up to `seq` (at
    /// most `limit`); false on timeout.
    pub async fn persisted_up_to(&self, seq: u64, limit: std::time::Duration) -> bool {
        let mut rx = self.persisted.subscribe();
        let done =
            tokio::time::timeout(limit, async { rx.wait_for(|s| *s >= seq).await.is_ok() }).await;
        done.unwrap_or(false)
    }

    /// Frames after `after` still in memory, the open blocks' snapshots, a
    /// receiver for what follows, and the seq range the ring no longer
    /// holds (to read from SQLite), all at one instant.
    pub fn subscribe(&self, after: u64) -> Subscription {
        let ring = self.ring();
        let replay: Vec<Frame> = ring
            .frames
            .iter()
            .filter(|f| f.seq > after)
            .cloned()
            .collect();
        let oldest_in_ring = ring.frames.front().map(|f| f.seq).unwrap_or(ring.next_seq);
        let next = after.saturating_add(1);
        let missing = (next < oldest_in_ring).then_some((next, oldest_in_ring - 1));
        let snapshots = ring
            .open
            .iter()
            .map(|((message_id, index), b)| {
                let json = ServerFrame::new(
                    Some(&self.session_id),
                    0,
                    ServerEvent::BlockSnapshot {
                        message_id: message_id.clone(),
                        index: *index,
                        block_type: b.block_type,
                        text: b.text.clone(),
                        tool_name: b.tool_name.clone(),
                        tool_id: b.tool_id.clone(),
                    },
                )
                .to_json();
                Frame {
                    seq: 0,
                    json: json.into(),
                }
            })
            .collect();
        Subscription {
            replay,
            missing,
            snapshots,
            live: self.tx.subscribe(),
        }
    }
}

pub struct Subscription {
    pub replay: Vec<Frame>,
    /// An inclusive seq range older than the ring: read it from the database.
    pub missing: Option<(u64, u64)>,
    /// `block_snapshot` frames of the blocks streaming now: sent after
    /// every persisted frame, before the live ones.
    pub snapshots: Vec<Frame>,
    pub live: broadcast::Receiver<Frame>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn log(capacity: usize) -> (EventLog, super::super::writer::Receiver) {
        let (writer, rx) = Writer::detached();
        (EventLog::new("s", 0, capacity, writer), rx)
    }

    #[test]
    fn ring_and_subscription_have_no_gap_or_duplicate() {
        let (log, mut rx) = log(3);
        for _ in 0..5 {
            log.publish(ServerEvent::Interrupted {});
        }
        let sub = log.subscribe(1);
        assert_eq!(
            sub.replay.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(sub.missing, Some((2, 2)));
        let mut live = sub.live;
        log.publish(ServerEvent::Interrupted {});
        assert_eq!(live.try_recv().unwrap().seq, 6);
        assert_eq!(rx.drain_count(), 6);
        let v: Value = serde_json::from_str(&log.subscribe(5).replay[0].json).unwrap();
        assert_eq!(v["v"], 2);
        assert_eq!(v["seq"], 6);
        assert_eq!(v["sessionId"], "s");
    }

    #[test]
    fn open_blocks_are_snapshotted_and_deltas_are_not_persisted() {
        let (log, mut rx) = log(100);
        log.publish(ServerEvent::BlockStart {
            message_id: "m".into(),
            index: 0,
            block_type: BlockType::Text,
            tool_name: None,
            tool_id: None,
        });
        log.delta("m", 0, DeltaType::Text, "Hel");
        let sub = log.subscribe(1);
        assert_eq!(sub.snapshots.len(), 1);
        let v: Value = serde_json::from_str(&sub.snapshots[0].json).unwrap();
        assert_eq!(v["type"], "block_snapshot");
        assert_eq!(v["text"], "Hel");
        let mut live = sub.live;
        log.delta("m", 0, DeltaType::Text, "lo");
        let d: Value = serde_json::from_str(&live.try_recv().unwrap().json).unwrap();
        assert_eq!(
            (d["type"].as_str(), d["seq"].as_u64()),
            (Some("block_delta"), Some(0))
        );
        assert_eq!(d["text"], "lo");
        // A delta for a block that is not open goes nowhere.
        log.delta("m", 9, DeltaType::Text, "x");
        assert!(live.try_recv().is_err());
        log.publish(ServerEvent::BlockEnd {
            message_id: "m".into(),
            index: 0,
            block_type: BlockType::Text,
            text: Some("Hello".into()),
            tool_name: None,
            tool_id: None,
            input: None,
            aborted: None,
        });
        assert!(log.subscribe(2).snapshots.is_empty());
        assert_eq!(
            rx.drain_count(),
            2,
            "only block_start and block_end persist"
        );
    }
}
