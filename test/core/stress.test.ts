// The shared core under real concurrency: worker threads and the main thread push and pop
// at once over many topics (one consumer through topic references, one leasing and acking
// every batch, one by name); every message must be consumed exactly once, in order per
// producer per topic, and the allocator must get all its memory back. The same scenario
// runs again, smaller, on the debug build (assembly/debug.ts: invariants asserted, a
// broken one traps), loaded in the workers through TURBOMQ_CORE=debug as a broker would.

import t, { type Test } from 'tap';
import { Worker } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';
import { Op, HEADER_BYTES, RECORD_HEADER_BYTES } from '../../src/protocol.ts';

const workerUrl = new URL('./stress-worker.ts', import.meta.url);

interface Result {
  role: string; id: number; threadId: number; build: string; pushed: number; popped: number; acked: number; orderErrors: number; errors: string[];
}

/** The consumer that pops leased and acks (stress-worker.ts LEASED_CONSUMER). */
const LEASED_CONSUMER = 1;

function debugCoreModule(): WebAssembly.Module {
  return new WebAssembly.Module(readFileSync(fileURLToPath(import.meta.resolve('#wasm/turbomq.debug.wasm'))));
}

interface Scenario {
  /** What the main thread instantiates. */
  mainModule: WebAssembly.Module;
  /** Sent to the workers; undefined: they load the core themselves (with `env`). */
  workerModule: WebAssembly.Module | undefined;
  env: NodeJS.ProcessEnv;
  build: 'release' | 'debug';
  producers: number;
  consumers: number;
  messagesPerProducer: number;
  topics: number;
}

async function runScenario(t: Test, s: Scenario): Promise<void> {
  const memory = newSharedMemory(64);
  const main = new CoreThread(await instantiateSharedCore(memory, s.mainModule));
  const e = main.exports;
  const baselineBytes = e.bytesInUse();
  const { producers, consumers, messagesPerProducer, topics } = s;
  const total = producers * messagesPerProducer;
  const seen = new SharedArrayBuffer(total);
  const consumed = new SharedArrayBuffer(4);
  const common = { memory, module: s.workerModule, producers, messagesPerProducer, topics, batch: 16, seen, consumed, total };
  const workers: Worker[] = [];
  // Whatever happens (a trap in the debug core, a failed assertion), no worker outlives the test.
  t.teardown(() => Promise.all(workers.map((w) => w.terminate())));
  const runWorker = (data: object) => new Promise<Result>((resolve, reject) => {
    const worker = new Worker(workerUrl, { workerData: data, env: s.env });
    workers.push(worker);
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => { if (code !== 0) reject(new Error(`worker exited with ${code}`)); });
  });
  const started = performance.now();
  const all = Promise.all([
    ...Array.from({ length: producers }, (_, id) => runWorker({ ...common, role: 'producer', id })),
    ...Array.from({ length: consumers }, (_, id) => runWorker({ ...common, role: 'consumer', id })),
  ]);
  // Meanwhile the main thread works too: it pushes and pops its own topics, and grows the
  // memory under the workers' feet (big allocations, written and checked through MemoryView).
  let running = true;
  void all.then(() => { running = false; }, () => { running = false; });
  const mainStats = await mainThreadLoad(main, () => running);
  const results = await all;
  t.comment(`main thread: ${mainStats.pairs} push+pop pairs, memory grew from ${mainStats.memoryBefore >> 20} to ${mainStats.memoryAfter >> 20} MiB`);
  t.equal(mainStats.lost, 0, 'main thread: every message it pushed it popped, in order, delivered once');
  t.ok(mainStats.memoryAfter > mainStats.memoryBefore, 'the memory grew while the workers ran');
  t.equal(mainStats.corrupt, 0, 'big blocks written after growth read back intact');
  t.comment(`${total} messages through ${producers}+${consumers} threads (${s.build} build) in ${(performance.now() - started).toFixed(0)} ms`);
  t.same(results.map((r) => r.build), results.map(() => s.build), `every worker ran the ${s.build} build`);
  for (const r of results) t.same(r.errors, [], `${r.role} ${r.id}: no errors`);
  t.equal(results.filter((r) => r.role === 'producer').reduce((sum, r) => sum + r.pushed, 0), total, 'every message pushed');
  t.equal(results.filter((r) => r.role === 'consumer').reduce((sum, r) => sum + r.popped, 0), total, 'every message popped');
  const leasing = results.find((r) => r.role === 'consumer' && r.id === LEASED_CONSUMER)!;
  // It alone reads every tenth topic (stress-worker.ts LEASED_SHARE): at least a tenth is its.
  t.ok(leasing.popped >= total / 10, `the leasing consumer popped ${leasing.popped} messages (at least a tenth)`);
  t.equal(leasing.acked, leasing.popped, 'and acked each of them');
  t.equal(results.reduce((sum, r) => sum + r.orderErrors, 0), 0, 'FIFO per producer per topic');
  const counts = new Uint8Array(seen);
  let missing = 0, duplicates = 0;
  for (const c of counts) { if (c === 0) missing++; else if (c > 1) duplicates++; }
  t.equal(missing, 0, 'no message lost');
  t.equal(duplicates, 0, 'no message delivered twice');
  t.equal(e.topicCount(), 0, 'every drained topic was removed');
  t.equal(e.queueBytes(), 0n, 'message storage is back to zero');
  // A thread's lease table outlives its detach (kept in its ThreadSlot for the next thread
  // with that id); reapThread frees it. It must find no lease and no message to return.
  t.equal(e.reapThread(leasing.threadId, Date.now()), 0, 'the leasing consumer left no lease behind');
  t.equal(e.bytesInUse(), baselineBytes, 'the allocator got every byte back');
  main.stop();
}

/** Pushes/pops on the main thread between yields, and forces memory growth, while `busy()`. */
async function mainThreadLoad(main: CoreThread, busy: () => boolean) {
  const e = main.exports;
  const view = main.core.view;
  const enc = new TextEncoder();
  view.write(main.scratch, enc.encode('main'));
  const w = e.writerNew(4096);
  const memoryBefore = view.memory.buffer.byteLength;
  // The one record of a MESSAGES frame: header, count, record header (len, meta, id), data.
  const record = HEADER_BYTES + 4;
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
      const n = e.opPop(w, Op.MESSAGES, 1, main.scratch, 4, main.scratch + 256, name.length, 1, 1 << 20, 0, 0, 0, 0, Date.now());
      const f = e.writerData(w);
      if (n !== 1 || view.u32(f + record) !== 4 || view.u32(f + record + 4) !== 1 || view.u32(f + record + RECORD_HEADER_BYTES) !== i) lost++;
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

t.test('3 producers and 3 consumers on separate threads: 1,200,000 messages over 1,000 topics, no loss, no duplicate, FIFO per producer', { timeout: 120_000 }, async (t) => {
  const module = sharedCoreModule();
  await runScenario(t, {
    mainModule: module, workerModule: module, env: process.env, build: 'release',
    producers: 3, consumers: 3, messagesPerProducer: 400_000, topics: 1000,
  });
});

t.test('the same on the debug build (TURBOMQ_CORE=debug): 150,000 messages over 200 topics, no invariant broken', { timeout: 120_000 }, async (t) => {
  await runScenario(t, {
    mainModule: debugCoreModule(), workerModule: undefined, env: { ...process.env, TURBOMQ_CORE: 'debug' }, build: 'debug',
    producers: 3, consumers: 3, messagesPerProducer: 50_000, topics: 200,
  });
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
  t.equal(a.exports.opPop(w, Op.MESSAGES, 9, a.scratch, 1, a.scratch + 256, 1, 1, 1 << 20, 0, token, 0, 0, Date.now()), 0, 'parks on the empty topic');
  const delivered = new Promise<number>((resolve) => a.register(token, { onHanded: resolve }));
  a.start();
  b.core.view.write(b.scratch + 512, enc.encode('hello'));
  t.equal(b.exports.opPush(b.scratch, 1, b.scratch + 256, 1, b.scratch + 512, 5), 0, 'push from the other thread');
  const waiter = await delivered;
  t.equal(a.exports.waiterDeliverFrame(waiter, w, Op.MESSAGES, 9, 0, 1 << 20, 0, 0, 0, Date.now()), 1, 'one message handed over');
  const record = a.exports.writerData(w) + HEADER_BYTES + 4;
  t.equal(a.core.view.u32(record), 5, 'record length');
  t.equal(a.core.view.u32(record + 4), 1, 'its first delivery');
  t.equal(new TextDecoder().decode(a.core.view.copy(record + RECORD_HEADER_BYTES, 5)), 'hello');
  a.exports.waiterRelease(waiter);
  t.equal(b.exports.opLength(b.scratch, 1, b.scratch + 256, 1), 0, 'the message was not also stored');
  a.exports.writerFree(w);
  a.stop();
  b.stop();
});
