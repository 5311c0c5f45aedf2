import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { type AuditRow, routes } from "../protocol";
import { app, useObservable } from "../store";

export function Audit() {
  useObservable(app);
  const [session, setSession] = useState(new URLSearchParams(location.search).get("session") || "");
  const [rows, setRows] = useState<AuditRow[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    api<{ entries: AuditRow[] }>(routes.audit(session || undefined))
      .then((r) => setRows(r.entries))
      .catch((e) => setError(e.message));
  }, [session]);
  return (
    <section class="audit" aria-label="Audit log">
      <div class="list-head">
        <h1>Audit</h1>
        <label>
          <span class="sr-only">Session</span>
          <select aria-label="Filter by session" value={session} onChange={(e) => setSession((e.target as HTMLSelectElement).value)}>
            <option value="">All sessions</option>
            {app.sessions.map((s) => (
              <option key={s.id} value={s.id}>
                {(s.title || s.summary || s.id).slice(0, 40)}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {rows.length === 0 ? (
        <p class="empty">No decisions yet.</p>
      ) : (
        <ul class="audit-list">
          {rows.map((r) => (
            <li key={r.id} class={`decision-${r.decision}`}>
              <span class="when">{new Date(r.ts).toLocaleString()}</span>
              <span class="tool">{r.tool}</span>
              <span class={`badge ${r.decision}`}>
                {r.decision} · {r.decidedBy}
              </span>
              <code class="summary">{r.inputSummary}</code>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
