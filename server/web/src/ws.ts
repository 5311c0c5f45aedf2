// The chat WebSocket: one connection, hello, per-session lastSeq on every
// (re)connect so nothing is lost or doubled, backoff, and a visible state.
import { api, sessionExpired } from "./api";
import { type ClientFrame, PROTOCOL_VERSION, type ServerFrame, type Task, routes } from "./protocol";
import { app } from "./store";

let socket: WebSocket | null = null;
let attempt = 0;
let timer: ReturnType<typeof setTimeout> | undefined;
let stopped = true;
const watched = new Set<string>();
const queue: ClientFrame[] = [];

function setState(s: typeof app.connection): void {
  if (app.connection !== s) {
    app.connection = s;
    app.changed();
  }
}

export function start(): void {
  stopped = false;
  if (!socket) connect();
}

export function stop(): void {
  stopped = true;
  clearTimeout(timer);
  const s = socket;
  socket = null;
  s?.close();
  watched.clear();
  queue.length = 0;
}

function connect(): void {
  clearTimeout(timer);
  if (stopped) return;
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${routes.ws}`;
  const ws = new WebSocket(url);
  socket = ws;
  setState(attempt === 0 ? "connecting" : "reconnecting");
  ws.onopen = () => {
    attempt = 0;
    raw(ws, { type: "hello", protocolVersion: PROTOCOL_VERSION });
    if (watched.size) {
      raw(ws, {
        type: "reconnect",
        sessions: [...watched].map((id) => ({ sessionId: id, lastSeq: app.transcript(id).lastSeq })),
      });
    }
    setState("open");
    for (const f of queue.splice(0)) raw(ws, f);
  };
  ws.onmessage = (ev) => {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(String(ev.data));
    } catch {
      return;
    }
    onFrame(frame);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    if (stopped) return;
    setState("reconnecting");
    attempt++;
    const delay = Math.min(5000, 250 * 2 ** Math.min(attempt, 5));
    timer = setTimeout(async () => {
      // A closed socket may mean the owner session ended: ask before retrying.
      try {
        await api(routes.check);
      } catch (e) {
        if ((e as { status?: number }).status === 401) return;
      }
      connect();
    }, delay);
  };
}

/** Reconnect now (the page became visible, the network came back). */
export function nudge(): void {
  if (!stopped && !socket) connect();
}

/** Close the socket as a network drop would (used by the reconnect test hook too). */
export function drop(): void {
  socket?.close();
}

function raw(ws: WebSocket, f: ClientFrame): void {
  ws.send(JSON.stringify(f));
}

export function send(f: ClientFrame): void {
  if (socket && socket.readyState === WebSocket.OPEN) raw(socket, f);
  else queue.push(f);
}

export function watch(id: string): void {
  if (watched.has(id)) return;
  watched.add(id);
  send({ type: "reconnect", sessions: [{ sessionId: id, lastSeq: app.transcript(id).lastSeq }] });
}

export function isWatched(id: string): boolean {
  return watched.has(id);
}

function upsertTask(task: Task): void {
  const i = app.tasks.findIndex((t) => t.id === task.id);
  if (i >= 0) app.tasks[i] = task;
  else app.tasks.push(task);
  app.changed();
}

function onFrame(f: ServerFrame): void {
  switch (f.type) {
    case "welcome":
    case "reconnected":
      return;
    case "task_updated":
      upsertTask(f.task as Task);
      return;
    case "task_deleted":
      app.tasks = app.tasks.filter((t) => t.id !== f.id);
      app.changed();
      return;
    case "session_created":
      if (f.sessionId) watched.add(f.sessionId);
      return;
    case "error":
      if (!f.sessionId && /logged out/.test(f.error)) {
        sessionExpired("Your session has ended. Sign in again.");
        stop();
        return;
      }
      if (f.seq === 0) {
        app.setToast(f.error);
        return;
      }
      break;
  }
  if (f.sessionId) app.transcript(f.sessionId).apply(f);
}
