// The frame codec (assembly/codec.ts) through its JS wrappers (src/core/frames.ts):
// round trips of every frame type, random chunk boundaries, adversarial input, bounded
// memory while skipping an oversized frame, and memory returned on free.
import t from 'tap';
import { loadLocalCore, loadSharedCore } from '../../src/core/load.ts';
import { newSharedMemory, type Core } from '../../src/core/wasm.ts';
import { FrameDecoder, FrameWriter, encodeName } from '../../src/core/frames.ts';
import { ErrorCode, Op, OP_REJECT, DESC_CAPACITY, TIMEOUT_INFINITE, HEADER_BYTES, PROTOCOL_VERSION } from '../../src/protocol.ts';
import { TurboError } from '../../src/errors.ts';

const MAX_MESSAGE = 1024 * 1024;
const MAX_FRAME = MAX_MESSAGE + 1024;

const local = await loadLocalCore();
local.exports.attach();

function inUse(core: Core): number {
  return Number(core.exports.bytesInUse());
}

/** Everything a descriptor says, as plain data (data/records copied). */
interface Decoded {
  op: number;
  flags: number;
  requestId: number;
  queue?: string;
  topic?: string;
  version?: number;
  data?: number[];
  records?: number[][];
  arg0: number;
  arg1: number;
}

function snapshot(dec: FrameDecoder, i: number): Decoded {
  const op = dec.op(i);
  const out: Decoded = { op, flags: dec.flags(i), requestId: dec.requestId(i), arg0: dec.arg0(i), arg1: dec.arg1(i) };
  if (dec.queueLen(i) > 0 && op !== Op.HELLO_OK) out.queue = dec.queue(i);
  if (dec.topicLen(i) > 0) out.topic = dec.topic(i);
  if (op === Op.HELLO_OK) out.version = dec.queueLen(i);
  if (op === Op.MESSAGES || op === Op.DELIVER || op === Op.PUSH_MANY || op === Op.RETURN) out.records = dec.records(i).map((r) => [...r]);
  else if (dec.dataLen(i) > 0 || op === Op.PUSH) out.data = [...dec.dataCopy(i)];
  return out;
}

/** Feeds `chunks` one by one, decoding after each; a fatal error ends the list as { fatal }. */
function decodeChunks(core: Core, chunks: Uint8Array[], maxFrame = MAX_FRAME, maxMessage = MAX_MESSAGE): { frames: Decoded[]; fatal?: string } {
  const dec = new FrameDecoder(core, maxFrame, maxMessage);
  const frames: Decoded[] = [];
  try {
    for (const chunk of chunks) {
      dec.feed(chunk);
      for (;;) {
        const n = dec.next();
        for (let i = 0; i < n; i++) frames.push(snapshot(dec, i));
        if (n < DESC_CAPACITY) break;
      }
    }
    return { frames };
  } catch (err) {
    if (err instanceof TurboError) return { frames, fatal: err.code };
    throw err;
  } finally {
    dec.free();
  }
}

function decodeAll(core: Core, bytes: Uint8Array, maxFrame = MAX_FRAME, maxMessage = MAX_MESSAGE) {
  return decodeChunks(core, [bytes], maxFrame, maxMessage);
}

/** Seeded PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}

/** Splits `bytes` at random points (chunk sizes 1..maxChunk). */
function split(bytes: Uint8Array, rand: () => number, maxChunk: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length;) {
    const n = 1 + ((rand() * maxChunk) | 0);
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}

/** A frame built by hand (independent of the Wasm writer), for malformed input. */
function rawFrame(op: number, requestId: number, body: Uint8Array | number[], opts: { ver?: number; length?: number; flags?: number } = {}): Uint8Array {
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  const f = new Uint8Array(HEADER_BYTES + b.length);
  const dv = new DataView(f.buffer);
  dv.setUint32(0, opts.length ?? 8 + b.length, true);
  f[4] = opts.ver ?? 1;
  f[5] = op;
  dv.setUint16(6, opts.flags ?? 0, true);
  dv.setUint32(8, requestId, true);
  f.set(b, HEADER_BYTES);
  return f;
}

const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const u16 = (n: number) => [n & 0xff, (n >>> 8) & 0xff];
const name = (s: string) => [s.length, ...Buffer.from(s)];
const concat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));

function ping(requestId: number): Uint8Array {
  return rawFrame(Op.PING, requestId, []);
}

/** Writes one random valid frame with `w`; returns what decoding it must give. */
function randomFrame(w: FrameWriter, rand: () => number): Decoded {
  const req = (rand() * 0x100000000) >>> 0;
  const pick = (rand() * 20) | 0;
  const rname = () => 'n'.repeat(1 + ((rand() * 20) | 0)) + ((rand() * 1000) | 0);
  const q = rname(), tp = rname();
  const rdata = () => [...randomBytes(rand, rand() < 0.2 ? 0 : (rand() * 300) | 0)];
  const u = () => (rand() * 0x100000000) >>> 0;
  switch (pick) {
    case 0: { const a = (rand() * 65536) | 0, b = (rand() * 65536) | 0; w.hello(req, a, b); return { op: Op.HELLO, flags: 0, requestId: req, arg0: a, arg1: b }; }
    case 1: w.ping(req); return { op: Op.PING, flags: 0, requestId: req, arg0: 0, arg1: 0 };
    case 2: { const d = rdata(); w.push(req, encodeName(q), encodeName(tp), Uint8Array.from(d)); return { op: Op.PUSH, flags: 0, requestId: req, queue: q, topic: tp, data: d, arg0: 0, arg1: 0 }; }
    case 3: {
      const rs = Array.from({ length: (rand() * 5) | 0 }, rdata);
      w.pushMany(req, encodeName(q), encodeName(tp), rs.map((r) => Uint8Array.from(r)));
      return { op: Op.PUSH_MANY, flags: 0, requestId: req, queue: q, topic: tp, records: rs, arg0: rs.length, arg1: 0 };
    }
    case 4: { const a = u(); w.pop(req, encodeName(q), encodeName(tp), a); return { op: Op.POP, flags: 0, requestId: req, queue: q, topic: tp, arg0: a, arg1: 0 }; }
    case 5: { const a = u() || 1, b = u(); w.popMany(req, encodeName(q), encodeName(tp), a, b); return { op: Op.POP_MANY, flags: 0, requestId: req, queue: q, topic: tp, arg0: a, arg1: b }; }
    case 6: w.length(req, encodeName(q), encodeName(tp)); return { op: Op.LENGTH, flags: 0, requestId: req, queue: q, topic: tp, arg0: 0, arg1: 0 };
    case 7: { const a = u() || 1, b = u(); w.subscribe(req, encodeName(q), encodeName(tp), a, b); return { op: Op.SUBSCRIBE, flags: 0, requestId: req, queue: q, topic: tp, arg0: a, arg1: b }; }
    case 8: { const a = u(); w.unsubscribe(req, a); return { op: Op.UNSUBSCRIBE, flags: 0, requestId: req, arg0: a, arg1: 0 }; }
    case 9: { const a = u(), b = u(); w.credit(req, a, b); return { op: Op.CREDIT, flags: 0, requestId: req, arg0: a, arg1: b }; }
    case 10: { const a = u(); w.cancel(req, a); return { op: Op.CANCEL, flags: 0, requestId: req, arg0: a, arg1: 0 }; }
    case 11: w.ok(req); return { op: Op.OK, flags: 0, requestId: req, arg0: 0, arg1: 0 };
    case 12: w.pong(req); return { op: Op.PONG, flags: 0, requestId: req, arg0: 0, arg1: 0 };
    case 13: w.empty(req); return { op: Op.EMPTY, flags: 0, requestId: req, arg0: 0, arg1: 0 };
    case 14: { const a = u(); w.lengthOk(req, a); return { op: Op.LENGTH_OK, flags: 0, requestId: req, arg0: a, arg1: 0 }; }
    case 15: {
      const a = u(), b = u(), v = rname();
      w.helloOk(req, a, b, v);
      return { op: Op.HELLO_OK, flags: 0, requestId: req, version: PROTOCOL_VERSION, data: [...Buffer.from(v)], arg0: a, arg1: b };
    }
    case 16:
    case 17: {
      const rs = Array.from({ length: 1 + ((rand() * 5) | 0) }, rdata);
      const op = pick === 16 ? Op.MESSAGES : Op.DELIVER;
      if (op === Op.MESSAGES) w.messages(req, rs.map((r) => Uint8Array.from(r)));
      else w.deliver(req, rs.map((r) => Uint8Array.from(r)));
      return { op, flags: 0, requestId: req, records: rs, arg0: rs.length, arg1: 0 };
    }
    case 18: {
      const rs = Array.from({ length: (rand() * 5) | 0 }, rdata);
      w.returnRecords(req, encodeName(q), encodeName(tp), rs.map((r) => Uint8Array.from(r)));
      return { op: Op.RETURN, flags: 0, requestId: req, queue: q, topic: tp, records: rs, arg0: rs.length, arg1: 0 };
    }
    default: {
      const code = 1 + ((rand() * 11) | 0), text = rand() < 0.2 ? '' : `error ${rname()}`;
      w.error(req, code, text);
      const d: Decoded = { op: Op.ERROR, flags: 0, requestId: req, arg0: code, arg1: 0 };
      if (text.length > 0) d.data = [...Buffer.from(text)];
      return d;
    }
  }
}

// ── Round trips ──────────────────────────────────────────────────────────────────────

for (const [label, getCore] of [
  ['local', async () => local],
  ['shared', async () => { const c = await loadSharedCore(newSharedMemory()); c.exports.attach(); return c; }],
] as const) {
  t.test(`every opcode round-trips through writer and decoder (${label} core)`, async (t) => {
    const core = await getCore();
    const w = new FrameWriter(core, 64);
    const q = encodeName('orders'), tp = encodeName('eu');
    const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
    const expected: Decoded[] = [];
    const add = (d: Omit<Decoded, 'flags' | 'arg0' | 'arg1'> & Partial<Decoded>) => expected.push({ flags: 0, arg0: 0, arg1: 0, ...d });
    w.hello(1, 1, 3); add({ op: Op.HELLO, requestId: 1, arg0: 1, arg1: 3 });
    w.ping(2); add({ op: Op.PING, requestId: 2 });
    w.push(3, q, tp, binary); add({ op: Op.PUSH, requestId: 3, queue: 'orders', topic: 'eu', data: [...binary] });
    w.push(4, q, tp, new Uint8Array(0)); add({ op: Op.PUSH, requestId: 4, queue: 'orders', topic: 'eu', data: [] });
    w.pushMany(5, q, tp, [binary, new Uint8Array(0), Uint8Array.of(7)]);
    add({ op: Op.PUSH_MANY, requestId: 5, queue: 'orders', topic: 'eu', records: [[...binary], [], [7]], arg0: 3 });
    w.pushMany(6, q, tp, []); add({ op: Op.PUSH_MANY, requestId: 6, queue: 'orders', topic: 'eu', records: [], arg0: 0 });
    w.pop(7, q, tp, TIMEOUT_INFINITE); add({ op: Op.POP, requestId: 7, queue: 'orders', topic: 'eu', arg0: TIMEOUT_INFINITE });
    w.popMany(8, q, tp, 100, 0); add({ op: Op.POP_MANY, requestId: 8, queue: 'orders', topic: 'eu', arg0: 100, arg1: 0 });
    w.length(9, q, tp); add({ op: Op.LENGTH, requestId: 9, queue: 'orders', topic: 'eu' });
    w.subscribe(10, q, tp, 64, 1); add({ op: Op.SUBSCRIBE, requestId: 10, queue: 'orders', topic: 'eu', arg0: 64, arg1: 1 });
    w.unsubscribe(11, 10); add({ op: Op.UNSUBSCRIBE, requestId: 11, arg0: 10 });
    w.credit(0, 10, 5); add({ op: Op.CREDIT, requestId: 0, arg0: 10, arg1: 5 });
    w.cancel(0, 7); add({ op: Op.CANCEL, requestId: 0, arg0: 7 });
    w.returnRecords(14, q, tp, [Uint8Array.of(5), binary]);
    add({ op: Op.RETURN, requestId: 14, queue: 'orders', topic: 'eu', records: [[5], [...binary]], arg0: 2 });
    w.ok(12); add({ op: Op.OK, requestId: 12 });
    w.helloOk(1, MAX_MESSAGE, MAX_FRAME, '0.1.0'); add({ op: Op.HELLO_OK, requestId: 1, version: 1, data: [...Buffer.from('0.1.0')], arg0: MAX_MESSAGE, arg1: MAX_FRAME });
    w.pong(2); add({ op: Op.PONG, requestId: 2 });
    w.empty(7); add({ op: Op.EMPTY, requestId: 7 });
    w.messages(8, [binary, new Uint8Array(0)]); add({ op: Op.MESSAGES, requestId: 8, records: [[...binary], []], arg0: 2 });
    w.lengthOk(9, 0xFFFFFFFF); add({ op: Op.LENGTH_OK, requestId: 9, arg0: 0xFFFFFFFF });
    w.deliver(10, [Uint8Array.of(1, 2, 3)]); add({ op: Op.DELIVER, requestId: 10, records: [[1, 2, 3]], arg0: 1 });
    w.error(13, ErrorCode.ERR_EXCLUSIVE, 'the topic has an exclusive consumer ✓');
    add({ op: Op.ERROR, requestId: 13, data: [...Buffer.from('the topic has an exclusive consumer ✓')], arg0: ErrorCode.ERR_EXCLUSIVE });
    w.error(0xFFFFFFFF, ErrorCode.ERR_PROTOCOL, ''); add({ op: Op.ERROR, requestId: 0xFFFFFFFF, arg0: 1 });
    w.serverStats(15); add({ op: Op.SERVER_STATS, requestId: 15 });
    w.shutdown(16); add({ op: Op.SHUTDOWN, requestId: 16 });
    w.statsJson(15, '{"topics":3,"name":"ü"}'); add({ op: Op.STATS_JSON, requestId: 15, data: [...Buffer.from('{"topics":3,"name":"ü"}')] });
    w.statsJson(15, ''); add({ op: Op.STATS_JSON, requestId: 15 });
    const bytes = w.take();
    t.equal(w.byteLength, 0, 'take() resets the writer');
    const { frames, fatal } = decodeAll(core, bytes);
    t.equal(fatal, undefined);
    t.strictSame(frames, expected);
    t.strictSame(frames.map((f) => f.op), expected.map((f) => f.op), 'ops in order');
    w.free();
  });
}

t.test('PUSH encodes byte for byte as the example in docs/protocol.md', async (t) => {
  const w = new FrameWriter(local);
  w.push(7, encodeName('q'), encodeName('t'), Buffer.from('hi'));
  t.strictSame([...w.take()], [0x0e, 0, 0, 0, 1, 0x10, 0, 0, 7, 0, 0, 0, 1, 0x71, 1, 0x74, 0x68, 0x69]);
  w.free();
});

t.test('255-byte names and a 1 MiB message round-trip; 256-byte and empty names are refused', async (t) => {
  const w = new FrameWriter(local, 64);
  const longQ = 'q'.repeat(255), longT = 'é'.repeat(127) + 'x'; // 255 bytes of UTF-8
  const big = randomBytes(prng(1), MAX_MESSAGE);
  w.push(1, encodeName(longQ), encodeName(longT), big);
  w.pushMany(2, encodeName(longQ), encodeName(longT), [big]);
  const { frames, fatal } = decodeAll(local, w.take());
  t.equal(fatal, undefined);
  t.equal(frames.length, 2);
  t.equal(frames[0]!.queue, longQ);
  t.equal(frames[0]!.topic, longT);
  t.ok(Buffer.from(frames[0]!.data!).equals(big), 'PUSH data intact');
  t.ok(Buffer.from(frames[1]!.records![0]!).equals(big), 'PUSH_MANY record intact');
  t.throws(() => encodeName('x'.repeat(256)), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => encodeName(''), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => w.push(1, new Uint8Array(256), encodeName('t'), new Uint8Array(0)), { code: 'ERR_INVALID_ARGUMENT' });
  t.equal(w.byteLength, 0, 'a refused frame writes nothing');
  w.free();
});

t.test('Wasm encoders refuse name lengths 0 and 256 without writing', async (t) => {
  const e = local.exports;
  const w = e.writerNew(64);
  const p = e.alloc(512);
  t.equal(e.encodePush(w, 1, p, 0, p, 1, 0), 0);
  t.equal(e.encodePop(w, 1, p, 256, p, 1, 0), 0);
  t.equal(e.encodeLength(w, 1, p, 1, p, 0), 0);
  t.equal(e.encodePushManyBegin(w, 1, p, 1, p, 256), -1);
  t.equal(e.encodeHelloOk(w, 1, 1, 1, p, 0), 0);
  t.equal(e.writerLength(w), 0);
  e.free(p);
  e.writerFree(w);
});

// ── Random streams, random chunk boundaries ──────────────────────────────────────────

t.test('random frame streams decode the same whatever the chunk boundaries', async (t) => {
  for (let round = 0; round < 8; round++) {
    const seed = (Date.now() + round * 7919) >>> 0;
    const rand = prng(seed);
    const w = new FrameWriter(local, 256);
    const expected = Array.from({ length: 300 }, () => randomFrame(w, rand));
    const bytes = w.take();
    w.free();
    const whole = decodeAll(local, bytes);
    t.strictSame(whole, { frames: expected }, `whole stream decodes as written (seed ${seed})`);
    for (const maxChunk of [1, 7, 13, 100, 4096]) {
      const got = decodeChunks(local, split(bytes, rand, maxChunk));
      if (!t.strictSame(got, whole, `chunks of 1..${maxChunk} bytes (seed ${seed})`)) return;
    }
  }
});

t.test('more than DESC_CAPACITY frames in one chunk come out in batches, in order', async (t) => {
  const parts = Array.from({ length: DESC_CAPACITY * 3 + 5 }, (_, i) => ping(i));
  const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
  dec.feed(concat(...parts));
  const counts: number[] = [];
  const ids: number[] = [];
  for (;;) {
    const n = dec.next();
    counts.push(n);
    for (let i = 0; i < n; i++) ids.push(dec.requestId(i));
    if (n < DESC_CAPACITY) break;
  }
  t.strictSame(counts, [64, 64, 64, 5]);
  t.strictSame(ids, parts.map((_, i) => i));
  t.equal(dec.next(), 0, 'then nothing more');
  dec.free();
});

// ── Adversarial input ────────────────────────────────────────────────────────────────

t.test('fatal: a version byte other than 1 (garbage) is ERR_PROTOCOL, and stays so', async (t) => {
  t.strictSame(decodeAll(local, rawFrame(Op.PING, 1, [], { ver: 2 })), { frames: [], fatal: 'ERR_PROTOCOL' });
  t.strictSame(decodeAll(local, Buffer.from('GET / HTTP/1.1\r\n\r\n')), { frames: [], fatal: 'ERR_PROTOCOL' });
  // Detected as soon as the 12 header bytes are in, however long the claimed length.
  t.strictSame(decodeAll(local, rawFrame(Op.PUSH, 1, [], { ver: 0, length: 0xFFFFFFFF })), { frames: [], fatal: 'ERR_PROTOCOL' });
  const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
  dec.feed(rawFrame(Op.PING, 1, [], { ver: 9 }));
  t.throws(() => dec.next(), { code: 'ERR_PROTOCOL', name: 'TurboError' });
  dec.feed(ping(2));
  t.throws(() => dec.next(), { code: 'ERR_PROTOCOL' }, 'a dead stream stays dead');
  dec.free();
});

t.test('fatal: length < 8 is ERR_PROTOCOL', async (t) => {
  for (const length of [0, 1, 7]) {
    t.strictSame(decodeAll(local, concat(rawFrame(Op.PING, 1, [], { length }), ping(2))), { frames: [], fatal: 'ERR_PROTOCOL' }, `length ${length}`);
  }
});

t.test('random garbage never traps or hangs: it ends in ERR_PROTOCOL or waits for more bytes', async (t) => {
  const seed = Date.now() >>> 0;
  const rand = prng(seed);
  const before = inUse(local);
  for (let i = 0; i < 2000; i++) {
    const bytes = randomBytes(rand, (rand() * 200) | 0);
    if (rand() < 0.5 && bytes.length >= 5) bytes[4] = 1; // often a plausible header
    if (rand() < 0.3 && bytes.length >= 4) bytes.set(u32(8 + ((rand() * 64) | 0)), 0);
    const res = decodeChunks(local, split(bytes, rand, 16), 4096, 1024);
    if (res.fatal !== undefined && res.fatal !== 'ERR_PROTOCOL') {
      t.fail(`unexpected ${res.fatal} (seed ${seed}, case ${i})`);
      return;
    }
  }
  t.equal(inUse(local), before, `no memory kept (seed ${seed})`);
});

t.test('huge length (0xFFFFFFFF) is answered ERR_MESSAGE_TOO_LARGE and its bytes are skipped', async (t) => {
  const head = rawFrame(Op.PUSH, 42, [], { length: 0xFFFFFFFF });
  const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
  dec.feed(head);
  t.equal(dec.next(), 1);
  t.strictSame([dec.op(0), dec.requestId(0), dec.arg0(0), dec.arg1(0)], [OP_REJECT, 42, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.PUSH]);
  dec.feed(new Uint8Array(100_000));
  t.equal(dec.next(), 0, 'the body is being skipped');
  t.equal(dec.buffered, 0, 'nothing is kept while skipping');
  dec.free();
});

/** Decodes `bad` then a PING; returns the frames. */
function rejectThenPing(bad: Uint8Array, maxMessage = MAX_MESSAGE) {
  return decodeAll(local, concat(bad, ping(99)), MAX_FRAME, maxMessage);
}

const REJECT_CASES: [string, Uint8Array, keyof typeof ErrorCode, number][] = [
  ['PUSH with an empty queue name', rawFrame(Op.PUSH, 5, [0, ...name('t'), 1, 2]), 'ERR_INVALID_ARGUMENT', Op.PUSH],
  ['PUSH with an empty topic name', rawFrame(Op.PUSH, 5, [...name('q'), 0]), 'ERR_INVALID_ARGUMENT', Op.PUSH],
  ['PUSH with no names at all', rawFrame(Op.PUSH, 5, []), 'ERR_PROTOCOL', Op.PUSH],
  ['PUSH with a queue name past the end of the frame', rawFrame(Op.PUSH, 5, [10, 0x71, 0x71]), 'ERR_PROTOCOL', Op.PUSH],
  ['POP with a topic name past the end of the frame', rawFrame(Op.POP, 5, [...name('q'), 200, 1, 2, 3, 4]), 'ERR_PROTOCOL', Op.POP],
  ['POP with a missing topic name', rawFrame(Op.POP, 5, [...name('q')]), 'ERR_PROTOCOL', Op.POP],
  ['PUSH_MANY whose count is larger than its records', rawFrame(Op.PUSH_MANY, 5, [...name('q'), ...name('t'), ...u32(3), ...u32(1), 9, ...u32(0)]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY whose count is smaller than its records', rawFrame(Op.PUSH_MANY, 5, [...name('q'), ...name('t'), ...u32(1), ...u32(1), 9, ...u32(0)]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY with a count of 0xFFFFFFFF', rawFrame(Op.PUSH_MANY, 5, [...name('q'), ...name('t'), ...u32(0xFFFFFFFF), ...u32(0)]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY with a record overrunning the frame', rawFrame(Op.PUSH_MANY, 5, [...name('q'), ...name('t'), ...u32(1), ...u32(0xFFFFFFF0), 1, 2]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY with a truncated record length', rawFrame(Op.PUSH_MANY, 5, [...name('q'), ...name('t'), ...u32(1), 1, 0]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY without a count', rawFrame(Op.PUSH_MANY, 5, [...name('q'), ...name('t'), 1]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['RETURN whose count lies', rawFrame(Op.RETURN, 5, [...name('q'), ...name('t'), ...u32(2), ...u32(0)]), 'ERR_PROTOCOL', Op.RETURN],
  ['RETURN with an empty topic name', rawFrame(Op.RETURN, 5, [...name('q'), 0, ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.RETURN],
  ['MESSAGES whose records overrun the frame', rawFrame(Op.MESSAGES, 5, [...u32(2), ...u32(1), 7, ...u32(5), 1]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['POP_MANY with max 0', rawFrame(Op.POP_MANY, 5, [...name('q'), ...name('t'), ...u32(0), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.POP_MANY],
  ['SUBSCRIBE with prefetch 0', rawFrame(Op.SUBSCRIBE, 5, [...name('q'), ...name('t'), ...u32(0), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.SUBSCRIBE],
  ['POP with a short body', rawFrame(Op.POP, 5, [...name('q'), ...name('t'), 1, 2]), 'ERR_PROTOCOL', Op.POP],
  ['LENGTH with trailing bytes', rawFrame(Op.LENGTH, 5, [...name('q'), ...name('t'), 1]), 'ERR_PROTOCOL', Op.LENGTH],
  ['PING with a body', rawFrame(Op.PING, 5, [1]), 'ERR_PROTOCOL', Op.PING],
  ['SERVER_STATS with a body', rawFrame(Op.SERVER_STATS, 5, [1]), 'ERR_PROTOCOL', Op.SERVER_STATS],
  ['SHUTDOWN with a body', rawFrame(Op.SHUTDOWN, 5, [0, 0, 0, 0]), 'ERR_PROTOCOL', Op.SHUTDOWN],
  ['HELLO of 4 bytes', rawFrame(Op.HELLO, 5, [1, 0, 1, 0]), 'ERR_PROTOCOL', Op.HELLO],
  ['CREDIT of 12 bytes', rawFrame(Op.CREDIT, 5, [...u32(1), ...u32(1), ...u32(1)]), 'ERR_PROTOCOL', Op.CREDIT],
  ['CANCEL of 0 bytes', rawFrame(Op.CANCEL, 5, []), 'ERR_PROTOCOL', Op.CANCEL],
  ['UNSUBSCRIBE of 3 bytes', rawFrame(Op.UNSUBSCRIBE, 5, [1, 2, 3]), 'ERR_PROTOCOL', Op.UNSUBSCRIBE],
  ['ERROR whose text length lies', rawFrame(Op.ERROR, 5, [...u16(1), ...u16(10), 0x61]), 'ERR_PROTOCOL', Op.ERROR],
  ['HELLO_OK with trailing bytes', rawFrame(Op.HELLO_OK, 5, [...u16(1), ...u16(0), ...u32(1), ...u32(1), ...name('v'), 0]), 'ERR_PROTOCOL', Op.HELLO_OK],
  ['LENGTH_OK of 8 bytes', rawFrame(Op.LENGTH_OK, 5, [...u32(1), ...u32(1)]), 'ERR_PROTOCOL', Op.LENGTH_OK],
  ['unknown opcode 0x7E', rawFrame(0x7E, 5, [1, 2, 3]), 'ERR_UNKNOWN_OPCODE', 0x7E],
  ['opcode 0x1A (reserved for ACK)', rawFrame(0x1A, 5, []), 'ERR_UNKNOWN_OPCODE', 0x1A],
  ['reply opcode 0x87 (unassigned)', rawFrame(0x87, 5, []), 'ERR_UNKNOWN_OPCODE', 0x87],
  ['reserved opcode 0x20 (durable topics)', rawFrame(0x20, 5, []), 'ERR_UNKNOWN_OPCODE', 0x20],
  ['OP_REJECT itself on the wire', rawFrame(OP_REJECT, 5, []), 'ERR_UNKNOWN_OPCODE', OP_REJECT],
];

for (const [label, bad, code, op] of REJECT_CASES) {
  t.test(`${label}: rejected ${code}, the next frame still decodes`, async (t) => {
    const { frames, fatal } = rejectThenPing(bad);
    t.equal(fatal, undefined, 'not fatal');
    t.strictSame(frames, [
      { op: OP_REJECT, flags: 0, requestId: 5, arg0: ErrorCode[code], arg1: op },
      { op: Op.PING, flags: 0, requestId: 99, arg0: 0, arg1: 0 },
    ]);
    // And the same split into 1-byte chunks.
    t.strictSame(decodeChunks(local, split(concat(bad, ping(99)), Math.random, 1)), { frames });
  });
}

t.test('a message over maxMessageBytes is rejected in PUSH and in one PUSH_MANY record', async (t) => {
  const maxMessage = 100;
  const w = new FrameWriter(local);
  const q = encodeName('q'), tp = encodeName('t');
  w.push(1, q, tp, new Uint8Array(100));
  w.push(2, q, tp, new Uint8Array(101));
  w.pushMany(3, q, tp, [new Uint8Array(100), new Uint8Array(5)]);
  w.pushMany(4, q, tp, [new Uint8Array(5), new Uint8Array(101), new Uint8Array(5)]);
  w.messages(5, [new Uint8Array(101)]);
  w.returnRecords(7, q, tp, [new Uint8Array(101)]);
  w.ping(6);
  const { frames, fatal } = decodeAll(local, w.take(), MAX_FRAME, maxMessage);
  w.free();
  t.equal(fatal, undefined);
  t.strictSame(frames.map((f) => [f.op, f.requestId, f.arg0, f.arg1]), [
    [Op.PUSH, 1, 0, 0],
    [OP_REJECT, 2, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.PUSH],
    [Op.PUSH_MANY, 3, 2, 0],
    [OP_REJECT, 4, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.PUSH_MANY],
    [OP_REJECT, 5, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.MESSAGES],
    [OP_REJECT, 7, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.RETURN],
    [Op.PING, 6, 0, 0],
  ]);
});

t.test('flags are passed through, in frames and in rejects', async (t) => {
  const { frames } = decodeAll(local, concat(rawFrame(Op.PING, 1, [], { flags: 0xABCD }), rawFrame(0x7F, 2, [], { flags: 1 })));
  t.strictSame(frames.map((f) => [f.op, f.flags]), [[Op.PING, 0xABCD], [OP_REJECT, 1]]);
});

t.test('truncated frames wait for their bytes (no descriptor, no error)', async (t) => {
  const w = new FrameWriter(local);
  w.push(1, encodeName('q'), encodeName('t'), new Uint8Array(1000));
  const bytes = w.take();
  w.free();
  for (const cut of [1, 4, 11, 12, 13, 500, bytes.length - 1]) {
    const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
    dec.feed(bytes.subarray(0, cut));
    t.equal(dec.next(), 0, `cut at ${cut}`);
    t.equal(dec.buffered, cut);
    dec.feed(bytes.subarray(cut));
    t.equal(dec.next(), 1, `completed after cut at ${cut}`);
    t.equal(dec.dataLen(0), 1000);
    dec.free();
  }
});

// ── Oversized frames: bounded memory ─────────────────────────────────────────────────

t.test('an oversized frame is skipped across many chunks with bounded memory, then the next frame decodes', async (t) => {
  const maxFrame = 64 * 1024;
  const body = 10 * 1024 * 1024;
  const dec = new FrameDecoder(local, maxFrame, 1024);
  const before = inUse(local);
  dec.feed(rawFrame(Op.PUSH, 77, [], { length: 8 + body }));
  t.equal(dec.next(), 1);
  t.strictSame([dec.op(0), dec.requestId(0), dec.arg0(0), dec.arg1(0)], [OP_REJECT, 77, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.PUSH]);
  const chunk = new Uint8Array(16 * 1024).fill(0xEE);
  let peak = 0;
  for (let sent = 0; sent < body; sent += chunk.length) {
    dec.feed(chunk.subarray(0, Math.min(chunk.length, body - sent)));
    t.equal(dec.next(), 0);
    peak = Math.max(peak, inUse(local) - before, dec.capacity);
  }
  t.ok(peak <= 128 * 1024, `memory stayed small while skipping 10 MiB (peak ${peak} bytes)`);
  dec.feed(concat(ping(78), rawFrame(Op.PUSH, 79, [], { length: 8 + maxFrame + 1 }).subarray(0, 7)));
  t.equal(dec.next(), 1);
  t.strictSame([dec.op(0), dec.requestId(0)], [Op.PING, 78], 'the next frame decodes');
  dec.free();
});

t.test('a frame of exactly maxFrameBytes body is accepted, one byte more is skipped', async (t) => {
  const maxFrame = 1000;
  const ok = rawFrame(Op.PUSH, 1, [...name('q'), ...name('t'), ...new Uint8Array(maxFrame - 4)]);
  const tooBig = rawFrame(Op.PUSH, 2, [...name('q'), ...name('t'), ...new Uint8Array(maxFrame - 3)]);
  const { frames } = decodeAll(local, concat(ok, tooBig, ping(3)), maxFrame, maxFrame);
  t.strictSame(frames.map((f) => [f.op, f.requestId, f.arg0]), [[Op.PUSH, 1, 0], [OP_REJECT, 2, ErrorCode.ERR_MESSAGE_TOO_LARGE], [Op.PING, 3, 0]]);
});

t.test('the decoder buffer shrinks back after a large frame', async (t) => {
  const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
  const w = new FrameWriter(local);
  w.push(1, encodeName('q'), encodeName('t'), new Uint8Array(MAX_MESSAGE));
  dec.feed(w.take());
  w.free();
  t.equal(dec.next(), 1);
  t.ok(dec.capacity >= MAX_MESSAGE);
  dec.feed(ping(2));
  t.ok(dec.capacity <= 64 * 1024, `capacity back to ${dec.capacity}`);
  t.equal(dec.next(), 1);
  t.equal(dec.op(0), Op.PING);
  dec.free();
});

// ── Writer ───────────────────────────────────────────────────────────────────────────

t.test('writer: records frames begin/record/end, truncate undoes a partial frame', async (t) => {
  const e = local.exports;
  const w = e.writerNew(16);
  e.encodeOk(w, 1);
  const mark = e.encodeRecordsBegin(w, Op.MESSAGES, 2);
  t.equal(mark, 12);
  for (let i = 0; i < 3; i++) {
    const p = e.encodeRecord(w, 2);
    local.view.write(p, Uint8Array.of(i, i));
  }
  // A record written directly, as fifo.ts does.
  const at = e.writerEnsure(w, 5);
  local.view.write(at, Uint8Array.of(1, 0, 0, 0, 9));
  e.writerAdvance(w, 5);
  e.encodeRecordsEnd(w, mark, 4);
  const mark2 = e.encodeRecordsBegin(w, Op.DELIVER, 3);
  e.encodeRecord(w, 100);
  e.writerTruncate(w, mark2);
  const bytes = local.view.copy(e.writerData(w), e.writerLength(w));
  const { frames } = decodeAll(local, bytes);
  t.strictSame(frames.map((f) => [f.op, f.requestId, f.records]), [[Op.OK, 1, undefined], [Op.MESSAGES, 2, [[0, 0], [1, 1], [2, 2], [9]]]]);
  e.writerReset(w);
  t.equal(e.writerLength(w), 0);
  e.writerFree(w);
});

t.test('writer: reset shrinks a buffer grown past 256 KiB', async (t) => {
  const e = local.exports;
  const w = e.writerNew(1024);
  t.ok(e.writerReserve(w, 1024 * 1024) !== 0);
  t.ok(e.writerCapacity(w) >= 1024 * 1024);
  e.writerReset(w);
  t.ok(e.writerCapacity(w) <= 2048, `capacity ${e.writerCapacity(w)}`);
  e.writerFree(w);
});

t.test('writer: error text is cut at 65535 bytes', async (t) => {
  const w = new FrameWriter(local);
  w.error(1, ErrorCode.ERR_LIMIT, 'x'.repeat(70_000));
  const { frames } = decodeAll(local, w.take());
  t.equal(frames[0]!.data!.length, 65535);
  w.free();
});

// ── Memory ───────────────────────────────────────────────────────────────────────────

t.test('decoder and writer free give every byte back to the allocator', async (t) => {
  const before = inUse(local);
  const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
  const w = new FrameWriter(local, 100);
  const rand = prng(3);
  for (let i = 0; i < 200; i++) randomFrame(w, rand);
  w.push(1, encodeName('q'), encodeName('t'), new Uint8Array(300_000));
  const bytes = w.peek().slice();
  for (const chunk of split(bytes, rand, 5000)) {
    dec.feed(chunk);
    while (dec.next() === DESC_CAPACITY);
  }
  t.ok(inUse(local) > before);
  dec.free();
  w.free();
  dec.free(); // idempotent
  w.free();
  t.equal(inUse(local), before);
});
