"""The ``mitzo`` command, for shell hooks and scripts.

Exit codes: 0 ok, 1 the server said no, 2 usage, 3 cannot reach the server
or find a token. Results are printed to stdout as JSON, except where a hook
contract says otherwise (``mitzo hook worktree-create`` prints a path).

Claude Code hooks (``.claude/settings.json``)::

    WorktreeCreate  mitzo hook worktree-create   a worktree of the repo Claude was
                                                 started in, made by mitzod; prints its path
    WorktreeRemove  mitzo hook worktree-remove   removes it through mitzod
    SessionStart    mitzo hook session-start     registers the session with mitzod

The owner reviews and merges a session's work with ``mitzo review SESSION_ID``
(``--merge`` to merge), printed as text with control characters escaped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from ._native import Client, token_file_candidates
from .errors import APIConnectionError, MitzoError, TokenNotFoundError
from .types import Review

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class _UsageError(Exception):
    pass


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _json_arg(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _UsageError(f"{what} is not valid JSON: {e}") from None


def _client(args: argparse.Namespace) -> Client:
    return Client(url=args.url, timeout=args.timeout, session_id=getattr(args, "session_id", None))


def _cmd_version(args: argparse.Namespace) -> int:
    _print_json(_client(args).version())
    return EXIT_OK


def _cmd_health(args: argparse.Namespace) -> int:
    _print_json(_client(args).health())
    return EXIT_OK


def _hook_input() -> Dict[str, Any]:
    """The JSON object Claude Code writes to a hook's stdin."""
    try:
        data = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        raise _UsageError(f"the hook's stdin is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise _UsageError("the hook's stdin is not a JSON object")
    return data


def _repo_of(cwd: str) -> Path:
    """The top of the git work tree holding ``cwd`` (no git needed: the repo may
    belong to mitzod's user, which git would call dubious)."""
    start = Path(cwd).resolve()
    for d in [start, *start.parents]:
        if (d / ".git").exists():
            return d
    raise _UsageError(f"{cwd} is not inside a git repository")


def _cmd_hook_worktree_create(args: argparse.Namespace) -> int:
    data = _hook_input()
    cwd = data.get("cwd")
    if not isinstance(cwd, str) or not cwd:
        raise _UsageError('the hook input has no "cwd"')
    repo = _repo_of(cwd)
    result = _client(args).open_repo(repo_path=str(repo))
    # The hook contract: the worktree's absolute path, alone, on stdout.
    sys.stdout.write(result["path"] + "\n")
    sys.stdout.flush()
    name = data.get("name")
    sys.stderr.write(
        f"mitzo: worktree {result['path']} of {result['repoName']}"
        + (f" for {name!r}" if isinstance(name, str) else "")
        + "\n"
    )
    return EXIT_OK


def _cmd_hook_worktree_remove(args: argparse.Namespace) -> int:
    data = _hook_input()
    path = data.get("worktree_path")
    if not isinstance(path, str) or not path:
        raise _UsageError('the hook input has no "worktree_path"')
    _client(args).close_worktree(path)
    return EXIT_OK


def _cmd_hook_session_start(args: argparse.Namespace) -> int:
    data = _hook_input()
    cwd = data.get("cwd") if isinstance(data.get("cwd"), str) else os.getcwd()
    claude_id = data.get("session_id")
    summary = args.summary or f"Claude Code session {claude_id or ''} in {cwd}".replace("  ", " ")
    created = _client(args).create_session(
        args.source, summary=summary, mode=args.mode, isolation=False
    )
    context = f"mitzod session {created['sessionId']} tracks this session."
    if args.context:
        context += " " + args.context
    _print_json(
        {
            "hookSpecificOutput": {
                "hookEventName": "SessionStart",
                "additionalContext": context,
            }
        }
    )
    return EXIT_OK


def _cmd_session_start(args: argparse.Namespace) -> int:
    sys.stderr.write(
        "mitzo: `mitzo session-start` is deprecated: Claude Code does not move to the "
        "printed cwd. Use `claude --worktree` with `mitzo hook worktree-create` / "
        "`worktree-remove` (see the README).\n"
    )
    result = _client(args).create_session(
        args.source,
        initial_prompt=args.prompt,
        summary=args.summary,
        mode=args.mode,
        model=args.model,
    )
    _print_json({"cwd": result["worktrees"]["primary"]["path"]})
    return EXIT_OK


def _cmd_task_set(args: argparse.Namespace) -> int:
    if args.json is not None:
        if args.titles:
            raise _UsageError("give either titles or --json, not both")
        tasks = _json_arg(args.json, "--json")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise _UsageError("--json must be a list of objects like {\"title\": ...}")
    elif args.titles:
        tasks = [{"title": t} for t in args.titles]
    else:
        raise _UsageError("task set needs at least one TITLE, or --json")
    _print_json(_client(args).set_tasks(tasks))
    return EXIT_OK


def _cmd_task_complete(args: argparse.Namespace) -> int:
    _print_json(_client(args).complete_task(args.summary))
    return EXIT_OK


def _cmd_task_status(args: argparse.Namespace) -> int:
    _print_json(_client(args).task_status())
    return EXIT_OK


def _cmd_task_block(args: argparse.Namespace) -> int:
    _print_json(_client(args).block_task(args.reason))
    return EXIT_OK


def _cmd_task_artifact(args: argparse.Namespace) -> int:
    value: str = args.value
    if args.json_value:
        # Stored as text: the JSON is checked, then kept as written.
        _json_arg(value, "VALUE")
    _print_json(_client(args).add_artifact(args.key, value))
    return EXIT_OK


def _cmd_signal_resolve(args: argparse.Namespace) -> int:
    artifacts = None
    if args.artifacts is not None:
        artifacts = _json_arg(args.artifacts, "--artifacts")
        if not isinstance(artifacts, dict) or not all(isinstance(v, str) for v in artifacts.values()):
            raise _UsageError("--artifacts must be a JSON object of strings")
    pr: Optional[Any] = args.pr
    if isinstance(pr, str) and pr.isdigit():
        pr = int(pr)
    _print_json(
        _client(args).resolve_signal(
            args.type,
            args.status,
            repo=args.repo,
            pr=pr,
            pr_url=args.pr_url,
            artifacts=artifacts,
        )
    )
    return EXIT_OK


def _printable(text: str) -> str:
    """Agent-written text made safe for a terminal: control characters other
    than newline and tab are shown escaped (``\\x1b``), never sent as such."""
    return "".join(
        f"\\u{ord(c):04x}" if c in _BIDI else
        c if c in "\n\t" or not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) else f"\\x{ord(c):02x}"
        for c in text
    )


# Bidirectional overrides and isolates: they reorder what a reader sees.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _owner_client(args: argparse.Namespace) -> Client:
    """A client holding the owner's token: ``$MITZO_OWNER_TOKEN`` (a token from a
    login), else a login with the passphrase (``--passphrase-stdin``, or a prompt
    on the terminal). Review and merge are the owner's: the internal token and
    a session's token are refused."""
    token = os.environ.get("MITZO_OWNER_TOKEN", "").strip()
    if token:
        return Client(url=args.url, token=token, timeout=args.timeout)
    if args.passphrase_stdin:
        passphrase = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        import getpass

        passphrase = getpass.getpass("mitzod passphrase: ")
    else:
        raise _UsageError(
            "review needs the owner's credential: set MITZO_OWNER_TOKEN, "
            "or pass the passphrase with --passphrase-stdin"
        )
    if not passphrase:
        raise _UsageError("empty passphrase")
    # The login itself sends no credential; the token argument only keeps
    # discovery from looking for one.
    anon = Client(url=args.url, token="login", timeout=args.timeout)
    answer = anon.request("POST", "/api/auth/login", {"passphrase": passphrase}, auth=False)
    anon.close()
    got = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(got, str) or not got:
        raise MitzoError("the login answered no token")
    return Client(url=args.url, token=got, timeout=args.timeout)


def _print_review(review: Review) -> None:
    out = sys.stdout
    commits = review["commits"]
    files = review["files"]
    out.write(
        f"{review['branch']} -> {review['target']}: {len(commits)} commit"
        f"{'' if len(commits) == 1 else 's'}, {len(files)} file{'' if len(files) == 1 else 's'}"
        f" changed, +{review['added']} -{review['deleted']}"
        f"{' (already merged: nothing to merge)' if review['upToDate'] else ''}\n"
    )
    if not review["fetched"]:
        out.write("(the session's checkout is gone: the branch as last fetched)\n")
    out.write("\n")
    for c in commits:
        out.write(
            _printable(f"{c['sha'][:12]} {c['subject']}  ({c['author']} <{c['authorEmail']}>, {c['date']})")
            + "\n"
        )
    if review["commitsTruncated"]:
        out.write("... more commits not listed\n")
    out.write("\n")
    for f in files:
        counts = "binary" if f["binary"] else f"+{f['added']} -{f['deleted']}"
        out.write(_printable(f"{counts:>14}  {f['path']}") + "\n")
    if review["filesTruncated"]:
        out.write("... more files not listed\n")
    out.write("\n")
    out.write(_printable(review["diff"]))
    if review["truncated"]:
        out.write("\n[diff truncated: it is longer than the server shows]\n")
    out.flush()


def _cmd_review(args: argparse.Namespace) -> int:
    client = _owner_client(args)
    if args.merge:
        merged = client.merge(args.session_id)
        if args.json:
            _print_json(merged)
        else:
            sys.stdout.write(
                f"merged {merged['branch']} into {merged['target']}: {merged['commit']}\n"
            )
        return EXIT_OK
    review = client.review(args.session_id)
    if args.json:
        _print_json(review)
    else:
        _print_review(review)
    return EXIT_OK


def _cmd_token_path(args: argparse.Namespace) -> int:
    candidates = token_file_candidates()
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.R_OK):
            sys.stdout.write(path + "\n")
            return EXIT_OK
    sys.stderr.write("mitzo: no readable token file; looked in:\n")
    for path in candidates:
        sys.stderr.write(f"  - {path}\n")
    return EXIT_UNREACHABLE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mitzo",
        description="Talk to mitzod from shell hooks. Exit codes: 0 ok, 1 the server "
        "said no, 2 usage, 3 cannot reach the server or find a token.",
    )
    p.add_argument("--url", help="server URL (default: $MITZO_URL, else http://127.0.0.1:3100)")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per call, retries included (default 10)"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("version", help="print the server's version")
    s.set_defaults(func=_cmd_version)
    s = sub.add_parser("health", help="check that the server answers")
    s.set_defaults(func=_cmd_health)

    hook = sub.add_parser("hook", help="Claude Code hooks (read the hook's JSON on stdin)").add_subparsers(
        dest="hook_command", metavar="EVENT"
    )
    hook.required = True
    s = hook.add_parser(
        "worktree-create",
        help="WorktreeCreate: mitzod makes a worktree of the repo Claude runs in; prints its path",
    )
    s.set_defaults(func=_cmd_hook_worktree_create)
    s = hook.add_parser("worktree-remove", help="WorktreeRemove: mitzod removes that worktree")
    s.set_defaults(func=_cmd_hook_worktree_remove)
    s = hook.add_parser(
        "session-start", help="SessionStart: register the session with mitzod (prints additionalContext)"
    )
    s.add_argument("--source", default="claude-code", help="who starts it (default claude-code)")
    s.add_argument("--summary")
    s.add_argument("--mode", choices=["ask", "agent", "auto"])
    s.add_argument("--context", help="more text for Claude's additionalContext")
    s.set_defaults(func=_cmd_hook_session_start)

    s = sub.add_parser(
        "session-start",
        help="deprecated: use `mitzo hook worktree-create` with `claude --worktree`",
    )
    s.add_argument("--source", required=True, help="who starts it, e.g. claude-code")
    s.add_argument("--prompt", help="initial prompt (starts a headless run)")
    s.add_argument("--summary")
    s.add_argument("--mode", choices=["ask", "agent", "auto"])
    s.add_argument("--model")
    s.set_defaults(func=_cmd_session_start)

    task = sub.add_parser("task", help="the agent task tools").add_subparsers(
        dest="task_command", metavar="ACTION"
    )
    task.required = True

    def task_parser(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        tp = task.add_parser(name, help=help)
        tp.add_argument(
            "--session-id", help="session to act for (default $MITZO_SESSION_ID; a session token names its own)"
        )
        tp.set_defaults(func=func)
        return tp

    s = task_parser("set", "replace this session's task list", _cmd_task_set)
    s.add_argument("titles", nargs="*", metavar="TITLE")
    s.add_argument("--json", metavar="JSON", help='[{"title", "description"?, "priority"?}, ...] or - for stdin')
    s = task_parser("complete", "mark the current task done", _cmd_task_complete)
    s.add_argument("summary", metavar="SUMMARY")
    task_parser("status", "show this session's tasks", _cmd_task_status)
    s = task_parser("block", "mark the current task blocked", _cmd_task_block)
    s.add_argument("reason", metavar="REASON")
    s = task_parser("artifact", "attach KEY=VALUE to the current task", _cmd_task_artifact)
    s.add_argument("key", metavar="KEY")
    s.add_argument("value", metavar="VALUE")
    s.add_argument("--json-value", action="store_true", help="parse VALUE as JSON")

    signal = sub.add_parser("signal", help="report an external event").add_subparsers(
        dest="signal_command", metavar="ACTION"
    )
    signal.required = True
    s = signal.add_parser("resolve", help="POST /api/signals/resolve")
    s.add_argument("--type", required=True, choices=["gh_ci", "gh_review", "human_approval"])
    s.add_argument(
        "--status",
        required=True,
        help="gh_ci: success/failure; gh_review: approved/changes_requested; "
        "human_approval: approved/rejected; pass/fail for any",
    )
    s.add_argument("--repo")
    s.add_argument("--pr")
    s.add_argument("--pr-url")
    s.add_argument("--artifacts", metavar="JSON", help="a JSON object, or - for stdin")
    s.set_defaults(func=_cmd_signal_resolve)

    s = sub.add_parser(
        "review",
        help="show a session's commits and diff against the main checkout's branch; --merge merges it",
        description="The owner's review of a session's work, through mitzod's confined git. "
        "Needs the owner's credential: $MITZO_OWNER_TOKEN (a token from a login), or the "
        "passphrase (--passphrase-stdin, or a prompt on the terminal).",
    )
    s.add_argument("session_id", metavar="SESSION_ID")
    s.add_argument(
        "--merge",
        action="store_true",
        help="merge the session's branch into the main checkout's current branch (a merge commit)",
    )
    s.add_argument("--json", action="store_true", help="print the server's JSON answer")
    s.add_argument("--passphrase-stdin", action="store_true", help="read the passphrase from stdin")
    s.set_defaults(func=_cmd_review)

    token = sub.add_parser("token", help="the token file").add_subparsers(
        dest="token_command", metavar="ACTION"
    )
    token.required = True
    s = token.add_parser("path", help="print the token file the client would use")
    s.set_defaults(func=_cmd_token_path)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _UsageError as e:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"mitzo: {e}\n")
        return EXIT_USAGE
    except (APIConnectionError, TokenNotFoundError) as e:
        sys.stderr.write(f"mitzo: {e}\n")
        return EXIT_UNREACHABLE
    except MitzoError as e:
        sys.stderr.write(f"mitzo: {e}\n")
        return EXIT_REFUSED
    except ValueError as e:
        sys.stderr.write(f"mitzo: {e}\n")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
