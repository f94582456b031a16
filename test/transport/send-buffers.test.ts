// src/transport/send-buffers.ts: every send arrives as it was at the call, though the caller
// overwrites its bytes at once and the pool reuses buffers; a buffer is reused only after its
// write was called back, also while the reader is slow and writes queue up. And the client
// over a plain socket (which reads into one reused buffer, tcp.ts) keeps each popped
// message's bytes after later reads: its data, and the id, meta word and lease handle a
// message reads from its record only when asked (src/client/message.ts).

import t, { type Test } from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { SendBuffers, slabStats } from '../../src/transport/send-buffers.ts';
import { TurboClient } from '../../src/index.ts';
import { startEngine } from '../helpers.ts';

async function socketPair(t: Test): Promise<{ writer: net.Socket; reader: net.Socket }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const writer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(writer, 'connect');
  const [reader] = await accepted as [net.Socket];
  t.teardown(() => { writer.destroy(); reader.destroy(); server.close(); });
  return { writer, reader };
}

/** Sizes on every path: on-heap copies, slab pieces (several per slab), exact copies. */
const SIZES = [1, 64, 65, 1000, 20_000, 262_144, 262_145, 100_000];

function fill(bytes: Uint8Array, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed * 31 + i * 7) & 0xff;
}

async function sendAndCheck(t: Test, pauseReader: boolean, scratch: Uint8Array): Promise<void> {
  const { writer, reader } = await socketPair(t);
  const sends = new SendBuffers(writer);
  const expected: number[] = [];
  let total = 0;
  const received: Buffer[] = [];
  let got = 0;
  reader.on('data', (chunk: Buffer) => { received.push(chunk); got += chunk.length; });
  if (pauseReader) reader.pause();
  for (let k = 0; k < 400; k++) {
    const n = SIZES[k % SIZES.length]!;
    const view = scratch.subarray(0, n);
    fill(view, k);
    sends.send(view);
    scratch.fill(0xee); // the caller overwrites at once
    expected.push(n);
    total += n;
  }
  if (pauseReader) {
    t.ok(writer.writableLength > 0, 'writes queued behind the paused reader');
    reader.resume();
  }
  while (got < total) await once(reader, 'data');
  const all = Buffer.concat(received);
  t.equal(all.length, total, 'every byte arrived');
  let at = 0, bad = 0;
  const want = new Uint8Array(512 * 1024);
  for (let k = 0; k < expected.length; k++) {
    const n = expected[k]!;
    fill(want.subarray(0, n), k);
    if (Buffer.compare(all.subarray(at, at + n), want.subarray(0, n)) !== 0) bad++;
    at += n;
  }
  t.equal(bad, 0, 'each send arrived as it was at the call');
}

// One scratch area the "caller" reuses for every send, as the client's writer is; a Buffer
// too (whose slice() is a view, not a copy).
t.test('sends arrive intact though the caller reuses its bytes', (t) => sendAndCheck(t, false, new Uint8Array(512 * 1024)));
t.test('and while a slow reader leaves the writes queued', (t) => sendAndCheck(t, true, new Uint8Array(512 * 1024)));
t.test('from a Buffer as well', (t) => sendAndCheck(t, true, Buffer.alloc(512 * 1024)));

t.test('popped messages keep their bytes after later reads into the same buffer', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  const client = await TurboClient.connect(engine.url);
  t.teardown(() => client.close());
  const q = client.getQueue('reads');
  const N = 5000;
  const payload = (i: number) => `message ${i} `.padEnd(40 + (i % 50), String.fromCharCode(97 + (i % 26)));
  for (let i = 0; i < N; i += 500) await q.pushMany('t', Array.from({ length: 500 }, (_, k) => payload(i + k)));
  // Hold every message without reading it, across many reads, then read them all.
  const held = [];
  for (;;) {
    const batch = await q.popMany('t', 64, 0);
    if (batch.length === 0) break;
    held.push(...batch);
  }
  t.equal(held.length, N);
  let bad = 0;
  for (let i = 0; i < N; i++) if (held[i]!.content !== payload(i)) bad++;
  t.equal(bad, 0, 'every held message reads as it was pushed');
  // A message reads its id and meta word from its record when asked (message.ts): they too
  // must hold after later reads.
  t.same(held.map((m) => m.id), Array.from({ length: N }, (_, i) => String(i)), 'ids read as assigned, in order');
  t.ok(held.every((m) => m.deliveries === 1 && m.deadLetter === undefined && m.queue === 'reads' && m.topic === 't'), 'deliveries, queue and topic as delivered');
});

t.test('leased messages held across later reads settle with their own lease handles', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  const client = await TurboClient.connect(engine.url);
  t.teardown(() => client.close());
  const q = client.getQueue('leased-reads');
  const N = 2000;
  // First 777 leased and acked, so ids and lease handles no longer line up.
  await q.pushMany('t', Array.from({ length: 777 }, (_, k) => `early ${k}`));
  await Promise.all((await q.popMany('t', 777, { timeoutMs: 0, ack: true })).map((m) => m.ack()));
  for (let i = 0; i < N; i += 500) await q.pushMany('t', Array.from({ length: 500 }, (_, k) => `leased ${i + k}`));
  const held = [];
  for (;;) {
    const batch = await q.popMany('t', 64, { timeoutMs: 0, ack: true });
    if (batch.length === 0) break;
    held.push(...batch);
  }
  t.equal(held.length, N);
  // Every other one acked, the rest nacked: a wrong handle would settle another message's
  // lease (or none) and the counts below would not add up.
  const results = await Promise.allSettled(held.map((m, i) => i % 2 === 0 ? m.ack() : m.nack()));
  t.equal(results.filter((r) => r.status === 'rejected').length, 0, 'every settle succeeded');
  const again = await q.popMany('t', N, 0);
  const byId = (a: { id: string }, b: { id: string }) => Number(BigInt(a.id) - BigInt(b.id));
  t.same(again.sort(byId).map((m) => m.content), held.filter((_, i) => i % 2 === 1).map((m) => m.content), 'exactly the nacked ones came back');
  t.ok(again.every((m) => m.deliveries === 2), 'redelivered once');
});

t.test('a socket whose writes queue gets exact copies: a slow reader pins no more slabs', async (t) => {
  const { writer, reader } = await socketPair(t);
  reader.pause();
  const sends = new SendBuffers(writer);
  const piece = new Uint8Array(20_000);
  let k = 0;
  // Fill the kernel's buffers (a few MiB on loopback) until writes queue in the socket.
  while (writer.writableLength === 0 && k < 5000) { fill(piece, k++); sends.send(piece); }
  t.ok(writer.writableLength > 0, 'writes queue behind the paused reader');
  const made = slabStats().made;
  const queuedFrom = k;
  for (let i = 0; i < 100; i++) { fill(piece, k++); sends.send(piece); }
  t.equal(slabStats().made, made, 'no slab made for the 100 sends that queued');
  t.ok(writer.writableLength >= 100 * piece.length, 'they are counted as queued bytes');
  const total = k * piece.length;
  let got = 0;
  const received: Buffer[] = [];
  reader.on('data', (chunk: Buffer) => { received.push(chunk); got += chunk.length; });
  reader.resume();
  while (got < total) await once(reader, 'data');
  const all = Buffer.concat(received);
  let bad = 0;
  const want = new Uint8Array(piece.length);
  for (let i = 0; i < k; i++) {
    fill(want, i);
    if (Buffer.compare(all.subarray(i * piece.length, (i + 1) * piece.length), want) !== 0) bad++;
  }
  t.equal(bad, 0, `all ${k} sends intact (${queuedFrom} before the queue)`);
  await new Promise((resolve) => setImmediate(resolve));
  t.ok(slabStats().free >= 1, 'the slabs came back once their writes were called back');
});
