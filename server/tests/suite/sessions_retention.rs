//! Event-log retention through the running server. Two sessions go past
//! `session.retain_mb`: one that compaction alone brings back within the
//! limit (every message stays, the stream's scaffolding goes) and one whose
//! oldest events must also be dropped. At the next start-up pass both are
//! compacted, say so in their meta, the database file shrinks, and what
//! remains still replays (REST and a WebSocket resume by lastSeq), pages
//! backwards and carries on.

use crate::sessions_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sessions_support::*;

const MIB: usize = 1024 * 1024;

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn bytes(events: &[Value]) -> usize {
    events.iter().map(|e| e.to_string().len()).sum()
}

/// Every stored event of a session, oldest first (pages of 5000).
fn all_events(s: &SessionServer, id: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let r = s.server.get(
            &format!("/api/sessions/{id}/events?after={after}&limit=5000"),
            &s.internal_headers(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json()["events"].as_array().cloned().unwrap_or_default();
        let Some(last) = page.last() else {
            return out;
        };
        after = last["seq"].as_u64().unwrap();
        out.extend(page);
    }
}

/// One turn: send `prompt`, allow what it asks, wait for its result.
fn turn(ws: &mut Ws, id: Option<&str>, prompt: &str) -> String {
    ws.send(json!({"type": "send", "sessionId": id, "prompt": prompt}));
    let id = match id {
        Some(id) => id.to_string(),
        None => ws.wait_type("session_created")["sessionId"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    loop {
        let f = ws.next();
        if f["sessionId"] != id.as_str() {
            continue;
        }
        match f["type"].as_str() {
            Some("permission_request") => ws.send(json!({
                "type": "permission_response", "sessionId": id,
                "permId": f["permId"], "decision": "allow"
            })),
            Some("result") => return id,
            _ => {}
        }
    }
}

fn meta(s: &SessionServer, id: &str) -> Value {
    s.server
        .get(&format!("/api/sessions/{id}/meta"), &s.internal_headers())
        .json()
}

fn db_size(s: &SessionServer) -> u64 {
    let db = s.server.state_dir.join("mitzod.db");
    std::fs::metadata(&db).unwrap().len()
}

/// What compaction keeps of a finished turn's events, stated on its own:
/// no message brackets, passing states, starts of blocks that ended,
/// requests that were decided or timeouts; a result's text only where it
/// is not the turn's last text block again.
fn compacted_view(events: &[Value], horizon: u64) -> Vec<Value> {
    let ended: Vec<(Value, Value)> = events
        .iter()
        .filter(|e| e["type"] == "block_end")
        .map(|e| (e["messageId"].clone(), e["index"].clone()))
        .collect();
    let decided: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "permission_resolved")
        .map(|e| &e["permId"])
        .collect();
    let mut last_text = Value::Null;
    let mut out = Vec::new();
    for e in events {
        let mut e = e.clone();
        if e["seq"].as_u64().unwrap() <= horizon {
            match e["type"].as_str().unwrap() {
                "message_start"
                | "message_end"
                | "session_state_changed"
                | "permission_timeout"
                | "block_delta"
                | "block_snapshot" => continue,
                "block_start" if ended.contains(&(e["messageId"].clone(), e["index"].clone())) => {
                    continue
                }
                "permission_request" | "question_request" if decided.contains(&&e["permId"]) => {
                    continue
                }
                "block_end" if e["blockType"] == "text" => last_text = e["text"].clone(),
                "result" if e["result"] == last_text => {
                    e.as_object_mut().unwrap().remove("result");
                }
                _ => {}
            }
        }
        out.push(e);
    }
    out
}

#[test]
fn retention_compacts_then_drops_and_replay_still_works() {
    if !landlock_or_skip("retention_compacts_then_drops_and_replay_still_works") {
        return;
    }
    let mut s = start("[session]\nretain_mb = 1\n");
    let mut ws = s.ws();
    // "fits": many small blocks, a tool call the owner allows, a reply.
    let fits = turn(&mut ws, None, "blocks:4000");
    turn(&mut ws, Some(&fits), "tool:Bash:echo hi");
    turn(&mut ws, Some(&fits), "text:hello");
    // "drops": about 1.5 MiB of text in six turns.
    let drops = turn(&mut ws, None, "huge:0.25");
    for _ in 0..5 {
        turn(&mut ws, Some(&drops), "huge:0.25");
    }
    drop(ws);
    let fits_before = all_events(&s, &fits);
    let drops_before = all_events(&s, &drops);
    for (name, events) in [("fits", &fits_before), ("drops", &drops_before)] {
        assert_eq!(seqs(events)[0], 1, "{name}: nothing dropped yet");
        assert!(bytes(events) > MIB, "{name}: {} bytes", bytes(events));
    }
    let kinds = |events: &[Value], kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    // The premise: every kind compaction removes is there beforehand.
    for kind in [
        "message_start",
        "message_end",
        "block_start",
        "session_state_changed",
        "permission_request",
    ] {
        assert!(kinds(&fits_before, kind) > 0, "no {kind} before");
    }
    let fits_horizon = fits_before
        .iter()
        .filter(|e| e["type"] == "result")
        .map(|e| e["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    let fits_expected = compacted_view(&fits_before, fits_horizon);
    assert!(
        bytes(&fits_expected) < MIB,
        "compacted, fits within the limit: {} bytes",
        bytes(&fits_expected)
    );
    for id in [&fits, &drops] {
        assert_eq!(meta(&s, id)["historyCompacted"], false, "control: not yet");
    }
    s.server.stop();
    let size_before = db_size(&s);

    // The pass at start-up compacts both.
    s.server.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while meta(&s, &fits)["historyCompacted"] != true
        || meta(&s, &drops)["historyCompacted"] != true
    {
        assert!(
            Instant::now() < deadline,
            "never compacted; log:\n{}",
            s.server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.server.stop();
    let size_after = db_size(&s);
    assert!(
        size_after < size_before * 3 / 4,
        "the file shrank: {size_before} -> {size_after} bytes"
    );
    s.server.start();
    s.jwt = s.server.login();

    // "fits": exactly its compacted view; nothing past the horizon changed
    // (the restarts may have added events of their own at the end).
    let fits_after = all_events(&s, &fits);
    let last_fits = fits_before.last().unwrap()["seq"].as_u64().unwrap();
    let (old, added): (Vec<Value>, Vec<Value>) = fits_after
        .iter()
        .cloned()
        .partition(|e| e["seq"].as_u64().unwrap() <= last_fits);
    assert_eq!(old.len(), fits_expected.len());
    assert_eq!(old, fits_expected);
    assert!(added.iter().all(|e| e["type"] != "user_message"));
    for kind in [
        "message_start",
        "message_end",
        "block_start",
        "permission_request",
    ] {
        assert_eq!(kinds(&old, kind), 0, "{kind} left");
    }
    // Every message is still there: prompts, texts, the tool call, its
    // output, the decision and the results.
    for kind in [
        "user_message",
        "block_end",
        "tool_result",
        "permission_resolved",
        "result",
    ] {
        assert_eq!(kinds(&old, kind), kinds(&fits_before, kind), "{kind}");
    }
    // 4000 blocks, the tool call, its "done" and "hello".
    assert_eq!(kinds(&old, "block_end"), 4000 + 3);

    // "drops": the newest events remain, compacted, within the limit,
    // ending where they ended.
    let drops_after = all_events(&s, &drops);
    let kept = seqs(&drops_after);
    let first = kept[0];
    assert!(first > 1, "the oldest were dropped: {kept:?}");
    let last_drops = drops_before.last().unwrap()["seq"].as_u64().unwrap();
    let kept_old: Vec<Value> = drops_after
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() <= last_drops)
        .cloned()
        .collect();
    let drops_horizon = drops_before
        .iter()
        .filter(|e| e["type"] == "result")
        .map(|e| e["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    let drops_expected: Vec<Value> = compacted_view(&drops_before, drops_horizon)
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap() >= first)
        .collect();
    assert_eq!(kept_old, drops_expected);
    assert!(bytes(&kept_old) <= MIB, "{} bytes kept", bytes(&kept_old));
    // What went is the oldest: the next older compacted event would not fit.
    let next_older = compacted_view(&drops_before, drops_horizon)
        .into_iter()
        .rfind(|e| e["seq"].as_u64().unwrap() < first)
        .unwrap();
    assert!(bytes(&kept_old) + next_older.to_string().len() > MIB - 4096);

    // Paging backwards from the end walks exactly what remains.
    for (id, all) in [(&fits, &fits_after), (&drops, &drops_after)] {
        let mut before = u64::MAX / 2;
        let mut paged: Vec<u64> = Vec::new();
        loop {
            let r = s.server.get(
                &format!("/api/sessions/{id}/events?before={before}&limit=700"),
                &s.internal_headers(),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let page = seqs(r.json()["events"].as_array().unwrap());
            paged.splice(0..0, page.iter().copied());
            if r.json()["hasMore"] == false || page.is_empty() {
                break;
            }
            before = page[0];
        }
        assert_eq!(paged, seqs(all));
    }

    // A WebSocket resume by lastSeq replays what remains after it, gaps
    // and all, in order.
    let resume_at = seqs(&fits_after)[10];
    let mut ws = s.ws();
    ws.send(json!({"type": "reconnect", "sessions": [
        {"sessionId": fits, "lastSeq": resume_at},
        {"sessionId": drops, "lastSeq": first}
    ]}));
    let mut got_fits = Vec::new();
    let mut got_drops = Vec::new();
    loop {
        let f = ws.next();
        if f["type"] == "reconnected" {
            break;
        }
        let seq = f["seq"].as_u64().unwrap();
        if seq > 0 && f["sessionId"] == fits.as_str() {
            got_fits.push(seq);
        } else if seq > 0 && f["sessionId"] == drops.as_str() {
            got_drops.push(seq);
        }
    }
    let want: Vec<u64> = seqs(&fits_after)
        .into_iter()
        .filter(|&q| q > resume_at)
        .collect();
    assert_eq!(got_fits, want);
    assert_eq!(got_drops, kept[1..].to_vec());
    // And the session carries on after its last seq.
    let final_seq = *kept.last().unwrap();
    ws.send(json!({"type": "send", "sessionId": drops, "prompt": "text:more"}));
    let next = ws.wait_for("next", |f| {
        f["sessionId"] == drops.as_str() && f["seq"].as_u64() > Some(0)
    });
    assert_eq!(next["seq"], final_seq + 1);
}
