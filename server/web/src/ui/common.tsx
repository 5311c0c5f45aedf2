import type { ComponentChildren } from "preact";
import { app } from "../store";

export function nav(path: string, replace = false): void {
  if (location.pathname === path) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  app.changed();
  window.scrollTo(0, 0);
}

export function Link(props: { href: string; class?: string; children: ComponentChildren; label?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      aria-label={props.label}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        nav(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

export function ago(ms: number | undefined): string {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Long text folded behind a toggle. */
export function Folded(props: { text: string; lines?: number; label?: string; error?: boolean }) {
  const max = props.lines ?? 12;
  const lines = props.text.split("\n");
  const cls = props.error ? "out error" : "out";
  if (lines.length <= max && props.text.length <= 2000) return <pre class={cls}>{props.text}</pre>;
  return (
    <details class="fold">
      <summary>
        {props.label || "Output"}: {lines.length} lines (show all)
      </summary>
      <pre class={cls}>{props.text}</pre>
    </details>
  );
}

/** Unified-diff-ish text with added/removed lines marked. */
export function Diff(props: { text: string }) {
  const lines = props.text.split("\n");
  return (
    <pre class="diff" aria-label="diff">
      {lines.map((l, i) => (
        <span key={i} class={l.startsWith("+") && !l.startsWith("+++") ? "add" : l.startsWith("-") && !l.startsWith("---") ? "del" : l.startsWith("@@") ? "hunk" : ""}>
          {l}
          {"\n"}
        </span>
      ))}
    </pre>
  );
}

export function stateLabel(state: string, pending = 0): { text: string; cls: string } {
  if (pending > 0 || state === "requires_action") return { text: "waiting for you", cls: "waiting" };
  if (state === "running") return { text: "running", cls: "running" };
  if (state === "ended" || state === "stopped") return { text: "stopped", cls: "idle" };
  return { text: "idle", cls: "idle" };
}
