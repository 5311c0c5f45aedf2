//! Sessions, their events and the permission audit log in SQLite.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::Result;
use mitzo_protocol::{Mode, SessionState};

// The schema: src/migrations/0003_sessions.sql and 0004_session_state.sql.

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    pub id: String,
    pub source: String,
    pub summary: String,
    pub title: String,
    pub mode: Mode,
    pub model: Option<String>,
    pub repo: String,
    pub repo_name: String,
    pub cwd: String,
    pub branch: Option<String>,
    pub isolation: bool,
    pub headless: bool,
    pub agent_session_id: Option<String>,
    pub state: SessionState,
    pub num_turns: i64,
    pub created_at: i64,
    pub last_modified: i64,
    /// Retention dropped part of its events; set only by retention.
    pub history_compacted: bool,
}

/// Written by `insert`: all but `history_compacted`.
const COLUMNS: &str = "id, source, summary, title, mode, model, repo, repo_name, cwd, branch, isolation, headless, agent_session_id, state, num_turns, created_at, last_modified";
/// Read by `get` and `list`.
const READ_COLUMNS: &str = "id, source, summary, title, mode, model, repo, repo_name, cwd, branch, isolation, headless, agent_session_id, state, num_turns, created_at, last_modified, history_compacted";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    let bad = |i: usize, what: &str, v: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what} {v:?}").into(),
        )
    };
    let mode: String = r.get(4)?;
    let state: String = r.get(13)?;
    Ok(SessionRow {
        id: r.get(0)?,
        source: r.get(1)?,
        summary: r.get(2)?,
        title: r.get(3)?,
        mode: Mode::parse(&mode).ok_or_else(|| bad(4, "mode", mode.clone()))?,
        model: r.get(5)?,
        repo: r.get(6)?,
        repo_name: r.get(7)?,
        cwd: r.get(8)?,
        branch: r.get(9)?,
        isolation: r.get(10)?,
        headless: r.get(11)?,
        agent_session_id: r.get(12)?,
        state: SessionState::parse(&state).ok_or_else(|| bad(13, "state", state.clone()))?,
        num_turns: r.get(14)?,
        created_at: r.get(15)?,
        last_modified: r.get(16)?,
        history_compacted: r.get(17)?,
    })
}

pub fn insert(conn: &Connection, s: &SessionRow) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
        params![
            s.id, s.source, s.summary, s.title, s.mode.as_str(), s.model, s.repo, s.repo_name, s.cwd, s.branch,
            s.isolation, s.headless, s.agent_session_id, s.state.as_str(), s.num_turns, s.created_at,
            s.last_modified
        ],
    )?;
    Ok(())
}

pub fn update(conn: &Connection, s: &SessionRow) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET summary = ?2, mode = ?3, model = ?4, agent_session_id = ?5, state = ?6, num_turns = ?7, last_modified = ?8, title = ?9 WHERE id = ?1",
        params![
            s.id, s.summary, s.mode.as_str(), s.model, s.agent_session_id, s.state.as_str(), s.num_turns,
            s.last_modified, s.title
        ],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<SessionRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {READ_COLUMNS} FROM sessions WHERE id = ?1 AND hidden = 0"),
            [id],
            row,
        )
        .optional()?)
}

pub fn list(conn: &Connection, offset: u32, limit: u32) -> Result<(Vec<SessionRow>, bool)> {
    let rows = query(
        conn,
        &format!(
            "SELECT {READ_COLUMNS} FROM sessions WHERE hidden = 0 ORDER BY last_modified DESC, id DESC LIMIT ?1 OFFSET ?2"
        ),
        params![limit + 1, offset],
        row,
    )?;
    Ok(split_more(rows, limit))
}

pub fn hide(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE sessions SET hidden = 1, state = 'stopped' WHERE id = ?1 AND hidden = 0",
        [id],
    )? > 0)
}

/// Sessions that were live when mitzod stopped: shown as interrupted now.
pub fn mark_interrupted(conn: &Connection) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE sessions SET state = 'interrupted' WHERE state IN ('running', 'requires_action', 'idle') AND hidden = 0",
        [],
    )?)
}

pub fn last_seq(conn: &Connection, id: &str) -> Result<u64> {
    let seq: Option<i64> = conn.query_row(
        "SELECT MAX(seq) FROM events WHERE session_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Store one event's frame (a seq already stored is left as it is).
pub fn insert_event(
    conn: &Connection,
    id: &str,
    seq: u64,
    ts: i64,
    kind: &str,
    frame: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO events (session_id, seq, ts, kind, frame) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, clamp(seq), ts, kind, frame])?;
    Ok(())
}

/// Up to `limit` frames with `seq < before`, oldest first, and whether
/// older ones exist.
pub fn events_before(
    conn: &Connection,
    id: &str,
    before: u64,
    limit: u32,
) -> Result<(Vec<(u64, String)>, bool)> {
    let rows = query(
        conn,
        "SELECT seq, frame FROM events WHERE session_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        params![id, clamp(before), limit + 1],
        seq_frame,
    )?;
    let (mut out, more) = split_more(rows, limit);
    out.reverse();
    Ok((out, more))
}

/// Frames with `from <= seq <= to` as (seq, stored JSON text), oldest first.
pub fn events(
    conn: &Connection,
    id: &str,
    from: u64,
    to: u64,
    limit: u32,
) -> Result<Vec<(u64, String)>> {
    query(
        conn,
        "SELECT seq, frame FROM events WHERE session_id = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
        params![id, clamp(from), clamp(to), limit],
        seq_frame,
    )
}

/// Every row of a query, mapped; the statement stays cached for the next
/// call (lists and replays run the same few queries again and again).
fn query<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params, map)?
        .collect::<rusqlite::Result<Vec<T>>>()?;
    Ok(rows)
}

/// A page read with one row more than `limit`: the page, and whether more
/// rows were there.
fn split_more<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    (rows, more)
}

fn seq_frame(r: &rusqlite::Row<'_>) -> rusqlite::Result<(u64, String)> {
    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
}

/// A seq as SQLite's signed integer (`u64::MAX` means "no bound").
fn clamp(seq: u64) -> i64 {
    seq.min(i64::MAX as u64) as i64
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub id: i64,
    pub ts: i64,
    pub session_id: String,
    pub tool: String,
    pub input_summary: String,
    pub decision: String,
    pub decided_by: String,
}

pub fn audit_insert(
    conn: &Connection,
    ts: i64,
    session_id: &str,
    tool: &str,
    summary: &str,
    decision: &str,
    by: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (ts, session_id, tool, input_summary, decision, decided_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![ts, session_id, tool, summary, decision, by],
    )?;
    Ok(())
}

pub fn audit_list(
    conn: &Connection,
    session_id: Option<&str>,
    limit: u32,
) -> Result<Vec<AuditRow>> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(AuditRow {
            id: r.get(0)?,
            ts: r.get(1)?,
            session_id: r.get(2)?,
            tool: r.get(3)?,
            input_summary: r.get(4)?,
            decision: r.get(5)?,
            decided_by: r.get(6)?,
        })
    };
    const SQL: &str =
        "SELECT id, ts, session_id, tool, input_summary, decision, decided_by FROM audit";
    match session_id {
        Some(id) => query(
            conn,
            &format!("{SQL} WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2"),
            params![id, limit],
            map,
        ),
        None => query(
            conn,
            &format!("{SQL} ORDER BY id DESC LIMIT ?1"),
            params![limit],
            map,
        ),
    }
}
