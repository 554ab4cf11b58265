// A plain js-libp2p 3 node (TCP, noise, yamux, identify) running gossipsub
// (@libp2p/gossipsub, signed messages, strict validation: its defaults), subscribed
// to the topic given as argv[2] and dialing the multiaddrs after it. Prints
// `READY <peer id>`, then `JOINED <peer id>` as peers join the topic and
// `MESSAGE <from> <seq> <text>` for each message; publishes each line read on stdin.
// Exits when stdin ends.
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { gossipsub } from '@libp2p/gossipsub';
import { multiaddr } from '@multiformats/multiaddr';
import { createInterface } from 'node:readline';

// Node 20 lacks Promise.withResolvers, which js-libp2p 3 uses.
Promise.withResolvers ??= function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
};

const [topic, ...dial] = process.argv.slice(2);
const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), pubsub: gossipsub() },
});
const pubsub = node.services.pubsub;
pubsub.addEventListener('message', (event) => {
    const m = event.detail;
    if (m.type !== 'signed') return;
    const text = new TextDecoder().decode(m.data);
    console.log(`MESSAGE ${m.from.toString()} ${m.sequenceNumber} ${text}`);
});
pubsub.addEventListener('subscription-change', (event) => {
    for (const s of event.detail.subscriptions) {
        if (s.topic === topic && s.subscribe) console.log(`JOINED ${event.detail.peerId.toString()}`);
    }
});
pubsub.subscribe(topic);
for (const addr of dial) await node.dial(multiaddr(addr));
console.log(`READY ${node.peerId.toString()}`);
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
    pubsub.publish(topic, new TextEncoder().encode(line)).catch((e) => console.log(`ERROR ${e.message}`));
});
lines.on('close', () => process.exit(0));
