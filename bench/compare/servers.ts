// The brokers bench/compare measures, each started as its own process on a free loopback port
// (so its CPU time is its own: bench/lib/proc.ts) and stopped after the run: turbomq
// (`node build/js/cli/main.js serve`), redis-server, nats-server (with JetStream),
// rabbitmq-server, and the raw-TCP relay (bench/compare/raw.ts --serve). A server that is not
// installed is skipped by the caller with INSTALL_HINT. Children are killed (their whole process
// group) if this process exits early.

import net from 'node:net';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree } from '../lib/proc.ts';

export interface Server {
  port: number;
  /** The process to read CPU time from (with its descendants); undefined for a reused server we did not start. */
  pid: number | undefined;
  version: string;
  stop(): Promise<void>;
}

const root = fileURLToPath(new URL('../../', import.meta.url));

export const INSTALL_HINT = {
  redis: 'Redis is not installed: on Debian/Ubuntu `sudo apt-get install redis-server` (the benchmark starts its own instance; the system service is not needed)',
  nats: 'nats-server is not installed: on Debian/Ubuntu `sudo apt-get install nats-server` (the benchmark starts its own instance)',
  rabbitmq: 'RabbitMQ is not installed: on Debian/Ubuntu `sudo apt-get update && sudo apt-get install rabbitmq-server` (the benchmark starts its own node; or set RABBITMQ_URL=amqp://127.0.0.1:PORT to use a running one)',
  turbomq: 'turbomq is not built: run `npm run build` first (the benchmark starts build/js/cli/main.js serve)',
};

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/usr/local/bin'])) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

async function waitForPort(port: number, child: ChildProcess, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Children we started (each leads its own process group), killed if this process exits early. */
const children = new Set<ChildProcess>();
const exitHooks = new Set<() => void>();
process.on('exit', () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const hook of exitHooks) hook();
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch { /* already gone */ }
}

/** Starts a server as the leader of a new process group; its stderr shows only for our own servers (`stderr: true`). */
function start(bin: string, args: string[], options: { env?: NodeJS.ProcessEnv; stdout?: boolean; stderr?: boolean } = {}): ChildProcess {
  const child = spawn(bin, args, { stdio: ['ignore', options.stdout ? 'pipe' : 'ignore', options.stderr ? 'inherit' : 'ignore'], detached: true, env: options.env ?? process.env });
  children.add(child);
  return child;
}

/** SIGTERM to the child's process group, SIGKILL after `graceMs`; resolves once the child is gone. */
function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    const done = () => { children.delete(child); resolve(); };
    if (child.exitCode !== null || child.signalCode !== null) return done();
    const force = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
    child.once('exit', () => { clearTimeout(force); done(); });
    killGroup(child, 'SIGTERM');
  });
}

/** The first line of the child's stdout matching `re`, within `timeoutMs`. */
function stdoutLine(child: ChildProcess, re: RegExp, what: string, timeoutMs = 15_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`${what} printed no ${re} within ${timeoutMs} ms`)), timeoutMs);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      text += chunk;
      const m = re.exec(text);
      if (m !== null) { clearTimeout(timer); resolve(m); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with code ${code}`)); });
  });
}

// ── turbomq ────────────────────────────────────────────────────────────────────────────

/**
 * `turbomq serve` from the build, `threads` workers on a free port, plus `extraArgs` (e.g.
 * `--fsync always`). With `dataDir: true` it keeps its queues in a new temporary directory
 * (`--data-dir`), deleted by stop(). Undefined if not built.
 */
export async function startTurbomq(threads: number, options: { extraArgs?: string[]; dataDir?: boolean; nodeArgs?: string[] } = {}): Promise<Server & { url: string; dataDir?: string; stopKeepingData(): Promise<void> } | undefined> {
  const main = `${root}build/js/cli/main.js`;
  if (!fs.existsSync(main)) return undefined;
  const dataDir = options.dataDir ? fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-bench-data-')) : undefined;
  const args = [...(options.nodeArgs ?? []), main, 'serve', '--listen', 'tcp://127.0.0.1:0', '--threads', String(threads), '--log-level', 'warn', ...(dataDir === undefined ? [] : ['--data-dir', dataDir]), ...(options.extraArgs ?? [])];
  const child = start(process.execPath, args, { stdout: true, stderr: true });
  const m = await stdoutLine(child, /listening on (tcp:\/\/127\.0\.0\.1:(\d+))/, 'turbomq serve');
  return {
    url: m[1]!, port: Number(m[2]), pid: child.pid, version: '', dataDir,
    /** Stops the broker and leaves its data directory (the caller deletes it). */
    stopKeepingData: () => stopChild(child, 30_000),
    stop: async () => {
      await stopChild(child, 30_000);
      if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Newest modification time under src/ and assembly/ later than the build's: the build is stale. */
export function buildIsStale(): boolean {
  const built = `${root}build/js/cli/main.js`;
  if (!fs.existsSync(built)) return true;
  const builtAt = fs.statSync(built).mtimeMs;
  const newer = (dir: string): boolean => fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? newer(p) : e.name.endsWith('.ts') && fs.statSync(p).mtimeMs > builtAt;
  });
  return newer(`${root}src`) || newer(`${root}assembly`);
}

// ── the raw-TCP relay ──────────────────────────────────────────────────────────────────

export async function startRawServer(): Promise<Server> {
  const child = start(process.execPath, [fileURLToPath(new URL('./raw.ts', import.meta.url)), '--serve'], { stdout: true, stderr: true });
  const m = await stdoutLine(child, /listening on (\d+)/, 'raw relay');
  return { port: Number(m[1]), pid: child.pid, version: '', stop: () => stopChild(child) };
}

/** The one-hop echo of the latency floor (echo-floor.ts), a process of its own. */
export async function startEchoServer(): Promise<Server> {
  const child = start(process.execPath, [fileURLToPath(new URL('./echo-floor.ts', import.meta.url)), '--serve'], { stdout: true, stderr: true });
  const m = await stdoutLine(child, /listening on (\d+)/, 'echo server');
  return { port: Number(m[1]), pid: child.pid, version: '', stop: () => stopChild(child) };
}

// ── Redis ──────────────────────────────────────────────────────────────────────────────

/** A private redis-server on a free loopback port, no persistence. Undefined if not installed. */
export async function startRedis(): Promise<Server | undefined> {
  const bin = which('redis-server');
  if (bin === undefined) return undefined;
  const port = await freePort();
  const version = /v=(\S+)/.exec(execFileSync(bin, ['--version']).toString())?.[1] ?? '?';
  const child = start(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--logfile', '']);
  await waitForPort(port, child, 'redis-server');
  return { port, pid: child.pid, version, stop: () => stopChild(child) };
}

/**
 * A private redis-server with an append-only file (`appendonly yes`, `appendfsync` as given,
 * no RDB snapshots) in a new temporary directory, deleted by stop(). Undefined if not installed.
 */
export async function startRedisAof(appendfsync: 'always' | 'everysec' | 'no'): Promise<Server & { dataDir: string } | undefined> {
  const bin = which('redis-server');
  if (bin === undefined) return undefined;
  const port = await freePort();
  const version = /v=(\S+)/.exec(execFileSync(bin, ['--version']).toString())?.[1] ?? '?';
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-bench-redis-'));
  const child = start(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dataDir, '--save', '', '--appendonly', 'yes', '--appendfsync', appendfsync, '--protected-mode', 'no', '--logfile', '']);
  await waitForPort(port, child, 'redis-server');
  return {
    port, pid: child.pid, version, dataDir,
    stop: async () => {
      await stopChild(child);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ── NATS ───────────────────────────────────────────────────────────────────────────────

/** A private nats-server with JetStream (memory and a temporary store dir). Undefined if not installed. */
export async function startNats(): Promise<Server | undefined> {
  const bin = which('nats-server');
  if (bin === undefined) return undefined;
  const port = await freePort();
  const version = /v?(\d+\.\d+\.\d+)/.exec(execFileSync(bin, ['--version']).toString())?.[1] ?? '?';
  const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-bench-nats-'));
  const child = start(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir]);
  await waitForPort(port, child, 'nats-server');
  return {
    port, pid: child.pid, version,
    stop: async () => {
      await stopChild(child);
      fs.rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

// ── RabbitMQ ───────────────────────────────────────────────────────────────────────────

/**
 * A private RabbitMQ node: its own node name, AMQP port, Erlang distribution port and epmd
 * port, all on 127.0.0.1, with its database and logs in a temporary directory and no plugins;
 * or the running broker at RABBITMQ_URL. Undefined if not installed.
 */
export async function startRabbitMQ(): Promise<Server & { url: string } | undefined> {
  const reuse = process.env.RABBITMQ_URL;
  if (reuse !== undefined) {
    const port = Number(new URL(reuse).port || 5672);
    const pid = process.env.RABBITMQ_PID === undefined ? undefined : Number(process.env.RABBITMQ_PID);
    return { url: reuse, port, pid, version: 'running', stop: async () => {} };
  }
  // Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user; the script behind it runs as anyone.
  const bin = ['/usr/lib/rabbitmq/bin/rabbitmq-server'].find((p) => fs.existsSync(p)) ?? which('rabbitmq-server');
  const epmd = which('epmd');
  if (bin === undefined || epmd === undefined) return undefined;
  let version = '?';
  try {
    version = fs.readdirSync('/usr/lib/rabbitmq/lib').map((d) => /^rabbitmq_server-(.+)$/.exec(d)?.[1]).find(Boolean) ?? '?';
  } catch { /* unknown layout */ }
  const [port, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbomq-bench-rabbitmq-'));
  fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir, // the Erlang cookie goes here
    RABBITMQ_NODENAME: `turbomqbench${process.pid}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq'),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    ERL_EPMD_PORT: String(epmdPort),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
  // epmd daemonizes (its own session), so it is stopped by name of its port, not by process group.
  const killEpmd = () => {
    try {
      execFileSync(epmd, ['-kill'], { env, stdio: 'ignore' });
    } catch { /* not running */ }
  };
  exitHooks.add(killEpmd);
  const child = start(bin, [], { env });
  try {
    await waitForPort(port, child, 'rabbitmq-server', 60_000);
  } catch (err) {
    await stopChild(child);
    killEpmd();
    throw err;
  }
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`, port, pid: child.pid, version,
    stop: async () => {
      // The shell script waits for beam.smp: SIGTERM the whole group, beam stops cleanly.
      const tree = processTree(child.pid!);
      await stopChild(child, 15_000);
      for (const p of tree.slice(1)) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
      killEpmd();
      exitHooks.delete(killEpmd);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
