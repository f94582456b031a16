// The Node platform for TurboClient: the local Wasm core from build/wasm, TCP and
// WebSocket connections. Imported for its side effect by src/index.ts and the engine.

import { WebSocket } from 'ws';
import { setClientPlatform } from './client.ts';
import { loadLocalCore } from '../core/load.ts';
import { connectTcp } from '../transport/tcp.ts';
import { connectWebSocket } from '../transport/websocket-client.ts';
import { TurboError } from '../errors.ts';

setClientPlatform({
  loadCore: loadLocalCore,
  utf8Ranges(bytes) {
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return (start, end) => buffer.toString('utf8', start, end);
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
});
