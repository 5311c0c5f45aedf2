//! `mitzod sandbox-exec --policy FILE -- CMD...`: run one command under a
//! policy, for manual checks and tests.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::env::build_env;
use super::policy::Policy;
use super::spawn::SandboxedCommand;
use crate::error::{Error, Result};

/// Exit code when the sandbox itself could not be set up.
pub const EXIT_SANDBOX_FAILED: i32 = 125;

/// The `--policy` file (JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    pub policy: Policy,
    /// Variables passed through from this process's environment, on top of
    /// the built-in allow-list.
    #[serde(default)]
    pub env_passthrough: Vec<String>,
    /// Variables set in the child.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
}

impl ExecSpec {
    pub fn load(path: &Path) -> Result<ExecSpec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading policy file {}", path.display()), e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Sandbox(format!("policy file {}: {e}", path.display())))
    }
}

/// Run `cmd` under the policy in `policy_file`; returns the exit code to
/// exit with (the command's, 128+signal, or 125 when the sandbox failed).
pub fn sandbox_exec(policy_file: &Path, cmd: &[OsString]) -> i32 {
    match run(policy_file, cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mitzod sandbox-exec: {e}");
            EXIT_SANDBOX_FAILED
        }
    }
}

fn run(policy_file: &Path, cmd: &[OsString]) -> Result<i32> {
    let Some((program, args)) = cmd.split_first() else {
        return Err(Error::Invalid("no command given after `--`".into()));
    };
    let spec = ExecSpec::load(policy_file)?;
    let session: Vec<(String, String)> = spec.env.into_iter().collect();
    let env = build_env(std::env::vars_os(), &spec.env_passthrough, &session);
    let mut sc = SandboxedCommand::new(program, &spec.policy, env)?.args(args);
    if let Some(dir) = &spec.cwd {
        sc = sc.current_dir(dir);
    }
    let mut child = sc
        .into_std()
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", program.to_string_lossy()), e))?;
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for the sandboxed command", e))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
