//! The translation, tested with recorded transcripts of the real CLI.

use super::*;

/// The agent's stdout lines of a recorded transcript.
fn recorded(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/../tests/e2e/transcripts/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["dir"] == "out")
        .map(|r| r["msg"].clone())
        .collect()
}

fn run(lines: &[Value]) -> Vec<Out> {
    let mut t = Translator::new();
    let mut out = Vec::new();
    for l in lines {
        out.extend(match l["type"].as_str().unwrap_or("") {
            "stream_event" => t.stream_event(l),
            "assistant" => t.assistant(l),
            "user" => t.user(l),
            "result" => t.finish(),
            _ => Vec::new(),
        });
    }
    out.extend(t.finish());
    out
}

/// Every block that starts ends, once, in order, and its streamed text
/// equals its final text.
fn check_blocks(out: &[Out]) -> Vec<ServerEvent> {
    let mut open: BTreeMap<(String, u32), String> = BTreeMap::new();
    let mut ended = Vec::new();
    for o in out {
        match o {
            Out::Publish(ServerEvent::BlockStart {
                message_id, index, ..
            }) => {
                assert!(open
                    .insert((message_id.clone(), *index), String::new())
                    .is_none());
            }
            Out::Delta {
                message_id,
                index,
                text,
                ..
            } => open
                .get_mut(&(message_id.clone(), *index))
                .expect("delta for an open block")
                .push_str(text),
            Out::Publish(
                e @ ServerEvent::BlockEnd {
                    message_id,
                    index,
                    text,
                    aborted,
                    ..
                },
            ) => {
                let streamed = open
                    .remove(&(message_id.clone(), *index))
                    .expect("end of an open block");
                if let (Some(t), None) = (text, aborted) {
                    assert_eq!(&streamed, t);
                }
                ended.push(e.clone());
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "blocks never ended: {open:?}");
    ended
}

#[test]
fn recorded_streaming_turn_becomes_blocks_with_deltas() {
    let out = run(&recorded("allow_partial"));
    let deltas = out
        .iter()
        .filter(|o| matches!(o, Out::Delta { .. }))
        .count();
    assert!(deltas > 0, "the recorded stream has deltas: {out:?}");
    let ended = check_blocks(&out);
    let tool = ended
        .iter()
        .find(|e| {
            matches!(
                e,
                ServerEvent::BlockEnd {
                    block_type: BlockType::ToolUse,
                    ..
                }
            )
        })
        .expect("a tool_use block");
    let ServerEvent::BlockEnd {
        tool_name, input, ..
    } = tool
    else {
        unreachable!()
    };
    assert_eq!(tool_name.as_deref(), Some("Bash"));
    assert!(input.as_ref().is_some_and(|i| i["command"].is_string()));
    let starts = out
        .iter()
        .filter(|o| matches!(o, Out::Publish(ServerEvent::MessageStart { .. })))
        .count();
    let ends = out
        .iter()
        .filter(|o| matches!(o, Out::Publish(ServerEvent::MessageEnd { .. })))
        .count();
    assert_eq!(starts, ends);
    assert!(out
        .iter()
        .any(|o| matches!(o, Out::Publish(ServerEvent::ToolResult { .. }))));
}

#[test]
fn recorded_turns_without_partial_messages_number_their_blocks() {
    for name in ["deny", "control_requests", "interrupt_pending_permission"] {
        let lines = recorded(name);
        let out = run(&lines);
        check_blocks(&out);
        // One message id with several assistant lines: indexes 0, 1, ...
        let mut seen = std::collections::HashSet::new();
        for o in &out {
            if let Out::Publish(ServerEvent::BlockStart {
                message_id, index, ..
            }) = o
            {
                assert!(
                    seen.insert((message_id.clone(), *index)),
                    "{name}: block {message_id}/{index} twice"
                );
            }
        }
        assert!(!seen.is_empty(), "{name}: no blocks");
    }
}

#[test]
fn interrupted_stream_closes_its_block_as_aborted() {
    let out = run(&recorded("interrupt_streaming"));
    check_blocks(&out);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Out::Publish(ServerEvent::BlockEnd {
                aborted: Some(true),
                ..
            })
        )) || out.iter().any(|o| matches!(
            o,
            Out::Publish(ServerEvent::MessageEnd { stop_reason: Some(r), .. }) if r == "aborted"
        )),
        "{out:?}"
    );
}

#[test]
fn long_text_is_clipped() {
    let long = "é".repeat(MAX_EVENT_TEXT);
    let v = clip(&serde_json::json!({"a": [long]}));
    let s = v["a"][0].as_str().unwrap();
    assert!(s.len() < MAX_EVENT_TEXT + 100 && s.contains("more bytes not shown"));
}

fn stream(event: Value) -> Value {
    serde_json::json!({"type": "stream_event", "event": event, "api_message_id": "msg_t"})
}

#[test]
fn thinking_streams_as_thinking_deltas_and_ends_whole() {
    use serde_json::json;
    let lines = vec![
        stream(json!({"type": "message_start", "message": {"id": "msg_t", "model": "m"}})),
        stream(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""}})),
        stream(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me "}})),
        stream(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "think."}})),
        // The signature is not text a person reads: no delta.
        stream(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "signature_delta", "signature": "c2ln"}})),
        json!({"type": "assistant", "message": {"id": "msg_t", "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"}]}}),
        stream(json!({"type": "content_block_stop", "index": 0})),
        stream(json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "text", "text": ""}})),
        stream(json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "text_delta", "text": "Yes."}})),
        stream(json!({"type": "content_block_stop", "index": 1})),
        stream(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})),
        stream(json!({"type": "message_stop"})),
    ];
    let out = run(&lines);
    let deltas: Vec<(u32, DeltaType, &str)> = out
        .iter()
        .filter_map(|o| match o {
            Out::Delta {
                index,
                delta_type,
                text,
                ..
            } => Some((*index, *delta_type, text.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas,
        vec![
            (0, DeltaType::Thinking, "Let me "),
            (0, DeltaType::Thinking, "think."),
            (1, DeltaType::Text, "Yes."),
        ]
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Out::Publish(ServerEvent::BlockStart {
            index: 0,
            block_type: BlockType::Thinking,
            ..
        })
    )));
    let ended = check_blocks(&out);
    let texts: Vec<(BlockType, Option<&str>)> = ended
        .iter()
        .map(|e| match e {
            ServerEvent::BlockEnd {
                block_type, text, ..
            } => (*block_type, text.as_deref()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            (BlockType::Thinking, Some("Let me think.")),
            (BlockType::Text, Some("Yes."))
        ]
    );
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Out::Publish(ServerEvent::MessageEnd { .. })))
            .count(),
        1
    );
}
