// Worker threads (src/engine/workers.ts): start-up failures reject run() with a reason,
// workers start the same under `node -e`, `--input-type=module`, `--import` preloads and
// NODE_OPTIONS, and a worker that dies is replaced while the other keeps serving.

import t from 'tap';
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TurboEngine, TurboClient, type EngineOptions } from '../../src/index.ts';
import { workerExecArgv, splitNodeOptions } from '../../src/engine/workers.ts';
import { startEngine, connect, delay, within } from '../helpers.ts';

const indexUrl = new URL('../../src/index.ts', import.meta.url).href;

t.test('workerExecArgv keeps what shapes module loading and warnings, drops the rest', async (t) => {
  t.same(workerExecArgv(['-e', 'console.log(1)', '--input-type=module', '--import', './x.mjs', '--import=y.mjs', '-r', 'z', '--require=w']), []);
  t.same(workerExecArgv(['--inspect=9229', '--watch', '--test', '--test-reporter=tap', '--max-old-space-size=100', '--loader', 'l.mjs']), []);
  t.same(workerExecArgv(['--conditions=development', '-C', 'custom', '--enable-source-maps', '--no-warnings', '--disable-warning=ExperimentalWarning']),
    ['--conditions=development', '-C', 'custom', '--enable-source-maps', '--no-warnings', '--disable-warning=ExperimentalWarning']);
  t.same(workerExecArgv(['--import', 'a.mjs', '--experimental-strip-types', '--unhandled-rejections', 'strict']), ['--experimental-strip-types', '--unhandled-rejections', 'strict']);
  t.same(splitNodeOptions('--import "/tmp/a b.mjs"  --no-warnings --title="x \\"y\\""'), ['--import', '/tmp/a b.mjs', '--no-warnings', '--title=x "y"']);
  t.same(splitNodeOptions(undefined), []);
  t.same(splitNodeOptions(''), []);
});

t.test('run() rejects with a clear error when a worker cannot start; the engine stays usable for destroy()', async (t) => {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2, [Symbol.for('turbomq.failWorkerStartForTest')]: true } as EngineOptions);
  const err = await within(engine.run().then(() => undefined, (e: Error) => e), 60_000, 'run() settling');
  t.ok(err instanceof Error, 'rejects');
  t.match(err!.message, /^turbomq: a worker thread could not start: turbomq: worker start failure requested by a test/);
  t.notOk(engine.running);
  t.notOk(engine.ready);
  await engine.destroy();
});

/** Runs `node ...args` with a script that starts an engine, round-trips a message, and prints "ok". */
function runNode(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, NODE_OPTIONS: '', ...env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`node ${args.slice(0, 2).join(' ')} hung; stderr: ${stderr}`)); }, timeoutMs);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

const engineScript = (imported: string) => `
  const { TurboEngine, TurboClient } = ${imported};
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2 });
  await engine.run();
  const client = await TurboClient.connect(engine.url);
  await client.getQueue('q').push('t', 'through a worker');
  const m = await client.getQueue('q').pop('t', 5000);
  await client.close();
  await engine.destroy();
  console.log(m.content === 'through a worker' ? 'ok' : 'wrong: ' + m.content);
`;

t.test('workers start under node -e, --input-type=module, --import and NODE_OPTIONS preloads', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'turbomq-workers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A preload that breaks any worker it runs in, as loaders meant for the main thread can.
  const preload = path.join(dir, 'main-thread-only.mjs');
  writeFileSync(preload, "import { isMainThread } from 'node:worker_threads';\nif (!isMainThread) throw new Error('this preload must not run in a worker');\n");
  const script = path.join(dir, 'script.mjs');
  writeFileSync(script, engineScript(`await import(${JSON.stringify(indexUrl)})`));
  const cases: [string, string[], NodeJS.ProcessEnv?][] = [
    ['node -e (CommonJS eval)', ['-e', `(async () => { ${engineScript(`await import(${JSON.stringify(indexUrl)})`)} })().catch((e) => { console.error(e); process.exit(1); })`]],
    ['node --input-type=module -e', ['--input-type=module', '-e', engineScript(`await import(${JSON.stringify(indexUrl)})`)]],
    ['node --import PRELOAD script', ['--import', preload, script]],
    ['NODE_OPTIONS=--import PRELOAD', [script], { NODE_OPTIONS: `--import "${preload}"` }],
  ];
  for (const [label, args, env] of cases) {
    const r = await runNode(args, env);
    t.equal(r.code, 0, `${label}: exit 0${r.code === 0 ? '' : `; stderr: ${r.stderr}`}`);
    t.equal(r.stdout.trim(), 'ok', `${label}: a message went through a worker`);
  }
});

/** Connects until a client is served by a worker `accept`s; returns it with that worker's thread id. */
async function clientOnWorker(t: Test, engine: TurboEngine, accept: (threadId: number) => boolean): Promise<[TurboClient, number]> {
  for (let i = 0; i < 64; i++) {
    const before = await engine.stats();
    const client = await connect(t, engine.url);
    await client.ping();
    const after = await engine.stats();
    const grew = after.threads.find((w) => w.connectionsTotal > (before.threads.find((b) => b.threadId === w.threadId)?.connectionsTotal ?? 0));
    if (grew !== undefined && accept(grew.threadId)) return [client, grew.threadId];
  }
  throw new Error('the kernel never gave a connection to the wanted worker');
}

t.test('a killed worker is replaced while another client keeps working; nothing else is lost', async (t) => {
  const logs: { msg: string; fields: Record<string, unknown> }[] = [];
  const log = (obj: object | string, msg?: string) => logs.push({ msg: msg ?? String(obj), fields: typeof obj === 'object' ? obj as Record<string, unknown> : {} });
  const engine = await startEngine(t, { threads: 2, http: 'http://127.0.0.1:0', logger: { info: log, warn: log, error: log, debug: log } });
  const [victim, victimThread] = await clientOnWorker(t, engine, () => true);
  const [survivor, survivorThread] = await clientOnWorker(t, engine, (id) => id !== victimThread);
  await victim.getQueue('w').pushMany('t', ['1', '2', '3']);
  const parked = victim.getQueue('w').pop('parked').then(() => 'resolved', (err: { code?: string }) => err.code);
  await delay(30);
  const pushedBefore = (await engine.stats()).messages.pushed;

  // The survivor keeps pushing and popping through the crash and the replacement.
  let working = true;
  let roundTrips = 0;
  const failures: unknown[] = [];
  const traffic = (async () => {
    const q = survivor.getQueue('busy');
    while (working) {
      try {
        await q.push('t', String(roundTrips));
        if ((await q.pop('t', 2000))?.content !== String(roundTrips)) failures.push(`round trip ${roundTrips} lost`);
        roundTrips++;
      } catch (err) {
        failures.push(err);
      }
    }
  })();

  const stats = await engine.stats();
  const index = stats.threads.findIndex((w) => w.threadId === victimThread);
  const crash = (engine as unknown as Record<symbol, (i: number) => Promise<number>>)[Symbol.for('turbomq.crashWorkerForTest')]!;
  t.equal(await crash.call(engine, index), victimThread, 'the victim\'s worker died');
  t.equal(await within(parked, 5000, 'the victim\'s parked pop'), 'ERR_CONNECTION_CLOSED', 'its connections get ERR_CONNECTION_CLOSED');
  await within((async () => { while (!logs.some((l) => l.msg === 'worker replaced')) await delay(20); })(), 30_000, 'the replacement');
  const roundTripsAtReplacement = roundTrips;
  await delay(100);
  working = false;
  await traffic;
  t.same(failures, [], 'the other client never failed');
  t.ok(roundTrips > roundTripsAtReplacement, `the other client kept working (${roundTrips} round trips)`);
  t.ok(logs.some((l) => l.msg.startsWith('worker exited unexpectedly') && l.fields.threadId === victimThread), 'the death is logged');

  const after = await engine.stats();
  t.equal(after.threads.length, 2, 'two workers again');
  t.equal(after.workerRestarts, 1);
  t.ok(after.threads.some((w) => w.threadId === survivorThread));
  t.equal(engine.ready, true, 'ready again once every worker listens');
  t.ok(after.messages.pushed >= pushedBefore, 'the dead worker\'s counters are kept');
  // Its messages are still in their topic, and the new worker serves new connections.
  const newThread = after.threads.find((w) => w.threadId !== survivorThread)!.threadId;
  const [fresh] = await clientOnWorker(t, engine, (id) => id === newThread);
  t.same((await fresh.getQueue('w').popMany('t', 10, 0)).map((m) => m.content), ['1', '2', '3'], 'nothing else was lost');
  await fresh.getQueue('w').push('parked', 'for a live consumer');
  t.equal((await survivor.getQueue('w').pop('parked', 2000))?.content, 'for a live consumer', 'the dead waiter was reaped');
  t.match(await (await fetch(`${engine.httpUrl}/metrics`)).text(), /turbomq_worker_restarts_total 1/);
});
