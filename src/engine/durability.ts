// The broker's data directory: the glue between the storage library (src/storage/: the log,
// recovery, compaction, the lock) and the core (assembly/journal.ts journals every change to
// a durable queue; src/core/thread.ts moves it to the thread's log; src/engine/session.ts
// holds replies until the log has them).
//
// Start (main thread, before any worker listens; /readyz says 'recovery' meanwhile):
//   lockDataDir -> recover -> restore into the core (ids floor, settings, ready and delayed
//   messages) -> the main thread's log (thread index 0) -> compaction.
// Each worker opens its own log (thread index = its slot + 1) before it listens.
// Stop: workers close their logs; then the main thread's log, compaction, the lock.

import type { CoreThread } from '../core/thread.ts';
import type { MemoryView } from '../core/wasm.ts';
import { SettingsMask, QUEUE_DEFAULTS } from '../protocol.ts';
import { TurboError } from '../errors.ts';
import { countStoredRecords } from '../storage/format.ts';
import { lockDataDir, recover, openLog, startCompaction, type DataDirLock, type Compactor, type LogWriter, type Recovery } from '../storage/index.ts';
import type { FsyncPolicy, Logger } from './options.ts';
import { countersOf } from './metrics.ts';
import type { StorageStats } from './stats.ts';

/** What a start recovered (stats().storage.recovered). */
type Recovered = StorageStats['recovered'];

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

/** A queue's settings as kept in the log (SETTINGS records): the CONFIGURE fields, by name. */
interface StoredSettings {
  leaseMs: number;
  /** null: Infinity (JSON has none). */
  maxDeliveries: number | null;
  maxLength: number | null;
  dedupWindowMs: number;
  overflow: 'reject' | 'drop-oldest';
  /** Absent: never configured (durable on a broker with a data directory). */
  durable?: boolean;
  deadLetterTopic: string | null;
}

/** The settings block queueSettingsInto wrote at `out` (docs/protocol.md SETTINGS), as JSON. */
export function settingsJson(view: MemoryView, out: number): string {
  const durable = view.u8(out + 33);
  const dlqLen = view.u8(out + 34);
  const finite = (x: number) => (x === Infinity ? null : x);
  const settings: StoredSettings = {
    leaseMs: view.f64(out),
    maxDeliveries: finite(view.f64(out + 8)),
    maxLength: finite(view.f64(out + 16)),
    dedupWindowMs: view.f64(out + 24),
    overflow: view.u8(out + 32) === 1 ? 'drop-oldest' : 'reject',
    deadLetterTopic: dlqLen === 0 ? null : textDecoder.decode(view.bytes(out + 35, dlqLen)),
  };
  if (durable !== 2) settings.durable = durable === 1;
  return JSON.stringify(settings);
}

/** Applies settings recovered from the log to queue `queue`: the fields it names, as configure would. */
function applySettings(thread: CoreThread, queue: Uint8Array, json: string, logger: Logger): void {
  let s: Partial<StoredSettings>;
  try {
    s = JSON.parse(json) as Partial<StoredSettings>;
  } catch {
    logger.warn({ queue: textDecoder.decode(queue) }, 'turbomq recovery: unreadable queue settings ignored');
    return;
  }
  const e = thread.exports, view = thread.core.view;
  const scratch = thread.scratch;
  // Scratch layout: [queue name: 256][dead-letter topic name: 256].
  view.write(scratch, queue);
  const dlq = typeof s.deadLetterTopic === 'string' ? textEncoder.encode(s.deadLetterTopic) : new Uint8Array(0);
  view.write(scratch + 256, dlq);
  const num = (x: unknown, fallback: number) => (typeof x === 'number' ? x : x === null ? Infinity : fallback);
  let mask = 0;
  if ('leaseMs' in s) mask |= SettingsMask.LEASE_MS;
  if ('maxDeliveries' in s) mask |= SettingsMask.MAX_DELIVERIES;
  if ('maxLength' in s) mask |= SettingsMask.MAX_LENGTH;
  if ('dedupWindowMs' in s) mask |= SettingsMask.DEDUP_WINDOW_MS;
  if ('overflow' in s) mask |= SettingsMask.OVERFLOW;
  if ('deadLetterTopic' in s) mask |= SettingsMask.DEAD_LETTER_TOPIC;
  if (typeof s.durable === 'boolean') mask |= SettingsMask.DURABLE;
  if (mask === 0) return;
  const rec = e.queueConfigure(scratch, queue.length, mask, num(s.leaseMs, QUEUE_DEFAULTS.leaseMs), num(s.maxDeliveries, Infinity),
    num(s.maxLength, Infinity), num(s.dedupWindowMs, QUEUE_DEFAULTS.dedupWindowMs), s.overflow === 'drop-oldest', s.durable === true,
    scratch + 256, dlq.length);
  if (rec === 0) throw new TurboError('ERR_NO_MEMORY', 'out of memory restoring queue settings');
}

/** Copies `bytes` into a core buffer of at least that size (grown as needed). */
class CoreBuffer {
  #ptr = 0;
  #cap = 0;
  readonly thread: CoreThread;
  constructor(thread: CoreThread) {
    this.thread = thread;
  }

  put(bytes: Uint8Array, extra = 0): number {
    const e = this.thread.exports;
    const need = bytes.length + extra;
    if (need > this.#cap) {
      if (this.#ptr !== 0) e.free(this.#ptr);
      this.#cap = Math.max(need, 1 << 20);
      this.#ptr = e.alloc(this.#cap);
      if (this.#ptr === 0) throw new TurboError('ERR_NO_MEMORY', 'out of memory restoring messages');
    }
    this.thread.core.view.write(this.#ptr, bytes);
    return this.#ptr;
  }

  free(): void {
    if (this.#ptr !== 0) this.thread.exports.free(this.#ptr);
    this.#ptr = 0;
    this.#cap = 0;
  }
}

/** Loads what recovery found into the core. Returns the message counts. */
function restore(thread: CoreThread, recovery: Recovery, logger: Logger, nowMs = Date.now()): { ready: number; delayed: number; dedupIds: number } {
  const e = thread.exports;
  // Ids: every topic created from now on starts above every id the log names, so an id never
  // repeats for a (queue, topic) - a REMOVE in the log must never hit a newer message.
  let floor = 0n;
  for (const t of recovery.topics) if (t.nextId > floor) floor = t.nextId;
  if (floor > BigInt(Number.MAX_SAFE_INTEGER)) throw new TurboError('ERR_STORAGE', 'message ids in the log are above 2^53');
  e.setIdFloor(Number(floor));
  for (const q of recovery.queues) applySettings(thread, q.queue, q.settings, logger);
  const buffer = new CoreBuffer(thread);
  const scratch = thread.scratch;
  const view = thread.core.view;
  let ready = 0, delayed = 0, dedupIds = 0;
  try {
    for (const t of recovery.topics) {
      if (t.ready === 0 && t.delayed === 0 && t.dedupIds.length === 0) continue;
      // Scratch layout: [queue: 256][topic: 256][dedupId: 256].
      view.write(scratch, t.queue);
      view.write(scratch + 256, t.topic);
      // Open dedup windows first (in expiry order): a producer retrying a push the broker
      // stored just before it died is then still taken for the duplicate it is.
      for (const d of t.dedupIds) {
        view.write(scratch + 512, d.id);
        if (e.restoreDedup(scratch, t.queue.length, scratch + 256, t.topic.length, scratch + 512, d.id.length, d.expiresAt, nowMs) !== 0) throw noMemory();
        dedupIds++;
      }
      for (const chunk of t.readyChunks()) {
        const count = countStoredRecords(chunk);
        const at = buffer.put(chunk);
        if (e.restoreReady(scratch, t.queue.length, scratch + 256, t.topic.length, at, chunk.length, count) !== 0) throw noMemory();
        ready += count;
      }
      for (const chunk of t.delayedChunks()) {
        const dues = new Uint8Array(chunk.dueAt.buffer, chunk.dueAt.byteOffset, chunk.dueAt.byteLength);
        const at = buffer.put(chunk.records, dues.length);
        view.write(at + chunk.records.length, dues);
        if (e.restoreDelayed(scratch, t.queue.length, scratch + 256, t.topic.length, at, chunk.records.length, chunk.dueAt.length, at + chunk.records.length) !== 0) throw noMemory();
        delayed += chunk.dueAt.length;
      }
    }
  } finally {
    buffer.free();
  }
  return { ready, delayed, dedupIds };
}

function noMemory(): TurboError {
  return new TurboError('ERR_NO_MEMORY', 'the data directory holds more messages than maxMemoryMiB allows: start the broker with a larger --max-memory-mib');
}

/** The main thread's part: the lock, recovery, the main log and compaction. */
export class DataDirectory {
  readonly dir: string;
  readonly fsync: FsyncPolicy;
  readonly #lock: DataDirLock;
  readonly #log: LogWriter;
  readonly #compactor: Compactor;
  readonly recovered: Recovered;

  private constructor(dir: string, fsync: FsyncPolicy, lock: DataDirLock, log: LogWriter, compactor: Compactor, recovered: Recovered) {
    this.dir = dir;
    this.fsync = fsync;
    this.#lock = lock;
    this.#log = log;
    this.#compactor = compactor;
    this.recovered = recovered;
  }

  /** Locks `dir` (ERR_STORAGE with a one-line message if it is in use or unusable), recovers it into the core, opens the main thread's log. */
  static async open(dir: string, fsync: FsyncPolicy, thread: CoreThread, logger: Logger): Promise<DataDirectory> {
    const started = Date.now();
    const lock = await lockDataDir(dir);
    let log: LogWriter | undefined;
    try {
      const recovery = await recover(lock.dir, { logger });
      const counts = restore(thread, recovery, logger);
      log = await openThreadLog(lock.dir, fsync, 0, thread, logger);
      thread.onLogError = (err) => logger.error({ err: { message: err.message } }, 'turbomq log: changes could not be written yet (retrying)');
      const compactor = startCompaction(lock, { logger });
      const ms = Date.now() - started;
      logger.info({ dir: lock.dir, fsync, ready: counts.ready, delayed: counts.delayed, dedupIds: counts.dedupIds, topics: recovery.stats.topics, ms }, 'turbomq data directory recovered');
      return new DataDirectory(lock.dir, fsync, lock, log, compactor, { ...counts, ms });
    } catch (err) {
      await log?.close().catch(() => {});
      await lock.release().catch(() => {});
      throw err;
    }
  }

  /** After the workers stopped: the main log (fsync'd), compaction, the lock. */
  async close(): Promise<void> {
    await this.#compactor.stop().catch(() => {});
    await this.#log.close().catch(() => {});
    await this.#lock.release().catch(() => {});
  }

  /** For /stats: the main thread's log statistics. */
  stats(): { dir: string; fsync: FsyncPolicy; recovered: Recovered } {
    return { dir: this.dir, fsync: this.fsync, recovered: this.recovered };
  }
}

/** A thread's log (the main thread's is index 0; a worker's its slot + 1), attached to its core thread. */
export async function openThreadLog(dir: string, fsync: FsyncPolicy, threadIndex: number, thread: CoreThread, logger: Logger): Promise<LogWriter> {
  const counters = countersOf(thread);
  const log = await openLog(dir, { fsync, threadIndex, logger, onFsync: (seconds) => counters.observeFsyncSeconds(seconds) });
  thread.onPeerLog = (event) => { if (event === 'wait') counters.onPeerLogWait(); else counters.onPeerLogRing(); };
  thread.attachLog(log);
  return log;
}
