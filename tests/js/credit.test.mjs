// The credit extension (PROTOCOL.md, "Extension: credit") in the promise API of
// html/protocol.js: negotiation, send credit (queueing, drain, framed cost, raw pieces,
// fairness), receive credit (given back as the page consumes), and the WHATWG streams
// of a Connection. An in-memory fake daemon keeps the windows the way the real one does
// and records every overrun, so each test also checks the client's byte accounting.
// Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import libp2p, { Gateway, decodeClientMessage, encodeServerMessage } from '../../html/protocol.js';

const PEER_SELF = '12D3KooWHwTKFTbaSelfSelfSelfSelfSelfSelfSelfSelfSelf';
const PEER_B = '12D3KooWLX1Xa4aRBobBobBobBobBobBobBobBobBobBobBobBo';
const CHAT = '/libp2p-websocket/chat/1.0.0';
const OFFERS = 'libp2p-websocket/0.5.0 credit presence';
const text = (b) => new TextDecoder().decode(b);
const bytes = (s) => new TextEncoder().encode(s);
const filled = (n, v = 0x61) => new Uint8Array(n).fill(v);
const tick = () => new Promise((resolve) => setImmediate(resolve));

async function until(cond, what = 'condition') {
    for (let i = 0; i < 300; i++) {
        if (cond()) return;
        await tick();
    }
    assert.fail(`timed out waiting for ${what}`);
}

// Lets every message in flight arrive (each fake message takes its own macrotask).
async function settle(n = 6) {
    for (let i = 0; i < n; i++) await tick();
}

// ------------------------------------------------------------------ the fake

// A daemon with the credit extension. Windows: W per stream, S per session (bytes the
// client may send), R receive credit per stream (what the fake may send). It never gives
// send credit back by itself: tests call giveBack(). It sends Data to the page only within
// the receive credit, queueing the rest (push()), unless told to overrun.
class CreditDaemon {
    constructor({ started = true, version = OFFERS, W = 1000, S = 100000, R = null, refuse = false } = {}) {
        Object.assign(this, { started, version, W, S, R, refuse });
        this.received = [];
        this.sockets = [];
        this.nextId = 0n;
        this.streams = new Map(); // id -> {framed, open, window, recvLeft, got: [], outbox: []}
        this.session = S;
        this.violations = []; // the client's overruns of its send credit
        this.creditOn = false;
        this.receiveWindow = null;
        const daemon = this;
        this.WebSocket = class extends EventTarget {
            constructor(url) {
                super();
                this.url = url;
                this.readyState = 0;
                this.binaryType = 'blob';
                daemon.sockets.push(this);
                setImmediate(() => {
                    this.readyState = 1;
                    this.dispatchEvent(new Event('open'));
                    daemon.send(this, { type: 'Hello', started: daemon.started, version: daemon.version });
                    if (daemon.started) daemon.identify(this);
                });
            }
            send(data) {
                if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
                const msg = decodeClientMessage(Uint8Array.from(data));
                daemon.received.push(msg);
                daemon.handle(this, msg);
            }
            close(code = 1000, reason = '') {
                if (this.readyState >= 2) return;
                this.readyState = 2;
                setImmediate(() => daemon.hangUp(this, code, reason));
            }
        };
    }

    send(ws, msg) {
        const raw = encodeServerMessage(msg);
        setImmediate(() => {
            if (ws.readyState !== 1) return;
            const event = Object.assign(new Event('message'), { data: raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) });
            ws.dispatchEvent(event);
        });
    }

    hangUp(ws, code = 1006, reason = '') {
        if (ws.readyState === 3) return;
        ws.readyState = 3;
        ws.dispatchEvent(Object.assign(new Event('close'), { code, reason }));
    }

    identify(ws) {
        this.send(ws, { type: 'Identify', public: false, peerID: PEER_SELF, addresses: '[]', key: '' });
    }

    open(ws, framed, incoming, protocol = CHAT) {
        const id = this.nextId++;
        const recv = this.receiveWindow ?? this.W;
        this.streams.set(id, { framed, open: true, window: this.W, recvLeft: recv, got: [], outbox: [] });
        const type = incoming ? 'ListenerConnection' : 'PeerConnection';
        this.send(ws, { type, id, peerID: PEER_B, protocol });
        return id;
    }

    handle(ws, msg) {
        switch (msg.type) {
            case 'Start':
                return this.identify(ws);
            case 'Extensions': {
                if (this.refuse) return this.send(ws, { type: 'ProtocolError', msg: 'Extensions: credit must be asked for before the session\'s first stream' });
                const asked = new Map(msg.names.split(' ').filter(Boolean).map((t) => t.split('=')));
                const on = [];
                if (asked.has('credit')) {
                    this.creditOn = true;
                    this.receiveWindow = this.R ?? (asked.has('receive-window') ? Number(asked.get('receive-window')) : this.W);
                    on.push(`credit stream-window=${this.W} session-window=${this.S} receive-window=${this.receiveWindow}`);
                }
                if (asked.has('presence')) on.push('presence');
                if (asked.has('reachability')) on.push('reachability');
                this.send(ws, { type: 'Extensions', names: on.join(' ') });
                if (asked.has('reachability')) this.send(ws, { type: 'Reachability', state: 0 });
                return;
            }
            case 'Listen':
                this.framedListen = msg.frames;
                return this.send(ws, { type: 'Listening', protocol: msg.protocol });
            case 'Connect':
                return this.open(ws, msg.frames, false, msg.protocol);
            case 'Data': {
                const s = this.streams.get(msg.id);
                const cost = msg.data.length + (s?.framed ? 4 : 0);
                if (this.creditOn) {
                    if (!s?.open || cost > s.window || cost > this.session) {
                        this.violations.push({ id: msg.id, cost, stream: s?.window, session: this.session });
                    }
                    if (s?.open) s.window -= cost;
                    this.session -= cost;
                }
                s?.got.push(Uint8Array.from(msg.data));
                return undefined;
            }
            case 'Credit': {
                const s = this.streams.get(msg.id);
                if (!s) return undefined;
                s.recvLeft += msg.bytes;
                return this.flushOut(ws, msg.id);
            }
            case 'Close': {
                const s = this.streams.get(msg.id);
                if (s) s.open = false;
                return undefined;
            }
            case 'Presence':
                return undefined;
            default:
                return undefined;
        }
    }

    // The daemon gives n bytes of send credit back for stream id.
    giveBack(ws, id, n) {
        const s = this.streams.get(id);
        if (s?.open) s.window += n;
        this.session += n;
        this.send(ws, { type: 'Credit', id, bytes: n });
    }

    // Data from the remote for the page: sent within the receive credit, queued past it.
    push(ws, id, data) {
        const s = this.streams.get(id);
        s.outbox.push(data);
        this.flushOut(ws, id);
    }

    flushOut(ws, id) {
        const s = this.streams.get(id);
        while (s.outbox.length > 0) {
            const cost = s.outbox[0].length + (s.framed ? 4 : 0);
            if (this.creditOn && cost > s.recvLeft) break;
            if (this.creditOn) s.recvLeft -= cost;
            this.send(ws, { type: 'Data', id, data: s.outbox.shift() });
        }
    }

    closeStream(ws, id, reason = 'closed by remote') {
        this.streams.get(id).open = false;
        this.send(ws, { type: 'ConnectionClosed', id, reason });
    }

    got(id) {
        return this.streams.get(id).got;
    }

    credits(id) {
        return this.received.filter((m) => m.type === 'Credit' && m.id === id).map((m) => m.bytes);
    }
}

async function open(daemonOptions = {}, gatewayOptions = {}) {
    const daemon = new CreditDaemon(daemonOptions);
    const gw = await Gateway.connect('ws://fake/libp2p', { WebSocket: daemon.WebSocket, storage: null, ...gatewayOptions });
    return { daemon, gw, ws: daemon.sockets[0] };
}

// An incoming connection (the daemon opens a stream to our listener).
async function incoming(daemon, gw, ws, { framed = true } = {}) {
    await gw.listen(CHAT, { framed });
    const got = new Promise((resolve) => gw.addEventListener('connection', (e) => resolve(e.detail), { once: true }));
    daemon.open(ws, framed, true);
    return got;
}

const sum = (a) => a.reduce((x, y) => x + y, 0);
const concat = (chunks) => Uint8Array.from(chunks.flatMap((c) => [...c]));

// ------------------------------------------------------------------ negotiation

test('a Hello that offers credit gets Extensions first; connect() resolves with the answer in', async () => {
    const { daemon, gw } = await open();
    assert.deepEqual(daemon.received, [{ type: 'Extensions', names: 'credit' }, { type: 'Presence', on: false }]);
    assert.deepEqual([...gw.offers], ['credit', 'presence']);
    assert.equal(gw.version, OFFERS);
    assert.deepEqual([...gw.extensions], [['credit', ''], ['stream-window', '1000'], ['session-window', '100000'], ['receive-window', '1000']]);
    assert.deepEqual(gw.credit, { streamWindow: 1000, sessionWindow: 100000, receiveWindow: 1000 });
    assert.equal(gw.sessionCredit, 100000);
    const conn = await gw.connect(PEER_B, CHAT);
    assert.equal(conn.credited, true);
    assert.equal(conn.framed, true);
    assert.equal(conn.sendCredit, 1000);
    assert.equal(conn.receiveCredit, 1000);
    assert.equal(conn.bufferedAmount, 0);
});

test('reachability: asked for when offered; the three states, and an event when it changes', async () => {
    const { daemon, gw, ws } = await open({ version: `${OFFERS} reachability` });
    assert.equal(daemon.received[0].names, 'credit reachability');
    await until(() => gw.reachability === 'unknown', 'the first state');
    const seen = [];
    gw.addEventListener('reachability', (e) => seen.push(e.detail));
    daemon.send(ws, { type: 'Reachability', state: 1 });
    daemon.send(ws, { type: 'Reachability', state: 1 });
    daemon.send(ws, { type: 'Reachability', state: 2 });
    await until(() => seen.length === 2, 'two changes');
    assert.deepEqual(seen, ['private', 'public']);
    // not offered: not asked, and it stays null
    const plain = await open();
    assert.ok(!plain.daemon.received.some((m) => m.type === 'Extensions' && /reachability/.test(m.names)));
    assert.equal(plain.gw.reachability, null);
});

test('a node not started: Extensions goes before Start; receiveWindow is asked for', async () => {
    const { daemon, gw } = await open({ started: false }, { receiveWindow: 4194304 });
    assert.deepEqual(daemon.received.slice(0, 2), [
        { type: 'Extensions', names: 'credit receive-window=4194304' },
        { type: 'Start', key: '' },
    ]);
    assert.equal(gw.credit.receiveWindow, 4194304);
    await assert.rejects(Gateway.connect('ws://x', { WebSocket: daemon.WebSocket, receiveWindow: 0 }), RangeError);
    assert.throws(() => new Gateway(new EventTarget(), { receiveWindow: 1.5 }), RangeError);
});

test('no Extensions to a daemon whose Hello has no tail, or does not offer credit, or with {credit: false}', async () => {
    for (const [version, options] of [
        ['libp2p-websocket/0.4.0', {}],
        ['libp2p-websocket 0.1.0', {}], // an older form: "0.1.0" is not an extension name
        ['', {}],
        ['libp2p-websocket/0.5.0 presence', {}],
        [OFFERS, { credit: false }],
    ]) {
        const { daemon, gw } = await open({ version }, options);
        assert.ok(!daemon.received.some((m) => m.type === 'Extensions'), version);
        assert.equal(gw.credit, null);
        assert.equal(gw.sessionCredit, null);
        assert.deepEqual([...gw.extensions], []);
        const conn = await gw.connect(PEER_B, CHAT);
        assert.equal(conn.credited, false);
        assert.equal(conn.sendCredit, null);
        assert.equal(conn.receiveCredit, null);
        // without credit, everything goes at once and send() says so
        for (let i = 0; i < 5; i++) assert.equal(conn.send(filled(3000)), true);
        assert.equal(daemon.got(conn.id).length, 5);
        await conn.onDrain();
        gw.close();
    }
});

test('offers: a Hello listing extensions without presence gets no Presence, and subscribe() rejects at once', async () => {
    const { daemon, gw } = await open({ version: 'libp2p-websocket/0.5.0 credit' });
    assert.deepEqual([...gw.offers], ['credit']);
    assert.deepEqual(daemon.received, [{ type: 'Extensions', names: 'credit' }]);
    await assert.rejects(gw.subscribe(), /presence is not available: the daemon does not offer it/);
    assert.deepEqual(daemon.received.map((m) => m.type), ['Extensions']);
    // tokens with values and odd spacing count by their names
    const d2 = await open({ version: 'libp2p-websocket/0.6.0  credit  presence future=1 1.0' });
    assert.deepEqual([...d2.gw.offers], ['credit', 'presence', 'future']);
});

test('a refused Extensions leaves the session without credit, and no error event', async () => {
    const daemon = new CreditDaemon({ refuse: true });
    const gw = new Gateway(new daemon.WebSocket('ws://fake'), { storage: null });
    const errors = [];
    gw.addEventListener('error', (e) => errors.push(e.detail));
    await new Promise((resolve) => gw.addEventListener('identify', resolve, { once: true }));
    await gw.listen('/sync');
    assert.equal(gw.credit, null);
    assert.deepEqual(errors, []);
    const conn = await gw.connect(PEER_B, CHAT);
    assert.equal(conn.credited, false);
});

test('the callback API never asks for credit, even when offered', async () => {
    const daemon = new CreditDaemon({ started: false });
    const calls = [];
    const handler = {
        hello(started, version) {
            calls.push(['hello', started, version]);
            libp2p.start('');
        },
        ident() {
            calls.push(['ident']);
        },
    };
    libp2p.startProtocol('ws://fake/libp2p', handler, { WebSocket: daemon.WebSocket });
    await until(() => calls.length === 2, 'ident');
    assert.deepEqual(calls[0], ['hello', false, OFFERS]);
    libp2p.connect(PEER_B, CHAT, true, false);
    await settle();
    libp2p.sendData(0n, filled(5000)); // past any window: no credit, no check
    assert.deepEqual(daemon.received.map((m) => m.type), ['Start', 'Connect', 'Data']);
    assert.equal(daemon.creditOn, false);
});

// ------------------------------------------------------------------ send credit

test('send queues past the stream window, in order, and Credit sends it; framed Data costs 4 more', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await gw.connect(PEER_B, CHAT);
    assert.equal(conn.send(filled(50, 1)), true); // costs 54
    assert.equal(conn.sendCredit, 46);
    assert.equal(gw.sessionCredit, 100000 - 54);
    assert.equal(conn.send(filled(42, 2)), true); // costs 46: exactly what is left
    assert.equal(conn.sendCredit, 0);
    assert.equal(conn.send(filled(0)), false); // an empty frame still costs 4
    assert.equal(conn.send(filled(10, 3)), false);
    assert.equal(conn.bufferedAmount, 10);
    assert.equal(daemon.got(conn.id).length, 2);
    daemon.giveBack(ws, conn.id, 3); // not enough for the empty frame
    await settle();
    assert.equal(daemon.got(conn.id).length, 2);
    assert.equal(conn.sendCredit, 3);
    daemon.giveBack(ws, conn.id, 1);
    await until(() => daemon.got(conn.id).length === 3, 'the empty frame');
    assert.equal(conn.sendCredit, 0);
    daemon.giveBack(ws, conn.id, 13); // 14 needed
    await settle();
    assert.equal(daemon.got(conn.id).length, 3);
    daemon.giveBack(ws, conn.id, 1);
    await until(() => daemon.got(conn.id).length === 4, 'the last frame');
    assert.deepEqual(daemon.got(conn.id).map((c) => [c.length, c[0]]), [[50, 1], [42, 2], [0, undefined], [10, 3]]);
    assert.equal(conn.bufferedAmount, 0);
    assert.equal(conn.sendCredit, 0);
    assert.equal(gw.sessionCredit, 100000 - 100 - 4 - 14 + 18);
    assert.deepEqual(daemon.violations, []);
});

test('send() returns false behind missing credit; drain fires and onDrain() resolves when it went out', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await gw.connect(PEER_B, CHAT);
    await conn.onDrain(); // nothing waits: at once
    const drains = [];
    conn.addEventListener('drain', () => drains.push(conn.bufferedAmount));
    assert.equal(conn.send(filled(96)), true);
    assert.equal(conn.send(filled(96)), false);
    assert.equal(conn.send(filled(96)), false);
    let drained = false;
    const waiting = conn.onDrain().then(() => (drained = true));
    daemon.giveBack(ws, conn.id, 100);
    await until(() => daemon.got(conn.id).length === 2, 'the second frame');
    assert.equal(drained, false);
    assert.deepEqual(drains, []);
    daemon.giveBack(ws, conn.id, 100);
    await waiting;
    assert.deepEqual(drains, [0]);
    assert.equal(conn.send(filled(1)), false); // the window is empty again
    daemon.giveBack(ws, conn.id, 5);
    await until(() => drains.length === 2, 'a second drain');
    assert.deepEqual(daemon.violations, []);
});

test('onDrain() rejects, and queued data is dropped, when the daemon closes the connection', async () => {
    const { daemon, gw, ws } = await open({ W: 10 });
    const conn = await gw.connect(PEER_B, CHAT, { framed: false });
    assert.equal(conn.send(filled(30)), false);
    const drained = conn.onDrain();
    daemon.closeStream(ws, conn.id, 'stream reset');
    await assert.rejects(drained, /connection 0 closed: stream reset/);
    assert.equal(conn.bufferedAmount, 0);
    daemon.giveBack(ws, conn.id, 100); // after the close: the session window only
    await settle();
    assert.equal(sum(daemon.got(conn.id).map((c) => c.length)), 10);
    assert.equal(gw.sessionCredit, 100000 - 10 + 100);
    assert.deepEqual(daemon.violations, []);
});

test('Credit for a closed stream refills the session window only', async () => {
    const { daemon, gw, ws } = await open({ W: 100, S: 150 });
    const a = await gw.connect(PEER_B, CHAT);
    const b = await gw.connect(PEER_B, CHAT);
    a.send(filled(96)); // A's window empty, session 50 left
    a.close();
    assert.deepEqual(daemon.received.at(-1), { type: 'Close', id: a.id });
    assert.equal(b.send(filled(60)), false); // costs 64: short of the session window
    assert.equal(b.sendCredit, 100);
    daemon.giveBack(ws, a.id, 100);
    await until(() => daemon.got(b.id).length === 1, "B's frame");
    assert.equal(a.sendCredit, 0); // closed: its window is gone
    assert.equal(b.sendCredit, 36);
    assert.equal(gw.sessionCredit, 150 - 100 - 64 + 100);
    // an id the session never had, too
    daemon.giveBack(ws, 77n, 14);
    await until(() => gw.sessionCredit === 100, 'the session credit');
    assert.deepEqual(daemon.violations, []);
});

test('close() with data waiting: the data goes first as credit comes, then the Close', async () => {
    const { daemon, gw, ws } = await open({ W: 20 });
    const conn = await gw.connect(PEER_B, CHAT);
    const closes = [];
    conn.addEventListener('close', (e) => closes.push(e.detail));
    conn.send(filled(16, 1));
    conn.send(filled(16, 2));
    conn.send(filled(16, 3));
    conn.close();
    assert.deepEqual(closes, ['closed']);
    assert.equal(conn.closed, true);
    assert.throws(() => conn.send('more'), /closed/);
    assert.equal(gw.connections.size, 0);
    assert.ok(!daemon.received.some((m) => m.type === 'Close'));
    const drained = conn.onDrain();
    daemon.giveBack(ws, conn.id, 20); // still open for the daemon: counts for the stream
    await until(() => daemon.got(conn.id).length === 2, 'the second frame');
    assert.ok(!daemon.received.some((m) => m.type === 'Close'));
    daemon.giveBack(ws, conn.id, 20);
    await drained;
    assert.deepEqual(daemon.received.slice(-2).map((m) => m.type), ['Data', 'Close']);
    assert.deepEqual(daemon.got(conn.id).map((c) => c[0]), [1, 2, 3]);
    assert.deepEqual(daemon.violations, []);
});

test('a closed connection whose data waits: a Connection Closed drops it, and no Close follows', async () => {
    const { daemon, gw, ws } = await open({ W: 20 });
    const conn = await gw.connect(PEER_B, CHAT);
    conn.send(filled(16));
    conn.send(filled(16));
    conn.close();
    const drained = conn.onDrain();
    daemon.closeStream(ws, conn.id, 'stream reset');
    await assert.rejects(drained, /stream reset/);
    daemon.giveBack(ws, conn.id, 20);
    await settle();
    assert.equal(daemon.got(conn.id).length, 1);
    assert.ok(!daemon.received.some((m) => m.type === 'Close'));
    assert.equal(conn.reason, 'closed'); // the page's close came first
    assert.deepEqual(daemon.violations, []);
});

test('when the WebSocket closes, waiting data is dropped: writes and onDrain() reject', async () => {
    const { daemon, gw, ws } = await open({ W: 20 });
    const conn = await gw.connect(PEER_B, CHAT);
    const writer = conn.writable.getWriter();
    await writer.write(filled(16));
    const write = writer.write(filled(16));
    conn.send(filled(8));
    const drained = conn.onDrain();
    daemon.hangUp(ws, 1001, 'daemon shutting down');
    await assert.rejects(write, /gateway closed/);
    await assert.rejects(drained, /gateway closed/);
    assert.equal(conn.bufferedAmount, 0);
    assert.throws(() => conn.send('x'), /closed/);
});

test('an unasked Extensions answer, or Credit without credit, is ignored', async () => {
    const { daemon, gw, ws } = await open({ version: 'libp2p-websocket/0.4.0' });
    const errors = [];
    gw.addEventListener('error', (e) => errors.push(e.detail));
    const conn = await gw.connect(PEER_B, CHAT);
    daemon.send(ws, { type: 'Extensions', names: 'credit stream-window=1 session-window=1 receive-window=1' });
    daemon.send(ws, { type: 'Credit', id: conn.id, bytes: 5 });
    await gw.listen('/sync');
    assert.equal(gw.credit, null);
    assert.deepEqual([...gw.extensions], []);
    assert.equal(conn.send(filled(100)), true);
    assert.deepEqual(errors, []);
});

test('a raw chunk goes in pieces that fit the credit', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await gw.connect(PEER_B, CHAT, { framed: false });
    assert.equal(conn.framed, false);
    const data = Uint8Array.from({ length: 250 }, (_, i) => i);
    assert.equal(conn.send(data), false);
    assert.deepEqual(daemon.got(conn.id).map((c) => c.length), [100]);
    assert.equal(conn.bufferedAmount, 150);
    daemon.giveBack(ws, conn.id, 60);
    await until(() => daemon.got(conn.id).length === 2, 'a piece');
    assert.equal(conn.bufferedAmount, 90);
    daemon.giveBack(ws, conn.id, 1000);
    await until(() => conn.bufferedAmount === 0, 'the rest');
    assert.deepEqual(daemon.got(conn.id).map((c) => c.length), [100, 60, 90]);
    assert.deepEqual(concat(daemon.got(conn.id)), data);
    assert.equal(conn.sendCredit, 100 - 250 + 1060);
    assert.equal(conn.send(new Uint8Array(0)), true); // an empty raw Data costs nothing
    assert.deepEqual(daemon.violations, []);
});

test('a frame larger than the stream window cannot go: send() throws, writable write() rejects', async () => {
    const { daemon, gw } = await open({ W: 100 });
    const conn = await gw.connect(PEER_B, CHAT);
    assert.throws(() => conn.send(filled(97)), RangeError);
    assert.equal(conn.send(filled(96)), true);
    assert.equal(conn.bufferedAmount, 0);
    const writer = conn.writable.getWriter();
    await assert.rejects(writer.write(filled(200)), /more than the stream window/);
    const raw = await gw.connect(PEER_B, CHAT, { framed: false });
    assert.equal(raw.send(filled(500)), false); // raw: goes in pieces
    assert.deepEqual(daemon.violations, []);
});

test('the session window is shared: streams take turns, oldest first, as credit comes', async () => {
    const { daemon, gw, ws } = await open({ W: 1000, S: 100 });
    const a = await gw.connect(PEER_B, CHAT);
    const b = await gw.connect(PEER_B, CHAT);
    const c = await gw.connect(PEER_B, CHAT);
    assert.equal(a.send(filled(96, 0xa1)), true); // the whole session window
    for (let i = 2; i <= 4; i++) a.send(filled(6, 0xa0 + i));
    for (let i = 1; i <= 3; i++) b.send(filled(6, 0xb0 + i));
    c.send(filled(6, 0xc1));
    const order = () => daemon.received.filter((m) => m.type === 'Data').slice(1).map((m) => m.data[0].toString(16));
    daemon.giveBack(ws, a.id, 30); // room for three frames of 10
    await until(() => order().length === 3, 'three frames');
    assert.deepEqual(order(), ['a2', 'b1', 'c1']);
    daemon.giveBack(ws, a.id, 1000);
    await until(() => order().length === 7, 'all of it');
    assert.deepEqual(order(), ['a2', 'b1', 'c1', 'a3', 'b2', 'a4', 'b3']);
    assert.deepEqual(daemon.violations, []);
});

test('a stream short of its own window does not hold the others; one short of the session does', async () => {
    const { daemon, gw, ws } = await open({ W: 50, S: 120 });
    const a = await gw.connect(PEER_B, CHAT);
    const b = await gw.connect(PEER_B, CHAT);
    a.send(filled(46)); // A's window empty, session 70 left
    assert.equal(a.send(filled(10)), false); // waits for A's window
    assert.equal(b.send(filled(46)), true); // B is not held by A: session 20 left
    assert.equal(b.send(filled(30)), false); // B's window has 0
    daemon.giveBack(ws, b.id, 50); // B: window 50, session 70
    await until(() => daemon.got(b.id).length === 2, "B's second frame");
    assert.equal(daemon.got(a.id).length, 1);
    const big = await gw.connect(PEER_B, CHAT);
    assert.equal(big.send(filled(46)), false); // session 36 left: it waits for the session
    assert.equal(b.send(filled(1)), false); // and B, with window to spare, waits behind it
    // A (waiting longer) goes first once its window allows; the big frame is still short
    daemon.giveBack(ws, a.id, 14); // A: 14, session 50
    await until(() => daemon.got(a.id).length === 2, "A's frame");
    await settle();
    assert.equal(gw.sessionCredit, 36);
    assert.equal(daemon.got(big.id).length, 0);
    assert.equal(daemon.got(b.id).length, 2); // B has window, but not before the big frame
    daemon.giveBack(ws, b.id, 14); // session 50: the big frame, then nothing left for B
    await until(() => daemon.got(big.id).length === 1, 'the big frame');
    await settle();
    assert.equal(daemon.got(b.id).length, 2);
    daemon.giveBack(ws, b.id, 5);
    await until(() => daemon.got(b.id).length === 3, "B's last frame");
    assert.equal(b.bufferedAmount + a.bufferedAmount + big.bufferedAmount, 0);
    assert.deepEqual(daemon.violations, []);
});

// ------------------------------------------------------------------ receive credit

test('data handed to data listeners is credited back at once, framed cost included', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await incoming(daemon, gw, ws);
    const seen = [];
    conn.addEventListener('data', (e) => seen.push(text(e.detail)));
    for (const word of ['one', 'two', 'three']) daemon.push(ws, conn.id, bytes(word));
    await until(() => seen.length === 3, 'three chunks');
    await settle();
    assert.deepEqual(daemon.credits(conn.id), [7, 7, 9]);
    assert.equal(conn.receiveCredit, 100);
    assert.equal(daemon.streams.get(conn.id).recvLeft, 100);
});

test('nobody consuming: the daemon sends the receive window, then nothing until a consumer comes', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await incoming(daemon, gw, ws, { framed: false });
    for (let i = 0; i < 10; i++) daemon.push(ws, conn.id, filled(30, i));
    await settle(10);
    assert.equal(conn.receiveCredit, 10); // three chunks in: 90 bytes
    assert.deepEqual(daemon.credits(conn.id), []);
    const seen = [];
    conn.addEventListener('data', (e) => seen.push(e.detail[0]));
    await until(() => seen.length === 10, 'every chunk');
    assert.deepEqual(seen, [...Array(10).keys()]);
    assert.equal(sum(daemon.credits(conn.id)), 300);
    // credit coalesces while chunks wait: the first give-back came once a quarter was owed
    assert.ok(daemon.credits(conn.id).every((n) => n >= 25 || n === 30), String(daemon.credits(conn.id)));
});

test('readable gives credit back only as the reader reads: a reader that stops stops the remote', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await incoming(daemon, gw, ws);
    const reader = conn.readable.getReader();
    for (let i = 0; i < 10; i++) daemon.push(ws, conn.id, filled(21, i)); // 25 bytes of credit each
    await settle(10);
    assert.equal(daemon.streams.get(conn.id).outbox.length, 6); // exactly R = 100 bytes came
    assert.equal(conn.receiveCredit, 0);
    assert.deepEqual(daemon.credits(conn.id), []);
    // one read: 25 bytes back (the others still wait, and a quarter of R is owed)
    assert.equal((await reader.read()).value[0], 0);
    await settle();
    assert.deepEqual(daemon.credits(conn.id), [25]);
    await until(() => daemon.streams.get(conn.id).outbox.length === 5, 'one more chunk sent');
    await settle();
    assert.equal(conn.receiveCredit, 0);
    // no more reads: no more credit, however long
    await settle(20);
    assert.deepEqual(daemon.credits(conn.id), [25]);
    const rest = [];
    for (let i = 1; i < 10; i++) rest.push((await reader.read()).value[0]);
    assert.deepEqual(rest, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await settle();
    assert.equal(sum(daemon.credits(conn.id)), 250);
    assert.equal(conn.receiveCredit, 100);
    // taken the readable is the only consumer: no data events
    let events = 0;
    conn.addEventListener('data', () => events++);
    daemon.push(ws, conn.id, bytes('x'));
    assert.equal(text((await reader.read()).value), 'x');
    assert.equal(events, 0);
});

test('readable: the data first, then it closes on a remote close, or errors on a reset', async () => {
    const { daemon, gw, ws } = await open();
    const a = await incoming(daemon, gw, ws);
    daemon.push(ws, a.id, bytes('last words'));
    daemon.closeStream(ws, a.id);
    await until(() => a.closed, 'the close');
    const chunks = [];
    for await (const chunk of a.readable) chunks.push(text(chunk));
    assert.deepEqual(chunks, ['last words']);

    const b = await incoming(daemon, gw, ws);
    const reader = b.readable.getReader();
    daemon.push(ws, b.id, bytes('partial'));
    daemon.closeStream(ws, b.id, 'stream reset');
    assert.equal(text((await reader.read()).value), 'partial');
    await assert.rejects(reader.read(), (err) => err.reason === 'stream reset' && /stream reset/.test(err.message));
    // iterating the connection ends quietly whatever the reason (see conn.reason)
    const c = await incoming(daemon, gw, ws);
    void c.readable;
    daemon.push(ws, c.id, bytes('z'));
    daemon.closeStream(ws, c.id, 'stream reset');
    const seen = [];
    for await (const chunk of c) seen.push(text(chunk));
    assert.deepEqual(seen, ['z']);
    assert.equal(c.reason, 'stream reset');
});

test('cancelling readable discards what arrives, and still gives its credit back', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await incoming(daemon, gw, ws, { framed: false });
    const readable = conn.readable;
    for (let i = 0; i < 5; i++) daemon.push(ws, conn.id, filled(40));
    await settle(8);
    assert.deepEqual(daemon.credits(conn.id), []);
    await readable.cancel();
    await until(() => daemon.streams.get(conn.id).outbox.length === 0, 'everything sent');
    await settle();
    assert.equal(sum(daemon.credits(conn.id)), 200);
    assert.equal(conn.closed, false);
});

test('async iteration gives credit back as next() takes chunks', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await incoming(daemon, gw, ws);
    const it = conn[Symbol.asyncIterator]();
    for (let i = 0; i < 8; i++) daemon.push(ws, conn.id, filled(21, i));
    await settle(10);
    assert.deepEqual(daemon.credits(conn.id), []); // four chunks wait in the iteration
    assert.equal((await it.next()).value[0], 0);
    await settle();
    assert.deepEqual(daemon.credits(conn.id), [25]);
    const seen = [];
    for await (const chunk of { [Symbol.asyncIterator]: () => it }) {
        seen.push(chunk[0]);
        if (seen.length === 7) break;
    }
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7]);
    await settle();
    assert.equal(sum(daemon.credits(conn.id)), 200);
    // chunks an iteration held when it ended go to the next consumer, credited when taken
    daemon.push(ws, conn.id, bytes('p'));
    daemon.push(ws, conn.id, bytes('q'));
    const it2 = conn[Symbol.asyncIterator]();
    assert.equal(text((await it2.next()).value), 'p');
    await until(() => sum(daemon.credits(conn.id)) === 205, 'credit for p');
    await settle();
    await it2.return(); // q was handed to it2, not taken: it is kept
    const later = await new Promise((resolve) => conn.addEventListener('data', (e) => resolve(text(e.detail)), { once: true }));
    assert.equal(later, 'q');
    await until(() => sum(daemon.credits(conn.id)) === 210, 'credit for q');
});

test('the daemon overrunning the receive credit closes the connection', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await incoming(daemon, gw, ws, { framed: false });
    const errors = [];
    gw.addEventListener('error', (e) => errors.push(e.detail));
    daemon.send(ws, { type: 'Data', id: conn.id, data: filled(100) }); // all of it: fine
    daemon.send(ws, { type: 'Data', id: conn.id, data: filled(1) }); // one byte too many
    const reason = await new Promise((resolve) => conn.addEventListener('close', (e) => resolve(e.detail)));
    assert.match(reason, /overran the receive credit of connection \d+ \(Data costing 1 bytes, 0 left\)/);
    assert.deepEqual(errors, [reason]);
    assert.deepEqual(daemon.received.at(-1), { type: 'Close', id: conn.id });
    assert.equal(gw.connections.size, 0);
});

// ------------------------------------------------------------------ writable

test('writable: write() waits for credit; close() sends Close after the writes', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await gw.connect(PEER_B, CHAT);
    const writer = conn.writable.getWriter();
    await writer.ready;
    await writer.write(filled(60, 1)); // 64: goes at once
    let second = false;
    const pending = writer.write(filled(60, 2)).then(() => (second = true));
    await settle();
    assert.equal(second, false);
    assert.equal(writer.desiredSize, 0); // ready waits too
    daemon.giveBack(ws, conn.id, 64);
    await pending;
    await writer.ready;
    const closing = writer.close();
    await closing;
    assert.deepEqual(daemon.received.slice(-2).map((m) => m.type), ['Data', 'Close']);
    assert.equal(conn.closed, true);
    assert.deepEqual(daemon.got(conn.id).map((c) => c[0]), [1, 2]);
    assert.deepEqual(daemon.violations, []);
});

test('writable: abort() drops what waits and sends Close; a remote close errors it', async () => {
    const { daemon, gw, ws } = await open({ W: 100 });
    const conn = await gw.connect(PEER_B, CHAT);
    const writer = conn.writable.getWriter();
    await writer.write(filled(90));
    const waiting = writer.write(filled(90));
    await settle();
    await writer.abort(new Error('changed my mind'));
    await assert.rejects(waiting);
    assert.deepEqual(daemon.received.at(-1), { type: 'Close', id: conn.id });
    assert.equal(daemon.got(conn.id).length, 1);
    assert.equal(conn.bufferedAmount, 0);

    const other = await gw.connect(PEER_B, CHAT);
    const w2 = other.writable.getWriter();
    daemon.closeStream(ws, other.id, 'stream reset');
    await until(() => other.closed, 'the close');
    await assert.rejects(w2.write(bytes('late')), /stream reset/);
    await assert.rejects(w2.closed, /stream reset/);

    // a plain remote close: the writer's next write fails, closing it is quiet
    const third = await gw.connect(PEER_B, CHAT);
    const w3 = third.writable.getWriter();
    daemon.closeStream(ws, third.id);
    await until(() => third.closed, 'the close');
    await w3.close();
    const fourth = await gw.connect(PEER_B, CHAT);
    const w4 = fourth.writable.getWriter();
    daemon.closeStream(ws, fourth.id);
    await until(() => fourth.closed, 'the close');
    await assert.rejects(w4.write(bytes('late')), /closed by remote/);
});

test('streams without credit: readable delivers what arrives, writable writes at once, pipes work', async () => {
    const { daemon, gw, ws } = await open({ version: 'libp2p-websocket/0.4.0' });
    const conn = await incoming(daemon, gw, ws);
    assert.equal(conn.credited, false);
    // echo what arrives, upper-cased, through a TransformStream
    const upper = new TransformStream({ transform: (chunk, c) => c.enqueue(bytes(text(chunk).toUpperCase())) });
    const piped = conn.readable.pipeThrough(upper).pipeTo(conn.writable);
    daemon.push(ws, conn.id, bytes('hello'));
    daemon.push(ws, conn.id, bytes('world'));
    await until(() => daemon.got(conn.id).length === 2, 'two echoes');
    assert.deepEqual(daemon.got(conn.id).map(text), ['HELLO', 'WORLD']);
    daemon.closeStream(ws, conn.id);
    await piped; // the readable closed, so the pipe closed the writable: the connection
    assert.equal(conn.reason, 'closed by remote');
    assert.deepEqual(daemon.credits(conn.id), []);
});

test('a pipe through credit: a slow consumer holds a fast producer at the window', async () => {
    const { daemon, gw, ws } = await open({ W: 64 });
    const conn = await incoming(daemon, gw, ws, { framed: false });
    let seen = 0;
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    const sink = new WritableStream(
        {
            async write(chunk) {
                seen += chunk.length;
                if (seen >= 64) await gate; // the page stops consuming here
            },
        },
        { highWaterMark: 1 },
    );
    const piped = conn.readable.pipeTo(sink);
    for (let i = 0; i < 40; i++) daemon.push(ws, conn.id, filled(16, i));
    await settle(30);
    const sent = 40 - daemon.streams.get(conn.id).outbox.length;
    // 64 bytes into the sink (4 chunks), one chunk in the sink's queue, 4 more held by credit
    assert.ok(sent <= 9, `the daemon sent ${sent} chunks`);
    release();
    await until(() => daemon.streams.get(conn.id).outbox.length === 0, 'everything');
    daemon.closeStream(ws, conn.id);
    await piped;
    assert.equal(seen, 640);
});
