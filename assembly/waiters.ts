// Waiters: pops parked on an empty topic, and how a push on any thread wakes them.
//
// Who parks: a pop (or a subscription with credit) that finds its topic empty calls
// popOrPark, which - under the topic lock, so no push can slip in between "empty" and
// "parked" - appends a Waiter to the topic's waiter list. The waiter holds a reference on
// the topic (table.ts `users`) until its owner releases it, so its topic pointer stays valid.
//
// Who wakes whom: a push, under the topic lock, sees parked waiters and hands its message
// directly to the oldest one instead of storing it (state PARKED -> HANDED, message copied
// into its own block). After unlocking, it pushes the waiter onto its owner thread's
// mailbox (a lock-free list in the owner's ThreadSlot) and, if the mailbox was empty,
// bumps the slot's signal word and notifies it. The owner thread sleeps on that word with
// Atomics.waitAsync, so the wake-up arrives on its event loop like any other I/O.
// Hand-off order is FIFO over waiters, and the topic keeps "waiters present => FIFO empty".
//
// Timeout, abort, dead connection: the owner calls waiterCancel. Under the topic lock,
// a PARKED waiter is unlinked and freed (the pop answers EMPTY / ERR_ABORTED). If it was
// already HANDED, cancel fails: the message is in (or on its way to) the owner's mailbox.
// When the owner then finds no live request for it (the connection died, the pop was
// aborted), it calls waiterReturn, which gives the message to the next waiter or puts it
// back at the *front* of the topic. So a dead waiter never swallows a message, and no
// message overtakes an older one.
//
// Mailbox ABA: producers only push (CAS on the head); the owner takes the whole list with
// one exchange. With no single-element pop there is no ABA.
//
// ╒════════════ Waiter (28 bytes) ════════════╕
//  +0  u32 next      topic waiter list, then mailbox list
//  +4  u32 owner     thread id whose mailbox receives it
//  +8  u32 token     the owner's id for the parked request
//  +12 i32 state     PARKED 1, HANDED 2
//  +16 u32 topic     referenced topic (a `users` reference)
//  +20 u32 message   handed-over record block [u32 len][bytes], 0 before hand-off
//  +24 u32 reserved
// ╘════════════════════════════════════════════╛

import { alloc, free, queueAlloc, queueFree } from "./alloc";
import { lock, unlock } from "./sync";
import { threadSlot, SLOT_MAILBOX, SLOT_SIGNAL, H_THREAD_BITS } from "./layout";
import { T_LOCK, T_USERS, T_WAITER_HEAD, T_WAITER_TAIL, T_EXCLUSIVE, T_CONSUMERS, T_LENGTH, T_PUSHED, topicRetain, topicRelease, T_NEXT, SEGMENT_COUNT, lockSegmentAt, unlockSegment, segmentBucketCount, segmentBucketHead } from "./table";
import { fifoAppend, fifoAppendRecords, fifoPopInto, fifoPrepend, fifoPrependRecords, fifoTakeOne, RECORD_HEADER } from "./fifo";
import { threadId } from "./thread";
import { writerEnsure, writerAdvance } from "./codec";

// @ts-ignore: decorator
@inline const W_NEXT: usize = 0;
// @ts-ignore: decorator
@inline const W_OWNER: usize = 4;
// @ts-ignore: decorator
@inline const W_TOKEN: usize = 8;
// @ts-ignore: decorator
@inline const W_STATE: usize = 12;
// @ts-ignore: decorator
@inline const W_TOPIC: usize = 16;
// @ts-ignore: decorator
@inline const W_MESSAGE: usize = 20;
// @ts-ignore: decorator
@inline const WAITER_SIZE: usize = 28;

// @ts-ignore: decorator
@inline const PARKED: i32 = 1;
// @ts-ignore: decorator
@inline const HANDED: i32 = 2;

/** Status codes (negated wire error codes, docs/protocol.md). */
// @ts-ignore: decorator
@inline export const E_EXCLUSIVE: i32 = -4;
// @ts-ignore: decorator
@inline export const E_NO_MEMORY: i32 = -7;

/** The waiter created by the last popOrPark that parked (per thread). */
let lastParked: usize = 0;

export function lastWaiter(): usize {
  return lastParked;
}

/** Pushes `waiter` onto its owner's mailbox and wakes the owner if it may be sleeping. */
function mailboxPush(waiter: usize): void {
  let slot = threadSlot(load<u32>(waiter + W_OWNER));
  let old: u32;
  do {
    old = atomic.load<u32>(slot + SLOT_MAILBOX);
    store<u32>(waiter + W_NEXT, old);
  } while (atomic.cmpxchg<u32>(slot + SLOT_MAILBOX, old, <u32>waiter) != old);
  // A non-empty mailbox has already been signalled and not drained yet: the owner will
  // see this waiter when it drains. Only the empty -> non-empty transition signals.
  if (old == 0) {
    atomic.add<i32>(slot + SLOT_SIGNAL, 1);
    atomic.notify(slot + SLOT_SIGNAL, 1);
  }
}

/** Pushes every waiter of a chain (linked through W_NEXT) onto its owner's mailbox. */
function mailboxPushChain(chain: usize): void {
  while (chain != 0) {
    let next = <usize>load<u32>(chain + W_NEXT);
    mailboxPush(chain);
    chain = next;
  }
}

/** Dequeues the oldest parked waiter (topic lock held), or 0. */
// @ts-ignore: decorator
@inline function dequeueWaiter(topic: usize): usize {
  let waiter = <usize>load<u32>(topic + T_WAITER_HEAD);
  if (waiter == 0) return 0;
  let next = load<u32>(waiter + W_NEXT);
  atomic.store<u32>(topic + T_WAITER_HEAD, next);
  if (next == 0) store<u32>(topic + T_WAITER_TAIL, 0);
  return waiter;
}

/**
 * Hands record block `block` to the oldest parked waiter (topic lock held, a waiter must
 * be parked) and returns that waiter, to be pushed onto its owner's mailbox once the
 * topic is unlocked.
 */
// @ts-ignore: decorator
@inline function handToOldest(topic: usize, block: usize): usize {
  let waiter = dequeueWaiter(topic);
  store<u32>(waiter + W_MESSAGE, <u32>block);
  atomic.store<i32>(waiter + W_STATE, HANDED);
  store<u32>(waiter + W_NEXT, 0);
  return waiter;
}

/** Copies a message into a record block for a hand-off; 0 when out of memory. */
// @ts-ignore: decorator
@inline function recordBlock(data: usize, len: usize): usize {
  let block = queueAlloc(RECORD_HEADER + len);
  if (block != 0) {
    store<u32>(block, <u32>len);
    memory.copy(block + RECORD_HEADER, data, len);
  }
  return block;
}

/**
 * Set (only) by the by-name fast path in index.ts while it holds the topic's segment lock
 * and has seen `users == 0`: then no other thread can reach this topic - references are
 * taken under that segment lock or from an existing reference, and there is none - so the
 * topic lock is redundant and is skipped, saving two atomic read-modify-writes per request.
 * Per thread, and reset right after the one operation.
 */
let topicExclusive: bool = false;

export function setTopicExclusive(exclusive: bool): void {
  topicExclusive = exclusive;
}

// @ts-ignore: decorator
@inline function lockTopic(topic: usize): void {
  if (!topicExclusive) lock(topic + T_LOCK);
}

// @ts-ignore: decorator
@inline function unlockTopic(topic: usize): void {
  if (!topicExclusive) unlock(topic + T_LOCK);
}

/** Pushes one message: to the oldest parked waiter if any, else into the FIFO. 0 or E_NO_MEMORY. */
export function topicPush(topic: usize, data: usize, len: usize): i32 {
  lockTopic(topic);
  let waiter = <usize>load<u32>(topic + T_WAITER_HEAD);
  if (waiter != 0) {
    let block = recordBlock(data, len);
    if (block == 0) {
      unlockTopic(topic);
      return E_NO_MEMORY;
    }
    waiter = handToOldest(topic, block);
    store<u64>(topic + T_PUSHED, load<u64>(topic + T_PUSHED) + 1);
    unlockTopic(topic);
    mailboxPush(waiter);
    return 0;
  }
  let ok = fifoAppend(topic, data, len);
  unlockTopic(topic);
  return ok ? 0 : E_NO_MEMORY;
}

/**
 * Pushes `count` records (validated by the codec, filling `bytes` exactly): the oldest
 * go to parked waiters one each, the rest into the FIFO in order. Returns 0, or
 * E_NO_MEMORY if not all could be stored (those before the failure are stored).
 */
export function topicPushRecords(topic: usize, records: usize, bytes: usize, count: u32): i32 {
  let handed: usize = 0;
  let handedTail: usize = 0;
  let p = records;
  let end = records + bytes;
  let status: i32 = 0;
  lockTopic(topic);
  while (p < end && load<u32>(topic + T_WAITER_HEAD) != 0) {
    let len = <usize>load<u32>(p);
    let block = recordBlock(p + RECORD_HEADER, len);
    if (block == 0) { status = E_NO_MEMORY; break; }
    let waiter = handToOldest(topic, block);
    if (handedTail == 0) handed = waiter; else store<u32>(handedTail + W_NEXT, <u32>waiter);
    handedTail = waiter;
    store<u64>(topic + T_PUSHED, load<u64>(topic + T_PUSHED) + 1);
    p += RECORD_HEADER + len;
    count--;
  }
  if (status == 0 && p < end) {
    if (fifoAppendRecords(topic, p, end - p, count) != count) status = E_NO_MEMORY;
  }
  unlockTopic(topic);
  mailboxPushChain(handed);
  return status;
}

/**
 * RETURN: puts records a consumer received but did not consume back at the front of the
 * topic, in order; parked waiters (the topic was empty) get them first. 0 or E_NO_MEMORY.
 */
export function topicReturnRecords(topic: usize, records: usize, bytes: usize, count: u32): i32 {
  let handed: usize = 0;
  let handedTail: usize = 0;
  lockTopic(topic);
  if (!fifoPrependRecords(topic, records, bytes, count)) {
    unlockTopic(topic);
    return E_NO_MEMORY;
  }
  while (load<u32>(topic + T_WAITER_HEAD) != 0 && load<u32>(topic + T_LENGTH) != 0) {
    let block = fifoTakeOne(topic);
    if (block == 0) break; // out of memory: the message stays in the FIFO
    let waiter = handToOldest(topic, block);
    if (handedTail == 0) handed = waiter; else store<u32>(handedTail + W_NEXT, <u32>waiter);
    handedTail = waiter;
  }
  unlockTopic(topic);
  mailboxPushChain(handed);
  return 0;
}

// @ts-ignore: decorator
@inline function excluded(topic: usize, token: u32): bool {
  let owner = load<u32>(topic + T_EXCLUSIVE);
  return owner != 0 && owner != token;
}

/**
 * Pops up to `max` records into writer `w` (at most `maxBytes`, the first always whole).
 * `token` identifies the caller's subscription (0 for a plain pop): while an exclusive
 * subscription holds the topic, only its token may pop. Returns the count (0 = empty),
 * or E_EXCLUSIVE.
 */
export function topicPop(topic: usize, w: usize, max: u32, maxBytes: usize, token: u32): i32 {
  lockTopic(topic);
  if (excluded(topic, token)) {
    unlockTopic(topic);
    return E_EXCLUSIVE;
  }
  let n = load<u32>(topic + T_LENGTH) == 0 ? 0 : fifoPopInto(topic, w, max, maxBytes);
  unlockTopic(topic);
  return <i32>n;
}

/**
 * Like topicPop, but if the topic is empty parks a waiter for (this thread, waiterToken)
 * in the same critical section, so no push can be missed. Returns the count popped (> 0),
 * 0 when parked (the waiter is lastWaiter()), E_EXCLUSIVE or E_NO_MEMORY.
 */
export function topicPopOrPark(topic: usize, w: usize, max: u32, maxBytes: usize, token: u32, waiterToken: u32): i32 {
  lockTopic(topic);
  if (excluded(topic, token)) {
    unlockTopic(topic);
    return E_EXCLUSIVE;
  }
  if (load<u32>(topic + T_LENGTH) != 0) {
    let n = fifoPopInto(topic, w, max, maxBytes);
    unlockTopic(topic);
    return n == 0 ? E_NO_MEMORY : <i32>n;
  }
  let waiter = alloc(WAITER_SIZE);
  if (waiter == 0) {
    unlockTopic(topic);
    return E_NO_MEMORY;
  }
  store<u32>(waiter + W_NEXT, 0);
  store<u32>(waiter + W_OWNER, threadId);
  store<u32>(waiter + W_TOKEN, waiterToken);
  store<i32>(waiter + W_STATE, PARKED);
  store<u32>(waiter + W_TOPIC, <u32>topic);
  store<u32>(waiter + W_MESSAGE, 0);
  topicRetain(topic);
  let tail = <usize>load<u32>(topic + T_WAITER_TAIL);
  if (tail == 0) atomic.store<u32>(topic + T_WAITER_HEAD, <u32>waiter);
  else store<u32>(tail + W_NEXT, <u32>waiter);
  store<u32>(topic + T_WAITER_TAIL, <u32>waiter);
  unlockTopic(topic);
  lastParked = waiter;
  return 0;
}

/** Frees a waiter, its message and its topic reference. */
export function waiterRelease(waiter: usize): void {
  let topic = <usize>load<u32>(waiter + W_TOPIC);
  let message = <usize>load<u32>(waiter + W_MESSAGE);
  if (message != 0) queueFree(message);
  free(waiter);
  topicRelease(topic);
}

/**
 * Takes a parked waiter away (timeout, abort, dead connection). Returns 1 if it was still
 * parked: it is unlinked and freed, the caller must not touch it again. Returns 0 if a push
 * already handed it a message: it will arrive through the owner's mailbox.
 */
export function waiterCancel(waiter: usize): i32 {
  let topic = <usize>load<u32>(waiter + W_TOPIC);
  lock(topic + T_LOCK);
  if (atomic.load<i32>(waiter + W_STATE) != PARKED) {
    unlock(topic + T_LOCK);
    return 0;
  }
  let prev: usize = 0;
  let cur = <usize>load<u32>(topic + T_WAITER_HEAD);
  while (cur != 0 && cur != waiter) {
    prev = cur;
    cur = <usize>load<u32>(cur + W_NEXT);
  }
  if (cur != 0) {
    let next = load<u32>(waiter + W_NEXT);
    if (prev == 0) atomic.store<u32>(topic + T_WAITER_HEAD, next);
    else store<u32>(prev + W_NEXT, next);
    if (load<u32>(topic + T_WAITER_TAIL) == <u32>waiter) store<u32>(topic + T_WAITER_TAIL, <u32>prev);
  }
  unlock(topic + T_LOCK);
  waiterRelease(waiter);
  return 1;
}

/**
 * The owner had no live request for a handed waiter: give its message to the next parked
 * waiter, or put it back at the front of the topic. Then release the waiter.
 * Returns 0, or E_NO_MEMORY if the message could not be put back (it is then lost).
 */
export function waiterReturn(waiter: usize): i32 {
  let topic = <usize>load<u32>(waiter + W_TOPIC);
  let message = <usize>load<u32>(waiter + W_MESSAGE);
  let status: i32 = 0;
  let next: usize = 0;
  if (message != 0) {
    lock(topic + T_LOCK);
    if (load<u32>(topic + T_WAITER_HEAD) != 0) {
      next = handToOldest(topic, message);
      store<u32>(waiter + W_MESSAGE, 0);
    } else if (!fifoPrepend(topic, message)) {
      status = E_NO_MEMORY;
    }
    unlock(topic + T_LOCK);
  }
  if (next != 0) mailboxPush(next);
  waiterRelease(waiter);
  return status;
}

/**
 * Writes a handed waiter's message into writer `w` as one record, then up to `moreMax`
 * further records popped from its topic (within `maxBytes`). Returns the record count.
 * The waiter stays allocated: call waiterRelease afterwards.
 */
export function waiterDeliverInto(waiter: usize, w: usize, moreMax: u32, maxBytes: usize, token: u32): i32 {
  let message = <usize>load<u32>(waiter + W_MESSAGE);
  let size = RECORD_HEADER + <usize>load<u32>(message);
  let dst = writerEnsure(w, <u32>size);
  if (dst == 0) return E_NO_MEMORY;
  memory.copy(dst, message, size);
  writerAdvance(w, <u32>size);
  if (moreMax == 0 || size >= maxBytes) return 1;
  let more = topicPop(<usize>load<u32>(waiter + W_TOPIC), w, moreMax, maxBytes - size, token);
  return more > 0 ? 1 + more : 1;
}

/** Takes this thread's whole mailbox, oldest first (0 if empty). */
export function mailboxTake(): usize {
  let slot = threadSlot(threadId);
  let list = <usize>atomic.xchg<u32>(slot + SLOT_MAILBOX, 0);
  // The list is newest first: reverse it.
  let prev: usize = 0;
  while (list != 0) {
    let next = <usize>load<u32>(list + W_NEXT);
    store<u32>(list + W_NEXT, <u32>prev);
    prev = list;
    list = next;
  }
  return prev;
}

/** Address of this thread's mailbox signal word (JS waits on it with Atomics.waitAsync). */
export function mailboxSignalAddress(): usize {
  return threadSlot(threadId) + SLOT_SIGNAL;
}

export function waiterNext(waiter: usize): usize {
  return <usize>load<u32>(waiter + W_NEXT);
}

export function waiterToken(waiter: usize): u32 {
  return load<u32>(waiter + W_TOKEN);
}

/** Attaches a subscription. Exclusive needs the topic free of consumers and waiters. */
export function consumerAttach(topic: usize, token: u32, exclusive: bool): i32 {
  lock(topic + T_LOCK);
  let status: i32 = 0;
  if (load<u32>(topic + T_EXCLUSIVE) != 0) status = E_EXCLUSIVE;
  else if (exclusive && (load<u32>(topic + T_CONSUMERS) != 0 || load<u32>(topic + T_WAITER_HEAD) != 0)) status = E_EXCLUSIVE;
  if (status == 0) {
    atomic.store<u32>(topic + T_CONSUMERS, load<u32>(topic + T_CONSUMERS) + 1);
    if (exclusive) atomic.store<u32>(topic + T_EXCLUSIVE, token);
  }
  unlock(topic + T_LOCK);
  return status;
}

export function consumerDetach(topic: usize, token: u32): void {
  lock(topic + T_LOCK);
  atomic.store<u32>(topic + T_CONSUMERS, load<u32>(topic + T_CONSUMERS) - 1);
  if (load<u32>(topic + T_EXCLUSIVE) == token) atomic.store<u32>(topic + T_EXCLUSIVE, 0);
  unlock(topic + T_LOCK);
}

// ── A crashed thread ───────────────────────────────────────────────────────────────────
// A worker that dies leaves waiters parked under its thread id; a push handing a message
// to one of them would send it to a mailbox nobody drains. reapThread, run by another
// thread once the dead one can no longer run, removes them and returns whatever was
// already handed over.

function reapTopic(topic: usize, dead: u32): void {
  lock(topic + T_LOCK);
  let prev: usize = 0;
  let cur = <usize>load<u32>(topic + T_WAITER_HEAD);
  while (cur != 0) {
    let next = <usize>load<u32>(cur + W_NEXT);
    if (load<u32>(cur + W_OWNER) == dead) {
      if (prev == 0) atomic.store<u32>(topic + T_WAITER_HEAD, <u32>next);
      else store<u32>(prev + W_NEXT, <u32>next);
      if (load<u32>(topic + T_WAITER_TAIL) == <u32>cur) store<u32>(topic + T_WAITER_TAIL, <u32>prev);
      free(cur);
      // The waiter's topic reference. The segment lock is held: nobody can remove the topic
      // now, and the next request by name removes it if this left it idle.
      atomic.sub<i32>(topic + T_USERS, 1);
    } else {
      prev = cur;
    }
    cur = next;
  }
  let exclusive = load<u32>(topic + T_EXCLUSIVE);
  if (exclusive != 0 && (exclusive >>> 24) == dead) {
    atomic.store<u32>(topic + T_EXCLUSIVE, 0);
    atomic.store<u32>(topic + T_CONSUMERS, load<u32>(topic + T_CONSUMERS) - 1);
  }
  unlock(topic + T_LOCK);
}

/**
 * Cleans up after thread `dead`, which must never run again: drops its parked waiters and
 * exclusive claims, returns the messages already handed to it (to the next waiter or the
 * front of their topic), and frees its thread id. Returns the number of messages returned.
 */
export function reapThread(dead: u32): u32 {
  for (let i: u32 = 0; i < SEGMENT_COUNT; i++) {
    let seg = lockSegmentAt(i);
    let buckets = segmentBucketCount(seg);
    for (let b: u32 = 0; b < buckets; b++) {
      for (let topic = segmentBucketHead(seg, b); topic != 0; topic = <usize>load<u32>(topic + T_NEXT)) reapTopic(topic, dead);
    }
    unlockSegment(seg);
  }
  let slot = threadSlot(dead);
  let list = <usize>atomic.xchg<u32>(slot + SLOT_MAILBOX, 0);
  let returned: u32 = 0;
  // Newest first: each return goes to the front, so the oldest ends up first again.
  while (list != 0) {
    let next = <usize>load<u32>(list + W_NEXT);
    waiterReturn(list);
    returned++;
    list = next;
  }
  atomic.and<u32>(H_THREAD_BITS + ((<usize>dead >> 5) << 2), ~(<u32>1 << (dead & 31)));
  return returned;
}
