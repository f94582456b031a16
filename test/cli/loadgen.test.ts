// The load generator over several client threads: counts, the exactly-once check and latency
// merged exactly, errors from a thread reported, against a real broker.

import t from 'tap';
import { runLoad, turbomqDriver, turbomqDriverSpec, closeClientThreads, idleClientThreads, type DriverSpec } from '../../src/cli/loadgen.ts';
import { startEngine, within } from '../helpers.ts';

const drivers = new URL('./loadgen-drivers.ts', import.meta.url).href;

t.test('producers and consumers spread over 3 client threads move every message exactly once', async (t) => {
  const engine = await startEngine(t);
  const r = await within(runLoad(turbomqDriverSpec(engine.url), {
    producers: 2, consumers: 3, messages: 3001, sizeBytes: 24, batch: 16, topics: 4, durationMs: 20_000, clientThreads: 3, topicPrefix: 'threads-',
  }), 30_000, 'the run');
  t.equal(r.workload.clientThreads, 3);
  t.equal(r.sent, 3001);
  t.equal(r.received, 3001);
  t.equal(r.unique, 3001);
  t.equal(r.duplicates, 0);
  t.equal(r.missing, 0);
  t.ok(r.exactlyOnce);
  t.equal(r.latencyMs.count, 3001, 'one latency per message, merged from every thread');
  t.ok(r.latencyMs.p50 >= 0 && r.latencyMs.p50 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max);
  t.ok(r.receiveRate > 0 && r.producerMs > 0 && r.consumerMs > 0);
});

t.test('duplicates seen on any thread are counted exactly', async (t) => {
  const engine = await startEngine(t);
  const spec: DriverSpec = { module: drivers, exportName: 'duplicatingDriver', args: [engine.url] };
  const r = await within(runLoad(spec, {
    producers: 2, consumers: 2, messages: 2000, sizeBytes: 16, batch: 10, topics: 2, durationMs: 15_000, clientThreads: 2, topicPrefix: 'dup-', drainIdleMs: 500,
  }), 20_000, 'the run');
  // Producer p's seqs 0..999: 100 of them end in 0, for each of the 2 producers.
  t.equal(r.unique, 2000);
  t.equal(r.duplicates, 200);
  t.equal(r.received, 2200);
  t.equal(r.exactlyOnce, false);
});

t.test('more than one client thread needs a DriverSpec', async (t) => {
  await t.rejects(runLoad(turbomqDriver('tcp://127.0.0.1:1'), { producers: 1, consumers: 1, messages: 1, sizeBytes: 16, batch: 1, topics: 1, durationMs: 1000, clientThreads: 2 }), /DriverSpec/);
});

t.test('a thread that cannot connect fails the run with its error, and no thread is left behind', async (t) => {
  const spec: DriverSpec = { module: drivers, exportName: 'brokenDriver', args: [] };
  await t.rejects(within(runLoad(spec, { producers: 2, consumers: 2, messages: 10, sizeBytes: 16, batch: 1, topics: 1, durationMs: 1000, clientThreads: 2 }), 10_000, 'the failing run'), /client thread \d\/2: no broker here/);
});

t.test('client threads are kept between runs, and a failed run\'s are not', async (t) => {
  await closeClientThreads();
  t.teardown(closeClientThreads);
  const engine = await startEngine(t);
  const workload = { producers: 2, consumers: 2, messages: 1000, sizeBytes: 16, batch: 8, topics: 2, durationMs: 15_000, clientThreads: 2 };
  for (let run = 1; run <= 3; run++) {
    const r = await within(runLoad(turbomqDriverSpec(engine.url), { ...workload, topicPrefix: `kept${run}-` }), 20_000, `run ${run}`);
    t.ok(r.exactlyOnce, `run ${run}: every message exactly once`);
    t.equal(idleClientThreads(), 2, `after run ${run}: the same 2 threads are idle, not ${2 * run}`);
  }
  // A wider run takes the 2 idle threads and starts 1 more.
  const wide = await within(runLoad(turbomqDriverSpec(engine.url), { ...workload, consumers: 1, clientThreads: 3, topicPrefix: 'wide-' }), 20_000, 'the 3-thread run');
  t.ok(wide.exactlyOnce);
  t.equal(idleClientThreads(), 3);
  const broken: DriverSpec = { module: drivers, exportName: 'brokenDriver', args: [] };
  await t.rejects(within(runLoad(broken, { ...workload, messages: 10 }), 10_000, 'the failing run'), /no broker here/);
  t.equal(idleClientThreads(), 1, 'the failed run\'s 2 threads were terminated, the third is still idle');
  const after = await within(runLoad(turbomqDriverSpec(engine.url), { ...workload, topicPrefix: 'after-' }), 20_000, 'the run after');
  t.ok(after.exactlyOnce, 'a run after a failed one starts a new thread beside the idle one');
  t.equal(idleClientThreads(), 2);
});

t.test('bad client thread counts are refused', async (t) => {
  for (const clientThreads of [0, 1.5, 257]) {
    await t.rejects(runLoad(turbomqDriverSpec('tcp://127.0.0.1:1'), { producers: 1, consumers: 1, messages: 1, sizeBytes: 16, batch: 1, topics: 1, durationMs: 1000, clientThreads }), /clientThreads must be an integer/);
  }
});
