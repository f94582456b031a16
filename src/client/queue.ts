// The Queue API, the same for TurboClient (network) and TurboEngine.getQueue (embedded),
// and its implementation over a Connection (src/client/connection.ts). Each call encodes
// one request with the Wasm codec, with message data written in place (outgoing.ts); names
// are encoded once per queue and cached per topic. Calls return their one promise directly:
// no async wrapper, no closure on the push and pop paths.

import type { Connection, ResumablePop } from './connection.ts';
import { ClientSubscription } from './subscription.ts';
import { utf8Length } from './utf8.ts';
import { tooLarge } from './outgoing.ts';
import { TurboError } from '../errors.ts';
import {
  TIMEOUT_INFINITE, MAX_NAME_BYTES, MAX_DEDUP_ID_BYTES, SettingsMask, SETTINGS_FIXED_BYTES, SUBSCRIBE_ACK, SUBSCRIBE_EXCLUSIVE,
} from '../protocol.ts';

export interface Message {
  /** Queue name. */
  readonly queue: string;
  /** Topic name. */
  readonly topic: string;
  /** The message bytes. */
  readonly data: Uint8Array;
  /** `data` decoded as UTF-8 (decoded on first use). */
  readonly content: string;
  /** Assigned by the broker, unique in its topic, the same on every redelivery. */
  readonly id: string;
  /** 1 on first delivery, +1 each time a delivery ended without ack. */
  readonly deliveries: number;
  /** Set on messages in a dead-letter topic: where it came from and why. */
  readonly deadLetter?: { topic: string; reason: 'max-deliveries' | 'rejected' };
  /** Done: removed for good. Resolves at once for a message popped without `ack: true`. */
  ack(): Promise<void>;
  /** Gives it back now (or after delayMs) for redelivery. */
  nack(options?: { delayMs?: number }): Promise<void>;
  /** The lease now ends leaseMs (default: its lease length) from now. */
  extend(leaseMs?: number): Promise<void>;
  /** No more deliveries: to the dead-letter topic, or dropped. */
  reject(reason?: string): Promise<void>;
}

/** pop/popMany options. */
export interface PopOptions {
  /** Omitted or Infinity: wait until a message arrives. 0: answer at once. */
  timeoutMs?: number;
  /** Aborting it ends the pop with ERR_ABORTED (or delivers a message already on its way). */
  signal?: AbortSignal;
  /** Lease the message(s): invisible to others until acked or the lease ends. */
  ack?: boolean;
  /** Lease length (default: the queue's leaseMs). */
  leaseMs?: number;
}

/** A pop timeout: milliseconds, or an options object. */
export type PopTimeout = number | PopOptions;

export interface SubscribeOptions {
  /** Messages the broker may send ahead of consumption; with ack: true, unacked messages at most (default 64). */
  prefetch?: number;
  /** Be the only consumer of the topic (ERR_EXCLUSIVE if it has one). */
  exclusive?: boolean;
  /** Lease every delivery: it must be acked (or nacked); unacked ones come back. */
  ack?: boolean;
  /** Lease length for ack: true (default: the queue's leaseMs). */
  leaseMs?: number;
}

export interface PushOptions {
  /** Ready this many ms after the push. */
  delayMs?: number;
  /** A push whose dedupId was pushed to the same queue and topic within dedupWindowMs stores nothing. */
  dedupId?: string;
}

/** Queue-wide settings: every topic of the queue follows them. */
export interface QueueSettings {
  leaseMs: number;
  maxDeliveries: number;
  deadLetterTopic: string | null;
  maxLength: number;
  overflow: 'reject' | 'drop-oldest';
  dedupWindowMs: number;
  /**
   * Written to the broker's data directory and restored after a restart. Default: true on a
   * broker with a data directory (--data-dir), false without one, where `true` is refused
   * with ERR_INVALID_ARGUMENT.
   */
  durable: boolean;
}

export interface TopicStats {
  /** Messages a pop could take now. */
  ready: number;
  /** Messages waiting for their delayMs. */
  delayed: number;
  /** Messages leased and not acked. */
  inFlight: number;
}

export interface Subscription extends AsyncIterable<Message> {
  /** Ends the subscription; unconsumed (and, with ack: true, unacked) messages go back to the topic's front. */
  close(): Promise<void>;
  readonly closed: boolean;
  /** Resolves once the broker accepted the subscription (rejects with ERR_EXCLUSIVE etc.). */
  readonly ready: Promise<void>;
}

export interface Queue {
  readonly name: string;
  /** Merges `patch` into the queue's settings; resolves to the effective settings. */
  configure(patch?: Partial<QueueSettings>): Promise<QueueSettings>;
  /** Stores one message; resolves once the broker has stored it. */
  push(topic: string, data: string | Uint8Array, options?: PushOptions): Promise<void>;
  /** Stores all messages, in order, in one round trip; all or nothing. */
  pushMany(topic: string, items: Iterable<string | Uint8Array>, options?: { delayMs?: number }): Promise<void>;
  /**
   * The oldest message, or null after `timeout` ms. Omitted or Infinity: wait until one
   * arrives. 0: answer at once. Negative or NaN: ERR_INVALID_ARGUMENT.
   */
  pop(topic: string, timeout?: PopTimeout): Promise<Message | null>;
  /** Waits like pop for the first message, then returns up to `max` available, in order. */
  popMany(topic: string, max: number, timeout?: PopTimeout): Promise<Message[]>;
  /** Ready messages: what a pop could take now. */
  length(topic: string): Promise<number>;
  /** Ready, delayed and in-flight counts. */
  stats(topic: string): Promise<TopicStats>;
  /** A consumer receiving messages as they arrive. */
  subscribe(topic: string, options?: SubscribeOptions): Subscription;
}

const textEncoder = new TextEncoder();

export function invalid(message: string): TurboError {
  return new TurboError('ERR_INVALID_ARGUMENT', message);
}

/** UTF-8 bytes of a queue or topic name, checked against the 1..255 byte limit. */
export function nameBytes(kind: string, name: unknown): Uint8Array {
  if (typeof name !== 'string') throw invalid(`${kind} name must be a string`);
  // TextEncoder would send a lone surrogate as U+FFFD: another name than the one asked for.
  if (!name.isWellFormed()) throw invalid(`${kind} name must be well-formed Unicode: it has a lone surrogate`);
  const bytes = textEncoder.encode(name);
  if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) throw invalid(`${kind} name must be 1 to ${MAX_NAME_BYTES} bytes of UTF-8, got ${bytes.length}`);
  return bytes;
}

const NO_BYTES = new Uint8Array(0);

/** A whole number of ms for a u32 wire field (ceil); `what` names it in the error. 0 allowed. */
function wireMs(what: string, ms: unknown, max = TIMEOUT_INFINITE - 1): number {
  if (typeof ms !== 'number' || Number.isNaN(ms) || ms < 0 || ms > max) throw invalid(`${what} must be a number of ms from 0 to ${max}, got ${String(ms)}`);
  return Math.ceil(ms);
}

/** Milliseconds for the wire: 0xFFFFFFFF waits forever; longer finite timeouts are waited in steps by the broker. */
function wireTimeout(timeoutMs: number | undefined): number {
  if (timeoutMs === undefined || timeoutMs === Infinity) return TIMEOUT_INFINITE;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0) throw invalid(`timeout must be a number >= 0 (or Infinity), got ${String(timeoutMs)}`);
  return Math.min(Math.ceil(timeoutMs), TIMEOUT_INFINITE - 1);
}

interface ParsedPop { wire: number; signal: AbortSignal | undefined; ack: boolean; leaseMs: number }

function parsePop(timeout: PopTimeout | undefined): ParsedPop {
  if (timeout === undefined || typeof timeout === 'number') return { wire: wireTimeout(timeout), signal: undefined, ack: false, leaseMs: 0 };
  if (typeof timeout !== 'object' || timeout === null) throw invalid('timeout must be milliseconds or { timeoutMs, signal, ack, leaseMs }');
  const signal = timeout.signal;
  if (signal !== undefined && !(typeof signal === 'object' && 'aborted' in signal)) throw invalid('signal must be an AbortSignal');
  if (timeout.ack !== undefined && typeof timeout.ack !== 'boolean') throw invalid('ack must be a boolean');
  return { wire: wireTimeout(timeout.timeoutMs), signal, ack: timeout.ack === true, leaseMs: leaseMsOf(timeout.leaseMs) };
}

/** A lease length for the wire: undefined = the queue's default (0). */
export function leaseMsOf(leaseMs: unknown): number {
  if (leaseMs === undefined) return 0;
  if (typeof leaseMs !== 'number' || !(leaseMs > 0)) throw invalid(`leaseMs must be a positive number of ms, got ${String(leaseMs)}`);
  return wireMs('leaseMs', leaseMs);
}

function delayOf(options: { delayMs?: number } | undefined): number {
  if (options === undefined) return 0;
  if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
  return options.delayMs === undefined ? 0 : wireMs('delayMs', options.delayMs);
}

/** Topic names encoded once per queue (bounded: a queue may see endless distinct topics). */
const TOPIC_CACHE_SIZE = 1024;

const SETTINGS_KEYS = new Set(['leaseMs', 'maxDeliveries', 'deadLetterTopic', 'maxLength', 'overflow', 'dedupWindowMs', 'durable']);

export class ClientQueue implements Queue {
  readonly name: string;
  readonly #conn: Connection;
  readonly #nameBytes: Uint8Array;
  readonly #topics = new Map<string, Uint8Array>();

  constructor(conn: Connection, name: string) {
    this.#conn = conn;
    this.name = name;
    this.#nameBytes = nameBytes('queue', name);
  }

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

  #checkSize(len: number): void {
    const max = this.#conn.maxMessageBytes;
    if (len > max) throw tooLarge(len, max);
  }

  async configure(patch: Partial<QueueSettings> = {}): Promise<QueueSettings> {
    const c = this.#conn;
    if (!c.isOpen) return c.whenOpen(() => this.configure(patch));
    if (typeof patch !== 'object' || patch === null) throw invalid('settings must be an object');
    let mask = 0;
    let leaseMs = 0, maxDeliveries = 0, maxLength = 0, dedupWindowMs = 0, overflow = 0, durable = 2;
    let dlq: Uint8Array = new Uint8Array(0);
    const positive = (k: string, v: unknown) => { if (typeof v !== 'number' || !(v > 0) || v === Infinity) throw invalid(`${k} must be a positive number of ms, got ${String(v)}`); return v; };
    const count = (k: string, v: unknown) => { if (v !== Infinity && !(Number.isInteger(v) && (v as number) >= 1)) throw invalid(`${k} must be a positive integer or Infinity, got ${String(v)}`); return v as number; };
    for (const [key, value] of Object.entries(patch)) {
      if (!SETTINGS_KEYS.has(key)) throw invalid(`unknown queue setting ${JSON.stringify(key)}`);
      if (value === undefined) continue;
      switch (key) {
        case 'leaseMs': leaseMs = positive(key, value); mask |= SettingsMask.LEASE_MS; break;
        case 'dedupWindowMs': dedupWindowMs = positive(key, value); mask |= SettingsMask.DEDUP_WINDOW_MS; break;
        case 'maxDeliveries': maxDeliveries = count(key, value); mask |= SettingsMask.MAX_DELIVERIES; break;
        case 'maxLength': maxLength = count(key, value); mask |= SettingsMask.MAX_LENGTH; break;
        case 'overflow':
          if (value !== 'reject' && value !== 'drop-oldest') throw invalid(`overflow must be 'reject' or 'drop-oldest', got ${String(value)}`);
          overflow = value === 'drop-oldest' ? 1 : 0;
          mask |= SettingsMask.OVERFLOW;
          break;
        case 'durable':
          if (typeof value !== 'boolean') throw invalid(`durable must be true or false, got ${String(value)}`);
          durable = value ? 1 : 0;
          mask |= SettingsMask.DURABLE;
          break;
        case 'deadLetterTopic':
          if (value !== null) dlq = nameBytes('deadLetterTopic', value);
          mask |= SettingsMask.DEAD_LETTER_TOPIC;
          break;
      }
    }
    c.writeNames(this.#nameBytes, new Uint8Array(0));
    return c.request<QueueSettings>('settings', this.name, '', (id) => {
      const p = c.e.encodeConfigure(c.writer, id, c.scratchQueue, this.#nameBytes.length, mask, SETTINGS_FIXED_BYTES + dlq.length);
      if (p === 0) return 0;
      const v = c.view;
      v.setF64(p, leaseMs);
      v.setF64(p + 8, maxDeliveries);
      v.setF64(p + 16, maxLength);
      v.setF64(p + 24, dedupWindowMs);
      v.write(p + 32, Uint8Array.of(overflow, durable, dlq.length));
      v.write(p + 35, dlq);
      return 1;
    });
  }

  push(topic: string, data: string | Uint8Array, options?: PushOptions): Promise<void> {
    const c = this.#conn;
    if (!c.isOpen) return c.whenOpen(() => this.push(topic, data, options));
    try {
      return this.#push(c, topic, data, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** PUSH (PUSH_EX with options): the core writes the frame, the data goes in after it, once. */
  #push(c: Connection, topic: string, data: string | Uint8Array, options: PushOptions | undefined): Promise<void> {
    const t = this.#topic(topic);
    let len: number;
    if (typeof data === 'string') len = utf8Length(data);
    else if (data instanceof Uint8Array) len = data.length;
    else throw invalid('data must be a string or a Uint8Array');
    this.#checkSize(len);
    const delayMs = delayOf(options);
    let dedup: Uint8Array | undefined;
    if (options?.dedupId !== undefined) {
      if (typeof options.dedupId !== 'string') throw invalid('dedupId must be a string');
      dedup = textEncoder.encode(options.dedupId);
      if (dedup.length === 0 || dedup.length > MAX_DEDUP_ID_BYTES) throw invalid(`dedupId must be 1 to ${MAX_DEDUP_ID_BYTES} bytes of UTF-8, got ${dedup.length}`);
    }
    c.writeNames(this.#nameBytes, t);
    const e = c.e;
    const id = c.nextRequestId();
    let at: number;
    if (delayMs === 0 && dedup === undefined) {
      at = e.encodePush(c.writer, id, c.scratchQueue, this.#nameBytes.length, c.scratchTopic, t.length, len);
    } else {
      const d = dedup ?? NO_BYTES;
      c.view.write(c.scratchExtra, d);
      at = e.encodePushEx(c.writer, id, c.scratchQueue, this.#nameBytes.length, c.scratchTopic, t.length, delayMs, c.scratchExtra, d.length, len);
    }
    if (at === 0) return c.noMemory();
    c.out.writeData(at, data, len);
    return c.expect<void>(id, 'ok', '', '');
  }

  pushMany(topic: string, items: Iterable<string | Uint8Array>, options?: { delayMs?: number }): Promise<void> {
    const c = this.#conn;
    if (!c.isOpen) return c.whenOpen(() => this.pushMany(topic, items, options));
    try {
      return this.#pushMany(c, topic, items, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * PUSH_MANY: the core writes each frame's header, names and count, JavaScript the records
   * (outgoing.ts), and the core seals the frame. Frames hold at most maxFrameBytes and go
   * back to back (still one round trip, in order). Any bad item undoes everything written.
   */
  #pushMany(c: Connection, topic: string, items: Iterable<string | Uint8Array>, options: { delayMs?: number } | undefined): Promise<void> {
    const t = this.#topic(topic);
    if (items === null || typeof items !== 'object' && typeof items !== 'string' || typeof (items as Iterable<unknown>)[Symbol.iterator] !== 'function') throw invalid('items must be an iterable of strings or Uint8Arrays');
    const delayMs = delayOf(options);
    // An array is read in place; any other iterable is read into one first, so that no user
    // code (a generator) runs while a frame is open in the writer.
    const list: readonly unknown[] = Array.isArray(items) ? items : Array.from(items);
    const n = list.length;
    if (n === 0) return Promise.resolve();
    const e = c.e, w = c.writer, out = c.out;
    const max = c.maxMessageBytes;
    const budget = c.maxFrameBytes - 12 - 2 * 256 - 8;
    const room = Math.min(budget, 64 + n * 24);
    let id = c.nextRequestId();
    const first = this.#recordsBegin(c, id, t, delayMs);
    let mark = first;
    let ids: number[] | undefined;
    c.recordsOpen = true;
    try {
      out.begin(room);
      let from = 0;
      for (;;) {
        const next = out.putRecords(list, from, n, max, budget);
        out.end();
        e.encodeRecordsEnd(w, mark, next - from);
        if (next === n) break;
        // That frame is full: the records from `next` on go in the next one.
        ids ??= [id];
        c.recordsOpen = false;
        id = c.nextRequestId();
        c.recordsOpen = true;
        ids.push(id);
        mark = this.#recordsBegin(c, id, t, delayMs);
        out.begin(room);
        from = next;
      }
    } catch (err) {
      e.writerTruncate(w, first);
      throw err;
    } finally {
      c.recordsOpen = false;
    }
    if (ids === undefined) return c.expect<void>(id, 'ok', '', '');
    return Promise.all(ids.map((frameId) => c.expect<void>(frameId, 'ok', '', ''))).then(() => undefined);
  }

  /** Starts a PUSH_MANY (PUSH_MANY_EX) frame for request `id`; returns its mark. */
  #recordsBegin(c: Connection, id: number, t: Uint8Array, delayMs: number): number {
    c.writeNames(this.#nameBytes, t); // again: a getter may have written other names meanwhile
    const mark = delayMs === 0
      ? c.e.encodePushManyBegin(c.writer, id, c.scratchQueue, this.#nameBytes.length, c.scratchTopic, t.length)
      : c.e.encodePushManyExBegin(c.writer, id, c.scratchQueue, this.#nameBytes.length, c.scratchTopic, t.length, delayMs);
    if (mark < 0) throw new TurboError('ERR_NO_MEMORY', 'client out of memory encoding the request');
    return mark;
  }

  pop(topic: string, timeout?: PopTimeout): Promise<Message | null> {
    return this.#pop<Message | null>('pop', topic, 1, timeout);
  }

  popMany(topic: string, max: number, timeout?: PopTimeout): Promise<Message[]> {
    if (!Number.isInteger(max) || max < 1 || max > 0xffffffff) return Promise.reject(invalid(`max must be an integer >= 1, got ${String(max)}`));
    return this.#pop<Message[]>('popMany', topic, max, timeout);
  }

  #pop<T>(kind: 'pop' | 'popMany', topic: string, max: number, timeout: PopTimeout | undefined): Promise<T> {
    const c = this.#conn;
    // While reconnecting the call waits; its timeout starts once it is sent.
    if (!c.isOpen) return c.whenOpen(() => this.#pop<T>(kind, topic, max, timeout));
    try {
      const t = this.#topic(topic);
      if (timeout === undefined || typeof timeout === 'number') return this.#popPlain<T>(c, kind, topic, t, max, wireTimeout(timeout));
      return this.#popWith<T>(c, kind, topic, t, max, parsePop(timeout));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** POP / POP_MANY with just a timeout. */
  #popPlain<T>(c: Connection, kind: 'pop' | 'popMany', topic: string, t: Uint8Array, max: number, wire: number): Promise<T> {
    c.writeNames(this.#nameBytes, t);
    const id = c.nextRequestId();
    const q = c.scratchQueue, tp = c.scratchTopic, ql = this.#nameBytes.length;
    const ok = kind === 'pop'
      ? c.e.encodePop(c.writer, id, q, ql, tp, t.length, wire)
      : c.e.encodePopMany(c.writer, id, q, ql, tp, t.length, max, wire);
    if (ok === 0) return c.noMemory();
    return c.expect<T>(id, kind, this.name, topic);
  }

  /** POP / POP_MANY / POP_LEASED with an options object (signal, ack, leaseMs). */
  #popWith<T>(c: Connection, kind: 'pop' | 'popMany', topic: string, t: Uint8Array, max: number, options: ParsedPop): Promise<T> {
    const { wire, signal, ack, leaseMs } = options;
    if (signal?.aborted) throw new TurboError('ERR_ABORTED', 'pop aborted', { cause: signal.reason });
    c.writeNames(this.#nameBytes, t);
    const id = c.nextRequestId();
    const q = c.scratchQueue, tp = c.scratchTopic, ql = this.#nameBytes.length;
    let ok: number;
    if (ack) ok = c.e.encodePopLeased(c.writer, id, q, ql, tp, t.length, max, wire, leaseMs);
    else if (kind === 'pop') ok = c.e.encodePop(c.writer, id, q, ql, tp, t.length, wire);
    else ok = c.e.encodePopMany(c.writer, id, q, ql, tp, t.length, max, wire);
    if (ok === 0) return c.noMemory();
    // A reconnecting client re-sends leased pops after a lost connection (connection.ts).
    let pop: ResumablePop | undefined;
    if (ack && c.reconnects) {
      pop = { id, kind, queue: this.name, topic, queueBytes: this.#nameBytes, topicBytes: t, max, leaseMs, deadline: wire === TIMEOUT_INFINITE ? Infinity : performance.now() + wire };
      c.trackPop(pop);
    }
    let cleanup: (() => void) | undefined;
    if (signal !== undefined) {
      // The broker settles the pop: ERR_ABORTED if the waiter was still parked, or the
      // message if one was already on its way (so an abort never loses a message).
      const onAbort = pop !== undefined
        ? () => c.cancelPop(pop, signal.reason)
        : () => c.send((cancelId) => c.e.encodeCancel(c.writer, cancelId, id));
      signal.addEventListener('abort', onAbort, { once: true });
      cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    return c.expect<T>(id, kind, this.name, topic, cleanup);
  }

  length(topic: string): Promise<number> {
    return this.#topicQuery<number>(topic, 'length');
  }

  stats(topic: string): Promise<TopicStats> {
    return this.#topicQuery<TopicStats>(topic, 'stats');
  }

  /** LENGTH and STATS: one request naming the topic, answered with its counts. */
  #topicQuery<T>(topic: string, kind: 'length' | 'stats'): Promise<T> {
    const c = this.#conn;
    if (!c.isOpen) return c.whenOpen(() => this.#topicQuery<T>(topic, kind));
    let t: Uint8Array;
    try {
      t = this.#topic(topic);
    } catch (err) {
      return Promise.reject(err);
    }
    c.writeNames(this.#nameBytes, t);
    const id = c.nextRequestId();
    const ql = this.#nameBytes.length;
    const encoded = kind === 'length'
      ? c.e.encodeLength(c.writer, id, c.scratchQueue, ql, c.scratchTopic, t.length)
      : c.e.encodeStats(c.writer, id, c.scratchQueue, ql, c.scratchTopic, t.length);
    if (encoded === 0) return c.noMemory();
    return c.expect<T>(id, kind, this.name, topic);
  }

  subscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    const c = this.#conn;
    c.checkOpen();
    const t = this.#topic(topic);
    const prefetch = options.prefetch ?? 64;
    if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65536) throw invalid(`prefetch must be an integer from 1 to 65536, got ${String(prefetch)}`);
    if (options.ack !== undefined && typeof options.ack !== 'boolean') throw invalid('ack must be a boolean');
    const leaseMs = leaseMsOf(options.leaseMs);
    const flags = (options.exclusive === true ? SUBSCRIBE_EXCLUSIVE : 0) | (options.ack === true ? SUBSCRIBE_ACK : 0);
    return new ClientSubscription(c, this.name, this.#nameBytes, topic, t, prefetch, flags, leaseMs);
  }
}
