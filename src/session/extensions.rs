//! Turning extensions on: the client's Extensions message and the daemon's answer
//! (PROTOCOL.md, *Extension: credit*, Negotiation).

use super::Session;
use crate::protocol::ServerMsg;

/// What Hello's version tail offers, after the agent: each extension's name.
pub const OFFERED: &[&str] = &["credit", "presence", "reachability", "resume", "pubsub"];

/// What a client asked for; unknown tokens are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// `credit`, with the client's `receive-window` if it gave one.
    pub credit: Option<Option<usize>>,
    pub presence: bool,
    pub reachability: bool,
    pub resume: bool,
    pub pubsub: bool,
}

impl Wanted {
    pub fn parse(names: &str) -> Self {
        let mut wanted = Self::default();
        let mut receive = None;
        for token in names.split(' ') {
            let (name, value) = match token.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (token, None),
            };
            match (name, value) {
                ("credit", None) => wanted.credit = Some(None),
                ("receive-window", Some(value)) => receive = value.parse().ok(),
                ("presence", None) => wanted.presence = true,
                ("reachability", None) => wanted.reachability = true,
                ("resume", None) => wanted.resume = true,
                ("pubsub", None) => wanted.pubsub = true,
                _ => {}
            }
        }
        if let Some(credit) = wanted.credit.as_mut() {
            *credit = receive;
        }
        wanted
    }
}

impl Session {
    pub(super) fn on_extensions(&mut self, names: String) {
        let wanted = Wanted::parse(&names);
        if let Some(receive) = wanted.credit {
            if self.streams.credit_windows().is_none() {
                if self.streams.count() > 0 {
                    let msg = "Extensions: credit must be asked for before the session's \
                               first stream";
                    return self.out.reply(&ServerMsg::ProtocolError { msg: msg.into() });
                }
                self.streams.enable_credit(self.shared.limits.windows(receive));
            }
        }
        if wanted.presence {
            self.presence.extensions = true;
        }
        // Asked for (again, say by a reloaded page): the state follows the answer.
        let reachability_now = wanted.reachability;
        self.reachability_on |= wanted.reachability;
        let mut on = Vec::new();
        if let Some(w) = self.streams.credit_windows() {
            on.push(format!(
                "credit stream-window={} session-window={} receive-window={}",
                w.stream, w.session, w.receive
            ));
        }
        if self.presence.extensions {
            on.push("presence".into());
        }
        if self.reachability_on {
            on.push("reachability".into());
        }
        let log_from_now = wanted.resume && self.resume.is_none();
        if wanted.resume || self.resume.is_some() {
            let token = self.enable_resume();
            let grace = self.shared.limits.resume_grace.as_secs();
            on.push(format!("resume token={token} grace={grace}"));
        }
        if wanted.pubsub {
            self.enable_topics();
        }
        if self.topics.is_some() {
            let max_message = self.shared.node.config().max_topic_message;
            let max_topics = self.shared.limits.max_topics_per_session;
            on.push(format!("pubsub max-message={max_message} max-topics={max_topics}"));
        }
        self.out.reply(&ServerMsg::Extensions { names: on.join(" ") });
        if log_from_now {
            // Numbered from the message after this answer.
            let log = self.resume.as_ref().expect("just enabled").log.clone();
            self.out.start_log(log);
        }
        if reachability_now {
            self.send_reachability();
        }
    }
}

/// Hello's version tail: the agent, then what is offered.
pub fn hello_version() -> String {
    std::iter::once(crate::AGENT).chain(OFFERED.iter().copied()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_in_any_order_and_unknown_ones_ignored() {
        let wanted = Wanted::parse("receive-window=4096 later=1 credit presence");
        assert_eq!(
            wanted,
            Wanted {
                credit: Some(Some(4096)),
                presence: true,
                reachability: false,
                resume: false,
                pubsub: false
            }
        );
        assert!(Wanted::parse("reachability").reachability);
        assert!(Wanted::parse("credit resume").resume);
        assert_eq!(Wanted::parse("credit").credit, Some(None));
        assert_eq!(Wanted::parse("receive-window=9 x"), Wanted::default());
        assert_eq!(Wanted::parse("credit receive-window=lots").credit, Some(None));
        assert_eq!(Wanted::parse(""), Wanted::default());
    }

    #[test]
    fn hello_offers_the_extensions_after_the_agent() {
        assert_eq!(
            hello_version(),
            format!("{} credit presence reachability resume pubsub", crate::AGENT)
        );
    }
}
