// Caches the app shell (HTML, JS, CSS, icons) so the page opens offline and
// fast. Never /api, /ws or /healthz: those always go to the network, and
// nothing they return is ever stored.
declare const SHELL: string[];
declare const VERSION: string;

const sw = self as unknown as ServiceWorkerGlobalScope;
const CACHE = `mitzo-shell-${VERSION}`;
const CLIENT_ROUTES = /^\/(?:$|sessions$|files$|tasks$|audit$|s\/[^/]+$)/;

sw.addEventListener("install", (e: ExtendableEvent) => {
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(SHELL))
      .then(() => sw.skipWaiting()),
  );
});

sw.addEventListener("activate", (e: ExtendableEvent) => {
  e.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("mitzo-shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => sw.clients.claim()),
  );
});

sw.addEventListener("fetch", (e: FetchEvent) => {
  const url = new URL(e.request.url);
  if (url.origin !== sw.location.origin || e.request.method !== "GET") return;
  const p = url.pathname;
  if (p.startsWith("/api/") || p === "/api" || p.startsWith("/ws") || p === "/healthz") return;
  if (e.request.mode === "navigate" && CLIENT_ROUTES.test(p)) {
    // Network first (a new release shows at once), the cached shell offline.
    e.respondWith(fetch(e.request).catch(() => caches.match("/").then((r) => r || Response.error())));
    return;
  }
  if (SHELL.includes(p)) {
    e.respondWith(caches.match(p).then((r) => r || fetch(e.request)));
  }
});
