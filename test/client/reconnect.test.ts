// Reconnecting clients (TurboClient.connect(url, { reconnect: true })) against real brokers
// that are stopped and started again on the same port: status events, calls made while the
// broker is down, subscriptions and leased pops resumed, leases of the old connection ended,
// reconnectTimeoutMs, close() while reconnecting, the token sent again, WebSocket urls.

import t, { type Test } from 'tap';
import net from 'node:net';
import { TurboEngine, TurboClient, type EngineOptions, type ClientOptions, type StatusEvent } from '../../src/index.ts';
import { within } from '../helpers.ts';
import { backoffDelayMs } from '../../src/client/backoff.ts';
import { testCertificate } from '../support/tls.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A broker that can be stopped and started again on the port it got first. */
class RestartableBroker {
  engine: TurboEngine;
  readonly #options: EngineOptions;
  readonly #url: string;

  private constructor(engine: TurboEngine, options: EngineOptions) {
    this.engine = engine;
    this.#options = options;
    this.#url = engine.url;
  }

  static async start(t: Test, options: EngineOptions = {}, url = 'tcp://127.0.0.1:0'): Promise<RestartableBroker> {
    const engine = new TurboEngine(url, { threads: 1, ...options });
    await engine.run();
    const broker = new RestartableBroker(engine, options);
    t.teardown(() => broker.engine.destroy());
    return broker;
  }

  get url(): string {
    return this.#url;
  }

  stop(): Promise<void> {
    return this.engine.destroy();
  }

  /** A new engine on the same url (port included). */
  async restart(): Promise<void> {
    this.engine = new TurboEngine(this.#url, { threads: 1, ...this.#options });
    await this.engine.run();
  }
}

async function reconnecting(t: Test, url: string, options: ClientOptions = {}): Promise<TurboClient> {
  const client = await TurboClient.connect(url, { reconnect: true, reconnectMaxDelayMs: 200, ...options });
  t.teardown(() => client.close());
  return client;
}

/** The client's next status event of `type`. */
function next<T extends StatusEvent['type']>(client: TurboClient, type: T, ms = 10_000): Promise<Extract<StatusEvent, { type: T }>> {
  return within(new Promise((resolve) => {
    const listener = (event: Extract<StatusEvent, { type: T }>) => { client.off(type, listener); resolve(event); };
    client.on(type, listener);
  }), ms, `the ${type} event`);
}

t.test('backoff doubles from reconnectDelayMs up to reconnectMaxDelayMs, with jitter in [ceiling/2, ceiling]', async (t) => {
  t.equal(backoffDelayMs(0, 100, 2000, () => 1), 100);
  t.equal(backoffDelayMs(0, 100, 2000, () => 0), 50);
  t.equal(backoffDelayMs(3, 100, 2000, () => 1), 800);
  t.equal(backoffDelayMs(10, 100, 2000, () => 1), 2000, 'capped');
  t.equal(backoffDelayMs(1000, 100, 2000, () => 0), 1000, 'no overflow for many attempts');
});

t.test('reconnect is off by default: a lost connection ends the client', async (t) => {
  const broker = await RestartableBroker.start(t);
  const client = await TurboClient.connect(broker.url);
  t.teardown(() => client.close());
  const closed = next(client, 'close');
  await broker.stop();
  await closed;
  t.ok(client.closed);
  await t.rejects(client.getQueue('q').push('t', 'x'), { code: 'ERR_CONNECTION_CLOSED' });
});

t.test('a broker restart: disconnect then reconnect; a push made while it was down completes after it', async (t) => {
  const broker = await RestartableBroker.start(t);
  const client = await reconnecting(t, broker.url);
  const q = client.getQueue('rc');
  await q.push('t', 'before');
  const disconnected = next(client, 'disconnect');
  await broker.stop();
  const event = await disconnected;
  t.equal(event.type, 'disconnect');
  t.notOk(client.connected, 'not connected while the broker is down');
  t.notOk(client.closed, 'not closed either: it reconnects');
  const reconnected = next(client, 'reconnect');
  const push = q.push('t', 'while down');
  const length = q.length('t');
  await broker.restart();
  const back = await reconnected;
  t.ok(back.attempts >= 1, `reconnected after ${back.attempts} attempt(s)`);
  await within(push, 5000, 'the push made while down');
  t.equal(await length, 1, 'calls run in the order they were made: the push, then length');
  t.equal((await q.pop('t', 0))?.content, 'while down', 'the new broker has only what was pushed after the restart');
  t.ok(client.connected);
});

t.test('a subscription receives messages pushed after the restart; the status() iterator sees the events', async (t) => {
  const broker = await RestartableBroker.start(t);
  const client = await reconnecting(t, broker.url);
  const events = client.status();
  const sub = client.getQueue('rc').subscribe('live', { prefetch: 4 });
  await sub.ready;
  const it = sub[Symbol.asyncIterator]();
  const producer = await TurboClient.connect(broker.url);
  await producer.getQueue('rc').push('live', 'one');
  t.equal((await within(it.next(), 5000)).value?.content, 'one');
  await producer.close();

  await broker.stop();
  t.equal((await within(events.next(), 5000)).value?.type, 'disconnect');
  const pending = it.next(); // waits across the restart
  await broker.restart();
  t.equal((await within(events.next(), 10_000)).value?.type, 'reconnect');
  const producer2 = await TurboClient.connect(broker.url);
  t.teardown(() => producer2.close());
  for (const m of ['two', 'three', 'four', 'five', 'six']) await producer2.getQueue('rc').push('live', m);
  const got = [(await within(pending, 5000)).value?.content];
  for (let i = 0; i < 4; i++) got.push((await within(it.next(), 5000)).value?.content);
  t.same(got, ['two', 'three', 'four', 'five', 'six'], 'in order, past one prefetch window (credit works on the new subscription)');
  await sub.close();
  await client.close();
  t.equal((await events.next()).value?.type, 'close');
  t.ok((await events.next()).done, 'the iterator ends after close');
});

t.test('a parked leased pop resumes on the new connection; an ack of a pre-crash lease rejects ERR_LEASE_EXPIRED', async (t) => {
  const broker = await RestartableBroker.start(t);
  const client = await reconnecting(t, broker.url);
  const q = client.getQueue('rc');
  await q.push('leased', 'held');
  const held = await q.pop('leased', { ack: true, timeoutMs: 0 });
  t.equal(held?.content, 'held');
  const parked = q.pop('parked', { ack: true, timeoutMs: 20_000 });
  const parkedMany = q.popMany('parked-many', 5, { ack: true });
  t.equal((await client.serverStats()).connections, 1, 'the pops went out (a later reply came back)');
  const disconnected = next(client, 'disconnect');
  await broker.stop();
  await disconnected;
  await t.rejects(held!.ack(), { code: 'ERR_LEASE_EXPIRED' }, 'the lease ended with the old connection');
  const reconnected = next(client, 'reconnect');
  await broker.restart();
  await reconnected;
  await t.rejects(held!.nack(), { code: 'ERR_LEASE_EXPIRED' }, 'still ended after the reconnect: the client does not ask the new broker');
  const producer = await TurboClient.connect(broker.url);
  t.teardown(() => producer.close());
  await producer.getQueue('rc').push('parked', 'after');
  await producer.getQueue('rc').pushMany('parked-many', ['a', 'b']);
  const m = await within(parked, 5000, 'the resumed pop');
  t.equal(m?.content, 'after');
  await m!.ack();
  t.same((await within(parkedMany, 5000, 'the resumed popMany')).map((x) => x.content), ['a', 'b']);
  t.same(await q.stats('parked'), { ready: 0, delayed: 0, inFlight: 0 }, 'acked on the new connection');
});

t.test('an ack:true subscription resumes with leases of the new connection; one made while reconnecting subscribes once back; a held pop can be aborted', async (t) => {
  const broker = await RestartableBroker.start(t);
  const client = await reconnecting(t, broker.url);
  const q = client.getQueue('rc');
  const leasedSub = q.subscribe('acked', { ack: true, prefetch: 2 });
  const it = leasedSub[Symbol.asyncIterator]();
  await q.push('acked', 'old');
  const old = (await within(it.next(), 5000)).value!;
  t.equal(old.content, 'old');
  const aborter = new AbortController();
  const aborted = q.pop('never', { ack: true, signal: aborter.signal });
  const disconnected = next(client, 'disconnect');
  await broker.stop();
  await disconnected;
  aborter.abort();
  await t.rejects(within(aborted, 1000), { code: 'ERR_ABORTED' }, 'a held pop aborts at once, without the broker');
  const lateSub = q.subscribe('late');
  const lateIt = lateSub[Symbol.asyncIterator]();
  const reconnected = next(client, 'reconnect');
  await broker.restart();
  await reconnected;
  await t.rejects(old.ack(), { code: 'ERR_LEASE_EXPIRED' });
  await within(lateSub.ready, 5000, 'the late subscription subscribed');
  const producer = await TurboClient.connect(broker.url);
  t.teardown(() => producer.close());
  await producer.getQueue('rc').push('acked', 'new');
  await producer.getQueue('rc').push('late', 'hello late');
  const fresh = (await within(it.next(), 5000)).value!;
  t.equal(fresh.content, 'new');
  await fresh.ack();
  t.same(await producer.getQueue('rc').stats('acked'), { ready: 0, delayed: 0, inFlight: 0 }, 'acked on the new connection');
  t.equal((await within(lateIt.next(), 5000)).value?.content, 'hello late');
});

t.test('what was in flight when the connection dropped rejects: a plain pop, and the timeout of a resumed pop still counts', async (t) => {
  const broker = await RestartableBroker.start(t);
  const client = await reconnecting(t, broker.url);
  const q = client.getQueue('rc');
  const plain = q.pop('plain', 20_000);
  plain.catch(() => {}); // read below, after the broker stopped
  const short = q.pop('short', { ack: true, timeoutMs: 300 });
  await client.ping(); // both pops are parked at the broker now
  await broker.stop();
  await t.rejects(within(plain, 5000), { code: 'ERR_CONNECTION_CLOSED' }, 'a plain pop may have lost its message with the reply: it rejects');
  const started = performance.now();
  t.equal(await within(short, 5000), null, 'a leased pop whose timeout ends while the broker is down resolves null');
  t.ok(performance.now() - started < 3000, 'at its own timeout, not at reconnectTimeoutMs');
});

t.test('reconnectTimeoutMs: calls waiting longer reject with ERR_CONNECTION_CLOSED; the client still reconnects', async (t) => {
  const broker = await RestartableBroker.start(t);
  const client = await reconnecting(t, broker.url, { reconnectTimeoutMs: 200 });
  const disconnected = next(client, 'disconnect');
  await broker.stop();
  await disconnected;
  const started = performance.now();
  await t.rejects(within(client.getQueue('rc').push('t', 'x'), 5000), { code: 'ERR_CONNECTION_CLOSED', message: /reconnectTimeoutMs/ });
  await t.rejects(within(client.getQueue('rc').pop('t', { ack: true }), 5000), { code: 'ERR_CONNECTION_CLOSED' });
  const elapsed = performance.now() - started;
  t.ok(elapsed >= 190 && elapsed < 4000, `rejected after ${elapsed.toFixed(0)} ms`);
  const reconnected = next(client, 'reconnect');
  await broker.restart();
  await reconnected;
  await client.getQueue('rc').push('t', 'y');
  t.equal(await client.getQueue('rc').length('t'), 1, 'only the push after the reconnect was stored');
});

t.test('close() while reconnecting resolves, rejects waiting calls and stops retrying', async (t) => {
  const broker = await RestartableBroker.start(t);
  const port = Number(new URL(broker.url).port);
  const client = await reconnecting(t, broker.url, { reconnectDelayMs: 10, reconnectMaxDelayMs: 20 });
  const disconnected = next(client, 'disconnect');
  await broker.stop();
  await disconnected;
  // Something that accepts and hangs up stands in for the broker: it counts the attempts.
  let attempts = 0;
  const server = net.createServer((socket) => { attempts++; socket.destroy(); });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const deadline = Date.now() + 5000;
  while (attempts < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.ok(attempts >= 3, `it kept trying (${attempts} attempts)`);
  const waiting = client.getQueue('rc').push('t', 'x');
  await within(client.close(), 1000, 'close while reconnecting');
  await t.rejects(waiting, { code: 'ERR_CONNECTION_CLOSED' });
  t.ok(client.closed);
  const after = attempts;
  // At most an attempt already connecting lands; then none, over many backoff periods.
  await new Promise((r) => setTimeout(r, 300));
  t.ok(attempts <= after + 1, `no more attempts after close (${attempts - after})`);
});

t.test('the token is sent again on reconnect', async (t) => {
  const broker = await RestartableBroker.start(t, { authToken: 'secret-token' });
  const client = await reconnecting(t, broker.url, { token: 'secret-token' });
  const disconnected = next(client, 'disconnect');
  await broker.stop();
  await disconnected;
  const reconnected = next(client, 'reconnect');
  await broker.restart();
  await reconnected;
  await client.getQueue('rc').push('t', 'authed');
  t.equal(await client.getQueue('rc').length('t'), 1);
});

t.test('ws:// urls reconnect the same way', async (t) => {
  const broker = await RestartableBroker.start(t, {}, 'ws://127.0.0.1:0');
  const client = await reconnecting(t, broker.url);
  const disconnected = next(client, 'disconnect');
  await broker.stop();
  await disconnected;
  const push = client.getQueue('rc').push('t', 'over ws');
  await broker.restart();
  await within(push, 10_000, 'the push after the restart');
  t.equal((await client.getQueue('rc').pop('t', 0))?.content, 'over ws');
});

t.test('unix:// and tls:// urls reconnect the same way (tls: the same { tls } options again)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'turbomq-rc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const urls: [string, EngineOptions, ClientOptions][] = [[`unix://${join(dir, 'b.sock')}`, {}, {}]];
  const certificate = testCertificate();
  if ('skip' in certificate) t.comment(`tls:// not tried: ${certificate.skip}`);
  else urls.push(['tls://127.0.0.1:0', { tls: { cert: certificate.cert, key: certificate.key } }, { tls: { ca: certificate.cert } }]);
  for (const [url, engineOptions, clientOptions] of urls) {
    const broker = await RestartableBroker.start(t, engineOptions, url);
    const client = await reconnecting(t, broker.url, clientOptions);
    const disconnected = next(client, 'disconnect');
    await broker.stop();
    await disconnected;
    const push = client.getQueue('rc').push('t', url);
    await broker.restart();
    await within(push, 10_000, `the push over ${url}`);
    t.equal((await client.getQueue('rc').pop('t', 0))?.content, url, `${broker.url.split(':')[0]}: reconnected and pushed`);
    await client.close();
    await broker.stop();
  }
});

t.test('reconnect options are checked', async (t) => {
  await t.rejects(TurboClient.connect('tcp://127.0.0.1:1', { reconnect: 'yes' as never }), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(TurboClient.connect('tcp://127.0.0.1:1', { reconnectTimeoutMs: 0 }), { code: 'ERR_INVALID_ARGUMENT' });
  await t.rejects(TurboClient.connect('tcp://127.0.0.1:1', { reconnectDelayMs: 500, reconnectMaxDelayMs: 100 }), { code: 'ERR_INVALID_ARGUMENT' });
});
