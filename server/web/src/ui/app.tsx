import { useEffect, useState } from "preact/hooks";
import { ApiError, api } from "../api";
import { routes } from "../protocol";
import { app, useObservable } from "../store";
import * as ws from "../ws";
import { Audit } from "./audit";
import { Chat } from "./chat";
import { Link, nav } from "./common";
import { Files } from "./files";
import { Review } from "./review";
import { SessionList, refreshSessions } from "./sessions";
import { Tasks } from "./tasks";

const boot = refreshSessions(true);
// Handled in App's first effect; marked handled now so a fast 401 is not
// reported as an unhandled rejection before that effect runs.
boot.catch(() => {});

export function App() {
  useObservable(app);
  useEffect(() => {
    const onPop = () => app.changed();
    window.addEventListener("popstate", onPop);
    // One request, started before the first render, both tells whether we
    // are signed in and fills the list.
    boot
      .then(() => {
        app.authed = true;
        app.changed();
      })
      .catch(() => {
        if (app.authed === null) {
          app.authed = false;
          app.changed();
        }
      });
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  useEffect(() => {
    if (app.authed) ws.start();
    else if (app.authed === false) ws.stop();
  }, [app.authed]);

  if (app.authed === null) return <main class="boot" aria-busy="true" />;
  if (!app.authed) return <Login />;

  const path = location.pathname;
  const chat = /^\/s\/([^/]+)$/.exec(path);
  const chatId = chat ? decodeURIComponent(chat[1]) : undefined;
  const review = /^\/s\/([^/]+)\/review$/.exec(path);
  let page;
  if (review) page = <Review id={decodeURIComponent(review[1])} />;
  else if (chatId) page = <Chat id={chatId} />;
  else if (path === "/files") page = <Files />;
  else if (path === "/tasks") page = <Tasks />;
  else if (path === "/audit") page = <Audit />;
  else page = null;
  const section = chatId || path === "/" || path === "/sessions" ? "sessions" : path.slice(1);
  return (
    <div class={`shell${page ? " has-page" : ""}${chatId ? " in-chat" : ""}`}>
      <TopBar section={section} />
      <div class="panes">
        <aside class="list-pane">
          <SessionList current={chatId} />
        </aside>
        <main class="page-pane" id="main">
          {page || <p class="empty wide-only">Pick a session, or start one.</p>}
        </main>
      </div>
      {app.toast && (
        <div class="toast" role="status">
          {app.toast}
        </div>
      )}
    </div>
  );
}

function TopBar({ section }: { section: string }) {
  const pending = app.allPending();
  const [tray, setTray] = useState(false);
  const item = (href: string, name: string, label: string) => (
    <Link href={href} class={section === name ? "active" : ""}>
      {label}
    </Link>
  );
  return (
    <header class="topbar">
      <nav aria-label="Main">
        {item("/", "sessions", "Sessions")}
        {item("/files", "files", "Files")}
        {item("/tasks", "tasks", "Tasks")}
        {item("/audit", "audit", "Audit")}
      </nav>
      <div class="top-actions">
        {app.connection !== "open" && (
          <span class={`conn ${app.connection}`} role="status">
            {app.connection === "reconnecting" ? "Reconnecting…" : "Connecting…"}
          </span>
        )}
        <button type="button" class={`tray-btn${pending.length ? " hot" : ""}`} aria-expanded={tray} aria-label={`${pending.length} approvals waiting`} onClick={() => setTray(!tray)}>
          <span aria-hidden="true">⚑</span> {pending.length}
        </button>
        <details class="menu account">
          <summary aria-label="Account">☰</summary>
          <div class="menu-items">
            <button type="button" onClick={() => logout(routes.logout)}>
              Log out
            </button>
            <button type="button" onClick={() => logout(routes.logoutAll)}>
              Log out everywhere
            </button>
          </div>
        </details>
      </div>
      {tray && (
        <div class="tray" role="region" aria-label="Approvals waiting">
          {pending.length === 0 ? (
            <p>Nothing is waiting for you.</p>
          ) : (
            <ul>
              {pending.map((p) => {
                const t = app.transcripts.get(p.sessionId);
                return (
                  <li key={p.permId}>
                    <button
                      type="button"
                      onClick={() => {
                        setTray(false);
                        nav(`/s/${encodeURIComponent(p.sessionId)}`);
                      }}
                    >
                      <strong>{p.questions ? "Question" : p.toolName}</strong> in <bdi>{t?.title || p.sessionId.slice(0, 8)}</bdi>
                    </button>
                  </li>
                );
              })}
            </ul>
          )}
        </div>
      )}
    </header>
  );
}

async function logout(path: string): Promise<void> {
  try {
    await api(path, { method: "POST" });
  } catch {
    // Already logged out is logged out.
  }
  ws.stop();
  app.transcripts.clear();
  app.sessions = [];
  app.authed = false;
  app.expiredMessage = path === routes.logoutAll ? "Logged out on every device." : "Logged out.";
  app.changed();
  nav("/", true);
}

function Login() {
  const [pass, setPass] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await api(routes.login, { method: "POST", body: { passphrase: pass } });
      setPass("");
      app.expiredMessage = "";
      app.authed = true;
      app.changed();
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? "Wrong passphrase." : String((err as Error).message));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} aria-label="Sign in">
        <h1>mitzod</h1>
        {app.expiredMessage && (
          <p class="notice" role="status">
            {app.expiredMessage}
          </p>
        )}
        <label for="passphrase">Passphrase</label>
        <input id="passphrase" type="password" autocomplete="current-password" value={pass} onInput={(e) => setPass((e.target as HTMLInputElement).value)} required />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
