// Recent dedupIds: a push whose dedupId was already pushed to the same queue and topic
// within the queue's dedupWindowMs stores nothing (idempotent producers that retry).
//
// DEDUP_SEGMENTS independently locked hash segments (the topic table's segment layout,
// table.ts growBuckets, plus an insertion-order list for expiry). The key is the exact
// bytes `u8 ql, queue, u8 tl, topic, u8 dl, dedupId` (a hash match alone is never
// trusted; with the lengths in it, no two (queue, topic, dedupId) share a key). An entry
// expires `windowMs` after its push (the window in force then); entries leave from the
// head of their segment's list as later inserts into the segment pass their expiry, so
// the memory follows the pushes and no timer is needed. Lookups check the expiry too, so
// an entry behind a longer-lived one is never honoured late.
//
// A push with a dedupId runs entirely under its dedup segment's lock (index.ts opPushEx):
// check, push, and forget the id again if the push failed - two producers retrying the
// same id at once cannot both store it, and a refused push can be retried.
// Lock order: dedup segment -> table segment -> topic.
//
// ╒══ DedupTable ══╕  ╒═════ Segment (32 bytes) ═════╕  ╒═══════ Entry (24 + key) ═══════╕
//  Segment[64]         +0  i32 lock                      +0  u32 next      bucket chain
//                      +4  u32 count                     +4  u32 hash
//                      +8  u32 mask                      +8  u32 older     list, towards the tail
//                      +12 u32 buckets                   +12 u32 keyLen
//                      +16 u32 oldest  list head         +16 f64 expiresAt
//                      +20 u32 newest  list tail         +24 key bytes
//                      +24 u32 reserved[2]              ╘════════════════════════════════╛
//                     ╘══════════════════════════════╛

import { alloc, queueAlloc, queueFree } from "./alloc";
import { lock, unlock } from "./sync";
import { H_DEDUP } from "./layout";
import { SEG_LOCK, SEG_COUNT, SEG_MASK, SEG_BUCKETS, growBuckets, fnv, mix } from "./table";

// @ts-ignore: decorator
@inline const DEDUP_SEGMENT_BITS: u32 = 6;
// @ts-ignore: decorator
@inline const DEDUP_SEGMENTS: u32 = 1 << DEDUP_SEGMENT_BITS;
// @ts-ignore: decorator
@inline const DS_OLDEST: usize = 16;
// @ts-ignore: decorator
@inline const DS_NEWEST: usize = 20;
// @ts-ignore: decorator
@inline const DEDUP_SEGMENT_BYTES: usize = 32;

// @ts-ignore: decorator
@inline const DE_NEXT: usize = 0;
// @ts-ignore: decorator
@inline const DE_HASH: usize = 4;
// @ts-ignore: decorator
@inline const DE_NEWER: usize = 8;
// @ts-ignore: decorator
@inline const DE_KEY_LEN: usize = 12;
// @ts-ignore: decorator
@inline const DE_EXPIRES: usize = 16;
// @ts-ignore: decorator
@inline const DE_KEY: usize = 24;

/** dedupBegin results besides an entry pointer. */
// @ts-ignore: decorator
@inline export const DEDUP_SEEN: usize = 0;
// @ts-ignore: decorator
@inline export const DEDUP_NO_MEMORY: usize = 1;

export function dedupInit(): bool {
  let size = <usize>DEDUP_SEGMENTS * DEDUP_SEGMENT_BYTES;
  let table = alloc(size);
  if (table == 0) return false;
  memory.fill(table, 0, size);
  atomic.store<u32>(H_DEDUP, <u32>table);
  return true;
}

// @ts-ignore: decorator
@inline function keyHash(q: usize, ql: usize, t: usize, tl: usize, d: usize, dl: usize): u32 {
  let h = fnv((0x811c9dc5 ^ <u32>ql) * 0x01000193, q, ql);
  h = (h ^ <u32>tl) * 0x01000193;
  h = fnv(h, t, tl);
  h = (h ^ <u32>dl) * 0x01000193;
  return mix(fnv(h, d, dl));
}

/** The segment for `hash`. */
export function dedupSegment(hash: u32): usize {
  return <usize>atomic.load<u32>(H_DEDUP) + (<usize>(hash >>> (32 - DEDUP_SEGMENT_BITS)) * DEDUP_SEGMENT_BYTES);
}

// @ts-ignore: decorator
@inline function keyMatches(e: usize, q: usize, ql: usize, t: usize, tl: usize, d: usize, dl: usize): bool {
  if (<usize>load<u32>(e + DE_KEY_LEN) != ql + tl + dl + 3) return false;
  let k = e + DE_KEY;
  return <usize>load<u8>(k) == ql && memory.compare(k + 1, q, ql) == 0
    && <usize>load<u8>(k + 1 + ql) == tl && memory.compare(k + 2 + ql, t, tl) == 0
    && memory.compare(k + 3 + ql + tl, d, dl) == 0;
}

/** Unlinks `e` from its bucket chain (segment lock held). */
function unlinkBucket(seg: usize, e: usize): void {
  let slot = <usize>load<u32>(seg + SEG_BUCKETS) + (<usize>(load<u32>(e + DE_HASH) & load<u32>(seg + SEG_MASK)) << 2);
  let cur = <usize>load<u32>(slot);
  while (cur != 0) {
    if (cur == e) {
      store<u32>(slot, load<u32>(e + DE_NEXT));
      store<u32>(seg + SEG_COUNT, load<u32>(seg + SEG_COUNT) - 1);
      return;
    }
    slot = cur + DE_NEXT;
    cur = <usize>load<u32>(slot);
  }
}

/** Frees entries from the head of the list whose expiry has passed (segment lock held). */
function expire(seg: usize, now: f64): void {
  while (true) {
    let e = <usize>load<u32>(seg + DS_OLDEST);
    if (e == 0 || load<f64>(e + DE_EXPIRES) > now) return;
    store<u32>(seg + DS_OLDEST, load<u32>(e + DE_NEWER));
    if (load<u32>(e + DE_NEWER) == 0) store<u32>(seg + DS_NEWEST, 0);
    unlinkBucket(seg, e);
    queueFree(e);
  }
}

/**
 * Locks the dedupId's segment and looks it up. Returns DEDUP_SEEN (pushed within its
 * window: store nothing), DEDUP_NO_MEMORY, or the new entry recording this push; the
 * segment stays locked until dedupEnd(hash, entry, stored). `hashOut` receives the hash.
 */
export function dedupBegin(q: usize, ql: usize, t: usize, tl: usize, d: usize, dl: usize, now: f64, windowMs: f64, hashOut: usize): usize {
  let hash = keyHash(q, ql, t, tl, d, dl);
  store<u32>(hashOut, hash);
  let seg = dedupSegment(hash);
  lock(seg + SEG_LOCK);
  expire(seg, now);
  if (find(seg, hash, q, ql, t, tl, d, dl, now) != 0) return DEDUP_SEEN;
  return insert(seg, hash, q, ql, t, tl, d, dl, now + windowMs);
}

/** The key's entry still open at `now` (the segment is locked), or 0. */
function find(seg: usize, hash: u32, q: usize, ql: usize, t: usize, tl: usize, d: usize, dl: usize, now: f64): usize {
  let buckets = <usize>load<u32>(seg + SEG_BUCKETS);
  if (buckets == 0) return 0;
  let e = <usize>load<u32>(buckets + (<usize>(hash & load<u32>(seg + SEG_MASK)) << 2));
  while (e != 0) {
    if (load<u32>(e + DE_HASH) == hash && load<f64>(e + DE_EXPIRES) > now && keyMatches(e, q, ql, t, tl, d, dl)) return e;
    e = <usize>load<u32>(e + DE_NEXT);
  }
  return 0;
}

/** A new entry for the key, expiring at `expiresAt`, newest of the segment's list (the segment is locked). */
function insert(seg: usize, hash: u32, q: usize, ql: usize, t: usize, tl: usize, d: usize, dl: usize, expiresAt: f64): usize {
  let keyLen = ql + tl + dl + 3;
  let e = queueAlloc(DE_KEY + keyLen);
  if (e == 0) return DEDUP_NO_MEMORY;
  let count = load<u32>(seg + SEG_COUNT) + 1;
  store<u32>(seg + SEG_COUNT, count);
  if (load<u32>(seg + SEG_BUCKETS) == 0 || count > load<u32>(seg + SEG_MASK) + 1) growBuckets(seg);
  if (load<u32>(seg + SEG_BUCKETS) == 0) {
    store<u32>(seg + SEG_COUNT, count - 1);
    queueFree(e);
    return DEDUP_NO_MEMORY;
  }
  store<u32>(e + DE_HASH, hash);
  store<u32>(e + DE_NEWER, 0);
  store<u32>(e + DE_KEY_LEN, <u32>keyLen);
  store<f64>(e + DE_EXPIRES, expiresAt);
  let k = e + DE_KEY;
  store<u8>(k, <u8>ql);
  memory.copy(k + 1, q, ql);
  store<u8>(k + 1 + ql, <u8>tl);
  memory.copy(k + 2 + ql, t, tl);
  store<u8>(k + 2 + ql + tl, <u8>dl);
  memory.copy(k + 3 + ql + tl, d, dl);
  let slot = <usize>load<u32>(seg + SEG_BUCKETS) + (<usize>(hash & load<u32>(seg + SEG_MASK)) << 2);
  store<u32>(e + DE_NEXT, load<u32>(slot));
  store<u32>(slot, <u32>e);
  let newest = <usize>load<u32>(seg + DS_NEWEST);
  if (newest == 0) store<u32>(seg + DS_OLDEST, <u32>e);
  else store<u32>(newest + DE_NEWER, <u32>e);
  store<u32>(seg + DS_NEWEST, <u32>e);
  return e;
}

/**
 * Recovery: the dedupId (d, dl) of queue and topic was pushed and is remembered until
 * `expiresAt` (from the log's DEDUP record). An entry already there keeps the later expiry.
 * Returns false when out of memory. Callers restore in expiry order, so the segment's list
 * stays oldest first and expiry takes them from its head as at run time.
 */
export function dedupRestore(q: usize, ql: usize, t: usize, tl: usize, d: usize, dl: usize, expiresAt: f64, now: f64): bool {
  if (expiresAt <= now) return true;
  let hash = keyHash(q, ql, t, tl, d, dl);
  let seg = dedupSegment(hash);
  lock(seg + SEG_LOCK);
  expire(seg, now);
  let e = find(seg, hash, q, ql, t, tl, d, dl, now);
  if (e != 0) {
    if (expiresAt > load<f64>(e + DE_EXPIRES)) store<f64>(e + DE_EXPIRES, expiresAt);
  } else {
    e = insert(seg, hash, q, ql, t, tl, d, dl, expiresAt);
  }
  unlock(seg + SEG_LOCK);
  return e != DEDUP_NO_MEMORY;
}

/**
 * Ends a dedupBegin: if the push was not stored, its entry goes (a retry must not be
 * taken for a duplicate). Unlocks the segment.
 */
export function dedupEnd(hash: u32, entry: usize, stored: bool): void {
  let seg = dedupSegment(hash);
  if (!stored && entry > DEDUP_NO_MEMORY) {
    // The entry is the newest of its list: it was appended under this same lock hold.
    unlinkBucket(seg, entry);
    let prev: usize = 0;
    let cur = <usize>load<u32>(seg + DS_OLDEST);
    while (cur != 0 && cur != entry) {
      prev = cur;
      cur = <usize>load<u32>(cur + DE_NEWER);
    }
    if (prev == 0) store<u32>(seg + DS_OLDEST, 0);
    else store<u32>(prev + DE_NEWER, 0);
    store<u32>(seg + DS_NEWEST, <u32>prev);
    queueFree(entry);
  }
  unlock(seg + SEG_LOCK);
}

/** Frees every expired entry of every segment (a periodic sweep for segments without traffic). */
export function dedupSweep(now: f64): void {
  let table = <usize>atomic.load<u32>(H_DEDUP);
  for (let i: u32 = 0; i < DEDUP_SEGMENTS; i++) {
    let seg = table + <usize>i * DEDUP_SEGMENT_BYTES;
    lock(seg + SEG_LOCK);
    expire(seg, now);
    unlock(seg + SEG_LOCK);
  }
}

/** Remembered dedupIds (all segments; for tests and stats). */
export function dedupCount(): u32 {
  let table = <usize>atomic.load<u32>(H_DEDUP);
  let n: u32 = 0;
  for (let i: u32 = 0; i < DEDUP_SEGMENTS; i++) n += atomic.load<u32>(table + <usize>i * DEDUP_SEGMENT_BYTES + SEG_COUNT);
  return n;
}
