//! Connect targets: a base58 peer id, or `/addrs/` + Ascii85 of the JSON
//! `{"peerID": "...", "addrs": ["/ip4/…", …]}` that carries the peer's addresses.
//!
//! The original decoded that JSON with Go's `encoding/json`, whose field matching is
//! case-insensitive (`peerID`, `PeerID`, `peerid`); an address may end in `/p2p/<id>`.

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use thiserror::Error;

use super::{ascii85, text::quote};

/// The prefix of a connect string that carries addresses.
pub const ADDRS_PREFIX: &str = "/addrs/";
/// The longest peer id text parsed, in bytes. Real ones are 46–60 characters of
/// base58; the limit keeps base58's quadratic decode off huge input.
pub const MAX_PEER_ID_TEXT: usize = 128;
/// The longest multiaddr text parsed, in bytes (a DNS name is at most 253).
pub const MAX_ADDR_TEXT: usize = 512;
/// Addresses one Connect may carry (each may cost a socket while it is dialed).
pub const MAX_CONNECT_ADDRS: usize = 16;

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
    #[error("bad peer id {}: not a base58 libp2p peer id", quote(.0))]
    BadPeerId(String),
    #[error("bad peer id: {0} bytes, longer than any peer id ({MAX_PEER_ID_TEXT})")]
    PeerIdTooLong(usize),
    #[error("bad /addrs/ connect string: {0}")]
    Ascii85(#[from] ascii85::Ascii85Error),
    #[error("bad /addrs/ connect string: JSON: {0}")]
    Json(String),
    #[error("bad /addrs/ connect string: address {} is not a multiaddr", quote(.0))]
    BadAddr(String),
    #[error(
        "bad /addrs/ connect string: an address is {0} bytes, over the limit of {MAX_ADDR_TEXT}"
    )]
    AddrTooLong(usize),
    #[error("bad /addrs/ connect string: more than {MAX_CONNECT_ADDRS} addresses")]
    TooManyAddrs,
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
                if items.len() > MAX_CONNECT_ADDRS {
                    return Err(AddrsError::TooManyAddrs);
                }
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

/// A peer id's text, refused unread when longer than any peer id.
pub fn parse_peer(text: &str) -> Result<PeerId, AddrsError> {
    if text.len() > MAX_PEER_ID_TEXT {
        return Err(AddrsError::PeerIdTooLong(text.len()));
    }
    text.parse().map_err(|_| AddrsError::BadPeerId(text.to_string()))
}

/// A multiaddr's text, refused unread when over [`MAX_ADDR_TEXT`] (a `/p2p/` or
/// `/certhash/` component inside is base58 too). A control character is refused too:
/// the multiaddr crate takes any text as a DNS name, and an address is shown again in
/// refusals and logs (a dial's errors name it).
pub fn parse_addr(text: &str) -> Result<Multiaddr, AddrsError> {
    if text.len() > MAX_ADDR_TEXT {
        return Err(AddrsError::AddrTooLong(text.len()));
    }
    if text.chars().any(char::is_control) {
        return Err(AddrsError::BadAddr(text.to_string()));
    }
    text.parse().map_err(|_| AddrsError::BadAddr(text.to_string()))
}

/// Whether `addr` points at the dialing machine itself or its link: loopback,
/// unspecified (which the kernel takes as this machine), link-local, or `localhost`
/// by name. Browsers on other machines may not dial these (they would probe this
/// machine's ports).
pub fn is_local_target(addr: &Multiaddr) -> bool {
    addr.iter().any(|component| match component {
        Protocol::Ip4(ip) => ip.is_loopback() || ip.is_unspecified() || ip.is_link_local(),
        Protocol::Ip6(ip) => {
            let mapped = ip.to_ipv4_mapped();
            ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || mapped
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified() || v4.is_link_local())
        }
        Protocol::Dns(name)
        | Protocol::Dns4(name)
        | Protocol::Dns6(name)
        | Protocol::Dnsaddr(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        _ => false,
    })
}

fn strip_peer(text: &str, peer: PeerId) -> Result<Multiaddr, AddrsError> {
    let mut addr = parse_addr(text)?;
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

    #[test]
    fn oversized_input_is_refused_unread() {
        // A 256 KiB "peer id" would take seconds of base58 decoding; it is refused by
        // its length alone.
        let huge = "z".repeat(256 * 1024);
        assert_eq!(ConnectTarget::parse(&huge), Err(AddrsError::PeerIdTooLong(huge.len())));
        let peer = PeerId::random();
        let inside = |addrs: Vec<String>| {
            let json = serde_json::json!({ "peerID": peer.to_base58(), "addrs": addrs });
            format!("/addrs/{}", ascii85::encode(json.to_string().as_bytes()))
        };
        // The same text as a /p2p/ component inside an address, and as the peerID.
        let long_p2p = format!("/ip4/127.0.0.1/tcp/1/p2p/{huge}");
        assert_eq!(
            ConnectTarget::parse(&inside(vec![long_p2p.clone()])),
            Err(AddrsError::AddrTooLong(long_p2p.len()))
        );
        let json = serde_json::json!({ "peerID": huge, "addrs": [] });
        let text = format!("/addrs/{}", ascii85::encode(json.to_string().as_bytes()));
        assert_eq!(ConnectTarget::parse(&text), Err(AddrsError::PeerIdTooLong(huge.len())));
        // Too many addresses.
        let many = (0..=MAX_CONNECT_ADDRS).map(|i| format!("/ip4/10.0.0.1/tcp/{i}")).collect();
        assert_eq!(ConnectTarget::parse(&inside(many)), Err(AddrsError::TooManyAddrs));
        let enough = (0..MAX_CONNECT_ADDRS).map(|i| format!("/ip4/10.0.0.1/tcp/{i}")).collect();
        assert_eq!(ConnectTarget::parse(&inside(enough)).unwrap().addrs.len(), MAX_CONNECT_ADDRS);
        // A multiaddr that would carry a line break into a log is no multiaddr here.
        let forged = inside(vec!["/dns4/a\n2026 INFO forged/tcp/1".into()]);
        assert!(matches!(ConnectTarget::parse(&forged), Err(AddrsError::BadAddr(_))));
        // What a refusal quotes is short.
        let bad = AddrsError::BadPeerId("\n".repeat(64)).to_string();
        assert!(bad.len() < 200, "{bad}");
    }

    #[test]
    fn local_targets() {
        for local in [
            "/ip4/127.0.0.1/tcp/22",
            "/ip4/127.8.9.1/udp/1/quic-v1",
            "/ip4/0.0.0.0/tcp/22",
            "/ip4/169.254.1.1/tcp/22",
            "/ip6/::1/tcp/22",
            "/ip6/::/tcp/22",
            "/ip6/fe80::1/tcp/22",
            "/ip6/::ffff:127.0.0.1/tcp/22",
            "/dns4/localhost/tcp/22",
            "/dns/LocalHost./tcp/22",
            "/dns6/db.localhost/tcp/22",
        ] {
            assert!(is_local_target(&local.parse().unwrap()), "{local}");
        }
        for remote in
            ["/ip4/192.168.1.5/tcp/22", "/ip6/2001:db8::1/tcp/1", "/dns4/example.org/tcp/1"]
        {
            assert!(!is_local_target(&remote.parse().unwrap()), "{remote}");
        }
    }
}
