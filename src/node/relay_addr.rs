//! One home for relay addresses: how a relay is named (`--relay-via`, a Connect's
//! RELAY), the address the relay transport dials, the circuit address through it,
//! and which relay a circuit address goes through.

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

use crate::protocol::{
    addrs::{parse_addr, parse_peer},
    text,
};

/// A relay: its peer id, and the address in front of `/p2p/RELAY_ID` when one is
/// known (empty when the relay was named by its bare id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAddr {
    peer: PeerId,
    at: Multiaddr,
}

/// A text that names no relay; it holds the quoted text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a relay's multiaddr ending in /p2p/RELAY_ID")]
pub struct RelayAddrError(String);

impl RelayAddr {
    /// The relay with peer id `peer`, at no known address.
    pub fn of_peer(peer: PeerId) -> Self {
        Self { peer, at: Multiaddr::empty() }
    }

    /// A multiaddr that names the relay's peer id at its end and is not itself a
    /// circuit (what `--relay-via` takes).
    pub fn parse_multiaddr(text: &str) -> Result<Self, RelayAddrError> {
        let bad = || RelayAddrError(text::quote(text));
        let addr = parse_addr(text).map_err(|_| bad())?;
        Self::from_multiaddr(&addr).ok_or_else(bad)
    }

    /// A Connect's RELAY: the relay's base58 peer id, or its multiaddr.
    pub fn parse(text: &str) -> Result<Self, RelayAddrError> {
        match parse_peer(text) {
            Ok(peer) => Ok(Self::of_peer(peer)),
            Err(_) => Self::parse_multiaddr(text),
        }
    }

    /// `addr` as a relay, if it ends in `/p2p/RELAY_ID` and is no circuit.
    pub fn from_multiaddr(addr: &Multiaddr) -> Option<Self> {
        if addr.iter().any(|p| p == Protocol::P2pCircuit) {
            return None;
        }
        let (peer, at) = split_peer(addr)?;
        Some(Self { peer, at })
    }

    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The address in front of `/p2p/RELAY_ID`; `None` for a relay named by its id.
    pub fn at(&self) -> Option<&Multiaddr> {
        (!self.at.is_empty()).then_some(&self.at)
    }

    /// The same relay at `at`.
    pub fn with_address(&self, at: Multiaddr) -> Self {
        Self { peer: self.peer, at }
    }

    /// `…/p2p/RELAY_ID`.
    pub fn to_multiaddr(&self) -> Multiaddr {
        self.at.clone().with(Protocol::P2p(self.peer))
    }

    /// The circuit address that reaches `target` through this relay.
    pub fn circuit_to(&self, target: PeerId) -> Multiaddr {
        self.to_multiaddr().with(Protocol::P2pCircuit).with(Protocol::P2p(target))
    }

    /// The address to listen on for a reservation on this relay.
    pub fn reservation(&self) -> Multiaddr {
        self.to_multiaddr().with(Protocol::P2pCircuit)
    }
}

impl std::fmt::Display for RelayAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_multiaddr().fmt(f)
    }
}

/// `addr` without its trailing `/p2p/ID`, and that id.
pub fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut at = addr.clone();
    match at.pop()? {
        Protocol::P2p(peer) => Some((peer, at)),
        _ => None,
    }
}

/// `Some(relay)` when `addr` is a circuit address (`…/p2p/RELAY/p2p-circuit…`), the
/// relay's id when the address names it.
pub fn circuit_relay(addr: &Multiaddr) -> Option<Option<PeerId>> {
    let mut relay = None;
    for part in addr.iter() {
        match part {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return Some(relay),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_by_id_or_by_address() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let by_id = RelayAddr::parse(&relay.to_base58()).unwrap();
        assert_eq!((by_id.peer(), by_id.at()), (relay, None));
        let text = format!("/ip4/192.0.2.1/tcp/4001/p2p/{relay}");
        let full = RelayAddr::parse(&text).unwrap();
        assert_eq!(full, RelayAddr::parse_multiaddr(&text).unwrap());
        assert_eq!(full.at(), Some(&"/ip4/192.0.2.1/tcp/4001".parse().unwrap()));
        assert_eq!(full.to_string(), text);
        let circuit = full.circuit_to(target);
        assert_eq!(circuit.to_string(), format!("{text}/p2p-circuit/p2p/{target}"));
        assert_eq!(circuit_relay(&circuit), Some(Some(relay)));
        assert_eq!(full.reservation().to_string(), format!("{text}/p2p-circuit"));
        assert_eq!(by_id.with_address("/ip4/192.0.2.1/tcp/4001".parse().unwrap()), full);
    }

    #[test]
    fn what_names_no_relay() {
        for bad in [
            "/ip4/192.0.2.1/tcp/4001".to_string(),
            format!("/ip4/192.0.2.1/tcp/4001/p2p/{}/p2p-circuit", PeerId::random()),
            "not a relay".to_string(),
            "z".repeat(1 << 16),
        ] {
            let error = RelayAddr::parse(&bad).unwrap_err().to_string();
            assert!(error.len() < 200, "{error}");
        }
        assert!(RelayAddr::parse_multiaddr(&PeerId::random().to_base58()).is_err());
        assert_eq!(circuit_relay(&"/ip4/10.0.0.1/tcp/1".parse().unwrap()), None);
    }
}
