//! Raw file reads (`GET /api/files/raw`, or `Accept: application/octet-stream`
//! on `/api/files/read`): the exact bytes, as a download the browser will
//! not render in the origin, under the same roots, resolution and limits as
//! the JSON read. The traversal suite (`files_traversal`) runs every attack
//! against these routes too.

use crate::common;
use crate::files_support;

use std::os::unix::fs::symlink;

use files_support::{assert_refused, enc, write_file, Fixture, SECRET};

/// Bytes that are not UTF-8 and longer than one chunk of the raw body.
fn binary(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn assert_download(r: &common::Response, want: &[u8], name: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let disposition = r.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with(&format!("attachment; filename=\"{name}\"")),
        "{disposition}"
    );
    assert_eq!(
        r.header("content-length"),
        Some(want.len().to_string().as_str())
    );
    assert!(r.body == want, "body differs ({} bytes)", r.body.len());
}

#[test]
fn raw_reads_are_the_exact_bytes_as_an_attachment() {
    let f = Fixture::start("");
    // Small (one chunk), large (several chunks), empty.
    let small = binary(1000);
    let large = binary(1024 * 1024 + 17);
    write_file(&f.repo.join("small.bin"), &small, 0o644);
    write_file(&f.repo.join("sub/large.bin"), &large, 0o644);
    write_file(&f.repo.join("empty"), b"", 0o644);
    files_support::give_to_server(&f.repo);

    assert_download(&f.get("/api/files/raw?path=small.bin"), &small, "small.bin");
    assert_download(
        &f.get("/api/files/raw?path=sub/large.bin"),
        &large,
        "large.bin",
    );
    assert_download(&f.get("/api/files/raw?path=empty"), b"", "empty");
    // The same through content negotiation on the JSON route...
    let r = f.get_accept(
        "/api/files/read?path=sub/large.bin",
        "application/octet-stream",
    );
    assert_download(&r, &large, "large.bin");
    assert_eq!(r.header("vary"), Some("Accept"));
    // ...which stays JSON (base64 for binary) for every other Accept.
    for accept in ["*/*", "application/json"] {
        let r = f.get_accept("/api/files/read?path=small.bin", accept);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(r.json()["encoding"], "base64");
    }
    // An explicit root works as on the JSON route.
    let repo = f.repo.display().to_string();
    let r = f.get(&format!(
        "/api/files/raw?root={}&path=sub/large.bin",
        enc(&repo)
    ));
    assert_download(&r, &large, "large.bin");
}

#[test]
fn raw_reads_follow_the_json_reads_rules() {
    let f = Fixture::start("");
    // Over the API's size limit: 413 on both routes.
    let big = vec![b'x'; 5 * 1024 * 1024 + 1];
    write_file(&f.repo.join("big.txt"), &big, 0o644);
    // Not regular files: a directory and a FIFO (which must not hang).
    nix::unistd::mkfifo(
        &f.repo.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    symlink("a.txt", f.repo.join("inside-link")).unwrap();
    // A hard link to a file outside: the one-link check refuses it.
    std::fs::hard_link(f.outside.join("secret.txt"), f.repo.join("hard-secret")).unwrap();
    symlink("../outside/secret.txt", f.repo.join("out-link")).unwrap();
    files_support::give_to_server(&f.repo);
    for (path, status) in [
        ("big.txt", 413),
        ("sub", 400),
        ("fifo", 400),
        ("missing", 404),
        ("hard-secret", 403),
        ("out-link", 0),
        ("../outside/secret.txt", 0),
    ] {
        let json = f.get(&format!("/api/files/read?path={}", enc(path)));
        let raw = f.get(&format!("/api/files/raw?path={}", enc(path)));
        assert_refused(&raw, path);
        assert_eq!(
            raw.status,
            json.status,
            "{path}: {} vs {}",
            raw.text(),
            json.text()
        );
        assert_eq!(raw.error(), json.error(), "{path}");
        if status != 0 {
            assert_eq!(raw.status, status, "{path}: {}", raw.text());
        }
    }
    // Control: a link that stays inside is followed, as on the JSON route.
    let r = f.get("/api/files/raw?path=inside-link");
    assert_download(&r, b"hello a", "inside-link");
    // Control: the same hard link is served once its outside name is gone.
    std::fs::remove_file(f.repo.join("hard-secret")).unwrap();
    write_file(&f.outside.join("linked.bin"), b"was outside", 0o666);
    std::fs::hard_link(f.outside.join("linked.bin"), f.repo.join("linked.bin")).unwrap();
    assert_eq!(f.get("/api/files/raw?path=linked.bin").status, 403);
    std::fs::remove_file(f.outside.join("linked.bin")).unwrap();
    assert_download(
        &f.get("/api/files/raw?path=linked.bin"),
        b"was outside",
        "linked.bin",
    );
    // An unknown root is refused, not guessed.
    let r = f.get(&format!("/api/files/raw?root={}&path=passwd", enc("/etc")));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!r.text().contains(SECRET));
    f.assert_outside_intact();
}
