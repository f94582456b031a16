// The operator commands as a person runs them: `turbomq push`, `pop`, `stats` and `stop`,
// each a child process against a real broker.

import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startEngine } from '../helpers.ts';

const main = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

interface Run { code: number | null; stdout: string; stderr: string; ms: number }

function run(args: string[], options: { env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [main, ...args], { env: { ...process.env, TURBOMQ_URL: '', TURBOMQ_TOKEN: '', ...options.env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    if (options.stdin !== undefined) child.stdin.end(options.stdin);
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`turbomq ${args.join(' ')} did not exit; stderr: ${stderr}`)); }, options.timeoutMs ?? 45_000);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, ms: performance.now() - started }); });
  });
}

t.test('every operator command has --help with --url and --token', async (t) => {
  for (const command of ['push', 'pop', 'stats', 'stop']) {
    const r = await run([command, '--help']);
    t.equal(r.code, 0, `${command} --help exits 0`);
    t.match(r.stdout, new RegExp(`^Usage: turbomq ${command}`), command);
    t.match(r.stdout, /--url URL/);
    t.match(r.stdout, /--token TOKEN/);
  }
  const top = await run(['--help']);
  for (const command of ['push', 'pop', 'stats', 'stop']) t.match(top.stdout, new RegExp(`turbomq ${command}`), `turbomq --help lists ${command}`);
});

t.test('bad usage is one readable line and exit 2', async (t) => {
  for (const args of [['push', 'q'], ['push'], ['pop', 'q'], ['pop', 'q', 't', 'extra'], ['pop', 'q', 't', '--count', '0'], ['pop', 'q', 't', '--timeout', 'soon'],
    ['stats', 'extra'], ['stop', '--nope'], ['push', 'q', 't', 'x', '--url', 'http://127.0.0.1:1']]) {
    const r = await run(args);
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line (${r.stderr.trim()})`);
    t.match(r.stderr, /^turbomq: .*\(see turbomq \w+ --help\)/);
  }
});

t.test('a broker that is not there: one line, exit 1', async (t) => {
  for (const command of ['stats', 'stop']) {
    const r = await run([command, '--url', 'tcp://127.0.0.1:1']);
    t.equal(r.code, 1, command);
    t.equal(r.stderr.trim().split('\n').length, 1);
    t.match(r.stderr, /^turbomq: cannot connect to 127\.0\.0\.1:1: .* \(ERR_CONNECTION_CLOSED\)/);
  }
});

t.test('push then pop: arguments and stdin lines in, one message a line out', async (t) => {
  const engine = await startEngine(t, { threads: 2 });
  const url = engine.url;
  const pushed = await run(['push', 'jobs', 'resize', 'image-1.png', 'image 2.png', 'ümlaut ✓', '--url', url]);
  t.equal(pushed.code, 0, pushed.stderr);
  t.equal(pushed.stdout, 'pushed 3 messages to jobs/resize\n');
  const piped = await run(['push', 'jobs', 'resize'], { env: { TURBOMQ_URL: url }, stdin: 'from stdin 1\nfrom stdin 2\n' });
  t.equal(piped.stdout, 'pushed 2 messages to jobs/resize\n', 'each stdin line is a message; TURBOMQ_URL is used');
  t.equal(await engine.getQueue('jobs').length('resize'), 5);

  const one = await run(['pop', 'jobs', 'resize', '--url', url]);
  t.equal(one.code, 0);
  t.equal(one.stdout, 'image-1.png\n', 'one message by default');
  const rest = await run(['pop', 'jobs', 'resize', '--count', '10', '--url', url]);
  t.equal(rest.stdout, 'image 2.png\nümlaut ✓\nfrom stdin 1\nfrom stdin 2\n', 'oldest first, one a line');
  const empty = await run(['pop', 'jobs', 'resize', '--url', url]);
  t.equal(empty.code, 0, 'empty is not an error');
  t.equal(empty.stdout, '');
  t.match(empty.stderr, /no message in jobs\/resize/);

  const waiting = run(['pop', 'jobs', 'later', '--timeout', '20000', '--url', url]);
  const deadline = Date.now() + 20_000;
  // Push once the pop is parked (the topic exists once a pop waits on it).
  while ((await engine.stats()).topics === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await engine.getQueue('jobs').push('later', 'worth the wait');
  const waited = await waiting;
  t.equal(waited.stdout, 'worth the wait\n', '--timeout waits for the first message');
  const timedOut = await run(['pop', 'jobs', 'never', '--timeout', '300', '--url', url]);
  t.equal(timedOut.stdout, '');
  t.match(timedOut.stderr, /within 300 ms/);
});

t.test('stats: a readable table, or --json', async (t) => {
  const engine = await startEngine(t, { threads: 2 });
  await engine.getQueue('jobs').pushMany('resize', ['a', 'b', 'c']);
  await engine.getQueue('chat').push('room-1', 'hi');
  const r = await run(['stats', '--url', engine.url]);
  t.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  t.match(out, new RegExp(`^turbomq \\S+ at ${engine.url.replace(/\./g, '\\.')}, up \\d+s, ready`));
  t.match(out, /\nthreads +2 workers\n/);
  t.match(out, /\nconnections +1 open, \d+ accepted\n/);
  t.match(out, /\nmemory +[\d.]+ MiB shared, [\d.]+ \w+ in use, [\d.]+ \w+ of messages \(limit 4\.0 GiB\)\n/);
  t.match(out, /\ntopics +2\n/);
  t.match(out, /\nmessages +4 pushed, 0 popped, 4 ready, 0 in flight\n/);
  t.match(out, /\nthread +connections +accepted +loop busy\n/);
  t.match(out, /\nlargest queues\nqueue +topic +ready +in flight +consumers\njobs +resize +3 +0 +0\nchat +room-1 +1 +0 +0/);
  const json = await run(['stats', '--json', '--url', engine.url]);
  const stats = JSON.parse(json.stdout);
  t.match(stats, { ready: true, topics: 2, messages: { pushed: 4, ready: 4 }, largestTopics: [{ queue: 'jobs', topic: 'resize', ready: 3 }] });
  t.equal(stats.threads.length, 2);
});

t.test('stop: a running `turbomq serve` stops gracefully and exits 0', async (t) => {
  const child = spawn(process.execPath, [main, 'serve', '--listen', 'tcp://127.0.0.1:0', '--threads', '1', '--http', 'http://127.0.0.1:0']);
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let stdout = '', stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const urls = await new Promise<{ url: string; http: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line; stderr: ${stderr}`)), 45_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      const url = stdout.match(/listening on (tcp:\/\/\S+)/)?.[1];
      const http = stdout.match(/monitoring on (http:\/\/\S+)/)?.[1];
      if (url && http) { clearTimeout(timer); resolve({ url, http }); }
    });
  });
  t.equal((await fetch(`${urls.http}/readyz`)).status, 200);
  const r = await run(['stop', '--url', urls.url]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `turbomq at ${urls.url} stopped\n`);
  t.equal(await exited, 0, 'the broker exits 0');
  t.match(stdout, /turbomq stopped/);
  t.match(stderr, /"msg":"shutdown requested by a client"/, 'logged (pino JSON on stderr)');
});
