//! Every credential kind against every route that exists, the login rate
//! limit, the browser checks, and what never reaches a log line.

use crate::common;

use std::net::Ipv4Addr;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// Owner-only routes: (method, path).
const OWNER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/auth/check"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/logout-all"),
    ("GET", "/api/files/raw?path=a.txt"),
    ("GET", "/api/sessions/2026-01-02-0123456789ab/review"),
    ("POST", "/api/sessions/2026-01-02-0123456789ab/merge"),
];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(alg: Algorithm, secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn claims(exp_offset: i64, epoch: u64) -> serde_json::Value {
    json!({"sub": "owner", "jti": format!("{:032x}", rand_u128()), "iat": now(), "exp": now() + exp_offset, "epoch": epoch})
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u128::from_le_bytes(b)
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn call(s: &TestServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut h = headers.to_vec();
    let origin = format!("http://127.0.0.1:{}", s.port);
    if method != "GET" {
        h.push(("Origin", &origin));
        h.push(("Content-Type", "application/json"));
        return request(s.addr(), method, path, &h, b"{}");
    }
    request(s.addr(), method, path, &h, b"")
}

/// (name, request headers, expected status)
type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16);

#[test]
fn credential_matrix_on_owner_routes() {
    let s = TestServer::start_default();
    let internal = s.internal_token();
    let secret = JWT_SECRET.as_bytes();
    let expired = sign(Algorithm::HS256, secret, &claims(-3600, 0));
    let bad_sig = sign(
        Algorithm::HS256,
        b"another-secret-another-secret-another-secret",
        &claims(3600, 0),
    );
    let hs512 = sign(Algorithm::HS512, secret, &claims(3600, 0));
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(3600, 0).to_string().as_bytes())
    );
    let no_sub = sign(
        Algorithm::HS256,
        secret,
        &json!({"jti": "x", "iat": now(), "exp": now() + 3600, "epoch": 0}),
    );

    let cases: Vec<Case> = vec![
        ("no credential", vec![], 401),
        (
            "wrong internal token",
            vec![("X-Internal-Token", "ab".repeat(32))],
            401,
        ),
        (
            "wrong bearer hex",
            vec![("Authorization", format!("Bearer {}", "cd".repeat(32)))],
            401,
        ),
        (
            "garbage bearer",
            vec![("Authorization", "Bearer garbage".into())],
            401,
        ),
        (
            "basic auth",
            vec![("Authorization", "Basic YTpi".into())],
            401,
        ),
        (
            "expired JWT",
            vec![("Authorization", format!("Bearer {expired}"))],
            401,
        ),
        (
            "alg none",
            vec![("Authorization", format!("Bearer {alg_none}"))],
            401,
        ),
        (
            "bad signature",
            vec![("Authorization", format!("Bearer {bad_sig}"))],
            401,
        ),
        (
            "HS512 with the right secret",
            vec![("Authorization", format!("Bearer {hs512}"))],
            401,
        ),
        (
            "no sub claim",
            vec![("Authorization", format!("Bearer {no_sub}"))],
            401,
        ),
        (
            "expired JWT in cookie",
            vec![("Cookie", format!("cc_auth={expired}"))],
            401,
        ),
        (
            "unknown session token",
            vec![("Authorization", format!("Bearer mzs_{}", "00".repeat(32)))],
            401,
        ),
        (
            "internal token (header) on owner route",
            vec![("X-Internal-Token", internal.clone())],
            403,
        ),
        (
            "internal token (bearer) on owner route",
            vec![("Authorization", format!("Bearer {internal}"))],
            403,
        ),
    ];
    for (method, path) in OWNER_ROUTES {
        for (name, headers, want) in &cases {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = call(&s, method, path, &h);
            assert_eq!(r.status, *want, "{name} on {method} {path}: {}", r.text());
            assert!(!r.error().is_empty(), "{name}: JSON error body");
        }
    }
}

#[test]
fn tokens_in_query_strings_are_rejected_everywhere() {
    let s = TestServer::start_default();
    let jwt = s.login();
    let internal = s.internal_token();
    let paths = [
        format!("/api/auth/check?token={jwt}"),
        format!("/api/auth/check?x={jwt}"),
        format!("/api/version?internal_token={internal}"),
        format!("/healthz?k={internal}"),
        "/api/auth/check?access_token=abc".to_string(),
        "/api/auth/check?%74oken=abc".to_string(),
        format!("/api/no-such-route?session_token=mzs_{}", "00".repeat(32)),
        format!("/ws/chat?cc_auth={jwt}"),
    ];
    for p in &paths {
        // Even with a valid header credential: the URL is the problem.
        let r = s.get(p, &[("Authorization", &format!("Bearer {jwt}"))]);
        assert_eq!(r.status, 400, "{p}: {}", r.text());
        assert!(r.error().contains("headers only"), "{p}: {}", r.error());
    }
    // A harmless query is fine.
    assert_eq!(s.get("/api/version?pretty=1", &[]).status, 200);
}

#[test]
fn login_logout_and_logout_all_persist_across_restart() {
    let mut s = TestServer::start_default();
    let origin = format!("http://127.0.0.1:{}", s.port);
    let r = s.post(
        "/api/auth/login",
        &[("Origin", &origin)],
        &format!("{{\"passphrase\":\"{PASSPHRASE}\"}}"),
    );
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(cookie.starts_with("cc_auth="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http without public_url https: no Secure"
    );
    let a = r.json()["token"].as_str().unwrap().to_string();
    let b = s.login();
    let c = s.login();
    let bearer = |t: &str| format!("Bearer {t}");
    for t in [&a, &b, &c] {
        assert_eq!(
            s.get("/api/auth/check", &[("Authorization", &bearer(t))])
                .status,
            200
        );
    }
    // Cookie auth works for GET.
    let cookie_pair = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        s.get("/api/auth/check", &[("Cookie", &cookie_pair)]).status,
        200
    );

    // Logout revokes only that jti.
    let r = call(
        &s,
        "POST",
        "/api/auth/logout",
        &[("Authorization", &bearer(&a))],
    );
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        s.get("/api/auth/check", &[("Authorization", &bearer(&a))])
            .status,
        401
    );
    assert_eq!(
        s.get("/api/auth/check", &[("Authorization", &bearer(&b))])
            .status,
        200
    );

    s.restart();
    assert_eq!(
        s.get("/api/auth/check", &[("Authorization", &bearer(&a))])
            .status,
        401,
        "revocation persisted"
    );
    assert_eq!(
        s.get("/api/auth/check", &[("Authorization", &bearer(&b))])
            .status,
        200
    );

    // Logout-all kills every earlier token, including the caller's.
    assert_eq!(
        call(
            &s,
            "POST",
            "/api/auth/logout-all",
            &[("Authorization", &bearer(&b))]
        )
        .status,
        200
    );
    for t in [&b, &c] {
        assert_eq!(
            s.get("/api/auth/check", &[("Authorization", &bearer(t))])
                .status,
            401
        );
    }
    s.restart();
    for t in [&b, &c] {
        assert_eq!(
            s.get("/api/auth/check", &[("Authorization", &bearer(t))])
                .status,
            401,
            "epoch persisted"
        );
    }
    let d = s.login();
    assert_eq!(
        s.get("/api/auth/check", &[("Authorization", &bearer(&d))])
            .status,
        200,
        "new logins work"
    );
}

#[test]
fn wrong_passphrase_and_bad_bodies() {
    let s = TestServer::start_default();
    let r = s.post("/api/auth/login", &[], r#"{"passphrase":"wrong"}"#);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "wrong passphrase");
    let r = s.post("/api/auth/login", &[], "not json");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!r.error().is_empty());
    let r = s.post("/api/auth/login", &[], r#"{"passphrase":"x","extra":1}"#);
    assert!(r.status == 400 || r.status == 422, "{}", r.text());
    assert!(
        r.error().contains("extra"),
        "names the field: {}",
        r.error()
    );
    // A huge declared length is refused at once, before any handler runs,
    // also on a route that never reads its body.
    for path in ["/api/auth/login", "/api/auth/logout"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            s.port,
            64 * 1024 * 1024
        );
        let r = request_raw(s.addr(), head.as_bytes());
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        assert!(r.error().contains("larger than"), "{}", r.error());
    }
    // A client that sends the whole oversized body still reads its 413.
    let big = format!("{{\"passphrase\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let r = s.post("/api/auth/login", &[], &big);
    assert_eq!(r.status, 413, "{}", r.text());
    // Just under the limit is read (and rejected for what it says).
    let almost = format!("{{\"passphrase\":\"{}\"}}", "a".repeat(1024 * 1024 - 100));
    let r = s.post("/api/auth/login", &[], &almost);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s.get("/api/nope", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "no such route");
    let r = request(s.addr(), "DELETE", "/api/version", &[], b"");
    assert_eq!(r.status, 405);
    assert!(!r.error().is_empty());
}

#[test]
fn login_rate_limit_per_client_and_global_backoff() {
    let s = TestServer::start_default();
    let wrong = br#"{"passphrase":"wrong"}"#;
    let post_from = |ip: Ipv4Addr, body: &[u8]| {
        request_from(
            ip,
            s.addr(),
            "POST",
            "/api/auth/login",
            &[("Content-Type", "application/json")],
            body,
        )
    };
    let a = Ipv4Addr::new(127, 0, 0, 11);
    for i in 0..5 {
        assert_eq!(post_from(a, wrong).status, 401, "attempt {i}");
    }
    let r = post_from(a, wrong);
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Even the right passphrase waits: the limit counts attempts.
    let right = format!("{{\"passphrase\":\"{PASSPHRASE}\"}}");
    assert_eq!(post_from(a, right.as_bytes()).status, 429);

    // Another address is not limited by the first one's bucket...
    let b = Ipv4Addr::new(127, 0, 0, 12);
    for _ in 0..4 {
        assert_eq!(post_from(b, wrong).status, 401);
    }
    // ...but 10 failures in a row (5 + 4 + this one) trip the global backoff.
    let c = Ipv4Addr::new(127, 0, 0, 13);
    assert_eq!(post_from(c, wrong).status, 401);
    let d = Ipv4Addr::new(127, 0, 0, 14);
    let r = post_from(d, right.as_bytes());
    assert_eq!(
        r.status,
        429,
        "global backoff applies to a fresh address: {}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());
}

/// 200 wrong logins at once from 40 loopback addresses (5 each, within the
/// per-address limit): each attempt takes its slot before argon2 runs, so
/// at most 10 are verified (401; a refused one is 429 and never reaches
/// argon2), the global lock engages at the 10th failure, and then even the
/// right passphrase is refused.
#[test]
fn concurrent_wrong_logins_are_bounded_by_the_global_lock() {
    let s = TestServer::start_default();
    let addr = s.addr();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200u8)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let ip = Ipv4Addr::new(127, 0, 0, 100 + i % 40);
                barrier.wait();
                request_from(
                    ip,
                    addr,
                    "POST",
                    "/api/auth/login",
                    &[("Content-Type", "application/json")],
                    br#"{"passphrase":"wrong"}"#,
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let verified = statuses.iter().filter(|&&c| c == 401).count();
    let refused = statuses.iter().filter(|&&c| c == 429).count();
    eprintln!("200 concurrent wrong logins: {verified} verified (401), {refused} refused (429)");
    assert_eq!(verified + refused, 200, "{statuses:?}");
    assert!(
        (1..=10).contains(&verified),
        "{verified} attempts reached argon2"
    );
    // Every verification that failed is logged once: the same count.
    let logged = s.log_text().matches("login failed").count();
    assert_eq!(logged, verified, "{}", s.log_text());
    let right = format!("{{\"passphrase\":\"{PASSPHRASE}\"}}");
    let r = request_from(
        Ipv4Addr::new(127, 0, 0, 99),
        addr,
        "POST",
        "/api/auth/login",
        &[("Content-Type", "application/json")],
        right.as_bytes(),
    );
    assert_eq!(r.status, 429, "locked: {}", r.text());
    assert!(r.header("retry-after").is_some());
}

#[test]
fn host_allow_list_defeats_dns_rebinding() {
    let s = TestServer::start_with(Options {
        extra_toml: "allowed_hosts = [\"box.example.ts.net\"]\n".into(),
        ..Options::default()
    });
    let port = s.port;
    for ok in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "box.example.ts.net".into(),
        "BOX.example.ts.net:3100".into(),
    ] {
        assert_eq!(s.get("/healthz", &[("Host", &ok)]).status, 200, "{ok}");
    }
    for bad in [
        format!("evil.example:{port}"),
        "attacker.test".into(),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let r = s.get("/api/version", &[("Host", &bad)]);
        assert_eq!(r.status, 403, "{bad}: {}", r.text());
        assert!(r.error().contains("not allowed"));
    }
}

#[test]
fn origin_checks_on_state_changes() {
    let s = TestServer::start_default();
    let jwt = s.login();
    let cookie = format!("cc_auth={jwt}");
    let own = format!("http://127.0.0.1:{}", s.port);
    let post = |headers: &[(&str, &str)]| {
        let mut h = headers.to_vec();
        h.push(("Content-Type", "application/json"));
        request(s.addr(), "POST", "/api/auth/logout", &h, b"{}")
    };
    // Cookie without Origin: refused.
    let r = post(&[("Cookie", &cookie)]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.error().contains("Origin"));
    // Cookie with a foreign Origin: refused.
    assert_eq!(
        post(&[("Cookie", &cookie), ("Origin", "https://evil.example")]).status,
        403
    );
    assert_eq!(post(&[("Cookie", &cookie), ("Origin", "null")]).status, 403);
    // A foreign Origin is refused even with a bearer token.
    assert_eq!(
        post(&[
            ("Authorization", &format!("Bearer {jwt}")),
            ("Origin", "https://evil.example")
        ])
        .status,
        403
    );
    // WebSocket upgrade with a cookie and no Origin: refused.
    let r = s.get(
        "/api/auth/check",
        &[
            ("Cookie", &cookie),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
        ],
    );
    assert_eq!(r.status, 403);
    // Sec-Fetch-Site: same-origin stands in for a missing Origin.
    assert_eq!(
        post(&[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")]).status,
        200
    );
    // Our own origin works (a fresh token: the one above was just revoked).
    let jwt2 = s.login();
    assert_eq!(
        post(&[("Cookie", &format!("cc_auth={jwt2}")), ("Origin", &own)]).status,
        200
    );
    // Bearer without Origin (scripts, curl): fine.
    let jwt3 = s.login();
    assert_eq!(
        post(&[("Authorization", &format!("Bearer {jwt3}"))]).status,
        200
    );
}

#[test]
fn public_url_origin_and_tls_headers() {
    let s = TestServer::start_with(Options {
        extra_toml: "public_url = \"https://box.example.ts.net:3100\"\n".into(),
        ..Options::default()
    });
    let r = s.post(
        "/api/auth/login",
        &[
            ("Origin", "https://box.example.ts.net:3100"),
            ("Host", "box.example.ts.net:3100"),
        ],
        &format!("{{\"passphrase\":\"{PASSPHRASE}\"}}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("set-cookie").unwrap().contains("; Secure"),
        "Secure behind https"
    );
    assert!(
        r.header("strict-transport-security").is_some(),
        "HSTS behind https"
    );
}

/// A client that goes away while argon2 checks its passphrase still has
/// its failure counted: 9 wrong logins answered, then one whose client
/// hangs up at once; that 10th failure engages the global lock, so the
/// right passphrase is then refused. (Had it not counted, it would log in.)
#[test]
fn a_login_abandoned_mid_verification_still_counts() {
    use std::io::Write;
    let s = TestServer::start_default();
    let wrong = br#"{"passphrase":"wrong"}"#;
    let from = |ip: Ipv4Addr, body: &[u8]| {
        request_from(
            ip,
            s.addr(),
            "POST",
            "/api/auth/login",
            &[("Content-Type", "application/json")],
            body,
        )
    };
    for i in 0..9u8 {
        let r = from(Ipv4Addr::new(127, 0, 2, 1 + i / 4), wrong);
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
    // The 10th wrong attempt hangs up once it is sent. hyper may drop it
    // before its handler takes a slot (then no passphrase was checked and
    // nothing is counted: try again from another address) or while argon2
    // checks it, which is the case under test.
    let mut gone = None;
    for k in 0..20u8 {
        let ip = Ipv4Addr::new(127, 0, 2, 51 + k);
        let mut c = connect_from(ip, s.addr());
        let req = format!(
            "POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            s.port,
            wrong.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        c.write_all(wrong).unwrap();
        // Hang up (our side), then wait for the server to drop the
        // connection.
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c, &mut answer);
        assert!(
            answer.is_empty(),
            "answered, not abandoned: {}",
            String::from_utf8_lossy(&answer)
        );
        // The log line comes before argon2 starts; give the log a moment
        // to show it (an attempt still checking would make the next one
        // "busy").
        let checked = format!("peer={ip}");
        let reached = (0..100).any(|_| {
            let hit = s
                .log_text()
                .lines()
                .any(|l| l.contains("checking a passphrase") && l.trim_end().ends_with(&checked));
            if !hit {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            hit
        });
        if reached {
            gone = Some(ip);
            break;
        }
    }
    let gone = [gone.expect("no abandoned attempt reached the passphrase check in 20 tries")];
    // While it is verified the limiter answers "busy" (Retry-After 1); then
    // the lock (30 s), or 200 had it not been counted.
    let mut answer = None;
    for i in 0..1000u32 {
        let r = from(
            Ipv4Addr::new(127, 0, 3 + (i / 200) as u8, 1 + (i % 200) as u8),
            format!("{{\"passphrase\":\"{PASSPHRASE}\"}}").as_bytes(),
        );
        let busy = r.status == 429 && r.header("retry-after") == Some("1");
        if !busy {
            answer = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = answer.expect("the abandoned attempt never finished");
    assert_eq!(
        r.status,
        429,
        "the abandoned failure was not counted: {}",
        r.text()
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 1, "the global lock: {retry}");
    // They were abandoned: their handlers never got to log the failure.
    let log = s.log_text();
    for ip in gone {
        assert!(
            !log.lines()
                .any(|l| l.contains("login failed") && l.contains(&ip.to_string())),
            "{ip} was answered, not abandoned: {log}"
        );
    }
}

/// The route paths under `/api` and `/ws` in the router's source
/// (`server/src/http/*.rs`: each `.route("PATH", ...)`).
fn api_routes_in_source() -> std::collections::BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for (i, _) in text.match_indices(".route(") {
            let rest = text[i + ".route(".len()..].trim_start();
            if let Some(lit) = rest.strip_prefix('"') {
                let path = &lit[..lit.find('"').unwrap()];
                if path.starts_with("/api/") || path.starts_with("/ws/") {
                    out.insert(path.to_string());
                }
            }
        }
    }
    out
}

/// Every API route mitzod serves, without any credential: only the login,
/// `/healthz`, `/api/version` and the one-tap endpoint (whose credential is
/// the capability it carries) answer anything but 401. The list is checked
/// against the router's source, so a new route must be added here.
#[test]
fn every_other_route_needs_a_credential() {
    let s = TestServer::start_default();
    let open = [
        ("GET", "/healthz", "", 200),
        ("GET", "/api/version", "", 200),
        ("POST", "/api/auth/login", r#"{"passphrase":"wrong"}"#, 401),
        (
            "POST",
            "/api/permission/{perm_id}/respond",
            r#"{"decision":"deny"}"#,
            403,
        ),
    ];
    let closed = [
        ("POST", "/api/auth/logout"),
        ("POST", "/api/auth/logout-all"),
        ("GET", "/api/auth/check"),
        ("GET", "/api/files/roots"),
        ("GET", "/api/files/list"),
        ("GET", "/api/files/read"),
        ("GET", "/api/files/raw"),
        ("PUT", "/api/files/write"),
        ("GET", "/api/repos"),
        ("POST", "/api/repos/open"),
        ("POST", "/api/repos/fetch"),
        ("POST", "/api/repos/close"),
        ("GET", "/api/config"),
        ("POST", "/api/sessions"),
        ("GET", "/api/sessions"),
        ("GET", "/api/sessions/active"),
        ("GET", "/api/sessions/{id}/meta"),
        ("GET", "/api/sessions/{id}/events"),
        ("DELETE", "/api/sessions/{id}"),
        ("PATCH", "/api/sessions/{id}"),
        ("GET", "/api/sessions/{id}/review"),
        ("POST", "/api/sessions/{id}/merge"),
        ("POST", "/api/chat/permission"),
        ("GET", "/api/audit"),
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks/{id}"),
        ("PATCH", "/api/tasks/{id}"),
        ("DELETE", "/api/tasks/{id}"),
        ("POST", "/api/tasks/{id}/approve"),
        ("POST", "/api/tasks/{id}/reject"),
        ("POST", "/api/internal/task-tools/set"),
        ("POST", "/api/internal/task-tools/complete"),
        ("GET", "/api/internal/task-tools/status"),
        ("POST", "/api/internal/task-tools/block"),
        ("POST", "/api/internal/task-tools/artifact"),
        ("POST", "/api/signals/resolve"),
        ("GET", "/ws/chat"),
    ];
    let listed: std::collections::BTreeSet<String> = open
        .iter()
        .map(|r| r.1)
        .chain(closed.iter().map(|r| r.1))
        .map(String::from)
        .collect();
    let source = api_routes_in_source();
    let unlisted: Vec<_> = source.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "routes this test does not list: {unlisted:?}"
    );
    let gone: Vec<_> = listed
        .iter()
        .filter(|p| *p != "/healthz" && !source.contains(*p))
        .collect();
    assert!(
        gone.is_empty(),
        "listed, not in the router's source: {gone:?}"
    );
    let concrete = |template: &str| {
        let p = template
            .replace("{id}", "2026-01-01-000000000000")
            .replace("{perm_id}", "p1");
        if p.starts_with("/api/files/") && p != "/api/files/roots" && p != "/api/files/write" {
            format!("{p}?path=a&dir=.")
        } else {
            p
        }
    };
    let h = [("Content-Type", "application/json")];
    for (method, path, body, want) in open {
        let r = request(s.addr(), method, &concrete(path), &h, body.as_bytes());
        assert_eq!(r.status, want, "{method} {path}: {}", r.text());
    }
    for (method, path) in closed {
        let r = request(s.addr(), method, &concrete(path), &h, b"{}");
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
    }
    // They exist as listed: with a credential, a listed route answers.
    let internal = s.internal_token();
    let r = s.get("/api/sessions", &[("X-Internal-Token", &internal)]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn security_headers_on_every_response() {
    let s = TestServer::start_default();
    let mut answers = Vec::new();
    for (path, status) in [
        ("/healthz", 200),
        ("/api/version", 200),
        ("/api/auth/check", 401),
        ("/nope", 404),
    ] {
        answers.push((path.to_string(), s.get(path, &[]), status));
    }
    // The guards' refusals: a foreign Host (DNS rebinding), a foreign Origin.
    answers.push((
        "foreign Host".into(),
        s.get("/api/version", &[("Host", "evil.example")]),
        403,
    ));
    answers.push((
        "foreign Origin".into(),
        s.post(
            "/api/auth/logout",
            &[("Origin", "https://evil.example")],
            "{}",
        ),
        403,
    ));
    // A body over the limit, refused by its declared length.
    let head = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.port,
        64 * 1024 * 1024
    );
    answers.push(("413".into(), request_raw(s.addr(), head.as_bytes()), 413));
    // The login limiter (5 a minute per address).
    let wrong = br#"{"passphrase":"wrong"}"#;
    let login = || {
        request_from(
            Ipv4Addr::new(127, 0, 0, 31),
            s.addr(),
            "POST",
            "/api/auth/login",
            &[("Content-Type", "application/json")],
            wrong,
        )
    };
    for i in 0..5 {
        assert_eq!(login().status, 401, "attempt {i}");
    }
    answers.push(("429".into(), login(), 429));
    for (what, r, status) in &answers {
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        assert!(
            r.header("content-security-policy")
                .unwrap_or_else(|| panic!("{what}: no CSP"))
                .contains("default-src 'none'"),
            "{what}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        assert!(
            r.header("content-type")
                .unwrap_or_else(|| panic!("{what}: no content type"))
                .starts_with("application/json"),
            "{what}"
        );
        assert!(
            r.header("strict-transport-security").is_none(),
            "no HSTS over plain http"
        );
    }
    // An over-long URI: hyper answers 414 itself, with an empty body.
    let long = format!(
        "GET /api/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        "a".repeat(70_000),
        s.port
    );
    let r = request_raw(s.addr(), long.as_bytes());
    eprintln!("long URI: {} {:?}", r.status, r.headers);
    assert_eq!(r.status, 414);
    assert!(r.body.is_empty(), "{}", r.text());
    let v = s.get("/api/version", &[]).json();
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["commit", "version"], "version says nothing else");
}

#[test]
fn no_secret_reaches_the_log() {
    let mut s = TestServer::start_with(Options {
        env: vec![("MITZO_LOG".into(), "trace".into())],
        ..Options::default()
    });
    let jwt = s.login();
    let internal = s.internal_token();
    let _ = s.post(
        "/api/auth/login",
        &[],
        r#"{"passphrase":"a-wrong-guess-xyzzy"}"#,
    );
    let _ = s.get(
        "/api/auth/check",
        &[("Authorization", &format!("Bearer {jwt}"))],
    );
    let _ = s.get("/api/auth/check", &[("Cookie", &format!("cc_auth={jwt}"))]);
    let _ = s.get("/api/auth/check", &[("X-Internal-Token", &internal)]);
    let _ = s.get(&format!("/api/auth/check?token={jwt}"), &[]);
    let _ = s.get(&format!("/api/auth/check?k={internal}"), &[]);
    // A credential pasted into the path: only the route template is logged.
    let auth = [("X-Internal-Token", internal.as_str())];
    let _ = s.get(&format!("/api/sessions/{internal}/meta"), &auth);
    let _ = s.get(&format!("/api/tasks/{internal}"), &auth);
    let _ = s.get(&format!("/api/no-such-route/{internal}"), &auth);
    let _ = s.get(&format!("/api/sessions/{jwt}/events"), &auth);
    let _ = s.get("/api/sessions/2026-01-02-0123456789ab/meta", &auth);
    s.stop();
    let log = s.log_text();
    assert!(
        log.contains("/api/auth/check"),
        "requests are logged: {log}"
    );
    assert!(
        log.contains("/api/sessions/{id}/meta") && log.contains("id=2026-01-02-0123456789ab"),
        "the matched route and a plain id are logged: {log}"
    );
    assert!(log.contains("<no route>"), "{log}");
    let jwt_sig = jwt.rsplit('.').next().unwrap();
    for (name, secret) in [
        ("passphrase", PASSPHRASE),
        ("wrong passphrase", "a-wrong-guess-xyzzy"),
        ("JWT signature", jwt_sig),
        ("internal token", internal.as_str()),
        ("JWT secret", JWT_SECRET),
    ] {
        assert!(!log.contains(secret), "{name} leaked into the log");
    }
}

#[test]
fn config_errors_name_the_key() {
    let s = TestServer::new(Options {
        extra_toml: "[agent]\ncomand = \"claude\"\n".into(),
        ..Options::default()
    });
    let out = s.cli(&["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("comand"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");

    let good = TestServer::new(Options::default());
    let out = std::process::Command::new(mitzod_bin())
        .args(["check-config", "--config"])
        .arg(&good.config)
        .env("MITZOD_COOKIE_MAX_AGE_HOURS", "99999")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cookie_max_age_hours"));
}

#[test]
fn weak_or_example_jwt_secrets_are_refused() {
    for (content, needle) in [
        ("short-secret", "at least 32"),
        (
            "change-me-to-a-long-random-string-of-at-least-32-bytes",
            "example value",
        ),
    ] {
        let s = TestServer::new(Options::default());
        std::fs::write(s.dir.path().join("jwt-secret"), content).unwrap();
        let out = s.command().output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains(content), "the secret itself is not echoed");
        assert!(!s.state_dir.exists(), "nothing touched");
    }
    let s = TestServer::new(Options::default());
    std::fs::remove_file(s.dir.path().join("jwt-secret")).unwrap();
    let out = s.command().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("jwt_secret_file"));
}

#[test]
fn check_config_accepts_a_good_config_and_hash_passphrase_round_trips() {
    let s = TestServer::new(Options::default());
    let out = s.cli(&["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = std::process::Command::new(mitzod_bin())
        .arg("hash-passphrase")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"my new passphrase\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    // The printed hash logs in with that passphrase.
    let s = TestServer::start_with(Options {
        env: vec![("MITZOD_PASSPHRASE_HASH".into(), phc)],
        ..Options::default()
    });
    assert_eq!(
        s.post(
            "/api/auth/login",
            &[],
            r#"{"passphrase":"my new passphrase"}"#
        )
        .status,
        200
    );
    assert_eq!(
        s.post(
            "/api/auth/login",
            &[],
            &format!("{{\"passphrase\":\"{PASSPHRASE}\"}}")
        )
        .status,
        401
    );
}
