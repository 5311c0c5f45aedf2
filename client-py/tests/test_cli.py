"""The `mitzo` command: output and exit codes (0 ok, 1 server said no,
2 usage, 3 unreachable or no token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from conftest import Mitzod, free_port, skip_unless_required

MITZO = str(Path(sys.executable).parent / "mitzo")


def run(
    *args: str,
    env: Optional[dict[str, str]] = None,
    module: bool = False,
    stdin: Optional[str] = None,
    cwd: Optional[Path] = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mitzo_client", *args] if module else [MITZO, *args]
    return subprocess.run(
        cmd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        cwd=cwd,
    )


def test_console_script_and_module_both_work(server: Mitzod) -> None:
    env = {"MITZO_URL": server.url, "MITZO_TOKEN_FILE": str(server.token_file)}
    for module in (False, True):
        out = run("version", env=env, module=module)
        assert out.returncode == 0, out.stderr
        assert set(json.loads(out.stdout)) == {"version", "commit"}


@pytest.mark.parametrize(
    "args",
    [[], ["bogus"], ["task"], ["task", "set"], ["session-start"], ["signal", "resolve", "--type", "gh_ci"],
     ["task", "set", "--json", "{not json"], ["--timeout", "abc", "version"]],
    ids=["nothing", "unknown", "task-no-action", "task-set-empty", "no-source", "no-status",
         "bad-json", "bad-timeout"],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    out = run(*args, env={"MITZO_INTERNAL_TOKEN": "a" * 64})
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout == ""


def test_unreachable_exits_3() -> None:
    port = free_port()
    out = run("--url", f"http://127.0.0.1:{port}", "--timeout", "0.5", "task", "status",
              env={"MITZO_INTERNAL_TOKEN": "a" * 64})
    assert out.returncode == 3, out.stderr
    assert f"127.0.0.1:{port}" in out.stderr
    assert "systemctl status mitzod.socket" in out.stderr


def test_no_token_exits_3(tmp_path: Path) -> None:
    if Path("/var/lib/mitzo/internal-token").exists():
        skip_unless_required("this machine has a system token file")
    out = run("task", "status")
    assert out.returncode == 3
    assert "MITZO_TOKEN_FILE" in out.stderr


def test_server_said_no_exits_1(server: Mitzod) -> None:
    out = run("task", "status", env={"MITZO_URL": server.url, "MITZO_INTERNAL_TOKEN": "0" * 64,
                                     "MITZO_SESSION_ID": "x"})
    assert out.returncode == 1, out.stderr
    assert "401" in out.stderr


def test_token_path(server: Mitzod, tmp_path: Path, clean_client_env: Path) -> None:
    out = run("token", "path", env={"MITZO_TOKEN_FILE": str(server.token_file)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(server.token_file)
    home_tok = clean_client_env / ".mitzo" / "internal-token"
    home_tok.parent.mkdir()
    home_tok.write_text("a" * 64)
    home_tok.chmod(0o600)
    out = run("token", "path")
    assert out.stdout.strip() == str(home_tok)


def test_token_path_nothing_found_exits_3(tmp_path: Path) -> None:
    if Path("/var/lib/mitzo/internal-token").exists():
        skip_unless_required("this machine has a system token file")
    out = run("token", "path", env={"MITZO_TOKEN_FILE": str(tmp_path / "missing")})
    assert out.returncode == 3
    assert str(tmp_path / "missing") in out.stderr


def test_session_start_prints_cwd_for_the_hook(server_factory, shared_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    from conftest import git_repo

    repo = git_repo(shared_tmp / "repo")
    server = server_factory(f'repo_path = "{repo}"\n')
    env = {"MITZO_URL": server.url, "MITZO_TOKEN_FILE": str(server.token_file)}
    out = run("session-start", "--source", "claude-code", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert list(doc) == ["cwd"]
    assert Path(doc["cwd"]).is_dir()
    # The worktree is a checkout of the configured repo.
    assert (Path(doc["cwd"]) / "README.md").read_text() == "hello\n"


def test_task_commands(server_factory, shared_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    from mitzo_client import Client

    from conftest import git_repo

    repo = git_repo(shared_tmp / "repo")
    server = server_factory(f'repo_path = "{repo}"\n')
    sid = Client(url=server.url, token=server.read_token()).create_session("cli-test")["sessionId"]
    env = {"MITZO_URL": server.url, "MITZO_TOKEN_FILE": str(server.token_file), "MITZO_SESSION_ID": sid}
    for args in (
        ["task", "set", "first", "second"],
        ["task", "artifact", "pr", "https://example.invalid/1"],
        ["task", "block", "waiting"],
        ["task", "complete", "first is done"],
    ):
        out = run(*args, env=env)
        assert out.returncode == 0, (args, out.stderr)
        json.loads(out.stdout)
    out = run("task", "status", env=env)
    assert out.returncode == 0, out.stderr
    assert "second" in out.stdout
    out = run("signal", "resolve", "--type", "gh_ci", "--status", "success", "--repo", "o/r", "--pr", "3", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"] is True


def test_worktree_hooks_follow_claude_codes_contract(server_factory, shared_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    """WorktreeCreate gets {"cwd", "name", ...} on stdin and must print the
    worktree's absolute path alone; WorktreeRemove gets {"worktree_path"}."""
    from conftest import git_repo

    repo = git_repo(shared_tmp / "repo")
    (repo / "sub").mkdir()
    elsewhere = git_repo(shared_tmp / "elsewhere")
    server = server_factory(f'repo_path = "{repo}"\n')
    env = {"MITZO_URL": server.url, "MITZO_TOKEN_FILE": str(server.token_file)}
    payload = {
        "session_id": "0f0e0d0c-0000-4000-8000-000000000001",
        "transcript_path": "/nonexistent.jsonl",
        "cwd": str(repo / "sub"),
        "hook_event_name": "WorktreeCreate",
        "name": "feature-x",
    }
    out = run("hook", "worktree-create", env=env, stdin=json.dumps(payload))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    wt = Path(lines[0])
    assert wt.is_absolute() and wt.is_dir()
    assert wt.resolve() != repo.resolve()
    assert (wt / "README.md").read_text() == "hello\n", "a checkout of the repo Claude ran in"

    remove = {"hook_event_name": "WorktreeRemove", "cwd": str(repo), "worktree_path": str(wt)}
    out = run("hook", "worktree-remove", env=env, stdin=json.dumps(remove))
    assert out.returncode == 0, out.stderr
    assert not wt.exists()
    # Removing it again, or a directory mitzod did not make, is refused.
    out = run("hook", "worktree-remove", env=env, stdin=json.dumps(remove))
    assert out.returncode == 1
    out = run("hook", "worktree-remove", env=env, stdin=json.dumps({**remove, "worktree_path": str(repo)}))
    assert out.returncode == 1 and repo.is_dir()

    # A repo the server is not configured with is refused, with the reason.
    out = run("hook", "worktree-create", env=env, stdin=json.dumps({**payload, "cwd": str(elsewhere)}))
    assert out.returncode == 1
    assert "not a repo mitzod is configured with" in out.stderr
    assert out.stdout == ""
    # Outside any repo: a usage error.
    out = run("hook", "worktree-create", env=env, stdin=json.dumps({**payload, "cwd": "/"}))
    assert out.returncode == 2 and "not inside a git repository" in out.stderr


def test_session_start_hook_registers_the_session(server_factory, shared_tmp: Path) -> None:  # type: ignore[no-untyped-def]
    from mitzo_client import Client

    from conftest import git_repo

    repo = git_repo(shared_tmp / "repo")
    server = server_factory(f'repo_path = "{repo}"\n')
    env = {"MITZO_URL": server.url, "MITZO_TOKEN_FILE": str(server.token_file)}
    payload = {"session_id": "abc", "cwd": str(repo), "hook_event_name": "SessionStart", "source": "startup"}
    out = run("hook", "session-start", "--context", "Report tasks with `mitzo task`.", env=env, stdin=json.dumps(payload))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    ctx = doc["hookSpecificOutput"]["additionalContext"]
    assert doc["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert "Report tasks" in ctx
    sid = ctx.split("mitzod session ")[1].split()[0]
    meta = Client(url=server.url, token=server.read_token()).session_meta(sid)
    assert meta["source"] == "claude-code"
    assert meta["isolation"] is False
