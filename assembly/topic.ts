// Operations on one topic, under its lock: push, pop, return, leased pop, and where a
// message goes when it becomes ready again (a lease ended, a delay is due). This is the
// one place that combines the topic's structures - the FIFO (fifo.ts), parked waiters
// (waiters.ts), consumers (consumers.ts), leases (leases.ts), delayed messages (delays.ts)
// - with its queue's settings (queues.ts: maxLength, overflow, leaseMs, dead letters).
//
// `exclusive` (an argument, never per-thread state): the by-name fast path in index.ts
// holds the topic's segment lock and has seen `users == 0`; then no other thread can reach
// this topic - references are taken under that segment lock or from an existing
// reference, and there is none - so the topic lock is redundant and skipped, saving two
// atomic read-modify-writes per request. Everyone else passes false.
//
// Counting (topic lock held): `length` = ready records in the FIFO, `delayed` = records in
// the delay heap for this topic, `inFlight` = leased records. maxLength bounds ready +
// delayed; in-flight messages and messages coming back (returns, expired leases, due
// delays) are never refused, so nothing already accepted is lost to the limit.

import { queueAlloc, queueFree } from "./alloc";
import { lock, unlock } from "./sync";
import {
  T_LOCK, T_LENGTH, T_DELAYED, T_IN_FLIGHT, T_QUEUE, T_PUSHED, T_WAITER_HEAD, T_WAITER_TAIL, T_QUEUE_LEN, T_TOPIC_LEN, T_NAMES,
  topicRetain, topicRelease, topicAcquire, TOPIC_NO_MEMORY,
} from "./table";
import { Q_MAX_LENGTH, Q_LEASE_MS, Q_DROP_OLDEST, queueFlags, queueDeadLetterInto, queueNameOf, queueNameLength } from "./queues";
import {
  fifoAppend, fifoAppendWire, fifoAppendRecord, fifoPrepend, fifoPrependStored, fifoPopInto, fifoTakeOne, fifoDropOldest,
  fifoPeekSize, fifoCheck, nextId, fifoAppendStored,
} from "./fifo";
import {
  hasWaiters, handToOldest, chainAppend, mailboxPush, mailboxPushChain, waiterPark, waiterTakeMessage, waiterMessage, waiterTopic,
} from "./waiters";
import { excluded } from "./consumers";
import { leaseReserve, leaseCreate } from "./leases";
import { delaysInsert } from "./delays";
import { countEvent, EVENT_DROPPED, EVENT_DEAD_LETTERED } from "./stats";
import {
  RECORD_HEADER, R_LEN, R_META, R_ID, PUSH_RECORD_HEADER, LEASED_RECORD_HEADER, LR_LEASE, META_DEAD_LETTER,
  recordSize, putRecordHeader, delivered,
} from "./record";
import { writerEnsure, writerAdvance, writerLength, writerData } from "./codec";
import { E_EXCLUSIVE, E_NO_MEMORY, E_QUEUE_FULL } from "./status";
import { alloc, free } from "./alloc";
import { invariant } from "./debug";
import {
  journaled, journalPushOne, journalPushWire, journalPushStored, journalPushBlocks, journalUndo, journalMeta,
  deliveredBegin, deliveredAdd, deliveredEnd,
  journalRemoveOne, journalRemoveRecords, removeBegin, removeEnd,
} from "./journal";

// @ts-ignore: decorator
@inline function lockTopic(topic: usize, exclusive: bool): void {
  if (!exclusive) lock(topic + T_LOCK);
}

// @ts-ignore: decorator
@inline function unlockTopic(topic: usize, exclusive: bool): void {
  fifoCheck(topic); // debug build: the FIFO's invariants hold whenever the lock is let go
  if (!exclusive) unlock(topic + T_LOCK);
}

// @ts-ignore: decorator
@inline function queueOf(topic: usize): usize {
  return <usize>load<u32>(topic + T_QUEUE);
}

/** Parked waiters, counting at most `limit`. */
function waiterCount(topic: usize, limit: u32): u32 {
  let n: u32 = 0;
  let w = <usize>load<u32>(topic + T_WAITER_HEAD);
  while (w != 0 && n < limit) {
    n++;
    w = <usize>load<u32>(w);
  }
  return n;
}

/**
 * Admits `count` more waiting (ready or delayed) messages under the queue's maxLength
 * (topic lock held). With overflow 'drop-oldest' the oldest ready messages are dropped
 * (and counted) to make room, if there are enough of them. 0 or E_QUEUE_FULL. The common
 * case - room - is inlined into every push.
 */
// @ts-ignore: decorator
@inline function admit(topic: usize, count: u32): i32 {
  if (count == 0) return 0;
  let queue = queueOf(topic);
  let maxLength = load<f64>(queue + Q_MAX_LENGTH);
  let waiting = <f64>load<u32>(topic + T_LENGTH) + <f64>load<u32>(topic + T_DELAYED);
  if (waiting + <f64>count <= maxLength) return 0;
  return admitOver(topic, queue, count, maxLength, waiting);
}

/** admit() past maxLength: drop the oldest (overflow 'drop-oldest') or refuse. */
// @ts-ignore: decorator
@noinline function admitOver(topic: usize, queue: usize, count: u32, maxLength: f64, waiting: f64): i32 {
  let length = load<u32>(topic + T_LENGTH);
  if ((queueFlags(queue) & Q_DROP_OLDEST) != 0 && <f64>count <= maxLength) {
    let excess = waiting + <f64>count - maxLength;
    if (excess <= <f64>length) {
      let journal = journaled(topic);
      if (journal) removeBegin(topic);
      let dropped = fifoDropOldest(topic, <u32>excess, journal);
      if (journal) removeEnd();
      countEvent(EVENT_DROPPED, dropped);
      return 0;
    }
  }
  return E_QUEUE_FULL;
}

/** A new stored-record block holding `len` bytes of `data` (queue memory); 0 when out of memory. */
// @ts-ignore: decorator
@inline function newRecord(data: usize, len: usize, meta: u32, id: u64): usize {
  let block = queueAlloc(RECORD_HEADER + len);
  if (block != 0) {
    putRecordHeader(block, len, meta, id);
    memory.copy(block + RECORD_HEADER, data, len);
  }
  return block;
}

// ── Push ───────────────────────────────────────────────────────────────────────────────

/** Pushes one message: to the oldest parked waiter if any, else into the FIFO. 0, E_QUEUE_FULL or E_NO_MEMORY. */
export function topicPush(topic: usize, data: usize, len: usize, exclusive: bool): i32 {
  lockTopic(topic, exclusive);
  let id = load<u64>(topic + T_PUSHED);
  if (hasWaiters(topic)) {
    let block = newRecord(data, len, 0, id);
    if (block == 0) {
      unlockTopic(topic, exclusive);
      return E_NO_MEMORY;
    }
    nextId(topic);
    let waiter = handToOldest(topic, block);
    unlockTopic(topic, exclusive);
    // Journaled from the caller's copy: the handed block may be freed by the waiter's thread by now.
    if (journaled(topic)) journalPushOne(topic, data, len, 0, id);
    mailboxPush(waiter);
    return 0;
  }
  let status = admit(topic, 1);
  if (status == 0 && !fifoAppend(topic, data, len, exclusive)) status = E_NO_MEMORY;
  unlockTopic(topic, exclusive);
  // The caller's segment lock or reference keeps the topic (and its names) alive.
  if (status == 0 && journaled(topic)) journalPushOne(topic, data, len, 0, id);
  return status;
}

/**
 * Pushes `count` wire records (validated by the codec, filling `bytes` exactly): the
 * oldest go to parked waiters one each, the rest into the FIFO in order. All or nothing:
 * on E_QUEUE_FULL or E_NO_MEMORY nothing is stored and no waiter is woken.
 */
export function topicPushWire(topic: usize, records: usize, bytes: usize, count: u32, exclusive: bool): i32 {
  if (count == 0) return 0;
  lockTopic(topic, exclusive);
  let handCount = waiterCount(topic, count);
  let status = admit(topic, count - handCount);
  if (status != 0) {
    unlockTopic(topic, exclusive);
    return status;
  }
  let firstId = load<u64>(topic + T_PUSHED);
  let handed: usize = 0;
  let handedTail: usize = 0;
  let p = records;
  for (let i: u32 = 0; i < handCount; i++) {
    let len = <usize>load<u32>(p);
    let block = newRecord(p + PUSH_RECORD_HEADER, len, 0, nextId(topic));
    if (block == 0) { status = E_NO_MEMORY; break; }
    let waiter = handToOldest(topic, block);
    handed = chainAppend(handed, handedTail, waiter);
    handedTail = waiter;
    p += PUSH_RECORD_HEADER + len;
  }
  if (status == 0 && p < records + bytes && !fifoAppendWire(topic, p, records + bytes - p, count - handCount)) status = E_NO_MEMORY;
  if (status != 0) {
    // Undo: the handed waiters are only in our local chain (nobody else has seen them):
    // park them again at the head, in order, and give the ids back.
    unhand(topic, handed, handedTail);
    store<u64>(topic + T_PUSHED, firstId);
    handed = 0;
  }
  unlockTopic(topic, exclusive);
  if (status == 0 && journaled(topic)) journalPushWire(topic, records, bytes, count, firstId);
  mailboxPushChain(handed);
  return status;
}

/** Puts a chain of just-handed waiters back at the head of the waiter list, parked again. */
function unhand(topic: usize, head: usize, tail: usize): void {
  if (head == 0) return;
  for (let w = head; w != 0; w = <usize>load<u32>(w)) {
    queueFree(waiterTakeMessage(w));
    atomic.store<i32>(w + 12, 1); // PARKED (waiters.ts W_STATE)
  }
  let first = load<u32>(topic + T_WAITER_HEAD);
  store<u32>(tail, first);
  atomic.store<u32>(topic + T_WAITER_HEAD, <u32>head);
  if (first == 0) store<u32>(topic + T_WAITER_TAIL, <u32>tail);
}

/**
 * Delayed push of `count` wire records (or of one message when `records` is 0: then
 * (data, len)), ready at `due` (ms since the epoch). Counts against maxLength at once.
 * All or nothing, like topicPushWire.
 */
export function topicPushDelayed(topic: usize, records: usize, bytes: usize, count: u32, data: usize, len: usize, due: f64): i32 {
  if (count == 0) return 0;
  // Record blocks first (no lock held), ids filled in under the lock.
  let blocks = alloc(<usize>count << 2);
  if (blocks == 0) return E_NO_MEMORY;
  let made: u32 = 0;
  let p = records;
  while (made < count) {
    let block: usize;
    if (records == 0) {
      block = newRecord(data, len, 0, 0);
    } else {
      let n = <usize>load<u32>(p);
      block = newRecord(p + PUSH_RECORD_HEADER, n, 0, 0);
      p += PUSH_RECORD_HEADER + n;
    }
    if (block == 0) break;
    store<u32>(blocks + (<usize>made << 2), <u32>block);
    made++;
  }
  let status: i32 = made < count ? E_NO_MEMORY : 0;
  if (status == 0) {
    lock(topic + T_LOCK);
    status = admit(topic, count);
    if (status == 0) {
      for (let i: u32 = 0; i < count; i++) store<u64>(<usize>load<u32>(blocks + (<usize>i << 2)), nextId(topic), R_ID);
      atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) + count);
      for (let i: u32 = 0; i < count; i++) topicRetain(topic); // one reference per delayed message
    }
    unlock(topic + T_LOCK);
    // Journaled before the heap has them: once there, a sweep on another thread may free them.
    let mark: i64 = status == 0 && journaled(topic) ? journalPushBlocks(topic, blocks, count, due) : -1;
    if (status == 0 && !delaysInsert(topic, blocks, count, due)) {
      journalUndo(mark);
      lock(topic + T_LOCK);
      atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) - count);
      unlock(topic + T_LOCK);
      for (let i: u32 = 0; i < count; i++) topicRelease(topic);
      status = E_NO_MEMORY;
    }
  }
  if (status != 0) for (let i: u32 = 0; i < made; i++) queueFree(<usize>load<u32>(blocks + (<usize>i << 2)));
  free(blocks);
  return status;
}

/**
 * RETURN: puts stored records a consumer received but did not consume back at the front
 * of the topic, in order; parked waiters (the topic was empty) get them first. A RETURN
 * with no records changes nothing. 0 or E_NO_MEMORY.
 */
export function topicReturnStored(topic: usize, records: usize, bytes: usize, count: u32, exclusive: bool): i32 {
  if (count == 0) return 0;
  lockTopic(topic, exclusive);
  let durable = journaled(topic);
  let firstId = load<u64>(topic + T_PUSHED);
  if (durable) {
    // Their removal is in the log already (they were popped), and a removal outlives any
    // push of the same id at recovery (docs/durability.md): so they come back with new ids.
    // (The records are the caller's buffer: the decoder's, this thread's.)
    let p = records;
    for (let i: u32 = 0; i < count; i++) {
      store<u64>(p, nextId(topic), R_ID);
      p += recordSize(p);
    }
  }
  if (!fifoPrependStored(topic, records, bytes, count)) {
    if (durable) store<u64>(topic + T_PUSHED, firstId);
    unlockTopic(topic, exclusive);
    return E_NO_MEMORY;
  }
  if (durable) journalPushStored(topic, records, bytes, 0);
  let handed = handFromFifo(topic);
  unlockTopic(topic, exclusive);
  mailboxPushChain(handed);
  return 0;
}

/** While waiters are parked and the FIFO holds messages, hands them over (topic lock held). Returns the chain. */
function handFromFifo(topic: usize): usize {
  let handed: usize = 0;
  let handedTail: usize = 0;
  while (hasWaiters(topic) && load<u32>(topic + T_LENGTH) != 0) {
    let block = fifoTakeOne(topic);
    if (block == 0) break; // out of memory: the message stays in the FIFO
    let waiter = handToOldest(topic, block);
    handed = chainAppend(handed, handedTail, waiter);
    handedTail = waiter;
  }
  return handed;
}

// ── Pop ────────────────────────────────────────────────────────────────────────────────

/**
 * Pops up to `max` records into writer `w` (at most `maxBytes`, the first always whole).
 * `token` identifies the caller's subscription (0 for a plain pop): while an exclusive
 * subscription holds the topic, only its token may pop. With `waiterToken` != 0 an empty
 * topic parks a waiter for (this thread, waiterToken) in the same critical section, so no
 * push can be missed. `owner` != 0: a leased pop - each record is leased to `owner`
 * (leases.ts) for `leaseMs` (0: the queue's default) from `now` and written as a leased
 * record with its handle; every lease holds a topic reference and counts in `inFlight`.
 * Returns the count (> 0), 0 (empty, or parked: see lastWaiter()), E_EXCLUSIVE or
 * E_NO_MEMORY.
 */
export function topicPop(
  topic: usize, w: usize, max: u32, maxBytes: usize, token: u32, waiterToken: u32, exclusive: bool,
  owner: usize, leaseMs: f64, now: f64,
): i32 {
  lockTopic(topic, exclusive);
  if (excluded(topic, token)) {
    unlockTopic(topic, exclusive);
    return E_EXCLUSIVE;
  }
  let n: i32 = 0;
  if (load<u32>(topic + T_LENGTH) != 0) {
    if (owner == 0) {
      let from = writerLength(w);
      n = <i32>fifoPopInto(topic, w, max, maxBytes, exclusive);
      if (n > 0 && journaled(topic)) journalRemoveRecords(topic, writerData(w) + <usize>from, <u32>n);
    } else {
      deliveredBegin(topic);
      n = leaseFromFifo(topic, w, max, maxBytes, owner, leaseLength(topic, leaseMs), now, 0);
      deliveredEnd();
    }
    if (n == 0) n = E_NO_MEMORY;
  } else if (waiterToken != 0 && waiterPark(topic, waiterToken) == 0) {
    n = E_NO_MEMORY;
  }
  unlockTopic(topic, exclusive);
  return n;
}

// @ts-ignore: decorator
@inline function leaseLength(topic: usize, leaseMs: f64): f64 {
  return leaseMs > 0 ? leaseMs : load<f64>(queueOf(topic) + Q_LEASE_MS);
}

/**
 * Takes up to `max` records from the FIFO as leases, writing each as a leased record
 * (topic lock held). `written` bytes are already in the reply. Every step that can fail
 * (writer room, lease slot, record block) is checked before the record leaves the FIFO.
 */
function leaseFromFifo(topic: usize, w: usize, max: u32, maxBytes: usize, owner: usize, leaseMs: f64, now: f64, written: usize): i32 {
  let n: u32 = 0;
  while (n < max && load<u32>(topic + T_LENGTH) != 0) {
    let size = fifoPeekSize(topic) + (LEASED_RECORD_HEADER - RECORD_HEADER);
    if ((n > 0 || written > 0) && written + size > maxBytes) break;
    if (writerEnsure(w, <u32>size) == 0 || !leaseReserve()) break;
    let block = fifoTakeOne(topic);
    if (block == 0) break;
    writeLeased(w, block, topic, owner, leaseMs, now);
    written += size;
    n++;
  }
  return <i32>n;
}

/**
 * Leases stored-record `block` (now owned by the lease) and writes it to `w` as a leased
 * record. The caller has checked the writer's room and reserved a lease slot.
 */
function writeLeased(w: usize, block: usize, topic: usize, owner: usize, leaseMs: f64, now: f64): void {
  store<u32>(block, delivered(load<u32>(block, R_META)), R_META);
  deliveredAdd(load<u64>(block, R_ID), load<u32>(block, R_META)); // the caller began the DELIVERED record
  atomic.store<u32>(topic + T_IN_FLIGHT, load<u32>(topic + T_IN_FLIGHT) + 1);
  topicRetain(topic);
  let lease = leaseCreate(block, topic, owner, leaseMs, now);
  let len = <usize>load<u32>(block, R_LEN);
  let dst = writerEnsure(w, <u32>(LEASED_RECORD_HEADER + len));
  invariant(dst != 0);
  memory.copy(dst, block, RECORD_HEADER);
  store<u64>(dst, lease, LR_LEASE);
  memory.copy(dst + LEASED_RECORD_HEADER, block + RECORD_HEADER, len);
  writerAdvance(w, <u32>(LEASED_RECORD_HEADER + len));
}

/**
 * Writes a handed waiter's message into writer `w` as one stored record (one more
 * delivery), then up to `moreMax` further records popped from its topic (within
 * `maxBytes`). Returns the record count. The waiter stays allocated: release it after.
 */
export function waiterDeliverInto(waiter: usize, w: usize, moreMax: u32, maxBytes: usize, token: u32): i32 {
  let message = waiterMessage(waiter);
  let size = recordSize(message);
  let dst = writerEnsure(w, <u32>size);
  if (dst == 0) return E_NO_MEMORY;
  memory.copy(dst, message, size);
  store<u32>(dst, delivered(load<u32>(dst, R_META)), R_META);
  writerAdvance(w, <u32>size);
  // (The waiter's reference keeps its topic alive.) The removal is journaled here, at
  // delivery, not at the hand-over: a handed message that is never delivered goes back.
  if (journaled(waiterTopic(waiter))) journalRemoveOne(waiterTopic(waiter), load<u64>(message, R_ID));
  if (moreMax == 0 || size >= maxBytes) return 1;
  let more = topicPop(waiterTopic(waiter), w, moreMax, maxBytes - size, token, 0, false, 0, 0, 0);
  return more > 0 ? 1 + more : 1;
}

/** waiterDeliverInto for a leased pop or subscription: the handed message becomes a lease. */
export function waiterDeliverLeased(waiter: usize, w: usize, moreMax: u32, maxBytes: usize, token: u32, owner: usize, leaseMs: f64, now: f64): i32 {
  let topic = waiterTopic(waiter);
  let size = recordSize(waiterMessage(waiter)) + (LEASED_RECORD_HEADER - RECORD_HEADER);
  if (writerEnsure(w, <u32>size) == 0 || !leaseReserve()) return E_NO_MEMORY;
  let length = leaseLength(topic, leaseMs);
  deliveredBegin(topic);
  writeLeased(w, waiterTakeMessage(waiter), topic, owner, length, now);
  if (moreMax == 0 || size >= maxBytes) {
    deliveredEnd();
    return 1;
  }
  lock(topic + T_LOCK);
  let more: i32 = excluded(topic, token) ? 0 : leaseFromFifo(topic, w, moreMax, maxBytes, owner, length, now, size);
  unlock(topic + T_LOCK);
  deliveredEnd();
  return 1 + more;
}

// ── Messages coming back ───────────────────────────────────────────────────────────────

/**
 * Record `block` becomes ready again at the front of its topic (a lease ended without
 * ack): to the oldest parked waiter, else the FIFO's front. `fromFlight`: it was leased
 * (inFlight is decremented). Takes over the caller's topic reference. If not even the
 * FIFO has memory for it, it waits in the delay heap for a second rather than being lost.
 */
export function topicRequeue(topic: usize, block: usize, now: f64): void {
  let waiter: usize = 0;
  let stored = true;
  lock(topic + T_LOCK);
  atomic.store<u32>(topic + T_IN_FLIGHT, load<u32>(topic + T_IN_FLIGHT) - 1);
  if (hasWaiters(topic)) waiter = handToOldest(topic, block);
  else stored = fifoPrepend(topic, block);
  if (!stored) atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) + 1);
  unlock(topic + T_LOCK);
  if (waiter != 0) {
    mailboxPush(waiter);
    topicRelease(topic);
  } else if (stored) {
    queueFree(block);
    topicRelease(topic);
  } else {
    requeueLater(topic, block, now);
  }
}

/** Last resort when the FIFO has no memory: retry from the delay heap in a second (keeps the reference). */
function requeueLater(topic: usize, block: usize, now: f64): void {
  let one = alloc(4);
  if (one != 0) {
    store<u32>(one, <u32>block);
    if (delaysInsert(topic, one, 1, now + 1000)) {
      free(one);
      return;
    }
    free(one);
  }
  topicDropDelayed(topic, block);
}

/** A delayed record nothing has memory for any more: it is lost, and counted. */
export function topicDropDelayed(topic: usize, block: usize): void {
  lock(topic + T_LOCK);
  atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) - 1);
  unlock(topic + T_LOCK);
  queueFree(block);
  countEvent(EVENT_DROPPED, 1);
  topicRelease(topic);
}

/** A lease ended for good (acked, or dead-lettered by the caller): inFlight - 1, the reference goes. */
export function topicSettled(topic: usize): void {
  lock(topic + T_LOCK);
  atomic.store<u32>(topic + T_IN_FLIGHT, load<u32>(topic + T_IN_FLIGHT) - 1);
  unlock(topic + T_LOCK);
  topicRelease(topic);
}

/** A leased record goes to the delay heap (nack with delayMs): inFlight -> delayed, the reference moves with it. */
export function topicDelayLeased(topic: usize, block: usize, due: f64): void {
  lock(topic + T_LOCK);
  atomic.store<u32>(topic + T_IN_FLIGHT, load<u32>(topic + T_IN_FLIGHT) - 1);
  atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) + 1);
  unlock(topic + T_LOCK);
  let one = alloc(4);
  if (one != 0) {
    store<u32>(one, <u32>block);
    let ok = delaysInsert(topic, one, 1, due);
    free(one);
    if (ok) return;
  }
  // No room in the delay heap: it becomes ready now instead.
  lock(topic + T_LOCK);
  atomic.store<u32>(topic + T_IN_FLIGHT, load<u32>(topic + T_IN_FLIGHT) + 1);
  atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) - 1);
  unlock(topic + T_LOCK);
  topicRequeue(topic, block, due);
}

/**
 * A delayed record is due (delays.ts): appended to its topic, or handed to the oldest
 * waiter. Returns false (nothing changed) when out of memory: the caller keeps it.
 * Releases the delayed message's topic reference on success.
 */
export function topicDue(topic: usize, block: usize): bool {
  let waiter: usize = 0;
  lock(topic + T_LOCK);
  if (hasWaiters(topic)) {
    waiter = handToOldest(topic, block);
  } else if (!fifoAppendRecord(topic, block)) {
    unlock(topic + T_LOCK);
    return false;
  }
  atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) - 1);
  unlock(topic + T_LOCK);
  if (waiter != 0) mailboxPush(waiter);
  else queueFree(block);
  topicRelease(topic);
  return true;
}

// ── Dead letters ───────────────────────────────────────────────────────────────────────

/**
 * Moves leased record `block` (owned by the caller) out of its topic for good: appended to
 * the queue's dead-letter topic with the origin prefix (record.ts), or dropped when the
 * queue has none or it does not fit. Counted either way. Ends the lease's inFlight and
 * releases its topic reference. Takes no lock while another is held (lock order).
 */
export function topicDeadLetter(topic: usize, block: usize, reason: u32): void {
  countEvent(EVENT_DEAD_LETTERED, 1);
  if (journaled(topic)) journalRemoveOne(topic, load<u64>(block, R_ID));
  let queue = queueOf(topic);
  let name = alloc(256);
  let nameLen: usize = name == 0 ? 0 : queueDeadLetterInto(queue, name);
  if (nameLen != 0) {
    // Strip an earlier origin prefix: a message dead-lettered twice names its last topic.
    let data = block + RECORD_HEADER;
    let len = <usize>load<u32>(block, R_LEN);
    if ((load<u32>(block, R_META) & META_DEAD_LETTER) != 0) {
      let prefix: usize = 2 + <usize>load<u8>(data, 1);
      data += prefix;
      len -= prefix;
    }
    let tl = <usize>load<u8>(topic + T_TOPIC_LEN);
    let topicName = topic + T_NAMES + <usize>load<u8>(topic + T_QUEUE_LEN);
    let dlqTopic = topicAcquire(queueNameOf(queue), queueNameLength(queue), name, nameLen, true);
    let stored = false;
    if (dlqTopic != 0 && dlqTopic != TOPIC_NO_MEMORY) {
      let record = queueAlloc(RECORD_HEADER + 2 + tl + len);
      if (record != 0) {
        store<u8>(record + RECORD_HEADER, <u8>reason);
        store<u8>(record + RECORD_HEADER, <u8>tl, 1);
        memory.copy(record + RECORD_HEADER + 2, topicName, tl);
        memory.copy(record + RECORD_HEADER + 2 + tl, data, len);
        stored = appendDeadLetter(dlqTopic, record, 2 + tl + len);
        if (!stored) queueFree(record);
      }
      topicRelease(dlqTopic);
    }
    if (!stored) countEvent(EVENT_DROPPED, 1);
  }
  if (name != 0) free(name);
  queueFree(block);
  topicSettled(topic);
}

/** Appends dead letter `record` (header not yet written) to `topic`, under maxLength. */
function appendDeadLetter(topic: usize, record: usize, len: usize): bool {
  let waiter: usize = 0;
  let stored = true;
  lock(topic + T_LOCK);
  putRecordHeader(record, len, META_DEAD_LETTER, load<u64>(topic + T_PUSHED));
  if (hasWaiters(topic)) {
    nextId(topic);
    // Journaled under the lock: once handed, the waiter's thread may free the record.
    if (journaled(topic)) journalPushStored(topic, record, RECORD_HEADER + len, 0);
    waiter = handToOldest(topic, record);
  } else if (admit(topic, 1) != 0 || !fifoAppendRecord(topic, record)) {
    stored = false;
  } else {
    nextId(topic);
    if (journaled(topic)) journalPushStored(topic, record, RECORD_HEADER + len, 0);
  }
  unlock(topic + T_LOCK);
  if (waiter != 0) mailboxPush(waiter);
  else if (stored) queueFree(record);
  return stored;
}

// ── Recovery (src/engine/durability.ts), before any client is served ──────────────────

/** Appends recovered ready records (stored layout, in id order) to the topic's back. 0 or E_NO_MEMORY. */
export function topicRestoreReady(topic: usize, records: usize, bytes: usize, count: u32): i32 {
  if (count == 0) return 0;
  lock(topic + T_LOCK);
  let ok = fifoAppendStored(topic, records, bytes, count);
  unlock(topic + T_LOCK);
  return ok ? 0 : E_NO_MEMORY;
}

/** Puts recovered delayed records back in the delay heap, record i due at f64 dues[i]. 0 or E_NO_MEMORY. */
export function topicRestoreDelayed(topic: usize, records: usize, bytes: usize, count: u32, dues: usize): i32 {
  let one = alloc(4);
  if (one == 0) return E_NO_MEMORY;
  let p = records;
  let status: i32 = 0;
  for (let i: u32 = 0; i < count && status == 0; i++) {
    let size = recordSize(p);
    let block = queueAlloc(size);
    if (block == 0) { status = E_NO_MEMORY; break; }
    memory.copy(block, p, size);
    lock(topic + T_LOCK);
    atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) + 1);
    unlock(topic + T_LOCK);
    topicRetain(topic);
    store<u32>(one, <u32>block);
    if (!delaysInsert(topic, one, 1, load<f64>(dues + (<usize>i << 3)))) {
      lock(topic + T_LOCK);
      atomic.store<u32>(topic + T_DELAYED, load<u32>(topic + T_DELAYED) - 1);
      unlock(topic + T_LOCK);
      topicRelease(topic);
      queueFree(block);
      status = E_NO_MEMORY;
    }
    p += size;
  }
  free(one);
  return status;
}

// ── Stats ──────────────────────────────────────────────────────────────────────────────

/** Writes u32 ready, delayed, inFlight at `out`. */
export function topicStatsInto(topic: usize, out: usize): void {
  store<u32>(out, atomic.load<u32>(topic + T_LENGTH));
  store<u32>(out, atomic.load<u32>(topic + T_DELAYED), 4);
  store<u32>(out, atomic.load<u32>(topic + T_IN_FLIGHT), 8);
}
