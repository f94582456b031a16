// TCP: bytes in, bytes out, nothing else. The broker side wraps each accepted socket in a
// Session; the client side adapts a socket to the client's Transport interface.

import net from 'node:net';
import type { Transport } from '../client/transport.ts';
import { TurboError } from '../errors.ts';

export interface SessionHost {
  /**
   * Called for each accepted connection (`remoteAddress` is "host:port", for logs); returns
   * the callbacks for its bytes, its end, and protocol errors the transport itself detects.
   */
  accept(io: { remoteAddress: string; write(bytes: Uint8Array): void; end(): void }): { onData(chunk: Uint8Array): void; close(): void; protocolError?(reason: string): void } | undefined;
}

/** "1.2.3.4:5678" or "[::1]:5678" for logs. */
export function formatRemoteAddress(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return 'unknown';
  return `${address.includes(':') ? `[${address}]` : address}:${port ?? 0}`;
}

/**
 * Listens on host:port with SO_REUSEPORT, so every worker can listen on the same port and
 * the kernel spreads connections across them. Resolves with the bound port.
 */
export function listenTcp(host: string, port: number, host_: SessionHost): Promise<net.Server> {
  const server = net.createServer({ noDelay: true, keepAlive: true }, (socket) => {
    const session = host_.accept({
      remoteAddress: formatRemoteAddress(socket.remoteAddress, socket.remotePort),
      write(bytes) {
        // Backpressure: a client that does not read its replies stops being read from.
        if (!socket.write(bytes)) socket.pause();
      },
      end() {
        socket.end();
      },
    });
    if (session === undefined) {
      socket.destroy();
      return;
    }
    socket.on('data', (chunk: Buffer) => session.onData(chunk));
    socket.on('drain', () => socket.resume());
    socket.on('close', () => session.close());
    socket.on('error', () => { /* 'close' follows */ });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, reusePort: true }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * Checks that host:port is free by binding it *without* SO_REUSEPORT, then releases it.
 * SO_REUSEPORT lets any socket of the same user join a port, so without this check a
 * second broker started on a busy port would silently take half of its connections.
 * Resolves with the port (the chosen one for port 0); rejects with EADDRINUSE.
 */
export function probePort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen({ host, port, exclusive: true }, () => {
      const bound = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(bound));
    });
  });
}

/** Client side: a connected socket as a Transport. */
export function connectTcp(host: string, port: number, timeoutMs: number): Promise<Transport> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TurboError('ERR_CONNECTION_CLOSED', `connect to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new TurboError('ERR_CONNECTION_CLOSED', `cannot connect to ${host}:${port}: ${err.message}`, { cause: err }));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      const transport: Transport = {
        onData: () => {},
        onClose: () => {},
        send(bytes) {
          socket.write(bytes);
        },
        close() {
          socket.end();
          socket.destroySoon();
        },
      };
      socket.on('data', (chunk: Buffer) => transport.onData(chunk));
      let closeError: Error | undefined;
      socket.on('error', (err) => { closeError = err; });
      socket.on('close', () => transport.onClose(closeError));
      resolve(transport);
    });
  });
}
