"""The owner's review and merge of a session's work: ``Client.review`` /
``Client.merge`` and ``mitzo review``, against the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from mitzo_client import Client, ConflictError, PermissionDeniedError

from conftest import PASSPHRASE, Mitzod, commit_in_checkout

MITZO = str(Path(sys.executable).parent / "mitzo")


class Env:
    def __init__(self, server: Mitzod, repo: Path) -> None:
        self.server = server
        self.repo = repo
        self.internal = Client(url=server.url, token=server.read_token(), timeout=30.0)
        self.owner_token = server.owner_token()
        self.owner = Client(url=server.url, token=self.owner_token, timeout=30.0)

    def session(self) -> tuple[str, Path]:
        s = self.internal.create_session("review-tests", isolation=True)
        return s["sessionId"], Path(s["worktrees"]["primary"]["path"])

    def main_head(self) -> str:
        out = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(self.repo), "rev-parse", "refs/heads/main"],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()


@pytest.fixture
def env(repos_server: tuple[Mitzod, Path, Path]) -> Env:
    server, repo, _other = repos_server
    return Env(server, repo)


def mitzo(*args: str, env: dict[str, str], stdin: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MITZO, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120, input=stdin
    )


def test_review_and_merge_through_the_client(env: Env) -> None:
    sid, wt = env.session()
    sha = commit_in_checkout(wt, {"NOTES": "from the session\n"}, "Add notes")
    before = env.main_head()
    r = env.owner.review(sid)
    assert r["branch"] == f"session/{sid}" and r["target"] == "main"
    assert [(c["sha"], c["subject"], c["author"]) for c in r["commits"]] == [(sha, "Add notes", "Agent")]
    assert r["files"] == [{"path": "NOTES", "added": 1, "deleted": 0, "binary": False}]
    assert "+from the session" in r["diff"] and r["truncated"] is False
    assert r["upToDate"] is False
    assert env.main_head() == before

    # Owner only.
    with pytest.raises(PermissionDeniedError):
        env.internal.review(sid)
    with pytest.raises(PermissionDeniedError):
        env.internal.merge(sid)
    assert env.main_head() == before

    m = env.owner.merge(sid)
    assert m["target"] == "main" and m["head"] == sha
    assert env.main_head() == m["commit"]
    assert (env.repo / "NOTES").read_text() == "from the session\n"
    with pytest.raises(ConflictError, match="nothing to merge"):
        env.owner.merge(sid)


def test_merge_refuses_a_dirty_main_checkout(env: Env) -> None:
    sid, wt = env.session()
    commit_in_checkout(wt, {"README.md": "rewritten\n"}, "Rewrite")
    before = env.main_head()
    (env.repo / "README.md").write_text("the owner's edit\n")
    with pytest.raises(ConflictError, match="uncommitted changes") as e:
        env.owner.merge(sid)
    assert e.value.status == 409
    assert (env.repo / "README.md").read_text() == "the owner's edit\n"
    assert env.main_head() == before


def test_mitzo_review_prints_commits_and_diff_and_merges(env: Env) -> None:
    sid, wt = env.session()
    # A subject with a terminal escape: printed escaped, never raw.
    commit_in_checkout(wt, {"CHANGES": "one\ntwo\n"}, "Add changes \x1b]0;owned\x07 \u202eevil")
    e = {"MITZO_URL": env.server.url, "MITZO_OWNER_TOKEN": env.owner_token}
    out = mitzo("review", sid, env=e)
    assert out.returncode == 0, out.stderr
    assert f"session/{sid} -> main: 1 commit, 1 file changed, +2 -0" in out.stdout
    assert "Add changes \\x1b]0;owned\\x07 \\u202eevil  (Agent <agent@example.invalid>" in out.stdout
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\u202e" not in out.stdout
    assert "+2 -0  CHANGES" in out.stdout
    assert "+one\n+two\n" in out.stdout

    as_json = mitzo("review", sid, "--json", env=e)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["files"][0]["path"] == "CHANGES"

    # The internal token is not the owner's: refused, exit 1.
    denied = mitzo("review", sid, "--merge", env={"MITZO_URL": env.server.url,
                                                   "MITZO_OWNER_TOKEN": env.server.read_token()})
    assert denied.returncode == 1 and "403" in denied.stderr, denied.stderr
    # No credential and no terminal: a usage error naming what to give.
    none = mitzo("review", sid, env={"MITZO_URL": env.server.url}, stdin="")
    assert none.returncode == 2 and "MITZO_OWNER_TOKEN" in none.stderr, none.stderr

    # Logged in with the passphrase on stdin; merged; then nothing to merge (exit 1).
    merged = mitzo("review", sid, "--merge", "--passphrase-stdin",
                   env={"MITZO_URL": env.server.url}, stdin=PASSPHRASE + "\n")
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.startswith(f"merged session/{sid} into main: ")
    assert (env.repo / "CHANGES").read_text() == "one\ntwo\n"
    again = mitzo("review", sid, "--merge", env=e)
    assert again.returncode == 1 and "nothing to merge" in again.stderr, again.stderr
