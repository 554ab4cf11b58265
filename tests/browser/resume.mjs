// resume.mjs: the resume extension in a real Chromium: a game and a chat survive a
// 5 s network cut, and a reloaded host page takes its game's listener back.
//
//   node tests/browser/resume.mjs <urlA> <urlB> <peer id of A>
//
// Daemon B was started with `-peer <A's address>`. Alice hosts a Gem Rush game and a
// chat room on A; Carol plays the game and Bob chats, both on B, their pages' control
// WebSockets going through a TCP proxy this script runs. Chromium's offline emulation
// (`context.setOffline`) does not break a WebSocket that is already open (it only makes
// new connections fail, and may hold back the reset of an open one), so the cut is made
// by the proxy, which resets every connection it carries and refuses new ones until
// the end of the cut; once the pages saw the drop, setOffline makes their attempts to
// resume fail in the browser too, until the network is back. Numbered chat messages go both ways before, during and
// after the cut: each page must show exactly the other's, once, in order. Carol must
// still be in the game (on her page and on the host's), and move again. Then Alice's
// game page reloads: it must host the same game again (its listener taken back, not
// opened anew) and Carol, sent back to the lobby when her stream ended, joins again.
// Screenshots in target/browser/: resume-cut.png, resume-after.png, resume-reload.png.
// Exits non-zero with "FAIL: ..." on any failure; 180 s at most.

import net from 'node:net';

import { at, check, run, STEP } from './harness.mjs';

const [urlA, urlB, peerA] = process.argv.slice(2);
if (!urlA || !urlB || !peerA) {
    console.error('usage: node resume.mjs <daemon A base URL> <daemon B base URL> <peer id of A>');
    process.exit(2);
}

const CUT_MS = 5000;
/** How long a game announced by another daemon may take to reach a lobby (identify). */
const REMOTE = 45_000;

/** A TCP proxy to `target` (host:port) whose connections can be cut, and new ones refused. */
async function proxyTo(target) {
    const [host, port] = [target.hostname, Number(target.port)];
    const links = new Set();
    const proxy = { down: false, accepted: 0 };
    const server = net.createServer((inbound) => {
        if (proxy.down) {
            inbound.resetAndDestroy();
            return;
        }
        proxy.accepted++;
        const outbound = net.connect(port, host);
        const link = { inbound, outbound };
        links.add(link);
        const drop = () => {
            links.delete(link);
            inbound.destroy();
            outbound.destroy();
        };
        inbound.on('error', drop).on('close', drop);
        outbound.on('error', drop).on('close', drop);
        inbound.pipe(outbound);
        outbound.pipe(inbound);
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy.port = server.address().port;
    /** Drops every connection at once (a reset both ways): what was in flight is lost. */
    proxy.cut = () => {
        for (const { inbound, outbound } of links) {
            inbound.resetAndDestroy();
            outbound.resetAndDestroy();
        }
        links.clear();
    };
    proxy.close = () => {
        proxy.cut();
        server.close();
    };
    return proxy;
}

/** Polls `probe` (run in `page`) until `accept(value)` holds; returns the value. */
async function waitFor(page, probe, arg, accept, what, timeout = STEP) {
    const deadline = Date.now() + timeout;
    let value;
    for (;;) {
        value = await page.evaluate(probe, arg);
        if (accept(value)) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}; last saw ${JSON.stringify(value)}`);
        await page.waitForTimeout(50);
    }
}

// A page on daemon B whose control WebSocket goes through the proxy (the page, and so
// its Origin, stay daemon B's).
async function pageViaProxy(tools, label, file, proxy) {
    const page = await tools.page(label);
    await page.addInitScript((proxyHost) => {
        // What the daemon indicator said, and when (for a failure report).
        window.statusLog = [];
        const t0 = Date.now();
        addEventListener('DOMContentLoaded', () => {
            const el = document.getElementById('daemon-status');
            new MutationObserver(() => window.statusLog.push([Date.now() - t0, el.textContent])).observe(el, { childList: true, characterData: true, subtree: true });
        });
        const Native = window.WebSocket;
        window.WebSocket = class extends Native {
            constructor(url, protocols) {
                super(String(url).replace(`//${location.host}/`, `//${proxyHost}/`), protocols);
            }
        };
    }, `127.0.0.1:${proxy.port}`);
    await page.goto(at(urlB, file));
    return page;
}

const gameState = () => window.gameDebug.state();
const playerNames = (page) => page.evaluate(() => window.gameDebug.state().players.map((p) => p.name).sort().join());
const daemonStatus = (page) => page.evaluate(() => document.getElementById('daemon-status').textContent);

/** The chat messages of `page`: {from, text, mine, state} in the order shown. */
function chatMessages(page) {
    return page.$$eval('#messages .message', (items) =>
        items.map((m) => ({
            from: m.querySelector('.from')?.textContent ?? '',
            text: m.querySelector('.text')?.textContent ?? '',
            mine: m.classList.contains('mine'),
            state: m.classList.contains('unsent') ? 'unsent' : m.classList.contains('pending') ? 'pending' : 'sent',
        })),
    );
}

// A chat message's own text, exactly: the whole .message also holds the sender and the
// time ("Bob10:01 PM" contains "b10"), so matching it would find short texts elsewhere.
// (The texts here are letters and digits: no regex escaping needed.)
function chatText(text) {
    return { hasText: new RegExp(`^${text}$`) };
}

async function say(page, text) {
    await page.fill('#message', text);
    await page.click('#send');
    await page.locator('#messages .message.mine .text', chatText(text)).waitFor();
}

await run('resume: a game and a chat survive a network cut, a reload takes its listener back', 180_000, async (browser, tools) => {
    const proxy = await proxyTo(new URL(urlB));
    try {
        // ---------------------------------------------------------------- the game
        const alice = await tools.page('Alice game (A)');
        await alice.goto(at(urlA, 'game.html'));
        await alice.locator('body[data-presence="live"]').waitFor();
        await alice.fill('#name', 'Alice');
        await alice.fill('#game-name', 'Resume arena');
        await alice.click('#host');
        await alice.locator('body[data-mode="hosting"]').waitFor();
        const protocol = (await alice.evaluate(gameState)).game.protocol;

        const carol = await pageViaProxy(tools, 'Carol game (B)', 'game.html', proxy);
        await carol.locator('body[data-presence="live"]').waitFor();
        check(proxy.accepted >= 1, "Carol's WebSocket goes through the proxy");
        await carol.fill('#name', 'Carol');
        const entry = (page) => page.locator(`#games .game[data-protocol="${protocol}"]`);
        await entry(carol).locator('.join:enabled').waitFor({ timeout: REMOTE });
        await entry(carol).locator('.join').click();
        await carol.locator('body[data-mode="playing"]').waitFor();
        for (const page of [alice, carol]) {
            await waitFor(page, () => window.gameDebug.state().players.map((p) => p.name).sort().join(), null, (s) => s === 'Alice,Carol', 'two players');
        }
        // The daemons have pubsub: Carol takes the states from the game's topic.
        const topicBefore = (await alice.evaluate(() => window.gameDebug.transport())).host.topic;
        await waitFor(carol, () => window.gameDebug.transport().guest, null, (g) => g?.viaTopic && g.topic === topicBefore, "Carol to take the states from the game's topic");

        // ---------------------------------------------------------------- the chat
        const aliceChat = await tools.page('Alice chat (A)');
        await aliceChat.goto(at(urlA, 'chat.html'));
        await aliceChat.locator('#host:enabled').waitFor();
        await aliceChat.fill('#name', 'Alice');
        await aliceChat.click('#host');
        await aliceChat.locator('body[data-mode="hosting"]').waitFor();
        const connectString = (await aliceChat.inputValue('#connect-string')).trim();
        const bob = await pageViaProxy(tools, 'Bob chat (B)', 'chat.html', proxy);
        await bob.locator('#join:enabled').waitFor();
        await bob.fill('#name', 'Bob');
        await bob.fill('#join-string', connectString);
        await bob.click('#join');
        await bob.locator('body[data-mode="guest"]').waitFor();
        await aliceChat.locator('#members li', { hasText: 'Bob' }).waitFor();

        const fromAlice = [];
        const fromBob = [];
        const aliceSays = async () => {
            const text = `A${fromAlice.length + 1}`;
            fromAlice.push(text);
            await say(aliceChat, text);
        };
        const bobSays = async () => {
            const text = `B${fromBob.length + 1}`;
            fromBob.push(text);
            await say(bob, text);
        };
        for (let i = 0; i < 3; i++) {
            await aliceSays();
            await bobSays();
        }
        await bob.locator('#messages .message .text', chatText('A3')).waitFor();
        await aliceChat.locator('#messages .message .text', chatText('B3')).waitFor();

        // ---------------------------------------------------------------- the cut
        const seqBefore = (await carol.evaluate(gameState)).seq;
        const cutAt = Date.now();
        proxy.down = true;
        proxy.cut();
        for (const [name, page] of [['Carol', carol], ['Bob', bob]]) {
            await waitFor(page, () => [document.getElementById('daemon-status').textContent, window.statusLog], null, ([s]) => s === 'reconnecting…', `${name}'s page to see the drop`, 10_000);
        }
        const noticedMs = Date.now() - cutAt;
        // Offline only once the drop is seen: an emulated offline network can hold back
        // the reset of a WebSocket already open, until it is back online.
        await Promise.all([carol.context().setOffline(true), bob.context().setOffline(true)]);
        // Both ways during the cut: Alice's go out (daemon B holds them for Bob's
        // session), Bob's wait in his page.
        while (Date.now() - cutAt < CUT_MS - 1000) {
            await aliceSays();
            await bobSays();
            await aliceChat.waitForTimeout(400);
        }
        const waiting = (await chatMessages(bob)).filter((m) => m.mine && m.state === 'pending').map((m) => m.text);
        check(waiting.length > 0, `Bob's messages during the cut wait, shown pending: ${JSON.stringify(await chatMessages(bob))}`);
        check((await carol.evaluate(gameState)).mode === 'playing', 'Carol is still playing during the cut');
        check((await playerNames(alice)) === 'Alice,Carol', 'the host still has Carol during the cut');
        await tools.shot(carol, 'resume-cut.png');
        await carol.waitForTimeout(Math.max(0, CUT_MS - (Date.now() - cutAt)));

        // ---------------------------------------------------------------- back
        const restoredAt = Date.now();
        proxy.down = false;
        await Promise.all([carol.context().setOffline(false), bob.context().setOffline(false)]);
        const resumedMs = {};
        for (const [name, page] of [['Carol', carol], ['Bob', bob]]) {
            await waitFor(page, () => document.getElementById('daemon-status').textContent, null, (s) => s === 'connected', `${name}'s page to resume`, 15_000);
            resumedMs[name] = Date.now() - restoredAt;
        }
        check((await carol.evaluate(gameState)).mode === 'playing', 'Carol is still in the game after the cut');
        await waitFor(carol, () => window.gameDebug.state().seq, null, (seq) => seq > seqBefore + 30, 'states to flow to Carol again');
        check((await playerNames(alice)) === 'Alice,Carol', 'the host still has Carol after the cut');
        check((await playerNames(carol)) === 'Alice,Carol', 'Carol sees both players after the cut');
        // Her session kept its subscription through the cut: the states come from the
        // topic again (she may have asked for her stream while the topic was silent).
        await waitFor(carol, () => window.gameDebug.transport().guest, null, (g) => g?.viaTopic && g.topic === topicBefore, 'Carol on the topic again after the cut');
        await waitFor(alice, () => window.gameDebug.transport().host, null, (h) => h.viaTopic === 1, 'the host to see Carol on the topic again');
        // Carol moves: her input reaches the host again.
        const before = (await alice.evaluate(gameState)).players.find((p) => p.name === 'Carol');
        const key = before.x < 400 ? 'ArrowRight' : 'ArrowLeft';
        await carol.keyboard.down(key);
        await carol.waitForTimeout(500);
        await carol.keyboard.up(key);
        await waitFor(
            alice,
            () => window.gameDebug.state().players.find((p) => p.name === 'Carol')?.x,
            null,
            (x) => Math.abs(x - before.x) > 40,
            "the host to see Carol's move after the cut",
        );

        // Every chat message once, in order, on both sides.
        await aliceSays();
        await bobSays();
        const settle = async (page, want, mineName, otherName, mineWant) => {
            const seen = await waitFor(
                page,
                () =>
                    [...document.querySelectorAll('#messages .message')].map((m) => ({
                        from: m.querySelector('.from')?.textContent ?? '',
                        text: m.querySelector('.text')?.textContent ?? '',
                        mine: m.classList.contains('mine'),
                        pending: m.classList.contains('pending') || m.classList.contains('unsent'),
                    })),
                null,
                (list) =>
                    JSON.stringify(list.filter((m) => !m.mine).map((m) => m.text)) === JSON.stringify(want) &&
                    list.every((m) => !m.pending),
                `${mineName}'s page to show ${want.join(' ')} from ${otherName}, once each, and nothing pending`,
            );
            const mine = seen.filter((m) => m.mine).map((m) => m.text);
            check(JSON.stringify(mine) === JSON.stringify(mineWant), `${mineName}'s own messages: ${mine}`);
            check(seen.filter((m) => !m.mine).every((m) => m.from === otherName), `${mineName}'s page: every other message is ${otherName}'s`);
        };
        await settle(aliceChat, fromBob, 'Alice', 'Bob', fromAlice);
        await settle(bob, fromAlice, 'Bob', 'Alice', fromBob);
        await tools.shot(carol, 'resume-after.png');

        // ---------------------------------------------------------------- a reload
        const stored = await alice.evaluate(() => JSON.parse(sessionStorage.getItem('libp2p-websocket-resume') ?? 'null'));
        check(stored?.token?.length === 43, `the host page keeps a resume token in sessionStorage: ${JSON.stringify(stored)}`);
        const reloadAt = Date.now();
        await alice.reload();
        await alice.locator('body[data-mode="hosting"]').waitFor();
        const reloadMs = Date.now() - reloadAt;
        const again = await alice.evaluate(gameState);
        check(again.game?.protocol === protocol, `the reloaded page hosts the same game (${protocol}), got ${again.game?.protocol}`);
        const storedAgain = await alice.evaluate(() => JSON.parse(sessionStorage.getItem('libp2p-websocket-resume') ?? 'null'));
        check(storedAgain?.token && storedAgain.token !== stored.token, 'the reloaded page got a new token');
        // Carol's stream ended with the old page; she joins the same game again.
        await carol.locator('body[data-mode="lobby"]').waitFor();
        await entry(carol).locator('.join:enabled').click({ timeout: REMOTE });
        await carol.locator('body[data-mode="playing"]').waitFor();
        for (const page of [alice, carol]) {
            await waitFor(page, () => window.gameDebug.state().players.map((p) => p.name).sort().join(), null, (s) => s === 'Alice,Carol', 'Carol back in the reloaded game');
        }
        // The reloaded host subscribed to the lobby again and publishes on a new state
        // topic, which Carol follows.
        const reloaded = await waitFor(alice, () => window.gameDebug.transport(), null, (t) => t.lobby === 'gem-rush/lobby' && t.host?.viaTopic === 1, 'the reloaded host on the lobby topic, Carol on its state topic');
        check(reloaded.host.topic && reloaded.host.topic !== topicBefore, `the reloaded host publishes on a new state topic: ${JSON.stringify(reloaded.host)}`);
        await waitFor(carol, () => window.gameDebug.transport().guest, null, (g) => g?.viaTopic && g.topic === reloaded.host.topic, "Carol to follow the reloaded game's topic");
        await tools.shot(alice, 'resume-reload.png');

        // Chromium reports each failed attempt (made while offline) on the console; those
        // are the cut, not a problem.
        const expected = /WebSocket connection to '[^']*' failed/;
        for (let i = tools.problems.length - 1; i >= 0; i--) {
            if (expected.test(tools.problems[i])) tools.problems.splice(i, 1);
        }
        console.log(
            `measured: drop noticed after ${noticedMs} ms; resumed ${resumedMs.Carol} ms (Carol) and ${resumedMs.Bob} ms (Bob) after the network came back; ` +
                `reloaded host hosting again after ${reloadMs} ms; chat: ${fromAlice.length} + ${fromBob.length} messages, each once`,
        );
    } finally {
        proxy.close();
    }
});
