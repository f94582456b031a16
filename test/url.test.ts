// src/url.ts: every scheme parsed and formatted, the defaults, and readable errors.
import t from 'tap';
import { parseUrl, formatUrl, isLoopbackHost, DEFAULT_URL, DEFAULT_PORT, DEFAULT_HOST, usesTls, usesWebSocket } from '../src/url.ts';

t.test('each scheme parses to scheme, host, port and path, and formats back', async (t) => {
  const cases: [string, object, string][] = [
    ['tcp://127.0.0.1:33444', { scheme: 'tcp', host: '127.0.0.1', port: 33444, path: '' }, 'tcp://127.0.0.1:33444'],
    ['tls://broker.example:4000', { scheme: 'tls', host: 'broker.example', port: 4000, path: '' }, 'tls://broker.example:4000'],
    ['ws://[::1]:8080', { scheme: 'ws', host: '::1', port: 8080, path: '/' }, 'ws://[::1]:8080'],
    ['wss://example.com:443/mq?x=1', { scheme: 'wss', host: 'example.com', port: 443, path: '/mq?x=1' }, 'wss://example.com:443/mq?x=1'],
    ['unix:///run/turbomq.sock', { scheme: 'unix', host: '', port: 0, path: '/run/turbomq.sock' }, 'unix:///run/turbomq.sock'],
    ['tcp://127.0.0.1:0', { port: 0 }, 'tcp://127.0.0.1:0'],
  ];
  for (const [url, expected, formatted] of cases) {
    const parsed = parseUrl(url);
    t.match(parsed, expected, url);
    t.equal(formatUrl(parsed), formatted);
  }
});

t.test('defaults: port 33444, host 127.0.0.1, and the default url', async (t) => {
  t.equal(DEFAULT_PORT, 33444);
  t.equal(DEFAULT_HOST, '127.0.0.1');
  t.equal(DEFAULT_URL, 'tcp://127.0.0.1:33444');
  t.match(parseUrl('tcp://localhost'), { host: 'localhost', port: 33444 });
  t.match(parseUrl('tcp://'), { host: '127.0.0.1', port: 33444 });
  t.match(parseUrl('ws://example.com'), { port: 33444 });
  t.match(parseUrl('ws://example.com:80'), { port: 80 }, "ws's own default port is kept when written");
});

t.test('bad urls throw ERR_INVALID_ARGUMENT naming the forms that would do', async (t) => {
  t.throws(() => parseUrl('not a url'), { code: 'ERR_INVALID_ARGUMENT', message: /not a url.*tcp:\/\/host:port/ });
  t.throws(() => parseUrl('http://x:1'), { code: 'ERR_INVALID_ARGUMENT', message: /unsupported scheme "http:"/ });
  t.throws(() => parseUrl('tls://x:1', ['ws', 'wss']), { message: /expected ws:\/\/host:port, wss:\/\/host:port\)$/ });
  t.throws(() => parseUrl('tcp://x:99999'), { code: 'ERR_INVALID_ARGUMENT' });
  t.throws(() => parseUrl('tcp://x:1/path'), { message: /has no path/ });
  t.throws(() => parseUrl('tcp://user:secret@x:1'), { message: /credentials in a url/ });
  t.notMatch((() => { try { parseUrl('tcp://user:secret@x:1'); } catch (e) { return (e as Error).message; } return ''; })(), /secret/);
  t.throws(() => parseUrl('unix://'), { message: /bad unix url/ });
});

t.test('loopback hosts; TLS and WebSocket schemes', async (t) => {
  for (const h of ['localhost', 'app.localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1']) t.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1']) t.notOk(isLoopbackHost(h), h);
  t.same(['tcp', 'tls', 'ws', 'wss', 'unix'].map((s) => usesTls(s as never)), [false, true, false, true, false]);
  t.same(['tcp', 'tls', 'ws', 'wss', 'unix'].map((s) => usesWebSocket(s as never)), [false, false, true, true, false]);
});
