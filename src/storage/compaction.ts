// Compaction: gives disk space back as messages are removed. One Compactor per data
// directory, on the main thread, started after recovery; it never blocks a writer.
//
// It follows the log as the writers write it: every pass (default every second) it reads
// the bytes appended to every segment since the last pass (the same records recovery
// reads), fdatasyncs each file it read before it trusts it, and keeps per topic which ids
// are live, which were seen pushed, and which were removed before their push was seen (a
// consumer on another thread can log a removal first: `pending`). All of it is RangeSets
// (src/storage/ranges.ts), so it costs per run of consecutive ids, not per message.
//
// Then it rewrites sealed segments (closed by their writer with a SEAL record, from an
// earlier boot, or compaction outputs) whose bytes are mostly dead into one new output
// c-<n>.log holding only what is still needed:
//   - the live messages of the inputs, in id order per topic, with their newest meta;
//   - REMOVE ranges whose push is still in some segment (one that stays, or an input: a
//     crash while the inputs are deleted may leave any of them), or was never seen;
//   - META records of live messages whose push is elsewhere (or not seen yet);
//   - the newest SETTINGS of each queue in the inputs, and NEXT_ID per topic.
// The output is written to c-<n>.log.tmp, fdatasync'd, renamed, the directory fsync'd, and
// only then are the inputs deleted (and the directory fsync'd again). A crash in between
// leaves a .tmp (deleted at start) or the output beside its inputs (copies recovery counts
// once). A segment with nothing live yields nothing and is just deleted.
//
// Why it is safe: everything it drops is dead by records that are durable (it fdatasyncs
// what it read; a writer's bytes never disappear, a failed write is continued in place),
// and a removal is dropped only when no push of its id can be on disk any more.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../engine/options.ts';
import {
  RecordEncoder, DecodedRecord, decodeRecord, isZeroTail, decodeSegmentHeader, encodeSegmentHeader, DECODE_OK, DECODE_INCOMPLETE,
  readU32, readU64, readF64, writeU32, deliveriesOf, newerMeta, metaOverrides, type MetaRecord,
  RECORD_PUSH, RECORD_REMOVE, RECORD_META, RECORD_SETTINGS, RECORD_NEXT_ID, RECORD_SEAL, RECORD_DEDUP, RECORD_DELIVERED, DELIVERED_ENTRY_BYTES,
  REMOVE_RANGE_BYTES, STORED_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_KIND_COMPACTED,
} from './format.ts';
import { listSegments, listTmpFiles, compactedSegmentName, highestSeq, fsyncDir, describeFsError, TMP_SUFFIX } from './files.ts';
import { RangeSet } from './ranges.ts';
import type { DataDirLock } from './lock.ts';
import { TurboError } from '../errors.ts';

export interface CompactionOptions {
  logger?: Logger;
  /** Time between passes. Default 1000 ms. */
  intervalMs?: number;
  /** A sealed segment is rewritten once at least this share of its bytes is dead. Default 0.5. */
  minDeadRatio?: number;
  /** Input bytes one pass rewrites at most. Default 64 MiB. */
  maxPassBytes?: number;
  /** Sealed segments under this size are merged into a pass's output. Default 1 MiB. */
  smallSegmentBytes?: number;
}

export interface CompactionPass {
  /** New bytes read from the segments. */
  scannedBytes: number;
  /** Segments rewritten or deleted, their bytes, and the output's bytes (0: none written). */
  inputs: number;
  inputBytes: number;
  outputBytes: number;
}

export interface CompactionStats {
  segments: number;
  diskBytes: number;
  topics: number;
  liveMessages: number;
  /** Bytes of the bookkeeping (range sets) over all topics and segments. */
  bookkeepingBytes: number;
  passes: number;
  rewrites: number;
  segmentsDeleted: number;
  bytesReclaimed: number;
}

/** Pushes of one topic in one segment. Past MAX_EXACT_RANGES it keeps only the bounds (safe: it may then only keep too much). */
class SegmentPushes {
  set = new RangeSet();
  count = 0;
  bytes = 0;
  approx = false;

  add(start: number, end: number, bytes: number): void {
    this.count += end - start;
    this.bytes += bytes;
    this.set.addRange(start, end);
    if (this.approx || this.set.rangeCount > MAX_EXACT_RANGES) {
      const first = this.set.first(), last = this.set.last();
      this.set = new RangeSet();
      this.set.addRange(first, last + 1);
      this.approx = true;
    }
  }

  liveBytes(live: RangeSet): number {
    if (this.count === 0) return 0;
    const liveCount = Math.min(this.count, live.intersectionSize(this.set));
    return (this.bytes * liveCount) / this.count;
  }
}

/**
 * Nothing left in `s` to read for now: read to its size, stopped at damage, or at a zero tail
 * (its writer's preallocation: for a sealed segment, whose writer is done, the end for good).
 */
function readToEnd(s: SegmentState): boolean {
  return s.bad || s.zeroTail || s.scanned >= s.size;
}

const MAX_EXACT_RANGES = 4096;
/** A sealed segment whose live part still shrinks waits at most this many passes before a rewrite. */
const MAX_DRAIN_WAITS = 5;
/** Following the log reads at most this much at a time (a larger record: its size). */
const READ_CHUNK_BYTES = 4 * 1024 * 1024;

interface SegmentState {
  name: string;
  kind: 'w' | 'c';
  threadIndex: number;
  seq: number;
  /** -1 until the header is read. */
  boot: number;
  headerBad: boolean;
  size: number;
  /** Bytes parsed so far (the next record starts here). */
  scanned: number;
  /** Stopped for good at a bad record (the rest is ignored, as recovery does). */
  bad: boolean;
  /** Everything from `scanned` to `size` was zeros at the last read: preallocated, not written (yet). */
  zeroTail: boolean;
  /** The writer closed it (a SEAL record), or it is a compaction output. */
  sealedByRecord: boolean;
  pushes: Map<string, SegmentPushes>;
  /** Bytes of records other than PUSH and DEDUP. */
  otherBytes: number;
  /** Bytes of DEDUP records, live until the latest expiry among them (ms since the epoch). */
  dedupBytes: number;
  dedupUntil: number;
  /** The live bytes of its pushes at the last #choose (-1: not measured yet), and how many passes it waited for them to drain. */
  liveBefore: number;
  waited: number;
}

interface TopicState {
  queue: Buffer;
  topic: Buffer;
  live: RangeSet;
  seen: RangeSet;
  pending: RangeSet;
  maxId: number;
}

const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };

const compacting = new WeakSet<object>();

/**
 * Starts compacting the directory of `lock` (from lockDataDir) every intervalMs; call it
 * once per lock, after recovery. Its view of which ids are dead is built from the earlier
 * boots' segments first, so a second compactor in the same boot is refused: lock again.
 */
export function startCompaction(lock: Pick<DataDirLock, 'dir' | 'boot'>, options: CompactionOptions = {}): Compactor {
  if (compacting.has(lock)) throw new TurboError('ERR_INVALID_ARGUMENT', `compaction of ${lock.dir} already started for boot ${lock.boot}; lock the directory again for a new one`);
  compacting.add(lock);
  const compactor = new Compactor(lock.dir, lock.boot, options);
  compactor.start();
  return compactor;
}

export class Compactor {
  readonly dir: string;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #minDeadRatio: number;
  readonly #maxPassBytes: number;
  readonly #smallSegmentBytes: number;
  readonly #boot: number;
  readonly #segments = new Map<string, SegmentState>();
  readonly #topics = new Map<string, TopicState>();
  /**
   * Earlier boots' segments are read first; then ids up to each topic's maxId count as seen
   * (#settle). This boot's ids are above them: recovery's nextId comes from the same files.
   */
  #settled = false;
  #nextSeq: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<CompactionPass> | undefined;
  #stopped = false;
  readonly #rec = new DecodedRecord();
  readonly #stats = { passes: 0, rewrites: 0, segmentsDeleted: 0, bytesReclaimed: 0 };

  /** Use startCompaction(). */
  constructor(dir: string, boot: number, options: CompactionOptions = {}) {
    this.dir = dir;
    this.#logger = options.logger ?? silentLogger;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#minDeadRatio = options.minDeadRatio ?? 0.5;
    this.#maxPassBytes = options.maxPassBytes ?? 64 * 1024 * 1024;
    this.#smallSegmentBytes = options.smallSegmentBytes ?? 1024 * 1024;
    this.#boot = boot;
    for (const tmp of listTmpFiles(dir)) {
      try { fs.unlinkSync(path.join(dir, tmp)); } catch { /* gone */ }
    }
    this.#nextSeq = highestSeq(dir, 'c') + 1;
  }

  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    const loop = () => {
      this.#timer = setTimeout(() => {
        this.runOnce().catch((err: unknown) => this.#logger.error({ err, dir: this.dir }, 'turbomq compaction: pass failed; retrying later')).finally(() => {
          if (!this.#stopped) loop();
        });
      }, this.#intervalMs);
      this.#timer.unref();
    };
    loop();
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#running) await this.#running.catch(() => {});
  }

  /** One pass: read what is new, then rewrite what is mostly dead. */
  runOnce(): Promise<CompactionPass> {
    if (this.#running) return this.#running;
    this.#running = this.#pass().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  stats(): CompactionStats {
    let diskBytes = 0, bookkeepingBytes = 0, liveMessages = 0;
    for (const s of this.#segments.values()) {
      diskBytes += s.size;
      for (const p of s.pushes.values()) bookkeepingBytes += p.set.bytes + 48;
    }
    for (const t of this.#topics.values()) {
      liveMessages += t.live.size;
      bookkeepingBytes += t.live.bytes + t.seen.bytes + t.pending.bytes + 96;
    }
    return { segments: this.#segments.size, diskBytes, topics: this.#topics.size, liveMessages, bookkeepingBytes, ...this.#stats };
  }

  async #pass(): Promise<CompactionPass> {
    this.#stats.passes++;
    const scannedBytes = await this.#scan();
    const chosen = this.#choose();
    const result: CompactionPass = { scannedBytes, inputs: 0, inputBytes: 0, outputBytes: 0 };
    if (chosen.length === 0 || this.#stopped) return result;
    const outputBytes = await this.#rewrite(chosen);
    result.inputs = chosen.length;
    result.inputBytes = chosen.reduce((a, s) => a + s.size, 0);
    result.outputBytes = outputBytes;
    return result;
  }

  // ── Following the log ────────────────────────────────────────────────────────────────

  async #scan(): Promise<number> {
    const listed = listSegments(this.dir);
    const names = new Set(listed.map((s) => s.name));
    for (const name of this.#segments.keys()) if (!names.has(name)) this.#segments.delete(name);
    for (const s of listed) {
      if (!this.#segments.has(s.name)) {
        this.#segments.set(s.name, {
          name: s.name, kind: s.kind, threadIndex: s.threadIndex, seq: s.seq, boot: -1, headerBad: false,
          size: 0, scanned: 0, bad: false, zeroTail: false, sealedByRecord: s.kind === 'c', pushes: new Map(), otherBytes: 0, dedupBytes: 0, dedupUntil: 0, liveBefore: -1, waited: 0,
        });
      }
    }
    let scanned = 0;
    // Previous boots first; then ids below every topic's maxId count as seen (see #settle).
    // If one of them cannot be read now (an I/O error), nothing more happens until it can.
    if (!this.#settled) {
      let complete = true;
      for (const s of this.#segments.values()) {
        if (s.boot < 0 && !(await this.#readHeader(s))) complete = false;
        if (s.boot >= 0 && s.boot < this.#boot && !s.headerBad) {
          scanned += await this.#read(s);
          if (!readToEnd(s)) complete = false;
        }
      }
      if (!complete) return scanned;
      this.#settle();
    }
    for (const s of this.#segments.values()) {
      if (s.boot < 0) await this.#readHeader(s);
      if (s.boot >= 0 && !s.headerBad) scanned += await this.#read(s);
    }
    return scanned;
  }

  /**
   * After the previous boots' segments are read, no push of an old id can still appear
   * (their writers are gone): a removal of an id below a topic's maxId whose push is not
   * on disk is then a leftover, never pending.
   */
  #settle(): void {
    for (const t of this.#topics.values()) {
      t.seen = new RangeSet();
      if (t.maxId >= 0) t.seen.addRange(0, t.maxId + 1);
      t.pending.clear();
    }
    this.#settled = true;
  }

  /**
   * Reads the segment header into s.boot. False when it could not be read for now (an I/O
   * error): true when it was read, found bad, or the file is too short (a writer creating
   * it: its writer writes the header right after creating the file; or, when a newer
   * segment of the thread exists, a leftover that recovery ignores too).
   */
  async #readHeader(s: SegmentState): Promise<boolean> {
    let fh: fs.promises.FileHandle | undefined;
    try {
      fh = await fs.promises.open(path.join(this.dir, s.name), 'r');
      const { size } = await fh.stat();
      s.size = size;
      if (size < SEGMENT_HEADER_BYTES) {
        if (!this.#activeWriter(s)) { s.boot = 0; s.headerBad = true; }
        return true;
      }
      const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
      await fh.read(b, 0, SEGMENT_HEADER_BYTES, 0);
      const header = decodeSegmentHeader(b);
      if (typeof header === 'string') {
        s.boot = 0;
        s.headerBad = true;
        this.#logger.warn({ file: s.name, reason: header }, 'turbomq compaction: not a segment; leaving it alone');
        return true;
      }
      s.boot = header.boot;
      s.scanned = SEGMENT_HEADER_BYTES;
      return true;
    } catch (err) {
      // Vanished (deleted meanwhile: dropped at the next listing) or unreadable: try again.
      return (err as NodeJS.ErrnoException).code === 'ENOENT';
    } finally {
      await fh?.close();
    }
  }

  /** Reads and applies the complete records appended since the last pass; returns the bytes. */
  async #read(s: SegmentState): Promise<number> {
    if (s.bad) return 0;
    let fh: fs.promises.FileHandle | undefined;
    const from = s.scanned;
    let total = 0;
    try {
      fh = await fs.promises.open(path.join(this.dir, s.name), 'r');
      const { size } = await fh.stat();
      if (size < s.scanned) {
        // A writer never takes back bytes it wrote (a failed write is continued in place).
        // It does give back the zeros it preallocated past its data when it closes a
        // segment (log.ts), which is a file shrinking to no less than what was read.
        this.#logger.warn({ file: s.name, size, known: s.scanned }, 'turbomq compaction: a segment shrank below what was read; leaving it alone');
        s.headerBad = true;
        return 0;
      }
      s.size = size;
      if (size <= from) return 0;
      s.zeroTail = false;
      // In pieces of at most READ_CHUNK_BYTES into one buffer kept between passes: following
      // the log reads every byte written, and a fresh buffer for each (tens of MB a second
      // under load) cost more in page faults and garbage collection than the reading itself.
      while (s.scanned < size && !s.bad) {
        const want = Math.min(size - s.scanned, Math.max(READ_CHUNK_BYTES, this.#pendingRecordBytes));
        const reachesSize = s.scanned + want >= size;
        if (this.#readBuffer.length < want) this.#readBuffer = Buffer.allocUnsafe(want);
        const buf = this.#readBuffer;
        let got = 0;
        while (got < want) {
          const { bytesRead } = await fh.read(buf, got, want - got, s.scanned + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        // Only durable records may decide what is dead, so the file is fdatasync'd after the
        // read and before the records are applied: every byte read was written before the
        // fdatasync started, so it is on disk once that returns. (Synced before the read, the
        // bytes below `size` would not all be covered: a writer fills its preallocated zeros
        // in place, so a record can appear below `size` after the sync.)
        await fh.datasync();
        const before = s.scanned;
        this.#decode(s, buf.subarray(0, got), s.scanned + got < size);
        total += s.scanned - before;
        // Nothing whole in it: the end (a write in progress), unless a record larger than the
        // piece was cut - then read again, as much as it needs.
        if (s.scanned === before && !(this.#pendingRecordBytes > got)) break;
        // Read up to the size this pass started from: what a writer adds meanwhile into its
        // preallocated zeros is for the next pass (else a pass would chase a busy writer
        // through its zeros, an fdatasync per piece: 3,823 in one bench run, against 101).
        if (reachesSize) break;
      }
    } catch {
      return total;
    } finally {
      await fh?.close();
      // A buffer grown for one large record is not kept.
      if (this.#readBuffer.length > READ_CHUNK_BYTES) this.#readBuffer = Buffer.alloc(0);
    }
    return total;
  }

  /** Buffer for #read, kept between passes. */
  #readBuffer = Buffer.alloc(0);
  /** A record larger than READ_CHUNK_BYTES was cut by the last piece: read at least this much next. */
  #pendingRecordBytes = 0;

  /** Applies the whole records in `buf` (the bytes of `s` from s.scanned); `more`: the file goes on after it. */
  #decode(s: SegmentState, buf: Buffer, more: boolean): void {
    const from = s.scanned;
    this.#pendingRecordBytes = 0;
    const sealedBefore = this.#sealed(s);
    const rec = this.#rec;
    let at = 0;
    while (at < buf.length) {
      const status = decodeRecord(buf, at, buf.length, rec);
      if (status !== DECODE_OK) {
        // Cut by the end of this piece, not of the file: the next piece starts with it.
        if (status === DECODE_INCOMPLETE && more) {
          if (at === 0 && buf.length - at >= 4) this.#pendingRecordBytes = readU32(buf, at);
          break;
        }
        // A preallocated tail not written yet (log.ts): the end, not damage. Zeros to the end
        // of the file: once no writer can fill them, the segment has been read to its end.
        if (isZeroTail(buf, at, buf.length)) {
          if (!more) s.zeroTail = true;
          break;
        }
        // In a segment still being written an incomplete record is the write in progress.
        if (sealedBefore || s.sealedByRecord || (status !== DECODE_INCOMPLETE && !this.#activeWriter(s))) {
          s.bad = true;
          this.#logger.warn({ file: s.name, offset: from + at, reason: rec.reason }, 'turbomq compaction: bad record; the rest of the segment is ignored (as recovery does)');
        }
        break;
      }
      this.#apply(buf, rec, s);
      at = rec.end;
    }
    s.scanned = from + at;
  }

  #topicOf(buf: Buffer, rec: DecodedRecord): [string, TopicState] {
    const key = `${rec.queueLength}:${buf.toString('latin1', rec.queueStart, rec.topicStart + rec.topicLength)}`;
    let t = this.#topics.get(key);
    if (t === undefined) {
      t = {
        queue: Buffer.from(buf.subarray(rec.queueStart, rec.topicStart)),
        topic: Buffer.from(buf.subarray(rec.topicStart, rec.topicStart + rec.topicLength)),
        live: new RangeSet(), seen: new RangeSet(), pending: new RangeSet(), maxId: -1,
      };
      this.#topics.set(key, t);
    }
    return [key, t];
  }

  #apply(buf: Buffer, rec: DecodedRecord, s: SegmentState): void {
    const length = rec.end - rec.start;
    switch (rec.type) {
      case RECORD_SEAL:
        s.sealedByRecord = true;
        s.otherBytes += length;
        return;
      case RECORD_SETTINGS:
        s.otherBytes += length;
        return;
      case RECORD_PUSH: {
        const [key, t] = this.#topicOf(buf, rec);
        if (rec.dedupLength > 0) {
          s.dedupBytes += 9 + rec.dedupLength;
          if (rec.dedupExpires > s.dedupUntil) s.dedupUntil = rec.dedupExpires;
        }
        let pushes = s.pushes.get(key);
        if (pushes === undefined) s.pushes.set(key, pushes = new SegmentPushes());
        // Runs of consecutive ids (a batch) are applied as one range.
        let p = rec.recordsStart;
        let runStart = -1, runEnd = -1, runBytes = 0;
        const overhead = (rec.recordsStart - rec.start);
        while (p < rec.end) {
          const bytes = STORED_HEADER_BYTES + readU32(buf, p);
          const id = readU64(buf, p + 8);
          if (id === runEnd) {
            runEnd++;
            runBytes += bytes;
          } else {
            if (runStart >= 0) this.#applyPushes(t, pushes, runStart, runEnd, runBytes);
            runStart = id;
            runEnd = id + 1;
            runBytes = bytes;
          }
          p += bytes;
        }
        this.#applyPushes(t, pushes, runStart, runEnd, runBytes + overhead);
        return;
      }
      case RECORD_REMOVE: {
        const [, t] = this.#topicOf(buf, rec);
        s.otherBytes += length;
        for (let p = rec.bodyStart; p < rec.end; p += REMOVE_RANGE_BYTES) {
          const first = readU64(buf, p);
          const end = first + readU32(buf, p + 8);
          if (end <= first) continue;
          if (end - 1 > t.maxId) t.maxId = end - 1;
          t.live.deleteRange(first, end);
          if (t.seen.countIn(first, end) < end - first) t.seen.forEachGap(first, end, (a, b) => t.pending.addRange(a, b));
        }
        return;
      }
      case RECORD_META: {
        const [, t] = this.#topicOf(buf, rec);
        s.otherBytes += length;
        if (rec.id > t.maxId) t.maxId = rec.id;
        return;
      }
      case RECORD_DELIVERED: {
        const [, t] = this.#topicOf(buf, rec);
        s.otherBytes += length;
        for (let p = rec.bodyStart; p < rec.end; p += DELIVERED_ENTRY_BYTES) {
          const id = readU64(buf, p);
          if (id > t.maxId) t.maxId = id;
        }
        return;
      }
      case RECORD_NEXT_ID: {
        const [, t] = this.#topicOf(buf, rec);
        s.otherBytes += length;
        if (rec.id - 1 > t.maxId) t.maxId = rec.id - 1;
        return;
      }
      case RECORD_DEDUP:
        s.dedupBytes += length;
        if (rec.dedupExpires > s.dedupUntil) s.dedupUntil = rec.dedupExpires;
        return;
    }
  }

  /** Pushes of ids [start, end) in segment pushes: live unless already removed (pending) or seen. */
  #applyPushes(t: TopicState, pushes: SegmentPushes, start: number, end: number, bytes: number): void {
    if (end - 1 > t.maxId) t.maxId = end - 1;
    if (t.pending.size > 0 && t.pending.countIn(start, end) > 0) {
      for (let id = start; id < end; id++) {
        if (t.pending.has(id)) t.pending.deleteRange(id, id + 1);
        else if (!t.seen.has(id)) t.live.add(id);
      }
    } else if (!(start <= t.seen.last())) {
      t.live.addRange(start, end);
    } else {
      // Some were seen before (copies): those stay as they are, live or dead.
      t.seen.forEachGap(start, end, (a, b) => t.live.addRange(a, b));
    }
    t.seen.addRange(start, end);
    pushes.add(start, end, bytes);
  }

  /** Closed for good: an earlier boot's, a compaction output, sealed, or superseded. */
  #sealed(s: SegmentState): boolean {
    if (s.kind === 'c' || s.sealedByRecord) return true;
    if (s.boot >= 0 && s.boot < this.#boot) return true;
    return !this.#activeWriter(s);
  }

  /** Whether s is the newest segment of its thread index (the only one its writer may write). */
  #activeWriter(s: SegmentState): boolean {
    if (s.kind === 'c') return false;
    for (const o of this.#segments.values()) if (o.kind === 'w' && o.threadIndex === s.threadIndex && o.seq > s.seq) return false;
    return true;
  }

  // ── Choosing and rewriting ──────────────────────────────────────────────────────────

  #choose(): SegmentState[] {
    const now = Date.now();
    const candidates: { s: SegmentState; dead: number }[] = [];
    const small: SegmentState[] = [];
    for (const s of this.#segments.values()) {
      if (s.boot < 0) continue;
      const sealed = this.#sealed(s);
      if (s.headerBad) {
        if (sealed && s.size === 0) candidates.push({ s, dead: 0 });
        continue;
      }
      if (!readToEnd(s)) continue;
      let live = 0;
      for (const [key, pushes] of s.pushes) live += pushes.liveBytes(this.#topics.get(key)!.live);
      // Still being consumed (fewer live messages than at the last pass, measured while it was
      // being written too): wait a few passes, it may soon be all dead, and then its rewrite
      // copies nothing but the removals. A consumer that keeps up leaves a segment a few
      // thousand live messages when it is sealed, gone a pass or two later; rewriting it at
      // once would look up every id it holds to copy those few.
      const draining = live > 0 && s.liveBefore >= 0 && live < s.liveBefore;
      s.liveBefore = live;
      if (!sealed) continue;
      if (draining && s.waited < MAX_DRAIN_WAITS) {
        s.waited++;
        continue;
      }
      // A compaction output's other records were needed when it was written: count them live,
      // or an output of only needed removals would be rewritten into itself forever.
      if (s.kind === 'c') live += s.otherBytes;
      // Open dedup windows must outlive the segment: its DEDUP records count live until the
      // last of them expires (then a rewrite drops them all).
      if (s.dedupUntil > now) live += s.dedupBytes;
      const dead = Math.max(0, s.size - live);
      if (s.size > 0 && dead / s.size >= this.#minDeadRatio) candidates.push({ s, dead });
      else if (s.size < this.#smallSegmentBytes) small.push(s);
    }
    if (candidates.length === 0) return [];
    candidates.sort((a, b) => b.dead - a.dead);
    const chosen: SegmentState[] = [];
    let bytes = 0;
    for (const { s } of candidates) {
      if (chosen.length > 0 && bytes + s.size > this.#maxPassBytes) continue;
      chosen.push(s);
      bytes += s.size;
    }
    for (const s of small) {
      if (bytes + s.size > this.#maxPassBytes) break;
      chosen.push(s);
      bytes += s.size;
    }
    return chosen;
  }

  /**
   * Rewrites `inputs` into one output (or none), then deletes them. Returns the output's bytes.
   *
   * Its loops are in small synchronous methods (#collect, #encodeTopic and the ones they call),
   * not inline in this async one: a long loop inside a large function ran as on-stack-replaced
   * code, which V8 threw away at the loop's exit, so every pass compiled this whole function
   * again with TurboFan - about 55 ms of a helper thread's CPU per pass under a steady load.
   */
  async #rewrite(inputs: SegmentState[]): Promise<number> {
    const found = new RewriteInputs();
    for (const s of inputs) {
      if (s.headerBad) continue;
      const buf = await fs.promises.readFile(path.join(this.dir, s.name));
      this.#collect(s, buf, found);
    }
    const out = new RewriteOutput(this.#boot);
    for (const key of [...found.touched].sort()) this.#encodeTopic(key, found, out);
    for (const st of found.settings.values()) out.settings(st);
    const { enc, records, pushes: outPushes, dedupBytes: outDedupBytes, dedupUntil: outDedupUntil } = out;

    let outputBytes = 0;
    if (records > 0) {
      const name = compactedSegmentName(this.#nextSeq++);
      const file = path.join(this.dir, name);
      const tmp = file + TMP_SUFFIX;
      try {
        const fh = await fs.promises.open(tmp, 'wx');
        try {
          await fh.writeFile(enc.bytes());
          await fh.datasync();
        } finally {
          await fh.close();
        }
        await fs.promises.rename(tmp, file);
        fsyncDir(this.dir);
      } catch (err) {
        try { fs.unlinkSync(tmp); } catch { /* not created */ }
        this.#logger.warn({ dir: this.dir, err }, `turbomq compaction: cannot write an output: ${describeFsError(err)}; inputs kept`);
        return 0;
      }
      outputBytes = enc.length;
      let pushBytes = 0;
      for (const p of outPushes.values()) pushBytes += p.bytes;
      this.#segments.set(name, {
        name, kind: 'c', threadIndex: 0, seq: this.#nextSeq - 1, boot: this.#boot, headerBad: false,
        size: outputBytes, scanned: outputBytes, bad: false, zeroTail: false, sealedByRecord: true, pushes: outPushes,
        otherBytes: outputBytes - SEGMENT_HEADER_BYTES - pushBytes - outDedupBytes, dedupBytes: outDedupBytes, dedupUntil: outDedupUntil,
        liveBefore: -1, waited: 0,
      });
    }
    let reclaimed = 0;
    for (const s of inputs) {
      try {
        fs.unlinkSync(path.join(this.dir, s.name));
        reclaimed += s.size;
        this.#stats.segmentsDeleted++;
      } catch (err) {
        this.#logger.warn({ file: s.name, err }, 'turbomq compaction: cannot delete a compacted segment');
      }
      this.#segments.delete(s.name);
    }
    fsyncDir(this.dir);
    this.#stats.rewrites++;
    this.#stats.bytesReclaimed += reclaimed - outputBytes;
    this.#logger.debug({ inputs: inputs.length, reclaimed, outputBytes }, 'turbomq compaction: rewrote segments');
    return outputBytes;
  }

  /** Collects from input `s` (its bytes `buf`) what its rewrite must keep, into `found`. */
  #collect(s: SegmentState, buf: Buffer, found: RewriteInputs): void {
    // Per topic: does this input hold any live push? (Its pushes' ranges are exact or a
    // superset, so "none" is certain.) Most inputs are mostly dead: their PUSH records
    // are skipped whole instead of looking up every id.
    const anyLive = new Map<string, boolean>();
    const rec = this.#rec;
    const end = Math.min(buf.length, s.scanned);
    for (let at = SEGMENT_HEADER_BYTES; at < end; at = rec.end) {
      // Checksums were verified when #read followed these bytes (up to s.scanned); a writer
      // never rewrites bytes it wrote, so they are not checked twice.
      if (decodeRecord(buf, at, end, rec, false) !== DECODE_OK) break;
      if (rec.type === RECORD_SEAL) continue;
      if (rec.type === RECORD_SETTINGS) {
        found.keepSettings(buf, rec);
        continue;
      }
      const [key, t] = this.#topicOf(buf, rec);
      found.touched.add(key);
      switch (rec.type) {
        case RECORD_PUSH: {
          if (rec.dedupLength > 0) found.keepDedup(key, buf.toString('latin1', rec.dedupStart, rec.dedupStart + rec.dedupLength), rec.dedupExpires);
          let here = anyLive.get(key);
          if (here === undefined) {
            const pushes = s.pushes.get(key);
            anyLive.set(key, here = pushes !== undefined && t.live.intersectionSize(pushes.set) > 0);
          }
          if (here) found.keepLivePushes(key, t.live, buf, rec);
          break;
        }
        case RECORD_REMOVE:
          found.keepRemovals(key, buf, rec);
          break;
        case RECORD_DEDUP:
          found.keepDedup(key, buf.toString('latin1', rec.dedupStart, rec.dedupStart + rec.dedupLength), rec.dedupExpires);
          break;
        case RECORD_META: {
          const m = found.metasOf(key);
          m.set(rec.id, newerMeta(m.get(rec.id), rec.meta, rec.dueAt, false));
          break;
        }
        case RECORD_DELIVERED:
          found.keepDelivered(key, buf, rec);
          break;
      }
    }
  }

  /** Encodes into `out` what topic `key` keeps: its live pushes, needed removals and metas, next id, open dedup windows. */
  #encodeTopic(key: string, found: RewriteInputs, out: RewriteOutput): void {
    const t = this.#topics.get(key)!;
    const m = found.metas.get(key);
    const inPushes = out.livePushes(key, t, found.lives.get(key) ?? [], m);
    const r = found.removed.get(key);
    if (r !== undefined && r.size > 0) out.removals(t, this.#neededRemovals(key, t, r));
    if (m !== undefined) out.metas(t, m, inPushes);
    if (t.maxId >= 0) out.nextId(t);
    const d = found.dedups.get(key);
    if (d !== undefined) out.dedups(t, d);
  }

  /**
   * The removals of `removed` still needed: their push is in some segment, or was never seen.
   * The inputs count too: the deletions after the rewrite may be cut short by a crash and
   * leave any of them.
   */
  #neededRemovals(key: string, t: TopicState, removed: RangeSet): RangeSet {
    const outside = new RangeSet();
    for (const s of this.#segments.values()) {
      const p = s.pushes.get(key);
      if (p !== undefined) outside.addAll(p.set);
    }
    const needed = new RangeSet();
    const add = (x: number, y: number) => needed.addRange(x, y);
    for (let i = 0; i < removed.rangeCount; i++) {
      const a = removed.startAt(i), b = removed.endAt(i);
      outside.forEachIn(a, b, add);
      t.seen.forEachGap(a, b, add);
    }
    return needed;
  }
}

/** A live push found in a rewrite's inputs: its stored record at `off` in `buf`. */
interface LivePush { id: number; buf: Buffer; off: number; meta: number; dueAt: number }

/** What a rewrite found in its inputs, per topic key (and per queue for settings). */
class RewriteInputs {
  /** The live pushes (id order after sorting; an id may have copies in several inputs). */
  readonly lives = new Map<string, LivePush[]>();
  readonly removed = new Map<string, RangeSet>();
  /** The newest meta per id. */
  readonly metas = new Map<string, Map<number, MetaRecord>>();
  /** The newest SETTINGS per queue. */
  readonly settings = new Map<string, StoredSettings>();
  /** dedupId (latin1) -> latest expiry, for windows still open. */
  readonly dedups = new Map<string, Map<string, number>>();
  readonly touched = new Set<string>();
  readonly now = Date.now();

  keepSettings(buf: Buffer, rec: DecodedRecord): void {
    const key = buf.toString('latin1', rec.queueStart, rec.queueStart + rec.queueLength);
    const boot = readU32(buf, rec.bodyStart), stamp = readF64(buf, rec.bodyStart + 4);
    const old = this.settings.get(key);
    if (old === undefined || boot > old.boot || (boot === old.boot && stamp >= old.stamp)) {
      this.settings.set(key, { queue: Buffer.from(buf.subarray(rec.queueStart, rec.queueStart + rec.queueLength)), boot, stamp, json: Buffer.from(buf.subarray(rec.bodyStart + 12, rec.end)) });
    }
  }

  keepDedup(key: string, id: string, expiresAt: number): void {
    if (expiresAt <= this.now) return;
    let d = this.dedups.get(key);
    if (d === undefined) this.dedups.set(key, d = new Map());
    if (!(expiresAt <= (d.get(id) ?? -Infinity))) d.set(id, expiresAt);
  }

  /** The stored records of PUSH `rec` whose ids are in `live`. */
  keepLivePushes(key: string, live: RangeSet, buf: Buffer, rec: DecodedRecord): void {
    let list = this.lives.get(key);
    for (let p = rec.recordsStart; p < rec.end; p += STORED_HEADER_BYTES + readU32(buf, p)) {
      const id = readU64(buf, p + 8);
      if (!live.has(id)) continue;
      if (list === undefined) this.lives.set(key, list = []);
      list.push({ id, buf, off: p, meta: readU32(buf, p + 4), dueAt: rec.dueAt });
    }
  }

  keepRemovals(key: string, buf: Buffer, rec: DecodedRecord): void {
    let set = this.removed.get(key);
    if (set === undefined) this.removed.set(key, set = new RangeSet());
    for (let p = rec.bodyStart; p < rec.end; p += REMOVE_RANGE_BYTES) {
      const first = readU64(buf, p);
      set.addRange(first, first + readU32(buf, p + 8));
    }
  }

  metasOf(key: string): Map<number, MetaRecord> {
    let m = this.metas.get(key);
    if (m === undefined) this.metas.set(key, m = new Map());
    return m;
  }

  keepDelivered(key: string, buf: Buffer, rec: DecodedRecord): void {
    const m = this.metasOf(key);
    for (let p = rec.bodyStart; p < rec.end; p += DELIVERED_ENTRY_BYTES) {
      const id = readU64(buf, p);
      m.set(id, newerMeta(m.get(id), readU32(buf, p + 8), NaN, true));
    }
  }
}

interface StoredSettings { queue: Buffer; boot: number; stamp: number; json: Buffer }

/** A rewrite's output being encoded: its records, and the bookkeeping of the segment it becomes. */
class RewriteOutput {
  readonly enc = new RecordEncoder(1024 * 1024);
  readonly pushes = new Map<string, SegmentPushes>();
  records = 0;
  dedupBytes = 0;
  dedupUntil = 0;
  #scratch = Buffer.allocUnsafe(1024 * 1024);

  constructor(boot: number) {
    this.enc.raw(encodeSegmentHeader({ kind: SEGMENT_KIND_COMPACTED, threadIndex: 0, boot }));
  }

  /**
   * PUSH records of `found` (sorted, one copy per id, newest meta merged in): consecutive
   * copies with the same due time, up to 1 MiB each. Returns the ids written.
   */
  livePushes(key: string, t: TopicState, found: LivePush[], m: Map<number, MetaRecord> | undefined): Set<number> {
    const list = found.sort((a, b) => a.id - b.id);
    const copies: LivePush[] = [];
    for (const l of list) {
      const prev = copies[copies.length - 1];
      if (prev !== undefined && prev.id === l.id) {
        if (deliveriesOf(l.meta) > deliveriesOf(prev.meta)) copies[copies.length - 1] = l;
        continue;
      }
      copies.push(l);
    }
    const inPushes = new Set<number>();
    for (const c of copies) {
      inPushes.add(c.id);
      const newer = m?.get(c.id);
      if (newer !== undefined && metaOverrides(newer, c.meta)) { c.meta = newer.meta; c.dueAt = newer.dueAt; }
    }
    let k = 0;
    while (k < copies.length) {
      const due = copies[k]!.dueAt;
      let used = 0;
      const pushes = this.pushes.get(key) ?? new SegmentPushes();
      this.pushes.set(key, pushes);
      while (k < copies.length && sameDue(copies[k]!.dueAt, due)) {
        const c = copies[k]!;
        const bytes = STORED_HEADER_BYTES + readU32(c.buf, c.off);
        if (used > 0 && used + bytes > 1024 * 1024) break;
        if (used + bytes > this.#scratch.length) { const g = Buffer.allocUnsafe(used + bytes); this.#scratch.copy(g, 0, 0, used); this.#scratch = g; }
        c.buf.copy(this.#scratch, used, c.off, c.off + bytes);
        writeU32(this.#scratch, used + 4, c.meta);
        pushes.add(c.id, c.id + 1, bytes);
        used += bytes;
        k++;
      }
      this.enc.push(t.queue, t.topic, this.#scratch.subarray(0, used), due === due ? due : undefined);
      this.records++;
    }
    return inPushes;
  }

  /** REMOVE records of the ranges of `needed`, 65,536 ranges (of at most 2^32 - 1 ids) a record. */
  removals(t: TopicState, needed: RangeSet): void {
    const firsts: number[] = [], counts: number[] = [];
    const flush = () => {
      if (firsts.length === 0) return;
      this.enc.removeRanges(t.queue, t.topic, firsts, counts, firsts.length);
      this.records++;
      firsts.length = 0;
      counts.length = 0;
    };
    for (let i = 0; i < needed.rangeCount; i++) {
      for (let a = needed.startAt(i); a < needed.endAt(i);) {
        const n = Math.min(needed.endAt(i) - a, 0xffffffff);
        firsts.push(a);
        counts.push(n);
        a += n;
        if (firsts.length === 65536) flush();
      }
    }
    flush();
  }

  /**
   * Metas of live messages whose push is elsewhere, or not seen yet (a delivery count as
   * what it was, so that a lease end elsewhere still wins the tie).
   */
  metas(t: TopicState, m: Map<number, MetaRecord>, inPushes: Set<number>): void {
    const deliveredIds: number[] = [], deliveredMetas: number[] = [];
    for (const [id, v] of m) {
      if (inPushes.has(id)) continue;
      if (t.seen.has(id) && !t.live.has(id)) continue;
      if (v.delivered) {
        deliveredIds.push(id);
        deliveredMetas.push(v.meta);
        continue;
      }
      this.enc.meta(t.queue, t.topic, id, v.meta, v.dueAt === v.dueAt ? v.dueAt : undefined);
      this.records++;
    }
    for (let i = 0; i < deliveredIds.length; i += 65536) {
      const n = Math.min(65536, deliveredIds.length - i);
      this.enc.delivered(t.queue, t.topic, deliveredIds.slice(i, i + n), deliveredMetas.slice(i, i + n), n);
      this.records++;
    }
  }

  nextId(t: TopicState): void {
    this.enc.nextId(t.queue, t.topic, t.maxId + 1);
    this.records++;
  }

  /** Open dedup windows, carried until they expire. */
  dedups(t: TopicState, d: Map<string, number>): void {
    for (const [id, expiresAt] of d) {
      const before = this.enc.length;
      this.enc.dedup(t.queue, t.topic, Buffer.from(id, 'latin1'), expiresAt);
      this.dedupBytes += this.enc.length - before;
      if (expiresAt > this.dedupUntil) this.dedupUntil = expiresAt;
      this.records++;
    }
  }

  settings(st: StoredSettings): void {
    this.enc.settings(st.queue, st.boot, st.stamp, st.json);
    this.records++;
  }
}

function sameDue(a: number, b: number): boolean {
  return a === b || (a !== a && b !== b);
}
