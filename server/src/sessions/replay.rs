//! Replay and subscription: a watcher gets the persisted events it missed
//! (from the ring, or SQLite for older ones), the blocks streaming now as
//! snapshots, then the live frames, with no gap and no duplicate; and the
//! REST history pages.

use std::sync::Arc;
use std::time::Duration;

use super::events::{Frame, Subscription};
use super::store;
use super::{Session, SessionManager};
use crate::error::Result;
use mitzo_protocol::StoredFrame;

/// Longest wait for the writer to commit events a replay needs.
const REPLAY_WAIT: Duration = Duration::from_secs(10);

impl SessionManager {
    /// Up to `limit` events after `after`, oldest first, and whether
    /// newer ones exist (REST).
    pub async fn events_after(
        &self,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<StoredFrame>, bool)> {
        let owned = id.to_string();
        let mut frames = self
            .deps
            .db
            .call(move |c| {
                store::events(
                    c,
                    &owned,
                    after.saturating_add(1),
                    u64::MAX,
                    limit.saturating_add(1),
                )
            })
            .await?;
        let more = frames.len() > limit as usize;
        frames.truncate(limit as usize);
        Ok((stored(id, frames), more))
    }

    /// Up to `limit` events before `before`, oldest first, and whether
    /// older ones exist: a long chat opens at its end and pages back.
    pub async fn events_before(
        &self,
        session: &Session,
        before: u64,
        limit: u32,
    ) -> Result<(Vec<StoredFrame>, bool)> {
        // What was published must be in the database before it is read.
        let last = session.log.last_seq().min(before.saturating_sub(1));
        if !session.log.persisted_up_to(last, REPLAY_WAIT).await {
            tracing::warn!(session = %session.id, "history read before the writer caught up");
        }
        let owned = session.id.clone();
        let (frames, more) = self
            .deps
            .db
            .call(move |c| store::events_before(c, &owned, before, limit))
            .await?;
        Ok((stored(&session.id, frames), more))
    }

    /// Subscribe with no gap: the ring, the database for older events
    /// (once the writer has committed them: a signal, not a poll), and
    /// the open blocks' snapshots last. Persisted frames come in seq
    /// order; snapshots have seq 0.
    pub async fn subscribe(
        &self,
        session: &Session,
        after: u64,
    ) -> Result<(Vec<Frame>, Subscription)> {
        let mut sub = session.log.subscribe(after);
        let mut frames: Vec<Frame> = Vec::new();
        if let Some((from, to)) = sub.missing {
            if !session.log.persisted_up_to(to, REPLAY_WAIT).await {
                tracing::warn!(session = %session.id, from, to, "replay from the database may be incomplete");
            }
            let id = session.id.clone();
            let rows = self
                .deps
                .db
                .call(move |c| store::events(c, &id, from, to, 100_000))
                .await?;
            frames.extend(rows.into_iter().map(|(seq, json)| Frame {
                seq,
                json: Arc::from(json),
            }));
        }
        frames.append(&mut sub.replay);
        frames.append(&mut sub.snapshots);
        Ok((frames, sub))
    }
}

/// Stored frames for a page; one that is not JSON (never written so) is
/// left out and logged.
fn stored(session: &str, frames: Vec<(u64, String)>) -> Vec<StoredFrame> {
    frames
        .into_iter()
        .filter_map(|(seq, json)| {
            let frame = StoredFrame::new(json);
            if frame.is_none() {
                tracing::warn!(
                    session,
                    seq,
                    "a stored event is not JSON; left out of the page"
                );
            }
            frame
        })
        .collect()
}
