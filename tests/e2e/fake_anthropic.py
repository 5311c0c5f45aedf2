#!/usr/bin/env python3
"""A scripted fake of the Anthropic Messages API, for running the real Claude Code CLI offline.

Python 3 standard library only.

    python3 fake_anthropic.py [--port 0] [--host 127.0.0.1] [--script FILE] [--record FILE]

The first line on stdout is the chosen port (a bare integer), then stdout stays quiet. Every
request is logged to stderr as one line (`METHOD PATH -> status (what)`).

Point the CLI at it with `ANTHROPIC_BASE_URL=http://127.0.0.1:<port>` and any `ANTHROPIC_API_KEY`.

## Script file (JSON)

    {
      "rules": [
        {"when": {"tool_result": false},
         "content": [{"type": "tool_use", "name": "Bash",
                      "input": {"command": "echo hi", "description": "Say hi"}}]},
        {"when": {"tool_result": true}, "content": [{"type": "text", "text": "done"}]}
      ],
      "default": {"content": [{"type": "text", "text": "ok"}]}
    }

Main-loop requests (those that carry `tools`) are answered by the first rule whose `when`
conditions all hold (all are optional):

- `tool_result` (bool): the last user message does / does not contain a `tool_result` block.
- `tool_result_error` (bool): ... contains a `tool_result` with `is_error: true` / without it.
- `contains` (str): the text of the last user message (text blocks and tool_result content,
  concatenated) contains this substring.
- `not_contains` (str): ... does not contain it.
- `first_contains` (str): the first user message's text contains it (selects a scenario by
  the prompt, so one script can serve several tests).
- `first_regex` (str): a Python regex searched in the first user message's text; its groups
  are substituted for `{1}`, `{2}`, ... in every string of the rule's `content` (so a prompt
  `RUN: touch x` can become a Bash tool_use of `touch x`). `last_regex`: same on the last.
- `model_contains` (str): the requested model name contains it.
- `turn` (int): the n-th main-loop request this server has answered (1-based).

A rule with `"once": true` is used at most once. A rule's response fields:

- `content`: list of blocks: `{"type": "text", "text": ...}`,
  `{"type": "tool_use", "name": ..., "input": {...}, "id"?: ...}` (id generated if absent),
  `{"type": "thinking", "thinking": ...}`.
- `stop_reason`: default `tool_use` when a tool_use block is present, else `end_turn`.
- `delay` (seconds before answering), `chunk_delay` (seconds between stream events, e.g. to
  give a test time to interrupt), `chunk_size` (characters per text delta, default 8).
- `status` + `error`: answer with that HTTP status and an Anthropic error body instead, e.g.
  `{"status": 529, "error": {"type": "overloaded_error", "message": "Overloaded"}}`.

`default` answers main-loop requests no rule matched (built-in default: text "ok").
Side requests (no `tools`: title generation, topic detection, quota probe, ...) are answered
with `side` if given (same shape as a rule response) else a short text.
Without --script, the built-in script is: tool_use of Bash (`echo hello-from-fake`) on a
fresh prompt, text "done" after a tool_result.

## Record file (JSONL)

One object per request: `{"ts", "method", "path", "headers": {...}, "body": <parsed JSON or
null>, "kind": "main"|"side"|"other", "last_user": {"text", "tool_results": [...]}}`.
"""

import argparse
import json
import os
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_SCRIPT = {
    "rules": [
        {
            "when": {"tool_result": False},
            "content": [
                {"type": "text", "text": "I'll run a command."},
                {
                    "type": "tool_use",
                    "name": "Bash",
                    "input": {"command": "echo hello-from-fake", "description": "Print a greeting"},
                },
            ],
        },
        {"when": {"tool_result": True}, "content": [{"type": "text", "text": "done"}]},
    ],
    "default": {"content": [{"type": "text", "text": "ok"}]},
}

SIDE_DEFAULT = {"content": [{"type": "text", "text": "Fake session"}]}


def log(*parts):
    print("[fake_anthropic]", *parts, file=sys.stderr, flush=True)


def block_text(block):
    """Text of a content block (text or tool_result) for matching."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    t = block.get("type")
    if t == "text":
        return block.get("text", "")
    if t == "tool_result":
        c = block.get("content")
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            return "\n".join(block_text(b) for b in c)
    return ""


def content_blocks(msg):
    c = msg.get("content")
    if isinstance(c, str):
        return [{"type": "text", "text": c}]
    return c if isinstance(c, list) else []


def summarize_user(msg):
    """(text, tool_results) of a user message."""
    if not msg:
        return {"text": "", "tool_results": []}
    blocks = content_blocks(msg)
    texts, results = [], []
    for b in blocks:
        if isinstance(b, dict) and b.get("type") == "tool_result":
            results.append(
                {
                    "tool_use_id": b.get("tool_use_id"),
                    "is_error": bool(b.get("is_error", False)),
                    "content": block_text(b),
                }
            )
        texts.append(block_text(b))
    return {"text": "\n".join(t for t in texts if t), "tool_results": results}


class State:
    def __init__(self, script, record_path):
        self.script = script
        self.lock = threading.Lock()
        self.used = set()
        self.main_turns = 0
        self.record_path = record_path
        self.record_lock = threading.Lock()

    def record(self, obj):
        if not self.record_path:
            return
        line = json.dumps(obj, ensure_ascii=False)
        with self.record_lock, open(self.record_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def pick(self, body, is_main):
        if not is_main:
            return self.script.get("side", SIDE_DEFAULT), "side"
        msgs = body.get("messages") or []
        users = [m for m in msgs if m.get("role") == "user"]
        last = summarize_user(users[-1] if users else None)
        first = summarize_user(users[0] if users else None)
        with self.lock:
            self.main_turns += 1
            turn = self.main_turns
            for i, rule in enumerate(self.script.get("rules", [])):
                if rule.get("once") and i in self.used:
                    continue
                w = rule.get("when", {})
                has_tr = bool(last["tool_results"])
                if "tool_result" in w and bool(w["tool_result"]) != has_tr:
                    continue
                if "tool_result_error" in w:
                    err = any(r["is_error"] for r in last["tool_results"])
                    if bool(w["tool_result_error"]) != err:
                        continue
                if "contains" in w and w["contains"] not in last["text"]:
                    continue
                if "not_contains" in w and w["not_contains"] in last["text"]:
                    continue
                if "first_contains" in w and w["first_contains"] not in first["text"]:
                    continue
                if "model_contains" in w and w["model_contains"] not in str(body.get("model", "")):
                    continue
                if "turn" in w and int(w["turn"]) != turn:
                    continue
                groups = ()
                m = None
                for key, src in (("first_regex", first), ("last_regex", last)):
                    if key in w:
                        m = re.search(w[key], src["text"], re.S)
                        if not m:
                            break
                        groups += m.groups()
                if any(k in w for k in ("first_regex", "last_regex")) and not m:
                    continue
                self.used.add(i)
                if groups:
                    rule = dict(rule, content=substitute(rule.get("content", []), groups))
                return rule, f"rule {i}"
        return self.script.get("default", DEFAULT_SCRIPT["default"]), "default"


def substitute(obj, groups):
    """Replace {1}, {2}, ... in every string of obj by the regex groups."""
    if isinstance(obj, str):
        for n, g in enumerate(groups, 1):
            obj = obj.replace("{%d}" % n, g or "")
        return obj
    if isinstance(obj, list):
        return [substitute(x, groups) for x in obj]
    if isinstance(obj, dict):
        return {k: substitute(v, groups) for k, v in obj.items()}
    return obj


def normalize_blocks(content):
    out = []
    for b in content:
        b = dict(b)
        if b.get("type") == "tool_use":
            b.setdefault("id", "toolu_" + uuid.uuid4().hex[:24])
            b.setdefault("input", {})
        elif b.get("type") == "thinking":
            b.setdefault("signature", "fake-signature")
        out.append(b)
    return out


def approx_tokens(body):
    try:
        return max(1, len(json.dumps(body.get("messages", []))) // 4)
    except Exception:
        return 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic/1"
    state: State = None  # set by main

    def log_message(self, fmt, *args):  # silence default logging; we log ourselves
        pass

    # --- plumbing -------------------------------------------------------------------------
    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self.read_chunked()
        try:
            return raw, (json.loads(raw) if raw else None)
        except ValueError:
            return raw, None

    def read_chunked(self):
        data = b""
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def send_json(self, status, obj, extra_headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:16])
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def rec(self, body, kind, what, last_user=None):
        hdrs = {
            k.lower(): v
            for k, v in self.headers.items()
            if k.lower() not in ("authorization", "x-api-key")
        }
        self.state.record(
            {
                "ts": time.time(),
                "method": self.command,
                "path": self.path,
                "headers": hdrs,
                "body": body,
                "kind": kind,
                "answer": what,
                "last_user": last_user,
            }
        )

    # --- verbs ----------------------------------------------------------------------------
    def do_GET(self):
        self.other()

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self):
        self.other()

    def do_DELETE(self):
        self.other()

    def do_PATCH(self):
        self.other()

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path.rstrip("/") == "/v1/messages":
            return self.messages()
        if path.rstrip("/") == "/v1/messages/count_tokens":
            _, body = self.read_body()
            n = approx_tokens(body or {})
            log(f"POST {self.path} -> 200 (count_tokens {n})")
            self.rec(body, "other", "count_tokens")
            return self.send_json(200, {"input_tokens": n})
        self.other()

    def other(self):
        _, body = self.read_body() if self.command in ("POST", "PUT", "PATCH") else (b"", None)
        path = self.path.split("?", 1)[0]
        self.rec(body, "other", "unknown")
        if path.startswith("/v1/models"):
            log(f"{self.command} {self.path} -> 200 (models)")
            return self.send_json(
                200,
                {
                    "data": [
                        {
                            "type": "model",
                            "id": "claude-fake-1",
                            "display_name": "Fake",
                            "created_at": "2025-01-01T00:00:00Z",
                        }
                    ],
                    "has_more": False,
                    "first_id": "claude-fake-1",
                    "last_id": "claude-fake-1",
                },
            )
        # Anything else: harmless empty JSON object.
        log(f"{self.command} {self.path} -> 200 (unknown endpoint, empty object)")
        self.send_json(200, {})

    def messages(self):
        raw, body = self.read_body()
        if not isinstance(body, dict):
            log(f"POST {self.path} -> 400 (bad json)")
            return self.send_json(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad json"}}
            )
        is_main = bool(body.get("tools"))
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        last_user = summarize_user(users[-1] if users else None)
        resp, what = self.state.pick(body, is_main)
        kind = "main" if is_main else "side"
        self.rec(body, kind, what, last_user)
        stream = bool(body.get("stream"))
        model = body.get("model") or "claude-fake-1"
        log(
            f"POST {self.path} -> {kind} model={model} stream={stream} "
            f"tool_results={len(last_user['tool_results'])} answer={what}"
        )
        if resp.get("delay"):
            time.sleep(float(resp["delay"]))
        if resp.get("status"):
            return self.send_json(
                int(resp["status"]),
                {"type": "error", "error": resp.get("error") or {"type": "api_error", "message": "scripted"}},
            )
        blocks = normalize_blocks(resp.get("content") or [{"type": "text", "text": "ok"}])
        stop = resp.get("stop_reason") or (
            "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        )
        in_tok = approx_tokens(body)
        out_tok = max(1, sum(len(json.dumps(b)) for b in blocks) // 4)
        msg_id = "msg_fake_" + uuid.uuid4().hex[:20]
        usage = {
            "input_tokens": in_tok,
            "output_tokens": out_tok,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if not stream:
            return self.send_json(
                200,
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
        self.stream(msg_id, model, blocks, stop, usage, resp)

    def stream(self, msg_id, model, blocks, stop, usage, resp):
        chunk_delay = float(resp.get("chunk_delay", 0))
        chunk_size = max(1, int(resp.get("chunk_size", 8)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:16])
        self.end_headers()

        def ev(name, data):
            payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.wfile.flush()
            if chunk_delay:
                time.sleep(chunk_delay)

        try:
            ev(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": dict(usage, output_tokens=1),
                    },
                },
            )
            ev("ping", {"type": "ping"})
            for i, b in enumerate(blocks):
                t = b["type"]
                if t == "text":
                    ev("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": {"type": "text", "text": ""}})
                    s = b.get("text", "")
                    for j in range(0, len(s), chunk_size) or [0]:
                        ev("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "text_delta", "text": s[j:j + chunk_size]}})
                elif t == "tool_use":
                    ev("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": {"type": "tool_use", "id": b["id"],
                                                                 "name": b["name"], "input": {}}})
                    js = json.dumps(b.get("input", {}))
                    # Split the JSON in two partial deltas, as the real API does.
                    mid = len(js) // 2
                    for part in (js[:mid], js[mid:]):
                        ev("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "input_json_delta", "partial_json": part}})
                elif t == "thinking":
                    ev("content_block_start", {"type": "content_block_start", "index": i,
                                               "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
                    ev("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "thinking_delta", "thinking": b.get("thinking", "")}})
                    ev("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "signature_delta", "signature": b["signature"]}})
                else:
                    continue
                ev("content_block_stop", {"type": "content_block_stop", "index": i})
            ev("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": stop, "stop_sequence": None},
                                 "usage": {"output_tokens": usage["output_tokens"]}})
            ev("message_stop", {"type": "message_stop"})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log("client went away mid-stream (interrupted?)")
            self.close_connection = True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", help="JSON script file (see module docstring)")
    ap.add_argument("--record", help="append every request as JSON lines to this file")
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="exit when stdin closes (start it with a pipe: it dies with its parent)")
    args = ap.parse_args(argv)
    if args.exit_on_stdin_eof:
        def watch():
            sys.stdin.buffer.read()
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()

    script = DEFAULT_SCRIPT
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)
    Handler.state = State(script, args.record)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    print(port, flush=True)
    log(f"listening on http://{args.host}:{port}")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
