//! The presence extension: live peers and the listeners of this daemon, opt-in.

mod common;

use std::time::Duration;

use common::*;
use libp2p_websocket::protocol::{ClientMsg, ServerMsg};

/// Subscribes and returns what came before Presence Ready.
async fn subscribe(client: &mut Client) -> Vec<ServerMsg> {
    client.send(ClientMsg::Presence { on: true }).await;
    let mut state = Vec::new();
    loop {
        match client.recv().await {
            ServerMsg::PresenceReady => return state,
            msg @ (ServerMsg::Peer { .. } | ServerMsg::LocalListener { .. }) => state.push(msg),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn listeners_of_this_daemon_come_and_go() {
    let daemon = Daemon::local().await;
    let (mut host, _) = Client::started(&daemon).await;
    host.listen("/game/1/alpha", true).await;
    let (mut lobby, _) = Client::started(&daemon).await;
    let (mut bystander, _) = Client::started(&daemon).await;
    let state = subscribe(&mut lobby).await;
    assert!(state.iter().any(|m| matches!(m, ServerMsg::LocalListener { up: true, protocol } if protocol == "/game/1/alpha")));

    host.listen("/game/1/beta", true).await;
    match lobby.recv().await {
        ServerMsg::LocalListener { up: true, protocol } => assert_eq!(protocol, "/game/1/beta"),
        other => panic!("{other:?}"),
    }
    host.send(ClientMsg::Stop { retain: false, protocol: "/game/1/alpha".into() }).await;
    match lobby.recv().await {
        ServerMsg::LocalListener { up: false, protocol } => assert_eq!(protocol, "/game/1/alpha"),
        other => panic!("{other:?}"),
    }
    // A session that did not subscribe hears nothing of it.
    assert!(bystander.quiet_for(Duration::from_millis(200)).await.is_none());
    // Unsubscribed, the lobby hears nothing either; its host leaving is not news.
    lobby.send(ClientMsg::Presence { on: false }).await;
    drop(host);
    assert!(lobby.quiet_for(Duration::from_millis(300)).await.is_none());
    daemon.stop().await;
}

fn peer_info(msg: &ServerMsg) -> Option<(u8, String, serde_json::Value)> {
    match msg {
        ServerMsg::Peer { state, peer_id, info } => {
            Some((*state, peer_id.clone(), serde_json::from_str(info).expect("INFO is JSON")))
        }
        _ => None,
    }
}

#[tokio::test]
async fn peers_and_their_protocols_across_daemons() {
    let a = Daemon::local().await;
    let b = Daemon::local().await;
    let (mut lobby, ia) = Client::started(&a).await;
    lobby.listen("/game/1/lobby", true).await;
    assert!(subscribe(&mut lobby).await.iter().all(|m| peer_info(m).is_none()), "no peers yet");
    let (mut player, ib) = Client::started(&b).await;
    let b_id = ib.peer_id.to_base58();
    player.open(&ia.connect_string(), "/game/1/lobby", true).await;

    // B's browser hosts a game: A's lobby learns of it through identify.
    player.listen("/game/1/from-b", true).await;
    let mut states = Vec::new();
    let found = within("B's game announced to A", async {
        loop {
            let msg = lobby.recv().await;
            if let ServerMsg::ListenerConnection { .. } = msg {
                continue; // B's stream to the lobby
            }
            if let Some((state, peer, info)) = peer_info(&msg) {
                assert_eq!(peer, b_id);
                states.push(state);
                let protocols = info["protocols"].as_array().unwrap();
                if protocols.iter().any(|p| p == "/game/1/from-b") {
                    return info;
                }
            }
        }
    })
    .await;
    assert_eq!(states[0], 2, "first news of B: connected");
    assert!(found["agent"].as_str().unwrap().starts_with("libp2p-websocket/"));
    assert_eq!(found["relayed"], false);

    // Subscribing again gives the same state in one go.
    let again = subscribe(&mut lobby).await;
    // (Changes queued before the new subscription may come first: the state is last.)
    let (state, _, info) = again.iter().rev().find_map(peer_info).expect("B is known");
    assert_eq!(state, 2);
    assert!(info["protocols"].as_array().unwrap().iter().any(|p| p == "/game/1/from-b"));

    // B goes away: A's lobby sees it disconnected.
    b.stop().await;
    within("B disconnected", async {
        loop {
            if let Some((0, peer, _)) = peer_info(&lobby.recv().await) {
                assert_eq!(peer, b_id);
                return;
            }
        }
    })
    .await;
    a.stop().await;
}
