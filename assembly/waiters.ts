// Waiters: pops parked on an empty topic, and how a push on any thread wakes them.
//
// Who parks: a pop (or a subscription with credit) that finds its topic empty parks a
// Waiter (topic.ts topicPopOrPark) under the topic lock, so no push can slip in between
// "empty" and "parked". The waiter holds a reference on the topic (table.ts `users`)
// until its owner releases it, so its topic pointer stays valid.
//
// Who wakes whom: a push, under the topic lock, sees parked waiters and hands its message
// directly to the oldest one instead of storing it (state PARKED -> HANDED, the message in
// its own stored-record block). After unlocking, it pushes the waiter onto its owner
// thread's mailbox (a lock-free list in the owner's ThreadSlot) and, if the mailbox was
// empty, bumps the slot's signal word and notifies it. The owner thread sleeps on that
// word with Atomics.waitAsync, so the wake-up arrives on its event loop like any other
// I/O. Hand-off order is FIFO over waiters, and a topic keeps "waiters present => FIFO
// empty".
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
//  +20 u32 message   handed-over stored record block, 0 before hand-off
//  +24 u32 reserved
// ╘════════════════════════════════════════════╛

import { alloc, free, queueFree } from "./alloc";
import { lock, unlock } from "./sync";
import { threadSlot, SLOT_MAILBOX, SLOT_SIGNAL } from "./layout";
import { T_LOCK, T_USERS, T_WAITER_HEAD, T_WAITER_TAIL, topicRetain, topicRelease } from "./table";
import { fifoPrepend } from "./fifo";
import { threadId } from "./thread";
import { E_NO_MEMORY } from "./status";
import { invariant } from "./debug";

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

/** The waiter created by the last park on this thread (an out-value, read right after). */
let lastParked: usize = 0;

export function lastWaiter(): usize {
  return lastParked;
}

/** Pushes `waiter` onto its owner's mailbox and wakes the owner if it may be sleeping. */
export function mailboxPush(waiter: usize): void {
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
export function mailboxPushChain(chain: usize): void {
  while (chain != 0) {
    let next = <usize>load<u32>(chain + W_NEXT);
    mailboxPush(chain);
    chain = next;
  }
}

/** True when the topic has parked waiters (topic lock held). */
// @ts-ignore: decorator
@inline export function hasWaiters(topic: usize): bool {
  return load<u32>(topic + T_WAITER_HEAD) != 0;
}

/**
 * Hands record block `block` to the oldest parked waiter (topic lock held, a waiter must
 * be parked) and returns that waiter, to be pushed onto its owner's mailbox once the
 * topic is unlocked.
 */
export function handToOldest(topic: usize, block: usize): usize {
  let waiter = <usize>load<u32>(topic + T_WAITER_HEAD);
  invariant(waiter != 0);
  let next = load<u32>(waiter + W_NEXT);
  atomic.store<u32>(topic + T_WAITER_HEAD, next);
  if (next == 0) store<u32>(topic + T_WAITER_TAIL, 0);
  invariant(atomic.load<i32>(waiter + W_STATE) == PARKED);
  store<u32>(waiter + W_MESSAGE, <u32>block);
  atomic.store<i32>(waiter + W_STATE, HANDED);
  store<u32>(waiter + W_NEXT, 0);
  return waiter;
}

/** Links handed waiter `waiter` after `tail` of a local chain; returns the new tail. */
// @ts-ignore: decorator
@inline export function chainAppend(head: usize, tail: usize, waiter: usize): usize {
  if (tail != 0) store<u32>(tail + W_NEXT, <u32>waiter);
  return head == 0 ? waiter : head;
}

/**
 * Parks a waiter for (this thread, waiterToken) at the end of the topic's list (topic
 * lock held, the topic's FIFO empty). Returns it, or 0 when out of memory.
 */
export function waiterPark(topic: usize, waiterToken: u32): usize {
  let waiter = alloc(WAITER_SIZE);
  if (waiter == 0) return 0;
  store<u32>(waiter + W_NEXT, 0);
  store<u32>(waiter + W_OWNER, threadId);
  store<u32>(waiter + W_TOKEN, waiterToken);
  store<i32>(waiter + W_STATE, PARKED);
  store<u32>(waiter + W_TOPIC, <u32>topic);
  store<u32>(waiter + W_MESSAGE, 0);
  store<u32>(waiter + 24, 0);
  topicRetain(topic);
  let tail = <usize>load<u32>(topic + T_WAITER_TAIL);
  if (tail == 0) atomic.store<u32>(topic + T_WAITER_HEAD, <u32>waiter);
  else store<u32>(tail + W_NEXT, <u32>waiter);
  store<u32>(topic + T_WAITER_TAIL, <u32>waiter);
  lastParked = waiter;
  return waiter;
}

/** Frees a waiter, its message and its topic reference. */
export function waiterRelease(waiter: usize): void {
  let topic = <usize>load<u32>(waiter + W_TOPIC);
  let message = <usize>load<u32>(waiter + W_MESSAGE);
  if (message != 0) queueFree(message);
  free(waiter);
  topicRelease(topic);
}

/** Unlinks `waiter` from its topic's list if it is there (topic lock held). */
function unlinkWaiter(topic: usize, waiter: usize): void {
  let prev: usize = 0;
  let cur = <usize>load<u32>(topic + T_WAITER_HEAD);
  while (cur != 0 && cur != waiter) {
    prev = cur;
    cur = <usize>load<u32>(cur + W_NEXT);
  }
  if (cur == 0) return;
  let next = load<u32>(waiter + W_NEXT);
  if (prev == 0) atomic.store<u32>(topic + T_WAITER_HEAD, next);
  else store<u32>(prev + W_NEXT, next);
  if (load<u32>(topic + T_WAITER_TAIL) == <u32>waiter) store<u32>(topic + T_WAITER_TAIL, <u32>prev);
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
  unlinkWaiter(topic, waiter);
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
    if (hasWaiters(topic)) {
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

/** Takes the handed message out of a waiter (the caller now owns the block). */
export function waiterTakeMessage(waiter: usize): usize {
  let message = <usize>load<u32>(waiter + W_MESSAGE);
  store<u32>(waiter + W_MESSAGE, 0);
  return message;
}

// @ts-ignore: decorator
@inline export function waiterMessage(waiter: usize): usize {
  return <usize>load<u32>(waiter + W_MESSAGE);
}

// @ts-ignore: decorator
@inline export function waiterTopic(waiter: usize): usize {
  return <usize>load<u32>(waiter + W_TOPIC);
}

/** Takes this thread's whole mailbox, oldest first (0 if empty). */
export function mailboxTake(): usize {
  return mailboxTakeOf(threadId);
}

/** Takes thread `id`'s whole mailbox, oldest first (the reaper takes a dead thread's). */
export function mailboxTakeOf(id: u32): usize {
  let slot = threadSlot(id);
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

/**
 * Removes thread `dead`'s parked waiters from `topic` (topic lock held, the segment lock
 * too: see reap.ts). Their topic references go with them.
 */
export function reapWaiters(topic: usize, dead: u32): void {
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
}
