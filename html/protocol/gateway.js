// gateway.js: Gateway, the promise API's session with the daemon: one control
// WebSocket (a new one after each drop, with the resume extension), the listeners and
// connections opened through it (each a Connection, see connection.js), extension
// negotiation, and the presence extension's subscription (the table itself is in
// presence.js; credit's bookkeeping in credit.js; resume's in resume.js).

'use strict';

import {
    KEY_STORAGE_NAME,
    decodeServerMessage,
    encodeClientMessage,
    isConnectString,
    makeConnectString,
    parseConnectString,
    parseExtensionNames,
} from './codec.js';
import { Connection } from './connection.js';
import { SessionSender, checkReceiveWindow, creditMessages, creditWindows } from './credit.js';
import {
    fire,
    kAbort,
    kClosed,
    kData,
    kForget,
    kGiveBack,
    kLinger,
    kLive,
    kOut,
    kOverrun,
    kRelayed,
    kSend,
    kWrite,
} from './internal.js';
import { PresenceTable, isPresenceError, isUnknownPresence } from './presence.js';
import { Topics } from './topics.js';
import { ResumeSession, baseUrl, defaultSessionStorage, resumeUrl, storedSession } from './resume.js';
import { OPEN, defaultUrl, receiveBinary } from './socket.js';

// What Gateway.connect() hands its gateway besides the page's options.
const kBase = Symbol('base'); // the WebSocket URL without a resume query
const kReclaim = Symbol('reclaim'); // the stored session the first WebSocket presents

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

// The extensions a daemon offers: the names after the first token of Hello's VERSION
// (`libp2p-websocket/0.5.0 credit presence`). Only tokens shaped like extension names
// count, so an older daemon's `libp2p-websocket 0.1.0` offers nothing.
function parseOffers(version) {
    const offers = new Set();
    for (const name of parseExtensionNames(String(version ?? '').split(' ').slice(1).join(' ')).keys()) {
        if (/^[a-z][a-z0-9-]*$/.test(name)) offers.add(name);
    }
    return offers;
}

// The reachability extension's STATE byte, by value.
const REACHABILITY = ['unknown', 'private', 'public'];

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
 * `{extensions: false}` to Gateway.connect() to send nothing of the kind. A daemon
 * whose Hello lists the extensions it offers (`libp2p-websocket/0.5.0 credit presence`:
 * `offers`, a Set of the names) and does not list `presence` gets no Presence at all,
 * and subscribe() rejects at once.
 *
 * Credit (PROTOCOL.md, "Extension: credit"): when the Hello offers `credit`, the gateway
 * asks for it (an Extensions message, the first thing it sends: the daemon takes credit
 * only before the session's first stream) and Gateway.connect() resolves once the
 * answer is in. `extensions` is then a Map of what the answer says is on (name ->
 * value, '' for a plain name), `credit` the windows in force ({streamWindow,
 * sessionWindow, receiveWindow} in bytes, or null without credit) and `sessionCredit`
 * what is left of the session's send window. Each Connection then keeps to its windows
 * (see Connection). Options: `{credit: false}` does not ask; `{receiveWindow: N}` asks
 * for N bytes of receive credit per stream (the daemon raises it to at least its
 * largest frame + 4 and caps it at 64 MiB; default: its stream window). A daemon that
 * sends a stream more than its receive credit (not the daemon's way) has that
 * connection closed, with an `error` event saying so.
 *
 * Resume (PROTOCOL.md, "Extension: resume"): when the Hello offers `resume`, the gateway
 * asks for it too (`{resume: false}` does not), and the session then outlives its
 * WebSocket for the daemon's grace period (`resume.grace` seconds, 30 by default). When
 * the WebSocket drops (not by close()), the gateway fires `disconnected` (detail: {code,
 * reason, grace}) and tries to take the session back on a new WebSocket, waiting 100 ms
 * doubling to 5 s between attempts (at once when the browser fires `online`);
 * `disconnected` is true meanwhile. Connections, their
 * streams, their credit and what is pending (listen, connect, ...) go on untouched:
 * nothing is lost or doubled either way. What the page sends meanwhile waits: with
 * credit, send() returns false and `drain` fires once it went out; without, it goes
 * out on resume. On success: `resumed` (detail: {after: ms since the drop, attempts,
 * resent: messages sent again}). When the daemon refuses, or the grace period is over:
 * `lost` (detail: {reason}), then everything ends as on `close` (connections close with
 * reason `session lost: ...`, pending requests reject) and `close` fires: start over
 * with a new gateway. The token is kept in sessionStorage (RESUME_STORAGE_NAME), so a
 * gateway made by the same page after a reload (same WebSocket URL, same path) takes
 * the session back: it gets the node (identify) and the session's listeners (in
 * `listening`); `listen()` for one of them resolves at once, without asking the daemon
 * again, and its incoming connections come as `connection` events. Its streams are
 * gone (the remotes saw them end). Listeners the page no longer wants it should stop().
 * If the daemon refuses (grace over), the gateway goes on as a new session. Options:
 * `{sessionStorage}` (a sessionStorage-like object, or null: no reload), `{resume:
 * false}`. close() ends the session at once (code 1000: the page is done with it).
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
    #wantCredit; // whether to ask for credit when the daemon offers it
    #receiveWindow; // the receive-window to ask for, or undefined
    #helloSeen = false;
    #extensionsPending = false; // an Extensions went out, its answer has not come
    #sender = null; // the SessionSender once credit is on
    #listenFramed = new Map(); // protocol -> whether its listener is framed
    #presence = new PresenceTable(this);
    #WS; // the WebSocket class, for the WebSockets that resume the session
    #base; // the WebSocket URL, without a resume query
    #wantResume; // whether to ask for resume when the daemon offers it
    #sessionStorage;
    #resume = null; // the ResumeSession once resume was asked for
    #reclaimed = new Set(); // listeners a reloaded page got back and has not listen()ed to
    #reclaiming = false; // a reloaded page's session, taken back
    #wantPubsub; // whether to ask for pubsub when the daemon offers it
    #topics = new Topics(this);

    /**
     * Opens a WebSocket to the daemon and waits until it identified its node.
     * url: default ws(s)://<page host>/libp2p. options: {WebSocket} (a WebSocket class,
     * default globalThis.WebSocket), {key} (the private key to start the node with,
     * default the one stored in localStorage under 'libp2p-websocket-key'), {storage}
     * (a localStorage-like object, or null for none), {extensions} (default true: opt in
     * to extension messages such as Relayed; false sends no Presence unless subscribe()
     * is called), {credit} (default true: use per-stream credit when the daemon offers
     * it), {receiveWindow} (bytes of receive credit per stream to ask for), {resume}
     * (default true: ask for the resume extension when the daemon offers it), {sessionStorage}
     * (where the resume token is kept for a reload, default globalThis.sessionStorage; null:
     * nowhere). A page reloaded within the grace period takes its session back (see above).
     */
    static async connect(url, options = {}) {
        if (url !== undefined && url !== null && typeof url === 'object' && !(url instanceof URL)) {
            options = url;
            url = undefined;
        }
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (typeof WS !== 'function') throw new Error('no WebSocket class available: pass {WebSocket}');
        checkReceiveWindow(options.receiveWindow);
        const base = baseUrl(url ?? defaultUrl());
        const stored = options.resume === false ? null : storedSession(Gateway.#sessionStorageOf(options), base);
        const ws = new WS(stored ? resumeUrl(base, stored.token) : base);
        const gateway = new Gateway(ws, { ...options, WebSocket: WS, [kBase]: base, [kReclaim]: stored });
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
        checkReceiveWindow(options.receiveWindow);
        this.#wantCredit = options.credit !== false;
        this.#receiveWindow = options.receiveWindow;
        this.#WS = options.WebSocket ?? ws.constructor;
        this.#base = options[kBase] ?? baseUrl(ws.url);
        this.#wantResume = options.resume !== false;
        this.#wantPubsub = options.pubsub !== false;
        this.#sessionStorage = Gateway.#sessionStorageOf(options);
        /**
         * The node's reachability as AutoNAT knows it: 'unknown', 'private' or 'public'
         * (null until known; from the reachability extension, when the daemon offers it).
         * Identify's PUBLIC (`public`) says 1 for unknown, as the original did.
         */
        this.reachability = null;
        /** The extensions the daemon's Hello offers (a Set of names; empty for an older daemon). */
        this.offers = new Set();
        /** What the daemon's answer to Extensions turned on: name -> value ('' for none). */
        this.extensions = new Map();
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
        this.#watch(ws);
        if (options[kReclaim]) {
            this.#resume = ResumeSession.reclaiming(this.#resumeHost(), options[kReclaim], this.#resumeOptions());
            this.version = String(options[kReclaim].version ?? '');
        }
    }

    static #sessionStorageOf(options) {
        return options.sessionStorage !== undefined ? options.sessionStorage : defaultSessionStorage();
    }

    // Handles what `ws` brings while it is the gateway's WebSocket.
    #watch(ws) {
        receiveBinary(ws, (bytes) => {
            if (ws === this.#ws) this.#receive(bytes);
        });
        ws.addEventListener('close', (event) => {
            if (ws === this.#ws) this.#socketClosed(event);
        });
    }

    /**
     * True between `disconnected` and `resumed` (or `lost`): the WebSocket dropped and
     * the gateway is taking the session back.
     */
    get disconnected() {
        return this.#resume?.disconnected ?? false;
    }

    /**
     * The resume extension once on: {token, grace (s), received (numbered messages from
     * the daemon), unacked (numbered messages sent and not acknowledged yet)}; else null.
     */
    get resume() {
        const r = this.#resume;
        if (!r?.counting) return null;
        return { token: r.token, grace: r.grace, received: r.received, unacked: r.unacked };
    }

    // Whether a message can go out now (not only be kept for a resume).
    get [kLive]() {
        return !this.closed && !this.disconnected && this.#ws.readyState === OPEN;
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

    /**
     * The credit windows in force ({streamWindow, sessionWindow, receiveWindow}, bytes),
     * or null when the session has no credit (not offered, not asked, not answered yet).
     */
    get credit() {
        return this.#sender ? { ...this.#sender.windows } : null;
    }

    /** What is left of the session's send window in bytes, or null without credit. */
    get sessionCredit() {
        return this.#sender ? this.#sender.session : null;
    }

    /** Resolves when the daemon confirms (Listening); rejects on Listen Refused. */
    listen(protocol, { framed = true } = {}) {
        this.#listenFramed.set(protocol, Boolean(framed));
        // A listener a reloaded page took back: the daemon listens already.
        if (this.#reclaimed.delete(protocol)) return Promise.resolve(protocol);
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
            const entry = { peer, peerID, protocol, framed: Boolean(framed), resolve, reject };
            this.#pendingConnects.push(entry);
            try {
                this[kSend]({ type: 'Connect', frames: framed, relay, protocol, peer });
            } catch (err) {
                this.#pendingConnects.splice(this.#pendingConnects.indexOf(entry), 1);
                reject(err);
            }
        });
    }

    // ---------------------------------------------------------------- topics

    /**
     * gw.subscribe(topic) (a string; without one, subscribe() is presence): subscribes
     * the session to a pubsub topic (PROTOCOL.md, "Extension: pubsub"), on gossipsub, so
     * its messages come from every subscriber anywhere on the network: other pages on
     * this daemon or others, go-libp2p and js-libp2p nodes. Resolves with a Topic
     * (topics.js): `for await (const {from, seq, data} of topic)`, `topic.readable`,
     * events `message`, `peer` ({peerID, joined}), `missed` ({count}) and `close`;
     * `topic.peers`, `topic.publish(data)`, `topic.close()`. Rejects when the daemon
     * refuses (no pubsub, too many topics) or the gateway ends.
     */
    #subscribeTopic(topic) {
        if (!this.extensions.has('pubsub')) {
            return Promise.reject(new Error('pubsub is not available: the daemon does not offer it'));
        }
        return this.#topics.subscribe(topic);
    }

    /**
     * Publishes `data` (bytes or a string) on `topic`, to every subscriber but this
     * page (subscribed or not). Throws at once for a topic or message the daemon would
     * refuse for its size (max-message, in `extensions`); other refusals are `error`
     * events.
     */
    publish(topic, data) {
        if (!this.extensions.has('pubsub')) throw new Error('pubsub is not available: the daemon does not offer it');
        this.#topics.publish(topic, data);
    }

    /** The Topic the session subscribes to under `name`, or undefined. */
    topic(name) {
        return this.#topics.get(name);
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
    subscribe(topic) {
        if (topic !== undefined) return this.#subscribeTopic(topic);
        return new Promise((resolve, reject) => {
            const p = this.#presence;
            if (!this.#presenceOffered()) {
                reject(new Error('presence is not available: the daemon does not offer it'));
                return;
            }
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
        p.reset();
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
        return this.#presence.copies();
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
        return this.#presence.findProtocols(this.peerID, prefix, all);
    }

    /**
     * Closes the WebSocket (code 1000 unless told otherwise); the daemon then closes
     * every listener and stream of it. Ends a resume under way. (With the resume
     * extension, a close with another code leaves the session for a resume until its
     * grace period is over, as a page that unloads does.)
     */
    close(code = 1000, reason) {
        this.#resume?.stop();
        const ws = this.#ws;
        try {
            ws.close(code, reason);
        } catch {
            ws.close();
        }
        // A socket that had dropped already sends no close event.
        if (ws.readyState === 3) this.#end('gateway closed', { code, reason: reason ?? '' });
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

    // With resume on, a message is kept until the daemon acknowledges it: while
    // disconnected it is only kept, and goes out on resume.
    [kSend](msg) {
        if (this.closed) throw new Error('the gateway WebSocket is not open');
        const bytes = encodeClientMessage(msg);
        if (this.#resume?.keep(bytes)) return;
        if (this.#ws.readyState !== OPEN) throw new Error('the gateway WebSocket is not open');
        this.#ws.send(bytes);
    }

    [kForget](id) {
        this.#connections.delete(id);
    }

    // ---------------------------------------------------------------- credit

    // Sends a Data of `conn` at once without credit; with credit, the SessionSender
    // sends it or queues it behind missing credit. done() is called once all of it went
    // out, fail(err) if it never will. Returns whether all of it went out now.
    [kWrite](conn, bytes, done, fail) {
        if (!conn[kOut].credited) {
            this[kSend]({ type: 'Data', id: conn.id, data: bytes });
            done?.();
            return true;
        }
        return this.#sender.write(conn, bytes, done, fail);
    }

    // The page closed conn while Data waited: it stays known (Credit still counts for
    // it) until the last of it went out, then the daemon gets the Close.
    [kLinger](conn) {
        this.#connections.delete(conn.id);
        this.#sender.linger(conn);
    }

    // Receive credit back to the daemon: the page consumed n bytes of conn.
    [kGiveBack](conn, n) {
        try {
            for (const msg of creditMessages(conn.id, n)) this[kSend](msg);
        } catch {
            /* the socket is going away */
        }
    }

    // An open connection, or one the page closed whose Data still goes out.
    #find(id) {
        return this.#connections.get(id) ?? this.#sender?.lingering.get(id);
    }

    // The daemon sent conn more than its credit: not the daemon's way. The connection is
    // closed (the daemon gets a Close) and the gateway says why in an `error` event.
    [kOverrun](conn, text) {
        this.#connections.delete(conn.id);
        this.#sender?.forget(conn);
        conn[kAbort](text);
        try {
            this[kSend]({ type: 'Close', id: conn.id });
        } catch {
            /* the socket is going away */
        }
        conn[kClosed](text);
        fire(this, 'error', text);
    }

    // The Extensions message, right after Hello when the daemon offers credit,
    // reachability or resume (and right after Resumed for a reloaded page: the session
    // has them on already, the answer says with which parameters).
    #askExtensions() {
        const names = [];
        if (this.#wantCredit && this.offers.has('credit')) {
            names.push('credit');
            if (this.#receiveWindow !== undefined) names.push(`receive-window=${this.#receiveWindow}`);
        }
        if (this.offers.has('reachability')) names.push('reachability');
        const resume = this.#wantResume && this.offers.has('resume');
        if (resume) names.push('resume');
        if (this.#wantPubsub && this.offers.has('pubsub')) names.push('pubsub');
        if (names.length === 0) return;
        this[kSend]({ type: 'Extensions', names: names.join(' ') });
        this.#extensionsPending = true;
        if (resume && !this.#resume) {
            // numbered from the message after this one
            this.#resume = new ResumeSession(this.#resumeHost(), this.#resumeOptions());
            this.#resume.keeping = true;
        }
    }

    #onExtensions(names) {
        if (!this.#extensionsPending) return; // not asked for: ignore
        this.#extensionsPending = false;
        this.extensions = parseExtensionNames(names);
        const maxMessage = Number(this.extensions.get('max-message'));
        if (Number.isInteger(maxMessage) && maxMessage > 0) this.#topics.maxMessage = maxMessage;
        if (this.extensions.has('credit') && !this.#sender) {
            this.#sender = new SessionSender(this, creditWindows(this.extensions));
        }
        if (this.#resume && !this.#resume.answered(this.extensions)) this.#resume = null;
        if (this.#reclaiming && !this.#identified) this.#start(); // its node did not run
        this.#maybeReady();
    }

    // ---------------------------------------------------------------- resume

    #resumeOptions() {
        return { storage: this.#sessionStorage, base: this.#base };
    }

    // What the ResumeSession asks of its gateway (see resume.js).
    #resumeHost() {
        const gateway = this;
        return {
            socket: () => this.#ws,
            open: (url) => {
                const ws = new this.#WS(url);
                this.#ws = ws;
                this.#watch(ws);
                return ws;
            },
            get version() {
                return gateway.version;
            },
            fire: (type, detail) => fire(this, type, detail),
            resumed: () => this.#sender?.pump(),
            reclaimed: () => {
                this.#reclaiming = true;
                this.offers = parseOffers(this.version);
                this.#helloSeen = true;
                this.#askExtensions();
            },
            fresh: () => {
                this.#resume = null;
            },
            lost: (reason) => {
                fire(this, 'lost', { reason });
                this.#end(`session lost: ${reason}`, { code: 1006, reason });
            },
        };
    }

    #newConnection(id, peerID, protocol, incoming, framed) {
        const conn = new Connection(this, id, peerID, protocol, incoming, { framed, credit: this.#sender?.windows ?? null });
        this.#connections.set(id, conn);
        return conn;
    }

    // Ready once the node is identified and the Extensions (if any) are answered.
    #maybeReady() {
        if (this.#identified && !this.#extensionsPending) this.#ready.resolve(this);
    }

    // A daemon whose Hello lists extensions says whether it has presence; for an older
    // one only asking tells.
    #presenceOffered() {
        return this.offers.size === 0 || this.offers.has('presence');
    }

    // Presence OFF opts the session in to extension messages without subscribing. Sent
    // once, after the node is identified, and only when no Presence went out before (a
    // later one would end a subscription on the daemon).
    #optIn() {
        if (!this.#extensions || this.#presenceSent || !this.#presenceOffered()) return;
        try {
            this[kSend]({ type: 'Presence', on: false });
        } catch {
            return; // the socket is going away; its close event says so
        }
        this.#presenceSent = true;
    }

    // Start: with the page's key, or the stored one.
    #start() {
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

    #receive(bytes) {
        if (this.#resume?.intercept(bytes)) return; // an Ack, or the answer to a resume
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
                if (!this.#helloSeen) {
                    this.#helloSeen = true;
                    this.offers = parseOffers(m.version);
                    this.#askExtensions(); // before anything else, Start included
                }
                if (!m.started) this.#start();
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
                this.#maybeReady();
                fire(this, 'identify', { peerID: this.peerID, addresses: this.addresses, public: this.public, key: this.key });
                break;
            }
            case 'ListenerConnection': {
                const framed = this.#listenFramed.get(m.protocol) ?? true;
                const conn = this.#newConnection(m.id, m.peerID, m.protocol, true, framed);
                fire(this, 'connection', conn);
                break;
            }
            case 'PeerConnection': {
                const pending = this.#takeConnect(m.peerID, m.protocol);
                const conn = this.#newConnection(m.id, m.peerID, m.protocol, false, pending?.framed ?? true);
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
                const conn = this.#find(m.id);
                if (conn) {
                    this.#connections.delete(m.id);
                    this.#sender?.forget(conn);
                    conn[kAbort](m.reason);
                    conn[kClosed](m.reason);
                }
                break;
            }
            case 'Data':
                this.#connections.get(m.id)?.[kData](m.data);
                break;
            case 'Listening': {
                this.listening.add(m.protocol);
                const pending = this.#take(this.#pendingListens, m.protocol);
                if (pending) pending.resolve(m.protocol);
                else this.#reclaimed.add(m.protocol); // unasked: a reloaded page's listener
                break;
            }
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
                if (this.#extensionsPending && /^Extensions\b/.test(m.msg)) {
                    // the daemon refused the Extensions: the session goes on without
                    this.#onExtensions('');
                    break;
                }
                if (isUnknownPresence(m.msg) && this.#presence.pending.length === 0) {
                    // A daemon without extensions answering a Presence that no subscribe()
                    // waits for: the opt-in (or an unsubscribe). Nothing is wrong. (With a
                    // subscribe() waiting, the first such answer rejects it, whichever
                    // Presence it answers: the daemon has no presence either way.)
                    break;
                }
                if (!this.#identified) this.#ready.reject(new Error(m.msg));
                if (isPresenceError(m.msg)) this.#presence.onError(m.msg);
                fire(this, 'error', m.msg);
                break;
            case 'Peer':
                this.#presence.onPeer(m);
                break;
            case 'LocalListener':
                this.#presence.onLocalListener(m);
                break;
            case 'PresenceReady':
                this.#presence.onReady();
                break;
            case 'PresenceResync':
                this.#presence.onResync();
                break;
            case 'Relayed': {
                // an id this session does not have (any more) is ignored
                const conn = this.#connections.get(m.id);
                if (conn?.[kRelayed](m.relay)) fire(this, 'relayed', conn);
                break;
            }
            case 'Extensions':
                this.#onExtensions(m.names);
                break;
            case 'Credit': {
                // Send credit back: to the session always, to the stream while it is open.
                this.#sender?.onCredit(this.#find(m.id), m.bytes);
                break;
            }
            case 'Reachability': {
                const now = REACHABILITY[m.state] ?? 'unknown';
                if (now !== this.reachability) {
                    this.reachability = now;
                    fire(this, 'reachability', now);
                }
                break;
            }
            case 'Subscribed':
            case 'TopicRefused':
            case 'TopicMessage':
            case 'TopicPeer':
            case 'Missed':
                this.#topics.handle(m);
                break;
            default:
                break; // a newer daemon's message: ignore
        }
    }

    #socketClosed(event) {
        if (this.closed) return;
        if (this.#resume?.socketClosed(this.#ws, event)) return; // resuming
        this.#end('gateway closed', event);
    }

    // The end of the gateway: its WebSocket closed, or its session was lost (`cause`).
    #end(cause, event) {
        if (this.closed) return;
        this.closed = true;
        this.#resume?.stop();
        this.#reclaimed.clear();
        const why = `${cause}${event?.reason && cause === 'gateway closed' ? `: ${event.reason}` : ''}`;
        this.#ready.reject(new Error(`WebSocket closed before the daemon identified its node (code ${event?.code ?? '?'})`));
        const fail = (entry) => entry.reject(new Error(why));
        for (const queue of this.#pendingListens.values()) queue.forEach(fail);
        for (const queue of this.#pendingStops.values()) queue.forEach(fail);
        this.#pendingConnects.forEach(fail);
        this.#pendingListens.clear();
        this.#pendingStops.clear();
        this.#pendingConnects = [];
        const conns = [...this.#connections.values(), ...(this.#sender?.clear() ?? [])];
        this.#connections.clear();
        for (const conn of conns) {
            conn[kAbort](cause);
            conn[kClosed](cause);
        }
        this.listening.clear();
        const subscribers = this.#presence.pending;
        const hadPresence = this.#presence.subscribed;
        this.#presence.reset();
        subscribers.forEach(fail);
        if (hadPresence) fire(this, 'presence', { kind: 'closed' });
        this.#topics.endAll(why);
        fire(this, 'close', { code: event?.code, reason: event?.reason ?? '' });
    }
}
