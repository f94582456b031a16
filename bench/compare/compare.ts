// npm run bench:compare — the same workloads, in one run, against turbomq, Redis, NATS (core
// pub/sub with a queue group, and JetStream), RabbitMQ (consume-and-ack only) and a raw-TCP
// floor (turbomq's framing over plain Node sockets, a JS array relay: bench/compare/raw.ts).
// Every broker is its own process on 127.0.0.1 (bench/compare/servers.ts: turbomq is
// `node build/js/cli/main.js serve`), so its CPU time per message can be read from /proc and
// is not mixed with the load generator's. The clients are the load generator
// (src/cli/loadgen.ts) in this process, on CLIENT_THREADS threads.
//
// Sections (SECTIONS=matrix,latency,wire,ack,durable, or `npm run bench:compare -- --only durable`):
// - matrix: 1P/1C and 4P/4C, 16 B and 256 B, single request/response and batches of 64,
//   1 topic and 10,000 topics; msgs/s and broker CPU µs per message. Client-thread counts above
//   1 (CLIENT_THREADS=1,2) run the 4P/4C workloads again on that many threads. Each group of
//   rows (single or batched, per client-thread count) starts with an untimed warm-up per system.
// - latency: end-to-end latency at a fixed LATENCY_RATE msgs/s; it runs first (after an untimed
//   warm-up), while the machine is quietest, and reports the load average it started at.
// - wire: turbomq client vs the wire floor (pre-encoded PUSH_MANY / POP_MANY frames on a plain
//   socket, bench/compare/wire-floor.ts) on the same broker.
// - ack: consume-and-ack (at-least-once) with turbomq's leases (issue 10; "n/a" until the client
//   has them), RabbitMQ (manual acks, prefetch) and NATS JetStream (pull consumer, explicit
//   acks), one at a time and batched, next to turbomq's plain popMany in the same run.
// - durable: durable queues (issue 11), bench/compare/durable.ts: push throughput and latency of
//   turbomq under each fsync policy against Redis's AOF and JetStream file storage, and recovery
//   time; its own brokers, its own section of docs/benchmarks.md (DURABLE_* overrides there).
//
// Each figure is the median of REPEAT repetitions; the systems take turns within each
// repetition, so a noisy moment does not fall on one system only. Writes docs/benchmarks.svg
// and the section between the compare markers in docs/benchmarks.md when the matrix, latency,
// wire and ack sections ran for every system, unfiltered (WRITE_DOCS=0 to skip); the durable
// section writes its own block. Environment overrides:
//   REPEAT=3  SINGLE_MESSAGES=8000  BATCH_MESSAGES=256000  DURATION_S=8  CLIENT_THREADS=1,2
//   LATENCY_RATE=10000  LATENCY_SECONDS=3  WIRE_MESSAGES=8000000  WIRE_IN_FLIGHT=16,64
//   ACK_SINGLE_MESSAGES=4000  ACK_BATCH_MESSAGES=64000  THREADS=<cores>
//   SYSTEMS=turbomq,redis,nats,jetstream,raw,rabbitmq  SECTIONS=matrix,latency,wire,ack,durable
//   WORKLOADS=<substring filter on the workload name>
//   RABBITMQ_URL=<reuse a running broker> RABBITMQ_PID=<its beam.smp, for its CPU time>

import os from 'node:os';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../../src/index.ts';
import { runLoad, turbomqDriverSpec, median, formatRate, formatMs, type DriverSpec, type LoadResult, type Workload, type Progress } from '../../src/cli/loadgen.ts';
import { spec } from './drivers.ts';
import { startRedis, startNats, startRabbitMQ, startTurbomq, startRawServer, startEchoServer, buildIsStale, INSTALL_HINT, type Server } from './servers.ts';
import { echoLatency, type EchoLatency } from './echo-floor.ts';
import { rawDriverSpec } from './raw.ts';
import { leasesAvailable, turbomqLeasedDriverSpec, NEEDS_LEASES } from './leased.ts';
import { floorPush, floorPop, clientPush, clientPop, type WireRun, type WireSpec } from './wire-floor.ts';
import { markdownTable, cpuTable, latencyTable, wireTable, svgChart, type Figure, type LatencyFigure, type SystemInfo, type WireFigure, type Panel } from './report.ts';
import { cpuMs, processTree, procAvailable } from '../lib/proc.ts';

const env = process.env;
const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
const REPEAT = Number(env.REPEAT ?? 3);
const SINGLE_MESSAGES = Number(env.SINGLE_MESSAGES ?? 8000);
// 256,000: a batched run lasts 0.2-0.5 s for turbomq and Redis. With 64,000 (50-100 ms) one
// scheduling hiccup decided a median of 3: a 2026-12-04 run had 4P/4C 256 B batch 64 on 2 client
// threads at 0.99x Redis, and two reruns of that row right after at 1.58x and 1.97x.
const BATCH_MESSAGES = Number(env.BATCH_MESSAGES ?? 256_000);
const DURATION_MS = Number(env.DURATION_S ?? 8) * 1000;
const CLIENT_THREADS = list(env.CLIENT_THREADS ?? '1,2').map(Number);
const LATENCY_RATE = Number(env.LATENCY_RATE ?? 10_000);
const LATENCY_SECONDS = Number(env.LATENCY_SECONDS ?? 3);
// 8 M: one run takes 0.2-0.8 s here; with 2 M (50-180 ms) a scheduling hiccup moved a
// repetition's ratio anywhere from 0.4 to 1.1.
const WIRE_MESSAGES = Number(env.WIRE_MESSAGES ?? 8_000_000);
const WIRE_IN_FLIGHT = list(env.WIRE_IN_FLIGHT ?? '16,64').map(Number);
const ACK_SINGLE_MESSAGES = Number(env.ACK_SINGLE_MESSAGES ?? 4000);
const ACK_BATCH_MESSAGES = Number(env.ACK_BATCH_MESSAGES ?? 64_000);
const THREADS = Number(env.THREADS ?? os.availableParallelism());
const DEFAULT_SYSTEMS = 'turbomq,redis,nats,jetstream,raw,rabbitmq';
const DEFAULT_SECTIONS = 'matrix,latency,wire,ack,durable';
// `--only a,b`: the same as SECTIONS=a,b.
const onlyAt = process.argv.indexOf('--only');
const ONLY = onlyAt >= 0 ? process.argv[onlyAt + 1] : process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const WANTED = list(env.SYSTEMS ?? DEFAULT_SYSTEMS);
const SECTIONS = list(ONLY ?? env.SECTIONS ?? DEFAULT_SECTIONS);
/** The brokers started below serve every section but durable (which starts its own). */
const SHARED_BROKERS = SECTIONS.some((s) => s !== 'durable');
const FILTER = env.WORKLOADS;
// The compare block holds every table but the durable one (which has its own block): it is
// rewritten by a run of all the systems and all four sections, durable or not.
const WRITE_DOCS = env.WRITE_DOCS !== '0' && FILTER === undefined && ONLY === undefined && env.SYSTEMS === undefined
  && ['matrix', 'latency', 'wire', 'ack'].every((s) => SECTIONS.includes(s));
const root = fileURLToPath(new URL('../../', import.meta.url));

const MATRIX_SYSTEMS: SystemInfo[] = [
  { key: 'turbomq', label: 'turbomq', color: '#d6336c' },
  { key: 'redis', label: 'Redis', color: '#1c7ed6' },
  { key: 'nats', label: 'NATS', color: '#37b24d' },
  { key: 'jetstream', label: 'NATS JetStream', color: '#f59f00' },
  { key: 'raw', label: 'raw TCP floor', color: '#868e96' },
];
const ACK_SYSTEMS: SystemInfo[] = [
  { key: 'turbomq', label: 'turbomq popMany+ack', short: 'turbomq', color: '#d6336c' },
  { key: 'turbomq-sub', label: 'turbomq subscribe+ack', short: 'subscribe', color: '#f783ac' },
  { key: 'rabbitmq', label: 'RabbitMQ', color: '#7048e8' },
  { key: 'jetstream', label: 'NATS JetStream', short: 'JetStream', color: '#f59f00' },
  { key: 'turbomq-plain', label: 'turbomq plain popMany (no ack)', short: 'plain popMany', color: '#adb5bd' },
];

const started = performance.now();
const log = (line: string) => {
  if (process.stdout.isTTY) process.stdout.write('\r\x1b[2K');
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
};

// Children are killed by the exit hook in servers.ts; make Ctrl-C go through it.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

// ── start the brokers ──────────────────────────────────────────────────────────────────

const versions: string[] = [`node ${process.versions.node}`];
const skipped: string[] = [];
const servers = new Map<string, Server>();
const need = (key: string) => SHARED_BROKERS && WANTED.includes(key);

let turbomqUrl: string | undefined;
if (need('turbomq')) {
  if (buildIsStale()) console.log('note: build/ is older than src/ or assembly/ (or missing): run `npm run build` so the broker measured is the code you have');
  const t = await startTurbomq(THREADS);
  if (t === undefined) skipped.push(`turbomq skipped: ${INSTALL_HINT.turbomq}`);
  else {
    servers.set('turbomq', t);
    turbomqUrl = t.url;
    versions.push(`turbomq ${VERSION} (turbomq serve, ${THREADS} worker threads)`);
  }
}
if (need('redis')) {
  const redis = await startRedis();
  if (redis === undefined) skipped.push(`Redis skipped: ${INSTALL_HINT.redis}`);
  else {
    servers.set('redis', redis);
    versions.push(`redis-server ${redis.version} (--save '' --appendonly no) with ioredis ${packageVersion('ioredis')}`);
  }
}
if (need('nats') || need('jetstream')) {
  const nats = await startNats();
  if (nats === undefined) skipped.push(`NATS skipped: ${INSTALL_HINT.nats}`);
  else {
    servers.set('nats', nats);
    versions.push(`nats-server ${nats.version} (-js, memory streams) with nats.js ${packageVersion('nats')}`);
    if (need('jetstream')) {
      // JetStream may be disabled in a server build: try once before counting on it.
      try {
        await runLoad(spec('jetStreamDriver', nats.port), { producers: 1, consumers: 1, messages: 1, sizeBytes: 16, batch: 1, topics: 1, durationMs: 5000, topicPrefix: 'probe' });
        servers.set('jetstream', nats);
      } catch (err) {
        skipped.push(`NATS JetStream skipped: ${(err as Error).message}`);
      }
    }
  }
}
if (need('raw')) servers.set('raw', await startRawServer());
let rabbitUrl: string | undefined;
if (need('rabbitmq') && SECTIONS.includes('ack')) {
  try {
    const rabbit = await startRabbitMQ();
    if (rabbit === undefined) skipped.push(`RabbitMQ skipped: ${INSTALL_HINT.rabbitmq}`);
    else {
      servers.set('rabbitmq', rabbit);
      rabbitUrl = rabbit.url;
      versions.push(`rabbitmq-server ${rabbit.version} (classic queues, not durable) with amqplib ${packageVersion('amqplib')}`);
    }
  } catch (err) {
    skipped.push(`RabbitMQ skipped: ${(err as Error).message}`);
  }
}
if (!procAvailable) skipped.push('broker CPU per message not measured: no /proc on this system');
for (const line of skipped) console.log(line);

async function stopAll(): Promise<void> {
  for (const s of new Set(servers.values())) await s.stop();
}

function packageVersion(name: string): string {
  try {
    return JSON.parse(fs.readFileSync(`${root}node_modules/${name}/package.json`, 'utf8')).version as string;
  } catch {
    return '?';
  }
}

/** The server whose CPU a system's runs use. */
const serverOf = (key: string): Server | undefined => servers.get(key.startsWith('turbomq') ? 'turbomq' : key);

// ── running one workload on one system ─────────────────────────────────────────────────

interface Measured { result: LoadResult; cpuUsPerMsg: number | undefined }

/** Progress of long runs: a live line on a terminal, else a line every 10 s. */
function progressFor(what: string): (p: Progress) => void {
  let lastLineAt = 0;
  return (p) => {
    const line = `  ${what}: ${(p.elapsedMs / 1000).toFixed(0)} s, ${p.received.toLocaleString('en-US')} of ${p.sent.toLocaleString('en-US')} sent received, ${formatRate(p.rate)}msg/s`;
    if (process.stdout.isTTY) process.stdout.write(`\r\x1b[2K${line}`);
    else if (p.elapsedMs - lastLineAt >= 10_000) { lastLineAt = p.elapsedMs; console.log(line); }
  };
}

function brokerCpuMs(server: Server | undefined): number | undefined {
  if (server?.pid === undefined || !procAvailable) return undefined;
  return cpuMs(processTree(server.pid));
}

let runCounter = 0;
async function runOne(key: string, driver: DriverSpec, w: Omit<Workload, 'topicPrefix'>, name: string): Promise<Measured | undefined> {
  const server = serverOf(key);
  try {
    const before = brokerCpuMs(server);
    const result = await runLoad(driver, { ...w, topicPrefix: `c${++runCounter}-`, onProgress: progressFor(`${name}, ${key}`), progressEveryMs: 1000 });
    const after = brokerCpuMs(server);
    const cpuUsPerMsg = before === undefined || after === undefined || result.received === 0 ? undefined : (after - before) * 1000 / result.received;
    return { result, cpuUsPerMsg };
  } catch (err) {
    log(`  ${key}: failed: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

function figureOf(name: string, systems: SystemInfo[], results: Map<string, Measured[]>, notAvailable?: Record<string, string>): Figure {
  const figure: Figure = { workload: name, rates: {}, cpuUsPerMsg: {}, notExact: {}, notAvailable };
  for (const s of systems) {
    const rs = results.get(s.key) ?? [];
    figure.rates[s.key] = rs.length === 0 ? undefined : median(rs.map((x) => x.result.receiveRate));
    const cpu = rs.map((x) => x.cpuUsPerMsg).filter((x): x is number => x !== undefined);
    figure.cpuUsPerMsg[s.key] = cpu.length === 0 ? undefined : median(cpu);
    figure.notExact[s.key] = rs.filter((x) => !x.result.exactlyOnce).length;
  }
  return figure;
}

const logFigure = (f: Figure, systems: SystemInfo[]) => log(`${f.workload.padEnd(44)} ${systems.map((s) => `${s.label} ${f.notAvailable?.[s.key] ?? formatRate(f.rates[s.key] ?? NaN)}${f.notExact[s.key] ? '!' : ''}`).join('  ')}`);

// ── the systems, and the matrix's workloads ──────────────────────────────────────────────

const matrixDrivers = new Map<string, () => DriverSpec>();
if (turbomqUrl !== undefined) matrixDrivers.set('turbomq', () => turbomqDriverSpec(turbomqUrl!));
if (servers.has('redis')) matrixDrivers.set('redis', () => spec('redisDriver', servers.get('redis')!.port));
if (servers.has('nats') && need('nats')) matrixDrivers.set('nats', () => spec('natsDriver', servers.get('nats')!.port));
if (servers.has('jetstream')) matrixDrivers.set('jetstream', () => spec('jetStreamDriver', servers.get('jetstream')!.port));
if (servers.has('raw')) matrixDrivers.set('raw', () => rawDriverSpec(servers.get('raw')!.port));
const matrixSystems = MATRIX_SYSTEMS.filter((s) => matrixDrivers.has(s.key));

interface Spec { name: string; workload: Omit<Workload, 'topicPrefix'> }
const specs: Spec[] = [];
for (const clientThreads of CLIENT_THREADS) {
  for (const topics of [1, 10_000]) {
    for (const batch of [1, 64]) {
      for (const [producers, consumers] of [[1, 1], [4, 4]] as const) {
        if (clientThreads > 1 && producers === 1) continue;
        for (const sizeBytes of [16, 256]) {
          const name = `${producers}P/${consumers}C ${sizeBytes} B ${batch === 1 ? 'single' : `batch ${batch}`}${topics === 1 ? '' : ', 10k topics'}${clientThreads === 1 ? '' : `, ${clientThreads} client threads`}`;
          if (FILTER !== undefined && !name.includes(FILTER)) continue;
          specs.push({ name, workload: { producers, consumers, sizeBytes, batch, topics, clientThreads, messages: batch === 1 ? SINGLE_MESSAGES : BATCH_MESSAGES, durationMs: DURATION_MS } });
        }
      }
    }
  }
}

console.log(`turbomq broker comparison: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log(versions.join('; '));
console.log(`sections ${SECTIONS.join(', ')}; ${REPEAT} repetitions${SHARED_BROKERS ? `; single: ${SINGLE_MESSAGES} messages per run, batched: ${BATCH_MESSAGES}; client threads ${CLIENT_THREADS.join(', ')}` : ''}\n`);

// ── latency at a fixed rate ────────────────────────────────────────────────────────────

const latency: LatencyFigure[] = [];
/** The 1, 5 and 15 min load averages when the latency section started. */
let latencyLoad: number[] | undefined;
/** The latency table's last row: the machine's floor (echo-floor.ts), no broker. */
const ECHO_SYSTEM: SystemInfo = { key: 'echo', label: 'loopback echo (one hop, no broker)', color: '#999999' };
if (SECTIONS.includes('latency') && (FILTER === undefined || 'latency'.includes(FILTER))) {
  const perSystem = new Map<string, LoadResult[]>(matrixSystems.map((s) => [s.key, []]));
  // Issue 13's latency target is for an idle machine: this section runs before the others, on
  // the quietest machine of the run, and the load average it started at is reported with it.
  latencyLoad = os.loadavg();
  const w: Omit<Workload, 'topicPrefix'> = {
    // Single sends, paced; the consumer takes up to 64 per pop so it can keep up.
    producers: 1, consumers: 1, sizeBytes: 16, batch: 1, consumerBatch: 64, topics: 1,
    messages: LATENCY_RATE * LATENCY_SECONDS, rate: LATENCY_RATE, durationMs: LATENCY_SECONDS * 1000 + 5000,
  };
  // The brokers and this process are fresh (this section runs first): one untimed second of
  // the same load per system, so the timed runs do not pay for the JIT.
  for (const s of matrixSystems) await runOne(s.key, matrixDrivers.get(s.key)!(), { ...w, messages: LATENCY_RATE }, 'latency warm-up');
  // The machine's own floor, measured between the systems: one hop to a Node echo process.
  const echo = await startEchoServer();
  const echoes: EchoLatency[] = [];
  try {
    for (let r = 0; r < REPEAT; r++) {
      for (const s of matrixSystems) {
        const m = await runOne(s.key, matrixDrivers.get(s.key)!(), w, 'latency');
        if (m !== undefined) perSystem.get(s.key)!.push(m.result);
      }
      echoes.push(await echoLatency(echo.port, LATENCY_RATE, LATENCY_SECONDS));
    }
  } finally {
    await echo.stop();
  }
  for (const s of matrixSystems) {
    const rs = perSystem.get(s.key)!;
    if (rs.length === 0) continue;
    latency.push({
      system: s.key,
      p50: median(rs.map((x) => x.latencyMs.p50)),
      p99: median(rs.map((x) => x.latencyMs.p99)),
      p999: median(rs.map((x) => x.latencyMs.p999)),
      rate: median(rs.map((x) => x.receiveRate)),
      exact: rs.every((x) => x.exactlyOnce),
    });
    const l = latency.at(-1)!;
    log(`latency at ${formatRate(LATENCY_RATE)}msg/s  ${s.label.padEnd(16)} p50 ${formatMs(l.p50)}  p99 ${formatMs(l.p99)}  p99.9 ${formatMs(l.p999)}`);
  }
  if (echoes.length > 0) {
    latency.push({
      system: ECHO_SYSTEM.key,
      p50: median(echoes.map((x) => x.p50)), p99: median(echoes.map((x) => x.p99)), p999: median(echoes.map((x) => x.p999)),
      rate: median(echoes.map((x) => x.rate)), exact: true,
    });
    const l = latency.at(-1)!;
    log(`latency at ${formatRate(LATENCY_RATE)}msg/s  ${'loopback echo'.padEnd(16)} p50 ${formatMs(l.p50)}  p99 ${formatMs(l.p99)}  p99.9 ${formatMs(l.p999)}`);
  }
}

// ── the matrix ─────────────────────────────────────────────────────────────────────────

const figures: Figure[] = [];
if (SECTIONS.includes('matrix')) {
  let warmed = '';
  for (const s of specs) {
    // An untimed warm-up per system when the rows move to another path (single or batched sends)
    // or another number of client threads: the timed runs last 0.1-0.5 s, about the time V8
    // takes to optimise a path's code, and client threads are kept between runs
    // (src/cli/loadgen/threads.ts), so the warm-up's compiled code is the timed runs' too.
    const group = `${s.workload.clientThreads} ${s.workload.batch === 1 ? 'single' : 'batched'}`;
    if (group !== warmed) {
      warmed = group;
      const warmUp = { ...s.workload, messages: s.workload.messages * 4, durationMs: 1000 };
      for (const sys of matrixSystems) await runOne(sys.key, matrixDrivers.get(sys.key)!(), warmUp, `${s.name} (warm-up)`);
    }
    const results = new Map<string, Measured[]>(matrixSystems.map((x) => [x.key, []]));
    for (let r = 0; r < REPEAT; r++) {
      for (const sys of matrixSystems) {
        const m = await runOne(sys.key, matrixDrivers.get(sys.key)!(), s.workload, s.name);
        if (m !== undefined) results.get(sys.key)!.push(m);
      }
    }
    figures.push(figureOf(s.name, matrixSystems, results));
    logFigure(figures.at(-1)!, matrixSystems);
  }
}

// ── the wire floor ─────────────────────────────────────────────────────────────────────

const wire: WireFigure[] = [];
if (SECTIONS.includes('wire') && turbomqUrl !== undefined) {
  const server = servers.get('turbomq')!;
  const url = turbomqUrl;
  const measure = async (run: () => Promise<WireRun>): Promise<{ rate: number; cpuUs: number | undefined }> => {
    const before = brokerCpuMs(server);
    const r = await run();
    const after = brokerCpuMs(server);
    return { rate: r.rate, cpuUs: before === undefined || after === undefined ? undefined : (after - before) * 1000 / r.messages };
  };
  let n = 0;
  // Untimed warm-up, so the first timed client run is not the one that pays for the JIT, nor
  // for the broker's first touch of the memory a full repetition holds: the first push of
  // WIRE_MESSAGES grows the core's memory (page faults on every new page), and every later run
  // reuses it. Without the fill, the first repetition (client first) measured 0.3x where the
  // others measured 0.7x.
  const fill: WireSpec = { queue: 'wire', topic: 'warm-up', messages: WIRE_MESSAGES, batch: 64, sizeBytes: 16, inFlight: 64 };
  await floorPush(server.port, fill);
  await floorPop(server.port, fill);
  const warm: WireSpec = { ...fill, messages: 512_000, inFlight: 16 };
  await clientPush(url, warm);
  await clientPop(url, warm);
  for (const op of ['push', 'pop'] as const) {
    for (const inFlight of WIRE_IN_FLIGHT) {
      const name = `${op} batch 64, 16 B, ${inFlight} in flight`;
      if (FILTER !== undefined && !name.includes(FILTER)) continue;
      const client: { rate: number; cpuUs: number | undefined }[] = [], floor: typeof client = [];
      const ratios: number[] = [];
      for (let r = 0; r < REPEAT; r++) {
        const done = { client: client.length, floor: floor.length };
        // Alternating who goes first, so neither always runs on the broker the other warmed.
        for (const who of r % 2 === 0 ? ['client', 'floor'] as const : ['floor', 'client'] as const) {
          const s: WireSpec = { queue: 'wire', topic: `w${++n}`, messages: WIRE_MESSAGES, batch: 64, sizeBytes: 16, inFlight };
          try {
            if (op === 'pop') await floorPush(server.port, s); // fill the topic (untimed)
            const m = await measure(() => op === 'push'
              ? (who === 'client' ? clientPush(url, s) : floorPush(server.port, s))
              : (who === 'client' ? clientPop(url, s) : floorPop(server.port, s)));
            (who === 'client' ? client : floor).push(m);
            if (op === 'push') await floorPop(server.port, s); // empty it again
          } catch (err) {
            log(`  wire ${who}: failed: ${(err as Error).message}`);
          }
        }
        if (client.length > done.client && floor.length > done.floor) ratios.push(client.at(-1)!.rate / floor.at(-1)!.rate);
      }
      const cpu = (xs: typeof client) => { const v = xs.map((x) => x.cpuUs).filter((x): x is number => x !== undefined); return v.length === 0 ? undefined : median(v); };
      wire.push({
        workload: name,
        clientRate: client.length === 0 ? undefined : median(client.map((x) => x.rate)),
        floorRate: floor.length === 0 ? undefined : median(floor.map((x) => x.rate)),
        clientCpuUs: cpu(client), floorCpuUs: cpu(floor),
        pairedRatio: ratios.length === 0 ? undefined : median(ratios),
      });
      const f = wire.at(-1)!;
      log(`wire: ${name.padEnd(34)} client ${formatRate(f.clientRate ?? NaN)}  floor ${formatRate(f.floorRate ?? NaN)}  client/floor ${f.pairedRatio === undefined ? '-' : f.pairedRatio.toFixed(2)} (per repetition: ${ratios.map((x) => x.toFixed(2)).join(' ')})`);
    }
  }
}

// ── consume and ack ────────────────────────────────────────────────────────────────────

const ackFigures: Figure[] = [];
let leases = false;
if (SECTIONS.includes('ack')) {
  leases = turbomqUrl !== undefined && await leasesAvailable(turbomqUrl);
  if (turbomqUrl !== undefined && !leases) console.log(`consume-and-ack: turbomq with acks ${NEEDS_LEASES}: the client has no leased pops yet; RabbitMQ, JetStream and plain popMany still run`);
  const ackDrivers = new Map<string, (batch: number) => DriverSpec>();
  if (turbomqUrl !== undefined) {
    if (leases) {
      ackDrivers.set('turbomq', () => turbomqLeasedDriverSpec(turbomqUrl!, { mode: 'pop' }));
      ackDrivers.set('turbomq-sub', (batch) => turbomqLeasedDriverSpec(turbomqUrl!, { mode: 'subscribe', prefetch: batch }));
    }
    ackDrivers.set('turbomq-plain', () => turbomqDriverSpec(turbomqUrl!));
  }
  if (rabbitUrl !== undefined) ackDrivers.set('rabbitmq', (batch) => spec('rabbitDriver', rabbitUrl, { prefetch: batch }));
  if (servers.has('jetstream')) ackDrivers.set('jetstream', (batch) => spec('jetStreamDriver', servers.get('jetstream')!.port, batch === 1 ? { pull: 'next' } : { pull: 'consume', maxMessages: batch }));
  const ackSystems = ACK_SYSTEMS.filter((s) => ackDrivers.has(s.key) || (s.key.startsWith('turbomq') && turbomqUrl !== undefined));
  const notAvailable: Record<string, string> = leases ? {} : { 'turbomq': NEEDS_LEASES, 'turbomq-sub': NEEDS_LEASES };
  for (const batch of [1, 64]) {
    for (const [producers, consumers] of [[1, 1], [4, 4]] as const) {
      const name = `${producers}P/${consumers}C 16 B ${batch === 1 ? 'one at a time' : `batch ${batch}`}`;
      if (FILTER !== undefined && !`ack ${name}`.includes(FILTER)) continue;
      const w: Omit<Workload, 'topicPrefix'> = { producers, consumers, sizeBytes: 16, batch, topics: 1, messages: batch === 1 ? ACK_SINGLE_MESSAGES : ACK_BATCH_MESSAGES, durationMs: DURATION_MS };
      const results = new Map<string, Measured[]>(ackSystems.map((s) => [s.key, []]));
      for (let r = 0; r < REPEAT; r++) {
        for (const s of ackSystems) {
          const make = ackDrivers.get(s.key);
          if (make === undefined) continue;
          const m = await runOne(s.key, make(batch), w, `ack ${name}`);
          if (m !== undefined) results.get(s.key)!.push(m);
        }
      }
      ackFigures.push(figureOf(name, ackSystems, results, notAvailable));
      logFigure({ ...ackFigures.at(-1)!, workload: `ack ${name}` }, ackSystems);
    }
  }
}

await stopAll();

// ── durable queues ─────────────────────────────────────────────────────────────────────

let durableMarkdown: string | undefined;
if (SECTIONS.includes('durable')) {
  const { runDurable, writeDurableDocs, durableFiltered } = await import('./durable.ts');
  console.log('');
  const res = await runDurable(log);
  durableMarkdown = res.markdown;
  if (env.WRITE_DOCS !== '0' && !durableFiltered()) writeDurableDocs(res);
}

// ── report ─────────────────────────────────────────────────────────────────────────────

const ratioTo = ['redis', 'nats', 'raw'].filter((k) => matrixDrivers.has(k));
const table = markdownTable(matrixSystems, figures, 'turbomq', matrixDrivers.has('turbomq') ? ratioTo : []);
const cpu = cpuTable(matrixSystems, figures, 'turbomq', matrixDrivers.has('turbomq') ? ratioTo : []);
const latTable = latencyTable([...matrixSystems, ECHO_SYSTEM], latency, 'turbomq');
const wTable = wireTable(wire);
const ackSystemsShown = ACK_SYSTEMS.filter((s) => ackFigures.some((f) => f.rates[s.key] !== undefined || f.notAvailable?.[s.key] !== undefined));
const ackRatioTo = ['rabbitmq', 'jetstream', 'turbomq-plain'].filter((k) => ackSystemsShown.some((s) => s.key === k));
const ackTable = markdownTable(ackSystemsShown, ackFigures, 'turbomq', ackRatioTo);
const ackCpu = cpuTable(ackSystemsShown, ackFigures, 'turbomq', ackRatioTo.filter((k) => k !== 'turbomq-plain'));
const out: string[] = [];
if (figures.length > 0) out.push(`messages/s received (median of ${REPEAT}); ratios > 1: turbomq ahead`, '', table, '', `broker CPU (user + system) per message received, µs (median of ${REPEAT}); ratios < 1: turbomq uses less`, '', cpu, '');
if (latency.length > 0) out.push(`end-to-end latency at ${LATENCY_RATE.toLocaleString('en-US')} msgs/s, 1P/1C, 16 B (median of ${REPEAT}${latencyLoad === undefined ? '' : `; load average ${latencyLoad.map((x) => x.toFixed(1)).join(' ')} at its start`}); ratios < 1: turbomq faster`, '', latTable, '');
if (wire.length > 0) out.push(`turbomq client vs the wire floor (pre-encoded frames, one connection), msgs/s (median of ${REPEAT})`, '', wTable, '');
if (ackFigures.length > 0) out.push(`consume and ack, msgs/s received (median of ${REPEAT}); ratios > 1: turbomq ahead`, '', ackTable, '', 'broker CPU per message consumed and acked, µs', '', ackCpu, '');
const minutes = ((performance.now() - started) / 60_000).toFixed(1);
if (durableMarkdown !== undefined) out.push('durable queues', '', durableMarkdown, '');
console.log(`\n${out.join('\n')}\n(${minutes} min, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`);

if (WRITE_DOCS) {
  const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}`;
  const date = new Date().toISOString().slice(0, 10);
  const section = [
    '<!-- compare:begin (written by npm run bench:compare; edit the text around it, not inside) -->',
    `Run on ${date}: ${machine}, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end. ${versions.join('; ')}. The whole comparison took ${minutes} minutes.`,
    '',
    `Messages/s received, median of ${REPEAT} repetitions (single: ${SINGLE_MESSAGES.toLocaleString('en-US')} messages per repetition; batched: ${BATCH_MESSAGES.toLocaleString('en-US')}). Ratios above 1 mean turbomq is ahead. ⚠ marks a system that lost or duplicated messages in some repetition.`,
    '',
    table,
    '',
    `Broker CPU time (user + system, from /proc/PID/task/*/schedstat of the broker's process, every thread, in ns) per message received, µs, same runs. Ratios below 1 mean turbomq's broker uses less CPU per message.`,
    '',
    cpu,
    '',
    ...(latency.length > 0 ? [
      `End-to-end latency (send call to message in the consumer's hands) at a fixed ${LATENCY_RATE.toLocaleString('en-US')} msgs/s, 1 producer (single sends, paced, pipelined), 1 consumer (up to 64 per pop), 16 B, one topic, ${LATENCY_SECONDS} s per repetition, median of ${REPEAT}${latencyLoad === undefined ? '' : `, load average ${latencyLoad.map((x) => x.toFixed(1)).join(' ')} when it started`}. Ratios below 1 mean turbomq is faster. The last row is the machine's floor: the same paced sender to a Node process that echoes it back, one hop and no broker (bench/compare/echo-floor.ts).`,
      '',
      latTable,
      '',
    ] : []),
    ...(wire.length > 0 ? [
      `The turbomq client against the wire floor on the same broker: one connection, batches of 64 messages of 16 B, ${WIRE_MESSAGES.toLocaleString('en-US')} messages per repetition, median of ${REPEAT}; "client / floor" is the median of each repetition's ratio (the client's run and the floor's, back to back).`,
      '',
      wTable,
      '',
    ] : []),
    ...(ackFigures.length > 0 ? [
      `Consume and ack (at-least-once), one topic, 16 B: messages/s received and acked, median of ${REPEAT} (one at a time: ${ACK_SINGLE_MESSAGES.toLocaleString('en-US')} messages, prefetch 1; batched: ${ACK_BATCH_MESSAGES.toLocaleString('en-US')}, batches and prefetch of 64).${leases ? '' : ` turbomq with acks: ${NEEDS_LEASES}.`}`,
      '',
      ackTable,
      '',
      ackCpu,
      '',
    ] : []),
    ...skipped.map((s) => `- ${s}`),
    '<!-- compare:end -->',
  ].join('\n');
  const docPath = `${root}docs/benchmarks.md`;
  let doc = fs.existsSync(docPath) ? fs.readFileSync(docPath, 'utf8') : '# Benchmarks\n\n## Broker comparison\n\n<!-- compare:begin --><!-- compare:end -->\n';
  const re = /<!-- compare:begin[^]*?<!-- compare:end -->/;
  doc = re.test(doc) ? doc.replace(re, () => section) : `${doc.trimEnd()}\n\n## Broker comparison\n\n${section}\n`;
  fs.writeFileSync(docPath, doc);
  const panels: Panel[] = [
    { title: 'Throughput', caption: 'messages/s, log scale — further right is better', systems: matrixSystems, unit: 'rate', rows: figures.map((f) => ({ label: f.workload, values: f.rates })) },
    { title: 'Broker CPU per message', caption: 'user + system µs per message, log scale — further left is better', systems: matrixSystems, unit: 'us', rows: figures.map((f) => ({ label: f.workload, values: f.cpuUsPerMsg })) },
    { title: 'turbomq client vs the wire floor (same broker)', caption: 'messages/s — further right is better', unit: 'rate',
      systems: [{ key: 'turbomq', label: 'turbomq client', color: '#d6336c' }, { key: 'floor', label: 'wire floor (pre-encoded frames)', color: '#868e96' }],
      rows: wire.map((f) => ({ label: f.workload, values: { turbomq: f.clientRate, floor: f.floorRate } })) },
    { title: 'Consume and ack', caption: 'messages/s received and acked — further right is better', unit: 'rate',
      systems: ackSystemsShown.map((x) => ackFigures.some((f) => f.notAvailable?.[x.key] !== undefined) ? { ...x, label: `${x.label} (n/a yet)` } : x), rows: ackFigures.map((f) => ({ label: f.workload, values: f.rates })) },
    { title: `End-to-end latency at a fixed ${LATENCY_RATE.toLocaleString('en-US')} msgs/s (1 producer, 1 consumer, 16 B)`, caption: 'send to receive, log scale — further left is better', systems: matrixSystems, unit: 'ms',
      rows: (['p50', 'p99', 'p999'] as const).map((q) => ({ label: q === 'p999' ? 'p99.9' : q, values: Object.fromEntries(latency.map((l) => [l.system, l[q]])) })) },
  ];
  fs.writeFileSync(`${root}docs/benchmarks.svg`, svgChart('turbomq vs Redis, NATS, RabbitMQ and raw floors', `median of ${REPEAT}; ${machine}; ${date}`, 'turbomq', panels));
  console.log('wrote docs/benchmarks.md (compare section) and docs/benchmarks.svg');
}
