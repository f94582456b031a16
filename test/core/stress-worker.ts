// Worker side of test/core/stress.test.ts: attaches to the shared core and either
// produces (pushes numbered messages round-robin over the topics, single and batched)
// or consumes (pops batches until it has seen its share), checking FIFO per producer.
// Consumer 0 pops through topic references, consumer 1 pops leased and acks every batch
// (and alone reads every tenth topic), the others pop by name. Without `module` the worker
// loads the core as the broker's workers do (src/core/load.ts: TURBOMQ_CORE=debug selects
// the debug build).

import { parentPort, workerData } from 'node:worker_threads';
import { instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';
import {
  Op, HEADER_BYTES, RECORD_HEADER_BYTES, LEASED_RECORD_HEADER_BYTES, SETTLE_ENTRY_BYTES, SettleKind,
} from '../../src/protocol.ts';

interface Job {
  memory: WebAssembly.Memory;
  /** The compiled core; undefined: load it through sharedCoreModule(). */
  module: WebAssembly.Module | undefined;
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

/** Consumer ids with a special path (the others pop by name). */
const REFERENCE_CONSUMER = 0;
const LEASED_CONSUMER = 1;
/**
 * Every LEASED_SHARE-th topic is read by the leasing consumer only (it reads the others
 * too), so leased pops get their share however the threads are scheduled.
 */
const LEASED_SHARE = 10;
const POP_MAX = 32;

const job = workerData as Job;
const module = job.module ?? sharedCoreModule();
const core = await instantiateSharedCore(job.memory, module);
const thread = new CoreThread(core);
const e = thread.exports;
const view = core.view;
const q = thread.scratch, t = thread.scratch + 256;
const queueName = new TextEncoder().encode('stress');
view.write(q, queueName);
const topicNames: Uint8Array[] = [];
for (let i = 0; i < job.topics; i++) topicNames.push(new TextEncoder().encode(`topic-${i}`));

const result = {
  role: job.role, id: job.id, threadId: thread.id, pushed: 0, popped: 0, acked: 0, orderErrors: 0, errors: [] as string[],
  // The debug build is the one compiled with function names (asconfig.json `debug`).
  build: WebAssembly.Module.customSections(module, 'name').length > 0 ? 'debug' : 'release',
};

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
      // A batch of push records [u32 len][16 bytes] for seq, seq+topics, ... (all map to `topic`).
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
  const leased = job.id === LEASED_CONSUMER;
  const connection = thread.newToken();
  const owner = leased ? e.ownerNew(connection) : 0;
  const entries = leased ? e.alloc(POP_MAX * SETTLE_ENTRY_BYTES) : 0;
  if (leased && (owner === 0 || entries === 0)) result.errors.push('out of memory for the lease owner');
  const header = leased ? LEASED_RECORD_HEADER_BYTES : RECORD_HEADER_BYTES;
  let topic = job.id;
  let idle = 0;
  let lastProgress = -1;
  let lastProgressAt = Date.now();
  while (Atomics.load(consumed, 0) < job.total && result.errors.length === 0) {
    topic = (topic + 1) % job.topics;
    if (!leased && topic % LEASED_SHARE === 0) continue;
    view.write(t, topicNames[topic]!);
    // Consumer 0 pops through a topic reference (the path subscriptions and waiters use,
    // under the topic lock only) while the others pop by name (segment lock, topic lock
    // skipped when nobody holds a reference): the two must exclude each other. Consumer 1's
    // leases each hold a topic reference too, until acked.
    let n: number;
    if (job.id === REFERENCE_CONSUMER) {
      const ref = e.topicAcquire(q, queueName.length, t, topicNames[topic]!.length, true);
      n = ref > 1 ? e.topicPopFrame(ref, w, Op.MESSAGES, 1, POP_MAX, 1 << 20, 0, 0, 0, 0, Date.now()) : -7;
      if (ref > 1) e.topicRelease(ref);
    } else {
      n = e.opPop(w, Op.MESSAGES, 1, q, queueName.length, t, topicNames[topic]!.length, POP_MAX, 1 << 20, 0, 0, owner, leased ? 60_000 : 0, Date.now());
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
    if (view.u8(frame + 5) !== Op.MESSAGES || (view.u32(frame + 4) >>> 16) !== (leased ? 1 : 0) || view.u32(frame + HEADER_BYTES) !== n) {
      result.errors.push(`bad frame header ${view.u32(frame + 4).toString(16)}, count ${view.u32(frame + HEADER_BYTES)} for ${n}`);
    }
    // Records frame: 12-byte header, u32 count, then stored (or leased) records.
    let p = frame + HEADER_BYTES + 4;
    const batch: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      const len = view.u32(p), meta = view.u32(p + 4);
      const d = p + header;
      const producer = view.u32(d), seq = view.u32(d + 4), tp = view.u32(d + 8);
      if (len !== 16 || tp !== topic || meta !== 1) result.errors.push(`bad record len=${len} meta=${meta} topic=${tp} expected ${topic}`);
      if (leased) {
        // SETTLE entry: the lease handle (u64 after the id), ACK, 0.
        const at = entries + i * SETTLE_ENTRY_BYTES;
        view.setU32(at, view.u32(p + 16));
        view.setU32(at + 4, view.u32(p + 20));
        view.setU32(at + 8, SettleKind.ACK);
        view.setU32(at + 12, 0);
      }
      batch.push([producer, seq]);
      p += header + len;
    }
    if (p !== frame + e.writerLength(w)) result.errors.push('records do not fill the frame');
    e.writerReset(w);
    if (leased) {
      // Ack the batch: every status in SETTLED must be 0.
      if (e.opSettle(w, 2, entries, n, connection, Date.now()) !== 1) result.errors.push('settle: out of memory');
      const reply = e.writerData(w);
      const statuses = view.copy(reply + HEADER_BYTES + 4, view.u32(reply + HEADER_BYTES));
      if (view.u8(reply + 5) !== Op.SETTLED || statuses.length !== n || statuses.some((s) => s !== 0)) result.errors.push(`settle statuses ${[...statuses]}`);
      result.acked += n;
      e.writerReset(w);
    }
    // Counted once consumed for good (after the ack for leased pops).
    for (const [producer, seq] of batch) {
      const key = producer * job.topics + topic;
      if (seq <= lastSeq[key]!) result.orderErrors++;
      lastSeq[key] = seq;
      Atomics.add(seen, producer * job.messagesPerProducer + seq, 1);
    }
    result.popped += n;
    Atomics.add(consumed, 0, n);
  }
  if (leased) {
    if (e.leaseCount() !== 0 || e.ownerCount(owner) !== 0) result.errors.push(`leases left: ${e.leaseCount()}`);
    else e.ownerFree(owner);
    e.free(entries);
  }
  e.writerFree(w);
}

thread.stop();
parentPort!.postMessage(result);
