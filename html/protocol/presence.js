// presence.js: the presence extension (PROTOCOL.md, "Extension: presence") on the
// client side: the table of peers and local listeners a Gateway keeps once subscribed
// (PresenceTable), and reading a Peer message's INFO (parsePeerInfo).

'use strict';

import { peerStateName } from './codec.js';
import { fire } from './internal.js';

/**
 * Reads the INFO of a Peer message (JSON text, or an already parsed object):
 * `{addrs, protocols, relayed, agent}` with only the fields that are present and of the
 * right type (arrays keep only their strings). Returns null when INFO is not a JSON
 * object (e.g. empty).
 */
export function parsePeerInfo(info) {
    let obj = info;
    if (typeof info === 'string') {
        try {
            obj = JSON.parse(info);
        } catch {
            return null;
        }
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return null;
    const out = {};
    const strings = (a) => a.filter((x) => typeof x === 'string');
    if (Array.isArray(obj.addrs)) out.addrs = strings(obj.addrs);
    if (Array.isArray(obj.protocols)) out.protocols = strings(obj.protocols);
    if (typeof obj.relayed === 'boolean') out.relayed = obj.relayed;
    if (typeof obj.agent === 'string') out.agent = obj.agent;
    return out;
}

function copyPeer(entry) {
    return {
        peerID: entry.peerID,
        state: entry.state,
        addrs: [...entry.addrs],
        protocols: [...entry.protocols],
        relayed: entry.relayed,
        agent: entry.agent,
    };
}

// The text of a Protocol Error that answers a Presence: a daemon without the extension
// says "unknown message type 6", one with it names the message ("Presence: ...").
export function isPresenceError(text) {
    return /^Presence\b|unknown message type 6\b/.test(text);
}

// The answer of a daemon that knows no extension at all to any Presence message.
export function isUnknownPresence(text) {
    return /unknown message type 6\b/.test(text);
}

/**
 * What a subscribed Gateway knows: every peer the node knows and every protocol the
 * daemon's sessions listen on, kept up to date from the daemon's presence messages.
 * Events go to the gateway (`target`): `peer`, `listener` and `presence` (see Gateway).
 */
export class PresenceTable {
    #target;

    constructor(target) {
        this.#target = target;
        this.subscribed = false; // a Presence ON went out, and no OFF since
        this.pending = []; // subscribe() calls waiting for their Presence Ready, oldest first
        this.snapshot = null; // {peers, listeners}: what the oldest pending subscription listed so far
        this.peers = new Map(); // peerID -> {peerID, state, addrs, protocols, relayed, agent}
        this.listeners = new Set(); // protocols some session of the daemon listens on
    }

    /** Copies of the peers' entries (see Gateway.peers()). */
    copies() {
        return [...this.peers.values()].map(copyPeer);
    }

    /** See Gateway.findProtocols(); `self` is this node's own peer id. */
    findProtocols(self, prefix, all) {
        const found = [];
        const seen = new Set();
        const add = (peerID, protocol, local) => {
            const key = `${peerID}\n${protocol}`;
            if (seen.has(key) || !protocol.startsWith(prefix)) return;
            seen.add(key);
            found.push({ peerID, protocol, local });
        };
        for (const protocol of this.listeners) add(self, protocol, true);
        for (const peer of this.peers.values()) {
            if (peer.peerID === self || (!all && peer.state !== 'connected')) continue;
            for (const protocol of peer.protocols) add(peer.peerID, protocol, false);
        }
        return found;
    }

    reset() {
        this.subscribed = false;
        this.pending = [];
        this.snapshot = null;
        this.peers.clear();
        this.listeners.clear();
    }

    onPeer(m) {
        if (!this.subscribed) return;
        const change = peerStateName(m.state);
        let entry = this.peers.get(m.peerID);
        if (!entry) {
            entry = { peerID: m.peerID, state: 'disconnected', addrs: [], protocols: [], relayed: false, agent: '' };
            this.peers.set(m.peerID, entry);
        }
        const info = parsePeerInfo(m.info);
        if (info) Object.assign(entry, info);
        if (change === 'updated') entry.state = 'connected';
        else if (change !== 'unknown') entry.state = change;
        this.snapshot?.peers.add(m.peerID);
        fire(this.#target, 'peer', { ...copyPeer(entry), change });
        fire(this.#target, 'presence', { kind: 'peer', peerID: m.peerID, change });
    }

    onLocalListener(m) {
        if (!this.subscribed) return;
        if (m.up) {
            this.listeners.add(m.protocol);
            this.snapshot?.listeners.add(m.protocol);
        } else {
            this.listeners.delete(m.protocol);
            this.snapshot?.listeners.delete(m.protocol);
        }
        fire(this.#target, 'listener', { protocol: m.protocol, up: m.up });
        fire(this.#target, 'presence', { kind: 'listener', protocol: m.protocol, up: m.up });
    }

    // The daemon fell behind and sends the whole state again, then Presence Ready: the
    // next Ready is this resync's, and what the state leaves out is gone.
    onResync() {
        if (!this.subscribed) return;
        this.snapshot = { peers: new Set(), listeners: new Set() };
        this.pending.unshift({ resolve() {}, reject() {} });
    }

    onReady() {
        const entry = this.pending.shift();
        if (!entry) return; // not asked for (or after unsubscribe): nothing to complete
        const snapshot = this.snapshot;
        this.snapshot = this.pending.length > 0 ? { peers: new Set(), listeners: new Set() } : null;
        if (snapshot) {
            // The state the daemon just sent is complete: what it left out is gone.
            for (const [peerID, peer] of [...this.peers]) {
                if (snapshot.peers.has(peerID)) continue;
                this.peers.delete(peerID);
                fire(this.#target, 'peer', { ...copyPeer(peer), state: 'disconnected', change: 'forgotten' });
            }
            for (const protocol of [...this.listeners]) {
                if (snapshot.listeners.has(protocol)) continue;
                this.listeners.delete(protocol);
                fire(this.#target, 'listener', { protocol, up: false });
            }
        }
        entry.resolve({ peers: this.copies(), listeners: [...this.listeners] });
        fire(this.#target, 'presence', { kind: 'ready' });
    }

    onError(text) {
        const entry = this.pending.shift();
        if (!entry) return;
        this.snapshot = this.pending.length > 0 ? { peers: new Set(), listeners: new Set() } : null;
        if (this.pending.length === 0) this.reset();
        entry.reject(new Error(`presence is not available: ${text}`));
    }
}
