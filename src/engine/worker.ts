// A broker worker thread: instantiates the shared core over the engine's memory, listens
// on the engine's ports (SO_REUSEPORT: the kernel spreads connections over the workers),
// and serves every connection it is given. Controlled by the main thread through comlink.

import { parentPort, workerData } from 'node:worker_threads';
import tls from 'node:tls';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { instantiateSharedCore } from '../core/wasm.ts';
import { CoreThread } from '../core/thread.ts';
import { Session } from './session.ts';
import { Handshake } from './handshake.ts';
import { Authenticator } from './auth.ts';
import { ConnectionCounter } from './connections.ts';
import { listenTcp, type SessionHost } from '../transport/tcp.ts';
import { listenWebSocket } from '../transport/websocket.ts';
import { HEADER_BYTES } from '../protocol.ts';
import { usesTls, usesWebSocket, type BrokerUrl } from '../url.ts';
import type { ResolvedOptions } from './options.ts';

export interface WorkerData {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  options: ResolvedOptions;
  /** ConnectionCounter's buffer, shared by every worker, and this worker's slot in it. */
  connections: SharedArrayBuffer;
  workerIndex: number;
}

export interface WorkerStats {
  threadId: number;
  connections: number;
  connectionsTotal: number;
}

const { memory, module, options, connections: connectionsBuffer, workerIndex } = workerData as WorkerData;
const core = await instantiateSharedCore(memory, module);
const thread = new CoreThread(core);
thread.onHandlerError = (err) => console.error(`turbomq worker ${thread.id}: waiter delivery failed: ${err.stack ?? err.message}`);
thread.start();

const sessions = new Set<{ session: Session; end(): void }>();
const servers: { close(cb: () => void): void }[] = [];
const connections = new ConnectionCounter(connectionsBuffer);
const auth = Authenticator.from(options);
const secureContext = options.listen.some((u) => usesTls(u.scheme)) ? tls.createSecureContext(options.tls as tls.SecureContextOptions) : undefined;
/** Sockets admitted and not closed yet (sessions, and connections still in TLS or an upgrade). */
let admitted = 0;
const lastEventAt = new Map<string, number>();
const EVENT_QUIET_MS = 10_000;
let connectionsTotal = 0;
let stopping = false;

const limits = {
  maxMessageBytes: options.maxMessageBytes,
  maxFrameBytes: options.maxFrameBytes,
  maxSubscriptions: options.maxSubscriptions,
  maxParkedPops: options.maxParkedPops,
};

const host: SessionHost = {
  handshakeTimeoutMs: options.handshakeTimeoutMs,

  /** Caps, checked at accept before any work: this worker's, then the total (shared with the others). */
  admit() {
    if (stopping) return 'the broker is stopping';
    if (admitted >= options.maxConnectionsPerThread) return `too many connections on this worker thread (maxConnectionsPerThread ${options.maxConnectionsPerThread})`;
    if (!connections.take(workerIndex)) {
      return connections.capIsFdLimit
        ? `too many connections: the process's file-descriptor limit leaves room for ${connections.cap}`
        : `too many connections (maxConnections ${connections.cap})`;
    }
    admitted++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      admitted--;
      connections.release(workerIndex);
    };
  },

  accept(io) {
    if (stopping) return undefined;
    const session = new Session(thread, { ...io, onError: (err) => console.error(`turbomq worker ${thread.id}: connection closed after an internal error: ${err.stack ?? err.message}`) }, limits);
    const handshake = new Handshake(session, auth, io, options.maxFrameBytes + HEADER_BYTES);
    const entry = { session, end: () => io.end() };
    sessions.add(entry);
    connectionsTotal++;
    return {
      onData: (chunk) => handshake.onData(chunk),
      close: () => {
        sessions.delete(entry);
        handshake.close();
        session.close();
      },
    };
  },

  // A full listener pauses again and again: say so once per EVENT_QUIET_MS per kind of event.
  onEvent(event, details) {
    const now = performance.now();
    if (now - (lastEventAt.get(event) ?? -Infinity) < EVENT_QUIET_MS) return;
    lastEventAt.set(event, now);
    console.error(`turbomq worker ${thread.id}: ${event} ${JSON.stringify(details)}`);
  },
};

const api = {
  /** Starts listening; returns the bound ports in the order given. */
  async listen(urls: BrokerUrl[]): Promise<number[]> {
    const ports: number[] = [];
    for (const url of urls) {
      // A unix socket cannot be shared with SO_REUSEPORT: the first worker serves it.
      if (url.scheme === 'unix' && workerIndex !== 0) {
        ports.push(0);
        continue;
      }
      const context = usesTls(url.scheme) ? secureContext : undefined;
      const server = usesWebSocket(url.scheme)
        ? await listenWebSocket(url, context, host, { maxPayload: options.maxFrameBytes, allowedOrigins: options.allowedOrigins })
        : await listenTcp(url, context, host);
      servers.push(server);
      ports.push(server.port);
    }
    return ports;
  },

  /** Graceful stop: no new connections, answer what was received, close every connection. */
  async stop(): Promise<void> {
    stopping = true;
    // server.close() waits for every connection to end; give in-flight work a moment, then end them.
    const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await Promise.race([Promise.all(closed), delay(50)]);
    for (const { session, end } of sessions) {
      session.flush();
      end();
      session.close();
    }
    sessions.clear();
    thread.stop();
  },

  stats(): WorkerStats {
    return { threadId: thread.id, connections: sessions.size, connectionsTotal };
  },

  /** Tests only (reached through TurboEngine's crashWorkerForTest symbol): an uncaught error. */
  crashForTest(): void {
    setImmediate(() => { throw new Error('turbomq: worker crash requested by a test'); });
  },
};

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type WorkerApi = typeof api;

Comlink.expose(api, nodeEndpoint(parentPort!));
