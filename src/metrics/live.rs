//! What the dashboard shows beyond the counters: the sessions open now with their
//! origins, and the bytes per second of the last minutes.
//!
//! Both are bounded: one row per open session (sessions are capped by
//! `--max-sessions`), of which [`SHOWN_SESSIONS`] are shown, each origin cut to
//! [`ORIGIN_CHARS`] characters; and [`HISTORY_SECS`] samples of traffic.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::socket::SessionCounts;

/// Sessions listed in the dashboard's JSON at most (the count says how many there are).
pub const SHOWN_SESSIONS: usize = 64;
/// Characters of a session's `Origin` header kept for the dashboard.
pub const ORIGIN_CHARS: usize = 80;
/// Seconds of traffic history kept, one sample a second.
pub const HISTORY_SECS: usize = 300;

/// One open session.
struct Row {
    origin: Option<String>,
    loopback: bool,
    since: Instant,
    counts: Arc<SessionCounts>,
}

/// A session as the dashboard lists it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: u64,
    /// The page's origin, cut and stripped of control characters; `None` for a client
    /// that sent none (not a browser page).
    pub origin: Option<String>,
    pub loopback: bool,
    pub secs: u64,
    pub bytes_from_browser: u64,
    pub bytes_to_browser: u64,
}

/// The sessions open now.
#[derive(Default)]
pub struct LiveSessions {
    rows: Mutex<BTreeMap<u64, Row>>,
}

impl LiveSessions {
    pub(super) fn add(&self, key: u64, origin: Option<&str>, loopback: bool) -> Arc<SessionCounts> {
        let counts = Arc::new(SessionCounts::default());
        let row = Row {
            origin: origin.map(shorten),
            loopback,
            since: Instant::now(),
            counts: counts.clone(),
        };
        self.lock().insert(key, row);
        counts
    }

    pub(super) fn remove(&self, key: u64) {
        self.lock().remove(&key);
    }

    /// The first [`SHOWN_SESSIONS`] sessions, oldest first, and how many there are.
    pub fn view(&self) -> (Vec<SessionView>, usize) {
        let rows = self.lock();
        let shown = rows
            .iter()
            .take(SHOWN_SESSIONS)
            .map(|(id, row)| SessionView {
                id: *id,
                origin: row.origin.clone(),
                loopback: row.loopback,
                secs: row.since.elapsed().as_secs(),
                bytes_from_browser: row.counts.from_browser.load(Ordering::Relaxed),
                bytes_to_browser: row.counts.to_browser.load(Ordering::Relaxed),
            })
            .collect();
        (shown, rows.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Row>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A header's text as the dashboard may show it: no control characters, at most
/// [`ORIGIN_CHARS`] characters (`…` marks a cut).
pub fn shorten(text: &str) -> String {
    let mut chars = text.chars().filter(|c| !c.is_control());
    let mut short: String = chars.by_ref().take(ORIGIN_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// Bytes per second of Data, each way, over the last [`HISTORY_SECS`] seconds.
#[derive(Default)]
pub struct Traffic {
    inner: Mutex<History>,
}

#[derive(Default)]
struct History {
    /// The totals at the last sample.
    last: Option<[u64; 2]>,
    /// Per second: bytes from browsers, bytes to browsers; oldest first.
    samples: VecDeque<[u64; 2]>,
}

/// The history as the dashboard draws it.
#[derive(Debug, Serialize)]
pub struct TrafficView {
    /// Unix time of the newest sample, in seconds.
    pub at: u64,
    pub from_browsers: Vec<u64>,
    pub to_browsers: Vec<u64>,
}

impl Traffic {
    /// Takes one sample: what moved since the last one, from the running totals.
    pub(super) fn sample(&self, totals: [u64; 2]) {
        let mut history = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = history.last {
            let moved = [totals[0].saturating_sub(last[0]), totals[1].saturating_sub(last[1])];
            if history.samples.len() == HISTORY_SECS {
                history.samples.pop_front();
            }
            history.samples.push_back(moved);
        }
        history.last = Some(totals);
    }

    pub fn view(&self) -> TrafficView {
        let history = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        TrafficView {
            at,
            from_browsers: history.samples.iter().map(|s| s[0]).collect(),
            to_browsers: history.samples.iter().map(|s| s[1]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_cut_and_cleaned() {
        assert_eq!(shorten("http://localhost:8888"), "http://localhost:8888");
        let long = format!("http://{}", "a".repeat(1000));
        let cut = shorten(&long);
        assert_eq!(cut.chars().count(), ORIGIN_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(shorten("a\u{1b}[31mb\nc"), "a[31mbc");
    }

    #[test]
    fn history_keeps_the_last_minutes() {
        let traffic = Traffic::default();
        traffic.sample([0, 0]);
        for second in 1..=(HISTORY_SECS as u64 + 10) {
            traffic.sample([second * 100, second * 10]);
        }
        let view = traffic.view();
        assert_eq!(view.from_browsers.len(), HISTORY_SECS);
        assert!(view.from_browsers.iter().all(|&b| b == 100));
        assert!(view.to_browsers.iter().all(|&b| b == 10));
    }
}
