// The core's exported entry points. Everything JS calls is here or re-exported from here.
//
// Calls are batch-oriented where it matters: the codec decodes a whole socket chunk per
// call, pushMany/popMany move many messages per call, and pops write straight into a
// connection's output buffer (no copy through JS).

import {
  H_MAGIC, H_INIT_STATE, H_LAYOUT, H_THREAD_BITS, HEADER_MAGIC, LAYOUT_VERSION, MAX_THREADS, HEAP_START,
  threadSlot, SLOT_METRICS,
} from "./layout";
import { heapInit } from "./alloc";
import { threadId, setThreadId } from "./thread";
import { tableInit, topicAcquire, topicRelease, topicFindLocked, topicUnlock, TOPIC_NO_MEMORY, T_LENGTH, T_USERS } from "./table";
import { setTopicExclusive, topicPush, topicPushRecords, topicReturnRecords, topicPop, topicPopOrPark, waiterDeliverInto, E_NO_MEMORY } from "./waiters";
import { encodeRecordsBegin, encodeRecordsEnd, writerTruncate } from "./codec";

export { alloc, free, allocSize, bytesInUse, blocksInUse, bytesReserved, setQueueLimit, queueBytes } from "./alloc";

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
        setThreadId(id);
        return <i32>id;
      }
    }
  }
  return E_THREADS;
}

/** Gives this instance's thread id back. */
export function detach(): void {
  let id = threadId;
  if (id == 0) return;
  atomic.and<u32>(H_THREAD_BITS + ((<usize>id >> 5) << 2), ~(<u32>1 << (id & 31)));
  setThreadId(0);
}

export function currentThreadId(): u32 {
  return threadId;
}

/** Shared structures created once by the initialising instance. */
function initShared(): void {
  if (!tableInit()) unreachable();
}

export { topicAcquire, topicRelease, topicCount } from "./table";
export {
  consumerAttach, consumerDetach, lastWaiter, waiterCancel, waiterReturn, waiterRelease,
  mailboxTake, mailboxSignalAddress, waiterNext, waiterToken, reapThread,
} from "./waiters";

// ── Whole operations by name: one JS -> Wasm call per request ─────────────────────────
// The by-name operations hold the segment lock (table.ts topicFindLocked); when nobody
// holds a reference to the topic they also skip its lock (waiters.ts setTopicExclusive).
// Names are (pointer, length) pairs in this memory, 1..255 bytes (checked by the codec or
// by the caller). Statuses are 0 or a negated wire error code (docs/protocol.md).

/** Pushes larger than this take a topic reference instead of holding the segment lock. */
// @ts-ignore: decorator
@inline const FAST_PATH_MAX_BYTES: usize = 64 * 1024;

/** PUSH: stores one message (creating the topic). */
export function opPush(q: usize, ql: usize, t: usize, tl: usize, data: usize, len: usize): i32 {
  if (len <= FAST_PATH_MAX_BYTES) {
    let topic = topicFindLocked(q, ql, t, tl, true);
    if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
    setTopicExclusive(atomic.load<i32>(topic + T_USERS) == 0);
    let status = topicPush(topic, data, len);
    setTopicExclusive(false);
    topicUnlock(topic);
    return status;
  }
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicPush(topic, data, len);
  topicRelease(topic);
  return status;
}

/** PUSH_MANY: stores `count` records filling `bytes` exactly (validated by the codec). */
export function opPushRecords(q: usize, ql: usize, t: usize, tl: usize, records: usize, bytes: usize, count: u32): i32 {
  if (bytes <= FAST_PATH_MAX_BYTES) {
    let topic = topicFindLocked(q, ql, t, tl, true);
    if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
    setTopicExclusive(atomic.load<i32>(topic + T_USERS) == 0);
    let status = topicPushRecords(topic, records, bytes, count);
    setTopicExclusive(false);
    topicUnlock(topic);
    return status;
  }
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicPushRecords(topic, records, bytes, count);
  topicRelease(topic);
  return status;
}

/** RETURN: puts `count` records back at the front of the topic, in order. */
export function opReturnRecords(q: usize, ql: usize, t: usize, tl: usize, records: usize, bytes: usize, count: u32): i32 {
  let topic = topicAcquire(q, ql, t, tl, true);
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  let status = topicReturnRecords(topic, records, bytes, count);
  topicRelease(topic);
  return status;
}

/** LENGTH: messages waiting in the topic (0 if it does not exist; never creates it). */
export function opLength(q: usize, ql: usize, t: usize, tl: usize): u32 {
  let topic = topicFindLocked(q, ql, t, tl, false);
  if (topic < 2) return 0;
  let n = atomic.load<u32>(topic + T_LENGTH);
  topicUnlock(topic);
  return n;
}

/**
 * Pops from `topic` into a records frame (`op` = MESSAGES or DELIVER, `reqId`) appended to
 * writer `w`. With `waiterToken` != 0 an empty topic parks a waiter instead. Returns the
 * record count (> 0, frame written), 0 (nothing written: empty, or parked when
 * `waiterToken` != 0 - see lastWaiter()), or a negative status.
 */
export function topicPopFrame(topic: usize, w: usize, op: u32, reqId: u32, max: u32, maxBytes: usize, token: u32, waiterToken: u32): i32 {
  let mark = encodeRecordsBegin(w, op, reqId);
  if (mark < 0) return E_NO_MEMORY;
  let n = waiterToken != 0
    ? topicPopOrPark(topic, w, max, maxBytes, token, waiterToken)
    : topicPop(topic, w, max, maxBytes, token);
  if (n > 0) encodeRecordsEnd(w, mark, <u32>n);
  else writerTruncate(w, <u32>mark);
  return n;
}

/** POP / POP_MANY by name: see topicPopFrame. Creates the topic only to park on it. */
export function opPop(w: usize, op: u32, reqId: u32, q: usize, ql: usize, t: usize, tl: usize, max: u32, maxBytes: usize, token: u32, waiterToken: u32): i32 {
  // Pops run under the segment lock (fast path); a pop that parks takes its own reference
  // for the waiter inside topicPopOrPark.
  let topic = topicFindLocked(q, ql, t, tl, waiterToken != 0);
  if (topic == 0) return 0;
  if (topic == TOPIC_NO_MEMORY) return E_NO_MEMORY;
  setTopicExclusive(atomic.load<i32>(topic + T_USERS) == 0);
  let n = topicPopFrame(topic, w, op, reqId, max, maxBytes, token, waiterToken);
  setTopicExclusive(false);
  topicUnlock(topic);
  return n;
}

/**
 * Writes a handed waiter's message, plus up to `moreMax` more from its topic, as a records
 * frame into `w`. Returns the count (>= 1) or a negative status. Release the waiter after.
 */
export function waiterDeliverFrame(waiter: usize, w: usize, op: u32, reqId: u32, moreMax: u32, maxBytes: usize, token: u32): i32 {
  let mark = encodeRecordsBegin(w, op, reqId);
  if (mark < 0) return E_NO_MEMORY;
  let n = waiterDeliverInto(waiter, w, moreMax, maxBytes, token);
  if (n > 0) encodeRecordsEnd(w, mark, <u32>n);
  else writerTruncate(w, <u32>mark);
  return n;
}

export { threadMetrics, setThreadMetrics, topicsLargest } from "./stats";
export * from "./codec";
