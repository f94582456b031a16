// One broker per data directory: the lock is the kernel's (an abstract unix socket), so a
// second broker fails at once naming the directory, and a kill -9 never leaves it stale.

import t from 'tap';
import type * as Tap from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { lockDataDir } from '../../src/storage/lock.ts';
import { tempDir } from './support.ts';

const holderScript = fileURLToPath(new URL('./lock-holder.ts', import.meta.url));

function startHolder(t: Tap.Test, dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [holderScript, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the holder did not lock within 30 s')), 30_000);
    child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('locked')) { clearTimeout(timer); resolve(child); } });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`holder exited with ${code}`)); });
  });
}

t.test('a second lock on the same directory fails with a one-line error naming it', async (t) => {
  const dir = tempDir(t);
  const lock = await lockDataDir(dir);
  t.equal(lock.dir, fs.realpathSync(dir));
  const err = await lockDataDir(path.join(dir, '.', '')).then(() => undefined, (e: Error & { code?: string }) => e);
  t.equal(err?.code, 'ERR_STORAGE');
  t.equal(err?.message, `data directory ${lock.dir} is in use by another turbomq broker (pid ${process.pid})`);
  t.notOk(err?.message.includes('\n'), 'one line');
  await lock.release();
  const again = await lockDataDir(dir);
  t.equal(again.boot, lock.boot + 1, 'each lock is a new boot');
  await again.release();
});

t.test('another process holds the lock until it is killed with SIGKILL; then it is free at once', async (t) => {
  const dir = tempDir(t);
  const holder = await startHolder(t, dir);
  await t.rejects(lockDataDir(dir), { code: 'ERR_STORAGE', message: `data directory ${fs.realpathSync(dir)} is in use by another turbomq broker (pid ${holder.pid})` });
  const exited = new Promise((resolve) => holder.once('exit', resolve));
  holder.kill('SIGKILL');
  await exited;
  const lock = await lockDataDir(dir);
  t.equal(lock.boot, 2, 'the holder had boot 1');
  await lock.release();
});

t.test('a directory that cannot be created or written is refused with a clear error', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, 'x');
  await t.rejects(lockDataDir(path.join(file, 'data')), { code: 'ERR_STORAGE', message: new RegExp(`^cannot create data directory ${file}/data: (ENOTDIR|EEXIST)`) });
  await t.rejects(lockDataDir(file), { code: 'ERR_STORAGE', message: /not usable|cannot create/ });
  // A read-only file system (root can write anywhere else): mount one if we are allowed to.
  const ro = path.join(dir, 'ro');
  fs.mkdirSync(ro);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro], { stdio: 'ignore' });
  } catch {
    t.skip('cannot mount a read-only tmpfs here');
    return;
  }
  t.teardown(() => { try { execFileSync('umount', [ro], { stdio: 'ignore' }); } catch { /* gone */ } });
  await t.rejects(lockDataDir(ro), { code: 'ERR_STORAGE', message: `data directory ${ro} is not writable: EROFS (read-only file system)` });
});
