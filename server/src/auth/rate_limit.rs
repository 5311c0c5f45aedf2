//! Login rate limit: 5 attempts a minute per client address, and a global
//! backoff after 10 failures in a row. An attempt takes its slot when it
//! arrives, before the passphrase is verified: at most as many attempts are
//! in flight as failures remain before the lock, so however many arrive at
//! once, the lock engages at the 10th failure and no more verifications run
//! until it expires (then one at a time). Memory is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PER_CLIENT_ATTEMPTS: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
const GLOBAL_FAILURES_BEFORE_BACKOFF: u32 = 10;
/// The lock after the 10th failure in a row; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const MAX_TRACKED_CLIENTS: usize = 4096;
/// What a refused attempt is told to wait when the slots are all taken by
/// attempts still being verified.
const BUSY_RETRY: Duration = Duration::from_secs(1);

pub struct LoginLimiter {
    inner: Mutex<Inner>,
}

struct Inner {
    attempts: HashMap<String, Vec<Instant>>,
    consecutive_failures: u32,
    /// Admitted attempts whose outcome is not known yet.
    in_flight: u32,
    locked_until: Option<Instant>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            inner: Mutex::new(Inner {
                attempts: HashMap::new(),
                consecutive_failures: 0,
                in_flight: 0,
                locked_until: None,
            }),
        }
    }
}

/// An admitted login attempt holding its slot. Report its outcome with
/// [`Attempt::failed`] or [`Attempt::succeeded`]; dropped without one (the
/// request was refused later, or went away) it frees the slot and counts as
/// nothing.
pub struct Attempt {
    limiter: Arc<LoginLimiter>,
    client: String,
    open: bool,
}

impl Attempt {
    /// Whether the global lock engaged while this attempt waited (for an
    /// argon2 permit): `Err(retry_after)` then, and the attempt should be
    /// dropped unverified.
    pub fn recheck(&self) -> Result<(), Duration> {
        let inner = self.limiter.lock();
        match inner.locked_until {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    pub fn failed(mut self) {
        self.open = false;
        let mut inner = self.limiter.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        if inner.consecutive_failures >= GLOBAL_FAILURES_BEFORE_BACKOFF {
            let over = inner.consecutive_failures - GLOBAL_FAILURES_BEFORE_BACKOFF;
            let backoff = FIRST_BACKOFF
                .saturating_mul(1u32 << over.min(9))
                .min(MAX_BACKOFF);
            inner.locked_until = Some(Instant::now() + backoff);
        }
    }

    pub fn succeeded(mut self) {
        self.open = false;
        let mut inner = self.limiter.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        inner.consecutive_failures = 0;
        inner.locked_until = None;
        inner.attempts.remove(&self.client);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.open {
            let mut inner = self.limiter.lock();
            inner.in_flight = inner.in_flight.saturating_sub(1);
        }
    }
}

impl LoginLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit an attempt from `client`, taking its slot; `Err(retry_after)`
    /// when locked, when `client` is over its limit, or when the attempts
    /// already in flight could by themselves reach the lock.
    pub fn begin(self: &Arc<Self>, client: &str) -> Result<Attempt, Duration> {
        self.begin_at(client, Instant::now())
    }

    fn begin_at(self: &Arc<Self>, client: &str, now: Instant) -> Result<Attempt, Duration> {
        let mut inner = self.lock();
        if let Some(until) = inner.locked_until {
            if until > now {
                return Err(until - now);
            }
        }
        // Slots left before the lock; past it, one attempt at a time.
        let budget = GLOBAL_FAILURES_BEFORE_BACKOFF
            .saturating_sub(inner.consecutive_failures)
            .max(1);
        if inner.in_flight >= budget {
            return Err(BUSY_RETRY);
        }
        let key = if inner.attempts.len() >= MAX_TRACKED_CLIENTS
            && !inner.attempts.contains_key(client)
        {
            inner
                .attempts
                .retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if inner.attempts.len() >= MAX_TRACKED_CLIENTS {
                // Still full of live entries: under a spread-out attack, every
                // newcomer shares one bucket rather than growing the map.
                "<overflow>"
            } else {
                client
            }
        } else {
            client
        };
        Self::admit(&mut inner, key, now)?;
        inner.in_flight += 1;
        Ok(Attempt {
            limiter: self.clone(),
            client: key.to_string(),
            open: true,
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Arc<LoginLimiter> {
        Arc::new(LoginLimiter::default())
    }

    #[test]
    fn five_per_minute_per_client() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..5 {
            l.begin_at("a", t0).unwrap().succeeded();
        }
        // Succeeded attempts forget the client; failures do not.
        for _ in 0..5 {
            l.begin_at("a", t0).unwrap().failed();
        }
        let wait = l.begin_at("a", t0).err().unwrap();
        assert!(wait <= WINDOW && wait > Duration::from_secs(50));
        assert!(
            l.begin_at("b", t0).is_ok(),
            "other clients are not affected"
        );
        assert!(l.begin_at("a", t0 + WINDOW).is_ok(), "window slides");
    }

    #[test]
    fn global_backoff_after_ten_failures() {
        let l = limiter();
        for i in 0..9 {
            l.begin(&format!("c{i}")).unwrap().failed();
        }
        assert!(l.lock().locked_until.is_none());
        let last = l.begin("fresh").unwrap();
        last.failed();
        assert!(l.begin("another").is_err());
        l.lock().locked_until = Some(Instant::now());
        // Past the lock: one at a time, and a success resets everything.
        let one = l.begin("another").unwrap();
        assert!(l.begin("third").is_err(), "a second attempt past the lock");
        one.succeeded();
        assert_eq!(l.lock().consecutive_failures, 0);
        assert!(l.begin("another").is_ok());
    }

    #[test]
    fn slots_are_taken_before_verification() {
        let l = limiter();
        // 200 attempts arrive before any finishes: 10 are admitted.
        let admitted: Vec<Attempt> = (0..200)
            .filter_map(|i| l.begin(&format!("10.0.{}.{}", i / 40, i % 40)).ok())
            .collect();
        assert_eq!(admitted.len(), GLOBAL_FAILURES_BEFORE_BACKOFF as usize);
        // One goes away unverified: its slot is free again, not a failure.
        let mut admitted = admitted.into_iter();
        drop(admitted.next());
        assert_eq!(l.lock().consecutive_failures, 0);
        let again = l.begin("late").unwrap();
        for a in admitted.chain([again]) {
            a.failed();
        }
        assert_eq!(l.lock().consecutive_failures, 10);
        assert!(l.begin("after").is_err(), "locked at the 10th failure");
    }

    #[test]
    fn a_queued_attempt_sees_the_lock() {
        let l = limiter();
        let waiting = l.begin("w").unwrap();
        assert!(waiting.recheck().is_ok());
        for i in 0..9 {
            l.begin(&format!("c{i}")).unwrap().failed();
        }
        // 9 failures + 1 in flight: nothing else is admitted.
        assert!(l.begin("x").is_err());
        l.lock().locked_until = Some(Instant::now() + Duration::from_secs(60));
        assert!(waiting.recheck().is_err());
        drop(waiting);
        assert_eq!(l.lock().in_flight, 0);
    }

    #[test]
    fn memory_is_bounded() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_CLIENTS * 2) {
            if let Ok(a) = l.begin_at(&format!("c{i}"), t0) {
                drop(a);
            }
        }
        let n = l.lock().attempts.len();
        assert!(n <= MAX_TRACKED_CLIENTS + 1, "{n}");
    }
}
