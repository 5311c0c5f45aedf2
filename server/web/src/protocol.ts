// The one place that knows the wire format of /ws/chat and the REST routes.
// Frame shapes follow server/src/http/ws.rs (client frames) and the events
// sessions publish; when the generated declarations (protocol.gen.ts) land,
// this module re-exports them and the rest of the app is unchanged.

export const PROTOCOL_VERSION = 2;

export type Mode = "ask" | "agent" | "auto";
export const MODES: Mode[] = ["ask", "agent", "auto"];
export type Decision = "once" | "always" | "deny";
/** The owner's three answers, as this server spells them. */
export const DECISION: Record<"once" | "session" | "deny", Decision> = { once: "once", session: "always", deny: "deny" };

interface Base {
  v?: number;
  ts?: number;
  sessionId: string | null;
  seq: number;
}

export type ServerFrame = Base &
  (
    | { type: "welcome"; connectionId: string; protocolVersion: number }
    | { type: "error"; error: string; exitCode?: number | null; signal?: number | null }
    | { type: "reconnected"; sessions: { sessionId: string; replayed?: number; error?: string }[] }
    | { type: "session_created"; clientMsgId?: string | null; worktrees?: unknown }
    | { type: "session_updated"; session?: SessionSummary & { mode?: Mode }; title?: string; state?: string; mode?: string }
    | { type: "title_changed"; title: string }
    | { type: "block_snapshot"; messageId?: string; index: number; blockType: string; text: string; toolName?: string; toolId?: string }
    | { type: "session_state_changed"; state: string }
    | { type: "user_message"; prompt: string; clientMsgId?: string | null }
    | { type: "message_start"; messageId: string; model?: string }
    | { type: "message_end"; messageId: string; stopReason?: string | null }
    | { type: "block_start"; messageId?: string; index: number; blockType: string; toolName?: string; toolId?: string }
    | {
        type: "block_delta";
        messageId?: string;
        index: number;
        deltaType?: "text" | "thinking" | "input_json";
        text?: string;
        thinking?: string;
        partialJson?: string;
      }
    | {
        type: "block_end";
        messageId?: string;
        index: number;
        blockType?: string;
        toolName?: string;
        toolId?: string;
        input?: unknown;
        text?: string;
        thinking?: string;
      }
    | { type: "tool_result"; toolId: string; result: unknown; isError?: boolean | null }
    | { type: "result"; subtype?: string; isError?: boolean; result?: string | null; numTurns?: number; costUsd?: number | null }
    | {
        type: "permission_request";
        permId: string;
        toolName: string;
        toolInput: Record<string, unknown>;
        tier?: string;
        expiresAt: number;
        title?: string;
        summary?: string;
        diff?: string | null;
      }
    | { type: "question_request"; permId: string; questions: Question[]; expiresAt?: number }
    | { type: "permission_resolved"; permId: string | null; toolName?: string; decision: string; by?: string; message?: string }
    | { type: "permission_timeout"; permId: string }
    | { type: "mode_changed"; mode: Mode }
    | { type: "interrupted" }
    | { type: "session_end"; reason?: string }
    | { type: "task_updated"; task: Task }
    | { type: "task_deleted"; id: string }
  );

export type FrameOf<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;

export interface Question {
  question: string;
  header?: string;
  options: { label: string; description?: string }[];
  multiSelect?: boolean;
}

export type ClientFrame =
  | { type: "hello"; protocolVersion: number }
  | { type: "send"; sessionId?: string; prompt: string; clientMsgId?: string; mode?: Mode }
  | { type: "interrupt"; sessionId: string; prompt?: string }
  | { type: "stop"; sessionId: string }
  | { type: "permission_response"; sessionId: string; permId: string; decision: Decision; message?: string }
  | { type: "question_response"; sessionId: string; permId: string; answers: Record<string, string> }
  | { type: "set_mode"; sessionId: string; mode: Mode }
  | { type: "rename"; sessionId: string; title: string }
  | { type: "watch"; sessionId: string }
  | { type: "unwatch"; sessionId: string }
  | { type: "reconnect"; sessions: { sessionId: string; lastSeq: number }[] };

// ---- REST ----------------------------------------------------------------

export interface SessionSummary {
  id: string;
  summary: string;
  title?: string;
  repo?: string;
  lastModified: number;
  lastActivity?: number;
  branch: string | null;
  isActive: boolean;
  isAttached: boolean;
  numTurns: number;
  state: string;
  pendingApprovals?: number;
}

export interface SessionMeta {
  id: string;
  summary: string;
  title?: string;
  mode: Mode;
  repo: string;
  cwd: string;
  branch: string | null;
  isolation: boolean;
  state: string;
  lastSeq: number;
  isActive: boolean;
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
export interface Repo {
  name: string;
  path: string;
}
export interface QuickAction {
  label?: string;
  name?: string;
  prompt?: string;
}

export const routes = {
  login: "/api/auth/login",
  logout: "/api/auth/logout",
  logoutAll: "/api/auth/logout-all",
  check: "/api/auth/check",
  sessions: "/api/sessions",
  session: (id: string) => `/api/sessions/${encodeURIComponent(id)}`,
  meta: (id: string) => `/api/sessions/${encodeURIComponent(id)}/meta`,
  events: (id: string, after: number, limit: number) =>
    `/api/sessions/${encodeURIComponent(id)}/events?after=${after}&limit=${limit}`,
  eventsBefore: (id: string, before: number, limit: number) =>
    `/api/sessions/${encodeURIComponent(id)}/events?before=${before}&limit=${limit}`,
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

/** Does this server page history backwards (`?before=`)? */
export const HAS_EVENTS_BEFORE = false;
/** Does the server take `rename` frames and `title`s? */
export const HAS_RENAME = false;
/** Does `permission_response` take a deny `message`? */
export const HAS_DENY_MESSAGE = false;
/** Does `POST /api/sessions` take a `repo`? */
export const HAS_REPO_CHOICE = false;
