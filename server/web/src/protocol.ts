// The one place that knows the wire format of /ws/chat and the REST routes.
// Frame and REST shapes come from protocol.gen.ts, generated from the
// server's Rust types; this module adds the routes, the decision spelling
// and the REST shapes the generator does not cover.

import type { Decision, Mode, ServerFrame } from "./protocol.gen";

export type {
  ClientFrame,
  Decision,
  EventPage,
  Mode,
  Question,
  RepoInfo as Repo,
  ServerFrame,
  SessionList,
  SessionState,
  SessionSummary,
} from "./protocol.gen";

export const PROTOCOL_VERSION = 2;

export const MODES: Mode[] = ["ask", "agent", "auto"];
/** The owner's three answers, as the server spells them. */
export const DECISION: Record<"once" | "session" | "deny", Decision> = { once: "allow", session: "allow_session", deny: "deny" };

export type FrameOf<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;

// ---- REST ----------------------------------------------------------------

export interface SessionMeta {
  id: string;
  summary: string;
  title: string;
  mode: Mode;
  repo: string;
  cwd: string;
  branch: string | null;
  isolation: boolean;
  state: string;
  lastSeq: number;
  isActive: boolean;
  /** Retention compacted or dropped part of its older history. */
  historyCompacted: boolean;
}

export type TaskStatus = "todo" | "in_progress" | "blocked" | "review" | "done";
export const TASK_STATUSES: TaskStatus[] = ["todo", "in_progress", "blocked", "review", "done"];
export interface Task {
  id: string;
  title: string;
  description: string;
  status: TaskStatus;
  priority: number;
  sessionId: string | null;
  artifacts: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

export interface Root {
  label: string;
  path: string;
  kind: "repo" | "worktree" | "config";
}
export interface Entry {
  name: string;
  isDir: boolean;
  size: number;
  mtime: number;
  isSymlink?: boolean;
}
export interface AuditRow {
  id: number;
  ts: number;
  sessionId: string;
  tool: string;
  inputSummary: string;
  decision: string;
  decidedBy: string;
}
export interface QuickAction {
  label?: string;
  name?: string;
  prompt?: string;
}

/** `GET /api/sessions/{id}/review`: a session's branch against the main
 * checkout's current branch. Subjects, names, paths and the diff are the
 * agent's: shown as text only. */
export interface ReviewCommit {
  sha: string;
  subject: string;
  author: string;
  authorEmail: string;
  date: string;
}
export interface ChangedFile {
  path: string;
  added: number | null;
  deleted: number | null;
  binary: boolean;
}
export interface Review {
  sessionId: string;
  branch: string;
  head: string;
  target: string;
  targetCommit: string;
  commits: ReviewCommit[];
  commitsTruncated: boolean;
  files: ChangedFile[];
  filesTruncated: boolean;
  added: number;
  deleted: number;
  diff: string;
  /** The diff was cut (at 1 MiB). */
  truncated: boolean;
  /** Nothing to merge: the target has it all. */
  upToDate: boolean;
  /** False: the checkout is gone and the branch as last fetched is shown. */
  fetched: boolean;
}
/** `POST /api/sessions/{id}/merge`; a 409 says why not (uncommitted changes,
 * a conflict, nothing to merge) and changes nothing. */
export interface Merged {
  sessionId: string;
  branch: string;
  target: string;
  commit: string;
  head: string;
}

export const routes = {
  login: "/api/auth/login",
  logout: "/api/auth/logout",
  logoutAll: "/api/auth/logout-all",
  check: "/api/auth/check",
  sessions: "/api/sessions",
  session: (id: string) => `/api/sessions/${encodeURIComponent(id)}`,
  meta: (id: string) => `/api/sessions/${encodeURIComponent(id)}/meta`,
  eventsBefore: (id: string, before: number, limit: number) =>
    `/api/sessions/${encodeURIComponent(id)}/events?before=${before}&limit=${limit}`,
  review: (id: string) => `/api/sessions/${encodeURIComponent(id)}/review`,
  merge: (id: string) => `/api/sessions/${encodeURIComponent(id)}/merge`,
  repos: "/api/repos",
  config: "/api/config",
  roots: "/api/files/roots",
  list: (root: string, dir: string) =>
    `/api/files/list?root=${encodeURIComponent(root)}&dir=${encodeURIComponent(dir)}`,
  read: (root: string, path: string) =>
    `/api/files/read?root=${encodeURIComponent(root)}&path=${encodeURIComponent(path)}`,
  write: "/api/files/write",
  tasks: "/api/tasks",
  approve: (id: string) => `/api/tasks/${encodeURIComponent(id)}/approve`,
  reject: (id: string) => `/api/tasks/${encodeURIComponent(id)}/reject`,
  audit: (sessionId?: string) =>
    sessionId ? `/api/audit?sessionId=${encodeURIComponent(sessionId)}&limit=200` : "/api/audit?limit=200",
  ws: "/ws/chat",
};

/** Does the server take `rename` frames and `title`s? */
export const HAS_RENAME = true;
/** Does `permission_response` take a deny `message`? */
export const HAS_DENY_MESSAGE = true;
/** Does `POST /api/sessions` take a `repo`? */
export const HAS_REPO_CHOICE = true;
