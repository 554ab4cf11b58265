// harness.mjs: what the real-browser scripts share. Launches Debian's Chromium through
// playwright-core (never a downloaded browser), bounds the whole script with a
// deadline, records page errors, and fails with a clear message.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const SHOTS = process.env.SCREENSHOT_DIR ?? join(process.cwd(), 'target', 'browser');
/** The longest any single wait in a page may take. */
export const STEP = 45_000;

/** Thrown for a failed expectation; its message is all the report needs. */
export class Failure extends Error {}

export function check(condition, message) {
    if (!condition) throw new Failure(message);
}

/**
 * Runs `body(browser, tools)` with Chromium, within `totalMs`. Exits 0 on success, 1
 * with "FAIL: ..." on stderr otherwise.
 */
export async function run(name, totalMs, body) {
    const deadline = setTimeout(() => {
        console.error(`FAIL: ${name}: did not finish within ${totalMs / 1000} s`);
        process.exit(1);
    }, totalMs);
    const problems = [];
    let browser;
    try {
        mkdirSync(SHOTS, { recursive: true });
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            timeout: STEP,
            args: [
                '--no-sandbox',
                '--disable-gpu',
                '--disable-quic',
                '--no-first-run',
                '--disable-background-networking',
                '--disable-component-update',
                '--disable-sync',
            ],
        });
        const tools = {
            /** A new page (own context: own storage) that records its errors under `label`. */
            async page(label, viewport = { width: 1100, height: 760 }) {
                const context = await browser.newContext({ viewport });
                context.setDefaultTimeout(STEP);
                const page = await context.newPage();
                page.on('pageerror', (err) => problems.push(`${label}: uncaught ${err.stack ?? err}`));
                page.on('console', (msg) => {
                    if (msg.type() === 'error') problems.push(`${label}: console error: ${msg.text()}`);
                });
                page.on('requestfailed', (req) =>
                    problems.push(`${label}: request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`),
                );
                page.on('response', (res) => {
                    if (res.status() >= 400) problems.push(`${label}: HTTP ${res.status()} for ${res.url()}`);
                });
                return page;
            },
            shot: (page, file, options = {}) => page.screenshot({ path: join(SHOTS, file), ...options }),
            problems,
        };
        await body(browser, tools);
        check(problems.length === 0, `the pages reported problems:\n  ${problems.join('\n  ')}`);
        console.log(`ok: ${name}`);
    } catch (err) {
        const detail = err instanceof Failure ? err.message : (err.stack ?? String(err));
        console.error(`FAIL: ${name}: ${detail}`);
        if (problems.length > 0) console.error(`the pages reported:\n  ${problems.join('\n  ')}`);
        process.exitCode = 1;
    } finally {
        clearTimeout(deadline);
        await browser?.close().catch(() => {});
    }
    process.exit(process.exitCode ?? 0);
}

/** The URL of `page` on a daemon whose base URL (ending in /) is `base`. */
export function at(base, page) {
    return new URL(page, base.endsWith('/') ? base : `${base}/`).href;
}
