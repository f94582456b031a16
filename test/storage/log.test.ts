// The log writer: what it writes comes back from recovery, commits share writes and
// fdatasyncs (group commit), several writers keep each topic's order, and a failing disk
// makes commits reject without losing or repeating anything.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { openLog, parseFsyncPolicy, type LogFs } from '../../src/storage/log.ts';
import { listSegments } from '../../src/storage/files.ts';
import { DecodedRecord, decodeRecord, DECODE_OK, RECORD_SEAL, SEGMENT_HEADER_BYTES } from '../../src/storage/format.ts';
import { tempDir, lockFor, storedRecords, recoverAll, Q, T } from './support.ts';

t.test('pushes, removals, delivery changes and settings come back from recovery', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { fsync: 'always', threadIndex: 1 });
  log.appendPush(Q, T, storedRecords([{ id: 0, data: 'a' }, { id: 1, data: 'b' }, { id: 2, data: 'c' }]));
  log.appendPush(Q, T, storedRecords([{ id: 3, data: 'later' }]), Date.now() + 3_600_000);
  log.appendPush(Q, T, storedRecords([{ id: 4, data: 'due already' }]), Date.now() - 1000);
  log.appendPush(Q, Buffer.from('other'), storedRecords([{ id: 0, data: 'x' }]));
  log.appendRemove(Q, T, new BigUint64Array([1n]));
  log.appendPush(Q, T, storedRecords([{ id: 10, data: 'p' }, { id: 11, data: 'q' }, { id: 13, data: 'r' }]));
  log.appendRemoveRecords(Q, T, storedRecords([{ id: 10, data: 'p' }, { id: 11, data: 'q' }, { id: 13, data: 'r' }])); // as a pop hands them out
  log.appendMeta(Q, T, 2n, 1);                      // a lease ended: 1 delivery, ready
  log.appendMeta(Q, T, 0, 2, Date.now() + 60_000);  // nacked with a delay
  log.appendSettings(Q, '{"leaseMs":1000}');
  log.appendSettings(Q, '{"leaseMs":2000}');
  await log.commit();
  await log.close();
  const r = await recoverAll(dir);
  const topic = r.topics.get('q/t')!;
  t.same(topic.ready.map((m) => [m.id, m.meta, m.data]), [[2, 1, 'c'], [4, 0, 'due already']]);
  t.same(topic.delayed.map((m) => [m.id, m.meta, m.data]), [[0, 2, 'a'], [3, 0, 'later']], 'delayed in due-time order');
  t.equal(topic.nextId, 14n);
  t.same(r.topics.get('q/other')!.ready.map((m) => m.data), ['x']);
  t.equal(r.settings.get('q'), '{"leaseMs":2000}', 'the last settings win');
  t.same(r.warnings, []);
});

t.test('the inputs are copied before append returns (views into reused shared memory)', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { fsync: 'no', threadIndex: 1 });
  const shared = new Uint8Array(new SharedArrayBuffer(4096));
  const bytes = storedRecords([{ id: 0, data: 'original' }]);
  shared.set(bytes, 100);
  const names = new Uint8Array(shared.buffer, 0, 2);
  names.set(Buffer.from('qt'));
  const ids = new BigUint64Array(shared.buffer, 2048, 1);
  log.appendPush(names.subarray(0, 1), names.subarray(1, 2), shared.subarray(100, 100 + bytes.length));
  ids[0] = 5n;
  log.appendRemove(names.subarray(0, 1), names.subarray(1, 2), ids);
  shared.fill(0x55); // the memory is reused right after the calls
  await log.commit();
  await log.close();
  const r = await recoverAll(dir);
  t.same(r.topics.get('q/t')!.ready.map((m) => m.data), ['original']);
  t.equal(r.topics.get('q/t')!.nextId, 6n, 'the removed id 5 counts for the next id');
});

t.test('commits in one event-loop turn share one write; under always one fdatasync covers them', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { fsync: 'always', threadIndex: 1 });
  const commits: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) {
    log.appendPush(Q, T, storedRecords([{ id: i, data: `m${i}` }]));
    commits.push(log.commit());
  }
  t.ok(commits.every((c) => c === commits[0]), 'one promise for the whole turn');
  await Promise.all(commits);
  let s = log.stats();
  t.equal(s.writes, 1, 'one write(2)');
  t.equal(s.syncs, 1, 'one fdatasync');
  t.equal(s.syncedBytes, s.appendedBytes);
  // Waves arriving while an fdatasync runs wait for the next one, which covers all of them.
  const waves: Promise<void>[] = [];
  for (let wave = 0; wave < 5; wave++) {
    log.appendPush(Q, T, storedRecords([{ id: 100 + wave, data: 'w' }]));
    waves.push(log.commit());
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(waves);
  s = log.stats();
  t.ok(s.syncs - 1 <= 5, `at most one fdatasync per wave (${s.syncs - 1} for 5 waves)`);
  t.equal(log.commit(), log.commit(), 'nothing pending: the same resolved promise');
  await log.close();
});

t.test('under always a group commit fdatasyncs on the writer\'s thread while fsyncs are fast, in the thread pool once they are slow', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  let slowMs = 0, inline = 0, pool = 0;
  const wait = new Int32Array(new SharedArrayBuffer(4));
  const log = await openLog(dir, {
    fsync: 'always', threadIndex: 1, fs: {
      // The disk's speed is the test's: a real fdatasync of a freshly preallocated segment can
      // take milliseconds on a busy machine, which is the slow case this test sets up itself.
      // (What is written is checked at the end by recovery, from the page cache.)
      fdatasyncSync(): void {
        inline++;
        if (slowMs > 0) Atomics.wait(wait, 0, 0, slowMs); // a slow disk
      },
      fdatasync(_fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
        pool++;
        setTimeout(() => cb(null), slowMs);
      },
    },
  });
  // A group of two commits per turn (never a lone committer, which always runs inline).
  let id = 0;
  const group = () => {
    log.appendPush(Q, T, storedRecords([{ id: id++, data: 'x' }]));
    const a = log.commit();
    log.appendPush(Q, T, storedRecords([{ id: id++, data: 'y' }]));
    return Promise.all([a, log.commit()]);
  };
  for (let i = 0; i < 4; i++) await group();
  t.same({ inline, pool }, { inline: 4, pool: 0 }, 'fast fsyncs: every group on this thread');
  slowMs = 20;
  for (let i = 0; i < 4; i++) await group();
  t.ok(inline <= 4 + 2, `slow fsyncs: at most two more on this thread before the average shows it (${inline - 4})`);
  t.ok(pool >= 2, `then the groups go to the pool (${pool})`);
  const poolBefore = pool;
  log.appendPush(Q, T, storedRecords([{ id: id++, data: 'lone' }]));
  await log.commit();
  t.equal(pool, poolBefore, 'a lone committer still fdatasyncs on its thread');
  t.equal(log.stats().syncedBytes, log.stats().appendedBytes);
  await log.close();
  t.equal((await recoverAll(dir)).topics.get('q/t')!.ready.length, id, 'every commit on disk');
});

t.test('commitSync acknowledges at once without fsync, never under always', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  for (const [threadIndex, fsync] of [[1, 'no'], [2, 'everysec'], [3, 'always']] as const) {
    const log = await openLog(dir, { fsync, threadIndex });
    log.appendPush(Q, T, storedRecords([{ id: threadIndex, data: fsync }]));
    const sync = log.commitSync();
    t.equal(sync, fsync !== 'always', `${fsync}: commitSync() is ${sync}`);
    t.equal(log.stats().writtenBytes, log.stats().appendedBytes, `${fsync}: written to the OS by commitSync`);
    await log.commit();
    await log.close();
  }
  t.equal((await recoverAll(dir)).topics.get('q/t')!.ready.length, 3);
});

t.test('everysec fdatasyncs within about a second', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { fsync: 'everysec', threadIndex: 1 });
  log.appendPush(Q, T, storedRecords([{ id: 0, data: 'x' }]));
  await log.commit();
  t.equal(log.stats().syncedBytes, 0, 'acknowledged before the fsync');
  const deadline = Date.now() + 5000;
  while (log.stats().syncedBytes < log.stats().writtenBytes && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(log.stats().syncedBytes, log.stats().writtenBytes, 'synced by the timer');
  await log.close();
});

t.test('several writers in worker threads: every topic comes back in id order, each producer in its order', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const workers = 3, messages = 1500;
  const counter = new SharedArrayBuffer(4);
  const results = await Promise.all(Array.from({ length: workers }, (_, k) => new Promise<{ nextRemove: number }>((resolve, reject) => {
    const w = new Worker(new URL('./writer-worker.ts', import.meta.url), { workerData: { dir, threadIndex: k + 1, workers, messages, fsync: k === 0 ? 'always' : 'no', counter } });
    w.once('message', resolve);
    w.once('error', reject);
  })));
  const total = new Int32Array(counter)[0]!;
  // Removals the workers did not get to: ids that were assigned after their last check.
  const log = await openLog(dir, { fsync: 'no', threadIndex: 9 });
  const rest: number[] = [];
  for (const { nextRemove } of results) for (let id = nextRemove; id < total; id += 5 * workers) rest.push(id);
  log.appendRemove(Q, T, rest);
  await log.commit();
  await log.close();
  const r = await recoverAll(dir);
  const ready = r.topics.get('q/t')!.ready;
  const expected = Array.from({ length: total }, (_, i) => i).filter((i) => i % 5 !== 0);
  t.same(ready.map((m) => m.id), expected, 'exactly the ids pushed and not removed, in id order');
  for (let k = 0; k < workers; k++) {
    const own = ready.filter((m) => m.data.startsWith(`w${k}:`)).map((m) => Number(m.data.split(':')[1]));
    t.same(own, [...own].sort((a, b) => a - b), `worker ${k}'s messages in its push order`);
    t.ok(own.length > 0);
  }
  t.equal(r.topics.get('q/t')!.nextId, BigInt(total));
});

t.test('segments rotate at maxSegmentBytes and when idle, each closed with a SEAL record', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { fsync: 'everysec', threadIndex: 1, maxSegmentBytes: 4096, idleRotateMs: 300, minRotateBytes: 1 });
  for (let i = 0; i < 200; i++) {
    log.appendPush(Q, T, storedRecords([{ id: i, data: 'x'.repeat(100) }]));
    if (i % 10 === 9) await log.commit();
  }
  await log.commit();
  const before = listSegments(dir).length;
  t.ok(before >= 5, `${before} segments of 4 KiB`);
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(log.stats().segmentsCreated, before);
  // Every segment now ends with a SEAL (the last one closed for being idle).
  const rec = new DecodedRecord();
  for (const s of listSegments(dir)) {
    const b = fs.readFileSync(path.join(dir, s.name));
    let last = -1;
    for (let at = SEGMENT_HEADER_BYTES; at < b.length; at = rec.end) {
      t.equal(decodeRecord(b, at, b.length, rec), DECODE_OK);
      last = rec.type;
    }
    t.equal(last, RECORD_SEAL, `${s.name} is sealed`);
  }
  log.appendPush(Q, T, storedRecords([{ id: 200, data: 'after' }]));
  await log.commit();
  t.equal(listSegments(dir).length, before + 1, 'the next write opens a new segment');
  await log.close();
  t.equal((await recoverAll(dir)).topics.get('q/t')!.ready.length, 201);
});

t.test('one writer per thread index in a directory', async (t) => {
  const dir = tempDir(t);
  const lock = await lockFor(t, dir);
  const log = await openLog(dir, { threadIndex: 4 });
  await t.rejects(openLog(dir, { threadIndex: 4 }), { code: 'ERR_STORAGE', message: new RegExp(`thread index 4 already has a log writer in ${lock.dir}`) });
  await log.close();
  const again = await openLog(dir, { threadIndex: 4 });
  await again.close();
});

t.test('bad arguments are refused with ERR_INVALID_ARGUMENT and change nothing', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const log = await openLog(dir, { threadIndex: 1 });
  t.throws(() => log.appendPush(Buffer.alloc(0), T, storedRecords([{ id: 1, data: 'x' }])), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => log.appendPush(Q, Buffer.alloc(256), storedRecords([{ id: 1, data: 'x' }])), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => log.appendPush(Q, T, Buffer.alloc(20)), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => log.appendPush(Q, T, storedRecords([{ id: 1, data: 'x' }]), NaN), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => log.appendMeta(Q, T, -1, 0), RangeError);
  t.throws(() => parseFsyncPolicy('sometimes'), { code: 'ERR_INVALID_ARGUMENT', message: /always, everysec, no/ });
  await t.rejects(openLog(dir, { threadIndex: 256 }), { code: 'ERR_INVALID_ARGUMENT' });
  t.equal(log.stats().appendedBytes, 0);
  await log.close();
  await t.rejects(log.commit(), { code: 'ERR_STORAGE' });
  t.throws(() => log.appendRemove(Q, T, [1]), { code: 'ERR_STORAGE' });
});

/** node:fs, with writes failing with ENOSPC while `full` is set (after a partial write). */
function fullDisk(): { fs: Partial<LogFs>; full: boolean; failSync: boolean } {
  const state = {
    full: false,
    failSync: false,
    fs: {
      writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
        if (state.full) {
          // Like a real disk filling up: part of the write lands, the next call fails.
          if (length > 8 && !partial.has(position)) {
            partial.add(position);
            return fs.writeSync(fd, buffer, offset, Math.floor(length / 2), position);
          }
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        return fs.writeSync(fd, buffer, offset, length, position);
      },
      fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
        if (state.failSync) { setImmediate(() => cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }))); return; }
        fs.fdatasync(fd, cb);
      },
      // (A lone committer's group commit fdatasyncs on its own thread: log.ts #startSync.)
      fdatasyncSync(fd: number): void {
        if (state.failSync) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        fs.fdatasyncSync(fd);
      },
    } satisfies Partial<LogFs>,
  };
  const partial = new Set<number>();
  return state;
}

t.test('a failing write rejects the waiting commits with ERR_STORAGE; the bytes are retried in order, never lost or doubled', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const disk = fullDisk();
  for (const fsync of ['always', 'no'] as const) {
    const topic = Buffer.from(fsync);
    const log = await openLog(dir, { fsync, threadIndex: fsync === 'always' ? 1 : 2, fs: disk.fs });
    log.appendPush(Q, topic, storedRecords([{ id: 0, data: 'before' }]));
    await log.commit();
    disk.full = true;
    log.appendPush(Q, topic, storedRecords([{ id: 1, data: 'during' }]));
    await t.rejects(log.commit(), { code: 'ERR_STORAGE', message: /ENOSPC/ }, `${fsync}: the commit rejects`);
    t.equal(log.writable, false, 'not writable while it fails');
    t.match(log.error?.message, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').slice(-10)));
    log.appendRemove(Q, topic, [0]);
    await t.rejects(log.commit(), { code: 'ERR_STORAGE' });
    disk.full = false; // space returns
    log.appendPush(Q, topic, storedRecords([{ id: 2, data: 'after' }]));
    await log.commit();
    t.equal(log.writable, true);
    t.equal(log.stats().writtenBytes, log.stats().appendedBytes);
    await log.close();
  }
  const r = await recoverAll(dir);
  for (const fsync of ['always', 'no']) {
    t.same(r.topics.get(`q/${fsync}`)!.ready.map((m) => m.data), ['during', 'after'], `${fsync}: the failed bytes were written once, in order`);
  }
  t.same(r.damage, [], 'no torn record: the partial write was continued in place');
});

t.test('the retry timer writes what a failed write left, even when nobody commits', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const disk = fullDisk();
  const log = await openLog(dir, { fsync: 'no', threadIndex: 1, fs: disk.fs });
  disk.full = true;
  log.appendPush(Q, T, storedRecords([{ id: 0, data: 'x'.repeat(100) }]));
  await t.rejects(log.commit());
  disk.full = false;
  const deadline = Date.now() + 3000;
  while (!log.writable && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.ok(log.writable);
  t.equal(log.stats().writtenBytes, log.stats().appendedBytes);
  await log.close();
});

t.test('a failed fdatasync under always rejects its commits and is never acknowledged later; the next bytes go to a new segment', async (t) => {
  const dir = tempDir(t);
  await lockFor(t, dir);
  const disk = fullDisk();
  const log = await openLog(dir, { fsync: 'always', threadIndex: 1, fs: disk.fs });
  log.appendPush(Q, T, storedRecords([{ id: 0, data: 'a' }]));
  await log.commit();
  disk.failSync = true;
  log.appendPush(Q, T, storedRecords([{ id: 1, data: 'b' }]));
  await t.rejects(log.commit(), { code: 'ERR_STORAGE', message: /EIO/ });
  await t.rejects(log.commit(), { code: 'ERR_STORAGE' }, 'asking again does not acknowledge it');
  t.equal(log.commitSync(), false);
  disk.failSync = false;
  log.appendPush(Q, T, storedRecords([{ id: 2, data: 'c' }]));
  await log.commit();
  t.equal(log.stats().segmentsCreated, 2, 'a new segment after the failed fdatasync');
  await log.close();
});
