//! The resume extension's log of what the daemon sent (PROTOCOL.md, *Extension:
//! resume*): every numbered message stays here, with what it holds, until the browser
//! acknowledges it, so a new WebSocket can be sent what the old one lost.
//!
//! What the log holds is bounded by what its messages hold: Data its share of the
//! session's read budget (so a browser that does not acknowledge stops its streams'
//! remotes, as one that does not read does), every other message its bytes in the
//! reply count (past which the session ends as backlogged).

use std::collections::VecDeque;

use bytes::Bytes;

use super::outbox::Hold;

/// Numbered messages sent and not yet acknowledged, oldest first.
pub struct ReplayLog {
    /// The number of the oldest message kept (numbers start at 1).
    first: u64,
    kept: VecDeque<(Bytes, Hold)>,
}

impl Default for ReplayLog {
    fn default() -> Self {
        Self { first: 1, kept: VecDeque::new() }
    }
}

impl ReplayLog {
    /// Keeps the next numbered message.
    pub fn push(&mut self, bytes: Bytes, hold: Hold) {
        self.kept.push_back((bytes, hold));
    }

    /// How many numbered messages have been sent.
    pub fn sent(&self) -> u64 {
        self.first - 1 + self.kept.len() as u64
    }

    /// The browser has the first `count` messages: they are dropped, with what they
    /// hold. A count past what was sent acknowledges everything.
    pub fn ack(&mut self, count: u64) {
        while self.first <= count && self.kept.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// Drops everything and numbers afresh from 1 (a page that lost its state).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The messages not yet acknowledged, in order, to send again.
    pub fn unacked(&self) -> Vec<Bytes> {
        self.kept.iter().map(|(bytes, _)| bytes.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: u8) -> ReplayLog {
        let mut log = ReplayLog::default();
        for i in 1..=n {
            log.push(Bytes::from(vec![i]), Hold::None);
        }
        log
    }

    #[test]
    fn acks_drop_the_oldest_and_keep_numbering() {
        let mut log = log_of(5);
        assert_eq!(log.sent(), 5);
        log.ack(2);
        assert_eq!(
            log.unacked(),
            vec![Bytes::from(vec![3]), Bytes::from(vec![4]), Bytes::from(vec![5])]
        );
        log.ack(1); // an older ack changes nothing
        assert_eq!(log.unacked().len(), 3);
        log.push(Bytes::from_static(&[6]), Hold::None);
        assert_eq!(log.sent(), 6);
        log.ack(99);
        assert!(log.unacked().is_empty());
        assert_eq!(log.sent(), 6);
        log.reset();
        assert_eq!(log.sent(), 0);
    }
}
