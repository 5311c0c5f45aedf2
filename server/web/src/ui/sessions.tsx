import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { preloadMarkdownWhenIdle } from "../lazy";
import { HAS_REPO_CHOICE, MODES, type Mode, type QuickAction, type Repo, type SessionSummary, routes } from "../protocol";
import { app, firstLine, useObservable } from "../store";
import * as ws from "../ws";
import { openSession } from "./chat";
import { Link, ago, nav, stateLabel } from "./common";

let fetchedAt = 0;

/** The list (also the first request the page makes: a 401 means "sign in"). */
export async function refreshSessions(quiet401 = false): Promise<void> {
  const r = await api<{ sessions: SessionSummary[] }>(`${routes.sessions}?limit=100`, { quiet401 });
  fetchedAt = Date.now();
  app.sessions = r.sessions;
  // Sessions waiting for the owner: load them so their approvals are one tap away.
  for (const s of r.sessions) {
    if (s.state === "requires_action" || (s.pendingApprovals ?? 0) > 0) openSession(s.id).catch(() => {});
  }
  app.changed();
}

function pendingOf(s: SessionSummary): number {
  const t = app.transcripts.get(s.id);
  return t ? t.pending.size : s.pendingApprovals ?? (s.state === "requires_action" ? 1 : 0);
}

function stateOf(s: SessionSummary): string {
  const t = app.transcripts.get(s.id);
  return t && t.lastSeq > 0 ? t.state : s.state;
}

export function SessionList({ current }: { current?: string }) {
  useObservable(app);
  const [showNew, setShowNew] = useState(false);
  useEffect(() => {
    if (Date.now() - fetchedAt > 2000) refreshSessions().catch(() => {});
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") refreshSessions().catch(() => {});
    }, 4000);
    return () => clearInterval(timer);
  }, []);
  useEffect(() => {
    if (app.sessions.length > 0) preloadMarkdownWhenIdle();
  }, [app.sessions.length > 0]);
  const sorted = [...app.sessions].sort((a, b) => {
    const wa = pendingOf(a) > 0 ? 1 : 0;
    const wb = pendingOf(b) > 0 ? 1 : 0;
    if (wa !== wb) return wb - wa;
    return (b.lastActivity ?? b.lastModified) - (a.lastActivity ?? a.lastModified);
  });
  return (
    <section class="sessions" aria-label="Sessions">
      <div class="list-head">
        <h1>Sessions</h1>
        <button type="button" class="primary" onClick={() => setShowNew(!showNew)} aria-expanded={showNew}>
          New session
        </button>
      </div>
      {showNew && <NewSession onDone={() => setShowNew(false)} />}
      {sorted.length === 0 && <p class="empty">No sessions yet.</p>}
      <ul class="session-list">
        {sorted.map((s) => {
          const pending = pendingOf(s);
          const st = stateLabel(stateOf(s), pending);
          const t = app.transcripts.get(s.id);
          const title = (t && t.title) || s.title || firstLine(s.summary || "") || s.id.slice(0, 8);
          return (
            <li key={s.id} class={`${st.cls}${current === s.id ? " current" : ""}`}>
              <Link href={`/s/${encodeURIComponent(s.id)}`} class="session-link">
                <span class="title">
                  <bdi>{title}</bdi>
                </span>
                <span class="meta">
                  <span class={`state ${st.cls}`}>{st.text}</span>
                  {s.repo ? <span>{s.repo}</span> : null}
                  {s.branch ? (
                    <span class="branch">
                      <bdi>{s.branch}</bdi>
                    </span>
                  ) : null}
                  <span>{ago(s.lastActivity ?? s.lastModified)}</span>
                </span>
              </Link>
              <SessionMenu s={s} title={title} />
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function SessionMenu({ s, title }: { s: SessionSummary; title: string }) {
  return (
    <details class="menu">
      <summary aria-label={`Actions for ${title}`}>⋯</summary>
      <div class="menu-items">
        <button type="button" onClick={() => ws.send({ type: "stop", sessionId: s.id })}>
          Stop
        </button>
        {s.branch && (
          <button
            type="button"
            onClick={(e) => {
              (e.currentTarget as HTMLElement).closest("details")?.removeAttribute("open");
              nav(`/s/${encodeURIComponent(s.id)}/review`);
            }}
          >
            Review
          </button>
        )}
        <button
          type="button"
          class="danger"
          onClick={async () => {
            if (!window.confirm(`Delete “${title}”?`)) return;
            try {
              await api(routes.session(s.id), { method: "DELETE" });
              app.transcripts.delete(s.id);
              if (location.pathname.includes(s.id)) nav("/");
              await refreshSessions();
            } catch (e) {
              app.setToast(String((e as Error).message));
            }
          }}
        >
          Delete
        </button>
      </div>
    </details>
  );
}

function NewSession({ onDone }: { onDone: () => void }) {
  const [repos, setRepos] = useState<Repo[]>([]);
  const [actions, setActions] = useState<QuickAction[]>([]);
  const [repo, setRepo] = useState("");
  const [mode, setMode] = useState<Mode>("ask");
  // The server's default (the repo's .mitzo.json, else session.isolation)
  // until /api/config says otherwise; isolation is the safe side.
  const [isolation, setIsolation] = useState(true);
  const [prompt, setPrompt] = useState("");
  const [error, setError] = useState("");
  useEffect(() => {
    api<{ quickActions: QuickAction[]; isolation?: boolean }>(routes.config)
      .then((c) => {
        setActions(c.quickActions || []);
        if (typeof c.isolation === "boolean") setIsolation(c.isolation);
      })
      .catch(() => {});
    if (HAS_REPO_CHOICE)
      api<Repo[]>(routes.repos)
        .then((r) => {
          setRepos(r);
          setRepo((r.find((x) => x.default) || r[0])?.name || "");
        })
        .catch(() => {});
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError("");
    const text = prompt.trim();
    if (!text) {
      setError("Write what the agent should do.");
      return;
    }
    try {
      const body: Record<string, unknown> = { source: "web", mode, isolation, summary: firstLine(text) };
      if (HAS_REPO_CHOICE && repo) body.repo = repo;
      const r = await api<{ sessionId: string }>(routes.sessions, { method: "POST", body });
      const t = app.transcript(r.sessionId);
      t.mode = mode;
      t.title = firstLine(text);
      t.firstSeq = 1;
      ws.watch(r.sessionId);
      ws.send({ type: "send", sessionId: r.sessionId, prompt: text, mode });
      t.addOptimistic(text);
      onDone();
      nav(`/s/${encodeURIComponent(r.sessionId)}`);
      refreshSessions().catch(() => {});
    } catch (err) {
      setError(String((err as Error).message));
    }
  };
  return (
    <form class="card new-session" onSubmit={submit} aria-label="New session">
      {HAS_REPO_CHOICE && repos.length > 1 && (
        <label>
          Repository
          <select value={repo} onChange={(e) => setRepo((e.target as HTMLSelectElement).value)}>
            {repos.map((r) => (
              <option key={r.name} value={r.name}>
                {r.name}
              </option>
            ))}
          </select>
        </label>
      )}
      <label>
        Mode
        <select value={mode} onChange={(e) => setMode((e.target as HTMLSelectElement).value as Mode)}>
          {MODES.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
      </label>
      <label class="check">
        <input type="checkbox" checked={isolation} onChange={(e) => setIsolation((e.target as HTMLInputElement).checked)} />
        Own checkout (isolation)
      </label>
      {actions.length > 0 && (
        <div class="quick" aria-label="Quick actions">
          {actions.map((a, i) => (
            <button key={i} type="button" onClick={() => setPrompt(a.prompt || a.label || a.name || "")}>
              {a.label || a.name || a.prompt}
            </button>
          ))}
        </div>
      )}
      <label>
        First message
        <textarea rows={3} value={prompt} onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)} />
      </label>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" class="primary">
        Start
      </button>
    </form>
  );
}
