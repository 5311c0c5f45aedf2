//! Push notifications through ntfy. By default a notification only says
//! that something waits and links to it in the web app (a `view` action
//! to `<public_url>/#/sessions/<id>`): reading the topic gives no power to
//! decide. Only when the operator opts in (`one_tap = true`) and the topic
//! is protected by an access token (`token_file`) does a permission's
//! notification also carry two `http` actions (Allow once, Deny) with a
//! single-use capability in a header — never the internal token and never
//! a token in the URL.

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::secret::Secret;

#[derive(Clone)]
pub struct Ntfy {
    url: String,
    topic: String,
    token: Option<Secret>,
    public_url: String,
    one_tap: bool,
    pub delay: Duration,
}

impl std::fmt::Debug for Ntfy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ntfy")
            .field("url", &self.url)
            .field("topic", &self.topic)
            .field("one_tap", &self.one_tap)
            .finish_non_exhaustive()
    }
}

/// What waits for the owner.
pub struct Notice<'a> {
    pub session_id: &'a str,
    pub perm_id: &'a str,
    pub tool: &'a str,
    /// One line (the audit summary).
    pub summary: &'a str,
    /// A question rather than a permission.
    pub question: bool,
}

impl Ntfy {
    pub fn new(cfg: &crate::config::NtfyConfig, token: Option<Secret>, public_url: String) -> Ntfy {
        Ntfy {
            url: cfg.url.trim_end_matches('/').to_string(),
            topic: cfg.topic.clone(),
            token,
            public_url: public_url.trim_end_matches('/').to_string(),
            one_tap: cfg.one_tap,
            delay: Duration::from_secs(cfg.delay_secs),
        }
    }

    /// One-tap actions are on: opted in, and the topic needs a token.
    pub fn one_tap_enabled(&self) -> bool {
        self.one_tap && self.token.is_some()
    }

    /// The JSON body published for `notice` (`capability`: only with
    /// one-tap on, for a permission).
    pub fn body(&self, notice: &Notice<'_>, capability: Option<&str>) -> Value {
        let view = json!({
            "action": "view",
            "label": "Open",
            "url": format!("{}/#/sessions/{}", self.public_url, notice.session_id),
            "clear": true,
        });
        let mut actions = vec![view];
        if let (Some(cap), false, true) = (capability, notice.question, self.one_tap_enabled()) {
            let respond = format!(
                "{}/api/permission/{}/respond",
                self.public_url, notice.perm_id
            );
            let action = |label: &str, decision: &str| {
                json!({
                    "action": "http",
                    "label": label,
                    "url": respond,
                    "method": "POST",
                    "headers": {"X-Approval-Token": cap, "Content-Type": "application/json"},
                    "body": json!({"decision": decision}).to_string(),
                    "clear": true,
                })
            };
            actions.push(action("Allow once", "allow"));
            actions.push(action("Deny", "deny"));
        }
        let (title, message) = if notice.question {
            (
                "A question is waiting".to_string(),
                format!(
                    "The agent asks: {}\nanswer it in the web app",
                    notice.summary
                ),
            )
        } else {
            (
                format!("{} wants to run", notice.tool),
                notice.summary.to_string(),
            )
        };
        json!({
            "topic": self.topic,
            "title": title,
            "message": format!("{message}\nsession {}", notice.session_id),
            "tags": ["lock"],
            "priority": 4,
            "actions": actions,
        })
    }

    /// Publish (blocking: call from the blocking pool).
    pub fn notify(&self, notice: &Notice<'_>, capability: Option<&str>) -> Result<()> {
        let body = self.body(notice, capability);
        let mut req = ureq::post(&self.url)
            .timeout(Duration::from_secs(10))
            .set("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {}", t.expose_str()));
        }
        req.send_string(&body.to_string())
            .map(|_| ())
            .map_err(|e| Error::internal(format!("ntfy publish to {} failed: {e}", self.url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntfy(one_tap: bool, token: bool) -> Ntfy {
        let cfg = crate::config::NtfyConfig {
            url: "https://ntfy.test".into(),
            topic: "t".into(),
            token_file: None,
            delay_secs: 0,
            one_tap,
        };
        Ntfy::new(
            &cfg,
            token.then(|| Secret::new("tk_secret".to_string())),
            "https://mitzo.test/".into(),
        )
    }

    const CAP: &str = "cafebabe0123456789";

    fn notice(question: bool) -> Notice<'static> {
        Notice {
            session_id: "2026-01-01-abc",
            perm_id: "p1",
            tool: "Bash",
            summary: "Run a command: $ ls",
            question,
        }
    }

    #[test]
    fn default_notification_carries_only_a_link() {
        // Without opt-in, or opted in without a token: a link, no capability,
        // whatever the caller passed.
        for n in [ntfy(false, false), ntfy(false, true), ntfy(true, false)] {
            let body = n.body(&notice(false), Some(CAP)).to_string();
            assert!(!body.contains(CAP), "{body}");
            assert!(!body.contains("X-Approval-Token"), "{body}");
            assert!(!body.contains("/respond"), "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let actions = v["actions"].as_array().unwrap();
            assert_eq!(actions.len(), 1);
            assert_eq!(actions[0]["action"], "view");
            assert_eq!(
                actions[0]["url"],
                "https://mitzo.test/#/sessions/2026-01-01-abc"
            );
        }
    }

    #[test]
    fn one_tap_needs_opt_in_and_a_token() {
        let v = ntfy(true, true).body(&notice(false), Some(CAP));
        let actions = v["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 3);
        assert_eq!(actions[1]["headers"]["X-Approval-Token"], CAP);
        assert_eq!(
            actions[1]["url"],
            "https://mitzo.test/api/permission/p1/respond"
        );
        // A question never gets one-tap actions.
        let q = ntfy(true, true).body(&notice(true), Some(CAP));
        assert_eq!(q["actions"].as_array().unwrap().len(), 1);
        assert_eq!(q["title"], "A question is waiting");
    }
}
