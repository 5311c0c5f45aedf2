#!/usr/bin/env python3
"""Self-test of the e2e groundwork: the real Claude Code CLI offline against fake_anthropic.py,
and server/tests/fixtures/fake_agent.py, including a check that the fake agent's messages use
the real CLI's field names.

    python3 tests/e2e/selftest.py            # unittest; the real-CLI tests are skipped when
                                             # tests/e2e/node_modules is not installed (npm ci),
                                             # and fail instead when MITZO_REQUIRE_E2E=1 (CI)

Standard library only. About 15 s with the real CLI installed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from drive_claude import Driver, base_command, claude_path, offline_env, start_fake  # noqa: E402

FAKE_AGENT = os.path.join(HERE, "..", "..", "server", "tests", "fixtures", "fake_agent.py")
SCENARIOS = os.path.join(HERE, "scripts", "scenarios.json")
HAVE_CLI = os.path.exists(claude_path()) and os.path.getsize(os.path.realpath(claude_path())) > 1_000_000
# CI sets MITZO_REQUIRE_E2E=1: a missing CLI is then a failure, not a skip.
REQUIRE_CLI = os.environ.get("MITZO_REQUIRE_E2E") == "1"


def converse(d, prompts, decision="allow", timeout=30, interrupt_on=None):
    """Send initialize + prompts (one per result); answer can_use_tool; return all messages."""
    msgs = []
    d.control({"subtype": "initialize", "hooks": None})
    prompts = list(prompts)
    d.user(prompts.pop(0))
    while True:
        m = d.recv(timeout)
        if m == "timeout":
            raise AssertionError("no output for %ss; got %s" % (timeout, [x.get("type") for x in msgs]))
        if m is None:
            break
        msgs.append(m)
        t = m.get("type")
        if t == "control_request" and m["request"]["subtype"] == "can_use_tool":
            if interrupt_on == "can_use_tool":
                d.control({"subtype": "interrupt"})
                interrupt_on = None
            elif decision == "allow":
                d.answer(m["request_id"], {"behavior": "allow", "updatedInput": m["request"]["input"]})
            else:
                d.answer(m["request_id"], {"behavior": "deny", "message": "no thanks"})
        elif t == "control_request":
            d.answer(m["request_id"], error="Unsupported control request subtype: " + m["request"]["subtype"])
        elif t == "result":
            if prompts:
                d.user(prompts.pop(0), m["session_id"])
            else:
                d.close_stdin()
    d.rc = d.wait(15)
    return msgs


def of(msgs, type_, subtype=None):
    return [m for m in msgs if m.get("type") == type_ and (subtype is None or m.get("subtype") == subtype)]


def tool_results(msgs):
    out = []
    for m in of(msgs, "user"):
        for b in m["message"]["content"]:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                out.append(b)
    return out


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="e2e-selftest-")
        self.home = os.path.join(self.tmp, "home")
        self.cwd = os.path.join(self.tmp, "work")
        os.makedirs(self.home)
        os.makedirs(self.cwd)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


class FakeAgentTests(Base):
    def agent(self, *extra, env=None):
        cmd = [sys.executable, FAKE_AGENT] + base_command(claude="x", extra_args=extra)[1:]
        e = offline_env(self.home, "http://127.0.0.1:9", env)
        return Driver(cmd, e, self.cwd, echo=False)

    def test_text(self):
        msgs = converse(self.agent(), ["text:hello"])
        self.assertEqual(of(msgs, "system", "init")[0]["cwd"], os.path.realpath(self.cwd))
        self.assertEqual(of(msgs, "result")[0]["result"], "hello")

    def test_bash_allow_runs_in_cwd(self):
        d = self.agent()
        msgs = converse(d, ["tool:Bash:echo hi > made.txt && echo wrote"])
        self.assertEqual(tool_results(msgs)[0]["content"], "wrote")
        self.assertTrue(os.path.exists(os.path.join(self.cwd, "made.txt")))
        self.assertEqual(d.rc, 0)

    def test_deny(self):
        msgs = converse(self.agent(), ["tool:Write:out.txt"], decision="deny")
        tr = tool_results(msgs)[0]
        self.assertTrue(tr["is_error"])
        self.assertEqual(tr["content"], "no thanks")
        self.assertFalse(os.path.exists(os.path.join(self.cwd, "out.txt")))
        self.assertEqual(len(of(msgs, "result")[0]["permission_denials"]), 1)

    def test_interrupt_pending_permission(self):
        d = self.agent()
        msgs = converse(d, ["tool:Bash:touch x"], interrupt_on="can_use_tool")
        self.assertEqual(len(of(msgs, "control_cancel_request")), 1)
        self.assertEqual(of(msgs, "result")[0]["subtype"], "error_during_execution")
        self.assertEqual(d.rc, 1)

    def test_resume(self):
        msgs = converse(self.agent(), ["text:one"])
        sid = of(msgs, "result")[0]["session_id"]
        msgs = converse(self.agent(f"--resume={sid}"), ["history"])
        self.assertEqual(of(msgs, "system", "init")[0]["session_id"], sid)
        self.assertEqual(of(msgs, "result")[0]["result"], "text:one\nhistory")

    def test_env(self):
        msgs = converse(self.agent(env={"MITZO_SESSION_ID": "s-1", "MITZO_URL": "http://127.0.0.1:1"}), ["env"])
        self.assertIn("MITZO_SESSION_ID=s-1", of(msgs, "result")[0]["result"])

    def test_crash(self):
        d = self.agent()
        converse(d, ["crash"])
        self.assertEqual(d.rc, 3)
        self.assertIn("fake agent crashing", "\n".join(d.stderr_lines))

    def test_unsupported_from_agent_side(self):
        msgs = converse(self.agent(), ["unsupported:mcp_message"])
        self.assertIn("got error", of(msgs, "result")[0]["result"])

    def test_script(self):
        script = os.path.join(self.tmp, "s.json")
        with open(script, "w") as f:
            json.dump({"turns": [[{"text": "a"}, {"tool": "mcp__x__y", "input": {"q": 1}, "result": "r"},
                                  {"text": "b"}]]}, f)
        msgs = converse(self.agent(env={"FAKE_AGENT_SCRIPT": script}), ["anything"])
        req = of(msgs, "control_request")[0]["request"]
        self.assertEqual(req["tool_name"], "mcp__x__y")
        self.assertEqual(tool_results(msgs)[0]["content"], "r")
        self.assertEqual(of(msgs, "result")[0]["result"], "b")


@unittest.skipUnless(HAVE_CLI or REQUIRE_CLI, "real CLI not installed (cd tests/e2e && npm ci)")
class RealCliTests(Base):
    @classmethod
    def setUpClass(cls):
        if not HAVE_CLI:
            raise AssertionError(
                "MITZO_REQUIRE_E2E=1 but the real CLI is not installed at %s (cd tests/e2e && npm ci)"
                % claude_path()
            )
        cls.rec_dir = tempfile.mkdtemp(prefix="e2e-rec-")
        cls.record = os.path.join(cls.rec_dir, "requests.jsonl")
        cls.fake, cls.base_url = start_fake(SCENARIOS, cls.record)

    @classmethod
    def tearDownClass(cls):
        cls.fake.terminate()
        cls.fake.wait()
        cls.fake.stdin.close()
        shutil.rmtree(cls.rec_dir, ignore_errors=True)

    def cli(self, *extra):
        return Driver(base_command(extra_args=extra), offline_env(self.home, self.base_url), self.cwd, echo=False)

    def test_allow_runs_bash(self):
        d = self.cli()
        msgs = converse(d, ["RUN: echo hi > made.txt && echo wrote"])
        req = of(msgs, "control_request")[0]["request"]
        self.assertEqual(req["subtype"], "can_use_tool")
        self.assertEqual(req["tool_name"], "Bash")
        self.assertEqual(tool_results(msgs)[0]["content"], "wrote")
        self.assertTrue(os.path.exists(os.path.join(self.cwd, "made.txt")))
        self.assertEqual(of(msgs, "result")[0]["result"], "done")
        self.assertEqual(d.rc, 0)

    def test_deny(self):
        msgs = converse(self.cli(), ["RUN: touch denied.txt"], decision="deny")
        tr = tool_results(msgs)[0]
        self.assertTrue(tr["is_error"])
        self.assertEqual(tr["content"], "no thanks")
        self.assertFalse(os.path.exists(os.path.join(self.cwd, "denied.txt")))
        # and the model saw the denial as the tool_result
        with open(self.record) as f:
            seen = [json.loads(line) for line in f]
        self.assertTrue(any(r["last_user"] and any(t["content"] == "no thanks" for t in r["last_user"]["tool_results"])
                            for r in seen))

    def test_resume_and_unknown_request(self):
        d = self.cli()
        d.control({"subtype": "definitely_not_a_subtype"})
        msgs = converse(d, ["TEXT: first"])
        errs = [m for m in of(msgs, "control_response") if m["response"]["subtype"] == "error"]
        self.assertEqual(errs[0]["response"]["error_code"], "unsupported_request")
        sid = of(msgs, "system", "init")[0]["session_id"]
        msgs = converse(self.cli(f"--resume={sid}"), ["TEXT: second"])
        self.assertEqual(of(msgs, "system", "init")[0]["session_id"], sid)
        self.assertEqual(of(msgs, "result")[0]["result"], "second")

    def test_fake_agent_uses_real_field_names(self):
        real = converse(self.cli(), ["RUN: touch a.txt"])
        agent_cmd = [sys.executable, FAKE_AGENT] + base_command(claude="x")[1:]
        fake = converse(Driver(agent_cmd, offline_env(self.home, "http://127.0.0.1:9"), self.cwd, echo=False),
                        ["tool:Bash:touch b.txt"])

        def shapes(msgs):
            out = {}
            for m in msgs:
                key = (m.get("type"), m.get("subtype") or (m.get("request") or {}).get("subtype")
                       or (m.get("response") or {}).get("subtype"))
                keys = set(m)
                if isinstance(m.get("message"), dict):
                    keys |= {"message." + k for k in m["message"]}
                if isinstance(m.get("request"), dict):
                    keys |= {"request." + k for k in m["request"]}
                out.setdefault(key, set()).update(keys)
            return out

        r, f = shapes(real), shapes(fake)
        self.assertEqual(set(r), set(f), "message kinds differ")
        for k in f:
            self.assertLessEqual(f[k], r[k], f"fake agent {k} has fields the real CLI has not: {f[k] - r[k]}")
        for k, needed in {("system", "init"): {"session_id", "cwd", "model", "tools", "permissionMode"},
                          ("result", "success"): {"session_id", "is_error", "result", "num_turns", "usage",
                                                  "total_cost_usd", "duration_ms", "permission_denials"},
                          ("control_request", "can_use_tool"): {"request_id", "request.tool_name", "request.input",
                                                                "request.tool_use_id",
                                                                "request.permission_suggestions"},
                          ("assistant", None): {"message.content", "message.id", "session_id", "uuid",
                                                "parent_tool_use_id"}}.items():
            self.assertLessEqual(needed, f[k], f"fake agent {k} lacks {needed - f[k]}")
            self.assertLessEqual(needed, r[k], f"real CLI {k} lacks {needed - r[k]} (protocol changed?)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
