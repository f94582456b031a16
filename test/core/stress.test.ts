// The shared core under real concurrency: worker threads and the main thread push and pop
// at once over many topics; every message must be popped exactly once, in order per
// producer per topic, and the allocator must get all its memory back.

import t from 'tap';
import { Worker } from 'node:worker_threads';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';

const workerUrl = new URL('./stress-worker.ts', import.meta.url);

interface Result { role: string; id: number; pushed: number; popped: number; orderErrors: number; errors: string[] }

function runWorker(data: object): Promise<Result> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerUrl, { workerData: data });
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => { if (code !== 0) reject(new Error(`worker exited with ${code}`)); });
  });
}

t.test('3 producers and 3 consumers on separate threads: 1,200,000 messages over 1,000 topics, no loss, no duplicate, FIFO per producer', { timeout: 120_000 }, async (t) => {
  const memory = newSharedMemory(64);
  const module = sharedCoreModule();
  const main = new CoreThread(await instantiateSharedCore(memory, module));
  const e = main.exports;
  const baselineBytes = e.bytesInUse();
  const producers = 3, consumers = 3, messagesPerProducer = 400_000, topics = 1000;
  const total = producers * messagesPerProducer;
  const seen = new SharedArrayBuffer(total);
  const consumed = new SharedArrayBuffer(4);
  const common = { memory, module, producers, messagesPerProducer, topics, batch: 16, seen, consumed, total };
  const started = performance.now();
  const results = await Promise.all([
    ...Array.from({ length: producers }, (_, id) => runWorker({ ...common, role: 'producer', id })),
    ...Array.from({ length: consumers }, (_, id) => runWorker({ ...common, role: 'consumer', id })),
  ]);
  t.comment(`${total} messages through ${producers}+${consumers} threads in ${(performance.now() - started).toFixed(0)} ms`);
  for (const r of results) t.same(r.errors, [], `${r.role} ${r.id}: no errors`);
  t.equal(results.filter((r) => r.role === 'producer').reduce((s, r) => s + r.pushed, 0), total, 'every message pushed');
  t.equal(results.filter((r) => r.role === 'consumer').reduce((s, r) => s + r.popped, 0), total, 'every message popped');
  t.equal(results.reduce((s, r) => s + r.orderErrors, 0), 0, 'FIFO per producer per topic');
  const counts = new Uint8Array(seen);
  let missing = 0, duplicates = 0;
  for (const c of counts) { if (c === 0) missing++; else if (c > 1) duplicates++; }
  t.equal(missing, 0, 'no message lost');
  t.equal(duplicates, 0, 'no message delivered twice');
  t.equal(e.topicCount(), 0, 'every drained topic was removed');
  t.equal(e.bytesInUse(), baselineBytes, 'the allocator got every byte back');
  main.stop();
});

t.test('a pop parked on one thread is woken by a push from another thread', async (t) => {
  const memory = newSharedMemory(64);
  const module = sharedCoreModule();
  const a = new CoreThread(await instantiateSharedCore(memory, module));
  const b = new CoreThread(await instantiateSharedCore(memory, module));
  const enc = new TextEncoder();
  const names = (th: CoreThread) => { th.core.view.write(th.scratch, enc.encode('q')); th.core.view.write(th.scratch + 256, enc.encode('t')); };
  names(a); names(b);
  const w = a.exports.writerNew(1024);
  const token = a.newToken();
  t.equal(a.exports.opPop(w, 0x84, 9, a.scratch, 1, a.scratch + 256, 1, 1, 1 << 20, 0, token), 0, 'parks on the empty topic');
  const delivered = new Promise<number>((resolve) => a.register(token, { onHanded: resolve }));
  a.start();
  b.core.view.write(b.scratch + 512, enc.encode('hello'));
  t.equal(b.exports.opPush(b.scratch, 1, b.scratch + 256, 1, b.scratch + 512, 5), 0, 'push from the other thread');
  const waiter = await delivered;
  t.equal(a.exports.waiterDeliverFrame(waiter, w, 0x84, 9, 0, 1 << 20, 0), 1, 'one message handed over');
  const frame = a.exports.writerData(w);
  t.equal(new TextDecoder().decode(a.core.view.copy(frame + 20, 5)), 'hello');
  a.exports.waiterRelease(waiter);
  t.equal(b.exports.opLength(b.scratch, 1, b.scratch + 256, 1), 0, 'the message was not also stored');
  a.exports.writerFree(w);
  a.stop();
  b.stop();
});
