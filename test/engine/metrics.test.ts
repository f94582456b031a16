// src/engine/metrics.ts and stats.ts on a real core: per-thread counter blocks in shared
// memory, summed, retired, and the largest-topics walk (assembly/stats.ts).

import t from 'tap';
import { newSharedMemory, instantiateSharedCore, instantiateLocalCore } from '../../src/core/wasm.ts';
import { sharedCoreModule, localCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';
import {
  countersOf, disposeCounters, readCounters, retireCounters, zeroCounters, FSYNC_BUCKETS_SECONDS,
} from '../../src/engine/metrics.ts';
import { largestTopics, sumCounters, LARGEST_TOPICS } from '../../src/engine/stats.ts';

const enc = new TextEncoder();

async function twoThreads() {
  const memory = newSharedMemory(64);
  const module = sharedCoreModule();
  const a = new CoreThread(await instantiateSharedCore(memory, module));
  const b = new CoreThread(await instantiateSharedCore(memory, module));
  return { memory, a, b };
}

function push(th: CoreThread, queue: string, topic: string, count: number): void {
  const q = enc.encode(queue), tp = enc.encode(topic);
  th.core.view.write(th.scratch, q);
  th.core.view.write(th.scratch + 256, tp);
  th.core.view.write(th.scratch + 512, enc.encode('m'));
  for (let i = 0; i < count; i++) {
    if (th.exports.opPush(th.scratch, q.length, th.scratch + 256, tp.length, th.scratch + 512, 1) !== 0) throw new Error('push failed');
  }
}

t.test('each thread writes its own block; the main thread reads and sums them without asking', async (t) => {
  const { memory, a, b } = await twoThreads();
  const ca = countersOf(a), cb = countersOf(b);
  t.equal(countersOf(a), ca, 'one block per thread');
  t.not(ca.address, cb.address);
  t.equal(a.exports.threadMetrics(a.id), ca.address, 'the address is published in the thread slot');
  ca.onPushed(10);
  cb.onPopped(4);
  cb.onReturned(1);
  ca.onConnectionOpened();
  ca.onConnectionOpened();
  ca.onConnectionClosed();
  cb.onAcked(2);
  cb.adjustInFlight(3);
  cb.adjustInFlight(-2);
  t.match(readCounters(a.core, a.id), { pushed: 10, ready: 10, connections: 1, connectionsTotal: 2 });
  t.match(readCounters(b.core, b.id), { popped: 4, ready: -3, acked: 2, inFlight: 1 });
  const { total } = sumCounters({
    core: a.core, memory, mainThreadId: a.id, workerThreadIds: [b.id], retired: zeroCounters(),
    startedAt: 0, ready: true, urls: [], messageLimitBytes: 0, workerRestarts: 0,
  });
  t.match(total, { pushed: 10, popped: 4, ready: 7, connections: 1, acked: 2, inFlight: 1 }, 'ready = pushed - popped + returned, over threads');
  t.equal(readCounters(a.core, 200), undefined, 'a thread id without a block reads as nothing');
  disposeCounters(a);
  disposeCounters(b);
  t.equal(a.exports.threadMetrics(a.id), 0, 'disposing unpublishes');
  a.stop();
  b.stop();
});

t.test('a thread that ended is folded into the retired totals, its block freed, its slot cleared', async (t) => {
  const { a, b } = await twoThreads();
  const cb = countersOf(b);
  cb.onPushed(7);
  cb.onConnectionOpened();
  cb.observeFsyncSeconds(0.003);
  const id = b.id;
  b.stop(); // detaches; the block stays for the main thread to fold
  t.equal(a.exports.threadMetrics(id), cb.address, 'the block outlives its thread');
  const before = Number(a.exports.bytesInUse());
  const retired = zeroCounters();
  retireCounters(a.core, id, retired);
  t.match(retired, { pushed: 7, ready: 7, connections: 0, connectionsTotal: 1, fsyncCount: 1 }, 'counters kept; a dead thread has no connections');
  t.equal(a.exports.threadMetrics(id), 0, 'slot cleared');
  t.ok(Number(a.exports.bytesInUse()) <= before - 256, 'block freed');
  retireCounters(a.core, id, retired);
  t.equal(retired.pushed, 7, 'retiring twice adds nothing');
  a.stop();
});

t.test('attach() clears the slot: a reused thread id never shows a dead thread\'s block', async (t) => {
  const { memory, a, b } = await twoThreads();
  const id = b.id;
  countersOf(b).onPushed(1);
  b.stop();
  const c = new CoreThread(await instantiateSharedCore(memory, sharedCoreModule()));
  t.equal(c.id, id, 'the id is reused');
  t.equal(c.exports.threadMetrics(id), 0);
  c.stop();
  a.stop();
});

t.test('fsync latencies land in their buckets (le, not cumulative in the block)', async (t) => {
  const { a } = await twoThreads();
  const c = countersOf(a);
  for (const s of [0.00005, 0.0001, 0.0004, 0.02, 3, 3]) c.observeFsyncSeconds(s);
  const v = readCounters(a.core, a.id)!;
  t.equal(v.fsyncCount, 6);
  t.ok(Math.abs(v.fsyncSumSeconds - 6.02055) < 1e-9);
  const at = (bound: number) => v.fsyncBuckets[FSYNC_BUCKETS_SECONDS.indexOf(bound)];
  t.equal(at(0.0001), 2, '<= 0.1 ms, the bound included');
  t.equal(at(0.0005), 1);
  t.equal(at(0.025), 1);
  t.equal(v.fsyncBuckets.reduce((x, y) => x + y, 0), 4, 'the two over the last bound are only in the count (+Inf)');
  disposeCounters(a);
  a.stop();
});

t.test('counters keep counting after memory.grow, also on an unshared memory (view remade)', async (t) => {
  const local = await instantiateLocalCore(localCoreModule());
  const th = new CoreThread(local);
  const c = countersOf(th);
  c.onPushed(1);
  const grown = local.exports.alloc(32 * 1024 * 1024); // grows the memory: the old buffer is detached
  t.not(grown, 0);
  c.onPushed(2);
  t.equal(readCounters(local, th.id)!.pushed, 3);
  const { a } = await twoThreads();
  const ca = countersOf(a);
  ca.onPushed(1);
  a.exports.alloc(32 * 1024 * 1024);
  ca.onPushed(2);
  t.equal(readCounters(a.core, a.id)!.pushed, 3, 'shared memory: the first view stays valid');
  disposeCounters(a);
  a.stop();
});

t.test('largestTopics: the topics with the most ready messages, largest first, bounded', async (t) => {
  const { a } = await twoThreads();
  t.same(largestTopics(a.core), [], 'an empty table');
  for (let i = 0; i < 30; i++) push(a, 'q', `t${i}`, i + 1);
  push(a, 'größe', 'ümlaut ✓', 100);
  const top = largestTopics(a.core);
  t.equal(top.length, LARGEST_TOPICS, 'at most LARGEST_TOPICS');
  t.match(top[0], { queue: 'größe', topic: 'ümlaut ✓', ready: 100, inFlight: 0, consumers: 0, waiting: false }, 'UTF-8 names');
  t.same(top.slice(1).map((x) => x.ready), Array.from({ length: LARGEST_TOPICS - 1 }, (_, i) => 30 - i), 'then the next largest, in order');
  t.same(largestTopics(a.core, 3).map((x) => x.topic), ['ümlaut ✓', 't29', 't28']);
  t.same(largestTopics(a.core, 0), []);
  a.stop();
});
