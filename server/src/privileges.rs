//! The privilege drop, done in `main` before any thread exists
//! (capabilities and ids are per thread until the runtime starts).

use caps::CapSet;
use nix::unistd::{Gid, Group, Uid, User};

use crate::error::StartupError;

// Everything here runs while mitzod starts.
type Result<T, E = StartupError> = std::result::Result<T, E>;

/// Who the server runs as after the drop.
#[derive(Debug, Clone)]
pub struct Target {
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Resolve `user`/`group` from the config; the group defaults to the user's.
pub fn resolve_target(user: &str, group: Option<&str>) -> Result<Target> {
    let u = User::from_name(user)
        .map_err(|e| StartupError::Privileges(format!("looking up user {user:?}: {e}")))?
        .ok_or_else(|| StartupError::Privileges(format!("key `user`: no such user {user:?}")))?;
    let gid = match group {
        Some(g) => {
            Group::from_name(g)
                .map_err(|e| StartupError::Privileges(format!("looking up group {g:?}: {e}")))?
                .ok_or_else(|| {
                    StartupError::Privileges(format!("key `group`: no such group {g:?}"))
                })?
                .gid
        }
        None => u.gid,
    };
    if u.uid.is_root() || gid.as_raw() == 0 {
        return Err(StartupError::Privileges(format!(
            "key `user`/`group`: {user:?} resolves to uid {} gid {}; refusing to serve as root",
            u.uid, gid
        )));
    }
    Ok(Target {
        user: u.name,
        uid: u.uid,
        gid,
    })
}

pub fn running_as_root() -> bool {
    Uid::effective().is_root() || Uid::current().is_root()
}

/// Root → `target`, then lock the door behind us. Non-root → drop every
/// capability we might hold. Either way: NO_NEW_PRIVS, not dumpable, verified.
pub fn drop_privileges(target: Option<&Target>) -> Result<()> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| StartupError::Privileges(format!("{what}: {e}"));
    if running_as_root() {
        let target = target.ok_or_else(|| {
            StartupError::Privileges(
                "started as root but no `user` is configured: set `user` (and `group`) in the config, \
                 or start mitzod as an unprivileged user"
                    .into(),
            )
        })?;
        nix::unistd::setgroups(&[target.gid]).map_err(|e| fail("setgroups", &e))?;
        nix::unistd::setresgid(target.gid, target.gid, target.gid)
            .map_err(|e| fail("setresgid", &e))?;
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| fail("clearing ambient capabilities", &e))?;
        caps::clear(None, CapSet::Inheritable)
            .map_err(|e| fail("clearing inheritable capabilities", &e))?;
        // Dropping from the bounding set needs CAP_SETPCAP, so it happens
        // while we still are root.
        for cap in
            caps::read(None, CapSet::Bounding).map_err(|e| fail("reading bounding set", &e))?
        {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                fail(
                    &format!("dropping {cap} from the bounding set (is CAP_SETPCAP allowed?)"),
                    &e,
                )
            })?;
        }
        nix::unistd::setresuid(target.uid, target.uid, target.uid)
            .map_err(|e| fail("setresuid", &e))?;
    } else {
        let _ = caps::clear(None, CapSet::Ambient);
        clear_if_held(CapSet::Inheritable)?;
        // Without CAP_SETPCAP the bounding set cannot shrink; NO_NEW_PRIVS
        // below makes it moot, since nothing can be gained by exec.
        if caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false) {
            for cap in caps::read(None, CapSet::Bounding).unwrap_or_default() {
                let _ = caps::drop(None, CapSet::Bounding, cap);
            }
        }
    }
    clear_if_held(CapSet::Effective)?;
    clear_if_held(CapSet::Permitted)?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("PR_SET_NO_NEW_PRIVS", &e))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| fail("PR_SET_DUMPABLE", &e))?;
    verify(target)
}

/// capset(2) only when something is held: a unit started with `User=` may
/// forbid the call itself (`SystemCallFilter=~@privileged`), and there is
/// nothing to clear then anyway.
fn clear_if_held(set: CapSet) -> Result<()> {
    let held = caps::read(None, set)
        .map_err(|e| StartupError::Privileges(format!("reading {set:?} capabilities: {e}")))?;
    if held.is_empty() {
        return Ok(());
    }
    caps::clear(None, set)
        .map_err(|e| StartupError::Privileges(format!("clearing {set:?} capabilities: {e}")))
}

/// Prove the drop took: no id is 0, `setuid(0)` fails, no capability left.
fn verify(target: Option<&Target>) -> Result<()> {
    let bad = |what: String| {
        Err(StartupError::Privileges(format!(
            "verification failed: {what}"
        )))
    };
    let uids = nix::unistd::getresuid()
        .map_err(|e| StartupError::Privileges(format!("getresuid: {e}")))?;
    let gids = nix::unistd::getresgid()
        .map_err(|e| StartupError::Privileges(format!("getresgid: {e}")))?;
    for uid in [uids.real, uids.effective, uids.saved] {
        if uid.is_root() {
            return bad("a uid is still 0; refusing to serve as root".into());
        }
    }
    if let Some(t) = target {
        if [uids.real, uids.effective, uids.saved]
            .iter()
            .any(|u| *u != t.uid)
            || [gids.real, gids.effective, gids.saved]
                .iter()
                .any(|g| *g != t.gid)
        {
            return bad(format!("ids are not all {}:{}", t.uid, t.gid));
        }
        let groups = nix::unistd::getgroups()
            .map_err(|e| StartupError::Privileges(format!("getgroups: {e}")))?;
        if groups.iter().any(|g| *g != t.gid) {
            return bad(format!("supplementary groups {groups:?} remain"));
        }
    }
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return bad("setuid(0) succeeded".into());
    }
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        let held = caps::read(None, set)
            .map_err(|e| StartupError::Privileges(format!("reading {set:?}: {e}")))?;
        if !held.is_empty() {
            return bad(format!("{set:?} capabilities remain: {held:?}"));
        }
    }
    if target.is_some() {
        let bounding = caps::read(None, CapSet::Bounding)
            .map_err(|e| StartupError::Privileges(format!("reading bounding: {e}")))?;
        if !bounding.is_empty() {
            return bad(format!("bounding capabilities remain: {bounding:?}"));
        }
    }
    if !nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
        return bad("NO_NEW_PRIVS is not set".into());
    }
    if nix::sys::prctl::get_dumpable().unwrap_or(true) {
        return bad("process is still dumpable".into());
    }
    Ok(())
}
