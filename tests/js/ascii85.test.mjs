// Ascii85 and "/addrs/" connect strings of html/protocol.js against the shared vectors.
// Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import libp2p, {
    a85decode,
    a85encode,
    isConnectString,
    makeConnectString,
    parseConnectString,
} from '../../html/protocol.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/messages.json', import.meta.url), 'utf8'));
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'));
const hex = (bytes) => Buffer.from(bytes).toString('hex');

test('there are enough Ascii85 and addrs vectors', () => {
    assert.ok(vectors.ascii85.length >= 20);
    assert.ok(vectors.addrs.length >= 3);
});

for (const v of vectors.ascii85) {
    test(`ascii85 ${v.hex.slice(0, 24) || '(empty)'} (${v.hex.length / 2} bytes)`, () => {
        assert.equal(a85encode(unhex(v.hex)), v.text);
        assert.equal(hex(a85decode(v.text)), v.hex);
    });
}

test('ascii85: z only for full zero groups', () => {
    assert.equal(a85encode(new Uint8Array(4)), 'z');
    assert.equal(a85encode(new Uint8Array(3)), '!!!!');
    assert.equal(a85encode(new Uint8Array(5)), 'z!!');
    assert.deepEqual([...a85decode('z')], [0, 0, 0, 0]);
    assert.deepEqual([...a85decode('!!!!!')], [0, 0, 0, 0]);
});

test('ascii85 decode skips whitespace and control bytes like Go', () => {
    const text = a85encode(new TextEncoder().encode('Man is distinguished'));
    const spaced = text.split('').join(' \n\t\r\x00');
    assert.equal(new TextDecoder().decode(a85decode(spaced)), 'Man is distinguished');
    assert.deepEqual([...a85decode('  ')], []);
});

test('ascii85 decode rejects what Go rejects', () => {
    assert.throws(() => a85decode('!'), /lone/); // one char in the last group
    assert.throws(() => a85decode('!!!!!!'), /lone/);
    assert.throws(() => a85decode('!z'), /invalid Ascii85/); // z inside a group
    assert.throws(() => a85decode('v'), /invalid Ascii85/); // past 'u'
    assert.throws(() => a85decode('<~!!~>'), /invalid Ascii85/); // no delimiters
    assert.throws(() => a85decode('ab\u00e9cd'), /invalid Ascii85/);
});

test('ascii85 decode wraps an overflowing group like Go (uint32 arithmetic)', () => {
    // "uuuuu" is 85^5 - 1 = 4437053124, which Go's uint32 arithmetic wraps to 142085828.
    assert.deepEqual([...a85decode('uuuuu')], [0x08, 0x78, 0x0e, 0xc4]);
});

test('ascii85 round-trips random lengths', () => {
    for (let n = 0; n < 300; n++) {
        const bytes = new Uint8Array(n).map((_, i) => (i * 131 + n * 7) % 256 & (i % 5 === 0 ? 0 : 0xff));
        assert.deepEqual(a85decode(a85encode(bytes)), bytes);
    }
});

for (const v of vectors.addrs) {
    test(`connect string for ${v.peerID.slice(0, 16)}… with ${v.addrs.length} addrs`, () => {
        assert.equal(JSON.stringify({ peerID: v.peerID, addrs: v.addrs }), v.json);
        assert.equal(makeConnectString(v.peerID, v.addrs), v.connect);
        assert.deepEqual(parseConnectString(v.connect), { peerID: v.peerID, addrs: v.addrs });
        assert.ok(isConnectString(v.connect));
    });
}

test('connect string keys match case-insensitively, like Go encoding/json', () => {
    const id = vectors.addrs[0].peerID;
    const make = (obj) => '/addrs/' + a85encode(new TextEncoder().encode(JSON.stringify(obj)));
    for (const key of ['peerID', 'PeerID', 'peerid', 'PEERID']) {
        assert.deepEqual(parseConnectString(make({ [key]: id, Addrs: ['/ip4/1.2.3.4/tcp/1'] })), {
            peerID: id,
            addrs: ['/ip4/1.2.3.4/tcp/1'],
        });
    }
    assert.deepEqual(parseConnectString(make({ peerID: id })), { peerID: id, addrs: [] });
    assert.deepEqual(parseConnectString(make({ peerID: id, addrs: null })), { peerID: id, addrs: [] });
    // a later key wins, as in Go
    assert.equal(parseConnectString(make({ peerid: 'first', PeerID: id })).peerID, id);
});

test('bad connect strings throw', () => {
    assert.throws(() => parseConnectString('12D3KooWabc'), /not a connect string/);
    assert.throws(() => parseConnectString('/addrs/!'), /bad connect string/);
    const make = (text) => '/addrs/' + a85encode(new TextEncoder().encode(text));
    assert.throws(() => parseConnectString(make('[1]')), /not a JSON object/);
    assert.throws(() => parseConnectString(make('{"addrs":[]}')), /no peerID/);
    assert.throws(() => parseConnectString(make('{"peerID":"x","addrs":[1]}')), /addrs/);
    assert.throws(() => makeConnectString(''), TypeError);
});

test("the original's encode_ascii85 / decode_ascii85 names work on strings", () => {
    const json = JSON.stringify({ peerID: 'x', addrs: ['/ip4/127.0.0.1/tcp/1'] });
    const text = libp2p.encode_ascii85(json);
    assert.equal(text, a85encode(new TextEncoder().encode(json)));
    assert.equal(libp2p.decode_ascii85(text), json);
});
