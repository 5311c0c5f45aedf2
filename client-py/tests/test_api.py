"""Sessions, repos, the task board, the agent task tools and signals
(the routes of issues 4 and 5), against the real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mitzo_client import AuthError, Client, MitzoError, NotFoundError

from conftest import Mitzod, wait_for_file


def tasks_of(listing: Any) -> list[dict[str, Any]]:
    if isinstance(listing, dict) and "tasks" in listing:
        listing = listing["tasks"]
    assert isinstance(listing, list), listing
    return listing


class Env:
    def __init__(self, server: Mitzod, repo: Path, other: Path) -> None:
        self.server = server
        self.repo = repo
        self.other = other
        self.internal = Client(url=server.url, token=server.read_token(), timeout=30.0)


@pytest.fixture
def env(repos_server: tuple[Mitzod, Path, Path]) -> Env:
    return Env(*repos_server)


def new_session(c: Client, **kw: Any) -> dict[str, Any]:
    s = c.create_session("python-tests", **kw)
    assert isinstance(s["sessionId"], str) and s["sessionId"]
    assert isinstance(s["worktrees"]["primary"]["path"], str)
    return s


def test_session_lifecycle(env: Env) -> None:
    c = env.internal
    s = new_session(c, summary="from the python client", mode="ask")
    sid = s["sessionId"]
    assert Path(s["worktrees"]["primary"]["path"]).is_dir()
    assert isinstance(s["isolation"], bool)
    assert s["headless"] is False
    listed = c.list_sessions(offset=0, limit=100)
    assert sid in [x["id"] for x in listed["sessions"]]
    assert isinstance(listed["hasMore"], bool)
    assert isinstance(c.session_meta(sid), dict)
    c.session_events(sid, after=0)
    c.delete_session(sid)
    assert sid not in [x["id"] for x in c.list_sessions()["sessions"]]


def test_unknown_session_is_not_found(env: Env) -> None:
    with pytest.raises(NotFoundError):
        env.internal.session_meta("2026-01-01-000000000000")
    # A malformed id is a bad request that names the expected form.
    with pytest.raises(MitzoError) as bad:
        env.internal.session_meta("no-such-session")
    assert bad.value.status == 400
    assert "YYYY-MM-DD" in str(bad.value.error)


def test_repos_and_open_repo(env: Env) -> None:
    c = env.internal
    repos = c.repos()
    names = {r["name"]: r["path"] for r in repos}
    assert Path(names["other"]).resolve() == env.other.resolve()
    sid = new_session(c)["sessionId"]
    first = c.open_repo("other", sid)
    assert first["repoName"] == "other"
    assert first["created"] is True
    assert Path(first["path"]).is_dir()
    again = c.open_repo("other", sid)
    assert again["created"] is False
    assert again["path"] == first["path"]


def test_task_board(env: Env) -> None:
    c = env.internal
    t = c.create_task("write the client", description="pyo3 + maturin", priority=2)
    tid = t["id"]
    assert t["title"] == "write the client"
    assert t["status"] == "todo"
    assert tid in [x["id"] for x in tasks_of(c.list_tasks())]
    assert c.get_task(tid)["description"] == "pyo3 + maturin"
    u = c.update_task(tid, title="write the client well", status="review")
    assert u["title"] == "write the client well"
    assert u["status"] == "review"
    assert c.approve_task(tid) is not None
    assert c.get_task(tid)["status"] == "done"

    t2 = c.create_task("second")
    c.update_task(t2["id"], status="review")
    c.reject_task(t2["id"], "needs tests")
    assert c.get_task(t2["id"])["status"] not in ("review", "done")

    c.delete_task(tid)
    with pytest.raises(NotFoundError):
        c.get_task(tid)
    with pytest.raises(MitzoError) as e:
        c.update_task(t2["id"], status="bogus")
    assert e.value.status == 400


def test_task_tools_with_internal_token(env: Env) -> None:
    sid = new_session(env.internal)["sessionId"]
    c = Client(url=env.server.url, token=env.server.read_token(), session_id=sid)
    c.set_tasks([{"title": "alpha"}, {"title": "beta", "description": "b", "priority": 1}])
    status = json.dumps(c.task_status())
    assert "alpha" in status and "beta" in status
    c.add_artifact("pr_url", "https://example.invalid/pr/1")
    c.block_task("waiting for review")
    c.complete_task("alpha is done")
    # The task board sees the session's tasks.
    titles = [t["title"] for t in tasks_of(env.internal.list_tasks())]
    assert "alpha" in titles and "beta" in titles


def test_resolve_signal(env: Env) -> None:
    r = env.internal.resolve_signal(
        "gh_ci", "success", repo="owner/repo", pr=7, pr_url="https://example.invalid/pr/7",
        artifacts={"run": "1"},
    )
    assert r["ok"] is True
    assert isinstance(r["matched"], int)


def agent_credentials(session: dict[str, Any]) -> tuple[str, str]:
    """The fake agent writes MITZO_SESSION_ID and MITZO_SESSION_TOKEN into
    its worktree when mitzod spawns it."""
    text = wait_for_file(Path(session["worktrees"]["primary"]["path"]) / ".mitzo-test-session")
    sid, token = text.splitlines()[:2]
    return sid, token


def test_session_token_cannot_reach_another_sessions_tasks(env: Env) -> None:
    a = new_session(env.internal, initial_prompt="hello")
    b = new_session(env.internal, initial_prompt="hello")
    a_sid, a_token = agent_credentials(a)
    b_sid, b_token = agent_credentials(b)
    assert a_sid == a["sessionId"] and b_sid == b["sessionId"]
    assert a_token and b_token and a_token != b_token

    env.internal.set_tasks([{"title": "secret-of-b"}], session_id=b_sid)
    as_a = Client(url=env.server.url, token=a_token)
    assert as_a.token_source == "argument"
    as_a.set_tasks([{"title": "task-of-a"}])
    own = json.dumps(as_a.task_status())
    assert "task-of-a" in own and "secret-of-b" not in own

    # Naming the other session does not get there: refused, or still its own.
    try:
        seen = json.dumps(as_a.task_status(session_id=b_sid))
        assert "secret-of-b" not in seen
    except AuthError:
        pass
    try:
        as_a.set_tasks([{"title": "intrusion"}], session_id=b_sid)
    except AuthError:
        pass
    b_status = json.dumps(env.internal.task_status(session_id=b_sid))
    assert "secret-of-b" in b_status and "intrusion" not in b_status

    # The task board itself is for the owner and the internal token.
    with pytest.raises(AuthError) as e:
        as_a.list_tasks()
    assert e.value.status == 403


def test_session_token_from_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    s = new_session(env.internal, initial_prompt="hello")
    sid, token = agent_credentials(s)
    monkeypatch.setenv("MITZO_SESSION_TOKEN", token)
    monkeypatch.setenv("MITZO_SESSION_ID", sid)
    monkeypatch.setenv("MITZO_URL", env.server.url)
    c = Client()
    assert c.token_source == "env:MITZO_SESSION_TOKEN"
    c.set_tasks([{"title": "from-env"}])
    assert "from-env" in json.dumps(c.task_status())
