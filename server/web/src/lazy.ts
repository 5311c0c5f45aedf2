// The Markdown renderer (marked + DOMPurify: most of the JavaScript) loads
// in its own chunk, when a chat first needs it or once the page is idle, so
// the session list is interactive sooner; chats re-render once it is there.
import { useEffect, useState } from "preact/hooks";

type Render = (src: string) => TrustedHTML | string;
let render: Render | null = null;
const waiting = new Set<(r: Render) => void>();

let loading: Promise<Render> | null = null;

/** Load the renderer (once); chats call this when they first show text. */
export function loadMarkdown(): Promise<Render> {
  if (!loading) {
    loading = import("./markdown").then((m) => {
      render = m.renderMarkdown;
      for (const fn of waiting) fn(m.renderMarkdown);
      waiting.clear();
      return m.renderMarkdown;
    });
  }
  return loading;
}

// Otherwise when the page has nothing else to do, so opening a chat later
// finds it ready without its parse competing with the first screen.
const idle = (window as unknown as { requestIdleCallback?: (f: () => void, o: { timeout: number }) => void }).requestIdleCallback;
setTimeout(() => (idle ? idle(() => void loadMarkdown(), { timeout: 5000 }) : void loadMarkdown()), 2000);

export function useMarkdown(): Render | null {
  const [r, setR] = useState<Render | null>(() => render);
  useEffect(() => {
    if (r) return;
    void loadMarkdown();
    const fn = (x: Render) => setR(() => x);
    waiting.add(fn);
    return () => waiting.delete(fn);
  }, [r]);
  return r;
}
