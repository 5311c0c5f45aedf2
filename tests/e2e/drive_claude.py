#!/usr/bin/env python3
"""Play mitzod's role against the real Claude Code CLI over its stream-json control protocol.

Python 3 standard library only. Spawns the CLI (offline, against tests/e2e/fake_anthropic.py,
which it can start itself), sends `initialize`, user messages, answers `can_use_tool`, and
prints every line in both directions as JSON lines on stdout:

    {"dir": "out", "t": 0.123, "msg": {...}}   # CLI -> us (its stdout)
    {"dir": "in",  "t": 0.100, "msg": {...}}   # us -> CLI (its stdin)
    {"dir": "note", "t": ..., "msg": "..."}    # the driver's own remarks (exit code, ...)

Examples:

    # start the fake API with the default script (Bash tool_use, then "done"), allow the tool
    python3 drive_claude.py --start-fake --prompt "run it" --decision allow

    # deny, with a scripted fake; keep the whole exchange
    python3 drive_claude.py --start-fake --script s.json --record req.jsonl \
        --prompt "run it" --decision deny --transcript t.jsonl

    # continue a session (session_id comes from the system/init message of the first run)
    python3 drive_claude.py --start-fake --home H --cwd W --resume SESSION_ID --prompt "again"

Importable: `claude_path()`, `offline_env(home, base_url)`, `base_command(...)`, `Driver`.
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def claude_path():
    """The CLI installed by `npm ci` in tests/e2e (override with $CLAUDE_BIN)."""
    return os.environ.get("CLAUDE_BIN") or os.path.join(HERE, "node_modules", ".bin", "claude")


def offline_env(home, base_url, extra=None):
    """A minimal environment under which the CLI talks to nothing but base_url.

    Built from scratch (not inherited) so a developer's real credentials never leak in.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test-key-not-real",
        # The one that matters: no telemetry, error reporting, feature-flag fetches,
        # auto-update checks or other calls to Anthropic's hosts.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Belt and braces (each is implied by the one above).
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
    }
    if extra:
        env.update(extra)
    return env


def base_command(
    claude=None,
    permission_mode="default",
    model=None,
    resume=None,
    partial=False,
    extra_args=(),
):
    cmd = [
        claude or claude_path(),
        "--output-format", "stream-json",
        "--input-format", "stream-json",
        "--verbose",
        "--permission-prompt-tool", "stdio",
    ]
    if permission_mode:
        cmd += ["--permission-mode", permission_mode]
    if model:
        cmd += ["--model", model]
    if resume:
        cmd.append(f"--resume={resume}")
    if partial:
        cmd.append("--include-partial-messages")
    cmd += list(extra_args)
    return cmd


def start_fake(script=None, record=None):
    """Start fake_anthropic.py; returns (Popen, base_url)."""
    cmd = [sys.executable, os.path.join(HERE, "fake_anthropic.py"), "--port", "0", "--exit-on-stdin-eof"]
    if script:
        cmd += ["--script", script]
    if record:
        cmd += ["--record", record]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True)
    port = int(p.stdout.readline().strip())
    p.stdout.close()  # it prints nothing more
    return p, f"http://127.0.0.1:{port}"


class Driver:
    """One CLI process and a reader thread that queues its stdout lines (parsed)."""

    def __init__(self, cmd, env, cwd, transcript=None, echo=True):
        self.t0 = time.monotonic()
        self.echo = echo
        self.transcript = open(transcript, "w", encoding="utf-8") if transcript else None
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0,
        )
        self.q = queue.Queue()
        self.stderr_lines = []
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()
        self._n = 0

    def emit(self, direction, msg):
        rec = {"dir": direction, "t": round(time.monotonic() - self.t0, 3), "msg": msg}
        line = json.dumps(rec, ensure_ascii=False)
        if self.echo:
            print(line, flush=True)
        if self.transcript:
            self.transcript.write(line + "\n")
            self.transcript.flush()

    def _read_out(self):
        for raw in self.proc.stdout:
            raw = raw.decode("utf-8", "replace").rstrip("\n")
            if not raw.strip():
                continue
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = {"_non_json": raw}
            self.emit("out", msg)
            self.q.put(msg)
        self.q.put(None)  # EOF

    def _read_err(self):
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def send(self, msg):
        self.emit("in", msg)
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.emit("note", "stdin closed by the CLI (broken pipe)")

    def next_id(self):
        self._n += 1
        return f"req_{self._n}_{uuid.uuid4().hex[:8]}"

    def control(self, request):
        rid = self.next_id()
        self.send({"type": "control_request", "request_id": rid, "request": request})
        return rid

    def user(self, text, session_id=""):
        self.send(
            {
                "type": "user",
                "session_id": session_id,
                "message": {"role": "user", "content": text},
                "parent_tool_use_id": None,
            }
        )

    def answer(self, request_id, response=None, error=None):
        if error is not None:
            body = {"subtype": "error", "request_id": request_id, "error": error}
        else:
            body = {"subtype": "success", "request_id": request_id, "response": response or {}}
        self.send({"type": "control_response", "response": body})

    def recv(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return "timeout"

    def close_stdin(self):
        self.emit("note", "closing stdin")
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def wait(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.emit("note", f"CLI still running {timeout}s after stdin closed; killing")
            self.proc.kill()
            rc = self.proc.wait()
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        self.emit("note", f"exit code {rc}")
        if self.stderr_lines:
            self.emit("note", "stderr tail: " + "\n".join(x[:300] for x in self.stderr_lines[-20:]))
        return rc


def main(argv=None):
    ap = argparse.ArgumentParser(description="drive the real claude CLI over stream-json")
    ap.add_argument("--claude", default=None, help="CLI binary (default: node_modules/.bin/claude)")
    ap.add_argument("--base-url", help="fake API base URL (else --start-fake)")
    ap.add_argument("--start-fake", action="store_true", help="start fake_anthropic.py")
    ap.add_argument("--script", help="script for the fake API")
    ap.add_argument("--record", help="the fake API's request record (JSONL)")
    ap.add_argument("--home", help="HOME for the CLI (default: a fresh temp dir)")
    ap.add_argument("--cwd", help="working directory (default: a fresh temp dir)")
    ap.add_argument("--prompt", action="append", default=[], help="user message; repeat for turns")
    ap.add_argument("--decision", default="allow", choices=["allow", "deny", "deny-interrupt", "error", "ignore", "interrupt"],
                    help="answer to every can_use_tool")
    ap.add_argument("--deny-message", default="Denied by the owner")
    ap.add_argument("--updated-input", help="JSON object to send as updatedInput instead of the original")
    ap.add_argument("--permission-mode", default="default")
    ap.add_argument("--model")
    ap.add_argument("--resume")
    ap.add_argument("--partial", action="store_true", help="--include-partial-messages")
    ap.add_argument("--set-mode", help="send set_permission_mode with this mode right after initialize")
    ap.add_argument("--interrupt-after", type=float,
                    help="send an interrupt control request this many seconds after the first prompt")
    ap.add_argument("--unknown-request", action="store_true",
                    help="send a control request with an unknown subtype after initialize")
    ap.add_argument("--hook-callback", action="store_true",
                    help="register a PreToolUse hook callback in initialize, so the CLI sends us "
                         "hook_callback control requests (which this driver answers with an error)")
    ap.add_argument("--no-initialize", action="store_true", help="skip the initialize request")
    ap.add_argument("--keep-stdin", type=float, default=0,
                    help="after the last result, wait this long before closing stdin")
    ap.add_argument("--timeout", type=float, default=60, help="overall seconds without output before giving up")
    ap.add_argument("--transcript", help="also write the JSONL transcript here")
    ap.add_argument("--extra-arg", action="append", default=[], help="extra CLI argument (repeatable)")
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the CLI env")
    args = ap.parse_args(argv)

    fake = None
    base_url = args.base_url
    if args.start_fake or not base_url:
        fake, base_url = start_fake(args.script, args.record)
    home = args.home or tempfile.mkdtemp(prefix="claude-home-")
    cwd = args.cwd or tempfile.mkdtemp(prefix="claude-work-")
    os.makedirs(home, exist_ok=True)
    os.makedirs(cwd, exist_ok=True)
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    cmd = base_command(args.claude, args.permission_mode, args.model, args.resume, args.partial,
                       args.extra_arg)
    d = Driver(cmd, offline_env(home, base_url, extra_env), cwd, args.transcript)
    d.emit("note", {"cmd": cmd, "home": home, "cwd": cwd, "base_url": base_url})

    prompts = list(args.prompt) or ["Run the command please."]
    pending = {}  # request_id -> subtype of our control requests
    if not args.no_initialize:
        hooks = None
        if args.hook_callback:
            hooks = {"PreToolUse": [{"matcher": None, "hookCallbackIds": ["hook_0"]}]}
        pending[d.control({"subtype": "initialize", "hooks": hooks})] = "initialize"
    if args.unknown_request:
        pending[d.control({"subtype": "frobnicate", "x": 1})] = "frobnicate"
    if args.set_mode:
        pending[d.control({"subtype": "set_permission_mode", "mode": args.set_mode})] = "set_permission_mode"

    session_id = ""
    results = []
    d.user(prompts.pop(0), session_id)
    interrupt_at = time.monotonic() + args.interrupt_after if args.interrupt_after is not None else None
    deadline = time.monotonic() + args.timeout
    rc_ok = True
    while True:
        wait = max(0.05, deadline - time.monotonic())
        if interrupt_at:
            wait = min(wait, max(0.01, interrupt_at - time.monotonic()))
        msg = d.recv(wait)
        if interrupt_at and time.monotonic() >= interrupt_at:
            pending[d.control({"subtype": "interrupt"})] = "interrupt"
            interrupt_at = None
        if msg == "timeout":
            if time.monotonic() >= deadline:
                d.emit("note", f"no output for {args.timeout}s; giving up")
                rc_ok = False
                break
            continue
        if msg is None:
            d.emit("note", "CLI stdout closed")
            break
        deadline = time.monotonic() + args.timeout
        t = msg.get("type")
        if t == "system" and msg.get("subtype") == "init":
            session_id = msg.get("session_id", session_id)
        elif t == "control_request":
            req = msg.get("request", {})
            rid = msg.get("request_id")
            if req.get("subtype") == "can_use_tool":
                if args.decision == "allow":
                    upd = json.loads(args.updated_input) if args.updated_input else req.get("input", {})
                    d.answer(rid, {"behavior": "allow", "updatedInput": upd})
                elif args.decision == "deny":
                    d.answer(rid, {"behavior": "deny", "message": args.deny_message})
                elif args.decision == "deny-interrupt":
                    d.answer(rid, {"behavior": "deny", "message": args.deny_message, "interrupt": True})
                elif args.decision == "error":
                    d.answer(rid, error="no decision available")
                elif args.decision == "interrupt":  # leave it pending and interrupt the turn
                    pending[d.control({"subtype": "interrupt"})] = "interrupt"
                # "ignore": never answer (timeout path)
            else:
                # Anything we do not support gets a proper error response, never silence.
                d.answer(rid, error=f"Unsupported control request subtype: {req.get('subtype')}")
        elif t == "control_response":
            pending.pop(msg.get("response", {}).get("request_id"), None)
        elif t == "result":
            results.append(msg)
            if prompts:
                d.user(prompts.pop(0), session_id)
            else:
                if args.keep_stdin:
                    end = time.monotonic() + args.keep_stdin
                    while time.monotonic() < end:
                        m = d.recv(max(0.01, end - time.monotonic()))
                        if m is None:
                            break
                        if isinstance(m, dict) and m.get("type") == "control_request":
                            d.answer(m.get("request_id"), error="session is ending")
                d.close_stdin()
                # drain until EOF
                while True:
                    m = d.recv(15)
                    if m is None or m == "timeout":
                        break
                break
    if not d.proc.stdin.closed:
        d.close_stdin()
    rc = d.wait(15)
    if fake:
        fake.terminate()
        fake.wait()
        fake.stdin.close()
    ok = rc_ok and results and all(not r.get("is_error") for r in results)
    d.emit("note", {"session_id": session_id, "results": len(results), "ok": bool(ok)})
    if d.transcript:
        d.transcript.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
