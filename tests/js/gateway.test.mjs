// The promise API (Gateway, Connection) and the original's callback API of
// html/protocol.js, driven against an in-memory fake WebSocket whose far end plays the
// daemon. Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import libp2p, {
    Gateway,
    KEY_STORAGE_NAME,
    decodeClientMessage,
    encodeServerMessage,
    makeConnectString,
    parseConnectString,
} from '../../html/protocol.js';

const PEER_SELF = '12D3KooWHwTKFTbaSelfSelfSelfSelfSelfSelfSelfSelfSelf';
const PEER_B = '12D3KooWLX1Xa4aRBobBobBobBobBobBobBobBobBobBobBobBo';
const PEER_C = '12D3KooWM3TALQFNCarolCarolCarolCarolCarolCarolCaro';
const CHAT = '/libp2p-websocket/chat/1.0.0';
const ADDRS = ['/ip4/127.0.0.1/tcp/4001', '/ip6/::1/tcp/4001'];
const text = (bytes) => new TextDecoder().decode(bytes);
const bytes = (s) => new TextEncoder().encode(s);
const tick = () => new Promise((resolve) => setImmediate(resolve));

async function until(cond, what = 'condition') {
    for (let i = 0; i < 200; i++) {
        if (cond()) return;
        await tick();
    }
    assert.fail(`timed out waiting for ${what}`);
}

// ------------------------------------------------------------------ the fake

// Plays the daemon's side of one or more WebSocket sessions. Each server message goes
// out in its own macrotask, as over a network.
class FakeDaemon {
    constructor({ started = false, publicNat = false, key = 'CAESQNEWKEY==', version = 'fake 1.0', blobs = false } = {}) {
        this.started = started;
        this.publicNat = publicNat;
        this.key = key;
        this.version = version;
        this.blobs = blobs; // deliver Blobs whatever binaryType says
        this.received = []; // decoded client messages, in order
        this.sockets = [];
        this.nextId = 0n;
        this.refuse = new Set(); // protocols Listen refuses
        this.peers = new Map([[PEER_B, new Set([CHAT, '/echo'])], [PEER_C, new Set([CHAT])]]);
        // The presence extension: false plays a daemon without it. `known` is what a
        // subscription lists first: peerID -> {state, info}; `local` the daemon's listeners.
        this.presence = true;
        this.known = new Map();
        this.local = new Set();
        this.subscribed = new Set(); // sockets that subscribed
        // The Relayed extension: sockets that sent a Presence (ON 1 or 0) get a Relayed
        // after the Peer/Listener Connection of a stream to a peer listed here
        // (peerID -> the relay's peer id, '' for an unknown relay).
        this.extended = new Set();
        this.relayedPeers = new Map();
        this.startedWithKey = null;
        const daemon = this;
        this.WebSocket = class FakeWebSocket extends EventTarget {
            constructor(url) {
                super();
                this.url = url;
                this.readyState = 0;
                this.binaryType = 'blob';
                this.closeCalls = 0;
                daemon.sockets.push(this);
                setImmediate(() => {
                    this.readyState = 1;
                    this.emit('open', {});
                    daemon.opened(this);
                });
            }
            send(data) {
                if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
                assert.ok(data instanceof Uint8Array, 'the client sends Uint8Arrays');
                const msg = decodeClientMessage(Uint8Array.from(data));
                daemon.received.push(msg);
                daemon.handle(this, msg);
            }
            close(code = 1000, reason = '') {
                this.closeCalls++;
                if (this.readyState >= 2) return;
                this.readyState = 2;
                setImmediate(() => daemon.hangUp(this, code, reason));
            }
            emit(type, props) {
                const event = Object.assign(new Event(type), props);
                this.dispatchEvent(event);
                this[`on${type}`]?.(event);
            }
        };
    }

    send(ws, msg) {
        const raw = msg instanceof Uint8Array ? msg : encodeServerMessage(msg);
        setImmediate(() => {
            if (ws.readyState !== 1) return;
            let data;
            if (this.blobs || ws.binaryType === 'blob') data = new Blob([raw]);
            else data = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
            ws.emit('message', { data });
        });
    }

    hangUp(ws, code = 1006, reason = '') {
        if (ws.readyState === 3) return;
        ws.readyState = 3;
        ws.emit('close', { code, reason, wasClean: code === 1000 });
    }

    opened(ws) {
        this.send(ws, { type: 'Hello', started: this.started, version: this.version });
        if (this.started) this.identify(ws);
    }

    identify(ws) {
        this.send(ws, {
            type: 'Identify',
            public: this.publicNat,
            peerID: PEER_SELF,
            addresses: JSON.stringify(ADDRS),
            key: this.key,
        });
    }

    handle(ws, msg) {
        switch (msg.type) {
            case 'Start':
                this.started = true;
                this.startedWithKey = msg.key;
                if (msg.key) this.key = msg.key;
                return this.identify(ws);
            case 'Listen':
                if (this.refuse.has(msg.protocol)) return this.send(ws, { type: 'ListenRefused', protocol: msg.protocol });
                return this.send(ws, { type: 'Listening', protocol: msg.protocol });
            case 'Stop':
                return this.send(ws, { type: 'ListenerClosed', protocol: msg.protocol });
            case 'Connect': {
                let peerID = msg.peer;
                if (peerID.startsWith('/addrs/')) peerID = parseConnectString(peerID).peerID;
                if (this.peers.get(peerID)?.has(msg.protocol)) {
                    const id = this.nextId++;
                    this.send(ws, { type: 'PeerConnection', id, peerID, protocol: msg.protocol });
                    return this.relayed(ws, id, peerID);
                }
                return this.send(ws, {
                    type: 'PeerConnectionRefused',
                    peerID: msg.peer,
                    protocol: msg.protocol,
                    error: `failed to negotiate ${msg.protocol} with ${peerID}`,
                });
            }
            case 'Data': // the fake peers echo what they get, upper-cased
                return this.send(ws, { type: 'Data', id: msg.id, data: bytes(text(msg.data).toUpperCase()) });
            case 'Presence':
                if (!this.presence) return this.send(ws, { type: 'ProtocolError', msg: 'unknown message type 6' });
                this.extended.add(ws);
                if (!msg.on) return this.subscribed.delete(ws);
                this.subscribed.add(ws);
                for (const [peerID, { state, info }] of this.known) {
                    this.send(ws, { type: 'Peer', state, peerID, info });
                }
                for (const protocol of this.local) this.send(ws, { type: 'LocalListener', up: true, protocol });
                return this.send(ws, { type: 'PresenceReady' });
            default:
                return undefined;
        }
    }

    // A remote peer opens a stream to one of this session's listeners.
    incoming(ws, peerID, protocol) {
        const id = this.nextId++;
        this.send(ws, { type: 'ListenerConnection', id, peerID, protocol });
        this.relayed(ws, id, peerID);
        return id;
    }

    // Right after the Peer/Listener Connection, as the daemon does.
    relayed(ws, id, peerID) {
        if (this.extended.has(ws) && this.relayedPeers.has(peerID)) {
            this.send(ws, { type: 'Relayed', id, relay: this.relayedPeers.get(peerID) });
        }
    }
}

class MemoryStorage {
    constructor(entries = {}) {
        this.map = new Map(Object.entries(entries));
    }
    getItem(k) {
        return this.map.has(k) ? this.map.get(k) : null;
    }
    setItem(k, v) {
        this.map.set(k, String(v));
    }
}

async function open(daemonOptions = {}, gatewayOptions = {}) {
    const daemon = new FakeDaemon(daemonOptions);
    const storage = gatewayOptions.storage ?? new MemoryStorage();
    const gw = await Gateway.connect('ws://fake/libp2p', { WebSocket: daemon.WebSocket, storage, ...gatewayOptions });
    return { daemon, gw, storage, ws: daemon.sockets[0] };
}

// ------------------------------------------------------------------ Gateway

test('Gateway.connect: Hello(not started) -> Start with the stored key -> Identify', async () => {
    const storage = new MemoryStorage({ [KEY_STORAGE_NAME]: 'CAESQSTORED==' });
    const { daemon, gw, ws } = await open({}, { storage });
    assert.equal(ws.url, 'ws://fake/libp2p');
    assert.equal(ws.binaryType, 'arraybuffer');
    // the gateway opts in to extension messages once the node is identified
    assert.deepEqual(daemon.received, [{ type: 'Start', key: 'CAESQSTORED==' }, { type: 'Presence', on: false }]);
    assert.equal(gw.peerID, PEER_SELF);
    assert.deepEqual(gw.addresses, ADDRS);
    assert.equal(gw.public, false);
    assert.equal(gw.key, 'CAESQSTORED==');
    assert.equal(gw.started, false);
    assert.equal(gw.version, 'fake 1.0');
    assert.equal(gw.connectString, makeConnectString(PEER_SELF, ADDRS));
    assert.deepEqual(parseConnectString(gw.connectString), { peerID: PEER_SELF, addrs: ADDRS });
    gw.close();
});

test('Gateway.connect: a fresh node stores the key from Identify', async () => {
    const { daemon, gw, storage } = await open({ key: 'CAESQFRESH==' });
    assert.deepEqual(daemon.received, [{ type: 'Start', key: '' }, { type: 'Presence', on: false }]);
    assert.equal(storage.getItem(KEY_STORAGE_NAME), 'CAESQFRESH==');
    assert.equal(gw.key, 'CAESQFRESH==');
});

test('Gateway.connect: an explicit key wins over storage; an empty KEY is not stored', async () => {
    const storage = new MemoryStorage({ [KEY_STORAGE_NAME]: 'OLD' });
    const { daemon } = await open({ key: '' }, { storage, key: 'EXPLICIT' });
    assert.deepEqual(daemon.received, [{ type: 'Start', key: 'EXPLICIT' }, { type: 'Presence', on: false }]);
    const d2 = new FakeDaemon({ key: '' });
    const s2 = new MemoryStorage();
    await Gateway.connect('ws://fake/libp2p', { WebSocket: d2.WebSocket, storage: s2 });
    assert.equal(s2.getItem(KEY_STORAGE_NAME), null);
});

test('Gateway.connect: an already started node is not started again', async () => {
    const { daemon, gw } = await open({ started: true, publicNat: true });
    assert.deepEqual(daemon.received, [{ type: 'Presence', on: false }]);
    assert.equal(gw.started, true);
    assert.equal(gw.public, true);
});

test('Gateway.connect rejects when the socket closes before Identify, or on a Protocol Error', async () => {
    const daemon = new FakeDaemon();
    daemon.opened = (ws) => daemon.hangUp(ws, 1011, 'nope');
    await assert.rejects(Gateway.connect('ws://x/libp2p', { WebSocket: daemon.WebSocket, storage: null }), /closed before/);

    const d2 = new FakeDaemon();
    d2.opened = (ws) => d2.send(ws, { type: 'ProtocolError', msg: 'There is already a connection' });
    await assert.rejects(Gateway.connect('ws://x/libp2p', { WebSocket: d2.WebSocket, storage: null }), /already a connection/);
    await until(() => d2.sockets[0].readyState === 3, 'the failed socket to close');
});

test('Gateway.connect without a URL and without a page location says so', async () => {
    await assert.rejects(Gateway.connect(undefined, { WebSocket: new FakeDaemon().WebSocket }), /no URL given/);
});

test('Gateway.connect derives ws(s)://<host>/libp2p from the page location', async () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'location');
    try {
        const daemon = new FakeDaemon();
        globalThis.location = { protocol: 'https:', host: 'example.test:8888' };
        await Gateway.connect({ WebSocket: daemon.WebSocket, storage: null });
        assert.equal(daemon.sockets[0].url, 'wss://example.test:8888/libp2p');
    } finally {
        if (saved) Object.defineProperty(globalThis, 'location', saved);
        else delete globalThis.location;
    }
});

test('listen resolves on Listening, rejects on Listen Refused; stop resolves on Listener Closed', async () => {
    const { daemon, gw } = await open();
    daemon.refuse.add('/taken');
    assert.equal(await gw.listen(CHAT), CHAT);
    assert.deepEqual(daemon.received.at(-1), { type: 'Listen', frames: true, protocol: CHAT });
    assert.ok(gw.listening.has(CHAT));
    await assert.rejects(gw.listen('/taken', { framed: false }), (err) => err.message.includes('/taken') && err.protocol === '/taken');
    assert.deepEqual(daemon.received.at(-1), { type: 'Listen', frames: false, protocol: '/taken' });
    assert.equal(await gw.stop(CHAT), CHAT);
    assert.deepEqual(daemon.received.at(-1), { type: 'Stop', retain: false, protocol: CHAT });
    assert.ok(!gw.listening.has(CHAT));
    await gw.stop('/other', { retain: true });
    assert.deepEqual(daemon.received.at(-1), { type: 'Stop', retain: true, protocol: '/other' });
});

test('incoming connection: connection event, data events, send and close', async () => {
    const { daemon, gw, ws } = await open();
    await gw.listen(CHAT);
    const got = new Promise((resolve) => gw.addEventListener('connection', (e) => resolve(e.detail), { once: true }));
    const id = daemon.incoming(ws, PEER_B, CHAT);
    const conn = await got;
    assert.equal(conn.id, id);
    assert.equal(typeof conn.id, 'bigint');
    assert.equal(conn.peerID, PEER_B);
    assert.equal(conn.protocol, CHAT);
    assert.equal(conn.incoming, true);
    assert.equal(gw.connections.get(id), conn);

    const chunks = [];
    conn.addEventListener('data', (e) => chunks.push(text(e.detail)));
    daemon.send(ws, { type: 'Data', id, data: bytes('one') });
    daemon.send(ws, { type: 'Data', id: 999n, data: bytes('not ours') });
    conn.sendJSON({ hi: 'there' });
    await until(() => chunks.length === 2, 'two chunks');
    assert.deepEqual(chunks, ['one', '{"HI":"THERE"}']);
    assert.deepEqual(daemon.received.at(-1), { type: 'Data', id, data: bytes('{"hi":"there"}') });

    const closed = new Promise((resolve) => conn.addEventListener('close', (e) => resolve(e.detail)));
    conn.close();
    assert.equal(await closed, 'closed');
    assert.deepEqual(daemon.received.at(-1), { type: 'Close', id });
    assert.equal(conn.closed, true);
    assert.throws(() => conn.send('late'), /closed/);
    assert.equal(gw.connections.size, 0);
    conn.close(); // idempotent
    assert.equal(daemon.received.filter((m) => m.type === 'Close').length, 1);
});

test('data that arrives before anyone listens is kept for the first consumer', async () => {
    const { daemon, gw, ws } = await open();
    let conn;
    gw.addEventListener('connection', (e) => (conn = e.detail));
    const id = daemon.incoming(ws, PEER_C, CHAT);
    daemon.send(ws, { type: 'Data', id, data: bytes('early 1') });
    daemon.send(ws, { type: 'Data', id, data: bytes('early 2') });
    await until(() => conn, 'the connection');
    await tick();
    await tick();
    const chunks = [];
    conn.addEventListener('data', (e) => chunks.push(text(e.detail)));
    daemon.send(ws, { type: 'Data', id, data: bytes('late') });
    await until(() => chunks.length === 3, 'three chunks');
    assert.deepEqual(chunks, ['early 1', 'early 2', 'late']);
});

test('async iteration yields chunks until the daemon closes the connection', async () => {
    const { daemon, gw, ws } = await open();
    let conn;
    gw.addEventListener('connection', (e) => (conn = e.detail));
    const id = daemon.incoming(ws, PEER_B, CHAT);
    daemon.send(ws, { type: 'Data', id, data: bytes('a') });
    await until(() => conn, 'the connection');
    const reasons = [];
    conn.addEventListener('close', (e) => reasons.push(e.detail));
    setImmediate(() => {
        daemon.send(ws, { type: 'Data', id, data: bytes('b') });
        daemon.send(ws, { type: 'Data', id, data: bytes('c') });
        daemon.send(ws, { type: 'ConnectionClosed', id, reason: 'stream reset' });
    });
    const seen = [];
    for await (const chunk of conn) {
        assert.ok(chunk instanceof Uint8Array);
        seen.push(text(chunk));
    }
    assert.deepEqual(seen, ['a', 'b', 'c']);
    assert.deepEqual(reasons, ['stream reset']);
    assert.equal(conn.reason, 'stream reset');
    // iterating a closed connection ends at once
    for await (const chunk of conn) assert.fail(`unexpected ${chunk}`);
});

test('breaking out of an iteration leaves the connection open', async () => {
    const { daemon, gw, ws } = await open();
    const conn = await gw.connect(PEER_B, '/echo');
    conn.send('x');
    conn.send('y');
    for await (const chunk of conn) {
        assert.equal(text(chunk), 'X');
        break;
    }
    assert.equal(conn.closed, false);
    // 'Y' arrives while nobody consumes: it waits for the next consumer
    await tick();
    await tick();
    const rest = [];
    conn.addEventListener('data', (e) => rest.push(text(e.detail)));
    conn.send('z');
    await until(() => rest.length === 2, 'the next chunks');
    assert.deepEqual(rest, ['Y', 'Z']);
    assert.equal(ws, daemon.sockets[0]);
});

test('a once data listener takes one chunk; the rest waits for the next consumer', async () => {
    const { gw } = await open();
    const conn = await gw.connect(PEER_B, '/echo');
    const first = new Promise((resolve) => conn.addEventListener('data', (e) => resolve(text(e.detail)), { once: true }));
    conn.send('a');
    conn.send('b');
    conn.send('c');
    assert.equal(await first, 'A');
    await tick();
    await tick();
    await tick();
    const controller = new AbortController();
    const more = [];
    conn.addEventListener('data', (e) => {
        more.push(text(e.detail));
        if (more.length === 1) controller.abort();
    }, { signal: controller.signal });
    await until(() => more.length === 1, 'one more chunk');
    await tick();
    assert.deepEqual(more, ['B']);
    const seen = [];
    const it = conn[Symbol.asyncIterator]();
    seen.push(text((await it.next()).value));
    assert.deepEqual(seen, ['C']);
    await it.return();
});

test('connect resolves on Peer Connection with a working Connection', async () => {
    const { daemon, gw } = await open();
    const conn = await gw.connect(PEER_B, '/echo', { framed: false });
    assert.deepEqual(daemon.received.at(-1), { type: 'Connect', frames: false, relay: false, protocol: '/echo', peer: PEER_B });
    assert.equal(conn.incoming, false);
    assert.equal(conn.peerID, PEER_B);
    const reply = new Promise((resolve) => conn.addEventListener('data', (e) => resolve(text(e.detail)), { once: true }));
    conn.send(new Uint8Array([0x68, 0x69]));
    assert.equal(await reply, 'HI');
});

test('connect with a connect string and a relay', async () => {
    const { daemon, gw } = await open();
    const cs = makeConnectString(PEER_C, ['/ip4/10.0.0.2/tcp/4001']);
    const conn = await gw.connect(cs, CHAT, { relay: true });
    assert.equal(conn.peerID, PEER_C);
    assert.deepEqual(daemon.received.at(-1), { type: 'Connect', frames: true, relay: true, protocol: CHAT, peer: cs });
    await gw.connect(PEER_B, CHAT, { relay: PEER_C });
    assert.deepEqual(daemon.received.at(-1), { type: 'Connect', frames: true, relay: PEER_C, protocol: CHAT, peer: PEER_B });
});

test("connect rejects with the daemon's reason; concurrent requests are matched by peer and protocol", async () => {
    const { gw } = await open();
    const unknown = '12D3KooWUnknownUnknownUnknownUnknownUnknownUnknown';
    const cs = makeConnectString(unknown, []);
    const results = await Promise.allSettled([
        gw.connect(unknown, CHAT),
        gw.connect(PEER_B, CHAT),
        gw.connect(cs, CHAT),
        gw.connect(PEER_C, CHAT),
        gw.connect(PEER_C, '/nope'),
    ]);
    assert.equal(results[0].status, 'rejected');
    assert.equal(results[0].reason.message, `failed to negotiate ${CHAT} with ${unknown}`);
    assert.equal(results[0].reason.peerID, unknown);
    assert.equal(results[1].value.peerID, PEER_B);
    assert.equal(results[2].status, 'rejected');
    assert.equal(results[2].reason.peerID, cs);
    assert.equal(results[3].value.peerID, PEER_C);
    assert.equal(results[4].status, 'rejected');
    assert.equal(results[4].reason.protocol, '/nope');
});

test('Protocol Error becomes an error event; unknown message types are ignored', async () => {
    const { daemon, gw, ws } = await open();
    const errors = [];
    gw.addEventListener('error', (e) => errors.push(e.detail));
    daemon.send(ws, { type: 'ProtocolError', msg: 'Listen: FRAMES flag must be 0 or 1, got 7' });
    daemon.send(ws, Uint8Array.of(27, 1)); // a future message type
    daemon.send(ws, Uint8Array.of(200));
    daemon.send(ws, Uint8Array.of(3, 0)); // truncated: reported, not thrown
    await gw.listen('/after');
    assert.equal(errors.length, 2);
    assert.equal(errors[0], 'Listen: FRAMES flag must be 0 or 1, got 7');
    assert.match(errors[1], /undecodable.*Connection Closed/);
});

test('a second Identify updates the gateway and fires identify', async () => {
    const { daemon, gw, ws } = await open();
    const seen = [];
    gw.addEventListener('identify', (e) => seen.push(e.detail));
    daemon.publicNat = true;
    daemon.identify(ws);
    await until(() => seen.length === 1, 'identify');
    assert.equal(gw.public, true);
    assert.equal(seen[0].public, true);
    assert.equal(seen[0].peerID, PEER_SELF);
});

test('an unasked Listener Closed fires listenerclosed', async () => {
    const { daemon, gw, ws } = await open();
    await gw.listen(CHAT);
    const closed = new Promise((resolve) => gw.addEventListener('listenerclosed', (e) => resolve(e.detail)));
    daemon.send(ws, { type: 'ListenerClosed', protocol: CHAT });
    assert.equal(await closed, CHAT);
    assert.ok(!gw.listening.has(CHAT));
});

test('when the WebSocket closes, pending requests fail and connections close', async () => {
    const { daemon, gw, ws } = await open();
    const conn = await gw.connect(PEER_B, CHAT);
    daemon.handle = () => {}; // the daemon stops answering
    const pending = gw.listen('/never');
    const reasons = [];
    conn.addEventListener('close', (e) => reasons.push(e.detail));
    const gwClosed = new Promise((resolve) => gw.addEventListener('close', (e) => resolve(e.detail)));
    daemon.hangUp(ws, 1001, 'going away');
    await assert.rejects(pending, /gateway closed: going away/);
    assert.deepEqual(await gwClosed, { code: 1001, reason: 'going away' });
    assert.deepEqual(reasons, ['gateway closed']);
    assert.equal(gw.closed, true);
    await assert.rejects(gw.connect(PEER_B, CHAT), /not open/);
    assert.throws(() => conn.send('x'), /closed/);
});

test('Blob messages (a WebSocket that ignores binaryType) keep their order', async () => {
    const { daemon, gw, ws } = await open({ blobs: true });
    let conn;
    gw.addEventListener('connection', (e) => (conn = e.detail));
    const id = daemon.incoming(ws, PEER_B, CHAT);
    for (let i = 0; i < 20; i++) daemon.send(ws, { type: 'Data', id, data: bytes(String(i)) });
    daemon.send(ws, { type: 'ConnectionClosed', id, reason: 'done' });
    await until(() => conn, 'the connection');
    const seen = [];
    for await (const chunk of conn) seen.push(Number(text(chunk)));
    assert.deepEqual(seen, [...Array(20).keys()]);
});

// ------------------------------------------------------------------ presence

const GAME_PREFIX = '/libp2p-websocket/game/1.0.0/';
const GAME_1 = `${GAME_PREFIX}aaaaaa-Alice%27s%20arena`;
const GAME_2 = `${GAME_PREFIX}bbbbbb-Bob`;
const PEER_D = '12D3KooWDaveDaveDaveDaveDaveDaveDaveDaveDaveDaveDave';
const info = (protocols, extra = {}) => ({ addrs: ['/ip4/127.0.0.1/tcp/4001'], protocols, relayed: false, agent: 'libp2p-websocket/0.1.0', ...extra });

// Collects a gateway's presence events by type.
function recordPresence(gw) {
    const seen = { peer: [], listener: [], presence: [] };
    for (const type of Object.keys(seen)) gw.addEventListener(type, (e) => seen[type].push(e.detail));
    return seen;
}

test('subscribe: Presence ON, the daemon lists its state, resolves on Presence Ready', async () => {
    const { daemon, gw } = await open({ started: true });
    daemon.known.set(PEER_B, { state: 2, info: info([CHAT, GAME_2]) });
    daemon.known.set(PEER_C, { state: 0, info: info([GAME_PREFIX + 'old']) });
    daemon.local.add(GAME_1);
    daemon.local.add(CHAT);
    assert.equal(gw.subscribed, false);
    assert.deepEqual(gw.peers(), []);
    const seen = recordPresence(gw);
    const state = await gw.subscribe();
    assert.deepEqual(daemon.received, [{ type: 'Presence', on: false }, { type: 'Presence', on: true }]);
    assert.equal(gw.subscribed, true);
    const b = { peerID: PEER_B, state: 'connected', ...info([CHAT, GAME_2]) };
    const c = { peerID: PEER_C, state: 'disconnected', ...info([GAME_PREFIX + 'old']) };
    assert.deepEqual(gw.peers(), [b, c]);
    assert.deepEqual(state, { peers: [b, c], listeners: [GAME_1, CHAT] });
    assert.equal(gw.getState(PEER_B), 'connected');
    assert.equal(gw.getState(PEER_C), 'disconnected');
    assert.equal(gw.getState(PEER_D), undefined);
    assert.deepEqual(gw.localListeners(), [GAME_1, CHAT]);
    assert.deepEqual(seen.peer.map((d) => [d.peerID, d.state, d.change]), [
        [PEER_B, 'connected', 'connected'],
        [PEER_C, 'disconnected', 'disconnected'],
    ]);
    assert.deepEqual(seen.listener, [{ protocol: GAME_1, up: true }, { protocol: CHAT, up: true }]);
    assert.deepEqual(seen.presence.map((d) => d.kind), ['peer', 'peer', 'listener', 'listener', 'ready']);
    // what peers() hands out is a copy
    gw.peers()[0].protocols.push('/mine');
    assert.deepEqual(gw.peers()[0].protocols, [CHAT, GAME_2]);
});

test('presence follows a peer through its states; updated keeps it connected with fresh info', async () => {
    const { daemon, gw, ws } = await open({ started: true });
    await gw.subscribe();
    const seen = recordPresence(gw);
    const push = (state, infoValue, peerID = PEER_D) => daemon.send(ws, { type: 'Peer', state, peerID, info: infoValue });
    push(1, info([], { agent: '' })); // dialing
    push(2, info(['/ipfs/id/1.0.0'], { agent: '' })); // connected, identify not there yet
    push(5, info(['/ipfs/id/1.0.0', GAME_2])); // identify arrived
    push(5, '{"relayed":true}'); // only relayed changes: the rest is kept
    push(0, ''); // no info: everything kept
    push(4, '{"addrs":[]}');
    push(9, '{"agent":"future"}'); // an unknown state: the state stays, the info is taken
    await until(() => seen.peer.length === 7, 'seven peer events');
    assert.deepEqual(seen.peer.map((d) => [d.state, d.change]), [
        ['connecting', 'connecting'],
        ['connected', 'connected'],
        ['connected', 'updated'],
        ['connected', 'updated'],
        ['disconnected', 'disconnected'],
        ['failed', 'failed'],
        ['failed', 'unknown'],
    ]);
    assert.deepEqual(seen.peer[2].protocols, ['/ipfs/id/1.0.0', GAME_2]);
    assert.equal(seen.peer[2].agent, 'libp2p-websocket/0.1.0');
    assert.equal(seen.peer[3].relayed, true);
    assert.deepEqual(seen.peer[3].protocols, ['/ipfs/id/1.0.0', GAME_2]);
    assert.deepEqual(seen.peer[4].addrs, ['/ip4/127.0.0.1/tcp/4001']);
    assert.deepEqual(gw.peers(), [
        { peerID: PEER_D, state: 'failed', addrs: [], protocols: ['/ipfs/id/1.0.0', GAME_2], relayed: true, agent: 'future' },
    ]);
    assert.equal(seen.presence.length, 7);
    assert.ok(seen.presence.every((d) => d.kind === 'peer' && d.peerID === PEER_D));

    // an 'updated' peer not seen before is connected
    daemon.send(ws, { type: 'Peer', state: 5, peerID: PEER_C, info: info([CHAT]) });
    await until(() => gw.getState(PEER_C) === 'connected', 'C connected');
});

test('local listeners come and go', async () => {
    const { daemon, gw, ws } = await open({ started: true });
    await gw.subscribe();
    const seen = recordPresence(gw);
    daemon.send(ws, { type: 'LocalListener', up: true, protocol: GAME_1 });
    daemon.send(ws, { type: 'LocalListener', up: true, protocol: GAME_2 });
    daemon.send(ws, { type: 'LocalListener', up: false, protocol: GAME_1 });
    daemon.send(ws, { type: 'LocalListener', up: false, protocol: '/never-up' });
    await until(() => seen.listener.length === 4, 'four listener events');
    assert.deepEqual(gw.localListeners(), [GAME_2]);
    assert.deepEqual(seen.listener, [
        { protocol: GAME_1, up: true },
        { protocol: GAME_2, up: true },
        { protocol: GAME_1, up: false },
        { protocol: '/never-up', up: false },
    ]);
    assert.deepEqual(seen.presence.map((d) => [d.kind, d.protocol, d.up]), seen.listener.map((l) => ['listener', l.protocol, l.up]));
});

test('findProtocols: local listeners under our own peer id, then connected peers', async () => {
    const { daemon, gw } = await open({ started: true });
    daemon.known.set(PEER_B, { state: 2, info: info([CHAT, GAME_2, `${GAME_PREFIX}second`, GAME_2]) });
    daemon.known.set(PEER_C, { state: 0, info: info([`${GAME_PREFIX}gone`]) });
    daemon.known.set(PEER_D, { state: 1, info: info([`${GAME_PREFIX}dialing`]) });
    daemon.local.add(CHAT);
    daemon.local.add(GAME_1);
    await gw.subscribe();
    assert.deepEqual(gw.findProtocols(GAME_PREFIX), [
        { peerID: PEER_SELF, protocol: GAME_1, local: true },
        { peerID: PEER_B, protocol: GAME_2, local: false },
        { peerID: PEER_B, protocol: `${GAME_PREFIX}second`, local: false },
    ]);
    assert.deepEqual(gw.findProtocols(GAME_PREFIX, { all: true }).map((f) => f.protocol), [
        GAME_1, GAME_2, `${GAME_PREFIX}second`, `${GAME_PREFIX}gone`, `${GAME_PREFIX}dialing`,
    ]);
    assert.deepEqual(gw.findProtocols(CHAT), [
        { peerID: PEER_SELF, protocol: CHAT, local: true },
        { peerID: PEER_B, protocol: CHAT, local: false },
    ]);
    assert.equal(gw.findProtocols().length, 5);
    assert.deepEqual(gw.findProtocols('/nothing'), []);
});

test('subscribing again refreshes the state and forgets what the daemon no longer lists', async () => {
    const { daemon, gw } = await open({ started: true });
    daemon.known.set(PEER_B, { state: 2, info: info([GAME_2]) });
    daemon.known.set(PEER_C, { state: 2, info: info([CHAT]) });
    daemon.local.add(GAME_1);
    daemon.local.add(CHAT);
    await gw.subscribe();
    const seen = recordPresence(gw);
    daemon.known.delete(PEER_C);
    daemon.known.set(PEER_B, { state: 0, info: info([GAME_2]) });
    daemon.local.delete(GAME_1);
    // two subscriptions in a row: each resolves on its own Presence Ready
    const [first, second] = await Promise.all([gw.subscribe(), gw.subscribe()]);
    assert.deepEqual(first, second);
    assert.deepEqual(first.peers.map((p) => [p.peerID, p.state]), [[PEER_B, 'disconnected']]);
    assert.deepEqual(first.listeners, [CHAT]);
    const forgotten = seen.peer.filter((d) => d.change === 'forgotten');
    assert.deepEqual(forgotten.map((d) => [d.peerID, d.state]), [[PEER_C, 'disconnected']]);
    assert.deepEqual(seen.listener.filter((l) => !l.up), [{ protocol: GAME_1, up: false }]);
    assert.equal(seen.presence.filter((d) => d.kind === 'ready').length, 2);
    assert.deepEqual(daemon.received.map((m) => m.on), [false, true, true, true]); // the opt-in first
});

test('a resync (the daemon fell behind) replaces the state: what it leaves out is gone', async () => {
    const { daemon, gw, ws } = await open({ started: true });
    daemon.send(ws, { type: 'Peer', state: 2, peerID: PEER_B, info: info([GAME_2]) });
    daemon.local.add(GAME_1);
    daemon.local.add(CHAT);
    await gw.subscribe();
    daemon.send(ws, { type: 'Peer', state: 2, peerID: PEER_C, info: info([CHAT]) });
    await until(() => gw.getState(PEER_C) === 'connected', 'C connected');
    const seen = recordPresence(gw);
    // GAME_1 stopped and C was forgotten while the session lagged: only the state says so.
    daemon.send(ws, { type: 'PresenceResync' });
    daemon.send(ws, { type: 'Peer', state: 2, peerID: PEER_B, info: info([GAME_2]) });
    daemon.send(ws, { type: 'LocalListener', up: true, protocol: CHAT });
    daemon.send(ws, { type: 'PresenceReady' });
    await until(() => seen.presence.some((d) => d.kind === 'ready'), 'resync complete');
    assert.deepEqual(gw.localListeners(), [CHAT]);
    assert.deepEqual(gw.peers().map((p) => p.peerID), [PEER_B]);
    assert.deepEqual(seen.listener.filter((l) => !l.up), [{ protocol: GAME_1, up: false }]);
    assert.deepEqual(seen.peer.filter((d) => d.change === 'forgotten').map((d) => d.peerID), [PEER_C]);
    // and a later subscribe() still resolves on its own Ready
    const again = await gw.subscribe();
    assert.ok(Array.isArray(again.peers));
});

test('unsubscribe: Presence OFF, the tables empty, later messages are ignored', async () => {
    const { daemon, gw, ws } = await open({ started: true });
    daemon.known.set(PEER_B, { state: 2, info: info([GAME_2]) });
    daemon.local.add(GAME_1);
    await gw.subscribe();
    const seen = recordPresence(gw);
    gw.unsubscribe();
    assert.deepEqual(daemon.received.at(-1), { type: 'Presence', on: false });
    assert.equal(gw.subscribed, false);
    assert.deepEqual([gw.peers(), gw.localListeners(), gw.findProtocols('')], [[], [], []]);
    assert.equal(gw.getState(PEER_B), undefined);
    daemon.send(ws, { type: 'Peer', state: 2, peerID: PEER_C, info: info([]) });
    daemon.send(ws, { type: 'LocalListener', up: true, protocol: GAME_2 });
    daemon.send(ws, { type: 'PresenceReady' }); // unasked: ignored too
    await gw.listen('/sync'); // everything sent before has arrived
    assert.deepEqual(gw.peers(), []);
    assert.deepEqual(seen.peer, []);
    assert.deepEqual(seen.listener, []);
    assert.deepEqual(seen.presence, [{ kind: 'unsubscribed' }]);

    // a subscribe still waiting when unsubscribe is called rejects
    daemon.handle = () => {};
    const waiting = gw.subscribe();
    gw.unsubscribe();
    await assert.rejects(waiting, /unsubscribed/);
});

test('subscribe rejects on a daemon without presence; the gateway goes on', async () => {
    const { daemon, gw } = await open({ started: true });
    daemon.presence = false;
    const errors = [];
    gw.addEventListener('error', (e) => errors.push(e.detail));
    await assert.rejects(gw.subscribe(), /presence is not available: unknown message type 6/);
    assert.equal(gw.subscribed, false);
    assert.deepEqual(errors, ['unknown message type 6']);
    // other Protocol Errors do not touch a pending subscription
    daemon.presence = true;
    const sub = gw.subscribe();
    daemon.send(daemon.sockets[0], { type: 'ProtocolError', msg: 'Listen: FRAMES flag must be 0 or 1, got 7' });
    await sub;
    assert.equal(gw.subscribed, true);
    assert.equal(await gw.listen(CHAT), CHAT);
});

test('when the WebSocket closes, a pending subscribe rejects and presence empties', async () => {
    const { daemon, gw, ws } = await open({ started: true });
    daemon.known.set(PEER_B, { state: 2, info: info([GAME_2]) });
    await gw.subscribe();
    const seen = recordPresence(gw);
    daemon.handle = () => {};
    const pending = gw.subscribe();
    daemon.hangUp(ws, 1001, 'daemon shutting down');
    await assert.rejects(pending, /gateway closed: daemon shutting down/);
    assert.equal(gw.subscribed, false);
    assert.deepEqual(gw.peers(), []);
    assert.deepEqual(seen.presence, [{ kind: 'closed' }]);
    await assert.rejects(gw.subscribe(), /not open/);
    assert.throws(() => gw.unsubscribe(), /not open/);
});

// ------------------------------------------------------------------ the Relayed extension

const PEER_RELAY = '12D3KooWRe1ayRe1ayRe1ayRe1ayRe1ayRe1ayRe1ayRe1ayRe1';

test('extensions: one Presence OFF after Identify opts in; {extensions: false} sends none', async () => {
    const { daemon, gw, ws } = await open();
    assert.deepEqual(daemon.received, [{ type: 'Start', key: '' }, { type: 'Presence', on: false }]);
    assert.ok(daemon.extended.has(ws));
    assert.equal(gw.subscribed, false);
    // a later Identify (another session started the node, reachability changed) does not
    // send it again: it would end a subscription
    await gw.subscribe();
    daemon.identify(ws);
    await until(() => daemon.received.length === 3 && gw.public === false, 'the second Identify');
    await gw.listen('/sync');
    assert.deepEqual(daemon.received.filter((m) => m.type === 'Presence').map((m) => m.on), [false, true]);
    assert.ok(daemon.subscribed.has(ws));

    const quiet = await open({ started: true }, { extensions: false });
    assert.deepEqual(quiet.daemon.received, []);
    quiet.daemon.relayedPeers.set(PEER_B, PEER_RELAY);
    const conn = await quiet.gw.connect(PEER_B, '/echo');
    conn.send('x');
    await new Promise((resolve) => conn.addEventListener('data', resolve, { once: true }));
    assert.equal(conn.relayed, false); // not opted in: the daemon says nothing
});

test('Relayed marks an outgoing connection, with a relayed event on it and on the gateway, before its data', async () => {
    const { daemon, gw } = await open({ started: true });
    daemon.relayedPeers.set(PEER_B, PEER_RELAY);
    const onGateway = [];
    gw.addEventListener('relayed', (e) => onGateway.push(e.detail));
    const conn = await gw.connect(PEER_B, '/echo');
    // connect() resolved on Peer Connection; Relayed is the next message
    assert.equal(conn.relayed, false);
    assert.equal(conn.relay, '');
    const relay = await new Promise((resolve) => conn.addEventListener('relayed', (e) => resolve(e.detail)));
    assert.equal(relay, PEER_RELAY);
    assert.equal(conn.relayed, true);
    assert.equal(conn.relay, PEER_RELAY);
    assert.deepEqual(onGateway, [conn]);
    assert.equal(gw.connections.get(conn.id).relayed, true);

    // a direct stream stays unmarked
    const direct = await gw.connect(PEER_C, CHAT);
    direct.send('ping');
    await new Promise((resolve) => direct.addEventListener('data', resolve, { once: true }));
    assert.equal(direct.relayed, false);
    assert.equal(direct.relay, '');
    assert.deepEqual(onGateway, [conn]);
});

test('Relayed on an incoming connection is set by its first data event; an empty RELAY still marks it', async () => {
    const { daemon, gw, ws } = await open();
    daemon.relayedPeers.set(PEER_C, '');
    await gw.listen(CHAT);
    const seen = [];
    gw.addEventListener('connection', (e) => {
        const conn = e.detail;
        seen.push(['connection', conn.relayed]);
        conn.addEventListener('relayed', (ev) => seen.push(['relayed', ev.detail, conn.relayed]));
        conn.addEventListener('data', () => seen.push(['data', conn.relayed, conn.relay]), { once: true });
    }, { once: true });
    const id = daemon.incoming(ws, PEER_C, CHAT);
    daemon.send(ws, { type: 'Data', id, data: bytes('hi') });
    await until(() => seen.length === 3, 'connection, relayed and data');
    assert.deepEqual(seen, [['connection', false], ['relayed', '', true], ['data', true, '']]);

    // a direct incoming stream: no Relayed
    let direct;
    gw.addEventListener('connection', (e) => (direct = e.detail));
    const id2 = daemon.incoming(ws, PEER_B, CHAT);
    daemon.send(ws, { type: 'Data', id: id2, data: bytes('x') });
    await until(() => direct, 'the direct connection');
    await new Promise((resolve) => direct.addEventListener('data', resolve, { once: true }));
    assert.equal(direct.relayed, false);
});

test('Relayed for an unknown or closed connection id, or a second one, is ignored', async () => {
    const { daemon, gw, ws } = await open({ started: true });
    const errors = [];
    const relayed = [];
    gw.addEventListener('error', (e) => errors.push(e.detail));
    gw.addEventListener('relayed', (e) => relayed.push(e.detail));
    daemon.send(ws, { type: 'Relayed', id: 999n, relay: PEER_RELAY });
    daemon.send(ws, { type: 'Relayed', id: (1n << 64n) - 1n, relay: '' });
    const conn = await gw.connect(PEER_B, CHAT);
    daemon.send(ws, { type: 'Relayed', id: conn.id, relay: PEER_RELAY });
    daemon.send(ws, { type: 'Relayed', id: conn.id, relay: 'a second opinion' }); // not the daemon's way: ignored
    await gw.listen('/sync');
    assert.deepEqual([conn.relayed, conn.relay], [true, PEER_RELAY]);
    const closed = await gw.connect(PEER_C, CHAT);
    closed.close();
    daemon.send(ws, { type: 'Relayed', id: closed.id, relay: PEER_RELAY });
    await gw.listen('/sync2');
    assert.deepEqual([closed.relayed, closed.relay], [false, '']);
    assert.deepEqual(relayed, [conn]);
    assert.deepEqual(errors, []);
    assert.deepEqual([...gw.connections.keys()], [conn.id]);
});

test('a daemon without extensions answers the opt-in with a Protocol Error: swallowed, all else works', async () => {
    for (const started of [false, true]) {
        const daemon = new FakeDaemon({ started });
        daemon.presence = false; // "unknown message type 6" to every Presence
        daemon.relayedPeers.set(PEER_B, PEER_RELAY);
        // built by hand so that the listeners see everything from the first message on
        const gw = new Gateway(new daemon.WebSocket('ws://fake/libp2p'), { storage: null });
        const errors = [];
        gw.addEventListener('error', (e) => errors.push(e.detail));
        const identified = new Promise((resolve) => gw.addEventListener('identify', resolve, { once: true }));
        await identified;
        const ws = daemon.sockets[0];
        assert.deepEqual(daemon.received.slice(-1), [{ type: 'Presence', on: false }], `started ${started}`);
        assert.equal(await gw.listen(CHAT), CHAT); // the error to the opt-in arrived before this
        assert.deepEqual(errors, [], `started ${started}`);
        const conn = await gw.connect(PEER_B, '/echo');
        conn.send('x');
        await new Promise((resolve) => conn.addEventListener('data', resolve, { once: true }));
        assert.equal(conn.relayed, false);
        const id = daemon.incoming(ws, PEER_C, CHAT);
        await until(() => gw.connections.has(id), 'the incoming connection');
        // presence is still refused the way it was, with one error event for the one subscribe
        await assert.rejects(gw.subscribe(), /presence is not available: unknown message type 6/);
        assert.deepEqual(errors, ['unknown message type 6']);
        assert.equal(gw.closed, false);
        gw.close();
    }
});

test('a daemon that ignores unknown messages (the original Go daemon) is not bothered by the opt-in', async () => {
    const daemon = new FakeDaemon();
    const handle = daemon.handle.bind(daemon);
    daemon.handle = (ws, msg) => (msg.type === 'Presence' ? undefined : handle(ws, msg));
    const gw = await Gateway.connect('ws://fake/libp2p', { WebSocket: daemon.WebSocket, storage: null });
    // Start first: that daemon closes a socket whose first message is anything else
    assert.deepEqual(daemon.received.map((m) => m.type), ['Start', 'Presence']);
    assert.equal(await gw.listen(CHAT), CHAT);
    const conn = await gw.connect(PEER_B, CHAT);
    assert.equal(conn.relayed, false);
});

// ------------------------------------------------------------------ the original's callback API

test('the default export carries the original API names', () => {
    for (const name of [
        'startProtocol', 'start', 'listen', 'stop', 'connect', 'close', 'sendData', 'sendString', 'sendObject',
        'getString', 'checkProt', 'checkPeerID', 'connectionError', 'encode_ascii85', 'decode_ascii85',
        'natStatus', 'relayErrors', 'BlankHandler', 'DelegatingHandler', 'LoggingHandler', 'TrackingHandler',
        'CommandHandler', 'getConnectionInfo', 'getInfoForPeerAndProtocol',
    ]) {
        assert.ok(name in libp2p, name);
    }
    assert.equal(libp2p.natStatus.public, 'public');
    assert.equal(libp2p.checkProt('/x/chat'), undefined);
    assert.match(libp2p.checkProt('/chat'), /must begin with \/x\//);
    assert.equal(libp2p.checkPeerID(PEER_B), undefined);
    assert.match(libp2p.checkPeerID('a/b'), /slashes/);
});

// Records every callback with its arguments.
class RecordingHandler extends libp2p.BlankHandler {
    constructor() {
        super();
        this.calls = [];
    }
}
for (const name of ['hello', 'ident', 'listenerConnection', 'connectionClosed', 'data', 'listenRefused',
    'listenerClosed', 'peerConnection', 'peerConnectionRefused', 'error', 'listening']) {
    RecordingHandler.prototype[name] = function (...args) {
        this.calls.push([name, ...args]);
    };
}

test('startProtocol dispatches every server message to the handler, with the original argument order', async () => {
    const daemon = new FakeDaemon({ key: 'CAESQKEY==' });
    const handler = new RecordingHandler();
    handler.hello = function (started, version) {
        this.calls.push(['hello', started, version]);
        if (!started) libp2p.start('CAESQKEY==');
    };
    const ws = libp2p.startProtocol('ws://fake/libp2p', handler, { WebSocket: daemon.WebSocket });
    assert.equal(ws, daemon.sockets[0]);
    await until(() => handler.calls.some((c) => c[0] === 'ident'), 'ident');
    assert.deepEqual(handler.calls, [
        ['hello', false, 'fake 1.0'],
        ['ident', 'private', PEER_SELF, ADDRS, 'CAESQKEY=='],
    ]);
    assert.deepEqual(daemon.received, [{ type: 'Start', key: 'CAESQKEY==' }]);

    handler.calls = [];
    daemon.refuse.add('/taken');
    libp2p.listen(CHAT, true);
    libp2p.listen('/taken', false);
    libp2p.stop(CHAT, true);
    libp2p.connect(PEER_B, CHAT, true, false);
    libp2p.connect('12D3KooWNobody', '/x/none', false, true);
    const inId = daemon.incoming(ws, PEER_C, CHAT);
    daemon.send(ws, { type: 'Data', id: inId, data: bytes('{"name":"hi"}') });
    daemon.send(ws, { type: 'ConnectionClosed', id: inId, reason: 'bye' });
    daemon.send(ws, { type: 'ProtocolError', msg: 'oops' });
    daemon.send(ws, Uint8Array.of(42, 0, 0)); // unknown type: ignored
    await until(() => handler.calls.length === 9, 'nine callbacks');
    const outId = handler.calls.find((c) => c[0] === 'peerConnection')[1];
    assert.deepEqual(handler.calls, [
        ['listening', CHAT],
        ['listenRefused', '/taken'],
        ['listenerClosed', CHAT],
        ['peerConnection', outId, PEER_B, CHAT],
        ['peerConnectionRefused', '12D3KooWNobody', '/x/none', 'failed to negotiate /x/none with 12D3KooWNobody'],
        ['listenerConnection', inId, PEER_C, CHAT],
        ['data', inId, bytes('{"name":"hi"}')],
        ['connectionClosed', inId, 'bye'],
        ['error', 'oops'],
    ]);
    assert.equal(typeof outId, 'bigint');
    assert.deepEqual(daemon.received.slice(1, 6), [
        { type: 'Listen', frames: true, protocol: CHAT },
        { type: 'Listen', frames: false, protocol: '/taken' },
        { type: 'Stop', retain: true, protocol: CHAT },
        { type: 'Connect', frames: true, relay: false, protocol: CHAT, peer: PEER_B },
        { type: 'Connect', frames: false, relay: true, protocol: '/x/none', peer: '12D3KooWNobody' },
    ]);

    daemon.handle = (s, msg) => daemon.received.length; // stop echoing
    let called = 0;
    libp2p.sendObject(outId, { name: 'message', text: 'héllo' }, () => called++);
    libp2p.sendString(outId, 'plain');
    libp2p.sendData(outId, Uint8Array.of(1, 2, 3));
    libp2p.close(outId, () => called++);
    assert.deepEqual(daemon.received.slice(-4), [
        { type: 'Data', id: outId, data: bytes('{"name":"message","text":"héllo"}') },
        { type: 'Data', id: outId, data: bytes('plain') },
        { type: 'Data', id: outId, data: Uint8Array.of(1, 2, 3) },
        { type: 'Close', id: outId },
    ]);
    await tick();
    assert.equal(called, 2);
    assert.equal(libp2p.getString(bytes('ü')), 'ü');
});

test('TrackingHandler and LoggingHandler chain like the original', async () => {
    const daemon = new FakeDaemon({ started: true, publicNat: true });
    const app = new RecordingHandler();
    const connections = {};
    const tracking = new libp2p.TrackingHandler(app, connections);
    const logged = [];
    const origLog = console.log;
    console.log = (...args) => logged.push(args);
    try {
        const ws = libp2p.startProtocol('ws://fake/libp2p', new libp2p.LoggingHandler(tracking), { WebSocket: daemon.WebSocket });
        await until(() => app.calls.some((c) => c[0] === 'ident'), 'ident');
        assert.equal(connections.peerID, PEER_SELF);
        assert.equal(connections.natStatus, 'public');
        libp2p.listen(CHAT, true);
        const id = daemon.incoming(ws, PEER_B, CHAT);
        await until(() => app.calls.some((c) => c[0] === 'listenerConnection'), 'listenerConnection');
        assert.ok(connections.listeningTo.has(CHAT));
        const info = libp2p.getConnectionInfo(connections, id);
        assert.equal(info.peerID, PEER_B);
        assert.equal(info.incoming, true);
        assert.equal(libp2p.getInfoForPeerAndProtocol(connections, PEER_B, CHAT), info);
        daemon.send(ws, { type: 'ConnectionClosed', id, reason: '' });
        await until(() => app.calls.some((c) => c[0] === 'connectionClosed'), 'connectionClosed');
        assert.equal(libp2p.getConnectionInfo(connections, id), undefined);
        assert.equal(connections.conIDsByPeerID.size, 0);
    } finally {
        console.log = origLog;
    }
    assert.ok(logged.some((args) => args[0] === 'RECEIVED MESSAGE:' && args[1] === 'listenerConnection'));
});

test('CommandHandler runs JSON commands on its protocols and passes other data on', async () => {
    const daemon = new FakeDaemon({ started: true });
    const seen = [];
    const app = new RecordingHandler();
    class Chat extends libp2p.CommandHandler {
        constructor(delegate) {
            super(delegate, null, ['message'], true, ['/x/chat']);
        }
        message(info, cmd) {
            seen.push([info.conID, cmd.text]);
        }
    }
    const connections = {};
    const chat = new Chat(app);
    chat.connections = connections;
    const ws = libp2p.startProtocol('ws://fake/libp2p', new libp2p.TrackingHandler(chat, connections), { WebSocket: daemon.WebSocket });
    await tick();
    const a = daemon.incoming(ws, PEER_B, '/x/chat');
    const b = daemon.incoming(ws, PEER_C, '/x/other');
    daemon.send(ws, { type: 'Data', id: a, data: bytes(JSON.stringify({ name: 'message', text: 'hello' })) });
    daemon.send(ws, { type: 'Data', id: a, data: bytes(JSON.stringify({ name: 'unknown' })) });
    daemon.send(ws, { type: 'Data', id: b, data: bytes('raw bytes') });
    await until(() => app.calls.filter((c) => c[0] === 'data').length === 2, 'data passed on');
    assert.deepEqual(seen, [[a, 'hello']]);
    const passed = app.calls.filter((c) => c[0] === 'data');
    assert.equal(passed[0][1], a);
    assert.deepEqual(passed[0][3], { name: 'unknown' });
    assert.equal(passed[1][1], b);
    assert.equal(libp2p.getString(passed[1][2]), 'raw bytes');
});

test('commands before startProtocol throw a clear error', async () => {
    // a fresh instance of the callback API's module has no socket yet
    const fresh = await import(`../../html/protocol/legacy.js?fresh=${Date.now()}`);
    assert.throws(() => fresh.listen('/x', true), /startProtocol\(\) has not been called/);
});

test('the callback API ignores presence and Relayed messages', async () => {
    const daemon = new FakeDaemon({ started: true });
    const handler = new RecordingHandler();
    const ws = libp2p.startProtocol('ws://fake/libp2p', handler, { WebSocket: daemon.WebSocket });
    await until(() => handler.calls.some((c) => c[0] === 'ident'), 'ident');
    daemon.send(ws, { type: 'Peer', state: 2, peerID: PEER_B, info: '{}' });
    daemon.send(ws, { type: 'LocalListener', up: true, protocol: CHAT });
    daemon.send(ws, { type: 'PresenceReady' });
    daemon.send(ws, { type: 'PresenceResync' });
    daemon.send(ws, { type: 'Relayed', id: 0n, relay: PEER_RELAY });
    daemon.send(ws, { type: 'ProtocolError', msg: 'last' });
    await until(() => handler.calls.some((c) => c[0] === 'error'), 'error');
    assert.deepEqual(handler.calls.map((c) => c[0]), ['hello', 'ident', 'error']);
});
