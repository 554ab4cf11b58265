// generations.mjs: chat pages of the original Go daemon's 2020 generations, speaking
// those generations' bytes, host, join, chat, disconnect and join again in Chromium.
//
//   node tests/browser/generations.mjs spring <host daemon URL> <guest daemon URL>
//   node tests/browser/generations.mjs july <host daemon URL> <guest daemon URL> <host port> <guest port>
//
// Both daemons serve tests/browser/generations/ with -files and start lazily (no key),
// so each page's Start starts its own daemon's node: generations/spring.html sends
// [0][KEY: rest] and reads Identify's KEY as rest; generations/july.html sends
// [0][PORT:2][KEY: rest] with the port given here (tests/browser.rs gives the host one
// below 8192 and the guest one above 32767; Identify's addresses must show it) and
// reads Identify as [KEY: str][VERSION: rest]. The host page (Alice) hosts a room,
// which the original chat refused on PUBLIC=0; the guest page (Bob), on the other
// daemon, joins with the connect string; they chat both ways; Bob clicks Disconnect,
// which completes only when the Connection Closed of his stream arrives; he joins
// again and they chat again; Alice stops hosting. Screenshots:
// target/browser/generations-<spring|july>-{host,guest}.png. 90 s at most.

import { at, check, Failure, run, STEP } from './harness.mjs';

const [generation, hostBase, guestBase, hostPort, guestPort] = process.argv.slice(2);
const july = generation === 'july';
if (!['spring', 'july'].includes(generation) || !hostBase || !guestBase || (july && !(hostPort && guestPort))) {
    console.error('usage: node generations.mjs spring|july <host daemon URL> <guest daemon URL> [<host port> <guest port> (july)]');
    process.exit(2);
}
/** How long the guest's Disconnect may take to complete. */
const DISCONNECT = 20_000;
/** How long after Start the Identify may come ("at once"; the daemon used to hold it 10 s). */
const IDENTIFY = 5_000;
const PRIVATE = 'You must use a relay because your connection is private';

const chatOf = (who) => who.page.evaluate(() => window.chat);
const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
const utf8Hex = (text) => hex(new TextEncoder().encode(text));
const sent = (chat, type) => chat.log.filter((e) => e.what === 'sent' && e.type === type);
const seen = (chat, what) => chat.log.filter((e) => e.what === what);

/** What went wrong on a page so far, for failure messages. */
function trouble(who, chat) {
    const errors = chat ? seen(chat, 'error').map((e) => e.msg) : [];
    const parts = [];
    if (errors.length) parts.push(`Protocol Errors: ${JSON.stringify(errors)}`);
    if (who.dialogs.length) parts.push(`alerts: ${JSON.stringify(who.dialogs)}`);
    return parts.length ? ` (${parts.join('; ')})` : '';
}

/** Polls the page's window.chat until `accept(chat)` holds, at most `ms`. */
async function until(who, what, accept, ms = STEP) {
    const deadline = Date.now() + ms;
    for (;;) {
        const chat = await chatOf(who);
        if (chat && accept(chat)) return chat;
        if (Date.now() > deadline) {
            const tail = chat ? chat.log.slice(-8).map((e) => JSON.stringify(e)).join('\n    ') : '(no window.chat)';
            throw new Failure(
                `${who.label}: timed out after ${ms / 1000} s waiting for ${what}; state ${chat?.state}${trouble(who, chat)}; last events:\n    ${tail}`,
            );
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

/** Opens the generation's page on `base`: Hello, Start, Identify, checked. */
async function open(tools, label, base, port, user) {
    const page = await tools.page(label);
    const who = { page, label, dialogs: [] };
    page.on('dialog', (dialog) => {
        who.dialogs.push(dialog.message());
        dialog.dismiss().catch(() => {});
    });
    await page.goto(at(base, july ? `july.html?port=${port}` : 'spring.html'));
    const chat = await until(who, 'Identify', (c) => c.identifies > 0 || seen(c, 'error').length > 0);
    check(seen(chat, 'error').length === 0, `${label}: the daemon answered the page's messages with a Protocol Error${trouble(who, chat)}`);

    // Hello said the node was not running, so the page sent Start in its generation's layout.
    check(chat.hello?.started === false, `${label}: Hello says STARTED=0 (a lazy daemon), got ${JSON.stringify(chat.hello)}`);
    const [start, ...more] = sent(chat, 'Start');
    check(start && more.length === 0, `${label}: the page sent one Start`);
    const wantStart = july ? `00${Number(port).toString(16).padStart(4, '0')}` : '00';
    check(start.hex === wantStart, `${label}: Start is ${start.hex}, want ${wantStart}`);
    const [ident] = seen(chat, 'ident');
    const took = ident.at - start.at;
    check(took <= IDENTIFY, `${label}: Identify came ${took} ms after Start; it should come at once`);

    // Identify, read as this generation's client read it.
    check(chat.natStatus === 'public', `${label}: Identify says PUBLIC=0 (NAT status ${chat.natStatus}): the original's chat refuses to host on that`);
    check(/^12D3KooW[1-9A-HJ-NP-Za-km-z]+$/.test(chat.peerID), `${label}: Identify's peer id, got ${JSON.stringify(chat.peerID)}`);
    check(Array.isArray(chat.addresses) && chat.addresses.every((a) => a.startsWith('/ip4/127.0.0.1/')), `${label}: addresses on loopback only: ${JSON.stringify(chat.addresses)}`);
    const tcp = july ? `/ip4/127.0.0.1/tcp/${port}` : '/ip4/127.0.0.1/tcp/';
    check(chat.addresses.some((a) => a.startsWith(tcp) && (july ? a === tcp : true)), `${label}: Identify's addresses include ${tcp}: ${JSON.stringify(chat.addresses)}`);
    check(/^[A-Za-z0-9+/]{40,}={0,2}$/.test(chat.key), `${label}: Identify's KEY is the base64 key (read as ${july ? 'a str' : 'the rest'}), got ${JSON.stringify(chat.key?.slice(0, 60))}`);
    if (july) {
        check(/^libp2p-websocket\/\S+$/.test(chat.version), `${label}: Identify's VERSION after the KEY str, got ${JSON.stringify(chat.version)}`);
        check(chat.hello.version.startsWith('libp2p-websocket/'), `${label}: Hello's VERSION, got ${JSON.stringify(chat.hello.version)}`);
    }
    check(chat.state === 'disconnected', `${label}: ready to host or join, state ${chat.state}`);
    await page.fill('#user', user);
    console.log(`${label}: ${chat.peerID}, Identify ${took} ms after Start, PUBLIC=1, addresses ${JSON.stringify(chat.addresses)}`);
    return who;
}

/** `from` types `text` and Enter; it shows up on `to`. */
async function say(from, to, name, text) {
    await from.page.fill('#send', text);
    await from.page.press('#send', 'Enter');
    await until(to, `"${text}" from ${name}`, (c) => c.conversation.some((m) => m.from === name && m.text === text && !m.me));
    await from.page.locator('#conversation .me', { hasText: text }).waitFor();
    await to.page.locator('#conversation .them', { hasText: text }).waitFor();
}

/** The guest joins with the connect string; both see each other's name. */
async function join(host, guest, connectString, hostPeer, protocol) {
    await guest.page.fill('#toHostID', connectString);
    await guest.page.click('#connect');
    const chat = await until(guest, 'the Peer Connection to the host', (c) => c.state === 'connectedToHost');
    const connect = sent(chat, 'Connect').at(-1).hex;
    const protocolHex = utf8Hex(protocol);
    const lengthHex = (protocolHex.length / 2).toString(16).padStart(4, '0');
    check(
        connect.startsWith(`050100${lengthHex}${protocolHex}${utf8Hex('/addrs/')}`),
        `${guest.label}: Connect is [5][FRAMES=1][RELAY=0][PROTOCOL: str][PEERID: /addrs/…], got ${connect.slice(0, 40)}…`,
    );
    const peerConnection = seen(chat, 'peerConnection').at(-1);
    check(peerConnection.peerID === hostPeer && peerConnection.protocol === protocol, `${guest.label}: connected to the host's peer id on ${protocol}`);
    await until(host, 'the guest in its user list', (c) => c.users.includes('Bob'));
    await until(guest, 'the host in its user list', (c) => c.users.includes('Alice') && c.users.includes('Bob'));
    return chat.connectionId;
}

await run(`${generation} 2020 chat pages`, 90_000, async (browser, tools) => {
    const host = await open(tools, `${generation} host`, hostBase, hostPort, 'Alice');
    const guest = await open(tools, `${generation} guest`, guestBase, guestPort, 'Bob');
    check((await chatOf(host)).peerID !== (await chatOf(guest)).peerID, 'the two daemons have different peer ids');

    // Alice hosts: the page refuses on PUBLIC=0, as the original's chat did.
    await host.page.click('#host');
    let hostChat = await until(host, 'Listening on its chat protocol', (c) => c.connectString || c.state !== 'hostingDirectly' || host.dialogs.length > 0);
    check(!host.dialogs.includes(PRIVATE) && seen(hostChat, 'refusedToHost').length === 0, `${host.label}: refused to host: "${PRIVATE}"`);
    check(hostChat.state === 'hostingDirectly' && hostChat.connectString, `${host.label}: hosting, state ${hostChat.state}${trouble(host, hostChat)}`);
    const protocol = seen(hostChat, 'listening')[0].protocol;
    check(/^\/x\/chat-[A-Za-z]{16}$/.test(protocol), `${host.label}: listens on /x/chat-…, got ${protocol}`);
    check(sent(hostChat, 'Listen')[0].hex === `0101${utf8Hex(protocol)}`, `${host.label}: Listen is [1][FRAMES=1][PROTOCOL: rest]`);
    const { connectString, peerID: hostPeer } = hostChat;
    check((await host.page.inputValue('#connectString')) === hostChat.connectString, `${host.label}: shows the connect string`);

    // Bob joins from the other daemon; they chat both ways.
    const firstId = await join(host, guest, connectString, hostPeer, protocol);
    await say(guest, host, 'Bob', 'Hi Alice, Bob here on the other daemon.');
    await say(host, guest, 'Alice', 'Hello Bob! Loud and clear.');

    // Bob disconnects: "Disconnecting..." until the Connection Closed of his stream.
    await guest.page.click('#connect');
    let guestChat = await chatOf(guest);
    check(['disconnectingFromHost', 'disconnected'].includes(guestChat.state), `${guest.label}: Disconnect pressed, state ${guestChat.state}`);
    const closeHex = `03${BigInt(firstId).toString(16).padStart(16, '0')}`;
    check(sent(guestChat, 'Close').at(-1)?.hex === closeHex, `${guest.label}: Close is [3][ID:8] for stream ${firstId}`);
    const disconnectStarted = Date.now();
    guestChat = await until(
        guest,
        `Connection Closed(${firstId}) to finish Disconnect (the page shows "Disconnecting..." until then)`,
        (c) => c.state === 'disconnected',
        DISCONNECT,
    );
    const closed = seen(guestChat, 'connectionClosed').filter((e) => e.id === firstId);
    check(closed.length === 1 && closed[0].reason === 'closed', `${guest.label}: one Connection Closed(${firstId}, "closed"), got ${JSON.stringify(closed)}`);
    // In the page's log: Close sent, then "disconnectingFromHost", then Connection
    // Closed, and only then "disconnected".
    const log = guestChat.log;
    const closeAt = log.findLastIndex((e) => e.what === 'sent' && e.type === 'Close');
    const closedAt = log.findIndex((e) => e.what === 'connectionClosed' && e.id === firstId);
    const order = log.slice(closeAt).filter((e) => e.what === 'state' || e.what === 'connectionClosed').map((e) => e.state ?? `connectionClosed ${e.id}`);
    check(
        JSON.stringify(order) === JSON.stringify(['disconnectingFromHost', `connectionClosed ${firstId}`, 'disconnected']) && closedAt > closeAt,
        `${guest.label}: after Close, "disconnectingFromHost", Connection Closed, then "disconnected"; got ${JSON.stringify(order)}`,
    );
    check((await guest.page.textContent('#connect')) === 'Connect', `${guest.label}: the button says Connect again`);
    console.log(`${guest.label}: Disconnect completed in ${Date.now() - disconnectStarted} ms (Connection Closed "closed")`);
    hostChat = await until(host, 'the guest to leave its user list', (c) => !c.users.includes('Bob'));
    const hostSide = seen(hostChat, 'listenerConnection').at(-1);
    check(seen(hostChat, 'connectionClosed').some((e) => e.id === hostSide.id), `${host.label}: Connection Closed for the guest's stream`);

    // Bob joins again with the same connect string; they chat again.
    const secondId = await join(host, guest, connectString, hostPeer, protocol);
    check(secondId !== firstId, `${guest.label}: a new stream id on rejoining (${firstId} then ${secondId})`);
    await say(guest, host, 'Bob', "I'm back — same connect string.");
    await say(host, guest, 'Alice', 'Welcome back, Bob.');
    await tools.shot(host.page, `generations-${generation}-host.png`);
    await tools.shot(guest.page, `generations-${generation}-guest.png`);

    // Alice stops hosting ([2][RETAIN=0][PROTOCOL]): the room closes under Bob.
    await host.page.click('#host');
    hostChat = await until(host, 'Listener Closed', (c) => c.state === 'disconnected');
    check(sent(hostChat, 'Stop').at(-1)?.hex === `0200${utf8Hex(protocol)}`, `${host.label}: Stop is [2][RETAIN=0][PROTOCOL: rest]`);
    check(seen(hostChat, 'listenerClosed').some((e) => e.protocol === protocol), `${host.label}: Listener Closed(${protocol})`);
    guestChat = await until(guest, 'the room to close under it', (c) => c.state === 'disconnected');
    check(seen(guestChat, 'connectionClosed').some((e) => e.id === secondId), `${guest.label}: Connection Closed(${secondId}) when the host stopped`);

    for (const who of [host, guest]) {
        const chat = await chatOf(who);
        check(seen(chat, 'error').length === 0, `${who.label}: no Protocol Error${trouble(who, chat)}`);
        check(who.dialogs.length === 0, `${who.label}: no alert${trouble(who, chat)}`);
        check(chat.identifies === 1, `${who.label}: one Identify (the original's chat resets on each), got ${chat.identifies}`);
        check(seen(chat, 'ignored').length === 0, `${who.label}: no message type it does not know: ${JSON.stringify(seen(chat, 'ignored'))}`);
    }
});
