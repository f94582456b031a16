// The topic table: (queue name, topic name) -> topic, shared by every thread.
//
// A fixed array of SEGMENT_COUNT segments, each an independently locked and independently
// resized chained hash table (the segment is chosen by the hash's high bits, the bucket by
// its low bits). A lookup locks one segment for a few hundred instructions; with 1024
// segments, threads working on different topics practically never meet, and a resize
// stops only 1/1024 of the table.
//
// Lifetime: a topic is created on first use and removed when it is idle (no messages, no
// parked pops, no consumers) and nobody holds a reference. References (`users`) are only
// taken under the segment lock (topicAcquire) or by someone already holding one (a parked
// waiter, a subscription), so once the segment lock sees users == 0 nobody can reach the
// topic any more and it is safe to unlink and free it.
//
// Lock order: segment lock, then topic lock. The topic lock is never held while taking a
// segment lock.
//
// ╒═══════════════════════ TopicTable ═══════════════════════╕
//  +0   u32 segmentCount        SEGMENT_COUNT
//  +4   i32 topicCount          topics alive (atomic)
//  +8   u32 reserved[2]
//  +16  Segment[SEGMENT_COUNT]
// ╘══════════════════════════════════════════════════════════╛
// The segment (lock, count, bucket array, growth) is generic over its entries, which must
// start with `u32 next, u32 hash`: queues.ts keeps its queue records in the same kind of
// segments.
// ╒══════════ Segment (16 bytes) ══════════╕
//  +0  i32 lock      sync.ts mutex
//  +4  u32 count     topics in this segment
//  +8  u32 mask      bucket count - 1 (0 with no buckets yet)
//  +12 u32 buckets   u32[mask + 1] chain heads, 0 until the first insert
// ╘════════════════════════════════════════╛
// ╒══════════════════════ Topic (68 bytes + names) ═══════════════════════╕
//  +0  u32 next        next topic in the same bucket           (segment lock)
//  +4  u32 hash
//  +8  i32 lock        topic mutex, guards +16..+63
//  +12 i32 users       references held outside the segment lock (atomic): parked
//                      waiters, subscriptions, leases, delayed messages
//  +16 u32 headSeg     oldest FIFO segment                         (fifo.ts)
//  +20 u32 tailSeg     newest FIFO segment
//  +24 u32 length      ready messages in the FIFO
//  +28 u32 waiterHead  parked pops, oldest first                (waiters.ts)
//  +32 u32 waiterTail
//  +36 u32 consumers   attached subscriptions                 (consumers.ts)
//  +40 u32 exclusive   token of the exclusive subscription, 0 if none
//  +44 u32 queue       its queue's settings record (queues.ts), referenced
//  +48 u64 pushed      ids handed out so far: the next message's id
//  +56 u32 delayed     messages waiting for their due time       (delays.ts)
//  +60 u32 inFlight    messages leased and not settled           (leases.ts)
//  +64 u8  queueLen    1..255
//  +65 u8  topicLen    1..255
//  +66 u16 reserved
//  +68 queue name bytes, then topic name bytes
// ╘════════════════════════════════════════════════════════════════════════╛

import { alloc, free } from "./alloc";
import { lock, unlock } from "./sync";
import { H_TABLE, H_ID_FLOOR } from "./layout";
import { queueRetain, queueRelease } from "./queues";
import { equalBytes, hashBytes } from "./bytes";

// @ts-ignore: decorator
@inline const SEGMENT_BITS: u32 = 10;
// @ts-ignore: decorator
@inline export const SEGMENT_COUNT: u32 = 1 << SEGMENT_BITS;
// @ts-ignore: decorator
@inline const SEGMENT_SIZE: usize = 16;
// @ts-ignore: decorator
@inline const TABLE_HEADER: usize = 16;
// @ts-ignore: decorator
@inline const INITIAL_BUCKETS: u32 = 8;

// @ts-ignore: decorator
@inline export const SEG_LOCK: usize = 0;
// @ts-ignore: decorator
@inline export const SEG_COUNT: usize = 4;
// @ts-ignore: decorator
@inline export const SEG_MASK: usize = 8;
// @ts-ignore: decorator
@inline export const SEG_BUCKETS: usize = 12;
// @ts-ignore: decorator
@inline export const SEGMENT_BYTES: usize = 16;

// @ts-ignore: decorator
@inline export const T_NEXT: usize = 0;
// @ts-ignore: decorator
@inline export const T_HASH: usize = 4;
// @ts-ignore: decorator
@inline export const T_LOCK: usize = 8;
// @ts-ignore: decorator
@inline export const T_USERS: usize = 12;
// @ts-ignore: decorator
@inline export const T_HEAD_SEG: usize = 16;
// @ts-ignore: decorator
@inline export const T_TAIL_SEG: usize = 20;
// @ts-ignore: decorator
@inline export const T_LENGTH: usize = 24;
// @ts-ignore: decorator
@inline export const T_WAITER_HEAD: usize = 28;
// @ts-ignore: decorator
@inline export const T_WAITER_TAIL: usize = 32;
// @ts-ignore: decorator
@inline export const T_CONSUMERS: usize = 36;
// @ts-ignore: decorator
@inline export const T_EXCLUSIVE: usize = 40;
// @ts-ignore: decorator
@inline export const T_QUEUE: usize = 44;
// @ts-ignore: decorator
@inline export const T_PUSHED: usize = 48;
// @ts-ignore: decorator
@inline export const T_DELAYED: usize = 56;
// @ts-ignore: decorator
@inline export const T_IN_FLIGHT: usize = 60;
// @ts-ignore: decorator
@inline export const T_QUEUE_LEN: usize = 64;
// @ts-ignore: decorator
@inline export const T_TOPIC_LEN: usize = 65;
// @ts-ignore: decorator
@inline export const T_NAMES: usize = 68;

/** topicAcquire result when the topic could not be created for lack of memory. */
// @ts-ignore: decorator
@inline export const TOPIC_NO_MEMORY: usize = 1;

/** Allocates the table; called once by the instance that initialises the memory. */
export function tableInit(): bool {
  let size = TABLE_HEADER + <usize>SEGMENT_COUNT * SEGMENT_SIZE;
  let table = alloc(size);
  if (table == 0) return false;
  memory.fill(table, 0, size);
  store<u32>(table, SEGMENT_COUNT);
  atomic.store<u32>(H_TABLE, <u32>table);
  return true;
}

// @ts-ignore: decorator
@inline function tableAddr(): usize {
  return <usize>atomic.load<u32>(H_TABLE);
}

// @ts-ignore: decorator
@inline function segmentOf(hash: u32): usize {
  return tableAddr() + TABLE_HEADER + (<usize>(hash >>> (32 - SEGMENT_BITS)) << 4);
}

/**
 * Hash of (queue, topic): both names folded eight bytes at a time (bytes.ts hashBytes), each
 * preceded by its length so that ("ab", "c") and ("a", "bc") differ; the result is the high
 * half of the last product, where a multiply gathers every input bit (segments use its
 * high bits, buckets its low ones: both spread evenly over a million "topic-N" names). A
 * word per multiply instead of FNV's byte: this lookup runs for every request by name.
 */
// @ts-ignore: decorator
@inline export function hashNames(q: usize, ql: usize, t: usize, tl: usize): u32 {
  let h = hashBytes(0x243F6A8885A308D3 ^ <u64>ql, q, ql);
  h = hashBytes(rotl<u64>(h, 5) ^ (<u64>tl << 8), t, tl);
  return <u32>(h >>> 32);
}

/** FNV-1a of `len` bytes at `p`, continuing from `h`. */
export function fnv(h: u32, p: usize, len: usize): u32 {
  for (let i: usize = 0; i < len; i++) h = (h ^ <u32>load<u8>(p + i)) * 0x01000193;
  return h;
}

/** murmur3's finaliser: spreads FNV's low-entropy high bits (segments use them). */
export function mix(h: u32): u32 {
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

// @ts-ignore: decorator
@inline function sameNames(topic: usize, q: usize, ql: usize, t: usize, tl: usize): bool {
  if (<usize>load<u8>(topic + T_QUEUE_LEN) != ql || <usize>load<u8>(topic + T_TOPIC_LEN) != tl) return false;
  let names = topic + T_NAMES;
  return equalBytes(names, q, ql) && equalBytes(names + ql, t, tl);
}

/** Doubles a segment's bucket array (segment lock held). Keeps the old one if out of memory. */
export function growBuckets(seg: usize): void {
  let oldMask = load<u32>(seg + SEG_MASK);
  let oldBuckets = <usize>load<u32>(seg + SEG_BUCKETS);
  let newCount: u32 = oldBuckets == 0 ? INITIAL_BUCKETS : (oldMask + 1) << 1;
  let newBuckets = alloc(<usize>newCount << 2);
  if (newBuckets == 0) return;
  memory.fill(newBuckets, 0, <usize>newCount << 2);
  let newMask = newCount - 1;
  if (oldBuckets != 0) {
    for (let b: u32 = 0; b <= oldMask; b++) {
      let topic = <usize>load<u32>(oldBuckets + (<usize>b << 2));
      while (topic != 0) {
        let next = <usize>load<u32>(topic + T_NEXT);
        let slot = newBuckets + (<usize>(load<u32>(topic + T_HASH) & newMask) << 2);
        store<u32>(topic + T_NEXT, load<u32>(slot));
        store<u32>(slot, <u32>topic);
        topic = next;
      }
    }
    free(oldBuckets);
  }
  store<u32>(seg + SEG_MASK, newMask);
  store<u32>(seg + SEG_BUCKETS, <u32>newBuckets);
}

/** The topic named (q, t) in segment `seg` (segment lock held), or 0. */
// @ts-ignore: decorator
@inline function findInSegment(seg: usize, hash: u32, q: usize, ql: usize, t: usize, tl: usize): usize {
  let buckets = <usize>load<u32>(seg + SEG_BUCKETS);
  if (buckets == 0) return 0;
  let topic = <usize>load<u32>(buckets + (<usize>(hash & load<u32>(seg + SEG_MASK)) << 2));
  while (topic != 0) {
    if (load<u32>(topic + T_HASH) == hash && sameNames(topic, q, ql, t, tl)) return topic;
    topic = <usize>load<u32>(topic + T_NEXT);
  }
  return 0;
}

/** Creates the topic in segment `seg` (segment lock held), with `users` references. 0 if out of memory. */
function insertInSegment(seg: usize, hash: u32, q: usize, ql: usize, t: usize, tl: usize, users: i32): usize {
  let queue = queueRetain(q, ql);
  if (queue == 0) return 0;
  let topic = alloc(T_NAMES + ql + tl);
  if (topic == 0) {
    queueRelease(queue);
    return 0;
  }
  memory.fill(topic, 0, T_NAMES);
  store<u64>(topic + T_PUSHED, atomic.load<u64>(H_ID_FLOOR));
  store<u32>(topic + T_QUEUE, <u32>queue);
  store<u32>(topic + T_HASH, hash);
  store<u8>(topic + T_QUEUE_LEN, <u8>ql);
  store<u8>(topic + T_TOPIC_LEN, <u8>tl);
  memory.copy(topic + T_NAMES, q, ql);
  memory.copy(topic + T_NAMES + ql, t, tl);
  atomic.store<i32>(topic + T_USERS, users);
  let count = load<u32>(seg + SEG_COUNT) + 1;
  store<u32>(seg + SEG_COUNT, count);
  if (load<u32>(seg + SEG_BUCKETS) == 0 || count > load<u32>(seg + SEG_MASK) + 1) growBuckets(seg);
  if (load<u32>(seg + SEG_BUCKETS) == 0) {
    // Not even the first bucket array could be had: undo.
    store<u32>(seg + SEG_COUNT, count - 1);
    free(topic);
    queueRelease(queue);
    return 0;
  }
  let slot = <usize>load<u32>(seg + SEG_BUCKETS) + (<usize>(hash & load<u32>(seg + SEG_MASK)) << 2);
  store<u32>(topic + T_NEXT, load<u32>(slot));
  store<u32>(slot, <u32>topic);
  atomic.add<i32>(tableAddr() + 4, 1);
  return topic;
}

/**
 * Raises the id floor to at least `id` (layout.ts H_ID_FLOOR). Removal and re-creation of
 * one name happen under the same segment lock, so the new topic sees the raised floor.
 */
export function raiseIdFloor(id: u64): void {
  while (true) {
    let floor = atomic.load<u64>(H_ID_FLOOR);
    if (floor >= id || atomic.cmpxchg<u64>(H_ID_FLOOR, floor, id) == floor) return;
  }
}

/**
 * Removes `topic` from segment `seg` (segment lock held) if it is still there, unreferenced
 * and idle. Identity is checked by walking the chain: the caller may hold a stale pointer.
 */
function removeIfIdle(seg: usize, topic: usize): void {
  let buckets = <usize>load<u32>(seg + SEG_BUCKETS);
  if (buckets == 0) return;
  let slot = buckets + (<usize>(load<u32>(topic + T_HASH) & load<u32>(seg + SEG_MASK)) << 2);
  let cur = <usize>load<u32>(slot);
  while (cur != 0) {
    if (cur == topic) {
      if (atomic.load<i32>(topic + T_USERS) == 0 && isIdle(topic)) {
        store<u32>(slot, load<u32>(topic + T_NEXT));
        let count = load<u32>(seg + SEG_COUNT) - 1;
        store<u32>(seg + SEG_COUNT, count);
        if (count == 0) {
          // An empty segment gives its buckets back, so an idle table holds no memory.
          free(buckets);
          store<u32>(seg + SEG_BUCKETS, 0);
          store<u32>(seg + SEG_MASK, 0);
        }
        atomic.sub<i32>(tableAddr() + 4, 1);
        raiseIdFloor(load<u64>(topic + T_PUSHED));
        let queue = <usize>load<u32>(topic + T_QUEUE);
        free(topic);
        queueRelease(queue);
      }
      return;
    }
    slot = cur + T_NEXT;
    cur = <usize>load<u32>(slot);
  }
}

/**
 * Finds the topic (and creates it if `create`), taking a reference on it: the caller must
 * call topicRelease() when done. Returns 0 if absent (and not created), TOPIC_NO_MEMORY
 * if it could not be created. Names must be 1..255 bytes (the codec checks this).
 */
export function topicAcquire(q: usize, ql: usize, t: usize, tl: usize, create: bool): usize {
  let hash = hashNames(q, ql, t, tl);
  let seg = segmentOf(hash);
  lock(seg + SEG_LOCK);
  let topic = findInSegment(seg, hash, q, ql, t, tl);
  if (topic != 0) {
    atomic.add<i32>(topic + T_USERS, 1);
  } else if (create) {
    topic = insertInSegment(seg, hash, q, ql, t, tl, 1);
    if (topic == 0) topic = TOPIC_NO_MEMORY;
  }
  unlock(seg + SEG_LOCK);
  return topic;
}

/** Takes one more reference on a topic the caller already holds a reference on. */
export function topicRetain(topic: usize): void {
  atomic.add<i32>(topic + T_USERS, 1);
}

// @ts-ignore: decorator
@inline function isIdle(topic: usize): bool {
  return atomic.load<u32>(topic + T_LENGTH) == 0
    && atomic.load<u32>(topic + T_WAITER_HEAD) == 0
    && atomic.load<u32>(topic + T_CONSUMERS) == 0
    && atomic.load<u32>(topic + T_EXCLUSIVE) == 0
    && atomic.load<u32>(topic + T_HEAD_SEG) == 0
    && atomic.load<u32>(topic + T_DELAYED) == 0
    && atomic.load<u32>(topic + T_IN_FLIGHT) == 0;
}

/** Drops a reference; the last one out removes the topic if it is idle. */
export function topicRelease(topic: usize): void {
  let hash = load<u32>(topic + T_HASH); // read while our reference keeps it alive
  if (atomic.sub<i32>(topic + T_USERS, 1) != 1) return;
  if (!isIdle(topic)) return;
  // From here `topic` may already have been removed (and even reused) by another thread
  // that acquired and released it after our decrement: removeIfIdle trusts only what it
  // finds under the segment lock, by identity, with users == 0.
  let seg = segmentOf(hash);
  lock(seg + SEG_LOCK);
  removeIfIdle(seg, topic);
  unlock(seg + SEG_LOCK);
}

// ── The by-name fast path ──────────────────────────────────────────────────────────────
// A single request by name (push, pop, length) would cost a reference (two atomic RMWs)
// plus a release check on top of the segment and topic locks. Instead it keeps the segment
// lock for the whole operation: nobody can remove the topic meanwhile, so no reference is
// needed, and a topic left idle is removed on the spot. The operation itself still takes
// the topic lock (holders of references - waiters, subscriptions - use only that one).
// Cost: other topics of the same segment (1/1024 of the table) wait for one short
// operation; large messages take the reference path instead (see index.ts).

/**
 * Finds (or creates) the topic and returns it with its segment lock held and no
 * reference taken; the caller must end with topicUnlock(topic). Returns 0 (absent) or
 * TOPIC_NO_MEMORY with the segment already unlocked.
 */
export function topicFindLocked(q: usize, ql: usize, t: usize, tl: usize, create: bool): usize {
  let hash = hashNames(q, ql, t, tl);
  let seg = segmentOf(hash);
  lock(seg + SEG_LOCK);
  let topic = findInSegment(seg, hash, q, ql, t, tl);
  if (topic == 0 && create) {
    topic = insertInSegment(seg, hash, q, ql, t, tl, 0);
    if (topic == 0) topic = TOPIC_NO_MEMORY;
  }
  if (topic < 2) unlock(seg + SEG_LOCK);
  return topic;
}

/**
 * Ends a topicFindLocked: removes the topic if the operation left it idle, unlocks. The
 * segment is found again from the topic's hash (no per-thread "locked segment" state).
 */
export function topicUnlock(topic: usize): void {
  let seg = segmentOf(load<u32>(topic + T_HASH));
  if (atomic.load<i32>(topic + T_USERS) == 0 && isIdle(topic)) removeIfIdle(seg, topic);
  unlock(seg + SEG_LOCK);
}

export function topicCount(): i32 {
  return atomic.load<i32>(tableAddr() + 4);
}

// ── Walking the whole table ────────────────────────────────────────────────────────────
// For rare maintenance work (a crashed thread's clean-up), never for request paths. (A
// visitor callback would be neater, but AssemblyScript function references are static
// objects in a data segment, which the shared build must not have.)

/** Address of segment `i` (0..SEGMENT_COUNT-1), locked; release with unlockSegment. */
export function lockSegmentAt(i: u32): usize {
  let seg = tableAddr() + TABLE_HEADER + (<usize>i << 4);
  lock(seg + SEG_LOCK);
  return seg;
}

export function unlockSegment(seg: usize): void {
  unlock(seg + SEG_LOCK);
}

/** Buckets of a locked segment (0 if none). */
export function segmentBucketCount(seg: usize): u32 {
  return load<u32>(seg + SEG_BUCKETS) == 0 ? 0 : load<u32>(seg + SEG_MASK) + 1;
}

/** First topic in bucket `b` of a locked segment; follow T_NEXT for the rest. */
export function segmentBucketHead(seg: usize, b: u32): usize {
  return <usize>load<u32>(<usize>load<u32>(seg + SEG_BUCKETS) + (<usize>b << 2));
}
