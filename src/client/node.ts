// The Node platform for TurboClient: the local Wasm core from build/wasm, and connections
// over TCP, TLS, unix sockets and WebSocket (ws, wss). Imported for its side effect by
// src/index.ts and the engine.

import { WebSocket } from 'ws';
import { setClientPlatform } from './client.ts';
import { loadLocalCore } from '../core/load.ts';
import { connectSocket } from '../transport/tcp.ts';
import { connectWebSocket } from '../transport/websocket-client.ts';
import { parseUrl, usesWebSocket } from '../url.ts';

setClientPlatform({
  loadCore: loadLocalCore,
  utf8Ranges(bytes) {
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return (start, end) => buffer.toString('utf8', start, end);
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
});
