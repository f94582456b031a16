// Delayed messages, by due time: one shared min-heap for every topic.
//
// A delayed push (or a nack with delayMs) puts a stored-record block here with its topic
// and due time; the topic counts it in `delayed` and the entry holds a topic reference, so
// the topic stays alive until the message is due. Entries are ordered by (due, seq): seq
// is the insertion order, so messages due at the same moment - a delayed pushMany - join
// their topic in the order they were pushed, and due messages join in due-time order.
//
// Who makes them due: every thread that inserts an entry keeps one JS timer at the heap's
// earliest due time (src/core/thread.ts) and calls delaysDue, which moves due entries to
// their topics in bounded batches. One sweep runs at a time (`sweepLock`, try-lock): two
// threads sweeping at once could interleave two due messages of one topic out of order.
//
// Lock order: sweepLock -> heap lock -> nothing; sweepLock -> topic lock (heap unlocked).
// Inserting takes only the heap lock, with no other lock held.
//
// ╒═════════ DelayHeap (32 bytes) ═════════╕   ╒════ Entry (24 bytes) ════╕
//  +0  i32 lock       guards +8..+31              +0  f64 due
//  +4  i32 sweepLock                              +8  u64 seq
//  +8  u32 entries    Entry[capacity]             +16 u32 record
//  +12 u32 capacity                               +20 u32 topic (referenced)
//  +16 u32 length                                ╘═════════════════════════╛
//  +20 u32 reserved
//  +24 u64 seq        next entry's seq
// ╘════════════════════════════════════════╛

import { alloc, free, realloc } from "./alloc";
import { lock, unlock, tryLock } from "./sync";
import { H_DELAYS } from "./layout";
import { topicDue, topicDropDelayed } from "./topic";

// @ts-ignore: decorator
@inline const D_LOCK: usize = 0;
// @ts-ignore: decorator
@inline const D_SWEEP_LOCK: usize = 4;
// @ts-ignore: decorator
@inline const D_ENTRIES: usize = 8;
// @ts-ignore: decorator
@inline const D_CAPACITY: usize = 12;
// @ts-ignore: decorator
@inline const D_LENGTH: usize = 16;
// @ts-ignore: decorator
@inline const D_SEQ: usize = 24;
// @ts-ignore: decorator
@inline const DELAY_HEAP_SIZE: usize = 32;

// @ts-ignore: decorator
@inline const E_DUE: usize = 0;
// @ts-ignore: decorator
@inline const E_SEQ: usize = 8;
// @ts-ignore: decorator
@inline const E_RECORD: usize = 16;
// @ts-ignore: decorator
@inline const E_TOPIC: usize = 20;
// @ts-ignore: decorator
@inline const ENTRY_SIZE: usize = 24;

/** Entries one delaysDue call moves at most. */
// @ts-ignore: decorator
@inline const DUE_BATCH: u32 = 4096;

export function delaysInit(): bool {
  let heap = alloc(DELAY_HEAP_SIZE);
  if (heap == 0) return false;
  memory.fill(heap, 0, DELAY_HEAP_SIZE);
  atomic.store<u32>(H_DELAYS, <u32>heap);
  return true;
}

// @ts-ignore: decorator
@inline function heapAddr(): usize {
  return <usize>atomic.load<u32>(H_DELAYS);
}

// @ts-ignore: decorator
@inline function entry(h: usize, i: u32): usize {
  return <usize>load<u32>(h + D_ENTRIES) + <usize>i * ENTRY_SIZE;
}

// @ts-ignore: decorator
@inline function less(a: usize, b: usize): bool {
  let da = load<f64>(a + E_DUE);
  let db = load<f64>(b + E_DUE);
  return da < db || (da == db && load<u64>(a + E_SEQ) < load<u64>(b + E_SEQ));
}

// @ts-ignore: decorator
@inline function swap(a: usize, b: usize): void {
  let d = load<f64>(a); let s = load<u64>(a, 8); let r = load<u64>(a, 16);
  store<f64>(a, load<f64>(b)); store<u64>(a, load<u64>(b, 8), 8); store<u64>(a, load<u64>(b, 16), 16);
  store<f64>(b, d); store<u64>(b, s, 8); store<u64>(b, r, 16);
}

/**
 * Inserts `count` record blocks (an array of u32 pointers at `blocks`) of `topic`, all due
 * at `due`, in order. The caller has counted them in the topic's `delayed` and taken one
 * topic reference each. False (nothing inserted) when out of memory.
 */
export function delaysInsert(topic: usize, blocks: usize, count: u32, due: f64): bool {
  let h = heapAddr();
  lock(h + D_LOCK);
  let length = load<u32>(h + D_LENGTH);
  let capacity = load<u32>(h + D_CAPACITY);
  if (<u64>length + <u64>count > <u64>capacity) {
    let newCap = max<u32>(max<u32>(capacity << 1, 64), length + count);
    let entries = realloc(<usize>load<u32>(h + D_ENTRIES), <usize>newCap * ENTRY_SIZE, <usize>length * ENTRY_SIZE);
    if (entries == 0) {
      unlock(h + D_LOCK);
      return false;
    }
    store<u32>(h + D_ENTRIES, <u32>entries);
    store<u32>(h + D_CAPACITY, newCap);
  }
  let seq = load<u64>(h + D_SEQ);
  for (let k: u32 = 0; k < count; k++) {
    let i = length + k;
    let e = entry(h, i);
    store<f64>(e + E_DUE, due);
    store<u64>(e + E_SEQ, seq++);
    store<u32>(e + E_RECORD, load<u32>(blocks + (<usize>k << 2)));
    store<u32>(e + E_TOPIC, <u32>topic);
    while (i > 0) {
      let parent = (i - 1) >> 1;
      let p = entry(h, parent);
      if (!less(e, p)) break;
      swap(e, p);
      e = p;
      i = parent;
    }
  }
  store<u64>(h + D_SEQ, seq);
  store<u32>(h + D_LENGTH, length + count);
  unlock(h + D_LOCK);
  return true;
}

/** Removes the root into (record, topic) at `out` (heap lock held, length > 0). */
function popRoot(h: usize, out: usize): void {
  let root = entry(h, 0);
  store<u32>(out, load<u32>(root + E_RECORD));
  store<u32>(out, load<u32>(root + E_TOPIC), 4);
  let length = load<u32>(h + D_LENGTH) - 1;
  store<u32>(h + D_LENGTH, length);
  if (length == 0) return;
  swap(root, entry(h, length));
  let i: u32 = 0;
  while (true) {
    let child = (i << 1) + 1;
    if (child >= length) break;
    if (child + 1 < length && less(entry(h, child + 1), entry(h, child))) child++;
    if (!less(entry(h, child), entry(h, i))) break;
    swap(entry(h, child), entry(h, i));
    i = child;
  }
}

/**
 * Moves delayed messages due at `now` (ms since the epoch) to their topics, in due order,
 * at most DUE_BATCH per call. Returns how many moved (0 also when another thread is
 * sweeping: that one moves them).
 */
export function delaysDue(now: f64): u32 {
  let h = heapAddr();
  if (!tryLock(h + D_SWEEP_LOCK)) return 0;
  let out = alloc(8);
  let n: u32 = 0;
  while (out != 0 && n < DUE_BATCH) {
    lock(h + D_LOCK);
    if (load<u32>(h + D_LENGTH) == 0 || load<f64>(entry(h, 0) + E_DUE) > now) {
      unlock(h + D_LOCK);
      break;
    }
    popRoot(h, out);
    unlock(h + D_LOCK);
    let record = <usize>load<u32>(out);
    let topic = <usize>load<u32>(out, 4);
    if (!topicDue(topic, record)) {
      // No memory for it in the topic now: it waits a second and tries again (`out`
      // starts with the record pointer: an array of one block).
      if (!delaysInsert(topic, out, 1, now + 1000)) topicDropDelayed(topic, record);
      break;
    }
    n++;
  }
  if (out != 0) free(out);
  unlock(h + D_SWEEP_LOCK);
  return n;
}

/** The earliest due time (ms since the epoch), 0 when nothing is delayed. */
export function delaysNextDue(): f64 {
  let h = heapAddr();
  lock(h + D_LOCK);
  let due: f64 = load<u32>(h + D_LENGTH) == 0 ? 0 : load<f64>(entry(h, 0) + E_DUE);
  unlock(h + D_LOCK);
  return due;
}

/** Messages waiting in the delay heap (all topics). */
export function delaysCount(): u32 {
  return atomic.load<u32>(heapAddr() + D_LENGTH);
}
