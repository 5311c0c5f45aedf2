
CREATE TABLE sessions_v4 (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL CHECK (mode IN ('ask', 'agent', 'auto')),
    model TEXT,
    repo TEXT NOT NULL,
    repo_name TEXT NOT NULL DEFAULT '',
    cwd TEXT NOT NULL,
    branch TEXT,
    isolation INTEGER NOT NULL,
    headless INTEGER NOT NULL,
    agent_session_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('idle', 'running', 'requires_action', 'stopped', 'interrupted')),
    num_turns INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0
);
INSERT INTO sessions_v4 (id, source, summary, title, mode, model, repo, repo_name, cwd, branch, isolation, headless, agent_session_id, state, num_turns, created_at, last_modified, hidden)
SELECT id, source, summary, substr(summary, 1, 120),
    CASE WHEN mode IN ('ask', 'agent', 'auto') THEN mode ELSE 'ask' END,
    model, repo, '', cwd, branch, isolation, headless, agent_session_id,
    CASE WHEN state IN ('idle', 'running', 'requires_action', 'stopped', 'interrupted') THEN state ELSE 'interrupted' END,
    num_turns, created_at, last_modified, hidden
FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v4 RENAME TO sessions;
CREATE INDEX sessions_recent ON sessions (hidden, last_modified DESC, id DESC);
