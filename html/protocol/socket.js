// socket.js: the WebSocket plumbing of the promise API: binary messages in arrival
// order, whatever form the WebSocket implementation hands them in, and the default URL
// of the daemon's control socket.

'use strict';

import { Blob_, toBytes } from './codec.js';

/** A WebSocket's readyState once open. */
export const OPEN = 1;

// Delivers each binary message of `ws` to `onBytes` in arrival order, whatever form the
// WebSocket implementation hands it in (ArrayBuffer, Blob, Node Buffer).
export function receiveBinary(ws, onBytes) {
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

export function defaultUrl() {
    const loc = globalThis.location;
    if (!loc || !loc.host) {
        throw new Error('no URL given, and no page location to derive ws://<host>/libp2p from');
    }
    return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/libp2p';
}
