// TurboClient: one client logic over any Transport (TCP, WebSocket, in-process pipe).
//
// Requests are encoded by the Wasm codec (the same one the broker uses) into one writer
// and flushed once per microtask turn, so a burst of calls becomes one write. Replies are
// matched to requests by request id; a parked pop never holds up other calls. After the
// connection closes, every pending and future call rejects with ERR_CONNECTION_CLOSED.

import type { Core, CoreExports } from '../core/wasm.ts';
import type { Transport } from './transport.ts';
import type { Message, PopTimeout, Queue, SubscribeOptions, Subscription } from './queue.ts';
import { TurboError, errorFromWire } from '../errors.ts';
import { DEFAULTS, resolveClientOptions, type ClientOptions, type ResolvedClientOptions } from '../options.ts';
import { DEFAULT_URL } from '../url.ts';
import { encodeAuthFrame } from '../core/raw-frames.ts';
import {
  Op, PROTOCOL_VERSION, TIMEOUT_INFINITE, MAX_NAME_BYTES, DESC_SIZE, DESC_CAPACITY,
  DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes, DESC_OP, DESC_REQUEST_ID, DESC_DATA_PTR, DESC_DATA_LEN,
  DESC_ARG0, DESC_ARG1,
} from '../protocol.ts';

export type { ClientOptions } from '../options.ts';

/** How a platform (Node, browser) provides the codec core and connections. */
export interface ClientPlatform {
  loadCore(): Promise<Core>;
  connect(url: string, options: ResolvedClientOptions): Promise<Transport>;
  /**
   * A UTF-8 decoder for ranges of one reply's bytes (Node: Buffer#toString, about twice as
   * fast as TextDecoder for short strings). Default: TextDecoder.
   */
  utf8Ranges?(bytes: Uint8Array): (start: number, end: number) => string;
}

function textDecoderRanges(bytes: Uint8Array): (start: number, end: number) => string {
  return (start, end) => textDecoder.decode(bytes.subarray(start, end));
}

let platform: ClientPlatform | undefined;
let corePromise: Promise<ClientCore> | undefined;

export function setClientPlatform(p: ClientPlatform): void {
  platform = p;
}

/** The codec core shared by every client of this thread, with a scratch area for names. */
interface ClientCore {
  core: Core;
  e: CoreExports;
  scratch: number;
}

function clientCore(): Promise<ClientCore> {
  if (platform === undefined) throw new Error('turbomq: no client platform registered (import from "turbomq" or "turbomq/browser")');
  corePromise ??= platform.loadCore().then((core) => {
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
const WRITER_INITIAL_BYTES = 64 * 1024;
// Descriptor field offsets (src/protocol.ts), short names for the reply handling below.
const D_OP = DESC_OP, D_REQ = DESC_REQUEST_ID, D_DP = DESC_DATA_PTR, D_DL = DESC_DATA_LEN, D_A0 = DESC_ARG0, D_A1 = DESC_ARG1;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

type Kind = 'ok' | 'pop' | 'popMany' | 'length' | 'hello' | 'subscribe';

interface Pending {
  kind: Kind;
  resolve(value: unknown): void;
  reject(error: Error): void;
  queue: string;
  topic: string;
  cleanup?: () => void;
}

function invalid(message: string): TurboError {
  return new TurboError('ERR_INVALID_ARGUMENT', message);
}

/** UTF-8 bytes of a queue or topic name, checked against the 1..255 byte limit. */
function nameBytes(kind: string, name: unknown): Uint8Array {
  if (typeof name !== 'string') throw invalid(`${kind} name must be a string`);
  const bytes = textEncoder.encode(name);
  if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) throw invalid(`${kind} name must be 1 to ${MAX_NAME_BYTES} bytes of UTF-8, got ${bytes.length}`);
  return bytes;
}

function dataBytes(data: unknown): Uint8Array {
  if (typeof data === 'string') return textEncoder.encode(data);
  if (data instanceof Uint8Array) return data;
  throw invalid('data must be a string or a Uint8Array');
}

/** Milliseconds for the wire: 0xFFFFFFFF waits forever. */
function wireTimeout(timeoutMs: number | undefined): number {
  if (timeoutMs === undefined || timeoutMs === Infinity) return TIMEOUT_INFINITE;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0) throw invalid(`timeout must be a number >= 0 (or Infinity), got ${String(timeoutMs)}`);
  return Math.min(Math.ceil(timeoutMs), TIMEOUT_INFINITE - 1);
}

function parseTimeout(timeout: PopTimeout | undefined): { wire: number; signal: AbortSignal | undefined } {
  if (timeout === undefined || typeof timeout === 'number') return { wire: wireTimeout(timeout), signal: undefined };
  if (typeof timeout !== 'object' || timeout === null) throw invalid('timeout must be milliseconds or { timeoutMs, signal }');
  const signal = timeout.signal;
  if (signal !== undefined && !(typeof signal === 'object' && 'aborted' in signal)) throw invalid('signal must be an AbortSignal');
  return { wire: wireTimeout(timeout.timeoutMs), signal };
}

export class TurboClient {
  readonly url: string;
  readonly #transport: Transport;
  readonly #c: ClientCore;
  readonly #decoder: number;
  readonly #writer: number;
  readonly #pending = new Map<number, Pending>();
  readonly #subs = new Map<number, ClientSubscription>();
  readonly #queues = new Map<string, ClientQueue>();
  #nextId = 1;
  #flushQueued = false;
  #closed = false;
  #closeError: Error | undefined;
  #maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  #maxFrameBytes = defaultMaxFrameBytes(DEFAULT_MAX_MESSAGE_BYTES);
  #serverVersion = '';
  readonly #closedPromise: Promise<void>;
  #resolveClosed!: () => void;

  private constructor(url: string, transport: Transport, c: ClientCore) {
    this.url = url;
    this.#transport = transport;
    this.#c = c;
    // Replies may carry up to maxFrameBytes; the broker's limits are learnt in HELLO.
    this.#decoder = c.e.decoderNew(512 * 1024 * 1024, 512 * 1024 * 1024);
    this.#writer = c.e.writerNew(WRITER_INITIAL_BYTES);
    if (this.#decoder === 0 || this.#writer === 0) throw new Error('turbomq: out of memory');
    this.#closedPromise = new Promise((resolve) => { this.#resolveClosed = resolve; });
    transport.onData = (chunk) => this.#onData(chunk);
    transport.onClose = (err) => this.#onClose(err);
  }

  /**
   * Connects to a broker: tcp://, tls://, unix:// (Node) or ws://, wss:// urls. With
   * `{ token }` it authenticates; a broker with auth refuses a missing or wrong token with
   * ERR_UNAUTHORIZED.
   */
  static async connect(url: string = DEFAULT_URL, options: ClientOptions = {}): Promise<TurboClient> {
    if (platform === undefined) throw new Error('turbomq: no client platform registered');
    const opts = resolveClientOptions(options);
    const c = await clientCore();
    const transport = await platform.connect(url, opts);
    return TurboClient.#handshake(url, transport, c, opts.connectTimeoutMs, opts.token, opts.user);
  }

  /** A client over an already open transport (the embedded engine uses this). */
  static async connectTransport(transport: Transport, url: string, timeoutMs: number = DEFAULTS.connectTimeoutMs, token?: string, user?: string): Promise<TurboClient> {
    return TurboClient.#handshake(url, transport, await clientCore(), timeoutMs, token, user);
  }

  static async #handshake(url: string, transport: Transport, c: ClientCore, timeoutMs: number, token: string | undefined, user: string | undefined): Promise<TurboClient> {
    const client = new TurboClient(url, transport, c);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const hello = client.#request('hello', '', '', (id) => c.e.encodeHello(client.#writer, id, PROTOCOL_VERSION, PROTOCOL_VERSION));
      // AUTH always follows, with an empty token when there is none: a broker with auth
      // refuses that with ERR_UNAUTHORIZED (so connect does), one without answers OK.
      const auth = client.#request('ok', '', '', (id) => client.#writeFrame(encodeAuthFrame(id, user, token ?? '')));
      await Promise.race([
        Promise.all([hello, auth]),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new TurboError('ERR_CONNECTION_CLOSED', `no answer from ${url} within ${timeoutMs} ms`)), timeoutMs); }),
      ]);
    } catch (err) {
      // A fatal ERROR from the broker (ERR_LIMIT when it is full) says more than "closed".
      const fatal = client.#closeError;
      client.#shutdown(err as Error);
      throw fatal instanceof TurboError ? fatal : err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** The broker's limits and version, from the handshake. */
  get server(): { version: string; maxMessageBytes: number; maxFrameBytes: number } {
    return { version: this.#serverVersion, maxMessageBytes: this.#maxMessageBytes, maxFrameBytes: this.#maxFrameBytes };
  }

  get closed(): boolean {
    return this.#closed;
  }

  getQueue(name: string): Queue {
    let queue = this.#queues.get(name);
    if (queue === undefined) {
      queue = new ClientQueue(this, name, nameBytes('queue', name));
      this.#queues.set(name, queue);
    }
    return queue;
  }

  /** Round trip to the broker. */
  async ping(): Promise<void> {
    await this.#request('ok', '', '', (id) => this.#c.e.encodePing(this.#writer, id));
  }

  /** Closes the connection; pending and later calls reject with ERR_CONNECTION_CLOSED. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#flush();
      this.#shutdown(undefined);
      this.#transport.close();
    }
    await this.#closedPromise;
  }

  // ── used by ClientQueue ──────────────────────────────────────────────────────────

  /** Throws ERR_CONNECTION_CLOSED if the connection is gone. */
  checkOpen(): void {
    if (this.#closed) throw new TurboError('ERR_CONNECTION_CLOSED', this.#closeError ? `connection closed: ${this.#closeError.message}` : 'connection closed', { cause: this.#closeError });
  }

  get maxMessageBytes(): number {
    return this.#maxMessageBytes;
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

  get scratch(): number {
    return this.#c.scratch;
  }

  get view() {
    return this.#c.core.view;
  }

  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** Encodes a request with `encode(requestId)` and returns the promise of its reply. */
  request<T>(kind: Kind, queue: string, topic: string, encode: (id: number) => unknown, cleanup?: () => void): Promise<T> {
    return this.#request(kind, queue, topic, encode, cleanup) as Promise<T>;
  }

  #request(kind: Kind, queue: string, topic: string, encode: (id: number) => unknown, cleanup?: () => void): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const id = this.nextRequestId();
    const ok = encode(id);
    if (ok === 0) return Promise.reject(new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request'));
    this.scheduleFlush();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { kind, resolve, reject, queue, topic, cleanup });
    });
  }

  /** Appends a frame built in JS to the writer; 0 when out of memory. */
  #writeFrame(bytes: Uint8Array): number {
    const at = this.#c.e.writerReserve(this.#writer, bytes.length);
    if (at === 0) return 0;
    this.#c.core.view.write(at, bytes);
    return 1;
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
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#closed) return;
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

  #reply(d: number): void {
    const view = this.#c.core.view;
    const op = view.u32(d + D_OP) & 0xff;
    const id = view.u32(d + D_REQ);
    if (op === Op.DELIVER) {
      const sub = this.#subs.get(id);
      if (sub !== undefined) sub.deliver(this.#records(d, sub.queue, sub.topic));
      return;
    }
    if (op === Op.ERROR && id === 0) {
      const text = textDecoder.decode(view.bytes(view.u32(d + D_DP), view.u32(d + D_DL)));
      return this.#fail(errorFromWire(view.u32(d + D_A0), text));
    }
    const pending = this.#pending.get(id);
    if (pending === undefined) {
      const sub = op === Op.ERROR ? this.#subs.get(id) : undefined;
      if (sub !== undefined) sub.fail(errorFromWire(view.u32(d + D_A0), textDecoder.decode(view.bytes(view.u32(d + D_DP), view.u32(d + D_DL)))));
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
        const messages = this.#records(d, pending.queue, pending.topic);
        return pending.resolve(pending.kind === 'pop' ? messages[0] ?? null : messages);
      }
      case Op.LENGTH_OK:
        return pending.resolve(view.u32(d + D_A0));
      case Op.HELLO_OK:
        this.#maxMessageBytes = view.u32(d + D_A0);
        this.#maxFrameBytes = view.u32(d + D_A1);
        this.#serverVersion = textDecoder.decode(view.bytes(view.u32(d + D_DP), view.u32(d + D_DL)));
        return pending.resolve(undefined);
      case Op.ERROR: {
        const text = textDecoder.decode(view.bytes(view.u32(d + D_DP), view.u32(d + D_DL)));
        return pending.reject(errorFromWire(view.u32(d + D_A0), text));
      }
      default:
        return pending.reject(new TurboError('ERR_PROTOCOL', `unexpected reply opcode 0x${op.toString(16)}`));
    }
  }

  #records(d: number, queue: string, topic: string): Message[] {
    const view = this.#c.core.view;
    const count = view.u32(d + D_A0);
    // One copy of the whole records area per reply; each message's data is its own,
    // non-overlapping view of that copy (like Buffers from Node's pool).
    const records = view.copy(view.u32(d + D_DP), view.u32(d + D_DL));
    const lengths = new DataView(records.buffer, records.byteOffset, records.byteLength);
    const utf8 = (platform!.utf8Ranges ?? textDecoderRanges)(records);
    const messages = new Array<Message>(count);
    let p = 0;
    for (let i = 0; i < count; i++) {
      const len = lengths.getUint32(p, true);
      messages[i] = { queue, topic, data: records.subarray(p + 4, p + 4 + len), content: utf8(p + 4, p + 4 + len) };
      p += 4 + len;
    }
    return messages;
  }

  #fail(err: Error): void {
    this.#shutdown(err);
    this.#transport.close();
  }

  #onClose(err?: Error): void {
    this.#shutdown(err);
  }

  #shutdown(err: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = err;
    const error = this.#closedError();
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

/** Topic names encoded once per queue (bounded: a queue may see endless distinct topics). */
const TOPIC_CACHE_SIZE = 1024;

class ClientQueue implements Queue {
  readonly name: string;
  readonly #client: TurboClient;
  readonly #nameBytes: Uint8Array;
  readonly #topics = new Map<string, Uint8Array>();

  /** The topic's UTF-8 bytes, checked against the name limits (ERR_INVALID_ARGUMENT). */
  #topic(topic: string): Uint8Array {
    let bytes = this.#topics.get(topic);
    if (bytes === undefined) {
      bytes = nameBytes('topic', topic);
      if (this.#topics.size >= TOPIC_CACHE_SIZE) this.#topics.clear();
      this.#topics.set(topic, bytes);
    }
    return bytes;
  }

  constructor(client: TurboClient, name: string, bytes: Uint8Array) {
    this.#client = client;
    this.name = name;
    this.#nameBytes = bytes;
  }

  async push(topic: string, data: string | Uint8Array): Promise<void> {
    const c = this.#client;
    c.checkOpen();
    const t = this.#topic(topic);
    const bytes = dataBytes(data);
    if (bytes.length > c.maxMessageBytes) throw new TurboError('ERR_MESSAGE_TOO_LARGE', `message of ${bytes.length} bytes is over the broker's maxMessageBytes (${c.maxMessageBytes})`);
    c.writeNames(this.#nameBytes, t);
    await c.request<void>('ok', this.name, topic, (id) => {
      const at = c.e.encodePush(c.writer, id, c.scratch + SCRATCH_QUEUE, this.#nameBytes.length, c.scratch + SCRATCH_TOPIC, t.length, bytes.length);
      if (at !== 0) c.view.write(at, bytes);
      return at;
    });
  }

  async pushMany(topic: string, items: Iterable<string | Uint8Array>): Promise<void> {
    const c = this.#client;
    c.checkOpen();
    const t = this.#topic(topic);
    if (items === null || typeof items !== 'object' && typeof items !== 'string' || typeof (items as Iterable<unknown>)[Symbol.iterator] !== 'function') throw invalid('items must be an iterable of strings or Uint8Arrays');
    const all: Uint8Array[] = [];
    for (const item of items) {
      const bytes = dataBytes(item);
      if (bytes.length > c.maxMessageBytes) throw new TurboError('ERR_MESSAGE_TOO_LARGE', `message of ${bytes.length} bytes is over the broker's maxMessageBytes (${c.maxMessageBytes})`);
      all.push(bytes);
    }
    if (all.length === 0) return;
    // Frames of at most maxFrameBytes, sent back to back: still one round trip, in order.
    const budget = c.maxFrameBytes - 12 - 2 * 256 - 4;
    const frames: Promise<void>[] = [];
    let i = 0;
    while (i < all.length) {
      let bytesInFrame = 0;
      let end = i;
      while (end < all.length && (end === i || bytesInFrame + 4 + all[end]!.length <= budget)) {
        bytesInFrame += 4 + all[end]!.length;
        end++;
      }
      const from = i, to = end;
      c.writeNames(this.#nameBytes, t);
      frames.push(c.request<void>('ok', this.name, topic, (id) => {
        const e = c.e;
        const mark = e.encodePushManyBegin(c.writer, id, c.scratch + SCRATCH_QUEUE, this.#nameBytes.length, c.scratch + SCRATCH_TOPIC, t.length);
        if (mark < 0) return 0;
        for (let k = from; k < to; k++) {
          const bytes = all[k]!;
          const at = e.encodeRecord(c.writer, bytes.length);
          if (at === 0) { e.writerTruncate(c.writer, mark); return 0; }
          c.view.write(at, bytes);
        }
        e.encodeRecordsEnd(c.writer, mark, to - from);
        return 1;
      }));
      i = end;
    }
    await Promise.all(frames);
  }

  pop(topic: string, timeout?: PopTimeout): Promise<Message | null> {
    return this.#pop<Message | null>('pop', topic, 1, timeout);
  }

  popMany(topic: string, max: number, timeout?: PopTimeout): Promise<Message[]> {
    if (!Number.isInteger(max) || max < 1 || max > 0xffffffff) return Promise.reject(invalid(`max must be an integer >= 1, got ${String(max)}`));
    return this.#pop<Message[]>('popMany', topic, max, timeout);
  }

  async #pop<T>(kind: 'pop' | 'popMany', topic: string, max: number, timeout: PopTimeout | undefined): Promise<T> {
    const c = this.#client;
    c.checkOpen();
    const t = this.#topic(topic);
    const { wire, signal } = parseTimeout(timeout);
    if (signal?.aborted) throw new TurboError('ERR_ABORTED', 'pop aborted', { cause: signal.reason });
    c.writeNames(this.#nameBytes, t);
    let requestId = 0;
    let onAbort: (() => void) | undefined;
    const cleanup = signal === undefined ? undefined : () => signal.removeEventListener('abort', onAbort!);
    const promise = c.request<T>(kind, this.name, topic, (id) => {
      requestId = id;
      const q = c.scratch + SCRATCH_QUEUE, tp = c.scratch + SCRATCH_TOPIC;
      return kind === 'pop'
        ? c.e.encodePop(c.writer, id, q, this.#nameBytes.length, tp, t.length, wire)
        : c.e.encodePopMany(c.writer, id, q, this.#nameBytes.length, tp, t.length, max, wire);
    }, cleanup);
    if (signal !== undefined) {
      // The broker settles the pop: ERR_ABORTED if the waiter was still parked, or the
      // message if one was already on its way (so an abort never loses a message).
      onAbort = () => c.send((id) => c.e.encodeCancel(c.writer, id, requestId));
      signal.addEventListener('abort', onAbort, { once: true });
    }
    return promise;
  }

  async length(topic: string): Promise<number> {
    const c = this.#client;
    c.checkOpen();
    const t = this.#topic(topic);
    c.writeNames(this.#nameBytes, t);
    return c.request<number>('length', this.name, topic, (id) =>
      c.e.encodeLength(c.writer, id, c.scratch + SCRATCH_QUEUE, this.#nameBytes.length, c.scratch + SCRATCH_TOPIC, t.length));
  }

  subscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    const c = this.#client;
    c.checkOpen();
    const t = this.#topic(topic);
    const prefetch = options.prefetch ?? 64;
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65536) throw invalid(`prefetch must be an integer from 1 to 65536, got ${String(prefetch)}`);
    return new ClientSubscription(c, this.name, this.#nameBytes, topic, t, prefetch, options.exclusive === true);
  }
}

/**
 * A subscription: an async iterator over delivered messages. Flow control is credit based:
 * the broker sends at most `prefetch` messages ahead; consumed messages are credited back
 * in batches of prefetch/2. On close, messages received but not consumed are pushed back
 * to the front of the topic (RETURN), so closing never loses a message.
 */
export class ClientSubscription implements Subscription {
  readonly id: number;
  readonly queue: string;
  readonly topic: string;
  readonly #client: TurboClient;
  readonly #queueBytes: Uint8Array;
  readonly #topicBytes: Uint8Array;
  readonly #prefetch: number;
  readonly #buffer: Message[] = [];
  #head = 0;
  #consumed = 0;
  #waiting: { resolve(r: IteratorResult<Message>): void; reject(e: Error): void } | undefined;
  #closed = false;
  #error: Error | undefined;
  #started: Promise<void>;
  #closing: Promise<void> | undefined;

  constructor(client: TurboClient, queue: string, queueBytes: Uint8Array, topic: string, topicBytes: Uint8Array, prefetch: number, exclusive: boolean) {
    this.#client = client;
    this.queue = queue;
    this.topic = topic;
    this.#queueBytes = queueBytes;
    this.#topicBytes = topicBytes;
    this.#prefetch = prefetch;
    client.writeNames(queueBytes, topicBytes);
    let id = 0;
    this.#started = client.request<void>('subscribe', queue, topic, (rid) => {
      id = rid;
      return client.e.encodeSubscribe(client.writer, rid, client.scratch + SCRATCH_QUEUE, queueBytes.length, client.scratch + SCRATCH_TOPIC, topicBytes.length, prefetch, exclusive ? 1 : 0);
    });
    this.id = id;
    client.registerSubscription(this);
    this.#started.catch((err: Error) => this.fail(err));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves once the broker accepted the subscription (rejects with ERR_EXCLUSIVE etc.). */
  get ready(): Promise<void> {
    return this.#started;
  }

  deliver(messages: Message[]): void {
    if (this.#closed) {
      // Closing: these were in flight before the broker saw UNSUBSCRIBE. Returning them now,
      // ahead of the buffered (older) ones returned after the OK, keeps the topic's order.
      this.#returnMessages(messages).catch(() => { /* the connection is gone: nothing to return to */ });
      return;
    }
    for (const m of messages) {
      if (this.#waiting !== undefined) {
        const w = this.#waiting;
        this.#waiting = undefined;
        this.#consume();
        w.resolve({ value: m, done: false });
      } else {
        this.#buffer.push(m);
      }
    }
  }

  #consume(): void {
    this.#consumed++;
    if (this.#consumed >= Math.max(1, this.#prefetch >> 1)) {
      const credit = this.#consumed;
      this.#consumed = 0;
      const c = this.#client;
      c.send((id) => c.e.encodeCredit(c.writer, id, this.id, credit));
    }
  }

  fail(err: Error): void {
    if (this.#error === undefined) this.#error = err;
    this.#closed = true;
    this.#client.unregisterSubscription(this.id);
    this.#wakeEnd();
  }

  connectionClosed(err: Error): void {
    if (!this.#closed) this.#error = err;
    this.#closed = true;
    this.#wakeEnd();
  }

  #wakeEnd(): void {
    const w = this.#waiting;
    this.#waiting = undefined;
    if (w === undefined) return;
    if (this.#error !== undefined && this.#head >= this.#buffer.length) w.reject(this.#error);
    else w.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<Message>> {
    if (this.#head < this.#buffer.length && !(this.#closing !== undefined)) {
      const m = this.#buffer[this.#head++]!;
      if (this.#head > 1024 && this.#head * 2 > this.#buffer.length) {
        this.#buffer.splice(0, this.#head);
        this.#head = 0;
      }
      this.#consume();
      return Promise.resolve({ value: m, done: false });
    }
    if (this.#closed) {
      if (this.#error !== undefined && this.#closing === undefined) {
        const err = this.#error;
        return Promise.reject(err);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => { this.#waiting = { resolve, reject }; });
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return {
      next: () => this.next(),
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }

  /** Ends the subscription; unconsumed messages go back to the front of the topic. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const c = this.#client;
    const wasClosed = this.#closed;
    this.#closed = true;
    this.#wakeEnd();
    if (wasClosed || c.closed) return;
    try {
      await this.#started;
    } catch {
      c.unregisterSubscription(this.id);
      return; // the broker refused it: there is nothing to end
    }
    try {
      await c.request<void>('ok', this.queue, this.topic, (id) => c.e.encodeUnsubscribe(c.writer, id, this.id));
    } catch (err) {
      if ((err as TurboError).code === 'ERR_CONNECTION_CLOSED') return;
      throw err;
    } finally {
      c.unregisterSubscription(this.id);
    }
    // Everything delivered before the OK is in the buffer now.
    const rest = this.#buffer.slice(this.#head);
    this.#buffer.length = 0;
    this.#head = 0;
    await this.#returnMessages(rest);
  }

  async #returnMessages(messages: Message[]): Promise<void> {
    if (messages.length === 0) return;
    const c = this.#client;
    if (c.closed) return;
    c.writeNames(this.#queueBytes, this.#topicBytes);
    await c.request<void>('ok', this.queue, this.topic, (id) => {
      const e = c.e;
      const mark = e.encodeReturnBegin(c.writer, id, c.scratch + SCRATCH_QUEUE, this.#queueBytes.length, c.scratch + SCRATCH_TOPIC, this.#topicBytes.length);
      if (mark < 0) return 0;
      for (const m of messages) {
        const at = e.encodeRecord(c.writer, m.data.length);
        if (at === 0) { e.writerTruncate(c.writer, mark); return 0; }
        c.view.write(at, m.data);
      }
      e.encodeRecordsEnd(c.writer, mark, messages.length);
      return 1;
    });
  }
}

