// Per-thread counters in shared memory: what a thread counts (messages pushed and popped,
// connections, bytes, its event-loop utilisation, fsync latencies) without any message to
// another thread per operation. Each thread that serves connections (every worker, and the
// main thread for embedded queues) allocates one block in the core's shared memory,
// publishes its address in its ThreadSlot (assembly/stats.ts setThreadMetrics) and is the
// only writer of it. The main thread reads every live thread's block on a scrape and sums
// them (src/engine/stats.ts); when a thread ends, the main thread folds its block into the
// engine's retired totals (retireCounters) and frees it, so totals never go backwards.
//
// ╒════════════════ counter block (COUNTER_WORDS f64 = 256 bytes) ════════════════╕
//  [0]  pushed              messages stored by PUSH / PUSH_MANY                  counter
//  [1]  popped              messages delivered (POP, POP_MANY, DELIVER)          counter
//  [2]  acked               at-least-once: acknowledged (lease code, later)      counter
//  [3]  redelivered         at-least-once: back in their topic after a lease     counter
//  [4]  deadLettered        at-least-once: given up on                           counter
//  [5]  dropped             removed from a topic undelivered                     counter
//  [6]  ready               delta: + pushed - popped + returned (see below)      gauge
//  [7]  inFlight            delta: + leased - acked/redelivered (lease code)     gauge
//  [8]  connections         open connections of this thread (absolute)           gauge
//  [9]  connectionsTotal    connections accepted                                 counter
//  [10] connectionsRefused  connections refused at a connection limit            counter
//  [11] protocolErrors      connections closed for a protocol error              counter
//  [12] bytesReceived                                                             counter
//  [13] bytesSent                                                                 counter
//  [14] loopUtilization     performance.eventLoopUtilization over the last second gauge
//  [15] parkedPops          pops parked on this thread now (absolute)            gauge
//  [16] fsyncCount          fsync latency histogram: observations                counter
//  [17] fsyncSumSeconds                              their sum                   counter
//  [18..18+B)               per bucket (FSYNC_BUCKETS_SECONDS, not cumulative)   counter
//  [32] peerLogWaits        flushes whose replies waited for other threads' logs counter
//                           (docs/durability.md, "Across threads")
//  [33] peerLogRings        threads waited for that had to be rung (10 ms)       counter
//  [..40) reserved
// ╘═══════════════════════════════════════════════════════════════════════════════╛
//
// Why f64 words written without Atomics: one writer per block, and an aligned 8-byte store
// or load is one instruction on every platform Node runs on (x64, arm64), so a reader sees
// the old or the new value; counts stay exact up to 2^53. (The JS memory model does not
// promise tear-free Float64Array accesses; if one ever tore, one scrape would show one odd
// value, and nothing in the broker reads these numbers.) BigInt64Array with Atomics would
// cost a BigInt per increment on the hot path.
//
// Gauges from deltas: `ready` is a per-thread sum of deltas (+n per message pushed or
// returned, -n per message delivered), summed over threads on a scrape: the number of
// messages waiting in topics, without walking them. Messages handed to a parked pop count
// as ready until that pop delivers them (a few microseconds). The lease code moves
// `inFlight` the same way. How the lease code reports (the counter methods below):
//   delivered with a lease   onPopped(n) + adjustInFlight(+n)
//   acknowledged             onAcked(n) + adjustInFlight(-n)
//   lease ended, redelivered onRedelivered(n) + adjustInFlight(-n) + adjustReady(+n)
//   dead-lettered            onDeadLettered(n) + adjustInFlight(-n) (+ onPushed(n) if moved to a topic)
//   dropped from a topic     onDropped(n) + adjustReady(-n)
//
// Views: the block is read and written through a Float64Array made after the block was
// allocated. A shared memory's buffer is never detached and never shrinks, so that view
// stays valid after any memory.grow (the rule MemoryView in src/core/wasm.ts relies on); an
// unshared memory's buffer is detached by a grow, which empties the view: it is remade then.

import { performance } from 'node:perf_hooks';
import type { CoreThread } from '../core/thread.ts';
import type { Core } from '../core/wasm.ts';

/** Upper bounds of the fsync latency histogram's buckets, in seconds (+Inf is implied). */
export const FSYNC_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
]);

const PUSHED = 0, POPPED = 1, ACKED = 2, REDELIVERED = 3, DEAD_LETTERED = 4, DROPPED = 5, READY = 6, IN_FLIGHT = 7,
  CONNECTIONS = 8, CONNECTIONS_TOTAL = 9, CONNECTIONS_REFUSED = 10, PROTOCOL_ERRORS = 11, BYTES_RECEIVED = 12,
  BYTES_SENT = 13, LOOP_UTILIZATION = 14, PARKED_POPS = 15, FSYNC_COUNT = 16, FSYNC_SUM = 17, FSYNC_BUCKETS = 18,
  PEER_LOG_WAITS = 32, PEER_LOG_RINGS = 33;
const COUNTER_WORDS = 40;
export const COUNTER_BYTES = COUNTER_WORDS * 8;
if (FSYNC_BUCKETS + FSYNC_BUCKETS_SECONDS.length > PEER_LOG_WAITS) throw new Error('turbomq: counter block too small');

/** One thread's counters, written only by that thread. */
export class ThreadCounters {
  readonly #thread: CoreThread;
  /** Address of the block in the core's memory. */
  readonly address: number;
  #words: Float64Array;

  constructor(thread: CoreThread) {
    this.#thread = thread;
    const address = thread.exports.alloc(COUNTER_BYTES);
    if (address === 0) throw new Error('turbomq core: out of memory for the thread counters');
    this.address = address;
    this.#words = this.#view();
    this.#words.fill(0);
    thread.exports.setThreadMetrics(thread.id, address);
  }

  #view(): Float64Array {
    return new Float64Array(this.#thread.core.view.memory.buffer, this.address, COUNTER_WORDS);
  }

  /** The view, remade if a grow detached an unshared memory's buffer (see the header). */
  #w(): Float64Array {
    const w = this.#words;
    if (w.length !== 0) return w;
    this.#words = this.#view();
    return this.#words;
  }

  /** n messages stored in a topic. */
  onPushed(n: number): void {
    const w = this.#w();
    w[PUSHED] += n;
    w[READY] += n;
  }

  /** n messages delivered to a consumer (pop, popMany, subscription). */
  onPopped(n: number): void {
    const w = this.#w();
    w[POPPED] += n;
    w[READY] -= n;
  }

  /** n messages given back to the front of their topic (RETURN). */
  onReturned(n: number): void {
    this.#w()[READY] += n;
  }

  onAcked(n: number): void {
    this.#w()[ACKED] += n;
  }

  onRedelivered(n: number): void {
    this.#w()[REDELIVERED] += n;
  }

  onDeadLettered(n: number): void {
    this.#w()[DEAD_LETTERED] += n;
  }

  onDropped(n: number): void {
    this.#w()[DROPPED] += n;
  }

  adjustReady(delta: number): void {
    this.#w()[READY] += delta;
  }

  adjustInFlight(delta: number): void {
    this.#w()[IN_FLIGHT] += delta;
  }

  onConnectionOpened(): void {
    const w = this.#w();
    w[CONNECTIONS] += 1;
    w[CONNECTIONS_TOTAL] += 1;
  }

  onConnectionClosed(): void {
    this.#w()[CONNECTIONS] -= 1;
  }

  onConnectionRefused(): void {
    this.#w()[CONNECTIONS_REFUSED] += 1;
  }

  onProtocolError(): void {
    this.#w()[PROTOCOL_ERRORS] += 1;
  }

  onBytesReceived(n: number): void {
    this.#w()[BYTES_RECEIVED] += n;
  }

  onBytesSent(n: number): void {
    this.#w()[BYTES_SENT] += n;
  }

  /** Pops parked on this thread now (src/engine/parked.ts keeps it current). */
  setParkedPops(n: number): void {
    this.#w()[PARKED_POPS] = n;
  }

  setLoopUtilization(fraction: number): void {
    this.#w()[LOOP_UTILIZATION] = fraction;
  }

  /** One fsync took `seconds` (the storage layer calls this after each fsync it waits for). */
  observeFsyncSeconds(seconds: number): void {
    const w = this.#w();
    w[FSYNC_COUNT] += 1;
    w[FSYNC_SUM] += seconds;
    const bounds = FSYNC_BUCKETS_SECONDS;
    for (let i = 0; i < bounds.length; i++) {
      if (seconds <= bounds[i]!) {
        w[FSYNC_BUCKETS + i] += 1;
        return;
      }
    }
    // Over the last bound: counted in +Inf only (fsyncCount).
  }

  /** A reply was held until another thread's log had what it depends on (CoreThread.onPeerLog). */
  onPeerLogWait(): void {
    this.#w()[PEER_LOG_WAITS] += 1;
  }

  /** That thread had not written within 10 ms and was rung. */
  onPeerLogRing(): void {
    this.#w()[PEER_LOG_RINGS] += 1;
  }

  /** Unpublishes and frees the block (its thread is ending and nobody folds it). */
  dispose(): void {
    this.#thread.exports.setThreadMetrics(this.#thread.id, 0);
    this.#thread.exports.free(this.address);
  }
}

const byThread = new WeakMap<CoreThread, ThreadCounters>();

/** This thread's counters (allocated and published on first use). */
export function countersOf(thread: CoreThread): ThreadCounters {
  let counters = byThread.get(thread);
  if (counters === undefined) {
    counters = new ThreadCounters(thread);
    byThread.set(thread, counters);
  }
  return counters;
}

/** Frees `thread`'s own counters, if it has any (before thread.stop()). */
export function disposeCounters(thread: CoreThread): void {
  byThread.get(thread)?.dispose();
  byThread.delete(thread);
}

/** A copy of one block, or a sum of blocks (main thread). */
export interface CounterValues {
  pushed: number;
  popped: number;
  acked: number;
  redelivered: number;
  deadLettered: number;
  dropped: number;
  ready: number;
  inFlight: number;
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  protocolErrors: number;
  bytesReceived: number;
  bytesSent: number;
  loopUtilization: number;
  parkedPops: number;
  fsyncCount: number;
  fsyncSumSeconds: number;
  /** Per FSYNC_BUCKETS_SECONDS bound, not cumulative. */
  fsyncBuckets: number[];
  peerLogWaits: number;
  peerLogRings: number;
}

export function zeroCounters(): CounterValues {
  return {
    pushed: 0, popped: 0, acked: 0, redelivered: 0, deadLettered: 0, dropped: 0, ready: 0, inFlight: 0,
    connections: 0, connectionsTotal: 0, connectionsRefused: 0, protocolErrors: 0, bytesReceived: 0, bytesSent: 0,
    loopUtilization: 0, parkedPops: 0, fsyncCount: 0, fsyncSumSeconds: 0, fsyncBuckets: FSYNC_BUCKETS_SECONDS.map(() => 0),
    peerLogWaits: 0, peerLogRings: 0,
  };
}

/** Thread `threadId`'s counters as they are now, or undefined if it published none. */
export function readCounters(core: Core, threadId: number): CounterValues | undefined {
  const address = core.exports.threadMetrics(threadId);
  if (address === 0) return undefined;
  const w = new Float64Array(core.view.memory.buffer, address, COUNTER_WORDS);
  return {
    pushed: w[PUSHED], popped: w[POPPED], acked: w[ACKED], redelivered: w[REDELIVERED],
    deadLettered: w[DEAD_LETTERED], dropped: w[DROPPED], ready: w[READY], inFlight: w[IN_FLIGHT],
    connections: w[CONNECTIONS], connectionsTotal: w[CONNECTIONS_TOTAL], connectionsRefused: w[CONNECTIONS_REFUSED],
    protocolErrors: w[PROTOCOL_ERRORS], bytesReceived: w[BYTES_RECEIVED], bytesSent: w[BYTES_SENT],
    loopUtilization: w[LOOP_UTILIZATION], parkedPops: w[PARKED_POPS], fsyncCount: w[FSYNC_COUNT], fsyncSumSeconds: w[FSYNC_SUM],
    fsyncBuckets: FSYNC_BUCKETS_SECONDS.map((_, i) => w[FSYNC_BUCKETS + i]),
    peerLogWaits: w[PEER_LOG_WAITS], peerLogRings: w[PEER_LOG_RINGS],
  };
}

/**
 * Adds `from` into `into`. Gauges of a thread's own state (connections, parked pops, loop
 * utilisation) are left out when `retiring`: a thread that ended has none of them.
 */
export function addCounters(into: CounterValues, from: CounterValues, retiring = false): void {
  into.pushed += from.pushed;
  into.popped += from.popped;
  into.acked += from.acked;
  into.redelivered += from.redelivered;
  into.deadLettered += from.deadLettered;
  into.dropped += from.dropped;
  into.ready += from.ready;
  into.inFlight += from.inFlight;
  if (!retiring) into.connections += from.connections;
  if (!retiring) into.parkedPops += from.parkedPops;
  into.connectionsTotal += from.connectionsTotal;
  into.connectionsRefused += from.connectionsRefused;
  into.protocolErrors += from.protocolErrors;
  into.bytesReceived += from.bytesReceived;
  into.bytesSent += from.bytesSent;
  into.fsyncCount += from.fsyncCount;
  into.fsyncSumSeconds += from.fsyncSumSeconds;
  for (let i = 0; i < into.fsyncBuckets.length; i++) into.fsyncBuckets[i] += from.fsyncBuckets[i]!;
  into.peerLogWaits += from.peerLogWaits;
  into.peerLogRings += from.peerLogRings;
}

/**
 * Thread `threadId` has ended (its worker exited, however): adds its counters to `retired`,
 * frees its block and clears its slot. Call before the thread id can be attached again.
 */
export function retireCounters(core: Core, threadId: number, retired: CounterValues): void {
  const values = readCounters(core, threadId);
  if (values === undefined) return;
  const address = core.exports.threadMetrics(threadId);
  addCounters(retired, values, true);
  core.exports.setThreadMetrics(threadId, 0);
  core.exports.free(address);
}

/**
 * Writes this thread's event-loop utilisation (the fraction of the last `intervalMs` its
 * loop was busy) into its counters every `intervalMs`. Returns a function that stops it.
 */
export function sampleLoopUtilization(counters: ThreadCounters, intervalMs = 1000): () => void {
  let last = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    counters.setLoopUtilization(performance.eventLoopUtilization(now, last).utilization);
    last = now;
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
