// Delivered messages and settling their leases (ack, nack, extend, reject).
//
// A message is built per delivered record with no copy of its data and nothing else
// allocated: it holds the reply's bytes (the received chunk itself, or one copy of the
// records) and its range in them; the `data` view is made and the text decoded only when
// `data` or `content` is read. A leased message (popped
// with ack: true, or from an ack:true subscription) carries its lease handle; settling it
// queues an entry on its connection's Settler, and every entry queued in one tick goes in
// one SETTLE frame (users ack one by one; the wire sees a batch), answered by one status
// per entry.

import { TurboError, errorFromWire } from '../errors.ts';
import { SettleKind, SETTLE_ENTRY_BYTES, DEAD_LETTER_REASONS, META_DELIVERIES_MASK, META_DEAD_LETTER } from '../protocol.ts';
import type { Message } from './queue.ts';
import type { Connection } from './connection.ts';

/** Decodes UTF-8 ranges of one reply's bytes. */
export type Utf8Ranges = (start: number, end: number) => string;

export interface DeadLetterInfo { topic: string; reason: 'max-deliveries' | 'rejected' }

const TWO_32 = 2 ** 32;

/** A u64 as (low, high) u32 halves, in decimal. */
function u64String(lo: number, hi: number): string {
  return hi < 0x200000 ? String(hi * TWO_32 + lo) : ((BigInt(hi) << 32n) | BigInt(lo)).toString();
}

export class ClientMessage implements Message {
  readonly queue: string;
  readonly topic: string;
  readonly deadLetter?: DeadLetterInfo;
  /** The stored record's meta word (deliveries and flags), for returning it as it came. */
  readonly meta: number;
  readonly #idLo: number;
  readonly #idHi: number;
  /** The reply's bytes; this message's payload is [#start, #end). */
  readonly #bytes: Uint8Array;
  readonly #start: number;
  readonly #end: number;
  #data: Uint8Array | undefined;
  #utf8: Utf8Ranges | undefined;
  #content: string | undefined;

  constructor(queue: string, topic: string, bytes: Uint8Array, start: number, end: number, utf8: Utf8Ranges, meta: number, idLo: number, idHi: number) {
    this.queue = queue;
    this.topic = topic;
    this.#bytes = bytes;
    this.#start = start;
    this.#end = end;
    this.#utf8 = utf8;
    this.meta = meta;
    this.#idLo = idLo;
    this.#idHi = idHi;
    if ((meta & META_DEAD_LETTER) !== 0) {
      // The payload starts with [u8 reason][u8 topicLength][topic] (docs/protocol.md).
      const topicLength = bytes[start + 1]!;
      const reason = DEAD_LETTER_REASONS[bytes[start] as 1 | 2] ?? 'rejected';
      this.deadLetter = { topic: utf8(start + 2, start + 2 + topicLength), reason };
    }
  }

  get deliveries(): number {
    return this.meta & META_DELIVERIES_MASK;
  }

  /** Where the data starts in the reply's bytes: after the dead-letter prefix, if any. */
  #dataStart(): number {
    return this.deadLetter === undefined ? this.#start : this.#start + 2 + this.#bytes[this.#start + 1]!;
  }

  /** The message bytes: a view, made on first use. */
  get data(): Uint8Array {
    return this.#data ??= this.#bytes.subarray(this.#dataStart(), this.#end);
  }

  /** The record's payload as the broker stores it (data, after a dead-letter prefix if any). */
  get payload(): Uint8Array {
    return this.#bytes.subarray(this.#start, this.#end);
  }

  get content(): string {
    if (this.#content === undefined) {
      this.#content = this.#utf8!(this.#dataStart(), this.#end);
      this.#utf8 = undefined;
    }
    return this.#content;
  }

  get id(): string {
    return u64String(this.#idLo, this.#idHi);
  }

  /** id halves, for RETURN. */
  get idLo(): number { return this.#idLo; }
  get idHi(): number { return this.#idHi; }

  /** Popped without ack: true, the message is done already. */
  ack(): Promise<void> {
    return Promise.resolve();
  }

  nack(options?: { delayMs?: number }): Promise<void> {
    let delayMs = 0;
    if (options !== undefined) {
      if (typeof options !== 'object' || options === null) return Promise.reject(invalid('nack options must be an object'));
      if (options.delayMs !== undefined) {
        if (typeof options.delayMs !== 'number' || Number.isNaN(options.delayMs) || options.delayMs < 0 || options.delayMs > 0xFFFFFFFE) {
          return Promise.reject(invalid(`delayMs must be a number of ms >= 0, got ${String(options.delayMs)}`));
        }
        delayMs = Math.ceil(options.delayMs);
      }
    }
    return this.settle('nack', SettleKind.NACK, delayMs, true);
  }

  extend(leaseMs?: number): Promise<void> {
    if (leaseMs !== undefined && (typeof leaseMs !== 'number' || !(leaseMs > 0) || leaseMs > 0xFFFFFFFE)) {
      return Promise.reject(invalid(`leaseMs must be a positive number of ms, got ${String(leaseMs)}`));
    }
    return this.settle('extend', SettleKind.EXTEND, leaseMs === undefined ? 0 : Math.ceil(leaseMs), false);
  }

  reject(reason?: string): Promise<void> {
    if (reason !== undefined && typeof reason !== 'string') return Promise.reject(invalid('reason must be a string'));
    return this.settle('reject', SettleKind.REJECT, 0, true);
  }

  /** Settles the lease (LeasedMessage); a message popped without ack: true has none. */
  protected settle(what: string, _kind: number, _arg: number, _ends: boolean): Promise<void> {
    return Promise.reject(invalid(`${what}() needs a message popped with ack: true`));
  }
}

/** A leased message (popped with ack: true, or from an ack:true subscription): its connection and lease handle. */
export class LeasedMessage extends ClientMessage {
  readonly #conn: Connection;
  readonly #leaseLo: number;
  readonly #leaseHi: number;
  /** The connection's transport generation it was delivered on: its lease ends with that transport. */
  readonly #generation: number;
  #ended = false;

  constructor(
    queue: string, topic: string, bytes: Uint8Array, start: number, end: number, utf8: Utf8Ranges, meta: number, idLo: number, idHi: number,
    conn: Connection, leaseLo: number, leaseHi: number,
  ) {
    super(queue, topic, bytes, start, end, utf8, meta, idLo, idHi);
    this.#conn = conn;
    this.#leaseLo = leaseLo;
    this.#leaseHi = leaseHi;
    this.#generation = conn.generation;
  }

  override ack(): Promise<void> {
    return this.settle('ack', SettleKind.ACK, 0, true);
  }

  protected override settle(_what: string, kind: number, arg: number, ends: boolean): Promise<void> {
    const conn = this.#conn;
    // Settled already, or the connection (and with it every lease) is gone - closed, or
    // reconnected since: the lease ended, and the message may be with another consumer by now.
    if (this.#ended || conn.closed || conn.generation !== this.#generation) return Promise.reject(new TurboError('ERR_LEASE_EXPIRED', 'the lease has ended (settled already, expired, or its connection closed)'));
    if (ends) this.#ended = true;
    return conn.settler.add(this.#leaseLo, this.#leaseHi, kind, arg);
  }
}

function invalid(message: string): TurboError {
  return new TurboError('ERR_INVALID_ARGUMENT', message);
}

type Resolve = () => void;
type Reject = (err: Error) => void;

/** One tick's settles: entry i is words[4i..4i+3] (lease lo, hi, kind, arg) and its promise's resolve/reject. */
interface SettleBatch { words: number[]; resolves: Resolve[]; rejects: Reject[] }

function newBatch(): SettleBatch {
  return { words: [], resolves: [], rejects: [] };
}

const LEASE_ENDED_TEXT = 'the lease has ended (expired, or its message was settled or returned)';

/**
 * One connection's pending settles: collected during a tick, encoded as one SETTLE frame
 * when the connection flushes, each resolved or rejected by its status in SETTLED. A settle
 * costs its promise and four numbers: no entry object, no closure.
 */
export class Settler {
  readonly #conn: Connection;
  #batch = newBatch();
  #resolve: Resolve | undefined;
  #reject: Reject | undefined;
  readonly #executor = (resolve: Resolve, reject: Reject): void => {
    this.#resolve = resolve;
    this.#reject = reject;
  };

  constructor(conn: Connection) {
    this.#conn = conn;
  }

  add(lo: number, hi: number, kind: number, arg: number): Promise<void> {
    const promise = new Promise<void>(this.#executor);
    const b = this.#batch;
    b.words.push(lo, hi, kind, arg);
    b.resolves.push(this.#resolve!);
    b.rejects.push(this.#reject!);
    this.#resolve = this.#reject = undefined;
    this.#conn.scheduleFlush();
    return promise;
  }

  /** Encodes what was queued as one SETTLE request (called by the connection before it writes). */
  flush(): void {
    const batch = this.#batch;
    const count = batch.resolves.length;
    if (count === 0) return;
    this.#batch = newBatch();
    const c = this.#conn;
    c.request<Uint8Array>('settle', '', '', (id) => {
      const p = c.e.encodeSettle(c.writer, id, count);
      if (p === 0) return 0;
      // SETTLE_ENTRY_BYTES per entry: its four words in order.
      const v = c.view;
      const words = batch.words;
      for (let i = 0; i < count * (SETTLE_ENTRY_BYTES / 4); i++) v.setU32(p + i * 4, words[i]!);
      return 1;
    }, undefined, false).then((codes) => {
      for (let i = 0; i < count; i++) {
        const code = codes[i] ?? 1;
        if (code === 0) batch.resolves[i]!();
        else batch.rejects[i]!(errorFromWire(code, code === 13 ? LEASE_ENDED_TEXT : ''));
      }
    }, (err: Error) => {
      const closed = err.message.startsWith('connection closed') || (err as TurboError).code === 'ERR_CONNECTION_CLOSED';
      for (const reject of batch.rejects) reject(closed ? new TurboError('ERR_LEASE_EXPIRED', 'the lease has ended: its connection closed', { cause: err }) : err);
    });
  }

  /** The connection closed: every queued settle fails, its lease ended with the connection. */
  closed(): void {
    const batch = this.#batch;
    this.#batch = newBatch();
    for (const reject of batch.rejects) reject(new TurboError('ERR_LEASE_EXPIRED', 'the lease has ended: its connection closed'));
  }
}
