// One client connection: request ids, the outgoing writer, replies, subscriptions. The
// client's internals - TurboClient (client.ts) is the public face, queues, subscriptions
// and messages use this.
//
// Requests are encoded by the Wasm codec (the same one the broker uses) into one writer
// and flushed once per microtask turn, so a burst of calls - pushes, pops, acks - becomes
// one write. Replies are matched to requests by request id; a parked pop never holds up
// other calls. After the connection closes, every pending and future call rejects with
// ERR_CONNECTION_CLOSED (settles with ERR_LEASE_EXPIRED: their leases ended with it).

import type { Core, CoreExports } from '../core/wasm.ts';
import type { Transport } from './transport.ts';
import type { ResolvedClientOptions } from '../options.ts';
import { TurboError, errorFromWire } from '../errors.ts';
import {
  Op, FLAGS, DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes, DESC_SIZE, DESC_CAPACITY, DESC_OP, DESC_REQUEST_ID,
  DESC_DATA_PTR, DESC_DATA_LEN, DESC_ARG0, DESC_ARG1, DESC_ARG2, META_DEAD_LETTER, RECORD_HEADER_BYTES, LEASED_RECORD_HEADER_BYTES,
} from '../protocol.ts';
import { ClientMessage, Settler, deadLetterOf, type Utf8Ranges } from './message.ts';
import type { ClientSubscription } from './subscription.ts';
import type { Message, QueueSettings, TopicStats } from './queue.ts';

/** How a platform (Node, browser) provides the codec core and connections. */
export interface ClientPlatform {
  loadCore(): Promise<Core>;
  connect(url: string, options: ResolvedClientOptions): Promise<Transport>;
  /**
   * A UTF-8 decoder for ranges of one reply's bytes (Node: Buffer#toString, about twice as
   * fast as TextDecoder for short strings). Default: TextDecoder.
   */
  utf8Ranges?(bytes: Uint8Array): Utf8Ranges;
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

export type Kind = 'ok' | 'pop' | 'popMany' | 'length' | 'hello' | 'subscribe' | 'settle' | 'settings' | 'stats' | 'statsJson';

interface Pending {
  kind: Kind;
  resolve(value: unknown): void;
  reject(error: Error): void;
  queue: string;
  topic: string;
  cleanup?: () => void;
}

export class Connection {
  readonly url: string;
  readonly settler: Settler;
  readonly #transport: Transport;
  readonly #c: ClientCore;
  readonly #decoder: number;
  readonly #writer: number;
  readonly #pending = new Map<number, Pending>();
  readonly #subs = new Map<number, ClientSubscription>();
  #nextId = 1;
  #flushQueued = false;
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

  /** Copies queue and topic names into the scratch area. */
  writeNames(queue: Uint8Array, topic: Uint8Array): void {
    const view = this.#c.core.view;
    view.write(this.#c.scratch + SCRATCH_QUEUE, queue);
    view.write(this.#c.scratch + SCRATCH_TOPIC, topic);
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
   * Encodes a request with `encode(requestId)` and returns the promise of its reply.
   * `flush` false: the caller is the flush itself (the settler), do not schedule another.
   */
  request<T>(kind: Kind, queue: string, topic: string, encode: (id: number) => unknown, cleanup?: () => void, flush = true): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const id = this.nextRequestId();
    const ok = encode(id);
    if (ok === 0) return Promise.reject(new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request'));
    if (flush) this.scheduleFlush();
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { kind, resolve: resolve as (v: unknown) => void, reject, queue, topic, cleanup });
    });
  }

  nextRequestId(): number {
    let id = this.#nextId;
    // Skip ids still in use (a parked pop can outlive 4 billion requests in theory).
    while (id === 0 || this.#pending.has(id) || this.#subs.has(id)) id = (id + 1) >>> 0;
    this.#nextId = (id + 1) >>> 0;
    return id;
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
    queueMicrotask(() => this.flush());
  }

  /** Writes everything encoded so far (and the tick's settles, as one frame) in one send. */
  flush(): void {
    this.#flushQueued = false;
    if (this.#closed) return;
    this.settler.flush();
    const e = this.#c.e;
    const len = e.writerLength(this.#writer);
    if (len === 0) return;
    const bytes = this.#c.core.view.copy(e.writerData(this.#writer), len);
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
    for (;;) {
      const n = e.decoderNext(this.#decoder);
      if (n < 0) return this.#fail(new TurboError('ERR_PROTOCOL', 'malformed reply from the broker'));
      const base = e.decoderDescriptors(this.#decoder);
      for (let i = 0; i < n && !this.#closed; i++) this.#reply(base + i * DESC_SIZE);
      if (n < DESC_CAPACITY) break;
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
    const pending = this.#pending.get(id);
    if (pending === undefined) {
      const sub = op === Op.ERROR ? this.#subs.get(id) : undefined;
      if (sub !== undefined) sub.fail(errorFromWire(view.u32(d + D_A0), this.#text(d)));
      return;
    }
    this.#pending.delete(id);
    pending.cleanup?.();
    switch (op) {
      case Op.OK:
      case Op.PONG:
        return pending.resolve(undefined);
      case Op.EMPTY:
        return pending.resolve(pending.kind === 'popMany' ? [] : null);
      case Op.MESSAGES: {
        const messages = this.#records(d, pending.queue, pending.topic, opFlags >>> 16);
        return pending.resolve(pending.kind === 'pop' ? messages[0] ?? null : messages);
      }
      case Op.LENGTH_OK:
        return pending.resolve(view.u32(d + D_A0));
      case Op.STATS_OK:
        return pending.resolve({ ready: view.u32(d + D_A0), delayed: view.u32(d + D_A1), inFlight: view.u32(d + D_A2) } satisfies TopicStats);
      case Op.SETTLED:
        return pending.resolve(view.copy(view.u32(d + D_DP), view.u32(d + D_DL)));
      case Op.SETTINGS:
        return pending.resolve(this.#settings(view.u32(d + D_DP)));
      case Op.STATS_JSON:
        try {
          return pending.resolve(JSON.parse(this.#text(d)));
        } catch {
          return pending.reject(new TurboError('ERR_PROTOCOL', 'malformed statistics from the broker'));
        }
      case Op.HELLO_OK:
        this.#maxMessageBytes = view.u32(d + D_A0);
        this.#maxFrameBytes = view.u32(d + D_A1);
        this.#serverVersion = this.#text(d);
        return pending.resolve(undefined);
      case Op.ERROR:
        return pending.reject(errorFromWire(view.u32(d + D_A0), this.#text(d)));
      default:
        return pending.reject(new TurboError('ERR_PROTOCOL', `unexpected reply opcode 0x${op.toString(16)}`));
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
    };
  }

  /** The records of a MESSAGES/DELIVER frame as Messages (one copy of the records area per reply). */
  #records(d: number, queue: string, topic: string, flags: number): Message[] {
    const view = this.#c.core.view;
    const count = view.u32(d + D_A0);
    // Each message's data is its own, non-overlapping view of the one copy (like Buffers
    // from Node's pool); the records were validated by the decoder.
    const records = view.copy(view.u32(d + D_DP), view.u32(d + D_DL));
    const words = new DataView(records.buffer, records.byteOffset, records.byteLength);
    const utf8 = this.#utf8For(records);
    const leased = (flags & FLAGS.LEASED) !== 0;
    const header = leased ? LEASED_RECORD_HEADER_BYTES : RECORD_HEADER_BYTES;
    const conn = leased ? this : undefined;
    const messages = new Array<Message>(count);
    let p = 0;
    for (let i = 0; i < count; i++) {
      const len = words.getUint32(p, true);
      const meta = words.getUint32(p + 4, true);
      const start = p + header;
      const payload = records.subarray(start, start + len);
      let dataStart = 0;
      let deadLetter;
      if ((meta & META_DEAD_LETTER) !== 0) ({ info: deadLetter, dataStart } = deadLetterOf(payload, utf8, start));
      messages[i] = new ClientMessage(
        queue, topic, payload, dataStart, utf8, start, meta, words.getUint32(p + 8, true), words.getUint32(p + 12, true),
        conn, leased ? words.getUint32(p + 16, true) : 0, leased ? words.getUint32(p + 20, true) : 0, deadLetter,
      );
      p = start + len;
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
    for (const pending of this.#pending.values()) {
      pending.cleanup?.();
      pending.reject(error);
    }
    this.#pending.clear();
    for (const sub of [...this.#subs.values()]) sub.connectionClosed(error);
    this.#subs.clear();
    this.#c.e.decoderFree(this.#decoder);
    this.#c.e.writerFree(this.#writer);
    this.#resolveClosed();
  }
}
