//! Session streaming benchmark: from an agent's stdout line to the WebSocket
//! frame, through mitzod (sandboxed agent, event log, SQLite, broadcast,
//! WebSocket), against the same agent read by a bare pipe loop (the floor).
//!
//!   cargo build --release -p mitzod && cargo run --release -p mitzod --example bench_sessions
//!
//! Uses `MITZO_BIN` or the `mitzod` next to this example's target dir.
//! Needs Landlock (the agent runs under the real sandbox). As root the
//! server drops to `nobody`, as the integration tests do.
//!
//! The agent is a small Python script that answers `initialize`, and for a
//! user message `bench N PACE_US` writes `system/init`, then N assistant text
//! messages whose text is `CLOCK_MONOTONIC` in ns at emit time (one write and
//! flush per line, as the real CLI does), then a `result`. For `stream N
//! PACE_US` it streams one text block instead, as `--include-partial-messages`
//! does: N `content_block_delta` lines whose text is the stamp (the token-rate
//! scenario: 50 sessions each streaming 100 deltas/s, with mitzod's CPU). Latency is the
//! receiver's `CLOCK_MONOTONIC` when it has read the `block_delta` frame (or,
//! for the floor, the stdout line) minus that stamp. With PACE_US = 0 the
//! agent writes as fast as it can, so latency includes any queueing behind a
//! slower consumer; the paced rows show the latency of a single event.
//!
//! Environment: `BENCH_CONNS` (WebSocket connections for the 50-session run,
//! default 50, one per session; 1 = every session on one connection, as one
//! browser tab: with mitzod as of this writing that run stalls, see
//! `connection()` in `http/ws.rs`, and the bench fails after its read
//! timeout), `BENCH_ISOLATION=1` (a git worktree per session; default off, so
//! setup time is not mixed into the streaming numbers), `BENCH_DUMP=dir` (one
//! CSV per run: session, emit stamp and latency of every message, in ns).
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)] // a benchmark fails by panicking; raw fds and pre_exec set-ups

mod bench_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use bench_support::{is_root, machine, mitzod_bin, open_tempdir, rss_kib, write_config};

const N_ONE: usize = 2000;
const N_MANY: usize = 200;
const MANY: usize = 50;
const PACE_US: u64 = 500;
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The token-rate scenario: deltas per session, and their pace (100/s).
const N_TOKENS: usize = 500;
const TOKEN_PACE_US: u64 = 10_000;

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of stat(5), counted from `state` (field 3) here.
    get(11) + get(12)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

const AGENT: &str = r#"import json, sys, time, uuid

out = sys.stdout


def emit(obj):
    out.write(json.dumps(obj, separators=(",", ":")) + "\n")
    out.flush()


session_id = None
while True:
    line = sys.stdin.readline()
    if not line:
        break
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    kind = msg.get("type")
    if kind == "control_request":
        rid = msg.get("request_id")
        sub = (msg.get("request") or {}).get("subtype")
        if sub == "initialize":
            emit({"type": "control_response",
                  "response": {"subtype": "success", "request_id": rid, "response": {}}})
        else:
            emit({"type": "control_response",
                  "response": {"subtype": "error", "request_id": rid, "error": "unsupported"}})
    elif kind == "user":
        if session_id is None:
            session_id = str(uuid.uuid4())
            emit({"type": "system", "subtype": "init", "session_id": session_id})
        content = (msg.get("message") or {}).get("content") or ""
        if isinstance(content, list):
            content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
        parts = content.split()
        stream = parts[0] == "stream" if parts else False
        n = int(parts[1]) if len(parts) > 1 else 100
        pace = int(parts[2]) * 1000 if len(parts) > 2 else 0
        mono = time.monotonic_ns
        if stream:
            # One message, one text block, its text in n deltas (as
            # --include-partial-messages streams it).
            mid = "msg_" + uuid.uuid4().hex
            emit({"type": "stream_event", "event": {"type": "message_start", "message": {
                "id": mid, "role": "assistant", "model": "bench", "content": []}}})
            emit({"type": "stream_event", "event": {"type": "content_block_start", "index": 0,
                  "content_block": {"type": "text", "text": ""}}})
        start = mono()
        for i in range(n):
            if pace:
                target = start + i * pace
                while True:
                    left = target - mono()
                    if left <= 0:
                        break
                    time.sleep(left / 1e9)
            if stream:
                out.write('{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
                          '"delta":{"type":"text_delta","text":"%d "}}}\n' % mono())
            else:
                out.write('{"type":"assistant","message":{"id":"m%d","role":"assistant",'
                          '"content":[{"type":"text","text":"%d"}]}}\n' % (i, mono()))
            out.flush()
        if stream:
            emit({"type": "stream_event", "event": {"type": "content_block_stop", "index": 0}})
            emit({"type": "stream_event", "event": {"type": "message_stop"}})
        emit({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
              "session_id": session_id})
"#;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What one session (or one bare agent) measured.
#[derive(Default)]
struct SessionStats {
    latencies_ns: Vec<u64>,
    /// The agent's emit stamp of each message (for `BENCH_DUMP`).
    stamps_ns: Vec<u64>,
    sent: Option<Instant>,
    first_delta: Option<Instant>,
    last_delta: Option<Instant>,
    result: Option<Instant>,
    last_seq: u64,
    seq_gaps: u64,
    errors: Vec<String>,
}

struct RunResult {
    label: String,
    sessions: usize,
    per_session: usize,
    pace_us: u64,
    stats: Vec<SessionStats>,
    /// mitzod's CPU over the run, in cores (mitzod runs only).
    cpu: Option<f64>,
}

impl RunResult {
    fn latencies(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .stats
            .iter()
            .flat_map(|s| s.latencies_ns.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }

    fn received(&self) -> usize {
        self.stats.iter().map(|s| s.latencies_ns.len()).sum()
    }

    /// Assistant messages per second, first send to last result.
    fn wall_rate(&self) -> f64 {
        let start = self
            .stats
            .iter()
            .filter_map(|s| s.sent)
            .min()
            .expect("a send");
        let end = self
            .stats
            .iter()
            .filter_map(|s| s.result)
            .max()
            .expect("a result");
        self.received() as f64 / (end - start).as_secs_f64()
    }

    /// Assistant messages per second, first to last one received.
    fn stream_rate(&self) -> f64 {
        let start = self
            .stats
            .iter()
            .filter_map(|s| s.first_delta)
            .min()
            .expect("a delta");
        let end = self
            .stats
            .iter()
            .filter_map(|s| s.last_delta)
            .max()
            .expect("a delta");
        self.received() as f64 / (end - start).as_secs_f64().max(1e-9)
    }

    /// Median time from send (or spawn) to a session's first message.
    /// Latencies of the events emitted once every session was streaming:
    /// the steady state, without the queue while the agents start.
    fn steady_latencies(&self) -> Vec<u64> {
        let all_started = self
            .stats
            .iter()
            .filter_map(|s| s.stamps_ns.iter().min().copied())
            .max()
            .unwrap_or(0);
        let mut v: Vec<u64> = self
            .stats
            .iter()
            .flat_map(|s| {
                s.stamps_ns
                    .iter()
                    .zip(&s.latencies_ns)
                    .filter(|(stamp, _)| **stamp >= all_started)
                    .map(|(_, l)| *l)
            })
            .collect();
        v.sort_unstable();
        v
    }

    fn first_event_ms(&self) -> f64 {
        let mut v: Vec<f64> = self
            .stats
            .iter()
            .filter_map(|s| Some((s.first_delta? - s.sent?).as_secs_f64() * 1000.0))
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn main() {
    let bin = mitzod_bin();
    let abi = mitzo_sandbox::landlock_abi();
    assert!(
        abi.supported(),
        "Landlock is needed: the agent runs under the real sandbox ({abi})"
    );
    let conns: usize = std::env::var("BENCH_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MANY)
        .clamp(1, MANY);
    let isolation = std::env::var("BENCH_ISOLATION").is_ok_and(|v| v == "1");

    let dir = open_tempdir("mitzod-bench-");
    let repo = mitzo_testkit::git::make_repo(dir.path());
    let agent = mitzo_testkit::agent::install_python_agent(dir.path(), "bench_agent.py", AGENT);
    let mut server = Server::start(&bin, dir.path(), &repo, &agent, isolation);
    let jwt = server.login();

    println!("{}", machine());
    println!("{abi}");
    println!(
        "mitzod {} (runs as {}), session isolation {}, 50-session run over {conns} WebSocket connection(s)",
        bin.display(),
        if is_root() { "nobody" } else { "the current user" },
        if isolation { "on (git worktree per session)" } else { "off" },
    );

    let runs = match measure(&mut server, &jwt, &agent, conns) {
        Ok(runs) => runs,
        Err(why) => {
            eprintln!("{why}\nserver log tail:\n{}", server.log_tail());
            server.stop();
            drop(dir);
            std::process::exit(1);
        }
    };

    let rss = rss_kib(server.pid());
    server.stop();

    println!();
    println!(
        "{:<26} {:<10} {:>7} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>9}",
        "scenario",
        "path",
        "events",
        "median µs",
        "p99 µs",
        "max µs",
        "min µs",
        "events/s",
        "stream ev/s",
        "1st ms"
    );
    for (name, m, f) in &runs {
        for r in [m, f] {
            let l = r.latencies();
            println!(
                "{:<26} {:<10} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>11.0} {:>11.0} {:>9.1}",
                name,
                r.label,
                format!("{}x{}", r.sessions, r.per_session),
                percentile(&l, 50.0),
                percentile(&l, 99.0),
                l.last().copied().unwrap_or(0) as f64 / 1000.0,
                l.first().copied().unwrap_or(0) as f64 / 1000.0,
                r.wall_rate(),
                r.stream_rate(),
                r.first_event_ms(),
            );
        }
    }
    println!();
    println!("ratios mitzod / bare pipe (latency: higher is worse; events/s: lower is worse)");
    for (name, m, f) in &runs {
        let (lm, lf) = (m.latencies(), f.latencies());
        println!(
            "{:<26} median {:>6.1}x  p99 {:>6.1}x  events/s {:>5.2}x  stream ev/s {:>5.2}x",
            name,
            percentile(&lm, 50.0) / percentile(&lf, 50.0),
            percentile(&lm, 99.0) / percentile(&lf, 99.0),
            m.wall_rate() / f.wall_rate(),
            m.stream_rate() / f.stream_rate(),
        );
    }
    println!();
    for (name, m, _) in &runs {
        if let Some(cpu) = m.cpu {
            println!(
                "{name:<26} mitzod CPU {:.1}% of one core over the run",
                cpu * 100.0
            );
        }
    }
    println!();
    println!(
        "steady state of the multi-session runs: events emitted once every session was streaming"
    );
    for (name, m, f) in &runs {
        if m.sessions == 1 {
            continue;
        }
        let (lm, lf) = (m.steady_latencies(), f.steady_latencies());
        let added_ms = (percentile(&lm, 99.0) - percentile(&lf, 99.0)) / 1000.0;
        println!(
            "{:<26} {} of {} events: median {:.0} µs  p99 {:.0} µs   floor median {:.0} µs  p99 {:.0} µs   p99 added {added_ms:.2} ms",
            name,
            lm.len(),
            m.received(),
            percentile(&lm, 50.0),
            percentile(&lm, 99.0),
            percentile(&lf, 50.0),
            percentile(&lf, 99.0),
        );
        if m.pace_us > 0 {
            bench_support::result(
                &format!("relay: {name}, steady p99 added"),
                &format!("{:.2} ms", percentile(&lm, 99.0) / 1000.0),
                &format!("bare pipe {:.2} ms", percentile(&lf, 99.0) / 1000.0),
                &format!("+{added_ms:.2} ms"),
                "≤ 1 ms added",
            );
        }
    }
    println!();
    println!("mitzod RSS after the runs: {rss} KiB");
    println!(
        "events/s: assistant messages per second from the first send (mitzod: the WebSocket `send`; \
         bare pipe: the spawn) to the last `result`; stream ev/s: first to last message received; \
         1st ms: median time from send/spawn to a session's first message."
    );
}

type Scenario = (String, RunResult, RunResult);

/// All the runs, each checked: through mitzod, then the floor.
fn measure(
    server: &mut Server,
    jwt: &str,
    agent: &Path,
    conns: usize,
) -> Result<Vec<Scenario>, String> {
    // Warm up: the page cache, Python's imports, SQLite.
    check(&run_mitzod(
        server.port,
        jwt,
        "warm-up",
        1,
        200,
        0,
        1,
        "bench",
    ))?;
    let mut runs = Vec::new();
    for (name, sessions, n, pace, kind) in [
        ("1 session, full speed".to_string(), 1, N_ONE, 0, "bench"),
        (
            format!("{MANY} sessions, full speed"),
            MANY,
            N_MANY,
            0,
            "bench",
        ),
        (
            format!("1 session, paced {} kHz", 1000 / PACE_US),
            1,
            N_ONE,
            PACE_US,
            "bench",
        ),
        (
            format!("{MANY} sessions x 100 deltas/s"),
            MANY,
            N_TOKENS,
            TOKEN_PACE_US,
            "stream",
        ),
    ] {
        let cpu_before = cpu_ticks(server.pid());
        let wall = Instant::now();
        let mut m = run_mitzod(
            server.port,
            jwt,
            "mitzod",
            sessions,
            n,
            pace,
            if sessions == 1 { 1 } else { conns },
            kind,
        );
        m.cpu = Some(
            (cpu_ticks(server.pid()) - cpu_before) as f64
                / clock_ticks()
                / wall.elapsed().as_secs_f64(),
        );
        check(&m)?;
        let f = run_floor(agent, "bare pipe", sessions, n, pace, kind);
        check(&f)?;
        runs.push((name, m, f));
    }
    Ok(runs)
}

/// Every message arrived, in order, with no error: else the numbers lie.
/// With `BENCH_DUMP=dir`, also write each message's session, emit stamp and
/// latency (ns) to a CSV there.
fn check(r: &RunResult) -> Result<(), String> {
    if let Some(dir) = std::env::var_os("BENCH_DUMP") {
        let name = format!(
            "{}-{}x{}-pace{}.csv",
            r.label.replace(' ', "_"),
            r.sessions,
            r.per_session,
            r.pace_us
        );
        let mut csv = String::from("session,stamp_ns,latency_ns\n");
        for (i, s) in r.stats.iter().enumerate() {
            for (stamp, lat) in s.stamps_ns.iter().zip(&s.latencies_ns) {
                csv.push_str(&format!("{i},{stamp},{lat}\n"));
            }
        }
        std::fs::write(Path::new(&dir).join(name), csv).map_err(|e| format!("BENCH_DUMP: {e}"))?;
    }
    let expected = r.sessions * r.per_session;
    let gaps: u64 = r.stats.iter().map(|s| s.seq_gaps).sum();
    let errors: Vec<&String> = r.stats.iter().flat_map(|s| s.errors.iter()).collect();
    if r.received() != expected || gaps > 0 || !errors.is_empty() {
        return Err(format!(
            "{} {}x{}: received {} of {expected} messages, {gaps} seq gaps, errors: {errors:?}",
            r.label,
            r.sessions,
            r.per_session,
            r.received(),
        ));
    }
    Ok(())
}

// ---- through mitzod ---------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn run_mitzod(
    port: u16,
    jwt: &str,
    label: &str,
    sessions: usize,
    n: usize,
    pace_us: u64,
    conns: usize,
    kind: &'static str,
) -> RunResult {
    let conns = conns.min(sessions);
    let barrier = Arc::new(Barrier::new(conns));
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let count = sessions / conns + usize::from(c < sessions % conns);
            let jwt = jwt.to_string();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut ws = connect(port, &jwt);
                barrier.wait();
                drive_connection(&mut ws, count, n, pace_us, kind)
            })
        })
        .collect();
    let stats = handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect();
    RunResult {
        label: label.to_string(),
        sessions,
        per_session: n,
        pace_us,
        stats,
        cpu: None,
    }
}

fn connect(port: u16, jwt: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut req = format!("ws://127.0.0.1:{port}/ws/chat")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {jwt}").parse().unwrap());
    let (mut socket, _) = tungstenite::client(req, stream).expect("websocket handshake");
    let welcome = read_frame(&mut socket).expect("welcome");
    assert_eq!(welcome.1["type"], "welcome", "{}", welcome.1);
    socket
}

/// The next text frame and the monotonic time it was read.
fn read_frame(ws: &mut WebSocket<TcpStream>) -> Result<(u64, Value), String> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let at = now_ns();
                return serde_json::from_str(t.as_str())
                    .map(|v| (at, v))
                    .map_err(|e| e.to_string());
            }
            Ok(Message::Close(c)) => return Err(format!("websocket closed: {c:?}")),
            Ok(_) => continue,
            Err(e) => return Err(format!("websocket read: {e}")),
        }
    }
}

/// Start `count` sessions on this connection, read until each has a result,
/// then stop them (and wait for that, so the next run starts quiet).
fn drive_connection(
    ws: &mut WebSocket<TcpStream>,
    count: usize,
    n: usize,
    pace_us: u64,
    kind: &str,
) -> Vec<SessionStats> {
    let prompt = format!("{kind} {n} {pace_us}");
    let stream = kind == "stream";
    // Sessions in the order their `send` went out; ids as they are created.
    let mut pending: Vec<SessionStats> = Vec::new();
    for k in 0..count {
        let frame = json!({"type": "send", "sessionId": null, "prompt": prompt, "clientMsgId": format!("b{k}"), "mode": "auto"});
        let sent = Instant::now();
        ws.send(Message::text(frame.to_string())).expect("send");
        pending.push(SessionStats {
            sent: Some(sent),
            latencies_ns: Vec::with_capacity(n),
            ..Default::default()
        });
    }
    let mut by_id: HashMap<String, SessionStats> = HashMap::new();
    let mut by_msg: HashMap<String, usize> = HashMap::new();
    let mut done = 0;
    let mut stray_errors = Vec::new();
    while done < count {
        let (at, f) = match read_frame(ws) {
            Ok(x) => x,
            Err(e) => {
                stray_errors.push(e);
                break;
            }
        };
        let kind = f["type"].as_str().unwrap_or("");
        let sid = f["sessionId"].as_str().unwrap_or("").to_string();
        if kind == "session_created" {
            let k: usize = f["clientMsgId"]
                .as_str()
                .and_then(|m| m[1..].parse().ok())
                .expect("clientMsgId");
            by_msg.insert(sid.clone(), k);
            by_id.insert(sid, std::mem::take(&mut pending[k]));
            continue;
        }
        let Some(s) = by_id.get_mut(&sid) else {
            if kind == "error" {
                stray_errors.push(f.to_string());
            }
            continue;
        };
        if let Some(seq) = f["seq"].as_u64().filter(|q| *q > 0) {
            if s.last_seq != 0 && seq != s.last_seq + 1 {
                s.seq_gaps += 1;
            }
            s.last_seq = seq;
        }
        // Whole messages: their `block_end` (persisted, never skipped);
        // streamed ones: each live `block_delta`.
        let measured = if stream { "block_delta" } else { "block_end" };
        match kind {
            k if k == measured => {
                let stamp: u64 = f["text"]
                    .as_str()
                    .and_then(|t| t.trim().parse().ok())
                    .expect("timestamp text");
                s.latencies_ns.push(at.saturating_sub(stamp));
                s.stamps_ns.push(stamp);
                let now = Instant::now();
                s.first_delta.get_or_insert(now);
                s.last_delta = Some(now);
            }
            "result" => {
                s.result = Some(Instant::now());
                done += 1;
            }
            "error" => s.errors.push(f.to_string()),
            _ => {}
        }
    }
    // Stop every session and wait for its end.
    for id in by_id.keys() {
        let _ = ws.send(Message::text(
            json!({"type": "stop", "sessionId": id}).to_string(),
        ));
    }
    let mut ended = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended < by_id.len() && Instant::now() < deadline {
        match read_frame(ws) {
            Ok((_, f)) if f["type"] == "session_end" => ended += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = ws.close(None);
    let mut out: Vec<SessionStats> = by_id.into_values().collect();
    if let Some(first) = out.first_mut() {
        first.errors.extend(stray_errors);
    } else {
        out.push(SessionStats {
            errors: stray_errors,
            ..Default::default()
        });
    }
    out
}

// ---- the floor: the same agent on a bare pipe -------------------------

fn run_floor(
    agent: &Path,
    label: &str,
    sessions: usize,
    n: usize,
    pace_us: u64,
    kind: &'static str,
) -> RunResult {
    let barrier = Arc::new(Barrier::new(sessions));
    let handles: Vec<_> = (0..sessions)
        .map(|_| {
            let agent = agent.to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                bare_agent(&agent, n, pace_us, kind)
            })
        })
        .collect();
    let stats = handles
        .into_iter()
        .map(|h| h.join().expect("floor thread"))
        .collect();
    RunResult {
        label: label.to_string(),
        sessions,
        per_session: n,
        pace_us,
        stats,
        cpu: None,
    }
}

fn bare_agent(agent: &Path, n: usize, pace_us: u64, kind: &str) -> SessionStats {
    let mut s = SessionStats {
        latencies_ns: Vec::with_capacity(n),
        sent: Some(Instant::now()),
        ..Default::default()
    };
    let mut child: Child = Command::new(agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn agent");
    let mut stdin = child.stdin.take().unwrap();
    let init = json!({"type": "control_request", "request_id": "init", "request": {"subtype": "initialize", "hooks": null}});
    let user = json!({"type": "user", "session_id": "", "message": {"role": "user", "content": format!("{kind} {n} {pace_us}")}, "parent_tool_use_id": null});
    writeln!(stdin, "{init}\n{user}").expect("write to agent");
    stdin.flush().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.expect("read agent stdout");
        let at = now_ns();
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                s.errors.push(format!("not JSON ({e}): {line}"));
                continue;
            }
        };
        let text = match v["type"].as_str() {
            Some("assistant") => v["message"]["content"][0]["text"].as_str(),
            Some("stream_event") if v["event"]["type"] == "content_block_delta" => {
                v["event"]["delta"]["text"].as_str()
            }
            _ => None,
        };
        match v["type"].as_str() {
            Some("assistant" | "stream_event") if text.is_some() => {
                let stamp: u64 = text
                    .and_then(|t| t.trim().parse().ok())
                    .expect("timestamp text");
                s.latencies_ns.push(at.saturating_sub(stamp));
                s.stamps_ns.push(stamp);
                let now = Instant::now();
                s.first_delta.get_or_insert(now);
                s.last_delta = Some(now);
            }
            Some("result") => {
                s.result = Some(Instant::now());
                break;
            }
            _ => {}
        }
    }
    drop(stdin);
    let _ = child.wait();
    s
}

// ---- setup, as the integration tests do it ----------------------------

struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path, repo: &Path, agent: &Path, isolation: bool) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = write_config(
            dir,
            &format!(
                "repo_path = \"{}\"\nlisten = [\"127.0.0.1:{port}\"]\n\n[session]\nisolation = {isolation}\n\n[agent]\ncommand = \"{}\"",
                repo.display(),
                agent.display(),
            ),
        );
        let log = dir.join("mitzod.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        // `MITZOD_*` variables are config keys to mitzod: keep the caller's out.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MITZOD_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("MITZO_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start mitzod");
        let mut server = Server {
            child: Some(child),
            port,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("mitzod exited early ({status}); log:\n{}", self.log_tail());
            }
            if let Ok((200, _)) = self.http("GET", "/healthz", "") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mitzod not ready; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn http(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        use std::io::Read;
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn login(&self) -> String {
        bench_support::login(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn stop(&mut self) {
        bench_support::stop_child(&mut self.child, Duration::from_secs(15));
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
