// The web app in a real browser: Debian's Chromium driven by playwright-core
// (never `playwright install`), against the real mitzod binary and the fake
// agent, at phone and desktop sizes. Exit status 1 when any check fails.
//
//   node tests/web/run.mjs             (MITZO_BIN=... to test another binary)
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { inflateSync } from "node:zlib";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS as ARGS, PASSPHRASE, Server } from "./harness.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(HERE, "artifacts");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; require-trusted-types-for 'script'";
const VIEWPORTS = {
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
  desktop: { viewport: { width: 1280, height: 800 } },
};
const T = 20000;
// Every screen the phone and desktop runs check with axe (the reconnecting
// banner is checked in reconnect.mjs, the compacted chat below).
const AXE_SCREENS = [
  "login",
  "login with notice",
  "new session",
  "chat",
  "approval",
  "network approval",
  "question",
  "approvals tray",
  "sessions",
  "file view",
  "file conflict",
  "files",
  "tasks",
  "audit",
];

const results = [];
const only = process.env.WEB_TEST_ONLY ? new RegExp(process.env.WEB_TEST_ONLY) : null;
async function test(name, fn) {
  if (only && !only.test(name)) return;
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: e });
    console.log(`FAIL ${name}\n     ${String(e.stack || e).split("\n").slice(0, 8).join("\n     ")}`);
  }
}
function skip(name, why) {
  results.push({ name, ok: true, skipped: why });
  console.log(`SKIP ${name}: ${why}`);
}

if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: install Debian's chromium package (tests/run web does)`);
  process.exit(1);
}
rmSync(ARTIFACTS, { recursive: true, force: true });
mkdirSync(ARTIFACTS, { recursive: true });

/** A browser with a fresh profile, watching for anything a payload could do. */
async function browser(kind, origin, { route } = {}) {
  const dir = mkdtempSync("/tmp/mitzod-web-profile-");
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    args: ARGS,
    headless: true,
    ...VIEWPORTS[kind],
    colorScheme: kind === "phone" ? "dark" : "light",
  });
  const w = { ctx, kind, origin, dialogs: [], foreign: [], pageErrors: [], consoleErrors: [], violations: [], dir, confirms: 0, axe: [], axeScreens: [] };
  ctx.on("request", (r) => {
    const url = r.url();
    if (/^(https?|wss?):/.test(url) && !url.startsWith(origin + "/")) w.foreign.push(url);
  });
  // CSP and Trusted Types violations go straight to Node, so those on a page
  // the test has since navigated away from are kept too.
  await ctx.exposeBinding("__mitzoViolation", ({ page }, v) => w.violations.push(`${page ? new URL(page.url()).pathname : "?"}: ${v}`));
  await ctx.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__mitzoViolation(`${e.violatedDirective} ${e.blockedURI} ${e.sample || ""}`),
    );
  });
  // Console errors that a script caused or CSP/TT refused: everything but an
  // HTTP error status (a wrong passphrase's 401) and a socket the test dropped.
  w.scriptErrors = () =>
    w.consoleErrors.filter(
      (m) => !/^Failed to load resource: the server responded with a status of \d+/.test(m) && !/^WebSocket connection to '[^']*' failed/.test(m),
    );
  if (route) await ctx.routeWebSocket(/\/ws\/chat$/, route);
  const watch = (page) => {
    page.on("dialog", (d) => {
      // The test's own "Delete?" confirmation is expected; anything else is not.
      if (d.type() === "confirm" && w.confirms > 0) {
        w.confirms--;
        d.accept().catch(() => {});
        return;
      }
      w.dialogs.push(`${d.type()}: ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    page.on("pageerror", (e) => w.pageErrors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error") w.consoleErrors.push(m.text());
    });
  };
  ctx.on("page", watch);
  w.page = ctx.pages()[0] || (await ctx.newPage());
  watch(w.page);
  w.close = async () => {
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return w;
}

async function login(page, origin, passphrase = PASSPHRASE) {
  await page.goto(origin + "/");
  await page.locator("#passphrase").fill(passphrase);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Sessions" }).waitFor({ timeout: T });
}

async function shot(w, name) {
  if (w.kind !== "phone") return;
  await w.page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** Start a session from the list's form; returns its id. */
async function newSession(page, origin, prompt, mode = "ask", w) {
  if (!/\/$/.test(page.url()) || page.url() !== origin + "/") await page.goto(origin + "/");
  await page.getByRole("button", { name: "New session" }).click();
  const form = page.getByRole("form", { name: "New session" });
  await form.getByLabel("Mode").selectOption(mode);
  await form.getByLabel("First message").fill(prompt);
  if (w) {
    await shot(w, "new-session");
    await axe(w, "new session");
  }
  await form.getByRole("button", { name: "Start" }).click();
  await page.waitForURL(/\/s\/[^/]+$/, { timeout: T });
  return decodeURIComponent(page.url().split("/s/")[1]);
}

async function send(page, text) {
  await page.locator("#prompt").fill(text);
  await page.getByRole("button", { name: "Send" }).click();
}

/** The transcript as the owner reads it. */
function transcriptText(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll(".transcript > .msg, .transcript > .tool, .transcript > .note, .transcript > .thinking")]
      .map((e) => e.innerText.trim())
      .join("\n---\n"),
  );
}

async function waitIdle(page) {
  await page.locator(".chat-title .state", { hasText: /^(idle|ended)$/ }).waitFor({ timeout: T });
}

async function axe(w, screen) {
  const src = readFileSync(join(HERE, "node_modules/axe-core/axe.min.js"), "utf8");
  const page = w.page;
  await page.evaluate(src);
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  w.axeScreens.push(screen);
  for (const v of bad) w.axe.push(`${screen}: ${v.id} (${v.impact}) ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
}

/** A PNG's signature, chunk CRCs (bitwise, independent of build.mjs's table) and pixel data size. */
function checkPng(buf, sizes, what) {
  assert.deepEqual([...buf.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], `${what}: PNG signature`);
  const crc = (bytes) => {
    let c = 0xffffffff;
    for (const b of bytes) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
    }
    return (c ^ 0xffffffff) >>> 0;
  };
  const types = [];
  const idat = [];
  let width = 0, height = 0;
  for (let at = 8; at < buf.length; ) {
    const len = buf.readUInt32BE(at);
    const body = buf.subarray(at + 4, at + 8 + len);
    const type = body.subarray(0, 4).toString("latin1");
    assert.equal(buf.readUInt32BE(at + 8 + len), crc(body), `${what}: CRC of ${type}`);
    if (type === "IHDR") [width, height] = [body.readUInt32BE(4), body.readUInt32BE(8)];
    if (type === "IDAT") idat.push(body.subarray(4));
    types.push(type);
    at += 12 + len;
  }
  assert.deepEqual([types[0], types.at(-1)], ["IHDR", "IEND"], `${what}: chunks ${types}`);
  assert.equal(`${width}x${height}`, sizes, `${what}: size`);
  assert.equal(inflateSync(Buffer.concat(idat)).length, (width * 4 + 1) * height, `${what}: RGBA rows`);
}

// ---------------------------------------------------------------------------

const server = await Server.start();
const streaming = await Server.start({
  script: {
    turns: [
      [{ text: "part one" }, { sleep: 2.5 }, { text: "part **two**" }, { sleep: 2.5 }, { text: "part three" }],
      // A session's second turn: a long answer, for paging back through history.
      Array.from({ length: 80 }, (_, i) => ({ text: `Old message ${i}` })),
      [{ text: "part one" }, { sleep: 2.5 }, { text: "part **two**" }, { sleep: 2.5 }, { text: "part three" }],
    ],
  },
});
const cleanup = async () => {
  await server.stop();
  await streaming.stop();
};

try {
  await test("serving: CSP, caching, compression, SPA fallback that shadows nothing", async () => {
    for (const path of ["/", "/s/abc", "/files", "/tasks", "/audit"]) {
      const r = await fetch(server.origin + path, { headers: { "accept-encoding": "br, gzip" } });
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get("content-security-policy"), PAGE_CSP, `${path}: the page's CSP, exactly`);
      assert.match(r.headers.get("content-type"), /^text\/html/, path);
      assert.equal(r.headers.get("cache-control"), "no-cache", path);
      const html = await r.text();
      assert.ok(!/<script>|<script [^>]*>[^<]/.test(html) && !/style=/.test(html), "no inline script or style");
    }
    const html = await (await fetch(server.origin + "/")).text();
    const js = /src="(\/assets\/[^"]+\.js)"/.exec(html)[1];
    const r = await fetch(server.origin + js, { headers: { "accept-encoding": "gzip, br" } });
    assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.equal(r.headers.get("content-encoding"), "br");
    const g = await fetch(server.origin + js, { headers: { "accept-encoding": "gzip" } });
    assert.equal(g.headers.get("content-encoding"), "gzip");
    for (const [path, status] of [["/api/nope", 404], ["/api/version", 200], ["/healthz", 200], ["/nope", 404], ["/ws/nope", 404], ["/assets/missing.js", 404]]) {
      const a = await fetch(server.origin + path);
      assert.equal(a.status, status, path);
      assert.match(a.headers.get("content-type"), /^application\/json/, `${path} stays JSON`);
      assert.match(a.headers.get("content-security-policy"), /^default-src 'none'/, `${path} keeps the API CSP`);
      assert.ok(!a.headers.get("content-security-policy").includes("script-src"), path);
    }
  });

  for (const kind of ["phone", "desktop"]) {
    const w = await browser(kind, server.origin);
    const page = w.page;
    const tn = (n) => `${kind}: ${n}`;
    let sid = "";
    try {
      await test(tn("login (wrong passphrase refused, then signed in)"), async () => {
        await page.goto(server.origin + "/");
        await page.locator("#passphrase").waitFor();
        await shot(w, "login");
        await axe(w, "login");
        await page.locator("#passphrase").fill("not it");
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.getByText("Wrong passphrase.").waitFor({ timeout: T });
        await page.locator("#passphrase").fill(PASSPHRASE);
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.getByRole("heading", { name: "Sessions" }).waitFor({ timeout: T });
      });

      await test(tn("PWA: manifest and icons; the service worker caches the app shell, never /api or /ws"), async () => {
        const manifest = await (await fetch(server.origin + "/manifest.webmanifest")).json();
        assert.equal(manifest.display, "standalone");
        for (const icon of manifest.icons) {
          const r = await fetch(server.origin + icon.src);
          assert.equal(r.status, 200, icon.src);
          assert.equal(r.headers.get("content-type"), icon.type, icon.src);
          if (icon.type === "image/png") checkPng(Buffer.from(await r.arrayBuffer()), icon.sizes, icon.src);
        }
        // And the browser decodes them at their stated size.
        const decoded = await page.evaluate(async (srcs) => {
          const out = [];
          for (const src of srcs) {
            const bmp = await createImageBitmap(await (await fetch(src)).blob());
            out.push(`${bmp.width}x${bmp.height}`);
          }
          return out;
        }, manifest.icons.filter((i) => i.type === "image/png").map((i) => i.src));
        assert.deepEqual(decoded, manifest.icons.filter((i) => i.type === "image/png").map((i) => i.sizes));
        const cached = await page.evaluate(async () => {
          await navigator.serviceWorker.ready;
          // Let the page use the API and the socket first.
          await fetch("/api/sessions?limit=5");
          const urls = [];
          for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) urls.push(new URL(r.url).pathname);
          return urls;
        });
        assert.ok(cached.includes("/") && cached.some((u) => /^\/assets\/main-.*\.js$/.test(u)), `shell cached: ${cached}`);
        assert.deepEqual(cached.filter((u) => u.startsWith("/api") || u.startsWith("/ws") || u === "/healthz"), []);
      });

      await test(tn("new session: Markdown reply"), async () => {
        sid = await newSession(page, server.origin, "text:Hello **bold** and `code`\n\n```\nlet x = 1;\n```", "ask", w);
        await page.locator(".msg.agent strong", { hasText: "bold" }).waitFor({ timeout: T });
        await page.locator(".msg.agent pre button.copy").waitFor();
        await waitIdle(page);
        await shot(w, "chat");
        await axe(w, "chat");
      });

      await test(tn(kind === "desktop" ? "two panes: the sessions list beside the chat" : "one pane: the chat alone, the list hidden"), async () => {
        const list = await page.locator(".list-pane").boundingBox();
        const main = await page.locator(".page-pane").boundingBox();
        assert.ok(main && main.width > 0, "the chat's pane is shown");
        if (kind === "desktop") {
          assert.ok(list && list.width >= 300, `the list's pane is shown: ${JSON.stringify(list)}`);
          assert.ok(list.x + list.width <= main.x + 1 && Math.abs(list.y - main.y) < 1, `side by side: ${JSON.stringify({ list, main })}`);
          await page.locator(".list-pane .session-list li.current").waitFor({ timeout: T });
          await page.screenshot({ path: join(ARTIFACTS, "desktop-two-pane.png") });
        } else {
          assert.equal(list, null, "the list's pane is not displayed beside a chat on a phone");
        }
      });

      await test(tn("tool card and an approval allowed"), async () => {
        await send(page, "tool:Bash:echo tool-output-123");
        const sheet = page.getByRole("dialog");
        await sheet.waitFor({ timeout: T });
        await sheet.getByRole("heading", { name: "Run a command" }).waitFor();
        await sheet.locator(".summary", { hasText: "$ echo tool-output-123" }).waitFor();
        await sheet.getByText(/expires in/).waitFor();
        // Title and summary name what the agent chose: bidi-isolated.
        assert.equal(await sheet.locator("h2 > bdi").count(), 1);
        assert.equal(await sheet.locator(".summary > bdi").count(), 1);
        // The tool's description repeats the title: shown once.
        const sheetText = await sheet.innerText();
        assert.equal(sheetText.split("Run a command").length - 1, 1, sheetText);
        await shot(w, "chat-approval");
        await axe(w, "approval");
        await sheet.getByRole("button", { name: "Allow once" }).click();
        await page.locator(".tool", { hasText: "tool-output-123" }).locator(".out").waitFor({ timeout: T });
        await page.locator(".tool .badge.ok").first().waitFor();
        await waitIdle(page);
        await shot(w, "chat-tool");
      });

      await test(tn("a network request for a host not listed, shown like a tool call and denied"), async () => {
        const host = `net-${kind}.test`;
        await send(page, `tool:Bash:curl -s --max-time 30 http://${host}:9/; echo curl-done`);
        const sheet = page.getByRole("dialog");
        await sheet.getByRole("heading", { name: "Run a command" }).waitFor({ timeout: T });
        await sheet.getByRole("button", { name: "Allow once" }).click();
        const net = page.getByRole("dialog", { name: `Reach ${host}:9` });
        await net.waitFor({ timeout: T });
        await net.locator(".summary", { hasText: "not on this session's allow-list" }).waitFor();
        await net.getByRole("button", { name: "Allow this host for this session" }).waitFor();
        await axe(w, "network approval");
        await net.getByRole("button", { name: "Deny…" }).click();
        await net.getByRole("button", { name: "Deny", exact: true }).click();
        await page.locator(".tool", { hasText: "curl-done" }).locator(".out", { hasText: "not on the allow-list" }).waitFor({ timeout: T });
        await page.locator(".note", { hasText: `Network: ${host}:9 refused` }).waitFor({ timeout: T });
        await waitIdle(page);
      });

      await test(tn("an approval with a diff allowed, its raw input expanded"), async () => {
        const target = join(server.repo, `allowed-${kind}.txt`);
        await send(page, `tool:Write:${target}`);
        const sheet = page.getByRole("dialog");
        await sheet.locator(".diff .add", { hasText: "written by fake agent" }).waitFor({ timeout: T });
        const raw = sheet.locator("details.raw");
        assert.equal(await raw.locator("pre").isVisible(), false, "the raw input starts folded");
        await raw.getByText("Raw input").click();
        await raw.locator("pre", { hasText: `"file_path": "${target}"` }).waitFor({ timeout: T });
        await sheet.getByRole("button", { name: "Allow once" }).click();
        await page.locator(".tool", { hasText: target }).locator(".badge.ok").waitFor({ timeout: T });
        await waitIdle(page);
        assert.equal(readFileSync(target, "utf8"), "written by fake agent\n", "the allowed write happened");
      });

      await test(tn("an approval with a diff, denied with a reason the agent receives"), async () => {
        const target = join(server.repo, `denied-${kind}.txt`);
        await send(page, `tool:Write:${target}`);
        const sheet = page.getByRole("dialog");
        await sheet.locator(".diff .add", { hasText: "written by fake agent" }).waitFor({ timeout: T });
        await sheet.getByRole("button", { name: "Deny…" }).click();
        await sheet.getByLabel("Reason (optional)").fill("not now");
        await sheet.getByRole("button", { name: "Deny", exact: true }).click();
        await page.locator(".tool.tool-error", { hasText: target }).locator(".out", { hasText: "not now" }).waitFor({ timeout: T });
        await waitIdle(page);
        assert.ok(!existsSync(target), "the denied write did not happen");
      });

      await test(tn("mode switch"), async () => {
        await page.getByLabel("Mode", { exact: true }).selectOption("agent");
        await page.locator(".note", { hasText: "Mode: agent" }).waitFor({ timeout: T });
        const meta = await server.api(`/api/sessions/${sid}/meta`);
        assert.equal(meta.json.mode, "agent");
      });

      await test(tn("a question answered"), async () => {
        const q = {
          questions: [
            {
              question: "Which colour?",
              header: "Colour",
              options: [
                { label: "Red", description: "warm" },
                { label: "Blue", description: "cool" },
              ],
              multiSelect: false,
            },
          ],
        };
        await send(page, `tool:AskUserQuestion:${JSON.stringify(q)}`);
        const sheet = page.getByRole("dialog", { name: "The agent asks" });
        await sheet.getByText("Colour: Which colour?").waitFor({ timeout: T });
        await shot(w, "question");
        await axe(w, "question");
        await sheet.getByLabel(/Blue/).check();
        await sheet.getByRole("button", { name: "Answer" }).click();
        await page.locator(".note", { hasText: "Answered: Blue" }).waitFor({ timeout: T });
        await waitIdle(page);
      });

      await test(tn("a question answered in free text"), async () => {
        const q = {
          questions: [{ question: "Which fruit?", header: "Fruit", options: [{ label: "Apple", description: "" }, { label: "Pear", description: "" }], multiSelect: false }],
        };
        await send(page, `tool:AskUserQuestion:${JSON.stringify(q)}`);
        const sheet = page.getByRole("dialog", { name: "The agent asks" });
        await sheet.getByText("Fruit: Which fruit?").waitFor({ timeout: T });
        await sheet.getByLabel("Or answer in your words").fill(`a ripe quince ${kind}`);
        await sheet.getByRole("button", { name: "Answer" }).click();
        await page.locator(".note", { hasText: `Answered: a ripe quince ${kind}` }).waitFor({ timeout: T });
        await waitIdle(page);
        const events = await server.api(`/api/sessions/${sid}/events?limit=5000`);
        const resolved = events.json.events.filter((f) => f.type === "permission_resolved" && f.answers && f.answers["Which fruit?"]);
        assert.deepEqual(resolved.map((f) => f.answers["Which fruit?"]), [`a ripe quince ${kind}`], "the free text is the answer, not an option");
      });

      await test(tn("text streams in token by token before the block ends"), async () => {
        await send(page, "slow:6");
        const msg = page.locator(".msg.agent.streaming", { hasText: "chunk 2" });
        await msg.waitFor({ timeout: T });
        assert.ok(!(await msg.innerText()).includes("chunk 9"), "the block is still growing");
        await page.locator(".msg.agent", { hasText: "chunk 9" }).waitFor({ timeout: T });
        await waitIdle(page);
        assert.equal(await page.locator(".msg.agent", { hasText: "chunk 0 chunk 1" }).count(), 1, "one message, not one per delta");
      });

      await test(tn("a running turn interrupted by a new message"), async () => {
        await send(page, "slow:20");
        await page.locator(".msg.agent.streaming", { hasText: "chunk 1" }).waitFor({ timeout: T });
        await page.locator("#prompt").fill("text:after the interrupt");
        await page.getByRole("button", { name: "Interrupt" }).click();
        await page.locator(".msg.agent", { hasText: "after the interrupt" }).waitFor({ timeout: T });
        await waitIdle(page);
        assert.equal(await page.locator(".msg.agent", { hasText: "chunk 19" }).count(), 0, "the slow turn was cut short");
      });

      await test(tn("rename"), async () => {
        await page.getByRole("button", { name: "Rename" }).click();
        await page.getByLabel("Session title").fill(`Renamed ${kind}`);
        await page.getByRole("button", { name: "Save" }).click();
        await page.getByRole("heading", { name: `Renamed ${kind}` }).waitFor({ timeout: T });
        const meta = await server.api(`/api/sessions/${sid}/meta`);
        assert.equal(meta.json.title, `Renamed ${kind}`);
      });

      await test(tn("stop a running turn"), async () => {
        await send(page, "slow:30");
        await page.locator(".chat-title .state", { hasText: "running" }).waitFor({ timeout: T });
        await page.getByRole("button", { name: "Stop" }).click();
        await page.locator(".note", { hasText: "Session ended" }).waitFor({ timeout: T });
        const meta = await server.api(`/api/sessions/${sid}/meta`);
        assert.equal(meta.json.isActive, false, "the agent is gone");
      });

      await test(tn("approvals in other sessions are one tap away"), async () => {
        const other = await newSession(page, server.origin, "tool:Bash:echo from-the-other-session");
        await page.getByRole("dialog").waitFor({ timeout: T });
        await page.goto(server.origin + "/files");
        const tray = page.getByRole("button", { name: /approvals waiting/ });
        await page.getByRole("button", { name: "1 approvals waiting" }).waitFor({ timeout: T });
        await tray.click();
        await shot(w, "approvals-tray");
        await axe(w, "approvals tray");
        await page.getByRole("region", { name: "Approvals waiting" }).getByRole("button").first().click();
        await page.waitForURL(new RegExp(`/s/${other}$`));
        await page.getByRole("dialog").getByRole("button", { name: "Allow for this session" }).click();
        await page.locator(".tool", { hasText: "from-the-other-session" }).locator(".out").waitFor({ timeout: T });
      });

      await test(tn("sessions list: live states, waiting sessions first"), async () => {
        const waiting = await newSession(page, server.origin, "tool:Bash:echo waits");
        await page.getByRole("dialog").waitFor({ timeout: T });
        await page.goto(server.origin + "/");
        const first = page.locator(".session-list li").first();
        await first.locator(".state.waiting").waitFor({ timeout: T });
        assert.match(await first.locator("a").getAttribute("href"), new RegExp(waiting));
        await shot(w, "sessions");
        await axe(w, "sessions");
        await first.locator("a").click();
        await page.getByRole("dialog").getByRole("button", { name: "Deny…" }).click();
        await page.getByRole("dialog").getByRole("button", { name: "Deny", exact: true }).click();
        await waitIdle(page);
        // Delete it from the list's menu.
        await page.goto(server.origin + "/");
        const row = page.locator(".session-list li", { has: page.locator(`a[href="/s/${waiting}"]`) });
        await row.locator("summary").click();
        w.confirms = 1;
        await row.getByRole("button", { name: "Delete" }).click();
        await row.waitFor({ state: "detached", timeout: T });
        const gone = await server.api(`/api/sessions/${waiting}/meta`);
        assert.equal(gone.status, 404);
      });

      await test(tn("sessions list: a session started elsewhere shows up, then settles, without a reload"), async () => {
        await page.goto(server.origin + "/");
        await page.getByRole("heading", { name: "Sessions" }).waitFor({ timeout: T });
        await page.evaluate(() => {
          window.__sameDocument = true;
        });
        const r = await server.api("/api/sessions", { method: "POST", body: { source: "web-test", initialPrompt: `text:listed live ${kind}` } });
        assert.equal(r.status, 201, r.text);
        const row = page.locator(".session-list li", { has: page.locator(`a[href="/s/${encodeURIComponent(r.json.sessionId)}"]`) });
        await row.locator(".title", { hasText: `listed live ${kind}` }).waitFor({ timeout: T });
        await row.locator(".state", { hasText: /^idle$/ }).waitFor({ timeout: T });
        assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
      });

      await test(tn("file edited, 409 conflict resolved by keeping mine"), async () => {
        const file = join(server.repo, "README.md");
        await page.goto(server.origin + "/files");
        await page.getByRole("button", { name: /README\.md/ }).click();
        await page.locator(".file-content", { hasText: readFileSync(file, "utf8").trim() }).waitFor({ timeout: T });
        await shot(w, "file-view");
        await axe(w, "file view");
        await page.getByRole("button", { name: "Edit" }).click();
        await page.locator("#file-edit").fill(`mine ${kind}\n`);
        writeFileSync(file, `theirs ${kind}\n`);
        await page.getByRole("button", { name: "Save" }).click();
        const conflict = page.locator(".conflict");
        await conflict.getByText(`theirs ${kind}`).waitFor({ timeout: T });
        await conflict.getByText(`mine ${kind}`).waitFor();
        await shot(w, "file-conflict");
        await axe(w, "file conflict");
        await conflict.getByRole("button", { name: "Keep mine" }).click();
        await page.getByText("Saved.").waitFor({ timeout: T });
        assert.equal(readFileSync(file, "utf8"), `mine ${kind}\n`);
        await page.getByRole("button", { name: "Back to folder" }).click();
        writeFileSync(join(server.repo, `blob-${kind}.bin`), Buffer.from([0, 159, 146, 150, 0, 255, 1, 2]));
        await page.goto(server.origin + "/files");
        await page.getByRole("button", { name: new RegExp(`blob-${kind}\\.bin`) }).click();
        await page.getByText("Binary file, 8 B: not shown.").waitFor({ timeout: T });
        await page.getByRole("button", { name: "Back to folder" }).click();
        await shot(w, "files");
        await axe(w, "files");
      });

      await test(tn("file edited, 409 conflict resolved by taking theirs"), async () => {
        const file = join(server.repo, "README.md");
        await page.goto(server.origin + "/files");
        await page.getByRole("button", { name: /README\.md/ }).click();
        await page.locator(".file-content", { hasText: readFileSync(file, "utf8").trim() }).waitFor({ timeout: T });
        await page.getByRole("button", { name: "Edit" }).click();
        await page.locator("#file-edit").fill(`mine, dropped ${kind}\n`);
        writeFileSync(file, `theirs, kept ${kind}\n`);
        await page.getByRole("button", { name: "Save" }).click();
        const conflict = page.locator(".conflict");
        await conflict.getByText(`theirs, kept ${kind}`).waitFor({ timeout: T });
        await conflict.getByRole("button", { name: "Take theirs" }).click();
        await page.locator(".file-content", { hasText: `theirs, kept ${kind}` }).waitFor({ timeout: T });
        assert.equal(await page.locator(".conflict").count(), 0, "the conflict is closed");
        assert.equal(readFileSync(file, "utf8"), `theirs, kept ${kind}\n`, "the file on disk is theirs");
        // Theirs is the new base: an edit from it saves without a conflict.
        await page.getByRole("button", { name: "Edit" }).click();
        assert.equal(await page.locator("#file-edit").inputValue(), `theirs, kept ${kind}\n`);
        await page.locator("#file-edit").fill(`after theirs ${kind}\n`);
        await page.getByRole("button", { name: "Save" }).click();
        await page.getByText("Saved.").waitFor({ timeout: T });
        assert.equal(readFileSync(file, "utf8"), `after theirs ${kind}\n`);
        await page.getByRole("button", { name: "Back to folder" }).click();
      });

      await test(tn("task rejected with feedback; its artifacts shown"), async () => {
        await page.goto(server.origin + "/tasks");
        await page.getByRole("heading", { name: "Tasks" }).waitFor();
        const created = await server.api("/api/tasks", {
          method: "POST",
          body: { title: `Redo it ${kind}`, status: "review", artifacts: { pr: `https://example.test/pr/${kind}`, notes: "plain words" } },
        });
        assert.equal(created.status, 201, created.text);
        const card = page.getByRole("region", { name: "Review" }).locator(".task", { hasText: `Redo it ${kind}` });
        await card.waitFor({ timeout: T });
        await card.locator("summary").click();
        const link = card.locator(".artifacts a", { hasText: `https://example.test/pr/${kind}` });
        await link.waitFor({ timeout: T });
        assert.equal(await link.getAttribute("href"), `https://example.test/pr/${kind}`);
        assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
        await card.locator(".artifacts dd", { hasText: "plain words" }).waitFor();
        await card.getByRole("button", { name: "Reject…" }).click();
        await card.getByLabel("What needs to change").fill(`needs tests ${kind}`);
        await card.getByRole("button", { name: "Reject", exact: true }).click();
        const moved = page.getByRole("region", { name: "In progress" }).locator(".task", { hasText: `Redo it ${kind}` });
        await moved.waitFor({ timeout: T });
        if (!(await moved.evaluate((d) => d.open))) await moved.locator("summary").click();
        await moved.locator(".artifacts dd", { hasText: `needs tests ${kind}` }).waitFor({ timeout: T });
        const t = await server.api(`/api/tasks/${created.json.id}`);
        assert.equal(t.json.status, "in_progress");
        assert.equal(t.json.artifacts.feedback, `needs tests ${kind}`);
      });

      await test(tn("task approved, board live"), async () => {
        await page.goto(server.origin + "/tasks");
        await page.getByRole("heading", { name: "Tasks" }).waitFor();
        const created = await server.api("/api/tasks", { method: "POST", body: { title: `Ship it ${kind}`, status: "review" } });
        assert.equal(created.status, 201, created.text);
        const review = page.getByRole("region", { name: "Review" });
        const card = review.locator(".task", { hasText: `Ship it ${kind}` });
        await card.waitFor({ timeout: T });
        await card.locator("summary").click();
        await shot(w, "tasks");
        await axe(w, "tasks");
        await card.getByRole("button", { name: "Approve" }).click();
        await page.getByRole("region", { name: "Done" }).locator(".task", { hasText: `Ship it ${kind}` }).waitFor({ timeout: T });
        const t = await server.api(`/api/tasks/${created.json.id}`);
        assert.equal(t.json.status, "done");
      });

      await test(tn("audit log filtered by session"), async () => {
        await page.goto(server.origin + "/audit");
        await page.locator(".audit-list li").first().waitFor({ timeout: T });
        await page.getByLabel("Filter by session").selectOption(sid);
        const api = await server.api(`/api/audit?sessionId=${sid}&limit=200`, { token: await server.login() });
        await page.waitForFunction((n) => document.querySelectorAll(".audit-list li").length === n, api.json.entries.length, { timeout: T });
        assert.ok(api.json.entries.length >= 2, "the allow and the deny are audited");
        await shot(w, "audit");
        await axe(w, "audit");
      });

      await test(tn("log out: this device only"), async () => {
        await page.goto(server.origin + "/");
        await page.getByRole("heading", { name: "Sessions" }).waitFor({ timeout: T });
        const device = await server.login();
        const cookie = (await w.ctx.cookies(server.origin)).map((c) => `${c.name}=${c.value}`).join("; ");
        const check = (headers) => fetch(server.origin + "/api/auth/check", { headers }).then((r) => r.status);
        assert.equal(await check({ cookie }), 200, "control: the page's cookie works before");
        await page.getByLabel("Account").click();
        await page.getByRole("button", { name: "Log out", exact: true }).click();
        await page.getByText("Logged out.", { exact: true }).waitFor({ timeout: T });
        await page.locator("#passphrase").waitFor();
        await shot(w, "login-notice");
        await axe(w, "login with notice");
        assert.equal(await check({ cookie }), 401, "the page's session is revoked, not just forgotten");
        assert.equal(await check({ authorization: `Bearer ${device}` }), 200, "another device stays signed in");
        await login(page, server.origin);
      });

      await test(tn("an expired session lands on the login page with a message"), async () => {
        await page.goto(server.origin + "/");
        await page.getByRole("heading", { name: "Sessions" }).waitFor();
        const other = await server.login();
        const r = await server.api("/api/auth/logout-all", { method: "POST", token: other });
        assert.equal(r.status, 200);
        await page.getByText("Your session has ended. Sign in again.").waitFor({ timeout: T });
        await login(page, server.origin);
      });

      await test(tn("log out everywhere"), async () => {
        const device = await server.login();
        assert.equal((await server.api("/api/auth/check", { token: device })).status, 200);
        await page.getByLabel("Account").click();
        await page.getByRole("button", { name: "Log out everywhere" }).click();
        await page.getByText("Logged out on every device.").waitFor({ timeout: T });
        assert.equal((await server.api("/api/auth/check", { token: device })).status, 401, "the other device is out too");
        await page.goto(server.origin + "/");
        await page.locator("#passphrase").waitFor({ timeout: T });
      });

      await test(tn("nothing executed, nothing left the origin, no CSP or Trusted Types violation, no page error"), async () => {
        assert.deepEqual(w.dialogs, []);
        assert.deepEqual(w.foreign, []);
        assert.deepEqual(w.pageErrors, []);
        assert.deepEqual(w.violations, [], "on any page this browser loaded");
        assert.deepEqual(w.scriptErrors(), []);
      });

      await test(tn("axe: no serious or critical violation on any screen"), async () => {
        assert.deepEqual(w.axe, []);
        assert.deepEqual([...w.axeScreens].sort(), [...AXE_SCREENS].sort(), "axe ran on exactly these screens");
      });
    } finally {
      await w.close();
    }
  }

  await test("a compacted session says so at the top of its chat, and axe stays clean", async () => {
    // One turn of about 1.4 MiB of text against a 1 MiB limit: the pass at
    // the next start compacts it and drops its oldest blocks.
    const big = "x".repeat(200 * 1024);
    const texts = Array.from({ length: 7 }, (_, i) => ({ text: `block ${i} ${big}` }));
    const s = await Server.start({ session: "retain_mb = 1\n", script: { turns: [[...texts, { text: "the newest words" }]] } });
    let passed = false;
    try {
      const r = await s.api("/api/sessions", { method: "POST", body: { source: "web-test", initialPrompt: "fill" } });
      assert.equal(r.status, 201, r.text);
      const id = r.json.sessionId;
      const meta = async () => (await s.api(`/api/sessions/${encodeURIComponent(id)}/meta`)).json;
      const until = async (what, ok) => {
        for (let i = 0; i < 400; i++) {
          if (await ok()) return;
          await sleep(50);
        }
        throw new Error(`${what} never happened:\n${s.logText().slice(-2000)}`);
      };
      await until("the turn's result", async () =>
        (await s.api(`/api/sessions/${encodeURIComponent(id)}/events?limit=5000`)).json.events.some((f) => f.type === "result"),
      );
      const w = await browser("desktop", s.origin);
      try {
        const page = w.page;
        await login(page, s.origin);
        await page.goto(`${s.origin}/s/${encodeURIComponent(id)}`);
        await page.getByText("the newest words").waitFor({ timeout: T });
        assert.equal((await meta()).historyCompacted, false);
        assert.equal(await page.getByRole("note").count(), 0, "control: no note before retention");

        await s.restart();
        await until("compaction at start-up", async () => (await meta()).historyCompacted === true);
        await page.reload();
        const note = page.locator(".chat > .banner.compacted");
        await note.waitFor({ timeout: T });
        assert.equal(await note.getAttribute("role"), "note");
        assert.match(await note.innerText(), /^Older history was compacted/);
        // Above the transcript, which still ends with the newest words.
        const order = await page.evaluate(() => {
          const kids = [...document.querySelector(".chat").children];
          return kids.indexOf(document.querySelector(".banner.compacted")) < kids.indexOf(document.querySelector(".transcript"));
        });
        assert.ok(order, "the note is above the transcript");
        await page.getByText("the newest words").waitFor({ timeout: T });
        await shot(w, "compacted");
        await axe(w, "compacted chat");
        assert.deepEqual(w.axe, []);
        assert.deepEqual([...w.pageErrors, ...w.dialogs, ...w.foreign], []);
      } finally {
        await w.close();
      }
      passed = true;
    } finally {
      if (passed) await s.remove();
      else await s.stop();
    }
  });

  // The README's picture (server/web/screenshot-approval.png), refreshed on
  // request only: a phone-sized chat with an approval open, against a repo
  // mitzod sees at /srv/shop rather than a temp path.
  if (process.env.WEB_UPDATE_SCREENSHOT === "1") {
    await test("README screenshot: a chat with an approval open", async () => {
      assert.equal(process.getuid(), 0, "the screenshot's repo path needs a mount namespace: run as root");
      const s = await Server.start({ repoAt: "/srv/shop" });
      const w = await browser("phone", s.origin);
      try {
        const page = w.page;
        await login(page, s.origin);
        await newSession(page, s.origin, "text:The failing test is `login_expires`. I'll check the tree first, then run:\n\n```\ncargo test --test login\n```", "ask");
        await page.locator(".msg.agent pre").waitFor({ timeout: T });
        await waitIdle(page);
        await page.getByRole("button", { name: "Rename" }).click();
        await page.getByLabel("Session title").fill("Fix the flaky login test");
        await page.getByRole("button", { name: "Save" }).click();
        await page.getByRole("heading", { name: "Fix the flaky login test" }).waitFor({ timeout: T });
        await send(page, "tool:Bash:git status --short");
        const sheet = page.getByRole("dialog");
        await sheet.locator(".summary", { hasText: "in /srv/shop" }).waitFor({ timeout: T });
        await sheet.getByText(/expires in/).waitFor();
        assert.ok(!(await page.locator("body").innerText()).includes("/tmp/"), "no temp path on screen");
        await page.screenshot({ path: join(HERE, "../../server/web/screenshot-approval.png") });
        await sheet.getByRole("button", { name: "Deny…" }).click();
        await sheet.getByRole("button", { name: "Deny", exact: true }).click();
        await waitIdle(page);
      } finally {
        await w.close();
        await s.remove();
      }
    });
  }

  await test("phone: a session's work reviewed and merged from the session list's menu, the refusal's reason shown, axe clean", async () => {
    const s = await Server.start();
    let passed = false;
    try {
      const r = await s.api("/api/sessions", { method: "POST", body: { source: "web-test", isolation: true } });
      assert.equal(r.status, 200, r.text);
      const id = r.json.sessionId;
      const wt = r.json.worktrees.primary.path;
      // A commit in the session's checkout, as its agent makes one; its
      // subject and content carry markup that must stay text.
      const git = (cwd, ...args) =>
        execFileSync("git", ["-c", "safe.directory=*", "-c", "user.name=Agent", "-c", "user.email=agent@example.invalid", ...args], { cwd })
          .toString()
          .trim();
      writeFileSync(join(wt, "REVIEWED.md"), "<img src=x onerror=alert(1)> reviewed line\n");
      git(wt, "add", "REVIEWED.md");
      git(wt, "commit", "-qm", "Add <b>reviewed</b> notes <img src=x onerror=alert(2)>");
      if (process.getuid?.() === 0) execFileSync("chown", ["-R", "nobody:", wt]);
      // An uncommitted edit in the main checkout: the first merge is refused.
      const readme = join(s.repo, "README.md");
      const original = readFileSync(readme, "utf8");
      writeFileSync(readme, original + "the owner's edit\n");
      const before = git(s.repo, "rev-parse", "main");
      const w = await browser("phone", s.origin);
      try {
        const page = w.page;
        await login(page, s.origin);
        // Opened from the session list's menu.
        const row = page.locator(".session-list li", { has: page.locator(`a[href="/s/${id}"]`) });
        await row.locator("summary").click();
        await row.getByRole("button", { name: "Review", exact: true }).click();
        await page.waitForURL(/\/review$/, { timeout: T });
        const view = page.getByRole("region", { name: "Review" });
        await view.locator(".review-commits li", { hasText: "Add <b>reviewed</b> notes <img src=x onerror=alert(2)>" }).waitFor({ timeout: T });
        await view.locator(".review-files li", { hasText: "REVIEWED.md" }).waitFor();
        await view.locator(".diff .add", { hasText: "+<img src=x onerror=alert(1)> reviewed line" }).waitFor();
        assert.equal(await view.locator(".review-body b, .review-body img").count(), 0, "the agent's text is never markup");
        await shot(w, "review");
        await axe(w, "review");
        await view.getByRole("button", { name: "Merge into main" }).click();
        await view.getByRole("alert").filter({ hasText: /^Not merged: .*uncommitted changes/ }).waitFor({ timeout: T });
        await shot(w, "review-refused");
        await axe(w, "review refused");
        assert.equal(git(s.repo, "rev-parse", "main"), before, "a refused merge moves nothing");
        assert.equal(readFileSync(readme, "utf8"), original + "the owner's edit\n");
        writeFileSync(readme, original);
        await view.getByRole("button", { name: "Merge into main" }).click();
        await view.getByRole("status").filter({ hasText: `Merged session/${id} into main` }).waitFor({ timeout: T });
        await view.getByRole("button", { name: "Merge into main" }).and(page.locator("[disabled]")).waitFor({ timeout: T });
        assert.equal(readFileSync(join(s.repo, "REVIEWED.md"), "utf8"), "<img src=x onerror=alert(1)> reviewed line\n");
        assert.notEqual(git(s.repo, "rev-parse", "main"), before);
        await shot(w, "review-merged");
        await axe(w, "review merged");
        assert.deepEqual(w.axe, []);
        assert.deepEqual([...w.pageErrors, ...w.dialogs, ...w.foreign], []);
        assert.deepEqual(w.violations, []);
        assert.deepEqual(w.scriptErrors(), []);
      } finally {
        await w.close();
      }
      passed = true;
    } finally {
      if (passed) await s.remove();
      else await s.stop();
    }
  });

  await test("phone: `serve --dev` as the README's first command starts it: the page, the passphrase it printed, a first session with an approved tool call", async () => {
    const s = await Server.start({ dev: true });
    let passed = false;
    try {
      const passphrase = s.passphrase();
      assert.ok(passphrase.length >= 12, "dev mode generated a passphrase");
      assert.ok(s.logText().includes(passphrase), "and printed it at start");
      const w = await browser("phone", s.origin);
      try {
        const page = w.page;
        await login(page, s.origin, passphrase);
        const id = await newSession(page, s.origin, "hello from the first session");
        await page.locator(".msg", { hasText: "fake agent received: hello from the first session" }).waitFor({ timeout: T });
        await waitIdle(page);
        await send(page, "tool:Bash:echo first-tool-call-ok > first-hour.txt && cat first-hour.txt");
        const sheet = page.getByRole("dialog");
        await sheet.getByRole("heading", { name: "Run a command" }).waitFor({ timeout: T });
        await sheet.getByRole("button", { name: "Allow once" }).click();
        await page.locator(".tool", { hasText: "first-tool-call-ok" }).locator(".out", { hasText: "first-tool-call-ok" }).waitFor({ timeout: T });
        await waitIdle(page);
        // The new-session form follows the server's default (a checkout of
        // its own); a session in the repo itself, where --dev keeps its
        // secrets, is refused with the way out.
        await page.goto(s.origin + "/");
        await page.getByRole("button", { name: "New session" }).click();
        const form = page.getByRole("form", { name: "New session" });
        const own = form.getByLabel("Own checkout (isolation)");
        assert.ok(await own.isChecked(), "isolation by default");
        await own.uncheck();
        await form.getByLabel("First message").fill("in the repo itself");
        await form.getByRole("button", { name: "Start" }).click();
        await page.waitForURL(/\/s\/[^/]+$/, { timeout: T });
        await page.getByRole("alert").filter({ hasText: /a session without isolation works in .* which holds mitzod's state and secrets/ }).waitFor({ timeout: T });
        await shot(w, "dev-no-isolation-refused");
        // The command ran in the session's own checkout, not in the repo.
        assert.equal(readFileSync(join(s.repo, ".mitzo", "checkouts", id, "first-hour.txt"), "utf8"), "first-tool-call-ok\n");
        assert.ok(!existsSync(join(s.repo, "first-hour.txt")));
        // The owner's decision is on record.
        const audit = await s.api(`/api/audit?sessionId=${encodeURIComponent(id)}`, { token: await (async () => {
          const r = await s.api("/api/auth/login", { method: "POST", body: { passphrase } });
          assert.equal(r.status, 200, r.text);
          return r.json.token;
        })() });
        assert.equal(audit.status, 200, audit.text);
        assert.ok(audit.json.entries.some((e) => e.tool === "Bash" && /allow/.test(e.decision)), audit.text);
        assert.deepEqual([...w.pageErrors, ...w.dialogs, ...w.foreign], []);
        assert.deepEqual(w.violations, []);
        assert.deepEqual(w.scriptErrors(), []);
      } finally {
        await w.close();
      }
      passed = true;
    } finally {
      if (passed) await s.remove();
      else await s.stop();
    }
  });

  await import("./xss.mjs").then((m) => m.run({ server, browser, login, newSession, send, test, shot, waitIdle, T }));
  await import("./reconnect.mjs").then((m) =>
    m.run({ server, streaming, browser, login, newSession, test, transcriptText, waitIdle, T, shot, axe }),
  );
  await import("./real_claude.mjs").then((m) => m.run({ browser, login, newSession, test, skip, waitIdle, T, shot }));
} finally {
  await cleanup();
}

const failed = results.filter((r) => !r.ok);
if (!failed.length) {
  await server.remove();
  await streaming.remove();
}
const skipped = results.filter((r) => r.skipped);
console.log(`\n${results.length - failed.length - skipped.length} passed, ${failed.length} failed, ${skipped.length} skipped`);
if (failed.length) {
  console.log(`mitzod log (last lines):\n${server.logText().slice(-2000)}`);
}
process.exit(failed.length ? 1 : 0);
