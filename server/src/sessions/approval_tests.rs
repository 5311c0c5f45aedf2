//! What a person reads to decide: titles, summaries and diffs of each kind
//! of call, and the reasons given when no diff can be made.

use super::*;
use serde_json::json;

#[test]
fn bash_shows_command_place_and_description() {
    let a = describe(
        "Bash",
        &json!({"command": "rm -rf build", "description": "Clean the build"}),
        Path::new("/w"),
    );
    assert_eq!(a.title, "Run a command");
    assert!(a.summary.contains("$ rm -rf build"));
    assert!(a.summary.contains("in /w"));
    assert!(a.summary.contains("Clean the build"));
    assert!(a.diff.is_none());
    assert!(a.audit_line().starts_with("Run a command: $ rm -rf build"));
}

#[test]
fn edits_and_writes_diff_against_the_current_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.txt"), "one\ntwo\nthree\n").unwrap();
    let path = d.path().join("a.txt");
    let a = describe(
        "Edit",
        &json!({"file_path": path, "old_string": "two", "new_string": "TWO"}),
        d.path(),
    );
    assert_eq!(a.title, "Edit a.txt");
    let diff = a.diff.unwrap();
    assert!(
        diff.contains("--- a/a.txt") && diff.contains("+++ b/a.txt"),
        "{diff}"
    );
    assert!(diff.contains("-two\n") && diff.contains("+TWO\n"), "{diff}");
    let w = describe(
        "Write",
        &json!({"file_path": "new/b.txt", "content": "hello\n"}),
        d.path(),
    );
    assert_eq!(w.title, "Write new/b.txt");
    assert!(w.summary.starts_with("create new/b.txt"));
    assert!(w.diff.unwrap().contains("+hello"));
    let m = describe(
        "MultiEdit",
        &json!({"file_path": path, "edits": [
            {"old_string": "one", "new_string": "1"},
            {"old_string": "three", "new_string": "3"}]}),
        d.path(),
    );
    let diff = m.diff.unwrap();
    assert!(diff.contains("+1\n") && diff.contains("+3\n"), "{diff}");
    let missing = describe(
        "Edit",
        &json!({"file_path": path, "old_string": "zzz", "new_string": "y"}),
        d.path(),
    );
    assert!(missing.summary.contains("not in the file") && missing.diff.is_none());
}

#[test]
fn binary_large_outside_and_linked_files_say_why() {
    let d = tempfile::tempdir().unwrap();
    let wt = d.path().join("wt");
    std::fs::create_dir(&wt).unwrap();
    std::fs::write(wt.join("bin"), b"a\0b").unwrap();
    std::fs::write(wt.join("big"), vec![b'x'; MAX_DIFF_INPUT as usize + 1]).unwrap();
    std::fs::write(d.path().join("secret"), "top secret\n").unwrap();
    std::os::unix::fs::symlink(d.path().join("secret"), wt.join("link")).unwrap();
    let w = |p: &str| {
        describe(
            "Write",
            &json!({"file_path": wt.join(p), "content": "x"}),
            &wt,
        )
    };
    assert!(w("bin").summary.contains("binary"), "{:?}", w("bin"));
    assert!(w("big").summary.contains("too large"));
    let linked = w("link");
    assert!(
        linked.diff.is_none(),
        "a link out of the worktree is not followed"
    );
    assert!(!linked.summary.contains("top secret"));
    let outside = describe(
        "Write",
        &json!({"file_path": d.path().join("secret"), "content": "x"}),
        &wt,
    );
    assert!(outside.summary.contains("outside the worktree") && outside.diff.is_none());
    // Control: the same file inside the worktree is diffed.
    std::fs::write(wt.join("plain"), "top secret\n").unwrap();
    assert!(w("plain").diff.unwrap().contains("-top secret"));
}

#[test]
fn diffs_are_capped() {
    let d = tempfile::tempdir().unwrap();
    let content: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let a = describe(
        "Write",
        &json!({"file_path": "f", "content": content}),
        d.path(),
    );
    let diff = a.diff.unwrap();
    assert!(diff.len() <= MAX_DIFF + 200 && diff.contains("diff cut at"));
}

#[test]
fn web_and_mcp_calls() {
    let w = describe(
        "WebFetch",
        &json!({"url": "https://x.test/a", "prompt": "p"}),
        Path::new("/w"),
    );
    assert_eq!(w.title, "Fetch a web page");
    assert!(w.summary.starts_with("https://x.test/a"));
    let m = describe(
        "mcp__github__create_issue",
        &json!({"title": "t"}),
        Path::new("/w"),
    );
    assert_eq!(m.title, "Use create_issue of MCP server github");
    assert!(m.summary.contains("\"title\": \"t\""));
}

#[test]
fn unreadable_targets_say_why_instead_of_failing() {
    let d = tempfile::tempdir().unwrap();
    let wt = d.path();
    std::fs::create_dir(wt.join("dir")).unwrap();
    nix::unistd::mkfifo(
        &wt.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let edit = |p: &str| {
        describe(
            "Edit",
            &json!({"file_path": wt.join(p), "old_string": "a", "new_string": "b"}),
            wt,
        )
    };
    // A directory, and a FIFO (opening it must not wait for a writer).
    let dir = edit("dir");
    assert_eq!(dir.title, "Edit dir");
    assert!(dir.summary.contains("is a directory"), "{dir:?}");
    assert!(dir.diff.is_none());
    let fifo = describe(
        "Write",
        &json!({"file_path": wt.join("fifo"), "content": "x"}),
        wt,
    );
    assert!(fifo.summary.contains("not a regular file"), "{fifo:?}");
    assert!(fifo.diff.is_none());
    // Mode 000: unreadable for anyone but root, who reads it anyway.
    std::fs::write(wt.join("locked"), "a\n").unwrap();
    std::fs::set_permissions(
        wt.join("locked"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let locked = edit("locked");
    if nix::unistd::geteuid().is_root() {
        assert!(
            locked.diff.unwrap().contains("+b"),
            "root reads a mode-000 file"
        );
    } else {
        assert!(locked.summary.contains("cannot read it"), "{locked:?}");
        assert!(locked.diff.is_none());
    }
    // Control: a readable file is diffed.
    std::fs::write(wt.join("plain"), "a\n").unwrap();
    assert!(edit("plain").diff.unwrap().contains("-a\n+b"));
}

#[test]
fn the_audit_line_holds_the_whole_summary() {
    let command = format!("echo {}", "long-argument ".repeat(120));
    let a = describe(
        "Bash",
        &json!({"command": command, "description": "Say a lot"}),
        Path::new("/w"),
    );
    assert!(a.summary.chars().count() > 1500 && a.summary.chars().count() <= MAX_SUMMARY);
    let line = a.audit_line();
    assert_eq!(
        line,
        format!("Run a command: $ {command} · in /w · Say a lot"),
        "one line, nothing cut"
    );
    assert!(!line.contains('\n'));
    // A phone notification shows the start of it only.
    let notice = notice_line(&line);
    assert_eq!(notice.chars().count(), 501);
    assert!(line.starts_with(notice.trim_end_matches('…')));
}
