// The pubsub extension (PROTOCOL.md, "Extension: pubsub") through the promise API of
// html/protocol.js, against an in-memory fake daemon: negotiation (pubsub asked for
// only when the Hello offers it, never with {pubsub: false} or from an older daemon),
// gw.subscribe(topic) answered Subscribed or Topic Refused, the Topic's peers, messages
// (events, async iterator, readable) and missed counts, gw.publish() and
// topic.publish() on the wire with the limit from the Extensions answer, Unsubscribe,
// and every topic ending with the gateway. (tests/js/topics.test.mjs covers topics.js
// alone, against a stand-in gateway.)
// Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Gateway, decodeClientMessage, encodeServerMessage } from '../../html/protocol.js';

const PEER_SELF = '12D3KooWHwTKFTbaSelfSelfSelfSelfSelfSelfSelfSelfSelf';
const PEER_B = '12D3KooWLX1Xa4aRBobBobBobBobBobBobBobBobBobBobBobBo';
const WITH_PUBSUB = 'libp2p-websocket/0.7.0 credit presence reachability resume pubsub';
const WITHOUT_PUBSUB = 'libp2p-websocket/0.6.0 credit presence reachability resume';
const bytes = (s) => new TextEncoder().encode(s);
const text = (b) => new TextDecoder().decode(b);
const tick = () => new Promise((resolve) => setImmediate(resolve));

async function until(cond, what = 'condition') {
    for (let i = 0; i < 300; i++) {
        if (cond()) return;
        await tick();
    }
    assert.fail(`timed out waiting for ${what}`);
}

async function settle(n = 6) {
    for (let i = 0; i < n; i++) await tick();
}

// ------------------------------------------------------------------ the fake

// A daemon whose Hello offers `version`'s extensions and answers an Extensions with
// those asked for that it offers (pubsub with its limits). Subscribe is answered
// Subscribed, then a Topic Peer per peer in `peers`, or Topic Refused past maxTopics
// or for a topic in `refuse`. Every client message is recorded.
class PubsubDaemon {
    constructor({ version = WITH_PUBSUB, maxMessage = 1000, maxTopics = 2, refuse = new Map(), peers = [] } = {}) {
        Object.assign(this, { version, maxMessage, maxTopics, refuse, peers });
        this.received = [];
        this.sockets = [];
        this.topics = new Set(); // what the session subscribes to
        this.pubsubOn = false;
        this.seq = 0n;
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
                    daemon.send({ type: 'Hello', started: true, version: daemon.version });
                    daemon.send({ type: 'Identify', public: false, peerID: PEER_SELF, addresses: '[]', key: '' });
                });
            }
            send(data) {
                if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
                const msg = decodeClientMessage(Uint8Array.from(data));
                daemon.received.push(msg);
                daemon.handle(msg);
            }
            close(code = 1000, reason = '') {
                if (this.readyState >= 2) return;
                this.readyState = 2;
                setImmediate(() => daemon.hangUp(code, reason));
            }
        };
    }

    get ws() {
        return this.sockets.at(-1);
    }

    send(msg) {
        const ws = this.ws;
        const raw = encodeServerMessage(msg);
        setImmediate(() => {
            if (ws.readyState !== 1) return;
            ws.dispatchEvent(Object.assign(new Event('message'), { data: raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) }));
        });
    }

    hangUp(code = 1006, reason = '') {
        const ws = this.ws;
        if (ws.readyState === 3) return;
        ws.readyState = 3;
        ws.dispatchEvent(Object.assign(new Event('close'), { code, reason }));
    }

    /** A message of `topic` from `from`, as the network would bring it. */
    message(topic, data, from = PEER_B) {
        this.seq += 1n;
        this.send({ type: 'TopicMessage', topic, from, seq: this.seq, data: typeof data === 'string' ? bytes(data) : data });
    }

    sent(type) {
        return this.received.filter((m) => m.type === type);
    }

    handle(msg) {
        switch (msg.type) {
            case 'Extensions': {
                const offers = new Set(this.version.split(' ').slice(1));
                const asked = msg.names.split(' ').map((t) => t.split('=')[0]);
                const on = [];
                if (asked.includes('presence') && offers.has('presence')) on.push('presence');
                if (asked.includes('pubsub') && offers.has('pubsub')) {
                    this.pubsubOn = true;
                    on.push(`pubsub max-message=${this.maxMessage} max-topics=${this.maxTopics}`);
                }
                return this.send({ type: 'Extensions', names: on.join(' ') });
            }
            case 'Subscribe': {
                const reason = !this.pubsubOn
                    ? 'the session did not turn pubsub on'
                    : this.refuse.get(msg.topic) ??
                      (!this.topics.has(msg.topic) && this.topics.size >= this.maxTopics
                          ? `the session subscribes to ${this.maxTopics} topics already, all it may`
                          : null);
                if (reason) return this.send({ type: 'TopicRefused', topic: msg.topic, reason });
                this.topics.add(msg.topic);
                this.send({ type: 'Subscribed', topic: msg.topic });
                for (const peerID of this.peers) this.send({ type: 'TopicPeer', joined: true, topic: msg.topic, peerID });
                return;
            }
            case 'Unsubscribe':
                this.topics.delete(msg.topic);
                return;
            default:
                return;
        }
    }
}

function connect(daemon, options = {}) {
    return Gateway.connect('ws://fake/libp2p', { WebSocket: daemon.WebSocket, storage: null, sessionStorage: null, ...options });
}

// ------------------------------------------------------------------ negotiation

test('pubsub is asked for when the Hello offers it; the answer sets max-message', async () => {
    const daemon = new PubsubDaemon({ maxMessage: 1000 });
    const gw = await connect(daemon);
    const ext = daemon.sent('Extensions');
    assert.equal(ext.length, 1);
    assert.ok(ext[0].names.split(' ').includes('pubsub'), `asked: ${ext[0].names}`);
    assert.ok(gw.offers.has('pubsub'));
    assert.equal(gw.extensions.get('max-message'), '1000');
    assert.equal(gw.extensions.get('max-topics'), '2');
    assert.throws(() => gw.publish('t', new Uint8Array(1001)), /1001 bytes is over the limit of 1000/);
    gw.publish('t', new Uint8Array(1000)); // exactly the limit goes
    assert.equal(daemon.sent('Publish').length, 1);
    gw.close();
});

test('a Hello without pubsub: not asked for; subscribe(topic) rejects and publish throws, nothing sent', async () => {
    const daemon = new PubsubDaemon({ version: WITHOUT_PUBSUB });
    const gw = await connect(daemon);
    assert.ok(!daemon.sent('Extensions')[0].names.includes('pubsub'));
    assert.equal(gw.extensions.has('pubsub'), false);
    await assert.rejects(gw.subscribe('gem-rush/lobby'), /pubsub is not available/);
    assert.throws(() => gw.publish('gem-rush/lobby', 'x'), /pubsub is not available/);
    assert.equal(gw.topic('gem-rush/lobby'), undefined);
    await settle();
    assert.deepEqual(daemon.received.filter((m) => ['Subscribe', 'Publish'].includes(m.type)), []);
    gw.close();
});

test('{pubsub: false}: not asked for even when offered', async () => {
    const daemon = new PubsubDaemon();
    const gw = await connect(daemon, { pubsub: false });
    const ext = daemon.sent('Extensions');
    assert.equal(ext.length, 1); // still asks for the others it wants
    assert.ok(!ext[0].names.split(' ').includes('pubsub'), `asked: ${ext[0].names}`);
    assert.equal(gw.extensions.has('pubsub'), false);
    await assert.rejects(gw.subscribe('t'), /pubsub is not available/);
    gw.close();
});

test("an original daemon's Hello (no extensions): no Extensions at all, no topics", async () => {
    const daemon = new PubsubDaemon({ version: 'libp2p-websocket/0.1.0' });
    const gw = await connect(daemon);
    assert.equal(daemon.sent('Extensions').length, 0);
    await assert.rejects(gw.subscribe('t'), /pubsub is not available/);
    gw.close();
});

// ------------------------------------------------------------------ topics

test('Subscribed gives a Topic: its peers, messages (event, iterator, readable), missed; publish goes on the wire', async () => {
    const daemon = new PubsubDaemon({ peers: [PEER_B] });
    const gw = await connect(daemon);
    const topic = await gw.subscribe('gem-rush/lobby');
    assert.deepEqual(daemon.sent('Subscribe'), [{ type: 'Subscribe', topic: 'gem-rush/lobby' }]);
    assert.equal(topic.name, 'gem-rush/lobby');
    assert.equal(topic.subscribed, true);
    assert.equal(gw.topic('gem-rush/lobby'), topic);
    await until(() => topic.peers.has(PEER_B), 'the Topic Peer');

    const events = [];
    topic.addEventListener('message', (e) => events.push(['message', text(e.detail.data), e.detail.from, e.detail.seq]));
    topic.addEventListener('missed', (e) => events.push(['missed', e.detail.count]));
    topic.addEventListener('peer', (e) => events.push(['peer', e.detail.peerID, e.detail.joined]));
    const iterator = topic[Symbol.asyncIterator]();
    const reader = topic.readable.getReader();
    daemon.message('gem-rush/lobby', 'one');
    daemon.message('gem-rush/lobby', 'two', PEER_SELF); // this daemon's other sessions
    daemon.message('other/topic', 'not ours');
    daemon.send({ type: 'Missed', topic: 'gem-rush/lobby', count: 298n });
    daemon.send({ type: 'TopicPeer', joined: false, topic: 'gem-rush/lobby', peerID: PEER_B });
    const first = await iterator.next();
    assert.equal(text(first.value.data), 'one');
    assert.equal(first.value.topic, 'gem-rush/lobby');
    assert.equal(first.value.from, PEER_B);
    assert.equal(typeof first.value.seq, 'bigint');
    assert.equal(text((await iterator.next()).value.data), 'two');
    assert.equal(text((await reader.read()).value.data), 'one');
    assert.equal(text((await reader.read()).value.data), 'two');
    await until(() => events.length === 4, 'the events');
    assert.deepEqual(events, [
        ['message', 'one', PEER_B, 1n],
        ['message', 'two', PEER_SELF, 2n],
        ['missed', 298],
        ['peer', PEER_B, false],
    ]);
    assert.equal(topic.peers.size, 0);

    topic.publish('hello');
    gw.publish('gem-rush/lobby', Uint8Array.of(0, 1, 0xfe, 0xff));
    gw.publish('elsewhere', 'no need to subscribe');
    const published = daemon.sent('Publish').map((m) => [m.topic, [...m.data]]);
    assert.deepEqual(published, [
        ['gem-rush/lobby', [...bytes('hello')]],
        ['gem-rush/lobby', [0, 1, 0xfe, 0xff]],
        ['elsewhere', [...bytes('no need to subscribe')]],
    ]);

    // Subscribing again gives the same Topic.
    assert.equal(await gw.subscribe('gem-rush/lobby'), topic);

    // close(): Unsubscribe, the readers end, later messages are dropped.
    const closed = new Promise((resolve) => topic.addEventListener('close', (e) => resolve(e.detail.reason)));
    const waiting = iterator.next();
    topic.close();
    assert.equal(await closed, 'unsubscribed');
    assert.deepEqual(await waiting, { done: true, value: undefined });
    assert.equal((await reader.read()).done, true);
    assert.equal(topic.subscribed, false);
    assert.equal(gw.topic('gem-rush/lobby'), undefined);
    assert.deepEqual(daemon.sent('Unsubscribe'), [{ type: 'Unsubscribe', topic: 'gem-rush/lobby' }]);
    daemon.message('gem-rush/lobby', 'late');
    await settle();
    assert.equal(events.filter((e) => e[0] === 'message').length, 2);
    gw.close();
});

test('Topic Refused rejects the subscribe with its reason; the others go on', async () => {
    const daemon = new PubsubDaemon({ maxTopics: 2, refuse: new Map([['forbidden', 'the node is not started']]) });
    const gw = await connect(daemon);
    await assert.rejects(gw.subscribe('forbidden'), /topic forbidden: the node is not started/);
    const [a, b] = await Promise.all([gw.subscribe('a'), gw.subscribe('b')]);
    await assert.rejects(gw.subscribe('c'), /subscribes to 2 topics already, all it may/);
    assert.equal(gw.topic('c'), undefined);
    assert.equal(a.subscribed && b.subscribed, true);
    const got = [];
    b.addEventListener('message', (e) => got.push(text(e.detail.data)));
    daemon.message('b', 'still here');
    await until(() => got.length === 1, 'the message of b');
    // A refusal nobody waits for (a Publish) is an error event on the gateway.
    const errors = [];
    gw.addEventListener('error', (e) => errors.push(e.detail));
    daemon.send({ type: 'TopicRefused', topic: 'a', reason: 'the node is not started' });
    await until(() => errors.length === 1, 'the error event');
    assert.equal(errors[0], 'topic a: the node is not started');
    // Topics and messages the daemon would refuse for their size throw before sending.
    await assert.rejects(gw.subscribe(''), RangeError);
    await assert.rejects(gw.subscribe('x'.repeat(257)), RangeError);
    assert.throws(() => gw.publish('x'.repeat(257), 'data'), RangeError);
    gw.close();
});

test('every topic ends with the gateway, and a subscribe under way fails', async () => {
    const daemon = new PubsubDaemon();
    const gw = await connect(daemon);
    const topic = await gw.subscribe('gem-rush/state/abc');
    const ended = new Promise((resolve) => topic.addEventListener('close', (e) => resolve(e.detail.reason)));
    const iterator = topic[Symbol.asyncIterator]();
    const next = iterator.next();
    // A Subscribe the daemon never answers: the gateway ends first.
    const handle = daemon.handle.bind(daemon);
    daemon.handle = (msg) => (msg.type === 'Subscribe' ? undefined : handle(msg));
    const pending = gw.subscribe('never-answered');
    await settle();
    daemon.hangUp(1006, 'gone');
    assert.match(await ended, /gateway closed/);
    assert.deepEqual(await next, { done: true, value: undefined });
    assert.equal(topic.subscribed, false);
    await assert.rejects(pending, /never-answered: gateway closed/);
    assert.equal(gw.topic('gem-rush/state/abc'), undefined);
    assert.throws(() => topic.publish('after'), /not open/); // nowhere to send it
});
