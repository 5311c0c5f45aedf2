//! Login rate limit: 5 attempts a minute per client address, and a global
//! backoff after 10 failures in a row. Memory is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PER_CLIENT_ATTEMPTS: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
const GLOBAL_FAILURES_BEFORE_BACKOFF: u32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const MAX_TRACKED_CLIENTS: usize = 4096;

pub struct LoginLimiter {
    inner: Mutex<Inner>,
}

struct Inner {
    attempts: HashMap<String, Vec<Instant>>,
    consecutive_failures: u32,
    locked_until: Option<Instant>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            inner: Mutex::new(Inner {
                attempts: HashMap::new(),
                consecutive_failures: 0,
                locked_until: None,
            }),
        }
    }
}

impl LoginLimiter {
    /// Count an attempt from `client`; `Err(retry_after)` when over a limit.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = inner.locked_until {
            if until > now {
                return Err(until - now);
            }
        }
        if inner.attempts.len() >= MAX_TRACKED_CLIENTS && !inner.attempts.contains_key(client) {
            inner
                .attempts
                .retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if inner.attempts.len() >= MAX_TRACKED_CLIENTS {
                // Still full of live entries: under a spread-out attack, every
                // newcomer shares one bucket rather than growing the map.
                return Self::admit(&mut inner, "<overflow>", now);
            }
        }
        Self::admit(&mut inner, client, now)
    }

    fn admit(inner: &mut Inner, client: &str, now: Instant) -> Result<(), Duration> {
        let times = inner.attempts.entry(client.to_string()).or_default();
        times.retain(|t| now.duration_since(*t) < WINDOW);
        if times.len() >= PER_CLIENT_ATTEMPTS {
            let oldest = times[0];
            return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        times.push(now);
        Ok(())
    }

    pub fn record_failure(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        if inner.consecutive_failures >= GLOBAL_FAILURES_BEFORE_BACKOFF {
            let over = inner.consecutive_failures - GLOBAL_FAILURES_BEFORE_BACKOFF;
            let backoff = Duration::from_secs(1u64 << over.min(9)).min(MAX_BACKOFF);
            inner.locked_until = Some(Instant::now() + backoff);
        }
    }

    pub fn record_success(&self, client: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.consecutive_failures = 0;
        inner.locked_until = None;
        inner.attempts.remove(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_per_minute_per_client() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.check_at("a", t0).is_ok());
        }
        let wait = l.check_at("a", t0).unwrap_err();
        assert!(wait <= WINDOW && wait > Duration::from_secs(50));
        assert!(
            l.check_at("b", t0).is_ok(),
            "other clients are not affected"
        );
        assert!(l.check_at("a", t0 + WINDOW).is_ok(), "window slides");
    }

    #[test]
    fn global_backoff_after_ten_failures() {
        let l = LoginLimiter::default();
        for _ in 0..9 {
            l.record_failure();
        }
        assert!(l.check("fresh").is_ok());
        l.record_failure();
        assert!(l.check("another").is_err());
        l.record_success("x");
        assert!(l.check("another").is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_CLIENTS * 2) {
            let _ = l.check_at(&format!("c{i}"), t0);
        }
        let n = l.inner.lock().unwrap().attempts.len();
        assert!(n <= MAX_TRACKED_CLIENTS + 1, "{n}");
    }
}
