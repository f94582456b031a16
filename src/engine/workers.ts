// The engine's worker threads: starting them (a worker that cannot start makes start()
// reject with its reason instead of hanging), replacing one that dies, stopping them all.
// Each worker is a src/engine/worker.ts thread over the engine's shared memory; the main
// thread drives it through comlink (WorkerApi) and serves its requests on a control port
// (ControlApi: log lines, statistics, SHUTDOWN).
//
// A worker that dies (an uncaught error, an out-of-memory kill) takes its connections with
// it; their clients see ERR_CONNECTION_CLOSED. Nothing else is lost: the main thread folds
// its counters into the retired totals (metrics.ts retireCounters), reaps its thread
// (assembly/reap.ts reapThread: waiters it had parked, messages already handed to it, its leases
// go back to their topics), and starts a replacement that attaches to the same memory and
// listens on the same ports (SO_REUSEPORT). A replacement that fails is retried with a
// growing delay, so a worker that crashes at once does not spin the CPU.
//
// execArgv: by default a worker inherits the process's Node options, and some of them break
// it or do not belong in it: `-e`/`--eval` and `--input-type` (Node refuses to load a worker
// file with `--input-type`), `--import`/`--require` loaders and test-runner hooks (they run
// again in every worker), `--inspect`, `--watch`. Workers get an explicit execArgv with only
// the options that shape how their modules load and report (workerExecArgv), and the same
// filter is applied to NODE_OPTIONS, which a worker would otherwise parse again.

import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { Core } from '../core/wasm.ts';
import { retireCounters, type CounterValues } from './metrics.ts';
import type { Logger, ResolvedOptions } from './options.ts';
import type { BrokerUrl } from '../url.ts';
import type { ConnectionCounter } from './connections.ts';
import type { ControlApi, LogLevel, WorkerApi, WorkerData } from './worker.ts';

/** How long a worker may take to load and attach before start() gives up on it. */
const WORKER_START_TIMEOUT_MS = 60_000;
/** How long a graceful worker stop may take before the worker is terminated. */
const WORKER_STOP_TIMEOUT_MS = 10_000;
/** Replacements less than this apart count as a crash loop: the delay before the next one doubles. */
const CRASH_LOOP_WINDOW_MS = 10_000;
const RESTART_DELAY_MIN_MS = 250;
const RESTART_DELAY_MAX_MS = 30_000;

/**
 * Node options a worker keeps: module resolution and type stripping, source maps, warning
 * and deprecation reporting. Everything else is left out (see the header).
 */
const KEPT_FLAGS = new Set([
  '--conditions', '-C', '--experimental-strip-types', '--no-experimental-strip-types',
  '--enable-source-maps', '--preserve-symlinks', '--experimental-require-module', '--no-experimental-require-module',
  '--experimental-detect-module', '--no-experimental-detect-module',
  '--no-warnings', '--disable-warning', '--no-deprecation', '--throw-deprecation', '--trace-deprecation',
  '--pending-deprecation', '--trace-warnings', '--unhandled-rejections',
  // Profiling: `node --cpu-prof` profiles every worker too (one .cpuprofile per thread).
  '--cpu-prof', '--cpu-prof-dir', '--cpu-prof-interval',
  // ... and `node --heap-prof` samples every worker's allocations (one .heapprofile per thread).
  '--heap-prof', '--heap-prof-dir', '--heap-prof-interval',
]);

/**
 * The Node options for a worker: those of `execArgv` (the process's, then NODE_OPTIONS's)
 * in KEPT_FLAGS, with their values. A value is either `--flag=value` or the next item when
 * it does not start with '-' (execArgv holds only options and their values).
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  let keepingValue = false;
  for (const arg of execArgv) {
    if (!arg.startsWith('-')) {
      if (keepingValue) kept.push(arg);
      keepingValue = false;
      continue;
    }
    const name = arg.split('=', 1)[0]!;
    keepingValue = KEPT_FLAGS.has(name) && !arg.includes('=');
    if (KEPT_FLAGS.has(name)) kept.push(arg);
  }
  return kept;
}

/** NODE_OPTIONS split like Node splits it: on spaces, with "double quotes" and \-escapes. */
export function splitNodeOptions(text: string | undefined): string[] {
  const args: string[] = [];
  if (text === undefined) return args;
  let current = '';
  let inQuotes = false;
  let started = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && inQuotes && i + 1 < text.length) {
      current += text[++i];
    } else if (c === '"') {
      inQuotes = !inQuotes;
      started = true;
    } else if (c === ' ' && !inQuotes) {
      if (started) args.push(current);
      current = '';
      started = false;
    } else {
      current += c;
      started = true;
    }
  }
  if (started) args.push(current);
  return args;
}

export interface WorkerPoolOptions {
  /** The main thread's core (for reaping and folding counters). */
  core: Core;
  /** After a dead worker was reaped: its timers died with it (the engine watches the delay heap instead). */
  onReaped?: () => void;
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  options: ResolvedOptions;
  logger: Logger;
  /** Counters of threads that ended, kept by the engine. */
  retired: CounterValues;
  /** Marks the engine not ready for `reason` until the returned function is called. */
  holdReadiness(reason: string): () => void;
  serverStats(): Promise<string>;
  shutdown(remoteAddress: string): void;
  /** Tests only: every worker fails right after attaching. */
  failStartForTest?: boolean;
  /** The connection count every worker shares (one slot per worker). */
  connections: ConnectionCounter;
  /**
   * Settles when the main thread has recovered the data directory: a worker waits for it
   * before it opens its own log (rejected: recovery failed, the worker ends). Absent: at once.
   */
  recovered?: Promise<void>;
}

type WorkerState = 'starting' | 'running' | 'stopping' | 'exited';

interface WorkerEntry {
  worker: Worker;
  api: Comlink.Remote<WorkerApi>;
  control: MessagePort;
  /** Core thread id, 0 until the worker reports it. */
  threadId: number;
  state: WorkerState;
  startedAt: number;
  /** Why it ended, if it failed. */
  error: Error | undefined;
  exited: Promise<number>;
  /** Its counters were folded and its thread reaped (or detached): once only. */
  released: boolean;
  /** Its slot in the shared connection count (src/engine/connections.ts). */
  index: number;
}

const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

export class WorkerPool {
  readonly #o: WorkerPoolOptions;
  readonly #entries: WorkerEntry[] = [];
  #specs: BrokerUrl[] = [];
  /** Connection-count slots of dead workers, for their replacements. */
  readonly #freeSlots: number[] = [];
  #stopping = false;
  #restarts = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #restartDelayMs = 0;
  #lastRestartAt = 0;
  #releaseRestartHold: (() => void) | undefined;

  constructor(options: WorkerPoolOptions) {
    this.#o = options;
  }

  /** Core thread ids of the workers alive now (running or starting). */
  get threadIds(): number[] {
    return this.#entries.filter((e) => e.threadId !== 0 && !e.released).map((e) => e.threadId);
  }

  get running(): number {
    return this.#entries.filter((e) => e.state === 'running').length;
  }

  /** Workers started to replace ones that died. */
  get restarts(): number {
    return this.#restarts;
  }

  /**
   * Starts `count` workers and waits until each has attached; rejects with the reason if
   * one cannot start (the caller then stop()s the pool).
   */
  async start(count: number): Promise<void> {
    const entries: WorkerEntry[] = [];
    for (let i = 0; i < count; i++) entries.push(this.#spawn(i));
    await Promise.all(entries.map((entry) => this.#untilAttached(entry)));
  }

  /** Every worker listens on `specs` (ports already chosen); rejects if one fails. */
  async listen(specs: BrokerUrl[]): Promise<void> {
    this.#specs = specs;
    await Promise.all(this.#entries.map(async (entry) => {
      await this.#orExit(entry, entry.api.listen(specs), 'could not listen');
      entry.state = 'running';
    }));
  }

  /** Graceful stop of every worker; those that do not answer are terminated and reaped. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    this.#releaseRestartHold?.();
    this.#releaseRestartHold = undefined;
    await Promise.all([...this.#entries].map((entry) => this.#stopOne(entry)));
  }

  /** Tests only: makes worker `index` die of an uncaught error; resolves with its thread id once it exited. */
  async crashForTest(index: number): Promise<number> {
    const entry = this.#entries[index];
    if (entry === undefined) throw new Error(`no worker ${index}`);
    await entry.api.crashForTest();
    await entry.exited;
    return entry.threadId;
  }

  /** A new worker using slot `index` of the shared connection count. */
  #spawn(index: number): WorkerEntry {
    const o = this.#o;
    const { port1, port2 } = new MessageChannel();
    const data: WorkerData = {
      memory: o.memory, module: o.module, options: o.options, controlPort: port2, failStartForTest: o.failStartForTest,
      connections: o.connections.buffer, workerIndex: index,
    };
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const worker = new Worker(workerUrl, {
      workerData: data,
      transferList: [port2],
      execArgv: workerExecArgv([...process.execArgv, ...splitNodeOptions(process.env.NODE_OPTIONS)]),
      env,
    });
    let exitedResolve!: (code: number) => void;
    const entry: WorkerEntry = {
      worker,
      api: Comlink.wrap<WorkerApi>(nodeEndpoint(worker)),
      control: port1,
      threadId: 0,
      state: 'starting',
      startedAt: Date.now(),
      error: undefined,
      exited: new Promise((resolve) => { exitedResolve = resolve; }),
      released: false,
      index,
    };
    Comlink.expose(this.#controlFor(entry), nodeEndpoint(port1));
    worker.on('error', (err) => {
      entry.error ??= err as Error;
      if (entry.state === 'running') o.logger.error({ threadId: entry.threadId, err }, 'worker failed');
    });
    worker.once('exit', (code) => {
      const wasRunning = entry.state === 'running';
      entry.state = 'exited';
      exitedResolve(code);
      if (wasRunning && !this.#stopping) this.#crashed(entry, code);
    });
    this.#entries.push(entry);
    return entry;
  }

  #controlFor(entry: WorkerEntry): ControlApi {
    const { logger } = this.#o;
    return {
      attached: (threadId) => { entry.threadId = threadId; },
      log: (level: LogLevel, fields, msg) => {
        const write = logger[level] ?? logger.info;
        write.call(logger, { threadId: entry.threadId, ...fields }, msg);
      },
      serverStats: () => this.#o.serverStats(),
      shutdown: (remoteAddress) => this.#o.shutdown(remoteAddress),
      whenRecovered: () => this.#o.recovered ?? Promise.resolve(),
    };
  }

  /** Resolves once the worker answers (it has attached and exposed its API). */
  #untilAttached(entry: WorkerEntry): Promise<void> {
    return this.#orExit(entry, entry.api.stats().then((s) => { entry.threadId = s.threadId; }), 'could not start');
  }

  /** `work`, unless the worker exits or stays silent first: then a clear error. */
  #orExit<T>(entry: WorkerEntry, work: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const failed = new Promise<never>((_, reject) => {
      const fail = (reason: string) => reject(new Error(`turbomq: a worker thread ${what}: ${reason}`, { cause: entry.error }));
      void entry.exited.then((code) => fail(entry.error?.message ?? `it exited with code ${code}`));
      timer = setTimeout(() => fail(`no answer within ${WORKER_START_TIMEOUT_MS / 1000} s`), WORKER_START_TIMEOUT_MS);
    });
    return Promise.race([work, failed]).finally(() => clearTimeout(timer));
  }

  async #stopOne(entry: WorkerEntry): Promise<void> {
    let detached = false;
    if (entry.state !== 'exited') {
      entry.state = 'stopping';
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          entry.api.stop(),
          entry.exited.then(() => { throw new Error('exited'); }),
          new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timeout')), WORKER_STOP_TIMEOUT_MS); }),
        ]);
        detached = true;
      } catch { /* dead or stuck: terminated and reaped below */ } finally {
        clearTimeout(timer);
      }
    }
    entry.api[Comlink.releaseProxy]();
    await entry.worker.terminate();
    entry.control.close();
    this.#release(entry, detached);
    this.#remove(entry);
  }

  /**
   * Once a worker has ended: folds its counters into the retired totals, and reaps its
   * thread unless it detached itself. Must run before its thread id can be attached again.
   */
  #release(entry: WorkerEntry, detached: boolean): number {
    if (entry.released) return 0;
    entry.released = true;
    if (entry.threadId === 0) return 0;
    retireCounters(this.#o.core, entry.threadId, this.#o.retired);
    if (detached) return 0;
    const returned = this.#o.core.exports.reapThread(entry.threadId, Date.now());
    this.#o.onReaped?.();
    return returned;
  }

  #remove(entry: WorkerEntry): void {
    const index = this.#entries.indexOf(entry);
    if (index >= 0) this.#entries.splice(index, 1);
  }

  /** A running worker died: clean up after it and start another. */
  #crashed(entry: WorkerEntry, code: number): void {
    entry.control.close();
    entry.api[Comlink.releaseProxy]();
    const returned = this.#release(entry, false);
    this.#remove(entry);
    // Its sockets closed with it: its slot of the connection count starts again at zero.
    this.#o.connections.resetWorker(entry.index);
    this.#freeSlots.push(entry.index);
    this.#o.logger.error({ threadId: entry.threadId, code, err: entry.error, returned, workersLeft: this.running },
      'worker exited unexpectedly; its connections are closed, its waiters reaped; starting a replacement');
    this.#scheduleReplacement();
  }

  #scheduleReplacement(): void {
    if (this.#stopping || this.#restartTimer !== undefined) return;
    this.#releaseRestartHold ??= this.#o.holdReadiness('a worker is being replaced');
    const now = Date.now();
    this.#restartDelayMs = now - this.#lastRestartAt < CRASH_LOOP_WINDOW_MS
      ? Math.min(RESTART_DELAY_MAX_MS, Math.max(RESTART_DELAY_MIN_MS, this.#restartDelayMs * 2))
      : 0;
    this.#lastRestartAt = now;
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      void this.#replace();
    }, this.#restartDelayMs);
  }

  async #replace(): Promise<void> {
    if (this.#stopping) return;
    const index = this.#freeSlots.shift() ?? 0;
    const entry = this.#spawn(index);
    try {
      await this.#untilAttached(entry);
      await this.#orExit(entry, entry.api.listen(this.#specs), 'could not listen');
    } catch (err) {
      if (this.#stopping) return;
      this.#o.logger.error({ err, threadId: entry.threadId, retryInMs: Math.max(RESTART_DELAY_MIN_MS, this.#restartDelayMs * 2) }, 'replacement worker could not start; retrying');
      await this.#stopOne(entry);
      this.#o.connections.resetWorker(index);
      this.#freeSlots.unshift(index);
      this.#scheduleReplacement();
      return;
    }
    if (this.#stopping) return;
    entry.state = 'running';
    this.#restarts++;
    this.#o.logger.info({ threadId: entry.threadId, workers: this.running, restarts: this.#restarts }, 'worker replaced');
    if (this.running >= this.#o.options.threads) {
      this.#releaseRestartHold?.();
      this.#releaseRestartHold = undefined;
    }
  }
}
