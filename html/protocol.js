// protocol.js: the browser client library of libp2p-websocket.
//
// The daemon serves this file at /protocol.js. A page talks to the daemon over
// one WebSocket at /libp2p with the binary protocol of PROTOCOL.md, and through
// it listens on libp2p protocols, dials peers and exchanges bytes with them.
//
// The module has three layers, each usable on its own:
//
//   1. A pure codec: encodeClientMessage / decodeClientMessage and
//      encodeServerMessage / decodeServerMessage, Ascii85 (a85encode,
//      a85decode) and the "/addrs/" connect strings (makeConnectString,
//      parseConnectString).
//   2. The promise API: `const gw = await Gateway.connect()`, then
//      `gw.listen()`, `gw.connect()`, `Connection` objects with events and
//      async iteration (`conn.relayed` / `conn.relay` when the stream goes
//      through a circuit relay); and the presence extension:
//      `await gw.subscribe()`, `gw.peers()`, `gw.localListeners()`,
//      `gw.findProtocols(prefix)`.
//   3. The callback API of the original Go project's protocol.js
//      (`import libp2p from './protocol.js'; libp2p.startProtocol(url, handler)`),
//      kept so pages written for it run unchanged.
//
// No build step, no dependencies: an ES module for browsers and Node 20+.

'use strict';

// ------------------------------------------------------------------ constants

/** Client-to-server message types (byte 0). */
export const ClientType = Object.freeze({
    Start: 0,
    Listen: 1,
    Stop: 2,
    Close: 3,
    Data: 4,
    Connect: 5,
    /** The presence extension (PROTOCOL.md): `[ON:1]`, 1 subscribes, 0 unsubscribes. */
    Presence: 6,
});

/**
 * Server-to-client message types (byte 0). 0 to 10 are the original protocol. From 11 on
 * they are opt-in extensions, sent only to a session that sent a Presence message (ON 1
 * or 0): 11 to 14 belong to the presence extension (to a session that subscribed);
 * 15, Relayed `[ID:8][RELAY: rest]`, follows the Peer Connection or Listener Connection
 * of a stream that goes through a circuit relay. Types from 16 on are future extensions.
 */
export const ServerType = Object.freeze({
    Hello: 0,
    Identify: 1,
    ListenerConnection: 2,
    ConnectionClosed: 3,
    Data: 4,
    ListenRefused: 5,
    ListenerClosed: 6,
    PeerConnection: 7,
    PeerConnectionRefused: 8,
    ProtocolError: 9,
    Listening: 10,
    Peer: 11,
    LocalListener: 12,
    PresenceReady: 13,
    PresenceResync: 14,
    Relayed: 15,
});

/**
 * The STATE byte of a Peer message, by name (the states of ssb-conn-hub). `updated`
 * means "still connected, its info changed"; 3 is reserved for `disconnecting`.
 */
export const PeerState = Object.freeze({
    disconnected: 0,
    connecting: 1,
    connected: 2,
    disconnecting: 3,
    failed: 4,
    updated: 5,
});

const PEER_STATE_NAMES = Object.keys(PeerState);

/** The name of a Peer STATE byte (`'connected'`, ...), or `'unknown'` for a value past 5. */
export function peerStateName(state) {
    return PEER_STATE_NAMES[state] ?? 'unknown';
}

/** Where a page keeps its node's private key between visits (localStorage). */
export const KEY_STORAGE_NAME = 'libp2p-websocket-key';

/** The largest value a connection id can have (u64). */
export const MAX_ID = (1n << 64n) - 1n;

const SERVER_NAMES = Object.keys(ServerType);
const utf8Encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const lossyDecoder = new TextDecoder('utf-8');

// ------------------------------------------------------------------ bytes helpers

const Blob_ = globalThis.Blob ?? class NoBlob {};

/** Accepts Uint8Array, any ArrayBuffer view, ArrayBuffer or string (as UTF-8). */
export function toBytes(data) {
    if (data instanceof Uint8Array) return data;
    if (typeof data === 'string') return utf8Encoder.encode(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (data && typeof data.byteLength === 'number' && typeof data.slice === 'function' && !(data instanceof Blob_)) {
        return new Uint8Array(data); // SharedArrayBuffer and friends
    }
    throw new TypeError('expected bytes (Uint8Array, ArrayBuffer) or a string');
}

function toId(value, what = 'id') {
    let id;
    try {
        id = BigInt(value);
    } catch {
        throw new TypeError(`${what} must be an integer, got ${String(value)}`);
    }
    if (id < 0n || id > MAX_ID) throw new RangeError(`${what} ${id} is outside 0..2^64-1`);
    return id;
}

class Writer {
    constructor(type) {
        this.parts = [Uint8Array.of(type)];
        this.length = 1;
    }
    bytes(b) {
        this.parts.push(b);
        this.length += b.length;
        return this;
    }
    flag(v) {
        return this.bytes(Uint8Array.of(v ? 1 : 0));
    }
    id(v) {
        const b = new Uint8Array(8);
        new DataView(b.buffer).setBigUint64(0, toId(v));
        return this.bytes(b);
    }
    str(text, field) {
        const b = utf8Encoder.encode(text ?? '');
        if (b.length > 0xffff) throw new RangeError(`${field} is ${b.length} bytes long, at most 65535 fit`);
        return this.bytes(Uint8Array.of(b.length >> 8, b.length & 0xff)).bytes(b);
    }
    rest(data) {
        return this.bytes(toBytes(data ?? new Uint8Array(0)));
    }
    finish() {
        const out = new Uint8Array(this.length);
        let at = 0;
        for (const p of this.parts) {
            out.set(p, at);
            at += p.length;
        }
        return out;
    }
}

// Reads the body of one message; `msg` names the message in error texts, which read
// like the daemon's: "Close: message too short for ID (needs 8 bytes, has 7)".
class Reader {
    constructor(bytes, msg, start = 1) {
        this.b = bytes;
        this.msg = msg;
        this.pos = start;
    }
    get left() {
        return this.b.length - this.pos;
    }
    take(n, field) {
        if (this.left < n) {
            throw new Error(`${this.msg}: message too short for ${field} (needs ${n} bytes, has ${this.left})`);
        }
        const out = this.b.subarray(this.pos, this.pos + n);
        this.pos += n;
        return out;
    }
    flag(field, strict = true) {
        const v = this.take(1, field)[0];
        if (strict && v > 1) throw new Error(`${this.msg}: ${field} flag must be 0 or 1, got ${v}`);
        return v !== 0;
    }
    id() {
        const b = this.take(8, 'ID');
        return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0);
    }
    str(field) {
        const len = this.take(2, `${field} length`);
        const n = (len[0] << 8) | len[1];
        if (n > this.left) {
            throw new Error(`${this.msg}: ${field} length ${n} exceeds message (${this.left} bytes left)`);
        }
        return this.text(this.take(n, field), field);
    }
    rest() {
        const out = this.b.subarray(this.pos);
        this.pos = this.b.length;
        return out;
    }
    restText(field) {
        return this.text(this.rest(), field);
    }
    text(bytes, field) {
        try {
            return strictDecoder.decode(bytes);
        } catch {
            throw new Error(`${this.msg}: ${field} is not valid UTF-8`);
        }
    }
}

// ------------------------------------------------------------------ client messages

/**
 * Encodes a client message object into one binary WebSocket message, in the layout of
 * the original client (`[KEY: rest]` for Start, `[RETAIN:1][PROTOCOL: rest]` for Stop,
 * `[FRAMES:1][RELAY:1][PROTOCOL: str][PEERID: rest]` for Connect). A Connect whose
 * `relay` is a string names a relay peer, which only the README's layout
 * (`[FRAMES:1][PROTOCOL: str][RELAY: str][PEERID: rest]`) can say, so it uses that one.
 *
 *   {type: 'Start', key}                         key: string (base64) or bytes
 *   {type: 'Listen', frames, protocol}
 *   {type: 'Stop', retain, protocol}
 *   {type: 'Close', id}                          id: BigInt (or integer number/string)
 *   {type: 'Data', id, data}                     data: Uint8Array, ArrayBuffer or string
 *   {type: 'Connect', frames, relay, protocol, peer}   relay: boolean or relay peer id
 *   {type: 'Presence', on}                       on: true subscribes, false unsubscribes
 */
export function encodeClientMessage(msg) {
    switch (msg?.type) {
        case 'Start':
            return new Writer(ClientType.Start).rest(msg.key ?? '').finish();
        case 'Listen':
            return new Writer(ClientType.Listen).flag(msg.frames).rest(msg.protocol).finish();
        case 'Stop':
            return new Writer(ClientType.Stop).flag(msg.retain).rest(msg.protocol).finish();
        case 'Close':
            return new Writer(ClientType.Close).id(msg.id).finish();
        case 'Data':
            return new Writer(ClientType.Data).id(msg.id).rest(msg.data).finish();
        case 'Connect': {
            const w = new Writer(ClientType.Connect).flag(msg.frames);
            if (typeof msg.relay === 'string') {
                w.str(msg.protocol, 'PROTOCOL').str(msg.relay, 'RELAY');
            } else {
                w.flag(msg.relay).str(msg.protocol, 'PROTOCOL');
            }
            return w.rest(msg.peer).finish();
        }
        case 'Presence':
            return new Writer(ClientType.Presence).flag(msg.on).finish();
        default:
            throw new TypeError(`unknown client message type ${JSON.stringify(msg?.type)}`);
    }
}

/**
 * Decodes one client message (both layouts, as the daemon does). Throws an Error naming
 * the message and field when the bytes do not form a message; ignores trailing bytes a
 * fixed-size message does not use. Returns the objects encodeClientMessage takes, with
 * `id` a BigInt, `data` a Uint8Array (a view into `bytes`) and `key` a string.
 */
export function decodeClientMessage(bytes) {
    const b = toBytes(bytes);
    if (b.length === 0) throw new Error('empty message');
    const type = b[0];
    switch (type) {
        case ClientType.Start: {
            // `[KEY: rest]`, or the README's `[KEY: str]`: base64 never starts with a byte
            // below 0x20, a str length of a key under 8 KiB always does.
            if (b.length > 1 && b[1] < 0x20) {
                return { type: 'Start', key: new Reader(b, 'Start').str('KEY') };
            }
            return { type: 'Start', key: lossyDecoder.decode(b.subarray(1)) };
        }
        case ClientType.Listen: {
            const r = new Reader(b, 'Listen');
            const frames = r.flag('FRAMES');
            return { type: 'Listen', frames, protocol: r.restText('PROTOCOL') };
        }
        case ClientType.Stop: {
            const r = new Reader(b, 'Stop');
            if (b.length < 2) r.take(1, 'PROTOCOL');
            if (b[1] === 0x2f) return { type: 'Stop', retain: false, protocol: r.restText('PROTOCOL') };
            if (b[1] > 1) {
                throw new Error("Stop: first byte must be RETAIN (0 or 1) or the protocol's leading '/'");
            }
            const retain = r.flag('RETAIN');
            return { type: 'Stop', retain, protocol: r.restText('PROTOCOL') };
        }
        case ClientType.Close:
            return { type: 'Close', id: new Reader(b, 'Close').id() };
        case ClientType.Data: {
            const r = new Reader(b, 'Data');
            const id = r.id();
            return { type: 'Data', id, data: r.rest() };
        }
        case ClientType.Connect:
            return decodeConnect(b);
        case ClientType.Presence:
            return { type: 'Presence', on: new Reader(b, 'Presence').flag('ON') };
        default:
            throw new Error(`unknown message type ${type}`);
    }
}

// Connect has two layouts; only one reading normally yields a protocol that fits the
// message and starts with '/'. The client's layout wins a tie; when neither reading is a
// protocol id, the client layout's reading (or its error) is the answer.
function decodeConnect(b) {
    const attempt = (read) => {
        try {
            return { msg: read(new Reader(b, 'Connect')) };
        } catch (error) {
            return { error };
        }
    };
    const clientLayout = attempt((r) => {
        const frames = r.flag('FRAMES');
        const relay = r.flag('RELAY');
        const protocol = r.str('PROTOCOL');
        return { type: 'Connect', frames, relay, protocol, peer: r.restText('PEERID') };
    });
    const isProtocolId = (a) => a.msg && a.msg.protocol.startsWith('/');
    if (isProtocolId(clientLayout)) return clientLayout.msg;
    const readmeLayout = attempt((r) => {
        const frames = r.flag('FRAMES');
        const protocol = r.str('PROTOCOL');
        const relay = r.str('RELAY');
        return { type: 'Connect', frames, relay: relay === '' ? false : relay, protocol, peer: r.restText('PEERID') };
    });
    if (isProtocolId(readmeLayout)) return readmeLayout.msg;
    if (clientLayout.error) throw clientLayout.error;
    return clientLayout.msg;
}

// ------------------------------------------------------------------ server messages

/**
 * Encodes a server message object (what the daemon sends); useful for tests and fakes.
 *
 *   {type: 'Hello', started, version}
 *   {type: 'Identify', public, peerID, addresses, key}   addresses: JSON text or an array
 *   {type: 'ListenerConnection' | 'PeerConnection', id, peerID, protocol}
 *   {type: 'ConnectionClosed', id, reason}
 *   {type: 'Data', id, data}
 *   {type: 'ListenRefused' | 'ListenerClosed' | 'Listening', protocol}
 *   {type: 'PeerConnectionRefused', peerID, protocol, error}
 *   {type: 'ProtocolError', msg}
 *   {type: 'Peer', state, peerID, info}     state: 0..255 (see PeerState); info: JSON text or an object
 *   {type: 'LocalListener', up, protocol}
 *   {type: 'PresenceReady'} | {type: 'PresenceResync'}
 *   {type: 'Relayed', id, relay}            relay: the relay's base58 peer id, or '' if unknown
 */
export function encodeServerMessage(msg) {
    if (typeof msg?.type !== 'string' || !Object.hasOwn(ServerType, msg.type)) {
        throw new TypeError(`unknown server message type ${JSON.stringify(msg?.type)}`);
    }
    const w = new Writer(ServerType[msg.type]);
    switch (msg.type) {
        case 'Hello':
            return w.flag(msg.started).rest(msg.version ?? '').finish();
        case 'Identify': {
            const addrs = typeof msg.addresses === 'string' ? msg.addresses : JSON.stringify(msg.addresses ?? []);
            return w.flag(msg.public).str(msg.peerID, 'PEERID').str(addrs, 'ADDRESSES').rest(msg.key ?? '').finish();
        }
        case 'ListenerConnection':
        case 'PeerConnection':
            return w.id(msg.id).str(msg.peerID, 'PEERID').rest(msg.protocol).finish();
        case 'ConnectionClosed':
            return w.id(msg.id).rest(msg.reason ?? '').finish();
        case 'Data':
            return w.id(msg.id).rest(msg.data).finish();
        case 'ListenRefused':
        case 'ListenerClosed':
        case 'Listening':
            return w.rest(msg.protocol).finish();
        case 'PeerConnectionRefused':
            return w.str(msg.peerID, 'PEERID').str(msg.protocol, 'PROTOCOL').rest(msg.error ?? '').finish();
        case 'ProtocolError':
            return w.rest(msg.msg ?? '').finish();
        case 'Peer': {
            const state = Number(msg.state);
            if (!Number.isInteger(state) || state < 0 || state > 255) {
                throw new RangeError(`Peer STATE must be an integer 0..255, got ${String(msg.state)}`);
            }
            const info = typeof msg.info === 'string' ? msg.info : JSON.stringify(msg.info ?? {});
            return w.bytes(Uint8Array.of(state)).str(msg.peerID, 'PEERID').rest(info).finish();
        }
        case 'LocalListener':
            return w.flag(msg.up).rest(msg.protocol).finish();
        case 'PresenceReady':
        case 'PresenceResync':
            return w.finish();
        case 'Relayed':
            return w.id(msg.id).rest(msg.relay ?? '').finish();
    }
    throw new TypeError(`unknown server message type ${msg.type}`);
}

/**
 * Decodes one server message. Throws an Error on an empty or truncated message or
 * invalid UTF-8 in a text field; ignores trailing bytes it does not expect. A type
 * this library does not know (16 and up, future extensions) decodes to
 * `{type: 'Unknown', code, body}` so callers can skip it. A Peer message's `info` is
 * the JSON text as sent (parse it with parsePeerInfo), its `state` the STATE byte.
 * Relayed decodes to `{type: 'Relayed', id, relay}`, `id` a BigInt like every other
 * connection id, `relay` a string ('' when the daemon does not know the relay).
 */
export function decodeServerMessage(bytes) {
    const b = toBytes(bytes);
    if (b.length === 0) throw new Error('empty message');
    const code = b[0];
    const name = SERVER_NAMES[code];
    if (name === undefined) return { type: 'Unknown', code, body: b.subarray(1) };
    const r = new Reader(b, name.replace(/([a-z])([A-Z])/g, '$1 $2'));
    switch (code) {
        case ServerType.Hello: {
            const started = r.flag('STARTED', false);
            return { type: 'Hello', started, version: r.restText('VERSION') };
        }
        case ServerType.Identify: {
            const pub = r.flag('PUBLIC', false);
            const peerID = r.str('PEERID');
            const addresses = r.str('ADDRESSES');
            return { type: 'Identify', public: pub, peerID, addresses, key: r.restText('KEY') };
        }
        case ServerType.ListenerConnection:
        case ServerType.PeerConnection: {
            const id = r.id();
            const peerID = r.str('PEERID');
            return { type: name, id, peerID, protocol: r.restText('PROTOCOL') };
        }
        case ServerType.ConnectionClosed: {
            const id = r.id();
            return { type: 'ConnectionClosed', id, reason: r.restText('REASON') };
        }
        case ServerType.Data: {
            const id = r.id();
            return { type: 'Data', id, data: r.rest() };
        }
        case ServerType.ListenRefused:
        case ServerType.ListenerClosed:
        case ServerType.Listening:
            return { type: name, protocol: r.restText('PROTOCOL') };
        case ServerType.PeerConnectionRefused: {
            const peerID = r.str('PEERID');
            const protocol = r.str('PROTOCOL');
            return { type: 'PeerConnectionRefused', peerID, protocol, error: r.restText('ERROR') };
        }
        case ServerType.ProtocolError:
            return { type: 'ProtocolError', msg: r.restText('MSG') };
        case ServerType.Peer: {
            const state = r.take(1, 'STATE')[0];
            const peerID = r.str('PEERID');
            return { type: 'Peer', state, peerID, info: r.restText('INFO') };
        }
        case ServerType.LocalListener: {
            const up = r.flag('UP', false);
            return { type: 'LocalListener', up, protocol: r.restText('PROTOCOL') };
        }
        case ServerType.PresenceReady:
            return { type: 'PresenceReady' };
        case ServerType.PresenceResync:
            return { type: 'PresenceResync' };
        case ServerType.Relayed: {
            const id = r.id();
            return { type: 'Relayed', id, relay: r.restText('RELAY') };
        }
    }
    /* c8 ignore next */
    throw new Error(`unknown message type ${code}`);
}

// ------------------------------------------------------------------ Ascii85 and connect strings

/**
 * Ascii85 exactly as Go's encoding/ascii85 (and Python's base64.a85encode): Adobe's
 * alphabet '!'..'u', 'z' for a full all-zero 4-byte group, a final partial group of n
 * bytes as n+1 characters, no '<~' '~>' delimiters.
 */
export function a85encode(data) {
    const b = toBytes(data);
    const out = [];
    const digits = [0, 0, 0, 0, 0];
    for (let i = 0; i < b.length; i += 4) {
        const n = Math.min(4, b.length - i);
        let v = 0;
        for (let j = 0; j < 4; j++) v = v * 256 + (j < n ? b[i + j] : 0);
        if (v === 0 && n === 4) {
            out.push(0x7a); // 'z'
            continue;
        }
        for (let k = 4; k >= 0; k--) {
            digits[k] = 33 + (v % 85);
            v = Math.floor(v / 85);
        }
        for (let k = 0; k <= n; k++) out.push(digits[k]);
    }
    let text = '';
    for (let i = 0; i < out.length; i += 8192) text += String.fromCharCode(...out.slice(i, i + 8192));
    return text;
}

/**
 * Decodes Ascii85 like Go's encoding/ascii85: characters up to ' ' (whitespace and
 * control bytes) are skipped, 'z' stands for four zero bytes between groups, a final
 * partial group of n characters gives n-1 bytes, and a lone trailing character or any
 * other character is an error.
 */
export function a85decode(text) {
    if (typeof text !== 'string') throw new TypeError('a85decode takes a string');
    const out = [];
    let v = 0;
    let nb = 0;
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c <= 0x20) continue;
        if (c === 0x7a && nb === 0) {
            out.push(0, 0, 0, 0);
            continue;
        }
        if (c < 0x21 || c > 0x75) {
            throw new Error(`invalid Ascii85: unexpected ${JSON.stringify(text[i])} at offset ${i}`);
        }
        v = (v * 85 + (c - 33)) % 4294967296; // Go's uint32 arithmetic wraps
        if (++nb === 5) {
            out.push(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
            v = 0;
            nb = 0;
        }
    }
    if (nb === 1) throw new Error('invalid Ascii85: a lone character in the last group');
    if (nb > 1) {
        for (let k = nb; k < 5; k++) v = (v * 85 + 84) % 4294967296;
        const tail = [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff];
        out.push(...tail.slice(0, nb - 1));
    }
    return Uint8Array.from(out);
}

const CONNECT_PREFIX = '/addrs/';

/**
 * A connect string: "/addrs/" followed by the Ascii85 of the compact JSON
 * {"peerID": ..., "addrs": [...]}. Give it to Connect instead of a bare peer id to
 * dial a peer at known addresses without peer routing.
 */
export function makeConnectString(peerID, addrs = []) {
    if (typeof peerID !== 'string' || peerID === '') throw new TypeError('peerID must be a non-empty string');
    const json = JSON.stringify({ peerID, addrs: [...addrs].map(String) });
    return CONNECT_PREFIX + a85encode(utf8Encoder.encode(json));
}

// Go's encoding/json matches object keys to struct fields case-insensitively with Unicode
// simple folding; the two non-ASCII characters that fold onto letters of "peerid" and
// "addrs" are the long s and the Kelvin sign.
function foldKey(key) {
    return key.toLowerCase().replace(/\u017f/g, 's').replace(/\u212a/g, 'k');
}

/**
 * Parses a connect string back into {peerID, addrs}. Keys match case-insensitively
 * like Go's encoding/json (peerID, PeerID, peerid...); a later duplicate key wins.
 * Throws an Error when the string is not a connect string.
 */
export function parseConnectString(text) {
    if (typeof text !== 'string' || !text.startsWith(CONNECT_PREFIX)) {
        throw new Error(`not a connect string (it must start with ${CONNECT_PREFIX})`);
    }
    let obj;
    try {
        obj = JSON.parse(strictDecoder.decode(a85decode(text.slice(CONNECT_PREFIX.length))));
    } catch (err) {
        throw new Error(`bad connect string: ${err.message}`);
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
        throw new Error('bad connect string: not a JSON object');
    }
    let peerID = '';
    let addrs = [];
    for (const [key, value] of Object.entries(obj)) {
        const k = foldKey(key);
        if (k === 'peerid') {
            if (value !== null && typeof value !== 'string') throw new Error('bad connect string: peerID is not a string');
            peerID = value ?? '';
        } else if (k === 'addrs') {
            if (value !== null && (!Array.isArray(value) || value.some((a) => typeof a !== 'string'))) {
                throw new Error('bad connect string: addrs is not an array of strings');
            }
            addrs = value ?? [];
        }
    }
    if (!peerID) throw new Error('bad connect string: no peerID');
    return { peerID, addrs };
}

/** True when `text` looks like a connect string ("/addrs/..."). */
export function isConnectString(text) {
    return typeof text === 'string' && text.startsWith(CONNECT_PREFIX);
}

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
function receiveBinary(ws, onBytes) {
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

function defaultUrl() {
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

function parseAddresses(json) {
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

// ------------------------------------------------------------------ promise API

const kSend = Symbol('send');
const kData = Symbol('data');
const kClosed = Symbol('closed');
const kForget = Symbol('forget');
const kRelayed = Symbol('relayed');

/**
 * One libp2p stream, opened by `Gateway.connect()` (incoming = false) or accepted by a
 * listener (incoming = true, delivered by the gateway's `connection` event).
 *
 * Events: `data` (detail: Uint8Array; with a framed protocol one event per frame),
 * `close` (detail: the reason text) and `relayed` (detail: the relay's peer id, see
 * below). Data that arrives while nobody consumes it (no `data` listener, no running
 * async iteration) is kept and handed to the next consumer.
 *
 *   for await (const chunk of conn) { ... }   // ends when the connection closes
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
    #backlog = [];
    #flushing = false;

    constructor(gateway, id, peerID, protocol, incoming) {
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
        /** Set once the connection is closed; `reason` says why. */
        this.closed = false;
        this.reason = null;
        /** True when the stream goes through a circuit relay (see above: may turn true just after creation). */
        this.relayed = false;
        /** The relay's base58 peer id when `relayed` ('' when not relayed, or the relay is unknown). */
        this.relay = '';
    }

    get gateway() {
        return this.#gateway;
    }

    /** Sends bytes (a string goes as UTF-8). With a framed protocol each call is one frame. */
    send(data) {
        if (this.closed) throw new Error(`connection ${this.id} is closed`);
        this.#gateway[kSend]({ type: 'Data', id: this.id, data: toBytes(data) });
    }

    /** Sends JSON.stringify(value) as UTF-8. */
    sendJSON(value) {
        this.send(JSON.stringify(value));
    }

    /** Closes the stream. The `close` event fires at once with reason "closed". */
    close() {
        if (this.closed) return;
        try {
            this.#gateway[kSend]({ type: 'Close', id: this.id });
        } catch {
            /* the gateway is gone already */
        }
        this.#gateway[kForget](this.id);
        this[kClosed]('closed');
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
        if (this.#backlog.length > 0 && !this.#flushing) {
            // hand over in a microtask, so the code adding the listener finishes first
            this.#flushing = true;
            queueMicrotask(() => this.#flush());
        }
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

    /** Yields each chunk (Uint8Array) until the connection closes. `break` leaves it open. */
    [Symbol.asyncIterator]() {
        const queue = [];
        let waiter = null;
        let done = false;
        const sink = {
            push: (chunk) => {
                if (done) return;
                if (waiter) {
                    const w = waiter;
                    waiter = null;
                    w({ value: chunk, done: false });
                } else {
                    queue.push(chunk);
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
            for (const chunk of early) sink.push(chunk);
            if (this.closed) sink.end();
        }
        const finish = () => {
            this.#iterators.delete(sink);
            queue.length = 0;
            sink.end();
            return Promise.resolve({ value: undefined, done: true });
        };
        return {
            next: () => {
                if (queue.length > 0) return Promise.resolve({ value: queue.shift(), done: false });
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

    #flush() {
        this.#flushing = false;
        while (this.#backlog.length > 0 && this.#hasConsumers()) this.#deliver(this.#backlog.shift());
    }

    #deliver(chunk) {
        for (const it of this.#iterators) it.push(chunk);
        fire(this, 'data', chunk);
    }

    [kData](chunk) {
        if (this.closed) return;
        if (this.#flushing || !this.#hasConsumers()) this.#backlog.push(chunk);
        else this.#deliver(chunk);
    }

    // The daemon's Relayed message for this stream; returns whether it changed anything.
    [kRelayed](relay) {
        if (this.closed || this.relayed) return false;
        this.relayed = true;
        this.relay = relay;
        fire(this, 'relayed', relay);
        return true;
    }

    [kClosed](reason) {
        if (this.closed) return;
        this.closed = true;
        this.reason = reason;
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
 * `{extensions: false}` to Gateway.connect() to send nothing of the kind.
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
     * is called).
     */
    static async connect(url, options = {}) {
        if (url !== undefined && url !== null && typeof url === 'object' && !(url instanceof URL)) {
            options = url;
            url = undefined;
        }
        const WS = options.WebSocket ?? globalThis.WebSocket;
        if (typeof WS !== 'function') throw new Error('no WebSocket class available: pass {WebSocket}');
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

    /** Resolves when the daemon confirms (Listening); rejects on Listen Refused. */
    listen(protocol, { framed = true } = {}) {
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
            const entry = { peer, peerID, protocol, resolve, reject };
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

    // Presence OFF opts the session in to extension messages without subscribing. Sent
    // once, after the node is identified, and only when no Presence went out before (a
    // later one would end a subscription on the daemon).
    #optIn() {
        if (!this.#extensions || this.#presenceSent) return;
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
                this.#ready.resolve(this);
                fire(this, 'identify', { peerID: this.peerID, addresses: this.addresses, public: this.public, key: this.key });
                break;
            }
            case 'ListenerConnection': {
                const conn = new Connection(this, m.id, m.peerID, m.protocol, true);
                this.#connections.set(m.id, conn);
                fire(this, 'connection', conn);
                break;
            }
            case 'PeerConnection': {
                const conn = new Connection(this, m.id, m.peerID, m.protocol, false);
                this.#connections.set(m.id, conn);
                const pending = this.#takeConnect(m.peerID, m.protocol);
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
                const conn = this.#connections.get(m.id);
                if (conn) {
                    this.#connections.delete(m.id);
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
        const conns = [...this.#connections.values()];
        this.#connections.clear();
        for (const conn of conns) conn[kClosed]('gateway closed');
        this.listening.clear();
        const subscribers = this.#presence.pending;
        const hadPresence = this.#presence.subscribed;
        this.#resetPresence();
        subscribers.forEach(fail);
        if (hadPresence) fire(this, 'presence', { kind: 'closed' });
        fire(this, 'close', { code: event?.code, reason: event?.reason ?? '' });
    }
}

// ------------------------------------------------------------------ the original's callback API
//
// The original protocol.js exported one default object; pages did
//
//   import libp2p from './protocol.js'
//   libp2p.startProtocol('ws://' + location.host + '/libp2p', handler)
//
// and implemented handler methods named after the server messages, arguments in the
// order of the message fields:
//
//   hello(started, version)                 ident(status, peerID, addresses, peerKey)
//   listenerConnection(conID, peerID, prot) connectionClosed(conID, reason)
//   data(conID, data, obj)                  listenRefused(protocol)
//   listenerClosed(protocol)                peerConnection(conID, peerID, prot)
//   peerConnectionRefused(peerID, prot, msg) error(msg)
//   listening(protocol)
//
// with status 'public' or 'private', addresses an array, conID a BigInt and data a
// Uint8Array. Commands went over the most recently started socket: start(peerKey),
// listen(protocol, frames), stop(protocol, retainConnections), connect(peerID, prot,
// frames, relay), close(conID), sendData(conID, bytes), sendString(conID, text),
// sendObject(conID, value).

/** The NAT status strings handed to `ident`. */
export const natStatus = Object.freeze({
    unknown: 'unknown',
    public: 'public',
    private: 'private',
    maybePublic: 'maybePublic',
});

/** Error codes the original sent to peers in {name: 'error', code, error} objects. */
export const relayErrors = Object.freeze({
    hostingNotAllowed: 'relayHostingNotAllowed',
    unknownCommand: 'unknownRelayCommand',
    badCommand: 'badRelayCommand',
    relayingError: 'relayingError',
    badProtocol: 'badRelayProtocol',
    badCallback: 'badCallback',
});

let legacySocket = null;

function legacySend(msg, cb) {
    if (!legacySocket) throw new Error('startProtocol() has not been called');
    legacySocket.send(encodeClientMessage(msg));
    if (typeof cb === 'function') queueMicrotask(cb);
}

function callHandler(handler, name, args) {
    if (handler && typeof handler[name] === 'function') handler[name](...args);
}

/**
 * Opens the control WebSocket and dispatches every server message to `handler`'s
 * method of the same name (see above; missing methods are skipped). Later command
 * functions use this socket. Returns the WebSocket. The third argument, {WebSocket},
 * is an addition: a WebSocket class to use instead of the global one.
 */
export function startProtocol(urlStr, handler, options = {}) {
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') throw new Error('no WebSocket class available: pass {WebSocket}');
    const ws = new WS(String(urlStr ?? defaultUrl()));
    legacySocket = ws;
    receiveBinary(ws, (bytes) => {
        let m;
        try {
            m = decodeServerMessage(bytes);
        } catch (err) {
            console.error('libp2p-websocket: undecodable message from the daemon:', err.message);
            return;
        }
        switch (m.type) {
            case 'Hello':
                return callHandler(handler, 'hello', [m.started, m.version]);
            case 'Identify':
                return callHandler(handler, 'ident', [
                    m.public ? natStatus.public : natStatus.private,
                    m.peerID,
                    parseAddresses(m.addresses),
                    m.key,
                ]);
            case 'ListenerConnection':
                return callHandler(handler, 'listenerConnection', [m.id, m.peerID, m.protocol]);
            case 'ConnectionClosed':
                return callHandler(handler, 'connectionClosed', [m.id, m.reason]);
            case 'Data':
                return callHandler(handler, 'data', [m.id, m.data]);
            case 'ListenRefused':
                return callHandler(handler, 'listenRefused', [m.protocol]);
            case 'ListenerClosed':
                return callHandler(handler, 'listenerClosed', [m.protocol]);
            case 'PeerConnection':
                return callHandler(handler, 'peerConnection', [m.id, m.peerID, m.protocol]);
            case 'PeerConnectionRefused':
                return callHandler(handler, 'peerConnectionRefused', [m.peerID, m.protocol, m.error]);
            case 'ProtocolError':
                return callHandler(handler, 'error', [m.msg]);
            case 'Listening':
                return callHandler(handler, 'listening', [m.protocol]);
            default:
                // Extension messages (presence, Relayed: this API never opts in, so a daemon
                // does not send them) and unknown (newer) message types are ignored.
                return undefined;
        }
    });
    ws.addEventListener('open', () => console.log('libp2p-websocket: connected, waiting for the node...'));
    ws.addEventListener('error', (err) => console.log('libp2p-websocket: WebSocket error', err));
    return ws;
}

/** Start: starts the daemon's node with a private key (base64), or a fresh one. */
export function start(peerKey) {
    legacySend({ type: 'Start', key: peerKey || '' });
}

/** Listen on a protocol; frames: whether each message is a length-prefixed frame. */
export function listen(protocol, frames) {
    legacySend({ type: 'Listen', frames: !!frames, protocol });
}

/** Stop listening; retainConnections keeps the listener's open connections. */
export function stop(protocol, retainConnections) {
    legacySend({ type: 'Stop', retain: !!retainConnections, protocol });
}

/**
 * Connect to a peer id or connect string. relay: true allows a relayed connection;
 * a string (an addition) names the relay peer to use.
 */
export function connect(peerID, prot, frames, relay) {
    legacySend({
        type: 'Connect',
        frames: !!frames,
        relay: typeof relay === 'string' && relay !== '' ? relay : !!relay,
        protocol: prot,
        peer: peerID,
    });
}

/** Close a connection. */
export function close(conID, cb) {
    legacySend({ type: 'Close', id: conID }, cb);
}

/** Send bytes on a connection. */
export function sendData(conID, data, cb) {
    legacySend({ type: 'Data', id: conID, data: toBytes(data) }, cb);
}

/** Send a string (UTF-8) on a connection. */
export function sendString(conID, str, cb) {
    sendData(conID, utf8Encoder.encode(String(str)), cb);
}

/** Send JSON.stringify(object) on a connection. */
export function sendObject(conID, object, cb) {
    sendString(conID, JSON.stringify(object), cb);
}

/** Decodes UTF-8 bytes (Uint8Array or ArrayBuffer) into a string. */
export function getString(buf) {
    return lossyDecoder.decode(buf);
}

/** The original's check: its chat used protocols beginning /x/. Returns an error text or undefined. */
export function checkProt(str) {
    if (!/^\/x\//.test(str)) {
        return `Bad protocol format, protocols must begin with /x/ but this protocol is ${str}`;
    }
    return undefined;
}

/** Peer ids contain no slash. Returns an error text or undefined. */
export function checkPeerID(str) {
    if (!/^[^/]+$/.test(str)) return `Bad peer ID format, peer ids must not contain slashes this id is ${str}`;
    return undefined;
}

/** The original's Ascii85 of a string (taken as UTF-8 here) or bytes. */
export function encode_ascii85(str) {
    return a85encode(str);
}

/** The original's inverse: Ascii85 text to a (UTF-8 decoded) string. */
export function decode_ascii85(str) {
    return lossyDecoder.decode(a85decode(str));
}

/** Tells a peer about an error in the original's {name: 'error', code, error} form. */
export function connectionError(conID, code, msg, isCatastrophic, extra) {
    const err = Object.assign({ name: 'error', code, error: msg }, extra ?? {});
    console.error(`Error on connection ${conID}: ${msg}${isCatastrophic ? ' (closing it)' : ''}`, extra ?? '');
    sendObject(conID, err);
    if (isCatastrophic) close(conID);
}

/** Handler with every callback as a no-op: extend it and override what you need. */
export class BlankHandler {
    hello(started, version) {}
    ident(status, peerID, addresses, peerKey) {}
    listenerConnection(conID, peerID, prot) {}
    connectionClosed(conID, reason) {}
    data(conID, data, obj) {}
    listenRefused(protocol) {}
    listenerClosed(protocol) {}
    peerConnection(conID, peerID, prot) {}
    peerConnectionRefused(peerID, prot, msg) {}
    error(msg) {}
    listening(protocol) {}
}

const HANDLER_METHODS = Object.getOwnPropertyNames(BlankHandler.prototype).filter((n) => n !== 'constructor');

function tryDelegate(delegate, name, args) {
    if (delegate && typeof delegate[name] === 'function') delegate[name](...args);
}

/** Passes every callback on to `this.delegate` (when it has that method). */
export class DelegatingHandler {
    constructor(delegate) {
        this.delegate = delegate;
    }
    insertDelegatingHandler(handler) {
        handler.delegate = this.delegate;
        this.delegate = handler;
    }
}
for (const name of HANDLER_METHODS) {
    Object.defineProperty(DelegatingHandler.prototype, name, {
        value: function (...args) {
            tryDelegate(this.delegate, name, args);
        },
        writable: true,
        configurable: true,
    });
}

/** Logs every callback, then delegates. */
export class LoggingHandler extends DelegatingHandler {}
for (const name of HANDLER_METHODS) {
    Object.defineProperty(LoggingHandler.prototype, name, {
        value: function (...args) {
            console.log('RECEIVED MESSAGE:', name, ...args);
            DelegatingHandler.prototype[name].apply(this, args);
        },
        writable: true,
        configurable: true,
    });
}

/** What TrackingHandler records about a connection. */
export class ConnectionInfo {
    constructor(conID, peerID, protocol, incoming) {
        this.conID = conID;
        this.peerID = peerID;
        this.protocol = protocol;
        this.incoming = incoming;
        this.outgoing = !incoming;
    }
}

/** The ConnectionInfo of conID in a TrackingHandler's `connections` object. */
export function getConnectionInfo(connections, conID) {
    return connections.infoByConID.get(conID);
}

/** The ConnectionInfo of the connection to peerID over protocol, if any. */
export function getInfoForPeerAndProtocol(connections, peerID, protocol) {
    const byPeer = connections.conIDsByPeerID.get(peerID);
    if (!byPeer || !byPeer.has(protocol)) return undefined;
    return connections.infoByConID.get(byPeer.get(protocol));
}

function forgetConnection(connections, conID) {
    const info = connections.infoByConID.get(conID);
    if (info) {
        const byPeer = connections.conIDsByPeerID.get(info.peerID);
        if (byPeer) {
            byPeer.delete(conID);
            if (byPeer.get(info.protocol) === conID) byPeer.delete(info.protocol);
            if (byPeer.size === 0) connections.conIDsByPeerID.delete(info.peerID);
        }
    }
    connections.infoByConID.delete(conID);
}

/**
 * Keeps track of the session in `connections` (default: the delegate): peerID,
 * natStatus, listeningTo (Set of protocols), infoByConID (Map conID -> ConnectionInfo)
 * and conIDsByPeerID (Map peerID -> Map holding conID -> protocol and protocol -> conID).
 */
export class TrackingHandler extends DelegatingHandler {
    constructor(delegate, connections) {
        super(delegate);
        this.connections = connections = connections || delegate || {};
        connections.infoByConID = new Map();
        connections.conIDsByPeerID = new Map();
        connections.natStatus = natStatus.unknown;
        connections.listeningTo = new Set();
    }
    ident(status, peerID, addresses, peerKey, ...more) {
        this.connections.peerID = peerID;
        this.connections.natStatus = status;
        super.ident(status, peerID, addresses, peerKey, ...more);
    }
    #track(conID, peerID, prot, incoming) {
        const c = this.connections;
        c.infoByConID.set(conID, new ConnectionInfo(conID, peerID, prot, incoming));
        let byPeer = c.conIDsByPeerID.get(peerID);
        if (!byPeer) c.conIDsByPeerID.set(peerID, (byPeer = new Map()));
        byPeer.set(conID, prot);
        byPeer.set(prot, conID);
    }
    listenerConnection(conID, peerID, prot) {
        this.#track(conID, peerID, prot, true);
        super.listenerConnection(conID, peerID, prot);
    }
    peerConnection(conID, peerID, prot) {
        this.#track(conID, peerID, prot, false);
        super.peerConnection(conID, peerID, prot);
    }
    connectionClosed(conID, reason) {
        super.connectionClosed(conID, reason);
        forgetConnection(this.connections, conID);
    }
    listening(protocol) {
        this.connections.listeningTo.add(protocol);
        super.listening(protocol);
    }
    listenerClosed(protocol) {
        super.listenerClosed(protocol);
        this.connections.listeningTo.delete(protocol);
    }
}

/**
 * Runs JSON commands ({name: 'command', ...}) arriving on connections of the given
 * protocols by calling this[name](info, command) for each name in `commands` (an
 * array, Set or object whose keys are the names). Other data goes to the delegate;
 * so does an unknown or unparsable command when delegateData is set, otherwise the
 * peer gets an error and the connection closes.
 */
export class CommandHandler extends DelegatingHandler {
    constructor(delegate, connections, commands, delegateData, protocols) {
        super(delegate);
        this.connections = connections || this;
        this.commandConnections = new Set();
        this.protocols = new Set(protocols ?? []);
        if (commands instanceof Set) this.commands = commands;
        else if (Array.isArray(commands)) this.commands = new Set(commands);
        else if (commands && typeof commands === 'object' && !(commands instanceof Map)) {
            this.commands = new Set(Object.keys(commands));
        } else throw new Error('commands must be an array, a Set or an object');
        this.delegateData = delegateData;
    }
    listenerConnection(conID, peerID, prot) {
        if (this.protocols.has(prot)) this.commandConnections.add(conID);
        super.listenerConnection(conID, peerID, prot);
    }
    peerConnection(conID, peerID, prot) {
        if (this.protocols.has(prot)) this.commandConnections.add(conID);
        super.peerConnection(conID, peerID, prot);
    }
    connectionClosed(conID, reason) {
        this.commandConnections.delete(conID);
        super.connectionClosed(conID, reason);
    }
    data(conID, data, obj) {
        const info = this.connections.infoByConID?.get(conID) ?? new ConnectionInfo(conID, undefined, undefined, undefined);
        if (!this.shouldHandleCommand(info, data, obj)) return super.data(conID, data, obj);
        if (obj === undefined) {
            try {
                obj = JSON.parse(getString(data));
            } catch {
                if (this.delegateData) return super.data(conID, data);
                return connectionError(conID, relayErrors.badCommand, 'Bad command, could not parse JSON', true);
            }
        }
        try {
            if (this.handleCommand(info, data, obj)) return undefined;
            if (this.delegateData) return super.data(conID, data, obj);
            return connectionError(conID, relayErrors.unknownCommand, `Unknown command: ${obj?.name}`, true);
        } catch (err) {
            return connectionError(conID, relayErrors.relayingError, `Error during command "${obj?.name}":\n${err.stack}`, true);
        }
    }
    shouldHandleCommand(info, data, obj) {
        return this.commandConnections.has(info.conID);
    }
    handleCommand(info, data, obj) {
        if (obj && this.commands.has(obj.name) && typeof this[obj.name] === 'function') {
            this[obj.name](info, obj);
            return true;
        }
        return false;
    }
}

/** Everything, as one object: the original's export style (`import libp2p from './protocol.js'`). */
const libp2p = {
    // the original's names
    startProtocol,
    start,
    listen,
    stop,
    connect,
    close,
    sendData,
    sendString,
    sendObject,
    getString,
    checkProt,
    checkPeerID,
    connectionError,
    encode_ascii85,
    decode_ascii85,
    natStatus,
    relayErrors,
    BlankHandler,
    DelegatingHandler,
    LoggingHandler,
    TrackingHandler,
    CommandHandler,
    ConnectionInfo,
    getConnectionInfo,
    getInfoForPeerAndProtocol,
    utfDecoder: lossyDecoder,
    utfEncoder: utf8Encoder,
    // this library's additions
    Gateway,
    Connection,
    ClientType,
    ServerType,
    PeerState,
    peerStateName,
    parsePeerInfo,
    KEY_STORAGE_NAME,
    encodeClientMessage,
    decodeClientMessage,
    encodeServerMessage,
    decodeServerMessage,
    a85encode,
    a85decode,
    makeConnectString,
    parseConnectString,
    isConnectString,
    toBytes,
};

export default libp2p;
