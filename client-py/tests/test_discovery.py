"""Where the client finds its URL and token, each source on its own."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

import mitzo_client
from mitzo_client import (
    AuthError,
    Client,
    InsecureTokenFileWarning,
    InvalidTokenFileError,
    TokenNotFoundError,
    token_file_candidates,
)

from conftest import IS_ROOT, Mitzod, skip_unless_required

SYSTEM_TOKEN = Path("/var/lib/mitzo/internal-token")


def internal_token_accepted(client: Client) -> None:
    """The internal token is authentic but not the owner: the owner-only
    /api/auth/check answers 403 to it, and 401 to a token it does not know."""
    with pytest.raises(AuthError) as e:
        client.request("GET", "/api/auth/check")
    assert e.value.status == 403, e.value


def copy_token(server: Mitzod, dest: Path, mode: int = 0o600) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(server.read_token() + "\n")
    dest.chmod(mode)
    return dest


def test_url_default_env_and_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Client(token="t").url == "http://127.0.0.1:3100"
    monkeypatch.setenv("MITZO_URL", "http://127.0.0.9:4000/")
    assert Client(token="t").url == "http://127.0.0.9:4000"
    assert Client(url="http://127.0.0.8:5000", token="t").url == "http://127.0.0.8:5000"


def test_token_argument(server: Mitzod) -> None:
    c = Client(url=server.url, token=server.owner_token())
    assert c.token_source == "argument"
    assert c.token_file is None
    assert c.request("GET", "/api/auth/check") == {"ok": True}


def test_token_from_session_token_env(server: Mitzod, monkeypatch: pytest.MonkeyPatch) -> None:
    # Any bearer credential works for this check; the owner's JWT is one the
    # server accepts without a running agent session.
    monkeypatch.setenv("MITZO_SESSION_TOKEN", server.owner_token())
    c = Client(url=server.url)
    assert c.token_source == "env:MITZO_SESSION_TOKEN"
    assert c.request("GET", "/api/auth/check") == {"ok": True}


def test_token_from_internal_token_env(server: Mitzod, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MITZO_INTERNAL_TOKEN", server.read_token())
    c = Client(url=server.url)
    assert c.token_source == "env:MITZO_INTERNAL_TOKEN"
    internal_token_accepted(c)


def test_token_from_token_file_env(
    server: Mitzod, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = copy_token(server, tmp_path / "tok")
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(f))
    c = Client(url=server.url)
    assert c.token_source == f"file:{f}"
    assert c.token_file == str(f)
    internal_token_accepted(c)


def test_token_from_home_dir(server: Mitzod, clean_client_env: Path) -> None:
    f = copy_token(server, clean_client_env / ".mitzo" / "internal-token")
    c = Client(url=server.url)
    assert c.token_file == str(f)
    internal_token_accepted(c)


def test_token_from_system_state_dir(server: Mitzod) -> None:
    if SYSTEM_TOKEN.exists() or SYSTEM_TOKEN.parent.exists():
        skip_unless_required("/var/lib/mitzo exists on this machine; not touching it")
    if not IS_ROOT:
        skip_unless_required("needs root to create /var/lib/mitzo")
    try:
        copy_token(server, SYSTEM_TOKEN)
        c = Client(url=server.url)
        assert c.token_file == str(SYSTEM_TOKEN)
        internal_token_accepted(c)
    finally:
        shutil.rmtree(SYSTEM_TOKEN.parent, ignore_errors=True)


def test_order_first_source_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_client_env: Path
) -> None:
    hexa = "a" * 64
    f = tmp_path / "tok"
    f.write_text(hexa)
    f.chmod(0o600)
    home_tok = clean_client_env / ".mitzo" / "internal-token"
    home_tok.parent.mkdir()
    home_tok.write_text("b" * 64)
    home_tok.chmod(0o600)
    assert Client().token_file == str(home_tok)
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(f))
    assert Client().token_file == str(f)
    monkeypatch.setenv("MITZO_INTERNAL_TOKEN", "c" * 64)
    assert Client().token_source == "env:MITZO_INTERNAL_TOKEN"
    monkeypatch.setenv("MITZO_SESSION_TOKEN", "session")
    assert Client().token_source == "env:MITZO_SESSION_TOKEN"
    assert Client(token="arg").token_source == "argument"


def test_nothing_found_lists_every_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_client_env: Path
) -> None:
    if SYSTEM_TOKEN.exists():
        skip_unless_required("this machine has a system token file")
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(TokenNotFoundError) as e:
        Client()
    text = str(e.value)
    for place in (
        "token= argument",
        "MITZO_SESSION_TOKEN",
        "MITZO_INTERNAL_TOKEN",
        str(tmp_path / "missing"),
        str(clean_client_env / ".mitzo" / "internal-token"),
        str(SYSTEM_TOKEN),
    ):
        assert place in text, f"{place!r} not in {text!r}"
    assert isinstance(e.value, mitzo_client.MitzoError)


@pytest.mark.parametrize(
    "content",
    [b"", b"abc\n", b"z" * 64, b"a" * 63, b"a" * 65, b"\xff" * 64],
    ids=["empty", "short", "non-hex", "63", "65", "binary"],
)
def test_malformed_token_file(
    content: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "tok"
    f.write_bytes(content)
    f.chmod(0o600)
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(f))
    with pytest.raises(InvalidTokenFileError) as e:
        Client()
    assert str(f) in str(e.value)
    assert "64 hex" in str(e.value)


def test_token_file_is_trimmed_and_case_folded(
    server: Mitzod, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "tok"
    f.write_text("  " + server.read_token().upper() + "\n\n")
    f.chmod(0o600)
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(f))
    internal_token_accepted(Client(url=server.url))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_readable_token_file_warns(
    mode: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "tok"
    f.write_text("d" * 64)
    f.chmod(mode)
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(f))
    with pytest.warns(InsecureTokenFileWarning, match="chmod 600"):
        Client()


def test_private_token_file_does_not_warn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "tok"
    f.write_text("d" * 64)
    f.chmod(0o600)
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(f))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Client()


def test_wrong_token_is_auth_error_not_retried_forever(
    server: Mitzod, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "tok"
    f.write_text("e" * 64)
    f.chmod(0o600)
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(f))
    with pytest.raises(AuthError) as e:
        Client(url=server.url).request("GET", "/api/auth/check")
    assert e.value.status == 401


def test_token_never_in_repr(server: Mitzod) -> None:
    token = server.read_token()
    c = Client(url=server.url, token=token)
    assert token not in repr(c)
    assert not any(token in str(getattr(c, a)) for a in ("url", "token_source", "token_file"))


def test_environment_is_read_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MITZO_INTERNAL_TOKEN", "f" * 64)
    monkeypatch.setenv("MITZO_SESSION_ID", "sess-1")
    c = Client()
    monkeypatch.delenv("MITZO_INTERNAL_TOKEN")
    assert c.token_source == "env:MITZO_INTERNAL_TOKEN"
    assert c.session_id == "sess-1"
    assert os.environ.get("MITZO_INTERNAL_TOKEN") is None


def test_a_dev_servers_token_is_found_walking_up_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --dev` keeps its token in ./.mitzo-dev/internal-token; a client
    started in that directory or below it finds it with no setup."""
    dev = tmp_path / "checkout" / ".mitzo-dev"
    dev.mkdir(parents=True)
    token = dev / "internal-token"
    token.write_text("ab" * 32)
    token.chmod(0o600)
    deep = tmp_path / "checkout" / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    c = Client(url="http://127.0.0.1:9")
    assert c.token_source == f"file:{token}"
    assert token_file_candidates()[0] == str(token)
    # Control: from a directory with no dev server above it, it is not used.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TokenNotFoundError) as e:
        Client(url="http://127.0.0.1:9")
    assert ".mitzo-dev/internal-token in" in str(e.value)
    assert "mitzod token path --dev" in str(e.value)
