//! Whether the node can be reached from the public internet: AutoNAT v1's verdict,
//! public addresses AutoNAT v2 confirmed, or a forced answer; and what that changes
//! (Kademlia serves only while the node is public).

use std::collections::HashSet;

use libp2p::{autonat, kad, multiaddr::Protocol, Multiaddr, Swarm};
use tokio::sync::watch;

use super::behaviour::Behaviour;

/// Whether the node can be reached from the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    Unknown,
    Public,
    Private,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }

    /// The reachability extension's STATE byte.
    pub fn code(self) -> u8 {
        match self {
            Reachability::Unknown => 0,
            Reachability::Private => 1,
            Reachability::Public => 2,
        }
    }

    /// `-fakenatpublic`/`-fakenatprivate`, or unknown until AutoNAT says.
    pub fn forced(public: Option<bool>) -> Self {
        match public {
            Some(true) => Reachability::Public,
            Some(false) => Reachability::Private,
            None => Reachability::Unknown,
        }
    }
}

/// The event loop's part that follows reachability.
pub(super) struct Reach {
    /// `-fakenatpublic`/`-fakenatprivate`: AutoNAT is not listened to.
    forced: bool,
    /// AutoNAT v1's verdict.
    nat_status: Reachability,
    /// Public addresses AutoNAT v2 confirmed reach this node.
    confirmed_global: HashSet<Multiaddr>,
    now: watch::Sender<Reachability>,
}

impl Reach {
    pub fn new(public: Option<bool>, now: watch::Sender<Reachability>) -> Self {
        Self {
            forced: public.is_some(),
            nat_status: Reachability::Unknown,
            confirmed_global: HashSet::new(),
            now,
        }
    }

    pub fn on_nat_status(&mut self, swarm: &mut Swarm<Behaviour>, status: autonat::NatStatus) {
        self.nat_status = match status {
            autonat::NatStatus::Public(_) => Reachability::Public,
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        };
        self.update(swarm);
    }

    /// AutoNAT v2 tested `addr`; only public addresses count.
    pub fn on_address_tested(&mut self, swarm: &mut Swarm<Behaviour>, addr: Multiaddr, ok: bool) {
        if !is_global(&addr) {
            return;
        }
        if ok {
            self.confirmed_global.insert(addr);
        } else {
            self.confirmed_global.remove(&addr);
        }
        self.update(swarm);
    }

    pub fn on_external_expired(&mut self, swarm: &mut Swarm<Behaviour>, addr: &Multiaddr) {
        self.confirmed_global.remove(addr);
        self.update(swarm);
    }

    /// What is known now.
    pub fn now(&self) -> Reachability {
        *self.now.borrow()
    }

    /// Public when AutoNAT v1 says so or v2 confirmed a public address; private when
    /// v1 says so; unknown otherwise. A forced answer never changes.
    fn update(&mut self, swarm: &mut Swarm<Behaviour>) {
        if self.forced {
            return;
        }
        let now = if self.nat_status == Reachability::Public || !self.confirmed_global.is_empty() {
            Reachability::Public
        } else {
            self.nat_status
        };
        self.now.send_if_modified(|current| {
            let changed = *current != now;
            if changed {
                tracing::info!(reachability = now.as_str(), "reachability changed");
                *current = now;
            }
            changed
        });
        let mode = if now == Reachability::Public { kad::Mode::Server } else { kad::Mode::Client };
        swarm.behaviour_mut().kad.set_mode(Some(mode));
    }
}

/// Whether `addr` is on the public internet (not loopback, private, link-local, shared,
/// documentation or otherwise reserved), so that a peer confirming it means the node
/// is publicly reachable.
pub(crate) fn is_global(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => is_global_v4(ip),
        Some(Protocol::Ip6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => is_global_v4(v4),
            None => {
                let first = ip.segments()[0];
                !(ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    || (first & 0xfe00) == 0xfc00 // unique local
                    || (first & 0xffc0) == 0xfe80 // link-local
                    || (first == 0x2001 && ip.segments()[1] == 0x0db8)) // documentation
            }
        },
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => true,
        _ => false,
    }
}

fn is_global_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 0 && c == 0)) // IETF protocol assignments
}
