// TCP, TLS and unix sockets: bytes in, bytes out, nothing else. The broker side gets its
// connections from a Listener (listener.ts: caps, TLS, the handshake deadline) and wraps
// each in a session through the SessionHost; the client side adapts a socket to the client's
// Transport interface.

import net from 'node:net';
import { formatRemoteAddress } from './remote-address.ts';
import tls from 'node:tls';
import type { Transport } from '../client/transport.ts';
import type { TlsClientOptions } from '../options.ts';
import type { BrokerUrl } from '../url.ts';
import { TurboError } from '../errors.ts';
import { ErrorCode } from '../protocol.ts';
import { encodeErrorFrame } from '../core/raw-frames.ts';
import { Listener, type Admission } from './listener.ts';
import { SendBuffers } from './send-buffers.ts';

/** A socket's read buffer, client and broker side (the size Node reads with by default). */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * The broker's read buffer for plain connections, one per thread (a worker has its own module
 * instance), shared by all of them: sessions copy each chunk into the core's memory at once.
 */
let serverReadBuffer: Buffer | undefined;

/** How long a connection the broker ends may take to receive its last bytes (a fatal ERROR). */
const END_GRACE_MS = 2000;

/** What a transport needs from the broker side of a connection. */
export interface ConnectionIO {
  /** "host:port" of the peer, for logs. */
  remoteAddress: string;
  write(bytes: Uint8Array): void;
  /** Writes a copy of bytes valid only during the call (the session's writer), if the transport can reuse its buffers. */
  writeCopyOf?(bytes: Uint8Array): void;
  /** Bytes written and not sent yet. */
  bufferedBytes(): number;
  end(): void;
  /** Closes at once, dropping what was not sent. */
  destroy(): void;
  /** The handshake is over (see Listener). */
  established(): void;
}

export interface SessionHost {
  /** A connection slot, or why there is none (checked at accept, before TLS or an upgrade). */
  admit(remoteAddress: string): Admission;
  /**
   * Called for each admitted connection (`remoteAddress` is "host:port", for logs); returns
   * the callbacks for its bytes, its end, and protocol errors the transport itself detects.
   * A chunk given to onData is valid only during the call (plain connections share one read
   * buffer per thread): whatever is kept of it must be copied.
   */
  accept(io: ConnectionIO): { onData(chunk: Uint8Array): void; onWritable(): void; close(): void; protocolError?(reason: string): void } | undefined;
  handshakeTimeoutMs: number;
  onEvent?(event: string, details: Record<string, unknown>): void;
}

/**
 * Listens on a tcp://, tls:// or unix:// url (TCP with SO_REUSEPORT, so every worker listens
 * on the same port and the kernel spreads connections across them).
 */
export function listenTcp(url: BrokerUrl, secureContext: tls.SecureContext | undefined, host: SessionHost): Promise<Listener> {
  return Listener.open({
    url,
    secureContext,
    handshakeTimeoutMs: host.handshakeTimeoutMs,
    admit: (remoteAddress) => host.admit(remoteAddress),
    // A plain client can read why: a fatal ERROR (request id 0). A TLS client could not.
    refuse: (socket, reason) => { if (secureContext === undefined) socket.write(encodeErrorFrame(0, ErrorCode.ERR_LIMIT, reason)); },
    onEvent: host.onEvent,
    readBuffer: (serverReadBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES)),
    onConnection({ socket, established, reads }) {
      const sends = new SendBuffers(socket);
      const session = host.accept({
        remoteAddress: formatRemoteAddress(socket.remoteAddress, socket.remotePort),
        write(bytes) {
          // Backpressure: a client that does not read its replies stops being read from.
          if (!socket.write(bytes)) socket.pause();
        },
        writeCopyOf(bytes) {
          if (!sends.send(bytes)) socket.pause();
        },
        bufferedBytes: () => socket.writableLength,
        end() {
          // Sent after a fatal ERROR: read nothing more (the peer may still be sending the body
          // of a frame it announced), and close once the ERROR is out, or after END_GRACE_MS.
          socket.pause();
          socket.end(() => socket.destroy());
          setTimeout(() => socket.destroy(), END_GRACE_MS).unref();
        },
        destroy() {
          socket.destroy();
        },
        established,
      });
      if (session === undefined) {
        socket.destroy();
        return;
      }
      if (reads !== undefined) reads.onChunk = (chunk) => session.onData(chunk);
      else socket.on('data', (chunk: Buffer) => session.onData(chunk));
      socket.on('drain', () => {
        session.onWritable();
        socket.resume();
      });
      socket.on('close', () => session.close());
    },
  });
}

/** A port held for the workers until they listen on it (reservePort). */
export interface PortReservation {
  readonly port: number;
  release(): Promise<void>;
}

/**
 * Picks a free port (port 0) and holds it with an SO_REUSEPORT listener of this process until
 * release(), so the workers can join it and no other process can be given it meanwhile. The
 * kernel never hands a port held by a listener to another bind of port 0, SO_REUSEPORT or not.
 * (Probing with probePort and releasing the port before the workers listened left a window in
 * which another broker's probe could be given the same port: both then listened on it with
 * SO_REUSEPORT and the kernel split the connections between them.) Nobody knows the port before
 * the engine reports it, so a connection that reaches the placeholder is a stray one: it is closed.
 */
export function reservePort(host: string): Promise<PortReservation> {
  return new Promise((resolve, reject) => {
    const holder = net.createServer({ pauseOnConnect: true }, (socket) => socket.destroy());
    holder.once('error', reject);
    holder.listen({ host, port: 0, reusePort: true }, () => {
      const port = (holder.address() as net.AddressInfo).port;
      resolve({ port, release: () => new Promise<void>((done) => holder.close(() => done())) });
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

/**
 * probePort for unix sockets: rejects with EADDRINUSE when another process serves `path`
 * (a file nobody serves any more is replaced when the first worker listens).
 */
export function probeUnixPath(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      reject(Object.assign(new Error(`listen EADDRINUSE: address already in use ${path}`), { code: 'EADDRINUSE' }));
    });
    probe.once('error', () => resolve());
  });
}

/** Client side: a connected tcp://, tls:// or unix:// socket as a Transport. */
export function connectSocket(url: BrokerUrl, timeoutMs: number, tlsOptions: TlsClientOptions | undefined): Promise<Transport> {
  const where = url.scheme === 'unix' ? url.path : `${url.host}:${url.port}`;
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    // Plain sockets read into one buffer of their own (`onread`), so a read allocates nothing
    // (Node otherwise allocates 64 KiB per read and trims it); the connection copies a chunk
    // only when messages keep views of it (Transport.reusesChunks). TLS sockets cannot.
    let deliver: (chunk: Uint8Array) => void = () => {};
    const onread = () => ({ buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: (n: number, buf: Uint8Array): boolean => { deliver(buf.subarray(0, n)); return true; } });
    if (url.scheme === 'tls') {
      // SNI only for names: Node refuses an IP address as servername.
      const servername = net.isIP(url.host) === 0 ? url.host : undefined;
      socket = tls.connect({ host: url.host, port: url.port, servername, ...tlsOptions } as tls.ConnectionOptions);
    } else if (url.scheme === 'unix') {
      socket = net.connect({ path: url.path, onread: onread() });
    } else {
      socket = net.connect({ host: url.host, port: url.port, noDelay: true, onread: onread() });
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TurboError('ERR_CONNECTION_CLOSED', `connect to ${where} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new TurboError('ERR_CONNECTION_CLOSED', `cannot connect to ${where}: ${err.message}`, { cause: err }));
    });
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new TurboError('ERR_CONNECTION_CLOSED', `cannot connect to ${where}: the connection closed${url.scheme === 'tls' ? ' during the TLS handshake' : ''}`));
    });
    socket.once(url.scheme === 'tls' ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      if (url.scheme === 'tls') socket.setNoDelay(true);
      const reusesChunks = url.scheme !== 'tls';
      const sends = new SendBuffers(socket);
      const transport: Transport = {
        onData: () => {},
        onClose: () => {},
        reusesChunks,
        send(bytes) {
          socket.write(bytes);
        },
        sendCopyOf(bytes) {
          sends.send(bytes);
        },
        close() {
          socket.end();
          socket.destroySoon();
        },
      };
      if (reusesChunks) deliver = (chunk) => transport.onData(chunk);
      else socket.on('data', (chunk: Buffer) => transport.onData(chunk));
      let closeError: Error | undefined;
      socket.on('error', (err) => { closeError = err; });
      socket.on('close', () => transport.onClose(closeError));
      resolve(transport);
    });
  });
}

export { formatRemoteAddress } from './remote-address.ts';
