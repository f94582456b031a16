// The client's in-place encoder (src/client/outgoing.ts, utf8.ts) against the core's own:
// every byte the client sends for push and pushMany equals what the core encoders write
// with one encodeRecord per message (test/support/frames.ts FrameWriter), for strings of
// every UTF-8 length class (lone surrogates included), bytes, writer and memory growth
// mid-batch, frames split at maxFrameBytes, and a batch undone by a bad item. And the reply
// side: MESSAGES replies cut at every byte boundary decode to the same messages.
//
// The client runs over a transport that records what it sends and answers like a broker
// (HELLO_OK with chosen limits, OK per request) with frames from the core's encoders.

import t, { type Test } from 'tap';
import { TurboClient, type Queue } from '../../src/index.ts';
import type { Transport } from '../../src/client/transport.ts';
import { loadLocalCore } from '../../src/core/load.ts';
import { FrameWriter, encodeName } from '../support/frames.ts';
import { utf8Length, writeUtf8, encodeIntoWriter } from '../../src/client/utf8.ts';
import { nodePlatform } from '../../src/client/node.ts';
import { EARLY_FLUSH_BYTES } from '../../src/client/connection.ts';
import { Op, HEADER_BYTES, DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes } from '../../src/protocol.ts';

const core = await loadLocalCore();
if (core.exports.attach() < 0) throw new Error("cannot attach the local core");
const expected = new FrameWriter(core);
const textEncoder = new TextEncoder();
const utf8 = (s: string) => textEncoder.encode(s);

/** Frames in `bytes`, each as [op, requestId, frame bytes]. */
function frames(bytes: Uint8Array): [number, number, Uint8Array][] {
  const out: [number, number, Uint8Array][] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let p = 0; p < bytes.length;) {
    const total = 4 + dv.getUint32(p, true);
    out.push([bytes[p + 5]!, dv.getUint32(p + 8, true), bytes.subarray(p, p + total)]);
    p += total;
  }
  return out;
}

interface Broker {
  client: TurboClient;
  /** Everything the client sent since the last call (after the handshake). */
  take(): Uint8Array;
  /** The sends since the last take() or pieces(), one array per transport.send. */
  pieces(): Uint8Array[];
  /** Hands `reply` to the client in pieces cut at `cuts`. */
  reply(reply: Uint8Array, cuts?: number[]): void;
  /** Answer every request with OK (default true). */
  autoOk: boolean;
}

async function fakeBroker(t: Test, maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES, maxFrameBytes = defaultMaxFrameBytes(maxMessageBytes)): Promise<Broker> {
  const sent: Uint8Array[] = [];
  const answers = new FrameWriter(core);
  const broker = {} as Broker;
  broker.autoOk = true;
  const transport: Transport = {
    onData: () => {},
    onClose: () => {},
    send(bytes) {
      sent.push(bytes.slice());
      for (const [op, id] of frames(bytes)) {
        if (op === Op.HELLO) answers.helloOk(id, maxMessageBytes, maxFrameBytes, 'test');
        else if (op === Op.AUTH) answers.ok(id); // a broker without auth accepts any token
        else if (broker.autoOk && (op === Op.PUSH || op === Op.PUSH_MANY || op === Op.PUSH_MANY_EX || op === Op.PUSH_EX)) answers.ok(id);
      }
      if (answers.byteLength > 0) {
        const reply = answers.take();
        queueMicrotask(() => transport.onData(reply));
      }
    },
    close() {
      queueMicrotask(() => transport.onClose());
    },
  };
  broker.client = await TurboClient.connectTransport(transport, 'test://encode');
  sent.length = 0;
  broker.take = () => {
    const all = Buffer.concat(sent);
    sent.length = 0;
    return new Uint8Array(all);
  };
  broker.pieces = () => sent.splice(0);
  broker.reply = (reply, cuts = []) => {
    let at = 0;
    for (const cut of [...cuts, reply.length]) {
      if (cut > at) transport.onData(reply.slice(at, cut));
      at = Math.max(at, cut);
    }
  };
  t.teardown(() => { broker.client.close().catch(() => {}); answers.free(); });
  return broker;
}

/** Strings of every UTF-8 length class, lone surrogates, the loop/native boundary (64) and long ones. */
const STRINGS = [
  '', 'a', 'hello world 16 B', 'héllo', 'ß', '日本語のテキスト', '😀', 'a😀b', '\ud800', 'x\udc00y', '\udbff\udfff', '\ud83d', 'end\ud83d',
  'a'.repeat(63), 'a'.repeat(64), 'a'.repeat(65), 'é'.repeat(64), 'é'.repeat(65), 'a'.repeat(64) + 'é', '😀'.repeat(40),
  'z'.repeat(70_000) + 'é', '\u0000\u007f\u0080\u07ff\u0800\uffff',
];
const BYTES = [new Uint8Array(0), Uint8Array.of(0, 1, 2, 255), new Uint8Array(Buffer.from('0123456789abcdef').buffer, 3, 5), Buffer.from('a buffer')];

const Q = 'encode-q', T = 'topic-é';

t.test('pushMany: the client writes exactly the core encoder\'s bytes', async (t) => {
  const b = await fakeBroker(t);
  const q = b.client.getQueue(Q);
  const items: (string | Uint8Array)[] = [...STRINGS, ...BYTES, ...STRINGS.map((s) => s + '!')];
  await q.pushMany(T, items);
  const got = b.take();
  const [[op, id]] = frames(got) as [[number, number, Uint8Array]];
  t.equal(op, Op.PUSH_MANY);
  expected.pushMany(id, encodeName(Q), encodeName(T), items.map((x) => typeof x === 'string' ? utf8(x) : x));
  t.same(Buffer.from(got), Buffer.from(expected.take()));
});

t.test('push: string and bytes data equal the core encoder\'s frame', async (t) => {
  const b = await fakeBroker(t);
  const q = b.client.getQueue(Q);
  for (const item of [...STRINGS, ...BYTES]) {
    await q.push(T, item);
    const got = b.take();
    const [[op, id]] = frames(got) as [[number, number, Uint8Array]];
    expected.push(id, encodeName(Q), encodeName(T), typeof item === 'string' ? utf8(item) : item);
    if (op !== Op.PUSH || Buffer.compare(Buffer.from(got), Buffer.from(expected.take())) !== 0) t.fail(`push of ${JSON.stringify(item).slice(0, 40)}`);
  }
  t.pass('every push frame equal');
});

t.test('pushMany with delayMs: PUSH_MANY_EX as the core writes it', async (t) => {
  const b = await fakeBroker(t);
  const q = b.client.getQueue(Q);
  const items = ['one', 'twö', Uint8Array.of(3)];
  await q.pushMany(T, items, { delayMs: 250 });
  const got = b.take();
  const [[op, id]] = frames(got) as [[number, number, Uint8Array]];
  t.equal(op, Op.PUSH_MANY_EX);
  const e = core.exports, w = e.writerNew(256);
  const names = e.alloc(512);
  const qn = encodeName(Q), tn = encodeName(T);
  core.view.write(names, qn);
  core.view.write(names + 256, tn);
  const mark = e.encodePushManyExBegin(w, id, names, qn.length, names + 256, tn.length, 250);
  for (const x of items) {
    const bytes = typeof x === 'string' ? utf8(x) : x;
    core.view.write(e.encodeRecord(w, bytes.length), bytes);
  }
  e.encodeRecordsEnd(w, mark, items.length);
  t.same(Buffer.from(got), Buffer.from(core.view.copy(e.writerData(w), e.writerLength(w))));
  e.writerFree(w);
  e.free(names);
});

t.test('a batch that grows the writer and the memory several times is still byte-exact', async (t) => {
  const b = await fakeBroker(t);
  const q = b.client.getQueue(Q);
  // ~3 MB of records: the writer starts at 64 KiB and the client's memory at 128 KiB.
  const items = Array.from({ length: 60_000 }, (_, i) => (i % 3 === 0 ? 'é'.repeat(10) : 'x'.repeat(30)) + i);
  await q.pushMany(T, items);
  const got = b.take();
  const [[, id]] = frames(got) as [[number, number, Uint8Array]];
  expected.pushMany(id, encodeName(Q), encodeName(T), items.map(utf8));
  t.same(Buffer.compare(Buffer.from(got), Buffer.from(expected.take())), 0, 'equal');
});

t.test('frames are split at maxFrameBytes exactly as the greedy rule says', async (t) => {
  const maxFrameBytes = 4096;
  const b = await fakeBroker(t, 1000, maxFrameBytes);
  const q = b.client.getQueue(Q);
  const items = Array.from({ length: 200 }, (_, i) => (i % 7 === 0 ? 'ü'.repeat(400) : 'm'.repeat(i % 50)));
  await q.pushMany(T, items);
  const got = frames(b.take());
  // The rule: a frame takes records while its records fit in maxFrameBytes - header - two
  // 255-byte names with their length bytes - count and delay (and always at least one).
  const budget = maxFrameBytes - 12 - 2 * 256 - 8;
  const bytes = items.map(utf8);
  let start = 0, i = 0;
  for (const [op, id, frame] of got) {
    let used = 0, end = start;
    while (end < bytes.length && (end === start || used + 4 + bytes[end]!.length <= budget)) used += 4 + bytes[end++]!.length;
    expected.pushMany(id, encodeName(Q), encodeName(T), bytes, start, end);
    if (op !== Op.PUSH_MANY || Buffer.compare(Buffer.from(frame), Buffer.from(expected.take())) !== 0) t.fail(`frame ${i}`);
    start = end;
    i++;
  }
  t.equal(start, items.length, 'every item sent once');
  t.ok(got.length > 5, `${got.length} frames`);
});

t.test('one send per tick, in pieces that grow with what the broker has still to answer', async (t) => {
  const b = await fakeBroker(t);
  const q = b.client.getQueue(Q);
  // A small tick: every request in one send.
  await Promise.all([q.push(T, 'a'), q.pushMany(T, ['b', 'c']), q.push(T, 'd')]);
  const small = b.pieces();
  t.equal(small.length, 1, 'three requests, one send');
  t.equal(frames(small[0]!).length, 3);
  // A large tick: 200 batches of 64 x 16 B (about 270 KiB) go out while the tick is still
  // encoding, each send whole frames, in request order. Nothing is answered during the tick,
  // so each piece waits until it is at least what was sent before it: 8 KiB, 8 KiB, 16 KiB,
  // 32 KiB, ... (the broker always has about as much to do as the client has to send).
  const item = 'x'.repeat(16);
  const batch = Array.from({ length: 64 }, () => item);
  const calls: Promise<void>[] = [];
  for (let i = 0; i < 200; i++) calls.push(q.pushMany(T, batch));
  await Promise.all(calls);
  const pieces = b.pieces();
  const perFrame = frames(pieces[0]!)[0]![2].length;
  const ids = pieces.flatMap((p) => frames(p).map(([op, id, f]) => (op === Op.PUSH_MANY && f.length === perFrame ? id : -1)));
  t.equal(ids.length, 200, 'every batch sent once, as whole frames');
  t.ok(ids.every((id, i) => id > 0 && (i === 0 || id > ids[i - 1]!)), 'in request order');
  t.ok(pieces.length >= 4, `${pieces.length} sends for ${200 * perFrame} B`);
  let before = 0;
  for (const [i, p] of pieces.entries()) {
    const last = i === pieces.length - 1;
    if (!last && p.length < Math.max(EARLY_FLUSH_BYTES, before)) t.fail(`piece ${i} (${p.length} B) left early: ${before} B were sent before it`);
    if (p.length >= Math.max(EARLY_FLUSH_BYTES, before) + perFrame) t.fail(`piece ${i} (${p.length} B) waited a frame too long (${before} B before it)`);
    before += p.length;
  }
  // Once everything is answered the backlog is empty, and the next large tick starts with an
  // 8 KiB piece again.
  const again: Promise<void>[] = [];
  for (let i = 0; i < 20; i++) again.push(q.pushMany(T, batch));
  await Promise.all(again);
  const next = b.pieces();
  t.ok(next.length >= 2, `${next.length} sends for ${20 * perFrame} B`);
  t.ok(next[0]!.length >= EARLY_FLUSH_BYTES && next[0]!.length < EARLY_FLUSH_BYTES + perFrame, `first piece ${next[0]!.length} B`);
});

t.test('no early piece while the broker has more than the tick waiting: one send', async (t) => {
  const b = await fakeBroker(t);
  const q = b.client.getQueue(Q);
  const batch = Array.from({ length: 64 }, () => 'x'.repeat(16));
  // 100 batches sent and not answered: the broker has about 130 KiB to work through.
  b.autoOk = false;
  const held: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) held.push(q.pushMany(T, batch));
  await new Promise((resolve) => setImmediate(resolve));
  const first = b.pieces();
  const backlog = first.reduce((n, p) => n + p.length, 0);
  const perFrame = frames(first[0]!)[0]![2].length;
  // A tick of 40 more batches (about 52 KiB, under the backlog): one send.
  for (let i = 0; i < 40; i++) held.push(q.pushMany(T, batch));
  await new Promise((resolve) => setImmediate(resolve));
  const second = b.pieces();
  t.equal(second.length, 1, `one send of ${40 * perFrame} B with ${backlog} B unanswered`);
  // Answer them all (request ids from the frames sent), and everything resolves.
  const answers = new FrameWriter(core);
  for (const p of [...first, ...second]) for (const [, id] of frames(p)) answers.ok(id);
  b.reply(answers.take());
  answers.free();
  await Promise.all(held);
  t.pass('every held batch answered');
});

t.test('a bad item undoes the whole batch: nothing of it is sent', async (t) => {
  const b = await fakeBroker(t, 1000);
  const q = b.client.getQueue(Q);
  await t.rejects(q.pushMany(T, ['fine', 'also fine', 42 as unknown as string]), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(q.pushMany(T, ['fine', 'é'.repeat(501)]), { code: 'ERR_MESSAGE_TOO_LARGE' });
  await t.rejects(q.pushMany(T, ['fine', 'x'.repeat(1001)]), { code: 'ERR_MESSAGE_TOO_LARGE' });
  await t.rejects(q.pushMany(T, ['fine', new Uint8Array(1001)]), { code: 'ERR_MESSAGE_TOO_LARGE' });
  await q.push(T, 'after');
  const got = frames(b.take());
  t.equal(got.length, 1, 'only the push after went out');
  expected.push(got[0]![1], encodeName(Q), encodeName(T), utf8('after'));
  t.same(Buffer.from(got[0]![2]), Buffer.from(expected.take()));
});

t.test('a request made from inside a pushMany item (a getter) is refused; the batch is intact', async (t) => {
  const b = await fakeBroker(t);
  const q: Queue = b.client.getQueue(Q);
  const other = b.client.getQueue('other-queue');
  let nested: Promise<void> | undefined;
  const items = ['a', 'b', 'c'];
  Object.defineProperty(items, 1, { get: () => { nested = other.push('elsewhere', 'sneaky'); return 'b'; } });
  await q.pushMany(T, items);
  await t.rejects(nested!, { code: 'ERR_INVALID_ARGUMENT' });
  const got = frames(b.take());
  t.equal(got.length, 1);
  expected.pushMany(got[0]![1], encodeName(Q), encodeName(T), ['a', 'b', 'c'].map(utf8));
  t.same(Buffer.from(got[0]![2]), Buffer.from(expected.take()));
});

t.test('a MESSAGES reply cut at any byte decodes to the same messages', async (t) => {
  const b = await fakeBroker(t);
  const q = b.client.getQueue(Q);
  const data = ['first', '', 'dritté', '😀 emoji', 'x'.repeat(300)];
  const e = core.exports;
  const w = e.writerNew(1024);
  const encodeReply = (id: number) => {
    const mark = e.encodeRecordsBegin(w, Op.MESSAGES, id, 0);
    data.forEach((s, i) => {
      const bytes = utf8(s);
      core.view.write(e.encodeStoredRecord(w, bytes.length, 1 + i, 1000 + i, i === 4 ? 7 : 0), bytes);
    });
    e.encodeRecordsEnd(w, mark, data.length);
    const reply = core.view.copy(e.writerData(w), e.writerLength(w));
    e.writerReset(w);
    return reply;
  };
  const sizes = encodeReply(1).length;
  let bad = 0;
  for (let cut = 0; cut <= sizes; cut++) {
    const popped = q.popMany(T, 10, 0);
    await new Promise((resolve) => setImmediate(resolve));
    const [[op, id]] = frames(b.take()) as [[number, number, Uint8Array]];
    if (op !== Op.POP_MANY) t.fail('not a POP_MANY');
    const reply = encodeReply(id);
    // Two cuts: at `cut`, and inside the header so some replies start in an earlier chunk.
    b.reply(reply, cut < HEADER_BYTES ? [cut] : [HEADER_BYTES >> 1, cut]);
    const ms = await popped;
    const ok = ms.length === data.length && ms.every((m, i) => m.content === data[i] && Buffer.from(m.data).equals(Buffer.from(utf8(data[i]!)))
      && m.deliveries === 1 + i && m.id === (i === 4 ? String(7 * 2 ** 32 + 1004) : String(1000 + i)) && m.queue === Q && m.topic === T);
    if (!ok) bad++;
  }
  e.writerFree(w);
  t.equal(bad, 0, `every cut from 0 to ${sizes}`);
});

t.test('utf8Length and writeUtf8 (the browser\'s encodeInto path too) agree with TextEncoder', async (t) => {
  const dst = new Uint8Array(300_000);
  const writers = { encodeInto: encodeIntoWriter(dst), node: nodePlatform.utf8Writer!(dst) };
  let bad = 0;
  for (const s of [...STRINGS, ...STRINGS.map((x) => x + '\ud83d' + x)]) {
    const want = utf8(s);
    if (utf8Length(s) !== want.length) bad++;
    for (const native of Object.values(writers)) {
      dst.fill(0xAA);
      const n = writeUtf8(s, dst, 7, native);
      if (n !== want.length || Buffer.compare(Buffer.from(dst.subarray(7, 7 + n)), Buffer.from(want)) !== 0 || dst[6] !== 0xAA || dst[7 + n] !== 0xAA) bad++;
    }
  }
  t.equal(bad, 0);
  // Near the end of the memory: the exact length fits, three bytes per unit would not.
  const end = dst.length - 6;
  t.equal(writeUtf8('é'.repeat(70) + 'abc', dst, dst.length - 143, writers.node), 143);
  t.equal(writers.node('éèê', end), 6);
  t.same([...dst.subarray(end)], [...utf8('éèê')]);
});
