// The core's timers at scale, with no JS timer per message: 1,000,000 delayed messages
// become ready in due-time order (assembly/delays.ts), and 1,000,000 leases expiring at
// once come back in bounded batches, in their original order (assembly/leases.ts).

import t from 'tap';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';

const MESSAGES = 0x84;

async function newThread(): Promise<CoreThread> {
  return new CoreThread(await instantiateSharedCore(newSharedMemory(256), sharedCoreModule()));
}

/** Names q/t in the thread's scratch area: returns [q, ql, t, tl]. */
function names(th: CoreThread, topic: string): [number, number, number, number] {
  const v = th.core.view;
  v.write(th.scratch, Buffer.from('q'));
  v.write(th.scratch + 256, Buffer.from(topic));
  return [th.scratch, 1, th.scratch + 256, topic.length];
}

/** Pops everything from the topic; calls `each(record data view)` per message in order. */
function popAll(th: CoreThread, topic: string, each: (data: DataView) => void): number {
  const e = th.exports;
  const w = e.writerNew(1 << 20);
  let total = 0;
  for (;;) {
    e.writerReset(w);
    const n = e.opPop(w, MESSAGES, 1, ...names(th, topic), 4096, 1 << 20, 0, 0, 0, 0, 0);
    if (n <= 0) break;
    const bytes = th.core.view.copy(e.writerData(w), e.writerLength(w));
    const dv = new DataView(bytes.buffer);
    let p = 16; // header + count
    for (let i = 0; i < n; i++) {
      const len = dv.getUint32(p, true);
      each(new DataView(bytes.buffer, p + 16, len));
      p += 16 + len;
    }
    total += n;
  }
  e.writerFree(w);
  return total;
}

t.test('1,000,000 delayed messages become ready in due-time order, and only when due', { timeout: 120_000 }, async (t) => {
  const th = await newThread();
  const e = th.exports;
  t.teardown(() => th.stop());
  const baseline = e.queueBytes();
  const batches = 1000, perBatch = 1000, total = batches * perBatch;
  const recordBytes = 4 + 12; // [u32 len][f64 due][u32 seq]
  const buf = e.alloc(perBatch * recordBytes);
  const t0 = 1_700_000_000_000;
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 0x100000000;
  const dues: number[] = [];
  const started = performance.now();
  for (let b = 0; b < batches; b++) {
    const delayMs = 1 + Math.floor(rand() * 10_000);
    const v = th.core.view;
    for (let i = 0; i < perBatch; i++) {
      const at = buf + i * recordBytes;
      v.setU32(at, 12);
      v.setF64(at + 4, t0 + delayMs);
      v.setU32(at + 12, b * perBatch + i);
    }
    const status = e.opPushEx(...names(th, 'd'), buf, perBatch * recordBytes, perBatch, 0, 0, delayMs, 0, 0, t0, th.scratch + 512);
    if (status !== 0) throw new Error(`push failed: ${status}`);
    dues.push(t0 + delayMs);
  }
  const pushMs = performance.now() - started;
  const stats = th.scratch + 600;
  e.opStats(...names(th, 'd'), stats);
  t.same([th.core.view.u32(stats), th.core.view.u32(stats + 4)], [0, total], 'all delayed, none ready');

  // Halfway in time: exactly the messages due by then are ready.
  const mid = t0 + 5000;
  let moved = 0;
  for (let n; (n = e.delaysDue(mid)) > 0;) moved += n;
  const dueByMid = dues.filter((d) => d <= mid).length * perBatch;
  t.equal(moved, dueByMid, 'delaysDue moved exactly the messages due by then');
  e.opStats(...names(th, 'd'), stats);
  t.same([th.core.view.u32(stats), th.core.view.u32(stats + 4)], [dueByMid, total - dueByMid]);
  for (let n; (n = e.delaysDue(t0 + 20_000)) > 0;) moved += n;
  t.equal(moved, total);
  t.equal(e.delaysNextDue(), 0, 'nothing left in the delay heap');

  let lastDue = -Infinity, lastSeq = -1, outOfOrder = 0;
  const seen = new Uint8Array(total);
  const popped = popAll(th, 'd', (d) => {
    const due = d.getFloat64(0, true), seq = d.getUint32(8, true);
    if (due < lastDue || (due === lastDue && seq < lastSeq)) outOfOrder++;
    lastDue = due;
    lastSeq = seq;
    seen[seq]!++;
  });
  t.equal(popped, total, 'every message popped');
  t.equal(outOfOrder, 0, 'in due-time order, and pushed order among equal due times');
  t.equal(seen.filter((c) => c !== 1).length, 0, 'each exactly once');
  e.free(buf);
  t.equal(e.queueBytes(), baseline, 'message storage back to its baseline');
  t.equal(e.topicCount(), 0);
  t.comment(`1,000,000 delayed pushes in ${pushMs.toFixed(0)} ms (${(total / pushMs / 1000).toFixed(2)} M/s)`);
});

t.test('1,000,000 leases expiring at once return in bounded batches, each batch in its original order', { timeout: 120_000 }, async (t) => {
  const th = await newThread();
  const e = th.exports;
  t.teardown(() => th.stop());
  const baseline = e.queueBytes();
  const total = 1_000_000, perBatch = 1000;
  const buf = e.alloc(perBatch * 8);
  for (let b = 0; b < total / perBatch; b++) {
    for (let i = 0; i < perBatch; i++) {
      th.core.view.setU32(buf + i * 8, 4);
      th.core.view.setU32(buf + i * 8 + 4, b * perBatch + i);
    }
    if (e.opPushRecords(...names(th, 'l'), buf, perBatch * 8, perBatch) !== 0) throw new Error('push failed');
  }
  const owner = e.ownerNew(1);
  const w = e.writerNew(1 << 20);
  const now = 1_700_000_000_000;
  let leased = 0;
  for (;;) {
    e.writerReset(w);
    const n = e.opPop(w, MESSAGES, 1, ...names(th, 'l'), 4096, 1 << 20, 0, 0, owner, 1000, now);
    if (n <= 0) break;
    leased += n;
  }
  t.equal(leased, total, 'all leased');
  t.equal(e.leaseCount(), total);
  t.equal(e.leaseNextDeadline(), now + 1000);
  let calls = 0, worstMs = 0, returned = 0, largest = 0;
  for (;;) {
    const started = performance.now();
    const n = e.leaseExpire(now + 1000);
    worstMs = Math.max(worstMs, performance.now() - started);
    if (n === 0) break;
    calls++;
    returned += n;
    largest = Math.max(largest, n);
  }
  t.ok(largest <= 4096, `no call ends more than 4,096 leases (largest ${largest})`);
  t.equal(returned, total, 'every lease expired');
  t.equal(e.leaseCount(), 0);
  t.ok(calls >= total / 4096, `in ${calls} bounded batches`);
  let last = -1, outOfOrder = 0, redelivered = 0;
  popAll(th, 'l', (d) => {
    const i = d.getUint32(0, true);
    if (i < last) outOfOrder++;
    last = i;
    redelivered++;
  });
  t.equal(redelivered, total, 'all back in the topic');
  // Each batch goes to the front in its own order; a later batch lands ahead of an
  // earlier one, so the order can only break at a batch boundary.
  t.ok(outOfOrder < calls, `order breaks only between batches (${outOfOrder} of ${calls} boundaries)`);
  t.comment(`longest leaseExpire call: ${worstMs.toFixed(2)} ms (at most 4,096 leases each)`);
  e.writerFree(w);
  e.ownerFree(owner);
  e.free(buf);
  t.equal(e.queueBytes(), baseline, 'message storage back to its baseline');
});
