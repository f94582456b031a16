// The client threads of load runs (clientThreads > 1), kept between runs of one process.
//
// Why keep them: a fresh worker thread is a fresh V8 isolate, so every function of the client
// library and of the load share starts in the interpreter and is compiled again while the run is
// timed. A batched run of 64,000 messages lasts about 50-100 ms here, which is about the time V8
// takes to optimise the hot paths: measured on 2026-12-04 (4P/4C 16 B batch 64, 2 client threads),
// new threads gave 0.60-0.78 M msgs/s for 64,000 messages and 1.33-1.42 M for 640,000, against
// 1.38-1.47 M on one warmed thread. Kept threads make a run with N client threads pay for the JIT
// once, in its first run, as a run on the main thread always has.
//
// Idle threads are unref'd, so they never keep a process alive; a thread that failed or whose run
// failed is terminated, not kept (its state is unknown). closeClientThreads() ends the idle ones.

import { Worker } from 'node:worker_threads';

// The worker entry is worker.ts beside this file (.ts when run from source, .js when built).
const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

const idle: Worker[] = [];

/** n client threads: idle ones first, new ones for the rest. Each is ref'd until given back. */
export function takeClientThreads(n: number): Worker[] {
  const taken = idle.splice(Math.max(0, idle.length - n), n);
  while (taken.length < n) {
    const worker = new Worker(workerUrl, { workerData: { loadgenWorker: true } });
    // An idle thread that dies (it should not) leaves the pool instead of being handed out; its
    // 'error' (an uncaught exception in it) is followed by that 'exit', and must not throw here
    // while no run is listening.
    worker.on('error', () => {});
    worker.once('exit', () => {
      const i = idle.indexOf(worker);
      if (i >= 0) idle.splice(i, 1);
    });
    taken.push(worker);
  }
  for (const worker of taken) worker.ref();
  return taken;
}

/** Threads whose run finished cleanly go back to the pool, unref'd. */
export function giveBackClientThreads(workers: Worker[]): void {
  for (const worker of workers) {
    worker.unref();
    idle.push(worker);
  }
}

/** Terminates threads (a failed run's: their state is unknown). */
export async function discardClientThreads(workers: Worker[]): Promise<void> {
  await Promise.all(workers.map((worker) => worker.terminate()));
}

/** Ends the idle client threads (they are unref'd, so this is only needed to free them early). */
export async function closeClientThreads(): Promise<void> {
  await discardClientThreads(idle.splice(0));
}

/** Idle client threads (for tests). */
export function idleClientThreads(): number {
  return idle.length;
}
