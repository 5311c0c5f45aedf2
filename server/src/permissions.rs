//! Tool-permission policy: which tool calls an agent may make without asking.
//! Tiers of tools, session modes, per-repo overrides that can only narrow,
//! and a defence-in-depth check that file-writing tools stay in the worktree.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

pub use mitzo_protocol::{Mode, Tier};

const SAFE: &[&str] = &[
    "Read",
    "Glob",
    "Grep",
    "LS",
    "WebSearch",
    "WebFetch",
    "TodoRead",
];
const STANDARD: &[&str] = &["Write", "Edit", "MultiEdit", "NotebookEdit", "TodoWrite"];
const ELEVATED: &[&str] = &["Bash"];
/// Tools whose input names a file they write.
const WRITE_TOOLS: &[(&str, &str)] = &[
    ("Write", "file_path"),
    ("Edit", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
];

pub fn builtin_tier(tool: &str) -> Tier {
    if SAFE.contains(&tool) {
        Tier::Safe
    } else if STANDARD.contains(&tool) {
        Tier::Standard
    } else if ELEVATED.contains(&tool) {
        Tier::Elevated
    } else {
        Tier::Unknown
    }
}

/// The tier after the repo's `toolTierOverrides`. An override can only make
/// a tool stricter: the repo (which the agent can write) never widens what
/// is auto-allowed.
pub fn effective_tier(tool: &str, overrides: &BTreeMap<String, Tier>) -> Tier {
    let builtin = builtin_tier(tool);
    match overrides.get(tool) {
        Some(&wanted) if wanted > builtin => wanted,
        _ => builtin,
    }
}

fn auto_allowed(mode: Mode, tier: Tier) -> bool {
    matches!(
        (mode, tier),
        (_, Tier::Safe) | (Mode::Agent | Mode::Auto, Tier::Standard) | (Mode::Auto, Tier::Elevated)
    )
}

/// What the policy says about one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(String),
    Ask,
}

/// Decide a call by policy alone: allow, deny, or ask the owner.
pub fn decide(
    tool: &str,
    input: &serde_json::Value,
    mode: Mode,
    overrides: &BTreeMap<String, Tier>,
    always_allowed: &HashSet<String>,
    worktree: &Path,
) -> (Verdict, Tier) {
    let tier = effective_tier(tool, overrides);
    if let Some(message) = write_outside(tool, input, worktree) {
        return (Verdict::Deny(message), tier);
    }
    if always_allowed.contains(tool) || auto_allowed(mode, tier) {
        return (Verdict::Allow, tier);
    }
    (Verdict::Ask, tier)
}

/// A write-class tool aimed outside the worktree: the reason, else `None`.
pub fn write_outside(tool: &str, input: &serde_json::Value, worktree: &Path) -> Option<String> {
    let key = WRITE_TOOLS
        .iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, k)| *k)?;
    let Some(raw) = input.get(key).and_then(|v| v.as_str()) else {
        return Some(format!(
            "{tool} needs a `{key}` inside {}",
            worktree.display()
        ));
    };
    let root = std::fs::canonicalize(worktree).unwrap_or_else(|_| normalise(worktree));
    let target = resolve(Path::new(raw), &root);
    let Ok(inside) = target.strip_prefix(&root) else {
        return Some(format!(
            "{tool} may only write inside the session's worktree {}; {raw} is outside it",
            root.display()
        ));
    };
    if let Some(what) = steering_file(inside) {
        return Some(format!(
            "{tool} may not write {what} ({raw}): it steers git, Claude Code or mitzod itself; ask the owner to change it"
        ));
    }
    None
}

/// Files inside a worktree that change what runs or what is allowed: git's
/// metadata, Claude Code's project settings and hooks, the repo config.
fn steering_file(inside: &Path) -> Option<&'static str> {
    let mut parts = inside
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next()?;
    if inside.components().any(|c| c.as_os_str() == ".git") {
        return Some("git metadata");
    }
    match first.as_str() {
        ".claude" => Some("Claude Code's project settings"),
        ".mitzo.json" => Some(".mitzo.json"),
        ".gitattributes" | ".gitmodules" => Some("git attributes"),
        _ => None,
    }
}

/// Resolve `p` against `base` following existing symlinks, then `..` on the
/// part that does not exist yet: where a write would really land.
fn resolve(p: &Path, base: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let joined = normalise(&joined);
    // Longest existing ancestor, canonicalised (symlinks followed).
    let mut existing = joined.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

/// Lexical `.`/`..` resolution (no filesystem access).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none() -> BTreeMap<String, Tier> {
        BTreeMap::new()
    }

    #[test]
    fn tiers_and_modes() {
        let wt = std::env::temp_dir();
        let always = HashSet::new();
        let cases = [
            ("Read", Mode::Ask, Verdict::Allow),
            ("Write", Mode::Ask, Verdict::Ask),
            ("Bash", Mode::Ask, Verdict::Ask),
            ("Write", Mode::Agent, Verdict::Allow),
            ("Bash", Mode::Agent, Verdict::Ask),
            ("Bash", Mode::Auto, Verdict::Allow),
            ("Task", Mode::Auto, Verdict::Ask),
            ("mcp__github__create_issue", Mode::Auto, Verdict::Ask),
        ];
        for (tool, mode, want) in cases {
            let input = json!({"file_path": wt.join("x").to_str().unwrap(), "command": "ls"});
            assert_eq!(
                decide(tool, &input, mode, &none(), &always, &wt).0,
                want,
                "{tool} in {mode:?}"
            );
        }
    }

    #[test]
    fn overrides_only_narrow() {
        let mut o = BTreeMap::new();
        o.insert("Write".to_string(), Tier::Safe);
        o.insert("Bash".to_string(), Tier::Standard);
        o.insert("Read".to_string(), Tier::Elevated);
        o.insert("mcp__x__y".to_string(), Tier::Safe);
        assert_eq!(
            effective_tier("Write", &o),
            Tier::Standard,
            "never promoted to safe"
        );
        assert_eq!(
            effective_tier("Bash", &o),
            Tier::Elevated,
            "never widened, even to another mutating tier"
        );
        assert_eq!(
            effective_tier("Read", &o),
            Tier::Elevated,
            "narrowing always works"
        );
        assert_eq!(
            effective_tier("mcp__x__y", &o),
            Tier::Unknown,
            "unknown stays unknown"
        );
    }

    #[test]
    fn always_is_per_exact_tool() {
        let wt = std::env::temp_dir();
        let mut always = HashSet::new();
        always.insert("mcp__github__create_issue".to_string());
        let v = |t: &str| decide(t, &json!({}), Mode::Ask, &none(), &always, &wt).0;
        assert_eq!(v("mcp__github__create_issue"), Verdict::Allow);
        assert_eq!(
            v("mcp__github__delete_repo"),
            Verdict::Ask,
            "not the whole server"
        );
    }

    #[test]
    fn files_that_steer_tools_are_denied_inside_the_worktree() {
        let base = tempfile::tempdir().unwrap();
        let wt = base.path().join("wt");
        std::fs::create_dir(&wt).unwrap();
        let always = HashSet::new();
        for p in [
            ".claude/settings.local.json",
            ".git/hooks/pre-commit",
            "sub/.git/config",
            ".mitzo.json",
            ".gitattributes",
        ] {
            let input = json!({"file_path": wt.join(p).to_str().unwrap()});
            match decide("Write", &input, Mode::Auto, &none(), &always, &wt).0 {
                Verdict::Deny(msg) => assert!(msg.contains("steers"), "{p}: {msg}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        let input = json!({"file_path": wt.join("src/claude.rs").to_str().unwrap()});
        assert_eq!(
            decide("Write", &input, Mode::Auto, &none(), &always, &wt).0,
            Verdict::Allow
        );
    }

    #[test]
    fn writes_outside_the_worktree_are_denied() {
        let base = tempfile::tempdir().unwrap();
        let wt = base.path().join("repo");
        std::fs::create_dir(&wt).unwrap();
        std::fs::create_dir(base.path().join("repo-evil")).unwrap();
        std::os::unix::fs::symlink("/etc", wt.join("link")).unwrap();
        let always = HashSet::new();
        let inside = [
            wt.join("a.txt"),
            wt.join("new/dir/b.txt"),
            PathBuf::from("rel.txt"),
        ];
        for p in inside {
            let input = json!({"file_path": p.to_str().unwrap()});
            assert_eq!(
                decide("Write", &input, Mode::Auto, &none(), &always, &wt).0,
                Verdict::Allow,
                "{p:?}"
            );
        }
        let outside = [
            "/etc/passwd".to_string(),
            format!("{}/../x", wt.display()),
            format!("{}/repo-evil/x", base.path().display()),
            format!("{}/link/shadow", wt.display()),
            "../../x".to_string(),
        ];
        for p in outside {
            let input = json!({"file_path": p});
            match decide("Edit", &input, Mode::Auto, &none(), &always, &wt).0 {
                Verdict::Deny(msg) => assert!(msg.contains("worktree"), "{msg}"),
                other => panic!("{p}: {other:?}"),
            }
        }
    }
}
