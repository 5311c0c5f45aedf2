//! `mitzod serve --dev`: a working server with no config, for a first look.
//! State in `./.mitzo-dev/`; a passphrase and JWT secret generated once.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::privileges::Target;
use crate::secret::random_hex_token;

pub const DEV_DIR: &str = ".mitzo-dev";
const PASSPHRASE_FILE: &str = "passphrase";
const JWT_FILE: &str = "jwt-secret";

pub struct DevSetup {
    pub config: Config,
    pub target: Option<Target>,
    /// Printed once, on the run that created it.
    pub new_passphrase: Option<String>,
}

pub fn prepare() -> Result<DevSetup> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("current directory", e))?;
    let state_dir = cwd.join(DEV_DIR);
    let target = if crate::privileges::running_as_root() {
        Some(dev_target(&cwd)?)
    } else {
        None
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&state_dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| Error::StateDir(format!("cannot create {}: {e}", state_dir.display())))?;
    let owner = target.as_ref().map(|t| (t.uid, t.gid));
    let mut new_passphrase = None;
    let pass_path = state_dir.join(PASSPHRASE_FILE);
    if !pass_path.exists() {
        // Six groups of four hex digits: easy to type on a phone once.
        let raw = random_hex_token();
        let phrase = raw.expose_str().as_bytes()[..24]
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-");
        crate::state::write_atomic(&pass_path, phrase.as_bytes(), 0o600, owner)?;
        new_passphrase = Some(phrase);
    }
    let jwt_path = state_dir.join(JWT_FILE);
    if !jwt_path.exists() {
        crate::state::write_atomic(&jwt_path, random_hex_token().expose(), 0o600, owner)?;
    }
    let repo_path = is_git_repo(&cwd).then_some(cwd.clone());
    let mut config = Config::dev(state_dir, repo_path)?;
    config.jwt_secret_file = Some(jwt_path);
    config.passphrase_file = Some(pass_path);
    if let Some(t) = &target {
        config.user = Some(t.user.clone());
    }
    Ok(DevSetup {
        config,
        target,
        new_passphrase,
    })
}

fn is_git_repo(dir: &Path) -> bool {
    dir.join(".git").exists()
}

/// Root never serves: become the owner of the current directory, else `nobody`.
fn dev_target(cwd: &Path) -> Result<Target> {
    let meta = std::fs::metadata(cwd).map_err(|e| Error::io("current directory", e))?;
    let owner = Uid::from_raw(meta.uid());
    let user = if !owner.is_root() {
        User::from_uid(owner).ok().flatten()
    } else {
        None
    };
    let user = match user {
        Some(u) => u,
        None => User::from_name("nobody").ok().flatten().ok_or_else(|| {
            Error::Privileges("--dev as root: no user `nobody` to drop to".into())
        })?,
    };
    let gid: Gid = user.gid;
    crate::privileges::resolve_target(&user.name, None).map(|t| Target { gid, ..t })
}

/// The state dir after the drop. When the dropped user cannot walk the
/// path (a checkout under /root, say), work from inside it through the fd
/// opened while still root: relative paths need no search rights above.
pub fn reach_state_dir(dir: &Path, opened_as_root: &std::fs::File) -> Result<PathBuf> {
    if std::fs::read_dir(dir).is_ok() {
        return Ok(dir.to_path_buf());
    }
    nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(opened_as_root)).map_err(|e| {
        Error::StateDir(format!(
            "{} is not reachable after the privilege drop: {e}",
            dir.display()
        ))
    })?;
    tracing::info!(dir = %dir.display(), "state dir is not reachable by path for the dropped user; working from inside it");
    Ok(PathBuf::from("."))
}
