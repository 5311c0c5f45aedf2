//! A Python agent script (the fake agent, a benchmark's agent) installed
//! next to a `claude` wrapper, so the sandbox's read-exec grant on the
//! agent's install dir covers both.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Write `source` as `dir/agent-bin/<script>` and a `claude` wrapper that
/// runs it; returns the wrapper, for `agent.command`.
pub fn install_python_agent(dir: &Path, script: &str, source: &str) -> PathBuf {
    let bin = dir.join("agent-bin");
    std::fs::create_dir(&bin).unwrap();
    let path = bin.join(script);
    std::fs::write(&path, source).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let wrapper = bin.join("claude");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/python3 {} \"$@\"\n",
            path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// The fake agent (`server/tests/fixtures/fake_agent.py`), installed.
pub fn install_fake_agent(dir: &Path) -> PathBuf {
    install_python_agent(dir, "fake_agent.py", FAKE_AGENT)
}

/// The fake agent's source.
pub const FAKE_AGENT: &str = include_str!("../../tests/fixtures/fake_agent.py");
