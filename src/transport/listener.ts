// Accepting connections, for every transport: one listening socket per worker and listen
// url (TCP ports shared by all workers with SO_REUSEPORT; a unix socket is served by one
// worker). It owns what happens between the kernel's accept and a connection's session:
//
//   accept -> admit (connection caps, file descriptors) -> TLS (tls://, wss://)
//          -> the transport (tcp.ts: session; websocket.ts: HTTP upgrade, then session)
//
// and one deadline over all of it: a connection that has not finished its handshake (TLS,
// the WebSocket upgrade, HELLO and AUTH) handshakeTimeoutMs after it was accepted is
// destroyed. The session side reports the end of the handshake with established().
//
// Full: when admit() refuses (a cap, or no file descriptors to spare), the connection gets a
// short refusal it can read (tcp: an ERROR frame) and the listener stops listening for a
// while (50 ms, doubling to 1 s while it stays full): the kernel sends new connections to
// the other workers, or refuses them when every worker is full, instead of this thread
// accepting and closing them as fast as clients retry. The same happens when accept fails
// with EMFILE/ENFILE. While a worker is paused its port stays served by the others; when
// all are paused, connections are refused (ECONNREFUSED) until one resumes.

import net from 'node:net';
import { formatRemoteAddress } from './remote-address.ts';
import tls from 'node:tls';
import { existsSync, unlinkSync } from 'node:fs';
import type { BrokerUrl } from '../url.ts';

/** A connection slot (call to give it back), or why there is none. */
export type Admission = (() => void) | string;

export interface AcceptedConnection {
  /** The connection's socket: a TLSSocket for tls:// and wss:// once TLS is up. */
  socket: net.Socket;
  /** The handshake is over: stops the deadline. */
  established(): void;
  /**
   * With ListenerOptions.readBuffer (plain connections): set `onChunk` to receive what the
   * socket reads (it emits no 'data'). Each chunk is a view of the shared read buffer, valid
   * only during the call. Set it in onConnection: nothing is read before that returns.
   */
  reads?: ChunkReader;
}

export interface ChunkReader {
  onChunk(chunk: Uint8Array): void;
}

export interface ListenerOptions {
  url: BrokerUrl;
  /** Set for tls:// and wss://. */
  secureContext: tls.SecureContext | undefined;
  handshakeTimeoutMs: number;
  /** Called at every accept, before any work is done for the connection. */
  /** `remoteAddress`: "host:port" of the peer, for logs. */
  admit(remoteAddress: string): Admission;
  /** Writes what a refused client can read (the listener then closes the socket). */
  refuse(socket: net.Socket, reason: string): void;
  /** A connection that was admitted (and whose TLS is up). */
  onConnection(connection: AcceptedConnection): void;
  /** Something an operator should know (a pause, a failed resume). */
  onEvent?(event: string, details: Record<string, unknown>): void;
  /**
   * Plain connections (no TLS) read into this buffer, shared by every connection of the
   * listener's thread, and hand each chunk to AcceptedConnection.reads (see adoptReads).
   */
  readBuffer?: Uint8Array;
}

const PAUSE_MIN_MS = 50;
const PAUSE_MAX_MS = 1000;

export class Listener {
  readonly #options: ListenerOptions;
  #server: net.Server | undefined;
  #port = 0;
  #closed = false;
  #pauseMs = PAUSE_MIN_MS;
  #resumeTimer: NodeJS.Timeout | undefined;
  #paused = false;

  private constructor(options: ListenerOptions) {
    this.#options = options;
  }

  /** Listens on options.url; resolves once listening, rejects (EADDRINUSE, EACCES ...) if it cannot. */
  static async open(options: ListenerOptions): Promise<Listener> {
    const listener = new Listener(options);
    await listener.#listen();
    return listener;
  }

  /** The bound port (0 for unix sockets). */
  get port(): number {
    return this.#port;
  }

  /** True while it does not listen because it was full. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Stops listening for good (existing connections are the caller's to end). */
  close(cb: () => void): void {
    this.#closed = true;
    clearTimeout(this.#resumeTimer);
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return cb();
    server.close(() => cb());
  }

  #listen(): Promise<void> {
    const { url } = this.#options;
    // With a read buffer, a plain connection is accepted paused: adoptReads takes its handle
    // before it reads anything.
    const pauseOnConnect = this.#options.readBuffer !== undefined && this.#options.secureContext === undefined;
    const server = net.createServer({ noDelay: true, keepAlive: true, pauseOnConnect }, (socket) => this.#accept(socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = () => {
        server.off('error', reject);
        // After listening, an accept error must never reach the default handler (it would
        // throw and end the worker).
        server.on('error', (err: NodeJS.ErrnoException) => this.#onServerError(err));
        this.#server = server;
        const address = server.address();
        this.#port = typeof address === 'object' && address !== null ? address.port : 0;
        resolve();
      };
      if (url.scheme === 'unix') {
        removeStaleSocket(url.path).then(() => server.listen({ path: url.path }, done), reject);
      } else {
        server.listen({ host: url.host, port: url.port, reusePort: true }, done);
      }
    });
  }

  #onServerError(err: NodeJS.ErrnoException): void {
    if (err.code === 'EMFILE' || err.code === 'ENFILE') this.#pause('out of file descriptors');
    else this.#options.onEvent?.('accept failed', { code: err.code, message: err.message });
  }

  #accept(socket: net.Socket): void {
    const o = this.#options;
    socket.on('error', () => { /* 'close' follows */ });
    const admission = this.#closed ? 'the broker is stopping' : o.admit(formatRemoteAddress(socket.remoteAddress, socket.remotePort));
    if (typeof admission === 'string') {
      try {
        o.refuse(socket, admission);
      } finally {
        socket.destroySoon();
      }
      this.#pause(admission);
      return;
    }
    this.#pauseMs = PAUSE_MIN_MS; // it took one: not full any more
    let established = false;
    let connection: net.Socket = socket;
    const deadline = setTimeout(() => { if (!established) connection.destroy(); }, o.handshakeTimeoutMs);
    const established_ = () => {
      established = true;
      clearTimeout(deadline);
    };
    if (o.secureContext === undefined) {
      let reads: ChunkReader | undefined;
      if (o.readBuffer !== undefined) {
        const reader: ChunkReader = { onChunk: () => {} };
        const adopted = adoptReads(socket, o.readBuffer, reader);
        if (adopted !== undefined) {
          connection = socket = adopted;
          reads = reader;
        } else {
          socket.resume(); // no handle to move (already closed): read the usual way, to its 'close'
        }
      }
      socket.once('close', () => { clearTimeout(deadline); admission(); });
      o.onConnection({ socket, established: established_, reads });
      return;
    }
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: o.secureContext, requestCert: false });
    connection = secure;
    // A plain client, a failed handshake: destroyed here, the client sees the connection close.
    secure.on('error', () => secure.destroy());
    secure.once('close', () => { clearTimeout(deadline); admission(); });
    secure.once('secure', () => o.onConnection({ socket: secure, established: established_ }));
  }

  /** Stops accepting for #pauseMs (doubling while it stays full), then listens again. */
  #pause(reason: string): void {
    if (this.#paused || this.#closed) return;
    const server = this.#server;
    if (server === undefined) return;
    this.#paused = true;
    this.#server = undefined;
    const pauseMs = this.#pauseMs;
    this.#pauseMs = Math.min(PAUSE_MAX_MS, pauseMs * 2);
    this.#options.onEvent?.('listener paused', { reason, pauseMs });
    server.close();
    this.#resumeTimer = setTimeout(() => this.#resume(), pauseMs);
  }

  #resume(): void {
    if (this.#closed) return;
    this.#listen().then(
      () => {
        this.#paused = false;
        if (this.#closed) this.close(() => {});
      },
      (err: NodeJS.ErrnoException) => {
        // No descriptor for a new socket yet, or the port was taken meanwhile: try again later.
        this.#options.onEvent?.('listener resume failed', { code: err.code, message: err.message });
        const pauseMs = this.#pauseMs;
        this.#pauseMs = Math.min(PAUSE_MAX_MS, pauseMs * 2);
        this.#resumeTimer = setTimeout(() => this.#resume(), pauseMs);
      },
    );
  }
}

/**
 * The accepted (paused) socket's connection, as a new socket that reads into `buffer` with
 * net.Socket's `onread` and gives each chunk to `reads.onChunk`.
 *
 * Why: a socket read the usual way allocates a 64 KiB buffer per read and pushes it through
 * the Readable stream (a Buffer, a nextTick and async-context bookkeeping per read). The
 * broker copies every chunk into the core's memory at once, so one buffer per thread serves
 * every connection. Node takes `onread` only when a socket is created, and net.Server creates
 * the sockets it accepts, so the accepted socket's handle (`_handle`) is moved to a socket
 * made with `onread`: the TCP handle, its fd, its noDelay and keepAlive stay as they are. The
 * accepted socket, left without a handle, is destroyed when the new one closes: that is only
 * the server's connection count (server.close() waits for it). Undefined when the accepted
 * socket has no handle any more.
 */
export function adoptReads(accepted: net.Socket, buffer: Uint8Array, reads: ChunkReader): net.Socket | undefined {
  const holder = accepted as unknown as { _handle: unknown };
  const handle = holder._handle;
  if (handle == null) return undefined;
  holder._handle = null;
  const socket = new net.Socket({
    handle,
    readable: true,
    writable: true,
    onread: { buffer, callback: (n: number, buf: Uint8Array): boolean => { reads.onChunk(buf.subarray(0, n)); return true; } },
  } as net.SocketConstructorOpts);
  // As for every accepted socket (#accept): an error (ECONNRESET on a write) is followed by
  // 'close'; unhandled it would throw and end the worker.
  socket.on('error', () => {});
  socket.once('close', () => accepted.destroy());
  return socket;
}

/**
 * A unix socket file left by a broker that did not close it is removed; one that another
 * process is serving is not (listen then fails with EADDRINUSE).
 */
function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return Promise.resolve();
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => { probe.destroy(); resolve(); });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') {
        try { unlinkSync(path); } catch { /* listen reports what is wrong */ }
      }
      resolve();
    });
  });
}
