//! The task board: tasks in SQLite (same database), the agent task tools,
//! and signals (CI, review, approval) that move matching tasks on.
//!
//! Every function here runs on one connection and does all its rows in one
//! transaction, returning the events to publish once it has committed.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Deserializer, Serialize};

use mitzo_protocol::now_ms;

use crate::auth::Caller;
use crate::error::{Error, Result};

pub const MAX_TITLE: usize = 200;
pub const MAX_TEXT: usize = 10_000;
pub const MAX_KEY: usize = 100;
pub const MAX_VALUE: usize = 4_096;
pub const MAX_ARTIFACTS: usize = 64;
pub const MAX_SET: usize = 100;
pub const MAX_SESSION_ID: usize = 128;
pub const MAX_PRIORITY: i64 = 100;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Todo,
    InProgress,
    Blocked,
    Review,
    Done,
}

impl Status {
    pub const ALL: &'static str = "todo, in_progress, blocked, review, done";

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Todo => "todo",
            Status::InProgress => "in_progress",
            Status::Blocked => "blocked",
            Status::Review => "review",
            Status::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Result<Status> {
        Ok(match s {
            "todo" => Status::Todo,
            "in_progress" => Status::InProgress,
            "blocked" => Status::Blocked,
            "review" => Status::Review,
            "done" => Status::Done,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown status {:?}; allowed: {}",
                    truncate(other, 40),
                    Status::ALL
                )))
            }
        })
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A status as it arrives: any string, so that an unknown one gets a 400
/// naming the allowed ones.
#[derive(Debug, Clone)]
pub struct StatusField(pub String);

impl<'de> Deserialize<'de> for StatusField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(StatusField)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: i64,
    pub session_id: Option<String>,
    pub artifacts: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Pushed to watching WebSocket clients.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskEvent {
    TaskUpdated { task: Task },
    TaskDeleted { id: String },
}

// ---------- request bodies ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTask {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub status: Option<StatusField>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub artifacts: Option<BTreeMap<String, String>>,
}

/// `null` vs absent, for fields a PATCH may clear.
fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchTask {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub status: Option<StatusField>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    pub session_id: Option<Option<String>>,
    /// Merged into the task's artifacts; a `null` value removes that key.
    #[serde(default)]
    pub artifacts: Option<BTreeMap<String, Option<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    pub feedback: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToolTask {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    pub tasks: Vec<NewToolTask>,
    /// Mitzo's way to name the session: the body's `clientId`.
    #[serde(default, rename = "clientId")]
    pub client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    pub summary: String,
    /// Mitzo's way to name the session: the body's `clientId`.
    #[serde(default, rename = "clientId")]
    pub client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    pub reason: String,
    /// Mitzo's way to name the session: the body's `clientId`.
    #[serde(default, rename = "clientId")]
    pub client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactBody {
    pub key: String,
    pub value: String,
    /// Mitzo's way to name the session: the body's `clientId`.
    #[serde(default, rename = "clientId")]
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalType {
    GhCi,
    GhReview,
    HumanApproval,
}

/// A PR number as a number or a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PrRef {
    Num(u64),
    Text(String),
}

impl PrRef {
    fn text(&self) -> String {
        match self {
            PrRef::Num(n) => n.to_string(),
            PrRef::Text(s) => s.trim().trim_start_matches('#').to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    #[serde(rename = "type")]
    pub kind: SignalType,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub pr: Option<PrRef>,
    #[serde(default)]
    pub pr_url: Option<String>,
    pub status: String,
    #[serde(default)]
    pub artifacts: Option<BTreeMap<String, String>>,
}

// ---------- validation ----------

fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    crate::text::check(field, value, max, crate::text::Controls::AllButNul)
}

fn check_title(title: &str) -> Result<()> {
    if title.trim().is_empty() {
        return Err(Error::Invalid("title: must not be empty".into()));
    }
    check_text("title", title, MAX_TITLE)
}

fn check_priority(p: i64) -> Result<()> {
    if !(0..=MAX_PRIORITY).contains(&p) {
        return Err(Error::Invalid(format!(
            "priority: must be 0..={MAX_PRIORITY}"
        )));
    }
    Ok(())
}

/// A task id as the routes take it: anything else cannot name a task.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::NotFound("no such task".into()));
    }
    Ok(())
}

/// The session a task-tool call acts for: the session token's own; for the
/// internal token, `X-Client-ID`, else Mitzo's `clientId` (body or query).
pub fn session_of(caller: &Caller, client_id: Option<&str>) -> Result<String> {
    match (caller, client_id) {
        (Caller::Session { session_id }, Some(other)) if other != session_id => {
            Err(Error::Forbidden(
                "a session token acts for its own session only; clientId names another".into(),
            ))
        }
        (Caller::Session { session_id }, _) => Ok(session_id.clone()),
        (Caller::Internal { client_id: Some(id) }, _) => {
            check_session_id(id)
                .map_err(|e| Error::Invalid(format!("X-Client-ID: {e}")))?;
            Ok(id.clone())
        }
        (Caller::Internal { client_id: None }, Some(id)) => {
            check_session_id(id)
                .map_err(|e| Error::Invalid(format!("clientId: {e}")))?;
            Ok(id.to_string())
        }
        _ => Err(Error::Invalid(
            "task tools act for one session: use its session token, or the internal token with an X-Client-ID header (or a clientId) naming the session".into(),
        )),
    }
}

pub fn check_session_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_SESSION_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::Invalid(format!(
            "session id must be 1..={MAX_SESSION_ID} characters of [A-Za-z0-9._-]"
        )));
    }
    Ok(())
}

fn check_artifact(key: &str, value: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Invalid("artifact key: must not be empty".into()));
    }
    check_text("artifact key", key, MAX_KEY)?;
    check_text(
        &format!("artifacts.{}", truncate(key, 40)),
        value,
        MAX_VALUE,
    )
}

fn check_artifact_count(map: &BTreeMap<String, String>) -> Result<()> {
    if map.len() > MAX_ARTIFACTS {
        return Err(Error::Invalid(format!(
            "a task holds at most {MAX_ARTIFACTS} artifacts"
        )));
    }
    Ok(())
}

impl CreateTask {
    pub fn validate(&self) -> Result<()> {
        check_title(&self.title)?;
        if let Some(d) = &self.description {
            check_text("description", d, MAX_TEXT)?;
        }
        if let Some(s) = &self.status {
            Status::parse(&s.0)?;
        }
        if let Some(p) = self.priority {
            check_priority(p)?;
        }
        if let Some(s) = &self.session_id {
            check_session_id(s)?;
        }
        if let Some(a) = &self.artifacts {
            check_artifact_count(a)?;
            for (k, v) in a {
                check_artifact(k, v)?;
            }
        }
        Ok(())
    }
}

impl PatchTask {
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.title {
            check_title(t)?;
        }
        if let Some(d) = &self.description {
            check_text("description", d, MAX_TEXT)?;
        }
        if let Some(s) = &self.status {
            Status::parse(&s.0)?;
        }
        if let Some(p) = self.priority {
            check_priority(p)?;
        }
        if let Some(Some(s)) = &self.session_id {
            check_session_id(s)?;
        }
        if let Some(a) = &self.artifacts {
            if a.len() > MAX_ARTIFACTS {
                return Err(Error::Invalid(format!(
                    "a task holds at most {MAX_ARTIFACTS} artifacts"
                )));
            }
            for (k, v) in a {
                check_artifact(k, v.as_deref().unwrap_or(""))?;
            }
        }
        Ok(())
    }
}

impl SetBody {
    pub fn validate(&self) -> Result<()> {
        if self.tasks.len() > MAX_SET {
            return Err(Error::Invalid(format!("tasks: at most {MAX_SET}")));
        }
        for t in &self.tasks {
            check_title(&t.title)?;
            if let Some(d) = &t.description {
                check_text("description", d, MAX_TEXT)?;
            }
            if let Some(p) = t.priority {
                check_priority(p)?;
            }
        }
        Ok(())
    }
}

/// What a signal does to a matching task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Positive,
    Negative,
}

impl SignalBody {
    /// The allowed statuses of this signal type, and the outcome of `status`.
    pub fn outcome(&self) -> Result<Outcome> {
        let (allowed, positive, negative): (&str, &[&str], &[&str]) = match self.kind {
            SignalType::GhCi => ("success, failure", &["success"], &["failure"]),
            SignalType::GhReview => (
                "approved, changes_requested",
                &["approved"],
                &["changes_requested"],
            ),
            SignalType::HumanApproval => ("approved, rejected", &["approved"], &["rejected"]),
        };
        let s = self.status.as_str();
        // Mitzo's statuses: pass/fail mean the positive/negative of any type.
        if positive.contains(&s) || s == "pass" {
            Ok(Outcome::Positive)
        } else if negative.contains(&s) || s == "fail" {
            Ok(Outcome::Negative)
        } else {
            Err(Error::Invalid(format!(
                "unknown status {:?} for this signal type; allowed: {allowed} (or pass, fail)",
                truncate(s, 40)
            )))
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.outcome()?;
        if let Some(r) = &self.repo {
            check_text("repo", r, MAX_VALUE)?;
        }
        if let Some(PrRef::Text(p)) = &self.pr {
            check_text("pr", p, MAX_KEY)?;
        }
        if let Some(u) = &self.pr_url {
            check_text("pr_url", u, MAX_VALUE)?;
        }
        if self.pr_url.is_none() && (self.repo.is_none() || self.pr.is_none()) {
            return Err(Error::Invalid(
                "a signal names its PR: pr_url, or repo and pr".into(),
            ));
        }
        if let Some(a) = &self.artifacts {
            check_artifact_count(a)?;
            for (k, v) in a {
                check_artifact(k, v)?;
            }
        }
        Ok(())
    }
}

// ---------- storage ----------

// The schema: src/migrations/0002_tasks.sql.

const COLUMNS: &str =
    "id, title, description, status, priority, session_id, artifacts, created_at, updated_at";

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn new_id() -> String {
    format!("t_{:016x}", rand::random::<u64>())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    let status: String = row.get(3)?;
    let artifacts: String = row.get(6)?;
    Ok(Task {
        id: row.get(0)?,
        title: row.get(1)?,
        description: row.get(2)?,
        status: Status::parse(&status).unwrap_or(Status::Todo),
        priority: row.get(4)?,
        session_id: row.get(5)?,
        artifacts: serde_json::from_str(&artifacts).unwrap_or_default(),
        created_at: rfc3339(row.get(7)?),
        updated_at: rfc3339(row.get(8)?),
    })
}

fn artifacts_json(a: &BTreeMap<String, String>) -> String {
    serde_json::to_string(a).unwrap_or_else(|_| "{}".into())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Task>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

fn must_get(conn: &Connection, id: &str) -> Result<Task> {
    get(conn, id)?.ok_or_else(|| Error::NotFound(format!("no task {}", truncate(id, 40))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
}

pub fn list(conn: &Connection, q: &ListQuery) -> Result<Vec<Task>> {
    let status = q.status.as_deref().map(Status::parse).transpose()?;
    let mut sql = format!("SELECT {COLUMNS} FROM tasks WHERE 1=1");
    let mut args: Vec<String> = Vec::new();
    if let Some(s) = status {
        args.push(s.as_str().into());
        sql.push_str(&format!(" AND status = ?{}", args.len()));
    }
    if let Some(s) = &q.session_id {
        args.push(s.clone());
        sql.push_str(&format!(" AND session_id = ?{}", args.len()));
    }
    sql.push_str(" ORDER BY position, created_at, id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn session_tasks(conn: &Connection, session: &str) -> Result<Vec<Task>> {
    list(
        conn,
        &ListQuery {
            status: None,
            session_id: Some(session.to_string()),
        },
    )
}

fn next_position(tx: &Transaction<'_>) -> Result<i64> {
    Ok(tx.query_row(
        "SELECT COALESCE(MAX(position), 0) + 1 FROM tasks",
        [],
        |r| r.get(0),
    )?)
}

#[allow(clippy::too_many_arguments)]
fn insert(
    tx: &Transaction<'_>,
    title: &str,
    description: &str,
    status: Status,
    priority: i64,
    session_id: Option<&str>,
    artifacts: &BTreeMap<String, String>,
    now: i64,
) -> Result<Task> {
    let id = new_id();
    let position = next_position(tx)?;
    tx.execute(
        "INSERT INTO tasks (id, title, description, status, priority, session_id, artifacts, position, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![id, title, description, status.as_str(), priority, session_id, artifacts_json(artifacts), position, now],
    )?;
    must_get(tx, &id)
}

fn save(tx: &Transaction<'_>, t: &Task, now: i64) -> Result<Task> {
    tx.execute(
        "UPDATE tasks SET title = ?2, description = ?3, status = ?4, priority = ?5, session_id = ?6, artifacts = ?7, updated_at = ?8 WHERE id = ?1",
        params![t.id, t.title, t.description, t.status.as_str(), t.priority, t.session_id, artifacts_json(&t.artifacts), now],
    )?;
    must_get(tx, &t.id)
}

fn updated(t: Task) -> TaskEvent {
    TaskEvent::TaskUpdated { task: t }
}

pub fn create(conn: &mut Connection, body: &CreateTask) -> Result<(Task, Vec<TaskEvent>)> {
    body.validate()?;
    let status = body
        .status
        .as_ref()
        .map(|s| Status::parse(&s.0))
        .transpose()?
        .unwrap_or(Status::Todo);
    let tx = conn.transaction()?;
    let task = insert(
        &tx,
        &body.title,
        body.description.as_deref().unwrap_or(""),
        status,
        body.priority.unwrap_or(0),
        body.session_id.as_deref(),
        &body.artifacts.clone().unwrap_or_default(),
        now_ms(),
    )?;
    tx.commit()?;
    Ok((task.clone(), vec![updated(task)]))
}

pub fn patch(conn: &mut Connection, id: &str, body: &PatchTask) -> Result<(Task, Vec<TaskEvent>)> {
    body.validate()?;
    let tx = conn.transaction()?;
    let mut t = must_get(&tx, id)?;
    if let Some(v) = &body.title {
        t.title = v.clone();
    }
    if let Some(v) = &body.description {
        t.description = v.clone();
    }
    if let Some(v) = &body.status {
        t.status = Status::parse(&v.0)?;
    }
    if let Some(v) = body.priority {
        t.priority = v;
    }
    if let Some(v) = &body.session_id {
        t.session_id = v.clone();
    }
    if let Some(a) = &body.artifacts {
        for (k, v) in a {
            match v {
                Some(v) => {
                    t.artifacts.insert(k.clone(), v.clone());
                }
                None => {
                    t.artifacts.remove(k);
                }
            }
        }
        check_artifact_count(&t.artifacts)?;
    }
    let t = save(&tx, &t, now_ms())?;
    tx.commit()?;
    Ok((t.clone(), vec![updated(t)]))
}

pub fn delete(conn: &mut Connection, id: &str) -> Result<Vec<TaskEvent>> {
    let tx = conn.transaction()?;
    let n = tx.execute("DELETE FROM tasks WHERE id = ?1", [id])?;
    if n == 0 {
        return Err(Error::NotFound(format!("no task {}", truncate(id, 40))));
    }
    tx.commit()?;
    Ok(vec![TaskEvent::TaskDeleted { id: id.to_string() }])
}

/// The owner's decision on a task in review: approve → done; reject →
/// back to in_progress with the feedback as an artifact.
pub fn decide(
    conn: &mut Connection,
    id: &str,
    feedback: Option<&str>,
) -> Result<(Task, Vec<TaskEvent>)> {
    if let Some(f) = feedback {
        check_text("feedback", f, MAX_TEXT)?;
    }
    let tx = conn.transaction()?;
    let mut t = must_get(&tx, id)?;
    if t.status != Status::Review {
        return Err(Error::Conflict(format!(
            "task is {}, not review",
            t.status.as_str()
        )));
    }
    match feedback {
        None => t.status = Status::Done,
        Some(f) => {
            t.status = Status::InProgress;
            t.artifacts
                .insert("feedback".into(), truncate(f, MAX_VALUE).to_string());
        }
    }
    let t = save(&tx, &t, now_ms())?;
    tx.commit()?;
    Ok((t.clone(), vec![updated(t)]))
}

// ---------- agent task tools ----------

/// The task a session is working on: its first in_progress task, else its
/// first todo task.
fn current(tasks: &[Task]) -> Option<&Task> {
    tasks
        .iter()
        .find(|t| t.status == Status::InProgress)
        .or_else(|| tasks.iter().find(|t| t.status == Status::Todo))
}

pub fn summary(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "No tasks.".into();
    }
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}. [{}] {}", i + 1, t.status.as_str(), t.title))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `set`: replace the session's not-yet-started (todo) tasks with `body`;
/// the first becomes in_progress when nothing is.
pub fn tool_set(
    conn: &mut Connection,
    session: &str,
    body: &SetBody,
) -> Result<(String, Vec<TaskEvent>)> {
    body.validate()?;
    let tx = conn.transaction()?;
    let mut events = Vec::new();
    let before = session_tasks(&tx, session)?;
    for t in before.iter().filter(|t| t.status == Status::Todo) {
        tx.execute("DELETE FROM tasks WHERE id = ?1", [&t.id])?;
        events.push(TaskEvent::TaskDeleted { id: t.id.clone() });
    }
    let mut started = before.iter().any(|t| t.status == Status::InProgress);
    let now = now_ms();
    for nt in &body.tasks {
        let status = if started {
            Status::Todo
        } else {
            Status::InProgress
        };
        started = true;
        let t = insert(
            &tx,
            &nt.title,
            nt.description.as_deref().unwrap_or(""),
            status,
            nt.priority.unwrap_or(0),
            Some(session),
            &BTreeMap::new(),
            now,
        )?;
        events.push(updated(t));
    }
    let after = session_tasks(&tx, session)?;
    tx.commit()?;
    Ok((
        format!("Set {} task(s).\n{}", body.tasks.len(), summary(&after)),
        events,
    ))
}

/// `complete`: the current task goes to review with the summary; the next
/// todo task starts.
pub fn tool_complete(
    conn: &mut Connection,
    session: &str,
    body: &CompleteBody,
) -> Result<(String, Vec<TaskEvent>)> {
    check_text("summary", &body.summary, MAX_TEXT)?;
    let tx = conn.transaction()?;
    let tasks = session_tasks(&tx, session)?;
    let mut t = current(&tasks)
        .cloned()
        .ok_or_else(|| Error::Conflict("this session has no open task to complete".into()))?;
    let now = now_ms();
    t.status = Status::Review;
    t.artifacts.insert(
        "summary".into(),
        truncate(&body.summary, MAX_VALUE).to_string(),
    );
    let done = save(&tx, &t, now)?;
    let mut events = vec![updated(done.clone())];
    let mut result = format!("Completed \"{}\"; it awaits review.", done.title);
    if let Some(next) = tasks
        .iter()
        .find(|n| n.status == Status::Todo && n.id != done.id)
    {
        let mut n = next.clone();
        n.status = Status::InProgress;
        let n = save(&tx, &n, now)?;
        result.push_str(&format!(" Next: \"{}\".", n.title));
        events.push(updated(n));
    } else {
        result.push_str(" No tasks left.");
    }
    tx.commit()?;
    Ok((result, events))
}

pub fn tool_block(
    conn: &mut Connection,
    session: &str,
    body: &BlockBody,
) -> Result<(String, Vec<TaskEvent>)> {
    check_text("reason", &body.reason, MAX_TEXT)?;
    let tx = conn.transaction()?;
    let tasks = session_tasks(&tx, session)?;
    let mut t = current(&tasks)
        .cloned()
        .ok_or_else(|| Error::Conflict("this session has no open task to block".into()))?;
    t.status = Status::Blocked;
    t.artifacts.insert(
        "blockedReason".into(),
        truncate(&body.reason, MAX_VALUE).to_string(),
    );
    let t = save(&tx, &t, now_ms())?;
    tx.commit()?;
    Ok((format!("Blocked \"{}\".", t.title), vec![updated(t)]))
}

/// `artifact`: on the current task, else the session's latest open one.
pub fn tool_artifact(
    conn: &mut Connection,
    session: &str,
    body: &ArtifactBody,
) -> Result<(String, Vec<TaskEvent>)> {
    check_artifact(&body.key, &body.value)?;
    let tx = conn.transaction()?;
    let tasks = session_tasks(&tx, session)?;
    let target = current(&tasks)
        .or_else(|| tasks.iter().rev().find(|t| t.status != Status::Done))
        .cloned();
    let mut t = target.ok_or_else(|| {
        Error::Conflict("this session has no open task to attach an artifact to".into())
    })?;
    t.artifacts.insert(body.key.clone(), body.value.clone());
    check_artifact_count(&t.artifacts)?;
    let t = save(&tx, &t, now_ms())?;
    tx.commit()?;
    Ok((
        format!("Recorded {} on \"{}\".", body.key, t.title),
        vec![updated(t)],
    ))
}

pub fn tool_status(conn: &Connection, session: &str) -> Result<(String, Vec<Task>)> {
    let tasks = session_tasks(conn, session)?;
    Ok((summary(&tasks), tasks))
}

// ---------- signals ----------

/// Record the signal on every open task whose artifacts name the same PR
/// (`pr_url`, or `repo` and `pr`), and move it on:
///
/// | type | positive | negative |
/// |---|---|---|
/// | gh_ci (success/failure) | blocked → in_progress | blocked → in_progress |
/// | gh_review (approved/changes_requested) | review → done | review → in_progress |
/// | human_approval (approved/rejected) | review, blocked → done | review, blocked → in_progress |
///
/// `scope`: only this session's tasks (a session-token caller).
pub fn resolve_signal(
    conn: &mut Connection,
    body: &SignalBody,
    scope: Option<&str>,
) -> Result<(usize, Vec<TaskEvent>)> {
    body.validate()?;
    let outcome = body.outcome()?;
    let pr_url = body.pr_url.as_deref().map(str::trim);
    let repo = body.repo.as_deref().map(str::trim);
    let pr = body.pr.as_ref().map(PrRef::text);
    let tx = conn.transaction()?;
    let all = list(&tx, &ListQuery::default())?;
    let now = now_ms();
    let mut events = Vec::new();
    for mut t in all {
        if t.status == Status::Done {
            continue;
        }
        if let Some(s) = scope {
            if t.session_id.as_deref() != Some(s) {
                continue;
            }
        }
        let by_url = pr_url.is_some_and(|u| t.artifacts.get("pr_url").map(|v| v.trim()) == Some(u));
        let by_repo_pr = match (repo, pr.as_deref()) {
            (Some(r), Some(p)) => {
                t.artifacts.get("repo").map(|v| v.trim()) == Some(r)
                    && t.artifacts
                        .get("pr")
                        .map(|v| v.trim().trim_start_matches('#'))
                        == Some(p)
            }
            _ => false,
        };
        if !(by_url || by_repo_pr) {
            continue;
        }
        let key = match body.kind {
            SignalType::GhCi => "ci",
            SignalType::GhReview => "review",
            SignalType::HumanApproval => "approval",
        };
        t.artifacts.insert(key.into(), body.status.clone());
        if let Some(extra) = &body.artifacts {
            for (k, v) in extra {
                t.artifacts.insert(k.clone(), v.clone());
            }
        }
        check_artifact_count(&t.artifacts)?;
        t.status = match (body.kind, outcome, t.status) {
            (SignalType::GhCi, _, Status::Blocked) => Status::InProgress,
            (SignalType::GhReview, Outcome::Positive, Status::Review) => Status::Done,
            (SignalType::GhReview, Outcome::Negative, Status::Review) => Status::InProgress,
            (SignalType::HumanApproval, Outcome::Positive, Status::Review | Status::Blocked) => {
                Status::Done
            }
            (SignalType::HumanApproval, Outcome::Negative, Status::Review | Status::Blocked) => {
                Status::InProgress
            }
            (_, _, s) => s,
        };
        events.push(updated(save(&tx, &t, now)?));
    }
    tx.commit()?;
    Ok((events.len(), events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn tools_flow() {
        let mut c = conn();
        let set = SetBody {
            client_id: None,
            tasks: vec![
                NewToolTask {
                    title: "a".into(),
                    description: None,
                    priority: None,
                },
                NewToolTask {
                    title: "b".into(),
                    description: None,
                    priority: Some(3),
                },
            ],
        };
        tool_set(&mut c, "s1", &set).unwrap();
        let (_, tasks) = tool_status(&c, "s1").unwrap();
        assert_eq!(
            tasks.iter().map(|t| t.status).collect::<Vec<_>>(),
            vec![Status::InProgress, Status::Todo]
        );
        tool_artifact(
            &mut c,
            "s1",
            &ArtifactBody {
                key: "pr_url".into(),
                value: "https://x/pr/1".into(),
                client_id: None,
            },
        )
        .unwrap();
        tool_complete(
            &mut c,
            "s1",
            &CompleteBody {
                summary: "did a".into(),
                client_id: None,
            },
        )
        .unwrap();
        let (_, tasks) = tool_status(&c, "s1").unwrap();
        assert_eq!(tasks[0].status, Status::Review);
        assert_eq!(tasks[1].status, Status::InProgress);
        let sig: SignalBody = serde_json::from_str(
            r#"{"type":"gh_review","pr_url":"https://x/pr/1","status":"approved"}"#,
        )
        .unwrap();
        assert_eq!(resolve_signal(&mut c, &sig, Some("s2")).unwrap().0, 0);
        assert_eq!(resolve_signal(&mut c, &sig, None).unwrap().0, 1);
        assert_eq!(get(&c, &tasks[0].id).unwrap().unwrap().status, Status::Done);
        let pass: SignalBody =
            serde_json::from_str(r#"{"type":"gh_ci","pr_url":"u","status":"pass"}"#).unwrap();
        assert_eq!(pass.outcome().unwrap(), Outcome::Positive);
        let fail: SignalBody =
            serde_json::from_str(r#"{"type":"human_approval","pr_url":"u","status":"fail"}"#)
                .unwrap();
        assert_eq!(fail.outcome().unwrap(), Outcome::Negative);
        let bad: SignalBody =
            serde_json::from_str(r#"{"type":"gh_ci","pr_url":"u","status":"green"}"#).unwrap();
        let e = resolve_signal(&mut c, &bad, None).unwrap_err().to_string();
        assert!(e.contains("success, failure"), "{e}");
    }

    #[test]
    fn unknown_status_names_allowed() {
        let e = Status::parse("doing").unwrap_err().to_string();
        assert!(
            e.contains("todo, in_progress, blocked, review, done"),
            "{e}"
        );
        assert!(serde_json::from_str::<CreateTask>(r#"{"title":"x","bogus":1}"#).is_err());
    }
}
