//! A seccomp filter next to Landlock, for what Landlock does not govern:
//! sockets other than plain TCP (MPTCP walks past Landlock's TCP rules),
//! access to other processes of the same uid and Landlock domain (ptrace,
//! `process_vm_*`, `pidfd_getfd`, `kcmp`), same-uid kernel objects (keyrings,
//! SysV IPC) and kernel surfaces an agent has no use for.
//!
//! The program is compiled in the parent (`seccompiler`); the child only
//! hands the finished buffer to the kernel, which copies it, so nothing is
//! allocated between fork and exec. A refused call fails with EPERM rather
//! than killing the caller, so tools report an error and go on.
#![allow(unsafe_code)] // installing the compiled filter with prctl/seccomp

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

/// Calls refused outright.
fn denied_syscalls() -> Vec<(&'static str, libc::c_long)> {
    vec![
        // Other processes of the same uid and Landlock domain (the agent
        // itself, from one of its tools): read or write their memory,
        // steal their file descriptors, compare their kernel objects.
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("kcmp", libc::SYS_kcmp),
        // The uid's keyrings hold other programs' secrets.
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("keyctl", libc::SYS_keyctl),
        // SysV IPC objects are keyed per IPC namespace, not per sandbox.
        ("shmget", libc::SYS_shmget),
        ("shmat", libc::SYS_shmat),
        ("shmctl", libc::SYS_shmctl),
        ("shmdt", libc::SYS_shmdt),
        ("semget", libc::SYS_semget),
        ("semop", libc::SYS_semop),
        ("semtimedop", libc::SYS_semtimedop),
        ("semctl", libc::SYS_semctl),
        ("msgget", libc::SYS_msgget),
        ("msgsnd", libc::SYS_msgsnd),
        ("msgrcv", libc::SYS_msgrcv),
        ("msgctl", libc::SYS_msgctl),
        // Kernel surfaces with a history of privilege escalations.
        ("perf_event_open", libc::SYS_perf_event_open),
        ("bpf", libc::SYS_bpf),
        ("userfaultfd", libc::SYS_userfaultfd),
        // io_uring creates sockets (IORING_OP_SOCKET) and runs other
        // operations without passing through this filter.
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
    ]
}

const SOCK_TYPE_MASK: u64 = 0xf;
const NETLINK_ROUTE: u64 = 0;

fn cond(arg: u8, op: Op, value: u64) -> Result<Cond> {
    Cond::new(arg, Len::Dword, op, value).map_err(|e| Error::Sandbox(format!("seccomp rule: {e}")))
}

fn rule(conds: Vec<Cond>) -> Result<SeccompRule> {
    SeccompRule::new(conds).map_err(|e| Error::Sandbox(format!("seccomp rule: {e}")))
}

/// The rules that make `socket()` fail: anything but AF_UNIX, AF_INET and
/// AF_INET6 stream sockets with protocol 0 or IPPROTO_TCP, and AF_NETLINK
/// with NETLINK_ROUTE (glibc's getaddrinfo reads the interface list that
/// way). Refused: UDP and raw sockets, MPTCP (IPPROTO_MPTCP = 262, which
/// Landlock's TCP port rules do not see), SCTP, packet sockets, other
/// netlink families (sock_diag lists every socket on the machine), vsock...
fn socket_rules() -> Result<Vec<SeccompRule>> {
    let unix = libc::AF_UNIX as u64;
    let inet = libc::AF_INET as u64;
    let inet6 = libc::AF_INET6 as u64;
    let netlink = libc::AF_NETLINK as u64;
    let stream = libc::SOCK_STREAM as u64;
    let tcp = libc::IPPROTO_TCP as u64;
    let mut rules = vec![rule(vec![
        cond(0, Op::Ne, unix)?,
        cond(0, Op::Ne, inet)?,
        cond(0, Op::Ne, inet6)?,
        cond(0, Op::Ne, netlink)?,
    ])?];
    rules.push(rule(vec![
        cond(0, Op::Eq, netlink)?,
        cond(2, Op::Ne, NETLINK_ROUTE)?,
    ])?);
    for family in [inet, inet6] {
        // Any type but SOCK_STREAM (the flags above the mask are fine).
        for ty in 0..=SOCK_TYPE_MASK {
            if ty != stream {
                rules.push(rule(vec![
                    cond(0, Op::Eq, family)?,
                    cond(1, Op::MaskedEq(SOCK_TYPE_MASK), ty)?,
                ])?);
            }
        }
        rules.push(rule(vec![
            cond(0, Op::Eq, family)?,
            cond(2, Op::Ne, 0)?,
            cond(2, Op::Ne, tcp)?,
        ])?);
    }
    Ok(rules)
}

fn target_arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| {
        Error::Sandbox(format!(
            "seccomp: no filter for this architecture ({}): {e}",
            std::env::consts::ARCH
        ))
    })
}

/// The compiled filter for agents and mitzod's own sandboxed commands.
pub fn build_filter() -> Result<BpfProgram> {
    Ok(with_x32_guard(compile_rules()?))
}

/// What seccompiler makes of the rules: the architecture check (a call of
/// another architecture kills the process) and the per-call rules, without
/// the x32 guard.
fn compile_rules() -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr) in denied_syscalls() {
        rules.insert(nr, Vec::new());
    }
    rules.insert(libc::SYS_socket, socket_rules()?);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        target_arch()?,
    )
    .map_err(|e| Error::Sandbox(format!("seccomp filter: {e}")))?;
    filter
        .try_into()
        .map_err(|e| Error::Sandbox(format!("compiling the seccomp filter: {e}")))
}

/// The filters a reaper stacks on [`build_filter`] for its agent alone:
///
/// - no new namespaces: `unshare`, `clone` with a `CLONE_NEW*` flag and
///   `setns` fail with EPERM, and `clone3` (whose flags a filter cannot
///   read) with ENOSYS, so that libc falls back to `clone`. The unit allows
///   user and network namespaces for the agents' own network; an agent
///   must not make more (a user namespace of its own would hand it
///   capabilities over new network namespaces, and so nftables and the
///   rest of the kernel's network configuration code);
/// - with `no_unix_sockets` (an agent in a network namespace of its own):
///   `socket(AF_UNIX, ...)` fails too (`socketpair` still works, for pipes
///   between its own processes). Unix sockets by path are not bound to a
///   network namespace, and Landlock governs connecting to them only from
///   ABI 9: without this, an agent could reach any socket whose path it can
///   name (a container runtime's, a bus, another session's proxy).
pub fn build_agent_filters(no_unix_sockets: bool) -> Result<Vec<BpfProgram>> {
    let compile = |rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32| -> Result<BpfProgram> {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            target_arch()?,
        )
        .map_err(|e| Error::Sandbox(format!("seccomp filter: {e}")))?;
        filter
            .try_into()
            .map_err(|e| Error::Sandbox(format!("compiling the seccomp filter: {e}")))
    };
    const NEW_NAMESPACES: [i32; 8] = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
        0x80, // CLONE_NEWTIME
    ];
    let flag_rules = || -> Result<Vec<SeccompRule>> {
        NEW_NAMESPACES
            .iter()
            .map(|f| rule(vec![cond(0, Op::MaskedEq(*f as u64), *f as u64)?]))
            .collect()
    };
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    eperm.insert(libc::SYS_unshare, flag_rules()?);
    eperm.insert(libc::SYS_clone, flag_rules()?);
    eperm.insert(libc::SYS_setns, Vec::new());
    if no_unix_sockets {
        eperm.insert(
            libc::SYS_socket,
            vec![rule(vec![cond(0, Op::Eq, libc::AF_UNIX as u64)?])?],
        );
    }
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    enosys.insert(libc::SYS_clone3, Vec::new());
    Ok(vec![
        compile(eperm, libc::EPERM)?,
        compile(enosys, libc::ENOSYS)?,
    ])
}

/// On x86_64, x32 system calls carry the same audit arch with bit 30 set in
/// the number, so a filter matching plain numbers would not see them:
/// refuse every such call before the compiled program runs.
#[cfg(target_arch = "x86_64")]
fn with_x32_guard(program: BpfProgram) -> BpfProgram {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let load_nr = sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: 0, // offsetof(struct seccomp_data, nr)
    };
    let test_bit = sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
        jt: 0,
        jf: 1,
        k: X32_SYSCALL_BIT,
    };
    let deny = sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32),
    };
    let mut out = vec![load_nr, test_bit, deny];
    out.extend(program);
    out
}

#[cfg(not(target_arch = "x86_64"))]
fn with_x32_guard(program: BpfProgram) -> BpfProgram {
    program
}

/// Whether this kernel takes seccomp filters at all (`CONFIG_SECCOMP`),
/// and why not. Only prctl is used: systemd's `@system-service` call filter
/// (systemd 252) refuses the seccomp(2) system call itself.
pub fn probe() -> std::result::Result<(), String> {
    // SAFETY: prctl with integer arguments.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        return Err(format!(
            "the kernel does not support seccomp ({})",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The child half: no allocation (the program is built), no locks. Sets
/// `no_new_privs` (required for an unprivileged filter; Landlock set it
/// already) and installs the filter on this, the only, thread, through
/// prctl (which systemd's `@system-service` allows; seccomp(2) it refuses).
pub(crate) fn apply_in_child(program: &[sock_filter]) -> io::Result<()> {
    let Ok(len) = u16::try_from(program.len()) else {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    };
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with integers; PR_SET_SECCOMP copies the program,
    // which outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The names of the refused calls, for SECURITY.md and logs.
pub fn denied_names() -> Vec<&'static str> {
    denied_syscalls().into_iter().map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_compiles_and_fits() {
        let p = build_filter().unwrap();
        assert!(p.len() < u16::MAX as usize && p.len() > 30, "{}", p.len());
        assert!(probe().is_ok());
    }

    /// What the kernel hands a filter (`struct seccomp_data`).
    struct Call {
        arch: u32,
        nr: u32,
        args: [u64; 6],
    }

    impl Call {
        fn load(&self, k: u32) -> u32 {
            match k {
                0 => self.nr,
                4 => self.arch,
                16..=63 if k % 4 == 0 => {
                    let arg = self.args[((k - 16) / 8) as usize];
                    if (k - 16) % 8 == 0 {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                _ => panic!("load at offset {k} of seccomp_data"),
            }
        }
    }

    /// A classic-BPF interpreter for the instructions these programs use,
    /// so the compiled program itself is what is checked; any other
    /// instruction fails the test.
    fn run(program: &[sock_filter], call: &Call) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            let code = u32::from(i.code);
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => a = call.load(i.k),
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += jump(a == i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += jump(a > i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += jump(a >= i.k),
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => pc += jump(a & i.k != 0),
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                other => panic!("instruction {other:#x} at {}", pc - 1),
            }
        }
    }

    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    fn x86_64(nr: libc::c_long, args: [u64; 6]) -> Call {
        Call {
            arch: AUDIT_ARCH_X86_64,
            nr: nr as u32,
            args,
        }
    }

    /// The compiled program, run on calls: the refused ones get EPERM,
    /// others pass, x32 calls are refused by the guard (the same call
    /// passes the program without it), and a foreign architecture's call
    /// kills the process.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_and_foreign_architecture_calls_are_refused() {
        let p = build_filter().unwrap();
        let getpid = libc::SYS_getpid;
        assert_eq!(run(&p, &x86_64(getpid, [0; 6])), ALLOW);
        for (name, nr) in denied_syscalls() {
            assert_eq!(run(&p, &x86_64(nr, [0; 6])), EPERM, "{name}");
        }
        let inet = libc::AF_INET as u64;
        let stream = libc::SOCK_STREAM as u64;
        let tcp = [inet, stream, 0, 0, 0, 0];
        let mptcp = [inet, stream | libc::SOCK_CLOEXEC as u64, 262, 0, 0, 0];
        let udp = [inet, libc::SOCK_DGRAM as u64, 0, 0, 0, 0];
        assert_eq!(run(&p, &x86_64(libc::SYS_socket, tcp)), ALLOW);
        assert_eq!(run(&p, &x86_64(libc::SYS_socket, mptcp)), EPERM);
        assert_eq!(run(&p, &x86_64(libc::SYS_socket, udp)), EPERM);

        // x32: the same audit arch, bit 30 set in the number.
        const X32: u32 = 0x4000_0000;
        let x32_getpid = Call {
            arch: AUDIT_ARCH_X86_64,
            nr: X32 | getpid as u32,
            args: [0; 6],
        };
        assert_eq!(run(&p, &x32_getpid), EPERM, "the x32 guard");
        let x32_socket = Call {
            arch: AUDIT_ARCH_X86_64,
            nr: X32 | libc::SYS_socket as u32,
            args: mptcp,
        };
        assert_eq!(run(&p, &x32_socket), EPERM);
        // Control: without the guard, the x32 numbers match no rule.
        let unguarded = compile_rules().unwrap();
        assert_eq!(
            p.len(),
            unguarded.len() + 3,
            "the guard is three instructions"
        );
        assert_eq!(run(&unguarded, &x32_getpid), ALLOW);
        assert_eq!(run(&unguarded, &x32_socket), ALLOW);

        // An i386 call (int 0x80): its numbers mean other calls; killed.
        let i386 = Call {
            arch: AUDIT_ARCH_I386,
            nr: 20, // getpid on i386
            args: [0; 6],
        };
        assert_eq!(run(&p, &i386), libc::SECCOMP_RET_KILL_PROCESS);
    }
}
