// Broker crash test: a real broker process (`turbomq serve --data-dir --fsync P`, 2 worker
// threads) is killed with SIGKILL at random moments, KILLS times per fsync policy, and
// restarted on the same directory and port, while producers and consumers in their own
// processes (durability-client.mjs) push, pop with leases and ack through it, reconnecting
// after every kill. Each reports what the broker acknowledged. At the end the topics are
// drained and every message is counted:
//   - every acknowledged push was consumed (its ack acknowledged) or is still there;
//   - nothing is there twice, nothing acknowledged as consumed is there or came again,
//     no push that was tried once is there twice (unacknowledged pushes may be missing);
//   - a producer that retries each push with a dedupId until it is acknowledged, across the
//     kills, has every push stored once (one message id), the dedupId windows surviving;
//   - FIFO per producer per topic: first deliveries and what is left are in push order.

import t from 'tap';
import type * as Tap from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TurboClient } from '../../src/index.ts';
import { listSegments, readBoot } from '../../src/storage/files.ts';
import { decodeSegmentHeader, SEGMENT_HEADER_BYTES } from '../../src/storage/format.ts';

const cli = fileURLToPath(new URL('../../build/js/cli/main.js', import.meta.url));
const clientScript = fileURLToPath(new URL('./durability-client.mjs', import.meta.url));
// 20 kills per policy, three policies and the deliveries test: about 2 to 3 minutes on two
// cores, more when CI runs another test file beside it.
t.setTimeout(420_000);

const KILLS = Number(process.env.CRASH_KILLS ?? 20);
const TOPICS = ['t0', 't1'];
const PRODUCERS = ['p0', 'p1'];
/** Retries each push until acknowledged, with a dedupId: must be stored once. */
const RETRIER = 'r0';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts the broker; resolves once it listens. */
function startBroker(dir: string, fsync: string, port: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'serve', '--data-dir', dir, '--fsync', fsync, '--threads', '2', '--listen', `tcp://127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`broker not listening in 30 s: ${err}`)); }, 30_000);
    child.stderr!.on('data', (d) => { err += d; });
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited (${code}) before listening: ${err}`));
    });
  });
}

/** The writer segments in `dir` written by a boot before `boot` (read from their headers). */
function segmentsOfEarlierBoots(dir: string, boot: number): string[] {
  const older: string[] = [];
  for (const s of listSegments(dir)) {
    if (s.kind !== 'w') continue;
    let fd: number | undefined;
    try {
      fd = fs.openSync(path.join(dir, s.name), 'r');
      const head = Buffer.alloc(SEGMENT_HEADER_BYTES);
      fs.readSync(fd, head, 0, head.length, 0);
      const header = decodeSegmentHeader(head);
      if (typeof header !== 'string' && header.boot < boot) older.push(s.name);
    } catch { /* deleted meanwhile */ } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }
  return older;
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

interface Worker {
  child: ChildProcess;
  lines: string[];
  done: Promise<void>;
}

function startClient(args: string[]): Worker {
  const child = spawn(process.execPath, [clientScript, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let rest = '';
  const done = new Promise<void>((resolve) => {
    child.stdout!.on('data', (d) => {
      const parts = (rest + d).split('\n');
      rest = parts.pop()!;
      for (const line of parts) {
        if (line === 'done') resolve();
        else lines.push(line);
      }
    });
    child.once('exit', () => resolve());
  });
  return { child, lines, done };
}

async function stopClient(w: Worker): Promise<void> {
  w.child.stdin!.write('stop\n');
  const timer = setTimeout(() => w.child.kill('SIGKILL'), 20_000);
  await w.done;
  clearTimeout(timer);
}

async function crashLoop(t: Tap.Test, fsync: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `turbomq-crash-${fsync}-`));
  t.teardown(() => { if (!process.env.CRASH_KEEP) fs.rmSync(dir, { recursive: true, force: true }); });
  const port = await freePort();
  const url = `tcp://127.0.0.1:${port}`;
  let broker = await startBroker(dir, fsync, port);
  const producers = [...PRODUCERS.map((p) => startClient(['producer', p, url, ...TOPICS])), startClient(['retrier', RETRIER, url, ...TOPICS])];
  const consumers = TOPICS.map((topic, i) => startClient(['consumer', `c${i}`, url, topic]));
  let kills = 0;
  for (; kills < KILLS; kills++) {
    // A random moment: from right after the start to well into the load - past the first
    // compaction pass (a second after recovery) in about half the runs.
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 900));
    await kill(broker);
    broker = await startBroker(dir, fsync, port);
  }
  await new Promise((r) => setTimeout(r, 300));
  await Promise.all(producers.map(stopClient));
  await Promise.all(consumers.map(stopClient));

  // Whatever is left, drained by one plain consumer: in order, each once.
  const left = new Map<string, string[]>();
  const leftIds: [string, string][] = [];
  const client = await TurboClient.connect(url);
  const queue = client.getQueue('crash');
  for (const topic of TOPICS) {
    const stats = await queue.stats(topic);
    t.equal(stats.inFlight, 0, `${topic}: nothing in flight once the consumers closed`);
    const all: string[] = [];
    for (;;) {
      const batch = await queue.popMany(topic, 1000, 0);
      if (batch.length === 0) break;
      for (const m of batch) {
        all.push(m.content);
        leftIds.push([`${topic} ${m.content}`, m.id]);
      }
    }
    left.set(topic, all);
  }
  await client.close();
  // Drained, so every segment the killed brokers left is dead: compaction must get past their
  // unsealed ends (preallocated zeros) and give them back, not wait for a clean restart.
  const boot = readBoot(dir);
  let older = segmentsOfEarlierBoots(dir, boot);
  const drainedAt = Date.now();
  while (older.length > 0 && Date.now() - drainedAt < 20_000) {
    await new Promise((r) => setTimeout(r, 250));
    older = segmentsOfEarlierBoots(dir, boot);
  }
  t.same(older, [], `drained: the killed brokers' segments are given back (${((Date.now() - drainedAt) / 1000).toFixed(1)} s)`);
  await kill(broker);

  // Tally.
  const pushed = new Set<string>();       // "topic data" acknowledged pushes
  for (const [i, p] of producers.entries()) {
    for (const line of p.lines) {
      const [kind, topic, seq] = line.split(' ');
      if (kind === 'P') pushed.add(`${topic} ${[...PRODUCERS, RETRIER][i]}:${seq}`);
    }
  }
  const consumed = new Map<string, number>(); // acks acknowledged, per message
  // The message ids each pushed data was stored under (deliveries and what is left): a push
  // retried with its dedupId must have one.
  const copies = new Map<string, Set<string>>();
  const storedAs = (key: string, messageId: string) => {
    let ids = copies.get(key);
    if (ids === undefined) copies.set(key, ids = new Set());
    ids.add(messageId);
  };
  const delivered = new Set<string>();
  let deliveries = 0, redeliveredAfterAck = 0, fifoBreaks = 0;
  for (const c of consumers) {
    const firstSeen = new Set<string>();
    const lastSeq = new Map<string, number>();
    for (const line of c.lines) {
      const [kind, topic, data, messageId] = line.split(' ') as [string, string, string, string];
      const key = `${topic} ${data}`;
      if (kind === 'D') {
        deliveries++;
        storedAs(key, messageId);
        delivered.add(key);
        if (consumed.has(key)) redeliveredAfterAck++;
        if (!firstSeen.has(key)) {
          firstSeen.add(key);
          const [producer, seq] = data.split(':') as [string, string];
          const last = lastSeq.get(`${topic} ${producer}`) ?? -1;
          if (Number(seq) <= last) fifoBreaks++;
          lastSeq.set(`${topic} ${producer}`, Number(seq));
        }
      } else if (kind === 'A') {
        consumed.set(key, (consumed.get(key) ?? 0) + 1);
      }
    }
  }
  for (const [key, messageId] of leftIds) storedAs(key, messageId);
  const retried = [...pushed].filter((k) => k.split(' ')[1]!.startsWith(`${RETRIER}:`));
  const storedTwice = [...copies].filter(([k, ids]) => k.split(' ')[1]!.startsWith(`${RETRIER}:`) && ids.size > 1).map(([k, ids]) => `${k} as ${[...ids].join(', ')}`);
  const remaining = new Map<string, number>();
  let leftFifoBreaks = 0;
  for (const [topic, all] of left) {
    const lastSeq = new Map<string, number>();
    for (const data of all) {
      const key = `${topic} ${data}`;
      remaining.set(key, (remaining.get(key) ?? 0) + 1);
      const [producer, seq] = data.split(':') as [string, string];
      if (Number(seq) <= (lastSeq.get(producer) ?? -1)) leftFifoBreaks++;
      lastSeq.set(producer, Number(seq));
    }
  }
  // An ack the broker took but could not answer before it died is not acknowledged, yet the
  // message is gone: the only way an acknowledged push may be missing.
  const gone = [...pushed].filter((k) => !consumed.has(k) && !remaining.has(k));
  const missing = gone.filter((k) => !delivered.has(k));
  const twiceConsumed = [...consumed].filter(([, n]) => n > 1).map(([k]) => k);
  const consumedAndLeft = [...consumed.keys()].filter((k) => remaining.has(k));
  const leftTwice = [...remaining].filter(([, n]) => n > 1).map(([k]) => k);
  t.comment(`fsync ${fsync}: ${kills} kills; ${pushed.size} pushes acknowledged, ${deliveries} deliveries, ${consumed.size} acked, ${[...remaining.values()].reduce((a, b) => a + b, 0)} left, ${gone.length} consumed by an ack whose answer the kill cut off`);
  t.ok(pushed.size > 100 * KILLS / 20, 'the producers got pushes through between the kills');
  t.ok(consumed.size > 0, 'the consumers acked messages');
  t.same(missing.slice(0, 5), [], `no acknowledged push is missing (${missing.length}), except consumed ones`);
  if (missing.length > 0 && process.env.CRASH_KEEP) t.comment(`dir ${dir} missing: ${missing.join(', ')}`);
  t.ok(retried.length > 20 * KILLS / 20, `the retrying producer got ${retried.length} pushes through`);
  t.same(storedTwice.slice(0, 5), [], `a push retried with its dedupId across the kills was stored once (${storedTwice.length} twice)`);
  t.same(twiceConsumed.slice(0, 5), [], 'no message acked twice');
  t.same(consumedAndLeft.slice(0, 5), [], 'nothing acked is still there');
  t.same(leftTwice.slice(0, 5), [], 'nothing is there twice');
  t.equal(redeliveredAfterAck, 0, 'nothing was delivered again after its ack was acknowledged');
  t.equal(fifoBreaks, 0, 'first deliveries in push order per producer per topic');
  t.equal(leftFifoBreaks, 0, 'what is left is in push order per producer per topic');
}

for (const fsync of ['everysec', 'always', 'no']) {
  t.test(`fsync ${fsync}: the broker is killed ${KILLS} times under load and nothing acknowledged is lost or duplicated`, (t) => crashLoop(t, fsync));
}

t.test('a leased delivery counts across kill -9: deliveries go on from where they were, and maxDeliveries holds', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-crash-deliveries-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const url = `tcp://127.0.0.1:${port}`;
  let broker = await startBroker(dir, 'everysec', port);
  t.teardown(() => kill(broker));
  let client = await TurboClient.connect(url);
  await client.getQueue('jobs').configure({ maxDeliveries: 3, deadLetterTopic: 'dead', leaseMs: 60_000 });
  await client.getQueue('jobs').pushMany('t', ['poison', 'other']);
  const seen: number[] = [];
  for (let round = 0; round < 3; round++) {
    // A consumer takes the message and the broker dies with the lease open (no nack, no expiry).
    const [m] = await client.getQueue('jobs').popMany('t', 1, { ack: true });
    t.equal(m!.content, 'poison');
    seen.push(m!.deliveries);
    await client.close().catch(() => {});
    await kill(broker);
    broker = await startBroker(dir, 'everysec', port);
    client = await TurboClient.connect(url);
  }
  t.same(seen, [1, 2, 3], 'each delivery cut off by a crash was counted');
  // The third lease was open at the kill: the message came back with 3 deliveries, the queue's
  // maxDeliveries. Its next lease end (here an expiry) dead-letters it.
  const q = client.getQueue('jobs');
  const again = await q.pop('t', { ack: true, leaseMs: 100 });
  t.equal(again!.content, 'poison');
  t.equal(again!.deliveries, 4);
  const dead = await q.pop('dead', 3000);
  t.match(dead?.content, /poison$/, 'dead-lettered once maxDeliveries was reached');
  t.equal((await q.pop('t', 0))?.content, 'other', 'the other message was never delivered');
  await client.close();
});
