//! The event writer: events and session rows go to SQLite in the order
//! they were published, batched into one transaction per wake-up.
//!
//! The queue is bounded by back-pressure rather than by dropping: each
//! agent's reader waits in [`Writer::room`] before it handles the next
//! line while more than [`HIGH_WATER`] events wait to be written, so when
//! SQLite falls behind, the agent blocks on its own stdout instead of
//! mitzod's memory growing. (Events from the owner's actions are not held
//! back: they come at a human rate.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot, watch};

use super::store::{self, SessionRow};
use crate::db::Db;
use crate::error::Result;

/// Events waiting to be written above which agent readers wait.
pub const HIGH_WATER: usize = 8192;

/// An event row for the database writer.
#[derive(Debug)]
pub struct EventRow {
    pub session_id: String,
    pub seq: u64,
    pub ts: i64,
    pub kind: &'static str,
    pub json: Arc<str>,
    /// Told the highest committed seq of the session.
    pub persisted: Arc<watch::Sender<u64>>,
}

/// What the database writer does, strictly in the order sent.
#[derive(Debug)]
pub enum Persist {
    Event(EventRow),
    /// The session's row as it is now (state, turns, title, ...).
    Session(SessionRow),
    /// Answer once everything sent before is committed.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Persist>,
    depth: Arc<AtomicUsize>,
    drained: Arc<watch::Sender<()>>,
}

/// The far end of a [`Writer::detached`] (tests).
pub struct Receiver(
    mpsc::UnboundedReceiver<Persist>,
    Arc<AtomicUsize>,
    Arc<watch::Sender<()>>,
);

impl Receiver {
    /// How many events were queued; they count as written.
    pub fn drain_count(&mut self) -> usize {
        let mut n = 0;
        while let Ok(p) = self.0.try_recv() {
            if matches!(p, Persist::Event(_)) {
                n += 1;
                self.1.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.2.send_replace(());
        n
    }
}

impl Writer {
    /// A writer whose queue nothing drains but the returned receiver.
    pub fn detached() -> (Writer, Receiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(watch::Sender::new(()));
        let w = Writer {
            tx,
            depth: depth.clone(),
            drained: drained.clone(),
        };
        (w, Receiver(rx, depth, drained))
    }

    pub fn spawn(db: Db) -> Writer {
        let (w, Receiver(mut rx, depth, drained)) = Writer::detached();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                let mut flushes = Vec::new();
                let mut writes = Vec::new();
                for p in batch {
                    match p {
                        Persist::Flush(done) => flushes.push(done),
                        other => writes.push(other),
                    }
                }
                if !writes.is_empty() {
                    let result = db
                        .call(move |conn| write_batch(conn, &writes).map(|()| writes))
                        .await;
                    match result {
                        Ok(writes) => {
                            let mut events = 0;
                            for w in &writes {
                                if let Persist::Event(e) = w {
                                    events += 1;
                                    e.persisted.send_if_modified(|s| {
                                        let newer = e.seq > *s;
                                        *s = (*s).max(e.seq);
                                        newer
                                    });
                                }
                            }
                            depth.fetch_sub(events, Ordering::SeqCst);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "persisting session events failed");
                            // The rows are lost, and so is their count.
                            depth.store(rx.len(), Ordering::SeqCst);
                        }
                    }
                    drained.send_replace(());
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        w
    }

    pub fn event(&self, row: EventRow) {
        self.depth.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(Persist::Event(row)).is_err() {
            self.depth.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn row(&self, row: SessionRow) {
        let _ = self.tx.send(Persist::Session(row));
    }

    /// Events queued and not yet written.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    /// Wait while the queue is above [`HIGH_WATER`].
    pub async fn room(&self) {
        if self.depth() <= HIGH_WATER {
            return;
        }
        let mut rx = self.drained.subscribe();
        let depth = self.depth.clone();
        let _ = rx
            .wait_for(|_| depth.load(Ordering::SeqCst) <= HIGH_WATER)
            .await;
    }

    /// Wait until everything sent to the writer so far is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Persist::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
        }
    }
}

fn write_batch(conn: &mut Connection, writes: &[Persist]) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut event = tx.prepare_cached(
            "INSERT OR IGNORE INTO events (session_id, seq, ts, kind, frame) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for w in writes {
            match w {
                Persist::Event(e) => {
                    event.execute(params![e.session_id, e.seq as i64, e.ts, e.kind, &*e.json])?;
                }
                Persist::Session(row) => store::update(&tx, row)?,
                Persist::Flush(_) => {}
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn row(seq: u64) -> EventRow {
        EventRow {
            session_id: "s".into(),
            seq,
            ts: 0,
            kind: "x",
            json: Arc::from("{}"),
            persisted: Arc::new(watch::Sender::new(0)),
        }
    }

    #[tokio::test]
    async fn readers_wait_while_the_queue_is_over_its_bound() {
        let (w, mut rx) = Writer::detached();
        for seq in 1..=HIGH_WATER as u64 {
            w.event(row(seq));
        }
        assert!(w.room().now_or_never().is_some(), "at the bound: room");
        w.event(row(HIGH_WATER as u64 + 1));
        let mut waiting = Box::pin(w.room());
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "over it: the reader waits"
        );
        assert_eq!(rx.drain_count(), HIGH_WATER + 1);
        assert!(waiting.now_or_never().is_some(), "written: it goes on");
    }
}
