// legacy.mjs: a page written for the original daemon's callback API runs unchanged.
//
//   node tests/browser/legacy.mjs <url of a daemon serving legacy/ and html/ with -files> <url of another daemon>
//
// legacy/legacy.html (import libp2p from './protocol.js'; libp2p.startProtocol(url,
// handler)) must get hello and ident, listen on /x/legacy-echo, and accept a
// connection that a page on the other daemon (its index.html, embedded) opens with
// the promise API; it echoes what it receives. Screenshot: target/browser/legacy.png. 60 s at most.

import { at, check, run } from './harness.mjs';

const [legacyBase, otherBase] = process.argv.slice(2);
if (!legacyBase || !otherBase) {
    console.error('usage: node legacy.mjs <legacy daemon base URL> <other daemon base URL>');
    process.exit(2);
}

const PROTOCOL = '/x/legacy-echo';
const PING = 'ping from a promise-API page on another daemon';

const events = (page) => page.evaluate(() => window.events);
const named = (list, name) => list.filter((e) => e.name === name);

await run('legacy callback page', 120_000, async (browser, tools) => {
    const legacy = await tools.page('legacy page');
    await legacy.goto(at(legacyBase, 'legacy.html'));
    await legacy.locator('body[data-state="listening"]').waitFor();
    let seen = await events(legacy);
    check(seen[0]?.name === 'hello' && seen[0].args[0] === false, `first hello(false), got ${JSON.stringify(seen[0])}`);
    const [ident] = named(seen, 'ident');
    check(ident, `ident was called: ${JSON.stringify(seen)}`);
    const [status, peerID, addresses, key] = ident.args;
    check(['public', 'private'].includes(status), `ident status, got ${status}`);
    check(/^12D3KooW/.test(peerID), `ident peer id, got ${peerID}`);
    check(Array.isArray(addresses) && addresses.some((a) => a.startsWith('/ip4/127.0.0.1/tcp/')), `ident addresses: ${addresses}`);
    check(key === 'key given', 'a page on the daemon\'s own machine gets the key');
    check(named(seen, 'listening')[0]?.args[0] === PROTOCOL, `listening(${PROTOCOL})`);
    const connectString = (await legacy.textContent('#connect-string')).trim();

    // A page on the other daemon dials it with the promise API.
    const other = await tools.page('promise-API page');
    await other.goto(at(otherBase, 'index.html'));
    const reply = await other.evaluate(
        async ({ connectString, PROTOCOL, PING }) => {
            const { Gateway } = await import('/protocol.js');
            const gw = await Gateway.connect();
            const conn = await gw.connect(connectString, PROTOCOL, { framed: true });
            const answer = new Promise((resolve) =>
                conn.addEventListener('data', (e) => resolve(new TextDecoder().decode(e.detail)), { once: true }),
            );
            conn.send(PING);
            const text = await answer;
            conn.close();
            return { text, me: gw.peerID, remote: conn.peerID };
        },
        { connectString, PROTOCOL, PING },
    );
    check(reply.remote === peerID, `the promise page reached ${peerID}, got ${reply.remote}`);
    const echo = JSON.parse(reply.text);
    check(echo.name === 'echo' && echo.text === PING, `the legacy page echoed, got ${reply.text}`);
    check(echo.from === reply.me, `the legacy page's TrackingHandler knew the caller ${reply.me}, got ${echo.from}`);
    // The landing page it ran on shows the same node.
    await other.locator('#state', { hasText: 'Connected' }).waitFor();
    check((await other.textContent('#peer-id')).trim() === reply.me, 'index.html shows the node\'s peer id');
    check((await other.inputValue('#connect-string')).startsWith('/addrs/'), 'index.html shows a connect string');

    await legacy.locator('#events li', { hasText: 'connectionClosed' }).waitFor();
    seen = await events(legacy);
    const [conn] = named(seen, 'listenerConnection');
    check(conn && conn.args[1] === reply.me && conn.args[2] === PROTOCOL, `listenerConnection(id, ${reply.me}, ${PROTOCOL}): ${JSON.stringify(conn)}`);
    const [data] = named(seen, 'data');
    check(data && data.args[0] === conn.args[0] && data.args[1] === PING && data.args[2] === 'incoming', `data: ${JSON.stringify(data)}`);
    check(named(seen, 'connectionClosed')[0].args[0] === conn.args[0], 'connectionClosed for the same id');

    // Commands work too: stop listening.
    await legacy.evaluate(() => window.stopListening());
    await legacy.locator('body[data-state="stopped"]').waitFor();
    check(named(await events(legacy), 'error').length === 0, 'no protocol error');
    await tools.shot(legacy, 'legacy.png', { fullPage: true });
});
