import { useEffect, useState } from "preact/hooks";
import { DECISION, HAS_DENY_MESSAGE } from "../protocol";
import type { PendingPermission } from "../store";
import * as ws from "../ws";
import { Diff } from "./common";
import { inputDiff, toolBrief } from "./items";

function Countdown({ until }: { until: number }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  if (!until) return null;
  const s = Math.max(0, Math.round((until - now) / 1000));
  return (
    <span class={`countdown${s < 30 ? " soon" : ""}`} aria-live="off">
      expires in {Math.floor(s / 60)}:{String(s % 60).padStart(2, "0")}
    </span>
  );
}

export function ApprovalSheet({ p }: { p: PendingPermission }) {
  const [reason, setReason] = useState("");
  const [denying, setDenying] = useState(false);
  const [busy, setBusy] = useState(false);
  if (p.questions) return <QuestionSheet p={p} />;
  const net = p.network;
  const brief = net ? "" : toolBrief(p.toolName, p.toolInput);
  // A tool's own description often repeats the title ("Run a command"):
  // on a phone every line counts, so a summary line equal to it goes.
  const title = p.title || `${p.toolName} wants to run`;
  const summary = (p.summary || "")
    .split("\n")
    .filter((l) => l.trim().toLowerCase() !== title.trim().toLowerCase())
    .join("\n");
  const diff = p.diff || inputDiff(p.toolName, p.toolInput);
  const decide = (choice: "once" | "session" | "deny") => {
    setBusy(true);
    ws.send({
      type: "permission_response",
      sessionId: p.sessionId,
      permId: p.permId,
      decision: DECISION[choice],
      ...(choice === "deny" && HAS_DENY_MESSAGE && reason.trim() ? { message: reason.trim() } : {}),
    });
  };
  return (
    <div class="sheet" role="dialog" aria-modal="false" aria-labelledby={`perm-${p.permId}`}>
      <header>
        {/* Titles and summaries name agent-chosen paths and commands: bidi-isolated. */}
        <h2 id={`perm-${p.permId}`}>
          <bdi>{title}</bdi>
        </h2>
        <Countdown until={p.expiresAt} />
      </header>
      {net ? (
        <p class="summary">
          <code>
            {net.host}:{net.port}
          </code>{" "}
          is not on this session's allow-list. The connection waits for your answer; “for this session” never allows it for another session.
        </p>
      ) : summary ? (
        <p class="summary">
          <bdi>{summary}</bdi>
        </p>
      ) : brief && p.toolName !== "Bash" ? (
        <p class="summary">
          <code>{brief}</code>
        </p>
      ) : null}
      {diff ? <Diff text={diff} /> : p.toolName === "Bash" && !summary ? <pre class="cmd">$ {brief}</pre> : null}
      {net ? null : (
        <details class="raw">
          <summary>Raw input</summary>
          <pre>{JSON.stringify(p.toolInput, null, 2)}</pre>
        </details>
      )}
      {denying ? (
        <div class="deny-form">
          <label for={`reason-${p.permId}`}>Reason (optional)</label>
          <textarea id={`reason-${p.permId}`} value={reason} onInput={(e) => setReason((e.target as HTMLTextAreaElement).value)} rows={2} />
          <div class="actions">
            <button type="button" class="danger" disabled={busy} onClick={() => decide("deny")}>
              Deny
            </button>
            <button type="button" onClick={() => setDenying(false)}>
              Back
            </button>
          </div>
        </div>
      ) : (
        <div class="actions">
          <button type="button" class="primary" disabled={busy} onClick={() => decide("once")}>
            {net ? "Allow this connection" : "Allow once"}
          </button>
          <button type="button" disabled={busy} onClick={() => decide("session")}>
            {net ? "Allow this host for this session" : "Allow for this session"}
          </button>
          <button type="button" class="danger" disabled={busy} onClick={() => setDenying(true)}>
            Deny…
          </button>
        </div>
      )}
    </div>
  );
}

function QuestionSheet({ p }: { p: PendingPermission }) {
  const qs = p.questions || [];
  const [picked, setPicked] = useState<Record<string, string[]>>({});
  const [other, setOther] = useState<Record<string, string>>({});
  const submit = (e: Event) => {
    e.preventDefault();
    const answers: Record<string, string> = {};
    for (const q of qs) {
      const free = (other[q.question] || "").trim();
      answers[q.question] = free || (picked[q.question] || []).join(", ");
    }
    ws.send({ type: "question_response", sessionId: p.sessionId, permId: p.permId, answers });
  };
  return (
    <div class="sheet" role="dialog" aria-label="The agent asks">
    <form class="question" onSubmit={submit}>
      <header>
        <h2>The agent asks</h2>
        <Countdown until={p.expiresAt} />
      </header>
      {qs.map((q, qi) => (
        <fieldset key={qi}>
          <legend>{q.header ? `${q.header}: ` : ""}{q.question}</legend>
          {q.options.map((o, oi) => {
            const id = `q${qi}o${oi}`;
            const chosen = (picked[q.question] || []).includes(o.label);
            return (
              <label key={oi} for={id} class="option">
                <input
                  id={id}
                  type={q.multiSelect ? "checkbox" : "radio"}
                  name={`q${qi}`}
                  checked={chosen}
                  onChange={() => {
                    const cur = picked[q.question] || [];
                    const next = q.multiSelect ? (chosen ? cur.filter((x) => x !== o.label) : [...cur, o.label]) : [o.label];
                    setPicked({ ...picked, [q.question]: next });
                  }}
                />
                <span>
                  <strong>{o.label}</strong>
                  {o.description ? <small>{o.description}</small> : null}
                </span>
              </label>
            );
          })}
          <label for={`q${qi}free`}>Or answer in your words</label>
          <input id={`q${qi}free`} type="text" value={other[q.question] || ""} onInput={(e) => setOther({ ...other, [q.question]: (e.target as HTMLInputElement).value })} />
        </fieldset>
      ))}
      <div class="actions">
        <button type="submit" class="primary">
          Answer
        </button>
      </div>
    </form>
    </div>
  );
}
