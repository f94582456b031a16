// Compaction: disk use follows live data (100 MB pushed then removed: under half left 10 s
// later), and whatever it rewrites, recovery still finds exactly the live messages, their
// deliveries, settings and next ids, across restarts and with compactions cut short.

import t from 'tap';
import type * as Tap from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { openLog, type LogWriter } from '../../src/storage/log.ts';
import { startCompaction, type Compactor } from '../../src/storage/compaction.ts';
import { tempDir, lockFor, storedRecords, recoverAll, recordingLogger, segmentBytes, segmentFiles, Q, T } from './support.ts';
import { lockDataDir } from '../../src/storage/lock.ts';
import { RecordEncoder } from '../../src/storage/format.ts';

/** A locked directory whose compactor runs only when the test calls runOnce() (stopped at the end). */
async function manualCompaction(t: Tap.Test): Promise<{ dir: string; compactor: Compactor }> {
  const dir = tempDir(t);
  const lock = await lockFor(t, dir);
  const compactor = startCompaction(lock, { intervalMs: 60_000 });
  t.teardown(() => compactor.stop());
  return { dir, compactor };
}

t.test('100 MB pushed and then removed: under half of it on disk 10 s later', async (t) => {
  const dir = tempDir(t);
  const lock = await lockFor(t, dir);
  const compactor = startCompaction(lock);
  t.teardown(() => compactor.stop());
  const producer = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  const consumer = await openLog(dir, { fsync: 'no', threadIndex: 2 });
  const data = 'd'.repeat(1008); // 1 KiB stored records
  const batch = 64, total = 100 * 1024;
  for (let id = 0; id < total; id += batch) {
    producer.appendPush(Q, T, storedRecords(Array.from({ length: batch }, (_, i) => ({ id: id + i, data }))));
    if (id % (batch * 16) === 0) await producer.commit();
  }
  await producer.commit();
  const pushed = segmentBytes(dir);
  t.ok(pushed >= 100 * 1024 * 1024, `${(pushed / 2 ** 20).toFixed(0)} MiB on disk after the pushes`);
  for (let id = 0; id < total; id += batch) {
    consumer.appendRemove(Q, T, Array.from({ length: batch }, (_, i) => id + i));
    if (id % (batch * 64) === 0) await consumer.commit();
  }
  await consumer.commit();
  const removedAt = Date.now();
  let left = segmentBytes(dir);
  while (left >= pushed / 2 && Date.now() - removedAt < 10_000) {
    await new Promise((r) => setTimeout(r, 200));
    left = segmentBytes(dir);
  }
  const seconds = (Date.now() - removedAt) / 1000;
  t.ok(left < pushed / 2, `${(left / 2 ** 20).toFixed(1)} MiB left ${seconds.toFixed(1)} s after the removals`);
  // The producer's last segment is given back too once it is closed for being idle.
  await producer.close();
  await consumer.close();
  await compactor.runOnce();
  t.ok(segmentBytes(dir) < 1024 * 1024, `${segmentBytes(dir)} bytes once the writers are closed`);
  const stats = compactor.stats();
  t.equal(stats.liveMessages, 0);
  t.ok(stats.bookkeepingBytes < 64 * 1024, `bookkeeping ${stats.bookkeepingBytes} bytes for 102,400 messages`);
});

/** What must come back: the live messages and the last settings. */
class Model {
  live = new Map<number, { data: string; meta: number }>();
  settings: string | undefined;
  nextId = 0;
}

async function checkRecovered(t: Tap.Test, dir: string, model: Model, what: string): Promise<void> {
  const r = await recoverAll(dir);
  const got = r.topics.get('q/t')?.ready ?? [];
  const expected = [...model.live.entries()].sort((a, b) => a[0] - b[0]).map(([id, m]) => ({ id, meta: m.meta, data: m.data }));
  t.same(got, expected, `${what}: exactly the live messages, in id order, with their deliveries`);
  t.equal(r.settings.get('q'), model.settings, `${what}: settings`);
  if (model.nextId > 0) t.ok((r.topics.get('q/t')?.nextId ?? 0n) >= BigInt(model.nextId), `${what}: next id`);
  t.same(r.damage, [], `${what}: no damage`);
}

t.test('random pushes, cross-thread removals, deliveries and settings survive compaction and restarts', async (t) => {
  const dir = tempDir(t);
  const model = new Model();
  let seed = 2024;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  for (let boot = 0; boot < 4; boot++) {
    const lock = await lockDataDir(dir);
    await checkRecovered(t, dir, model, `boot ${boot} start`);
    const compactor = startCompaction(lock, { intervalMs: 30, smallSegmentBytes: 4096 });
    const writers: LogWriter[] = [];
    for (let w = 1; w <= 2; w++) writers.push(await openLog(dir, { fsync: 'no', threadIndex: w, maxSegmentBytes: 8 * 1024, idleRotateMs: 50, minRotateBytes: 1 }));
    for (let step = 0; step < 400; step++) {
      const w = writers[rand(2)]!;
      const op = rand(10);
      if (op < 4 || model.live.size < 5) {
        const n = 1 + rand(8);
        const msgs = Array.from({ length: n }, (_, i) => ({ id: model.nextId + i, data: `b${boot}s${step}i${i}` }));
        model.nextId += n;
        w.appendPush(Q, T, storedRecords(msgs));
        for (const m of msgs) model.live.set(m.id, { data: m.data, meta: 0 });
        // Half the time the other writer removes some of them before this push is written.
        if (rand(2) === 0) {
          const other = writers.find((x) => x !== w)!;
          const gone = msgs.filter(() => rand(2) === 0).map((m) => m.id);
          other.appendRemove(Q, T, gone);
          other.commitSync();
          for (const id of gone) model.live.delete(id);
        }
      } else if (op < 8) {
        const ids = [...model.live.keys()];
        const gone = Array.from({ length: 1 + rand(6) }, () => ids[rand(ids.length)]!).filter((id, i, a) => a.indexOf(id) === i);
        w.appendRemove(Q, T, gone);
        for (const id of gone) model.live.delete(id);
      } else if (op < 9) {
        const ids = [...model.live.keys()];
        const id = ids[rand(ids.length)]!;
        const m = model.live.get(id)!;
        m.meta += 1;
        w.appendMeta(Q, T, id, m.meta);
      } else {
        model.settings = JSON.stringify({ boot, step });
        w.appendSettings(Q, model.settings);
      }
      if (rand(4) === 0) await Promise.all(writers.map((x) => x.commit()));
      if (rand(50) === 0) await new Promise((r) => setTimeout(r, 60)); // let idle segments close and compaction run
    }
    await Promise.all(writers.map((x) => x.commit()));
    await compactor.runOnce();
    for (const w of writers) await w.close();
    await compactor.runOnce();
    await compactor.runOnce();
    t.ok(compactor.stats().rewrites > 0, `boot ${boot}: compaction rewrote segments`);
    t.equal(compactor.stats().liveMessages, model.live.size, `boot ${boot}: the compactor's count of live messages`);
    await compactor.stop();
    await lock.release();
    await checkRecovered(t, dir, model, `boot ${boot} end`);
  }
  t.ok(segmentFiles(dir).length < 40, `${segmentFiles(dir).length} segment files left`);
});

t.test('a compaction cut short (output written, inputs not yet deleted) recovers the same', async (t) => {
  const dir = tempDir(t);
  const lock = await lockDataDir(dir);
  const a = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  const b = await openLog(dir, { fsync: 'no', threadIndex: 2 });
  for (let id = 0; id < 300; id++) a.appendPush(Q, T, storedRecords([{ id, data: `m${id}` }]));
  b.appendRemove(Q, T, Array.from({ length: 200 }, (_, i) => i));
  a.appendMeta(Q, T, 250, 3);
  await a.commit();
  await b.commit();
  await a.close();
  await b.close();
  const inputs = new Map(segmentFiles(dir).map((n) => [n, fs.readFileSync(path.join(dir, n))]));
  const compactor = startCompaction(lock, { intervalMs: 60_000 });
  const pass = await compactor.runOnce();
  await compactor.stop();
  await lock.release();
  t.ok(pass.inputs >= 2 && pass.outputBytes > 0, 'rewritten into an output');
  const expected = await recoverAll(dir);
  // Put the inputs back beside the output, as a crash before the deletions would leave them.
  for (const [n, bytes] of inputs) fs.writeFileSync(path.join(dir, n), bytes);
  const both = await recoverAll(dir);
  t.same(both.topics.get('q/t')!.ready, expected.topics.get('q/t')!.ready);
  t.equal(both.topics.get('q/t')!.ready.length, 100);
  t.equal(both.topics.get('q/t')!.ready.find((m) => m.id === 250)!.meta, 3);
  // A later compaction of that state converges too.
  const lock2 = await lockDataDir(dir);
  const again = startCompaction(lock2, { intervalMs: 60_000 });
  await again.runOnce();
  await again.runOnce();
  await again.stop();
  await lock2.release();
  t.same((await recoverAll(dir)).topics.get('q/t')!.ready, expected.topics.get('q/t')!.ready);
});

t.test('a segment still being written is never rewritten; a removal seen before its push stays pending', async (t) => {
  const { dir, compactor } = await manualCompaction(t);
  const a = await openLog(dir, { fsync: 'no', threadIndex: 1, maxSegmentBytes: 1024 });
  const b = await openLog(dir, { fsync: 'no', threadIndex: 2, maxSegmentBytes: 1024 });
  // b logs the removal of id 5 first, in segments that get sealed and compacted.
  b.appendRemove(Q, T, [5]);
  b.commitSync();
  for (let i = 0; i < 20; i++) { b.appendSettings(Q, `{"i":${i},"pad":"${'p'.repeat(100)}"}`); b.commitSync(); }
  await compactor.runOnce();
  await compactor.runOnce();
  // Only now is the push of 0..9 written.
  a.appendPush(Q, T, storedRecords(Array.from({ length: 10 }, (_, id) => ({ id, data: `m${id}` }))));
  await a.commit();
  await compactor.runOnce();
  await a.close();
  await b.close();
  await compactor.runOnce();
  await compactor.runOnce();
  const r = await recoverAll(dir);
  t.same(r.topics.get('q/t')!.ready.map((m) => m.id), [0, 1, 2, 3, 4, 6, 7, 8, 9]);
  t.equal(r.settings.get('q'), `{"i":19,"pad":"${'p'.repeat(100)}"}`);
});

t.test('a sealed segment still being consumed waits for its removals instead of being rewritten, at most 5 passes', async (t) => {
  const data = 'x'.repeat(100);
  /** A sealed producer segment of `total` messages (ids from 0), followed once while all live. */
  async function sealedSegment(dir: string, compactor: Compactor, total: number) {
    const producer = await openLog(dir, { fsync: 'no', threadIndex: 1 });
    producer.appendPush(Q, T, storedRecords(Array.from({ length: total }, (_, id) => ({ id, data }))));
    await producer.close();
    const consumer = await openLog(dir, { fsync: 'no', threadIndex: 2 });
    t.teardown(() => consumer.close());
    t.equal((await compactor.runOnce()).inputs, 0, 'nothing dead yet: nothing rewritten');
    let removed = 0;
    return {
      async remove(n: number) {
        consumer.appendRemove(Q, T, Array.from({ length: n }, (_, i) => removed + i));
        removed += n;
        await consumer.commit();
      },
      present: () => segmentFiles(dir).some((f) => f.startsWith('w1-')),
    };
  }

  t.test('removals go on: it waits, and once all are removed its rewrite keeps nothing of it', async (t) => {
    const { dir, compactor } = await manualCompaction(t);
    const seg = await sealedSegment(dir, compactor, 500);
    await seg.remove(400); // 80 % dead: a candidate, but its live part shrank since the last pass
    t.equal((await compactor.runOnce()).inputs, 0, 'still draining: not rewritten');
    await seg.remove(50);
    t.equal((await compactor.runOnce()).inputs, 0, 'still draining: not rewritten');
    await seg.remove(50);
    const pass = await compactor.runOnce();
    t.equal(pass.inputs, 1, 'all dead: taken');
    t.ok(pass.outputBytes < 200, `no message copied (${pass.outputBytes} bytes of output: the topic's next id)`);
    t.notOk(seg.present(), 'the segment is gone');
    t.equal((await recoverAll(dir)).topics.get('q/t')?.ready.length ?? 0, 0);
  });

  t.test('removals stop: the next pass rewrites it, keeping exactly the live messages', async (t) => {
    const { dir, compactor } = await manualCompaction(t);
    const seg = await sealedSegment(dir, compactor, 500);
    await seg.remove(400);
    t.equal((await compactor.runOnce()).inputs, 0, 'draining: not rewritten');
    const pass = await compactor.runOnce();
    t.equal(pass.inputs, 1, 'no removal since the last pass: rewritten');
    t.ok(pass.outputBytes > 0 && !seg.present(), 'into an output, the segment deleted');
    t.same((await recoverAll(dir)).topics.get('q/t')?.ready.map((m) => m.id), Array.from({ length: 100 }, (_, i) => 400 + i));
  });

  t.test('removals trickle on: rewritten after 5 passes of waiting', async (t) => {
    const { dir, compactor } = await manualCompaction(t);
    const seg = await sealedSegment(dir, compactor, 500);
    await seg.remove(300);
    for (let i = 0; i < 5; i++) {
      t.equal((await compactor.runOnce()).inputs, 0, `wait ${i + 1}: not rewritten`);
      await seg.remove(10);
    }
    t.equal((await compactor.runOnce()).inputs, 1, 'the 6th pass rewrites it though it still shrinks');
    t.notOk(seg.present());
    t.same((await recoverAll(dir)).topics.get('q/t')?.ready.map((m) => m.id), Array.from({ length: 150 }, (_, i) => 350 + i));
  });
  t.end();
});

t.test('open dedup windows are carried through compaction until they expire, then dropped', async (t) => {
  const { dir, compactor } = await manualCompaction(t);
  const a = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  const b = await openLog(dir, { fsync: 'no', threadIndex: 2 });
  const expiresAt = Date.now() + 1500;
  // 200 pushes with dedupIds (journaled as the core does: in the PUSH record), all consumed.
  const data = 'd'.repeat(500);
  for (let id = 0; id < 200; id++) {
    const j = new RecordEncoder();
    j.push(Q, T, storedRecords([{ id, data }]), undefined, { id: Buffer.from(`k${id}`), expiresAt: expiresAt + id });
    a.appendJournal(j.bytes());
  }
  b.appendRemove(Q, T, Array.from({ length: 200 }, (_, i) => i));
  await a.commit();
  await b.commit();
  await a.close();
  await b.close();
  const before = segmentBytes(dir);
  const pass = await compactor.runOnce();
  t.ok(pass.inputs >= 1, 'the consumed pushes are compacted away');
  const after = segmentBytes(dir);
  t.ok(after < before / 4, `${before} -> ${after} bytes: the messages' space is given back`);
  let r = await recoverAll(dir);
  t.equal(r.topics.get('q/t')!.ready.length, 0);
  t.equal(r.topics.get('q/t')!.dedupIds.length, 200, 'every open window survived the rewrite');
  t.equal(r.topics.get('q/t')!.dedupIds[0], `k0@${expiresAt}`);
  await compactor.runOnce();
  t.equal(segmentBytes(dir), after, 'an output of open windows is not rewritten again while they are open');
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt + 200 - Date.now()) + 50));
  await compactor.runOnce();
  r = await recoverAll(dir);
  t.equal(r.topics.get('q/t')?.dedupIds.length ?? 0, 0, 'once the windows closed, the next pass dropped them');
  t.ok(segmentBytes(dir) < after, `${segmentBytes(dir)} bytes left`);
});

t.test('following the log in pieces: records larger than a piece, and many pieces in one pass', async (t) => {
  const { dir, compactor } = await manualCompaction(t);
  const log = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  // 9 MiB of small records (several 4 MiB pieces), a 6 MiB message (more than a piece), more small ones.
  let id = 0;
  for (let i = 0; i < 9 * 1024; i++, id++) log.appendPush(Q, T, storedRecords([{ id, data: 'x'.repeat(1000) }]));
  const big = id++;
  log.appendPush(Q, T, storedRecords([{ id: big, data: 'b'.repeat(6 * 1024 * 1024) }]));
  for (let i = 0; i < 100; i++, id++) log.appendPush(Q, T, storedRecords([{ id, data: 'y' }]));
  await log.commit();
  const pass = await compactor.runOnce();
  t.ok(pass.scannedBytes > 15 * 1024 * 1024, `one pass followed all of it (${pass.scannedBytes} bytes)`);
  t.equal(compactor.stats().liveMessages, id, 'every message, the large one included, is known live');
  log.appendRemove(Q, T, Array.from({ length: id }, (_, i) => i));
  await log.commit();
  await log.close();
  await compactor.runOnce();
  t.equal(compactor.stats().liveMessages, 0);
  t.ok(segmentBytes(dir) < 64 * 1024, `all given back (${segmentBytes(dir)} bytes left)`);
});

t.test('leased deliveries (DELIVERED) survive a rewrite as they were: counted, and losing the tie to the lease end', async (t) => {
  const { dir, compactor } = await manualCompaction(t);
  const producer = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  const consumer = await openLog(dir, { fsync: 'no', threadIndex: 2 });
  const later = Date.now() + 60_000;
  producer.appendPush(Q, T, storedRecords(Array.from({ length: 100 }, (_, id) => ({ id, data: `m${id}` }))));
  await producer.commit();
  const j = new RecordEncoder();
  j.delivered(Q, T, Array.from({ length: 50 }, (_, i) => i), Array.from({ length: 50 }, () => 1), 50);
  consumer.appendJournal(j.bytes());
  for (let id = 0; id < 10; id++) consumer.appendMeta(Q, T, id, 1, later); // nacked with a delay
  consumer.appendRemove(Q, T, Array.from({ length: 50 }, (_, i) => 50 + i));
  await consumer.commit();
  await consumer.close(); // sealed: it can be rewritten; the producer's segment stays open
  const before = await recoverAll(dir);
  const pass = await compactor.runOnce();
  t.equal(pass.inputs, 1, 'the consumer\'s segment was rewritten');
  const after = await recoverAll(dir);
  const summary = (r: typeof before) => ({
    ready: r.topics.get('q/t')!.ready.map((m) => `${m.id}:${m.meta}`),
    delayed: r.topics.get('q/t')!.delayed.map((m) => `${m.id}:${m.meta}`),
  });
  t.same(summary(after), summary(before), 'the same after the rewrite');
  t.same(summary(after).delayed, Array.from({ length: 10 }, (_, id) => `${id}:1`), 'the nacked ones delayed, one delivery each');
  t.same(summary(after).ready, Array.from({ length: 40 }, (_, i) => `${10 + i}:1`), 'the ones in flight ready, their delivery counted');
  await producer.close();
});

t.test('one compactor per lock (boot)', async (t) => {
  const dir = tempDir(t);
  const lock = await lockFor(t, dir);
  const c = startCompaction(lock, { intervalMs: 60_000 });
  t.throws(() => startCompaction(lock), { code: 'ERR_INVALID_ARGUMENT' });
  await c.stop();
});

t.test('segments ending in preallocated zeros are compacted: one truncated by its writer while followed, one left by a crashed writer', async (t) => {
  const data = 'd'.repeat(1008);
  const batch = (from: number) => storedRecords(Array.from({ length: 64 }, (_, i) => ({ id: from + i, data })));
  for (const fsync of ['always', 'everysec', 'no'] as const) {
    await t.test(`fsync ${fsync}: followed while preallocated, then closed (truncated to its data)`, async (t) => {
      const dir = tempDir(t);
      const lock = await lockFor(t, dir);
      const logger = recordingLogger();
      const compactor = startCompaction(lock, { intervalMs: 60_000, logger });
      t.teardown(() => compactor.stop());
      const log = await openLog(dir, { fsync, threadIndex: 1 });
      let id = 0;
      for (let round = 0; round < 3; round++) {
        for (let k = 0; k < 4; k++) { log.appendPush(Q, T, batch(id)); id += 64; await log.commit(); }
        await compactor.runOnce(); // sees the segment's preallocated size
      }
      t.ok(fs.statSync(path.join(dir, segmentFiles(dir)[0]!)).size >= 1024 * 1024, 'followed while zeros were ahead of its data');
      log.appendRemove(Q, T, Array.from({ length: id }, (_, i) => i));
      await log.close();
      await compactor.runOnce();
      t.same(logger.lines, [], 'a segment giving back its zeros is not taken for damage');
      t.same(segmentFiles(dir).filter((n) => n.startsWith('w')), [], 'the closed, all-dead segment is deleted');
      t.ok(segmentBytes(dir) < 4096, `${segmentBytes(dir)} bytes left (the topic's next id)`);
    });
  }
  await t.test('a writer killed with its zeros still ahead: the next boot\'s compaction settles and deletes it', async (t) => {
    const dir = tempDir(t);
    const first = await lockDataDir(dir);
    const log = await openLog(dir, { fsync: 'everysec', threadIndex: 1 });
    log.appendPush(Q, T, batch(0));
    await log.commit();
    const file = path.join(dir, segmentFiles(dir)[0]!);
    const crashed = fs.readFileSync(file); // unsealed, zeros to the end: what kill -9 leaves
    t.ok(crashed.length >= 1024 * 1024 && crashed.at(-1) === 0, 'preallocated');
    await log.close();
    fs.writeFileSync(file, crashed);
    await first.release();
    const lock = await lockFor(t, dir);
    const logger = recordingLogger();
    const compactor = startCompaction(lock, { intervalMs: 60_000, logger });
    t.teardown(() => compactor.stop());
    const next = await openLog(dir, { fsync: 'everysec', threadIndex: 1 });
    next.appendRemove(Q, T, Array.from({ length: 64 }, (_, i) => i));
    await next.close();
    await compactor.runOnce();
    await compactor.runOnce();
    t.same(logger.lines, []);
    t.same(segmentFiles(dir).filter((n) => n.startsWith('w')), [], 'both segments are dead and deleted');
    t.ok(segmentBytes(dir) < 4096, `${segmentBytes(dir)} bytes left (the topic's next id)`);
    t.same((await recoverAll(dir)).topics.get('q/t')?.ready ?? [], []);
  });
});
