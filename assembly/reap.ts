// What a dead thread leaves behind.
//
// A worker that dies leaves waiters parked under its thread id (a push handing a message
// to one would send it to a mailbox nobody drains), exclusive claims, handed messages in
// its mailbox, and its leases. reapThread, run by another thread once the dead one can
// never run again, removes the waiters and claims, returns every handed or leased message
// to its topic (a lease that ends this way counts as a delivery, as when a connection
// closes), and frees the thread id.

import { lock, unlock } from "./sync";
import { H_THREAD_BITS } from "./layout";
import { T_LOCK, T_NEXT, SEGMENT_COUNT, lockSegmentAt, unlockSegment, segmentBucketCount, segmentBucketHead } from "./table";
import { reapWaiters, mailboxTakeOf, waiterReturn, waiterNext } from "./waiters";
import { reapExclusive } from "./consumers";
import { reapLeases } from "./leases";
import { logMarkSettle } from "./journal";

/**
 * Cleans up after thread `dead`, which must never run again. Returns the number of
 * messages returned to their topics (handed and leased).
 */
export function reapThread(dead: u32, now: f64): u32 {
  for (let i: u32 = 0; i < SEGMENT_COUNT; i++) {
    let seg = lockSegmentAt(i);
    let buckets = segmentBucketCount(seg);
    for (let b: u32 = 0; b < buckets; b++) {
      for (let topic = segmentBucketHead(seg, b); topic != 0; topic = <usize>load<u32>(topic + T_NEXT)) {
        lock(topic + T_LOCK);
        reapWaiters(topic, dead);
        reapExclusive(topic, dead);
        unlock(topic + T_LOCK);
      }
    }
    unlockSegment(seg);
  }
  let returned: u32 = 0;
  // Oldest first from mailboxTakeOf; each return goes to the front, so return newest first.
  let list = mailboxTakeOf(dead);
  let reversed: usize = 0;
  while (list != 0) {
    let next = waiterNext(list);
    store<u32>(list, <u32>reversed);
    reversed = list;
    list = next;
  }
  while (reversed != 0) {
    let next = waiterNext(reversed);
    waiterReturn(reversed);
    returned++;
    reversed = next;
  }
  returned += reapLeases(dead, now);
  logMarkSettle(dead);
  atomic.and<u32>(H_THREAD_BITS + ((<usize>dead >> 5) << 2), ~(<u32>1 << (dead & 31)));
  return returned;
}
