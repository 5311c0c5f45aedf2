//! The repos sessions run in: every one the server knows, and the choice
//! of one for a new session.

use std::path::PathBuf;

use super::SessionManager;
use crate::error::{Error, Result};
use mitzo_protocol::RepoInfo;

/// Every repo sessions may run in: `repos`, and `repo_path` when it is
/// not one of them (named after its directory); the default is marked.
pub fn repo_list(config: &crate::config::Config) -> Vec<RepoInfo> {
    let mut out: Vec<RepoInfo> = config
        .repos
        .iter()
        .map(|(name, path)| RepoInfo {
            name: name.clone(),
            path: path.display().to_string(),
            default: false,
        })
        .collect();
    if let Some(rp) = &config.repo_path {
        let shown = rp.display().to_string();
        match out.iter_mut().find(|r| r.path == shown) {
            Some(r) => r.default = true,
            None => {
                let base = rp
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into());
                let name = if out.iter().any(|r| r.name == base) {
                    "default".to_string()
                } else {
                    base
                };
                out.insert(
                    0,
                    RepoInfo {
                        name,
                        path: shown,
                        default: true,
                    },
                );
            }
        }
    } else if out.len() == 1 {
        out[0].default = true;
    }
    out
}

impl SessionManager {
    /// Every repo sessions may run in (see [`repo_list`]).
    pub fn repos(&self) -> Vec<RepoInfo> {
        repo_list(&self.deps.config)
    }

    /// The repo a new session runs in: the one named, else the default.
    pub fn choose_repo(&self, name: Option<&str>) -> Result<(String, PathBuf)> {
        let repos = self.repos();
        let names = || {
            repos
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let found = match name {
            Some(n) => repos.iter().find(|r| r.name == n).ok_or_else(|| {
                Error::Invalid(format!("no repo named {n:?}; choose one of: {}", names()))
            })?,
            None if repos.is_empty() => {
                return Err(Error::Invalid(
                    "no repo_path or repos are configured; sessions need a repository".into(),
                ))
            }
            None => repos.iter().find(|r| r.default).ok_or_else(|| {
                Error::Invalid(format!(
                    "several repos are configured and none was chosen; choose one of: {}",
                    names()
                ))
            })?,
        };
        Ok((found.name.clone(), PathBuf::from(&found.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(repo_path: Option<&str>, repos: &[(&str, &str)]) -> crate::config::Config {
        let mut toml = String::new();
        if let Some(p) = repo_path {
            toml.push_str(&format!("repo_path = \"{p}\"\n"));
        }
        toml.push_str("[repos]\n");
        for (n, p) in repos {
            toml.push_str(&format!("{n} = \"{p}\"\n"));
        }
        toml::from_str(&toml).unwrap()
    }

    fn names(c: &crate::config::Config) -> Vec<(String, bool)> {
        repo_list(c)
            .into_iter()
            .map(|r| (r.name, r.default))
            .collect()
    }

    #[test]
    fn repo_path_is_listed_and_is_the_default() {
        let c = config(Some("/srv/main"), &[("x", "/srv/x")]);
        assert_eq!(names(&c), vec![("main".into(), true), ("x".into(), false)]);
        // Already one of the repos: listed once, under its name.
        let c = config(Some("/srv/x"), &[("x", "/srv/x"), ("y", "/srv/y")]);
        assert_eq!(names(&c), vec![("x".into(), true), ("y".into(), false)]);
        // A clash of names: repo_path is called `default`.
        let c = config(Some("/other/x"), &[("x", "/srv/x")]);
        assert_eq!(
            names(&c),
            vec![("default".into(), true), ("x".into(), false)]
        );
        // No repo_path: the only repo is the default; several: none.
        assert_eq!(
            names(&config(None, &[("x", "/srv/x")])),
            vec![("x".into(), true)]
        );
        assert!(names(&config(None, &[("x", "/a"), ("y", "/b")]))
            .iter()
            .all(|r| !r.1));
    }
}
