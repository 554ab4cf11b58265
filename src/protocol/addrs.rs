//! Connect targets: a base58 peer id, or `/addrs/` + Ascii85 of the JSON
//! `{"peerID": "...", "addrs": ["/ip4/…", …]}` that carries the peer's addresses.
//!
//! The original decoded that JSON with Go's `encoding/json`, whose field matching is
//! case-insensitive (`peerID`, `PeerID`, `peerid`); an address may end in `/p2p/<id>`.

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use thiserror::Error;

use super::ascii85;

/// The prefix of a connect string that carries addresses.
pub const ADDRS_PREFIX: &str = "/addrs/";

/// Where a Connect should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    pub peer: PeerId,
    /// Addresses given with the peer id (without a trailing `/p2p/<id>`); empty for a bare id.
    pub addrs: Vec<Multiaddr>,
}

/// Why a Connect's PEERID is not a peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddrsError {
    #[error("bad peer id {0:?}: not a base58 libp2p peer id")]
    BadPeerId(String),
    #[error("bad /addrs/ connect string: {0}")]
    Ascii85(#[from] ascii85::Ascii85Error),
    #[error("bad /addrs/ connect string: JSON: {0}")]
    Json(String),
    #[error("bad /addrs/ connect string: address {0:?} is not a multiaddr")]
    BadAddr(String),
    #[error("bad /addrs/ connect string: address {addr} belongs to peer {other}, not {peer}")]
    OtherPeer { addr: String, other: String, peer: String },
}

impl ConnectTarget {
    /// Parses a Connect's PEERID field.
    pub fn parse(text: &str) -> Result<Self, AddrsError> {
        let Some(encoded) = text.strip_prefix(ADDRS_PREFIX) else {
            let peer = parse_peer(text.trim())?;
            return Ok(Self { peer, addrs: Vec::new() });
        };
        let json = ascii85::decode(encoded.as_bytes())?;
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| AddrsError::Json(e.to_string()))?;
        let object = value.as_object().ok_or_else(|| AddrsError::Json("not an object".into()))?;
        // Go's encoding/json: the exact key wins, else a case-insensitive match.
        let field = |name: &str| {
            object.get(name).or_else(|| {
                object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
            })
        };
        let peer = match field("peerID") {
            Some(serde_json::Value::String(s)) => parse_peer(s)?,
            Some(_) => return Err(AddrsError::Json("peerID is not a string".into())),
            None => return Err(AddrsError::Json("no peerID".into())),
        };
        let mut addrs = Vec::new();
        match field("addrs") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    let text = item
                        .as_str()
                        .ok_or_else(|| AddrsError::Json("an address is not a string".into()))?;
                    addrs.push(strip_peer(text, peer)?);
                }
            }
            Some(_) => return Err(AddrsError::Json("addrs is not an array".into())),
        }
        Ok(Self { peer, addrs })
    }

    /// The `/addrs/` connect string for this peer and its addresses.
    pub fn to_connect_string(&self) -> String {
        // Written by hand to keep the original's key order: peerID, then addrs.
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        let json = format!(
            r#"{{"peerID":{},"addrs":{}}}"#,
            serde_json::Value::from(self.peer.to_base58()),
            serde_json::Value::from(addrs),
        );
        format!("{ADDRS_PREFIX}{}", ascii85::encode(json.as_bytes()))
    }
}

fn parse_peer(text: &str) -> Result<PeerId, AddrsError> {
    text.parse().map_err(|_| AddrsError::BadPeerId(text.chars().take(100).collect()))
}

fn strip_peer(text: &str, peer: PeerId) -> Result<Multiaddr, AddrsError> {
    let mut addr: Multiaddr =
        text.parse().map_err(|_| AddrsError::BadAddr(text.chars().take(200).collect()))?;
    if let Some(Protocol::P2p(other)) = addr.iter().last() {
        if other != peer {
            return Err(AddrsError::OtherPeer {
                addr: text.to_string(),
                other: other.to_base58(),
                peer: peer.to_base58(),
            });
        }
        addr.pop();
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_peer_id_and_round_trip() {
        let peer = PeerId::random();
        let bare = ConnectTarget::parse(&peer.to_base58()).unwrap();
        assert_eq!(bare, ConnectTarget { peer, addrs: vec![] });
        let full = ConnectTarget { peer, addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()] };
        assert_eq!(ConnectTarget::parse(&full.to_connect_string()).unwrap(), full);
    }

    #[test]
    fn keys_are_case_insensitive_and_p2p_suffix_is_stripped() {
        let peer = PeerId::random();
        let json = format!(r#"{{"PeerId":"{peer}","ADDRS":["/ip4/10.0.0.1/tcp/1/p2p/{peer}"]}}"#);
        let text = format!("/addrs/{}", ascii85::encode(json.as_bytes()));
        let target = ConnectTarget::parse(&text).unwrap();
        assert_eq!(target.addrs, vec!["/ip4/10.0.0.1/tcp/1".parse::<Multiaddr>().unwrap()]);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(matches!(ConnectTarget::parse("nope"), Err(AddrsError::BadPeerId(_))));
        assert!(matches!(ConnectTarget::parse("/addrs/~~"), Err(AddrsError::Ascii85(_))));
        let text = format!("/addrs/{}", ascii85::encode(b"[1]"));
        assert!(matches!(ConnectTarget::parse(&text), Err(AddrsError::Json(_))));
        let other = PeerId::random();
        let json = format!(
            r#"{{"peerID":"{}","addrs":["/ip4/1.2.3.4/tcp/1/p2p/{other}"]}}"#,
            PeerId::random()
        );
        let text = format!("/addrs/{}", ascii85::encode(json.as_bytes()));
        assert!(matches!(ConnectTarget::parse(&text), Err(AddrsError::OtherPeer { .. })));
    }
}
