import { memo } from "preact/compat";
import { useLayoutEffect, useRef } from "preact/hooks";
import { useMarkdown } from "../lazy";
import type { Item } from "../store";
import { Diff, Folded } from "./common";

/** Sanitised Markdown, set as TrustedHTML; code blocks get a copy button. */
export function Markdown(props: { text: string }) {
  const ref = useRef<HTMLDivElement>(null);
  const render = useMarkdown();
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    if (!render) {
      // Until the renderer has loaded: the text as text.
      el.textContent = props.text;
      return;
    }
    try {
      el.innerHTML = render(props.text) as unknown as string;
    } catch {
      el.textContent = props.text;
      return;
    }
    for (const pre of el.querySelectorAll("pre")) {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "copy";
      btn.textContent = "Copy";
      btn.setAttribute("aria-label", "Copy code");
      btn.addEventListener("click", () => {
        const code = pre.querySelector("code")?.textContent ?? pre.textContent ?? "";
        navigator.clipboard?.writeText(code).then(
          () => (btn.textContent = "Copied"),
          () => (btn.textContent = "Copy failed"),
        );
      });
      pre.appendChild(btn);
    }
  }, [props.text, render]);
  return <div class={render ? "md" : "md plain"} ref={ref} />;
}

function field(input: unknown, name: string): string {
  if (input && typeof input === "object" && name in input) {
    const v = (input as Record<string, unknown>)[name];
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  return "";
}

/** One line saying what a tool call is about. */
export function toolBrief(name: string, input: unknown): string {
  switch (name) {
    case "Bash":
      return field(input, "command");
    case "Write":
    case "Edit":
    case "MultiEdit":
    case "Read":
    case "NotebookEdit":
      return field(input, "file_path") || field(input, "notebook_path");
    case "Grep":
      return `${field(input, "pattern")}${field(input, "path") ? " in " + field(input, "path") : ""}`;
    case "Glob":
      return field(input, "pattern");
    case "WebFetch":
      return field(input, "url");
    default:
      return "";
  }
}

/** What a Write/Edit would change, as diff lines. */
export function inputDiff(name: string, input: unknown): string | null {
  if (name === "Write") {
    const c = field(input, "content");
    return c ? c.split("\n").map((l) => "+" + l).join("\n") : null;
  }
  if (name === "Edit") {
    const o = field(input, "old_string");
    const n = field(input, "new_string");
    return [...o.split("\n").map((l) => "-" + l), ...n.split("\n").map((l) => "+" + l)].join("\n");
  }
  if (name === "MultiEdit" && input && typeof input === "object") {
    const edits = (input as { edits?: { old_string?: string; new_string?: string }[] }).edits || [];
    return edits
      .map((e) => [...(e.old_string || "").split("\n").map((l) => "-" + l), ...(e.new_string || "").split("\n").map((l) => "+" + l)].join("\n"))
      .join("\n@@\n");
  }
  return null;
}

function ToolCard({ item }: { item: Item & { kind: "tool" } }) {
  const brief = toolBrief(item.name, item.input);
  const diff = inputDiff(item.name, item.input);
  const status = item.result === undefined ? "running" : item.isError ? "error" : "ok";
  return (
    <section class={`tool tool-${status}`} aria-label={`${item.name} tool call`}>
      <header>
        <span class="tool-name">{item.name}</span>
        <span class="tool-brief">{brief}</span>
        <span class={`badge ${status}`}>{status === "running" ? "…" : status}</span>
      </header>
      {item.name === "Bash" ? (
        <pre class="cmd">$ {brief}</pre>
      ) : diff ? (
        <details class="fold" open={diff.split("\n").length <= 20}>
          <summary>Change to {brief}</summary>
          <Diff text={diff} />
        </details>
      ) : !brief && item.inputJson ? (
        <Folded text={item.inputJson} label="Input" lines={6} />
      ) : null}
      {item.result !== undefined && <Folded text={item.result} error={item.isError} label={item.isError ? "Error" : "Result"} />}
    </section>
  );
}

export const ItemView = memo(
  function ItemView({ item }: { item: Item; v: string }) {
    switch (item.kind) {
      case "user":
        return (
          <div class={`msg user${item.pending ? " pending" : ""}`}>
            <p>{item.text}</p>
          </div>
        );
      case "text":
        return (
          <div class={`msg agent${item.streaming ? " streaming" : ""}`}>
            <Markdown text={item.text} />
          </div>
        );
      case "thinking":
        return (
          <details class="thinking">
            <summary>Thinking{item.streaming ? "…" : ""}</summary>
            <pre>{item.text}</pre>
          </details>
        );
      case "tool":
        return <ToolCard item={item} />;
      case "result":
        return (
          <div class="msg error" role="alert">
            <strong>Turn failed</strong> {item.subtype ? `(${item.subtype})` : ""}: {item.text}
          </div>
        );
      case "error":
        return (
          <div class="msg error" role="alert">
            <strong>Error:</strong> {item.text}
          </div>
        );
      case "note":
        return <div class="note">{item.text}</div>;
    }
  },
  (a, b) => a.item === b.item && a.v === b.v,
);

/** A cheap fingerprint so memoised items re-render when they change in place. */
export function itemVersion(i: Item): string {
  switch (i.kind) {
    case "text":
    case "thinking":
      return `${i.text.length}:${i.streaming}`;
    case "tool":
      return `${i.inputJson.length}:${i.result?.length ?? -1}:${i.isError}`;
    default:
      return "";
  }
}
