// A real full disk: a 1 MiB tmpfs (we run as root in CI; skipped where mount is not
// allowed, test/storage/log.test.ts simulates the same with an injected fs). Commits reject
// with ERR_STORAGE instead of crashing, the writer recovers when space returns, and
// nothing acknowledged is lost or doubled.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { lockDataDir } from '../../src/storage/lock.ts';
import { openLog } from '../../src/storage/log.ts';
import { startCompaction } from '../../src/storage/compaction.ts';
import { tempDir, storedRecords, recoverAll, segmentBytes, Q, T } from './support.ts';

t.test('a full disk fails commits with ERR_STORAGE; when space returns everything is written once', async (t) => {
  const mnt = tempDir(t, 'tmq-full-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    t.skip('cannot mount a tmpfs here (not root?): see the simulated full disk in log.test.ts');
    return;
  }
  t.teardown(() => { try { execFileSync('umount', ['-l', mnt], { stdio: 'ignore' }); } catch { /* gone */ } });
  const dir = path.join(mnt, 'data');
  const filler = path.join(mnt, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(256 * 1024)); // someone else's file, deleted later
  const lock = await lockDataDir(dir);
  const log = await openLog(dir, { fsync: 'always', threadIndex: 1 });
  const data = 'm'.repeat(1000);
  const committed: number[] = [];
  let id = 0;
  let failure: (Error & { code?: string }) | undefined;
  while (id < 5000 && failure === undefined) {
    const batch = Array.from({ length: 8 }, () => ({ id: id++, data }));
    log.appendPush(Q, T, storedRecords(batch));
    try {
      await log.commit();
      committed.push(...batch.map((m) => m.id));
    } catch (err) {
      failure = err as Error & { code?: string };
    }
  }
  t.equal(failure?.code, 'ERR_STORAGE', 'the disk filled up');
  t.match(failure?.message, /ENOSPC \(no space left on device\)/);
  t.match(failure?.message, dir);
  t.equal(log.writable, false);
  const pending = id;
  // Still full: removals fail too, and nothing crashes.
  log.appendRemove(Q, T, committed.slice(0, 100));
  await t.rejects(log.commit(), { code: 'ERR_STORAGE' });
  // Space returns.
  fs.unlinkSync(filler);
  await log.commit();
  t.equal(log.writable, true, 'writable again');
  t.equal(log.stats().writtenBytes, log.stats().appendedBytes, 'everything staged was written');
  // Drain it and let compaction give the space back.
  log.appendRemove(Q, T, Array.from({ length: pending - 100 }, (_, i) => i + 100));
  await log.commit();
  await log.close();
  const before = segmentBytes(dir);
  const compactor = startCompaction(lock, { intervalMs: 60_000 });
  await compactor.runOnce();
  await compactor.stop();
  const after = segmentBytes(dir);
  t.ok(after < before / 10, `compaction gave the space back: ${before} -> ${after} bytes`);
  await lock.release();

  // Recovery before compaction would have found every acknowledged message once; after it, none.
  const r = await recoverAll(dir);
  t.same(r.topics.get('q/t')?.ready ?? [], []);
  t.equal(r.topics.get('q/t')?.nextId, BigInt(pending));
  t.same(r.damage, []);
});

t.test('acknowledged pushes survive a full disk exactly once (recovered without compaction)', async (t) => {
  const mnt = tempDir(t, 'tmq-full-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    t.skip('cannot mount a tmpfs here');
    return;
  }
  t.teardown(() => { try { execFileSync('umount', ['-l', mnt], { stdio: 'ignore' }); } catch { /* gone */ } });
  const dir = path.join(mnt, 'data');
  const filler = path.join(mnt, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(128 * 1024));
  const lock = await lockDataDir(dir);
  const log = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  const acked = new Set<number>();
  const rejected = new Set<number>();
  let freed = false;
  for (let id = 0; id < 1300; id++) {
    log.appendPush(Q, T, storedRecords([{ id, data: `${id}:${'x'.repeat(300)}` }]));
    if (log.commitSync()) acked.add(id);
    else await log.commit().then(() => acked.add(id), () => rejected.add(id));
    if (!freed && rejected.size === 20) { fs.unlinkSync(filler); freed = true; } // space returns
  }
  t.ok(freed, 'the disk filled up');
  await log.commit();
  await log.close();
  await lock.release();
  t.ok(rejected.size > 0, `${rejected.size} pushes were refused while the disk was full`);
  t.ok(acked.size > 0);
  const r = await recoverAll(dir);
  const ids = r.topics.get('q/t')!.ready.map((m) => m.id);
  t.equal(new Set(ids).size, ids.length, 'no message twice');
  for (const id of acked) if (!ids.includes(id)) t.fail(`acknowledged push ${id} is missing`);
  t.same(ids, [...ids].sort((a, b) => a - b));
  t.same(r.damage, [], 'the partial writes were continued: no torn record');
});
