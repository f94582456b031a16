// The load generator behind `turbomq bench`, bench/broker.bench.ts and bench/compare: producers
// and consumers, each on its own connection, moving numbered messages through a broker and
// checking that every one arrives exactly once.
//
// It knows brokers only through a Driver (connect a producer, connect a consumer), so the same
// workload runs against turbomq (turbomqDriver below), Redis, NATS and a raw-TCP floor
// (bench/compare/drivers.ts). All clients run on this thread's event loop.
//
// Message data layout (little-endian), padded with zeros to the requested size:
//
//   0           4           8                       16
//   ├───────────┼───────────┼───────────────────────┼─ ─ ─ ─
//   │ producer  │ seq  u32  │ sentAt f64 (ms,       │ padding
//   │ u32       │           │ performance.now())    │
//
// `sentAt` is taken just before the send, so the end-to-end latency of a message is the time
// from its producer's send call to the moment its consumer holds it. Each producer has a
// bitmap of seqs seen: a second arrival is a duplicate, a bit never set is a lost message.
//
// Topics: a producer's j-th send (one message, or one batch) goes to topic (j * P + p) % T;
// consumer c pops the topics t with t % C == c in turn (all consumers share topic 0 when
// T == 1). Pops wait at most popTimeoutMs, so a consumer parked on an idle topic moves on.

import { TurboClient, type ClientOptions } from '../client/client.ts';
import type { Queue } from '../client/queue.ts';

/** Bytes every message needs for producer, seq and timestamp. */
export const HEADER_BYTES = 16;

// ── drivers ────────────────────────────────────────────────────────────────────────────

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

export interface Driver {
  readonly name: string;
  producer(): Promise<ProducerConnection>;
  consumer(): Promise<ConsumerConnection>;
  /** Called once before a run with the topic names it will use (e.g. to subscribe). */
  prepare?(topics: string[]): Promise<void>;
  close?(): Promise<void>;
}

/** turbomq over TurboClient: push / pushMany, pop / popMany. */
export function turbomqDriver(url: string, queueName = 'bench', options: ClientOptions = {}): Driver {
  const clients: TurboClient[] = [];
  const connect = async (): Promise<Queue> => {
    const client = await TurboClient.connect(url, options);
    clients.push(client);
    return client.getQueue(queueName);
  };
  return {
    name: 'turbomq',
    async producer() {
      const queue = await connect();
      const client = clients[clients.length - 1]!;
      return {
        send: (topic, items) => items.length === 1 ? queue.push(topic, items[0]!) : queue.pushMany(topic, items),
        close: () => client.close(),
      };
    },
    async consumer() {
      const queue = await connect();
      const client = clients[clients.length - 1]!;
      return {
        async receive(topic, max, timeoutMs) {
          if (max === 1) {
            const m = await queue.pop(topic, timeoutMs);
            return m === null ? [] : [m.data];
          }
          const ms = await queue.popMany(topic, max, timeoutMs);
          const out = new Array<Uint8Array>(ms.length);
          for (let i = 0; i < ms.length; i++) out[i] = ms[i]!.data;
          return out;
        },
        close: () => client.close(),
      };
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      clients.length = 0;
    },
  };
}

// ── workload and result ────────────────────────────────────────────────────────────────

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
  /** Longest a pop may wait before its consumer tries its next topic. Default 100. */
  popTimeoutMs?: number;
  /** After the producers finish, how long consumers may go without a message before the run gives up. Default 3,000. */
  drainIdleMs?: number;
  /** Topic names are `${topicPrefix}${i}`. Default 't'. */
  topicPrefix?: string;
  /** Called about every progressEveryMs with the running counts. */
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

export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
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

/** Rejects workloads that cannot run; the message names the field. */
export function checkWorkload(w: Workload): void {
  const int = (name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  };
  int('producers', w.producers, 1, 1024);
  int('consumers', w.consumers, 1, 1024);
  int('messages', w.messages, 1, 0xffffffff);
  int('size', w.sizeBytes, HEADER_BYTES, 64 * 1024 * 1024);
  int('batch', w.batch, 1, 1_000_000);
  if (w.consumerBatch !== undefined) int('consumerBatch', w.consumerBatch, 1, 1_000_000);
  int('topics', w.topics, 1, 10_000_000);
  if (!(w.durationMs > 0)) throw new RangeError(`duration must be > 0, got ${w.durationMs}`);
  if (w.rate !== undefined && !(w.rate >= 0)) throw new RangeError(`rate must be >= 0, got ${w.rate}`);
}

// ── latency histogram ──────────────────────────────────────────────────────────────────

/**
 * Latencies in µs, bounded memory: exact below 1,024 µs, then 64 buckets per power of two
 * (under 1.6 % error) up to 2^31 µs. Max and mean are exact.
 */
export class LatencyHistogram {
  static readonly #LINEAR = 1024;
  static readonly #SUB = 64;
  readonly #counts = new Float64Array(LatencyHistogram.#LINEAR + 22 * LatencyHistogram.#SUB);
  count = 0;
  #sum = 0;
  #max = 0;

  record(ms: number): void {
    const us = ms < 0 ? 0 : ms * 1000;
    this.count++;
    this.#sum += us;
    if (us > this.#max) this.#max = us;
    this.#counts[LatencyHistogram.#bucket(us)]!++;
  }

  static #bucket(us: number): number {
    const v = Math.floor(us);
    if (v < LatencyHistogram.#LINEAR) return v;
    const e = Math.min(31, 31 - Math.clz32(v)); // 10..31
    const sub = Math.floor((v / 2 ** e - 1) * LatencyHistogram.#SUB);
    return LatencyHistogram.#LINEAR + (e - 10) * LatencyHistogram.#SUB + Math.min(sub, LatencyHistogram.#SUB - 1);
  }

  /** Upper edge of bucket i, in µs. */
  static #edge(i: number): number {
    if (i < LatencyHistogram.#LINEAR) return i + 1;
    const k = i - LatencyHistogram.#LINEAR;
    const e = 10 + Math.floor(k / LatencyHistogram.#SUB);
    return 2 ** e * (1 + ((k % LatencyHistogram.#SUB) + 1) / LatencyHistogram.#SUB);
  }

  /** The latency (ms) at quantile q in 0..1. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.min(LatencyHistogram.#edge(i), this.#max) / 1000;
    }
    return this.#max / 1000;
  }

  summary(): Percentiles {
    return {
      count: this.count,
      mean: this.count === 0 ? 0 : this.#sum / this.count / 1000,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p99: this.quantile(0.99),
      p999: this.quantile(0.999),
      max: this.#max / 1000,
    };
  }
}

// ── the run ────────────────────────────────────────────────────────────────────────────

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs one workload through `driver` and reports throughput, latency and exactly-once. */
export async function runLoad(driver: Driver, workload: Workload): Promise<LoadResult> {
  checkWorkload(workload);
  const w = workload;
  const P = w.producers, C = w.consumers, T = w.topics, B = w.batch, popMax = w.consumerBatch ?? w.batch;
  const popTimeoutMs = w.popTimeoutMs ?? 100;
  const drainIdleMs = w.drainIdleMs ?? 3000;
  const prefix = w.topicPrefix ?? 't';
  const topicNames = Array.from({ length: T }, (_, i) => `${prefix}${i}`);
  const perProducer = Array.from({ length: P }, (_, p) => Math.floor(w.messages / P) + (p < w.messages % P ? 1 : 0));
  const seen = perProducer.map((n) => new Uint8Array((n + 7) >>> 3));
  const latency = new LatencyHistogram();
  const popLatency = new LatencyHistogram();

  let sent = 0, received = 0, unique = 0, duplicates = 0, corrupt = 0;
  let producersLeft = P;
  let producersDoneAt = 0;
  let lastReceiveAt = 0;
  let capped = false;

  await driver.prepare?.(topicNames);
  const producerConns = await Promise.all(perProducer.map(() => driver.producer()));
  const consumerConns = await Promise.all(Array.from({ length: C }, () => driver.consumer()));

  const start = performance.now();
  const sendDeadline = start + w.durationMs;
  let lastSendAt = start;

  // One buffer per send, a view per message: the generator should cost little next to the client.
  const makeItems = (p: number, firstSeq: number, n: number): Uint8Array[] => {
    const items = new Array<Uint8Array>(n);
    const size = w.sizeBytes;
    const bytes = new Uint8Array(n * size);
    const dv = new DataView(bytes.buffer);
    const now = performance.now();
    for (let i = 0; i < n; i++) {
      const at = i * size;
      dv.setUint32(at, p, true);
      dv.setUint32(at + 4, firstSeq + i, true);
      dv.setFloat64(at + 8, now, true);
      items[i] = bytes.subarray(at, at + size);
    }
    return items;
  };

  const produceClosedLoop = async (p: number): Promise<void> => {
    const conn = producerConns[p]!;
    const total = perProducer[p]!;
    let seq = 0;
    for (let j = 0; seq < total; j++) {
      if (performance.now() >= sendDeadline) { capped = true; break; }
      const n = Math.min(B, total - seq);
      await conn.send(topicNames[(j * P + p) % T]!, makeItems(p, seq, n));
      seq += n;
      sent += n;
    }
  };

  // Open loop: sends are due at a fixed rate whether or not earlier ones were answered
  // (up to a window of 4,096 in flight), so latency is not hidden by coordinated omission.
  const produceAtRate = async (p: number): Promise<void> => {
    const conn = producerConns[p]!;
    const total = perProducer[p]!;
    const perMs = w.rate! / P / 1000;
    let seq = 0, j = 0, inFlight = 0;
    let failure: unknown;
    const t0 = performance.now();
    while (seq < total && failure === undefined) {
      const now = performance.now();
      if (now >= sendDeadline) { capped = true; break; }
      const due = Math.min(total, Math.floor((now - t0) * perMs) + 1);
      while (seq < due && inFlight < 4096) {
        const n = Math.min(B, due - seq);
        inFlight++;
        conn.send(topicNames[(j * P + p) % T]!, makeItems(p, seq, n)).then(
          () => { inFlight--; sent += n; },
          (err: unknown) => { inFlight--; failure ??= err; },
        );
        seq += n;
        j++;
      }
      await sleep(1);
    }
    while (inFlight > 0 && failure === undefined) await sleep(1);
    if (failure !== undefined) throw failure;
  };

  const produce = async (p: number): Promise<void> => {
    try {
      await (w.rate ? produceAtRate(p) : produceClosedLoop(p));
    } finally {
      lastSendAt = Math.max(lastSendAt, performance.now());
      if (--producersLeft === 0) producersDoneAt = performance.now();
    }
  };

  // Header fields are read through one scratch copy, not a DataView per message.
  const scratch = new Uint8Array(HEADER_BYTES);
  const scratchU32 = new Uint32Array(scratch.buffer, 0, 2);
  const scratchF64 = new Float64Array(scratch.buffer, 8, 1);
  const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

  const consume = async (c: number): Promise<void> => {
    const conn = consumerConns[c]!;
    const mine = T <= C ? [c % T] : topicNames.map((_, t) => t).filter((t) => t % C === c);
    let k = 0;
    for (;;) {
      if (producersLeft === 0) {
        if (received >= sent) return;
        if (performance.now() - Math.max(producersDoneAt, lastReceiveAt) > drainIdleMs) return;
      }
      const topic = topicNames[mine[k++ % mine.length]!]!;
      const t0 = performance.now();
      const items = await conn.receive(topic, popMax, popTimeoutMs);
      if (items.length === 0) continue;
      const now = performance.now();
      lastReceiveAt = now;
      popLatency.record(now - t0);
      for (const data of items) {
        received++;
        if (data.length < HEADER_BYTES) { corrupt++; continue; }
        let p: number, seq: number, sentAt: number;
        if (littleEndian) {
          scratch.set(data.subarray(0, HEADER_BYTES));
          p = scratchU32[0]!;
          seq = scratchU32[1]!;
          sentAt = scratchF64[0]!;
        } else {
          const dv = new DataView(data.buffer, data.byteOffset, HEADER_BYTES);
          p = dv.getUint32(0, true);
          seq = dv.getUint32(4, true);
          sentAt = dv.getFloat64(8, true);
        }
        const bits = seen[p];
        if (bits === undefined || seq >= perProducer[p]!) { corrupt++; continue; }
        const mask = 1 << (seq & 7);
        if (bits[seq >>> 3]! & mask) { duplicates++; continue; }
        bits[seq >>> 3]! |= mask;
        unique++;
        latency.record(now - sentAt);
      }
    }
  };

  let timer: ReturnType<typeof setInterval> | undefined;
  if (w.onProgress !== undefined) {
    let lastAt = start, lastReceived = 0;
    timer = setInterval(() => {
      const now = performance.now();
      w.onProgress!({ elapsedMs: now - start, sent, received, rate: (received - lastReceived) / ((now - lastAt) / 1000) });
      lastAt = now;
      lastReceived = received;
    }, w.progressEveryMs ?? 250);
  }
  try {
    await Promise.all([
      ...producerConns.map((_, p) => produce(p)),
      ...consumerConns.map((_, c) => consume(c)),
    ]);
  } finally {
    if (timer !== undefined) clearInterval(timer);
    await Promise.allSettled([...producerConns, ...consumerConns].map((conn) => conn.close()));
  }

  const producerMs = lastSendAt - start;
  const consumerMs = (lastReceiveAt || performance.now()) - start;
  const MB = 1024 * 1024;
  const { onProgress: _ignored, ...plain } = w;
  return {
    driver: driver.name,
    workload: plain,
    sent, received, unique, duplicates, corrupt,
    missing: sent - unique,
    exactlyOnce: unique === sent && duplicates === 0 && corrupt === 0,
    cappedByDuration: capped,
    producerMs,
    consumerMs,
    sendRate: sent / (producerMs / 1000),
    receiveRate: received / (consumerMs / 1000),
    sendMBps: sent * w.sizeBytes / MB / (producerMs / 1000),
    receiveMBps: received * w.sizeBytes / MB / (consumerMs / 1000),
    latencyMs: latency.summary(),
    popLatencyMs: popLatency.summary(),
  };
}

// ── small helpers shared by the bench scripts ───────────────────────────────────────────

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** 1234567 -> "1.23 M", 12345 -> "12.3 k". */
export function formatRate(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)} k`;
  return n.toFixed(0);
}

/** A latency in ms, with a unit that keeps 2-3 significant digits. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(0)} ms`;
}
