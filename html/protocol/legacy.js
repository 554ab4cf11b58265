// legacy.js: the callback API of the original Go project's protocol.js, kept so pages
// written for it run unchanged; and the default export, everything as one object.

'use strict';

import {
    ClientType,
    KEY_STORAGE_NAME,
    PeerState,
    ServerType,
    a85decode,
    a85encode,
    decodeClientMessage,
    decodeServerMessage,
    encodeClientMessage,
    encodeServerMessage,
    isConnectString,
    lossyDecoder,
    makeConnectString,
    parseConnectString,
    peerStateName,
    toBytes,
    utf8Encoder,
} from './codec.js';
import { Connection } from './connection.js';
import { Gateway, parseAddresses } from './gateway.js';
import { parsePeerInfo } from './presence.js';
import { defaultUrl, receiveBinary } from './socket.js';

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
