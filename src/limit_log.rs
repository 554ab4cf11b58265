//! A flood must not flood the log: each kind of refusal is logged the first times it
//! happens (once, or a small burst), then no more until a minute has passed, saying
//! how many went unlogged in between.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// How often one kind of refusal is logged at most.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// One kind of refusal.
pub struct LimitLog {
    /// When the current window began, and how many were logged in it.
    last: Mutex<Option<(Instant, u32)>>,
    burst: u32,
    skipped: AtomicU64,
}

impl LimitLog {
    /// Logged once a minute at most.
    pub const fn new() -> Self {
        Self::with_burst(1)
    }

    /// Logged `burst` times a minute at most: for what a person may want to see each
    /// of (a refused Connect), which a flood must still not turn into a torrent.
    pub const fn with_burst(burst: u32) -> Self {
        Self { last: Mutex::new(None), burst, skipped: AtomicU64::new(0) }
    }

    /// Counts one refusal; `Some(n)` when this one should be logged, `n` being how many
    /// were not logged since the last time.
    pub fn hit(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match last.as_mut() {
            Some((at, logged)) if now.duration_since(*at) < INTERVAL => {
                if *logged >= self.burst {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                *logged += 1;
            }
            _ => *last = Some((now, 1)),
        }
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

impl Default for LimitLog {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_then_counts() {
        let log = LimitLog::new();
        assert_eq!(log.hit(), Some(0));
        assert_eq!(log.hit(), None);
        assert_eq!(log.hit(), None);
        *log.last.lock().unwrap() = Some((Instant::now() - INTERVAL, 1));
        assert_eq!(log.hit(), Some(2));
    }

    #[test]
    fn a_burst_then_counts() {
        let log = LimitLog::with_burst(3);
        assert_eq!([log.hit(), log.hit(), log.hit()], [Some(0); 3]);
        assert_eq!(log.hit(), None);
        assert_eq!(log.hit(), None);
        *log.last.lock().unwrap() = Some((Instant::now() - INTERVAL, 3));
        assert_eq!(log.hit(), Some(2));
    }
}
