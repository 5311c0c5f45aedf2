//! Session worktrees (Mitzo-compatible): `<repo>/.claude/worktrees/<id>` on
//! branch `session/<id>`, ids `YYYY-MM-DD-<12 hex>`. Every git command goes
//! through [`crate::git::Git`], confined to the repo.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::config::{SessionConfig, WorktreeCleanup};
use crate::error::{Error, Result};
use crate::git::Git;

const WORKTREES_DIR: &str = ".claude/worktrees";

/// A new session id for today (UTC).
pub fn new_session_id() -> String {
    new_session_id_at(SystemTime::now())
}

pub fn new_session_id_at(now: SystemTime) -> String {
    let days = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(days as i64);
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{y:04}-{m:02}-{d:02}-{}", hex::encode(bytes))
}

/// `YYYY-MM-DD-<12 lowercase hex>` with a real date; anything else (`..`,
/// `/`, other lengths) is refused. Returns the id's day as days since epoch.
pub fn validate_session_id(id: &str) -> Result<i64> {
    let bad = || {
        Error::BadRequest(format!(
            "invalid session id {id:?}: expected YYYY-MM-DD-<12 hex digits>"
        ))
    };
    let b = id.as_bytes();
    if b.len() != 23 || b[4] != b'-' || b[7] != b'-' || b[10] != b'-' {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = id.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, m, d) = (
        digits(0..4).ok_or_else(bad)?,
        digits(5..7).ok_or_else(bad)?,
        digits(8..10).ok_or_else(bad)?,
    );
    if !id[11..]
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || civil_from_days(days) != (y, m as u32, d as u32)
    {
        return Err(bad());
    }
    Ok(days)
}

pub fn branch_name(id: &str) -> String {
    format!("session/{id}")
}

pub fn worktree_path(repo: &Path, id: &str) -> PathBuf {
    repo.join(WORKTREES_DIR).join(id)
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The repo's top level, canonical; an error when it is missing or not the
/// top of a git work tree.
pub fn check_repo(git: &Git, repo: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(repo)
        .map_err(|e| Error::Worktree(format!("repo {}: {e}", repo.display())))?;
    if !meta.is_dir() {
        return Err(Error::Worktree(format!(
            "repo {} is not a directory",
            repo.display()
        )));
    }
    let canonical = std::fs::canonicalize(repo)
        .map_err(|e| Error::Worktree(format!("repo {}: {e}", repo.display())))?;
    let out = git.output(&canonical, &canonical, &["rev-parse", "--show-toplevel"])?;
    let top = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || Path::new(&top) != canonical {
        // Say what git said: "dubious ownership" (a repo owned by another
        // user than the one mitzod serves as) reads very differently from
        // "not a git repository".
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let uid = nix::unistd::Uid::effective();
        let hint = if said.contains("dubious ownership") {
            format!(
                "; the repo must belong to the user mitzod runs as (uid {uid}), who also needs to write it"
            )
        } else {
            String::new()
        };
        return Err(Error::Worktree(format!(
            "{} is not the top level of a git repository{}{hint}",
            repo.display(),
            if said.is_empty() {
                String::new()
            } else {
                format!(" (git: {said})")
            }
        )));
    }
    Ok(canonical)
}

/// Refuse when `.claude` or `.claude/worktrees` is a symlink (or not a dir):
/// an agent could point them anywhere.
fn check_worktrees_dir(repo: &Path) -> Result<()> {
    let mut p = repo.to_path_buf();
    for part in [".claude", "worktrees"] {
        p.push(part);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(Error::Worktree(format!(
                    "{} is not a plain directory (a symlink?); refusing to use it",
                    p.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("stat {}", p.display()), e)),
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ListedWorktree {
    path: PathBuf,
    branch: Option<String>,
    prunable: bool,
}

fn list_worktrees(git: &Git, repo: &Path) -> Result<Vec<ListedWorktree>> {
    let out = git.run(repo, repo, &["worktree", "list", "--porcelain", "-z"])?;
    let mut v = Vec::new();
    let mut cur: Option<ListedWorktree> = None;
    for field in out.split('\0') {
        if field.is_empty() {
            v.extend(cur.take());
            continue;
        }
        if let Some(p) = field.strip_prefix("worktree ") {
            v.extend(cur.take());
            cur = Some(ListedWorktree {
                path: PathBuf::from(p),
                ..Default::default()
            });
        } else if let Some(c) = cur.as_mut() {
            if let Some(b) = field.strip_prefix("branch ") {
                c.branch = Some(b.to_string());
            } else if field.starts_with("prunable") {
                c.prunable = true;
            }
        }
    }
    v.extend(cur);
    Ok(v)
}

fn branch_exists(git: &Git, repo: &Path, branch: &str) -> Result<bool> {
    let out = git.output(
        repo,
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )?;
    Ok(out.status.success())
}

/// The directory a session runs in: the repo itself when `isolation` is
/// false, else its worktree, created (or reused when valid) on branch
/// `session/<id>`. A stale directory in the way is removed and pruned. On
/// failure nothing is left behind: no directory, no new branch.
pub fn prepare_session_dir(git: &Git, repo: &Path, id: &str, isolation: bool) -> Result<PathBuf> {
    validate_session_id(id)?;
    let repo = check_repo(git, repo)?;
    if !isolation {
        return Ok(repo);
    }
    check_worktrees_dir(&repo)?;
    let path = worktree_path(&repo, id);
    let branch = branch_name(id);
    let want_ref = format!("refs/heads/{branch}");
    let listed = list_worktrees(git, &repo)?;
    let entry = listed.iter().find(|w| w.path == path);
    let is_dir = std::fs::symlink_metadata(&path)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if let Some(w) = entry {
        if is_dir && !w.prunable && w.branch.as_deref() == Some(want_ref.as_str()) {
            return Ok(path);
        }
    }
    if std::fs::symlink_metadata(&path).is_ok() {
        tracing::info!(path = %path.display(), "removing a stale worktree directory");
        git.remove_dir(&repo, &path)?;
    }
    if entry.is_some() || std::fs::symlink_metadata(&path).is_err() {
        git.run(&repo, &repo, &["worktree", "prune"])?;
    }

    let had_branch = branch_exists(git, &repo, &branch)?;
    let path_s = path.to_string_lossy().into_owned();
    let result = if had_branch {
        git.run(&repo, &repo, &["worktree", "add", "--", &path_s, &branch])
    } else {
        git.run(
            &repo,
            &repo,
            &["worktree", "add", "-b", &branch, "--", &path_s, "HEAD"],
        )
    };
    if let Err(e) = result {
        // Undo whatever git got to before failing.
        if std::fs::symlink_metadata(&path).is_ok() {
            let _ = git.remove_dir(&repo, &path);
        }
        let _ = git.run(&repo, &repo, &["worktree", "prune"]);
        if !had_branch && branch_exists(git, &repo, &branch).unwrap_or(false) {
            let _ = git.run(&repo, &repo, &["branch", "-D", "--", &branch]);
        }
        return Err(e);
    }
    Ok(path)
}

/// Whether a worktree has uncommitted changes or untracked files.
pub fn is_dirty(git: &Git, repo: &Path, path: &Path) -> Result<bool> {
    let out = git.run(
        repo,
        path,
        &["status", "--porcelain", "-z", "--untracked-files=normal"],
    )?;
    Ok(!out.is_empty())
}

/// Remove a session's worktree (its branch is kept). A dirty worktree is
/// refused unless `force`.
pub fn remove_worktree(git: &Git, repo: &Path, id: &str, force: bool) -> Result<()> {
    validate_session_id(id)?;
    let repo = check_repo(git, repo)?;
    check_worktrees_dir(&repo)?;
    let path = worktree_path(&repo, id);
    if !force && is_dirty(git, &repo, &path)? {
        return Err(Error::Conflict(format!(
            "worktree {} has uncommitted changes; not removed",
            path.display()
        )));
    }
    let path_s = path.to_string_lossy().into_owned();
    let mut args = vec!["worktree", "remove"];
    if force {
        args.push("--force");
    }
    args.extend(["--", &path_s]);
    git.run(&repo, &repo, &args)?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleWorktree {
    pub id: String,
    pub path: PathBuf,
    pub dirty: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Every stale worktree found.
    pub stale: Vec<StaleWorktree>,
    /// Ids removed (only with `execute`).
    pub removed: Vec<String>,
    /// Ids left in place because they are dirty.
    pub kept_dirty: Vec<String>,
    /// Ids that could not be removed, with why.
    pub failed: Vec<(String, String)>,
}

fn newest_mtime(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// Worktrees older than `stale_hours` by both their id's date (end of that
/// day) and their last modification.
pub fn stale_worktrees(
    git: &Git,
    repo: &Path,
    stale_hours: u64,
    now: SystemTime,
) -> Result<Vec<StaleWorktree>> {
    let repo = check_repo(git, repo)?;
    check_worktrees_dir(&repo)?;
    let dir = repo.join(WORKTREES_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let cutoff = now
        .checked_sub(Duration::from_secs(stale_hours.saturating_mul(3600)))
        .unwrap_or(UNIX_EPOCH);
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(day) = validate_session_id(&id) else {
            continue;
        };
        let id_end = UNIX_EPOCH + Duration::from_secs(((day + 1).max(0) as u64) * 86_400);
        let path = entry.path();
        let gitdir = repo.join(".git/worktrees").join(&id);
        let mtime = newest_mtime(&[
            path.clone(),
            gitdir.join("index"),
            gitdir.join("HEAD"),
            gitdir.join("logs/HEAD"),
        ])
        .unwrap_or(UNIX_EPOCH);
        if id_end > cutoff || mtime > cutoff {
            continue;
        }
        let dirty = is_dirty(git, &repo, &path).unwrap_or(true);
        out.push(StaleWorktree { id, path, dirty });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Start-up cleanup: `report` lists stale worktrees and touches nothing;
/// `execute` removes the clean ones. Dirty ones are never removed; branches
/// are always kept.
pub fn cleanup_stale(
    git: &Git,
    repo: &Path,
    cfg: &SessionConfig,
    now: SystemTime,
) -> Result<CleanupReport> {
    let stale = stale_worktrees(git, repo, cfg.worktree_stale_hours, now)?;
    let mut report = CleanupReport::default();
    for w in &stale {
        if w.dirty {
            tracing::warn!(id = %w.id, path = %w.path.display(), "stale worktree has uncommitted changes; kept");
            report.kept_dirty.push(w.id.clone());
            continue;
        }
        match cfg.worktree_cleanup {
            WorktreeCleanup::Report => {
                tracing::info!(id = %w.id, path = %w.path.display(), "stale worktree (worktree_cleanup = \"report\": not removed)");
            }
            WorktreeCleanup::Execute => match remove_worktree(git, repo, &w.id, false) {
                Ok(()) => {
                    tracing::info!(id = %w.id, "removed stale worktree (branch kept)");
                    report.removed.push(w.id.clone());
                }
                Err(e) => {
                    tracing::warn!(id = %w.id, error = %e, "could not remove stale worktree");
                    report.failed.push((w.id.clone(), e.to_string()));
                }
            },
        }
    }
    report.stale = stale;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = new_session_id();
        validate_session_id(&id).unwrap();
        assert_eq!(
            new_session_id_at(UNIX_EPOCH + Duration::from_secs(86_400 * 365))[..10],
            *"1971-01-01"
        );
        for bad in [
            "",
            "2024-01-01-abcdefabcdef/",
            "../../etc/passwdxxxxxxx",
            "2024-01-01-abcdefabcde",
            "2024-01-01-ABCDEFABCDEF",
            "2024-02-30-abcdefabcdef",
            "2024-13-01-abcdefabcdef",
            "2024-01-01/abcdefabcdef",
            "2024-01-01-..cdefabcdef",
        ] {
            assert!(validate_session_id(bad).is_err(), "{bad}");
        }
        assert!(validate_session_id("2024-02-29-0123456789ab").is_ok());
    }
}
