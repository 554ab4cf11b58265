#!/usr/bin/env python3
"""Writes tests/vectors/messages.json, the hex test vectors of the wire protocol.

Both test suites read the output: the Rust protocol tests and the JS client's
tests (tests/js/). Run from anywhere, with Python 3.11 and nothing but the
standard library:

    python3 tests/vectors/gen.py

The output is deterministic (fixed order, fixed "random" bytes), so running the
script again must leave the file unchanged; commit both together.

Encodings (see PROTOCOL.md): byte 0 is the message type; `str` is a 2-byte
big-endian length and UTF-8; `rest` is the remaining bytes; an ID is an 8-byte
big-endian u64 (a decimal string in the JSON, since it exceeds JS numbers);
flags are one byte 0 or 1. Client messages come in two layouts: "client" (what
the original browser client sent) and "readme" (what the original README
documented). A "client" vector re-encodes to the same hex; a "readme" vector
only decodes, except a Connect through a named relay, which only the README
layout can express, so it re-encodes too.

The presence extension (PROTOCOL.md, last section) adds client type 6 (Presence,
`[ON:1]`) and server types 11 (Peer, `[STATE:1][PEERID: str][INFO: rest]`, INFO
kept as its JSON text), 12 (Local Listener, `[UP:1][PROTOCOL: rest]`), 13
(Presence Ready, empty) and 14 (Presence Resync, empty). Server type 15 (Relayed,
`[ID:8][RELAY: rest]`) is an extension message too: it follows the Peer Connection or
Listener Connection of a stream that goes through a circuit relay, and RELAY is the
relay's base58 peer id (empty when the daemon does not know it). Only sessions that sent
a Presence message (ON 1 or 0) receive types 11 to 15.

The credit extension (PROTOCOL.md, "Extension: credit") adds client types 7
(Extensions, `[NAMES: rest]`: printable ASCII, at most 1,024 bytes, tokens `name` or
`name=value` separated by spaces, e.g. `credit receive-window=4194304`) and 8 (Credit,
`[ID:8][BYTES:4]`, BYTES a big-endian u32 above 0), and server types 16 (Extensions,
the answer: what is now on, e.g. `credit stream-window=W session-window=S
receive-window=R presence`) and 17 (Credit, the same layout as the client's). In the
JSON, NAMES is the text as sent (`names`) and BYTES a number (`bytes`). A daemon
offers the extensions in Hello's VERSION tail (`libp2p-websocket/<version> credit
presence`); the vectors hold messages only.
"""

import base64
import hashlib
import json
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent / "messages.json"

# ---------------------------------------------------------------- helpers

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    """base58btc with the Bitcoin alphabet; each leading zero byte becomes '1'."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58_ALPHABET[r] + out
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + out


def fixed_bytes(label: str, n: int) -> bytes:
    """n arbitrary but fixed bytes derived from label."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def ed25519_peer_id(label: str) -> str:
    """A valid Ed25519 peer id: identity multihash of the protobuf public key."""
    key = fixed_bytes("ed25519:" + label, 32)
    # multihash: code 0x00 (identity), length 36; protobuf: field 1 (type) = 1 (Ed25519),
    # field 2 (data) = 32 bytes.
    peer_id = b58encode(bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + key)
    assert peer_id.startswith("12D3KooW"), peer_id
    return peer_id


def sha256_peer_id(label: str) -> str:
    """A peer id of the older kind (RSA keys): the sha2-256 multihash of a public key."""
    digest = hashlib.sha256(fixed_bytes("rsa:" + label, 270)).digest()
    peer_id = b58encode(bytes([0x12, 0x20]) + digest)
    assert peer_id.startswith("Qm"), peer_id
    return peer_id


def u8(v: int) -> bytes:
    return bytes([v])


def flag(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def u64(v: int) -> bytes:
    return struct.pack(">Q", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def s(text: str) -> bytes:
    """`str`: 2-byte big-endian length + UTF-8."""
    raw = text.encode("utf-8")
    assert len(raw) <= 0xFFFF
    return struct.pack(">H", len(raw)) + raw


def rest(text: str) -> bytes:
    return text.encode("utf-8")


def a85(data: bytes) -> str:
    """Adobe Ascii85 without <~ ~>, 'z' for a full all-zero group: Go's encoding/ascii85."""
    return base64.a85encode(data).decode("ascii")


def compact_json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def connect_string(peer_id: str, addrs: list[str]) -> str:
    return "/addrs/" + a85(compact_json({"peerID": peer_id, "addrs": addrs}).encode("utf-8"))


# ---------------------------------------------------------------- fixed data

PEER_A = ed25519_peer_id("alice")
PEER_B = ed25519_peer_id("bob")
PEER_RELAY = ed25519_peer_id("relay")
PEER_C = ed25519_peer_id("carol")
PEER_RELAY_RSA = sha256_peer_id("relay")

# The base64 protobuf encoding of an Ed25519 private key, as Identify's KEY carries it:
# 08 01 (type Ed25519) 12 40 (64 bytes: secret then public).
KEY_A = base64.b64encode(
    bytes([0x08, 0x01, 0x12, 0x40]) + fixed_bytes("secret:alice", 32) + fixed_bytes("public:alice", 32)
).decode("ascii")

CHAT = "/libp2p-websocket/chat/1.0.0"

ADDRS_B = ["/ip4/127.0.0.1/tcp/4001", "/ip4/192.168.1.20/tcp/4001", "/ip6/::1/tcp/4001"]
CONNECT_B = connect_string(PEER_B, ADDRS_B)

# The presence extension: a game protocol a browser listens on, and the INFO JSON of Peer
# messages (the daemon writes it compact, keys in this order).
GAME = "/libp2p-websocket/game/1.0.0/k3x9q2-Zo%C3%AB's%20arena"


def peer_info(addrs: list[str], protocols: list[str], relayed: bool, agent: str) -> str:
    return compact_json({"addrs": addrs, "protocols": protocols, "relayed": relayed, "agent": agent})


INFO_B = peer_info(ADDRS_B[:1], ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", CHAT, GAME], False, "libp2p-websocket/0.1.0")
INFO_C_DIALING = peer_info(["/ip4/203.0.113.7/tcp/4001"], [], False, "")

# The credit extension: the longest NAMES an Extensions message may carry, and the
# answer of a daemon with its default windows (2 MiB per stream, 32 MiB per session).
MAX_EXTENSIONS = 1024
ANSWER_DEFAULT = "credit stream-window=2097152 session-window=33554432 receive-window=2097152"

# ---------------------------------------------------------------- decoder (self-check)
# A small independent decoder that checks every vector below decodes to its msg with the
# layout rules of PROTOCOL.md, so a typo in a vector cannot slip into the file.


class Short(Exception):
    pass


class R:
    def __init__(self, b: bytes):
        self.b = b
        self.p = 1

    def take(self, n: int) -> bytes:
        if len(self.b) - self.p < n:
            raise Short()
        out = self.b[self.p : self.p + n]
        self.p += n
        return out

    def flag(self) -> bool:
        v = self.take(1)[0]
        if v > 1:
            raise Short()
        return v == 1

    def id(self) -> str:
        return str(struct.unpack(">Q", self.take(8))[0])

    def str(self) -> str:
        n = struct.unpack(">H", self.take(2))[0]
        return self.take(n).decode("utf-8")

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def credit(self) -> int:
        n = self.u32()
        if n == 0:
            raise Short()
        return n

    def rest(self) -> bytes:
        out = self.b[self.p :]
        self.p = len(self.b)
        return out


def decode_client(b: bytes) -> dict:
    t, body = b[0], b[1:]
    r = R(b)
    if t == 0:
        if body and body[0] < 0x20:
            return {"type": "Start", "key": r.str()}
        return {"type": "Start", "key": body.decode("utf-8")}
    if t == 1:
        frames = r.flag()
        return {"type": "Listen", "frames": frames, "protocol": r.rest().decode("utf-8")}
    if t == 2:
        if body[0] == 0x2F:
            return {"type": "Stop", "retain": False, "protocol": body.decode("utf-8")}
        retain = r.flag()
        return {"type": "Stop", "retain": retain, "protocol": r.rest().decode("utf-8")}
    if t == 3:
        return {"type": "Close", "id": r.id()}
    if t == 4:
        i = r.id()
        return {"type": "Data", "id": i, "data": r.rest().hex()}
    if t == 5:
        def client():
            r = R(b)
            frames = r.flag()
            relay = r.flag()
            protocol = r.str()
            peer = r.rest().decode("utf-8")
            return {"type": "Connect", "frames": frames, "relay": relay, "protocol": protocol, "peer": peer}

        def readme():
            r = R(b)
            frames = r.flag()
            protocol = r.str()
            relay = r.str()
            peer = r.rest().decode("utf-8")
            return {"type": "Connect", "frames": frames, "relay": relay or False, "protocol": protocol, "peer": peer}

        readings = []
        for f in (client, readme):
            try:
                m = f()
            except Short:
                continue
            if m["protocol"].startswith("/"):
                readings.append(m)
        assert readings, b.hex()
        return readings[0]
    if t == 6:
        return {"type": "Presence", "on": r.flag()}
    if t == 7:
        names = r.rest()
        assert len(names) <= MAX_EXTENSIONS and all(0x20 <= c < 0x7F for c in names), names
        return {"type": "Extensions", "names": names.decode("ascii")}
    if t == 8:
        i = r.id()
        return {"type": "Credit", "id": i, "bytes": r.credit()}
    if t == 9:
        return {"type": "Ack", "count": r.id()}
    if t in (10, 11):
        return {"type": "Subscribe" if t == 10 else "Unsubscribe", "topic": r.rest().decode("utf-8")}
    if t == 12:
        topic = r.str()
        return {"type": "Publish", "topic": topic, "data": r.rest().hex()}
    raise AssertionError(t)


def decode_server(b: bytes) -> dict:
    t = b[0]
    r = R(b)
    text = lambda: r.rest().decode("utf-8")  # noqa: E731
    if t == 0:
        return {"type": "Hello", "started": r.flag(), "version": text()}
    if t == 1:
        return {"type": "Identify", "public": r.flag(), "peerID": r.str(), "addresses": r.str(), "key": text()}
    if t in (2, 7):
        name = "ListenerConnection" if t == 2 else "PeerConnection"
        return {"type": name, "id": r.id(), "peerID": r.str(), "protocol": text()}
    if t == 3:
        return {"type": "ConnectionClosed", "id": r.id(), "reason": text()}
    if t == 4:
        i = r.id()
        return {"type": "Data", "id": i, "data": r.rest().hex()}
    if t in (5, 6, 10):
        name = {5: "ListenRefused", 6: "ListenerClosed", 10: "Listening"}[t]
        return {"type": name, "protocol": text()}
    if t == 8:
        return {"type": "PeerConnectionRefused", "peerID": r.str(), "protocol": r.str(), "error": text()}
    if t == 9:
        return {"type": "ProtocolError", "msg": text()}
    if t == 11:
        state = r.take(1)[0]
        return {"type": "Peer", "state": state, "peerID": r.str(), "info": text()}
    if t == 12:
        return {"type": "LocalListener", "up": r.flag(), "protocol": text()}
    if t == 13:
        return {"type": "PresenceReady"}
    if t == 14:
        return {"type": "PresenceResync"}
    if t == 15:
        return {"type": "Relayed", "id": r.id(), "relay": text()}
    if t == 16:
        return {"type": "Extensions", "names": text()}
    if t == 17:
        i = r.id()
        return {"type": "Credit", "id": i, "bytes": r.credit()}
    if t == 18:
        return {"type": "Reachability", "state": r.take(1)[0]}
    if t == 19:
        return {"type": "Ack", "count": r.id()}
    if t == 20:
        return {"type": "Resumed", "count": r.id(), "token": text()}
    if t == 21:
        return {"type": "ResumeRefused", "reason": text()}
    if t == 22:
        return {"type": "Subscribed", "topic": text()}
    if t == 23:
        return {"type": "TopicRefused", "topic": r.str(), "reason": text()}
    if t == 24:
        topic, sender, seq = r.str(), r.str(), r.id()
        return {"type": "TopicMessage", "topic": topic, "from": sender, "seq": seq, "data": r.rest().hex()}
    if t == 25:
        joined = r.flag()
        return {"type": "TopicPeer", "joined": joined, "topic": r.str(), "peerID": text()}
    if t == 26:
        return {"type": "Missed", "topic": r.str(), "count": r.id()}
    raise AssertionError(t)


# ---------------------------------------------------------------- client vectors


def client_vectors() -> list[dict]:
    v = []

    def add(name, layout, raw, msg):
        v.append({"name": name, "layout": layout, "hex": raw.hex(), "msg": msg})

    # Start (0)
    add("start key", "client", u8(0) + rest(KEY_A), {"type": "Start", "key": KEY_A})
    add("start empty key", "client", u8(0), {"type": "Start", "key": ""})
    add("start non-ascii key", "client", u8(0) + rest("ключ-🔑"), {"type": "Start", "key": "ключ-🔑"})
    add("start key, readme layout", "readme", u8(0) + s(KEY_A), {"type": "Start", "key": KEY_A})
    # No "empty key, readme layout" (00 0000): the daemon reads those bytes as the
    # original's July 2020 chat sent them (port 0, no key), in the Rust tests.

    # Listen (1)
    add("listen framed", "client", u8(1) + flag(True) + rest("/chat/1.0"),
        {"type": "Listen", "frames": True, "protocol": "/chat/1.0"})
    add("listen raw", "client", u8(1) + flag(False) + rest(CHAT),
        {"type": "Listen", "frames": False, "protocol": CHAT})
    add("listen non-ascii protocol", "client", u8(1) + flag(True) + rest("/chät/ü/1.0"),
        {"type": "Listen", "frames": True, "protocol": "/chät/ü/1.0"})

    # Stop (2)
    add("stop", "client", u8(2) + flag(False) + rest("/chat/1.0"),
        {"type": "Stop", "retain": False, "protocol": "/chat/1.0"})
    add("stop retaining connections", "client", u8(2) + flag(True) + rest(CHAT),
        {"type": "Stop", "retain": True, "protocol": CHAT})
    add("stop, readme layout", "readme", u8(2) + rest("/chat/1.0"),
        {"type": "Stop", "retain": False, "protocol": "/chat/1.0"})

    # Close (3)
    add("close id 0", "client", u8(3) + u64(0), {"type": "Close", "id": "0"})
    add("close id 258", "client", u8(3) + u64(258), {"type": "Close", "id": "258"})
    add("close max id", "client", u8(3) + u64(2**64 - 1), {"type": "Close", "id": str(2**64 - 1)})

    # Data (4)
    add("data text", "client", u8(4) + u64(5) + b"hello",
        {"type": "Data", "id": "5", "data": b"hello".hex()})
    add("data empty", "client", u8(4) + u64(7), {"type": "Data", "id": "7", "data": ""})
    binary = bytes([0x00, 0xFF, 0x80, 0x7F, 0x01]) + fixed_bytes("data", 27)
    add("data binary", "client", u8(4) + u64(2**40 + 3) + binary,
        {"type": "Data", "id": str(2**40 + 3), "data": binary.hex()})
    json_frame = compact_json({"type": "message", "from": "Zoë", "text": "héllo 👋", "time": 1700000000000}).encode()
    add("data json frame", "client", u8(4) + u64(1) + json_frame,
        {"type": "Data", "id": "1", "data": json_frame.hex()})

    # Connect (5)
    add("connect direct framed", "client", u8(5) + flag(True) + flag(False) + s("/p") + rest(PEER_B),
        {"type": "Connect", "frames": True, "relay": False, "protocol": "/p", "peer": PEER_B})
    add("connect relay raw", "client", u8(5) + flag(False) + flag(True) + s(CHAT) + rest(PEER_B),
        {"type": "Connect", "frames": False, "relay": True, "protocol": CHAT, "peer": PEER_B})
    add("connect to a connect string", "client", u8(5) + flag(True) + flag(False) + s(CHAT) + rest(CONNECT_B),
        {"type": "Connect", "frames": True, "relay": False, "protocol": CHAT, "peer": CONNECT_B})
    add("connect non-ascii protocol", "client", u8(5) + flag(True) + flag(False) + s("/chät/1.0") + rest(PEER_C),
        {"type": "Connect", "frames": True, "relay": False, "protocol": "/chät/1.0", "peer": PEER_C})
    add("connect direct, readme layout", "readme", u8(5) + flag(True) + s("/chat/1.0") + s("") + rest(PEER_B),
        {"type": "Connect", "frames": True, "relay": False, "protocol": "/chat/1.0", "peer": PEER_B})
    add("connect via relay, readme layout", "readme",
        u8(5) + flag(True) + s(CHAT) + s(PEER_RELAY) + rest(PEER_B),
        {"type": "Connect", "frames": True, "relay": PEER_RELAY, "protocol": CHAT, "peer": PEER_B})
    add("connect string via relay, readme layout", "readme",
        u8(5) + flag(False) + s("/p") + s(PEER_RELAY) + rest(CONNECT_B),
        {"type": "Connect", "frames": False, "relay": PEER_RELAY, "protocol": "/p", "peer": CONNECT_B})

    # Presence (6), the presence extension
    add("presence on", "client", u8(6) + flag(True), {"type": "Presence", "on": True})
    add("presence off", "client", u8(6) + flag(False), {"type": "Presence", "on": False})

    # Extensions (7) and Credit (8), the credit extension
    ext = "credit receive-window=4194304"
    add("extensions credit with a receive window", "client", u8(7) + rest(ext), {"type": "Extensions", "names": ext})
    add("extensions credit", "client", u8(7) + rest("credit"), {"type": "Extensions", "names": "credit"})
    add("extensions credit and presence", "client", u8(7) + rest("credit presence"),
        {"type": "Extensions", "names": "credit presence"})
    add("extensions empty", "client", u8(7), {"type": "Extensions", "names": ""})
    longest = "credit " + "x" * (MAX_EXTENSIONS - len("credit "))  # an unknown token: ignored
    add("extensions of 1024 bytes", "client", u8(7) + rest(longest), {"type": "Extensions", "names": longest})
    add("credit", "client", u8(8) + u64(1) + u32(65536), {"type": "Credit", "id": "1", "bytes": 65536})
    add("credit one byte", "client", u8(8) + u64(0) + u32(1), {"type": "Credit", "id": "0", "bytes": 1})
    add("credit max id, max bytes", "client", u8(8) + u64(2**64 - 1) + u32(2**32 - 1),
        {"type": "Credit", "id": str(2**64 - 1), "bytes": 2**32 - 1})

    # Ack (9), the resume extension: numbered server messages received so far.
    add("extensions credit and resume", "client", u8(7) + rest("credit resume"),
        {"type": "Extensions", "names": "credit resume"})
    add("ack", "client", u8(9) + u64(300), {"type": "Ack", "count": "300"})
    add("ack max", "client", u8(9) + u64(2**64 - 1), {"type": "Ack", "count": str(2**64 - 1)})

    # The pubsub extension: Subscribe (10), Unsubscribe (11), Publish (12).
    add("subscribe", "client", u8(10) + rest(LOBBY), {"type": "Subscribe", "topic": LOBBY})
    add("subscribe non-ascii", "client", u8(10) + rest("salle/été"), {"type": "Subscribe", "topic": "salle/été"})
    add("unsubscribe", "client", u8(11) + rest(LOBBY), {"type": "Unsubscribe", "topic": LOBBY})
    add("publish", "client", u8(12) + s(LOBBY) + b"\x00\x01\xfe\xff",
        {"type": "Publish", "topic": LOBBY, "data": "0001feff"})
    add("publish empty", "client", u8(12) + s(LOBBY), {"type": "Publish", "topic": LOBBY, "data": ""})
    return v


# ---------------------------------------------------------------- server vectors


def server_vectors() -> list[dict]:
    v = []

    def add(name, raw, msg):
        v.append({"name": name, "hex": raw.hex(), "msg": msg})

    addrs_json = compact_json(["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"])
    add("hello not started", u8(0) + flag(False), {"type": "Hello", "started": False, "version": ""})
    add("hello started with version", u8(0) + flag(True) + rest("libp2p-websocket 0.1.0"),
        {"type": "Hello", "started": True, "version": "libp2p-websocket 0.1.0"})
    add("identify private", u8(1) + flag(False) + s(PEER_A) + s(addrs_json) + rest(KEY_A),
        {"type": "Identify", "public": False, "peerID": PEER_A, "addresses": addrs_json, "key": KEY_A})
    add("identify public, no key", u8(1) + flag(True) + s(PEER_A) + s("[]"),
        {"type": "Identify", "public": True, "peerID": PEER_A, "addresses": "[]", "key": ""})
    add("listener connection", u8(2) + u64(0) + s(PEER_B) + rest(CHAT),
        {"type": "ListenerConnection", "id": "0", "peerID": PEER_B, "protocol": CHAT})
    add("listener connection non-ascii protocol", u8(2) + u64(1) + s(PEER_C) + rest("/chät/1.0"),
        {"type": "ListenerConnection", "id": "1", "peerID": PEER_C, "protocol": "/chät/1.0"})
    add("connection closed", u8(3) + u64(1) + rest("stream reset"),
        {"type": "ConnectionClosed", "id": "1", "reason": "stream reset"})
    add("connection closed non-ascii reason", u8(3) + u64(2**64 - 1) + rest("fermé — 切断"),
        {"type": "ConnectionClosed", "id": str(2**64 - 1), "reason": "fermé — 切断"})
    add("connection closed no reason", u8(3) + u64(4), {"type": "ConnectionClosed", "id": "4", "reason": ""})
    add("data", u8(4) + u64(2) + b"\x00\x01\xfe\xff", {"type": "Data", "id": "2", "data": "0001feff"})
    add("data empty", u8(4) + u64(3), {"type": "Data", "id": "3", "data": ""})
    add("listen refused", u8(5) + rest(CHAT), {"type": "ListenRefused", "protocol": CHAT})
    add("listener closed", u8(6) + rest("/chat/1.0"), {"type": "ListenerClosed", "protocol": "/chat/1.0"})
    add("peer connection", u8(7) + u64(9) + s(PEER_B) + rest(CHAT),
        {"type": "PeerConnection", "id": "9", "peerID": PEER_B, "protocol": CHAT})
    add("peer connection refused", u8(8) + s(PEER_B) + s(CHAT) + rest("failed to dial: no addresses"),
        {"type": "PeerConnectionRefused", "peerID": PEER_B, "protocol": CHAT, "error": "failed to dial: no addresses"})
    add("peer connection refused connect string", u8(8) + s(CONNECT_B) + s("/p") + rest("protocole non pris en charge ✗"),
        {"type": "PeerConnectionRefused", "peerID": CONNECT_B, "protocol": "/p", "error": "protocole non pris en charge ✗"})
    add("protocol error", u8(9) + rest("Listen: FRAMES flag must be 0 or 1, got 7"),
        {"type": "ProtocolError", "msg": "Listen: FRAMES flag must be 0 or 1, got 7"})
    add("listening", u8(10) + rest(CHAT), {"type": "Listening", "protocol": CHAT})
    add("listening non-ascii", u8(10) + rest("/日本/1"), {"type": "Listening", "protocol": "/日本/1"})

    # The presence extension: Peer (11), Local Listener (12), Presence Ready (13).
    add("peer connected", u8(11) + u8(2) + s(PEER_B) + rest(INFO_B),
        {"type": "Peer", "state": 2, "peerID": PEER_B, "info": INFO_B})
    add("peer connecting", u8(11) + u8(1) + s(PEER_C) + rest(INFO_C_DIALING),
        {"type": "Peer", "state": 1, "peerID": PEER_C, "info": INFO_C_DIALING})
    add("peer disconnected", u8(11) + u8(0) + s(PEER_B) + rest(INFO_B),
        {"type": "Peer", "state": 0, "peerID": PEER_B, "info": INFO_B})
    add("peer failed", u8(11) + u8(4) + s(PEER_C) + rest(INFO_C_DIALING),
        {"type": "Peer", "state": 4, "peerID": PEER_C, "info": INFO_C_DIALING})
    info_relayed = peer_info([f"/ip4/198.51.100.1/tcp/4001/p2p/{PEER_RELAY}/p2p-circuit"], ["/ipfs/id/1.0.0"], True,
                             "rust-libp2p/0.46 ✓")
    add("peer updated, relayed, non-ascii agent", u8(11) + u8(5) + s(PEER_A) + rest(info_relayed),
        {"type": "Peer", "state": 5, "peerID": PEER_A, "info": info_relayed})
    add("local listener up", u8(12) + flag(True) + rest(GAME), {"type": "LocalListener", "up": True, "protocol": GAME})
    add("local listener down", u8(12) + flag(False) + rest(CHAT),
        {"type": "LocalListener", "up": False, "protocol": CHAT})
    add("presence ready", u8(13), {"type": "PresenceReady"})
    add("presence resync", u8(14), {"type": "PresenceResync"})

    # Extension: Relayed (15), right after the Peer Connection / Listener Connection of a
    # stream that goes through a circuit relay, to sessions that sent a Presence message.
    add("relayed", u8(15) + u64(9) + rest(PEER_RELAY), {"type": "Relayed", "id": "9", "relay": PEER_RELAY})
    add("relayed, relay unknown", u8(15) + u64(0), {"type": "Relayed", "id": "0", "relay": ""})
    add("relayed, max id, Qm relay", u8(15) + u64(2**64 - 1) + rest(PEER_RELAY_RSA),
        {"type": "Relayed", "id": str(2**64 - 1), "relay": PEER_RELAY_RSA})

    # The credit extension: the answer to Extensions (16), and Credit (17).
    answer = ANSWER_DEFAULT + " presence"
    add("extensions answer, credit and presence", u8(16) + rest(answer), {"type": "Extensions", "names": answer})
    add("extensions answer, credit", u8(16) + rest(ANSWER_DEFAULT), {"type": "Extensions", "names": ANSWER_DEFAULT})
    add("extensions answer, presence only", u8(16) + rest("presence"), {"type": "Extensions", "names": "presence"})
    add("extensions answer, nothing on", u8(16), {"type": "Extensions", "names": ""})
    add("credit", u8(17) + u64(2) + u32(1048580), {"type": "Credit", "id": "2", "bytes": 1048580})
    add("credit max id, max bytes", u8(17) + u64(2**64 - 1) + u32(2**32 - 1),
        {"type": "Credit", "id": str(2**64 - 1), "bytes": 2**32 - 1})
    # Reachability (18), the reachability extension: 0 unknown, 1 private, 2 public.
    for state, name in [(0, "unknown"), (1, "private"), (2, "public")]:
        add(f"reachability {name}", u8(18) + u8(state), {"type": "Reachability", "state": state})
    # The resume extension: Ack (19), Resumed (20), Resume Refused (21).
    resume = f"resume token={TOKEN} grace=30"
    add("extensions answer, resume", u8(16) + rest(resume), {"type": "Extensions", "names": resume})
    add("ack", u8(19) + u64(32), {"type": "Ack", "count": "32"})
    add("resumed", u8(20) + u64(1234) + rest(TOKEN), {"type": "Resumed", "count": "1234", "token": TOKEN})
    add("resume refused", u8(21) + rest("no session to resume with that token"),
        {"type": "ResumeRefused", "reason": "no session to resume with that token"})
    # The pubsub extension: Subscribed (22), Topic Refused (23), Message (24), Topic
    # Peer (25), Missed (26).
    add("subscribed", u8(22) + rest(LOBBY), {"type": "Subscribed", "topic": LOBBY})
    refusal = "the session subscribes to 32 topics already, all it may"
    add("topic refused", u8(23) + s(LOBBY) + rest(refusal), {"type": "TopicRefused", "topic": LOBBY, "reason": refusal})
    add("topic message", u8(24) + s(LOBBY) + s(PEER_A) + u64(7) + b"\x00\x01\xfe\xff",
        {"type": "TopicMessage", "topic": LOBBY, "from": PEER_A, "seq": "7", "data": "0001feff"})
    add("topic message, max seq, empty", u8(24) + s(LOBBY) + s(PEER_B) + u64(2**64 - 1),
        {"type": "TopicMessage", "topic": LOBBY, "from": PEER_B, "seq": str(2**64 - 1), "data": ""})
    add("topic peer joined", u8(25) + flag(True) + s(LOBBY) + rest(PEER_B),
        {"type": "TopicPeer", "joined": True, "topic": LOBBY, "peerID": PEER_B})
    add("topic peer left", u8(25) + flag(False) + s(LOBBY) + rest(PEER_C),
        {"type": "TopicPeer", "joined": False, "topic": LOBBY, "peerID": PEER_C})
    add("missed", u8(26) + s(LOBBY) + u64(298), {"type": "Missed", "topic": LOBBY, "count": "298"})
    return v


# ---------------------------------------------------------------- invalid client messages


# A topic (pubsub extension).
LOBBY = "gem-rush/lobby"

# A resume token: 32 bytes, base64url without padding.
TOKEN = base64.urlsafe_b64encode(bytes(range(32))).decode("ascii").rstrip("=")


def client_invalid() -> list[dict]:
    v = []

    def add(name, raw, error):
        v.append({"name": name, "hex": raw.hex(), "error": error})

    add("empty message", b"", "empty")
    add("unknown type 200", u8(200) + b"\x01\x02", "unknown message type")
    add("close with a 7-byte body", u8(3) + b"\x00" * 7, "Close")
    add("data with 5 bytes", u8(4) + b"\x00" * 5, "Data")
    add("listen with no body", u8(1), "Listen")
    # Client reading: PROTOCOL length 64 with 2 bytes left; README reading: protocol "" and
    # then a RELAY length of 0x402f. Neither fits.
    add("connect protocol length exceeds", u8(5) + b"\x01\x00\x00\x40" + b"/p", "exceeds")
    add("stop first byte neither flag nor slash", u8(2) + b"A/x", "Stop")
    add("listen frames byte 7", u8(1) + b"\x07" + rest("/x"), "FRAMES")
    add("presence with no body", u8(6), "Presence")
    add("presence on byte 2", u8(6) + b"\x02", "Presence")
    add("credit of 0 bytes", u8(8) + u64(1) + u32(0), "Credit")
    add("credit with 2 bytes of BYTES", u8(8) + u64(1) + b"\x00\x01", "Credit")
    add("credit with no body", u8(8), "Credit")
    add("ack with 7 bytes", u8(9) + b"\x00" * 7, "Ack")
    add("publish with a topic length past the end", u8(12) + b"\x00\x10" + b"gem", "Publish")
    add("extensions with a newline", u8(7) + b"credit\n", "Extensions")
    add("extensions with a NUL byte", u8(7) + b"credit\x00presence", "Extensions")
    add("extensions not ascii", u8(7) + rest("crédit"), "Extensions")
    add("extensions of 1025 bytes", u8(7) + b"credit " + b"x" * (MAX_EXTENSIONS + 1 - len("credit ")), "Extensions")
    return v


# ---------------------------------------------------------------- ascii85 and addrs


def ascii85_vectors() -> list[dict]:
    inputs = [
        b"",
        b"\x00",
        b"a",
        b"ab",
        b"abc",
        b"abcd",
        b"abcde",
        b"\x00\x00\x00\x00",  # z
        b"\x00\x00\x00\x00\x00\x00\x00\x00",  # zz
        b"\x00\x00\x00",  # trailing partial zero group: no z
        b"\x00\x00\x00\x00\x00",  # z then a partial zero group
        b"\x00\x00\x00\x00\x01\x00\x00\x00\x00",
        b"\xff",
        b"\xff\xff",
        b"\xff\xff\xff\xff",
        b"\xff\xff\xff\xff\xff\xff\xff",
        b"\x00\x00\x00\x01",
        b"Man is distinguished",
        b"    ",  # four spaces: not a z group
        "héllo wörld ✓".encode("utf-8"),
        compact_json({"peerID": PEER_B, "addrs": []}).encode("utf-8"),
    ]
    for n in (1, 2, 3, 4, 5, 6, 7, 8, 13, 31, 64):
        inputs.append(fixed_bytes(f"a85/{n}", n))
    return [{"hex": b.hex(), "text": a85(b)} for b in inputs]


def addrs_vectors() -> list[dict]:
    cases = [
        (PEER_A, ["/ip4/127.0.0.1/tcp/4001"]),
        (PEER_B, ADDRS_B),
        (PEER_C, [f"/ip4/203.0.113.7/tcp/4001/p2p/{PEER_C}", "/ip4/203.0.113.7/udp/4001/quic-v1"]),
        (PEER_RELAY, []),
        (PEER_A, [f"/ip4/198.51.100.1/tcp/4001/p2p/{PEER_RELAY}/p2p-circuit/p2p/{PEER_A}"]),
    ]
    out = []
    for peer_id, addrs in cases:
        text = compact_json({"peerID": peer_id, "addrs": addrs})
        out.append({"peerID": peer_id, "addrs": addrs, "json": text, "connect": connect_string(peer_id, addrs)})
    return out


# ---------------------------------------------------------------- main


def main() -> None:
    client = client_vectors()
    server = server_vectors()
    for vec in client:
        assert decode_client(bytes.fromhex(vec["hex"])) == vec["msg"], vec["name"]
    for vec in server:
        assert decode_server(bytes.fromhex(vec["hex"])) == vec["msg"], vec["name"]
    for vec in client_invalid():
        try:
            decode_client(bytes.fromhex(vec["hex"]))
        except (Short, AssertionError, IndexError, UnicodeDecodeError):
            continue
        raise AssertionError(f"invalid vector decodes: {vec['name']}")
    for vec in ascii85_vectors():
        assert base64.a85decode(vec["text"]) == bytes.fromhex(vec["hex"])
    for vec in addrs_vectors():
        assert vec["connect"].startswith("/addrs/")
        assert json.loads(base64.a85decode(vec["connect"][len("/addrs/"):])) == {
            "peerID": vec["peerID"], "addrs": vec["addrs"]}
    names = [v["name"] for v in client] + [v["name"] for v in server]
    assert len({("c", v["name"]) for v in client} | {("s", v["name"]) for v in server}) == len(names)

    doc = {
        "client": client,
        "server": server,
        "client_invalid": client_invalid(),
        "ascii85": ascii85_vectors(),
        "addrs": addrs_vectors(),
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
