// The parked pops of one thread, over all its connections: each costs a waiter in shared
// memory and a timer and a record in JS (about 500 B), so besides the per-connection
// maxParkedPops one thread holds at most maxParkedPopsPerThread. Counted where sessions park
// and settle them (session.ts); a pop past the cap is refused with ERR_LIMIT. The count is
// also published in the thread's counters (parkedPops: /stats, turbomq_parked_pops), and
// each parked pop counts PARKED_POP_BYTES against the broker's maxMemoryMiB (the core's
// message storage count), so memory full of parked pops refuses more with ERR_NO_MEMORY.

/** What one parked pop costs, shared memory and JS together (measured: about 500 B). */
export const PARKED_POP_BYTES = 512;

/** The core's message storage count (assembly/alloc.ts queueReserve). */
export interface StorageCount {
  queueReserve(bytes: bigint): number | boolean;
  queueUnreserve(bytes: bigint): void;
}

/** Where the count is published (a thread's ThreadCounters). */
export interface ParkedPopGauge {
  setParkedPops(n: number): void;
}

export class ParkedPopBudget {
  readonly max: number;
  readonly #gauge: ParkedPopGauge | undefined;
  #count = 0;

  readonly #storage: StorageCount | undefined;

  constructor(max: number, gauge?: ParkedPopGauge, storage?: StorageCount) {
    this.max = max;
    this.#gauge = gauge;
    this.#storage = storage;
  }

  /** Parked pops on this thread now. */
  get count(): number {
    return this.#count;
  }

  /** Takes a slot: 'ok', or why not - 'limit' (the thread is full) or 'memory' (maxMemoryMiB). */
  take(): 'ok' | 'limit' | 'memory' {
    if (this.#count >= this.max) return 'limit';
    if (this.#storage !== undefined && !this.#storage.queueReserve(BigInt(PARKED_POP_BYTES))) return 'memory';
    this.#count++;
    this.#gauge?.setParkedPops(this.#count);
    return 'ok';
  }

  release(n = 1): void {
    if (n <= 0) return;
    this.#count -= n;
    this.#storage?.queueUnreserve(BigInt(PARKED_POP_BYTES * n));
    this.#gauge?.setParkedPops(this.#count);
  }
}
