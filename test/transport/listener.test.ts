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
import { startEngine, delay, within } from '../helpers.ts';
import { rawConnect, hello, ping } from '../support/raw-socket.ts';
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
