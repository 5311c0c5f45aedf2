// Generated from server/protocol (crate mitzo-protocol); do not edit.
// Regenerate: MITZO_UPDATE_PROTOCOL_TS=1 cargo test -p mitzo-protocol

export type SessionState = "idle" | "running" | "requires_action" | "stopped" | "interrupted";

export type Mode = "ask" | "agent" | "auto";

export type Tier = "safe" | "standard" | "elevated" | "unknown";

export type Decision = "allow" | "allow_session" | "deny";

export type Outcome = "allow" | "allow_session" | "deny" | "answered" | "cancelled";

export type DecidedBy = "policy" | "owner" | "ntfy" | "timeout" | "agent" | "session_end" | "agent_exit";

export type BlockType = "text" | "thinking" | "tool_use" | "other";

export type DeltaType = "text" | "thinking" | "input_json";

export type Worktree = { path: string, branch: string | null, };

export type Worktrees = { primary: Worktree, };

export type SessionSummary = { id: string, 
/**
 * The first line of the first prompt, until the owner renames it.
 */
title: string, 
/**
 * The summary given at creation (REST), often empty.
 */
summary: string, 
/**
 * The repo's name in `repos` (or `repo_path`'s directory name).
 */
repo: string, state: SessionState, mode: Mode, 
/**
 * Permissions and questions waiting for the owner.
 */
pendingApprovals: number, 
/**
 * Milliseconds since the epoch.
 */
lastActivity: number, 
/**
 * Same as `lastActivity` (Mitzo's name).
 */
lastModified: number, branch: string | null, 
/**
 * An agent process is running.
 */
isActive: boolean, 
/**
 * At least one client watches it.
 */
isAttached: boolean, numTurns: number, 
/**
 * Retention dropped its oldest events: the transcript starts later.
 */
historyCompacted: boolean, };

export type QuestionOption = { label: string, description: string, };

export type Question = { question: string, header: string, options: Array<QuestionOption>, multiSelect: boolean, };

export type ReconnectReport = { sessionId: string, 
/**
 * How many persisted frames were replayed.
 */
replayed?: number, 
/**
 * Why this session could not be watched.
 */
error?: string, };

export type ServerEvent = { "type": "welcome", connectionId: string, protocolVersion: number, } | { "type": "error", error: string, exitCode?: number, signal?: number, } | { "type": "reconnected", sessions: Array<ReconnectReport>, } | { "type": "task_updated", task: unknown, } | { "type": "task_deleted", id: string, } | { "type": "session_created", clientMsgId?: string, worktrees: Worktrees, title: string, repo: string, } | { "type": "session_updated", session: SessionSummary, } | { "type": "block_delta", messageId: string, index: number, deltaType: DeltaType, text: string, } | { "type": "block_snapshot", messageId: string, index: number, blockType: BlockType, text: string, toolName?: string, toolId?: string, } | { "type": "user_message", prompt: string, clientMsgId?: string, } | { "type": "session_state_changed", state: SessionState, } | { "type": "mode_changed", mode: Mode, } | { "type": "title_changed", title: string, } | { "type": "interrupted", } | { "type": "session_end", reason: string, } | { "type": "message_start", messageId: string, model?: string, } | { "type": "block_start", messageId: string, index: number, blockType: BlockType, toolName?: string, toolId?: string, } | { "type": "block_end", messageId: string, index: number, blockType: BlockType, text?: string, toolName?: string, toolId?: string, input?: unknown, 
/**
 * The block was cut short (an interrupt).
 */
aborted?: boolean, } | { "type": "message_end", messageId: string, stopReason?: string, } | { "type": "tool_result", toolId: string, 
/**
 * Usually text; other JSON when the tool returned something else.
 */
result: unknown, isError: boolean, } | { "type": "result", subtype: string, isError: boolean, result?: string, numTurns: number, costUsd?: number, } | { "type": "permission_request", permId: string, toolName: string, 
/**
 * One line for a human: "Run a command", "Edit src/main.rs", ...
 */
title: string, 
/**
 * A few lines: the command and where it runs, the URL, ...
 */
summary: string, 
/**
 * For file edits: a unified diff against the current file (capped).
 */
diff?: string, 
/**
 * The tool's raw input, as the agent sent it.
 */
toolInput: unknown, tier: Tier, 
/**
 * Milliseconds since the epoch; denied after that.
 */
expiresAt: number, } | { "type": "question_request", permId: string, questions: Array<Question>, expiresAt: number, } | { "type": "permission_resolved", permId: string | null, toolName: string, decision: Outcome, by: DecidedBy, message?: string, 
/**
 * A question's answers (question text → chosen label(s)).
 */
answers?: { [key in string]?: string }, } | { "type": "permission_timeout", permId: string, } | { "type": "network_request", permId: string, host: string, port: number, expiresAt: number, } | { "type": "network_refused", host: string, port: number, reason: string, };

export type ServerFrame = { 
/**
 * Always [`PROTOCOL_VERSION`].
 */
v: number, 
/**
 * Milliseconds since the epoch, when the frame was made.
 */
ts: number, 
/**
 * The session the frame belongs to; null for connection frames.
 */
sessionId: string | null, 
/**
 * The session event's number (1, 2, ...); 0 for live-only frames.
 */
seq: number, } & ({ "type": "welcome", connectionId: string, protocolVersion: number, } | { "type": "error", error: string, exitCode?: number, signal?: number, } | { "type": "reconnected", sessions: Array<ReconnectReport>, } | { "type": "task_updated", task: unknown, } | { "type": "task_deleted", id: string, } | { "type": "session_created", clientMsgId?: string, worktrees: Worktrees, title: string, repo: string, } | { "type": "session_updated", session: SessionSummary, } | { "type": "block_delta", messageId: string, index: number, deltaType: DeltaType, text: string, } | { "type": "block_snapshot", messageId: string, index: number, blockType: BlockType, text: string, toolName?: string, toolId?: string, } | { "type": "user_message", prompt: string, clientMsgId?: string, } | { "type": "session_state_changed", state: SessionState, } | { "type": "mode_changed", mode: Mode, } | { "type": "title_changed", title: string, } | { "type": "interrupted", } | { "type": "session_end", reason: string, } | { "type": "message_start", messageId: string, model?: string, } | { "type": "block_start", messageId: string, index: number, blockType: BlockType, toolName?: string, toolId?: string, } | { "type": "block_end", messageId: string, index: number, blockType: BlockType, text?: string, toolName?: string, toolId?: string, input?: unknown, 
/**
 * The block was cut short (an interrupt).
 */
aborted?: boolean, } | { "type": "message_end", messageId: string, stopReason?: string, } | { "type": "tool_result", toolId: string, 
/**
 * Usually text; other JSON when the tool returned something else.
 */
result: unknown, isError: boolean, } | { "type": "result", subtype: string, isError: boolean, result?: string, numTurns: number, costUsd?: number, } | { "type": "permission_request", permId: string, toolName: string, 
/**
 * One line for a human: "Run a command", "Edit src/main.rs", ...
 */
title: string, 
/**
 * A few lines: the command and where it runs, the URL, ...
 */
summary: string, 
/**
 * For file edits: a unified diff against the current file (capped).
 */
diff?: string, 
/**
 * The tool's raw input, as the agent sent it.
 */
toolInput: unknown, tier: Tier, 
/**
 * Milliseconds since the epoch; denied after that.
 */
expiresAt: number, } | { "type": "question_request", permId: string, questions: Array<Question>, expiresAt: number, } | { "type": "permission_resolved", permId: string | null, toolName: string, decision: Outcome, by: DecidedBy, message?: string, 
/**
 * A question's answers (question text → chosen label(s)).
 */
answers?: { [key in string]?: string }, } | { "type": "permission_timeout", permId: string, } | { "type": "network_request", permId: string, host: string, port: number, expiresAt: number, } | { "type": "network_refused", host: string, port: number, reason: string, });

export type ReconnectEntry = { sessionId: string, lastSeq: number, };

export type ClientFrame = { "type": "hello", protocolVersion: number, } | { "type": "send", sessionId?: string, prompt: string, clientMsgId?: string, mode?: Mode, repo?: string, } | { "type": "interrupt", sessionId: string, prompt?: string, } | { "type": "stop", sessionId: string, } | { "type": "permission_response", sessionId: string, permId: string, decision: Decision, 
/**
 * For a deny: the reason the agent is told.
 */
message?: string, } | { "type": "question_response", sessionId: string, permId: string, answers: { [key in string]?: string }, } | { "type": "set_mode", sessionId: string, mode: Mode, } | { "type": "rename", sessionId: string, title: string, } | { "type": "watch", sessionId: string, } | { "type": "unwatch", sessionId: string, } | { "type": "reconnect", sessions: Array<ReconnectEntry>, };

export type SessionList = { sessions: Array<SessionSummary>, hasMore: boolean, };

export type SessionPatch = { title: string, };

export type RepoInfo = { name: string, path: string, 
/**
 * Used when a new session names no repo.
 */
default: boolean, };

export type EventPage = { events: Array<ServerFrame>, lastSeq: number, 
/**
 * With `before`: older events exist; with `after`: newer ones do
 * (beyond `limit`).
 */
hasMore: boolean, };
