// npm run bench:client — what the Node client costs its own process: CPU time (user +
// system, process.cpuUsage()) per call and per message, for the turbomq client against
// ioredis doing the same against a private redis-server (issue 13: "push/pop one at a time
// must cost the client no more than ioredis' LPUSH/RPOP"). Both brokers run as their own
// processes on loopback ports (bench/compare/servers.ts), so this process's CPU time is the
// client's alone. The systems alternate within each repetition; figures are medians and the
// ratios compare figures of this same run.
//
// Workloads (16 B strings; pops read the message as a string, as ioredis returns one):
//   single push   await push(topic, s)                  vs await LPUSH key s
//   single pop    await pop(topic, 0)                   vs await RPOP key
//   batch push    pushMany(topic, 64 strings), 16 calls in flight   vs LPUSH key v1..v64
//   batch pop     popMany(topic, 64, 0), 16 in flight   vs RPOP key 64
//
// Then the reply path alone (bench/client-replies.ts): popMany against a fake transport, no
// socket, no broker, CPU ns per message, with the messages not read, their `data` read, their
// `content` read; and the push path alone, pushMany against the same fake. The figures to
// compare client builds with: no socket noise in them.
//
//   env: REPEAT=5 SINGLE_CALLS=20000 BATCH_CALLS=4000 IN_FLIGHT=16 SIZE=16 THREADS=1 REPLY_CALLS=40000

import { Redis } from 'ioredis';
import { TurboClient } from '../src/index.ts';
import { startTurbomq, startRedis, buildIsStale, INSTALL_HINT } from './compare/servers.ts';
import { replyPathNsPerMessage, pushPathNsPerMessage, type ReadKind } from './client-replies.ts';

const env = process.env;
const REPEAT = Number(env.REPEAT ?? 5);
const SINGLE_CALLS = Number(env.SINGLE_CALLS ?? 20_000);
const BATCH_CALLS = Number(env.BATCH_CALLS ?? 4_000);
const IN_FLIGHT = Number(env.IN_FLIGHT ?? 16);
const SIZE = Number(env.SIZE ?? 16);
const REPLY_CALLS = Number(env.REPLY_CALLS ?? 40_000);
const BATCH = 64;

interface Cost { cpuUsPerCall: number; wallUsPerCall: number }

/** CPU and wall time of `calls` calls of `fn`, `inFlight` outstanding at a time. */
async function measure(calls: number, inFlight: number, fn: () => Promise<unknown>): Promise<Cost> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let started = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (started < calls) {
      started++;
      await fn();
    }
  }));
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { cpuUsPerCall: (cpu.user + cpu.system) / calls, wallUsPerCall: wall * 1000 / calls };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** A string of `size` ASCII bytes, different per call (so nothing can be cached by identity). */
function text(i: number, size: number): string {
  return String(i).padStart(size, 'x');
}

if (buildIsStale()) console.warn('warning: build/ is older than src/ or assembly/: run `npm run build` (the broker measured is the build)');
const turbomq = await startTurbomq(Number(env.THREADS ?? 1));
if (turbomq === undefined) { console.error(INSTALL_HINT.turbomq); process.exit(1); }
const redisServer = await startRedis();
if (redisServer === undefined) { await turbomq.stop(); console.error(INSTALL_HINT.redis); process.exit(1); }

try {
  const client = await TurboClient.connect(turbomq.url);
  const queue = client.getQueue('bench');
  const redis = new Redis({ host: '127.0.0.1', port: redisServer.port, maxRetriesPerRequest: 0, lazyConnect: true });
  await redis.connect();

  const items = (n: number, base: number) => Array.from({ length: n }, (_, i) => text(base + i, SIZE));
  let seq = 0;
  const workloads: { name: string; perMessage: number; turbomq: () => Promise<Cost>; redis: () => Promise<Cost> }[] = [
    {
      name: 'single push', perMessage: 1,
      turbomq: () => measure(SINGLE_CALLS, 1, () => queue.push('single', text(seq++, SIZE))),
      redis: () => measure(SINGLE_CALLS, 1, () => redis.lpush('bench:single', text(seq++, SIZE))),
    },
    {
      name: 'single pop', perMessage: 1,
      turbomq: () => measure(SINGLE_CALLS, 1, async () => (await queue.pop('single', 0))?.content),
      redis: () => measure(SINGLE_CALLS, 1, () => redis.rpop('bench:single')),
    },
    {
      name: `batch push (${BATCH} per call, ${IN_FLIGHT} in flight)`, perMessage: BATCH,
      turbomq: () => { const batch = items(BATCH, seq += BATCH); return measure(BATCH_CALLS, IN_FLIGHT, () => queue.pushMany('batch', batch)); },
      redis: () => { const batch = items(BATCH, seq += BATCH); return measure(BATCH_CALLS, IN_FLIGHT, () => redis.lpush('bench:batch', ...batch)); },
    },
    {
      name: `batch pop (${BATCH} per call, ${IN_FLIGHT} in flight)`, perMessage: BATCH,
      turbomq: () => measure(BATCH_CALLS, IN_FLIGHT, async () => { for (const m of await queue.popMany('batch', BATCH, 0)) void m.content; }),
      redis: () => measure(BATCH_CALLS, IN_FLIGHT, () => redis.rpop('bench:batch', BATCH)),
    },
  ];

  // Warm-up (JIT, connection buffers), untimed.
  for (const w of workloads) { await w.turbomq(); await w.redis(); }

  console.log(`client CPU per call: turbomq client vs ioredis; node ${process.versions.node}, ${SIZE} B strings, median of ${REPEAT}`);
  console.log(`single: ${SINGLE_CALLS.toLocaleString('en-US')} calls per figure; batched: ${BATCH_CALLS.toLocaleString('en-US')} calls\n`);
  console.log(`${'workload'.padEnd(40)}${'turbomq CPU/call'.padStart(24)}${'ioredis CPU/call'.padStart(24)}${'turbomq/ioredis'.padStart(17)}${'wall turbomq/ioredis'.padStart(22)}`);
  for (const w of workloads) {
    const t: Cost[] = [], r: Cost[] = [];
    for (let i = 0; i < REPEAT; i++) {
      // Alternate which goes first, so a noisy moment does not always fall on one system.
      if (i % 2 === 0) { t.push(await w.turbomq()); r.push(await w.redis()); }
      else { r.push(await w.redis()); t.push(await w.turbomq()); }
    }
    const tc = median(t.map((c) => c.cpuUsPerCall)), rc = median(r.map((c) => c.cpuUsPerCall));
    const tw = median(t.map((c) => c.wallUsPerCall)), rw = median(r.map((c) => c.wallUsPerCall));
    const per = (us: number) => w.perMessage === 1 ? `${us.toFixed(1)} µs` : `${us.toFixed(1)} µs (${(us / w.perMessage * 1000).toFixed(0)} ns/msg)`;
    console.log(`${w.name.padEnd(40)}${per(tc).padStart(24)}${per(rc).padStart(24)}${`${(tc / rc).toFixed(2)}x`.padStart(17)}${`${(tw / rw).toFixed(2)}x`.padStart(22)}`);
  }
  await client.close();
  redis.disconnect();

  console.log(`\nthe reply path alone: popMany(64) against a fake transport (no socket), ${IN_FLIGHT} in flight, ${REPLY_CALLS.toLocaleString('en-US')} calls per figure, median of ${REPEAT} after a warm-up`);
  for (const read of ['nothing', 'data', 'content'] as ReadKind[]) {
    const ns = await replyPathNsPerMessage({ calls: REPLY_CALLS, inFlight: IN_FLIGHT, batch: BATCH, size: SIZE, read, repeat: REPEAT + 1 });
    console.log(`${`messages read: ${read}`.padEnd(40)}${`${median(ns.slice(1)).toFixed(1)} ns/msg`.padStart(24)}`);
  }
  console.log(`\nthe push path alone: pushMany(${BATCH} Uint8Arrays) against the same fake transport, ${IN_FLIGHT} in flight, ${REPLY_CALLS.toLocaleString('en-US')} calls per figure, median of ${REPEAT} after a warm-up`);
  const pushNs = await pushPathNsPerMessage({ calls: REPLY_CALLS, inFlight: IN_FLIGHT, batch: BATCH, size: SIZE, repeat: REPEAT + 1 });
  console.log(`${'pushMany'.padEnd(40)}${`${median(pushNs.slice(1)).toFixed(1)} ns/msg`.padStart(24)}`);
} finally {
  await turbomq.stop();
  await redisServer.stop();
}
