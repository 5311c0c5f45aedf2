"""The persisted token, rotation, restarts, and a server that is down."""

from __future__ import annotations

import builtins
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from mitzo_client import APIConnectionError, AuthError, Client, MitzoError

from conftest import Mitzod, free_port


def probe(client: Client) -> None:
    """One authenticated call that needs a token the server accepts: the
    internal token gets 403 from the owner-only check, a stale one 401."""
    try:
        client.request("GET", "/api/auth/check")
    except AuthError as e:
        if e.status != 403:
            raise
    else:
        raise AssertionError("the internal token passed an owner-only check")


def file_client(server: Mitzod, monkeypatch: pytest.MonkeyPatch, timeout: float = 10.0) -> Client:
    monkeypatch.setenv("MITZO_TOKEN_FILE", str(server.token_file))
    return Client(url=server.url, timeout=timeout)


def test_version_and_health(server: Mitzod) -> None:
    c = Client(url=server.url, token="unused")
    v = c.version()
    assert set(v) == {"version", "commit"}
    assert isinstance(v["version"], str) and v["version"]
    assert isinstance(c.health(), dict)


def test_client_survives_restart(server: Mitzod, monkeypatch: pytest.MonkeyPatch) -> None:
    c = file_client(server, monkeypatch)
    probe(c)
    before = server.read_token()
    server.restart()
    assert server.read_token() == before
    probe(c)


def test_rotation_is_picked_up_by_rereading_the_file(
    server: Mitzod, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = file_client(server, monkeypatch)
    probe(c)
    old = server.read_token()
    out = server.cli("token", "rotate")
    assert out.returncode == 0, out.stderr
    new = server.read_token()
    assert new != old
    # The server no longer takes the old token...
    stale = Client(url=server.url, token=old)
    with pytest.raises(AuthError) as e:
        stale.request("GET", "/api/auth/check")
    assert e.value.status == 401
    # ...and the client made before the rotation re-reads its file on the 401.
    probe(c)
    assert c.token_file == str(server.token_file)


def test_token_path_command_names_the_file(server: Mitzod) -> None:
    out = server.cli("token", "path")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == server.token_file


def test_down_server_gives_connection_error() -> None:
    port = free_port()
    c = Client(url=f"http://127.0.0.1:{port}", token="t", timeout=0.5)
    with pytest.raises(APIConnectionError) as e:
        c.version()
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}" in msg
    assert "systemctl status mitzod.socket" in msg
    assert e.value.status is None
    assert isinstance(e.value, builtins.ConnectionError)
    assert isinstance(e.value, MitzoError)
    # Non-idempotent calls too: a refused connection never carried the request.
    with pytest.raises(APIConnectionError):
        c.create_task("x")


def test_idempotent_call_waits_for_a_server_that_comes_up(
    server_factory: Callable[..., Mitzod], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory(start=False)
    c = Client(url=server.url, token="t", timeout=60.0)
    result: dict[str, Any] = {}
    started = threading.Event()

    def call() -> None:
        started.set()
        try:
            result["value"] = c.version()
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=call)
    t.start()
    started.wait()
    time.sleep(0.3)  # let the first attempts be refused
    assert t.is_alive(), result  # still retrying: nothing listened yet
    server.start()
    t.join(90)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    assert set(result["value"]) == {"version", "commit"}


def test_shared_client_between_threads(server: Mitzod, monkeypatch: pytest.MonkeyPatch) -> None:
    c = file_client(server, monkeypatch)
    errors: list[BaseException] = []

    def work() -> None:
        for _ in range(25):
            try:
                c.version()
                probe(c)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


@pytest.mark.parametrize("launcher", ["systemd-socket-activate", "direct"])
def test_restart_under_load_through_socket_activation(
    launcher: str, server_factory: Callable[..., Mitzod], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test owns the listening socket, as systemd's mitzod.socket does,
    and hands it to successive mitzod processes; 4 threads keep calling
    through one Client while mitzod is stopped and started twice."""
    lst = _listener()
    port = lst.getsockname()[1]
    # The configured listen address is never bound: the inherited socket is used.
    server = server_factory(start=False)
    server.url = f"http://127.0.0.1:{port}"
    via_ssa = launcher == "systemd-socket-activate"
    server.start(listen_fd=lst.fileno(), socket_activate=via_ssa)
    server.wait_ready()
    c = file_client(server, monkeypatch, timeout=60.0)

    stop = threading.Event()
    lock = threading.Lock()
    calls: list[tuple[float, float]] = []  # (start, end) of each successful call
    errors: list[BaseException] = []
    calls_per_thread_cap = 20000  # bounds the loop whatever happens

    def work() -> None:
        for i in range(calls_per_thread_cap):
            if stop.is_set():
                return
            t0 = time.monotonic()
            try:
                if i % 3 == 0:
                    c.version()
                elif i % 3 == 1:
                    c.health()
                else:
                    probe(c)
            except BaseException as e:  # noqa: BLE001
                with lock:
                    errors.append(e)
                return
            with lock:
                calls.append((t0, time.monotonic()))

    def count() -> int:
        with lock:
            return len(calls)

    def wait_calls(n: int) -> None:
        target = count() + n
        deadline = time.monotonic() + 120
        while count() < target and time.monotonic() < deadline and not errors:
            time.sleep(0.01)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    gaps: list[tuple[float, float]] = []
    try:
        for _ in range(2):
            wait_calls(40)
            server.stop()
            down = time.monotonic()
            time.sleep(0.5)  # a real gap: calls queue in the listen backlog
            server.start(listen_fd=lst.fileno(), socket_activate=via_ssa)
            gaps.append((down, time.monotonic()))
            wait_calls(40)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
        server.stop()
        lst.close()
    assert errors == [], f"{errors[:3]}\n{server.log_tail()}"
    # The restarts happened under load: calls were in flight while no mitzod
    # process existed, and they succeeded once the next one took the socket.
    for down, up in gaps:
        mid = (down + up) / 2
        spanning = [1 for c0, c1 in calls if c0 <= mid <= c1]
        assert spanning, "no call was in flight during a restart gap"
    assert len(calls) >= 4 * 40
