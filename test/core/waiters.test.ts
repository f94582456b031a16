// assembly/waiters.ts: hand-over, cancel races and returns, driven directly on the core.

import t from 'tap';
import { newSharedMemory, instantiateSharedCore } from '../../src/core/wasm.ts';
import { sharedCoreModule } from '../../src/core/load.ts';
import { CoreThread } from '../../src/core/thread.ts';
import { RECORD_HEADER_BYTES } from '../../src/protocol.ts';

const MESSAGES = 0x84;
const enc = new TextEncoder();
const dec = new TextDecoder();

async function setup() {
  const memory = newSharedMemory(64);
  const th = new CoreThread(await instantiateSharedCore(memory, sharedCoreModule()));
  const e = th.exports, v = th.core.view;
  v.write(th.scratch, enc.encode('q'));
  v.write(th.scratch + 256, enc.encode('t'));
  const w = e.writerNew(4096);
  const push = (text: string) => {
    const b = enc.encode(text);
    v.write(th.scratch + 512, b);
    return e.opPush(th.scratch, 1, th.scratch + 256, 1, th.scratch + 512, b.length);
  };
  const park = (token: number) => {
    const n = e.opPop(w, MESSAGES, 1, th.scratch, 1, th.scratch + 256, 1, 1, 1 << 20, 0, token);
    e.writerReset(w);
    return n === 0 ? e.lastWaiter() : -1;
  };
  /** Pops everything left, as strings. */
  const drainTopic = () => {
    const out: string[] = [];
    for (;;) {
      const n = e.opPop(w, MESSAGES, 1, th.scratch, 1, th.scratch + 256, 1, 1, 1 << 20, 0, 0);
      if (n <= 0) break;
      const p = e.writerData(w) + 16;
      out.push(dec.decode(v.copy(p + RECORD_HEADER_BYTES, v.u32(p))));
      e.writerReset(w);
    }
    return out;
  };
  /** The message a handed waiter carries. */
  const carried = (waiter: number) => {
    e.waiterDeliverFrame(waiter, w, MESSAGES, 1, 0, 1 << 20, 0);
    const p = e.writerData(w) + 16;
    const text = dec.decode(v.copy(p + RECORD_HEADER_BYTES, v.u32(p)));
    e.writerReset(w);
    return text;
  };
  return { th, e, push, park, drainTopic, carried, baseline: e.bytesInUse(), w };
}

t.test('a push hands its message to the oldest parked waiter instead of storing it', async (t) => {
  const { th, e, push, park } = await setup();
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
  th.stop();
});

t.test('a cancel that loses the race to a push fails, and the message arrives by mailbox', async (t) => {
  const { th, e, push, park, carried } = await setup();
  const w1 = park(7);
  push('raced');
  t.equal(e.waiterCancel(w1), 0, 'cancel fails: already handed');
  const arrived = e.mailboxTake();
  t.equal(arrived, w1);
  t.equal(carried(arrived), 'raced', 'the message is delivered, not lost');
  e.waiterRelease(arrived);
  th.stop();
});

t.test('a dead waiter returns its message to the next parked waiter', async (t) => {
  const { th, e, push, park, carried } = await setup();
  const dead = park(1);
  const live = park(2);
  push('precious');
  t.equal(e.mailboxTake(), dead);
  t.equal(e.waiterReturn(dead), 0, 'returned');
  const next = e.mailboxTake();
  t.equal(next, live, 'the live waiter gets it');
  t.equal(carried(next), 'precious');
  e.waiterRelease(next);
  th.stop();
});

t.test('with nobody waiting, a returned message goes back to the front of the topic', async (t) => {
  const { th, e, push, park, drainTopic, baseline } = await setup();
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
  th.stop();
});

t.test('exclusive consumers: attach excludes others; detach releases', async (t) => {
  const { th, e, push, park } = await setup();
  const topic = e.topicAcquire(th.scratch, 1, th.scratch + 256, 1, true);
  t.equal(e.consumerAttach(topic, 55, true), 0, 'exclusive attach');
  t.equal(e.consumerAttach(topic, 56, false), -4, 'a second consumer: ERR_EXCLUSIVE');
  t.equal(park(9), -1, 'a plain pop cannot park: ERR_EXCLUSIVE');
  push('x');
  e.consumerDetach(topic, 55);
  t.equal(e.consumerAttach(topic, 57, false), 0, 'released');
  t.equal(e.consumerAttach(topic, 58, true), -4, 'exclusive needs no other consumer');
  e.consumerDetach(topic, 57);
  e.topicRelease(topic);
  th.stop();
});
