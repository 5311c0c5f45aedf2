// The web app's budget, measured in Debian's Chromium against a local
// mitzod (release build recommended: MITZO_BIN=target/release/mitzod):
//   1. compressed JavaScript transferred by the first load;
//   2. time to an interactive session list (20 sessions) on an emulated
//      mid-range phone: CDP CPU throttling 4x, slow 4G (150 ms RTT,
//      1.6 Mbit/s down, 750 kbit/s up), cold cache, median of 5;
//   3. a 2,000-message transcript opened at its end (client-side
//      navigation until its last message is shown as rendered Markdown),
//      from a fresh page, median of 5;
//   4. frame → DOM: from a WebSocket frame carrying agent text arriving in
//      the page to that text being in the DOM, p50/p99 over 300 frames.
//
//   node tests/web/bench.mjs
//   BENCH_ONLY=transcript node tests/web/bench.mjs   (figures 3 and 4 only)
//   BENCH_OPENS=N: open the long transcript N times (default 5)
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { CHROMIUM_ARGS as ARGS, PASSPHRASE, Server } from "./harness.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.ceil((a.length * p) / 100) - 1)];

const LONG = 2000;
const TOKENS = 300;
const longTurn = Array.from({ length: LONG }, (_, i) => ({
  text: `Message ${i}: some **Markdown** with \`code\` and a [link](https://example.com/${i}).\n\n- a list item\n- another one`,
}));
const tokenTurn = [];
for (let i = 0; i < TOKENS; i++) tokenTurn.push({ text: `tok-${i}` }, { sleep: 0.02 });
const server = await Server.start({ script: { turns: [longTurn, tokenTurn] } });

async function browser(extra = {}) {
  const dir = mkdtempSync("/tmp/mitzod-bench-profile-");
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    args: ARGS,
    headless: true,
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
    serviceWorkers: "block",
    ...extra,
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  return { ctx, page, close: async () => (await ctx.close(), rmSync(dir, { recursive: true, force: true })) };
}

async function login(page) {
  await page.goto(server.origin + "/");
  await page.locator("#passphrase").fill(PASSPHRASE);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Sessions" }).waitFor();
}

const out = {};
try {
  for (let i = 0; i < 20; i++) await server.api("/api/sessions", { method: "POST", body: { source: "bench", summary: `Session ${i}` } });

  // 1 + 2: first load, throttled.
  const jsBytes = [];
  const tti = [];
  const phases = [];
  for (let run = 0; run < (process.env.BENCH_ONLY === "transcript" ? 0 : 5); run++) {
    const b = await browser();
    await login(b.page);
    const page = await b.ctx.newPage();
    const cdp = await b.ctx.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 150,
      downloadThroughput: (1.6 * 1000 * 1000) / 8,
      uploadThroughput: (750 * 1000) / 8,
    });
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    const scripts = new Map();
    let js = 0;
    cdp.on("Network.responseReceived", (e) => {
      if (e.type === "Script") scripts.set(e.requestId, e.response.url);
    });
    cdp.on("Network.loadingFinished", (e) => {
      if (scripts.has(e.requestId)) js += e.encodedDataLength;
    });
    // Measured in the page, from navigation start: the list is shown, then
    // a tap on "New session" is dispatched at once and its form appears.
    await page.addInitScript(() => {
      new MutationObserver((_, o) => {
        if (window.__tti || !document.querySelector(".session-list li a")) return;
        window.__tti = { list: performance.now() };
        setTimeout(() => {
          window.__tti.tap = performance.now();
          const btn = [...document.querySelectorAll("button")].find((b) => b.textContent === "New session");
          btn.click();
          const check = () => {
            if (document.querySelector("form.new-session")) {
              window.__tti.form = performance.now();
              o.disconnect();
            } else requestAnimationFrame(check);
          };
          check();
        }, 0);
      }).observe(document, { childList: true, subtree: true });
    });
    await page.goto(server.origin + "/", { waitUntil: "commit" });
    await page.waitForFunction(() => window.__tti && window.__tti.form, null, { timeout: 60000, polling: 200 });
    const m = await page.evaluate(() => window.__tti);
    phases.push(m);
    tti.push(Math.round(m.form));
    jsBytes.push(js);
    await b.close();
  }
  if (jsBytes.length) out.firstLoadJsBytes = median(jsBytes);
  if (tti.length) out.ttiSessionListMs = {
    median: median(tti),
    min: Math.min(...tti),
    max: Math.max(...tti),
    n: tti.length,
    listShownMedian: Math.round(median(phases.map((p) => p.list))),
  };

  // 3: a 2,000-message transcript.
  const b = await browser();
  await login(b.page);
  const page = b.page;
  await page.getByRole("button", { name: "New session" }).click();
  await page.getByRole("form", { name: "New session" }).getByLabel("First message").fill("long");
  await page.getByRole("form", { name: "New session" }).getByRole("button", { name: "Start" }).click();
  await page.waitForURL(/\/s\//);
  const sid = decodeURIComponent(page.url().split("/s/")[1]);
  await page.locator(".msg.agent", { hasText: `Message ${LONG - 1}:` }).waitFor({ timeout: 120000 });
  await page.locator(".chat-title .state", { hasText: "idle" }).waitFor({ timeout: 60000 });
  const opens = [];
  const opensTrace = [];
  for (let run = 0; run < Number(process.env.BENCH_OPENS || 5); run++) {
    // A fresh page each time, logged in, on the list; then open the chat.
    const p = await b.ctx.newPage();
    await p.goto(server.origin + "/");
    await p.locator(".session-list li a").first().waitFor();
    const ms = await p.evaluate(
      ({ sid, last }) =>
        new Promise((resolve) => {
          const t0 = performance.now();
          const done = () => {
            // The end shown, as rendered Markdown (not the plain text shown
            // while the renderer loads).
            const el = [...document.querySelectorAll(".msg.agent")].pop();
            if (el && el.textContent.includes(last) && el.querySelector(".md:not(.plain) strong")) {
              const ms = performance.now() - t0;
              // Where the time went: each API request's start and end.
              const api = performance
                .getEntriesByType("resource")
                .filter((e) => e.startTime >= t0 && e.name.includes("/api/"))
                .map((e) => `${new URL(e.name).pathname.split("/").pop()} ${Math.round(e.startTime - t0)}-${Math.round(e.responseEnd - t0)}`);
              resolve({ ms, api });
              return true;
            }
            return false;
          };
          new MutationObserver((_, o) => done() && o.disconnect()).observe(document.body, { childList: true, subtree: true });
          history.pushState(null, "", `/s/${sid}`);
          dispatchEvent(new PopStateEvent("popstate"));
        }),
      { sid, last: `Message ${LONG - 1}:` },
    );
    opens.push(ms.ms);
    opensTrace.push(`${Math.round(ms.ms)} ms: ${ms.api.join(", ")}`);
    await p.close();
  }
  out.transcriptOpenMs = {
    median: +median(opens).toFixed(1),
    min: +Math.min(...opens).toFixed(1),
    max: +Math.max(...opens).toFixed(1),
    n: opens.length,
    messages: LONG,
    ...(process.env.BENCH_TRACE ? { phases: opensTrace } : {}),
  };

  // 4: frame → DOM.
  await page.evaluate(() => {
    window.__arrive = new Map();
    window.__dom = new Map();
  });
  await b.ctx.addInitScript(() => {
    const Native = window.WebSocket;
    window.__arrive = new Map();
    window.__dom = new Map();
    window.WebSocket = class extends Native {
      constructor(...a) {
        super(...a);
        // Registered before the app's onmessage, so it sees the frame first.
        this.addEventListener("message", (e) => {
          const m = /tok-(\d+)/.exec(String(e.data));
          if (m && !window.__arrive.has(m[1])) window.__arrive.set(m[1], performance.now());
        });
      }
    };
    new MutationObserver(() => {
      const t = performance.now();
      for (const el of document.querySelectorAll(".msg.agent")) {
        const m = /tok-(\d+)/.exec(el.textContent || "");
        if (m && !window.__dom.has(m[1])) window.__dom.set(m[1], t);
      }
    }).observe(document, { childList: true, subtree: true, characterData: true });
  });
  const p = await b.ctx.newPage();
  await p.goto(`${server.origin}/s/${sid}`);
  await p.locator(".msg.agent", { hasText: `Message ${LONG - 1}:` }).waitFor();
  await p.locator("#prompt").fill("tokens");
  await p.getByRole("button", { name: "Send" }).click();
  await p.locator(".msg.agent", { hasText: `tok-${TOKENS - 1}` }).waitFor({ timeout: 120000 });
  const lat = await p.evaluate(() => [...window.__arrive].filter(([k]) => window.__dom.has(k)).map(([k, t]) => window.__dom.get(k) - t));
  out.frameToDomMs = { p50: +pct(lat, 50).toFixed(2), p99: +pct(lat, 99).toFixed(2), max: +Math.max(...lat).toFixed(2), n: lat.length };
  await b.close();
} finally {
  await server.remove();
}
console.log(JSON.stringify(out, null, 2));
