use super::*;
use serde_json::json;

const GENERATED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/src/protocol.gen.ts");

#[test]
fn generated_typescript_is_current() {
    let want = typescript();
    if std::env::var_os("MITZO_UPDATE_PROTOCOL_TS").is_some() {
        if let Some(dir) = std::path::Path::new(GENERATED).parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(GENERATED, &want).unwrap();
    }
    let have = std::fs::read_to_string(GENERATED).unwrap_or_default();
    assert!(
        have == want,
        "{GENERATED} is stale: run MITZO_UPDATE_PROTOCOL_TS=1 cargo test -p mitzo-protocol"
    );
}

#[test]
fn envelope_and_tag_are_flat() {
    let f = ServerFrame::new(
        Some("s1"),
        7,
        ServerEvent::BlockDelta {
            message_id: "m".into(),
            index: 2,
            delta_type: DeltaType::InputJson,
            text: "{\"a".into(),
        },
    );
    let v: Value = serde_json::from_str(&f.to_json()).unwrap();
    assert_eq!(v["v"], 2);
    assert_eq!(v["sessionId"], "s1");
    assert_eq!(v["seq"], 7);
    assert_eq!(v["type"], "block_delta");
    assert_eq!(v["deltaType"], "input_json");
    assert_eq!(v["messageId"], "m");
    assert!(v["ts"].as_i64().unwrap() > 0);
    assert_eq!(ServerEvent::Interrupted {}.kind(), "interrupted");
}

#[test]
fn kind_matches_the_serialised_tag() {
    let samples = [
        ServerEvent::error("x"),
        ServerEvent::Interrupted {},
        ServerEvent::PermissionTimeout {
            perm_id: "p".into(),
        },
        ServerEvent::TitleChanged { title: "t".into() },
        ServerEvent::NetworkRequest {
            perm_id: "p".into(),
            host: "h.example".into(),
            port: 443,
            expires_at: 1,
        },
        ServerEvent::NetworkRefused {
            host: "h.example".into(),
            port: 443,
            reason: "r".into(),
        },
        ServerEvent::SessionStateChanged {
            state: SessionState::RequiresAction,
        },
    ];
    for e in samples {
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.kind());
    }
}

#[test]
fn client_frames_parse_and_refuse_unknowns() {
    let f: ClientFrame = serde_json::from_value(json!({
        "type": "permission_response", "sessionId": "s", "permId": "p", "decision": "once"
    }))
    .unwrap();
    assert!(matches!(
        f,
        ClientFrame::PermissionResponse {
            decision: Decision::Allow,
            message: None,
            ..
        }
    ));
    let f: ClientFrame = serde_json::from_value(json!({
        "type": "permission_response", "sessionId": "s", "permId": "p", "decision": "allow_session"
    }))
    .unwrap();
    assert!(matches!(
        f,
        ClientFrame::PermissionResponse {
            decision: Decision::AllowSession,
            ..
        }
    ));
    let f: ClientFrame = serde_json::from_value(json!({
        "type": "question_response", "sessionId": "s", "permId": "p", "answers": {"Which?": "A"}
    }))
    .unwrap();
    assert_eq!(f.session_id(), Some("s"));
    for bad in [
        json!({"type": "teleport"}),
        json!({"type": "stop", "sessionId": "s", "extra": 1}),
        json!({"type": "permission_response", "sessionId": "s", "permId": "p", "decision": "maybe"}),
        json!({"type": "send", "prompt": "x", "mode": "yolo"}),
    ] {
        assert!(
            serde_json::from_value::<ClientFrame>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn an_event_page_carries_stored_frames_as_they_were_written() {
    let frame = ServerFrame::new(
        Some("s1"),
        7,
        ServerEvent::TitleChanged { title: "t".into() },
    );
    let written = frame.to_json();
    let page = EventPage {
        events: vec![StoredFrame::new(written.clone()).unwrap()],
        last_seq: 7,
        has_more: true,
    };
    let text = serde_json::to_string(&page).unwrap();
    assert_eq!(
        text,
        format!(r#"{{"events":[{written}],"lastSeq":7,"hasMore":true}}"#)
    );
    assert_eq!(page.events[0].json(), written);
    assert!(StoredFrame::new("{not json".into()).is_none());
}
