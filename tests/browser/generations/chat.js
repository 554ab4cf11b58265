// chat.js: a small chat page in the manner of the original Go daemon's 2020 chat
// example (written afresh for the tests, not copied): host a room on a random
// /x/chat-… protocol, join one with a connect string, chat, disconnect, join again.
// It speaks the binary /libp2p protocol the way the original's 2020 browser client
// did. What differs between the generations (Start, Hello, Identify) is passed in by
// the page (spring.html, july.html); the rest is the same in both:
//
//   Listen  [1][FRAMES:1][PROTOCOL: rest]        Stop  [2][RETAIN:1][PROTOCOL: rest]
//   Close   [3][ID:8]                            Data  [4][ID:8][data: rest]
//   Connect [5][FRAMES:1][RELAY:1][PROTOCOL: str][PEERID: rest]
//
// As the original chat did, it refuses to host on PUBLIC=0 ("You must use a relay
// because your connection is private") and its Disconnect waits for the Connection
// Closed of its stream before it shows "disconnected".
//
// What happened is kept in window.chat (plain data, read by generations.mjs).

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const $ = (sel) => document.querySelector(sel);
const utf8 = (text) => encoder.encode(text);

/** Reads a server message's fields in order, after its type byte. */
export class Reader {
    constructor(buffer) {
        this.bytes = new Uint8Array(buffer);
        this.view = new DataView(buffer);
        this.at = 1;
    }
    byte() {
        return this.bytes[this.at++];
    }
    id() {
        const id = this.view.getBigUint64(this.at);
        this.at += 8;
        return id;
    }
    /** `str`: a 2-byte big-endian length, then that many bytes of UTF-8. */
    str() {
        const length = this.view.getUint16(this.at);
        const text = decoder.decode(this.bytes.subarray(this.at + 2, this.at + 2 + length));
        this.at += 2 + length;
        return text;
    }
    rest() {
        const text = decoder.decode(this.bytes.subarray(this.at));
        this.at = this.bytes.length;
        return text;
    }
}

function idBytes(id) {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, id);
    return bytes;
}

const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');

/** Ascii85 (Adobe's alphabet, `z` for a zero group, no delimiters) of UTF-8 text. */
export function toAscii85(text) {
    const bytes = utf8(text);
    let out = '';
    for (let i = 0; i < bytes.length; i += 4) {
        const n = Math.min(4, bytes.length - i);
        let value = 0;
        for (let j = 0; j < 4; j++) value = value * 256 + (j < n ? bytes[i + j] : 0);
        if (n === 4 && value === 0) {
            out += 'z';
            continue;
        }
        const digits = [];
        for (let k = 0; k < 5; k++) {
            digits.unshift(String.fromCharCode(33 + (value % 85)));
            value = Math.floor(value / 85);
        }
        out += digits.slice(0, n + 1).join('');
    }
    return out;
}

export function fromAscii85(text) {
    const bytes = [];
    let group = [];
    const emit = (digits, keep) => {
        let value = 0;
        for (const d of digits) value = value * 85 + d;
        bytes.push(...[value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].slice(0, keep));
    };
    for (const ch of text) {
        const c = ch.charCodeAt(0);
        if (c <= 32) continue;
        if (ch === 'z' && group.length === 0) {
            bytes.push(0, 0, 0, 0);
            continue;
        }
        group.push(c - 33);
        if (group.length === 5) {
            emit(group, 4);
            group = [];
        }
    }
    if (group.length > 0) {
        const keep = group.length - 1;
        while (group.length < 5) group.push(84);
        emit(group, keep);
    }
    return decoder.decode(Uint8Array.from(bytes));
}

const PRIVATE = 'You must use a relay because your connection is private';

/**
 * Runs the chat page. `generation` = { name, start(key) → bytes of Start,
 * hello(reader) → {started, version?}, ident(reader) → {public, peerID, addresses,
 * key, version?} }.
 */
export function startChat(generation) {
    const chat = {
        generation: generation.name,
        state: 'starting',
        natStatus: 'unknown',
        identifies: 0,
        log: [],
        users: [],
        conversation: [],
    };
    window.chat = chat;
    const hosting = new Map(); // conID → {peerID, user}
    let userMap = new Map(); // peerID → user name
    let connection = {}; // the guest's: {peerID, protocol, id}
    let protocol = null; // what the host listens on

    const note = (what, fields = {}) => chat.log.push({ what, at: Math.round(performance.now()), ...fields });
    const setState = (state) => {
        chat.state = state;
        document.body.dataset.state = state;
        $('#state').textContent = state;
        note('state', { state });
    };

    const ws = new WebSocket(`ws://${location.host}/libp2p`);
    ws.binaryType = 'arraybuffer';
    const send = (type, bytes) => {
        const message = Uint8Array.from(bytes);
        note('sent', { type, hex: type === 'Data' ? undefined : hex(message) });
        ws.send(message);
    };
    const wire = {
        start: (key) => send('Start', generation.start(key)),
        listen: (prot, frames) => send('Listen', [1, frames ? 1 : 0, ...utf8(prot)]),
        stop: (prot, retain) => send('Stop', [2, retain ? 1 : 0, ...utf8(prot)]),
        close: (id) => send('Close', [3, ...idBytes(id)]),
        data: (id, bytes) => send('Data', [4, ...idBytes(id), ...bytes]),
        connect: (peer, prot, frames, relay) => {
            const p = utf8(prot);
            send('Connect', [5, frames ? 1 : 0, relay ? 1 : 0, p.length >> 8, p.length & 255, ...p, ...utf8(peer)]);
        },
    };
    const sendObject = (id, object) => wire.data(id, utf8(JSON.stringify(object)));

    function showUsers() {
        chat.users = [...userMap.values()].sort();
        $('#users').replaceChildren(
            ...chat.users.map((name) => Object.assign(document.createElement('li'), { textContent: name })),
        );
    }

    function addMessage(from, text, me) {
        chat.conversation.push({ from, text, me });
        const line = document.createElement('div');
        line.className = me ? 'me' : 'them';
        line.append(Object.assign(document.createElement('b'), { textContent: `${me ? 'me' : from}: ` }), text);
        $('#conversation').append(line);
    }

    function reset() {
        protocol = null;
        connection = {};
        hosting.clear();
        chat.connectString = '';
        chat.connectionId = null;
        $('#connectString').value = '';
        $('#toHostID').value = '';
        $('#toHostID').readOnly = false;
        $('#host').textContent = 'Host';
        $('#host').disabled = false;
        $('#connect').textContent = 'Connect';
        $('#connect').disabled = false;
        userMap = new Map();
        if (chat.userName && chat.peerID) userMap.set(chat.peerID, chat.userName);
        showUsers();
        setState('disconnected');
    }

    const handlers = {
        0(r) {
            const hello = generation.hello(r);
            chat.hello = hello;
            note('hello', hello);
            if (!hello.started) wire.start(localStorage.getItem('peerKey') || '');
        },
        1(r) {
            const ident = generation.ident(r);
            chat.identifies++;
            note('ident', { ...ident, key: ident.key ? `${ident.key.length} chars` : '' });
            Object.assign(chat, {
                natStatus: ident.public ? 'public' : 'private',
                peerID: ident.peerID,
                addresses: ident.addresses,
                key: ident.key,
                version: ident.version,
            });
            localStorage.setItem('peerKey', ident.key);
            $('#natStatus').textContent = chat.natStatus;
            $('#peerID').textContent = ident.peerID;
            $('#version').textContent = ident.version ?? '— (not read by this generation)';
            reset(); // as the original chat did on every Identify
        },
        2(r) {
            const id = r.id();
            const peerID = r.str();
            const prot = r.rest();
            note('listenerConnection', { id: String(id), peerID, protocol: prot });
            if (prot === protocol) hosting.set(id, { peerID });
        },
        3(r) {
            const id = r.id();
            const reason = r.rest();
            note('connectionClosed', { id: String(id), reason });
            const guest = hosting.get(id);
            if (guest) {
                hosting.delete(id);
                userMap.delete(guest.peerID);
                for (const other of hosting.keys()) sendObject(other, { name: 'removeUser', peerID: guest.peerID });
                showUsers();
            } else if (connection.id === id) {
                reset();
            }
        },
        4(r) {
            const id = r.id();
            const text = r.rest();
            note('data', { id: String(id), text });
            const command = JSON.parse(text);
            commands[command.name]?.(id, command);
        },
        5(r) {
            note('listenRefused', { protocol: r.rest() });
            reset();
        },
        6(r) {
            const prot = r.rest();
            note('listenerClosed', { protocol: prot });
            if (prot === protocol) reset();
        },
        7(r) {
            const id = r.id();
            const peerID = r.str();
            const prot = r.rest();
            note('peerConnection', { id: String(id), peerID, protocol: prot });
            if (chat.state !== 'connectingToHost') return;
            if (peerID !== connection.peerID) {
                note('unexpectedHost', { peerID });
                return;
            }
            connection.id = id;
            chat.connectionId = String(id);
            $('#connect').textContent = 'Disconnect';
            $('#connect').disabled = false;
            $('#toHostID').readOnly = true;
            setState('connectedToHost');
            sendObject(id, { name: 'user', user: chat.userName });
        },
        8(r) {
            const peerID = r.str();
            const prot = r.str();
            const error = r.rest();
            note('peerConnectionRefused', { peerID, protocol: prot, error });
            reset();
            $('#toHostID').value = `Failed to connect to ${peerID} on protocol ${prot}: ${error}`;
        },
        9(r) {
            const msg = r.rest();
            note('error', { msg });
            $('#errors').append(Object.assign(document.createElement('div'), { textContent: msg }));
        },
        10(r) {
            const prot = r.rest();
            note('listening', { protocol: prot });
            if (prot !== protocol) return;
            const session = { type: 'peerAddr', peerID: chat.peerID, protocol: prot, addrs: chat.addresses };
            chat.connectString = toAscii85(JSON.stringify(session));
            $('#connectString').value = chat.connectString;
        },
    };

    const commands = {
        // Host: a guest tells its name; it gets everyone's, the others get its.
        user(id, { user }) {
            const guest = hosting.get(id);
            if (!guest) return;
            guest.user = user;
            userMap.set(guest.peerID, user);
            showUsers();
            sendObject(id, { name: 'users', users: Object.fromEntries(userMap) });
            for (const other of hosting.keys()) {
                if (other !== id) sendObject(other, { name: 'addUser', peerID: guest.peerID, user });
            }
        },
        users(id, { users }) {
            userMap = new Map(Object.entries(users));
            showUsers();
        },
        addUser(id, { peerID, user }) {
            userMap.set(peerID, user);
            showUsers();
        },
        removeUser(id, { peerID }) {
            userMap.delete(peerID);
            showUsers();
        },
        message(id, message) {
            addMessage(message.from, message.text, false);
            for (const other of hosting.keys()) if (other !== id) sendObject(other, message);
        },
    };

    ws.onmessage = (event) => {
        const r = new Reader(event.data);
        const type = r.bytes[0];
        if (handlers[type]) handlers[type](r);
        else note('ignored', { type });
    };
    ws.onclose = () => note('websocketClosed');

    $('#user').oninput = () => {
        chat.userName = $('#user').value.trim();
        if (chat.peerID) userMap.set(chat.peerID, chat.userName);
        showUsers();
    };

    $('#host').onclick = () => {
        switch (chat.state) {
            case 'disconnected': {
                if (chat.natStatus === 'private') {
                    note('refusedToHost', { why: PRIVATE });
                    alert(PRIVATE);
                    return;
                }
                const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
                protocol = '/x/chat-';
                for (let i = 0; i < 16; i++) protocol += letters[Math.floor(Math.random() * letters.length)];
                $('#host').textContent = 'Stop Hosting';
                $('#connect').disabled = true;
                $('#connectString').value = `WAITING TO ESTABLISH LISTENER ON ${protocol}`;
                wire.listen(protocol, true);
                setState('hostingDirectly');
                break;
            }
            case 'hostingDirectly':
                $('#host').textContent = 'Stopping Hosting...';
                $('#host').disabled = true;
                wire.stop(protocol, false);
                setState('stoppingHosting');
                break;
        }
    };

    $('#connect').onclick = () => {
        switch (chat.state) {
            case 'disconnected': {
                const { peerID, protocol: prot, addrs } = JSON.parse(fromAscii85($('#toHostID').value.trim()));
                connection = { peerID, protocol: prot };
                $('#host').disabled = true;
                $('#connect').textContent = 'Abort Connection';
                setState('connectingToHost');
                wire.connect(`/addrs/${toAscii85(JSON.stringify({ peerID, addrs }))}`, prot, true, false);
                break;
            }
            case 'connectedToHost':
                // Disconnecting ends when the daemon says the stream closed.
                $('#connect').textContent = 'Disconnecting...';
                $('#connect').disabled = true;
                wire.close(connection.id);
                setState('disconnectingFromHost');
                break;
        }
    };

    $('#send').onkeydown = (event) => {
        if (event.key !== 'Enter') return;
        const text = $('#send').value;
        $('#send').value = '';
        const message = { name: 'message', from: chat.userName, text };
        addMessage(chat.userName, text, true);
        if (hosting.size > 0) for (const id of hosting.keys()) sendObject(id, message);
        else if (chat.state === 'connectedToHost') sendObject(connection.id, message);
    };
}
