// Counters and monitoring reads of the shared core. Nothing here is on a request path
// except countEvent (one plain load and store on the thread's own slot).
//
// Event counters (dropped, dead-lettered, redelivered, acked): events that happen inside
// the core - an expiry, a dead-letter move, an overflow drop - counted in each thread's
// ThreadSlot (layout.ts SLOT_EVENTS). Only the owning thread writes its slot - no
// read-modify-write shared with other threads - and readers sum every slot on demand
// (a scrape, engine.stats()), as alloc.ts does for its byte counts.
//
//
// JS counters: each thread keeps its counters in a block of its own, allocated and
// written from JS (src/engine/metrics.ts), and publishes the block's address in its
// ThreadSlot (layout.ts SLOT_METRICS) so the main thread can sum every thread's block on
// a scrape without asking the threads anything. attach() clears the word, so a thread id
// that is reused never points at a dead thread's block.
//
// The largest topics: a walk over the whole table (each segment locked in turn, for as
// long as reading its chains takes) that keeps the `max` topics with the most ready
// messages. Why a walk and not counts kept per queue on every push and pop: the walk
// costs nothing on the hot path (no name lookups, no shared counters per queue), it is
// exact, and its output is bounded by `max` whatever the number of queues; it costs one
// pass over the table per /stats request, which is rare.

import { threadSlot, SLOT_METRICS, SLOT_EVENTS, MAX_THREADS } from "./layout";
import { threadId } from "./thread";
import {
  SEGMENT_COUNT, lockSegmentAt, unlockSegment, segmentBucketCount, segmentBucketHead,
  T_NEXT, T_LENGTH, T_CONSUMERS, T_WAITER_HEAD, T_QUEUE_LEN, T_TOPIC_LEN, T_NAMES, T_IN_FLIGHT, T_DELAYED,
} from "./table";

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

/** Ready, in-flight and delayed messages over every topic, written as 3 × f64 at `out` (a walk: for scrapes). */
export function messageTotals(out: usize): void {
  let ready: u64 = 0, inFlight: u64 = 0, delayed: u64 = 0;
  for (let i: u32 = 0; i < SEGMENT_COUNT; i++) {
    let seg = lockSegmentAt(i);
    let buckets = segmentBucketCount(seg);
    for (let b: u32 = 0; b < buckets; b++) {
      for (let topic = segmentBucketHead(seg, b); topic != 0; topic = <usize>load<u32>(topic + T_NEXT)) {
        ready += atomic.load<u32>(topic + T_LENGTH);
        inFlight += atomic.load<u32>(topic + T_IN_FLIGHT);
        delayed += atomic.load<u32>(topic + T_DELAYED);
      }
    }
    unlockSegment(seg);
  }
  store<f64>(out, <f64>ready);
  store<f64>(out, <f64>inFlight, 8);
  store<f64>(out, <f64>delayed, 16);
}

/** Address of thread `id`'s counter block, 0 if it has published none. */
export function threadMetrics(id: u32): usize {
  if (id == 0 || id >= MAX_THREADS) return 0;
  return <usize>atomic.load<u32>(threadSlot(id) + SLOT_METRICS);
}

/**
 * Publishes `block` as thread `id`'s counter block (its own thread at start), or clears it
 * (0: the main thread, after folding the block of a thread that ended).
 */
export function setThreadMetrics(id: u32, block: usize): void {
  if (id == 0 || id >= MAX_THREADS) return;
  atomic.store<u32>(threadSlot(id) + SLOT_METRICS, <u32>block);
}

// ╒════════════ TopicSummary (SUMMARY_BYTES = 536) ════════════╕
//  +0   u32 length      ready messages (the FIFO's length)
//  +4   u32 consumers   attached subscriptions
//  +8   u32 waiting     1 if pops are parked on the topic, else 0
//  +12  u32 inFlight    leased messages
//  +16  u32 delayed     messages waiting for their due time
//  +20  u8  queueLen
//  +21  u8  topicLen
//  +22  u16 reserved
//  +24  queue name bytes, then topic name bytes (at most 2 × 255)
// ╘════════════════════════════════════════════════════════════╛

// @ts-ignore: decorator
@inline export const SUMMARY_BYTES: usize = 536;

/**
 * Writes summaries of the `max` topics with the most ready messages to `out` (room for
 * `max` × SUMMARY_BYTES), in no particular order; returns how many were written. Values
 * are a snapshot: read with atomic loads under the segment lock (which keeps each topic
 * alive while it is read), not under the topic lock.
 */
export function topicsLargest(out: usize, max: u32): u32 {
  let count: u32 = 0;
  let smallest: u32 = 0; // index of the smallest kept summary, once `max` are kept
  if (max == 0) return 0;
  for (let i: u32 = 0; i < SEGMENT_COUNT; i++) {
    let seg = lockSegmentAt(i);
    let buckets = segmentBucketCount(seg);
    for (let b: u32 = 0; b < buckets; b++) {
      for (let topic = segmentBucketHead(seg, b); topic != 0; topic = <usize>load<u32>(topic + T_NEXT)) {
        let length = atomic.load<u32>(topic + T_LENGTH);
        let at: u32;
        if (count < max) at = count++;
        else if (length > load<u32>(out + <usize>smallest * SUMMARY_BYTES)) at = smallest;
        else continue;
        summarise(out + <usize>at * SUMMARY_BYTES, topic, length);
        if (count == max) smallest = indexOfSmallest(out, max);
      }
    }
    unlockSegment(seg);
  }
  return count;
}

function summarise(p: usize, topic: usize, length: u32): void {
  let ql = <usize>load<u8>(topic + T_QUEUE_LEN);
  let tl = <usize>load<u8>(topic + T_TOPIC_LEN);
  store<u32>(p, length);
  store<u32>(p, atomic.load<u32>(topic + T_CONSUMERS), 4);
  store<u32>(p, atomic.load<u32>(topic + T_WAITER_HEAD) != 0 ? 1 : 0, 8);
  store<u32>(p, atomic.load<u32>(topic + T_IN_FLIGHT), 12);
  store<u32>(p, atomic.load<u32>(topic + T_DELAYED), 16);
  store<u8>(p, <u8>ql, 20);
  store<u8>(p, <u8>tl, 21);
  store<u16>(p, 0, 22);
  memory.copy(p + 24, topic + T_NAMES, ql + tl);
}

function indexOfSmallest(out: usize, count: u32): u32 {
  let best: u32 = 0;
  let bestLength = load<u32>(out);
  for (let i: u32 = 1; i < count; i++) {
    let length = load<u32>(out + <usize>i * SUMMARY_BYTES);
    if (length < bestLength) {
      best = i;
      bestLength = length;
    }
  }
  return best;
}
