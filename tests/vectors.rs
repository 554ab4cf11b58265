//! The shared hex vectors (`tests/vectors/messages.json`, made by `gen.py` with Python's
//! own `base64.a85encode`): the Rust codec must agree with them byte for byte, as the JS
//! client's tests must.

use bytes::Bytes;
use libp2p_websocket::protocol::{ascii85, ClientMsg, ConnectTarget, Relay, ServerMsg};
use serde_json::{json, Value};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/messages.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bytes_of(v: &Value) -> Bytes {
    Bytes::from(hex::decode(v.as_str().unwrap()).unwrap())
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn client_json(msg: &ClientMsg) -> Value {
    match msg {
        ClientMsg::Start { key } => json!({"type": "Start", "key": text(key)}),
        // The July 2020 generation has no shared vectors (the JS client does not speak it).
        ClientMsg::StartAt { port, key } => {
            json!({"type": "StartAt", "port": port, "key": text(key)})
        }
        ClientMsg::Listen { frames, protocol } => {
            json!({"type": "Listen", "frames": frames, "protocol": protocol})
        }
        ClientMsg::Stop { retain, protocol } => {
            json!({"type": "Stop", "retain": retain, "protocol": protocol})
        }
        ClientMsg::Close { id } => json!({"type": "Close", "id": id.to_string()}),
        ClientMsg::Data { id, data } => {
            json!({"type": "Data", "id": id.to_string(), "data": hex::encode(data)})
        }
        ClientMsg::Connect { frames, relay, protocol, peer } => {
            let relay = match relay {
                Relay::Direct => json!(false),
                Relay::Any => json!(true),
                Relay::Via(r) => json!(r),
            };
            json!({"type": "Connect", "frames": frames, "relay": relay, "protocol": protocol, "peer": peer})
        }
        ClientMsg::Presence { on } => json!({"type": "Presence", "on": on}),
        ClientMsg::Extensions { names } => json!({"type": "Extensions", "names": names}),
        ClientMsg::Credit { id, bytes } => {
            json!({"type": "Credit", "id": id.to_string(), "bytes": bytes})
        }
        ClientMsg::Ack { count } => json!({"type": "Ack", "count": count.to_string()}),
        ClientMsg::Subscribe { topic } => json!({"type": "Subscribe", "topic": topic}),
        ClientMsg::Unsubscribe { topic } => json!({"type": "Unsubscribe", "topic": topic}),
        ClientMsg::Publish { topic, data } => {
            json!({"type": "Publish", "topic": topic, "data": hex::encode(data)})
        }
    }
}

fn server_json(msg: &ServerMsg) -> Value {
    match msg {
        ServerMsg::Hello { started, version } => {
            json!({"type": "Hello", "started": started, "version": version})
        }
        ServerMsg::Identify { public, peer_id, addresses, key } => {
            json!({"type": "Identify", "public": public, "peerID": peer_id, "addresses": addresses, "key": key})
        }
        ServerMsg::IdentifyJuly2020 { public, peer_id, addresses, key, version } => {
            json!({"type": "IdentifyJuly2020", "public": public, "peerID": peer_id, "addresses": addresses, "key": key, "version": version})
        }
        ServerMsg::ListenerConnection { id, peer_id, protocol } => {
            json!({"type": "ListenerConnection", "id": id.to_string(), "peerID": peer_id, "protocol": protocol})
        }
        ServerMsg::ConnectionClosed { id, reason } => {
            json!({"type": "ConnectionClosed", "id": id.to_string(), "reason": reason})
        }
        ServerMsg::Data { id, data } => {
            json!({"type": "Data", "id": id.to_string(), "data": hex::encode(data)})
        }
        ServerMsg::ListenRefused { protocol } => {
            json!({"type": "ListenRefused", "protocol": protocol})
        }
        ServerMsg::ListenerClosed { protocol } => {
            json!({"type": "ListenerClosed", "protocol": protocol})
        }
        ServerMsg::PeerConnection { id, peer_id, protocol } => {
            json!({"type": "PeerConnection", "id": id.to_string(), "peerID": peer_id, "protocol": protocol})
        }
        ServerMsg::PeerConnectionRefused { peer_id, protocol, error } => {
            json!({"type": "PeerConnectionRefused", "peerID": peer_id, "protocol": protocol, "error": error})
        }
        ServerMsg::ProtocolError { msg } => json!({"type": "ProtocolError", "msg": msg}),
        ServerMsg::Listening { protocol } => json!({"type": "Listening", "protocol": protocol}),
        ServerMsg::Peer { state, peer_id, info } => {
            json!({"type": "Peer", "state": state, "peerID": peer_id, "info": info})
        }
        ServerMsg::LocalListener { up, protocol } => {
            json!({"type": "LocalListener", "up": up, "protocol": protocol})
        }
        ServerMsg::PresenceReady => json!({"type": "PresenceReady"}),
        ServerMsg::PresenceResync => json!({"type": "PresenceResync"}),
        ServerMsg::Relayed { id, relay } => {
            json!({"type": "Relayed", "id": id.to_string(), "relay": relay})
        }
        ServerMsg::Extensions { names } => json!({"type": "Extensions", "names": names}),
        ServerMsg::Credit { id, bytes } => {
            json!({"type": "Credit", "id": id.to_string(), "bytes": bytes})
        }
        ServerMsg::Reachability { state } => json!({"type": "Reachability", "state": state}),
        ServerMsg::Ack { count } => json!({"type": "Ack", "count": count.to_string()}),
        ServerMsg::Resumed { count, token } => {
            json!({"type": "Resumed", "count": count.to_string(), "token": token})
        }
        ServerMsg::ResumeRefused { reason } => json!({"type": "ResumeRefused", "reason": reason}),
        ServerMsg::Subscribed { topic } => json!({"type": "Subscribed", "topic": topic}),
        ServerMsg::TopicRefused { topic, reason } => {
            json!({"type": "TopicRefused", "topic": topic, "reason": reason})
        }
        ServerMsg::TopicMessage { topic, from, seq, data } => {
            json!({"type": "TopicMessage", "topic": topic, "from": from, "seq": seq.to_string(), "data": hex::encode(data)})
        }
        ServerMsg::TopicPeer { joined, topic, peer } => {
            json!({"type": "TopicPeer", "joined": joined, "topic": topic, "peerID": peer})
        }
        ServerMsg::Missed { topic, count } => {
            json!({"type": "Missed", "topic": topic, "count": count.to_string()})
        }
    }
}

#[test]
fn client_messages_match_the_vectors() {
    let v = vectors();
    let cases = v["client"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = &case["name"];
        let bytes = bytes_of(&case["hex"]);
        let msg = ClientMsg::decode(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(client_json(&msg), case["msg"], "{name}");
        let readme_relay = matches!(msg, ClientMsg::Connect { relay: Relay::Via(_), .. });
        if case["layout"] == "client" || readme_relay {
            assert_eq!(hex::encode(msg.encode()), case["hex"].as_str().unwrap(), "{name}: encode");
        }
    }
    for case in v["client_invalid"].as_array().unwrap() {
        let err =
            ClientMsg::decode(bytes_of(&case["hex"])).expect_err(case["name"].as_str().unwrap());
        let want = case["error"].as_str().unwrap();
        assert!(err.to_string().contains(want), "{}: {err} lacks {want}", case["name"]);
    }
}

#[test]
fn server_messages_match_the_vectors() {
    let v = vectors();
    let cases = v["server"].as_array().unwrap();
    assert!(cases.len() >= 11);
    for case in cases {
        let name = &case["name"];
        let msg =
            ServerMsg::decode(bytes_of(&case["hex"])).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(server_json(&msg), case["msg"], "{name}");
        assert_eq!(hex::encode(msg.encode()), case["hex"].as_str().unwrap(), "{name}: encode");
    }
}

#[test]
fn ascii85_matches_python() {
    let v = vectors();
    let cases = v["ascii85"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let raw = bytes_of(&case["hex"]);
        let text = case["text"].as_str().unwrap();
        assert_eq!(ascii85::encode(&raw), text);
        assert_eq!(ascii85::decode(text.as_bytes()).unwrap(), raw.to_vec());
    }
}

#[test]
fn addrs_connect_strings_match_python() {
    let v = vectors();
    for case in v["addrs"].as_array().unwrap() {
        let connect = case["connect"].as_str().unwrap();
        let json = case["json"].as_str().unwrap();
        assert_eq!(connect, format!("/addrs/{}", ascii85::encode(json.as_bytes())));
        let target = ConnectTarget::parse(connect).unwrap();
        assert_eq!(target.peer.to_base58(), case["peerID"].as_str().unwrap());
        let given: Vec<String> = serde_json::from_value(case["addrs"].clone()).unwrap();
        let suffix = format!("/p2p/{}", target.peer);
        let expected: Vec<String> =
            given.iter().map(|a| a.trim_end_matches(&suffix).to_string()).collect();
        let parsed: Vec<String> = target.addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(parsed, expected);
        if given == expected {
            assert_eq!(target.to_connect_string(), connect, "the daemon writes the same string");
        }
    }
}

#[test]
fn keys_in_the_originals_format_give_go_libp2ps_peer_ids() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/go-keys.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert!(keys.len() >= 5);
    for case in keys {
        let text = case["key"].as_str().unwrap();
        let key = libp2p_websocket::node::NodeKey::from_text(text).unwrap();
        assert_eq!(
            key.keypair.public().to_peer_id().to_base58(),
            case["peerID"].as_str().unwrap(),
            "{}",
            case["type"]
        );
        assert_eq!(key.text, text, "Identify hands the key back as given");
    }
}
