import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api } from "../api";
import { loadMarkdown } from "../lazy";
import { type EventPage, HAS_RENAME, MODES, type Mode, type SessionMeta, routes } from "../protocol";
import { app, firstLine, type Transcript, useObservable } from "../store";
import * as ws from "../ws";
import { ApprovalSheet } from "./approval";
import { nav, stateLabel } from "./common";
import { ItemView, itemVersion } from "./items";

const PAGE = 300;
const WINDOW = 25;

const loading = new Map<string, Promise<void>>();
/** Sessions whose meta said retention compacted their older history. */
const compacted = new Set<string>();

/** The last page of a session's history, then live frames from there on. */
export function openSession(id: string): Promise<void> {
  const t = app.transcript(id);
  if (t.lastSeq > 0 || loading.has(id)) {
    ws.watch(id);
    return loading.get(id) || Promise.resolve();
  }
  // The renderer loads while the history does.
  void loadMarkdown();
  const p = (async () => {
    const meta = await api<SessionMeta>(routes.meta(id));
    // Live frames of this session may have arrived while the request was
    // out (a session this connection just created is watched already):
    // they are newer than the answer, so it must not overwrite them.
    if (t.lastSeq <= meta.lastSeq) {
      t.mode = meta.mode;
      t.state = meta.state;
    }
    t.title = meta.title || firstLine(meta.summary || "");
    if (meta.historyCompacted) compacted.add(id);
    const page = await api<EventPage>(routes.eventsBefore(id, meta.lastSeq + 1, PAGE));
    for (const f of page.events) t.apply(f, false);
    t.firstSeq = page.hasMore ? (page.events[0]?.seq ?? 1) : 1;
    t.changed();
    app.changed();
    ws.watch(id);
  })().finally(() => loading.delete(id));
  loading.set(id, p);
  return p;
}

/** Load the page of history before what is shown. */
async function loadOlder(t: Transcript): Promise<void> {
  if (t.complete) return;
  const page = await api<EventPage>(routes.eventsBefore(t.id, t.firstSeq, PAGE));
  t.prepend(page.events);
  t.firstSeq = page.hasMore ? (page.events[0]?.seq ?? 1) : 1;
}

export function Chat({ id }: { id: string }) {
  const t = app.transcript(id);
  useObservable(t);
  const [error, setError] = useState("");
  const [shown, setShown] = useState(WINDOW);
  const list = useRef<HTMLDivElement>(null);
  const pinned = useRef(true);

  useEffect(() => {
    setError("");
    setShown(WINDOW);
    pinned.current = true;
    openSession(id).catch((e) => setError(String(e.message || e)));
  }, [id]);

  // Stay at the end while the owner is there; keep position when reading back.
  useLayoutEffect(() => {
    const el = list.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  });

  const onScroll = () => {
    const el = list.current;
    if (!el) return;
    pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (el.scrollTop < 40) showOlder();
  };

  const showOlder = async () => {
    const el = list.current;
    const h = el?.scrollHeight ?? 0;
    if (shown < t.items.length) setShown(shown + WINDOW);
    else if (!t.complete) {
      await loadOlder(t);
      setShown(shown + WINDOW);
    } else return;
    requestAnimationFrame(() => {
      if (el) el.scrollTop += el.scrollHeight - h;
    });
  };

  const items = t.items.slice(Math.max(0, t.items.length - shown));
  const hidden = t.items.length - items.length;
  const pending = [...t.pending.values()];
  const st = stateLabel(t.state, pending.length);
  const running = t.state === "running" || t.state === "requires_action";
  const isCompacted = compacted.has(id) || app.sessions.some((s) => s.id === id && s.historyCompacted);

  return (
    <div class="chat">
      <header class="chat-head">
        <button type="button" class="back" aria-label="Back to sessions" onClick={() => nav("/")}>
          ‹
        </button>
        <div class="chat-title">
          <h1>{t.title || "New session"}</h1>
          <span class={`state ${st.cls}`}>{st.text}</span>
        </div>
        {HAS_RENAME && <Rename id={id} title={t.title} />}
        <ModeSwitch id={id} mode={t.mode} />
        <button type="button" class="danger" disabled={!running} onClick={() => ws.send({ type: "stop", sessionId: id })}>
          Stop
        </button>
      </header>
      {app.connection === "reconnecting" && (
        <div class="banner" role="status">
          Reconnecting…
        </div>
      )}
      {isCompacted && (
        <p class="banner compacted" role="note">
          Older history was compacted to stay within the retention limits: streaming details are gone, and the oldest
          messages may be too.
        </p>
      )}
      {error && (
        <div class="msg error" role="alert">
          {error}
        </div>
      )}
      <div class="transcript" ref={list} onScroll={onScroll} aria-live="polite" aria-label="Transcript" tabIndex={0} data-last-seq={t.lastSeq}>
        {(hidden > 0 || !t.complete) && (
          <button type="button" class="older" onClick={showOlder}>
            Load older messages
          </button>
        )}
        {items.map((it) => (
          <ItemView key={it.key} item={it} v={itemVersion(it)} />
        ))}
        {running && pending.length === 0 && <div class="typing" aria-label="The agent is working">●●●</div>}
      </div>
      {pending.length > 0 ? <ApprovalSheet key={pending[0].permId} p={pending[0]} /> : <Composer id={id} running={running} mode={t.mode} />}
    </div>
  );
}

function Rename({ id, title }: { id: string; title: string }) {
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState(title);
  if (!editing)
    return (
      <button
        type="button"
        aria-label="Rename"
        title="Rename"
        onClick={() => {
          setValue(title);
          setEditing(true);
        }}
      >
        ✎
      </button>
    );
  return (
    <form
      class="rename"
      onSubmit={(e) => {
        e.preventDefault();
        const v = value.trim();
        if (v) ws.send({ type: "rename", sessionId: id, title: v });
        setEditing(false);
      }}
    >
      <label for="rename-title" class="sr-only">
        Session title
      </label>
      <input id="rename-title" type="text" value={value} maxLength={200} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
      <button type="submit" class="primary">
        Save
      </button>
    </form>
  );
}

function ModeSwitch({ id, mode }: { id: string; mode: Mode }) {
  return (
    <label class="mode">
      <span class="sr-only">Mode</span>
      <select
        value={mode}
        aria-label="Mode"
        onChange={(e) => ws.send({ type: "set_mode", sessionId: id, mode: (e.target as HTMLSelectElement).value as Mode })}
      >
        {MODES.map((m) => (
          <option key={m} value={m}>
            {m}
          </option>
        ))}
      </select>
    </label>
  );
}

function Composer({ id, running, mode }: { id: string; running: boolean; mode: Mode }) {
  const [text, setText] = useState("");
  const submit = (e: Event) => {
    e.preventDefault();
    const prompt = text.trim();
    if (!prompt && !running) return;
    const t = app.transcript(id);
    if (running) {
      ws.send({ type: "interrupt", sessionId: id, ...(prompt ? { prompt } : {}) });
    } else {
      ws.send({ type: "send", sessionId: id, prompt, mode });
    }
    if (prompt) t.addOptimistic(prompt);
    setText("");
  };
  return (
    <form class="composer" onSubmit={submit}>
      <label for="prompt" class="sr-only">
        Message
      </label>
      <textarea
        id="prompt"
        rows={2}
        placeholder={running ? "Interrupt with a new message…" : "Message the agent…"}
        value={text}
        onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(e);
        }}
      />
      <button type="submit" class="primary">
        {running ? "Interrupt" : "Send"}
      </button>
    </form>
  );
}
