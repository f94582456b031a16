// One client connection: request ids, the outgoing writer, replies, subscriptions. The
// client's internals - TurboClient (client.ts) is the public face, queues, subscriptions
// and messages use this.
//
// Requests are encoded by the Wasm codec (the same one the broker uses) into one writer,
// with message data written in place from JavaScript (outgoing.ts), and flushed once per
// microtask turn, so a burst of calls - pushes, pops, acks - becomes one write. Replies are
// matched to requests by request id (pending.ts: one promise per request, nothing else); a
// parked pop never holds up other calls. Each received chunk is decoded in one pass: one core
// call per chunk, and the messages of a reply are views of the chunk itself (no copy) when the
// reply lies in it. After the connection closes, every pending and future call rejects with
// ERR_CONNECTION_CLOSED (settles with ERR_LEASE_EXPIRED: their leases ended with it).

import type { Core, CoreExports } from '../core/wasm.ts';
import type { Transport } from './transport.ts';
import type { ResolvedClientOptions } from '../options.ts';
import { TurboError, errorFromWire } from '../errors.ts';
import {
  Op, FLAGS, DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes, DESC_SIZE, DESC_CAPACITY, DESC_OP, DESC_REQUEST_ID,
  DESC_DATA_PTR, DESC_DATA_LEN, DESC_ARG0, DESC_ARG1, DESC_ARG2, RECORD_HEADER_BYTES, LEASED_RECORD_HEADER_BYTES,
} from '../protocol.ts';
import { ClientMessage, LeasedMessage, Settler, type Utf8Ranges } from './message.ts';
import type { ClientSubscription } from './subscription.ts';
import type { Message, QueueSettings, TopicStats } from './queue.ts';
import { PendingTable, type Kind } from './pending.ts';
import { Outgoing, sendCopy } from './outgoing.ts';
import type { Utf8Writer } from './utf8.ts';

export type { Kind } from './pending.ts';

/** How a platform (Node, browser) provides the codec core and connections. */
export interface ClientPlatform {
  loadCore(): Promise<Core>;
  connect(url: string, options: ResolvedClientOptions): Promise<Transport>;
  /**
   * A UTF-8 decoder for ranges of one reply's bytes (Node: Buffer#toString, about twice as
   * fast as TextDecoder for short strings). Default: TextDecoder.
   */
  utf8Ranges?(bytes: Uint8Array): Utf8Ranges;
  /**
   * A UTF-8 writer into `memory` (the core's, unshared) at a byte offset (Node: Buffer#write
   * over the same memory). Default: TextEncoder.encodeInto.
   */
  utf8Writer?(memory: Uint8Array): Utf8Writer;
}

const textDecoder = new TextDecoder();

function textDecoderRanges(bytes: Uint8Array): Utf8Ranges {
  return (start, end) => textDecoder.decode(bytes.subarray(start, end));
}

let platform: ClientPlatform | undefined;
let corePromise: Promise<ClientCore> | undefined;

export function setClientPlatform(p: ClientPlatform): void {
  platform = p;
}

export function clientPlatform(): ClientPlatform {
  if (platform === undefined) throw new Error('turbomq: no client platform registered (import from "turbomq" or "turbomq/browser")');
  return platform;
}

/** The codec core shared by every client of this thread, with a scratch area for names. */
export interface ClientCore {
  core: Core;
  e: CoreExports;
  scratch: number;
  /** The names in the scratch area now (by identity: the queues' cached bytes), to skip rewriting them. */
  scratchQueueBytes?: Uint8Array | undefined;
  scratchTopicBytes?: Uint8Array | undefined;
}

export function clientCore(): Promise<ClientCore> {
  const p = clientPlatform();
  corePromise ??= p.loadCore().then((core) => {
    const e = core.exports;
    if (e.attach() < 0) throw new Error('turbomq: cannot attach the codec core');
    const scratch = e.alloc(SCRATCH_BYTES);
    if (scratch === 0) throw new Error('turbomq: out of memory');
    return { core, e, scratch };
  });
  return corePromise;
}

const SCRATCH_BYTES = 1024;
const SCRATCH_QUEUE = 0;
const SCRATCH_TOPIC = 256;
const SCRATCH_EXTRA = 512;
const WRITER_INITIAL_BYTES = 64 * 1024;
// Descriptor field offsets (src/protocol.ts), short names for the reply handling below.
const D_OP = DESC_OP, D_REQ = DESC_REQUEST_ID, D_DP = DESC_DATA_PTR, D_DL = DESC_DATA_LEN, D_A0 = DESC_ARG0, D_A1 = DESC_ARG1, D_A2 = DESC_ARG2;

/** A u32, little-endian, at `p` in `b`. */
function u32le(b: Uint8Array, p: number): number {
  return (b[p]! | b[p + 1]! << 8 | b[p + 2]! << 16 | b[p + 3]! << 24) >>> 0;
}

export class Connection {
  readonly url: string;
  readonly settler: Settler;
  readonly #transport: Transport;
  readonly #c: ClientCore;
  readonly #decoder: number;
  readonly #writer: number;
  readonly out: Outgoing;
  readonly #pending = new PendingTable();
  readonly #subs = new Map<number, ClientSubscription>();
  readonly #subIdTaken = (id: number): boolean => this.#subs.has(id);
  /** The chunk being decoded and where the decoder holds its first byte: replies inside it are read from it. */
  #chunk: Uint8Array | undefined;
  #chunkAt = 0;
  #chunkUtf8: Utf8Ranges | undefined;
  /** Set while a pushMany reads its items: a request made from in there (a getter) would land inside its frame. */
  recordsOpen = false;
  #flushQueued = false;
  readonly #flushTask = (): void => this.flush();
  #closed = false;
  #closeError: Error | undefined;
  #maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  #maxFrameBytes = defaultMaxFrameBytes(DEFAULT_MAX_MESSAGE_BYTES);
  #serverVersion = '';
  readonly #closedPromise: Promise<void>;
  #resolveClosed!: () => void;
  readonly #utf8For: (bytes: Uint8Array) => Utf8Ranges;

  constructor(url: string, transport: Transport, c: ClientCore) {
    this.url = url;
    this.#transport = transport;
    this.#c = c;
    this.settler = new Settler(this);
    this.#utf8For = platform?.utf8Ranges ?? textDecoderRanges;
    // Replies may carry up to maxFrameBytes; the broker's limits are learnt in HELLO.
    this.#decoder = c.e.decoderNew(512 * 1024 * 1024, 512 * 1024 * 1024);
    this.#writer = c.e.writerNew(WRITER_INITIAL_BYTES);
    if (this.#decoder === 0 || this.#writer === 0) throw new Error('turbomq: out of memory');
    this.out = new Outgoing(c.e, c.core.view, this.#writer, platform?.utf8Writer);
    this.#closedPromise = new Promise((resolve) => { this.#resolveClosed = resolve; });
    transport.onData = (chunk) => this.#onData(chunk);
    transport.onClose = (err) => this.#shutdown(err);
  }

  /** The broker's limits and version, from the handshake. */
  get server(): { version: string; maxMessageBytes: number; maxFrameBytes: number } {
    return { version: this.#serverVersion, maxMessageBytes: this.#maxMessageBytes, maxFrameBytes: this.#maxFrameBytes };
  }

  get closed(): boolean {
    return this.#closed;
  }

  get whenClosed(): Promise<void> {
    return this.#closedPromise;
  }

  /** Why the connection ended (a fatal ERROR from the broker, a socket error), if it has. */
  get closeError(): Error | undefined {
    return this.#closeError;
  }

  /** Appends a frame built outside the codec (the handshake's AUTH, src/core/raw-frames.ts); 0 when out of memory. */
  writeFrame(bytes: Uint8Array): number {
    const at = this.#c.e.writerReserve(this.#writer, bytes.length);
    if (at === 0) return 0;
    this.#c.core.view.write(at, bytes);
    return 1;
  }

  /** Throws ERR_CONNECTION_CLOSED if the connection is gone. */
  checkOpen(): void {
    if (this.#closed) throw this.#closedError();
  }

  get maxMessageBytes(): number {
    return this.#maxMessageBytes;
  }

  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** Copies queue and topic names into the scratch area (unless they are there already). */
  writeNames(queue: Uint8Array, topic: Uint8Array): void {
    const c = this.#c;
    if (c.scratchQueueBytes !== queue) {
      c.core.view.write(c.scratch + SCRATCH_QUEUE, queue);
      c.scratchQueueBytes = queue;
    }
    if (c.scratchTopicBytes !== topic) {
      c.core.view.write(c.scratch + SCRATCH_TOPIC, topic);
      c.scratchTopicBytes = topic;
    }
  }

  get e(): CoreExports {
    return this.#c.e;
  }

  get writer(): number {
    return this.#writer;
  }

  get scratchQueue(): number {
    return this.#c.scratch + SCRATCH_QUEUE;
  }

  get scratchTopic(): number {
    return this.#c.scratch + SCRATCH_TOPIC;
  }

  /** 512 bytes of scratch for a request's extra bytes (a dedupId). */
  get scratchExtra(): number {
    return this.#c.scratch + SCRATCH_EXTRA;
  }

  get view() {
    return this.#c.core.view;
  }

  /**
   * Encodes a request with `encode(requestId)` and returns the promise of its reply (for the
   * less frequent requests; the hot paths encode inline and call `expect`).
   * `flush` false: the caller is the flush itself (the settler), do not schedule another.
   */
  request<T>(kind: Kind, queue: string, topic: string, encode: (id: number) => unknown, cleanup?: () => void, flush = true): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const id = this.nextRequestId();
    const ok = encode(id);
    if (ok === 0) return Promise.reject(new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request'));
    if (flush) this.scheduleFlush();
    return this.#pending.add<T>(id, kind, queue, topic, cleanup);
  }

  /**
   * The promise of the reply to request `id` (from nextRequestId, encoded since), and the
   * flush that sends it. `queue` and `topic` name the messages of a pop's reply.
   */
  expect<T>(id: number, kind: Kind, queue: string, topic: string, cleanup?: () => void): Promise<T> {
    this.scheduleFlush();
    return this.#pending.add<T>(id, kind, queue, topic, cleanup);
  }

  /** Rejection for a request the client could not encode (its writer could not grow). */
  noMemory(): Promise<never> {
    return Promise.reject(new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request'));
  }

  /** Rejection for a call on a closed connection. */
  closedRejection(): Promise<never> {
    return Promise.reject(this.#closedError());
  }

  nextRequestId(): number {
    if (this.recordsOpen) throw new TurboError('ERR_INVALID_ARGUMENT', 'a request was made while pushMany was reading its items (from a getter?)');
    // Skips ids still in use (a parked pop can outlive 4 billion requests in theory).
    return this.#pending.nextId(this.#subIdTaken);
  }

  /** Sends a request that gets no reply (CREDIT, CANCEL). */
  send(encode: (id: number) => unknown): void {
    if (this.#closed) return;
    encode(this.nextRequestId());
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(this.#flushTask);
  }

  /** Writes everything encoded so far (and the tick's settles, as one frame) in one send. */
  flush(): void {
    this.#flushQueued = false;
    if (this.#closed) return;
    this.settler.flush();
    const e = this.#c.e;
    const len = e.writerLength(this.#writer);
    if (len === 0) return;
    const start = e.writerData(this.#writer);
    const bytes = sendCopy(this.#c.core.view.span(start + len), start, start + len);
    e.writerReset(this.#writer);
    this.#transport.send(bytes);
  }

  registerSubscription(sub: ClientSubscription): void {
    this.#subs.set(sub.id, sub);
  }

  unregisterSubscription(id: number): void {
    this.#subs.delete(id);
  }

  /** Open subscriptions (client.close() closes them first, so their messages go back). */
  subscriptions(): ClientSubscription[] {
    return [...this.#subs.values()];
  }

  /** Closes the connection after writing what is queued; pending calls reject with ERR_CONNECTION_CLOSED. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.flush();
      this.#shutdown(undefined);
      this.#transport.close();
    }
    await this.#closedPromise;
  }

  #closedError(): TurboError {
    return new TurboError('ERR_CONNECTION_CLOSED', this.#closeError ? `connection closed: ${this.#closeError.message}` : 'connection closed', { cause: this.#closeError });
  }

  // ── replies ──────────────────────────────────────────────────────────────────────

  #onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    const e = this.#c.e;
    const view = this.#c.core.view;
    const at = e.decoderReserve(this.#decoder, chunk.length);
    if (at === 0) return this.#fail(new TurboError('ERR_NO_MEMORY', 'client out of memory decoding replies'));
    view.write(at, chunk);
    e.decoderCommit(this.#decoder, chunk.length);
    this.#chunk = chunk;
    this.#chunkAt = at;
    this.#chunkUtf8 = undefined;
    try {
      for (;;) {
        const n = e.decoderNext(this.#decoder);
        if (n < 0) return this.#fail(new TurboError('ERR_PROTOCOL', 'malformed reply from the broker'));
        const base = e.decoderDescriptors(this.#decoder);
        for (let i = 0; i < n && !this.#closed; i++) this.#reply(base + i * DESC_SIZE);
        if (n < DESC_CAPACITY) break;
      }
    } finally {
      this.#chunk = this.#chunkUtf8 = undefined;
    }
  }

  #text(d: number): string {
    const view = this.#c.core.view;
    return textDecoder.decode(view.bytes(view.u32(d + D_DP), view.u32(d + D_DL)));
  }

  #reply(d: number): void {
    const view = this.#c.core.view;
    const opFlags = view.u32(d + D_OP);
    const op = opFlags & 0xff;
    const id = view.u32(d + D_REQ);
    if (op === Op.DELIVER) {
      const sub = this.#subs.get(id);
      if (sub !== undefined) sub.deliver(this.#records(d, sub.queue, sub.topic, opFlags >>> 16));
      return;
    }
    if (op === Op.ERROR && id === 0) return this.#fail(errorFromWire(view.u32(d + D_A0), this.#text(d)));
    const pending = this.#pending;
    const slot = pending.find(id);
    if (slot < 0) {
      const sub = op === Op.ERROR ? this.#subs.get(id) : undefined;
      if (sub !== undefined) sub.fail(errorFromWire(view.u32(d + D_A0), this.#text(d)));
      return;
    }
    switch (op) {
      case Op.OK:
      case Op.PONG:
        return pending.resolve(slot, undefined);
      case Op.EMPTY:
        return pending.resolve(slot, pending.kind(slot) === 'popMany' ? [] : null);
      case Op.MESSAGES: {
        const messages = this.#records(d, pending.queue(slot), pending.topic(slot), opFlags >>> 16);
        return pending.resolve(slot, pending.kind(slot) === 'pop' ? messages[0] ?? null : messages);
      }
      case Op.LENGTH_OK:
        return pending.resolve(slot, view.u32(d + D_A0));
      case Op.STATS_OK:
        return pending.resolve(slot, { ready: view.u32(d + D_A0), delayed: view.u32(d + D_A1), inFlight: view.u32(d + D_A2) } satisfies TopicStats);
      case Op.SETTLED:
        return pending.resolve(slot, view.copy(view.u32(d + D_DP), view.u32(d + D_DL)));
      case Op.SETTINGS:
        return pending.resolve(slot, this.#settings(view.u32(d + D_DP)));
      case Op.STATS_JSON:
        try {
          return pending.resolve(slot, JSON.parse(this.#text(d)));
        } catch {
          return pending.reject(slot, new TurboError('ERR_PROTOCOL', 'malformed statistics from the broker'));
        }
      case Op.HELLO_OK:
        this.#maxMessageBytes = view.u32(d + D_A0);
        this.#maxFrameBytes = view.u32(d + D_A1);
        this.#serverVersion = this.#text(d);
        return pending.resolve(slot, undefined);
      case Op.ERROR:
        return pending.reject(slot, errorFromWire(view.u32(d + D_A0), this.#text(d)));
      default:
        return pending.reject(slot, new TurboError('ERR_PROTOCOL', `unexpected reply opcode 0x${op.toString(16)}`));
    }
  }

  #settings(p: number): QueueSettings {
    const view = this.#c.core.view;
    const dlqLen = view.u8(p + 34);
    return {
      leaseMs: view.f64(p),
      maxDeliveries: view.f64(p + 8),
      deadLetterTopic: dlqLen === 0 ? null : textDecoder.decode(view.bytes(p + 35, dlqLen)),
      maxLength: view.f64(p + 16),
      overflow: view.u8(p + 32) === 1 ? 'drop-oldest' : 'reject',
      dedupWindowMs: view.f64(p + 24),
      durable: view.u8(p + 33) === 1,
    };
  }

  /**
   * The records of a MESSAGES/DELIVER frame as Messages, in one pass. The messages are views
   * of the chunk being decoded when the records lie in it (the usual case), else of one copy
   * of the records area; either way each message has its own, non-overlapping range (like
   * Buffers from Node's pool), and its data view and text are made only when asked for. The
   * records were validated by the decoder.
   */
  #records(d: number, queue: string, topic: string, flags: number): Message[] {
    const view = this.#c.core.view;
    const count = view.u32(d + D_A0);
    const dp = view.u32(d + D_DP), dl = view.u32(d + D_DL);
    let bytes: Uint8Array, p: number, utf8: Utf8Ranges;
    if (this.#chunk !== undefined && dp >= this.#chunkAt) {
      bytes = this.#chunk;
      p = dp - this.#chunkAt;
      utf8 = this.#chunkUtf8 ??= this.#utf8For(bytes);
    } else {
      bytes = view.copy(dp, dl);
      p = 0;
      utf8 = this.#utf8For(bytes);
    }
    const messages = new Array<Message>(count);
    if ((flags & FLAGS.LEASED) === 0) {
      for (let i = 0; i < count; i++) {
        const start = p + RECORD_HEADER_BYTES, end = start + u32le(bytes, p);
        messages[i] = new ClientMessage(queue, topic, bytes, start, end, utf8, u32le(bytes, p + 4), u32le(bytes, p + 8), u32le(bytes, p + 12));
        p = end;
      }
    } else {
      for (let i = 0; i < count; i++) {
        const start = p + LEASED_RECORD_HEADER_BYTES, end = start + u32le(bytes, p);
        messages[i] = new LeasedMessage(
          queue, topic, bytes, start, end, utf8, u32le(bytes, p + 4), u32le(bytes, p + 8), u32le(bytes, p + 12),
          this, u32le(bytes, p + 16), u32le(bytes, p + 20),
        );
        p = end;
      }
    }
    return messages;
  }

  #fail(err: Error): void {
    this.#shutdown(err);
    this.#transport.close();
  }

  #shutdown(err: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = err;
    const error = this.#closedError();
    this.settler.closed();
    this.#pending.rejectAll(error);
    for (const sub of [...this.#subs.values()]) sub.connectionClosed(error);
    this.#subs.clear();
    this.#c.e.decoderFree(this.#decoder);
    this.#c.e.writerFree(this.#writer);
    this.#resolveClosed();
  }
}
