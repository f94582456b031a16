// The child process of test/storage/crash.test.ts, a broker's storage in miniature: it
// recovers the directory, then two log writers (two "threads") push, remove and change
// deliveries on three topics while a compactor runs, until the parent kills it with
// SIGKILL. It reports on stdout, with synchronous writes:
//   r|m <topic> <id> [deliveries]   before appending a removal / delivery change (intent)
//   P <topic> <id> <data>           after the push's commit resolved (acknowledged)
//   R <topic> <id>                  after the removal's commit resolved
//   M <topic> <id> <deliveries>     after the delivery change's commit resolved
// Pushes from one producer go to one topic in its order: data is `<run>:<producer>:<seq>`.
//
// Plain JavaScript over the built modules (npm test builds first): loading the TypeScript
// stripper would double each child's start-up, and the test starts 60 of them.

import fs from 'node:fs';
import { lockDataDir } from '../../build/js/storage/lock.js';
import { openLog } from '../../build/js/storage/log.js';
import { recover } from '../../build/js/storage/recovery.js';
import { startCompaction } from '../../build/js/storage/compaction.js';

const [dir, fsync, runArg, seedArg] = process.argv.slice(2);
const run = Number(runArg);
let seed = Number(seedArg);
const rand = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
const say = (line) => fs.writeSync(1, line + '\n');

function storedRecords(messages) {
  const parts = [];
  for (const m of messages) {
    const data = Buffer.from(m.data);
    const header = Buffer.alloc(16);
    header.writeUInt32LE(data.length, 0);
    header.writeBigUInt64LE(BigInt(m.id), 8);
    parts.push(header, data);
  }
  return Buffer.concat(parts);
}

const queue = Buffer.from('q');
const topics = ['t0', 't1', 't2'].map((name) => Buffer.from(name));
const lock = await lockDataDir(dir);
const recovered = await recover(dir);
const nextId = [0, 0, 0];
const live = [new Set(), new Set(), new Set()];
const deliveries = new Map();
for (const t of recovered.topics) {
  const k = topics.findIndex((x) => x.equals(t.topic));
  if (k < 0) continue;
  nextId[k] = Number(t.nextId);
  for (const chunk of t.readyChunks()) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let p = 0; p < b.length; p += 16 + b.readUInt32LE(p)) {
      const id = Number(b.readBigUInt64LE(p + 8));
      live[k].add(id);
      deliveries.set(`${k}:${id}`, b.readUInt32LE(p + 4));
    }
  }
}
startCompaction(lock, { intervalMs: 25, smallSegmentBytes: 8 * 1024 });
const writers = [
  await openLog(dir, { fsync, threadIndex: 1, maxSegmentBytes: 16 * 1024, idleRotateMs: 30, minRotateBytes: 1 }),
  await openLog(dir, { fsync, threadIndex: 2, maxSegmentBytes: 16 * 1024, idleRotateMs: 30, minRotateBytes: 1 }),
];
const seqs = [0, 0, 0, 0, 0, 0];
say('ready');

for (;;) {
  const w = rand(2);
  const log = writers[w];
  const k = rand(3);
  const op = rand(10);
  if (op < 5 || live[k].size === 0) {
    // Producer (w, k) pushes a batch to topic k.
    const producer = w * 3 + k;
    const n = 1 + rand(4);
    const msgs = Array.from({ length: n }, (_, i) => ({ id: nextId[k] + i, data: `${run}:${producer}:${seqs[producer] + i}` }));
    nextId[k] += n;
    seqs[producer] += n;
    log.appendPush(queue, topics[k], storedRecords(msgs));
    for (const m of msgs) live[k].add(m.id);
    void log.commit().then(() => { for (const m of msgs) say(`P ${k} ${m.id} ${m.data}`); }, () => {});
  } else if (op < 8) {
    // A consumer on either thread removes some live ids (maybe pushes not acknowledged yet).
    const ids = [...live[k]].slice(0, 1 + rand(5));
    for (const id of ids) { say(`r ${k} ${id}`); live[k].delete(id); }
    log.appendRemove(queue, topics[k], ids);
    void log.commit().then(() => { for (const id of ids) say(`R ${k} ${id}`); }, () => {});
  } else {
    const ids = [...live[k]];
    const id = ids[rand(ids.length)];
    const d = (deliveries.get(`${k}:${id}`) ?? 0) + 1;
    deliveries.set(`${k}:${id}`, d);
    say(`m ${k} ${id} ${d}`);
    log.appendMeta(queue, topics[k], id, d);
    void log.commit().then(() => say(`M ${k} ${id} ${d}`), () => {});
  }
  if (rand(3) === 0) await new Promise((resolve) => setImmediate(resolve));
  if (rand(40) === 0) await new Promise((resolve) => setTimeout(resolve, 5));
}
