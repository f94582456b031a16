// unix:// listen urls: served by the first worker, same frames and auth as TCP; a socket
// file left behind by a broker that died is replaced, a live one is not.

import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TurboClient, TurboEngine } from '../../src/index.ts';
import { startEngine, checkBinaryRoundTrip } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'turbomq-unix-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('a unix:// url serves clients like TCP, auth included', async (t) => {
  const path = join(dir, 'broker.sock');
  const engine = await startEngine(t, { threads: 2, authToken: 'unix-secret', listen: [`unix://${path}`] });
  t.equal(engine.urls[1], `unix://${path}`);
  const client = await TurboClient.connect(`unix://${path}`, { token: 'unix-secret' });
  t.teardown(() => client.close());
  await checkBinaryRoundTrip(t, client.getQueue('u'));
  const tcp = await TurboClient.connect(engine.url, { token: 'unix-secret' });
  t.teardown(() => tcp.close());
  await tcp.getQueue('u').push('t', 'from tcp');
  t.equal((await client.getQueue('u').pop('t', 0))!.content, 'from tcp');
  await t.rejects(TurboClient.connect(`unix://${path}`), { code: 'ERR_UNAUTHORIZED' });
});

t.test('a stale socket file is replaced; one a live broker serves is not', async (t) => {
  const path = join(dir, 'stale.sock');
  // A socket file nobody listens on any more: a process that died without closing it.
  await new Promise<void>((resolve) => {
    const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    child.on('exit', () => resolve());
  });
  t.ok(existsSync(path), 'the file is left behind');
  const engine = await startEngine(t, { threads: 1 }, `unix://${path}`);
  const client = await TurboClient.connect(engine.url);
  await client.ping();
  await client.close();
  const second = new TurboEngine(`unix://${path}`, { threads: 1 });
  await t.rejects(second.run(), { code: 'EADDRINUSE' });
  await second.destroy();
});
