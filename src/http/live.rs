//! What the dashboard draws, as the `live` part of `/status`: the sessions open now
//! and their origins, the node's connected peers (direct or relayed), the protocols
//! sessions listen on, and the bytes per second of the last minutes.
//!
//! Every list is capped ([`SHOWN`] rows; the totals say how many there are) and every
//! text that came from outside (an origin, a peer's agent, a protocol name) is cut
//! short; the page shows them as text, never as markup.

use serde_json::{json, Value};

use crate::{
    metrics::live::{shorten, SHOWN_SESSIONS},
    node::PeerState,
    session::Shared,
};

/// Peers and protocols listed at most.
pub const SHOWN: usize = SHOWN_SESSIONS;

/// The `live` object of `/status`.
pub fn view(shared: &Shared) -> Value {
    let metrics = &shared.metrics;
    let (sessions, session_count) = metrics.live_sessions();
    let connected: Vec<_> = shared
        .node
        .current()
        .map(|node| node.peers().snapshot())
        .unwrap_or_default()
        .into_iter()
        .filter(|peer| peer.state == PeerState::Connected)
        .collect();
    let peers: Vec<Value> = connected
        .iter()
        .take(SHOWN)
        .map(|peer| {
            json!({
                "peer_id": peer.peer.to_base58(),
                "relayed": peer.info.relayed,
                "agent": shorten(&peer.info.agent),
            })
        })
        .collect();
    let protocols = shared.hub.protocols();
    let [from_browsers, to_browsers] = metrics.data_totals();
    json!({
        "counting": metrics.is_on(),
        "sessions": sessions,
        "session_count": session_count,
        "peers": peers,
        "peer_count": connected.len(),
        "protocols": protocols.iter().take(SHOWN).map(|p| shorten(p)).collect::<Vec<_>>(),
        "protocol_count": protocols.len(),
        "data_bytes": { "from_browsers": from_browsers, "to_browsers": to_browsers },
        "traffic": metrics.traffic(),
    })
}
