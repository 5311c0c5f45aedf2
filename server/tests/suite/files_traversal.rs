//! The traversal suite, against the running server: whatever path a
//! caller names, nothing outside a root is ever read, listed or written.
//! The secret outside is readable and writable by the server's user, so
//! only the resolver keeps it out.

use crate::common;
use crate::files_support;

use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use files_support::{assert_refused, enc, enc_bytes, Fixture, SECRET};
use serde_json::json;

fn try_everywhere(f: &Fixture, path: &str, what: &str) {
    let r = f.get(&format!("/api/files/read?path={}", enc(path)));
    assert_refused(&r, &format!("read {what} {path:?}"));
    let r = f.get(&format!("/api/files/raw?path={}", enc(path)));
    assert_refused(&r, &format!("raw read {what} {path:?}"));
    let r = f.get_accept(
        &format!("/api/files/read?path={}", enc(path)),
        "application/octet-stream",
    );
    assert_refused(&r, &format!("octet-stream read {what} {path:?}"));
    let r = f.get(&format!("/api/files/list?dir={}", enc(path)));
    assert_refused(&r, &format!("list {what} {path:?}"));
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": path, "content": "PWNED" }),
    );
    assert_refused(&r, &format!("write {what} {path:?}"));
}

#[test]
fn dotdot_in_every_position() {
    let f = Fixture::start("");
    let repo = f.repo.display().to_string();
    let paths = [
        "..".to_string(),
        "../outside/secret.txt".into(),
        "../../../../../../../../etc/passwd".into(),
        "./../outside/secret.txt".into(),
        "sub/../../outside/secret.txt".into(),
        "sub/./../../outside/secret.txt".into(),
        "sub//..//..//outside/secret.txt".into(),
        "sub/../sub/../../outside/secret.txt".into(),
        "nonexistent/../../outside/secret.txt".into(),
        "a.txt/../../outside/secret.txt".into(),
        "sub/..".to_string() + "/../outside/secret.txt",
        "../repo/../outside/secret.txt".into(),
        "../repo-evil/secret.txt".into(),
        format!("{repo}/../outside/secret.txt"),
        format!("{repo}/sub/../../outside/secret.txt"),
        format!("{repo}/.."),
        "..\\outside\\secret.txt".into(),
        "....//outside/secret.txt".into(),
    ];
    for p in &paths {
        try_everywhere(&f, p, "dotdot");
    }
    // `..` that stays inside is fine.
    let r = f.get(&format!("/api/files/read?path={}", enc("sub/../a.txt")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"], "hello a");
    f.assert_outside_intact();
}

#[test]
fn percent_and_double_encoded_dots() {
    let f = Fixture::start("");
    let queries = [
        "%2e%2e/outside/secret.txt",
        "%2E%2E%2Foutside%2Fsecret.txt",
        ".%2e/outside/secret.txt",
        "%2e./outside/secret.txt",
        "sub/%2e%2e/%2e%2e/outside/secret.txt",
        "%252e%252e%252foutside%252fsecret.txt",
        "%252e%252e/outside/secret.txt",
        "%25252e%25252e/outside/secret.txt",
        "..%2foutside%2fsecret.txt",
        "..%5coutside%5csecret.txt",
        "%c0%ae%c0%ae/outside/secret.txt",
        "%e0%80%ae%e0%80%ae/outside/secret.txt",
        "..%c0%afoutside/secret.txt",
    ];
    for q in queries {
        let r = f.get(&format!("/api/files/read?path={q}"));
        assert_refused(&r, &format!("read {q}"));
        let r = f.get(&format!("/api/files/list?dir={q}"));
        assert_refused(&r, &format!("list {q}"));
    }
    // The write body is JSON: an encoded name is just a (missing) name.
    for p in ["%2e%2e/outside/secret.txt", "%252e%252e/outside/secret.txt"] {
        let r = f.put_json(
            "/api/files/write",
            &json!({ "path": p, "content": "PWNED" }),
        );
        assert_refused(&r, p);
    }
    f.assert_outside_intact();
}

#[test]
fn absolute_paths() {
    let f = Fixture::start("");
    let secret = f.outside.join("secret.txt").display().to_string();
    let repo = f.repo.display().to_string();
    for p in [
        "/etc/passwd",
        "/etc/shadow",
        "/proc/self/environ",
        "/proc/self/root/etc/passwd",
        "/proc/self/cwd/etc/passwd",
        "//etc/passwd",
        secret.as_str(),
        "/",
    ] {
        try_everywhere(&f, p, "absolute");
        // With an explicit root too.
        let r = f.get(&format!(
            "/api/files/read?root={}&path={}",
            enc(&repo),
            enc(p)
        ));
        assert_refused(&r, &format!("read root+{p}"));
    }
    // Absolute inside the repo works.
    let r = f.get(&format!(
        "/api/files/read?path={}",
        enc(&format!("{repo}/sub/b.txt"))
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"], "hello b");
    // An unknown root is refused, not guessed.
    let r = f.get(&format!("/api/files/list?root={}", enc("/etc")));
    assert_eq!(r.status, 404, "{}", r.text());
    f.assert_outside_intact();
}

#[test]
fn nul_bytes() {
    let f = Fixture::start("");
    for q in [
        "a.txt%00",
        "a.txt%00.png",
        "%00",
        "sub%00/../../outside/secret.txt",
        "..%00/outside/secret.txt",
    ] {
        let r = f.get(&format!("/api/files/read?path={q}"));
        assert_eq!(r.status, 400, "read {q}: {}", r.text());
        assert_refused(&r, q);
        let r = f.get(&format!("/api/files/list?dir={q}"));
        assert_eq!(r.status, 400, "list {q}: {}", r.text());
    }
    let r = f.put_raw(
        "/api/files/write",
        br#"{"path":"a.txt\u0000","content":"x"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = f.put_raw(
        "/api/files/write",
        br#"{"path":"a.txt","content":"x","root":"\u0000"}"#,
    );
    assert_refused(&r, "NUL root");
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        "hello a"
    );
    f.assert_outside_intact();
}

#[test]
fn overlong_and_non_utf8_names() {
    let f = Fixture::start("");
    // A path longer than PATH_MAX, a component longer than NAME_MAX, and
    // a deep chain of `..` that is long too.
    let long_path = "a/".repeat(3000);
    let long_name = "x".repeat(300);
    let deep = "../".repeat(1500) + "etc/passwd";
    for p in [long_path.as_str(), long_name.as_str(), deep.as_str()] {
        try_everywhere(&f, p, "overlong");
    }
    // Non-UTF-8 bytes in the query: decoded lossily to a name that does not exist.
    for q in [
        "%ff%fe",
        "%80../outside/secret.txt",
        "..%ff/outside/secret.txt",
        "%ff/../../outside/secret.txt",
    ] {
        let r = f.get(&format!("/api/files/read?path={q}"));
        assert_refused(&r, q);
    }
    // A real file with a non-UTF-8 name is listed (lossily), never a way out.
    let name: &[u8] = b"bin\xff\xfe.txt";
    let path = f
        .repo
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name));
    std::fs::write(&path, b"odd").unwrap();
    files_support::give_to_server(&path);
    let r = f.get("/api/files/list");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("bin\u{fffd}\u{fffd}.txt"), "{}", r.text());
    let r = f.get(&format!("/api/files/read?path={}", enc_bytes(name)));
    assert_refused(&r, "non-UTF-8 name");
    f.assert_outside_intact();
}

#[test]
fn symlinks_to_outside_file_and_dir() {
    let f = Fixture::start("");
    let secret = f.outside.join("secret.txt");
    files_support::write_file(&f.outside.join("dir/secret.txt"), SECRET.as_bytes(), 0o666);
    std::fs::set_permissions(
        f.outside.join("dir"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    symlink(&secret, f.repo.join("abs-file")).unwrap();
    symlink("../outside/secret.txt", f.repo.join("rel-file")).unwrap();
    symlink(f.outside.join("dir"), f.repo.join("abs-dir")).unwrap();
    symlink("../outside/dir", f.repo.join("rel-dir")).unwrap();
    symlink("../../outside/dir", f.repo.join("sub/deep-dir")).unwrap();
    symlink("/proc/self/root/etc", f.repo.join("magic")).unwrap();
    symlink("a.txt", f.repo.join("inside-link")).unwrap();
    symlink("sub", f.repo.join("inside-dir")).unwrap();
    for p in [
        "abs-file",
        "rel-file",
        "abs-dir/secret.txt",
        "rel-dir/secret.txt",
        "sub/deep-dir/secret.txt",
        "magic/passwd",
        "inside-dir/../rel-file",
    ] {
        try_everywhere(&f, p, "symlink");
    }
    for d in ["abs-dir", "rel-dir", "sub/deep-dir", "magic"] {
        let r = f.get(&format!("/api/files/list?dir={}", enc(d)));
        assert_refused(&r, d);
    }
    // Listing the repo shows the links without describing their targets.
    let r = f.get("/api/files/list");
    assert_eq!(r.status, 200);
    let entries = r.json()["entries"].as_array().unwrap().clone();
    let rel = entries.iter().find(|e| e["name"] == "rel-file").unwrap();
    assert_eq!(rel["size"], 0, "{rel}");
    assert_eq!(rel["isSymlink"], true);
    // Links that stay inside work for reads, and writes through them are refused.
    let r = f.get("/api/files/read?path=inside-link");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"], "hello a");
    let r = f.get("/api/files/read?path=inside-dir/b.txt");
    assert_eq!(r.json()["content"], "hello b");
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "inside-link", "content": "x" }),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(std::fs::symlink_metadata(f.repo.join("inside-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    f.assert_outside_intact();
    assert_eq!(
        std::fs::read_to_string(f.outside.join("dir/secret.txt")).unwrap(),
        SECRET
    );
}

/// A hard link in the repo to a file outside it: the resolver vouches for
/// the name only, so a regular file with more than one link is refused for
/// reads and writes. Control: once the outside name is gone (one link
/// left), the same file is served.
#[test]
fn hard_links_to_outside_files_are_refused() {
    let f = Fixture::start("");
    std::fs::hard_link(f.outside.join("secret.txt"), f.repo.join("hard-secret")).unwrap();
    let r = f.get("/api/files/read?path=hard-secret");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_refused(&r, "read a hard link");
    assert!(r.error().contains("hard links"), "{}", r.text());
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "hard-secret", "content": "PWNED" }),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = f.put_json(
        "/api/files/write",
        &json!({ "path": "hard-secret", "content": "PWNED", "expectedContent": "guess" }),
    );
    assert_refused(&r, "compare-and-swap on a hard link");
    assert!(!r.text().contains("sha256"), "{}", r.text());
    f.assert_outside_intact();
    std::fs::remove_file(f.repo.join("hard-secret")).unwrap();

    // Control: the same kind of file, once its outside name is removed.
    files_support::write_file(&f.outside.join("linked.txt"), b"was outside", 0o666);
    std::fs::hard_link(f.outside.join("linked.txt"), f.repo.join("linked.txt")).unwrap();
    assert_eq!(f.get("/api/files/read?path=linked.txt").status, 403);
    std::fs::remove_file(f.outside.join("linked.txt")).unwrap();
    let r = f.get("/api/files/read?path=linked.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"], "was outside");
    f.assert_outside_intact();
}

#[test]
fn sibling_prefix_dir() {
    let f = Fixture::start("");
    let repo = f.repo.display().to_string();
    let evil = format!("{repo}-evil");
    let evil_file = format!("{evil}/secret.txt");
    try_everywhere(&f, &evil_file, "sibling");
    try_everywhere(&f, &evil, "sibling");
    let r = f.get(&format!(
        "/api/files/read?root={}&path={}",
        enc(&repo),
        enc(&evil_file)
    ));
    assert_refused(&r, "sibling with root");
    let r = f.get(&format!("/api/files/list?root={}", enc(&evil)));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = f.put_json(
        "/api/files/write",
        &json!({ "root": evil, "path": "secret.txt", "content": "PWNED" }),
    );
    assert_refused(&r, "write into sibling root");
    f.assert_outside_intact();
}

/// A thread swaps `repo/d` between a real directory and a symlink to a
/// directory outside, as fast as it can, while reads, listings and writes
/// of `d/f.txt` loop. Every answer must be the inside file or a refusal.
#[test]
fn race_swapping_dir_for_symlink() {
    let f = Fixture::start("");
    let out_dir = f.outside.join("dir");
    files_support::write_file(&out_dir.join("f.txt"), SECRET.as_bytes(), 0o666);
    std::fs::set_permissions(
        &out_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    files_support::write_file(&f.repo.join("d/f.txt"), b"INSIDE", 0o666);
    files_support::give_to_server(&f.repo.join("d"));
    symlink(&out_dir, f.repo.join("d.link")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, repo) = (stop.clone(), swaps.clone(), f.repo.clone());
        std::thread::spawn(move || {
            let (d, real, link) = (repo.join("d"), repo.join("d.real"), repo.join("d.link"));
            while !stop.load(Ordering::Relaxed) {
                // d = dir  →  d = symlink  →  back.
                let _ = std::fs::rename(&d, &real);
                let _ = std::fs::rename(&link, &d);
                std::thread::yield_now();
                let _ = std::fs::rename(&d, &link);
                let _ = std::fs::rename(&real, &d);
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut ok_reads, mut ok_lists, mut ok_writes, mut refused) = (0, 0, 0, 0);
    let mut i = 0;
    while Instant::now() < deadline && i < 1500 {
        i += 1;
        let r = f.get("/api/files/read?path=d/f.txt");
        assert!(!r.text().contains(SECRET), "read leaked: {}", r.text());
        if r.status == 200 {
            assert_eq!(r.json()["content"], "INSIDE");
            ok_reads += 1;
        } else {
            assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
            refused += 1;
        }
        let r = f.get("/api/files/list?dir=d");
        if r.status == 200 {
            ok_lists += 1;
            // Listing the outside dir would show its f.txt with the secret's size.
            let entries = r.json()["entries"].clone();
            assert_eq!(entries[0]["size"], 6, "listed the wrong dir: {entries}");
        } else {
            assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
        }
        if i % 3 == 0 {
            let r = f.put_json(
                "/api/files/write",
                &json!({ "path": "d/f.txt", "content": "INSIDE" }),
            );
            if r.status == 200 {
                ok_writes += 1;
            } else {
                assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!(
        "race: {i} rounds, {} swaps, {ok_reads} reads ok, {ok_lists} lists ok, {ok_writes} writes ok, {refused} reads refused",
        swaps.load(Ordering::Relaxed)
    );
    assert!(
        swaps.load(Ordering::Relaxed) > 10,
        "the swapper did not run"
    );
    assert!(
        ok_reads > 0 && refused > 0,
        "the race never hit both states"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("f.txt")).unwrap(),
        SECRET
    );
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("f.txt")],
        "a temp file landed outside"
    );
    f.assert_outside_intact();
}

#[test]
fn only_the_owner_reaches_files() {
    let f = Fixture::start("");
    let token = f.server.internal_token();
    for path in [
        "/api/files/roots",
        "/api/files/list",
        "/api/files/read?path=a.txt",
        "/api/files/raw?path=a.txt",
    ] {
        let r = f.server.get(path, &[("X-Internal-Token", &token)]);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        let r = f
            .server
            .get(path, &[("X-Internal-Token", &token), ("X-Client-ID", "s1")]);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        let r = f.server.get(path, &[]);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
    }
    let r = common::request(
        f.server.addr(),
        "PUT",
        "/api/files/write",
        &[
            ("X-Internal-Token", &token),
            ("Content-Type", "application/json"),
        ],
        br#"{"path":"a.txt","content":"x"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(f.repo.join("a.txt")).unwrap(),
        "hello a"
    );
}
