//! Escape tests: real commands under the default agent policy on the real
//! kernel, each with its expected outcome. Every "denied" row whose denial
//! could come from somewhere else is first run without Landlock (same
//! uid, same empty capability set) to show it would succeed there.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a test fails by panicking; raw fds and pre_exec set-ups

mod sandbox_common;

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mitzo_sandbox::{
    agent_policy, build_env, set_child_subreaper, terminate_session, AgentPolicyInputs,
    Enforcement, Policy, SandboxedCommand,
};
use mitzod::config::AgentConfig;
use mitzod::git::Git;
use sandbox_common::*;

struct Fx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    wt: PathBuf,
    owner_home: PathBuf,
    state: PathBuf,
    shared: PathBuf,
    policy: Policy,
    env: Vec<(OsString, OsString)>,
    allowed_listener: TcpListener,
    other_listener: TcpListener,
}

impl Fx {
    fn new() -> Fx {
        // mitzod makes itself non-dumpable and a subreaper at start-up.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        set_child_subreaper().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let repo = root.join("repo");
        init_repo(&repo);
        let git = Git::new(Enforcement::Required).unwrap();
        let id = mitzod::worktree::new_session_id();
        let wt = mitzod::worktree::prepare_session_dir(&git, &repo, &id, true).unwrap();
        let owner_home = root.join("owner-home");
        std::fs::create_dir_all(&owner_home).unwrap();
        std::fs::write(owner_home.join("notes"), "owner's\n").unwrap();
        let state = root.join("state");
        for d in ["agent-home", "tmp/s1"] {
            std::fs::create_dir_all(state.join(d)).unwrap();
        }
        std::fs::write(state.join("internal-token"), "tok\n").unwrap();
        std::fs::write(state.join("mitzod.sqlite"), "db\n").unwrap();
        // A read-granted tree holding a credentials dir: the grant must be
        // carved around it.
        let shared = root.join("shared");
        std::fs::create_dir_all(shared.join("credentials")).unwrap();
        std::fs::write(shared.join("readme"), "public\n").unwrap();
        std::fs::write(shared.join("credentials/jwt-secret"), "s3cret\n").unwrap();

        let allowed_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let other_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let agent = AgentConfig {
            allowed_connect_ports: vec![allowed_listener.local_addr().unwrap().port()],
            extra_read_paths: vec![shared.clone()],
            ..AgentConfig::default()
        };
        let hidden = vec![shared.join("credentials")];
        let policy = agent_policy(&AgentPolicyInputs {
            repo: &repo,
            worktrees: std::slice::from_ref(&wt),
            repo_writable: false,
            agent_home: &state.join("agent-home"),
            session_tmp: &state.join("tmp/s1"),
            state_dir: &state,
            hidden: &hidden,
            agent_binary: Path::new("/bin/sh"),
            own_port: None,
            agent: agent.grants(),
            landlock: Enforcement::Required,
        })
        .unwrap();
        let session = vec![
            (
                "HOME".to_string(),
                state.join("agent-home").display().to_string(),
            ),
            (
                "TMPDIR".to_string(),
                state.join("tmp/s1").display().to_string(),
            ),
        ];
        let env = build_env(std::env::vars_os(), &[], &session);
        Fx {
            _dir: dir,
            root,
            repo,
            wt,
            owner_home,
            state,
            shared,
            policy,
            env,
            allowed_listener,
            other_listener,
        }
    }

    fn sandboxed(&self, script: &str) -> Output {
        SandboxedCommand::new("/bin/sh", &self.policy, self.env.clone())
            .unwrap()
            .args(["-c", script])
            .current_dir(&self.repo)
            .into_std()
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The same sandbox without its seccomp layer: Landlock alone.
    fn landlock_only(&self, script: &str) -> Output {
        SandboxedCommand::new("/bin/sh", &self.policy, self.env.clone())
            .unwrap()
            .without_seccomp()
            .args(["-c", script])
            .current_dir(&self.repo)
            .into_std()
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    Allowed,
    Denied,
}

struct Row {
    name: &'static str,
    script: String,
    expect: Expect,
    /// Run without Landlock first and require success (for denials that
    /// must be Landlock's, not DAC's or the kernel's).
    control: bool,
    /// Run under Landlock without the seccomp layer first and require
    /// success (for denials that are the seccomp layer's).
    control_landlock: bool,
    /// A path that must not exist after the sandboxed run.
    absent: Option<PathBuf>,
    /// Undo the control run's effect.
    cleanup: Option<PathBuf>,
    /// A file the control run changes: put back as it was after it.
    restore: Option<PathBuf>,
    /// The control runs this instead of the row's script: for a denial that
    /// is not Landlock's, the same act without that protection.
    control_script: Option<String>,
}

fn row(name: &'static str, script: String, expect: Expect) -> Row {
    Row {
        name,
        script,
        expect,
        control: false,
        control_landlock: false,
        absent: None,
        cleanup: None,
        restore: None,
        control_script: None,
    }
}

impl Row {
    fn control(mut self) -> Self {
        self.control = true;
        self
    }
    fn control_landlock(mut self) -> Self {
        self.control_landlock = true;
        self
    }
    fn absent(mut self, p: PathBuf) -> Self {
        self.absent = Some(p);
        self
    }
    fn cleanup(mut self, p: PathBuf) -> Self {
        self.cleanup = Some(p);
        self
    }
    /// A denied attempt to create `p`: it must not exist after the sandboxed
    /// run, and what the control run made there is removed.
    fn creates(self, p: PathBuf) -> Self {
        self.absent(p.clone()).cleanup(p)
    }
    fn restore(mut self, p: PathBuf) -> Self {
        self.restore = Some(p);
        self
    }
    fn control_with(mut self, script: String) -> Self {
        self.control = true;
        self.control_script = Some(script);
        self
    }
}

fn remove(p: &Path) {
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_dir_all(p);
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

#[test]
fn escape_table() {
    let _g = serial();
    if !landlock_or_skip("escape_table") {
        return;
    }
    let fx = Fx::new();
    let q = |p: &Path| sh_quote(p);
    let me = std::process::id();
    let uniq = format!("mitzod-escape-{me}");
    let tmp_out = PathBuf::from("/tmp").join(&uniq);
    let etc_out = PathBuf::from("/etc").join(&uniq);
    let real_home =
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(&uniq);
    let allowed_port = fx.allowed_listener.local_addr().unwrap().port();
    let other_port = fx.other_listener.local_addr().unwrap().port();
    let free_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A dumpable sibling outside the sandbox with the same uid and the same
    // (empty) capabilities, for /proc/<pid>/mem and kill.
    let mut sibling = control_sh("exec sleep 1000").spawn().unwrap();
    let sib = sibling.id();

    // Outside files for the link/rename rows.
    std::fs::write(fx.wt.join("to-move"), "x\n").unwrap();
    std::fs::write(fx.wt.join("to-move-ctl"), "x\n").unwrap();
    let link_target = fx.owner_home.join("link-target");
    std::os::unix::fs::symlink(&link_target, fx.wt.join("link-out")).unwrap();
    let main_out = fx.repo.join("main-checkout.txt");
    let hook = fx.repo.join(".git/hooks/post-commit");
    let connect = |port: u16| format!("exec 3<>/dev/tcp/127.0.0.1/{port}");

    let outside = OutsideObjects::create();
    let mut rows = vec![
        row("write inside the worktree", format!("echo ok > {}/ok.txt", q(&fx.wt)), Expect::Allowed),
        // An isolated session writes its worktree, not the main checkout,
        // and nothing git or the owner would later run outside the sandbox.
        row("write the main checkout of the repo", format!("echo x > {}", q(&main_out)), Expect::Denied)
            .control()
            .creates(main_out.clone()),
        row("plant .git/hooks/post-commit", format!("echo 'touch /tmp/pwn' > {}", q(&hook)), Expect::Denied)
            .control()
            .creates(hook.clone()),
        row(
            "set core.fsmonitor in .git/config",
            format!("cd {} && git config core.fsmonitor 'touch /tmp/pwn'", q(&fx.repo)),
            Expect::Denied,
        )
        .control()
        .restore(fx.repo.join(".git/config")),
        row("write the repo's .mitzo.json", format!("echo {{}} > {}/.mitzo.json", q(&fx.repo)), Expect::Denied)
            .control()
            .creates(fx.repo.join(".mitzo.json")),
        row(
            "git add + commit inside the worktree",
            format!(
                "cd {} && git add ok.txt && git -c user.name=a -c user.email=a@b commit -qm agent",
                q(&fx.wt)
            ),
            Expect::Allowed,
        ),
        row("write the session tmp dir", "echo ok > \"$TMPDIR/x\"".into(), Expect::Allowed),
        row("write the agent home", "echo ok > \"$HOME/x\"".into(), Expect::Allowed),
        row("write /tmp", format!("echo x > {}", q(&tmp_out)), Expect::Denied)
            .control()
            .creates(tmp_out.clone()),
        row("write the owner's home (fixture)", format!("echo x > {}/pwn", q(&fx.owner_home)), Expect::Denied)
            .control()
            .creates(fx.owner_home.join("pwn")),
        row("write the real $HOME", format!("echo x > {}", q(&real_home)), Expect::Denied)
            .control()
            .creates(real_home.clone()),
        row("write /etc", format!("echo x > {}", q(&etc_out)), Expect::Denied)
            .control()
            .creates(etc_out.clone()),
        row("write the state dir", format!("echo x > {}/pwn", q(&fx.state)), Expect::Denied)
            .control()
            .creates(fx.state.join("pwn")),
        row("read <state>/internal-token", format!("cat {}/internal-token", q(&fx.state)), Expect::Denied).control(),
        row("read the SQLite file", format!("cat {}/mitzod.sqlite", q(&fx.state)), Expect::Denied).control(),
        row("list the state dir", format!("ls {}", q(&fx.state)), Expect::Denied).control(),
        row(
            "read a credentials dir inside a read grant",
            format!("cat {}/credentials/jwt-secret", q(&fx.shared)),
            Expect::Denied,
        )
        .control(),
        row("read a sibling of that credentials dir", format!("cat {}/readme", q(&fx.shared)), Expect::Allowed),
        row("read /etc/passwd", "cat /etc/passwd".into(), Expect::Allowed),
        row("read the owner's files", format!("cat {}/notes", q(&fx.owner_home)), Expect::Denied).control(),
        row(
            "write through a symlink in the worktree pointing outside",
            format!("echo pwn >> {}/link-out", q(&fx.wt)),
            Expect::Denied,
        )
        .control(),
        row(
            "hard link an outside file into the worktree",
            format!("ln {}/notes {}/hl", q(&fx.owner_home), q(&fx.wt)),
            Expect::Denied,
        )
        .control()
        .creates(fx.wt.join("hl")),
        row(
            "rename a worktree file to outside",
            format!("mv {}/to-move {}/moved", q(&fx.wt), q(&fx.owner_home)),
            Expect::Denied,
        )
        .control()
        .creates(fx.owner_home.join("moved")),
        // These two are denied by mitzod being non-dumpable, not by
        // Landlock: each control makes the same read of a dumpable same-uid
        // process, which succeeds.
        row("read /proc/<mitzod>/environ", format!("cat /proc/{me}/environ"), Expect::Denied)
            .control_with(format!("cat /proc/{sib}/environ >/dev/null")),
        row("read /proc/<mitzod>/mem", format!("exec 3</proc/{me}/mem"), Expect::Denied)
            .control_with(format!("exec 3</proc/{sib}/mem")),
        row(
            "read /proc/<outside dumpable process>/mem",
            format!("exec 3</proc/{sib}/mem"),
            Expect::Denied,
        )
        .control(),
        // Landlock's ptrace restriction (a PTRACE_MODE_READ check): a
        // process outside the sandbox's domain, such as another session's
        // agent, keeps its environment.
        row(
            "read /proc/<outside dumpable process>/environ",
            format!("cat /proc/{sib}/environ >/dev/null"),
            Expect::Denied,
        )
        .control(),
        row("kill -0 <mitzod>", format!("kill -0 {me}"), Expect::Denied).control(),
        row("kill -0 <outside process>", format!("kill -0 {sib}"), Expect::Denied).control(),
        row("TCP connect to an allowed port", format!("bash -c '{}'", connect(allowed_port)), Expect::Allowed),
        row(
            "TCP connect to a loopback port not in the allow-list",
            format!("bash -c '{}'", connect(other_port)),
            Expect::Denied,
        )
        .control(),
        row(
            "bind a TCP port",
            format!(
                "perl -MIO::Socket::INET -e 'IO::Socket::INET->new(LocalAddr=>\"127.0.0.1\",LocalPort=>{free_port},Listen=>1,ReuseAddr=>1) or die \"bind: $!\\n\"'"
            ),
            Expect::Denied,
        )
        .control(),
    ];
    rows.extend(seccomp_rows(&fx, other_port, &outside));
    // An abstract Unix socket created outside: Landlock's scoping (ABI 6).
    let abstract_name = format!("mitzod-escape-{me}");
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    if mitzo_sandbox::landlock_abi().version.unwrap_or(0) >= 6 {
        let helper = fx.wt.join("escape_helper.py");
        rows.push(
            row(
                "connect to an abstract Unix socket created outside",
                format!(
                    "/usr/bin/python3 {} abstract_connect {abstract_name}",
                    q(&helper)
                ),
                Expect::Denied,
            )
            .control(),
        );
    } else {
        eprintln!("SKIPPED the abstract socket row: Landlock ABI < 6 has no scoping");
    }

    let config_before = std::fs::read_to_string(fx.repo.join(".git/config")).unwrap();
    let mut failures = Vec::new();
    for r in &rows {
        if r.control_landlock {
            let out = fx.landlock_only(&r.script);
            if !out.status.success() {
                failures.push(format!(
                    "{}: control run under Landlock alone failed, so the test proves nothing: {}",
                    r.name,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        if r.control {
            let saved = r.restore.as_ref().map(|p| (p, std::fs::read(p).unwrap()));
            // The control of the rename row would move the file; use a copy.
            let script = match &r.control_script {
                Some(s) => s.clone(),
                None => r.script.replace("/to-move ", "/to-move-ctl "),
            };
            let out = control_sh(&script).current_dir(&fx.repo).output().unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{}: control run without Landlock failed, so the test proves nothing: {}",
                    r.name,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            if let Some(p) = &r.cleanup {
                remove(p);
            }
            if let Some((p, before)) = saved {
                std::fs::write(p, before).unwrap();
            }
        }
        std::fs::write(&link_target, "orig\n").unwrap();
        let out = fx.sandboxed(&r.script);
        let got = if out.status.success() {
            Expect::Allowed
        } else {
            Expect::Denied
        };
        eprintln!(
            "{:<60} expected {:?}, got {:?}{}",
            r.name,
            r.expect,
            got,
            if got == Expect::Denied {
                format!(" ({})", String::from_utf8_lossy(&out.stderr).trim())
            } else {
                String::new()
            }
        );
        // A denial that is the filter's is its EPERM, not some other error.
        if r.control_landlock
            && got == Expect::Denied
            && !String::from_utf8_lossy(&out.stderr).contains("Operation not permitted")
        {
            failures.push(format!(
                "{}: denied, but not with the filter's EPERM: {}",
                r.name,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if got != r.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?}; stderr: {}",
                r.name,
                r.expect,
                got,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if std::fs::read_to_string(&link_target).unwrap() != "orig\n" {
            failures.push(format!(
                "{}: the file behind the symlink was modified",
                r.name
            ));
        }
        if let Some(p) = &r.absent {
            if std::fs::symlink_metadata(p).is_ok() {
                failures.push(format!("{}: {} exists after the run", r.name, p.display()));
                remove(p);
            }
        }
    }
    assert_eq!(
        std::fs::read_to_string(fx.owner_home.join("notes")).unwrap(),
        "owner's\n"
    );
    assert_eq!(
        std::fs::read_to_string(&link_target).unwrap(),
        "orig\n",
        "written through the symlink"
    );
    assert!(
        fx.wt.join("to-move").exists(),
        "rename out of the worktree moved the file"
    );
    let _ = sibling.kill();
    let _ = sibling.wait();
    drop(outside);
    assert!(
        failures.is_empty(),
        "escape table failures:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        std::fs::read_to_string(fx.repo.join(".git/config")).unwrap(),
        config_before,
        "the repo's git config is unchanged"
    );
    let _ = &fx.root;
}

/// What every sandboxed process starts with, read from its own
/// `/proc/<pid>/status` and `limits`: no capability in any set,
/// `no_new_privs`, the seccomp filter, a core-file limit of 0, and a session
/// of its own. Control: the same reading of an unsandboxed child of this
/// test (with a core limit raised first) shows the opposite.
#[test]
fn sandboxed_processes_hold_no_privileges_and_dump_no_core() {
    let _g = serial();
    if !landlock_or_skip("sandboxed_processes_hold_no_privileges_and_dump_no_core") {
        return;
    }
    let fx = Fx::new();
    // Let this process (and so an unsandboxed child) dump cores, so a 0 in
    // the sandbox is the sandbox's doing.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
    let want = 1 << 20;
    if lim.rlim_max != libc::RLIM_INFINITY && lim.rlim_max < want {
        lim.rlim_max = want;
    }
    lim.rlim_cur = want;
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) },
        0,
        "raising RLIMIT_CORE: {}",
        std::io::Error::last_os_error()
    );
    let script = "cat /proc/$$/status /proc/$$/limits; echo \"Pid $$\"; echo \"Sid $(cut -d' ' -f6 /proc/$$/stat)\"";
    let read = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        let core = field("Max core file size");
        let fields = [
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "NoNewPrivs",
            "Seccomp",
        ]
        .map(|f| (f, field(f)));
        (
            fields,
            core.split_whitespace().next().unwrap().to_string(),
            field("Pid") == field("Sid"),
        )
    };
    let (fields, core, leader) = read(fx.sandboxed(script));
    for (name, value) in &fields {
        let want = match *name {
            "NoNewPrivs" => "1",
            "Seccomp" => "2",
            _ => "0000000000000000",
        };
        assert_eq!(value, want, "{name} in the sandbox");
    }
    assert_eq!(core, "0", "core-file limit in the sandbox");
    assert!(leader, "the sandboxed process leads a session of its own");

    let out = Command::new("/bin/sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (fields, core, leader) = read(out);
    let get = |n: &str| fields.iter().find(|(f, _)| *f == n).unwrap().1.clone();
    assert_eq!(get("NoNewPrivs"), "0", "control");
    assert_eq!(get("Seccomp"), "0", "control");
    if mitzo_testkit::is_root() {
        assert_ne!(
            get("CapEff"),
            "0000000000000000",
            "control: root's capabilities"
        );
    }
    assert_ne!(core, "0", "control: the core-file limit");
    assert!(!leader, "control: a plain child shares our session");
}

/// A key in the uid's user keyring and a SysV shared-memory segment,
/// created outside the sandbox by the same uid; removed on drop.
struct OutsideObjects {
    key_desc: String,
    key_secret: String,
    key: libc::c_long,
    shm_key: i32,
    shm_secret: String,
    shm_id: i32,
    sem_key: i32,
    sem_value: i32,
    sem_id: i32,
    msg_key: i32,
    msg_secret: String,
    msg_id: i32,
}

impl OutsideObjects {
    fn create() -> OutsideObjects {
        const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
        const KEYCTL_SETPERM: libc::c_long = 5;
        let me = std::process::id();
        let key_desc = format!("mitzod-escape-{me}");
        let key_secret = format!("keyring-secret-{me}");
        let desc = std::ffi::CString::new(key_desc.clone()).unwrap();
        let key = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                desc.as_ptr(),
                key_secret.as_ptr(),
                key_secret.len(),
                KEY_SPEC_USER_KEYRING,
            )
        };
        assert!(key > 0, "add_key: {}", std::io::Error::last_os_error());
        // Possessor and user may do everything: only the sandbox stands in
        // the way of the uid reading it.
        let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, key, 0x3f3f_0000u32) };
        assert_eq!(r, 0, "keyctl(SETPERM): {}", std::io::Error::last_os_error());

        let shm_key = 0x4d5a_0000 | (me & 0xffff) as i32;
        let shm_secret = format!("shm-secret-{me}");
        let shm_id =
            unsafe { libc::shmget(shm_key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(shm_id >= 0, "shmget: {}", std::io::Error::last_os_error());
        unsafe {
            let addr = libc::shmat(shm_id, std::ptr::null(), 0);
            assert_ne!(
                addr as isize,
                -1,
                "shmat: {}",
                std::io::Error::last_os_error()
            );
            std::ptr::copy_nonoverlapping(shm_secret.as_ptr(), addr.cast::<u8>(), shm_secret.len());
            libc::shmdt(addr);
        }
        // A semaphore set holding a value, and a message queue holding two
        // copies of a message (the control run takes one).
        let sem_key = 0x4d5b_0000 | (me & 0xffff) as i32;
        let sem_value = 4242;
        let sem_id = unsafe { libc::semget(sem_key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(sem_id >= 0, "semget: {}", std::io::Error::last_os_error());
        let r = unsafe { libc::semctl(sem_id, 0, libc::SETVAL, sem_value) };
        assert_eq!(r, 0, "semctl(SETVAL): {}", std::io::Error::last_os_error());
        let msg_key = 0x4d5c_0000 | (me & 0xffff) as i32;
        let msg_secret = format!("msg-secret-{me}");
        let msg_id = unsafe { libc::msgget(msg_key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(msg_id >= 0, "msgget: {}", std::io::Error::last_os_error());
        #[repr(C)]
        struct Msg {
            mtype: libc::c_long,
            mtext: [u8; 64],
        }
        let mut m = Msg {
            mtype: 1,
            mtext: [0; 64],
        };
        m.mtext[..msg_secret.len()].copy_from_slice(msg_secret.as_bytes());
        for _ in 0..2 {
            let r = unsafe {
                libc::msgsnd(
                    msg_id,
                    (&m as *const Msg).cast(),
                    msg_secret.len(),
                    libc::IPC_NOWAIT,
                )
            };
            assert_eq!(r, 0, "msgsnd: {}", std::io::Error::last_os_error());
        }
        OutsideObjects {
            key_desc,
            key_secret,
            key,
            shm_key,
            shm_secret,
            shm_id,
            sem_key,
            sem_value,
            sem_id,
            msg_key,
            msg_secret,
            msg_id,
        }
    }
}

impl Drop for OutsideObjects {
    fn drop(&mut self) {
        const KEYCTL_INVALIDATE: libc::c_long = 21;
        unsafe {
            libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, self.key);
            libc::shmctl(self.shm_id, libc::IPC_RMID, std::ptr::null_mut());
            libc::semctl(self.sem_id, 0, libc::IPC_RMID);
            libc::msgctl(self.msg_id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// MPTCP must be enabled for its row to mean anything: as root, enable it
/// (returning the old value to restore); otherwise skip that row, or fail
/// under MITZO_REQUIRE_ROOT_TESTS=1.
fn mptcp_enabled() -> bool {
    let path = "/proc/sys/net/mptcp/enabled";
    match std::fs::read_to_string(path) {
        Ok(v) if v.trim() == "1" => true,
        Ok(_) if std::fs::write(path, "1").is_ok() => true,
        other => {
            let why =
                format!("MPTCP is not enabled ({path}: {other:?}) and cannot be enabled here");
            if std::env::var("MITZO_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
                panic!("{why}");
            }
            eprintln!("SKIPPED the MPTCP row: {why}");
            false
        }
    }
}

/// What Landlock does not govern and the seccomp layer refuses: each row's
/// control runs under Landlock alone and must succeed.
fn seccomp_rows(fx: &Fx, other_port: u16, outside: &OutsideObjects) -> Vec<Row> {
    let helper = fx.wt.join("escape_helper.py");
    std::fs::write(&helper, include_str!("sandbox_common/escape_helper.py")).unwrap();
    let py = |args: &str| format!("/usr/bin/python3 {} {args}", sh_quote(&helper));
    let mut rows = Vec::new();
    if mptcp_enabled() {
        rows.push(
            row(
                "MPTCP connect to a loopback port not in the allow-list",
                py(&format!("mptcp {other_port}")),
                Expect::Denied,
            )
            .control_landlock(),
        );
    }
    rows.extend([
        row("UDP socket", py("udp"), Expect::Denied).control_landlock(),
        row(
            "netlink sock_diag socket (lists every socket on the machine)",
            py("netlink 4"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "netlink route socket (getaddrinfo)",
            py("netlink 0"),
            Expect::Allowed,
        ),
        row("Unix sockets", py("unix"), Expect::Allowed),
        row(
            "pidfd_getfd of the agent's stdout from its tool",
            py("pidfd_getfd"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "process_vm_writev into the agent from its tool",
            py("vm_writev"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "ptrace the agent from its tool",
            py("ptrace"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "read a key of the uid's user keyring created outside",
            py(&format!(
                "keyring {} {}",
                outside.key_desc, outside.key_secret
            )),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "read a SysV shared-memory segment created outside",
            py(&format!("shm {} {}", outside.shm_key, outside.shm_secret)),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "io_uring_setup (sockets past the filter)",
            py("io_uring"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "process_vm_readv of the agent from its tool",
            py("vm_readv"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "kcmp of the agent's stdout from its tool",
            py("kcmp"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "userfaultfd (UFFD_USER_MODE_ONLY)",
            py("userfaultfd"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "read a SysV semaphore created outside",
            py(&format!("sem {} {}", outside.sem_key, outside.sem_value)),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "read a SysV message queue created outside",
            py(&format!("msg {} {}", outside.msg_key, outside.msg_secret)),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "perf_event_open of a user-space counter on itself",
            py("perf_event_open"),
            Expect::Denied,
        )
        .control_landlock(),
        row(
            "bpf() reaching the kernel's bpf code (EBADF for a bad map fd)",
            py("bpf_bad_map"),
            Expect::Denied,
        )
        .control_landlock(),
    ]);
    rows
}

/// The system resolver's address (the first `nameserver`), for a UDP
/// datagram that needs no answer.
fn resolver() -> String {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nameserver").map(|a| a.trim().to_string()))
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .unwrap_or_else(|| "192.0.2.1".to_string())
}

/// A network namespace of its own: each attempt runs under Landlock
/// without the seccomp layer (so what stops it is the namespace), first
/// outside the namespace (control: it succeeds), then inside it.
#[test]
fn network_namespace_rows() {
    let _g = serial();
    if !landlock_or_skip("network_namespace_rows") {
        return;
    }
    if let Err(why) = mitzo_sandbox::netns::probe() {
        if std::env::var("MITZO_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            panic!("network_namespace_rows: {why}");
        }
        eprintln!("SKIPPED network_namespace_rows: {why}");
        return;
    }
    let fx = Fx::new();
    let helper = fx.wt.join("escape_helper.py");
    std::fs::write(&helper, include_str!("sandbox_common/escape_helper.py")).unwrap();
    let py = |args: &str| format!("/usr/bin/python3 {} {args}", sh_quote(&helper));
    let allowed_port = fx.allowed_listener.local_addr().unwrap().port();
    let unix_path = fx.wt.join("outside.sock");
    let _unix = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();
    // A UDP echo server on the host's loopback: "reached" means the echo
    // came back, not only that a datagram left.
    let echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let _ = echo.send_to(&buf[..n], from);
        }
    });
    let run = |script: &str, isolated: bool| {
        let mut c = SandboxedCommand::new("/bin/sh", &fx.policy, fx.env.clone())
            .unwrap()
            .without_seccomp();
        if isolated {
            c = c.isolate_network().unwrap();
        }
        c.args(["-c", script])
            .current_dir(&fx.wt)
            .into_std()
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut rows = vec![
        (
            "TCP to an allowed port on the host's loopback",
            py(&format!("tcp {allowed_port}")),
            Expect::Denied,
        ),
        (
            "UDP datagram to the system resolver (DNS)",
            py(&format!("udp_to {} 53", resolver())),
            Expect::Denied,
        ),
        (
            "UDP to an echo server on the host's loopback, echo back",
            py(&format!("udp_echo {echo_port}")),
            Expect::Denied,
        ),
        (
            "Unix socket by path (not bound to a network namespace)",
            py(&format!("unix_connect {}", sh_quote(&unix_path))),
            Expect::Allowed,
        ),
    ];
    let mptcp =
        std::fs::read_to_string("/proc/sys/net/mptcp/enabled").is_ok_and(|v| v.trim() == "1");
    if mptcp {
        rows.push((
            "MPTCP to an allowed port on the host's loopback",
            py(&format!("mptcp_plain {allowed_port}")),
            Expect::Denied,
        ));
    } else {
        eprintln!("SKIPPED the MPTCP row: net.mptcp.enabled is not 1");
    }
    let mut failures = Vec::new();
    for (name, script, expect) in &rows {
        let control = run(script, false);
        if !control.status.success() {
            failures.push(format!(
                "{name}: control run outside the namespace failed: {}",
                String::from_utf8_lossy(&control.stderr)
            ));
        }
        let out = run(script, true);
        let got = if out.status.success() {
            Expect::Allowed
        } else {
            Expect::Denied
        };
        eprintln!(
            "{name:<60} expected {expect:?}, got {got:?} ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if got != *expect {
            failures.push(format!("{name}: expected {expect:?}, got {got:?}"));
        }
    }
    // Inside, loopback is the only interface, and it is up.
    let out = run(&py("only_loopback"), true);
    if !out.status.success() {
        failures.push(format!(
            "only lo inside: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A session without isolation works in the repo itself: there the repo is
/// writable (and its `.git` with it: such a session cannot be protected the
/// same way, see SECURITY.md).
#[test]
fn non_isolated_session_writes_its_repo() {
    let _g = serial();
    if !landlock_or_skip("non_isolated_session_writes_its_repo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let repo = root.join("repo");
    init_repo(&repo);
    let state = root.join("state");
    for d in ["agent-home", "tmp/s1"] {
        std::fs::create_dir_all(state.join(d)).unwrap();
    }
    let policy = agent_policy(&AgentPolicyInputs {
        repo: &repo,
        worktrees: std::slice::from_ref(&repo),
        repo_writable: true,
        agent_home: &state.join("agent-home"),
        session_tmp: &state.join("tmp/s1"),
        state_dir: &state,
        hidden: &[],
        agent_binary: Path::new("/bin/sh"),
        own_port: None,
        agent: AgentConfig::default().grants(),
        landlock: Enforcement::Required,
    })
    .unwrap();
    let out = SandboxedCommand::new("/bin/sh", &policy, build_env(std::env::vars_os(), &[], &[]))
        .unwrap()
        .args(["-c", &format!("echo ok > {}/in-repo.txt", sh_quote(&repo))])
        .into_std()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(repo.join("in-repo.txt").exists());
}

#[test]
fn forbidden_env_never_reaches_the_child() {
    let _g = serial();
    if !landlock_or_skip("forbidden_env_never_reaches_the_child") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let forbidden = [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "CREDENTIALS_DIRECTORY",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "MITZOD_JWT_SECRET_FILE",
        "MITZO_INTERNAL_TOKEN",
    ];
    let spec = serde_json::json!({
        "policy": {
            "read_exec": mitzo_sandbox::system_read_exec_paths(),
            "read_write": ["/dev/null"],
        },
        // The operator lists them all; none may pass.
        "env_passthrough": forbidden.iter().chain(["EDITOR", "ANTHROPIC_API_KEY"].iter()).collect::<Vec<_>>(),
        "env": { "LISTEN_FDS": "9", "SESSION_VALUE": "yes" },
    });
    let file = dir.path().join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let mut cmd = Command::new(mitzod_bin());
    cmd.args(["sandbox-exec", "--policy"])
        .arg(&file)
        .args(["--", "/usr/bin/env"]);
    for name in forbidden {
        cmd.env(name, "leak");
    }
    cmd.env("EDITOR", "vi")
        .env("LC_ALL", "C")
        .env("ANTHROPIC_API_KEY", "sk-agent-credential")
        .env("UNLISTED_SECRET", "leak");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|x| x.0))
        .collect();
    for name in forbidden {
        assert!(!names.contains(&name), "{name} reached the child: {env}");
    }
    assert!(!env.contains("leak"), "{env}");
    // The agent's own credential passes only because the operator listed it.
    for name in [
        "PATH",
        "LC_ALL",
        "EDITOR",
        "SESSION_VALUE",
        "ANTHROPIC_API_KEY",
    ] {
        assert!(names.contains(&name), "{name} missing: {env}");
    }
}

/// Plant every program git could run in the main repo, check that planting
/// works with a plain git, then let mitzod create a session checkout,
/// inspect it, fetch its branch back and remove it.
#[test]
fn planted_git_programs_never_run() {
    let _g = serial();
    if !landlock_or_skip("planted_git_programs_never_run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let markers = root.join("markers");
    std::fs::create_dir_all(&markers).unwrap();
    let evil_hooks = root.join("evil-hooks");
    std::fs::create_dir_all(&evil_hooks).unwrap();

    // A program that leaves a marker outside the repo and one inside it
    // (the inner one shows whether it ran at all, even confined).
    let plant = |repo: &Path, path: &Path, tag: &str| {
        let script = format!(
            "#!/bin/sh\ntouch {out}/{tag}\ntouch {inner}/.ran-{tag}\ncat\n",
            out = markers.display(),
            inner = repo.display()
        );
        std::fs::write(path, script).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };

    // Repo A: hooks in .git/hooks, fsmonitor, clean/smudge/process filters.
    let a = root.join("repo-a");
    init_repo(&a);
    std::fs::write(a.join(".gitattributes"), "* filter=evil\n").unwrap();
    std::fs::write(a.join("file.txt"), "content\n").unwrap();
    git(&a, &["add", "."]);
    git(&a, &["commit", "-qm", "attrs"]);
    for hook in [
        "post-checkout",
        "reference-transaction",
        "pre-auto-gc",
        "post-index-change",
    ] {
        plant(
            &a,
            &a.join(".git/hooks").join(hook),
            &format!("hook-{hook}"),
        );
    }
    plant(&a, &root.join("fsmonitor"), "fsmonitor");
    plant(&a, &root.join("filter"), "filter");
    let f = root.join("filter").display().to_string();
    git(
        &a,
        &[
            "config",
            "core.fsmonitor",
            &root.join("fsmonitor").display().to_string(),
        ],
    );
    git(&a, &["config", "filter.evil.clean", &f]);
    git(&a, &["config", "filter.evil.smudge", &f]);
    git(&a, &["config", "filter.evil.required", "true"]);

    // Repo B: core.hooksPath pointing outside the repo.
    let b = root.join("repo-b");
    init_repo(&b);
    plant(&b, &evil_hooks.join("post-checkout"), "hookspath");
    git(
        &b,
        &[
            "config",
            "core.hooksPath",
            &evil_hooks.display().to_string(),
        ],
    );

    // The plants work: a plain git runs them.
    git(
        &a,
        &[
            "worktree",
            "add",
            "-q",
            &root.join("ctl-a").display().to_string(),
        ],
    );
    git(
        &b,
        &[
            "worktree",
            "add",
            "-q",
            &root.join("ctl-b").display().to_string(),
        ],
    );
    for tag in ["hook-post-checkout", "filter", "hookspath"] {
        assert!(
            markers.join(tag).exists(),
            "control: planted {tag} did not run under plain git"
        );
    }
    git(
        &a,
        &[
            "worktree",
            "remove",
            "--force",
            &root.join("ctl-a").display().to_string(),
        ],
    );
    git(
        &b,
        &[
            "worktree",
            "remove",
            "--force",
            &root.join("ctl-b").display().to_string(),
        ],
    );
    std::fs::remove_dir_all(&markers).unwrap();
    std::fs::create_dir_all(&markers).unwrap();
    for repo in [&a, &b] {
        for e in std::fs::read_dir(repo).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with(".ran-") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }

    let g = Git::new(Enforcement::Required).unwrap();
    for repo in [&a, &b] {
        let id = mitzod::worktree::new_session_id();
        let wt = mitzod::worktree::prepare_session_dir(&g, repo, &id, true).unwrap();
        assert!(wt.join("README").exists());
        std::fs::write(wt.join("scratch"), "x").unwrap();
        // Status (fsmonitor's trigger), a commit fetched back into the main
        // repo (reference-transaction, filters, hooks there), then a forced
        // removal. Plants in the session's own git dir: `git_isolation`.
        assert!(mitzod::worktree::is_dirty(&g, repo, &wt).unwrap());
        git(&wt, &["add", "scratch"]);
        git(&wt, &["commit", "-qm", "session"]);
        mitzod::worktree::fetch_session_branch(&g, repo, &id).unwrap();
        std::fs::write(wt.join("scratch2"), "x").unwrap();
        mitzod::worktree::remove_session_checkout(&g, repo, &id, true).unwrap();
        assert!(!wt.exists());
    }
    let ran: Vec<_> = std::fs::read_dir(&markers)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        ran.is_empty(),
        "planted programs ran outside the sandbox: {ran:?}"
    );
    for repo in [&a, &b] {
        let inner: Vec<_> = std::fs::read_dir(repo)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".ran-"))
            .collect();
        assert!(
            inner.is_empty(),
            "planted programs ran (confined): {inner:?}"
        );
    }
}

fn spawn_agent(script: &str, dir: &Path) -> std::process::Child {
    spawn_agent_with_env(script, dir, &[])
}

/// A sandboxed `sh -c script` that may write `dir`, with `session` values
/// in its environment.
fn spawn_agent_with_env(
    script: &str,
    dir: &Path,
    session: &[(String, String)],
) -> std::process::Child {
    let policy = Policy {
        read_write: vec![dir.to_path_buf(), "/dev/null".into()],
        read_exec: mitzo_sandbox::system_read_exec_paths(),
        ..Policy::default()
    };
    SandboxedCommand::new(
        "/bin/sh",
        &policy,
        build_env(std::env::vars_os(), &[], session),
    )
    .unwrap()
    .args(["-c", script])
    .into_std()
    .stdin(Stdio::null())
    .spawn()
    .unwrap()
}

#[test]
fn session_end_kills_setsid_double_forked_grandchild() {
    let _g = serial();
    if !landlock_or_skip("session_end_kills_setsid_double_forked_grandchild") {
        return;
    }
    set_child_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let pidfile = d.join("gc.pid");
    // The grandchild: double fork, new session, ignores SIGTERM.
    let script = format!(
        "(setsid sh -c 'trap \"\" TERM; echo $$ > {p}.tmp && mv {p}.tmp {p}; exec sleep 1000' &); exec sleep 1000",
        p = pidfile.display()
    );
    let mut child = spawn_agent(&script, &d);
    let root = child.id() as i32;
    let gc: i32 = wait_for_file_plain(&pidfile).trim().parse().unwrap();
    assert!(alive(gc));
    let sid = unsafe { libc::getsid(gc) };
    assert_ne!(
        sid, root,
        "the grandchild did not leave the agent's session"
    );
    assert_ne!(unsafe { libc::getpgid(gc) }, root);

    let report = terminate_session(child.id(), Duration::from_millis(300), true);
    child.wait().unwrap();
    assert!(report.members.contains(&gc), "{report:?}");
    assert!(
        report.killed.contains(&gc),
        "a TERM-ignoring grandchild must be SIGKILLed: {report:?}"
    );
    assert!(report.survivors.is_empty(), "{report:?}");
    assert!(!alive(gc), "grandchild {gc} survived the session");
}

#[test]
fn only_the_ended_sessions_orphans_are_killed() {
    let _g = serial();
    if !landlock_or_skip("only_the_ended_sessions_orphans_are_killed") {
        return;
    }
    set_child_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    // Two "sessions" each leave a detached process behind; only session A ends.
    let leave_orphan = |session: &str| {
        let pidfile = d.join(format!("{session}.pid"));
        let script = format!(
            "(setsid sh -c 'echo $$ > {p}.tmp && mv {p}.tmp {p}; exec sleep 1000' &); exit 0",
            p = pidfile.display()
        );
        let mut child =
            spawn_agent_with_env(&script, &d, &[("MITZO_SESSION_ID".into(), session.into())]);
        let pid: i32 = wait_for_file_plain(&pidfile).trim().parse().unwrap();
        child.wait().unwrap();
        pid
    };
    let a = leave_orphan("2026-01-01-aaaaaaaaaaaa");
    let b = leave_orphan("2026-01-01-bbbbbbbbbbbb");
    // And a child of ours that belongs to no session (like a git command).
    let mut unrelated = Command::new("sleep").arg("1000").spawn().unwrap();
    let killed = mitzo_sandbox::kill_marked_orphans("MITZO_SESSION_ID=2026-01-01-aaaaaaaaaaaa");
    assert!(killed.contains(&a), "{killed:?}");
    assert!(!alive(a));
    assert!(alive(b), "another session's process is left alone");
    assert!(
        unrelated.try_wait().unwrap().is_none(),
        "mitzod's own children are left alone"
    );
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
    terminate_session(b as u32, Duration::ZERO, false);
    assert!(!alive(b));
}

fn wait_for_file_plain(p: &Path) -> String {
    for _ in 0..1000 {
        if let Ok(s) = std::fs::read_to_string(p) {
            if !s.is_empty() {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never appeared", p.display());
}

/// A seccomp filter that makes the three landlock syscalls fail with EPERM,
/// as systemd's SystemCallFilter=@system-service does on systemd 252.
fn block_landlock(cmd: &mut Command) {
    block_syscalls(cmd, [444, 445, 446]);
}

/// A seccomp filter that makes three system calls (x86_64 numbers) fail
/// with EPERM.
fn block_syscalls(cmd: &mut Command, nrs: [u32; 3]) {
    unsafe {
        cmd.pre_exec(move || {
            let nrs_local = nrs;
            let ld_nr = libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            };
            let jeq = |nr: u32, jt: u8| libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt,
                jf: 0,
                k: nr,
            };
            let allow = libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            };
            let deny = libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32),
            };
            let prog = [
                ld_nr,
                jeq(nrs_local[0], 3),
                jeq(nrs_local[1], 2),
                jeq(nrs_local[2], 1),
                allow,
                deny,
            ];
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut _,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const _ as usize,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn blocked_landlock_required_refuses_best_effort_warns() {
    let _g = serial();
    if !landlock_or_skip("blocked_landlock_required_refuses_best_effort_warns") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |mode: &str| {
        let spec = serde_json::json!({
            "policy": { "read_exec": mitzo_sandbox::system_read_exec_paths(), "landlock": mode },
        });
        let file = dir.path().join(format!("{mode}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let mut cmd = Command::new(mitzod_bin());
        cmd.args(["sandbox-exec", "--policy"])
            .arg(&file)
            .args(["--", "/bin/sh", "-c", "echo ran"]);
        block_landlock(&mut cmd);
        cmd.output().unwrap()
    };

    let out = run("required");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(125),
        "required must refuse: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
    assert!(stderr.contains("EPERM"), "{stderr}");
    assert!(
        stderr.contains("SystemCallFilter=@system-service"),
        "{stderr}"
    );

    let out = run("best-effort");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "best-effort must run: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ran");
    assert!(
        stderr.contains("SANDBOX NOT ENFORCED"),
        "best-effort must warn: {stderr}"
    );

    // And without the filter, the same required policy runs confined.
    let spec =
        serde_json::json!({ "policy": { "read_exec": mitzo_sandbox::system_read_exec_paths() } });
    let file = dir.path().join("plain.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let out = Command::new(mitzod_bin())
        .args(["sandbox-exec", "--policy"])
        .arg(&file)
        .args(["--", "/bin/sh", "-c", "echo ran; cat /etc/hostname"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ran");
    assert!(
        !out.status.success(),
        "/etc is not granted: reading it must fail"
    );
}

/// systemd 252's `@system-service` refuses seccomp(2) (number 317 on
/// x86_64) with EPERM: the layer must still be installed (through prctl).
#[test]
fn seccomp_layer_installs_under_systemds_call_filter() {
    let _g = serial();
    if !landlock_or_skip("seccomp_layer_installs_under_systemds_call_filter") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let helper = d.join("escape_helper.py");
    std::fs::write(&helper, include_str!("sandbox_common/escape_helper.py")).unwrap();
    let spec = serde_json::json!({
        "policy": {
            "read_exec": mitzo_sandbox::system_read_exec_paths(),
            "read_only": [d, "/etc"],
            "read_write": ["/dev/null"],
        },
    });
    let file = d.join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    const SECCOMP: u32 = 317;
    // Control: under that filter alone, the attempt works.
    let mut control = Command::new("/usr/bin/python3");
    control.arg(&helper).arg("udp");
    block_syscalls(&mut control, [SECCOMP, SECCOMP, SECCOMP]);
    let out = control.output().unwrap();
    assert!(
        out.status.success(),
        "control: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new(mitzod_bin());
    cmd.args(["sandbox-exec", "--policy"])
        .arg(&file)
        .args(["--", "/usr/bin/python3"])
        .arg(&helper)
        .arg("udp");
    block_syscalls(&mut cmd, [SECCOMP, SECCOMP, SECCOMP]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}

#[test]
fn landlock_abi_is_reported() {
    let probe = mitzo_sandbox::landlock_abi();
    eprintln!("{probe}");
    if probe.supported() {
        assert!(probe.to_string().starts_with("Landlock ABI "));
    } else {
        assert!(probe.to_string().contains("unavailable"));
        landlock_or_skip("landlock_abi_is_reported");
    }
}

#[tokio::test]
// Held across the await on purpose: the process-killing tests must not
// see this child.
#[allow(clippy::await_holding_lock)]
async fn tokio_spawn_is_confined() {
    let _g = serial();
    if !landlock_or_skip("tokio_spawn_is_confined") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let policy = Policy {
        read_write: vec![d.clone(), "/dev/null".into()],
        read_exec: mitzo_sandbox::system_read_exec_paths(),
        ..Policy::default()
    };
    let out = SandboxedCommand::new("/bin/sh", &policy, build_env(std::env::vars_os(), &[], &[]))
        .unwrap()
        .args(["-c", "echo in > ok && cat /etc/hostname; echo $?"])
        .current_dir(&d)
        .into_tokio()
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(d.join("ok").exists());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "/etc must be unreadable"
    );
}
