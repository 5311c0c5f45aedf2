//! What mitzod creates inside a user's repository (`serve --dev`'s
//! `.mitzo-dev/` with its plaintext passphrase and secrets, the sessions'
//! `.mitzo/checkouts/`) is listed in that repository's own
//! `.git/info/exclude`: `git status` stays clean and a `git add -A` cannot
//! commit it. `info/exclude` is local to the clone, never committed or
//! pushed, so nothing of the user's tracked files changes.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The git dir whose `info/exclude` applies to `repo`'s work tree: `.git`
/// when it is a directory; for a `.git` file (a linked worktree) the common
/// dir of the one it names, where git reads `info/exclude` from.
fn exclude_file(repo: &Path) -> std::io::Result<PathBuf> {
    let dot_git = repo.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git)?;
    let git_dir = if meta.is_dir() {
        dot_git
    } else if meta.is_file() {
        let text = std::fs::read_to_string(&dot_git)?;
        let named = text
            .lines()
            .find_map(|l| l.strip_prefix("gitdir:"))
            .map(str::trim)
            .ok_or_else(|| {
                std::io::Error::other(format!("{} names no gitdir", dot_git.display()))
            })?;
        let dir = repo.join(named);
        match std::fs::read_to_string(dir.join("commondir")) {
            Ok(common) => dir.join(common.trim()),
            Err(_) => dir,
        }
    } else {
        return Err(std::io::Error::other(format!(
            "{} is neither a directory nor a file",
            dot_git.display()
        )));
    };
    Ok(git_dir.join("info").join("exclude"))
}

/// Add `pattern` (a line of gitignore syntax, e.g. `/.mitzo-dev/`) to the
/// repo's `info/exclude` unless it is there. Returns the file when it added
/// the line. Neither `info` nor the file is followed through a symlink (this
/// may run as root in a repository someone else owns); a file it creates
/// belongs to the owner of the git dir.
pub fn add(repo: &Path, pattern: &str) -> std::io::Result<Option<PathBuf>> {
    let file = exclude_file(repo)?;
    let info = file
        .parent()
        .ok_or_else(|| std::io::Error::other("info/exclude has no parent"))?;
    let git_dir = info
        .parent()
        .ok_or_else(|| std::io::Error::other("info has no parent"))?;
    let owner = std::fs::metadata(git_dir)?;
    match std::fs::symlink_metadata(info) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a plain directory",
                info.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(info)?;
            chown_like(info, &owner);
        }
        Err(e) => return Err(e),
    }
    let existed = std::fs::symlink_metadata(&file).is_ok();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&file)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            file.display()
        )));
    }
    if !existed {
        chown_like(&file, &owner);
    }
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(1 << 20)
        .read_to_string(&mut text)?;
    if text.lines().any(|l| l.trim() == pattern) {
        return Ok(None);
    }
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    f.write_all(
        format!("{sep}# created by mitzod, not part of the project\n{pattern}\n").as_bytes(),
    )?;
    Ok(Some(file))
}

/// [`add`], where failing only costs a noisier `git status`: logged, not
/// returned.
pub fn add_logged(repo: &Path, pattern: &str) {
    match add(repo, pattern) {
        Ok(Some(file)) => {
            tracing::info!(file = %file.display(), pattern, "excluded from git status")
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            repo = %repo.display(),
            pattern,
            "could not add to .git/info/exclude ({e}); `git status` will list it"
        ),
    }
}

/// As root, give what was just created to the git dir's owner (who edits
/// that file); otherwise it is the caller's already.
fn chown_like(path: &Path, owner: &std::fs::Metadata) {
    if nix::unistd::Uid::effective().is_root() {
        let _ = std::os::unix::fs::lchown(path, Some(owner.uid()), Some(owner.gid()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn init(dir: &Path) {
        let ok = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    #[test]
    fn adds_once_and_keeps_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path());
        let file = dir.path().join(".git/info/exclude");
        std::fs::write(&file, "*.log").unwrap();
        assert!(add(dir.path(), "/.mitzo-dev/").unwrap().is_some());
        assert!(add(dir.path(), "/.mitzo-dev/").unwrap().is_none());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("*.log\n"), "{text}");
        assert_eq!(text.matches("/.mitzo-dev/").count(), 1, "{text}");
    }

    #[test]
    fn refuses_a_symlinked_exclude_file() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path());
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let file = dir.path().join(".git/info/exclude");
        let _ = std::fs::remove_file(&file);
        std::os::unix::fs::symlink(&target, &file).unwrap();
        assert!(add(dir.path(), "/.mitzo-dev/").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }

    #[test]
    fn a_linked_worktree_uses_the_common_git_dir() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main");
        init(&main);
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(&main)
                .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "{args:?}");
        };
        git(&["commit", "-q", "--allow-empty", "-m", "init"]);
        let linked = dir.path().join("linked");
        git(&["worktree", "add", "-q", linked.to_str().unwrap()]);
        let file = add(&linked, "/.mitzo-dev/").unwrap().unwrap();
        assert_eq!(
            file.canonicalize().unwrap(),
            main.join(".git/info/exclude").canonicalize().unwrap()
        );
    }
}
