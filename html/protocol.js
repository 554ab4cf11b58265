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
//      `gw.listen()`, `gw.connect()`, `Connection` objects with events, async
//      iteration and WHATWG streams (`conn.readable`, `conn.writable`;
//      `conn.relayed` / `conn.relay` when the stream goes through a circuit
//      relay); the presence extension: `await gw.subscribe()`, `gw.peers()`,
//      `gw.localListeners()`, `gw.findProtocols(prefix)`; and the credit
//      extension, per-stream flow control, used whenever the daemon offers it
//      (`conn.send()` returns false and `drain` fires behind missing credit); and the
//      resume extension, also used when offered: the session survives a dropped
//      WebSocket (`disconnected`, `resumed`, `lost` events) and a page reload; and
//      the pubsub extension: `const topic = await gw.subscribe('name')` (messages
//      from `for await`, `topic.readable` or `message` events), `gw.publish()`.
//   3. The callback API of the original Go project's protocol.js
//      (`import libp2p from './protocol.js'; libp2p.startProtocol(url, handler)`),
//      kept so pages written for it run unchanged.
//
// The three layers live in protocol/: codec.js (1); gateway.js (the Gateway class),
// connection.js (Connection), credit.js (the credit extension's bookkeeping),
// resume.js (the resume extension's), presence.js (the presence table), topics.js
// (pubsub's topics), socket.js and
// internal.js (what they share) (2);
// legacy.js (3). This module re-exports each layer's public names, and the default
// export, so `/protocol.js` is all a page imports. No build step, no dependencies: ES
// modules for browsers and Node 20+.

export {
    ClientType,
    KEY_STORAGE_NAME,
    MAX_CREDIT,
    MAX_EXTENSIONS,
    MAX_ID,
    PeerState,
    ServerType,
    a85decode,
    a85encode,
    decodeClientMessage,
    decodeServerMessage,
    encodeClientMessage,
    encodeServerMessage,
    isConnectString,
    makeConnectString,
    parseConnectString,
    parseExtensionNames,
    peerStateName,
    toBytes,
} from './protocol/codec.js';
export { Connection } from './protocol/connection.js';
export { Gateway } from './protocol/gateway.js';
export { parsePeerInfo } from './protocol/presence.js';
export { RESUME_STORAGE_NAME } from './protocol/resume.js';
export { MAX_TOPIC_LEN, TOPIC_QUEUE, Topic } from './protocol/topics.js';
export {
    BlankHandler,
    CommandHandler,
    ConnectionInfo,
    DelegatingHandler,
    LoggingHandler,
    TrackingHandler,
    checkPeerID,
    checkProt,
    close,
    connect,
    connectionError,
    decode_ascii85,
    encode_ascii85,
    getConnectionInfo,
    getInfoForPeerAndProtocol,
    getString,
    listen,
    natStatus,
    relayErrors,
    sendData,
    sendObject,
    sendString,
    start,
    startProtocol,
    stop,
} from './protocol/legacy.js';
export { default } from './protocol/legacy.js';
