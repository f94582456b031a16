// Refused authentications are logged (src/engine/handshake.ts -> the worker's log): one line
// per refused connection, with its remote address and the kind of refusal, and never the
// token or the user name it sent. Real engine, real sockets, the engine's logger.

import t from 'tap';
import { TurboClient, type EngineOptions } from '../../src/index.ts';
import { startEngine, delay } from '../helpers.ts';
import { rawConnect, hello, ping, push } from '../support/raw-socket.ts';

interface LogLine { level: string; fields: Record<string, unknown>; msg: string }

function captureLogger(): { logger: NonNullable<EngineOptions['logger']>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object | string, msg?: string) => {
    lines.push(typeof obj === 'string' ? { level, fields: {}, msg: obj } : { level, fields: obj as Record<string, unknown>, msg: msg ?? '' });
  };
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

t.test('each refused authentication is logged once, with the remote address and a reason, without the token', async (t) => {
  const { logger, lines } = captureLogger();
  const engine = await startEngine(t, { threads: 1, logger, authToken: 'the-real-token', users: [{ name: 'web', token: 'web-token', push: ['*'] }] });
  const failed = () => lines.filter((l) => l.msg === 'authentication failed');
  const until = async (n: number) => {
    const deadline = Date.now() + 10_000;
    while (failed().length < n && Date.now() < deadline) await delay(10); // log lines come from the worker thread
  };

  await t.rejects(TurboClient.connect(engine.url, { token: 'wrong-secret-1' }), { code: 'ERR_UNAUTHORIZED' });
  await t.rejects(TurboClient.connect(engine.url, { user: 'web', token: 'wrong-secret-2' }), { code: 'ERR_UNAUTHORIZED' });
  await t.rejects(TurboClient.connect(engine.url, { user: 'pasted-secret-3', token: 'wrong-secret-4' }), { code: 'ERR_UNAUTHORIZED' });
  await t.rejects(TurboClient.connect(engine.url), { code: 'ERR_UNAUTHORIZED' });
  const raw = await rawConnect(t, engine.url);
  raw.socket.write(Buffer.concat([hello(1), push(2, 'q', 't', 'x')]));
  t.ok(await raw.closed(5000), 'a request before AUTH: closed');
  await until(5);

  const ok = await TurboClient.connect(engine.url, { token: 'web-token' });
  t.teardown(() => ok.close());
  await ok.ping(); // a good login logs nothing
  const rawOk = await rawConnect(t, engine.url);
  rawOk.socket.write(Buffer.concat([hello(1), ping(2)]));
  await rawOk.next();
  await rawOk.next();
  await delay(100); // nothing more is expected: give a stray line the time to show

  const lines5 = failed();
  t.equal(lines5.length, 5, 'one line per refused connection, none for the good ones');
  t.same(lines5.map((l) => l.fields.reason), ['invalid user or token', 'invalid user or token', 'invalid user or token', 'no token', 'request before AUTH']);
  for (const line of lines5) {
    t.equal(line.level, 'warn');
    t.match(line.fields.remoteAddress, /^127\.0\.0\.1/, 'with the remote address');
  }
  const text = JSON.stringify(lines);
  for (const secret of ['wrong-secret', 'pasted-secret', 'the-real-token', 'web-token']) t.notOk(text.includes(secret), `${secret} is not in the log`);
});
