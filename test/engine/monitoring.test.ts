// Monitoring: the --http endpoint (healthz, readyz, Prometheus metrics, JSON stats),
// SERVER_STATS and SHUTDOWN over the wire, and the log lines for connections closed for a
// limit or a protocol error. Real engines, real sockets, real HTTP.

import t from 'tap';
import net from 'node:net';
import { WebSocket } from 'ws';
import { TurboEngine, TurboClient, type EngineOptions } from '../../src/index.ts';
import { startEngine, connect, delay, within, until } from '../helpers.ts';

interface LogLine { level: string; fields: Record<string, unknown>; msg: string }

function captureLogger(): { logger: NonNullable<EngineOptions['logger']>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object | string, msg?: string) => {
    lines.push(typeof obj === 'string' ? { level, fields: {}, msg: obj } : { level, fields: obj as Record<string, unknown>, msg: msg ?? '' });
  };
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

async function get(url: string, init?: RequestInit): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** The value of one sample in Prometheus text (`name` or `name{labels}`), NaN if absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

const HTTP = 'http://127.0.0.1:0';

t.test('monitoring is off by default: engine.httpUrl is undefined', async (t) => {
  const engine = await startEngine(t, { threads: 1 });
  t.equal(engine.httpUrl, undefined);
  t.equal(engine.ready, true);
});

t.test('a bad http option is refused; a busy monitoring port makes run() reject', async (t) => {
  for (const http of ['https://127.0.0.1:1', 'not a url', 'http://127.0.0.1:1/metrics', 'tcp://127.0.0.1:1']) {
    t.throws(() => new TurboEngine('tcp://127.0.0.1:0', { http }), { code: 'ERR_INVALID_ARGUMENT' }, http);
  }
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 1, http: `http://127.0.0.1:${port}` });
  await t.rejects(engine.run(), { code: 'EADDRINUSE' });
  t.notOk(engine.running);
  await engine.destroy();
});

t.test('/healthz, /readyz (503 while starting and stopping), 404 and 405', async (t) => {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2, http: HTTP });
  t.teardown(() => engine.destroy());
  const running = engine.run();
  // The monitoring server listens before the workers start.
  await until('the monitoring server listens', () => engine.httpUrl !== undefined);
  const url = engine.httpUrl!;
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, 'the real port');
  const early = await get(`${url}/readyz`);
  t.equal(early.status, 503, 'not ready while the workers start');
  t.match(early.body, /not ready: starting/);
  t.equal((await get(`${url}/healthz`)).status, 200, 'healthy meanwhile');
  await running;
  t.same(await get(`${url}/readyz`), { status: 200, type: 'text/plain; charset=utf-8', body: 'ready\n' });
  t.same(await get(`${url}/healthz`), { status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' });
  t.equal((await get(`${url}/nope`)).status, 404);
  t.equal((await get(`${url}/metrics`, { method: 'POST', body: 'x' })).status, 405);
  const head = await fetch(`${url}/readyz`, { method: 'HEAD' });
  t.equal(head.status, 200, 'HEAD works');
  t.equal(engine.ready, true);
  // While stopping: the state flips before the workers are told, so a request now sees 503.
  const stopping = engine.stop();
  t.equal(engine.ready, false);
  const during = await get(`${url}/readyz`).catch(() => undefined);
  if (during !== undefined) t.equal(during.status, 503, '503 while stopping');
  await stopping;
  await t.rejects(get(`${url}/healthz`), undefined, 'closed once stopped');
});

t.test('/metrics counts traffic: push 10, scrape, see +10; pops, ready, connections, per-worker loop use', async (t) => {
  const engine = await startEngine(t, { threads: 2, http: HTTP });
  const url = `${engine.httpUrl}/metrics`;
  const before = await get(url);
  t.equal(before.status, 200);
  t.match(before.type, /^text\/plain; version=0\.0\.4/, 'Prometheus text format');
  for (const name of [
    'turbomq_messages_pushed_total', 'turbomq_messages_popped_total', 'turbomq_messages_acked_total',
    'turbomq_messages_redelivered_total', 'turbomq_messages_dead_lettered_total', 'turbomq_messages_dropped_total',
    'turbomq_connections', 'turbomq_topics', 'turbomq_messages_ready', 'turbomq_messages_in_flight', 'turbomq_memory_bytes',
    'turbomq_fsync_seconds_count', 'turbomq_log_peer_waits_total', 'turbomq_log_peer_rings_total',
  ]) t.ok(Number.isFinite(sample(before.body, name)), `${name} is exported`);
  t.match(before.body, /# TYPE turbomq_fsync_seconds histogram/);
  t.match(before.body, /turbomq_fsync_seconds_bucket\{le="\+Inf"\} 0/);
  t.match(before.body, /process_resident_memory_bytes \d+/, 'process metrics too');

  const client = await connect(t, engine.url);
  const q = client.getQueue('metrics');
  for (let i = 0; i < 10; i++) await q.push('t', `m${i}`);
  const afterPush = (await get(url)).body;
  t.equal(sample(afterPush, 'turbomq_messages_pushed_total') - sample(before.body, 'turbomq_messages_pushed_total'), 10, '+10 pushed');
  t.equal(sample(afterPush, 'turbomq_messages_ready'), 10, '10 ready');
  t.equal(sample(afterPush, 'turbomq_connections'), 1, 'one open connection');
  t.equal(sample(afterPush, 'turbomq_topics'), 1);
  t.ok(sample(afterPush, 'turbomq_received_bytes_total') > 100, 'bytes received');
  t.equal((await q.popMany('t', 4, 0)).length, 4);
  await q.pushMany('t', ['a', 'b']);
  const afterPop = (await get(url)).body;
  t.equal(sample(afterPop, 'turbomq_messages_popped_total'), 4, '+4 popped');
  t.equal(sample(afterPop, 'turbomq_messages_pushed_total'), 12, 'pushMany counts each message');
  t.equal(sample(afterPop, 'turbomq_messages_ready'), 8, 'ready = pushed - popped');
  // A parked pop handed a message by a push on another connection counts as popped once delivered.
  const other = await connect(t, engine.url);
  const parked = other.getQueue('metrics').pop('wake', 5000);
  await delay(30);
  await q.push('wake', 'x');
  t.equal((await within(parked, 5000))?.content, 'x');
  const sub = other.getQueue('metrics').subscribe('t', { prefetch: 100 });
  let seen = 0;
  for await (const _ of sub) if (++seen === 8) break;
  const afterSub = (await get(url)).body;
  t.equal(sample(afterSub, 'turbomq_messages_popped_total'), 4 + 1 + 8, 'parked pops and subscription deliveries count');
  t.equal(sample(afterSub, 'turbomq_messages_ready'), 0);
  const stats = await engine.stats();
  for (const w of stats.threads) {
    t.ok(Number.isFinite(sample(afterSub, `turbomq_event_loop_utilization{thread="${w.threadId}"}`)), `loop use of worker ${w.threadId}`);
  }
  t.ok(Number.isFinite(sample(afterSub, 'turbomq_event_loop_utilization{thread="main"}')));
  t.equal(sample(afterSub, 'turbomq_workers'), 2);
});

t.test('/stats and client.serverStats() give the same JSON: threads, messages, largest topics', async (t) => {
  const engine = await startEngine(t, { threads: 2, http: HTTP });
  const client = await connect(t, engine.url);
  await client.getQueue('jobs').pushMany('resize', ['a', 'b', 'c']);
  await client.getQueue('jobs').push('email', 'x');
  await client.getQueue('chat').push('room', 'hi');
  const res = await get(`${engine.httpUrl}/stats`);
  t.equal(res.status, 200);
  t.match(res.type, /^application\/json/);
  const http = JSON.parse(res.body);
  const wire = await client.serverStats();
  for (const stats of [http, wire]) {
    t.equal(stats.threads.length, 2);
    t.equal(stats.ready, true);
    t.equal(stats.topics, 3);
    t.match(stats.messages, { pushed: 5, popped: 0, ready: 5, inFlight: 0 });
    t.same(stats.largestTopics[0], { queue: 'jobs', topic: 'resize', ready: 3, inFlight: 0, delayed: 0, consumers: 0, waiting: false });
    t.equal(stats.largestTopics.length, 3);
    t.equal(stats.urls[0], engine.url);
    t.ok(stats.memoryBytes >= 4 * 1024 * 1024);
  }
  t.equal(wire.connections, 1, 'this connection');
  // Requests sent together share one answer; past 16 in flight, the connection gets ERR_LIMIT.
  const burst = await Promise.all(Array.from({ length: 20 }, () => client.serverStats().then((s) => s.topics, (err: { code?: string }) => err.code)));
  t.same(burst, [...Array<number>(16).fill(3), 'ERR_LIMIT', 'ERR_LIMIT', 'ERR_LIMIT', 'ERR_LIMIT']);
  t.equal((await client.serverStats()).topics, 3, 'and the connection stays usable');
  const embedded = await engine.stats();
  t.equal(embedded.messages.pushed, 5, 'engine.stats() is the same view');
});

t.test('SHUTDOWN: answered OK, then the engine stops gracefully (or does what onShutdownRequest says)', async (t) => {
  const { logger, lines } = captureLogger();
  const engine = await startEngine(t, { threads: 2, logger });
  const client = await TurboClient.connect(engine.url);
  const closed = client.getQueue('q').pop('t').then(() => 'resolved', (err: { code?: string }) => err.code);
  await client.shutdown();
  t.equal(await within(closed, 10_000, 'the connection closing'), 'ERR_CONNECTION_CLOSED');
  await until('the engine stopped', () => !engine.running);
  t.ok(lines.some((l) => l.msg === 'shutdown requested by a client' && typeof l.fields.remoteAddress === 'string'), 'logged with the remote address');
  await client.close();

  let asked = 0;
  const custom = await startEngine(t, { threads: 1, onShutdownRequest: () => { asked++; } });
  const c2 = await connect(t, custom.url);
  await c2.shutdown();
  await until('onShutdownRequest called', () => asked === 1);
  t.ok(custom.running, 'the embedder decides');
  await c2.ping();
});

t.test('a protocol error closes only its connection, logged once with its reason and remote address', async (t) => {
  const { logger, lines } = captureLogger();
  const engine = await startEngine(t, { threads: 1, http: HTTP, logger, listen: ['ws://127.0.0.1:0'] });
  const [tcpUrl, wsUrl] = engine.urls as [string, string];
  const { port } = new URL(tcpUrl);
  const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const local = `127.0.0.1:${socket.localPort}`;
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => {});
  socket.resume(); // read the ERROR, then the end
  socket.write(Buffer.from([14, 0, 0, 0, 9, 0x10, 0, 0, 7, 0, 0, 0, 1, 2, 3, 4, 5, 6])); // version 9: garbage
  socket.write(Buffer.from([1, 2, 3]));
  await within(ended, 5000, 'the broker closing the socket');
  await until('the log line', () => lines.some((l) => l.msg === 'connection closed: protocol error'));
  const logged = lines.filter((l) => l.msg === 'connection closed: protocol error');
  t.equal(logged.length, 1, 'once');
  t.match(logged[0]!.fields, { remoteAddress: local, code: 'ERR_PROTOCOL', reason: 'malformed frame', threadId: Number });
  t.equal(logged[0]!.level, 'warn');

  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.send('a text message');
  t.equal(await within(wsClosed, 5000), 1003);
  await until('the WebSocket log line', () => lines.filter((l) => l.msg === 'connection closed: protocol error').length === 2);
  t.match(lines.filter((l) => l.msg === 'connection closed: protocol error')[1]!.fields, { reason: /text message/, remoteAddress: /^127\.0\.0\.1:\d+$/ });

  const metrics = (await get(`${engine.httpUrl}/metrics`)).body;
  t.equal(sample(metrics, 'turbomq_protocol_errors_total'), 2);
  const client = await connect(t, tcpUrl);
  await client.ping();
  t.pass('other connections are served');
});

t.test('a connection over the connection limit is refused, logged and counted', async (t) => {
  const { logger, lines } = captureLogger();
  const engine = await startEngine(t, { threads: 1, maxConnectionsPerThread: 1, http: HTTP, logger });
  const first = await connect(t, engine.url);
  await first.ping();
  // Refused at accept: a fatal ERROR ERR_LIMIT, then the socket closes.
  await t.rejects(TurboClient.connect(engine.url, { connectTimeoutMs: 5000 }), { code: /^ERR_(LIMIT|CONNECTION_CLOSED)$/ });
  await until('the log line', () => lines.some((l) => l.msg === 'connection refused: connection limit reached'));
  t.match(lines.find((l) => l.msg === 'connection refused: connection limit reached')!.fields, { remoteAddress: /^127\.0\.0\.1:\d+$/, reason: 'maxConnectionsPerThread', limit: 1 });
  const metrics = (await get(`${engine.httpUrl}/metrics`)).body;
  t.equal(sample(metrics, 'turbomq_connections_refused_total'), 1);
  t.equal(sample(metrics, 'turbomq_connections'), 1);
  await first.ping();
});

t.test('parked pops are counted: /stats parkedPops and turbomq_parked_pops follow parking, wake-ups, timeouts and closed connections', async (t) => {
  const engine = await startEngine(t, { threads: 2, http: HTTP });
  const metrics = async () => sample((await get(`${engine.httpUrl}/metrics`)).body, 'turbomq_parked_pops');
  const statsOf = async () => JSON.parse((await get(`${engine.httpUrl}/stats`)).body).parkedPops as number;
  t.equal(await metrics(), 0);
  t.equal(await statsOf(), 0);
  const a = await connect(t, engine.url);
  const b = await TurboClient.connect(engine.url);
  const qa = a.getQueue('parked'), qb = b.getQueue('parked');
  const woken = qa.pop('w', 10_000);
  const short = qa.pop('short', 200);
  const leased = qa.pop('l', { ack: true, timeoutMs: 10_000 });
  const lost = qb.pop('b', 10_000).catch((err: { code?: string }) => err.code);
  await a.ping(); // replies come in order: a's pops are parked by now
  await b.ping();
  t.equal(await metrics(), 4, 'four parked, over two connections');
  t.equal(await statsOf(), 4);
  t.equal((await engine.stats()).parkedPops, 4, 'engine.stats() too');
  await qb.push('w', 'x');
  t.equal((await within(woken, 5000))?.content, 'x');
  t.equal(await within(short, 5000), null, 'the short one timed out');
  t.equal(await metrics(), 2, 'a woken and a timed-out pop are no longer parked');
  await b.close();
  t.equal(await lost, 'ERR_CONNECTION_CLOSED');
  await until('the closed connection released its pop', async () => (await metrics()) === 1);
  await (await connect(t, engine.url)).getQueue('parked').push('l', 'y');
  await (await within(leased, 5000))!.ack();
  t.equal(await metrics(), 0);
  t.equal(await statsOf(), 0);
});
