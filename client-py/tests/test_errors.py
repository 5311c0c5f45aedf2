"""Every error class, each from a real mitzod response."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

import pytest

from mitzo_client import (
    AuthError,
    AuthenticationError,
    BadRequestError,
    GoneError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServiceUnavailableError,
    Client,
    ConflictError,
    MitzoError,
    NotFoundError,
    RateLimitError,
    ServerError,
)

from conftest import Mitzod, git_repo


def internal(server: Mitzod) -> Client:
    return Client(url=server.url, token=server.read_token())


def test_401_bad_credential(server: Mitzod) -> None:
    with pytest.raises(AuthenticationError) as e:
        Client(url=server.url, token="0" * 64).request("GET", "/api/auth/check")
    assert e.value.status == 401
    assert e.value.error
    assert "401" in str(e.value)


def test_401_missing_credential(server: Mitzod) -> None:
    with pytest.raises(AuthenticationError) as e:
        internal(server).request("GET", "/api/auth/check", auth=False)
    assert e.value.status == 401


def test_403_credential_lacks_scope(server: Mitzod) -> None:
    # The internal token is not the owner: owner-only routes refuse it.
    with pytest.raises(PermissionDeniedError) as e:
        internal(server).request("POST", "/api/auth/logout-all", {})
    assert e.value.status == 403
    assert e.value.error


def test_404_not_found(server: Mitzod) -> None:
    with pytest.raises(NotFoundError) as e:
        internal(server).request("GET", "/api/no-such-route")
    assert e.value.status == 404
    assert e.value.error


def test_400_bad_request(server: Mitzod) -> None:
    # A token in a query string is refused on every route; the client itself
    # never puts one there, so this request is built by hand.
    with pytest.raises(BadRequestError) as e:
        internal(server).request("GET", "/api/auth/check?token=abc")
    assert isinstance(e.value, MitzoError)
    assert e.value.status == 400
    assert e.value.error


def test_413_body_too_large(server: Mitzod) -> None:
    c = Client(url=server.url, token="unused")
    with pytest.raises(RequestTooLargeError) as e:
        c.request("POST", "/api/auth/login", {"passphrase": "x" * (2 * 1024 * 1024)}, auth=False)
    assert e.value.status == 413


def test_429_rate_limited_with_retry_after(server: Mitzod) -> None:
    c = Client(url=server.url, token="unused")
    seen = []
    for _ in range(12):
        try:
            c.request("POST", "/api/auth/login", {"passphrase": "wrong"}, auth=False)
        except RateLimitError as e:
            assert e.status == 429
            assert e.retry_after is not None and e.retry_after > 0
            assert e.error
            seen.append(e)
            break
        except AuthError as e:
            assert e.status == 401
    assert seen, "no 429 after 12 failed logins"


def test_500_server_error(server: Mitzod) -> None:
    """Hold SQLite's write lock from outside: the server's write (revoking the
    owner token on logout) times out on the busy lock and answers 500."""
    owner = Client(url=server.url, token=server.owner_token(), timeout=60.0)
    db = sqlite3.connect(str(server.state_dir / "mitzod.db"), timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        with pytest.raises(ServerError) as e:
            owner.request("POST", "/api/auth/logout", {})
        assert e.value.status == 500
        assert e.value.error
    finally:
        db.execute("ROLLBACK")
        db.close()
    # The server is fine again once the lock is gone.
    assert owner.request("GET", "/api/auth/check") == {"ok": True}


def test_409_conflict(server_factory: Callable[..., Mitzod], shared_tmp: Path) -> None:
    """A compare-and-swap file write with a stale expectedContent (issue 5)."""
    repo = git_repo(shared_tmp / "repo")
    server = server_factory(f'repo_path = "{repo}"\n')
    owner = Client(url=server.url, token=server.owner_token())
    path = str(repo / "README.md")
    with pytest.raises(ConflictError) as e:
        owner.request(
            "PUT",
            "/api/files/write",
            {"path": path, "content": "new\n", "expectedContent": "not what is there\n"},
        )
    assert e.value.status == 409
    assert e.value.error
    assert Path(path).read_text() == "hello\n"


def test_503_service_unavailable(server_factory: Callable[..., Mitzod], shared_tmp: Path) -> None:
    """An agent that cannot start (its command does not exist) is a 503."""
    repo = git_repo(shared_tmp / "repo")
    server = server_factory(
        f'repo_path = "{repo}"\n[agent]\ncommand = "/nonexistent/agent"\n[sandbox]\nlandlock = "best-effort"\n'
    )
    with pytest.raises(ServiceUnavailableError) as e:
        internal(server).create_session("tests", initial_prompt="hello")
    assert e.value.status == 503
    assert isinstance(e.value, ServerError)
    assert e.value.error


def test_deprecated_aliases_warn_and_still_catch() -> None:
    import builtins

    import mitzo_client
    from mitzo_client import APIConnectionError, RateLimitError

    with pytest.warns(DeprecationWarning, match="APIConnectionError"):
        alias = mitzo_client.ConnectionError
    assert alias is APIConnectionError
    assert issubclass(APIConnectionError, builtins.ConnectionError)
    with pytest.warns(DeprecationWarning, match="RateLimitError"):
        assert mitzo_client.RateLimitedError is RateLimitError
    # 401 and 403 are still both caught as AuthError.
    assert issubclass(AuthenticationError, AuthError) and issubclass(PermissionDeniedError, AuthError)


@pytest.mark.parametrize(
    "status,cls_name",
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
        (409, "ConflictError"),
        (410, "GoneError"),
        (413, "RequestTooLargeError"),
        (422, "BadRequestError"),
        (429, "RateLimitError"),
        (500, "ServerError"),
        (503, "ServiceUnavailableError"),
        (418, "APIStatusError"),
    ],
)
def test_each_status_has_its_class(status: int, cls_name: str) -> None:
    """The mapping for every status, including those a test cannot make the
    real server send on demand (410, 422): a one-shot local HTTP server answers
    with that status and mitzod's error body."""
    import http.server
    import threading

    import mitzo_client

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b'{"error":"because"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 429:
                self.send_header("Retry-After", "3")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        c = Client(url=f"http://127.0.0.1:{srv.server_address[1]}", token="t")
        with pytest.raises(MitzoError) as e:
            c.request("GET", "/x")
        assert type(e.value).__name__ == cls_name
        assert isinstance(e.value, getattr(mitzo_client, cls_name))
        assert e.value.status == status and e.value.error == "because"
        if status == 429:
            assert e.value.retry_after == 3.0
    finally:
        srv.shutdown()
