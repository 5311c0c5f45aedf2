//! `.mitzo.json` at a repo's root: per-repo settings, parsed with a strict
//! schema. It is data, never executed. The file lives in a tree the agent
//! can write, so it is read through the same confined resolver as every
//! other repo file, its size is capped, and a broken file (bad JSON, an
//! unknown field, a value over its cap) is logged with the reason and
//! ignored: the defaults apply, and nothing fails because of it. It is
//! re-read whenever its inode, size, mtime or ctime change.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mitzo_protocol::Tier;
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use crate::files;

pub const FILE_NAME: &str = ".mitzo.json";
pub const MAX_BYTES: u64 = 256 * 1024;

const MAX_ITEMS: usize = 200;
const MAX_SHORT: usize = 200;
const MAX_TEXT: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickAction {
    pub label: String,
    pub desc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSpec {
    pub label: String,
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoConfig {
    #[serde(default)]
    pub quick_actions: Vec<QuickAction>,
    #[serde(default)]
    pub roots: Vec<RootSpec>,
    #[serde(default)]
    pub context_blocks: BTreeMap<String, String>,
    #[serde(default)]
    pub venv_paths: Vec<String>,
    #[serde(default)]
    /// The tier a tool moves to (any but `unknown`); it can only narrow.
    pub tool_tier_overrides: BTreeMap<String, Tier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<bool>,
    /// With `agent.network = "proxy"`: keep only these of the operator's
    /// `agent.allowed_hosts` (`host` or `host:port`). Narrows, never
    /// widens: a host the operator did not list is not added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
}

fn cap(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{field}: longer than {max} bytes"));
    }
    if value.contains('\0') {
        return Err(format!("{field}: contains a NUL byte"));
    }
    Ok(())
}

fn count(field: &str, n: usize) -> Result<(), String> {
    if n > MAX_ITEMS {
        return Err(format!("{field}: more than {MAX_ITEMS} entries"));
    }
    Ok(())
}

impl RepoConfig {
    /// Parse and validate; the error names the field and the problem.
    pub fn parse(bytes: &[u8]) -> Result<RepoConfig, String> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let config: RepoConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        count("quickActions", self.quick_actions.len())?;
        for (i, a) in self.quick_actions.iter().enumerate() {
            cap(&format!("quickActions[{i}].label"), &a.label, MAX_SHORT)?;
            cap(&format!("quickActions[{i}].desc"), &a.desc, MAX_TEXT)?;
            if let Some(p) = &a.prompt {
                cap(&format!("quickActions[{i}].prompt"), p, MAX_TEXT)?;
            }
            if let Some(c) = &a.cwd {
                cap(&format!("quickActions[{i}].cwd"), c, files::MAX_PATH_BYTES)?;
            }
        }
        count("roots", self.roots.len())?;
        for (i, r) in self.roots.iter().enumerate() {
            cap(&format!("roots[{i}].label"), &r.label, MAX_SHORT)?;
            cap(&format!("roots[{i}].path"), &r.path, files::MAX_PATH_BYTES)?;
            if r.path.is_empty() {
                return Err(format!("roots[{i}].path: empty"));
            }
        }
        count("contextBlocks", self.context_blocks.len())?;
        for (k, v) in &self.context_blocks {
            cap("contextBlocks key", k, MAX_SHORT)?;
            cap(&format!("contextBlocks.{k}"), v, files::MAX_PATH_BYTES)?;
        }
        count("venvPaths", self.venv_paths.len())?;
        for (i, v) in self.venv_paths.iter().enumerate() {
            cap(&format!("venvPaths[{i}]"), v, files::MAX_PATH_BYTES)?;
        }
        if let Some(hosts) = &self.allowed_hosts {
            count("allowedHosts", hosts.len())?;
            for (i, h) in hosts.iter().enumerate() {
                crate::config::HostEntry::parse(h)
                    .map_err(|e| format!("allowedHosts[{i}]: {e}"))?;
            }
        }
        count("toolTierOverrides", self.tool_tier_overrides.len())?;
        for (k, tier) in &self.tool_tier_overrides {
            cap("toolTierOverrides key", k, MAX_SHORT)?;
            if *tier == Tier::Unknown {
                return Err(format!(
                    "toolTierOverrides.{k}: expected safe, standard or elevated"
                ));
            }
        }
        Ok(())
    }
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

struct Cached {
    stamp: Option<Stamp>,
    config: Arc<RepoConfig>,
}

/// `.mitzo.json` of each repo, re-read when it changes.
#[derive(Default)]
pub struct RepoConfigs {
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

impl RepoConfigs {
    /// The current config of `repo` (defaults when missing or broken).
    /// Blocks on the filesystem: call from the blocking pool.
    pub fn get(&self, repo: &Path) -> Arc<RepoConfig> {
        let opened = open(repo);
        let stamp = opened.as_ref().map(|(_, s)| *s);
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(repo) {
                if c.stamp == stamp {
                    return c.config.clone();
                }
            }
        }
        let config = match opened {
            None => RepoConfig::default(),
            Some((file, stamp)) => match load(file, stamp) {
                Ok(c) => {
                    tracing::info!(repo = %repo.display(), "loaded {FILE_NAME}");
                    c
                }
                Err(reason) => {
                    tracing::warn!(repo = %repo.display(), %reason, "ignoring broken {FILE_NAME}; defaults apply");
                    RepoConfig::default()
                }
            },
        };
        let config = Arc::new(config);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            repo.to_path_buf(),
            Cached {
                stamp,
                config: config.clone(),
            },
        );
        config
    }
}

/// The file, opened beneath the repo, and its stamp; `None` when absent or
/// not openable (a symlink out, a directory, ...: logged below in `load`
/// only when it opens).
fn open(repo: &Path) -> Option<(std::fs::File, Stamp)> {
    let dir = files::open_root_dir(repo).ok()?;
    let fd = match files::open_beneath(
        dir.as_raw_fd(),
        FILE_NAME,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return None,
        Err(e) => {
            tracing::warn!(repo = %repo.display(), error = %e, "cannot open {FILE_NAME}; defaults apply");
            return None;
        }
    };
    let file = std::fs::File::from(fd);
    let m = file.metadata().ok()?;
    let stamp = Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    };
    Some((file, stamp))
}

fn load(file: std::fs::File, stamp: Stamp) -> Result<RepoConfig, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if stamp.size > MAX_BYTES {
        return Err(format!("larger than {MAX_BYTES} bytes"));
    }
    let mut buf = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_BYTES {
        return Err(format!("larger than {MAX_BYTES} bytes"));
    }
    RepoConfig::parse(&buf)
}

/// The current roots: the repo, its session worktrees, and the roots its
/// `.mitzo.json` names (read through the cache, so an edit shows at once).
/// Blocking.
pub fn current_roots(repo: Option<&Path>, configs: &RepoConfigs) -> Vec<files::Root> {
    let Some(repo) = repo else {
        return Vec::new();
    };
    let config = configs.get(repo);
    let extra: Vec<(String, String)> = config
        .roots
        .iter()
        .map(|r| (r.label.clone(), r.path.clone()))
        .collect();
    files::roots_of(repo, &extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_not_a_tier_a_tool_can_move_to() {
        let err = RepoConfig::parse(br#"{"toolTierOverrides": {"Bash": "unknown"}}"#).unwrap_err();
        assert!(err.contains("toolTierOverrides.Bash"), "{err}");
        let ok = RepoConfig::parse(br#"{"toolTierOverrides": {"Bash": "elevated"}}"#).unwrap();
        assert_eq!(ok.tool_tier_overrides["Bash"], Tier::Elevated);
    }

    #[test]
    fn strict_schema() {
        let ok = br#"{"quickActions":[{"label":"t","desc":"run tests","prompt":"cargo test"}],
            "roots":[{"label":"docs","path":"docs"}],"contextBlocks":{"a":"b.md"},
            "venvPaths":[".venv"],"toolTierOverrides":{"Bash":"elevated"},"isolation":false}"#;
        let c = RepoConfig::parse(ok).unwrap();
        assert_eq!(c.tool_tier_overrides["Bash"], Tier::Elevated);
        assert_eq!(c.isolation, Some(false));
        let e =
            RepoConfig::parse(br#"{"quickActions":[{"label":"t","desc":"d","run":"rm -rf /"}]}"#)
                .unwrap_err();
        assert!(e.contains("run"), "{e}");
        let e = RepoConfig::parse(br#"{"toolTierOverrides":{"Bash":"root"}}"#).unwrap_err();
        assert!(e.contains("toolTierOverrides"), "{e}");
        let c = RepoConfig::parse(br#"{"allowedHosts":["github.com","pypi.org:443"]}"#).unwrap();
        assert_eq!(c.allowed_hosts.unwrap().len(), 2);
        let e = RepoConfig::parse(br#"{"allowedHosts":["*.github.com"]}"#).unwrap_err();
        assert!(e.contains("allowedHosts[0]"), "{e}");
        assert!(RepoConfig::parse(b"{").is_err());
        let long = format!(
            r#"{{"roots":[{{"label":"{}","path":"x"}}]}}"#,
            "x".repeat(300)
        );
        assert!(RepoConfig::parse(long.as_bytes()).is_err());
    }

    #[test]
    fn reread_on_change_and_broken_ignored() {
        let d = tempfile::tempdir().unwrap();
        let configs = RepoConfigs::default();
        assert_eq!(*configs.get(d.path()), RepoConfig::default());
        std::fs::write(d.path().join(FILE_NAME), br#"{"venvPaths":["a"]}"#).unwrap();
        assert_eq!(configs.get(d.path()).venv_paths, vec!["a".to_string()]);
        std::fs::write(d.path().join(FILE_NAME), b"{broken").unwrap();
        assert_eq!(*configs.get(d.path()), RepoConfig::default());
        std::fs::write(d.path().join(FILE_NAME), br#"{"venvPaths":["b","c"]}"#).unwrap();
        assert_eq!(configs.get(d.path()).venv_paths.len(), 2);
    }
}
