// connection.js: Connection, one libp2p stream of a Gateway: its events, its async
// iteration, its WHATWG streams (`readable`, `writable`), and its side of the credit
// extension (a send queue that waits for credit, receive credit given back as the page
// consumes).

'use strict';

import { toBytes } from './codec.js';
import { ReceiveCredit, StreamSender } from './credit.js';
import {
    fire,
    kAbort,
    kClosed,
    kData,
    kDrained,
    kForget,
    kGiveBack,
    kLinger,
    kOut,
    kOverrun,
    kRelayed,
    kSend,
    kWrite,
} from './internal.js';

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
    #receive = null; // the ReceiveCredit, when credited
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
        this[kOut] = new StreamSender(credit);
        if (credit) this.#receive = new ReceiveCredit(credit.receiveWindow);
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
        return this.#receive ? this.#receive.left : null;
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

    // A chunk left the connection for the page: give its credit back (when and how
    // much: see ReceiveCredit.consumed).
    #consumed(entry) {
        if (entry.consumed) return;
        entry.consumed = true;
        if (!this.#receive) return;
        const n = this.#receive.consumed(entry.cost, this.closed);
        if (n > 0) this.#gateway[kGiveBack](this, n);
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
        const left = this.#receive?.arrive(entry.cost) ?? null;
        if (left !== null) {
            this.#gateway[kOverrun](this, `the daemon overran the receive credit of connection ${this.id} (Data costing ${entry.cost} bytes, ${left} left)`);
            return;
        }
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
