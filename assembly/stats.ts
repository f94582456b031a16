// Per-thread event counters (dropped, dead-lettered, redelivered, acked), in each thread's
// ThreadSlot (layout.ts). Only the owning thread writes its slot - a plain load and store,
// no read-modify-write shared with other threads - and readers sum every slot on demand
// (a scrape, engine.stats()), as alloc.ts does for its byte counts.

import { threadSlot, SLOT_EVENTS, MAX_THREADS } from "./layout";
import { threadId } from "./thread";

// @ts-ignore: decorator
@inline export const EVENT_DROPPED: u32 = 0;
// @ts-ignore: decorator
@inline export const EVENT_DEAD_LETTERED: u32 = 1;
// @ts-ignore: decorator
@inline export const EVENT_REDELIVERED: u32 = 2;
// @ts-ignore: decorator
@inline export const EVENT_ACKED: u32 = 3;

// @ts-ignore: decorator
@inline export function countEvent(kind: u32, n: u64): void {
  let at = threadSlot(threadId) + SLOT_EVENTS + (<usize>kind << 3);
  atomic.store<u64>(at, atomic.load<u64>(at) + n);
}

/** Sum over every thread of event `kind` (EVENT_*). */
export function eventCount(kind: u32): u64 {
  let sum: u64 = 0;
  for (let t: u32 = 0; t < MAX_THREADS; t++) sum += atomic.load<u64>(threadSlot(t) + SLOT_EVENTS + (<usize>kind << 3));
  return sum;
}
