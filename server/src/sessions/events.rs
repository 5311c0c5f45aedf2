//! A session's event stream: strictly increasing `seq`, a bounded ring in
//! memory for reconnects, SQLite behind it, and a broadcast to watchers.
//! Subscribing and publishing take the same lock, so a subscriber gets every
//! event after its `lastSeq` exactly once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};

/// One server frame, serialised once and shared by every watcher.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub json: Arc<str>,
}

/// An event row for the database writer.
#[derive(Debug)]
pub struct EventRow {
    pub session_id: String,
    pub seq: u64,
    pub ts: i64,
    pub kind: String,
    pub json: Arc<str>,
}

/// What the database writer does, strictly in the order sent.
#[derive(Debug)]
pub enum Persist {
    Event(EventRow),
    /// The session's row as it is now (state, turns, agent session id).
    Session(super::store::SessionRow),
    /// Answer once everything sent before is committed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

pub struct EventLog {
    session_id: String,
    inner: Mutex<Ring>,
    tx: broadcast::Sender<Frame>,
    persist: mpsc::UnboundedSender<Persist>,
}

struct Ring {
    next_seq: u64,
    capacity: usize,
    frames: VecDeque<Frame>,
    last_publish: std::time::Instant,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `{v: 2, ts, sessionId, seq, type, ...payload}`.
pub fn frame_json(session_id: Option<&str>, seq: u64, kind: &str, payload: Value) -> String {
    let mut obj = Map::new();
    obj.insert("v".into(), Value::from(2));
    obj.insert("ts".into(), Value::from(now_ms()));
    obj.insert(
        "sessionId".into(),
        session_id.map(Value::from).unwrap_or(Value::Null),
    );
    obj.insert("seq".into(), Value::from(seq));
    obj.insert("type".into(), Value::from(kind));
    if let Value::Object(fields) = payload {
        for (k, v) in fields {
            obj.entry(k).or_insert(v);
        }
    }
    Value::Object(obj).to_string()
}

impl EventLog {
    pub fn new(
        session_id: &str,
        last_seq: u64,
        capacity: usize,
        persist: mpsc::UnboundedSender<Persist>,
    ) -> EventLog {
        let (tx, _) = broadcast::channel(capacity.max(16));
        EventLog {
            session_id: session_id.to_string(),
            inner: Mutex::new(Ring {
                next_seq: last_seq + 1,
                capacity,
                frames: VecDeque::new(),
                last_publish: std::time::Instant::now(),
            }),
            tx,
            persist,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.inner.lock().map(|r| r.next_seq - 1).unwrap_or(0)
    }

    pub fn publish(&self, kind: &str, payload: Value) -> Frame {
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = ring.next_seq;
        ring.next_seq += 1;
        let json: Arc<str> = frame_json(Some(&self.session_id), seq, kind, payload).into();
        let frame = Frame {
            seq,
            json: json.clone(),
        };
        ring.last_publish = std::time::Instant::now();
        ring.frames.push_back(frame.clone());
        while ring.frames.len() > ring.capacity {
            ring.frames.pop_front();
        }
        let _ = self.persist.send(Persist::Event(EventRow {
            session_id: self.session_id.clone(),
            seq,
            ts: now_ms(),
            kind: kind.to_string(),
            json,
        }));
        let _ = self.tx.send(frame.clone());
        frame
    }

    /// Queue the session's row behind the events already published, so the
    /// database never sees an older row after a newer one.
    pub fn save_row(&self, row: super::store::SessionRow) {
        let _ = self.persist.send(Persist::Session(row));
    }

    /// How long since the last event.
    pub fn quiet_for(&self) -> std::time::Duration {
        self.inner
            .lock()
            .map(|r| r.last_publish.elapsed())
            .unwrap_or_default()
    }

    /// Frames after `after` still in memory, a receiver for what follows,
    /// and the first seq the ring no longer holds (to fetch from SQLite).
    pub fn subscribe(&self, after: u64) -> Subscription {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let replay: Vec<Frame> = ring
            .frames
            .iter()
            .filter(|f| f.seq > after)
            .cloned()
            .collect();
        let oldest_in_ring = ring.frames.front().map(|f| f.seq).unwrap_or(ring.next_seq);
        let next = after.saturating_add(1);
        let missing = (next < oldest_in_ring).then_some((next, oldest_in_ring - 1));
        Subscription {
            replay,
            missing,
            live: self.tx.subscribe(),
        }
    }
}

pub struct Subscription {
    pub replay: Vec<Frame>,
    /// An inclusive seq range older than the ring: read it from the database.
    pub missing: Option<(u64, u64)>,
    pub live: broadcast::Receiver<Frame>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_and_subscription_have_no_gap_or_duplicate() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = EventLog::new("s", 0, 3, tx);
        for i in 0..5 {
            log.publish("x", serde_json::json!({"i": i}));
        }
        let sub = log.subscribe(1);
        assert_eq!(
            sub.replay.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(sub.missing, Some((2, 2)));
        let mut live = sub.live;
        log.publish("x", serde_json::json!({}));
        assert_eq!(live.try_recv().unwrap().seq, 6);
        let mut persisted = 0;
        while rx.try_recv().is_ok() {
            persisted += 1;
        }
        assert_eq!(persisted, 6);
        let v: Value = serde_json::from_str(&log.subscribe(5).replay[0].json).unwrap();
        assert_eq!(v["v"], 2);
        assert_eq!(v["seq"], 6);
        assert_eq!(v["sessionId"], "s");
    }
}
