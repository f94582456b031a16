// npm run bench:core — push+pop throughput of the shared-memory core against a plain
// JavaScript array FIFO in the same process, 1 thread and all threads, 16 B and 256 B,
// single and batched calls; and bytes per topic for 1,000,000 topics.
// Figures are medians of REPEAT runs; ratios compare figures taken in this same run.

import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { newSharedMemory, instantiateSharedCore } from '../src/core/wasm.ts';
import { sharedCoreModule } from '../src/core/load.ts';
import { CoreThread } from '../src/core/thread.ts';
import { runCore, runJs, type Workload } from './core-worker.ts';

const REPEAT = Number(process.env.REPEAT ?? 5);
const MESSAGES = Number(process.env.MESSAGES ?? 2_000_000);
const threads = os.availableParallelism();

const memory = newSharedMemory(64);
const module = sharedCoreModule();
const main = new CoreThread(await instantiateSharedCore(memory, module));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function fmt(rate: number): string {
  return rate >= 1e6 ? `${(rate / 1e6).toFixed(2)} M/s` : `${(rate / 1e3).toFixed(0)} k/s`;
}

function inWorker(workload: Workload): Promise<number> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./core-worker.ts', import.meta.url), { workerData: { benchJob: { memory, module, workload } } });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

async function allThreads(base: Omit<Workload, 'topic'>): Promise<number> {
  const rates = await Promise.all(Array.from({ length: threads }, (_, i) => inWorker({ ...base, topic: `t${i}` })));
  return rates.reduce((a, b) => a + b, 0);
}

console.log(`turbomq core benchmark: node ${process.versions.node}, ${threads} threads, ${os.cpus()[0]?.model ?? 'cpu'}`);
console.log(`${MESSAGES.toLocaleString()} push+pop pairs per figure, median of ${REPEAT}\n`);
console.log('workload                        core            JS array FIFO   core / JS');
const rows: string[] = [];
for (const payloadBytes of [16, 256]) {
  for (const batch of [1, 64]) {
    for (const mode of ['1 thread', `${threads} threads`]) {
      const coreRates: number[] = [], jsRates: number[] = [];
      for (let r = 0; r < REPEAT; r++) {
        const w = { payloadBytes, batch, messages: MESSAGES };
        if (mode === '1 thread') {
          coreRates.push(runCore(main, { ...w, kind: 'core', topic: 'solo' }));
          jsRates.push(runJs({ ...w, kind: 'js', topic: '' }));
        } else {
          coreRates.push(await allThreads({ ...w, kind: 'core' }));
          jsRates.push(await allThreads({ ...w, kind: 'js' }));
        }
      }
      const c = median(coreRates), j = median(jsRates);
      const label = `${payloadBytes} B, ${batch === 1 ? 'single' : `batch ${batch}`}, ${mode}`;
      const line = `${label.padEnd(32)}${fmt(c).padEnd(16)}${fmt(j).padEnd(16)}${(c / j).toFixed(2)}x`;
      console.log(line);
      rows.push(line);
    }
  }
}

// Bytes per topic: 1,000,000 topics held empty (a consumer attached keeps a topic alive),
// then the same topics holding one 16-byte message each.
{
  const e = main.exports;
  const view = main.core.view;
  const enc = new TextEncoder();
  const count = Number(process.env.TOPICS ?? 1_000_000);
  view.write(main.scratch, enc.encode('bench'));
  const before = Number(e.bytesInUse());
  const held: number[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const name = enc.encode(`topic-${i}`);
    view.write(main.scratch + 256, name);
    held[i] = e.topicAcquire(main.scratch, 5, main.scratch + 256, name.length, true);
  }
  const emptyBytes = (Number(e.bytesInUse()) - before) / count;
  const msg = main.scratch + 512;
  view.write(msg, new Uint8Array(16));
  for (let i = 0; i < count; i++) {
    const name = enc.encode(`topic-${i}`);
    view.write(main.scratch + 256, name);
    e.opPush(main.scratch, 5, main.scratch + 256, name.length, msg, 16);
  }
  const oneMessageBytes = (Number(e.bytesInUse()) - before) / count;
  console.log(`\n${count.toLocaleString()} topics (queue "bench", topic "topic-N"): ${emptyBytes.toFixed(1)} bytes per empty topic, ${oneMessageBytes.toFixed(1)} bytes per topic holding one 16 B message (target <= 128 per empty topic)`);
  for (const topic of held) e.topicRelease(topic);
}
main.stop();
