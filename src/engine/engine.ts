// TurboEngine: the broker you embed. The main thread owns the shared memory, starts one
// worker per core (each instantiates the same Wasm core over that memory and listens on
// the same port with SO_REUSEPORT), and serves getQueue() handles in-process: they speak
// the same protocol to a Session on the main thread through a pipe, so embedded and
// networked queues behave identically.

import { Worker } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { newSharedMemory, instantiateSharedCore } from '../core/wasm.ts';
import { sharedCoreModule } from '../core/load.ts';
import { CoreThread } from '../core/thread.ts';
import { Session } from './session.ts';
import { resolveOptions, formatUrl, type EngineOptions, type ResolvedOptions, type Logger, type ListenSpec } from './options.ts';
import { probePort } from '../transport/tcp.ts';
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
  /** Bytes of message storage in use (counted against maxMemoryMiB). */
  messageBytes: number;
  /** Messages waiting for their delayMs, over every topic. */
  delayed: number;
  /** Since start, over every thread: messages dropped (maxLength drop-oldest, dead letters with no dead-letter topic, lost to memory), dead-lettered, redelivered (a lease ended without ack) and acked. */
  events: { dropped: number; deadLettered: number; redelivered: number; acked: number };
}

const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };

export class TurboEngine {
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  #url: string;
  #urls: string[];
  #state: State = 'new';
  #memory: WebAssembly.Memory | undefined;
  #thread: CoreThread | undefined;
  #workers: { worker: Worker; api: Comlink.Remote<WorkerApi>; threadId: number }[] = [];
  #embedded: TurboClient | undefined;
  #embeddedSessions = new Set<Session>();

  constructor(url?: string, options: EngineOptions = {}) {
    this.#options = resolveOptions(url, options);
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
      const data: WorkerData = { memory: this.#memory, module, options: this.#options };
      const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
      for (let i = 0; i < this.#options.threads; i++) {
        const worker = new Worker(workerUrl, { workerData: data });
        const entry = { worker, api: Comlink.wrap<WorkerApi>(nodeEndpoint(worker)), threadId: 0 };
        worker.on('error', (err) => this.#logger.error({ err, threadId: entry.threadId }, 'worker failed'));
        worker.on('exit', (code) => this.#workerExited(entry, code));
        this.#workers.push(entry);
      }
      // Each port must be free (see probePort; port 0 picks one), then every worker listens
      // on it with SO_REUSEPORT.
      const specs: ListenSpec[] = [];
      for (const spec of this.#options.listen) specs.push({ ...spec, port: await probePort(spec.host, spec.port) });
      await Promise.all(this.#workers.map(async (w) => {
        w.threadId = (await w.api.stats()).threadId;
        await w.api.listen(specs);
      }));
      this.#urls = specs.map(formatUrl);
      this.#url = this.#urls[0]!;
      this.#embedded = await TurboClient.connectTransport(this.#pipe(), this.#url);
      this.#state = 'running';
      this.#logger.info({ urls: this.#urls, threads: this.#options.threads }, 'turbomq listening');
    } catch (err) {
      await this.#shutdown();
      this.#state = 'stopped';
      throw err;
    }
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
      messageBytes: e ? Number(e.queueBytes()) : 0,
      delayed: e ? e.delaysCount() : 0,
      events: {
        dropped: e ? Number(e.eventCount(0)) : 0,
        deadLettered: e ? Number(e.eventCount(1)) : 0,
        redelivered: e ? Number(e.eventCount(2)) : 0,
        acked: e ? Number(e.eventCount(3)) : 0,
      },
    };
  }

  /**
   * A worker ended. During stop that is expected; otherwise it crashed: its connections are
   * gone, and waiters it had parked would swallow the messages handed to them, so the core
   * reaps its thread (assembly/reap.ts: waiters, claims, handed and leased
   * messages go back) and the other workers go on.
   */
  #workerExited(entry: { worker: Worker; threadId: number }, code: number): void {
    const index = this.#workers.findIndex((w) => w.worker === entry.worker);
    if (index < 0 || this.#state === 'stopping' || this.#state === 'stopped' || this.#state === 'destroyed') return;
    this.#workers.splice(index, 1);
    const returned = entry.threadId !== 0 && this.#thread ? this.#thread.exports.reapThread(entry.threadId, Date.now()) : 0;
    // The dead thread's timers died with it: delayed messages it was watching are due on ours.
    this.#thread?.armDelayTimer(this.#thread.exports.delaysNextDue());
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
    let open = true;
    const transport: Transport = {
      onData: () => {},
      onClose: () => {},
      send: (bytes) => {
        if (open) session.onData(bytes);
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
    sessions.add(session);
    return transport;
  }
}
