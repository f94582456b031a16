// The frame codec (assembly/codec.ts) through its JS wrappers (test/support/frames.ts):
// round trips of every frame type on every build (local, shared, debug), the encoders
// byte for byte against the independent raw builder (test/support/raw.ts), random chunk
// boundaries, adversarial and mutated input, an oversized frame fatal before its body,
// and memory returned on free.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadLocalCore, loadSharedCore } from '../../src/core/load.ts';
import { newSharedMemory, instantiateSharedCore, type Core } from '../../src/core/wasm.ts';
import { FrameDecoder, FrameWriter, encodeName, type StoredRecord, type SettleEntry, type Settings } from '../support/frames.ts';
import {
  rawFrame, u16, u32, u64, f64, name, pushRecord, storedRecord, leasedRecord, deadLetterData, settingsBlock,
} from '../support/raw.ts';
import {
  ErrorCode, Op, OP_REJECT, DESC_CAPACITY, TIMEOUT_INFINITE, PROTOCOL_VERSION, FLAGS, META_DEAD_LETTER,
  META_DELIVERIES_MASK, SUBSCRIBE_ACK, SUBSCRIBE_EXCLUSIVE, SettleKind, SettingsMask, SETTINGS_FIXED_BYTES,
} from '../../src/protocol.ts';
import { TurboError } from '../../src/errors.ts';
import { prng } from '../helpers.ts';

const MAX_MESSAGE = 1024 * 1024;
const MAX_FRAME = MAX_MESSAGE + 1024;

const local = await loadLocalCore();
local.exports.attach();

/** The debug build (invariants asserted), over its own shared memory. */
async function loadDebugCore(): Promise<Core> {
  const module = new WebAssembly.Module(readFileSync(fileURLToPath(import.meta.resolve('#wasm/turbomq.debug.wasm'))));
  const core = await instantiateSharedCore(newSharedMemory(), module);
  core.exports.attach();
  return core;
}

function inUse(core: Core): number {
  return Number(core.exports.bytesInUse());
}

const utf8 = (s: string) => [...Buffer.from(s)];

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
  /** Stored records (MESSAGES, DELIVER, RETURN): [meta, id, lease] each (lease 0n unless leased). */
  headers?: [number, bigint, bigint][];
  entries?: SettleEntry[];
  settings?: Settings;
  dedup?: number[];
  arg0: number;
  arg1: number;
  arg2: number;
  arg3: number;
}

const RECORDS_OPS: number[] = [Op.MESSAGES, Op.DELIVER, Op.PUSH_MANY, Op.PUSH_MANY_EX, Op.RETURN];
const STORED_OPS: number[] = [Op.MESSAGES, Op.DELIVER, Op.RETURN];

function snapshot(dec: FrameDecoder, i: number): Decoded {
  const op = dec.op(i);
  const out: Decoded = {
    op, flags: dec.flags(i), requestId: dec.requestId(i), arg0: dec.arg0(i), arg1: dec.arg1(i), arg2: dec.arg2(i), arg3: dec.arg3(i),
  };
  if (dec.queueLen(i) > 0 && op !== Op.HELLO_OK) out.queue = dec.queue(i);
  if (dec.topicLen(i) > 0) out.topic = dec.topic(i);
  if (op === Op.HELLO_OK) out.version = dec.queueLen(i);
  if (RECORDS_OPS.includes(op)) {
    out.records = dec.records(i).map((r) => [...r]);
    if (STORED_OPS.includes(op)) out.headers = dec.recordHeaders(i).map((h) => [h.meta, h.id, h.lease]);
  } else {
    if (op === Op.SETTLE) out.entries = dec.settleEntries(i);
    if (op === Op.CONFIGURE || op === Op.SETTINGS) out.settings = dec.settings(i);
    if (dec.dataLen(i) > 0 || op === Op.PUSH || op === Op.PUSH_EX) out.data = [...dec.dataCopy(i)];
  }
  if (op === Op.PUSH_EX) {
    // arg2 is an address: right before the data when there is a dedupId, else 0. Kept raw
    // (so the comparison fails) when it is anything else.
    out.dedup = [...dec.dedupId(i)];
    if (out.arg3 > 0 && out.arg2 === dec.dataPtr(i) - out.arg3) out.arg2 = 0;
  }
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

const concat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));

function ping(requestId: number): Uint8Array {
  return rawFrame(Op.PING, requestId, []);
}

/** A decoded frame with the fields it does not use at their zero values. */
function frame(d: Partial<Decoded> & { op: number; requestId: number }): Decoded {
  return { flags: 0, arg0: 0, arg1: 0, arg2: 0, arg3: 0, ...d };
}

/** What decoding stored records written by FrameWriter gives (defaults: meta 0, id = index, lease 0). */
function storedExpect(rs: readonly (Uint8Array | StoredRecord)[]): Pick<Decoded, 'records' | 'headers' | 'arg0'> {
  const all = rs.map((r) => (r instanceof Uint8Array ? { data: r } : r));
  return {
    records: all.map((r) => [...r.data]),
    headers: all.map((r, i) => [r.meta ?? 0, r.id ?? BigInt(i), r.lease ?? 0n]),
    arg0: rs.length,
  };
}

/** SETTLE entries as the bytes the descriptor's data must hold. */
function entryBytes(entries: readonly SettleEntry[]): number[] {
  return entries.flatMap((e) => [...u64(e.lease), ...u32(e.kind), ...u32(e.arg)]);
}

/** Writes one random valid frame with `w`; returns what decoding it must give. */
function randomFrame(w: FrameWriter, rand: () => number): Decoded {
  const req = (rand() * 0x100000000) >>> 0;
  const pick = (rand() * 32) | 0;
  const rname = () => 'n'.repeat(1 + ((rand() * 20) | 0)) + ((rand() * 1000) | 0);
  const q = rname(), tp = rname();
  const rdata = () => [...randomBytes(rand, rand() < 0.2 ? 0 : (rand() * 300) | 0)];
  const u = () => (rand() * 0x100000000) >>> 0;
  const u64r = () => (BigInt(u()) << 32n) | BigInt(u());
  const f = (d: Partial<Decoded>) => frame({ requestId: req, op: 0, ...d });
  /** A random stored record: any deliveries, any id, sometimes a dead letter. */
  const rstored = (leased: boolean): StoredRecord => {
    const deliveries = rand() < 0.5 ? (rand() * 4) | 0 : u() & META_DELIVERIES_MASK;
    const dead = rand() < 0.25;
    const data = dead ? deadLetterData(1 + ((rand() * 2) | 0), rname(), rdata()) : rdata();
    return { data: Uint8Array.from(data), meta: deliveries | (dead ? META_DEAD_LETTER : 0), id: u64r(), lease: leased ? u64r() : 0n };
  };
  const rsettings = (): Settings => {
    const num = () => (rand() < 0.2 ? Infinity : Math.floor(rand() * 1e9) + rand());
    return {
      leaseMs: num(), maxDeliveries: num(), maxLength: num(), dedupWindowMs: num(),
      overflow: (rand() * 2) | 0, durable: (rand() * 3) | 0, deadLetterTopic: rand() < 0.3 ? '' : rname(),
    };
  };
  switch (pick) {
    case 0: { const a = (rand() * 65536) | 0, b = (rand() * 65536) | 0; w.hello(req, a, b); return f({ op: Op.HELLO, arg0: a, arg1: b }); }
    case 1: w.ping(req); return f({ op: Op.PING });
    case 2: { const d = rdata(); w.push(req, encodeName(q), encodeName(tp), Uint8Array.from(d)); return f({ op: Op.PUSH, queue: q, topic: tp, data: d }); }
    case 3: {
      const rs = Array.from({ length: (rand() * 5) | 0 }, rdata);
      w.pushMany(req, encodeName(q), encodeName(tp), rs.map((r) => Uint8Array.from(r)));
      return f({ op: Op.PUSH_MANY, queue: q, topic: tp, records: rs, arg0: rs.length });
    }
    case 4: { const a = u(); w.pop(req, encodeName(q), encodeName(tp), a); return f({ op: Op.POP, queue: q, topic: tp, arg0: a }); }
    case 5: { const a = u() || 1, b = u(); w.popMany(req, encodeName(q), encodeName(tp), a, b); return f({ op: Op.POP_MANY, queue: q, topic: tp, arg0: a, arg1: b }); }
    case 6: w.length(req, encodeName(q), encodeName(tp)); return f({ op: Op.LENGTH, queue: q, topic: tp });
    case 7: {
      const a = u() || 1, b = u(), c = rand() < 0.5 ? 0 : u();
      w.subscribe(req, encodeName(q), encodeName(tp), a, b, c);
      return f({ op: Op.SUBSCRIBE, queue: q, topic: tp, arg0: a, arg1: b, arg2: c });
    }
    case 8: { const a = u(); w.unsubscribe(req, a); return f({ op: Op.UNSUBSCRIBE, arg0: a }); }
    case 9: { const a = u(), b = u(); w.credit(req, a, b); return f({ op: Op.CREDIT, arg0: a, arg1: b }); }
    case 10: { const a = u(); w.cancel(req, a); return f({ op: Op.CANCEL, arg0: a }); }
    case 11: w.ok(req); return f({ op: Op.OK });
    case 12: w.pong(req); return f({ op: Op.PONG });
    case 13: w.empty(req); return f({ op: Op.EMPTY });
    case 14: { const a = u(); w.lengthOk(req, a); return f({ op: Op.LENGTH_OK, arg0: a }); }
    case 15: {
      const a = u(), b = u(), v = rname();
      w.helloOk(req, a, b, v);
      return f({ op: Op.HELLO_OK, version: PROTOCOL_VERSION, data: utf8(v), arg0: a, arg1: b });
    }
    case 16:
    case 17: {
      // MESSAGES / DELIVER, half of them leased.
      const leased = rand() < 0.5;
      const rs = Array.from({ length: 1 + ((rand() * 5) | 0) }, () => rstored(leased));
      const op = pick === 16 ? Op.MESSAGES : Op.DELIVER;
      const flags = leased ? FLAGS.LEASED : 0;
      if (op === Op.MESSAGES) w.messages(req, rs, flags);
      else w.deliver(req, rs, flags);
      return f({ op, flags, ...storedExpect(rs) });
    }
    case 18: {
      const rs = Array.from({ length: (rand() * 5) | 0 }, () => rstored(false));
      w.returnRecords(req, encodeName(q), encodeName(tp), rs);
      return f({ op: Op.RETURN, queue: q, topic: tp, ...storedExpect(rs) });
    }
    case 19: {
      const d = rdata(), delay = rand() < 0.5 ? 0 : u();
      const dedup = rand() < 0.4 ? [] : [...randomBytes(rand, 1 + ((rand() * 255) | 0))];
      w.pushEx(req, encodeName(q), encodeName(tp), delay, Uint8Array.from(dedup), Uint8Array.from(d));
      return f({ op: Op.PUSH_EX, queue: q, topic: tp, data: d, dedup, arg0: delay, arg3: dedup.length });
    }
    case 20: {
      const rs = Array.from({ length: (rand() * 5) | 0 }, rdata), delay = u();
      w.pushManyEx(req, encodeName(q), encodeName(tp), delay, rs.map((r) => Uint8Array.from(r)));
      return f({ op: Op.PUSH_MANY_EX, queue: q, topic: tp, records: rs, arg0: rs.length, arg1: delay });
    }
    case 21: {
      const a = u() || 1, b = u(), c = u();
      w.popLeased(req, encodeName(q), encodeName(tp), a, b, c);
      return f({ op: Op.POP_LEASED, queue: q, topic: tp, arg0: a, arg1: b, arg2: c });
    }
    case 22: {
      const entries = Array.from({ length: 1 + ((rand() * 5) | 0) }, () => ({ lease: u64r(), kind: rand() < 0.8 ? 1 + ((rand() * 4) | 0) : u(), arg: u() }));
      w.settle(req, entries);
      return f({ op: Op.SETTLE, entries, data: entryBytes(entries), arg0: entries.length });
    }
    case 23: {
      const s = rsettings(), mask = u();
      w.configure(req, encodeName(q), mask, s);
      return f({ op: Op.CONFIGURE, queue: q, settings: s, data: settingsBlock(s), arg0: mask });
    }
    case 24: w.stats(req, encodeName(q), encodeName(tp)); return f({ op: Op.STATS, queue: q, topic: tp });
    case 25: {
      const statuses = Array.from({ length: (rand() * 6) | 0 }, () => (rand() * 14) | 0);
      w.settled(req, statuses);
      const d = f({ op: Op.SETTLED, arg0: statuses.length });
      if (statuses.length > 0) d.data = statuses;
      return d;
    }
    case 26: { const s = rsettings(); w.settingsReply(req, s); return f({ op: Op.SETTINGS, settings: s, data: settingsBlock(s) }); }
    case 27: { const a = u(), b = u(), c = u(); w.statsOk(req, a, b, c); return f({ op: Op.STATS_OK, arg0: a, arg1: b, arg2: c }); }
    default: {
      const code = 1 + ((rand() * 13) | 0), text = rand() < 0.2 ? '' : `error ${rname()}`;
      w.error(req, code, text);
      const d = f({ op: Op.ERROR, arg0: code });
      if (text.length > 0) d.data = utf8(text);
      return d;
    }
  }
}

// ── Round trips ──────────────────────────────────────────────────────────────────────

const S_FULL: Settings = { leaseMs: 45_000, maxDeliveries: 5, maxLength: Infinity, dedupWindowMs: 1.5, overflow: 1, durable: 2, deadLetterTopic: 'dead ✓' };
const S_EMPTY: Settings = { leaseMs: 0, maxDeliveries: 0, maxLength: 0, dedupWindowMs: 0, overflow: 0, durable: 0, deadLetterTopic: '' };

for (const [label, getCore] of [
  ['local', async () => local],
  ['shared', async () => { const c = await loadSharedCore(newSharedMemory()); c.exports.attach(); return c; }],
  ['debug', loadDebugCore],
] as const) {
  t.test(`every opcode round-trips through writer and decoder (${label} core)`, async (t) => {
    const core = await getCore();
    const w = new FrameWriter(core, 64);
    const q = encodeName('orders'), tp = encodeName('eu');
    const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
    const expected: Decoded[] = [];
    const add = (d: Partial<Decoded> & { op: number; requestId: number }) => expected.push(frame(d));
    const names = { queue: 'orders', topic: 'eu' };
    w.hello(1, 1, 3); add({ op: Op.HELLO, requestId: 1, arg0: 1, arg1: 3 });
    w.ping(2); add({ op: Op.PING, requestId: 2 });
    w.push(3, q, tp, binary); add({ op: Op.PUSH, requestId: 3, ...names, data: [...binary] });
    w.push(4, q, tp, new Uint8Array(0)); add({ op: Op.PUSH, requestId: 4, ...names, data: [] });
    w.pushMany(5, q, tp, [binary, new Uint8Array(0), Uint8Array.of(7)]);
    add({ op: Op.PUSH_MANY, requestId: 5, ...names, records: [[...binary], [], [7]], arg0: 3 });
    w.pushMany(6, q, tp, []); add({ op: Op.PUSH_MANY, requestId: 6, ...names, records: [], arg0: 0 });
    w.pop(7, q, tp, TIMEOUT_INFINITE); add({ op: Op.POP, requestId: 7, ...names, arg0: TIMEOUT_INFINITE });
    w.popMany(8, q, tp, 100, 0); add({ op: Op.POP_MANY, requestId: 8, ...names, arg0: 100, arg1: 0 });
    w.length(9, q, tp); add({ op: Op.LENGTH, requestId: 9, ...names });
    w.subscribe(10, q, tp, 64, SUBSCRIBE_EXCLUSIVE); add({ op: Op.SUBSCRIBE, requestId: 10, ...names, arg0: 64, arg1: 1 });
    w.subscribe(31, q, tp, 8, SUBSCRIBE_ACK | SUBSCRIBE_EXCLUSIVE, 5000);
    add({ op: Op.SUBSCRIBE, requestId: 31, ...names, arg0: 8, arg1: 3, arg2: 5000 });
    w.unsubscribe(11, 10); add({ op: Op.UNSUBSCRIBE, requestId: 11, arg0: 10 });
    w.credit(0, 10, 5); add({ op: Op.CREDIT, requestId: 0, arg0: 10, arg1: 5 });
    w.cancel(0, 7); add({ op: Op.CANCEL, requestId: 0, arg0: 7 });
    w.returnRecords(14, q, tp, [Uint8Array.of(5), binary]);
    add({ op: Op.RETURN, requestId: 14, ...names, ...storedExpect([Uint8Array.of(5), binary]) });
    const returned: StoredRecord[] = [{ data: binary, meta: 2, id: 77n }, { data: Uint8Array.from(deadLetterData(1, 'eu', [9])), meta: META_DEAD_LETTER | 5, id: 78n }];
    w.returnRecords(15, q, tp, returned); add({ op: Op.RETURN, requestId: 15, ...names, ...storedExpect(returned) });
    // The at-least-once requests.
    const dedup = encodeName('order-1');
    w.pushEx(16, q, tp, 1500, dedup, binary); add({ op: Op.PUSH_EX, requestId: 16, ...names, data: [...binary], dedup: [...dedup], arg0: 1500, arg3: dedup.length });
    w.pushEx(17, q, tp, 0, new Uint8Array(0), new Uint8Array(0)); add({ op: Op.PUSH_EX, requestId: 17, ...names, data: [], dedup: [] });
    const longDedup = new Uint8Array(255).fill(0x64);
    w.pushEx(18, q, tp, 0xFFFFFFFF, longDedup, Uint8Array.of(1));
    add({ op: Op.PUSH_EX, requestId: 18, ...names, data: [1], dedup: [...longDedup], arg0: 0xFFFFFFFF, arg3: 255 });
    w.pushManyEx(19, q, tp, 250, [binary, new Uint8Array(0), Uint8Array.of(7)]);
    add({ op: Op.PUSH_MANY_EX, requestId: 19, ...names, records: [[...binary], [], [7]], arg0: 3, arg1: 250 });
    w.pushManyEx(20, q, tp, 0, []); add({ op: Op.PUSH_MANY_EX, requestId: 20, ...names, records: [], arg0: 0 });
    w.popLeased(21, q, tp, 10, TIMEOUT_INFINITE, 60_000); add({ op: Op.POP_LEASED, requestId: 21, ...names, arg0: 10, arg1: TIMEOUT_INFINITE, arg2: 60_000 });
    const entries: SettleEntry[] = [
      { lease: 0xFFFFFFFF00000001n, kind: SettleKind.ACK, arg: 0 },
      { lease: 5n, kind: SettleKind.NACK, arg: 1000 },
      { lease: 1n << 63n, kind: SettleKind.EXTEND, arg: 0xFFFFFFFF },
      { lease: 0n, kind: SettleKind.REJECT, arg: 0 },
    ];
    w.settle(22, entries); add({ op: Op.SETTLE, requestId: 22, entries, data: entryBytes(entries), arg0: 4 });
    w.configure(23, q, 0x7F, S_FULL); add({ op: Op.CONFIGURE, requestId: 23, queue: 'orders', settings: S_FULL, data: settingsBlock(S_FULL), arg0: 0x7F });
    w.configure(24, q, 0, S_EMPTY); add({ op: Op.CONFIGURE, requestId: 24, queue: 'orders', settings: S_EMPTY, data: settingsBlock(S_EMPTY) });
    w.stats(25, q, tp); add({ op: Op.STATS, requestId: 25, ...names });
    // Replies.
    w.ok(12); add({ op: Op.OK, requestId: 12 });
    w.helloOk(1, MAX_MESSAGE, MAX_FRAME, '0.1.0'); add({ op: Op.HELLO_OK, requestId: 1, version: PROTOCOL_VERSION, data: utf8('0.1.0'), arg0: MAX_MESSAGE, arg1: MAX_FRAME });
    w.pong(2); add({ op: Op.PONG, requestId: 2 });
    w.empty(7); add({ op: Op.EMPTY, requestId: 7 });
    w.messages(8, [binary, new Uint8Array(0)]); add({ op: Op.MESSAGES, requestId: 8, ...storedExpect([binary, new Uint8Array(0)]) });
    const stored: StoredRecord[] = [
      { data: binary, meta: 3, id: 0xFFFFFFFFFFFFFFFFn },
      { data: Uint8Array.from(deadLetterData(2, 'eu', [1, 2, 3])), meta: META_DEAD_LETTER | 1, id: 9n },
      { data: Uint8Array.from(deadLetterData(1, 't'.repeat(255), [])), meta: META_DEAD_LETTER | META_DELIVERIES_MASK, id: 10n },
    ];
    w.messages(26, stored); add({ op: Op.MESSAGES, requestId: 26, ...storedExpect(stored) });
    const leased: StoredRecord[] = [
      { data: binary, meta: 1, id: 1n, lease: 0x0000000700000003n },
      { data: new Uint8Array(0), meta: 2, id: 2n, lease: 0xFFFFFFFFFFFFFFFFn },
      { data: Uint8Array.from(deadLetterData(1, 'eu', [4])), meta: META_DEAD_LETTER | 1, id: 3n, lease: 1n },
    ];
    w.messages(27, leased, FLAGS.LEASED); add({ op: Op.MESSAGES, requestId: 27, flags: FLAGS.LEASED, ...storedExpect(leased) });
    w.lengthOk(9, 0xFFFFFFFF); add({ op: Op.LENGTH_OK, requestId: 9, arg0: 0xFFFFFFFF });
    w.deliver(10, [Uint8Array.of(1, 2, 3)]); add({ op: Op.DELIVER, requestId: 10, ...storedExpect([Uint8Array.of(1, 2, 3)]) });
    w.deliver(31, leased.slice(0, 1), FLAGS.LEASED); add({ op: Op.DELIVER, requestId: 31, flags: FLAGS.LEASED, ...storedExpect(leased.slice(0, 1)) });
    w.settled(22, [0, ErrorCode.ERR_LEASE_EXPIRED, ErrorCode.ERR_INVALID_ARGUMENT, 0]);
    add({ op: Op.SETTLED, requestId: 22, data: [0, 13, 2, 0], arg0: 4 });
    w.settled(28, []); add({ op: Op.SETTLED, requestId: 28 });
    w.settingsReply(23, S_FULL); add({ op: Op.SETTINGS, requestId: 23, settings: S_FULL, data: settingsBlock(S_FULL) });
    w.statsOk(25, 1, 2, 0xFFFFFFFF); add({ op: Op.STATS_OK, requestId: 25, arg0: 1, arg1: 2, arg2: 0xFFFFFFFF });
    w.error(13, ErrorCode.ERR_EXCLUSIVE, 'the topic has an exclusive consumer ✓');
    add({ op: Op.ERROR, requestId: 13, data: utf8('the topic has an exclusive consumer ✓'), arg0: ErrorCode.ERR_EXCLUSIVE });
    w.error(29, ErrorCode.ERR_QUEUE_FULL, 'full'); add({ op: Op.ERROR, requestId: 29, data: utf8('full'), arg0: 12 });
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
    const opsCovered = new Set(frames.map((f) => f.op));
    // AUTH is not the codec's: the handshake reads it in JS (src/core/raw-frames.ts).
    for (const [opName, code] of Object.entries(Op)) if (code !== Op.AUTH) t.ok(opsCovered.has(code), `${opName} is covered`);
    w.free();
  });
}

t.test('PUSH encodes byte for byte as the example in docs/protocol.md', async (t) => {
  const w = new FrameWriter(local);
  w.push(7, encodeName('q'), encodeName('t'), Buffer.from('hi'));
  t.strictSame([...w.take()], [0x0e, 0, 0, 0, 2, 0x10, 0, 0, 7, 0, 0, 0, 1, 0x71, 1, 0x74, 0x68, 0x69]);
  w.free();
});

t.test('a leased DELIVER encodes byte for byte as the example in docs/protocol.md', async (t) => {
  const w = new FrameWriter(local);
  w.deliver(3, [{ data: Buffer.from('hi'), meta: 1, id: 41n, lease: (5n << 32n) | 2n }], FLAGS.LEASED);
  t.strictSame([...w.take()], [
    0x26, 0, 0, 0, 2, 0x86, 1, 0, 3, 0, 0, 0,
    1, 0, 0, 0,
    2, 0, 0, 0, 1, 0, 0, 0, 41, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0x68, 0x69,
  ]);
  w.free();
});

t.test('the encoders write exactly what the raw builder (docs/protocol.md) says', async (t) => {
  const w = new FrameWriter(local);
  const q = encodeName('q'), tp = encodeName('t');
  const cases: [string, () => void, Uint8Array][] = [
    ['PUSH_EX', () => w.pushEx(1, q, tp, 300, encodeName('id'), Uint8Array.of(9, 8)),
      rawFrame(Op.PUSH_EX, 1, [...name('q'), ...name('t'), ...u32(300), ...name('id'), 9, 8])],
    ['PUSH_EX without dedupId', () => w.pushEx(2, q, tp, 0, new Uint8Array(0), Uint8Array.of(1)),
      rawFrame(Op.PUSH_EX, 2, [...name('q'), ...name('t'), ...u32(0), 0, 1])],
    ['PUSH_MANY_EX', () => w.pushManyEx(3, q, tp, 7, [Uint8Array.of(1), new Uint8Array(0)]),
      rawFrame(Op.PUSH_MANY_EX, 3, [...name('q'), ...name('t'), ...u32(7), ...u32(2), ...pushRecord([1]), ...pushRecord([])])],
    ['POP_LEASED', () => w.popLeased(4, q, tp, 10, 500, 0),
      rawFrame(Op.POP_LEASED, 4, [...name('q'), ...name('t'), ...u32(10), ...u32(500), ...u32(0)])],
    ['SUBSCRIBE with leaseMs', () => w.subscribe(5, q, tp, 16, SUBSCRIBE_ACK, 2000),
      rawFrame(Op.SUBSCRIBE, 5, [...name('q'), ...name('t'), ...u32(16), ...u32(SUBSCRIBE_ACK), ...u32(2000)])],
    ['SETTLE', () => w.settle(6, [{ lease: 0x100000002n, kind: SettleKind.NACK, arg: 50 }]),
      rawFrame(Op.SETTLE, 6, [...u32(1), ...u64(0x100000002n), ...u32(SettleKind.NACK), ...u32(50)])],
    ['CONFIGURE', () => w.configure(7, q, SettingsMask.LEASE_MS | SettingsMask.DEAD_LETTER_TOPIC, S_FULL),
      rawFrame(Op.CONFIGURE, 7, [...name('q'), ...u32(SettingsMask.LEASE_MS | SettingsMask.DEAD_LETTER_TOPIC), ...settingsBlock(S_FULL)])],
    ['STATS', () => w.stats(8, q, tp), rawFrame(Op.STATS, 8, [...name('q'), ...name('t')])],
    ['SETTLED', () => w.settled(9, [0, 13]), rawFrame(Op.SETTLED, 9, [...u32(2), 0, 13])],
    ['SETTINGS', () => w.settingsReply(10, S_EMPTY), rawFrame(Op.SETTINGS, 10, settingsBlock(S_EMPTY))],
    ['STATS_OK', () => w.statsOk(11, 3, 2, 1), rawFrame(Op.STATS_OK, 11, [...u32(3), ...u32(2), ...u32(1)])],
    ['MESSAGES (stored records)', () => w.messages(12, [{ data: Uint8Array.of(5), meta: 1, id: 2n ** 40n }]),
      rawFrame(Op.MESSAGES, 12, [...u32(1), ...storedRecord([5], 1, 2n ** 40n)])],
    ['DELIVER (leased records)', () => w.deliver(13, [{ data: Uint8Array.of(5), meta: 2, id: 3n, lease: 4n }], FLAGS.LEASED),
      rawFrame(Op.DELIVER, 13, [...u32(1), ...leasedRecord([5], 2, 3n, 4n)], FLAGS.LEASED)],
    ['RETURN (stored records)', () => w.returnRecords(14, q, tp, [{ data: Uint8Array.of(1), meta: 1, id: 6n }]),
      rawFrame(Op.RETURN, 14, [...name('q'), ...name('t'), ...u32(1), ...storedRecord([1], 1, 6n)])],
    ['HELLO_OK', () => w.helloOk(15, 100, 200, 'v'),
      rawFrame(Op.HELLO_OK, 15, [...u16(PROTOCOL_VERSION), ...u16(0), ...u32(100), ...u32(200), ...name('v')])],
  ];
  for (const [label, write, raw] of cases) {
    write();
    t.strictSame([...w.take()], [...raw], label);
  }
  w.free();
});

t.test('raw-built frames of the new ops decode (SUBSCRIBE also in its 8-byte form)', async (t) => {
  const { frames, fatal } = decodeAll(local, concat(
    rawFrame(Op.SUBSCRIBE, 1, [...name('q'), ...name('t'), ...u32(4), ...u32(0)]),
    rawFrame(Op.MESSAGES, 2, [...u32(2), ...storedRecord(deadLetterData(2, 'src', []), META_DEAD_LETTER), ...storedRecord([], 0xFFFFFF)]),
    rawFrame(Op.MESSAGES, 3, [...u32(0)], FLAGS.LEASED),
    rawFrame(Op.STATS_OK, 4, [...u32(0), ...u32(0), ...u32(0)]),
  ));
  t.equal(fatal, undefined);
  t.strictSame(frames, [
    frame({ op: Op.SUBSCRIBE, requestId: 1, queue: 'q', topic: 't', arg0: 4 }),
    frame({ op: Op.MESSAGES, requestId: 2, records: [deadLetterData(2, 'src', []), []], headers: [[META_DEAD_LETTER, 0n, 0n], [0xFFFFFF, 0n, 0n]], arg0: 2 }),
    frame({ op: Op.MESSAGES, requestId: 3, flags: FLAGS.LEASED, records: [], headers: [], arg0: 0 }),
    frame({ op: Op.STATS_OK, requestId: 4 }),
  ]);
});

t.test('255-byte names and a 1 MiB message round-trip; 256-byte and empty names are refused', async (t) => {
  const w = new FrameWriter(local, 64);
  const longQ = 'q'.repeat(255), longT = 'é'.repeat(127) + 'x'; // 255 bytes of UTF-8
  const big = randomBytes(prng(1), MAX_MESSAGE);
  w.push(1, encodeName(longQ), encodeName(longT), big);
  w.pushMany(2, encodeName(longQ), encodeName(longT), [big]);
  w.pushEx(3, encodeName(longQ), encodeName(longT), 1, new Uint8Array(255), big);
  w.messages(4, [big], FLAGS.LEASED);
  const { frames, fatal } = decodeAll(local, w.take());
  t.equal(fatal, undefined);
  t.equal(frames.length, 4);
  t.equal(frames[0]!.queue, longQ);
  t.equal(frames[0]!.topic, longT);
  t.ok(Buffer.from(frames[0]!.data!).equals(big), 'PUSH data intact');
  t.ok(Buffer.from(frames[1]!.records![0]!).equals(big), 'PUSH_MANY record intact');
  t.ok(Buffer.from(frames[2]!.data!).equals(big), 'PUSH_EX data intact (the dedupId does not count against maxMessageBytes)');
  t.ok(Buffer.from(frames[3]!.records![0]!).equals(big), 'leased MESSAGES record intact');
  t.throws(() => encodeName('x'.repeat(256)), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => encodeName(''), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => w.push(1, new Uint8Array(256), encodeName('t'), new Uint8Array(0)), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => w.configure(1, new Uint8Array(0), 0, S_EMPTY), { code: 'ERR_INVALID_ARGUMENT' });
  t.equal(w.byteLength, 0, 'a refused frame writes nothing');
  w.free();
});

t.test('Wasm encoders refuse name lengths 0 and 256, a 256-byte dedupId, SETTLE of 0 entries, without writing', async (t) => {
  const e = local.exports;
  const w = e.writerNew(64);
  const p = e.alloc(2048);
  t.equal(e.encodePush(w, 1, p, 0, p, 1, 0), 0);
  t.equal(e.encodePop(w, 1, p, 256, p, 1, 0), 0);
  t.equal(e.encodeLength(w, 1, p, 1, p, 0), 0);
  t.equal(e.encodePushManyBegin(w, 1, p, 1, p, 256), -1);
  t.equal(e.encodeHelloOk(w, 1, 1, 1, p, 0), 0);
  t.equal(e.encodePushEx(w, 1, p, 0, p, 1, 0, p, 0, 0), 0, 'PUSH_EX with an empty queue name');
  t.equal(e.encodePushEx(w, 1, p, 1, p, 1, 0, p, 256, 0), 0, 'PUSH_EX with a 256-byte dedupId');
  t.equal(e.encodePushManyExBegin(w, 1, p, 1, p, 0, 0), -1, 'PUSH_MANY_EX with an empty topic name');
  t.equal(e.encodePopLeased(w, 1, p, 256, p, 1, 1, 0, 0), 0);
  t.equal(e.encodeStats(w, 1, p, 1, p, 256), 0);
  t.equal(e.encodeSubscribe(w, 1, p, 0, p, 1, 1, 0, 0), 0);
  t.equal(e.encodeSettle(w, 1, 0), 0, 'SETTLE of 0 entries');
  t.equal(e.encodeConfigure(w, 1, p, 0, 0, SETTINGS_FIXED_BYTES), 0, 'CONFIGURE with an empty queue name');
  t.equal(e.encodeConfigure(w, 1, p, 256, 0, SETTINGS_FIXED_BYTES), 0, 'CONFIGURE with a 256-byte queue name');
  t.equal(e.encodeConfigure(w, 1, p, 1, 0, 1025), 0, 'CONFIGURE with an oversized settings block');
  t.equal(e.writerLength(w), 0);
  e.free(p);
  e.writerFree(w);
});

// ── Random streams, random chunk boundaries ──────────────────────────────────────────

t.test('random frame streams (every op) decode the same whatever the chunk boundaries', async (t) => {
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

t.test(`fatal: a version byte other than ${PROTOCOL_VERSION} (garbage, or protocol 1) is ERR_PROTOCOL, and stays so`, async (t) => {
  t.equal(PROTOCOL_VERSION, 2);
  t.strictSame(decodeAll(local, rawFrame(Op.PING, 1, [], { ver: 1 })), { frames: [], fatal: 'ERR_PROTOCOL' }, 'a version 1 frame');
  t.strictSame(decodeAll(local, rawFrame(Op.PING, 1, [], { ver: 3 })), { frames: [], fatal: 'ERR_PROTOCOL' });
  t.strictSame(decodeAll(local, Buffer.from('GET / HTTP/1.1\r\n\r\n')), { frames: [], fatal: 'ERR_PROTOCOL' });
  // Detected as soon as the 12 header bytes are in, however long the claimed length.
  t.strictSame(decodeAll(local, rawFrame(Op.PUSH, 1, [], { ver: 0, length: 0xFFFFFFFF })), { frames: [], fatal: 'ERR_PROTOCOL' });
  const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
  dec.feed(rawFrame(Op.PING, 1, [], { ver: 9 }));
  t.throws(() => dec.next(), { code: 'ERR_PROTOCOL', name: 'TurboError' });
  dec.feed(ping(2));
  t.throws(() => dec.next(), { code: 'ERR_PROTOCOL' }, 'a dead stream stays dead');
  dec.free();
  // A good frame before the bad one is still decoded: the decoder stops at the bad header.
  t.strictSame(decodeAll(local, concat(ping(1), rawFrame(Op.PING, 2, [], { ver: 1 }))).fatal, 'ERR_PROTOCOL');
});

t.test('fatal: length < 8 is ERR_PROTOCOL', async (t) => {
  for (const length of [0, 1, 7]) {
    t.strictSame(decodeAll(local, concat(rawFrame(Op.PING, 1, [], { length }), ping(2))), { frames: [], fatal: 'ERR_PROTOCOL' }, `length ${length}`);
  }
});

t.test('random garbage never traps or hangs: it ends in ERR_PROTOCOL (ERR_MESSAGE_TOO_LARGE for a length over maxFrameBytes) or waits for more bytes', async (t) => {
  const seed = Date.now() >>> 0;
  const rand = prng(seed);
  const before = inUse(local);
  for (let i = 0; i < 2000; i++) {
    const bytes = randomBytes(rand, (rand() * 200) | 0);
    if (rand() < 0.5 && bytes.length >= 5) bytes[4] = PROTOCOL_VERSION; // often a plausible header
    if (rand() < 0.3 && bytes.length >= 4) bytes.set(u32(8 + ((rand() * 64) | 0)), 0);
    if (rand() < 0.5 && bytes.length >= 6) bytes[5] = Object.values(Op)[(rand() * Object.values(Op).length) | 0]!; // a real opcode
    const res = decodeChunks(local, split(bytes, rand, 16), 4096, 1024);
    if (res.fatal !== undefined && res.fatal !== 'ERR_PROTOCOL' && res.fatal !== 'ERR_MESSAGE_TOO_LARGE') {
      t.fail(`unexpected ${res.fatal} (seed ${seed}, case ${i})`);
      return;
    }
  }
  t.equal(inUse(local), before, `no memory kept (seed ${seed})`);
});

/**
 * Checks what "records are validated" promises readers (assembly/codec.ts): exactly arg0
 * records of the op's header size fill dataLen, each within maxMessage, stored ones with
 * only known meta flags and a dead-letter prefix that fits. Returns a problem or ''.
 */
function checkAcceptedRecords(dec: FrameDecoder, i: number, view: Core['view'], maxMessage: number): string {
  const op = dec.op(i);
  const header = op === Op.PUSH_MANY || op === Op.PUSH_MANY_EX ? 4
    : (op === Op.MESSAGES || op === Op.DELIVER) && (dec.flags(i) & FLAGS.LEASED) !== 0 ? 24 : 16;
  let p = dec.dataPtr(i);
  const end = p + dec.dataLen(i);
  for (let k = 0; k < dec.arg0(i); k++) {
    if (end - p < header) return `record ${k} header past the end`;
    const len = view.u32(p);
    if (len > end - p - header) return `record ${k} data past the end`;
    const flags = header >= 16 ? view.u32(p + 4) >>> 24 : 0;
    if (flags !== 0) {
      // A dead letter: `u8 reason (1|2), u8 topicLen (>= 1), topic`, then up to maxMessage bytes of data.
      if (flags !== META_DEAD_LETTER >>> 24) return `record ${k} with meta flags ${flags}`;
      const reason = view.u8(p + header), topicLength = view.u8(p + header + 1);
      if (len < 3 || reason < 1 || reason > 2 || topicLength === 0 || 2 + topicLength > len) return `record ${k} with a bad dead-letter prefix`;
      if (len - 2 - topicLength > maxMessage) return `record ${k} over maxMessage`;
    } else if (len > maxMessage) {
      return `record ${k} over maxMessage`;
    }
    p += header + len;
  }
  return p === end ? '' : 'records do not fill the frame';
}

t.test('mutated valid frames (every op) never trap: each is decoded or rejected alone, and accepted records are sound', async (t) => {
  const seed = Date.now() >>> 0;
  const rand = prng(seed);
  const maxMessage = 200;
  for (const [label, core] of [['local', local], ['debug', await loadDebugCore()]] as const) {
    const before = inUse(core);
    const w = new FrameWriter(core, 4096);
    let accepted = 0, rejected = 0;
    for (let round = 0; round < 300; round++) {
      const parts: Uint8Array[] = [];
      for (let k = 0; k < 20; k++) {
        randomFrame(w, rand);
        const f = w.take();
        // Keep `length` and `ver` (the stream stays framed); mutate the flags, the op or the body.
        const n = 1 + ((rand() * 4) | 0);
        for (let m = 0; m < n && f.length > 6; m++) {
          const at = rand() < 0.15 ? 5 + ((rand() * 3) | 0) : 12 + ((rand() * (f.length - 12)) | 0);
          if (at < f.length) f[at] = rand() < 0.5 ? (rand() * 256) | 0 : f[at]! ^ (1 << ((rand() * 8) | 0));
        }
        parts.push(f);
      }
      const dec = new FrameDecoder(core, MAX_FRAME, maxMessage);
      dec.feed(concat(...parts));
      let frames = 0;
      for (;;) {
        const n = dec.next(); // a fatal error would throw: framing is intact, so it must not
        for (let i = 0; i < n; i++) {
          frames++;
          if (dec.op(i) === OP_REJECT) { rejected++; continue; }
          accepted++;
          if (RECORDS_OPS.includes(dec.op(i))) {
            const problem = checkAcceptedRecords(dec, i, core.view, maxMessage);
            if (problem !== '') {
              t.fail(`${label}: accepted ${dec.op(i).toString(16)} with ${problem} (seed ${seed})`);
              dec.free();
              w.free();
              return;
            }
          }
        }
        if (n < DESC_CAPACITY) break;
      }
      dec.free();
      if (frames !== parts.length) {
        t.fail(`${label}: ${parts.length} frames gave ${frames} descriptors (seed ${seed})`);
        w.free();
        return;
      }
    }
    w.free();
    t.ok(accepted > 0 && rejected > 0, `${label}: ${accepted} accepted, ${rejected} rejected (seed ${seed})`);
    t.equal(inUse(core), before, `${label}: no memory kept`);
  }
});

t.test('huge length (0xFFFFFFFF) is fatal ERR_MESSAGE_TOO_LARGE as soon as its header is in', async (t) => {
  const head = rawFrame(Op.PUSH, 42, [], { length: 0xFFFFFFFF });
  const dec = new FrameDecoder(local, MAX_FRAME, MAX_MESSAGE);
  dec.feed(head);
  t.throws(() => dec.next(), { code: 'ERR_MESSAGE_TOO_LARGE' }, 'no body is waited for or skipped');
  dec.feed(new Uint8Array(100_000));
  t.throws(() => dec.next(), { code: 'ERR_MESSAGE_TOO_LARGE' }, 'and it stays fatal');
  dec.free();
});

/** Decodes `bad` then a PING; returns the frames. */
function rejectThenPing(bad: Uint8Array, maxMessage = MAX_MESSAGE) {
  return decodeAll(local, concat(bad, ping(99)), MAX_FRAME, maxMessage);
}

const qt = [...name('q'), ...name('t')];
const settingsOk = settingsBlock(S_EMPTY);
/** The settings block with byte `at` set to `value`. */
const settingsWith = (at: number, value: number) => settingsOk.map((b, i) => (i === at ? value : b));

const REJECT_CASES: [string, Uint8Array, ErrorCode, number][] = [
  ['PUSH with an empty queue name', rawFrame(Op.PUSH, 5, [0, ...name('t'), 1, 2]), 'ERR_INVALID_ARGUMENT', Op.PUSH],
  ['PUSH with an empty topic name', rawFrame(Op.PUSH, 5, [...name('q'), 0]), 'ERR_INVALID_ARGUMENT', Op.PUSH],
  ['PUSH with no names at all', rawFrame(Op.PUSH, 5, []), 'ERR_PROTOCOL', Op.PUSH],
  // Names must be well-formed UTF-8 (assembly/utf8.ts).
  ['PUSH with a queue name that is not UTF-8 (0xFF)', rawFrame(Op.PUSH, 5, [1, 0xFF, ...name('t'), 1]), 'ERR_INVALID_ARGUMENT', Op.PUSH],
  ['PUSH with a topic name holding an encoded lone surrogate (ED A0 80)', rawFrame(Op.PUSH, 5, [...name('q'), 3, 0xED, 0xA0, 0x80]), 'ERR_INVALID_ARGUMENT', Op.PUSH],
  ['POP with an overlong "/" (C0 AF) in its topic name', rawFrame(Op.POP, 5, [...name('q'), 2, 0xC0, 0xAF, ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.POP],
  ['SUBSCRIBE with a topic name cut inside a character (E2 82)', rawFrame(Op.SUBSCRIBE, 5, [...name('q'), 2, 0xE2, 0x82, ...u32(1), ...u32(0), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.SUBSCRIBE],
  ['PUSH_MANY with a queue name above U+10FFFF (F4 90 80 80)', rawFrame(Op.PUSH_MANY, 5, [4, 0xF4, 0x90, 0x80, 0x80, ...name('t'), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.PUSH_MANY],
  ['CONFIGURE with a queue name that is a stray continuation byte', rawFrame(Op.CONFIGURE, 5, [1, 0x80, ...u32(1), ...settingsOk]), 'ERR_INVALID_ARGUMENT', Op.CONFIGURE],
  ['CONFIGURE with a dead-letter topic that is not UTF-8', rawFrame(Op.CONFIGURE, 5, [...name('q'), ...u32(4), ...settingsWith(34, 2), 0x64, 0xFE]), 'ERR_INVALID_ARGUMENT', Op.CONFIGURE],
  ['PUSH with a queue name past the end of the frame', rawFrame(Op.PUSH, 5, [10, 0x71, 0x71]), 'ERR_PROTOCOL', Op.PUSH],
  ['POP with a topic name past the end of the frame', rawFrame(Op.POP, 5, [...name('q'), 200, 1, 2, 3, 4]), 'ERR_PROTOCOL', Op.POP],
  ['POP with a missing topic name', rawFrame(Op.POP, 5, [...name('q')]), 'ERR_PROTOCOL', Op.POP],
  ['PUSH_MANY whose count is larger than its records', rawFrame(Op.PUSH_MANY, 5, [...qt, ...u32(3), ...pushRecord([9]), ...pushRecord([])]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY whose count is smaller than its records', rawFrame(Op.PUSH_MANY, 5, [...qt, ...u32(1), ...pushRecord([9]), ...pushRecord([])]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY with a count of 0xFFFFFFFF', rawFrame(Op.PUSH_MANY, 5, [...qt, ...u32(0xFFFFFFFF), ...pushRecord([])]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY with a record overrunning the frame', rawFrame(Op.PUSH_MANY, 5, [...qt, ...u32(1), ...u32(0xFFFFFFF0), 1, 2]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY with a truncated record length', rawFrame(Op.PUSH_MANY, 5, [...qt, ...u32(1), 1, 0]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['PUSH_MANY without a count', rawFrame(Op.PUSH_MANY, 5, [...qt, 1]), 'ERR_PROTOCOL', Op.PUSH_MANY],
  ['RETURN whose count lies', rawFrame(Op.RETURN, 5, [...qt, ...u32(2), ...storedRecord([])]), 'ERR_PROTOCOL', Op.RETURN],
  ['RETURN with an empty topic name', rawFrame(Op.RETURN, 5, [...name('q'), 0, ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.RETURN],
  ['RETURN of push records (4-byte headers)', rawFrame(Op.RETURN, 5, [...qt, ...u32(1), ...pushRecord([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])]), 'ERR_PROTOCOL', Op.RETURN],
  ['RETURN with an unknown meta flag', rawFrame(Op.RETURN, 5, [...qt, ...u32(1), ...storedRecord([1], 1 << 25)]), 'ERR_PROTOCOL', Op.RETURN],
  ['RETURN with a dead-letter prefix past its record', rawFrame(Op.RETURN, 5, [...qt, ...u32(1), ...storedRecord([1, 9, 0x74], META_DEAD_LETTER)]), 'ERR_PROTOCOL', Op.RETURN],
  ['MESSAGES whose records overrun the frame', rawFrame(Op.MESSAGES, 5, [...u32(2), ...storedRecord([7]), ...u32(5), ...u32(0), ...u64(0), 1]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES with a truncated record header', rawFrame(Op.MESSAGES, 5, [...u32(1), ...u32(0), ...u32(0), 0, 0]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES of push records (the version 1 layout)', rawFrame(Op.MESSAGES, 5, [...u32(2), ...pushRecord([7]), ...pushRecord([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14])]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES with meta flag bit 25', rawFrame(Op.MESSAGES, 5, [...u32(1), ...storedRecord([7], 1 << 25)]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES with meta flag bit 31', rawFrame(Op.MESSAGES, 5, [...u32(1), ...storedRecord([7], (1 << 31) >>> 0)]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES with a dead letter of 1 byte', rawFrame(Op.MESSAGES, 5, [...u32(1), ...storedRecord([1], META_DEAD_LETTER)]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES with an empty dead letter', rawFrame(Op.MESSAGES, 5, [...u32(1), ...storedRecord([], META_DEAD_LETTER)]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES with a dead-letter topic past its record (into the next record)', rawFrame(Op.MESSAGES, 5, [...u32(2), ...storedRecord([1, 2, 0x74], META_DEAD_LETTER), ...storedRecord([0x75])]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['MESSAGES (not leased) of leased records', rawFrame(Op.MESSAGES, 5, [...u32(1), ...leasedRecord([])]), 'ERR_PROTOCOL', Op.MESSAGES],
  ['leased DELIVER of stored records', rawFrame(Op.DELIVER, 5, [...u32(1), ...storedRecord([])], FLAGS.LEASED), 'ERR_PROTOCOL', Op.DELIVER],
  ['leased DELIVER with an unknown meta flag', rawFrame(Op.DELIVER, 5, [...u32(1), ...leasedRecord([1], 1 << 26)], FLAGS.LEASED), 'ERR_PROTOCOL', Op.DELIVER],
  ['leased DELIVER with a dead-letter prefix past its record', rawFrame(Op.DELIVER, 5, [...u32(1), ...leasedRecord([2, 3, 0x61], META_DEAD_LETTER)], FLAGS.LEASED), 'ERR_PROTOCOL', Op.DELIVER],
  ['leased MESSAGES whose count lies', rawFrame(Op.MESSAGES, 5, [...u32(2), ...leasedRecord([1])], FLAGS.LEASED), 'ERR_PROTOCOL', Op.MESSAGES],
  ['POP_MANY with max 0', rawFrame(Op.POP_MANY, 5, [...qt, ...u32(0), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.POP_MANY],
  ['SUBSCRIBE with prefetch 0', rawFrame(Op.SUBSCRIBE, 5, [...qt, ...u32(0), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.SUBSCRIBE],
  ['SUBSCRIBE with leaseMs and prefetch 0', rawFrame(Op.SUBSCRIBE, 5, [...qt, ...u32(0), ...u32(SUBSCRIBE_ACK), ...u32(100)]), 'ERR_INVALID_ARGUMENT', Op.SUBSCRIBE],
  ['SUBSCRIBE of 4 bytes', rawFrame(Op.SUBSCRIBE, 5, [...qt, ...u32(1)]), 'ERR_PROTOCOL', Op.SUBSCRIBE],
  ['SUBSCRIBE of 16 bytes', rawFrame(Op.SUBSCRIBE, 5, [...qt, ...u32(1), ...u32(0), ...u32(0), ...u32(0)]), 'ERR_PROTOCOL', Op.SUBSCRIBE],
  ['POP with a short body', rawFrame(Op.POP, 5, [...qt, 1, 2]), 'ERR_PROTOCOL', Op.POP],
  ['LENGTH with trailing bytes', rawFrame(Op.LENGTH, 5, [...qt, 1]), 'ERR_PROTOCOL', Op.LENGTH],
  ['PUSH_EX without delayMs and dedupLen', rawFrame(Op.PUSH_EX, 5, [...qt, ...u32(0)]), 'ERR_PROTOCOL', Op.PUSH_EX],
  ['PUSH_EX whose dedupId runs past the frame', rawFrame(Op.PUSH_EX, 5, [...qt, ...u32(0), 10, 1, 2, 3]), 'ERR_PROTOCOL', Op.PUSH_EX],
  ['PUSH_EX with an empty topic name', rawFrame(Op.PUSH_EX, 5, [...name('q'), 0, ...u32(0), 0]), 'ERR_INVALID_ARGUMENT', Op.PUSH_EX],
  ['PUSH_MANY_EX without delayMs', rawFrame(Op.PUSH_MANY_EX, 5, [...qt, 1, 2]), 'ERR_PROTOCOL', Op.PUSH_MANY_EX],
  ['PUSH_MANY_EX without a count', rawFrame(Op.PUSH_MANY_EX, 5, [...qt, ...u32(10)]), 'ERR_PROTOCOL', Op.PUSH_MANY_EX],
  ['PUSH_MANY_EX whose count lies', rawFrame(Op.PUSH_MANY_EX, 5, [...qt, ...u32(10), ...u32(2), ...pushRecord([1])]), 'ERR_PROTOCOL', Op.PUSH_MANY_EX],
  ['PUSH_MANY_EX of stored records', rawFrame(Op.PUSH_MANY_EX, 5, [...qt, ...u32(10), ...u32(1), ...storedRecord([1, 2])]), 'ERR_PROTOCOL', Op.PUSH_MANY_EX],
  ['POP_LEASED with max 0', rawFrame(Op.POP_LEASED, 5, [...qt, ...u32(0), ...u32(0), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.POP_LEASED],
  ['POP_LEASED of 8 bytes (no leaseMs)', rawFrame(Op.POP_LEASED, 5, [...qt, ...u32(1), ...u32(0)]), 'ERR_PROTOCOL', Op.POP_LEASED],
  ['POP_LEASED of 16 bytes', rawFrame(Op.POP_LEASED, 5, [...qt, ...u32(1), ...u32(0), ...u32(0), ...u32(0)]), 'ERR_PROTOCOL', Op.POP_LEASED],
  ['SETTLE of 0 entries', rawFrame(Op.SETTLE, 5, [...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.SETTLE],
  ['SETTLE with count 0 and an entry', rawFrame(Op.SETTLE, 5, [...u32(0), ...u64(1), ...u32(1), ...u32(0)]), 'ERR_INVALID_ARGUMENT', Op.SETTLE],
  ['SETTLE without a count', rawFrame(Op.SETTLE, 5, [1, 0]), 'ERR_PROTOCOL', Op.SETTLE],
  ['SETTLE whose count is larger than its entries', rawFrame(Op.SETTLE, 5, [...u32(2), ...u64(1), ...u32(1), ...u32(0)]), 'ERR_PROTOCOL', Op.SETTLE],
  ['SETTLE with a trailing byte', rawFrame(Op.SETTLE, 5, [...u32(1), ...u64(1), ...u32(1), ...u32(0), 0]), 'ERR_PROTOCOL', Op.SETTLE],
  ['SETTLE with a count of 0x10000000 (16 × count wraps u32)', rawFrame(Op.SETTLE, 5, [...u32(0x10000000)]), 'ERR_PROTOCOL', Op.SETTLE],
  ['SETTLE with a count of 0xFFFFFFFF', rawFrame(Op.SETTLE, 5, [...u32(0xFFFFFFFF), ...u64(1), ...u32(1), ...u32(0)]), 'ERR_PROTOCOL', Op.SETTLE],
  ['CONFIGURE with a settings block 1 byte short', rawFrame(Op.CONFIGURE, 5, [...name('q'), ...u32(1), ...settingsOk.slice(0, -1)]), 'ERR_PROTOCOL', Op.CONFIGURE],
  ['CONFIGURE with a trailing byte', rawFrame(Op.CONFIGURE, 5, [...name('q'), ...u32(1), ...settingsOk, 0]), 'ERR_PROTOCOL', Op.CONFIGURE],
  ['CONFIGURE whose dlqLen runs past the frame', rawFrame(Op.CONFIGURE, 5, [...name('q'), ...u32(4), ...settingsWith(34, 3), 0x64]), 'ERR_PROTOCOL', Op.CONFIGURE],
  ['CONFIGURE without a mask', rawFrame(Op.CONFIGURE, 5, [...name('q'), 1, 2]), 'ERR_PROTOCOL', Op.CONFIGURE],
  ['CONFIGURE without a queue name', rawFrame(Op.CONFIGURE, 5, []), 'ERR_PROTOCOL', Op.CONFIGURE],
  ['CONFIGURE with an empty queue name', rawFrame(Op.CONFIGURE, 5, [0, ...u32(1), ...settingsOk]), 'ERR_INVALID_ARGUMENT', Op.CONFIGURE],
  ['CONFIGURE with overflow 2', rawFrame(Op.CONFIGURE, 5, [...name('q'), ...u32(16), ...settingsWith(32, 2)]), 'ERR_INVALID_ARGUMENT', Op.CONFIGURE],
  ['CONFIGURE with durable 3', rawFrame(Op.CONFIGURE, 5, [...name('q'), ...u32(64), ...settingsWith(33, 3)]), 'ERR_INVALID_ARGUMENT', Op.CONFIGURE],
  ['STATS with trailing bytes', rawFrame(Op.STATS, 5, [...qt, 0]), 'ERR_PROTOCOL', Op.STATS],
  ['STATS with a missing topic name', rawFrame(Op.STATS, 5, [...name('q')]), 'ERR_PROTOCOL', Op.STATS],
  ['SETTLED whose count lies', rawFrame(Op.SETTLED, 5, [...u32(3), 0, 0]), 'ERR_PROTOCOL', Op.SETTLED],
  ['SETTLED without a count', rawFrame(Op.SETTLED, 5, [0, 0]), 'ERR_PROTOCOL', Op.SETTLED],
  ['SETTINGS of 34 bytes', rawFrame(Op.SETTINGS, 5, settingsOk.slice(0, 34)), 'ERR_PROTOCOL', Op.SETTINGS],
  ['SETTINGS whose dlqLen is longer than the frame', rawFrame(Op.SETTINGS, 5, [...settingsWith(34, 5), 0x64, 0x64]), 'ERR_PROTOCOL', Op.SETTINGS],
  ['SETTINGS whose dlqLen is shorter than the frame', rawFrame(Op.SETTINGS, 5, [...settingsWith(34, 1), 0x64, 0x64]), 'ERR_PROTOCOL', Op.SETTINGS],
  ['SETTINGS with overflow 255', rawFrame(Op.SETTINGS, 5, settingsWith(32, 255)), 'ERR_INVALID_ARGUMENT', Op.SETTINGS],
  ['SETTINGS with durable 3', rawFrame(Op.SETTINGS, 5, settingsWith(33, 3)), 'ERR_INVALID_ARGUMENT', Op.SETTINGS],
  ['STATS_OK of 8 bytes', rawFrame(Op.STATS_OK, 5, [...u32(1), ...u32(1)]), 'ERR_PROTOCOL', Op.STATS_OK],
  ['STATS_OK of 16 bytes', rawFrame(Op.STATS_OK, 5, [...u32(1), ...u32(1), ...u32(1), ...u32(1)]), 'ERR_PROTOCOL', Op.STATS_OK],
  ['PING with a body', rawFrame(Op.PING, 5, [1]), 'ERR_PROTOCOL', Op.PING],
  ['SERVER_STATS with a body', rawFrame(Op.SERVER_STATS, 5, [1]), 'ERR_PROTOCOL', Op.SERVER_STATS],
  ['SHUTDOWN with a body', rawFrame(Op.SHUTDOWN, 5, [0, 0, 0, 0]), 'ERR_PROTOCOL', Op.SHUTDOWN],
  ['HELLO of 4 bytes', rawFrame(Op.HELLO, 5, [1, 0, 1, 0]), 'ERR_PROTOCOL', Op.HELLO],
  ['CREDIT of 12 bytes', rawFrame(Op.CREDIT, 5, [...u32(1), ...u32(1), ...u32(1)]), 'ERR_PROTOCOL', Op.CREDIT],
  ['CANCEL of 0 bytes', rawFrame(Op.CANCEL, 5, []), 'ERR_PROTOCOL', Op.CANCEL],
  ['UNSUBSCRIBE of 3 bytes', rawFrame(Op.UNSUBSCRIBE, 5, [1, 2, 3]), 'ERR_PROTOCOL', Op.UNSUBSCRIBE],
  ['ERROR whose text length lies', rawFrame(Op.ERROR, 5, [...u16(1), ...u16(10), 0x61]), 'ERR_PROTOCOL', Op.ERROR],
  ['HELLO_OK with trailing bytes', rawFrame(Op.HELLO_OK, 5, [...u16(PROTOCOL_VERSION), ...u16(0), ...u32(1), ...u32(1), ...name('v'), 0]), 'ERR_PROTOCOL', Op.HELLO_OK],
  ['LENGTH_OK of 8 bytes', rawFrame(Op.LENGTH_OK, 5, [...u32(1), ...u32(1)]), 'ERR_PROTOCOL', Op.LENGTH_OK],
  ['unknown opcode 0x7E', rawFrame(0x7E, 5, [1, 2, 3]), 'ERR_UNKNOWN_OPCODE', 0x7E],
  ['request opcode 0x20 (unassigned)', rawFrame(0x20, 5, []), 'ERR_UNKNOWN_OPCODE', 0x20],
  ['reply opcode 0x90 (unassigned)', rawFrame(0x90, 5, []), 'ERR_UNKNOWN_OPCODE', 0x90],
  ['OP_REJECT itself on the wire', rawFrame(OP_REJECT, 5, []), 'ERR_UNKNOWN_OPCODE', OP_REJECT],
];

t.test('names are accepted exactly when they are well-formed UTF-8 (random bytes against TextDecoder fatal)', async (t) => {
  const seed = (Math.random() * 2 ** 32) >>> 0;
  const rand = prng(seed);
  const strict = new TextDecoder('utf-8', { fatal: true });
  // Bytes drawn mostly from the interesting ranges: ASCII, continuation bytes, lead bytes.
  const pool = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF];
  let accepted = 0, refused = 0;
  for (let i = 0; i < 3000; i++) {
    let bytes: number[];
    if (rand() < 0.5) {
      // Well-formed text near every boundary of Table 3-7, then maybe one byte changed or the end cut.
      const points = [0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF, 0x3B1, 0x20AC, 0x1D11E];
      const text = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => String.fromCodePoint(points[Math.floor(rand() * points.length)]!)).join('');
      bytes = [...Buffer.from(text)];
      const r = rand();
      if (r < 0.3) bytes[Math.floor(rand() * bytes.length)] = pool[Math.floor(rand() * pool.length)]!;
      else if (r < 0.45 && bytes.length > 1) bytes.length -= 1;
    } else {
      const len = 1 + Math.floor(rand() * 12);
      bytes = Array.from({ length: len }, () => (rand() < 0.8 ? pool[Math.floor(rand() * pool.length)]! : Math.floor(rand() * 256)));
    }
    // A long ASCII prefix now and then: the eight-bytes-at-a-time path, then the bytes.
    const topic = rand() < 0.3 ? [...Buffer.from('abcdefghijklmnop'.slice(0, Math.floor(rand() * 16))), ...bytes] : bytes;
    let wellFormed = true;
    try { strict.decode(Uint8Array.from(topic)); } catch { wellFormed = false; }
    const { frames, fatal } = decodeAll(local, rawFrame(Op.PUSH, 5, [...name('q'), topic.length, ...topic, 1]));
    const op = frames[0]!.op;
    if (fatal !== undefined || op !== (wellFormed ? Op.PUSH : OP_REJECT) || (!wellFormed && frames[0]!.arg0 !== ErrorCode.ERR_INVALID_ARGUMENT)) {
      t.fail(`seed ${seed}: name bytes [${topic.map((b) => b.toString(16)).join(' ')}] ${wellFormed ? 'refused' : 'accepted'}`);
      return;
    }
    if (wellFormed) accepted++; else refused++;
  }
  t.ok(accepted > 100 && refused > 100, `both kinds were drawn (${accepted} accepted, ${refused} refused; seed ${seed})`);
  for (const good of ['ü', '€', '𝄞', '\uFFFD', '\u{10FFFF}', 'a'.repeat(255)]) {
    const bytes = [...Buffer.from(good)];
    t.equal(decodeAll(local, rawFrame(Op.PUSH, 5, [...name('q'), bytes.length, ...bytes])).frames[0]!.op, Op.PUSH, `${JSON.stringify(good)} accepted`);
  }
});

for (const [label, bad, code, op] of REJECT_CASES) {
  t.test(`${label}: rejected ${code}, the next frame still decodes`, async (t) => {
    const { frames, fatal } = rejectThenPing(bad);
    t.equal(fatal, undefined, 'not fatal');
    t.strictSame(frames, [
      frame({ op: OP_REJECT, flags: Buffer.from(bad).readUInt16LE(6), requestId: 5, arg0: ErrorCode[code], arg1: op }),
      frame({ op: Op.PING, requestId: 99 }),
    ]);
    // And the same split into 1-byte chunks.
    t.strictSame(decodeChunks(local, split(concat(bad, ping(99)), Math.random, 1)), { frames });
  });
}

t.test('every request and reply opcode has at least one reject case', async (t) => {
  const rejected = new Set(REJECT_CASES.map(([, , , op]) => op));
  for (const [opName, code] of Object.entries(Op)) {
    if (code === Op.OK || code === Op.PONG || code === Op.EMPTY) continue; // covered by PING's empty-body rule
    if (code === Op.AUTH) continue; // read by the handshake in JS, not by the codec
    if (code === Op.STATS_JSON) continue; // any body is its text: nothing to reject
    t.ok(rejected.has(code), `${opName} has a reject case`);
  }
});

t.test('a message over maxMessageBytes is rejected in every op that carries messages', async (t) => {
  const maxMessage = 100;
  const w = new FrameWriter(local);
  const q = encodeName('q'), tp = encodeName('t');
  const dl = (n: number) => ({ data: Uint8Array.from(deadLetterData(1, 'src', new Uint8Array(n))), meta: META_DEAD_LETTER | 1 });
  w.push(1, q, tp, new Uint8Array(100));
  w.push(2, q, tp, new Uint8Array(101));
  w.pushMany(3, q, tp, [new Uint8Array(100), new Uint8Array(5)]);
  w.pushMany(4, q, tp, [new Uint8Array(5), new Uint8Array(101), new Uint8Array(5)]);
  w.messages(5, [new Uint8Array(101)]);
  w.returnRecords(7, q, tp, [new Uint8Array(101)]);
  w.pushEx(8, q, tp, 0, new Uint8Array(200), new Uint8Array(100));
  w.pushEx(9, q, tp, 0, encodeName('x'), new Uint8Array(101));
  w.pushManyEx(10, q, tp, 5, [new Uint8Array(100)]);
  w.pushManyEx(11, q, tp, 5, [new Uint8Array(1), new Uint8Array(101)]);
  w.deliver(12, [new Uint8Array(100), new Uint8Array(101)], FLAGS.LEASED);
  w.messages(13, [dl(100)]); // a dead letter's origin prefix comes on top of its data's maxMessage
  w.messages(14, [dl(101)]);
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
    [Op.PUSH_EX, 8, 0, 0],
    [OP_REJECT, 9, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.PUSH_EX],
    [Op.PUSH_MANY_EX, 10, 1, 5],
    [OP_REJECT, 11, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.PUSH_MANY_EX],
    [OP_REJECT, 12, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.DELIVER],
    [Op.MESSAGES, 13, 1, 0],
    [OP_REJECT, 14, ErrorCode.ERR_MESSAGE_TOO_LARGE, Op.MESSAGES],
    [Op.PING, 6, 0, 0],
  ]);
});

t.test('flags are passed through, in frames and in rejects; MESSAGES ignores flag bits it does not know', async (t) => {
  const { frames } = decodeAll(local, concat(
    rawFrame(Op.PING, 1, [], { flags: 0xABCD }),
    rawFrame(0x7F, 2, [], { flags: 1 }),
    rawFrame(Op.MESSAGES, 3, [...u32(1), ...storedRecord([4], 1, 8)], { flags: 0xFFFE }),
    rawFrame(Op.DELIVER, 4, [...u32(1), ...leasedRecord([4], 1, 8, 9)], { flags: 0xFFFF }),
  ));
  t.strictSame(frames.map((f) => [f.op, f.flags, f.headers]), [
    [Op.PING, 0xABCD, undefined], [OP_REJECT, 1, undefined], [Op.MESSAGES, 0xFFFE, [[1, 8n, 0n]]], [Op.DELIVER, 0xFFFF, [[1, 8n, 9n]]],
  ]);
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

t.test('an oversized frame is fatal before its body arrives, with nothing reserved for it', async (t) => {
  const maxFrame = 64 * 1024;
  const dec = new FrameDecoder(local, maxFrame, 1024);
  const before = inUse(local);
  dec.feed(concat(ping(76), rawFrame(Op.PUSH, 77, [], { length: 8 + 10 * 1024 * 1024 })));
  t.throws(() => dec.next(), { code: 'ERR_MESSAGE_TOO_LARGE' }, 'the frames before it in the same call are dropped too: the connection is going away');
  t.ok(inUse(local) - before <= 128 * 1024 && dec.capacity <= 128 * 1024, 'no buffer for the 10 MiB body');
  dec.free();
});

t.test('a frame of exactly maxFrameBytes body is accepted, one byte more is fatal', async (t) => {
  const maxFrame = 1000;
  const ok = rawFrame(Op.PUSH, 1, [...qt, ...new Uint8Array(maxFrame - 4)]);
  const tooBig = rawFrame(Op.PUSH, 2, [...qt, ...new Uint8Array(maxFrame - 3)]);
  t.strictSame(decodeAll(local, concat(ok, ping(3)), maxFrame, maxFrame).frames.map((f) => [f.op, f.requestId, f.arg0]), [[Op.PUSH, 1, 0], [Op.PING, 3, 0]]);
  const { fatal } = decodeAll(local, concat(ok, tooBig, ping(3)), maxFrame, maxFrame);
  t.equal(fatal, 'ERR_MESSAGE_TOO_LARGE');
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
  const mark = e.encodeRecordsBegin(w, Op.MESSAGES, 2, 0);
  t.equal(mark, 12);
  for (let i = 0; i < 3; i++) {
    const p = e.encodeStoredRecord(w, 2, i, 100 + i, i);
    local.view.write(p, Uint8Array.of(i, i));
  }
  // A stored record written directly, as fifo.ts does: len 1, meta 1, id 7.
  const at = e.writerEnsure(w, 17);
  local.view.write(at, Uint8Array.from(storedRecord([9], 1, 7)));
  e.writerAdvance(w, 17);
  e.encodeRecordsEnd(w, mark, 4);
  const mark2 = e.encodeRecordsBegin(w, Op.DELIVER, 3, FLAGS.LEASED);
  e.encodeStoredRecord(w, 100, 0, 0, 0);
  e.writerTruncate(w, mark2);
  // PUSH_MANY_EX: the count comes after delayMs (encodeRecordsEnd must find it).
  const q = e.alloc(2);
  local.view.write(q, Uint8Array.of(0x71, 0x74));
  const mark3 = e.encodePushManyExBegin(w, 4, q, 1, q + 1, 1, 0xDEADBEEF);
  local.view.write(e.encodeRecord(w, 1), Uint8Array.of(5));
  local.view.write(e.encodeRecord(w, 1), Uint8Array.of(6));
  e.encodeRecordsEnd(w, mark3, 2);
  const mark4 = e.encodeRecordsBegin(w, Op.DELIVER, 5, FLAGS.LEASED);
  e.encodeRecordsEnd(w, mark4, 0);
  e.free(q);
  const bytes = local.view.copy(e.writerData(w), e.writerLength(w));
  const { frames } = decodeAll(local, bytes);
  t.strictSame(frames.map((f) => [f.op, f.flags, f.requestId, f.records, f.headers, f.arg1]), [
    [Op.OK, 0, 1, undefined, undefined, 0],
    [Op.MESSAGES, 0, 2, [[0, 0], [1, 1], [2, 2], [9]], [[0, 100n, 0n], [1, 101n + (1n << 32n), 0n], [2, 102n + (2n << 32n), 0n], [1, 7n, 0n]], 0],
    [Op.PUSH_MANY_EX, 0, 4, [[5], [6]], undefined, 0xDEADBEEF],
    [Op.DELIVER, FLAGS.LEASED, 5, [], [], 0],
  ]);
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
