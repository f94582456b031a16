// Durable queues through real brokers (2 workers) on a real data directory: what a restart
// keeps and what it does not, one broker per directory, durable: false, a full disk, and
// disk use that follows live data. The kill -9 loops are in durability-crash.test.ts.

import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TurboEngine, TurboClient, TurboError, type Queue } from '../../src/index.ts';
import { delay, within } from '../helpers.ts';

const cli = fileURLToPath(new URL('../../build/js/cli/main.js', import.meta.url));

function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-durable-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A broker on `dir`; stop() it to restart on the same directory. */
async function broker(t: Test, dir: string, options: Record<string, unknown> = {}): Promise<{ engine: TurboEngine; client: TurboClient; q: (name: string) => Queue; stop(): Promise<void> }> {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 2, dataDir: dir, ...options });
  await engine.run();
  const client = await TurboClient.connect(engine.url);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await client.close();
    await engine.destroy();
  };
  t.teardown(stop);
  return { engine, client, q: (name) => client.getQueue(name), stop };
}

async function drain(q: Queue, topic: string): Promise<{ content: string; id: string; deliveries: number }[]> {
  const out: { content: string; id: string; deliveries: number }[] = [];
  for (;;) {
    const batch = await q.popMany(topic, 1000, 0);
    if (batch.length === 0) return out;
    out.push(...batch.map((m) => ({ content: m.content, id: m.id, deliveries: m.deliveries })));
  }
}

/** Runs node with `args`; resolves its exit status and output. */
function run(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env } });
    let stdout = '', stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir)) n += fs.statSync(path.join(dir, f)).size;
  return n;
}

for (const fsync of ['always', 'everysec', 'no'] as const) {
  t.test(`fsync ${fsync}: a restart keeps what was stored and not consumed, in order, with ids, deliveries, due times and settings`, async (t) => {
    const dir = tempDir(t);
    let b = await broker(t, dir, { fsync });
    const jobs = b.q('jobs');
    await jobs.configure({ maxDeliveries: 2, deadLetterTopic: 'dead', leaseMs: 60_000 });
    for (let i = 0; i < 10; i++) await jobs.push('t', `m${i}`);
    await jobs.pushMany('t', ['a', 'b', 'c']);
    await jobs.push('later', 'due', { delayMs: 1500 });
    const pushedAt = Date.now();
    const popped = await jobs.pop('t');                                   // m0: consumed
    const leased = await jobs.pop('t', { ack: true });                    // m1: leased, never acked
    const acked = await jobs.pop('t', { ack: true });                     // m2: acked
    await acked!.ack();
    const nacked = await jobs.pop('t', { ack: true });                    // m3: nacked once
    await nacked!.nack();
    const dead = await jobs.pop('t', { ack: true });                      // m3 again: second delivery reaches maxDeliveries
    await dead!.nack();
    t.same([popped!.content, leased!.content, acked!.content, nacked!.content, dead!.content], ['m0', 'm1', 'm2', 'm3', 'm3']);
    const ids = new Map<string, string>();
    // Messages in other states.
    const volatile = b.q('volatile');
    await volatile.configure({ durable: false, leaseMs: 1234 });
    await volatile.push('t', 'gone after a restart');
    const bounded = b.q('bounded');
    await bounded.configure({ maxLength: 3, overflow: 'drop-oldest' });
    for (let i = 0; i < 5; i++) await bounded.push('t', `b${i}`);
    // A topic emptied (and removed) and used again: its new ids are above the old ones.
    const again = b.q('again');
    await again.push('t', 'first');
    const first = await again.pop('t');
    await again.push('t', 'second');
    // A plain subscription's prefetched messages go back when it closes (with new ids).
    const subs = b.q('subs');
    await subs.pushMany('t', ['s0', 's1', 's2']);
    const sub = subs.subscribe('t', { prefetch: 10 });
    const it = sub[Symbol.asyncIterator]();
    t.equal((await it.next()).value!.content, 's0');
    await sub.close();
    await b.stop();

    b = await broker(t, dir, { fsync, http: 'http://127.0.0.1:0' });
    const left = await drain(b.q('jobs'), 't');
    t.same(left.map((m) => m.content), ['m1', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9', 'a', 'b', 'c'], 'consumed and acked messages are gone, the rest in order (the unacked lease is ready again)');
    t.equal(left[0]!.id, leased!.id, 'same ids');
    for (const m of left) ids.set(m.content, m.id);
    t.same(left.map((m) => m.deliveries), [2, 1, 1, 1, 1, 1, 1, 1, 1, 1], 'deliveries: the leased one counted its delivery before the restart');
    const deadLetters = await drain(b.q('jobs'), 'dead');
    t.equal(deadLetters.length, 1, 'the dead letter survived');
    t.equal(deadLetters[0]!.content.endsWith('m3'), true);
    t.same(await b.q('jobs').configure(), { leaseMs: 60_000, maxDeliveries: 2, deadLetterTopic: 'dead', maxLength: Infinity, overflow: 'reject', dedupWindowMs: 120_000, durable: true }, 'settings kept');
    const later = await b.q('jobs').stats('later');
    if (Date.now() - pushedAt < 1400) t.same(later, { ready: 0, delayed: 1, inFlight: 0 }, 'the delayed message is still delayed');
    const due = await within(b.q('jobs').pop('later', 5000), 6000, 'the delayed message');
    t.equal(due!.content, 'due');
    t.ok(Date.now() - pushedAt >= 1490, 'and became ready at its due time, not before');
    t.equal(await b.q('volatile').length('t'), 0, 'a durable: false queue starts empty');
    t.match(await b.q('volatile').configure(), { durable: false, leaseMs: 1234 }, 'its settings are kept');
    t.same((await drain(b.q('bounded'), 't')).map((m) => m.content), ['b2', 'b3', 'b4'], 'drop-oldest drops are kept');
    const againLeft = await drain(b.q('again'), 't');
    t.same(againLeft.map((m) => m.content), ['second']);
    t.ok(BigInt(againLeft[0]!.id) > BigInt(first!.id), 'a topic used again never repeats an id');
    t.same((await drain(b.q('subs'), 't')).map((m) => m.content), ['s1', 's2'], 'returned messages are back, in order');
    await b.q('jobs').push('t', 'after');
    const after = await b.q('jobs').pop('t');
    t.ok(BigInt(after!.id) > BigInt(ids.get('c')!), 'new ids continue above the recovered ones');
    const stats = await b.engine.stats();
    t.match(stats.storage, { dir: fs.realpathSync(dir), fsync, recovered: { ready: 10 + 1 + 3 + 1 + 2, delayed: 1 } }, 'stats: the data directory and what the start recovered');
    t.match(stats.storage, { peerLogWaits: Number, peerLogRings: Number }, 'stats: the cross-worker log waits are counted');
    if (fsync === 'always') {
      t.ok(stats.storage!.fsyncs > 0, `fsyncs are counted (${stats.storage!.fsyncs}, ${(stats.storage!.fsyncSeconds * 1000).toFixed(1)} ms in all)`);
      const metrics = await (await fetch(`${b.engine.httpUrl}/metrics`)).text();
      t.match(metrics, /turbomq_fsync_seconds_count [1-9]/, 'and in /metrics as a histogram');
    }
  });
}

t.test('dedupId windows survive a restart: a producer retrying after a crash is not stored twice', async (t) => {
  const dir = tempDir(t);
  let b = await broker(t, dir, { fsync: 'everysec' });
  const q = b.q('orders');
  await q.configure({ dedupWindowMs: 1500 });
  await b.q('short').configure({ dedupWindowMs: 200 });
  await b.q('volatile').configure({ durable: false });
  for (let i = 0; i < 50; i++) await q.push('t', `order ${i}`, { dedupId: `o${i}` });
  await q.push('other', 'same id, other topic', { dedupId: 'o0' });
  await b.q('short').push('t', 'short window', { dedupId: 's' });
  await b.q('volatile').push('t', 'volatile', { dedupId: 'v' });
  const pushedAt = Date.now();
  await b.stop();

  b = await broker(t, dir, { fsync: 'everysec' });
  const again = b.q('orders');
  // The retries of a producer that never saw its acknowledgements.
  for (let i = 0; i < 50; i++) await again.push('t', `order ${i} (retried)`, { dedupId: `o${i}` });
  await again.push('other', 'retried', { dedupId: 'o0' });
  await again.push('t', 'a new one', { dedupId: 'o50' });
  // On a loaded machine the restart can outlast the 1.5 s window: the retries are then new
  // pushes with windows of their own, and what follows checks nothing about the old ones.
  const retriedInWindow = Date.now() - pushedAt < 1400;
  if (!retriedInWindow) t.comment(`the restart and the retries took ${Date.now() - pushedAt} ms: the windows checks are skipped`);
  if (retriedInWindow) {
    t.equal(await again.length('t'), 51, 'every retry within the window stored nothing; a new dedupId was stored');
    t.equal(await again.length('other'), 1, 'windows are per topic, as before the restart');
  }
  await delay(Math.max(0, 250 - (Date.now() - pushedAt)));
  await b.q('short').push('t', 'after its window', { dedupId: 's' });
  t.equal(await b.q('short').length('t'), 2, 'a window that had closed is not restored');
  await b.q('volatile').push('t', 'volatile again', { dedupId: 'v' });
  t.equal(await b.q('volatile').length('t'), 1, 'a durable: false queue starts empty, its windows too');
  const recovered = (await b.engine.stats()).storage!.recovered;
  t.match(recovered, { ready: 50 + 1 + 1, delayed: 0 });
  // 50 + 1 windows of 'orders', and the 200 ms one of 'short' if it was still open when the start ran.
  t.ok(recovered.dedupIds === 51 || recovered.dedupIds === 52, `stats: the start reopened ${recovered.dedupIds} windows`);
  await b.stop();

  // Once the windows have closed, the DEDUP records are dropped: a restart then restores none.
  await delay(Math.max(0, 1600 - (Date.now() - pushedAt)));
  b = await broker(t, dir, { fsync: 'everysec' });
  await b.q('orders').push('t', 'window closed', { dedupId: 'o1' });
  if (retriedInWindow) t.equal(await b.q('orders').length('t'), 52, 'after the window a dedupId is new again');
});

t.test('durable: true needs a data directory; durable: false is never written', async (t) => {
  const engine = new TurboEngine('tcp://127.0.0.1:0', { threads: 1 });
  await engine.run();
  t.teardown(() => engine.destroy());
  const client = await TurboClient.connect(engine.url);
  t.teardown(() => client.close());
  await t.rejects(client.getQueue('q').configure({ durable: true }), { code: 'ERR_INVALID_ARGUMENT', message: /data directory/ });
  t.match(await client.getQueue('q').configure({ durable: false }), { durable: false });
  t.match(await client.getQueue('other').configure(), { durable: false }, 'without a data directory nothing is durable');
  await t.rejects(client.getQueue('q').configure({ durable: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARGUMENT' });

  const dir = tempDir(t);
  const b = await broker(t, dir);
  t.match(await b.q('x').configure(), { durable: true }, 'with one, queues are durable by default');
  await b.q('volatile').configure({ durable: false });
  await b.q('volatile').pushMany('t', Array.from({ length: 100 }, (_, i) => `secret-${i}`));
  await b.stop();
  for (const f of fs.readdirSync(dir)) t.notOk(fs.readFileSync(path.join(dir, f)).includes('secret-'), `${f} holds no message of the durable: false queue`);
});

t.test('one broker per data directory: the second fails at start with a one-line error, exit code 1', async (t) => {
  const dir = tempDir(t);
  const b = await broker(t, dir);
  // Two workers, started while the main thread recovers (engine.ts): they wait for it, and a
  // failed recovery ends them at once instead of after the 10 s a worker gets to stop.
  const second = new TurboEngine('tcp://127.0.0.1:0', { threads: 2, dataDir: dir });
  const t0 = performance.now();
  await t.rejects(second.run(), { code: 'ERR_STORAGE', message: new RegExp(`data directory ${dir.replace(/[/\\]/g, '.')} is in use by another turbomq broker \\(pid ${process.pid}\\)`) });
  const failMs = performance.now() - t0;
  t.ok(failMs < 8000, `run() rejected in ${failMs.toFixed(0)} ms, its workers ended without waiting out their stop timeout`);
  await second.destroy();
  // (Not spawnSync: the lock's holder, this process, answers the newcomer with its pid.)
  const cliRun = await run([cli, 'serve', '--data-dir', dir, '--threads', '1', '--listen', 'tcp://127.0.0.1:0', '--log-level', 'silent']);
  t.equal(cliRun.status, 1, 'turbomq serve exits 1');
  const lines = cliRun.stderr.trim().split('\n');
  t.equal(lines.length, 1, `one line: ${cliRun.stderr}`);
  t.match(lines[0], new RegExp(`in use by another turbomq broker \\(pid ${process.pid}\\)`));
  t.equal(await b.q('q').length('t'), 0, 'the first broker is unaffected');
  const env = await run([cli, 'serve', '--threads', '1', '--listen', 'tcp://127.0.0.1:0', '--log-level', 'silent'], { TURBOMQ_DATA_DIR: dir });
  t.equal(env.status, 1, 'TURBOMQ_DATA_DIR sets it too');
  const bad = await run([cli, 'serve', '--fsync', 'sometimes']);
  t.equal(bad.status, 2, 'an unknown fsync policy is a usage error');
  t.match(bad.stderr, /--fsync must be one of always, everysec, no/);
});

t.test('a full disk: pushes fail with ERR_STORAGE and the connection stays usable; the broker recovers when space returns', async (t) => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-full-'));
  t.teardown(() => fs.rmSync(mnt, { recursive: true, force: true }));
  try {
    // Room for what a broker under 'always' takes besides its messages - every worker's log
    // preallocates 1 MiB of its segment, compaction writes its output before it deletes the
    // inputs - once the filler is gone: with 2 MiB and a 512 KiB filler, the space freed went
    // to another writer's preallocation first when the machine was loaded, and the failed log
    // found none for its retry.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    t.skip('cannot mount a tmpfs here (not root?); test/storage/log.test.ts simulates a full disk for the log');
    return;
  }
  t.teardown(() => { try { execFileSync('umount', ['-l', mnt], { stdio: 'ignore' }); } catch { /* gone */ } });
  const dir = path.join(mnt, 'data');
  const filler = path.join(mnt, 'filler');
  fs.writeFileSync(filler, Buffer.alloc(4 * 1024 * 1024));
  let b = await broker(t, dir, { fsync: 'always' });
  await b.q('other').configure({ durable: false });
  const q = b.q('q');
  const data = 'x'.repeat(4000);
  const stored: number[] = [];
  let failure: TurboError | undefined;
  for (let i = 0; i < 2000 && failure === undefined; i++) {
    try {
      await q.push('t', `${i}:${data}`);
      stored.push(i);
    } catch (err) {
      failure = err as TurboError;
    }
  }
  t.ok(failure !== undefined, 'the disk filled up');
  t.equal(failure!.code, 'ERR_STORAGE', `a clear error code: ${failure!.message}`);
  t.ok(stored.length > 50, `${stored.length} pushes were stored first`);
  // The connection whose replies could not be made durable was closed with ERR_STORAGE.
  // Later pushes are refused up front where the thread's log knows the disk is full, or fail
  // with ERR_STORAGE when their own write does; the broker keeps serving everything else.
  const client = await TurboClient.connect(b.engine.url);
  t.teardown(() => client.close());
  await t.rejects(client.getQueue('q').push('t', 'refused'), { code: 'ERR_STORAGE' }, 'a push while the disk is full');
  const other = await TurboClient.connect(b.engine.url);
  t.teardown(() => other.close());
  await other.getQueue('other').push('t', 'a durable: false queue still takes pushes');
  t.equal((await other.getQueue('other').pop('t', 0))?.content, 'a durable: false queue still takes pushes', 'and pops');
  fs.rmSync(filler);
  let retried = false;
  for (let i = 0; i < 100 && !retried; i++) {
    try {
      await other.getQueue('q').push('t', 'after');
      retried = true;
    } catch {
      await delay(100);
    }
  }
  t.ok(retried, 'pushes succeed again once there is space');
  await client.close();
  await other.close();
  await b.stop();
  b = await broker(t, dir, { fsync: 'always' });
  const left = (await drain(b.q('q'), 't')).map((m) => m.content);
  const seen = new Set(left);
  t.equal(seen.size, left.length, 'nothing twice');
  t.same(stored.filter((i) => !seen.has(`${i}:${data}`)), [], 'every acknowledged push is there after a restart');
  t.ok(seen.has('after'));
});

t.test('disk use follows live data: a drained queue gives its space back within seconds', async (t) => {
  const dir = tempDir(t);
  const b = await broker(t, dir, { fsync: 'no' });
  const q = b.q('bulk');
  const item = 'y'.repeat(1024);
  const batch = Array.from({ length: 64 }, () => item);
  for (let i = 0; i < 320; i++) await q.pushMany('t', batch); // 20 MiB
  const full = dirBytes(dir);
  t.ok(full >= 20 * 1024 * 1024, `${(full / 1048576).toFixed(1)} MiB on disk`);
  let popped = 0;
  for (;;) {
    const got = await q.popMany('t', 1000, 0);
    if (got.length === 0) break;
    popped += got.length;
  }
  t.equal(popped, 320 * 64);
  const drainedAt = Date.now();
  let now = full;
  while (Date.now() - drainedAt < 10_000 && now >= full / 2) {
    await delay(200);
    now = dirBytes(dir);
  }
  t.ok(now < full / 2, `${(now / 1048576).toFixed(1)} MiB left ${Date.now() - drainedAt} ms after the queue was drained (under half)`);
});

t.test('a worker that dies is replaced with its log (same thread index) and the data directory stays whole', async (t) => {
  const dir = tempDir(t);
  const logs: { msg: string }[] = [];
  const logger = { info: (o: object | string, m?: string) => logs.push({ msg: m ?? String(o) }), warn() {}, error: (o: object | string, m?: string) => logs.push({ msg: m ?? String(o) }), debug() {} };
  let b = await broker(t, dir, { logger });
  await b.q('w').pushMany('t', ['1', '2', '3']);
  const crash = (b.engine as unknown as Record<symbol, (i: number) => Promise<number>>)[Symbol.for('turbomq.crashWorkerForTest')]!;
  await crash.call(b.engine, 0);
  await within((async () => { while (!logs.some((l) => l.msg === 'worker replaced')) await delay(20); })(), 30_000, 'the replacement');
  t.notOk(logs.some((l) => l.msg === 'replacement worker could not start; retrying'), 'the replacement opened its log at once');
  // Connections to both workers (the old client may have been on the dead one).
  for (let i = 0; i < 6; i++) {
    const c = await TurboClient.connect(b.engine.url);
    await c.getQueue('w').push('t', `after-${i}`);
    await c.close();
  }
  await b.stop();
  b = await broker(t, dir);
  t.same((await drain(b.q('w'), 't')).map((m) => m.content), ['1', '2', '3', 'after-0', 'after-1', 'after-2', 'after-3', 'after-4', 'after-5']);
});
