// One client thread's share of a load run: some of the producers and some of the consumers,
// each on its own connection, on this thread's event loop. runLoad (src/cli/loadgen.ts) runs
// one share on its own thread (clientThreads 1) or one per worker (loadgen/worker.ts), and adds
// up their ShareResults.
//
// Message data layout (little-endian), padded with zeros to the requested size:
//
//   0           4           8                       16
//   ├───────────┼───────────┼───────────────────────┼─ ─ ─ ─
//   │ producer  │ seq  u32  │ sentAt f64 (ms, the   │ padding
//   │ u32       │           │ run's shared clock)   │
//
// `sentAt` is taken just before the send, so the end-to-end latency of a message is the time
// from its producer's send call to the moment its consumer holds it, on whichever threads they
// run (see clockFrom). Each producer has a slice of the shared `seen` bitmap: a second arrival
// is a duplicate, a bit never set is a lost message.
//
// Topics: a producer's j-th send (one message, or one batch) goes to topic (j * P + p) % T;
// consumer c pops the topics t with t % C == c in turn (all consumers share topic 0 when
// T == 1). Pops wait at most popTimeoutMs, so a consumer parked on an idle topic moves on.

import { HEADER_BYTES, type ConsumerConnection, type Driver, type ProducerConnection, type Workload } from './types.ts';
import { LatencyHistogram, type HistogramData } from './histogram.ts';
import { SharedState, PRODUCERS_LEFT, LAST_RECEIVE_MS, PRODUCERS_DONE_MS, SENT, RECEIVED, UNIQUE } from './shared.ts';

/** What one share counted; all counts exact, times on the run's shared clock. */
export interface ShareResult {
  sent: number;
  received: number;
  unique: number;
  duplicates: number;
  corrupt: number;
  capped: boolean;
  /** 0 when the share has no producers. */
  lastSendAt: number;
  /** 0 when the share received nothing. */
  lastReceiveAt: number;
  latency: HistogramData;
  popLatency: HistogramData;
}

/** Messages per producer: `messages` spread as evenly as possible. */
export function messagesPerProducer(w: Workload): number[] {
  return Array.from({ length: w.producers }, (_, p) => Math.floor(w.messages / w.producers) + (p < w.messages % w.producers ? 1 : 0));
}

/** Which producers and consumers run on client thread `thread` of `threads`. */
export function shareOf(w: Workload, thread: number, threads: number): { producers: number[]; consumers: number[] } {
  const producers: number[] = [], consumers: number[] = [];
  for (let k = 0; k < w.producers + w.consumers; k++) {
    if (k % threads !== thread) continue;
    if (k < w.producers) producers.push(k);
    else consumers.push(k - w.producers);
  }
  return { producers, consumers };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export class LoadShare {
  readonly #driver: Driver;
  readonly #w: Workload;
  readonly #shared: SharedState;
  readonly #producers: number[];
  readonly #consumers: number[];
  readonly #clock: () => number;
  readonly #topicNames: string[];
  readonly #perProducer: number[];
  #producerConns: ProducerConnection[] = [];
  #consumerConns: ConsumerConnection[] = [];

  #sent = 0;
  #received = 0;
  #unique = 0;
  #duplicates = 0;
  #corrupt = 0;
  #capped = false;
  #lastSendAt = 0;
  #lastReceiveAt = 0;
  readonly #latency = new LatencyHistogram();
  readonly #popLatency = new LatencyHistogram();

  constructor(driver: Driver, w: Workload, shared: SharedState, share: { producers: number[]; consumers: number[] }, clock: () => number) {
    this.#driver = driver;
    this.#w = w;
    this.#shared = shared;
    this.#producers = share.producers;
    this.#consumers = share.consumers;
    this.#clock = clock;
    const prefix = w.topicPrefix ?? 't';
    this.#topicNames = Array.from({ length: w.topics }, (_, i) => `${prefix}${i}`);
    this.#perProducer = messagesPerProducer(w);
  }

  /** Opens this share's connections (before the run's start, so connecting is not timed). */
  async connect(): Promise<void> {
    this.#producerConns = await Promise.all(this.#producers.map(() => this.#driver.producer()));
    this.#consumerConns = await Promise.all(this.#consumers.map(() => this.#driver.consumer()));
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#producerConns, ...this.#consumerConns].map((conn) => conn.close()));
  }

  /** Runs every producer and consumer of this share from `startAt` (shared clock) until the run is drained. */
  async run(startAt: number): Promise<ShareResult> {
    const fail = (err: unknown) => {
      this.#shared.abort(); // the other threads stop too; runLoad reports this error
      throw err;
    };
    await Promise.all([
      ...this.#producers.map((p, i) => this.#produce(p, this.#producerConns[i]!, startAt).catch(fail)),
      ...this.#consumers.map((c, i) => this.#consume(c, this.#consumerConns[i]!, startAt).catch(fail)),
    ]);
    return {
      sent: this.#sent, received: this.#received, unique: this.#unique, duplicates: this.#duplicates, corrupt: this.#corrupt,
      capped: this.#capped, lastSendAt: this.#lastSendAt, lastReceiveAt: this.#lastReceiveAt,
      latency: this.#latency.data(), popLatency: this.#popLatency.data(),
    };
  }

  // One buffer per send, a view per message: the generator should cost little next to the client.
  #items(p: number, firstSeq: number, n: number): Uint8Array[] {
    const bytes = new Uint8Array(n * this.#w.sizeBytes);
    const items = new Array<Uint8Array>(n);
    for (let i = 0; i < n; i++) items[i] = bytes.subarray(i * this.#w.sizeBytes, (i + 1) * this.#w.sizeBytes);
    return this.#stamp(items, p, firstSeq);
  }

  /** Writes the headers of `items` (views of one buffer from 0, `sizeBytes` apart: #items) for messages firstSeq.. of producer p. */
  #stamp(items: Uint8Array[], p: number, firstSeq: number): Uint8Array[] {
    const size = this.#w.sizeBytes;
    const dv = new DataView(items[0]!.buffer);
    const now = this.#clock();
    for (let i = 0; i < items.length; i++) {
      const at = i * size;
      dv.setUint32(at, p, true);
      dv.setUint32(at + 4, firstSeq + i, true);
      dv.setFloat64(at + 8, now, true);
    }
    return items;
  }

  #acknowledged(n: number): void {
    this.#sent += n;
    Atomics.add(this.#shared.counts, SENT, BigInt(n));
  }

  async #produce(p: number, conn: ProducerConnection, startAt: number): Promise<void> {
    try {
      await (this.#w.rate ? this.#produceAtRate(p, conn, startAt) : this.#produceClosedLoop(p, conn, startAt));
    } finally {
      const now = this.#clock();
      this.#lastSendAt = Math.max(this.#lastSendAt, now);
      if (Atomics.sub(this.#shared.ctrl, PRODUCERS_LEFT, 1) === 1) Atomics.store(this.#shared.ctrl, PRODUCERS_DONE_MS, Math.ceil(now - startAt));
    }
  }

  async #produceClosedLoop(p: number, conn: ProducerConnection, startAt: number): Promise<void> {
    const { producers: P, topics: T, batch: B } = this.#w;
    const total = this.#perProducer[p]!;
    const deadline = startAt + this.#w.durationMs;
    let seq = 0;
    // One batch of items for the whole loop, its headers rewritten for each send: the previous
    // send has resolved (the broker answered, so every driver has written those bytes) before
    // the next is stamped. A fresh array and view per message was the load generator's largest
    // allocation, paid by every system it measures.
    let full: Uint8Array[] | undefined;
    for (let j = 0; seq < total && !this.#shared.aborted; j++) {
      if (this.#clock() >= deadline) { this.#capped = true; break; }
      const n = Math.min(B, total - seq);
      let items: Uint8Array[];
      if (n < B) items = this.#items(p, seq, n);
      else if (full === undefined) items = full = this.#items(p, seq, n);
      else items = this.#stamp(full, p, seq);
      await conn.send(this.#topicNames[(j * P + p) % T]!, items);
      seq += n;
      this.#acknowledged(n);
    }
  }

  // Open loop: sends are due at a fixed rate whether or not earlier ones were answered
  // (up to a window of 4,096 in flight), so latency is not hidden by coordinated omission.
  async #produceAtRate(p: number, conn: ProducerConnection, startAt: number): Promise<void> {
    const { producers: P, topics: T, batch: B } = this.#w;
    const total = this.#perProducer[p]!;
    const deadline = startAt + this.#w.durationMs;
    const perMs = this.#w.rate! / P / 1000;
    let seq = 0, j = 0, inFlight = 0;
    let failure: unknown;
    while (seq < total && failure === undefined && !this.#shared.aborted) {
      const now = this.#clock();
      if (now >= deadline) { this.#capped = true; break; }
      const due = Math.min(total, Math.floor((now - startAt) * perMs) + 1);
      while (seq < due && inFlight < 4096) {
        const n = Math.min(B, due - seq);
        inFlight++;
        conn.send(this.#topicNames[(j * P + p) % T]!, this.#items(p, seq, n)).then(
          () => { inFlight--; this.#acknowledged(n); },
          (err: unknown) => { inFlight--; failure ??= err; },
        );
        seq += n;
        j++;
      }
      await sleep(1);
    }
    while (inFlight > 0 && failure === undefined) await sleep(1);
    if (failure !== undefined) throw failure;
  }

  async #consume(c: number, conn: ConsumerConnection, startAt: number): Promise<void> {
    const w = this.#w, shared = this.#shared, ctrl = shared.ctrl, seen = shared.seen;
    const T = w.topics, C = w.consumers, popMax = w.consumerBatch ?? w.batch;
    const popTimeoutMs = w.popTimeoutMs ?? 100;
    const drainIdleMs = w.drainIdleMs ?? 3000;
    const mine = T <= C ? [c % T] : this.#topicNames.map((_, t) => t).filter((t) => t % C === c);
    const seenOffset = shared.seenOffset, perProducer = this.#perProducer;
    // Header fields are read through one scratch copy, not a DataView per message.
    const scratch = new Uint8Array(HEADER_BYTES);
    const scratchU32 = new Uint32Array(scratch.buffer, 0, 2);
    const scratchF64 = new Float64Array(scratch.buffer, 8, 1);
    let k = 0;
    for (;;) {
      if (shared.aborted) return;
      if (Atomics.load(ctrl, PRODUCERS_LEFT) === 0) {
        if (shared.unique >= shared.sent) return;
        const idleSinceMs = Math.max(Atomics.load(ctrl, PRODUCERS_DONE_MS), Atomics.load(ctrl, LAST_RECEIVE_MS));
        if (this.#clock() - startAt - idleSinceMs > drainIdleMs) return;
      }
      const topic = this.#topicNames[mine[k++ % mine.length]!]!;
      const t0 = this.#clock();
      const items = await conn.receive(topic, popMax, popTimeoutMs);
      if (items.length === 0) continue;
      const now = this.#clock();
      this.#lastReceiveAt = now;
      this.#popLatency.record(now - t0);
      this.#received += items.length;
      const uniqueBefore = this.#unique;
      for (const data of items) {
        if (data.length < HEADER_BYTES) { this.#corrupt++; continue; }
        let p: number, seq: number, sentAt: number;
        if (littleEndian) {
          // Byte by byte: a subarray to copy from would be an allocation per message.
          for (let b = 0; b < HEADER_BYTES; b++) scratch[b] = data[b]!;
          p = scratchU32[0]!;
          seq = scratchU32[1]!;
          sentAt = scratchF64[0]!;
        } else {
          const dv = new DataView(data.buffer, data.byteOffset, HEADER_BYTES);
          p = dv.getUint32(0, true);
          seq = dv.getUint32(4, true);
          sentAt = dv.getFloat64(8, true);
        }
        if (p >= perProducer.length || seq >= perProducer[p]!) { this.#corrupt++; continue; }
        const mask = 1 << (seq & 7);
        if (Atomics.or(seen, seenOffset[p]! + (seq >>> 3), mask) & mask) { this.#duplicates++; continue; }
        this.#unique++;
        this.#latency.record(now - sentAt);
      }
      // Counted after the bits are set: once `unique` reaches `sent`, every message is checked.
      Atomics.add(shared.counts, RECEIVED, BigInt(items.length));
      if (this.#unique > uniqueBefore) Atomics.add(shared.counts, UNIQUE, BigInt(this.#unique - uniqueBefore));
      Atomics.store(ctrl, LAST_RECEIVE_MS, Math.ceil(now - startAt));
    }
  }
}
