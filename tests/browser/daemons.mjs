// daemons.mjs: starts two connected daemons from a script, for the scripts that run on
// their own (upload.mjs), or to try a browser script by hand without cargo:
//
//   node tests/browser/daemons.mjs [--live] [binary]
//
// prints `<urlA> <urlB> <peer id of A>` (what game.mjs, resume.mjs and topics.mjs
// take) and keeps both daemons running until interrupted. --live serves html/ and
// examples/ from disk (-files), so page edits need no rebuild. Loopback only, no
// bootstrap peers, no mDNS, as tests/browser/daemon.rs starts them. Daemon B dials A
// as its bootstrap peer, directly or (with `via`) through a TCP proxy of the caller's.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BINARY = join(process.cwd(), 'target', 'debug', 'libp2p-websocket');

function startOne(binary, args, wants, timeout = 20_000) {
    const child = spawn(binary, ['-nopeers', '-nomdns', '-listen', '/ip4/127.0.0.1/tcp/0', '-port', '0', '-nobrowse', ...args], {
        env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const found = {};
    let log = '';
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            child.kill();
            reject(new Error(`the daemon did not log ${Object.keys(wants).join(', ')} within ${timeout} ms:\n${log}`));
        }, timeout);
        const take = (chunk) => {
            log += chunk;
            for (const [name, re] of Object.entries(wants)) {
                const m = found[name] === undefined && log.match(re);
                if (m) found[name] = m[1];
            }
            if (Object.keys(wants).every((k) => found[k] !== undefined)) {
                clearTimeout(timer);
                child.stdout.off('data', take);
                child.stderr.off('data', take);
                child.stdout.resume();
                child.stderr.resume();
                resolve({ child, ...found, log: () => log });
            }
        };
        child.stdout.setEncoding('utf8').on('data', take);
        child.stderr.setEncoding('utf8').on('data', take);
        child.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`the daemon exited (${code}):\n${log}`));
        });
    });
}

/**
 * Starts daemons A and B (B dialing A). `via(addressOfA)` may return another
 * host:port that reaches A (a proxy), which B then dials instead. Resolves with
 * {urlA, urlB, peerA, pidA, httpA (A's HTTP port), stop()}.
 */
export async function startPair({ binary = BINARY, live = false, via = null } = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'libp2p-websocket-pair-'));
    const files = live ? ['-files', 'html', '-files', 'examples'] : [];
    const wants = { url: /url=http:\/\/[^:]+:(\d+)\//, peer: /libp2p node started peer_id=(\w+)/, tcp: /\/ip4\/127\.0\.0\.1\/tcp\/([1-9]\d*)/ };
    const a = await startOne(binary, ['--key-file', join(dir, 'a.key'), ...files], wants);
    let port = Number(a.tcp);
    if (via) port = await via(port);
    const b = await startOne(binary, ['--key-file', join(dir, 'b.key'), '-peer', `/ip4/127.0.0.1/tcp/${port}/p2p/${a.peer}`, ...files], {
        url: wants.url,
        connected: new RegExp(`(connected to bootstrap peer).*${a.peer}`),
    });
    return {
        pidA: a.child.pid,
        httpA: Number(a.url),
        urlA: `http://127.0.0.1:${a.url}/`,
        urlB: `http://127.0.0.1:${b.url}/`,
        peerA: a.peer,
        stop() {
            a.child.kill();
            b.child.kill();
            rmSync(dir, { recursive: true, force: true });
        },
    };
}

if (import.meta.url === `file://${process.argv[1]}`) {
    const args = process.argv.slice(2);
    const live = args.includes('--live');
    const binary = args.find((a) => !a.startsWith('--')) ?? BINARY;
    const pair = await startPair({ binary, live });
    console.log(`${pair.urlA} ${pair.urlB} ${pair.peerA}`);
    const stop = () => {
        pair.stop();
        process.exit(0);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
}
