// The load generator's vocabulary: drivers (how to reach one kind of broker), workloads (what
// to send) and results (what came back). Shared by the thread that runs a load
// (src/cli/loadgen.ts), each client thread (loadgen/worker.ts, loadgen/share.ts) and the
// drivers in bench/compare.

import type { Percentiles } from './histogram.ts';

/** Bytes every message needs for producer, seq and timestamp. */
export const HEADER_BYTES = 16;

export interface ProducerConnection {
  /** Stores `items` (1 = a single push, more = one batch) in `topic`; resolves when the broker has them. */
  send(topic: string, items: Uint8Array[]): Promise<void>;
  close(): Promise<void>;
}

export interface ConsumerConnection {
  /** Up to `max` messages of `topic`, waiting at most `timeoutMs` for the first; [] when none came. */
  receive(topic: string, max: number, timeoutMs: number): Promise<Uint8Array[]>;
  close(): Promise<void>;
}

/** One run, as every thread's driver sees it. */
export interface RunInfo {
  /** Unique per run in this process, [a-z0-9]: for stream, subject or queue names. */
  id: string;
  /** The topic names the run uses, `${topicPrefix}${i}`. */
  topics: string[];
}

export interface Driver {
  readonly name: string;
  producer(): Promise<ProducerConnection>;
  consumer(): Promise<ConsumerConnection>;
  /** Once per run, on the thread that calls runLoad, before any connection opens (e.g. create a stream). */
  setup?(run: RunInfo): Promise<void>;
  /** Once per run on every client thread, before its connections open (e.g. names derived from run.id). */
  prepare?(run: RunInfo): Promise<void>;
  /** Once per run after every client thread is done, where setup ran (e.g. delete the stream). */
  teardown?(run: RunInfo): Promise<void>;
  close?(): Promise<void>;
}

/**
 * How each client thread makes its own Driver: `(await import(module))[exportName](...args)`.
 * Needed for clientThreads > 1 (a Driver holds connections, which do not cross threads);
 * args must be structured-cloneable.
 */
export interface DriverSpec {
  module: string;
  exportName: string;
  args: unknown[];
}

export interface Workload {
  producers: number;
  consumers: number;
  /** Messages in total, spread over the producers. */
  messages: number;
  /** Bytes per message, >= HEADER_BYTES. */
  sizeBytes: number;
  /** Messages per send and per pop (1 = single push / pop). */
  batch: number;
  /** Most messages one pop may take, when it differs from `batch` (e.g. single sends, batched pops). */
  consumerBatch?: number;
  topics: number;
  /** Producers stop sending after this long (the run still drains what was sent). */
  durationMs: number;
  /** Total messages per second, paced (open loop, single sends pipelined); 0 = as fast as acknowledged. */
  rate?: number;
  /**
   * Threads the producers and consumers are spread over (node:worker_threads), round robin:
   * producers first, then consumers. Default 1: all on the calling thread. More needs a DriverSpec.
   */
  clientThreads?: number;
  /** Longest a pop may wait before its consumer tries its next topic. Default 100. */
  popTimeoutMs?: number;
  /** After the producers finish, how long consumers may go without a message before the run gives up. Default 3,000. */
  drainIdleMs?: number;
  /** Topic names are `${topicPrefix}${i}`. Default 't'. */
  topicPrefix?: string;
  /** Called about every progressEveryMs with the running counts (on the calling thread). */
  onProgress?(p: Progress): void;
  progressEveryMs?: number;
}

export interface Progress {
  elapsedMs: number;
  sent: number;
  received: number;
  /** Messages per second received over the last interval. */
  rate: number;
}

export interface LoadResult {
  driver: string;
  workload: Omit<Workload, 'onProgress'>;
  /** Messages producers sent (and the broker acknowledged). */
  sent: number;
  /** Messages consumers received, duplicates included. */
  received: number;
  unique: number;
  duplicates: number;
  missing: number;
  /** Messages whose header did not name a producer and seq of this run. */
  corrupt: number;
  exactlyOnce: boolean;
  /** The duration cap ended the sending before `messages` were sent. */
  cappedByDuration: boolean;
  /** From the first send to the last acknowledged send. */
  producerMs: number;
  /** From the first send to the last message received. */
  consumerMs: number;
  sendRate: number;
  receiveRate: number;
  sendMBps: number;
  receiveMBps: number;
  /** End to end, send call to message in the consumer's hands, in ms. */
  latencyMs: Percentiles;
  /** Each pop request that returned messages, call to reply, in ms (includes time parked). */
  popLatencyMs: Percentiles;
}
