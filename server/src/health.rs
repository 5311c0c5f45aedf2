//! What `/healthz` and the sd_notify `STATUS=` line report beyond
//! "serving": today, the state directory's disk being full.
//!
//! The database handle notes each disk-full failure and each write that
//! succeeds; only a change of state is logged and announced, so a full disk
//! costs one log line, not one per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The reason given to callers (507 bodies), in `/healthz` and in `STATUS=`.
pub use crate::error::DISK_FULL;

#[derive(Default)]
pub struct Health {
    disk_full: AtomicBool,
    /// The `STATUS=` line while healthy ("serving on ..."), restored when
    /// the degradation clears.
    serving: Mutex<String>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("degraded", &self.reason())
            .finish()
    }
}

impl Health {
    /// Why the server is degraded, or `None` when it is healthy.
    pub fn reason(&self) -> Option<&'static str> {
        self.disk_full.load(Ordering::Acquire).then_some(DISK_FULL)
    }

    /// The healthy status line; announced again when a degradation clears.
    pub fn set_serving_status(&self, status: &str) {
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = status.to_string();
    }

    /// The `STATUS=` line for the current state.
    pub fn status_line(&self) -> String {
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match self.reason() {
            None => serving,
            Some(reason) if serving.is_empty() => format!("degraded: {reason}"),
            Some(reason) => format!("degraded: {reason}; {serving}"),
        }
    }

    /// A write failed because the disk is full (SQLITE_FULL / ENOSPC).
    pub fn note_disk_full(&self, detail: &dyn std::fmt::Display) {
        if !self.disk_full.swap(true, Ordering::AcqRel) {
            tracing::error!(
                error = %detail,
                "{DISK_FULL}: writes are refused with 507 until space is freed"
            );
            crate::systemd::notify_status(&self.status_line());
        }
    }

    /// A write reached the disk: a full disk, if noted, has room again.
    pub fn note_write_ok(&self) {
        // The load keeps the common, healthy case to one read.
        if self.disk_full.load(Ordering::Acquire) && self.disk_full.swap(false, Ordering::AcqRel) {
            tracing::warn!("the state directory's disk has room again; writes succeed");
            crate::systemd::notify_status(&self.status_line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrades_on_disk_full_and_clears_on_a_write() {
        let h = Health::default();
        h.set_serving_status("serving on 127.0.0.1:1");
        assert_eq!(h.reason(), None);
        assert_eq!(h.status_line(), "serving on 127.0.0.1:1");
        h.note_disk_full(&"SQLITE_FULL");
        h.note_disk_full(&"SQLITE_FULL again");
        assert_eq!(h.reason(), Some(DISK_FULL));
        assert_eq!(
            h.status_line(),
            format!("degraded: {DISK_FULL}; serving on 127.0.0.1:1")
        );
        h.note_write_ok();
        assert_eq!(h.reason(), None);
        assert_eq!(h.status_line(), "serving on 127.0.0.1:1");
    }
}
