//! Token streaming with bounded replay: a client that drops its connection
//! at any point of a streamed answer and reconnects with its `lastSeq` ends
//! with exactly the transcript of a client that watched the whole time (no
//! gap, no duplicated text), while deltas are never stored one by one.

use crate::sessions_support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sessions_support::*;

/// A client's view of one session, built by the protocol's rules
/// (server/PROTOCOL.md, "Token streaming").
#[derive(Default)]
struct Transcript {
    last_seq: u64,
    /// Persisted frames and blocks, in the order they began.
    items: Vec<String>,
    blocks: BTreeMap<String, String>,
    done: bool,
    /// Rule 4: a watcher that fell behind takes `block_end`'s text for a
    /// block whose deltas it missed; counted here.
    taken_from_end: usize,
    lagging: bool,
    deltas: usize,
}

impl Transcript {
    fn block_key(f: &Value) -> String {
        format!("{}/{}", f["messageId"].as_str().unwrap(), f["index"])
    }

    fn apply(&mut self, f: &Value) {
        let seq = f["seq"].as_u64().unwrap();
        let kind = f["type"].as_str().unwrap();
        if seq == 0 {
            match kind {
                "block_snapshot" => {
                    let key = Self::block_key(f);
                    assert!(
                        self.blocks.contains_key(&key),
                        "a snapshot comes after its block_start: {f}"
                    );
                    self.blocks
                        .insert(key, f["text"].as_str().unwrap().to_string());
                }
                "block_delta" => {
                    self.deltas += 1;
                    let key = Self::block_key(f);
                    self.blocks
                        .get_mut(&key)
                        .unwrap_or_else(|| panic!("delta for a block never started: {f}"))
                        .push_str(f["text"].as_str().unwrap());
                }
                _ => {}
            }
            return;
        }
        assert!(
            seq > self.last_seq,
            "persisted frame twice or out of order: {f}"
        );
        assert_eq!(seq, self.last_seq + 1, "gap before {f}");
        self.last_seq = seq;
        match kind {
            "block_start" => {
                let key = Self::block_key(f);
                self.items.push(format!("block {key}"));
                self.blocks.insert(key, String::new());
            }
            "block_end" => {
                let key = Self::block_key(f);
                if let Some(text) = f["text"].as_str() {
                    let built = self.blocks.get(&key).map(String::as_str);
                    if self.lagging && built != Some(text) {
                        self.taken_from_end += 1;
                        self.blocks.insert(key.clone(), text.to_string());
                    } else {
                        assert_eq!(
                            built,
                            Some(text),
                            "the streamed text of {key} is the block's text"
                        );
                    }
                }
                self.items.push(format!("{seq} end {key}"));
            }
            "result" => {
                self.items.push(format!("{seq} result"));
                self.done = true;
            }
            other => self.items.push(format!("{seq} {other}")),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            out.push_str(item);
            if let Some(key) = item.strip_prefix("block ") {
                out.push_str(&format!(": {:?}", self.blocks[key]));
            }
            out.push('\n');
        }
        out
    }
}

fn watch_from_zero(s: &SessionServer, id: &str) -> Ws {
    let mut ws = s.ws();
    ws.send(json!({"type": "reconnect", "sessions": [{"sessionId": id, "lastSeq": 0}]}));
    ws
}

/// Read frames of session `id` into `t` until `stop` frames were read or
/// the turn's result came.
fn read_into(ws: &mut Ws, id: &str, t: &mut Transcript, stop: usize) {
    let mut n = 0;
    while !t.done && n < stop {
        let f = ws.next();
        if f["sessionId"] == id && f["type"] != "session_updated" {
            t.apply(&f);
            n += 1;
        }
    }
}

#[test]
fn reconnect_at_every_point_yields_the_same_transcript() {
    if !landlock_or_skip("reconnect_at_every_point_yields_the_same_transcript") {
        return;
    }
    let s = start("");
    let id = s.create(json!({"source": "test"})).json()["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    // The whole-time watcher, and one client for each point of the stream
    // at which it drops its connection.
    const POINTS: usize = 24;
    let mut full = watch_from_zero(&s, &id);
    let mut clients: Vec<Ws> = (0..POINTS).map(|_| watch_from_zero(&s, &id)).collect();
    for ws in clients.iter_mut().chain(std::iter::once(&mut full)) {
        ws.wait_type("reconnected");
    }
    // Ten text deltas over two seconds, then a second turn of many blocks.
    let mut driver = s.ws();
    driver.send(json!({"type": "send", "sessionId": id, "prompt": "slow:2"}));
    let transcripts: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(k, mut ws)| {
                let (s, id) = (&s, id.as_str());
                scope.spawn(move || {
                    let mut t = Transcript::default();
                    read_into(&mut ws, id, &mut t, k + 1);
                    drop(ws);
                    // Away for longer than a chunk takes: it misses deltas
                    // (the transcript must not depend on how long).
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    let mut ws = s.ws();
                    ws.send(json!({"type": "reconnect", "sessions": [
                        {"sessionId": id, "lastSeq": t.last_seq}]}));
                    read_into(&mut ws, id, &mut t, usize::MAX);
                    t.render()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut whole = Transcript::default();
    read_into(&mut full, &id, &mut whole, usize::MAX);
    let want = whole.render();
    assert!(
        want.contains("chunk 0 chunk 1 chunk 2"),
        "the streamed text: {want}"
    );
    for (k, got) in transcripts.iter().enumerate() {
        assert_eq!(got, &want, "reconnect after {} frames", k + 1);
    }

    // The deltas were live only: the stored history holds the block whole.
    let events = s.wait_event(&id, |e| e["type"] == "result");
    assert!(events.iter().all(|e| e["type"] != "block_delta"));
    let ends: Vec<&Value> = events.iter().filter(|e| e["type"] == "block_end").collect();
    assert_eq!(ends.len(), 1, "{events:#?}");
    assert_eq!(
        ends[0]["text"],
        (0..10).map(|i| format!("chunk {i} ")).collect::<String>()
    );
}

#[test]
fn a_lagging_watcher_is_caught_up_like_a_reconnect() {
    if !landlock_or_skip("a_lagging_watcher_is_caught_up_like_a_reconnect") {
        return;
    }
    let s = start("");
    let id = s.create(json!({"source": "test"})).json()["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut full = watch_from_zero(&s, &id);
    let mut slow = watch_from_zero(&s, &id);
    full.wait_type("reconnected");
    slow.wait_type("reconnected");
    // The slow watcher stops reading, its receive buffer fixed (at twice
    // the loopback MSS, so the window still opens normally): first large
    // frames fill the sockets, then many small ones fill the connection's
    // outbox, and its subscription falls more than `buffer_events` frames
    // behind.
    nix::sys::socket::setsockopt(
        slow.socket.get_ref(),
        nix::sys::socket::sockopt::RcvBuf,
        &(256 * 1024),
    )
    .unwrap();
    // The watcher that keeps up reads each turn to its result before the
    // next is sent, and a turn publishes fewer frames than the session's
    // broadcast holds (`buffer_events`, 500): however late its forwarder
    // runs, it cannot lag. The slow one misses them all, and falls behind
    // once its outbox (4096 frames) is full.
    let big = format!("text:{}", "y".repeat(240 * 1024));
    const DELTAS: usize = 400;
    const STREAMED: usize = 16;
    let streamed = format!("stream:{DELTAS}");
    let turns: Vec<&str> = std::iter::repeat_n(big.as_str(), 12)
        .chain(std::iter::repeat_n(streamed.as_str(), STREAMED))
        .collect();
    let mut whole = Transcript::default();
    for prompt in &turns {
        full.send(json!({"type": "send", "sessionId": id, "prompt": prompt}));
        read_into(&mut full, &id, &mut whole, usize::MAX);
        whole.done = false;
    }
    let all_deltas = whole.deltas;
    assert_eq!(
        all_deltas,
        12 + STREAMED * DELTAS,
        "the watcher that kept up saw every delta"
    );
    // Reading again: caught up from where it fell behind.
    let mut lagged = Transcript {
        lagging: true,
        ..Transcript::default()
    };
    for _ in &turns {
        read_into(&mut slow, &id, &mut lagged, usize::MAX);
        lagged.done = false;
    }
    eprintln!(
        "slow watcher: {} of {all_deltas} deltas, {} blocks taken from block_end",
        lagged.deltas, lagged.taken_from_end
    );
    assert!(
        lagged.deltas < all_deltas,
        "the slow watcher never fell behind ({} deltas): this run shows nothing",
        lagged.deltas
    );
    assert_eq!(lagged.render(), whole.render());
}

#[test]
fn a_late_watcher_gets_the_block_so_far_then_the_rest() {
    if !landlock_or_skip("a_late_watcher_gets_the_block_so_far_then_the_rest") {
        return;
    }
    let s = start("");
    let mut driver = s.ws();
    driver.send(json!({"type": "send", "sessionId": null, "prompt": "slow:3"}));
    let id = driver.wait_type("session_created")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait until the block has streamed part of its text.
    let mut streamed = 0;
    while streamed < 3 {
        let f = driver.next();
        if f["type"] == "block_delta" {
            streamed += 1;
        }
    }
    let mut late = s.ws();
    late.send(json!({"type": "watch", "sessionId": id}));
    let snap = late.wait_type("block_snapshot");
    assert_eq!(snap["seq"], 0);
    let so_far = snap["text"].as_str().unwrap().to_string();
    assert!(so_far.starts_with("chunk 0 chunk 1 chunk 2 "), "{snap}");
    let mut text = so_far;
    loop {
        let f = late.next();
        match f["type"].as_str().unwrap() {
            "block_delta" => text.push_str(f["text"].as_str().unwrap()),
            "block_end" => {
                assert_eq!(f["text"].as_str().unwrap(), text);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        text,
        (0..10).map(|i| format!("chunk {i} ")).collect::<String>()
    );
}

#[test]
fn history_pages_backwards_from_the_end() {
    if !landlock_or_skip("history_pages_backwards_from_the_end") {
        return;
    }
    let s = start("");
    let r = s.create(json!({"source": "test", "initialPrompt": "blocks:30"}));
    let id = r.json()["sessionId"].as_str().unwrap().to_string();
    let all = s.wait_event(&id, |e| e["type"] == "result");
    let last = all.last().unwrap()["seq"].as_u64().unwrap();
    let page = |before: u64| {
        let r = s.server.get(
            &format!("/api/sessions/{id}/events?before={before}&limit=10"),
            &s.internal_headers(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let mut before = u64::MAX / 2;
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let p = page(before);
        let seqs: Vec<u64> = p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "oldest first: {seqs:?}"
        );
        assert!(seqs.len() <= 10);
        seen.splice(0..0, seqs.iter().copied());
        if p["hasMore"] == false {
            break;
        }
        before = seqs[0];
    }
    assert_eq!(seen, (1..=last).collect::<Vec<_>>(), "every event, once");
    // Forwards with `after`: `hasMore` until the page that reaches the end.
    let mut after = 0;
    let mut forward: Vec<u64> = Vec::new();
    loop {
        let r = s.server.get(
            &format!("/api/sessions/{id}/events?after={after}&limit=10"),
            &s.internal_headers(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let p = r.json();
        let seqs: Vec<u64> = p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.len() <= 10);
        forward.extend(&seqs);
        if p["hasMore"] == false {
            break;
        }
        assert_eq!(seqs.len(), 10, "a page with more after it is full");
        after = *seqs.last().unwrap();
    }
    assert_eq!(forward, seen, "every event, once, oldest first");
    let r = s.server.get(
        &format!("/api/sessions/{id}/events?before=5&after=1"),
        &s.internal_headers(),
    );
    assert_eq!(r.status, 400);
}
