//! The pubsub extension (PROTOCOL.md, *Extension: pubsub*): topics on gossipsub,
//! shared by a daemon's sessions, reaching other daemons and plain rust-libp2p nodes;
//! each message once to each subscribed session; slow subscribers told what they
//! missed; limits answered.

mod common;

use std::time::Duration;

use common::{topics::*, *};
use futures::StreamExt as _;
use libp2p::{gossipsub, swarm::SwarmEvent, Multiaddr, PeerId};
use libp2p_websocket::protocol::{ClientMsg, ServerMsg};

const GAME: &str = "gem-rush/lobby";

/// A plain rust-libp2p node running gossipsub (signed, strict), subscribed to GAME,
/// dialing `dial`; it forwards what it receives and publishes what it is given.
struct PlainNode {
    peer_id: PeerId,
    received: tokio::sync::mpsc::Receiver<(PeerId, Vec<u8>)>,
    publish: tokio::sync::mpsc::Sender<Vec<u8>>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

impl PlainNode {
    async fn dialing(dial: Multiaddr) -> Self {
        let mut swarm = plain_swarm(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .unwrap();
            let auth = gossipsub::MessageAuthenticity::Signed(key.clone());
            gossipsub::Behaviour::<gossipsub::IdentityTransform>::new(auth, config).unwrap()
        });
        let topic = gossipsub::IdentTopic::new(GAME);
        swarm.behaviour_mut().subscribe(&topic).unwrap();
        swarm.dial(dial).unwrap();
        let peer_id = *swarm.local_peer_id();
        let (received_tx, received) = tokio::sync::mpsc::channel(64);
        let (publish, mut to_publish) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(data) = to_publish.recv() => {
                        // No peer on the topic yet: the test publishes again.
                        let _ = swarm.behaviour_mut().publish(topic.clone(), data);
                    }
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                            let _ = received_tx.send((message.source.unwrap(), message.data)).await;
                        }
                    }
                }
            }
        });
        Self { peer_id, received, publish, _task: tokio_util::task::AbortOnDropHandle::new(task) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_every_subscribed_session_once_across_daemons_and_plain_nodes() {
    let a = Daemon::with_key(libp2p_websocket::node::NodeKey::generate()).await;
    let (mut a1, a_id) = pubsub_session(&a).await;
    let (mut a2, _) = pubsub_session(&a).await;
    let b = daemon_dialing(full_addr(&a_id)).await;
    let (mut b1, b_id) = pubsub_session(&b).await;
    let plain = PlainNode::dialing(full_addr(&a_id)).await;
    let mut plain = plain;

    // Each session hears who is on the topic: at once if known, else as they join.
    let on_a1 = subscribe(&mut a1, GAME).await;
    let on_a2 = subscribe(&mut a2, GAME).await;
    let on_b1 = subscribe(&mut b1, GAME).await;
    for (session, known, peer) in [
        (&mut a1, &on_a1, b_id.peer_id),
        (&mut a2, &on_a2, plain.peer_id),
        (&mut b1, &on_b1, a_id.peer_id),
    ] {
        if !known.contains(&peer.to_base58()) {
            within("a peer joins the topic", joined(session, &peer)).await;
        }
    }

    // From a session of A: the other session of A, B's session, the plain node; once.
    publish(&mut a1, GAME, b"from a1").await;
    let (from, seq_a1, data) = message(&mut a2).await;
    assert_eq!(
        (from.as_str(), data.as_slice()),
        (a_id.peer_id.to_base58().as_str(), &b"from a1"[..])
    );
    let (from, seq, data) = message(&mut b1).await;
    assert_eq!((from, seq, data), (a_id.peer_id.to_base58(), seq_a1, b"from a1".to_vec()));
    let (source, data) = within("the plain node receives", plain.received.recv()).await.unwrap();
    assert_eq!((source, data), (a_id.peer_id, b"from a1".to_vec()));

    // From B's session: both of A's sessions, once each.
    publish(&mut b1, GAME, b"from b1").await;
    for session in [&mut a1, &mut a2] {
        let (from, _, data) = message(session).await;
        assert_eq!((from, data), (b_id.peer_id.to_base58(), b"from b1".to_vec()));
    }

    // From the plain node: every session.
    plain.publish.send(b"from plain".to_vec()).await.unwrap();
    for session in [&mut a1, &mut a2, &mut b1] {
        let (from, _, data) = message(session).await;
        assert_eq!((from, data), (plain.peer_id.to_base58(), b"from plain".to_vec()));
    }
    // Nothing twice, and a publisher never hears itself.
    for session in [&mut a1, &mut a2, &mut b1] {
        no_message(session, Duration::from_millis(500)).await;
    }

    // Unsubscribing stops delivery to that session only.
    a2.send(ClientMsg::Unsubscribe { topic: GAME.into() }).await;
    publish(&mut b1, GAME, b"after").await;
    assert_eq!(message(&mut a1).await.2, b"after");
    no_message(&mut a2, Duration::from_millis(500)).await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_told_what_it_missed_while_the_others_keep_receiving() {
    const MESSAGES: usize = 400;
    let daemon = Daemon::with_key(libp2p_websocket::node::NodeKey::generate()).await;
    let (mut publisher, _) = pubsub_session(&daemon).await;
    let (mut fast, _) = pubsub_session(&daemon).await;
    let (mut slow, _) = pubsub_session(&daemon).await;
    for session in [&mut fast, &mut slow] {
        subscribe(session, GAME).await;
    }
    // The slow page reads nothing while 400 × 48 KiB (18.75 MiB) are published; the
    // fast one reads everything as it comes.
    let data = vec![7u8; 48 * 1024];
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < MESSAGES {
            seqs.push(message(&mut fast).await.1);
        }
        seqs
    });
    for n in 0..MESSAGES {
        let mut msg = data.clone();
        msg[..8].copy_from_slice(&(n as u64).to_be_bytes());
        publish(&mut publisher, GAME, &msg).await;
    }
    let seqs = within("the fast subscriber gets every message", reader).await.unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");

    // Now the slow page reads: messages in order, and what it missed, all counted.
    let (mut got, mut missed, mut last) = (0usize, 0u64, None);
    while got + (missed as usize) < MESSAGES {
        match slow.recv().await {
            ServerMsg::TopicMessage { data, .. } => {
                let n = u64::from_be_bytes(data[..8].try_into().unwrap());
                assert!(last.is_none_or(|l| n > l), "in order");
                last = Some(n);
                got += 1;
            }
            ServerMsg::Missed { topic, count } => {
                assert_eq!(topic, GAME);
                missed += count;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("the slow subscriber got {got} and was told it missed {missed}");
    assert!(missed > 0, "it cannot have taken 18.75 MiB while reading nothing");
    assert_eq!(got + missed as usize, MESSAGES);
    daemon.stop().await;
}

#[tokio::test]
async fn subscribe_and_publish_refusals_say_why() {
    let daemon = Daemon::with_key(libp2p_websocket::node::NodeKey::generate()).await;
    let refused = |msg: ServerMsg| match msg {
        ServerMsg::TopicRefused { topic, reason } => (topic, reason),
        other => panic!("expected Topic Refused, got {other:?}"),
    };
    // Without the extension.
    let (mut plain, _) = Client::started(&daemon).await;
    plain.send(ClientMsg::Subscribe { topic: GAME.into() }).await;
    let (_, reason) = refused(plain.recv().await);
    assert_eq!(reason, "the pubsub extension is not on (send Extensions with pubsub)");

    let (mut c, _) = pubsub_session(&daemon).await;
    c.send(ClientMsg::Subscribe { topic: String::new() }).await;
    assert_eq!(refused(c.recv().await).1, "a topic is 1 to 256 bytes long");
    c.send(ClientMsg::Subscribe { topic: "x".repeat(257) }).await;
    assert_eq!(refused(c.recv().await).1, "a topic is 1 to 256 bytes long");
    for n in 0..32 {
        subscribe(&mut c, &format!("topic/{n}")).await;
    }
    c.send(ClientMsg::Subscribe { topic: "topic/32".into() }).await;
    assert_eq!(
        refused(c.recv().await),
        ("topic/32".into(), "the session subscribes to 32 topics already, all it may".into())
    );
    // Subscribing again to one it has is no new topic.
    subscribe(&mut c, "topic/0").await;
    publish(&mut c, "topic/0", &vec![0u8; 65537]).await;
    assert_eq!(
        refused(c.recv().await).1,
        "a message of 65537 bytes is over the limit of 65536 bytes"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn the_daemon_subscribes_to_so_many_topics_and_no_more() {
    let mut config = libp2p_websocket::Config::local();
    config.node.max_topics = 2;
    config.key = Some(libp2p_websocket::node::NodeKey::generate());
    let daemon = Daemon::start(config).await;
    let (mut a, _) = pubsub_session(&daemon).await;
    let (mut b, _) = pubsub_session(&daemon).await;
    subscribe(&mut a, "t/1").await;
    subscribe(&mut a, "t/2").await;
    b.send(ClientMsg::Subscribe { topic: "t/3".into() }).await;
    match b.recv().await {
        ServerMsg::TopicRefused { topic, reason } => {
            assert_eq!(
                (topic.as_str(), reason.as_str()),
                ("t/3", "the daemon subscribes to 2 topics already, all it may")
            )
        }
        other => panic!("expected Topic Refused, got {other:?}"),
    }
    // A topic the daemon has is no new one; and one given up makes room.
    subscribe(&mut b, "t/1").await;
    a.send(ClientMsg::Unsubscribe { topic: "t/2".into() }).await;
    subscribe(&mut a, "t/1").await; // a's session has handled the Unsubscribe
    subscribe(&mut b, "t/3").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_leaves_and_rejoins_a_topic_at_once_still_gets_its_messages() {
    let a = Daemon::with_key(libp2p_websocket::node::NodeKey::generate()).await;
    let (mut a1, a_id) = pubsub_session(&a).await;
    let plain = PlainNode::dialing(full_addr(&a_id)).await;
    let mut plain = plain;
    subscribe(&mut a1, GAME).await;
    // The sole subscriber leaves and comes back, again and again, without waiting: the
    // node's network subscription must end as the last request says.
    for _ in 0..200 {
        a1.send(ClientMsg::Unsubscribe { topic: GAME.into() }).await;
        a1.send(ClientMsg::Subscribe { topic: GAME.into() }).await;
    }
    let mut answers = 0;
    while answers < 200 {
        match a1.recv().await {
            ServerMsg::Subscribed { .. } => answers += 1,
            ServerMsg::TopicPeer { .. } => {}
            other => panic!("expected Subscribed, got {other:?}"),
        }
    }
    // The plain node sees A on the topic, and A's session gets what it publishes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        plain.publish.send(b"still there?".to_vec()).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), message(&mut a1)).await {
            Ok((_, _, data)) => {
                assert_eq!(data, b"still there?");
                break;
            }
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "A left the topic for good"),
        }
    }
    let _ = &mut plain.received;
    a.stop().await;
}
