// src/core/thread.ts with assembly/journal.ts's cross-thread log marks: a reply for what a
// thread journaled waits until every other thread's log has written what that thread had
// journaled by then. Two core instances on one shared memory are two core threads (each
// has its own thread id and journal), each with a real log in a temporary directory.
//
// The case it closes (docs/durability.md, "Across threads"): a message pushed through
// thread A and popped through thread B before A wrote its PUSH. Without the wait, B's
// reply goes out first; a crash then leaves the consumer with a message the log never had.

import t from 'tap';
import type { Test } from 'tap';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fs from 'node:fs';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';
import { openLog, type LogWriter, type LogOptions } from '../../src/storage/log.ts';
import { Op } from '../../src/protocol.ts';

const enc = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function setup(t: Test) {
  const dir = await mkdtemp(join(tmpdir(), 'turbomq-marks-'));
  const memory = newSharedMemory(64);
  const module = sharedCoreModule();
  const logs: LogWriter[] = [];
  /** Threads to stop at the end (a test that stops or reaps one takes it out). */
  const threads = new Set<CoreThread>();
  const thread = async (index: number, options: Partial<LogOptions> = {}) => {
    const th = new CoreThread(await instantiateSharedCore(memory, module));
    const log = await openLog(dir, { fsync: 'everysec', ...options, threadIndex: index });
    th.attachLog(log);
    const peerLog = { waits: 0, rings: 0 };
    th.onPeerLog = (event) => { if (event === 'wait') peerLog.waits++; else peerLog.rings++; };
    logs.push(log);
    threads.add(th);
    const e = th.exports, v = th.core.view;
    const q = th.scratch, tp = th.scratch + 256, data = th.scratch + 512;
    v.write(q, enc.encode('q'));
    v.write(tp, enc.encode('t'));
    const w = e.writerNew(4096);
    return {
      th,
      log,
      /** What onPeerLog reported (the counters behind turbomq_log_peer_waits_total). */
      peerLog,
      push(text: string): void {
        const b = enc.encode(text);
        v.write(data, b);
        if (e.opPush(q, 1, tp, 1, data, b.length) !== 0) throw new Error('push failed');
      },
      /** Pushes `text` with dedupId `id`; returns the core's status (0: stored, or a duplicate). */
      pushDedup(text: string, id: string): number {
        const b = enc.encode(text), d = enc.encode(id);
        v.write(data, b);
        v.write(data + 1024, d);
        return e.opPushEx(q, 1, tp, 1, 0, 0, 1, data, b.length, 0, data + 1024, d.length, Date.now(), data + 2048);
      },
      /** Pops one message; returns how many it took. */
      pop(): number {
        const n = e.opPop(w, Op.MESSAGES, 1, q, 1, tp, 1, 1, 1 << 20, 0, 0, 0, 0, Date.now());
        e.writerReset(w);
        return n;
      },
      /** Whether the thread's log file holds `text` (its PUSH was written). */
      async logged(text: string): Promise<boolean> {
        const prefix = `w${String(index).padStart(3, '0')}-`;
        for (const name of await readdir(dir)) {
          if (!name.startsWith(prefix)) continue;
          if ((await readFile(join(dir, name))).includes(Buffer.from(text))) return true;
        }
        return false;
      },
    };
  };
  t.teardown(async () => {
    for (const th of threads) th.stop();
    for (const log of logs) await log.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  return { thread, threads };
}

/** Whether `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  const until = Date.now() + ms;
  while (!done && Date.now() < until) await sleep(2);
  return done;
}

t.test('a pop of a message another thread has not logged yet waits for that thread\'s log', async (t) => {
  const { thread } = await setup(t);
  const a = await thread(1), b = await thread(2);
  a.push('pushed-through-a');
  t.equal(b.pop(), 1, 'b pops what a pushed');
  t.equal(b.th.persist(), false, 'b\'s reply may not go out: a has not written its PUSH');
  const committed = b.th.commit();
  // a is not running its mailbox loop, so nothing rings it: b keeps waiting.
  t.equal(await settlesWithin(committed, 60), false, 'b\'s commit waits while a\'s log lacks the PUSH');
  t.equal(await a.logged('pushed-through-a'), false, 'a\'s log does not have it yet');
  t.equal(a.th.persist(), true, 'a writes its journal (everysec: at once)');
  t.equal(await settlesWithin(committed, 1000), true, 'then b\'s commit resolves');
  t.equal(await a.logged('pushed-through-a'), true, 'by then a\'s log has the PUSH');
  t.same(b.peerLog, { waits: 1, rings: 1 }, 'one wait counted, and one ring (a, without a mailbox loop, was rung every 10 ms)');
  // Nothing new from a: b's next reply does not wait.
  a.push('second');
  t.equal(a.th.persist(), true);
  t.equal(b.pop(), 1);
  t.equal(b.th.persist(), true, 'a logged everything it journaled: b replies at once');
});

t.test('a thread that has not written by itself is rung and writes', async (t) => {
  const { thread } = await setup(t);
  const a = await thread(1), b = await thread(2);
  a.th.start(); // its mailbox loop answers the ring
  a.push('rung');
  t.equal(b.pop(), 1);
  t.equal(b.th.persist(), false);
  t.equal(await settlesWithin(b.th.commit(), 2000), true, 'b\'s commit resolves without a persisting on its own');
  t.equal(await a.logged('rung'), true, 'a\'s log has the PUSH');
  t.equal(b.peerLog.waits, 1);
  t.equal(b.peerLog.rings, 1, 'the ring is counted');
});

t.test('a thread that detaches or is reaped is no longer waited for', async (t) => {
  const { thread, threads } = await setup(t);
  const a = await thread(1), b = await thread(2), c = await thread(3);
  a.push('from-a');
  c.push('from-c');
  t.equal(b.pop(), 1);
  t.equal(b.pop(), 1);
  t.equal(b.th.persist(), false);
  const committed = b.th.commit();
  threads.delete(a.th);
  a.th.stop(); // detach: what it journals from now on is its own close's business
  t.equal(await settlesWithin(committed, 60), false, 'still waiting for c');
  // c "dies": another thread reaps its id.
  threads.delete(c.th);
  b.th.exports.reapThread(c.th.id, Date.now());
  t.equal(await settlesWithin(committed, 1000), true, 'resolved once both are settled');
});

t.test('a duplicate refused waits for the log of the thread that stored the first push', async (t) => {
  const { thread } = await setup(t);
  const a = await thread(1), b = await thread(2);
  t.equal(a.pushDedup('first', 'job-1'), 0);
  t.equal(b.pushDedup('retry', 'job-1'), 0, 'the retry is a duplicate (answered as stored)');
  t.equal(b.th.persist(), false, 'its "stored" may not go out before a\'s log has the first push');
  const committed = b.th.commit();
  t.equal(await settlesWithin(committed, 40), false);
  a.th.persist();
  t.equal(await settlesWithin(committed, 1000), true);
  t.equal(await a.logged('first'), true);
});

t.test('only other threads\' unwritten records make a reply wait', async (t) => {
  const { thread } = await setup(t);
  const a = await thread(1), b = await thread(2);
  a.push('unwritten');
  b.push('independent');
  t.equal(b.th.persist(), true, 'a push of b\'s own does not wait for a, whatever a has not written');
  t.equal(a.th.persist(), true);
  t.equal(b.pop(), 1);
  t.equal(b.th.persist(), true, 'a wrote before b popped: no wait');
  b.push('own');
  t.equal(b.pop(), 1);
  t.equal(b.th.persist(), true, 'b\'s own push and pop are in b\'s own log: no wait');
  a.push('later');
  t.equal(a.th.persist(), true);
  t.equal(b.pop(), 1);
  t.equal(b.th.persist(), true, 'a wrote before b popped: no wait');
  t.same(b.peerLog, { waits: 0, rings: 0 }, 'nothing counted');
});

t.test('under always a pop waits for the other thread\'s fdatasync, not only its write', async (t) => {
  const { thread } = await setup(t);
  // a's fdatasyncs through the thread pool are held until released (a slow disk).
  const held: (() => void)[] = [];
  let synced = 0;
  const a = await thread(1, {
    fsync: 'always',
    fs: { fdatasync: (fd, cb) => { held.push(() => fs.fdatasync(fd, (err) => { synced++; cb(err); })); } },
    inlineFsyncMaxMs: -1, // a group's fdatasync goes to the pool even on a fast disk
  });
  const b = await thread(2, { fsync: 'always' });
  a.push('synced-by-a');
  t.equal(a.th.persist(), false, 'a\'s push waits for its fsync');
  // Two commits in one turn: a group of two, so the fdatasync goes to the pool (held), not inline
  // (inlineFsyncMaxMs -1).
  const aDone = Promise.all([a.th.commit(), a.th.commit()]);
  await sleep(5);
  t.equal(await a.logged('synced-by-a'), true, 'a has written the PUSH (not synced yet)');
  t.equal(b.pop(), 1);
  t.equal(b.th.persist(), false);
  const committed = b.th.commit();
  t.equal(await settlesWithin(committed, 60), false, 'b waits while a\'s fdatasync is held, though a wrote');
  t.equal(synced, 0);
  for (const release of held.splice(0)) release();
  t.equal(await settlesWithin(aDone, 1000), true, 'a\'s commits resolve once synced');
  t.equal(await settlesWithin(committed, 1000), true, 'then b\'s commit resolves');
  t.ok(synced >= 1, 'after a\'s fdatasync');
});

t.test('a commit that resolves after its thread stopped does not write into the slot, whoever has it now', async (t) => {
  const { thread, threads } = await setup(t);
  const held: (() => void)[] = [];
  const a = await thread(1, {
    fsync: 'always',
    fs: { fdatasync: (fd, cb) => { held.push(() => fs.fdatasync(fd, cb)); } },
    inlineFsyncMaxMs: -1,
  });
  const id = a.th.id;
  a.push('before-stop');
  t.equal(a.th.persist(), false);
  const aDone = Promise.all([a.th.commit(), a.th.commit()]); // a group of two: the held pool fdatasync
  await sleep(5);
  threads.delete(a.th);
  a.th.stop();
  // The next thread attached takes the lowest free id: a's.
  const c = await thread(2);
  t.equal(c.th.id, id, 'the id is attached again');
  c.push('from-c');
  t.equal(c.th.persist(), true, 'c writes its PUSH (everysec) and publishes its count');
  const words = c.th.core.view.headerWords();
  const journaledIndex = c.th.exports.logMarksAddress() >>> 2;
  const loggedIndex = journaledIndex + 1; // the next word (assembly/layout.ts)
  t.equal(Atomics.load(words, loggedIndex), Atomics.load(words, journaledIndex), 'c\'s logged is its journaled');
  for (const release of held.splice(0)) release();
  await settlesWithin(aDone, 1000);
  await sleep(5);
  t.equal(Atomics.load(words, loggedIndex), Atomics.load(words, journaledIndex), 'a\'s late commit left c\'s logged alone');
});
