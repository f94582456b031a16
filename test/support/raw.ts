// The one raw-frame builder for tests that talk to a broker byte by byte (docs/protocol.md):
// frames are built here from src/protocol.ts's constants, never by hand-typed bytes.

import { PROTOCOL_VERSION, Op, HEADER_BYTES } from '../../src/protocol.ts';

/** One frame: header (length, version, op, flags, requestId) + body. */
export function rawFrame(op: number, requestId: number, body: Uint8Array = new Uint8Array(0), flags = 0): Buffer {
  const out = Buffer.alloc(HEADER_BYTES + body.length);
  out.writeUInt32LE(8 + body.length, 0);
  out[4] = PROTOCOL_VERSION;
  out[5] = op;
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(requestId, 8);
  out.set(body, HEADER_BYTES);
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
