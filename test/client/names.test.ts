// Queue and topic names must be well-formed UTF-8: the broker refuses other bytes with
// ERR_INVALID_ARGUMENT (assembly/utf8.ts, called from the codec) and the connection stays
// usable; the client refuses strings with lone surrogates before anything is sent (TextEncoder
// would turn them into U+FFFD: another name than the one asked for).

import t from 'tap';
import { ErrorCode, Op } from '../../src/protocol.ts';
import { startEngine, connect } from '../helpers.ts';
import { rawConnect, frame, hello, auth, ping, push } from '../support/raw-socket.ts';

const named = (queue: number[], topic: number[], rest: number[] = []) => Buffer.from([queue.length, ...queue, topic.length, ...topic, ...rest]);

t.test('the broker refuses names that are not UTF-8 with ERR_INVALID_ARGUMENT; the connection stays usable', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  const c = await rawConnect(t, engine.url);
  c.socket.write(Buffer.concat([hello(1), auth(2, '')]));
  t.equal((await c.next()).op, Op.HELLO_OK);
  t.equal((await c.next()).op, Op.OK);
  const q = [...Buffer.from('q')];
  const bad: [string, Buffer][] = [
    ['a 0xFF byte in the queue name', frame(Op.PUSH, 10, named([0xFF], [...Buffer.from('t')], [0x61]))],
    ['an encoded lone surrogate in the topic name', frame(Op.PUSH, 11, named(q, [0x61, 0xED, 0xB0, 0x80], [0x61]))],
    ['an overlong encoding', frame(Op.LENGTH, 12, named(q, [0xC1, 0x81]))],
    ['a name cut inside a character', frame(Op.POP, 13, named(q, [0xF0, 0x9F, 0x98], [0, 0, 0, 0]))],
  ];
  for (const [what, bytes] of bad) {
    c.socket.write(bytes);
    const reply = await c.next();
    t.same({ op: reply.op, code: reply.code }, { op: Op.ERROR, code: ErrorCode.ERR_INVALID_ARGUMENT }, what);
  }
  c.socket.write(Buffer.concat([push(20, 'q', 'ünï€😀', 'fine'), ping(21)]));
  t.same((await c.next()).op, Op.OK, 'a well-formed multibyte name is stored');
  t.same((await c.next()).op, Op.PONG, 'and the connection still answers');
  t.notOk(await c.closed(50), 'not closed');
  const client = await connect(t, engine.url);
  t.equal((await client.getQueue('q').pop('ünï€😀', 0))?.content, 'fine', 'and reads back by the same name');
});

t.test('the client refuses names with lone surrogates before sending (ERR_INVALID_ARGUMENT)', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  const client = await connect(t, engine.url);
  t.throws(() => client.getQueue('bad\uD800'), { code: 'ERR_INVALID_ARGUMENT', message: /surrogate/ });
  const q = client.getQueue('q');
  await t.rejects(q.push('t\uDC00', 'x'), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.pop('\uD83D', 0), { code: 'ERR_INVALID_ARGUMENT' }, 'a high surrogate without its low half');
  await t.rejects(q.length('\uDE00\uD83D'), { code: 'ERR_INVALID_ARGUMENT' }, 'halves in the wrong order');
  t.throws(() => q.subscribe('x\uD800y'), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.configure({ deadLetterTopic: '\uDFFF' }), { code: 'ERR_INVALID_ARGUMENT' });
  await q.push('😀', 'pair'); // a surrogate pair is one character: fine
  t.equal(await q.length('😀'), 1);
  t.equal((await client.serverStats()).messages.pushed, 1, 'nothing else reached the broker');
});
