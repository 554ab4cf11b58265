//! The pubsub extension, a session's side (PROTOCOL.md, *Extension: pubsub*): its
//! subscriptions, bounded in number, and its inbox, bounded in bytes (see
//! `node::topics`): what the page does not take in time is dropped and counted, and
//! the page is told how many it missed.

use std::collections::HashSet;

use tokio::sync::mpsc;

use super::Session;
use crate::{
    metrics::Limit,
    node::{
        topics::{TopicEvent, TopicInbox, MAX_TOPIC_LEN},
        ConnectError,
    },
    protocol::{text, ServerMsg},
};

/// Bytes of topic events waiting for one browser, at least (and four of the largest
/// messages).
const INBOX_BYTES: usize = 1024 * 1024;

/// A session's topics, once the page turned the extension on.
pub struct Topics {
    subscribed: HashSet<String>,
    inbox: TopicInbox,
    events: mpsc::UnboundedReceiver<TopicEvent>,
}

impl Topics {
    pub fn new(max_message: usize) -> Self {
        let (inbox, events) = TopicInbox::new(INBOX_BYTES.max(4 * max_message));
        Self { subscribed: HashSet::new(), inbox, events }
    }
}

/// The next topic event (pending without the extension).
pub async fn next_event(topics: Option<&mut Topics>) -> Option<TopicEvent> {
    match topics {
        Some(topics) => topics.events.recv().await,
        None => std::future::pending().await,
    }
}

/// Why a Subscribe or Publish was refused.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the pubsub extension is not on (send Extensions with pubsub)")]
    NotOn,
    #[error("the node is not started")]
    NotStarted,
    #[error("a topic is 1 to {MAX_TOPIC_LEN} bytes long")]
    BadTopic,
    #[error("the session subscribes to {0} topics already, all it may")]
    TooMany(usize),
    #[error("a message of {0} bytes is over the limit of {1} bytes")]
    TooLarge(usize, usize),
    /// The daemon's own topic limit (`--max-topics`).
    #[error("{0}")]
    DaemonFull(String),
    #[error("{0}")]
    Node(String),
}

impl Session {
    pub(super) fn enable_topics(&mut self) {
        if self.topics.is_none() {
            self.topics = Some(Topics::new(self.shared.node.config().max_topic_message));
        }
    }

    fn refuse(&self, topic: &str, refusal: Refusal) {
        if let Refusal::TooMany(_) | Refusal::DaemonFull(_) = refusal {
            self.shared.metrics.limit_hit(Limit::Topics);
        }
        let topic = text::echo(topic.to_string());
        self.out.reply(&ServerMsg::TopicRefused { topic, reason: refusal.to_string() });
    }

    pub(super) async fn on_subscribe(&mut self, topic: String) {
        if let Err(refusal) = self.subscribe(&topic).await {
            self.refuse(&topic, refusal);
        }
    }

    async fn subscribe(&mut self, topic: &str) -> Result<(), Refusal> {
        let limit = self.shared.limits.max_topics_per_session;
        let topics = self.topics.as_mut().ok_or(Refusal::NotOn)?;
        let node = self.node.as_ref().ok_or(Refusal::NotStarted)?;
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
            return Err(Refusal::BadTopic);
        }
        if !topics.subscribed.contains(topic) && topics.subscribed.len() >= limit {
            return Err(Refusal::TooMany(limit));
        }
        let peers =
            node.subscribe(topic, self.id, topics.inbox.clone()).await.map_err(|e| match e {
                ConnectError::Topics(full) => Refusal::DaemonFull(full),
                other => Refusal::Node(other.to_string()),
            })?;
        topics.subscribed.insert(topic.to_string());
        self.out.reply(&ServerMsg::Subscribed { topic: topic.into() });
        for peer in peers {
            let (topic, peer) = (topic.to_string(), peer.to_base58());
            self.out.reply(&ServerMsg::TopicPeer { joined: true, topic, peer });
        }
        Ok(())
    }

    pub(super) fn on_unsubscribe(&mut self, topic: String) {
        let Some(topics) = self.topics.as_mut() else {
            return self.refuse(&topic, Refusal::NotOn);
        };
        if topics.subscribed.remove(&topic) {
            if let Some(node) = &self.node {
                node.unsubscribe(&topic, self.id);
            }
            topics.inbox.take_missed(&topic);
        }
    }

    pub(super) async fn on_publish(&mut self, topic: String, data: bytes::Bytes) {
        if let Err(refusal) = self.publish(&topic, data).await {
            self.refuse(&topic, refusal);
        }
    }

    async fn publish(&mut self, topic: &str, data: bytes::Bytes) -> Result<(), Refusal> {
        self.topics.as_ref().ok_or(Refusal::NotOn)?;
        let node = self.node.as_ref().ok_or(Refusal::NotStarted)?;
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
            return Err(Refusal::BadTopic);
        }
        let max = self.shared.node.config().max_topic_message;
        if data.len() > max {
            return Err(Refusal::TooLarge(data.len(), max));
        }
        node.publish(topic, data, self.id).await.map(drop).map_err(Refusal::Node)
    }

    /// Passes a topic event on to the browser, if it still subscribes to its topic.
    pub(super) fn on_topic_event(&mut self, event: TopicEvent) {
        let Some(topics) = self.topics.as_mut() else { return };
        match event {
            TopicEvent::Message { topic, encoded, permit } => {
                if topics.subscribed.contains(&*topic) {
                    self.out.data(encoded, permit);
                }
            }
            TopicEvent::Peer { topic, peer, joined, permit } => {
                if topics.subscribed.contains(&*topic) {
                    let (topic, peer) = (topic.to_string(), peer.to_base58());
                    self.out.data(ServerMsg::TopicPeer { joined, topic, peer }.encode(), permit);
                }
            }
            TopicEvent::Missed { topic } => {
                let count = topics.inbox.take_missed(&topic);
                if count > 0 && topics.subscribed.contains(&*topic) {
                    self.out.reply(&ServerMsg::Missed { topic: topic.to_string(), count });
                }
            }
        }
    }

    /// Leaves every topic, as the session ends.
    pub(super) fn leave_topics(&mut self) {
        let Some(topics) = self.topics.as_mut() else { return };
        for topic in topics.subscribed.drain() {
            if let Some(node) = &self.node {
                node.unsubscribe(&topic, self.id);
            }
        }
    }
}
