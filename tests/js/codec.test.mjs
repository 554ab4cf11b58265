// The wire codec of html/protocol.js against the shared hex vectors
// (tests/vectors/messages.json, written by tests/vectors/gen.py), plus a fuzz loop.
// Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
    ClientType,
    MAX_CREDIT,
    MAX_EXTENSIONS,
    PeerState,
    ServerType,
    decodeClientMessage,
    decodeServerMessage,
    encodeClientMessage,
    encodeServerMessage,
    parseExtensionNames,
    parsePeerInfo,
    peerStateName,
} from '../../html/protocol.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/messages.json', import.meta.url), 'utf8'));

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

// The vectors' JSON form: ids as decimal strings, data as hex.
function toVectorForm(msg) {
    const out = { ...msg };
    if (typeof out.id === 'bigint') out.id = out.id.toString();
    if (typeof out.count === 'bigint') out.count = out.count.toString();
    if (typeof out.seq === 'bigint') out.seq = out.seq.toString();
    if (out.data instanceof Uint8Array) out.data = hex(out.data);
    return out;
}

function fromVectorForm(msg) {
    const out = { ...msg };
    if (typeof out.id === 'string') out.id = BigInt(out.id);
    if (typeof out.count === 'string') out.count = BigInt(out.count);
    if (typeof out.seq === 'string') out.seq = BigInt(out.seq);
    if (typeof out.data === 'string') out.data = unhex(out.data);
    return out;
}

test('the vectors file has every section', () => {
    for (const key of ['client', 'server', 'client_invalid', 'ascii85', 'addrs']) {
        assert.ok(Array.isArray(vectors[key]) && vectors[key].length > 0, key);
    }
});

test('every client message type and layout has a vector', () => {
    const seen = new Set(vectors.client.map((v) => `${v.msg.type}/${v.layout}`));
    for (const type of ['Start', 'Listen', 'Stop', 'Close', 'Data', 'Connect', 'Presence', 'Extensions', 'Credit']) {
        assert.ok(seen.has(`${type}/client`), type);
    }
    // and every type this library knows is in that list
    assert.deepEqual(Object.keys(ClientType).filter((t) => !seen.has(`${t}/client`)), []);
    for (const type of ['Start', 'Stop', 'Connect']) assert.ok(seen.has(`${type}/readme`), type);
});

test('every server message type has a vector', () => {
    const seen = new Set(vectors.server.map((v) => v.msg.type));
    for (const type of [
        'Hello', 'Identify', 'ListenerConnection', 'ConnectionClosed', 'Data', 'ListenRefused',
        'ListenerClosed', 'PeerConnection', 'PeerConnectionRefused', 'ProtocolError', 'Listening',
        'Peer', 'LocalListener', 'PresenceReady', 'PresenceResync', 'Relayed', 'Extensions', 'Credit',
        'Reachability', 'Ack', 'Resumed', 'ResumeRefused', 'Subscribed', 'TopicRefused', 'TopicMessage',
        'TopicPeer', 'Missed',
    ]) {
        assert.ok(seen.has(type), type);
    }
    // and every type this library knows is in that list
    assert.deepEqual(Object.keys(ServerType).filter((t) => !seen.has(t)), []);
});

for (const v of vectors.client) {
    test(`client vector decodes: ${v.name}`, () => {
        const msg = decodeClientMessage(unhex(v.hex));
        assert.deepEqual(toVectorForm(msg), v.msg);
        if (msg.id !== undefined) assert.equal(typeof msg.id, 'bigint');
    });
    const reencodes = v.layout === 'client' || (v.msg.type === 'Connect' && typeof v.msg.relay === 'string');
    if (reencodes) {
        test(`client vector encodes: ${v.name}`, () => {
            assert.equal(hex(encodeClientMessage(fromVectorForm(v.msg))), v.hex);
        });
    }
}

for (const v of vectors.server) {
    test(`server vector round-trips: ${v.name}`, () => {
        const msg = decodeServerMessage(unhex(v.hex));
        assert.deepEqual(toVectorForm(msg), v.msg);
        assert.equal(hex(encodeServerMessage(fromVectorForm(v.msg))), v.hex);
    });
}

for (const v of vectors.client_invalid) {
    test(`invalid client message throws: ${v.name}`, () => {
        assert.throws(
            () => decodeClientMessage(unhex(v.hex)),
            (err) => err instanceof Error && err.message.includes(v.error),
            `expected an error containing ${JSON.stringify(v.error)}`,
        );
    });
}

test('decoders accept ArrayBuffer, Buffer and offset views', () => {
    const v = vectors.server.find((x) => x.msg.type === 'PeerConnection');
    const bytes = unhex(v.hex);
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 3);
    for (const input of [bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), Buffer.from(bytes), padded.subarray(3)]) {
        assert.deepEqual(toVectorForm(decodeServerMessage(input)), v.msg);
    }
});

test('trailing bytes a message does not use are ignored', () => {
    const close = decodeClientMessage(unhex('03' + '0000000000000009' + 'ffff'));
    assert.deepEqual(close, { type: 'Close', id: 9n });
    const hello = decodeServerMessage(unhex('00' + '01' + hex(new TextEncoder().encode('v9'))));
    assert.deepEqual(hello, { type: 'Hello', started: true, version: 'v9' });
});

test('truncated server messages throw Errors naming the message', () => {
    assert.throws(() => decodeServerMessage(new Uint8Array()), /empty/);
    assert.throws(() => decodeServerMessage(unhex('0300')), /Connection Closed: message too short for ID/);
    assert.throws(() => decodeServerMessage(unhex('0100')), /Identify: message too short for PEERID length/);
    assert.throws(() => decodeServerMessage(unhex('01000005414243')), /PEERID length 5 exceeds/);
    assert.throws(() => decodeServerMessage(unhex('08000141')), /Peer Connection Refused: message too short for PROTOCOL length/);
    assert.throws(() => decodeServerMessage(unhex('0aff')), /not valid UTF-8/);
});

test('unknown server message types decode as Unknown', () => {
    const m = decodeServerMessage(unhex('1b01'));
    assert.equal(m.type, 'Unknown');
    assert.equal(m.code, 27);
    assert.deepEqual([...m.body], [1]);
    assert.equal(decodeServerMessage(unhex('ff')).type, 'Unknown');
});

test('presence messages: truncation, flags and trailing bytes', () => {
    assert.throws(() => decodeServerMessage(unhex('0b')), /^Error: Peer: message too short for STATE/);
    assert.throws(() => decodeServerMessage(unhex('0b02')), /Peer: message too short for PEERID length/);
    assert.throws(() => decodeServerMessage(unhex('0b020005414243')), /Peer: PEERID length 5 exceeds/);
    assert.throws(() => decodeServerMessage(unhex('0b02000141ff')), /Peer: INFO is not valid UTF-8/);
    assert.throws(() => decodeServerMessage(unhex('0c')), /Local Listener: message too short for UP/);
    // an empty INFO is a message (the Gateway keeps the last info); any STATE byte decodes
    assert.deepEqual(decodeServerMessage(unhex('0b09000141')), { type: 'Peer', state: 9, peerID: 'A', info: '' });
    // server flags are read leniently, as Hello's and Identify's are
    assert.deepEqual(decodeServerMessage(unhex('0c05' + hex(Buffer.from('/p')))), { type: 'LocalListener', up: true, protocol: '/p' });
    assert.deepEqual(decodeServerMessage(unhex('0d' + 'ffff')), { type: 'PresenceReady' });
    // the client's ON flag is strict, its trailing bytes ignored
    assert.deepEqual(decodeClientMessage(unhex('0601ff')), { type: 'Presence', on: true });
    assert.throws(() => decodeClientMessage(unhex('0602')), /Presence: ON flag must be 0 or 1, got 2/);
    assert.throws(() => decodeClientMessage(unhex('06')), /Presence: message too short for ON/);
    assert.equal(hex(encodeClientMessage({ type: 'Presence', on: 1 })), '0601');
    assert.equal(hex(encodeClientMessage({ type: 'Presence' })), '0600');
});

test('Relayed (15): vectors, BigInt ids, truncation, an empty or missing RELAY', () => {
    assert.equal(ServerType.Relayed, 15);
    const relayed = vectors.server.filter((v) => v.msg.type === 'Relayed');
    assert.ok(relayed.length >= 2, 'the Relayed vectors are in messages.json');
    assert.ok(relayed.some((v) => v.msg.relay === ''), 'one with an empty RELAY');
    assert.ok(relayed.some((v) => /^(12D3KooW|Qm)[1-9A-HJ-NP-Za-km-z]+$/.test(v.msg.relay)), 'one with a base58 relay id');
    for (const v of relayed) {
        const m = decodeServerMessage(unhex(v.hex));
        assert.equal(typeof m.id, 'bigint');
        assert.deepEqual(Object.keys(m), ['type', 'id', 'relay']);
    }
    const max = decodeServerMessage(unhex('0f' + 'ff'.repeat(8) + hex(Buffer.from('R'))));
    assert.deepEqual(max, { type: 'Relayed', id: (1n << 64n) - 1n, relay: 'R' });
    assert.throws(() => decodeServerMessage(unhex('0f')), /^Error: Relayed: message too short for ID \(needs 8 bytes, has 0\)/);
    assert.throws(() => decodeServerMessage(unhex('0f' + '00'.repeat(7))), /Relayed: message too short for ID \(needs 8 bytes, has 7\)/);
    assert.throws(() => decodeServerMessage(unhex('0f' + '00'.repeat(8) + 'ff')), /Relayed: RELAY is not valid UTF-8/);
    // RELAY left out encodes as empty; numbers and decimal strings are accepted as ids
    assert.equal(hex(encodeServerMessage({ type: 'Relayed', id: 3 })), '0f0000000000000003');
    assert.equal(hex(encodeServerMessage({ type: 'Relayed', id: '258', relay: 'R' })), '0f0000000000000102' + hex(Buffer.from('R')));
    assert.throws(() => encodeServerMessage({ type: 'Relayed', id: -1n, relay: '' }), RangeError);
});

test('Extensions (client 7, server 16): vectors, validation, parsing the names', () => {
    assert.equal(ClientType.Extensions, 7);
    assert.equal(ServerType.Extensions, 16);
    assert.equal(MAX_EXTENSIONS, 1024);
    // the vector PROTOCOL.md quotes
    const ask = vectors.client.find((v) => v.msg.type === 'Extensions' && v.msg.names === 'credit receive-window=4194304');
    assert.equal(ask.hex, '0763726564697420726563656976652d77696e646f773d34313934333034');
    assert.ok(vectors.server.some((v) => v.msg.type === 'Extensions' && v.msg.names === ''), 'an empty answer');
    // the client's NAMES: printable ASCII, at most 1024 bytes, checked both ways
    assert.equal(hex(encodeClientMessage({ type: 'Extensions' })), '07');
    assert.equal(decodeClientMessage(encodeClientMessage({ type: 'Extensions', names: 'x'.repeat(1024) })).names.length, 1024);
    assert.throws(() => encodeClientMessage({ type: 'Extensions', names: 'x'.repeat(1025) }), RangeError);
    assert.throws(() => encodeClientMessage({ type: 'Extensions', names: 'credit\tpresence' }), RangeError);
    assert.throws(() => encodeClientMessage({ type: 'Extensions', names: 'crédit' }), /printable ASCII/);
    assert.throws(() => decodeClientMessage(unhex('07' + '7f')), /^Error: Extensions: NAMES must be printable ASCII/);
    assert.throws(() => decodeClientMessage(unhex('07' + '20'.repeat(1025))), /Extensions: NAMES is 1025 bytes, over 1024/);
    // the answer is text, read as such (not checked: the daemon writes it)
    assert.deepEqual(decodeServerMessage(unhex('10')), { type: 'Extensions', names: '' });
    assert.throws(() => decodeServerMessage(unhex('10ff')), /Extensions: NAMES is not valid UTF-8/);
    assert.equal(hex(encodeServerMessage({ type: 'Extensions' })), '10');
    // tokens, `name` or `name=value`
    const answer = vectors.server.find((v) => v.msg.type === 'Extensions' && v.msg.names.includes('presence')).msg.names;
    assert.deepEqual([...parseExtensionNames(answer)], [
        ['credit', ''], ['stream-window', '2097152'], ['session-window', '33554432'], ['receive-window', '2097152'],
        ['presence', ''],
    ]);
    assert.deepEqual([...parseExtensionNames('  a=1  b= c=x=y a=2 ')], [['a', '2'], ['b', ''], ['c', 'x=y']]);
    assert.deepEqual([...parseExtensionNames('')], []);
    assert.deepEqual([...parseExtensionNames(undefined)], []);
});

test('Credit (client 8, server 17): vectors, BYTES above 0, truncation, trailing bytes', () => {
    assert.equal(ClientType.Credit, 8);
    assert.equal(ServerType.Credit, 17);
    assert.equal(MAX_CREDIT, 2 ** 32 - 1);
    assert.equal(hex(encodeClientMessage({ type: 'Credit', id: 1n, bytes: 65536 })), '08000000000000000100010000');
    assert.equal(hex(encodeServerMessage({ type: 'Credit', id: 2n, bytes: 1048580 })), '11000000000000000200100004');
    for (const v of [...vectors.client, ...vectors.server].filter((x) => x.msg.type === 'Credit')) {
        const m = (v.layout ? decodeClientMessage : decodeServerMessage)(unhex(v.hex));
        assert.equal(typeof m.id, 'bigint');
        assert.equal(typeof m.bytes, 'number');
        assert.deepEqual(Object.keys(m), ['type', 'id', 'bytes']);
    }
    const max = 'ff'.repeat(8) + 'ffffffff';
    assert.deepEqual(decodeServerMessage(unhex('11' + max)), { type: 'Credit', id: (1n << 64n) - 1n, bytes: 2 ** 32 - 1 });
    assert.deepEqual(decodeClientMessage(unhex('08' + max + 'ff')), { type: 'Credit', id: (1n << 64n) - 1n, bytes: 2 ** 32 - 1 });
    assert.throws(() => decodeServerMessage(unhex('11' + '00'.repeat(8) + '00000000')), /^Error: Credit: BYTES must be above 0/);
    assert.throws(() => decodeServerMessage(unhex('11' + '00'.repeat(8) + '0001')), /Credit: message too short for BYTES \(needs 4 bytes, has 2\)/);
    assert.throws(() => decodeClientMessage(unhex('08' + '00'.repeat(7))), /Credit: message too short for ID/);
    assert.throws(() => decodeClientMessage(unhex('08' + '00'.repeat(8) + '00000000')), /Credit: BYTES must be above 0/);
    for (const bytesValue of [0, -1, 2 ** 32, 1.5, 'x', undefined, NaN]) {
        assert.throws(() => encodeClientMessage({ type: 'Credit', id: 1n, bytes: bytesValue }), RangeError, String(bytesValue));
        assert.throws(() => encodeServerMessage({ type: 'Credit', id: 1n, bytes: bytesValue }), RangeError, String(bytesValue));
    }
    assert.equal(hex(encodeClientMessage({ type: 'Credit', id: '258', bytes: '4' })), '08' + '0000000000000102' + '00000004');
});

test('Peer: INFO may be given as an object; STATE must be a byte', () => {
    const bytesOf = encodeServerMessage({ type: 'Peer', state: PeerState.updated, peerID: 'P', info: { protocols: ['/x'] } });
    assert.deepEqual(decodeServerMessage(bytesOf), { type: 'Peer', state: 5, peerID: 'P', info: '{"protocols":["/x"]}' });
    assert.equal(hex(encodeServerMessage({ type: 'Peer', state: 0, peerID: '' })), '0b00' + '0000' + hex(Buffer.from('{}')));
    for (const state of [-1, 256, 1.5, 'x', undefined]) {
        assert.throws(() => encodeServerMessage({ type: 'Peer', state, peerID: 'P', info: '{}' }), RangeError, String(state));
    }
});

test('peer state names', () => {
    assert.deepEqual(
        [0, 1, 2, 3, 4, 5, 6, 255].map(peerStateName),
        ['disconnected', 'connecting', 'connected', 'disconnecting', 'failed', 'updated', 'unknown', 'unknown'],
    );
    assert.equal(PeerState.connected, 2);
    assert.ok(Object.isFrozen(PeerState));
});

test('parsePeerInfo keeps the fields that are there and of the right type', () => {
    const peer = vectors.server.find((v) => v.msg.type === 'Peer' && v.msg.state === 2);
    const info = parsePeerInfo(peer.msg.info);
    assert.deepEqual(Object.keys(info), ['addrs', 'protocols', 'relayed', 'agent']);
    assert.ok(info.protocols.some((p) => p.startsWith('/libp2p-websocket/game/1.0.0/')));
    assert.equal(info.relayed, false);
    assert.deepEqual(parsePeerInfo('{"addrs":["/a",7,null],"protocols":"no","relayed":1,"agent":"x","more":true}'), {
        addrs: ['/a'],
        agent: 'x',
    });
    assert.deepEqual(parsePeerInfo({ relayed: true }), { relayed: true });
    for (const bad of ['', 'null', '[]', '"text"', '{', 42, null, undefined]) assert.equal(parsePeerInfo(bad), null, String(bad));
});

test('encoders validate their input', () => {
    assert.throws(() => encodeClientMessage({ type: 'Nope' }), TypeError);
    assert.throws(() => encodeServerMessage({ type: 'constructor' }), TypeError);
    assert.throws(() => encodeClientMessage({ type: 'Close', id: -1n }), RangeError);
    assert.throws(() => encodeClientMessage({ type: 'Close', id: 1n << 64n }), RangeError);
    assert.throws(
        () => encodeClientMessage({ type: 'Connect', frames: true, relay: false, protocol: '/' + 'x'.repeat(70000), peer: 'p' }),
        RangeError,
    );
    // numbers and decimal strings are accepted as ids
    assert.equal(hex(encodeClientMessage({ type: 'Close', id: 258 })), '030000000000000102');
    assert.equal(hex(encodeClientMessage({ type: 'Close', id: '258' })), '030000000000000102');
    // string data goes as UTF-8
    assert.equal(hex(encodeClientMessage({ type: 'Data', id: 1n, data: 'é' })), '040000000000000001c3a9');
});

test('Connect: a relay peer id selects the README layout, booleans the client layout', () => {
    const viaRelay = encodeClientMessage({ type: 'Connect', frames: false, relay: 'R', protocol: '/p', peer: 'X' });
    assert.equal(hex(viaRelay), '0500' + '0002' + hex(Buffer.from('/p')) + '0001' + hex(Buffer.from('R')) + hex(Buffer.from('X')));
    assert.deepEqual(decodeClientMessage(viaRelay), { type: 'Connect', frames: false, relay: 'R', protocol: '/p', peer: 'X' });
    const direct = encodeClientMessage({ type: 'Connect', frames: true, relay: true, protocol: '/p', peer: 'X' });
    assert.equal(hex(direct), '050101' + '0002' + hex(Buffer.from('/p')) + hex(Buffer.from('X')));
});

// mulberry32: a small fixed-seed PRNG so failures reproduce.
function prng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function decodeOrError(decode, bytes) {
    try {
        return { msg: decode(bytes) };
    } catch (err) {
        assert.ok(err instanceof Error, `threw a non-Error: ${String(err)} for ${hex(bytes)}`);
        assert.ok(err.message.length > 0, `empty error message for ${hex(bytes)}`);
        return { err };
    }
}

test('fuzz: decoding random bytes yields a message or throws an Error', () => {
    const rand = prng(0x5eed1234);
    const small = [0, 1, 2, 0x2f, 0x20, 0x1f, 0xff];
    let decoded = 0;
    for (let i = 0; i < 6000; i++) {
        const len = Math.floor(rand() * 48);
        const bytes = new Uint8Array(len);
        for (let j = 0; j < len; j++) {
            // mostly small values and '/', so lengths and flags are often plausible
            bytes[j] = rand() < 0.5 ? small[Math.floor(rand() * small.length)] : Math.floor(rand() * 256);
        }
        if (len > 0 && rand() < 0.8) bytes[0] = Math.floor(rand() * 19);
        for (const decode of [decodeClientMessage, decodeServerMessage]) {
            const r = decodeOrError(decode, bytes);
            if (r.msg) decoded++;
        }
    }
    assert.ok(decoded > 1000, `only ${decoded} random inputs decoded`);
});

test('fuzz: every prefix and every bit flip of the vectors decodes or throws an Error', () => {
    const rand = prng(42);
    const cases = [
        ...vectors.client.map((v) => [decodeClientMessage, unhex(v.hex)]),
        ...vectors.server.map((v) => [decodeServerMessage, unhex(v.hex)]),
    ];
    for (const [decode, bytes] of cases) {
        for (let n = 0; n <= bytes.length; n++) decodeOrError(decode, bytes.subarray(0, n));
        for (let k = 0; k < 40; k++) {
            const flipped = Uint8Array.from(bytes);
            const at = Math.floor(rand() * flipped.length);
            flipped[at] ^= 1 << Math.floor(rand() * 8);
            decodeOrError(decode, flipped);
        }
    }
});

test('fuzz: decoded messages re-encode to messages that decode the same', () => {
    const rand = prng(7);
    for (let i = 0; i < 4000; i++) {
        const len = 1 + Math.floor(rand() * 40);
        const bytes = new Uint8Array(len);
        for (let j = 0; j < len; j++) bytes[j] = rand() < 0.4 ? Math.floor(rand() * 3) : Math.floor(rand() * 128);
        bytes[0] = Math.floor(rand() * 18); // every type the library knows
        const s = decodeOrError(decodeServerMessage, bytes);
        if (s.msg) assert.deepEqual(decodeServerMessage(encodeServerMessage(s.msg)), s.msg);
        if ((bytes[0] >= 1 && bytes[0] <= 4) || (bytes[0] >= 6 && bytes[0] <= 8)) {
            const c = decodeOrError(decodeClientMessage, bytes);
            if (c.msg) assert.deepEqual(decodeClientMessage(encodeClientMessage(c.msg)), c.msg);
        }
    }
});
