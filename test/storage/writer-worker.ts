// A worker thread for test/storage/log.test.ts: one log writer, pushing to one topic shared
// with other workers. Ids come from a shared counter (as the core hands them out under the
// topic's lock), and the worker also removes ids other workers may not have logged yet (a
// consumer on another thread can log a removal before the push is written).

import { workerData, parentPort } from 'node:worker_threads';
import { openLog, type FsyncPolicy } from '../../src/storage/log.ts';
import { storedRecords, Q, T } from './support.ts';

const { dir, threadIndex, workers, messages, fsync, counter } = workerData as {
  dir: string; threadIndex: number; workers: number; messages: number; fsync: FsyncPolicy; counter: SharedArrayBuffer;
};
const ids = new Int32Array(counter);
const log = await openLog(dir, { fsync, threadIndex });
const k = threadIndex - 1;
let nextRemove = k * 5; // removes the multiples of 5 congruent to k mod workers
const commits: Promise<void>[] = [];
for (let i = 0; i < messages; i++) {
  const batch = 1 + (i % 3);
  const first = Atomics.add(ids, 0, batch);
  log.appendPush(Q, T, storedRecords(Array.from({ length: batch }, (_, j) => ({ id: first + j, data: `w${k}:${first + j}` }))));
  i += batch - 1;
  const removable: number[] = [];
  while (nextRemove < Atomics.load(ids, 0)) {
    removable.push(nextRemove);
    nextRemove += 5 * workers;
  }
  if (removable.length > 0) log.appendRemove(Q, T, removable);
  commits.push(log.commit());
  if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
}
await Promise.all(commits);
const stats = log.stats();
await log.close();
parentPort!.postMessage({ nextRemove, stats });
