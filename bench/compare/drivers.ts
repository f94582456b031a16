// Load-generator drivers (src/cli/loadgen.ts) for the brokers bench/compare measures turbomq
// against, and the code that starts and stops their servers on free loopback ports.
//
// - Redis (redis-server from the OS, ioredis): a topic is a list. Push = LPUSH (a batch is one
//   LPUSH with many values), pop = BRPOP, popMany = BLMPOP ... RIGHT COUNT n (Redis >= 7):
//   both wait only when the list is empty, like turbomq's pop.
// - NATS core (nats-server, nats.js): a topic is a subject; consumers subscribe to all of the
//   run's subjects in one queue group (each message goes to one of them). There is no ack:
//   a send publishes, then flush()es (one PING/PONG round trip) as the broker's answer.
//   Messages are pushed to consumers, so "pop" takes from what the subscription received.
// - NATS JetStream: a memory work-queue stream over the run's subjects, one durable pull
//   consumer shared by all consumers (consume() with explicit acks); publish awaits the
//   stream's ack.

import net from 'node:net';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import {
  connect as natsConnect, AckPolicy, RetentionPolicy, StorageType,
  type NatsConnection, type JetStreamClient, type ConsumerMessages,
} from 'nats';
import type { Driver, ProducerConnection, ConsumerConnection } from '../../src/cli/loadgen.ts';

// ── servers ────────────────────────────────────────────────────────────────────────────

export interface Server {
  port: number;
  version: string;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/usr/local/bin'])) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

async function waitForPort(port: number, child: ChildProcess, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => { clearTimeout(force); resolve(); });
    child.kill('SIGTERM');
  });
}

/** Children we started, killed if this process exits early. */
const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

export const INSTALL_HINT = {
  redis: 'Redis is not installed: on Debian/Ubuntu `sudo apt-get install redis-server` (the benchmark starts its own instance; the system service is not needed)',
  nats: 'nats-server is not installed: on Debian/Ubuntu `sudo apt-get install nats-server` (the benchmark starts its own instance)',
};

/** A private redis-server on a free loopback port, no persistence. Undefined if not installed. */
export async function startRedis(): Promise<Server | undefined> {
  const bin = which('redis-server');
  if (bin === undefined) return undefined;
  const port = await freePort();
  const version = /v=(\S+)/.exec(execFileSync(bin, ['--version']).toString())?.[1] ?? '?';
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--logfile', ''], { stdio: 'ignore' });
  children.add(child);
  await waitForPort(port, child, 'redis-server');
  return { port, version, stop: async () => { await stopChild(child); children.delete(child); } };
}

/** A private nats-server with JetStream (memory and a temporary store dir). Undefined if not installed. */
export async function startNats(): Promise<Server | undefined> {
  const bin = which('nats-server');
  if (bin === undefined) return undefined;
  const port = await freePort();
  const version = /v?(\d+\.\d+\.\d+)/.exec(execFileSync(bin, ['--version']).toString())?.[1] ?? '?';
  const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-bench-nats-'));
  const child = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: 'ignore' });
  children.add(child);
  await waitForPort(port, child, 'nats-server');
  return {
    port, version,
    stop: async () => {
      await stopChild(child);
      children.delete(child);
      fs.rmSync(storeDir, { recursive: true, force: true });
    },
  };
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

/** A buffer of received messages that receive() takes from, waiting up to its timeout. */
class Inbox {
  #items: Uint8Array[] = [];
  #head = 0;
  #waiter: (() => void) | undefined;

  push(data: Uint8Array): void {
    this.#items.push(data);
    const w = this.#waiter;
    if (w !== undefined) { this.#waiter = undefined; w(); }
  }

  async take(max: number, timeoutMs: number): Promise<Uint8Array[]> {
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

let natsRun = 0;

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
    async prepare() { prefix = `b${++natsRun}`; },
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
      const inbox = new Inbox();
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

export function jetStreamDriver(port: number): Driver {
  let stream = '', prefix = '';
  let admin: NatsConnection | undefined;
  const open = () => natsConnect({ servers: `127.0.0.1:${port}`, maxReconnectAttempts: 0 });
  return {
    name: 'NATS JetStream',
    async prepare() {
      const n = ++natsRun;
      stream = `BENCH${n}`;
      prefix = `jb${n}`;
      admin ??= await open();
      const jsm = await admin.jetstreamManager();
      await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.Memory });
      await jsm.consumers.add(stream, { durable_name: 'workers', ack_policy: AckPolicy.Explicit, max_ack_pending: 100_000 });
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
      const inbox = new Inbox();
      const messages: ConsumerMessages = await consumer.consume({
        max_messages: 1024,
        callback: (m) => { m.ack(); inbox.push(m.data); },
      });
      return {
        receive: (_topic, max, timeoutMs) => inbox.take(max, timeoutMs),
        async close() {
          await messages.close();
          await nc.close();
        },
      };
    },
    async close() {
      if (admin === undefined) return;
      try {
        const jsm = await admin.jetstreamManager();
        await jsm.streams.delete(stream);
      } catch { /* already gone */ }
      await admin.close();
      admin = undefined;
    },
  };
}
