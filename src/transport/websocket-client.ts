// Client side of the WebSocket transport, for browsers (global WebSocket) and Node (`ws`,
// which implements the same interface). Browser-safe: no node: imports, no Buffer. Each
// flush goes out as one binary message, or as several cut at frame boundaries when it is
// large (websocket-messages.ts); every message received holds whole frames, which the
// client decodes like TCP bytes.

import type { Transport } from '../client/transport.ts';
import { TurboError } from '../errors.ts';
import { sendAsMessages } from './websocket-messages.ts';

export function connectWebSocket(url: string, timeoutMs: number, Impl: typeof WebSocket = globalThis.WebSocket): Promise<Transport> {
  return new Promise((resolve, reject) => {
    if (Impl === undefined) {
      reject(new TurboError('ERR_INVALID_ARGUMENT', 'no WebSocket implementation available'));
      return;
    }
    let ws: WebSocket;
    try {
      ws = new Impl(url);
    } catch (err) {
      reject(new TurboError('ERR_INVALID_ARGUMENT', `cannot open ${url}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    ws.binaryType = 'arraybuffer';
    let opened = false;
    const timer = setTimeout(() => {
      ws.close();
      reject(new TurboError('ERR_CONNECTION_CLOSED', `connect to ${url} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const sendMessage = (message: Uint8Array) => ws.send(message);
    const transport: Transport = {
      onData: () => {},
      onClose: () => {},
      send(bytes) {
        if (ws.readyState === 1) sendAsMessages(bytes, sendMessage);
      },
      close() {
        ws.close(1000);
      },
    };
    ws.onopen = () => {
      opened = true;
      clearTimeout(timer);
      resolve(transport);
    };
    ws.onmessage = (event: MessageEvent) => {
      const data = event.data;
      if (data instanceof ArrayBuffer) transport.onData(new Uint8Array(data));
      else if (ArrayBuffer.isView(data)) transport.onData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    };
    ws.onerror = () => {
      if (!opened) {
        clearTimeout(timer);
        reject(new TurboError('ERR_CONNECTION_CLOSED', `cannot connect to ${url}`));
      }
    };
    ws.onclose = (event: CloseEvent) => {
      clearTimeout(timer);
      if (!opened) {
        reject(new TurboError('ERR_CONNECTION_CLOSED', `cannot connect to ${url} (close code ${event.code})`));
        return;
      }
      transport.onClose(event.code === 1000 || event.code === 1005 ? undefined : new Error(`WebSocket closed with code ${event.code}${event.reason ? `: ${event.reason}` : ''}`));
    };
  });
}
