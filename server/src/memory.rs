//! The allocator's behaviour for a daemon that is idle most of the time:
//! few malloc arenas (glibc makes one per thread that allocates, up to 8 per
//! core, and each keeps its freed pages), and free memory handed back to
//! the kernel once a burst is over.
#![allow(unsafe_code)] // malloc_trim

use std::time::Duration;

/// How often the trimmer looks; it costs one `mallinfo2` per look.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// Free heap above this is returned to the kernel.
const TRIM_ABOVE: usize = 1024 * 1024;

/// At most two malloc arenas. Call before any thread exists.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt with integer arguments, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Bytes malloc holds free (not returned to the kernel).
pub fn free_heap_bytes() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        info.fordblks
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

/// Return free heap pages to the kernel (`malloc_trim(0)`).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every [`TRIM_EVERY`], trim when more than [`TRIM_ABOVE`] is held free:
/// after a burst of requests or session output, RSS goes back down.
pub async fn trim_after_bursts() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if free_heap_bytes() > TRIM_ABOVE {
            // Off the runtime's threads: trimming a large heap takes a while.
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}
