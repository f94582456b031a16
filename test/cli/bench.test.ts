// `turbomq bench` as a user runs it: a child process with its own in-process broker.

import t from 'tap';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const node = `${root}node_modules/.bin/node`;

function bench(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(node, ['src/cli/main.ts', 'bench', ...args], { cwd: root, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException).code === 'number' ? (err as unknown as { code: number }).code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('bench moves every message exactly once and says so in its JSON summary', async (t) => {
  const { code, stdout, stderr } = await bench(['--threads', '2', '--producers', '2', '--consumers', '2', '--messages', '20000', '--size', '32', '--batch', '16', '--topics', '3', '--duration', '15', '--json'], 20_000);
  t.equal(code, 0, stderr);
  const summary = JSON.parse(stdout);
  t.equal(summary.exactlyOnce, true);
  t.equal(summary.sent, 20000);
  t.equal(summary.received, 20000);
  t.equal(summary.unique, 20000);
  t.equal(summary.missing, 0);
  t.equal(summary.duplicates, 0);
  t.equal(summary.cappedByDuration, false);
  t.ok(summary.receiveRate > 0);
  t.ok(summary.latencyMs.count === 20000 && summary.latencyMs.p50 <= summary.latencyMs.p99 && summary.latencyMs.p99 <= summary.latencyMs.max);
});

t.test('bench --client-threads 2 spreads the clients over two threads and still checks every message', async (t) => {
  const { code, stdout, stderr } = await bench(['--threads', '1', '--producers', '2', '--consumers', '2', '--messages', '10000', '--batch', '8', '--topics', '2', '--client-threads', '2', '--duration', '15', '--json'], 20_000);
  t.equal(code, 0, stderr);
  const summary = JSON.parse(stdout);
  t.equal(summary.workload.clientThreads, 2);
  t.equal(summary.exactlyOnce, true);
  t.equal(summary.unique, 10000);
  t.equal(summary.latencyMs.count, 10000);
});

t.test('bench --rate with --consumer-batch: paced single pushes, pops of up to 64, every message once', async (t) => {
  const { code, stdout, stderr } = await bench(['--threads', '1', '--messages', '3000', '--rate', '3000', '--consumer-batch', '64', '--duration', '15', '--json'], 20_000);
  t.equal(code, 0, stderr);
  const summary = JSON.parse(stdout);
  t.equal(summary.workload.batch, 1);
  t.equal(summary.workload.consumerBatch, 64);
  t.equal(summary.workload.rate, 3000);
  t.equal(summary.exactlyOnce, true);
  t.equal(summary.unique, 3000);
  // Paced at 3,000/s, 3,000 messages take about a second to send, whatever the broker's speed.
  t.ok(summary.producerMs >= 800, `sending took ${summary.producerMs} ms`);
  const text = await bench(['--threads', '1', '--messages', '200', '--batch', '4', '--consumer-batch', '16'], 20_000);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /batches of 4, pops of up to 16/);
});

t.test('a bad flag is one line on stderr and exit code 2', async (t) => {
  for (const args of [['--bogus'], ['--size', '8'], ['--producers', 'many'], ['--duration', '-1'], ['--client-threads', '0'], ['--consumer-batch', '0']]) {
    const { code, stdout, stderr } = await bench(args, 10_000);
    t.equal(code, 2, args.join(' '));
    t.equal(stdout, '');
    t.equal(stderr.trim().split('\n').length, 1, stderr);
  }
});

t.test('--help describes the options', async (t) => {
  const { code, stdout } = await bench(['--help'], 10_000);
  t.equal(code, 0);
  t.match(stdout, /--producers/);
  t.match(stdout, /--duration/);
  t.match(stdout, /--client-threads/);
  t.match(stdout, /--consumer-batch/);
});
