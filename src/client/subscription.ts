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

import type { Connection } from './connection.ts';
import type { Message, Subscription } from './queue.ts';
import type { ClientMessage } from './message.ts';
import type { TurboError } from '../errors.ts';
import { SUBSCRIBE_ACK } from '../protocol.ts';

export class ClientSubscription implements Subscription {
  readonly id: number;
  readonly queue: string;
  readonly topic: string;
  readonly #conn: Connection;
  readonly #queueBytes: Uint8Array;
  readonly #topicBytes: Uint8Array;
  readonly #prefetch: number;
  readonly #ack: boolean;
  readonly #buffer: Message[] = [];
  #head = 0;
  #consumed = 0;
  #waiting: { resolve(r: IteratorResult<Message>): void; reject(e: Error): void } | undefined;
  #closed = false;
  #error: Error | undefined;
  #started: Promise<void>;
  #closing: Promise<void> | undefined;

  constructor(conn: Connection, queue: string, queueBytes: Uint8Array, topic: string, topicBytes: Uint8Array, prefetch: number, flags: number, leaseMs: number) {
    this.#conn = conn;
    this.queue = queue;
    this.topic = topic;
    this.#queueBytes = queueBytes;
    this.#topicBytes = topicBytes;
    this.#prefetch = prefetch;
    this.#ack = (flags & SUBSCRIBE_ACK) !== 0;
    conn.writeNames(queueBytes, topicBytes);
    let id = 0;
    this.#started = conn.request<void>('subscribe', queue, topic, (rid) => {
      id = rid;
      return conn.e.encodeSubscribe(conn.writer, rid, conn.scratchQueue, queueBytes.length, conn.scratchTopic, topicBytes.length, prefetch, flags, leaseMs);
    });
    this.id = id;
    conn.registerSubscription(this);
    this.#started.catch((err: Error) => this.fail(err));
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
    this.#conn.unregisterSubscription(this.id);
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
