// TurboEngine: the broker you embed. The main thread owns the shared memory, starts one
// worker per core (each instantiates the same Wasm core over that memory and listens on
// the same port with SO_REUSEPORT), and serves getQueue() handles in-process: they speak
// the same protocol to a Session on the main thread through a pipe, so embedded and
// networked queues behave identically.

import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { newSharedMemory, instantiateSharedCore } from '../core/wasm.ts';
import { sharedCoreModule } from '../core/load.ts';
import { CoreThread } from '../core/thread.ts';
import { Session } from './session.ts';
import { ParkedPopBudget } from './parked.ts';
import { Handshake } from './handshake.ts';
import { Authenticator } from './auth.ts';
import { ConnectionCounter, fileDescriptorRoom } from './connections.ts';
import { resolveOptions, exposedWithoutAuth, type EngineOptions, type ResolvedOptions, type Logger } from './options.ts';
import { formatUrl, type BrokerUrl } from '../url.ts';
import { probePort, probeUnixPath, reservePort, type PortReservation } from '../transport/tcp.ts';
import { WorkerPool } from './workers.ts';
import { Readiness } from './readiness.ts';
import { coreMessageStats, collectStats, sumCounters, type EngineStats, type StatsSource } from './stats.ts';
import { disposeCounters, zeroCounters, type CounterValues } from './metrics.ts';
import { BrokerMetrics, type MetricsSnapshot } from './prometheus.ts';
import { listenHttp, type MonitoringServer } from './http.ts';
import type { OperatorHandler } from './operator.ts';
import '../client/node.ts';
import { TurboClient } from '../client/client.ts';
import type { Queue } from '../client/queue.ts';
import type { Transport } from '../client/transport.ts';
import { TurboError } from '../errors.ts';
import { DataDirectory } from './durability.ts';

/** Embedded connections are the application's own: their parked pops are not capped. */
const EMBEDDED_PARKED_POPS = new ParkedPopBudget(Number.MAX_SAFE_INTEGER);

export type { EngineStats } from './stats.ts';

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped' | 'destroyed';

const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };

/** Tests only: an EngineOptions key whose value `true` makes every worker fail right after it attached. */
const FAIL_WORKER_START_FOR_TEST = Symbol.for('turbomq.failWorkerStartForTest');

export class TurboEngine {
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #onShutdownRequest: (() => void | Promise<void>) | undefined;
  readonly #failWorkerStartForTest: boolean;
  #url: string;
  #urls: string[];
  #state: State = 'new';
  #memory: WebAssembly.Memory | undefined;
  #thread: CoreThread | undefined;
  #pool: WorkerPool | undefined;
  #connections: ConnectionCounter | undefined;
  #embedded: TurboClient | undefined;
  #embeddedSessions = new Set<Session>();
  readonly #readiness = new Readiness();
  /** Counters of worker threads that ended (metrics.ts retireCounters). */
  readonly #retired: CounterValues = zeroCounters();
  #workerRestarts = 0;
  #startedAt = 0;
  #http: MonitoringServer | undefined;
  #metrics: BrokerMetrics | undefined;
  #mainLoop = performance.eventLoopUtilization();
  /** The data directory (option dataDir) while running. */
  #data: DataDirectory | undefined;
  #shutdownRequested = false;

  constructor(url?: string, options: EngineOptions = {}) {
    this.#options = resolveOptions(url, options);
    this.#logger = options.logger ?? silentLogger;
    // Checked here, so that a bad users entry or PEM fails at construction, not in a worker.
    Authenticator.from(this.#options);
    if (this.#options.tls !== undefined) {
      try {
        tls.createSecureContext(this.#options.tls as tls.SecureContextOptions);
      } catch (err) {
        throw new TurboError('ERR_INVALID_ARGUMENT', `tls: cannot use the certificate and key: ${(err as Error).message}`, { cause: err });
      }
    }
    this.#onShutdownRequest = options.onShutdownRequest;
    this.#failWorkerStartForTest = (options as Record<symbol, unknown>)[FAIL_WORKER_START_FOR_TEST] === true;
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

  /** The monitoring endpoint (option `http`), with the real port once running; undefined when off. */
  get httpUrl(): string | undefined {
    return this.#http?.url;
  }

  get threads(): number {
    return this.#options.threads;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  /** What GET /readyz answers: ready once running with every worker listening and recovery done. */
  get ready(): boolean {
    return this.#waitingFor().length === 0;
  }

  #waitingFor(): string[] {
    if (this.#state !== 'running') return [this.#state === 'new' || this.#state === 'starting' ? 'starting' : this.#state];
    return this.#readiness.waitingFor;
  }

  /**
   * Starts the workers; resolves once every worker listens. Rejects with the reason if a
   * worker cannot start (and leaves the engine stopped: run() may be called again).
   */
  async run(): Promise<void> {
    if (this.#state !== 'new' && this.#state !== 'stopped') throw new TurboError('ERR_INVALID_ARGUMENT', `engine cannot run: it is ${this.#state}`);
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    if (major < 22 || (major === 22 && minor < 12)) {
      throw new TurboError('ERR_INVALID_ARGUMENT', `turbomq needs Node >= 22.12 (workers share the port with reusePort); this is Node ${process.versions.node}`);
    }
    this.#state = 'starting';
    this.#startedAt = Date.now();
    this.#shutdownRequested = false;
    try {
      if (this.#memory === undefined) {
        this.#memory = newSharedMemory(this.#options.initialMemoryMiB * 16);
        this.#thread = new CoreThread(await instantiateSharedCore(this.#memory, sharedCoreModule()));
        this.#thread.exports.setQueueLimit(BigInt(this.#options.maxMemoryMiB) << 20n);
      }
      this.#thread!.start();
      // Monitoring first, so /healthz and /readyz answer (503) while the rest starts.
      if (this.#options.http !== undefined) {
        this.#metrics ??= new BrokerMetrics(() => this.#metricsSnapshot());
        this.#http = await listenHttp(this.#options.http, {
          readiness: () => ({ ready: this.ready, waitingFor: this.#waitingFor() }),
          metrics: async () => ({ contentType: this.#metrics!.contentType, body: await this.#metrics!.scrape() }),
          stats: () => this.stats(),
        }, this.#logger);
      }
      const connections = ConnectionCounter.create(this.#options.threads, this.#options.maxConnections);
      this.#connections = connections;
      this.#capConnectionsByFileDescriptors(connections);
      // The workers start while the main thread recovers the data directory (starting two
      // took 180-270 ms here, most of an empty start): each waits for `recovered` before it
      // opens its own log (worker.ts), and none listens before both are done.
      const recovered = Promise.withResolvers<void>();
      recovered.promise.catch(() => {}); // (the workers waiting on it carry the failure)
      const pool = new WorkerPool({
        connections,
        core: this.#thread!.core,
        onReaped: () => this.#thread?.armDelayTimer(this.#thread.exports.delaysNextDue()),
        memory: this.#memory,
        module: sharedCoreModule(),
        options: this.#options,
        logger: this.#logger,
        retired: this.#retired,
        holdReadiness: (reason) => this.#readiness.hold(reason),
        serverStats: async () => JSON.stringify(await this.stats()),
        shutdown: (remoteAddress) => this.#remoteShutdown(remoteAddress),
        failStartForTest: this.#failWorkerStartForTest,
        recovered: recovered.promise,
      });
      this.#pool = pool;
      const started = pool.start(this.#options.threads);
      started.catch(() => {}); // awaited below, once recovery is done
      const releaseRecovery = this.#readiness.hold('recovery');
      try {
        await this.#recover();
        recovered.resolve();
      } catch (err) {
        recovered.reject(err as Error);
        throw err;
      } finally {
        releaseRecovery();
      }
      await started;
      // Each port must be free (see probePort), then every worker listens on it with
      // SO_REUSEPORT. Port 0 is picked and held by a placeholder until the workers listen
      // (see reservePort), so no other process can be given it in between.
      const specs: BrokerUrl[] = [];
      const reserved: PortReservation[] = [];
      try {
        for (const spec of this.#options.listen) {
          if (spec.scheme === 'unix') {
            await probeUnixPath(spec.path);
            specs.push(spec);
          } else if (spec.port === 0) {
            const r = await reservePort(spec.host);
            reserved.push(r);
            specs.push({ ...spec, port: r.port });
          } else {
            specs.push({ ...spec, port: await probePort(spec.host, spec.port) });
          }
        }
        await pool.listen(specs);
      } finally {
        await Promise.all(reserved.map((r) => r.release()));
      }
      this.#urls = specs.map(formatUrl);
      this.#url = this.#urls[0]!;
      this.#embedded = await TurboClient.connectTransport(this.#pipe(), this.#url);
      this.#state = 'running';
      this.#logger.info({ urls: this.#urls, threads: this.#options.threads, http: this.httpUrl }, 'turbomq listening');
      this.#warnIfOpen(specs);
    } catch (err) {
      await this.#shutdown();
      this.#state = 'stopped';
      throw err;
    }
  }

  /**
   * Durability hook: restores what the data directory holds before any worker listens
   * (readiness says 'recovery' meanwhile). Nothing to do without a data directory.
   */
  async #recover(): Promise<void> {
    const dir = this.#options.dataDir;
    if (dir === undefined) return;
    this.#data = await DataDirectory.open(dir, this.#options.fsync, this.#thread!, this.#logger);
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
    if (this.#thread !== undefined) {
      disposeCounters(this.#thread);
      this.#thread.stop();
    }
    this.#thread = undefined;
    this.#memory = undefined;
    this.#state = 'destroyed';
  }

  /**
   * The whole broker's statistics (also GET /stats and `turbomq stats`), read from shared
   * memory: counters of every thread, topics, memory, the largest topics.
   */
  async stats(): Promise<EngineStats> {
    return collectStats(this.#statsSource());
  }

  #statsSource(): StatsSource {
    return {
      core: this.#thread?.core,
      memory: this.#memory,
      mainThreadId: this.#thread?.id ?? 0,
      workerThreadIds: this.#pool?.threadIds ?? [],
      retired: this.#retired,
      startedAt: this.#startedAt,
      ready: this.ready,
      urls: this.urls,
      messageLimitBytes: this.#options.maxMemoryMiB * 1024 * 1024,
      workerRestarts: this.#workerRestarts + (this.#pool?.restarts ?? 0),
      storage: this.#data?.stats(),
    };
  }

  #metricsSnapshot(): MetricsSnapshot {
    const source = this.#statsSource();
    const { total, workers } = sumCounters(source);
    const loopUtilization = new Map<string, number>();
    for (const [id, values] of workers) loopUtilization.set(String(id), values.loopUtilization);
    const now = performance.eventLoopUtilization();
    loopUtilization.set('main', performance.eventLoopUtilization(now, this.#mainLoop).utilization);
    this.#mainLoop = now;
    const e = this.#thread?.exports;
    return {
      // Events inside the core (expiry, dead letters, drops) and the exact ready / in-flight
      // totals come from the core itself; the rest from the per-thread JS counters.
      counters: { ...total, ...coreMessageStats(this.#thread?.core) },
      loopUtilization,
      topics: e ? e.topicCount() : 0,
      memoryBytes: this.#memory ? this.#memory.buffer.byteLength : 0,
      bytesInUse: e ? Number(e.bytesInUse()) : 0,
      messageBytes: e ? Number(e.queueBytes()) : 0,
      messageLimitBytes: source.messageLimitBytes,
      workers: this.#pool?.running ?? 0,
      workerRestarts: source.workerRestarts,
    };
  }

  /** A client sent SHUTDOWN (its OK is already on its way): stop once, as the embedder chose. */
  #remoteShutdown(remoteAddress: string): void {
    if (this.#shutdownRequested || this.#state !== 'running') return;
    this.#shutdownRequested = true;
    this.#logger.warn({ remoteAddress }, 'shutdown requested by a client');
    const stop = this.#onShutdownRequest ?? (() => this.stop());
    // After the current task: the worker that forwarded the request flushes its OK first.
    setImmediate(() => {
      Promise.resolve().then(stop).catch((err: unknown) => this.#logger.error({ err }, 'shutdown failed'));
    });
  }

  /** Tests only: makes worker `index` die of an uncaught error; resolves with its core thread id once it exited. */
  async [Symbol.for('turbomq.crashWorkerForTest')](index: number): Promise<number> {
    if (this.#pool === undefined) throw new Error('the engine is not running');
    return this.#pool.crashForTest(index);
  }

  async #shutdown(): Promise<void> {
    const embedded = this.#embedded;
    this.#embedded = undefined;
    if (embedded !== undefined) await embedded.close();
    for (const session of this.#embeddedSessions) session.close();
    this.#embeddedSessions.clear();
    const pool = this.#pool;
    this.#pool = undefined;
    if (pool !== undefined) {
      await pool.stop();
      this.#workerRestarts += pool.restarts;
    }
    const data = this.#data;
    this.#data = undefined;
    if (data !== undefined) {
      // The directory is the broker's state: the next run() recovers from it, so the memory
      // goes with this run (its main thread journals what its detach ends, then the log closes).
      const thread = this.#thread;
      this.#thread = undefined;
      this.#memory = undefined;
      thread?.stop();
      await data.close(); // after it, no fsync reports to the thread's counters any more
      if (thread !== undefined) disposeCounters(thread);
    }
    const http = this.#http;
    this.#http = undefined;
    if (http !== undefined) await http.close();
  }

  /** Operator requests on the embedded connection answer directly. */
  readonly #embeddedOperator: OperatorHandler = {
    authConfigured: false, // TODO(auth): as in worker.ts
    serverStats: async () => JSON.stringify(await this.stats()),
    shutdown: () => this.#remoteShutdown('embedded'),
  };

  /** An in-process connection to a Session on the main thread. */
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
      operator: this.#embeddedOperator,
    }, {
      maxMessageBytes: this.#options.maxMessageBytes,
      maxFrameBytes: this.#options.maxFrameBytes,
      maxSubscriptions: Number.MAX_SAFE_INTEGER,
      maxParkedPops: Number.MAX_SAFE_INTEGER,
      maxOutputBytes: Number.MAX_SAFE_INTEGER, // a pipe without a buffer: nothing backs up
      parkedPops: EMBEDDED_PARKED_POPS,
    });
    // In-process and trusted: no auth, no deadline (the embedded client still says HELLO and AUTH).
    handshake = new Handshake(session, undefined, { established() {}, end: () => transport.close() }, Number.MAX_SAFE_INTEGER);
    sessions.add(session);
    return transport;
  }
}
