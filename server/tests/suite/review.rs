//! The owner's review and merge of a session's work
//! (`GET /api/sessions/{id}/review`, `POST /api/sessions/{id}/merge`):
//! commits made in a session's checkout, as the agent makes them, reach the
//! main branch only through mitzod's confined git; refusals leave the main
//! checkout as it was; and nothing the agent planted in its checkout's git
//! dir runs.

use crate::common;
use crate::sessions_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mitzo_testkit::git::chown_to_service_user;
use serde_json::json;
use sessions_support::*;

/// git as root in a directory the server's user owns, as the owner's (or
/// the agent's) own git would run there: their config, hooks and all.
fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "safe.directory=*",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commit `files` in the session's checkout as the agent would, then give
/// everything back to the server's user. Returns the new commit.
fn agent_commit(wt: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (name, content) in files {
        std::fs::write(wt.join(name), content).unwrap();
        git_out(wt, &["add", "--", name]);
    }
    git_out(
        wt,
        &[
            "commit",
            "-q",
            "--no-verify",
            "--author",
            "Agent Smith <agent@example.com>",
            "-m",
            message,
        ],
    );
    chown_to_service_user(wt);
    git_out(wt, &["rev-parse", "HEAD"])
}

struct Fx {
    s: SessionServer,
    owner: String,
}

impl Fx {
    fn start() -> Fx {
        let s = start("");
        let owner = format!("Bearer {}", s.jwt);
        Fx { s, owner }
    }

    /// A new isolated session (no agent running): its id and checkout.
    fn session(&self) -> (String, PathBuf) {
        let r = self.s.create(json!({"source": "test"}));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let id = v["sessionId"].as_str().unwrap().to_string();
        let wt = PathBuf::from(v["worktrees"]["primary"]["path"].as_str().unwrap());
        assert!(wt.join(".git").is_dir(), "{}", wt.display());
        (id, wt)
    }

    fn review_as(&self, id: &str, auth: &[(&str, &str)]) -> Response {
        self.s
            .server
            .get(&format!("/api/sessions/{id}/review"), auth)
    }

    fn merge_as(&self, id: &str, auth: &[(&str, &str)]) -> Response {
        let origin = format!("http://127.0.0.1:{}", self.s.server.port);
        let mut h = auth.to_vec();
        h.push(("Origin", &origin));
        self.s
            .server
            .post(&format!("/api/sessions/{id}/merge"), &h, "{}")
    }

    fn review(&self, id: &str) -> Response {
        self.review_as(id, &[("Authorization", &self.owner)])
    }

    fn merge(&self, id: &str) -> Response {
        self.merge_as(id, &[("Authorization", &self.owner)])
    }

    fn main_head(&self) -> String {
        git_out(&self.s.repo, &["rev-parse", "refs/heads/main"])
    }
}

#[test]
fn review_shows_the_sessions_commits_and_merge_lands_them_on_the_main_branch() {
    if !landlock_or_skip(
        "review_shows_the_sessions_commits_and_merge_lands_them_on_the_main_branch",
    ) {
        return;
    }
    let f = Fx::start();
    let (id, wt) = f.session();
    let before = f.main_head();

    // No commits yet: an empty review, and nothing to merge.
    let r = f.review(&id);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.s.server.log_text());
    let v = r.json();
    assert_eq!(v["commits"], json!([]));
    assert_eq!(v["upToDate"], true);
    assert_eq!(v["target"], "main");
    assert_eq!(v["branch"], format!("session/{id}"));
    let r = f.merge(&id);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("nothing to merge"), "{}", r.error());

    let sha = agent_commit(&wt, &[("NOTES", "session work\n")], "Add notes");
    let r = f.review(&id);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.s.server.log_text());
    let v = r.json();
    assert_eq!(v["fetched"], true);
    assert_eq!(v["head"], sha.as_str());
    assert_eq!(v["targetCommit"], before.as_str());
    let commits = v["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 1, "{v:#}");
    assert_eq!(commits[0]["sha"], sha.as_str());
    assert_eq!(commits[0]["subject"], "Add notes");
    assert_eq!(commits[0]["author"], "Agent Smith");
    assert_eq!(commits[0]["authorEmail"], "agent@example.com");
    assert_eq!(
        v["files"],
        json!([{"path": "NOTES", "added": 1, "deleted": 0, "binary": false}])
    );
    assert_eq!(
        (v["added"].as_u64(), v["deleted"].as_u64()),
        (Some(1), Some(0))
    );
    let diff = v["diff"].as_str().unwrap();
    assert!(diff.contains("diff --git a/NOTES b/NOTES"), "{diff}");
    assert!(diff.contains("\n+session work\n"), "{diff}");
    assert_eq!(v["truncated"], false);
    assert_eq!(v["upToDate"], false);
    // Reviewing fetched the branch and moved nothing else.
    assert_eq!(f.main_head(), before);
    assert_eq!(
        git_out(
            &f.s.repo,
            &["rev-parse", &format!("refs/heads/session/{id}")]
        ),
        sha
    );

    // Merge: a merge commit on main, by mitzod, with the session's commit
    // as its second parent; the file is in the main checkout.
    let r = f.merge(&id);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.s.server.log_text());
    let m = r.json();
    assert_eq!(m["target"], "main");
    assert_eq!(m["head"], sha.as_str());
    let merged = m["commit"].as_str().unwrap().to_string();
    assert_eq!(f.main_head(), merged);
    assert_eq!(
        git_out(&f.s.repo, &["log", "-1", "--format=%P", &merged]),
        format!("{before} {sha}")
    );
    assert_eq!(
        git_out(
            &f.s.repo,
            &["log", "-1", "--format=%an <%ae>|%cn <%ce>", &merged]
        ),
        "mitzod <mitzod@localhost>|mitzod <mitzod@localhost>"
    );
    assert_eq!(
        std::fs::read_to_string(f.s.repo.join("NOTES")).unwrap(),
        "session work\n"
    );
    assert_eq!(
        git_out(
            &f.s.repo,
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
    // Merged: nothing left to merge, and the review says so.
    let r = f.merge(&id);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("nothing to merge"), "{}", r.error());
    assert_eq!(f.review(&id).json()["upToDate"], true);

    // A diff past the cap is cut, with the flag set; the file list is whole.
    let big: String = (0..60_000)
        .map(|i| format!("line {i:06} of a big file\n"))
        .collect();
    assert!(big.len() > 1024 * 1024);
    agent_commit(&wt, &[("BIG", &big)], "Big file");
    let v = f.review(&id).json();
    assert_eq!(v["truncated"], true, "{}", v["files"]);
    let diff = v["diff"].as_str().unwrap();
    assert!(diff.len() <= 1024 * 1024, "{}", diff.len());
    assert!(diff.len() > 512 * 1024, "{}", diff.len());
    assert!(diff.ends_with('\n'));
    assert!(!diff.contains("line 059999"), "the end of the file is cut");
    assert_eq!(
        v["files"],
        json!([{"path": "BIG", "added": 60_000, "deleted": 0, "binary": false}])
    );
    assert_eq!(v["commits"][0]["subject"], "Big file");
}

#[test]
fn merge_refusals_leave_the_main_checkout_as_it_was() {
    if !landlock_or_skip("merge_refusals_leave_the_main_checkout_as_it_was") {
        return;
    }
    let f = Fx::start();
    let repo = f.s.repo.clone();
    let (id, wt) = f.session();
    agent_commit(
        &wt,
        &[("README.md", "from the session\n")],
        "Rewrite README",
    );
    let before = f.main_head();

    // Uncommitted changes in the main checkout: 409, nothing touched.
    std::fs::write(repo.join("README.md"), "an edit of the owner's\n").unwrap();
    let r = f.merge(&id);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("uncommitted changes"), "{}", r.error());
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "an edit of the owner's\n"
    );
    assert_eq!(f.main_head(), before);

    // A conflict: 409 naming the file, the checkout exactly as it was.
    git_out(&repo, &["commit", "-qam", "Owner's edit"]);
    chown_to_service_user(&repo);
    let owner_commit = f.main_head();
    let status_before = git_out(&repo, &["status", "--porcelain"]);
    let r = f.merge(&id);
    assert_eq!(r.status, 409, "{}\n{}", r.text(), f.s.server.log_text());
    assert!(
        r.error().contains("conflicts in README.md"),
        "{}",
        r.error()
    );
    assert_eq!(f.main_head(), owner_commit);
    assert_eq!(git_out(&repo, &["status", "--porcelain"]), status_before);
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "an edit of the owner's\n"
    );
    assert!(!repo.join(".git/MERGE_HEAD").exists());
    assert_eq!(git_out(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    // The review still answers, and shows what would conflict.
    let v = f.review(&id).json();
    assert_eq!(v["files"][0]["path"], "README.md");
    assert_eq!(v["upToDate"], false);

    // A branch that writes under .mitzo/ (every session's checkout lives
    // there) is refused, nothing written.
    let (id2, wt2) = f.session();
    std::fs::create_dir_all(wt2.join(".mitzo/checkouts")).unwrap();
    agent_commit(&wt2, &[(".mitzo/checkouts/planted", "x\n")], "Plant");
    let r = f.merge(&id2);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("under .mitzo/"), "{}", r.error());
    assert!(!repo.join(".mitzo/checkouts/planted").exists());
    assert_eq!(f.main_head(), owner_commit);

    // Unknown and malformed sessions.
    let r = f.review("2026-01-02-0123456789ab");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = f.merge("2026-01-02-0123456789ab");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = f.review("..%2Fx");
    assert_eq!(r.status, 400, "{}", r.text());

    // Owner only: no credential, the internal token and a session's own
    // token (the agent's) are refused, and nothing moves.
    let internal = f.s.internal.clone();
    let (agent_session, agent_token) = f.s.session_with_token();
    let agent_bearer = format!("Bearer {agent_token}");
    for sid in [id.as_str(), agent_session.as_str()] {
        for (who, auth, status) in [
            ("nobody", vec![], 401),
            (
                "internal",
                vec![("X-Internal-Token", internal.as_str())],
                403,
            ),
            ("agent", vec![("Authorization", agent_bearer.as_str())], 403),
        ] {
            let r = f.review_as(sid, &auth);
            assert_eq!(r.status, status, "review as {who}: {}", r.text());
            let r = f.merge_as(sid, &auth);
            assert_eq!(r.status, status, "merge as {who}: {}", r.text());
        }
    }
    assert_eq!(f.main_head(), owner_commit);
}

/// The agent plants programs in its checkout's git dir (`core.fsmonitor`,
/// a hooks path, hooks, filter/diff/merge drivers that its committed
/// `.gitattributes` names). Review and merge run none of them; the owner's
/// own plain git in that checkout does (the control).
#[test]
fn review_and_merge_run_nothing_the_agent_planted_in_its_checkout() {
    if !landlock_or_skip("review_and_merge_run_nothing_the_agent_planted_in_its_checkout") {
        return;
    }
    let f = Fx::start();
    let repo = f.s.repo.clone();
    let (id, wt) = f.session();
    // Where a planted program leaves its mark: a directory anyone may
    // write (so only not running stops it), and inside the main repo and
    // its git dir, which the merge's git may write.
    let marks = f.s.server.dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = marks.join("ran");
    let in_repo = [repo.join("planted-ran"), repo.join(".git/planted-ran")];
    let script = wt.join(".git/evil.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$0 $*\" >> '{}'\necho x > '{}'\necho x > '{}'\nexit 0\n",
            marker.display(),
            in_repo[0].display(),
            in_repo[1].display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.display().to_string();
    agent_commit(
        &wt,
        &[
            (".gitattributes", "WORK filter=evil diff=evil merge=evil\n"),
            ("WORK", "the session's work\n"),
        ],
        "Work, with attributes naming planted drivers",
    );
    let hooks = wt.join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "post-checkout",
        "post-merge",
        "pre-merge-commit",
        "reference-transaction",
        "pre-auto-gc",
        "post-rewrite",
        "fsmonitor-watchman",
    ] {
        std::fs::copy(&script, hooks.join(hook)).unwrap();
        std::fs::set_permissions(hooks.join(hook), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = wt.join(".git/config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[core]\n\tfsmonitor = {s}\n\thooksPath = {h}\n\tpager = {s}\n\tsshCommand = {s}\n\
         [filter \"evil\"]\n\tclean = {s}\n\tsmudge = {s}\n\
         [diff \"evil\"]\n\ttextconv = {s}\n\tcommand = {s}\n\
         [merge \"evil\"]\n\tdriver = {s}\n\
         [uploadpack]\n\tpackObjectsHook = {s}\n",
        h = hooks.display()
    ));
    std::fs::write(&config, text).unwrap();
    chown_to_service_user(&wt);

    let r = f.review(&id);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.s.server.log_text());
    let v = r.json();
    assert_eq!(v["commits"].as_array().unwrap().len(), 1, "{v:#}");
    assert!(v["diff"].as_str().unwrap().contains("+the session's work"));
    let r = f.merge(&id);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.s.server.log_text());
    assert_eq!(
        std::fs::read_to_string(repo.join("WORK")).unwrap(),
        "the session's work\n"
    );
    for p in in_repo.iter().chain([&marker]) {
        assert!(!p.exists(), "a planted program ran: {} exists", p.display());
    }

    // Control: the owner's own plain git in the agent's checkout runs what
    // the agent planted there (fsmonitor on `status`, hooks on `commit`).
    let _ = Command::new("git")
        .current_dir(&wt)
        .args(["-c", "safe.directory=*", "status", "--porcelain"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(ran.contains("evil.sh"), "fsmonitor did not run: {ran:?}");
    git_out(&wt, &["commit", "-q", "--allow-empty", "-m", "control"]);
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        ran.contains("hooks/pre-commit"),
        "hooks did not run: {ran:?}"
    );
}

/// Merges are in the audit log as the owner's decisions: a refused one
/// with its reason, a done one with the session commit and the merge
/// commit, newest first. A review, and merge requests refused for want of
/// the owner's credential, write no row.
#[test]
fn merges_and_refused_merges_are_audited() {
    if !landlock_or_skip("merges_and_refused_merges_are_audited") {
        return;
    }
    let f = Fx::start();
    let repo = f.s.repo.clone();
    let (id, wt) = f.session();
    let merges = |id: &str| -> Vec<serde_json::Value> {
        f.s.audit(id)
            .into_iter()
            .filter(|a| a["tool"] == "Merge")
            .collect()
    };

    // Refused: nothing to merge yet.
    let r = f.merge(&id);
    assert_eq!(r.status, 409, "{}", r.text());
    // Refused: the owner's uncommitted change in the main checkout.
    let sha = agent_commit(&wt, &[("NOTES", "session work\n")], "Add notes");
    std::fs::write(repo.join("README.md"), "an edit of the owner's\n").unwrap();
    let r = f.merge(&id);
    assert_eq!(r.status, 409, "{}", r.text());
    git_out(&repo, &["checkout", "--", "README.md"]);
    chown_to_service_user(&repo);
    // Neither a review nor a merge without the owner's credential is a row.
    assert_eq!(f.review(&id).status, 200);
    let internal = f.s.internal.clone();
    let r = f.merge_as(&id, &[("X-Internal-Token", internal.as_str())]);
    assert_eq!(r.status, 403, "{}", r.text());
    // Merged.
    let r = f.merge(&id);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.s.server.log_text());
    let commit = r.json()["commit"].as_str().unwrap().to_string();

    let rows = merges(&id);
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let branch = format!("session/{id}");
    for row in &rows {
        assert_eq!(row["sessionId"], id.as_str());
        assert_eq!(row["decidedBy"], "owner");
    }
    assert_eq!(rows[0]["decision"], "merged", "{rows:#?}");
    assert_eq!(
        rows[0]["inputSummary"],
        format!("{branch} ({sha}) into main as {commit}")
    );
    assert_eq!(rows[1]["decision"], "refused");
    let why = rows[1]["inputSummary"].as_str().unwrap();
    assert!(
        why.starts_with(&format!("{branch}: ")) && why.contains("uncommitted changes"),
        "{why}"
    );
    assert_eq!(rows[2]["decision"], "refused");
    let why = rows[2]["inputSummary"].as_str().unwrap();
    assert!(why.contains("nothing to merge"), "{why}");

    // An unknown session: 404 and no row.
    let unknown = "2026-01-02-0123456789ab";
    assert_eq!(f.merge(unknown).status, 404);
    assert!(f.s.audit(unknown).is_empty());
}
