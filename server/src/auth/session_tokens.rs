//! Per-session tokens: handed to one agent in its environment, valid only
//! while that session lives.

use std::sync::RwLock;

use crate::secret::{random_hex_token, Secret};

pub const PREFIX: &str = "mzs_";

#[derive(Default)]
pub struct SessionTokens {
    // A handful of live sessions: a linear constant-time scan beats a map
    // keyed by the secret itself.
    entries: RwLock<Vec<(Secret, String)>>,
}

impl SessionTokens {
    /// A new token for `session_id` (replacing any earlier one).
    pub fn issue(&self, session_id: &str) -> Secret {
        let token = Secret::new(format!("{PREFIX}{}", random_hex_token().expose_str()));
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(_, id)| id != session_id);
        entries.push((token.clone(), session_id.to_string()));
        token
    }

    pub fn revoke(&self, session_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(_, id)| id != session_id);
    }

    pub fn lookup(&self, presented: &str) -> Option<String> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for (secret, id) in entries.iter() {
            if secret.matches(presented.as_bytes()) {
                found = Some(id.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_dies_with_session() {
        let t = SessionTokens::default();
        let a = t.issue("s1");
        let b = t.issue("s2");
        assert_eq!(t.lookup(a.expose_str()).as_deref(), Some("s1"));
        assert_eq!(t.lookup(b.expose_str()).as_deref(), Some("s2"));
        t.revoke("s1");
        assert_eq!(t.lookup(a.expose_str()), None);
        assert_eq!(t.lookup("mzs_nope"), None);
    }
}
