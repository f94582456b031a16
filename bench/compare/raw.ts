// The raw-TCP floor for bench/compare: turbomq's own framing (docs/protocol.md) over plain
// Node sockets, with the least broker there can be: a JS array per topic and a list of
// parked pops, on one thread of its own process. No Wasm, no shared memory, no limits, no
// validation. What turbomq costs above this is its broker logic; what this costs is Node's
// sockets, framing and one JS relay thread.
//
// The same file is the relay (`node bench/compare/raw.ts --serve` prints "listening on PORT";
// bench/compare/servers.ts starts it) and the client driver (rawDriver, which also speaks to a
// real turbomq broker: it needs no HELLO).

import net from 'node:net';
import { pathToFileURL } from 'node:url';
import type { Driver, DriverSpec, ProducerConnection, ConsumerConnection } from '../../src/cli/loadgen.ts';

const VERSION = 1;
const OP_PUSH = 0x10, OP_PUSH_MANY = 0x11, OP_POP = 0x12, OP_POP_MANY = 0x13;
const OP_OK = 0x80, OP_EMPTY = 0x83, OP_MESSAGES = 0x84, OP_ERROR = 0x8f;
const TIMEOUT_INFINITE = 0xffffffff;
const HEADER = 12;

/** Collects a socket's bytes and yields whole frames (start offset, total length) in order. */
class FrameReader {
  #pending: Buffer | undefined;

  *frames(chunk: Buffer): Generator<[Buffer, number, number]> {
    let buf = chunk;
    if (this.#pending !== undefined) {
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = undefined;
    }
    let at = 0;
    while (buf.length - at >= 4) {
      const total = 4 + buf.readUInt32LE(at);
      if (buf.length - at < total) break;
      yield [buf, at, total];
      at += total;
    }
    if (at < buf.length) this.#pending = buf.subarray(at);
  }
}

function header(buf: Buffer, bodyBytes: number, op: number, requestId: number): void {
  buf.writeUInt32LE(8 + bodyBytes, 0);
  buf[4] = VERSION;
  buf[5] = op;
  buf.writeUInt16LE(0, 6);
  buf.writeUInt32LE(requestId, 8);
}

function recordsFrame(op: number, requestId: number, items: Uint8Array[]): Buffer {
  let body = 4;
  for (const it of items) body += 4 + it.length;
  const buf = Buffer.allocUnsafe(HEADER + body);
  header(buf, body, op, requestId);
  writeRecords(buf, HEADER, items);
  return buf;
}

/** Writes `records` (u32 count, then u32 len + bytes per item) at `at`. */
function writeRecords(buf: Buffer, at: number, items: Uint8Array[]): void {
  buf.writeUInt32LE(items.length, at);
  let p = at + 4;
  for (const it of items) {
    buf.writeUInt32LE(it.length, p);
    buf.set(it, p + 4);
    p += 4 + it.length;
  }
}

function emptyFrame(op: number, requestId: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER);
  header(buf, 0, op, requestId);
  return buf;
}

// ── the relay ───────────────────────────────────────────────────────

interface Conn { socket: net.Socket; out: Buffer[] }
interface Waiter { conn: Conn; requestId: number; max: number; timer: NodeJS.Timeout | undefined; topic: Topic }
interface Topic { items: Buffer[]; head: number; waiters: Waiter[] }

function serve(): Promise<number> {
  const topics = new Map<string, Topic>();
  const dirty = new Set<Conn>();
  const flush = (conn: Conn) => {
    if (conn.out.length === 0 || conn.socket.destroyed) { conn.out.length = 0; return; }
    conn.socket.write(conn.out.length === 1 ? conn.out[0]! : Buffer.concat(conn.out));
    conn.out.length = 0;
  };
  const take = (topic: Topic, max: number): Buffer[] => {
    const n = Math.min(max, topic.items.length - topic.head);
    const out = topic.items.slice(topic.head, topic.head + n);
    topic.head += n;
    if (topic.head === topic.items.length) { topic.items.length = 0; topic.head = 0; }
    else if (topic.head > 4096 && topic.head * 2 > topic.items.length) { topic.items.splice(0, topic.head); topic.head = 0; }
    return out;
  };
  const handOver = (topic: Topic) => {
    while (topic.waiters.length > 0 && topic.head < topic.items.length) {
      const w = topic.waiters.shift()!;
      if (w.timer !== undefined) clearTimeout(w.timer);
      w.conn.out.push(recordsFrame(OP_MESSAGES, w.requestId, take(topic, w.max)));
      dirty.add(w.conn);
    }
  };
  const server = net.createServer({ noDelay: true }, (socket) => {
    const conn: Conn = { socket, out: [] };
    const reader = new FrameReader();
    const parked = new Set<Waiter>();
    socket.on('data', (chunk: Buffer) => {
      for (const [buf, at, total] of reader.frames(chunk)) {
        const op = buf[at + 5]!;
        const requestId = buf.readUInt32LE(at + 8);
        let p = at + HEADER;
        const ql = buf[p]!;
        const tl = buf[p + 1 + ql]!;
        const key = buf.toString('latin1', p + 1, p + 1 + ql) + '\0' + buf.toString('latin1', p + 2 + ql, p + 2 + ql + tl);
        p += 2 + ql + tl;
        let topic = topics.get(key);
        if (topic === undefined) { topic = { items: [], head: 0, waiters: [] }; topics.set(key, topic); }
        if (op === OP_PUSH) {
          topic.items.push(Buffer.from(buf.subarray(p, at + total)));
        } else if (op === OP_PUSH_MANY) {
          const count = buf.readUInt32LE(p);
          p += 4;
          for (let i = 0; i < count; i++) {
            const len = buf.readUInt32LE(p);
            topic.items.push(Buffer.from(buf.subarray(p + 4, p + 4 + len)));
            p += 4 + len;
          }
        } else if (op === OP_POP || op === OP_POP_MANY) {
          const max = op === OP_POP ? 1 : buf.readUInt32LE(p);
          const timeoutMs = buf.readUInt32LE(op === OP_POP ? p : p + 4);
          if (topic.head < topic.items.length) conn.out.push(recordsFrame(OP_MESSAGES, requestId, take(topic, max)));
          else if (timeoutMs === 0) conn.out.push(emptyFrame(OP_EMPTY, requestId));
          else {
            const t = topic;
            const w: Waiter = { conn, requestId, max, timer: undefined, topic: t };
            if (timeoutMs !== TIMEOUT_INFINITE) {
              w.timer = setTimeout(() => {
                t.waiters.splice(t.waiters.indexOf(w), 1);
                parked.delete(w);
                conn.out.push(emptyFrame(OP_EMPTY, requestId));
                flush(conn);
              }, timeoutMs);
            }
            t.waiters.push(w);
            parked.add(w);
          }
          dirty.add(conn);
          continue;
        } else {
          conn.out.push(emptyFrame(OP_ERROR, requestId));
          dirty.add(conn);
          continue;
        }
        conn.out.push(emptyFrame(OP_OK, requestId));
        dirty.add(conn);
        handOver(topic);
      }
      for (const c of dirty) flush(c);
      dirty.clear();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      for (const w of parked) {
        if (w.timer !== undefined) clearTimeout(w.timer);
        const i = w.topic.waiters.indexOf(w);
        if (i >= 0) w.topic.waiters.splice(i, 1);
      }
    });
  });
  return new Promise((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as net.AddressInfo).port)));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv.includes('--serve')) {
  console.log(`listening on ${await serve()}`);
}

// ── the client ─────────────────────────────────────────────────────────────────────────

class RawClient {
  readonly #socket: net.Socket;
  readonly #reader = new FrameReader();
  readonly #pending = new Map<number, { resolve(items: Uint8Array[]): void; reject(err: Error): void }>();
  #nextId = 1;
  #corked = false;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const [buf, at, total] of this.#reader.frames(chunk)) {
        const op = buf[at + 5]!;
        const id = buf.readUInt32LE(at + 8);
        const pending = this.#pending.get(id);
        if (pending === undefined) continue;
        this.#pending.delete(id);
        if (op === OP_OK || op === OP_EMPTY) pending.resolve([]);
        else if (op === OP_MESSAGES) {
          const count = buf.readUInt32LE(at + HEADER);
          const items = new Array<Uint8Array>(count);
          let p = at + HEADER + 4;
          for (let i = 0; i < count; i++) {
            const len = buf.readUInt32LE(p);
            items[i] = buf.subarray(p + 4, p + 4 + len).slice();
            p += 4 + len;
          }
          pending.resolve(items);
        } else pending.reject(new Error(`raw server answered op 0x${op.toString(16)} (${total} bytes)`));
      }
    });
    socket.on('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error('connection closed'));
      this.#pending.clear();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => { socket.off('error', reject); resolve(new RawClient(socket)); });
    });
  }

  /** Sends a frame built by `build(requestId)`; writes of one microtask go out as one. */
  request(build: (id: number) => Buffer): Promise<Uint8Array[]> {
    const id = this.#nextId++;
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      queueMicrotask(() => { this.#corked = false; this.#socket.uncork(); });
    }
    this.#socket.write(build(id));
    return new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#socket.destroyed) return resolve();
      this.#socket.once('close', () => resolve());
      this.#socket.end();
    });
  }
}

function names(queue: Buffer, topic: Buffer, extra: number, op: number, id: number): [Buffer, number] {
  const buf = Buffer.allocUnsafe(HEADER + 2 + queue.length + topic.length + extra);
  header(buf, buf.length - HEADER, op, id);
  let p = HEADER;
  buf[p++] = queue.length;
  queue.copy(buf, p);
  p += queue.length;
  buf[p++] = topic.length;
  topic.copy(buf, p);
  return [buf, p + topic.length];
}

export function rawDriverSpec(port: number): DriverSpec {
  return { module: import.meta.url, exportName: 'rawDriver', args: [port] };
}

export function rawDriver(port: number): Driver {
  const queue = Buffer.from('bench');
  return {
    name: 'raw TCP',
    async producer(): Promise<ProducerConnection> {
      const c = await RawClient.connect(port);
      return {
        async send(topic, items) {
          const t = Buffer.from(topic, 'latin1');
          if (items.length === 1) {
            const data = items[0]!;
            await c.request((id) => {
              const [buf, p] = names(queue, t, data.length, OP_PUSH, id);
              buf.set(data, p);
              return buf;
            });
            return;
          }
          let bytes = 4;
          for (const it of items) bytes += 4 + it.length;
          await c.request((id) => {
            const [buf, start] = names(queue, t, bytes, OP_PUSH_MANY, id);
            writeRecords(buf, start, items);
            return buf;
          });
        },
        close: () => c.close(),
      };
    },
    async consumer(): Promise<ConsumerConnection> {
      const c = await RawClient.connect(port);
      return {
        receive(topic, max, timeoutMs) {
          const t = Buffer.from(topic, 'latin1');
          return c.request((id) => {
            const [buf, p] = names(queue, t, max === 1 ? 4 : 8, max === 1 ? OP_POP : OP_POP_MANY, id);
            if (max === 1) buf.writeUInt32LE(timeoutMs, p);
            else { buf.writeUInt32LE(max, p); buf.writeUInt32LE(timeoutMs, p + 4); }
            return buf;
          });
        },
        close: () => c.close(),
      };
    },
  };
}
