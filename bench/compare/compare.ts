// npm run bench:compare — the same workloads, in one run, against turbomq (a TurboEngine with
// one worker per core), Redis, NATS (core pub/sub with a queue group, and JetStream) and a
// raw-TCP floor (turbomq's framing over plain Node sockets, a JS array relay: bench/compare/raw.ts).
// All clients run in this process through the load generator (src/cli/loadgen.ts); each
// broker runs in its own threads or process on 127.0.0.1.
//
// Workloads: 1P/1C and 4P/4C, 16 B and 256 B, single request/response and batches of 64,
// 1 topic and 10,000 topics; then end-to-end latency at a fixed 10,000 msgs/s. Each figure is
// the median of REPEAT repetitions; the systems take turns within each repetition, so a noisy
// moment does not fall on one system only.
//
// Writes docs/benchmarks.svg and the section between the compare markers in docs/benchmarks.md
// (WRITE_DOCS=0 to skip). Environment overrides:
//   REPEAT=3  SINGLE_MESSAGES=8000  BATCH_MESSAGES=64000  DURATION_S=8
//   LATENCY_RATE=10000  LATENCY_SECONDS=3  SYSTEMS=turbomq,redis,nats,jetstream,raw  THREADS=<cores>
//   WORKLOADS=<substring filter on the workload name>

import os from 'node:os';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TurboEngine, VERSION } from '../../src/index.ts';
import { runLoad, turbomqDriver, median, formatRate, formatMs, type Driver, type LoadResult, type Workload } from '../../src/cli/loadgen.ts';
import { startRedis, startNats, redisDriver, natsDriver, jetStreamDriver, INSTALL_HINT, type Server } from './drivers.ts';
import { startRawServer, rawDriver } from './raw.ts';
import { markdownTable, latencyTable, svgChart, type Figure, type LatencyFigure, type SystemInfo } from './report.ts';

const env = process.env;
const REPEAT = Number(env.REPEAT ?? 3);
const SINGLE_MESSAGES = Number(env.SINGLE_MESSAGES ?? 8000);
const BATCH_MESSAGES = Number(env.BATCH_MESSAGES ?? 64_000);
const DURATION_MS = Number(env.DURATION_S ?? 8) * 1000;
const LATENCY_RATE = Number(env.LATENCY_RATE ?? 10_000);
const LATENCY_SECONDS = Number(env.LATENCY_SECONDS ?? 3);
const THREADS = Number(env.THREADS ?? os.availableParallelism());
const WANTED = (env.SYSTEMS ?? 'turbomq,redis,nats,jetstream,raw').split(',').map((s) => s.trim());
const FILTER = env.WORKLOADS;
const WRITE_DOCS = env.WRITE_DOCS !== '0';
const root = fileURLToPath(new URL('../../', import.meta.url));

const ALL: SystemInfo[] = [
  { key: 'turbomq', label: 'turbomq', color: '#d6336c' },
  { key: 'redis', label: 'Redis', color: '#1c7ed6' },
  { key: 'nats', label: 'NATS', color: '#37b24d' },
  { key: 'jetstream', label: 'NATS JetStream', color: '#f59f00' },
  { key: 'raw', label: 'raw TCP floor', color: '#868e96' },
];

const started = performance.now();
const log = (line: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

// ── start the brokers ──────────────────────────────────────────────────────────────────

const factories = new Map<string, () => Driver>();
const versions: string[] = [`node ${process.versions.node}`, `turbomq ${VERSION} (${THREADS} worker threads)`];
const skipped: string[] = [];
const stops: (() => Promise<void>)[] = [];

let engine: TurboEngine | undefined;
if (WANTED.includes('turbomq')) {
  engine = new TurboEngine('tcp://127.0.0.1:0', { threads: THREADS });
  await engine.run();
  stops.push(() => engine!.destroy());
  const url = engine.url;
  factories.set('turbomq', () => turbomqDriver(url));
}
let redis: Server | undefined;
if (WANTED.includes('redis')) {
  redis = await startRedis();
  if (redis === undefined) skipped.push(`Redis skipped: ${INSTALL_HINT.redis}`);
  else {
    stops.push(() => redis!.stop());
    const port = redis.port;
    factories.set('redis', () => redisDriver(port));
    versions.push(`redis-server ${redis.version} (--save '' --appendonly no) with ioredis ${packageVersion('ioredis')}`);
  }
}
let nats: Server | undefined;
if (WANTED.includes('nats') || WANTED.includes('jetstream')) {
  nats = await startNats();
  if (nats === undefined) skipped.push(`NATS skipped: ${INSTALL_HINT.nats}`);
  else {
    stops.push(() => nats!.stop());
    const port = nats.port;
    versions.push(`nats-server ${nats.version} (-js, memory streams) with nats.js ${packageVersion('nats')}`);
    if (WANTED.includes('nats')) factories.set('nats', () => natsDriver(port));
    if (WANTED.includes('jetstream')) {
      // JetStream may be disabled in a server build: try once before counting on it.
      try {
        const probe = jetStreamDriver(port);
        await probe.prepare!(['probe']);
        await probe.close!();
        factories.set('jetstream', () => jetStreamDriver(port));
      } catch (err) {
        skipped.push(`NATS JetStream skipped: ${(err as Error).message}`);
      }
    }
  }
}
if (WANTED.includes('raw')) {
  const raw = await startRawServer();
  stops.push(() => raw.stop());
  factories.set('raw', () => rawDriver(raw.port));
}
const systems = ALL.filter((s) => factories.has(s.key));
for (const line of skipped) console.log(line);

function packageVersion(name: string): string {
  try {
    return JSON.parse(fs.readFileSync(`${root}node_modules/${name}/package.json`, 'utf8')).version as string;
  } catch {
    return '?';
  }
}

// ── workloads ──────────────────────────────────────────────────────────────────────────

interface Spec { name: string; workload: Omit<Workload, 'topicPrefix'> }
const specs: Spec[] = [];
for (const topics of [1, 10_000]) {
  for (const batch of [1, 64]) {
    for (const [producers, consumers] of [[1, 1], [4, 4]] as const) {
      for (const sizeBytes of [16, 256]) {
        const name = `${producers}P/${consumers}C ${sizeBytes} B ${batch === 1 ? 'single' : `batch ${batch}`}${topics === 1 ? '' : ', 10k topics'}`;
        if (FILTER !== undefined && !name.includes(FILTER)) continue;
        specs.push({ name, workload: { producers, consumers, sizeBytes, batch, topics, messages: batch === 1 ? SINGLE_MESSAGES : BATCH_MESSAGES, durationMs: DURATION_MS } });
      }
    }
  }
}

console.log(`turbomq broker comparison: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`);
console.log(versions.join('; '));
console.log(`${specs.length} workloads x ${systems.length} systems x ${REPEAT} repetitions; single: ${SINGLE_MESSAGES} messages per run, batched: ${BATCH_MESSAGES}\n`);

let runCounter = 0;
async function runOne(key: string, w: Omit<Workload, 'topicPrefix'>): Promise<LoadResult | undefined> {
  const driver = factories.get(key)!();
  try {
    return await runLoad(driver, { ...w, topicPrefix: `c${++runCounter}-` });
  } catch (err) {
    log(`  ${key}: failed: ${(err as Error).message}`);
    return undefined;
  } finally {
    await driver.close?.();
  }
}

const figures: Figure[] = [];
for (const spec of specs) {
  const results = new Map<string, LoadResult[]>(systems.map((s) => [s.key, []]));
  for (let r = 0; r < REPEAT; r++) {
    for (const s of systems) {
      const result = await runOne(s.key, spec.workload);
      if (result !== undefined) results.get(s.key)!.push(result);
    }
  }
  const figure: Figure = { workload: spec.name, rates: {}, notExact: {} };
  for (const s of systems) {
    const rs = results.get(s.key)!;
    figure.rates[s.key] = rs.length === 0 ? undefined : median(rs.map((x) => x.receiveRate));
    figure.notExact[s.key] = rs.filter((x) => !x.exactlyOnce).length;
  }
  figures.push(figure);
  log(`${spec.name.padEnd(34)} ${systems.map((s) => `${s.label} ${formatRate(figure.rates[s.key] ?? NaN)}${figure.notExact[s.key] ? '!' : ''}`).join('  ')}`);
}

// ── latency at a fixed rate ────────────────────────────────────────────────────────────

const latency: LatencyFigure[] = [];
if (FILTER === undefined || 'latency'.includes(FILTER)) {
  const perSystem = new Map<string, LoadResult[]>(systems.map((s) => [s.key, []]));
  const w: Omit<Workload, 'topicPrefix'> = {
    // Single sends, paced; the consumer takes up to 64 per pop so it can keep up.
    producers: 1, consumers: 1, sizeBytes: 16, batch: 1, consumerBatch: 64, topics: 1,
    messages: LATENCY_RATE * LATENCY_SECONDS, rate: LATENCY_RATE, durationMs: LATENCY_SECONDS * 1000 + 5000,
  };
  for (let r = 0; r < REPEAT; r++) {
    for (const s of systems) {
      const result = await runOne(s.key, w);
      if (result !== undefined) perSystem.get(s.key)!.push(result);
    }
  }
  for (const s of systems) {
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
}

for (const stop of stops.reverse()) await stop();

// ── report ─────────────────────────────────────────────────────────────────────────────

const ratioTo = ['redis', 'nats', 'raw'].filter((k) => factories.has(k));
const table = markdownTable(systems, figures, 'turbomq', factories.has('turbomq') ? ratioTo : []);
const latTable = latencyTable(systems, latency, 'turbomq');
console.log(`\nmessages/s received (median of ${REPEAT}); ratios > 1: turbomq ahead\n`);
console.log(table);
if (latency.length > 0) {
  console.log(`\nend-to-end latency at ${LATENCY_RATE.toLocaleString('en-US')} msgs/s, 1P/1C, 16 B (median of ${REPEAT}); ratios < 1: turbomq faster\n`);
  console.log(latTable);
}
const minutes = ((performance.now() - started) / 60_000).toFixed(1);
console.log(`\n(${minutes} min)`);

if (WRITE_DOCS && FILTER === undefined) {
  const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}`;
  const date = new Date().toISOString().slice(0, 10);
  const section = [
    '<!-- compare:begin (written by npm run bench:compare; edit the text around it, not inside) -->',
    `Run on ${date}: ${machine}. ${versions.join('; ')}. The whole comparison took ${minutes} minutes.`,
    '',
    `Messages/s received, median of ${REPEAT} repetitions (single: ${SINGLE_MESSAGES.toLocaleString('en-US')} messages per repetition; batched: ${BATCH_MESSAGES.toLocaleString('en-US')}). Ratios above 1 mean turbomq is ahead. ⚠ marks a system that lost or duplicated messages in some repetition.`,
    '',
    table,
    '',
    ...(latency.length > 0 ? [
      `End-to-end latency (send call to message in the consumer's hands) at a fixed ${LATENCY_RATE.toLocaleString('en-US')} msgs/s, 1 producer (single sends, paced, pipelined), 1 consumer (up to 64 per pop), 16 B, one topic, ${LATENCY_SECONDS} s per repetition, median of ${REPEAT}. Ratios below 1 mean turbomq is faster.`,
      '',
      latTable,
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
  fs.writeFileSync(`${root}docs/benchmarks.svg`, svgChart(systems, figures, latency,
    'turbomq vs Redis, NATS and a raw-TCP floor',
    `messages/s received, median of ${REPEAT}; ${machine}; ${date}`, 'turbomq'));
  console.log('wrote docs/benchmarks.md (compare section) and docs/benchmarks.svg');
}
