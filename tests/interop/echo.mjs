// A plain js-libp2p 3 node (TCP, noise, yamux) that echoes every stream on ECHO with
// ordinary js-libp2p backpressure: when send() says its buffer is full, it pauses
// reading until 'drain'. Prints `READY <peer id> <multiaddr>`; exits when stdin ends.
//
// Its yamux receive window is capped at 2 MiB. js-libp2p 3's defaults grant a stream up
// to 16 MiB of window but abort a paused stream once 4 MiB are buffered
// (StreamBufferError), so with the defaults any sender that fills the window while
// this echo waits on its own writes gets the stream reset: a js-libp2p limit, seen
// as well between two js-libp2p nodes, and not what these tests are about.
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';

// Node 20 lacks Promise.withResolvers, which js-libp2p 3 uses.
Promise.withResolvers ??= function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
};

const ECHO = '/test/echo/1';
const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: 2 * 1024 * 1024 } })],
});
await node.handle(ECHO, async (stream) => {
    stream.addEventListener('message', (event) => {
        const data = event.data.subarray ? event.data.subarray() : event.data;
        if (!stream.send(data)) {
            stream.pause();
            stream.addEventListener('drain', () => stream.resume(), { once: true });
        }
    });
    stream.addEventListener('remoteCloseWrite', () => { stream.close().catch(() => {}); });
    stream.addEventListener('close', (e) => { if (e.error) console.error('ECHO stream closed with', e.error?.name, e.error?.message); });
}, { maxInboundStreams: 64 });
console.log(`READY ${node.peerId.toString()} ${node.getMultiaddrs()[0].toString()}`);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
