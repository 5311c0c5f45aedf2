//! Session worktrees: `<repo>/.claude/worktrees/<id>` on branch `session/<id>`.
