// The core's exported entry points. Everything JS calls is here or re-exported from here.
//
// Calls are batch-oriented where it matters: the codec decodes a whole socket chunk per
// call, pushMany/popMany move many messages per call, pops write straight into a
// connection's output buffer (no copy through JS), and acks settle a whole frame of
// leases per call. Times (`now`) are ms since the epoch, from the caller (Date.now()):
// the core has no clock, and every thread must agree on one.

import {
  H_MAGIC, H_INIT_STATE, H_LAYOUT, H_THREAD_BITS, HEADER_MAGIC, LAYOUT_VERSION, MAX_THREADS, HEAP_START,
  threadSlot, SLOT_METRICS,
} from "./layout";
import { heapInit } from "./alloc";
import { threadId, setThreadId } from "./thread";
import { raiseIdFloor } from "./table";
import { queueRetain, queueRelease } from "./queues";
import { queueIsDurable, journalDedupNext, journalDedupClear, journalDependsOnPeers, logMarkSettle } from "./journal";
import { tableInit, topicAcquire, topicRelease, topicFindLocked, topicUnlock, TOPIC_NO_MEMORY, T_LENGTH, T_USERS, T_QUEUE } from "./table";
import { queuesInit, Q_DEDUP_WINDOW_MS } from "./queues";
import { delaysInit } from "./delays";
import { dedupInit, dedupBegin, dedupEnd, dedupRestore, DEDUP_SEEN, DEDUP_NO_MEMORY } from "./dedup";
import {
  topicPush, topicPushWire, topicPushDelayed, topicReturnStored, topicPop, topicStatsInto, topicRestoreReady, topicRestoreDelayed,
  waiterDeliverInto, waiterDeliverLeased,
} from "./topic";
import { leaseSettle, reapLeases } from "./leases";
import { encodeRecordsBegin, encodeRecordsEnd, writerTruncate, encodeSettledBegin } from "./codec";
import { FLAG_LEASED } from "./record";
import { E_NO_MEMORY } from "./status";

export { alloc, free, allocSize, bytesInUse, blocksInUse, bytesReserved, setQueueLimit, queueBytes, queueReserve, queueUnreserve } from "./alloc";

// @ts-ignore: decorator
@inline const INIT_FRESH: i32 = 0;
// @ts-ignore: decorator
@inline const INIT_BUSY: i32 = 1;
// @ts-ignore: decorator
@inline const INIT_READY: i32 = 2;

/** attach() failures (negative). */
// @ts-ignore: decorator
@inline const E_LAYOUT: i32 = -1;
// @ts-ignore: decorator
@inline const E_THREADS: i32 = -2;

/**
 * Joins this instance to the shared memory and returns its thread id (1..255), or a
 * negative error. The first caller initialises the header; the others wait for it (the
 * state word goes 0 -> 1 by CAS, so exactly one instance initialises, and 1 -> 2 with a
 * notify once the header is complete). Thread ids come from a CAS-claimed bitmap.
 */
export function attach(): i32 {
  if (threadId != 0) return <i32>threadId;
  let state = atomic.cmpxchg<i32>(H_INIT_STATE, INIT_FRESH, INIT_BUSY);
  if (state == INIT_FRESH) {
    store<u32>(H_LAYOUT, LAYOUT_VERSION);
    heapInit(HEAP_START);
    initShared();
    atomic.store<u32>(H_MAGIC, HEADER_MAGIC);
    atomic.store<i32>(H_INIT_STATE, INIT_READY);
    atomic.notify(H_INIT_STATE, -1);
  } else {
    while (atomic.load<i32>(H_INIT_STATE) != INIT_READY) atomic.wait<i32>(H_INIT_STATE, INIT_BUSY, 1000000);
  }
  if (atomic.load<u32>(H_MAGIC) != HEADER_MAGIC || load<u32>(H_LAYOUT) != LAYOUT_VERSION) return E_LAYOUT;
  // Claim the lowest free id (id 0 is "not attached").
  for (let id: u32 = 1; id < MAX_THREADS; id++) {
    let word = H_THREAD_BITS + ((<usize>id >> 5) << 2);
    let bit: u32 = 1 << (id & 31);
    while (true) {
      let old = atomic.load<u32>(word);
      if (old & bit) break;
      if (atomic.cmpxchg<u32>(word, old, old | bit) == old) {
        atomic.store<u32>(threadSlot(id) + SLOT_METRICS, 0);
        logMarkSettle(id); // a reused id: nothing of a predecessor is waited for
        setThreadId(id);
        return <i32>id;
      }
    }
  }
  return E_THREADS;
}

/**
 * Gives this instance's thread id back. Its lease table goes too (leases still live - there
 * should be none once its connections closed - return to their topics), so the next thread
 * with this id starts clean. `now`: ms since the epoch.
 */
export function detach(now: f64): void {
  let id = threadId;
  if (id == 0) return;
  reapLeases(id, now);
  logMarkSettle(id);
  atomic.and<u32>(H_THREAD_BITS + ((<usize>id >> 5) << 2), ~(<u32>1 << (id & 31)));
  setThreadId(0);
}

export function currentThreadId(): u32 {
  return threadId;
}

/** Shared structures created once by the initialising instance. */
function initShared(): void {
  if (!tableInit() || !queuesInit() || !delaysInit() || !dedupInit()) unreachable();
}

export { topicAcquire, topicRelease, topicCount } from "./table";
export { queueConfigure, queueSettingsInto } from "./queues";
export { consumerAttach, consumerDetach } from "./consumers";
export {
  lastWaiter, waiterCancel, waiterReturn, waiterRelease, mailboxTake, mailboxSignalAddress, waiterNext, waiterToken,
} from "./waiters";
export { leaseExpire, leaseNextDeadline, leaseCount, ownerNew, ownerCount, ownerEnd, ownerFree } from "./leases";
export { delaysDue, delaysNextDue, delaysCount } from "./delays";
export { dedupSweep, dedupCount } from "./dedup";
export { eventCount } from "./stats";
export { reapThread } from "./reap";

// ── Whole operations by name: one JS -> Wasm call per request ─────────────────────────
// The by-name operations hold the segment lock (table.ts topicFindLocked); when nobody
// holds a reference to the topic they also skip its lock (topic.ts, `exclusive`).
// Names are (pointer, length) pairs in this memory, 1..255 bytes (checked by the codec or
// by the caller). Statuses are 0 or a negated wire error code (status.ts).

/** Pushes larger than this take a topic reference instead of holding the segment lock. */
// @ts-ignore: decorator
@inline const FAST_PATH_MAX_BYTES: usize = 64 * 1024;

// @ts-ignore: decorator
@inline function unreferenced(topic: usize): bool {
  return atomic.load<i32>(topic + T_USERS) == 0;
}

/** PUSH: stores one message (creating the topic). */
export function opPush(q: usize, ql: usize, t: usize, tl: usize, data: usize, len: usize): i32 {
  if (len <= FAST_PATH_MAX_BYTES) {
    let topic = topicFindLocked(q, ql, t, tl, true);
    if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
    let status = topicPush(topic, data, len, unreferenced(topic));
    topicUnlock(topic);
    return status;
  }
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicPush(topic, data, len, false);
  topicRelease(topic);
  return status;
}

/** PUSH_MANY: stores `count` wire records filling `bytes` exactly (validated by the codec), all or nothing. */
export function opPushRecords(q: usize, ql: usize, t: usize, tl: usize, records: usize, bytes: usize, count: u32): i32 {
  if (bytes <= FAST_PATH_MAX_BYTES) {
    let topic = topicFindLocked(q, ql, t, tl, true);
    if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
    let status = topicPushWire(topic, records, bytes, count, unreferenced(topic));
    topicUnlock(topic);
    return status;
  }
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicPushWire(topic, records, bytes, count, false);
  topicRelease(topic);
  return status;
}

/**
 * PUSH_EX / PUSH_MANY_EX: a push with options. `records` != 0: `count` wire records
 * filling `bytes`; else one message (data, len). `delayMs` > 0: ready at now + delayMs.
 * `dedupLen` > 0 (one message only): stores nothing, and succeeds, when the same dedupId
 * was pushed to this queue and topic within the queue's dedupWindowMs.
 */
export function opPushEx(
  q: usize, ql: usize, t: usize, tl: usize, records: usize, bytes: usize, count: u32, data: usize, len: usize,
  delayMs: f64, dedup: usize, dedupLen: usize, now: f64, scratch: usize,
): i32 {
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let entry: usize = 2;
  let window: f64 = 0;
  if (dedupLen > 0) {
    window = load<f64>(<usize>load<u32>(topic + T_QUEUE) + Q_DEDUP_WINDOW_MS);
    entry = dedupBegin(q, ql, t, tl, dedup, dedupLen, now, window, scratch);
    if (entry == DEDUP_SEEN || entry == DEDUP_NO_MEMORY) {
      dedupEnd(load<u32>(scratch), entry, true);
      topicRelease(topic);
      // The "stored" this duplicate is answered with is the first push's: wait for its log.
      if (entry == DEDUP_SEEN) journalDependsOnPeers();
      return entry == DEDUP_SEEN ? 0 : E_NO_MEMORY;
    }
  }
  // The push's PUSH record carries the dedupId (journal.ts): the window outlives a restart.
  if (dedupLen > 0) journalDedupNext(dedup, dedupLen, now + window);
  let status: i32;
  if (delayMs > 0) status = topicPushDelayed(topic, records, bytes, records == 0 ? 1 : count, data, len, now + delayMs);
  else if (records != 0) status = topicPushWire(topic, records, bytes, count, false);
  else status = topicPush(topic, data, len, false);
  if (dedupLen > 0) {
    journalDedupClear();
    dedupEnd(load<u32>(scratch), entry, status == 0);
  }
  topicRelease(topic);
  return status;
}

/** Recovery: remembers dedupId (d, dl) of queue and topic until `expiresAt` (a DEDUP record). 0, or E_NO_MEMORY. */
export function restoreDedup(q: usize, ql: usize, t: usize, tl: usize, d: usize, dl: usize, expiresAt: f64, now: f64): i32 {
  return dedupRestore(q, ql, t, tl, d, dl, expiresAt, now) ? 0 : E_NO_MEMORY;
}

/** RETURN: puts `count` stored records back at the front of the topic, in order. */
export function opReturnRecords(q: usize, ql: usize, t: usize, tl: usize, records: usize, bytes: usize, count: u32): i32 {
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicReturnStored(topic, records, bytes, count, false);
  topicRelease(topic);
  return status;
}

/** LENGTH: ready messages in the topic (0 if it does not exist; never creates it). */
export function opLength(q: usize, ql: usize, t: usize, tl: usize): u32 {
  let topic = topicFindLocked(q, ql, t, tl, false);
  if (topic < 2) return 0;
  let n = atomic.load<u32>(topic + T_LENGTH);
  topicUnlock(topic);
  return n;
}

/** STATS: writes u32 ready, delayed, inFlight at `out` (zeros if the topic does not exist). */
export function opStats(q: usize, ql: usize, t: usize, tl: usize, out: usize): void {
  let topic = topicFindLocked(q, ql, t, tl, false);
  if (topic < 2) {
    memory.fill(out, 0, 12);
    return;
  }
  topicStatsInto(topic, out);
  topicUnlock(topic);
}

/**
 * Pops from `topic` into a records frame (`op` = MESSAGES or DELIVER, `reqId`) appended to
 * writer `w`. With `waiterToken` != 0 an empty topic parks a waiter instead. `owner` != 0:
 * a leased pop (leases for `leaseMs`, 0 = the queue's default, from `now`; the frame
 * carries leased records). Returns the record count (> 0, frame written), 0 (nothing
 * written: empty, or parked when `waiterToken` != 0 - see lastWaiter()), or a negative
 * status.
 */
export function topicPopFrame(
  topic: usize, w: usize, op: u32, reqId: u32, max: u32, maxBytes: usize, token: u32, waiterToken: u32,
  owner: usize, leaseMs: f64, now: f64,
): i32 {
  return popFrame(topic, w, op, reqId, max, maxBytes, token, waiterToken, false, owner, leaseMs, now);
}

// @ts-ignore: decorator
@inline function popFrame(
  topic: usize, w: usize, op: u32, reqId: u32, max: u32, maxBytes: usize, token: u32, waiterToken: u32, exclusive: bool,
  owner: usize, leaseMs: f64, now: f64,
): i32 {
  let mark = encodeRecordsBegin(w, op, reqId, owner != 0 ? FLAG_LEASED : 0);
  if (mark < 0) return E_NO_MEMORY;
  let n = topicPop(topic, w, max, maxBytes, token, waiterToken, exclusive, owner, leaseMs, now);
  if (n > 0) encodeRecordsEnd(w, mark, <u32>n);
  else writerTruncate(w, <u32>mark);
  return n;
}

/** POP / POP_MANY / POP_LEASED by name: see topicPopFrame. Creates the topic only to park on it. */
export function opPop(
  w: usize, op: u32, reqId: u32, q: usize, ql: usize, t: usize, tl: usize, max: u32, maxBytes: usize, token: u32, waiterToken: u32,
  owner: usize, leaseMs: f64, now: f64,
): i32 {
  // Pops run under the segment lock (fast path); a pop that parks takes its own reference
  // for the waiter, and a leased pop one per lease.
  let topic = topicFindLocked(q, ql, t, tl, waiterToken != 0);
  if (topic == 0) return 0;
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let n = popFrame(topic, w, op, reqId, max, maxBytes, token, waiterToken, unreferenced(topic), owner, leaseMs, now);
  topicUnlock(topic);
  return n;
}

/**
 * Writes a handed waiter's message, plus up to `moreMax` more from its topic, as a records
 * frame into `w` (leased when `owner` != 0). Returns the count (>= 1) or a negative
 * status. Release the waiter after (or return it on failure).
 */
export function waiterDeliverFrame(
  waiter: usize, w: usize, op: u32, reqId: u32, moreMax: u32, maxBytes: usize, token: u32, owner: usize, leaseMs: f64, now: f64,
): i32 {
  let mark = encodeRecordsBegin(w, op, reqId, owner != 0 ? FLAG_LEASED : 0);
  if (mark < 0) return E_NO_MEMORY;
  let n = owner != 0
    ? waiterDeliverLeased(waiter, w, moreMax, maxBytes, token, owner, leaseMs, now)
    : waiterDeliverInto(waiter, w, moreMax, maxBytes, token);
  if (n > 0) encodeRecordsEnd(w, mark, <u32>n);
  else writerTruncate(w, <u32>mark);
  return n;
}

/**
 * SETTLE: settles `count` entries (16 bytes each: u64 lease, u32 kind, u32 arg; validated
 * by the codec) for connection `connection`, and writes the SETTLED reply (one status
 * byte per entry, 0 = done, else a wire error code) into `w`. 1, or 0 when out of memory
 * for the reply (every entry is settled all the same).
 */
export function opSettle(w: usize, reqId: u32, entries: usize, count: u32, connection: u32, now: f64): i32 {
  let p = encodeSettledBegin(w, reqId, count);
  for (let i: u32 = 0; i < count; i++) {
    let e = entries + (<usize>i << 4);
    let status = leaseSettle(load<u64>(e), load<u32>(e, 8), <f64>load<u32>(e, 12), connection, now);
    if (p != 0) store<u8>(p + <usize>i, <u8>(-status));
  }
  return p != 0 ? 1 : 0;
}

// ── Durability (assembly/journal.ts, src/engine/durability.ts) ───────────────────────

export { journalSet, journalLength, journalData, journalTakeLost, logMarksBehind, logMarksAddress } from "./journal";

/** Every topic created from now on starts its ids at `floor` or above (recovery: above every id in the log). */
export function setIdFloor(floor: f64): void {
  raiseIdFloor(<u64>floor);
}

/** Whether queue `q` is durable on this broker (journaled); false when it has no record yet and no data directory. */
export function opQueueDurable(q: usize, ql: usize): bool {
  let rec = queueRetain(q, ql);
  if (rec == 0) return false;
  let durable = queueIsDurable(rec);
  queueRelease(rec);
  return durable;
}

/** Recovery: appends ready stored records to a topic (created), not journaled again. 0 or E_NO_MEMORY. */
export function restoreReady(q: usize, ql: usize, t: usize, tl: usize, records: usize, bytes: usize, count: u32): i32 {
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicRestoreReady(topic, records, bytes, count);
  topicRelease(topic);
  return status;
}

/** Recovery: delayed stored records with their due times (f64 each at `dues`). 0 or E_NO_MEMORY. */
export function restoreDelayed(q: usize, ql: usize, t: usize, tl: usize, records: usize, bytes: usize, count: u32, dues: usize): i32 {
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicRestoreDelayed(topic, records, bytes, count, dues);
  topicRelease(topic);
  return status;
}

export { threadMetrics, setThreadMetrics, topicsLargest, messageTotals } from "./stats";
export * from "./codec";
