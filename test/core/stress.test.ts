// The shared core under real concurrency: worker threads and the main thread push and pop
// at once over many topics; every message must be popped exactly once, in order per
// producer per topic, and the allocator must get all its memory back.

import t from 'tap';
import { Worker } from 'node:worker_threads';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';
import { RECORD_HEADER_BYTES } from '../../src/protocol.ts';

/** Where the first message's data starts in a records frame: 12-byte header, u32 count, stored record header. */
const FIRST_DATA = 16 + RECORD_HEADER_BYTES;

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
  const workers = Promise.all([
    ...Array.from({ length: producers }, (_, id) => runWorker({ ...common, role: 'producer', id })),
    ...Array.from({ length: consumers }, (_, id) => runWorker({ ...common, role: 'consumer', id })),
  ]);
  // Meanwhile the main thread works too: it pushes and pops its own topics, and grows the
  // memory under the workers' feet (big allocations, written and checked through MemoryView).
  let running = true;
  void workers.finally(() => { running = false; });
  const mainStats = await mainThreadLoad(main, () => running);
  const results = await workers;
  t.comment(`main thread: ${mainStats.pairs} push+pop pairs, memory grew from ${mainStats.memoryBefore >> 20} to ${mainStats.memoryAfter >> 20} MiB`);
  t.equal(mainStats.lost, 0, 'main thread: every message it pushed it popped, in order');
  t.ok(mainStats.memoryAfter > mainStats.memoryBefore, 'the memory grew while the workers ran');
  t.equal(mainStats.corrupt, 0, 'big blocks written after growth read back intact');
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
  t.equal(e.queueBytes(), 0n, 'message storage is back to zero');
  main.stop();
});

/** Pushes/pops on the main thread between yields, and forces memory growth, while `busy()`. */
async function mainThreadLoad(main: CoreThread, busy: () => boolean) {
  const e = main.exports;
  const view = main.core.view;
  const enc = new TextEncoder();
  view.write(main.scratch, enc.encode('main'));
  const w = e.writerNew(4096);
  const memoryBefore = view.memory.buffer.byteLength;
  let pairs = 0, lost = 0, corrupt = 0, round = 0;
  const blocks: number[] = [];
  while (busy()) {
    round++;
    const name = enc.encode(`main-${round % 7}`);
    view.write(main.scratch + 256, name);
    for (let i = 0; i < 200; i++) {
      view.setU32(main.scratch + 512, i);
      e.opPush(main.scratch, 4, main.scratch + 256, name.length, main.scratch + 512, 4);
    }
    for (let i = 0; i < 200; i++) {
      const n = e.opPop(w, 0x84, 1, main.scratch, 4, main.scratch + 256, name.length, 1, 1 << 20, 0, 0);
      if (n !== 1 || view.u32(e.writerData(w) + FIRST_DATA) !== i) lost++;
      e.writerReset(w);
      pairs++;
    }
    if (blocks.length < 6 && round % 4 === 0) {
      // 24 MiB each: the memory has to grow, while the workers are mid-operation.
      const size = 24 << 20;
      const block = e.alloc(size);
      if (block === 0) corrupt++;
      else {
        const pattern = new Uint8Array(size).fill(blocks.length + 1);
        view.write(block, pattern);
        blocks.push(block);
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (const [i, block] of blocks.entries()) {
    const bytes = view.bytes(block, 24 << 20);
    if (bytes[0] !== i + 1 || bytes[bytes.length - 1] !== i + 1 || bytes[12345] !== i + 1) corrupt++;
    e.free(block);
  }
  e.writerFree(w);
  return { pairs, lost, corrupt, memoryBefore, memoryAfter: view.memory.buffer.byteLength };
}

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
  t.equal(new TextDecoder().decode(a.core.view.copy(frame + FIRST_DATA, 5)), 'hello');
  a.exports.waiterRelease(waiter);
  t.equal(b.exports.opLength(b.scratch, 1, b.scratch + 256, 1), 0, 'the message was not also stored');
  a.exports.writerFree(w);
  a.stop();
  b.stop();
});
