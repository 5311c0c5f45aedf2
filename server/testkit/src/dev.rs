//! `mitzod serve --dev` for tests: started in a directory, returned once it
//! serves, with what it printed up to then.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{mitzod_bin, wait_timeout};

pub struct DevServer {
    pub child: Child,
    /// Every stderr line up to "serving on".
    pub lines: Vec<String>,
    /// Where the rest of stderr goes, when asked for.
    pub log: Option<PathBuf>,
}

/// `mitzod serve --dev` in `dir` with more `args` and `env` (the agent's
/// API variables are cleared first, so only what `env` gives reaches it).
/// The stderr after start-up is drained (into `log` when given), so the
/// server never blocks on a full pipe.
pub fn serve_dev(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: Option<PathBuf>,
) -> DevServer {
    let mut cmd = Command::new(mitzod_bin());
    cmd.args(["serve", "--dev"])
        .args(args)
        .current_dir(dir)
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("mitzod serve --dev exited: {lines:#?}");
        }
        let done = line.contains("serving on");
        lines.push(line);
        if done {
            break;
        }
    }
    let mut out = log.as_ref().map(|p| std::fs::File::create(p).unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if let Some(out) = out.as_mut() {
                let _ = writeln!(out, "{line}");
            }
        }
    });
    DevServer { child, lines, log }
}

impl DevServer {
    /// Everything printed up to "serving on".
    pub fn text(&self) -> String {
        self.lines.join("")
    }

    /// SIGTERM; panics unless it exits cleanly.
    pub fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(15)).expect("stops");
        assert!(status.success(), "{status}: {:#?}", self.lines);
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
