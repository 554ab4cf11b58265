// credit.js: the bookkeeping of the credit extension (PROTOCOL.md, "Extension: credit"):
// the windows the daemon's answer sets, each stream's send window and queue
// (StreamSender), the session's send window and the pump that sends what credit allows
// (SessionSender, one per Gateway), and each stream's receive credit, given back as the
// page consumes (ReceiveCredit). Gateway and Connection use these; protocol.js exports
// none of them.

'use strict';

import { MAX_CREDIT } from './codec.js';
import { kDrained, kLive, kOut, kSend } from './internal.js';

// ------------------------------------------------------------------ negotiation

// The windows of the credit extension in the daemon's answer. A missing or malformed
// value (not the daemon's way) falls back to the daemon's default.
export function creditWindows(extensions) {
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

export function checkReceiveWindow(value) {
    if (value === undefined) return;
    if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`receiveWindow must be a positive integer (bytes), got ${String(value)}`);
    }
}

// ------------------------------------------------------------------ sending

// What the pump found at the head of a connection's queue.
const SENT = 0;
const HELD_BY_STREAM = 1;
const HELD_BY_SESSION = 2;

/**
 * A Connection's send side (`conn[kOut]`), credit or not: what is left of its stream
 * window, and the Data that waits for credit.
 */
export class StreamSender {
    /** credit: the windows in force ({streamWindow, ...}), or null without credit. */
    constructor(credit) {
        this.credited = Boolean(credit);
        this.window = credit ? credit.streamWindow : 0; // what is left of the stream window
        this.queue = []; // waiting Data: {bytes, at (bytes of it sent), done, fail}
        this.queued = 0; // bytes in the queue not sent yet
        this.blocked = false; // something waited since the last drain
        this.closing = false; // the page closed it: Close goes after the queue
        this.drainWaiters = [];
    }
}

/**
 * A Gateway's sending under credit: the session window, the connections whose Data
 * waits for credit (in turn order), and the connections the page closed while their
 * Data waited (`lingering`: still known, for the Credit that comes back for them).
 */
export class SessionSender {
    #gateway;
    #waiting = new Set(); // connections whose Data waits for credit, in turn order
    #pumping = false;

    constructor(gateway, windows) {
        this.#gateway = gateway;
        /** The windows in force: {streamWindow, sessionWindow, receiveWindow}. */
        this.windows = windows;
        /** What is left of the session window. */
        this.session = windows.sessionWindow;
        /** id -> Connection the page closed whose Data still goes out. */
        this.lingering = new Map();
    }

    // Whether Data can go out now. While the gateway resumes its session (resume
    // extension) it waits here, as behind missing credit, and goes out on resume.
    #open() {
        return this.#gateway[kLive];
    }

    // Sends a Data of `conn` (a credited connection), or queues it behind missing credit
    // (then the pump sends it as Credit comes). done() is called once all of it went
    // out, fail(err) if it never will. Returns whether all of it went out now.
    write(conn, bytes, done, fail) {
        const out = conn[kOut];
        const gateway = this.#gateway;
        if (!this.#open() && !(gateway.disconnected && !gateway.closed)) {
            throw new Error('the gateway WebSocket is not open');
        }
        const window = this.windows.streamWindow;
        if (conn.framed && bytes.length + 4 > window) {
            throw new RangeError(
                `a frame of ${bytes.length} bytes costs ${bytes.length + 4} bytes of credit, more than the stream window (${window})`,
            );
        }
        out.queue.push({ bytes, at: 0, done, fail });
        out.queued += bytes.length;
        this.#waiting.add(conn);
        this.pump();
        if (out.queue.length === 0) return true;
        out.blocked = true;
        return false;
    }

    // The daemon's Credit: n bytes back to the session always, and to conn's stream
    // window while it is open or lingering (conn: undefined otherwise).
    onCredit(conn, n) {
        this.session += n;
        if (conn?.credited) conn[kOut].window += n;
        this.pump();
    }

    // Sends what credit allows, taking turns: each waiting connection sends (a piece
    // of) its oldest Data, then goes to the back. A connection short of stream credit
    // is skipped; one short of session credit stops everything (it is next when credit
    // comes back, so a big frame is not starved by small ones).
    pump() {
        if (this.#pumping || !this.#open()) return;
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
            if (cost > this.session) return HELD_BY_SESSION;
        } else {
            n = Math.min(left, out.window, this.session);
            if (n === 0 && left > 0) return out.window === 0 ? HELD_BY_STREAM : HELD_BY_SESSION;
            cost = n;
        }
        const data = n === item.bytes.length ? item.bytes : item.bytes.subarray(item.at, item.at + n);
        this.#gateway[kSend]({ type: 'Data', id: conn.id, data });
        out.window -= cost;
        this.session -= cost;
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
    linger(conn) {
        this.lingering.set(conn.id, conn);
    }

    #closeLingering(conn) {
        this.lingering.delete(conn.id);
        try {
            this.#gateway[kSend]({ type: 'Close', id: conn.id });
        } catch {
            /* the socket is going away */
        }
    }

    // conn is over (closed by the daemon, or overran its credit): none of its Data goes.
    forget(conn) {
        this.lingering.delete(conn.id);
        this.#waiting.delete(conn);
    }

    // The WebSocket closed: returns the lingering connections, and forgets everything.
    clear() {
        const lingering = [...this.lingering.values()];
        this.lingering.clear();
        this.#waiting.clear();
        return lingering;
    }
}

// ------------------------------------------------------------------ receiving

/**
 * A credited Connection's receive credit: what the daemon may still send, what the
 * page consumed and was not given back yet, how many chunks are not consumed yet.
 */
export class ReceiveCredit {
    #window;
    #left;
    #owed = 0;
    #held = 0;

    constructor(receiveWindow) {
        this.#window = this.#left = receiveWindow;
    }

    /** What the daemon may still send, in bytes. */
    get left() {
        return this.#left;
    }

    /**
     * A Data costing `cost` arrived. Returns null when the credit covered it (the chunk
     * is then held until consumed), or, when it overran the credit, what was left.
     */
    arrive(cost) {
        this.#left -= cost;
        if (this.#left < 0) return this.#left + cost;
        this.#held++;
        return null;
    }

    /**
     * A held chunk costing `cost` left the connection for the page. Returns the credit
     * to give back now, or 0: credit is given in one Credit when a quarter of the window
     * is owed, or when nothing else waits to be consumed (never held back while the page
     * waits for more). Nothing is given back once the connection is `closed`.
     */
    consumed(cost, closed) {
        this.#held--;
        if (closed) return 0;
        this.#owed += cost;
        if (this.#owed > 0 && (this.#held === 0 || this.#owed >= this.#window / 4)) {
            const n = this.#owed;
            this.#owed = 0;
            this.#left += n;
            return n;
        }
        return 0;
    }
}

/** The client Credit messages that give `n` bytes back for stream `id`. */
export function creditMessages(id, n) {
    const messages = [];
    for (let left = n; left > 0; left -= MAX_CREDIT) {
        messages.push({ type: 'Credit', id, bytes: Math.min(left, MAX_CREDIT) });
    }
    return messages;
}
