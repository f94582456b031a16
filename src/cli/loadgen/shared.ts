// What the client threads of one load run share: a clock, the run's live counters and the
// bitmap of every message seen. Everything is in SharedArrayBuffers updated with Atomics, so
// the exactly-once check is exact however the consumers are spread over threads: a consumer
// sets a message's bit with Atomics.or, and a bit that was already set is a duplicate.
//
//   ctrl    Int32Array    [producersLeft, lastReceiveMs, producersDoneMs, abort]
//                         (times in ms since the run's start)
//   counts  BigInt64Array [sent, received, unique]  (for the drain and progress only: the
//                         result adds up each thread's own exact counts). Consumers stop once
//                         unique reaches sent: received would count duplicates and stop early.
//   seen    Uint8Array    one bit per message: producer p's seq s is bit s of its slice

export const PRODUCERS_LEFT = 0, LAST_RECEIVE_MS = 1, PRODUCERS_DONE_MS = 2, ABORT = 3;
const CTRL_WORDS = 4;
export const SENT = 0, RECEIVED = 1, UNIQUE = 2;

/** The buffers, as they travel to a worker. */
export interface SharedBuffers {
  ctrl: SharedArrayBuffer;
  counts: SharedArrayBuffer;
  seen: SharedArrayBuffer;
}

export class SharedState {
  readonly ctrl: Int32Array;
  readonly counts: BigInt64Array;
  readonly seen: Uint8Array;
  /** Byte offset of producer p's slice of `seen`. */
  readonly seenOffset: number[];

  readonly buffers: SharedBuffers;

  constructor(buffers: SharedBuffers, perProducer: number[]) {
    this.buffers = buffers;
    this.ctrl = new Int32Array(buffers.ctrl);
    this.counts = new BigInt64Array(buffers.counts);
    this.seen = new Uint8Array(buffers.seen);
    let at = 0;
    this.seenOffset = perProducer.map((n) => {
      const offset = at;
      at += (n + 7) >>> 3;
      return offset;
    });
  }

  static create(perProducer: number[]): SharedState {
    const seenBytes = perProducer.reduce((sum, n) => sum + ((n + 7) >>> 3), 0);
    const state = new SharedState({
      ctrl: new SharedArrayBuffer(CTRL_WORDS * 4),
      counts: new SharedArrayBuffer(3 * 8),
      seen: new SharedArrayBuffer(Math.max(1, seenBytes)),
    }, perProducer);
    Atomics.store(state.ctrl, PRODUCERS_LEFT, perProducer.length);
    return state;
  }

  get sent(): number { return Number(Atomics.load(this.counts, SENT)); }
  get received(): number { return Number(Atomics.load(this.counts, RECEIVED)); }
  get unique(): number { return Number(Atomics.load(this.counts, UNIQUE)); }
  get aborted(): boolean { return Atomics.load(this.ctrl, ABORT) !== 0; }
  abort(): void { Atomics.store(this.ctrl, ABORT, 1); }
}

/**
 * A clock in ms since `originHr` (process.hrtime.bigint() on the thread that started the run),
 * the same on every thread: performance.now() has a time origin per thread, hrtime is one
 * monotonic clock per process. The offset is taken once; each reading is performance.now().
 */
export function clockFrom(originHr: bigint): () => number {
  const offsetMs = performance.now() - Number(process.hrtime.bigint() - originHr) / 1e6;
  return () => performance.now() - offsetMs;
}
