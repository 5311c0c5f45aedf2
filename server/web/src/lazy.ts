// The Markdown renderer (marked + DOMPurify: most of the JavaScript) loads
// in its own chunk, when a chat first needs it or once the page is idle, so
// the session list is interactive sooner; chats re-render once it is there.
import { useEffect, useState } from "preact/hooks";

type Render = (src: string) => TrustedHTML | string;
let render: Render | null = null;
let loading: Promise<Render> | null = null;

/** A little of each block and inline rule the agent's text commonly uses. */
const WARM_UP = "# Warm\n\nSome **bold**, _em_, `code` and a [link](https://example.com/).\n\n- one\n- two\n\n1. first\n\n> quoted\n\n```\ncode\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";

/** Load the renderer (once); chats call this when they first show text. */
export function loadMarkdown(): Promise<Render> {
  if (!loading) {
    loading = import("./markdown").then(
      (m) => {
        // The first render pays for compiling the parser and the sanitizer
        // (tens of ms on a phone): pay it now, while the history is still
        // on its way, not when the chat's first messages are ready.
        try {
          m.renderMarkdown(WARM_UP);
        } catch {
          // a failure shows again, and is handled, at the first real render
        }
        render = m.renderMarkdown;
        return m.renderMarkdown;
      },
      (e: unknown) => {
        loading = null; // a chunk that failed to load is tried again next time
        throw e;
      },
    );
  }
  return loading;
}

// Otherwise when the page has nothing else to do, so opening a chat later
// finds it ready without its parse competing with the first screen: once
// the session list is on screen (it calls this), else after 2 s.
const idle = (window as unknown as { requestIdleCallback?: (f: () => void, o: { timeout: number }) => void }).requestIdleCallback;
let preloadQueued = false;
export function preloadMarkdownWhenIdle(): void {
  if (preloadQueued) return;
  preloadQueued = true;
  const preload = () => void loadMarkdown().catch(() => {});
  if (idle) idle(preload, { timeout: 5000 });
  else setTimeout(preload, 500);
}
setTimeout(preloadMarkdownWhenIdle, 2000);

export function useMarkdown(): Render | null {
  const [r, setR] = useState<Render | null>(() => render);
  useEffect(() => {
    if (r) return;
    // Through the promise, not only the waiting set: the renderer may have
    // loaded between this component's first render and this effect, after
    // the set was drained, and the text would then stay unrendered.
    let live = true;
    loadMarkdown().then(
      (x) => {
        if (live) setR(() => x);
      },
      () => {}, // text stays as text
    );
    return () => {
      live = false;
    };
  }, [r]);
  return r;
}
