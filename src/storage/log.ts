// The log writer: one per broker thread (the main thread and each worker), appending that
// thread's operations to its own segment files, w<thread>-<seq>.log, in the data directory.
// Who calls it: the session, right after the core did an operation (push, remove, delivery
// change, settings), then commit() (or commitSync()) before the reply is sent.
//
// Why one file per thread: a thread appends with plain positional writes and no lock, knows
// exactly how far its file is written (so a failed or partial write is simply continued
// later, never interleaved with another thread's bytes), and its own fdatasync covers its
// own connections. Concurrent fdatasyncs of different files on one file system cost about
// what one costs (the kernel merges the journal commits and cache flushes; figure in
// docs/durability.md), so the threads' group commits run side by side without a
// cross-thread hop. Order across threads is not needed: recovery orders a topic's messages
// by id, and every other record is order-free (docs/durability.md, "Recovery").
//
// Write path: append*() encodes the record into the staging buffer at once (copying the
// caller's bytes, which may be a view into the Wasm memory that is reused right after).
// commit() returns one promise shared by every commit until the flush, which runs once per
// event-loop turn (setImmediate, so every socket read in this turn is in it): one write(2)
// of everything staged, then
//   - fsync 'no' or 'everysec': the commits resolve (the bytes are in the OS);
//   - 'always': one fdatasync covers every byte written before it started; commits that
//     arrive while it runs wait for the next one (at most one in flight: group commit). It
//     runs on this thread while fsyncs are fast, in the thread pool when slow (#startSync).
// 'everysec' fdatasyncs at least once a second from a timer. A full segment is closed
// (fdatasync'd under 'always'/'everysec') and the next one created; an idle one too, so
// compaction can take it.
//
// Errors (ENOSPC, EIO, ...): the commits waiting for the failed write reject with
// ERR_STORAGE, the writer does not throw and keeps the bytes: they are written, in order,
// from where the failed write stopped, by the next commit or the retry timer. So nothing
// acknowledged is lost and nothing is acknowledged twice. While it fails, `writable` is
// false: the caller should refuse new pushes up front.

import realFs from 'node:fs';
import path from 'node:path';
import { TurboError } from '../errors.ts';
import type { Logger } from '../engine/options.ts';
import {
  RecordEncoder, encodeSegmentHeader, countStoredRecords, readU32, SEGMENT_KIND_WRITER, SEGMENT_HEADER_BYTES, STORED_HEADER_BYTES,
  MAX_SAFE_ID, SEAL_RECORD,
} from './format.ts';
import { writerSegmentName, highestSeq, readBoot, fsyncDir, describeFsError } from './files.ts';
import { lockWriter } from './lock.ts';

export type FsyncPolicy = 'always' | 'everysec' | 'no';
export const FSYNC_POLICIES: readonly FsyncPolicy[] = Object.freeze(['always', 'everysec', 'no']);
/** The default: kill -9 loses nothing acknowledged, power loss at most about a second (see README). */
export const DEFAULT_FSYNC_POLICY: FsyncPolicy = 'everysec';

/** 'always' | 'everysec' | 'no', or ERR_INVALID_ARGUMENT naming the choices. */
export function parseFsyncPolicy(value: unknown): FsyncPolicy {
  if (typeof value === 'string' && (FSYNC_POLICIES as readonly string[]).includes(value)) return value as FsyncPolicy;
  throw new TurboError('ERR_INVALID_ARGUMENT', `fsync must be one of always, everysec, no; got ${JSON.stringify(value)}`);
}

export const DEFAULT_MAX_SEGMENT_BYTES = 16 * 1024 * 1024;
const EVERYSEC_INTERVAL_MS = 1000;
const TICK_MS = 200;
/**
 * Under 'always', group commits fdatasync on the writer's own thread while the recent ones took
 * at most this long on average, and in libuv's thread pool when they are slower (see #startSync).
 */
const DEFAULT_INLINE_FSYNC_MAX_MS = 2;
/** Weight of the newest fdatasync in the moving average that decides (#fsyncMsAverage). */
const FSYNC_AVERAGE_WEIGHT = 0.25;

/** The file operations the writer uses; tests replace some to simulate a failing disk. */
export interface LogFs {
  openSync(path: string, flags: string): number;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  fdatasync(fd: number, callback: (err: NodeJS.ErrnoException | null) => void): void;
  fdatasyncSync(fd: number): void;
  closeSync(fd: number): void;
  unlinkSync(path: string): void;
  ftruncateSync(fd: number, length: number): void;
}

export interface LogOptions {
  /** When an acknowledged operation is on disk (see docs/durability.md). Default 'everysec'. */
  fsync?: FsyncPolicy;
  /** This thread's index, unique in the process: 0 for the main thread, 1.. for workers (0..255). */
  threadIndex: number;
  logger?: Logger;
  /** A segment is closed and the next one started at this size. Default 16 MiB. */
  maxSegmentBytes?: number;
  /** A segment of at least minRotateBytes that had no write for this long is closed. Default 1000 ms. */
  idleRotateMs?: number;
  /** Default 1 MiB. */
  minRotateBytes?: number;
  /** A segment older than this (and over 64 KiB) is closed even when it is busy. Default 30 s. */
  maxSegmentAgeMs?: number;
  /** Tests only: file operations to use instead of node:fs. */
  fs?: Partial<LogFs>;
  /** Called after each fdatasync of the log with how long it took (the broker's fsync histogram). */
  onFsync?: (seconds: number) => void;
  /**
   * Under 'always': a group commit's fdatasync runs on this thread while the recent ones took at
   * most this many ms on average, else in the thread pool (a lone committer's always runs here).
   * Default DEFAULT_INLINE_FSYNC_MAX_MS; a negative value sends every group of more than one
   * commit to the pool (tests that hold the pool's fdatasync use it).
   */
  inlineFsyncMaxMs?: number;
}

export interface LogStats {
  /** Bytes appended, written to the OS, and known to be on disk (fdatasync). */
  appendedBytes: number;
  writtenBytes: number;
  syncedBytes: number;
  records: number;
  /** write(2) calls (one per flush, more only after a partial write) and fdatasyncs. */
  writes: number;
  syncs: number;
  /** Flushes that resolved at least one commit() (each is one group commit). */
  groups: number;
  segmentsCreated: number;
  failedWrites: number;
  writable: boolean;
}

type Ids = BigUint64Array | Float64Array | readonly bigint[] | readonly number[];

interface Group {
  end: number;
  /** commit() calls it answers (connections that flushed in its turn, roughly). */
  calls: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

const RESOLVED: Promise<void> = Promise.resolve();
const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };
const TWO_32 = 0x1_0000_0000;

/**
 * Opens the log writer of `threadIndex` in `dir` (created and locked by lockDataDir). Fails
 * with ERR_STORAGE when another writer already uses that thread index in this directory.
 */
export async function openLog(dir: string, options: LogOptions): Promise<LogWriter> {
  const threadIndex = options.threadIndex;
  if (!Number.isInteger(threadIndex) || threadIndex < 0 || threadIndex > 255) {
    throw new TurboError('ERR_INVALID_ARGUMENT', `threadIndex must be an integer from 0 to 255, got ${threadIndex}`);
  }
  const policy = parseFsyncPolicy(options.fsync ?? DEFAULT_FSYNC_POLICY);
  let real: string;
  try {
    real = realFs.realpathSync(dir);
  } catch (err) {
    throw new TurboError('ERR_STORAGE', `data directory ${dir} is not usable: ${describeFsError(err)}`, { cause: err });
  }
  const lock = await lockWriter(real, threadIndex);
  if (lock === undefined) throw new TurboError('ERR_STORAGE', `thread index ${threadIndex} already has a log writer in ${real}`);
  return new LogWriter(real, policy, threadIndex, options, lock, readBoot(real), highestSeq(real, 'w', threadIndex) + 1);
}

export class LogWriter {
  readonly dir: string;
  readonly fsync: FsyncPolicy;
  readonly threadIndex: number;
  readonly #logger: Logger;
  readonly #fs: LogFs;
  readonly #lock: { release(): Promise<void> };
  readonly #boot: number;
  readonly #maxSegmentBytes: number;
  readonly #idleRotateMs: number;
  readonly #minRotateBytes: number;
  readonly #maxSegmentAgeMs: number;
  readonly #onFsync: ((seconds: number) => void) | undefined;
  readonly #inlineFsyncMaxMs: number;
  /** Moving average of the fdatasyncs' durations, ms (0 until the first one: fast until shown slow). */
  #fsyncMsAverage = 0;

  // The current segment file.
  #fd = -1;
  #nextSeq: number;
  #fileBytes = 0;
  /** Zeros are written up to here; #preallocOff after a failure (a full disk). */
  #preallocEnd = 0;
  #preallocOff = false;
  #fileOpenedMs = 0;
  #lastWriteMs = 0;
  #rotateBeforeNextWrite = false;
  /** Closed segments whose fd waits for the fdatasync in flight on it. */
  #retiredFds: number[] = [];

  // Staged bytes: staging[0, stagedWritten) are already written (a partial write), the rest not.
  readonly #staging = new RecordEncoder(256 * 1024);
  #stagedWritten = 0;

  // Totals over the writer's life, in bytes: appended >= written >= synced.
  #appended = 0;
  #written = 0;
  #synced = 0;

  #openGroup: Group | undefined;
  #syncWaiters: Group[] = [];
  #flushScheduled = false;
  #syncInFlight: Promise<void> | undefined;
  #lastSyncMs = 0;

  #failure: TurboError | undefined;
  /** After a failed fdatasync: the bytes up to here were reported failed and are never acknowledged. */
  #poisonedEnd = 0;
  #closed = false;
  readonly #timer: ReturnType<typeof setInterval>;
  #lastStamp = 0;
  // Scratch arrays for remove ranges.
  #firsts = new Float64Array(64);
  #counts = new Float64Array(64);

  readonly #stats = { records: 0, writes: 0, syncs: 0, groups: 0, segmentsCreated: 0, failedWrites: 0 };

  /** Use openLog(). */
  constructor(dir: string, policy: FsyncPolicy, threadIndex: number, options: LogOptions, lock: { release(): Promise<void> }, boot: number, nextSeq: number) {
    this.dir = dir;
    this.fsync = policy;
    this.threadIndex = threadIndex;
    this.#logger = options.logger ?? silentLogger;
    this.#fs = { ...defaultFs, ...options.fs };
    this.#lock = lock;
    this.#boot = boot;
    this.#nextSeq = nextSeq;
    this.#maxSegmentBytes = options.maxSegmentBytes ?? DEFAULT_MAX_SEGMENT_BYTES;
    this.#idleRotateMs = options.idleRotateMs ?? 1000;
    this.#minRotateBytes = options.minRotateBytes ?? 1024 * 1024;
    this.#maxSegmentAgeMs = options.maxSegmentAgeMs ?? 30_000;
    this.#onFsync = options.onFsync;
    this.#inlineFsyncMaxMs = options.inlineFsyncMaxMs ?? DEFAULT_INLINE_FSYNC_MAX_MS;
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  /** False while writes fail (e.g. the disk is full): refuse new pushes up front. */
  get writable(): boolean {
    return this.#failure === undefined;
  }

  /** The last write error, while `writable` is false. */
  get error(): TurboError | undefined {
    return this.#failure;
  }

  // ── Appends: encoded and copied at once; nothing is written until the flush ──────────

  /**
   * A push of one or many messages: `records` in the core's stored-record layout, 1..n
   * records back to back, all with the due time `dueAt` (ms since the epoch) or none.
   */
  appendPush(queue: Uint8Array, topic: Uint8Array, records: Uint8Array, dueAt?: number): void {
    this.#checkOpen();
    checkNames(queue, topic);
    if (dueAt !== undefined && !Number.isFinite(dueAt)) throw new TurboError('ERR_INVALID_ARGUMENT', `dueAt must be a finite number of ms, got ${dueAt}`);
    if (countStoredRecords(records) < 0) throw new TurboError('ERR_INVALID_ARGUMENT', 'records must be whole stored records ([u32 len][u32 meta][u64 id][len bytes]) back to back');
    const before = this.#staging.length;
    this.#staging.push(queue, topic, records, dueAt);
    this.#appended += this.#staging.length - before;
    this.#stats.records++;
  }

  /** Removal of messages by id (pop, ack, maxLength drop, dead-letter source). */
  appendRemove(queue: Uint8Array, topic: Uint8Array, ids: Ids): void {
    this.#checkOpen();
    checkNames(queue, topic);
    const n = this.#toRanges(ids);
    if (n === 0) return;
    const before = this.#staging.length;
    this.#staging.removeRanges(queue, topic, this.#firsts, this.#counts, n);
    this.#appended += this.#staging.length - before;
    this.#stats.records++;
  }

  /**
   * Removal of the messages in `records` (stored-record layout, as a pop hands them out):
   * the same as appendRemove with their ids, without building an id array.
   */
  appendRemoveRecords(queue: Uint8Array, topic: Uint8Array, records: Uint8Array): void {
    this.#checkOpen();
    checkNames(queue, topic);
    if (countStoredRecords(records) < 0) throw new TurboError('ERR_INVALID_ARGUMENT', 'records must be whole stored records back to back');
    let n = 0, first = -1, count = 0;
    for (let p = 0; p < records.length; p += STORED_HEADER_BYTES + readU32(records, p)) {
      const hi = readU32(records, p + 12);
      if (hi >= 0x200000) throw new RangeError('message id above 2^53');
      const id = readU32(records, p + 8) + hi * TWO_32;
      if (count > 0 && id === first + count && count < 0xffffffff) { count++; continue; }
      if (count > 0) n = this.#pushRange(n, first, count);
      first = id;
      count = 1;
    }
    n = this.#pushRange(n, first, count);
    const before = this.#staging.length;
    this.#staging.removeRanges(queue, topic, this.#firsts, this.#counts, n);
    this.#appended += this.#staging.length - before;
    this.#stats.records++;
  }

  /** A lease ended without ack: the message's new meta word, and its due time (none: ready now). */
  appendMeta(queue: Uint8Array, topic: Uint8Array, id: bigint | number, meta: number, dueAt?: number): void {
    this.#checkOpen();
    checkNames(queue, topic);
    if (dueAt !== undefined && !Number.isFinite(dueAt)) throw new TurboError('ERR_INVALID_ARGUMENT', `dueAt must be a finite number of ms, got ${dueAt}`);
    const before = this.#staging.length;
    this.#staging.meta(queue, topic, idNumber(id), meta >>> 0, dueAt);
    this.#appended += this.#staging.length - before;
    this.#stats.records++;
  }

  /**
   * Records the core journaled (assembly/journal.ts), crc32 not yet filled in: copied at
   * once (the caller may pass a view into the Wasm memory and reset it right after).
   */
  appendJournal(bytes: Uint8Array): void {
    this.#checkOpen();
    if (bytes.length === 0) return;
    const before = this.#staging.length;
    this.#stats.records += this.#staging.journal(bytes);
    this.#appended += this.#staging.length - before;
  }

  /** A queue's full settings (JSON); after a restart the last one written wins. */
  appendSettings(queue: Uint8Array, json: string | Uint8Array): void {
    this.#checkOpen();
    if (queue.length < 1 || queue.length > 255) throw new TurboError('ERR_INVALID_ARGUMENT', 'queue names are 1 to 255 bytes');
    // Wall-clock ms with sub-ms precision, kept increasing within this writer; the boot
    // number orders restarts, so a clock set back between two runs does not matter.
    const stamp = Math.max(performance.timeOrigin + performance.now(), this.#lastStamp + 0.001);
    this.#lastStamp = stamp;
    const bytes = typeof json === 'string' ? Buffer.from(json, 'utf8') : json;
    const before = this.#staging.length;
    this.#staging.settings(queue, this.#boot, stamp, bytes);
    this.#appended += this.#staging.length - before;
    this.#stats.records++;
  }

  // ── Commit ───────────────────────────────────────────────────────────────────────────

  /**
   * Resolves when everything appended so far is safe to acknowledge under the fsync
   * policy; rejects with ERR_STORAGE when it could not be written (it is retried). Every
   * commit() until the next flush (once per event-loop turn) gets the same promise.
   */
  commit(): Promise<void> {
    if (this.#closed) return Promise.reject(new TurboError('ERR_STORAGE', `the log of thread ${this.threadIndex} in ${this.dir} is closed`));
    if (this.#failure !== undefined && this.#appended <= this.#poisonedEnd) return Promise.reject(this.#failure);
    if (this.#isSafe(this.#appended)) return RESOLVED;
    if (this.#openGroup === undefined) {
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      this.#openGroup = { end: 0, calls: 0, promise, resolve, reject };
      this.#scheduleFlush();
    }
    this.#openGroup.calls++;
    return this.#openGroup.promise;
  }

  /**
   * Writes what is staged now. True: it is safe to acknowledge at once (fsync 'no' or
   * 'everysec', and the write succeeded). False: await commit() (fsync 'always', or the
   * write failed; commit() then retries and rejects if it fails again).
   */
  commitSync(): boolean {
    if (this.#closed) return false;
    if (this.#failure !== undefined && this.#appended <= this.#poisonedEnd) return false;
    if (this.#isSafe(this.#appended)) return true;
    this.#writeStaged();
    return this.fsync !== 'always' && this.#written === this.#appended;
  }

  /** True when everything appended so far is already safe under the policy (nothing to wait for). */
  get settled(): boolean {
    return !this.#closed && this.#isSafe(this.#appended) && !(this.#failure !== undefined && this.#appended <= this.#poisonedEnd);
  }

  /** Flushes, fdatasyncs (under every policy) and closes; releases the thread index. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#flush();
    if (this.#syncInFlight) await this.#syncInFlight;
    if (this.#fd >= 0 && this.#written === this.#appended) {
      try {
        if (this.#fs.writeSync(this.#fd, SEAL_RECORD, 0, SEAL_RECORD.length, this.#fileBytes) === SEAL_RECORD.length) this.#fileBytes += SEAL_RECORD.length;
      } catch { /* left unsealed: compaction takes it at the next boot */ }
    }
    if (this.#fd >= 0) this.#truncatePrealloc(this.#fd);
    if (this.#fd >= 0) {
      try {
        this.#fs.fdatasyncSync(this.#fd);
        if (this.#written === this.#appended) this.#synced = this.#written;
      } catch (err) {
        this.#logger.error({ err, dir: this.dir }, 'turbomq log: fdatasync at close failed');
      }
    }
    this.#settleSyncWaiters();
    const left = this.#appended - this.#written;
    if (left > 0) this.#logger.error({ dir: this.dir, threadIndex: this.threadIndex, bytes: left }, 'turbomq log: closed with bytes that could not be written');
    const closing = new TurboError('ERR_STORAGE', `the log of thread ${this.threadIndex} in ${this.dir} was closed`);
    for (const g of this.#syncWaiters) g.reject(closing);
    this.#syncWaiters = [];
    this.#closeFd(this.#fd);
    this.#fd = -1;
    for (const fd of this.#retiredFds) this.#closeFd(fd);
    this.#retiredFds = [];
    await this.#lock.release();
  }

  /** Gives a closing segment's unused zeros back (what is left, recovery reads as the end). */
  #truncatePrealloc(fd: number): void {
    if (this.#preallocEnd <= this.#fileBytes) return;
    try {
      this.#fs.ftruncateSync(fd, this.#fileBytes);
      this.#preallocEnd = this.#fileBytes;
    } catch { /* a zero tail stays: harmless */ }
  }

  stats(): LogStats {
    return {
      appendedBytes: this.#appended,
      writtenBytes: this.#written,
      syncedBytes: this.#synced,
      ...this.#stats,
      writable: this.writable,
    };
  }

  // ── Internals ────────────────────────────────────────────────────────────────────────

  #isSafe(end: number): boolean {
    return this.fsync === 'always' ? this.#synced >= end : this.#written >= end;
  }

  #checkOpen(): void {
    if (this.#closed) throw new TurboError('ERR_STORAGE', `the log of thread ${this.threadIndex} in ${this.dir} is closed`);
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Seals the open group at the bytes appended so far, writes, and settles or queues it. */
  #flush(): void {
    const group = this.#openGroup;
    this.#openGroup = undefined;
    if (group) group.end = this.#appended;
    const ok = this.#writeStaged();
    if (group) {
      if (!ok && group.end > this.#written) {
        group.reject(this.#failure!);
      } else if (this.#isSafe(group.end)) {
        this.#stats.groups++;
        group.resolve();
      } else {
        this.#syncWaiters.push(group);
      }
    }
    if (this.fsync === 'always' && this.#syncWaiters.length > 0) {
      const lone = group !== undefined && group.calls <= 1 && this.#syncWaiters.length === 1;
      this.#startSync(lone || this.#fsyncMsAverage <= this.#inlineFsyncMaxMs);
    }
  }

  /** One write(2) of everything staged (continuing a partial one). False on error. */
  #writeStaged(): boolean {
    if (this.#stagedWritten === this.#staging.length) return this.#failure === undefined || this.#clearFailure();
    try {
      this.#prepareSegment();
      const buf = this.#staging.buffer;
      const end = this.#staging.length;
      this.#preallocate(end - this.#stagedWritten);
      while (this.#stagedWritten < end) {
        const n = this.#fs.writeSync(this.#fd, buf, this.#stagedWritten, end - this.#stagedWritten, this.#fileBytes);
        this.#stats.writes++;
        if (n <= 0) throw Object.assign(new Error('write returned 0'), { code: 'EIO' });
        this.#stagedWritten += n;
        this.#fileBytes += n;
        this.#written += n;
      }
      this.#staging.reset();
      this.#stagedWritten = 0;
      this.#lastWriteMs = Date.now();
      if (this.#failure !== undefined) this.#clearFailure();
      return true;
    } catch (err) {
      this.#fail(err, 'write');
      return false;
    }
  }

  /** Zeros ahead of the data, so that the writes of the next `need` bytes land in existing blocks. */
  #preallocate(need: number): void {
    if (this.#preallocOff || this.#fileBytes + need <= this.#preallocEnd) return;
    const target = Math.min(this.#preallocEnd + PREALLOC_BYTES, this.#maxSegmentBytes);
    if (target < this.#fileBytes + need) return; // a write past the segment's size: appended
    let at = Math.max(this.#preallocEnd, this.#fileBytes);
    try {
      while (at < target) {
        const n = this.#fs.writeSync(this.#fd, PREALLOC_ZEROS, 0, Math.min(target - at, PREALLOC_PIECE_BYTES), at);
        if (n <= 0) break;
        at += n;
      }
    } catch {
      // No room for zeros (a full disk): append from here.
      this.#preallocOff = true;
    }
    this.#preallocEnd = at;
  }

  /** Opens the first or next segment when needed. Only called at a record boundary or mid-retry. */
  #prepareSegment(): void {
    const atBoundary = this.#stagedWritten === 0;
    if (this.#fd >= 0 && atBoundary && (this.#rotateBeforeNextWrite || this.#fileBytes >= this.#maxSegmentBytes)) this.#closeSegment(!this.#rotateBeforeNextWrite);
    if (this.#fd >= 0) return;
    for (let attempt = 0; ; attempt++) {
      const file = path.join(this.dir, writerSegmentName(this.threadIndex, this.#nextSeq));
      let fd: number;
      try {
        fd = this.#fs.openSync(file, 'wx');
      } catch (err) {
        // A leftover of ours (a failed create) or of a writer that crashed mid-create: skip it.
        if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 100) { this.#nextSeq++; continue; }
        throw err;
      }
      try {
        const header = encodeSegmentHeader({ kind: SEGMENT_KIND_WRITER, threadIndex: this.threadIndex, boot: this.#boot });
        if (this.#fs.writeSync(fd, header, 0, header.length, 0) !== header.length) throw Object.assign(new Error('short header write'), { code: 'ENOSPC' });
        // The new file's directory entry must be durable before anything in it is acknowledged.
        fsyncDir(this.dir);
      } catch (err) {
        this.#closeFd(fd);
        try { this.#fs.unlinkSync(file); } catch { /* keep going: the next create skips it */ }
        throw err;
      }
      this.#nextSeq++;
      this.#fd = fd;
      this.#fileBytes = SEGMENT_HEADER_BYTES;
      this.#preallocEnd = SEGMENT_HEADER_BYTES;
      this.#preallocOff = false;
      this.#fileOpenedMs = Date.now();
      this.#rotateBeforeNextWrite = false;
      this.#stats.segmentsCreated++;
      return;
    }
  }

  /**
   * Closes the current segment with a SEAL record (compaction may take a sealed segment;
   * without the seal, for instance when the disk is full, it waits for a higher-numbered
   * segment of this thread or the next boot). Under 'always'/'everysec' it is fdatasync'd
   * first. Never throws.
   */
  #closeSegment(sync: boolean): void {
    const fd = this.#fd;
    if (this.#stagedWritten === 0) {
      try {
        if (this.#fs.writeSync(fd, SEAL_RECORD, 0, SEAL_RECORD.length, this.#fileBytes) === SEAL_RECORD.length) this.#fileBytes += SEAL_RECORD.length;
      } catch { /* unsealed: see above */ }
    }
    this.#truncatePrealloc(fd);
    if (sync && this.fsync !== 'no') {
      try {
        this.#fs.fdatasyncSync(fd);
        this.#stats.syncs++;
        // Earlier segments were synced when they were closed, so everything written is on disk.
        this.#synced = this.#written;
        this.#lastSyncMs = Date.now();
        this.#settleSyncWaiters();
      } catch (err) {
        this.#failSync(err);
      }
    }
    this.#fd = -1;
    if (this.#syncInFlight) this.#retiredFds.push(fd); else this.#closeFd(fd);
  }

  /**
   * Starts the fdatasync of what is written; one is in flight at a time, and it covers every
   * byte written before it starts.
   *
   * `inline`: on this thread, as Redis's `appendfsync always` does in beforeSleep. #flush asks
   * for it under 'always' while fdatasyncs are fast (their moving average at most
   * inlineFsyncMaxMs), and for a lone committer (one commit, nobody else waiting). The thread
   * blocks for one fsync; the requests that arrive meanwhile wait in the sockets' buffers and are
   * read, written and synced together in the next turn - the group commit, with no hop to the
   * thread pool and back. That hop (a futex wake of a pool thread, the fsync, an async handle
   * waking this loop again) cost more than it saved: in A/B runs on this VM (docs/durability.md,
   * "Where the fdatasync runs") the thread was ahead of the pool on 7 of 8 durable workloads,
   * up to 1.25x, and level on the eighth (a lone committer, inline before too). When fsyncs are
   * slow (a spinning disk, network storage: milliseconds each), a group goes to the pool, so
   * the loop keeps serving the thread's other connections (non-durable queues, pings, timers)
   * while the disk works; the next group then waits for the one in flight.
   */
  #startSync(inline = false): void {
    if (this.#syncInFlight || this.#fd < 0 || this.#written <= this.#synced) {
      this.#settleSyncWaiters();
      return;
    }
    const target = this.#written;
    const fd = this.#fd;
    this.#stats.syncs++;
    this.#lastSyncMs = Date.now();
    const started = performance.now();
    if (inline) {
      // On this thread, like Redis's `appendfsync always` in beforeSleep: no hop to the
      // thread pool and back per group commit.
      let err: NodeJS.ErrnoException | null = null;
      try {
        this.#fs.fdatasyncSync(fd);
      } catch (e) {
        err = e as NodeJS.ErrnoException;
      }
      this.#syncDone(err, target, started);
      return;
    }
    this.#syncInFlight = new Promise<void>((resolve) => {
      this.#fs.fdatasync(fd, (err) => {
        this.#syncInFlight = undefined;
        this.#syncDone(err, target, started);
        resolve();
        if (!this.#closed && this.fsync === 'always' && this.#syncWaiters.length > 0) this.#startSync();
      });
    });
  }

  /** An fdatasync of the bytes up to `target`, begun at `started`, ended (inline or in the pool). */
  #syncDone(err: NodeJS.ErrnoException | null, target: number, started: number): void {
    for (const retired of this.#retiredFds) this.#closeFd(retired);
    this.#retiredFds = [];
    if (err) {
      this.#failSync(err);
    } else {
      const ms = performance.now() - started;
      this.#fsyncMsAverage += (ms - this.#fsyncMsAverage) * FSYNC_AVERAGE_WEIGHT;
      this.#onFsync?.(ms / 1000);
      if (target > this.#synced) this.#synced = target;
    }
    this.#settleSyncWaiters();
  }

  #settleSyncWaiters(): void {
    if (this.#syncWaiters.length === 0) return;
    let settled = 0;
    while (settled < this.#syncWaiters.length && this.#syncWaiters[settled]!.end <= this.#synced) settled++;
    if (settled === 0) return;
    const done = this.#syncWaiters.splice(0, settled);
    this.#stats.groups += done.length;
    for (const g of done) g.resolve();
  }

  #fail(err: unknown, what: string): void {
    this.#stats.failedWrites++;
    const first = this.#failure === undefined;
    this.#failure = new TurboError('ERR_STORAGE', `cannot ${what} the log in ${this.dir}: ${describeFsError(err)}`, { cause: err });
    if (first) this.#logger.error({ err, dir: this.dir, threadIndex: this.threadIndex, pendingBytes: this.#appended - this.#written }, `turbomq log: ${what} failed; pushes should be refused until it recovers (retried every ${TICK_MS} ms)`);
  }

  /**
   * After a failed fdatasync the kernel may have dropped the dirty pages it could not write
   * ("fsyncgate"), so a later fdatasync of the same file proves nothing about them: the
   * waiting commits reject, and the next bytes go to a new segment.
   */
  #failSync(err: unknown): void {
    this.#fail(err, 'fdatasync');
    const error = this.#failure!;
    for (const g of this.#syncWaiters) g.reject(error);
    this.#syncWaiters = [];
    this.#poisonedEnd = this.#written;
    this.#synced = this.#written;
    this.#rotateBeforeNextWrite = true;
  }

  #clearFailure(): boolean {
    this.#logger.info({ dir: this.dir, threadIndex: this.threadIndex }, 'turbomq log: writes succeed again');
    this.#failure = undefined;
    return true;
  }

  #tick(): void {
    if (this.#closed) return;
    const now = Date.now();
    // Retry what a failed write left behind, even when nobody commits.
    if (this.#failure !== undefined && this.#stagedWritten < this.#staging.length && !this.#flushScheduled) this.#flush();
    if (this.fsync === 'everysec' && this.#written > this.#synced && now - this.#lastSyncMs >= EVERYSEC_INTERVAL_MS) this.#startSync();
    // Close an idle or old segment so that compaction can take it.
    if (this.#fd >= 0 && !this.#syncInFlight && this.#staging.length === 0 && this.#openGroup === undefined) {
      const idle = now - this.#lastWriteMs >= this.#idleRotateMs && this.#fileBytes >= this.#minRotateBytes;
      const old = now - this.#fileOpenedMs >= this.#maxSegmentAgeMs && this.#fileBytes >= 64 * 1024;
      if (idle || old) this.#closeSegment(true);
    }
  }

  #closeFd(fd: number): void {
    if (fd < 0) return;
    try {
      this.#fs.closeSync(fd);
    } catch { /* nothing to do */ }
  }

  /** Turns ids into ranges of consecutive ids in #firsts/#counts; returns how many. */
  #toRanges(ids: Ids): number {
    const length = ids.length;
    if (length === 0) return 0;
    let n = 0;
    let first = -1, count = 0;
    let words: Uint32Array | undefined;
    if (ids instanceof BigUint64Array) words = new Uint32Array(ids.buffer, ids.byteOffset, length * 2);
    for (let i = 0; i < length; i++) {
      let id: number;
      if (words !== undefined) {
        const hi = words[2 * i + 1]!;
        if (hi >= 0x200000) throw new RangeError(`message id ${ids[i]} is above 2^53`);
        id = words[2 * i]! + hi * TWO_32;
      } else {
        id = idNumber((ids as ArrayLike<number | bigint>)[i]!);
      }
      if (count > 0 && id === first + count && count < 0xffffffff) {
        count++;
        continue;
      }
      if (count > 0) n = this.#pushRange(n, first, count);
      first = id;
      count = 1;
    }
    return this.#pushRange(n, first, count);
  }

  #pushRange(n: number, first: number, count: number): number {
    if (n === this.#firsts.length) {
      const f = new Float64Array(n * 2); f.set(this.#firsts); this.#firsts = f;
      const c = new Float64Array(n * 2); c.set(this.#counts); this.#counts = c;
    }
    this.#firsts[n] = first;
    this.#counts[n] = count;
    return n + 1;
  }
}

const defaultFs: LogFs = {
  openSync: (p, flags) => realFs.openSync(p, flags),
  writeSync: (fd, buffer, offset, length, position) => realFs.writeSync(fd, buffer, offset, length, position),
  fdatasync: (fd, cb) => realFs.fdatasync(fd, cb),
  fdatasyncSync: (fd) => realFs.fdatasyncSync(fd),
  closeSync: (fd) => realFs.closeSync(fd),
  unlinkSync: (p) => realFs.unlinkSync(p),
  ftruncateSync: (fd, length) => realFs.ftruncateSync(fd, length),
};

/**
 * A segment is extended with zeros this far ahead of its data, so the records are written into
 * blocks that already exist:
 *   - under 'always', an fdatasync then flushes only the data, not the file's size and block
 *     map: 1.36x the write+fdatasync rate of an appending file (5,751 against 4,217/s, the same
 *     disk in the same run: docs/benchmarks.md);
 *   - under every policy, a write(2) that neither extends the file nor allocates is cheaper:
 *     a 1.5 KB record 2.9 us against 3.3-4.0 us appending (docs/durability.md, "Preallocation").
 * Recovery and compaction read an all-zero tail as the clean end of a segment; a closed segment
 * is truncated to its data.
 */
const PREALLOC_BYTES = 1024 * 1024;
/**
 * The zeros go in writes of this size, not one write of PREALLOC_BYTES: ext4 caches a large
 * write in large folios, and each later small write into one walks the folio's every block
 * (ext4_block_write_begin). On this VM's kernel (6.18) a 1.5 KB record written into zeros
 * written 1 MiB at a time cost 4.3-4.9 us, against 2.9 us into zeros written 64 KiB at a time,
 * zeros included; 120 B records 4.7 against 2.6 us.
 */
const PREALLOC_PIECE_BYTES = 64 * 1024;
const PREALLOC_ZEROS = new Uint8Array(PREALLOC_PIECE_BYTES);

function checkNames(queue: Uint8Array, topic: Uint8Array): void {
  if (queue.length < 1 || queue.length > 255 || topic.length < 1 || topic.length > 255) {
    throw new TurboError('ERR_INVALID_ARGUMENT', 'queue and topic names are 1 to 255 bytes');
  }
}

function idNumber(id: bigint | number): number {
  const n = typeof id === 'bigint' ? Number(id) : id;
  if (!Number.isInteger(n) || n < 0 || n > MAX_SAFE_ID) throw new RangeError(`message id ${id} is not an integer from 0 to 2^53`);
  return n;
}
