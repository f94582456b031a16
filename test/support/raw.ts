// The one raw-frame builder for tests that talk to a broker or a decoder byte by byte
// (docs/protocol.md): frames and their body pieces are built here from src/protocol.ts's
// constants, never by hand-typed bytes. Independent of the Wasm writer on purpose, so that
// malformed input can be built and the encoders can be checked against it.

import {
  PROTOCOL_VERSION, Op, HEADER_BYTES, SETTINGS_FIXED_BYTES,
} from '../../src/protocol.ts';

/** Bytes of a body: a Uint8Array, or a list of byte values (the pieces below spread into one). */
export type Bytes = Uint8Array | readonly number[];

/** Overrides for malformed headers: another version byte, a lying length. */
export interface RawFrameOptions {
  flags?: number;
  ver?: number;
  length?: number;
}

/** One frame: header (length, version, op, flags, requestId) + body. `options` a number = flags. */
export function rawFrame(op: number, requestId: number, body: Bytes = new Uint8Array(0), options: number | RawFrameOptions = 0): Buffer {
  const opts = typeof options === 'number' ? { flags: options } : options;
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  const out = Buffer.alloc(HEADER_BYTES + b.length);
  out.writeUInt32LE(opts.length ?? 8 + b.length, 0);
  out[4] = opts.ver ?? PROTOCOL_VERSION;
  out[5] = op;
  out.writeUInt16LE(opts.flags ?? 0, 6);
  out.writeUInt32LE(requestId >>> 0, 8);
  out.set(b, HEADER_BYTES);
  return out;
}

/** `name queue, name topic` followed by `rest`: the start of most request bodies. */
export function namedBody(queue: string, topic: string, rest: Uint8Array = new Uint8Array(0)): Buffer {
  const q = Buffer.from(queue), t = Buffer.from(topic);
  return Buffer.concat([Buffer.from([q.length]), q, Buffer.from([t.length]), t, rest]);
}

/** A PUSH frame. */
export function pushFrame(requestId: number, queue: string, topic: string, data: string | Uint8Array): Buffer {
  return rawFrame(Op.PUSH, requestId, namedBody(queue, topic, typeof data === 'string' ? Buffer.from(data) : data));
}

/** The header bytes that start an OK reply to any request (length 8, version, op OK). */
export const OK_REPLY_PREFIX = Buffer.from([8, 0, 0, 0, PROTOCOL_VERSION, Op.OK]);

// ── Little-endian pieces (arrays of byte values, to spread into a body) ──────────────

export const u16 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff];
export const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
export const u64 = (n: bigint | number): number[] => {
  const v = BigInt(n);
  return [...u32(Number(v & 0xFFFFFFFFn)), ...u32(Number((v >> 32n) & 0xFFFFFFFFn))];
};
export const f64 = (x: number): number[] => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(x, 0);
  return [...b];
};
/** A `name`: u8 length, then the UTF-8 bytes (any length: malformed names on purpose too). */
export const name = (s: string): number[] => {
  const b = Buffer.from(s);
  return [b.length & 0xff, ...b];
};

// ── Records ─────────────────────────────────────────────────────────────────────────

/** A push record (PUSH_MANY, PUSH_MANY_EX): `u32 len, data`. */
export function pushRecord(data: Bytes): number[] {
  return [...u32(data.length), ...data];
}

/** A stored record (MESSAGES, DELIVER, RETURN): `u32 len, u32 meta, u64 id, data`. */
export function storedRecord(data: Bytes, meta = 0, id: bigint | number = 0): number[] {
  return [...u32(data.length), ...u32(meta), ...u64(id), ...data];
}

/** A leased record (MESSAGES/DELIVER with FLAGS.LEASED): the stored header, `u64 lease`, data. */
export function leasedRecord(data: Bytes, meta = 0, id: bigint | number = 0, lease: bigint | number = 0): number[] {
  return [...u32(data.length), ...u32(meta), ...u64(id), ...u64(lease), ...data];
}

/** A dead letter's data: `u8 reason, u8 topicLen, topic`, then the message (meta gets META_DEAD_LETTER). */
export function deadLetterData(reason: number, topic: string, data: Bytes): number[] {
  return [reason, ...name(topic), ...data];
}

// ── Settings (CONFIGURE, SETTINGS) ───────────────────────────────────────────────────

export interface SettingsBlock {
  leaseMs: number;
  maxDeliveries: number;
  maxLength: number;
  dedupWindowMs: number;
  /** 0 reject, 1 drop-oldest. */
  overflow: number;
  /** 0 no, 1 yes, 2 unset (the broker's default). */
  durable: number;
  /** UTF-8 name, '' for none. */
  deadLetterTopic: string;
}

/** The settings block: 4 × f64, u8 overflow, u8 durable, u8 dlqLen, dlq bytes. */
export function settingsBlock(s: SettingsBlock): number[] {
  const dlq = [...Buffer.from(s.deadLetterTopic)];
  const out = [...f64(s.leaseMs), ...f64(s.maxDeliveries), ...f64(s.maxLength), ...f64(s.dedupWindowMs), s.overflow, s.durable, dlq.length, ...dlq];
  if (out.length !== SETTINGS_FIXED_BYTES + dlq.length) throw new Error('settings block layout');
  return out;
}
