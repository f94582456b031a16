// TurboEngine: lifecycle, embedded queues, and work spread over worker threads.

import t from 'tap';
import type { Test } from 'tap';
import { TurboEngine, TurboClient } from '../../src/index.ts';
import { startEngine, connect, delay, pushUntilRefused, within } from '../helpers.ts';

t.test('run() resolves once every worker listens; url, urls and threads are resolved', async (t) => {
  const engine = await startEngine(t, { threads: 2 });
  t.ok(engine.running);
  t.equal(engine.threads, 2);
  t.same(engine.urls, [engine.url]);
  const stats = await engine.stats();
  t.equal(stats.threads.length, 2, 'two workers');
  t.not(stats.threads[0]!.threadId, stats.threads[1]!.threadId, 'each worker has its own core thread id');
});

t.test('the default url is tcp://127.0.0.1:33444', async (t) => {
  t.equal(new TurboEngine().url, 'tcp://127.0.0.1:33444');
  t.equal(new TurboEngine(undefined, { threads: 1 }).url, 'tcp://127.0.0.1:33444');
});

t.test('bad options are rejected with ERR_INVALID_ARGUMENT', async (t) => {
  t.throws(() => new TurboEngine('http://127.0.0.1:1'), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => new TurboEngine('tcp://127.0.0.1:0', { threads: 0 }), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => new TurboEngine('tcp://127.0.0.1:0', { maxMessageBytes: -1 }), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => new TurboEngine('not a url'), { code: 'ERR_INVALID_ARGUMENT' });
});

t.test('embedded queues share topics with network clients, both ways', async (t) => {
  const engine = await startEngine(t);
  const embedded = engine.getQueue('shared');
  const client = await connect(t, engine.url);
  const remote = client.getQueue('shared');
  await embedded.push('t', 'from the engine');
  t.equal((await remote.pop('t', 1000))!.content, 'from the engine');
  const parked = embedded.pop('t', 2000);
  await remote.push('t', 'from the network');
  t.equal((await within(parked, 2000))!.content, 'from the network');
  await embedded.pushMany('t', ['a', 'b']);
  t.equal(await remote.length('t'), 2);
  t.same((await embedded.popMany('t', 5, 0)).map((m) => m.content), ['a', 'b']);
  t.equal(await embedded.pop('t', 0), null);
});

t.test('getQueue before run() fails with a clear error', async (t) => {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 1 });
  t.throws(() => engine.getQueue('q'), { code: 'ERR_CONNECTION_CLOSED', message: /not running/ });
  await engine.destroy();
});

t.test('stop() closes client connections; destroy() leaves the engine unusable', async (t) => {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2 });
  await engine.run();
  const client = await TurboClient.connect(engine.url);
  const q = client.getQueue('q');
  await q.push('t', 'x');
  const parked = q.pop('never', 10_000).then(() => null, (err: unknown) => err);
  await engine.stop();
  t.notOk(engine.running);
  t.match(await within(parked, 3000, 'parked pop after stop'), { code: 'ERR_CONNECTION_CLOSED' }, 'a parked pop rejects when the engine stops');
  await t.rejects(TurboClient.connect(engine.url, { connectTimeoutMs: 2000 }), { code: 'ERR_CONNECTION_CLOSED' }, 'no longer accepting');
  await engine.destroy();
  await t.rejects(engine.run(), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => engine.getQueue('q'), { code: 'ERR_CONNECTION_CLOSED' });
  await client.close();
});

t.test('a second engine on a busy port fails with EADDRINUSE instead of sharing it', async (t) => {
  const first = await startEngine(t, { threads: 2 });
  const second = new TurboEngine(first.url, { threads: 1 });
  await t.rejects(second.run(), { code: 'EADDRINUSE' });
  await second.destroy();
  const client = await connect(t, first.url);
  await client.getQueue('q').push('t', 'x');
  t.equal(await client.getQueue('q').length('t'), 1, 'the first engine still serves');
});

/** The core thread id of the worker each client from clientsOnTwoWorkers landed on. */
const clientThreads = new Map<TurboClient, number>();

/** Connects until a client lands on each worker; returns [clientOnWorkerA, clientOnWorkerB]. */
async function clientsOnTwoWorkers(t: Test, engine: TurboEngine): Promise<[TurboClient, TurboClient]> {
  const byThread = new Map<number, TurboClient>();
  for (let i = 0; i < 64 && byThread.size < 2; i++) {
    const before = await engine.stats();
    const client = await connect(t, engine.url);
    await client.ping();
    const after = await engine.stats();
    const grew = after.threads.find((w, k) => w.connectionsTotal > before.threads[k]!.connectionsTotal);
    if (grew !== undefined && !byThread.has(grew.threadId)) {
      byThread.set(grew.threadId, client);
      clientThreads.set(client, grew.threadId);
    }
  }
  if (byThread.size < 2) throw new Error('the kernel never gave a connection to the second worker');
  return [...byThread.values()] as [TurboClient, TurboClient];
}

t.test('a push on one worker wakes a pop parked on another worker', async (t) => {
  const engine = await startEngine(t, { threads: 2 });
  const [consumer, producer] = await clientsOnTwoWorkers(t, engine);
  const latencies: number[] = [];
  for (let i = 0; i < 50; i++) {
    const parked = consumer.getQueue('x').pop('wake', 5000);
    await delay(2);
    const started = performance.now();
    await producer.getQueue('x').push('wake', String(i));
    const m = await within(parked, 5000, 'cross-worker wake-up');
    latencies.push(performance.now() - started);
    t.equal(m?.content, String(i));
  }
  latencies.sort((a, b) => a - b);
  t.comment(`cross-worker push -> parked pop resolved: p50 ${latencies[25]!.toFixed(2)} ms, max ${latencies.at(-1)!.toFixed(2)} ms`);
});

t.test('producers and consumers on different workers: 20,000 messages, none lost or duplicated, FIFO per producer', async (t) => {
  const engine = await startEngine(t, { threads: 2 });
  const [a, b] = await clientsOnTwoWorkers(t, engine);
  const c = await connect(t, engine.url);
  const producers = [a, b];
  const consumers = [b, a, c];
  const perProducer = 10_000;
  const seen = new Map<string, number>();
  const lastByConsumerProducer = new Map<string, number>();
  let orderErrors = 0;
  let done = false;
  const consuming = consumers.map(async (client, ci) => {
    const q = client.getQueue('mix');
    while (!done) {
      const batch = await q.popMany('t', 100, 100);
      for (const m of batch) {
        const [p, s] = m.content.split(':').map(Number) as [number, number];
        seen.set(m.content, (seen.get(m.content) ?? 0) + 1);
        const key = `${ci}/${p}`;
        if ((lastByConsumerProducer.get(key) ?? -1) >= s) orderErrors++;
        lastByConsumerProducer.set(key, s);
      }
    }
  });
  await Promise.all(producers.map(async (client, p) => {
    const q = client.getQueue('mix');
    for (let s = 0; s < perProducer; s += 100) {
      await q.pushMany('t', Array.from({ length: 100 }, (_, k) => `${p}:${s + k}`));
    }
  }));
  const deadline = Date.now() + 20_000;
  while (seen.size < 2 * perProducer && Date.now() < deadline) await delay(20);
  done = true;
  await Promise.all(consuming);
  t.equal(seen.size, 2 * perProducer, 'every message received');
  t.equal([...seen.values()].filter((n) => n > 1).length, 0, 'none twice');
  t.equal(orderErrors, 0, 'each consumer sees each producer in order');
});

t.test('when maxMemoryMiB is full, pushes fail with ERR_NO_MEMORY and store nothing; pops make room again', async (t) => {
  const engine = await startEngine(t, { threads: 1, maxMemoryMiB: 16 });
  const client = await connect(t, engine.url);
  const q = client.getQueue('full');
  const chunk = new Uint8Array(256 * 1024);
  const { stored, error } = await pushUntilRefused(q, 't', chunk, 200);
  t.match(error, { code: 'ERR_NO_MEMORY' }, 'the broker says it is full');
  t.ok(stored > 10 && stored < 64, `${stored} messages of 256 KiB fit in 16 MiB`);
  t.equal(await q.length('t'), stored, 'the failed push stored nothing');
  await q.popMany('t', 8, 0);
  await t.resolves(q.push('t', chunk), 'after pops, pushes succeed again');
  t.equal(await q.length('t'), stored - 8 + 1);
});

t.test('a crashed worker does not swallow messages: its parked waiters are reaped, the other worker goes on, a replacement starts', async (t) => {
  const engine = await startEngine(t, { threads: 2 });
  const [onA, onB] = await clientsOnTwoWorkers(t, engine);
  const stats = await engine.stats();
  const parked = onA.getQueue('crash').pop('t').then(() => 'resolved', (err: { code?: string }) => err.code);
  await delay(50);
  const idA = clientThreads.get(onA)!;
  const index = stats.threads.findIndex((w) => w.threadId === idA);
  const crash = (engine as unknown as Record<symbol, (i: number) => Promise<number>>)[Symbol.for('turbomq.crashWorkerForTest')]!;
  const crashedThread = await crash.call(engine, index);
  t.equal(crashedThread, idA, 'the worker serving the parked pop crashed');
  t.equal(await within(parked, 5000, 'parked pop on the crashed worker'), 'ERR_CONNECTION_CLOSED', 'its client sees the connection close');
  // The push goes to the surviving worker; without reaping it would be handed to the dead waiter.
  await onB.getQueue('crash').push('t', 'survives');
  t.equal((await onB.getQueue('crash').pop('t', 2000))?.content, 'survives', 'the message went to a live consumer');
  // A replacement starts (test/engine/workers.test.ts covers it in full).
  const deadline = Date.now() + 30_000;
  while ((await engine.stats()).threads.length < 2 && Date.now() < deadline) await delay(20);
  t.equal((await engine.stats()).threads.length, 2, 'a replacement worker took its place');
  const late = await connect(t, engine.url);
  await late.getQueue('crash').push('t', 'still serving');
  t.equal((await late.getQueue('crash').pop('t', 1000))?.content, 'still serving', 'new connections are served');
});

