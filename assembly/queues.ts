// Queue settings: one record per queue name, shared by every topic of the queue.
//
// Every topic holds a reference on its queue's record (table.ts creates it with the topic
// and releases it when the topic goes), so a topic reads its settings with plain loads on
// the hot path (topic.ts: maxLength on every push) and no lookup by name. A configured
// queue keeps one more reference, so its settings outlive its topics. Records live in
// QUEUE_SEGMENTS independently locked hash segments of the same kind as the topic table's
// (table.ts growBuckets); the segment lock guards lookup, creation, removal and `refs`.
//
// Writes (configure) take the record's own lock; readers on the hot path read the numbers
// without it: each is one aligned 8-byte word, which Wasm on every supported platform
// writes and reads whole, so a reader sees the old or the new value of a field, never a
// mix. The dead-letter topic name is more than one word: it is copied under the lock.
//
// Lock order: table segment -> queue segment -> queue record. Nothing is taken while a
// queue record lock is held.
//
// ╒══════════════════════ QueueTable (16 + 64 × 16 bytes) ══════════════════════╕
//  +0   u32 segmentCount   QUEUE_SEGMENTS
//  +4   u32 reserved[3]
//  +16  Segment[QUEUE_SEGMENTS]       (table.ts layout: lock, count, mask, buckets)
// ╘═══════════════════════════════════════════════════════════════════════════════╛
// ╒═══════════════════════ Queue record (56 + 255 + name bytes) ═══════════════════════╕
//  +0   u32 next           next record in the bucket              (segment lock)
//  +4   u32 hash
//  +8   i32 refs           topics + 1 if configured               (segment lock)
//  +12  i32 lock           guards writes of +16..+310
//  +16  f64 leaseMs        default lease of an ack:true pop/subscription
//  +24  f64 maxDeliveries  Infinity = no limit
//  +32  f64 maxLength      per topic, ready + delayed; Infinity = no limit
//  +40  f64 dedupWindowMs
//  +48  u32 flags          Q_CONFIGURED | Q_DROP_OLDEST | Q_DURABLE_SET | Q_DURABLE
//  +52  u8  deadLetterLen  0 = no dead-letter topic
//  +53  u8  nameLen
//  +54  u16 reserved
//  +56  u8  deadLetterTopic[255]
//  +311 name bytes
// ╘═════════════════════════════════════════════════════════════════════════════════════╛

import { alloc, free } from "./alloc";
import { lock, unlock } from "./sync";
import { H_QUEUES } from "./layout";
import { SEG_LOCK, SEG_COUNT, SEG_MASK, SEG_BUCKETS, SEGMENT_BYTES, growBuckets, fnv, mix } from "./table";

// @ts-ignore: decorator
@inline const QUEUE_SEGMENT_BITS: u32 = 6;
// @ts-ignore: decorator
@inline const QUEUE_SEGMENTS: u32 = 1 << QUEUE_SEGMENT_BITS;
// @ts-ignore: decorator
@inline const QT_HEADER: usize = 16;

// @ts-ignore: decorator
@inline const Q_NEXT: usize = 0;
// @ts-ignore: decorator
@inline const Q_HASH: usize = 4;
// @ts-ignore: decorator
@inline const Q_REFS: usize = 8;
// @ts-ignore: decorator
@inline const Q_LOCK: usize = 12;
// @ts-ignore: decorator
@inline export const Q_LEASE_MS: usize = 16;
// @ts-ignore: decorator
@inline export const Q_MAX_DELIVERIES: usize = 24;
// @ts-ignore: decorator
@inline export const Q_MAX_LENGTH: usize = 32;
// @ts-ignore: decorator
@inline export const Q_DEDUP_WINDOW_MS: usize = 40;
// @ts-ignore: decorator
@inline export const Q_FLAGS: usize = 48;
// @ts-ignore: decorator
@inline const Q_DEAD_LETTER_LEN: usize = 52;
// @ts-ignore: decorator
@inline const Q_NAME_LEN: usize = 53;
// @ts-ignore: decorator
@inline const Q_DEAD_LETTER: usize = 56;
// @ts-ignore: decorator
@inline const Q_NAME: usize = 311;

// @ts-ignore: decorator
@inline const Q_CONFIGURED: u32 = 1;
// @ts-ignore: decorator
@inline export const Q_DROP_OLDEST: u32 = 2;
// @ts-ignore: decorator
@inline export const Q_DURABLE_SET: u32 = 4;
// @ts-ignore: decorator
@inline export const Q_DURABLE: u32 = 8;

/** Defaults (src/protocol.ts QUEUE_DEFAULTS says the same). */
// @ts-ignore: decorator
@inline const DEFAULT_LEASE_MS: f64 = 30000;
// @ts-ignore: decorator
@inline const DEFAULT_DEDUP_WINDOW_MS: f64 = 120000;

/** configure() mask bits: which fields the patch sets. */
// @ts-ignore: decorator
@inline const SET_LEASE_MS: u32 = 1;
// @ts-ignore: decorator
@inline const SET_MAX_DELIVERIES: u32 = 2;
// @ts-ignore: decorator
@inline const SET_DEAD_LETTER: u32 = 4;
// @ts-ignore: decorator
@inline const SET_MAX_LENGTH: u32 = 8;
// @ts-ignore: decorator
@inline const SET_OVERFLOW: u32 = 16;
// @ts-ignore: decorator
@inline const SET_DEDUP_WINDOW: u32 = 32;
// @ts-ignore: decorator
@inline const SET_DURABLE: u32 = 64;

export function queuesInit(): bool {
  let size = QT_HEADER + <usize>QUEUE_SEGMENTS * SEGMENT_BYTES;
  let table = alloc(size);
  if (table == 0) return false;
  memory.fill(table, 0, size);
  store<u32>(table, QUEUE_SEGMENTS);
  atomic.store<u32>(H_QUEUES, <u32>table);
  return true;
}

// @ts-ignore: decorator
@inline function hashQueue(q: usize, ql: usize): u32 {
  return mix(fnv(0x811c9dc5, q, ql));
}

// @ts-ignore: decorator
@inline function segmentOf(hash: u32): usize {
  return <usize>atomic.load<u32>(H_QUEUES) + QT_HEADER + (<usize>(hash >>> (32 - QUEUE_SEGMENT_BITS)) << 4);
}

function find(seg: usize, hash: u32, q: usize, ql: usize): usize {
  let buckets = <usize>load<u32>(seg + SEG_BUCKETS);
  if (buckets == 0) return 0;
  let rec = <usize>load<u32>(buckets + (<usize>(hash & load<u32>(seg + SEG_MASK)) << 2));
  while (rec != 0) {
    if (load<u32>(rec + Q_HASH) == hash && <usize>load<u8>(rec + Q_NAME_LEN) == ql && memory.compare(rec + Q_NAME, q, ql) == 0) return rec;
    rec = <usize>load<u32>(rec + Q_NEXT);
  }
  return 0;
}

function insert(seg: usize, hash: u32, q: usize, ql: usize): usize {
  let rec = alloc(Q_NAME + ql);
  if (rec == 0) return 0;
  memory.fill(rec, 0, Q_NAME);
  store<u32>(rec + Q_HASH, hash);
  store<f64>(rec + Q_LEASE_MS, DEFAULT_LEASE_MS);
  store<f64>(rec + Q_MAX_DELIVERIES, Infinity);
  store<f64>(rec + Q_MAX_LENGTH, Infinity);
  store<f64>(rec + Q_DEDUP_WINDOW_MS, DEFAULT_DEDUP_WINDOW_MS);
  store<u8>(rec + Q_NAME_LEN, <u8>ql);
  memory.copy(rec + Q_NAME, q, ql);
  let count = load<u32>(seg + SEG_COUNT) + 1;
  store<u32>(seg + SEG_COUNT, count);
  if (load<u32>(seg + SEG_BUCKETS) == 0 || count > load<u32>(seg + SEG_MASK) + 1) growBuckets(seg);
  if (load<u32>(seg + SEG_BUCKETS) == 0) {
    store<u32>(seg + SEG_COUNT, count - 1);
    free(rec);
    return 0;
  }
  let slot = <usize>load<u32>(seg + SEG_BUCKETS) + (<usize>(hash & load<u32>(seg + SEG_MASK)) << 2);
  store<u32>(rec + Q_NEXT, load<u32>(slot));
  store<u32>(slot, <u32>rec);
  return rec;
}

function unlink(seg: usize, rec: usize): void {
  let slot = <usize>load<u32>(seg + SEG_BUCKETS) + (<usize>(load<u32>(rec + Q_HASH) & load<u32>(seg + SEG_MASK)) << 2);
  let cur = <usize>load<u32>(slot);
  while (cur != 0) {
    if (cur == rec) {
      store<u32>(slot, load<u32>(rec + Q_NEXT));
      let count = load<u32>(seg + SEG_COUNT) - 1;
      store<u32>(seg + SEG_COUNT, count);
      if (count == 0) {
        free(<usize>load<u32>(seg + SEG_BUCKETS));
        store<u32>(seg + SEG_BUCKETS, 0);
        store<u32>(seg + SEG_MASK, 0);
      }
      free(rec);
      return;
    }
    slot = cur + Q_NEXT;
    cur = <usize>load<u32>(slot);
  }
}

/** The record of queue `q` with one more reference (created with defaults); 0 if out of memory. */
export function queueRetain(q: usize, ql: usize): usize {
  let hash = hashQueue(q, ql);
  let seg = segmentOf(hash);
  lock(seg + SEG_LOCK);
  let rec = find(seg, hash, q, ql);
  if (rec == 0) rec = insert(seg, hash, q, ql);
  if (rec != 0) store<i32>(rec + Q_REFS, load<i32>(rec + Q_REFS) + 1);
  unlock(seg + SEG_LOCK);
  return rec;
}

/** Drops a reference; the record goes with the last one (a configured queue keeps one). */
export function queueRelease(rec: usize): void {
  let seg = segmentOf(load<u32>(rec + Q_HASH));
  lock(seg + SEG_LOCK);
  let refs = load<i32>(rec + Q_REFS) - 1;
  store<i32>(rec + Q_REFS, refs);
  if (refs == 0) unlink(seg, rec);
  unlock(seg + SEG_LOCK);
}

/**
 * Merges a settings patch into queue `q` (values already validated by the caller; `mask`
 * says which are set). The dead-letter name is (dlq, dlqLen), dlqLen 0 = none. Returns the
 * record (which now outlives the queue's topics), or 0 when out of memory.
 */
export function queueConfigure(
  q: usize, ql: usize, mask: u32, leaseMs: f64, maxDeliveries: f64, maxLength: f64, dedupWindowMs: f64,
  dropOldest: bool, durable: bool, dlq: usize, dlqLen: usize,
): usize {
  let hash = hashQueue(q, ql);
  let seg = segmentOf(hash);
  lock(seg + SEG_LOCK);
  let rec = find(seg, hash, q, ql);
  if (rec == 0) rec = insert(seg, hash, q, ql);
  if (rec != 0 && (load<u32>(rec + Q_FLAGS) & Q_CONFIGURED) == 0) {
    store<i32>(rec + Q_REFS, load<i32>(rec + Q_REFS) + 1);
  }
  if (rec != 0) {
    lock(rec + Q_LOCK);
    let flags = load<u32>(rec + Q_FLAGS) | Q_CONFIGURED;
    if (mask & SET_LEASE_MS) store<f64>(rec + Q_LEASE_MS, leaseMs);
    if (mask & SET_MAX_DELIVERIES) store<f64>(rec + Q_MAX_DELIVERIES, maxDeliveries);
    if (mask & SET_MAX_LENGTH) store<f64>(rec + Q_MAX_LENGTH, maxLength);
    if (mask & SET_DEDUP_WINDOW) store<f64>(rec + Q_DEDUP_WINDOW_MS, dedupWindowMs);
    if (mask & SET_OVERFLOW) flags = dropOldest ? flags | Q_DROP_OLDEST : flags & ~Q_DROP_OLDEST;
    if (mask & SET_DURABLE) flags = (durable ? flags | Q_DURABLE : flags & ~Q_DURABLE) | Q_DURABLE_SET;
    if (mask & SET_DEAD_LETTER) {
      let n = min<usize>(dlqLen, 255);
      memory.copy(rec + Q_DEAD_LETTER, dlq, n);
      store<u8>(rec + Q_DEAD_LETTER_LEN, <u8>n);
    }
    atomic.store<u32>(rec + Q_FLAGS, flags);
    unlock(rec + Q_LOCK);
  }
  unlock(seg + SEG_LOCK);
  return rec;
}

/**
 * Writes queue `q`'s effective settings to `out` (the SETTINGS reply body layout of
 * docs/protocol.md: f64 leaseMs, maxDeliveries, maxLength, dedupWindowMs, u8 overflow,
 * u8 durable (0 no, 1 yes, 2 the broker's default), u8 deadLetterLen, name bytes) and
 * returns its length. An unknown queue has the defaults.
 */
export function queueSettingsInto(q: usize, ql: usize, out: usize): u32 {
  let hash = hashQueue(q, ql);
  let seg = segmentOf(hash);
  lock(seg + SEG_LOCK);
  let rec = find(seg, hash, q, ql);
  let n: usize = 35;
  if (rec == 0) {
    store<f64>(out, DEFAULT_LEASE_MS);
    store<f64>(out + 8, Infinity);
    store<f64>(out + 16, Infinity);
    store<f64>(out + 24, DEFAULT_DEDUP_WINDOW_MS);
    store<u8>(out + 32, 0);
    store<u8>(out + 33, 2);
    store<u8>(out + 34, 0);
  } else {
    lock(rec + Q_LOCK);
    let flags = load<u32>(rec + Q_FLAGS);
    store<f64>(out, load<f64>(rec + Q_LEASE_MS));
    store<f64>(out + 8, load<f64>(rec + Q_MAX_DELIVERIES));
    store<f64>(out + 16, load<f64>(rec + Q_MAX_LENGTH));
    store<f64>(out + 24, load<f64>(rec + Q_DEDUP_WINDOW_MS));
    store<u8>(out + 32, (flags & Q_DROP_OLDEST) != 0 ? 1 : 0);
    store<u8>(out + 33, (flags & Q_DURABLE_SET) == 0 ? 2 : (flags & Q_DURABLE) != 0 ? 1 : 0);
    let dl = <usize>load<u8>(rec + Q_DEAD_LETTER_LEN);
    store<u8>(out + 34, <u8>dl);
    memory.copy(out + 35, rec + Q_DEAD_LETTER, dl);
    n += dl;
    unlock(rec + Q_LOCK);
  }
  unlock(seg + SEG_LOCK);
  return <u32>n;
}

/** Copies the dead-letter topic name of queue record `rec` to `out` (255 bytes); returns its length, 0 = none. */
export function queueDeadLetterInto(rec: usize, out: usize): usize {
  lock(rec + Q_LOCK);
  let n = <usize>load<u8>(rec + Q_DEAD_LETTER_LEN);
  memory.copy(out, rec + Q_DEAD_LETTER, n);
  unlock(rec + Q_LOCK);
  return n;
}

/** The queue name of record `rec`: (queueNameOf, queueNameLength). */
// @ts-ignore: decorator
@inline export function queueNameOf(rec: usize): usize {
  return rec + Q_NAME;
}

// @ts-ignore: decorator
@inline export function queueNameLength(rec: usize): usize {
  return <usize>load<u8>(rec + Q_NAME_LEN);
}

// @ts-ignore: decorator
@inline export function queueFlags(rec: usize): u32 {
  return atomic.load<u32>(rec + Q_FLAGS);
}
