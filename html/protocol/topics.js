// topics.js: the pubsub extension (PROTOCOL.md, "Extension: pubsub") on the client
// side: a Gateway's topics (Topic: events, an async iterator and a ReadableStream of
// messages, the peers on it) and the answers a Subscribe waits for (Topics).

'use strict';

import { fire, kSend } from './internal.js';

/** Unread messages a Topic keeps for its iterators and readables, at most. */
export const TOPIC_QUEUE = 1024;
/** The longest topic name, in UTF-8 bytes. */
export const MAX_TOPIC_LEN = 256;

function checkTopic(name) {
    const len = typeof name === 'string' ? new TextEncoder().encode(name).length : 0;
    if (len < 1 || len > MAX_TOPIC_LEN) {
        throw new RangeError(`a topic is 1 to ${MAX_TOPIC_LEN} bytes of UTF-8, got ${JSON.stringify(name)}`);
    }
}

/**
 * One topic the session subscribes to. Events: `message` (detail: {topic, from, seq,
 * data}; `from` the publisher's peer id, `seq` a BigInt, `data` a Uint8Array), `peer`
 * (detail: {peerID, joined}), `missed` (detail: {count}: messages the daemon, or this
 * Topic's queue, dropped because the page did not take them in time), `close` (detail:
 * {reason}). `for await (const m of topic)` and `topic.readable` give the messages
 * too (each reader sees those that arrive after it started; at most TOPIC_QUEUE wait
 * unread, older ones are dropped and counted as missed).
 */
export class Topic extends EventTarget {
    #topics;
    #peers = new Set();
    #readers = new Set(); // each: {queue, wake}
    #closed = null;

    constructor(topics, name) {
        super();
        this.#topics = topics;
        /** The topic's name. */
        this.name = name;
    }

    /** Base58 ids of the peers known to be on the topic (other than this daemon's node). */
    get peers() {
        return new Set(this.#peers);
    }

    /** Whether the session still subscribes (false after close() or when the session ended). */
    get subscribed() {
        return this.#closed === null;
    }

    /** Publishes `data` (bytes or a string) on this topic. */
    publish(data) {
        this.#topics.publish(this.name, data);
    }

    /** Unsubscribes: no message follows. */
    close() {
        if (this.#closed !== null) return;
        this.#topics.unsubscribe(this.name);
        this._end('unsubscribed');
    }

    [Symbol.asyncIterator]() {
        const reader = this.#reader();
        return {
            next: () => reader.next(),
            return: () => {
                reader.stop();
                return Promise.resolve({ done: true, value: undefined });
            },
            [Symbol.asyncIterator]() {
                return this;
            },
        };
    }

    /** A ReadableStream of the messages from now on. */
    get readable() {
        const reader = this.#reader();
        return new ReadableStream(
            {
                async pull(controller) {
                    const { done, value } = await reader.next();
                    if (done) controller.close();
                    else controller.enqueue(value);
                },
                cancel() {
                    reader.stop();
                },
            },
            { highWaterMark: 0 },
        );
    }

    #reader() {
        const r = { queue: [], wake: null };
        this.#readers.add(r);
        const topic = this;
        return {
            next() {
                if (r.queue.length > 0) return Promise.resolve({ done: false, value: r.queue.shift() });
                if (topic.#closed !== null || !topic.#readers.has(r)) {
                    return Promise.resolve({ done: true, value: undefined });
                }
                return new Promise((resolve) => {
                    r.wake = resolve;
                });
            },
            stop() {
                topic.#readers.delete(r);
                r.wake?.({ done: true, value: undefined });
                r.wake = null;
            },
        };
    }

    // ---------------------------------------------------------------- from Topics

    _message(message) {
        fire(this, 'message', message);
        let dropped = 0;
        for (const r of this.#readers) {
            if (r.wake) {
                const wake = r.wake;
                r.wake = null;
                wake({ done: false, value: message });
                continue;
            }
            r.queue.push(message);
            if (r.queue.length > TOPIC_QUEUE) {
                r.queue.shift();
                dropped = 1;
            }
        }
        if (dropped) fire(this, 'missed', { count: dropped });
    }

    _peer(peerID, joined) {
        if (joined) this.#peers.add(peerID);
        else this.#peers.delete(peerID);
        fire(this, 'peer', { peerID, joined });
    }

    _missed(count) {
        fire(this, 'missed', { count });
    }

    _end(reason) {
        if (this.#closed !== null) return;
        this.#closed = reason;
        this.#topics.forget(this.name, this);
        for (const r of this.#readers) {
            r.wake?.({ done: true, value: undefined });
            r.wake = null;
        }
        fire(this, 'close', { reason });
    }
}

/**
 * A Gateway's topics: sends Subscribe, Unsubscribe and Publish through
 * `gateway[kSend]`, and takes the daemon's answers (handle()). A refused Publish, or
 * a refusal no Subscribe waits for, is an `error` event on the gateway.
 */
export class Topics {
    /** The largest message the daemon takes (its Extensions answer's max-message). */
    maxMessage = 64 * 1024;
    #gateway;
    #topics = new Map(); // name -> Topic
    #waiting = new Map(); // name -> [{resolve, reject}], in the order sent

    constructor(gateway) {
        this.#gateway = gateway;
    }

    /** Subscribes to `name`; resolves with its Topic (the same one if already subscribed). */
    subscribe(name) {
        try {
            checkTopic(name);
        } catch (e) {
            return Promise.reject(e);
        }
        return new Promise((resolve, reject) => {
            const waiting = this.#waiting.get(name) ?? [];
            waiting.push({ resolve, reject });
            this.#waiting.set(name, waiting);
            this.#gateway[kSend]({ type: 'Subscribe', topic: name });
        });
    }

    /**
     * Publishes `data` (bytes or a string) on `name`. A topic or message the daemon
     * would refuse for its size throws here, so the daemon's Topic Refused for a
     * Publish is rare (the node not started, say) and comes as an `error` event.
     */
    publish(name, data) {
        checkTopic(name);
        const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
        const size = bytes?.byteLength ?? 0;
        if (size > this.maxMessage) {
            throw new RangeError(`a message of ${size} bytes is over the limit of ${this.maxMessage} bytes`);
        }
        this.#gateway[kSend]({ type: 'Publish', topic: name, data: bytes });
    }

    unsubscribe(name) {
        this.#gateway[kSend]({ type: 'Unsubscribe', topic: name });
    }

    forget(name, topic) {
        if (this.#topics.get(name) === topic) this.#topics.delete(name);
    }

    /** The Topic for `name`, if subscribed. */
    get(name) {
        return this.#topics.get(name);
    }

    /** Takes a pubsub message from the daemon; false for any other message. */
    handle(m) {
        switch (m.type) {
            case 'Subscribed': {
                let topic = this.#topics.get(m.topic);
                if (!topic) {
                    topic = new Topic(this, m.topic);
                    this.#topics.set(m.topic, topic);
                }
                this.#next(m.topic)?.resolve(topic);
                return true;
            }
            case 'TopicRefused': {
                const waiter = this.#next(m.topic);
                if (waiter) waiter.reject(new Error(`topic ${m.topic}: ${m.reason}`));
                else fire(this.#gateway, 'error', `topic ${m.topic}: ${m.reason}`);
                return true;
            }
            case 'TopicMessage':
                this.#topics.get(m.topic)?._message({ topic: m.topic, from: m.from, seq: m.seq, data: m.data });
                return true;
            case 'TopicPeer':
                this.#topics.get(m.topic)?._peer(m.peerID, m.joined);
                return true;
            case 'Missed':
                this.#topics.get(m.topic)?._missed(Number(m.count));
                return true;
            default:
                return false;
        }
    }

    /** The session is over: every topic ends, every Subscribe waiting fails. */
    endAll(reason) {
        for (const topic of [...this.#topics.values()]) topic._end(reason);
        for (const [name, waiting] of this.#waiting) {
            for (const w of waiting) w.reject(new Error(`topic ${name}: ${reason}`));
        }
        this.#waiting.clear();
    }

    #next(name) {
        const waiting = this.#waiting.get(name);
        const next = waiting?.shift();
        if (waiting?.length === 0) this.#waiting.delete(name);
        return next;
    }
}
