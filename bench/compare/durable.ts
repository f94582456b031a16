// Durable queues (issue 11): push throughput and push-to-ack latency of turbomq with a data
// directory under each fsync policy, side by side in one run with Redis's append-only file
// (`appendfsync always` and `everysec`), NATS JetStream with a file-storage stream, and turbomq
// in memory (no data directory) as the baseline; then recovery time of the real broker.
//
// Run it alone with `npm run bench:compare -- --only durable` (or `node bench/compare/durable.ts`);
// `npm run bench:compare` runs it after its other sections (SECTIONS=...,durable). An unfiltered
// run (REPEAT >= 3, no DURABLE_SYSTEMS / DURABLE_WORKLOADS / RECOVERY_MESSAGES) writes the section
// between the durable markers in docs/benchmarks.md (WRITE_DOCS=0 to skip).
//
// Throughput: producers only (nothing consumes), 16 B messages, each producer its own
// connection, all in this process on one thread (like bench/compare's default CLIENT_THREADS=1):
// - single, awaited: one push at a time per producer, the next after its acknowledgement;
// - single, 16 in flight: 16 pushes outstanding per producer (pipelined on its connection);
// - batch 64: pushMany of 64 / one LPUSH with 64 values / 64 JetStream publishes awaited together,
//   one batch at a time per producer;
// with 1 and 4 producers; and the consume path: 4 producers and 4 consumers together (4P/4C), each
// consumer popping one at a time (single) or up to 64 (batch 64) with a blocking pop (BRPOP / BLMPOP
// for Redis; JetStream sits these out), the figure being messages consumed/s. Every (workload,
// system, repetition) gets a fresh broker process with a
// fresh data directory in os.tmpdir() (so every system starts each run empty, on the same disk),
// an untimed warm-up of WARMUP_S, then DURATION_S of pushes; the figure is acknowledged
// messages/s, the median of REPEAT repetitions; the systems take turns within each repetition.
// Latency: p50/p99 of the single awaited pushes of the 1-producer run (send to acknowledgement).
//
// Recovery: RECOVERY_MESSAGES (default 1,000,000 and 10,000,000) 16 B messages pushed durably to
// `turbomq serve --data-dir D --fsync no` (pushMany of 64, 4 producers), the broker stopped
// (SIGTERM: a clean stop), then `new TurboEngine(url, { dataDir: D }).run()` in this process is
// timed until it resolves (ready: recovery done, workers listening), bounded by RECOVERY_TIMEOUT_S;
// the count is then checked with length(). Median of RECOVERY_REPEAT restarts of the same directory
// (the log files are in the page cache: they were just written or read).
//
// Environment: REPEAT=3 DURATION_S=2 WARMUP_S=2 THREADS=<cores> DURABLE_SYSTEMS=<keys, below>
//   DURABLE_WORKLOADS=<substring filter> RECOVERY_MESSAGES=1000000,10000000 (0: skip)
//   RECOVERY_REPEAT=3 RECOVERY_TIMEOUT_S=300 CPU_PROF=<system key>: run that broker with --cpu-prof
//   (profiles in bench/compare/profiles/; the broker's main thread only), PERF_MAP=<system key>: run
//   that broker with --perf-basic-prof (JIT code named for Linux `perf record`, every thread; V8 also
//   leaves isolate-*-v8.log files in the working directory and /tmp/perf-PID.map: delete them after),
//   THREAD_CPU=1: also print each run's broker CPU per message by thread name (stderr).

import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { connect as natsConnect, RetentionPolicy, StorageType, type NatsConnection, type JetStreamClient } from 'nats';
import { TurboClient, TurboEngine } from '../../src/index.ts';
import { median, formatRate, formatMs, turbomqDriver, type ConsumerConnection } from '../../src/cli/loadgen.ts';
import { redisDriver } from './drivers.ts';
import { cpuMs, cpuNsByThreadName, processTree, procAvailable } from '../lib/proc.ts';
import { fsyncFloor, type FloorResult } from './fsync-floor.ts';
import { startTurbomq, startRedisAof, startNats, buildIsStale, INSTALL_HINT, which, type Server } from './servers.ts';

const env = process.env;
const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
const REPEAT = Number(env.REPEAT ?? 3);
const DURATION_MS = Number(env.DURATION_S ?? 2) * 1000;
// 2 s: the untimed part covers turbomq's first compaction passes (one a second) and V8's
// compilation of their code on its helper threads (0.3-0.6 s of CPU in a fresh broker, all of it
// inside the timed 2 s when the warm-up was 0.5 s); the figure is then the running broker's.
const WARMUP_MS = Number(env.WARMUP_S ?? 2) * 1000;
const THREADS = Number(env.THREADS ?? os.availableParallelism());
const FILTER = env.DURABLE_WORKLOADS;
const RECOVERY_MESSAGES = list(env.RECOVERY_MESSAGES ?? '1000000,10000000').map(Number).filter((n) => n > 0);
const RECOVERY_REPEAT = Number(env.RECOVERY_REPEAT ?? 3);
const RECOVERY_TIMEOUT_MS = Number(env.RECOVERY_TIMEOUT_S ?? 300) * 1000;
const CPU_PROF = env.CPU_PROF;
const PERF_MAP = env.PERF_MAP;
const THREAD_CPU = env.THREAD_CPU === '1';
const SIZE = 16;
const root = fileURLToPath(new URL('../../', import.meta.url));

export interface SystemSpec {
  key: string;
  label: string;
  start(): Promise<Server | undefined>;
  pusher(server: Server, run: number): Promise<Pusher>;
  /** A consumer's connection (the produce-and-consume workloads; bench:compare's drivers); absent: the system sits those out. */
  popper?(server: Server): Promise<ConsumerConnection>;
  hint: string;
}

/** One producer's connection: `send(items)` resolves once the broker acknowledged all of them. */
interface Pusher {
  send(items: Buffer[]): Promise<void>;
  close(): Promise<void>;
}

/** How long a consumer's blocking pop waits for a first message (then it pops again, or stops). */
const POP_WAIT_MS = 250;

// Below the file-descriptor limit, so the broker does not warn about it at every start (no effect on the figures).
const MAX_CONNECTIONS = ['--max-connections', '4096'];
const profileDir = `${root}bench/compare/profiles`;
export const turbomqSystem = (key: string, label: string, fsync: 'always' | 'everysec' | 'no' | undefined, threads = THREADS): SystemSpec => ({
  key, label, hint: INSTALL_HINT.turbomq,
  start: () => {
    // --cpu-prof profiles the broker's main thread only (its workers are not given the flag);
    // --perf-basic-prof is a V8 flag, so every thread's JIT code gets names in `perf report`.
    const nodeArgs = [...(CPU_PROF === key ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...(PERF_MAP === key ? ['--perf-basic-prof'] : [])];
    return startTurbomq(threads, fsync === undefined ? { nodeArgs, extraArgs: MAX_CONNECTIONS } : { dataDir: true, extraArgs: ['--fsync', fsync, ...MAX_CONNECTIONS], nodeArgs });
  },
  async pusher(server) {
    const client = await TurboClient.connect((server as Server & { url: string }).url);
    const queue = client.getQueue('bench');
    return {
      send: (items) => items.length === 1 ? queue.push('t', items[0]!) : queue.pushMany('t', items),
      close: () => client.close(),
    };
  },
  popper: (server) => turbomqDriver((server as Server & { url: string }).url).consumer(),
});

export const redisSystem = (key: string, label: string, appendfsync: 'always' | 'everysec'): SystemSpec => ({
  key, label, hint: INSTALL_HINT.redis,
  start: () => startRedisAof(appendfsync),
  async pusher(server) {
    // Auto-pipelining: the commands of one event-loop turn go out in one write (as turbomq's client does).
    const r = await new Promise<Redis>((resolve, reject) => {
      const c = new Redis({ host: '127.0.0.1', port: server.port, maxRetriesPerRequest: 0, enableAutoPipelining: true });
      c.once('ready', () => resolve(c));
      c.once('error', reject);
    });
    return {
      async send(items) { await r.lpush('bench:t', ...items); },
      async close() { r.disconnect(); },
    };
  },
  // BRPOP / BLMPOP on bench:t, one request in flight. Redis replicates a pop to the AOF as the
  // RPOP it did: under `always` it is fsync'd before the reply.
  popper: (server) => redisDriver(server.port).consumer(),
});

const jetstream: SystemSpec = {
  key: 'jetstream', label: 'JetStream file', hint: INSTALL_HINT.nats,
  start: async () => {
    const s = await startNats();
    if (s === undefined) return undefined;
    // One file-storage stream for the broker's life (the broker is new for every run).
    const nc = await natsConnect({ servers: `127.0.0.1:${s.port}`, maxReconnectAttempts: 0 });
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({ name: 'BENCH', subjects: ['bench.>'], retention: RetentionPolicy.Limits, storage: StorageType.File });
    } finally {
      await nc.close();
    }
    return s;
  },
  async pusher(server) {
    const nc: NatsConnection = await natsConnect({ servers: `127.0.0.1:${server.port}`, maxReconnectAttempts: 0 });
    const js: JetStreamClient = nc.jetstream();
    return {
      async send(items) {
        // nats.js 2.x has no batch publish: a batch is its publishes awaited together.
        if (items.length === 1) await js.publish('bench.t', items[0]);
        else await Promise.all(items.map((it) => js.publish('bench.t', it)));
      },
      close: () => nc.close(),
    };
  },
};

export const DURABLE_SYSTEMS: SystemSpec[] = [
  turbomqSystem('turbomq-always', 'turbomq always', 'always'),
  // The same policy with one worker (`--threads 1`): one log, so a pop of a message that another
  // worker pushed never waits for that worker's group commit as well as its own (docs/durability.md).
  turbomqSystem('turbomq-always-1w', 'turbomq always, 1 worker', 'always', 1),
  redisSystem('redis-always', 'Redis always', 'always'),
  turbomqSystem('turbomq-everysec', 'turbomq everysec', 'everysec'),
  redisSystem('redis-everysec', 'Redis everysec', 'everysec'),
  turbomqSystem('turbomq-no', 'turbomq no', 'no'),
  jetstream,
  turbomqSystem('turbomq-memory', 'turbomq memory', undefined),
];

/** `consumers` > 0: producers and consumers together, the figure is messages consumed (each consumer pops `batch` at most). */
export interface WorkloadSpec { name: string; producers: number; consumers: number; inFlight: number; batch: number }
export const DURABLE_WORKLOADS: WorkloadSpec[] = [];
for (const [batch, inFlight] of [[1, 1], [1, 16], [64, 1]] as const) {
  for (const producers of [1, 4]) {
    const name = `${producers}P ${batch === 1 ? (inFlight === 1 ? 'single, awaited' : `single, ${inFlight} in flight`) : `batch ${batch}`}`;
    DURABLE_WORKLOADS.push({ name, producers, consumers: 0, inFlight, batch });
  }
}
// The consume path: a pop's reply waits for its REMOVE record under the same policy as a push's
// OK, and for the PUSH record when another worker stored the message (docs/durability.md,
// "Across threads"); Redis logs the pop as the RPOP it did.
for (const batch of [1, 64]) {
  DURABLE_WORKLOADS.push({ name: `4P/4C ${batch === 1 ? 'single, awaited' : `batch ${batch}`}`, producers: 4, consumers: 4, inFlight: 1, batch });
}

interface RunResult {
  rate: number;
  latencies?: Float64Array;
  /** Broker CPU (user + system, every thread and child process) per acknowledged message, µs, over the timed part. */
  cpuUsPerMsg?: number;
}

function brokerCpuMs(server: Server): number | undefined {
  if (server.pid === undefined || !procAvailable) return undefined;
  return cpuMs(processTree(server.pid));
}

/**
 * `producers` connections, each keeping `inFlight` sends of `batch` messages outstanding, for
 * WARMUP_MS (not counted) then DURATION_MS; acknowledged messages/s over the timed part. With
 * one producer and one send in flight, also each timed send's latency (ms). With `consumers`,
 * that many connections popping up to `batch` at a time meanwhile, and the figure is the
 * messages they took over the timed part.
 */
export async function pushLoad(system: SystemSpec, server: Server, w: WorkloadSpec, run: number): Promise<RunResult> {
  const pushers = await Promise.all(Array.from({ length: w.producers }, () => system.pusher(server, run)));
  const poppers = await Promise.all(Array.from({ length: w.consumers }, () => system.popper!(server)));
  const items = Array.from({ length: w.batch }, (_, i) => { const b = Buffer.alloc(SIZE); b.writeUInt32LE(i, 0); return b; });
  const recordLatency = w.producers === 1 && w.inFlight === 1 && w.batch === 1;
  let lat = new Float64Array(recordLatency ? 1 << 16 : 0);
  let nLat = 0;
  let phase: 'warm' | 'timed' | 'stop' = 'warm';
  let acked = 0;
  let consumed = 0;
  const loop = async (p: Pusher) => {
    while (phase !== 'stop') {
      const counted = phase === 'timed';
      const t0 = performance.now();
      await p.send(items);
      if (counted && phase === 'timed' && w.consumers === 0) {
        acked += w.batch;
        if (recordLatency) {
          if (nLat === lat.length) { const bigger = new Float64Array(lat.length * 2); bigger.set(lat); lat = bigger; }
          lat[nLat++] = performance.now() - t0;
        }
      }
    }
  };
  const consume = async (c: ConsumerConnection) => {
    while (phase !== 'stop') {
      const counted = phase === 'timed';
      const n = (await c.receive('t', w.batch, POP_WAIT_MS)).length;
      if (counted && phase === 'timed') consumed += n;
    }
  };
  const loops = [...pushers.flatMap((p) => Array.from({ length: w.inFlight }, () => loop(p))), ...poppers.map(consume)];
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  phase = 'timed';
  const cpu0 = brokerCpuMs(server);
  const threads0 = THREAD_CPU && server.pid !== undefined ? cpuNsByThreadName(server.pid) : undefined;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, DURATION_MS));
  const ms = performance.now() - t0;
  const counted = w.consumers === 0 ? acked : consumed;
  const cpu1 = brokerCpuMs(server);
  if (threads0 !== undefined && counted > 0) {
    const parts = [...cpuNsByThreadName(server.pid!)].map(([name, ns]) => [name, (ns - (threads0.get(name) ?? 0)) / 1000 / counted] as const).filter(([, us]) => us > 0.0005);
    process.stderr.write(`  ${system.key} ${w.name} run ${run}: ${parts.map(([name, us]) => `${name} ${us.toFixed(3)}`).join(', ')} µs/msg\n`);
  }
  phase = 'stop';
  await Promise.all(loops);
  await Promise.all([...pushers, ...poppers].map((p) => p.close()));
  return {
    rate: counted * 1000 / ms,
    latencies: recordLatency ? lat.subarray(0, nLat) : undefined,
    cpuUsPerMsg: cpu0 === undefined || cpu1 === undefined || counted === 0 ? undefined : (cpu1 - cpu0) * 1000 / counted,
  };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

// ── the report ─────────────────────────────────────────────────────────────────────────

const fmtRatio = (a: number | undefined, b: number | undefined) => a === undefined || b === undefined || !(b > 0) || !Number.isFinite(a) ? '–' : `${(a / b).toFixed(2)}×`;
const fmtRate = (n: number | undefined) => n === undefined || !Number.isFinite(n) ? '–' : formatRate(n).trim();
const fmtUs = (us: number | undefined) => us === undefined || !Number.isFinite(us) ? '–' : us < 10 ? `${us.toFixed(2)} µs` : us < 100 ? `${us.toFixed(1)} µs` : `${us.toFixed(0)} µs`;
const fmtLat = (ms: number | undefined) => ms === undefined || !Number.isFinite(ms) ? '–' : formatMs(ms);

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export interface DurableResult {
  /** Markdown: header line(s), tables, notes. */
  markdown: string;
  machine: string;
  minutes: number;
}

const RATIOS: [string, string, string][] = [
  ['turbomq always / Redis always', 'turbomq-always', 'redis-always'],
  ['turbomq always, 1 worker / Redis always', 'turbomq-always-1w', 'redis-always'],
  ['turbomq everysec / Redis everysec', 'turbomq-everysec', 'redis-everysec'],
  ['turbomq everysec / turbomq memory', 'turbomq-everysec', 'turbomq-memory'],
  ['turbomq no / JetStream file', 'turbomq-no', 'jetstream'],
];

export async function runDurable(log: (line: string) => void = console.log): Promise<DurableResult> {
  const started = performance.now();
  const wanted = env.DURABLE_SYSTEMS === undefined ? undefined : list(env.DURABLE_SYSTEMS);
  const skipped: string[] = [];
  if (buildIsStale()) log('note: build/ is older than src/ or assembly/ (or missing): run `npm run build` so the broker measured is the code you have');
  const systems = DURABLE_SYSTEMS.filter((s) => wanted === undefined || wanted.includes(s.key)).filter((s) => {
    const bin = s.key.startsWith('redis') ? which('redis-server') : s.key === 'jetstream' ? which('nats-server') : fs.existsSync(`${root}build/js/cli/main.js`) ? 'ok' : undefined;
    if (bin === undefined) skipped.push(`${s.label} skipped: ${s.hint}`);
    return bin !== undefined;
  });
  const workloads = DURABLE_WORKLOADS.filter((w) => FILTER === undefined || w.name.includes(FILTER));
  const machine = machineLine();
  const versions = versionsLine(systems);
  log(`durable queues: ${machine}`);
  log(versions);
  for (const s of skipped) log(s);
  log(`${REPEAT} repetitions, ${WARMUP_MS / 1000} s warm-up + ${DURATION_MS / 1000} s timed per run, a fresh broker and data directory per run, 16 B messages\n`);
  const loadAtStart = os.loadavg();
  // The disk's own floor for `always`, in this run (the disk is shared: it moves with others' I/O).
  let floor: FloorResult[] = [];
  try {
    floor = await fsyncFloor(500, 3);
    log(`disk floor: ${floor.map((f) => `${f.name} ${f.opsPerS.toFixed(0)} write+fdatasync/s (p50 ${fmtLat(f.p50)})`).join(', ')}`);
  } catch (err) {
    log(`  disk floor: failed: ${(err as Error).message}`);
  }

  const rates = new Map<string, Map<string, number[]>>(); // workload → system → rates
  const cpus = new Map<string, Map<string, number[]>>(); // workload → system → broker µs per message
  const lat = new Map<string, { p50: number[]; p99: number[]; n: number[] }>();
  let run = 0;
  for (const w of workloads) {
    const perSystem = new Map<string, number[]>(systems.map((s) => [s.key, []]));
    rates.set(w.name, perSystem);
    const cpuPerSystem = new Map<string, number[]>(systems.map((s) => [s.key, []]));
    cpus.set(w.name, cpuPerSystem);
    for (let r = 0; r < REPEAT; r++) {
      for (const s of systems) {
        if (w.consumers > 0 && s.popper === undefined) continue; // '–' in the tables
        let server: Server | undefined;
        try {
          server = await s.start();
          if (server === undefined) throw new Error(s.hint);
          const res = await pushLoad(s, server, w, ++run);
          perSystem.get(s.key)!.push(res.rate);
          if (res.cpuUsPerMsg !== undefined) cpuPerSystem.get(s.key)!.push(res.cpuUsPerMsg);
          if (res.latencies !== undefined) {
            const sorted = res.latencies.slice().sort();
            const l = lat.get(s.key) ?? { p50: [], p99: [], n: [] };
            l.p50.push(percentile(sorted, 0.5));
            l.p99.push(percentile(sorted, 0.99));
            l.n.push(sorted.length);
            lat.set(s.key, l);
          }
        } catch (err) {
          log(`  ${w.name}, ${s.label}: failed: ${(err as Error).message.split('\n')[0]}`);
        } finally {
          await server?.stop();
        }
      }
    }
    log(`${w.name.padEnd(26)} ${systems.map((s) => `${s.label} ${fmtRate(median(perSystem.get(s.key)!))}`).join('  ')}  (load ${os.loadavg()[0]!.toFixed(1)})`);
  }

  const shown = systems.map((s) => s.key);
  const ratios = RATIOS.filter(([, a, b]) => shown.includes(a) && shown.includes(b));
  const med = (w: string, k: string) => { const xs = rates.get(w)?.get(k) ?? []; return xs.length === 0 ? undefined : median(xs); };
  const throughput = table(
    ['workload', ...systems.map((s) => s.label)],
    workloads.map((w) => [w.name, ...systems.map((s) => fmtRate(med(w.name, s.key)))]),
  );
  const cpuMed = (w: string, k: string) => { const xs = cpus.get(w)?.get(k) ?? []; return xs.length === 0 ? undefined : median(xs); };
  const cpuTable = table(
    ['workload', ...systems.map((s) => s.label)],
    workloads.map((w) => [w.name, ...systems.map((s) => fmtUs(cpuMed(w.name, s.key)))]),
  );
  const ratioTable = table(
    ['workload', ...ratios.map(([label]) => label)],
    workloads.map((w) => [w.name, ...ratios.map(([, a, b]) => fmtRatio(med(w.name, a), med(w.name, b)))]),
  );
  const latMed = (k: string, q: 'p50' | 'p99') => { const l = lat.get(k); return l === undefined ? undefined : median(l[q]); };
  const redisOf = (k: string) => k === 'turbomq-always' || k === 'turbomq-always-1w' ? 'redis-always' : k === 'turbomq-everysec' ? 'redis-everysec' : undefined;
  const latencyTable = table(
    ['system', 'p50', 'p99', 'samples per run', 'p50 vs Redis same policy', 'p99 vs Redis same policy'],
    systems.filter((s) => lat.has(s.key)).map((s) => {
      const rk = redisOf(s.key);
      return [s.label, fmtLat(latMed(s.key, 'p50')), fmtLat(latMed(s.key, 'p99')), median(lat.get(s.key)!.n).toFixed(0),
        rk === undefined || !lat.has(rk) ? '' : fmtRatio(latMed(s.key, 'p50'), latMed(rk, 'p50')),
        rk === undefined || !lat.has(rk) ? '' : fmtRatio(latMed(s.key, 'p99'), latMed(rk, 'p99'))];
    }),
  );

  // ── recovery ────────────────────────────────────────────────────────────────────────
  const recoveryRows: string[][] = [];
  let emptyStartMs: number | undefined;
  if (RECOVERY_MESSAGES.length > 0 && fs.existsSync(`${root}build/js/cli/main.js`) && (wanted === undefined || wanted.some((k) => k.startsWith('turbomq')))) {
    try {
      emptyStartMs = await emptyStart();
      log(`engine.run() on an empty data directory: ${(emptyStartMs / 1000).toFixed(2)} s (median of ${RECOVERY_REPEAT})`);
    } catch (err) {
      log(`  empty start: failed: ${(err as Error).message.split('\n')[0]}`);
    }
    for (const n of RECOVERY_MESSAGES) {
      try {
        recoveryRows.push(await recovery(n, log, emptyStartMs));
      } catch (err) {
        log(`  recovery of ${n}: failed: ${(err as Error).message.split('\n')[0]}`);
        recoveryRows.push([n.toLocaleString('en-US'), `failed: ${(err as Error).message.split('\n')[0]}`, '', '', '', '']);
      }
    }
  }
  const recoveryTable = table(['messages', 'pushed (fsync no, batch 64, 4P)', 'log on disk', 'engine.run() until ready', 'replayed (messages / run() time)', 'run() time less an empty start (what recovery adds)', 'messages / what recovery adds', 'RSS of this process after'], recoveryRows);

  const minutes = (performance.now() - started) / 60_000;
  const fsType = fileSystemLine();
  const lines = [
    `Machine: ${machine}. ${versions}.`,
    `Data directories in ${os.tmpdir()}: ${fsType}. Load average ${loadAtStart.map((x) => x.toFixed(2)).join(' ')} at the start, ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} at the end; ${minutes.toFixed(1)} minutes.`,
    '',
    `Acknowledged pushes/s, 16 B, producers only, median of ${REPEAT} (each run: a fresh broker, ${WARMUP_MS / 1000} s warm-up, ${DURATION_MS / 1000} s timed); the 4P/4C rows: messages consumed/s with 4 producers and 4 consumers (plain pops, one at a time or up to 64) running together (JetStream: not measured):`,
    '',
    throughput,
    '',
    'Ratios of the medians above (> 1: the first is faster):',
    '',
    ratioTable,
    '',
    `Broker CPU (user + system, all threads, from /proc/PID/task/*/schedstat) per acknowledged message (4P/4C: per message consumed) over the timed part, µs, median of ${REPEAT}:`,
    '',
    cpuTable,
    '',
    ...(floor.length > 0 ? [
      `The disk's floor for \`always\` in this run (bench/compare/fsync-floor.ts: one 48-byte append + fdatasync at a time from Node, 500 per mode, median of 3 rounds; "sync" blocks the thread like Redis, "async" goes through libuv's thread pool like turbomq's log; "preallocated": the file's blocks were written beforehand):`,
      '',
      table(['mode', 'write + fdatasync /s', 'p50', 'p99'], floor.map((f) => [f.name, f.opsPerS.toFixed(0), fmtLat(f.p50), fmtLat(f.p99)])),
      '',
    ] : []),
    ...(lat.size > 0 ? [
      `Push-to-ack latency of a single awaited push (1 producer, one at a time; the "1P single, awaited" runs), median over ${REPEAT} runs of each run's percentile (< 1 vs Redis: turbomq faster):`,
      '',
      latencyTable,
      '',
    ] : []),
    ...(recoveryRows.length > 0 ? [
      `Recovery through the real broker: 16 B messages pushed to \`turbomq serve --data-dir D --fsync no\`, the broker stopped, then \`new TurboEngine(url, { dataDir: D }).run()\` timed until it resolves (recovery done, ${THREADS} workers listening), median of ${RECOVERY_REPEAT} restarts; the log files are in the page cache. An empty data directory's run() took ${emptyStartMs === undefined ? '–' : `${(emptyStartMs / 1000).toFixed(2)} s`} (starting the workers; they start while the main thread recovers, so a start with data takes the longer of the two, then listens), subtracted in the last columns:`,
      '',
      recoveryTable,
      '',
    ] : []),
    ...skipped.map((s) => `- ${s}`),
  ];
  return { markdown: lines.join('\n'), machine, minutes };
}

/** Pushes `n` messages durably (fsync no, batched), stops the broker, times engine.run() on the directory. */
async function timedRun(dir: string, maxMemoryMiB: number): Promise<{ ms: number; engine: TurboEngine }> {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { dataDir: dir, fsync: 'no', threads: THREADS, maxMemoryMiB, maxConnections: 4096, logger: quietLogger });
  const t1 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      engine.run(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`engine.run() not ready within ${RECOVERY_TIMEOUT_MS / 1000} s`)), RECOVERY_TIMEOUT_MS); }),
    ]);
  } catch (err) {
    await engine.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return { ms: performance.now() - t1, engine };
}

/** engine.run() on an empty data directory: the fixed cost of a start (workers, Wasm). */
async function emptyStart(): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < RECOVERY_REPEAT; r++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-bench-empty-'));
    try {
      const { ms, engine } = await timedRun(dir, 256);
      times.push(ms);
      await engine.destroy();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return median(times);
}

async function recovery(n: number, log: (line: string) => void, emptyStartMs: number | undefined): Promise<string[]> {
  // ~40 B of memory per stored 16 B message, plus room.
  const maxMemoryMiB = Math.min(4096, Math.max(256, Math.ceil(n * 64 / 2 ** 20)));
  const server = await startTurbomq(THREADS, { dataDir: true, extraArgs: ['--fsync', 'no', '--max-memory-mib', String(maxMemoryMiB), ...MAX_CONNECTIONS] });
  if (server === undefined) throw new Error(INSTALL_HINT.turbomq);
  const dir = server.dataDir!;
  let keep = false;
  try {
    const t0 = performance.now();
    const producers = 4, batch = 64;
    const items = Array.from({ length: batch }, (_, i) => { const b = Buffer.alloc(SIZE); b.writeUInt32LE(i, 0); return b; });
    const clients = await Promise.all(Array.from({ length: producers }, () => TurboClient.connect(server.url)));
    let next = 0;
    await Promise.all(clients.map(async (c) => {
      const q = c.getQueue('bench');
      const pending: Promise<void>[] = [];
      // 4 batches in flight per producer.
      const one = async () => { while (next < n) { const k = Math.min(batch, n - next); next += k; await q.pushMany('t', k === batch ? items : items.slice(0, k)); } };
      for (let i = 0; i < 4; i++) pending.push(one());
      await Promise.all(pending);
    }));
    const pushMs = performance.now() - t0;
    await Promise.all(clients.map((c) => c.close()));
    await server.stopKeepingData();
    keep = true;
    const bytes = fs.readdirSync(dir).filter((f) => f.endsWith('.log')).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
    log(`recovery ${n.toLocaleString('en-US')}: pushed in ${(pushMs / 1000).toFixed(1)} s (${formatRate(n * 1000 / pushMs)}msg/s), ${(bytes / 2 ** 20).toFixed(0)} MiB of log`);
    const times: number[] = [];
    let rss = 0;
    for (let r = 0; r < RECOVERY_REPEAT; r++) {
      const { ms, engine } = await timedRun(dir, maxMemoryMiB);
      try {
        const length = await engine.getQueue('bench').length('t');
        if (length !== n) throw new Error(`recovered ${length} messages, expected ${n}`);
        times.push(ms);
        rss = Math.max(rss, process.memoryUsage.rss());
        log(`  restart ${r + 1}: ready in ${(ms / 1000).toFixed(2)} s (${formatRate(n * 1000 / ms)}msg/s), ${length.toLocaleString('en-US')} messages, rss ${(process.memoryUsage.rss() / 2 ** 20).toFixed(0)} MiB`);
      } finally {
        await engine.destroy();
      }
    }
    const ms = median(times);
    const net = emptyStartMs === undefined ? undefined : ms - emptyStartMs;
    return [n.toLocaleString('en-US'), `${(pushMs / 1000).toFixed(1)} s (${fmtRate(n * 1000 / pushMs)}/s)`, `${(bytes / 2 ** 20).toFixed(0)} MiB`, `${(ms / 1000).toFixed(2)} s`, `${(n / 1000 / ms).toFixed(2)} M msgs/s`,
      net === undefined ? '–' : `${(net / 1000).toFixed(2)} s`, net === undefined || !(net > 0) ? '–' : `${(n / 1000 / net).toFixed(2)} M msgs/s`, `${(rss / 2 ** 20).toFixed(0)} MiB`];
  } finally {
    if (!keep) await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const quietLogger = {
  info() {}, debug() {},
  warn: (obj: object | string, msg?: string) => console.warn('turbomq warn:', msg ?? '', typeof obj === 'string' ? obj : JSON.stringify(obj)),
  error: (obj: object | string, msg?: string) => console.warn('turbomq error:', msg ?? '', typeof obj === 'string' ? obj : JSON.stringify(obj)),
};

function machineLine(): string {
  return `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}, node ${process.versions.node}, turbomq serve with ${THREADS} worker threads`;
}

function versionsLine(systems: SystemSpec[]): string {
  const parts: string[] = [];
  const pkg = (name: string) => { try { return JSON.parse(fs.readFileSync(`${root}node_modules/${name}/package.json`, 'utf8')).version as string; } catch { return '?'; } };
  const redisBin = which('redis-server'), natsBin = which('nats-server');
  if (systems.some((s) => s.key.startsWith('redis')) && redisBin !== undefined) {
    parts.push(`redis-server ${/v=(\S+)/.exec(execFileSync(redisBin, ['--version']).toString())?.[1] ?? '?'} (--appendonly yes --appendfsync always|everysec, --save '') with ioredis ${pkg('ioredis')}`);
  }
  if (systems.some((s) => s.key === 'jetstream') && natsBin !== undefined) {
    parts.push(`nats-server ${/v?(\d+\.\d+\.\d+)/.exec(execFileSync(natsBin, ['--version']).toString())?.[1] ?? '?'} (-js, a stream with storage: file and its default syncing) with nats.js ${pkg('nats')}`);
  }
  return parts.join('; ');
}

function fileSystemLine(): string {
  try {
    const out = execFileSync('df', ['-T', os.tmpdir()]).toString().trim().split('\n').at(-1)!.split(/\s+/);
    return `${out[1]} on ${out[0]} (mounted on ${out[6]})`;
  } catch {
    return 'file system unknown';
  }
}

/** Whether a filter (systems, workloads, fewer repetitions) makes this run unfit for the docs. */
export function durableFiltered(): boolean {
  return env.DURABLE_SYSTEMS !== undefined || FILTER !== undefined || REPEAT < 3 || env.RECOVERY_MESSAGES !== undefined;
}

/** Writes the run into docs/benchmarks.md between the durable markers (a new section at the end the first time). */
export function writeDurableDocs(res: DurableResult): void {
  const date = new Date().toISOString().slice(0, 10);
  const section = [
    '<!-- durable:begin (written by npm run bench:compare -- --only durable; edit the text around it, not inside) -->',
    `Run on ${date}.`,
    '',
    res.markdown,
    '<!-- durable:end -->',
  ].join('\n');
  const docPath = `${root}docs/benchmarks.md`;
  let doc = fs.existsSync(docPath) ? fs.readFileSync(docPath, 'utf8') : '# Benchmarks\n';
  const re = /<!-- durable:begin[^]*?<!-- durable:end -->/;
  doc = re.test(doc) ? doc.replace(re, () => section) : `${doc.trimEnd()}\n\n## Durable queues\n\n${section}\n`;
  fs.writeFileSync(docPath, doc);
  console.log('wrote docs/benchmarks.md (durable section)');
}

// ── run alone ──────────────────────────────────────────────────────────────────────────

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
  const res = await runDurable();
  console.log(`\n${res.markdown}`);
  if (env.WRITE_DOCS !== '0' && !durableFiltered()) writeDurableDocs(res);
  process.exit(0);
}
