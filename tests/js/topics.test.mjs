// The pubsub extension's client side (html/protocol/topics.js), against a stand-in
// gateway that records what would be sent.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { kSend } from '../../html/protocol/internal.js';
import { TOPIC_QUEUE, Topics } from '../../html/protocol/topics.js';

function setup() {
    const gateway = new EventTarget();
    gateway.sent = [];
    gateway[kSend] = (msg) => gateway.sent.push(msg);
    const errors = [];
    gateway.addEventListener('error', (e) => errors.push(e.detail));
    return { gateway, topics: new Topics(gateway), errors };
}

const message = (topic, n) => ({
    type: 'TopicMessage', topic, from: '12D3KooWA', seq: BigInt(n), data: Uint8Array.of(n),
});

test('subscribe resolves on Subscribed with the topic, whose peers and messages follow', async () => {
    const { gateway, topics } = setup();
    const pending = topics.subscribe('lobby');
    assert.deepEqual(gateway.sent, [{ type: 'Subscribe', topic: 'lobby' }]);
    assert.equal(topics.handle({ type: 'Subscribed', topic: 'lobby' }), true);
    const topic = await pending;
    assert.equal(topic.name, 'lobby');
    const events = [];
    topic.addEventListener('peer', (e) => events.push(['peer', e.detail.peerID, e.detail.joined]));
    topic.addEventListener('message', (e) => events.push(['message', e.detail.seq]));
    topic.addEventListener('missed', (e) => events.push(['missed', e.detail.count]));
    topics.handle({ type: 'TopicPeer', joined: true, topic: 'lobby', peerID: 'P1' });
    topics.handle(message('lobby', 1));
    topics.handle({ type: 'Missed', topic: 'lobby', count: 3n });
    topics.handle(message('other', 2)); // not subscribed: ignored
    assert.deepEqual(events, [['peer', 'P1', true], ['message', 1n], ['missed', 3]]);
    assert.deepEqual([...topic.peers], ['P1']);
    topics.handle({ type: 'TopicPeer', joined: false, topic: 'lobby', peerID: 'P1' });
    assert.equal(topic.peers.size, 0);
    assert.equal(topics.handle({ type: 'Data' }), false);
});

test('a refused Subscribe rejects; a refusal nobody waits for is an error event', async () => {
    const { topics, errors } = setup();
    const pending = topics.subscribe('t');
    topics.handle({ type: 'TopicRefused', topic: 't', reason: 'the session subscribes to 32 topics already, all it may' });
    await assert.rejects(pending, /32 topics already/);
    topics.handle({ type: 'TopicRefused', topic: 't', reason: 'the node is not started' });
    assert.deepEqual(errors, ['topic t: the node is not started']);
});

test('topics and messages the daemon would refuse for their size throw at once', async () => {
    const { gateway, topics } = setup();
    await assert.rejects(topics.subscribe(''), RangeError);
    await assert.rejects(topics.subscribe('é'.repeat(129)), RangeError); // 258 bytes
    topics.maxMessage = 4;
    assert.throws(() => topics.publish('t', Uint8Array.of(1, 2, 3, 4, 5)), /5 bytes is over the limit of 4/);
    topics.publish('t', 'abcd');
    assert.deepEqual(gateway.sent, [{ type: 'Publish', topic: 't', data: new TextEncoder().encode('abcd') }]);
});

test('the async iterator and the readable give messages in order, and end with the topic', async () => {
    const { gateway, topics } = setup();
    const pending = topics.subscribe('t');
    topics.handle({ type: 'Subscribed', topic: 't' });
    const topic = await pending;
    const iterator = topic[Symbol.asyncIterator]();
    const reader = topic.readable.getReader();
    topics.handle(message('t', 1));
    topics.handle(message('t', 2));
    assert.equal((await iterator.next()).value.seq, 1n);
    assert.equal((await iterator.next()).value.seq, 2n);
    assert.equal((await reader.read()).value.seq, 1n);
    assert.equal((await reader.read()).value.seq, 2n);
    const waiting = iterator.next();
    topic.close();
    assert.deepEqual(await waiting, { done: true, value: undefined });
    assert.equal((await reader.read()).done, true);
    assert.equal(topic.subscribed, false);
    assert.deepEqual(gateway.sent.at(-1), { type: 'Unsubscribe', topic: 't' });
    assert.equal(topics.get('t'), undefined);
});

test('a reader that does not read keeps at most TOPIC_QUEUE messages and counts the rest as missed', async () => {
    const { topics } = setup();
    const pending = topics.subscribe('t');
    topics.handle({ type: 'Subscribed', topic: 't' });
    const topic = await pending;
    let missed = 0;
    topic.addEventListener('missed', (e) => (missed += e.detail.count));
    const iterator = topic[Symbol.asyncIterator]();
    for (let n = 0; n < TOPIC_QUEUE + 10; n++) topics.handle(message('t', n % 256));
    assert.equal(missed, 10);
    assert.equal((await iterator.next()).value.seq, 10n); // the oldest were dropped
});

test('the session ending ends every topic and fails every Subscribe waiting', async () => {
    const { topics } = setup();
    const first = topics.subscribe('a');
    topics.handle({ type: 'Subscribed', topic: 'a' });
    const topic = await first;
    const ended = new Promise((resolve) => topic.addEventListener('close', (e) => resolve(e.detail.reason)));
    const waiting = topics.subscribe('b');
    topics.endAll('session lost');
    assert.equal(await ended, 'session lost');
    await assert.rejects(waiting, /session lost/);
});
