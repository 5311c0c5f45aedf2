//! An isolated session's agent against the owner's git and other sessions:
//! real git, the real default agent policy, the real kernel. Each denial
//! next to a control run that shows the same action working without the
//! sandbox, and each plant next to a run that shows it firing from a
//! trusted place.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a test fails by panicking; raw fds and pre_exec set-ups

mod common;
mod sandbox_common;

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use mitzo_sandbox::{agent_policy, build_env, AgentPolicyInputs, Enforcement, SandboxedCommand};
use mitzod::config::{AgentConfig, SessionConfig, WorktreeCleanup};
use mitzod::git::Git;
use mitzod::worktree::*;
use sandbox_common::*;

struct Fx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    git: Git,
    /// Session A: the agent under test.
    a: String,
    wt: PathBuf,
    /// Session B: another session of the same repo.
    b: String,
    wt_b: PathBuf,
    markers: PathBuf,
    policy: mitzo_sandbox::Policy,
    env: Vec<(OsString, OsString)>,
}

impl Fx {
    fn new() -> Option<Fx> {
        if !landlock_or_skip("git_isolation") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let repo = root.join("repo");
        init_repo(&repo);
        let git = Git::new(Enforcement::Required).unwrap();
        let a = new_session_id();
        let b = new_session_id();
        let wt = prepare_session_dir(&git, &repo, &a, true).unwrap();
        let wt_b = prepare_session_dir(&git, &repo, &b, true).unwrap();
        let markers = root.join("markers");
        std::fs::create_dir_all(&markers).unwrap();
        let (policy, env) = agent_sandbox(&root.join("state"), &repo, &wt);
        Some(Fx {
            _dir: dir,
            root,
            repo,
            git,
            a,
            wt,
            b,
            wt_b,
            markers,
            policy,
            env,
        })
    }

    /// `sh -c script` as session A's agent, in its checkout.
    fn agent(&self, script: &str) -> Output {
        run_agent(&self.policy, &self.env, &self.wt, script, None)
    }

    /// The same script without Landlock (same uid, no capabilities).
    fn control(&self, script: &str) -> Output {
        let mut c = control_sh(script);
        c.current_dir(&self.wt)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null());
        c.output().unwrap()
    }

    fn ran(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.markers)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for dir in [&self.wt, &self.repo] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                v.extend(
                    rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(".ran-")),
                );
            }
        }
        v.sort();
        v
    }

    fn clear(&self) {
        std::fs::remove_dir_all(&self.markers).unwrap();
        std::fs::create_dir_all(&self.markers).unwrap();
        for dir in [&self.wt, &self.repo] {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                if e.file_name().to_string_lossy().starts_with(".ran-") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
    }
}

/// The default agent policy and environment of a session whose checkout
/// is `wt`, with its home and temp dir under `state`.
fn agent_sandbox(
    state: &Path,
    repo: &Path,
    wt: &Path,
) -> (mitzo_sandbox::Policy, Vec<(OsString, OsString)>) {
    for d in ["agent-home", "tmp/a"] {
        std::fs::create_dir_all(state.join(d)).unwrap();
    }
    let agent = AgentConfig::default();
    let policy = agent_policy(&AgentPolicyInputs {
        repo,
        worktrees: &[wt.to_path_buf()],
        repo_writable: false,
        agent_home: &state.join("agent-home"),
        session_tmp: &state.join("tmp/a"),
        state_dir: state,
        hidden: &[],
        agent_binary: Path::new("/bin/sh"),
        own_port: None,
        agent: agent.grants(),
        landlock: Enforcement::Required,
    })
    .unwrap();
    let env = build_env(
        std::env::vars_os(),
        &[],
        &[
            (
                "HOME".to_string(),
                state.join("agent-home").display().to_string(),
            ),
            (
                "TMPDIR".to_string(),
                state.join("tmp/a").display().to_string(),
            ),
            ("GIT_CONFIG_NOSYSTEM".to_string(), "1".to_string()),
        ],
    );
    (policy, env)
}

/// `sh -c script` under the agent's sandbox in `cwd`, as `ids` (uid, gid)
/// when given (the user the daemon serves as, who owns its checkouts).
fn run_agent(
    policy: &mitzo_sandbox::Policy,
    env: &[(OsString, OsString)],
    cwd: &Path,
    script: &str,
    ids: Option<(u32, u32)>,
) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = SandboxedCommand::new("/bin/sh", policy, env.to_vec())
        .unwrap()
        .args(["-c", script])
        .current_dir(cwd)
        .into_std();
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The owner's own git, as they would type it: their global config is not
/// part of the test.
fn owner_git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=o",
            "-c",
            "user.email=o@o",
            "-c",
            "safe.directory=*",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: &Output) -> bool {
    o.status.success()
}

fn say(o: &Output) -> String {
    format!(
        "status {:?}; stdout {}; stderr {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Item: an agent writes its own git dir (config, hooks, a `commondir`
/// pointing at a directory of its own with `core.fsmonitor`). The owner's
/// git in the main checkout and every git mitzod runs (reuse, status,
/// fetch, stale scan, removal) run none of it. Controls: the owner's git
/// inside the agent's checkout does run it (that directory is the agent's),
/// and the same config in a trusted place (the main repo's config) fires.
#[test]
fn agent_written_git_dir_runs_nothing_for_the_owner_or_mitzod() {
    let _g = serial();
    let Some(fx) = Fx::new() else { return };
    // A program that leaves a marker outside everything and one in the
    // checkout (which shows it ran even where the outer write is denied).
    let prog = |tag: &str| {
        format!(
            "#!/bin/sh\ntouch {m}/{tag} 2>/dev/null\ntouch {w}/.ran-{tag} 2>/dev/null\nexit 0\n",
            m = fx.markers.display(),
            w = fx.wt.display()
        )
    };
    // The agent commits something (so the fetch has work to bring back),
    // then plants.
    let mut plant = String::from(
        "set -e\necho work > work.txt\ngit add work.txt\n\
         git -c user.name=a -c user.email=a@a commit -qm 'agent work'\n",
    );
    for (file, tag) in [
        (".git/fsmonitor.sh", "fsmonitor"),
        (".git/common-fsmonitor.sh", "commondir-fsmonitor"),
        (".git/hooks/post-checkout", "hook-post-checkout"),
        (
            ".git/hooks/reference-transaction",
            "hook-reference-transaction",
        ),
        (".git/hooks/post-index-change", "hook-post-index-change"),
        (".git/hooks/pre-auto-gc", "hook-pre-auto-gc"),
        (".git/hooks/pre-commit", "hook-pre-commit"),
    ] {
        plant.push_str(&format!(
            "cat > {file} <<'EOF'\n{}EOF\nchmod 755 {file}\n",
            prog(tag)
        ));
    }
    let wt = fx.wt.display().to_string();
    plant.push_str(&format!(
        "git config core.fsmonitor {wt}/.git/fsmonitor.sh\n\
         mkdir -p .git/evil\n\
         cp -r .git/objects .git/refs .git/HEAD .git/config .git/evil/\n\
         git config -f .git/evil/config core.fsmonitor {wt}/.git/common-fsmonitor.sh\n\
         echo evil > .git/commondir\n"
    ));
    let out = fx.agent(&plant);
    assert!(
        ok(&out),
        "the agent may write its own git dir: {}",
        say(&out)
    );
    assert!(
        fx.ran().is_empty(),
        "planting ran something: {:?}",
        fx.ran()
    );

    // Control 1: the owner's plain git inside the agent's checkout runs the
    // plant (the commondir's fsmonitor): that directory is the agent's.
    let o = owner_git(&fx.wt, &["status", "--porcelain"]);
    assert!(
        fx.markers.join("commondir-fsmonitor").exists(),
        "control: the plant did not fire for git in the agent's checkout: {} {:?}",
        say(&o),
        fx.ran()
    );
    fx.clear();

    // The owner's git in the MAIN checkout: runs nothing of it.
    let st = owner_git(
        &fx.repo,
        &["status", "--porcelain", "--untracked-files=all"],
    );
    assert!(ok(&st), "{}", say(&st));
    std::fs::write(fx.repo.join("owner.txt"), "mine\n").unwrap();
    for args in [
        &["add", "owner.txt"][..],
        &["commit", "-qm", "owner"],
        &["log", "--oneline", "-n1"],
        &["worktree", "list"],
        &["worktree", "prune"],
        &["branch", "--list"],
        &["gc", "--auto"],
    ] {
        let o = owner_git(&fx.repo, args);
        assert!(ok(&o), "owner's git {args:?}: {}", say(&o));
    }
    assert!(
        fx.ran().is_empty(),
        "the owner's git in the main checkout ran the agent's plant: {:?}",
        fx.ran()
    );

    // Control 2: the same config in a trusted place fires for that git.
    let script = fx.root.join("trusted-fsmonitor.sh");
    std::fs::write(&script, prog("trusted-place")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = owner_git(
        &fx.repo,
        &["config", "core.fsmonitor", &script.display().to_string()],
    );
    assert!(ok(&o));
    owner_git(&fx.repo, &["status", "--porcelain"]);
    assert!(
        fx.markers.join("trusted-place").exists(),
        "control: core.fsmonitor in the main config did not fire"
    );
    assert!(ok(&owner_git(
        &fx.repo,
        &["config", "--unset", "core.fsmonitor"]
    )));
    fx.clear();

    // mitzod's git: reuse, status, fetch, stale scan, removal.
    assert_eq!(
        prepare_session_dir(&fx.git, &fx.repo, &fx.a, true).unwrap(),
        fx.wt
    );
    let _ = is_dirty(&fx.git, &fx.repo, &fx.wt);
    fetch_session_branch(&fx.git, &fx.repo, &fx.a).unwrap();
    let shown = owner_git(&fx.repo, &["show", &format!("session/{}:work.txt", fx.a)]);
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout),
        "work\n",
        "{}",
        say(&shown)
    );
    let mut cfg = SessionConfig {
        worktree_stale_hours: 0,
        worktree_cleanup: WorktreeCleanup::Report,
        ..SessionConfig::default()
    };
    cleanup_stale(&fx.git, &fx.repo, &cfg, SystemTime::now()).unwrap();
    cfg.worktree_cleanup = WorktreeCleanup::Execute;
    cleanup_stale(&fx.git, &fx.repo, &cfg, SystemTime::now()).unwrap();
    assert!(
        fx.ran().is_empty(),
        "mitzod's git ran the agent's plant: {:?}",
        fx.ran()
    );
    assert!(remove_session_checkout(&fx.git, &fx.repo, &fx.a, true).unwrap());
    assert!(!fx.wt.exists());
    let outer: Vec<_> = std::fs::read_dir(&fx.markers).unwrap().collect();
    assert!(outer.is_empty(), "mitzod's removal ran the agent's plant");
}

/// Item: the agent can neither move the main repo's refs nor delete its
/// objects, nor read another session's checkout. Controls: the same
/// commands succeed without the sandbox.
#[test]
fn agent_cannot_touch_main_refs_objects_or_other_sessions() {
    let _g = serial();
    let Some(fx) = Fx::new() else { return };
    let main_git = fx.repo.join(".git");
    let head = String::from_utf8(owner_git(&fx.repo, &["rev-parse", "HEAD"]).stdout).unwrap();
    let head = head.trim().to_string();
    let object = |content: &str| -> PathBuf {
        let o = Command::new("git")
            .current_dir(&fx.repo)
            .args(["hash-object", "-w", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(content.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
        main_git.join("objects").join(&id[..2]).join(&id[2..])
    };
    let victim = object("the agent wants this gone\n");
    let ctl_victim = object("the control run removes this one\n");
    std::fs::write(fx.wt_b.join("b-secret.txt"), "session b's\n").unwrap();

    type Unchanged<'a> = Box<dyn Fn() -> bool + 'a>;
    let cases: Vec<(&str, String, String, Unchanged)> = vec![
        (
            "push a new branch into the main repo",
            "git push -q origin HEAD:refs/heads/agent-made".into(),
            "git push -q origin HEAD:refs/heads/control-made".into(),
            Box::new(|| {
                !ok(&owner_git(
                    &fx.repo,
                    &["rev-parse", "--verify", "-q", "refs/heads/agent-made"],
                ))
            }),
        ),
        (
            "move the main repo's branch with update-ref",
            format!(
                "git --git-dir={} update-ref refs/heads/moved {head}",
                q(&main_git)
            ),
            format!(
                "git --git-dir={} update-ref refs/heads/moved-ctl {head}",
                q(&main_git)
            ),
            Box::new(|| !main_git.join("refs/heads/moved").exists()),
        ),
        (
            "delete an object of the main repo",
            format!("rm -f {}", q(&victim)),
            format!("rm -f {}", q(&ctl_victim)),
            Box::new(|| victim.exists()),
        ),
        (
            "write the main repo's config",
            format!("echo '[core]' >> {}", q(&main_git.join("config"))),
            format!("echo '[core]' >> {}", q(&main_git.join("config"))),
            Box::new(|| true),
        ),
        (
            "read another session's checkout",
            format!("cat {}", q(&fx.wt_b.join("b-secret.txt"))),
            format!("cat {}", q(&fx.wt_b.join("b-secret.txt"))),
            Box::new(|| true),
        ),
        (
            "write into another session's checkout",
            format!("echo x > {}", q(&fx.wt_b.join("from-a"))),
            format!("echo x > {}", q(&fx.wt_b.join("from-a-ctl"))),
            Box::new(|| !fx.wt_b.join("from-a").exists()),
        ),
    ];
    for (name, attempt, control, unchanged) in cases {
        let c = fx.control(&control);
        assert!(ok(&c), "control for {name:?} failed: {}", say(&c));
        let a = fx.agent(&attempt);
        assert!(!ok(&a), "{name}: the agent succeeded: {}", say(&a));
        assert!(unchanged(), "{name}: the change happened anyway");
    }
    // And the agent's own work in its checkout still commits.
    let a = fx.agent(
        "echo mine > mine.txt && git add mine.txt && \
         git -c user.name=a -c user.email=a@a commit -qm mine",
    );
    assert!(ok(&a), "{}", say(&a));
}

/// Item: agent A writes a path naming B's checkout (with `/./`, which
/// path comparison ignores) wherever it can, and the older layout's
/// `.git/worktrees/<A>/gitdir` is planted by hand as well. Reopening,
/// scanning and removing sessions never touch B's directory: mitzod finds
/// checkouts by its own records (device and inode), not by git's listing.
#[test]
fn a_planted_gitdir_path_cannot_remove_another_sessions_checkout() {
    let _g = serial();
    let Some(fx) = Fx::new() else { return };
    std::fs::write(fx.wt_b.join("uncommitted.txt"), "b's work\n").unwrap();
    let ino_b = std::fs::metadata(&fx.wt_b).unwrap().ino();
    let trick = format!("{}/.mitzo/checkouts/./{}/.git", fx.repo.display(), fx.b);
    let old_admin = fx.repo.join(".git/worktrees").join(&fx.a);
    let plant_main = format!(
        "mkdir -p {d} && echo {t} > {d}/gitdir",
        d = q(&old_admin),
        t = q(Path::new(&trick))
    );
    // Into the main git dir: denied to the agent; done without the sandbox
    // so the rest of the test runs with the plant in place.
    let a = fx.agent(&plant_main);
    assert!(
        !ok(&a),
        "the agent wrote the main .git/worktrees: {}",
        say(&a)
    );
    let c = fx.control(&plant_main);
    assert!(ok(&c), "control: {}", say(&c));
    // Into its own git dir: allowed, and read by nothing mitzod does.
    let a = fx.agent(&format!(
        "echo {t} > .git/gitdir && echo {t} > .git/commondir && \
         mkdir -p .git/worktrees/x && echo {t} > .git/worktrees/x/gitdir",
        t = q(Path::new(&trick))
    ));
    assert!(ok(&a), "{}", say(&a));

    assert_eq!(
        prepare_session_dir(&fx.git, &fx.repo, &fx.b, true).unwrap(),
        fx.wt_b
    );
    assert_eq!(
        prepare_session_dir(&fx.git, &fx.repo, &fx.a, true).unwrap(),
        fx.wt
    );
    let cfg = SessionConfig {
        worktree_stale_hours: 0,
        worktree_cleanup: WorktreeCleanup::Execute,
        ..SessionConfig::default()
    };
    cleanup_stale(&fx.git, &fx.repo, &cfg, SystemTime::now()).unwrap();
    assert!(remove_session_checkout(&fx.git, &fx.repo, &fx.a, true).unwrap());
    assert!(!fx.wt.exists());
    assert_eq!(std::fs::metadata(&fx.wt_b).unwrap().ino(), ino_b);
    assert_eq!(
        std::fs::read_to_string(fx.wt_b.join("uncommitted.txt")).unwrap(),
        "b's work\n"
    );
    // B's dirty checkout survives a non-forced removal attempt too.
    assert!(remove_session_checkout(&fx.git, &fx.repo, &fx.b, false).is_err());
    assert!(fx.wt_b.join("uncommitted.txt").exists());
}

/// Item, through the running daemon as the red team did it: session A's
/// agent, sandboxed in A's checkout, writes a path naming B's checkout
/// (with `/./`, which path comparison ignores) into every file of A's git
/// dir that git reads a path from, and the older layout's
/// `.git/worktrees/<A>` entry naming B is planted by hand (the agent cannot
/// write the main git dir). Reopening B and A with `POST /api/repos/open`,
/// and closing A, leave B's directory (same inode) and its uncommitted file
/// alone. Controls: git's own listing of the main repo does name B's
/// checkout for A's planted entry (what checkouts used to be matched by),
/// and the daemon removing B's checkout (`POST /api/repos/close`) does lose
/// that file.
#[test]
fn reopening_through_the_api_never_removes_another_sessions_checkout() {
    let _g = serial();
    if !landlock_or_skip("reopening_through_the_api_never_removes_another_sessions_checkout") {
        return;
    }
    let mut server = common::TestServer::new(common::Options::default());
    let base = std::fs::canonicalize(server.dir.path()).unwrap();
    let repo = base.join("repo");
    init_repo(&repo);
    let ids = common::is_root().then(common::nobody_ids);
    common::git::chown_to_service_user(&repo);
    let cfg = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(
        &server.config,
        format!("{cfg}\nrepo_path = \"{}\"\n", repo.display()),
    )
    .unwrap();
    server.start();
    let token = server.internal_token();
    let repos = |what: &str, body: serde_json::Value| {
        server.post(
            &format!("/api/repos/{what}"),
            &[("X-Internal-Token", &token)],
            &body.to_string(),
        )
    };
    let open = |id: &str| {
        let r = repos(
            "open",
            serde_json::json!({"repoPath": repo, "sessionId": id}),
        );
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
        let v = r.json();
        (
            PathBuf::from(v["path"].as_str().unwrap()),
            v["created"].as_bool().unwrap(),
        )
    };
    let (a, b) = (new_session_id(), new_session_id());
    let (wt_b, created) = open(&b);
    assert!(created);
    let (wt_a, created) = open(&a);
    assert!(created);
    assert_eq!(wt_b, worktree_path(&repo, &b));

    // B's uncommitted work, written as B's agent would (as the daemon's user).
    let work = wt_b.join("uncommitted.txt");
    std::fs::write(&work, "b's work\n").unwrap();
    common::git::chown_to_service_user(&work);
    let ino_b = std::fs::metadata(&wt_b).unwrap().ino();

    let trick = format!("{}/.mitzo/checkouts/./{b}", repo.display());
    assert_eq!(
        std::fs::canonicalize(&trick).unwrap(),
        wt_b,
        "the planted path names B's checkout"
    );
    let trick_git = format!("{trick}/.git");
    let state = base.join("agent-a");
    let (policy, env) = agent_sandbox(&state, &repo, &wt_a);
    common::git::chown_to_service_user(&state);
    let plant = run_agent(
        &policy,
        &env,
        &wt_a,
        &format!(
            "echo {g} > .git/gitdir && echo {g} > .git/commondir && \
             mkdir -p .git/worktrees/x && echo {g} > .git/worktrees/x/gitdir && \
             echo {t}/.git/objects >> .git/objects/info/alternates && \
             printf '[core]\\n\\tworktree = %s\\n' {t} >> .git/config",
            g = q(Path::new(&trick_git)),
            t = q(Path::new(&trick)),
        ),
        ids,
    );
    assert!(
        ok(&plant),
        "A's agent could not write its own git dir: {}",
        say(&plant)
    );
    // The same agent cannot reach B's checkout itself (so the daemon is the
    // only way it could touch B's work).
    let reach = run_agent(&policy, &env, &wt_a, &format!("cat {}", q(&work)), ids);
    assert!(!ok(&reach), "A's agent read B's checkout: {}", say(&reach));

    // The older layout's entry for A, naming B's checkout.
    let old_admin = repo.join(".git/worktrees").join(&a);
    std::fs::create_dir_all(&old_admin).unwrap();
    std::fs::write(old_admin.join("gitdir"), format!("{trick_git}\n")).unwrap();
    std::fs::write(old_admin.join("commondir"), "../..\n").unwrap();
    std::fs::write(old_admin.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    common::git::chown_to_service_user(&repo.join(".git/worktrees"));
    // Control: git's own listing now names B's directory for that entry.
    let list = owner_git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(ok(&list), "{}", say(&list));
    let listed: Vec<PathBuf> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    assert!(
        listed.iter().filter(|p| **p == wt_b).count() >= 1,
        "control: git's listing does not name B's checkout: {}",
        say(&list)
    );

    let b_intact = |when: &str| {
        assert_eq!(
            std::fs::metadata(&wt_b).map(|m| m.ino()).ok(),
            Some(ino_b),
            "B's checkout replaced or removed {when}; log:\n{}",
            server.log_text()
        );
        assert_eq!(
            std::fs::read_to_string(&work).ok().as_deref(),
            Some("b's work\n"),
            "B's uncommitted file lost {when}"
        );
    };
    assert_eq!(open(&b), (wt_b.clone(), false));
    b_intact("by reopening B");
    assert_eq!(open(&a), (wt_a.clone(), false));
    b_intact("by reopening A");
    let r = repos(
        "close",
        serde_json::json!({"repoPath": repo, "sessionId": a, "force": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["removed"], true);
    assert!(!wt_a.exists(), "A's checkout was not removed");
    b_intact("by closing A");
    assert_eq!(open(&b), (wt_b.clone(), false));
    b_intact("by reopening B after A closed");

    // Control: the daemon removing B's checkout loses the uncommitted file,
    // so the checks above would have seen a removal.
    let r = repos("close", serde_json::json!({"path": wt_b}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["removed"], true);
    assert!(
        !work.exists(),
        "control: B's file survived removing its checkout"
    );
    server.stop();
}

/// `worktree_cleanup = "execute"` is applied by the running daemon at
/// start-up: the stale clean checkout goes (its branch stays), the stale
/// dirty one and a fresh one stay.
#[test]
fn execute_cleanup_runs_at_start_up() {
    let _g = serial();
    if !landlock_or_skip("execute_cleanup_runs_at_start_up") {
        return;
    }
    let mut server = common::TestServer::new(common::Options::default());
    let repo = server.dir.path().join("repo");
    init_repo(&repo);
    let git = Git::new(Enforcement::Required).unwrap();
    let old = SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    let (clean, dirty, fresh) = (
        new_session_id_at(old),
        new_session_id_at(old),
        new_session_id(),
    );
    for id in [&clean, &dirty, &fresh] {
        prepare_session_dir(&git, &repo, id, true).unwrap();
    }
    std::fs::write(worktree_path(&repo, &dirty).join("wip"), "x").unwrap();
    for id in [&clean, &dirty] {
        let wt = worktree_path(&repo, id);
        for p in [
            wt.clone(),
            wt.join(".git/index"),
            wt.join(".git/HEAD"),
            wt.join(".git/logs/HEAD"),
        ] {
            if p.exists() {
                std::fs::File::open(&p).unwrap().set_modified(old).unwrap();
            }
        }
    }
    if common::is_root() {
        // The daemon drops to nobody, who must own the repo.
        let (uid, gid) = common::nobody_ids();
        let st = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(&repo)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let toml = format!(
        "repo_path = \"{}\"\n[session]\nworktree_cleanup = \"execute\"\n",
        repo.display()
    );
    let cfg = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, format!("{cfg}\n{toml}")).unwrap();
    server.start();
    // Wait (bounded, not timed) for the daemon's report.
    let mut waited = 0;
    while !server.log_text().contains("stale session checkouts") {
        assert!(
            waited < 1500,
            "no cleanup report; log:\n{}",
            server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
    }
    assert!(
        !worktree_path(&repo, &clean).exists(),
        "{}",
        server.log_text()
    );
    assert!(worktree_path(&repo, &dirty).join("wip").exists());
    assert!(worktree_path(&repo, &fresh).exists());
    assert!(ok(&owner_git(
        &repo,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("refs/heads/session/{clean}")
        ]
    )));
    server.stop();
}

/// Agent A names session B's object store in its clone's alternates and
/// commits a tree pointing at a blob only B has (its id learned somehow).
/// mitzod's fetch of A's branch reads only A's checkout, so B's blob never
/// reaches the main repo (where A could read it). Control: a plain fetch of
/// the same branch into a scratch clone carries the blob.
#[test]
fn a_fetch_cannot_carry_another_sessions_objects() {
    let _g = serial();
    let Some(fx) = Fx::new() else { return };
    std::fs::write(fx.wt_b.join("b-private.txt"), "B's secret\n").unwrap();
    git(&fx.wt_b, &["add", "b-private.txt"]);
    git(&fx.wt_b, &["commit", "-qm", "b"]);
    let blob = String::from_utf8(owner_git(&fx.wt_b, &["rev-parse", "HEAD:b-private.txt"]).stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(!ok(&owner_git(&fx.repo, &["cat-file", "-e", &blob])));
    let out = fx.agent(&format!(
        "set -e\n\
         echo {b} >> .git/objects/info/alternates\n\
         tree=$(printf '100644 blob {blob}\\tstolen.txt\\n' | git mktree --missing)\n\
         c=$(git -c user.name=a -c user.email=a@a commit-tree \"$tree\" -p HEAD -m steal)\n\
         git update-ref refs/heads/session/{a} \"$c\"\n",
        b = q(&fx.wt_b.join(".git/objects")),
        a = fx.a
    ));
    assert!(ok(&out), "{}", say(&out));
    let res = fetch_session_branch(&fx.git, &fx.repo, &fx.a);
    assert!(res.is_err(), "the fetch carried a commit naming B's blob");
    assert!(
        !ok(&owner_git(&fx.repo, &["cat-file", "-e", &blob])),
        "B's blob reached the main repo"
    );
    // Control: without the confinement the same fetch brings the blob.
    let scratch = fx.root.join("scratch");
    let o = owner_git(
        &fx.root,
        &[
            "clone",
            "-q",
            "--shared",
            &fx.repo.display().to_string(),
            &scratch.display().to_string(),
        ],
    );
    assert!(ok(&o), "{}", say(&o));
    let o = owner_git(
        &scratch,
        &[
            "fetch",
            "-q",
            &fx.wt.join(".git").display().to_string(),
            &format!("+refs/heads/session/{}:refs/heads/ctl", fx.a),
        ],
    );
    assert!(ok(&o), "control fetch: {}", say(&o));
    assert!(ok(&owner_git(&scratch, &["cat-file", "-e", &blob])));
}
