// Accepting connections (src/transport/listener.ts, src/engine/connections.ts): the
// handshake deadline, the per-thread and total connection caps, and a broker at its
// file-descriptor limit that backs off instead of spinning.

import t from 'tap';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TurboClient } from '../../src/index.ts';
import { ConnectionCounter } from '../../src/engine/connections.ts';
import { Op, ErrorCode } from '../../src/protocol.ts';
import { startEngine, delay, within, until, prng } from '../helpers.ts';
import { rawConnect, hello, ping, push, auth, frame } from '../support/raw-socket.ts';
import { testCertificate } from '../support/tls.ts';

/** Resolves how long the broker took to close a socket that `behave` drives, or -1 if it did not within `limitMs`. */
function closedAfter(url: string, limitMs: number, behave: (socket: net.Socket) => void = () => {}): Promise<number> {
  const { hostname, port } = new URL(url.replace(/^\w+:/, 'tcp:'));
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(Number(port), hostname, () => behave(socket));
    socket.on('data', () => {});
    socket.on('error', () => {});
    const timer = setTimeout(() => { socket.destroy(); resolve(-1); }, limitMs);
    socket.on('close', () => { clearTimeout(timer); resolve(performance.now() - started); });
  });
}

t.test('handshakeTimeoutMs: silent sockets, half a header, or HELLO without AUTH are closed; a finished handshake is not', async (t) => {
  const engine = await startEngine(t, { handshakeTimeoutMs: 300, listen: ['ws://127.0.0.1:0'] });
  const secured = await startEngine(t, { handshakeTimeoutMs: 300, authToken: 'hs-secret' });
  const silent = await closedAfter(engine.url, 5000);
  t.ok(silent >= 250 && silent < 4000, `a silent socket is closed after ${silent.toFixed(0)} ms`);
  const partial = await closedAfter(engine.url, 5000, (s) => s.write(Buffer.from([20, 0, 0, 0, 1])));
  t.ok(partial >= 250, `half a header: closed after ${partial.toFixed(0)} ms`);
  const helloOnly = await closedAfter(secured.url, 5000, (s) => s.write(hello(1)));
  t.ok(helloOnly >= 250, `HELLO but no AUTH on a broker with auth: closed after ${helloOnly.toFixed(0)} ms`);
  const noUpgrade = await closedAfter(engine.urls[1]!, 5000);
  t.ok(noUpgrade >= 250, `ws:// without an upgrade: closed after ${noUpgrade.toFixed(0)} ms`);

  const client = await TurboClient.connect(engine.url);
  t.teardown(() => client.close());
  const authed = await TurboClient.connect(secured.url, { token: 'hs-secret' });
  t.teardown(() => authed.close());
  const raw = await rawConnect(t, engine.url);
  raw.socket.write(hello(1));
  t.match(await raw.next(), { op: Op.HELLO_OK });
  await delay(700);
  await client.ping();
  await authed.ping();
  raw.socket.write(ping(2));
  t.match(await raw.next(), { op: Op.PONG }, 'a raw client that said HELLO stays');
});

t.test('handshakeTimeoutMs covers the TLS handshake', async (t) => {
  const certificate = testCertificate();
  if ('skip' in certificate) return t.skip(certificate.skip);
  const engine = await startEngine(t, { handshakeTimeoutMs: 300, tls: { cert: certificate.cert, key: certificate.key } }, 'tls://127.0.0.1:0');
  const ms = await closedAfter(engine.url, 5000);
  t.ok(ms >= 250 && ms < 4000, `no TLS hello: closed after ${ms.toFixed(0)} ms`);
  const client = await TurboClient.connect(engine.url, { tls: { ca: certificate.cert } });
  await delay(500);
  await client.ping();
  await client.close();
});

t.test('maxConnections caps connections over all workers: the next is refused with ERR_LIMIT until one closes', async (t) => {
  const engine = await startEngine(t, { threads: 2, maxConnections: 3, listen: ['ws://127.0.0.1:0'] });
  const clients = await Promise.all([0, 1, 2].map((i) => TurboClient.connect(engine.urls[i % 2]!)));
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  t.equal(engine.connections, 3);
  const refused = await TurboClient.connect(engine.url, { connectTimeoutMs: 5000 }).then((c) => c.close().then(() => undefined), (e: unknown) => e);
  t.match(refused, { code: /^ERR_(LIMIT|CONNECTION_CLOSED)$/ }, 'refused');
  // A full worker stops listening briefly, so a refusal can also be a refused connect.
  if ((refused as { code: string }).code === 'ERR_LIMIT') t.match(refused, { message: /maxConnections 3/ });
  await t.rejects(TurboClient.connect(engine.urls[1]!, { connectTimeoutMs: 5000 }), { code: 'ERR_CONNECTION_CLOSED' }, 'over WebSocket too');
  await clients.pop()!.close();
  let again: TurboClient | undefined;
  for (let i = 0; i < 100 && again === undefined; i++) {
    again = await TurboClient.connect(engine.url, { connectTimeoutMs: 5000 }).catch(async () => { await delay(50); return undefined; });
  }
  t.ok(again, 'a slot is free again after a close');
  await again?.close();
});

t.test('maxConnectionsPerThread over TCP: refused with a readable ERR_LIMIT', async (t) => {
  const engine = await startEngine(t, { threads: 1, maxConnectionsPerThread: 2 });
  const a = await TurboClient.connect(engine.url);
  const b = await TurboClient.connect(engine.url);
  t.teardown(() => Promise.all([a.close(), b.close()]));
  await t.rejects(TurboClient.connect(engine.url, { connectTimeoutMs: 5000 }), { code: 'ERR_LIMIT', message: /maxConnectionsPerThread 2/ });
});

t.test('ConnectionCounter: take stops at the cap; a dead worker\'s slots are given back', async (t) => {
  const counter = ConnectionCounter.create(2, 3);
  const other = new ConnectionCounter(counter.buffer); // what a worker sees
  t.ok(counter.take(0));
  t.ok(other.take(1));
  t.ok(other.take(1));
  t.notOk(counter.take(0), 'at the cap');
  t.equal(counter.total, 3);
  other.release(1);
  t.equal(counter.total, 2);
  t.equal(counter.resetWorker(1), 1);
  t.equal(counter.total, 1);
  counter.setCap(1, true);
  t.ok(other.capIsFdLimit);
  t.notOk(other.take(1));
});

t.test('at its file-descriptor limit the broker refuses and backs off instead of spinning, then serves again', async (t) => {
  const child = spawn('bash', ['-c', `ulimit -n 200 && exec "${process.execPath}" "${fileURLToPath(new URL('./fd-limit-broker.ts', import.meta.url))}"`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  t.teardown(() => { child.kill('SIGKILL'); });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async () => (await within(lines.next(), 30_000, `a line from the child (stderr: ${stderr})`)).value as string;
  const url = await nextLine();
  t.match(url, /^tcp:\/\//);
  const stats = async () => { child.stdin.write('\n'); return JSON.parse(await nextLine()) as { cpuPercent: number; connections: number }; };
  const { hostname, port } = new URL(url);
  // Many more connections than 200 descriptors allow, re-dialled as soon as they close.
  const held: net.Socket[] = [];
  let flooding = true;
  const dial = () => {
    if (!flooding) return;
    const s = net.connect(Number(port), hostname);
    s.on('connect', () => held.push(s));
    s.on('error', () => {});
    s.on('close', () => setTimeout(dial, 10));
  };
  for (let i = 0; i < 300; i++) dial();
  t.teardown(() => { flooding = false; for (const s of held) s.destroy(); });
  await delay(1500);
  const full = await stats();
  t.ok(full.connections > 20 && full.connections < 200, `it serves what its descriptors allow (${full.connections})`);
  await t.rejects(TurboClient.connect(url, { connectTimeoutMs: 5000 }), { code: /^ERR_(LIMIT|CONNECTION_CLOSED)$/ }, 'a new client is refused');
  await delay(1500);
  const flood = await stats();
  t.ok(flood.cpuPercent < 60, `no spinning while clients keep dialling: ${flood.cpuPercent.toFixed(0)} % of a core (it was ~190 % before backing off)`);
  flooding = false;
  for (const s of held) s.destroy();
  let client: TurboClient | undefined;
  for (let i = 0; i < 100 && client === undefined; i++) {
    client = await TurboClient.connect(url, { connectTimeoutMs: 5000 }).catch(async () => { await delay(50); return undefined; });
  }
  t.ok(client, 'serves again once connections close');
  await client?.getQueue('q').push('t', 'x');
  await client?.close();
  child.stdin.end();
});

// ── One read buffer per thread (adoptReads) ─────────────────────────────────────────────
// Plain connections read into a buffer their worker shares (src/transport/tcp.ts), so
// everything a connection keeps of a chunk past its onData must be a copy. These run on one
// worker, so every connection reads into the same buffer.

/** Writes `bytes` in pieces of 1..`maxPiece` bytes, each in its own write, yielding between them. */
async function writeInPieces(socket: net.Socket, bytes: Buffer, maxPiece: number, random: () => number): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    const n = Math.min(bytes.length - at, 1 + Math.floor(random() * maxPiece));
    socket.write(bytes.subarray(at, at + n));
    at += n;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

t.test('one read buffer per worker: frames split at random offsets over 6 interleaved connections all arrive, in order', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  const CONNECTIONS = 6, MESSAGES = 300;
  const random = prng(0x5eed);
  const sockets = await Promise.all(Array.from({ length: CONNECTIONS }, () => rawConnect(t, engine.url)));
  await Promise.all(sockets.map(async (raw, c) => {
    const frames = [hello(1)];
    for (let i = 0; i < MESSAGES; i++) frames.push(push(2 + i, 'split', `t${c}`, `c${c}-m${i}-${'x'.repeat(i % 40)}`));
    await writeInPieces(raw.socket, Buffer.concat(frames), 700, random);
  }));
  for (const raw of sockets) {
    t.match(await raw.next(), { op: Op.HELLO_OK });
    let ok = 0;
    for (let i = 0; i < MESSAGES; i++) if ((await raw.next()).op === Op.OK) ok++;
    t.equal(ok, MESSAGES, 'every push acknowledged');
  }
  const client = await TurboClient.connect(engine.url);
  t.teardown(() => client.close());
  const q = client.getQueue('split');
  for (let c = 0; c < CONNECTIONS; c++) {
    const got = (await q.popMany(`t${c}`, MESSAGES + 1, 0)).map((m) => m.content);
    const want = Array.from({ length: MESSAGES }, (_, i) => `c${c}-m${i}-${'x'.repeat(i % 40)}`);
    t.same(got, want, `connection ${c}: every message once, in order, intact`);
  }
});

t.test('one read buffer per worker: requests held while AUTH is checked are copies (another connection reads meanwhile)', async (t) => {
  const { hashToken } = await import('../../src/index.ts');
  const tokenHash = await hashToken('held-secret', 14); // scrypt: checked off the thread, so the bytes after AUTH wait
  const engine = await startEngine(t, { threads: 1, users: [{ name: 'slow', tokenHash, admin: true }, { name: 'fast', token: 'fast-token', admin: true }] });
  const slow = await rawConnect(t, engine.url);
  const pushes = Array.from({ length: 20 }, (_, i) => push(3 + i, 'held', 't', `held-${i}-${'h'.repeat(200)}`));
  slow.socket.write(Buffer.concat([hello(1), auth(2, 'held-secret', 'slow'), ...pushes]));
  // While scrypt runs, another connection on the same worker fills the read buffer with other bytes.
  const busy = await TurboClient.connect(engine.url, { token: 'fast-token', user: 'fast' });
  t.teardown(() => busy.close());
  const noise = busy.getQueue('noise');
  for (let i = 0; i < 20; i++) await noise.pushMany('n', Array.from({ length: 64 }, () => 'N'.repeat(900)));
  t.match(await slow.next(10_000), { op: Op.HELLO_OK });
  t.match(await slow.next(10_000), { op: Op.OK, requestId: 2 }, 'AUTH accepted');
  for (let i = 0; i < 20; i++) t.match(await slow.next(), { op: Op.OK, requestId: 3 + i });
  const got = (await busy.getQueue('held').popMany('t', 100, 0)).map((m) => m.content);
  t.same(got, Array.from({ length: 20 }, (_, i) => `held-${i}-${'h'.repeat(200)}`), 'the held pushes are the bytes that were sent');
});

t.test('adoptReads: chunks go to onChunk, pause() stops them, and server.close() waits for the adopted connection', async (t) => {
  const { Listener } = await import('../../src/transport/listener.ts');
  const { parseUrl } = await import('../../src/url.ts');
  const readBuffer = Buffer.alloc(16);
  const received: string[] = [];
  let accepted: net.Socket | undefined;
  const listener = await Listener.open({
    url: parseUrl('tcp://127.0.0.1:0'),
    secureContext: undefined,
    handshakeTimeoutMs: 10_000,
    admit: () => () => {},
    refuse: () => {},
    readBuffer,
    onConnection({ socket, established, reads }) {
      established();
      accepted = socket;
      t.ok(reads, 'a plain connection gets a reader');
      reads!.onChunk = (chunk) => {
        t.equal(chunk.buffer, readBuffer.buffer, 'each chunk is a view of the shared read buffer');
        received.push(Buffer.from(chunk).toString());
        socket.write(Buffer.from(chunk)); // writes still work: echo
      };
    },
  });
  const client = net.connect(listener.port, '127.0.0.1');
  t.teardown(() => client.destroy());
  const echoed: Buffer[] = [];
  client.on('data', (b: Buffer) => echoed.push(b));
  await new Promise((resolve) => client.once('connect', resolve));
  client.write('0123456789abcdefghijklmnopqrstuvwxyz'); // longer than the 16-byte buffer: several reads
  await until('the echo', () => Buffer.concat(echoed).length === 36, 5000);
  t.equal(received.join(''), '0123456789abcdefghijklmnopqrstuvwxyz', 'read in pieces of the buffer, in order');
  t.equal(Buffer.concat(echoed).toString(), '0123456789abcdefghijklmnopqrstuvwxyz', 'and echoed');
  t.ok(typeof accepted!.remotePort === 'number', 'the adopted socket knows its peer');

  accepted!.pause();
  const before = received.length;
  client.write('paused');
  await delay(200);
  t.equal(received.length, before, 'nothing is read while paused');
  accepted!.resume();
  await until('the bytes sent while paused', () => received.join('').endsWith('paused'), 5000);

  let closed = false;
  listener.close(() => { closed = true; });
  await delay(200);
  t.notOk(closed, 'server.close() waits while the adopted connection is open');
  client.end();
  await until('server.close()', () => closed, 5000);
  t.ok(closed, 'and completes once it closed');
});

t.test('a connection reset by its peer while the broker writes to it ends only that connection (no worker restart)', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  const producer = await TurboClient.connect(engine.url);
  t.teardown(() => producer.close());
  const q = producer.getQueue('reset');
  for (let round = 0; round < 5; round++) {
    const raw = await rawConnect(t, engine.url);
    raw.socket.write(Buffer.concat([hello(1), ...Array.from({ length: 50 }, (_, i) => frame(Op.POP, 2 + i, Buffer.concat([Buffer.from([1]), Buffer.from('q'), Buffer.from([5]), Buffer.from('reset'), Buffer.from([0xff, 0xff, 0xff, 0xff])])))]));
    t.match(await raw.next(), { op: Op.HELLO_OK });
    raw.socket.pause();
    const big = new Uint8Array(60 * 1024).fill(round);
    const pushing = Promise.all(Array.from({ length: 50 }, () => q.push('reset', big)));
    await delay(20);
    raw.socket.resetAndDestroy(); // RST: the broker's next writes fail with ECONNRESET / EPIPE
    await pushing;
    await delay(50);
  }
  await producer.ping();
  const stats = await engine.stats();
  t.equal(stats.workerRestarts, 0, 'no worker died of a write error');
  const fresh = await TurboClient.connect(engine.url);
  t.teardown(() => fresh.close());
  await fresh.ping();
});
