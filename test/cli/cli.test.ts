// The `turbomq` command as a user runs it: a child process, real signals, real sockets.

import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testCertificate } from '../support/tls.ts';
import { TurboClient } from '../../src/index.ts';
import { VERSION } from '../../src/version.ts';

const main = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function run(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 45_000, stdin?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], { env: { ...process.env, ...env } });
    if (stdin !== undefined) child.stdin.end(stdin);
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`turbomq ${args.join(' ')} did not exit in ${timeoutMs} ms`)); }, timeoutMs);
    child.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

/** Starts `turbomq serve`, resolves with the child and the url it prints. */
function serve(t: Tap.Test, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; line: string; url: string; exited: Promise<Run> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], { env: { ...process.env, ...env } });
    let stdout = '', stderr = '';
    const exited = new Promise<Run>((res) => child.on('exit', (code, signal) => res({ code, signal, stdout, stderr })));
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
    const timer = setTimeout(() => reject(new Error(`no listening line; stderr: ${stderr}`)), 45_000);
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.on('data', (d) => {
      stdout += d;
      const line = stdout.split('\n').find((l) => l.includes('listening on'));
      const url = line?.match(/(tcp|tls):\/\/[^\s]+/)?.[0];
      if (line && url) { clearTimeout(timer); resolve({ child, line, url, exited }); }
    });
    void exited.then((r) => { clearTimeout(timer); reject(new Error(`exited early (${r.code}): ${stderr}`)); });
  });
}
import type * as Tap from 'tap';

t.test('--help prints usage and exits 0', async (t) => {
  const r = await run(['--help']);
  t.equal(r.code, 0);
  t.match(r.stdout, /Usage: turbomq/);
  t.match(r.stdout, /--listen/);
  t.match(r.stdout, /--threads/);
  t.match(r.stdout, /--max-message-bytes/);
  t.match(r.stdout, /--log-level/);
  t.match(r.stdout, /--http URL/);
});

t.test('--version prints the version', async (t) => {
  const r = await run(['--version']);
  t.equal(r.code, 0);
  t.equal(r.stdout.trim(), VERSION);
});

t.test('bad flags give a one-line error and exit 2', async (t) => {
  for (const args of [['--nope'], ['--threads', 'many'], ['--threads', '0'], ['--listen', 'http://x:1'], ['--log-level', 'loud'], ['--http', 'tcp://127.0.0.1:1'], ['frobnicate']]) {
    const r = await run(args);
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line (${r.stderr.trim()})`);
    t.match(r.stderr, /^turbomq: /);
    t.equal(r.stderr.split('turbomq --help').length - 1, 1, `${args.join(' ')}: points to --help once`);
  }
  const unknown = await run(['frobnicate']);
  t.match(unknown.stderr, /unknown command "frobnicate" \(the commands: serve, push, pop, stats, stop, bench, hash-token\)/, 'an unknown command names the commands');
});

t.test('serve starts a broker, prints one readable line, serves clients, and stops on SIGTERM with exit 0', async (t) => {
  const { child, line, url, exited } = await serve(t, ['--listen', 'tcp://127.0.0.1:0', '--threads', '2', '--log-level', 'warn']);
  t.match(line, new RegExp(`^turbomq ${VERSION.replace(/\./g, '\\.')} listening on tcp://127\\.0\\.0\\.1:\\d+ with 2 threads`));
  const client = await TurboClient.connect(url);
  const q = client.getQueue('cli');
  await q.push('t', 'hello');
  t.equal((await q.pop('t', 1000))!.content, 'hello');
  await client.close();
  child.kill('SIGTERM');
  const r = await exited;
  t.equal(r.code, 0, 'exit code 0');
  t.match(r.stdout, /turbomq stopped/);
});

t.test('SIGINT stops gracefully too', async (t) => {
  const { child, exited } = await serve(t, ['--listen', 'tcp://127.0.0.1:0', '--threads', '1']);
  child.kill('SIGINT');
  t.equal((await exited).code, 0);
});

t.test('settings come from TURBOMQ_* variables; flags win', async (t) => {
  const fromEnv = await serve(t, [], { TURBOMQ_LISTEN: 'tcp://127.0.0.1:0', TURBOMQ_THREADS: '1', TURBOMQ_LOG_LEVEL: 'silent' });
  t.match(fromEnv.line, /with 1 thread /);
  fromEnv.child.kill('SIGTERM');
  await fromEnv.exited;
  const flagWins = await serve(t, ['--threads', '2'], { TURBOMQ_LISTEN: 'tcp://127.0.0.1:0', TURBOMQ_THREADS: '1' });
  t.match(flagWins.line, /with 2 threads/);
  flagWins.child.kill('SIGTERM');
  await flagWins.exited;
});

t.test('--max-message-bytes is enforced for clients', async (t) => {
  const { child, url, exited } = await serve(t, ['--listen', 'tcp://127.0.0.1:0', '--threads', '1', '--max-message-bytes', '100']);
  const client = await TurboClient.connect(url);
  t.equal(client.server.maxMessageBytes, 100);
  await t.rejects(client.getQueue('q').push('t', new Uint8Array(101)), { code: 'ERR_MESSAGE_TOO_LARGE' });
  await client.close();
  child.kill('SIGTERM');
  await exited;
});

t.test('structured logs (pino JSON) go to stderr', async (t) => {
  const { child, exited } = await serve(t, ['--listen', 'tcp://127.0.0.1:0', '--threads', '1', '--log-level', 'info']);
  child.kill('SIGTERM');
  const r = await exited;
  const lines = r.stderr.trim().split('\n').filter(Boolean);
  t.ok(lines.length > 0, 'logs written');
  for (const l of lines) t.doesNotThrow(() => JSON.parse(l), `JSON: ${l.slice(0, 60)}`);
});

t.test('a busy port gives a readable error and exit 1', async (t) => {
  const first = await serve(t, ['--listen', 'tcp://127.0.0.1:0', '--threads', '1']);
  const r = await run(['--listen', first.url, '--threads', '1']);
  t.equal(r.code, 1);
  t.match(r.stderr, /address in use/);
  first.child.kill('SIGTERM');
  await first.exited;
});

/** A temporary directory, removed at the end of the test. */
function tempDir(t: Tap.Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'turbomq-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('--help lists the security flags and hash-token', async (t) => {
  const r = await run(['--help']);
  for (const flag of ['--auth-token', 'TURBOMQ_AUTH_TOKEN', '--users', '--tls-cert', '--tls-key', '--handshake-timeout-ms', '--max-connections', 'hash-token']) t.match(r.stdout, flag);
});

t.test('--auth-token from TURBOMQ_AUTH_TOKEN: clients need the token', async (t) => {
  const { child, url, exited } = await serve(t, ['--listen', 'tcp://127.0.0.1:0', '--threads', '1'], { TURBOMQ_AUTH_TOKEN: 'cli-secret' });
  await t.rejects(TurboClient.connect(url), { code: 'ERR_UNAUTHORIZED' });
  const client = await TurboClient.connect(url, { token: 'cli-secret' });
  await client.getQueue('q').push('t', 'x');
  await client.close();
  child.kill('SIGTERM');
  const r = await exited;
  t.notMatch(r.stdout + r.stderr, /cli-secret/, 'the token is never printed or logged');
});

t.test('hash-token: --help, a hash from stdin, --generate, and refusals', async (t) => {
  const help = await run(['hash-token', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: turbomq hash-token/);
  const hashed = await run(['hash-token', '--cost', '10'], {}, 45_000, 'pipe-token\n');
  t.equal(hashed.code, 0, hashed.stderr);
  t.match(hashed.stdout.trim(), /^\$scrypt\$ln=10,r=8,p=1\$[^$]+\$[^$]+$/);
  const generated = await run(['hash-token', '--generate', '--cost', '10']);
  const { token, tokenHash } = JSON.parse(generated.stdout) as { token: string; tokenHash: string };
  t.match(token, /^[A-Za-z0-9_-]{43}$/);
  t.match(tokenHash, /^\$scrypt\$ln=10/);
  for (const [args, stdin] of [[['hash-token'], ''], [['hash-token', '--cost', '99'], 'x'], [['hash-token', 'positional'], 'x']] as const) {
    const r = await run([...args], {}, 45_000, stdin);
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

t.test('--users FILE with a hashed token from hash-token: permissions hold', async (t) => {
  const dir = tempDir(t);
  const hash = (await run(['hash-token', '--cost', '10'], {}, 45_000, 'reader-token')).stdout.trim();
  const users = join(dir, 'users.json');
  writeFileSync(users, JSON.stringify([
    { name: 'writer', token: 'writer-token', push: ['chat.*'] },
    { name: 'reader', tokenHash: hash, pop: ['chat.*'] },
  ]));
  const { child, url, exited } = await serve(t, ['--listen', 'tcp://127.0.0.1:0', '--threads', '1', '--users', users]);
  const writer = await TurboClient.connect(url, { token: 'writer-token' });
  const reader = await TurboClient.connect(url, { token: 'reader-token' });
  await writer.getQueue('chat.room').push('t', 'hello');
  await t.rejects(writer.getQueue('chat.room').pop('t', 0), { code: 'ERR_FORBIDDEN' });
  t.equal((await reader.getQueue('chat.room').pop('t', 0))!.content, 'hello');
  await t.rejects(reader.getQueue('chat.room').push('t', 'x'), { code: 'ERR_FORBIDDEN' });
  await Promise.all([writer.close(), reader.close()]);
  child.kill('SIGTERM');
  await exited;
});

t.test('a bad --users file is one line and exit 2, without the tokens in it', async (t) => {
  const dir = tempDir(t);
  const bad: [string, RegExp][] = [
    ['not json', /is not JSON/],
    [JSON.stringify([{ name: 'a', token: 'leaky-token', push: 'chat' }]), /push must be an array/],
    [JSON.stringify([{ name: 'a', tokenHash: 'leaky-hash' }]), /tokenHash is not a scrypt hash/],
  ];
  for (const [text, message] of bad) {
    const file = join(dir, 'users.json');
    writeFileSync(file, text);
    const r = await run(['--users', file, '--listen', 'tcp://127.0.0.1:0']);
    t.equal(r.code, 2, r.stderr);
    t.equal(r.stderr.trim().split('\n').length, 1);
    t.match(r.stderr, message);
    t.notMatch(r.stderr, /leaky/);
  }
  const missing = await run(['--users', join(dir, 'nope.json')]);
  t.match(missing.stderr, /^turbomq: --users: cannot read .*nope\.json: ENOENT/);
});

t.test('--tls-cert and --tls-key serve tls:// urls', async (t) => {
  const certificate = testCertificate();
  if ('skip' in certificate) return t.skip(certificate.skip);
  const { child, line, url, exited } = await serve(t, ['--listen', 'tls://127.0.0.1:0', '--threads', '1', '--tls-cert', certificate.certPath, '--tls-key', certificate.keyPath]);
  t.match(line, /listening on tls:\/\/127\.0\.0\.1:\d+/);
  const client = await TurboClient.connect(url, { tls: { ca: certificate.cert } });
  await client.ping();
  await client.close();
  child.kill('SIGTERM');
  await exited;
  const noKey = await run(['--listen', 'tls://127.0.0.1:0']);
  t.equal(noKey.code, 2);
  t.match(noKey.stderr, /needs a certificate and key/);
});
