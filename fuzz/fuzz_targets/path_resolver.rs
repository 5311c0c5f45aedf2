//! The path resolver: whatever path (and root) a caller names, everything
//! the resolver opens lies beneath the chosen root, and no read returns
//! the secret kept next to the root.
#![no_main]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mitzod::files;
use nix::fcntl::OFlag;

const SECRET: &[u8] = b"FUZZ-SECRET-OUTSIDE";

struct Fixture {
    _dir: tempfile::TempDir,
    roots: Vec<files::Root>,
}

/// `base/repo` (files, dirs, symlinks in and out, a worktree dir, a
/// `.mitzo.json` root) next to `base/outside/secret` and `base/repo-evil`.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let repo = base.join("repo");
        for d in ["sub/deeper", ".mitzo/checkouts/w1", "docs", "../outside"] {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        std::fs::create_dir_all(base.join("repo-evil")).unwrap();
        std::fs::write(repo.join("a.txt"), b"inside a").unwrap();
        std::fs::write(repo.join("sub/b.txt"), b"inside b").unwrap();
        std::fs::write(base.join("outside/secret"), SECRET).unwrap();
        std::fs::write(base.join("repo-evil/secret"), SECRET).unwrap();
        let links: [(&str, &str); 7] = [
            ("in-file", "a.txt"),
            ("in-dir", "sub"),
            ("out-rel", "../outside/secret"),
            ("out-dir", "../outside"),
            ("sub/out-deep", "../../outside"),
            ("magic", "/proc/self/root"),
            ("loop", "loop"),
        ];
        for (name, target) in links {
            std::os::unix::fs::symlink(target, repo.join(name)).unwrap();
        }
        std::os::unix::fs::symlink(base.join("outside/secret"), repo.join("out-abs")).unwrap();
        let roots = files::roots_of(&repo, &[("docs".into(), "docs".into())]);
        Fixture { _dir: dir, roots }
    })
}

fn beneath(child: &Path, root: &Path) -> bool {
    child.starts_with(root)
}

fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // First byte picks an explicit root (or none); the rest is the path.
    let (pick, rest) = match data.split_first() {
        Some((p, r)) => (*p as usize, r),
        None => return,
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let root_arg = match pick % (f.roots.len() + 2) {
        i if i < f.roots.len() => Some(f.roots[i].path.to_string_lossy().into_owned()),
        i if i == f.roots.len() => Some(f.roots[0].label.clone()),
        _ => None,
    };
    let Ok((root, rel)) = files::locate(&f.roots, root_arg.as_deref(), path) else {
        return;
    };
    let Ok(root_fd) = root.open() else { return };
    let root_real = fd_path(&root_fd);
    if let Ok(fd) = files::open_beneath(root_fd.as_raw_fd(), &rel, OFlag::O_PATH) {
        let real = fd_path(&fd);
        assert!(
            beneath(&real, &root_real),
            "{path:?} resolved to {real:?}, outside {root_real:?}"
        );
    }
    if let Ok(bytes) = files::read(root_fd.as_raw_fd(), &rel) {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET),
            "{path:?} read the secret"
        );
    }
    if let Ok(listing) = files::list(root_fd.as_raw_fd(), &rel, true) {
        assert!(
            !listing.entries.iter().any(|e| e.name == "secret"),
            "{path:?} listed outside"
        );
    }
    // A compare-and-swap that can never match: resolution runs, nothing is written.
    let _ = files::write(
        root_fd.as_raw_fd(),
        &rel,
        b"x",
        Some(b"\0never the content\0"),
    );
});
