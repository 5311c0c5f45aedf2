//! What the real-CLI tests share: where the CLI and the fake Anthropic API
//! live, the skip rule (`MITZO_REQUIRE_E2E=1` turns a skip into a failure),
//! and the fake API as a child that dies with the test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::sessions_support::landlock_or_skip;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn e2e_dir() -> PathBuf {
    repo_root().join("tests/e2e")
}

/// Whether `what` exists; when it does not, skip with `hint`, or fail under
/// `MITZO_REQUIRE_E2E=1`.
pub fn required_or_skip(test: &str, what: &Path, hint: &str) -> bool {
    if what.exists() {
        return true;
    }
    if std::env::var("MITZO_REQUIRE_E2E").is_ok_and(|v| v == "1") {
        panic!("{test}: {} missing; {hint}", what.display());
    }
    eprintln!("SKIP {test}: {} missing ({hint})", what.display());
    false
}

/// The real Claude Code CLI (`MITZO_CLAUDE_BIN`, else tests/e2e's npm install).
pub fn claude_or_skip(test: &str) -> Option<PathBuf> {
    if !landlock_or_skip(test) {
        return None;
    }
    let bin = std::env::var_os("MITZO_CLAUDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e_dir().join("node_modules/.bin/claude"));
    required_or_skip(test, &bin, "run `npm ci` in tests/e2e").then_some(bin)
}

/// The fake Anthropic API; dies with the test (stdin EOF).
pub struct FakeApi {
    child: Child,
    pub port: u16,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn fake_api() -> FakeApi {
    let dir = e2e_dir();
    let mut child = Command::new("/usr/bin/python3")
        .arg(dir.join("fake_anthropic.py"))
        .args(["--port", "0", "--exit-on-stdin-eof", "--script"])
        .arg(dir.join("scripts/scenarios.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("fake API port line: {line:?}"));
    FakeApi { child, port }
}
