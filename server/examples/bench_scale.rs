//! Scale benchmark: 100 sessions and one million events in the database.
//!
//!   cargo build --release -p mitzod --bins --examples
//!   nice -n 10 target/release/examples/bench_scale
//!
//! The history is written through mitzod's own store API (`store::insert`,
//! `store::insert_event`) with frames made by the protocol's own types: a
//! turn of 13 events (prompt, states, a text block, a tool call with its
//! permission request and decision, the tool's output, the result), 10,000
//! events a session, spread over the last 60 days. Then, against the
//! release `mitzod` (`MITZO_BIN`, else next to this example), each figure
//! next to its floor from the same run, where one exists:
//!
//! - `GET /api/sessions` (50 a page): p50/p99 over 500 requests; floor: the
//!   same `store::list` in this process on its own connection.
//! - Opening a session at its end as the page does (`/meta`, then
//!   `events?before=` 300): p50/p99 over the 100 sessions (the first open
//!   loads the session), then again; floor: `store::get` + `events_before`.
//! - Replaying 10,000 events: a WebSocket `reconnect` with `lastSeq` 0, to
//!   `reconnected`; floor: `store::events` of the same rows.
//! - RSS: idle after start with this database; with the 100 sessions
//!   loaded; with the 100 sessions idle after a turn each (the fake agent,
//!   `server/tests/fixtures/fake_agent.py`, under the real sandbox).
//! - Retention with its defaults (30 days, 64 MiB): the database file
//!   before and after the start-up pass, and the pass's time; floor: the
//!   bytes of the frames the file holds.
//!
//! Needs Landlock (the agents run sandboxed). As root the server drops to
//! `nobody`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

mod bench_support;

use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use mitzo_protocol::{
    BlockType, DecidedBy, Mode, Outcome, ServerEvent, ServerFrame, SessionState, Tier,
};
use mitzod::db::Db;
use mitzod::sessions::store::{self, SessionRow};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use bench_support::{
    login, machine, mitzod_bin, open_tempdir, percentile, read_response, result, rss_kib,
    write_config, Server,
};

const SESSIONS: usize = 100;
const EVENTS_PER_SESSION: u64 = 10_000;
const DAY_MS: i64 = 86_400_000;
const LIST_REQUESTS: usize = 500;
const REPLAYS: usize = 5;

fn main() {
    let bin = mitzod_bin();
    let abi = mitzo_sandbox::landlock_abi();
    assert!(
        abi.supported(),
        "Landlock is needed: the agents run under the real sandbox ({abi})"
    );
    let dir = open_tempdir("mitzod-bench-scale-");
    let repo = mitzo_testkit::git::make_repo(dir.path());
    let agent = mitzo_testkit::agent::install_fake_agent(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = |retention: &str| {
        write_config(
            dir.path(),
            &format!(
                "repo_path = \"{}\"\nlisten = [\"{addr}\"]\n\n[session]\nisolation = false\n{retention}\n[agent]\ncommand = \"{}\"",
                repo.display(),
                agent.display(),
            ),
        )
    };
    println!("{}", machine());
    println!("{abi}");
    println!("mitzod {}", bin.display());

    // The state dir as mitzod makes it, then the history.
    let no_retention = "retain_days = 36500\nretain_mb = 1000000\n";
    let cfg = config(no_retention);
    let mut server = Server::start(&bin, dir.path(), &cfg, addr);
    server.stop();
    let db_path = dir.path().join("state").join(mitzod::state::DATABASE_FILE);
    let started = Instant::now();
    let ids = seed(&db_path, &repo);
    println!(
        "seeded {SESSIONS} sessions x {EVENTS_PER_SESSION} events in {:.1} s through the store API",
        started.elapsed().as_secs_f64()
    );
    let frame_bytes = |db: &Db| -> i64 {
        db.with(|c| {
            Ok(c.query_row(
                "SELECT SUM(length(CAST(frame AS BLOB))) FROM events",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap()
    };
    let size_seeded = file_size(&db_path);

    let started = Instant::now();
    server = Server::start(&bin, dir.path(), &cfg, addr);
    // Opened after mitzod, which owns the files (it runs as `nobody` as root).
    let reader = Db::open(&db_path).expect("open the database");
    let bytes_seeded = frame_bytes(&reader);
    let jwt = login(addr);
    let auth = format!("Authorization: Bearer {jwt}\r\n");
    let (status, _) = get(addr, "/api/sessions", &auth);
    assert_eq!(status, 200);
    let first_list_ms = started.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss_kib(server.pid());

    // GET /api/sessions.
    let mut conn = keep_alive(addr);
    for _ in 0..20 {
        request(&mut conn, addr, "/api/sessions", &auth);
    }
    let list_ms = timed(LIST_REQUESTS, || {
        let (status, body) = request(&mut conn, addr, "/api/sessions", &auth);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    });
    let list_floor_ms = timed(LIST_REQUESTS, || {
        let (rows, _) = reader.with(|c| store::list(c, 0, 50)).unwrap();
        assert_eq!(rows.len(), 50);
        std::hint::black_box(serde_json::to_vec(&rows).unwrap());
    });

    // Opening each session at its end, as the page does.
    let open = |conn: &mut BufReader<TcpStream>, id: &str| {
        let (status, body) = request(conn, addr, &format!("/api/sessions/{id}/meta"), &auth);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let meta: Value = serde_json::from_slice(&body).unwrap();
        let last = meta["lastSeq"].as_u64().unwrap();
        let path = format!("/api/sessions/{id}/events?before={}&limit=300", last + 1);
        let (status, body) = request(conn, addr, &path, &auth);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let page: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["events"].as_array().map(Vec::len), Some(300));
    };
    let mut it = ids.iter().cycle();
    let open_cold_ms = timed(SESSIONS, || open(&mut conn, it.next().unwrap()));
    let rss_loaded = rss_kib(server.pid());
    let open_warm_ms = timed(SESSIONS, || open(&mut conn, it.next().unwrap()));
    let open_floor_ms = timed(SESSIONS, || {
        let id = it.next().unwrap();
        reader
            .with(|c| {
                let row = store::get(c, id)?.expect("seeded row");
                let last = store::last_seq(c, id)?;
                let (page, _) = store::events_before(c, id, last + 1, 300)?;
                assert_eq!(page.len(), 300);
                let page: Vec<Value> = page
                    .iter()
                    .filter_map(|(_, f)| serde_json::from_str(f).ok())
                    .collect();
                std::hint::black_box(serde_json::to_vec(&(row, page)).unwrap());
                Ok(())
            })
            .unwrap()
    });

    // Replaying 10,000 events over the WebSocket.
    let mut replay_ms = Vec::new();
    for id in ids.iter().take(REPLAYS) {
        let mut ws = connect(port, &jwt);
        let t = Instant::now();
        send(
            &mut ws,
            json!({"type": "reconnect", "sessions": [{"sessionId": id, "lastSeq": 0}]}),
        );
        let mut n = 0u64;
        loop {
            let f = read_frame(&mut ws);
            if f["type"] == "reconnected" {
                break;
            }
            if f["seq"].as_u64() > Some(0) {
                n += 1;
            }
        }
        replay_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(n, EVENTS_PER_SESSION, "every event replayed");
        let _ = ws.close(None);
    }
    replay_ms.sort_by(f64::total_cmp);
    let replay_floor_ms = timed(REPLAYS, || {
        let rows = reader
            .with(|c| store::events(c, &ids[0], 1, u64::MAX, 100_000))
            .unwrap();
        assert_eq!(rows.len() as u64, EVENTS_PER_SESSION);
        std::hint::black_box(rows);
    });

    // 100 idle sessions: a turn each, then nobody watching.
    let mut ws = connect(port, &jwt);
    for id in &ids {
        send(
            &mut ws,
            json!({"type": "send", "sessionId": id, "prompt": "text:hi", "mode": "auto"}),
        );
    }
    let mut done = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.len() < ids.len() {
        assert!(Instant::now() < deadline, "{}", server.log_tail());
        let f = read_frame(&mut ws);
        if f["type"] == "result" {
            done.insert(f["sessionId"].as_str().unwrap_or("").to_string());
        }
    }
    let _ = ws.close(None);
    drop(ws);
    std::thread::sleep(Duration::from_secs(3));
    let rss_sessions = rss_kib(server.pid());
    let agents = count_agents(server.pid());
    server.stop();

    // Retention with its defaults, at the next start.
    let size_before = file_size(&db_path);
    let bytes_before = frame_bytes(&reader);
    drop(reader);
    let cfg = config("");
    let started = Instant::now();
    server = Server::start(&bin, dir.path(), &cfg, addr);
    let jwt = login(addr);
    let auth = format!("Authorization: Bearer {jwt}\r\n");
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let (status, body) = get(addr, "/api/sessions?limit=100", &auth);
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let marked = v["sessions"]
            .as_array()
            .map(|a| a.iter().filter(|s| s["historyCompacted"] == true).count())
            .unwrap_or(0);
        if marked == SESSIONS {
            break;
        }
        assert!(Instant::now() < deadline, "{}", server.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    let retention_s = started.elapsed().as_secs_f64();
    server.stop();
    let size_after = file_size(&db_path);
    let reader = Db::open(&db_path).expect("open the database");
    let bytes_after = frame_bytes(&reader);
    let events_after: i64 = reader
        .with(|c| Ok(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?))
        .unwrap();

    let mib = |b: u64| b as f64 / 1048576.0;
    let p = |v: &[f64], q| percentile(v, q);
    println!();
    println!(
        "first GET /api/sessions after start (start-up retention scan included): {first_list_ms:.0} ms"
    );
    println!(
        "GET /api/sessions (50 of 100):   p50 {:.2} ms  p99 {:.2} ms   floor store::list p50 {:.2} ms  p99 {:.2} ms   p99 ratio {:.1}x",
        p(&list_ms, 50.0),
        p(&list_ms, 99.0),
        p(&list_floor_ms, 50.0),
        p(&list_floor_ms, 99.0),
        p(&list_ms, 99.0) / p(&list_floor_ms, 99.0)
    );
    println!(
        "open at the end (meta + 300 before), first open: p50 {:.2} ms  p99 {:.2} ms; again: p50 {:.2} ms  p99 {:.2} ms   floor p50 {:.2} ms  p99 {:.2} ms",
        p(&open_cold_ms, 50.0),
        p(&open_cold_ms, 99.0),
        p(&open_warm_ms, 50.0),
        p(&open_warm_ms, 99.0),
        p(&open_floor_ms, 50.0),
        p(&open_floor_ms, 99.0),
    );
    println!(
        "replay of {EVENTS_PER_SESSION} events (WebSocket reconnect, lastSeq 0): median {:.0} ms   floor store::events median {:.0} ms   ratio {:.1}x",
        p(&replay_ms, 50.0),
        p(&replay_floor_ms, 50.0),
        p(&replay_ms, 50.0) / p(&replay_floor_ms, 50.0)
    );
    let per = |kib: u64| (kib as f64 - rss_idle as f64) / 1024.0 / SESSIONS as f64;
    println!(
        "RSS: idle {rss_idle} KiB; {SESSIONS} sessions loaded {rss_loaded} KiB ({:.2} MiB each); {SESSIONS} idle sessions after a turn, {agents} agents alive, {rss_sessions} KiB ({:.2} MiB each over idle)",
        per(rss_loaded),
        per(rss_sessions)
    );
    println!(
        "database: seeded {:.1} MiB file for {:.1} MiB of frames; before retention {:.1} MiB ({:.1} MiB of frames); after {:.1} MiB ({:.1} MiB of frames, {events_after} events); start to every session compacted {retention_s:.1} s",
        mib(size_seeded),
        mib(bytes_seeded as u64),
        mib(size_before),
        mib(bytes_before as u64),
        mib(size_after),
        mib(bytes_after as u64),
    );

    result(
        "scale: GET /api/sessions p99 (1M events)",
        &format!("{:.2} ms", p(&list_ms, 99.0)),
        &format!("store::list {:.2} ms", p(&list_floor_ms, 99.0)),
        &format!("{:.1}x", p(&list_ms, 99.0) / p(&list_floor_ms, 99.0)),
        "—",
    );
    result(
        "scale: open a session at its end, p99",
        &format!("{:.2} ms", p(&open_cold_ms, 99.0)),
        &format!("in-process {:.2} ms", p(&open_floor_ms, 99.0)),
        &format!("{:.1}x", p(&open_cold_ms, 99.0) / p(&open_floor_ms, 99.0)),
        "—",
    );
    result(
        "scale: replay 10,000 events (WebSocket)",
        &format!("{:.0} ms", p(&replay_ms, 50.0)),
        &format!("store::events {:.0} ms", p(&replay_floor_ms, 50.0)),
        &format!("{:.1}x", p(&replay_ms, 50.0) / p(&replay_floor_ms, 50.0)),
        "—",
    );
    result(
        "scale: RSS per idle session over idle",
        &format!("{:.2} MiB", per(rss_sessions)),
        &format!("idle {:.1} MiB", rss_idle as f64 / 1024.0),
        "",
        "≤ 1 MB",
    );
    result(
        "scale: database before → after retention",
        &format!("{:.0} → {:.0} MiB", mib(size_before), mib(size_after)),
        &format!("frames {:.0} MiB", mib(bytes_after as u64)),
        &format!("{:.2}x", size_after as f64 / bytes_after.max(1) as f64),
        "shrinks",
    );
}

/// 100 sessions of 10,000 events each, through the store API.
fn seed(db_path: &Path, repo: &Path) -> Vec<String> {
    let db = Db::open(db_path).expect("open the database");
    let now = mitzo_protocol::now_ms();
    let mut ids = Vec::new();
    for s in 0..SESSIONS {
        let id = format!("2026-01-01-{s:012x}");
        let row = SessionRow {
            id: id.clone(),
            source: "bench".into(),
            summary: format!("Session {s}"),
            title: format!("Session {s}"),
            mode: Mode::Auto,
            model: None,
            repo: repo.display().to_string(),
            repo_name: "repo".into(),
            cwd: repo.display().to_string(),
            branch: None,
            isolation: false,
            headless: false,
            agent_session_id: None,
            state: SessionState::Stopped,
            num_turns: 0,
            created_at: now - 60 * DAY_MS,
            last_modified: now - s as i64 * 1000,
            history_compacted: false,
        };
        db.with(|c| {
            let tx = c.transaction()?;
            store::insert(&tx, &row)?;
            let mut seq = 0u64;
            let mut t = 0u64;
            while seq < EVENTS_PER_SESSION {
                for e in turn(t) {
                    if seq == EVENTS_PER_SESSION {
                        break;
                    }
                    seq += 1;
                    // Spread over the last 60 days, oldest first.
                    let ts =
                        now - 60 * DAY_MS + (60 * DAY_MS) * seq as i64 / EVENTS_PER_SESSION as i64;
                    let kind = e.kind();
                    let frame = ServerFrame::new(Some(&id), seq, e).to_json();
                    store::insert_event(&tx, &id, seq, ts, kind, &frame)?;
                }
                t += 1;
            }
            tx.commit()?;
            Ok(())
        })
        .expect("seed");
        ids.push(id);
    }
    ids
}

/// One turn as mitzod stores it: 13 events.
fn turn(t: u64) -> Vec<ServerEvent> {
    let m1 = format!("msg_{t:08x}a");
    let m2 = format!("msg_{t:08x}b");
    let tool = format!("toolu_{t:016x}");
    let perm = format!("perm_{t:016x}");
    let text = format!(
        "Turn {t}: {}",
        "the change reads the config once and keeps it; ".repeat(6)
    );
    vec![
        ServerEvent::UserMessage {
            prompt: format!("Please look at part {t} of the code and fix what is wrong."),
            client_msg_id: None,
        },
        ServerEvent::SessionStateChanged {
            state: SessionState::Running,
        },
        ServerEvent::MessageStart {
            message_id: m1.clone(),
            model: Some("claude".into()),
        },
        ServerEvent::BlockStart {
            message_id: m1.clone(),
            index: 0,
            block_type: BlockType::Text,
            tool_name: None,
            tool_id: None,
        },
        ServerEvent::BlockEnd {
            message_id: m1.clone(),
            index: 0,
            block_type: BlockType::Text,
            text: Some(text.clone()),
            tool_name: None,
            tool_id: None,
            input: None,
            aborted: None,
        },
        ServerEvent::BlockStart {
            message_id: m2.clone(),
            index: 0,
            block_type: BlockType::ToolUse,
            tool_name: Some("Bash".into()),
            tool_id: Some(tool.clone()),
        },
        ServerEvent::BlockEnd {
            message_id: m2.clone(),
            index: 0,
            block_type: BlockType::ToolUse,
            text: None,
            tool_name: Some("Bash".into()),
            tool_id: Some(tool.clone()),
            input: Some(
                json!({"command": format!("cargo test part_{t}"), "description": "Run the tests"}),
            ),
            aborted: None,
        },
        ServerEvent::PermissionRequest {
            perm_id: perm.clone(),
            tool_name: "Bash".into(),
            title: "Run a command".into(),
            summary: format!("cargo test part_{t}"),
            diff: None,
            tool_input: json!({"command": format!("cargo test part_{t}")}),
            tier: Tier::Standard,
            expires_at: 0,
        },
        ServerEvent::PermissionResolved {
            perm_id: Some(perm),
            tool_name: "Bash".into(),
            decision: Outcome::Allow,
            by: DecidedBy::Owner,
            message: None,
            answers: None,
        },
        ServerEvent::ToolResult {
            tool_id: tool,
            result: json!(format!(
                "running 12 tests\n{}test result: ok. 12 passed; 0 failed\n",
                format!("test part_{t}::case ... ok\n").repeat(12)
            )),
            is_error: false,
        },
        ServerEvent::MessageEnd {
            message_id: m2,
            stop_reason: Some("end_turn".into()),
        },
        ServerEvent::Result {
            subtype: "success".into(),
            is_error: false,
            result: Some(text),
            num_turns: t as i64 + 1,
            cost_usd: Some(0.01),
        },
        ServerEvent::SessionStateChanged {
            state: SessionState::Idle,
        },
    ]
}

fn timed(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn file_size(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|s| {
            std::fs::metadata(format!("{}{s}", db.display()))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

fn keep_alive(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    BufReader::with_capacity(1 << 20, s)
}

fn request(
    conn: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    path: &str,
    headers: &str,
) -> (u16, Vec<u8>) {
    use std::io::Write;
    write!(
        conn.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n"
    )
    .unwrap();
    read_response(conn).unwrap()
}

fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, Vec<u8>) {
    bench_support::once(addr, "GET", path, headers, "")
}

fn connect(port: u16, jwt: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut req = format!("ws://127.0.0.1:{port}/ws/chat")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {jwt}").parse().unwrap());
    let (mut socket, _) = tungstenite::client(req, stream).expect("websocket handshake");
    let welcome = read_frame(&mut socket);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    socket
}

fn send(ws: &mut WebSocket<TcpStream>, frame: Value) {
    ws.send(Message::text(frame.to_string())).expect("send");
}

fn read_frame(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("websocket read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("a JSON frame"),
            Message::Close(c) => panic!("websocket closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Fake agents among mitzod's descendants.
fn count_agents(pid: u32) -> usize {
    let mut parent = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.insert(p, ppid);
        }
    }
    let below = |mut p: u32| {
        while let Some(&up) = parent.get(&p) {
            if up == pid {
                return true;
            }
            if up <= 1 {
                return false;
            }
            p = up;
        }
        false
    };
    parent
        .keys()
        .filter(|&&p| below(p))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("fake_agent.py"))
                .unwrap_or(false)
        })
        .count()
}
