// game.js: Gem Rush, a real-time arena game for 2 to 8 players over libp2p, through
// the libp2p-websocket daemon. Only ./protocol.js is used.
//
// Finding games: a hosted game is a listener on GAME_PREFIX + <gameId>, where gameId
// is 6 random characters, '-', and the game's name percent-encoded (printable ASCII,
// URL-safe, the whole protocol id at most 200 bytes). Every page subscribes to the
// daemon's presence and lists gw.findProtocols(GAME_PREFIX): games hosted by pages of
// the same daemon (joined in-process through the daemon's own peer id) and games
// announced by connected peers' daemons (joined over libp2p).
//
// Playing: the host's page owns the game. It simulates at 60 Hz and broadcasts the
// state 30 times a second; guests send their inputs and draw what the host sends,
// interpolated. A guest that does not keep up (with the daemon's credit extension,
// its stream runs out of credit: send() returns false, `drain` follows) is skipped
// until its stream drains, then sent only the newest state, so it costs the host
// nothing and holds up nobody else. Each libp2p message is one JSON frame:
//
//   guest -> host   {t:'h', n: name, c: colour, s: 1}  hello, once, first (s: it can
//                                                      take states from a topic)
//                   {t:'i', x, y, d}                   input: stick -1..1, d: dashes so far
//                   {t:'p', on: true|false}            states from the topic (on) or on
//                                                      this stream (off) from now on
//                   {t:'b'}                            bye
//   host -> guest   {t:'w', you: id, win: points, s: topic}   welcome (s: the game's
//                                                      state topic, when both can)
//                   {t:'r', g: game name, p: [[id, name, colour], ...]}   roster, on change
//                   {t:'s', k: seq, ms: host clock, p: [[id, x, y, score, flags], ...],
//                    g: [[id, x, y], ...], w: winner id or -1}           state
//                   {t:'x', why: text}                 you are out (game ended, full)
//
// flags: 1 dashing, 2 stunned (just lost a gem to a dash).
//
// States on a topic: with the daemon's pubsub extension (PROTOCOL.md, "Extension:
// pubsub") the host publishes each state once on the game's state topic (a name made
// anew for each game, told only in the welcome) and the daemons fan it out: in-process
// to guests on the host's daemon, once per other daemon to the guests there. So the
// host's upload no longer grows with the players (measured: README.md, Gem Rush). A
// guest that asked for it (hello's s) and was told the topic subscribes; once the
// first state comes from the topic (published by the host's daemon) it says {t:'p',
// on: true} and the host stops sending it states on its stream. If the topic then
// brings nothing for a while (gossipsub is best-effort), the guest says {t:'p', on:
// false} and gets them on its stream again until the topic delivers. Everything else
// (hello, welcome, roster, inputs, bye, out) stays on the player's stream: inputs go
// to the host alone (on a topic every page would get everyone's), and the stream's
// end is how the host knows a player left. Without pubsub on either side (an older
// daemon, or ?pubsub=0 in the page's URL) states go on the streams, as before.
//
// The lobby topic (gem-rush/lobby): a host announces its game's player count there
// ({t:'g', p: protocol, n: players, m: most}) on every change and every few seconds,
// and {t:'e', p: protocol} when it ends; lobbies show the count next to the games that
// presence finds, and a full game cannot be joined.
//
// Drops: with the daemon's resume extension the session outlives a dropped WebSocket
// (a Wi-Fi blip): the gateway takes it back by itself, the game goes on, and only a
// "reconnecting…" shows meanwhile. A host page reloaded within the grace period takes
// its game's listener back (the game is remembered in sessionStorage) and hosts the
// same game again: it stays in every lobby, and players join it anew.

import { Gateway } from './protocol.js';

const GAME_PREFIX = '/libp2p-websocket/game/1.0.0/';
const MAX_PROTOCOL_BYTES = 200;
const NAME_STORAGE = 'libp2p-websocket-game-name';
const COLOR_STORAGE = 'libp2p-websocket-game-color';
const HOSTING_STORAGE = 'libp2p-websocket-game-hosting'; // sessionStorage: {protocol, name}
const MAX_NAME = 24;
const MAX_GAME_NAME = 40;
const MAX_PLAYERS = 8;
const MAX_FRAME = 2048; // guests' frames are tiny; anything longer is ignored
const LOBBY_TOPIC = 'gem-rush/lobby';
const STATE_TOPIC_PREFIX = 'gem-rush/state/';
const GUEST_TOPIC_STORAGE = 'libp2p-websocket-game-topic'; // sessionStorage: a guest's state topic
const ANNOUNCE_EVERY = 3000; // lobby announcements (ms)
const ANNOUNCE_TTL = 10_000; // a count not announced again for this long is forgotten
const TOPIC_SILENCE = 1500; // a guest whose topic brings no state for this long (ms) asks for its stream
// ?pubsub=0 in the page's URL: do without topics, as with a daemon that has no pubsub.
const PUBSUB = new URLSearchParams(location.search).get('pubsub') !== '0';

// The arena, in world units; the canvas scales it.
const W = 800;
const H = 500;
const R = 20; // player radius
const GEM_R = 10;
const WIN = 15; // gems to win a round
const STEP = 1 / 60; // simulation step (s)
const SEND_EVERY = 1000 / 30; // state broadcasts (ms)
const ACCEL = 1250;
const DRAG = 3.6; // top speed ACCEL / DRAG, about 350 units/s
const DASH_SPEED = 560;
const DASH_TIME = 0.22;
const DASH_COOLDOWN = 1.1;
const STUN_TIME = 0.9;
const ROUND_PAUSE = 3.5; // seconds the winner is shown
const INTERP_DELAY = 90; // guests draw this far (ms) behind the newest state

const COLORS = ['#ff5d73', '#4dabf7', '#ffd43b', '#69db7c', '#b197fc', '#ff922b', '#3bc9db', '#f783ac'];
const COLOR_NAMES = ['coral', 'sky', 'sun', 'mint', 'violet', 'orange', 'teal', 'pink'];

const $ = (id) => document.getElementById(id);
const ui = {
    body: document.body,
    name: $('name'),
    colors: $('colors'),
    gameName: $('game-name'),
    host: $('host'),
    games: $('games'),
    gamesEmpty: $('games-empty'),
    gameCount: $('game-count'),
    canvas: $('canvas'),
    players: $('players'),
    status: $('status'),
    leave: $('leave'),
    dash: $('dash'),
    title: $('game-title'),
    daemon: $('daemon-status'),
    peerId: $('peer-id'),
};
const ctx = ui.canvas.getContext('2d');

const app = {
    gw: null,
    mode: 'lobby', // lobby | hosting | playing
    busy: false, // hosting or joining is under way
    presence: 'waiting', // waiting | live | unsupported
    color: COLORS[0],
    game: null, // {protocol, name, peerID, local}
    host: null, // the Host while hosting
    guest: null, // the Guest while playing someone else's game
    lobby: null, // the lobby Topic, when the daemon has pubsub
    counts: new Map(), // game protocol -> {n, m, at}: player counts from the lobby topic
};

// ------------------------------------------------------------------ helpers

function setStatus(text, kind = 'info') {
    ui.status.textContent = text;
    ui.status.dataset.kind = kind;
}

function clamp(v, lo, hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

function cleanName(value, fallback = 'player') {
    if (typeof value !== 'string') return fallback;
    const name = value.replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, MAX_NAME);
    return name || fallback;
}

function cleanColor(value) {
    return COLORS.includes(value) ? value : null;
}

function myName() {
    return cleanName(ui.name.value, 'player');
}

function randomId(n = 6) {
    const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
    const bytes = crypto.getRandomValues(new Uint8Array(n));
    return [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
}

const utf8 = new TextEncoder();

/** The protocol id of a new game named `name`: printable ASCII, at most 200 bytes. */
function gameProtocol(name) {
    let chars = [...name.trim().slice(0, MAX_GAME_NAME)];
    const id = randomId();
    for (;;) {
        const protocol = `${GAME_PREFIX}${id}-${encodeURIComponent(chars.join(''))}`;
        if (utf8.encode(protocol).length <= MAX_PROTOCOL_BYTES) return protocol;
        chars = chars.slice(0, -1);
    }
}

/** The game's name from its protocol id, or null when it is not a game protocol. */
function gameNameOf(protocol) {
    if (typeof protocol !== 'string' || !protocol.startsWith(GAME_PREFIX)) return null;
    const id = protocol.slice(GAME_PREFIX.length);
    const dash = id.indexOf('-');
    if (dash < 1 || !/^[\x21-\x7e]+$/.test(id)) return null;
    const raw = id.slice(dash + 1);
    try {
        return cleanName(decodeURIComponent(raw), 'unnamed game');
    } catch {
        return cleanName(raw, 'unnamed game');
    }
}

function shortPeer(peerID) {
    return peerID ? `${peerID.slice(0, 8)}…${peerID.slice(-6)}` : '';
}

function parseFrame(bytes) {
    if (bytes.length > MAX_FRAME * 64) return null;
    try {
        const value = JSON.parse(new TextDecoder().decode(bytes));
        return value && typeof value === 'object' && typeof value.t === 'string' ? value : null;
    } catch {
        return null;
    }
}

/** Whether the gateway can use topics (the daemon has pubsub, and the page wants it). */
function hasPubsub(gw) {
    return PUBSUB && Boolean(gw?.extensions?.has('pubsub'));
}

/** The state topic of a new game: never the same twice, and short (it goes with every state). */
function stateTopic() {
    return `${STATE_TOPIC_PREFIX}${randomId(16)}`;
}

function publishJSON(gw, topic, value) {
    try {
        gw.publish(topic, JSON.stringify(value));
        return true;
    } catch {
        return false; // the gateway is going away, or the message is too large
    }
}

function send(conn, frame) {
    if (!conn || conn.closed) return;
    try {
        conn.sendJSON(frame);
    } catch {
        /* closing: its close event cleans up */
    }
}

// ------------------------------------------------------------------ input (keys, touch)

const input = {
    keys: new Set(),
    stick: null, // {id, ox, oy, x, y, moved, at}: a pointer dragged on the canvas
    x: 0,
    y: 0,
    dashes: 0, // dash presses so far (a counter, so none is lost between frames)
    sent: '',
    lastSend: 0,
};

const KEYS = {
    ArrowLeft: [-1, 0], KeyA: [-1, 0],
    ArrowRight: [1, 0], KeyD: [1, 0],
    ArrowUp: [0, -1], KeyW: [0, -1],
    ArrowDown: [0, 1], KeyS: [0, 1],
};

function inGame() {
    return app.mode === 'hosting' || app.mode === 'playing';
}

function typingIn(target) {
    return target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
}

function updateDirection() {
    let x = 0;
    let y = 0;
    for (const code of input.keys) {
        const d = KEYS[code];
        if (d) {
            x += d[0];
            y += d[1];
        }
    }
    if (input.stick) {
        x += input.stick.x;
        y += input.stick.y;
    }
    const len = Math.hypot(x, y);
    if (len > 1) {
        x /= len;
        y /= len;
    }
    input.x = Math.round(x * 100) / 100;
    input.y = Math.round(y * 100) / 100;
    pushInput();
}

function dash() {
    if (!inGame()) return;
    input.dashes++;
    pushInput(true);
}

// Hands the input to the game: the host applies its own directly, a guest sends it
// (on change, at most 30 times a second; the last change always goes out). While the
// host's stream holds an input not sent yet (with credit: the host does not keep up),
// newer ones wait: on `drain` the newest goes (joinGame()).
let inputTimer = null;
function pushInput(now = false) {
    if (app.host) {
        app.host.setInput(app.host.selfId, input.x, input.y, input.dashes);
        return;
    }
    const guest = app.guest;
    if (!guest) return;
    const key = `${input.x},${input.y},${input.dashes}`;
    if (key === input.sent) return;
    if (guest.conn.bufferedAmount > 0) return;
    const wait = input.lastSend + 33 - performance.now();
    if (wait > 0 && !now) {
        if (!inputTimer) {
            inputTimer = setTimeout(() => {
                inputTimer = null;
                pushInput(true);
            }, wait);
        }
        return;
    }
    input.sent = key;
    input.lastSend = performance.now();
    send(guest.conn, { t: 'i', x: input.x, y: input.y, d: input.dashes });
}

function resetInput() {
    input.keys.clear();
    input.stick = null;
    input.x = 0;
    input.y = 0;
    input.sent = '';
}

window.addEventListener('keydown', (e) => {
    if (!inGame() || typingIn(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (KEYS[e.code]) {
        e.preventDefault();
        if (!input.keys.has(e.code)) {
            input.keys.add(e.code);
            updateDirection();
        }
    } else if (e.code === 'Space' || e.code === 'ShiftLeft' || e.code === 'ShiftRight') {
        e.preventDefault();
        if (!e.repeat) dash();
    }
});
window.addEventListener('keyup', (e) => {
    if (e.code === 'Space' && inGame() && !typingIn(e.target)) e.preventDefault(); // no button click
    if (input.keys.delete(e.code)) updateDirection();
});
window.addEventListener('blur', () => {
    input.keys.clear();
    updateDirection();
});

// A drag on the arena is a joystick centred where it started; a tap dashes.
function worldPoint(e) {
    const rect = ui.canvas.getBoundingClientRect();
    return { x: ((e.clientX - rect.left) / rect.width) * W, y: ((e.clientY - rect.top) / rect.height) * H };
}
ui.canvas.addEventListener('pointerdown', (e) => {
    if (!inGame() || input.stick) return;
    e.preventDefault();
    ui.canvas.focus();
    ui.canvas.setPointerCapture?.(e.pointerId);
    const p = worldPoint(e);
    input.stick = { id: e.pointerId, ox: p.x, oy: p.y, px: p.x, py: p.y, x: 0, y: 0, moved: false, at: performance.now() };
});
ui.canvas.addEventListener('pointermove', (e) => {
    const s = input.stick;
    if (!s || s.id !== e.pointerId) return;
    const p = worldPoint(e);
    s.px = p.x;
    s.py = p.y;
    const dx = p.x - s.ox;
    const dy = p.y - s.oy;
    if (Math.hypot(dx, dy) > 8) s.moved = true;
    s.x = clamp(dx / 60, -1, 1);
    s.y = clamp(dy / 60, -1, 1);
    updateDirection();
});
function endStick(e) {
    const s = input.stick;
    if (!s || s.id !== e.pointerId) return;
    input.stick = null;
    if (!s.moved && performance.now() - s.at < 300) dash();
    updateDirection();
}
ui.canvas.addEventListener('pointerup', endStick);
ui.canvas.addEventListener('pointercancel', endStick);
ui.dash.addEventListener('pointerdown', (e) => {
    e.preventDefault();
    dash();
});

// ------------------------------------------------------------------ the host's game

// A steady clock for the host: timers in a worker are not slowed down when the tab is
// in the background, so guests keep playing smoothly.
function startTicker(fn, ms) {
    let stop = null;
    const fallback = () => {
        const id = setInterval(fn, ms);
        stop = () => clearInterval(id);
    };
    try {
        const source = 'let id = null; onmessage = (e) => { clearInterval(id); id = setInterval(() => postMessage(0), e.data); };';
        const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
        const worker = new Worker(url);
        URL.revokeObjectURL(url);
        worker.onmessage = fn;
        worker.onerror = (e) => {
            e.preventDefault?.();
            worker.terminate();
            fallback();
        };
        worker.postMessage(ms);
        stop = () => worker.terminate();
    } catch {
        fallback();
    }
    return () => stop?.();
}

class Host {
    constructor(gw, protocol, gameName, name, color) {
        this.gw = gw;
        this.protocol = protocol;
        this.gameName = gameName;
        this.players = new Map(); // id -> player
        this.conns = new Map(); // Connection -> player id (null before its hello)
        // A guest that does not keep up (a background tab, a slow link) fills its
        // stream's credit window, and then what the host sends it would wait in this
        // page (send() returns false). States replace each other, so such a guest gets
        // none until its stream drains, then only the newest: see broadcastState().
        this.unsent = new Map(); // Connection -> the newest state it was not sent
        // States on a topic (see the top of this file): the game's state topic when the
        // daemon has pubsub, the guests told it, and those who take states from it.
        this.topic = hasPubsub(gw) ? stateTopic() : null;
        this.offered = new Set(); // Connections told the topic
        this.viaTopic = new Set(); // Connections that get no state on their stream
        this.stats = { published: 0, streamStates: 0 }; // states published, states sent on streams
        this.gems = [];
        this.nextId = 0;
        this.nextGem = 0;
        this.seq = 0;
        this.winner = -1;
        this.roundEnds = 0;
        this.gemTimer = 0;
        this.time = 0; // simulated seconds
        this.lastTick = performance.now();
        this.nextSend = 0;
        this.acc = 0;
        this.selfId = this.addPlayer(name, color, null).id;
        for (let i = 0; i < 4; i++) this.spawnGem();
        this.stopTicker = startTicker(() => this.tick(), 1000 / 60);
        this.announce();
        this.announcer = setInterval(() => this.announce(), ANNOUNCE_EVERY);
    }

    // The game's player count, on the lobby topic (when the daemon has pubsub).
    announce(ended = false) {
        if (!hasPubsub(this.gw) || this.gw.closed) return;
        const frame = ended ? { t: 'e', p: this.protocol } : { t: 'g', p: this.protocol, n: this.players.size, m: MAX_PLAYERS };
        publishJSON(this.gw, LOBBY_TOPIC, frame);
    }

    addPlayer(name, preferred, conn) {
        const taken = new Set([...this.players.values()].map((p) => p.color));
        const color = preferred && !taken.has(preferred) ? preferred : (COLORS.find((c) => !taken.has(c)) ?? COLORS[0]);
        const id = this.nextId++;
        const spot = this.freeSpot(R * 4);
        const player = {
            id, name, color, conn,
            x: spot.x, y: spot.y, vx: 0, vy: 0, px: spot.x, py: spot.y,
            fx: 1, fy: 0, // facing
            score: 0, ix: 0, iy: 0, dashes: null, dashT: 0, cool: 0, stun: 0,
        };
        this.players.set(id, player);
        return player;
    }

    freeSpot(margin) {
        let best = { x: W / 2, y: H / 2 };
        let bestDist = -1;
        for (let i = 0; i < 24; i++) {
            const x = 60 + Math.random() * (W - 120);
            const y = 60 + Math.random() * (H - 120);
            let d = Infinity;
            for (const p of this.players.values()) d = Math.min(d, Math.hypot(p.x - x, p.y - y));
            for (const g of this.gems) d = Math.min(d, Math.hypot(g.x - x, g.y - y) + margin / 2);
            if (d > bestDist) {
                best = { x, y };
                bestDist = d;
            }
            if (d > margin * 3) break;
        }
        return best;
    }

    spawnGem() {
        const spot = this.freeSpot(R * 3);
        this.gems.push({ id: this.nextGem++, x: Math.round(spot.x), y: Math.round(spot.y) });
    }

    wantedGems() {
        return Math.min(3 + this.players.size, 10);
    }

    setInput(id, x, y, dashes) {
        const p = this.players.get(id);
        if (!p) return;
        p.ix = clamp(Number(x) || 0, -1, 1);
        p.iy = clamp(Number(y) || 0, -1, 1);
        const len = Math.hypot(p.ix, p.iy);
        if (len > 1) {
            p.ix /= len;
            p.iy /= len;
        }
        const d = Number.isFinite(Number(dashes)) ? Number(dashes) : 0;
        if (p.dashes === null) p.dashes = d; // the first input sets the counter
        else if (d !== p.dashes) {
            p.dashes = d;
            this.startDash(p);
        }
    }

    startDash(p) {
        if (p.cool > 0 || p.stun > 0) return;
        let dx = p.ix;
        let dy = p.iy;
        if (Math.hypot(dx, dy) < 0.2) {
            dx = p.fx;
            dy = p.fy;
        }
        const len = Math.hypot(dx, dy) || 1;
        p.vx += (dx / len) * DASH_SPEED;
        p.vy += (dy / len) * DASH_SPEED;
        p.dashT = DASH_TIME;
        p.cool = DASH_COOLDOWN;
    }

    tick() {
        const now = performance.now();
        this.acc += Math.min(0.25, (now - this.lastTick) / 1000);
        this.lastTick = now;
        let steps = 0;
        while (this.acc >= STEP && steps < 15) {
            this.step(STEP);
            this.acc -= STEP;
            steps++;
        }
        // 30 states a second on average: a late tick sends at once, and the next one
        // too if it is still behind.
        if (now >= this.nextSend) {
            this.nextSend = Math.max(this.nextSend + SEND_EVERY, now);
            this.broadcastState();
        }
    }

    step(dt) {
        this.time += dt;
        const players = [...this.players.values()];
        for (const p of players) {
            p.px = p.x;
            p.py = p.y;
            const stunned = p.stun > 0;
            const ax = stunned ? 0 : p.ix * ACCEL;
            const ay = stunned ? 0 : p.iy * ACCEL;
            p.vx += (ax - DRAG * p.vx) * dt;
            p.vy += (ay - DRAG * p.vy) * dt;
            p.x += p.vx * dt;
            p.y += p.vy * dt;
            if (Math.hypot(p.ix, p.iy) > 0.2) {
                const len = Math.hypot(p.ix, p.iy);
                p.fx = p.ix / len;
                p.fy = p.iy / len;
            }
            if (p.x < R) [p.x, p.vx] = [R, Math.abs(p.vx) * 0.7];
            if (p.x > W - R) [p.x, p.vx] = [W - R, -Math.abs(p.vx) * 0.7];
            if (p.y < R) [p.y, p.vy] = [R, Math.abs(p.vy) * 0.7];
            if (p.y > H - R) [p.y, p.vy] = [H - R, -Math.abs(p.vy) * 0.7];
            p.dashT = Math.max(0, p.dashT - dt);
            p.cool = Math.max(0, p.cool - dt);
            p.stun = Math.max(0, p.stun - dt);
        }
        const playing = this.winner < 0;
        // bumps: equal masses, a little bouncier than real; a dash steals a gem
        for (let i = 0; i < players.length; i++) {
            for (let j = i + 1; j < players.length; j++) {
                const a = players[i];
                const b = players[j];
                const dx = b.x - a.x;
                const dy = b.y - a.y;
                const d = Math.hypot(dx, dy);
                if (d >= 2 * R || d === 0) continue;
                const nx = dx / d;
                const ny = dy / d;
                const overlap = 2 * R - d;
                a.x -= (nx * overlap) / 2;
                a.y -= (ny * overlap) / 2;
                b.x += (nx * overlap) / 2;
                b.y += (ny * overlap) / 2;
                const rv = (b.vx - a.vx) * nx + (b.vy - a.vy) * ny;
                if (rv < 0) {
                    const jn = (-(1 + 0.9) * rv) / 2;
                    a.vx -= jn * nx;
                    a.vy -= jn * ny;
                    b.vx += jn * nx;
                    b.vy += jn * ny;
                }
                if (playing) {
                    if (a.dashT > 0 && b.dashT === 0) this.steal(a, b);
                    else if (b.dashT > 0 && a.dashT === 0) this.steal(b, a);
                }
            }
        }
        if (playing) {
            for (const p of players) {
                for (let k = this.gems.length - 1; k >= 0; k--) {
                    const g = this.gems[k];
                    if (Math.hypot(g.x - p.x, g.y - p.y) < R + GEM_R) {
                        this.gems.splice(k, 1);
                        p.score++;
                        if (p.score >= WIN && this.winner < 0) {
                            this.winner = p.id;
                            this.roundEnds = this.time + ROUND_PAUSE;
                        }
                    }
                }
            }
            if (this.gems.length < this.wantedGems()) {
                this.gemTimer -= dt;
                if (this.gemTimer <= 0) {
                    this.spawnGem();
                    this.gemTimer = 0.4 + Math.random() * 0.8;
                }
            }
        } else if (this.time >= this.roundEnds) {
            this.winner = -1;
            for (const p of players) p.score = 0;
            this.gems = [];
            for (let i = 0; i < this.wantedGems(); i++) this.spawnGem();
        }
    }

    steal(from, to) {
        if (to.stun > 0) return;
        to.stun = STUN_TIME;
        if (to.score > 0) {
            to.score--;
            from.score++;
            if (from.score >= WIN && this.winner < 0) {
                this.winner = from.id;
                this.roundEnds = this.time + ROUND_PAUSE;
            }
        }
    }

    stateFrame() {
        const p = [];
        for (const pl of this.players.values()) {
            const flags = (pl.dashT > 0 ? 1 : 0) | (pl.stun > 0 ? 2 : 0);
            p.push([pl.id, Math.round(pl.x), Math.round(pl.y), pl.score, flags]);
        }
        return {
            t: 's',
            k: ++this.seq,
            ms: Math.round(performance.now()),
            p,
            g: this.gems.map((g) => [g.id, g.x, g.y]),
            w: this.winner,
        };
    }

    rosterFrame() {
        return { t: 'r', g: this.gameName, p: [...this.players.values()].map((pl) => [pl.id, pl.name, pl.color]) };
    }

    broadcast(frame) {
        for (const [conn, id] of this.conns) if (id !== null) send(conn, frame);
    }

    // The state goes once on the topic while any guest was told it, and on the stream
    // of every player who does not take it from the topic, except one whose stream
    // still holds what was sent before (bufferedAmount > 0: no credit for it yet): it
    // is kept for the `drain` (accept()), replacing the one kept before. Without credit
    // nothing is ever held.
    broadcastState() {
        const frame = this.stateFrame();
        // (Not while the WebSocket is down: the states would wait in this page, stale.)
        if (this.topic && this.offered.size > 0 && !this.gw.disconnected) {
            if (publishJSON(this.gw, this.topic, frame)) this.stats.published++;
            else this.viaTopic.clear(); // cannot publish: every stream gets the states again
        }
        for (const [conn, id] of this.conns) {
            if (id === null || this.viaTopic.has(conn)) continue;
            if (conn.bufferedAmount > 0) this.unsent.set(conn, frame);
            else {
                send(conn, frame);
                this.stats.streamStates++;
            }
        }
    }

    rosterChanged() {
        this.broadcast(this.rosterFrame());
        renderPlayers(true);
        this.announce();
    }

    accept(conn) {
        this.conns.set(conn, null);
        const hello = setTimeout(() => {
            if (this.conns.get(conn) === null) conn.close();
        }, 10_000);
        conn.addEventListener('data', (e) => {
            if (e.detail.length > MAX_FRAME) return;
            this.onFrame(conn, parseFrame(e.detail));
        });
        conn.addEventListener('drain', () => {
            const frame = this.unsent.get(conn);
            if (!frame) return;
            this.unsent.delete(conn);
            send(conn, frame);
        });
        conn.addEventListener('close', () => {
            clearTimeout(hello);
            this.drop(conn);
        });
    }

    onFrame(conn, frame) {
        if (!frame || !this.conns.has(conn)) return;
        const id = this.conns.get(conn);
        if (id === null) {
            if (frame.t !== 'h') return;
            if (this.players.size >= MAX_PLAYERS) {
                send(conn, { t: 'x', why: `The game is full (${MAX_PLAYERS} players).` });
                setTimeout(() => conn.close(), 200);
                return;
            }
            const player = this.addPlayer(cleanName(frame.n), cleanColor(frame.c), conn);
            this.conns.set(conn, player.id);
            const topic = this.topic && frame.s === 1 ? this.topic : undefined;
            if (topic) this.offered.add(conn);
            send(conn, { t: 'w', you: player.id, win: WIN, s: topic });
            this.rosterChanged();
            send(conn, this.stateFrame());
            toast(`${player.name} joined`);
        } else if (frame.t === 'i') {
            this.setInput(id, frame.x, frame.y, frame.d);
        } else if (frame.t === 'p') {
            if (frame.on === true && this.offered.has(conn)) {
                this.viaTopic.add(conn);
                this.unsent.delete(conn);
            } else this.viaTopic.delete(conn);
        } else if (frame.t === 'b') {
            conn.close();
        }
    }

    drop(conn) {
        this.unsent.delete(conn);
        this.offered.delete(conn);
        this.viaTopic.delete(conn);
        const id = this.conns.get(conn);
        if (!this.conns.delete(conn) || id === null) return;
        const player = this.players.get(id);
        this.players.delete(id);
        if (this.winner === id) this.winner = -1;
        if (player) toast(`${player.name} left`);
        this.rosterChanged();
    }

    end(why) {
        this.stopTicker();
        clearInterval(this.announcer);
        this.announce(true);
        this.offered.clear();
        this.viaTopic.clear();
        for (const conn of [...this.conns.keys()]) {
            send(conn, { t: 'x', why });
            conn.close();
        }
        this.conns.clear();
        this.unsent.clear();
    }

    /** What the page draws and window.gameDebug shows. */
    view(alpha = 1) {
        const players = [...this.players.values()].map((p) => ({
            id: p.id,
            name: p.name,
            color: p.color,
            x: p.px + (p.x - p.px) * alpha,
            y: p.py + (p.y - p.py) * alpha,
            score: p.score,
            flags: (p.dashT > 0 ? 1 : 0) | (p.stun > 0 ? 2 : 0),
            host: p.id === this.selfId,
        }));
        return { seq: this.seq, players, gems: this.gems.map((g) => ({ id: g.id, x: g.x, y: g.y })), winner: this.winner };
    }
}

// ------------------------------------------------------------------ a guest's game

class Guest {
    constructor(gw, conn, game) {
        this.gw = gw;
        this.conn = conn;
        this.game = game;
        // States from the game's topic (see the top of this file).
        this.topic = null; // the Topic, once subscribed
        this.viaTopic = false; // the host was told to send no state on the stream
        this.lastTopicState = 0; // performance.now() of the last state from the topic
        this.watchdog = null;
        this.ended = false;
        this.stats = { stream: 0, topic: 0, missed: 0 }; // states received each way, topic events missed
        this.you = null;
        this.win = WIN;
        this.roster = new Map(); // id -> {name, color}
        this.gameName = game.name;
        this.snaps = []; // states, oldest first, each with its host time
        this.offset = null; // local clock minus host clock, as low as seen (latency drifts up slowly)
        this.latest = null;
        this.why = null;
    }

    onFrame(frame) {
        if (!frame) return;
        switch (frame.t) {
            case 'w':
                this.you = Number(frame.you);
                if (Number.isInteger(frame.win)) this.win = frame.win;
                if (typeof frame.s === 'string' && frame.s.startsWith(STATE_TOPIC_PREFIX) && hasPubsub(this.gw)) this.follow(frame.s);
                break;
            case 'r':
                if (!Array.isArray(frame.p)) return;
                this.roster = new Map(
                    frame.p
                        .filter((e) => Array.isArray(e))
                        .map(([id, name, color]) => [Number(id), { name: cleanName(name), color: cleanColor(color) ?? COLORS[0] }]),
                );
                if (typeof frame.g === 'string') this.gameName = cleanName(frame.g, this.game.name);
                renderPlayers(true);
                render();
                break;
            case 's':
                this.stats.stream++;
                this.onState(frame);
                break;
            case 'x':
                this.why = typeof frame.why === 'string' ? frame.why.slice(0, 200) : null;
                break;
            default:
                break;
        }
    }

    // Subscribes to the game's state topic; states come both ways until the first one
    // from the topic, then from the topic only (the host is told), while it delivers.
    async follow(name) {
        let topic;
        try {
            topic = await this.gw.subscribe(name);
        } catch {
            return; // refused (too many topics, say): the states keep coming on the stream
        }
        if (this.ended) {
            topic.close();
            return;
        }
        this.topic = topic;
        rememberGuestTopic(name);
        topic.addEventListener('message', (e) => this.onTopicMessage(e.detail));
        topic.addEventListener('missed', (e) => (this.stats.missed += e.detail.count));
        this.watchdog = setInterval(() => {
            if (this.viaTopic && performance.now() - this.lastTopicState > TOPIC_SILENCE) this.useTopic(false);
        }, 250);
    }

    onTopicMessage({ from, data }) {
        if (this.ended || from !== this.game.peerID || data.length > MAX_FRAME * 64) return; // only the host's daemon publishes states
        const frame = parseFrame(data);
        if (frame?.t !== 's') return;
        this.stats.topic++;
        this.lastTopicState = performance.now();
        this.onState(frame);
        if (!this.viaTopic) this.useTopic(true);
    }

    useTopic(on) {
        this.viaTopic = on;
        send(this.conn, { t: 'p', on });
    }

    /** The game is over for this page: no more states from the topic. */
    end() {
        if (this.ended) return;
        this.ended = true;
        clearInterval(this.watchdog);
        if (this.topic) {
            this.topic.close();
            rememberGuestTopic(null);
        }
    }

    onState(frame) {
        if (!Array.isArray(frame.p) || !Array.isArray(frame.g)) return;
        const now = performance.now();
        const ms = Number(frame.ms) || 0;
        const sample = now - ms;
        if (this.offset === null || sample < this.offset) this.offset = sample;
        else this.offset += (sample - this.offset) * 0.002;
        const players = new Map();
        for (const e of frame.p) {
            if (!Array.isArray(e)) continue;
            const [id, x, y, score, flags] = e.map(Number);
            players.set(id, { x, y, score, flags });
        }
        const gems = frame.g.filter((e) => Array.isArray(e)).map(([id, x, y]) => ({ id: Number(id), x: Number(x), y: Number(y) }));
        const snap = { k: Number(frame.k), ms, players, gems, winner: Number(frame.w ?? -1) };
        if (this.latest && snap.k <= this.latest.k) return;
        this.latest = snap;
        this.snaps.push(snap);
        while (this.snaps.length > 30) this.snaps.shift();
    }

    /** The interpolated state to draw now (null before the first state). */
    view() {
        if (!this.latest) return null;
        const t = performance.now() - this.offset - INTERP_DELAY;
        let a = this.snaps[0];
        let b = this.latest;
        for (let i = this.snaps.length - 1; i >= 0; i--) {
            if (this.snaps[i].ms <= t) {
                a = this.snaps[i];
                b = this.snaps[i + 1] ?? this.snaps[i];
                break;
            }
        }
        const span = b.ms - a.ms;
        const f = span > 0 ? clamp((t - a.ms) / span, 0, 1) : 1;
        const players = [];
        for (const [id, pb] of b.players) {
            const pa = a.players.get(id) ?? pb;
            const who = this.roster.get(id) ?? { name: '…', color: '#adb5bd' };
            players.push({
                id,
                name: who.name,
                color: who.color,
                x: pa.x + (pb.x - pa.x) * f,
                y: pa.y + (pb.y - pa.y) * f,
                score: b.players.get(id).score,
                flags: pb.flags,
                host: id === 0,
            });
        }
        return { seq: b.k, players, gems: b.gems, winner: b.winner };
    }

    /** The newest state as received, with names: what window.gameDebug shows. */
    latestView() {
        if (!this.latest) return null;
        const players = [...this.latest.players].map(([id, p]) => {
            const who = this.roster.get(id) ?? { name: '…', color: '#adb5bd' };
            return { id, name: who.name, color: who.color, x: p.x, y: p.y, score: p.score, flags: p.flags, host: id === 0 };
        });
        return { seq: this.latest.k, players, gems: this.latest.gems, winner: this.latest.winner };
    }
}

// ------------------------------------------------------------------ hosting, joining, leaving

// The game this page hosts, kept for a reload (null: none).
function rememberHosting(game) {
    try {
        if (game) sessionStorage.setItem(HOSTING_STORAGE, JSON.stringify(game));
        else sessionStorage.removeItem(HOSTING_STORAGE);
    } catch {
        /* no storage: a reload ends the game */
    }
}

// The state topic this page follows as a guest, kept so that a reloaded page, whose
// session (taken back) still subscribes to it, unsubscribes.
function rememberGuestTopic(name) {
    try {
        if (name) sessionStorage.setItem(GUEST_TOPIC_STORAGE, name);
        else sessionStorage.removeItem(GUEST_TOPIC_STORAGE);
    } catch {
        /* no storage */
    }
}

function forgetStaleGuestTopic(gw) {
    let name = null;
    try {
        name = sessionStorage.getItem(GUEST_TOPIC_STORAGE);
    } catch {
        return;
    }
    if (!name || app.guest?.topic?.name === name) return;
    rememberGuestTopic(null);
    if (hasPubsub(gw)) gw.subscribe(name).then((topic) => topic.close(), () => {});
}

function rememberedHosting() {
    try {
        const game = JSON.parse(sessionStorage.getItem(HOSTING_STORAGE) ?? 'null');
        return typeof game?.protocol === 'string' && typeof game.name === 'string' ? game : null;
    } catch {
        return null;
    }
}

// A reloaded page's gateway took its session back with the session's listeners: the
// game this page hosted is hosted again (its listen() resolves at once); any other
// game listener is stopped.
function reclaimGames(gw) {
    const hosted = rememberedHosting();
    for (const protocol of gw.listening) {
        if (!protocol.startsWith(GAME_PREFIX)) continue;
        if (hosted?.protocol === protocol && app.mode === 'lobby') hostGame(hosted);
        else gw.stop(protocol).catch(() => {});
    }
    if (hosted && !gw.listening.has(hosted.protocol)) rememberHosting(null);
}

async function hostGame(reclaim = null) {
    const gw = app.gw;
    if (!gw || app.mode !== 'lobby' || app.busy) return;
    const name = myName();
    const gameName = reclaim?.name ?? cleanName(ui.gameName.value, `${name}'s arena`).slice(0, MAX_GAME_NAME);
    const protocol = reclaim?.protocol ?? gameProtocol(gameName);
    app.busy = true;
    render();
    setStatus('Opening the game…');
    try {
        await gw.listen(protocol, { framed: true });
    } catch (err) {
        app.busy = false;
        render();
        setStatus(`Could not host: ${err.message}`, 'error');
        return;
    }
    app.busy = false;
    app.host = new Host(gw, protocol, gameName, name, app.color);
    app.game = { protocol, name: gameName, peerID: gw.peerID, local: true };
    rememberHosting({ protocol, name: gameName });
    enterGame('hosting');
    setStatus(`Hosting “${gameName}”. Players on this daemon and on connected daemons see it in their lobby.`);
}

async function joinGame(game) {
    const gw = app.gw;
    if (!gw || app.mode !== 'lobby' || app.busy) return;
    app.busy = true;
    render();
    setStatus(`Joining “${game.name}”…`);
    let conn;
    try {
        conn = await gw.connect(game.peerID, game.protocol, { framed: true });
    } catch (err) {
        app.busy = false;
        render();
        setStatus(`Could not join “${game.name}”: ${err.message}`, 'error');
        return;
    }
    app.busy = false;
    const guest = new Guest(gw, conn, game);
    app.guest = guest;
    app.game = game;
    conn.addEventListener('data', (e) => guest.onFrame(parseFrame(e.detail)));
    conn.addEventListener('drain', () => {
        if (app.guest === guest) pushInput(true);
    });
    conn.addEventListener('close', (e) => {
        if (app.guest !== guest) return;
        const gone = e.detail === 'gateway closed' || String(e.detail).startsWith('session lost');
        const why = guest.why ?? (gone ? 'Lost the connection to the daemon.' : 'The game ended.');
        backToLobby(why);
    });
    send(conn, { t: 'h', n: myName(), c: app.color, s: hasPubsub(gw) ? 1 : undefined });
    input.dashes = 0;
    input.sent = '';
    enterGame('playing');
    pushInput(true);
    setStatus(`Playing “${game.name}”${game.local ? ' on this daemon' : ` hosted on ${shortPeer(game.peerID)}`}.`);
}

function enterGame(mode) {
    app.mode = mode;
    resetInput();
    effects.clear();
    render();
    renderPlayers(true);
    renderGames();
    ui.canvas.focus({ preventScroll: true });
    if (window.matchMedia('(max-width: 820px)').matches) {
        ui.canvas.scrollIntoView({ block: 'center', behavior: 'smooth' });
    }
}

async function leaveGame() {
    if (app.host) {
        const host = app.host;
        const protocol = host.protocol;
        app.host = null;
        host.end('The host ended the game.');
        rememberHosting(null);
        backToLobby('You ended your game.');
        try {
            await app.gw?.stop(protocol);
        } catch {
            /* the gateway is gone: nothing listens any more */
        }
    } else if (app.guest) {
        const guest = app.guest;
        app.guest = null;
        guest.end();
        send(guest.conn, { t: 'b' });
        guest.conn.close();
        backToLobby('You left the game.');
    }
}

function backToLobby(why) {
    app.host?.end('The host ended the game.');
    app.guest?.end();
    if (app.host) rememberHosting(null);
    app.host = null;
    app.guest = null;
    app.game = null;
    app.mode = 'lobby';
    resetInput();
    setStatus(why);
    render();
    renderPlayers(true);
    renderGames();
}

// ------------------------------------------------------------------ the lobby

function listGames() {
    const gw = app.gw;
    if (!gw || app.presence !== 'live') return [];
    const seen = new Set();
    const games = [];
    for (const found of gw.findProtocols(GAME_PREFIX)) {
        const name = gameNameOf(found.protocol);
        if (name === null || seen.has(found.protocol)) continue;
        seen.add(found.protocol);
        const count = app.counts.get(found.protocol);
        const players = count && performance.now() - count.at < ANNOUNCE_TTL ? count : null;
        games.push({ ...found, name, mine: gw.listening.has(found.protocol), players: players?.n ?? null, full: Boolean(players && players.n >= players.m) });
    }
    games.sort((a, b) => Number(b.mine) - Number(a.mine) || Number(b.local) - Number(a.local) || a.name.localeCompare(b.name));
    return games;
}

function renderGames() {
    const games = listGames();
    const items = games.map((game) => {
        const li = document.createElement('li');
        li.className = 'game';
        li.dataset.protocol = game.protocol;
        li.dataset.peer = game.peerID;
        if (game.mine) li.classList.add('mine');
        const info = document.createElement('div');
        info.className = 'game-info';
        const title = document.createElement('span');
        title.className = 'game-name';
        title.textContent = game.name;
        const where = document.createElement('span');
        where.className = 'game-where';
        where.textContent = game.mine ? 'your game' : game.local ? 'on this daemon' : `on peer ${shortPeer(game.peerID)}`;
        where.title = `${game.peerID}\n${game.protocol}`;
        info.append(title, where);
        if (game.players !== null) {
            const count = document.createElement('span');
            count.className = 'game-players';
            count.textContent = game.full ? 'full' : `${game.players}/${MAX_PLAYERS} playing`;
            where.append(' · ', count);
        }
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'join';
        const current = app.game?.protocol === game.protocol;
        button.textContent = game.mine ? 'Hosting' : current ? 'Playing' : game.full ? 'Full' : 'Join';
        button.disabled = game.mine || game.full || app.mode !== 'lobby' || app.busy || !app.gw;
        button.addEventListener('click', () => joinGame(game));
        li.append(info, button);
        return li;
    });
    ui.games.replaceChildren(...items);
    ui.gameCount.textContent = games.length ? String(games.length) : '';
    ui.gamesEmpty.hidden = games.length > 0;
    ui.gamesEmpty.textContent =
        app.presence === 'unsupported'
            ? 'This daemon cannot list games (it has no presence support). Update libp2p-websocket.'
            : app.presence === 'waiting'
                ? 'Looking for games…'
                : 'No open games yet. Host one — players on this daemon and on connected daemons will see it here.';
}

let gamesQueued = false;
function queueGames() {
    if (gamesQueued) return;
    gamesQueued = true;
    queueMicrotask(() => {
        gamesQueued = false;
        renderGames();
    });
}

let playersKey = '';
function renderPlayers(force = false) {
    const view = currentView();
    const list = view ? [...view.players].sort((a, b) => b.score - a.score || a.id - b.id) : [];
    const you = app.host ? app.host.selfId : app.guest?.you;
    const key = list.map((p) => `${p.id}:${p.name}:${p.color}:${p.score}`).join('|') + `/${you}/${view?.winner}`;
    if (!force && key === playersKey) return;
    playersKey = key;
    ui.players.replaceChildren(
        ...list.map((p, i) => {
            const li = document.createElement('li');
            li.className = 'player';
            li.dataset.id = String(p.id);
            li.style.setProperty('--c', p.color);
            if (p.id === you) li.classList.add('you');
            if (view.winner === p.id) li.classList.add('winner');
            const rank = document.createElement('span');
            rank.className = 'rank';
            rank.textContent = String(i + 1);
            const dot = document.createElement('span');
            dot.className = 'dot';
            const name = document.createElement('span');
            name.className = 'player-name';
            name.textContent = p.name;
            const tags = document.createElement('span');
            tags.className = 'tags';
            if (p.host) tags.append(tag('host'));
            if (p.id === you) tags.append(tag('you'));
            const score = document.createElement('span');
            score.className = 'score';
            score.textContent = String(p.score);
            const bar = document.createElement('span');
            bar.className = 'bar';
            bar.style.setProperty('--p', String(Math.min(1, p.score / WIN)));
            li.append(rank, dot, name, tags, score, bar);
            return li;
        }),
    );
}

function tag(text) {
    const t = document.createElement('span');
    t.className = 'tag';
    t.textContent = text;
    return t;
}

function render() {
    const { mode } = app;
    const connected = Boolean(app.gw && !app.gw.closed);
    ui.body.dataset.mode = mode;
    ui.body.dataset.presence = app.presence; // waiting | live | unsupported
    ui.host.disabled = !connected || mode !== 'lobby' || app.busy;
    ui.host.textContent = app.busy && mode === 'lobby' ? 'Opening…' : 'Host game';
    ui.leave.disabled = mode === 'lobby';
    ui.leave.textContent = mode === 'hosting' ? 'End game' : 'Leave';
    ui.name.disabled = mode !== 'lobby';
    ui.gameName.disabled = mode !== 'lobby';
    for (const b of ui.colors.querySelectorAll('button')) {
        b.disabled = mode !== 'lobby';
        b.setAttribute('aria-checked', String(b.dataset.color === app.color));
    }
    const name = app.host?.gameName ?? app.guest?.gameName ?? null;
    ui.title.textContent = mode === 'lobby' ? 'Gem Rush' : name;
    renderGames();
}

// ------------------------------------------------------------------ drawing

const effects = {
    items: [], // {kind, x, y, color, born, text}
    lastGems: new Map(),
    lastScores: new Map(),
    trails: new Map(), // id -> [{x, y}]
    clear() {
        this.items = [];
        this.lastGems = new Map();
        this.lastScores = new Map();
        this.trails = new Map();
    },
};

function currentView(alpha) {
    if (app.host) return app.host.view(alpha);
    if (app.guest) return app.guest.view();
    return null;
}

function resizeCanvas() {
    const rect = ui.canvas.getBoundingClientRect();
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    const w = Math.max(1, Math.round(rect.width * dpr));
    const h = Math.max(1, Math.round(rect.height * dpr));
    if (ui.canvas.width !== w || ui.canvas.height !== h) {
        ui.canvas.width = w;
        ui.canvas.height = h;
    }
}

// Pictures drawn once per colour and canvas size and then copied: gradients drawn
// every frame are what costs most in a browser without a GPU, and the host's page
// must keep time for everyone.
const sprites = new Map();

function sprite(key, w, h, draw) {
    const px = ctx.getTransform().a; // device pixels per world unit
    const id = `${key}@${px.toFixed(3)}`;
    let canvas = sprites.get(id);
    if (!canvas) {
        if (sprites.size > 64) sprites.clear();
        canvas = document.createElement('canvas');
        canvas.width = Math.max(1, Math.ceil(w * px));
        canvas.height = Math.max(1, Math.ceil(h * px));
        const g = canvas.getContext('2d');
        g.scale(canvas.width / w, canvas.height / h);
        draw(g);
        sprites.set(id, canvas);
    }
    return canvas;
}

function drawArena(t) {
    const floor = sprite('arena', W, H, (g) => {
        const fill = g.createLinearGradient(0, 0, W, H);
        fill.addColorStop(0, '#0d1226');
        fill.addColorStop(1, '#141a35');
        g.fillStyle = fill;
        g.fillRect(0, 0, W, H);
        g.strokeStyle = 'rgba(120, 140, 255, 0.07)';
        g.lineWidth = 1;
        g.beginPath();
        for (let x = 40; x < W; x += 40) {
            g.moveTo(x, 0);
            g.lineTo(x, H);
        }
        for (let y = 40; y < H; y += 40) {
            g.moveTo(0, y);
            g.lineTo(W, y);
        }
        g.stroke();
    });
    ctx.drawImage(floor, 0, 0, W, H);
    const pulse = 0.35 + 0.1 * Math.sin(t / 900);
    ctx.strokeStyle = `rgba(130, 150, 255, ${pulse.toFixed(3)})`;
    ctx.lineWidth = 4;
    ctx.strokeRect(2, 2, W - 4, H - 4);
}

const GEM_BOX = GEM_R * 6;

function drawGemSprite(g) {
    const c = GEM_BOX / 2;
    const s = GEM_R;
    const glow = g.createRadialGradient(c, c, 2, c, c, s * 2.8);
    glow.addColorStop(0, 'rgba(255, 236, 153, 0.55)');
    glow.addColorStop(1, 'rgba(255, 236, 153, 0)');
    g.fillStyle = glow;
    g.fillRect(0, 0, GEM_BOX, GEM_BOX);
    g.beginPath();
    g.moveTo(c, c - s * 1.2);
    g.lineTo(c + s, c);
    g.lineTo(c, c + s * 1.2);
    g.lineTo(c - s, c);
    g.closePath();
    const fill = g.createLinearGradient(c - s, c - s, c + s, c + s);
    fill.addColorStop(0, '#fff3bf');
    fill.addColorStop(0.5, '#ffd43b');
    fill.addColorStop(1, '#f59f00');
    g.fillStyle = fill;
    g.fill();
    g.strokeStyle = 'rgba(255, 255, 255, 0.8)';
    g.lineWidth = 1.5;
    g.stroke();
}

function drawGem(x, y, t, id) {
    const image = sprite('gem', GEM_BOX, GEM_BOX, drawGemSprite);
    const pulse = 1 + 0.08 * Math.sin(t / 200 + id);
    ctx.save();
    ctx.translate(x, y);
    ctx.rotate(Math.sin(t / 500 + id) * 0.35);
    ctx.scale(pulse, pulse);
    ctx.drawImage(image, -GEM_BOX / 2, -GEM_BOX / 2, GEM_BOX, GEM_BOX);
    ctx.restore();
}

// The size of one world unit in CSS pixels.
const display = { scale: 1 };

function drawPlayer(p, you, t) {
    const trail = effects.trails.get(p.id) ?? [];
    const last = trail[trail.length - 1];
    if (!last || Math.hypot(last.x - p.x, last.y - p.y) > 2) trail.push({ x: p.x, y: p.y });
    while (trail.length > 12) trail.shift();
    effects.trails.set(p.id, trail);
    const prev = trail[trail.length - 2] ?? p;
    let fx = p.x - prev.x;
    let fy = p.y - prev.y;
    const flen = Math.hypot(fx, fy);
    if (flen > 0.5) {
        fx /= flen;
        fy /= flen;
    } else {
        fx = 0;
        fy = 0.3;
    }
    // trail
    for (let i = 0; i < trail.length - 1; i++) {
        const a = (i + 1) / trail.length;
        ctx.globalAlpha = a * ((p.flags & 1) ? 0.55 : 0.18);
        ctx.fillStyle = p.color;
        ctx.beginPath();
        ctx.arc(trail[i].x, trail[i].y, R * (0.35 + 0.55 * a), 0, Math.PI * 2);
        ctx.fill();
    }
    ctx.globalAlpha = 1;
    const stunned = p.flags & 2;
    const wobble = stunned ? Math.sin(t / 40) * 2 : 0;
    const x = p.x + wobble;
    const y = p.y;
    // shadow, body, rim
    ctx.fillStyle = 'rgba(0, 0, 0, 0.35)';
    ctx.beginPath();
    ctx.ellipse(x + 3, y + R * 0.8, R * 0.9, R * 0.35, 0, 0, Math.PI * 2);
    ctx.fill();
    const body = sprite(`body${p.color}`, 2 * R, 2 * R, (g) => {
        const fill = g.createRadialGradient(R * 0.6, R * 0.5, 2, R, R, R);
        fill.addColorStop(0, '#ffffff');
        fill.addColorStop(0.25, p.color);
        fill.addColorStop(1, shade(p.color, -0.35));
        g.fillStyle = fill;
        g.beginPath();
        g.arc(R, R, R, 0, Math.PI * 2);
        g.fill();
    });
    ctx.drawImage(body, x - R, y - R, 2 * R, 2 * R);
    ctx.beginPath();
    ctx.arc(x, y, R, 0, Math.PI * 2);
    ctx.lineWidth = you ? 3 : 2;
    ctx.strokeStyle = you ? '#ffffff' : 'rgba(255, 255, 255, 0.55)';
    ctx.stroke();
    if (p.flags & 1) {
        ctx.strokeStyle = p.color;
        ctx.globalAlpha = 0.6;
        ctx.lineWidth = 3;
        ctx.beginPath();
        ctx.arc(x, y, R + 6, 0, Math.PI * 2);
        ctx.stroke();
        ctx.globalAlpha = 1;
    }
    // eyes, looking where it goes
    for (const side of [-1, 1]) {
        const ex = x + fx * 6 + -fy * side * 6;
        const ey = y + fy * 6 + fx * side * 6 - 2;
        ctx.fillStyle = '#fff';
        ctx.beginPath();
        ctx.arc(ex, ey, 4.6, 0, Math.PI * 2);
        ctx.fill();
        ctx.fillStyle = '#1b1f3a';
        ctx.beginPath();
        if (stunned) {
            ctx.arc(ex, ey, 1.6, 0, Math.PI * 2);
        } else {
            ctx.arc(ex + fx * 1.8, ey + fy * 1.8, 2.4, 0, Math.PI * 2);
        }
        ctx.fill();
    }
    if (stunned) {
        ctx.fillStyle = '#ffe066';
        for (let i = 0; i < 3; i++) {
            const a = t / 180 + (i * Math.PI * 2) / 3;
            ctx.beginPath();
            ctx.arc(x + Math.cos(a) * (R + 4), y - R - 4 + Math.sin(a) * 4, 2.5, 0, Math.PI * 2);
            ctx.fill();
        }
    }
    // name tag, at least 10 CSS pixels high whatever the canvas size
    const size = Math.max(14, 10 / display.scale);
    ctx.font = `600 ${size}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    const label = p.name;
    const tw = ctx.measureText(label).width + size * 0.9;
    const ty = y - R - 8;
    ctx.fillStyle = 'rgba(8, 10, 24, 0.6)';
    roundRect(x - tw / 2, ty - size * 1.35, tw, size * 1.45, size * 0.7);
    ctx.fill();
    ctx.fillStyle = you ? '#ffffff' : 'rgba(255, 255, 255, 0.85)';
    ctx.fillText(label, x, ty);
}

function roundRect(x, y, w, h, r) {
    ctx.beginPath();
    ctx.moveTo(x + r, y);
    ctx.arcTo(x + w, y, x + w, y + h, r);
    ctx.arcTo(x + w, y + h, x, y + h, r);
    ctx.arcTo(x, y + h, x, y, r);
    ctx.arcTo(x, y, x + w, y, r);
    ctx.closePath();
}

function shade(hex, amount) {
    const n = parseInt(hex.slice(1), 16);
    const f = (c) => clamp(Math.round(c + (amount < 0 ? c * amount : (255 - c) * amount)), 0, 255);
    const r = f((n >> 16) & 255);
    const g = f((n >> 8) & 255);
    const b = f(n & 255);
    return `rgb(${r}, ${g}, ${b})`;
}

// Effects a guest works out from the states: gems that vanished burst, scores that rose
// float a "+1".
function noticeChanges(view, t) {
    const gems = new Map(view.gems.map((g) => [g.id, g]));
    for (const [id, g] of effects.lastGems) {
        if (!gems.has(id)) effects.items.push({ kind: 'burst', x: g.x, y: g.y, color: '#ffd43b', born: t });
    }
    effects.lastGems = gems;
    for (const p of view.players) {
        const before = effects.lastScores.get(p.id);
        if (before !== undefined && p.score > before) {
            effects.items.push({ kind: 'text', x: p.x, y: p.y - R - 30, color: p.color, born: t, text: `+${p.score - before}` });
        }
        effects.lastScores.set(p.id, p.score);
    }
}

function drawEffects(t) {
    effects.items = effects.items.filter((e) => t - e.born < 700);
    for (const e of effects.items) {
        const age = (t - e.born) / 700;
        ctx.globalAlpha = 1 - age;
        if (e.kind === 'burst') {
            ctx.fillStyle = e.color;
            for (let i = 0; i < 10; i++) {
                const a = (i / 10) * Math.PI * 2;
                const d = 8 + age * 42;
                ctx.beginPath();
                ctx.arc(e.x + Math.cos(a) * d, e.y + Math.sin(a) * d, 3 * (1 - age) + 1, 0, Math.PI * 2);
                ctx.fill();
            }
        } else {
            ctx.fillStyle = e.color;
            ctx.font = '700 18px system-ui, sans-serif';
            ctx.textAlign = 'center';
            ctx.fillText(e.text, e.x, e.y - age * 24);
        }
    }
    ctx.globalAlpha = 1;
}

function drawBanner(title, subtitle) {
    ctx.fillStyle = 'rgba(8, 10, 24, 0.55)';
    ctx.fillRect(0, H / 2 - 70, W, 140);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = '#fff';
    ctx.font = '800 44px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.fillText(title, W / 2, H / 2 - 14);
    ctx.fillStyle = 'rgba(255, 255, 255, 0.75)';
    ctx.font = '500 18px system-ui, sans-serif';
    ctx.fillText(subtitle, W / 2, H / 2 + 30);
}

function drawLobby(t) {
    drawArena(t);
    for (let i = 0; i < 7; i++) {
        const x = W / 2 + Math.cos(t / 2400 + i * 0.9) * (200 + 60 * Math.sin(i * 2.1));
        const y = H / 2 + Math.sin(t / 2000 + i * 1.3) * (140 + 40 * Math.cos(i));
        drawGem(x, y, t, i);
    }
    drawBanner('Gem Rush', 'Host a game or join one from the lobby');
}

function frame(t) {
    resizeCanvas();
    const scale = ui.canvas.width / W;
    ctx.setTransform(scale, 0, 0, ui.canvas.height / H, 0, 0);
    display.scale = ui.canvas.getBoundingClientRect().width / W || 1;
    const alpha = app.host ? clamp(app.host.acc / STEP, 0, 1) : 1;
    const view = currentView(alpha);
    if (!view) {
        if (app.mode === 'lobby') drawLobby(t);
        else {
            drawArena(t);
            drawBanner('Joining…', 'waiting for the host');
        }
    } else {
        drawArena(t);
        noticeChanges(view, t);
        for (const g of view.gems) drawGem(g.x, g.y, t, g.id);
        const you = app.host ? app.host.selfId : app.guest?.you;
        const players = [...view.players].sort((a, b) => (a.id === you) - (b.id === you) || a.y - b.y);
        for (const p of players) drawPlayer(p, p.id === you, t);
        drawEffects(t);
        if (view.winner >= 0) {
            const w = view.players.find((p) => p.id === view.winner);
            drawBanner(`${w ? w.name : 'Someone'} wins!`, 'next round in a moment');
        }
        if (input.stick) {
            const s = input.stick;
            ctx.strokeStyle = 'rgba(255, 255, 255, 0.35)';
            ctx.lineWidth = 3;
            ctx.beginPath();
            ctx.arc(s.ox, s.oy, 60, 0, Math.PI * 2);
            ctx.stroke();
            ctx.fillStyle = 'rgba(255, 255, 255, 0.35)';
            ctx.beginPath();
            ctx.arc(s.ox + s.x * 60, s.oy + s.y * 60, 22, 0, Math.PI * 2);
            ctx.fill();
        }
        renderPlayers();
    }
    requestAnimationFrame(frame);
}

// A small notice in the status line for joins and leaves.
function toast(text) {
    setStatus(text);
}

// ------------------------------------------------------------------ the lobby topic

// Player counts announced by hosts on the lobby topic (see the top of this file).
function onLobbyMessage({ data }) {
    if (data.length > MAX_FRAME) return;
    const frame = parseFrame(data);
    if (!frame || typeof frame.p !== 'string' || gameNameOf(frame.p) === null) return;
    if (frame.t === 'e') app.counts.delete(frame.p);
    else if (frame.t === 'g' && Number.isInteger(frame.n) && Number.isInteger(frame.m)) {
        app.counts.set(frame.p, { n: clamp(frame.n, 0, 99), m: clamp(frame.m, 1, 99), at: performance.now() });
    } else return;
    queueGames();
}

async function joinLobbyTopic(gw) {
    if (!hasPubsub(gw)) return;
    try {
        const lobby = await gw.subscribe(LOBBY_TOPIC);
        if (app.gw !== gw) return;
        app.lobby = lobby;
        lobby.addEventListener('message', (e) => onLobbyMessage(e.detail));
    } catch {
        /* no lobby counts: the games are listed all the same */
    }
}

setInterval(() => {
    const now = performance.now();
    let stale = false;
    for (const [protocol, count] of app.counts) {
        if (now - count.at >= ANNOUNCE_TTL) {
            app.counts.delete(protocol);
            stale = true;
        }
    }
    if (stale) queueGames();
}, 2000);

// ------------------------------------------------------------------ the gateway

async function connectGateway(attempt = 0) {
    ui.daemon.textContent = 'connecting…';
    ui.daemon.dataset.state = 'connecting';
    let gw;
    try {
        gw = await Gateway.connect({ pubsub: PUBSUB });
    } catch (err) {
        const wait = Math.min(10, 2 ** attempt);
        ui.daemon.textContent = 'unreachable';
        ui.daemon.dataset.state = 'down';
        setStatus(`Cannot reach the libp2p-websocket daemon (${err.message}). Retrying in ${wait} s…`, 'error');
        setTimeout(() => connectGateway(attempt + 1), wait * 1000);
        return;
    }
    app.gw = gw;
    app.presence = 'waiting';
    ui.daemon.textContent = 'connected';
    ui.daemon.dataset.state = 'up';
    ui.peerId.textContent = shortPeer(gw.peerID);
    ui.peerId.title = `${gw.peerID}\n${gw.addresses.join('\n')}`;
    gw.addEventListener('identify', () => {
        ui.peerId.textContent = shortPeer(gw.peerID);
    });
    gw.addEventListener('presence', queueGames);
    gw.addEventListener('connection', (e) => {
        const conn = e.detail;
        if (app.host && conn.protocol === app.host.protocol) app.host.accept(conn);
        else conn.close();
    });
    gw.addEventListener('listenerclosed', (e) => {
        if (app.host && e.detail === app.host.protocol) backToLobby('The daemon closed your game.');
    });
    // A dropped WebSocket: the gateway takes the session back by itself; the game goes
    // on (what is sent meanwhile waits) and only the indicator says so.
    gw.addEventListener('disconnected', () => {
        ui.daemon.textContent = 'reconnecting…';
        ui.daemon.dataset.state = 'reconnecting';
    });
    gw.addEventListener('resumed', () => {
        ui.daemon.textContent = 'connected';
        ui.daemon.dataset.state = 'up';
    });
    gw.addEventListener('close', () => {
        app.gw = null;
        app.lobby = null;
        if (app.mode !== 'lobby') backToLobby('Lost the connection to the daemon.');
        ui.daemon.textContent = 'reconnecting…';
        ui.daemon.dataset.state = 'down';
        ui.peerId.textContent = '…';
        render();
        setTimeout(() => connectGateway(0), 1000);
    });
    render();
    reclaimGames(gw);
    forgetStaleGuestTopic(gw);
    joinLobbyTopic(gw);
    try {
        await gw.subscribe();
        app.presence = 'live';
        if (app.mode === 'lobby') setStatus('Ready. Host a game, or join one below.');
    } catch (err) {
        if (gw.closed) return;
        app.presence = 'unsupported';
        setStatus(`This daemon cannot list games: ${err.message}`, 'error');
    }
    render();
}

// ------------------------------------------------------------------ wiring

function pickColor(color) {
    app.color = color;
    try {
        localStorage.setItem(COLOR_STORAGE, color);
    } catch {
        /* no storage */
    }
    render();
}

function init() {
    let stored = {};
    try {
        stored = { name: localStorage.getItem(NAME_STORAGE), color: localStorage.getItem(COLOR_STORAGE) };
    } catch {
        /* no storage */
    }
    ui.name.value = stored.name ?? '';
    app.color = cleanColor(stored.color) ?? COLORS[Math.floor(Math.random() * COLORS.length)];
    ui.colors.replaceChildren(
        ...COLORS.map((color, i) => {
            const b = document.createElement('button');
            b.type = 'button';
            b.className = 'swatch';
            b.dataset.color = color;
            b.style.setProperty('--c', color);
            b.setAttribute('role', 'radio');
            b.setAttribute('aria-label', COLOR_NAMES[i]);
            b.title = COLOR_NAMES[i];
            b.addEventListener('click', () => pickColor(color));
            return b;
        }),
    );
    const syncPlaceholder = () => (ui.gameName.placeholder = `${myName()}'s arena`);
    ui.name.addEventListener('input', () => {
        syncPlaceholder();
        try {
            localStorage.setItem(NAME_STORAGE, ui.name.value.trim());
        } catch {
            /* no storage */
        }
    });
    syncPlaceholder();
    ui.host.addEventListener('click', () => hostGame());
    ui.leave.addEventListener('click', leaveGame);
    for (const field of [ui.name, ui.gameName]) {
        field.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' && !ui.host.disabled) hostGame();
        });
    }
    window.gameDebug = {
        /** The newest game state: {mode, you, game, seq, players: [{id, name, color, x, y, score, host}], gems, winner}. */
        state: () => {
            const view = app.host ? app.host.view() : app.guest?.latestView();
            return {
                mode: app.mode,
                you: app.host ? app.host.selfId : (app.guest?.you ?? null),
                game: app.game ? { name: app.game.name, protocol: app.game.protocol, peerID: app.game.peerID } : null,
                seq: view?.seq ?? 0,
                players: view?.players.map(({ id, name, color, x, y, score, host }) => ({ id, name, color, x, y, score, host })) ?? [],
                gems: view?.gems.map(({ x, y }) => ({ x, y })) ?? [],
                winner: view && view.winner >= 0 ? (view.players.find((p) => p.id === view.winner)?.name ?? null) : null,
            };
        },
        peerID: () => app.gw?.peerID ?? null,
        games: () => listGames(),
        /** How the states travel: {pubsub, lobby, host: {topic, offered, viaTopic, published, streamStates}, guest: {topic, viaTopic, stream, fromTopic, missed}}. */
        transport: () => ({
            pubsub: hasPubsub(app.gw),
            lobby: app.lobby?.subscribed ? app.lobby.name : null,
            host: app.host
                ? { topic: app.host.topic, offered: app.host.offered.size, viaTopic: app.host.viaTopic.size, ...app.host.stats }
                : null,
            guest: app.guest
                ? { topic: app.guest.topic?.name ?? null, viaTopic: app.guest.viaTopic, stream: app.guest.stats.stream, fromTopic: app.guest.stats.topic, missed: app.guest.stats.missed }
                : null,
        }),
        /** Joins a game by hand (what a .join button does), e.g. when presence is not there. */
        join: (peerID, protocol) =>
            joinGame({ peerID, protocol, name: gameNameOf(protocol) ?? protocol, local: peerID === app.gw?.peerID }),
    };
    render();
    requestAnimationFrame(frame);
    connectGateway();
}

init();
