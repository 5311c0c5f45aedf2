//! Shared fixtures of the files tests: a repo the server's user can
//! write, a secret outside it that the server's user *could* read and
//! write (so only the resolver keeps it out), and request helpers.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::{self, Options, Response, TestServer};

pub const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";

pub struct Fixture {
    pub server: TestServer,
    pub jwt: String,
    /// Holds the repo, `outside/` and `repo-evil/`.
    pub base: tempfile::TempDir,
    pub repo: PathBuf,
    pub outside: PathBuf,
}

/// Hand `path` (recursively) to the user the server runs as.
pub fn give_to_server(path: &Path) {
    if !common::is_root() {
        return;
    }
    let (uid, gid) = common::nobody_ids();
    let status = std::process::Command::new("chown")
        .arg("-hR")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn write_file(path: &Path, content: &[u8], mode: u32) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Fixture {
    /// `repo/` with `a.txt`, `sub/b.txt`, `.hidden`; `outside/secret.txt`
    /// (0666 in a 0777 dir); `repo-evil/secret.txt`; then the server.
    pub fn start(extra_toml: &str) -> Fixture {
        let base = common::open_tempdir();
        let repo = base.path().join("repo");
        let outside = base.path().join("outside");
        write_file(&repo.join("a.txt"), b"hello a", 0o644);
        write_file(&repo.join("sub/b.txt"), b"hello b", 0o644);
        write_file(&repo.join(".hidden"), b"dot", 0o644);
        write_file(&outside.join("secret.txt"), SECRET.as_bytes(), 0o666);
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
        write_file(
            &base.path().join("repo-evil/secret.txt"),
            SECRET.as_bytes(),
            0o666,
        );
        give_to_server(&repo);
        let server = TestServer::start_with(Options {
            extra_toml: format!("repo_path = \"{}\"\n{extra_toml}", repo.display()),
            ..Options::default()
        });
        let jwt = server.login();
        Fixture {
            server,
            jwt,
            base,
            repo,
            outside,
        }
    }

    pub fn auth(&self) -> String {
        format!("Bearer {}", self.jwt)
    }

    pub fn get(&self, path_and_query: &str) -> Response {
        let a = self.auth();
        self.server.get(path_and_query, &[("Authorization", &a)])
    }

    pub fn get_accept(&self, path_and_query: &str, accept: &str) -> Response {
        let a = self.auth();
        self.server
            .get(path_and_query, &[("Authorization", &a), ("Accept", accept)])
    }

    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> Response {
        self.put_raw(path, body.to_string().as_bytes())
    }

    pub fn put_raw(&self, path: &str, body: &[u8]) -> Response {
        let a = self.auth();
        common::request(
            self.server.addr(),
            "PUT",
            path,
            &[("Authorization", &a), ("Content-Type", "application/json")],
            body,
        )
    }

    /// Nothing outside the roots changed.
    pub fn assert_outside_intact(&self) {
        assert_eq!(
            std::fs::read_to_string(self.outside.join("secret.txt")).unwrap(),
            SECRET
        );
        assert_eq!(
            std::fs::read_to_string(self.base.path().join("repo-evil/secret.txt")).unwrap(),
            SECRET
        );
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| n == "secret.txt" || n == "dir"),
            "something was created outside: {names:?}"
        );
    }
}

/// Percent-encode every byte that is not unreserved.
pub fn enc(s: &str) -> String {
    enc_bytes(s.as_bytes())
}

pub fn enc_bytes(b: &[u8]) -> String {
    let mut out = String::new();
    for &c in b {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// A refusal: any 4xx but never a success, and no secret in the body.
pub fn assert_refused(r: &Response, what: &str) {
    assert!(
        (400..500).contains(&r.status),
        "{what}: expected a 4xx, got {} {}",
        r.status,
        r.text()
    );
    assert!(
        !r.text().contains(SECRET),
        "{what}: the secret leaked: {}",
        r.text()
    );
}
