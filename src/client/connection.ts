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
//
// Reconnecting (TurboClient.connect(url, { reconnect: true }), driven by reconnect.ts): one
// Connection outlives its transports. Each transport is a *generation*; when one is lost the
// connection is `reconnecting`: what was in flight is settled as above (the broker may or may
// not have executed it), except leased pops, which are held and re-sent - a reply lost with
// the old transport carried a lease that ended with it, so its message is back in its topic.
// New calls wait in `#waiting` (each at most reconnectTimeoutMs) and run, in order, once the
// next transport has finished its handshake; subscriptions subscribe again. Leased messages
// remember their generation, so settling one from an older generation rejects with
// ERR_LEASE_EXPIRED without asking the broker.

import type { Core, CoreExports } from '../core/wasm.ts';
import type { Transport } from './transport.ts';
import type { ResolvedClientOptions } from '../options.ts';
import { TurboError, errorFromWire } from '../errors.ts';
import {
  Op, FLAGS, DEFAULT_MAX_MESSAGE_BYTES, defaultMaxFrameBytes, DESC_SIZE, DESC_CAPACITY, DESC_OP, DESC_REQUEST_ID,
  DESC_DATA_PTR, DESC_DATA_LEN, DESC_ARG0, DESC_ARG1, DESC_ARG2, RECORD_HEADER_BYTES, LEASED_RECORD_HEADER_BYTES,
} from '../protocol.ts';
import { ClientMessage, LeasedMessage, RecordsSource, Settler, type Utf8Ranges } from './message.ts';
import type { ClientSubscription } from './subscription.ts';
import type { Message, QueueSettings, TopicStats } from './queue.ts';
import { PendingTable, type Kind } from './pending.ts';
import { Outgoing, sendCopy } from './outgoing.ts';
import type { Utf8Writer } from './utf8.ts';
import { StatusEvents } from './status.ts';
import { TIMEOUT_INFINITE } from '../protocol.ts';

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

/** Connection states: a call made in any but OPEN (and CLOSED) waits for OPEN. */
const HANDSHAKING = 0, OPEN = 1, RECONNECTING = 2, CLOSED = 3;
type State = typeof HANDSHAKING | typeof OPEN | typeof RECONNECTING | typeof CLOSED;

/** What drives reconnecting (reconnect.ts): told when a transport was lost, and when to stop. */
export interface ReconnectDriver {
  readonly reconnectTimeoutMs: number;
  start(): void;
  stop(): void;
}

/**
 * A leased pop, kept while it waits so that it can be sent again on the next transport with
 * its remaining timeout. `id` is its current request id (a CANCEL uses it).
 */
export interface ResumablePop {
  id: number;
  readonly kind: 'pop' | 'popMany';
  readonly queue: string;
  readonly topic: string;
  readonly queueBytes: Uint8Array;
  readonly topicBytes: Uint8Array;
  readonly max: number;
  readonly leaseMs: number;
  /** performance.now() when its timeout ends; Infinity waits forever. */
  readonly deadline: number;
  held?: { resolve: (value: unknown) => void; reject: (err: Error) => void; cleanup: (() => void) | undefined; timer: ReturnType<typeof setTimeout> } | undefined;
}

/** A call made while the connection was not open: run once it is, or rejected at `timer`. */
interface WaitingCall {
  run: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const noop = (): void => {};

/** A copy (a Buffer's own slice() would be a view). */
const copyOf = (bytes: Uint8Array): Uint8Array => Uint8Array.prototype.slice.call(bytes);

const SCRATCH_BYTES = 1024;
const SCRATCH_QUEUE = 0;
const SCRATCH_TOPIC = 256;
const SCRATCH_EXTRA = 512;
const WRITER_INITIAL_BYTES = 64 * 1024;
/**
 * A tick's requests are sent in one write, except that once this many bytes are waiting, and at
 * least as many as the broker still has to answer of what was sent before, the next request
 * sends them at once. Without it a client with many batches in flight and the broker take
 * turns: a chunk of replies resolves every call, the calls encode the whole window (64
 * PUSH_MANY of 64 messages: 85 KiB, about 70 µs on a slow machine) while the broker waits, then
 * the broker works through it while the client waits. Sent in pieces, the broker starts on the
 * first frames while the client encodes the rest. The backlog condition keeps the pieces from
 * being small when the broker has plenty to do: a piece then buys no overlap and costs a read
 * and a reply write on each side: with 64 batches in flight, 8 KiB pieces sent whatever the
 * backlog kept 0.44-0.47x of the wire floor, this rule 0.63x (docs/architecture.md, "One write
 * per tick").
 */
export const EARLY_FLUSH_BYTES = 8 * 1024;
// Descriptor field offsets (src/protocol.ts), short names for the reply handling below.
const D_OP = DESC_OP, D_REQ = DESC_REQUEST_ID, D_DP = DESC_DATA_PTR, D_DL = DESC_DATA_LEN, D_A0 = DESC_ARG0, D_A1 = DESC_ARG1, D_A2 = DESC_ARG2;

export class Connection {
  readonly url: string;
  readonly settler: Settler;
  #transport: Transport | undefined;
  readonly #c: ClientCore;
  #decoder: number;
  readonly #writer: number;
  readonly out: Outgoing;
  readonly #pending = new PendingTable();
  /** Subscriptions by their current id (DELIVER frames carry it). */
  readonly #subs = new Map<number, ClientSubscription>();
  /** Every open subscription, including one waiting for the connection to subscribe. */
  readonly #allSubs = new Set<ClientSubscription>();
  #state: State = HANDSHAKING;
  /** Bumped when a transport is lost: leases of older generations have ended. */
  #generation = 0;
  #reconnector: ReconnectDriver | undefined;
  readonly #waiting = new Set<WaitingCall>();
  /** Leased pops on the wire, by request id (only with reconnect). */
  readonly #resumable = new Map<number, ResumablePop>();
  /** Leased pops held while reconnecting, in the order they were made. */
  readonly #held = new Set<ResumablePop>();
  readonly status = new StatusEvents();
  readonly #subIdTaken = (id: number): boolean => this.#subs.has(id);
  /** The chunk being decoded and where the decoder holds its first byte: replies inside it are read from it. */
  #chunk: Uint8Array | undefined;
  #chunkAt = 0;
  /** The transport reuses its chunks: #chunk is copied (once) before a message views it. */
  #chunkReused = false;
  #chunkUtf8: Utf8Ranges | undefined;
  /** Set while a pushMany reads its items: a request made from in there (a getter) would land inside its frame. */
  recordsOpen = false;
  #flushQueued = false;
  readonly #flushTask = (): void => this.flush();
  /**
   * Bytes of requests sent on this transport, and the end (in those bytes) of the furthest
   * request answered: the difference is what the broker still has to read or answer, as far
   * as the client knows (replies come in order, except for parked pops, which the maximum
   * steps over).
   */
  #sentBytes = 0;
  #answeredTo = 0;
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
    this.#listen(transport);
  }

  #listen(transport: Transport): void {
    transport.onData = (chunk) => { if (transport === this.#transport) this.#onData(chunk); };
    transport.onClose = (err) => this.#transportClosed(transport, err);
  }

  // ── reconnecting ─────────────────────────────────────────────────────────────────

  /** The handshake succeeded: calls may go out. */
  opened(): void {
    if (this.#state === HANDSHAKING) this.#state = OPEN;
  }

  /** From now on a lost transport is replaced by `driver` instead of closing the connection. */
  enableReconnect(driver: ReconnectDriver): void {
    this.#reconnector = driver;
  }

  get reconnects(): boolean {
    return this.#reconnector !== undefined;
  }

  /** Open: calls are sent now (else they wait, or reject once closed). */
  get isOpen(): boolean {
    return this.#state === OPEN;
  }

  get generation(): number {
    return this.#generation;
  }

  /**
   * Runs `call` once the connection is open again (in the order calls were made), or rejects
   * with ERR_CONNECTION_CLOSED after reconnectTimeoutMs or when the client closes.
   */
  whenOpen<T>(call: () => Promise<T>): Promise<T> {
    if (this.#state === CLOSED || this.#reconnector === undefined) return this.closedRejection();
    const ms = this.#reconnector.reconnectTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const w: WaitingCall = {
        run: call, resolve: resolve as (value: unknown) => void, reject,
        timer: setTimeout(() => {
          this.#waiting.delete(w);
          reject(new TurboError('ERR_CONNECTION_CLOSED', `not reconnected to ${this.url} within reconnectTimeoutMs (${ms} ms)`, { cause: this.#closeError }));
        }, ms),
      };
      this.#waiting.add(w);
    });
  }

  /** A new transport (a reconnect attempt): it carries the handshake until resume(). */
  attach(transport: Transport): void {
    if (this.#state !== RECONNECTING) {
      transport.close();
      return;
    }
    this.#decoder = this.#c.e.decoderNew(512 * 1024 * 1024, 512 * 1024 * 1024);
    if (this.#decoder === 0) throw new Error('turbomq: out of memory');
    this.#transport = transport;
    this.#sentBytes = this.#answeredTo = 0;
    this.#state = HANDSHAKING;
    this.#listen(transport);
  }

  /** The attempt's handshake failed: drop its transport and wait for the next attempt. */
  abandonAttempt(): void {
    if (this.#state !== HANDSHAKING || this.#transport === undefined) return;
    const transport = this.#transport;
    this.#dropTransport();
    this.#pending.rejectAll(this.#closedError());
    transport.close();
  }

  /** The attempt's handshake succeeded: subscribe again, re-send held pops, run waiting calls. */
  resume(attempts: number): void {
    if (this.#state !== HANDSHAKING) return;
    this.#state = OPEN;
    this.#closeError = undefined;
    for (const sub of [...this.#allSubs]) sub.resubscribe();
    const held = [...this.#held];
    this.#held.clear();
    for (const pop of held) this.#resend(pop);
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const w of waiting) {
      clearTimeout(w.timer);
      try {
        w.run().then(w.resolve, w.reject);
      } catch (err) {
        w.reject(err as Error);
      }
    }
    this.status.emit({ type: 'reconnect', attempts });
  }

  /** Tracks a leased pop just encoded as request `pop.id` (with reconnect only). */
  trackPop(pop: ResumablePop): void {
    this.#resumable.set(pop.id, pop);
  }

  /** An abort of a tracked pop: CANCEL on the wire, or, held, it ends here with ERR_ABORTED. */
  cancelPop(pop: ResumablePop, reason: unknown): void {
    const held = pop.held;
    if (held === undefined) return this.send((id) => this.e.encodeCancel(this.writer, id, pop.id));
    this.#held.delete(pop);
    pop.held = undefined;
    clearTimeout(held.timer);
    held.cleanup?.();
    held.reject(new TurboError('ERR_ABORTED', 'pop aborted', { cause: reason }));
  }

  #resend(pop: ResumablePop): void {
    const held = pop.held!;
    pop.held = undefined;
    clearTimeout(held.timer);
    const left = pop.deadline === Infinity ? TIMEOUT_INFINITE : Math.min(TIMEOUT_INFINITE - 1, Math.max(0, Math.ceil(pop.deadline - performance.now())));
    this.writeNames(pop.queueBytes, pop.topicBytes);
    const id = this.nextRequestId();
    const e = this.#c.e;
    if (e.encodePopLeased(this.#writer, id, this.scratchQueue, pop.queueBytes.length, this.scratchTopic, pop.topicBytes.length, pop.max, left, pop.leaseMs) === 0) {
      held.cleanup?.();
      return held.reject(new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request'));
    }
    pop.id = id;
    this.#resumable.set(id, pop);
    this.#pending.addWith(id, pop.kind, pop.queue, pop.topic, held.cleanup, held.resolve, held.reject);
    this.scheduleFlush();
  }

  /** Holds the leased pops still waiting on the lost transport, each until its timeout or reconnectTimeoutMs. */
  #holdPops(): void {
    const now = performance.now();
    const ms = this.#reconnector!.reconnectTimeoutMs;
    for (const [id, pop] of this.#resumable) {
      const slot = this.#pending.find(id);
      if (slot < 0) continue;
      const empty = pop.kind === 'popMany' ? [] : null;
      const timedOut = pop.deadline <= now + ms;
      const { resolve, reject, cleanup } = this.#pending.detach(slot);
      const timer = setTimeout(() => {
        this.#held.delete(pop);
        pop.held = undefined;
        cleanup?.();
        if (timedOut) resolve(empty);
        else reject(new TurboError('ERR_CONNECTION_CLOSED', `not reconnected to ${this.url} within reconnectTimeoutMs (${ms} ms)`, { cause: this.#closeError }));
      }, Math.max(0, Math.min(pop.deadline - now, ms)));
      pop.held = { resolve, reject, cleanup, timer };
      this.#held.add(pop);
    }
    this.#resumable.clear();
  }

  /** Forgets the current transport and its decoder; the writer is kept (emptied). */
  #dropTransport(): void {
    const transport = this.#transport;
    if (transport !== undefined) transport.onData = transport.onClose = noop;
    this.#transport = undefined;
    if (this.#decoder !== 0) this.#c.e.decoderFree(this.#decoder);
    this.#decoder = 0;
    this.#c.e.writerReset(this.#writer);
    this.#state = RECONNECTING;
  }

  #transportClosed(transport: Transport, err: Error | undefined): void {
    if (transport !== this.#transport || this.#state === CLOSED) return;
    if (this.#reconnector === undefined || this.#generation === 0 && this.#state === HANDSHAKING) return this.#shutdown(err);
    if (this.#state === OPEN) return this.#lost(err);
    // A reconnect attempt's transport closed during its handshake: the handshake's requests
    // reject, and the reconnector tries again.
    this.#closeError = err;
    this.#dropTransport();
    this.#pending.rejectAll(this.#closedError());
  }

  /** The open transport is gone: settle what was in flight, hold leased pops, reconnect. */
  #lost(err: Error | undefined): void {
    const transport = this.#transport!;
    this.#closeError = err;
    this.#generation++;
    this.#dropTransport();
    transport.close();
    const error = this.#closedError();
    this.settler.closed();
    this.#holdPops();
    this.#pending.rejectAll(error);
    for (const sub of this.#allSubs) sub.connectionLost();
    this.status.emit({ type: 'disconnect', error: err });
    this.#reconnector!.start();
  }

  /** The broker's limits and version, from the handshake. */
  get server(): { version: string; maxMessageBytes: number; maxFrameBytes: number } {
    return { version: this.#serverVersion, maxMessageBytes: this.#maxMessageBytes, maxFrameBytes: this.#maxFrameBytes };
  }

  /** Closed for good: client.close(), or a lost connection without reconnect. */
  get closed(): boolean {
    return this.#state === CLOSED;
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
    if (this.#state === CLOSED) throw this.#closedError();
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
    if (this.#state === CLOSED || this.#state === RECONNECTING) return Promise.reject(this.#closedError());
    const id = this.nextRequestId();
    const ok = encode(id);
    if (ok === 0) return Promise.reject(new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request'));
    if (flush) return this.expect<T>(id, kind, queue, topic, cleanup);
    return this.#pending.add<T>(id, kind, queue, topic, cleanup, this.#encodedEnd());
  }

  /**
   * The promise of the reply to request `id` (from nextRequestId, encoded since), and the
   * flush that sends it. `queue` and `topic` name the messages of a pop's reply.
   */
  expect<T>(id: number, kind: Kind, queue: string, topic: string, cleanup?: () => void): Promise<T> {
    this.scheduleFlush();
    return this.#pending.add<T>(id, kind, queue, topic, cleanup, this.#encodedEnd());
  }

  /** Where the request just encoded ends in this transport's bytes (the same before and after a flush). */
  #encodedEnd(): number {
    return this.#sentBytes + this.#c.e.writerLength(this.#writer);
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
    // Settles wait for the turn's end, but never behind a request made after them: an ack
    // then an unsubscribe (or a pop, a push) reach the broker in that order.
    if (this.settler.pending) this.settler.flush();
    // Skips ids still in use (a parked pop can outlive 4 billion requests in theory).
    return this.#pending.nextId(this.#subIdTaken);
  }

  /** Sends a request that gets no reply (CREDIT, CANCEL). */
  send(encode: (id: number) => unknown): void {
    if (this.#state !== OPEN) return;
    encode(this.nextRequestId());
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.#flushQueued) {
      // Early: once the waiting bytes are a piece's worth and at least what the broker still
      // has to answer (so pieces grow with the backlog, and a broker with plenty to do is
      // not handed small ones).
      const waiting = this.#c.e.writerLength(this.#writer);
      if (waiting >= EARLY_FLUSH_BYTES && waiting >= this.#sentBytes - this.#answeredTo) this.flush();
      return;
    }
    this.#flushQueued = true;
    queueMicrotask(this.#flushTask);
  }

  /** Writes everything encoded so far (and the tick's settles, as one frame) in one send. */
  flush(): void {
    this.#flushQueued = false;
    const transport = this.#transport;
    if (transport === undefined || this.#state === CLOSED) return;
    this.settler.flush();
    const e = this.#c.e;
    const len = e.writerLength(this.#writer);
    if (len === 0) return;
    const start = e.writerData(this.#writer);
    const memory = this.#c.core.view.span(start + len);
    if (transport.sendCopyOf !== undefined) transport.sendCopyOf(memory.subarray(start, start + len));
    else transport.send(sendCopy(memory, start, start + len));
    e.writerReset(this.#writer);
    this.#sentBytes += len;
  }

  /** Routes DELIVER frames for `id` to `sub` (and keeps it across reconnects). */
  registerSubscription(sub: ClientSubscription, id: number): void {
    this.#subs.set(id, sub);
    this.#allSubs.add(sub);
  }

  /** A subscription waiting for the connection to subscribe (made while reconnecting). */
  addSubscription(sub: ClientSubscription): void {
    this.#allSubs.add(sub);
  }

  /** Stops routing `id` (the subscription subscribes again under a new id, or is done). */
  unrouteSubscription(id: number): void {
    this.#subs.delete(id);
  }

  unregisterSubscription(sub: ClientSubscription, id: number): void {
    if (this.#subs.get(id) === sub) this.#subs.delete(id);
    this.#allSubs.delete(sub);
  }

  /** Open subscriptions (client.close() closes them first, so their messages go back). */
  subscriptions(): ClientSubscription[] {
    return [...this.#allSubs];
  }

  /** Closes the connection after writing what is queued; pending calls reject with ERR_CONNECTION_CLOSED. */
  async close(): Promise<void> {
    if (this.#state !== CLOSED) {
      const transport = this.#transport;
      this.#reconnector?.stop();
      this.flush();
      this.#shutdown(undefined);
      transport?.close();
    }
    await this.#closedPromise;
  }

  #closedError(): TurboError {
    const cause = this.#closeError;
    // A broker that could not make its answers durable (a full or failing disk) closes the
    // connection with ERR_STORAGE: the requests it held back carry that code, so a push
    // fails with the reason, not as a mere disconnect (its outcome is unknown either way).
    const code = cause instanceof TurboError && cause.code === 'ERR_STORAGE' ? 'ERR_STORAGE' : 'ERR_CONNECTION_CLOSED';
    return new TurboError(code, cause ? `connection closed: ${cause.message}` : 'connection closed', { cause });
  }

  // ── replies ──────────────────────────────────────────────────────────────────────

  #onData(chunk: Uint8Array): void {
    if (this.#state === CLOSED || this.#decoder === 0) return;
    const e = this.#c.e;
    const view = this.#c.core.view;
    // A reply may end this transport (a fatal ERROR): the loop stops once the decoder changed.
    const decoder = this.#decoder;
    const at = e.decoderReserve(this.#decoder, chunk.length);
    if (at === 0) return this.#fail(new TurboError('ERR_NO_MEMORY', 'client out of memory decoding replies'));
    view.write(at, chunk);
    e.decoderCommit(this.#decoder, chunk.length);
    this.#chunk = chunk;
    this.#chunkAt = at;
    this.#chunkUtf8 = undefined;
    this.#chunkReused = this.#transport!.reusesChunks === true;
    try {
      for (;;) {
        const n = e.decoderNext(decoder);
        if (n < 0) return this.#fail(new TurboError('ERR_PROTOCOL', 'malformed reply from the broker'));
        const base = e.decoderDescriptors(decoder);
        for (let i = 0; i < n && this.#decoder === decoder; i++) this.#reply(base + i * DESC_SIZE);
        if (n < DESC_CAPACITY || this.#decoder !== decoder) break;
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
    if (this.#resumable.size !== 0) this.#resumable.delete(id);
    if (slot < 0) {
      const sub = op === Op.ERROR ? this.#subs.get(id) : undefined;
      if (sub !== undefined) sub.fail(errorFromWire(view.u32(d + D_A0), this.#text(d)));
      return;
    }
    const end = pending.end(slot);
    if (end > this.#answeredTo) this.#answeredTo = end;
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
   * Buffers from Node's pool), and its data view and text are made only when asked for. A
   * message is its reply's RecordsSource and its record's offset (message.ts): the loop reads
   * one length per record, nothing else. The records were validated by the decoder (each
   * length lies within the frame, the records fill it exactly).
   */
  #records(d: number, queue: string, topic: string, flags: number): Message[] {
    const view = this.#c.core.view;
    const count = view.u32(d + D_A0);
    const dp = view.u32(d + D_DP), dl = view.u32(d + D_DL);
    let bytes: Uint8Array, p: number, utf8: Utf8Ranges;
    if (this.#chunk !== undefined && dp >= this.#chunkAt) {
      if (this.#chunkReused) {
        this.#chunk = copyOf(this.#chunk);
        this.#chunkReused = false;
      }
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
      const src = new RecordsSource(queue, topic, bytes, utf8, RECORD_HEADER_BYTES, undefined);
      const fields = src.fields;
      for (let i = 0; i < count; i++) {
        messages[i] = new ClientMessage(src, p);
        p += RECORD_HEADER_BYTES + fields.getUint32(p, true);
      }
    } else {
      const src = new RecordsSource(queue, topic, bytes, utf8, LEASED_RECORD_HEADER_BYTES, this);
      const fields = src.fields;
      for (let i = 0; i < count; i++) {
        messages[i] = new LeasedMessage(src, p);
        p += LEASED_RECORD_HEADER_BYTES + fields.getUint32(p, true);
      }
    }
    return messages;
  }

  #fail(err: Error): void {
    const transport = this.#transport;
    if (transport === undefined) return;
    // With reconnect, a broken or refused transport is replaced like a lost one.
    if (this.#reconnector !== undefined && this.#state !== CLOSED) {
      // First (it detaches the transport), so that a close that reports back at once cannot
      // replace `err` with a plain close.
      this.#transportClosed(transport, err);
      transport.close();
      return;
    }
    this.#shutdown(err);
    transport.close();
  }

  #shutdown(err: Error | undefined): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    // close() keeps the reason of the loss it interrupted (calls waiting for a reconnect say why).
    if (err !== undefined || this.#transport !== undefined) this.#closeError = err;
    const transport = this.#transport;
    if (transport !== undefined) transport.onData = transport.onClose = noop;
    this.#transport = undefined;
    const error = this.#closedError();
    this.settler.closed();
    this.#pending.rejectAll(error);
    this.#resumable.clear();
    for (const pop of this.#held) {
      const held = pop.held!;
      pop.held = undefined;
      clearTimeout(held.timer);
      held.cleanup?.();
      held.reject(error);
    }
    this.#held.clear();
    for (const w of this.#waiting) {
      clearTimeout(w.timer);
      w.reject(error);
    }
    this.#waiting.clear();
    for (const sub of [...this.#allSubs]) sub.connectionClosed(error);
    this.#subs.clear();
    this.#allSubs.clear();
    if (this.#decoder !== 0) this.#c.e.decoderFree(this.#decoder);
    this.#decoder = 0;
    this.#c.e.writerFree(this.#writer);
    this.status.emit({ type: 'close' });
    this.#resolveClosed();
  }
}
