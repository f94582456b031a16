// WebSocket (the `ws` package): bytes in, bytes out. Each binary WebSocket message carries
// one or more whole frames (docs/protocol.md); the session decodes them like TCP bytes.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { SessionHost } from './tcp.ts';

export interface WebSocketListenOptions {
  /** Largest WebSocket message, in bytes (tied to maxFrameBytes). */
  maxPayload: number;
  /** Origins a browser may connect from; undefined allows any. */
  allowedOrigins: string[] | undefined;
}

export interface WebSocketListener {
  port: number;
  close(cb: () => void): void;
}

export function listenWebSocket(host: string, port: number, sessionHost: SessionHost, options: WebSocketListenOptions): Promise<WebSocketListener> {
  return new Promise((resolve, reject) => {
    // Our own HTTP server so that it can listen with SO_REUSEPORT like the TCP listeners
    // (ws would create one without it, and the second worker would get EADDRINUSE).
    const server = http.createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
      res.end('turbomq: connect with a WebSocket client\n');
    });
    const wss = new WebSocketServer({
      server,
      maxPayload: options.maxPayload,
      perMessageDeflate: false,
      clientTracking: false,
      verifyClient: options.allowedOrigins === undefined
        ? undefined
        : (info: { origin: string }) => info.origin === undefined || options.allowedOrigins!.includes(info.origin),
    });
    server.once('error', reject);
    wss.on('connection', (ws: WebSocket) => {
      ws.binaryType = 'nodebuffer';
      const session = sessionHost.accept({
        write(bytes) {
          ws.send(bytes, { binary: true });
        },
        end() {
          ws.close(1000);
        },
      });
      if (session === undefined) {
        ws.close(1013, 'try again later');
        return;
      }
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary) {
          ws.close(1003, 'binary frames only');
          return;
        }
        session.onData(data);
      });
      ws.on('close', () => session.close());
      ws.on('error', () => { /* close follows */ });
    });
    server.listen({ host, port, reusePort: true }, () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: (cb) => {
          wss.close();
          server.close(() => cb());
          server.closeAllConnections();
        },
      });
    });
  });
}
