//! Messages of Claude Code's stream-json protocol, both directions.
//! Reference: the Python package claude-agent-sdk (`_internal/query.py`).

use serde_json::{json, Value};

/// One line from the agent's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `system`/`init`: carries the agent's own session id (for `--resume`).
    Init {
        agent_session_id: String,
        raw: Value,
    },
    System(Value),
    Assistant(Value),
    /// A `user` message: tool results coming back.
    User(Value),
    Result(Value),
    StreamEvent(Value),
    /// The agent asks us something (`can_use_tool`, `hook_callback`, ...).
    ControlRequest {
        request_id: String,
        request: Value,
    },
    /// The answer to one of our control requests.
    ControlResponse {
        request_id: String,
        result: Result<Value, String>,
    },
    /// The agent withdrew a control request (e.g. after an interrupt).
    ControlCancel {
        request_id: String,
    },
    /// A line we do not know; kept, never fatal.
    Unknown(Value),
}

/// Parse one stdout line. Not JSON, or not an object: `Err` with why.
pub fn parse_line(line: &[u8]) -> Result<Incoming, String> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| format!("agent sent a line that is not JSON ({e})"))?;
    let Some(obj) = value.as_object() else {
        return Err("agent sent JSON that is not an object".into());
    };
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(match ty {
        "system" if obj.get("subtype").and_then(Value::as_str) == Some("init") => Incoming::Init {
            agent_session_id: text(obj.get("session_id")),
            raw: value,
        },
        "system" => Incoming::System(value),
        "assistant" => Incoming::Assistant(value),
        "user" => Incoming::User(value),
        "result" => Incoming::Result(value),
        "stream_event" => Incoming::StreamEvent(value),
        "control_request" => Incoming::ControlRequest {
            request_id: text(obj.get("request_id")),
            request: obj.get("request").cloned().unwrap_or(Value::Null),
        },
        "control_response" => {
            let response = obj.get("response").cloned().unwrap_or(Value::Null);
            let request_id = text(response.get("request_id"));
            let result = if response.get("subtype").and_then(Value::as_str) == Some("error") {
                Err(text(response.get("error")))
            } else {
                Ok(response.get("response").cloned().unwrap_or(Value::Null))
            };
            Incoming::ControlResponse { request_id, result }
        }
        "control_cancel_request" => Incoming::ControlCancel {
            request_id: text(obj.get("request_id")),
        },
        _ => Incoming::Unknown(value),
    })
}

pub fn user_message(prompt: &str) -> Value {
    json!({
        "type": "user",
        "session_id": "",
        "message": {"role": "user", "content": prompt},
        "parent_tool_use_id": null,
    })
}

pub fn control_request(request_id: &str, request: Value) -> Value {
    json!({"type": "control_request", "request_id": request_id, "request": request})
}

pub fn interrupt() -> Value {
    json!({"subtype": "interrupt"})
}

pub fn set_permission_mode(mode: &str) -> Value {
    json!({"subtype": "set_permission_mode", "mode": mode})
}

pub fn control_success(request_id: &str, response: Value) -> Value {
    json!({"type": "control_response", "response": {"subtype": "success", "request_id": request_id, "response": response}})
}

pub fn control_error(request_id: &str, error: &str) -> Value {
    json!({"type": "control_response", "response": {"subtype": "error", "request_id": request_id, "error": error}})
}

pub fn allow(updated_input: &Value) -> Value {
    json!({"behavior": "allow", "updatedInput": updated_input})
}

pub fn deny(message: &str) -> Value {
    json!({"behavior": "deny", "message": message})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let init = parse_line(br#"{"type":"system","subtype":"init","session_id":"abc"}"#).unwrap();
        assert!(
            matches!(init, Incoming::Init { ref agent_session_id, .. } if agent_session_id == "abc")
        );
        let req = parse_line(
            br#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{}}}"#,
        )
        .unwrap();
        assert!(
            matches!(req, Incoming::ControlRequest { ref request_id, .. } if request_id == "r1")
        );
        let ok = parse_line(br#"{"type":"control_response","response":{"subtype":"success","request_id":"q","response":{"a":1}}}"#).unwrap();
        assert_eq!(
            ok,
            Incoming::ControlResponse {
                request_id: "q".into(),
                result: Ok(json!({"a":1}))
            }
        );
        let err = parse_line(br#"{"type":"control_response","response":{"subtype":"error","request_id":"q","error":"nope"}}"#).unwrap();
        assert_eq!(
            err,
            Incoming::ControlResponse {
                request_id: "q".into(),
                result: Err("nope".into())
            }
        );
        assert!(matches!(
            parse_line(br#"{"type":"brand_new"}"#).unwrap(),
            Incoming::Unknown(_)
        ));
        assert!(parse_line(b"not json").is_err());
        assert!(parse_line(b"[1,2]").is_err());
    }
}
