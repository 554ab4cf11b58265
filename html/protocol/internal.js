// internal.js: what the modules of the promise API share and protocol.js does not
// export: the symbols through which a Gateway, its Connections and the credit
// bookkeeping reach each other, and fire() for the events they dispatch.

'use strict';

const DetailEvent =
    globalThis.CustomEvent ??
    class DetailEvent extends Event {
        constructor(type, init = {}) {
            super(type, init);
            this.detail = init.detail ?? null;
        }
    };

/** Dispatches an event of `type` on `target` with `detail` (a CustomEvent where there is one). */
export function fire(target, type, detail) {
    return target.dispatchEvent(new DetailEvent(type, { detail }));
}

export const kSend = Symbol('send'); // gateway[kSend](msg): encodes and sends a client message
export const kLive = Symbol('live'); // gateway[kLive]: a message goes out now (not only kept for a resume)
export const kData = Symbol('data'); // conn[kData](bytes): a Data for the connection
export const kClosed = Symbol('closed'); // conn[kClosed](reason): the connection is over
export const kForget = Symbol('forget'); // gateway[kForget](id): the page closed it
export const kRelayed = Symbol('relayed'); // conn[kRelayed](relay): the daemon's Relayed
// The credit extension: what a Connection and its Gateway tell each other.
export const kOut = Symbol('out'); // a Connection's send side: a StreamSender (credit.js)
export const kWrite = Symbol('write'); // gateway[kWrite](conn, bytes, done, fail): send or queue a Data
export const kLinger = Symbol('linger'); // gateway[kLinger](conn): closed by the page, Close after its queue
export const kGiveBack = Symbol('giveBack'); // gateway[kGiveBack](conn, n): a client Credit
export const kOverrun = Symbol('overrun'); // gateway[kOverrun](conn, text): the daemon sent past its credit
export const kDrained = Symbol('drained'); // conn[kDrained](): its send queue just emptied
export const kAbort = Symbol('abort'); // conn[kAbort](reason): what it still had to send is dropped
