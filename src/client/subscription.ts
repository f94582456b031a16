// A subscription: an async iterator over delivered messages.
//
// Plain subscriptions: flow control is credit based - the broker sends at most `prefetch`
// messages ahead; consumed messages are credited back in batches of prefetch/2. On close,
// every message received but not consumed (buffered, plus those that arrive before the
// broker confirms UNSUBSCRIBE) goes back to the front of the topic in one RETURN, in
// order, and close() resolves only once the broker has put them back - so a pop right
// after close() never sees a later message first.
//
// ack:true subscriptions: every delivery is leased. The broker keeps at most `prefetch`
// unacked messages out and sends the next when one is settled; no CREDIT is sent. On close
// the broker ends the subscription's leases (back to the front, in order) before it
// answers UNSUBSCRIBE; buffered messages are simply dropped here (their leases ended).
//
// With reconnect, a subscription outlives its connection's transports: when one is lost it
// subscribes again on the next, with the same options, under a new id (the id is the
// SUBSCRIBE's request id). Messages a plain subscription had buffered are still consumed (they
// were taken from the topic for it); an ack:true one drops its buffer, as those leases ended
// with the transport. `ready` is the first subscription's answer; a later refusal (another
// consumer took an exclusive topic meanwhile) ends the subscription with that error.

import type { Connection } from './connection.ts';
import type { Message, Subscription } from './queue.ts';
import type { ClientMessage } from './message.ts';
import type { TurboError } from '../errors.ts';
import { SUBSCRIBE_ACK } from '../protocol.ts';

export class ClientSubscription implements Subscription {
  /** The current SUBSCRIBE's request id (0 while waiting for the connection). */
  id = 0;
  readonly queue: string;
  readonly topic: string;
  readonly #conn: Connection;
  readonly #queueBytes: Uint8Array;
  readonly #topicBytes: Uint8Array;
  readonly #prefetch: number;
  readonly #flags: number;
  readonly #leaseMs: number;
  readonly #ack: boolean;
  readonly #buffer: Message[] = [];
  #head = 0;
  #consumed = 0;
  #waiting: { resolve(r: IteratorResult<Message>): void; reject(e: Error): void } | undefined;
  #closed = false;
  #error: Error | undefined;
  /** `ready`: settled by the first answer to a SUBSCRIBE. */
  readonly #started: Promise<void>;
  #resolveStarted!: () => void;
  #rejectStarted!: (err: Error) => void;
  /** The SUBSCRIBE on the current transport; undefined while waiting for one. */
  #current: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(conn: Connection, queue: string, queueBytes: Uint8Array, topic: string, topicBytes: Uint8Array, prefetch: number, flags: number, leaseMs: number) {
    this.#conn = conn;
    this.queue = queue;
    this.topic = topic;
    this.#queueBytes = queueBytes;
    this.#topicBytes = topicBytes;
    this.#prefetch = prefetch;
    this.#flags = flags;
    this.#leaseMs = leaseMs;
    this.#ack = (flags & SUBSCRIBE_ACK) !== 0;
    this.#started = new Promise((resolve, reject) => { this.#resolveStarted = resolve; this.#rejectStarted = reject; });
    this.#started.catch(() => {}); // read through `ready` or the iterator
    if (conn.isOpen) this.#subscribe();
    else conn.addSubscription(this); // reconnecting: subscribes once the connection is back
  }

  /** Sends SUBSCRIBE on the current transport. */
  #subscribe(): void {
    const conn = this.#conn;
    const queueBytes = this.#queueBytes, topicBytes = this.#topicBytes;
    conn.writeNames(queueBytes, topicBytes);
    let id = 0;
    const current = conn.request<void>('subscribe', this.queue, this.topic, (rid) => {
      id = rid;
      return conn.e.encodeSubscribe(conn.writer, rid, conn.scratchQueue, queueBytes.length, conn.scratchTopic, topicBytes.length, this.#prefetch, this.#flags, this.#leaseMs);
    });
    this.id = id;
    this.#current = current;
    conn.registerSubscription(this, id);
    current.then(() => this.#resolveStarted(), (err: Error) => {
      // Lost with its transport: it subscribes again on the next one.
      if (conn.reconnects && !conn.closed && (err as TurboError).code === 'ERR_CONNECTION_CLOSED') return;
      this.#rejectStarted(err);
      this.fail(err);
    });
  }

  /** The connection lost its transport: forget the old id; ack:true deliveries buffered ended with it. */
  connectionLost(): void {
    this.#conn.unrouteSubscription(this.id);
    this.#current = undefined;
    this.#consumed = 0;
    if (this.#ack) {
      this.#buffer.length = 0;
      this.#head = 0;
    }
  }

  /** The connection is back: subscribe again, with the same options. */
  resubscribe(): void {
    if (this.#closed) {
      this.#conn.unregisterSubscription(this, this.id);
      return;
    }
    this.#subscribe();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get ready(): Promise<void> {
    return this.#started;
  }

  deliver(messages: Message[]): void {
    if (this.#closed) {
      // Closing: these were sent before the broker saw UNSUBSCRIBE. Newer than everything
      // buffered, so they join the buffer's end and go back with it, in order.
      if (!this.#ack) for (const m of messages) this.#buffer.push(m);
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
    if (this.#ack) return; // the broker counts unacked leases itself
    this.#consumed++;
    if (this.#consumed >= Math.max(1, this.#prefetch >> 1)) {
      const credit = this.#consumed;
      this.#consumed = 0;
      const c = this.#conn;
      c.send((id) => c.e.encodeCredit(c.writer, id, this.id, credit));
    }
  }

  fail(err: Error): void {
    if (this.#error === undefined) this.#error = err;
    this.#closed = true;
    this.#conn.unregisterSubscription(this, this.id);
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
    if (this.#head < this.#buffer.length && this.#closing === undefined) {
      const m = this.#buffer[this.#head++]!;
      if (this.#head > 1024 && this.#head * 2 > this.#buffer.length) {
        this.#buffer.splice(0, this.#head);
        this.#head = 0;
      }
      this.#consume();
      return Promise.resolve({ value: m, done: false });
    }
    if (this.#closed) {
      if (this.#error !== undefined && this.#closing === undefined) return Promise.reject(this.#error);
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

  /** Ends the subscription; unconsumed (and unacked) messages go back to the front of the topic. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const c = this.#conn;
    const wasClosed = this.#closed;
    this.#closed = true;
    this.#wakeEnd();
    if (wasClosed || c.closed) return;
    const current = this.#current;
    if (current === undefined) {
      // Reconnecting: the broker's side ended with the lost transport.
      c.unregisterSubscription(this, this.id);
      return;
    }
    try {
      await current;
    } catch {
      c.unregisterSubscription(this, this.id);
      return; // the broker refused it, or its transport was lost: there is nothing to end
    }
    if (this.#current !== current) {
      c.unregisterSubscription(this, this.id);
      return; // lost meanwhile
    }
    const id = this.id;
    try {
      await c.request<void>('ok', this.queue, this.topic, (rid) => c.e.encodeUnsubscribe(c.writer, rid, id));
    } catch (err) {
      if ((err as TurboError).code === 'ERR_CONNECTION_CLOSED') return;
      throw err;
    } finally {
      c.unregisterSubscription(this, id);
    }
    // Everything delivered before the OK is in the buffer now, oldest first.
    const rest = this.#buffer.slice(this.#head) as ClientMessage[];
    this.#buffer.length = 0;
    this.#head = 0;
    if (!this.#ack) await this.#returnMessages(rest);
  }

  /**
   * RETURN: the messages back at the front of the topic, as the broker stored them. Frames
   * of at most maxFrameBytes, newest batch first: each RETURN goes to the front, so the
   * oldest batch, sent last, ends up first and the order is kept.
   */
  async #returnMessages(messages: ClientMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const c = this.#conn;
    if (c.closed) return;
    const budget = c.maxFrameBytes - 12 - 2 * 256 - 8;
    const batches: [number, number][] = [];
    for (let i = 0; i < messages.length;) {
      let bytes = 0, end = i;
      while (end < messages.length && (end === i || bytes + 16 + messages[end]!.payload.length <= budget)) bytes += 16 + messages[end++]!.payload.length;
      batches.push([i, end]);
      i = end;
    }
    const frames: Promise<void>[] = [];
    for (let b = batches.length - 1; b >= 0; b--) {
      const [from, to] = batches[b]!;
      c.writeNames(this.#queueBytes, this.#topicBytes);
      frames.push(c.request<void>('ok', this.queue, this.topic, (id) => {
        const e = c.e;
        const mark = e.encodeReturnBegin(c.writer, id, c.scratchQueue, this.#queueBytes.length, c.scratchTopic, this.#topicBytes.length);
        if (mark < 0) return 0;
        for (let k = from; k < to; k++) {
          const m = messages[k]!;
          const at = e.encodeStoredRecord(c.writer, m.payload.length, m.meta, m.idLo, m.idHi);
          if (at === 0) { e.writerTruncate(c.writer, mark); return 0; }
          c.view.write(at, m.payload);
        }
        e.encodeRecordsEnd(c.writer, mark, to - from);
        return 1;
      }));
    }
    await Promise.all(frames);
  }
}
