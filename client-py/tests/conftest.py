"""Fixtures: the real `mitzod` binary in a temp state dir.

The binary is `$MITZO_BIN`, else `<repo>/target/debug/mitzod` (built with
`cargo build -p mitzod` when missing). Run as root (as in CI), the server is
configured with `user = "nobody"` and drops to it; the temp dirs are made
traversable for that user.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple for the python client tests"
IS_ROOT = os.geteuid() == 0
SERVICE_USER = "nobody"
# A start-up that takes longer than this is a failure, not a slow pass.
START_LIMIT_SECS = 60.0


_FD3_EXEC = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execvp(sys.argv[2], sys.argv[2:])
"""


def skip_unless_required(why: str, require: str = "MITZO_REQUIRE_ROOT_TESTS") -> None:
    """Skip with `why`, or fail when `require` is 1 (CI sets it): what CI
    runs must not skip silently."""
    if os.environ.get(require) == "1":
        pytest.fail(f"{why}, and {require}=1 makes that a failure")
    pytest.skip(why)


def _find_binary() -> str:
    env = os.environ.get("MITZO_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise RuntimeError(f"MITZO_BIN={env} is not an executable file")
        return env
    path = REPO / "target" / "debug" / "mitzod"
    if not path.exists():
        build_env = {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}
        subprocess.run(["cargo", "build", "-p", "mitzod"], cwd=REPO, env=build_env, check=True)
    return str(path)


@pytest.fixture(scope="session")
def mitzod_bin() -> str:
    return _find_binary()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_shared_tmpdir(prefix: str) -> Path:
    """A temp dir under /tmp that the service user can traverse."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


def chown_to_service_user(path: Path) -> None:
    if not IS_ROOT:
        return
    pw = pwd.getpwnam(SERVICE_USER)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


def http_get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


class Mitzod:
    """One mitzod configuration (config file, secrets, state dir) and its process."""

    def __init__(self, binary: str, base: Path, extra_toml: str = "") -> None:
        self.binary = binary
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = base / "state"
        self.token_file = self.state_dir / "internal-token"
        self.log_path = base / "mitzod.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Any = None
        secrets_dir = base / "secrets"
        secrets_dir.mkdir(mode=0o700)
        jwt = secrets_dir / "jwt-secret"
        jwt.write_text(secrets.token_hex(32))
        jwt.chmod(0o600)
        pp = secrets_dir / "passphrase"
        pp.write_text(PASSPHRASE)
        pp.chmod(0o600)
        user = f'user = "{SERVICE_USER}"\n' if IS_ROOT else ""
        self.config = base / "mitzod.toml"
        self.config.write_text(
            f"{user}"
            f'state_dir = "{self.state_dir}"\n'
            f'listen = ["127.0.0.1:{self.port}"]\n'
            f'jwt_secret_file = "{jwt}"\n'
            f'passphrase_file = "{pp}"\n'
            f"{extra_toml}\n"
        )

    # ---- process control ----

    def _env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "info"}
        for k in ("HOME", "LANG", "TMPDIR"):
            if k in os.environ:
                env[k] = os.environ[k]
        return env

    def start(self, listen_fd: Optional[int] = None, socket_activate: bool = False) -> None:
        """Start mitzod. With `listen_fd`, pass that listening socket as fd 3
        the way systemd does (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES); with
        `socket_activate`, through Debian's `systemd-socket-activate`, which
        takes the inherited socket and execs mitzod on the first connection."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log = open(self.log_path, "ab")
        cmd = [self.binary, "serve", "--config", str(self.config)]
        env = self._env()
        pass_fds: tuple[int, ...] = ()
        if listen_fd is not None:
            if socket_activate:
                cmd = ["systemd-socket-activate", "--fdname=http", *cmd]
            # A tiny exec wrapper puts the socket on fd 3 and sets LISTEN_PID
            # to its own pid, which the exec keeps (no preexec_fn: threads).
            cmd = [sys.executable, "-c", _FD3_EXEC, str(listen_fd), *cmd]
            env["LISTEN_FDS"] = "1"
            env["LISTEN_FDNAMES"] = "http"
            pass_fds = (listen_fd,)
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=pass_fds
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_LIMIT_SECS
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mitzod exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if http_get(self.url + "/healthz") == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"mitzod not ready after {START_LIMIT_SECS}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_ready()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # ---- helpers ----

    def read_token(self) -> str:
        return self.token_file.read_text().strip()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`mitzod <args> --config FILE`."""
        return subprocess.run(
            [self.binary, *args, "--config", str(self.config)],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def owner_token(self) -> str:
        req = urllib.request.Request(
            self.url + "/api/auth/login",
            data=json.dumps({"passphrase": PASSPHRASE}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        token = body["token"]
        assert isinstance(token, str)
        return token


@pytest.fixture
def server_factory(mitzod_bin: str) -> Iterator[Any]:
    made: list[Mitzod] = []
    dirs: list[Path] = []

    def make(extra_toml: str = "", start: bool = True) -> Mitzod:
        base = make_shared_tmpdir("mitzo-py-")
        dirs.append(base)
        m = Mitzod(mitzod_bin, base, extra_toml)
        made.append(m)
        if start:
            m.start()
            m.wait_ready()
        return m

    yield make
    for m in made:
        m.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir the service user can traverse (repos, fake agents)."""
    d = make_shared_tmpdir("mitzo-py-x-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def repos_server(server_factory: Any, shared_tmp: Path) -> tuple[Mitzod, Path, Path]:
    """A started server with two repos (`repo_path` and `[repos] other`) and
    the fake agent: the API and contract tests' common ground."""
    repo = git_repo(shared_tmp / "repo")
    other = git_repo(shared_tmp / "other")
    agent = write_fake_agent(shared_tmp)
    home = shared_tmp / "agent-home"
    home.mkdir()
    chown_to_service_user(home)
    server = server_factory(
        f'repo_path = "{repo}"\n'
        f'repos = {{ other = "{other}" }}\n'
        "[agent]\n"
        f'command = "{agent}"\n'
        f'home = "{home}"\n'
        "[sandbox]\n"
        'landlock = "best-effort"\n'
    )
    return server, repo, other


@pytest.fixture
def server(server_factory: Any) -> Mitzod:
    m: Mitzod = server_factory()
    return m


@pytest.fixture(autouse=True)
def clean_client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MITZO_* from the caller's environment, and a HOME of our own, so
    discovery only sees what a test sets up."""
    for k in list(os.environ):
        if k.startswith("MITZO_"):
            monkeypatch.delenv(k)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def git_repo(path: Path) -> Path:
    """A git repo with one commit, owned by the service user when root."""
    path.mkdir(parents=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "README.md").write_text("hello\n")
    subprocess.run(["git", "-C", str(path), "add", "README.md"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "init"], check=True, env=env)
    path.chmod(0o755)
    chown_to_service_user(path)
    return path


FAKE_AGENT = r"""#!/bin/sh
# Stands in for the agent CLI: records the per-session credentials mitzod
# gave it (in its own worktree), answers the initialize control request and
# then stays alive reading stdin, so the session stays open.
printf '%s\n%s\n' "$MITZO_SESSION_ID" "$MITZO_SESSION_TOKEN" > .mitzo-test-session
while IFS= read -r line; do
  case "$line" in
    *initialize*)
      rid=$(printf '%s' "$line" | sed -n 's/.*"request_id" *: *"\([^"]*\)".*/\1/p')
      printf '{"type":"control_response","response":{"subtype":"success","request_id":"%s","response":{}}}\n' "$rid"
      ;;
  esac
done
"""


def write_fake_agent(base: Path) -> Path:
    p = base / "fake-agent.sh"
    p.write_text(FAKE_AGENT)
    p.chmod(0o755)
    return p


def wait_for_file(path: Path, limit: float = 60.0) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
            if text.count("\n") >= 2:
                return text
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear within {limit}s")


def commit_in_checkout(checkout: Path, files: dict[str, str], message: str) -> str:
    """Commit ``files`` in a session's checkout the way its agent would, then
    hand the checkout back to the service user. Returns the commit."""
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Agent",
        "GIT_AUTHOR_EMAIL": "agent@example.invalid",
        "GIT_COMMITTER_NAME": "Agent",
        "GIT_COMMITTER_EMAIL": "agent@example.invalid",
    }
    git = ["git", "-c", "safe.directory=*", "-C", str(checkout)]
    for name, content in files.items():
        (checkout / name).write_text(content)
        subprocess.run([*git, "add", "--", name], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "--no-verify", "-m", message], check=True, env=env)
    chown_to_service_user(checkout)
    out = subprocess.run([*git, "rev-parse", "HEAD"], check=True, env=env, capture_output=True, text=True)
    return out.stdout.strip()
