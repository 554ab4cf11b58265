//! A flood must not flood the log: each kind of refusal is logged the first time it
//! happens, then at most once a minute, saying how many went unlogged in between.

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
    last: Mutex<Option<Instant>>,
    skipped: AtomicU64,
}

impl LimitLog {
    pub const fn new() -> Self {
        Self { last: Mutex::new(None), skipped: AtomicU64::new(0) }
    }

    /// Counts one refusal; `Some(n)` when this one should be logged, `n` being how many
    /// were not logged since the last time.
    pub fn hit(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < INTERVAL) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
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
        *log.last.lock().unwrap() = Some(Instant::now() - INTERVAL);
        assert_eq!(log.hit(), Some(2));
    }
}
