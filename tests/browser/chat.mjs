// chat.mjs: the chat example in a real Chromium, across two daemons.
//
//   node tests/browser/chat.mjs <urlA> <urlB>
//
// Opens chat.html on daemon A and on daemon B, hosts a room on A (Alice), joins it from
// B (Bob) with the connect string A shows, sends messages both ways and checks each
// appears on the other side. Then a second guest (Carol) joins the same room from a
// third page, on daemon A itself (the daemon joins its two sessions in-process): every
// member list shows exactly the three names, Carol's message reaches Alice and Bob
// (Alice relays it), Bob's and Alice's reach Carol, and when Carol leaves, Alice and
// Bob see her go while the room goes on. Then B leaves and rejoins, A closes the room
// under B and opens it again. Screenshots go to target/browser/: chat-host.png,
// chat-guest.png (desktop), chat-host-phone.png, chat-guest-phone.png (390 px wide)
// and chat-three.png (the three pages side by side). Exits non-zero with "FAIL: ..."
// on any failure; 60 s at most.

import { statSync } from 'node:fs';
import { join } from 'node:path';

import { at, check, Failure, run, SHOTS, STEP } from './harness.mjs';

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
    console.error('usage: node chat.mjs <daemon A base URL> <daemon B base URL>');
    process.exit(2);
}

const FROM_BOB = 'Hello from Bob — is this thing on? Grüße, ça va?';
const FROM_ALICE = 'Hi Bob! Loud and clear: this went browser → daemon → libp2p → daemon → browser.';

async function openChat(tools, label, base) {
    const page = await tools.page(label);
    await page.goto(at(base, 'chat.html'));
    await page.locator('#host:enabled').waitFor();
    await page.locator('#join:enabled').waitFor();
    check((await page.getAttribute('body', 'data-mode')) === 'idle', `${label}: starts idle`);
    const peerID = (await page.textContent('#peer-id')).trim();
    check(/^12D3KooW|^Qm/.test(peerID), `${label}: shows its peer id, got "${peerID}"`);
    check(
        ['public', 'private'].includes((await page.textContent('#nat-status')).trim()),
        `${label}: shows a NAT status`,
    );
    return { page, peerID, label };
}

async function messageTexts(page) {
    return page.$$eval('#messages .message', (items) =>
        items.map((m) => ({
            from: m.querySelector('.from')?.textContent ?? '',
            text: m.querySelector('.text')?.textContent ?? '',
            mine: m.classList.contains('mine'),
        })),
    );
}

/** The member list of `page`: [{name, role}] in the order shown. */
async function roster(page) {
    return page.$$eval('#members li', (items) =>
        items.map((li) => ({
            name: li.firstChild?.nodeType === Node.TEXT_NODE ? li.firstChild.textContent.trim() : '',
            role: li.querySelector('.role')?.textContent ?? '',
        })),
    );
}

async function notices(page) {
    return page.$$eval('#messages .notice', (items) => items.map((n) => n.textContent));
}

/** Polls `probe()` until `accept(value)` holds, at most STEP; returns the value. */
async function until(what, probe, accept) {
    const deadline = Date.now() + STEP;
    for (;;) {
        const value = await probe();
        if (accept(value)) return value;
        if (Date.now() > deadline) {
            throw new Failure(`timed out after ${STEP / 1000} s waiting for ${what}; last saw ${JSON.stringify(value)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

/** Waits until the member list of `who` is exactly `want` ([name, role] pairs, in order). */
async function expectRoster(who, want) {
    const wanted = JSON.stringify(want.map(([name, role]) => ({ name, role })));
    await until(`the member list of ${who.label} to be ${wanted}`, () => roster(who.page), (list) => JSON.stringify(list) === wanted);
}

async function send(page, text) {
    await page.fill('#message', text);
    await page.click('#send');
    await page.locator('#messages .message.mine', { hasText: text }).waitFor();
    check((await page.inputValue('#message')) === '', 'the message box is cleared after sending');
}

await run('chat between two daemons', 180_000, async (browser, tools) => {
    const host = await openChat(tools, 'host (A)', urlA);
    const guest = await openChat(tools, 'guest (B)', urlB);
    check(host.peerID !== guest.peerID, 'the two daemons have different peer ids');
    await host.page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(urlA).origin });

    // A hosts.
    await host.page.fill('#name', 'Alice');
    await host.page.click('#host');
    await host.page.locator('body[data-mode="hosting"]').waitFor();
    const connectString = (await host.page.inputValue('#connect-string')).trim();
    check(connectString.startsWith('/addrs/'), `the host shows a connect string, got "${connectString}"`);
    check(await host.page.isVisible('#connect-string'), 'the connect string is visible while hosting');
    await host.page.locator('#members li', { hasText: 'Alice' }).waitFor();

    // Copy puts the connect string on the clipboard.
    await host.page.click('#copy');
    await host.page.locator('#copy', { hasText: 'Copied' }).waitFor();
    const clipboard = await host.page.evaluate(() => navigator.clipboard.readText());
    check(clipboard.trim() === connectString, 'Copy puts the connect string on the clipboard');

    // B joins with it.
    await guest.page.fill('#name', 'Bob');
    await guest.page.fill('#join-string', connectString);
    await guest.page.click('#join');
    await guest.page.locator('body[data-mode="guest"]').waitFor();
    await host.page.locator('#members li', { hasText: 'Bob' }).waitFor();
    await guest.page.locator('#members li', { hasText: 'Alice' }).waitFor();
    await host.page.locator('#messages .notice', { hasText: 'Bob joined' }).waitFor();
    check(await guest.page.isEnabled('#message'), 'the guest can type once in the room');

    // Messages both ways.
    await send(guest.page, FROM_BOB);
    await host.page.locator('#messages .message', { hasText: FROM_BOB }).waitFor();
    await send(host.page, FROM_ALICE);
    await guest.page.locator('#messages .message', { hasText: FROM_ALICE }).waitFor();

    const onHost = await messageTexts(host.page);
    const onGuest = await messageTexts(guest.page);
    const want = [
        { from: 'Bob', text: FROM_BOB },
        { from: 'Alice', text: FROM_ALICE },
    ];
    for (const [side, list, mineName] of [
        ['host', onHost, 'Alice'],
        ['guest', onGuest, 'Bob'],
    ]) {
        check(list.length === 2, `${side} shows 2 messages, got ${JSON.stringify(list)}`);
        want.forEach((w, i) => {
            check(list[i].from === w.from && list[i].text === w.text, `${side} message ${i}: ${JSON.stringify(list[i])}`);
            check(list[i].mine === (w.from === mineName), `${side} message ${i} is marked mine only if sent there`);
        });
    }

    // A few more lines so the screenshots show a conversation.
    await send(guest.page, 'Great. The connect string carried your addresses, so no lookup was needed.');
    await host.page.locator('#messages .message', { hasText: 'no lookup was needed' }).waitFor();
    await send(host.page, 'Exactly — and everything stayed on 127.0.0.1.');
    await guest.page.locator('#messages .message', { hasText: 'stayed on 127.0.0.1' }).waitFor();

    await tools.shot(host.page, 'chat-host.png');
    await tools.shot(guest.page, 'chat-guest.png');
    for (const [who, page] of [
        ['guest', guest.page],
        ['host', host.page],
    ]) {
        await page.setViewportSize({ width: 390, height: 844 });
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(overflow <= 0, `${who} at 390 px scrolls sideways by ${overflow} px`);
        await tools.shot(page, `chat-${who}-phone.png`, { fullPage: true });
        await page.setViewportSize({ width: 1100, height: 760 });
    }

    // Text outside the Basic Multilingual Plane (4 bytes of UTF-8, a surrogate pair in JS).
    const wave = 'bye for now \u{1F44B}\u{1F600} 𝄞';
    await send(guest.page, wave);
    await host.page.locator('#messages .message', { hasText: wave }).waitFor();

    // A second guest: Carol, on a page of daemon A itself, pastes the same connect
    // string (it carries A's peer id; the daemon joins the two sessions in-process).
    const guest2 = await openChat(tools, 'guest 2 (A)', urlA);
    check(guest2.peerID === host.peerID, 'the second guest is on daemon A, like the host');
    await guest2.page.fill('#name', 'Carol');
    await guest2.page.fill('#join-string', connectString);
    await guest2.page.click('#join');
    await guest2.page.locator('body[data-mode="guest"]').waitFor();
    await host.page.locator('#messages .notice', { hasText: 'Carol joined' }).waitFor();
    await guest.page.locator('#messages .notice', { hasText: 'Carol joined' }).waitFor();

    // Every member list shows the three of them, each once, with the right roles.
    await expectRoster(host, [['Alice', 'host · you'], ['Bob', ''], ['Carol', '']]);
    await expectRoster(guest, [['Bob', 'you'], ['Alice', 'host'], ['Carol', '']]);
    await expectRoster(guest2, [['Carol', 'you'], ['Alice', 'host'], ['Bob', '']]);
    check((await host.page.textContent('#room-title')).includes('(2 guests)'), 'the host counts 2 guests');
    check((await guest2.page.textContent('#room-title')).includes("Alice's room"), 'guest 2 sees whose room it is');

    // Carol -> Alice, and through Alice to Bob; Bob -> Carol; Alice -> both.
    const FROM_CAROL = 'Carol here, on daemon A with Alice. Can you both read me?';
    const FROM_BOB_2 = 'Yes Carol, loud and clear from daemon B (Alice relays us).';
    const FROM_ALICE_2 = 'Three in the room, two daemons, one relay: me.';
    await send(guest2.page, FROM_CAROL);
    await host.page.locator('#messages .message', { hasText: FROM_CAROL }).waitFor();
    await guest.page.locator('#messages .message', { hasText: FROM_CAROL }).waitFor();
    await send(guest.page, FROM_BOB_2);
    await guest2.page.locator('#messages .message', { hasText: FROM_BOB_2 }).waitFor();
    await host.page.locator('#messages .message', { hasText: FROM_BOB_2 }).waitFor();
    await send(host.page, FROM_ALICE_2);
    await guest.page.locator('#messages .message', { hasText: FROM_ALICE_2 }).waitFor();
    await guest2.page.locator('#messages .message', { hasText: FROM_ALICE_2 }).waitFor();

    const three = [
        { from: 'Carol', text: FROM_CAROL },
        { from: 'Bob', text: FROM_BOB_2 },
        { from: 'Alice', text: FROM_ALICE_2 },
    ];
    for (const [who, name, count] of [
        [host, 'Alice', 8],
        [guest, 'Bob', 8],
        [guest2, 'Carol', 3],
    ]) {
        // Each page shows every message once, in order, under its sender's name; Carol
        // sees only what was said since she joined.
        const list = await messageTexts(who.page);
        check(list.length === count, `${who.label} shows ${count} messages, got ${JSON.stringify(list)}`);
        three.forEach((w, i) => {
            const got = list[count - 3 + i];
            check(got.from === w.from && got.text === w.text, `${who.label}: message ${count - 3 + i} is ${JSON.stringify(got)}, want ${JSON.stringify(w)}`);
            check(got.mine === (w.from === name), `${who.label}: message from ${w.from} is marked mine only if sent there`);
        });
    }
    // The host greeted Carol with who was already there without announcing anyone.
    const carolNotices = await notices(guest2.page);
    check(
        JSON.stringify(carolNotices) === JSON.stringify(['Joined the room.']),
        `guest 2 shows only its own join notice, got ${JSON.stringify(carolNotices)}`,
    );

    // The three pages side by side, in one picture.
    const panels = [];
    for (const [who, caption] of [
        [host, 'Alice — host, daemon A'],
        [guest, 'Bob — guest 1, daemon B'],
        [guest2, 'Carol — guest 2, daemon A'],
    ]) {
        panels.push({ caption, png: (await who.page.screenshot()).toString('base64') });
    }
    const board = await tools.page('three-up', { width: 3 * 1100 + 4 * 16, height: 820 });
    await board.setContent(
        `<!doctype html><body style="margin:0;padding:16px;display:flex;gap:16px;background:#444;font:bold 18px system-ui,sans-serif;color:#fff">${panels
            .map(
                (p) =>
                    `<figure style="margin:0"><figcaption style="padding:0 0 8px">${p.caption}</figcaption><img style="display:block;width:1100px;height:760px" src="data:image/png;base64,${p.png}"></figure>`,
            )
            .join('')}</body>`,
    );
    await board.waitForFunction(() => [...document.images].every((img) => img.complete && img.naturalWidth > 0));
    await tools.shot(board, 'chat-three.png', { fullPage: true });
    await board.context().close();
    const threeSize = statSync(join(SHOTS, 'chat-three.png')).size;
    check(threeSize > 10_000, `chat-three.png is ${threeSize} bytes`);

    // Carol leaves: Alice and Bob see her go; the room goes on for them.
    check((await guest2.page.textContent('#join')).trim() === 'Leave', 'guest 2 has a Leave button');
    await guest2.page.click('#join');
    await guest2.page.locator('body[data-mode="idle"]').waitFor();
    await guest2.page.locator('#messages .notice', { hasText: 'You left the room.' }).waitFor();
    check((await guest2.page.locator('#members li').count()) === 0, 'guest 2 lists nobody after leaving');
    await host.page.locator('#messages .notice', { hasText: 'Carol left' }).waitFor();
    await guest.page.locator('#messages .notice', { hasText: 'Carol left' }).waitFor();
    await expectRoster(host, [['Alice', 'host · you'], ['Bob', '']]);
    await expectRoster(guest, [['Bob', 'you'], ['Alice', 'host']]);
    check((await host.page.textContent('#room-title')).includes('(1 guest)'), 'the host counts 1 guest');
    check((await guest.page.getAttribute('body', 'data-mode')) === 'guest', 'guest 1 is still in the room');
    await send(host.page, 'Bye Carol! Just us two again, Bob.');
    await guest.page.locator('#messages .message', { hasText: 'Just us two again' }).waitFor();
    await guest2.page.context().close();

    // B leaves; A sees it.
    await guest.page.click('#join');
    await guest.page.locator('body[data-mode="idle"]').waitFor();
    await guest.page.locator('#messages .notice', { hasText: 'You left the room.' }).waitFor();
    await host.page.locator('#messages .notice', { hasText: 'Bob left' }).waitFor();
    await host.page.locator('#members li', { hasText: 'Bob' }).waitFor({ state: 'detached' });
    check((await host.page.textContent('#room-title')).includes('0 guests'), 'the host counts no guest');

    // B comes back with the same connect string; then A closes the room under it.
    await guest.page.click('#join');
    await guest.page.locator('body[data-mode="guest"]').waitFor();
    await host.page.locator('#members li', { hasText: 'Bob' }).waitFor();
    check((await guest.page.textContent('#room-title')).includes("Alice's room"), 'the guest sees whose room it is');
    await host.page.click('#host');
    await host.page.locator('body[data-mode="idle"]').waitFor();
    check(!(await host.page.isVisible('#connect-string')), 'the connect string is hidden once the room is closed');
    await guest.page.locator('body[data-mode="idle"]').waitFor();
    await guest.page.locator('#messages .notice', { hasText: 'The host closed the room.' }).waitFor();
    check((await guest.page.locator('#members li').count()) === 0, 'the guest lists nobody after the room closed');

    // The same tab can open a room again.
    await host.page.click('#host');
    await host.page.locator('body[data-mode="hosting"]').waitFor();
    check((await host.page.inputValue('#connect-string')).startsWith('/addrs/'), 'a connect string again');
});
