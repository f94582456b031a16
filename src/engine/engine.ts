// TurboEngine: the broker you embed. The main thread owns the shared memory, starts one
// worker per core (each instantiates the same Wasm core over that memory and listens on
// the same port with SO_REUSEPORT), and serves getQueue() handles in-process: they speak
// the same protocol to a Session on the main thread through a pipe, so embedded and
// networked queues behave identically.

import { Worker } from 'node:worker_threads';
import tls from 'node:tls';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { newSharedMemory, instantiateSharedCore } from '../core/wasm.ts';
import { sharedCoreModule } from '../core/load.ts';
import { CoreThread } from '../core/thread.ts';
import { Session } from './session.ts';
import { Handshake } from './handshake.ts';
import { Authenticator } from './auth.ts';
import { ConnectionCounter, fileDescriptorRoom } from './connections.ts';
import { resolveOptions, exposedWithoutAuth, type EngineOptions, type ResolvedOptions, type Logger } from './options.ts';
import { formatUrl, type BrokerUrl } from '../url.ts';
import { probePort, probeUnixPath } from '../transport/tcp.ts';
import type { WorkerApi, WorkerData, WorkerStats } from './worker.ts';
import '../client/node.ts';
import { TurboClient } from '../client/client.ts';
import type { Queue } from '../client/queue.ts';
import type { Transport } from '../client/transport.ts';
import { TurboError } from '../errors.ts';

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped' | 'destroyed';

export interface EngineStats {
  threads: WorkerStats[];
  topics: number;
  bytesInUse: number;
  memoryBytes: number;
}

const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };

interface WorkerEntry {
  worker: Worker;
  api: Comlink.Remote<WorkerApi>;
  threadId: number;
  /** Its slot in the shared connection count. */
  index: number;
}

export class TurboEngine {
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  #url: string;
  #urls: string[];
  #state: State = 'new';
  #memory: WebAssembly.Memory | undefined;
  #thread: CoreThread | undefined;
  #workers: WorkerEntry[] = [];
  #connections: ConnectionCounter | undefined;
  #embedded: TurboClient | undefined;
  #embeddedSessions = new Set<Session>();

  constructor(url?: string, options: EngineOptions = {}) {
    this.#options = resolveOptions(url, options);
    // Checked here, so that a bad users entry or PEM fails at construction, not in a worker.
    Authenticator.from(this.#options);
    if (this.#options.tls !== undefined) {
      try {
        tls.createSecureContext(this.#options.tls as tls.SecureContextOptions);
      } catch (err) {
        throw new TurboError('ERR_INVALID_ARGUMENT', `tls: cannot use the certificate and key: ${(err as Error).message}`, { cause: err });
      }
    }
    this.#logger = options.logger ?? silentLogger;
    this.#urls = this.#options.listen.map(formatUrl);
    this.#url = this.#urls[0]!;
  }

  /** The first listen url, with the real port once running. */
  get url(): string {
    return this.#url;
  }

  /** Every listen url (tcp and ws), with real ports once running. */
  get urls(): string[] {
    return [...this.#urls];
  }

  get threads(): number {
    return this.#options.threads;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  /** Starts the workers; resolves once every worker listens. */
  async run(): Promise<void> {
    if (this.#state !== 'new' && this.#state !== 'stopped') throw new TurboError('ERR_INVALID_ARGUMENT', `engine cannot run: it is ${this.#state}`);
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    if (major < 22 || (major === 22 && minor < 12)) {
      throw new TurboError('ERR_INVALID_ARGUMENT', `turbomq needs Node >= 22.12 (workers share the port with reusePort); this is Node ${process.versions.node}`);
    }
    this.#state = 'starting';
    try {
      if (this.#memory === undefined) {
        this.#memory = newSharedMemory(this.#options.initialMemoryMiB * 16);
        this.#thread = new CoreThread(await instantiateSharedCore(this.#memory, sharedCoreModule()));
        this.#thread.exports.setQueueLimit(BigInt(this.#options.maxMemoryMiB) << 20n);
      }
      this.#thread!.start();
      const module = sharedCoreModule();
      const connections = ConnectionCounter.create(this.#options.threads, this.#options.maxConnections);
      this.#connections = connections;
      const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
      for (let i = 0; i < this.#options.threads; i++) {
        const data: WorkerData = { memory: this.#memory, module, options: this.#options, connections: connections.buffer, workerIndex: i };
        const worker = new Worker(workerUrl, { workerData: data });
        const entry: WorkerEntry = { worker, api: Comlink.wrap<WorkerApi>(nodeEndpoint(worker)), threadId: 0, index: i };
        worker.on('error', (err) => this.#logger.error({ err, threadId: entry.threadId }, 'worker failed'));
        worker.on('exit', (code) => this.#workerExited(entry, code));
        this.#workers.push(entry);
      }
      // Each port must be free (see probePort; port 0 picks one), then every worker listens
      // on it with SO_REUSEPORT.
      const specs: BrokerUrl[] = [];
      for (const spec of this.#options.listen) {
        if (spec.scheme === 'unix') await probeUnixPath(spec.path);
        specs.push(spec.scheme === 'unix' ? spec : { ...spec, port: await probePort(spec.host, spec.port) });
      }
      await Promise.all(this.#workers.map(async (w) => {
        w.threadId = (await w.api.stats()).threadId;
        await w.api.listen(specs);
      }));
      this.#urls = specs.map(formatUrl);
      this.#url = this.#urls[0]!;
      this.#capConnectionsByFileDescriptors(connections);
      this.#embedded = await TurboClient.connectTransport(this.#pipe(), this.#url);
      this.#state = 'running';
      this.#logger.info({ urls: this.#urls, threads: this.#options.threads }, 'turbomq listening');
      this.#warnIfOpen(specs);
    } catch (err) {
      await this.#shutdown();
      this.#state = 'stopped';
      throw err;
    }
  }

  /**
   * Every connection takes a file descriptor: the total cap is at most what the process's
   * limit leaves, so that the broker refuses connections (and its listeners back off)
   * before accept starts failing with EMFILE.
   */
  #capConnectionsByFileDescriptors(connections: ConnectionCounter): void {
    const room = fileDescriptorRoom();
    if (room === undefined || room >= this.#options.maxConnections) return;
    connections.setCap(Math.max(0, room), true);
    const log = room < 1 ? this.#logger.error.bind(this.#logger) : this.#logger.warn.bind(this.#logger);
    log({ maxConnections: this.#options.maxConnections, room: Math.max(0, room) }, room < 1
      ? 'the file-descriptor limit (ulimit -n) leaves no room for connections: every connection is refused'
      : `the file-descriptor limit (ulimit -n) caps connections at ${room}, below maxConnections`);
  }

  /** Says so when anyone who can reach the broker may use it. */
  #warnIfOpen(urls: BrokerUrl[]): void {
    const open = exposedWithoutAuth({ ...this.#options, listen: urls }).map(formatUrl);
    if (open.length === 0) return;
    const message = `turbomq listens beyond loopback (${open.join(', ')}) without auth: anyone who can reach it may push and pop. Set --auth-token or --users (authToken, users).`;
    if (this.#logger === silentLogger) process.emitWarning(message, { code: 'TURBOMQ_NO_AUTH' });
    else this.#logger.warn({ urls: open }, message);
  }

  /** Connections open now, over every worker (tcp, tls, ws and wss). */
  get connections(): number {
    return this.#connections?.total ?? 0;
  }

  /** A queue served in-process (same API and semantics as TurboClient.getQueue). */
  getQueue(name: string): Queue {
    if (this.#state !== 'running' || this.#embedded === undefined) throw new TurboError('ERR_CONNECTION_CLOSED', 'the engine is not running: await engine.run() first');
    return this.#embedded.getQueue(name);
  }

  /** Graceful stop: stop accepting, answer what was received, close connections, end workers. */
  async stop(): Promise<void> {
    if (this.#state !== 'running' && this.#state !== 'starting') return;
    this.#state = 'stopping';
    await this.#shutdown();
    this.#state = 'stopped';
    this.#logger.info('turbomq stopped');
  }

  /** stop() if running, then drop the shared memory. The engine is unusable afterwards. */
  async destroy(): Promise<void> {
    if (this.#state === 'destroyed') return;
    await this.stop();
    if (this.#thread !== undefined) this.#thread.stop();
    this.#thread = undefined;
    this.#memory = undefined;
    this.#state = 'destroyed';
  }

  /** Statistics from every worker and the shared core. */
  async stats(): Promise<EngineStats> {
    const e = this.#thread?.exports;
    const threads = await Promise.all(this.#workers.map((w) => w.api.stats()));
    return {
      threads,
      topics: e ? e.topicCount() : 0,
      bytesInUse: e ? Number(e.bytesInUse()) : 0,
      memoryBytes: this.#memory ? this.#memory.buffer.byteLength : 0,
    };
  }

  /**
   * A worker ended. During stop that is expected; otherwise it crashed: its connections are
   * gone, and waiters it had parked would swallow the messages handed to them, so the core
   * reaps its thread (assembly/waiters.ts reapThread) and the other workers go on.
   */
  #workerExited(entry: WorkerEntry, code: number): void {
    const index = this.#workers.findIndex((w) => w.worker === entry.worker);
    if (index < 0 || this.#state === 'stopping' || this.#state === 'stopped' || this.#state === 'destroyed') return;
    this.#workers.splice(index, 1);
    this.#connections?.resetWorker(entry.index); // its sockets closed with it
    const returned = entry.threadId !== 0 && this.#thread ? this.#thread.exports.reapThread(entry.threadId) : 0;
    this.#logger.error({ threadId: entry.threadId, code, returned, workersLeft: this.#workers.length }, 'worker exited unexpectedly; its waiters were reaped');
  }

  /** Tests only: makes worker `index` die of an uncaught error. */
  async [Symbol.for('turbomq.crashWorkerForTest')](index: number): Promise<number> {
    const w = this.#workers[index]!;
    const exited = new Promise<void>((resolve) => w.worker.once('exit', () => resolve()));
    await w.api.crashForTest();
    await exited;
    return w.threadId;
  }

  async #shutdown(): Promise<void> {
    const embedded = this.#embedded;
    this.#embedded = undefined;
    if (embedded !== undefined) await embedded.close();
    for (const session of this.#embeddedSessions) session.close();
    this.#embeddedSessions.clear();
    await Promise.all(this.#workers.map(async ({ worker, api }) => {
      try {
        await api.stop();
      } catch { /* a dead worker has nothing to stop */ }
      api[Comlink.releaseProxy]();
      await worker.terminate();
    }));
    this.#workers = [];
  }

  /** An in-process connection to a Session on the main thread. */
  #pipe(): Transport {
    const thread = this.#thread!;
    const sessions = this.#embeddedSessions;
    let session: Session;
    let handshake: Handshake;
    let open = true;
    const transport: Transport = {
      onData: () => {},
      onClose: () => {},
      send: (bytes) => {
        if (open) handshake.onData(bytes);
      },
      close: () => {
        if (!open) return;
        open = false;
        sessions.delete(session);
        session.close();
        queueMicrotask(() => transport.onClose());
      },
    };
    session = new Session(thread, {
      // Replies are delivered on a later microtask, like bytes from a socket would be.
      write: (bytes) => queueMicrotask(() => { if (open) transport.onData(bytes); }),
      end: () => transport.close(),
    }, {
      maxMessageBytes: this.#options.maxMessageBytes,
      maxFrameBytes: this.#options.maxFrameBytes,
      maxSubscriptions: Number.MAX_SAFE_INTEGER,
      maxParkedPops: Number.MAX_SAFE_INTEGER,
    });
    // In-process and trusted: no auth, no deadline (the embedded client still says HELLO and AUTH).
    handshake = new Handshake(session, undefined, { established() {}, end: () => transport.close() }, Number.MAX_SAFE_INTEGER);
    sessions.add(session);
    return transport;
  }
}
