// upload.mjs: measures the Gem Rush host's upload with 1 to 7 guests (8 players), the
// states on the players' streams vs. on the game's pubsub topic. Not a test: it prints
// a table (README.md, Gem Rush, has the numbers).
//
//   node tests/browser/upload.mjs [--live] [binary]     (default target/debug/libp2p-websocket)
//
// Starts two daemons (tests/browser/daemons.mjs), B dialing A. The host hosts on A;
// guests join one by one, the 2nd to 4th player on A (joined in-process), the 5th to
// 8th on B (over libp2p). After each join, over MEASURE_MS: the bytes the host page's
// control WebSocket sends (wscount.mjs) per second, its Data and Publish messages per
// second, and what daemon A sends on its libp2p TCP connections (all to B; bytes_sent
// of each of its sockets but the HTTP one, from `ss -tinp`) per second. (The daemons
// may hold more than one connection between them, so a proxy on B's -peer would not
// see it all.) Run once with the host page at
// game.html?pubsub=0 (states on streams, as with a daemon without pubsub), once at
// game.html (states on the topic). The guest pages are small (the renderers of eight
// pages share two cores). --live serves the pages from html/ and examples/.

import { execFileSync } from 'node:child_process';

import { at, check, run, STEP } from './harness.mjs';
import { BINARY, startPair } from './daemons.mjs';
import { countWebSocket } from './wscount.mjs';

const args = process.argv.slice(2);
const live = args.includes('--live');
const binary = args.find((a) => !a.startsWith('--')) ?? BINARY;
const MEASURE_MS = 3000;
const GUESTS = 7;

/** bytes_sent of each TCP socket of process `pid` but those on its port `skip`. */
function socketsSent(pid, skip) {
    const out = execFileSync('ss', ['-tinpH', 'state', 'established'], { encoding: 'utf8' });
    const sent = new Map();
    let key = null;
    for (const line of out.split('\n')) {
        if (/^\S/.test(line)) {
            const [, , local, peer] = line.trim().split(/\s+/);
            key = line.includes(`pid=${pid},`) && !local.endsWith(`:${skip}`) ? `${local} ${peer}` : null;
        } else if (key) {
            const m = line.match(/bytes_sent:(\d+)/);
            sent.set(key, m ? Number(m[1]) : 0);
            key = null;
        }
    }
    return sent;
}

/** The bytes sent between two socketsSent() snapshots (a socket new since counts whole). */
function sentBetween(before, after) {
    let total = 0;
    for (const [key, bytes] of after) total += bytes - (before.get(key) ?? 0);
    return total;
}

async function waitFor(page, probe, arg, accept, what, timeout = STEP) {
    const deadline = Date.now() + timeout;
    let value;
    for (;;) {
        value = await page.evaluate(probe, arg);
        if (accept(value)) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last saw ${JSON.stringify(value)}`);
        await page.waitForTimeout(100);
    }
}

const pair = await startPair({ binary, live });
const { urlA, urlB, peerA, pidA, httpA } = pair;

async function measure(tools, mode) {
    const pages = [];
    const open = async (label, url, viewport) => {
        const page = await tools.page(label, viewport);
        await page.addInitScript(countWebSocket);
        await page.goto(url);
        await page.locator('body[data-presence="live"]').waitFor();
        pages.push(page);
        return page;
    };
    const file = mode === 'streams' ? 'game.html?pubsub=0' : 'game.html';
    const host = await open(`host (${mode})`, at(urlA, file));
    await host.fill('#name', 'Host');
    await host.fill('#game-name', `Upload ${mode}`);
    await host.click('#host');
    await host.locator('body[data-mode="hosting"]').waitFor();
    const { protocol } = (await host.evaluate(() => window.gameDebug.state())).game;
    const rows = [];
    for (let k = 1; k <= GUESTS; k++) {
        const onA = k <= 3;
        const guest = await open(`guest ${k} (${onA ? 'A' : 'B'}, ${mode})`, at(onA ? urlA : urlB, 'game.html'), { width: 480, height: 400 });
        await guest.fill('#name', `G${k}`);
        await guest.evaluate(([peer, p]) => window.gameDebug.join(peer, p), [peerA, protocol]);
        await waitFor(host, () => window.gameDebug.state().players.length, null, (n) => n === k + 1, `${k + 1} players`);
        if (mode === 'topic') {
            await waitFor(host, () => window.gameDebug.transport().host.viaTopic, null, (n) => n === k, `${k} guests on the topic`);
        }
        await host.waitForTimeout(1000);
        const before = socketsSent(pidA, httpA);
        const t0 = Date.now();
        const r = await host.evaluate(async (ms) => {
            const snap = () => ({ t: performance.now(), ws: structuredClone(window.wsCount), tr: window.gameDebug.transport().host });
            const a = snap();
            await new Promise((resolve) => setTimeout(resolve, ms));
            const b = snap();
            const s = (b.t - a.t) / 1000;
            const n = (type) => ((b.ws.out[type]?.n ?? 0) - (a.ws.out[type]?.n ?? 0)) / s;
            return {
                upload: (b.ws.outBytes - a.ws.outBytes) / s,
                data: n(4),
                publish: n(12),
                states: (b.tr.streamStates - a.tr.streamStates + b.tr.published - a.tr.published) / s,
            };
        }, MEASURE_MS);
        const s = (Date.now() - t0) / 1000;
        r.aToB = sentBetween(before, socketsSent(pidA, httpA)) / s;
        r.players = k + 1;
        r.onB = Math.max(0, k - 3);
        rows.push(r);
        console.log(
            `${mode.padEnd(7)} players ${r.players} (${r.onB} on B): host page upload ${(r.upload / 1024).toFixed(1)} KiB/s ` +
                `(${r.data.toFixed(1)} Data/s, ${r.publish.toFixed(1)} Publish/s, ${r.states.toFixed(1)} states/s); A -> B ${(r.aToB / 1024).toFixed(1)} KiB/s`,
        );
    }
    await host.click('#leave');
    for (const page of pages) await page.context().close();
    return rows;
}

await run('Gem Rush host upload, streams vs. topic', 400_000, async (browser, tools) => {
    try {
        const streams = await measure(tools, 'streams');
        const topic = await measure(tools, 'topic');
        const last = (rows) => rows.at(-1);
        console.log(
            `8 players: host page upload ${(last(streams).upload / 1024).toFixed(1)} KiB/s with streams, ` +
                `${(last(topic).upload / 1024).toFixed(1)} KiB/s with the topic; A -> B ${(last(streams).aToB / 1024).toFixed(1)} vs ` +
                `${(last(topic).aToB / 1024).toFixed(1)} KiB/s`,
        );
        check(last(topic).upload < last(streams).upload, 'the topic costs the host less upload with 8 players');
    } finally {
        pair.stop();
    }
});
