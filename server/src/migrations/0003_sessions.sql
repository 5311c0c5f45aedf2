
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL,
    model TEXT,
    repo TEXT NOT NULL,
    cwd TEXT NOT NULL,
    branch TEXT,
    isolation INTEGER NOT NULL,
    headless INTEGER NOT NULL,
    agent_session_id TEXT,
    state TEXT NOT NULL,
    num_turns INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    frame TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    input_summary TEXT NOT NULL,
    decision TEXT NOT NULL,
    decided_by TEXT NOT NULL
);
CREATE INDEX audit_session ON audit (session_id, id);
