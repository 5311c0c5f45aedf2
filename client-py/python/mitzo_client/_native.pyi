"""Type stubs for the Rust core of mitzo_client (checked against the compiled
module by ``python -m mypy.stubtest mitzo_client._native``)."""

from types import TracebackType
from typing import Any, Mapping, Optional, Sequence, Union, final


from .types import (
    JSON,
    ActiveSessions,
    EventsPage,
    Health,
    Merged,
    Mode,
    NewTask,
    Ok,
    Repo,
    RepoClosed,
    RepoOpened,
    Review,
    SessionCreated,
    SessionList,
    SessionMeta,
    SignalResult,
    SignalStatus,
    SignalType,
    Task,
    TaskList,
    TaskStatus,
    ToolResult,
    ToolStatus,
    Version,
)

__all__ = ["Client", "token_file_candidates", "DEFAULT_URL", "__version__"]

__version__: str
DEFAULT_URL: str

_Id = Union[str, int]

def token_file_candidates() -> list[str]:
    """Token files the client would read, in order: MITZO_TOKEN_FILE, the nearest
    ``.mitzo-dev/internal-token`` at or above the working directory,
    ``~/.mitzo/internal-token``, ``/var/lib/mitzo/internal-token``."""

@final
class Client:
    """A client for mitzod's HTTP API, safe to share between threads.

    URL: ``url``, else ``MITZO_URL``, else ``http://127.0.0.1:3100``.
    Token: ``token``, else ``MITZO_SESSION_TOKEN``, else ``MITZO_INTERNAL_TOKEN``,
    else the file named by ``MITZO_TOKEN_FILE``, else ``.mitzo-dev/internal-token``
    in the working directory or the nearest one above it (a ``serve --dev``),
    else ``~/.mitzo/internal-token``, else ``/var/lib/mitzo/internal-token``.
    Raises ``TokenNotFoundError`` when none has one, ``InvalidTokenFileError``
    for a malformed token file. ``timeout`` bounds each call, retries included.

    Use it as a context manager (``with Client() as c:``) or call ``close()``.
    Errors are the subclasses of ``mitzo_client.MitzoError``, one per status.
    """

    def __new__(
        cls,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = 10.0,
        session_id: Optional[str] = None,
    ) -> "Client": ...
    @property
    def url(self) -> str:
        """The server's base URL."""
    @property
    def timeout(self) -> float:
        """Seconds a call may take, retries included."""
    @property
    def token_source(self) -> str:
        """Where the token came from: ``argument``, ``env:NAME`` or ``file:PATH``."""
    @property
    def token_file(self) -> Optional[str]:
        """The token file in use, or None when the token did not come from a file."""
    @property
    def session_id(self) -> Optional[str]:
        """The session the task tools act for (``X-Client-ID``): argument or ``MITZO_SESSION_ID``."""
    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
    def close(self) -> None:
        """Drop kept-alive connections; later calls raise ``MitzoError``."""
    def __enter__(self) -> "Client": ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]] = None,
        exc: Optional[BaseException] = None,
        tb: Optional[TracebackType] = None,
    ) -> bool: ...
    def version(self) -> Version:
        """``GET /api/version`` (no credential sent)."""
    def health(self) -> Health:
        """``GET /healthz`` (no credential sent)."""
    def request(
        self,
        method: str,
        path: str,
        body: Optional[JSON] = None,
        *,
        auth: bool = True,
        client_id: Optional[str] = None,
    ) -> Any:
        """Any API call: ``method`` GET/POST/PUT/PATCH/DELETE, ``path`` from ``/``.
        Idempotent methods are retried across a restart."""
    # sessions
    def create_session(
        self,
        source: str,
        initial_prompt: Optional[str] = None,
        summary: Optional[str] = None,
        mode: Optional[Mode] = None,
        model: Optional[str] = None,
        *,
        isolation: Optional[bool] = None,
        repo: Optional[str] = None,
    ) -> SessionCreated:
        """``POST /api/sessions``. With ``initial_prompt`` the agent starts at once;
        ``repo`` names a ``[repos]`` entry (default: ``repo_path``)."""
    def list_sessions(self, offset: int = 0, limit: int = 50) -> SessionList:
        """``GET /api/sessions``: newest first, ``limit`` 1..=100."""
    def active_sessions(self) -> ActiveSessions:
        """``GET /api/sessions/active``: the sessions running now."""
    def session_meta(self, id: _Id) -> SessionMeta:
        """``GET /api/sessions/{id}/meta``."""
    def session_events(
        self, id: _Id, after: int = 0, limit: Optional[int] = None, *, before: Optional[int] = None
    ) -> EventsPage:
        """``GET /api/sessions/{id}/events``: events with ``seq > after``, at most
        ``limit``; page on with the last event's ``seq``. With ``before``: the newest
        events below that ``seq`` (paging backwards; ``hasMore`` says if older remain)."""
    def delete_session(self, id: _Id) -> Ok:
        """``DELETE /api/sessions/{id}``."""
    # repos
    def repos(self) -> list[Repo]:
        """``GET /api/repos``: every repo a session may run in (``repo_path`` and ``[repos]``)."""
    def open_repo(
        self,
        repo_name: Optional[str] = None,
        session_id: Optional[str] = None,
        *,
        repo_path: Optional[str] = None,
    ) -> RepoOpened:
        """``POST /api/repos/open``: a worktree of a configured repo (by ``repo_name``,
        a ``[repos]`` key, or ``repo_path``) for ``session_id`` (a new id if None)."""
    def close_worktree(self, path: str) -> RepoClosed:
        """``POST /api/repos/close``: remove a worktree ``open_repo`` made."""
    # review (owner only: construct the Client with the owner's token from a login)
    def review(self, session_id: _Id) -> Review:
        """``GET /api/sessions/{id}/review``: the session's branch, fetched from its
        checkout through mitzod's confined git, against the main checkout's current
        branch: its commits, the files it changes with line counts, and the diff from
        the merge base (cut at 1 MiB; ``truncated`` says so). Everything in it was
        written by the agent: show it as text."""
    def merge(self, session_id: _Id) -> Merged:
        """``POST /api/sessions/{id}/merge``: merge the session's branch into the main
        checkout's current branch with a merge commit. ``ConflictError`` (409), the
        checkout left as it was, when it has uncommitted changes, when the merge
        conflicts, or when there is nothing to merge."""
    # task board
    def list_tasks(
        self, status: Optional[TaskStatus] = None, session_id: Optional[str] = None
    ) -> TaskList:
        """``GET /api/tasks``, optionally filtered by status and session."""
    def get_task(self, id: _Id) -> Task:
        """``GET /api/tasks/{id}``."""
    def create_task(
        self,
        title: str,
        description: Optional[str] = None,
        priority: Optional[int] = None,
        *,
        status: Optional[TaskStatus] = None,
        session_id: Optional[str] = None,
        artifacts: Optional[Mapping[str, str]] = None,
    ) -> Task:
        """``POST /api/tasks``. ``priority`` 0..=100."""
    def update_task(
        self,
        id: _Id,
        *,
        title: Optional[str] = None,
        description: Optional[str] = None,
        status: Optional[TaskStatus] = None,
        priority: Optional[int] = None,
        session_id: Optional[str] = None,
        detach: bool = False,
        artifacts: Optional[Mapping[str, Optional[str]]] = None,
    ) -> Task:
        """``PATCH /api/tasks/{id}``: only given fields change; ``detach=True`` clears
        the session; an artifact set to None is removed."""
    def delete_task(self, id: _Id) -> Ok:
        """``DELETE /api/tasks/{id}``."""
    def approve_task(self, id: _Id) -> Task:
        """A task in review becomes done."""
    def reject_task(self, id: _Id, feedback: str) -> Task:
        """A task in review goes back to in_progress with ``feedback``."""
    # agent task tools (X-Client-ID: session_id, else the client's session_id)
    def set_tasks(self, tasks: Sequence[NewTask], session_id: Optional[str] = None) -> ToolResult:
        """Replace this session's not-yet-started tasks; the first starts."""
    def complete_task(self, summary: str, session_id: Optional[str] = None) -> ToolResult:
        """The current task goes to review; the next starts."""
    def task_status(self, session_id: Optional[str] = None) -> ToolStatus:
        """This session's tasks, and a summary line."""
    def block_task(self, reason: str, session_id: Optional[str] = None) -> ToolResult:
        """The current task becomes blocked with ``reason``."""
    def add_artifact(self, key: str, value: str, session_id: Optional[str] = None) -> ToolResult:
        """Record ``key: value`` on the current task."""
    # signals
    def resolve_signal(
        self,
        type: SignalType,
        status: SignalStatus,
        repo: Optional[str] = None,
        pr: Optional[Union[int, str]] = None,
        pr_url: Optional[str] = None,
        artifacts: Optional[Mapping[str, str]] = None,
    ) -> SignalResult:
        """``POST /api/signals/resolve`` for the tasks naming the PR (``pr_url``, or
        ``repo`` and ``pr``)."""
