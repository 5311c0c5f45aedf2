//! Retention's tests: the size and age limits, and what compaction keeps.

use super::*;
use crate::db::Db;
use crate::sessions::store::{self, SessionRow};
use mitzo_protocol::{Mode, SessionState};

const DAY_MS: i64 = 86_400_000;

fn session(id: &str) -> SessionRow {
    SessionRow {
        id: id.into(),
        source: "test".into(),
        summary: String::new(),
        title: String::new(),
        mode: Mode::Ask,
        model: None,
        repo: "/r".into(),
        repo_name: "r".into(),
        cwd: "/r".into(),
        branch: None,
        isolation: false,
        headless: false,
        agent_session_id: None,
        state: SessionState::Stopped,
        num_turns: 0,
        created_at: 1,
        last_modified: 1,
        history_compacted: false,
    }
}

fn add_events(c: &Connection, id: &str, seqs: std::ops::RangeInclusive<u64>, ts: i64) {
    // 4 KiB frames: 1 MiB is 256 of them.
    let pad = "x".repeat(4096 - 40);
    for seq in seqs {
        let frame = format!("{{\"seq\":{seq:>10},\"pad\":\"{pad}\"}}");
        c.execute(
            "INSERT INTO events (session_id, seq, ts, kind, frame) VALUES (?1, ?2, ?3, 'message', ?4)",
            params![id, seq as i64, ts, frame],
        )
        .unwrap();
    }
}

fn seqs(c: &Connection, id: &str) -> Vec<u64> {
    store::events(c, id, 0, u64::MAX, u32::MAX)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

fn pages(c: &Connection) -> (i64, i64) {
    let count = c
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    let free = c
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .unwrap();
    (count, free)
}

#[test]
fn retention_drops_the_oldest_beyond_size_and_age_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("db.sqlite")).unwrap();
    let now = 100 * DAY_MS;
    db.with(|c| {
        // "big": 1024 recent events of 4 KiB (4 MiB), over a 1 MiB limit.
        store::insert(c, &session("big"))?;
        add_events(c, "big", 1..=1024, now - DAY_MS);
        // "old": 10 events 40 days old, then 5 from yesterday.
        store::insert(c, &session("old"))?;
        add_events(c, "old", 1..=10, now - 40 * DAY_MS);
        add_events(c, "old", 11..=15, now - DAY_MS);
        // "ancient": every event old; its newest must stay.
        store::insert(c, &session("ancient"))?;
        add_events(c, "ancient", 1..=3, now - 90 * DAY_MS);
        // "small": within both limits, untouched (control).
        store::insert(c, &session("small"))?;
        add_events(c, "small", 1..=20, now - DAY_MS);
        Ok(())
    })
    .unwrap();
    let (pages_before, _) = db.with(|c| Ok(pages(c))).unwrap();

    let report = db.with(|c| run(c, 30, 1024 * 1024, now)).unwrap();

    db.with(|c| {
        // Newest events kept, within the size, contiguous up to the last.
        let big = seqs(c, "big");
        let kept_bytes: usize = store::events(c, "big", 0, u64::MAX, u32::MAX)?
            .iter()
            .map(|(_, f)| f.len())
            .sum();
        assert!(kept_bytes <= 1024 * 1024, "{kept_bytes} bytes kept");
        assert!(big.len() >= 250, "only {} events kept", big.len());
        assert_eq!(*big.last().unwrap(), 1024);
        let first = big[0];
        assert_eq!(big, (first..=1024).collect::<Vec<_>>());
        assert_eq!(seqs(c, "old"), (11..=15).collect::<Vec<_>>());
        assert_eq!(seqs(c, "ancient"), vec![3]);
        assert_eq!(seqs(c, "small"), (1..=20).collect::<Vec<_>>());
        // The next seq carries on after the kept range.
        assert_eq!(store::last_seq(c, "big")?, 1024);
        assert_eq!(store::last_seq(c, "ancient")?, 3);

        // Replay after a lastSeq inside the kept range: the rest, in order.
        let replay: Vec<u64> = store::events(c, "big", 1001, u64::MAX, 1000)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(replay, (1001..=1024).collect::<Vec<_>>());
        // Paging backwards (`?before=`) walks what remains and ends.
        let mut before = u64::MAX;
        let mut paged = Vec::new();
        loop {
            let (page, more) = store::events_before(c, "big", before, 100)?;
            let Some(&(oldest, _)) = page.first() else {
                break;
            };
            paged.splice(0..0, page.into_iter().map(|(s, _)| s));
            before = oldest;
            if !more {
                break;
            }
        }
        assert_eq!(paged, big);

        // Marked compacted; the untouched session is not.
        for id in ["big", "old", "ancient"] {
            assert!(history_compacted(c, id)?, "{id} not marked");
        }
        assert!(!history_compacted(c, "small")?);
        // What lists read (and `historyCompacted` shows).
        let (listed, _) = store::list(c, 0, 10)?;
        for r in &listed {
            assert_eq!(r.history_compacted, r.id != "small", "{}", r.id);
        }
        assert_eq!(listed.len(), 4);
        let mut marked = report.sessions.clone();
        marked.sort();
        assert_eq!(marked, ["ancient", "big", "old"]);
        assert_eq!(report.aged_out, 10 + 2);
        assert_eq!(report.over_size, 1024 - big.len());

        // The file gave its pages back.
        let (pages_after, free_after) = pages(c);
        assert!(
            pages_after < pages_before / 2,
            "{pages_before} pages before, {pages_after} after"
        );
        assert_eq!(free_after, 0);
        assert_eq!(report.pages_freed, pages_before - pages_after);
        Ok(())
    })
    .unwrap();

    // A second pass finds nothing more to drop.
    let again = db.with(|c| run(c, 30, 1024 * 1024, now)).unwrap();
    assert_eq!((again.aged_out, again.over_size), (0, 0));
    assert!(again.sessions.is_empty());
}

/// One finished turn with every kind of event and a turn still
/// running, stored as the server stores them.
fn add_turns(c: &Connection, id: &str, ts: i64) -> Vec<(u64, &'static str)> {
    use mitzo_protocol::{BlockType, DecidedBy, Outcome, ServerEvent, ServerFrame, Tier};
    use serde_json::json;
    let text_end = |m: &str, text: &str| ServerEvent::BlockEnd {
        message_id: m.into(),
        index: 0,
        block_type: BlockType::Text,
        text: Some(text.into()),
        tool_name: None,
        tool_id: None,
        input: None,
        aborted: None,
    };
    let start = |m: &str, block_type| ServerEvent::BlockStart {
        message_id: m.into(),
        index: 0,
        block_type,
        tool_name: None,
        tool_id: None,
    };
    let running = || ServerEvent::SessionStateChanged {
        state: SessionState::Running,
    };
    let events = vec![
        ServerEvent::UserMessage {
            prompt: "list the files".into(),
            client_msg_id: None,
        },
        running(),
        ServerEvent::MessageStart {
            message_id: "m1".into(),
            model: None,
        },
        start("m1", BlockType::Text),
        text_end("m1", "Let me look."),
        ServerEvent::MessageEnd {
            message_id: "m1".into(),
            stop_reason: None,
        },
        start("m2", BlockType::ToolUse),
        ServerEvent::BlockEnd {
            message_id: "m2".into(),
            index: 0,
            block_type: BlockType::ToolUse,
            text: None,
            tool_name: Some("Bash".into()),
            tool_id: Some("t1".into()),
            input: Some(json!({"command": "ls"})),
            aborted: None,
        },
        ServerEvent::PermissionRequest {
            perm_id: "p1".into(),
            tool_name: "Bash".into(),
            title: "Run a command".into(),
            summary: "ls".into(),
            diff: None,
            tool_input: json!({"command": "ls"}),
            tier: Tier::Standard,
            expires_at: 0,
        },
        ServerEvent::PermissionTimeout {
            perm_id: "p1".into(),
        },
        ServerEvent::PermissionResolved {
            perm_id: Some("p1".into()),
            tool_name: "Bash".into(),
            decision: Outcome::Allow,
            by: DecidedBy::Owner,
            message: None,
            answers: None,
        },
        ServerEvent::ToolResult {
            tool_id: "t1".into(),
            result: json!("a\nb"),
            is_error: false,
        },
        ServerEvent::ToolResult {
            tool_id: "t1".into(),
            result: json!("a\nb"),
            is_error: false,
        },
        // A block that never ended keeps its start.
        start("m3", BlockType::Thinking),
        text_end("m4", "Two files."),
        ServerEvent::Result {
            subtype: "success".into(),
            is_error: false,
            result: Some("Two files.".into()),
            num_turns: 1,
            cost_usd: None,
        },
        ServerEvent::SessionStateChanged {
            state: SessionState::Idle,
        },
        // The next turn, still running: untouched.
        ServerEvent::UserMessage {
            prompt: "and now?".into(),
            client_msg_id: None,
        },
        running(),
        start("m5", BlockType::Text),
    ];
    let mut out = Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        let seq = i as u64 + 1;
        let kind = e.kind();
        let frame = ServerFrame::new(Some(id), seq, e).to_json();
        c.execute(
            "INSERT INTO events (session_id, seq, ts, kind, frame) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, seq as i64, ts, kind, frame],
        )
        .unwrap();
        out.push((seq, kind));
    }
    out
}

#[test]
fn compaction_keeps_the_messages_of_finished_turns_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("db.sqlite")).unwrap();
    let now = 100 * DAY_MS;
    let (all, total) = db
        .with(|c| {
            store::insert(c, &session("s-over"))?;
            let all = add_turns(c, "s-over", now - DAY_MS);
            // Control: the same history, within the limit (its id is shorter).
            store::insert(c, &session("c"))?;
            add_turns(c, "c", now - DAY_MS);
            let total: i64 = c.query_row(
                "SELECT SUM(length(CAST(frame AS BLOB))) FROM events WHERE session_id = 's-over'",
                [],
                |r| r.get(0),
            )?;
            Ok((all, total))
        })
        .unwrap();
    // One byte over: compaction alone brings it within the limit.
    let report = db.with(|c| run(c, 30, total as u64 - 1, now)).unwrap();
    let kept: Vec<(u64, &str)> = db
        .with(|c| {
            Ok(store::events(c, "s-over", 0, u64::MAX, u32::MAX)?
                .into_iter()
                .map(|(seq, _)| all[seq as usize - 1])
                .collect())
        })
        .unwrap();
    assert_eq!(
        kept,
        [
            (1, "user_message"),
            (5, "block_end"),
            (8, "block_end"),
            (11, "permission_resolved"),
            (12, "tool_result"),
            (14, "block_start"),
            (15, "block_end"),
            (16, "result"),
            (17, "session_state_changed"),
            (18, "user_message"),
            (19, "session_state_changed"),
            (20, "block_start"),
        ]
    );
    let frames = db.with(|c| store::events(c, "s-over", 16, 16, 1)).unwrap();
    let result: serde_json::Value = serde_json::from_str(&frames[0].1).unwrap();
    assert_eq!(result["type"], "result");
    assert!(result.get("result").is_none(), "{result}");
    assert_eq!(result["numTurns"], 1);
    let end: serde_json::Value =
        serde_json::from_str(&db.with(|c| store::events(c, "s-over", 8, 8, 1)).unwrap()[0].1)
            .unwrap();
    assert_eq!(end["input"]["command"], "ls");
    // Removed: 2, 3, 4, 6, 7, 9, 10, 13; rewritten: 16.
    assert_eq!(report.compacted, 9);
    assert_eq!((report.aged_out, report.over_size), (0, 0));
    assert_eq!(report.sessions, ["s-over"]);
    assert_eq!(db.with(|c| store::last_seq(c, "s-over")).unwrap(), 20);
    // The control keeps every event and is not marked.
    let control = db
        .with(|c| store::events(c, "c", 0, u64::MAX, u32::MAX))
        .unwrap();
    assert_eq!(control.len(), all.len());
    assert!(!db.with(|c| history_compacted(c, "c")).unwrap());

    // A second pass: the compacted session is within its limit now.
    let again = db.with(|c| run(c, 30, total as u64 - 1, now)).unwrap();
    assert!(!again.changed(), "{again:?}");
}
