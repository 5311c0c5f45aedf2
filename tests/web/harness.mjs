// Starts the real mitzod binary with the fake agent (server/tests/fixtures/
// fake_agent.py) in a temp dir, as the Rust tests do: a git repo owned by
// the user mitzod drops to, the agent behind a wrapper in a directory the
// sandbox lets it execute from, a passphrase hashed by `mitzod hash-passphrase`.
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const MITZOD = process.env.MITZO_BIN || join(ROOT, "target/debug/mitzod");
export const PASSPHRASE = "correct horse battery staple";
const isRoot = process.getuid?.() === 0;

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

function serverEnv() {
  const env = { ...process.env, MITZO_LOG: "info" };
  for (const k of ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"]) delete env[k];
  return env;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Server {
  /**
   * `repoAt`: where mitzod sees the repo (root only): mitzod runs in its own
   * mount namespace with a tmpfs over that path's parent and the temp repo
   * bound there, so a picture for the README shows a plain path, not /tmp.
   */
  static async start({ script = null, extraToml = "", session = "", env = {}, repoAt = null, dev = false } = {}) {
    const s = new Server();
    s.env = env;
    s.dev = dev;
    s.repoAt = repoAt;
    s.dir = mkdtempSync("/tmp/mitzod-web-");
    chmodSync(s.dir, 0o755);
    s.port = await freePort();
    s.origin = `http://127.0.0.1:${s.port}`;
    s.repo = join(s.dir, "repo");
    mkdirSync(s.repo);
    const git = (...args) =>
      execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", ...args], { cwd: s.repo });
    git("init", "-q");
    writeFileSync(join(s.repo, "README.md"), "hello from the repo\n");
    git("add", "README.md");
    git("commit", "-qm", "init");
    const bin = join(s.dir, "agent-bin");
    mkdirSync(bin);
    copyFileSync(join(ROOT, "server/tests/fixtures/fake_agent.py"), join(bin, "fake_agent.py"));
    let wrapperEnv = "";
    if (script) {
      writeFileSync(join(bin, "script.json"), JSON.stringify(script));
      wrapperEnv = `FAKE_AGENT_SCRIPT=${join(bin, "script.json")} `;
    }
    writeFileSync(join(bin, "claude"), `#!/bin/sh\n${wrapperEnv}exec /usr/bin/python3 ${join(bin, "fake_agent.py")} "$@"\n`);
    chmodSync(join(bin, "claude"), 0o755);
    chmodSync(bin, 0o755);
    if (isRoot) execFileSync("chown", ["-R", "nobody:", s.repo]);
    s.log = join(s.dir, "mitzod.log");
    if (dev) {
      // The README's first command: `serve --dev` in the repo, nothing but
      // the MITZOD_* variables a user would set (its own listen address for
      // a free port, the agent to run). Started as root it serves as the
      // repo's owner (nobody here).
      s.env = { ...s.env, MITZOD_LISTEN: `["127.0.0.1:${s.port}"]`, MITZOD_AGENT__COMMAND: join(bin, "claude") };
      await s.run();
      return s;
    }
    const hash = execFileSync(MITZOD, ["hash-passphrase"], { input: PASSPHRASE + "\n" }).toString().trim();
    writeFileSync(join(s.dir, "jwt-secret"), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", { mode: 0o600 });
    s.config = join(s.dir, "mitzod.toml");
    writeFileSync(
      s.config,
      `repo_path = "${repoAt || s.repo}"\n${isRoot ? 'user = "nobody"\n' : ""}state_dir = "${join(s.dir, "state")}"\n` +
        `listen = ["127.0.0.1:${s.port}"]\njwt_secret_file = "${join(s.dir, "jwt-secret")}"\npassphrase_hash = "${hash}"\n` +
        // Sessions work in the repo itself unless a test asks for a checkout
        // (isolation: true): most tests look for what the agent wrote there.
        `${extraToml}\n[session]\nisolation = false\n${session}\n[agent]\ncommand = "${join(bin, "claude")}"\n`,
    );
    await s.run();
    return s;
  }

  async run() {
    const fd = openSync(this.log, "a");
    const serve = this.dev ? [MITZOD, "serve", "--dev"] : [MITZOD, "serve", "--config", this.config];
    const [cmd, ...args] = this.repoAt
      ? [
          "unshare",
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          'mount -t tmpfs -o mode=755 mitzod-demo "$1" && mkdir -p "$2" && mount --bind "$3" "$2" && shift 3 && exec "$@"',
          "sh",
          dirname(this.repoAt),
          this.repoAt,
          this.repo,
          ...serve,
        ]
      : serve;
    this.child = spawn(cmd, args, {
      cwd: this.dev ? this.repo : undefined,
      stdio: ["ignore", fd, fd],
      env: { ...serverEnv(), ...this.env },
    });
    for (let i = 0; i < 200; i++) {
      try {
        const r = await fetch(`${this.origin}/healthz`);
        if (r.ok) return;
      } catch {
        // not up yet
      }
      if (this.child.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`mitzod did not start:\n${readFileSync(this.log, "utf8").slice(-3000)}`);
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const done = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    await Promise.race([done, sleep(10000)]);
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }

  /** Stop and delete the temp dir (kept when a test failed, for its log). */
  async remove() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async restart() {
    await this.stop();
    await this.run();
  }

  internalToken() {
    const file = this.dev ? join(this.repo, ".mitzo-dev", "internal-token") : join(this.dir, "state", "internal-token");
    return readFileSync(file, "utf8").trim();
  }

  /** The passphrase the owner types: `serve --dev` prints it and keeps it in .mitzo-dev/. */
  passphrase() {
    return this.dev ? readFileSync(join(this.repo, ".mitzo-dev", "passphrase"), "utf8").trim() : PASSPHRASE;
  }

  /** A request from outside the browser (the internal token by default). */
  async api(path, { method = "GET", body, token } = {}) {
    const headers = token ? { authorization: `Bearer ${token}` } : { "x-internal-token": this.internalToken() };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(this.origin + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: r.status, headers: r.headers, text, json };
  }

  async login() {
    const r = await this.api("/api/auth/login", { method: "POST", body: { passphrase: PASSPHRASE } });
    if (r.status !== 200) throw new Error(`login: ${r.status} ${r.text}`);
    return r.json.token;
  }

  logText() {
    return readFileSync(this.log, "utf8");
  }
}

/** Chromium's flags for every run here: headless, no network of its own. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
