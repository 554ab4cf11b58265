// game.mjs: the Gem Rush example (examples/game.*) in a real Chromium, three players on
// two connected daemons, found through presence: no connect string is pasted.
//
//   node tests/browser/game.mjs <urlA> <urlB> <peer id of A>
//
// Daemon B was started with `-peer <A's address>`, so the two nodes are connected.
// Page 1 (Alice, on A) hosts a game; page 2 (Bob, on A too) finds it in its lobby as a
// game of its own daemon, page 3 (Carol, on B) as a game of peer A; both join. Each
// player moves with the keyboard and every page sees every player's moves in the
// host's state (window.gameDebug). Bob's page does without pubsub (?pubsub=0), so he
// gets the states on his stream while Carol gets them from the game's topic: a game
// mixing both. A guest whose stream is held (credit: the host's
// send() would wait) gets no state until `drain`, then the newest only, while the
// others play on (simulated on the host's connection to Bob: filling the windows with
// states would take minutes). Then Bob leaves and comes back, and Alice ends the
// game: both guests return to the lobby and the game leaves every lobby. Screenshots
// in target/browser/: game-lobby.png, game-host.png, game-guest-local.png,
// game-guest-remote.png (desktop) and game-phone.png (390 px wide). Exits non-zero
// with "FAIL: ..." on any failure; 100 s at most.

import { at, check, run, STEP } from './harness.mjs';

const [urlA, urlB, peerA] = process.argv.slice(2);
if (!urlA || !urlB || !peerA) {
    console.error('usage: node game.mjs <daemon A base URL> <daemon B base URL> <peer id of A>');
    process.exit(2);
}

const PREFIX = '/libp2p-websocket/game/1.0.0/';
const GAME_NAME = 'Zoë’s Friday arena — LAN';
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

const gameState = () => window.gameDebug.state();

async function openGame(tools, label, base, file = 'game.html') {
    const page = await tools.page(label);
    await page.goto(at(base, file));
    await page.locator('body[data-presence="live"]').waitFor();
    await page.locator('#host:enabled').waitFor();
    check((await page.getAttribute('body', 'data-mode')) === 'lobby', `${label}: starts in the lobby`);
    const peerID = await page.evaluate(() => window.gameDebug.peerID());
    check(/^12D3KooW/.test(peerID ?? ''), `${label}: knows its daemon's peer id, got ${peerID}`);
    return { page, label, peerID };
}

function position(state, name) {
    const p = state.players.find((x) => x.name === name);
    return p ? { x: p.x, y: p.y } : null;
}

// `mover` holds an arrow key (towards the middle of the arena, so no wall stops it);
// every page must see the mover's position go that way.
async function checkMoves(mover, name, pages) {
    const before = new Map();
    for (const p of pages) before.set(p, position(await p.page.evaluate(gameState), name));
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
        const seen = await waitFor(
            p.page,
            ([n]) => {
                const pl = window.gameDebug.state().players.find((x) => x.name === n);
                return pl ? { x: pl.x, y: pl.y } : null;
            },
            [name],
            (pos) => pos && (goRight ? pos.x - from.x > 40 : from.x - pos.x > 40),
            `${p.label} to see ${name} move ${goRight ? 'right' : 'left'} from x=${Math.round(from.x)}`,
        );
        check(Number.isFinite(seen.y), `${p.label}: ${name} has a y`);
    }
}

async function scoreboardNames(page) {
    return page.$$eval('#players .player .player-name', (items) => items.map((i) => i.textContent).sort());
}

await run('game lobby and play across two daemons', 240_000, async (browser, tools) => {
    const host = await openGame(tools, 'Alice (A)', urlA);
    // Bob's page does without pubsub (as with a daemon that has none): he gets the
    // states on his stream, Carol from the game's topic (tests/browser/topics.mjs).
    const local = await openGame(tools, 'Bob (A, no pubsub)', urlA, 'game.html?pubsub=0');
    const remote = await openGame(tools, 'Carol (B)', urlB);
    check(host.peerID === peerA && local.peerID === peerA, 'the pages of daemon A show its peer id');
    check(remote.peerID !== peerA, 'daemon B has its own peer id');

    // Alice hosts.
    await host.page.fill('#name', 'Alice');
    await host.page.fill('#game-name', GAME_NAME);
    await host.page.click('#colors .swatch[data-color="#ff5d73"]');
    await host.page.click('#host');
    await host.page.locator('body[data-mode="hosting"]').waitFor();
    const hosted = await host.page.evaluate(gameState);
    const protocol = hosted.game?.protocol ?? '';
    check(protocol.startsWith(PREFIX), `the game listens on a game protocol, got "${protocol}"`);
    check(/^[\x21-\x7e]+$/.test(protocol), `the protocol id is printable ASCII: ${protocol}`);
    check(Buffer.byteLength(protocol) <= 200, `the protocol id is at most 200 bytes: ${protocol}`);
    check(hosted.game.name === GAME_NAME, `the host's game keeps its name, got "${hosted.game.name}"`);
    check(hosted.players.length === 1 && hosted.players[0].name === 'Alice', 'the host plays too');
    check(hosted.players[0].color === '#ff5d73', 'the host got the colour it picked');
    await host.page.locator(`#games .game.mine[data-protocol="${protocol}"]`).waitFor();

    // Both lobbies list it: Bob's as a game of its own daemon, Carol's as one of peer A.
    const entry = (page) => page.locator(`#games .game[data-protocol="${protocol}"]`);
    await entry(local.page).locator('.join:enabled').waitFor();
    check((await entry(local.page).getAttribute('data-peer')) === peerA, 'Bob joins through his own daemon id');
    check((await entry(local.page).locator('.game-where').textContent()).includes('this daemon'), 'Bob sees a local game');
    await entry(remote.page).locator('.join:enabled').waitFor({ timeout: REMOTE });
    check((await entry(remote.page).getAttribute('data-peer')) === peerA, "Carol's lobby names peer A as the host");
    check((await entry(remote.page).locator('.game-where').textContent()).includes('on peer'), 'Carol sees a remote game');
    for (const p of [local, remote]) {
        const name = await entry(p.page).locator('.game-name').textContent();
        check(name === GAME_NAME, `${p.label} shows the game's name, got "${name}"`);
    }
    await remote.page.fill('#name', 'Carol');
    await tools.shot(remote.page, 'game-lobby.png');

    // They join.
    await local.page.fill('#name', 'Bob');
    await entry(local.page).locator('.join').click();
    await local.page.locator('body[data-mode="playing"]').waitFor();
    await entry(remote.page).locator('.join').click();
    await remote.page.locator('body[data-mode="playing"]').waitFor();
    const everyone = ['Alice', 'Bob', 'Carol'];
    const pages = [host, local, remote];
    for (const p of pages) {
        await waitFor(
            p.page,
            () => window.gameDebug.state().players.map((x) => x.name).sort(),
            null,
            (names) => JSON.stringify(names) === JSON.stringify(everyone),
            `${p.label} to see all three players`,
        );
        await waitFor(p.page, () => document.querySelectorAll('#players .player').length, null, (n) => n === 3, `${p.label}'s scoreboard`);
        check(JSON.stringify(await scoreboardNames(p.page)) === JSON.stringify(everyone), `${p.label}'s scoreboard names everyone`);
    }
    const colors = (await host.page.evaluate(gameState)).players.map((p) => p.color);
    check(new Set(colors).size === 3, `every player has a colour of their own: ${colors}`);

    // The host broadcasts at least 20 states a second (it aims at 30): count what a
    // guest on the other daemon receives over two seconds of its own clock.
    const rate = await remote.page.evaluate(async () => {
        const first = window.gameDebug.state().seq;
        const t0 = performance.now();
        await new Promise((resolve) => setTimeout(resolve, 2000));
        return ((window.gameDebug.state().seq - first) * 1000) / (performance.now() - t0);
    });
    check(rate >= 20, `a guest on another daemon got ${rate.toFixed(1)} states a second, wanted at least 20`);

    // A guest that does not keep up: with credit its stream runs out of window, so what
    // the host sends it waits (bufferedAmount > 0) until `drain`. Filling 2 MiB of
    // windows with states takes minutes, so the host's connection to Bob is made to
    // look held: the host must send Bob no state meanwhile while Carol still gets 20 a
    // second, and on `drain` send Bob one state, the newest.
    const holding = host.page.evaluate(
        async ({ peer, protocol }) => {
            const { Connection } = await import('./protocol.js');
            const proto = Connection.prototype;
            const sendJSON = proto.sendJSON;
            let bob = null;
            const toBob = [];
            proto.sendJSON = function (value) {
                if (!bob && this.peerID === peer && this.protocol === protocol) bob = this;
                if (this === bob) toBob.push(value);
                return sendJSON.call(this, value);
            };
            try {
                const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
                for (let i = 0; i < 20 && !bob; i++) await wait(50);
                if (!bob) return { error: "no state went to Bob's connection" };
                Object.defineProperty(bob, 'bufferedAmount', { value: 1, configurable: true });
                toBob.length = 0;
                await wait(1500);
                const whileHeld = toBob.filter((f) => f.t === 's').length;
                delete bob.bufferedAmount; // the real one again: nothing waits
                const seq = window.gameDebug.state().seq;
                bob.dispatchEvent(new CustomEvent('drain'));
                const onDrain = toBob.filter((f) => f.t === 's').map((f) => f.k);
                return { whileHeld, onDrain, seq };
            } finally {
                proto.sendJSON = sendJSON;
            }
        },
        { peer: peerA, protocol },
    );
    const carolRating = remote.page.evaluate(async () => {
        const first = window.gameDebug.state().seq;
        const t0 = performance.now();
        await new Promise((resolve) => setTimeout(resolve, 1500));
        return ((window.gameDebug.state().seq - first) * 1000) / (performance.now() - t0);
    });
    const [stuck, carolRate] = await Promise.all([holding, carolRating]);
    check(!stuck.error, stuck.error);
    check(stuck.whileHeld === 0, `the host sent ${stuck.whileHeld} states to a guest whose stream was held, wanted none`);
    check(
        stuck.onDrain.length === 1 && stuck.onDrain[0] === stuck.seq,
        `on drain the host sent the held guest one state, the newest (${stuck.seq}), got ${JSON.stringify(stuck.onDrain)}`,
    );
    check(carolRate >= 20, `while Bob was held Carol got ${carolRate.toFixed(1)} states a second, wanted at least 20`);

    // Everyone moves; everyone sees it.
    await checkMoves(remote, 'Carol', pages);
    await checkMoves(local, 'Bob', pages);
    await checkMoves(host, 'Alice', pages);
    // A dash (Space) moves too.
    await remote.page.keyboard.press('Space');

    await remote.page.waitForTimeout(300);
    await tools.shot(host.page, 'game-host.png');
    await tools.shot(local.page, 'game-guest-local.png');
    await tools.shot(remote.page, 'game-guest-remote.png');
    await remote.page.setViewportSize({ width: 390, height: 844 });
    await remote.page.waitForTimeout(400);
    const overflow = await remote.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `at 390 px the game scrolls sideways by ${overflow} px`);
    await tools.shot(remote.page, 'game-phone.png', { fullPage: true });
    await remote.page.setViewportSize({ width: 1100, height: 760 });

    // Bob leaves and comes back.
    await local.page.click('#leave');
    await local.page.locator('body[data-mode="lobby"]').waitFor();
    await waitFor(host.page, () => window.gameDebug.state().players.length, null, (n) => n === 2, 'the host to drop Bob');
    await waitFor(remote.page, () => window.gameDebug.state().players.map((x) => x.name).sort().join(), null, (s) => s === 'Alice,Carol', 'Carol to see Bob gone');
    await entry(local.page).locator('.join:enabled').click();
    await local.page.locator('body[data-mode="playing"]').waitFor();
    await waitFor(host.page, () => window.gameDebug.state().players.length, null, (n) => n === 3, 'Bob back in the game');

    // Alice ends the game: both guests are back in the lobby, and the game leaves
    // every lobby (Carol's through identify from daemon A).
    await host.page.click('#leave');
    await host.page.locator('body[data-mode="lobby"]').waitFor();
    for (const p of [local, remote]) {
        await p.page.locator('body[data-mode="lobby"]').waitFor();
        await p.page.locator('#status', { hasText: 'The host ended the game.' }).waitFor();
    }
    await entry(host.page).waitFor({ state: 'detached' });
    await entry(local.page).waitFor({ state: 'detached' });
    await entry(remote.page).waitFor({ state: 'detached', timeout: REMOTE });
});
