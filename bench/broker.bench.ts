// npm run bench — the whole broker through real sockets: a TurboEngine with one worker per
// core on 127.0.0.1, producers and consumers on TurboClient connections in this process
// (the load generator in src/cli/loadgen.ts). 1 producer / 1 consumer and 4 / 4, single
// push/pop and batches of 64, 16 B and 256 B; msgs/s, pop request latency and end-to-end
// latency (send call to message in the consumer's hands, from a timestamp in the data).
// Then the wake-up latency of a pop parked on one worker when a push arrives on another.
//
// Every figure is the median of REPEAT runs (default 3). Environment overrides:
//   REPEAT=3  SINGLE_MESSAGES=60000  BATCH_MESSAGES=600000  DURATION_S=10  WAKEUPS=400  THREADS=<cores>

import os from 'node:os';
import { TurboEngine, TurboClient, VERSION } from '../src/index.ts';
import { runLoad, turbomqDriver, median, formatRate, formatMs, type LoadResult } from '../src/cli/loadgen.ts';

const REPEAT = Number(process.env.REPEAT ?? 3);
const SINGLE_MESSAGES = Number(process.env.SINGLE_MESSAGES ?? 60_000);
const BATCH_MESSAGES = Number(process.env.BATCH_MESSAGES ?? 600_000);
const DURATION_MS = Number(process.env.DURATION_S ?? 10) * 1000;
const WAKEUPS = Number(process.env.WAKEUPS ?? 400);
const THREADS = Number(process.env.THREADS ?? os.availableParallelism());

const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: THREADS });
await engine.run();

console.log(`turbomq ${VERSION} broker benchmark: node ${process.versions.node}, ${THREADS} worker threads, ${os.availableParallelism()} cores, ${os.cpus()[0]?.model ?? 'cpu'}`);
console.log(`clients in this process over TCP 127.0.0.1; each figure the median of ${REPEAT} runs; single: ${SINGLE_MESSAGES.toLocaleString('en-US')} messages per run, batched: ${BATCH_MESSAGES.toLocaleString('en-US')}\n`);

interface Row { label: string; rate: number; popP50: number; popP99: number; e2eP50: number; e2eP99: number; exact: boolean }
const rows: Row[] = [];

for (const [producers, consumers] of [[1, 1], [4, 4]] as const) {
  for (const batch of [1, 64]) {
    for (const sizeBytes of [16, 256]) {
      const label = `${producers}P/${consumers}C ${batch === 1 ? 'single' : `batch ${batch}`} ${sizeBytes} B`;
      const runs: LoadResult[] = [];
      for (let r = 0; r < REPEAT; r++) {
        const result = await runLoad(turbomqDriver(engine.url), {
          producers, consumers, sizeBytes, batch, topics: 1,
          messages: batch === 1 ? SINGLE_MESSAGES : BATCH_MESSAGES,
          durationMs: DURATION_MS,
          topicPrefix: `r${rows.length}-${r}-`,
        });
        runs.push(result);
        console.log(`  ${label}  run ${r + 1}/${REPEAT}: ${formatRate(result.receiveRate)}msg/s, e2e p50 ${formatMs(result.latencyMs.p50)}${result.exactlyOnce ? '' : '  NOT EXACTLY ONCE'}`);
      }
      rows.push({
        label,
        rate: median(runs.map((x) => x.receiveRate)),
        popP50: median(runs.map((x) => x.popLatencyMs.p50)),
        popP99: median(runs.map((x) => x.popLatencyMs.p99)),
        e2eP50: median(runs.map((x) => x.latencyMs.p50)),
        e2eP99: median(runs.map((x) => x.latencyMs.p99)),
        exact: runs.every((x) => x.exactlyOnce),
      });
    }
  }
}

// ── wake-up latency: a pop parked on one worker, the push arriving on another ──────────
// SO_REUSEPORT picks the worker; we open connections and read each worker's connection
// count from engine.stats() until we hold one connection on each of two workers.

async function connectOnWorker(): Promise<{ client: TurboClient; worker: number }> {
  const before = (await engine.stats()).threads.map((t) => t.connections);
  const client = await TurboClient.connect(engine.url);
  const after = (await engine.stats()).threads.map((t) => t.connections);
  const worker = after.findIndex((n, i) => n > before[i]!);
  return { client, worker };
}

async function wakeups(consumer: TurboClient, producer: TurboClient, topic: string): Promise<number[]> {
  const cq = consumer.getQueue('wake'), pq = producer.getQueue('wake');
  const data = new Uint8Array(16);
  const dv = new DataView(data.buffer);
  const latencies: number[] = [];
  for (let i = 0; i < WAKEUPS; i++) {
    const popped = cq.pop(topic, 5000);
    await new Promise((resolve) => setTimeout(resolve, 2)); // let the pop park
    dv.setFloat64(8, performance.now(), true);
    void pq.push(topic, data);
    const m = await popped;
    const now = performance.now();
    if (m !== null) latencies.push(now - new DataView(m.data.buffer, m.data.byteOffset).getFloat64(8, true));
  }
  return latencies;
}

const wake: { label: string; p50: number; p99: number }[] = [];
if (THREADS >= 2) {
  const opened: TurboClient[] = [];
  const byWorker = new Map<number, TurboClient[]>();
  const placed = () => byWorker.size >= 2 && [...byWorker.values()].some((l) => l.length >= 2);
  for (let i = 0; i < 32 && !placed(); i++) {
    const { client, worker } = await connectOnWorker();
    opened.push(client);
    if (worker >= 0) byWorker.set(worker, [...(byWorker.get(worker) ?? []), client]);
  }
  // Worker A is one holding two connections, worker B another.
  const workers = [...byWorker.keys()].sort((a, b) => byWorker.get(b)!.length - byWorker.get(a)!.length);
  const pairs: [string, TurboClient | undefined, TurboClient | undefined][] = [
    ['cross-worker (pop parked on worker A, push via worker B)', byWorker.get(workers[0]!)?.[0], byWorker.get(workers[1]!)?.[0]],
    ['same worker (pop and push on worker A)', byWorker.get(workers[0]!)?.[0], byWorker.get(workers[0]!)?.[1]],
  ];
  for (const [label, consumer, producer] of pairs) {
    if (consumer === undefined || producer === undefined) {
      console.log(`  ${label}: could not place connections (workers seen: ${workers.length})`);
      continue;
    }
    const per = [];
    for (let r = 0; r < REPEAT; r++) {
      const xs = (await wakeups(consumer, producer, `w${r}`)).sort((a, b) => a - b);
      per.push({ p50: xs[Math.floor(xs.length * 0.5)]!, p99: xs[Math.floor(xs.length * 0.99)]! });
      console.log(`  wake-up ${label} run ${r + 1}/${REPEAT}: p50 ${formatMs(per.at(-1)!.p50)}`);
    }
    wake.push({ label, p50: median(per.map((x) => x.p50)), p99: median(per.map((x) => x.p99)) });
  }
  await Promise.all(opened.map((c) => c.close()));
}
await engine.destroy();

console.log('\nworkload (1 topic)            msgs/s    pop p50    pop p99    e2e p50    e2e p99   exactly once');
console.log('(producers send as fast as acknowledged, so end-to-end latency includes the backlog that builds when they outpace the consumers)');
for (const r of rows) {
  console.log(`${r.label.padEnd(28)}${formatRate(r.rate).padStart(8)}${formatMs(r.popP50).padStart(11)}${formatMs(r.popP99).padStart(11)}${formatMs(r.e2eP50).padStart(11)}${formatMs(r.e2eP99).padStart(11)}   ${r.exact ? 'yes' : 'NO'}`);
}
if (wake.length > 0) {
  console.log(`\nwake-up latency, push sent to parked pop answered (${WAKEUPS} per run, median of ${REPEAT}):`);
  for (const x of wake) console.log(`  ${x.label.padEnd(58)} p50 ${formatMs(x.p50).padStart(8)}  p99 ${formatMs(x.p99).padStart(8)}`);
}
if (rows.some((r) => !r.exact)) process.exitCode = 1;
