// App state: a tiny observable store (no framework dependency), the
// transcript model built from session frames, and pending approvals.
import { useEffect, useState } from "preact/hooks";
import type { FrameOf, Mode, Question, ServerFrame, SessionSummary, Task } from "./protocol";

type Listener = () => void;

export class Observable {
  private listeners = new Set<Listener>();
  version = 0;
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  changed(): void {
    this.version++;
    for (const fn of [...this.listeners]) fn();
  }
}

/** Re-render the calling component whenever `obs` changes. */
export function useObservable(obs: Observable | undefined): number {
  const [, set] = useState(0);
  useEffect(() => {
    if (!obs) return;
    return obs.subscribe(() => set((n) => n + 1));
  }, [obs]);
  return obs ? obs.version : 0;
}

export type Item =
  | { kind: "user"; key: string; text: string; pending?: boolean }
  | { kind: "text"; key: string; text: string; streaming: boolean }
  | { kind: "thinking"; key: string; text: string; streaming: boolean }
  | {
      kind: "tool";
      key: string;
      toolId: string;
      name: string;
      input: unknown;
      inputJson: string;
      result?: string;
      isError?: boolean;
      denied?: string;
    }
  | { kind: "result"; key: string; isError: boolean; text: string; subtype: string }
  | { kind: "error"; key: string; text: string }
  | { kind: "note"; key: string; text: string };

export interface PendingPermission {
  sessionId: string;
  permId: string;
  toolName: string;
  toolInput: Record<string, unknown>;
  expiresAt: number;
  title?: string;
  summary?: string;
  diff?: string | null;
  questions?: Question[];
  /** A network request: the host and port the agent wants to reach. */
  network?: { host: string; port: number };
}

// Frames that change what the rest of the app shows (lists, approval tray).
const META_FRAMES = new Set<string>([
  "title_changed",
  "permission_request",
  "question_request",
  "permission_resolved",
  "permission_timeout",
  "network_request",
  "session_state_changed",
  "session_updated",
  "result",
  "session_end",
]);

/** One session's transcript, built incrementally from its frames. */
export class Transcript extends Observable {
  items: Item[] = [];
  lastSeq = 0;
  /** Oldest seq loaded; 1 (or 0) means the whole history is here. */
  firstSeq = Infinity;
  state = "idle";
  mode: Mode = "ask";
  title = "";
  pending = new Map<string, PendingPermission>();
  private messageId = "";
  private blocks = new Map<string, Item>();
  private tools = new Map<string, Item & { kind: "tool" }>();
  constructor(public id: string) {
    super();
  }

  get complete(): boolean {
    return this.firstSeq <= 1;
  }

  /** The persisted frames applied so far (for rebuilding with older ones). */
  private frames: ServerFrame[] = [];

  /** Apply one frame; returns whether it was new. */
  apply(f: ServerFrame, notify = true): boolean {
    if (f.seq > 0) {
      if (f.seq <= this.lastSeq) return false;
      this.lastSeq = f.seq;
      this.frames.push(f);
      if (this.firstSeq === Infinity) this.firstSeq = f.seq;
    }
    this.reduce(f);
    if (notify) {
      this.changed();
      if (META_FRAMES.has(f.type)) app.changed();
    }
    return true;
  }

  /** Older frames (a page before firstSeq): rebuild from them plus what is here. */
  prepend(older: ServerFrame[]): void {
    const all = [...older, ...this.frames];
    const keep = { state: this.state, mode: this.mode, title: this.title };
    this.reset();
    for (const f of all) this.apply(f, false);
    Object.assign(this, keep);
    this.changed();
  }

  reset(): void {
    this.items = [];
    this.lastSeq = 0;
    this.firstSeq = Infinity;
    this.blocks.clear();
    this.tools.clear();
    this.pending.clear();
    this.frames = [];
  }

  private push(item: Item): void {
    this.items.push(item);
  }

  private reduce(f: ServerFrame): void {
    const key = (suffix: string) => `${f.seq || this.lastSeq}:${suffix}`;
    switch (f.type) {
      case "user_message": {
        // The optimistic copy the composer added is replaced by the real one.
        const i = this.items.findIndex((it) => it.kind === "user" && it.pending && it.text === f.prompt);
        if (i >= 0) this.items.splice(i, 1);
        this.push({ kind: "user", key: key("u"), text: f.prompt });
        if (!this.title) this.title = firstLine(f.prompt);
        // Blocks after a prompt belong to a new turn: an agent restarted
        // with the server may reuse message ids, which must not reopen a
        // block of an earlier turn.
        this.blocks.clear();
        break;
      }
      case "message_start":
        this.messageId = f.messageId || key("m");
        break;
      case "block_start": {
        const k = `${f.messageId || this.messageId}:${f.index}`;
        const old = this.blocks.get(k);
        if (f.blockType === "text" || f.blockType === "thinking") {
          if (old && (old.kind === "text" || old.kind === "thinking")) {
            // A replay of a block already shown: start it over.
            old.text = "";
            old.streaming = true;
            break;
          }
          const item: Item = { kind: f.blockType, key: k, text: "", streaming: true };
          this.blocks.set(k, item);
          this.push(item);
        } else if (f.blockType === "tool_use" && f.toolId && !old) {
          this.addTool(k, f.toolId, f.toolName || "tool", undefined);
        }
        break;
      }
      case "block_snapshot": {
        // The block so far, for a client that joined in the middle of it.
        const k = `${f.messageId || this.messageId}:${f.index}`;
        const old = this.blocks.get(k);
        if (old && (old.kind === "text" || old.kind === "thinking")) {
          old.text = f.text;
          old.streaming = true;
        } else if (old && old.kind === "tool") {
          old.inputJson = f.text;
        } else if (f.blockType === "text" || f.blockType === "thinking") {
          const item: Item = { kind: f.blockType, key: k, text: f.text, streaming: true };
          this.blocks.set(k, item);
          this.push(item);
        } else if (f.blockType === "tool_use" && f.toolId) {
          this.addTool(k, f.toolId, f.toolName || "tool", undefined);
        }
        break;
      }
      case "block_delta": {
        // Live only (seq 0): the coalesced block comes in block_end.
        const k = `${f.messageId || this.messageId}:${f.index}`;
        let item = this.blocks.get(k);
        if (!item) {
          if (f.deltaType === "input_json") break;
          const fresh: Item = { kind: f.deltaType, key: k, text: "", streaming: true };
          this.blocks.set(k, fresh);
          this.push(fresh);
          item = fresh;
        }
        if (item.kind === "tool") item.inputJson += f.text;
        else if (item.kind === "text" || item.kind === "thinking") item.text += f.text;
        break;
      }
      case "block_end": {
        const k = `${f.messageId || this.messageId}:${f.index}`;
        const item = this.blocks.get(k);
        if (item && (item.kind === "text" || item.kind === "thinking")) {
          item.streaming = false;
          if (typeof f.text === "string") item.text = f.text;
        } else if (f.toolId) {
          const t = this.tools.get(f.toolId);
          if (t) {
            t.input = f.input;
            t.inputJson = stringify(f.input);
          } else this.addTool(k, f.toolId, f.toolName || "tool", f.input);
        } else if (!item && (f.blockType === "text" || f.blockType === "thinking") && typeof f.text === "string") {
          // Joined after the block: its whole text at once.
          const fresh: Item = { kind: f.blockType, key: k, text: f.text, streaming: false };
          this.blocks.set(k, fresh);
          this.push(fresh);
        }
        break;
      }
      case "tool_result": {
        const t = this.tools.get(f.toolId);
        const text = typeof f.result === "string" ? f.result : stringify(f.result);
        if (t) {
          t.result = text;
          t.isError = !!f.isError;
        } else {
          this.push({ kind: "note", key: key("r"), text });
        }
        break;
      }
      case "result":
        if (f.isError) this.push({ kind: "result", key: key("res"), isError: true, text: f.result || f.subtype || "error", subtype: f.subtype || "" });
        this.state = "idle";
        break;
      case "error":
        this.push({ kind: "error", key: key("e"), text: f.error });
        break;
      case "interrupted":
        this.push({ kind: "note", key: key("i"), text: "Interrupted." });
        break;
      case "session_end":
        this.push({ kind: "note", key: key("end"), text: `Session ended${f.reason ? ": " + f.reason : ""}.` });
        this.state = "ended";
        break;
      case "mode_changed":
        this.mode = f.mode;
        this.push({ kind: "note", key: key("mode"), text: `Mode: ${f.mode}` });
        break;
      case "session_state_changed":
        this.state = f.state;
        break;
      case "session_updated": {
        const u = f.session || f;
        if (u.title) this.title = u.title;
        if (u.state) this.state = u.state;
        if (u.mode) this.mode = u.mode as Mode;
        break;
      }
      case "title_changed":
        this.title = f.title;
        break;
      case "permission_request":
        this.pending.set(f.permId, {
          sessionId: this.id,
          permId: f.permId,
          toolName: f.toolName,
          toolInput: (f.toolInput && typeof f.toolInput === "object" ? f.toolInput : {}) as Record<string, unknown>,
          expiresAt: f.expiresAt,
          title: f.title,
          summary: f.summary,
          diff: f.diff,
        });
        break;
      case "question_request":
        this.pending.set(f.permId, {
          sessionId: this.id,
          permId: f.permId,
          toolName: "AskUserQuestion",
          toolInput: {},
          expiresAt: f.expiresAt || 0,
          questions: f.questions,
        });
        break;
      case "network_request":
        this.pending.set(f.permId, {
          sessionId: this.id,
          permId: f.permId,
          toolName: "Network",
          toolInput: { host: f.host, port: f.port },
          expiresAt: f.expiresAt,
          title: `Reach ${f.host}:${f.port}`,
          summary: "The agent wants to connect to a host that is not on its allow-list. The connection waits for your answer.",
          network: { host: f.host, port: f.port },
        });
        break;
      case "network_refused":
        this.push({ kind: "note", key: key("nr"), text: `Network: ${f.host}:${f.port} refused (${f.reason})` });
        break;
      case "permission_resolved":
        if (f.permId) this.pending.delete(f.permId);
        if (f.decision === "answered" && f.answers) {
          this.push({ kind: "note", key: key("qa"), text: `Answered: ${Object.values(f.answers).join("; ")}` });
        }
        if (!["once", "always", "allow", "allow_session", "answered"].includes(f.decision)) {
          this.push({
            kind: "note",
            key: key("pr"),
            text: `${f.toolName || "Tool"}: ${f.decision}${f.by ? " by " + f.by : ""}${f.message ? " (" + f.message + ")" : ""}`,
          });
        }
        break;
      case "permission_timeout":
        this.pending.delete(f.permId);
        this.push({ kind: "note", key: key("pt"), text: "Approval timed out: denied." });
        break;
      default:
        break;
    }
  }

  private addTool(k: string, toolId: string, name: string, input: unknown): void {
    const item = { kind: "tool" as const, key: k, toolId, name, input, inputJson: input === undefined ? "" : stringify(input) };
    this.tools.set(toolId, item);
    this.blocks.set(k, item);
    this.push(item);
  }

  /** Text shown for the transcript, for tests comparing reconnects. */
  plain(): string {
    return this.items.map((i) => `${i.kind}:${"text" in i ? i.text : ""}`).join("\n");
  }

  addOptimistic(text: string): void {
    this.items.push({ kind: "user", key: `opt:${Date.now()}:${Math.random()}`, text, pending: true });
    this.changed();
  }
}

export function stringify(v: unknown): string {
  if (typeof v === "string") return v;
  try {
    return JSON.stringify(v, null, 2) ?? "";
  } catch {
    return String(v);
  }
}

export function firstLine(s: string): string {
  const line = s.trim().split("\n")[0] || "";
  return line.length > 80 ? line.slice(0, 79) + "…" : line;
}

// ---- app-wide state ---------------------------------------------------------

export const app = new (class extends Observable {
  authed: boolean | null = null;
  expiredMessage = "";
  connection: "connecting" | "open" | "reconnecting" | "offline" = "connecting";
  sessions: SessionSummary[] = [];
  tasks: Task[] = [];
  /** Bumped by every task frame: a list fetched meanwhile is stale. */
  taskEpoch = 0;
  /** Bumped on every (re)connect: task frames missed while away are not replayed. */
  connectEpoch = 0;
  transcripts = new Map<string, Transcript>();
  toast = "";
  transcript(id: string): Transcript {
    let t = this.transcripts.get(id);
    if (!t) {
      t = new Transcript(id);
      this.transcripts.set(id, t);
    }
    return t;
  }
  allPending(): PendingPermission[] {
    const out: PendingPermission[] = [];
    for (const t of this.transcripts.values()) out.push(...t.pending.values());
    return out.sort((a, b) => a.expiresAt - b.expiresAt);
  }
  setToast(msg: string): void {
    this.toast = msg;
    this.changed();
    setTimeout(() => {
      if (this.toast === msg) {
        this.toast = "";
        this.changed();
      }
    }, 4000);
  }
})();

export type { FrameOf };
