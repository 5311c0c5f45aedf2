// Once with the real Claude Code CLI (tests/e2e, `npm ci` there) against the
// scripted fake Anthropic API, fully offline: log in, chat, approve a Bash
// call, see its output. Skips with a message when the CLI is not installed,
// and fails instead under MITZO_REQUIRE_E2E=1.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Server } from "./harness.mjs";

const E2E = resolve(dirname(fileURLToPath(import.meta.url)), "../e2e");

export async function run({ browser, login, newSession, test, skip, waitIdle, T, shot }) {
  const claude = join(E2E, "node_modules/.bin/claude");
  const name = "phone: the real Claude Code CLI: chat, approve a Bash call, see its output";
  if (!existsSync(claude)) {
    if (process.env.MITZO_REQUIRE_E2E === "1") {
      await test(name, async () => assert.fail(`${claude} is missing: npm ci in tests/e2e`));
    } else skip(name, `${claude} is missing (npm ci in tests/e2e)`);
    return;
  }
  const api = spawn("/usr/bin/python3", [join(E2E, "fake_anthropic.py"), "--port", "0", "--exit-on-stdin-eof", "--script", join(E2E, "scripts/scenarios.json")], {
    stdio: ["pipe", "pipe", "ignore"],
  });
  const port = await new Promise((res, rej) => {
    createInterface({ input: api.stdout }).once("line", (l) => res(Number(l.trim())));
    api.once("exit", () => rej(new Error("fake API exited")));
  });
  const modules = realpathSync(join(E2E, "node_modules"));
  const server = await Server.start({
    env: {
      ANTHROPIC_BASE_URL: `http://127.0.0.1:${port}`,
      ANTHROPIC_API_KEY: "sk-test-offline",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      MITZOD_AGENT__COMMAND: claude,
      MITZOD_AGENT__ENV_PASSTHROUGH: '["ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]',
      MITZOD_AGENT__ALLOWED_CONNECT_PORTS: `[${port}]`,
      MITZOD_AGENT__EXTRA_READ_PATHS: JSON.stringify([modules]),
    },
  });
  const w = await browser("phone", server.origin);
  try {
    await test(name, async () => {
      try {
        await chat();
      } catch (e) {
        w.ok = false;
        const list = await server.api("/api/sessions");
        for (const x of list.json?.sessions || []) {
          const ev = await server.api(`/api/sessions/${x.id}/events?limit=50`);
          console.log(`events of ${x.id}:\n${ev.text.slice(0, 3000)}`);
        }
        console.log(`mitzod log (real CLI):\n${server.logText().split("\n").filter((l) => !l.includes("request method")).slice(-40).join("\n")}`);
        throw e;
      }
    });
  } finally {
    await w.close();
    if (w.ok !== false) await server.remove();
    api.stdin.end();
    api.kill();
  }

  async function chat() {
    {
      await login(w.page, server.origin);
      // A command that writes: the CLI asks for it (read-only ones it allows itself).
      await newSession(w.page, server.origin, "RUN: echo real-cli-output > made.txt && cat made.txt");
      const sheet = w.page.getByRole("dialog");
      await sheet.getByRole("button", { name: "Allow once" }).waitFor({ timeout: 60000 });
      await sheet.locator(".summary", { hasText: "echo real-cli-output" }).waitFor();
      await shot(w, "real-cli-approval");
      await sheet.getByRole("button", { name: "Allow once" }).click();
      await w.page.locator(".tool .out", { hasText: "real-cli-output" }).waitFor({ timeout: 60000 });
      await w.page.locator(".msg.agent", { hasText: "done" }).waitFor({ timeout: 60000 });
      await waitIdle(w.page);
      await shot(w, "real-cli-chat");
      assert.deepEqual(w.pageErrors, []);
      assert.deepEqual(w.foreign, []);
    }
  }
}
