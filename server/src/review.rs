//! The owner's review and merge of a session's work: the session's commits
//! come into the main repo's `session/<id>` branch through mitzod's
//! confined fetch ([`crate::worktree::fetch_session_branch`]), are shown
//! against the main checkout's current branch, and are merged into it.
//!
//! Every git command is mitzod's confined git ([`crate::git::Git`]): hooks,
//! fsmonitor, filters, diff and merge drivers are off, and git runs in the
//! main repo only, never in the session's checkout, whose config and hooks
//! are the agent's. What the agent wrote (file contents, commit messages,
//! author names) is only ever data in the answers.
//!
//! A merge always makes a merge commit (never a fast-forward): it records
//! where the session's work entered the branch and who accepted it, and
//! the whole session can be reverted as one commit. The merge is computed
//! first without touching the checkout (`git merge-tree`), so a conflict
//! leaves the checkout exactly as it was; only a clean result is moved in,
//! by a fast-forward to the new merge commit.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::git::{Confined, Git};
use crate::worktree::{branch_name, check_repo, fetch_session_branch, validate_session_id};

/// The diff shown in a review is cut at this many bytes.
pub const DIFF_CAP: usize = 1024 * 1024;
/// At most this many commits are listed.
pub const COMMITS_CAP: usize = 500;
/// At most this many changed files are listed.
pub const FILES_CAP: usize = 5000;
/// Bytes of `--numstat` output read at most.
const NUMSTAT_CAP: usize = 2 * 1024 * 1024;
/// Bytes of `git log` output read at most.
const LOG_CAP: usize = 1024 * 1024;

/// Who the merge commit is by when the main repo's own config names no
/// `user.name`/`user.email` (mitzod's git reads no global config).
const DEFAULT_NAME: &str = "mitzod";
const DEFAULT_EMAIL: &str = "mitzod@localhost";

/// Merges in one process run one at a time: each reads the main checkout's
/// state and then moves it.
static MERGE_LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReviewCommit {
    pub sha: String,
    /// First line of the message, as the agent wrote it.
    pub subject: String,
    pub author: String,
    pub author_email: String,
    /// Author date, ISO 8601.
    pub date: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChangedFile {
    pub path: String,
    /// Lines added and deleted; `None` for a binary file.
    pub added: Option<u64>,
    pub deleted: Option<u64>,
    pub binary: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub session_id: String,
    /// `session/<id>` in the main repo.
    pub branch: String,
    /// The commit `branch` points at.
    pub head: String,
    /// The main checkout's current branch (short name), what a merge goes into.
    pub target: String,
    pub target_commit: String,
    /// The commits on `branch` that `target` lacks, newest first.
    pub commits: Vec<ReviewCommit>,
    pub commits_truncated: bool,
    /// Files changed since the merge base, with line counts.
    pub files: Vec<ChangedFile>,
    pub files_truncated: bool,
    pub added: u64,
    pub deleted: u64,
    /// `git diff target...branch` (from the merge base), at most
    /// [`DIFF_CAP`] bytes, lossily UTF-8.
    pub diff: String,
    /// The diff was longer and was cut.
    pub truncated: bool,
    /// `target` already contains `branch`: a merge would be refused.
    pub up_to_date: bool,
    /// Whether the branch came from the session's checkout now (false: the
    /// checkout is gone and the branch as last fetched is shown).
    pub fetched: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Merged {
    pub session_id: String,
    pub branch: String,
    /// The branch merged into.
    pub target: String,
    /// The new merge commit, now `target`'s tip.
    pub commit: String,
    /// The session commit merged.
    pub head: String,
}

/// The session whose work is reviewed: its repo (the main checkout) and
/// whether it ran in a checkout of its own.
#[derive(Debug, Clone)]
pub struct ReviewTarget {
    pub repo: PathBuf,
    pub session_id: String,
    /// False when the session ran in the main checkout itself.
    pub isolated: bool,
}

/// The main checkout's state as the review and the merge need it.
struct Main {
    repo: PathBuf,
    /// `refs/heads/<name>`.
    target_ref: String,
    target: String,
    target_commit: String,
    branch: String,
    head: String,
    fetched: bool,
}

/// Confinement for git in the main repo that only reads it.
fn reading(git: &Git, repo: &Path) -> Confined {
    Confined {
        policy: git.scoped_policy(&[], &[repo.to_path_buf()]),
        cwd: repo.to_path_buf(),
        env: Vec::new(),
    }
}

/// Confinement for git in the main repo that writes it (the merge).
fn writing(git: &Git, repo: &Path, env: Vec<(std::ffi::OsString, std::ffi::OsString)>) -> Confined {
    Confined {
        policy: git.policy(repo),
        cwd: repo.to_path_buf(),
        env,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Git's stderr as one line (its non-empty lines joined), bounded.
fn one_line(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .chars()
        .take(2000)
        .collect()
}

/// Run git reading the main repo; stdout, or an error saying `what` failed.
fn read_git(git: &Git, repo: &Path, args: &[&str], what: &str) -> Result<String> {
    let out = git.output_confined(&reading(git, repo), args, &[])?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "{what} in {}: {}",
            repo.display(),
            one_line(&out.stderr)
        )));
    }
    Ok(lossy(&out.stdout).trim().to_string())
}

/// Resolve the session's branch (fetching it from its checkout when there
/// is one) and the main checkout's current branch.
fn prepare(git: &Git, t: &ReviewTarget) -> Result<Main> {
    let id = &t.session_id;
    validate_session_id(id)?;
    if !t.isolated {
        return Err(Error::Conflict(format!(
            "session {id} ran in the main checkout itself (isolation off): \
             its changes are already there, there is no branch to review or merge"
        )));
    }
    let repo = check_repo(git, &t.repo)?;
    let branch = branch_name(id);
    let branch_ref = format!("refs/heads/{branch}");
    let fetched = match fetch_session_branch(git, &repo, id) {
        Ok(()) => true,
        // The checkout is gone (closed): the branch as last fetched.
        Err(Error::NotFound(_)) => false,
        Err(Error::Invalid(msg)) => {
            return Err(Error::Conflict(format!(
                "could not fetch session {id}'s branch from its checkout: {msg}"
            )))
        }
        Err(e) => return Err(e),
    };
    let c = reading(git, &repo);
    let head = git.output_confined(
        &c,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{branch_ref}^{{commit}}"),
        ],
        &[],
    )?;
    if !head.status.success() {
        return Err(Error::NotFound(format!(
            "session {id} has no branch {branch} in {} (no checkout to fetch it from)",
            repo.display()
        )));
    }
    let head = lossy(&head.stdout).trim().to_string();
    let sym = git.output_confined(&c, &["symbolic-ref", "--quiet", "HEAD"], &[])?;
    let target_ref = lossy(&sym.stdout).trim().to_string();
    let Some(target) = target_ref.strip_prefix("refs/heads/").map(str::to_string) else {
        return Err(Error::Conflict(format!(
            "the main checkout {} is not on a branch (detached HEAD); check out the branch to merge into",
            repo.display()
        )));
    };
    if target_ref == branch_ref {
        return Err(Error::Conflict(format!(
            "the main checkout {} has {branch} itself checked out",
            repo.display()
        )));
    }
    let target_commit = read_git(
        git,
        &repo,
        &["rev-parse", "--verify", &format!("{target_ref}^{{commit}}")],
        "reading the main checkout's branch",
    )
    .map_err(|_| {
        Error::Conflict(format!(
            "the main checkout's branch {target} has no commit yet"
        ))
    })?;
    Ok(Main {
        repo,
        target_ref,
        target,
        target_commit,
        branch,
        head,
        fetched,
    })
}

/// Whether `target` already contains the session's branch.
fn up_to_date(git: &Git, m: &Main) -> Result<bool> {
    let out = git.output_confined(
        &reading(git, &m.repo),
        &["merge-base", "--is-ancestor", &m.head, &m.target_commit],
        &[],
    )?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(Error::internal(format!(
            "git merge-base in {}: {}",
            m.repo.display(),
            one_line(&out.stderr)
        ))),
    }
}

/// The merge base, or a 409 when the session's history shares none with
/// the target (the agent rewrote it).
fn merge_base(git: &Git, m: &Main) -> Result<String> {
    let out = git.output_confined(
        &reading(git, &m.repo),
        &["merge-base", &m.target_commit, &m.head],
        &[],
    )?;
    if !out.status.success() {
        return Err(Error::Conflict(format!(
            "{} shares no history with {}; nothing mitzod can merge",
            m.branch, m.target
        )));
    }
    Ok(lossy(&out.stdout).trim().to_string())
}

/// Config that keeps diff and log output plain and the same whatever the
/// repo's config says (no colour, no external or textconv programs).
const PLAIN: &[(&str, &str)] = &[
    ("color.ui", "never"),
    ("diff.noprefix", "false"),
    ("diff.mnemonicPrefix", "false"),
    ("diff.relative", "false"),
    ("log.showSignature", "false"),
    ("core.quotePath", "true"),
];

fn commits(git: &Git, m: &Main) -> Result<(Vec<ReviewCommit>, bool)> {
    let range = format!("{}..{}", m.target_commit, m.head);
    let max = format!("--max-count={}", COMMITS_CAP + 1);
    let out = git.output_capped(
        &reading(git, &m.repo),
        &[
            "log",
            "-z",
            "--no-color",
            "--no-notes",
            "--no-show-signature",
            "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s",
            &max,
            "--end-of-options",
            &range,
            "--",
        ],
        PLAIN,
        LOG_CAP,
    )?;
    if !out.truncated && !out.status.success() {
        return Err(Error::internal(format!(
            "git log in {}: {}",
            m.repo.display(),
            one_line(&out.stderr)
        )));
    }
    let mut list = Vec::new();
    let mut records: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
    if out.truncated {
        // The last record may be cut.
        records.pop();
    }
    for rec in records {
        if rec.is_empty() {
            continue;
        }
        let mut f = rec.splitn(5, |&b| b == 0x1f);
        let (Some(sha), Some(an), Some(ae), Some(date), Some(subject)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        list.push(ReviewCommit {
            sha: lossy(sha),
            subject: lossy(subject),
            author: lossy(an),
            author_email: lossy(ae),
            date: lossy(date),
        });
    }
    let truncated = out.truncated || list.len() > COMMITS_CAP;
    list.truncate(COMMITS_CAP);
    Ok((list, truncated))
}

fn files(git: &Git, m: &Main, base: &str) -> Result<(Vec<ChangedFile>, bool)> {
    let out = git.output_capped(
        &reading(git, &m.repo),
        &[
            "diff",
            "--numstat",
            "-z",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--end-of-options",
            base,
            &m.head,
            "--",
        ],
        PLAIN,
        NUMSTAT_CAP,
    )?;
    if !out.truncated && !out.status.success() {
        return Err(Error::internal(format!(
            "git diff --numstat in {}: {}",
            m.repo.display(),
            one_line(&out.stderr)
        )));
    }
    let mut records: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
    if out.truncated {
        records.pop();
    }
    let mut list = Vec::new();
    for rec in records {
        let mut f = rec.splitn(3, |&b| b == b'\t');
        let (Some(a), Some(d), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let num = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        };
        let (added, deleted) = (num(a), num(d));
        list.push(ChangedFile {
            path: lossy(path),
            added,
            deleted,
            binary: added.is_none() && deleted.is_none(),
        });
    }
    let truncated = out.truncated || list.len() > FILES_CAP;
    list.truncate(FILES_CAP);
    Ok((list, truncated))
}

fn diff(git: &Git, m: &Main, base: &str) -> Result<(String, bool)> {
    let out = git.output_capped(
        &reading(git, &m.repo),
        &[
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--no-renames",
            "--end-of-options",
            base,
            &m.head,
            "--",
        ],
        PLAIN,
        DIFF_CAP,
    )?;
    if !out.truncated && !out.status.success() {
        return Err(Error::internal(format!(
            "git diff in {}: {}",
            m.repo.display(),
            one_line(&out.stderr)
        )));
    }
    let mut text = lossy(&out.stdout);
    if out.truncated {
        // Cut at a line end, so the last line shown is whole.
        if let Some(end) = text.rfind('\n') {
            text.truncate(end + 1);
        }
    }
    Ok((text, out.truncated))
}

/// Fetch the session's branch and show it against the main checkout's
/// current branch: the commits it adds, the files it changes and the diff
/// from the merge base (`git diff target...branch`).
pub fn review(git: &Git, t: &ReviewTarget) -> Result<Review> {
    let m = prepare(git, t)?;
    let base = merge_base(git, &m)?;
    let (commits, commits_truncated) = commits(git, &m)?;
    let (files, files_truncated) = files(git, &m, &base)?;
    let (diff, truncated) = diff(git, &m, &base)?;
    let added = files.iter().filter_map(|f| f.added).sum();
    let deleted = files.iter().filter_map(|f| f.deleted).sum();
    let up_to_date = up_to_date(git, &m)?;
    Ok(Review {
        session_id: t.session_id.clone(),
        branch: m.branch,
        head: m.head,
        target: m.target,
        target_commit: m.target_commit,
        commits,
        commits_truncated,
        files,
        files_truncated,
        added,
        deleted,
        diff,
        truncated,
        up_to_date,
        fetched: m.fetched,
    })
}

/// The main repo's own `user.name`/`user.email` (its config is the
/// owner's: an isolated agent cannot write the main git dir), else
/// mitzod's. Set explicitly: mitzod's git reads no global config and may
/// have no identity at all.
fn identity(git: &Git, repo: &Path) -> (String, String) {
    let get = |key: &str| {
        git.output_confined(&reading(git, repo), &["config", "--get", key], &[])
            .ok()
            .filter(|o| o.status.success())
            .map(|o| lossy(&o.stdout).trim().to_string())
            .filter(|v| !v.is_empty() && !v.contains(['<', '>', '\n']))
    };
    match (get("user.name"), get("user.email")) {
        (Some(n), Some(e)) => (n, e),
        _ => (DEFAULT_NAME.to_string(), DEFAULT_EMAIL.to_string()),
    }
}

/// Merge the session's branch into the main checkout's current branch
/// with a merge commit. Refused (409, the checkout untouched) when the
/// checkout has uncommitted changes or a merge in progress, when the
/// branch is already merged, and when the merge conflicts.
pub fn merge(git: &Git, t: &ReviewTarget) -> Result<Merged> {
    let _guard = MERGE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let m = prepare(git, t)?;
    let id = &t.session_id;
    if up_to_date(git, &m)? {
        return Err(Error::Conflict(format!(
            "nothing to merge: {} already contains {} ({})",
            m.target,
            m.branch,
            short(&m.head)
        )));
    }
    let base = merge_base(git, &m)?;
    let repo = &m.repo;
    // `.mitzo/` in the main work tree holds every session's checkout: a
    // merge that wrote there would write into other sessions' directories.
    let touches = git.output_confined(
        &reading(git, repo),
        &[
            "diff",
            "--name-only",
            "-z",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--end-of-options",
            &base,
            &m.head,
            "--",
            ".mitzo",
        ],
        PLAIN,
    )?;
    if !touches.status.success() || !touches.stdout.is_empty() {
        return Err(Error::Conflict(format!(
            "{} changes files under .mitzo/, where mitzod keeps the session checkouts; not merged",
            m.branch
        )));
    }
    let rc = reading(git, repo);
    let in_progress = git.output_confined(
        &rc,
        &["rev-parse", "--verify", "--quiet", "MERGE_HEAD"],
        &[],
    )?;
    if in_progress.status.success() {
        return Err(Error::Conflict(format!(
            "the main checkout {} has a merge in progress; finish or abort it first",
            repo.display()
        )));
    }
    // Tracked changes only: untracked files (`.mitzo/` among them) do not
    // stop a merge; one the merge would overwrite makes git refuse below.
    let status = git.output_confined(
        &rc,
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=no",
            "--ignore-submodules=none",
        ],
        &[],
    )?;
    if !status.status.success() {
        return Err(Error::internal(format!(
            "git status in {}: {}",
            repo.display(),
            one_line(&status.stderr)
        )));
    }
    if !status.stdout.is_empty() {
        let n = status
            .stdout
            .split(|&b| b == 0)
            .filter(|r| !r.is_empty())
            .count();
        return Err(Error::Conflict(format!(
            "the main checkout {} has uncommitted changes ({n} file{}); commit or stash them before merging",
            repo.display(),
            if n == 1 { "" } else { "s" }
        )));
    }
    // The merge, computed without touching the checkout: it writes
    // objects (the merged trees, conflicted blobs) to the git dir only.
    let objects = Confined {
        policy: git.scoped_policy(&[repo.join(".git")], &[repo.to_path_buf()]),
        cwd: repo.to_path_buf(),
        env: Vec::new(),
    };
    let out = git.output_confined(
        &objects,
        &[
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
            "--end-of-options",
            &m.target_commit,
            &m.head,
        ],
        &[],
    )?;
    let mut fields = out.stdout.split(|&b| b == 0);
    let tree = fields.next().map(lossy).unwrap_or_default();
    match out.status.code() {
        Some(0) => {}
        Some(1) => {
            let mut names: Vec<String> = fields.filter(|f| !f.is_empty()).map(lossy).collect();
            names.dedup();
            let more = names.len().saturating_sub(20);
            names.truncate(20);
            return Err(Error::Conflict(format!(
                "merging {} into {} conflicts in {}{}; nothing was changed",
                m.branch,
                m.target,
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )));
        }
        _ => {
            return Err(Error::internal(format!(
                "git merge-tree in {}: {}",
                repo.display(),
                one_line(&out.stderr)
            )))
        }
    }
    if tree.len() < 40 || !tree.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::internal(format!(
            "git merge-tree in {} answered no tree",
            repo.display()
        )));
    }
    let (name, email) = identity(git, repo);
    let env = [
        ("GIT_AUTHOR_NAME", &name),
        ("GIT_AUTHOR_EMAIL", &email),
        ("GIT_COMMITTER_NAME", &name),
        ("GIT_COMMITTER_EMAIL", &email),
    ]
    .iter()
    .map(|(k, v)| ((*k).into(), (*v).into()))
    .collect();
    let wc = writing(git, repo, env);
    let message = format!(
        "Merge branch '{}' into {}\n\nSession {id}, reviewed and merged through mitzod.\n",
        m.branch, m.target
    );
    let commit = git
        .run_confined(
            &wc,
            &[
                "commit-tree",
                "--no-gpg-sign",
                "-p",
                &m.target_commit,
                "-p",
                &m.head,
                "-m",
                &message,
                "--end-of-options",
                &tree,
            ],
            &[],
        )
        .map_err(|e| Error::internal(format!("making the merge commit: {e}")))?
        .trim()
        .to_string();
    // Move the checkout and the branch to it: a fast-forward from the
    // commit checked above, refused by git (nothing changed) if anything
    // in the checkout would be overwritten.
    let out = git.output_confined(
        &wc,
        &[
            "merge",
            "--ff-only",
            "--quiet",
            "--no-stat",
            "--no-verify",
            "--no-autostash",
            "--end-of-options",
            &commit,
        ],
        &[("merge.autoStash", "false"), ("rerere.enabled", "false")],
    )?;
    if !out.status.success() {
        return Err(Error::Conflict(format!(
            "git would not move {} to the merge: {}; nothing was changed",
            m.target,
            one_line(&out.stderr)
        )));
    }
    let now = read_git(
        git,
        repo,
        &["rev-parse", "--verify", &m.target_ref],
        "reading the merged branch",
    )?;
    if now != commit {
        return Err(Error::Conflict(format!(
            "{} moved while merging (it is at {}, the merge is {})",
            m.target,
            short(&now),
            short(&commit)
        )));
    }
    Ok(Merged {
        session_id: id.clone(),
        branch: m.branch,
        target: m.target,
        commit,
        head: m.head,
    })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The audit log's tool name for a merge of a session's work.
pub const MERGE_TOOL: &str = "Merge";

/// A merge attempt as an audit row: its decision and its one-line summary.
/// `merged`: the merge commit is the target's tip; `refused`: the request
/// was turned down for the reason given and the main checkout left as it
/// was; `failed`: a fault of the server or its host (the details are in
/// mitzod's log, as for the answer to the request).
pub fn audit_entry(session_id: &str, result: &Result<Merged>) -> (&'static str, String) {
    let branch = branch_name(session_id);
    let (decision, text) = match result {
        Ok(m) => (
            "merged",
            format!(
                "{} ({}) into {} as {}",
                m.branch, m.head, m.target, m.commit
            ),
        ),
        Err(Error::Internal { .. }) => (
            "failed",
            format!("{branch}: internal error; details in mitzod's log"),
        ),
        Err(e @ (Error::NoSpace { .. } | Error::Unavailable(_))) => {
            ("failed", format!("{branch}: {e}"))
        }
        Err(e) => ("refused", format!("{branch}: {e}")),
    };
    // Conflicting file names are the agent's: one line, bounded, like
    // every other summary in the audit log.
    let text = text.replace(['\n', '\r'], " · ");
    (decision, crate::sessions::approval::bounded_summary(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_entries_say_what_happened_and_why() {
        let id = "2026-01-02-0123456789ab";
        let ok = Ok(Merged {
            session_id: id.into(),
            branch: branch_name(id),
            target: "main".into(),
            commit: "c".repeat(40),
            head: "h".repeat(40),
        });
        let (d, s) = audit_entry(id, &ok);
        assert_eq!(d, "merged");
        assert_eq!(
            s,
            format!(
                "session/{id} ({}) into main as {}",
                "h".repeat(40),
                "c".repeat(40)
            )
        );

        let refused = Err(Error::Conflict("merging conflicts in a\nb.txt".into()));
        let (d, s) = audit_entry(id, &refused);
        assert_eq!(d, "refused");
        assert_eq!(s, format!("session/{id}: merging conflicts in a · b.txt"));

        let fault = Err(Error::internal(
            "git merge-tree in /srv/repo: secret detail",
        ));
        let (d, s) = audit_entry(id, &fault);
        assert_eq!(d, "failed");
        assert!(!s.contains("secret detail"), "{s}");

        let long = Err(Error::Conflict("x".repeat(10_000)));
        assert!(audit_entry(id, &long).1.chars().count() <= 2001);
    }
}
