//! Claude Code's command line and environment for one session.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::permissions::Mode;

/// What varies between launches.
pub struct Launch<'a> {
    pub mode: Mode,
    pub model: Option<&'a str>,
    /// Claude Code's own session id, to continue (`--resume`).
    pub resume: Option<&'a str>,
    /// Which settings files Claude Code loads (`user`, `project`,
    /// `local`); none unless the operator configures some, so that
    /// settings the agent can write never widen what it may do.
    pub setting_sources: &'a [String],
}

/// The arguments: stream-json both ways, every permission asked over
/// stdio, partial messages (token streaming) on.
pub fn args(l: &Launch<'_>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--output-format",
        "stream-json",
        "--input-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--permission-prompt-tool",
        "stdio",
        "--permission-mode",
        l.mode.claude_permission_mode(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // `=`: an empty list must stay one argument.
    args.push(format!("--setting-sources={}", l.setting_sources.join(",")));
    if let Some(m) = l.model {
        args.extend(["--model".to_string(), m.to_string()]);
    }
    if let Some(r) = l.resume {
        // `=`: a dash-leading value is never taken for a flag.
        args.push(format!("--resume={r}"));
    }
    args
}

/// The variables mitzod sets for the agent (on top of the passthrough).
pub fn session_env(
    home: &Path,
    tmp: &Path,
    own_url: &str,
    session_id: &str,
    token: &str,
) -> Vec<(String, String)> {
    vec![
        ("HOME".to_string(), home.display().to_string()),
        ("TMPDIR".to_string(), tmp.display().to_string()),
        ("MITZO_URL".to_string(), own_url.to_string()),
        ("MITZO_SESSION_ID".to_string(), session_id.to_string()),
        ("MITZO_SESSION_TOKEN".to_string(), token.to_string()),
        ("DISABLE_AUTOUPDATER".to_string(), "1".to_string()),
    ]
}

/// The session's own agent home (`<state>/agent-homes/<id>`), created on
/// first use as a copy of `template` (`agent.home`) when one is set: what
/// one session's agent writes there (Claude Code's settings included)
/// never reaches another session. Symlinks and special files of the
/// template are not copied.
pub fn prepare_home(
    state_dir: &Path,
    session_id: &str,
    template: Option<&Path>,
) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let homes = state_dir.join("agent-homes");
    let home = homes.join(session_id);
    if home.is_dir() {
        return Ok(home);
    }
    let mkdir = |d: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))
    };
    mkdir(&homes)?;
    // Built beside it and renamed: a half-copied home is never used.
    let partial = homes.join(format!(".{session_id}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    mkdir(&partial)?;
    if let Some(t) = template.filter(|t| t.is_dir()) {
        copy_tree(t, &partial)?;
    }
    std::fs::rename(&partial, &home)
        .map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
    Ok(home)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let entries =
        std::fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?;
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&target)
                .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| Error::io(format!("copying to {}", target.display()), e))?;
        }
    }
    Ok(())
}

/// `agent.command` as an absolute path (searched on `PATH` when bare).
pub fn program(cmd: &str) -> Result<PathBuf> {
    let path = Path::new(cmd);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    crate::program::on_path(cmd)
        .ok_or_else(|| Error::Unavailable(format!("agent.command {cmd:?} not found on PATH")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_gets_its_own_home_seeded_from_the_template() {
        let d = tempfile::tempdir().unwrap();
        let template = d.path().join("template");
        std::fs::create_dir_all(template.join(".claude")).unwrap();
        std::fs::write(template.join(".claude/settings.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", template.join("link")).unwrap();
        let state = d.path().join("state");
        let a = prepare_home(&state, "a", Some(&template)).unwrap();
        let b = prepare_home(&state, "b", Some(&template)).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            std::fs::read_to_string(a.join(".claude/settings.json")).unwrap(),
            "{}"
        );
        assert!(!a.join("link").exists(), "symlinks are not copied");
        // What session a writes stays in a's home.
        std::fs::write(
            a.join(".claude/settings.json"),
            r#"{"permissions":{"allow":["Bash"]}}"#,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(b.join(".claude/settings.json")).unwrap(),
            "{}"
        );
        assert_eq!(
            std::fs::read_to_string(template.join(".claude/settings.json")).unwrap(),
            "{}"
        );
        // Kept across starts (resume needs it).
        assert_eq!(prepare_home(&state, "a", Some(&template)).unwrap(), a);
        assert!(a.join(".claude/settings.json").exists());
    }

    #[test]
    fn args_stream_partial_messages_and_load_no_settings_by_default() {
        let a = args(&Launch {
            mode: Mode::Auto,
            model: Some("m-1"),
            resume: Some("abc-123"),
            setting_sources: &[],
        });
        assert!(a.contains(&"--include-partial-messages".to_string()));
        assert!(a.contains(&"--setting-sources=".to_string()));
        assert!(a.windows(2).any(|w| w == ["--permission-mode", "default"]));
        assert!(a.contains(&"--resume=abc-123".to_string()));
        let b = args(&Launch {
            mode: Mode::Ask,
            model: None,
            resume: None,
            setting_sources: &["user".into(), "project".into()],
        });
        assert!(b.contains(&"--setting-sources=user,project".to_string()));
    }
}
