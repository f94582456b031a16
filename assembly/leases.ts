// In-flight messages: leases, and their expiry.
//
// A lease belongs to the thread that delivered it, and within it to an *owner*: the
// connection (for leased pops) or one of its subscriptions. Every operation on a lease -
// ack, nack, extend, reject, expiry, the owner closing - happens on that thread, because
// the connection lives there; so the lease table is per thread and needs no lock. It
// lives in shared memory (reachable from the thread's ThreadSlot) only so that, if the
// thread dies, another one can reap it (reap.ts): the messages go back to their topics.
//
// A lease handle (u64, sent to the consumer with the message) is `generation << 32 | slot`.
// A slot's generation changes every time it is reused, so a handle whose lease ended
// (expired, nacked, its connection closed) never matches a later lease in the same slot:
// settling it answers E_LEASE_EXPIRED. Handles are checked against the owner's connection
// too, so one connection cannot settle another's leases.
//
// Expiry: a binary min-heap of slots ordered by (deadline, seq) - O(log n) to add, extend
// or remove, so 1,000,000 leases cost a 4 MB heap and no timer each. JS keeps one timer
// per thread at the earliest deadline (src/core/thread.ts) and calls leaseExpire, which
// ends due leases in bounded batches so a million expiring at once never stalls the
// thread for long.
//
// ╒═════════ LeaseTable (per thread, 40 bytes) ═════════╕
//  +0  u32 entries    Lease[capacity] (moves when it grows)
//  +4  u32 capacity
//  +8  u32 freeHead   first free slot + 1, 0 = none
//  +12 u32 count      live leases
//  +16 u32 heap       u32[heapCap] slots, min-heap by (deadline, seq)
//  +20 u32 heapCap
//  +24 u32 heapLen    == count
//  +28 u32 seq        next lease's sequence number (ties between equal deadlines)
//  +32 u32 scratch    u32[scratchCap] for batch expiry
//  +36 u32 scratchCap
// ╘═════════════════════════════════════════════════════╛
// ╒═════════ Lease (48 bytes) ═════════╕        ╒═══ Owner (16 bytes) ═══╕
//  +0  u32 generation                            +0  u32 head  slot + 1
//  +4  u32 record    stored record, 0 = free     +4  u32 tail  slot + 1
//  +8  u32 topic     (a reference, inFlight)     +8  u32 count
//  +12 u32 owner                                 +12 u32 connection id
//  +16 f64 deadline  ms since the epoch         ╘═════════════════════════╛
//  +24 f64 leaseMs   its length (extend default)
//  +32 u32 heapPos
//  +36 u32 prev      owner list, slot + 1
//  +40 u32 next      owner list (or free list), slot + 1
//  +44 u32 seq
// ╘════════════════════════════════════╛
// The owner list is in delivery order, so the leases an owner leaves behind go back to
// their topics' fronts newest first: the oldest ends up first again, order kept.

import { alloc, free, realloc, queueFree } from "./alloc";
import { threadSlot, SLOT_LEASES } from "./layout";
import { threadId } from "./thread";
import { R_META, R_ID, REASON_MAX_DELIVERIES, REASON_REJECTED, deliveriesOf } from "./record";
import { T_QUEUE } from "./table";
import { Q_MAX_DELIVERIES } from "./queues";
import { topicRequeue, topicSettled, topicDelayLeased, topicDeadLetter } from "./topic";
import { journaled, journalMeta, journalRemoveOne } from "./journal";
import { countEvent, EVENT_ACKED, EVENT_REDELIVERED } from "./stats";
import { E_LEASE_EXPIRED, E_INVALID_ARGUMENT } from "./status";
import { invariant } from "./debug";

// @ts-ignore: decorator
@inline const LT_ENTRIES: usize = 0;
// @ts-ignore: decorator
@inline const LT_CAPACITY: usize = 4;
// @ts-ignore: decorator
@inline const LT_FREE: usize = 8;
// @ts-ignore: decorator
@inline const LT_COUNT: usize = 12;
// @ts-ignore: decorator
@inline const LT_HEAP: usize = 16;
// @ts-ignore: decorator
@inline const LT_HEAP_CAP: usize = 20;
// @ts-ignore: decorator
@inline const LT_HEAP_LEN: usize = 24;
// @ts-ignore: decorator
@inline const LT_SEQ: usize = 28;
// @ts-ignore: decorator
@inline const LT_SCRATCH: usize = 32;
// @ts-ignore: decorator
@inline const LT_SCRATCH_CAP: usize = 36;
// @ts-ignore: decorator
@inline const LEASE_TABLE_SIZE: usize = 40;

// @ts-ignore: decorator
@inline const L_GEN: usize = 0;
// @ts-ignore: decorator
@inline const L_RECORD: usize = 4;
// @ts-ignore: decorator
@inline const L_TOPIC: usize = 8;
// @ts-ignore: decorator
@inline const L_OWNER: usize = 12;
// @ts-ignore: decorator
@inline const L_DEADLINE: usize = 16;
// @ts-ignore: decorator
@inline const L_LEASE_MS: usize = 24;
// @ts-ignore: decorator
@inline const L_HEAP_POS: usize = 32;
// @ts-ignore: decorator
@inline const L_PREV: usize = 36;
// @ts-ignore: decorator
@inline const L_NEXT: usize = 40;
// @ts-ignore: decorator
@inline const L_SEQ: usize = 44;
// @ts-ignore: decorator
@inline const LEASE_SIZE: usize = 48;

// @ts-ignore: decorator
@inline const O_HEAD: usize = 0;
// @ts-ignore: decorator
@inline const O_TAIL: usize = 4;
// @ts-ignore: decorator
@inline const O_COUNT: usize = 8;
// @ts-ignore: decorator
@inline const O_CONNECTION: usize = 12;
// @ts-ignore: decorator
@inline const OWNER_SIZE: usize = 16;

/** Settle kinds (SETTLE entries, docs/protocol.md). */
// @ts-ignore: decorator
@inline export const SETTLE_ACK: u32 = 1;
// @ts-ignore: decorator
@inline export const SETTLE_NACK: u32 = 2;
// @ts-ignore: decorator
@inline export const SETTLE_EXTEND: u32 = 3;
// @ts-ignore: decorator
@inline export const SETTLE_REJECT: u32 = 4;

/** Leases a leaseExpire call ends at most (bounds the time one call takes). */
// @ts-ignore: decorator
@inline const EXPIRE_BATCH: u32 = 4096;

// @ts-ignore: decorator
@inline function tableOf(id: u32): usize {
  return <usize>load<u32>(threadSlot(id) + SLOT_LEASES);
}

/** This thread's table, created on first use; 0 when out of memory. */
function myTable(): usize {
  let t = tableOf(threadId);
  if (t != 0) return t;
  t = alloc(LEASE_TABLE_SIZE);
  if (t == 0) return 0;
  memory.fill(t, 0, LEASE_TABLE_SIZE);
  store<u32>(threadSlot(threadId) + SLOT_LEASES, <u32>t);
  return t;
}

// @ts-ignore: decorator
@inline function entryAt(t: usize, slot: u32): usize {
  return <usize>load<u32>(t + LT_ENTRIES) + <usize>slot * LEASE_SIZE;
}

// @ts-ignore: decorator
@inline function heapAt(t: usize, i: u32): u32 {
  return load<u32>(<usize>load<u32>(t + LT_HEAP) + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline function heapSet(t: usize, i: u32, slot: u32): void {
  store<u32>(<usize>load<u32>(t + LT_HEAP) + (<usize>i << 2), slot);
  store<u32>(entryAt(t, slot) + L_HEAP_POS, i);
}

/** Lease `a` expires before lease `b`. */
// @ts-ignore: decorator
@inline function before(t: usize, a: u32, b: u32): bool {
  let ea = entryAt(t, a);
  let eb = entryAt(t, b);
  let da = load<f64>(ea + L_DEADLINE);
  let db = load<f64>(eb + L_DEADLINE);
  if (da != db) return da < db;
  return <i32>(load<u32>(ea + L_SEQ) - load<u32>(eb + L_SEQ)) < 0;
}

function siftUp(t: usize, i: u32): void {
  let slot = heapAt(t, i);
  while (i > 0) {
    let parent = (i - 1) >> 1;
    let p = heapAt(t, parent);
    if (!before(t, slot, p)) break;
    heapSet(t, i, p);
    i = parent;
  }
  heapSet(t, i, slot);
}

function siftDown(t: usize, i: u32): void {
  let len = load<u32>(t + LT_HEAP_LEN);
  let slot = heapAt(t, i);
  while (true) {
    let child = (i << 1) + 1;
    if (child >= len) break;
    let c = heapAt(t, child);
    if (child + 1 < len) {
      let r = heapAt(t, child + 1);
      if (before(t, r, c)) { child++; c = r; }
    }
    if (!before(t, c, slot)) break;
    heapSet(t, i, c);
    i = child;
  }
  heapSet(t, i, slot);
}

function heapRemove(t: usize, slot: u32): void {
  let i = load<u32>(entryAt(t, slot) + L_HEAP_POS);
  let len = load<u32>(t + LT_HEAP_LEN) - 1;
  store<u32>(t + LT_HEAP_LEN, len);
  if (i == len) return;
  // The last element takes the hole, then moves down or up to its place.
  let moved = heapAt(t, len);
  heapSet(t, i, moved);
  siftDown(t, i);
  siftUp(t, load<u32>(entryAt(t, moved) + L_HEAP_POS));
}

/**
 * Makes sure this thread can create one more lease without allocating (so a pop checks
 * it before taking a message out of its topic). False when out of memory.
 */
export function leaseReserve(): bool {
  let t = myTable();
  if (t == 0) return false;
  if (load<u32>(t + LT_FREE) != 0 && load<u32>(t + LT_HEAP_LEN) < load<u32>(t + LT_HEAP_CAP)) return true;
  let capacity = load<u32>(t + LT_CAPACITY);
  if (load<u32>(t + LT_FREE) == 0) {
    let newCap: u32 = capacity == 0 ? 64 : capacity << 1;
    let entries = realloc(<usize>load<u32>(t + LT_ENTRIES), <usize>newCap * LEASE_SIZE, <usize>capacity * LEASE_SIZE);
    if (entries == 0) return false;
    store<u32>(t + LT_ENTRIES, <u32>entries);
    // Chain the new slots into the free list, lowest first.
    for (let s = capacity; s < newCap; s++) {
      let e = entries + <usize>s * LEASE_SIZE;
      memory.fill(e, 0, LEASE_SIZE);
      store<u32>(e + L_NEXT, s + 1 < newCap ? s + 2 : load<u32>(t + LT_FREE));
    }
    store<u32>(t + LT_FREE, capacity + 1);
    store<u32>(t + LT_CAPACITY, newCap);
    capacity = newCap;
  }
  if (load<u32>(t + LT_HEAP_CAP) < capacity) {
    let heap = realloc(<usize>load<u32>(t + LT_HEAP), <usize>capacity << 2, <usize>load<u32>(t + LT_HEAP_LEN) << 2);
    if (heap == 0) return false;
    store<u32>(t + LT_HEAP, <u32>heap);
    store<u32>(t + LT_HEAP_CAP, capacity);
  }
  return true;
}

/**
 * Leases stored record `record` of `topic` (the caller moved the topic's inFlight and a
 * reference to the lease) to `owner` until now + leaseMs. leaseReserve() must have
 * succeeded just before. Returns the handle (never 0).
 */
export function leaseCreate(record: usize, topic: usize, owner: usize, leaseMs: f64, now: f64): u64 {
  let t = tableOf(threadId);
  let slot = load<u32>(t + LT_FREE) - 1;
  let e = entryAt(t, slot);
  store<u32>(t + LT_FREE, load<u32>(e + L_NEXT));
  let gen = load<u32>(e + L_GEN) + 1;
  if (gen == 0) gen = 1;
  store<u32>(e + L_GEN, gen);
  store<u32>(e + L_RECORD, <u32>record);
  store<u32>(e + L_TOPIC, <u32>topic);
  store<u32>(e + L_OWNER, <u32>owner);
  store<f64>(e + L_DEADLINE, now + leaseMs);
  store<f64>(e + L_LEASE_MS, leaseMs);
  let seq = load<u32>(t + LT_SEQ);
  store<u32>(t + LT_SEQ, seq + 1);
  store<u32>(e + L_SEQ, seq);
  // Owner list: append.
  let tail = load<u32>(owner + O_TAIL);
  store<u32>(e + L_PREV, tail);
  store<u32>(e + L_NEXT, 0);
  if (tail == 0) store<u32>(owner + O_HEAD, slot + 1);
  else store<u32>(entryAt(t, tail - 1) + L_NEXT, slot + 1);
  store<u32>(owner + O_TAIL, slot + 1);
  store<u32>(owner + O_COUNT, load<u32>(owner + O_COUNT) + 1);
  // Heap: append and sift up.
  let len = load<u32>(t + LT_HEAP_LEN);
  invariant(len < load<u32>(t + LT_HEAP_CAP));
  store<u32>(t + LT_HEAP_LEN, len + 1);
  heapSet(t, len, slot);
  siftUp(t, len);
  store<u32>(t + LT_COUNT, load<u32>(t + LT_COUNT) + 1);
  return (<u64>gen << 32) | <u64>slot;
}

/** Frees slot `slot` (its record already passed on): out of the heap, the owner list, the count. */
function leaseFree(t: usize, slot: u32): void {
  let e = entryAt(t, slot);
  heapRemove(t, slot);
  let owner = <usize>load<u32>(e + L_OWNER);
  let prev = load<u32>(e + L_PREV);
  let next = load<u32>(e + L_NEXT);
  if (prev == 0) store<u32>(owner + O_HEAD, next);
  else store<u32>(entryAt(t, prev - 1) + L_NEXT, next);
  if (next == 0) store<u32>(owner + O_TAIL, prev);
  else store<u32>(entryAt(t, next - 1) + L_PREV, prev);
  store<u32>(owner + O_COUNT, load<u32>(owner + O_COUNT) - 1);
  store<u32>(e + L_RECORD, 0);
  store<u32>(e + L_NEXT, load<u32>(t + LT_FREE));
  store<u32>(t + LT_FREE, slot + 1);
  store<u32>(t + LT_COUNT, load<u32>(t + LT_COUNT) - 1);
}

/**
 * Ends lease `slot` without an ack: it counted as a delivery. Dead-lettered when the
 * queue's maxDeliveries is reached (or `reject`), else back to the front of its topic,
 * or to the delay heap until now + delayMs.
 */
function leaseEnd(t: usize, slot: u32, reject: bool, delayMs: f64, now: f64): void {
  let e = entryAt(t, slot);
  let record = <usize>load<u32>(e + L_RECORD);
  let topic = <usize>load<u32>(e + L_TOPIC);
  leaseFree(t, slot);
  let deliveries = <f64>deliveriesOf(load<u32>(record, R_META));
  let maxDeliveries = load<f64>(<usize>load<u32>(topic + T_QUEUE) + Q_MAX_DELIVERIES);
  if (reject) topicDeadLetter(topic, record, REASON_REJECTED);
  else if (deliveries >= maxDeliveries) topicDeadLetter(topic, record, REASON_MAX_DELIVERIES);
  else {
    countEvent(EVENT_REDELIVERED, 1);
    // The new deliveries count (and due time) survive a restart; the message is ready again in the log's eyes.
    if (journaled(topic)) journalMeta(topic, load<u64>(record, R_ID), load<u32>(record, R_META), delayMs > 0 ? now + delayMs : 0);
    if (delayMs > 0) topicDelayLeased(topic, record, now + delayMs);
    else topicRequeue(topic, record, now);
  }
}

/** The slot of `handle` if it is a live lease of connection `connection`, else -1. */
function liveSlot(t: usize, handle: u64, connection: u32): i32 {
  if (t == 0) return -1;
  let slot = <u32>handle;
  if (slot >= load<u32>(t + LT_CAPACITY)) return -1;
  let e = entryAt(t, slot);
  if (load<u32>(e + L_RECORD) == 0 || load<u32>(e + L_GEN) != <u32>(handle >> 32)) return -1;
  if (load<u32>(<usize>load<u32>(e + L_OWNER) + O_CONNECTION) != connection) return -1;
  return <i32>slot;
}

/**
 * Settles one lease of connection `connection`: ack (removed for good), nack (back now,
 * or after `arg` ms), extend (ends `arg` ms from now, 0 = its own length), reject (to
 * the dead-letter topic). Returns 0, E_LEASE_EXPIRED (the lease ended: expired, nacked,
 * its owner closed) or E_INVALID_ARGUMENT (unknown kind).
 */
export function leaseSettle(handle: u64, kind: u32, arg: f64, connection: u32, now: f64): i32 {
  let t = tableOf(threadId);
  let s = liveSlot(t, handle, connection);
  if (s < 0) return E_LEASE_EXPIRED;
  let slot = <u32>s;
  let e = entryAt(t, slot);
  if (kind == SETTLE_ACK) {
    let record = <usize>load<u32>(e + L_RECORD);
    let topic = <usize>load<u32>(e + L_TOPIC);
    leaseFree(t, slot);
    if (journaled(topic)) journalRemoveOne(topic, load<u64>(record, R_ID));
    queueFree(record);
    topicSettled(topic);
    countEvent(EVENT_ACKED, 1);
  } else if (kind == SETTLE_NACK) {
    leaseEnd(t, slot, false, arg, now);
  } else if (kind == SETTLE_REJECT) {
    leaseEnd(t, slot, true, 0, now);
  } else if (kind == SETTLE_EXTEND) {
    store<f64>(e + L_DEADLINE, now + (arg > 0 ? arg : load<f64>(e + L_LEASE_MS)));
    let i = load<u32>(e + L_HEAP_POS);
    siftDown(t, i);
    siftUp(t, load<u32>(e + L_HEAP_POS));
  } else {
    return E_INVALID_ARGUMENT;
  }
  return 0;
}

/**
 * Ends this thread's leases whose deadline is <= now, at most EXPIRE_BATCH per call (call
 * again while it returns EXPIRE_BATCH). Each batch is ended newest first, so leases that
 * expire together go back to their topics' fronts in their original order.
 */
export function leaseExpire(now: f64): u32 {
  let t = tableOf(threadId);
  if (t == 0) return 0;
  if (load<u32>(t + LT_SCRATCH_CAP) < EXPIRE_BATCH) {
    let scratch = realloc(<usize>load<u32>(t + LT_SCRATCH), <usize>EXPIRE_BATCH << 2, 0);
    if (scratch == 0) return 0;
    store<u32>(t + LT_SCRATCH, <u32>scratch);
    store<u32>(t + LT_SCRATCH_CAP, EXPIRE_BATCH);
  }
  let scratch = <usize>load<u32>(t + LT_SCRATCH);
  // Collect due slots in expiry order by popping the heap root repeatedly.
  let n: u32 = 0;
  while (n < EXPIRE_BATCH && load<u32>(t + LT_HEAP_LEN) > 0) {
    let root = heapAt(t, 0);
    if (load<f64>(entryAt(t, root) + L_DEADLINE) > now) break;
    store<u32>(scratch + (<usize>n << 2), root);
    // Park it out of the heap's way: leaseEnd's heapRemove must find it, so give it an
    // infinite deadline (it sinks) rather than removing it here.
    store<f64>(entryAt(t, root) + L_DEADLINE, Infinity);
    siftDown(t, 0);
    n++;
  }
  for (let i = n; i > 0; i--) leaseEnd(t, load<u32>(scratch + (<usize>(i - 1) << 2)), false, 0, now);
  return n;
}

/** The earliest deadline of this thread's leases (ms since the epoch), 0 if it has none. */
export function leaseNextDeadline(): f64 {
  let t = tableOf(threadId);
  if (t == 0 || load<u32>(t + LT_HEAP_LEN) == 0) return 0;
  return load<f64>(entryAt(t, heapAt(t, 0)) + L_DEADLINE);
}

/** Live leases of this thread. */
export function leaseCount(): u32 {
  let t = tableOf(threadId);
  return t == 0 ? 0 : load<u32>(t + LT_COUNT);
}

// ── Owners ─────────────────────────────────────────────────────────────────────────────

/** A new lease owner for connection `connection` (a connection, or one subscription); 0 if out of memory. */
export function ownerNew(connection: u32): usize {
  let owner = alloc(OWNER_SIZE);
  if (owner == 0) return 0;
  store<u32>(owner + O_HEAD, 0);
  store<u32>(owner + O_TAIL, 0);
  store<u32>(owner + O_COUNT, 0);
  store<u32>(owner + O_CONNECTION, connection);
  return owner;
}

/** Leases `owner` holds. */
export function ownerCount(owner: usize): u32 {
  return load<u32>(owner + O_COUNT);
}

/**
 * Ends every lease of `owner` (its connection or subscription closed), newest first so
 * that they return to their topics' fronts in their original order. Returns how many.
 */
export function ownerEnd(owner: usize, now: f64): u32 {
  let t = tableOf(threadId);
  let n: u32 = 0;
  while (load<u32>(owner + O_TAIL) != 0) {
    leaseEnd(t, load<u32>(owner + O_TAIL) - 1, false, 0, now);
    n++;
  }
  return n;
}

/** Frees an owner with no leases left. */
export function ownerFree(owner: usize): void {
  invariant(load<u32>(owner + O_COUNT) == 0);
  free(owner);
}

/**
 * A dead thread's leases (reap.ts): each goes back to its topic (it counted as a
 * delivery), then the table is freed. The dead thread's owners are lost with its JS
 * state; they are never touched again. Returns how many.
 */
export function reapLeases(dead: u32, now: f64): u32 {
  let t = tableOf(dead);
  if (t == 0) return 0;
  let n: u32 = 0;
  let capacity = load<u32>(t + LT_CAPACITY);
  // Order: oldest lease first would put the newest at the front; sort is not worth it for a
  // crash path - walk slots from the highest down, which roughly follows newest first.
  for (let s = capacity; s > 0; s--) {
    let e = entryAt(t, s - 1);
    let record = <usize>load<u32>(e + L_RECORD);
    if (record == 0) continue;
    let topic = <usize>load<u32>(e + L_TOPIC);
    store<u32>(e + L_RECORD, 0);
    let deliveries = <f64>deliveriesOf(load<u32>(record, R_META));
    if (deliveries >= load<f64>(<usize>load<u32>(topic + T_QUEUE) + Q_MAX_DELIVERIES)) topicDeadLetter(topic, record, REASON_MAX_DELIVERIES);
    else {
      if (journaled(topic)) journalMeta(topic, load<u64>(record, R_ID), load<u32>(record, R_META), 0);
      topicRequeue(topic, record, now);
    }
    n++;
  }
  free(<usize>load<u32>(t + LT_ENTRIES));
  free(<usize>load<u32>(t + LT_HEAP));
  free(<usize>load<u32>(t + LT_SCRATCH));
  free(t);
  store<u32>(threadSlot(dead) + SLOT_LEASES, 0);
  return n;
}
