// gateway.js: the promise API of protocol.js: Gateway (one control WebSocket) and its
// Connections, with the presence extension.

'use strict';

import {
    Blob_,
    KEY_STORAGE_NAME,
    MAX_CREDIT,
    decodeServerMessage,
    encodeClientMessage,
    isConnectString,
    makeConnectString,
    parseConnectString,
    parseExtensionNames,
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

// The windows of the credit extension in the daemon's answer. A missing or malformed
// value (not the daemon's way) falls back to the daemon's default.
function creditWindows(extensions) {
    const num = (name, fallback) => {
        const v = Number(extensions.get(name));
        return extensions.get(name) && Number.isSafeInteger(v) && v > 0 ? v : fallback;
    };
    const streamWindow = num('stream-window', 2 * 1024 * 1024);
    return {
        streamWindow,
        sessionWindow: num('session-window', 32 * 1024 * 1024),
        receiveWindow: num('receive-window', streamWindow),
    };
}

function checkReceiveWindow(value) {
    if (value === undefined) return;
    if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`receiveWindow must be a positive integer (bytes), got ${String(value)}`);
    }
}

// What the gateway's pump found at the head of a connection's queue.
const SENT = 0;
const HELD_BY_STREAM = 1;
const HELD_BY_SESSION = 2;

// ------------------------------------------------------------------ promise API

const kSend = Symbol('send');
const kData = Symbol('data');
const kClosed = Symbol('closed');
const kForget = Symbol('forget');
const kRelayed = Symbol('relayed');
// The credit extension: what a Connection and its Gateway tell each other.
const kOut = Symbol('out'); // a Connection's send side: {credited, window, queue, ...}
const kWrite = Symbol('write'); // gateway[kWrite](conn, bytes, done, fail): send or queue a Data
const kLinger = Symbol('linger'); // gateway[kLinger](conn): closed by the page, Close after its queue
const kGiveBack = Symbol('giveBack'); // gateway[kGiveBack](conn, n): a client Credit
const kOverrun = Symbol('overrun'); // gateway[kOverrun](conn, text): the daemon sent past its credit
const kDrained = Symbol('drained'); // conn[kDrained](): its send queue just emptied
const kAbort = Symbol('abort'); // conn[kAbort](reason): what it still had to send is dropped

// Reasons of a Connection Closed (or a local close) after which a stream simply ends;
// any other reason is an error (a reset, a failure, the gateway going away), and
// `readable` errors with it once the data that came before is read.
const NORMAL_CLOSE = new Set(['', 'closed', 'closed by remote', 'listener stopped']);

function closeError(conn, reason) {
    return Object.assign(new Error(`connection ${conn.id} closed: ${reason}`), { reason });
}

// Iterates a ReadableStream through a reader; return() releases it (the stream is not
// cancelled) and an error of the stream ends the iteration like its end does.
function readerIterator(stream) {
    const reader = stream.getReader();
    let released = false;
    const release = () => {
        if (released) return;
        released = true;
        try {
            reader.releaseLock();
        } catch {
            /* an older implementation, with a read pending */
        }
    };
    const end = { value: undefined, done: true };
    return {
        next: async () => {
            if (released) return end;
            try {
                const r = await reader.read();
                if (r.done) release();
                return r;
            } catch {
                release();
                return end;
            }
        },
        return: async () => {
            release();
            return end;
        },
        throw: async (err) => {
            release();
            throw err;
        },
        [Symbol.asyncIterator]() {
            return this;
        },
    };
}

/**
 * One libp2p stream, opened by `Gateway.connect()` (incoming = false) or accepted by a
 * listener (incoming = true, delivered by the gateway's `connection` event).
 *
 * Events: `data` (detail: Uint8Array; with a framed protocol one event per frame),
 * `close` (detail: the reason text), `relayed` (detail: the relay's peer id, see
 * below) and `drain` (send() may go on: see below). Data that arrives while nobody
 * consumes it (no `data` listener, no running async iteration) is kept and handed to
 * the next consumer.
 *
 *   for await (const chunk of conn) { ... }   // ends when the connection closes
 *
 * Streams: `conn.readable` is a ReadableStream of the chunks (one Uint8Array per Data;
 * it closes when the connection closes, and errors when the reason is an error, e.g.
 * a reset); `conn.writable` a WritableStream whose write() resolves once the chunk went
 * out (with credit, when the daemon had room for it); closing or aborting it closes the
 * connection. Once `readable` has been taken it is the only consumer: `data` events
 * and iterations started afterwards go through it (take it before adding listeners).
 *
 * Credit (PROTOCOL.md, "Extension: credit"; on when the gateway negotiated it, see
 * Gateway): the daemon holds each stream's bytes within windows, so one stream that
 * the page, or its remote, does not keep up with slows only itself.
 * - Sending: a Data costs its length, plus 4 when the connection is framed; it goes out
 *   only within what is left of the stream's window (`sendCredit`) and the session's
 *   (`gateway.sessionCredit`). What does not fit waits here, in order (`bufferedAmount`
 *   bytes), and goes out as the daemon gives credit back; a raw chunk may go in pieces.
 *   send() returns false when something waits; `drain` fires when it all went out, and
 *   `await conn.onDrain()` waits for that. A framed message larger than the whole
 *   stream window can never go: send() throws a RangeError.
 * - Receiving: the daemon sends no more than the receive window ahead of what the page
 *   consumed. A chunk is consumed when it is handed to `data` listeners, taken by an
 *   iteration's next(), or read from `readable`; only then is its credit given back. So
 *   a page that stops reading `readable` (or has no consumer at all) stops the remote.
 * Without credit (a daemon without the extension), send() always returns true and
 * everything goes out at once.
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
    // Chunks not consumed yet, oldest first: {bytes, cost, holders, seen, taken}; holders
    // counts the iterations whose queue holds the chunk.
    #backlog = [];
    #flushing = false;
    // Receive credit (when credited): what the daemon may still send, what the page
    // consumed and was not given back yet, how many chunks are not consumed yet.
    #receiveWindow = 0;
    #receiveLeft = 0;
    #owed = 0;
    #held = 0;
    #discard = false; // `readable` was cancelled: what arrives is consumed unread
    #readable = null;
    #wake = null; // resolves the pull of `readable` waiting for a chunk
    #writable = null;
    #writableController = null;
    #writableDone = false; // the writable closed or aborted (and so closed the connection)

    /**
     * Made by the gateway. options: {framed} (each Data is a frame: costs 4 more),
     * {credit} (the windows in force when credit is on: {streamWindow, receiveWindow}).
     */
    constructor(gateway, id, peerID, protocol, incoming, { framed = true, credit = null } = {}) {
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
        /** True when each Data is a length-prefixed frame on the stream. */
        this.framed = Boolean(framed);
        /** Set once the connection is closed; `reason` says why. */
        this.closed = false;
        this.reason = null;
        /** True when the stream goes through a circuit relay (see above: may turn true just after creation). */
        this.relayed = false;
        /** The relay's base58 peer id when `relayed` ('' when not relayed, or the relay is unknown). */
        this.relay = '';
        this[kOut] = {
            credited: Boolean(credit),
            window: credit ? credit.streamWindow : 0, // what is left of the stream window
            queue: [], // waiting Data: {bytes, at (bytes of it sent), done, fail}
            queued: 0, // bytes in the queue not sent yet
            blocked: false, // something waited since the last drain
            closing: false, // the page closed it: Close goes after the queue
            drainWaiters: [],
        };
        if (credit) this.#receiveWindow = this.#receiveLeft = credit.receiveWindow;
    }

    get gateway() {
        return this.#gateway;
    }

    /** True when the credit extension governs this stream (see above). */
    get credited() {
        return this[kOut].credited;
    }

    /** What is left of the stream's send window in bytes, or null without credit. */
    get sendCredit() {
        return this.credited ? this[kOut].window : null;
    }

    /** What the daemon may still send on this stream in bytes, or null without credit. */
    get receiveCredit() {
        return this.credited ? this.#receiveLeft : null;
    }

    /** Bytes given to send() or `writable` that wait for credit. */
    get bufferedAmount() {
        return this[kOut].queued;
    }

    /**
     * Sends bytes (a string goes as UTF-8). With a framed protocol each call is one frame.
     * Returns true when it went out, false when (some of) it waits for credit: see
     * `drain` and onDrain().
     */
    send(data) {
        if (this.closed) throw new Error(`connection ${this.id} is closed`);
        return this.#gateway[kWrite](this, toBytes(data));
    }

    /** Sends JSON.stringify(value) as UTF-8; returns what send() returns. */
    sendJSON(value) {
        return this.send(JSON.stringify(value));
    }

    /**
     * Resolves when nothing waits for credit any more (at once when nothing does);
     * rejects when the connection ends first with data still waiting.
     */
    onDrain() {
        const out = this[kOut];
        if (out.queue.length === 0) return Promise.resolve();
        return new Promise((resolve, reject) => out.drainWaiters.push({ resolve, reject }));
    }

    /**
     * Closes the stream. The `close` event fires at once with reason "closed". Data
     * still waiting for credit goes first: the daemon gets the Close after it.
     */
    close() {
        if (this.closed) return;
        if (this[kOut].queue.length > 0) {
            this[kOut].closing = true;
            this.#gateway[kLinger](this);
        } else {
            try {
                this.#gateway[kSend]({ type: 'Close', id: this.id });
            } catch {
                /* the gateway is gone already */
            }
            this.#gateway[kForget](this.id);
        }
        this[kClosed]('closed');
    }

    /**
     * A ReadableStream of the chunks that arrive (Uint8Array each), pulled: a chunk is
     * taken (and its credit given back) only when the reader reads. Cancelling it
     * discards what arrives from then on. See the class comment.
     */
    get readable() {
        if (!this.#readable) {
            this.#readable = new ReadableStream(
                {
                    pull: (controller) => this.#pull(controller),
                    cancel: () => this.#cancelRead(),
                },
                { highWaterMark: 0 },
            );
        }
        return this.#readable;
    }

    /**
     * A WritableStream to the stream: each chunk (bytes or a string) is one send();
     * write() resolves when it went out. close() and abort() close the connection
     * (abort() drops what still waits for credit).
     */
    get writable() {
        if (!this.#writable) {
            this.#writable = new WritableStream({
                start: (controller) => {
                    this.#writableController = controller;
                    controller.signal?.addEventListener('abort', () => this.#abortWrites(controller.signal.reason));
                },
                write: (chunk) =>
                    new Promise((resolve, reject) => {
                        if (this.closed) throw closeError(this, this.reason);
                        this.#gateway[kWrite](this, toBytes(chunk), resolve, reject);
                    }),
                close: () => {
                    this.#writableDone = true;
                    this.close();
                },
                abort: (reason) => {
                    this.#writableDone = true;
                    this.#abortWrites(reason);
                },
            });
        }
        return this.#writable;
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
        this.#scheduleFlush();
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

    /**
     * Yields each chunk (Uint8Array) until the connection closes (whatever the reason:
     * see `reason`). `break` leaves it open; chunks it had not taken yet stay for the
     * next consumer. Once `readable` has been taken, iterates through it.
     */
    [Symbol.asyncIterator]() {
        if (this.#readable) return readerIterator(this.#readable);
        const queue = []; // chunks handed to this iteration, not taken by next() yet
        let waiter = null;
        let done = false;
        const sink = {
            push: (entry) => {
                if (waiter) {
                    const w = waiter;
                    waiter = null;
                    w({ value: this.#take(entry), done: false });
                } else {
                    queue.push(entry);
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
            for (const entry of early) {
                entry.holders = 1;
                sink.push(entry);
            }
            if (this.closed) sink.end();
        }
        const finish = () => {
            this.#iterators.delete(sink);
            this.#release(queue.splice(0));
            sink.end();
            return Promise.resolve({ value: undefined, done: true });
        };
        return {
            next: () => {
                if (queue.length > 0) return Promise.resolve({ value: this.#take(queue.shift()), done: false });
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

    // Hands the backlog over in a microtask, so the code adding a consumer finishes first.
    #scheduleFlush() {
        if (this.#backlog.length > 0 && !this.#flushing && !this.#readable) {
            this.#flushing = true;
            queueMicrotask(() => this.#flush());
        }
    }

    #flush() {
        this.#flushing = false;
        while (this.#backlog.length > 0 && this.#hasConsumers() && !this.#readable) this.#deliver(this.#backlog.shift());
    }

    // To every iteration (each one's next() takes it) and every `data` listener (which
    // consume it at once).
    #deliver(entry) {
        entry.holders = this.#iterators.size + 1; // + 1 while it is being handed out
        entry.seen = this.#listeners.size > 0;
        for (const it of this.#iterators) it.push(entry);
        fire(this, 'data', entry.bytes);
        if (--entry.holders === 0) this.#consumed(entry);
    }

    // An iteration's next() takes a chunk.
    #take(entry) {
        entry.taken = true;
        if (--entry.holders === 0) this.#consumed(entry);
        return entry.bytes;
    }

    // An iteration ends with chunks it had not taken: a chunk nobody consumed goes back
    // to the front of the backlog, for the next consumer.
    #release(entries) {
        const back = [];
        for (const entry of entries) {
            if (--entry.holders > 0) continue;
            if (entry.seen || entry.taken) this.#consumed(entry);
            else back.push(entry);
        }
        if (back.length === 0) return;
        this.#backlog.unshift(...back);
        if (this.#readable) this.#wake?.();
        else this.#scheduleFlush();
    }

    // A chunk left the connection for the page: give its credit back. Credit is given
    // in one Credit when a quarter of the window is owed, or when nothing else waits to
    // be consumed (never held back while the page waits for more).
    #consumed(entry) {
        if (entry.consumed) return;
        entry.consumed = true;
        this.#held--;
        if (!this.credited || this.closed) return;
        this.#owed += entry.cost;
        if (this.#owed > 0 && (this.#held === 0 || this.#owed >= this.#receiveWindow / 4)) {
            const n = this.#owed;
            this.#owed = 0;
            this.#receiveLeft += n;
            this.#gateway[kGiveBack](this, n);
        }
    }

    async #pull(controller) {
        while (this.#backlog.length === 0 && !this.closed) {
            await new Promise((resolve) => (this.#wake = resolve));
            this.#wake = null;
            if (this.#discard) return; // cancelled meanwhile
        }
        if (this.#backlog.length > 0) {
            const entry = this.#backlog.shift();
            controller.enqueue(entry.bytes);
            this.#consumed(entry);
        } else if (NORMAL_CLOSE.has(this.reason)) {
            controller.close();
        } else {
            controller.error(closeError(this, this.reason));
        }
    }

    #cancelRead() {
        this.#discard = true;
        for (const entry of this.#backlog.splice(0)) this.#consumed(entry);
    }

    // writable.abort(), or its signal: drop what waits, close.
    #abortWrites(reason) {
        this.#writableDone = true;
        this[kAbort](reason instanceof Error ? reason.message : 'aborted');
        this.close();
    }

    [kData](chunk) {
        if (this.closed) return;
        const entry = { bytes: chunk, cost: chunk.length + (this.framed ? 4 : 0), holders: 0, seen: false, taken: false };
        if (this.credited) {
            this.#receiveLeft -= entry.cost;
            if (this.#receiveLeft < 0) {
                const left = this.#receiveLeft + entry.cost;
                this.#gateway[kOverrun](this, `the daemon overran the receive credit of connection ${this.id} (Data costing ${entry.cost} bytes, ${left} left)`);
                return;
            }
        }
        this.#held++;
        if (this.#discard) return this.#consumed(entry);
        this.#backlog.push(entry);
        if (this.#readable) this.#wake?.();
        else if (!this.#flushing && this.#hasConsumers()) this.#deliver(this.#backlog.shift());
        return undefined;
    }

    // The daemon's Relayed message for this stream; returns whether it changed anything.
    [kRelayed](relay) {
        if (this.closed || this.relayed) return false;
        this.relayed = true;
        this.relay = relay;
        fire(this, 'relayed', relay);
        return true;
    }

    // The gateway sent the last of what waited.
    [kDrained]() {
        const out = this[kOut];
        const waiters = out.drainWaiters.splice(0);
        for (const w of waiters) w.resolve();
        if (out.blocked) {
            out.blocked = false;
            fire(this, 'drain', null);
        }
    }

    // The stream is over for sending: what waits is dropped.
    [kAbort](reason) {
        const out = this[kOut];
        const dropped = out.queue.splice(0);
        out.queued = 0;
        out.closing = false;
        out.blocked = false;
        const err = () => closeError(this, reason);
        for (const item of dropped) item.fail?.(err());
        for (const w of out.drainWaiters.splice(0)) w.reject(err());
    }

    [kClosed](reason) {
        if (this.closed) return;
        this.closed = true;
        this.reason = reason;
        this.#wake?.();
        // A writer learns of an error at once; after a plain close its next write fails
        // (and a pipe that ends with the readable closes it quietly).
        if (this.#writableController && !this.#writableDone && !NORMAL_CLOSE.has(reason)) {
            this.#writableDone = true;
            this.#writableController.error(closeError(this, reason));
        }
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
    #credit = null; // {streamWindow, sessionWindow, receiveWindow} once credit is on
    #session = 0; // what is left of the session window
    #waiting = new Set(); // connections whose Data waits for credit, in turn order
    #pumping = false;
    #lingering = new Map(); // id -> Connection the page closed whose Data still goes out
    #listenFramed = new Map(); // protocol -> whether its listener is framed
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
     * is called), {credit} (default true: use per-stream credit when the daemon offers
     * it), {receiveWindow} (bytes of receive credit per stream to ask for).
     */
    static async connect(url, options = {}) {
        if (url !== undefined && url !== null && typeof url === 'object' && !(url instanceof URL)) {
            options = url;
            url = undefined;
        }
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (typeof WS !== 'function') throw new Error('no WebSocket class available: pass {WebSocket}');
        checkReceiveWindow(options.receiveWindow);
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
        checkReceiveWindow(options.receiveWindow);
        this.#wantCredit = options.credit !== false;
        this.#receiveWindow = options.receiveWindow;
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

    /**
     * The credit windows in force ({streamWindow, sessionWindow, receiveWindow}, bytes),
     * or null when the session has no credit (not offered, not asked, not answered yet).
     */
    get credit() {
        return this.#credit ? { ...this.#credit } : null;
    }

    /** What is left of the session's send window in bytes, or null without credit. */
    get sessionCredit() {
        return this.#credit ? this.#session : null;
    }

    /** Resolves when the daemon confirms (Listening); rejects on Listen Refused. */
    listen(protocol, { framed = true } = {}) {
        this.#listenFramed.set(protocol, Boolean(framed));
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

    // ---------------------------------------------------------------- credit

    // Sends a Data of `conn`, or queues it behind missing credit (then the pump sends it
    // as Credit comes). done() is called once all of it went out, fail(err) if it never
    // will. Returns whether all of it went out now.
    [kWrite](conn, bytes, done, fail) {
        const out = conn[kOut];
        if (!out.credited) {
            this[kSend]({ type: 'Data', id: conn.id, data: bytes });
            done?.();
            return true;
        }
        if (this.closed || this.#ws.readyState !== OPEN) throw new Error('the gateway WebSocket is not open');
        const window = this.#credit.streamWindow;
        if (conn.framed && bytes.length + 4 > window) {
            throw new RangeError(
                `a frame of ${bytes.length} bytes costs ${bytes.length + 4} bytes of credit, more than the stream window (${window})`,
            );
        }
        out.queue.push({ bytes, at: 0, done, fail });
        out.queued += bytes.length;
        this.#waiting.add(conn);
        this.#pump();
        if (out.queue.length === 0) return true;
        out.blocked = true;
        return false;
    }

    // Sends what credit allows, taking turns: each waiting connection sends (a piece
    // of) its oldest Data, then goes to the back. A connection short of stream credit
    // is skipped; one short of session credit stops everything (it is next when credit
    // comes back, so a big frame is not starved by small ones).
    #pump() {
        if (this.#pumping || !this.#credit || this.closed || this.#ws.readyState !== OPEN) return;
        this.#pumping = true;
        const drained = [];
        try {
            let progress = true;
            while (progress && this.#waiting.size > 0) {
                progress = false;
                for (const conn of [...this.#waiting]) {
                    if (conn[kOut].queue.length === 0) {
                        this.#waiting.delete(conn); // dropped meanwhile
                        continue;
                    }
                    const r = this.#sendHead(conn);
                    if (r === HELD_BY_SESSION) return;
                    if (r === HELD_BY_STREAM) continue;
                    progress = true;
                    this.#waiting.delete(conn);
                    if (conn[kOut].queue.length > 0) this.#waiting.add(conn);
                    else drained.push(conn);
                }
            }
        } finally {
            this.#pumping = false;
            for (const conn of drained) {
                if (conn[kOut].closing) this.#closeLingering(conn);
                conn[kDrained]();
            }
        }
    }

    // Sends the head of conn's queue, or the piece of it that credit allows (raw only:
    // a frame goes whole).
    #sendHead(conn) {
        const out = conn[kOut];
        const item = out.queue[0];
        const left = item.bytes.length - item.at;
        let n = left;
        let cost;
        if (conn.framed) {
            cost = left + 4;
            if (cost > out.window) return HELD_BY_STREAM;
            if (cost > this.#session) return HELD_BY_SESSION;
        } else {
            n = Math.min(left, out.window, this.#session);
            if (n === 0 && left > 0) return out.window === 0 ? HELD_BY_STREAM : HELD_BY_SESSION;
            cost = n;
        }
        const data = n === item.bytes.length ? item.bytes : item.bytes.subarray(item.at, item.at + n);
        this[kSend]({ type: 'Data', id: conn.id, data });
        out.window -= cost;
        this.#session -= cost;
        item.at += n;
        out.queued -= n;
        if (item.at === item.bytes.length) {
            out.queue.shift();
            item.done?.();
        }
        return SENT;
    }

    // The page closed conn while Data waited: it stays known (Credit still counts for
    // it) until the last of it went out, then the daemon gets the Close.
    [kLinger](conn) {
        this.#connections.delete(conn.id);
        this.#lingering.set(conn.id, conn);
    }

    #closeLingering(conn) {
        this.#lingering.delete(conn.id);
        try {
            this[kSend]({ type: 'Close', id: conn.id });
        } catch {
            /* the socket is going away */
        }
    }

    // Receive credit back to the daemon: the page consumed n bytes of conn.
    [kGiveBack](conn, n) {
        try {
            for (let left = n; left > 0; left -= MAX_CREDIT) {
                this[kSend]({ type: 'Credit', id: conn.id, bytes: Math.min(left, MAX_CREDIT) });
            }
        } catch {
            /* the socket is going away */
        }
    }

    // The daemon sent conn more than its credit: not the daemon's way. The connection is
    // closed (the daemon gets a Close) and the gateway says why in an `error` event.
    [kOverrun](conn, text) {
        this.#connections.delete(conn.id);
        this.#waiting.delete(conn);
        conn[kAbort](text);
        try {
            this[kSend]({ type: 'Close', id: conn.id });
        } catch {
            /* the socket is going away */
        }
        conn[kClosed](text);
        fire(this, 'error', text);
    }

    // The Extensions message, right after Hello when the daemon offers credit.
    #askExtensions() {
        if (!this.#wantCredit || !this.offers.has('credit')) return;
        let names = 'credit';
        if (this.#receiveWindow !== undefined) names += ` receive-window=${this.#receiveWindow}`;
        this[kSend]({ type: 'Extensions', names });
        this.#extensionsPending = true;
    }

    #onExtensions(names) {
        if (!this.#extensionsPending) return; // not asked for: ignore
        this.#extensionsPending = false;
        this.extensions = parseExtensionNames(names);
        if (this.extensions.has('credit')) {
            this.#credit = creditWindows(this.extensions);
            this.#session = this.#credit.sessionWindow;
        }
        this.#maybeReady();
    }

    #newConnection(id, peerID, protocol, incoming, framed) {
        const conn = new Connection(this, id, peerID, protocol, incoming, { framed, credit: this.#credit });
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
                if (!this.#helloSeen) {
                    this.#helloSeen = true;
                    this.offers = parseOffers(m.version);
                    this.#askExtensions(); // before anything else, Start included
                }
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
                const conn = this.#connections.get(m.id) ?? this.#lingering.get(m.id);
                if (conn) {
                    this.#connections.delete(m.id);
                    this.#lingering.delete(m.id);
                    this.#waiting.delete(conn);
                    conn[kAbort](m.reason);
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
            case 'Extensions':
                this.#onExtensions(m.names);
                break;
            case 'Credit': {
                // Send credit back: to the session always, to the stream while it is open.
                if (!this.#credit) break;
                this.#session += m.bytes;
                const conn = this.#connections.get(m.id) ?? this.#lingering.get(m.id);
                if (conn?.credited) conn[kOut].window += m.bytes;
                this.#pump();
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
        const conns = [...this.#connections.values(), ...this.#lingering.values()];
        this.#connections.clear();
        this.#lingering.clear();
        this.#waiting.clear();
        for (const conn of conns) {
            conn[kAbort]('gateway closed');
            conn[kClosed]('gateway closed');
        }
        this.listening.clear();
        const subscribers = this.#presence.pending;
        const hadPresence = this.#presence.subscribed;
        this.#resetPresence();
        subscribers.forEach(fail);
        if (hadPresence) fire(this, 'presence', { kind: 'closed' });
        fire(this, 'close', { code: event?.code, reason: event?.reason ?? '' });
    }
}
