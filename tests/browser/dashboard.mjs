// dashboard.mjs: the dashboard (dashboard.html) in a real Chromium, showing a daemon
// at work.
//
//   node tests/browser/dashboard.mjs <urlA> <urlB>
//
// Two sessions on daemon A, each driving the embedded /protocol.js from a page of A
// (dashboard.html itself, which opens no session of its own): one listens on
// /dash/chat/1, the other connects to a page on daemon B (listening on /dash/flow/1)
// and writes 64 KiB every 25 ms to it, which B reads. A third page shows A's
// dashboard: it must list the two sessions with A's origin and the sender's bytes,
// daemon B as a direct libp2p peer, /dash/chat/1 among the listeners, a rate above
// 0 B/s from browsers with the chart drawn, and keep updating without a reload.
// Screenshot: target/browser/dashboard.png. Exits non-zero with "FAIL: ..." on any
// failure; 90 s at most.

import { at, check, run, STEP } from './harness.mjs';

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
    console.error('usage: node dashboard.mjs <daemon A base URL> <daemon B base URL>');
    process.exit(2);
}

const FLOW = '/dash/flow/1';
const CHAT = '/dash/chat/1';

/** Polls `probe` (run in `page`) until `accept(value)` holds, at most STEP. */
async function waitFor(page, probe, accept, what) {
    const deadline = Date.now() + STEP;
    for (;;) {
        const value = await page.evaluate(probe);
        if (accept(value)) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last saw ${JSON.stringify(value)}`);
        await page.waitForTimeout(100);
    }
}

/** A page of the daemon at `base` to run a gateway from (the dashboard opens no session). */
async function host(tools, label, base) {
    const page = await tools.page(label);
    await page.goto(at(base, 'dashboard.html'));
    await page.locator('#state', { hasText: 'live' }).waitFor();
    return page;
}

/** What the dashboard shows, read from its DOM. */
function shown() {
    const text = (id) => document.getElementById(id).textContent.trim();
    const rows = (id) => [...document.querySelectorAll(`#${id} tbody tr:not(.empty)`)];
    return {
        updates: Number(document.body.dataset.updates),
        sessionCount: text('session-count'),
        detached: text('detached'),
        sessions: rows('sessions').map((tr) => [...tr.cells].map((td) => td.textContent)),
        peers: rows('peers').map((tr) => ({ peer: tr.dataset.peer, path: tr.dataset.path, badge: tr.cells[1].textContent })),
        protocols: [...document.querySelectorAll('#protocols li')].map((li) => li.textContent),
        rateIn: text('rate-in'),
        points: document.getElementById('line-in').getAttribute('points'),
        navigations: performance.getEntriesByType('navigation').length,
    };
}

await run('dashboard: two sessions and a transfer', 90_000, async (browser, tools) => {
    // B: one session, listening, reading all it gets.
    const b = await host(tools, 'receiver on B', urlB);
    const target = await b.evaluate(async (FLOW) => {
        const { Gateway } = await import('/protocol.js');
        const gw = (window.gw = await Gateway.connect());
        window.got = 0;
        gw.addEventListener('connection', async (e) => {
            const reader = e.detail.readable.getReader();
            for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                window.got += value.length;
            }
        });
        await gw.listen(FLOW, { framed: false });
        return { connectString: gw.connectString, peerID: gw.peerID };
    }, FLOW);

    // A: a listening session, and a sending one.
    const listener = await host(tools, 'listener on A', urlA);
    await listener.evaluate(async (CHAT) => {
        const { Gateway } = await import('/protocol.js');
        window.gw = await Gateway.connect();
        await window.gw.listen(CHAT, { framed: true });
    }, CHAT);
    const sender = await host(tools, 'sender on A', urlA);
    await sender.evaluate(async ({ FLOW, connectString }) => {
        const { Gateway } = await import('/protocol.js');
        const gw = (window.gw = await Gateway.connect());
        const conn = await gw.connect(connectString, FLOW, { framed: false });
        const writer = conn.writable.getWriter();
        window.sent = 0;
        window.sending = true;
        (async () => {
            const chunk = new Uint8Array(64 * 1024).fill(7);
            while (window.sending) {
                await writer.write(chunk);
                window.sent += chunk.length;
                await new Promise((resolve) => setTimeout(resolve, 25));
            }
        })();
    }, { FLOW, connectString: target.connectString });
    await waitFor(b, () => window.got, (got) => got >= 1024 * 1024, 'B to receive the first MiB');

    // A's dashboard.
    const dash = await tools.page('dashboard on A', { width: 1200, height: 900 });
    await dash.goto(at(urlA, 'dashboard.html'));
    const origin = new URL(urlA).origin;
    const seen = await waitFor(
        dash,
        shown,
        (s) =>
            s.sessionCount === '2' &&
            s.peers.some((p) => p.peer === target.peerID) &&
            s.protocols.includes(CHAT) &&
            /^[1-9][0-9.]* (KiB|MiB)\/s$/.test(s.rateIn) &&
            s.sessions.some((cells) => cells[3] !== '0 B'),
        'the dashboard to show two sessions, the peer, the listener and a rate',
    );
    check(seen.sessions.length === 2, `two session rows, got ${JSON.stringify(seen.sessions)}`);
    for (const cells of seen.sessions) check(cells[1] === origin, `each session's origin is ${origin}, got ${cells[1]}`);
    const peer = seen.peers.find((p) => p.peer === target.peerID);
    check(peer.path === 'direct' && peer.badge === 'direct', `B is a direct peer, got ${JSON.stringify(peer)}`);
    check(seen.points.split(' ').some((p) => Number(p.split(',')[1]) < 159), 'the chart draws the traffic');

    // It goes on updating, without a reload.
    const later = await waitFor(dash, shown, (s) => s.updates >= seen.updates + 2, 'two more updates');
    check(later.navigations === seen.navigations && later.navigations === 1, 'no reload');
    await tools.shot(dash, 'dashboard.png', { fullPage: true });

    await sender.evaluate(() => (window.sending = false));
    const sent = await sender.evaluate(() => window.sent);

    // The listener's page goes away without closing its gateway (code 1001): its
    // session waits for it (the resume extension) and the dashboard says so.
    check(later.detached === '', `nothing waits for its page yet, got ${JSON.stringify(later.detached)}`);
    await listener.goto('about:blank');
    const gone = await waitFor(
        dash,
        shown,
        (s) => s.sessionCount === '1' && s.detached === '+ 1 waiting for their page',
        'the dashboard to show one session and one waiting for its page',
    );
    check(gone.sessions.length === 1, `one session row left, got ${JSON.stringify(gone.sessions)}`);
    console.log(`dashboard: ${seen.sessions.length} sessions, rate ${seen.rateIn}, ${sent} bytes sent`);
});
