// Limits that hold under bad clients (issue 12): connections that do not read their replies
// make the broker stop serving them instead of buffering, take no message from its topic that
// cannot be sent, and are closed past maxOutputBytes with what they held given back. Real
// sockets to a real broker; every message is counted: still in its topic, or delivered.

import t from 'tap';
import type { Test } from 'tap';
import net from 'node:net';
import { ErrorCode, Op, TIMEOUT_INFINITE } from '../../src/protocol.ts';
import { rawFrame } from '../support/raw.ts';
import { connect, delay, pushUntilRefused, startEngine, within } from '../helpers.ts';
import { frame, hello, ping, push, rawConnect } from '../support/raw-socket.ts';
import type { EngineOptions, TurboEngine, TurboError } from '../../src/index.ts';

const MESSAGE_BYTES = 16 * 1024;
const MESSAGES = 4000; // 64 MiB
/**
 * What may leave a topic for a connection that never reads: the broker's high-water mark (1 MiB)
 * plus one frame (1 MiB here), the kernel's socket buffers on loopback (a few MiB), and the client
 * socket's own read buffer. Without the limit every message leaves (64 MiB).
 */
const MAX_TAKEN = 1000; // 16 MiB

const limits = { threads: 1, maxMessageBytes: 64 * 1024, maxFrameBytes: 1024 * 1024 };

function names(queue: string, topic: string): Buffer {
  return Buffer.concat([Buffer.from([queue.length]), Buffer.from(queue), Buffer.from([topic.length]), Buffer.from(topic)]);
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32LE(v, 4 * i));
  return b;
}

/** A raw socket that sends `bytes` and reads nothing until told to (paused: the kernel's buffers fill, then TCP's window closes). */
function silentSocket(t: Test, url: string, bytes: Buffer): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    t.teardown(() => { socket.destroy(); });
    socket.on('error', () => {});
    socket.once('connect', () => {
      socket.write(bytes);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Reads frames from a paused socket from now on; calls onFrame(op, count of records or 0). */
function readFrames(socket: net.Socket, onFrame: (op: number, count: number) => void): void {
  let buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    let at = 0;
    while (buffer.length - at >= 12 && buffer.length - at >= 4 + buffer.readUInt32LE(at)) {
      const op = buffer[at + 5]!;
      onFrame(op, op === Op.DELIVER || op === Op.MESSAGES ? buffer.readUInt32LE(at + 12) : 0);
      at += 4 + buffer.readUInt32LE(at);
    }
    buffer = buffer.subarray(at);
  });
}

async function fill(t: Test, engine: TurboEngine, topic: string): Promise<void> {
  const client = await connect(t, engine.url);
  const q = client.getQueue('q');
  const data = new Uint8Array(MESSAGE_BYTES).fill(7);
  const batch = Array.from({ length: 50 }, () => data);
  const pushes: Promise<void>[] = [];
  for (let i = 0; i < MESSAGES; i += batch.length) pushes.push(q.pushMany(topic, batch));
  await Promise.all(pushes);
}

async function lengthOf(t: Test, engine: TurboEngine, topic: string): Promise<number> {
  const client = await connect(t, engine.url);
  return within(client.getQueue('q').length(topic), 5000, 'length');
}

t.test('a subscriber with a large prefetch that never reads takes only what it can send', async (t) => {
  const engine = await startEngine(t, limits);
  const subscribe = frame(Op.SUBSCRIBE, 7, Buffer.concat([names('q', 's'), u32s(1_000_000, 0)]));
  const subscriber = await silentSocket(t, engine.url, Buffer.concat([hello(1), subscribe]));
  await delay(100);
  await fill(t, engine, 's');
  await delay(300);
  const left = await lengthOf(t, engine, 's');
  const taken = MESSAGES - left;
  t.comment(`taken for the non-reading subscriber: ${taken} of ${MESSAGES} (${taken * MESSAGE_BYTES / 1048576} MiB); messageBytes in topics ${((await engine.stats()).messageBytes / 1048576).toFixed(1)} MiB;`);
  t.ok(taken <= MAX_TAKEN, `at most ${MAX_TAKEN} messages left the topic`);

  // Once it reads, every message arrives, and none is left behind.
  let delivered = 0;
  readFrames(subscriber, (op, count) => { if (op === Op.DELIVER) delivered += count; });
  subscriber.resume();
  const deadline = Date.now() + 20_000;
  while (delivered < MESSAGES && Date.now() < deadline) await delay(20);
  t.equal(delivered, MESSAGES, 'every message delivered once the subscriber reads');
  t.equal(await lengthOf(t, engine, 's'), 0, 'nothing left in the topic');
});

t.test('a subscriber that never reads and is destroyed loses at most what was already sent', async (t) => {
  const engine = await startEngine(t, limits);
  const subscribe = frame(Op.SUBSCRIBE, 7, Buffer.concat([names('q', 'd'), u32s(1_000_000, 0)]));
  const subscriber = await silentSocket(t, engine.url, Buffer.concat([hello(1), subscribe]));
  await delay(100);
  await fill(t, engine, 'd');
  await delay(300);
  subscriber.destroy();
  await delay(300);
  const left = await lengthOf(t, engine, 'd');
  t.comment(`still in the topic after the subscriber was destroyed: ${left} of ${MESSAGES}`);
  t.ok(MESSAGES - left <= MAX_TAKEN, 'the rest is still in its topic');
});

t.test('1,000 POP_MANY pipelined to a socket that is never read pop only what can be sent', async (t) => {
  const engine = await startEngine(t, limits);
  await fill(t, engine, 'p');
  const popMany = frame(Op.POP_MANY, 0, Buffer.concat([names('q', 'p'), u32s(1000, 0)]));
  const pops = Array.from({ length: 1000 }, (_, i) => { const f = Buffer.from(popMany); f.writeUInt32LE(i + 2, 8); return f; });
  const popper = await silentSocket(t, engine.url, Buffer.concat([hello(1), ...pops]));
  await delay(300);
  // The worker is not stalled: a fresh connection is served at once.
  const started = Date.now();
  const left = await lengthOf(t, engine, 'p');
  t.ok(Date.now() - started < 2000, `a fresh connection was served in ${Date.now() - started} ms`);
  t.comment(`popped into the unread socket: ${MESSAGES - left} of ${MESSAGES}`);
  t.ok(MESSAGES - left <= MAX_TAKEN, `at most ${MAX_TAKEN} messages popped`);
  // The one worker reads every plain connection into one buffer: another connection's 60 KiB
  // push overwrites all of it, so what the stalled one held must be a copy (engine/output.ts).
  const other = await connect(t, engine.url);
  await other.getQueue('q').push('noise', new Uint8Array(60 * 1024).fill(0xee));

  // The held-back requests are served once it reads: every message ends up delivered.
  let delivered = 0, replies = 0;
  readFrames(popper, (op, count) => { if (op === Op.MESSAGES) delivered += count; if (op !== Op.HELLO_OK) replies++; });
  popper.resume();
  const deadline = Date.now() + 20_000;
  while (replies < 1000 && Date.now() < deadline) await delay(20);
  t.equal(replies, 1000, 'every POP_MANY answered');
  t.equal(delivered, MESSAGES, 'every message delivered');
  t.equal(await lengthOf(t, engine, 'p'), 0);
});

t.test('past maxOutputBytes a connection is closed, logged once, and what it was handed goes back', async (t) => {
  const lines: { msg: string; fields: Record<string, unknown> }[] = [];
  const at = (obj: object | string, msg?: string) => { if (typeof obj === 'object') lines.push({ msg: msg ?? '', fields: obj as Record<string, unknown> }); };
  const logger: NonNullable<EngineOptions['logger']> = { info: at, warn: at, error: at, debug: at };
  // The smallest output limit: one frame and 64 KiB.
  const engine = await startEngine(t, { ...limits, maxOutputBytes: limits.maxFrameBytes + 64 * 1024, logger });
  const pop = frame(Op.POP, 0, Buffer.concat([names('q', 'w'), u32s(TIMEOUT_INFINITE)]));
  const pops = Array.from({ length: 2000 }, (_, i) => { const f = Buffer.from(pop); f.writeUInt32LE(i + 2, 8); return f; });
  const popper = await silentSocket(t, engine.url, Buffer.concat([hello(1), ...pops]));
  const closed = new Promise<void>((resolve) => popper.once('close', () => resolve()));
  await delay(200);
  const client = await connect(t, engine.url);
  const q = client.getQueue('q');
  const data = new Uint8Array(MESSAGE_BYTES).fill(7);
  for (let i = 0; i < 2000; i += 50) await q.pushMany('w', Array.from({ length: 50 }, () => data));
  const logged = () => lines.filter((l) => l.msg === 'connection closed: output limit');
  for (const deadline = Date.now() + 10_000; logged().length === 0 && Date.now() < deadline;) await delay(20);
  // The client sees the end only once it reads what was sent before it.
  popper.resume();
  await within(closed, 10_000, 'the broker closing the connection');
  const left = await within(q.length('w'), 5000, 'length');
  t.comment(`delivered into the unread socket before it was closed: ${2000 - left} of 2000`);
  t.ok(2000 - left <= MAX_TAKEN, 'the messages it could not send are back in their topic');
  t.equal(logged().length, 1, 'logged once');
  t.match(logged()[0]?.fields, { code: 'ERR_LIMIT', remoteAddress: /127\.0\.0\.1/ });
});

t.test('a terminated WebSocket client has none of its held-back pops served', async (t) => {
  const engine = await startEngine(t, limits, 'ws://127.0.0.1:0');
  await fill(t, engine, 'ws');
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(engine.url);
  t.teardown(() => ws.terminate());
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  ws.pause(); // reads nothing: the broker's output backs up
  ws.send(hello(1));
  const popMany = frame(Op.POP_MANY, 0, Buffer.concat([names('q', 'ws'), u32s(1000, 0)]));
  for (let i = 0; i < 1000; i++) { const f = Buffer.from(popMany); f.writeUInt32LE(i + 2, 8); ws.send(f); }
  await delay(500);
  const before = await lengthOf(t, engine, 'ws');
  t.comment(`popped into the unread WebSocket: ${MESSAGES - before} of ${MESSAGES}`);
  t.ok(MESSAGES - before <= MAX_TAKEN, `at most ${MAX_TAKEN} messages popped`);
  ws.terminate();
  await delay(500);
  t.equal(await lengthOf(t, engine, 'ws'), before, 'nothing popped after the client was gone');
});

t.test('a frame header over maxFrameBytes or with a wrong version closes the connection at once, after an ERROR', async (t) => {
  const engine = await startEngine(t, limits);
  const cases: [string, Buffer, string][] = [
    ['a 4 GiB length', rawFrame(Op.PUSH, 5, [], { length: 0xFFFFFFFF }), 'ERR_MESSAGE_TOO_LARGE'],
    ['one byte over maxFrameBytes', rawFrame(Op.PUSH, 5, [], { length: 8 + limits.maxFrameBytes + 1 }), 'ERR_MESSAGE_TOO_LARGE'],
    ['version 1', rawFrame(Op.PING, 5, [], { ver: 1 }), 'ERR_PROTOCOL'],
  ];
  for (const [what, header, code] of cases) {
    const c = await rawConnect(t, engine.url);
    c.socket.write(hello(1));
    t.equal((await c.next()).op, Op.HELLO_OK);
    c.socket.write(header);
    // The client keeps sending the body it announced: the broker neither waits for it nor reads it.
    const junk = Buffer.alloc(64 * 1024);
    const feeding = setInterval(() => { if (!c.socket.destroyed) c.socket.write(junk); }, 5);
    t.teardown(() => clearInterval(feeding));
    const reply = await c.next();
    t.match(reply, { op: Op.ERROR, requestId: 0, code: ErrorCode[code as keyof typeof ErrorCode] }, `${what}: a fatal ERROR`);
    t.ok(await c.closed(3000), `${what}: closed at once`);
    clearInterval(feeding);
  }
  // A message over maxMessageBytes within maxFrameBytes is still refused with the connection usable.
  const c = await rawConnect(t, engine.url);
  c.socket.write(Buffer.concat([hello(1), push(2, 'q', 't', 'x'.repeat(limits.maxMessageBytes + 1)), ping(3)]));
  t.equal((await c.next()).op, Op.HELLO_OK);
  t.match(await c.next(), { op: Op.ERROR, requestId: 2, code: ErrorCode.ERR_MESSAGE_TOO_LARGE });
  t.match(await c.next(), { op: Op.PONG, requestId: 3 });
});

t.test('parked pops are bounded per worker thread over all its connections, and their slots come back', async (t) => {
  const engine = await startEngine(t, { threads: 1, maxParkedPopsPerThread: 3 });
  const parkOn = (c: Awaited<ReturnType<typeof rawConnect>>, id: number) => c.socket.write(frame(Op.POP, id, Buffer.concat([names('q', 'park'), u32s(TIMEOUT_INFINITE)])));
  const a = await rawConnect(t, engine.url);
  a.socket.write(hello(1));
  t.equal((await a.next()).op, Op.HELLO_OK);
  parkOn(a, 2);
  parkOn(a, 3);
  const b = await rawConnect(t, engine.url);
  b.socket.write(hello(1));
  t.equal((await b.next()).op, Op.HELLO_OK);
  parkOn(b, 4);
  parkOn(b, 5);
  t.match(await b.next(), { op: Op.ERROR, requestId: 5, code: ErrorCode.ERR_LIMIT, text: /maxParkedPopsPerThread 3/ }, 'the fourth on the thread is refused');
  b.socket.write(ping(6));
  t.match(await b.next(), { op: Op.PONG, requestId: 6 }, 'the connection stays usable');
  // A delivery, and a connection closing, give their slots back.
  const client = await connect(t, engine.url);
  await client.getQueue('q').push('park', 'one');
  t.match(await a.next(), { op: Op.MESSAGES, requestId: 2 });
  a.socket.destroy();
  await delay(200);
  for (const id of [7, 8]) parkOn(b, id);
  b.socket.write(ping(9));
  t.match(await b.next(), { op: Op.PONG, requestId: 9 }, 'two more parked: 3 in all again');
  parkOn(b, 10);
  t.match(await b.next(), { op: Op.ERROR, requestId: 10, code: ErrorCode.ERR_LIMIT });
});

t.test('parked pops count against maxMemoryMiB: a full broker refuses to park one with ERR_NO_MEMORY, and takes them again once there is room', async (t) => {
  const engine = await startEngine(t, { threads: 1, maxMemoryMiB: 2 });
  const client = await connect(t, engine.url);
  const q = client.getQueue('mem');
  const { stored, error } = await pushUntilRefused(q, 'full', new Uint8Array(64 * 1024));
  t.equal((error as TurboError).code, 'ERR_NO_MEMORY');
  // What is left (under one 64 KiB message) takes some parked pops, then none.
  const parkedPops: Promise<unknown>[] = [];
  let refused: TurboError | undefined;
  for (let i = 0; i < 1000 && refused === undefined; i++) {
    const p = q.pop(`empty-${i}`, 10_000).catch((err: TurboError) => { refused = err; });
    parkedPops.push(p);
    await Promise.race([p, delay(5)]);
  }
  t.equal(refused?.code, 'ERR_NO_MEMORY', `no room to park after ${parkedPops.length - 1} parked pops`);
  t.ok(parkedPops.length > 1 && parkedPops.length <= 130, 'each took about 512 B of the last 64 KiB');
  t.equal(await q.pop('empty', 0), null, 'a pop that does not park is answered as before');
  await q.popMany('full', 4, 0);
  const parked = q.pop('empty', 5000);
  for (let i = 0; i < parkedPops.length - 1; i++) await q.push(`empty-${i}`, 'done');
  await Promise.all(parkedPops);
  await delay(50);
  await q.push('empty', 'wake');
  t.equal((await parked)?.content, 'wake', 'with room again a pop parks');
  t.ok(stored > 10);
});
