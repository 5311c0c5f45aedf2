import { useEffect, useState } from "preact/hooks";
import { api } from "../api";
import { TASK_STATUSES, type Task, routes } from "../protocol";
import { app, useObservable } from "../store";

const LABEL: Record<string, string> = { todo: "To do", in_progress: "In progress", blocked: "Blocked", review: "Review", done: "Done" };

function SafeLink({ value }: { value: string }) {
  return /^https?:\/\//i.test(value) ? (
    <a href={value} rel="noopener noreferrer" target="_blank">
      {value}
    </a>
  ) : (
    <span>{value}</span>
  );
}

export function Tasks() {
  useObservable(app);
  const [error, setError] = useState("");
  useEffect(() => {
    api<{ tasks: Task[] }>(routes.tasks)
      .then((r) => {
        app.tasks = r.tasks;
        app.changed();
      })
      .catch((e) => setError(e.message));
  }, []);
  return (
    <section class="tasks" aria-label="Tasks">
      <div class="list-head">
        <h1>Tasks</h1>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="board">
        {TASK_STATUSES.map((s) => {
          const list = app.tasks.filter((t) => t.status === s).sort((a, b) => b.priority - a.priority);
          return (
            <section key={s} class={`column col-${s}`} aria-label={LABEL[s]}>
              <h2>
                {LABEL[s]} <span class="count">{list.length}</span>
              </h2>
              {list.map((t) => (
                <TaskCard key={t.id} t={t} />
              ))}
            </section>
          );
        })}
      </div>
    </section>
  );
}

function TaskCard({ t }: { t: Task }) {
  const [feedback, setFeedback] = useState("");
  const [rejecting, setRejecting] = useState(false);
  const act = async (path: string, body?: unknown) => {
    try {
      await api(path, { method: "POST", body });
    } catch (e) {
      app.setToast((e as Error).message);
    }
  };
  return (
    <details class="task card">
      <summary>
        <bdi class="title">{t.title}</bdi>
        {t.priority ? <span class="prio">P{t.priority}</span> : null}
      </summary>
      {t.description && <p class="desc">{t.description}</p>}
      {t.sessionId && <p class="meta">Session {t.sessionId.slice(0, 8)}</p>}
      {Object.keys(t.artifacts || {}).length > 0 && (
        <dl class="artifacts">
          {Object.entries(t.artifacts).map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>
                <SafeLink value={v} />
              </dd>
            </div>
          ))}
        </dl>
      )}
      {t.status === "review" &&
        (rejecting ? (
          <div class="deny-form">
            <label for={`fb-${t.id}`}>What needs to change</label>
            <textarea id={`fb-${t.id}`} rows={2} value={feedback} onInput={(e) => setFeedback((e.target as HTMLTextAreaElement).value)} />
            <div class="actions">
              <button type="button" class="danger" onClick={() => act(routes.reject(t.id), { feedback: feedback.trim() || "rejected" })}>
                Reject
              </button>
              <button type="button" onClick={() => setRejecting(false)}>
                Back
              </button>
            </div>
          </div>
        ) : (
          <div class="actions">
            <button type="button" class="primary" onClick={() => act(routes.approve(t.id))}>
              Approve
            </button>
            <button type="button" class="danger" onClick={() => setRejecting(true)}>
              Reject…
            </button>
          </div>
        ))}
    </details>
  );
}
