//! Reads, listings and compare-and-swap writes through the running server,
//! plus the roots, `.mitzo.json` and repo routes.

use crate::common;
use crate::files_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use base64::Engine;
use files_support::{enc, write_file, Fixture};
use serde_json::json;
use sha2::Digest;

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn cas_write_conflict_then_success() {
    let f = Fixture::start("");
    let path = f.repo.join("a.txt");
    // Stale expectation: 409 with the hash of what is there now, nothing written.
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "mine", "expectedContent": "what I read long ago" }),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["currentHash"], sha256(b"hello a"));
    assert!(!r.error().is_empty());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello a");
    // Right expectation: written, atomically, no temp file left behind.
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "mine", "expectedContent": "hello a" }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ok"], true);
    assert_eq!(r.json()["path"], path.display().to_string());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    let leftovers: Vec<_> = std::fs::read_dir(&f.repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("mitzo-write"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The same stale write again now conflicts with the new content.
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "x", "expectedContent": "hello a" }),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["currentHash"], sha256(b"mine"));
    // Absolute path and an explicit root work too.
    let abs = f.repo.join("sub/b.txt").display().to_string();
    let r = f.put_json("/api/files/write", &json!({ "path": abs, "content": "b2" }));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = f.put_json(
        "/api/files/write",
        &json!({ "root": f.repo.display().to_string(), "path": "sub/b.txt", "content": "b3", "expectedContent": "b2" }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(f.repo.join("sub/b.txt")).unwrap(),
        "b3"
    );
}

#[test]
fn missing_file_directory_and_bad_bodies() {
    let f = Fixture::start("");
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "nope.txt", "content": "x" }),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!f.repo.join("nope.txt").exists(), "write created a file");
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "missing-dir/x.txt", "content": "x" }),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "sub", "content": "x" }),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(f.repo.join("sub").is_dir());
    let r = f.get("/api/files/read?path=sub");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = f.get("/api/files/read?path=nope.txt");
    assert_eq!(r.status, 404, "{}", r.text());
    // Unknown fields and malformed bodies: 400 naming the problem.
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "x", "mode": 511 }),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("mode"), "{}", r.error());
    let r = f.put_raw("/api/files/write", b"{not json");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = f.put_json("/api/files/write", &json!({ "path": "a.txt" }));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = f.get("/api/files/read?path=a.txt&extra=1");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "%%%", "encoding": "base64" }),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        "hello a"
    );
}

#[test]
fn size_caps() {
    let f = Fixture::start("");
    const CAP: usize = 5 * 1024 * 1024;
    // Read: over 5 MiB is 413; exactly 5 MiB is fine.
    write_file(&f.repo.join("big.txt"), &vec![b'x'; CAP + 1], 0o644);
    write_file(&f.repo.join("cap.txt"), &vec![b'y'; CAP], 0o644);
    files_support::give_to_server(&f.repo);
    let r = f.get("/api/files/read?path=big.txt");
    assert_eq!(r.status, 413, "{}", r.text());
    let r = f.get("/api/files/read?path=cap.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["content"].as_str().unwrap().len(), CAP);
    // Write: content over 5 MiB is 413 and nothing changes; 5 MiB is fine
    // (above the global 1 MiB body limit: the write route has its own).
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "z".repeat(CAP + 1) }),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        "hello a"
    );
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "z".repeat(CAP) }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        std::fs::metadata(f.repo.join("a.txt")).unwrap().len(),
        CAP as u64
    );
    // Compare-and-swap of a 5 MiB file: 10 MiB of body, and as base64 13.3 MiB.
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "content": "w".repeat(CAP), "expectedContent": "z".repeat(CAP) }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "a.txt", "encoding": "base64", "content": b64.encode(vec![b'v'; CAP]), "expectedContent": b64.encode(vec![b'w'; CAP]) }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        std::fs::read(f.repo.join("a.txt")).unwrap(),
        vec![b'v'; CAP]
    );
    // A body over the write route's own limit is 413 as JSON.
    // (The server may answer before reading it all and reset the
    // connection: a reset is a refusal too.)
    let a = f.auth();
    let huge = vec![b' '; 17 * 1024 * 1024];
    let r = common::try_request(
        f.server.addr(),
        "PUT",
        "/api/files/write",
        &[("Authorization", &a), ("Content-Type", "application/json")],
        &huge,
    );
    if let Ok(r) = r {
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(!r.error().is_empty());
    }
    // Other routes keep the 1 MiB limit.
    let big = json!({ "title": "x", "description": "d".repeat(1024 * 1024) }).to_string();
    let token = f.server.internal_token();
    let r = common::try_request(
        f.server.addr(),
        "POST",
        "/api/tasks",
        &[
            ("X-Internal-Token", &token),
            ("Content-Type", "application/json"),
        ],
        big.as_bytes(),
    );
    if let Ok(r) = r {
        assert_eq!(r.status, 413, "{}", r.text());
    }
    assert_eq!(
        std::fs::metadata(f.repo.join("a.txt")).unwrap().len(),
        CAP as u64
    );
}

#[test]
fn binary_files_round_trip_as_base64() {
    let f = Fixture::start("");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    write_file(&f.repo.join("img.bin"), &bytes, 0o644);
    files_support::give_to_server(&f.repo.join("img.bin"));
    let r = f.get("/api/files/read?path=img.bin");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["encoding"], "base64");
    assert_eq!(v["ext"], "bin");
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(b64.decode(v["content"].as_str().unwrap()).unwrap(), bytes);
    let mut next = bytes.clone();
    next.reverse();
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "img.bin", "encoding": "base64", "content": b64.encode(&next), "expectedContent": v["content"] }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read(f.repo.join("img.bin")).unwrap(), next);
    // Text reads carry no encoding field.
    let r = f.get("/api/files/read?path=a.txt");
    assert!(r.json().get("encoding").is_none());
    assert_eq!(r.json()["ext"], "txt");
}

#[test]
fn mode_and_owner_kept_after_write() {
    let f = Fixture::start("");
    for (name, mode) in [
        ("script.sh", 0o750),
        ("private.txt", 0o600),
        ("shared.txt", 0o664),
    ] {
        write_file(&f.repo.join(name), b"before", mode);
        files_support::give_to_server(&f.repo.join(name));
        let before = std::fs::metadata(f.repo.join(name)).unwrap();
        let r = f.put_json(
            "/api/files/write",
            &json!({ "path": name, "content": "after", "expectedContent": "before" }),
        );
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let after = std::fs::metadata(f.repo.join(name)).unwrap();
        assert_eq!(after.permissions().mode() & 0o7777, mode, "{name}");
        assert_eq!(
            (after.uid(), after.gid()),
            (before.uid(), before.gid()),
            "{name}"
        );
        assert_ne!(after.ino(), before.ino(), "{name}: not replaced by rename");
        assert_eq!(std::fs::read_to_string(f.repo.join(name)).unwrap(), "after");
    }
}

#[test]
fn list_sorting_hidden_and_roots() {
    let f = Fixture::start("");
    write_file(&f.repo.join("Zed/z.txt"), b"z", 0o644);
    write_file(&f.repo.join("b.txt"), b"b", 0o644);
    write_file(&f.repo.join(".mitzo/checkouts/s1/w.txt"), b"w", 0o644);
    write_file(&f.repo.join(".mitzo/checkouts/not-a-dir"), b"", 0o644);
    write_file(&f.repo.join("docs/readme.md"), b"docs", 0o644);
    write_file(
        &f.repo.join(".mitzo.json"),
        json!({
            "quickActions": [{ "label": "Test", "desc": "run the tests", "prompt": "cargo test" }],
            "roots": [
                { "label": "Docs", "path": "docs" },
                { "label": "Escape", "path": "../outside" },
                { "label": "Abs", "path": "/etc" }
            ]
        })
        .to_string()
        .as_bytes(),
        0o644,
    );
    files_support::give_to_server(&f.repo);
    let r = f.get("/api/files/list");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let names: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docs", "sub", "Zed", "a.txt", "b.txt"]);
    assert_eq!(v["currentDir"], f.repo.display().to_string());
    let e = &v["entries"][3];
    assert_eq!(
        (e["isDir"].as_bool(), e["size"].as_u64()),
        (Some(false), Some(7))
    );
    assert!(e["mtime"].as_i64().unwrap() > 1_600_000_000_000);
    let r = f.get("/api/files/list?hidden=1");
    let names: Vec<String> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names[0], ".mitzo", "directories first");
    assert!(names.contains(&".hidden".to_string()) && names.contains(&".mitzo.json".to_string()));
    let r = f.get("/api/files/list?dir=sub");
    assert_eq!(
        r.json()["currentDir"],
        f.repo.join("sub").display().to_string()
    );

    // Roots: the repo, its worktree dirs, the .mitzo.json roots inside it.
    let r = f.get("/api/files/roots");
    assert_eq!(r.status, 200, "{}", r.text());
    let roots = r.json();
    let paths: Vec<&str> = roots
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    let repo = f.repo.display().to_string();
    assert_eq!(
        paths,
        [
            repo.clone(),
            format!("{repo}/.mitzo/checkouts/s1"),
            format!("{repo}/docs")
        ]
    );
    assert_eq!(roots[1]["kind"], "worktree");
    // A worktree root confines to itself.
    let wt = format!("{repo}/.mitzo/checkouts/s1");
    let r = f.get(&format!("/api/files/read?root={}&path=w.txt", enc(&wt)));
    assert_eq!(r.json()["content"], "w");
    let r = f.get(&format!(
        "/api/files/read?root={}&path=../../../a.txt",
        enc(&wt)
    ));
    assert_eq!(r.status, 403, "{}", r.text());
    let r = f.get(&format!("/api/files/list?root={}", enc("Docs")));
    assert_eq!(r.json()["entries"][0]["name"], "readme.md");

    // The owner's config view.
    let r = f.get("/api/config");
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(c["repoPath"], repo);
    assert_eq!(c["quickActions"][0]["label"], "Test");
    assert_eq!(c["fileViewerRoots"].as_array().unwrap().len(), 3);
    // A new session's default: session.isolation (on) while .mitzo.json
    // says nothing of it.
    assert_eq!(c["isolation"], true);

    // Broken .mitzo.json: ignored, defaults apply, the server carries on.
    write_file(
        &f.repo.join(".mitzo.json"),
        br#"{"quickActions": [{"label": "x", "desc": "y", "exec": "rm -rf /"}]}"#,
        0o644,
    );
    let r = f.get("/api/config");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["quickActions"], json!([]));
    assert_eq!(r.json()["fileViewerRoots"].as_array().unwrap().len(), 2);
    assert!(
        f.server.log_text().contains("ignoring broken .mitzo.json"),
        "{}",
        f.server.log_text()
    );
    // Re-read when it changes.
    write_file(
        &f.repo.join(".mitzo.json"),
        br#"{"quickActions": [{"label": "again", "desc": "y"}]}"#,
        0o644,
    );
    assert_eq!(
        f.get("/api/config").json()["quickActions"][0]["label"],
        "again"
    );
    // The repo's own default wins over the server's.
    write_file(
        &f.repo.join(".mitzo.json"),
        br#"{"isolation": false}"#,
        0o644,
    );
    assert_eq!(f.get("/api/config").json()["isolation"], false);
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn repos_routes() {
    let base = common::open_tempdir();
    let infra = base.path().join("infra");
    std::fs::create_dir_all(&infra).unwrap();
    std::fs::write(infra.join("README"), "infra").unwrap();
    git(&infra, &["init", "-q"]);
    git(&infra, &["add", "README"]);
    git(&infra, &["commit", "-q", "-m", "init"]);
    files_support::give_to_server(&infra);
    let f = Fixture::start(&format!("[repos]\ninfra = \"{}\"\n", infra.display()));
    let token = f.server.internal_token();
    let r = f.server.get("/api/repos", &[("X-Internal-Token", &token)]);
    assert_eq!(r.status, 200, "{}", r.text());
    // Every repo a session may run in: `repo_path` (the default) and `[repos]`.
    assert_eq!(
        r.json(),
        json!([
            { "name": "repo", "path": f.repo.display().to_string(), "default": true },
            { "name": "infra", "path": infra.display().to_string(), "default": false },
        ])
    );
    let r = f.get("/api/repos");
    assert_eq!(r.status, 200);
    let r = f.server.get("/api/repos", &[]);
    assert_eq!(r.status, 401);
    // Config is the owner's.
    let r = f.server.get("/api/config", &[("X-Internal-Token", &token)]);
    assert_eq!(r.status, 403);
    let open = |body: &str| {
        f.server
            .post("/api/repos/open", &[("X-Internal-Token", &token)], body)
    };
    let id = "2026-01-02-0123456789ab";
    let r = open(&format!(r#"{{"repoName":"nope","sessionId":"{id}"}}"#));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = open(r#"{"repoName":"infra","sessionId":"../x"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = open(&format!(
        r#"{{"repoName":"infra","sessionId":"{id}","extra":1}}"#
    ));
    assert_eq!(r.status, 400, "{}", r.text());
    // Created, then reused.
    let r = open(&format!(r#"{{"repoName":"infra","sessionId":"{id}"}}"#));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.server.log_text());
    let v = r.json();
    let wt = infra.join(".mitzo/checkouts").join(id);
    assert_eq!(v["path"], wt.display().to_string());
    assert_eq!(v["repoName"], "infra");
    assert_eq!(v["created"], true);
    assert_eq!(std::fs::read_to_string(wt.join("README")).unwrap(), "infra");
    let r = open(&format!(r#"{{"repoName":"infra","sessionId":"{id}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["created"], false);
    // A clone of its own, not a linked worktree in the main .git.
    assert!(wt.join(".git").is_dir());
    assert!(!infra.join(".git/worktrees").exists());

    // Work committed in the checkout comes back through /api/repos/fetch.
    std::fs::write(wt.join("NOTES"), "session work").unwrap();
    git(&wt, &["-c", "safe.directory=*", "add", "NOTES"]);
    git(
        &wt,
        &["-c", "safe.directory=*", "commit", "-q", "-m", "work"],
    );
    files_support::give_to_server(&wt);
    let post =
        |path: &str, body: String| f.server.post(path, &[("X-Internal-Token", &token)], &body);
    let r = post(
        "/api/repos/fetch",
        format!(r#"{{"repoName":"infra","sessionId":"{id}"}}"#),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.server.log_text());
    assert_eq!(r.json()["branch"], format!("session/{id}"));
    let shown = std::process::Command::new("git")
        .args([
            "-c",
            "safe.directory=*",
            "show",
            &format!("session/{id}:NOTES"),
        ])
        .current_dir(&infra)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout), "session work");
    // Close: dirty refused (409), forced removes; the branch stays.
    std::fs::write(wt.join("scratch"), "x").unwrap();
    let close = |force: bool| {
        post(
            "/api/repos/close",
            format!(r#"{{"repoName":"infra","sessionId":"{id}","force":{force}}}"#),
        )
    };
    let r = close(false);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(wt.exists());
    let r = close(true);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["removed"], true);
    assert!(!wt.exists());
    let r = close(false);
    assert_eq!(r.json()["removed"], false);
    // Reopened on the kept branch, with the session's work.
    let r = open(&format!(r#"{{"repoName":"infra","sessionId":"{id}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["created"], true);
    assert_eq!(
        std::fs::read_to_string(wt.join("NOTES")).unwrap(),
        "session work"
    );
    // Without a credential: 401, nothing removed.
    let r = f.server.post(
        "/api/repos/close",
        &[],
        &format!(r#"{{"repoName":"infra","sessionId":"{id}","force":true}}"#),
    );
    assert_eq!(r.status, 401);
    assert!(wt.exists());
}
