//! Push notifications through ntfy: a pending permission goes out with two
//! `http` actions (Allow once, Deny) that carry a single-use capability in a
//! header, never the internal token and never a token in the URL.

use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::secret::Secret;

#[derive(Clone)]
pub struct Ntfy {
    url: String,
    topic: String,
    token: Option<Secret>,
    public_url: String,
    pub delay: Duration,
}

impl std::fmt::Debug for Ntfy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ntfy")
            .field("url", &self.url)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Ntfy {
    pub fn new(cfg: &crate::config::NtfyConfig, token: Option<Secret>, public_url: String) -> Ntfy {
        Ntfy {
            url: cfg.url.trim_end_matches('/').to_string(),
            topic: cfg.topic.clone(),
            token,
            public_url: public_url.trim_end_matches('/').to_string(),
            delay: Duration::from_secs(cfg.delay_secs),
        }
    }

    /// Publish one permission request (blocking: call from the blocking pool).
    pub fn notify_permission(
        &self,
        session_id: &str,
        perm_id: &str,
        tool: &str,
        summary: &str,
        capability: &str,
    ) -> Result<()> {
        let respond = format!("{}/api/permission/{perm_id}/respond", self.public_url);
        let action = |label: &str, decision: &str| {
            json!({
                "action": "http",
                "label": label,
                "url": respond,
                "method": "POST",
                "headers": {"X-Approval-Token": capability, "Content-Type": "application/json"},
                "body": json!({"decision": decision}).to_string(),
                "clear": true,
            })
        };
        let body = json!({
            "topic": self.topic,
            "title": format!("{tool} wants to run"),
            "message": format!("{summary}\nsession {session_id}"),
            "tags": ["lock"],
            "priority": 4,
            "actions": [action("Allow once", "once"), action("Deny", "deny")],
        });
        let mut req = ureq::post(&self.url)
            .timeout(Duration::from_secs(10))
            .set("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {}", t.expose_str()));
        }
        req.send_string(&body.to_string())
            .map(|_| ())
            .map_err(|e| Error::Internal(format!("ntfy publish to {} failed: {e}", self.url)))
    }
}
