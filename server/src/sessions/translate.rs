//! From the agent's messages to session events: pure (no I/O, no locks),
//! so it is tested with recorded transcripts.
//!
//! With `--include-partial-messages` Claude Code streams each message as
//! `stream_event`s (`message_start`, `content_block_start`, deltas,
//! `content_block_stop`, `message_delta`, `message_stop`) and also sends
//! each complete block as an `assistant` line before its
//! `content_block_stop`. The stream is what we follow: a block becomes a
//! persisted `block_start`, live deltas, and a persisted `block_end` with
//! the whole text or tool input. Without partial messages (or for a
//! message that was not streamed) each `assistant` line is one block and
//! makes the same events, its text as a single delta.

use std::collections::BTreeMap;

use serde_json::Value;

use mitzo_protocol::{BlockType, DeltaType, ServerEvent};

/// Longest string of agent output kept in one event: events are held in
/// memory (ring, broadcast, outboxes), so their size is bounded in bytes,
/// not only in number. The agent's own transcript keeps the whole text.
pub const MAX_EVENT_TEXT: usize = 256 * 1024;

/// What the translation asks the session to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Persist and broadcast.
    Publish(ServerEvent),
    /// Stream live into an open block.
    Delta {
        message_id: String,
        index: u32,
        delta_type: DeltaType,
        text: String,
    },
}

#[derive(Debug)]
struct Block {
    block_type: BlockType,
    tool_name: Option<String>,
    tool_id: Option<String>,
    text: String,
    /// The complete block from the `assistant` line, when it came.
    full: Option<Value>,
}

#[derive(Debug)]
struct Message {
    id: String,
    /// Followed through `stream_event`s (else: one `assistant` line a block).
    streamed: bool,
    blocks: BTreeMap<u32, Block>,
    next_index: u32,
    stop_reason: Option<String>,
    aborted: bool,
}

/// The state of one agent's output: the message being assembled.
#[derive(Debug, Default)]
pub struct Translator {
    current: Option<Message>,
}

fn text_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn block_text(block_type: BlockType, v: &Value) -> Option<String> {
    match block_type {
        BlockType::Text => text_field(v, "text").map(str::to_string),
        BlockType::Thinking => text_field(v, "thinking").map(str::to_string),
        _ => None,
    }
}

impl Translator {
    pub fn new() -> Translator {
        Translator::default()
    }

    /// One `stream_event` line.
    pub fn stream_event(&mut self, v: &Value) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(event) = v.get("event") else {
            return out;
        };
        let index = event
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| i.min(u32::MAX as u64) as u32);
        match text_field(event, "type").unwrap_or("") {
            "message_start" => {
                self.close(&mut out);
                let message = event.get("message").unwrap_or(&Value::Null);
                let id = text_field(message, "id")
                    .or_else(|| text_field(v, "api_message_id"))
                    .unwrap_or("")
                    .to_string();
                out.push(Out::Publish(ServerEvent::MessageStart {
                    message_id: id.clone(),
                    model: text_field(message, "model").map(str::to_string),
                }));
                self.current = Some(Message {
                    id,
                    streamed: true,
                    blocks: BTreeMap::new(),
                    next_index: 0,
                    stop_reason: None,
                    aborted: false,
                });
            }
            "content_block_start" => {
                let (Some(msg), Some(index)) = (self.current.as_mut(), index) else {
                    return out;
                };
                if !msg.streamed || msg.blocks.contains_key(&index) {
                    return out;
                }
                let cb = event.get("content_block").unwrap_or(&Value::Null);
                let block_type = BlockType::parse(text_field(cb, "type").unwrap_or(""));
                let block = Block {
                    block_type,
                    tool_name: text_field(cb, "name").map(str::to_string),
                    tool_id: text_field(cb, "id").map(str::to_string),
                    text: String::new(),
                    full: None,
                };
                out.push(Out::Publish(ServerEvent::BlockStart {
                    message_id: msg.id.clone(),
                    index,
                    block_type,
                    tool_name: block.tool_name.clone(),
                    tool_id: block.tool_id.clone(),
                }));
                msg.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let (Some(msg), Some(index)) = (self.current.as_mut(), index) else {
                    return out;
                };
                let Some(block) = msg.blocks.get_mut(&index) else {
                    return out;
                };
                let delta = event.get("delta").unwrap_or(&Value::Null);
                let (delta_type, text) = match text_field(delta, "type").unwrap_or("") {
                    "text_delta" => (DeltaType::Text, text_field(delta, "text")),
                    "thinking_delta" => (DeltaType::Thinking, text_field(delta, "thinking")),
                    "input_json_delta" => (DeltaType::InputJson, text_field(delta, "partial_json")),
                    _ => return out,
                };
                let Some(text) = text.filter(|t| !t.is_empty()) else {
                    return out;
                };
                if block.text.len() + text.len() <= MAX_EVENT_TEXT {
                    block.text.push_str(text);
                }
                out.push(Out::Delta {
                    message_id: msg.id.clone(),
                    index,
                    delta_type,
                    text: text.to_string(),
                });
            }
            "content_block_stop" => {
                let (Some(msg), Some(index)) = (self.current.as_mut(), index) else {
                    return out;
                };
                if let Some(block) = msg.blocks.remove(&index) {
                    out.push(Out::Publish(end_of(&msg.id, index, block, false)));
                }
            }
            "message_delta" => {
                if let Some(msg) = self.current.as_mut() {
                    msg.stop_reason = event
                        .get("delta")
                        .and_then(|d| text_field(d, "stop_reason"))
                        .map(str::to_string);
                }
            }
            "message_stop" => self.close(&mut out),
            _ => {}
        }
        out
    }

    /// One `assistant` line.
    pub fn assistant(&mut self, v: &Value) -> Vec<Out> {
        let mut out = Vec::new();
        let message = v.get("message").unwrap_or(&Value::Null);
        let id = text_field(message, "id").unwrap_or("").to_string();
        let aborted = v.get("aborted").and_then(Value::as_bool) == Some(true);
        let blocks: Vec<Value> = message
            .get("content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(msg) = self.current.as_mut().filter(|m| m.id == id && m.streamed) {
            // The complete form of blocks being streamed: kept for their end.
            msg.aborted |= aborted;
            for b in blocks {
                let ty = BlockType::parse(text_field(&b, "type").unwrap_or(""));
                if let Some(open) = msg
                    .blocks
                    .values_mut()
                    .find(|o| o.block_type == ty && o.full.is_none())
                {
                    open.full = Some(b);
                }
            }
            return out;
        }
        if self
            .current
            .as_ref()
            .is_some_and(|m| m.id != id || m.streamed)
        {
            self.close(&mut out);
        }
        if self.current.is_none() {
            out.push(Out::Publish(ServerEvent::MessageStart {
                message_id: id.clone(),
                model: text_field(message, "model").map(str::to_string),
            }));
            self.current = Some(Message {
                id: id.clone(),
                streamed: false,
                blocks: BTreeMap::new(),
                next_index: 0,
                stop_reason: None,
                aborted: false,
            });
        }
        let Some(msg) = self.current.as_mut() else {
            return out;
        };
        msg.aborted |= aborted;
        msg.stop_reason = text_field(message, "stop_reason").map(str::to_string);
        for b in blocks {
            let index = msg.next_index;
            msg.next_index += 1;
            let block_type = BlockType::parse(text_field(&b, "type").unwrap_or(""));
            let block = Block {
                block_type,
                tool_name: text_field(&b, "name").map(str::to_string),
                tool_id: text_field(&b, "id").map(str::to_string),
                text: String::new(),
                full: Some(b.clone()),
            };
            out.push(Out::Publish(ServerEvent::BlockStart {
                message_id: id.clone(),
                index,
                block_type,
                tool_name: block.tool_name.clone(),
                tool_id: block.tool_id.clone(),
            }));
            if let Some(text) = block_text(block_type, &b).filter(|t| !t.is_empty()) {
                out.push(Out::Delta {
                    message_id: id.clone(),
                    index,
                    delta_type: if block_type == BlockType::Text {
                        DeltaType::Text
                    } else {
                        DeltaType::Thinking
                    },
                    text: clip_str(&text),
                });
            }
            out.push(Out::Publish(end_of(&id, index, block, aborted)));
        }
        out
    }

    /// A `user` line: tool results coming back (also the end of the
    /// message that called the tools).
    pub fn user(&mut self, v: &Value) -> Vec<Out> {
        let mut out = Vec::new();
        let blocks = v
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array);
        for block in blocks.into_iter().flatten() {
            if text_field(block, "type") != Some("tool_result") {
                continue;
            }
            if self.current.as_ref().is_some_and(|m| !m.streamed) {
                self.close(&mut out);
            }
            let result = match block.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => Value::String(
                    parts
                        .iter()
                        .filter_map(|p| text_field(p, "text"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                other => other.cloned().unwrap_or(Value::Null),
            };
            out.push(Out::Publish(ServerEvent::ToolResult {
                tool_id: text_field(block, "tool_use_id").unwrap_or("").to_string(),
                result: clip(&result),
                is_error: block.get("is_error").and_then(Value::as_bool) == Some(true),
            }));
        }
        out
    }

    /// The turn ended (a `result`, the agent's exit): whatever is open is
    /// closed, as aborted when it never completed.
    pub fn finish(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        self.close(&mut out);
        out
    }

    fn close(&mut self, out: &mut Vec<Out>) {
        let Some(msg) = self.current.take() else {
            return;
        };
        // Blocks still open were cut short (an interrupt mid-stream).
        for (index, block) in msg.blocks {
            out.push(Out::Publish(end_of(&msg.id, index, block, true)));
        }
        out.push(Out::Publish(ServerEvent::MessageEnd {
            message_id: msg.id,
            stop_reason: msg
                .stop_reason
                .or(msg.aborted.then(|| "aborted".to_string())),
        }));
    }
}

/// The `block_end` of a block: the complete block's content when the
/// agent sent it, else what was streamed.
fn end_of(message_id: &str, index: u32, block: Block, aborted: bool) -> ServerEvent {
    let full = block.full.as_ref();
    let (text, input) = match block.block_type {
        BlockType::Text | BlockType::Thinking => (
            Some(clip_str(
                &full
                    .and_then(|f| block_text(block.block_type, f))
                    .unwrap_or(block.text),
            )),
            None,
        ),
        BlockType::ToolUse => {
            let input = full
                .and_then(|f| f.get("input").cloned())
                .or_else(|| serde_json::from_str::<Value>(&block.text).ok())
                .unwrap_or_else(|| Value::String(block.text.clone()));
            (None, Some(clip(&input)))
        }
        BlockType::Other => (None, None),
    };
    ServerEvent::BlockEnd {
        message_id: message_id.to_string(),
        index,
        block_type: block.block_type,
        text,
        tool_name: block.tool_name,
        tool_id: block.tool_id,
        input,
        aborted: aborted.then_some(true),
    }
}

pub fn clip_str(text: &str) -> String {
    if text.len() <= MAX_EVENT_TEXT {
        return text.to_string();
    }
    let mut end = MAX_EVENT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes not shown]",
        &text[..end],
        text.len() - end
    )
}

/// `v` with every string longer than `MAX_EVENT_TEXT` cut (on a char
/// boundary) and marked.
pub fn clip(v: &Value) -> Value {
    match v {
        Value::String(text) => Value::String(clip_str(text)),
        Value::Array(items) => Value::Array(items.iter().map(clip).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), clip(v))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
