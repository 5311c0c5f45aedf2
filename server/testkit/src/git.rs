//! Git repos for tests: one identity, no system or user config, and quiet.
//! git's own output is captured and shown only when a command fails, so a
//! passing run leaves nothing of it in the CI log.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::is_root;

/// Run `git args` in `dir`; panics with git's output when it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("git {args:?} in {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}\n{}{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repo at `dir` with one commit (`README`).
pub fn init_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("README"), "hello\n").unwrap();
    git(dir, &["add", "README"]);
    git(dir, &["commit", "-qm", "init"]);
}

/// `dir/repo` with one commit (`README.md`), owned by the user mitzod
/// serves as (`nobody` when the tests run as root).
pub fn make_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("README.md"), "hello\n").unwrap();
    git(&repo, &["add", "README.md"]);
    git(&repo, &["commit", "-qm", "init"]);
    chown_to_service_user(&repo);
    repo
}

/// As root, hand `path` (recursively) to `nobody`, whom the server drops to.
pub fn chown_to_service_user(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "nobody:"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chown -R nobody: {}", path.display());
    }
}
