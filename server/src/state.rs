//! The state dir and the files in it that must survive restarts: the
//! internal token (a plain file hooks can `cat`) and atomic writes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::unistd::{Gid, Uid};

use crate::error::{Error, StartupError};

// Everything here runs while mitzod starts.
type Result<T, E = StartupError> = std::result::Result<T, E>;
use crate::secret::{random_hex_token, Secret};

pub const INTERNAL_TOKEN_FILE: &str = "internal-token";
pub const DATABASE_FILE: &str = "mitzod.db";
const TOKEN_LEN: usize = 64;

/// What `prepare_state_dir` did, which decides when the files in it are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Root created the dir or took it over from root: root may open the
    /// files in it now (and must, when the service user cannot reach it).
    ByRoot,
    /// The dir already belongs to the user we run as (or will drop to):
    /// open it after the drop. A hardened unit grants root no CAP_CHOWN,
    /// CAP_FOWNER or CAP_DAC_*, so root must not touch it.
    ForOwner,
}

/// Make sure the state dir exists and belongs to the user mitzod serves as.
///
/// As root: a missing or root-owned dir is created/handed to `owner`; one
/// already owned by `owner` is left alone until after the drop; any other
/// owner is refused (as it is when not root).
pub fn prepare_state_dir(dir: &Path, owner: Option<(Uid, Gid)>) -> Result<Prepared> {
    let me = Uid::effective();
    let want_uid = owner.map(|(u, _)| u).unwrap_or(me);
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    StartupError::StateDir(format!("cannot create {}: {e}", dir.display()))
                })?;
        }
        Err(e) => {
            return Err(StartupError::StateDir(format!(
                "cannot stat {}: {e}",
                dir.display()
            )))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(StartupError::StateDir(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(meta) => {
            let owner_uid = Uid::from_raw(meta.uid());
            if owner_uid == want_uid {
                if me != want_uid {
                    return Ok(Prepared::ForOwner);
                }
            } else if me.is_root() && owner_uid.is_root() {
                if let Some((uid, _)) = owner {
                    tracing::warn!(
                        dir = %dir.display(),
                        "state dir is owned by root; handing it to uid {uid}, the user mitzod serves as"
                    );
                }
            } else {
                return Err(StartupError::StateDir(format!(
                    "{} is owned by uid {}, not by uid {} that mitzod runs as; fix its ownership \
                     (e.g. `install -d -m 0700 -o USER -g GROUP {}`)",
                    dir.display(),
                    owner_uid,
                    want_uid,
                    dir.display()
                )));
            }
        }
    }
    tighten_state_dir(dir)?;
    if let Some((uid, gid)) = owner {
        if me.is_root() {
            chown_tree_shallow(dir, uid, gid)?;
            return Ok(Prepared::ByRoot);
        }
    }
    Ok(Prepared::ForOwner)
}

/// 0700, with a warning when it was looser. Run by the dir's owner.
pub fn tighten_state_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| StartupError::StateDir(format!("{}: {e}", dir.display())))?;
    if meta.mode() & 0o777 != 0o700 {
        if meta.mode() & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o777), "state dir was group/world accessible; tightening to 0700");
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StartupError::StateDir(format!("chmod 0700 {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Hand the dir and the root-owned entries directly in it to `uid`
/// (a state dir systemd created for a root-started unit is root's).
fn chown_tree_shallow(dir: &Path, uid: Uid, gid: Gid) -> Result<()> {
    use nix::fcntl::AtFlags;
    use nix::unistd::fchownat;
    let chown = |p: &Path| {
        fchownat(None, p, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| StartupError::StateDir(format!("chown {}: {e}", p.display())))
    };
    chown(dir)?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StartupError::StateDir(format!("{}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        if let Ok(meta) = entry.metadata() {
            if meta.uid() == 0 {
                chown(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// Write `contents` to `path` atomically: temp file in the same dir (0600),
/// fsync, rename, fsync the dir. A crash leaves the old file or the new one.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(Uid, Gid)>,
) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| StartupError::StateDir(format!("{} has no parent dir", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}",
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", tmp.display()), e);
    let result = (|| -> std::result::Result<(), Error> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("chmod", e))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(&file), Some(uid), Some(gid))
                .map_err(|e| io("chown", e.into()))?;
        }
        file.write_all(contents).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("fsync", e))?;
        crate::failpoint("write-atomic-before-rename");
        std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync dir of", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Remove temp files a crash may have left behind.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Why a token file was not usable as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRepair {
    Created,
    Regenerated(String),
    Normalised,
    Tightened(u32),
}

fn read_token_file(path: &Path) -> std::io::Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let mut buf = Vec::new();
    // Anything longer than a token plus whitespace is corrupt; do not slurp it.
    Read::by_ref(&mut file).take(4096).read_to_end(&mut buf)?;
    Ok(Some((buf, meta)))
}

/// Check the bytes of a token file: trimmed, 64 hex chars.
fn parse_token(raw: &[u8]) -> std::result::Result<(String, bool), String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8 text".to_string())?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty".into());
    }
    if trimmed.len() != TOKEN_LEN {
        return Err(format!(
            "{} characters instead of {TOKEN_LEN}",
            trimmed.len()
        ));
    }
    if !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not hexadecimal".into());
    }
    let lower = trimmed.to_ascii_lowercase();
    let needs_rewrite = lower != text;
    Ok((lower, needs_rewrite))
}

/// Read the internal token, creating or repairing it as the rules say:
/// missing or corrupt → new token; uppercase → lowercased and rewritten;
/// looser than 0600 → tightened; owned by another user → refused.
///
/// `owner` is the service user when started as root (files are written for
/// it); `None` means the current user.
pub fn load_or_create_internal_token(
    state_dir: &Path,
    owner: Option<(Uid, Gid)>,
) -> Result<(Secret, Vec<TokenRepair>)> {
    let path = state_dir.join(INTERNAL_TOKEN_FILE);
    remove_stale_temps(state_dir, INTERNAL_TOKEN_FILE);
    let mut repairs = Vec::new();
    let me = owner.map(|(uid, _)| uid).unwrap_or_else(Uid::effective);
    // Ownership first: a file we cannot even open should say why.
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if meta.file_type().is_symlink() || !meta.is_file() {
            return Err(StartupError::StateDir(format!(
                "{} is not a regular file; refusing to use it",
                path.display()
            )));
        }
        if meta.uid() != me.as_raw() {
            return Err(StartupError::StateDir(format!(
                "{} is owned by uid {}, not uid {me}; refusing to use it",
                path.display(),
                meta.uid()
            )));
        }
    }
    let existing =
        read_token_file(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    match existing {
        None => {
            let token = random_hex_token();
            write_atomic(&path, token.expose(), 0o600, owner)?;
            repairs.push(TokenRepair::Created);
            Ok((token, repairs))
        }
        Some((raw, meta)) => {
            if meta.uid() != me.as_raw() {
                return Err(StartupError::StateDir(format!(
                    "{} is owned by uid {}, not uid {me}; refusing to use it",
                    path.display(),
                    meta.uid()
                )));
            }
            let mode = meta.mode() & 0o777;
            match parse_token(&raw) {
                Ok((token, needs_rewrite)) => {
                    if needs_rewrite {
                        write_atomic(&path, token.as_bytes(), 0o600, owner)?;
                        repairs.push(TokenRepair::Normalised);
                    } else if mode != 0o600 {
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                            .map_err(|e| Error::io(format!("chmod 0600 {}", path.display()), e))?;
                        repairs.push(TokenRepair::Tightened(mode));
                    }
                    Ok((Secret::new(token), repairs))
                }
                Err(reason) => {
                    let token = random_hex_token();
                    write_atomic(&path, token.expose(), 0o600, owner)?;
                    repairs.push(TokenRepair::Regenerated(reason));
                    Ok((token, repairs))
                }
            }
        }
    }
}

/// Replace the token atomically (`mitzod token rotate`). Run as root, the new
/// file goes to the state dir's owner, so the running server can read it.
pub fn rotate_internal_token(state_dir: &Path) -> Result<()> {
    let path = state_dir.join(INTERNAL_TOKEN_FILE);
    let dir_meta = std::fs::metadata(state_dir)
        .map_err(|e| StartupError::StateDir(format!("{}: {e}", state_dir.display())))?;
    let owner = Uid::effective()
        .is_root()
        .then(|| (Uid::from_raw(dir_meta.uid()), Gid::from_raw(dir_meta.gid())));
    write_atomic(&path, random_hex_token().expose(), 0o600, owner)
}

/// The token the server checks against, re-read when the file changes so
/// that `mitzod token rotate` takes effect at once and the old token dies.
pub struct InternalTokenStore {
    path: PathBuf,
    inner: Mutex<(Secret, FileStamp)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(FileStamp {
        ino: m.ino(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        size: m.size(),
    })
}

impl InternalTokenStore {
    pub fn new(path: PathBuf, token: Secret) -> InternalTokenStore {
        let st = stamp(&path).unwrap_or(FileStamp {
            ino: 0,
            mtime_ns: 0,
            size: 0,
        });
        InternalTokenStore {
            path,
            inner: Mutex::new((token, st)),
        }
    }

    /// Constant-time check of a presented token against the current file.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(now) = stamp(&self.path) {
            if now != guard.1 {
                match read_token_file(&self.path) {
                    Ok(Some((raw, _))) => match parse_token(&raw) {
                        Ok((token, _)) => {
                            tracing::info!("internal token file changed; using the new token");
                            *guard = (Secret::new(token), now);
                        }
                        Err(reason) => {
                            tracing::warn!(%reason, "internal token file is corrupt; keeping the previous token")
                        }
                    },
                    _ => {
                        tracing::warn!("internal token file unreadable; keeping the previous token")
                    }
                }
            }
        }
        guard.0.matches(presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules() {
        let good = "ab".repeat(32);
        assert_eq!(parse_token(good.as_bytes()).unwrap(), (good.clone(), false));
        assert_eq!(
            parse_token(format!("{good}\n").as_bytes()).unwrap(),
            (good.clone(), true)
        );
        assert_eq!(
            parse_token(good.to_uppercase().as_bytes()).unwrap(),
            (good.clone(), true)
        );
        assert!(parse_token(b"").is_err());
        assert!(parse_token(b"abc").is_err());
        assert!(parse_token("zz".repeat(32).as_bytes()).is_err());
        assert!(parse_token(&[0xff; 64]).is_err());
    }

    #[test]
    fn store_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (token, repairs) = load_or_create_internal_token(dir.path(), None).unwrap();
        assert_eq!(repairs, vec![TokenRepair::Created]);
        let store = InternalTokenStore::new(dir.path().join(INTERNAL_TOKEN_FILE), token.clone());
        assert!(store.verify(token.expose()));
        rotate_internal_token(dir.path()).unwrap();
        assert!(
            !store.verify(token.expose()),
            "old token must die on rotation"
        );
        let new = std::fs::read_to_string(dir.path().join(INTERNAL_TOKEN_FILE)).unwrap();
        assert!(store.verify(new.as_bytes()));
    }
}
