// The load generator behind `turbomq bench`, bench/broker.bench.ts and bench/compare: producers
// and consumers, each on its own connection, moving numbered messages through a broker and
// checking that every one arrives exactly once. This file runs a load; the parts live in
// src/cli/loadgen/ (types, the per-thread share of producers and consumers, the worker, the
// shared counters and bitmap, the latency histogram, the turbomq driver).
//
// It knows brokers only through a Driver (connect a producer, connect a consumer), so the same
// workload runs against turbomq (loadgen/turbomq.ts), Redis, NATS, RabbitMQ and raw-TCP floors
// (bench/compare). With clientThreads 1 every client runs on the calling thread's event loop;
// with N > 1 they are spread over N worker threads, each making its own driver from a
// DriverSpec, so that the load generator is not the one thread that limits a many-core broker
// (the threads are kept between runs, so only the first run pays for their JIT: loadgen/threads.ts).
// Counts, the exactly-once check and latency histograms are merged exactly (loadgen/shared.ts).

import { HEADER_BYTES, type Driver, type DriverSpec, type LoadResult, type RunInfo, type Workload } from './loadgen/types.ts';
import { LatencyHistogram } from './loadgen/histogram.ts';
import { SharedState, clockFrom } from './loadgen/shared.ts';
import { LoadShare, messagesPerProducer, shareOf, type ShareResult } from './loadgen/share.ts';
import { loadDriver, type WorkerInput } from './loadgen/worker.ts';
import { takeClientThreads, giveBackClientThreads, discardClientThreads } from './loadgen/threads.ts';

export * from './loadgen/types.ts';
export { LatencyHistogram, type Percentiles, type HistogramData } from './loadgen/histogram.ts';
export { turbomqDriver, turbomqDriverSpec } from './loadgen/turbomq.ts';
export { loadDriver } from './loadgen/worker.ts';
export { closeClientThreads, idleClientThreads } from './loadgen/threads.ts';

/** Most client threads a run may use. */
export const MAX_CLIENT_THREADS = 256;

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
  if (w.clientThreads !== undefined) int('clientThreads', w.clientThreads, 1, MAX_CLIENT_THREADS);
  if (!(w.durationMs > 0)) throw new RangeError(`duration must be > 0, got ${w.durationMs}`);
  if (w.rate !== undefined && !(w.rate >= 0)) throw new RangeError(`rate must be >= 0, got ${w.rate}`);
}

function isSpec(d: Driver | DriverSpec): d is DriverSpec {
  return typeof (d as DriverSpec).module === 'string' && typeof (d as DriverSpec).exportName === 'string';
}

let runCounter = 0;

/**
 * Runs one workload and reports throughput, latency and exactly-once. A Driver runs on this
 * thread only (the caller closes it); a DriverSpec is loaded here for setup/teardown and on
 * every client thread, and closed by runLoad.
 */
export async function runLoad(driver: Driver | DriverSpec, workload: Workload): Promise<LoadResult> {
  checkWorkload(workload);
  const w = workload;
  const { onProgress, ...plain } = w;
  const threads = Math.min(w.clientThreads ?? 1, w.producers + w.consumers);
  if (threads > 1 && !isSpec(driver)) throw new TypeError('clientThreads > 1 needs a DriverSpec ({ module, exportName, args }) that every thread can load');
  const prefix = w.topicPrefix ?? 't';
  const run: RunInfo = { id: `${process.pid.toString(36)}x${(++runCounter).toString(36)}`, topics: Array.from({ length: w.topics }, (_, i) => `${prefix}${i}`) };
  const perProducer = messagesPerProducer(w);
  const shared = SharedState.create(perProducer);
  const originHr = process.hrtime.bigint();
  const clock = clockFrom(originHr);
  const main = isSpec(driver) ? await loadDriver(driver) : driver;

  let startAt = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const startProgress = () => {
    if (onProgress === undefined) return;
    let lastAt = startAt, lastReceived = 0;
    timer = setInterval(() => {
      const now = clock(), received = shared.received;
      onProgress({ elapsedMs: now - startAt, sent: shared.sent, received, rate: (received - lastReceived) / ((now - lastAt) / 1000) });
      lastAt = now;
      lastReceived = received;
    }, w.progressEveryMs ?? 250);
  };

  let shares: ShareResult[];
  try {
    await main.setup?.(run);
    try {
      if (threads === 1) {
        const share = new LoadShare(main, w, shared, shareOf(w, 0, 1), clock);
        try {
          await main.prepare?.(run);
          await share.connect();
          startAt = clock();
          startProgress();
          shares = [await share.run(startAt)];
        } finally {
          await share.close();
        }
      } else {
        shares = await runThreads(driver as DriverSpec, plain, run, shared, originHr, threads, () => {
          startAt = clock();
          startProgress();
          return startAt;
        });
      }
    } finally {
      if (timer !== undefined) clearInterval(timer);
      await main.teardown?.(run);
    }
  } finally {
    if (isSpec(driver)) await main.close?.();
  }

  const latency = new LatencyHistogram(), popLatency = new LatencyHistogram();
  let sent = 0, received = 0, unique = 0, duplicates = 0, corrupt = 0, capped = false, lastSendAt = startAt, lastReceiveAt = 0;
  for (const s of shares) {
    sent += s.sent; received += s.received; unique += s.unique; duplicates += s.duplicates; corrupt += s.corrupt;
    capped ||= s.capped;
    lastSendAt = Math.max(lastSendAt, s.lastSendAt);
    lastReceiveAt = Math.max(lastReceiveAt, s.lastReceiveAt);
    latency.merge(s.latency);
    popLatency.merge(s.popLatency);
  }
  const producerMs = lastSendAt - startAt;
  const consumerMs = (lastReceiveAt || clock()) - startAt;
  const MB = 1024 * 1024;
  return {
    driver: main.name,
    workload: { ...plain, clientThreads: threads },
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

/**
 * Runs a share on each of `threads` client threads (kept between runs: loadgen/threads.ts),
 * starts them together once all are connected, collects their counts.
 */
async function runThreads(spec: DriverSpec, w: Omit<Workload, 'onProgress'>, run: RunInfo, shared: SharedState, originHr: bigint, threads: number, start: () => number): Promise<ShareResult[]> {
  const workers = takeClientThreads(threads);
  const ready: Promise<void>[] = [];
  const done: Promise<ShareResult>[] = [];
  const detach: (() => void)[] = [];
  workers.forEach((worker, t) => {
    let onReady!: () => void;
    ready.push(new Promise<void>((resolve) => { onReady = resolve; }));
    done.push(new Promise<ShareResult>((resolve, reject) => {
      const onMessage = (m: { type: string; result?: ShareResult; message?: string; stack?: string }) => {
        if (m.type === 'ready') onReady();
        else if (m.type === 'done') resolve(m.result!);
        else if (m.type === 'error') {
          const err = new Error(`client thread ${t + 1}/${threads}: ${m.message}`);
          if (m.stack !== undefined) err.stack = `${err.message}\n${m.stack}`;
          reject(err);
        }
      };
      const onExit = (code: number) => reject(new Error(`client thread ${t + 1}/${threads} exited (code ${code}) before reporting`));
      worker.on('message', onMessage);
      worker.on('error', reject);
      worker.on('exit', onExit);
      detach.push(() => {
        worker.off('message', onMessage);
        worker.off('error', reject);
        worker.off('exit', onExit);
      });
    }));
    const input: WorkerInput = { spec, workload: w, run, buffers: shared.buffers, share: shareOf(w, t, threads), originHr };
    worker.postMessage({ type: 'run', input });
  });
  for (const d of done) d.catch(() => {}); // seen below (allSettled), or moot once an earlier failure is thrown
  // A thread that fails before all are ready ends the wait; one that fails later has already
  // set the shared abort flag, so the others stop and report, and its error is thrown below.
  const failed = Promise.race(done.map((d) => d.then(() => new Promise<never>(() => {}))));
  failed.catch(() => {});
  let clean = false;
  try {
    await Promise.race([Promise.all(ready), failed]);
    const startAt = start();
    for (const worker of workers) worker.postMessage({ type: 'start', startAt });
    const settled = await Promise.allSettled(done);
    const rejected = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (rejected !== undefined) throw rejected.reason;
    clean = true;
    return settled.map((s) => (s as PromiseFulfilledResult<ShareResult>).value);
  } catch (err) {
    shared.abort();
    throw err;
  } finally {
    for (const d of detach) d();
    if (clean) giveBackClientThreads(workers);
    else await discardClientThreads(workers);
  }
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
