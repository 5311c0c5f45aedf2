// The Markdown renderer (marked + DOMPurify: most of the JavaScript) loads
// in its own chunk, when a chat first needs it or once the page is idle, so
// the session list is interactive sooner; chats re-render once it is there.
import { useEffect, useState } from "preact/hooks";

type Render = (src: string) => TrustedHTML | string;
let render: Render | null = null;
let loading: Promise<Render> | null = null;

/** Load the renderer (once); chats call this when they first show text. */
export function loadMarkdown(): Promise<Render> {
  if (!loading) {
    loading = import("./markdown").then(
      (m) => {
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
// finds it ready without its parse competing with the first screen.
const idle = (window as unknown as { requestIdleCallback?: (f: () => void, o: { timeout: number }) => void }).requestIdleCallback;
const preload = () => void loadMarkdown().catch(() => {});
setTimeout(() => (idle ? idle(preload, { timeout: 5000 }) : preload()), 2000);

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
