// Load-generator drivers (src/cli/loadgen.ts) for the brokers bench/compare measures turbomq
// against (their servers: bench/compare/servers.ts). Each factory takes structured-cloneable
// arguments, so every client thread can make its own (a DriverSpec names the factory).
//
// - Redis (redis-server, ioredis): a topic is a list. Push = LPUSH (a batch is one LPUSH with
//   many values), pop = BRPOP, popMany = BLMPOP ... RIGHT COUNT n (Redis >= 7): both wait only
//   when the list is empty, like turbomq's pop.
// - NATS core (nats-server, nats.js): a topic is a subject; consumers subscribe to all of the
//   run's subjects in one queue group (each message goes to one of them). There is no ack:
//   a send publishes, then flush()es (one PING/PONG round trip) as the broker's answer.
//   Messages are pushed to consumers, so "pop" takes from what the subscription received.
// - NATS JetStream: a memory work-queue stream over the run's subjects, one durable pull
//   consumer shared by all consumers, explicit acks (each message acked when the load
//   generator takes it); publish awaits the stream's ack. Pulls either with consume() and
//   max_messages outstanding, or one next() per message.
// - RabbitMQ (rabbitmq-server, amqplib, noDelay): a topic is a classic queue; producers publish
//   on a confirm channel and await the confirms; consumers consume every queue of the run with
//   manual acks and a prefetch, and ack each message when the load generator takes it.

import { Redis } from 'ioredis';
import amqp from 'amqplib';
import {
  connect as natsConnect, AckPolicy, RetentionPolicy, StorageType,
  type NatsConnection, type JetStreamClient, type ConsumerMessages, type JsMsg,
} from 'nats';
import type { Driver, DriverSpec, ProducerConnection, ConsumerConnection, RunInfo } from '../../src/cli/loadgen.ts';

const here = import.meta.url;
/** A DriverSpec for one of this module's factories. */
export function spec(exportName: 'redisDriver' | 'natsDriver' | 'jetStreamDriver' | 'rabbitDriver', ...args: unknown[]): DriverSpec {
  return { module: here, exportName, args };
}

// ── Redis ──────────────────────────────────────────────────────────────────────────────

export function redisDriver(port: number): Driver {
  // Producers auto-pipeline: commands of one event-loop turn go out in one write, as with
  // turbomq's client. (Consumers have one request in flight, and ioredis's auto-pipelining
  // mangles callBuffer('BLMPOP', ...).)
  const open = (autoPipelining = false): Promise<Redis> => new Promise((resolve, reject) => {
    const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, enableAutoPipelining: autoPipelining });
    r.once('ready', () => resolve(r));
    r.once('error', reject);
  });
  return {
    name: 'Redis',
    async producer(): Promise<ProducerConnection> {
      const r = await open(true);
      return {
        async send(topic, items) {
          // ioredis sends Buffers as bytes (a plain Uint8Array would be stringified): wrap, no copy.
          const values = items.map((it) => Buffer.from(it.buffer, it.byteOffset, it.length));
          await r.lpush(`bench:${topic}`, ...values);
        },
        async close() { r.disconnect(); },
      };
    },
    async consumer(): Promise<ConsumerConnection> {
      const r = await open();
      return {
        async receive(topic, max, timeoutMs) {
          const key = `bench:${topic}`;
          const seconds = (timeoutMs / 1000).toFixed(3);
          if (max === 1) {
            const reply = await r.brpopBuffer(key, seconds);
            return reply === null ? [] : [reply[1]];
          }
          const reply = await r.callBuffer('BLMPOP', seconds, '1', key, 'RIGHT', 'COUNT', String(max)) as [Buffer, Buffer[]] | null;
          return reply === null ? [] : reply[1];
        },
        async close() { r.disconnect(); },
      };
    },
  };
}

// ── NATS ───────────────────────────────────────────────────────────────────────────────

/** A buffer of received messages that take() takes from, waiting up to its timeout. */
export class Inbox<T> {
  #items: T[] = [];
  #head = 0;
  #waiter: (() => void) | undefined;

  push(item: T): void {
    this.#items.push(item);
    const w = this.#waiter;
    if (w !== undefined) { this.#waiter = undefined; w(); }
  }

  async take(max: number, timeoutMs: number): Promise<T[]> {
    if (this.#head === this.#items.length) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(() => { this.#waiter = undefined; resolve(); }, timeoutMs);
      });
      clearTimeout(timer);
    }
    const n = Math.min(max, this.#items.length - this.#head);
    const out = this.#items.slice(this.#head, this.#head + n);
    this.#head += n;
    if (this.#head === this.#items.length) { this.#items = []; this.#head = 0; }
    return out;
  }
}

export function natsDriver(port: number): Driver {
  let prefix = '';
  const conns: NatsConnection[] = [];
  const open = async () => {
    const nc = await natsConnect({ servers: `127.0.0.1:${port}`, noEcho: true, maxReconnectAttempts: 0 });
    conns.push(nc);
    return nc;
  };
  return {
    name: 'NATS',
    async prepare(run) { prefix = `b${run.id}`; },
    async producer() {
      const nc = await open();
      return {
        async send(topic, items) {
          for (const it of items) nc.publish(`${prefix}.${topic}`, it);
          await nc.flush();
        },
        close: () => nc.close(),
      };
    },
    async consumer() {
      const nc = await open();
      const inbox = new Inbox<Uint8Array>();
      nc.subscribe(`${prefix}.*`, { queue: 'workers', callback: (err, m) => { if (err === null) inbox.push(m.data); } });
      await nc.flush(); // the subscription is known to the server before anyone publishes
      return {
        receive: (_topic, max, timeoutMs) => inbox.take(max, timeoutMs),
        close: () => nc.close(),
      };
    },
    async close() { await Promise.allSettled(conns.map((c) => c.close())); },
  };
}

export interface JetStreamOptions {
  /** 'consume': consume() with `maxMessages` pulled ahead (default); 'next': one pull request per message. */
  pull?: 'consume' | 'next';
  /** Messages consume() keeps outstanding per consumer. Default 1024. */
  maxMessages?: number;
}

export function jetStreamDriver(port: number, options: JetStreamOptions = {}): Driver {
  const pull = options.pull ?? 'consume';
  const maxMessages = options.maxMessages ?? 1024;
  let stream = '', prefix = '';
  let admin: NatsConnection | undefined;
  const open = () => natsConnect({ servers: `127.0.0.1:${port}`, maxReconnectAttempts: 0 });
  const names = (run: RunInfo) => { stream = `BENCH${run.id}`; prefix = `jb${run.id}`; };
  return {
    name: 'NATS JetStream',
    async setup(run) {
      names(run);
      admin ??= await open();
      const jsm = await admin.jetstreamManager();
      await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.Memory });
      await jsm.consumers.add(stream, { durable_name: 'workers', ack_policy: AckPolicy.Explicit, max_ack_pending: 100_000 });
    },
    async prepare(run) { names(run); },
    async teardown() {
      try {
        const jsm = await admin!.jetstreamManager();
        await jsm.streams.delete(stream);
      } catch { /* already gone */ }
    },
    async producer() {
      const nc = await open();
      const js: JetStreamClient = nc.jetstream();
      return {
        async send(topic, items) {
          const subject = `${prefix}.${topic}`;
          if (items.length === 1) await js.publish(subject, items[0]);
          else await Promise.all(items.map((it) => js.publish(subject, it)));
        },
        close: () => nc.close(),
      };
    },
    async consumer() {
      const nc = await open();
      const js = nc.jetstream();
      const consumer = await js.consumers.get(stream, 'workers');
      if (pull === 'next') {
        return {
          async receive(_topic, _max, timeoutMs) {
            // nats.js refuses pull expiries under 1 s; only the drain at the end waits that long.
            const m = await consumer.next({ expires: Math.max(1000, timeoutMs) });
            if (m === null) return [];
            m.ack();
            return [m.data];
          },
          close: () => nc.close(),
        };
      }
      const inbox = new Inbox<JsMsg>();
      const messages: ConsumerMessages = await consumer.consume({ max_messages: maxMessages, callback: (m) => inbox.push(m) });
      return {
        async receive(_topic, max, timeoutMs) {
          const ms = await inbox.take(max, timeoutMs);
          const out = new Array<Uint8Array>(ms.length);
          for (let i = 0; i < ms.length; i++) { ms[i]!.ack(); out[i] = ms[i]!.data; }
          return out;
        },
        async close() {
          await messages.close();
          await nc.close();
        },
      };
    },
    async close() {
      await admin?.close();
      admin = undefined;
    },
  };
}

// ── RabbitMQ ───────────────────────────────────────────────────────────────────────────

export interface RabbitOptions {
  /** Unacked messages the broker may send each consumer (basic.qos). Default 64. */
  prefetch?: number;
}

export function rabbitDriver(url: string, options: RabbitOptions = {}): Driver {
  const prefetch = options.prefetch ?? 64;
  let queues: string[] = [];
  let admin: amqp.ChannelModel | undefined;
  // Nagle would hold back every small frame (acks, single publishes) for a delayed ACK.
  const open = () => amqp.connect(url, { noDelay: true });
  const queueOf = new Map<string, string>();
  const names = (run: RunInfo) => {
    queueOf.clear();
    for (const t of run.topics) queueOf.set(t, `bench.${run.id}.${t}`);
    queues = [...queueOf.values()];
  };
  return {
    name: 'RabbitMQ',
    async setup(run) {
      names(run);
      admin ??= await open();
      const ch = await admin.createChannel();
      for (const q of queues) await ch.assertQueue(q, { durable: false, autoDelete: false });
      await ch.close();
    },
    async prepare(run) { names(run); },
    async teardown() {
      const ch = await admin!.createChannel();
      for (const q of queues) await ch.deleteQueue(q).catch(() => {});
      await ch.close().catch(() => {});
    },
    async producer(): Promise<ProducerConnection> {
      const conn = await open();
      const ch = await conn.createConfirmChannel();
      return {
        async send(topic, items) {
          const q = queueOf.get(topic)!;
          for (const it of items) ch.sendToQueue(q, Buffer.from(it.buffer, it.byteOffset, it.length));
          await ch.waitForConfirms();
        },
        close: () => conn.close(),
      };
    },
    async consumer(): Promise<ConsumerConnection> {
      const conn = await open();
      const ch = await conn.createChannel();
      await ch.prefetch(prefetch);
      const inbox = new Inbox<amqp.ConsumeMessage>();
      for (const q of queues) await ch.consume(q, (m) => { if (m !== null) inbox.push(m); }, { noAck: false });
      return {
        async receive(_topic, max, timeoutMs) {
          const ms = await inbox.take(max, timeoutMs);
          const out = new Array<Uint8Array>(ms.length);
          for (let i = 0; i < ms.length; i++) { ch.ack(ms[i]!); out[i] = ms[i]!.content; }
          return out;
        },
        close: () => conn.close(),
      };
    },
    async close() {
      await admin?.close().catch(() => {});
      admin = undefined;
    },
  };
}
