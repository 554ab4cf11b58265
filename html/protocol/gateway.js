// gateway.js: the promise API of protocol.js: Gateway (one control WebSocket) and its
// Connections, with the presence extension.

'use strict';

import {
    Blob_,
    KEY_STORAGE_NAME,
    decodeServerMessage,
    encodeClientMessage,
    isConnectString,
    makeConnectString,
    parseConnectString,
    peerStateName,
    toBytes,
} from './codec.js';

// ------------------------------------------------------------------ socket plumbing

const DetailEvent =
    globalThis.CustomEvent ??
    class DetailEvent extends Event {
        constructor(type, init = {}) {
            super(type, init);
            this.detail = init.detail ?? null;
        }
    };

function fire(target, type, detail) {
    return target.dispatchEvent(new DetailEvent(type, { detail }));
}

const OPEN = 1;

// Delivers each binary message of `ws` to `onBytes` in arrival order, whatever form the
// WebSocket implementation hands it in (ArrayBuffer, Blob, Node Buffer).
export function receiveBinary(ws, onBytes) {
    try {
        ws.binaryType = 'arraybuffer';
    } catch {
        /* not settable: Blobs are handled below */
    }
    let chain = Promise.resolve();
    let pending = 0; // Blobs being read: later messages queue behind them
    const deliver = (data) => {
        if (typeof data === 'string') return; // the protocol is binary only
        onBytes(toBytes(data));
    };
    // In the queue a throwing handler must not stall later messages: report it the way
    // an event listener's exception is reported, and go on.
    const deliverQueued = (data) => {
        try {
            deliver(data);
        } catch (err) {
            setTimeout(() => {
                throw err;
            });
        }
    };
    ws.addEventListener('message', (event) => {
        const data = event.data;
        const isBlob =
            data instanceof Blob_ || (data && typeof data.arrayBuffer === 'function' && !ArrayBuffer.isView(data));
        if (isBlob) {
            pending++;
            const bytes = data.arrayBuffer();
            chain = chain
                .then(() => bytes)
                .then(deliverQueued, (err) => console.error('libp2p-websocket: cannot read a message', err))
                .finally(() => pending--);
        } else if (pending > 0) {
            chain = chain.then(() => deliverQueued(data));
        } else {
            deliver(data);
        }
    });
}

export function defaultUrl() {
    const loc = globalThis.location;
    if (!loc || !loc.host) {
        throw new Error('no URL given, and no page location to derive ws://<host>/libp2p from');
    }
    return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/libp2p';
}

function defaultStorage() {
    try {
        return globalThis.localStorage ?? null;
    } catch {
        return null; // e.g. a sandboxed iframe
    }
}

export function parseAddresses(json) {
    try {
        const a = JSON.parse(json);
        return Array.isArray(a) ? a.map(String) : [];
    } catch {
        return [];
    }
}

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
function isPresenceError(text) {
    return /^Presence\b|unknown message type 6\b/.test(text);
}

// The answer of a daemon that knows no extension at all to any Presence message.
function isUnknownPresence(text) {
    return /unknown message type 6\b/.test(text);
}

// ------------------------------------------------------------------ promise API

const kSend = Symbol('send');
const kData = Symbol('data');
const kClosed = Symbol('closed');
const kForget = Symbol('forget');
const kRelayed = Symbol('relayed');

/**
 * One libp2p stream, opened by `Gateway.connect()` (incoming = false) or accepted by a
 * listener (incoming = true, delivered by the gateway's `connection` event).
 *
 * Events: `data` (detail: Uint8Array; with a framed protocol one event per frame),
 * `close` (detail: the reason text) and `relayed` (detail: the relay's peer id, see
 * below). Data that arrives while nobody consumes it (no `data` listener, no running
 * async iteration) is kept and handed to the next consumer.
 *
 *   for await (const chunk of conn) { ... }   // ends when the connection closes
 *
 * Relayed streams: `relayed` is true when the stream goes through a circuit relay, and
 * `relay` is then the relay's base58 peer id ('' when the daemon does not know it). The
 * daemon says so in a Relayed message that comes right after the Peer Connection or
 * Listener Connection and before any data of the stream. connect() resolves, and the
 * gateway's `connection` event fires, on that first message, so at that moment
 * `relayed` may still be false and turn true just after: it is final by the first
 * `data` event. To react to it, read `conn.relayed` and listen for `relayed` (fired once,
 * on the connection and on its gateway); a listener added in the same task as the
 * `await gw.connect(...)` or the `connection` handler never misses it. A daemon without
 * the extension never sends Relayed: `relayed` stays false there.
 */
export class Connection extends EventTarget {
    #gateway;
    #iterators = new Set();
    #listeners = new Map(); // data listener -> Map(capture -> the function registered)
    #backlog = [];
    #flushing = false;

    constructor(gateway, id, peerID, protocol, incoming) {
        super();
        this.#gateway = gateway;
        /** Connection id (BigInt), unique within the gateway session. */
        this.id = id;
        /** The remote peer. */
        this.peerID = peerID;
        /** The libp2p protocol id of the stream. */
        this.protocol = protocol;
        /** True when the remote peer opened it (through a listener). */
        this.incoming = incoming;
        /** Set once the connection is closed; `reason` says why. */
        this.closed = false;
        this.reason = null;
        /** True when the stream goes through a circuit relay (see above: may turn true just after creation). */
        this.relayed = false;
        /** The relay's base58 peer id when `relayed` ('' when not relayed, or the relay is unknown). */
        this.relay = '';
    }

    get gateway() {
        return this.#gateway;
    }

    /** Sends bytes (a string goes as UTF-8). With a framed protocol each call is one frame. */
    send(data) {
        if (this.closed) throw new Error(`connection ${this.id} is closed`);
        this.#gateway[kSend]({ type: 'Data', id: this.id, data: toBytes(data) });
    }

    /** Sends JSON.stringify(value) as UTF-8. */
    sendJSON(value) {
        this.send(JSON.stringify(value));
    }

    /** Closes the stream. The `close` event fires at once with reason "closed". */
    close() {
        if (this.closed) return;
        try {
            this.#gateway[kSend]({ type: 'Close', id: this.id });
        } catch {
            /* the gateway is gone already */
        }
        this.#gateway[kForget](this.id);
        this[kClosed]('closed');
    }

    // `data` listeners are counted (once and signal included), so that data arriving
    // while nobody listens is kept instead of dropped.
    addEventListener(type, listener, options) {
        if (type !== 'data' || listener == null) return super.addEventListener(type, listener, options);
        const opts = typeof options === 'object' && options !== null ? options : {};
        const capture = typeof options === 'boolean' ? options : Boolean(opts.capture);
        if (opts.signal?.aborted) return undefined;
        let byCapture = this.#listeners.get(listener);
        if (byCapture?.has(capture)) return undefined;
        const call = (event) =>
            typeof listener === 'function' ? listener.call(this, event) : listener.handleEvent(event);
        const registered = opts.once
            ? (event) => {
                  this.removeEventListener('data', listener, capture);
                  call(event);
              }
            : listener;
        if (!byCapture) this.#listeners.set(listener, (byCapture = new Map()));
        byCapture.set(capture, registered);
        super.addEventListener('data', registered, { capture });
        opts.signal?.addEventListener('abort', () => this.removeEventListener('data', listener, capture), { once: true });
        if (this.#backlog.length > 0 && !this.#flushing) {
            // hand over in a microtask, so the code adding the listener finishes first
            this.#flushing = true;
            queueMicrotask(() => this.#flush());
        }
        return undefined;
    }

    removeEventListener(type, listener, options) {
        if (type !== 'data' || listener == null) return super.removeEventListener(type, listener, options);
        const capture = typeof options === 'boolean' ? options : Boolean(options?.capture);
        const byCapture = this.#listeners.get(listener);
        const registered = byCapture?.get(capture);
        if (!registered) return undefined;
        byCapture.delete(capture);
        if (byCapture.size === 0) this.#listeners.delete(listener);
        return super.removeEventListener('data', registered, { capture });
    }

    /** Yields each chunk (Uint8Array) until the connection closes. `break` leaves it open. */
    [Symbol.asyncIterator]() {
        const queue = [];
        let waiter = null;
        let done = false;
        const sink = {
            push: (chunk) => {
                if (done) return;
                if (waiter) {
                    const w = waiter;
                    waiter = null;
                    w({ value: chunk, done: false });
                } else {
                    queue.push(chunk);
                }
            },
            end: () => {
                done = true;
                if (waiter) {
                    const w = waiter;
                    waiter = null;
                    w({ value: undefined, done: true });
                }
            },
        };
        this.#iterators.add(sink);
        if (!this.#flushing) {
            const early = this.#backlog;
            this.#backlog = [];
            for (const chunk of early) sink.push(chunk);
            if (this.closed) sink.end();
        }
        const finish = () => {
            this.#iterators.delete(sink);
            queue.length = 0;
            sink.end();
            return Promise.resolve({ value: undefined, done: true });
        };
        return {
            next: () => {
                if (queue.length > 0) return Promise.resolve({ value: queue.shift(), done: false });
                if (done) return Promise.resolve({ value: undefined, done: true });
                return new Promise((resolve) => (waiter = resolve));
            },
            return: finish,
            throw: (err) => {
                finish();
                return Promise.reject(err);
            },
            [Symbol.asyncIterator]() {
                return this;
            },
        };
    }

    #hasConsumers() {
        return this.#iterators.size > 0 || this.#listeners.size > 0;
    }

    #flush() {
        this.#flushing = false;
        while (this.#backlog.length > 0 && this.#hasConsumers()) this.#deliver(this.#backlog.shift());
    }

    #deliver(chunk) {
        for (const it of this.#iterators) it.push(chunk);
        fire(this, 'data', chunk);
    }

    [kData](chunk) {
        if (this.closed) return;
        if (this.#flushing || !this.#hasConsumers()) this.#backlog.push(chunk);
        else this.#deliver(chunk);
    }

    // The daemon's Relayed message for this stream; returns whether it changed anything.
    [kRelayed](relay) {
        if (this.closed || this.relayed) return false;
        this.relayed = true;
        this.relay = relay;
        fire(this, 'relayed', relay);
        return true;
    }

    [kClosed](reason) {
        if (this.closed) return;
        this.closed = true;
        this.reason = reason;
        const finish = () => {
            for (const it of this.#iterators) it.end();
            this.#iterators.clear();
            fire(this, 'close', reason);
        };
        if (this.#flushing) queueMicrotask(finish);
        else finish();
    }
}

/**
 * A session with the daemon: `const gw = await Gateway.connect()`.
 *
 * Properties once connected: `peerID`, `addresses` (array of multiaddr strings),
 * `public` (AutoNAT says the node is reachable), `key` (the node's private key, base64
 * protobuf), `connectString`, `version` (from Hello), `listening` (a Set of protocols).
 *
 * Events: `connection` (detail: an incoming Connection), `identify` (detail: {peerID,
 * addresses, public, key}), `error` (detail: a Protocol Error text from the daemon),
 * `listenerclosed` (detail: protocol, when the daemon closes a listener unasked),
 * `relayed` (detail: the Connection, which just learned it goes through a relay: see
 * Connection), `close` (detail: {code, reason}: the WebSocket closed; every connection
 * closed too).
 *
 * Extensions: right after the first Identify (not before: the original daemon closes a
 * socket whose first message is not Start), the gateway sends Presence OFF, which opts
 * the session in to the daemon's extension messages (Relayed) without subscribing to
 * presence. A daemon without extensions ignores it, or answers the Protocol Error
 * "unknown message type 6", which the gateway swallows (no `error` event). Pass
 * `{extensions: false}` to Gateway.connect() to send nothing of the kind.
 *
 * Presence (after `await gw.subscribe()`, see PROTOCOL.md "Extension: presence"): the
 * gateway keeps a table of the peers the node knows and of the protocols the daemon's
 * sessions listen on. `gw.peers()`, `gw.getState(peerID)`, `gw.localListeners()`,
 * `gw.findProtocols(prefix)` read it. Events: `peer` (detail: the peer's entry, see
 * peers(), plus `change`: the state name the daemon sent, 'updated' included, or
 * 'forgotten' when a new subscription's state no longer lists the peer), `listener`
 * (detail: {protocol, up}), and `presence` after any change (detail: {kind: 'peer' |
 * 'listener' | 'ready' | 'unsubscribed' | 'closed', ...}).
 */
export class Gateway extends EventTarget {
    #ws;
    #storage;
    #startKey;
    #connections = new Map(); // id (BigInt) -> Connection
    #pendingListens = new Map(); // protocol -> [{resolve, reject}]
    #pendingStops = new Map(); // protocol -> [{resolve, reject}]
    #pendingConnects = []; // [{peer, peerID, protocol, resolve, reject}], oldest first
    #ready;
    #identified = false;
    #extensions; // whether to opt in to extension messages after the first Identify
    #presenceSent = false; // a Presence message (the opt-in, or ON/OFF) went out
    #presence = {
        subscribed: false, // a Presence ON went out, and no OFF since
        pending: [], // subscribe() calls waiting for their Presence Ready, oldest first
        snapshot: null, // {peers, listeners}: what the oldest pending subscription listed so far
        peers: new Map(), // peerID -> {peerID, state, addrs, protocols, relayed, agent}
        listeners: new Set(), // protocols some session of the daemon listens on
    };

    /**
     * Opens a WebSocket to the daemon and waits until it identified its node.
     * url: default ws(s)://<page host>/libp2p. options: {WebSocket} (a WebSocket class,
     * default globalThis.WebSocket), {key} (the private key to start the node with,
     * default the one stored in localStorage under 'libp2p-websocket-key'), {storage}
     * (a localStorage-like object, or null for none), {extensions} (default true: opt in
     * to extension messages such as Relayed; false sends no Presence unless subscribe()
     * is called).
     */
    static async connect(url, options = {}) {
        if (url !== undefined && url !== null && typeof url === 'object' && !(url instanceof URL)) {
            options = url;
            url = undefined;
        }
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (typeof WS !== 'function') throw new Error('no WebSocket class available: pass {WebSocket}');
        const ws = new WS(String(url ?? defaultUrl()));
        const gateway = new Gateway(ws, options);
        try {
            await gateway.#ready.promise;
        } catch (err) {
            gateway.close();
            throw err;
        }
        return gateway;
    }

    /** Prefer Gateway.connect(); this wraps an already created WebSocket. */
    constructor(ws, options = {}) {
        super();
        this.#ws = ws;
        this.#storage = options.storage !== undefined ? options.storage : defaultStorage();
        this.#startKey = options.key;
        this.#extensions = options.extensions !== false;
        this.peerID = null;
        this.addresses = [];
        this.public = false;
        this.key = '';
        this.started = null;
        this.version = '';
        this.listening = new Set();
        this.closed = false;
        let resolve;
        let reject;
        const promise = new Promise((res, rej) => {
            resolve = res;
            reject = rej;
        });
        promise.catch(() => {}); // a gateway built directly may never be awaited
        this.#ready = { promise, resolve, reject };
        receiveBinary(ws, (bytes) => this.#receive(bytes));
        ws.addEventListener('close', (event) => this.#socketClosed(event));
    }

    /** The WebSocket underneath. */
    get socket() {
        return this.#ws;
    }

    /** makeConnectString(peerID, addresses): what a peer pastes to reach this node. */
    get connectString() {
        return this.peerID ? makeConnectString(this.peerID, this.addresses) : null;
    }

    /** The open connections, by id. */
    get connections() {
        return new Map(this.#connections);
    }

    /** Resolves when the daemon confirms (Listening); rejects on Listen Refused. */
    listen(protocol, { framed = true } = {}) {
        return this.#request(this.#pendingListens, protocol, { type: 'Listen', frames: framed, protocol });
    }

    /**
     * Stops listening; resolves on Listener Closed. retain: keep the connections the
     * listener accepted open (default: close them).
     */
    stop(protocol, { retain = false } = {}) {
        return this.#request(this.#pendingStops, protocol, { type: 'Stop', retain, protocol });
    }

    /**
     * Opens a stream to a peer: `peer` is a peer id or a connect string
     * ("/addrs/..."). Resolves with the Connection; rejects with an Error carrying the
     * daemon's reason when it refuses. relay: true to allow going through a relay, or
     * the peer id of the relay to use.
     */
    connect(peer, protocol, { framed = true, relay = false } = {}) {
        return new Promise((resolve, reject) => {
            let peerID = peer;
            if (isConnectString(peer)) {
                try {
                    peerID = parseConnectString(peer).peerID;
                } catch {
                    /* the daemon will say what is wrong with it */
                }
            }
            const entry = { peer, peerID, protocol, resolve, reject };
            this.#pendingConnects.push(entry);
            try {
                this[kSend]({ type: 'Connect', frames: framed, relay, protocol, peer });
            } catch (err) {
                this.#pendingConnects.splice(this.#pendingConnects.indexOf(entry), 1);
                reject(err);
            }
        });
    }

    // ---------------------------------------------------------------- presence

    /**
     * Subscribes to presence: the daemon sends its current state (every peer it knows,
     * every protocol its sessions listen on), then keeps the gateway up to date.
     * Resolves when that state is complete (Presence Ready) with {peers, listeners}
     * (as peers() and localListeners() give them); rejects when the daemon does not
     * support the extension or the gateway closes. Subscribing again refreshes the
     * whole state (peers the daemon no longer lists are forgotten).
     */
    subscribe() {
        return new Promise((resolve, reject) => {
            const p = this.#presence;
            try {
                this[kSend]({ type: 'Presence', on: true });
            } catch (err) {
                reject(err);
                return;
            }
            this.#presenceSent = true;
            p.subscribed = true;
            if (p.pending.length === 0) p.snapshot = { peers: new Set(), listeners: new Set() };
            p.pending.push({ resolve, reject });
        });
    }

    /**
     * Unsubscribes: the daemon stops sending presence. The tables are cleared (they
     * would go stale); a subscribe() still waiting rejects.
     */
    unsubscribe() {
        const p = this.#presence;
        this[kSend]({ type: 'Presence', on: false });
        this.#presenceSent = true;
        const waiting = p.pending;
        this.#resetPresence();
        for (const entry of waiting) entry.reject(new Error('unsubscribed'));
        fire(this, 'presence', { kind: 'unsubscribed' });
    }

    /** True between subscribe() and unsubscribe() (or the end of the gateway). */
    get subscribed() {
        return this.#presence.subscribed;
    }

    /**
     * The peers the node knows, each `{peerID, state, addrs, protocols, relayed,
     * agent}`: state is 'disconnected', 'connecting', 'connected', 'disconnecting' or
     * 'failed' (an 'updated' peer is 'connected' with fresh info); addrs and protocols
     * are arrays of strings, relayed a boolean, agent a string. A field a message left
     * out keeps its last known value. Copies: changing them changes nothing.
     */
    peers() {
        return [...this.#presence.peers.values()].map(copyPeer);
    }

    /** The state of one peer (see peers()), or undefined when the node does not know it. */
    getState(peerID) {
        return this.#presence.peers.get(peerID)?.state;
    }

    /** The protocols some session of this daemon listens on (this one's included). */
    localListeners() {
        return [...this.#presence.listeners];
    }

    /**
     * Every protocol starting with `prefix` that can be reached from here:
     * `[{peerID, protocol, local}]`. Local listeners come first (local: true, peerID:
     * this node's own id, which the daemon joins in-process), then the protocols of
     * connected peers (local: false); with {all: true}, of every peer the node knows.
     */
    findProtocols(prefix = '', { all = false } = {}) {
        const found = [];
        const seen = new Set();
        const add = (peerID, protocol, local) => {
            const key = `${peerID}\n${protocol}`;
            if (seen.has(key) || !protocol.startsWith(prefix)) return;
            seen.add(key);
            found.push({ peerID, protocol, local });
        };
        for (const protocol of this.#presence.listeners) add(this.peerID, protocol, true);
        for (const peer of this.#presence.peers.values()) {
            if (peer.peerID === this.peerID || (!all && peer.state !== 'connected')) continue;
            for (const protocol of peer.protocols) add(peer.peerID, protocol, false);
        }
        return found;
    }

    #resetPresence() {
        const p = this.#presence;
        p.subscribed = false;
        p.pending = [];
        p.snapshot = null;
        p.peers.clear();
        p.listeners.clear();
    }

    #onPeer(m) {
        const p = this.#presence;
        if (!p.subscribed) return;
        const change = peerStateName(m.state);
        let entry = p.peers.get(m.peerID);
        if (!entry) {
            entry = { peerID: m.peerID, state: 'disconnected', addrs: [], protocols: [], relayed: false, agent: '' };
            p.peers.set(m.peerID, entry);
        }
        const info = parsePeerInfo(m.info);
        if (info) Object.assign(entry, info);
        if (change === 'updated') entry.state = 'connected';
        else if (change !== 'unknown') entry.state = change;
        p.snapshot?.peers.add(m.peerID);
        fire(this, 'peer', { ...copyPeer(entry), change });
        fire(this, 'presence', { kind: 'peer', peerID: m.peerID, change });
    }

    #onLocalListener(m) {
        const p = this.#presence;
        if (!p.subscribed) return;
        if (m.up) {
            p.listeners.add(m.protocol);
            p.snapshot?.listeners.add(m.protocol);
        } else {
            p.listeners.delete(m.protocol);
            p.snapshot?.listeners.delete(m.protocol);
        }
        fire(this, 'listener', { protocol: m.protocol, up: m.up });
        fire(this, 'presence', { kind: 'listener', protocol: m.protocol, up: m.up });
    }

    // The daemon fell behind and sends the whole state again, then Presence Ready: the
    // next Ready is this resync's, and what the state leaves out is gone.
    #onPresenceResync() {
        const p = this.#presence;
        if (!p.subscribed) return;
        p.snapshot = { peers: new Set(), listeners: new Set() };
        p.pending.unshift({ resolve() {}, reject() {} });
    }

    #onPresenceReady() {
        const p = this.#presence;
        const entry = p.pending.shift();
        if (!entry) return; // not asked for (or after unsubscribe): nothing to complete
        const snapshot = p.snapshot;
        p.snapshot = p.pending.length > 0 ? { peers: new Set(), listeners: new Set() } : null;
        if (snapshot) {
            // The state the daemon just sent is complete: what it left out is gone.
            for (const [peerID, peer] of [...p.peers]) {
                if (snapshot.peers.has(peerID)) continue;
                p.peers.delete(peerID);
                fire(this, 'peer', { ...copyPeer(peer), state: 'disconnected', change: 'forgotten' });
            }
            for (const protocol of [...p.listeners]) {
                if (snapshot.listeners.has(protocol)) continue;
                p.listeners.delete(protocol);
                fire(this, 'listener', { protocol, up: false });
            }
        }
        entry.resolve({ peers: this.peers(), listeners: this.localListeners() });
        fire(this, 'presence', { kind: 'ready' });
    }

    #onPresenceError(text) {
        const p = this.#presence;
        const entry = p.pending.shift();
        if (!entry) return;
        p.snapshot = p.pending.length > 0 ? { peers: new Set(), listeners: new Set() } : null;
        if (p.pending.length === 0) this.#resetPresence();
        entry.reject(new Error(`presence is not available: ${text}`));
    }

    /** Closes the WebSocket; the daemon then closes every listener and stream of it. */
    close(code, reason) {
        try {
            this.#ws.close(code, reason);
        } catch {
            this.#ws.close();
        }
    }

    #request(table, protocol, msg) {
        return new Promise((resolve, reject) => {
            const queue = table.get(protocol) ?? [];
            const entry = { resolve, reject };
            queue.push(entry);
            table.set(protocol, queue);
            try {
                this[kSend](msg);
            } catch (err) {
                queue.splice(queue.indexOf(entry), 1);
                if (queue.length === 0) table.delete(protocol);
                reject(err);
            }
        });
    }

    #take(table, protocol) {
        const queue = table.get(protocol);
        if (!queue) return null;
        const entry = queue.shift();
        if (queue.length === 0) table.delete(protocol);
        return entry;
    }

    // Answers to Connect name a peer and a protocol: match the oldest request for the
    // same protocol and peer (as sent, or the peer id inside a connect string), falling
    // back to the oldest request for the protocol.
    #takeConnect(peerID, protocol) {
        const list = this.#pendingConnects;
        let i = list.findIndex((p) => p.protocol === protocol && (p.peer === peerID || p.peerID === peerID));
        if (i < 0) i = list.findIndex((p) => p.protocol === protocol);
        return i < 0 ? null : list.splice(i, 1)[0];
    }

    [kSend](msg) {
        if (this.closed || this.#ws.readyState !== OPEN) throw new Error('the gateway WebSocket is not open');
        this.#ws.send(encodeClientMessage(msg));
    }

    [kForget](id) {
        this.#connections.delete(id);
    }

    // Presence OFF opts the session in to extension messages without subscribing. Sent
    // once, after the node is identified, and only when no Presence went out before (a
    // later one would end a subscription on the daemon).
    #optIn() {
        if (!this.#extensions || this.#presenceSent) return;
        try {
            this[kSend]({ type: 'Presence', on: false });
        } catch {
            return; // the socket is going away; its close event says so
        }
        this.#presenceSent = true;
    }

    #receive(bytes) {
        let m;
        try {
            m = decodeServerMessage(bytes);
        } catch (err) {
            fire(this, 'error', `undecodable message from the daemon: ${err.message}`);
            return;
        }
        switch (m.type) {
            case 'Hello': {
                this.started = m.started;
                this.version = m.version;
                if (!m.started) {
                    let key = this.#startKey;
                    if (key === undefined) {
                        try {
                            key = this.#storage?.getItem(KEY_STORAGE_NAME) ?? '';
                        } catch {
                            key = '';
                        }
                    }
                    this[kSend]({ type: 'Start', key });
                }
                break;
            }
            case 'Identify': {
                this.public = m.public;
                this.peerID = m.peerID;
                this.addresses = parseAddresses(m.addresses);
                this.key = m.key;
                if (m.key) {
                    try {
                        this.#storage?.setItem(KEY_STORAGE_NAME, m.key);
                    } catch {
                        /* storage full or forbidden: the node just gets a new id next time */
                    }
                }
                this.#identified = true;
                this.#optIn();
                this.#ready.resolve(this);
                fire(this, 'identify', { peerID: this.peerID, addresses: this.addresses, public: this.public, key: this.key });
                break;
            }
            case 'ListenerConnection': {
                const conn = new Connection(this, m.id, m.peerID, m.protocol, true);
                this.#connections.set(m.id, conn);
                fire(this, 'connection', conn);
                break;
            }
            case 'PeerConnection': {
                const conn = new Connection(this, m.id, m.peerID, m.protocol, false);
                this.#connections.set(m.id, conn);
                const pending = this.#takeConnect(m.peerID, m.protocol);
                if (pending) pending.resolve(conn);
                else fire(this, 'connection', conn);
                break;
            }
            case 'PeerConnectionRefused': {
                const pending = this.#takeConnect(m.peerID, m.protocol);
                const err = Object.assign(new Error(m.error), { peerID: m.peerID, protocol: m.protocol });
                if (pending) pending.reject(err);
                else fire(this, 'error', `connection to ${m.peerID} (${m.protocol}) refused: ${m.error}`);
                break;
            }
            case 'ConnectionClosed': {
                const conn = this.#connections.get(m.id);
                if (conn) {
                    this.#connections.delete(m.id);
                    conn[kClosed](m.reason);
                }
                break;
            }
            case 'Data':
                this.#connections.get(m.id)?.[kData](m.data);
                break;
            case 'Listening':
                this.listening.add(m.protocol);
                this.#take(this.#pendingListens, m.protocol)?.resolve(m.protocol);
                break;
            case 'ListenRefused': {
                const pending = this.#take(this.#pendingListens, m.protocol);
                const err = Object.assign(new Error(`listen refused: ${m.protocol}`), { protocol: m.protocol });
                if (pending) pending.reject(err);
                else fire(this, 'error', err.message);
                break;
            }
            case 'ListenerClosed': {
                this.listening.delete(m.protocol);
                const pending = this.#take(this.#pendingStops, m.protocol);
                if (pending) pending.resolve(m.protocol);
                else fire(this, 'listenerclosed', m.protocol);
                break;
            }
            case 'ProtocolError':
                if (isUnknownPresence(m.msg) && this.#presence.pending.length === 0) {
                    // A daemon without extensions answering a Presence that no subscribe()
                    // waits for: the opt-in (or an unsubscribe). Nothing is wrong. (With a
                    // subscribe() waiting, the first such answer rejects it, whichever
                    // Presence it answers: the daemon has no presence either way.)
                    break;
                }
                if (!this.#identified) this.#ready.reject(new Error(m.msg));
                if (isPresenceError(m.msg)) this.#onPresenceError(m.msg);
                fire(this, 'error', m.msg);
                break;
            case 'Peer':
                this.#onPeer(m);
                break;
            case 'LocalListener':
                this.#onLocalListener(m);
                break;
            case 'PresenceReady':
                this.#onPresenceReady();
                break;
            case 'PresenceResync':
                this.#onPresenceResync();
                break;
            case 'Relayed': {
                // an id this session does not have (any more) is ignored
                const conn = this.#connections.get(m.id);
                if (conn?.[kRelayed](m.relay)) fire(this, 'relayed', conn);
                break;
            }
            default:
                break; // a newer daemon's message: ignore
        }
    }

    #socketClosed(event) {
        if (this.closed) return;
        this.closed = true;
        const why = `gateway closed${event?.reason ? `: ${event.reason}` : ''}`;
        this.#ready.reject(new Error(`WebSocket closed before the daemon identified its node (code ${event?.code ?? '?'})`));
        const fail = (entry) => entry.reject(new Error(why));
        for (const queue of this.#pendingListens.values()) queue.forEach(fail);
        for (const queue of this.#pendingStops.values()) queue.forEach(fail);
        this.#pendingConnects.forEach(fail);
        this.#pendingListens.clear();
        this.#pendingStops.clear();
        this.#pendingConnects = [];
        const conns = [...this.#connections.values()];
        this.#connections.clear();
        for (const conn of conns) conn[kClosed]('gateway closed');
        this.listening.clear();
        const subscribers = this.#presence.pending;
        const hadPresence = this.#presence.subscribed;
        this.#resetPresence();
        subscribers.forEach(fail);
        if (hadPresence) fire(this, 'presence', { kind: 'closed' });
        fire(this, 'close', { code: event?.code, reason: event?.reason ?? '' });
    }
}
