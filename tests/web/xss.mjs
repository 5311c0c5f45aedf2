// Hostile agent output through every path the page renders: the agent's
// Markdown, tool input and results, file names, task titles. Each payload
// would call alert(), set window.__pwned, or fetch another origin if it ran.
import assert from "node:assert/strict";
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
        await page.goto(server.origin + `/s/${sid}`);
        await page.locator(".msg.agent", { hasText: "fine link" }).waitFor({ timeout: T });
        // Let anything that would fire (timers, animations, image errors) fire.
        await page.waitForTimeout(1500);
        assert.deepEqual(w.dialogs, [], "no dialog opened");
        assert.deepEqual(w.foreign, [], "no request to another origin");
        assert.deepEqual(w.pageErrors, [], "no page error");
        assert.deepEqual(await page.evaluate(() => window.__violations), [], "nothing was even tried that CSP or Trusted Types had to block");
        assert.equal(await page.evaluate(() => window.__pwned || null), null);
      });
    } finally {
      await w.close();
    }
  }
}
