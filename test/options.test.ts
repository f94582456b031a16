// src/options.ts: defaults in one place, checks with readable errors, and the serve flags
// that map onto engine options.
import t from 'tap';
import { DEFAULTS, exposedWithoutAuth, resolveOptions, resolveClientOptions, checkUsers, serveFlags, MAX_THREADS, defaultThreads } from '../src/options.ts';
import { SERVE_HELP, parseServeArgs, UsageError } from '../src/cli/args.ts';

t.test('resolveOptions fills every default', async (t) => {
  const o = resolveOptions(undefined, {});
  t.match(o, {
    threads: defaultThreads(), maxMessageBytes: 1024 * 1024, maxFrameBytes: 8 * 1024 * 1024,
    maxConnectionsPerThread: 10_000, maxConnections: 65_536, handshakeTimeoutMs: 10_000,
    maxSubscriptions: 1024, maxParkedPops: 65_536, maxOutputBytes: 32 * 1024 * 1024, maxParkedPopsPerThread: 262_144, initialMemoryMiB: 4, maxMemoryMiB: 4096,
    authToken: undefined, users: undefined, tls: undefined,
  });
  t.same(o.listen, [{ scheme: 'tcp', host: '127.0.0.1', port: 33444, path: '' }]);
  t.equal(DEFAULTS.handshakeTimeoutMs, 10_000);
  t.equal(MAX_THREADS, 253);
});

t.test('bad engine options are refused with ERR_INVALID_ARGUMENT', async (t) => {
  for (const options of [{ threads: 254 }, { maxConnections: 0 }, { handshakeTimeoutMs: 1.5 }, { listen: ['http://x:1'] }, { authToken: '' }, { authToken: 'x'.repeat(4097) }, { tls: { cert: 1, key: 2 } }]) {
    t.throws(() => resolveOptions(undefined, options as never), { code: 'ERR_INVALID_ARGUMENT' }, JSON.stringify(options).slice(0, 60));
  }
});

t.test('checkUsers keeps known fields and refuses unknown ones', async (t) => {
  t.same(checkUsers([{ name: 'a', token: 't', push: ['x.*'], pop: [], admin: false }]), [{ name: 'a', token: 't', push: ['x.*'], pop: [], admin: false }]);
  t.throws(() => checkUsers([{ name: 'a', token: 't', extra: 1 }]), { message: /unknown field "extra"/ });
  t.throws(() => checkUsers([{ name: '', token: 't' }]), { message: /name must be/ });
  t.throws(() => checkUsers([{ name: 'a', token: 't', pop: [''] }]), { message: /pop must be an array of queue names/ });
});

t.test('client options: defaults and checks', async (t) => {
  t.same(resolveClientOptions({}), { connectTimeoutMs: 10_000, token: undefined, user: undefined, tls: undefined, reconnect: false, reconnectTimeoutMs: 30_000, reconnectDelayMs: 100, reconnectMaxDelayMs: 2_000 });
  t.throws(() => resolveClientOptions({ token: '' }), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => resolveClientOptions({ user: '' }), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => resolveClientOptions({ connectTimeoutMs: 0 }), { code: 'ERR_INVALID_ARGUMENT' });
});

t.test('every serve flag is in --help with its variable, and sets its option', async (t) => {
  for (const flag of serveFlags()) {
    t.match(SERVE_HELP, `--${flag.name}`, flag.name);
    t.match(SERVE_HELP, flag.env, flag.env);
  }
  const files: Record<string, string> = { 'users.json': '[{"name":"w","token":"tk","pop":["q"]}]', 'c.pem': 'CERT', 'k.pem': 'KEY' };
  const read = (p: string) => { if (!(p in files)) throw Object.assign(new Error('no'), { code: 'ENOENT' }); return files[p]!; };
  const s = parseServeArgs(['--listen', 'tcp://127.0.0.1:0', '-l', 'ws://127.0.0.1:0', '--max-connections', '5', '--handshake-timeout-ms', '200', '--users', 'users.json', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'], { TURBOMQ_AUTH_TOKEN: 'env-token' }, read);
  t.not(s, 'help');
  if (typeof s === 'string') return;
  t.same(s.listen, ['tcp://127.0.0.1:0', 'ws://127.0.0.1:0']);
  t.match(s.engine, { maxConnections: 5, handshakeTimeoutMs: 200, authToken: 'env-token', users: [{ name: 'w', token: 'tk', pop: ['q'] }], tls: { cert: 'CERT', key: 'KEY' } });
  t.throws(() => parseServeArgs(['--tls-cert', 'c.pem'], {}, read), UsageError, 'cert without key');
  t.throws(() => parseServeArgs(['--users', 'missing.json'], {}, read), { message: '--users: cannot read missing.json: ENOENT' });
  t.throws(() => parseServeArgs(['--listen', 'tls://127.0.0.1:0'], {}, read), { message: /needs a certificate/ });
});

t.test('exposedWithoutAuth: listeners beyond loopback on a broker without auth (the start-up warning)', async (t) => {
  const urls = ['tcp://0.0.0.0:1', 'ws://10.1.2.3:2', 'tcp://127.0.0.1:3', 'ws://localhost:4', 'unix:///tmp/x.sock', 'tcp://[::]:5'];
  const open = (extra: object) => exposedWithoutAuth(resolveOptions(urls[0], { listen: urls.slice(1), ...extra })).map((u) => u.host);
  t.same(open({}), ['0.0.0.0', '10.1.2.3', '::']);
  t.same(open({ authToken: 'x' }), []);
  t.same(open({ users: [] }), []);
});
