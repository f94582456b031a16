// Authentication and permissions against real brokers and sockets: the names of issue 12
// (authToken, users, token, ERR_UNAUTHORIZED, ERR_FORBIDDEN), tokens wrong, missing and
// right, and requests sent before a successful AUTH, which must never be executed.

import t from 'tap';
import type { Test } from 'tap';
import { TurboClient, TurboEngine, hashToken, type EngineOptions } from '../../src/index.ts';
import { Op, ErrorCode } from '../../src/protocol.ts';
import { startEngine, connect, within } from '../helpers.ts';
import { rawConnect, hello, auth, ping, push, length } from '../support/raw-socket.ts';

const ADMIN = 'admin-token-0123456789';

/** An engine with auth, plus an admin client to look at what happened. */
async function secured(t: Test, options: EngineOptions = {}): Promise<{ engine: TurboEngine; admin: TurboClient }> {
  const engine = await startEngine(t, { authToken: ADMIN, listen: ['ws://127.0.0.1:0'], ...options });
  const admin = await TurboClient.connect(engine.url, { token: ADMIN });
  t.teardown(() => admin.close());
  return { engine, admin };
}

t.test('authToken: the right token connects and may do everything, over TCP and WebSocket', async (t) => {
  const { engine } = await secured(t);
  for (const url of engine.urls) {
    const client = await TurboClient.connect(url, { token: ADMIN });
    t.teardown(() => client.close());
    const q = client.getQueue(`any-${url.slice(0, 2)}`);
    await q.push('t', 'x');
    t.equal((await q.pop('t', 0))!.content, 'x', url);
    t.equal(await q.length('t'), 0);
  }
});

t.test('a missing or wrong token: connect rejects with ERR_UNAUTHORIZED (TCP and WebSocket)', async (t) => {
  const { engine } = await secured(t);
  for (const url of engine.urls) {
    await t.rejects(TurboClient.connect(url), { code: 'ERR_UNAUTHORIZED', message: /needs a token/ }, `${url}: no token`);
    await t.rejects(TurboClient.connect(url, { token: 'wrong' }), { code: 'ERR_UNAUTHORIZED', message: 'invalid user or token' }, `${url}: wrong token`);
    await t.rejects(TurboClient.connect(url, { token: ADMIN.slice(0, -1) }), { code: 'ERR_UNAUTHORIZED' }, `${url}: a prefix of the token`);
    await t.rejects(TurboClient.connect(url, { token: `${ADMIN}x` }), { code: 'ERR_UNAUTHORIZED' }, `${url}: the token and more`);
  }
});

t.test('the error never contains the token', async (t) => {
  const { engine } = await secured(t);
  const err = await TurboClient.connect(engine.url, { token: 'my-secret-guess' }).catch((e: Error) => e);
  t.notMatch((err as Error).message, /my-secret-guess/);
});

t.test('a broker without auth accepts any token (clients always send AUTH)', async (t) => {
  const engine = await startEngine(t);
  const client = await connect(t, engine.url);
  await client.ping();
  const withToken = await TurboClient.connect(engine.url, { token: 'whatever' });
  await withToken.getQueue('q').push('t', 'x');
  t.equal(await client.getQueue('q').length('t'), 1);
  await withToken.close();
});

t.test('a PUSH pipelined behind a wrong token is never executed: the topic stays empty', async (t) => {
  const { engine, admin } = await secured(t);
  const raw = await rawConnect(t, engine.url);
  raw.socket.write(Buffer.concat([hello(1), auth(2, 'wrong'), push(3, 'guarded', 't', 'sneaky'), push(4, 'guarded', 't', 'sneaky')]));
  t.match(await raw.next(), { op: Op.HELLO_OK, requestId: 1 });
  t.match(await raw.next(), { op: Op.ERROR, requestId: 2, code: ErrorCode.ERR_UNAUTHORIZED });
  t.ok(await raw.closed(), 'the broker closes the connection');
  t.equal(await admin.getQueue('guarded').length('t'), 0, 'nothing was pushed');
});

t.test('a request before any AUTH is answered ERR_UNAUTHORIZED, the connection closed, nothing after it executed', async (t) => {
  const { engine, admin } = await secured(t);
  const raw = await rawConnect(t, engine.url);
  raw.socket.write(Buffer.concat([push(1, 'guarded2', 't', 'a'), auth(2, ADMIN), push(3, 'guarded2', 't', 'b')]));
  t.match(await raw.next(), { op: Op.ERROR, requestId: 1, code: ErrorCode.ERR_UNAUTHORIZED });
  t.ok(await raw.closed());
  t.equal(await admin.getQueue('guarded2').length('t'), 0, 'not even after the good AUTH that followed');
});

t.test('HELLO and PING are answered before AUTH; requests pipelined behind a good AUTH are served in order', async (t) => {
  const { engine, admin } = await secured(t);
  const raw = await rawConnect(t, engine.url);
  raw.socket.write(Buffer.concat([hello(1), ping(2), auth(3, ADMIN), push(4, 'piped', 't', 'one'), push(5, 'piped', 't', 'two'), length(6, 'piped', 't')]));
  t.match(await raw.next(), { op: Op.HELLO_OK, requestId: 1 });
  t.match(await raw.next(), { op: Op.PONG, requestId: 2 });
  t.match(await raw.next(), { op: Op.OK, requestId: 3 });
  t.match(await raw.next(), { op: Op.OK, requestId: 4 });
  t.match(await raw.next(), { op: Op.OK, requestId: 5 });
  t.match(await raw.next(), { op: Op.LENGTH_OK, requestId: 6 });
  t.same((await admin.getQueue('piped').popMany('t', 5, 0)).map((m) => m.content), ['one', 'two']);
});

t.test('a hashed token (checked off the event loop): bytes behind its AUTH wait, then run; behind a wrong one, never', async (t) => {
  const tokenHash = await hashToken('hashed-secret', 10);
  const { engine, admin } = await secured(t, { users: [{ name: 'svc', tokenHash, push: ['jobs'] }] });
  const good = await rawConnect(t, engine.url);
  good.socket.write(Buffer.concat([hello(1), auth(2, 'hashed-secret'), push(3, 'jobs', 't', 'after-auth')]));
  t.match(await good.next(), { op: Op.HELLO_OK });
  t.match(await good.next(), { op: Op.OK, requestId: 2 });
  t.match(await good.next(), { op: Op.OK, requestId: 3 });
  const bad = await rawConnect(t, engine.url);
  bad.socket.write(Buffer.concat([hello(1), auth(2, 'hashed-guess'), push(3, 'jobs', 't', 'sneaky')]));
  t.match(await bad.next(), { op: Op.HELLO_OK });
  t.match(await bad.next(), { op: Op.ERROR, requestId: 2, code: ErrorCode.ERR_UNAUTHORIZED });
  t.ok(await bad.closed());
  t.same((await admin.getQueue('jobs').popMany('t', 5, 0)).map((m) => m.content), ['after-auth']);
  const client = await TurboClient.connect(engine.url, { token: 'hashed-secret' });
  t.teardown(() => client.close());
  await client.getQueue('jobs').push('t', 'via the client');
  const named = await TurboClient.connect(engine.url, { token: 'hashed-secret', user: 'svc' });
  t.teardown(() => named.close());
  await t.rejects(TurboClient.connect(engine.url, { token: 'hashed-secret', user: 'someone-else' }), { code: 'ERR_UNAUTHORIZED' });
});

t.test('users: push and pop permissions per queue, with * wildcards; anything else ERR_FORBIDDEN, connection usable', async (t) => {
  const { engine, admin } = await secured(t, {
    users: [
      { name: 'web', token: 'web-token', push: ['chat', 'jobs.*'], pop: ['chat'] },
      { name: 'reader', token: 'reader-token', pop: ['inbox-*-web'] },
      { name: 'ops', token: 'ops-token', admin: true },
    ],
  });
  const web = await TurboClient.connect(engine.urls[1]!, { token: 'web-token' }); // ws, like a browser
  t.teardown(() => web.close());
  await web.getQueue('chat').push('t', 'hi');
  t.equal((await web.getQueue('chat').pop('t', 0))!.content, 'hi');
  await web.getQueue('jobs.resize').push('t', 'img');
  await web.getQueue('jobs.a.b').push('t', 'img');
  const refusedPush = await web.getQueue('jobs').push('t', 'x').catch((e: Error) => e);
  t.match(refusedPush, { code: 'ERR_FORBIDDEN', message: 'user "web" may not push to queue "jobs"' }, '"jobs.*" does not cover "jobs"');
  await t.rejects(web.getQueue('jobs.resize').pop('t', 0), { code: 'ERR_FORBIDDEN', message: /may not pop from queue "jobs.resize"/ });
  await t.rejects(web.getQueue('jobs.resize').popMany('t', 5, 0), { code: 'ERR_FORBIDDEN' });
  await t.rejects(web.getQueue('jobs.resize').subscribe('t').ready, { code: 'ERR_FORBIDDEN' }, 'subscribe needs pop');
  await t.rejects(web.getQueue('other').length('t'), { code: 'ERR_FORBIDDEN' }, 'length needs push or pop');
  t.equal(await web.getQueue('jobs.resize').length('t'), 1, 'length with push permission');
  await web.ping();
  t.equal(await admin.getQueue('jobs.resize').length('t'), 1, 'refused requests changed nothing');

  const reader = await TurboClient.connect(engine.url, { token: 'reader-token' });
  t.teardown(() => reader.close());
  await admin.getQueue('inbox-42-web').push('t', 'for you');
  t.equal((await reader.getQueue('inbox-42-web').pop('t', 0))!.content, 'for you');
  await t.rejects(reader.getQueue('inbox-42-web').push('t', 'forged'), { code: 'ERR_FORBIDDEN' }, 'a pop-only token cannot push');
  await t.rejects(reader.getQueue('inbox-42-app').pop('t', 0), { code: 'ERR_FORBIDDEN' });
  const sub = reader.getQueue('inbox-7-web').subscribe('t');
  await sub.ready;
  await admin.getQueue('inbox-7-web').push('t', 'live');
  const it = sub[Symbol.asyncIterator]();
  t.equal((await within(it.next(), 3000, 'a delivery')).value.content, 'live');
  await sub.close();

  const ops = await TurboClient.connect(engine.url, { token: 'ops-token' });
  t.teardown(() => ops.close());
  await ops.getQueue('anything').push('t', 'x');
  t.equal((await ops.getQueue('anything').pop('t', 0))!.content, 'x');
});

t.test('a pop-only subscriber closing with messages in hand returns them (RETURN is part of pop)', async (t) => {
  const { engine, admin } = await secured(t, { users: [{ name: 'reader', token: 'reader-token', pop: ['feed'] }] });
  await admin.getQueue('feed').pushMany('t', ['1', '2', '3', '4']);
  const reader = await TurboClient.connect(engine.url, { token: 'reader-token' });
  t.teardown(() => reader.close());
  const sub = reader.getQueue('feed').subscribe('t', { prefetch: 4 });
  const it = sub[Symbol.asyncIterator]();
  t.equal((await it.next()).value.content, '1');
  await sub.close();
  t.same((await admin.getQueue('feed').popMany('t', 10, 0)).map((m) => m.content), ['2', '3', '4']);
});

t.test('engine.getQueue works on a broker with auth (the embedded client is trusted)', async (t) => {
  const { engine, admin } = await secured(t, { users: [{ name: 'u', token: 'u-token', push: ['x'] }] });
  await engine.getQueue('embedded').push('t', 'inside');
  t.equal((await admin.getQueue('embedded').pop('t', 0))!.content, 'inside');
});

t.test('bad users are refused when the engine is made, naming the entry but never its token', async (t) => {
  const bad: [unknown, RegExp][] = [
    [[{ name: 'a', token: 'tok-1' }, { name: 'a', token: 'tok-2' }], /second user with this name/],
    [[{ name: 'a', token: 'same-secret' }, { name: 'b', token: 'same-secret' }], /"b" has the same token/],
    [[{ name: 'a' }], /exactly one of token and tokenHash/],
    [[{ name: 'a', token: 'x', tokenHash: 'y' }], /exactly one/],
    [[{ name: 'a', tokenHash: 'not-a-hash-secret' }], /"a": tokenHash is not a scrypt hash/],
    [[{ name: 'a', token: 'x', push: 'chat' }], /push must be an array/],
    [[{ name: 'a', token: 'x', admin: 'yes' }], /admin must be true or false/],
    [[{ name: 'a', token: 'x', pushh: [] }], /unknown field "pushh"/],
    [[{ name: 'admin', token: 'x' }], /taken by authToken/],
    [{ name: 'a' }, /must be an array/],
  ];
  for (const [users, message] of bad) {
    const err = (() => { try { new TurboEngine('tcp://127.0.0.1:0', { threads: 1, authToken: 'root-secret', users: users as never }); } catch (e) { return e as Error; } return undefined; })();
    t.match(err, { code: 'ERR_INVALID_ARGUMENT', message }, String(message));
    t.notMatch(err?.message ?? '', /secret|tok-1|tok-2|not-a-hash/, 'no token in the message');
  }
  t.throws(() => new TurboEngine('tcp://127.0.0.1:0', { authToken: '' }), { code: 'ERR_INVALID_ARGUMENT' });
});
