// Streaming and reconnects against a scripted agent whose turn writes three
// blocks 2.5 s apart: blocks appear before the turn ends; a dropped
// WebSocket and a restarted mitzod both end with the transcript a fresh
// page load shows, nothing lost and nothing doubled.
import assert from "node:assert/strict";

export async function run({ server, streaming, browser, login, newSession, test, transcriptText, waitIdle, T, shot, axe }) {
  // Token deltas: the page drops out in the middle of a block and comes back
  // to the block so far plus the rest, with nothing doubled.
  for (const kind of ["phone", "desktop"]) {
    let block = false;
    const sockets = [];
    const w = await browser(kind, server.origin, {
      route: (ws) => {
        if (block) return ws.close();
        ws.connectToServer();
        sockets.push(ws);
      },
    });
    const page = w.page;
    try {
      await login(page, server.origin);
      await test(`${kind}: WebSocket dropped in the middle of a streamed block: identical transcript`, async () => {
        const sid = await newSession(page, server.origin, "slow:8");
        await page.locator(".msg.agent", { hasText: "chunk 2" }).waitFor({ timeout: T });
        block = true;
        for (const s of sockets.splice(0)) await s.close();
        await page.getByText("Reconnecting…").first().waitFor({ timeout: T });
        await page.waitForTimeout(2000); // more deltas go by while the page is away
        block = false;
        await page.locator(".msg.agent", { hasText: "chunk 9" }).waitFor({ timeout: T });
        await waitIdle(page);
        const live = await transcriptText(page);
        const fresh = await w.ctx.newPage();
        await fresh.goto(`${server.origin}/s/${sid}`);
        await fresh.locator(".msg.agent", { hasText: "chunk 9" }).waitFor({ timeout: T });
        await waitIdle(fresh);
        const loaded = await transcriptText(fresh);
        await fresh.close();
        assert.equal(live, loaded, "the live transcript equals a fresh load");
        for (let i = 0; i < 10; i++) assert.equal((live.match(new RegExp(`chunk ${i}(?!\\d)`, "g")) || []).length, 1, `chunk ${i} exactly once`);
      });
    } finally {
      await w.close();
    }
  }

  for (const kind of ["phone", "desktop"]) {
    let block = false;
    const sockets = [];
    const w = await browser(kind, streaming.origin, {
      route: (ws) => {
        if (block) {
          ws.close();
          return;
        }
        ws.connectToServer();
        sockets.push(ws);
      },
    });
    const page = w.page;
    const compareWithFreshLoad = async (sid) => {
      const live = await transcriptText(page);
      const fresh = await w.ctx.newPage();
      await fresh.goto(`${streaming.origin}/s/${sid}`);
      await fresh.locator(".msg.agent", { hasText: "part three" }).waitFor({ timeout: T });
      await waitIdle(fresh);
      const loaded = await transcriptText(fresh);
      await fresh.close();
      assert.equal(live, loaded, "the live transcript equals a fresh load");
      for (const part of ["part one", "part two", "part three"]) {
        assert.equal(live.split(part).length - 1, 1, `${part} exactly once`);
      }
    };
    try {
      await login(page, streaming.origin);
      await test(`${kind}: text appears block by block before the turn ends`, async () => {
        await newSession(page, streaming.origin, "stream please");
        await page.locator(".msg.agent", { hasText: "part one" }).waitFor({ timeout: T });
        assert.equal(await page.locator(".msg.agent", { hasText: "part three" }).count(), 0, "the turn is not over yet");
        assert.equal(await page.locator(".chat-title .state").innerText(), "running");
        await page.locator(".msg.agent strong", { hasText: "two" }).waitFor({ timeout: T });
        await page.locator(".msg.agent", { hasText: "part three" }).waitFor({ timeout: T });
        await waitIdle(page);
      });

      await test(`${kind}: WebSocket dropped mid-turn: reconnecting shown, identical transcript`, async () => {
        const sid = await newSession(page, streaming.origin, "stream again");
        await page.locator(".msg.agent", { hasText: "part one" }).last().waitFor({ timeout: T });
        block = true;
        for (const s of sockets.splice(0)) await s.close();
        await page.getByText("Reconnecting…").first().waitFor({ timeout: T });
        await shot(w, "reconnecting");
        await axe(w, "reconnecting banner");
        assert.deepEqual(w.axe, [], "axe: no serious or critical violation with the banner up");
        assert.deepEqual(w.axeScreens, ["reconnecting banner"]);
        await page.waitForTimeout(3000); // part two is written while the page is away
        block = false;
        await page.locator(".msg.agent", { hasText: "part three" }).waitFor({ timeout: T });
        await waitIdle(page);
        await compareWithFreshLoad(sid);
      });

      await test(`${kind}: mitzod restarted mid-turn: the page reconnects, identical transcript`, async () => {
        const sid = await newSession(page, streaming.origin, "stream once more");
        await page.locator(".msg.agent", { hasText: "part one" }).last().waitFor({ timeout: T });
        // Record, in the page, whether the reconnecting state was ever shown:
        // it may last only as long as mitzod is down.
        await page.evaluate(() => {
          window.__sawReconnecting = false;
          const look = () => {
            if ([...document.querySelectorAll(".conn, .banner")].some((e) => e.textContent.includes("Reconnecting…"))) window.__sawReconnecting = true;
          };
          new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true });
        });
        assert.equal(await page.evaluate(() => window.__sawReconnecting), false, "control: not reconnecting before the restart");
        await streaming.restart();
        await page.waitForFunction(() => window.__sawReconnecting === true, null, { timeout: T });
        // The restart ended the agent: the session settles, then the page
        // and a fresh load must agree on what happened.
        await page.waitForFunction(() => !document.querySelector(".conn"), null, { timeout: T });
        await waitIdle(page);
        await page.waitForTimeout(500);
        const live = await transcriptText(page);
        const fresh = await w.ctx.newPage();
        await fresh.goto(`${streaming.origin}/s/${sid}`);
        await fresh.locator(".msg.agent", { hasText: "part one" }).waitFor({ timeout: T });
        await waitIdle(fresh);
        const loaded = await transcriptText(fresh);
        await fresh.close();
        assert.equal(live, loaded, "the live transcript equals a fresh load");
        assert.equal(live.split("part one").length - 1, 1, "part one exactly once");
        // And the session goes on after the restart.
        await page.locator("#prompt").fill("after restart");
        await page.getByRole("button", { name: "Send" }).click();
        await page.locator(".msg.agent", { hasText: "part three" }).waitFor({ timeout: T });
        await waitIdle(page);
        await compareWithFreshLoadAfter(sid);
      });

      await test(`${kind}: a long chat opens at its end and pages back on scroll`, async () => {
        const sid = await newSession(page, streaming.origin, "first turn");
        await page.locator(".msg.agent", { hasText: "part three" }).waitFor({ timeout: T });
        await waitIdle(page);
        await page.locator("#prompt").fill("a long answer");
        await page.getByRole("button", { name: "Send" }).click();
        await page.locator(".msg.agent", { hasText: "Old message 79" }).waitFor({ timeout: T });
        await waitIdle(page);
        const fresh = await w.ctx.newPage();
        await fresh.goto(`${streaming.origin}/s/${sid}`);
        await fresh.locator(".msg.agent", { hasText: "Old message 79" }).waitFor({ timeout: T });
        // At the end, and not everything rendered.
        const atEnd = await fresh.evaluate(() => {
          const t = document.querySelector(".transcript");
          return t.scrollHeight - t.scrollTop - t.clientHeight < 80;
        });
        assert.ok(atEnd, "opened at its end");
        assert.equal(await fresh.getByText("part one", { exact: true }).count(), 0, "older messages not shown yet");
        for (let i = 0; i < 20 && (await fresh.getByText("part one", { exact: true }).count()) === 0; i++) {
          await fresh.evaluate(() => {
            const t = document.querySelector(".transcript");
            t.scrollTop = 0;
            t.dispatchEvent(new Event("scroll"));
          });
          await fresh.waitForTimeout(300);
        }
        await fresh.getByText("part one", { exact: true }).waitFor({ timeout: T });
        assert.equal(await fresh.getByText("Old message 0", { exact: true }).count(), 1, "every message once");
        await fresh.close();
      });
    } finally {
      await w.close();
    }

    async function compareWithFreshLoadAfter(sid) {
      const live = await transcriptText(page);
      const fresh = await w.ctx.newPage();
      await fresh.goto(`${streaming.origin}/s/${sid}`);
      await fresh.locator(".msg.agent", { hasText: "part three" }).waitFor({ timeout: T });
      await waitIdle(fresh);
      const loaded = await transcriptText(fresh);
      await fresh.close();
      assert.equal(live, loaded, "after the restart too");
    }
  }
}
