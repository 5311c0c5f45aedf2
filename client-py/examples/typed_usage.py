"""An agent-side script using mitzo_client; checked with `mypy --strict`."""

from __future__ import annotations

import sys

from mitzo_client import (
    APIConnectionError,
    AuthenticationError,
    Client,
    MitzoError,
    PermissionDeniedError,
    RateLimitError,
    TokenNotFoundError,
)
from mitzo_client.types import Task, ToolStatus


def report(client: Client, summary: str) -> ToolStatus:
    client.set_tasks([{"title": "run the tests", "priority": 1}, {"title": "open a PR"}])
    client.add_artifact("log", "tests/output.txt")
    status = client.task_status()
    client.complete_task(summary)
    return status


def open_tasks(client: Client) -> list[Task]:
    return client.list_tasks(status="in_progress")["tasks"]


def main() -> int:
    try:
        client = Client(timeout=5.0)
    except TokenNotFoundError as e:
        print(e, file=sys.stderr)
        return 3
    with client:
        version = client.version()
        print(f"mitzod {version['version']} at {client.url} (token from {client.token_source})")
        try:
            session = client.create_session("script", summary="typed example", mode="ask")
            worktree: str = session["worktrees"]["primary"]["path"]
            print("worktree:", worktree)
            print(report(client, "done")["result"])
            print(len(open_tasks(client)), "tasks in progress")
            matched: int = client.resolve_signal("gh_ci", "success", repo="owner/repo", pr=1)["matched"]
            print(matched, "tasks moved")
        except RateLimitError as e:
            print(f"slow down: retry after {e.retry_after} s", file=sys.stderr)
            return 1
        except (AuthenticationError, PermissionDeniedError) as e:
            print(f"refused ({e.status}): {e.error}", file=sys.stderr)
            return 1
        except APIConnectionError as e:
            print(e, file=sys.stderr)
            return 3
        except MitzoError as e:
            print(f"{e.status}: {e.error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
