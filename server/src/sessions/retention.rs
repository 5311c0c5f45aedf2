//! Event-log retention: events older than `session.retain_days` and, per
//! session, the oldest events beyond `session.retain_mb` are dropped; the
//! session row records that its history was compacted, and freed pages go
//! back to the file system (incremental vacuum).
//!
//! Deltas are never stored, so what remains of a compacted session is its
//! newest whole events. The newest event of every session always stays:
//! the next seq is read from it, and replay with a `lastSeq` inside or
//! after the kept range goes on working.

use rusqlite::{params, Connection};

use crate::error::Result;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Events deleted for their age.
    pub aged_out: usize,
    /// Events deleted for their session's size.
    pub over_size: usize,
    /// Sessions marked as compacted by this pass.
    pub sessions: Vec<String>,
    /// Pages freed from the database file by the incremental vacuum.
    pub pages_freed: i64,
}

/// One retention pass at time `now_ms` (milliseconds, as the events' `ts`).
pub fn run(
    conn: &mut Connection,
    retain_days: u64,
    retain_bytes: u64,
    now_ms: i64,
) -> Result<RetentionReport> {
    let cutoff = now_ms.saturating_sub((retain_days as i64).saturating_mul(86_400_000));
    let retain_bytes = retain_bytes.min(i64::MAX as u64) as i64;
    let tx = conn.transaction()?;
    // Which events go: older than the cutoff, or beyond the size counted
    // from the newest; never a session's newest event.
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS retention_drop (session_id TEXT NOT NULL, seq INTEGER NOT NULL, aged INTEGER NOT NULL);
         DELETE FROM retention_drop;",
    )?;
    tx.execute(
        "INSERT INTO retention_drop (session_id, seq, aged)
         SELECT session_id, seq, ts < ?1 FROM (
             SELECT session_id, seq, ts,
                 SUM(length(CAST(frame AS BLOB))) OVER (PARTITION BY session_id ORDER BY seq DESC) AS newer_bytes,
                 ROW_NUMBER() OVER (PARTITION BY session_id ORDER BY seq DESC) AS rank
             FROM events
         ) WHERE rank > 1 AND (ts < ?1 OR newer_bytes > ?2)",
        params![cutoff, retain_bytes],
    )?;
    let (aged_out, over_size): (i64, i64) = tx.query_row(
        "SELECT COALESCE(SUM(aged), 0), COALESCE(SUM(1 - aged), 0) FROM retention_drop",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute(
        "DELETE FROM events WHERE (session_id, seq) IN (SELECT session_id, seq FROM retention_drop)",
        [],
    )?;
    let sessions = tx
        .prepare(
            "UPDATE sessions SET history_compacted = 1
             WHERE history_compacted = 0 AND id IN (SELECT DISTINCT session_id FROM retention_drop)
             RETURNING id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    tx.execute("DELETE FROM retention_drop", [])?;
    tx.commit()?;
    let before: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    if aged_out + over_size > 0 {
        // Each step frees one page: step to the end. A no-op where
        // auto_vacuum is not incremental.
        let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = vacuum.query([])?;
        while rows.next()?.is_some() {}
    }
    let after: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    Ok(RetentionReport {
        aged_out: aged_out as usize,
        over_size: over_size as usize,
        sessions,
        pages_freed: before - after,
    })
}

/// Whether retention dropped part of the session's history.
pub fn history_compacted(conn: &Connection, id: &str) -> Result<bool> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT history_compacted FROM sessions WHERE id = ?1",
            [id],
            |r| r.get::<_, bool>(0),
        )
        .optional()?
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::protocol::{Mode, SessionState};
    use crate::sessions::store::{self, SessionRow};

    const DAY_MS: i64 = 86_400_000;

    fn session(id: &str) -> SessionRow {
        SessionRow {
            id: id.into(),
            source: "test".into(),
            summary: String::new(),
            title: String::new(),
            mode: Mode::Ask,
            model: None,
            repo: "/r".into(),
            repo_name: "r".into(),
            cwd: "/r".into(),
            branch: None,
            isolation: false,
            headless: false,
            agent_session_id: None,
            state: SessionState::Stopped,
            num_turns: 0,
            created_at: 1,
            last_modified: 1,
            history_compacted: false,
        }
    }

    fn add_events(c: &Connection, id: &str, seqs: std::ops::RangeInclusive<u64>, ts: i64) {
        // 4 KiB frames: 1 MiB is 256 of them.
        let pad = "x".repeat(4096 - 40);
        for seq in seqs {
            let frame = format!("{{\"seq\":{seq:>10},\"pad\":\"{pad}\"}}");
            c.execute(
                "INSERT INTO events (session_id, seq, ts, kind, frame) VALUES (?1, ?2, ?3, 'message', ?4)",
                params![id, seq as i64, ts, frame],
            )
            .unwrap();
        }
    }

    fn seqs(c: &Connection, id: &str) -> Vec<u64> {
        store::events(c, id, 0, u64::MAX, u32::MAX)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    fn pages(c: &Connection) -> (i64, i64) {
        let count = c
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        let free = c
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .unwrap();
        (count, free)
    }

    #[test]
    fn retention_drops_the_oldest_beyond_size_and_age_and_shrinks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        let now = 100 * DAY_MS;
        db.with(|c| {
            // "big": 1024 recent events of 4 KiB (4 MiB), over a 1 MiB limit.
            store::insert(c, &session("big"))?;
            add_events(c, "big", 1..=1024, now - DAY_MS);
            // "old": 10 events 40 days old, then 5 from yesterday.
            store::insert(c, &session("old"))?;
            add_events(c, "old", 1..=10, now - 40 * DAY_MS);
            add_events(c, "old", 11..=15, now - DAY_MS);
            // "ancient": every event old; its newest must stay.
            store::insert(c, &session("ancient"))?;
            add_events(c, "ancient", 1..=3, now - 90 * DAY_MS);
            // "small": within both limits, untouched (control).
            store::insert(c, &session("small"))?;
            add_events(c, "small", 1..=20, now - DAY_MS);
            Ok(())
        })
        .unwrap();
        let (pages_before, _) = db.with(|c| Ok(pages(c))).unwrap();

        let report = db.with(|c| run(c, 30, 1024 * 1024, now)).unwrap();

        db.with(|c| {
            // Newest events kept, within the size, contiguous up to the last.
            let big = seqs(c, "big");
            let kept_bytes: usize = store::events(c, "big", 0, u64::MAX, u32::MAX)?
                .iter()
                .map(|(_, f)| f.len())
                .sum();
            assert!(kept_bytes <= 1024 * 1024, "{kept_bytes} bytes kept");
            assert!(big.len() >= 250, "only {} events kept", big.len());
            assert_eq!(*big.last().unwrap(), 1024);
            let first = big[0];
            assert_eq!(big, (first..=1024).collect::<Vec<_>>());
            assert_eq!(seqs(c, "old"), (11..=15).collect::<Vec<_>>());
            assert_eq!(seqs(c, "ancient"), vec![3]);
            assert_eq!(seqs(c, "small"), (1..=20).collect::<Vec<_>>());
            // The next seq carries on after the kept range.
            assert_eq!(store::last_seq(c, "big")?, 1024);
            assert_eq!(store::last_seq(c, "ancient")?, 3);

            // Replay after a lastSeq inside the kept range: the rest, in order.
            let replay: Vec<u64> = store::events(c, "big", 1001, u64::MAX, 1000)?
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            assert_eq!(replay, (1001..=1024).collect::<Vec<_>>());
            // Paging backwards (`?before=`) walks what remains and ends.
            let mut before = u64::MAX;
            let mut paged = Vec::new();
            loop {
                let (page, more) = store::events_before(c, "big", before, 100)?;
                let Some(&(oldest, _)) = page.first() else {
                    break;
                };
                paged.splice(0..0, page.into_iter().map(|(s, _)| s));
                before = oldest;
                if !more {
                    break;
                }
            }
            assert_eq!(paged, big);

            // Marked compacted; the untouched session is not.
            for id in ["big", "old", "ancient"] {
                assert!(history_compacted(c, id)?, "{id} not marked");
            }
            assert!(!history_compacted(c, "small")?);
            // What lists read (and `historyCompacted` shows).
            let (listed, _) = store::list(c, 0, 10)?;
            for r in &listed {
                assert_eq!(r.history_compacted, r.id != "small", "{}", r.id);
            }
            assert_eq!(listed.len(), 4);
            let mut marked = report.sessions.clone();
            marked.sort();
            assert_eq!(marked, ["ancient", "big", "old"]);
            assert_eq!(report.aged_out, 10 + 2);
            assert_eq!(report.over_size, 1024 - big.len());

            // The file gave its pages back.
            let (pages_after, free_after) = pages(c);
            assert!(
                pages_after < pages_before / 2,
                "{pages_before} pages before, {pages_after} after"
            );
            assert_eq!(free_after, 0);
            assert_eq!(report.pages_freed, pages_before - pages_after);
            Ok(())
        })
        .unwrap();

        // A second pass finds nothing more to drop.
        let again = db.with(|c| run(c, 30, 1024 * 1024, now)).unwrap();
        assert_eq!((again.aged_out, again.over_size), (0, 0));
        assert!(again.sessions.is_empty());
    }
}
