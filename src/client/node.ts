// The Node platform for TurboClient: the local Wasm core from build/wasm, TCP and
// WebSocket connections. Imported for its side effect by src/index.ts and the engine.

import { WebSocket } from 'ws';
import { setClientPlatform, type ClientPlatform } from './client.ts';
import { loadLocalCore } from '../core/load.ts';
import { connectTcp } from '../transport/tcp.ts';
import { connectWebSocket } from '../transport/websocket-client.ts';
import { TurboError } from '../errors.ts';

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
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TurboError('ERR_INVALID_ARGUMENT', `not a url: ${JSON.stringify(url)} (expected tcp://host:port or ws://host:port)`);
    }
    const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
    if (parsed.protocol === 'tcp:') return connectTcp(host, parsed.port === '' ? 33444 : Number(parsed.port), options.connectTimeoutMs);
    if (parsed.protocol === 'ws:' || parsed.protocol === 'wss:') return connectWebSocket(url, options.connectTimeoutMs, WebSocket as unknown as typeof globalThis.WebSocket);
    throw new TurboError('ERR_INVALID_ARGUMENT', `unsupported protocol ${parsed.protocol} in ${url} (tcp: or ws:)`);
  },
};

setClientPlatform(nodePlatform);
