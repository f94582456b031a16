// The client's reply path alone, with no socket and no broker: a fake transport answers each
// POP_MANY with a prebuilt MESSAGES frame (64 stored records of SIZE bytes; the request id
// patched in), all the replies to one write in one chunk on the next macrotask, as a
// loopback socket delivers them. What is left is the client's own work per popped message:
// the core's decode of the chunk, building the Message objects, resolving the calls, GC.
// The push path alone is the same for pushMany (every other request is answered OK): the
// client's encoding of the records and frames, the sends, the replies' decode. Used by
// bench/client.bench.ts ("reply path alone", "push path alone"); steadier than any figure
// with a socket in it, so they are the ones to compare builds with.

import { TurboClient } from '../src/index.ts';
import type { Transport } from '../src/client/transport.ts';
import { Op, PROTOCOL_VERSION, HEADER_BYTES, RECORD_HEADER_BYTES } from '../src/protocol.ts';

function frame(op: number, body: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES + body.length);
  new DataView(bytes.buffer).setUint32(0, 8 + body.length, true);
  bytes[4] = PROTOCOL_VERSION;
  bytes[5] = op;
  bytes.set(body, HEADER_BYTES);
  return bytes;
}

/** A MESSAGES frame of `batch` stored records of `size` zero bytes, ids 0..batch-1, first delivery. */
function messagesFrame(batch: number, size: number): Uint8Array {
  const body = new Uint8Array(4 + batch * (RECORD_HEADER_BYTES + size));
  const v = new DataView(body.buffer);
  v.setUint32(0, batch, true);
  for (let i = 0, p = 4; i < batch; i++, p += RECORD_HEADER_BYTES + size) {
    v.setUint32(p, size, true);
    v.setUint32(p + 4, 1, true);
    v.setUint32(p + 8, i, true);
  }
  return frame(Op.MESSAGES, body);
}

function helloOkFrame(): Uint8Array {
  const name = new TextEncoder().encode('fake');
  const body = new Uint8Array(12 + 1 + name.length);
  const v = new DataView(body.buffer);
  v.setUint16(0, PROTOCOL_VERSION, true);
  v.setUint32(4, 1 << 20, true);
  v.setUint32(8, 8 << 20, true);
  body[12] = name.length;
  body.set(name, 13);
  return frame(Op.HELLO_OK, body);
}

/** Answers HELLO with HELLO_OK, POP_MANY with `messages`, anything else with OK. */
class FakeBroker implements Transport {
  onData: (chunk: Uint8Array) => void = () => {};
  onClose: (error?: Error) => void = () => {};
  readonly reusesChunks = true;
  readonly #frames: Record<number, Uint8Array>;
  readonly #ok = frame(Op.OK, new Uint8Array(0));
  readonly #out = new Uint8Array(4 << 20);
  readonly #outView = new DataView(this.#out.buffer);
  #replies: Uint8Array[] = [];
  #ids: number[] = [];
  #scheduled = false;

  constructor(messages: Uint8Array) {
    this.#frames = { [Op.HELLO]: helloOkFrame(), [Op.POP_MANY]: messages };
  }

  send(bytes: Uint8Array): void {
    this.sendCopyOf(bytes);
  }

  sendCopyOf(bytes: Uint8Array): void {
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let at = 0; at < bytes.length; at += 4 + v.getUint32(at, true)) {
      this.#replies.push(this.#frames[bytes[at + 5]!] ?? this.#ok);
      this.#ids.push(v.getUint32(at + 8, true));
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#answer());
    }
  }

  #answer(): void {
    this.#scheduled = false;
    let n = 0;
    for (let i = 0; i < this.#replies.length; i++) {
      this.#out.set(this.#replies[i]!, n);
      this.#outView.setUint32(n + 8, this.#ids[i]!, true);
      n += this.#replies[i]!.length;
    }
    this.#replies = [];
    this.#ids = [];
    this.onData(this.#out.subarray(0, n));
  }

  close(): void {
    this.onClose();
  }
}

export type ReadKind = 'nothing' | 'data' | 'content';

/** Client CPU ns per popped message: `calls` popMany(64) calls, `inFlight` outstanding, each message read as `read`. */
export async function replyPathNsPerMessage(opts: { calls: number; inFlight: number; batch: number; size: number; read: ReadKind; repeat: number }): Promise<number[]> {
  const client = await TurboClient.connectTransport(new FakeBroker(messagesFrame(opts.batch, opts.size)), 'fake://replies');
  try {
    const queue = client.getQueue('replies');
    const out: number[] = [];
    for (let r = 0; r < opts.repeat; r++) {
      const cpu0 = process.cpuUsage();
      let started = 0, got = 0, sink = 0;
      await Promise.all(Array.from({ length: opts.inFlight }, async () => {
        while (started < opts.calls) {
          started++;
          const ms = await queue.popMany('t', opts.batch, 0);
          got += ms.length;
          if (opts.read === 'data') for (const m of ms) sink += m.data.length;
          else if (opts.read === 'content') for (const m of ms) sink += m.content.length;
        }
      }));
      const cpu = process.cpuUsage(cpu0);
      if (sink < 0) console.log(sink); // keeps the reads
      out.push((cpu.user + cpu.system) * 1000 / got);
    }
    return out;
  } finally {
    await client.close();
  }
}

/** Client CPU ns per pushed message: `calls` pushMany calls of `batch` Uint8Arrays of `size` bytes, `inFlight` outstanding. */
export async function pushPathNsPerMessage(opts: { calls: number; inFlight: number; batch: number; size: number; repeat: number }): Promise<number[]> {
  const client = await TurboClient.connectTransport(new FakeBroker(messagesFrame(opts.batch, opts.size)), 'fake://pushes');
  try {
    const queue = client.getQueue('pushes');
    const items = Array.from({ length: opts.batch }, () => new Uint8Array(opts.size));
    const out: number[] = [];
    for (let r = 0; r < opts.repeat; r++) {
      const cpu0 = process.cpuUsage();
      let started = 0;
      await Promise.all(Array.from({ length: opts.inFlight }, async () => {
        while (started < opts.calls) {
          started++;
          await queue.pushMany('t', items);
        }
      }));
      const cpu = process.cpuUsage(cpu0);
      out.push((cpu.user + cpu.system) * 1000 / (opts.calls * opts.batch));
    }
    return out;
  } finally {
    await client.close();
  }
}
