//! Session worktrees on real repos, through mitzod's confined git.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a test fails by panicking; raw fds and pre_exec set-ups

mod sandbox_common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use mitzo_sandbox::Enforcement;
use mitzod::config::{SessionConfig, WorktreeCleanup};
use mitzod::git::Git;
use mitzod::worktree::*;
use sandbox_common::*;

fn git_tool() -> Option<Git> {
    if !landlock_or_skip("worktree") {
        return None;
    }
    Some(Git::new(Enforcement::Required).unwrap())
}

fn branches(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .current_dir(repo)
        .args(["branch", "--list", "--format=%(refname:short)"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_reuse_and_remove() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap().join("repo");
    init_repo(&repo);
    let id = new_session_id();
    let wt = prepare_session_dir(&g, &repo, &id, true).unwrap();
    assert_eq!(wt, repo.join(".mitzo/checkouts").join(&id));
    assert!(wt.join("README").exists());
    assert!(branches(&repo).contains(&format!("session/{id}")));
    // Reuse: a file written there survives a second prepare.
    std::fs::write(wt.join("keep"), "x").unwrap();
    assert_eq!(prepare_session_dir(&g, &repo, &id, true).unwrap(), wt);
    assert!(wt.join("keep").exists());
    // A clone with a git dir of its own, borrowing the main objects.
    assert!(wt.join(".git").is_dir());
    let alt = std::fs::read_to_string(wt.join(".git/objects/info/alternates")).unwrap();
    assert_eq!(alt.trim(), repo.join(".git/objects").display().to_string());
    assert!(!repo.join(".git/worktrees").exists());
    // Dirty: refused without force; branch kept after removal.
    let err = remove_session_checkout(&g, &repo, &id, false).unwrap_err();
    assert!(err.to_string().contains("uncommitted"), "{err}");
    assert!(wt.exists());
    // A commit in the checkout comes back to the main repo's branch on removal.
    std::fs::remove_file(wt.join("keep")).unwrap();
    std::fs::write(wt.join("work"), "done\n").unwrap();
    git(&wt, &["add", "work"]);
    git(&wt, &["commit", "-qm", "session work"]);
    assert!(remove_session_checkout(&g, &repo, &id, false).unwrap());
    assert!(!wt.exists());
    assert!(branches(&repo).contains(&format!("session/{id}")));
    let shown = std::process::Command::new("git")
        .current_dir(&repo)
        .args(["show", &format!("session/{id}:work")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout), "done\n");
    // Nothing left to remove: false, no error.
    assert!(!remove_session_checkout(&g, &repo, &id, false).unwrap());
    // Recreate on the kept branch, with the session's work.
    let again = prepare_session_dir(&g, &repo, &id, true).unwrap();
    assert!(again.join("README").exists());
    assert!(again.join("work").exists());
}

#[test]
fn isolation_false_is_the_repo_itself() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap().join("repo");
    init_repo(&repo);
    let id = new_session_id();
    assert_eq!(prepare_session_dir(&g, &repo, &id, false).unwrap(), repo);
    assert!(!repo.join(".mitzo").exists());
}

/// A directory mitzod did not make for this session (no record, or a
/// record naming another inode) is never removed or reused; one it began
/// and did not finish is replaced.
#[test]
fn foreign_dir_is_left_alone_half_made_one_is_replaced() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap().join("repo");
    init_repo(&repo);
    let id = new_session_id();
    let there = repo.join(".mitzo/checkouts").join(&id);
    std::fs::create_dir_all(there.join("junk")).unwrap();
    let err = prepare_session_dir(&g, &repo, &id, true).unwrap_err();
    assert!(
        err.to_string().contains("not the checkout mitzod made"),
        "{err}"
    );
    let err = remove_session_checkout(&g, &repo, &id, true).unwrap_err();
    assert!(
        err.to_string().contains("not the checkout mitzod made"),
        "{err}"
    );
    assert!(there.join("junk").exists());

    // Same path, a directory swapped in after mitzod made its own.
    std::fs::remove_dir_all(&there).unwrap();
    let wt = prepare_session_dir(&g, &repo, &id, true).unwrap();
    std::fs::rename(&wt, repo.join("moved")).unwrap();
    std::fs::create_dir_all(there.join("junk")).unwrap();
    assert!(prepare_session_dir(&g, &repo, &id, true).is_err());
    assert!(remove_session_checkout(&g, &repo, &id, true).is_err());
    assert!(there.join("junk").exists());

    // A record still saying "pending": mitzod's own half-made directory.
    std::fs::write(repo.join(".git/mitzod/checkouts").join(&id), "pending\n").unwrap();
    let wt = prepare_session_dir(&g, &repo, &id, true).unwrap();
    assert!(wt.join("README").exists());
    assert!(!wt.join("junk").exists());
}

#[test]
fn bad_input_creates_nothing() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let id = new_session_id();
    let err = prepare_session_dir(&g, &root.join("missing"), &id, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    let plain = root.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let err = prepare_session_dir(&g, &plain, &id, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not the top level of a git repository"),
        "{err}"
    );
    assert!(!plain.join(".mitzo").exists());
    let repo = root.join("repo");
    init_repo(&repo);
    for bad in ["../../x", "2024-01-01-abc/defabcdef", "2024-01-01-..", "x"] {
        let err = prepare_session_dir(&g, &repo, bad, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid session id"), "{err}");
    }
    assert!(!repo.join(".mitzo").exists());
    assert!(!branches(&repo).contains("session/"));
}

#[test]
fn symlinked_worktrees_dir_is_refused() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let repo = root.join("repo");
    init_repo(&repo);
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(repo.join(".mitzo")).unwrap();
    std::os::unix::fs::symlink(&outside, repo.join(".mitzo/checkouts")).unwrap();
    let err = prepare_session_dir(&g, &repo, &new_session_id(), true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn failure_half_way_leaves_no_dir_or_branch() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap().join("repo");
    init_repo(&repo);
    // A corrupt blob: the branch is created, then the clone's checkout
    // fails.
    std::fs::write(repo.join("big"), "payload\n").unwrap();
    git(&repo, &["add", "big"]);
    git(&repo, &["commit", "-qm", "big"]);
    let blob = String::from_utf8(
        std::process::Command::new("git")
            .current_dir(&repo)
            .args(["rev-parse", "HEAD:big"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let blob = blob.trim();
    let obj = repo.join(".git/objects").join(&blob[..2]).join(&blob[2..]);
    std::fs::set_permissions(&obj, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&obj, b"corrupt").unwrap();
    let id = new_session_id();
    let res = prepare_session_dir(&g, &repo, &id, true);
    assert!(res.is_err(), "checkout of a corrupt blob must fail");
    assert!(
        !repo.join(".mitzo/checkouts").join(&id).exists(),
        "half-made dir left behind"
    );
    assert!(
        !branches(&repo).contains(&format!("session/{id}")),
        "half-made branch left behind"
    );
    assert!(
        !repo.join(".git/mitzod/checkouts").join(&id).exists(),
        "half-made record left behind"
    );
}

#[test]
fn stale_cleanup_report_and_execute() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap().join("repo");
    init_repo(&repo);
    let old = SystemTime::now() - Duration::from_secs(30 * 86_400);
    let clean_id = new_session_id_at(old);
    let dirty_id = new_session_id_at(old);
    let fresh_id = new_session_id();
    for id in [&clean_id, &dirty_id, &fresh_id] {
        prepare_session_dir(&g, &repo, id, true).unwrap();
    }
    std::fs::write(worktree_path(&repo, &dirty_id).join("wip"), "x").unwrap();
    let now = SystemTime::now();
    let mut cfg = SessionConfig::default();
    assert_eq!(cfg.worktree_cleanup, WorktreeCleanup::Report);

    // An old id but a fresh mtime: not stale.
    let report = cleanup_stale(&g, &repo, &cfg, now).unwrap();
    assert!(report.stale.is_empty(), "{report:?}");
    // Age the old ones by mtime as well.
    for id in [&clean_id, &dirty_id] {
        let gitdir = worktree_path(&repo, id).join(".git");
        for p in [
            worktree_path(&repo, id),
            gitdir.join("index"),
            gitdir.join("HEAD"),
            gitdir.join("logs/HEAD"),
        ] {
            if p.exists() {
                std::fs::File::open(&p).unwrap().set_modified(old).unwrap();
            }
        }
    }

    let report = cleanup_stale(&g, &repo, &cfg, now).unwrap();
    let ids: Vec<_> = report.stale.iter().map(|w| w.id.clone()).collect();
    assert!(
        ids.contains(&clean_id) && ids.contains(&dirty_id) && !ids.contains(&fresh_id),
        "{ids:?}"
    );
    assert!(report.removed.is_empty());
    assert!(
        worktree_path(&repo, &clean_id).exists(),
        "report must touch nothing"
    );

    cfg.worktree_cleanup = WorktreeCleanup::Execute;
    let report = cleanup_stale(&g, &repo, &cfg, now).unwrap();
    assert_eq!(report.removed, vec![clean_id.clone()]);
    assert_eq!(report.kept_dirty, vec![dirty_id.clone()]);
    assert!(!worktree_path(&repo, &clean_id).exists());
    assert!(worktree_path(&repo, &dirty_id).join("wip").exists());
    assert!(worktree_path(&repo, &fresh_id).exists());
    assert!(
        branches(&repo).contains(&format!("session/{clean_id}")),
        "branches are kept"
    );
}

fn porcelain(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .current_dir(repo)
        .args(["status", "--porcelain", "--untracked-files=all"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn session_checkouts_stay_out_of_git_status() {
    let _g = serial();
    let Some(g) = git_tool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let repo = std::fs::canonicalize(dir.path()).unwrap().join("repo");
    init_repo(&repo);
    assert_eq!(porcelain(&repo), "", "a clean repo to start with");
    let id = new_session_id();
    prepare_session_dir(&g, &repo, &id, true).unwrap();
    assert_eq!(
        porcelain(&repo),
        "",
        "the checkout shows in `git status` (so `git add -A` would take it)"
    );
    let exclude = std::fs::read_to_string(repo.join(".git/info/exclude")).unwrap();
    assert_eq!(
        exclude.matches("/.mitzo/checkouts/").count(),
        1,
        "{exclude}"
    );
    // A second session adds no second line.
    prepare_session_dir(&g, &repo, &new_session_id(), true).unwrap();
    let again = std::fs::read_to_string(repo.join(".git/info/exclude")).unwrap();
    assert_eq!(again, exclude);
    // The control: without that line the same checkout is untracked.
    std::fs::write(repo.join(".git/info/exclude"), "").unwrap();
    let listed = porcelain(&repo);
    assert!(listed.starts_with("?? .mitzo/checkouts/"), "{listed}");
}
