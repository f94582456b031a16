// Delivered messages and settling their leases (ack, nack, extend, reject).
//
// A message is built per delivered record with no copy of its data (a view of the reply's
// one copy) and its text decoded only when `content` is read. A leased message (popped
// with ack: true, or from an ack:true subscription) carries its lease handle; settling it
// queues an entry on its connection's Settler, and every entry queued in one tick goes in
// one SETTLE frame (users ack one by one; the wire sees a batch), answered by one status
// per entry.

import { TurboError, errorFromWire } from '../errors.ts';
import { SettleKind, SETTLE_ENTRY_BYTES, DEAD_LETTER_REASONS, META_DELIVERIES_MASK } from '../protocol.ts';
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
  readonly data: Uint8Array;
  readonly deliveries: number;
  readonly deadLetter?: DeadLetterInfo;
  readonly #idLo: number;
  readonly #idHi: number;
  /** The stored record's meta word (deliveries and flags), for returning it as it came. */
  readonly meta: number;
  /** The record's payload as the broker stores it (data, after a dead-letter prefix if any). */
  readonly payload: Uint8Array;
  #utf8: Utf8Ranges | undefined;
  readonly #start: number;
  #content: string | undefined;
  /** Leased: the connection and the handle; undefined for a message popped without ack. */
  readonly #conn: Connection | undefined;
  readonly #leaseLo: number;
  readonly #leaseHi: number;
  #ended = false;

  constructor(
    queue: string, topic: string, payload: Uint8Array, dataStart: number, utf8: Utf8Ranges, start: number,
    meta: number, idLo: number, idHi: number, conn: Connection | undefined, leaseLo: number, leaseHi: number, deadLetter: DeadLetterInfo | undefined,
  ) {
    this.queue = queue;
    this.topic = topic;
    this.payload = payload;
    this.data = dataStart === 0 ? payload : payload.subarray(dataStart);
    this.#utf8 = utf8;
    this.#start = start + dataStart;
    this.meta = meta;
    this.deliveries = meta & META_DELIVERIES_MASK;
    this.#idLo = idLo;
    this.#idHi = idHi;
    this.#conn = conn;
    this.#leaseLo = leaseLo;
    this.#leaseHi = leaseHi;
    if (deadLetter !== undefined) this.deadLetter = deadLetter;
  }

  get content(): string {
    if (this.#content === undefined) {
      this.#content = this.#utf8!(this.#start, this.#start + this.data.length);
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

  ack(): Promise<void> {
    if (this.#conn === undefined) return Promise.resolve();
    return this.#settle(SettleKind.ACK, 0, true);
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
    return this.#leased('nack') ?? this.#settle(SettleKind.NACK, delayMs, true);
  }

  extend(leaseMs?: number): Promise<void> {
    if (leaseMs !== undefined && (typeof leaseMs !== 'number' || !(leaseMs > 0) || leaseMs > 0xFFFFFFFE)) {
      return Promise.reject(invalid(`leaseMs must be a positive number of ms, got ${String(leaseMs)}`));
    }
    return this.#leased('extend') ?? this.#settle(SettleKind.EXTEND, leaseMs === undefined ? 0 : Math.ceil(leaseMs), false);
  }

  reject(reason?: string): Promise<void> {
    if (reason !== undefined && typeof reason !== 'string') return Promise.reject(invalid('reason must be a string'));
    return this.#leased('reject') ?? this.#settle(SettleKind.REJECT, 0, true);
  }

  /** A rejection when this message has no lease (popped without ack: true), else undefined. */
  #leased(what: string): Promise<void> | undefined {
    if (this.#conn !== undefined) return undefined;
    return Promise.reject(invalid(`${what}() needs a message popped with ack: true`));
  }

  #settle(kind: number, arg: number, ends: boolean): Promise<void> {
    const conn = this.#conn!;
    // Settled already, or the connection (and with it every lease) is gone: the lease
    // ended, and the message may be with another consumer by now.
    if (this.#ended || conn.closed) return Promise.reject(new TurboError('ERR_LEASE_EXPIRED', 'the lease has ended (settled already, expired, or its connection closed)'));
    if (ends) this.#ended = true;
    return conn.settler.add(this.#leaseLo, this.#leaseHi, kind, arg);
  }
}

function invalid(message: string): TurboError {
  return new TurboError('ERR_INVALID_ARGUMENT', message);
}

/** Reads the dead-letter prefix of a record's payload: [u8 reason][u8 topicLength][topic]. */
export function deadLetterOf(payload: Uint8Array, utf8: Utf8Ranges, start: number): { info: DeadLetterInfo; dataStart: number } {
  const topicLength = payload[1]!;
  const reason = DEAD_LETTER_REASONS[payload[0] as 1 | 2] ?? 'rejected';
  return { info: { topic: utf8(start + 2, start + 2 + topicLength), reason }, dataStart: 2 + topicLength };
}

interface SettleEntry { lo: number; hi: number; kind: number; arg: number; resolve(): void; reject(err: Error): void }

/**
 * One connection's pending settles: collected during a tick, encoded as one SETTLE frame
 * when the connection flushes, each resolved or rejected by its status in SETTLED.
 */
export class Settler {
  readonly #conn: Connection;
  #entries: SettleEntry[] = [];

  constructor(conn: Connection) {
    this.#conn = conn;
  }

  add(lo: number, hi: number, kind: number, arg: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#entries.push({ lo, hi, kind, arg, resolve, reject });
      this.#conn.scheduleFlush();
    });
  }

  /** Encodes what was queued as one SETTLE request (called by the connection before it writes). */
  flush(): void {
    const entries = this.#entries;
    if (entries.length === 0) return;
    this.#entries = [];
    const c = this.#conn;
    c.request<Uint8Array>('settle', '', '', (id) => {
      const p = c.e.encodeSettle(c.writer, id, entries.length);
      if (p === 0) return 0;
      const v = c.view;
      for (let i = 0; i < entries.length; i++) {
        const at = p + i * SETTLE_ENTRY_BYTES;
        const entry = entries[i]!;
        v.setU32(at, entry.lo);
        v.setU32(at + 4, entry.hi);
        v.setU32(at + 8, entry.kind);
        v.setU32(at + 12, entry.arg);
      }
      return 1;
    }, undefined, false).then((codes) => {
      for (let i = 0; i < entries.length; i++) {
        const code = codes[i] ?? 1;
        if (code === 0) entries[i]!.resolve();
        else entries[i]!.reject(errorFromWire(code, code === 13 ? 'the lease has ended (expired, or its message was settled or returned)' : ''));
      }
    }, (err: Error) => {
      for (const entry of entries) entry.reject(err.message.startsWith('connection closed') || (err as TurboError).code === 'ERR_CONNECTION_CLOSED'
        ? new TurboError('ERR_LEASE_EXPIRED', 'the lease has ended: its connection closed', { cause: err })
        : err);
    });
  }

  /** The connection closed: every queued settle fails, its lease ended with the connection. */
  closed(): void {
    const entries = this.#entries;
    this.#entries = [];
    for (const entry of entries) entry.reject(new TurboError('ERR_LEASE_EXPIRED', 'the lease has ended: its connection closed'));
  }
}
