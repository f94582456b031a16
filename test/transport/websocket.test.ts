// The broker's WebSocket listener (src/transport/websocket.ts) with the Node client over
// ws:// and with raw `ws` sockets: the same API and errors as TCP, frames packed into
// messages, Origin checks, the connection cap.

import t, { type Test } from 'tap';
import { WebSocket } from 'ws';
import { TurboClient, TurboEngine, type EngineOptions, type Message, type Queue } from '../../src/index.ts';
import { connectWebSocket } from '../../src/transport/websocket-client.ts';
import { originAllowed } from '../../src/transport/websocket.ts';
import { MESSAGE_TARGET_BYTES, sendAsMessages } from '../../src/transport/websocket-messages.ts';
import { Op, ErrorCode } from '../../src/protocol.ts';
import { startEngine, connect, delay, within, checkBinaryRoundTrip } from '../helpers.ts';
import { rawFrame as frame, namedBody } from '../support/raw.ts';

/** An engine listening on tcp and ws (both port 0); returns it with its ws url. */
async function startWsEngine(t: Test, options: EngineOptions = {}): Promise<{ engine: TurboEngine; wsUrl: string }> {
  const engine = await startEngine(t, { listen: ['ws://127.0.0.1:0'], ...options });
  return { engine, wsUrl: engine.urls[1]! };
}

/** A raw `ws` socket (optionally with an Origin header), closed at the end of the test. */
function rawSocket(t: Test, url: string, origin?: string): WebSocket {
  const ws = new WebSocket(url, origin === undefined ? {} : { origin });
  ws.on('error', () => {});
  t.teardown(() => ws.terminate());
  return ws;
}

/** Resolves 'open', or the HTTP status that refused the upgrade, or 'closed <code>'. */
function outcome(ws: WebSocket): Promise<string> {
  return within(new Promise<string>((resolve) => {
    ws.once('open', () => resolve('open'));
    ws.once('unexpected-response', (_req, res) => resolve(`http ${res.statusCode}`));
    ws.once('close', (code) => resolve(`closed ${code}`));
  }), 5000, 'WebSocket upgrade');
}

function pushBody(queue: string, topic: string, data: Uint8Array): Buffer {
  return namedBody(queue, topic, data);
}

/** Reads reply frames from a raw socket: [op, requestId, errorCode?] per frame. */
function replies(ws: WebSocket): { next(): Promise<{ op: number; requestId: number; code: number }> } {
  const queue: { op: number; requestId: number; code: number }[] = [];
  const waiting: ((f: { op: number; requestId: number; code: number }) => void)[] = [];
  ws.on('message', (data: Buffer) => {
    for (let at = 0; at + 12 <= data.length;) {
      const len = data.readUInt32LE(at);
      const f = { op: data[at + 5]!, requestId: data.readUInt32LE(at + 8), code: data[at + 5] === Op.ERROR ? data.readUInt16LE(at + 12) : 0 };
      const w = waiting.shift();
      if (w) w(f); else queue.push(f);
      at += 4 + len;
    }
  });
  return {
    next: () => within(new Promise((resolve) => {
      const f = queue.shift();
      if (f) resolve(f); else waiting.push(resolve);
    }), 5000, 'reply'),
  };
}

/** Pops `count` messages (a MESSAGES reply holds at most maxFrameBytes, so maybe in several pops). */
async function popAll(q: Queue, topic: string, count: number): Promise<Message[]> {
  const all: Message[] = [];
  while (all.length < count) {
    const batch = await q.popMany(topic, count - all.length, 1000);
    if (batch.length === 0) break;
    all.push(...batch);
  }
  return all;
}

t.test('engine.urls lists the tcp and the ws url with real ports', async (t) => {
  const { engine, wsUrl } = await startWsEngine(t);
  t.equal(engine.urls.length, 2);
  t.match(engine.urls[0], /^tcp:\/\/127\.0\.0\.1:[1-9]\d*$/);
  t.match(wsUrl, /^ws:\/\/127\.0\.0\.1:[1-9]\d*$/);
  t.not(new URL(wsUrl).port, new URL(engine.url).port, 'a separate port');
});

t.test('the Node client works over ws:// with the same API as over tcp://', async (t) => {
  const { engine, wsUrl } = await startWsEngine(t);
  const client = await connect(t, wsUrl);
  t.equal(client.url, wsUrl);
  t.ok(client.server.maxMessageBytes > 0, 'handshake done');
  const q = client.getQueue('ws');
  await q.push('t', 'héllo ✓');
  const m = await q.pop('t', 1000);
  t.same({ queue: m!.queue, topic: m!.topic, content: m!.content }, { queue: 'ws', topic: 't', content: 'héllo ✓' });
  await q.pushMany('many', ['a', 'b', 'c']);
  t.equal(await q.length('many'), 3);
  t.same((await q.popMany('many', 10, 0)).map((x) => x.content), ['a', 'b', 'c']);
  const started = performance.now();
  t.equal(await q.pop('empty', 150), null, 'a pop times out with null');
  t.ok(performance.now() - started >= 140, 'after about its timeout');
  // Crosses transports: pushed over tcp, popped over ws.
  const tcp = await connect(t, engine.url);
  const parked = q.pop('cross', 3000);
  await tcp.getQueue('ws').push('cross', 'from tcp');
  t.equal((await parked)!.content, 'from tcp');
  await client.ping();
});

t.test('binary payloads over ws: empty, every byte value, 1 MiB', async (t) => {
  const { wsUrl } = await startWsEngine(t);
  await checkBinaryRoundTrip(t, (await connect(t, wsUrl)).getQueue('bin'));
});

t.test('a subscription over ws receives messages and puts unconsumed ones back on close', async (t) => {
  const { wsUrl } = await startWsEngine(t);
  const client = await connect(t, wsUrl);
  const q = client.getQueue('sub');
  const sub = q.subscribe('s', { prefetch: 8 });
  const got: string[] = [];
  const loop = (async () => { for await (const m of sub) { got.push(m.content); if (got.length === 2) break; } })();
  await q.pushMany('s', ['1', '2']);
  await within(loop, 3000, 'subscription');
  t.same(got, ['1', '2']);
  t.ok(sub.closed);
  await q.push('s', '3');
  t.equal((await q.pop('s', 1000))!.content, '3', 'nothing left subscribed');
});

t.test('more than a message limit in one flush is cut into whole-frame messages the broker accepts', async (t) => {
  // Small frames: 100 KB of PUSH_MANY frames of at most 4 KiB each, in one flush.
  const small = await startWsEngine(t, { maxMessageBytes: 1000, maxFrameBytes: 4096, threads: 1 });
  const a = (await connect(t, small.wsUrl)).getQueue('split');
  await a.pushMany('t', Array.from({ length: 100 }, (_, i) => new Uint8Array(1000).fill(i)));
  t.equal(await a.length('t'), 100);
  t.same((await popAll(a, 't', 100)).map((m) => m.data[0]), Array.from({ length: 100 }, (_, i) => i), 'all, in order');
  // Default limits: 12 MiB in one turn (over maxFrameBytes = 8 MiB and over the 1 MiB target).
  const big = await startWsEngine(t, { threads: 1 });
  const b = (await connect(t, big.wsUrl)).getQueue('split');
  const mib = (i: number) => new Uint8Array(1024 * 1024).fill(i);
  await Promise.all([b.pushMany('big', Array.from({ length: 10 }, (_, i) => mib(i))), b.push('big', mib(10)), b.push('big', mib(11))]);
  t.equal(await b.length('big'), 12);
  const all = await popAll(b, 'big', 12);
  t.same(all.map((m) => m.data.length === 1024 * 1024 && m.data[0]), Array.from({ length: 12 }, (_, i) => i));
});

t.test('sendAsMessages keeps small flushes whole and cuts large ones only between frames', async (t) => {
  const f = (n: number) => frame(Op.PUSH, n, new Uint8Array(n));
  const small = Buffer.concat([f(10), f(20)]);
  const sent: Uint8Array[] = [];
  sendAsMessages(small, (m) => sent.push(m));
  t.equal(sent.length, 1);
  t.equal(sent[0], small, 'the same bytes, not a copy');
  const frames = [f(600_000), f(600_000), f(2_000_000), f(5), f(5)];
  const large = Buffer.concat(frames);
  const out: Uint8Array[] = [];
  sendAsMessages(large, (m) => out.push(m));
  t.same(out.map((m) => m.length), [frames[0]!.length, frames[1]!.length, frames[2]!.length, frames[3]!.length + frames[4]!.length]);
  t.ok(out.every((m) => m.length <= MESSAGE_TARGET_BYTES || m.length === frames[2]!.length), 'only a single large frame exceeds the target');
  t.ok(Buffer.concat(out).equals(large), 'nothing lost or reordered');
});

t.test('limits and errors are the TCP ones: an oversized message is answered ERR_MESSAGE_TOO_LARGE, an oversized frame closes', async (t) => {
  const { wsUrl } = await startWsEngine(t, { maxMessageBytes: 1000, maxFrameBytes: 4096, threads: 1 });
  const ws = rawSocket(t, wsUrl);
  t.equal(await outcome(ws), 'open');
  const r = replies(ws);
  ws.send(frame(Op.PUSH, 7, pushBody('q', 't', new Uint8Array(1001))));
  t.same(await r.next(), { op: Op.ERROR, requestId: 7, code: ErrorCode.ERR_MESSAGE_TOO_LARGE }, 'message over maxMessageBytes');
  ws.send(frame(Op.PUSH, 9, pushBody('', 't', new Uint8Array(1))));
  t.same(await r.next(), { op: Op.ERROR, requestId: 9, code: ErrorCode.ERR_INVALID_ARGUMENT }, 'empty queue name');
  ws.send(frame(Op.PING, 10));
  t.same(await r.next(), { op: Op.PONG, requestId: 10, code: 0 }, 'still open');
  const closed = new Promise<number>((resolve) => ws.once('close', resolve));
  ws.send(frame(Op.PUSH, 8, pushBody('q', 't', new Uint8Array(5000))));
  t.same(await r.next(), { op: Op.ERROR, requestId: 0, code: ErrorCode.ERR_MESSAGE_TOO_LARGE }, 'frame over maxFrameBytes: fatal');
  t.equal(await within(closed, 3000), 1000, 'then closed');
});

t.test('garbage, text messages and messages over the size limit close only that WebSocket', async (t) => {
  const { wsUrl } = await startWsEngine(t, { threads: 1 });
  const client = await connect(t, wsUrl);
  const garbage = rawSocket(t, wsUrl);
  t.equal(await outcome(garbage), 'open');
  const r = replies(garbage);
  const closed = new Promise<number>((resolve) => garbage.once('close', resolve));
  garbage.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  t.same(await r.next(), { op: Op.ERROR, requestId: 0, code: ErrorCode.ERR_PROTOCOL }, 'fatal ERR_PROTOCOL');
  t.equal(await within(closed, 3000), 1000, 'then closed');
  const text = rawSocket(t, wsUrl);
  t.equal(await outcome(text), 'open');
  const textClosed = new Promise<number>((resolve) => text.once('close', resolve));
  text.send('hello');
  t.equal(await within(textClosed, 3000), 1003, 'text refused: 1003');
  const huge = rawSocket(t, wsUrl);
  t.equal(await outcome(huge), 'open');
  const hugeClosed = new Promise<number>((resolve) => huge.once('close', resolve));
  huge.send(new Uint8Array(client.server.maxFrameBytes + 13));
  t.equal(await within(hugeClosed, 5000), 1009, 'over maxFrameBytes + header: 1009');
  await client.getQueue('q').push('t', 'alive');
  t.equal((await client.getQueue('q').pop('t', 0))!.content, 'alive', 'other connections go on');
});

t.test('Origin by default: loopback pages and non-browser clients connect, other sites get HTTP 403', async (t) => {
  const { wsUrl } = await startWsEngine(t, { threads: 1 });
  t.equal(await outcome(rawSocket(t, wsUrl)), 'open', 'no Origin (not a browser)');
  t.equal(await outcome(rawSocket(t, wsUrl, 'http://127.0.0.1:8080')), 'open');
  t.equal(await outcome(rawSocket(t, wsUrl, 'http://localhost:5173')), 'open');
  t.equal(await outcome(rawSocket(t, wsUrl, 'https://evil.example')), 'http 403');
  t.equal(await outcome(rawSocket(t, wsUrl, 'null')), 'http 403', 'file:// pages and sandboxed frames');
  t.equal(await outcome(rawSocket(t, wsUrl, 'http://127.0.0.1.evil.example')), 'http 403');
});

t.test('allowedOrigins: listed origins connect (the client works), any other Origin is refused', async (t) => {
  const { wsUrl } = await startWsEngine(t, { threads: 1, allowedOrigins: ['https://app.example.com/'] });
  t.equal(await outcome(rawSocket(t, wsUrl, 'https://evil.example')), 'http 403', 'a wrong Origin');
  t.equal(await outcome(rawSocket(t, wsUrl, 'http://127.0.0.1:8080')), 'http 403', 'loopback is not implied once a list is given');
  // The real client, sending the allowed Origin.
  class AppOrigin extends WebSocket {
    constructor(url: string) { super(url, { origin: 'https://app.example.com' }); }
  }
  const transport = await connectWebSocket(wsUrl, 3000, AppOrigin as unknown as typeof globalThis.WebSocket);
  const client = await TurboClient.connectTransport(transport, wsUrl);
  t.teardown(() => client.close());
  await client.getQueue('q').push('t', 'allowed');
  t.equal((await client.getQueue('q').pop('t', 0))!.content, 'allowed');
  class WrongOrigin extends WebSocket {
    constructor(url: string) { super(url, { origin: 'https://evil.example' }); }
  }
  await t.rejects(connectWebSocket(wsUrl, 3000, WrongOrigin as unknown as typeof globalThis.WebSocket), { code: 'ERR_CONNECTION_CLOSED' }, 'the client sees a failed connection');
  t.ok(originAllowed('https://anything.example', ['*']), '"*" allows any origin');
});

t.test('connection cap: maxConnectionsPerThread WebSocket connections, then refused (HTTP 503) until one closes', async (t) => {
  const { wsUrl } = await startWsEngine(t, { threads: 1, maxConnectionsPerThread: 2 });
  const a = await TurboClient.connect(wsUrl, { connectTimeoutMs: 3000 });
  t.teardown(() => a.close());
  await connect(t, wsUrl);
  const refused = await TurboClient.connect(wsUrl, { connectTimeoutMs: 3000 }).then((c) => c.close().then(() => undefined), (e: unknown) => e);
  t.match(refused, { code: 'ERR_CONNECTION_CLOSED' }, 'the third is refused (HTTP 503 before the upgrade)');
  const raw = rawSocket(t, wsUrl);
  t.match(await outcome(raw), /^(http 503|closed \d+)$/, 'a raw upgrade sees 503 (or a refused connection while the full worker pauses)');
  await a.close();
  let again: TurboClient | undefined;
  for (let i = 0; i < 50 && again === undefined; i++) {
    again = await TurboClient.connect(wsUrl, { connectTimeoutMs: 3000 }).catch(async () => { await delay(20); return undefined; });
  }
  t.ok(again, 'a slot is free again after a close');
  await again?.close();
});

t.test('engine.stop() ends WebSocket clients: pending calls reject with ERR_CONNECTION_CLOSED', async (t) => {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 1, listen: ['ws://127.0.0.1:0'] });
  await engine.run();
  t.teardown(() => engine.destroy());
  const client = await TurboClient.connect(engine.urls[1]!);
  t.teardown(() => client.close());
  const pending = client.getQueue('q').pop('never').catch((err: unknown) => err);
  await delay(50);
  await engine.stop();
  t.match(await within(pending, 5000, 'pending pop'), { code: 'ERR_CONNECTION_CLOSED' });
  await t.rejects(client.getQueue('q').push('t', 'x'), { code: 'ERR_CONNECTION_CLOSED' });
});
