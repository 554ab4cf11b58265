// The resume extension (PROTOCOL.md, "Extension: resume") in the promise API of
// html/protocol.js: negotiation, numbering and Acks, the resend after Resumed, the
// backoff and `lost` once the grace period is over, Resume Refused, and a reloaded page
// taking its listeners back through sessionStorage. An in-memory fake daemon numbers,
// keeps and replays its messages the way the real one does, and records exactly what
// each stream got, so a lost or doubled message shows.
// Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import libp2p, {
    Gateway,
    RESUME_STORAGE_NAME,
    decodeClientMessage,
    encodeServerMessage,
} from '../../html/protocol.js';

const PEER_SELF = '12D3KooWHwTKFTbaSelfSelfSelfSelfSelfSelfSelfSelfSelf';
const PEER_B = '12D3KooWLX1Xa4aRBobBobBobBobBobBobBobBobBobBobBobBo';
const CHAT = '/libp2p-websocket/chat/1.0.0';
const OFFERS = 'libp2p-websocket/0.6.0 credit presence reachability resume';
const URL_ = 'ws://fake/libp2p';
const text = (b) => new TextDecoder().decode(b);
const bytes = (s) => new TextEncoder().encode(s);
const tick = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(cond, what = 'condition', ms = 3000) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
        if (cond()) return;
        await tick();
    }
    assert.fail(`timed out waiting for ${what}`);
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
    removeItem(k) {
        this.map.delete(k);
    }
    copy() {
        return new MemoryStorage(Object.fromEntries(this.map));
    }
}

// ------------------------------------------------------------------ the fake

let tokens = 0;

// A daemon with the resume extension (and credit, without its checks). A session
// outlives its socket; a socket to ?resume=T(&received=N) takes it back. Numbered
// server messages are kept until the page's Ack, and sent again after N on resume.
class ResumeDaemon {
    constructor({ version = OFFERS, grace = 30, started = true } = {}) {
        Object.assign(this, { version, grace, started });
        this.sockets = []; // every socket, in order, with .url
        this.sessions = new Map(); // token -> session
        this.received = []; // [session, message] for every client message taken
        this.acks = []; // the counts of the page's Acks
        this.down = false; // new sockets fail at once
        this.nextId = 0n;
        const daemon = this;
        this.WebSocket = class FakeWebSocket extends EventTarget {
            constructor(url) {
                super();
                this.url = url;
                this.readyState = 0;
                this.binaryType = 'blob';
                this.lose = false; // what the page sends is lost on the way
                daemon.sockets.push(this);
                setImmediate(() => {
                    if (daemon.down) return daemon.hangUp(this);
                    this.readyState = 1;
                    this.dispatchEvent(new Event('open'));
                    daemon.opened(this);
                });
            }
            send(data) {
                if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
                if (this.lose) return;
                daemon.fromPage(this, decodeClientMessage(Uint8Array.from(data)));
            }
            close(code = 1000, reason = '') {
                if (this.readyState >= 2) return;
                this.readyState = 2;
                setImmediate(() => daemon.hangUp(this, code, reason));
            }
        };
    }

    raw(ws, msg) {
        const b = encodeServerMessage(msg);
        setImmediate(() => {
            if (ws.readyState !== 1) return; // lost in flight
            ws.dispatchEvent(Object.assign(new Event('message'), { data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) }));
        });
    }

    hangUp(ws, code = 1006, reason = '') {
        if (ws.readyState === 3) return;
        ws.readyState = 3;
        const s = ws.session;
        if (s?.ws === ws) s.ws = null; // detached: the session waits
        ws.dispatchEvent(Object.assign(new Event('close'), { code, reason }));
    }

    /** Cuts the session's socket: both sides see it end, what is in flight is lost. */
    cut(s) {
        this.hangUp(s.ws);
    }

    /** The session ends (grace over): its token is refused from now on. */
    expire(s) {
        this.sessions.delete(s.token);
    }

    newToken() {
        return `T${++tokens}`.padEnd(43, 'x');
    }

    opened(ws) {
        const q = new URL(ws.url).searchParams;
        const token = q.get('resume');
        const s = token ? this.sessions.get(token) : null;
        if (s) return this.attach(s, ws, q.has('received') ? Number(q.get('received')) : null);
        const fresh = { ws, on: false, token: '', log: [], first: 1, numbered: false, taken: 0, listeners: new Set(), streams: new Map(), got: [] };
        ws.session = fresh;
        this.raw(ws, { type: 'Hello', started: this.started, version: this.version });
        if (token) this.raw(ws, { type: 'ResumeRefused', reason: 'no session to resume with that token' });
        if (this.started) this.raw(ws, this.identify());
        this.last = fresh;
    }

    identify() {
        return { type: 'Identify', public: false, peerID: PEER_SELF, addresses: '[]', key: '' };
    }

    attach(s, ws, received) {
        this.sessions.delete(s.token);
        s.token = this.newToken();
        this.sessions.set(s.token, s);
        if (s.ws) this.hangUp(s.ws);
        s.ws = ws;
        ws.session = s;
        if (received === null) {
            // a reloaded page: streams closed, numbering from 1 again
            s.log = [];
            s.first = 1;
            s.taken = 0;
            s.streams.clear();
        }
        this.raw(ws, { type: 'Resumed', count: BigInt(s.taken), token: s.token });
        if (received === null) {
            this.send(s, this.identify());
            for (const protocol of s.listeners) this.send(s, { type: 'Listening', protocol });
            return;
        }
        this.ackLog(s, received);
        for (const msg of s.log) this.raw(ws, msg);
    }

    ackLog(s, count) {
        while (s.first <= count && s.log.length > 0) {
            s.log.shift();
            s.first++;
        }
    }

    /** A numbered message (once resume is on), kept until acknowledged. */
    send(s, msg) {
        if (s.numbered) s.log.push(msg);
        if (s.ws) this.raw(s.ws, msg);
    }

    /** The daemon's Ack of everything it took. */
    ack(s) {
        if (s.ws) this.raw(s.ws, { type: 'Ack', count: BigInt(s.taken) });
    }

    fromPage(ws, msg) {
        const s = ws.session;
        if (msg.type === 'Ack') {
            this.acks.push(Number(msg.count));
            return this.ackLog(s, Number(msg.count));
        }
        if (s.on) s.taken++;
        this.received.push([s, msg]);
        switch (msg.type) {
            case 'Start':
                return this.send(s, this.identify());
            case 'Extensions': {
                const asked = msg.names.split(' ');
                const on = [];
                if (asked.includes('credit')) on.push('credit stream-window=1000 session-window=100000 receive-window=1000');
                if (asked.includes('resume') || s.on) {
                    if (!s.on) {
                        s.token = this.newToken();
                        this.sessions.set(s.token, s);
                    }
                    on.push(`resume token=${s.token} grace=${this.grace}`);
                }
                this.send(s, { type: 'Extensions', names: on.join(' ') });
                if (on.some((t) => t.startsWith('resume'))) s.on = s.numbered = true;
                return undefined;
            }
            case 'Listen':
                s.listeners.add(msg.protocol);
                return this.send(s, { type: 'Listening', protocol: msg.protocol });
            case 'Connect': {
                const id = this.nextId++;
                s.streams.set(id, []);
                return this.send(s, { type: 'PeerConnection', id, peerID: PEER_B, protocol: msg.protocol });
            }
            case 'Data':
                s.got.push(text(msg.data));
                return undefined;
            default:
                return undefined;
        }
    }

    /** A remote peer opens a stream to the session's listener. */
    incoming(s, protocol) {
        const id = this.nextId++;
        s.streams.set(id, []);
        this.send(s, { type: 'ListenerConnection', id, peerID: PEER_B, protocol });
        return id;
    }

    data(s, id, str) {
        this.send(s, { type: 'Data', id, data: bytes(str) });
    }

    clientTypes(s) {
        return this.received.filter(([x]) => x === s).map(([, m]) => m.type);
    }
}

async function open(daemonOptions = {}, gatewayOptions = {}) {
    const daemon = new ResumeDaemon(daemonOptions);
    const sessionStorage = gatewayOptions.sessionStorage ?? new MemoryStorage();
    const gw = await Gateway.connect(URL_, { WebSocket: daemon.WebSocket, storage: null, sessionStorage, ...gatewayOptions });
    return { daemon, gw, s: daemon.last, sessionStorage };
}

function events(gw, ...types) {
    const seen = [];
    for (const type of types) gw.addEventListener(type, (e) => seen.push([type, e.detail]));
    return seen;
}

// ------------------------------------------------------------------ negotiation

test('resume is asked for when offered, and its token kept in sessionStorage', async () => {
    const { daemon, gw, s, sessionStorage } = await open();
    assert.deepEqual(daemon.received[0][1], { type: 'Extensions', names: 'credit reachability resume' });
    assert.equal(gw.extensions.get('resume'), '');
    assert.deepEqual(gw.resume, { token: s.token, grace: 30, received: 0, unacked: 1 }); // the Presence opt-in
    assert.deepEqual(JSON.parse(sessionStorage.getItem(RESUME_STORAGE_NAME)), { token: s.token, url: URL_, page: '', grace: 30, version: OFFERS });
    assert.equal(gw.disconnected, false);
    const closed = new Promise((resolve) => gw.addEventListener('close', (e) => resolve(e.detail)));
    gw.close();
    assert.equal((await closed).code, 1000, 'close() says the page is done (the daemon ends the session at once)');
    assert.equal(sessionStorage.getItem(RESUME_STORAGE_NAME), null, 'a page that closes on purpose leaves nothing to reclaim');
});

test('not asked for when not offered, or with {resume: false}; a node not started gets Extensions before Start', async () => {
    for (const [version, options] of [['libp2p-websocket/0.6.0 credit presence', {}], [OFFERS, { resume: false }]]) {
        const { daemon, gw, sessionStorage } = await open({ version }, options);
        const asked = daemon.received.filter(([, m]) => m.type === 'Extensions').map(([, m]) => m.names);
        assert.ok(asked.every((n) => !n.includes('resume')), `${version} ${JSON.stringify(options)}: ${asked}`);
        assert.equal(gw.resume, null);
        assert.equal(sessionStorage.getItem(RESUME_STORAGE_NAME), null);
    }
    const { daemon, gw } = await open({ started: false });
    assert.deepEqual(daemon.received.slice(0, 2).map(([, m]) => m.type), ['Extensions', 'Start']);
    assert.equal(daemon.last.taken, 2, 'Start and the opt-in are numbered');
    assert.equal(gw.resume.received, 1, 'the Identify after the answer is numbered');
});

test('the callback API never asks for resume, even when offered', async () => {
    const daemon = new ResumeDaemon({ started: false });
    const calls = [];
    libp2p.startProtocol(URL_, {
        hello(started, version) {
            calls.push(['hello', version]);
            libp2p.start('');
        },
        ident() {
            calls.push(['ident']);
        },
    }, { WebSocket: daemon.WebSocket });
    await until(() => calls.length === 2, 'ident');
    assert.deepEqual(calls[0], ['hello', OFFERS]);
    libp2p.listen(CHAT, true);
    await until(() => daemon.received.length === 2, 'the Listen');
    assert.deepEqual(daemon.received.map(([, m]) => m.type), ['Start', 'Listen']);
    assert.equal(daemon.acks.length, 0);
});

// ------------------------------------------------------------------ numbering and acks

test('numbered messages are kept until the daemon acks them; the page acks every 16, or 100 ms after', async () => {
    const { daemon, gw, s } = await open();
    const conn = await gw.connect(PEER_B, CHAT);
    for (let i = 0; i < 5; i++) conn.send(`m${i}`);
    assert.equal(gw.resume.unacked, 1 + 1 + 5); // opt-in, Connect, five Data
    assert.equal(s.taken, 7);
    daemon.ack(s);
    await until(() => gw.resume.unacked === 0, 'the Ack to drop them');

    const got = [];
    conn.addEventListener('data', (e) => got.push(text(e.detail)));
    const before = gw.resume.received; // the answer is not counted; what came after is
    for (let i = 0; i < 40; i++) daemon.data(s, conn.id, `d${i}`);
    await until(() => got.length === 40, 'forty Data');
    assert.equal(gw.resume.received, before + 40);
    // During the burst, an Ack every 16 messages...
    const burst = daemon.acks.filter((n) => n > before);
    assert.ok(burst.length >= 2 && burst[1] - burst[0] === 16, `Acks every 16: ${daemon.acks}`);
    await sleep(150);
    assert.equal(daemon.acks.at(-1), gw.resume.received, 'the last one acked within 100 ms');
    assert.ok(daemon.acks.every((n, i) => i === 0 || n > daemon.acks[i - 1]), 'Acks only grow');
    assert.deepEqual(s.log, [], 'the daemon dropped what the page acked');
});

// ------------------------------------------------------------------ resuming

test('a drop: disconnected, a resume with received=N, the unacked rest sent again, resumed; nothing lost or doubled', async () => {
    const { daemon, gw, s } = await open();
    const seen = events(gw, 'disconnected', 'resumed', 'lost', 'close');
    const conn = await gw.connect(PEER_B, CHAT);
    const got = [];
    conn.addEventListener('data', (e) => got.push(text(e.detail)));
    conn.send('a1');
    daemon.data(s, conn.id, 'b1');
    await until(() => got.length === 1, 'b1');
    // What each side sends now is lost on the way: the page's, and the daemon's.
    s.ws.lose = true;
    conn.send('a2');
    conn.send('a3');
    daemon.data(s, conn.id, 'b2');
    daemon.cut(s);
    daemon.data(s, conn.id, 'b3'); // while detached
    await until(() => seen.length === 1, 'disconnected');
    assert.equal(seen[0][0], 'disconnected');
    assert.equal(gw.disconnected, true);
    assert.equal(gw.closed, false);
    // Written while disconnected: waits (credit), goes on resume, then drain.
    assert.equal(conn.send('a4'), false);
    assert.equal(conn.bufferedAmount, 2);
    const drained = conn.onDrain();
    await until(() => seen.length === 2, 'resumed');
    assert.equal(seen[1][0], 'resumed');
    assert.equal(seen[1][1].attempts, 1);
    const url = new URL(daemon.sockets.at(-1).url);
    assert.equal(url.searchParams.get('received'), String(gw.resume.received - 2), 'received=N: what the page had before the drop');
    await drained;
    await until(() => got.length === 3 && s.got.length === 4, 'everything');
    assert.deepEqual(got, ['b1', 'b2', 'b3']);
    assert.deepEqual(s.got, ['a1', 'a2', 'a3', 'a4']);
    assert.equal(gw.disconnected, false);
    assert.equal(conn.closed, false);
    assert.equal(gw.resume.token, s.token, 'the new token');
    // and again: a second drop resumes with the new token
    daemon.cut(s);
    await until(() => seen.length === 4, 'the second resume');
    conn.send('a5');
    daemon.data(s, conn.id, 'b4');
    await until(() => got.length === 4 && s.got.length === 5, 'after the second resume');
    assert.deepEqual(got, ['b1', 'b2', 'b3', 'b4']);
    assert.deepEqual(s.got, ['a1', 'a2', 'a3', 'a4', 'a5']);
    assert.deepEqual(seen.map(([t]) => t), ['disconnected', 'resumed', 'disconnected', 'resumed']);
});

test('a listen() pending across a drop resolves after the resume', async () => {
    const { daemon, gw, s } = await open();
    s.ws.lose = true;
    const listening = gw.listen(CHAT);
    daemon.cut(s);
    assert.equal(await listening, CHAT);
    assert.equal(daemon.clientTypes(s).filter((t) => t === 'Listen').length, 1, 'the Listen went once');
});

test('backoff while the daemon is unreachable, then lost once the grace period is over', async () => {
    const { daemon, gw, s, sessionStorage } = await open({ grace: 1 });
    const seen = events(gw, 'disconnected', 'resumed', 'lost', 'close');
    const conn = await gw.connect(PEER_B, CHAT);
    const reasons = [];
    conn.addEventListener('close', (e) => reasons.push(e.detail));
    const opened = daemon.sockets.length;
    daemon.down = true;
    const t0 = Date.now();
    daemon.cut(s);
    const pending = gw.listen('/later').then(
        () => 'resolved',
        (err) => err,
    );
    await until(() => seen.some(([t]) => t === 'lost'), 'lost', 3000);
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 1600, `lost after ${took} ms, the grace being 1 s`);
    const attempts = daemon.sockets.length - opened;
    assert.ok(attempts >= 3 && attempts <= 5, `${attempts} attempts in 1 s (100 ms doubling, jittered)`);
    assert.ok(daemon.sockets.slice(opened).every((ws) => ws.url.includes(`resume=${s.token}`)));
    assert.deepEqual(seen.map(([t]) => t), ['disconnected', 'lost', 'close']);
    assert.match(seen[1][1].reason, /within 1 s/);
    assert.deepEqual(reasons, [`session lost: ${seen[1][1].reason}`]);
    assert.match((await pending).message, /session lost/);
    assert.equal(gw.closed, true);
    assert.throws(() => conn.send('late'), /closed/);
    assert.equal(sessionStorage.getItem(RESUME_STORAGE_NAME), null);
});

test('Resume Refused: lost at once, with the daemon\'s reason', async () => {
    const { daemon, gw, s } = await open();
    const seen = events(gw, 'disconnected', 'resumed', 'lost', 'close');
    const opened = daemon.sockets.length;
    daemon.expire(s);
    daemon.cut(s);
    await until(() => seen.length === 3, 'lost and close');
    assert.deepEqual(seen.map(([t]) => t), ['disconnected', 'lost', 'close']);
    assert.equal(seen[1][1].reason, 'no session to resume with that token');
    assert.equal(daemon.sockets.length, opened + 1, 'one attempt');
    await until(() => daemon.sockets.at(-1).readyState === 3, 'the refused socket to close');
});

test('close() while resuming stops the attempts', async () => {
    const { daemon, gw, s } = await open();
    const seen = events(gw, 'disconnected', 'resumed', 'lost', 'close');
    daemon.down = true;
    daemon.cut(s);
    await until(() => seen.length === 1, 'disconnected');
    gw.close();
    assert.deepEqual(seen.map(([t]) => t), ['disconnected', 'close']);
    const n = daemon.sockets.length;
    await sleep(300);
    assert.equal(daemon.sockets.length, n, 'no attempt after close()');
});

// ------------------------------------------------------------------ a reloaded page

test('a reloaded page takes its listeners back: listen() resolves without a Listen, connections reach it', async () => {
    const { daemon, gw, s, sessionStorage } = await open();
    await gw.listen(CHAT);
    const conn = await gw.connect(PEER_B, '/other');
    // The page reloads: what it stored survives, the old page and its socket do not.
    const reloaded = sessionStorage.copy();
    const oldToken = s.token;
    gw.close(1001); // as the browser closes it when the page unloads
    await until(() => gw.closed, 'the old page gone');
    assert.equal(conn.closed, true);

    const mark = daemon.received.length;
    const gw2 = await Gateway.connect(URL_, { WebSocket: daemon.WebSocket, storage: null, sessionStorage: reloaded });
    const url = new URL(daemon.sockets.at(-1).url);
    assert.equal(url.searchParams.get('resume'), oldToken);
    assert.equal(url.searchParams.has('received'), false);
    assert.equal(gw2.peerID, PEER_SELF);
    assert.ok(gw2.listening.has(CHAT));
    assert.equal(gw2.resume.token, s.token);
    assert.notEqual(s.token, oldToken);
    assert.equal(JSON.parse(reloaded.getItem(RESUME_STORAGE_NAME)).token, s.token, 'the new token is stored');
    assert.ok(gw2.credit, 'credit windows from the repeated answer');
    const listensBefore = daemon.clientTypes(s).filter((t) => t === 'Listen').length;
    assert.equal(await gw2.listen(CHAT), CHAT);
    assert.equal(daemon.clientTypes(s).filter((t) => t === 'Listen').length, listensBefore, 'no Listen sent again');
    const incoming = new Promise((resolve) => gw2.addEventListener('connection', (e) => resolve(e.detail), { once: true }));
    const id = daemon.incoming(s, CHAT);
    const got = await incoming;
    assert.equal(got.id, id);
    got.send('hi');
    await until(() => s.got.includes('hi'), 'data on the reclaimed listener');
    // Numbering started again from 1 both ways: the daemon took every message since the
    // reload; the page counted Identify, Listening, the answer, the Listener Connection.
    assert.equal(s.taken, daemon.received.length - mark);
    assert.equal(gw2.resume.received, 4);
});

test('a reload the daemon refuses goes on as a new session; a live gateway\'s token is not taken by another', async () => {
    const daemon = new ResumeDaemon();
    const stale = new MemoryStorage({ [RESUME_STORAGE_NAME]: JSON.stringify({ token: 'gone', url: URL_, page: '', grace: 30, version: OFFERS }) });
    const errors = [];
    const gw = await Gateway.connect(URL_, { WebSocket: daemon.WebSocket, storage: null, sessionStorage: stale });
    gw.addEventListener('error', (e) => errors.push(e.detail));
    assert.equal(new URL(daemon.sockets[0].url).searchParams.get('resume'), 'gone');
    assert.equal(gw.resume.token, daemon.last.token);
    assert.equal(JSON.parse(stale.getItem(RESUME_STORAGE_NAME)).token, daemon.last.token);
    assert.equal(await gw.listen(CHAT), CHAT);
    // A second gateway of the same page does not take the first one's session.
    const gw2 = await Gateway.connect(URL_, { WebSocket: daemon.WebSocket, storage: null, sessionStorage: stale });
    assert.equal(new URL(daemon.sockets.at(-1).url).searchParams.has('resume'), false);
    assert.notEqual(gw2.resume.token, gw.resume.token);
    // An entry for another URL or page is not used either.
    const other = new MemoryStorage({ [RESUME_STORAGE_NAME]: JSON.stringify({ token: gw2.resume.token, url: 'ws://elsewhere/libp2p', page: '' }) });
    gw2.close();
    await Gateway.connect(URL_, { WebSocket: daemon.WebSocket, storage: null, sessionStorage: other });
    assert.equal(new URL(daemon.sockets.at(-1).url).searchParams.has('resume'), false);
    assert.deepEqual(errors, []);
});

test('a reloaded page that cannot reach the daemon keeps the stored token for its next try', async () => {
    const { daemon, gw, s, sessionStorage } = await open();
    await gw.listen(CHAT);
    const reloaded = sessionStorage.copy();
    gw.close(1001);
    await until(() => gw.closed, 'the old page gone');
    daemon.down = true;
    await assert.rejects(Gateway.connect(URL_, { WebSocket: daemon.WebSocket, storage: null, sessionStorage: reloaded }), /closed before/);
    assert.equal(JSON.parse(reloaded.getItem(RESUME_STORAGE_NAME)).token, s.token, 'still stored');
    daemon.down = false;
    const gw2 = await Gateway.connect(URL_, { WebSocket: daemon.WebSocket, storage: null, sessionStorage: reloaded });
    assert.ok(gw2.listening.has(CHAT), 'the second try took the session back');
});

