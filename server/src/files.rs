//! Files beneath a root, confined by the kernel.
//!
//! Every path a caller names is resolved with `openat2(2)` relative to a
//! directory fd of its root, with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`:
//! `..` that climbs out, absolute paths, absolute symlinks, relative symlinks
//! that leave the root and `/proc` magic links all fail in the kernel
//! (`EXDEV`/`ELOOP`), at the moment of the open, so a component swapped for a
//! symlink between any check and the open cannot move us outside. Nothing
//! here compares path strings for confinement; string handling only picks
//! *which* root a path names.
//!
//! Symlinks that stay inside the root are followed when reading and listing
//! (repos use them, e.g. `CLAUDE.md -> AGENTS.md`); a write never goes
//! through a symlink in its last component (it is refused), so a write only
//! ever replaces a regular file in a directory the kernel resolved beneath
//! the root.
//!
//! All functions here block: call them from the blocking pool.
#![allow(unsafe_code)] // openat2 and the dirfd-relative compare-and-swap write

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest file read or written through the API.
pub const MAX_FILE_BYTES: u64 = 5 * 1024 * 1024;
/// Longest path a caller may name (Linux PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Most entries one listing returns.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// The resolution every caller-named path gets.
pub fn confined() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// `openat2(dir, rel, flags)` beneath `dir`. `EAGAIN` (the kernel saw a
/// concurrent rename it could not rule out) is retried a few times.
pub fn open_beneath(dir: RawFd, rel: &str, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(confined());
    let mut last = Errno::EAGAIN;
    for _ in 0..16 {
        match nix::fcntl::openat2(dir, rel, how) {
            // SAFETY: openat2 returned a fresh descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::EAGAIN) => last = Errno::EAGAIN,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Open a trusted, configured directory (the repo itself) as a root fd.
pub fn open_root_dir(path: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::internal(format!("opening root {}: {e}", path.display())))?;
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The caller-facing error for a failed resolution of `shown`.
pub fn errno_error(e: Errno, shown: &str) -> Error {
    match e {
        Errno::ENOENT => Error::NotFound(format!("{shown}: no such file or directory")),
        Errno::ENOTDIR => Error::NotFound(format!("{shown}: a component is not a directory")),
        Errno::EXDEV => Error::Forbidden(format!("{shown}: outside its root")),
        Errno::ELOOP => Error::Forbidden(format!(
            "{shown}: symlink not allowed here (loop, magic link, or it leaves the root)"
        )),
        Errno::EACCES | Errno::EPERM => Error::Forbidden(format!("{shown}: permission denied")),
        Errno::ENAMETOOLONG => Error::Invalid(format!("{shown}: name too long")),
        Errno::EINVAL => Error::Invalid(format!("{shown}: invalid path")),
        Errno::EISDIR => Error::Invalid(format!("{shown}: is a directory")),
        Errno::EAGAIN => {
            Error::Conflict(format!("{shown}: the tree changed while resolving; retry"))
        }
        Errno::ENOSYS => Error::internal("openat2 is unavailable (Linux >= 5.6 is required)"),
        other => Error::internal(format!("resolving a path: {other}")),
    }
}

/// Syntactic checks on a caller-named relative path before the kernel sees it.
/// In bytes, not characters (see `crate::text`): the kernel's limits count bytes.
pub fn check_path_text(path: &str) -> Result<()> {
    if path.len() > MAX_PATH_BYTES {
        return Err(Error::Invalid(format!(
            "path longer than {MAX_PATH_BYTES} bytes"
        )));
    }
    if path.as_bytes().contains(&0) {
        return Err(Error::Invalid("path contains a NUL byte".into()));
    }
    Ok(())
}

/// What a root is, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RootKind {
    Repo,
    Worktree,
    Config,
}

/// One file root: the repo, one of its session worktrees, or a `roots`
/// entry of `.mitzo.json`. Every root but the repo is itself opened
/// beneath the repo, so a root cannot point outside it.
#[derive(Debug, Clone, Serialize)]
pub struct Root {
    pub label: String,
    /// Absolute path as shown to the caller.
    pub path: PathBuf,
    pub kind: RootKind,
    /// The trusted repo dir this root lies in.
    #[serde(skip)]
    pub repo: PathBuf,
    /// Relative to `repo`; `None` for the repo itself.
    #[serde(skip)]
    pub sub: Option<String>,
    /// Another spelling of `path` callers may use (the configured repo path
    /// when it differs from its canonical form).
    #[serde(skip)]
    pub alias: Option<PathBuf>,
}

impl Root {
    /// A directory fd for this root (read-only, usable for listing).
    pub fn open(&self) -> Result<OwnedFd> {
        let repo = open_root_dir(&self.repo)?;
        match &self.sub {
            None => Ok(repo),
            Some(sub) => open_beneath(repo.as_raw_fd(), sub, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| errno_error(e, &self.label)),
        }
    }

    fn prefixes(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.path.as_path()).chain(self.alias.as_deref())
    }
}

/// Lexical normalisation for display only (never for confinement).
pub fn display_join(base: &Path, rel: &str) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if out != base => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The roots of one repo: itself, its session worktrees
/// (`.mitzo/checkouts/*` that are directories), and the `.mitzo.json`
/// `roots` that open as directories beneath it.
pub fn roots_of(repo: &Path, config_roots: &[(String, String)]) -> Vec<Root> {
    let canonical = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    let alias = (canonical != repo).then(|| repo.to_path_buf());
    let label = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into());
    let mut roots = vec![Root {
        label,
        path: canonical.clone(),
        kind: RootKind::Repo,
        repo: canonical.clone(),
        sub: None,
        alias,
    }];
    let Ok(repo_fd) = open_root_dir(&canonical) else {
        return roots;
    };
    if let Ok(names) = list_subdirs(repo_fd.as_raw_fd(), ".mitzo/checkouts") {
        for name in names {
            let sub = format!(".mitzo/checkouts/{name}");
            roots.push(Root {
                label: format!("worktree {name}"),
                path: canonical.join(&sub),
                kind: RootKind::Worktree,
                repo: canonical.clone(),
                sub: Some(sub),
                alias: None,
            });
        }
    }
    for (label, path) in config_roots {
        let rel = match Path::new(path).strip_prefix(&canonical) {
            Ok(r) => r.to_string_lossy().into_owned(),
            Err(_) if Path::new(path).is_absolute() => {
                tracing::warn!(root = %path, "ignoring a .mitzo.json root outside the repo");
                continue;
            }
            Err(_) => path.clone(),
        };
        // The kernel decides whether it lies inside the repo.
        match open_beneath(
            repo_fd.as_raw_fd(),
            &rel,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        ) {
            Ok(_) => roots.push(Root {
                label: label.clone(),
                path: display_join(&canonical, &rel),
                kind: RootKind::Config,
                repo: canonical.clone(),
                sub: Some(rel),
                alias: None,
            }),
            Err(e) => {
                tracing::warn!(root = %path, error = %e, "ignoring a .mitzo.json root that is not a directory inside the repo")
            }
        }
    }
    roots
}

/// Names of the directories (not symlinks) directly in `rel` beneath `dir`.
fn list_subdirs(dir: RawFd, rel: &str) -> std::result::Result<Vec<String>, Errno> {
    let fd = open_beneath(dir, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let mut d = nix::dir::Dir::from_fd(fd.into_raw_fd())?;
    let raw = d.as_raw_fd();
    let mut out = Vec::new();
    for entry in d.iter().flatten() {
        let name = entry.file_name();
        if is_dot(name) {
            continue;
        }
        let Ok(text) = name.to_str() else { continue };
        if let Ok(st) =
            nix::sys::stat::fstatat(Some(raw), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                out.push(text.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

/// Pick the root a request names and the path relative to it.
///
/// `root` (a root's path or label) given: `path` is relative to it, or
/// absolute and beneath it. No `root`: an absolute `path` picks the root
/// with the longest (component-wise) prefix; a relative one is in the first
/// root (the repo). Only *which* root is decided here; whether the path
/// stays inside it is decided by the kernel when it is opened.
pub fn locate<'a>(roots: &'a [Root], root: Option<&str>, path: &str) -> Result<(&'a Root, String)> {
    check_path_text(path)?;
    if let Some(r) = root {
        check_path_text(r)?;
        let chosen = roots
            .iter()
            .find(|x| x.prefixes().any(|p| p == Path::new(r)) || x.label == r)
            .ok_or_else(|| Error::NotFound(format!("no such file root: {r}")))?;
        if Path::new(path).is_absolute() {
            let rel = chosen
                .prefixes()
                .find_map(|p| Path::new(path).strip_prefix(p).ok())
                .ok_or_else(|| Error::Forbidden(format!("{path}: outside its root")))?;
            return Ok((chosen, rel.to_string_lossy().into_owned()));
        }
        return Ok((chosen, path.to_string()));
    }
    if Path::new(path).is_absolute() {
        let mut best: Option<(&Root, PathBuf, usize)> = None;
        for r in roots {
            for p in r.prefixes() {
                if let Ok(rel) = Path::new(path).strip_prefix(p) {
                    let depth = p.components().count();
                    if best.as_ref().map_or(true, |b| depth > b.2) {
                        best = Some((r, rel.to_path_buf(), depth));
                    }
                }
            }
        }
        let (r, rel, _) =
            best.ok_or_else(|| Error::Forbidden(format!("{path}: outside every file root")))?;
        return Ok((r, rel.to_string_lossy().into_owned()));
    }
    let first = roots
        .first()
        .ok_or_else(|| Error::NotFound("no file roots are configured (set repo_path)".into()))?;
    Ok((first, path.to_string()))
}

/// One directory entry as listed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Milliseconds since the epoch.
    pub mtime: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_symlink: bool,
}

pub struct Listing {
    pub entries: Vec<Entry>,
    pub truncated: bool,
}

/// List `rel` beneath `root`: dirs first, then by name; dotfiles only
/// with `hidden`. A symlink is described by its target only when that
/// target resolves beneath the root; otherwise as a zero-size entry.
pub fn list(root: RawFd, rel: &str, hidden: bool) -> Result<Listing> {
    let shown = if rel.is_empty() { "." } else { rel };
    let fd = open_beneath(root, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| errno_error(e, shown))?;
    let mut d = nix::dir::Dir::from_fd(fd.into_raw_fd()).map_err(|e| errno_error(e, shown))?;
    let raw = d.as_raw_fd();
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in d.iter() {
        let entry = entry.map_err(|e| errno_error(e, shown))?;
        let name = entry.file_name();
        if is_dot(name) || (!hidden && name.to_bytes().first() == Some(&b'.')) {
            continue;
        }
        if entries.len() >= MAX_LIST_ENTRIES {
            truncated = true;
            break;
        }
        let Ok(st) =
            nix::sys::stat::fstatat(Some(raw), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        let text = String::from_utf8_lossy(name.to_bytes()).into_owned();
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let mut e = Entry {
            name: text,
            is_dir: fmt == SFlag::S_IFDIR,
            size: st.st_size.max(0) as u64,
            mtime: st.st_mtime * 1000 + st.st_mtime_nsec / 1_000_000,
            is_symlink: fmt == SFlag::S_IFLNK,
        };
        if e.is_symlink {
            let target = Path::new(rel).join(OsStr::from_bytes(name.to_bytes()));
            let target = target.to_string_lossy();
            match open_beneath(root, &target, OFlag::O_PATH)
                .map(|f| nix::sys::stat::fstat(f.as_raw_fd()))
            {
                Ok(Ok(t)) => {
                    e.is_dir =
                        SFlag::from_bits_truncate(t.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                    e.size = t.st_size.max(0) as u64;
                    e.mtime = t.st_mtime * 1000 + t.st_mtime_nsec / 1_000_000;
                }
                _ => {
                    e.size = 0;
                }
            }
        }
        entries.push(e);
    }
    entries.sort_by(|a, b| {
        b.is_dir
            .cmp(&a.is_dir)
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Listing { entries, truncated })
}

/// Open `rel` beneath `root` for reading; it must be a regular file.
pub fn open_regular(root: RawFd, rel: &str) -> Result<(File, std::fs::Metadata)> {
    let shown = if rel.is_empty() { "." } else { rel };
    // O_NONBLOCK: opening a FIFO must not hang the worker.
    let fd = open_beneath(root, rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .map_err(|e| errno_error(e, shown))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Error::io("stat", e))?;
    if meta.is_dir() {
        return Err(Error::Invalid(format!("{shown}: is a directory")));
    }
    if !meta.is_file() {
        return Err(Error::Invalid(format!("{shown}: not a regular file")));
    }
    refuse_hard_links(&meta, shown)?;
    Ok((file, meta))
}

/// A regular file with another name somewhere may be a hard link to a
/// file outside the root (a link needs no access to the target's
/// directory, only to the file): refused, since the resolver can vouch for
/// this name only.
fn refuse_hard_links(meta: &std::fs::Metadata, shown: &str) -> Result<()> {
    if meta.nlink() > 1 {
        return Err(Error::Forbidden(format!(
            "{shown}: has {} hard links; a file that also lives elsewhere is not served",
            meta.nlink()
        )));
    }
    Ok(())
}

/// Read `rel` beneath `root`, at most [`MAX_FILE_BYTES`] (413 beyond).
pub fn read(root: RawFd, rel: &str) -> Result<Vec<u8>> {
    let (file, meta) = open_regular(root, rel)?;
    read_capped(file, meta.len(), rel)
}

/// Open `rel` for reading as [`read`] does (same resolution, same checks,
/// same size limit) and return it with its length, for a caller that
/// streams the bytes itself.
pub fn open_for_read(root: RawFd, rel: &str) -> Result<(File, u64)> {
    let (file, meta) = open_regular(root, rel)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(rel));
    }
    Ok((file, meta.len()))
}

fn read_capped(file: File, len: u64, shown: &str) -> Result<Vec<u8>> {
    if len > MAX_FILE_BYTES {
        return Err(too_large(shown));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading a file", e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(shown));
    }
    Ok(buf)
}

fn too_large(shown: &str) -> Error {
    Error::TooLarge(format!("{shown}: larger than {MAX_FILE_BYTES} bytes"))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Why a write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// The file no longer holds `expected`; carries the SHA-256 (hex) of
    /// what it holds now.
    Conflict {
        current_sha256: String,
    },
    Other(Error),
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Other(e)
    }
}

/// Serialises this process's writes, so a compare-and-swap is not raced
/// by another request of ours.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Replace the regular file `rel` beneath `root` with `content`, if it
/// still holds `expected` (when given). Atomic: a temp file in the same
/// directory, written, chmod'ed to the old mode, fsynced, renamed over the
/// old name, and the directory fsynced.
pub fn write(
    root: RawFd,
    rel: &str,
    content: &[u8],
    expected: Option<&[u8]>,
) -> std::result::Result<(), WriteError> {
    if content.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(rel).into());
    }
    let path = Path::new(rel);
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n,
        _ => return Err(Error::Invalid(format!("{rel}: not a file path")).into()),
    };
    let parent = path
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = open_beneath(root, &parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| errno_error(e, rel))?;
    let dirfd = dir.as_raw_fd();

    let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // The last component is opened without following a symlink: a write
    // replaces a regular file in `dir`, never a link or what it points at.
    let existing = nix::fcntl::openat(
        Some(dirfd),
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP => Error::Invalid(format!("{rel}: is a symlink; write its target instead")),
        other => errno_error(other, rel),
    })?;
    // SAFETY: a fresh descriptor.
    let existing = File::from(unsafe { OwnedFd::from_raw_fd(existing) });
    let meta = existing.metadata().map_err(|e| Error::io("stat", e))?;
    if meta.is_dir() {
        return Err(Error::Invalid(format!("{rel}: is a directory")).into());
    }
    if !meta.is_file() {
        return Err(Error::Invalid(format!("{rel}: not a regular file")).into());
    }
    refuse_hard_links(&meta, rel)?;
    if let Some(expected) = expected {
        let current = read_all_hashing(existing, meta.len(), expected)?;
        if let Some(current_sha256) = current {
            return Err(WriteError::Conflict { current_sha256 });
        }
    }

    let tmp_name = format!(".mitzo-write-{:016x}.tmp", rand::random::<u64>());
    let tmp = nix::fcntl::openat(
        Some(dirfd),
        tmp_name.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| errno_error(e, rel))?;
    // SAFETY: a fresh descriptor.
    let mut tmp = File::from(unsafe { OwnedFd::from_raw_fd(tmp) });
    let finish = (|| -> std::io::Result<()> {
        tmp.write_all(content)?;
        // Same owner where we may (best effort), then the old permission
        // bits; set-id bits are never carried over.
        let _ = nix::unistd::fchown(
            tmp.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(meta.uid())),
            Some(nix::unistd::Gid::from_raw(meta.gid())),
        );
        tmp.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o1777))?;
        tmp.sync_all()?;
        nix::fcntl::renameat(Some(dirfd), tmp_name.as_str(), Some(dirfd), name)
            .map_err(std::io::Error::from)?;
        nix::unistd::fsync(dirfd).map_err(std::io::Error::from)?;
        Ok(())
    })();
    if let Err(e) = finish {
        let _ = nix::unistd::unlinkat(
            Some(dirfd),
            tmp_name.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        return Err(Error::io("writing a file", e).into());
    }
    Ok(())
}

/// `None` when the file holds exactly `expected`; otherwise the SHA-256 of
/// what it holds.
fn read_all_hashing(mut file: File, len: u64, expected: &[u8]) -> Result<Option<String>> {
    let mut hasher = Sha256::new();
    let mut same = len == expected.len() as u64;
    let mut offset = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading a file", e))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        hasher.update(chunk);
        if same {
            same = expected.get(offset..offset + n) == Some(chunk);
        }
        offset += n;
    }
    if same && offset == expected.len() {
        Ok(None)
    } else {
        Ok(Some(hex::encode(hasher.finalize())))
    }
}

/// How `content` and `expectedContent` of a write are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

/// `PUT /api/files/write`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WriteBody {
    pub path: String,
    pub content: String,
    /// Compare-and-swap: the write happens only if the file still holds this.
    #[serde(default)]
    pub expected_content: Option<String>,
    /// A root's path or label; without it `path` picks its root.
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default)]
    pub encoding: Encoding,
}

impl WriteBody {
    /// The bytes to write and the bytes expected, decoded and size-checked.
    pub fn decode(&self) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        use base64::Engine;
        check_path_text(&self.path)?;
        let dec = |field: &str, s: &str| -> Result<Vec<u8>> {
            let bytes = match self.encoding {
                Encoding::Utf8 => s.as_bytes().to_vec(),
                Encoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| Error::Invalid(format!("{field}: invalid base64: {e}")))?,
            };
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(Error::TooLarge(format!(
                    "{field}: larger than {MAX_FILE_BYTES} bytes"
                )));
            }
            Ok(bytes)
        };
        let content = dec("content", &self.content)?;
        let expected = self
            .expected_content
            .as_deref()
            .map(|e| dec("expectedContent", e))
            .transpose()?;
        Ok((content, expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), "hello").unwrap();
        std::fs::write(d.path().join("secret"), "outside").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("out")).unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("in")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("abs")).unwrap();
        let fd = open_root_dir(&root).unwrap();
        (d, fd)
    }

    #[test]
    fn confinement() {
        let (_d, fd) = setup();
        let r = fd.as_raw_fd();
        assert_eq!(read(r, "a.txt").unwrap(), b"hello");
        assert_eq!(read(r, "sub/../a.txt").unwrap(), b"hello");
        assert_eq!(read(r, "in").unwrap(), b"hello");
        for bad in [
            "../secret",
            "out",
            "abs",
            "/etc/hostname",
            "sub/../../secret",
            "/proc/self/root/etc/hostname",
        ] {
            let e = read(r, bad).unwrap_err();
            assert!(
                matches!(e, Error::Forbidden(_) | Error::NotFound(_)),
                "{bad}: {e:?}"
            );
        }
        assert!(matches!(read(r, "sub").unwrap_err(), Error::Invalid(_)));
        assert!(matches!(read(r, "nope").unwrap_err(), Error::NotFound(_)));
    }

    #[test]
    fn cas_write() {
        let (d, fd) = setup();
        let r = fd.as_raw_fd();
        write(r, "a.txt", b"new", Some(b"hello")).unwrap();
        assert_eq!(std::fs::read(d.path().join("repo/a.txt")).unwrap(), b"new");
        match write(r, "a.txt", b"x", Some(b"hello")) {
            Err(WriteError::Conflict { current_sha256 }) => {
                assert_eq!(current_sha256, sha256_hex(b"new"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            write(r, "in", b"x", None),
            Err(WriteError::Other(Error::Invalid(_)))
        ));
        assert!(matches!(
            write(r, "out", b"x", None),
            Err(WriteError::Other(Error::Invalid(_)))
        ));
        assert!(matches!(
            write(r, "../secret", b"x", None),
            Err(WriteError::Other(Error::Forbidden(_)))
        ));
        assert_eq!(std::fs::read(d.path().join("secret")).unwrap(), b"outside");
    }

    #[test]
    fn locate_picks_longest_component_prefix() {
        let roots = vec![
            Root {
                label: "repo".into(),
                path: "/r/repo".into(),
                kind: RootKind::Repo,
                repo: "/r/repo".into(),
                sub: None,
                alias: None,
            },
            Root {
                label: "wt".into(),
                path: "/r/repo/.mitzo/checkouts/a".into(),
                kind: RootKind::Worktree,
                repo: "/r/repo".into(),
                sub: Some(".mitzo/checkouts/a".into()),
                alias: None,
            },
        ];
        let (r, rel) = locate(&roots, None, "/r/repo/.mitzo/checkouts/a/x").unwrap();
        assert_eq!((r.label.as_str(), rel.as_str()), ("wt", "x"));
        assert!(locate(&roots, None, "/r/repo-evil/x").is_err());
        let (r, rel) = locate(&roots, None, "/r/repo/../etc").unwrap();
        assert_eq!((r.label.as_str(), rel.as_str()), ("repo", "../etc"));
        assert!(locate(&roots, Some("wt"), "/r/repo/x").is_err());
        assert!(locate(&roots, None, "a\0b").is_err());
    }
}
