// At-least-once delivery through real brokers (several workers) and real sockets: queue
// settings, leased pops and subscriptions, ack / nack / extend / reject, expiry, dead
// letters, delayed and deduplicated pushes, bounded topics.

import t from 'tap';
import type { Test } from 'tap';
import net from 'node:net';
import { TurboClient, TurboError, type Queue, type Message } from '../../src/index.ts';
import { startEngine, connect, delay, within } from '../helpers.ts';
import { Op, HEADER_BYTES } from '../../src/protocol.ts';

const DEFAULTS = { leaseMs: 30_000, maxDeliveries: Infinity, deadLetterTopic: null, maxLength: Infinity, overflow: 'reject', dedupWindowMs: 120_000, durable: false };

async function drain(q: Queue, topic: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const batch = await q.popMany(topic, 1000, 0);
    if (batch.length === 0) return out;
    out.push(...batch.map((m) => m.content));
  }
}

t.test('configure: defaults, merging, every connection sees it, invalid values change nothing', async (t) => {
  const engine = await startEngine(t);
  const a = (await connect(t, engine.url)).getQueue('cfg');
  const b = (await connect(t, engine.url)).getQueue('cfg');
  t.same(await a.configure(), DEFAULTS, 'configure() reads the defaults');
  t.same(await a.configure({}), DEFAULTS, 'configure({}) too');
  t.same(await a.configure({ leaseMs: 500, maxDeliveries: 3 }), { ...DEFAULTS, leaseMs: 500, maxDeliveries: 3 });
  t.same(await b.configure({ deadLetterTopic: 'dead', overflow: 'drop-oldest' }), { ...DEFAULTS, leaseMs: 500, maxDeliveries: 3, deadLetterTopic: 'dead', overflow: 'drop-oldest' }, 'merged into what the other connection set');
  const bad: object[] = [
    { leaseMs: 0 }, { leaseMs: -1 }, { leaseMs: NaN }, { leaseMs: Infinity }, { dedupWindowMs: 0 }, { maxDeliveries: 0 }, { maxDeliveries: 1.5 },
    { maxLength: -3 }, { maxLength: NaN }, { overflow: 'drop-newest' }, { deadLetterTopic: '' }, { deadLetterTopic: 'x'.repeat(256) }, { nope: 1 },
  ];
  for (const patch of bad) await t.rejects(a.configure(patch as never), { code: 'ERR_INVALID_ARGUMENT' }, JSON.stringify(patch, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));
  t.same(await b.configure(), { ...DEFAULTS, leaseMs: 500, maxDeliveries: 3, deadLetterTopic: 'dead', overflow: 'drop-oldest' }, 'nothing changed');
  t.same(await a.configure({ deadLetterTopic: null, maxLength: Infinity, overflow: 'reject' }), { ...DEFAULTS, leaseMs: 500, maxDeliveries: 3 });
  t.same(await (await connect(t, engine.url)).getQueue('other').configure(), DEFAULTS, 'other queues keep the defaults');
});

t.test('every message has an id and a delivery count; a plain pop needs no ack', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('ids');
  await q.pushMany('t', ['a', 'b', 'c']);
  const [a, b, c] = await q.popMany('t', 3, 0);
  const first = BigInt(a!.id);
  t.same([b!.id, c!.id], [String(first + 1n), String(first + 2n)], 'ids in push order (from the broker\'s id floor: 0 on a new broker)');
  t.same([a!.deliveries, b!.deliveries], [1, 1]);
  await a!.ack();
  await t.rejects(a!.nack(), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(a!.extend(), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(a!.reject(), { code: 'ERR_INVALID_ARGUMENT' });
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 0 });
});

t.test('a leased pop hides the message until ack; ack removes it for good; a second ack is ERR_LEASE_EXPIRED', async (t) => {
  const engine = await startEngine(t);
  const a = (await connect(t, engine.url)).getQueue('lease');
  const b = (await connect(t, engine.url)).getQueue('lease');
  await a.pushMany('t', ['one', 'two']);
  const m = (await a.pop('t', { ack: true, timeoutMs: 0 }))!;
  t.equal(m.content, 'one');
  t.equal(m.deliveries, 1);
  t.same(await b.stats('t'), { ready: 1, delayed: 0, inFlight: 1 });
  t.equal(await b.length('t'), 1, 'length = ready');
  t.equal((await b.pop('t', 0))!.content, 'two', 'the other consumer does not see the leased one');
  t.equal(await b.pop('t', 0), null);
  await m.ack();
  t.same(await b.stats('t'), { ready: 0, delayed: 0, inFlight: 0 });
  await t.rejects(m.ack(), { code: 'ERR_LEASE_EXPIRED' });
  await t.rejects(m.nack(), { code: 'ERR_LEASE_EXPIRED' });
});

t.test('nack gives it back to the front with the same id and deliveries + 1', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('nack');
  await q.pushMany('t', ['first', 'second']);
  const m = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
  await m.nack();
  const again = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
  t.equal(again.content, 'first', 'back at the front');
  t.equal(again.id, m.id, 'same id');
  t.equal(again.deliveries, 2);
  await again.ack();
  t.same(await drain(q, 't'), ['second']);
});

t.test('nack with delayMs: delayed, then ready again; a delayed message does not hold back a ready one', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('nackdelay');
  await q.pushMany('t', ['x', 'y']);
  const m = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
  await m.nack({ delayMs: 300 });
  t.same(await q.stats('t'), { ready: 1, delayed: 1, inFlight: 0 });
  t.equal((await q.pop('t', 0))!.content, 'y', 'the ready one is not held back');
  t.equal(await q.pop('t', 0), null, 'not ready before its time');
  const back = (await within(q.pop('t', 5000), 5000, 'the delayed nack to come back'))!;
  t.equal(back.content, 'x');
  t.equal(back.deliveries, 2);
  await t.rejects(m.nack({ delayMs: -1 }), { code: 'ERR_INVALID_ARGUMENT' });
});

t.test('an expired lease comes back with deliveries + 1; settling it after is ERR_LEASE_EXPIRED; extend keeps it', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('expiry');
  await q.configure({ leaseMs: 200 });
  await q.pushMany('t', ['short', 'long']);
  const short = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
  const long = (await q.pop('t', { ack: true, timeoutMs: 0, leaseMs: 200 }))!;
  await delay(100);
  await long.extend(1000);
  const back = (await within(q.pop('t', { timeoutMs: 3000 }), 3000, 'the expired lease to come back'))!;
  t.equal(back.content, 'short');
  t.equal(back.deliveries, 2);
  t.equal(back.id, short.id);
  await t.rejects(short.ack(), { code: 'ERR_LEASE_EXPIRED' });
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 1 }, 'the extended lease still holds');
  await delay(250);
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 1 }, 'past its first deadline it is still leased');
  await long.ack();
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 0 });
});

t.test('closing a connection ends its leases at once, and they return in their original order', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('closing');
  const consumer = await TurboClient.connect(engine.url);
  const cq = consumer.getQueue('closing');
  await q.pushMany('t', ['1', '2', '3', '4', '5']);
  const leased = await cq.popMany('t', 3, { ack: true, timeoutMs: 0 });
  t.same(leased.map((m) => m.content), ['1', '2', '3']);
  await consumer.close();
  await t.rejects(leased[0]!.ack(), { code: 'ERR_LEASE_EXPIRED' }, 'leases end with their connection');
  // The broker sees the close a moment later (another thread): well within the 30 s lease.
  await within((async () => { while ((await q.stats('t')).inFlight !== 0) await delay(10); })(), 2000, 'the leases to end');
  const again = await q.popMany('t', 10, 0);
  t.same(again.map((m) => m.content), ['1', '2', '3', '4', '5'], 'back at the front in order, long before the 30 s lease');
  t.same(again.map((m) => m.deliveries), [2, 2, 2, 1, 1]);
});

t.test('maxDeliveries moves a message to the dead-letter topic with its origin; reject() at once', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('dl');
  await q.configure({ maxDeliveries: 2, deadLetterTopic: 'dead' });
  await q.pushMany('work', ['poison', 'bad', 'fine']);
  for (let i = 0; i < 2; i++) {
    const m = (await q.pop('work', { ack: true, timeoutMs: 0 }))!;
    t.equal(m.content, 'poison');
    await m.nack();
  }
  const bad = (await q.pop('work', { ack: true, timeoutMs: 0 }))!;
  t.equal(bad.content, 'bad', 'poison is gone after 2 deliveries');
  await bad.reject('cannot parse');
  t.same(await q.stats('dead'), { ready: 2, delayed: 0, inFlight: 0 });
  const dead = await q.popMany('dead', 10, 0);
  t.same(dead.map((m) => [m.content, m.deadLetter]), [
    ['poison', { topic: 'work', reason: 'max-deliveries' }],
    ['bad', { topic: 'work', reason: 'rejected' }],
  ]);
  t.equal(dead[0]!.data.length, 6, 'data is the message, without the origin');
  t.same(await drain(q, 'work'), ['fine']);
  // Without a dead-letter topic they are dropped (and counted by the broker).
  await q.configure({ deadLetterTopic: null });
  await q.push('work', 'gone');
  await (await q.pop('work', { ack: true, timeoutMs: 0 }))!.reject();
  t.same(await q.stats('work'), { ready: 0, delayed: 0, inFlight: 0 });
  t.same(await q.stats('dead'), { ready: 0, delayed: 0, inFlight: 0 });
});

t.test('an ack:true subscription holds at most prefetch unacked messages; an ack lets the next come', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('subs');
  await q.pushMany('t', Array.from({ length: 10 }, (_, i) => String(i)));
  const sub = q.subscribe('t', { ack: true, prefetch: 3 });
  const it = sub[Symbol.asyncIterator]();
  const got: Message[] = [];
  for (let i = 0; i < 3; i++) got.push((await it.next()).value);
  await delay(100);
  t.same(await q.stats('t'), { ready: 7, delayed: 0, inFlight: 3 }, 'no more than prefetch in flight');
  await got[0]!.ack();
  got.push((await within(it.next(), 2000, 'the next delivery after an ack')).value);
  t.same(got.map((m) => m.content), ['0', '1', '2', '3']);
  await delay(100);
  t.same(await q.stats('t'), { ready: 6, delayed: 0, inFlight: 3 });
  await got[1]!.ack();
  await sub.close();
  t.same(await q.stats('t'), { ready: 8, delayed: 0, inFlight: 0 }, 'close returned the unacked ones before resolving');
  const rest = await q.popMany('t', 20, 0);
  t.same(rest.map((m) => m.content), ['2', '3', '4', '5', '6', '7', '8', '9'], 'in their original order, at the front');
  await t.rejects(got[2]!.ack(), { code: 'ERR_LEASE_EXPIRED' });
});

t.test('delayMs: not visible until due, counted as delayed, then ready in due-time order', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('delay');
  await q.push('t', 'late', { delayMs: 400 });
  await q.pushMany('t', ['early-1', 'early-2'], { delayMs: 150 });
  await q.push('t', 'now');
  t.same(await q.stats('t'), { ready: 1, delayed: 3, inFlight: 0 });
  t.equal((await q.pop('t', 0))!.content, 'now', 'the ready message is not held back');
  const got = [(await within(q.pop('t', 3000), 3000))!.content, (await q.pop('t', 3000))!.content, (await q.pop('t', 3000))!.content];
  t.same(got, ['early-1', 'early-2', 'late']);
  await t.rejects(q.push('t', 'x', { delayMs: -5 }), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.push('t', 'x', { delayMs: NaN }), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.pushMany('t', ['x'], { delayMs: -1 }), { code: 'ERR_INVALID_ARGUMENT' });
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 0 });
});

t.test('a parked pop receives a delayed message when it becomes due', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('delaywait');
  const waiting = q.pop('t', 5000);
  await delay(20);
  await (await connect(t, engine.url)).getQueue('delaywait').push('t', 'due', { delayMs: 100 });
  t.equal((await within(waiting, 5000))!.content, 'due');
});

t.test('dedupId: a retried push within the window stores nothing; bad ids are refused', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('dedup');
  const other = (await connect(t, engine.url)).getQueue('dedup');
  await q.push('t', 'once', { dedupId: 'order-1' });
  await other.push('t', 'once again', { dedupId: 'order-1' });
  await q.push('u', 'other topic', { dedupId: 'order-1' });
  t.equal(await q.length('t'), 1, 'the retry stored nothing');
  t.equal(await q.length('u'), 1, 'the same id on another topic is another message');
  await q.configure({ dedupWindowMs: 100 });
  await q.push('t', 'short window', { dedupId: 'order-2' });
  await delay(150);
  await q.push('t', 'after the window', { dedupId: 'order-2' });
  t.same(await drain(q, 't'), ['once', 'short window', 'after the window']);
  await t.rejects(q.push('t', 'x', { dedupId: '' }), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.push('t', 'x', { dedupId: 'é'.repeat(128) }), { code: 'ERR_INVALID_ARGUMENT' });
});

t.test('maxLength with reject: ERR_QUEUE_FULL, nothing stored, the connection stays usable; pushMany all or nothing', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('bounded');
  await q.configure({ maxLength: 3 });
  await q.pushMany('t', ['1', '2']);
  await t.rejects(q.pushMany('t', ['3', '4']), { code: 'ERR_QUEUE_FULL' });
  t.equal(await q.length('t'), 2, 'the refused batch stored nothing');
  await q.push('t', '3');
  await t.rejects(q.push('t', '4'), { code: 'ERR_QUEUE_FULL' });
  await t.rejects(q.push('t', 'later', { delayMs: 10 }), { code: 'ERR_QUEUE_FULL' }, 'delayed messages count too');
  const leased = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
  await q.push('t', '4'); // in flight does not count
  await t.rejects(q.push('t', '5'), { code: 'ERR_QUEUE_FULL' });
  await leased.nack(); // coming back is never refused
  t.same(await q.stats('t'), { ready: 4, delayed: 0, inFlight: 0 });
  t.same(await drain(q, 't'), ['1', '2', '3', '4']);
});

t.test("maxLength with 'drop-oldest': the oldest ready messages make room", async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('ring');
  await q.configure({ maxLength: 3, overflow: 'drop-oldest' });
  for (let i = 1; i <= 5; i++) await q.push('t', String(i));
  await q.pushMany('t', ['6', '7']);
  t.same(await drain(q, 't'), ['5', '6', '7']);
  await t.rejects(q.pushMany('t', ['a', 'b', 'c', 'd']), { code: 'ERR_QUEUE_FULL' }, 'a batch larger than maxLength never fits');
});

t.test('a RETURN with no records changes nothing (it used to break the topic)', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('q');
  await q.push('t', 'before');
  const port = Number(new URL(engine.url).port);
  const { rawFrame, namedBody } = await import('../support/raw.ts');
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => socket.write(rawFrame(Op.RETURN, 5, namedBody('q', 't', Buffer.alloc(4)))));
    socket.on('data', (d) => { socket.end(); resolve(d); });
    socket.on('error', reject);
  });
  t.equal(reply[5], Op.OK);
  await q.push('t', 'after');
  t.same(await drain(q, 't'), ['before', 'after'], 'both reachable');
  t.equal(HEADER_BYTES, 12);
});

t.test('a pushMany refused for memory stores nothing, so a retry does not duplicate', async (t) => {
  const engine = await startEngine(t, { maxMemoryMiB: 2 });
  const q = (await connect(t, engine.url)).getQueue('oom');
  const item = 'x'.repeat(16 * 1024);
  let refused: TurboError | undefined;
  let stored = 0;
  for (let i = 0; i < 200 && refused === undefined; i++) {
    try {
      await q.pushMany('t', Array.from({ length: 64 }, () => item));
      stored += 64;
    } catch (err) {
      refused = err as TurboError;
    }
  }
  t.equal(refused?.code, 'ERR_NO_MEMORY', 'the broker filled up');
  t.equal(await q.length('t'), stored, 'the refused batch left nothing behind');
});

t.test('client.close() with a plain subscription open returns its prefetched messages', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('prefetch');
  await q.pushMany('t', Array.from({ length: 100 }, (_, i) => String(i)));
  const consumer = await TurboClient.connect(engine.url);
  const sub = consumer.getQueue('prefetch').subscribe('t', { prefetch: 100 });
  const first = (await sub[Symbol.asyncIterator]().next()).value.content;
  await delay(50);
  await consumer.close();
  const rest = await drain(q, 't');
  t.same([first, ...rest], Array.from({ length: 100 }, (_, i) => String(i)), 'none lost, order kept');
});

t.test('sub.close() resolves only when its returned messages are back: FIFO holds against a racing pushMany', async (t) => {
  const engine = await startEngine(t);
  const q = (await connect(t, engine.url)).getQueue('race');
  const producer = (await connect(t, engine.url)).getQueue('race');
  for (let run = 0; run < 40; run++) {
    const topic = `r${run}`;
    await q.pushMany(topic, ['a', 'b', 'c']);
    const sub = q.subscribe(topic, { prefetch: 10 });
    await (sub as unknown as { ready: Promise<void> }).ready;
    const pushing = producer.pushMany(topic, ['d', 'e']);
    await sub.close();
    await pushing;
    const got = await drain(q, topic);
    if (got.join('') !== 'abcde') t.fail(`run ${run}: ${got.join('')}`);
  }
  t.pass('40 runs in order');
});

t.test('the embedded engine has the same API', async (t) => {
  const engine = await startEngine(t);
  const q = engine.getQueue('embedded');
  await q.configure({ maxDeliveries: 1, deadLetterTopic: 'dlq' });
  await q.push('t', 'm', { dedupId: 'one' });
  await q.push('t', 'm', { dedupId: 'one' });
  const m = (await q.pop('t', { ack: true, timeoutMs: 0 }))!;
  t.equal(m.deliveries, 1);
  await m.nack();
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 0 });
  t.equal((await q.pop('dlq', 0))!.deadLetter?.reason, 'max-deliveries');
});

/** A proxy between a client and the broker at `brokerUrl`, counting the frames of each op both ways. */
async function frameCountingProxy(t: Test, brokerUrl: string): Promise<{ url: string; fromClient: Map<number, number>; fromBroker: Map<number, number> }> {
  const target = new URL(brokerUrl);
  const fromClient = new Map<number, number>(), fromBroker = new Map<number, number>();
  const counter = (counts: Map<number, number>) => {
    let pending = Buffer.alloc(0);
    return (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= HEADER_BYTES && pending.length >= 4 + pending.readUInt32LE(0)) {
        counts.set(pending[5]!, (counts.get(pending[5]!) ?? 0) + 1);
        pending = pending.subarray(4 + pending.readUInt32LE(0));
      }
    };
  };
  const proxy = net.createServer((inbound) => {
    const outbound = net.connect(Number(target.port), '127.0.0.1');
    const countIn = counter(fromClient), countOut = counter(fromBroker);
    inbound.on('data', (d) => { countIn(d); outbound.write(d); });
    outbound.on('data', (d) => { countOut(d); inbound.write(d); });
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
    inbound.on('error', () => {});
    outbound.on('error', () => {});
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxy.unref();
  t.teardown(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  return { url: `tcp://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`, fromClient, fromBroker };
}

t.test('acks made in one tick travel in one SETTLE frame', async (t) => {
  const engine = await startEngine(t);
  const proxy = await frameCountingProxy(t, engine.url);
  const client = await connect(t, proxy.url);
  const q = client.getQueue('batch');
  await q.pushMany('t', Array.from({ length: 100 }, (_, i) => String(i)));
  const msgs = await q.popMany('t', 100, { ack: true, timeoutMs: 0 });
  await Promise.all(msgs.map((m) => m.ack()));
  t.equal(proxy.fromClient.get(Op.SETTLE), 1, '100 acks, one frame');
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 0 });
});

t.test('acks made one per iteration of a for-await loop over an ack:true subscription travel together, and the prefetch is refilled in batches', async (t) => {
  // Each iteration of the loop is a microtask hop of its own: a flush queued as a microtask
  // sent every ack alone, and the broker, whose credit for the subscription is what it has
  // unsettled, refilled it one message per DELIVER.
  const engine = await startEngine(t);
  const proxy = await frameCountingProxy(t, engine.url);
  const client = await connect(t, proxy.url);
  const q = client.getQueue('loop');
  const total = 64 * 20;
  await q.pushMany('t', Array.from({ length: total }, (_, i) => String(i)));
  const sub = q.subscribe('t', { ack: true, prefetch: 64 });
  const got: string[] = [];
  const acks: Promise<void>[] = [];
  for await (const m of sub) {
    got.push(m.content as string);
    acks.push(m.ack());
    if (got.length === total) break;
  }
  await Promise.all(acks);
  t.same(got, Array.from({ length: total }, (_, i) => String(i)), 'every message once, in order');
  const settles = proxy.fromClient.get(Op.SETTLE) ?? 0, delivers = proxy.fromBroker.get(Op.DELIVER) ?? 0;
  t.ok(settles <= total / 16, `${total} acks in ${settles} SETTLE frames`);
  t.ok(delivers <= total / 16, `${total} messages in ${delivers} DELIVER frames`);
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 0 }, 'all acked (the break closed the subscription after its last ack)');
});

t.test('more acks in one turn than one SETTLE frame may hold go in several, every one settled', async (t) => {
  // maxFrameBytes 2048: a SETTLE's body holds (2048 - 4) / 16 = 127 entries.
  const engine = await startEngine(t, { maxMessageBytes: 1024, maxFrameBytes: 2048 });
  const proxy = await frameCountingProxy(t, engine.url);
  const client = await connect(t, proxy.url);
  const q = client.getQueue('split');
  const total = 400;
  for (let i = 0; i < total; i += 50) await q.pushMany('t', Array.from({ length: 50 }, (_, k) => String(i + k)));
  const taken: Message[] = [];
  while (taken.length < total) taken.push(...await q.popMany('t', total - taken.length, { ack: true, timeoutMs: 0 }));
  const codes = await Promise.all(taken.map((m) => m.ack().then(() => 'ok', (err: TurboError) => err.code)));
  t.same(codes.filter((c) => c !== 'ok'), [], 'every ack settled');
  t.equal(proxy.fromClient.get(Op.SETTLE), Math.ceil(total / 127), `${total} acks in frames of at most 127`);
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 0 });
});

t.test('an ack reaches the broker before any request made after it', async (t) => {
  const engine = await startEngine(t);
  const client = await connect(t, engine.url);
  const q = client.getQueue('order');
  await q.pushMany('t', ['a', 'b']);
  const [a, b] = await q.popMany('t', 2, { ack: true, timeoutMs: 0 });
  const acked = a!.ack();
  t.same(await q.stats('t'), { ready: 0, delayed: 0, inFlight: 1 }, 'the stats made right after the ack see it');
  await acked;
  // An ack then closing its subscription: the ack is settled, not refused as ended.
  await q.push('s', 'c');
  const sub = q.subscribe('s', { ack: true });
  const it = sub[Symbol.asyncIterator]();
  const c = (await it.next()).value as Message;
  const ackC = c.ack();
  await sub.close();
  await ackC;
  t.same(await q.stats('s'), { ready: 0, delayed: 0, inFlight: 0 }, 'acked before the subscription closed');
  await b!.ack();
});
