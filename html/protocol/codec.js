// codec.js: the pure codec of protocol.js: message layouts (PROTOCOL.md), their
// encoders and decoders, Ascii85 and the "/addrs/" connect strings. No I/O.

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
    /** Turns extensions on (PROTOCOL.md, "Extension: credit"): `[NAMES: rest]`. */
    Extensions: 7,
    /** The credit extension: `[ID:8][BYTES:4]`, the page consumed BYTES more of stream ID. */
    Credit: 8,
    /** The resume extension: `[COUNT:8]`, numbered server messages received so far. */
    Ack: 9,
    /** The pubsub extension: `[TOPIC: rest]`. */
    Subscribe: 10,
    /** The pubsub extension: `[TOPIC: rest]`. */
    Unsubscribe: 11,
    /** The pubsub extension: `[TOPIC: str][DATA: rest]`. */
    Publish: 12,
});

/**
 * Server-to-client message types (byte 0). 0 to 10 are the original protocol. From 11 on
 * they are opt-in extensions. 11 to 15 go only to a session that sent a Presence message
 * (ON 1 or 0): 11 to 14 belong to the presence extension (to a session that subscribed);
 * 15, Relayed `[ID:8][RELAY: rest]`, follows the Peer Connection or Listener Connection
 * of a stream that goes through a circuit relay. 16, Extensions `[NAMES: rest]`, answers
 * the client's Extensions; 17, Credit `[ID:8][BYTES:4]`, gives send credit back (the
 * credit extension); 18, Reachability `[STATE:1]`; 19 to 21 the resume extension: Ack
 * `[COUNT:8]`, Resumed `[COUNT:8][TOKEN: rest]`, Resume Refused `[REASON: rest]`; 22 to
 * 26 the pubsub extension: Subscribed `[TOPIC: rest]`, Topic Refused `[TOPIC: str][REASON:
 * rest]`, Message `[TOPIC: str][FROM: str][SEQ:8][DATA: rest]`, Topic Peer
 * `[JOINED:1][TOPIC: str][PEERID: rest]`, Missed `[TOPIC: str][COUNT:8]`. Types from 27
 * on are future extensions.
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
    Extensions: 16,
    Credit: 17,
    Reachability: 18,
    Ack: 19,
    Resumed: 20,
    ResumeRefused: 21,
    Subscribed: 22,
    TopicRefused: 23,
    TopicMessage: 24,
    TopicPeer: 25,
    Missed: 26,
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

/** The longest NAMES an Extensions message may carry, in bytes. */
export const MAX_EXTENSIONS = 1024;

/** The largest BYTES a Credit message can carry (u32); it must be above 0. */
export const MAX_CREDIT = 0xffffffff;

const SERVER_NAMES = Object.keys(ServerType);
export const utf8Encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
export const lossyDecoder = new TextDecoder('utf-8');

// ------------------------------------------------------------------ bytes helpers

export const Blob_ = globalThis.Blob ?? class NoBlob {};

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
    id(v, what = 'id') {
        const b = new Uint8Array(8);
        new DataView(b.buffer).setBigUint64(0, toId(v, what));
        return this.bytes(b);
    }
    count(v) {
        return this.id(v, 'COUNT');
    }
    credit(v) {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > MAX_CREDIT) {
            throw new RangeError(`Credit BYTES must be an integer 1..${MAX_CREDIT}, got ${String(v)}`);
        }
        const b = new Uint8Array(4);
        new DataView(b.buffer).setUint32(0, n);
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
    id(field = 'ID') {
        const b = this.take(8, field);
        return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0);
    }
    count() {
        return this.id('COUNT');
    }
    // Credit's BYTES: a big-endian u32 above 0.
    credit() {
        const b = this.take(4, 'BYTES');
        const n = new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
        if (n === 0) throw new Error(`${this.msg}: BYTES must be above 0`);
        return n;
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
 *   {type: 'Extensions', names}                  names: printable ASCII, at most 1024 bytes
 *   {type: 'Credit', id, bytes}                  bytes: an integer 1..2^32-1
 *   {type: 'Ack', count}                         count: BigInt (or integer number/string)
 *   {type: 'Subscribe' | 'Unsubscribe', topic}
 *   {type: 'Publish', topic, data}               data: Uint8Array, ArrayBuffer or string
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
        case 'Extensions': {
            const names = utf8Encoder.encode(msg.names ?? '');
            checkNames(names, RangeError);
            return new Writer(ClientType.Extensions).bytes(names).finish();
        }
        case 'Credit':
            return new Writer(ClientType.Credit).id(msg.id).credit(msg.bytes).finish();
        case 'Ack':
            return new Writer(ClientType.Ack).count(msg.count).finish();
        case 'Subscribe':
        case 'Unsubscribe':
            return new Writer(ClientType[msg.type]).rest(msg.topic).finish();
        case 'Publish':
            return new Writer(ClientType.Publish).str(msg.topic, 'TOPIC').rest(msg.data).finish();
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
        case ClientType.Extensions: {
            const names = b.subarray(1);
            checkNames(names, Error);
            return { type: 'Extensions', names: lossyDecoder.decode(names) };
        }
        case ClientType.Credit: {
            const r = new Reader(b, 'Credit');
            const id = r.id();
            return { type: 'Credit', id, bytes: r.credit() };
        }
        case ClientType.Ack:
            return { type: 'Ack', count: new Reader(b, 'Ack').count() };
        case ClientType.Subscribe:
            return { type: 'Subscribe', topic: new Reader(b, 'Subscribe').restText('TOPIC') };
        case ClientType.Unsubscribe:
            return { type: 'Unsubscribe', topic: new Reader(b, 'Unsubscribe').restText('TOPIC') };
        case ClientType.Publish: {
            const r = new Reader(b, 'Publish');
            const topic = r.str('TOPIC');
            return { type: 'Publish', topic, data: r.rest() };
        }
        default:
            throw new Error(`unknown message type ${type}`);
    }
}

// A client's NAMES: printable ASCII (0x20..0x7e), at most MAX_EXTENSIONS bytes.
function checkNames(names, ErrorType) {
    if (names.length > MAX_EXTENSIONS) {
        throw new ErrorType(`Extensions: NAMES is ${names.length} bytes, over ${MAX_EXTENSIONS}`);
    }
    const bad = names.findIndex((c) => c < 0x20 || c > 0x7e);
    if (bad >= 0) {
        throw new ErrorType(`Extensions: NAMES must be printable ASCII (byte 0x${names[bad].toString(16).padStart(2, '0')} at ${bad})`);
    }
}

/**
 * Reads NAMES (of Extensions, or the tail of Hello's VERSION) into a Map from each
 * token's name to its value: `credit receive-window=4194304` gives
 * {'credit' => '', 'receive-window' => '4194304'}. Empty tokens are skipped; a later
 * duplicate wins.
 */
export function parseExtensionNames(names) {
    const out = new Map();
    for (const token of String(names ?? '').split(' ')) {
        if (token === '') continue;
        const eq = token.indexOf('=');
        if (eq < 0) out.set(token, '');
        else out.set(token.slice(0, eq), token.slice(eq + 1));
    }
    return out;
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
 *   {type: 'Extensions', names}             names: what is on, e.g. 'credit stream-window=... presence'
 *   {type: 'Credit', id, bytes}             bytes: an integer 1..2^32-1
 *   {type: 'Reachability', state}           state: 0 unknown, 1 private, 2 public
 *   {type: 'Ack', count} | {type: 'Resumed', count, token} | {type: 'ResumeRefused', reason}
 *   {type: 'Subscribed', topic} | {type: 'TopicRefused', topic, reason}
 *   {type: 'TopicMessage', topic, from, seq, data}   seq: BigInt; from: base58 peer id
 *   {type: 'TopicPeer', joined, topic, peerID} | {type: 'Missed', topic, count}
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
        case 'Extensions':
            return w.rest(msg.names ?? '').finish();
        case 'Credit':
            return w.id(msg.id).credit(msg.bytes).finish();
        case 'Reachability':
            return w.bytes(Uint8Array.of(Number(msg.state) & 0xff)).finish();
        case 'Ack':
            return w.count(msg.count).finish();
        case 'Resumed':
            return w.count(msg.count).rest(msg.token ?? '').finish();
        case 'ResumeRefused':
            return w.rest(msg.reason ?? '').finish();
        case 'Subscribed':
            return w.rest(msg.topic).finish();
        case 'TopicRefused':
            return w.str(msg.topic, 'TOPIC').rest(msg.reason ?? '').finish();
        case 'TopicMessage':
            return w.str(msg.topic, 'TOPIC').str(msg.from, 'FROM').count(msg.seq).rest(msg.data).finish();
        case 'TopicPeer':
            return w.flag(msg.joined).str(msg.topic, 'TOPIC').rest(msg.peerID).finish();
        case 'Missed':
            return w.str(msg.topic, 'TOPIC').count(msg.count).finish();
    }
    throw new TypeError(`unknown server message type ${msg.type}`);
}

/**
 * Decodes one server message. Throws an Error on an empty or truncated message or
 * invalid UTF-8 in a text field; ignores trailing bytes it does not expect. A type
 * this library does not know (27 and up, future extensions) decodes to
 * `{type: 'Unknown', code, body}` so callers can skip it. A Peer message's `info` is
 * the JSON text as sent (parse it with parsePeerInfo), its `state` the STATE byte.
 * Relayed decodes to `{type: 'Relayed', id, relay}`, `id` a BigInt like every other
 * connection id, `relay` a string ('' when the daemon does not know the relay).
 * Extensions decodes to `{type: 'Extensions', names}` (the text; parseExtensionNames
 * reads it), Credit to `{type: 'Credit', id, bytes}`, `bytes` a number above 0.
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
        case ServerType.Extensions:
            return { type: 'Extensions', names: r.restText('NAMES') };
        case ServerType.Credit: {
            const id = r.id();
            return { type: 'Credit', id, bytes: r.credit() };
        }
        case ServerType.Reachability:
            return { type: 'Reachability', state: r.take(1, 'STATE')[0] };
        case ServerType.Ack:
            return { type: 'Ack', count: r.count() };
        case ServerType.Resumed: {
            const count = r.count();
            return { type: 'Resumed', count, token: r.restText('TOKEN') };
        }
        case ServerType.ResumeRefused:
            return { type: 'ResumeRefused', reason: r.restText('REASON') };
        case ServerType.Subscribed:
            return { type: 'Subscribed', topic: r.restText('TOPIC') };
        case ServerType.TopicRefused: {
            const topic = r.str('TOPIC');
            return { type: 'TopicRefused', topic, reason: r.restText('REASON') };
        }
        case ServerType.TopicMessage: {
            const topic = r.str('TOPIC');
            const from = r.str('FROM');
            const seq = r.id('SEQ');
            return { type: 'TopicMessage', topic, from, seq, data: r.rest() };
        }
        case ServerType.TopicPeer: {
            const joined = r.flag('JOINED', false);
            const topic = r.str('TOPIC');
            return { type: 'TopicPeer', joined, topic, peerID: r.restText('PEERID') };
        }
        case ServerType.Missed: {
            const topic = r.str('TOPIC');
            return { type: 'Missed', topic, count: r.count() };
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
