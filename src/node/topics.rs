//! Topics (the pubsub extension, PROTOCOL.md): gossipsub subscriptions shared by the
//! daemon's sessions. However many sessions subscribe to a topic, the node holds one
//! libp2p subscription for it; each message the node receives is handed to every
//! subscribed session, and a session's publish to the other sessions of this daemon
//! in-process (gossipsub never delivers a node's own messages to itself) and to the
//! network once.
//!
//! Nothing here ever waits: the event loop hands a message to each session's
//! [`TopicInbox`], which takes it only while the session holds less than its budget
//! of undelivered bytes; past it the message is dropped and counted, and the session
//! tells its page how many it missed. A slow page so never holds the swarm, another
//! session, or more memory than its budget.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use libp2p::{gossipsub, identity::Keypair, PeerId};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::protocol::ServerMsg;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// What a topic event costs in a session's budget beyond its data.
const EVENT_OVERHEAD: usize = 64;
/// Room in a gossipsub RPC beyond a message's data: its topic, sender, sequence
/// number, signature and key.
const RPC_OVERHEAD: usize = 2048;

/// What a session gets from its topics.
pub enum TopicEvent {
    /// A message published on `topic`, already encoded as the browser's Message (the
    /// same bytes for every session), holding its share of the session's budget until
    /// the browser has it.
    Message { topic: Arc<str>, encoded: Bytes, permit: OwnedSemaphorePermit },
    /// A peer joined (or left) `topic`.
    Peer { topic: Arc<str>, peer: PeerId, joined: bool, permit: OwnedSemaphorePermit },
    /// Events of `topic` were dropped for want of room; [`TopicInbox::take_missed`]
    /// says how many. At most one waits per topic.
    Missed { topic: Arc<str> },
}

/// One session's way in for topic events: bounded in bytes.
#[derive(Clone)]
pub struct TopicInbox {
    tx: mpsc::UnboundedSender<TopicEvent>,
    budget: Arc<Semaphore>,
    missed: Arc<Mutex<HashMap<Arc<str>, u64>>>,
}

impl TopicInbox {
    /// An inbox holding at most `budget` bytes of undelivered events, and its receiver.
    pub fn new(budget: usize) -> (Self, mpsc::UnboundedReceiver<TopicEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(budget.min(Semaphore::MAX_PERMITS)));
        (Self { tx, budget, missed: Arc::default() }, rx)
    }

    fn room(&self, topic: &Arc<str>, cost: usize) -> Option<OwnedSemaphorePermit> {
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(cost) {
            Ok(permit) => Some(permit),
            Err(_) => {
                let mut missed = lock(&self.missed);
                let count = missed.entry(topic.clone()).or_default();
                *count += 1;
                if *count == 1 {
                    let _ = self.tx.send(TopicEvent::Missed { topic: topic.clone() });
                }
                None
            }
        }
    }

    fn message(&self, topic: &Arc<str>, encoded: &Bytes) {
        if let Some(permit) = self.room(topic, encoded.len() + EVENT_OVERHEAD) {
            let (topic, encoded) = (topic.clone(), encoded.clone());
            let _ = self.tx.send(TopicEvent::Message { topic, encoded, permit });
        }
    }

    fn peer(&self, topic: &Arc<str>, peer: PeerId, joined: bool) {
        if let Some(permit) = self.room(topic, topic.len() + EVENT_OVERHEAD) {
            let _ = self.tx.send(TopicEvent::Peer { topic: topic.clone(), peer, joined, permit });
        }
    }

    /// How many events of `topic` were dropped since last asked.
    pub fn take_missed(&self, topic: &str) -> u64 {
        lock(&self.missed).remove(topic).unwrap_or(0)
    }
}

/// A topic's subscribed sessions, by session id.
type Subscribers = HashMap<u64, TopicInbox>;

/// Which sessions subscribe to which topics, daemon-wide.
#[derive(Clone)]
pub struct TopicHub {
    topics: Arc<Mutex<HashMap<Arc<str>, Subscribers>>>,
    /// Topics the node subscribes to, at most (each costs every peer's gossipsub a
    /// subscription to track, and the node a mesh to keep).
    max: usize,
}

/// The daemon subscribes to as many topics as it may.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the daemon subscribes to {0} topics already, all it may")]
pub struct TopicsFull(pub usize);

impl TopicHub {
    pub(super) fn new(max: usize) -> Self {
        Self { topics: Arc::default(), max }
    }

    /// Subscribes `session` (a new topic only while the daemon has fewer than its
    /// maximum).
    pub(super) fn join(
        &self,
        topic: &str,
        session: u64,
        inbox: TopicInbox,
    ) -> Result<(), TopicsFull> {
        let mut topics = lock(&self.topics);
        if !topics.contains_key(topic) && topics.len() >= self.max {
            return Err(TopicsFull(self.max));
        }
        topics.entry(Arc::from(topic)).or_default().insert(session, inbox);
        Ok(())
    }

    /// Unsubscribes `session`; `true` when that was the topic's last subscriber here.
    pub(super) fn leave(&self, topic: &str, session: u64) -> bool {
        let mut topics = lock(&self.topics);
        let Some(sessions) = topics.get_mut(topic) else { return false };
        if sessions.remove(&session).is_none() || !sessions.is_empty() {
            return false;
        }
        topics.remove(topic);
        true
    }

    /// Hands a message to every session subscribed to `topic` but `except`, encoded
    /// once for all of them.
    pub(super) fn message(
        &self,
        topic: &str,
        from: PeerId,
        seq: u64,
        data: Bytes,
        except: Option<u64>,
    ) {
        let topics = lock(&self.topics);
        let Some((topic, sessions)) = topics.get_key_value(topic) else { return };
        if sessions.keys().all(|session| Some(*session) == except) {
            return;
        }
        let (name, from) = (topic.to_string(), from.to_base58());
        let encoded = ServerMsg::TopicMessage { topic: name, from, seq, data }.encode();
        for (session, inbox) in sessions {
            if Some(*session) != except {
                inbox.message(topic, &encoded);
            }
        }
    }

    /// Tells every session subscribed to `topic` that `peer` joined or left it.
    pub(super) fn peer(&self, topic: &str, peer: PeerId, joined: bool) {
        let topics = lock(&self.topics);
        let Some((topic, sessions)) = topics.get_key_value(topic) else { return };
        for inbox in sessions.values() {
            inbox.peer(topic, peer, joined);
        }
    }

    /// Whether some session subscribes to `topic`.
    pub(super) fn has(&self, topic: &str) -> bool {
        lock(&self.topics).contains_key(topic)
    }

    /// Topics some session subscribes to.
    pub fn len(&self) -> usize {
        lock(&self.topics).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sequence number of the last message this node published, as gossipsub
/// numbered it (gossipsub's `publish` says only the message id, and nothing when no
/// peer is subscribed yet; the id function sees every message, its own included).
#[derive(Clone, Default)]
pub(super) struct LastSeq(Arc<AtomicU64>);

impl LastSeq {
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Gossipsub as the daemon runs it: signed messages, strict validation, messages of
/// at most `max_message` bytes, and message ids as go-libp2p and js-libp2p make
/// them (the sender's peer id bytes, then the sequence number, big-endian), so their
/// gossip (IHAVE/IWANT) names the same messages.
pub(super) fn behaviour(
    key: &Keypair,
    max_message: usize,
    last_seq: LastSeq,
) -> Result<gossipsub::Behaviour, String> {
    let me = key.public().to_peer_id();
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(max_message + RPC_OVERHEAD)
        .message_id_fn(move |message: &gossipsub::Message| {
            let seq = message.sequence_number.unwrap_or(0);
            if message.source == Some(me) {
                last_seq.0.store(seq, Ordering::Release);
            }
            let mut id = message.source.map(|p| p.to_bytes()).unwrap_or_default();
            id.extend_from_slice(&seq.to_be_bytes());
            gossipsub::MessageId::new(&id)
        })
        .build()
        .map_err(|e| e.to_string())?;
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_inbox_takes_what_fits_and_counts_the_rest() {
        let (inbox, mut rx) = TopicInbox::new(1000);
        let topic: Arc<str> = Arc::from("t");
        let message = |n: u8| Bytes::from(vec![n; 400]);
        for n in 1..=4 {
            inbox.message(&topic, &message(n)); // 3 and 4: no room, dropped and counted
        }
        let mut got = Vec::new();
        let mut missed = 0;
        while let Ok(event) = rx.try_recv() {
            match event {
                TopicEvent::Message { encoded, .. } => got.push(encoded[0]),
                TopicEvent::Missed { topic } => missed += inbox.take_missed(&topic),
                TopicEvent::Peer { .. } => unreachable!(),
            }
        }
        assert_eq!((got, missed), (vec![1, 2], 2));
        // Delivered messages give their room back.
        inbox.message(&topic, &message(5));
        assert!(
            matches!(rx.try_recv(), Ok(TopicEvent::Message { encoded, .. }) if encoded[0] == 5)
        );
    }

    #[test]
    fn the_hub_counts_the_last_subscriber_and_caps_the_topics() {
        let hub = TopicHub::new(1);
        let (a, _ra) = TopicInbox::new(1000);
        let (b, _rb) = TopicInbox::new(1000);
        hub.join("t", 1, a.clone()).unwrap();
        hub.join("t", 2, b).unwrap();
        assert!(hub.has("t"));
        assert!(hub.join("u", 1, a).is_err());
        assert!(!hub.leave("t", 1));
        assert!(!hub.leave("t", 1));
        assert!(hub.leave("t", 2));
        assert!(hub.is_empty());
    }
}
