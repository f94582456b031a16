// The parked pops of one thread, over all its connections: each costs a waiter in shared
// memory and a timer and a record in JS (about 500 B), so besides the per-connection
// maxParkedPops one thread holds at most maxParkedPopsPerThread. Counted where sessions park
// and settle them (session.ts); a pop past the cap is refused with ERR_LIMIT. The count is
// also published in the thread's counters (parkedPops: /stats, turbomq_parked_pops).

/** Where the count is published (a thread's ThreadCounters). */
export interface ParkedPopGauge {
  setParkedPops(n: number): void;
}

export class ParkedPopBudget {
  readonly max: number;
  readonly #gauge: ParkedPopGauge | undefined;
  #count = 0;

  constructor(max: number, gauge?: ParkedPopGauge) {
    this.max = max;
    this.#gauge = gauge;
  }

  /** Parked pops on this thread now. */
  get count(): number {
    return this.#count;
  }

  /** Takes a slot; false when the thread is full. */
  take(): boolean {
    if (this.#count >= this.max) return false;
    this.#count++;
    this.#gauge?.setParkedPops(this.#count);
    return true;
  }

  release(n = 1): void {
    this.#count -= n;
    this.#gauge?.setParkedPops(this.#count);
  }
}
