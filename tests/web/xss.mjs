// Hostile agent output through every path the page renders: the agent's
// Markdown, tool input and results, file names, task titles, session titles
// and branch names. Each payload would call alert(), set window.__pwned, or
// fetch another origin if it ran. A control run first shows that each
// detector (dialog, foreign request, CSP/Trusted Types violation, console
// and page errors) fires when something does run.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const CORPUS = [
  `<script>window.__pwned=1;alert(1)</script>`,
  `<img src=x onerror="window.__pwned=2;alert(2)">`,
  `<svg onload="window.__pwned=3"><script>alert(3)</script></svg>`,
  `<svg><animate onbegin="alert(4)" attributeName=x dur=1s>`,
  `<math><mtext><table><mglyph><style><img src=x onerror=alert(5)>`,
  `<iframe src="javascript:alert(6)"></iframe>`,
  `<a href="javascript:alert(7)">click me</a>`,
  `[markdown link](javascript:alert(8))`,
  `[entity link](jav&#x09;ascript:alert(9))`,
  `[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxMCk8L3NjcmlwdD4=)`,
  `![img](https://evil.example/x.png)`,
  `![x](x" onerror="alert(11))`,
  `<img src="https://evil.example/track.gif">`,
  `<style>body{background:url(https://evil.example/css)}</style>`,
  `<div style="background:url(https://evil.example/inline)">styled</div>`,
  `<link rel=stylesheet href="https://evil.example/x.css">`,
  `<form action="https://evil.example/"><button>go</button></form>`,
  `<div class="sheet" role="dialog"><button class="primary">Allow once</button></div>`,
  `<details open ontoggle=alert(12)>x</details>`,
  `<object data="javascript:alert(13)"></object>`,
  `<base href="https://evil.example/">`,
  `<meta http-equiv="refresh" content="0;url=https://evil.example/">`,
  "`<img src=x onerror=alert(14)>` in code is text",
  `[](https://evil.example/ "<img src=x onerror=alert(15)>")`,
  `<a href="https://ok.example/">fine link</a> and https://auto.example/`,
  `\u202Egnp.exe \u2066bidi\u2069 override`,
];
export const HOSTILE_TITLE = `<img src=x onerror=alert(26)>\u202Eevil title`;
export const HOSTILE_BRANCH = `session/<svg/onload=alert(27)>\u202Etxt.exe`;

export async function run({ server, browser, login, newSession, send, test, shot, waitIdle, T }) {
  // Hostile file names in the repo (the browser lists them).
  const hostile = join(server.repo, "xss");
  mkdirSync(hostile, { recursive: true });
  for (const name of [`<img src=x onerror=alert(20)>.txt`, `\u202Etxt.exe`, `"><svg onload=alert(21)>`]) {
    writeFileSync(join(hostile, name), "x");
  }
  await server.api("/api/tasks", {
    method: "POST",
    body: { title: `<img src=x onerror=alert(22)> task`, status: "review", description: `<script>alert(23)</script> [x](javascript:alert(24))` },
  });
  // A session whose title (its first prompt's first line) is hostile.
  const titled = await server.api("/api/sessions", {
    method: "POST",
    body: { source: "web-test", initialPrompt: `text:${HOSTILE_TITLE}` },
  });
  assert.equal(titled.status, 201, titled.text);
  const hostileSid = titled.json.sessionId;
  // Branch names are written by mitzod itself today (session/<id>), so the
  // hostile one is planted in the database while mitzod is stopped: the
  // page must not trust what the list endpoint says either.
  await server.stop();
  execFileSync("python3", [
    "-c",
    "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); n=c.execute('UPDATE sessions SET branch=? WHERE id=?', (sys.argv[3], sys.argv[2])).rowcount; c.commit(); sys.exit(n != 1)",
    join(server.dir, "state", "mitzod.db"),
    hostileSid,
    HOSTILE_BRANCH,
  ]);
  await server.run();
  assert.equal((await server.api(`/api/sessions/${encodeURIComponent(hostileSid)}/meta`)).json.branch, HOSTILE_BRANCH, "the branch was planted");

  await test("XSS control: each detector fires when something does run (dialog, foreign request, CSP and TT violations, errors)", async () => {
    const w = await browser("phone", server.origin);
    const page = w.page;
    try {
      await login(page, server.origin);
      // Binding calls and console messages arrive asynchronously: wait for one.
      const seen = async (list, pred, what) => {
        for (let i = 0; i < 100 && !list().some(pred); i++) await page.waitForTimeout(50);
        assert.ok(list().some(pred), `${what}: ${JSON.stringify(list())}`);
      };
      // A planted alert: the dialog detector sees it.
      await page.evaluate(() => alert("control-alert"));
      assert.deepEqual(w.dialogs, ["alert: control-alert"]);
      // A string assigned to innerHTML: Trusted Types refuses it and the
      // violation reaches Node.
      const tt = await page.evaluate(() => {
        try {
          document.createElement("div").innerHTML = "<b>control-tt</b>";
          return "assigned";
        } catch (e) {
          return e.name;
        }
      });
      assert.equal(tt, "TypeError", "Trusted Types refused the string");
      await seen(() => w.violations, (v) => v.includes("require-trusted-types-for"), "TT violation seen");
      // A fetch to another origin: CSP blocks it, the violation and its
      // console error are seen.
      const fetched = await page.evaluate(() => fetch("http://127.0.0.1:1/control-fetch").then(() => "fetched", (e) => e.name));
      assert.equal(fetched, "TypeError", "connect-src refused the fetch");
      await seen(() => w.violations, (v) => v.includes("connect-src http://127.0.0.1:1/control-fetch"), "CSP violation seen");
      await seen(() => w.scriptErrors(), (m) => m.includes("control-fetch"), "console error seen");
      // Violations on a page navigated away from are kept.
      await page.goto(server.origin + "/files");
      await page.locator(".entries").waitFor({ timeout: T });
      assert.ok(w.violations.some((v) => v.startsWith("/: require-trusted-types-for")), `kept across page loads: ${w.violations}`);
      await page.evaluate(() => {
        try {
          document.body.insertAdjacentHTML("beforeend", "<i>control-files</i>");
        } catch {
          // refused, as expected
        }
      });
      await seen(() => w.violations, (v) => v.startsWith("/files: require-trusted-types-for"), "seen on the files page");
      // An uncaught error: the page error detector sees it.
      await page.evaluate(() => setTimeout(() => {
        throw new Error("control-error");
      }));
      await seen(() => w.pageErrors, (e) => e.includes("control-error"), "page error seen");
      // A link that escaped to another origin, followed: the request is seen.
      await page.evaluate(() => {
        const a = document.createElement("a");
        a.href = "http://127.0.0.1:1/control-nav";
        a.textContent = "away";
        document.body.append(a);
        a.click();
      });
      await seen(() => w.foreign, (u) => u.includes("/control-nav"), "foreign request seen");
    } finally {
      await w.close();
    }
  });

  for (const kind of ["phone", "desktop"]) {
    const w = await browser(kind, server.origin);
    const page = w.page;
    try {
      await test(`${kind}: XSS corpus through the agent, tools, file names and tasks`, async () => {
        await login(page, server.origin);
        const sid = await newSession(page, server.origin, "text:" + CORPUS.join("\n\n"), "agent");
        await page.locator(".msg.agent", { hasText: "fine link" }).waitFor({ timeout: T });
        await waitIdle(page);
        // Tool input and result carrying HTML.
        await send(page, `tool:Bash:echo '<img src=x onerror=alert(30)><script>alert(31)</script>'`);
        await page.getByRole("dialog").getByRole("button", { name: "Allow once" }).click();
        await page.locator(".tool .out", { hasText: "<script>alert(31)</script>" }).waitFor({ timeout: T });
        await waitIdle(page);
        await shot(w, "xss-chat");
        const dom = await page.evaluate(() => {
          const t = document.querySelector(".transcript");
          const all = [...t.querySelectorAll("*")];
          return {
            scripts: document.querySelectorAll("script:not([src])").length,
            handlers: all.filter((e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length,
            badHrefs: [...t.querySelectorAll("a[href]")].map((a) => a.getAttribute("href")).filter((h) => !/^(https?:|mailto:)/.test(h)),
            foreignEls: t.querySelectorAll(".md svg, .md math, .md img, .md iframe, .md object, .md style, .md link, .md form, .md base, .md meta, .md [style], .md [class], .md button:not(.copy)").length,
            relOk: [...t.querySelectorAll(".md a[href]")].every((a) => a.rel === "noopener noreferrer"),
            pwned: window.__pwned || null,
            textShown: t.innerText.includes("<script>alert(31)</script>"),
          };
        });
        assert.equal(dom.scripts, 0, "no inline script element");
        assert.equal(dom.handlers, 0, "no event handler attribute");
        assert.deepEqual(dom.badHrefs, [], "only http(s)/mailto links");
        assert.equal(dom.foreignEls, 0, "no svg/math/img/iframe/style/form/class/style attr from the agent");
        assert.ok(dom.relOk, "links carry rel=noopener noreferrer");
        assert.equal(dom.pwned, null);
        assert.ok(dom.textShown, "the tool output is shown as text");
        // File names.
        await page.goto(server.origin + "/files");
        await page.getByRole("button", { name: /xss/ }).click();
        // The directory's own entry, not the list shown before the click:
        // an HTML file name is found only if it is shown as text.
        await page.locator(".entries .name", { hasText: "<img src=x onerror=alert(20)>.txt" }).waitFor({ timeout: T });
        const names = await page.locator(".entries .name").allInnerTexts();
        assert.ok(names.some((n) => n.includes("<img src=x onerror=alert(20)>.txt")), "an HTML file name is shown as text");
        assert.equal(await page.locator(".entries bdi").count(), 3, "names are bidi-isolated");
        await shot(w, "xss-files");
        // Task title and description.
        await page.goto(server.origin + "/tasks");
        const card = page.locator(".task", { hasText: "<img src=x onerror=alert(22)> task" });
        await card.waitFor({ timeout: T });
        await card.locator("summary").click();
        await card.getByText("<script>alert(23)</script>", { exact: false }).waitFor();
        // A hostile session title and branch name: text, each bidi-isolated,
        // in the list and as the chat's heading.
        await page.goto(server.origin + "/");
        const row = page.locator(".session-list li", { has: page.locator(`a[href="/s/${encodeURIComponent(hostileSid)}"]`) });
        await row.waitFor({ timeout: T });
        const shown = await row.evaluate((li) => {
          const iso = (sel) => {
            const e = li.querySelector(sel);
            return e && { tag: e.tagName, text: e.textContent, bidi: getComputedStyle(e).unicodeBidi };
          };
          return { title: iso(".title > bdi"), branch: iso(".branch > bdi"), tags: li.querySelectorAll("img, svg").length };
        });
        assert.deepEqual(shown.title, { tag: "BDI", text: `text:${HOSTILE_TITLE}`, bidi: "isolate" });
        assert.deepEqual(shown.branch, { tag: "BDI", text: HOSTILE_BRANCH, bidi: "isolate" });
        assert.equal(shown.tags, 0, "no element from the title or branch");
        await shot(w, "xss-sessions");
        await row.locator("a").click();
        // The heading reads "New session" until the session's meta arrives.
        const h1 = page.locator(".chat-title h1 > bdi", { hasText: "evil title" });
        await h1.waitFor({ timeout: T });
        assert.equal(await h1.textContent(), `text:${HOSTILE_TITLE}`);
        await page.goto(server.origin + `/s/${sid}`);
        await page.locator(".msg.agent", { hasText: "fine link" }).waitFor({ timeout: T });
        // Let anything that would fire (timers, animations, image errors) fire.
        await page.waitForTimeout(1500);
        assert.deepEqual(w.dialogs, [], "no dialog opened");
        assert.deepEqual(w.foreign, [], "no request to another origin");
        assert.deepEqual(w.pageErrors, [], "no page error");
        assert.deepEqual(w.violations, [], "nothing was even tried that CSP or Trusted Types had to block, on any page loaded");
        assert.deepEqual(w.scriptErrors(), [], "no console error from a script");
        assert.equal(await page.evaluate(() => window.__pwned || null), null);
      });
    } finally {
      await w.close();
    }
  }
}
