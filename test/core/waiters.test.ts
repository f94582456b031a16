// assembly/waiters.ts: hand-over, cancel races and returns, driven directly on the core;
// and the same hand-over for leased pops (assembly/topic.ts waiterDeliverLeased), whose
// messages stay in flight until settled.

import t from 'tap';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';
import {
  Op, FLAGS, HEADER_BYTES, RECORD_HEADER_BYTES, LEASED_RECORD_HEADER_BYTES, SettleKind, ErrorCode,
} from '../../src/protocol.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One record of a MESSAGES frame as the core wrote it. */
interface Popped { text: string; deliveries: number; flags: number; id: bigint; lease: bigint }

async function setup() {
  const memory = newSharedMemory(64);
  const th = new CoreThread(await instantiateSharedCore(memory, sharedCoreModule()));
  const e = th.exports, v = th.core.view;
  const q = th.scratch, tp = th.scratch + 256, data = th.scratch + 512;
  v.write(q, enc.encode('q'));
  v.write(tp, enc.encode('t'));
  const w = e.writerNew(4096);
  const owner = e.ownerNew(1234);
  const push = (text: string) => {
    const b = enc.encode(text);
    v.write(data, b);
    return e.opPush(q, 1, tp, 1, data, b.length);
  };
  /** The records of the frame in `w` (then reset): checks the header and count first. */
  const takeFrame = (op: number, reqId: number): Popped[] => {
    const f = e.writerData(w);
    const flags = v.u32(f + 4) >>> 16;
    if (v.u32(f) !== e.writerLength(w) - 4 || v.u8(f + 5) !== op || v.u32(f + 8) !== reqId) throw new Error('bad frame header');
    const leased = (flags & FLAGS.LEASED) !== 0;
    const header = leased ? LEASED_RECORD_HEADER_BYTES : RECORD_HEADER_BYTES;
    const out: Popped[] = [];
    let p = f + HEADER_BYTES + 4;
    for (let i = 0; i < v.u32(f + HEADER_BYTES); i++) {
      const len = v.u32(p), meta = v.u32(p + 4);
      const id = BigInt(v.u32(p + 8)) | (BigInt(v.u32(p + 12)) << 32n);
      const lease = leased ? BigInt(v.u32(p + 16)) | (BigInt(v.u32(p + 20)) << 32n) : 0n;
      out.push({ text: dec.decode(v.copy(p + header, len)), deliveries: meta & 0xFFFFFF, flags: meta >>> 24, id, lease });
      p += header + len;
    }
    if (p !== f + e.writerLength(w)) throw new Error('records do not fill the frame');
    e.writerReset(w);
    return out;
  };
  /** Parks a pop (leased when `leased`) on the empty topic; returns its waiter, -1 if it did not park. */
  const park = (token: number, leased = false) => {
    const n = e.opPop(w, Op.MESSAGES, 1, q, 1, tp, 1, 1, 1 << 20, 0, token, leased ? owner : 0, 0, Date.now());
    e.writerReset(w);
    return n === 0 ? e.lastWaiter() : -1;
  };
  /** Pops everything left, as strings (checking each was delivered once more than before). */
  const drainTopic = () => {
    const out: string[] = [];
    for (;;) {
      const n = e.opPop(w, Op.MESSAGES, 1, q, 1, tp, 1, 1, 1 << 20, 0, 0, 0, 0, Date.now());
      if (n <= 0) break;
      out.push(...takeFrame(Op.MESSAGES, 1).map((r) => r.text));
    }
    return out;
  };
  /** The records a handed waiter carries (leased through `owner` when `leased`). */
  const carried = (waiter: number, leased = false, moreMax = 0) => {
    const n = e.waiterDeliverFrame(waiter, w, Op.MESSAGES, 1, moreMax, 1 << 20, 0, leased ? owner : 0, 0, Date.now());
    if (n < 1) throw new Error(`waiterDeliverFrame: ${n}`);
    return takeFrame(Op.MESSAGES, 1);
  };
  /** Settles leases (kind per lease); returns the SETTLED statuses. */
  const settle = (leases: bigint[], kind: number, arg = 0) => {
    const entries = e.alloc(leases.length * 16);
    leases.forEach((lease, i) => {
      v.setU32(entries + i * 16, Number(lease & 0xFFFFFFFFn));
      v.setU32(entries + i * 16 + 4, Number(lease >> 32n));
      v.setU32(entries + i * 16 + 8, kind);
      v.setU32(entries + i * 16 + 12, arg);
    });
    const ok = e.opSettle(w, 9, entries, leases.length, 1234, Date.now());
    e.free(entries);
    if (ok !== 1) throw new Error('opSettle: out of memory');
    const f = e.writerData(w);
    if (v.u8(f + 5) !== Op.SETTLED) throw new Error('not SETTLED');
    const statuses = [...v.copy(f + HEADER_BYTES + 4, v.u32(f + HEADER_BYTES))];
    e.writerReset(w);
    return statuses;
  };
  const stats = () => {
    e.opStats(q, 1, tp, 1, data);
    return { ready: v.u32(data), delayed: v.u32(data + 4), inFlight: v.u32(data + 8) };
  };
  const stop = () => {
    e.ownerFree(owner);
    e.writerFree(w);
    th.stop();
  };
  return { th, e, push, park, drainTopic, carried, settle, stats, takeFrame, stop, owner, baseline: e.bytesInUse(), w };
}

t.test('a push hands its message to the oldest parked waiter instead of storing it', async (t) => {
  const { th, e, push, park, stop } = await setup();
  const w1 = park(101), w2 = park(102);
  t.ok(w1 > 0 && w2 > 0, 'two waiters parked');
  t.equal(push('m1'), 0);
  const first = e.mailboxTake();
  t.equal(first, w1, 'the oldest waiter is handed the message');
  t.equal(e.waiterToken(first), 101);
  t.equal(e.waiterNext(first), 0, 'only one hand-over for one push');
  t.equal(e.opLength(th.scratch, 1, th.scratch + 256, 1), 0, 'the message was not also stored');
  e.waiterRelease(first);
  t.equal(e.waiterCancel(w2), 1, 'the other waiter is still parked and can be cancelled');
  stop();
});

t.test('a cancel that loses the race to a push fails, and the message arrives by mailbox', async (t) => {
  const { e, push, park, carried, stop } = await setup();
  const w1 = park(7);
  push('raced');
  t.equal(e.waiterCancel(w1), 0, 'cancel fails: already handed');
  const arrived = e.mailboxTake();
  t.equal(arrived, w1);
  t.strictSame(carried(arrived), [{ text: 'raced', deliveries: 1, flags: 0, id: 0n, lease: 0n }], 'the message is delivered (its first delivery, id 0), not lost');
  e.waiterRelease(arrived);
  stop();
});

t.test('a dead waiter returns its message to the next parked waiter', async (t) => {
  const { e, push, park, carried, stop } = await setup();
  const dead = park(1);
  const live = park(2);
  push('precious');
  t.equal(e.mailboxTake(), dead);
  t.equal(e.waiterReturn(dead), 0, 'returned');
  const next = e.mailboxTake();
  t.equal(next, live, 'the live waiter gets it');
  t.strictSame(carried(next).map((r) => [r.text, r.deliveries]), [['precious', 1]], 'a hand-over that was never delivered is no delivery');
  e.waiterRelease(next);
  stop();
});

t.test('with nobody waiting, a returned message goes back to the front of the topic', async (t) => {
  const { e, push, park, drainTopic, baseline, stop } = await setup();
  const dead = park(1);
  push('first');
  push('second');
  push('third');
  t.equal(e.mailboxTake(), dead);
  e.waiterReturn(dead);
  t.same(drainTopic(), ['first', 'second', 'third'], 'order kept: the returned message is oldest');
  t.equal(e.topicCount(), 0, 'the drained topic is gone');
  t.equal(e.queueBytes(), 0n, 'no message storage left');
  t.equal(e.bytesInUse(), baseline, 'no leak');
  stop();
});

t.test('popped records carry their id (push order) and their delivery count', async (t) => {
  const { e, push, takeFrame, stop, w, th } = await setup();
  for (const text of ['a', 'b', 'c']) push(text);
  t.equal(e.opPop(w, Op.MESSAGES, 4, th.scratch, 1, th.scratch + 256, 1, 10, 1 << 20, 0, 0, 0, 0, Date.now()), 3);
  t.strictSame(takeFrame(Op.MESSAGES, 4), [
    { text: 'a', deliveries: 1, flags: 0, id: 0n, lease: 0n },
    { text: 'b', deliveries: 1, flags: 0, id: 1n, lease: 0n },
    { text: 'c', deliveries: 1, flags: 0, id: 2n, lease: 0n },
  ]);
  stop();
});

t.test('exclusive consumers: attach excludes others; detach releases', async (t) => {
  const { th, e, push, park, stop } = await setup();
  const topic = e.topicAcquire(th.scratch, 1, th.scratch + 256, 1, true);
  t.equal(e.consumerAttach(topic, 55, true), 0, 'exclusive attach');
  t.equal(e.consumerAttach(topic, 56, false), -ErrorCode.ERR_EXCLUSIVE, 'a second consumer: ERR_EXCLUSIVE');
  t.equal(park(9), -1, 'a plain pop cannot park: ERR_EXCLUSIVE');
  t.equal(park(10, true), -1, 'nor a leased one');
  push('x');
  e.consumerDetach(topic, 55);
  t.equal(e.consumerAttach(topic, 57, false), 0, 'released');
  t.equal(e.consumerAttach(topic, 58, true), -ErrorCode.ERR_EXCLUSIVE, 'exclusive needs no other consumer');
  e.consumerDetach(topic, 57);
  e.topicRelease(topic);
  stop();
});

// ── Leased pops ───────────────────────────────────────────────────────────────────────

t.test('a parked leased pop is handed a push: a leased record, in flight until acked', async (t) => {
  const { e, push, park, carried, settle, stats, owner, stop } = await setup();
  const waiter = park(21, true);
  t.ok(waiter > 0, 'parked');
  push('leased');
  t.equal(e.mailboxTake(), waiter);
  const [record, ...rest] = carried(waiter, true);
  e.waiterRelease(waiter);
  t.same(rest, []);
  t.strictSame([record!.text, record!.deliveries, record!.flags, record!.id], ['leased', 1, 0, 0n]);
  t.not(record!.lease, 0n, 'it carries a lease handle');
  t.strictSame(stats(), { ready: 0, delayed: 0, inFlight: 1 }, 'in flight, not ready');
  t.equal(e.ownerCount(owner), 1);
  t.equal(e.leaseCount(), 1);
  t.strictSame(settle([record!.lease], SettleKind.ACK), [0], 'acked');
  t.strictSame(settle([record!.lease], SettleKind.ACK), [ErrorCode.ERR_LEASE_EXPIRED], 'a second ack: the lease has ended');
  t.strictSame(stats(), { ready: 0, delayed: 0, inFlight: 0 });
  t.equal(e.leaseCount(), 0);
  t.equal(e.topicCount(), 0, 'the topic went with its last lease');
  t.equal(e.queueBytes(), 0n, 'no message storage left');
  stop();
});

t.test('a handed leased waiter also leases more messages from its topic, in order', async (t) => {
  const { e, push, park, carried, settle, stats, stop } = await setup();
  const waiter = park(22, true);
  push('first');
  push('second');
  push('third');
  t.equal(e.mailboxTake(), waiter);
  const records = carried(waiter, true, 5);
  e.waiterRelease(waiter);
  t.strictSame(records.map((r) => [r.text, r.deliveries, r.id]), [['first', 1, 0n], ['second', 1, 1n], ['third', 1, 2n]]);
  t.equal(new Set(records.map((r) => r.lease)).size, 3, 'three distinct leases');
  t.strictSame(stats(), { ready: 0, delayed: 0, inFlight: 3 });
  t.strictSame(settle(records.map((r) => r.lease), SettleKind.ACK), [0, 0, 0]);
  t.equal(e.topicCount(), 0);
  stop();
});

t.test('a handed leased waiter nobody claims returns its message unleased, to the front', async (t) => {
  const { e, push, park, drainTopic, stats, stop } = await setup();
  const dead = park(23, true);
  push('first');
  push('second');
  t.equal(e.mailboxTake(), dead);
  t.equal(e.waiterReturn(dead), 0);
  t.strictSame(stats(), { ready: 2, delayed: 0, inFlight: 0 }, 'nothing in flight: the hand-over was never delivered');
  t.same(drainTopic(), ['first', 'second']);
  t.equal(e.leaseCount(), 0);
  stop();
});

t.test('ending an owner puts its leased messages back at the front, in order, as redeliveries', async (t) => {
  const { e, push, settle, stats, takeFrame, owner, stop, w, th } = await setup();
  for (const text of ['a', 'b', 'c', 'd']) push(text);
  t.equal(e.opPop(w, Op.MESSAGES, 5, th.scratch, 1, th.scratch + 256, 1, 3, 1 << 20, 0, 0, owner, 60_000, Date.now()), 3);
  const leased = takeFrame(Op.MESSAGES, 5);
  t.strictSame(leased.map((r) => [r.text, r.deliveries]), [['a', 1], ['b', 1], ['c', 1]]);
  t.strictSame(stats(), { ready: 1, delayed: 0, inFlight: 3 });
  t.equal(e.ownerEnd(owner, Date.now()), 3);
  t.strictSame(stats(), { ready: 4, delayed: 0, inFlight: 0 });
  t.strictSame(settle([leased[0]!.lease], SettleKind.ACK), [ErrorCode.ERR_LEASE_EXPIRED], 'an ended lease cannot be acked');
  t.equal(e.opPop(w, Op.MESSAGES, 6, th.scratch, 1, th.scratch + 256, 1, 10, 1 << 20, 0, 0, 0, 0, Date.now()), 4);
  t.strictSame(takeFrame(Op.MESSAGES, 6).map((r) => [r.text, r.deliveries, r.id]), [['a', 2, 0n], ['b', 2, 1n], ['c', 2, 2n], ['d', 1, 3n]], 'same ids, one more delivery each');
  t.equal(e.topicCount(), 0);
  stop();
});
