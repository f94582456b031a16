// One broker per data directory, and one log writer per thread index in it: locks that
// the operating system releases when the process dies, so a kill -9 never leaves a stale
// lock behind.
//
// Node has no flock(2). On Linux a lock is a listening socket in the abstract namespace
// (`\0turbomq:<sha256 of the directory's real path>`): binding it twice fails with
// EADDRINUSE, and the kernel frees the name the moment the process (or the worker thread
// that holds the server) goes away. The holder answers a connection with its pid, so the
// second broker can say who holds the directory. Windows named pipes behave the same way;
// elsewhere a socket file in the temp directory is used, and a file nobody listens on
// (connection refused) is stale and taken over.
//
// lockDataDir also creates the directory, proves it is writable (create, write, fsync,
// delete a probe file: as root, access(2) says yes even on a read-only mount) and bumps
// the boot counter (src/storage/files.ts).

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { TurboError } from '../errors.ts';
import { readBoot, writeBoot, describeFsError } from './files.ts';

export interface DataDirLock {
  /** The directory's real path. */
  readonly dir: string;
  /** This broker's boot number (1 for the first start on a directory). */
  readonly boot: number;
  /** Gives the directory up (the OS does it too when the process dies). */
  release(): Promise<void>;
}

/**
 * Creates `dir` if needed, checks it is writable, and locks it for this process. Fails
 * with ERR_STORAGE and a one-line message naming the directory when another broker holds
 * it or it cannot be written.
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  const real = prepareDirectory(dir);
  const lock = await acquireSocketLock(lockAddress(real, 'dir'), `${process.pid}`);
  if (lock === undefined) {
    const holder = await askHolder(lockAddress(real, 'dir'));
    throw new TurboError('ERR_STORAGE', `data directory ${real} is in use by another turbomq broker${holder ? ` (pid ${holder})` : ''}`);
  }
  let boot: number;
  try {
    boot = readBoot(real) + 1;
    writeBoot(real, boot);
  } catch (err) {
    await closeServer(lock);
    throw new TurboError('ERR_STORAGE', `data directory ${real} is not writable: ${describeFsError(err)}`, { cause: err });
  }
  let released = false;
  return {
    dir: real,
    boot,
    async release() {
      if (released) return;
      released = true;
      await closeServer(lock);
    },
  };
}

/** The lock of one log writer (thread index) in a directory; undefined when it is taken. */
export async function lockWriter(realDir: string, threadIndex: number): Promise<{ release(): Promise<void> } | undefined> {
  const address = lockAddress(realDir, `w${threadIndex}`);
  // A writer may find its name briefly held by a process that is going away; retry a little.
  for (let attempt = 0; attempt < 5; attempt++) {
    const server = await acquireSocketLock(address, `${process.pid}`);
    if (server !== undefined) return { release: () => closeServer(server) };
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
}

/** mkdir -p, then proves the directory can be written. Returns its real path. */
function prepareDirectory(dir: string): string {
  if (typeof dir !== 'string' || dir.length === 0) throw new TurboError('ERR_INVALID_ARGUMENT', 'the data directory must be a non-empty path');
  const resolved = path.resolve(dir);
  try {
    fs.mkdirSync(resolved, { recursive: true });
  } catch (err) {
    throw new TurboError('ERR_STORAGE', `cannot create data directory ${resolved}: ${describeFsError(err)}`, { cause: err });
  }
  let real: string;
  try {
    real = fs.realpathSync(resolved);
    if (!fs.statSync(real).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    throw new TurboError('ERR_STORAGE', `data directory ${resolved} is not usable: ${describeFsError(err)}`, { cause: err });
  }
  const probe = path.join(real, `.write-probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    const fd = fs.openSync(probe, 'wx');
    try {
      fs.writeSync(fd, 'turbomq');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.unlinkSync(probe);
  } catch (err) {
    try { fs.unlinkSync(probe); } catch { /* never created */ }
    throw new TurboError('ERR_STORAGE', `data directory ${real} is not writable: ${describeFsError(err)}`, { cause: err });
  }
  return real;
}

function lockAddress(realDir: string, what: string): string {
  const hash = createHash('sha256').update(realDir).digest('hex').slice(0, 32);
  if (process.platform === 'linux') return `\0turbomq:${hash}:${what}`;
  if (process.platform === 'win32') return `\\\\?\\pipe\\turbomq-${hash}-${what}`;
  return path.join(os.tmpdir(), `turbomq-${hash}-${what}.sock`);
}

/** Listens on `address`; undefined when another process holds it. */
async function acquireSocketLock(address: string, info: string, retriedStale = false): Promise<net.Server | undefined> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(info);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw new TurboError('ERR_STORAGE', `cannot take the lock ${address.replace('\0', '@')}: ${describeFsError(err)}`, { cause: err });
    // A socket file (not Linux, not Windows) outlives its process: refused means stale.
    if (!retriedStale && process.platform !== 'linux' && process.platform !== 'win32' && await isStale(address)) {
      try { fs.unlinkSync(address); } catch { /* someone else took it over */ }
      return acquireSocketLock(address, info, true);
    }
    return undefined;
  }
  server.unref();
  return server;
}

function isStale(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(address);
    socket.once('connect', () => { socket.destroy(); resolve(false); });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT'));
  });
}

/** The pid the lock holder answers with, or undefined. */
function askHolder(address: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const socket = net.connect(address);
    const timer = setTimeout(() => { socket.destroy(); resolve(undefined); }, 1000);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => { text += d; });
    socket.on('end', () => { clearTimeout(timer); resolve(/^\d+$/.test(text.trim()) ? text.trim() : undefined); });
    socket.on('error', () => { clearTimeout(timer); resolve(undefined); });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
