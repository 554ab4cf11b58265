// credit.mjs: the credit extension (PROTOCOL.md, "Extension: credit") in a real
// Chromium, across two daemons: a stream whose reader stops holds its writer, and only
// it.
//
//   node tests/browser/credit.mjs <urlA> <urlB>
//
// Both pages are the daemons' own index.html, driving the embedded /protocol.js from
// page.evaluate (so the modules under html/protocol/ are served by the daemon). Page A
// listens on /flow/1 (raw) and /chat/1 (framed); page B connects to both with A's
// connect string and writes 16 MiB of a pattern to /flow/1 through `writable`, 64 KiB
// per write(), counting the bytes whose write() resolved. A reads ONE chunk from the
// flow's `readable`, then nothing: B's resolved count must stop well below 16 MiB with
// B's writes visibly held (bufferedAmount, desiredSize, a pending write), while 20 chat
// messages each way on /chat/1 still arrive (each chat send() going out at once). Then
// A reads on: all 16 MiB arrive in order (pattern and checksum), every write of B
// resolves, B's flow fires `drain`, and neither gateway reported an error (an overrun
// of the receive credit would be one). Screenshots in target/browser/: credit-a.png
// and credit-b.png (while held), credit-done.png (A at the end). Exits non-zero with
// "FAIL: ..." on any failure; 150 s at most.

import { at, check, run, STEP } from './harness.mjs';

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
    console.error('usage: node credit.mjs <daemon A base URL> <daemon B base URL>');
    process.exit(2);
}

const FLOW = '/flow/1';
const CHAT = '/chat/1';
const TOTAL = 16 * 1024 * 1024;
const CHUNK = 64 * 1024;
const MESSAGES = 20;
/** How far apart the samples of B's progress are, and how many equal ones make a stall. */
const SAMPLE_MS = 500;
const EQUAL_SAMPLES = 3;

/** Polls `probe` (run in `page`) until `accept(value)` holds, at most `timeout`; returns the value. */
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

// What both pages run first: the test's helpers on window.creditTest, and a panel on
// top of index.html that shows the progress (for the screenshots).
function installHelpers([role, TOTAL]) {
    const t = (window.creditTest = { role, errors: [], closes: [] });
    // Byte i of the stream: varies within a chunk and from chunk to chunk, so a lost,
    // doubled or reordered piece shows.
    t.byteAt = (i) => (i + (i >>> 8) * 7 + (i >>> 16) * 31) & 255;
    t.fill = (offset, length) => {
        const bytes = new Uint8Array(length);
        for (let k = 0; k < length; k++) bytes[k] = t.byteAt(offset + k);
        return bytes;
    };
    // FNV-1a (32 bits) over the whole stream, fed piece by piece.
    t.fnv = (hash, bytes) => {
        let h = hash;
        for (let k = 0; k < bytes.length; k++) h = Math.imul(h ^ bytes[k], 16777619) >>> 0;
        return h;
    };
    const panel = document.createElement('pre');
    panel.id = 'credit-test';
    panel.style.cssText =
        'position:fixed;top:8px;right:8px;z-index:9;margin:0;padding:10px 14px;max-width:46%;white-space:pre-wrap;' +
        'font:13px/1.45 ui-monospace,monospace;background:#101828;color:#e6edf3;border-radius:8px;box-shadow:0 4px 16px #0006';
    document.body.append(panel);
    const mib = (n) => `${(n / 1048576).toFixed(2)} MiB`;
    t.render = () => {
        const lines = [`credit test: page ${role}`];
        const c = t.gw?.credit;
        if (t.gw) lines.push(c ? `credit: stream ${mib(c.streamWindow)}, session ${mib(c.sessionWindow)}, receive ${mib(c.receiveWindow)}` : 'credit: none');
        if (c) lines.push(`session credit left: ${mib(t.gw.sessionCredit)}`);
        if (role === 'A') {
            lines.push(`/flow/1 read: ${mib(t.got ?? 0)} of ${mib(TOTAL)}${t.reading ? ' (reading)' : ' (not reading)'}`);
            if (t.flow) lines.push(`receive credit left: ${t.flow.receiveCredit}`);
        } else {
            lines.push(`/flow/1 writes resolved: ${mib(t.resolved ?? 0)} of ${mib(TOTAL)}`);
            if (t.flow) lines.push(`buffered: ${t.flow.bufferedAmount}, stream credit left: ${t.flow.sendCredit}`);
        }
        lines.push(`chat in: ${t.chatIn?.length ?? 0}`, `errors: ${t.errors.length}`);
        panel.textContent = lines.join('\n');
    };
    setInterval(t.render, 100);
}

// A screenshot with the panel up to date (a page in the background may run its timers late).
async function shot(tools, page, file) {
    await page.evaluate(() => window.creditTest.render());
    await tools.shot(page, file);
}

async function openPage(tools, label, base, role) {
    const page = await tools.page(label);
    await page.goto(at(base, 'index.html'));
    await page.locator('#state', { hasText: 'Connected' }).waitFor();
    await page.evaluate(installHelpers, [role, TOTAL]);
    return page;
}

await run('credit: a held stream across two daemons', 150_000, async (browser, tools) => {
    const a = await openPage(tools, 'page A', urlA, 'A');
    const b = await openPage(tools, 'page B', urlB, 'B');

    // A listens; it takes the flow's readable as soon as the connection comes, and
    // reads one chunk of it.
    const listening = await a.evaluate(
        async ({ FLOW, CHAT }) => {
            const t = window.creditTest;
            const { Gateway } = await import('/protocol.js');
            const gw = (t.gw = await Gateway.connect());
            gw.addEventListener('error', (e) => t.errors.push(String(e.detail)));
            t.got = 0;
            t.hash = 0x811c9dc5;
            t.bad = -1; // the offset of the first byte that is not the pattern's
            t.chunks = 0;
            t.chatIn = [];
            t.reading = false;
            t.done = false;
            t.check = (bytes) => {
                for (let k = 0; k < bytes.length && t.bad < 0; k++) {
                    if (bytes[k] !== t.byteAt(t.got + k)) t.bad = t.got + k;
                }
                t.hash = t.fnv(t.hash, bytes);
                t.got += bytes.length;
                t.chunks++;
            };
            gw.addEventListener('connection', (e) => {
                const conn = e.detail;
                conn.addEventListener('close', () => t.closes.push(`${conn.protocol}: ${conn.reason}`));
                if (conn.protocol === FLOW) {
                    t.flow = conn;
                    t.reader = conn.readable.getReader();
                    t.reading = true;
                    t.reader.read().then(
                        (r) => {
                            if (!r.done) t.check(r.value);
                            t.reading = false; // and nothing more until told
                        },
                        (err) => (t.readError = String(err)),
                    );
                } else if (conn.protocol === CHAT) {
                    t.chat = conn;
                    conn.addEventListener('data', (ev) => t.chatIn.push(new TextDecoder().decode(ev.detail)));
                }
            });
            await gw.listen(FLOW, { framed: false });
            await gw.listen(CHAT, { framed: true });
            return { connectString: gw.connectString, credit: gw.credit, version: gw.version };
        },
        { FLOW, CHAT },
    );
    check(listening.credit !== null, `A's gateway negotiated credit (daemon ${listening.version}), got null`);

    // B connects to both and starts writing.
    const started = await b.evaluate(
        async ({ FLOW, CHAT, TOTAL, CHUNK, connectString }) => {
            const t = window.creditTest;
            const { Gateway } = await import('/protocol.js');
            const gw = (t.gw = await Gateway.connect());
            gw.addEventListener('error', (e) => t.errors.push(String(e.detail)));
            t.chatIn = [];
            t.flow = await gw.connect(connectString, FLOW, { framed: false });
            t.chat = await gw.connect(connectString, CHAT, { framed: true });
            for (const conn of [t.flow, t.chat]) conn.addEventListener('close', () => t.closes.push(`${conn.protocol}: ${conn.reason}`));
            t.chat.addEventListener('data', (ev) => t.chatIn.push(new TextDecoder().decode(ev.detail)));
            t.drains = 0;
            t.flow.addEventListener('drain', () => t.drains++);
            t.written = 0; // bytes handed to write()
            t.resolved = 0; // bytes whose write() resolved
            t.pending = 0; // write()s not settled
            t.hash = 0x811c9dc5;
            t.writeError = null;
            t.closed = false; // writer.close() resolved
            t.writer = t.flow.writable.getWriter();
            (async () => {
                for (let offset = 0; offset < TOTAL; offset += CHUNK) {
                    await t.writer.ready;
                    const chunk = t.fill(offset, CHUNK);
                    t.hash = t.fnv(t.hash, chunk);
                    t.written += CHUNK;
                    t.pending++;
                    t.writer.write(chunk).then(
                        () => {
                            t.resolved += CHUNK;
                            t.pending--;
                        },
                        (err) => (t.writeError = String(err)),
                    );
                }
                await t.writer.close();
                t.closed = true;
            })().catch((err) => (t.writeError = String(err)));
            return { credit: gw.credit, credited: t.flow.credited, version: gw.version };
        },
        { FLOW, CHAT, TOTAL, CHUNK, connectString: listening.connectString },
    );
    check(started.credit !== null, `B's gateway negotiated credit (daemon ${started.version}), got null`);
    check(started.credited, "B's /flow/1 connection is credited");
    console.log(`credit windows: A ${JSON.stringify(listening.credit)}, B ${JSON.stringify(started.credit)}`);

    // A took its one chunk.
    const first = await waitFor(a, () => ({ chunks: window.creditTest.chunks, got: window.creditTest.got }), null, (v) => v.chunks === 1, 'A to read its one chunk');
    check(
        (await a.evaluate(() => window.creditTest.bad)) === -1,
        'the first chunk A read is the start of the pattern',
    );

    // B's writes stall: three samples 500 ms apart with the same count.
    const stallStarted = Date.now();
    const samples = [];
    for (;;) {
        samples.push(await b.evaluate(() => window.creditTest.resolved));
        const last = samples.slice(-EQUAL_SAMPLES);
        if (last.length === EQUAL_SAMPLES && last.every((n) => n === last[0])) break;
        check(Date.now() - stallStarted < STEP, `B's writes never stalled: resolved ${samples.join(', ')} bytes`);
        await b.waitForTimeout(SAMPLE_MS);
    }
    const held = await b.evaluate(() => {
        const t = window.creditTest;
        return {
            resolved: t.resolved,
            written: t.written,
            pending: t.pending,
            bufferedAmount: t.flow.bufferedAmount,
            desiredSize: t.writer.desiredSize,
            sendCredit: t.flow.sendCredit,
            sessionCredit: t.gw.sessionCredit,
            writeError: t.writeError,
            closes: t.closes,
        };
    });
    const aHeld = await a.evaluate(() => {
        const t = window.creditTest;
        return { got: t.got, receiveCredit: t.flow.receiveCredit, closes: t.closes, errors: t.errors };
    });
    console.log(
        `held after ${((Date.now() - stallStarted) / 1000).toFixed(1)} s: B ${JSON.stringify(held)}; A ${JSON.stringify(aHeld)}; A read ${first.got} bytes`,
    );
    check(held.writeError === null, `no write of B failed, got ${held.writeError}`);
    check(held.resolved < TOTAL, `B's resolved writes stop below ${TOTAL} bytes, got ${held.resolved}`);
    check(held.resolved <= TOTAL / 2, `B's resolved writes stop well below 16 MiB (at most 8 MiB), got ${held.resolved}`);
    check(
        held.bufferedAmount > 0 || held.desiredSize <= 0 || held.pending > 0,
        `B's flow shows backpressure (bufferedAmount ${held.bufferedAmount}, desiredSize ${held.desiredSize}, pending writes ${held.pending})`,
    );
    check(held.closes.length === 0 && aHeld.closes.length === 0, `no connection closed meanwhile: B ${held.closes}, A ${aHeld.closes}`);

    // While /flow/1 is held, /chat/1 works both ways.
    const chatStarted = Date.now();
    const sendAll = (page, from) =>
        page.evaluate(
            ({ from, MESSAGES }) => {
                const t = window.creditTest;
                const went = [];
                for (let i = 0; i < MESSAGES; i++) went.push(t.chat.send(`${from} #${i}`));
                return went;
            },
            { from, MESSAGES },
        );
    const wentA = await sendAll(a, 'A');
    const wentB = await sendAll(b, 'B');
    check(wentA.every(Boolean) && wentB.every(Boolean), `chat send() went out at once (A ${wentA}, B ${wentB})`);
    const expect = (from) => Array.from({ length: MESSAGES }, (_, i) => `${from} #${i}`);
    const inB = await waitFor(b, () => window.creditTest.chatIn, null, (v) => v.length >= MESSAGES, `B to get A's ${MESSAGES} chat messages`);
    const inA = await waitFor(a, () => window.creditTest.chatIn, null, (v) => v.length >= MESSAGES, `A to get B's ${MESSAGES} chat messages`);
    check(JSON.stringify(inB) === JSON.stringify(expect('A')), `B got A's messages in order: ${JSON.stringify(inB)}`);
    check(JSON.stringify(inA) === JSON.stringify(expect('B')), `A got B's messages in order: ${JSON.stringify(inA)}`);
    const chatMs = Date.now() - chatStarted;
    const still = await b.evaluate(() => window.creditTest.resolved);
    check(still === held.resolved, `B's flow stayed held during the chat (${held.resolved} -> ${still} bytes resolved)`);
    console.log(`chat: ${MESSAGES} messages each way in ${chatMs} ms while /flow/1 was held`);
    await shot(tools, a, 'credit-a.png');
    await shot(tools, b, 'credit-b.png');

    // A reads on: everything arrives, in order; every write of B resolves.
    const resumed = Date.now();
    await a.evaluate(() => {
        const t = window.creditTest;
        t.reading = true;
        (async () => {
            for (;;) {
                const r = await t.reader.read();
                if (r.done) break;
                t.check(r.value);
            }
            t.reading = false;
            t.done = true;
        })().catch((err) => (t.readError = String(err)));
    });
    const end = await waitFor(
        a,
        () => {
            const t = window.creditTest;
            return { got: t.got, done: t.done, bad: t.bad, readError: t.readError ?? null };
        },
        null,
        (v) => v.done || v.readError !== null || v.bad >= 0,
        'A to read all 16 MiB and the end of the stream',
    );
    const seconds = (Date.now() - resumed) / 1000;
    check(end.readError === null, `A's readable ended without an error, got ${end.readError}`);
    check(end.bad < 0, `every byte A read is the pattern's; the first that is not is at offset ${end.bad}`);
    check(end.got === TOTAL, `A read ${TOTAL} bytes, got ${end.got}`);
    const bEnd = await waitFor(
        b,
        () => {
            const t = window.creditTest;
            return { resolved: t.resolved, pending: t.pending, closed: t.closed, writeError: t.writeError, hash: t.hash, errors: t.errors, drains: t.drains };
        },
        null,
        (v) => v.closed || v.writeError !== null,
        "B's writer to close after every write",
    );
    check(bEnd.writeError === null, `no write of B failed, got ${bEnd.writeError}`);
    check(bEnd.resolved === TOTAL && bEnd.pending === 0, `all of B's writes resolved: ${bEnd.resolved} bytes, ${bEnd.pending} pending`);
    check(bEnd.drains > 0, "B's /flow/1 fired `drain` once its held writes went out");
    const aEnd = await a.evaluate(() => ({ hash: window.creditTest.hash, errors: window.creditTest.errors, closes: window.creditTest.closes }));
    check(aEnd.hash === bEnd.hash, `A's checksum ${aEnd.hash.toString(16)} is B's ${bEnd.hash.toString(16)}`);
    check(aEnd.errors.length === 0 && bEnd.errors.length === 0, `no gateway error event: A ${JSON.stringify(aEnd.errors)}, B ${JSON.stringify(bEnd.errors)}`);
    check(
        aEnd.closes.includes(`${FLOW}: closed by remote`),
        `A's /flow/1 ended with B's close, got ${JSON.stringify(aEnd.closes)}`,
    );
    console.log(`resumed: 16 MiB in A ${seconds.toFixed(1)} s after it read on (${(TOTAL / 1048576 / seconds).toFixed(1)} MiB/s), checksum ${aEnd.hash.toString(16)}`);
    await shot(tools, a, 'credit-done.png');
});
