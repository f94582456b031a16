// A broker worker thread: instantiates the shared core over the engine's memory, listens
// on the engine's ports (SO_REUSEPORT: the kernel spreads connections over the workers),
// and serves every connection it is given. Controlled by the main thread through comlink
// (WorkerApi, below); it asks the main thread for what only the main thread knows (whole-
// broker statistics, a graceful stop) and sends it its log lines over its control port
// (ControlApi, served by src/engine/workers.ts). Counters go to shared memory, never over a
// port (src/engine/metrics.ts).

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import tls from 'node:tls';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { instantiateSharedCore } from '../core/wasm.ts';
import { CoreThread } from '../core/thread.ts';
import { openThreadLog } from './durability.ts';
import { Session } from './session.ts';
import { ParkedPopBudget } from './parked.ts';
import { countersOf, sampleLoopUtilization } from './metrics.ts';
import type { OperatorHandler } from './operator.ts';
import { Handshake } from './handshake.ts';
import { Authenticator } from './auth.ts';
import { ConnectionCounter } from './connections.ts';
import { listenTcp, type SessionHost } from '../transport/tcp.ts';
import { listenWebSocket } from '../transport/websocket.ts';
import { ErrorCode, HEADER_BYTES } from '../protocol.ts';
import { usesTls, usesWebSocket, type BrokerUrl } from '../url.ts';
import type { ResolvedOptions } from './options.ts';

export interface WorkerData {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  options: ResolvedOptions;
  /** This worker's end of its control channel (ControlApi). */
  controlPort: MessagePort;
  /** Tests only: throw right after attaching, as a worker that cannot start would. */
  failStartForTest?: boolean;
  /** ConnectionCounter's buffer, shared by every worker, and this worker's slot in it. */
  connections: SharedArrayBuffer;
  workerIndex: number;
}

export interface WorkerStats {
  threadId: number;
  connections: number;
  connectionsTotal: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** What a worker asks of the main thread (served per worker by src/engine/workers.ts). */
export interface ControlApi {
  /** Sent first, right after attaching: the main thread can reap this id whatever happens next. */
  attached(threadId: number): void;
  log(level: LogLevel, fields: Record<string, unknown>, msg: string): void;
  /** The whole broker's statistics as JSON (SERVER_STATS). */
  serverStats(): Promise<string>;
  /** A client asked the broker to stop (SHUTDOWN). */
  shutdown(remoteAddress: string): void;
  /**
   * Resolves once the main thread has recovered the data directory (rejects if that failed).
   * Workers start while it recovers; opening this thread's log waits for it, since the log
   * picks its segment after the ones recovery read, and nothing is journaled before.
   */
  whenRecovered(): Promise<void>;
}

const { memory, module, options, controlPort, failStartForTest, connections: connectionsBuffer, workerIndex } = workerData as WorkerData;
const control = Comlink.wrap<ControlApi>(nodeEndpoint(controlPort));
const core = await instantiateSharedCore(memory, module);
const thread = new CoreThread(core);
void control.attached(thread.id);
if (failStartForTest === true) throw new Error('turbomq: worker start failure requested by a test');
const counters = countersOf(thread);
const stopSampling = sampleLoopUtilization(counters);

function log(level: LogLevel, fields: Record<string, unknown>, msg: string): void {
  void control.log(level, fields, msg);
}

function errorFields(err: Error): Record<string, unknown> {
  return { type: err.name, message: err.message, stack: err.stack };
}

// Connection events are logged once per connection, but a flood of bad clients must not
// flood the log: at most CONNECTION_LOGS_PER_SECOND lines a second, then one line with the
// count of those left out.
const CONNECTION_LOGS_PER_SECOND = 50;
let logWindowStart = 0;
let logsInWindow = 0;
let logsSuppressed = 0;

function logConnection(fields: Record<string, unknown>, msg: string): void {
  const now = Date.now();
  if (now - logWindowStart >= 1000) {
    if (logsSuppressed > 0) log('warn', { suppressed: logsSuppressed }, 'connection events not logged (over the rate limit)');
    logWindowStart = now;
    logsInWindow = 0;
    logsSuppressed = 0;
  }
  if (logsInWindow++ < CONNECTION_LOGS_PER_SECOND) log('warn', fields, msg);
  else logsSuppressed++;
}

thread.onHandlerError = (err) => log('error', { err: errorFields(err) }, 'waiter delivery failed');
thread.onLogError = (err) => log('error', { err: errorFields(err) }, 'turbomq log: changes could not be written yet (retrying)');
// With a data directory this worker journals to its own log (thread index = slot + 1; the
// main thread is 0) before it serves anyone.
/** The storage layer's logger: its lines go to the main thread like this worker's own. */
const forward = (level: LogLevel) => (obj: object | string, msg?: string) => log(level, typeof obj === 'string' ? {} : obj as Record<string, unknown>, msg ?? String(obj));
if (options.dataDir !== undefined) await control.whenRecovered();
const workerLog = options.dataDir === undefined ? undefined : await openThreadLog(options.dataDir, options.fsync, workerIndex + 1, thread, {
  info: forward('info'), warn: forward('warn'), error: forward('error'), debug: () => {},
});
thread.start();

interface Connection {
  session: Session;
  end(): void;
  close(): void;
}

const connections = new Set<Connection>();
const servers: { close(cb: () => void): void }[] = [];
const connectionCount = new ConnectionCounter(connectionsBuffer);
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
  maxOutputBytes: options.maxOutputBytes,
  parkedPops: new ParkedPopBudget(options.maxParkedPopsPerThread, counters, thread.exports),
};

function operatorFor(remoteAddress: string): OperatorHandler {
  return {
    authConfigured: auth !== undefined,
    serverStats: () => control.serverStats(),
    shutdown: () => { void control.shutdown(remoteAddress); },
  };
}

const host: SessionHost = {
  handshakeTimeoutMs: options.handshakeTimeoutMs,

  /** Caps, checked at accept before any work: this worker's, then the total (shared with the others). */
  admit(remoteAddress) {
    if (stopping) return 'the broker is stopping';
    let refused: string | undefined;
    let fields: Record<string, unknown> = {};
    if (admitted >= options.maxConnectionsPerThread) {
      refused = `too many connections on this worker thread (maxConnectionsPerThread ${options.maxConnectionsPerThread})`;
      fields = { reason: 'maxConnectionsPerThread', limit: options.maxConnectionsPerThread };
    } else if (!connectionCount.take(workerIndex)) {
      refused = connectionCount.capIsFdLimit
        ? `too many connections: the process's file-descriptor limit leaves room for ${connectionCount.cap}`
        : `too many connections (maxConnections ${connectionCount.cap})`;
      fields = { reason: connectionCount.capIsFdLimit ? 'fileDescriptors' : 'maxConnections', limit: connectionCount.cap };
    }
    if (refused !== undefined) {
      counters.onConnectionRefused();
      logConnection({ remoteAddress, ...fields }, 'connection refused: connection limit reached');
      return refused;
    }
    admitted++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      admitted--;
      connectionCount.release(workerIndex);
    };
  },

  accept(io) {
    if (stopping) return undefined;
    const { remoteAddress } = io;
    let closeLogged = false;
    const closedFor = (reason: string, code: number | undefined) => {
      if (closeLogged) return;
      closeLogged = true;
      if (code === ErrorCode.ERR_NO_MEMORY) return logConnection({ remoteAddress, reason, code: ErrorCode.nameOf(code) }, 'connection closed: broker out of memory');
      if (code === ErrorCode.ERR_LIMIT) return logConnection({ remoteAddress, reason, code: ErrorCode.nameOf(code) }, 'connection closed: output limit');
      counters.onProtocolError();
      logConnection({ remoteAddress, reason, ...(code === undefined ? {} : { code: ErrorCode.nameOf(code) }) }, 'connection closed: protocol error');
    };
    const sessionIo = {
      write: (bytes: Uint8Array) => {
        counters.onBytesSent(bytes.length);
        io.write(bytes);
      },
      ...(io.writeCopyOf === undefined ? {} : {
        writeCopyOf: (bytes: Uint8Array) => {
          counters.onBytesSent(bytes.length);
          io.writeCopyOf!(bytes);
        },
      }),
      bufferedBytes: () => io.bufferedBytes(),
      end: () => io.end(),
      destroy: () => io.destroy(),
      onError: (err: Error) => log('error', { remoteAddress, err: errorFields(err) }, 'connection closed after an internal error'),
      onFatal: (code: number | undefined, text: string) => closedFor(text, code),
      operator: operatorFor(remoteAddress),
    };
    const session = new Session(thread, sessionIo, limits);
    // Nothing reaches the session before HELLO and AUTH are done (src/engine/handshake.ts).
    const handshake = new Handshake(session, auth, {
      established: () => io.established(),
      end: () => io.end(),
      // Once per refused connection (rate-limited like every connection event); no token in it.
      authFailed: (reason) => logConnection({ remoteAddress, reason }, 'authentication failed'),
    }, options.maxFrameBytes + HEADER_BYTES);
    const connection: Connection = {
      session,
      end: () => io.end(),
      close: () => {
        if (connections.delete(connection)) counters.onConnectionClosed();
        handshake.close();
        session.close();
      },
    };
    connections.add(connection);
    connectionsTotal++;
    counters.onConnectionOpened();
    return {
      onData: (chunk) => {
        counters.onBytesReceived(chunk.length);
        handshake.onData(chunk);
      },
      onWritable: () => session.onWritable(),
      close: connection.close,
      protocolError: (reason) => closedFor(reason, undefined),
    };
  },

  // A full listener pauses again and again: say so once per EVENT_QUIET_MS per kind of event.
  onEvent(event, details) {
    const now = performance.now();
    if (now - (lastEventAt.get(event) ?? -Infinity) < EVENT_QUIET_MS) return;
    lastEventAt.set(event, now);
    log('warn', { event, ...details }, `listener: ${event}`);
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

  /**
   * Graceful stop: no new connections, answer what was received, close every connection,
   * detach from the core. The counter block stays: the main thread folds it once this
   * worker has exited.
   */
  async stop(): Promise<void> {
    stopping = true;
    stopSampling();
    // server.close() waits for every connection to end; give in-flight work a moment, then end them.
    const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await Promise.race([Promise.all(closed), delay(50)]);
    for (const connection of [...connections]) connection.session.flush();
    if (workerLog !== undefined) {
      // Replies that wait for the log go out before the connections end.
      await thread.commit().catch(() => {});
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (const connection of [...connections]) {
      connection.end();
      connection.close();
    }
    thread.stop();
    await workerLog?.close();
  },

  stats(): WorkerStats {
    return { threadId: thread.id, connections: connections.size, connectionsTotal };
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
