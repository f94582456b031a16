// TLS: tls:// and wss:// listen urls with a throw-away certificate (test/support/tls.ts),
// the Node client with { tls: { ca } }, and what happens to clients that get TLS wrong.

import t from 'tap';
import net from 'node:net';
import { TurboClient, TurboEngine } from '../../src/index.ts';
import { startEngine, checkBinaryRoundTrip, within } from '../helpers.ts';
import { testCertificate } from '../support/tls.ts';

const certificate = testCertificate();
if ('skip' in certificate) {
  t.plan(0, certificate.skip);
} else {
  const { cert, key } = certificate;
  const tls = { cert, key };
  const ca = { ca: cert };

  t.test('tls:// and wss://: round trips with the Node client trusting the certificate', async (t) => {
    const engine = await startEngine(t, { tls, listen: ['wss://127.0.0.1:0', 'tcp://127.0.0.1:0'] }, 'tls://127.0.0.1:0');
    t.match(engine.urls, [/^tls:\/\/127\.0\.0\.1:\d+$/, /^wss:\/\/127\.0\.0\.1:\d+$/, /^tcp:/]);
    for (const url of engine.urls.slice(0, 2)) {
      const client = await TurboClient.connect(url, { tls: ca });
      t.teardown(() => client.close());
      const q = client.getQueue(`tls-${url.slice(0, 3)}`);
      await checkBinaryRoundTrip(t, q);
      await q.pushMany('m', Array.from({ length: 1000 }, (_, i) => String(i)));
      t.equal((await q.popMany('m', 2000, 0)).length, 1000, `${url}: pushMany/popMany`);
    }
    // The same topics whatever the transport.
    const plain = await TurboClient.connect(engine.urls[2]!);
    t.teardown(() => plain.close());
    await plain.getQueue('shared').push('t', 'over tcp');
    const secure = await TurboClient.connect(engine.url, { tls: ca });
    t.teardown(() => secure.close());
    t.equal((await secure.getQueue('shared').pop('t', 0))!.content, 'over tcp');
  });

  t.test('TLS with auth (certificate and key as Buffers): the token travels encrypted, a wrong one is refused', async (t) => {
    const engine = await startEngine(t, { tls: { cert: Buffer.from(cert), key: Buffer.from(key) }, authToken: 'tls-secret' }, 'tls://127.0.0.1:0');
    const client = await TurboClient.connect(engine.url, { tls: ca, token: 'tls-secret' });
    t.teardown(() => client.close());
    await client.ping();
    await t.rejects(TurboClient.connect(engine.url, { tls: ca, token: 'nope' }), { code: 'ERR_UNAUTHORIZED' });
  });

  t.test('a plain client on a TLS port fails cleanly and quickly, and the broker goes on serving', async (t) => {
    const engine = await startEngine(t, { tls, threads: 1 }, 'tls://127.0.0.1:0');
    const plainUrl = engine.url.replace('tls://', 'tcp://');
    const started = performance.now();
    await t.rejects(TurboClient.connect(plainUrl, { connectTimeoutMs: 8000 }), { code: 'ERR_CONNECTION_CLOSED' });
    t.ok(performance.now() - started < 5000, 'refused well before the connect timeout');
    // Raw garbage and silence on the TLS port neither.
    const raw = net.connect(Number(new URL(plainUrl).port), '127.0.0.1', () => raw.write('GET / HTTP/1.1\r\n\r\n'));
    raw.on('error', () => {});
    t.ok(await within(new Promise<boolean>((resolve) => raw.on('close', () => resolve(true))), 5000, 'garbage closed'));
    const client = await TurboClient.connect(engine.url, { tls: ca });
    t.teardown(() => client.close());
    await client.ping();
    const ws = engine.url.replace('tls://', 'ws://');
    await t.rejects(TurboClient.connect(ws, { connectTimeoutMs: 8000 }), { code: 'ERR_CONNECTION_CLOSED' }, 'a ws:// client on the TLS port');
    await client.getQueue('q').push('t', 'still serving');
  });

  t.test('a TLS client on a plain port, or one that does not trust the certificate, fails with ERR_CONNECTION_CLOSED', async (t) => {
    const engine = await startEngine(t, { tls, threads: 1, listen: ['wss://127.0.0.1:0'] });
    await t.rejects(TurboClient.connect(engine.url.replace('tcp://', 'tls://'), { tls: ca, connectTimeoutMs: 8000 }), { code: 'ERR_CONNECTION_CLOSED' }, 'TLS to a plain port');
    const tlsEngine = await startEngine(t, { tls, threads: 1 }, 'tls://127.0.0.1:0');
    await t.rejects(TurboClient.connect(tlsEngine.url, { connectTimeoutMs: 8000 }), { code: 'ERR_CONNECTION_CLOSED', message: /self-signed|certificate/ }, 'no ca: not trusted');
    await t.rejects(TurboClient.connect(engine.urls[1]!, { connectTimeoutMs: 8000 }), { code: 'ERR_CONNECTION_CLOSED' }, 'wss without ca');
    const ok = await TurboClient.connect(engine.urls[1]!, { tls: ca });
    await ok.close();
  });

  t.test('tls:// needs the tls option; a bad certificate is refused when the engine is made', async (t) => {
    t.throws(() => new TurboEngine('tls://127.0.0.1:0'), { code: 'ERR_INVALID_ARGUMENT', message: /tls:\/\/ needs a certificate/ });
    t.throws(() => new TurboEngine('tcp://127.0.0.1:0', { listen: ['wss://127.0.0.1:0'] }), { code: 'ERR_INVALID_ARGUMENT' });
    t.throws(() => new TurboEngine('tls://127.0.0.1:0', { tls: { cert: 'not pem', key: 'not pem' } }), { code: 'ERR_INVALID_ARGUMENT', message: /^tls: cannot use/ });
    t.throws(() => new TurboEngine('tls://127.0.0.1:0', { tls: { cert } as never }), { code: 'ERR_INVALID_ARGUMENT' });
  });
}
