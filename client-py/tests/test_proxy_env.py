"""The client goes through the HTTP proxy its environment names (inside an
agent's network namespace, mitzod's own proxy is the only way to mitzod),
unless NO_PROXY names the host."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from mitzo_client import Client

from conftest import Mitzod


class RecordingProxy:
    """A plain-HTTP forward proxy on loopback that records each request line
    and relays the request, one per connection, to the host it names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.lines.append(lines[0])
            method, target, version = lines[0].split(" ")
            assert target.startswith("http://"), target
            authority, _, path = target[len("http://"):].partition("/")
            host, _, port = authority.rpartition(":")
            headers = [h for h in lines[1:] if not h.lower().startswith(("connection:", "proxy-connection:"))]
            up = socket.create_connection((host, int(port)), timeout=10)
            with up:
                out = f"{method} /{path} {version}\r\n" + "".join(h + "\r\n" for h in headers)
                up.sendall(out.encode("latin-1") + b"Connection: close\r\n\r\n" + rest)
                while True:
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    conn.sendall(chunk)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy() -> Any:
    p = RecordingProxy()
    yield p
    p.close()


def test_http_proxy_from_the_environment_is_used(server: Mitzod, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    # Control: without proxy variables the server is reached directly.
    assert Client(url=server.url, token=server.read_token()).version()
    assert proxy.lines == []

    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    c = Client(url=server.url, token=server.read_token())
    assert c.version()
    assert proxy.lines, "the call went through the proxy"
    assert proxy.lines[0].startswith(f"GET {server.url}/api/version "), proxy.lines


def test_no_proxy_naming_the_host_goes_direct(server: Mitzod, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    assert Client(url=server.url, token=server.read_token()).version()
    assert proxy.lines == [], "NO_PROXY names the host: direct"
