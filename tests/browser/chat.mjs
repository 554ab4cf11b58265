// chat.mjs: the chat example in a real Chromium, across two daemons.
//
//   node tests/browser/chat.mjs <urlA> <urlB>
//
// Opens chat.html on daemon A and on daemon B, hosts a room on A, joins it from B with
// the connect string A shows, sends messages both ways and checks each appears on the
// other side; then B leaves and rejoins, A closes the room under B and opens it again.
// Screenshots go to target/browser/: chat-host.png, chat-guest.png (desktop) and
// chat-host-phone.png, chat-guest-phone.png (390 px wide). Exits non-zero with
// "FAIL: ..." on any failure; 60 s at most.

import { at, check, run } from './harness.mjs';

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
    return { page, peerID };
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

async function send(page, text) {
    await page.fill('#message', text);
    await page.click('#send');
    await page.locator('#messages .message.mine', { hasText: text }).waitFor();
    check((await page.inputValue('#message')) === '', 'the message box is cleared after sending');
}

await run('chat between two daemons', 60_000, async (browser, tools) => {
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
