// Recovery: reads every segment of a data directory once, on the main thread, before the
// broker listens, and hands the lead's loader, per (queue, topic), the live messages in the
// core's stored-record layout: ready ones in id order, in chunks of many records (one core
// call per chunk), delayed ones with their due times in due-time order; the next id of each
// topic; the last settings of each queue.
//
// What is live follows from the records alone, whatever file or order they are in (the
// writers of different threads interleave freely; docs/durability.md, "Recovery"):
//   - a message is live when some PUSH holds its id and no REMOVE does; copies of one PUSH
//     (left by a compaction cut short) count once;
//   - its meta word and due time come from the record with the most deliveries among its
//     PUSH and META records (deliveries only grow; on a tie the later record in reading
//     order wins, a META before a PUSH copy);
//   - a queue's settings are the SETTINGS record with the highest (boot, stamp).
//
// Damage: a record that is cut short or fails its checksum ends its file: a warning names
// the file and offset, everything before it is kept, and the rest of that file is ignored
// (left on disk; compaction drops it when it rewrites the file). Recovery never throws for
// bad bytes; it deletes only unfinished compaction outputs (*.log.tmp).
//
// Memory while it runs: the segments' bytes (at most about twice the live data, compaction
// sees to that) plus about 22 bytes per message pushed; a file's bytes are dropped once
// every live record in it has been handed out.

import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../engine/options.ts';
import {
  decodeRecord, decodeSegmentHeader, DecodedRecord, DECODE_OK, isZeroTail, readU32, readU64, readF64, deliveriesOf, newerMeta, metaOverrides, type MetaRecord,
  RECORD_PUSH, RECORD_REMOVE, RECORD_META, RECORD_SETTINGS, RECORD_NEXT_ID, RECORD_SEAL, RECORD_DEDUP, RECORD_DELIVERED, DELIVERED_ENTRY_BYTES, REMOVE_RANGE_BYTES, STORED_HEADER_BYTES, SEGMENT_HEADER_BYTES,
  writeU32,
} from './format.ts';
import { listSegments, listTmpFiles } from './files.ts';

export interface RecoverOptions {
  logger?: Logger;
  /** Called after each file and at the end. */
  onProgress?: (progress: RecoveryProgress) => void;
  /** Messages due at or before this time (ms since the epoch) come back ready, in id order. Default Date.now(). */
  nowMs?: number;
  /** Target size of a ready chunk. Default 1 MiB (a larger record gets a chunk of its own). */
  chunkBytes?: number;
}

export interface RecoveryProgress {
  files: number;
  filesDone: number;
  bytes: number;
  bytesDone: number;
  records: number;
  /** Messages read (PUSHed, before removals). */
  messages: number;
  elapsedMs: number;
}

export interface RecoveryDamage {
  file: string;
  offset: number;
  reason: string;
  bytesIgnored: number;
}

export interface DelayedChunk {
  /** Stored records back to back. */
  records: Uint8Array;
  /** dueAt[i]: the i-th record's due time, ms since the epoch (non-decreasing). */
  dueAt: Float64Array;
}

export interface RecoveredTopic {
  queue: Uint8Array;
  topic: Uint8Array;
  /** Every id of the topic, past or present, is below it: start the topic's counter here. */
  nextId: bigint;
  /** Live messages that are ready (in readyChunks) and delayed (in delayedChunks). */
  ready: number;
  delayed: number;
  /** Ready messages in id order, as chunks of stored records back to back. */
  readyChunks(): Generator<Uint8Array>;
  /** Delayed messages in (dueAt, id) order. */
  delayedChunks(): Generator<DelayedChunk>;
  /** dedupIds pushed within their window that is still open at `nowMs`, by expiry (then id bytes). */
  dedupIds: RecoveredDedupId[];
}

export interface RecoveredDedupId {
  id: Uint8Array;
  /** ms since the epoch: a push with this dedupId before then stores nothing. */
  expiresAt: number;
}

export interface RecoveredQueue {
  queue: Uint8Array;
  /** The last settings JSON written for the queue. */
  settings: string;
}

export interface Recovery {
  /** Every topic any record mentions (also those with no live message: their nextId matters). */
  topics: RecoveredTopic[];
  queues: RecoveredQueue[];
  damage: RecoveryDamage[];
  stats: RecoveryProgress & { ready: number; delayed: number; topics: number; dedupIds: number };
}

const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };

/** Growable per-topic arrays of what pass 1 read. */
class TopicAcc {
  readonly queue: Uint8Array;
  readonly topic: Uint8Array;
  n = 0;
  ids = new Float64Array(16);
  files = new Uint32Array(16);
  offs = new Uint32Array(16);
  /** Per push: due time (NaN: none); allocated at the first delayed push. */
  dues: Float64Array | null = null;
  removeN = 0;
  removeFirst = new Float64Array(4);
  removeEnd = new Float64Array(4);
  removesSorted = true;
  metas: Map<number, MetaRecord> | null = null;
  /** dedupId (latin1) -> the latest expiry a PUSH (flag FLAG_DEDUP) or DEDUP record gives it. */
  dedups: Map<string, number> | null = null;
  maxId = -1;

  constructor(queue: Uint8Array, topic: Uint8Array) {
    this.queue = queue;
    this.topic = topic;
  }

  addPush(id: number, file: number, off: number, dueAt: number): void {
    if (this.n === this.ids.length) this.#grow();
    this.ids[this.n] = id;
    this.files[this.n] = file;
    this.offs[this.n] = off;
    if (dueAt === dueAt) { // not NaN
      if (this.dues === null) this.dues = new Float64Array(this.ids.length).fill(NaN);
      this.dues[this.n] = dueAt;
    } else if (this.dues !== null) {
      this.dues[this.n] = NaN;
    }
    this.n++;
    if (id > this.maxId) this.maxId = id;
  }

  addRemove(first: number, count: number): void {
    const end = first + count;
    if (end - 1 > this.maxId) this.maxId = end - 1;
    const k = this.removeN;
    // Consecutive removals of consecutive ids (single pops) become one range.
    if (k > 0 && this.removeEnd[k - 1] === first) {
      this.removeEnd[k - 1] = end;
      return;
    }
    if (k > 0 && first < this.removeEnd[k - 1]!) this.removesSorted = false;
    if (k === this.removeFirst.length) {
      const f = new Float64Array(k * 2); f.set(this.removeFirst); this.removeFirst = f;
      const e = new Float64Array(k * 2); e.set(this.removeEnd); this.removeEnd = e;
    }
    this.removeFirst[k] = first;
    this.removeEnd[k] = end;
    this.removeN = k + 1;
  }

  /** A lease ended (META), or a leased delivery (DELIVERED: `delivered`, no due time). */
  addMeta(id: number, meta: number, dueAt: number, delivered = false): void {
    if (id > this.maxId) this.maxId = id;
    this.metas ??= new Map();
    this.metas.set(id, newerMeta(this.metas.get(id), meta, dueAt, delivered));
  }

  addDedup(id: string, expiresAt: number): void {
    this.dedups ??= new Map();
    const old = this.dedups.get(id);
    if (old === undefined || expiresAt > old) this.dedups.set(id, expiresAt);
  }

  #grow(): void {
    const size = this.ids.length * 2;
    const ids = new Float64Array(size); ids.set(this.ids); this.ids = ids;
    const files = new Uint32Array(size); files.set(this.files); this.files = files;
    const offs = new Uint32Array(size); offs.set(this.offs); this.offs = offs;
    if (this.dues !== null) {
      const dues = new Float64Array(size).fill(NaN); dues.set(this.dues); this.dues = dues;
    }
  }
}

interface FileEntry {
  name: string;
  buf: Buffer | null;
  /** Live records of this file not yet handed out; the bytes are dropped at 0. */
  liveRefs: number;
}

/**
 * Reads `dir` (locked with lockDataDir, before any writer opens) and returns what to load.
 * Throws only when the directory cannot be read at all.
 */
export async function recover(dir: string, options: RecoverOptions = {}): Promise<Recovery> {
  const logger = options.logger ?? silentLogger;
  const nowMs = options.nowMs ?? Date.now();
  const chunkBytes = options.chunkBytes ?? 1024 * 1024;
  const started = performance.now();

  for (const tmp of listTmpFiles(dir)) {
    logger.info({ file: tmp }, 'turbomq recovery: deleting an unfinished compaction output');
    try { fs.unlinkSync(path.join(dir, tmp)); } catch { /* already gone */ }
  }
  const segments = listSegments(dir);
  const sizes = segments.map((s) => { try { return fs.statSync(path.join(dir, s.name)).size; } catch { return 0; } });
  const totalBytes = sizes.reduce((a, b) => a + b, 0);
  const progress: RecoveryProgress = { files: segments.length, filesDone: 0, bytes: totalBytes, bytesDone: 0, records: 0, messages: 0, elapsedMs: 0 };
  const damage: RecoveryDamage[] = [];
  const files: FileEntry[] = [];
  const topics = new Map<string, TopicAcc>();
  const settings = new Map<string, { queue: Uint8Array; boot: number; stamp: number; json: string }>();
  const rec = new DecodedRecord();
  let lastLogMs = performance.now();
  let lastLogPercent = 0;
  if (segments.length > 0) logger.info({ dir, files: segments.length, bytes: totalBytes }, 'turbomq recovery: reading the data directory');

  for (let fi = 0; fi < segments.length; fi++) {
    const name = segments[fi]!.name;
    let buf: Buffer;
    try {
      buf = fs.readFileSync(path.join(dir, name));
    } catch (err) {
      damage.push({ file: name, offset: 0, reason: `cannot read: ${(err as Error).message}`, bytesIgnored: sizes[fi]! });
      logger.warn({ file: name, err }, 'turbomq recovery: cannot read a segment; ignoring it');
      files.push({ name, buf: null, liveRefs: 0 });
      continue;
    }
    const fileIndex = files.length;
    files.push({ name, buf, liveRefs: 0 });
    const header = buf.length === 0 ? 'empty' : decodeSegmentHeader(buf);
    if (typeof header === 'string') {
      // An empty file is a writer that died right after creating it: nothing was in it.
      if (buf.length > 0) {
        damage.push({ file: name, offset: 0, reason: header, bytesIgnored: buf.length });
        logger.warn({ file: name, offset: 0, reason: header, bytesIgnored: buf.length }, `turbomq recovery: ${name}: ${header}; ignoring the file`);
      }
    } else {
      readRecords(buf, fileIndex, name);
    }
    progress.filesDone++;
    progress.bytesDone += buf.length;
    progress.elapsedMs = performance.now() - started;
    options.onProgress?.({ ...progress });
    const percent = totalBytes > 0 ? Math.floor((100 * progress.bytesDone) / totalBytes) : 100;
    if (performance.now() - lastLogMs >= 1000 || percent >= lastLogPercent + 25) {
      lastLogMs = performance.now();
      lastLogPercent = percent;
      logger.info({ percent, filesDone: progress.filesDone, files: progress.files, records: progress.records, messages: progress.messages }, `turbomq recovery: ${percent}% read, ${progress.messages.toLocaleString('en-US')} messages`);
    }
    // Let timers and signals through between files.
    if (fi % 8 === 7) await new Promise<void>((resolve) => setImmediate(resolve));
  }

  function readRecords(buf: Buffer, fileIndex: number, name: string): void {
    const end = buf.length;
    let at = SEGMENT_HEADER_BYTES;
    // The topic of the previous record, to skip the map lookup for runs of one topic.
    let acc: TopicAcc | undefined;
    let accStart = 0, accLength = 0;
    while (at < end) {
      const status = decodeRecord(buf, at, end, rec);
      if (status !== DECODE_OK) {
        // A preallocated tail that was never written (its writer died): the end.
        if (isZeroTail(buf, at, end)) return;
        damage.push({ file: name, offset: at, reason: rec.reason, bytesIgnored: end - at });
        logger.warn({ file: name, offset: at, reason: rec.reason, bytesIgnored: end - at }, `turbomq recovery: ${name}: ${rec.reason} at offset ${at}; ignoring the last ${end - at} bytes (nothing before it is lost)`);
        return;
      }
      progress.records++;
      const type = rec.type;
      if (type === RECORD_SEAL) {
        at = rec.end;
        continue;
      }
      if (type === RECORD_SETTINGS) {
        const q = buf.subarray(rec.queueStart, rec.queueStart + rec.queueLength);
        const key = q.toString('latin1');
        const boot = readU32(buf, rec.bodyStart);
        const stamp = readF64(buf, rec.bodyStart + 4);
        const old = settings.get(key);
        if (old === undefined || boot > old.boot || (boot === old.boot && stamp >= old.stamp)) {
          settings.set(key, { queue: Uint8Array.from(q), boot, stamp, json: buf.toString('utf8', rec.bodyStart + 12, rec.end) });
        }
        at = rec.end;
        continue;
      }
      const namesStart = rec.queueStart;
      const namesLength = rec.queueLength + rec.topicLength;
      if (acc === undefined || accLength !== namesLength || !sameBytes(buf, accStart, namesStart, namesLength)) {
        const key = `${rec.queueLength}:${buf.toString('latin1', namesStart, namesStart + namesLength)}`;
        acc = topics.get(key);
        if (acc === undefined) {
          acc = new TopicAcc(Uint8Array.from(buf.subarray(rec.queueStart, rec.topicStart)), Uint8Array.from(buf.subarray(rec.topicStart, rec.topicStart + rec.topicLength)));
          topics.set(key, acc);
        }
        accStart = namesStart;
        accLength = namesLength;
      }
      switch (type) {
        case RECORD_PUSH: {
          if (rec.dedupLength > 0 && rec.dedupExpires > nowMs) acc.addDedup(buf.toString('latin1', rec.dedupStart, rec.dedupStart + rec.dedupLength), rec.dedupExpires);
          const dueAt = rec.dueAt;
          const recordEnd = rec.end;
          let p = rec.recordsStart;
          while (p < recordEnd) {
            acc.addPush(readU64(buf, p + 8), fileIndex, p, dueAt);
            progress.messages++;
            p += STORED_HEADER_BYTES + readU32(buf, p);
          }
          break;
        }
        case RECORD_REMOVE:
          for (let p = rec.bodyStart; p < rec.end; p += REMOVE_RANGE_BYTES) {
            const count = readU32(buf, p + 8);
            if (count > 0) acc.addRemove(readU64(buf, p), count);
          }
          break;
        case RECORD_META:
          acc.addMeta(rec.id, rec.meta, rec.dueAt);
          break;
        case RECORD_DELIVERED:
          for (let p = rec.bodyStart; p < rec.end; p += DELIVERED_ENTRY_BYTES) acc.addMeta(readU64(buf, p), readU32(buf, p + 8), NaN, true);
          break;
        case RECORD_NEXT_ID:
          if (rec.id - 1 > acc.maxId) acc.maxId = rec.id - 1;
          break;
        case RECORD_DEDUP:
          if (rec.dedupExpires > nowMs) acc.addDedup(buf.toString('latin1', rec.dedupStart, rec.dedupStart + rec.dedupLength), rec.dedupExpires);
          break;
      }
      at = rec.end;
    }
  }

  // Pass 2 (per topic): order, drop removed and duplicate copies, resolve meta and due.
  const out: RecoveredTopic[] = [];
  let readyTotal = 0, delayedTotal = 0, dedupTotal = 0;
  for (const acc of topics.values()) {
    const topic = resolveTopic(acc, files, nowMs, chunkBytes);
    readyTotal += topic.ready;
    delayedTotal += topic.delayed;
    dedupTotal += topic.dedupIds.length;
    out.push(topic);
  }
  // Files no live record points into can go now.
  for (const f of files) if (f.liveRefs === 0) f.buf = null;

  progress.elapsedMs = performance.now() - started;
  options.onProgress?.({ ...progress });
  const stats = { ...progress, ready: readyTotal, delayed: delayedTotal, topics: out.length, dedupIds: dedupTotal };
  if (segments.length > 0) {
    logger.info({ ...stats, elapsedMs: Math.round(stats.elapsedMs), damaged: damage.length }, `turbomq recovery: done, ${readyTotal.toLocaleString('en-US')} ready and ${delayedTotal.toLocaleString('en-US')} delayed messages in ${out.length} topics`);
  }
  return {
    topics: out,
    queues: [...settings.values()].map((s) => ({ queue: s.queue, settings: s.json })),
    damage,
    stats,
  };
}

function sameBytes(b: Uint8Array, a: number, c: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[a + i] !== b[c + i]) return false;
  return true;
}

/** The order of pushes by id: merges the increasing runs (one per writer thread, typically). */
function idOrder(ids: Float64Array, n: number): Uint32Array | null {
  const runStarts: number[] = [0];
  for (let i = 1; i < n; i++) if (ids[i]! <= ids[i - 1]!) runStarts.push(i);
  if (runStarts.length === 1) return null; // already in order
  const order = new Uint32Array(n);
  if (runStarts.length > 64) {
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((a, b) => ids[a]! - ids[b]! || a - b);
    return order;
  }
  // k-way merge: a binary heap of run cursors keyed by the id at the cursor.
  const k = runStarts.length;
  const cursor = new Uint32Array(k);
  const runEnd = new Uint32Array(k);
  for (let r = 0; r < k; r++) { cursor[r] = runStarts[r]!; runEnd[r] = r + 1 < k ? runStarts[r + 1]! : n; }
  const heap: number[] = [];
  const less = (x: number, y: number) => ids[cursor[x]!]! < ids[cursor[y]!]! || (ids[cursor[x]!]! === ids[cursor[y]!]! && x < y);
  const up = (i: number) => { while (i > 0) { const p = (i - 1) >> 1; if (!less(heap[i]!, heap[p]!)) break; [heap[i], heap[p]] = [heap[p]!, heap[i]!]; i = p; } };
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  };
  for (let r = 0; r < k; r++) { heap.push(r); up(heap.length - 1); }
  for (let o = 0; o < n; o++) {
    const r = heap[0]!;
    order[o] = cursor[r]!++;
    if (cursor[r]! === runEnd[r]!) { heap[0] = heap[heap.length - 1]!; heap.pop(); } 
    if (heap.length > 0) down(0);
  }
  return order;
}

/** The removed ranges sorted by start and merged: [start, end) pairs. */
function mergedRemoves(acc: TopicAcc): { starts: Float64Array; ends: Float64Array; n: number } {
  let starts = acc.removeFirst, ends = acc.removeEnd;
  const n0 = acc.removeN;
  if (!acc.removesSorted) {
    const idx = new Uint32Array(n0);
    for (let i = 0; i < n0; i++) idx[i] = i;
    idx.sort((a, b) => acc.removeFirst[a]! - acc.removeFirst[b]!);
    starts = new Float64Array(n0);
    ends = new Float64Array(n0);
    for (let i = 0; i < n0; i++) { starts[i] = acc.removeFirst[idx[i]!]!; ends[i] = acc.removeEnd[idx[i]!]!; }
  }
  let n = 0;
  for (let i = 0; i < n0; i++) {
    if (n > 0 && starts[i]! <= ends[n - 1]!) {
      if (ends[i]! > ends[n - 1]!) ends[n - 1] = ends[i]!;
    } else {
      starts[n] = starts[i]!;
      ends[n] = ends[i]!;
      n++;
    }
  }
  return { starts, ends, n };
}

/** The topic's open dedup windows, by expiry (the order the core's expiry lists need), then id. */
function dedupIdsOf(acc: TopicAcc): RecoveredDedupId[] {
  if (acc.dedups === null) return [];
  const out: RecoveredDedupId[] = [];
  for (const [id, expiresAt] of acc.dedups) out.push({ id: Buffer.from(id, 'latin1'), expiresAt });
  out.sort((a, b) => a.expiresAt - b.expiresAt || Buffer.compare(a.id, b.id));
  return out;
}

function resolveTopic(acc: TopicAcc, files: FileEntry[], nowMs: number, chunkBytes: number): RecoveredTopic {
  const n = acc.n;
  const order = idOrder(acc.ids, n);
  const removes = mergedRemoves(acc);
  const metas = acc.metas;
  const ids = acc.ids, fileOf = acc.files, offOf = acc.offs, dues = acc.dues;
  const removeStarts = removes.starts, removeEnds = removes.ends, removeN = removes.n;
  // Chosen pushes: index into the acc arrays, with the final meta word (and due time).
  const ready = new Uint32Array(n);
  const readyMeta = new Uint32Array(n);
  let readyN = 0;
  const delayed: number[] = [];
  const delayedMeta: number[] = [];
  const delayedDue: number[] = [];
  let ri = 0;
  let prevId = -1;
  let prevList = 0;             // 0: none (removed), 1: ready, 2: delayed
  let prevDeliveries = -1;
  let buf: Buffer = files[0]?.buf ?? Buffer.alloc(0);
  let bufFile = 0;
  for (let o = 0; o < n; o++) {
    const i = order === null ? o : order[o]!;
    const id = ids[i]!;
    if (id !== prevId) {
      while (ri < removeN && removeEnds[ri]! <= id) ri++;
      if (ri < removeN && removeStarts[ri]! <= id) { prevId = id; prevList = 0; continue; }
    } else if (prevList === 0) {
      continue;
    }
    const f = fileOf[i]!;
    if (f !== bufFile) { bufFile = f; buf = files[f]!.buf!; }
    let meta = readU32(buf, offOf[i]! + 4);
    let dueAt = dues === null ? NaN : dues[i]!;
    if (metas !== null) {
      const m = metas.get(id);
      if (m !== undefined && metaOverrides(m, meta)) { meta = m.meta; dueAt = m.dueAt; }
    }
    if (id === prevId) {
      // Another copy of the same push (a compaction cut short): keep the one with more deliveries.
      if (deliveriesOf(meta) <= prevDeliveries) continue;
      if (prevList === 1) readyN--; else { delayed.pop(); delayedMeta.pop(); delayedDue.pop(); }
    }
    prevId = id;
    prevDeliveries = deliveriesOf(meta);
    if (dueAt === dueAt && dueAt > nowMs) {
      delayed.push(i); delayedMeta.push(meta); delayedDue.push(dueAt);
      prevList = 2;
    } else {
      ready[readyN] = i;
      readyMeta[readyN++] = meta;
      prevList = 1;
    }
  }
  for (let k = 0; k < readyN; k++) files[fileOf[ready[k]!]!]!.liveRefs++;
  for (const i of delayed) files[fileOf[i]!]!.liveRefs++;
  // Only the chosen indices are needed from here on.
  acc.ids = new Float64Array(0);
  const nextId = BigInt(acc.maxId + 1);

  function recordBytes(i: number): number {
    return STORED_HEADER_BYTES + readU32(files[fileOf[i]!]!.buf!, offOf[i]!);
  }

  function release(f: number, count: number): void {
    const file = files[f]!;
    file.liveRefs -= count;
    if (file.liveRefs === 0) file.buf = null;
  }

  // The id of delayed entry j, read from its record.
  function delayedId(j: number): number {
    const i = delayed[j]!;
    return readU64(files[fileOf[i]!]!.buf!, offOf[i]! + 8);
  }

  return {
    queue: acc.queue,
    topic: acc.topic,
    nextId,
    ready: readyN,
    delayed: delayed.length,
    dedupIds: dedupIdsOf(acc),
    *readyChunks(): Generator<Uint8Array> {
      let k = 0;
      while (k < readyN) {
        // Records up to chunkBytes (at least one).
        let bytes = 0, end = k;
        while (end < readyN) {
          const b = recordBytes(ready[end]!);
          if (end > k && bytes + b > chunkBytes) break;
          bytes += b;
          end++;
        }
        const chunk = Buffer.allocUnsafe(bytes);
        let pos = 0;
        while (k < end) {
          // One copy per run of records that lie back to back in one file (a pushed batch).
          const i = ready[k]!;
          const f = fileOf[i]!;
          const src = files[f]!.buf!;
          const runStart = offOf[i]!;
          let runEnd = runStart + STORED_HEADER_BYTES + readU32(src, runStart);
          let k2 = k + 1;
          while (k2 < end) {
            const j = ready[k2]!;
            if (fileOf[j] !== f || offOf[j] !== runEnd) break;
            runEnd += STORED_HEADER_BYTES + readU32(src, runEnd);
            k2++;
          }
          src.copy(chunk, pos, runStart, runEnd);
          for (let q = k, p = pos; q < k2; q++) {
            if (readU32(chunk, p + 4) !== readyMeta[q]) writeU32(chunk, p + 4, readyMeta[q]!);
            p += STORED_HEADER_BYTES + readU32(chunk, p);
          }
          pos += runEnd - runStart;
          release(f, k2 - k);
          k = k2;
        }
        yield chunk;
      }
    },
    *delayedChunks(): Generator<DelayedChunk> {
      const idx = delayed.map((_, j) => j);
      idx.sort((a, b) => delayedDue[a]! - delayedDue[b]! || delayedId(a) - delayedId(b));
      let k = 0;
      while (k < idx.length) {
        let bytes = 0, end = k;
        while (end < idx.length) {
          const b = recordBytes(delayed[idx[end]!]!);
          if (end > k && bytes + b > chunkBytes) break;
          bytes += b;
          end++;
        }
        const records = Buffer.allocUnsafe(bytes);
        const dueAt = new Float64Array(end - k);
        let pos = 0;
        for (let j = 0; k < end; k++, j++) {
          const d = idx[k]!;
          const i = delayed[d]!;
          const src = files[fileOf[i]!]!.buf!;
          const off = offOf[i]!;
          const length = STORED_HEADER_BYTES + readU32(src, off);
          src.copy(records, pos, off, off + length);
          writeU32(records, pos + 4, delayedMeta[d]!);
          pos += length;
          dueAt[j] = delayedDue[d]!;
          release(fileOf[i]!, 1);
        }
        yield { records, dueAt };
      }
    },
  };
}
