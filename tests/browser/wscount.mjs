// wscount.mjs: an init script for a page (page.addInitScript(countWebSocket)) that
// counts what its WebSockets carry, by direction and message type (byte 0 of each
// binary message: the libp2p-websocket control protocol's type), in window.wsCount:
// {out: {type: {n, bytes}}, in: {...}, outBytes, inBytes}.

export function countWebSocket() {
    const count = { out: {}, in: {}, outBytes: 0, inBytes: 0 };
    window.wsCount = count;
    const add = (side, bytes) => {
        const type = bytes[0];
        const c = (count[side][type] ??= { n: 0, bytes: 0 });
        c.n++;
        c.bytes += bytes.length;
        count[`${side}Bytes`] += bytes.length;
    };
    const Native = window.WebSocket;
    const send = Native.prototype.send;
    Native.prototype.send = function (data) {
        if (ArrayBuffer.isView(data)) add('out', new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        else if (data instanceof ArrayBuffer) add('out', new Uint8Array(data));
        return send.call(this, data);
    };
    window.WebSocket = class extends Native {
        constructor(...args) {
            super(...args);
            this.addEventListener('message', (e) => {
                if (e.data instanceof ArrayBuffer) add('in', new Uint8Array(e.data));
            });
        }
    };
}

