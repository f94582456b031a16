// WebSocket listener (the `ws` package): bytes in, bytes out. Each binary WebSocket message
// carries one or more whole frames (docs/protocol.md, "WebSocket"); the session decodes
// them exactly like TCP bytes, so limits and errors are the TCP ones. What is WebSocket's
// own lives here: which browser Origins may connect, the largest message, and text
// messages (refused). Called by the worker (src/engine/worker.ts) for each ws:// and wss://
// listen url; accepting, caps, TLS and the handshake deadline are the Listener's (listener.ts).

import http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { formatRemoteAddress, type SessionHost } from './tcp.ts';
import { Listener } from './listener.ts';
import { HEADER_BYTES } from '../protocol.ts';
import { isLoopbackHost, type BrokerUrl } from '../url.ts';
import { MESSAGE_TARGET_BYTES, sendAsMessages } from './websocket-messages.ts';
import { OUTPUT_HIGH_WATER_BYTES } from '../engine/output.ts';

export interface WebSocketListenOptions {
  /**
   * The broker's maxFrameBytes (largest frame body). The largest message accepted is that
   * plus a frame header, or MESSAGE_TARGET_BYTES if larger (clients pack small frames up to
   * it); a longer message closes the connection with 1009 before it is buffered.
   */
  maxPayload: number;
  /**
   * Origins browsers may connect from ("https://app.example.com"; "*" allows any).
   * undefined: loopback origins only (http://localhost:*, http://127.0.0.1:*, http://[::1]:*).
   * Clients that send no Origin (not browsers) are always let in: Origin protects the
   * browsers' users from other web pages, the listen address protects the broker.
   */
  allowedOrigins: string[] | undefined;
}

export interface WebSocketListener {
  port: number;
  close(cb: () => void): void;
}

/** Status codes of the WebSocket close frames we send (RFC 6455, 7.4.1). */
const CLOSE_NORMAL = 1000;
const CLOSE_UNSUPPORTED_DATA = 1003;
const CLOSE_TRY_AGAIN_LATER = 1013;

/** Normalises "http://Example.com/" to "http://example.com"; keeps what is not a url ("*", "null"). */
function normaliseOrigin(origin: string): string {
  try {
    const url = new URL(origin);
    return url.origin === 'null' ? origin : url.origin;
  } catch {
    return origin;
  }
}

/** Whether a WebSocket upgrade carrying this Origin header may connect. */
export function originAllowed(origin: string | undefined, allowed: readonly string[] | undefined): boolean {
  if (origin === undefined) return true;
  if (allowed === undefined) {
    try {
      const url = new URL(origin);
      return (url.protocol === 'http:' || url.protocol === 'https:') && isLoopbackHost(url.hostname);
    } catch {
      return false; // "null" (file:// pages, sandboxed frames) and garbage
    }
  }
  return allowed.includes('*') || allowed.includes(normaliseOrigin(origin));
}

/**
 * Listens on a ws:// or wss:// url. Connections come from a Listener (caps, TLS, the
 * handshake deadline) and are handed to an HTTP server of our own that never listens itself
 * (its 'connection' event is fed by the Listener), with `ws` attached for the upgrade.
 */
export async function listenWebSocket(url: BrokerUrl, secureContext: tls.SecureContext | undefined, sessionHost: SessionHost, options: WebSocketListenOptions): Promise<WebSocketListener> {
  const allowedOrigins = options.allowedOrigins?.map(normaliseOrigin);
  const established = new WeakMap<net.Socket, () => void>();
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
    res.end('turbomq: connect with a WebSocket client\n');
  });
  const wss = new WebSocketServer({
    server,
    maxPayload: Math.max(options.maxPayload + HEADER_BYTES, MESSAGE_TARGET_BYTES),
    perMessageDeflate: false,
    clientTracking: false,
    // Refused before the upgrade: the browser sees a failed connection (HTTP 403).
    verifyClient: (info: { origin?: string }, done: (ok: boolean, code?: number, message?: string) => void) => {
      if (originAllowed(info.origin, allowedOrigins)) done(true);
      else done(false, 403, 'Origin not allowed');
    },
  });
  wss.on('connection', (ws: WebSocket, req: http.IncomingMessage) => {
    ws.binaryType = 'nodebuffer';
    const sendMessage = (message: Uint8Array) => ws.send(message, { binary: true }, onSent);
    // Backpressure, as over TCP: a client that does not read its replies stops being read from.
    const onSent = () => {
      // A send that failed because the connection is gone must not let held requests run.
      if (ws.readyState !== ws.OPEN || ws.bufferedAmount >= OUTPUT_HIGH_WATER_BYTES / 2) return;
      session?.onWritable();
      if (ws.isPaused) ws.resume();
    };
    const session = sessionHost.accept({
      remoteAddress: formatRemoteAddress(req.socket.remoteAddress, req.socket.remotePort),
      write(bytes) {
        if (ws.readyState !== 1) return;
        sendAsMessages(bytes, sendMessage);
        if (ws.bufferedAmount >= OUTPUT_HIGH_WATER_BYTES) ws.pause();
      },
      bufferedBytes: () => ws.bufferedAmount,
      end() {
        ws.close(CLOSE_NORMAL);
      },
      destroy() {
        ws.terminate();
      },
      established: established.get(req.socket) ?? (() => {}),
    });
    if (session === undefined) {
      // The worker is stopping.
      ws.close(CLOSE_TRY_AGAIN_LATER, 'the broker is stopping');
      return;
    }
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // A closing connection's last messages are dropped: nobody would receive the replies,
      // and its pops would take messages from their topics for nothing.
      if (ws.readyState !== ws.OPEN) return;
      if (!isBinary) {
        session.protocolError?.('WebSocket text message (binary messages only)');
        ws.close(CLOSE_UNSUPPORTED_DATA, 'binary messages only');
        return;
      }
      session.onData(data);
    });
    ws.on('close', () => session.close());
    ws.on('error', () => { /* close follows */ });
  });
  const listener = await Listener.open({
    url,
    secureContext,
    handshakeTimeoutMs: sessionHost.handshakeTimeoutMs,
    admit: (remoteAddress) => sessionHost.admit(remoteAddress),
    // A plain HTTP client (a browser, ws) can read an HTTP status; over wss it could not.
    refuse: (socket, reason) => {
      if (secureContext === undefined) socket.write(`HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(reason)}\r\n\r\n${reason}`);
    },
    onEvent: sessionHost.onEvent,
    onConnection({ socket, established: done }) {
      established.set(socket, done);
      server.emit('connection', socket);
    },
  });
  return {
    port: listener.port,
    close: (cb) => {
      wss.close();
      server.closeAllConnections();
      listener.close(cb); // once every connection of this listener has ended
    },
  };
}
