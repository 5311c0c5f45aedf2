//! Event-log retention. A session over a limit (events older than
//! `session.retain_days`, or more than `session.retain_mb` of stored
//! frames) is first compacted to its messages: in its finished turns only
//! what a reader of the chat needs stays (prompts, final block texts, tool
//! calls and their results, permission decisions, results, notes). Then,
//! if still over, its oldest whole events are dropped. The session row
//! records that its history was compacted, and freed pages go back to the
//! file system (incremental vacuum).
//!
//! Seqs are never renumbered: replay after a `lastSeq` and paging back
//! walk what remains, with gaps where events went. The newest event of
//! every session always stays, since the next seq is read from it.

use std::collections::HashSet;

use rusqlite::{params, Connection, Transaction};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Result;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Events removed, or rewritten smaller, by compaction.
    pub compacted: usize,
    /// Events deleted for their age.
    pub aged_out: usize,
    /// Events deleted for their session's size.
    pub over_size: usize,
    /// Sessions marked as compacted by this pass.
    pub sessions: Vec<String>,
    /// Pages given back to the file system (incremental vacuum, VACUUM).
    pub pages_freed: i64,
    /// The file was rebuilt (`VACUUM`) to give back part-empty pages.
    pub vacuumed: bool,
}

impl RetentionReport {
    pub fn changed(&self) -> bool {
        self.compacted + self.aged_out + self.over_size > 0
    }
}

/// Kinds a finished turn does not need: live text (never stored now, but
/// an older database may hold it), the brackets of a message, passing
/// states, and a timeout that its resolution repeats.
const TRANSIENT: &[&str] = &[
    "block_delta",
    "block_snapshot",
    "message_start",
    "message_end",
    "session_state_changed",
    "permission_timeout",
];

/// Slack below which the file is not rebuilt, whatever the ratio.
const SLACK_BYTES: i64 = 256 * 1024;

/// The fields compaction looks at; the rest of a frame stays as it is.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Fields {
    message_id: Option<String>,
    index: Option<u32>,
    block_type: Option<String>,
    text: Option<String>,
    perm_id: Option<String>,
    tool_id: Option<String>,
    result: Option<Value>,
}

struct Stored {
    seq: u64,
    kind: String,
    frame: String,
}

#[derive(Default)]
struct Plan {
    delete: Vec<u64>,
    rewrite: Vec<(u64, String)>,
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
    let mut marked: HashSet<String> = HashSet::new();

    // 1. Compaction of the sessions over a limit, in their finished turns.
    let sizes: Vec<(String, i64, i64)> = tx
        .prepare(
            "SELECT session_id, SUM(length(CAST(frame AS BLOB))), MIN(ts) FROM events GROUP BY session_id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let over: Vec<String> = sizes
        .iter()
        .filter(|(_, bytes, oldest)| *bytes > retain_bytes || *oldest < cutoff)
        .map(|(id, _, _)| id.clone())
        .collect();
    let mut compacted = 0;
    for id in &over {
        let n = compact_session(&tx, id)?;
        if n > 0 {
            compacted += n;
            marked.insert(id.clone());
        }
    }

    // 2. Which events go: older than the cutoff, or beyond the size counted
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
             FROM events WHERE session_id IN (SELECT value FROM json_each(?3))
         ) WHERE rank > 1 AND (ts < ?1 OR newer_bytes > ?2)",
        params![cutoff, retain_bytes, Value::from(over.clone()).to_string()],
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
    {
        let mut dropped = tx.prepare("SELECT DISTINCT session_id FROM retention_drop")?;
        for id in dropped.query_map([], |r| r.get::<_, String>(0))? {
            marked.insert(id?);
        }
    }
    tx.execute("DELETE FROM retention_drop", [])?;
    let mut sessions = Vec::new();
    {
        let mut mark = tx.prepare(
            "UPDATE sessions SET history_compacted = 1 WHERE id = ?1 AND history_compacted = 0",
        )?;
        let mut ids: Vec<&String> = marked.iter().collect();
        ids.sort();
        for id in ids {
            if mark.execute([id])? > 0 {
                sessions.push(id.clone());
            }
        }
    }
    tx.commit()?;

    let before: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let changed = compacted as i64 + aged_out + over_size > 0;
    if changed {
        // Each step frees one page: step to the end. A no-op where
        // auto_vacuum is not incremental.
        let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = vacuum.query([])?;
        while rows.next()?.is_some() {}
    }
    let mut vacuumed = false;
    if changed {
        // Deleting rows between others leaves pages part empty, which the
        // incremental vacuum cannot give back. A packed file is about 1.2x
        // the frames it holds; past 1.5x, rebuild it (this holds the
        // database for the time of one copy; a pass that cannot, on a full
        // disk, leaves it as it is).
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        let live: i64 = conn.query_row(
            "SELECT COALESCE(SUM(length(CAST(frame AS BLOB))), 0) FROM events",
            [],
            |r| r.get(0),
        )?;
        if pages * page_size > live * 3 / 2 + SLACK_BYTES {
            match conn.execute_batch("VACUUM") {
                Ok(()) => vacuumed = true,
                Err(e) => tracing::warn!(
                    "event-log retention: VACUUM failed, the file keeps its size: {e}"
                ),
            }
        }
    }
    let after: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    Ok(RetentionReport {
        compacted,
        aged_out: aged_out as usize,
        over_size: over_size as usize,
        sessions,
        pages_freed: before - after,
        vacuumed,
    })
}

/// Compacts a session's finished turns (up to its last `result` or
/// `session_end`); returns how many events were removed or rewritten.
/// Running it again on the same history changes nothing.
fn compact_session(tx: &Transaction<'_>, id: &str) -> Result<usize> {
    let horizon: Option<i64> = tx.query_row(
        "SELECT MAX(seq) FROM events WHERE session_id = ?1 AND kind IN ('result', 'session_end')",
        [id],
        |r| r.get(0),
    )?;
    let Some(horizon) = horizon else {
        return Ok(0);
    };
    let mut plan = Plan::default();
    let mut seen_tools = HashSet::new();
    {
        let mut stmt = tx.prepare(
            "SELECT seq, kind, frame FROM events WHERE session_id = ?1 AND seq <= ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![id, horizon])?;
        // One turn at a time (a prompt starts the next), so that memory
        // holds a turn, not the whole history.
        let mut turn: Vec<Stored> = Vec::new();
        while let Some(r) = rows.next()? {
            let row = Stored {
                seq: r.get::<_, i64>(0)? as u64,
                kind: r.get(1)?,
                frame: r.get(2)?,
            };
            if row.kind == "user_message" && !turn.is_empty() {
                compact_turn(&turn, &mut seen_tools, &mut plan);
                turn.clear();
            }
            turn.push(row);
        }
        compact_turn(&turn, &mut seen_tools, &mut plan);
    }
    let mut delete = tx.prepare("DELETE FROM events WHERE session_id = ?1 AND seq = ?2")?;
    for seq in &plan.delete {
        delete.execute(params![id, *seq as i64])?;
    }
    let mut rewrite =
        tx.prepare("UPDATE events SET frame = ?3 WHERE session_id = ?1 AND seq = ?2")?;
    for (seq, frame) in &plan.rewrite {
        rewrite.execute(params![id, *seq as i64, frame])?;
    }
    Ok(plan.delete.len() + plan.rewrite.len())
}

/// What of one finished turn goes, and what is rewritten smaller.
fn compact_turn(turn: &[Stored], seen_tools: &mut HashSet<String>, plan: &mut Plan) {
    let fields = |s: &Stored| serde_json::from_str::<Fields>(&s.frame).unwrap_or_default();
    // Blocks that ended and permissions that were decided in this turn:
    // their end and their decision say all their start and request did.
    let mut ended: HashSet<(String, u32)> = HashSet::new();
    let mut decided: HashSet<String> = HashSet::new();
    for s in turn {
        match s.kind.as_str() {
            "block_end" => {
                let f = fields(s);
                if let (Some(m), Some(i)) = (f.message_id, f.index) {
                    ended.insert((m, i));
                }
            }
            "permission_resolved" => {
                if let Some(p) = fields(s).perm_id {
                    decided.insert(p);
                }
            }
            _ => {}
        }
    }
    let mut last_text: Option<String> = None;
    for s in turn {
        let kind = s.kind.as_str();
        if TRANSIENT.contains(&kind) {
            plan.delete.push(s.seq);
            continue;
        }
        match kind {
            "block_start" => {
                let f = fields(s);
                if let (Some(m), Some(i)) = (f.message_id, f.index) {
                    if ended.contains(&(m, i)) {
                        plan.delete.push(s.seq);
                    }
                }
            }
            "permission_request" | "question_request"
                if fields(s).perm_id.is_some_and(|p| decided.contains(&p)) =>
            {
                plan.delete.push(s.seq);
            }
            "block_end" => {
                let f = fields(s);
                if f.block_type.as_deref() == Some("text") {
                    last_text = f.text;
                }
            }
            "tool_result" => {
                // The same tool's output again (an agent resumed after a
                // restart repeats it): the first copy stays.
                if let Some(t) = fields(s).tool_id {
                    if !seen_tools.insert(t) {
                        plan.delete.push(s.seq);
                    }
                }
            }
            "result" => {
                // A result's text repeats the turn's last text block.
                let f = fields(s);
                if let (Some(Value::String(r)), Some(t)) = (&f.result, &last_text) {
                    if r == t {
                        if let Ok(Value::Object(mut o)) = serde_json::from_str::<Value>(&s.frame) {
                            o.remove("result");
                            if let Ok(frame) = serde_json::to_string(&o) {
                                plan.rewrite.push((s.seq, frame));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether retention compacted or dropped part of the session's history.
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
#[path = "retention_tests.rs"]
mod tests;
