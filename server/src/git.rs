//! mitzod's own git commands, run so that nothing an agent planted in a repo
//! (`.git/hooks`, `.git/config`, `.gitattributes`) can execute outside the
//! sandbox.
//!
//! Two layers, both always on:
//! 1. every git command runs under a Landlock policy (read-write on the repo
//!    only, no network), so even a program git does run stays confined;
//! 2. git itself is told to run nothing: hooks, fsmonitor, filters, diff and
//!    merge drivers, pagers, editors, credential helpers, ssh, signing
//!    programs and transports are disabled through command-line-level
//!    config (`GIT_CONFIG_COUNT`, which beats any file), and the system and
//!    global config and attributes are not read at all.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::error::{Error, Result};
use mitzo_sandbox::{system_read_exec_paths, Enforcement, Policy, SandboxedCommand, Scopes};

/// Config that names programs git would run, each set to nothing.
const HARDENING: &[(&str, &str)] = &[
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("core.pager", "cat"),
    ("core.editor", "false"),
    ("sequence.editor", "false"),
    ("core.askPass", "false"),
    ("core.sshCommand", "false"),
    ("core.gitProxy", ""),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),
    ("diff.external", ""),
    ("gpg.program", "false"),
    ("gpg.openpgp.program", "false"),
    ("gpg.x509.program", "false"),
    ("gpg.ssh.program", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("protocol.allow", "never"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("uploadpack.packObjectsHook", ""),
];

/// Per-driver keys that name a program; the drivers are found in the repo's
/// config and each key is overridden with an empty value (git treats an
/// empty command as "no filter").
fn is_program_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let (section, rest) = match k.split_once('.') {
        Some(x) => x,
        None => return false,
    };
    let Some((_, name)) = rest.rsplit_once('.') else {
        return false;
    };
    matches!(
        (section, name),
        ("filter", "clean" | "smudge" | "process")
            | ("diff", "textconv" | "command")
            | ("merge", "driver")
    )
}

/// Where one git command runs: its Landlock policy, its working directory
/// and environment beyond the fixed one.
#[derive(Debug, Clone)]
pub struct Confined {
    pub policy: Policy,
    pub cwd: PathBuf,
    pub env: Vec<(OsString, OsString)>,
}

/// What [`Git::output_capped`] got.
#[derive(Debug)]
pub struct Capped {
    /// Git's exit status (a kill when `truncated`).
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    /// The first 64 KiB of stderr.
    pub stderr: Vec<u8>,
    /// Stdout was longer than the cap and was cut there.
    pub truncated: bool,
}

/// Runs git confined to one repo.
#[derive(Debug, Clone)]
pub struct Git {
    git: PathBuf,
    landlock: Enforcement,
    extra_exec: Vec<PathBuf>,
}

impl Git {
    /// Find `git` on `PATH`.
    pub fn new(landlock: Enforcement) -> Result<Git> {
        let git = crate::program::on_path("git")
            .ok_or_else(|| Error::Unavailable("git not found on PATH".into()))?;
        Git::with_binary(&git, landlock)
    }

    pub fn with_binary(git: &Path, landlock: Enforcement) -> Result<Git> {
        let canonical = std::fs::canonicalize(git)
            .map_err(|e| Error::Unavailable(format!("git binary {}: {e}", git.display())))?;
        let mut extra_exec = Vec::new();
        if let Some(bin) = canonical.parent() {
            extra_exec.push(bin.to_path_buf());
            // git's helpers live in <prefix>/libexec/git-core.
            if let Some(core) = bin.parent().map(|p| p.join("libexec/git-core")) {
                if core.is_dir() {
                    extra_exec.push(core);
                }
            }
        }
        Ok(Git {
            git: canonical,
            landlock,
            extra_exec,
        })
    }

    /// The policy git (and anything it starts) runs under: the repo
    /// read-write, system paths read/exec, no network, scoped.
    pub fn policy(&self, repo: &Path) -> Policy {
        self.scoped_policy(&[repo.to_path_buf()], &[])
    }

    /// Like [`Git::policy`], with only `write` writable and `read` readable
    /// besides the system paths.
    pub fn scoped_policy(&self, write: &[PathBuf], read: &[PathBuf]) -> Policy {
        let mut read_exec = system_read_exec_paths();
        read_exec.extend(self.extra_exec.iter().cloned());
        let mut read_write = write.to_vec();
        read_write.extend(
            ["/dev/null"]
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists()),
        );
        let mut read_only: Vec<PathBuf> = [
            "/etc/passwd",
            "/etc/group",
            "/etc/localtime",
            "/dev/urandom",
        ]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
        read_only.extend(read.iter().cloned());
        Policy {
            read_write,
            read_only,
            read_exec,
            connect_tcp: Vec::new(),
            bind_tcp: Vec::new(),
            scopes: Scopes::default(),
            landlock: self.landlock,
        }
    }

    fn env(overrides: &[(String, String)]) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = [
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("HOME", "/nonexistent"),
            ("XDG_CONFIG_HOME", "/nonexistent"),
            ("LC_ALL", "C"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_ATTR_NOSYSTEM", "1"),
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_OPTIONAL_LOCKS", "0"),
            ("GIT_NO_REPLACE_OBJECTS", "1"),
            ("GIT_PROTOCOL_FROM_USER", "0"),
            ("GIT_PAGER", "cat"),
            ("PAGER", "cat"),
            ("GIT_EDITOR", "false"),
        ]
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
        let all: Vec<(String, String)> = HARDENING
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(overrides.iter().cloned())
            .collect();
        env.push(("GIT_CONFIG_COUNT".into(), all.len().to_string().into()));
        for (i, (k, v)) in all.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}").into(), k.into()));
            env.push((format!("GIT_CONFIG_VALUE_{i}").into(), v.into()));
        }
        env
    }

    fn command(
        &self,
        c: &Confined,
        args: &[&OsStr],
        overrides: &[(String, String)],
    ) -> Result<std::process::Command> {
        let mut env = Git::env(overrides);
        env.extend(c.env.iter().cloned());
        let cmd = SandboxedCommand::new(&self.git, &c.policy, env)?
            .args(["--no-pager", "--no-replace-objects", "--literal-pathspecs"])
            .args(args)
            .current_dir(&c.cwd);
        let mut cmd = cmd.into_std();
        cmd.stdin(Stdio::null());
        Ok(cmd)
    }

    fn raw(&self, c: &Confined, args: &[&OsStr], overrides: &[(String, String)]) -> Result<Output> {
        self.command(c, args, overrides)?
            .output()
            .map_err(|e| Error::io("running git", e))
    }

    /// The repo's program-naming driver keys, each overridden to empty.
    fn driver_overrides(&self, c: &Confined) -> Result<Vec<(String, String)>> {
        let out = self.raw(
            c,
            &["config".as_ref(), "--list".as_ref(), "-z".as_ref()],
            &[],
        )?;
        if !out.status.success() {
            // No config to read (e.g. not a repo): the command that follows
            // reports the real error.
            return Ok(Vec::new());
        }
        let mut v = Vec::new();
        for entry in out.stdout.split(|&b| b == 0) {
            let key_end = entry
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(entry.len());
            let Ok(key) = std::str::from_utf8(&entry[..key_end]) else {
                return Err(Error::Invalid(
                    "repo config has a key that is not UTF-8; refusing to run git in it".into(),
                ));
            };
            if is_program_key(key) {
                v.push((key.to_string(), String::new()));
                // A "required" filter with no command would make git fail;
                // content is checked out unfiltered instead.
                if let Some(driver) = key.strip_prefix("filter.").and_then(|r| r.rsplit_once('.')) {
                    v.push((format!("filter.{}.required", driver.0), "false".into()));
                }
            }
        }
        Ok(v)
    }

    /// Run `git <args>` in `cwd` (inside `repo`); stdout on success, an
    /// error with git's stderr otherwise.
    pub fn run<S: AsRef<OsStr>>(&self, repo: &Path, cwd: &Path, args: &[S]) -> Result<String> {
        self.run_confined(&self.in_repo(repo, cwd), args, &[])
    }

    /// Like [`Git::run`], but returns the raw output whatever the status.
    pub fn output<S: AsRef<OsStr>>(&self, repo: &Path, cwd: &Path, args: &[S]) -> Result<Output> {
        self.output_confined(&self.in_repo(repo, cwd), args, &[])
    }

    fn in_repo(&self, repo: &Path, cwd: &Path) -> Confined {
        Confined {
            policy: self.policy(repo),
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
        }
    }

    /// Run git under an explicit confinement, with `extra` config on top of
    /// the hardening.
    pub fn run_confined<S: AsRef<OsStr>>(
        &self,
        c: &Confined,
        args: &[S],
        extra: &[(&str, &str)],
    ) -> Result<String> {
        let out = self.output_confined(c, args, extra)?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "git {} failed: {}",
                args.iter()
                    .map(|a| a.as_ref().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn output_confined<S: AsRef<OsStr>>(
        &self,
        c: &Confined,
        args: &[S],
        extra: &[(&str, &str)],
    ) -> Result<Output> {
        self.confined_command(c, args, extra)?
            .output()
            .map_err(|e| Error::io("running git", e))
    }

    /// Git under `c` with the hardening, the driver overrides and `extra`.
    fn confined_command<S: AsRef<OsStr>>(
        &self,
        c: &Confined,
        args: &[S],
        extra: &[(&str, &str)],
    ) -> Result<std::process::Command> {
        let mut overrides = self.driver_overrides(c)?;
        overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
        self.command(c, &args, &overrides)
    }

    /// Like [`Git::output_confined`], keeping at most `cap` bytes of
    /// stdout: past that, git is killed (its output may be as large as
    /// whatever an agent committed) and `truncated` is set.
    pub fn output_capped<S: AsRef<OsStr>>(
        &self,
        c: &Confined,
        args: &[S],
        extra: &[(&str, &str)],
        cap: usize,
    ) -> Result<Capped> {
        use std::io::Read;
        let mut child = self
            .confined_command(c, args, extra)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("running git", e))?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = e.by_ref().take(64 * 1024).read_to_end(&mut buf);
                // Drain the rest so git never blocks on a full pipe.
                let _ = std::io::copy(&mut e, &mut std::io::sink());
                buf
            })
        });
        let mut stdout = Vec::new();
        if let Some(out) = child.stdout.take() {
            out.take(cap as u64 + 1)
                .read_to_end(&mut stdout)
                .map_err(|e| Error::io("reading git's output", e))?;
        }
        let truncated = stdout.len() > cap;
        if truncated {
            stdout.truncate(cap);
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| Error::io("waiting for git", e))?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        Ok(Capped {
            status,
            stdout,
            stderr,
            truncated,
        })
    }

    /// Git inside a session's checkout, a directory an agent writes: it may
    /// write that checkout only and read `read`, and its git dir and work
    /// tree are named explicitly (`GIT_DIR`, `GIT_WORK_TREE`), so neither a
    /// `.git` file nor `core.worktree` written there can point it elsewhere.
    /// Whatever git still reads there (config, `commondir`) is the agent's,
    /// so the hardening above and this policy are what stand between it and
    /// anything outside the checkout.
    pub fn in_checkout(&self, checkout: &Path, read: &[PathBuf]) -> Result<Confined> {
        let dot_git = checkout.join(".git");
        match std::fs::symlink_metadata(&dot_git) {
            Ok(m) if m.file_type().is_dir() => {}
            _ => {
                return Err(Error::Conflict(format!(
                    "{} is not a git directory of its own (missing, a file or a symlink); \
                     refusing to run git there",
                    dot_git.display()
                )))
            }
        }
        let ceiling = checkout.parent().unwrap_or(checkout);
        Ok(Confined {
            policy: self.scoped_policy(&[checkout.to_path_buf()], read),
            cwd: checkout.to_path_buf(),
            env: vec![
                ("GIT_DIR".into(), dot_git.into_os_string()),
                ("GIT_WORK_TREE".into(), checkout.as_os_str().to_owned()),
                (
                    "GIT_CEILING_DIRECTORIES".into(),
                    ceiling.as_os_str().to_owned(),
                ),
            ],
        })
    }

    /// `rm -rf` of a path inside `repo`, under the same policy: a symlink
    /// planted on the way cannot make it delete anything outside the repo.
    pub fn remove_dir(&self, repo: &Path, path: &Path) -> Result<()> {
        self.remove_dir_within(repo, path)
    }

    /// `rm -rf path` allowed to write only beneath `within`.
    pub fn remove_dir_within(&self, within: &Path, path: &Path) -> Result<()> {
        let rm = ["/usr/bin/rm", "/bin/rm"]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Unavailable("rm not found".into()))?;
        let policy = self.scoped_policy(&[within.to_path_buf()], &[]);
        let out = SandboxedCommand::new(rm, &policy, Git::env(&[]))?
            .args([
                OsStr::new("-rf"),
                OsStr::new("--one-file-system"),
                OsStr::new("--"),
            ])
            .arg(path)
            .current_dir(within)
            .into_std()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("running rm", e))?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "removing {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_keys() {
        assert!(is_program_key("filter.lfs.clean"));
        assert!(is_program_key("filter.a.b.smudge"));
        assert!(is_program_key("filter.x.process"));
        assert!(is_program_key("diff.foo.textconv"));
        assert!(is_program_key("merge.m.driver"));
        assert!(!is_program_key("filter.x.required"));
        assert!(!is_program_key("core.editor"));
        assert!(!is_program_key("filter.clean"));
    }
}
