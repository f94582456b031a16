// The Node platform for TurboClient: the local Wasm core from build/wasm, and connections
// over TCP, TLS, unix sockets and WebSocket (ws, wss). Imported for its side effect by
// src/index.ts and the engine.

import { WebSocket } from 'ws';
import { setClientPlatform, type ClientPlatform } from './client.ts';
import { loadLocalCore } from '../core/load.ts';
import { connectSocket } from '../transport/tcp.ts';
import { connectWebSocket } from '../transport/websocket-client.ts';
import { parseUrl, usesWebSocket } from '../url.ts';

export const nodePlatform: ClientPlatform = {
  loadCore: loadLocalCore,
  utf8Ranges(bytes) {
    const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return (start, end) => buffer.toString('utf8', start, end);
  },
  utf8Writer(memory) {
    // Buffer#write encodes straight into the core's memory: no intermediate array.
    const buffer = Buffer.from(memory.buffer, memory.byteOffset, memory.byteLength);
    // (At most to the memory's end: Buffer#write refuses a longer length even when the text fits.)
    return (text, at) => buffer.write(text, at, Math.min(text.length * 3, buffer.length - at));
  },
  async connect(url, options) {
    const parsed = parseUrl(url);
    if (!usesWebSocket(parsed.scheme)) return connectSocket(parsed, options.connectTimeoutMs, options.tls);
    const tlsOptions = options.tls;
    // ws takes tls.connect options (ca, cert, ...) as its second argument.
    const Impl = tlsOptions === undefined ? WebSocket : class extends WebSocket {
      constructor(address: string) {
        super(address, tlsOptions as WebSocket.ClientOptions);
      }
    };
    return connectWebSocket(url, options.connectTimeoutMs, Impl as unknown as typeof globalThis.WebSocket);
  },
};

setClientPlatform(nodePlatform);
