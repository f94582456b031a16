// The whole broker's statistics, built on the engine's main thread from shared memory only:
// every live thread's counter block (src/engine/metrics.ts) plus the retired totals of
// threads that ended, the core's own figures (topics, memory), and the largest topics from
// a walk of the topic table (assembly/stats.ts topicsLargest). No worker is asked anything,
// so a scrape costs the same with 1 worker or 64 and works while a worker is stuck.
// Served as engine.stats(), GET /stats and SERVER_STATS (`turbomq stats`).

import type { Core } from '../core/wasm.ts';
import { addCounters, readCounters, zeroCounters, type CounterValues } from './metrics.ts';
import { VERSION } from '../version.ts';

/** Topics listed in `largestTopics`: enough to see what piles up, bounded whatever the number of queues. */
export const LARGEST_TOPICS = 20;

/** assembly/stats.ts TopicSummary. */
const SUMMARY_BYTES = 536; // assembly/stats.ts TopicSummary

export interface ThreadStats {
  /** The worker's core thread id (1..255). */
  threadId: number;
  connections: number;
  /** Connections accepted since the worker started. */
  connectionsTotal: number;
  /** Fraction of the last second the worker's event loop was busy (0..1). */
  eventLoopUtilization: number;
}

export interface TopicSummary {
  queue: string;
  topic: string;
  /** Messages waiting to be delivered. */
  ready: number;
  /** Messages leased and not yet acked. */
  inFlight: number;
  /** Messages waiting for their delayMs. */
  delayed: number;
  /** Attached subscriptions. */
  consumers: number;
  /** Whether pops are parked on the topic. */
  waiting: boolean;
}

export interface MessageStats {
  pushed: number;
  popped: number;
  acked: number;
  redelivered: number;
  deadLettered: number;
  dropped: number;
  ready: number;
  inFlight: number;
  delayed: number;
}

export interface EngineStats {
  version: string;
  uptimeMs: number;
  /** What GET /readyz says. */
  ready: boolean;
  urls: string[];
  /** One entry per worker thread. */
  threads: ThreadStats[];
  /** Open client connections over all workers. */
  connections: number;
  /** Pops waiting for a message over all workers (network connections; turbomq_parked_pops). */
  parkedPops: number;
  topics: number;
  /** Size of the shared memory. */
  memoryBytes: number;
  /** Bytes allocated in it. */
  bytesInUse: number;
  /** Bytes stored messages take (counted against messageLimitBytes). */
  messageBytes: number;
  messageLimitBytes: number;
  messages: MessageStats;
  /** The topics with the most ready messages, largest first (at most LARGEST_TOPICS). */
  largestTopics: TopicSummary[];
  /** Workers started to replace ones that died. */
  workerRestarts: number;
  /** With a data directory: where, the fsync policy, what the last start recovered, fsyncs so far. */
  storage?: StorageStats;
}

export interface StorageStats {
  dir: string;
  fsync: string;
  /** Messages ready and delayed, and dedupId windows still open, that the start restored; how long it took. */
  recovered: { ready: number; delayed: number; dedupIds: number; ms: number };
  fsyncs: number;
  fsyncSeconds: number;
  /** Replies held until another worker's log had what they depend on, and how many of those rang it (docs/durability.md, "Across threads"). */
  peerLogWaits: number;
  peerLogRings: number;
}

/** What stats are built from (the engine fills it in). */
export interface StatsSource {
  core: Core | undefined;
  memory: WebAssembly.Memory | undefined;
  mainThreadId: number;
  workerThreadIds: number[];
  retired: CounterValues;
  startedAt: number;
  ready: boolean;
  urls: string[];
  messageLimitBytes: number;
  workerRestarts: number;
  storage?: Omit<StorageStats, 'fsyncs' | 'fsyncSeconds' | 'peerLogWaits' | 'peerLogRings'>;
}

/** Counters summed over every live thread and the retired ones; per worker on the side. */
export function sumCounters(source: StatsSource): { total: CounterValues; workers: Map<number, CounterValues> } {
  const total = zeroCounters();
  addCounters(total, source.retired);
  const workers = new Map<number, CounterValues>();
  if (source.core === undefined) return { total, workers };
  const main = readCounters(source.core, source.mainThreadId);
  if (main !== undefined) addCounters(total, main);
  for (const id of source.workerThreadIds) {
    const values = readCounters(source.core, id);
    if (values === undefined) continue;
    workers.set(id, values);
    addCounters(total, values);
  }
  return { total, workers };
}

const textDecoder = new TextDecoder();

/** The `max` topics with the most ready messages, largest first. */
export function largestTopics(core: Core, max = LARGEST_TOPICS): TopicSummary[] {
  const e = core.exports;
  const out = e.alloc(max * SUMMARY_BYTES);
  if (out === 0) return [];
  try {
    const count = e.topicsLargest(out, max);
    // A copy: TextDecoder refuses views of shared memory.
    const bytes = core.view.copy(out, count * SUMMARY_BYTES);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const topics: TopicSummary[] = [];
    for (let i = 0; i < count; i++) {
      const p = i * SUMMARY_BYTES;
      const ql = bytes[p + 20]!, tl = bytes[p + 21]!;
      topics.push({
        queue: textDecoder.decode(bytes.subarray(p + 24, p + 24 + ql)),
        topic: textDecoder.decode(bytes.subarray(p + 24 + ql, p + 24 + ql + tl)),
        ready: dv.getUint32(p, true),
        inFlight: dv.getUint32(p + 12, true),
        delayed: dv.getUint32(p + 16, true),
        consumers: dv.getUint32(p + 4, true),
        waiting: dv.getUint32(p + 8, true) !== 0,
      });
    }
    return topics.sort((a, b) => b.ready - a.ready || a.queue.localeCompare(b.queue) || a.topic.localeCompare(b.topic));
  } finally {
    e.free(out);
  }
}

/**
 * What the core counts itself: events that happen inside it (expiry, dead-letter moves,
 * overflow drops; assembly/stats.ts eventCount, per thread, summed) and the ready /
 * in-flight / delayed totals (a walk over the topic table: exact, for scrapes only).
 */
export function coreMessageStats(core: Core | undefined): Omit<MessageStats, 'pushed' | 'popped'> {
  const e = core?.exports;
  if (e === undefined) return { acked: 0, redelivered: 0, deadLettered: 0, dropped: 0, ready: 0, inFlight: 0, delayed: 0 };
  const out = e.alloc(24);
  let ready = 0, inFlight = 0, delayed = 0;
  if (out !== 0) {
    e.messageTotals(out);
    ready = core!.view.f64(out);
    inFlight = core!.view.f64(out + 8);
    delayed = core!.view.f64(out + 16);
    e.free(out);
  }
  return {
    dropped: Number(e.eventCount(0)),
    deadLettered: Number(e.eventCount(1)),
    redelivered: Number(e.eventCount(2)),
    acked: Number(e.eventCount(3)),
    ready, inFlight, delayed,
  };
}

export function collectStats(source: StatsSource): EngineStats {
  const { total, workers } = sumCounters(source);
  const core = source.core;
  const e = core?.exports;
  return {
    version: VERSION,
    uptimeMs: source.startedAt === 0 ? 0 : Date.now() - source.startedAt,
    ready: source.ready,
    urls: source.urls,
    threads: source.workerThreadIds.map((threadId) => {
      const w = workers.get(threadId);
      return { threadId, connections: w?.connections ?? 0, connectionsTotal: w?.connectionsTotal ?? 0, eventLoopUtilization: w?.loopUtilization ?? 0 };
    }),
    connections: total.connections,
    parkedPops: total.parkedPops,
    topics: e ? e.topicCount() : 0,
    memoryBytes: source.memory ? source.memory.buffer.byteLength : 0,
    bytesInUse: e ? Number(e.bytesInUse()) : 0,
    messageBytes: e ? Number(e.queueBytes()) : 0,
    messageLimitBytes: source.messageLimitBytes,
    messages: { pushed: total.pushed, popped: total.popped, ...coreMessageStats(core) },
    largestTopics: core ? largestTopics(core) : [],
    workerRestarts: source.workerRestarts,
    ...(source.storage === undefined ? {} : { storage: { ...source.storage, fsyncs: total.fsyncCount, fsyncSeconds: total.fsyncSumSeconds, peerLogWaits: total.peerLogWaits, peerLogRings: total.peerLogRings } }),
  };
}
