// chat.js: a small group chat over libp2p, through the libp2p-websocket daemon.
//
// One browser hosts a room: it listens on CHAT_PROTOCOL and shows a connect string.
// Guests paste that string and connect. Guests only talk to the host; the host relays
// every guest's message to the other guests. Each libp2p message is one JSON frame:
//
//   {"type": "join",    "from": name}                  a member is in the room
//   {"type": "leave",   "from": name}                  a member left
//   {"type": "message", "from": name, "text": ..., "time": ms since the epoch}
//
// A host greets a new guest with one "join" per member already present, marked
// "present": true so the guest lists them without announcing them.
//
// Drops: with the daemon's resume extension the gateway takes a dropped session back by
// itself; the room goes on, messages sent meanwhile wait (shown faded) and go out on
// resume, and nothing is lost or doubled. A host page reloaded within the grace period
// takes its room's listener back and opens the room again (guests join anew).

import { Gateway, isConnectString, parseConnectString } from './protocol.js';

const CHAT_PROTOCOL = '/libp2p-websocket/chat/1.0.0';
const NAME_STORAGE = 'libp2p-websocket-chat-name';
const HOSTING_STORAGE = 'libp2p-websocket-chat-hosting'; // sessionStorage: '1' while hosting
const MAX_TEXT = 4000;
const MAX_NAME = 40;

const $ = (id) => document.getElementById(id);
const ui = {
    body: document.body,
    name: $('name'),
    host: $('host'),
    share: $('share'),
    connectString: $('connect-string'),
    copy: $('copy'),
    joinString: $('join-string'),
    join: $('join'),
    message: $('message'),
    send: $('send'),
    compose: $('compose'),
    messages: $('messages'),
    members: $('members'),
    peerId: $('peer-id'),
    natStatus: $('nat-status'),
    status: $('status'),
    roomTitle: $('room-title'),
    daemon: $('daemon-status'),
};

const state = {
    gateway: null,
    mode: 'idle', // idle | hosting | joining | guest | busy
    myName: '',
    guests: new Map(), // host: Connection -> name (null until its "join")
    hostConnection: null, // guest: the Connection to the host
    hostName: '', // guest: the host's name, once it greeted us
    members: [], // names shown in #members, [{name, role}]
};

// ------------------------------------------------------------------ small UI helpers

function setStatus(text, kind = 'info') {
    ui.status.textContent = text;
    ui.status.dataset.kind = kind;
}

function currentName() {
    const name = ui.name.value.trim().slice(0, MAX_NAME);
    return name || 'anonymous';
}

function timeText(ms) {
    const d = new Date(typeof ms === 'number' ? ms : Date.now());
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
}

function addMessage(from, text, time, mine = false) {
    const item = document.createElement('div');
    item.className = mine ? 'message mine' : 'message';
    const head = document.createElement('div');
    head.className = 'meta';
    const who = document.createElement('span');
    who.className = 'from';
    who.textContent = from;
    const when = document.createElement('time');
    when.textContent = timeText(time);
    if (typeof time === 'number') when.dateTime = new Date(time).toISOString();
    head.append(who, when);
    const body = document.createElement('div');
    body.className = 'text';
    body.textContent = text;
    item.append(head, body);
    ui.messages.append(item);
    scrollToEnd();
    return item;
}

function addNotice(text) {
    const item = document.createElement('div');
    item.className = 'notice';
    item.textContent = text;
    ui.messages.append(item);
    scrollToEnd();
}

function renderMembers() {
    ui.members.replaceChildren(
        ...state.members.map(({ name, role }) => {
            const li = document.createElement('li');
            li.textContent = name;
            if (role) {
                const badge = document.createElement('span');
                badge.className = 'role';
                badge.textContent = role;
                li.append(' ', badge);
            }
            return li;
        }),
    );
}

function setMembers(list) {
    state.members = list;
    renderMembers();
}

function removeMember(name) {
    const i = state.members.findIndex((m) => m.name === name && m.role !== 'you');
    if (i >= 0) state.members.splice(i, 1);
    renderMembers();
}

function render() {
    const connected = Boolean(state.gateway && !state.gateway.closed);
    const { mode } = state;
    const inRoom = mode === 'hosting' || mode === 'guest';
    ui.host.disabled = !connected || !(mode === 'idle' || mode === 'hosting');
    ui.host.textContent = mode === 'hosting' ? 'Close room' : 'Host a room';
    ui.join.disabled = !connected || !(mode === 'idle' || mode === 'guest');
    ui.join.textContent = mode === 'guest' ? 'Leave' : mode === 'joining' ? 'Joining…' : 'Join';
    ui.joinString.disabled = mode !== 'idle';
    ui.name.disabled = inRoom || mode === 'joining';
    ui.message.disabled = !inRoom;
    ui.send.disabled = !inRoom;
    ui.share.hidden = mode !== 'hosting';
    ui.body.dataset.mode = mode;
    ui.roomTitle.textContent =
        mode === 'hosting' ? `Your room (${state.guests.size} guest${state.guests.size === 1 ? '' : 's'})`
            : mode === 'guest' ? (state.hostName ? `${state.hostName}'s room` : 'In a room')
                : mode === 'joining' ? 'Joining…'
                    : 'Not in a room';
}

function parseFrame(bytes) {
    try {
        const value = JSON.parse(new TextDecoder().decode(bytes));
        return value && typeof value === 'object' && typeof value.type === 'string' ? value : null;
    } catch {
        return null;
    }
}

function cleanName(value) {
    return typeof value === 'string' && value.trim() ? value.trim().slice(0, MAX_NAME) : 'anonymous';
}

// ------------------------------------------------------------------ hosting

async function startHosting() {
    const gw = state.gateway;
    state.myName = currentName();
    state.mode = 'busy';
    render();
    setStatus('Opening the room…');
    try {
        await gw.listen(CHAT_PROTOCOL, { framed: true });
    } catch (err) {
        state.mode = 'idle';
        render();
        setStatus(
            `Could not host: ${err.message}. Is another tab of this daemon already hosting a room?`,
            'error',
        );
        return;
    }
    state.mode = 'hosting';
    rememberHosting(true);
    state.guests.clear();
    ui.connectString.textContent = gw.connectString;
    ui.connectString.value = gw.connectString;
    setMembers([{ name: state.myName, role: 'host · you' }]);
    ui.messages.replaceChildren();
    addNotice('Room open. Send the connect string to your guests.');
    setStatus(gw.public ? 'Hosting. Your node is publicly reachable.' : 'Hosting. Your node looks private (behind NAT): guests outside your network may not reach it.');
    render();
}

async function stopHosting() {
    const gw = state.gateway;
    state.mode = 'busy';
    for (const conn of [...state.guests.keys()]) {
        try {
            conn.sendJSON({ type: 'leave', from: state.myName });
        } catch {
            /* already gone */
        }
        conn.close();
    }
    state.guests.clear();
    render();
    try {
        await gw.stop(CHAT_PROTOCOL);
    } catch {
        /* the gateway went away; nothing is listening anyway */
    }
    leaveRoomUi('You closed the room.');
}

function onIncoming(event) {
    const conn = event.detail;
    if (conn.protocol !== CHAT_PROTOCOL) return;
    if (state.mode !== 'hosting') {
        conn.close();
        return;
    }
    state.guests.set(conn, null);
    render();
    conn.addEventListener('data', (e) => onGuestFrame(conn, parseFrame(e.detail)));
    conn.addEventListener('close', () => onGuestGone(conn));
}

function broadcast(frame, except = null) {
    for (const [conn, name] of state.guests) {
        if (conn === except || name === null || conn.closed) continue;
        try {
            conn.sendJSON(frame);
        } catch {
            /* closing; its close event cleans up */
        }
    }
}

function onGuestFrame(conn, frame) {
    if (!frame || !state.guests.has(conn)) return;
    const joinedAs = state.guests.get(conn);
    if (frame.type === 'join' && joinedAs === null) {
        const name = cleanName(frame.from);
        state.guests.set(conn, name);
        // greet the newcomer with everyone already here, then tell the others
        conn.sendJSON({ type: 'join', from: state.myName, present: true });
        for (const [other, otherName] of state.guests) {
            if (other !== conn && otherName !== null) conn.sendJSON({ type: 'join', from: otherName, present: true });
        }
        broadcast({ type: 'join', from: name }, conn);
        state.members.push({ name, role: '' });
        renderMembers();
        addNotice(`${name} joined`);
        render();
    } else if (frame.type === 'message' && joinedAs !== null && typeof frame.text === 'string') {
        const text = frame.text.slice(0, MAX_TEXT);
        const time = typeof frame.time === 'number' ? frame.time : Date.now();
        addMessage(joinedAs, text, time);
        broadcast({ type: 'message', from: joinedAs, text, time }, conn);
    }
}

function onGuestGone(conn) {
    const name = state.guests.get(conn);
    if (!state.guests.delete(conn)) return;
    if (name !== null && state.mode === 'hosting') {
        broadcast({ type: 'leave', from: name });
        removeMember(name);
        addNotice(`${name} left`);
    }
    render();
}

// ------------------------------------------------------------------ joining

async function join() {
    const gw = state.gateway;
    const target = ui.joinString.value.replace(/\s+/g, '');
    if (!target) {
        setStatus('Paste the connect string of the room first.', 'error');
        ui.joinString.focus();
        return;
    }
    if (isConnectString(target)) {
        try {
            const { peerID } = parseConnectString(target);
            // Another tab on this same daemon may host the room: the daemon joins the two
            // sessions in-process. Only the tab that hosts it cannot join itself.
            if (peerID === gw.peerID && state.mode === 'hosting') {
                setStatus('That is your own room.', 'error');
                return;
            }
        } catch (err) {
            setStatus(`That connect string is damaged: ${err.message}`, 'error');
            return;
        }
    }
    state.myName = currentName();
    state.mode = 'joining';
    render();
    setStatus('Connecting to the host…');
    let conn;
    try {
        conn = await gw.connect(target, CHAT_PROTOCOL, { framed: true });
    } catch (err) {
        state.mode = 'idle';
        render();
        setStatus(`Could not join: ${err.message}`, 'error');
        return;
    }
    state.hostConnection = conn;
    state.hostName = '';
    state.mode = 'guest';
    ui.messages.replaceChildren();
    setMembers([{ name: state.myName, role: 'you' }]);
    conn.addEventListener('data', (e) => onHostFrame(parseFrame(e.detail)));
    conn.addEventListener('close', (e) => {
        if (state.hostConnection !== conn) return;
        state.hostConnection = null;
        leaveRoomUi(closedText(e.detail));
    });
    conn.sendJSON({ type: 'join', from: state.myName });
    addNotice('Joined the room.');
    setStatus('Connected.');
    render();
}

// Why the connection to the host ended, for the guest.
function closedText(reason) {
    if (!reason || reason === 'closed') return 'You left the room.';
    if (reason === 'closed by remote') return 'The host closed the room.';
    if (reason === 'gateway closed' || reason.startsWith('session lost')) return 'Lost the connection to the daemon.';
    return `Disconnected from the room: ${reason}`;
}

function onHostFrame(frame) {
    if (!frame) return;
    if (frame.type === 'join') {
        const name = cleanName(frame.from);
        // The host greets a newcomer first, so the first member present is the host.
        const isHost = state.members.length === 1 && frame.present && !state.hostName;
        if (isHost) state.hostName = name;
        state.members.push({ name, role: isHost ? 'host' : '' });
        renderMembers();
        render();
        if (!frame.present) addNotice(`${name} joined`);
    } else if (frame.type === 'leave') {
        const name = cleanName(frame.from);
        removeMember(name);
        addNotice(`${name} left`);
    } else if (frame.type === 'message' && typeof frame.text === 'string') {
        addMessage(cleanName(frame.from), frame.text.slice(0, MAX_TEXT), frame.time);
    }
}

function leave() {
    const conn = state.hostConnection;
    state.hostConnection = null;
    if (conn && !conn.closed) {
        try {
            conn.sendJSON({ type: 'leave', from: state.myName });
        } catch {
            /* closing anyway */
        }
        conn.close();
    }
    leaveRoomUi('You left the room.');
}

function leaveRoomUi(notice) {
    if (state.mode === 'hosting' || state.mode === 'busy') rememberHosting(false);
    state.mode = 'idle';
    state.guests.clear();
    state.hostConnection = null;
    state.hostName = '';
    ui.connectString.textContent = '';
    ui.connectString.value = '';
    setMembers([]);
    addNotice(notice);
    setStatus(notice);
    render();
}

// ------------------------------------------------------------------ sending

function sendMessage() {
    const text = ui.message.value.trim().slice(0, MAX_TEXT);
    if (!text) return;
    const frame = { type: 'message', from: state.myName, text, time: Date.now() };
    let waiting = null; // the connection that holds the message back, if one does
    if (state.mode === 'hosting') {
        broadcast(frame);
    } else if (state.mode === 'guest' && state.hostConnection) {
        try {
            if (!state.hostConnection.sendJSON(frame)) waiting = state.hostConnection;
        } catch (err) {
            setStatus(`Not sent: ${err.message}`, 'error');
            return;
        }
    } else {
        return;
    }
    const item = addMessage(state.myName, text, frame.time, true);
    if (waiting) showWaiting(item, waiting);
    ui.message.value = '';
    ui.message.focus();
}

// With the daemon's credit extension, a message to a host that does not keep up waits
// in this page (send() returned false): it is shown faded until it went out, and
// marked if the connection ends first.
function showWaiting(item, conn) {
    item.classList.add('pending');
    item.title = 'Waiting for the room to take it…';
    conn.onDrain().then(
        () => {
            item.classList.remove('pending');
            item.removeAttribute('title');
        },
        () => {
            item.classList.replace('pending', 'unsent');
            item.title = 'Not delivered: the connection ended first.';
        },
    );
}

// ------------------------------------------------------------------ the gateway

function showNode(gw) {
    ui.peerId.textContent = gw.peerID;
    ui.peerId.title = gw.addresses.join('\n');
    ui.natStatus.textContent = gw.public ? 'public' : 'private';
    ui.natStatus.dataset.nat = gw.public ? 'public' : 'private';
    ui.natStatus.title = gw.public
        ? 'AutoNAT says peers on the internet can reach this node.'
        : 'This node looks unreachable from outside (behind NAT or not yet checked).';
    if (state.mode === 'hosting') {
        ui.connectString.textContent = gw.connectString;
        ui.connectString.value = gw.connectString;
    }
}

// Whether this page hosts a room, kept for a reload.
function rememberHosting(on) {
    try {
        if (on) sessionStorage.setItem(HOSTING_STORAGE, '1');
        else sessionStorage.removeItem(HOSTING_STORAGE);
    } catch {
        /* no storage: a reload closes the room */
    }
}

// A reloaded page's gateway took its session back with its listeners: a room this page
// hosted opens again (listen() resolves at once); an unwanted room listener is stopped.
function reclaimRoom(gw) {
    if (!gw.listening.has(CHAT_PROTOCOL)) return rememberHosting(false);
    let hosted = false;
    try {
        hosted = sessionStorage.getItem(HOSTING_STORAGE) === '1';
    } catch {
        /* no storage */
    }
    if (hosted && state.mode === 'idle') startHosting();
    else gw.stop(CHAT_PROTOCOL).catch(() => {});
}

async function connectGateway(attempt = 0) {
    ui.daemon.textContent = 'connecting…';
    let gw;
    try {
        gw = await Gateway.connect();
    } catch (err) {
        const wait = Math.min(10, 2 ** attempt);
        ui.daemon.textContent = 'unreachable';
        setStatus(`Cannot reach the libp2p-websocket daemon (${err.message}). Retrying in ${wait}s…`, 'error');
        setTimeout(() => connectGateway(attempt + 1), wait * 1000);
        return;
    }
    state.gateway = gw;
    ui.daemon.textContent = 'connected';
    showNode(gw);
    gw.addEventListener('identify', () => showNode(gw));
    gw.addEventListener('connection', onIncoming);
    gw.addEventListener('error', (e) => setStatus(`The daemon reported: ${e.detail}`, 'error'));
    gw.addEventListener('listenerclosed', (e) => {
        if (e.detail === CHAT_PROTOCOL && state.mode === 'hosting') leaveRoomUi('The daemon closed your room.');
    });
    // A dropped WebSocket: the gateway takes the session back by itself.
    gw.addEventListener('disconnected', () => {
        ui.daemon.textContent = 'reconnecting…';
        ui.daemon.dataset.state = 'reconnecting';
    });
    gw.addEventListener('resumed', () => {
        ui.daemon.textContent = 'connected';
        ui.daemon.dataset.state = 'up';
    });
    gw.addEventListener('close', () => {
        state.gateway = null;
        if (state.mode !== 'idle') leaveRoomUi('Lost the connection to the daemon.');
        ui.peerId.textContent = '…';
        ui.natStatus.textContent = 'unknown';
        delete ui.natStatus.dataset.nat;
        render();
        setTimeout(() => connectGateway(0), 1000);
    });
    if (state.mode === 'idle') setStatus('Ready. Host a room, or paste a connect string to join one.');
    render();
    reclaimRoom(gw);
}

// ------------------------------------------------------------------ wiring

function copyConnectString() {
    const text = ui.connectString.value;
    const done = () => {
        ui.copy.textContent = 'Copied!';
        setTimeout(() => (ui.copy.textContent = 'Copy'), 1500);
    };
    const fallback = () => {
        ui.connectString.focus();
        ui.connectString.select();
        try {
            document.execCommand('copy');
            done();
        } catch {
            setStatus('Select the connect string and copy it by hand.', 'error');
        }
    };
    if (navigator.clipboard?.writeText) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
}

function init() {
    try {
        ui.name.value = localStorage.getItem(NAME_STORAGE) ?? '';
    } catch {
        /* no storage */
    }
    ui.name.addEventListener('input', () => {
        try {
            localStorage.setItem(NAME_STORAGE, ui.name.value.trim());
        } catch {
            /* no storage */
        }
    });
    ui.host.addEventListener('click', () => (state.mode === 'hosting' ? stopHosting() : startHosting()));
    ui.join.addEventListener('click', () => (state.mode === 'guest' ? leave() : join()));
    ui.joinString.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.shiftKey) {
            e.preventDefault();
            if (!ui.join.disabled) join();
        }
    });
    ui.copy.addEventListener('click', copyConnectString);
    ui.compose.addEventListener('submit', (e) => {
        e.preventDefault();
        sendMessage();
    });
    const hash = new URLSearchParams(location.hash.slice(1));
    if (hash.get('join')) ui.joinString.value = hash.get('join');
    render();
    connectGateway();
}

init();
