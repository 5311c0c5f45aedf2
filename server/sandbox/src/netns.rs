//! A network of its own for a sandboxed process: new (unprivileged) user
//! and network namespaces in which only loopback exists, entered between
//! fork and exec, before capabilities are dropped and before Landlock and
//! the seccomp filter. Nothing inside reaches the host's network: no TCP,
//! UDP, DNS, MPTCP or raw socket leaves it, and the host's loopback is not
//! its loopback. Unix sockets by path are not bound to a network namespace
//! (Landlock, not the namespace, decides which paths it may reach).
//!
//! The user namespace maps the caller's uid and gid to themselves, so files
//! keep their owners; inside it the process briefly holds capabilities
//! (to write its maps and bring `lo` up), then drops them all.
#![allow(unsafe_code)] // unshare, setns and fork for a network namespace

use std::ffi::CString;
use std::io;

/// Everything the child needs, prepared in the parent (no allocation after
/// fork).
#[derive(Debug)]
pub struct NetnsSpec {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    setgroups: CString,
    uid_map_path: CString,
    gid_map_path: CString,
}

impl NetnsSpec {
    pub fn new() -> NetnsSpec {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        NetnsSpec {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            setgroups: c"/proc/self/setgroups".to_owned(),
            uid_map_path: c"/proc/self/uid_map".to_owned(),
            gid_map_path: c"/proc/self/gid_map".to_owned(),
        }
    }
}

impl Default for NetnsSpec {
    fn default() -> Self {
        NetnsSpec::new()
    }
}

/// Whether this kernel (and whatever confines mitzod) lets an unprivileged
/// process create user and network namespaces, and why not. Forks a child
/// that tries, so the caller's own namespaces are untouched.
pub fn probe() -> std::result::Result<(), String> {
    probe_as(None)
}

/// The child could not become the user it was to probe as.
const PROBE_SWITCH_FAILED: i32 = 250;

/// [`probe`], with the child first switching to `(uid, gid)` (no
/// supplementary groups): root may create namespaces where the user agents
/// run as may not, so a caller running as root probes as that user.
pub fn probe_as(ids: Option<(u32, u32)>) -> std::result::Result<(), String> {
    // SAFETY: the child only calls setgroups, setresgid, setresuid, unshare
    // and _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only, in the child.
        unsafe {
            if let Some((uid, gid)) = ids {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    libc::_exit(PROBE_SWITCH_FAILED);
                }
            }
            let r = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
            let errno = if r == 0 { 0 } else { *libc::__errno_location() };
            libc::_exit(errno.clamp(0, 255));
        }
    }
    let mut status = 0;
    let waited = loop {
        // SAFETY: waiting for the child just forked.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    if waited != pid {
        return Err(format!(
            "waiting for the namespace probe: {}",
            io::Error::last_os_error()
        ));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    match code {
        0 => Ok(()),
        -1 => Err("the namespace probe died".into()),
        PROBE_SWITCH_FAILED => Err(format!(
            "the namespace probe could not switch to uid/gid {:?}",
            ids.unwrap_or_default()
        )),
        e => Err(format!(
            "unprivileged user and network namespaces are not available ({}): the kernel \
             (user.max_user_namespaces, an LSM policy) or the unit (RestrictNamespaces=) forbids them",
            io::Error::from_raw_os_error(e)
        )),
    }
}

fn write_file(path: &CString, data: &[u8]) -> io::Result<()> {
    // SAFETY: a valid path; data is a valid buffer of its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 || n as usize != data.len() {
            return Err(err);
        }
    }
    Ok(())
}

/// The child half: enter the namespaces, map ourselves, bring `lo` up.
/// No allocation.
pub(crate) fn enter_in_child(spec: &NetnsSpec) -> io::Result<()> {
    // SAFETY: system calls with pre-built arguments or stack structures.
    unsafe {
        // mitzod is not dumpable, and neither is this fork of it: its
        // /proc/self files then belong to root and the maps cannot be
        // written. The exec that follows makes the child dumpable anyway
        // (and the reaper turns that off again).
        if libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    write_file(&spec.setgroups, b"deny")?;
    write_file(&spec.uid_map_path, &spec.uid_map)?;
    write_file(&spec.gid_map_path, &spec.gid_map)?;
    // SAFETY: an ioctl on a socket of ours with an ifreq on the stack.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(s);
        if r != 0 {
            return Err(err);
        }
    }
    Ok(())
}
