//! Session checkouts: `<repo>/.mitzo/checkouts/<id>` on branch `session/<id>`,
//! ids `YYYY-MM-DD-<12 hex>`. Not in `.claude/worktrees`: Claude Code accepts
//! only linked worktrees there and refuses a clone (a `--worktree` hook's
//! checkout included). Each is a clone of
//! its own with its own git dir, borrowing the main repo's objects read-only
//! (not a linked worktree, whose admin dir would sit inside the main `.git`
//! where the agent would have to write it). Which directory belongs to which
//! session is recorded by mitzod under the main git dir, by device and inode.
//! Every git command goes through [`crate::git::Git`], confined.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::config::{Config, SessionConfig, WorktreeCleanup};
use crate::error::{Error, Result};
use crate::git::Git;
use mitzo_protocol::session_id;

const WORKTREES_DIR: &str = ".mitzo/checkouts";

/// A new session id for today (UTC).
pub fn new_session_id() -> String {
    new_session_id_at(SystemTime::now())
}

pub fn new_session_id_at(now: SystemTime) -> String {
    let days = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    session_id::format(days as i64, bytes)
}

/// `YYYY-MM-DD-<12 lowercase hex>` with a real date; anything else (`..`,
/// `/`, other lengths) is refused. Returns the id's day as days since epoch.
pub fn validate_session_id(id: &str) -> Result<i64> {
    session_id::day_of(id).ok_or_else(|| {
        Error::Invalid(format!(
            "invalid session id {id:?}: expected YYYY-MM-DD-<12 hex digits>"
        ))
    })
}

pub fn branch_name(id: &str) -> String {
    format!("session/{id}")
}

pub fn worktree_path(repo: &Path, id: &str) -> PathBuf {
    repo.join(WORKTREES_DIR).join(id)
}

/// The repo's top level, canonical; an error when it is missing or not the
/// top of a git work tree.
pub fn check_repo(git: &Git, repo: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(repo)
        .map_err(|e| Error::Invalid(format!("repo {}: {e}", repo.display())))?;
    if !meta.is_dir() {
        return Err(Error::Invalid(format!(
            "repo {} is not a directory",
            repo.display()
        )));
    }
    let canonical = std::fs::canonicalize(repo)
        .map_err(|e| Error::Invalid(format!("repo {}: {e}", repo.display())))?;
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
        return Err(Error::Invalid(format!(
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

/// Refuse when `.mitzo` or `.mitzo/checkouts` is a symlink (or not a dir):
/// an agent could point them anywhere.
fn check_worktrees_dir(repo: &Path) -> Result<()> {
    let mut p = repo.to_path_buf();
    for part in [".mitzo", "checkouts"] {
        p.push(part);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(Error::Conflict(format!(
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

/// The repo's own git dir, which must be a real directory: the session
/// registry lives there and clones borrow its objects.
fn main_git_dir(repo: &Path) -> Result<PathBuf> {
    let dot_git = repo.join(".git");
    match std::fs::symlink_metadata(&dot_git) {
        Ok(m) if m.file_type().is_dir() => Ok(dot_git),
        _ => Err(Error::Invalid(format!(
            "{} is not a directory (a linked worktree, a submodule or a symlink?); \
             isolated sessions need a repo with a git dir of its own",
            dot_git.display()
        ))),
    }
}

/// Where mitzod records the checkouts it made: `<repo>/.git/mitzod/checkouts/<id>`,
/// holding `<dev> <inode>` of the checkout's directory (or `pending` while it
/// is being made). An isolated agent can read but not write the main git
/// dir, so this record, not anything inside a checkout, says which
/// directory is which session's.
fn registry_dir(repo: &Path) -> PathBuf {
    repo.join(".git/mitzod/checkouts")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Pending,
    Made { dev: u64, ino: u64 },
}

fn read_record(repo: &Path, id: &str) -> Result<Option<Record>> {
    let p = registry_dir(repo).join(id);
    let text = match read_plain_file(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
    };
    let text = text.trim();
    if text == "pending" {
        return Ok(Some(Record::Pending));
    }
    let mut it = text.split(' ').map(str::parse::<u64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(dev)), Some(Ok(ino)), None) => Ok(Some(Record::Made { dev, ino })),
        _ => Err(Error::Conflict(format!(
            "{} is not a checkout record mitzod wrote; remove it by hand",
            p.display()
        ))),
    }
}

/// Read a small regular file without following a symlink.
fn read_plain_file(p: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut s = String::new();
    f.by_ref().take(256).read_to_string(&mut s)?;
    Ok(s)
}

/// Create a directory (not through a symlink) or accept an existing plain one.
fn plain_dir(p: &Path) -> Result<()> {
    match std::fs::create_dir(p) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {}", p.display()), e)),
    }
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        _ => Err(Error::Conflict(format!(
            "{} is not a plain directory (a symlink?); refusing to use it",
            p.display()
        ))),
    }
}

fn write_record(repo: &Path, id: &str, rec: Record) -> Result<()> {
    let git_mitzod = repo.join(".git/mitzod");
    plain_dir(&git_mitzod)?;
    let dir = registry_dir(repo);
    plain_dir(&dir)?;
    let text = match rec {
        Record::Pending => "pending\n".to_string(),
        Record::Made { dev, ino } => format!("{dev} {ino}\n"),
    };
    let tmp = dir.join(format!(".{id}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    }
    let to = dir.join(id);
    std::fs::rename(&tmp, &to).map_err(|e| Error::io(format!("writing {}", to.display()), e))
}

fn delete_record(repo: &Path, id: &str) -> Result<()> {
    let p = registry_dir(repo).join(id);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
    }
}

/// The identity of a directory: device and inode, not following a symlink.
fn dir_identity(p: &Path) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_dir() => Ok(Some((m.dev(), m.ino()))),
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What is at a session's checkout path, judged by mitzod's record only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Nothing there.
    Absent,
    /// The directory mitzod made for this session.
    Ours,
    /// A directory mitzod began to make and did not finish.
    HalfMade,
    /// Something mitzod did not make for this session.
    Foreign,
}

fn find_checkout(repo: &Path, id: &str) -> Result<(PathBuf, Found)> {
    let path = worktree_path(repo, id);
    let rec = read_record(repo, id)?;
    let found = match dir_identity(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Absent,
        Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
        Ok(None) => Found::Foreign,
        Ok(Some((dev, ino))) => match rec {
            Some(Record::Made { dev: d, ino: i }) if (d, i) == (dev, ino) => Found::Ours,
            Some(Record::Pending) => Found::HalfMade,
            _ => Found::Foreign,
        },
    };
    Ok((path, found))
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

/// Remove `path` (a directory in `.mitzo/checkouts`) with a confined `rm`
/// that may write nothing outside the repo (the repo's own path, from the
/// config, bounds it even if a directory on the way were swapped for a
/// symlink; `rm -rf` itself follows none).
fn remove_checkout_dir(git: &Git, repo: &Path, path: &Path) -> Result<()> {
    git.remove_dir_within(repo, path)
}

/// The directory a session runs in: the repo itself when `isolation` is
/// false, else its own clone at `.mitzo/checkouts/<id>` on branch
/// `session/<id>`, made (or reused when mitzod's record says it is this
/// session's) by [`make_checkout`]. A directory in the way that mitzod did
/// not make for this session is left alone and refused. On failure nothing
/// is left behind: no directory, no record, no new branch.
pub fn prepare_session_dir(git: &Git, repo: &Path, id: &str, isolation: bool) -> Result<PathBuf> {
    validate_session_id(id)?;
    let repo = check_repo(git, repo)?;
    if !isolation {
        return Ok(repo);
    }
    main_git_dir(&repo)?;
    check_worktrees_dir(&repo)?;
    let (path, found) = find_checkout(&repo, id)?;
    match found {
        Found::Ours => return Ok(path),
        Found::Foreign => {
            return Err(Error::Conflict(format!(
                "{} exists but is not the checkout mitzod made for session {id} \
                 (a linked worktree from an older mitzod, or someone else's directory); \
                 not touching it: move it away to reopen this session",
                path.display()
            )))
        }
        Found::HalfMade => {
            tracing::info!(path = %path.display(), "removing a checkout left half-made");
            remove_checkout_dir(git, &repo, &path)?;
        }
        Found::Absent => {}
    }
    make_checkout(git, &repo, id, &path)?;
    Ok(path)
}

/// A clone of the repo that borrows its objects (`git clone --shared`:
/// `objects/info/alternates` names the main object store, which the agent
/// can read but not write), on branch `session/<id>`, with a git dir of its
/// own. The main repo keeps the branch too, so its objects stay reachable
/// there.
fn make_checkout(git: &Git, repo: &Path, id: &str, path: &Path) -> Result<()> {
    let branch = branch_name(id);
    plain_dir(&repo.join(".mitzo"))?;
    plain_dir(&repo.join(WORKTREES_DIR))?;
    // Sessions' clones are not the user's files: out of `git status`.
    crate::git_exclude::add_logged(repo, &format!("/{WORKTREES_DIR}/"));
    write_record(repo, id, Record::Pending)?;
    let mut had_branch = true;
    let result = (|| -> Result<()> {
        std::fs::create_dir(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let (dev, ino) = dir_identity(path)
            .ok()
            .flatten()
            .ok_or_else(|| Error::Conflict(format!("{} vanished", path.display())))?;
        had_branch = branch_exists(git, repo, &branch)?;
        if !had_branch {
            git.run(repo, repo, &["branch", "--no-track", "--", &branch, "HEAD"])?;
        }
        let c = crate::git::Confined {
            policy: git.scoped_policy(&[path.to_path_buf()], &[repo.to_path_buf()]),
            cwd: path.to_path_buf(),
            env: Vec::new(),
        };
        let repo_s = repo.to_string_lossy().into_owned();
        git.run_confined(
            &c,
            &[
                "clone",
                "--quiet",
                "--shared",
                "--no-recurse-submodules",
                "--branch",
                &branch,
                "--",
                &repo_s,
                ".",
            ],
            &[("protocol.file.allow", "always")],
        )?;
        write_record(repo, id, Record::Made { dev, ino })
    })();
    if let Err(e) = result {
        // Undo whatever got done before the failure.
        if std::fs::symlink_metadata(path).is_ok() {
            let _ = remove_checkout_dir(git, repo, path);
        }
        let _ = delete_record(repo, id);
        if !had_branch && branch_exists(git, repo, &branch).unwrap_or(false) {
            let _ = git.run(repo, repo, &["branch", "-D", "--", &branch]);
        }
        return Err(e);
    }
    Ok(())
}

/// Whether a session checkout has uncommitted changes or untracked files.
/// `git status` runs in the checkout, confined to it (see
/// [`Git::in_checkout`]): whatever the agent planted there runs, if at all,
/// with no more reach than the agent had.
pub fn is_dirty(git: &Git, repo: &Path, path: &Path) -> Result<bool> {
    // The main object store (the clone's alternates) is all it reads
    // besides the checkout.
    let c = git.in_checkout(path, &[repo.join(".git/objects")])?;
    let out = git.run_confined(
        &c,
        &["status", "--porcelain", "-z", "--untracked-files=normal"],
        &[],
    )?;
    Ok(!out.is_empty())
}

/// Bring a session's commits into the main repo: a fetch of
/// `session/<id>` from the session's clone into `refs/heads/session/<id>`
/// (forced: the session owns that branch). The fetch runs in the main repo
/// under mitzod's confined git and may write only the main git dir; the
/// clone is read by `git upload-pack`, which git restricts to a safe subset
/// of a repo's config and hooks when fetching from an untrusted repository.
/// Received objects are checked (`fetch.fsckObjects`).
pub fn fetch_session_branch(git: &Git, repo: &Path, id: &str) -> Result<()> {
    validate_session_id(id)?;
    let repo = check_repo(git, repo)?;
    let main_git = main_git_dir(&repo)?;
    check_worktrees_dir(&repo)?;
    let (path, found) = find_checkout(&repo, id)?;
    if found != Found::Ours {
        return Err(Error::NotFound(format!(
            "no checkout mitzod made for session {id} at {}",
            path.display()
        )));
    }
    let dot_git = path.join(".git");
    if !std::fs::symlink_metadata(&dot_git)
        .map(|m| m.file_type().is_dir())
        .unwrap_or(false)
    {
        return Err(Error::Conflict(format!(
            "{} is not a git directory (replaced by a file or symlink?); not fetching from it",
            dot_git.display()
        )));
    }
    let branch = branch_name(id);
    let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
    // Write the main git dir, read this checkout only (not the other
    // sessions' checkouts, whatever the clone's alternates name).
    let c = crate::git::Confined {
        policy: git.scoped_policy(std::slice::from_ref(&main_git), std::slice::from_ref(&path)),
        cwd: main_git.clone(),
        env: vec![("GIT_DIR".into(), main_git.into_os_string())],
    };
    let src = dot_git.to_string_lossy().into_owned();
    git.run_confined(
        &c,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--no-auto-maintenance",
            "--",
            &src,
            &refspec,
        ],
        &[
            ("protocol.file.allow", "always"),
            ("fetch.fsckObjects", "true"),
        ],
    )?;
    Ok(())
}

/// A session's checkout in one of the configured repos, as a request to
/// open, fetch or close it names it. Every git command runs confined, on the
/// blocking pool's thread that calls the method.
#[derive(Debug, Clone)]
pub struct SessionRepo {
    /// The repo's name in `[repos]` (or `repo_path`'s directory name).
    pub name: String,
    pub repo: PathBuf,
    pub session_id: String,
    landlock: mitzo_sandbox::Enforcement,
}

/// Every repo the config names: `repo_path` (named by its directory) and `[repos]`.
pub fn known_repos(config: &Config) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = config
        .repos
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    if let Some(p) = &config.repo_path {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        out.push((name, p.clone()));
    }
    out
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl SessionRepo {
    /// The repo named by `repo_name` (a `[repos]` key) or `repo_path` (any
    /// configured repo's path; exactly one of the two), for session `id`.
    pub fn resolve(
        config: &Config,
        repo_name: Option<&str>,
        repo_path: Option<&Path>,
        id: &str,
    ) -> Result<SessionRepo> {
        validate_session_id(id)?;
        let (name, repo) = match (repo_name, repo_path) {
            (Some(name), None) => {
                if name.len() > 128 {
                    return Err(Error::Invalid("repoName: longer than 128 bytes".into()));
                }
                config
                    .repos
                    .get(name)
                    .map(|p| (name.to_string(), p.clone()))
                    .ok_or_else(|| {
                        Error::NotFound(format!("no repo named {name:?} in the config"))
                    })?
            }
            (None, Some(path)) => known_repos(config)
                .into_iter()
                .find(|(_, p)| same_dir(p, path))
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "{} is not a repo mitzod is configured with (repo_path or [repos])",
                        path.display()
                    ))
                })?,
            _ => {
                return Err(Error::Invalid(
                    "name the repo with repoName or repoPath (one of them)".into(),
                ))
            }
        };
        Ok(SessionRepo {
            name,
            repo,
            session_id: id.to_string(),
            landlock: config.sandbox.landlock,
        })
    }

    /// The session checkout at `path`, which must be one mitzod made in a
    /// configured repo (what Claude Code's WorktreeRemove hook knows).
    pub fn of_checkout(config: &Config, path: &Path) -> Result<SessionRepo> {
        let not_ours =
            || Error::NotFound(format!("{} is not a checkout mitzod made", path.display()));
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(not_ours)?;
        validate_session_id(&id).map_err(|_| not_ours())?;
        let (name, repo) = known_repos(config)
            .into_iter()
            .find(|(_, r)| same_dir(&worktree_path(r, &id), path))
            .ok_or_else(not_ours)?;
        Ok(SessionRepo {
            name,
            repo,
            session_id: id,
            landlock: config.sandbox.landlock,
        })
    }

    fn git(&self) -> Result<Git> {
        Git::new(self.landlock)
    }

    /// Make the session's checkout, or reuse it: its path, and whether it
    /// was made now (a different directory, by inode, than before).
    pub fn open(&self) -> Result<(PathBuf, bool)> {
        use std::os::unix::fs::MetadataExt;
        let git = self.git()?;
        let (repo, id) = (&self.repo, &self.session_id);
        let inode = |p: &Path| {
            std::fs::symlink_metadata(p)
                .ok()
                .filter(|m| m.is_dir())
                .map(|m| m.ino())
        };
        let before = inode(&worktree_path(repo, id)).or_else(|| {
            std::fs::canonicalize(repo)
                .ok()
                .and_then(|r| inode(&worktree_path(&r, id)))
        });
        let path = prepare_session_dir(&git, repo, id, true)?;
        let created = before.is_none() || before != inode(&path);
        Ok((path, created))
    }

    /// Bring the session's commits into the main repo's `session/<id>`
    /// branch: the branch and the commit it now points at.
    pub fn fetch(&self) -> Result<(String, String)> {
        let git = self.git()?;
        fetch_session_branch(&git, &self.repo, &self.session_id)?;
        let branch = branch_name(&self.session_id);
        let repo = check_repo(&git, &self.repo)?;
        let commit = git
            .run(
                &repo,
                &repo,
                &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
            )?
            .trim()
            .to_string();
        Ok((branch, commit))
    }

    /// Remove the checkout (see [`remove_session_checkout`]): whether there
    /// was one.
    pub fn close(&self, force: bool) -> Result<bool> {
        let git = self.git()?;
        remove_session_checkout(&git, &self.repo, &self.session_id, force)
    }
}

/// Remove a session's checkout (its branch is kept, after the session's
/// commits were fetched into it). Only the directory mitzod's record names
/// for this id is touched; anything else at that path is refused. A dirty
/// checkout, or one whose commits cannot be fetched, is refused unless
/// `force`. Returns whether a directory was removed.
pub fn remove_session_checkout(git: &Git, repo: &Path, id: &str, force: bool) -> Result<bool> {
    validate_session_id(id)?;
    let repo = check_repo(git, repo)?;
    main_git_dir(&repo)?;
    check_worktrees_dir(&repo)?;
    let (path, found) = find_checkout(&repo, id)?;
    match found {
        Found::Absent => {
            delete_record(&repo, id)?;
            return Ok(false);
        }
        Found::Foreign => {
            return Err(Error::Conflict(format!(
                "{} is not the checkout mitzod made for session {id}; not removing it",
                path.display()
            )))
        }
        Found::HalfMade => {}
        Found::Ours => {
            if let Err(e) = fetch_session_branch(git, &repo, id) {
                if !force {
                    return Err(e);
                }
                tracing::warn!(session = %id, error = %e, "could not fetch the session's branch; removing its checkout anyway");
            }
            if !force && is_dirty(git, &repo, &path)? {
                return Err(Error::Conflict(format!(
                    "checkout {} has uncommitted changes; not removed",
                    path.display()
                )));
            }
        }
    }
    remove_checkout_dir(git, &repo, &path)?;
    delete_record(&repo, id)?;
    Ok(true)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleWorktree {
    pub id: String,
    pub path: PathBuf,
    pub dirty: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Every stale checkout found.
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

/// Checkouts mitzod made (by its records, never by listing what git or a
/// directory says) older than `stale_hours` by both their id's date (end of
/// that day) and their last modification.
pub fn stale_worktrees(
    git: &Git,
    repo: &Path,
    stale_hours: u64,
    now: SystemTime,
) -> Result<Vec<StaleWorktree>> {
    let repo = check_repo(git, repo)?;
    if main_git_dir(&repo).is_err() {
        return Ok(Vec::new());
    }
    check_worktrees_dir(&repo)?;
    let dir = registry_dir(&repo);
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
        let (path, found) = find_checkout(&repo, &id)?;
        if found != Found::Ours {
            continue;
        }
        let id_end = UNIX_EPOCH + Duration::from_secs(((day + 1).max(0) as u64) * 86_400);
        let gitdir = path.join(".git");
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

/// Stale-checkout cleanup: `report` lists stale checkouts and touches
/// nothing; `execute` removes the clean ones (after fetching their
/// branches). Dirty ones are never removed; branches are always kept.
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
            tracing::warn!(id = %w.id, path = %w.path.display(), "stale checkout has uncommitted changes; kept");
            report.kept_dirty.push(w.id.clone());
            continue;
        }
        match cfg.worktree_cleanup {
            WorktreeCleanup::Report => {
                tracing::info!(id = %w.id, path = %w.path.display(), "stale checkout (worktree_cleanup = \"report\": not removed)");
            }
            WorktreeCleanup::Execute => match remove_session_checkout(git, repo, &w.id, false) {
                Ok(_) => {
                    tracing::info!(id = %w.id, "removed stale checkout (branch kept)");
                    report.removed.push(w.id.clone());
                }
                Err(e) => {
                    tracing::warn!(id = %w.id, error = %e, "could not remove stale checkout");
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
