// CREDIT (docs/protocol.md): it gets no reply, ever. For a live plain subscription it lets the
// broker send more; for a subscription the connection does not have - ended by an UNSUBSCRIBE
// that the CREDIT crossed on the wire, or never opened - it is ignored, with no ERROR (there is
// no request left to answer) and the connection usable.

import t from 'tap';
import { Op } from '../../src/protocol.ts';
import { startEngine, connect } from '../helpers.ts';
import { rawConnect, frame, hello, auth, ping } from '../support/raw-socket.ts';
import { u32 } from '../support/raw.ts';

const subscribe = (id: number, queue: string, topic: string, prefetch: number) =>
  frame(Op.SUBSCRIBE, id, Buffer.from([queue.length, ...Buffer.from(queue), topic.length, ...Buffer.from(topic), ...u32(prefetch), ...u32(0)]));
const credit = (id: number, subscriptionId: number, n: number) => frame(Op.CREDIT, id, Buffer.from([...u32(subscriptionId), ...u32(n)]));
const unsubscribe = (id: number, subscriptionId: number) => frame(Op.UNSUBSCRIBE, id, Buffer.from(u32(subscriptionId)));

t.test('CREDIT lets a live subscription receive more; for an ended or unknown one it is ignored without an ERROR', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  const producer = (await connect(t, engine.url)).getQueue('cr');
  await producer.pushMany('t', ['a', 'b', 'c']);
  const c = await rawConnect(t, engine.url);
  c.socket.write(Buffer.concat([hello(1), auth(2, ''), subscribe(5, 'cr', 't', 1)]));
  t.equal((await c.next()).op, Op.HELLO_OK);
  t.equal((await c.next()).op, Op.OK);
  t.equal((await c.next()).op, Op.OK, 'subscribed');
  t.same(await c.next(), { op: Op.DELIVER, requestId: 5, code: 0, text: '' }, 'one message: prefetch 1');
  c.socket.write(ping(6));
  t.equal((await c.next()).op, Op.PONG, 'no second message without credit');
  c.socket.write(credit(7, 5, 1));
  t.same((await c.next()).op, Op.DELIVER, 'CREDIT 1: the next message');
  // A CREDIT right behind the UNSUBSCRIBE it raced with, and one for an id never used.
  c.socket.write(Buffer.concat([unsubscribe(8, 5), credit(9, 5, 10), credit(10, 12345, 1), ping(11)]));
  t.same((await c.next()).op, Op.OK, 'unsubscribed');
  const next = await c.next();
  t.same({ op: next.op, requestId: next.requestId }, { op: Op.PONG, requestId: 11 }, 'the CREDITs got no reply: the next frame is the PONG');
  t.notOk(await c.closed(100), 'the connection stays open');
  t.equal(await producer.length('t'), 1, 'the ignored credit delivered nothing: "c" is still in the topic');
});
