// npm run bench:leases — issue 10's figures for at-least-once delivery, against a turbomq broker
// in its own process (`turbomq serve`, so its memory is its own):
//
// 1. throughput: leased popMany + ack (acks batched on the wire) against plain popMany, same
//    run, same workload (target: >= 0.5x);
// 2. memory per in-flight message: broker RSS after pushing N messages, after leasing all N
//    (popMany with { ack: true }), after acking them;
// 3. expiry of N leases at once (all with the same end): p99 pop and end-to-end latency of a
//    paced load on another topic while they expire, against the same load before, and how long
//    until all N are back in their topic.
//
// Written against issue 10's API (bench/compare/leased.ts); until the client has it every
// figure prints "n/a (needs issue 10)". Environment overrides:
//   THREADS=<cores>  REPEAT=3  THROUGHPUT_MESSAGES=256000  INFLIGHT_MESSAGES=1000000
//   EXPIRY_LEASES=1000000  EXPIRY_WINDOW_MS=<max(3000, N/100)>  PROBE_RATE=10000  PARTS=throughput,memory,expiry

import os from 'node:os';
import { TurboClient, VERSION } from '../src/index.ts';
import { runLoad, turbomqDriverSpec, median, formatRate, formatMs, type LoadResult, type Workload } from '../src/cli/loadgen.ts';
import { startTurbomq, buildIsStale, INSTALL_HINT } from './compare/servers.ts';
import { leasesAvailable, leasedQueue, turbomqLeasedDriverSpec, NEEDS_LEASES, type LeasedMessage, type LeasedQueue } from './compare/leased.ts';
import { floorPush } from './compare/wire-floor.ts';
import { rssBytes } from './lib/proc.ts';

const env = process.env;
const THREADS = Number(env.THREADS ?? os.availableParallelism());
const REPEAT = Number(env.REPEAT ?? 3);
const THROUGHPUT_MESSAGES = Number(env.THROUGHPUT_MESSAGES ?? 256_000);
// Whole batches of 64: the topics are filled with pre-encoded PUSH_MANY frames of 64.
const wholeBatches = (n: number) => Math.ceil(n / 64) * 64;
const INFLIGHT_MESSAGES = wholeBatches(Number(env.INFLIGHT_MESSAGES ?? 1_000_000));
const EXPIRY_LEASES = wholeBatches(Number(env.EXPIRY_LEASES ?? 1_000_000));
const EXPIRY_WINDOW_MS = Number(env.EXPIRY_WINDOW_MS ?? Math.max(3000, EXPIRY_LEASES / 100));
const PROBE_RATE = Number(env.PROBE_RATE ?? 10_000);
const PARTS = (env.PARTS ?? 'throughput,memory,expiry').split(',').map((s) => s.trim());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 2 ** 20;

if (buildIsStale()) console.log('note: build/ is older than src/ or assembly/ (or missing): run `npm run build` first');
const broker = await startTurbomq(THREADS);
if (broker === undefined) {
  console.log(INSTALL_HINT.turbomq);
  process.exit(1);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const url = broker.url;
console.log(`turbomq ${VERSION} leases benchmark: turbomq serve with ${THREADS} worker threads, node ${process.versions.node}, ${os.availableParallelism()} cores, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);

try {
  if (!await leasesAvailable(url)) {
    for (const part of PARTS) console.log(`${part}: ${NEEDS_LEASES}`);
  } else {
    if (PARTS.includes('throughput')) await throughput();
    if (PARTS.includes('memory')) await memory();
    if (PARTS.includes('expiry')) await expiry();
  }
} finally {
  await broker.stop();
}

// ── 1. leased popMany + ack vs plain popMany ───────────────────────────────────────────

async function throughput(): Promise<void> {
  const w: Workload = { producers: 4, consumers: 4, sizeBytes: 16, batch: 64, topics: 1, messages: THROUGHPUT_MESSAGES, durationMs: 30_000 };
  const leased: LoadResult[] = [], plain: LoadResult[] = [];
  for (let r = 0; r < REPEAT; r++) {
    plain.push(await runLoad(turbomqDriverSpec(url), { ...w, topicPrefix: `plain${r}-` }));
    leased.push(await runLoad(turbomqLeasedDriverSpec(url, { mode: 'pop' }), { ...w, topicPrefix: `leased${r}-` }));
  }
  const p = median(plain.map((x) => x.receiveRate)), l = median(leased.map((x) => x.receiveRate));
  const exact = [...plain, ...leased].every((x) => x.exactlyOnce);
  console.log(`throughput, 4P/4C batch 64 16 B, median of ${REPEAT}: plain popMany ${formatRate(p)}msg/s, leased popMany + ack ${formatRate(l)}msg/s: leased / plain ${(l / p).toFixed(2)}x${exact ? '' : '  (NOT every message exactly once)'}`);
}

// ── helpers ────────────────────────────────────────────────────────────────────────────

/** Fills `topic` with n messages of 16 B (pre-encoded frames: fast, and no client memory). */
async function fill(topic: string, n: number): Promise<void> {
  await floorPush(broker!.port, { queue: 'leases', topic, messages: n, batch: 64, sizeBytes: 16, inFlight: 16 });
}

/** Leases every message of `topic` (n of them), 16 popMany calls in flight; keeps them if `keep`. */
async function leaseAll(queue: LeasedQueue, topic: string, n: number, leaseMs: () => number, keep: LeasedMessage[] | undefined): Promise<number> {
  let taken = 0, empty = false;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (taken < n && !empty) {
      const ms = await queue.popMany(topic, 64, { ack: true, timeoutMs: 0, leaseMs: Math.max(1, Math.round(leaseMs())) });
      if (ms.length === 0) empty = true;
      taken += ms.length;
      if (keep !== undefined) for (const m of ms) keep.push(m);
    }
  }));
  return taken;
}

// ── 2. memory per in-flight message ────────────────────────────────────────────────────

async function memory(): Promise<void> {
  const n = INFLIGHT_MESSAGES;
  const client = await TurboClient.connect(url);
  try {
    const queue = leasedQueue(client, 'leases');
    const topic = `mem-${Date.now()}`;
    await sleep(200);
    const base = rssBytes(broker!.pid!);
    await fill(topic, n);
    await sleep(200);
    const ready = rssBytes(broker!.pid!);
    const held: LeasedMessage[] = [];
    const taken = await leaseAll(queue, topic, n, () => 600_000, held);
    await sleep(200);
    const inFlight = rssBytes(broker!.pid!);
    const stats = await queue.stats?.(topic);
    for (let i = 0; i < held.length; i += 4096) await Promise.all(held.slice(i, i + 4096).map((m) => m.ack()));
    await sleep(200);
    const acked = rssBytes(broker!.pid!);
    const after = await queue.stats?.(topic);
    const per = (a: number, b: number) => `${((a - b) / n).toFixed(1)} B`;
    console.log(`memory, ${n.toLocaleString('en-US')} messages of 16 B: broker RSS ${(base / MiB).toFixed(0)} MiB empty, ${(ready / MiB).toFixed(0)} MiB with all ready, ${(inFlight / MiB).toFixed(0)} MiB with all in flight, ${(acked / MiB).toFixed(0)} MiB after acking all`);
    console.log(`  per message: ${per(ready, base)} ready, ${per(inFlight, base)} in flight (${per(inFlight, ready)} more than ready); leased ${taken.toLocaleString('en-US')}; stats in flight ${stats?.inFlight ?? '?'}, after acks ${after ? JSON.stringify(after) : '?'}`);
  } finally {
    await client.close();
  }
}

// ── 3. expiry of many leases at once ───────────────────────────────────────────────────

async function expiry(): Promise<void> {
  const n = EXPIRY_LEASES;
  const probeMs = 2000 + EXPIRY_WINDOW_MS / 2;
  const probe = (prefix: string, ms: number): Promise<LoadResult> => runLoad(turbomqDriverSpec(url), {
    producers: 1, consumers: 1, sizeBytes: 16, batch: 1, consumerBatch: 64, topics: 1,
    messages: Math.round(PROBE_RATE * ms / 1000), rate: PROBE_RATE, durationMs: ms + 5000, topicPrefix: prefix,
  });
  const baseline = await probe('probe-base-', probeMs);

  const client = await TurboClient.connect(url);
  try {
    const queue = leasedQueue(client, 'leases');
    const topic = `expiry-${Date.now()}`;
    await fill(topic, n);
    // Every lease ends at the same moment: each popMany asks for the time left until `endAt`.
    const endAt = performance.now() + EXPIRY_WINDOW_MS;
    const taken = await leaseAll(queue, topic, n, () => endAt - performance.now(), undefined);
    const margin = endAt - performance.now();
    if (margin < 1000) console.log(`  note: leasing took until ${(margin / 1000).toFixed(1)} s before the leases end; raise EXPIRY_WINDOW_MS so they all end together`);
    await sleep(Math.max(0, margin - 1000));
    // The probe runs from 1 s before the leases end; meanwhile poll until all n are back.
    const during = probe('probe-expiry-', probeMs);
    let backAfterMs = NaN;
    const pollUntil = performance.now() + probeMs + 10_000;
    while (performance.now() < pollUntil) {
      const s = await queue.stats?.(topic);
      if (s === undefined) break;
      if (s.ready >= taken && s.inFlight === 0) { backAfterMs = performance.now() - endAt; break; }
      await sleep(20);
    }
    const d = await during;
    const row = (name: string, r: LoadResult) => `  ${name.padEnd(22)} pop p99 ${formatMs(r.popLatencyMs.p99).padStart(8)}  e2e p50 ${formatMs(r.latencyMs.p50).padStart(8)}  e2e p99 ${formatMs(r.latencyMs.p99).padStart(8)}  max ${formatMs(r.latencyMs.max).padStart(8)}  ${formatRate(r.receiveRate)}msg/s${r.exactlyOnce ? '' : '  NOT exactly once'}`;
    console.log(`expiry of ${taken.toLocaleString('en-US')} leases ending together; a paced ${formatRate(PROBE_RATE)}msg/s load on another topic (1P/1C, 16 B):`);
    console.log(row('before (no leases)', baseline));
    console.log(row('while they expire', d));
    console.log(`  p99 pop latency during / before ${(d.popLatencyMs.p99 / baseline.popLatencyMs.p99).toFixed(2)}x, e2e p99 ${(d.latencyMs.p99 / baseline.latencyMs.p99).toFixed(2)}x; all back in their topic ${Number.isFinite(backAfterMs) ? `${formatMs(backAfterMs)} after the leases ended` : 'not seen (no stats(), or not within the probe)'}`);
  } finally {
    await client.close();
  }
}
