// The wire floor: how fast the turbomq broker takes batched pushes and pops from a client that
// costs nothing — a plain Node socket writing pre-encoded PUSH_MANY / POP_MANY frames
// (docs/protocol.md) and only counting the replies — against TurboClient's pushMany / popMany
// doing the same on the same broker. "turbomq client / wire floor" is what the client keeps of
// what the broker can take (issue 13's target: >= 0.8x on batched push and pop).
//
// One connection each, `inFlight` requests outstanding, `batch` messages of `sizeBytes` per
// request. Pops use timeout 0 on a topic filled beforehand (untimed) with the messages they
// take, so they measure popping, not waiting.

import net from 'node:net';
import { TurboClient } from '../../src/index.ts';
import { PROTOCOL_VERSION as VERSION, Op, HEADER_BYTES as HEADER } from '../../src/protocol.ts';

const { PUSH_MANY: OP_PUSH_MANY, POP_MANY: OP_POP_MANY, OK: OP_OK, EMPTY: OP_EMPTY, MESSAGES: OP_MESSAGES } = Op;

export interface WireRun {
  /** Messages moved. */
  messages: number;
  ms: number;
  rate: number;
}

export interface WireSpec {
  queue: string;
  topic: string;
  /** Messages to move; rounded up to whole batches. */
  messages: number;
  batch: number;
  sizeBytes: number;
  inFlight: number;
}

function frame(op: number, requestId: number, queue: string, topic: string, bodyAfterNames: Buffer): Buffer {
  const q = Buffer.from(queue), t = Buffer.from(topic);
  const body = 2 + q.length + t.length + bodyAfterNames.length;
  const buf = Buffer.alloc(HEADER + body);
  buf.writeUInt32LE(8 + body, 0);
  buf[4] = VERSION;
  buf[5] = op;
  buf.writeUInt32LE(requestId, 8);
  let p = HEADER;
  buf[p++] = q.length;
  q.copy(buf, p); p += q.length;
  buf[p++] = t.length;
  t.copy(buf, p); p += t.length;
  bodyAfterNames.copy(buf, p);
  return buf;
}

/** `n` PUSH_MANY frames of `batch` zero-filled records each, back to back, request ids 1..n. */
export function pushManyFrames(queue: string, topic: string, batch: number, sizeBytes: number, n: number): Buffer {
  const records = Buffer.alloc(4 + batch * (4 + sizeBytes));
  records.writeUInt32LE(batch, 0);
  for (let i = 0; i < batch; i++) records.writeUInt32LE(sizeBytes, 4 + i * (4 + sizeBytes));
  return Buffer.concat(Array.from({ length: n }, (_, i) => frame(OP_PUSH_MANY, i + 1, queue, topic, records)));
}

/** `n` POP_MANY frames (max `batch`, timeout 0), back to back, request ids 1..n. */
export function popManyFrames(queue: string, topic: string, batch: number, n: number): Buffer {
  const args = Buffer.alloc(8);
  args.writeUInt32LE(batch, 0);
  args.writeUInt32LE(0, 4);
  return Buffer.concat(Array.from({ length: n }, (_, i) => frame(OP_POP_MANY, i + 1, queue, topic, args)));
}

/**
 * Keeps `inFlight` pre-encoded frames (all the same length) outstanding until `requests` are
 * answered; `count(op, buf, at)` says how many messages a reply moved (-1: stop sending).
 */
function drive(port: number, frames: Buffer, inFlight: number, requests: number, count: (op: number, buf: Buffer, at: number) => number): Promise<WireRun> {
  const frameBytes = frames.length / inFlight;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    let sent = 0, answered = 0, moved = 0, stop = false, t0 = 0;
    let pending: Buffer | undefined;
    const send = (n: number) => {
      n = Math.min(n, requests - sent);
      if (n <= 0 || stop) return;
      socket.write(frames.subarray(0, n * frameBytes));
      sent += n;
    };
    socket.once('error', reject);
    socket.once('connect', () => {
      t0 = performance.now();
      send(inFlight);
    });
    socket.on('data', (chunk: Buffer) => {
      let buf = chunk;
      if (pending !== undefined) { buf = Buffer.concat([pending, chunk]); pending = undefined; }
      let at = 0, replies = 0;
      while (buf.length - at >= HEADER) {
        const total = 4 + buf.readUInt32LE(at);
        if (buf.length - at < total) break;
        let n: number;
        try {
          n = count(buf[at + 5]!, buf, at);
        } catch (err) {
          socket.destroy();
          return reject(err);
        }
        if (n < 0) stop = true;
        else moved += n;
        replies++;
        at += total;
      }
      if (at < buf.length) pending = buf.subarray(at);
      answered += replies;
      if (answered >= sent && (stop || sent >= requests)) {
        const ms = performance.now() - t0;
        socket.destroy();
        resolve({ messages: moved, ms, rate: moved / (ms / 1000) });
        return;
      }
      send(replies);
    });
  });
}

/** Pushes spec.messages in pre-encoded PUSH_MANY frames. */
export function floorPush(port: number, s: WireSpec): Promise<WireRun> {
  const frames = pushManyFrames(s.queue, s.topic, s.batch, s.sizeBytes, s.inFlight);
  return drive(port, frames, s.inFlight, Math.ceil(s.messages / s.batch), (op) => {
    if (op !== OP_OK) throw new Error(`PUSH_MANY answered op 0x${op.toString(16)}`);
    return s.batch;
  });
}

/** Pops spec.messages (from a filled topic) in pre-encoded POP_MANY frames; stops at the first EMPTY. */
export function floorPop(port: number, s: WireSpec): Promise<WireRun> {
  const frames = popManyFrames(s.queue, s.topic, s.batch, s.inFlight);
  return drive(port, frames, s.inFlight, Math.ceil(s.messages / s.batch), (op, buf, at) => {
    if (op === OP_MESSAGES) return buf.readUInt32LE(at + HEADER);
    if (op === OP_EMPTY) return -1;
    throw new Error(`POP_MANY answered op 0x${op.toString(16)}`);
  });
}

/** The same pushes through TurboClient.pushMany, `inFlight` calls outstanding. */
export async function clientPush(url: string, s: WireSpec): Promise<WireRun> {
  const client = await TurboClient.connect(url);
  try {
    const queue = client.getQueue(s.queue);
    const items = Array.from({ length: s.batch }, () => new Uint8Array(s.sizeBytes));
    const requests = Math.ceil(s.messages / s.batch);
    let started = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: s.inFlight }, async () => {
      while (started < requests) {
        started++;
        await queue.pushMany(s.topic, items);
      }
    }));
    const ms = performance.now() - t0;
    return { messages: requests * s.batch, ms, rate: requests * s.batch / (ms / 1000) };
  } finally {
    await client.close();
  }
}

/** The same pops through TurboClient.popMany (timeout 0), `inFlight` calls outstanding. */
export async function clientPop(url: string, s: WireSpec): Promise<WireRun> {
  const client = await TurboClient.connect(url);
  try {
    const queue = client.getQueue(s.queue);
    const requests = Math.ceil(s.messages / s.batch);
    let started = 0, moved = 0, empty = false;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: s.inFlight }, async () => {
      while (started < requests && !empty) {
        started++;
        const ms = await queue.popMany(s.topic, s.batch, 0);
        if (ms.length === 0) empty = true;
        moved += ms.length;
      }
    }));
    const ms = performance.now() - t0;
    return { messages: moved, ms, rate: moved / (ms / 1000) };
  } finally {
    await client.close();
  }
}
