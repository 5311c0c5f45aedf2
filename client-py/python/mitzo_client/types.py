"""The shapes of mitzod's answers, as ``TypedDict``s, and the fixed vocabularies
(modes, task statuses, signal types) as ``Literal`` types.

They describe what the server sends today; keys marked ``NotRequired`` may be
absent. At run time every answer is a plain ``dict``.
"""


import sys
from typing import Any, Dict, List, Literal, Optional, Union

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # pragma: no cover - older Pythons
    from typing_extensions import NotRequired, TypedDict

__all__ = [
    "Mode",
    "TaskStatus",
    "SessionState",
    "SignalType",
    "SignalStatus",
    "Version",
    "Health",
    "Ok",
    "Worktree",
    "SessionWorktrees",
    "SessionCreated",
    "SessionSummary",
    "SessionList",
    "ActiveSessions",
    "SessionMeta",
    "EventsPage",
    "Repo",
    "RepoOpened",
    "RepoClosed",
    "ReviewCommit",
    "ChangedFile",
    "Review",
    "Merged",
    "Task",
    "TaskList",
    "NewTask",
    "ToolResult",
    "ToolStatus",
    "SignalResult",
]

Mode = Literal["ask", "agent", "auto"]
"""How much an agent may do without asking: every tool, edits in its worktree, or everything."""

SessionState = Literal["idle", "running", "requires_action", "stopped", "interrupted"]

TaskStatus = Literal["todo", "in_progress", "blocked", "review", "done"]

SignalType = Literal["gh_ci", "gh_review", "human_approval"]

SignalStatus = Literal[
    "success", "failure", "approved", "changes_requested", "rejected", "pass", "fail"
]
"""gh_ci: success/failure; gh_review: approved/changes_requested; human_approval:
approved/rejected. ``pass``/``fail`` (Mitzo's) mean the positive/negative one of any type."""


class Version(TypedDict):
    version: str
    commit: str


class Health(TypedDict):
    ok: bool
    status: NotRequired[Literal["ok", "degraded"]]
    reason: NotRequired[str]
    """Why it is degraded (e.g. the state directory's disk is full)."""


class Ok(TypedDict):
    ok: bool


class Worktree(TypedDict):
    path: str
    branch: Optional[str]


class SessionWorktrees(TypedDict):
    primary: Worktree


class SessionCreated(TypedDict):
    sessionId: str
    worktrees: SessionWorktrees
    isolation: bool
    headless: bool
    title: str
    repo: str
    """The repo's name (a ``[repos]`` key, or ``repo_path``'s directory name)."""


class SessionSummary(TypedDict):
    id: str
    title: str
    summary: str
    repo: str
    state: SessionState
    mode: Mode
    pendingApprovals: int
    lastActivity: int
    lastModified: int
    branch: Optional[str]
    isActive: bool
    isAttached: bool
    numTurns: int
    historyCompacted: bool
    """Older events were dropped by the retention policy."""


class SessionList(TypedDict):
    sessions: List[SessionSummary]
    hasMore: bool


class ActiveSessions(TypedDict):
    sessions: List[SessionSummary]
    loaded: int


class SessionMeta(TypedDict):
    id: str
    source: str
    summary: str
    title: str
    mode: Mode
    model: Optional[str]
    repo: str
    """The repo's path (Mitzo's meaning); its name is ``repoName``."""
    repoName: str
    cwd: str
    branch: Optional[str]
    isolation: bool
    headless: bool
    agentSessionId: Optional[str]
    state: SessionState
    numTurns: int
    createdAt: int
    lastModified: int
    historyCompacted: bool
    lastActivity: int
    pendingApprovals: int
    isActive: bool
    isAttached: bool
    lastSeq: int
    worktrees: SessionWorktrees


class EventsPage(TypedDict):
    events: List[Dict[str, Any]]
    """Each a WebSocket frame as it was sent: ``type``, ``seq``, ``sessionId``, ..."""
    lastSeq: int
    hasMore: bool


class Repo(TypedDict):
    name: str
    path: str
    default: bool
    """The repo a new session gets when it names none (``repo_path``)."""


class RepoOpened(TypedDict):
    path: str
    repoName: str
    created: bool
    worktrees: Dict[str, str]
    """Mitzo's shape: ``{repoName: path}``."""


class RepoClosed(TypedDict):
    ok: bool
    removed: bool
    """Whether a directory was removed (its commits were fetched first)."""



class ReviewCommit(TypedDict):
    sha: str
    subject: str
    """The first line of the message, as the agent wrote it (display it as text)."""
    author: str
    authorEmail: str
    date: str
    """Author date, ISO 8601."""


class ChangedFile(TypedDict):
    path: str
    added: Optional[int]
    """Lines added; None for a binary file."""
    deleted: Optional[int]
    binary: bool


class Review(TypedDict):
    """``GET /api/sessions/{id}/review``: a session's branch against the main
    checkout's current branch (``target``)."""

    sessionId: str
    branch: str
    """``session/<id>`` in the main repo."""
    head: str
    """The commit ``branch`` points at."""
    target: str
    """The main checkout's current branch, what a merge goes into."""
    targetCommit: str
    commits: List[ReviewCommit]
    """The commits ``target`` lacks, newest first (at most 500)."""
    commitsTruncated: bool
    files: List[ChangedFile]
    filesTruncated: bool
    added: int
    deleted: int
    diff: str
    """``git diff target...branch``, at most 1 MiB."""
    truncated: bool
    """The diff was longer and was cut."""
    upToDate: bool
    """``target`` already contains ``branch``: a merge would be refused."""
    fetched: bool
    """False when the session's checkout is gone and the branch as last fetched is shown."""


class Merged(TypedDict):
    """``POST /api/sessions/{id}/merge``."""

    sessionId: str
    branch: str
    target: str
    commit: str
    """The new merge commit, now ``target``'s tip."""
    head: str
    """The session commit merged."""

class Task(TypedDict):
    id: str
    title: str
    description: str
    status: TaskStatus
    priority: int
    sessionId: Optional[str]
    artifacts: Dict[str, str]
    createdAt: str
    updatedAt: str


class TaskList(TypedDict):
    tasks: List[Task]


class NewTask(TypedDict):
    """One task for :meth:`Client.set_tasks`."""

    title: str
    description: NotRequired[str]
    priority: NotRequired[int]


class ToolResult(TypedDict):
    result: str
    """A line for the agent to read, e.g. ``Completed "x"; it awaits review.``"""


class ToolStatus(TypedDict):
    result: str
    tasks: List[Task]


class SignalResult(TypedDict):
    ok: bool
    matched: int
    """How many tasks the signal moved."""


JSON = Union[Dict[str, Any], List[Any], str, int, float, bool, None]
