"""Server and client agree on every type: every public ``Client`` method is
called with every parameter it documents, against the real server, and each
answer is checked against the ``TypedDict`` the stub promises for it (keys
present, no keys the type does not know, value types, ``Literal`` values)."""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Union, get_args, get_origin

import pytest

import mitzo_client
from mitzo_client import BadRequestError, Client, MitzoError, types

from conftest import Mitzod, commit_in_checkout

if sys.version_info >= (3, 11):
    from typing import NotRequired, Required
else:  # pragma: no cover
    from typing_extensions import NotRequired, Required


def check(value: Any, hint: Any, where: str = "answer") -> None:
    """Fail with the path to the first value that does not fit ``hint``."""
    origin = get_origin(hint)
    if hint is Any:
        return
    if origin in (NotRequired, Required):
        return check(value, get_args(hint)[0], where)
    if origin is Union:
        errors = []
        for arm in get_args(hint):
            try:
                check(value, arm, where)
                return
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{where}: {value!r} fits none of {hint}: {errors}")
    if hint is type(None):
        assert value is None, f"{where}: expected None, got {value!r}"
        return
    if origin is Literal:
        assert value in get_args(hint), f"{where}: {value!r} not in {get_args(hint)}"
        return
    if origin in (list, List):
        assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
        (item,) = get_args(hint) or (Any,)
        for i, v in enumerate(value):
            check(v, item, f"{where}[{i}]")
        return
    if origin in (dict, Dict):
        assert isinstance(value, dict), f"{where}: expected a dict, got {value!r}"
        k, v = get_args(hint) or (Any, Any)
        for key, val in value.items():
            check(key, k, f"{where} key")
            check(val, v, f"{where}[{key!r}]")
        return
    if isinstance(hint, type) and typing.is_typeddict(hint):
        assert isinstance(value, dict), f"{where}: expected {hint.__name__}, got {value!r}"
        hints = typing.get_type_hints(hint, include_extras=True)
        required = hint.__required_keys__  # type: ignore[attr-defined]
        missing = required - value.keys()
        assert not missing, f"{where}: {hint.__name__} lacks {sorted(missing)}: {value!r}"
        unknown = value.keys() - hints.keys()
        assert not unknown, f"{where}: keys {sorted(unknown)} are not in {hint.__name__}"
        for key, val in value.items():
            check(val, hints[key], f"{where}.{key}")
        return
    if hint is float:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r}"
        return
    if hint is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an int"
        return
    assert isinstance(value, hint), f"{where}: {value!r} is not a {hint}"


def promised(method: str) -> Any:
    """The return type the stub (``_native.pyi``) declares for ``method``."""
    import ast

    stub = Path(mitzo_client.__file__).with_name("_native.pyi").read_text()
    tree = ast.parse(stub)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Client")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method)
    assert fn.returns is not None
    ns: Dict[str, Any] = {**vars(types), **vars(typing)}
    return eval(ast.unparse(fn.returns), ns)  # noqa: S307 - our own stub file


class Recorder:
    """Calls a client method, checks the answer against the stub, and remembers
    which methods and keyword parameters were exercised."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.called: Dict[str, set[str]] = {}

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn: Callable[..., Any] = getattr(self.client, method)
        answer = fn(*args, **kwargs)
        check(answer, promised(method), method)
        names = list(inspect.signature(getattr(Client, method)).parameters)[1:]
        used = set(kwargs) | set(names[: len(args)])
        self.called.setdefault(method, set()).update(used)
        return answer


@pytest.fixture
def setup(repos_server: tuple[Mitzod, Path, Path]) -> tuple[Mitzod, Path, Path]:
    return repos_server


def test_every_method_with_every_parameter(setup: tuple[Mitzod, Path, Path]) -> None:
    server, repo, other = setup
    with Client(url=server.url, token=server.read_token(), timeout=30.0, session_id=None) as client:
        call = Recorder(client)
        call("version")
        call("health")
        assert call("request", "GET", "/api/tasks", None, auth=True, client_id=None) == {"tasks": []}

        # sessions
        created = call(
            "create_session",
            "contract",
            initial_prompt="hello",
            summary="every parameter",
            mode="agent",
            model="claude-test",
            isolation=True,
            repo="other",
        )
        sid = created["sessionId"]
        assert created["headless"] is True and created["isolation"] is True
        assert created["repo"] == "other"
        plain = call("create_session", "contract", isolation=False)
        assert Path(plain["worktrees"]["primary"]["path"]).resolve() == repo.resolve()
        assert plain["repo"] == repo.name
        listing = call("list_sessions", offset=0, limit=100)
        assert {sid, plain["sessionId"]} <= {s["id"] for s in listing["sessions"]}
        call("active_sessions")
        meta = call("session_meta", sid)
        assert meta["mode"] == "agent" and meta["model"] == "claude-test"
        assert meta["summary"] == "every parameter"
        page = call("session_events", sid, after=0, limit=1)
        assert len(page["events"]) <= 1
        back = call("session_events", sid, limit=1, before=page["lastSeq"] + 1)
        assert len(back["events"]) <= 1
        call("delete_session", plain["sessionId"])

        # repos
        listed = {r["name"]: (r["path"], r["default"]) for r in call("repos")}
        assert listed == {"other": (str(other), False), repo.name: (str(repo), True)}
        wt_id = "2026-01-02-00000000c0de"
        opened = call("open_repo", "other", wt_id)
        assert opened["worktrees"] == {"other": opened["path"]}
        by_path = call("open_repo", session_id=wt_id, repo_path=str(other))
        assert by_path["path"] == opened["path"] and by_path["created"] is False
        fresh = call("open_repo", repo_path=str(repo))
        assert Path(fresh["path"]).is_dir()
        closed = call("close_worktree", fresh["path"])
        assert closed["ok"] is True and not Path(fresh["path"]).exists()

        # review and merge: the owner's, with a token from a login
        checkout = Path(created["worktrees"]["primary"]["path"])
        sha = commit_in_checkout(checkout, {"CONTRACT": "work\n"}, "Contract work")
        with Client(url=server.url, token=server.owner_token(), timeout=30.0) as owner_client:
            owner = Recorder(owner_client)
            reviewed = owner("review", sid)
            assert [c["sha"] for c in reviewed["commits"]] == [sha]
            merged = owner("merge", session_id=sid)
            assert merged["head"] == sha and merged["target"] == "main"
        for name, used in owner.called.items():
            call.called.setdefault(name, set()).update(used)

        # task board
        t = call(
            "create_task",
            "contract task",
            description="all fields",
            priority=7,
            status="in_progress",
            session_id=sid,
            artifacts={"pr_url": "https://example.invalid/pr/1"},
        )
        assert t["priority"] == 7 and t["sessionId"] == sid
        assert call("list_tasks", status="in_progress", session_id=sid)["tasks"] == [t]
        assert call("get_task", t["id"]) == t
        u = call(
            "update_task",
            t["id"],
            title="renamed",
            description="changed",
            status="review",
            priority=8,
            session_id=sid,
            artifacts={"pr_url": None, "note": "kept"},
        )
        assert u["artifacts"] == {"note": "kept"} and u["status"] == "review"
        u = call("update_task", t["id"], detach=True)
        assert u["sessionId"] is None
        assert call("reject_task", t["id"], "not yet")["status"] == "in_progress"
        call("update_task", t["id"], status="review")
        assert call("approve_task", t["id"])["status"] == "done"
        assert call("delete_task", t["id"]) == {"ok": True}

        # agent task tools, for the session named per call
        call("set_tasks", [{"title": "a", "description": "d", "priority": 1}, {"title": "b"}], session_id=sid)
        call("add_artifact", "pr_url", "https://example.invalid/pr/2", session_id=sid)
        call("block_task", "waiting for CI", session_id=sid)
        status = call("task_status", session_id=sid)
        assert [x["status"] for x in status["tasks"]] == ["blocked", "todo"]
        done = call("resolve_signal", "gh_ci", "success", pr_url="https://example.invalid/pr/2", artifacts={"run": "1"})
        assert done["matched"] == 1
        call("complete_task", "a is done", session_id=sid)
        r = call(
            "resolve_signal",
            "gh_review",
            "approved",
            repo="owner/repo",
            pr=12,
            pr_url=None,
            artifacts=None,
        )
        assert r["matched"] == 0
        r = call("resolve_signal", "human_approval", "pass", pr_url="https://example.invalid/pr/2")
        assert r["matched"] == 1

        # The server refuses what the types forbid, and says so.
        with pytest.raises(BadRequestError):
            client.request("POST", "/api/tasks", {"title": "x", "priority": "urgent"})
        with pytest.raises(TypeError):
            client.add_artifact("k", {"not": "a string"})  # type: ignore[arg-type]

        # Every public method and every parameter of each was exercised.
        public = {
            n
            for n, v in inspect.getmembers(Client)
            if not n.startswith("_") and callable(v) and n != "close"
        }
        assert public - set(call.called) == set(), "methods with no contract call"
        for name, used in call.called.items():
            params = set(list(inspect.signature(getattr(Client, name)).parameters)[1:])
            assert params - used == set(), f"{name}: parameters never sent: {params - used}"
    assert client.closed
    with pytest.raises(MitzoError, match="closed"):
        client.version()
