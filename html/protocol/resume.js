// resume.js: the browser side of the resume extension (PROTOCOL.md, "Extension:
// resume"): numbering what the page sends and keeping it until the daemon acknowledges
// it, counting and acknowledging what the daemon sends, the attempts (with backoff) to
// take the session back on a new WebSocket after a drop, and the token kept in
// sessionStorage so that a reloaded page takes its listeners back. A Gateway owns one
// ResumeSession once it asked for the extension; protocol.js exports only the storage
// key's name.

'use strict';

import { ServerType, decodeServerMessage, encodeClientMessage } from './codec.js';
import { OPEN } from './socket.js';

/** The sessionStorage key of `{token, url, page, grace, version}`: the session a reloaded page takes back. */
export const RESUME_STORAGE_NAME = 'libp2p-websocket-resume';

/** The page acknowledges every this many numbered messages... */
export const ACK_EVERY = 16;
/** ...or this long (ms) after the first one it has not acknowledged. */
export const ACK_DELAY_MS = 100;
/** The wait before the first attempt to resume; it doubles up to BACKOFF_MAX_MS. */
export const BACKOFF_FIRST_MS = 100;
export const BACKOFF_MAX_MS = 5000;
/** An attempt that has no answer within this long (ms) is given up for the next one. */
export const ATTEMPT_TIMEOUT_MS = 5000;

const UNNUMBERED = new Set([ServerType.Ack, ServerType.Resumed, ServerType.ResumeRefused]);

// Tokens held by the live sessions of this page: a second Gateway of the same page must
// not take the first one's session away from it.
const inUse = new Set();

/** Whether a server message (its bytes) is numbered: all but Ack, Resumed, Resume Refused. */
export function isNumbered(bytes) {
    return bytes.length > 0 && !UNNUMBERED.has(bytes[0]);
}

/** The wait (ms) before attempt `n` (0 first): BACKOFF_FIRST_MS doubling to BACKOFF_MAX_MS, the upper half of it at random. */
export function backoff(n, random = Math.random) {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(n, 16));
    return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** `/libp2p?resume=TOKEN&received=N` on the gateway's URL; without `received` for a reloaded page. */
export function resumeUrl(base, token, received) {
    const url = new URL(base);
    url.searchParams.set('resume', token);
    if (received !== undefined) url.searchParams.set('received', String(received));
    else url.searchParams.delete('received');
    return url.href;
}

/** The URL a WebSocket was opened with, without a resume query. */
export function baseUrl(url) {
    try {
        const u = new URL(String(url));
        u.searchParams.delete('resume');
        u.searchParams.delete('received');
        return u.href;
    } catch {
        return String(url);
    }
}

/** The page the gateway runs in (a reloaded page takes back only what the same page left). */
export function currentPage() {
    return globalThis.location?.pathname ?? '';
}

export function defaultSessionStorage() {
    try {
        return globalThis.sessionStorage ?? null;
    } catch {
        return null; // e.g. a sandboxed iframe
    }
}

/**
 * The session a reloaded page may take back: the stored entry for the same WebSocket
 * URL and page, unless a live gateway of this page holds it. null when there is none.
 */
export function storedSession(storage, base, page = currentPage()) {
    let entry;
    try {
        entry = JSON.parse(storage?.getItem(RESUME_STORAGE_NAME) ?? 'null');
    } catch {
        return null;
    }
    if (!entry || typeof entry.token !== 'string' || !entry.token) return null;
    if (entry.url !== base || (entry.page ?? '') !== page || inUse.has(entry.token)) return null;
    return entry;
}

/**
 * The resume state of one Gateway. `host` is the gateway's side: socket() (the
 * WebSocket in use), open(url) (opens a new one and makes it the one in use), version
 * (Hello's), fire(type, detail), resumed() (after the resend: go on sending),
 * reclaimed() (a reloaded page got its session back), fresh() (it did not: go on as a
 * new session), lost(reason).
 */
export class ResumeSession {
    #host;
    #storage;
    #base;
    #page;
    /** The session's token for the next resume ('' until the daemon's answer). */
    token = '';
    /** The grace period in seconds, from the answer. */
    grace = 0;
    /** Numbered client messages are kept (from the message after the Extensions). */
    keeping = false;
    /** Numbered server messages are counted (from the message after the answer). */
    counting = false;
    /** Numbered server messages received. */
    received = 0;
    /** Between a drop and `resumed` (or `lost`). */
    disconnected = false;
    #log = []; // encoded numbered messages not acknowledged, oldest first
    #first = 1; // the number of #log[0]
    #acked = 0; // what the last Ack told the daemon
    #ackTimer = null;
    #attempt = null; // {ws, phase: 'reload' | 'waiting' | 'refused', timer}
    #attempts = 0; // since the drop
    #droppedAt = 0;
    #deadline = 0;
    #retry = null; // the timer of the next attempt, or of the end of the grace period
    #stopped = false;
    #keepStored = false; // a reloaded page that could not connect: its next try may resume
    // The browser says the network is back: the next attempt goes at once.
    #onOnline = () => {
        if (this.disconnected && !this.#attempt && !this.#stopped && Date.now() < this.#deadline) {
            clearTimeout(this.#retry);
            this.#attemptNow();
        }
    };

    constructor(host, { storage, base, page = currentPage() }) {
        this.#host = host;
        this.#storage = storage;
        this.#base = base;
        this.#page = page;
    }

    /** A reloaded page's gateway, whose first WebSocket presents `entry`'s token (no `received`). */
    static reclaiming(host, entry, options) {
        const session = new ResumeSession(host, options);
        session.#setToken(entry.token);
        session.grace = Number(entry.grace) || 0;
        session.#attempt = { ws: host.socket(), phase: 'reload', timer: null };
        return session;
    }

    /** Numbered client messages not acknowledged yet. */
    get unacked() {
        return this.#log.length;
    }

    /** The daemon's answer to the Extensions that asked for resume; false when it is not on. */
    answered(extensions) {
        const token = extensions.get('token');
        if (!extensions.has('resume') || !token) {
            this.stop();
            return false;
        }
        this.grace = Number(extensions.get('grace')) || 0;
        this.counting = true;
        this.#setToken(token);
        return true;
    }

    /** Keeps a numbered client message and sends it if it can; false when not keeping. */
    keep(bytes) {
        if (!this.keeping || this.#stopped) return false;
        this.#log.push(bytes);
        if (this.#attached()) {
            try {
                this.#host.socket().send(bytes);
            } catch {
                /* the socket is going away: the message goes again on resume */
            }
        }
        return true;
    }

    /**
     * A message from the daemon on the socket in use. Returns true when it is the resume
     * extension's own (an Ack, or the answer to an attempt) and the gateway must not
     * handle it; counts it when numbered.
     */
    intercept(bytes) {
        if (this.#attempt) return this.#onAttemptMessage(bytes);
        if (bytes[0] === ServerType.Ack) {
            try {
                this.#dropAcked(Number(decodeServerMessage(bytes).count));
            } catch {
                /* undecodable: the gateway reports it */
                return false;
            }
            return true;
        }
        if (this.counting && isNumbered(bytes)) {
            this.received++;
            this.#scheduleAck();
        }
        return false;
    }

    /** The socket in use closed: returns true when the session goes on (resuming). */
    socketClosed(ws, event) {
        if (this.#stopped) return false;
        const attempt = this.#attempt;
        if (attempt?.phase === 'reload') {
            this.#attempt = null;
            this.#keepStored = true;
            return false; // a reloaded page that could not connect: connect() rejects
        }
        if (attempt) {
            clearTimeout(attempt.timer);
            this.#attempt = null;
            if (attempt.phase === 'refused') this.#lose('the daemon refused to resume the session');
            else this.#next();
            return true;
        }
        if (!this.counting || !this.token) return false;
        this.disconnected = true;
        this.#clearAckTimer();
        this.#attempts = 0;
        this.#droppedAt = Date.now();
        this.#deadline = this.#droppedAt + this.grace * 1000;
        globalThis.addEventListener?.('online', this.#onOnline);
        this.#host.fire('disconnected', { code: event?.code, reason: event?.reason ?? '', grace: this.grace });
        this.#next();
        return true;
    }

    /** The page closes the gateway: no more attempts, and a reload starts afresh. */
    stop() {
        this.#stopped = true;
        this.keeping = false;
        this.#clearAckTimer();
        clearTimeout(this.#retry);
        if (this.#attempt) clearTimeout(this.#attempt.timer);
        this.#attempt = null;
        if (!this.#keepStored) this.#forget();
        inUse.delete(this.token);
        globalThis.removeEventListener?.('online', this.#onOnline);
    }

    // ------------------------------------------------------------ numbering and acks

    #attached() {
        return !this.disconnected && !this.#attempt && this.#host.socket().readyState === OPEN;
    }

    #dropAcked(count) {
        while (this.#first <= count && this.#log.length > 0) {
            this.#log.shift();
            this.#first++;
        }
    }

    #scheduleAck() {
        if (this.received - this.#acked >= ACK_EVERY) this.#sendAck();
        else this.#ackTimer ??= setTimeout(() => this.#sendAck(), ACK_DELAY_MS);
    }

    #clearAckTimer() {
        clearTimeout(this.#ackTimer);
        this.#ackTimer = null;
    }

    #sendAck() {
        this.#clearAckTimer();
        if (this.received === this.#acked || !this.#attached()) return;
        this.#acked = this.received;
        try {
            this.#host.socket().send(encodeClientMessage({ type: 'Ack', count: BigInt(this.received) }));
        } catch {
            /* the socket is going away: the resume URL says what was received */
        }
    }

    // ------------------------------------------------------------ attempts

    // The next attempt after the backoff, or the end once the grace period is over.
    #next() {
        clearTimeout(this.#retry);
        const now = Date.now();
        const wait = backoff(this.#attempts++);
        if (now + wait >= this.#deadline) {
            const left = Math.max(0, this.#deadline - now);
            this.#retry = setTimeout(() => this.#lose(`the daemon did not take the session back within ${this.grace} s`), left);
            return;
        }
        this.#retry = setTimeout(() => this.#attemptNow(), wait);
    }

    #attemptNow() {
        if (this.#stopped) return;
        let ws;
        try {
            ws = this.#host.open(resumeUrl(this.#base, this.token, this.received));
        } catch {
            this.#next();
            return;
        }
        const attempt = { ws, phase: 'waiting', timer: null };
        attempt.timer = setTimeout(() => {
            if (this.#attempt === attempt) ws.close();
        }, ATTEMPT_TIMEOUT_MS);
        this.#attempt = attempt;
    }

    #onAttemptMessage(bytes) {
        const attempt = this.#attempt;
        let m;
        try {
            m = decodeServerMessage(bytes);
        } catch {
            return true; // not an answer to the attempt
        }
        if (m.type === 'Resumed') {
            clearTimeout(attempt.timer);
            this.#attempt = null;
            if (attempt.phase === 'reload') this.#reclaimed(m.token);
            else this.#resumed(Number(m.count), m.token);
            return true;
        }
        if (m.type === 'Hello') {
            if (attempt.phase === 'reload') {
                // Refused: the reloaded page goes on as a new session on this socket.
                this.#attempt = null;
                this.stop();
                this.#host.fresh();
                return false;
            }
            attempt.phase = 'refused'; // its Resume Refused follows
            return true;
        }
        if (m.type === 'ResumeRefused' && attempt.phase === 'refused') {
            clearTimeout(attempt.timer);
            this.#attempt = null;
            this.#lose(m.reason, attempt.ws);
        }
        return true;
    }

    // The daemon took the session back: it has the page's first `count` numbered
    // messages; the others go again, in order, before anything new.
    #resumed(count, token) {
        this.#setToken(token);
        this.#dropAcked(count);
        this.#acked = this.received;
        this.disconnected = false;
        clearTimeout(this.#retry);
        globalThis.removeEventListener?.('online', this.#onOnline);
        const ws = this.#host.socket();
        for (const bytes of this.#log) {
            try {
                ws.send(bytes);
            } catch {
                break; // gone again: its close starts the next attempt
            }
        }
        this.#host.resumed();
        this.#host.fire('resumed', { after: Date.now() - this.#droppedAt, attempts: this.#attempts, resent: this.#log.length });
    }

    // A reloaded page got its session back: numbering starts again from 1 both ways.
    #reclaimed(token) {
        this.#log = [];
        this.#first = 1;
        this.received = 0;
        this.#acked = 0;
        this.keeping = true;
        this.counting = true;
        this.#setToken(token);
        this.#host.reclaimed();
    }

    // The session is gone: the socket of the attempt (`ws`) is closed, the gateway ends.
    #lose(reason, ws = this.#attempt?.ws) {
        if (this.#stopped) return;
        this.stop();
        this.disconnected = false;
        try {
            ws?.close();
        } catch {
            /* already closed */
        }
        this.#host.lost(reason);
    }

    // ------------------------------------------------------------ the stored token

    #setToken(token) {
        inUse.delete(this.token);
        this.token = token;
        inUse.add(token);
        if (!this.#stopped && this.counting) this.#store();
    }

    #store() {
        const entry = { token: this.token, url: this.#base, page: this.#page, grace: this.grace, version: this.#host.version };
        try {
            this.#storage?.setItem(RESUME_STORAGE_NAME, JSON.stringify(entry));
        } catch {
            /* storage full or forbidden: a reload starts afresh */
        }
    }

    // Removes the stored entry when it is this session's.
    #forget() {
        try {
            const entry = JSON.parse(this.#storage?.getItem(RESUME_STORAGE_NAME) ?? 'null');
            if (entry?.token === this.token) this.#storage.removeItem(RESUME_STORAGE_NAME);
        } catch {
            /* nothing stored, or storage forbidden */
        }
    }
}
