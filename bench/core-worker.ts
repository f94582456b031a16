// One benchmark thread for bench/core.bench.ts: runs a workload against the shared core
// (or against a plain JS array FIFO, the baseline) and reports push+pop pairs per second.

import { parentPort, workerData, isMainThread } from 'node:worker_threads';
import { instantiateSharedCore } from '../src/core/wasm.ts';
import { CoreThread } from '../src/core/thread.ts';

export interface Workload {
  kind: 'core' | 'js';
  payloadBytes: number;
  batch: number;        // 1 = single calls
  messages: number;
  topic: string;
}

const MESSAGES = 0x84;

/**
 * Push+pop pairs per second through the core: rounds of `depth` pushes then pops. Pops
 * append their reply frames to one writer, reset after every 64 messages popped - as a
 * session writes the replies of a whole chunk before one flush, and as the JS FIFO below
 * copies its pops into one buffer - rather than one more JS -> Wasm call per single pop.
 * Every argument is passed (an omitted one is `undefined`, a slower conversion).
 */
export function runCore(thread: CoreThread, w: Workload): number {
  const e = thread.exports;
  const view = thread.core.view;
  const enc = new TextEncoder();
  const q = thread.scratch, t = thread.scratch + 256;
  const qn = enc.encode('bench'), tn = enc.encode(w.topic);
  view.write(q, qn);
  view.write(t, tn);
  const data = e.alloc(w.batch * (w.payloadBytes + 4) + 64);
  // Records for batches: [u32 len][payload] * batch.
  const record = new Uint8Array(w.batch * (w.payloadBytes + 4));
  const dv = new DataView(record.buffer);
  for (let i = 0; i < w.batch; i++) dv.setUint32(i * (w.payloadBytes + 4), w.payloadBytes, true);
  view.write(data, record);
  const writer = e.writerNew(1 << 20);
  const depth = 1024;
  const start = performance.now();
  let done = 0;
  while (done < w.messages) {
    if (w.batch === 1) {
      for (let i = 0; i < depth; i++) e.opPush(q, qn.length, t, tn.length, data + 4, w.payloadBytes);
      for (let i = 0; i < depth; i++) {
        e.opPop(writer, MESSAGES, 1, q, qn.length, t, tn.length, 1, 1 << 20, 0, 0, 0, 0, 0);
        if ((i & 63) === 63) e.writerReset(writer);
      }
    } else {
      const rounds = depth / w.batch;
      for (let i = 0; i < rounds; i++) e.opPushRecords(q, qn.length, t, tn.length, data, record.length, w.batch);
      for (let i = 0; i < rounds; i++) {
        e.opPop(writer, MESSAGES, 1, q, qn.length, t, tn.length, w.batch, 1 << 20, 0, 0, 0, 0, 0);
        e.writerReset(writer);
      }
    }
    done += depth;
  }
  const seconds = (performance.now() - start) / 1000;
  e.writerFree(writer);
  e.free(data);
  return done / seconds;
}

/**
 * The baseline: a plain JavaScript FIFO (array + head index) of Uint8Array copies, with
 * the same work per message a broker does (copy in on push, copy out on pop).
 */
export function runJs(w: Workload): number {
  const payload = new Uint8Array(w.payloadBytes).fill(7);
  const out = new Uint8Array(1 << 20);
  let fifo: Uint8Array[] = [];
  let head = 0;
  const depth = 1024;
  const start = performance.now();
  let done = 0;
  while (done < w.messages) {
    for (let i = 0; i < depth; i++) fifo.push(payload.slice());
    let offset = 0;
    for (let i = 0; i < depth; i++) {
      const m = fifo[head++]!;
      if (offset + m.length > out.length) offset = 0;
      out.set(m, offset);
      offset += m.length;
    }
    if (head === fifo.length) { fifo = []; head = 0; }
    done += depth;
  }
  return done / ((performance.now() - start) / 1000);
}

if (!isMainThread && workerData?.benchJob) {
  const { memory, module, workload } = workerData.benchJob as { memory: WebAssembly.Memory; module: WebAssembly.Module; workload: Workload };
  let rate: number;
  if (workload.kind === 'core') {
    const thread = new CoreThread(await instantiateSharedCore(memory, module));
    rate = runCore(thread, workload);
    thread.stop();
  } else {
    rate = runJs(workload);
  }
  parentPort!.postMessage(rate);
}
