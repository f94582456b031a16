// The parked pops of one thread, over all its connections: each costs a waiter in shared
// memory and a timer and a record in JS (about 500 B), so besides the per-connection
// maxParkedPops one thread holds at most maxParkedPopsPerThread. Counted where sessions park
// and settle them (session.ts); a pop past the cap is refused with ERR_LIMIT.

export class ParkedPopBudget {
  readonly max: number;
  #count = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** Parked pops on this thread now. */
  get count(): number {
    return this.#count;
  }

  /** Takes a slot; false when the thread is full. */
  take(): boolean {
    if (this.#count >= this.max) return false;
    this.#count++;
    return true;
  }

  release(n = 1): void {
    this.#count -= n;
  }
}
