// The connection count every worker shares, for the total cap (maxConnections, and what the
// process's file-descriptor limit leaves room for). The engine creates it and hands the
// buffer to each worker (workerData); a worker takes a slot at accept (Listener.admit) and
// gives it back when the socket closes, with two atomic adds each way, no messages.
//
//   Int32Array over a SharedArrayBuffer:
//   ┌────────────┬────────────┬────────────┬──────────────┬─────┬──────────────────┐
//   │ [0] total  │ [1] cap    │ [2] fd cap │ [3] worker 0 │ ... │ [3+n-1] worker n-1│
//   └────────────┴────────────┴────────────┴──────────────┴─────┴──────────────────┘
//   total: open connections of all workers; cap: the most there may be; fd cap: 1 when the
//   cap comes from the file-descriptor limit (for the refusal's message); worker i: its own
//   open connections, so that a worker that dies can have them given back (resetWorker).
//
// take() adds first and checks after, so two workers racing for the last slot cannot both
// get it; the loser subtracts again.

import { readFileSync, readdirSync } from 'node:fs';

const TOTAL = 0;
const CAP = 1;
const FD_CAP = 2;
const WORKERS = 3;

/** File descriptors kept free for everything that is not a connection (files, logs, a new worker). */
export const FD_RESERVE = 64;

export class ConnectionCounter {
  readonly #words: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#words = new Int32Array(buffer);
  }

  /** A new counter for `workers` workers, capped at `maxConnections`. */
  static create(workers: number, maxConnections: number): ConnectionCounter {
    const counter = new ConnectionCounter(new SharedArrayBuffer(4 * (WORKERS + workers)));
    counter.setCap(maxConnections, false);
    return counter;
  }

  get buffer(): SharedArrayBuffer {
    return this.#words.buffer as SharedArrayBuffer;
  }

  get total(): number {
    return Atomics.load(this.#words, TOTAL);
  }

  get cap(): number {
    return Atomics.load(this.#words, CAP);
  }

  /** Whether the cap is the file-descriptor limit's rather than maxConnections. */
  get capIsFdLimit(): boolean {
    return Atomics.load(this.#words, FD_CAP) === 1;
  }

  setCap(cap: number, fromFdLimit: boolean): void {
    Atomics.store(this.#words, FD_CAP, fromFdLimit ? 1 : 0);
    Atomics.store(this.#words, CAP, Math.max(0, Math.min(cap, 0x7fffffff)));
  }

  /** Takes a slot for worker `worker`; false when the total is at the cap. */
  take(worker: number): boolean {
    if (Atomics.add(this.#words, TOTAL, 1) >= Atomics.load(this.#words, CAP)) {
      Atomics.sub(this.#words, TOTAL, 1);
      return false;
    }
    Atomics.add(this.#words, WORKERS + worker, 1);
    return true;
  }

  release(worker: number): void {
    Atomics.sub(this.#words, WORKERS + worker, 1);
    Atomics.sub(this.#words, TOTAL, 1);
  }

  /** Worker `worker` is gone (its sockets with it): gives its slots back. Returns how many. */
  resetWorker(worker: number): number {
    const n = Atomics.exchange(this.#words, WORKERS + worker, 0);
    Atomics.sub(this.#words, TOTAL, n);
    return n;
  }
}

/**
 * How many more connections the process's file-descriptor limit (RLIMIT_NOFILE, read from
 * /proc/self/limits) leaves room for, keeping FD_RESERVE free; undefined when it cannot be
 * known (not Linux, or unlimited). Each connection takes one descriptor.
 */
export function fileDescriptorRoom(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m === null) return undefined;
    return Number(m[1]) - readdirSync('/proc/self/fd').length - FD_RESERVE;
  } catch {
    return undefined;
  }
}
