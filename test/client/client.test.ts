// TurboClient and Queue against a real broker: every API point of the contract.

import t from 'tap';
import net from 'node:net';
import { TurboClient, TurboError } from '../../src/index.ts';
import { TurboEngine } from '../../src/index.ts';
import { startEngine, connect, delay, within, checkBinaryRoundTrip } from '../helpers.ts';
import { pushFrame as rawPushFrame, OK_REPLY_PREFIX } from '../support/raw.ts';
import { PROTOCOL_VERSION } from '../../src/protocol.ts';

// One broker for the tests that need no special options (each uses its own queue or topic
// names); tests with other limits start their own.
let shared: Promise<TurboEngine> | undefined;
function sharedEngine(): Promise<TurboEngine> {
  shared ??= (async () => {
    const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2 });
    await engine.run();
    return engine;
  })();
  return shared;
}
t.teardown(async () => { if (shared) await (await shared).destroy(); });

t.test('push then pop returns the message with queue, topic, data and content', async (t) => {
  const engine = await sharedEngine();
  const client = await connect(t, engine.url);
  const q = client.getQueue('jobs');
  await q.push('hello', 'turbo');
  const m = await q.pop('hello', 1000);
  t.ok(m);
  t.equal(m!.queue, 'jobs');
  t.equal(m!.topic, 'hello');
  t.equal(m!.content, 'turbo');
  t.same([...m!.data], [...new TextEncoder().encode('turbo')]);
  // On Node a message's data over a socket is a Buffer view (toString() is its text), as it has always been.
  t.ok(Buffer.isBuffer(m!.data), 'data is a Buffer on Node');
  t.equal(m!.data.toString(), 'turbo');
});

t.test('engine.url resolves port 0 to the real port', async (t) => {
  const engine = await sharedEngine();
  t.match(engine.url, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  t.not(engine.url, 'tcp://127.0.0.1:0');
});

t.test('pop with timeout 0 returns null at once on an empty topic', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('q');
  const started = performance.now();
  t.equal(await q.pop('empty', 0), null);
  t.ok(performance.now() - started < 200, 'answered at once');
});

t.test('pop with a short timeout resolves null after about that long', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('q');
  const started = performance.now();
  t.equal(await q.pop('empty', 150), null);
  const elapsed = performance.now() - started;
  t.ok(elapsed >= 140 && elapsed < 1500, `waited ${elapsed.toFixed(0)} ms`);
});

t.test('pop with no timeout waits until a message arrives', async (t) => {
  const engine = await sharedEngine();
  const client = await connect(t, engine.url);
  const q = client.getQueue('q');
  const popped = q.pop('later');
  await delay(100);
  await q.push('later', 'now');
  t.equal((await within(popped, 2000, 'pop'))!.content, 'now');
});

t.test('pop with Infinity waits like no timeout', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('q');
  const popped = q.pop('x', Infinity);
  await q.push('x', 'y');
  t.equal((await within(popped, 2000))!.content, 'y');
});

t.test('negative or NaN timeouts reject with ERR_INVALID_ARGUMENT', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('q');
  await t.rejects(q.pop('x', -1), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.pop('x', NaN), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.popMany('x', 5, -5), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.popMany('x', 0, 0), { code: 'ERR_INVALID_ARGUMENT' });
  t.equal(await q.pop('x', 0), null, 'the connection is still usable');
});

t.test('an aborted signal rejects with ERR_ABORTED and takes the waiter away', async (t) => {
  const engine = await sharedEngine();
  const client = await connect(t, engine.url);
  const q = client.getQueue('q');
  const controller = new AbortController();
  const popped = q.pop('abort', { signal: controller.signal });
  await delay(50);
  controller.abort();
  await t.rejects(within(popped, 2000), { code: 'ERR_ABORTED' });
  await q.push('abort', 'kept');
  t.equal((await q.pop('abort', 1000))!.content, 'kept', 'the next message is not swallowed by the aborted waiter');
  const pre = new AbortController();
  pre.abort();
  await t.rejects(q.pop('abort', { signal: pre.signal }), { code: 'ERR_ABORTED' }, 'an already aborted signal rejects at once');
});

t.test('pushMany stores all in order; popMany returns up to max in order', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('q');
  await q.pushMany('batch', ['a', 'b', 'c', 'd', 'e']);
  t.equal(await q.length('batch'), 5);
  const first = await q.popMany('batch', 3, 0);
  t.same(first.map((m) => m.content), ['a', 'b', 'c']);
  const rest = await q.popMany('batch', 10, 0);
  t.same(rest.map((m) => m.content), ['d', 'e']);
  t.same(await q.popMany('batch', 10, 0), [], 'empty array when nothing is there');
  t.same(await q.popMany('batch', 10, 100), [], 'empty array on timeout');
});

t.test('popMany waits for the first message, then takes what is available', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('q');
  const popped = q.popMany('pm', 10);
  await delay(50);
  await q.pushMany('pm', ['1', '2', '3']);
  const got = await within(popped, 2000);
  t.ok(got.length >= 1 && got.length <= 3);
  t.equal(got[0]!.content, '1');
  const rest = await q.popMany('pm', 10, 0);
  t.same([...got, ...rest].map((m) => m.content), ['1', '2', '3']);
});

t.test('binary payloads: empty, every byte value, and 1 MiB round trip exactly', async (t) => {
  const engine = await sharedEngine();
  await checkBinaryRoundTrip(t, (await connect(t, engine.url)).getQueue('bin'));
});

t.test('limits: messages over maxMessageBytes and names over 255 bytes are rejected, the connection stays usable', async (t) => {
  const engine = await startEngine(t, { maxMessageBytes: 1000 });
  const client = await connect(t, engine.url);
  const q = client.getQueue('q');
  await t.rejects(q.push('t', new Uint8Array(1001)), { code: 'ERR_MESSAGE_TOO_LARGE' });
  await t.rejects(q.pushMany('t', ['ok', new Uint8Array(1001)]), { code: 'ERR_MESSAGE_TOO_LARGE' });
  await t.rejects(q.push('x'.repeat(256), 'data'), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.push('', 'data'), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => client.getQueue('é'.repeat(128)), { code: 'ERR_INVALID_ARGUMENT' });
  await q.push('x'.repeat(255), new Uint8Array(1000));
  t.equal((await q.pop('x'.repeat(255), 0))!.data.length, 1000, '255-byte names and maxMessageBytes messages work');
  await t.rejects(q.push('t', 42 as unknown as string), { code: 'ERR_INVALID_ARGUMENT' });
});

t.test('ordering: one producer, FIFO per topic across 2,000 messages', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('order');
  await Promise.all(Array.from({ length: 1000 }, (_, i) => q.push('o', String(i))));
  await q.pushMany('o', Array.from({ length: 1000 }, (_, i) => String(1000 + i)));
  const got: string[] = [];
  while (got.length < 2000) {
    const batch = await q.popMany('o', 300, 1000);
    if (batch.length === 0) break;
    got.push(...batch.map((m) => m.content));
  }
  t.same(got, Array.from({ length: 2000 }, (_, i) => String(i)));
});

t.test('a parked pop does not block other calls on the same connection', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('q');
  const parked = q.pop('slow');
  await q.push('fast', '1');
  t.equal((await within(q.pop('fast', 0), 500, 'pop beside a parked pop'))!.content, '1');
  t.equal(await within(q.length('fast'), 500), 0);
  await q.push('slow', 'done');
  t.equal((await within(parked, 2000))!.content, 'done');
});

t.test('after close every call rejects with ERR_CONNECTION_CLOSED, including pending ones', async (t) => {
  const engine = await sharedEngine();
  const client = await TurboClient.connect(engine.url);
  const q = client.getQueue('q');
  const pending = q.pop('never');
  await client.close();
  await t.rejects(pending, { code: 'ERR_CONNECTION_CLOSED' });
  await t.rejects(q.push('t', 'x'), { code: 'ERR_CONNECTION_CLOSED' });
  await t.rejects(q.pop('t', 0), { code: 'ERR_CONNECTION_CLOSED' });
  await t.rejects(q.length('t'), { code: 'ERR_CONNECTION_CLOSED' });
  t.type(await q.push('t', 'x').catch((e) => e), TurboError);
});

t.test('a consumer whose connection dies while waiting does not swallow the next message', async (t) => {
  const engine = await sharedEngine();
  const dead = await TurboClient.connect(engine.url);
  const deadPop = dead.getQueue('q').pop('dw').catch((e) => e);
  await delay(100);
  await dead.close();
  await deadPop;
  const live = await connect(t, engine.url);
  const q = live.getQueue('q');
  const livePop = q.pop('dw', 3000);
  await delay(50);
  const producer = await connect(t, engine.url);
  await producer.getQueue('q').push('dw', 'for the living');
  t.equal((await livePop)?.content, 'for the living');
});

t.test('competing consumers: each message goes to exactly one', async (t) => {
  const engine = await sharedEngine();
  const consumers = await Promise.all(Array.from({ length: 4 }, () => connect(t, engine.url)));
  const producer = await connect(t, engine.url);
  const received: string[] = [];
  const stop = { done: false };
  const loops = consumers.map(async (c) => {
    const q = c.getQueue('work');
    while (!stop.done) {
      const m = await q.pop('jobs', 200);
      if (m) received.push(m.content);
    }
  });
  const total = 2000;
  await producer.getQueue('work').pushMany('jobs', Array.from({ length: total }, (_, i) => `job-${i}`));
  const deadline = Date.now() + 10_000;
  while (received.length < total && Date.now() < deadline) await delay(20);
  stop.done = true;
  await Promise.all(loops);
  t.equal(received.length, total, 'all received');
  t.equal(new Set(received).size, total, 'none twice');
});

t.test('many connections and topics', async (t) => {
  const engine = await sharedEngine();
  const clients = await Promise.all(Array.from({ length: 50 }, () => connect(t, engine.url)));
  await Promise.all(clients.map((c, i) => c.getQueue('many').pushMany(`topic-${i}`, Array.from({ length: 20 }, (_, k) => `${i}:${k}`))));
  const reader = await connect(t, engine.url);
  const q = reader.getQueue('many');
  for (let i = 0; i < 50; i++) {
    const got = await q.popMany(`topic-${i}`, 100, 0);
    t.same(got.map((m) => m.content), Array.from({ length: 20 }, (_, k) => `${i}:${k}`));
  }
});

t.test('garbage bytes from a raw socket close only that connection', async (t) => {
  const engine = await sharedEngine();
  const client = await connect(t, engine.url);
  const port = Number(new URL(engine.url).port);
  const closed = await new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')));
    socket.on('data', () => {});
    socket.on('close', () => resolve(true));
    socket.on('error', () => {});
    setTimeout(() => { socket.destroy(); resolve(false); }, 3000);
  });
  t.ok(closed, 'the broker closed the garbage connection');
  const q = client.getQueue('q');
  await q.push('still', 'alive');
  t.equal((await q.pop('still', 0))!.content, 'alive', 'other clients go on');
});

t.test('subscribe receives messages as they arrive and ends when closed', async (t) => {
  const engine = await sharedEngine();
  const client = await connect(t, engine.url);
  const q = client.getQueue('sub');
  await q.push('s', 'before');
  const sub = q.subscribe('s', { prefetch: 4 });
  const got: string[] = [];
  const loop = (async () => { for await (const m of sub) { got.push(m.content); if (got.length === 3) break; } })();
  await q.push('s', 'after-1');
  await q.push('s', 'after-2');
  await within(loop, 3000, 'subscription');
  t.same(got, ['before', 'after-1', 'after-2']);
  t.ok(sub.closed, 'breaking out of for-await closes the subscription');
  await q.push('s', 'not for the closed subscription');
  t.equal((await q.pop('s', 500))!.content, 'not for the closed subscription');
});

t.test('closing a subscription puts unconsumed messages back at the front, in order', async (t) => {
  const engine = await sharedEngine();
  const client = await connect(t, engine.url);
  const q = client.getQueue('sub');
  await q.pushMany('r', ['1', '2', '3', '4', '5']);
  const sub = q.subscribe('r', { prefetch: 10 });
  const it = sub[Symbol.asyncIterator]();
  t.equal((await it.next()).value.content, '1');
  await delay(100); // the rest are prefetched into the client
  await sub.close();
  t.same((await q.popMany('r', 10, 0)).map((m) => m.content), ['2', '3', '4', '5']);
});

t.test('exclusive consumers: one at a time, others get ERR_EXCLUSIVE, released on close and on connection death', async (t) => {
  const engine = await sharedEngine();
  const a = await TurboClient.connect(engine.url);
  const b = await connect(t, engine.url);
  const subA = a.getQueue('x').subscribe('only', { exclusive: true });
  await (subA as unknown as { ready: Promise<void> }).ready;
  const subB = b.getQueue('x').subscribe('only', { exclusive: true });
  await t.rejects(subB[Symbol.asyncIterator]().next(), { code: 'ERR_EXCLUSIVE' });
  await t.rejects(b.getQueue('x').pop('only', 0), { code: 'ERR_EXCLUSIVE' }, 'pops fail while an exclusive consumer is attached');
  const plain = b.getQueue('x').subscribe('only');
  await t.rejects(plain[Symbol.asyncIterator]().next(), { code: 'ERR_EXCLUSIVE' });
  await b.getQueue('x').push('only', 'for A');
  t.equal((await subA[Symbol.asyncIterator]().next()).value.content, 'for A');
  await a.close(); // connection death releases it
  let released: unknown;
  for (let i = 0; i < 100; i++) {
    released = await b.getQueue('x').pop('only', 0).catch((err: unknown) => err);
    if (released === null) break;
    await delay(20);
  }
  t.equal(released, null, 'pops work again once the broker saw the connection die');
  const subC = b.getQueue('x').subscribe('only', { exclusive: true });
  await b.getQueue('x').push('only', 'for C');
  t.equal((await subC[Symbol.asyncIterator]().next()).value.content, 'for C');
  await subC.close();
  await t.resolves(b.getQueue('x').pop('only', 0), 'released on close');
});

t.test('exclusive subscribe fails if the topic already has a consumer', async (t) => {
  const engine = await sharedEngine();
  const a = await connect(t, engine.url);
  const b = await connect(t, engine.url);
  const first = a.getQueue('x').subscribe('busy');
  await (first as unknown as { ready: Promise<void> }).ready;
  const second = b.getQueue('x').subscribe('busy', { exclusive: true });
  await t.rejects(second[Symbol.asyncIterator]().next(), { code: 'ERR_EXCLUSIVE' });
  await first.close();
});

/** A PUSH frame for queue q, topic t. */
function pushFrame(requestId: number, data: string): Buffer {
  return rawPushFrame(requestId, 'q', 't', data);
}

t.test('a request split into 1-byte TCP writes (split header) is served, not dropped', async (t) => {
  const engine = await sharedEngine();
  const port = Number(new URL(engine.url).port);
  const frames = Buffer.concat([pushFrame(1, 'first'), pushFrame(2, 'second')]);
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true }, async () => {
      for (const byte of frames) {
        socket.write(Buffer.from([byte]));
        await delay(1);
      }
    });
    let got = Buffer.alloc(0);
    socket.on('data', (d) => { got = Buffer.concat([got, d]); if (got.length >= 24) { socket.end(); resolve(got); } });
    socket.on('error', reject);
    setTimeout(() => reject(new Error('no reply')), 5000);
  });
  t.equal(reply[5], 0x80, 'first reply is OK');
  t.equal(reply.readUInt32LE(8), 1);
  t.equal(reply[12 + 5], 0x80, 'second reply is OK');
  t.equal(reply.readUInt32LE(12 + 8), 2);
  const q = (await connect(t, engine.url)).getQueue('q');
  t.same((await q.popMany('t', 5, 0)).map((m) => m.content), ['first', 'second']);
});

t.test('a frame declaring a length over maxFrameBytes is a fatal ERR_MESSAGE_TOO_LARGE: the connection closes, nothing after it is served', async (t) => {
  const engine = await startEngine(t, { maxMessageBytes: 1024, maxFrameBytes: 4096 });
  const port = Number(new URL(engine.url).port);
  const big = pushFrame(7, 'x'.repeat(10_000));
  const after = pushFrame(8, 'small');
  const replies = await new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(Buffer.concat([big, after])));
    let got = Buffer.alloc(0);
    socket.on('data', (d) => { got = Buffer.concat([got, d]); });
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
    setTimeout(() => reject(new Error(`not closed: ${got.toString('hex')}`)), 5000);
  });
  t.equal(replies[5], 0x8f, 'an ERROR');
  t.equal(replies.readUInt32LE(8), 0, 'fatal (request id 0)');
  t.equal(replies.readUInt16LE(12), 3, 'ERR_MESSAGE_TOO_LARGE');
  t.equal(replies.length, 4 + replies.readUInt32LE(0), 'nothing else');
  const q = (await connect(t, engine.url)).getQueue('q');
  t.same(await q.popMany('t', 5, 0), [], 'the request after it was not served');
});

t.test('random garbage on many raw connections never disturbs a well-behaved client', async (t) => {
  const engine = await sharedEngine();
  const port = Number(new URL(engine.url).port);
  const client = await connect(t, engine.url);
  const q = client.getQueue('steady');
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 0x100000000;
  const attacks = Array.from({ length: 20 }, (_, i) => new Promise<void>((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      const junk = Buffer.alloc(64 + Math.floor(rand() * 4096));
      for (let k = 0; k < junk.length; k++) junk[k] = Math.floor(rand() * 256);
      if (i % 2 === 0) junk[4] = PROTOCOL_VERSION; // a plausible version byte: exercise deeper parsing
      socket.write(junk);
      socket.end();
    });
    socket.on('data', () => {});
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  }));
  for (let i = 0; i < 200; i++) await q.push('s', String(i));
  await within(Promise.all(attacks), 10_000, 'garbage connections to close');
  const got = await q.popMany('s', 500, 0);
  t.same(got.map((m) => m.content), Array.from({ length: 200 }, (_, i) => String(i)), `seed 12345: the good client lost nothing`);
});

t.test('closing a subscription while deliveries are still in flight loses none and keeps the order', async (t) => {
  const engine = await sharedEngine();
  const q = (await connect(t, engine.url)).getQueue('inflight');
  const all = Array.from({ length: 500 }, (_, i) => String(i));
  await q.pushMany('f', all);
  const sub = q.subscribe('f', { prefetch: 200 });
  const it = sub[Symbol.asyncIterator]();
  const first = (await it.next()).value.content;
  await sub.close(); // no pause: more deliveries may still be on the wire
  const rest: string[] = [];
  for (;;) {
    const batch = await q.popMany('f', 1000, 0);
    if (batch.length === 0) break;
    rest.push(...batch.map((m) => m.content));
  }
  t.same([first, ...rest], all);
});
