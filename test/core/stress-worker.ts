// Worker side of test/core/stress.test.ts: attaches to the shared core and either
// produces (pushes numbered messages round-robin over the topics, single and batched)
// or consumes (pops batches until it has seen its share), checking FIFO per producer.

import { parentPort, workerData } from 'node:worker_threads';
import { instantiateSharedCore } from '../../src/core/wasm.ts';
import { CoreThread } from '../../src/core/thread.ts';
import { RECORD_HEADER_BYTES } from '../../src/protocol.ts';

interface Job {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  role: 'producer' | 'consumer';
  id: number;
  producers: number;
  messagesPerProducer: number;
  topics: number;
  batch: number;
  /** SharedArrayBuffer of u8 counts, one per (producer, seq). */
  seen: SharedArrayBuffer;
  /** Int32Array[0]: messages consumed so far by all consumers. */
  consumed: SharedArrayBuffer;
  total: number;
}

const job = workerData as Job;
const core = await instantiateSharedCore(job.memory, job.module);
const thread = new CoreThread(core);
const e = thread.exports;
const view = core.view;
const q = thread.scratch, t = thread.scratch + 256;
const queueName = new TextEncoder().encode('stress');
view.write(q, queueName);
const topicNames: Uint8Array[] = [];
for (let i = 0; i < job.topics; i++) topicNames.push(new TextEncoder().encode(`topic-${i}`));

const MESSAGES = 0x84;
const result = { role: job.role, id: job.id, pushed: 0, popped: 0, orderErrors: 0, errors: [] as string[] };

if (job.role === 'producer') {
  const payload = new Uint8Array(16);
  const dv = new DataView(payload.buffer);
  const data = e.alloc(64 * 1024);
  const records = new DataView(new ArrayBuffer(64 * 1024));
  let seq = 0;
  const skip = new Set<number>();
  while (seq < job.messagesPerProducer) {
    const topic = seq % job.topics;
    view.write(t, topicNames[topic]!);
    // Alternate single pushes and batches of consecutive seqs to one topic.
    if ((seq / job.topics) % 2 < 1 || job.batch <= 1) {
      dv.setUint32(0, job.id, true);
      dv.setUint32(4, seq, true);
      dv.setUint32(8, topic, true);
      view.write(data, payload);
      const status = e.opPush(q, queueName.length, t, topicNames[topic]!.length, data, 16);
      if (status !== 0) result.errors.push(`push status ${status}`);
      seq++;
      result.pushed++;
    } else {
      // A batch: records [u32 len][16 bytes] for seq, seq+topics, ... (all map to `topic`).
      let bytes = 0, count = 0;
      for (let k = 0; k < job.batch && seq + k * job.topics < job.messagesPerProducer; k++) {
        records.setUint32(bytes, 16, true);
        records.setUint32(bytes + 4, job.id, true);
        records.setUint32(bytes + 8, seq + k * job.topics, true);
        records.setUint32(bytes + 12, topic, true);
        bytes += 20;
        count++;
      }
      view.write(data, new Uint8Array(records.buffer, 0, bytes));
      const status = e.opPushRecords(q, queueName.length, t, topicNames[topic]!.length, data, bytes, count);
      if (status !== 0) result.errors.push(`pushMany status ${status}`);
      result.pushed += count;
      // The seqs in the batch are taken; single pushes fill the rest of this round.
      for (let k = 1; k < count; k++) skip.add(seq + k * job.topics);
      seq++;
      while (skip.has(seq)) { skip.delete(seq); seq++; }
    }
  }
  e.free(data);
} else {
  const seen = new Uint8Array(job.seen);
  const consumed = new Int32Array(job.consumed);
  const lastSeq = new Int32Array(job.producers * job.topics).fill(-1);
  const w = e.writerNew(64 * 1024);
  let topic = job.id;
  let idle = 0;
  let lastProgress = -1;
  let lastProgressAt = Date.now();
  while (Atomics.load(consumed, 0) < job.total) {
    topic = (topic + 1) % job.topics;
    view.write(t, topicNames[topic]!);
    // Consumer 0 pops through a topic reference (the path subscriptions and waiters use,
    // under the topic lock only) while the others pop by name (segment lock, topic lock
    // skipped when nobody holds a reference): the two must exclude each other.
    let n: number;
    if (job.id === 0) {
      const ref = e.topicAcquire(q, queueName.length, t, topicNames[topic]!.length, true);
      n = ref > 1 ? e.topicPopFrame(ref, w, MESSAGES, 1, 32, 1 << 20, 0, 0) : -7;
      if (ref > 1) e.topicRelease(ref);
    } else {
      n = e.opPop(w, MESSAGES, 1, q, queueName.length, t, topicNames[topic]!.length, 32, 1 << 20, 0, 0);
    }
    if (n < 0) { result.errors.push(`pop status ${n}`); break; }
    if (n === 0) {
      // Nothing here right now (producers may be descheduled on a busy machine): give up
      // only after 30 s without any progress anywhere.
      if ((++idle & 1023) === 0) {
        const progress = Atomics.load(consumed, 0);
        if (progress !== lastProgress) { lastProgress = progress; lastProgressAt = Date.now(); }
        else if (Date.now() - lastProgressAt > 30_000) { result.errors.push(`no progress for 30 s at ${progress} of ${job.total}`); break; }
      }
      continue;
    }
    idle = 0;
    const frame = e.writerData(w);
    // Records frame: 12-byte header, u32 count, then stored records (16-byte header: len, meta, id; then the data).
    let p = frame + 16;
    for (let i = 0; i < n; i++) {
      const len = view.u32(p);
      const producer = view.u32(p + RECORD_HEADER_BYTES), seq = view.u32(p + RECORD_HEADER_BYTES + 4), tp = view.u32(p + RECORD_HEADER_BYTES + 8);
      if (len !== 16 || tp !== topic) result.errors.push(`bad record len=${len} topic=${tp} expected ${topic}`);
      const key = producer * job.topics + topic;
      if (seq <= lastSeq[key]!) result.orderErrors++;
      lastSeq[key] = seq;
      Atomics.add(seen, producer * job.messagesPerProducer + seq, 1);
      p += RECORD_HEADER_BYTES + len;
    }
    e.writerReset(w);
    result.popped += n;
    Atomics.add(consumed, 0, n);
  }
  e.writerFree(w);
}

thread.stop();
parentPort!.postMessage(result);
