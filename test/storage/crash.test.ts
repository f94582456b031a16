// Crash test: a child process (test/storage/crash-child.ts: two log writers and a compactor)
// is killed with SIGKILL at random moments, 20 times per fsync policy, restarting on the same
// directory each time. After every kill, recovery must have every acknowledged push that no
// one tried to remove, none that was acknowledged removed, each message once, FIFO per
// producer per topic, and deliveries between the last acknowledged and the last attempted.

import t from 'tap';
import type * as Tap from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tempDir, recoverAll } from './support.ts';
import type { FsyncPolicy } from '../../src/storage/log.ts';

const childScript = fileURLToPath(new URL('./crash-child.mjs', import.meta.url));
const KILLS = Number(process.env.CRASH_KILLS ?? 20);

interface Seen {
  acked: Map<string, string>;        // "topic:id" -> data
  removeTried: Set<string>;
  removed: Set<string>;
  metaAcked: Map<string, number>;
  metaTried: Map<string, number>;
}

/** Runs the child until it is ready, lets it work for `workMs`, kills it; resolves its stdout lines. */
function runAndKill(dir: string, fsync: FsyncPolicy, run: number, workMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childScript, dir, fsync, String(run), String(1000 + run * 7919)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const startTimer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`child not ready in 30 s: ${err}`)); }, 30_000);
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      if (killTimer === undefined && out.includes('ready\n')) {
        clearTimeout(startTimer);
        killTimer = setTimeout(() => child.kill('SIGKILL'), workMs);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(startTimer);
      if (killTimer) clearTimeout(killTimer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited by itself (${code}): ${err}`));
      else resolve(out.split('\n'));
    });
  });
}

function note(seen: Seen, lines: string[]): void {
  for (const line of lines) {
    const [kind, topic, id, rest] = line.split(' ');
    const key = `${topic}:${id}`;
    if (kind === 'P') seen.acked.set(key, rest!);
    else if (kind === 'r') seen.removeTried.add(key);
    else if (kind === 'R') seen.removed.add(key);
    else if (kind === 'm') seen.metaTried.set(key, Math.max(seen.metaTried.get(key) ?? 0, Number(rest)));
    else if (kind === 'M') seen.metaAcked.set(key, Math.max(seen.metaAcked.get(key) ?? 0, Number(rest)));
  }
}

/** KILLS kill-and-recover rounds on one directory; returns what went wrong (at most 10 lines). */
async function crashLoop(t: Tap.Test, fsync: FsyncPolicy): Promise<{ problems: string[]; acked: number; removed: number; live: number }> {
  {
    const dir = tempDir(t);
    const seen: Seen = { acked: new Map(), removeTried: new Set(), removed: new Set(), metaAcked: new Map(), metaTried: new Map() };
    let seed = fsync.length * 31;
    const rand = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const problems: string[] = [];
    const fail = (msg: string) => { if (problems.length < 10) problems.push(msg); };
    let lastRecovered = 0;
    for (let run = 0; run < KILLS; run++) {
      note(seen, await runAndKill(dir, fsync, run, 20 + rand(150)));
      const r = await recoverAll(dir);
      const present = new Map<string, { data: string; meta: number }>();
      for (const [name, topic] of r.topics) {
        const k = name.split('/')[1]!.slice(1);
        const lastSeq = new Map<string, number>();
        for (const m of topic.ready) {
          const key = `${k}:${m.id}`;
          present.set(key, { data: m.data, meta: m.meta });
          const [runOf, producer, seq] = m.data.split(':').map(Number) as [number, number, number];
          const p = `${runOf}:${producer}`;
          if ((lastSeq.get(p) ?? -1) >= seq) fail(`run ${run}: topic t${k}: producer ${p} out of order at seq ${seq}`);
          lastSeq.set(p, seq);
        }
      }
      const datas = new Set([...present.values()].map((m) => m.data));
      if (datas.size !== present.size) fail(`run ${run}: a message came back twice`);
      for (const [key, data] of seen.acked) {
        if (seen.removeTried.has(key)) continue;
        const got = present.get(key);
        if (got === undefined) fail(`run ${run}: acknowledged push ${key} (${data}) is missing`);
        else if (got.data !== data) fail(`run ${run}: ${key} holds ${got.data}, acknowledged ${data}`);
      }
      for (const key of seen.removed) if (present.has(key)) fail(`run ${run}: acknowledged removal of ${key} came back`);
      for (const [key, m] of present) {
        const low = seen.metaAcked.get(key) ?? 0, high = seen.metaTried.get(key) ?? 0;
        if (m.meta < low || m.meta > Math.max(high, low)) fail(`run ${run}: ${key} has ${m.meta} deliveries, acknowledged ${low}, tried ${high}`);
      }
      lastRecovered = present.size;
    }
    return { problems, acked: seen.acked.size, removed: seen.removed.size, live: lastRecovered };
  }
}

// The three policies run side by side (each child spends most of its life starting up).
t.test(`SIGKILL at random moments, ${KILLS} times under each fsync policy, loses nothing acknowledged`, async (t) => {
  const policies = ['always', 'everysec', 'no'] as const;
  const results = await Promise.all(policies.map((fsync) => crashLoop(t, fsync)));
  for (const [i, fsync] of policies.entries()) {
    const r = results[i]!;
    t.same(r.problems, [], `fsync ${fsync}, ${KILLS} kills: ${r.acked} acknowledged pushes, ${r.removed} acknowledged removals, ${r.live} live at the end`);
    t.ok(r.acked > KILLS, `fsync ${fsync}: the children did acknowledge work`);
  }
});
