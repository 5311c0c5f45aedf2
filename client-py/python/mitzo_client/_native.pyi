"""Type stubs for the Rust core of mitzo_client."""

from typing import Any, Mapping, Optional, Sequence, Union

__version__: str
DEFAULT_URL: str

JSON = Any
"""A value as the server sent it: dict, list, str, int, float, bool or None."""

Id = Union[str, int]

def token_file_candidates() -> list[str]:
    """Token files the client would read, in order (MITZO_TOKEN_FILE, ~/.mitzo, /var/lib/mitzo)."""

class Client:
    """A client for mitzod's HTTP API, safe to share between threads.

    URL: ``url``, else ``MITZO_URL``, else ``http://127.0.0.1:3100``.
    Token: ``token``, else ``MITZO_SESSION_TOKEN``, else ``MITZO_INTERNAL_TOKEN``,
    else the file named by ``MITZO_TOKEN_FILE``, else ``~/.mitzo/internal-token``,
    else ``/var/lib/mitzo/internal-token``. Raises ``TokenNotFoundError`` when
    none has one, ``InvalidTokenFileError`` for a malformed token file.
    ``timeout`` bounds each call, retries included.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = 10.0,
        session_id: Optional[str] = None,
    ) -> None: ...
    @property
    def url(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def token_source(self) -> str: ...
    @property
    def token_file(self) -> Optional[str]: ...
    @property
    def session_id(self) -> Optional[str]: ...
    def version(self) -> dict[str, Any]: ...
    def health(self) -> dict[str, Any]: ...
    def request(
        self,
        method: str,
        path: str,
        body: JSON = None,
        *,
        auth: bool = True,
        client_id: Optional[str] = None,
    ) -> JSON: ...
    # sessions
    def create_session(
        self,
        source: str,
        initial_prompt: Optional[str] = None,
        summary: Optional[str] = None,
        mode: Optional[str] = None,
        model: Optional[str] = None,
    ) -> dict[str, Any]: ...
    def list_sessions(self, offset: int = 0, limit: int = 50) -> dict[str, Any]: ...
    def session_meta(self, id: Id) -> dict[str, Any]: ...
    def session_events(self, id: Id, after: int = 0) -> JSON: ...
    def delete_session(self, id: Id) -> JSON: ...
    # repos
    def repos(self) -> list[dict[str, Any]]: ...
    def open_repo(self, repo_name: str, session_id: str) -> dict[str, Any]: ...
    # task board
    def list_tasks(self) -> JSON: ...
    def get_task(self, id: Id) -> dict[str, Any]: ...
    def create_task(
        self,
        title: str,
        description: Optional[str] = None,
        priority: Optional[Union[int, str]] = None,
    ) -> dict[str, Any]: ...
    def update_task(self, id: Id, **fields: JSON) -> dict[str, Any]: ...
    def delete_task(self, id: Id) -> JSON: ...
    def approve_task(self, id: Id) -> JSON: ...
    def reject_task(self, id: Id, feedback: str) -> JSON: ...
    # agent task tools (X-Client-ID: session_id, else the client's session_id)
    def set_tasks(
        self, tasks: Sequence[Mapping[str, Any]], session_id: Optional[str] = None
    ) -> JSON: ...
    def complete_task(self, summary: str, session_id: Optional[str] = None) -> JSON: ...
    def task_status(self, session_id: Optional[str] = None) -> JSON: ...
    def block_task(self, reason: str, session_id: Optional[str] = None) -> JSON: ...
    def add_artifact(self, key: str, value: JSON, session_id: Optional[str] = None) -> JSON: ...
    # signals
    def resolve_signal(
        self,
        type: str,
        status: str,
        repo: Optional[str] = None,
        pr: Optional[Union[int, str]] = None,
        pr_url: Optional[str] = None,
        artifacts: Optional[Mapping[str, Any]] = None,
    ) -> dict[str, Any]: ...
