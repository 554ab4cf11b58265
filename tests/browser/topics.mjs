// topics.mjs: Gem Rush (examples/game.*) over the pubsub extension in a real Chromium:
// three players on two connected daemons, the state broadcast on a topic.
//
//   node tests/browser/topics.mjs <urlA> <urlB> <peer id of A>
//
// Daemon B was started with `-peer <A's address>`. Alice (A) hosts; the lobby topic
// brings her game's player count to the lobbies of Bob (A) and Carol (B), who join.
// Every page counts what its control WebSocket carries, by message type (an init
// script, tests/browser/wscount.mjs: Publish 12 and Data 4 going out, Message 24 and
// Data 4 coming in). Asserted: the host publishes the states on the game's state
// topic, once each, and once both guests take them from the topic it sends them no
// state on their streams; the guests get every state from the topic (from daemon A's
// peer id), none on their streams, at least 20 a second; everyone sees everyone's
// moves (so through the topic). A guest whose
// topic falls silent gets its states on its stream again, and goes back to the topic
// when it delivers. Dave (B), a page without pubsub (?pubsub=0, as with an older
// daemon), joins the same game and plays on his stream meanwhile. Carol reloads her
// page: her session, taken back, still subscribes to the state topic, and the page
// unsubscribes (no state reaches it any more). Then Alice ends the game: Bob is back in
// the lobby, unsubscribed from the state topic.
// Screenshots in target/browser/: topics-lobby.png, topics-host.png,
// topics-guest-remote.png. Exits non-zero with "FAIL: ..." on any failure; 150 s at most.

import { at, check, run, STEP } from './harness.mjs';
import { countWebSocket } from './wscount.mjs';

const [urlA, urlB, peerA] = process.argv.slice(2);
if (!urlA || !urlB || !peerA) {
    console.error('usage: node topics.mjs <daemon A base URL> <daemon B base URL> <peer id of A>');
    process.exit(2);
}

/** How long a game announced by another daemon may take to reach a lobby (identify). */
const REMOTE = 45_000;

/** Polls `probe` (a function run in `page`) until `accept(value)` holds; returns the value. */
async function waitFor(page, probe, arg, accept, what, timeout = STEP) {
    const deadline = Date.now() + timeout;
    let value;
    for (;;) {
        value = await page.evaluate(probe, arg);
        if (accept(value)) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}; last saw ${JSON.stringify(value)}`);
        await page.waitForTimeout(100);
    }
}

const transport = () => window.gameDebug.transport();
const names = () => window.gameDebug.state().players.map((x) => x.name).sort().join();

async function openGame(tools, label, base, file = 'game.html') {
    const page = await tools.page(label);
    await page.addInitScript(countWebSocket);
    await page.goto(at(base, file));
    await page.locator('body[data-presence="live"]').waitFor();
    await page.locator('#host:enabled').waitFor();
    return { page, label };
}

// `mover` holds an arrow key (towards the middle); every page must see it move.
async function checkMoves(mover, name, pages) {
    const where = ([n]) => {
        const pl = window.gameDebug.state().players.find((x) => x.name === n);
        return pl ? { x: pl.x, y: pl.y } : null;
    };
    const before = new Map();
    for (const p of pages) before.set(p, await p.page.evaluate(where, [name]));
    const start = before.get(mover);
    check(start, `${mover.label} sees itself (${name}) in the game`);
    const goRight = start.x < 400;
    const key = goRight ? 'ArrowRight' : 'ArrowLeft';
    await mover.page.keyboard.down(key);
    await mover.page.waitForTimeout(500);
    await mover.page.keyboard.up(key);
    for (const p of pages) {
        const from = before.get(p);
        check(from, `${p.label} sees ${name} before the move`);
        await waitFor(p.page, where, [name], (pos) => pos && (goRight ? pos.x - from.x > 40 : from.x - pos.x > 40), `${p.label} to see ${name} move`);
    }
}

// What a page's counters say over `ms` of its own clock: the deltas of its game's
// transport stats and of its WebSocket counts.
async function over(page, ms) {
    return page.evaluate(async (ms) => {
        const snap = () => ({ t: performance.now(), tr: window.gameDebug.transport(), ws: structuredClone(window.wsCount) });
        const a = snap();
        await new Promise((resolve) => setTimeout(resolve, ms));
        const b = snap();
        const s = (b.t - a.t) / 1000;
        const d = (side, type, what) => ((b.ws[side][type]?.[what] ?? 0) - (a.ws[side][type]?.[what] ?? 0)) / s;
        const out = { seconds: s, publishes: d('out', 12, 'n'), dataOut: d('out', 4, 'n'), messagesIn: d('in', 24, 'n'), dataIn: d('in', 4, 'n'), upload: (b.ws.outBytes - a.ws.outBytes) / s };
        if (a.tr.host) {
            out.published = (b.tr.host.published - a.tr.host.published) / s;
            out.streamStates = (b.tr.host.streamStates - a.tr.host.streamStates) / s;
        }
        if (a.tr.guest && b.tr.guest) {
            out.fromTopic = (b.tr.guest.fromTopic - a.tr.guest.fromTopic) / s;
            out.fromStream = (b.tr.guest.stream - a.tr.guest.stream) / s;
        }
        return out;
    }, ms);
}

await run('game states on a pubsub topic across two daemons', 150_000, async (browser, tools) => {
    const host = await openGame(tools, 'Alice (A)', urlA);
    const local = await openGame(tools, 'Bob (A)', urlA);
    const remote = await openGame(tools, 'Carol (B)', urlB);
    for (const p of [host, local, remote]) {
        const tr = await waitFor(p.page, transport, null, (t) => t.lobby === 'gem-rush/lobby', `${p.label} to subscribe to the lobby topic`);
        check(tr.pubsub, `${p.label}: the daemon offers pubsub and the page uses it`);
    }

    // Alice hosts; both lobbies show her game with its player count (lobby topic).
    await host.page.fill('#name', 'Alice');
    await host.page.fill('#game-name', 'Topic arena');
    await host.page.click('#host');
    await host.page.locator('body[data-mode="hosting"]').waitFor();
    const { protocol } = (await host.page.evaluate(() => window.gameDebug.state())).game;
    const hostTopic = (await host.page.evaluate(transport)).host.topic;
    check(/^gem-rush\/state\//.test(hostTopic ?? ''), `the host has a state topic, got ${hostTopic}`);
    const entry = (page) => page.locator(`#games .game[data-protocol="${protocol}"]`);
    for (const p of [local, remote]) {
        await entry(p.page).locator('.join:enabled').waitFor({ timeout: REMOTE });
        await entry(p.page).locator('.game-players', { hasText: '1/8 playing' }).waitFor({ timeout: 10_000 });
    }
    await tools.shot(remote.page, 'topics-lobby.png');

    // Bob and Carol join; once they take the states from the topic, the host sends them
    // none on their streams.
    await local.page.fill('#name', 'Bob');
    await entry(local.page).locator('.join').click();
    await remote.page.fill('#name', 'Carol');
    await entry(remote.page).locator('.join').click();
    const pages = [host, local, remote];
    for (const p of pages) await waitFor(p.page, names, null, (s) => s === 'Alice,Bob,Carol', `${p.label} to see all three players`);
    for (const p of [local, remote]) {
        const tr = await waitFor(p.page, transport, null, (t) => t.guest?.viaTopic === true, `${p.label} to take the states from the topic`);
        check(tr.guest.topic === hostTopic, `${p.label} follows the host's state topic ${hostTopic}, got ${tr.guest.topic}`);
    }
    await waitFor(host.page, transport, null, (t) => t.host.offered === 2 && t.host.viaTopic === 2, 'the host to see both guests on the topic');
    const [h, b, c] = await Promise.all([over(host.page, 2000), over(local.page, 2000), over(remote.page, 2000)]);
    const f = (x) => JSON.stringify(x, (k, v) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v));
    check(h.published >= 20 && h.publishes >= h.published, `the host publishes the states on the topic: ${f(h)}`);
    check(h.streamStates === 0 && h.dataOut < 2, `the host sends no state on the guests' streams: ${f(h)}`);
    for (const [who, g] of [['Bob', b], ['Carol', c]]) {
        check(g.fromTopic >= 20 && g.messagesIn >= g.fromTopic, `${who} gets at least 20 states a second from the topic: ${f(g)}`);
        check(g.fromStream === 0, `${who} gets no state on his or her stream: ${f(g)}`);
        check(g.fromTopic >= h.published * 0.8, `${who} gets the states the host publishes (${f(g)} vs ${f(h)})`);
    }

    // Everyone moves; everyone sees it (the states now come through the topic only).
    await checkMoves(remote, 'Carol', pages);
    await checkMoves(local, 'Bob', pages);
    await checkMoves(host, 'Alice', pages);
    await remote.page.keyboard.press('Space');
    await remote.page.waitForTimeout(300);
    await tools.shot(host.page, 'topics-host.png');
    await tools.shot(remote.page, 'topics-guest-remote.png');

    // Carol's topic falls silent (its messages are dropped in her page): within a couple
    // of seconds she gets the states on her stream again; then back to the topic.
    const silent = await remote.page.evaluate(async () => {
        const { Topic } = await import('./protocol/topics.js');
        const message = Topic.prototype._message;
        Topic.prototype._message = function (m) {
            if (!this.name.startsWith('gem-rush/state/')) message.call(this, m);
        };
        const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
        const t0 = performance.now();
        while (window.gameDebug.transport().guest.viaTopic && performance.now() - t0 < 5000) await wait(50);
        const fellBack = performance.now() - t0;
        const before = window.gameDebug.transport().guest.stream;
        const seq = window.gameDebug.state().seq;
        await wait(1500);
        const fromStream = window.gameDebug.transport().guest.stream - before;
        const seqAfter = window.gameDebug.state().seq;
        Topic.prototype._message = message;
        const t1 = performance.now();
        while (!window.gameDebug.transport().guest.viaTopic && performance.now() - t1 < 5000) await wait(50);
        return { fellBack, fromStream, advanced: seqAfter - seq, back: window.gameDebug.transport().guest.viaTopic };
    });
    check(silent.fellBack < 3000, `Carol asks for her stream once the topic is silent: ${JSON.stringify(silent)}`);
    check(silent.fromStream >= 20 && silent.advanced >= 20, `meanwhile Carol gets the states on her stream: ${JSON.stringify(silent)}`);
    check(silent.back, `Carol takes the states from the topic again once it delivers: ${JSON.stringify(silent)}`);
    await waitFor(host.page, transport, null, (t) => t.host.viaTopic === 2, 'the host to see Carol on the topic again');

    // Dave, a page without pubsub (as on an older daemon), plays on his stream.
    const dave = await openGame(tools, 'Dave (B, no pubsub)', urlB, 'game.html?pubsub=0');
    check((await dave.page.evaluate(transport)).pubsub === false, 'Dave does without pubsub');
    check((await dave.page.evaluate(transport)).lobby === null, 'Dave has no lobby topic');
    await dave.page.fill('#name', 'Dave');
    await entry(dave.page).locator('.join:enabled').click({ timeout: REMOTE });
    for (const p of [...pages, dave]) await waitFor(p.page, names, null, (s) => s === 'Alice,Bob,Carol,Dave', `${p.label} to see Dave`);
    const [h4, d4] = await Promise.all([over(host.page, 1500), over(dave.page, 1500)]);
    check(d4.fromStream >= 20 && d4.messagesIn === 0, `Dave gets the states on his stream: ${f(d4)}`);
    check(h4.published >= 20 && h4.streamStates > 0 && h4.streamStates <= h4.published * 1.2, `the host publishes once and sends Dave his own: ${f(h4)}`);
    check((await host.page.evaluate(transport)).host.offered === 2, 'the host offered the topic to the guests with pubsub only');
    await checkMoves(dave, 'Dave', [host, remote, dave]);
    await dave.page.click('#leave');
    await waitFor(host.page, names, null, (s) => s === 'Alice,Bob,Carol', 'the host to drop Dave');

    // Carol reloads her page: it takes her session back (resume), which still
    // subscribes to the state topic; the page unsubscribes, so the states stop coming.
    await remote.page.reload();
    await remote.page.locator('body[data-presence="live"]').waitFor();
    await waitFor(host.page, names, null, (s) => s === 'Alice,Bob', 'the host to drop Carol after her reload');
    const reloaded = await waitFor(
        remote.page,
        () => ({ unsubscribes: window.wsCount.out[11]?.n ?? 0, stored: sessionStorage.getItem('libp2p-websocket-game-topic'), mode: window.gameDebug.state().mode }),
        null,
        (r) => r.unsubscribes >= 1 && r.stored === null,
        "Carol's reloaded page to unsubscribe from the state topic",
    );
    check(reloaded.mode === 'lobby', `Carol's reloaded page is in the lobby: ${JSON.stringify(reloaded)}`);
    await remote.page.waitForTimeout(300);
    const quiet = await over(remote.page, 1500);
    check(quiet.messagesIn <= 1, `no more states reach Carol's reloaded page: ${f(quiet)} (only a lobby announcement may)`);

    // Alice ends the game: Bob is back in the lobby, his state topic closed.
    await host.page.click('#leave');
    for (const p of [local]) {
        await p.page.locator('body[data-mode="lobby"]').waitFor();
        await p.page.locator('#status', { hasText: 'The host ended the game.' }).waitFor();
        const left = await p.page.evaluate(() => ({
            guest: window.gameDebug.transport().guest,
            stored: sessionStorage.getItem('libp2p-websocket-game-topic'),
        }));
        check(left.guest === null && left.stored === null, `${p.label} left the state topic: ${JSON.stringify(left)}`);
    }
    const unsubscribed = await local.page.evaluate(() => window.wsCount.out[11]?.n ?? 0);
    check(unsubscribed >= 1, `Bob's page sent an Unsubscribe (${unsubscribed})`);
    console.log(`measured: host ${f(h)}; Bob ${f(b)}; Carol ${f(c)}; with Dave on his stream: host ${f(h4)}`);
});
