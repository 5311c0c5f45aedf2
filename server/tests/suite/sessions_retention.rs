//! Event-log retention through the running server: a session filled past
//! `session.retain_mb` is compacted at the next start-up pass, says so in
//! its meta, and what remains still replays, pages and carries on.

use crate::sessions_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sessions_support::*;

fn seqs(events: &Value) -> Vec<u64> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn retention_compacts_an_oversized_session_and_replay_still_works() {
    if !landlock_or_skip("retention_compacts_an_oversized_session_and_replay_still_works") {
        return;
    }
    let mut s = start("[session]\nretain_mb = 1\n");
    let mut ws = s.ws();
    ws.send(json!({"type": "send", "sessionId": null, "prompt": "huge:0.25"}));
    let id = ws.wait_type("session_created")["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let is_result = |f: &Value| f["type"] == "result";
    ws.wait_for("result", |f| f["sessionId"] == id.as_str() && is_result(f));
    // About 1.5 MiB of stored frames in six turns.
    for _ in 0..5 {
        ws.send(json!({"type": "send", "sessionId": id, "prompt": "huge:0.25"}));
        ws.wait_for("result", |f| f["sessionId"] == id.as_str() && is_result(f));
    }
    drop(ws);
    let before = s.wait_event(&id, |e| e["type"] == "result");
    let all_before = seqs(&Value::from(before.clone()));
    assert_eq!(all_before[0], 1, "nothing dropped yet");
    let last_before = *all_before.last().unwrap();
    let stored: usize = before.iter().map(|e| e.to_string().len()).sum();
    assert!(
        stored > 1024 * 1024,
        "filled past the limit: {stored} bytes"
    );
    let meta = s
        .server
        .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
        .json();
    assert_eq!(
        meta["historyCompacted"], false,
        "control: not compacted yet"
    );

    // The pass at start-up compacts it.
    s.server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let meta = s
            .server
            .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
            .json();
        if meta["historyCompacted"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never compacted: {meta}\nlog:\n{}",
            s.server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The newest events remain, contiguous up to the last one.
    let r = s.server.get(
        &format!("/api/sessions/{id}/events?after=0&limit=5000"),
        &s.internal_headers(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let kept = seqs(&r.json()["events"]);
    let first = kept[0];
    assert!(first > 1, "the oldest events were dropped: {kept:?}");
    // The restart may have added its own (the session is interrupted).
    let final_seq = *kept.last().unwrap();
    assert!(final_seq >= last_before, "the newest events stay: {kept:?}");
    assert_eq!(kept, (first..=final_seq).collect::<Vec<_>>());
    let kept_bytes: usize = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.to_string().len())
        .sum();
    assert!(kept_bytes < stored, "{kept_bytes} of {stored} bytes kept");

    // Paging backwards from the end walks exactly what remains.
    let mut before = u64::MAX / 2;
    let mut paged: Vec<u64> = Vec::new();
    loop {
        let r = s.server.get(
            &format!("/api/sessions/{id}/events?before={before}&limit=3"),
            &s.internal_headers(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let page = seqs(&r.json()["events"]);
        paged.splice(0..0, page.iter().copied());
        if r.json()["hasMore"] == false || page.is_empty() {
            break;
        }
        before = page[0];
    }
    assert_eq!(paged, kept);

    // Reconnecting with a lastSeq in the kept range replays the rest.
    s.jwt = s.server.login();
    let mut ws = s.ws();
    ws.send(json!({"type": "reconnect", "sessions": [{"sessionId": id, "lastSeq": first}]}));
    let mut got = Vec::new();
    loop {
        let f = ws.next();
        if f["type"] == "reconnected" {
            break;
        }
        let seq = f["seq"].as_u64().unwrap();
        if seq > 0 {
            got.push(seq);
        }
    }
    assert_eq!(got, (first + 1..=final_seq).collect::<Vec<_>>());
    // And the session carries on after its last seq.
    ws.send(json!({"type": "send", "sessionId": id, "prompt": "text:more"}));
    let next = ws.wait_for("next", |f| {
        f["sessionId"] == id.as_str() && f["seq"].as_u64() > Some(0)
    });
    assert_eq!(next["seq"], final_seq + 1);
}
